"""Regressors for the per-atom ML energy (scikit-learn estimators)."""

from ._base import (KINDS, REGRESSORS, VOIGT, BatchSource, Regressor, StructureBatch,
                    register_regressor)

__all__ = ["Regressor", "StructureBatch", "BatchSource", "REGRESSORS", "register_regressor", "KINDS", "VOIGT"]

from ._nn import NeuralNetworkRegressor  # noqa: E402

__all__.append("NeuralNetworkRegressor")

from ._linear import BayesianLinearRegressor, LinearRegressor  # noqa: E402

__all__ += ["LinearRegressor", "BayesianLinearRegressor"]

from ._gp import SparseGPRegressor  # noqa: E402

__all__.append("SparseGPRegressor")
