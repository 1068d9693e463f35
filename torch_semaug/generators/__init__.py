"""Frozen generative models with an addressable latent space."""

from torch_semaug.generators.adapters import FreiaGenerator, NormflowsGenerator, from_freia, from_normflows
from torch_semaug.generators.base import EncoderMissingError, LatentGenerator, as_generator
from torch_semaug.generators.glow import Glow
from torch_semaug.generators.identity import IdentityGenerator
from torch_semaug.generators.io import generator_kinds, load_generator, register_generator, save_generator
from torch_semaug.generators.latents import flatten_latents, unflatten_latents
from torch_semaug.generators.stylegan2 import StyleGAN2

__all__ = [
    "EncoderMissingError",
    "FreiaGenerator",
    "Glow",
    "IdentityGenerator",
    "LatentGenerator",
    "NormflowsGenerator",
    "StyleGAN2",
    "as_generator",
    "flatten_latents",
    "from_freia",
    "from_normflows",
    "generator_kinds",
    "load_generator",
    "register_generator",
    "save_generator",
    "unflatten_latents",
]
