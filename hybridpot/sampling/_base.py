"""Sampler base class and the random-state helper."""

from __future__ import annotations

import numbers

import numpy as np
from sklearn.base import BaseEstimator

from .._exceptions import InvalidParameterError

__all__ = ["Sampler", "as_generator"]


def as_generator(random_state, owner="sampler"):
    """A ``numpy.random.Generator`` from an int seed, a Generator (used as is) or None."""
    if random_state is None or isinstance(random_state, numbers.Integral) and \
            not isinstance(random_state, bool):
        return np.random.default_rng(random_state)
    if isinstance(random_state, np.random.Generator):
        return random_state
    raise InvalidParameterError(
        f"The 'random_state' argument of {owner} must be an int, a numpy.random.Generator or "
        f"None. Got {type(random_state).__name__} instead.")


class Sampler(BaseEstimator):
    """Base class of candidate generators.

    Subclasses store keyword-only hyperparameters in ``__init__`` and implement
    ``sample(n, *, random_state=None, model=None) -> list[ase.Atoms]`` (unlabelled structures;
    ``model`` is the current fitted :class:`~hybridpot.HybridPotential`, needed only by
    model-driven samplers).  Set ``needs_model = True`` when ``model`` is required.
    """

    needs_model = False

    def _check_model(self, model):
        if self.needs_model and (model is None or not hasattr(model, "regressor_")):
            raise InvalidParameterError(
                f"{type(self).__name__}.sample needs a fitted HybridPotential as 'model'. "
                f"Got {type(model).__name__} instead.")
