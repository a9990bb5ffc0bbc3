r"""Posterior over the hyperparameters of a linear hybrid model, sampled with emcee.

Model (per label kind / config group ``k``, row weights ``w_r``, scaled coefficients
``v = D c`` as in :class:`~hybridpot.regression.BayesianLinearRegressor`)

.. math::
    y_r(\phi) = a_r \cdot c + \epsilon_r,\quad \epsilon_r \sim N(0, 1/(\beta_k w_r)),\quad
    v_j \sim N(0, 1/(\alpha b_j^2)),

with ``y(phi) = y_DFT - y_EP(phi) - e0`` the residual after the baseline with parameters
``phi``.  The hyperparameters are ``theta = (log alpha, log beta_k, u)`` where
``phi = phi0 (1 + ...)``: ``phi = phi0 + u * s`` with ``s = |phi0|`` (1 where ``phi0 = 0``) and
prior ``u ~ N(0, baseline_prior_width^2)``; ``log alpha`` and ``log beta_k`` have flat priors on
``[MAP - log_prior_width, MAP + log_prior_width]``.

Given ``theta`` the weights are Gaussian and are integrated out exactly:

.. math::
    \log p(y|\theta) = \tfrac12\sum_k [N_k\log\beta_k + \textstyle\sum_{r\in k}\log w_r]
      + \tfrac12\sum_j\log(\alpha b_j^2) - \tfrac12 E(m) - \tfrac12\log|H| - \tfrac N2\log 2\pi,

``H = alpha diag(b^2) + sum_k beta_k G_k``, ``m = H^{-1} sum_k beta_k A_k^T W_k y_k``,
``E(m) = sum_k beta_k ||W^1/2 (A_k m - y_k)||^2 + alpha ||b m||^2``, all evaluated from the
streamed R factors of ``[A | J | y]`` (``O(P^3)`` per evaluation, the data are never revisited).

Baseline parameters (approximation): the residual is linearised around the fitted ``phi0``,
``y(phi) ~= y(phi0) + J (phi - phi0)`` with ``J = -d y_EP / d phi`` from the baseline's
analytic :meth:`parameter_gradients`.  The posterior of ``u`` is therefore that of the exactly
linear surrogate; it is accurate while ``|phi - phi0| J''`` is small against the noise, i.e.
for posterior widths of a few per cent of the parameters (check the ``std`` of the baseline
components of ``theta`` in :meth:`LinearPosterior.summary`).
"""

from __future__ import annotations


import numpy as np
import scipy.linalg
import scipy.optimize

from .._exceptions import HybridpotError, InvalidParameterError, NotFittedError
from .._validation import check_float, check_int, check_random_state_param
from ._accumulate import accumulate_factors, check_linear_model

__all__ = ["LinearPosterior", "ChainTooShortError", "log_evidence_from_factors"]

_LOG2PI = np.log(2 * np.pi)


class ChainTooShortError(HybridpotError, RuntimeError):
    """An MCMC chain is too short (against its autocorrelation time) to be summarised."""


def _rng(random_state, owner="LinearPosterior"):
    check_random_state_param(random_state, owner)
    if isinstance(random_state, np.random.Generator):
        return np.random.RandomState(int(random_state.integers(2 ** 31 - 1)))
    if random_state is None:   # fresh OS entropy, never numpy's global RandomState
        return np.random.RandomState()
    from sklearn.utils import check_random_state

    return check_random_state(random_state)


class _Blocks:
    """Per-key Gram blocks of the scaled factors (precomputed once)."""

    def __init__(self, R_list, M, n_phi):
        self.RA = [R[:, :M] for R in R_list]
        self.RJ = [R[:, M:M + n_phi] for R in R_list]
        self.r0 = [R[:, -1] for R in R_list]
        self.G = np.array([Ra.T @ Ra for Ra in self.RA])
        self.c0 = np.array([Ra.T @ r for Ra, r in zip(self.RA, self.r0)])
        self.PJ = np.array([Ra.T @ Rj for Ra, Rj in zip(self.RA, self.RJ)])


def log_evidence_from_factors(RA_list, r_list, N, slw, b2, alpha, beta):
    """Log evidence and posterior of a Bayesian linear model from R factors (reference helper).

    Parameters
    ----------
    RA_list, r_list : list of ndarray
        Per key: ``R[:, :M]`` and ``R[:, -1]`` of the R factor of ``W^1/2 [A | y]``.
    N, slw : ndarray, shape (n_keys,)
        Row counts and ``sum(log w)`` per key.
    b2 : ndarray, shape (M,)
        Relative prior precisions.
    alpha : float
        Prior precision (dimensionless: on the column-scaled coefficients).
    beta : ndarray, shape (n_keys,)
        Noise precision per key (1 / σ² in the units of the key's labels).

    Returns
    -------
    log_evidence : float
    m : ndarray, shape (M,)
        Posterior mean.
    L : ndarray, shape (M, M)
        Lower Cholesky factor of the posterior precision ``H``.
    """
    M = b2.shape[0]
    H = alpha * np.diag(b2)
    rhs = np.zeros(M)
    for bq, Ra, r in zip(beta, RA_list, r_list):
        H += bq * (Ra.T @ Ra)
        rhs += bq * (Ra.T @ r)
    L = np.linalg.cholesky(H)
    m = scipy.linalg.cho_solve((L, True), rhs, check_finite=False)
    E = alpha * float(m @ (b2 * m))
    for bq, Ra, r in zip(beta, RA_list, r_list):
        res = Ra @ m - r
        E += bq * float(res @ res)
    logdet = 2.0 * np.sum(np.log(np.diag(L)))
    lp = 0.5 * float(np.dot(N, np.log(beta))) + 0.5 * float(np.sum(slw)) \
        + 0.5 * M * np.log(alpha) + 0.5 * float(np.sum(np.log(b2))) - 0.5 * E - 0.5 * logdet \
        - 0.5 * float(np.sum(N)) * _LOG2PI
    return lp, m, L


class LinearPosterior:
    r"""emcee posterior of ``theta`` (prior precision, noise per kind/group, baseline
    parameters) of a fitted linear :class:`~hybridpot.HybridPotential`, weights marginalised.

    The equations and the baseline linearisation are in :mod:`hybridpot.uq._posterior`.
    ``fit`` streams the training set once into R factors, finds the MAP of ``theta``
    (L-BFGS-B) and runs an affine-invariant ensemble (emcee) from a small ball around it.

    Parameters
    ----------
    noise_groups : bool, default=False
        One noise level per label kind and config group (``atoms.info["config_type"]``);
        otherwise one per label kind.
    sample_baseline : bool, default=True
        Include the baseline's fittable parameters in ``theta`` (if it has any).
    baseline_prior_width : float, default=0.1
        Prior standard deviation of ``(phi - phi0) / |phi0|``.
    log_prior_width : float, default=20.0
        Half width of the flat priors on ``log alpha`` and ``log beta_k`` around the MAP.
    n_walkers : int or None, default=None
        emcee walkers (default ``max(32, 2 * n_theta + 2)``, rounded up to even).
    n_steps : int, default=3000
        Steps per walker (after ``n_burn``).
    n_burn : int, default=500
        Discarded initial steps per walker.
    robust : {"none", "cv"}, default="none"
        ``"cv"``: model-discrepancy inflation.  With ``n_folds`` structure folds, the posterior
        at the MAP ``theta`` fitted without fold ``f`` predicts fold ``f``; per label kind the
        factor ``s_k^2 = sum_f ||W^1/2 (A m_{-f} - y)||^2_f / sum_f [tr(Sigma_{-f} G_f) +
        N_f / beta_k]`` (computed from the fold factors, no data revisited) multiplies the
        predictive variance of that kind (floored at 1).
    n_folds : int, default=5
        Folds for ``robust="cv"``.
    random_state : None, int, numpy RandomState or Generator, default=None
        Seeds the fold assignment, walker initialisation and emcee's own generator, and the
        ``theta`` draws of :meth:`samples` / :meth:`committee` / :meth:`apply` unless they are
        given their own (never the global numpy state).
    progress : bool, default=False
        emcee progress bar.

    Attributes
    ----------
    factors_ : object
        The R factors of the training set accumulated by :meth:`fit` (see
        :mod:`hybridpot.uq._accumulate`); every later evaluation of ``theta`` uses them only.
    keys_ : list of tuple of str
        ``(label kind, config group)`` of each noise precision ``beta_k`` in ``theta`` (the
        group is ``"all"`` without ``noise_groups``).
    theta_names_ : list of str
        Names of the components of ``theta``: ``log_alpha``, one ``log_beta[kind/group]``
        per key, then ``u[name]`` = ``(phi - phi0) / |phi0|`` per sampled baseline parameter.
    theta_map_ : ndarray, shape (n_theta,)
    chain_ : ndarray, shape (n_steps, n_walkers, n_theta)
        After burn-in.
    log_prob_ : ndarray, shape (n_steps, n_walkers)
    acceptance_fraction_ : float
        Mean over walkers.
    autocorr_time_ : ndarray, shape (n_theta,)
        Integrated autocorrelation time per parameter, in steps (emcee's estimator).
    inflation_ : dict
        Label kind -> variance inflation factor ``s_k^2`` (1 without ``robust="cv"``).
    """

    def __init__(self, *, noise_groups=False, sample_baseline=True, baseline_prior_width=0.1,
                 log_prior_width=20.0, n_walkers=None, n_steps=3000, n_burn=500,
                 robust="none", n_folds=5, random_state=None, progress=False):
        self.noise_groups = noise_groups
        self.sample_baseline = sample_baseline
        self.baseline_prior_width = baseline_prior_width
        self.log_prior_width = log_prior_width
        self.n_walkers = n_walkers
        self.n_steps = n_steps
        self.n_burn = n_burn
        self.robust = robust
        self.n_folds = n_folds
        self.random_state = random_state
        self.progress = progress

    # ------------------------------------------------------------------ validation
    def _validate(self):
        owner = type(self).__name__
        for name in ("noise_groups", "sample_baseline", "progress"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise InvalidParameterError(
                    f"The '{name}' parameter of {owner} must be a bool. "
                    f"Got {getattr(self, name)!r} instead.")
        check_float(self.baseline_prior_width, "baseline_prior_width", owner, low=0.0)
        check_float(self.log_prior_width, "log_prior_width", owner, low=0.0)
        check_int(self.n_walkers, "n_walkers", owner, low=4, allow_none=True)
        check_int(self.n_steps, "n_steps", owner, low=1)
        check_int(self.n_burn, "n_burn", owner, low=0)
        check_int(self.n_folds, "n_folds", owner, low=2)
        if self.robust not in ("none", "cv"):
            raise InvalidParameterError(
                f"The 'robust' parameter of {owner} must be one of ['none', 'cv']. "
                f"Got {self.robust!r} instead.")

    # ------------------------------------------------------------------ factors
    def _set_factors(self, fac):
        self.factors_ = fac
        keys = sorted({(k[0], k[1]) for k in fac.R})
        self.keys_ = keys
        M, n_phi = fac.M, fac.n_phi
        # combine folds per key by stacking R factors and re-triangularising
        R_list, N, slw = [], [], []
        for key in keys:
            parts = [fac.R[k] for k in fac.R if (k[0], k[1]) == key]
            R = scipy.linalg.qr(np.vstack(parts), mode="r", check_finite=False)[0]
            R_list.append(R[:min(R.shape)])
            N.append(sum(fac.n_rows[k] for k in fac.R if (k[0], k[1]) == key))
            slw.append(sum(fac.sum_log_w[k] for k in fac.R if (k[0], k[1]) == key))
        self._blocks = _Blocks(R_list, M, n_phi)
        self._N = np.array(N, dtype=np.float64)
        self._slw = np.array(slw, dtype=np.float64)
        self.theta_names_ = (["log_alpha"] + [f"log_beta[{k}/{g}]" for k, g in keys]
                             + [f"u[{n}]" for n in fac.phi_names])

    def _unpack(self, theta):
        nk = len(self.keys_)
        return np.exp(theta[0]), np.exp(theta[1:1 + nk]), theta[1 + nk:]

    def _posterior_at(self, theta, blocks=None, N=None, slw=None):
        """(log evidence, m, L) at ``theta`` (scaled variables)."""
        b = self._blocks if blocks is None else blocks
        N = self._N if N is None else N
        slw = self._slw if slw is None else slw
        alpha, beta, u = self._unpack(theta)
        b2 = self.factors_.b2
        H = alpha * np.diag(b2) + np.einsum("k,kij->ij", beta, b.G)
        rhs_k = b.c0 + (b.PJ @ u if u.size else 0.0)
        rhs = beta @ rhs_k
        try:
            L = np.linalg.cholesky(H)
        except np.linalg.LinAlgError:
            return -np.inf, None, None
        m = scipy.linalg.cho_solve((L, True), rhs, check_finite=False)
        E = alpha * float(m @ (b2 * m))
        for q in range(len(beta)):
            r = b.r0[q] + (b.RJ[q] @ u if u.size else 0.0)
            res = b.RA[q] @ m - r
            E += beta[q] * float(res @ res)
        logdet = 2.0 * np.sum(np.log(np.diag(L)))
        M = b2.shape[0]
        lp = 0.5 * float(N @ np.log(beta)) + 0.5 * float(slw.sum()) + 0.5 * M * np.log(alpha) \
            + 0.5 * float(np.sum(np.log(b2))) - 0.5 * E - 0.5 * logdet \
            - 0.5 * float(N.sum()) * _LOG2PI
        return lp, m, L

    def log_evidence(self, theta):
        """Log marginal likelihood ``log p(y | theta)`` (weights integrated out), nats.

        Parameters
        ----------
        theta : array_like, shape (n_theta,)
            In the order of :attr:`theta_names_`.
        """
        self._check_factors()
        theta = self._check_theta(theta)
        return float(self._posterior_at(theta)[0])

    def log_prior(self, theta):
        """Log prior density of ``theta`` (up to a constant); ``-inf`` outside the box.

        Parameters
        ----------
        theta : array_like, shape (n_theta,)
            ``(log alpha, log beta_k for every key in keys_, baseline offsets (phi -
            phi0) / |phi0|)``, names in ``theta_names_``.

        Returns
        -------
        float

        Raises
        ------
        hybridpot.NotFittedError
            Before :meth:`fit`.
        hybridpot.InvalidParameterError
            For ``theta`` of the wrong length or with non-finite values.
        """
        self._check_factors()
        theta = self._check_theta(theta)
        return self._log_prior(theta)

    def _log_prior(self, theta):
        nk = len(self.keys_)
        c = self._center
        w = float(self.log_prior_width)
        if np.any(np.abs(theta[:1 + nk] - c[:1 + nk]) > w):
            return -np.inf
        u = theta[1 + nk:]
        return -0.5 * float(u @ u) / float(self.baseline_prior_width) ** 2

    def log_prob(self, theta):
        """Unnormalised log posterior ``log p(y | theta) + log p(theta)``.

        Parameters
        ----------
        theta : array_like, shape (n_theta,)
            ``(log alpha, log beta_k for every key in keys_, baseline offsets (phi -
            phi0) / |phi0|)``, names in ``theta_names_``.

        Returns
        -------
        float
            ``-inf`` outside the prior box.

        Raises
        ------
        hybridpot.NotFittedError, hybridpot.InvalidParameterError
            As :meth:`log_prior`.
        """
        self._check_factors()
        theta = self._check_theta(theta)
        return self._log_prob(theta)

    def _log_prob(self, theta):
        lp = self._log_prior(theta)
        if not np.isfinite(lp):
            return -np.inf
        le = self._posterior_at(theta)[0]
        return lp + le if np.isfinite(le) else -np.inf

    def _check_factors(self):
        if not hasattr(self, "factors_"):
            raise NotFittedError(
                f"This {type(self).__name__} is not fitted yet; call fit(model, structures) "
                "first.")

    def _check_theta(self, theta):
        theta = np.asarray(theta, dtype=np.float64)
        n = len(self.theta_names_)
        if theta.shape != (n,) or not np.all(np.isfinite(theta)):
            raise InvalidParameterError(
                f"The 'theta' argument of {type(self).__name__} must be a finite vector of "
                f"length {n} ({self.theta_names_}). Got shape {theta.shape} instead.")
        return theta

    # ------------------------------------------------------------------ fitting
    def _initial_theta(self, reg):
        nk = len(self.keys_)
        theta = np.zeros(1 + nk + self.factors_.n_phi)
        alpha = getattr(reg, "alpha_", None)
        theta[0] = np.log(alpha) if alpha is not None and np.isfinite(alpha) and alpha > 0 \
            else 0.0
        noise = getattr(reg, "noise_", None) or {}
        for q, (kind, group) in enumerate(self.keys_):
            v = noise.get(kind)
            if isinstance(v, dict):
                v = v.get(group, max(v.values()) if v else None)
            if v is not None and np.isfinite(v) and v > 0:
                theta[1 + q] = -2.0 * np.log(v)
                continue
            yy = float(self._blocks.r0[q] @ self._blocks.r0[q])
            ms = yy / max(self._N[q], 1.0)
            theta[1 + q] = np.log(100.0 / ms) if ms > 0 else 0.0
        return theta

    def _find_map(self, theta0):
        """L-BFGS-B from several starting prior precisions; the prior box is re-centred on the
        best optimum (the evidence can have a prior-dominated local maximum)."""
        width = float(self.log_prior_width)
        nk = len(self.keys_)

        def f(t):
            v = self._log_prob(t)
            return 1e300 if not np.isfinite(v) else -v

        best, best_val = theta0, np.inf
        for shift in (0.0, -8.0, -16.0, 8.0):
            start = theta0.copy()
            start[0] += shift
            self._center = start.copy()
            for _ in range(3):
                bounds = [(c - width, c + width) for c in self._center[:1 + nk]] + \
                    [(None, None)] * (start.size - 1 - nk)
                res = scipy.optimize.minimize(f, start, method="L-BFGS-B", bounds=bounds)
                moved = not np.allclose(res.x, start, atol=1e-6)
                start = res.x
                self._center = start.copy()
                if not moved:
                    break
            if res.fun < best_val:
                best, best_val = start.copy(), res.fun
        self._center = best.copy()
        return best

    def fit(self, model, structures):
        """Accumulate the factors of ``structures``, find the MAP and sample ``theta``.

        Parameters
        ----------
        model : HybridPotential
            Fitted with a linear regressor.
        structures : list of ase.Atoms
            The labelled training set.

        Returns
        -------
        self
        """
        self._validate()
        rng = _rng(self.random_state, type(self).__name__)
        n_folds = int(self.n_folds) if self.robust == "cv" else 1
        fac = accumulate_factors(model, structures, noise_groups=bool(self.noise_groups),
                                 n_folds=n_folds, sample_baseline=bool(self.sample_baseline),
                                 random_state=rng, owner=f"{type(self).__name__}.fit")
        return self._fit_factors(fac, model.regressor_, rng)

    def _fit_factors(self, fac, reg, rng):
        import emcee

        self._set_factors(fac)
        theta0 = self._initial_theta(reg)
        self.theta_map_ = self._find_map(theta0)
        ndim = self.theta_map_.size
        nw = self.n_walkers if self.n_walkers is not None else max(32, 2 * ndim + 2)
        nw += nw % 2
        if nw < 2 * ndim:
            raise InvalidParameterError(
                f"The 'n_walkers' parameter of {type(self).__name__} must be at least 2 * "
                f"n_theta = {2 * ndim} (emcee needs more walkers than dimensions). "
                f"Got {nw} instead.")
        step = self._initial_spread()
        p0 = self._initial_walkers(step, nw, rng)
        sampler = emcee.EnsembleSampler(nw, ndim, self._log_prob)
        sampler.random_state = np.random.RandomState(rng.randint(2 ** 31 - 1)).get_state()
        n_total = int(self.n_burn) + int(self.n_steps)
        sampler.run_mcmc(p0, n_total, progress=bool(self.progress))
        burn = int(self.n_burn)
        self.chain_ = sampler.get_chain(discard=burn)
        self.log_prob_ = sampler.get_log_prob(discard=burn)
        self.acceptance_fraction_ = float(np.mean(sampler.acceptance_fraction))
        self.autocorr_time_ = np.asarray(
            emcee.autocorr.integrated_time(self.chain_, quiet=True, tol=0), dtype=np.float64)
        self.inflation_ = self._cv_inflation() if self.robust == "cv" else \
            {k: 1.0 for k in sorted({k for k, _ in self.keys_})}
        return self

    def _initial_walkers(self, step, n_walkers, rng):
        """Walkers in a ball of radius ``step`` around ``theta_map_``, all of finite log
        probability: a walker drawn outside the prior box (the MAP can sit near its edge) is
        drawn again, in a ball halved every 10 tries.  emcee would otherwise keep a -inf walker,
        and its stretch moves compare -inf with -inf (NaN, a RuntimeWarning) until it moves."""
        t = self.theta_map_
        p0 = t[None, :] + step[None, :] * rng.standard_normal((n_walkers, t.size))
        bad = np.flatnonzero([not np.isfinite(self._log_prob(p)) for p in p0])
        scale = 1.0
        for attempt in range(60):
            if bad.size == 0:
                break
            if attempt and attempt % 10 == 0:
                scale *= 0.5
            p0[bad] = t[None, :] + scale * step[None, :] * rng.standard_normal((bad.size, t.size))
            bad = bad[[not np.isfinite(self._log_prob(p0[i])) for i in bad]]
        if bad.size:
            raise HybridpotError(
                f"{type(self).__name__}.fit: could not start {bad.size} of {n_walkers} walkers "
                f"at a finite log probability near the maximum a posteriori theta "
                f"{np.array2string(t, precision=4)}; widen 'log_prior_width' (got "
                f"{self.log_prior_width!r}).")
        return p0

    def _initial_spread(self):
        """Walker ball: 1/10 of the Laplace standard deviation (finite-difference Hessian)."""
        t = self.theta_map_
        n = t.size
        h = 1e-3
        f0 = self._log_prob(t)
        d2 = np.empty(n)
        for i in range(n):
            e = np.zeros(n)
            e[i] = h
            d2[i] = (self._log_prob(t + e) - 2 * f0 + self._log_prob(t - e)) / h ** 2
        sd = np.where(np.isfinite(d2) & (d2 < 0), 1.0 / np.sqrt(np.abs(d2)), 1e-2)
        return 0.1 * sd

    # ------------------------------------------------------------------ robust inflation
    def _cv_inflation(self):
        fac = self.factors_
        M, n_phi = fac.M, fac.n_phi
        theta = self.theta_map_
        alpha, beta, u = self._unpack(theta)
        folds = sorted({k[2] for k in fac.R})
        num = {}
        den = {}
        for f in folds:
            train_keys = [k for k in fac.R if k[2] != f]
            test_keys = [k for k in fac.R if k[2] == f]
            R_list, N, slw = [], [], []
            for key in self.keys_:
                parts = [fac.R[k] for k in train_keys if (k[0], k[1]) == key]
                if parts:
                    R = scipy.linalg.qr(np.vstack(parts), mode="r", check_finite=False)[0]
                else:
                    R = np.zeros((1, M + n_phi + 1))
                R_list.append(R)
                N.append(sum(fac.n_rows[k] for k in train_keys if (k[0], k[1]) == key))
                slw.append(0.0)
            blocks = _Blocks(R_list, M, n_phi)
            lp, m, L = self._posterior_at(theta, blocks, np.array(N, float), np.array(slw))
            if m is None:
                continue
            for k in test_keys:
                q = self.keys_.index((k[0], k[1]))
                R = fac.R[k]
                RA, RJ, r = R[:, :M], R[:, M:M + n_phi], R[:, -1]
                res = RA @ m - (r + (RJ @ u if u.size else 0.0))
                V = scipy.linalg.solve_triangular(L, RA.T, lower=True, check_finite=False)
                kind = k[0]
                num[kind] = num.get(kind, 0.0) + beta[q] * float(res @ res)
                den[kind] = den.get(kind, 0.0) + beta[q] * float(np.sum(V * V)) \
                    + fac.n_rows[k]
        return {k: max(1.0, num[k] / den[k]) if den.get(k, 0) > 0 else 1.0 for k in num}

    # ------------------------------------------------------------------ summaries
    def _check_chain(self, force):
        self._check_factors()
        if not hasattr(self, "chain_"):
            raise NotFittedError(f"This {type(self).__name__} has no chain; call fit first.")
        n = self.chain_.shape[0]
        tau = float(np.max(self.autocorr_time_))
        if not force and n < 50 * tau:
            raise ChainTooShortError(
                f"The chain has {n} steps per walker but the longest integrated "
                f"autocorrelation time is {tau:.1f} steps; at least 50 x tau = "
                f"{int(np.ceil(50 * tau))} steps are needed for a reliable summary. Increase "
                "'n_steps' (and refit), or pass force=True to summarise anyway.")

    def summary(self, *, force=False):
        """Posterior mean, std and 16/50/84 % quantiles of every ``theta`` component.

        Parameters
        ----------
        force : bool, default=False
            Summarise even if the chain is shorter than 50 autocorrelation times.

        Returns
        -------
        dict
            ``theta_names``, ``mean``, ``std``, ``q16``, ``q50``, ``q84`` (lists),
            ``autocorr_time`` (steps), ``acceptance_fraction``, ``n_steps``, ``n_walkers``,
            ``noise`` (kind/group -> posterior median noise σ in label units),
            ``inflation``.

        Raises
        ------
        ChainTooShortError
            If the chain is shorter than 50 autocorrelation times and ``force`` is False.
        """
        self._check_chain(force)
        flat = self.chain_.reshape(-1, self.chain_.shape[-1])
        q = np.percentile(flat, [16, 50, 84], axis=0)
        noise = {f"{k}/{g}": float(np.exp(-0.5 * q[1, 1 + i]))
                 for i, (k, g) in enumerate(self.keys_)}
        return {"theta_names": list(self.theta_names_), "mean": flat.mean(0).tolist(),
                "std": flat.std(0).tolist(), "q16": q[0].tolist(), "q50": q[1].tolist(),
                "q84": q[2].tolist(), "autocorr_time": self.autocorr_time_.tolist(),
                "acceptance_fraction": self.acceptance_fraction_,
                "n_steps": int(self.chain_.shape[0]), "n_walkers": int(self.chain_.shape[1]),
                "noise": noise, "inflation": dict(self.inflation_)}

    def samples(self, n_samples=None, *, force=False, random_state=None):
        """Flattened posterior samples of ``theta``, shape (n_samples, n_theta).

        Parameters
        ----------
        n_samples : int or None, default=None
            Draws without replacement from the chain (all ``n_steps * n_walkers`` if None or
            larger than the chain).
        force : bool, default=False
            Sample even if the chain is shorter than 50 autocorrelation times.
        random_state : None, int, numpy RandomState or Generator, default=None
            Seeds the draw; None uses the posterior's ``random_state`` (fresh entropy when
            that is None too), so a seeded posterior draws the same samples every time.

        Returns
        -------
        ndarray, shape (n_samples, n_theta)

        Raises
        ------
        ChainTooShortError
            If the chain is shorter than 50 autocorrelation times and ``force`` is False.
        hybridpot.NotFittedError
            Before :meth:`fit`.
        """
        owner = f"{type(self).__name__}.samples"
        check_random_state_param(random_state, owner)
        if random_state is None:   # the posterior's own seed: a seeded posterior is reproducible
            random_state = self.random_state
        self._check_chain(force)
        flat = self.chain_.reshape(-1, self.chain_.shape[-1])
        if n_samples is None or n_samples >= flat.shape[0]:
            return flat.copy()
        n_samples = check_int(n_samples, "n_samples", type(self).__name__, low=1)
        idx = _rng(random_state, owner).choice(flat.shape[0], n_samples, replace=False)
        return flat[idx]

    def weight_posterior(self, theta):
        """Gaussian weight posterior at ``theta`` in the original coefficient units.

        Parameters
        ----------
        theta : array_like, shape (n_theta,)
            ``(log alpha, log beta_k for every key in keys_, baseline offsets (phi -
            phi0) / |phi0|)``, names in ``theta_names_``.

        Returns
        -------
        mean : ndarray, shape (M,)
            Flattened coefficients ``c`` (layout of ``coef_.ravel()``).
        cov : ndarray, shape (M, M)
        """
        self._check_factors()
        theta = self._check_theta(theta)
        _, m, L = self._posterior_at(theta)
        D = self.factors_.D
        Li = scipy.linalg.solve_triangular(L, np.eye(L.shape[0]), lower=True,
                                           check_finite=False)
        cov = (Li.T @ Li) / np.outer(D, D)
        return m / D, cov

    def committee(self, n_theta_samples=64, *, n_members=None, force=False,
                  random_state=None):
        """Predictive committee: mixture of the Gaussian weight posteriors over ``theta``.

        The mixture covariance of ``[c, phi]`` (``mean_s Sigma_s + Cov_s[m_s]``) is written as
        ``V V^T`` with ``V = U sqrt(lambda)`` from its eigendecomposition (the ``n_members``
        leading modes, all non-negligible ones by default): pushing the columns of ``V``
        through the adjoint gives exact (untruncated) parameter variances of any linear output.

        Parameters
        ----------
        n_theta_samples : int, default=64
            ``theta`` draws mixed.
        n_members : int or None, default=None
            Leading eigenmodes kept (None: all with ``lambda > 1e-14 lambda_max``).
        force : bool, default=False
            Passed to the chain-length check.
        random_state : None, int, numpy RandomState or Generator, default=None
            Seeds the draw of the ``theta`` samples; None uses the posterior's
            ``random_state`` (as :meth:`samples`).

        Returns
        -------
        Committee
        """
        from ._committee import Committee

        n_theta_samples = check_int(n_theta_samples, "n_theta_samples",
                                    f"{type(self).__name__}.committee", low=1)
        th = self.samples(n_theta_samples, force=force, random_state=random_state)
        fac = self.factors_
        M, n_phi = fac.M, fac.n_phi
        # the mixture is formed in the scaled variables (v = D c, u), where the prior is
        # isotropic and the covariance well conditioned, then mapped back
        means, covs, noise = [], [], []
        for t in th:
            _, m, L = self._posterior_at(t)
            _, beta, u = self._unpack(t)
            Li = scipy.linalg.solve_triangular(L, np.eye(M), lower=True, check_finite=False)
            means.append(np.concatenate([m, u]))
            full = np.zeros((M + n_phi, M + n_phi))
            full[:M, :M] = Li.T @ Li
            covs.append(full)
            noise.append(1.0 / beta)
        means = np.array(means)
        mix = np.mean(covs, axis=0) + np.cov(means.T, bias=True).reshape(M + n_phi, M + n_phi)
        mix = 0.5 * (mix + mix.T)
        lam, U = np.linalg.eigh(mix)
        order = np.argsort(lam)[::-1]
        lam, U = lam[order], U[:, order]
        keep = lam > 1e-14 * max(lam[0], 1e-300)
        if n_members is not None:
            n_members = check_int(n_members, "n_members", "LinearPosterior.committee", low=1)
            keep[n_members:] = False
        V = U[:, keep] * np.sqrt(lam[keep])[None, :]
        V[:M] /= fac.D[:, None]
        V[M:] *= fac.phi_scale[:, None]
        noise_var = {}
        nv = np.mean(noise, axis=0)
        for q, (k, g) in enumerate(self.keys_):
            noise_var.setdefault(k, {})[g] = float(nv[q])
        return Committee(modes=V[:M].T.reshape(-1, fac.n_species,
                                               M // fac.n_species),
                         baseline_modes=V[M:].T,
                         baseline_shift=means[:, M:].mean(0) * fac.phi_scale,
                         noise_var=noise_var, inflation=dict(self.inflation_),
                         quadratic=fac.quadratic, grouped=bool(self.noise_groups))

    def apply(self, model, n_theta_samples=64, *, n_members=None, force=False,
              random_state=None):
        """Install :meth:`committee` on ``model`` (``model.uncertainty_``); returns ``model``.

        Afterwards ``model.predict(..., return_std=True)`` and
        ``model.calculator(uncertainty=True)`` use the posterior committee for σ.  A
        recalibration of the previous σ (``uncertainty_scale_``,
        ``uncertainty_recalibration_``, see :func:`hybridpot.uq.recalibrate`) is fitted to
        the previous committee and is dropped: recalibrate again for the new one.

        Parameters
        ----------
        model : HybridPotential
            The fitted model this posterior was fitted on (same coefficient layout and
            baseline parameters).
        n_theta_samples : int, default=64
            ``theta`` draws mixed (as in :meth:`committee`).
        n_members : int or None, default=None
            Leading eigenmodes kept (None: all non-negligible ones).
        force : bool, default=False
            Use a chain shorter than 50 autocorrelation times.
        random_state : None, int, numpy RandomState or Generator, default=None
            Seeds the draw of the ``theta`` samples; None uses the posterior's
            ``random_state`` (as :meth:`samples`).

        Returns
        -------
        HybridPotential
            ``model``, with ``uncertainty_`` set.

        Raises
        ------
        hybridpot.InvalidParameterError
            For a model that is not the one this posterior was fitted on (or not linear).
        hybridpot.NotFittedError
            Before :meth:`fit`.
        ChainTooShortError
            If the chain is shorter than 50 autocorrelation times and ``force`` is False.
        """
        owner = f"{type(self).__name__}.apply"
        self._check_factors()
        check_linear_model(model, owner)
        fac = self.factors_
        expect = (fac.n_species, fac.M // fac.n_species)
        coef = np.shape(model.regressor_.coef_)
        base = model.baseline
        names = tuple(base.param_names) if (fac.n_phi and base is not None
                                            and hasattr(base, "param_names")) else ()
        if tuple(coef) != expect or names != tuple(fac.phi_names):
            raise InvalidParameterError(
                f"The 'model' argument of {owner} must be the model this posterior was fitted "
                f"on: the posterior has coefficient blocks of shape {expect}"
                + (f" and baseline parameters {list(fac.phi_names)}" if fac.n_phi else "")
                + f", the model's regressor {tuple(coef)}"
                + (f" and baseline parameters {list(names)}" if fac.n_phi else "")
                + ". Fit a LinearPosterior on this model first.")
        com = self.committee(n_theta_samples, n_members=n_members, force=force,
                             random_state=random_state)
        model.__dict__.pop("uncertainty_scale_", None)
        model.__dict__.pop("uncertainty_recalibration_", None)
        model.uncertainty_ = com
        return model
