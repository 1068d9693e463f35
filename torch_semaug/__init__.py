"""torch_semaug: semantic data augmentation through frozen generative models."""

from torch_semaug.attacks import AdaptiveEps, classifier_guard, latent_pgd
from torch_semaug.directions import Directions, find_directions
from torch_semaug.generators import IdentityGenerator, LatentGenerator
from torch_semaug.transforms import (
    AdversarialLatentAttack,
    DirectionEdit,
    SemanticTransform,
    create,
    list_transforms,
    register_transform,
)

__version__ = "0.1.0"

__all__ = [
    "AdaptiveEps",
    "AdversarialLatentAttack",
    "DirectionEdit",
    "Directions",
    "IdentityGenerator",
    "LatentGenerator",
    "SemanticTransform",
    "__version__",
    "classifier_guard",
    "create",
    "find_directions",
    "latent_pgd",
    "list_transforms",
    "register_transform",
]
