"""BayesianLinearRegressor on ill-conditioned, nearly collinear designs (issue #5 pathology).

Wide radial functions (ACSF G2, eta 0.87 Å^-2, centres 1-1.5 Å apart) are nearly collinear,
and their quadratic products more so.  Two faults made ``quadratic=True, noise_levels="shared",
solver="normal"`` run for minutes to a bad fit:

- the Gram factor of :class:`TSQRAccumulator` (``method="gram"``) fell back to an eigen square
  root of the *unscaled* Gram matrix, whose absolute error ``eps * ||G||`` wiped out the
  columns many orders of magnitude smaller than the largest, so the target column looked
  exactly representable: the residual vanished, the noise precision ran away and the
  fixed-point iteration oscillated for ``max_iter`` iterations;
- each of those iterations refactorised ``H`` (Cholesky + inverse, O(M^3)), and on an
  ill-conditioned ``H`` the inverse (hence ``gamma``) was inaccurate.

The Gram factor is now taken after equilibration, and with one noise level the evidence
iteration runs in the SVD basis of the whitened factor (one O(M^3) SVD, O(M) per iteration).
"""

import time

import numpy as np
import pytest

from hybridpot.descriptors import ACSF, DescriptorStack, PowerSpectrum
from hybridpot.regression import BatchSource, BayesianLinearRegressor
from hybridpot.regression._tsqr import TSQRAccumulator

from test_linear_regression import (SPECIES, _closed_form, labelled, structures,  # noqa: F401
                                    true_coef)


def wide_radial_design(n_shifts, noise, seed=0, n=600):
    """Quadratic map of wide, overlapping Gaussian radial sums: cond(A) ~ 1e10 for 10 shifts.

    Every 10th row has weight 1e6 (as energy rows weighted 1e6 against force rows) while the
    noise is ``noise`` on every row (the weights over-trust those rows, as hand-set weights
    do); returns ``A, y, y_true, w``.
    """
    rng = np.random.default_rng(seed)
    r = rng.uniform(2.0, 6.5, size=(n, 40))
    fc = 0.5 * (np.cos(np.pi * r / 6.5) + 1)
    shifts = np.linspace(1.8, 6.1, n_shifts)
    X = (np.exp(-0.87 * (r[:, :, None] - shifts) ** 2) * fc[:, :, None]).sum(1)
    iu, ju = np.triu_indices(n_shifts)
    A = np.hstack([np.ones((n, 1)), X, X[:, iu] * X[:, ju]])
    coef = rng.normal(size=A.shape[1]) / np.sqrt(np.mean(A ** 2, axis=0))
    y_true = A @ coef
    w = np.where(np.arange(n) % 10 == 0, 1e6, 1.0)
    y = y_true + noise * rng.normal(size=n)
    return A, y, y_true, w


def test_gram_factor_of_singular_badly_scaled_gram_is_accurate(rng, monkeypatch):
    """R^T R = G to relative precision per column pair in the fallback (Cholesky failed)."""
    n = 400
    x = rng.normal(size=(n, 3))
    # column scales over 12 decades and an exactly collinear pair: G is singular
    A = np.column_stack([1e6 * x[:, 0], 1e-6 * x[:, 1], x[:, 2], 2.0 * x[:, 2], 1e3 * x[:, 1]])
    y = A @ np.array([1e-6, 1e6, 1.0, 0.5, 1e-3]) + 0.01 * rng.normal(size=n)
    acc = TSQRAccumulator(5, method="gram")
    acc.add("shared", A, y)
    Ay = np.column_stack([A, y])
    G = Ay.T @ Ay

    def fail(*args, **kwargs):   # whether rounding leaves G indefinite depends on the BLAS
        raise np.linalg.LinAlgError("Matrix is not positive definite")

    monkeypatch.setattr(np.linalg, "cholesky", fail)
    R = acc.R("shared")
    monkeypatch.undo()
    d = np.sqrt(np.diag(G))
    err = np.abs(R.T @ R - G) / np.outer(d, d)
    assert err.max() < 1e-12
    # the residual of the least-squares fit is kept (it was ~0 with the unscaled square root)
    Ra, r = R[:, :-1], R[:, -1]
    m = np.linalg.lstsq(Ra, r, rcond=None)[0]
    true_rss = np.sum((A @ np.linalg.lstsq(A, y, rcond=None)[0] - y) ** 2)
    np.testing.assert_allclose(np.sum((Ra @ m - r) ** 2), true_rss, rtol=1e-3)


@pytest.mark.parametrize("solver", ["tsqr", "normal"])
def test_collinear_design_converges_quickly_to_a_sane_fit(solver):
    """cond(A) ~ 1e7 (cond of the Gram matrix ~ 1e14, within reach of solver="normal"):
    converges (a ConvergenceWarning would be an error here; before the fix: 500 iterations
    and the warning), held-out error near the noise level, "normal" agrees with "tsqr"."""
    noise = 1e-3
    A, y, y_true, w = wide_radial_design(8, noise)
    assert np.linalg.cond(A / np.sqrt(np.mean(A ** 2, axis=0))) > 1e7
    fit, test = slice(0, 450), slice(450, None)
    t0 = time.process_time()
    model = BayesianLinearRegressor(solver=solver).fit(A[fit], y[fit], sample_weight=w[fit])
    assert time.process_time() - t0 < 5.0
    assert model.n_iter_ < 100
    pred = model.predict(A[test])
    # the weight-1e6 rows are over-trusted (their noise is not 1000x smaller), so the fit is
    # a few times the noise off the truth; the broken iteration gave the same at best
    assert np.sqrt(np.mean((pred - y_true[test]) ** 2)) < 10 * noise
    ref = BayesianLinearRegressor(solver="tsqr").fit(A[fit], y[fit], sample_weight=w[fit])
    assert np.sqrt(np.mean((pred - ref.predict(A[test])) ** 2)) < 2 * noise


def test_severely_collinear_design_converges_with_tsqr():
    """cond(A) ~ 4e13 (beyond the Gram path): TSQR + SVD-basis iteration still converges."""
    noise = 1e-4
    A, y, y_true, w = wide_radial_design(12, noise)
    assert np.linalg.cond(A / np.sqrt(np.mean(A ** 2, axis=0))) > 1e13
    model = BayesianLinearRegressor(solver="tsqr").fit(A[:450], y[:450], sample_weight=w[:450])
    assert model.n_iter_ < 300
    rmse = np.sqrt(np.mean((model.predict(A[450:]) - y_true[450:]) ** 2))
    assert rmse < 5 * noise


def test_single_noise_level_result_is_the_evidence_maximum(rng):
    """The SVD-basis iteration returns the closed-form posterior at an evidence maximum."""
    A, y, _, _ = wide_radial_design(6, 1e-3, seed=3, n=300)
    w = rng.uniform(0.5, 2.0, size=A.shape[0])
    model = BayesianLinearRegressor(tol=1e-10).fit(A, y, sample_weight=w)
    beta = model.noise_["target"] ** -2
    d = model.penalty_scale_
    Aw, yw = A * np.sqrt(w)[:, None], y * np.sqrt(w)
    m, S, logev = _closed_form(Aw, yw, model.alpha_, beta, d)
    np.testing.assert_allclose(model.coef_, m, rtol=1e-6, atol=1e-9 * np.abs(m).max())
    logev += 0.5 * np.log(w).sum()
    np.testing.assert_allclose(model.log_evidence_, logev, rtol=1e-9)
    for fa, fb in [(1.05, 1), (0.95, 1), (1, 1.05), (1, 0.95), (1.05, 0.95)]:
        other = _closed_form(Aw, yw, model.alpha_ * fa, beta * fb, d)[2] + 0.5 * np.log(w).sum()
        assert other < logev


def test_quadratic_shared_normal_on_stacked_wide_radial_descriptor():
    """The issue's setting in small: radial-only ACSF (eta 0.87) + PowerSpectrum, quadratic,
    shared noise, energy weight 1e6, Gram solver: agrees with TSQR, bounded time."""
    desc = DescriptorStack([
        ACSF(species=SPECIES, r_cut=5.0, angular=None, radial_etas=[0.87],
             radial_shifts=np.linspace(1.8, 4.6, 5)),
        PowerSpectrum(species=SPECIES, r_cut=4.0, n_max=2, l_max=2)])
    rng = np.random.default_rng(0)
    F = desc.n_features
    coef = true_coef(rng, F, True)
    b = labelled(structures(12, seed=5), desc, coef, True, rng=rng, noise=(1e-3, 0.02, 1e-4))
    b.weights = {"energy": np.full(12, 1e6), "forces": np.ones(12), "stress": np.full(12, 1e3)}
    src = BatchSource([b], n_species=2, n_features=F)
    test = labelled(structures(4, seed=500), desc, coef, True)
    out = {}
    for solver in ("tsqr", "normal"):
        t0 = time.process_time()
        model = BayesianLinearRegressor(quadratic=True, noise_levels="shared",
                                        solver=solver).fit(src)
        assert time.process_time() - t0 < 20.0
        assert model.n_iter_ < 200
        out[solver] = model
    ref, normal = out["tsqr"], out["normal"]
    for k in ("energy", "forces", "stress"):
        np.testing.assert_allclose(normal.noise_[k], ref.noise_[k], rtol=1e-4)
    np.testing.assert_allclose(normal.alpha_, ref.alpha_, rtol=1e-3)
    p_ref, p = ref.predict_batch(test), normal.predict_batch(test)
    f_rmse = np.sqrt(np.mean((p_ref["forces"] - test.forces) ** 2))
    np.testing.assert_allclose(p["forces"], p_ref["forces"], atol=0.02 * f_rmse)
    assert 0.01 < normal.noise_["forces"] < 0.04   # true force noise 0.02 eV/Å
