"""Latent-space optimisation shared by every adversarial mode."""

from torch_semaug.attacks.guard import classifier_guard, unwrap_model
from torch_semaug.attacks.pgd import AttackResult, latent_mask, latent_pgd, project, random_delta

__all__ = [
    "AttackResult",
    "classifier_guard",
    "latent_mask",
    "latent_pgd",
    "project",
    "random_delta",
    "unwrap_model",
]
