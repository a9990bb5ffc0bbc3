"""Review s10 (code review of the session's additions): regression tests of the fixes."""

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk

from hybridpot import HybridPotential, InvalidParameterError
from hybridpot.descriptors import PowerSpectrum
from hybridpot.regression import LinearRegressor
from hybridpot.report import error_table, format_error_table

from conftest import emt_label


@pytest.fixture(scope="module")
def cu_model():
    structs = []
    for k in range(5):
        at = bulk("Cu", "fcc", a=3.61, cubic=True)
        at.rattle(0.1, seed=k)
        structs.append(emt_label(at))
    desc = PowerSpectrum(species=("Cu",), r_cut=4.0, n_max=3, l_max=2)
    return HybridPotential(descriptor=desc, regressor=LinearRegressor()).fit(structs), structs


def test_error_table_group_named_all_is_not_the_overall_row(cu_model):
    """A config_type literally named 'all' was merged into (overwritten by) the overall row."""
    model, structs = cu_model
    cl = emt_label(Atoms("Cu3", positions=[[0, 0, 0], [2.5, 0, 0], [0, 2.5, 0]]), stress=False)
    cl.info["config_type"] = "cluster"
    bulk_all = structs[0].copy()
    bulk_all.calc = structs[0].calc
    bulk_all.info["config_type"] = "all"
    table = error_table(model, [cl, bulk_all])
    assert list(table) == ["cluster", "all (config_type)", "all"]
    assert table["all"]["n_structures"] == 2
    assert table["all (config_type)"]["n_structures"] == 1
    alone = error_table(model, [structs[0]])["all"]
    assert table["all (config_type)"]["energy_mae"] == pytest.approx(alone["energy_mae"])
    assert table["all (config_type)"]["stress_rmse"] == pytest.approx(alone["stress_rmse"])
    rows = format_error_table(table).splitlines()
    assert [r.split()[0] for r in rows[2:]] == ["cluster", "all", "all"]
    assert rows[3].split()[:3] == ["all", "(config_type)", "1"]   # full name, aligned columns
    assert len({len(r) for r in rows}) == 1


def test_format_error_table_keeps_long_group_names(cu_model):
    """Names were cut at 16 characters: 'AIMD_NVT_300K_bulk' and 'AIMD_NVT_300K_surface' both
    printed as 'AIMD_NVT_300K_bu' / 'AIMD_NVT_300K_su' at best, and two names sharing 16
    characters printed as the same row label."""
    model, structs = cu_model
    a, b = (s.copy() for s in structs[:2])
    a.calc, b.calc = structs[0].calc, structs[1].calc
    a.info["config_type"] = "AIMD_NVT_300K_bulk_a"
    b.info["config_type"] = "AIMD_NVT_300K_bulk_b"
    rows = format_error_table(error_table(model, [a, b])).splitlines()
    assert [r.split()[0] for r in rows[2:]] == ["AIMD_NVT_300K_bulk_a", "AIMD_NVT_300K_bulk_b",
                                                "all"]
    assert len({len(r) for r in rows}) == 1   # header, units and rows aligned


@pytest.mark.parametrize("value, got", [
    ("abc", r"Got 'abc' instead"),
    ({"p": 4}, r"Got \{'p': 4\} instead"),
    ([1.0, 2.0], r"Got shape \(2,\), minimum 1 instead"),
    ([1.0, np.nan, 1.0, 1.0], r"Got shape \(4,\) with 1 non-finite value\(s\) instead"),
    ([1.0, 1.0, 1.0, -2.0], r"Got shape \(4,\), minimum -2 instead"),
])
def test_prior_scale_message_names_what_was_given(value, got):
    """A non-numeric or NaN prior_scale gave 'Got shape (1,), minimum nan' and numpy's
    'All-NaN slice' RuntimeWarning (an error under -W error) instead of the typed error."""
    A = np.random.default_rng(0).normal(size=(12, 4))
    with pytest.raises(InvalidParameterError,
                       match=r"'prior_scale' parameter of LinearRegressor must be None or 4 "
                             r"finite values > 0 .*" + got):
        LinearRegressor(prior_scale=value).fit(A, A.sum(axis=1))


def test_ard_takes_scale_floor(tmp_path):
    """ARDLinearRegressor documents BayesianLinearRegressor's column scaling but had no
    scale_floor: ARDLinearRegressor(scale_floor=...) was a TypeError, set_params a ValueError,
    and [regressor] scale_floor in a config was refused."""
    from sklearn.base import clone

    from hybridpot.regression import ARDLinearRegressor
    from hybridpot.regression._linear import _floored_rms

    rng = np.random.default_rng(1)
    A = rng.normal(size=(40, 5))
    A[:, 4] *= 1e-6                       # a column that barely varies in training
    y = A[:, :4] @ np.array([1.0, -2.0, 0.5, 0.0]) + 0.01 * rng.normal(size=40)
    d = np.sqrt(np.mean(A ** 2, axis=0))
    for f in (0.0, 1e-3, 0.05):
        r = ARDLinearRegressor(scale_floor=f, threshold_lambda=np.inf).fit(A, y)
        assert r.get_params()["scale_floor"] == f
        # lambda_ is the precision of D_j c_j: D (the floored RMS) is penalty_scale_ / sqrt(lambda)
        np.testing.assert_allclose(r.penalty_scale_ / np.sqrt(r.lambda_),
                                   _floored_rms(d, np.zeros(5, bool), None, 5, False, floor=f),
                                   rtol=1e-10)
    assert clone(ARDLinearRegressor(scale_floor=0.05)).scale_floor == 0.05
    with pytest.raises(InvalidParameterError,
                       match=r"'scale_floor' parameter of ARDLinearRegressor must be a float "
                             r"in \[0, 1\]. Got 2 instead"):
        ARDLinearRegressor(scale_floor=2).fit(A, y)


@pytest.mark.parametrize("scaling", ["rms", "none"])
def test_linear_posterior_prior_is_the_regressors(scaling):
    """LinearPosterior's factors always used the RMS column scaling: for a
    BayesianLinearRegressor(penalty_scaling='none') its prior was that of another model
    (per-column prior scales off by up to 5.6e3 on a Cu/Ni power spectrum), so the emcee σ
    was not the model's.  Now the factors' prior D sqrt(b2) is the regressor's
    penalty_scale_, and the weight posterior at the regressor's (alpha_, beta) is its own."""
    from hybridpot.regression import BayesianLinearRegressor
    from hybridpot.uq import LinearPosterior
    from hybridpot.uq._accumulate import accumulate_factors

    structs = []
    for k in range(4):
        at = bulk("Cu", "fcc", a=3.61, cubic=True)
        if k % 2:
            at[1].symbol = "Ni"
        at.rattle(0.1, seed=k)
        structs.append(emt_label(at))
    desc = PowerSpectrum(species=("Cu", "Ni"), r_cut=3.5, n_max=2, l_max=1)
    model = HybridPotential(descriptor=desc, regressor=BayesianLinearRegressor(
        penalty_scaling=scaling)).fit(structs)
    reg = model.regressor_
    fac = accumulate_factors(model, structs)
    np.testing.assert_allclose(fac.D * np.sqrt(fac.b2), reg.penalty_scale_, rtol=1e-10)
    post = LinearPosterior()
    post._set_factors(fac)
    theta = post._initial_theta(reg)   # log alpha_, -2 log noise_[kind]
    assert theta[0] == pytest.approx(np.log(reg.alpha_))
    mean, _ = post.weight_posterior(theta)
    np.testing.assert_allclose(mean, reg.coef_.ravel(), rtol=1e-6,
                               atol=1e-8 * np.abs(reg.coef_).max())


def test_ard_sample_coef_keeps_pruned_columns_at_zero():
    """ARD's coef_ has exact zeros in pruned columns, but sample_coef drew ~1e-9 there (the
    huge pruned prior precision is finite): a member exported to LAMMPS carried the pruned
    basis.  The active columns keep the posterior covariance."""
    from hybridpot.regression import ARDLinearRegressor

    rng = np.random.default_rng(1)
    A = rng.normal(size=(60, 6)) * np.array([1.0, 2.0, 0.1, 5.0, 1.0, 1.0])
    y = A[:, :3] @ np.array([1.0, -2.0, 0.5]) + 0.01 * rng.normal(size=60)
    r = ARDLinearRegressor(max_iter=500, tol=1e-10).fit(A, y)
    off = ~r.active_
    assert off.sum() >= 2 and np.all(r.coef_[off] == 0.0)
    d = r.sample_coef(4000, random_state=0)
    assert np.all(d[:, off] == 0.0)
    on = r.active_
    S = r.sigma_[np.ix_(on, on)]
    np.testing.assert_allclose(np.cov(d[:, on].T), S, atol=0.1 * np.abs(S).max())
    np.testing.assert_allclose(d[:, on].mean(axis=0), r.coef_[on],
                               atol=5 * np.sqrt(np.diag(S).max() / 4000))


@pytest.mark.parametrize("thr", [1e4, np.inf])
def test_ard_without_lambda_hyperprior_and_a_zero_column(thr, tmp_path):
    """lambda_1 = lambda_2 = 0 (allowed: an uninformative hyperprior) with a column that is zero
    in the data (an element of the descriptor absent from training, a cross-species channel)
    gave lambda = 0/0 = NaN: NaN coefficients and energies with no error.  Such a column is now
    pruned (infinite precision), also with threshold_lambda = inf."""
    from hybridpot.regression import ARDLinearRegressor

    rng = np.random.default_rng(0)
    A = rng.normal(size=(30, 4))
    A[:, 3] = 0.0
    y = A[:, 0] - 0.5 * A[:, 1] + 0.01 * rng.normal(size=30)
    r = ARDLinearRegressor(penalty_scaling="none", lambda_1=0.0, lambda_2=0.0,
                           threshold_lambda=thr).fit(A, y)
    assert np.all(np.isfinite(r.coef_)) and np.all(np.isfinite(r.sigma_))
    assert not r.active_[3] and r.coef_[3] == 0.0
    np.testing.assert_allclose(r.coef_[:2], [1.0, -0.5], atol=0.01)
    mu, sd = r.predict(A[:3], return_std=True)
    assert np.all(np.isfinite(mu)) and np.all(np.isfinite(sd))
    # through a model: a Cu/Ni descriptor fitted on Cu only (the Ni block is zero)
    structs = []
    for k in range(3):
        at = bulk("Cu", "fcc", a=3.61, cubic=True)
        at.rattle(0.1, seed=k)
        structs.append(emt_label(at))
    desc = PowerSpectrum(species=("Cu", "Ni"), r_cut=3.5, n_max=2, l_max=1)
    model = HybridPotential(descriptor=desc, regressor=ARDLinearRegressor(
        lambda_1=0.0, lambda_2=0.0, threshold_lambda=thr, max_iter=30))
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(structs)
    e = model.predict(structs)
    assert np.all(np.isfinite(e))
    assert np.max(np.abs(e - [s.get_potential_energy() for s in structs])) < 0.05
    assert np.all(np.isfinite(model.regressor_.lambda_))   # model files hold finite arrays
    model.save(tmp_path / "ard.hpot")
    back = HybridPotential.load(tmp_path / "ard.hpot")
    np.testing.assert_allclose(back.predict(structs), e, rtol=1e-12)
    np.testing.assert_array_equal(back.regressor_.active_, model.regressor_.active_)
