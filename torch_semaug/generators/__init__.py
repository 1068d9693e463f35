"""Frozen generative models with an addressable latent space."""

from torch_semaug.generators.base import EncoderMissingError, LatentGenerator, as_generator
from torch_semaug.generators.identity import IdentityGenerator
from torch_semaug.generators.io import generator_kinds, load_generator, register_generator, save_generator
from torch_semaug.generators.stylegan2 import StyleGAN2

__all__ = [
    "EncoderMissingError",
    "IdentityGenerator",
    "LatentGenerator",
    "StyleGAN2",
    "as_generator",
    "generator_kinds",
    "load_generator",
    "register_generator",
    "save_generator",
]
