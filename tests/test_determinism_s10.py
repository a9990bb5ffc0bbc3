"""Determinism / reproducibility review (s10): the same ``random_state`` gives the same model,
and ``random_state=None`` never touches numpy's global random state."""

import numpy as np
import pytest

from conftest import emt_dataset
from hybridpot import HybridPotential
from hybridpot.descriptors import PowerSpectrum
from hybridpot.regression import BayesianLinearRegressor, SparseGPRegressor
from hybridpot.uq import LinearPosterior


@pytest.fixture(scope="module")
def train():
    return emt_dataset(4, 0)


def _desc():
    return PowerSpectrum(species=["Cu"], r_cut=4.0, n_max=3, l_max=2)


def _global_state():
    st = np.random.get_state()
    return st[1].copy(), st[2], st[3], st[4]


def _assert_global_untouched(fn):
    np.random.seed(12345)
    before = _global_state()
    out = fn()
    after = _global_state()
    assert np.array_equal(before[0], after[0]) and before[1:] == after[1:], \
        "numpy's global random state was advanced"
    return out


@pytest.mark.parametrize("method", ["cur", "fps"])
def test_sparse_gp_none_leaves_global_state(train, method):
    m = HybridPotential(descriptor=_desc(),
                        regressor=SparseGPRegressor(n_sparse=10, sparse_method=method))
    _assert_global_untouched(lambda: m.fit(train))
    assert m.regressor_.inducing_.shape[0] == 10


def test_linear_posterior_none_leaves_global_state(train):
    m = HybridPotential(descriptor=_desc(), regressor=BayesianLinearRegressor()).fit(train)
    post = LinearPosterior(n_steps=20, n_burn=5)
    _assert_global_untouched(lambda: post.fit(m, train))
    th = _assert_global_untouched(lambda: post.samples(10, force=True))
    assert th.shape[0] == 10
    com = _assert_global_untouched(lambda: post.committee(8, force=True))
    assert com is not None
