"""Review 2 (session 7) of the samplers: σ-driven samplers refuse a model without σ (they
swallowed the error: MD blamed the temperature, the adversarial sampler returned its rattled
starts), and negative seeds are typed errors."""

import numpy as np
import pytest
from ase.build import bulk

from hybridpot import HybridPotential, InvalidParameterError
from hybridpot.descriptors import PowerSpectrum
from hybridpot.regression import BayesianLinearRegressor, LinearRegressor
from hybridpot.sampling import (AdversarialSampler, PoolSampler, RandomDisorderSampler,
                                RattleStrainSampler, UncertaintyMDSampler)

from conftest import emt_label


def _cells(n, seed):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        a = bulk("Cu", "fcc", a=3.61, cubic=True)
        a.positions += 0.05 * rng.standard_normal(a.positions.shape)
        out.append(emt_label(a, stress=False))
    return out


@pytest.fixture(scope="module")
def train():
    return _cells(4, 0)


def _model(reg, train):
    return HybridPotential(descriptor=PowerSpectrum(species=["Cu"], r_cut=3.5, n_max=2,
                                                    l_max=1), regressor=reg).fit(train)


@pytest.mark.parametrize("sampler", [
    UncertaintyMDSampler(n_steps=4, check_interval=2),
    AdversarialSampler(n_steps=1)], ids=["md", "adversarial"])
def test_sigma_samplers_refuse_a_model_without_sigma(sampler, train):
    lin = _model(LinearRegressor(), train)
    sampler = sampler.set_params(starts=train[:1])
    with pytest.raises(InvalidParameterError,
                       match=rf"{type(sampler).__name__}.sample steers by the model's predictive"
                             r" σ, but the 'model' has none \(its regressor LinearRegressor has"
                             r" no posterior\).*LinearPosterior"):
        sampler.sample(1, random_state=0, model=lin)
    # with a posterior the same sampler works
    blr = _model(BayesianLinearRegressor(noise_levels="shared"), train)
    out = sampler.sample(1, random_state=0, model=blr)
    assert len(out) == 1 and out[0].get_chemical_formula() == "Cu4"
    if isinstance(sampler, AdversarialSampler):
        assert np.isfinite(out[0].info["adversarial_J"])


@pytest.mark.parametrize("sampler", [
    RandomDisorderSampler(), RattleStrainSampler(prototype=bulk("Cu", cubic=True)),
    PoolSampler(structures=[bulk("Cu", cubic=True)] * 2)], ids=["disorder", "rattle", "pool"])
def test_negative_seed_is_a_typed_error(sampler):
    # was numpy's "ValueError: expected non-negative integer"
    with pytest.raises(InvalidParameterError,
                       match=r"'random_state' argument of .*\.sample must be a non-negative "
                             r"int, a numpy.random.Generator or None. Got -1 instead"):
        sampler.sample(1, random_state=-1)
    with pytest.raises(InvalidParameterError, match=r"Got str instead"):
        sampler.sample(1, random_state="0")


def test_reversed_n_atoms_range_names_the_pair():
    # was "The 'n_atoms' parameter ... must be an int in [8, inf]. Got 2 instead." for (8, 2)
    with pytest.raises(InvalidParameterError,
                       match=r"'n_atoms' parameter of RandomDisorderSampler must be an int or a "
                             r"pair \(low, high\) with 1 <= low <= high. Got \(8, 2\) instead"):
        RandomDisorderSampler(n_atoms=(8, 2)).sample(1, random_state=0)
    out = RandomDisorderSampler(n_atoms=(3, 3)).sample(2, random_state=0)
    assert [len(a) for a in out] == [3, 3]
