"""hybridpot.uq: emcee posterior against known posteriors, committee σ, calibration, errors."""

import numpy as np
import pytest
import scipy.stats
from scipy.special import logsumexp

from hybridpot import HybridPotential, InvalidParameterError, NotFittedError
from hybridpot.descriptors import ACSF, PowerSpectrum
from hybridpot.regression import BayesianLinearRegressor, LinearRegressor
from hybridpot.regression._tsqr import TSQRAccumulator
from hybridpot.uq import (ChainTooShortError, LinearPosterior, calibration_curve,
                          calibration_metrics, evaluate_uncertainty,
                          log_evidence_from_factors, recalibrate)
from hybridpot.uq._accumulate import Factors

from conftest import emt_dataset, skewed_two_element_cell


# ----------------------------------------------------------------------------- helpers
def plain_factors(A, y, w=None, bias=False):
    """Factors of a plain weighted regression (one key), as accumulate_factors builds them."""
    A = np.asarray(A, float)
    M = A.shape[1]
    acc = TSQRAccumulator(M)
    acc.add(("target", "all", 0), A, y, w)
    ww = np.ones(len(y)) if w is None else w
    D = np.sqrt((ww[:, None] * A * A).sum(0) / len(y))
    b2 = np.ones(M)
    if bias:
        b2[0] = 1e-6
    R = {k: acc.R(k) / np.r_[D, 1.0][None, :] for k in acc.keys()}
    return Factors(R, dict(acc.n_rows), dict(acc.sum_log_weight), D, b2, np.zeros(0),
                   np.zeros(0), (), 1, M - 1, False, 1)


class _Reg:
    """Starting point of the MAP search (what a fitted regressor offers)."""

    alpha_ = 1.0
    noise_ = {}


def sample_plain(fac, rng_seed=0, **kw):
    kw.setdefault("n_steps", 3000)
    kw.setdefault("n_burn", 300)
    post = LinearPosterior(random_state=rng_seed, **kw)
    post._validate()
    from hybridpot.uq._posterior import _rng

    return post._fit_factors(fac, _Reg(), _rng(rng_seed))


def brute_log_evidence(A, y, w, D, b2, alpha, beta):
    """log N(y; 0, A S0 A^T + diag(1 / (beta w))) with S0 = diag(1 / (alpha b2 D^2))."""
    S0 = np.diag(1.0 / (alpha * b2 * D ** 2))
    C = A @ S0 @ A.T + np.diag(1.0 / (beta * w))
    return scipy.stats.multivariate_normal(np.zeros(len(y)), C).logpdf(y)


@pytest.fixture(scope="module")
def conjugate():
    """A small conjugate problem: 30 rows, 2 columns, known noise 0.3."""
    r = np.random.default_rng(7)
    A = r.normal(size=(30, 2)) * [1.0, 3.0]
    w = r.uniform(0.5, 2.0, 30)
    y = A @ [0.7, -0.2] + r.normal(size=30) * 0.3 / np.sqrt(w)
    return A, y, w


# ----------------------------------------------------------------------------- evidence
def test_log_evidence_matches_brute_force_gaussian(conjugate):
    A, y, w = conjugate
    fac = plain_factors(A, y, w)
    key = next(iter(fac.R))
    R = fac.R[key]
    post = LinearPosterior()
    post._set_factors(fac)
    for alpha, beta in ((0.3, 5.0), (30.0, 0.5), (1e-3, 40.0)):
        ref = brute_log_evidence(A, y, w, fac.D, fac.b2, alpha, beta)
        le, m, _ = log_evidence_from_factors([R[:, :2]], [R[:, -1]], np.array([30.0]),
                                             np.array([fac.sum_log_w[key]]), fac.b2, alpha,
                                             np.array([beta]))
        assert le == pytest.approx(ref, rel=1e-10, abs=1e-8)
        assert post.log_evidence([np.log(alpha), np.log(beta)]) == pytest.approx(ref, rel=1e-10)


def test_log_evidence_equals_bayesian_regressor_at_its_optimum(conjugate):
    A, y, w = conjugate
    reg = BayesianLinearRegressor().fit(A, y, sample_weight=w)
    fac = plain_factors(A, y, w)
    post = LinearPosterior()
    post._set_factors(fac)
    theta = [np.log(reg.alpha_), -2 * np.log(reg.noise_["target"])]
    assert post.log_evidence(theta) == pytest.approx(reg.log_evidence_, rel=1e-9)
    c, cov = post.weight_posterior(theta)
    np.testing.assert_allclose(c, reg.coef_, rtol=1e-7)
    np.testing.assert_allclose(cov, reg.sigma_, rtol=1e-6)


# ----------------------------------------------------------------------------- harness
def _grid_posterior(post, n=241):
    """Exact posterior of (log alpha, log beta) on a grid over the prior box."""
    c = post._center
    w = post.log_prior_width
    ga = np.linspace(c[0] - w, c[0] + w, n)
    gb = np.linspace(c[1] - w, c[1] + w, n)
    lp = np.array([[post.log_evidence([a, b]) for b in gb] for a in ga])
    return ga, gb, lp - logsumexp(lp)


def test_emcee_harness_moments_and_ks_against_exact_posterior(conjugate):
    A, y, w = conjugate
    post = sample_plain(plain_factors(A, y, w), rng_seed=3, log_prior_width=4.0,
                        n_steps=3000, n_walkers=16)
    s = post.summary()
    assert 0.2 < s["acceptance_fraction"] < 0.9
    ga, gb, lp = _grid_posterior(post)
    p = np.exp(lp)
    pa, pb = p.sum(1), p.sum(0)
    flat = post.chain_.reshape(-1, 2)
    tau = float(np.max(post.autocorr_time_))
    n_eff = flat.shape[0] / tau
    for k, (g, pm) in enumerate(((ga, pa), (gb, pb))):
        mean = float(g @ pm)
        sd = float(np.sqrt(((g - mean) ** 2) @ pm))
        assert abs(flat[:, k].mean() - mean) < 5 * sd / np.sqrt(n_eff)
        assert flat[:, k].std() == pytest.approx(sd, rel=0.1)
        # KS against the grid CDF on (nearly) independent draws
        thin = post.chain_[::int(np.ceil(2 * tau)), :, k].ravel()
        cdf = np.cumsum(pm) - 0.5 * pm
        stat, pval = scipy.stats.kstest(thin, lambda x: np.interp(x, g, cdf))
        assert pval > 1e-3, (k, stat, pval)


@pytest.mark.slow
def test_committee_mixture_matches_quadrature(conjugate):
    A, y, w = conjugate
    post = sample_plain(plain_factors(A, y, w), rng_seed=5, log_prior_width=4.0, n_steps=3000)
    ga, gb, lp = _grid_posterior(post, n=61)
    p = np.exp(lp)
    mean = np.zeros(2)
    second = np.zeros((2, 2))
    for i, a in enumerate(ga):
        for j, b in enumerate(gb):
            if p[i, j] < 1e-8:
                continue
            c, cov = post.weight_posterior([a, b])
            mean += p[i, j] * c
            second += p[i, j] * (cov + np.outer(c, c))
    cov_ref = second - np.outer(mean, mean)
    com = post.committee(n_theta_samples=1500, random_state=1)
    V = com.modes.reshape(com.n_members, -1)
    np.testing.assert_allclose(V.T @ V, cov_ref, rtol=0.08)
    nv = com.noise_var["target"]["all"]
    ref_nv = float(np.sum(p * np.exp(-gb)[None, :]))
    assert nv == pytest.approx(ref_nv, rel=0.05)


def test_coverage_on_synthetic_data_with_known_noise():
    r = np.random.default_rng(11)
    M, sigma = 6, 0.25
    coef = r.normal(size=M)
    A = np.c_[np.ones(3000), r.normal(size=(3000, M - 1))]
    y = A @ coef + sigma * r.normal(size=3000)
    post = sample_plain(plain_factors(A[:600], y[:600], bias=True), rng_seed=2,
                        n_steps=2000, n_walkers=16)
    com = post.committee(n_theta_samples=200, random_state=0)
    V = com.modes.reshape(com.n_members, -1)
    c, _ = post.weight_posterior(post.theta_map_)
    At, yt = A[600:], y[600:]
    var = ((At @ V.T) ** 2).sum(1) + com.noise_var["target"]["all"]
    m = calibration_metrics(yt, At @ c, np.sqrt(var))
    assert m["coverage_1sigma"] == pytest.approx(0.6827, abs=0.03)
    assert m["coverage_2sigma"] == pytest.approx(0.9545, abs=0.03)
    assert np.exp(-0.5 * np.median(post.chain_[..., 1])) == pytest.approx(sigma, rel=0.08)


def test_predictive_sigma_invariant_to_shifting_descriptors_far_from_origin():
    r = np.random.default_rng(4)
    X = r.normal(size=(200, 3))
    y = X @ [0.5, -1.0, 0.3] + 2.0 + 0.1 * r.normal(size=200)
    Xt = r.normal(size=(20, 3)) * 2
    sig = []
    for shift in (0.0, 1e4):
        A = np.c_[np.ones(200), X + shift]
        # the invariance is numerical (far-from-origin designs), not a chain property: a short
        # chain is enough
        post = sample_plain(plain_factors(A, y, bias=True), rng_seed=9, n_steps=800,
                            n_walkers=16)
        com = post.committee(n_theta_samples=300, random_state=0, force=True)
        V = com.modes.reshape(com.n_members, -1)
        At = np.c_[np.ones(20), Xt + shift]
        sig.append(np.sqrt(((At @ V.T) ** 2).sum(1)))
    assert np.all(np.isfinite(sig[1])) and np.all(sig[1] > 0)
    np.testing.assert_allclose(sig[1], sig[0], rtol=0.15)


# ----------------------------------------------------------------------------- chain checks
def test_short_chain_is_refused_unless_forced(conjugate):
    A, y, w = conjugate
    post = sample_plain(plain_factors(A, y, w), n_steps=60, n_burn=20)
    with pytest.raises(ChainTooShortError, match="50 x tau.*force=True"):
        post.summary()
    with pytest.raises(ChainTooShortError, match="n_steps"):
        post.committee()
    s = post.summary(force=True)
    assert s["n_steps"] == 60 and len(s["autocorr_time"]) == 2


@pytest.mark.parametrize("param, value, match", [
    ("robust", "student", r"'robust' parameter of LinearPosterior must be one of"),
    ("n_steps", 0, r"'n_steps'"),
    ("noise_groups", 1, r"'noise_groups' parameter of LinearPosterior must be a bool"),
    ("baseline_prior_width", -1.0, r"'baseline_prior_width'"),
])
def test_bad_parameters_raise_typed_errors(param, value, match):
    with pytest.raises(InvalidParameterError, match=match):
        LinearPosterior(**{param: value})._validate()


def test_unfitted_and_bad_theta_errors(conjugate):
    with pytest.raises(NotFittedError, match="call fit"):
        LinearPosterior().log_evidence([0.0, 0.0])
    post = LinearPosterior()
    post._set_factors(plain_factors(*conjugate))
    with pytest.raises(InvalidParameterError, match=r"'theta'.*length 2"):
        post.log_evidence([0.0])


# ----------------------------------------------------------------------------- calibration
def test_calibration_metrics_of_exact_gaussian(rng):
    y = rng.normal(size=20000)
    s = np.full(20000, 1.0)
    m = calibration_metrics(y, np.zeros_like(y), s)
    assert m["coverage_1sigma"] == pytest.approx(0.6827, abs=0.01)
    assert m["coverage_2sigma"] == pytest.approx(0.9545, abs=0.005)
    assert m["nll"] == pytest.approx(0.5 * np.log(2 * np.pi) + 0.5, abs=0.02)
    nom, obs = calibration_curve(y / s)
    np.testing.assert_allclose(obs, nom, atol=0.015)
    with pytest.raises(InvalidParameterError, match="'std' argument.*> 0"):
        calibration_metrics(y[:3], y[:3], np.zeros(3))
    with pytest.raises(InvalidParameterError, match="same shape"):
        calibration_metrics(y[:3], y[:2], s[:3])


def test_spearman_per_structure(rng):
    std = np.repeat(np.linspace(0.1, 2.0, 30), 9)
    err = rng.normal(size=std.size) * std
    m = calibration_metrics(err, np.zeros_like(err), std, np.repeat(np.arange(30), 9))
    assert m["spearman"] > 0.7


# ----------------------------------------------------------------------------- models
@pytest.fixture(scope="module")
def emt_train():
    return emt_dataset(10, seed=1)


@pytest.fixture(scope="module")
def emt_test():
    return emt_dataset(4, seed=2)


def _model(reg=None, baseline=True):
    from hybridpot.baselines import LennardJones

    desc = PowerSpectrum(species=["Cu"], r_cut=4.5, n_max=4, l_max=3)
    return HybridPotential(descriptor=desc, regressor=reg or BayesianLinearRegressor(),
                           baseline=LennardJones(epsilon=0.02, sigma=2.3, r_cut=4.5)
                           if baseline else None)


@pytest.fixture(scope="module")
def posterior_model(emt_train):
    model = _model().fit(emt_train)
    post = LinearPosterior(n_steps=800, n_burn=200, random_state=0, robust="cv",
                           n_folds=5).fit(model, emt_train)
    return model, post


def test_committee_at_fixed_theta_equals_regressor_sigma(emt_train, emt_test):
    """Adjoint committee (one pass) == design-row σ of BayesianLinearRegressor."""
    model = _model().fit(emt_train)
    reg = model.regressor_
    post = LinearPosterior(n_steps=20, n_burn=0, sample_baseline=False, random_state=0)
    post.fit(model, emt_train)
    theta = np.r_[np.log(reg.alpha_), [-2 * np.log(reg.noise_[k]) for k, _ in post.keys_]]
    post.chain_ = np.tile(theta, (60, 4, 1))
    post.autocorr_time_ = np.ones(theta.size)
    ref = [model._evaluate(a, return_std=True) for a in emt_test]
    post.apply(model)
    for a, r in zip(emt_test, ref):
        out = model._evaluate(a, return_std=True)
        np.testing.assert_allclose(out["forces"], r["forces"], atol=1e-10)
        np.testing.assert_allclose(out["stress"], r["stress"], atol=1e-12)
        assert out["energy"] == pytest.approx(r["energy"], abs=1e-9)
        np.testing.assert_allclose(out["forces_std"], r["forces_std"], rtol=1e-4)
        np.testing.assert_allclose(out["stress_std"], r["stress_std"], rtol=1e-4)
        assert out["energy_std"] == pytest.approx(r["energy_std"], rel=1e-4)


def test_posterior_on_hybrid_model_with_baseline_parameters(posterior_model, emt_test):
    model, post = posterior_model
    with pytest.raises(ChainTooShortError):
        post.summary()
    s = post.summary(force=True)
    assert post.theta_names_[-2:] == ["u[epsilon]", "u[sigma]"]
    assert set(s["noise"]) == {"energy/all", "forces/all", "stress/all"}
    assert all(v >= 1.0 for v in post.inflation_.values())
    # the noise posterior is close to the evidence-maximised noise of the regressor
    assert s["noise"]["forces/all"] == pytest.approx(model.regressor_.noise_["forces"],
                                                     rel=0.3)
    post.apply(model, random_state=0, force=True)
    calc = model.calculator(uncertainty=True)
    a = emt_test[0].copy()
    a.calc = calc
    a.get_potential_energy()
    r = calc.results
    assert r["forces_std"].shape == (len(a), 3) and np.all(r["forces_std"] > 0)
    assert r["stress_std"].shape == (6,) and np.all(r["stress_std"] > 0)
    assert r["energy_std"] > 0
    met = evaluate_uncertainty(model, emt_test)
    assert set(met) == {"energy", "forces", "stress"}
    assert 0.3 < met["forces"]["coverage_2sigma"] <= 1.0


def test_committee_on_plain_ridge_model(emt_train, emt_test):
    """A LinearRegressor (no posterior of its own) gains σ from the emcee posterior."""
    model = _model(LinearRegressor(alpha=1e-6), baseline=False).fit(emt_train)
    with pytest.raises(InvalidParameterError, match="return_std=True needs a regressor"):
        model.predict(emt_test, return_std=True)
    LinearPosterior(n_steps=300, n_burn=100, random_state=1).fit(model, emt_train) \
        .apply(model, force=True)
    e, s = model.predict(emt_test, return_std=True)
    assert np.all(s > 0) and e.shape == s.shape


def test_recalibration_round_trip_through_save_load(posterior_model, emt_test, tmp_path):
    model, post = posterior_model
    post.apply(model, random_state=0, force=True)
    before = model.predict_forces(emt_test, return_std=True)[1]
    scale = model.recalibrate(emt_test[:2]).uncertainty_scale_
    assert set(scale) == {"energy", "forces", "stress"}
    after = model.predict_forces(emt_test, return_std=True)[1]
    np.testing.assert_allclose(after[0], before[0] * scale["forces"], rtol=1e-12)
    # the recalibrated σ makes mean z^2 = 1 on the calibration set
    m = evaluate_uncertainty(model, emt_test[:2])
    assert m["forces"]["mean_z2"] == pytest.approx(1.0, rel=1e-9)
    model.save(tmp_path / "m.hpot")
    loaded = HybridPotential.load(tmp_path / "m.hpot")
    assert loaded.uncertainty_scale_ == pytest.approx(scale)
    again = loaded.predict_forces(emt_test, return_std=True)[1]
    np.testing.assert_allclose(again[1], after[1], rtol=1e-10)
    cov = recalibrate(loaded, emt_test[:2], method="coverage")
    assert cov["forces"] > 0
    # split: separate factors on the parameter and the noise part, maximum likelihood
    split = recalibrate(loaded, emt_test[:2], method="split")
    com = loaded.uncertainty_
    assert split["forces"] == {"param": com.param_scale["forces"],
                               "noise": com.noise_scale["forces"]}
    m_split = evaluate_uncertainty(loaded, emt_test[:2])
    m_nll_scale = {k: 1.0 for k in split}
    assert loaded.uncertainty_scale_ == m_nll_scale
    # the two-factor fit is at least as likely as the one-factor fit on the same data
    assert m_split["forces"]["nll"] <= m["forces"]["nll"] + 1e-9
    loaded.save(tmp_path / "m2.hpot")
    again2 = HybridPotential.load(tmp_path / "m2.hpot").predict_forces(emt_test[:1],
                                                                       return_std=True)[1]
    np.testing.assert_allclose(again2[0], loaded.predict_forces(emt_test[:1],
                                                                return_std=True)[1][0])
    with pytest.raises(NotFittedError, match="not fitted yet"):
        recalibrate(_model(), emt_test[:1], method="split")
    with pytest.raises(InvalidParameterError, match=r"'method' parameter of recalibrate.*'split'"):
        recalibrate(loaded, emt_test[:2], method="isotonic")
    # refitting drops the stale posterior and scale
    loaded.fit(emt_test)
    assert not hasattr(loaded, "uncertainty_") and not hasattr(loaded, "uncertainty_scale_")
    with pytest.raises(InvalidParameterError, match="needs a posterior committee"):
        recalibrate(loaded, emt_test[:1], method="split")


# ----------------------------------------------------------------------------- batched adjoint
@pytest.mark.parametrize("desc", [
    PowerSpectrum(species=["Cu", "Ni"], r_cut=4.0, n_max=3, l_max=2),
    ACSF(species=["Cu", "Ni"], r_cut=4.0),
], ids=["PowerSpectrum", "ACSF"])
def test_backward_many_equals_backward_loop(desc, rng):
    atoms = skewed_two_element_cell(seed=3)
    G = rng.normal(size=(4, len(atoms), desc.n_features))
    dr, de = desc.backward_many(atoms, G)
    assert dr.shape == (4, len(atoms), 3) and de.shape == (4, 3, 3)
    for k in range(4):
        r1, e1 = desc.backward(atoms, G[k])
        np.testing.assert_allclose(dr[k], r1, atol=1e-10)
        np.testing.assert_allclose(de[k], e1, atol=1e-10)
    with pytest.raises(InvalidParameterError, match="'dE_dX_stack'.*shape"):
        desc.backward_many(atoms, G[0])


def test_fused_adjoint_and_design_row_committee_paths_agree(emt_train, emt_test, monkeypatch):
    from hybridpot.uq import _committee

    model = _model().fit(emt_train)
    post = LinearPosterior(n_steps=100, n_burn=20, random_state=2).fit(model, emt_train)
    com = post.committee(n_theta_samples=20, n_members=5, force=True, random_state=0)
    assert com.n_members == 5
    model.uncertainty_ = com
    a = emt_test[1]
    monkeypatch.setattr(_committee, "FUSED_MAX_MEMBERS", 1000)
    fused = model._evaluate(a, return_std=True)
    monkeypatch.setattr(_committee, "FUSED_MAX_MEMBERS", 0)
    rows = model._evaluate(a, return_std=True)
    for k in ("forces", "forces_std", "stress", "stress_std"):
        np.testing.assert_allclose(fused[k], rows[k], rtol=1e-8, atol=1e-12)


def test_recalibration_ignores_numerically_zero_sigma():
    from hybridpot.uq._calibration import _informative

    std = np.array([1e-3, 2e-3, 1e-19, 0.0, 5e-4])
    np.testing.assert_array_equal(_informative(std), [True, True, False, False, True])
    assert not _informative(np.zeros(3)).any()


def test_calculator_uncertainty_interval(posterior_model, emt_test):
    model, post = posterior_model
    post.apply(model, random_state=0, force=True)
    with pytest.raises(InvalidParameterError, match="'uncertainty_interval'"):
        model.calculator(uncertainty=True, uncertainty_interval=0)
    a = emt_test[0].copy()
    calc = model.calculator(uncertainty=True, uncertainty_interval=3)
    a.calc = calc
    stds, fresh = [], []
    for k in range(4):
        a.positions[0, 0] += 0.05
        a.get_forces()
        stds.append(calc.results["forces_std"].copy())
        fresh.append(model._evaluate(a, return_std=True)["forces_std"])
    np.testing.assert_allclose(stds[0], fresh[0])
    np.testing.assert_array_equal(stds[1], stds[0])  # reused for calls 2 and 3
    np.testing.assert_array_equal(stds[2], stds[0])
    np.testing.assert_allclose(stds[3], fresh[3])
    assert not np.allclose(stds[3], stds[0])
