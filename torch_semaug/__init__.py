"""torch_semaug: semantic data augmentation through frozen generative models."""

from torch_semaug.attacks import classifier_guard, latent_pgd
from torch_semaug.generators import IdentityGenerator, LatentGenerator
from torch_semaug.transforms import (
    AdversarialLatentAttack,
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
    "SemanticTransform",
    "__version__",
    "classifier_guard",
    "create",
    "latent_pgd",
    "list_transforms",
    "register_transform",
]
