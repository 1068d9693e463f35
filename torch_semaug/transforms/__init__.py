"""The nn.Module transforms users see; each registers itself under a name for :func:`create`."""

from torch_semaug.transforms.adversarial_latent_attack import AdversarialLatentAttack
from torch_semaug.transforms.attack import AttackProblem
from torch_semaug.transforms.base import MoveContext, SemanticTransform
from torch_semaug.transforms.direction_edit import DirectionEdit
from torch_semaug.transforms.flow_perturb import FlowPerturb
from torch_semaug.transforms.latent_mix import LatentMix
from torch_semaug.transforms.registry import create, get_transform_class, list_transforms, register_transform

__all__ = [
    "AdversarialLatentAttack",
    "AttackProblem",
    "DirectionEdit",
    "FlowPerturb",
    "LatentMix",
    "MoveContext",
    "SemanticTransform",
    "create",
    "get_transform_class",
    "list_transforms",
    "register_transform",
]
