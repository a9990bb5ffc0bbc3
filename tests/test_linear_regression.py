"""LinearRegressor / BayesianLinearRegressor, design rows and the TSQR accumulator.

Independent truths: scikit-learn Ridge and BayesianRidge, closed-form posterior and log
evidence written out here, high-precision (mpmath) predictive variances far from the origin,
central finite differences of energy rows on a rattled, periodic, non-orthogonal cell.
"""

import mpmath
import numpy as np
import pytest
from ase import Atoms
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import BayesianRidge, Ridge

from hybridpot import InvalidParameterError, MissingLabelsError, NotFittedError
from hybridpot.descriptors._base import Descriptor, DescriptorGradients
from hybridpot.regression import (BatchSource, BayesianLinearRegressor, LinearRegressor,
                                  StructureBatch)
from hybridpot.regression._design import (energy_rows, feature_map, labelled_rows, n_block,
                                          pair_rows, pair_rows_reference, split_batch)
from hybridpot.regression._tsqr import TSQRAccumulator

from conftest import skewed_two_element_cell
from descriptor_cases import DESCRIPTOR_CASES

SPECIES = ["Cu", "Ni"]


# ---------------------------------------------------------------------------------------------
# a tiny descriptor with an exact Jacobian: X_i[z, k] = sum_{j of element z} exp(-a_k r^2) fc(r)
# ---------------------------------------------------------------------------------------------
class ToyRadial(Descriptor):
    """Species-resolved Gaussian radial sums with a cosine cutoff (test helper)."""

    def __init__(self, *, species=("Cu", "Ni"), r_cut=3.2, widths=(0.4, 0.9, 1.7)):
        self.species = species
        self.r_cut = r_cut
        self.widths = widths

    def _validate(self):
        self._check_common()
        self._a = np.asarray(self.widths, dtype=np.float64)

    @property
    def n_features(self):
        return len(self.species) * len(self.widths)

    def _radial(self, nl):
        r = nl.d
        rc = self._r_cut
        fc = 0.5 * (np.cos(np.pi * r / rc) + 1.0)
        dfc = -0.5 * np.pi / rc * np.sin(np.pi * r / rc)
        e = np.exp(-self._a[None, :] * r[:, None] ** 2)
        val = e * fc[:, None]
        dval = -2.0 * self._a[None, :] * r[:, None] * e * fc[:, None] + e * dfc[:, None]
        return val, dval

    def _compute(self, nl, species_idx, gradients):
        K = len(self._a)
        val, dval = self._radial(nl)
        ch = species_idx[nl.j][:, None] * K + np.arange(K)[None, :]
        X = np.zeros((nl.n_atoms, self.n_features))
        np.add.at(X, (np.repeat(nl.i[:, None], K, axis=1), ch), val)
        if not gradients:
            return X, None
        d = np.zeros((nl.n_pairs, 3, self.n_features))
        unit = nl.D / nl.d[:, None]
        for k in range(K):  # K is 3: a loop over feature channels, not over pairs
            d[np.arange(nl.n_pairs), :, ch[:, k]] = dval[:, k, None] * unit
        return X, d

    def _backward(self, nl, species_idx, dE_dX):
        K = len(self._a)
        _, dval = self._radial(nl)
        ch = species_idx[nl.j][:, None] * K + np.arange(K)[None, :]
        coef = np.take_along_axis(dE_dX[nl.i], ch, axis=1)
        return (coef * dval).sum(axis=1)[:, None] * nl.D / nl.d[:, None]


def make_batch(structures, desc, *, energy=None, forces=None, stress=None, weights=None,
               group=None, shift=0.0):
    """Concatenate structures into a StructureBatch (labels optional; NaN = missing)."""
    Xs, sps, st, pi, pj, rij, dd, vol = [], [], [], [], [], [], [], []
    off = 0
    for s, at in enumerate(structures):
        X, g = desc.compute(at, gradients=True)
        Xs.append(X + shift)
        sps.append(np.array([SPECIES.index(c) for c in at.get_chemical_symbols()]))
        st.append(np.full(len(at), s))
        pi.append(g.pair_i + off)
        pj.append(g.pair_j + off)
        rij.append(g.rij)
        dd.append(g.d_drij)
        vol.append(at.get_volume() if at.pbc.all() else np.nan)
        off += len(at)
    ns = len(structures)
    grads = DescriptorGradients(np.concatenate(pi), np.concatenate(pj), np.concatenate(rij),
                                np.concatenate(dd), off)
    return StructureBatch(
        X=np.vstack(Xs), species=np.concatenate(sps).astype(np.int64),
        structure=np.concatenate(st).astype(np.int64), gradients=grads,
        volume=np.array(vol),
        energy=np.full(ns, np.nan) if energy is None else np.asarray(energy, float),
        forces=np.full((off, 3), np.nan) if forces is None else np.asarray(forces, float),
        stress=np.full((ns, 6), np.nan) if stress is None else np.asarray(stress, float),
        weights={} if weights is None else weights,
        group=np.zeros(ns, np.int64) if group is None else np.asarray(group, np.int64),
        index=np.arange(ns))


def structures(n, seed=0, rattle=0.12, symbols=("Cu", "Ni")):
    out = []
    for s in range(n):
        at = skewed_two_element_cell(seed=seed + s, rattle=rattle, symbols=symbols)
        at.set_cell(at.cell.array * (1.0 + 0.03 * (s % 3)), scale_atoms=True)
        out.append(at)
    return out


def true_coef(rng, F, quadratic, n_species=2, scale=0.3):
    P = n_block(F, quadratic)
    c = rng.normal(0.0, scale, (n_species, P))
    if quadratic:
        c[:, 1 + F:] *= 0.2
    return c


def labelled(structs, desc, coef, quadratic, rng=None, noise=(0.0, 0.0, 0.0), shift=0.0):
    """Batch whose labels are the predictions of ``coef`` (+ Gaussian noise)."""
    b = make_batch(structs, desc, shift=shift)
    model = LinearRegressor.from_coef(coef, quadratic=quadratic)
    p = model.predict_batch(b)
    nat = b.n_atoms_per_structure
    E, F, S = p["energy"], p["forces"], p["stress"]
    if rng is not None:
        E = E + nat * rng.normal(0, noise[0], E.shape)
        F = F + rng.normal(0, noise[1], F.shape)
        S = S + rng.normal(0, noise[2], S.shape)
    b.energy, b.forces, b.stress = E, F, S
    return b


@pytest.fixture(scope="module")
def desc():
    return ToyRadial(species=SPECIES)


# ---------------------------------------------------------------------------------------------
# plain path vs scikit-learn and closed forms
# ---------------------------------------------------------------------------------------------
def test_ridge_equals_sklearn_ridge(rng):
    A = rng.normal(size=(80, 6)) * np.array([1, 10, 0.1, 3, 1, 100])
    y = A @ rng.normal(size=6) + 0.1 * rng.normal(size=80)
    ours = LinearRegressor(alpha=2.5, penalty_scaling="none").fit(A, y)
    ref = Ridge(alpha=2.5, fit_intercept=False, solver="svd").fit(A, y)
    np.testing.assert_allclose(ours.coef_, ref.coef_, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ours.predict(A), ref.predict(A), rtol=1e-10)
    # "rms" scaling == Ridge on the design with RMS-normalised columns
    D = np.sqrt((A ** 2).mean(axis=0))
    ours = LinearRegressor(alpha=2.5).fit(A, y)
    ref = Ridge(alpha=2.5, fit_intercept=False, solver="svd").fit(A / D, y)
    np.testing.assert_allclose(ours.coef_, ref.coef_ / D, rtol=1e-9)
    np.testing.assert_allclose(ours.penalty_scale_, D, rtol=1e-12)


@pytest.mark.parametrize("scaling", ["none", "rms"])
def test_ridge_with_fewer_rows_than_columns(rng, scaling):
    """Wide designs (a quadratic model on a few cells) take the SVD of the rows: the same
    ridge solution as scikit-learn, and as the least squares of the augmented system (two
    copies of the rows with twice the penalty, more rows than columns)."""
    A = rng.normal(size=(40, 120)) * rng.uniform(0.1, 10.0, 120)
    y = A @ rng.normal(size=120) + 0.1 * rng.normal(size=40)
    ours = LinearRegressor(alpha=0.3, penalty_scaling=scaling).fit(A, y)
    D = np.sqrt((A ** 2).mean(axis=0)) if scaling == "rms" else np.ones(120)
    ref = Ridge(alpha=0.3, fit_intercept=False, solver="svd").fit(A / D, y)
    np.testing.assert_allclose(ours.coef_, ref.coef_ / D, rtol=1e-8,
                               atol=1e-10 * np.abs(ref.coef_ / D).max())
    # four copies of the rows (160 > 120 columns: the augmented least squares) with alpha 0.6
    # have the normal equations of alpha 0.6 / 4 on one copy (the column RMS is unchanged)
    tall = LinearRegressor(alpha=0.6, penalty_scaling=scaling).fit(np.vstack([A, A, A, A]),
                                                                   np.tile(y, 4))
    once = LinearRegressor(alpha=0.15, penalty_scaling=scaling).fit(A, y)
    np.testing.assert_allclose(tall.coef_, once.coef_, rtol=1e-7,
                               atol=1e-9 * np.abs(once.coef_).max())


def test_ridge_sample_weight_and_zero_alpha(rng):
    A = rng.normal(size=(50, 4))
    y = A @ rng.normal(size=4) + 0.1 * rng.normal(size=50)
    w = rng.uniform(0.0, 3.0, 50)
    w[:5] = 0.0
    ours = LinearRegressor(alpha=0.7, penalty_scaling="none").fit(A, y, sample_weight=w)
    ref = Ridge(alpha=0.7, fit_intercept=False).fit(A, y, sample_weight=w)
    np.testing.assert_allclose(ours.coef_, ref.coef_, rtol=1e-10)
    # alpha = 0 on a rank-deficient design: the minimum-norm least-squares solution
    Ad = np.hstack([A, A[:, :1]])
    ours = LinearRegressor(alpha=0.0, penalty_scaling="none").fit(Ad, y)
    np.testing.assert_allclose(ours.coef_, np.linalg.lstsq(Ad, y, rcond=None)[0], rtol=1e-8)


def _closed_form(A, y, alpha, beta, prior_scale):
    """Posterior mean, covariance, log evidence: y ~ N(A w, 1/beta), w ~ N(0, 1/(alpha d^2))."""
    n, M = A.shape
    P0 = alpha * np.diag(prior_scale ** 2)
    H = P0 + beta * A.T @ A
    S = np.linalg.inv(H)
    m = beta * S @ A.T @ y
    E = beta * np.sum((A @ m - y) ** 2) + m @ P0 @ m
    logev = (0.5 * n * np.log(beta) + 0.5 * np.linalg.slogdet(P0)[1] - 0.5 * E
             - 0.5 * np.linalg.slogdet(H)[1] - 0.5 * n * np.log(2 * np.pi))
    return m, S, logev


@pytest.mark.parametrize("scaling", ["none", "rms"])
def test_bayesian_closed_form_and_evidence_maximum(rng, scaling):
    A = rng.normal(size=(40, 5)) * np.array([1.0, 2.0, 0.5, 1.0, 3.0])
    y = A @ np.array([0.5, -0.2, 0.0, 1.0, 0.05]) + 0.3 * rng.normal(size=40)
    b = BayesianLinearRegressor(penalty_scaling=scaling).fit(A, y)
    d = np.ones(5) if scaling == "none" else np.sqrt((A ** 2).mean(axis=0))
    beta = 1.0 / b.noise_["target"] ** 2
    m, S, logev = _closed_form(A, y, b.alpha_, beta, d)
    np.testing.assert_allclose(b.coef_, m, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(b.sigma_, S, rtol=1e-8, atol=1e-14)
    np.testing.assert_allclose(b.log_evidence_, logev, rtol=1e-10)
    # it is the maximum of the evidence: every perturbation of (alpha, beta) lowers it
    for fa, fb in [(1.05, 1), (0.95, 1), (1, 1.05), (1, 0.95), (1.05, 0.95)]:
        assert _closed_form(A, y, b.alpha_ * fa, beta * fb, d)[2] < logev


def _closed_form_kinds(blocks, alpha, betas, prior_scale):
    """Log evidence and posterior with one noise precision per block (A, y, w)."""
    P0 = alpha * np.diag(prior_scale ** 2)
    H = P0.copy()
    rhs = 0.0
    for (A, y, w), b in zip(blocks, betas):
        H += b * (A * w[:, None]).T @ A
        rhs = rhs + b * (A * w[:, None]).T @ y
    S = np.linalg.inv(H)
    m = S @ rhs
    logev = 0.5 * np.linalg.slogdet(P0)[1] - 0.5 * m @ P0 @ m - 0.5 * np.linalg.slogdet(H)[1]
    for (A, y, w), b in zip(blocks, betas):
        n = len(y)
        logev += (0.5 * n * np.log(b) + 0.5 * np.log(w).sum()
                  - 0.5 * b * np.sum(w * (A @ m - y) ** 2) - 0.5 * n * np.log(2 * np.pi))
    return m, S, logev


def test_bayesian_per_kind_noise_closed_form(desc, rng):
    structs = structures(8, seed=71, symbols=("Cu", "Cu"))
    coef = true_coef(rng, desc.n_features, False)
    b = labelled(structs, desc, coef, False, rng=rng, noise=(0.003, 0.02, 2e-4))
    b.weights = {"forces": np.linspace(0.5, 1.5, 8), "energy": np.full(8, 3.0)}
    src = BatchSource([b], n_species=2, n_features=desc.n_features)
    model = BayesianLinearRegressor(tol=1e-12).fit(src)
    blocks = {k: (A, y, w) for k, _, A, y, w in labelled_rows(b, 2, False)}
    kinds = ["energy", "forces", "stress"]
    # noise_ is the noise of a row of unit weight
    betas = np.array([model.noise_[k] ** -2 for k in kinds])
    d = model.penalty_scale_
    m, S, logev = _closed_form_kinds([blocks[k] for k in kinds], model.alpha_, betas, d)
    np.testing.assert_allclose(model.coef_.ravel(), m, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(model.sigma_, S, rtol=1e-6, atol=1e-12 * np.abs(S).max())
    np.testing.assert_allclose(model.log_evidence_, logev, rtol=1e-10)
    fast = BayesianLinearRegressor(tol=1e-12, accelerate=True).fit(src)
    np.testing.assert_allclose(fast.log_evidence_, model.log_evidence_, rtol=1e-12)
    np.testing.assert_allclose(fast.coef_, model.coef_, rtol=1e-8, atol=1e-10)
    assert fast.n_iter_ <= model.n_iter_
    # stationary point: central differences of the closed form in log-hyperparameters vanish
    h = 1e-4
    theta = np.log(np.concatenate([[model.alpha_], betas]))
    for q in range(4):
        lp, lm = theta.copy(), theta.copy()
        lp[q] += h
        lm[q] -= h
        fp = _closed_form_kinds([blocks[k] for k in kinds], np.exp(lp[0]), np.exp(lp[1:]), d)[2]
        fm = _closed_form_kinds([blocks[k] for k in kinds], np.exp(lm[0]), np.exp(lm[1:]), d)[2]
        assert abs(fp - fm) / (2 * h) < 1e-4
    # the noise levels found are those of the data
    assert 0.5 < model.noise_["forces"] * np.sqrt(blocks["forces"][2].mean()) / 0.02 < 1.5
    assert 0.5 < model.noise_["stress"] / 2e-4 < 1.5


@pytest.mark.parametrize("accelerate", [False, True])
def test_per_kind_noise_on_the_svd_of_the_rows(desc, rng, monkeypatch, accelerate):
    """The row-SVD form of the several-noise-level iteration (taken when rows are few,
    DUAL_ROWS_FRACTION; forced here) reaches the closed-form evidence maximum like the
    Cholesky form."""
    import hybridpot.regression._linear as lin

    structs = structures(8, seed=71, symbols=("Cu", "Cu"))
    coef = true_coef(rng, desc.n_features, False)
    b = labelled(structs, desc, coef, False, rng=rng, noise=(0.003, 0.02, 2e-4))
    src = BatchSource([b], n_species=2, n_features=desc.n_features)
    primal = BayesianLinearRegressor(tol=1e-12, accelerate=accelerate).fit(src)
    monkeypatch.setattr(lin, "DUAL_ROWS_FRACTION", 1e9)
    dual = BayesianLinearRegressor(tol=1e-12, accelerate=accelerate).fit(src)
    np.testing.assert_allclose(dual.alpha_, primal.alpha_, rtol=1e-7)
    for k in ("energy", "forces", "stress"):
        np.testing.assert_allclose(dual.noise_[k], primal.noise_[k], rtol=1e-7)
    np.testing.assert_allclose(dual.coef_, primal.coef_, rtol=1e-7,
                               atol=1e-9 * np.abs(primal.coef_).max())
    np.testing.assert_allclose(dual.log_evidence_, primal.log_evidence_, rtol=1e-10)
    blocks = {k: (A, y, w) for k, _, A, y, w in labelled_rows(b, 2, False)}
    kinds = ["energy", "forces", "stress"]
    betas = np.array([dual.noise_[k] ** -2 for k in kinds])
    m, S, logev = _closed_form_kinds([blocks[k] for k in kinds], dual.alpha_, betas,
                                     dual.penalty_scale_)
    np.testing.assert_allclose(dual.coef_.ravel(), m, rtol=1e-7, atol=1e-9)


def test_shared_noise_level_and_kind_weights(desc, rng):
    structs = structures(8, seed=72, symbols=("Cu", "Cu"))
    coef = true_coef(rng, desc.n_features, False)
    b = labelled(structs, desc, coef, False, rng=rng, noise=(0.003, 0.02, 2e-4))
    b.stress[:] = np.nan
    src = BatchSource([b], n_species=2, n_features=desc.n_features)
    b.weights = {"energy": np.full(8, 40.0), "forces": np.ones(8)}
    shared = BayesianLinearRegressor(noise_levels="shared", tol=1e-12).fit(src)
    blocks = {k: (A, y, w) for k, _, A, y, w in labelled_rows(b, 2, False)}
    beta = shared.noise_["forces"] ** -2
    np.testing.assert_allclose(shared.noise_["energy"], (beta * 40.0) ** -0.5, rtol=1e-12)
    bl = [blocks["energy"], blocks["forces"]]
    d = shared.penalty_scale_
    m, _, logev = _closed_form_kinds(bl, shared.alpha_, [beta, beta], d)
    np.testing.assert_allclose(shared.coef_.ravel(), m, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(shared.log_evidence_, logev, rtol=1e-10)
    for fa, fb in [(1.05, 1), (0.95, 1), (1, 1.05), (1, 0.95)]:
        assert _closed_form_kinds(bl, shared.alpha_ * fa, [beta * fb] * 2, d)[2] < logev
    # a constant kind weight is absorbed by beta_k with per-kind noise, not with shared noise
    # (with penalty_scaling="none": the RMS column scaling itself depends on the weights)
    kinds = BayesianLinearRegressor(tol=1e-12, penalty_scaling="none").fit(src)
    b.weights = {"energy": np.full(8, 1.0), "forces": np.ones(8)}
    kinds1 = BayesianLinearRegressor(tol=1e-12, penalty_scaling="none").fit(src)
    shared1 = BayesianLinearRegressor(noise_levels="shared", tol=1e-12).fit(src)
    np.testing.assert_allclose(kinds1.coef_, kinds.coef_, rtol=1e-7, atol=1e-10)
    # (noise_ refers to unit weight: the weight-40 fit reports a sqrt(40) larger sigma)
    np.testing.assert_allclose(kinds.noise_["energy"], np.sqrt(40.0) * kinds1.noise_["energy"],
                               rtol=1e-7)
    assert np.abs(shared1.coef_ - shared.coef_).max() > 1e-6
    # shared noise per config group: one beta per group, reported per kind and group
    b.group = np.arange(8) % 2
    src2 = BatchSource([b], n_species=2, n_features=desc.n_features, group_names=["a", "b"])
    sg = BayesianLinearRegressor(noise_levels="shared", noise_groups=True).fit(src2)
    assert set(sg.noise_) == {"energy", "forces"} and set(sg.noise_["energy"]) == {"a", "b"}
    np.testing.assert_allclose(sg.noise_["energy"]["a"], sg.noise_["forces"]["a"], rtol=1e-12)
    with pytest.raises(InvalidParameterError, match=r"'noise_levels' .*'shared'.*Got 'all'"):
        BayesianLinearRegressor(noise_levels="all").fit(src)


def test_predictive_std_of_forces_and_stress(desc, rng):
    structs = structures(6, seed=81)
    coef = true_coef(rng, desc.n_features, True)
    b = labelled(structs, desc, coef, True, rng=rng, noise=(0.003, 0.02, 2e-4))
    model = BayesianLinearRegressor(quadratic=True).fit([b])
    test = make_batch(structures(2, seed=90), desc)
    out = model.predict_batch(test, return_std=True)
    Fr, Sr = pair_rows(test, 2, True)
    np.testing.assert_allclose(
        out["forces_std"].ravel() ** 2,
        np.einsum("ij,jk,ik->i", Fr, model.sigma_, Fr) + model.noise_["forces"] ** 2,
        rtol=1e-6)
    np.testing.assert_allclose(
        out["stress_std"].ravel() ** 2,
        np.einsum("ij,jk,ik->i", Sr, model.sigma_, Sr) + model.noise_["stress"] ** 2,
        rtol=1e-6)
    nostd = model.predict_batch(test, return_std=True, include_noise=False)
    assert np.all(nostd["forces_std"] < out["forces_std"])
    with pytest.warns(ConvergenceWarning, match="did not converge in max_iter=2"):
        BayesianLinearRegressor(quadratic=True, max_iter=2).fit([b])


def test_bayesian_equals_sklearn_bayesian_ridge(rng):
    A = rng.normal(size=(100, 4))
    y = A @ np.array([1.0, -2.0, 0.3, 0.0]) + 0.2 * rng.normal(size=100)
    ours = BayesianLinearRegressor(penalty_scaling="none").fit(A, y)
    ref = BayesianRidge(fit_intercept=False, alpha_1=0.0, alpha_2=0.0, lambda_1=0.0,
                        lambda_2=0.0, tol=1e-14, max_iter=100000, compute_score=True).fit(A, y)
    np.testing.assert_allclose(ours.alpha_, ref.lambda_, rtol=1e-7)
    np.testing.assert_allclose(ours.noise_["target"], ref.alpha_ ** -0.5, rtol=1e-7)
    np.testing.assert_allclose(ours.coef_, ref.coef_, rtol=1e-7, atol=1e-10)
    np.testing.assert_allclose(ours.sigma_, ref.sigma_, rtol=1e-6)
    np.testing.assert_allclose(ours.log_evidence_, ref.scores_[-1], rtol=1e-9)
    mean, std = ours.predict(A[:7], return_std=True)
    rmean, rstd = ref.predict(A[:7], return_std=True)
    np.testing.assert_allclose(mean, rmean, rtol=1e-7)
    np.testing.assert_allclose(std, rstd, rtol=1e-6)


def _mp_predictive_var(A, y, alpha, beta, prior_scale, At, dps=60):
    """Predictive parameter variance diag(At H^{-1} At^T) in mpmath (independent truth)."""
    with mpmath.workdps(dps):
        Am = mpmath.matrix(A.tolist())
        H = Am.T * Am * mpmath.mpf(beta)
        for j in range(A.shape[1]):
            H[j, j] += mpmath.mpf(alpha) * mpmath.mpf(prior_scale[j]) ** 2
        Hi = H ** -1
        out = []
        for a in At:
            av = mpmath.matrix(a.tolist())
            out.append(float((av.T * Hi * av)[0]))
    return np.array(out)


def test_predictive_std_far_from_origin(rng):
    n = 30
    x = rng.uniform(0, 1, (n, 2)) + 1e3                      # far from the origin
    A = np.hstack([np.ones((n, 1)), x])
    y = 3.0 + x @ np.array([0.2, -0.1]) + 0.05 * rng.normal(size=n)
    b = BayesianLinearRegressor(penalty_scaling="none").fit(A, y)
    xt = np.vstack([rng.uniform(0, 1, (5, 2)) + 1e3, [[1e3 + 5, 1e3 - 5]]])
    At = np.hstack([np.ones((6, 1)), xt])
    beta = 1.0 / b.noise_["target"] ** 2
    var = _mp_predictive_var(A, y, b.alpha_, beta, np.ones(3), At)
    _, std = b.predict(At, return_std=True, include_noise=False)
    np.testing.assert_allclose(std ** 2, var, rtol=1e-6)
    _, std_n = b.predict(At, return_std=True)
    np.testing.assert_allclose(std_n ** 2, var + 1.0 / beta, rtol=1e-6)
    # inside the training cloud the parameter std is small compared with the noise
    assert np.all(std[:5] < b.noise_["target"])


def test_predictive_std_far_from_origin_batches(desc, rng):
    """Batch path with descriptors shifted by +1e3: energy std equals the mpmath truth."""
    structs = structures(12, seed=3)
    coef = true_coef(rng, desc.n_features, False)
    b = labelled(structs, desc, coef, False, shift=1e3)
    b.energy = b.energy + rng.normal(0, 0.01, b.energy.shape) * b.n_atoms_per_structure
    b.forces[:] = np.nan
    b.stress[:] = np.nan
    b.gradients = None
    model = BayesianLinearRegressor().fit([b])
    A = energy_rows(b, 2, False)
    beta = 1.0 / model.noise_["energy"] ** 2
    test = labelled(structures(3, seed=40), desc, coef, False, shift=1e3)
    test.gradients = None
    At = energy_rows(test, 2, False) * test.n_atoms_per_structure[:, None]
    var = _mp_predictive_var(A, b.energy / b.n_atoms_per_structure, model.alpha_, beta,
                             model.penalty_scale_, At)
    out = model.predict_batch(test, return_std=True, include_noise=False)
    np.testing.assert_allclose(out["energy_std"] ** 2, var, rtol=1e-5)
    out = model.predict_batch(test, return_std=True)
    np.testing.assert_allclose(out["energy_std"] ** 2,
                               var + (test.n_atoms_per_structure / np.sqrt(beta)) ** 2,
                               rtol=1e-5)


def test_coverage_with_known_noise(rng):
    sigma = 0.3
    w = rng.normal(size=6)
    A = rng.normal(size=(300, 6)) + 2.0
    y = A @ w + sigma * rng.normal(size=300)
    b = BayesianLinearRegressor().fit(A, y)
    assert abs(b.noise_["target"] / sigma - 1) < 0.15
    At = rng.normal(size=(4000, 6)) * 2 + 2.0
    yt = At @ w + sigma * rng.normal(size=4000)
    mean, std = b.predict(At, return_std=True)
    z = np.abs(yt - mean) / std
    assert abs(np.mean(z < 1.0) - 0.683) < 0.03
    assert abs(np.mean(z < 1.96) - 0.95) < 0.02


# ---------------------------------------------------------------------------------------------
# TSQR streaming
# ---------------------------------------------------------------------------------------------
def test_tsqr_accumulator_equals_one_shot(rng):
    A = rng.normal(size=(503, 7)) * np.logspace(-3, 3, 7)
    y = rng.normal(size=503)
    w = rng.uniform(0.1, 2.0, 503)
    acc = TSQRAccumulator(7, buffer_rows=16)
    for s in np.array_split(np.arange(503), 97):
        acc.add("forces", A[s], y[s], w[s])
    G, b, yy = acc.gram("forces")
    sw = np.sqrt(w)
    np.testing.assert_allclose(G, (A * w[:, None]).T @ A, rtol=1e-11)
    np.testing.assert_allclose(b, (A * w[:, None]).T @ y, rtol=1e-10, atol=1e-9)
    np.testing.assert_allclose(yy, np.sum(w * y * y), rtol=1e-12)
    assert acc.n_rows["forces"] == 503 and acc.R("forces").shape == (8, 8)
    np.testing.assert_allclose(acc.sum_log_weight["forces"], np.log(w).sum(), rtol=1e-12)
    # the residual norm of the least-squares problem sits in R[-1, -1]
    res = np.linalg.lstsq(A * sw[:, None], y * sw, rcond=None)[1][0]
    np.testing.assert_allclose(acc.R("forces")[-1, -1] ** 2, res, rtol=1e-8)


@pytest.mark.parametrize("quadratic", [False, True])
def test_streamed_equals_one_shot(desc, rng, quadratic):
    # one element: the pair-sum toy descriptor then has no redundant coefficient combinations,
    # so the evidence optimum is well conditioned and both paths agree to rounding
    structs = structures(10, seed=7, symbols=("Cu", "Cu"))
    coef = true_coef(rng, desc.n_features, quadratic)
    full = labelled(structs, desc, coef, quadratic, rng=rng, noise=(0.01, 0.05, 1e-3))
    parts = [labelled([a], desc, coef, quadratic) for a in structs]
    for k, p in enumerate(parts):  # same noisy labels, one structure per batch
        sel = full.structure == k
        p.energy, p.forces, p.stress = full.energy[[k]], full.forces[sel], full.stress[[k]]
    for est in (LinearRegressor(alpha=1e-4, quadratic=quadratic),
                BayesianLinearRegressor(quadratic=quadratic, tol=1e-12)):
        one = clone(est).fit(BatchSource([full], n_species=2, n_features=desc.n_features))
        many = clone(est).fit(BatchSource(lambda: iter(parts), n_species=2,
                                          n_features=desc.n_features))
        np.testing.assert_allclose(many.coef_, one.coef_, rtol=1e-10, atol=1e-10)
        if isinstance(est, BayesianLinearRegressor):
            np.testing.assert_allclose(many.log_evidence_, one.log_evidence_, rtol=1e-10)
            np.testing.assert_allclose(many.sigma_, one.sigma_, rtol=1e-8,
                                       atol=1e-10 * np.abs(one.sigma_).max())


def test_gram_method_matches_qr(rng):
    A = rng.normal(size=(300, 5)) + 3.0
    y = rng.normal(size=300)
    qr, gram = TSQRAccumulator(5, buffer_rows=20), TSQRAccumulator(5, method="gram")
    for s in np.array_split(np.arange(300), 13):
        qr.add("energy", A[s], y[s])
        gram.add("energy", A[s], y[s])
    for a, b in zip(qr.gram("energy"), gram.gram("energy")):
        np.testing.assert_allclose(a, b, rtol=1e-11)
    with pytest.raises(InvalidParameterError, match="'method' parameter .*Got 'lu'"):
        TSQRAccumulator(5, method="lu")


def test_split_batches_and_normal_solver_agree(desc, rng, monkeypatch):
    import hybridpot.regression._linear as lin

    structs = structures(6, seed=61, symbols=("Cu", "Cu"))
    coef = true_coef(rng, desc.n_features, True)
    b = labelled(structs, desc, coef, True, rng=rng, noise=(0.01, 0.05, 1e-3))
    b.weights = {"forces": np.linspace(0.5, 2.0, 6)}
    src = BatchSource([b], n_species=2, n_features=desc.n_features)
    ref = BayesianLinearRegressor(quadratic=True, tol=1e-12).fit(src)
    normal = BayesianLinearRegressor(quadratic=True, tol=1e-12, solver="normal").fit(src)
    np.testing.assert_allclose(normal.coef_, ref.coef_, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(normal.log_evidence_, ref.log_evidence_, rtol=1e-8)
    np.testing.assert_allclose(normal.sigma_, ref.sigma_, rtol=1e-6,
                               atol=1e-9 * np.abs(ref.sigma_).max())
    r1 = LinearRegressor(quadratic=True, alpha=1e-3).fit(src)
    r2 = LinearRegressor(quadratic=True, alpha=1e-3, solver="normal").fit(src)
    # (cond(A)^2 vs cond(A): the Gram path agrees to the accuracy it can deliver; 1e-5 was
    # too tight across BLAS kernels: OPENBLAS_CORETYPE=Sandybridge gave 7e-6)
    np.testing.assert_allclose(r2.coef_, r1.coef_, rtol=1e-4, atol=1e-7)
    # force design rows built for at most ~2 structures at a time: identical fit
    M = 2 * n_block(desc.n_features, True)
    monkeypatch.setattr(lin, "CHUNK_BYTES", 24 * M * 8)
    subs = list(split_batch(b, 8))
    assert [s.n_structures for s in subs] == [2, 2, 2]
    np.testing.assert_array_equal(np.concatenate([s.forces for s in subs]), b.forces)
    np.testing.assert_allclose(np.vstack([pair_rows(s, 2, True)[0] for s in subs]),
                               pair_rows(b, 2, True)[0], rtol=1e-14, atol=1e-15)
    split = BayesianLinearRegressor(quadratic=True, tol=1e-12).fit(src)
    np.testing.assert_allclose(split.coef_, ref.coef_, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(split.log_evidence_, ref.log_evidence_, rtol=1e-12)


# ---------------------------------------------------------------------------------------------
# design rows vs finite differences
# ---------------------------------------------------------------------------------------------
def _total_energy_row(at, desc, quadratic):
    b = make_batch([at], desc)
    return energy_rows(b, 2, quadratic)[0] * len(at)


@pytest.mark.parametrize("quadratic", [False, True])
def test_force_and_stress_rows_vs_finite_differences(desc, quadratic):
    at = skewed_two_element_cell(seed=2, rattle=0.12)
    b = make_batch([at], desc)
    Fr, Sr = pair_rows(b, 2, quadratic)
    Fref, Sref = pair_rows_reference(b, 2, quadratic)
    np.testing.assert_allclose(Fr, Fref, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(Sr, Sref, rtol=1e-12, atol=1e-14)
    h = 1e-5
    for k in range(len(at)):
        for a in range(3):
            ap, am = at.copy(), at.copy()
            ap.positions[k, a] += h
            am.positions[k, a] -= h
            fd = (_total_energy_row(ap, desc, quadratic)
                  - _total_energy_row(am, desc, quadratic)) / (2 * h)
            np.testing.assert_allclose(Fr[3 * k + a], -fd, rtol=1e-6, atol=1e-8)
    V = at.get_volume()
    for v, (a, c) in enumerate([(0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1)]):
        rows = []
        for sgn in (1, -1):
            eps = np.zeros((3, 3))
            eps[a, c] = sgn * h
            ad = at.copy()
            ad.set_cell(at.cell.array @ (np.eye(3) + eps).T, scale_atoms=False)
            ad.positions = at.positions @ (np.eye(3) + eps).T
            rows.append(_total_energy_row(ad, desc, quadratic))
        np.testing.assert_allclose(Sr[v], (rows[0] - rows[1]) / (2 * h) / V, rtol=1e-6,
                                   atol=1e-9)


@pytest.mark.parametrize("quadratic", [False, True])
def test_atomic_energy_gradient_and_predictions_consistent(desc, rng, quadratic):
    F = desc.n_features
    coef = true_coef(rng, F, quadratic)
    model = LinearRegressor.from_coef(coef, quadratic=quadratic)
    X = rng.uniform(0, 2, (5, F))
    sp = np.array([0, 1, 1, 0, 1])
    eps, dE = model.atomic_energy_gradient(X, sp)
    np.testing.assert_allclose(eps, model.atomic_energy(X, sp), rtol=1e-14)
    h = 1e-6
    for f in range(F):
        Xp, Xm = X.copy(), X.copy()
        Xp[:, f] += h
        Xm[:, f] -= h
        fd = (model.atomic_energy(Xp, sp) - model.atomic_energy(Xm, sp)) / (2 * h)
        np.testing.assert_allclose(dE[:, f], fd, rtol=1e-7, atol=1e-9)
    # adjoint predictions == design rows @ coef, and forces/stress == FD of predicted energy
    at = skewed_two_element_cell(seed=5, rattle=0.12)
    b = make_batch([at], desc)
    out = model.predict_batch(b)
    Fr, Sr = pair_rows(b, 2, quadratic)
    np.testing.assert_allclose(out["forces"].ravel(), Fr @ coef.ravel(), rtol=1e-10,
                               atol=1e-12)
    np.testing.assert_allclose(out["stress"].ravel(), Sr @ coef.ravel(), rtol=1e-10,
                               atol=1e-12)
    np.testing.assert_allclose(out["energy"],
                               energy_rows(b, 2, quadratic) @ coef.ravel() * len(at),
                               rtol=1e-12)
    np.testing.assert_allclose(out["energy"], model.atomic_energy(b.X, b.species).sum(),
                               rtol=1e-12)


@pytest.mark.parametrize("name", sorted(DESCRIPTOR_CASES))
def test_design_rows_match_descriptor_adjoint(name, rng):
    """With every real descriptor: design rows @ coef == forces / stress of ``backward``."""
    d = DESCRIPTOR_CASES[name](SPECIES)
    quadratic = d.n_features <= 30
    at = skewed_two_element_cell(seed=8, rattle=0.12)
    b = make_batch([at], d)
    coef = true_coef(rng, d.n_features, quadratic, scale=0.1)
    model = LinearRegressor.from_coef(coef, quadratic=quadratic)
    _, dE_dX = model.atomic_energy_gradient(b.X, b.species)
    dE_dr, dE_deps = d.backward(at, dE_dX)
    Fr, Sr = pair_rows(b, 2, quadratic)
    scale = np.abs(dE_dr).max()
    np.testing.assert_allclose(Fr @ coef.ravel(), -dE_dr.ravel(), rtol=1e-9,
                               atol=1e-11 * scale)
    voigt = np.array([dE_deps[a, c] for a, c in [(0, 0), (1, 1), (2, 2), (1, 2), (0, 2),
                                                  (0, 1)]]) / at.get_volume()
    np.testing.assert_allclose(Sr @ coef.ravel(), voigt, rtol=1e-9,
                               atol=1e-11 * np.abs(voigt).max())


def test_feature_map_matches_snapcoeff_layout(rng):
    X = rng.normal(size=(3, 3))
    q = feature_map(X, True)
    expected = [1.0, *X[1]]
    for k in range(3):
        for m in range(k, 3):
            expected.append(0.5 * X[1, k] ** 2 if k == m else X[1, k] * X[1, m])
    np.testing.assert_allclose(q[1], expected, rtol=1e-15)
    assert n_block(3, True) == 10 and n_block(3, False) == 4


# ---------------------------------------------------------------------------------------------
# labels: missing, mixed stress, groups, noise recovery
# ---------------------------------------------------------------------------------------------
def test_missing_labels_contribute_no_rows(desc, rng):
    structs = structures(4, seed=11)
    coef = true_coef(rng, desc.n_features, False)
    b = labelled(structs, desc, coef, False)
    b.energy[1] = np.nan
    b.forces[b.structure == 2] = np.nan
    b.stress[3] = np.nan
    b.weights = {"forces": np.array([1.0, 0.0, 1.0, 2.0])}
    rows = {k: (A.shape[0], w) for k, _, A, y, w in labelled_rows(b, 2, False)}
    nat = b.n_atoms_per_structure
    assert rows["energy"][0] == 3
    assert rows["forces"][0] == 3 * (nat[0] + nat[3])          # NaN and zero weight dropped
    np.testing.assert_array_equal(rows["forces"][1], np.repeat([1.0, 2.0], 3 * nat[0]))
    assert rows["stress"][0] == 18
    model = LinearRegressor(alpha=1e-10).fit([b])
    # (pair-sum toy descriptor: only combinations of coefficients are identifiable)
    ref = labelled(structs, desc, coef, False)
    out = model.predict_batch(ref)
    for k in ("energy", "forces", "stress"):
        np.testing.assert_allclose(out[k], getattr(ref, k), rtol=1e-6, atol=1e-7)


def test_mixed_stress_and_nonperiodic_structures_fit(desc, rng):
    structs = structures(6, seed=21)
    mol = Atoms("CuNiCu", positions=[[0, 0, 0], [2.2, 0.1, 0], [1.0, 1.9, 0.3]])
    coef = true_coef(rng, desc.n_features, True)
    b = labelled(structs + [mol], desc, coef, True)
    assert np.isnan(b.stress[-1]).all()          # molecule: no stress label at all
    b.stress[[0, 2]] = np.nan                    # two periodic structures without stress
    for est in (LinearRegressor(alpha=1e-10, quadratic=True),
                BayesianLinearRegressor(quadratic=True)):
        est.fit([b])
        out = est.predict_batch(b)
        np.testing.assert_allclose(out["energy"], b.energy, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(out["forces"], b.forces, rtol=1e-4, atol=1e-5)
        assert np.isnan(out["stress"][-1]).all()
        np.testing.assert_allclose(out["stress"][:-1], labelled(
            structs, desc, coef, True).stress, rtol=1e-4, atol=1e-6)


def test_noise_levels_per_kind_and_group(desc, rng):
    structs = structures(24, seed=31)
    coef = true_coef(rng, desc.n_features, False)
    b = labelled(structs, desc, coef, False)
    group = np.arange(24) % 2
    sel = group[b.structure] == 1
    b.forces = b.forces + rng.normal(0, 0.02, b.forces.shape) * np.where(sel, 5.0, 1.0)[:, None]
    b.energy = b.energy + rng.normal(0, 0.002, 24) * b.n_atoms_per_structure
    b.group = group
    src = BatchSource([b], n_species=2, n_features=desc.n_features,
                      group_names=["bulk", "hot"])
    m = BayesianLinearRegressor(noise_groups=True).fit(src)
    f = m.noise_["forces"]
    assert set(f) == {"bulk", "hot"}
    assert 0.014 < f["bulk"] < 0.027 and 0.07 < f["hot"] < 0.13
    m1 = BayesianLinearRegressor().fit(src)
    assert set(m1.noise_) == {"energy", "forces", "stress"}
    assert f["bulk"] < m1.noise_["forces"] < f["hot"]
    # predictive force std carries the group's noise
    out = m.predict_batch(b, return_std=True)
    hot = out["forces_std"][sel].min()
    assert hot >= f["hot"] and out["forces_std"][~sel].max() < f["hot"]
    assert m.log_evidence_ > m1.log_evidence_


# ---------------------------------------------------------------------------------------------
# estimator plumbing and errors
# ---------------------------------------------------------------------------------------------
def test_fitted_state_round_trip_and_clone(desc, rng):
    structs = structures(5, seed=41)
    coef = true_coef(rng, desc.n_features, True)
    b = labelled(structs, desc, coef, True, rng=rng, noise=(0.01, 0.02, 1e-3))
    for est in (LinearRegressor(alpha=1e-3, quadratic=True),
                BayesianLinearRegressor(quadratic=True, noise_groups=True)):
        est.fit([b])
        state, arrays = est.get_fitted_state()
        import json
        state = json.loads(json.dumps(state))
        d = est.to_dict()
        new = type(est)(**d["params"]).set_fitted_state(state, arrays)
        has_std = est.has_uncertainty
        p0 = est.predict_batch(b, return_std=has_std)
        p1 = new.predict_batch(b, return_std=has_std)
        for k in p0:
            np.testing.assert_array_equal(p0[k], p1[k])
        c = clone(est)
        assert c.get_params() == est.get_params() and not hasattr(c, "coef_")


def test_bayesian_from_coef_with_covariance(rng):
    coef = rng.normal(size=(1, 4))
    C = np.diag([0.1, 0.2, 0.3, 0.4])
    m = BayesianLinearRegressor.from_coef(coef, covariance=C, noise={"energy": 0.01})
    X = rng.normal(size=(3, 3))
    b = StructureBatch(X=X, species=np.zeros(3, np.int64), structure=np.array([0, 0, 1]),
                       gradients=None, volume=np.array([np.nan, np.nan]),
                       energy=np.full(2, np.nan), forces=np.full((3, 3), np.nan),
                       stress=np.full((2, 6), np.nan))
    out = m.predict_batch(b, return_std=True)
    rows = energy_rows(b, 1, False) * np.array([[2], [1]])
    np.testing.assert_allclose(out["energy_std"] ** 2,
                               np.einsum("ij,jk,ik->i", rows, C, rows)
                               + (0.01 * np.array([2, 1])) ** 2,
                               rtol=1e-10)


def test_bad_hyperparameters_raise_typed_errors(rng):
    A, y = rng.normal(size=(10, 2)), rng.normal(size=10)
    with pytest.raises(InvalidParameterError, match=r"'alpha' parameter of LinearRegressor .*"
                       r"\[0, inf\)\. Got -1"):
        LinearRegressor(alpha=-1).fit(A, y)
    with pytest.raises(InvalidParameterError, match=r"'alpha' parameter of LinearRegressor .*"
                       r"\[0, inf\)\. Got inf"):
        LinearRegressor(alpha=np.inf).fit(A, y)
    with pytest.raises(InvalidParameterError, match="'quadratic' parameter of LinearRegressor "
                       "must be a bool. Got 'yes'"):
        LinearRegressor(quadratic="yes").fit(A, y)
    with pytest.raises(InvalidParameterError, match=r"'penalty_scaling' .* one of .*'rms'.*"
                       "Got 'l2'"):
        BayesianLinearRegressor(penalty_scaling="l2").fit(A, y)
    with pytest.raises(InvalidParameterError, match=r"'max_iter' .*Got 0 instead"):
        BayesianLinearRegressor(max_iter=0).fit(A, y)
    with pytest.raises(InvalidParameterError, match=r"'tol' .*\(0, inf\)\. Got -1"):
        BayesianLinearRegressor(tol=-1.0).fit(A, y)
    with pytest.raises(InvalidParameterError, match=r"'alpha_init' .*Got 0\.0"):
        BayesianLinearRegressor(alpha_init=0.0).fit(A, y)
    with pytest.raises(InvalidParameterError, match=r"'noise_groups' .*bool"):
        BayesianLinearRegressor(noise_groups=1).fit(A, y)
    with pytest.raises(InvalidParameterError, match=r"'y' argument .*shape \(10,\)"):
        LinearRegressor().fit(A, y[:5])
    with pytest.raises(InvalidParameterError, match="must be finite"):
        LinearRegressor().fit(A, np.full(10, np.nan))
    with pytest.raises(InvalidParameterError, match=r"'coef' argument .*P = 1 \+ F \+ F\(F\+1\)/2"):
        LinearRegressor.from_coef(np.ones((1, 5)), quadratic=True)
    with pytest.raises(InvalidParameterError, match="has no posterior"):
        LinearRegressor().fit(A, y).predict(A, return_std=True)


def test_no_labels_and_not_fitted_errors(desc, rng):
    b = make_batch(structures(2, seed=51), desc)
    with pytest.raises(MissingLabelsError, match="no usable label"):
        LinearRegressor().fit([b])
    with pytest.raises(MissingLabelsError, match="no usable label"):
        BayesianLinearRegressor().fit([b])
    with pytest.raises(InvalidParameterError, match="'batches' argument must be a BatchSource"):
        LinearRegressor().fit([])
    with pytest.raises(NotFittedError, match="not fitted"):
        BayesianLinearRegressor().predict_batch(b)
    m = LinearRegressor.from_coef(rng.normal(size=(2, desc.n_features + 1)))
    with pytest.raises(InvalidParameterError, match=r"'species' argument .*\[0, 1\]"):
        m.atomic_energy(b.X, np.full(b.n_atoms, 2))
    with pytest.raises(InvalidParameterError, match=r"'X' argument .*shape \(n_atoms, 6\)"):
        m.atomic_energy(b.X[:, :3], b.species)
