"""Direction discovery (GANSpace PCA, NaTra UMAP + regression), saved and loaded as a small file."""

from torch_semaug.directions.directions import Directions
from torch_semaug.directions.find import find_directions, regress_to_latent

__all__ = ["Directions", "find_directions", "regress_to_latent"]
