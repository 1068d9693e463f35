"""torch_semaug: semantic data augmentation through frozen generative models."""

from torch_semaug.attacks import AdaptiveEps, AttackMemory, classifier_guard, latent_pgd
from torch_semaug.directions import Directions, find_directions
from torch_semaug.generators import (
    Glow,
    IdentityGenerator,
    LatentGenerator,
    StyleGAN2,
    from_freia,
    from_normflows,
    load_generator,
)
from torch_semaug.transforms import (
    AdversarialLatentAttack,
    DirectionEdit,
    FlowPerturb,
    LatentMix,
    SemanticTransform,
    create,
    list_transforms,
    register_transform,
)

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "AdaptiveEps",
    "AttackMemory",
    "AdversarialLatentAttack",
    "classifier_guard",
    "create",
    "DirectionEdit",
    "Directions",
    "find_directions",
    "FlowPerturb",
    "from_freia",
    "from_normflows",
    "Glow",
    "IdentityGenerator",
    "latent_pgd",
    "LatentGenerator",
    "LatentMix",
    "list_transforms",
    "load_generator",
    "register_transform",
    "SemanticTransform",
    "StyleGAN2",
]
