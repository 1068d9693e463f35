"""Datasets: the latent cache and LatentDataset (cached latents served with each sample)."""

from torch_semaug.data.latent_cache import LatentCache, dataset_fingerprint, encoder_provenance, generator_fingerprint
from torch_semaug.data.latent_dataset import LatentDataset

__all__ = ["LatentCache", "LatentDataset", "dataset_fingerprint", "encoder_provenance", "generator_fingerprint"]
