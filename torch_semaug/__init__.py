"""torch_semaug: semantic data augmentation through frozen generative models."""

from torch_semaug.attacks import classifier_guard, latent_pgd
from torch_semaug.generators import Glow, IdentityGenerator, LatentGenerator, from_freia, from_normflows
from torch_semaug.transforms import (
    AdversarialLatentAttack,
    FlowPerturb,
    SemanticTransform,
    create,
    list_transforms,
    register_transform,
)

__version__ = "0.1.0"

__all__ = [
    "AdversarialLatentAttack",
    "FlowPerturb",
    "Glow",
    "IdentityGenerator",
    "LatentGenerator",
    "SemanticTransform",
    "__version__",
    "classifier_guard",
    "create",
    "from_freia",
    "from_normflows",
    "latent_pgd",
    "list_transforms",
    "register_transform",
]
