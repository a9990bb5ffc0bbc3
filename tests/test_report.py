"""hybridpot.report: the basic report and the uncertainty report render (files, PNGs, HTML)."""

import json

import numpy as np
import pytest

from hybridpot import HybridPotential
from hybridpot.descriptors import PowerSpectrum
from hybridpot.regression import BayesianLinearRegressor
from hybridpot.report import write_report, write_uncertainty_report
from hybridpot.uq import ChainTooShortError, LinearPosterior

from conftest import emt_dataset

mpimg = pytest.importorskip("matplotlib.image")


@pytest.fixture(scope="module")
def fitted():
    from hybridpot.baselines import Morse

    train = emt_dataset(8, seed=3)
    model = HybridPotential(
        descriptor=PowerSpectrum(species=["Cu"], r_cut=4.5, n_max=3, l_max=2),
        regressor=BayesianLinearRegressor(),
        baseline=Morse(D0=0.05, alpha=1.5, r0=2.6, r_cut=4.5)).fit(train)
    post = LinearPosterior(n_steps=200, n_burn=50, n_walkers=16, random_state=0).fit(model, train)
    post.apply(model, force=True, random_state=0)
    return model, post


def _check_rendered(out, expected):
    html = out.read_text(encoding="utf-8")
    folder = out.parent
    for name in expected:
        path = folder / name
        assert path.is_file(), name
        img = mpimg.imread(path)
        assert img.ndim == 3 and img.shape[0] > 50 and img.shape[1] > 50
        assert f'href="{name}"' in html
    assert html.count("data:image/png;base64,") == len(list(folder.glob("*.png")))
    return html


def test_uncertainty_report_renders(fitted, tmp_path):
    model, post = fitted
    test = emt_dataset(3, seed=4)
    model.recalibrate(test[:1])
    with pytest.raises(ChainTooShortError, match="force=True"):
        write_uncertainty_report(model, test, tmp_path / "r0", posterior=post)
    out = write_uncertainty_report(model, test, tmp_path / "r", posterior=post, force=True)
    expected = ["parity_energy.png", "parity_forces.png", "parity_stress.png",
                "error_vs_sigma_forces.png", "calibration_curve.png", "zscore_forces.png",
                "zscore_stress.png", "chain_traces.png", "corner.png"]
    html = _check_rendered(out, expected)
    for word in ("coverage_1sigma", "spearman", "nll", "Posterior of θ", "log_alpha",
                 "u[D0]", "Recalibration factors"):
        assert word in html, word
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert 0 <= metrics["forces"]["coverage_2sigma"] <= 1
    assert metrics["posterior"]["theta_names"][-3:] == ["u[D0]", "u[alpha]", "u[r0]"]
    assert np.isfinite(metrics["forces"]["nll"])


def test_uncertainty_report_without_posterior_and_basic_report(fitted, tmp_path):
    model, _ = fitted
    test = emt_dataset(2, seed=5)
    out = write_uncertainty_report(model, test, tmp_path / "u")
    _check_rendered(out, ["parity_forces.png", "calibration_curve.png"])
    assert not (tmp_path / "u" / "corner.png").exists()
    out = write_report(model, test, tmp_path / "b")
    html = _check_rendered(out, ["parity_forces.png", "error_vs_sigma_forces.png"])
    assert "±1σ" in html


def test_uncertainty_report_records_heteroscedastic_recalibration(fitted, tmp_path):
    import copy

    model = copy.deepcopy(fitted[0])
    val = emt_dataset(4, seed=5)
    model.recalibrate(val, method="heteroscedastic")
    write_uncertainty_report(model, emt_dataset(2, seed=6), tmp_path / "r")
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert metrics["uncertainty_recalibration"] == json.loads(
        json.dumps(model.uncertainty_recalibration_))
    rec = metrics["uncertainty_recalibration"]
    assert rec["method"] == "heteroscedastic" and "forces" in rec["kinds"]
