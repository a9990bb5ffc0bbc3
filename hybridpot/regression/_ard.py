"""Automatic relevance determination (ARD): one prior precision per coefficient.

The sparse Bayesian linear model of FitSNAP's ``ARD`` solver, ACEpotentials.jl's ARD and
:class:`sklearn.linear_model.ARDRegression`, fitted to the same streamed energy, force and
stress rows as :class:`~hybridpot.regression.BayesianLinearRegressor` (whose row assembly,
column scaling, noise model and posterior it reuses).
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.linalg
from sklearn.exceptions import ConvergenceWarning

from .._exceptions import InvalidParameterError, ModelFormatError
from .._validation import check_float, check_int
from ._base import register_regressor
from ._linear import BayesianLinearRegressor, _cholesky_shifted, _max_noise_precision

__all__ = ["ARDLinearRegressor"]

#: prior precision given to a pruned column in the final posterior (relative to the largest
#: active one): its coefficient is exactly 0 and its variance negligible
_PRUNED_RELATIVE_PRECISION = 1e16


@register_regressor
class ARDLinearRegressor(BayesianLinearRegressor):
    r"""Bayesian linear (or quadratic) regression with one prior precision per coefficient (ARD).

    Model: ``eps_i = c_{z_i} . q(X_i)`` as in :class:`LinearRegressor`, with the rows, weights
    and noise levels of :class:`BayesianLinearRegressor` (``noise_levels``, ``noise_groups``)
    but an independent Gaussian prior on every scaled coefficient ``v_j = D_j c_j``:

    .. math::
        y_r \sim N(a_r \cdot c, 1 / (\beta_k w_r)),\qquad
        v_j = D_j c_j \sim N(0, 1 / \lambda_j)

    (``D_j`` the column RMS of ``penalty_scaling="rms"``, or 1 with ``"none"``).  Given
    ``theta = (lambda, beta)`` the posterior is Gaussian with precision
    ``H = sum_k beta_k A_k^T W_k A_k + diag(lambda)`` (in ``v``), mean ``m`` and covariance
    ``Sigma = H^{-1}``.  MacKay's / Tipping's evidence updates with Gamma hyperpriors (as
    scikit-learn's ``ARDRegression``):

    .. math::
        \gamma_j = 1 - \lambda_j \Sigma_{jj},\qquad
        \lambda_j \leftarrow \frac{\gamma_j + 2\lambda_1}{m_j^2 + 2\lambda_2},\qquad
        \beta_k \leftarrow \frac{N_k - \gamma_k + 2\alpha_1}{\mathrm{rss}_k + 2\alpha_2}

    with ``gamma_k = beta_k tr(Sigma A_k^T W_k A_k)`` (``sum_k gamma_k = sum_j gamma_j``).  A
    coefficient whose ``lambda_j`` exceeds ``threshold_lambda`` is pruned (set to exactly 0
    and removed from the model), as in scikit-learn.  The per-element constant (bias) columns
    are not subject to ARD: their prior precision stays ``BIAS_RELATIVE_PENALTY`` (nearly
    flat), as in :class:`BayesianLinearRegressor` at ``alpha = 1``.

    With ``penalty_scaling="none"`` the plain path ``fit(A, y)`` is scikit-learn's
    ``ARDRegression(fit_intercept=False)`` with the same hyperpriors and ``threshold_lambda``
    (``lambda_`` then are sklearn's ``lambda_``, ``1 / noise_["target"]**2`` its
    ``alpha_``).  With ``"rms"`` (default) ``lambda_j`` is the precision of the coefficient of
    the RMS-normalised column, so ``threshold_lambda`` is unit-free in the descriptors: a
    column is pruned when its prior standard deviation falls below ``threshold_lambda**-0.5``
    label units (eV/atom, eV/Å, eV/Å³ per unit RMS of the column).

    After the fit the model is a :class:`BayesianLinearRegressor` with the prior
    ``diag(lambda)`` (``penalty_scale_ = D sqrt(lambda)`` per column, ``alpha_ = 1``):
    ``sigma_``, ``precision_factor_``, ``noise_``, predictive σ of energies, forces and stress,
    save / load and LAMMPS export work the same way.  :class:`hybridpot.uq.LinearPosterior`
    (which samples one shared prior precision) refuses an ARD model.

    Parameters
    ----------
    quadratic : bool, default=False
        qSNAP-style quadratic feature map.
    noise_groups : bool, default=False
        One noise level per label kind and config group (``StructureBatch.group``).
    noise_levels : {"kind", "shared"}, default="kind"
        As in :class:`BayesianLinearRegressor`.
    penalty_scaling : {"rms", "none"}, default="rms"
        Column scaling ``D`` of the prior precision.
    solver : {"tsqr", "normal"}, default="tsqr"
        Row reduction, as in :class:`LinearRegressor`.
    lambda_init : float, default=1.0
        Initial prior precision of every coefficient (scikit-learn: 1).
    noise_init : float or None, default=None
        Initial noise standard deviation of every kind, in label units (default: the RMS of
        that kind's targets; scikit-learn starts from the standard deviation).
    alpha_1, alpha_2 : float, default=1e-6
        Shape and rate of the Gamma hyperprior of the noise precisions ``beta_k``.
    lambda_1, lambda_2 : float, default=1e-6
        Shape and rate of the Gamma hyperprior of the ``lambda_j``.
    threshold_lambda : float, default=1e4
        Columns with ``lambda_j`` above this are pruned (scikit-learn's default).
    max_iter : int, default=300
        Maximum number of evidence iterations.
    tol : float, default=1e-3
        Stop when the summed absolute change of the scaled coefficients ``v`` in one iteration
        is below ``tol`` (scikit-learn's rule).
    scale_floor : float in [0, 1], default=1e-3
        Floor ``f`` of the ``"rms"`` column scaling relative to the largest column of its
        element's linear block, as in :class:`LinearRegressor` (0: the plain RMS).

    Attributes
    ----------
    coef_ : ndarray, shape (n_species, P)
        Posterior mean (plain path: shape (n_columns,)); pruned entries are exactly 0.
    lambda_ : ndarray, shape (n_species * P,)
        Prior precision of every scaled coefficient ``D_j c_j`` (bias columns: their fixed
        ``BIAS_RELATIVE_PENALTY``; pruned columns: the value that passed the threshold, or
        the pruned precision ``1e16 x`` the largest active one where it was infinite).
    active_ : ndarray of bool, shape (n_species * P,)
        Columns kept (not pruned); bias columns are always kept.
    sigma_, precision_factor_, noise_, log_evidence_, n_iter_, penalty_scale_
        As in :class:`BayesianLinearRegressor` (``log_evidence_`` of the pruned model).
    alpha_ : float
        1.0 (the ARD prior is all in ``penalty_scale_``).
    n_species_, n_features_in_ : int
    fit_mode_ : {"batch", "plain"}
    """

    def __init__(self, *, quadratic=False, noise_groups=False, noise_levels="kind",
                 penalty_scaling="rms", solver="tsqr", lambda_init=1.0, noise_init=None,
                 alpha_1=1e-6, alpha_2=1e-6, lambda_1=1e-6, lambda_2=1e-6,
                 threshold_lambda=1e4, max_iter=300, tol=1e-3, scale_floor=1e-3):
        self.scale_floor = scale_floor
        self.quadratic = quadratic
        self.noise_groups = noise_groups
        self.noise_levels = noise_levels
        self.penalty_scaling = penalty_scaling
        self.solver = solver
        self.lambda_init = lambda_init
        self.noise_init = noise_init
        self.alpha_1 = alpha_1
        self.alpha_2 = alpha_2
        self.lambda_1 = lambda_1
        self.lambda_2 = lambda_2
        self.threshold_lambda = threshold_lambda
        self.max_iter = max_iter
        self.tol = tol

    def fit(self, batches, y=None, sample_weight=None):
        """Fit to a BatchSource / list of StructureBatch, or to a plain ``(A, y)``.

        Parameters
        ----------
        batches : BatchSource, list of StructureBatch, or ndarray of shape (n_rows, n_columns)
            Training batches of residual labels (the usual path, from
            :class:`~hybridpot.HybridPotential`), or a plain design matrix ``A``.
        y : ndarray, shape (n_rows,), optional
            Targets of the plain path (giving ``y`` selects it); None with batches.
        sample_weight : ndarray, shape (n_rows,), optional
            Non-negative row weights of the plain path; default 1.

        Returns
        -------
        self

        Raises
        ------
        hybridpot.InvalidParameterError
            For invalid hyperparameters, batches or arrays.
        hybridpot.MissingLabelsError
            When no row has a positive weight.
        """
        owner = type(self).__name__
        self._validate_common()
        lam0 = check_float(self.lambda_init, "lambda_init", owner, low=0.0, finite=True)
        # 1 / noise**2 must stay finite (1e-300 divided by zero, 4e198 overflowed)
        noise0 = check_float(self.noise_init, "noise_init", owner, low=1e-100, high=1e100,
                             low_inclusive=True, high_inclusive=True, allow_none=True)
        hyper = {}
        for name in ("alpha_1", "alpha_2", "lambda_1", "lambda_2"):
            hyper[name] = check_float(getattr(self, name), name, owner, low=0.0,
                                      low_inclusive=True, finite=True)
        thr = check_float(self.threshold_lambda, "threshold_lambda", owner, low=0.0)
        max_iter = check_int(self.max_iter, "max_iter", owner, low=1)
        tol = check_float(self.tol, "tol", owner, low=0.0, low_inclusive=True, finite=True)
        Rs, D, b2 = self._prepare(batches, y, sample_weight)
        keys = list(Rs)
        M = D.shape[0]
        N = np.array([self._n_rows[k] for k in keys], dtype=np.float64)
        Rk = [Rs[k][0] for k in keys]
        rk = [Rs[k][1] for k in keys]
        Gk = [R.T @ R for R in Rk]
        bk = [R.T @ r for R, r in zip(Rk, rk)]
        yy = np.array([r @ r for r in rk])
        bias = b2 < 1.0                      # per-element constants: fixed, nearly flat prior
        fixed = np.where(bias, b2, 0.0)      # their precision (alpha = 1 x b2)
        lam = np.where(bias, fixed, lam0)
        if noise0 is not None:
            beta = np.full(len(keys), 1.0 / noise0 ** 2)
        else:
            beta = np.where(yy > 0, N / np.where(yy > 0, yy, 1.0), 1.0)
        beta_max = _max_noise_precision(yy, N)
        keep = np.ones(M, dtype=bool)
        m_old = np.zeros(M)
        converged = False
        n_iter = 0
        for n_iter in range(1, max_iter + 1):
            if not keep.any():   # plain path, every column pruned (as scikit-learn: stop)
                converged = True
                break
            m, sdiag, gamma_k, rss = self._ard_step(lam, beta, keep, Gk, bk, Rk, rk)
            gamma = np.zeros(M)
            gamma[keep] = 1.0 - lam[keep] * sdiag[keep]
            upd = keep & ~bias
            num = gamma[upd] + 2.0 * hyper["lambda_1"]
            den = m[upd] ** 2 + 2.0 * hyper["lambda_2"]
            # den = 0 (lambda_2 = 0 and m_j = 0, e.g. a column that is zero in the data): an
            # infinite precision, i.e. pruned (0 / 0 was NaN and made every coefficient NaN)
            lam[upd] = np.divide(num, den, out=np.full(num.shape, np.inf), where=den > 0)
            beta = np.minimum((np.maximum(N - gamma_k, 0.0) + 2.0 * hyper["alpha_1"])
                              / np.maximum(rss + 2.0 * hyper["alpha_2"], 1e-300), beta_max)
            pruned = upd & ((lam > thr) | np.isinf(lam))   # also with threshold_lambda=inf
            keep &= ~pruned
            m[~keep] = 0.0
            if n_iter > 1 and np.sum(np.abs(m - m_old)) < tol:
                converged = True
                break
            m_old = m
        if not converged:
            warnings.warn(
                f"{owner}: ARD did not converge in max_iter={max_iter} iterations (summed "
                f"change of the scaled coefficients above tol={tol:g}); increase max_iter.",
                ConvergenceWarning, stacklevel=2)
        self.n_iter_ = n_iter
        # the pruned columns leave the model: zero rows, a huge prior precision (exact zeros)
        cap = _PRUNED_RELATIVE_PRECISION * max(float(np.max(lam[keep], initial=1.0)), 1.0)
        # an infinite precision (no data, no hyperprior) is stored as the cap: model files
        # hold finite arrays
        self.lambda_ = np.where(np.isinf(lam), cap, lam)
        self.active_ = keep.copy()
        prior = np.where(keep, lam, cap)
        Rz = [np.where(keep[None, :], R, 0.0) for R in Rk]
        self._finalise(1.0, beta, keys, Rz, rk, N, D, prior)
        flat = self.coef_.reshape(-1)
        flat[~keep] = 0.0
        self.penalty_scale_ = D * np.sqrt(prior)
        return self

    @staticmethod
    def _ard_step(lam, beta, keep, Gk, bk, Rk, rk):
        """Posterior at ``(lambda, beta)`` on the kept columns: mean ``m`` (0 elsewhere),
        ``diag(Sigma)``, ``gamma_k = beta_k tr(Sigma G_k)`` and ``rss_k``."""
        idx = np.flatnonzero(keep)
        M = lam.shape[0]
        H = np.diag(lam[idx])
        rhs = np.zeros(idx.shape[0])
        for bq, G, bv in zip(beta, Gk, bk):
            H += bq * G[np.ix_(idx, idx)]
            rhs += bq * bv[idx]
        L = _cholesky_shifted(H)
        Li = scipy.linalg.solve_triangular(L, np.eye(idx.shape[0]), lower=True,
                                           check_finite=False)
        ma = Li.T @ (Li @ rhs)
        m = np.zeros(M)
        m[idx] = ma
        sdiag = np.zeros(M)
        sdiag[idx] = np.einsum("ij,ij->j", Li, Li)
        gamma_k = np.empty(len(Rk))
        rss = np.empty(len(Rk))
        for q, (R, r) in enumerate(zip(Rk, rk)):
            Z = Li @ R[:, idx].T
            gamma_k[q] = beta[q] * float(np.sum(Z * Z))
            res = R[:, idx] @ ma - r
            rss[q] = float(res @ res)
        return m, sdiag, gamma_k, rss

    def get_fitted_state(self):
        """``(state, arrays)``: JSON-able dict and ndarrays of the fitted posterior."""
        state, arrays = super().get_fitted_state()
        arrays["lambda"] = np.asarray(self.lambda_, dtype=np.float64).copy()
        arrays["active"] = np.asarray(self.active_, dtype=np.int8).copy()
        return state, arrays

    def set_fitted_state(self, state, arrays):
        """Restore :meth:`get_fitted_state` output (used by model loading).

        Parameters
        ----------
        state : dict
            The JSON part of :meth:`get_fitted_state`.
        arrays : dict of str to ndarray
            Its array part.

        Returns
        -------
        self

        Raises
        ------
        hybridpot.ModelFormatError
            For an incomplete or inconsistent state.
        """
        super().set_fitted_state(state, arrays)
        M = self.coef_.size
        lam, act = arrays.get("lambda"), arrays.get("active")
        if lam is None or act is None or np.shape(lam) != (M,) or np.shape(act) != (M,):
            raise ModelFormatError(
                f"Fitted state of {type(self).__name__}: 'lambda' and 'active' must be arrays "
                f"of shape {(M,)}. Got {None if lam is None else np.shape(lam)} and "
                f"{None if act is None else np.shape(act)} instead.")
        self.lambda_ = np.asarray(lam, dtype=np.float64)
        self.active_ = np.asarray(act).astype(bool)
        return self

    @classmethod
    def from_coef(cls, coef, *, quadratic=False, covariance=None, noise=None):
        """Not available: an ARD model comes from a fit (use
        :meth:`BayesianLinearRegressor.from_coef` for given coefficients and covariance).

        Parameters
        ----------
        coef : array_like
            Ignored.
        quadratic : bool, default=False
            Ignored.
        covariance : array_like, optional
            Ignored.
        noise : dict, optional
            Ignored.

        Raises
        ------
        hybridpot.InvalidParameterError
            Always.
        """
        raise InvalidParameterError(
            "ARDLinearRegressor.from_coef is not available (its per-coefficient precisions "
            "come from a fit); use BayesianLinearRegressor.from_coef(coef, covariance=..., "
            "noise=...) for a model from given coefficients.")
