"""Regressors for the per-atom ML energy (scikit-learn estimators)."""

from ._ard import ARDLinearRegressor
from ._base import (KINDS, REGRESSORS, VOIGT, BatchSource, Regressor, StructureBatch,
                    register_regressor)
from ._ensemble import EnsembleRegressor
from ._gp import SparseGPRegressor
from ._linear import BayesianLinearRegressor, LinearRegressor
from ._nn import NeuralNetworkRegressor
from ._prior import feature_degrees, smoothness_prior

__all__ = ["LinearRegressor", "BayesianLinearRegressor", "SparseGPRegressor",
           "NeuralNetworkRegressor", "EnsembleRegressor", "ARDLinearRegressor", "Regressor",
           "StructureBatch", "BatchSource",
           "REGRESSORS", "register_regressor", "KINDS", "VOIGT", "feature_degrees",
           "smoothness_prior"]
