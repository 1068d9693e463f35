"""Frozen generative models with an addressable latent space."""

from torch_semaug.generators.base import EncoderMissingError, LatentGenerator, as_generator
from torch_semaug.generators.identity import IdentityGenerator

__all__ = ["EncoderMissingError", "IdentityGenerator", "LatentGenerator", "as_generator"]
