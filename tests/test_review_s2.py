"""Regression tests for defects found in the session-2 review (one test per fixed behaviour)."""

import numpy as np
import pytest

from hybridpot import HybridPotential
from hybridpot.descriptors import PowerSpectrum
from hybridpot.regression import BayesianLinearRegressor
from hybridpot.uq import recalibrate

from conftest import emt_dataset


@pytest.fixture(scope="module")
def model_and_val():
    desc = PowerSpectrum(species=["Cu"], r_cut=4.0, n_max=3, l_max=2)
    model = HybridPotential(descriptor=desc, regressor=BayesianLinearRegressor())
    model.fit(emt_dataset(6, seed=21, reps=(1, 1, 1)))
    return model, emt_dataset(6, seed=22, reps=(1, 1, 1))


@pytest.mark.parametrize("method", ["nll", "coverage", "heteroscedastic",
                                    "heteroscedastic_coverage"])
def test_recalibrate_accepts_a_one_shot_iterator(model_and_val, method):
    """The heteroscedastic methods read the structures twice (σ, then sizes and groups): a
    generator such as ``ase.io.iread`` was exhausted by the first pass."""
    model, val = model_and_val
    from_list = recalibrate(model, list(val), method=method)
    from_iter = recalibrate(model, (a for a in val), method=method)
    assert from_iter.keys() == from_list.keys() == {"energy", "forces", "stress"}
    for kind, v in from_list.items():
        if isinstance(v, dict):
            assert from_iter[kind] == pytest.approx(v, rel=1e-9)
        else:
            assert from_iter[kind] == pytest.approx(v, rel=1e-12)
