"""Reading and writing models and data: hybridpot model files, LAMMPS SNAP files."""

from .model import FORMAT_VERSION, load_model, save_model

__all__ = ["FORMAT_VERSION", "save_model", "load_model"]
