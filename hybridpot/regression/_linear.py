"""Linear and quadratic (qSNAP-style) regressors: ridge and Bayesian evidence maximisation.

Both models write the per-atom ML energy as ``eps_i = coef[z_i] . q(X_i)`` with the feature
block ``q`` of :mod:`hybridpot.regression._design` (``[1, X, (quadratic products)]``, the LAMMPS
SNAP / qSNAP ``.snapcoeff`` layout).  Fitting streams the weighted energy, force and stress rows
of every :class:`~hybridpot.regression.StructureBatch` through a
:class:`~hybridpot.regression._tsqr.TSQRAccumulator` (one R factor per label kind, or per kind
and config group), so memory does not grow with the number of rows, and solves the penalised
problem by QR / SVD of the stacked factors -- the normal matrix is never inverted.
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.linalg
from sklearn.exceptions import ConvergenceWarning

from .._exceptions import InvalidParameterError, MissingLabelsError, NotFittedError
from .._validation import check_choice, check_float, check_int
from ..descriptors._base import ChunkedGradients, gradient_chunks
from ._base import VOIGT, BatchSource, Regressor, StructureBatch, register_regressor
from ._design import (energy_rows, labelled_rows, n_block, pair_rows,
                      quadratic_index, split_batch)
from ._tsqr import TSQRAccumulator

__all__ = ["LinearRegressor", "BayesianLinearRegressor"]


def _precision_update(g, ss):
    """MacKay's prior-precision update ``g / ss`` clipped to ``[1e-12, 1e12]``.

    ``g`` is the number of well-determined weights and ``ss`` the weights' squared norm
    (``>= 0``).  The ratio is not formed when it would pass the cap: ``ss`` is ~0 when the
    labels need no correction (a baseline that reproduces them), and ``g / tiny`` overflows.
    """
    if g >= 1e12 * ss:
        return 1e12
    return max(g / ss, 1e-12)


#: relative penalty of the per-element bias (constant) columns: their prior precision /
#: ridge penalty is this factor times that of the other columns (nearly unpenalised)
BIAS_RELATIVE_PENALTY = 1e-6
#: floor of the RMS column scaling (``penalty_scaling="rms"``) relative to the largest column
#: RMS of the same element's linear feature block; the quadratic block's floor follows from it
#: (see _floored_rms).  A column that barely varies in training (an ACSF shell inside the
#: shortest training distance: RMS 1e-7 of the largest) otherwise had a flat prior and got
#: coefficients of 1e7 (1.6e7 eV for a Cu2 at 1 Å); the legitimate columns of the README's
#: SNAP / power-spectrum models sit at >= 1.3e-4 of their block's largest
RMS_FLOOR = 1e-3
#: floor of a quadratic column's RMS relative to the scale its floored factors give it
#: (``Q_z s_k s_l / L_z^2``, see _floored_rms); the README models' products sit at >= 0.14 of
#: it, the square of a flat ACSF shell at ~1e-3 of it (coefficients of 2.6e6 without it)
RMS_PRODUCT_FLOOR = 0.03
#: bytes of force design rows built at once (batches are split into whole structures)
CHUNK_BYTES = 1 << 26
_PLAIN_KIND = "target"
#: several noise levels with at most this fraction of rows per column: the evidence
#: iterations work on the SVD of the rows, O(n_rows^2 M) each, instead of the Cholesky
#: factor of the (M, M) precision, O(M^3) each
DUAL_ROWS_FRACTION = 0.5


def _floored_rms(D, zero, n_species, F, quadratic, floor=None, product_floor=None):
    """Column RMS ``D`` (flattened ``(n_species, P)`` layout) floored within its block.

    Linear block of element ``z`` (columns ``1..F``): ``D_j >= f L_z`` with ``L_z`` the
    block's largest RMS and ``f = floor`` (default ``RMS_FLOOR``).  Quadratic block (product
    ``X_k X_l``): ``D_kl >= f_p Q_z s_k s_l / L_z^2`` with ``s`` the floored linear scales,
    ``Q_z`` the block's largest RMS and ``f_p = product_floor`` (default
    ``RMS_PRODUCT_FLOOR``) -- a product of two ordinary features is not floored, one with a
    feature that barely varies is floored at ``f_p`` times the scale its floored factors give
    it.  Bias columns and ``zero`` columns (RMS ~0: ``D`` already 1, the penalty pins them
    to 0) are left as they are, and so is everything with ``floor = 0``.
    ``n_species=None``: the plain path, every column one linear block.  Returns a new array.
    """
    f = RMS_FLOOR if floor is None else floor
    fp = RMS_PRODUCT_FLOOR if product_floor is None else product_floor
    D = np.array(D, dtype=np.float64)
    if f <= 0:
        return D
    if n_species is None:
        live = ~zero
        if live.any():
            D[live] = np.maximum(D[live], f * D[live].max())
        return D
    P = n_block(F, quadratic)
    Dz, Z = D.reshape(n_species, P), zero.reshape(n_species, P)
    for z in range(n_species):
        lin, lz = Dz[z, 1:1 + F], Z[z, 1:1 + F]
        if not (~lz).any():
            continue
        L = float(lin[~lz].max())
        # floored linear scales (zero features count at the floor in the products)
        s = np.maximum(np.where(lz, 0.0, lin), f * L)
        Dz[z, 1:1 + F] = np.where(lz, lin, s)
        if quadratic:
            quad, qz = Dz[z, 1 + F:], Z[z, 1 + F:]
            if (~qz).any():
                k, l = quadratic_index(F)
                Q = float(quad[~qz].max())
                Dz[z, 1 + F:] = np.where(qz, quad,
                                         np.maximum(quad, fp * Q * s[k] * s[l] / (L * L)))
    return Dz.reshape(-1)


def _column_scale(col_sq, penalty_scaling, n_species, F, quadratic, floor):
    """Column scale ``D`` of the linear models' prior and the mask of columns zero in the data.

    ``col_sq``: mean square of each design column over the weighted rows.  A column whose
    RMS is below 1e-12 of the largest (or not finite) is zero in the data (``D = 1``: the
    prior pins it to 0); with ``penalty_scaling="rms"`` the others get their RMS floored
    within its block (:func:`_floored_rms`, ``floor`` = ``scale_floor``), with ``"none"``
    every ``D`` is 1.  Used by the regressors and by ``uq.LinearPosterior``'s factors, so
    that both have the same prior.
    """
    rms = np.sqrt(col_sq)
    zero = ~(col_sq > 1e-24 * col_sq.max()) | ~np.isfinite(rms)
    if penalty_scaling != "rms":
        return np.ones(col_sq.shape[0]), zero
    D = np.where(zero, 1.0, rms)
    # a column that barely varies in training gets a prior relative to its block
    return _floored_rms(D, zero, n_species, F, quadratic, floor=floor), zero


def _cholesky_shifted(H):
    """Lower Cholesky factor of the posterior precision ``H``; when ``H`` is numerically
    indefinite, of ``H`` plus a tiny diagonal shift (1e-12 of its mean diagonal), which keeps
    an evidence iteration going."""
    try:
        return np.linalg.cholesky(H)
    except np.linalg.LinAlgError:
        return np.linalg.cholesky(H + np.eye(H.shape[0]) * 1e-12 * np.trace(H) / H.shape[0])


def _max_noise_precision(yy, N):
    """Largest noise precision per label kind, ``beta_k <= 1e16 N_k / |y_k|^2``: the noise
    floor ``sigma_k >= 1e-8 RMS(y_k)`` for exactly fitted labels (``yy``: ``|y_k|^2``,
    ``N``: rows per kind; 1e16 for a kind whose labels are all zero)."""
    return np.where(yy > 0, 1e16 * N / np.where(yy > 0, yy, 1.0), 1e16)


def _check_bool(value, name, owner):
    if not isinstance(value, (bool, np.bool_)):
        raise InvalidParameterError(
            f"The '{name}' parameter of {owner} must be a bool. Got {value!r} instead.")
    return bool(value)


def _infer_n_features(P, quadratic, owner):
    if not quadratic:
        F = P - 1
    else:
        # 1 + F + F (F + 1) / 2 = P  ->  F^2 + 3F + 2 - 2P = 0
        F = int(round((-3 + np.sqrt(9 - 4 * (2 - 2 * P))) / 2))
    if F < 1 or n_block(F, quadratic) != P:
        raise InvalidParameterError(
            f"The 'coef' argument of {owner}.from_coef must have shape (n_species, P) with "
            f"P = 1 + F{' + F(F+1)/2' if quadratic else ''} for some F >= 1. Got P = {P} "
            "instead.")
    return F


class _Accumulated:
    """Pre-accumulated statistics handed to ``fit`` (the Dask path of hybridpot.parallel)."""

    def __init__(self, stats, meta):
        self.stats, self.meta = stats, meta


def _whitened_svd(blocks, b2):
    """Thin SVD ``U diag(s) V^T`` of the rows ``vstack(blocks) diag(b2)^-1/2`` (the design in
    the variables ``u = diag(sqrt(b2)) v`` of a unit prior); returns ``(U, s, V^T,
    sqrt(b2))``.  LAPACK's gesdd, and the slower, robust gesvd if it does not converge."""
    sb = np.sqrt(b2)
    A = np.vstack(blocks) / sb[None, :]
    try:
        U, sv, Vt = scipy.linalg.svd(A, full_matrices=False, check_finite=False)
    except np.linalg.LinAlgError:   # gesdd did not converge: the slower, robust driver
        U, sv, Vt = scipy.linalg.svd(A, full_matrices=False, check_finite=False,
                                     lapack_driver="gesvd")
    return U, sv, Vt, sb


def _ridge_from_svd(U, sv, Vt, sb, c, alpha):
    """``argmin ||A v - c||^2 + alpha ||diag(sb) v||^2`` from :func:`_whitened_svd` of
    ``A``."""
    return (Vt.T @ (sv / (sv * sv + alpha) * (U.T @ c))) / sb


def _key_text(key):
    return "/".join(str(k) for k in key) if isinstance(key, tuple) else str(key)


def _non_convergence_advice(keys, beta, beta_max, N, M):
    """End of the non-convergence warning: why, and what to do."""
    floor = [q for q in range(len(keys)) if beta[q] >= 0.5 * beta_max[q]]
    if not floor:
        return "increase max_iter."
    what = ", ".join(f"'{_key_text(keys[q])}' ({int(N[q])} row{'s' * (int(N[q]) != 1)})"
                     for q in floor)
    return (f"the noise level of {what} fell to its floor (1e-8 x the RMS label): the model "
            f"reproduces those labels exactly ({int(np.sum(N))} rows in all for {M} "
            "coefficients), so more iterations will not help. Add labelled structures"
            + (", or use noise_levels='shared' (one noise level for every label kind)."
               if len(keys) > 1 else ", or use LinearRegressor."))


class _LinearBase(Regressor):
    """Shared machinery of the linear regressors (not public)."""

    #: predict_batch reduces a ChunkedGradients one range of centres at a time (HybridPotential
    #: passes one for σ, so a big cell never holds its whole per-pair Jacobian)
    _chunked_gradients = True
    #: the fit reduces a ChunkedGradients too (its rows do not depend on the batching), so
    #: HybridPotential gives a big training structure a batch of its own with one
    _chunked_fit = True
    #: a prior_scale given as an array or list comes back from a model file as a tuple
    _TUPLE_PARAMS = ("prior_scale",)

    def _prior_factor(self, M):
        """Factor ``Gamma^2`` of every column's prior precision from ``prior_scale`` (ones
        without it; ``Gamma`` per feature, the same for every element; bias columns 1;
        quadratic products ``Gamma_k Gamma_l``)."""
        gamma = getattr(self, "prior_scale", None)
        if gamma is None:
            return np.ones(M)
        owner = type(self).__name__
        F = self.n_features_in_
        try:
            g = np.asarray(gamma, dtype=np.float64)
        except (TypeError, ValueError):
            g = None
        if g is None or g.shape != (F,) or not np.all(np.isfinite(g)) or np.any(g <= 0):
            if g is None:   # not numbers (a str, a dict, ...)
                got = f"{gamma!r}"[:60]
            elif not np.all(np.isfinite(g)):
                got = f"shape {g.shape} with {int(np.sum(~np.isfinite(g)))} non-finite value(s)"
            else:
                got = f"shape {g.shape}" + (f", minimum {np.min(g):g}" if g.size else "")
            raise InvalidParameterError(
                f"The 'prior_scale' parameter of {owner} must be None or {F} finite values "
                "> 0 (one per descriptor feature, e.g. hybridpot.regression.smoothness_prior("
                f"descriptor)). Got {got} instead.")
        if self.fit_mode_ != "batch":
            return g * g
        block = [np.ones(1), g]
        if self._quadratic:
            k, l = quadratic_index(F)
            block.append(g[k] * g[l])
        return np.tile(np.concatenate(block) ** 2, self.n_species_)

    # -- input handling ---------------------------------------------------------------------
    def _validate_common(self):
        owner = type(self).__name__
        self._quadratic = _check_bool(self.quadratic, "quadratic", owner)
        check_choice(self.penalty_scaling, "penalty_scaling", ("rms", "none"), owner)
        self._scale_floor = check_float(getattr(self, "scale_floor", RMS_FLOOR), "scale_floor",
                                        owner, low=0.0, high=1.0, low_inclusive=True,
                                        high_inclusive=True)
        check_choice(self.solver, "solver", ("tsqr", "normal"), owner)
        self._acc_method = "qr" if self.solver == "tsqr" else "gram"

    def _report_key(self, kind, g, group_names):
        """Key under which the noise of rows of ``kind`` in group ``g`` is reported."""
        return kind

    def _acc_key(self, report_key):
        """Accumulator key (one hyperparameter each) of a report key."""
        return report_key

    def _add_rows(self, acc, wstats, kind, g, names, A, y, w):
        """Add rows to ``acc`` and their weight sum/count to ``wstats`` (no state on self)."""
        rk = self._report_key(kind, g, names)
        acc.add(self._acc_key(rk), A, y, w)
        ws, wc = wstats.get(rk, (0.0, 0))
        wstats[rk] = (ws + float(w.sum()), wc + int(w.shape[0]))

    # -- streamed sufficient statistics (serial here; merged across Dask workers by
    #    hybridpot.parallel through _new_stats / _add_batch / _merge_stats / _fit_stats) ----
    def _new_stats(self, meta):
        """Empty accumulator for batches of ``meta['n_species']`` x ``meta['n_features']``."""
        self._validate_common()
        n_species, F = int(meta["n_species"]), int(meta["n_features"])
        if n_species < 1 or F < 1:
            raise InvalidParameterError(
                f"{type(self).__name__}.fit needs n_species >= 1 and n_features >= 1. "
                f"Got {n_species} and {F} instead.")
        M = n_species * n_block(F, self._quadratic)
        return {"acc": TSQRAccumulator(M, method=self._acc_method), "wstats": {},
                "n_batches": 0}

    def _add_batch(self, stats, batch, meta):
        """Add the labelled rows of one StructureBatch to ``stats`` (see :meth:`_new_stats`)."""
        acc = stats["acc"]
        n_species, F = int(meta["n_species"]), int(meta["n_features"])
        names = meta.get("group_names") or ("default",)
        stats["n_batches"] += 1
        self._check_batch(batch, n_species, F)
        wstats = stats["wstats"]
        # rows of one batch; nothing is stored on self (thread-safe on Dask workers)
        max_atoms = max(1, CHUNK_BYTES // (24 * acc.n_columns))
        for sub in split_batch(batch, max_atoms):
            for kind, group, A, y, w in labelled_rows(sub, n_species, self._quadratic):
                groups = np.unique(group)
                if groups.shape[0] == 1:
                    self._add_rows(acc, wstats, kind, int(groups[0]), names, A, y, w)
                    continue
                for g in groups:
                    m = group == g
                    self._add_rows(acc, wstats, kind, int(g), names, A[m], y[m], w[m])
        return stats

    @staticmethod
    def _merge_stats(a, b):
        """Combine two accumulators of disjoint row sets (returns ``a``, updated)."""
        a["acc"].merge(b["acc"])
        for k, (ws, wc) in b["wstats"].items():
            ws0, wc0 = a["wstats"].get(k, (0.0, 0))
            a["wstats"][k] = (ws0 + ws, wc0 + wc)
        a["n_batches"] += b["n_batches"]
        return a

    def _fit_stats(self, stats, meta):
        """Fit from merged statistics of the batches described by ``meta``; returns self."""
        return self.fit(_Accumulated(stats, meta))

    def _accumulate_batches(self, batches):
        owner = type(self).__name__
        if isinstance(batches, _Accumulated):
            stats, meta = batches.stats, batches.meta
        else:
            source = BatchSource.wrap(batches)
            meta = {"n_species": source.n_species, "n_features": source.n_features,
                    "species": source.species, "group_names": source.group_names}
            stats = self._new_stats(meta)
            for batch in source:
                self._add_batch(stats, batch, meta)
                del batch   # not alive while the source builds the next one (peak: 1 batch)
        acc = stats["acc"]
        self._wstats = dict(stats["wstats"])
        n_species, F = int(meta["n_species"]), int(meta["n_features"])
        P = n_block(F, self._quadratic)
        M = n_species * P
        if not acc.keys():
            raise MissingLabelsError(
                f"{owner}.fit received {stats['n_batches']} batch(es) with no usable label: "
                "every energy, force and stress label is missing (NaN), has zero weight, or "
                "(stress) belongs to a structure that is not periodic in 3-D.")
        bias_cols = np.zeros(M, dtype=bool)
        bias_cols[np.arange(n_species) * P] = True
        self.n_species_ = n_species
        self.n_features_in_ = F
        self.species_ = tuple(meta["species"]) if meta.get("species") is not None else None
        self.group_names_ = tuple(meta["group_names"])
        return acc, bias_cols

    def _accumulate_plain(self, A, y, sample_weight):
        owner = type(self).__name__
        A = np.asarray(A, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        if A.ndim != 2 or A.shape[0] < 1 or A.shape[1] < 1:
            raise InvalidParameterError(
                f"The 'A' argument of {owner}.fit must be a 2-D design matrix (n_rows, "
                f"n_columns) or a list of StructureBatch. Got shape {A.shape} instead.")
        if y.shape != (A.shape[0],):
            raise InvalidParameterError(
                f"The 'y' argument of {owner}.fit must have shape ({A.shape[0]},). "
                f"Got {y.shape} instead.")
        if not (np.all(np.isfinite(A)) and np.all(np.isfinite(y))):
            raise InvalidParameterError(
                f"The 'A' and 'y' arguments of {owner}.fit must be finite (NaN or inf given).")
        w = None
        if sample_weight is not None:
            w = np.asarray(sample_weight, dtype=np.float64)
            if w.shape != y.shape or not np.all(np.isfinite(w)) or np.any(w < 0):
                raise InvalidParameterError(
                    f"The 'sample_weight' argument of {owner}.fit must be finite, >= 0, with "
                    f"shape {y.shape}. Got shape {w.shape} instead.")
            keep = w > 0
            A, y, w = A[keep], y[keep], w[keep]
        acc = TSQRAccumulator(A.shape[1], method=self._acc_method)
        if A.shape[0] == 0:
            raise MissingLabelsError(f"{owner}.fit received only zero sample weights.")
        self._add_rows(acc, self._wstats, _PLAIN_KIND, 0, ("default",), A, y,
                       np.ones(A.shape[0]) if w is None else w)
        self.n_species_ = None
        self.n_features_in_ = A.shape[1]
        self.species_ = None
        self.group_names_ = ("default",)
        return acc, np.zeros(A.shape[1], dtype=bool)

    def _prepare(self, batches, y, sample_weight):
        """Validate, stream the rows; return the scaled R factors and the penalty scaling."""
        self._validate_common()
        if isinstance(batches, np.ndarray) or y is not None:
            self._wstats = {}
            acc, bias_cols = self._accumulate_plain(batches, y, sample_weight)
            self.fit_mode_ = "plain"
        else:
            if sample_weight is not None:
                raise InvalidParameterError(
                    f"The 'sample_weight' argument of {type(self).__name__}.fit is only for the "
                    "plain-array path; StructureBatch carries its own 'weights'.")
            acc, bias_cols = self._accumulate_batches(batches)
            self.fit_mode_ = "batch"
        M = acc.n_columns
        keys = acc.keys()
        # mean square of each column over all weighted rows: diag(sum_k A_k^T W_k A_k) / N,
        # read off the R factors (R^T R = [A | y]^T W [A | y])
        col_sq = sum(acc.column_sq(k) for k in keys) / max(sum(acc.n_rows[k] for k in keys), 1)
        batch = self.fit_mode_ == "batch"
        D, zero = _column_scale(col_sq, self.penalty_scaling,
                                self.n_species_ if batch else None, self.n_features_in_,
                                self._quadratic and batch, self._scale_floor)
        # relative penalty factor b_j^2 (bias columns nearly unpenalised, unless absent)
        b2 = np.ones(M)
        b2[bias_cols & ~zero & (col_sq > 0)] = BIAS_RELATIVE_PENALTY
        b2 = b2 * self._prior_factor(M)   # prior_scale (e.g. a smoothness prior)
        self.penalty_scale_ = D * np.sqrt(b2)
        Rs = {}
        for k in keys:
            R = acc.R(k)
            Rs[k] = (R[:, :-1] / D[None, :], R[:, -1].copy())
        self._n_rows = {k: acc.n_rows[k] for k in keys}
        self._sum_log_w = {k: acc.sum_log_weight[k] for k in keys}
        return Rs, D, b2

    # -- fitted-model helpers ---------------------------------------------------------------
    @property
    def _coef_flat(self):
        return np.asarray(self.coef_, dtype=np.float64).reshape(-1)

    def _check_X(self, X, species):
        self._check_fitted()
        owner = type(self).__name__
        if self.fit_mode_ != "batch":
            raise NotFittedError(
                f"This {owner} was fitted on a plain design matrix; per-atom energies need a "
                "fit on StructureBatch data (or from_coef).")
        return self._check_atomic_input(X, species)

    def atomic_energy(self, X, species):
        """Per-atom ML energies ``eps_i = coef[z_i] . q(X_i)``.

        Parameters
        ----------
        X : array_like, shape (n_atoms, n_features)
            Per-atom descriptors.
        species : array_like of int, shape (n_atoms,)
            Index of each atom's element in the model's species list.

        Returns
        -------
        eps : ndarray, shape (n_atoms,)
            eV.
        """
        X, sp = self._check_X(X, species)
        return self._energy_and_gradient(X, sp, gradient=False)[0]

    def atomic_energy_gradient(self, X, species):
        """Per-atom energies and ``dE_dX = d(sum_i eps_i)/dX`` (input of ``backward``).

        For the quadratic block ``0.5 X^T S X`` with ``S_kk = c_kk``, ``S_kl = S_lk = c_kl``
        the gradient is ``S X``.

        Parameters
        ----------
        X : array_like, shape (n_atoms, n_features)
            Per-atom descriptors.
        species : array_like of int, shape (n_atoms,)
            Index of each atom's element in the model's species list.

        Returns
        -------
        eps : ndarray, shape (n_atoms,)
            eV.
        dE_dX : ndarray, shape (n_atoms, n_features)
            eV per descriptor unit.
        """
        X, sp = self._check_X(X, species)
        return self._energy_and_gradient(X, sp, gradient=True)

    def _energy_and_gradient(self, X, sp, gradient):
        """``eps`` (and ``dE_dX`` or None) species by species, in memory ``O(n_atoms F)``:
        ``eps = c_0 + X . c_lin + 0.5 X^T S X``, ``dE_dX = c_lin + S X`` (no per-atom copy of
        the coefficients, of the quadratic feature map or of ``S``)."""
        n, F = X.shape
        eps = np.empty(n)
        dE = np.empty((n, F)) if gradient else None
        if self.quadratic:
            iu, ju = quadratic_index(F)
        for z in range(self.n_species_):   # loop over elements, vectorised over atoms
            idx = np.flatnonzero(sp == z)
            if idx.size == 0:
                continue
            c = self.coef_[z]
            Xz = X[idx]
            e = c[0] + Xz @ c[1:1 + F]
            if gradient:
                dE[idx] = c[1:1 + F]
            if self.quadratic:
                S = np.zeros((F, F))
                S[iu, ju] = c[1 + F:]
                S[ju, iu] = c[1 + F:]
                SX = Xz @ S
                e += 0.5 * np.einsum("if,if->i", Xz, SX)
                if gradient:
                    dE[idx] += SX
            eps[idx] = e
        return eps, dE

    def _predict_means(self, batch, gradients=True):
        """Energy (n_structures,), forces (n_atoms, 3) and stress (n_structures, 6) means
        (the energy only with ``gradients=False``)."""
        X, sp = self._check_X(batch.X, batch.species)
        eps, dE_dX = self.atomic_energy_gradient(X, sp)
        ns = batch.n_structures
        out = {"energy": np.bincount(batch.structure, weights=eps, minlength=ns)}
        g = batch.gradients
        if g is not None and gradients:
            dE_dr = np.zeros((batch.n_atoms, 3))
            vir = np.zeros((ns, 6))
            for c in gradient_chunks(g):   # one piece unless ChunkedGradients
                gp = np.einsum("paf,pf->pa", c.d_drij, dE_dX[c.pair_i])
                n = batch.n_atoms
                for a in range(3):
                    dE_dr[:, a] += (np.bincount(c.pair_j, weights=gp[:, a], minlength=n)
                                    - np.bincount(c.pair_i, weights=gp[:, a], minlength=n))
                s_of_pair = batch.structure[c.pair_i]
                for v, (a, b) in enumerate(VOIGT):
                    vir[:, v] += np.bincount(s_of_pair, weights=gp[:, a] * c.rij[:, b],
                                             minlength=ns)
            out["forces"] = -dE_dr
            vol = np.asarray(batch.volume, dtype=np.float64)
            ok = np.isfinite(vol) & (vol > 0)
            stress = np.full((ns, 6), np.nan)
            stress[ok] = vir[ok] / vol[ok, None]
            out["stress"] = stress
        return out

    def predict(self, A, return_std=False, include_noise=True):
        """Plain-array prediction ``A @ coef`` (secondary path), or energies of a batch.

        Parameters
        ----------
        A : ndarray, shape (n_rows, n_columns) or StructureBatch
            A design matrix in the column layout used by ``fit(A, y)``; a StructureBatch
            returns total energies (eV) per structure.
        return_std : bool, default=False
            Also return predictive standard deviations (Bayesian model only).
        include_noise : bool, default=True
            Include the fitted observation noise in the standard deviation.

        Returns
        -------
        mean : ndarray, shape (n_rows,) or (n_structures,)
            ``A @ coef`` (units of the plain ``y``), or total ML energies (eV) of a batch.
        std : ndarray, same shape
            Only with ``return_std``.

        Raises
        ------
        hybridpot.NotFittedError
            Before ``fit``.
        hybridpot.InvalidParameterError
            For ``A`` of the wrong width, or ``return_std=True`` without a posterior
            (LinearRegressor).
        """
        self._check_fitted()
        if isinstance(A, StructureBatch):
            out = self.predict_batch(A, return_std=return_std, include_noise=include_noise)
            return (out["energy"], out["energy_std"]) if return_std else out["energy"]
        A = np.asarray(A, dtype=np.float64)
        c = self._coef_flat
        if A.ndim != 2 or A.shape[1] != c.shape[0]:
            raise InvalidParameterError(
                f"The 'A' argument of {type(self).__name__}.predict must have shape "
                f"(n_rows, {c.shape[0]}). Got {A.shape} instead.")
        mean = A @ c
        if not return_std:
            return mean
        var = self._param_variance(A)
        if include_noise and self.fit_mode_ == "plain":
            var = var + self._noise_of(_PLAIN_KIND, 0) ** 2
        return mean, np.sqrt(var)

    def _param_variance(self, A):
        raise InvalidParameterError(
            f"{type(self).__name__} has no posterior: return_std=True needs "
            "BayesianLinearRegressor.")

    def predict_batch(self, batch, return_std=False, include_noise=True):
        """Energies, forces and stresses of a batch (see the Regressor contract).

        Parameters
        ----------
        batch : StructureBatch
            Descriptors (and, for forces and stress, ``gradients``); labels are ignored.
        return_std : bool, default=False
            Add ``"energy_std"``, ``"forces_std"``, ``"stress_std"`` (Bayesian model only).
        include_noise : bool, default=True
            With ``return_std``: include the fitted observation noise (per label kind, and
            per config group with ``noise_groups``); for the total energy the per-atom energy
            noise is multiplied by ``N_s``.  False gives the parameter (epistemic) part only.

        Returns
        -------
        dict
            ``"energy"`` (n_structures,) eV; with gradients ``"forces"`` (n_atoms, 3) eV/Å and
            ``"stress"`` (n_structures, 6) eV/Å³ (NaN unless 3-D periodic).

        Raises
        ------
        hybridpot.NotFittedError
            Before ``fit``.
        hybridpot.InvalidParameterError
            For a ``batch`` that is not a StructureBatch, or ``return_std=True`` without a
            posterior (LinearRegressor).
        """
        self._check_fitted()
        if not isinstance(batch, StructureBatch):
            raise InvalidParameterError(
                f"The 'batch' argument of {type(self).__name__}.predict_batch must be a "
                f"StructureBatch. Got {type(batch).__name__} instead.")
        if not return_std:
            return self._predict_means(batch)
        if not self.has_uncertainty:
            self._param_variance(None)
        # a ChunkedGradients is reduced once: the mean forces and stresses come from the rows
        chunked = isinstance(batch.gradients, ChunkedGradients)
        out = self._predict_means(batch, gradients=not chunked)
        nsp = self.n_species_
        ns = batch.n_structures
        nat = batch.n_atoms_per_structure
        group = (np.zeros(ns, dtype=np.int64) if batch.group is None
                 else np.asarray(batch.group, dtype=np.int64))
        Ae = energy_rows(batch, nsp, self.quadratic) * nat[:, None]
        var = self._param_variance(Ae)
        if include_noise:
            var = var + (nat * self._noise_vector("energy", group)) ** 2
        out["energy_std"] = np.sqrt(var)
        if batch.gradients is not None:
            Fr, Sr = pair_rows(batch, nsp, self.quadratic)
            ok = np.isfinite(batch.volume) & (batch.volume > 0)
            if chunked:
                c = self.coef_.reshape(-1)
                out["forces"] = (Fr @ c).reshape(-1, 3)
                stress = np.full((ns, 6), np.nan)
                stress[ok] = (Sr @ c).reshape(ns, 6)[ok]
                out["stress"] = stress
            var = self._param_variance(Fr)
            if include_noise:
                var = var + np.repeat(self._noise_vector("forces", group[batch.structure]),
                                      3) ** 2
            out["forces_std"] = np.sqrt(var).reshape(-1, 3)
            sstd = np.full((ns, 6), np.nan)
            if ok.any():
                rows = Sr.reshape(ns, 6, -1)[ok].reshape(-1, Sr.shape[1])
                var = self._param_variance(rows)
                if include_noise:
                    var = var + np.repeat(self._noise_vector("stress", group[ok]), 6) ** 2
                sstd[ok] = np.sqrt(var).reshape(-1, 6)
            out["stress_std"] = sstd
        return out

    # -- serialisation ----------------------------------------------------------------------
    def _base_state(self):
        state = {"fit_mode": self.fit_mode_, "n_species": self.n_species_,
                 "n_features": int(self.n_features_in_),
                 "species": list(self.species_) if self.species_ is not None else None,
                 "group_names": list(self.group_names_)}
        arrays = {"coef": np.asarray(self.coef_, dtype=np.float64).copy(),
                  "penalty_scale": np.asarray(self.penalty_scale_, dtype=np.float64).copy()}
        return state, arrays

    def _set_base_state(self, state, arrays):
        from .._exceptions import ModelFormatError

        try:
            self.fit_mode_ = str(state["fit_mode"])
            self.n_species_ = None if state["n_species"] is None else int(state["n_species"])
            self.n_features_in_ = int(state["n_features"])
            self.species_ = None if state["species"] is None else tuple(state["species"])
            self.group_names_ = tuple(state["group_names"])
            coef = np.asarray(arrays["coef"], dtype=np.float64)
            self.penalty_scale_ = np.asarray(arrays["penalty_scale"], dtype=np.float64)
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelFormatError(
                f"Fitted state of {type(self).__name__} is incomplete or corrupt: {exc!r}.") \
                from exc
        if self.fit_mode_ == "batch":
            P = n_block(self.n_features_in_, self.quadratic)
            if coef.shape != (self.n_species_, P):
                raise ModelFormatError(
                    f"Fitted state of {type(self).__name__}: 'coef' has shape {coef.shape}, "
                    f"expected {(self.n_species_, P)}.")
        self.coef_ = coef


@register_regressor
class LinearRegressor(_LinearBase):
    r"""Ridge regression of the per-atom ML energy on a linear or quadratic feature map.

    The per-atom energy is ``eps_i = c_{z_i} . q(X_i)`` with ``q(X) = [1, X, (quadratic
    products)]`` (LAMMPS SNAP / qSNAP layout, see :mod:`hybridpot.regression._design`).  The
    coefficients minimise

    .. math::  L(c) = \sum_{rows} w_r (a_r \cdot c - y_r)^2 + \alpha \sum_j (b_j D_j c_j)^2

    over the energy rows (per atom, eV/atom), force rows (eV/Å) and stress rows (Voigt,
    eV/Å³) of every structure, with ``w_r`` the per-structure weight of the row's label kind.

    ``alpha`` semantics: with ``penalty_scaling="rms"`` (default) ``D_j`` is the root mean
    square ``d_j`` of column ``j`` over all weighted training rows, floored within its block
    (below), so ``alpha`` is the scikit-learn ``Ridge`` penalty applied to the design whose
    columns are divided by their RMS -- it is independent of the units and magnitudes of the
    descriptors (but, as for ``Ridge``, not divided by the number of rows): the penalty
    bounds each column's contribution over the training data.  The floor keeps a column that
    barely varies in training (an ACSF shell inside the shortest training distance, RMS
    ``1e-7`` of the largest) from an almost free coefficient, which exploded where that
    feature lights up (1e7 eV for a Cu2 at 1 Å after training on clusters); its penalty then
    bounds the coefficient relative to its block's scale.  For element ``z`` with linear
    columns ``j`` (features ``X_j``) and quadratic columns ``(k, l)`` (``X_k X_l``),

    .. math::
        D_j = \max(d_j, f L_z),\quad L_z = \max_{j'} d_{j'},\qquad
        D_{kl} = \max(d_{kl}, f_p Q_z D_k D_l / L_z^2),\quad Q_z = \max_{(k', l')} d_{k'l'}

    with ``f = scale_floor`` (default 1e-3), ``f_p = 0.03`` and ``D_k`` the
    floored linear scales: ``Q_z D_k D_l / L_z^2`` is the RMS the product would have if it
    scaled like its factors, as the block's largest does.  Products of ordinary features
    (``d_kl = 0.002-0.06 D_k D_l`` on SNAP and power spectra, ``Q_z / L_z^2 = 0.01-0.06``) are
    not floored; a product with a flat feature is floored with it.  Well-posed designs are
    unchanged or nearly (the linear SNAP / power-spectrum columns of the mlearn benchmark
    models sit at ``>= 1.3e-4`` of their block's largest; most of those models have no column
    below its floor, the others a few).  On the plain path all columns form one linear block.
    ``penalty_scaling="none"`` uses ``D_j = 1`` (identical to
    ``sklearn.linear_model.Ridge(alpha, fit_intercept=False)`` on the plain path).  The
    per-element bias (constant) columns get ``b_j^2 = 1e-6`` (nearly unpenalised) and are not
    floored; all other columns, and bias columns absent from the data, get ``b_j = 1``.
    Columns that are zero in the data (RMS below ``1e-12`` times the largest column RMS, e.g.
    an element absent from the training set) get ``D_j = 1`` so the penalty pins them to 0.
    A nearly unpenalised fit (the default ``alpha = 1e-6``) can still extrapolate wildly
    along such columns; the evidence of :class:`BayesianLinearRegressor` or a larger
    ``alpha`` bounds them.

    The rows are streamed batch by batch into a TSQR accumulator (memory independent of the
    number of rows) and the minimiser is found by a least-squares solve (SVD, ``gelsd``) of
    ``[R_k D^{-1}; sqrt(alpha) diag(b)]`` -- the normal matrix is never formed or inverted.

    A plain design matrix also works (secondary path): ``fit(A, y, sample_weight=None)``
    is then ordinary ridge regression on the columns of ``A`` (``quadratic`` is ignored, no
    column is treated as a bias) and ``predict(A)`` returns ``A @ coef_``.

    Parameters
    ----------
    alpha : float, default=1e-6
        Penalty strength (>= 0; 0 gives the minimum-norm least-squares solution).
    quadratic : bool, default=False
        Add the products ``X_k X_l`` (``0.5 X_k^2`` on the diagonal) to the feature map.
    penalty_scaling : {"rms", "none"}, default="rms"
        Column scaling ``D`` of the penalty: the column RMS floored within its block
        (``"rms"``, see above) or 1 (``"none"``).
    solver : {"tsqr", "normal"}, default="tsqr"
        How rows are reduced: ``"tsqr"`` keeps the streamed Householder R factor of
        ``[A | y]`` per label kind (accuracy ``~ eps * cond(A)``); ``"normal"`` accumulates the
        Gram matrix with BLAS-3 products (much faster on large fits, accuracy
        ``~ eps * cond(A)**2``, fine for well-scaled descriptors) and factorises it once.
    prior_scale : sequence of float or None, default=None
        ``Gamma_k > 0`` per descriptor feature: the penalty of the coefficient of feature
        ``k`` is multiplied by ``Gamma_k**2`` (for every element; quadratic products
        ``Gamma_k Gamma_l``; bias columns unchanged).  ACEpotentials' smoothness prior:
        ``prior_scale=hybridpot.regression.smoothness_prior(descriptor, p=2)`` penalises high
        radial / angular degrees more.  Plain path: one value per column.
    rcond : float or None, default=None
        Rank-revealing truncation (ACEpotentials' ``RRQR(rtol)``, numpy's ``lstsq`` rcond):
        singular values of the scaled, penalised system below ``rcond`` times the largest are
        discarded (minimum-norm solution on the rest; ``alpha=0`` for a pure truncation).
        None: the solve keeps every direction (down to machine precision).
    scale_floor : float in [0, 1], default=1e-3
        ``f`` of the ``"rms"`` scaling: the smallest column scale relative to the largest of
        its element's linear block (0: the plain RMS).  1e-3 leaves the SNAP / power-spectrum
        models of the mlearn benchmark (nearly) unchanged; 1e-2 (the network's input floor)
        suits ACSF better (EMT molecules, ANI shells: test forces 1.0 -> 0.25 eV/Å).

    Attributes
    ----------
    coef_ : ndarray, shape (n_species, P)
        ``P = 1 + F`` (+ ``F (F + 1) / 2`` if quadratic); on the plain path shape
        (n_columns,).
    penalty_scale_ : ndarray, shape (n_species * P,)
        ``b_j D_j`` of the penalty.
    alpha_ : float
        The penalty strength used (``alpha``).
    group_names_ : tuple of str
        Config groups of the training data.
    n_species_, n_features_in_ : int
    fit_mode_ : {"batch", "plain"}
    """

    has_uncertainty = False

    def __init__(self, *, alpha=1e-6, quadratic=False, penalty_scaling="rms", solver="tsqr",
                 prior_scale=None, rcond=None, scale_floor=1e-3):
        self.scale_floor = scale_floor
        self.alpha = alpha
        self.quadratic = quadratic
        self.penalty_scaling = penalty_scaling
        self.solver = solver
        self.prior_scale = prior_scale
        self.rcond = rcond

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
            Non-negative row weights of the plain path (a StructureBatch carries its own
            ``weights``); default 1.

        Returns
        -------
        self

        Raises
        ------
        hybridpot.InvalidParameterError
            For invalid hyperparameters, batches or arrays (shape, NaN / inf, negative
            weights, ``sample_weight`` with batches).
        hybridpot.MissingLabelsError
            When no row has a positive weight.
        """
        alpha = check_float(self.alpha, "alpha", type(self).__name__, low=0.0,
                            low_inclusive=True, finite=True)
        rcond = check_float(self.rcond, "rcond", type(self).__name__, low=0.0,
                            allow_none=True, finite=True)
        Rs, D, b2 = self._prepare(batches, y, sample_weight)
        M = D.shape[0]
        blocks = [R for R, _ in Rs.values()]
        rhs = [r for _, r in Rs.values()]
        v = None
        if rcond is not None:
            # rank-revealing truncation (ACEpotentials' RRQR(rtol)): the minimum-norm solution
            # on the singular directions of [R_k D^-1; sqrt(alpha) diag(b)] above rcond s_max
            if alpha > 0:
                blocks.append(np.diag(np.sqrt(alpha * b2)))
                rhs.append(np.zeros(M))
            v = scipy.linalg.lstsq(np.vstack(blocks), np.concatenate(rhs), cond=rcond,
                                   lapack_driver="gelsd", check_finite=False)[0]
        elif self.solver == "normal" and alpha > 0:
            # the factors already carry the squared condition number: a Cholesky solve of the
            # (scaled, penalised) normal equations loses nothing more and is much cheaper
            H = alpha * np.diag(b2) + sum(R.T @ R for R in blocks)
            try:
                cf = scipy.linalg.cho_factor(H, lower=True, check_finite=False)
                v = scipy.linalg.cho_solve(cf, sum(R.T @ r for R, r in zip(blocks, rhs)),
                                           check_finite=False)
            except np.linalg.LinAlgError:
                v = None
        n_rows = sum(R.shape[0] for R in blocks)
        if v is None and alpha > 0 and n_rows < M and np.all(b2 > 0):
            # fewer rows than columns (e.g. a quadratic model on a few small cells): with
            # u = S v, S = diag(sqrt(b2)), the penalised problem is ridge regression on
            # A = [R] S^-1, solved by the SVD of the (n_rows, M) matrix A in O(n_rows^2 M)
            # instead of the least squares of the (n_rows + M, M) augmented system, O(M^3)
            U, sv, Vt, sb = _whitened_svd(blocks, b2)
            v = _ridge_from_svd(U, sv, Vt, sb, np.concatenate(rhs), alpha)
        if v is None:
            if alpha > 0:
                blocks.append(np.diag(np.sqrt(alpha * b2)))
                rhs.append(np.zeros(M))
            B = np.vstack(blocks)
            c = np.concatenate(rhs)
            v = scipy.linalg.lstsq(B, c, lapack_driver="gelsd", check_finite=False)[0]
        coef = v / D
        self.alpha_ = alpha
        self.coef_ = coef.reshape(self.n_species_, -1) if self.fit_mode_ == "batch" else coef
        return self

    @classmethod
    def from_coef(cls, coef, *, quadratic=False):
        """A fitted regressor from coefficients in the SNAP / qSNAP layout.

        Parameters
        ----------
        coef : array_like, shape (n_species, P)
            ``P = 1 + F`` (linear) or ``1 + F + F (F + 1) / 2`` (quadratic): per element
            the constant (eV), the linear coefficients and the quadratic ones (eV per
            descriptor unit, squared), as in a LAMMPS ``.snapcoeff`` file.
        quadratic : bool, default=False
            Whether ``coef`` holds the quadratic block.

        Returns
        -------
        LinearRegressor
            Fitted (``fit_mode_ = "batch"``).

        Raises
        ------
        hybridpot.InvalidParameterError
            For ``coef`` that is not a finite 2-D array or whose width fits no feature count.
        """
        self = cls(quadratic=quadratic)
        self._from_coef(coef)
        return self

    def _from_coef(self, coef):
        owner = type(self).__name__
        self._validate_common()
        coef = np.array(coef, dtype=np.float64)
        if coef.ndim != 2 or coef.shape[0] < 1 or not np.all(np.isfinite(coef)):
            raise InvalidParameterError(
                f"The 'coef' argument of {owner}.from_coef must be a finite 2-D array "
                f"(n_species, P). Got shape {coef.shape} instead.")
        F = _infer_n_features(coef.shape[1], self._quadratic, owner)
        self.fit_mode_ = "batch"
        self.n_species_ = coef.shape[0]
        self.n_features_in_ = F
        self.species_ = None
        self.group_names_ = ("default",)
        self.penalty_scale_ = np.ones(coef.size)
        self.coef_ = coef

    def get_fitted_state(self):
        """``(state, arrays)``: JSON-able dict and ndarrays of the fitted model."""
        self._check_fitted()
        state, arrays = self._base_state()
        state["alpha_"] = float(getattr(self, "alpha_", self.alpha))
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
        self._validate_common()
        self._set_base_state(state, arrays)
        self.alpha_ = float(state.get("alpha_", self.alpha))
        return self


@register_regressor
class BayesianLinearRegressor(_LinearBase):
    r"""Bayesian linear (or quadratic) regression with evidence-maximised hyperparameters.

    Model: ``eps_i = c_{z_i} . q(X_i)`` as in :class:`LinearRegressor`; for every training row
    ``r`` of label kind ``k`` (``"energy"`` per atom in eV/atom, ``"forces"`` in eV/Å,
    ``"stress"`` in eV/Å³ -- or one ``k`` per kind and config group with ``noise_groups=True``)

    .. math::
        y_r \sim N(a_r \cdot c, 1 / (\beta_k w_r)),\qquad
        c_j \sim N(0, 1 / (\alpha b_j^2 D_j^2))

    with the column scaling ``D`` and bias factors ``b`` of :class:`LinearRegressor`
    (``alpha`` is a dimensionless precision on RMS-scaled coefficients: a prior on each
    column's contribution over the training data; for a column that barely varies in training
    a prior on its coefficient relative to its block's scale).  Given
    ``theta = (alpha, beta_k)`` the posterior is Gaussian with precision
    ``H = sum_k beta_k A_k^T W_k A_k + alpha diag(b D)^2``, mean
    ``m = H^{-1} sum_k beta_k A_k^T W_k y_k`` and covariance ``Sigma = H^{-1}``.  ``theta``
    maximises the exact log evidence

    .. math::
        \log p(y | \theta) = \tfrac12 \sum_k [N_k \log\beta_k + \sum_{r\in k}\log w_r]
        + \tfrac12 \sum_j \log(\alpha b_j^2 D_j^2) - \tfrac12 E(m) - \tfrac12 \log|H|
        - \tfrac{N}{2}\log 2\pi,

    ``E(m) = sum_k beta_k ||W_k^{1/2}(A_k m - y_k)||^2 + alpha ||diag(b D) m||^2``, by the
    MacKay fixed point ``gamma_k = beta_k tr(Sigma A_k^T W_k A_k)``,
    ``beta_k = (N_k - gamma_k) / ||W_k^{1/2}(A_k m - y_k)||^2``,
    ``alpha = sum_k gamma_k / ||diag(b D) m||^2`` (a stationary point of the evidence;
    optionally Anderson-accelerated, see ``accelerate``).  With a single noise level (the
    plain path, ``noise_levels="shared"`` without ``noise_groups``, or one label kind) the
    iteration runs in the SVD basis of the whitened factor, computed once: each step is then
    O(M) and exact also for nearly collinear features, where refactorising an
    ill-conditioned ``H`` every step was slow and inaccurate.
    The final posterior is computed from a QR decomposition of
    ``[sqrt(beta_k) R_k; sqrt(alpha) diag(b D)]`` (``R_k`` the streamed TSQR factors), and
    predictive variances ``a^T Sigma a = ||T^{-T} a||^2`` by a triangular solve with that
    factor ``T`` -- accurate also far from the origin (no centring is assumed).

    Predictions (:meth:`predict_batch` with ``return_std=True``) give the standard deviation
    of the total energy (the per-atom energy noise ``1/sqrt(beta_energy)`` is multiplied by
    ``N_s``), of every force component and of every stress component, with the observation
    noise of the label kind added unless ``include_noise=False`` (noise at unit weight;
    for a config group not seen in training with ``noise_groups=True`` the largest noise of
    that kind; kinds absent from training add no noise, so their σ is the parameter part
    alone and far too small: recalibrate it on data carrying that kind, see
    :class:`~hybridpot.potential.HybridCalculator`).

    Weights: ``w_r`` enters as a relative precision.  With ``noise_levels="kind"``
    (default) ``noise_[k] = 1 / sqrt(beta_k)`` is the noise of a row of unit weight, and a
    constant weight of a whole label kind is absorbed by that kind's ``beta_k`` (only relative
    weights within a kind change the fit) -- so keep kind weights at 1 (per-structure or
    per-group factors are fine); evidence maximisation then balances kinds by their row
    counts and, with thousands of force rows per energy row, may favour forces over energies
    more than a hand-weighted ridge fit (mlearn Ni, EMT + power spectrum 6/4: test energies
    5.3 meV/atom against 0.44 with ``"shared"`` and an energy weight of 1e5; forces 0.017
    against 0.019 eV/Å).  ``noise_levels="shared"`` has one ``beta`` and keeps
    the user's kind weights as relative precisions: ``noise_[k] = 1 / sqrt(beta mean(w_k))``
    with ``mean(w_k)`` the mean training weight of kind ``k``.  Predictions add ``noise_``.

    The plain path ``fit(A, y, sample_weight=None)`` is ordinary Bayesian ridge regression on
    the columns of ``A`` with one noise level (equal to scikit-learn's ``BayesianRidge`` with
    ``fit_intercept=False`` and zero hyperpriors when ``penalty_scaling="none"``).

    Parameters
    ----------
    quadratic : bool, default=False
        qSNAP-style quadratic feature map.
    noise_groups : bool, default=False
        One noise level per label kind and config group (``StructureBatch.group``).
    noise_levels : {"kind", "shared"}, default="kind"
        ``"kind"``: one precision ``beta_k`` per label kind (the constant weight of a kind is
        then absorbed by its ``beta_k``).  ``"shared"``: one ``beta`` for all kinds (per
        group with ``noise_groups``), the user weights setting the relative precision of
        energy, force and stress rows (FitSNAP-style weighting with a Bayesian posterior).
    penalty_scaling : {"rms", "none"}, default="rms"
        Column scaling ``D`` of the prior precision: the column RMS floored within its block
        (``"rms"``; the rule and its equation are in :class:`LinearRegressor`) or 1
        (``"none"``).
    solver : {"tsqr", "normal"}, default="tsqr"
        Row reduction, as in :class:`LinearRegressor`.
    alpha_init : float or None, default=None
        Initial prior precision (default 1).
    noise_init : float or None, default=None
        Initial noise standard deviation of every kind, in label units (default: the RMS of
        that kind's targets / 10).
    max_iter : int, default=500
        Maximum number of fixed-point iterations.
    tol : float, default=1e-6
        Convergence: largest change of ``log(alpha)``, ``log(beta_k)`` in one iteration
        (the log evidence is flat to ``O(tol**2)`` there).
    accelerate : bool, default=False
        Anderson mixing (memory 3) of the fixed-point iteration in ``log theta``, with a
        safeguard: a step that lowers the evidence is replaced by the plain step.  Often 2-3x
        fewer iterations on large fits (Ni qSNAP: 11 instead of 32); can be slower when a
        noise level runs into its floor (exactly fitted labels).  Not used with a single
        noise level (the SVD-basis iterations cost O(M) each).
    prior_scale : sequence of float or None, default=None
        ``Gamma_k > 0`` per descriptor feature: the prior precision of the coefficient of feature
        ``k`` is multiplied by ``Gamma_k**2`` (for every element; quadratic products
        ``Gamma_k Gamma_l``; bias columns unchanged).  ACEpotentials' smoothness prior:
        ``prior_scale=hybridpot.regression.smoothness_prior(descriptor, p=2)`` penalises high
        radial / angular degrees more.  Plain path: one value per column.
    scale_floor : float in [0, 1], default=1e-3
        Floor ``f`` of the ``"rms"`` column scaling relative to the largest column of its
        element's linear block, as in :class:`LinearRegressor` (0: the plain RMS).

    Attributes
    ----------
    coef_ : ndarray, shape (n_species, P)
        Posterior mean (plain path: shape (n_columns,)).
    sigma_ : ndarray, shape (n_species * P, n_species * P)
        Posterior covariance of the flattened ``coef_``.
    alpha_ : float
        Prior precision (on the scaled coefficients ``b_j D_j c_j``).
    noise_ : dict
        Label kind -> noise standard deviation (eV/atom, eV/Å, eV/Å³; see "Weights" above);
        with ``noise_groups`` kind -> {group name -> sigma}.  Plain path:
        ``{"target": sigma}`` (at unit sample weight).
    log_evidence_ : float
        Log marginal likelihood at the optimum.
    n_iter_ : int
        Fixed-point iterations used.
    precision_factor_ : ndarray, shape (n_species * P, n_species * P) or None
        Upper-triangular ``T`` with posterior precision ``H = T^T T`` (predictive variances
        are ``||T^{-T} a||^2``); None after ``from_coef`` without a covariance.
    penalty_scale_ : ndarray, shape (n_species * P,)
        ``b_j D_j`` of the prior precision.
    n_species_, n_features_in_ : int
    fit_mode_ : {"batch", "plain"}
    """

    has_uncertainty = True

    def __init__(self, *, quadratic=False, noise_groups=False, noise_levels="kind",
                 penalty_scaling="rms", solver="tsqr", alpha_init=None, noise_init=None,
                 max_iter=500, tol=1e-6, accelerate=False, prior_scale=None, scale_floor=1e-3):
        self.scale_floor = scale_floor
        self.prior_scale = prior_scale
        self.quadratic = quadratic
        self.noise_groups = noise_groups
        self.noise_levels = noise_levels
        self.penalty_scaling = penalty_scaling
        self.solver = solver
        self.alpha_init = alpha_init
        self.noise_init = noise_init
        self.max_iter = max_iter
        self.tol = tol
        self.accelerate = accelerate

    def _validate_common(self):
        super()._validate_common()
        owner = type(self).__name__
        self._noise_groups = _check_bool(self.noise_groups, "noise_groups", owner)
        check_choice(self.noise_levels, "noise_levels", ("kind", "shared"), owner)

    def _report_key(self, kind, g, group_names):
        if not self._noise_groups or kind == _PLAIN_KIND:
            return kind
        return (kind, group_names[g] if g < len(group_names) else f"group{g}")

    def _acc_key(self, report_key):
        if self.noise_levels == "kind" or report_key == _PLAIN_KIND:
            return report_key
        return ("shared", report_key[1]) if isinstance(report_key, tuple) else "shared"

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
            Non-negative row weights of the plain path (a StructureBatch carries its own
            ``weights``); default 1.

        Returns
        -------
        self

        Raises
        ------
        hybridpot.InvalidParameterError
            For invalid hyperparameters, batches or arrays (shape, NaN / inf, negative
            weights, ``sample_weight`` with batches).
        hybridpot.MissingLabelsError
            When no row has a positive weight.
        """
        owner = type(self).__name__
        self._validate_common()
        alpha0 = check_float(self.alpha_init, "alpha_init", owner, low=0.0, allow_none=True)
        noise0 = check_float(self.noise_init, "noise_init", owner, low=0.0, allow_none=True)
        for v, name in ((alpha0, "alpha_init"), (noise0, "noise_init")):
            # 1 / noise**2 and the evidence's logs must stay finite
            if v is not None and not 1e-100 <= v <= 1e100:
                raise InvalidParameterError(
                    f"The '{name}' parameter of {owner} must be a float in [1e-100, 1e100] or "
                    f"None. Got {v!r} instead.")
        max_iter = check_int(self.max_iter, "max_iter", owner, low=1)
        accelerate = _check_bool(self.accelerate, "accelerate", owner)
        tol = check_float(self.tol, "tol", owner, low=0.0)
        Rs, D, b2 = self._prepare(batches, y, sample_weight)
        keys = list(Rs)
        M = D.shape[0]
        N = np.array([self._n_rows[k] for k in keys], dtype=np.float64)
        Rk = [Rs[k][0] for k in keys]
        rk = [Rs[k][1] for k in keys]
        dual = sum(R.shape[0] for R in Rk) <= DUAL_ROWS_FRACTION * M
        if len(keys) > 1 and not dual:   # (the single-level path works on the factors)
            Gk = [R.T @ R for R in Rk]
            bk = [R.T @ r for R, r in zip(Rk, rk)]
        else:
            Gk = bk = None
        yy = np.array([r @ r for r in rk])

        alpha = 1.0 if alpha0 is None else alpha0
        if noise0 is not None:
            beta = np.full(len(keys), 1.0 / noise0 ** 2)
        else:
            ms = yy / N
            beta = np.where(ms > 0, 100.0 / np.where(ms > 0, ms, 1.0), 1.0)
        beta_max = _max_noise_precision(yy, N)
        if len(keys) == 1:
            # one noise level: exact O(M) updates in the SVD basis (bounded cost, no
            # per-iteration factorisation of an ill-conditioned H)
            alpha, beta, n_iter, converged, change = self._evidence_svd(
                alpha, beta, Rk[0], rk[0], b2, N, beta_max, max_iter, tol)
        elif accelerate:
            alpha, beta, n_iter, converged, change = self._anderson(
                alpha, beta, Gk, bk, Rk, rk, b2, N, beta_max, M, max_iter, tol)
        else:
            converged = False
            n_iter = 0
            for n_iter in range(1, max_iter + 1):
                m, gamma, rss, _ = self._kind_step(alpha, beta, Gk, bk, Rk, rk, b2)
                wnorm = float(m @ (b2 * m))
                gsum = min(max(gamma.sum(), 1e-12), M - 1e-12)
                alpha_new = _precision_update(gsum, wnorm)
                beta_new = np.maximum(N - gamma, 1e-12) / np.maximum(rss, 1e-300)
                # noise floor (exactly fitted labels): sigma_k >= 1e-8 * RMS(y_k)
                beta_new = np.minimum(beta_new, beta_max)
                change = max(abs(np.log(alpha_new / alpha)),
                             float(np.max(np.abs(np.log(beta_new / beta)))))
                alpha, beta = alpha_new, beta_new
                if change < tol:
                    converged = True
                    break
        if not converged:
            warnings.warn(
                f"{owner}: evidence maximisation did not converge in max_iter={max_iter} "
                f"iterations (last change of log-hyperparameters {change:.3g} > tol={tol:g}); "
                + _non_convergence_advice(keys, beta, beta_max, N, M),
                ConvergenceWarning, stacklevel=2)
        self.n_iter_ = n_iter
        self._finalise(alpha, beta, keys, Rk, rk, N, D, b2)
        return self

    @staticmethod
    def _evidence_svd(alpha, beta, R, r, b2, N, beta_max, max_iter, tol):
        """MacKay fixed point for one noise level, in the SVD basis of the whitened factor.

        With ``R~ = R diag(b)^-1 = U diag(s) V^T`` (thin SVD, computed once) and ``z = U^T r``,
        every quantity of one iteration is a sum over the singular values:
        ``u = beta s z / (beta s^2 + alpha)`` (the scaled posterior mean ``diag(b) m = V u``),
        ``gamma = sum beta s^2 / (beta s^2 + alpha)``, ``||diag(b) m||^2 = ||u||^2`` and
        ``rss = ||r - U z||^2 + sum (alpha z / (beta s^2 + alpha))^2``.  The SVD of the factor
        resolves ``s^2`` down to ``eps^2 s_max^2`` (an eigen-decomposition or Cholesky of
        ``H = beta R^T R + alpha diag(b)^2`` only to ``eps s_max^2``) and ``gamma`` lies in
        ``[0, M]`` by construction, so the iteration stays well defined on ill-conditioned,
        nearly collinear designs; each iteration costs O(M).
        """
        U, sig, _, _ = _whitened_svd([R], b2)
        lam = sig * sig
        z = U.T @ r
        rss_perp = float(np.sum((r - U @ z) ** 2))
        M = b2.shape[0]
        beta = float(beta[0])
        n_rows, b_max = float(N[0]), float(beta_max[0])
        converged = False
        change = np.inf
        n_iter = 0
        for n_iter in range(1, max_iter + 1):
            den = beta * lam + alpha
            gamma = float(np.sum(beta * lam / den))
            u = beta * sig * z / den
            wnorm = float(u @ u)
            rss = rss_perp + float(np.sum((alpha * z / den) ** 2))
            gsum = min(max(gamma, 1e-12), M - 1e-12)
            alpha_new = _precision_update(gsum, wnorm)
            # noise floor (exactly fitted labels): sigma >= 1e-8 * RMS(y)
            beta_new = min(max(n_rows - gamma, 1e-12) / max(rss, 1e-300), b_max)
            change = max(abs(np.log(alpha_new / alpha)), abs(np.log(beta_new / beta)))
            alpha, beta = alpha_new, beta_new
            if change < tol:
                converged = True
                break
        return alpha, np.array([beta]), n_iter, converged, change

    def _anderson(self, alpha, beta, Gk, bk, Rk, rk, b2, N, beta_max, M, max_iter, tol):
        """Anderson-accelerated fixed-point iteration (see ``accelerate``)."""
        converged = False
        n_iter = 0
        change = np.inf
        n_keys = len(Rk)
        lo = np.r_[np.log(1e-12), np.full(n_keys, -np.inf)]
        hi = np.r_[np.log(1e12), np.log(beta_max)]
        x = np.clip(np.log(np.r_[alpha, beta]), lo, hi)
        hist_x, hist_g = [], []
        best_lev, best_fx = -np.inf, None
        for n_iter in range(1, max_iter + 1):
            alpha, beta = float(np.exp(x[0])), np.exp(x[1:])
            m, gamma, rss, half_logdet = self._kind_step(alpha, beta, Gk, bk, Rk, rk, b2)
            wnorm = float(m @ (b2 * m))
            # log evidence up to constants (safeguard of the accelerated steps)
            lev = (0.5 * (N @ np.log(beta)) + 0.5 * M * np.log(alpha)
                   - 0.5 * (beta @ rss + alpha * wnorm) - half_logdet)
            if lev < best_lev - 1e-10 * abs(best_lev) and hist_x:
                # the extrapolated step lowered the evidence: plain MacKay step from the best
                x, hist_x, hist_g = best_fx, [], []
                continue
            gsum = min(max(gamma.sum(), 1e-12), M - 1e-12)
            alpha_new = _precision_update(gsum, wnorm)
            beta_new = np.maximum(N - gamma, 1e-12) / np.maximum(rss, 1e-300)
            # floors: sigma_k >= 1e-8 * RMS(y_k) (exactly fitted labels), alpha in [1e-12, 1e12]
            fx = np.clip(np.log(np.r_[alpha_new, beta_new]), lo, hi)
            if lev >= best_lev or not hist_x:
                best_lev, best_fx = lev, fx
            g = fx - x
            change = float(np.max(np.abs(g)))
            if change < tol:
                x = fx
                converged = True
                break
            # Anderson acceleration (memory 3) of the MacKay fixed-point map in log space
            hist_x.append(x)
            hist_g.append(g)
            del hist_x[:-4], hist_g[:-4]
            x = fx
            if len(hist_x) >= 2:
                dX = np.diff(np.array(hist_x), axis=0).T
                dG = np.diff(np.array(hist_g), axis=0).T
                coef_a = np.linalg.lstsq(dG, g, rcond=1e-10)[0]
                x = np.clip(hist_x[-1] + g - (dX + dG) @ coef_a, lo, hi)
        alpha, beta = float(np.exp(x[0])), np.exp(x[1:])
        return alpha, beta, n_iter, converged, change

    def _kind_step(self, alpha, beta, Gk, bk, Rk, rk, b2):
        """One evaluation of the several-noise-level fixed point at ``(alpha, beta)``.

        Returns the scaled posterior mean ``m``, ``gamma_k = beta_k tr(H^-1 G_k)``, the
        residual sums of squares ``rss_k`` and ``log det(H) / 2`` of
        ``H = alpha diag(b2) + sum_k beta_k R_k^T R_k``.  With the Gram matrices ``Gk``
        (``None`` when the rows are few: :data:`DUAL_ROWS_FRACTION`) from the Cholesky factor
        ``L`` of ``H``, ``gamma_k = beta_k |L^-1 R_k^T|_F^2``; otherwise from the thin SVD
        ``U diag(s) V^T`` of the whitened rows ``A = [sqrt(beta_k) R_k] diag(b2)^-1/2``
        (``n_rows < M``): ``H = S (alpha I + A^T A) S``, ``m = S^-1 V (s / (s^2 + alpha))
        U^T c``, ``gamma_k = sum_i s_i^2 |U_k[:, i]|^2 / (s_i^2 + alpha)`` (the rows of block
        ``k`` lie in the row space of ``A``) and
        ``log det H = sum log b2 + sum log(s_i^2 + alpha) + (M - len(s)) log alpha``.
        """
        nk = len(Rk)
        rss = np.empty(nk)
        gamma = np.empty(nk)
        if Gk is not None:
            m, L = self._solve_scaled(alpha, beta, Gk, bk, b2)
            for q in range(nk):
                # tr(H^-1 G_k) = |L^-1 R_k^T|_F^2, a sum of squares: the elementwise sum of
                # H^-1 * G_k cancels where H^-1 is huge along directions the rows do not
                # touch (the per-element constants at one fixed composition, whose prior is
                # BIAS_RELATIVE_PENALTY weak), and its rounding kept the iteration from
                # converging
                Z = scipy.linalg.solve_triangular(L, Rk[q].T, lower=True, check_finite=False)
                gamma[q] = beta[q] * float(np.sum(Z * Z))
            half_logdet = float(np.sum(np.log(np.diag(L))))
        else:
            sq = np.sqrt(beta)
            U, sv, Vt, sb = _whitened_svd([sq[q] * Rk[q] for q in range(nk)], b2)
            m = _ridge_from_svd(U, sv, Vt, sb,
                                np.concatenate([sq[q] * rk[q] for q in range(nk)]), alpha)
            d = sv * sv + alpha
            w = sv * sv / d
            start = 0
            for q in range(nk):
                stop = start + Rk[q].shape[0]
                gamma[q] = float(np.sum((U[start:stop] ** 2) @ w))
                start = stop
            half_logdet = 0.5 * float(np.sum(np.log(b2)) + np.sum(np.log(d))
                                      + (b2.shape[0] - sv.shape[0]) * np.log(alpha))
        for q in range(nk):
            res = Rk[q] @ m - rk[q]
            rss[q] = res @ res
        return m, gamma, rss, half_logdet

    @staticmethod
    def _solve_scaled(alpha, beta, Gk, bk, b2):
        H = alpha * np.diag(b2)
        rhs = np.zeros(b2.shape[0])
        for bq, G, bv in zip(beta, Gk, bk):
            H += bq * G
            rhs += bq * bv
        L = _cholesky_shifted(H)
        z = scipy.linalg.solve_triangular(L, rhs, lower=True, check_finite=False)
        m = scipy.linalg.solve_triangular(L, z, lower=True, trans="T", check_finite=False)
        return m, L

    def _finalise(self, alpha, beta, keys, Rk, rk, N, D, b2):
        M = D.shape[0]
        T = None
        if self.solver == "normal":
            # Gram-based factors: the Cholesky factor of H is as accurate and much cheaper
            H = alpha * np.diag(b2)
            g = np.zeros(M)
            for bq, R, r in zip(beta, Rk, rk):
                H += bq * (R.T @ R)
                g += bq * (R.T @ r)
            try:
                T = np.linalg.cholesky(H).T
                m = scipy.linalg.solve_triangular(
                    T, scipy.linalg.solve_triangular(T, g, trans="T", check_finite=False),
                    check_finite=False)
            except np.linalg.LinAlgError:
                T = None
        if T is None:
            blocks = [np.sqrt(bq) * R for bq, R in zip(beta, Rk)]
            blocks.append(np.diag(np.sqrt(alpha * b2)))
            rhs = np.concatenate([np.sqrt(bq) * r for bq, r in zip(beta, rk)] + [np.zeros(M)])
            Q, T = scipy.linalg.qr(np.vstack(blocks), mode="economic", check_finite=False)
            m = scipy.linalg.solve_triangular(T, Q.T @ rhs, check_finite=False)
            # rows signed so that diag(T) >= 0: the unique (Cholesky) factor of H, so that
            # sample_coef's draws do not depend on the QR's sign choices, which change with
            # the order of the training structures
            T = T * np.where(np.diag(T) < 0.0, -1.0, 1.0)[:, None]
        # log evidence (scaled variables; the D-dependent terms cancel exactly)
        rss = np.array([np.sum((R @ m - r) ** 2) for R, r in zip(Rk, rk)])
        E = float(beta @ rss + alpha * (m @ (b2 * m)))
        slw = sum(self._sum_log_w[k] for k in keys)
        logdetH = 2.0 * np.sum(np.log(np.abs(np.diag(T))))
        self.log_evidence_ = float(
            0.5 * (N @ np.log(beta)) + 0.5 * slw + 0.5 * M * np.log(alpha)
            + 0.5 * np.sum(np.log(b2)) - 0.5 * E - 0.5 * logdetH
            - 0.5 * N.sum() * np.log(2 * np.pi))
        self.alpha_ = float(alpha)
        beta_of = dict(zip(keys, beta))
        # "kind": noise of a row of unit weight, 1/sqrt(beta_k); "shared": the kind weight is
        # part of the noise model, sigma_k = 1/sqrt(beta * mean training weight of the kind)
        shared = self.noise_levels == "shared"
        self._noise = {rk: float(1.0 / np.sqrt(beta_of[self._acc_key(rk)]
                                               * (ws / wc if shared else 1.0)))
                       for rk, (ws, wc) in self._wstats.items() if wc > 0}
        self._set_noise_dict()
        coef = m / D
        self.coef_ = coef.reshape(self.n_species_, -1) if self.fit_mode_ == "batch" else coef
        # upper-triangular factor of the precision in the original variables: H = T'^T T'
        self.precision_factor_ = T * D[None, :]
        self._set_sigma()

    def _set_noise_dict(self):
        noise = {}
        for k, s in self._noise.items():
            if isinstance(k, tuple):
                noise.setdefault(k[0], {})[k[1]] = s
            else:
                noise[k] = s
        self.noise_ = noise

    def _set_sigma(self):
        T = self.precision_factor_
        Ti = scipy.linalg.solve_triangular(T, np.eye(T.shape[0]), check_finite=False)
        self.sigma_ = Ti @ Ti.T

    def _param_variance(self, A):
        A = np.asarray(A, dtype=np.float64)
        if A.shape[0] == 0 or self.precision_factor_ is None:
            return np.zeros(A.shape[0])
        out = np.empty(A.shape[0])
        step = max(1, CHUNK_BYTES // (8 * max(1, A.shape[1])))   # rows per block
        for r0 in range(0, A.shape[0], step):   # blocks of rows: V is one block
            V = scipy.linalg.solve_triangular(self.precision_factor_, A[r0:r0 + step].T,
                                              trans="T", check_finite=False)
            out[r0:r0 + step] = np.einsum("ij,ij->j", V, V)
        return out

    def _noise_of(self, kind, group_name):
        v = self.noise_.get(kind)
        if v is None:
            return 0.0
        if isinstance(v, dict):
            return v.get(group_name, max(v.values()))
        return v

    def _noise_vector(self, kind, group):
        group = np.asarray(group, dtype=np.int64)
        names = self.group_names_
        uniq, inv = np.unique(group, return_inverse=True)
        vals = np.array([self._noise_of(kind, names[g] if 0 <= g < len(names) else f"group{g}")
                         for g in uniq], dtype=np.float64)   # loop over groups, not rows
        return vals[inv.reshape(-1)] if group.size else np.zeros(0)

    @classmethod
    def from_coef(cls, coef, *, quadratic=False, covariance=None, noise=None):
        """A fitted regressor from coefficients (SNAP / qSNAP layout) and optional posterior.

        Parameters
        ----------
        coef : array_like, shape (n_species, P)
        quadratic : bool, default=False
            Whether ``coef`` holds the quadratic block.
        covariance : array_like, shape (n_species * P, n_species * P), optional
            Posterior covariance of the flattened coefficients (symmetric positive definite).
            Without it the parameter part of the predictive variance is zero.
        noise : dict, optional
            Label kind -> noise standard deviation (``"energy"`` eV/atom, ``"forces"`` eV/Å,
            ``"stress"`` eV/Å³); a kind left out has no noise part.

        Returns
        -------
        BayesianLinearRegressor
            Fitted (``alpha_`` and ``log_evidence_`` are NaN).

        Raises
        ------
        hybridpot.InvalidParameterError
            For ``coef`` that is not a finite 2-D array of a valid width, a negative noise, or
            a ``covariance`` of the wrong shape, not symmetric or not positive definite.
        """
        self = cls(quadratic=quadratic)
        LinearRegressor._from_coef(self, coef)
        M = self.coef_.size
        owner = cls.__name__
        self.alpha_ = float("nan")
        self.log_evidence_ = float("nan")
        self.n_iter_ = 0
        self._noise = {}
        if noise is not None:
            for k, s in dict(noise).items():
                self._noise[k] = check_float(s, f"noise[{k!r}]", owner, low=0.0)
        self._set_noise_dict()
        if covariance is None:
            self.precision_factor_ = None
            self.sigma_ = np.zeros((M, M))
            return self
        C = np.array(covariance, dtype=np.float64)
        if C.shape != (M, M) or not np.all(np.isfinite(C)) or not np.allclose(C, C.T):
            raise InvalidParameterError(
                f"The 'covariance' argument of {owner}.from_coef must be a finite symmetric "
                f"matrix of shape {(M, M)}. Got shape {C.shape} instead.")
        try:
            Lc = np.linalg.cholesky(C)
        except np.linalg.LinAlgError as exc:
            raise InvalidParameterError(
                f"The 'covariance' argument of {owner}.from_coef must be positive definite."
            ) from exc
        # Sigma = Lc Lc^T  ->  H = Lc^{-T} Lc^{-1};  upper factor T with H = T^T T
        Li = scipy.linalg.solve_triangular(Lc, np.eye(M), lower=True)
        self.precision_factor_ = np.linalg.cholesky(Li.T @ Li).T
        self.sigma_ = C
        return self

    def sample_coef(self, n_samples, *, random_state=None):
        """Coefficient draws from the Gaussian weight posterior ``N(coef_, sigma_)``.

        ACEpotentials' committee: each draw is a member potential (e.g.
        ``BayesianLinearRegressor.from_coef(draw)`` in a copy of the model); the spread of
        the members' predictions estimates the parameter part of the predictive variance
        (the observation noise ``noise_`` is not part of it).  Drawn through the precision
        factor, ``c = coef_ + T^{-1} z`` with ``z ~ N(0, I)`` (exact also when ``sigma_`` is
        ill-conditioned).  Columns an ARD fit pruned (``active_``) are exactly 0 in every
        draw.

        Parameters
        ----------
        n_samples : int
            Number of draws, >= 1.
        random_state : None, int, numpy Generator or RandomState, default=None
            Seeds the draws.

        Returns
        -------
        ndarray, shape (n_samples, n_species, P)
            Draws in the layout of ``coef_`` (plain path: (n_samples, n_columns)).

        Raises
        ------
        hybridpot.NotFittedError
            Before fit.
        hybridpot.InvalidParameterError
            For a bad ``n_samples`` / ``random_state``, or a model without a posterior
            covariance (``from_coef`` without ``covariance``).
        """
        from .._validation import check_random_state_param

        owner = f"{type(self).__name__}.sample_coef"
        self._check_fitted()
        n = check_int(n_samples, "n_samples", owner, low=1)
        rng = check_random_state_param(random_state, owner)
        if not isinstance(rng, (np.random.Generator, np.random.RandomState)):
            rng = np.random.default_rng(rng)   # None or a seed (a Generator is used as given)
        T = self.precision_factor_
        if T is None:
            raise InvalidParameterError(
                f"{owner} needs a posterior covariance; this model was made by from_coef "
                "without 'covariance'.")
        z = rng.standard_normal((T.shape[0], n))
        draws = scipy.linalg.solve_triangular(T, z, check_finite=False).T + self._coef_flat
        active = getattr(self, "active_", None)
        if active is not None:   # ARD: pruned columns are exactly 0 in every draw, as in coef_
            draws[:, ~np.asarray(active, dtype=bool)] = 0.0
        return draws.reshape((n,) + np.shape(self.coef_))

    def get_fitted_state(self):
        """``(state, arrays)``: JSON-able dict and ndarrays of the fitted posterior."""
        self._check_fitted()
        state, arrays = self._base_state()
        state.update({"alpha_": self.alpha_, "log_evidence_": self.log_evidence_,
                      "n_iter_": int(self.n_iter_), "noise_": self.noise_})
        if self.precision_factor_ is not None:
            arrays["precision_factor"] = np.asarray(self.precision_factor_).copy()
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
        from .._exceptions import ModelFormatError

        self._validate_common()
        self._set_base_state(state, arrays)
        try:
            self.alpha_ = float(state["alpha_"])
            self.log_evidence_ = float(state["log_evidence_"])
            self.n_iter_ = int(state["n_iter_"])
            noise = dict(state["noise_"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelFormatError(
                f"Fitted state of {type(self).__name__} is incomplete or corrupt: {exc!r}.") \
                from exc
        self._noise = {}
        for kind, v in noise.items():
            if isinstance(v, dict):
                for g, s in v.items():
                    self._noise[(kind, g)] = float(s)
            else:
                self._noise[kind] = float(v)
        if not all(np.isfinite(v) and 0.0 < v < 1e100 for v in self._noise.values()):
            raise ModelFormatError(
                f"Fitted state of {type(self).__name__}: 'noise_' values must be finite and in "
                f"(0, 1e100). Got {noise}.")
        self._set_noise_dict()
        T = arrays.get("precision_factor")
        M = self.coef_.size
        if T is None:
            self.precision_factor_ = None
            self.sigma_ = np.zeros((M, M))
        else:
            T = np.asarray(T, dtype=np.float64)
            if T.shape != (M, M):
                raise ModelFormatError(
                    f"Fitted state of {type(self).__name__}: 'precision_factor' has shape "
                    f"{T.shape}, expected {(M, M)}.")
            self.precision_factor_ = T
            self._set_sigma()
        return self
