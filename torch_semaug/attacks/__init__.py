"""Latent-space optimisation shared by every adversarial mode."""

from torch_semaug.attacks.adaptive import AdaptiveEps, dirichlet_ones
from torch_semaug.attacks.guard import classifier_guard, unwrap_model
from torch_semaug.attacks.memory import AttackMemory
from torch_semaug.attacks.pgd import AttackResult, latent_mask, latent_pgd, project, random_delta

__all__ = [
    "AdaptiveEps",
    "AttackMemory",
    "AttackResult",
    "classifier_guard",
    "dirichlet_ones",
    "latent_mask",
    "latent_pgd",
    "project",
    "random_delta",
    "unwrap_model",
]
