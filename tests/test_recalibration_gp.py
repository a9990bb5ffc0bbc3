"""Heteroscedastic recalibration of a sparse GP's σ (no posterior committee).

The GP's predictive σ includes its fitted observation noise; the variance model keeps that
part apart (``b sigma_noise^2``) from the parameter / DTC part that varies between
environments, for a single GP and for an EnsembleRegressor of GPs.
"""

import numpy as np
import pytest

from hybridpot import HybridPotential
from hybridpot import regression as R
from hybridpot.baselines import LennardJones
from hybridpot.descriptors import PowerSpectrum
from hybridpot.uq import evaluate_uncertainty, recalibrate
from hybridpot.uq._calibration import _hetero_var

from conftest import emt_dataset


@pytest.fixture(scope="module")
def data():
    return emt_dataset(8, seed=41), emt_dataset(5, seed=42), emt_dataset(3, seed=43)


def _model(reg):
    return HybridPotential(PowerSpectrum(species=["Cu"], r_cut=4.2, n_max=3, l_max=2), reg,
                           LennardJones(epsilon=0.02, sigma=2.3, r_cut=4.2),
                           weights={"energy": 1.0, "forces": 1.0, "stress": 0.0})


def _gp(**kw):
    return R.SparseGPRegressor(kernel="se", n_sparse=20, length_scale=2.0,
                               noise={"energy": 0.002, "forces": 0.05}, **kw)


@pytest.mark.parametrize("ensemble", [False, True])
def test_gp_noise_part_is_split_off(data, ensemble):
    train, val, test = data
    reg = R.EnsembleRegressor(estimator=_gp(), n_models=2, random_state=0) if ensemble \
        else _gp(random_state=0)
    model = _model(reg).fit(train)
    noise = model.regressor_._predictive_noise_std("forces")
    if ensemble:
        members = [m._predictive_noise_std("forces") for m in model.regressor_.estimators_]
        assert noise == pytest.approx(np.sqrt(np.mean(np.square(members))), rel=1e-12)
    else:
        assert noise == pytest.approx(0.05, rel=1e-12)
    raw_f, raw_s = model.predict_forces(test, return_std=True)
    nll_before = evaluate_uncertainty(model, val)["forces"]["nll"]
    params = recalibrate(model, val, method="heteroscedastic")
    assert model.uncertainty_recalibration_["regressor_noise"] is True
    # the maximum-likelihood variance model is at least as good on its own data as σ itself
    # (a = b = 1, the rest 0 is one of the models it searches)
    assert evaluate_uncertainty(model, val)["forces"]["nll"] <= nll_before + 1e-6
    # the stored model applied by hand: noise part b*noise^2, parameter part the rest
    p = params["forces"]
    f, s = model.predict_forces(test, return_std=True)
    for fr, sr, fn, sn in zip(raw_f, raw_s, f, s):
        np.testing.assert_allclose(fn, fr, atol=1e-12)       # means are untouched
        vn = np.full(sr.shape, noise ** 2)
        vp = np.maximum(sr ** 2 - vn, 0.0)
        f2 = np.broadcast_to(np.sum(fr ** 2, axis=1)[:, None], sr.shape)
        np.testing.assert_allclose(sn, p["k"] * np.sqrt(_hetero_var(p, vp, vn, f2)),
                                   rtol=1e-10)


def test_gp_recalibration_survives_save_load(data, tmp_path):
    train, val, test = data
    model = _model(_gp(random_state=1)).fit(train)
    recalibrate(model, val, method="heteroscedastic")
    model.save(tmp_path / "gp.hpot")
    loaded = HybridPotential.load(tmp_path / "gp.hpot")
    assert loaded.uncertainty_recalibration_["regressor_noise"] is True
    for a, b in zip(loaded.predict_forces(test, return_std=True)[1],
                    model.predict_forces(test, return_std=True)[1]):
        np.testing.assert_allclose(a, b, rtol=1e-12)
