"""Regressors for the per-atom ML energy (scikit-learn estimators)."""

from ._base import KINDS, REGRESSORS, VOIGT, Regressor, StructureBatch, register_regressor

__all__ = ["Regressor", "StructureBatch", "REGRESSORS", "register_regressor", "KINDS", "VOIGT"]
