"""Heteroscedastic recalibration of σ (hybridpot.uq.recalibrate, method="heteroscedastic*").

Synthetic truth: labels are the model's own predictions plus Gaussian noise of a known
heteroscedastic standard deviation, so a correct recalibration recovers that noise model
and gives Gaussian coverage on fresh structures.
"""

import json
import zipfile

import numpy as np
import pytest
from ase.calculators.singlepoint import SinglePointCalculator

from hybridpot import HybridPotential, InvalidParameterError
from hybridpot._exceptions import ModelFormatError
from hybridpot.descriptors import PowerSpectrum
from hybridpot.regression import BayesianLinearRegressor
from hybridpot.uq import LinearPosterior, evaluate_uncertainty, recalibrate
from hybridpot.uq._calibration import (GAUSS_1SIGMA, GAUSS_2SIGMA, _balance_factor,
                                       _fit_variance_model, _hetero_var,
                                       _variance_objective, check_recalibration_state)

from conftest import emt_dataset

#: true noise of the synthetic labels: force sd = sqrt((C_F |F_i|)^2 + D_F^2) eV/Å
C_F, D_F = 0.08, 0.004
E_SD, S_SD = 2e-3, 2e-4  # eV/atom, eV/Å³


def _model(reg=None):
    desc = PowerSpectrum(species=["Cu"], r_cut=4.0, n_max=3, l_max=2)
    return HybridPotential(descriptor=desc, regressor=reg or BayesianLinearRegressor())


def _synthetic(model, structures, seed):
    """Copies of ``structures`` labelled with the model's predictions plus known noise."""
    rng = np.random.default_rng(seed)
    out = []
    for at in structures:
        r = model._evaluate(at, forces=True, stress=True)
        f = r["forces"]
        sd = np.sqrt((C_F * np.linalg.norm(f, axis=1, keepdims=True)) ** 2 + D_F ** 2)
        a = at.copy()
        a.calc = SinglePointCalculator(
            a, energy=r["energy"] + len(a) * E_SD * rng.normal(),
            forces=f + sd * rng.normal(size=f.shape),
            stress=r["stress"] + S_SD * rng.normal(size=6))
        out.append(a)
    return out


@pytest.fixture(scope="module")
def fitted():
    """A small Cu model with an emcee posterior committee, fitted on EMT labels."""
    train = emt_dataset(8, seed=11)
    model = _model().fit(train)
    LinearPosterior(n_steps=300, n_burn=100, random_state=0).fit(model, train) \
        .apply(model, force=True, random_state=0)
    pool = emt_dataset(48, seed=12, stress=True)
    val = _synthetic(model, pool[:24], seed=1)
    test = _synthetic(model, pool[24:], seed=2)
    return model, val, test


# ------------------------------------------------------------------ the variance model
def test_variance_model_recovers_known_parameters():
    """MLE of a, gamma, b, c on arrays drawn from the model itself."""
    rng = np.random.default_rng(0)
    n = 20000
    vp = 10 ** rng.uniform(-8, -4, n)
    vn = np.full(n, 1e-4)
    f2 = rng.exponential(1.0, n)
    ref = float(np.sqrt(np.mean(vp)))
    true = {"a": 0.0, "a_pow": 20.0, "gamma": 0.6, "b": 0.5, "c": 1e-4, "d": 0.0, "ref": ref,
            "k": 1.0}
    err = rng.normal(size=n) * np.sqrt(_hetero_var(true, vp, vn, f2))
    p = _fit_variance_model(err, vp, vn, f2, use_force=True)
    # the variance (linear + power law in sigma_param, noise, force) is recovered over the
    # 4 decades of sigma_param; the parameter part where it is not negligible, the noise
    # and force coefficients individually
    ratio = _hetero_var(p, vp, vn, f2) / _hetero_var(true, vp, vn, f2)
    assert np.max(np.abs(ratio - 1)) < 0.1 and np.median(np.abs(ratio - 1)) < 0.03
    zero = np.zeros(n)
    big = vp > 1e-6
    ratio = _hetero_var(p, vp, zero, zero)[big] / _hetero_var(true, vp, zero, zero)[big]
    assert np.max(np.abs(ratio - 1)) < 0.12
    # (a flat power law can take a little of the constant noise)
    assert p["b"] == pytest.approx(0.5, rel=0.2)
    assert p["c"] == pytest.approx(1e-4, rel=0.15)
    assert p["d"] == 0.0 and p["k"] == 1.0
    # coverage of fresh draws from the same model with the fitted σ
    err2 = rng.normal(size=n) * np.sqrt(_hetero_var(true, vp, vn, f2))
    z = np.abs(err2) / np.sqrt(_hetero_var(p, vp, vn, f2))
    assert np.mean(z <= 1) == pytest.approx(GAUSS_1SIGMA, abs=0.01)
    assert np.mean(z <= 2) == pytest.approx(GAUSS_2SIGMA, abs=0.01)


@pytest.mark.parametrize("use_force,noise", [(True, True), (False, False)])
def test_variance_objective_gradient_matches_central_differences(use_force, noise):
    rng = np.random.default_rng(3)
    n = 500
    vp = 10 ** rng.uniform(-8, -3, n)
    vp[:5] = 0.0  # sigma_param exactly zero (symmetry) must not give NaN
    vn = np.full(n, 1e-4) if noise else np.zeros(n)
    f2 = rng.exponential(1.0, n)
    err = rng.normal(size=n) * np.sqrt(3.0 * vp + 1e-4 + 1e-4 * f2)
    nll, unpack, n_x, _, _ = _variance_objective(err, vp, vn, f2, use_force)
    x = rng.normal(size=n_x)
    f0, g = nll(x)
    h = 1e-6
    fd = np.array([(nll(x + h * e)[0] - nll(x - h * e)[0]) / (2 * h) for e in np.eye(n_x)])
    np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-9)
    # the objective is the mean Gaussian NLL of the unpacked model (up to a constant)
    v = _hetero_var(unpack(x), vp, vn, f2)
    ref = np.mean(0.5 * np.log(v) + 0.5 * err ** 2 / v)
    assert f0 - ref == pytest.approx(-0.5 * np.log(np.mean(err ** 2)), abs=1e-9)


def test_variance_model_without_noise_part_fits_a_floor():
    rng = np.random.default_rng(1)
    n = 20000
    vp = 10 ** rng.uniform(-6, -2, n)
    err = rng.normal(size=n) * np.sqrt(2.0 * vp + 1e-5)
    p = _fit_variance_model(err, vp, np.zeros(n), np.zeros(n), use_force=False)
    assert p["b"] == 0.0 and p["c"] == 0.0
    # the floor d and a flat power law (gamma -> 0) may share the 1e-5; the variance
    # over the 4 decades of sigma_param is what counts
    ratio = _hetero_var(p, vp, np.zeros(n), np.zeros(n)) / (2.0 * vp + 1e-5)
    assert np.max(np.abs(ratio - 1)) < 0.1


def test_balance_factor_on_gaussian_and_heavy_tailed_z():
    rng = np.random.default_rng(2)
    z = rng.normal(size=50000)
    assert _balance_factor(z, np.ones_like(z)) == pytest.approx(1.0, abs=0.03)
    # Laplace errors: one factor cannot give 68.27 % and 95.45 %; the balance keeps both
    # within their tolerances (5 % and 3 %)
    e = rng.laplace(size=50000)
    k = _balance_factor(e, np.ones_like(e))
    c1, c2 = np.mean(np.abs(e) <= k), np.mean(np.abs(e) <= 2 * k)
    assert abs(c1 - GAUSS_1SIGMA) <= 0.05 and abs(c2 - GAUSS_2SIGMA) <= 0.03


# ------------------------------------------------------------------ through the model
def test_heteroscedastic_recovers_synthetic_noise_model(fitted):
    model, val, test = fitted
    params = recalibrate(model, val, method="heteroscedastic")
    assert set(params) == {"energy", "forces", "stress"}
    pf = params["forces"]
    # committee noise is constant here, so b * sigma_noise^2 is the floor D_F^2 and
    # c the squared slope C_F^2 of the synthetic force noise
    assert pf["c"] == pytest.approx(C_F ** 2, rel=0.2)
    assert model.uncertainty_recalibration_["method"] == "heteroscedastic"
    assert not hasattr(model, "uncertainty_scale_")
    met = evaluate_uncertainty(model, test)
    assert met["forces"]["coverage_1sigma"] == pytest.approx(GAUSS_1SIGMA, abs=0.03)
    assert met["forces"]["coverage_2sigma"] == pytest.approx(GAUSS_2SIGMA, abs=0.03)
    # a single factor on the old σ does not capture the force-dependent noise
    nll_hetero = met["forces"]["nll"]
    recalibrate(model, val, method="nll")
    assert not hasattr(model, "uncertainty_recalibration_")
    assert evaluate_uncertainty(model, test)["forces"]["nll"] > nll_hetero + 0.1


def test_heteroscedastic_applies_to_energy_forces_stress_and_calculator(fitted, tmp_path):
    model, val, test = fitted
    params = recalibrate(model, val, method="heteroscedastic_coverage")
    assert all(p["k"] > 0 for p in params.values())
    at = test[0]
    raw = model._evaluate(at, return_std=True, recalibrated=False)
    new = model._evaluate(at, return_std=True)
    com = model.uncertainty_
    # the recalibrated σ is the documented formula applied to the raw parts
    pf = params["forces"]
    vn = com._noise("forces", "default") * com.inflation.get("forces", 1.0)
    vp = np.maximum(raw["forces_std"] ** 2 - vn, 0.0)
    f2 = np.sum(raw["forces"] ** 2, axis=1)[:, None]
    expect = pf["k"] * np.sqrt(pf["a"] * vp + pf["a_pow"] * pf["ref"] ** 2
                               * (vp / pf["ref"] ** 2) ** pf["gamma"]
                               + pf["b"] * vn + pf["c"] * f2 + pf["d"])
    np.testing.assert_allclose(new["forces_std"], expect, rtol=1e-10)
    assert new["energy_std"] != pytest.approx(raw["energy_std"], rel=1e-3)
    assert not np.allclose(new["stress_std"], raw["stress_std"])
    np.testing.assert_allclose(new["forces"], raw["forces"])
    a = at.copy()
    a.calc = model.calculator(uncertainty=True)
    a.get_potential_energy()
    res = a.calc.results
    np.testing.assert_allclose(res["forces_std"], new["forces_std"], rtol=1e-10)
    np.testing.assert_allclose(res["stress_std"], new["stress_std"], rtol=1e-10)
    assert res["energy_std"] == pytest.approx(new["energy_std"], rel=1e-10)
    # save / load keeps it (plain JSON floats, versioned)
    model.save(tmp_path / "m.hpot")
    with zipfile.ZipFile(tmp_path / "m.hpot") as zf:
        doc = json.loads(zf.read("model.json"))
    state = doc["extra"]["uncertainty_recalibration"]
    assert state["version"] == 2 and state["method"] == "heteroscedastic_coverage"
    assert state["regressor_noise"] is False     # the committee carries the noise part
    loaded = HybridPotential.load(tmp_path / "m.hpot")
    assert loaded.uncertainty_recalibration_ == model.uncertainty_recalibration_
    again = loaded._evaluate(at, return_std=True)
    for key in ("energy_std", "forces_std", "stress_std"):
        np.testing.assert_allclose(again[key], new[key], rtol=1e-10)
    # refitting drops it
    loaded.fit(val[:4])
    assert not hasattr(loaded, "uncertainty_recalibration_")


def test_heteroscedastic_without_committee_uses_regressor_sigma(fitted):
    _, val, test = fitted
    model = _model().fit(val[:8])
    params = recalibrate(model, val[8:], method="heteroscedastic")
    assert params["forces"]["b"] == 0.0 and params["forces"]["d"] > 0
    met = evaluate_uncertainty(model, test)
    assert met["forces"]["coverage_2sigma"] == pytest.approx(GAUSS_2SIGMA, abs=0.03)


def test_split_after_heteroscedastic_replaces_it(fitted):
    model, val, _ = fitted
    recalibrate(model, val, method="heteroscedastic")
    assert model.uncertainty_.param_scale == {} and model.uncertainty_.noise_scale == {}
    recalibrate(model, val, method="split")
    assert not hasattr(model, "uncertainty_recalibration_")
    assert set(model.uncertainty_.param_scale) == {"energy", "forces", "stress"}
    # nll after split replaces it (one factor on the raw σ, mean z^2 = 1), not stacks
    recalibrate(model, val, method="nll")
    assert model.uncertainty_.param_scale == {} and model.uncertainty_.noise_scale == {}
    assert evaluate_uncertainty(model, val)["forces"]["mean_z2"] == pytest.approx(1.0,
                                                                                 rel=1e-9)


# ------------------------------------------------------------------ errors
@pytest.mark.parametrize("bad", ["isotonic", "Heteroscedastic", 3, None])
def test_bad_method_names_raise_typed_error(fitted, bad):
    model, val, _ = fitted
    with pytest.raises(InvalidParameterError,
                       match=r"'method' parameter of recalibrate must be one of \['nll', "
                             r"'coverage', 'split', 'heteroscedastic', "
                             r"'heteroscedastic_coverage'\]\. Got .* instead"):
        recalibrate(model, val[:2], method=bad)
    with pytest.raises(InvalidParameterError, match="'method' parameter of recalibrate"):
        model.recalibrate(val[:2], method=bad)


def test_corrupt_recalibration_state_raises_model_format_error():
    good = {"version": 2, "method": "heteroscedastic",
            "kinds": {"forces": {"a": 1.0, "a_pow": 0.0, "gamma": 1.0, "b": 1.0, "c": 0.0,
                                 "d": 0.0, "ref": 1.0, "k": 1.0}}, "regressor_noise": True}
    assert check_recalibration_state(good) == good
    # version 1 (before the sparse GP's noise split) reads as regressor_noise = False
    v1 = {k: v for k, v in good.items() if k != "regressor_noise"}
    assert check_recalibration_state({**v1, "version": 1}) == {**good, "regressor_noise": False}
    with pytest.raises(ModelFormatError, match=r"version 3; this hybridpot reads versions "
                                               r"\[1, 2\]"):
        check_recalibration_state({**good, "version": 3})
    with pytest.raises(ModelFormatError, match="'regressor_noise' flag .* Got 'yes'"):
        check_recalibration_state({**good, "regressor_noise": "yes"})
    with pytest.raises(ModelFormatError, match="method 'isotonic'; allowed"):
        check_recalibration_state({**good, "method": "isotonic"})
    bad = {**good, "kinds": {"forces": {**good["kinds"]["forces"], "k": -1.0}}}
    with pytest.raises(ModelFormatError, match="finite and >= 0"):
        check_recalibration_state(bad)
    bad = {**good, "kinds": {"forces": {"a": 1.0}}}
    with pytest.raises(ModelFormatError, match="corrupt kind 'forces'"):
        check_recalibration_state(bad)
