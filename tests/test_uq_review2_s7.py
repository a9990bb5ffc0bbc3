"""Review 2 (session 7) of the UQ API: typed errors naming the call for models that cannot be
used (no posterior, not linear, not fitted, not the posterior's model)."""

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator

from hybridpot import HybridPotential, InvalidParameterError, NotFittedError
from hybridpot.descriptors import PowerSpectrum
from hybridpot.regression import (BayesianLinearRegressor, LinearRegressor,
                                  NeuralNetworkRegressor, SparseGPRegressor)
from hybridpot.report import write_uncertainty_report
from hybridpot.uq import (LinearPosterior, collect_uncertainty, evaluate_uncertainty,
                          recalibrate)


def _cells(n, seed, labels=("energy", "forces", "stress")):
    """``n`` EMT-labelled, rattled, strained Cu8 / Cu6Al2 cells."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        a = bulk("Cu", "fcc", a=3.61, cubic=True) * (2, 1, 1)
        if i % 2:
            a.symbols[[1, 5]] = "Al"
        a.set_cell(a.cell @ (np.eye(3) + 0.02 * rng.standard_normal((3, 3))), scale_atoms=True)
        a.positions += 0.05 * rng.standard_normal(a.positions.shape)
        a.calc = EMT()
        res = {"energy": a.get_potential_energy(), "forces": a.get_forces(),
               "stress": a.get_stress()}
        a.calc = SinglePointCalculator(a, **{k: res[k] for k in labels})
        out.append(a)
    return out


def _desc(n_max=2):
    return PowerSpectrum(species=["Cu", "Al"], r_cut=4.0, n_max=n_max, l_max=1)


@pytest.fixture(scope="module")
def train():
    return _cells(6, 0)


@pytest.fixture(scope="module")
def linear(train):
    return HybridPotential(descriptor=_desc(), regressor=LinearRegressor()).fit(train)


@pytest.fixture(scope="module")
def gp(train):
    return HybridPotential(descriptor=_desc(), regressor=SparseGPRegressor(
        n_sparse=5, random_state=0)).fit(train)


def test_posterior_refuses_non_linear_unfitted_and_non_models(gp, train):
    # was AttributeError: 'SparseGPRegressor' object has no attribute 'quadratic'
    with pytest.raises(InvalidParameterError,
                       match=r"'model' argument of LinearPosterior.fit must be a HybridPotential"
                             r" fitted with LinearRegressor or BayesianLinearRegressor.*"
                             r"SparseGPRegressor.*already gives σ"):
        LinearPosterior(n_steps=20).fit(gp, train)
    nn = HybridPotential(descriptor=_desc(), regressor=NeuralNetworkRegressor(
        hidden_layer_sizes=(2,), max_iter=2, tol=1.0, random_state=0))
    with pytest.raises(NotFittedError, match="not fitted yet"):
        LinearPosterior(n_steps=20).fit(nn, train)
    with pytest.raises(InvalidParameterError,
                       match=r"'model' argument of LinearPosterior.fit must be a fitted "
                             r"HybridPotential.*Got str instead"):
        LinearPosterior(n_steps=20).fit("model.hpot", train)


def test_uncertainty_functions_name_themselves_without_a_posterior(linear, train, tmp_path):
    # was: "return_std=True needs a regressor with a posterior" (an argument never passed)
    hint = r"LinearPosterior\(\.\.\.\)\.fit\(model, train\)\.apply\(model\)"
    for fn, name in ((evaluate_uncertainty, "evaluate_uncertainty"),
                     (recalibrate, "recalibrate"),
                     (collect_uncertainty, "collect_uncertainty")):
        with pytest.raises(InvalidParameterError,
                           match=rf"'model' argument of {name} needs a predictive σ, but its "
                                 rf"regressor LinearRegressor has no posterior; .*{hint}"):
            fn(linear, train)
    with pytest.raises(InvalidParameterError,
                       match=r"'model' argument of write_uncertainty_report needs a predictive "
                             r"σ.*LinearRegressor"):
        write_uncertainty_report(linear, train, tmp_path / "rep")
    assert not (tmp_path / "rep").exists()
    with pytest.raises(InvalidParameterError,
                       match=r"'model' argument of recalibrate must be a fitted HybridPotential"
                             r".*Got str instead"):
        recalibrate("model", train)


def test_single_network_hint_and_posterior_route_still_work(train):
    nn = HybridPotential(descriptor=_desc(), regressor=NeuralNetworkRegressor(
        hidden_layer_sizes=(2,), max_iter=3, tol=1.0, random_state=0)).fit(train)
    with pytest.raises(InvalidParameterError, match=r"NeuralNetworkRegressor\(n_models > 1\)"):
        evaluate_uncertainty(nn, train)
    # a linear model with a posterior committee is accepted
    m = HybridPotential(descriptor=_desc(), regressor=LinearRegressor()).fit(train)
    LinearPosterior(n_steps=20, n_burn=5, random_state=0).fit(m, train).apply(
        m, 4, force=True)
    metrics = evaluate_uncertainty(m, train)
    assert set(metrics) == {"energy", "forces", "stress"}
    assert metrics["forces"]["mean_std"] > 0


def test_apply_refuses_a_model_the_posterior_was_not_fitted_on(train):
    m = HybridPotential(descriptor=_desc(), regressor=BayesianLinearRegressor(
        noise_levels="shared")).fit(train)
    post = LinearPosterior(n_steps=20, n_burn=5, random_state=0).fit(m, train)
    other = HybridPotential(descriptor=_desc(n_max=3), regressor=BayesianLinearRegressor(
        noise_levels="shared")).fit(train)
    # was accepted, then every predict(return_std=True) said "rebuild it with
    # LinearPosterior.apply(model)" -- what the user had just done
    with pytest.raises(InvalidParameterError,
                       match=r"'model' argument of LinearPosterior.apply must be the model this "
                             r"posterior was fitted on: .*\(2, 21\).*\(2, 43\).*Fit a "
                             r"LinearPosterior on this model first"):
        post.apply(other, 4, force=True)
    assert getattr(other, "uncertainty_", None) is None
    with pytest.raises(InvalidParameterError,
                       match=r"'n_theta_samples' parameter of LinearPosterior.committee must be "
                             r"an int in \[1, inf\]. Got 0 instead"):
        post.committee(0, force=True)
    post.apply(m, 4, force=True)
    E, s = m.predict(train[:2], return_std=True)
    assert E.shape == s.shape == (2,) and np.all(s > 0)


def test_recalibrate_on_validation_without_forces(train):
    m = HybridPotential(descriptor=_desc(), regressor=BayesianLinearRegressor(
        noise_levels="shared")).fit(train)
    val = _cells(3, 1, labels=("energy", "stress"))
    scale = recalibrate(m, val)
    assert set(scale) == {"energy", "stress"}
    assert all(np.isfinite(v) and v > 0 for v in scale.values())


def test_selectors_name_themselves_without_sigma_and_accept_an_empty_pool(linear, train):
    from hybridpot.uq.selection import make_selector

    pool = _cells(3, 5)
    for a in pool:
        a.calc = None
    for method, owner in (("max_variance", "MaxVarianceSelector"),
                          ("d_optimal", "DOptimalSelector"),
                          ("information_per_cost", "InformationPerCostSelector"),
                          ("stratified", "MaxVarianceSelector")):
        # was "return_std=True needs a regressor with a posterior"
        with pytest.raises(InvalidParameterError,
                           match=rf"'model' argument of {owner}.select needs a predictive σ.*"
                                 r"LinearPosterior"):
            make_selector(method).select(linear, pool, 2)
    blr = HybridPotential(descriptor=_desc(), regressor=BayesianLinearRegressor(
        noise_levels="shared")).fit(train)
    for method in ("max_variance", "d_optimal", "information_per_cost", "variance_reduction",
                   "stratified", "facility_location", "random"):
        # an empty pool selects nothing (was "ValueError: need at least one array to
        # concatenate" or a RuntimeWarning, an error under filterwarnings=error)
        sel = make_selector(method)
        out = sel.select(blr, [], 2)
        assert out.dtype == np.int64 and out.shape == (0,)
        assert sel.select(blr, pool, 2).shape == (2,)


def test_split_recalibration_of_a_gp_does_not_suggest_linear_posterior(gp, train):
    # was "... needs a posterior committee on the model (LinearPosterior(...).fit(model,
    # train).apply(model))", which LinearPosterior.fit refuses for a GP
    with pytest.raises(InvalidParameterError,
                       match=r"needs a posterior committee, which only linear models get "
                             r"\(LinearPosterior\); for this SparseGPRegressor use method='nll',"
                             r" 'coverage' or 'heteroscedastic'"):
        recalibrate(gp, train[:2], method="split")
    assert set(recalibrate(gp, train[:2], method="coverage")) == {"energy", "forces", "stress"}


def test_uncertainty_report_checks_the_chain_before_writing(train, tmp_path):
    from hybridpot.uq import ChainTooShortError

    m = HybridPotential(descriptor=_desc(), regressor=BayesianLinearRegressor(
        noise_levels="shared")).fit(train)
    post = LinearPosterior(n_steps=10, n_burn=2, random_state=0).fit(m, train)
    # was: every structure evaluated and the folder created, then ChainTooShortError
    with pytest.raises(ChainTooShortError, match=r"pass force=True to summarise anyway"):
        write_uncertainty_report(m, train, tmp_path / "rep", posterior=post)
    assert not (tmp_path / "rep").exists()
    with pytest.raises(InvalidParameterError,
                       match=r"'posterior' argument of write_uncertainty_report must be a fitted "
                             r"hybridpot.uq.LinearPosterior or None. Got dict instead"):
        write_uncertainty_report(m, train, tmp_path / "rep", posterior={"chain": 1})
    out = write_uncertainty_report(m, train[:2], tmp_path / "rep", posterior=post, force=True)
    assert '"posterior"' in (tmp_path / "rep" / "metrics.json").read_text()
    assert out.exists()


def test_calibration_metrics_and_curve_reject_nan_and_bad_levels():
    from hybridpot.uq import calibration_curve, calibration_metrics

    # was: NaN MAE / RMSE / NLL and a coverage counting the NaN as "outside"
    with pytest.raises(InvalidParameterError,
                       match=r"'y' argument of calibration_metrics must be finite. Got 1 NaN or "
                             r"inf value\(s\), first at index 1, instead"):
        calibration_metrics([1.0, np.nan], [1.0, 1.0], [1.0, 1.0])
    with pytest.raises(InvalidParameterError, match=r"'pred' argument .* first at index 0"):
        calibration_metrics([1.0, 2.0], [np.inf, 1.0], [1.0, 1.0])
    # was: levels outside (0, 1) accepted (ppf of > 1 is NaN: coverage 0 at "150 %")
    with pytest.raises(InvalidParameterError,
                       match=r"'levels' argument of calibration_curve must be a non-empty 1-D "
                             r"sequence of nominal coverages in \(0, 1\). Got \[1.5\] instead"):
        calibration_curve([0.1, -1.0, 2.0], levels=[1.5])
    with pytest.raises(InvalidParameterError, match=r"'z' argument of calibration_curve"):
        calibration_curve([0.1, np.nan])
    nominal, observed = calibration_curve([0.1, -1.0, 2.0], levels=0.6827)
    assert nominal.tolist() == [0.6827] and observed.tolist() == pytest.approx([2 / 3])
