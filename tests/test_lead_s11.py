"""Session 11 (lead): regressions found while reviewing the session."""

import numpy as np

from conftest import emt_label, skewed_two_element_cell
from hybridpot import HybridPotential
from hybridpot.baselines import EMT
from hybridpot.descriptors import PowerSpectrum
from hybridpot.regression import BayesianLinearRegressor
from hybridpot.uq import LinearPosterior


def test_linear_posterior_starts_every_walker_inside_the_prior_box():
    # a tiny model whose MAP sits at the edge of the prior box: emcee used to start some
    # walkers at log probability -inf and warned "invalid value encountered in scalar
    # subtract" (filterwarnings = error turns that into a failure here)
    train = [emt_label(skewed_two_element_cell(seed=10 + s) * (2, 2, 1)) for s in range(5)]
    model = HybridPotential(
        descriptor=PowerSpectrum(species=["Cu", "Ni"], r_cut=4.0, n_max=2, l_max=1),
        regressor=BayesianLinearRegressor(), baseline=EMT()).fit(train)
    post = LinearPosterior(n_steps=200, n_burn=50, random_state=0).fit(model, train)
    assert np.all(np.isfinite(post.log_prob_))
    assert np.all(np.isfinite(post.chain_))
