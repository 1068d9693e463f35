"""torch_semaug: semantic data augmentation through frozen generative models."""

from torch_semaug.attacks import classifier_guard, latent_pgd
from torch_semaug.generators import IdentityGenerator, LatentGenerator, StyleGAN2
from torch_semaug.transforms import (
    AdversarialLatentAttack,
    LatentMix,
    SemanticTransform,
    create,
    list_transforms,
    register_transform,
)

__version__ = "0.1.0"

__all__ = [
    "AdversarialLatentAttack",
    "IdentityGenerator",
    "LatentGenerator",
    "LatentMix",
    "SemanticTransform",
    "StyleGAN2",
    "__version__",
    "classifier_guard",
    "create",
    "latent_pgd",
    "list_transforms",
    "register_transform",
]
