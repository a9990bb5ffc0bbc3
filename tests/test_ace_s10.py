"""Review s10 (an ACEpotentials.jl / FitSNAP user): per-config_type error tables, the ARD
solver, smoothness priors."""

import json

import numpy as np
import pytest
from ase.io import write

from conftest import emt_dataset
from hybridpot import HybridPotential, InvalidParameterError
from hybridpot.cli import main
from hybridpot.descriptors import PowerSpectrum
from hybridpot.regression import LinearRegressor
from hybridpot.report import error_table, format_error_table


@pytest.fixture(scope="module")
def cu_data():
    return emt_dataset(12, 3)


@pytest.fixture(scope="module")
def cu_model(cu_data):
    desc = PowerSpectrum(species=["Cu"], r_cut=4.5, n_max=3, l_max=2)
    return HybridPotential(descriptor=desc, regressor=LinearRegressor(alpha=1e-6)).fit(
        cu_data[:8])


def _errors(model, structures):
    """Independent per-structure errors: energy per atom, force and stress components."""
    de, df, ds = [], [], []
    for a in structures:
        e = model.predict([a])[0]
        f = model.predict_forces([a])[0]
        c = a.copy()
        c.calc = model.calculator()
        s = c.get_stress()
        de.append((e - a.get_potential_energy()) / len(a))
        df.append((f - a.get_forces()).ravel())
        ds.append(s - a.get_stress())
    return np.array(de), np.concatenate(df), np.concatenate(ds)


def test_error_table_per_config_type(cu_data, cu_model):
    test = cu_data[8:]
    table = error_table(cu_model, test)
    assert list(table) == ["strain", "rattle", "all"] or list(table) == ["rattle", "strain",
                                                                         "all"]
    for g in ("rattle", "strain"):
        sub = [a for a in test if a.info["config_type"] == g]
        de, df, ds = _errors(cu_model, sub)
        m = table[g]
        assert m["n_structures"] == len(sub)
        assert m["n_atoms"] == sum(len(a) for a in sub)
        np.testing.assert_allclose(m["energy_rmse"], np.sqrt(np.mean(de ** 2)), rtol=1e-8)
        np.testing.assert_allclose(m["energy_mae"], np.mean(np.abs(de)), rtol=1e-8)
        np.testing.assert_allclose(m["force_rmse"], np.sqrt(np.mean(df ** 2)), rtol=1e-8)
        np.testing.assert_allclose(m["force_mae"], np.mean(np.abs(df)), rtol=1e-8)
        np.testing.assert_allclose(m["stress_rmse"], np.sqrt(np.mean(ds ** 2)), rtol=1e-6)
    # "all" is what evaluate gives
    ev = cu_model.evaluate(test)
    for k in ("energy_rmse", "energy_mae", "force_rmse", "force_mae", "stress_rmse",
              "stress_mae", "n_structures"):
        np.testing.assert_allclose(table["all"][k], ev[k], rtol=1e-12)
    text = format_error_table(table, "test")
    assert text.splitlines()[0] == "test"
    assert "meV/atom" in text and "GPa" in text
    row = [ln for ln in text.splitlines() if ln.startswith("rattle")][0].split()
    np.testing.assert_allclose(float(row[2]), 1e3 * table["rattle"]["energy_rmse"], atol=1e-3)


def test_error_table_missing_kinds_and_errors(cu_data, cu_model):
    a = cu_data[9].copy()
    a.calc = None
    a.info = {"config_type": "nolabel", "energy": cu_data[9].get_potential_energy()}
    table = error_table(cu_model, [a])
    assert np.isfinite(table["nolabel"]["energy_rmse"])
    assert np.isnan(table["nolabel"]["force_rmse"]) and np.isnan(table["all"]["stress_mae"])
    assert "-" in format_error_table(table).splitlines()[-1]
    with pytest.raises(InvalidParameterError, match="'group_key' argument of error_table "
                                                    "must be a str.*Got 3"):
        error_table(cu_model, cu_data[:1], group_key=3)
    with pytest.raises(InvalidParameterError, match="error_table"):
        error_table(cu_model, [])


def test_cli_prints_error_table(tmp_path, cu_data, capsys):
    p = tmp_path / "cu.extxyz"
    write(p, cu_data)
    cfg = tmp_path / "fit.toml"
    cfg.write_text(f"""
[data]
train = "{p}"
test_fraction = 0.25
[descriptor]
type = "PowerSpectrum"
r_cut = 4.5
n_max = 3
l_max = 2
[baseline]
type = "none"
[output]
model = "{tmp_path / 'cu.hpot'}"
report = ""
""")
    assert main(["fit", "-c", str(cfg), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "train errors by config_type:" in out and "test errors by config_type:" in out
    assert any(ln.startswith("rattle") for ln in out.splitlines())
    assert main(["evaluate", "-c", str(cfg), "--data", str(p), "--json"]) == 0
    m = json.loads(capsys.readouterr().out)
    assert set(m["by_config_type"]) == {"rattle", "strain"}
    assert m["by_config_type"]["rattle"]["n_structures"] == 6
    assert main(["evaluate", "-c", str(cfg), "--data", str(p)]) == 0
    assert "errors by config_type:" in capsys.readouterr().out


# --------------------------------------------------------------------------- ARD solver
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.linear_model import ARDRegression  # noqa: E402

from hybridpot import ModelFormatError  # noqa: E402
from hybridpot.regression import ARDLinearRegressor, BayesianLinearRegressor  # noqa: E402
from hybridpot.regression._design import labelled_rows  # noqa: E402
from hybridpot.regression._linear import BIAS_RELATIVE_PENALTY  # noqa: E402


@pytest.mark.parametrize("n, p, n_true, seed", [(200, 30, 5, 0), (100, 60, 5, 1),
                                                (60, 20, 8, 2)])
def test_ard_plain_path_equals_sklearn(n, p, n_true, seed):
    """Independent truth: scikit-learn's ARDRegression (no intercept, same hyperpriors)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, p)) * rng.uniform(0.5, 3.0, p)
    w = np.zeros(p)
    w[:n_true] = 2.0 * rng.normal(size=n_true)
    y = X @ w + 0.1 * rng.normal(size=n)
    sk = ARDRegression(fit_intercept=False, max_iter=1000, tol=1e-8).fit(X, y)
    me = ARDLinearRegressor(penalty_scaling="none", max_iter=1000, tol=1e-8).fit(X, y)
    np.testing.assert_allclose(me.coef_, sk.coef_, atol=1e-8)
    np.testing.assert_array_equal(me.active_, sk.coef_ != 0)
    assert np.all(me.coef_[~me.active_] == 0.0) and me.active_.sum() < p
    np.testing.assert_allclose(me.lambda_[me.active_], sk.lambda_[me.active_], rtol=1e-6)
    np.testing.assert_allclose(1.0 / me.noise_["target"] ** 2, sk.alpha_, rtol=1e-6)
    keep = me.active_
    np.testing.assert_allclose(me.sigma_[np.ix_(keep, keep)], sk.sigma_, rtol=1e-6,
                               atol=1e-12)
    # pruned coefficients carry (numerically) no variance
    assert np.max(np.diag(me.sigma_)[~keep]) < 1e-10 * np.max(np.diag(sk.sigma_))
    # predictive std = sqrt(a^T Sigma a + noise^2), as sklearn's predict(return_std=True)
    Xt = rng.normal(size=(5, p))
    mu, sd = me.predict(Xt, return_std=True)
    mu_sk, sd_sk = sk.predict(Xt, return_std=True)
    np.testing.assert_allclose(mu, mu_sk, atol=1e-8)
    np.testing.assert_allclose(sd, sd_sk, rtol=1e-6)


def _ard_reference(A, y, bias, n_iter, lambda_1=1e-6, lambda_2=1e-6, alpha_1=1e-6,
                   alpha_2=1e-6, threshold=1e4):
    """Slow numpy ARD on an explicit (already weighted) design; bias columns get the fixed
    precision BIAS_RELATIVE_PENALTY; one noise level."""
    M = A.shape[1]
    lam = np.where(bias, BIAS_RELATIVE_PENALTY, 1.0)
    beta = y.size / (y @ y)
    keep = np.ones(M, dtype=bool)
    for _ in range(n_iter):
        k = np.flatnonzero(keep)
        S = np.linalg.inv(beta * A[:, k].T @ A[:, k] + np.diag(lam[k]))
        m = np.zeros(M)
        m[k] = beta * S @ A[:, k].T @ y
        g = 1.0 - lam[k] * np.diag(S)
        upd = ~bias[k]
        lam[k[upd]] = (g[upd] + 2 * lambda_1) / (m[k[upd]] ** 2 + 2 * lambda_2)
        rss = np.sum((A @ m - y) ** 2)
        beta = (y.size - g.sum() + 2 * alpha_1) / (rss + 2 * alpha_2)
        keep &= ~(~bias & (lam > threshold))
    k = np.flatnonzero(keep)   # the posterior at the final hyperparameters
    m = np.zeros(M)
    m[k] = beta * np.linalg.solve(beta * A[:, k].T @ A[:, k] + np.diag(lam[k]), A[:, k].T @ y)
    return m, lam, keep, beta


class _SpyARD(ARDLinearRegressor):
    """Keeps the batches it was fitted on."""

    def fit(self, batches, y=None, sample_weight=None):
        self.seen_ = list(batches)
        return super().fit(batches, y, sample_weight)


def test_ard_batch_path_weights_rows_like_the_linear_models(cu_data):
    """Energy, force and stress rows with per-kind weights: the same rows (design assembly
    of the linear models, labelled_rows) through a plain-numpy ARD give the same fit."""
    desc = PowerSpectrum(species=["Cu"], r_cut=4.5, n_max=3, l_max=2)
    weights = {"energy": 30.0, "forces": 1.0, "stress": 5.0}
    reg = _SpyARD(penalty_scaling="none", noise_levels="shared", max_iter=40, tol=0.0)
    with pytest.warns(ConvergenceWarning, match="ARD did not converge in max_iter=40"):
        model = HybridPotential(descriptor=desc, regressor=reg, weights=weights).fit(
            cu_data[:6])
    # the residual rows the regressor saw, from its batches (linear models' row assembly)
    blocks, ys = [], []
    for batch in model.regressor_.seen_:
        for kind, group, A, y, w in labelled_rows(batch, 1, False):
            blocks.append(A * np.sqrt(w)[:, None])
            ys.append(y * np.sqrt(w))
    A, y = np.vstack(blocks), np.concatenate(ys)
    bias = np.zeros(A.shape[1], dtype=bool)
    bias[0] = True
    m, lam, keep, beta = _ard_reference(A, y, bias, 40)
    r = model.regressor_
    np.testing.assert_array_equal(r.active_, keep)
    np.testing.assert_allclose(r.lambda_[keep & ~bias], lam[keep & ~bias], rtol=1e-5)
    np.testing.assert_allclose(r.coef_.ravel()[1:], m[1:], rtol=1e-5, atol=1e-9)
    # the kind weights are relative precisions (noise_levels="shared")
    np.testing.assert_allclose(r.noise_["energy"], 1 / np.sqrt(beta * weights["energy"]),
                               rtol=1e-5)
    np.testing.assert_allclose(r.noise_["forces"] / r.noise_["stress"], np.sqrt(5.0),
                               rtol=1e-10)


def test_ard_model_sigma_save_load_and_errors(cu_data, tmp_path):
    desc = PowerSpectrum(species=["Cu"], r_cut=4.5, n_max=4, l_max=3)
    model = HybridPotential(descriptor=desc, regressor=ARDLinearRegressor(
        noise_groups=True)).fit(cu_data[:8])
    r = model.regressor_
    assert 1 < r.active_.sum() < r.coef_.size          # ARD pruned part of the basis
    assert set(r.noise_["forces"]) == {"rattle", "strain"}
    # the posterior is BLR's with prior diag(lambda): sigma_ = H^-1
    np.testing.assert_allclose(r.penalty_scale_[r.active_] ** 2,
                               r.lambda_[r.active_] * (r.penalty_scale_[r.active_] ** 2
                                                       / r.lambda_[r.active_]))
    E, s = model.predict(cu_data[8:], return_std=True)
    F, fs = model.predict_forces(cu_data[8:9], return_std=True)
    assert np.all(s > 0) and np.all(fs[0] > 0)
    path = tmp_path / "ard.hpot"
    model.save(path)
    back = HybridPotential.load(path)
    assert type(back.regressor_) is ARDLinearRegressor
    np.testing.assert_array_equal(back.regressor_.active_, r.active_)
    np.testing.assert_array_equal(back.regressor_.lambda_, r.lambda_)
    E2, s2 = back.predict(cu_data[8:], return_std=True)
    np.testing.assert_allclose(E2, E, rtol=0, atol=1e-10)
    np.testing.assert_allclose(s2, s, rtol=1e-10)
    state, arrays = r.get_fitted_state()
    arrays.pop("active")
    with pytest.raises(ModelFormatError, match="'lambda' and 'active' must be arrays of "
                                               r"shape \(41,\)\. Got \(41,\) and None"):
        ARDLinearRegressor().set_fitted_state(state, arrays)
    with pytest.raises(InvalidParameterError, match="ARDLinearRegressor.from_coef is not "
                                                    "available.*BayesianLinearRegressor"):
        ARDLinearRegressor.from_coef(np.zeros((1, 3)))


@pytest.mark.parametrize("param, value, message", [
    ("threshold_lambda", 0.0, "'threshold_lambda' parameter of ARDLinearRegressor"),
    ("lambda_1", -1.0, "'lambda_1' parameter of ARDLinearRegressor"),
    ("alpha_2", np.inf, "'alpha_2' parameter of ARDLinearRegressor"),
    ("max_iter", 0, "'max_iter' parameter of ARDLinearRegressor"),
    ("noise_init", -0.1, "'noise_init' parameter of ARDLinearRegressor"),
    ("lambda_init", 0.0, "'lambda_init' parameter of ARDLinearRegressor"),
    ("noise_levels", "group", "'noise_levels' parameter of ARDLinearRegressor"),
])
def test_ard_parameter_errors(param, value, message):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(20, 3))
    with pytest.raises(InvalidParameterError, match=message + ".*Got"):
        ARDLinearRegressor(**{param: value}).fit(X, X[:, 0])


def test_ard_is_a_bayesian_linear_model_everywhere():
    """isinstance checks of the linear paths (LAMMPS export, LinearPosterior) accept it."""
    assert issubclass(ARDLinearRegressor, BayesianLinearRegressor)
    assert ARDLinearRegressor().has_uncertainty


def test_cli_fits_ard_from_config(tmp_path, cu_data, capsys):
    p = tmp_path / "cu.extxyz"
    write(p, cu_data)
    cfg = tmp_path / "fit.toml"
    cfg.write_text(f"""
[data]
train = "{p}"
test_fraction = 0.25
[descriptor]
type = "PowerSpectrum"
r_cut = 4.5
n_max = 4
l_max = 3
[regressor]
type = "ARDLinearRegressor"
noise_levels = "shared"
threshold_lambda = 1e5
[baseline]
type = "none"
[output]
model = "{tmp_path / 'cu.hpot'}"
report = ""
""")
    assert main(["fit", "-c", str(cfg), "--quiet"]) == 0
    assert "fitted ARDLinearRegressor" in capsys.readouterr().out
    model = HybridPotential.load(tmp_path / "cu.hpot")
    reg = model.regressor_
    assert reg.threshold_lambda == 1e5 and reg.active_.sum() < reg.active_.size
    # the default [fit] weights of the linear models (energy "auto": 15 x (mean atoms per
    # training structure)^2, resolved and stored in the model) set the shared noise's ratio
    w_e = model.weights["energy"]
    assert w_e != 1000.0 and np.isfinite(w_e) and w_e > 0
    np.testing.assert_allclose(reg.noise_["forces"] / reg.noise_["energy"],
                               np.sqrt(w_e), rtol=1e-8)


def test_linear_posterior_refuses_an_ard_model(cu_data):
    """Before: LinearPosterior(...).fit(ard_model).apply(ard_model) silently replaced the ARD
    σ by that of a shared-prior (non-pruned) model (0.029 -> 0.017 eV here)."""
    from hybridpot.uq import LinearPosterior

    desc = PowerSpectrum(species=["Cu"], r_cut=4.5, n_max=3, l_max=2)
    model = HybridPotential(descriptor=desc, regressor=ARDLinearRegressor()).fit(cu_data[:6])
    with pytest.raises(InvalidParameterError, match="ARDLinearRegressor, whose prior has one "
                                                    "precision per coefficient.*own σ"):
        LinearPosterior(n_steps=50, random_state=0).fit(model, cu_data[:6])


# --------------------------------------------------------------------------- smoothness prior
from sklearn.linear_model import Ridge  # noqa: E402

from hybridpot.descriptors import Bispectrum, DescriptorStack, SNAPBispectrum  # noqa: E402
from hybridpot.regression import feature_degrees, smoothness_prior  # noqa: E402


def test_feature_degrees_closed_forms():
    ps = PowerSpectrum(species=["Cu", "Ni"], r_cut=4.5, n_max=2, l_max=1)
    n, l = feature_degrees(ps)
    assert n.shape == (ps.n_features, 2)
    # feature order: (q1, q2) upper triangle (q = channel * n_max + k), l fastest
    Q, rows = 4, []
    for q1 in range(Q):
        for q2 in range(q1, Q):
            for ll in range(2):
                rows.append((q1 % 2, q2 % 2, ll))
    np.testing.assert_array_equal(np.c_[n, l[:, :1]], np.array(rows, dtype=float))
    np.testing.assert_array_equal(l[:, 0], l[:, 1])
    g = smoothness_prior(ps, p=2, wn=1.0, wl=0.5)
    assert isinstance(g, tuple) and len(g) == ps.n_features
    np.testing.assert_allclose(g, 1 + n[:, 0] ** 2 + n[:, 1] ** 2 + 0.5 * 2 * l[:, 0] ** 2)
    snap = SNAPBispectrum(species=["Cu"], twojmax=4, rcutfac=4.5)
    n, l = feature_degrees(snap)
    # LAMMPS's (2j1, 2j2, 2j) triples with j >= j1, halved; the first is B_000
    assert l.shape == (snap.n_features, 3) and np.all(n == 0)
    np.testing.assert_array_equal(l[0], [0, 0, 0])
    assert np.all(l[:, 2] >= l[:, 0]) and np.all(l[:, 0] >= l[:, 1])
    np.testing.assert_allclose(smoothness_prior(snap, p=1), 1 + l.sum(axis=1))
    bs = Bispectrum(species=["Cu"], r_cut=4.5, n_max=2, l_max=2)
    n, l = feature_degrees(bs)
    assert n.shape == l.shape == (bs.n_features, 3)
    np.testing.assert_array_equal(n[:, 1], n[:, 2])
    assert np.all((l.sum(axis=1) % 2) == 0)          # only parity-even triples
    st = DescriptorStack([PowerSpectrum(species=["Cu"], r_cut=4.5, n_max=2, l_max=1), snap])
    n, l = feature_degrees(st)
    assert n.shape == (st.n_features, 3) and np.all(n[-snap.n_features:] == 0)
    assert len(smoothness_prior(st)) == st.n_features


def test_smoothness_prior_errors():
    from hybridpot.descriptors import ACSF

    with pytest.raises(InvalidParameterError, match="'descriptor' argument of feature_degrees "
                                                    "must be a PowerSpectrum.*Got ACSF"):
        smoothness_prior(ACSF(species=["Cu"], r_cut=4.0))
    ps = PowerSpectrum(species=["Cu"], r_cut=4.5, n_max=2, l_max=1)
    with pytest.raises(InvalidParameterError, match="'p' parameter of smoothness_prior"):
        smoothness_prior(ps, p=-1)
    snap = SNAPBispectrum(species=["Cu"], twojmax=2, rcutfac=4.5, quadraticflag=True)
    with pytest.raises(InvalidParameterError, match="quadraticflag.*Got quadraticflag=True"):
        feature_degrees(snap)


def test_prior_scale_equals_column_rescaling():
    """Closed form: a penalty alpha Gamma_k^2 c_k^2 is ridge on the columns A_k / Gamma_k."""
    rng = np.random.default_rng(0)
    A = rng.normal(size=(50, 8))
    y = A @ rng.normal(size=8) + 0.1 * rng.normal(size=50)
    g = np.linspace(1.0, 5.0, 8)
    a = LinearRegressor(alpha=0.3, penalty_scaling="none", prior_scale=g).fit(A, y)
    b = Ridge(alpha=0.3, fit_intercept=False).fit(A / g, y)
    np.testing.assert_allclose(a.coef_, b.coef_ / g, rtol=1e-10)
    c = BayesianLinearRegressor(penalty_scaling="none", prior_scale=tuple(g)).fit(A, y)
    d = BayesianLinearRegressor(penalty_scaling="none").fit(A / g, y)
    np.testing.assert_allclose(c.coef_, d.coef_ / g, rtol=1e-10)
    np.testing.assert_allclose(c.log_evidence_, d.log_evidence_, rtol=1e-10)
    np.testing.assert_allclose(c.sigma_, d.sigma_ / np.outer(g, g), rtol=1e-8, atol=1e-14)


def test_prior_scale_in_a_model(cu_data, tmp_path):
    desc = PowerSpectrum(species=["Cu"], r_cut=4.5, n_max=3, l_max=2)
    gamma = smoothness_prior(desc, p=4)
    plain = HybridPotential(descriptor=desc, regressor=BayesianLinearRegressor()).fit(
        cu_data[:6])
    smooth = HybridPotential(descriptor=desc, regressor=BayesianLinearRegressor(
        prior_scale=gamma)).fit(cu_data[:6])
    r0, r1 = plain.regressor_, smooth.regressor_
    # the prior factor of every non-bias column is Gamma^2; the bias column is unchanged
    np.testing.assert_allclose((r1.penalty_scale_ / r0.penalty_scale_)[1:], gamma, rtol=1e-10)
    np.testing.assert_allclose(r1.penalty_scale_[0], r0.penalty_scale_[0], rtol=1e-12)
    path = tmp_path / "smooth.hpot"
    smooth.save(path)
    back = HybridPotential.load(path)
    assert back.regressor.prior_scale == gamma
    np.testing.assert_allclose(back.predict(cu_data[6:]), smooth.predict(cu_data[6:]),
                               rtol=1e-12)
    # quadratic: products get Gamma_k Gamma_l
    q = HybridPotential(descriptor=desc, regressor=LinearRegressor(
        quadratic=True, prior_scale=gamma, penalty_scaling="none")).fit(cu_data[:6])
    k, l = np.triu_indices(len(gamma))
    g = np.asarray(gamma)
    np.testing.assert_allclose(q.regressor_.penalty_scale_[1 + len(g):], g[k] * g[l])
    with pytest.raises(InvalidParameterError, match=r"'prior_scale' parameter of "
                       r"BayesianLinearRegressor must be None or 18 finite values > 0.*Got "
                       r"shape \(3,\)"):
        HybridPotential(descriptor=desc, regressor=BayesianLinearRegressor(
            prior_scale=[1.0, 2.0, 3.0])).fit(cu_data[:2])
    bad = list(gamma)
    bad[3] = -1.0
    with pytest.raises(InvalidParameterError, match="minimum -1 instead"):
        HybridPotential(descriptor=desc, regressor=LinearRegressor(
            prior_scale=bad)).fit(cu_data[:2])


def test_unseen_config_type_gets_the_largest_group_noise(cu_data):
    """Before: a config_type not in training got the first training group's noise (here
    'strain'/'rattle' whichever came first), so σ of an unseen kind of structure could be
    the smallest of all groups; BayesianLinearRegressor documents the largest."""
    desc = PowerSpectrum(species=["Cu"], r_cut=4.5, n_max=3, l_max=2)
    model = HybridPotential(descriptor=desc, regressor=BayesianLinearRegressor(
        noise_groups=True)).fit(cu_data[:8])
    a = cu_data[9].copy()
    std = {}
    for ct in ("rattle", "strain", "unseen"):
        a.info["config_type"] = ct
        _, fs = model.predict_forces([a], return_std=True)
        std[ct] = fs[0]
    big = max(("rattle", "strain"), key=lambda g: model.regressor_.noise_["forces"][g])
    np.testing.assert_allclose(std["unseen"], std[big], rtol=1e-12)
    assert not np.allclose(std["rattle"], std["strain"])


def test_cli_smoothness_prior_table(tmp_path, cu_data, capsys):
    p = tmp_path / "cu.extxyz"
    write(p, cu_data[:6])
    body = f"""
[data]
train = "{p}"
test_fraction = 0.0
[descriptor]
type = "PowerSpectrum"
r_cut = 4.5
n_max = 3
l_max = 2
[baseline]
type = "none"
[output]
model = "{tmp_path / 'cu.hpot'}"
report = ""
[regressor]
type = "BayesianLinearRegressor"
"""
    cfg = tmp_path / "fit.toml"
    cfg.write_text(body + "prior_scale = {p = 4, wl = 0.5}\n")
    assert main(["fit", "-c", str(cfg), "--quiet"]) == 0
    reg = HybridPotential.load(tmp_path / "cu.hpot").regressor
    desc = PowerSpectrum(species=["Cu"], r_cut=4.5, n_max=3, l_max=2)
    assert reg.prior_scale == smoothness_prior(desc, p=4, wl=0.5)
    capsys.readouterr()
    cfg.write_text(body + "prior_scale = {q = 4}\n")
    assert main(["fit", "-c", str(cfg), "--quiet"]) == 2
    assert "regressor.prior_scale takes the keys p, wn, wl" in capsys.readouterr().err
    cfg.write_text(body + "prior_scale = {p = -1}\n")
    assert main(["fit", "-c", str(cfg), "--quiet"]) == 2
    assert "regressor.prior_scale: The 'p' parameter of smoothness_prior" in \
        capsys.readouterr().err


def test_linear_posterior_uses_the_prior_scale(cu_data):
    """The emcee posterior's prior is the regressor's: factors b2 carry Gamma^2 (it used the
    plain prior, the σ of another model)."""
    from hybridpot.uq._accumulate import accumulate_factors

    desc = PowerSpectrum(species=["Cu"], r_cut=4.5, n_max=3, l_max=2)
    gamma = np.asarray(smoothness_prior(desc, p=2))
    model = HybridPotential(descriptor=desc, regressor=BayesianLinearRegressor(
        prior_scale=tuple(gamma))).fit(cu_data[:4])
    fac = accumulate_factors(model, cu_data[:4])
    np.testing.assert_allclose(fac.b2[1:], gamma ** 2, rtol=1e-12)
    plain = HybridPotential(descriptor=desc, regressor=BayesianLinearRegressor()).fit(
        cu_data[:4])
    np.testing.assert_allclose(accumulate_factors(plain, cu_data[:4]).b2[1:], 1.0)


def test_rcond_truncation_equals_truncated_svd(cu_data):
    """Closed form: numpy's lstsq with the same rcond (singular values below rcond * s_max
    dropped) on a design with a nearly dependent column."""
    rng = np.random.default_rng(1)
    A = rng.normal(size=(40, 6))
    A[:, 5] = A[:, 4] + 1e-7 * rng.normal(size=40)
    y = A[:, :5] @ rng.normal(size=5) + 0.01 * rng.normal(size=40)
    for rc in (1e-3, 1e-9):
        a = LinearRegressor(alpha=0.0, penalty_scaling="none", rcond=rc).fit(A, y)
        ref = np.linalg.lstsq(A, y, rcond=rc)[0]
        np.testing.assert_allclose(a.coef_, ref, rtol=1e-7, atol=1e-9)
    trunc = LinearRegressor(alpha=0.0, penalty_scaling="none", rcond=1e-3).fit(A, y).coef_
    assert abs(trunc[4] - trunc[5]) < 1e-6 * abs(trunc[4])   # the split of the pair is dropped
    # with structures: a negligible rcond is the ordinary penalised solve
    desc = PowerSpectrum(species=["Cu"], r_cut=4.5, n_max=3, l_max=2)
    m0 = HybridPotential(descriptor=desc, regressor=LinearRegressor(alpha=1e-4)).fit(
        cu_data[:4])
    m1 = HybridPotential(descriptor=desc, regressor=LinearRegressor(
        alpha=1e-4, rcond=1e-14)).fit(cu_data[:4])
    np.testing.assert_allclose(m1.regressor_.coef_, m0.regressor_.coef_, rtol=1e-6,
                               atol=1e-9)
    with pytest.raises(InvalidParameterError, match="'rcond' parameter of LinearRegressor"):
        LinearRegressor(rcond=-1.0).fit(A, y)


def test_sample_coef_committee(cu_data):
    """ACEpotentials' committee from the BLR posterior: draws have mean coef_ and covariance
    sigma_; the members' energies spread as the parameter part of σ (include_noise=False)."""
    desc = PowerSpectrum(species=["Cu"], r_cut=4.5, n_max=3, l_max=2)
    model = HybridPotential(descriptor=desc, regressor=BayesianLinearRegressor()).fit(
        cu_data[:6])
    reg = model.regressor_
    draws = reg.sample_coef(4000, random_state=0)
    assert draws.shape == (4000,) + reg.coef_.shape
    flat = draws.reshape(4000, -1)
    sd = np.sqrt(np.diag(reg.sigma_))
    np.testing.assert_allclose(flat.mean(0), reg.coef_.ravel(), atol=0.1 * sd.max())
    np.testing.assert_allclose(np.cov(flat.T), reg.sigma_, atol=0.1 * sd.max() ** 2)
    np.testing.assert_array_equal(reg.sample_coef(3, random_state=1),
                                  reg.sample_coef(3, random_state=1))
    # a numpy Generator (the project's usual random_state) and a RandomState are used as given
    np.testing.assert_array_equal(reg.sample_coef(3, random_state=np.random.default_rng(5)),
                                  reg.sample_coef(3, random_state=5))
    assert reg.sample_coef(2, random_state=np.random.RandomState(0)).shape[0] == 2
    # members' energies of a test cell: their std is the parameter part of the energy σ
    X = desc.compute(cu_data[7])
    q = np.hstack([np.ones((X.shape[0], 1)), X]).sum(0)           # sum_i [1, X_i]
    e = flat @ q
    batch_std = np.sqrt(q @ reg.sigma_ @ q)
    np.testing.assert_allclose(e.std(), batch_std, rtol=0.05)
    with pytest.raises(InvalidParameterError, match="'n_samples' parameter of "
                                                    "BayesianLinearRegressor.sample_coef"):
        reg.sample_coef(0)
    bare = BayesianLinearRegressor.from_coef(reg.coef_)
    with pytest.raises(InvalidParameterError, match="needs a posterior covariance"):
        bare.sample_coef(2)
    ard = ARDLinearRegressor().fit(np.random.default_rng(0).normal(size=(30, 4)),
                                   np.arange(30.0))
    assert ard.sample_coef(2, random_state=0).shape == (2, 4)


def test_write_report_has_the_error_table(cu_data, cu_model, tmp_path):
    from hybridpot.report import write_report

    test = cu_data[8:]
    path = write_report(cu_model, test, tmp_path / "rep")
    m = json.loads((tmp_path / "rep" / "metrics.json").read_text())
    table = error_table(cu_model, test)
    for g in ("rattle", "strain"):
        np.testing.assert_allclose(m["by_config_type"][g]["energy"]["rmse"],
                                   table[g]["energy_rmse"], rtol=1e-10)
        np.testing.assert_allclose(m["by_config_type"][g]["forces"]["mae"],
                                   table[g]["force_mae"], rtol=1e-10)
        np.testing.assert_allclose(m["by_config_type"][g]["stress"]["rmse"],
                                   160.21766208 * table[g]["stress_rmse"], rtol=1e-8)
    assert "Errors by config_type" in path.read_text()
    # one config type: no per-group table
    one = [a for a in test if a.info["config_type"] == "rattle"]
    write_report(cu_model, one, tmp_path / "rep1")
    assert "by_config_type" not in json.loads((tmp_path / "rep1" / "metrics.json").read_text())
