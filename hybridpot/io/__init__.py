"""Reading and writing models and data: hybridpot model files, LAMMPS SNAP files, extxyz
files with other codes' label names (GAP ``dft_*`` / ``virial``, MACE ``REF_*``)."""

from .extxyz import read_extxyz, standardize_labels
from .model import FORMAT_VERSION, load_model, save_model

__all__ = ["FORMAT_VERSION", "save_model", "load_model", "read_extxyz", "standardize_labels"]
