"""Sampler base class and the random-state helper."""

from __future__ import annotations

import numbers

import numpy as np
from sklearn.base import BaseEstimator

from .._exceptions import InvalidParameterError

__all__ = ["Sampler", "as_generator"]


def as_generator(random_state, owner="sampler"):
    """A ``numpy.random.Generator`` from an int seed, a Generator (used as is) or None.

    Parameters
    ----------
    random_state : int, numpy.random.Generator or None
        A non-negative int seed, a generator (returned as is) or None (fresh entropy).
    owner : str, default="sampler"
        Named in the error message.

    Returns
    -------
    numpy.random.Generator

    Raises
    ------
    hybridpot.InvalidParameterError
        For anything else (a negative int, a bool, a RandomState, ...).
    """
    if random_state is None or isinstance(random_state, numbers.Integral) and \
            not isinstance(random_state, bool) and random_state >= 0:
        return np.random.default_rng(random_state)
    if isinstance(random_state, np.random.Generator):
        return random_state
    got = (repr(random_state) if isinstance(random_state, numbers.Integral)
           else type(random_state).__name__)
    raise InvalidParameterError(
        f"The 'random_state' argument of {owner} must be a non-negative int, a "
        f"numpy.random.Generator or None. Got {got} instead.")


class Sampler(BaseEstimator):
    """Base class of candidate generators.

    Subclasses store keyword-only hyperparameters in ``__init__`` and implement
    ``sample(n, *, random_state=None, model=None) -> list[ase.Atoms]`` (unlabelled structures;
    ``model`` is the current fitted :class:`~hybridpot.HybridPotential`, needed only by
    model-driven samplers).  Set ``needs_model = True`` when ``model`` is required, and
    ``needs_uncertainty = True`` when its predictive σ is (checked before sampling).  A
    sampler whose ``uses_labels`` is true also takes ``labelled=`` (the learner's training
    structures, in label order), e.g. to continue an MD trajectory from the last label.
    """

    needs_model = False
    #: the sampler uses the model's predictive σ (a posterior): checked by ``_check_model``
    needs_uncertainty = False
    #: ``sample`` takes ``labelled=`` (passed by :class:`~hybridpot.learn.ActiveLearner`)
    uses_labels = False

    def _check_model(self, model):
        if self.needs_model and (model is None or not hasattr(model, "regressor_")):
            raise InvalidParameterError(
                f"{type(self).__name__}.sample needs a fitted HybridPotential as 'model'. "
                f"Got {type(model).__name__} instead.")
        if self.needs_uncertainty and not model._has_posterior():
            raise InvalidParameterError(
                f"{type(self).__name__}.sample steers by the model's predictive σ, but the "
                f"'model' has none (its regressor {type(model.regressor_).__name__} has no "
                "posterior). Use BayesianLinearRegressor, SparseGPRegressor, "
                "NeuralNetworkRegressor(n_models > 1) or an EnsembleRegressor, or give a "
                "linear model a posterior with LinearPosterior(...).fit(model, train)"
                ".apply(model).")
