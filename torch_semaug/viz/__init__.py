"""Figures: sample grids, slider views of latent directions, result plots."""

from torch_semaug.viz.grid import save_grid
from torch_semaug.viz.sliders import slider_grid

__all__ = ["save_grid", "slider_grid"]
