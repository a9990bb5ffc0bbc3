r"""Choosing the next structures to label: uncertainty, D-optimal batches, information per cost.

Given a fitted :class:`~hybridpot.HybridPotential` and a pool of unlabelled candidate
structures, a selector returns the indices of the ``n`` candidates to send to the oracle
(DFT, EMT, ...).

Linear-Gaussian picture
-----------------------
For linear models (:class:`~hybridpot.regression.BayesianLinearRegressor`) the weights have a
Gaussian posterior with covariance ``Sigma`` (``regressor_.sigma_``, shape (M, M)).  A
candidate ``c`` contributes design rows ``A_c`` (:mod:`hybridpot.regression._design`): one
per-atom energy row (eV/atom per weight) and/or ``3 N_c`` force rows (eV/Å per weight), each
divided by its label noise ``sigma_kind`` (``regressor_.noise_``) so that the rows are
whitened: ``B_c = diag(1/sigma) A_c``.  Then

- predictive variance of a label (parameter part): ``a^T Sigma a``;
- expected information gain of labelling ``c`` (mutual information between its labels and the
  weights, nats)

  .. math::  \mathrm{EIG}_c = \tfrac12 \log\det(I + B_c \Sigma B_c^T);

- after labelling ``c`` the posterior becomes
  ``Sigma' = Sigma - Sigma B_c^T (I + B_c Sigma B_c^T)^{-1} B_c Sigma`` (a rank-``r_c``
  update: rank one for an energy row; ``B_c`` is first compressed to its ``R`` factor, at most
  ``M`` rows, which leaves ``B_c^T B_c`` and therefore every quantity above unchanged).

Numerically the update is carried in the whitened weight space of the precision factor
``T`` (``H = T^T T``, ``Sigma = T^{-1} T^{-T}``): rows become ``C_c = B_c T^{-1}``, the
conditioned precision is ``W = I + sum_chosen C^T C = R^T R`` (eigenvalues >= 1; its
triangular factor ``R`` is updated by a QR of ``[R; C_c]`` after every pick, so ``C^T C`` is
never formed) and ``EIG_c = 1/2 log det(I + C_c W^{-1} C_c^T)``.  ``Sigma`` itself, whose
condition number is the square of ``T``'s (nearly unpenalised bias columns), is never
formed.

The greedy D-optimal batch picks ``argmax_c EIG_c`` under the current ``Sigma``, conditions
``Sigma`` on it, and repeats: ``sum EIG`` is the log-det gain of the posterior precision, and a
structure whose rows lie in directions already constrained (by the training set or by earlier
picks) has a small gain, so batches spread over the directions the data do not yet constrain.
:class:`InformationPerCostSelector` ranks by ``EIG_c / cost(c)`` with
``cost = N_c**3`` by default (DFT scaling), so cheap small cells are preferred at equal
information.

Sparse GP
---------
The DTC (projected-process) :class:`~hybridpot.regression.SparseGPRegressor` is Bayesian
linear regression in the kernel basis, so the same machinery applies to its weights
``(w, b, beta)`` (kernel weights, per-element constants, optional ``linear_features`` block):
the rows ``A_c`` are those of ``regressor_.design_rows`` (the total-energy row divided by
``N_c``, force rows as above) and ``T`` is ``regressor_.precision_factor_`` (``H_w = T^T T``
in the weight space of ``coef_``); the dense ``(M, M)`` covariance is never formed.  Only the
weight-space (projected-process) part of the GP's predictive variance is conditioned on the
picks: the DTC diagonal term ``alpha^{-1}(k_LL - a^T K^{-1} a)`` (prior minus its Nyström
projection, which grows away from the inducing set) is neither part of ``EIG_c`` nor of the
variance that :class:`VarianceReductionSelector` reduces, because it does not change when
labels are added at fixed inducing points.  :class:`MaxVarianceSelector`, which conditions
nothing, keeps ranking GP candidates by the full predictive variance of
``model.predict*(return_std=True)`` (DTC term and noise included): the weight-space part
alone strongly underestimates the force variance away from the inducing set.

Regressors without a covariance (e.g. :class:`~hybridpot.regression.NeuralNetworkRegressor`
ensembles, or a model with a committee ``uncertainty_``) use the predictive σ of
``model.predict / predict_forces(return_std=True)`` instead: max-variance works unchanged; the
D-optimal and information-per-cost selectors then score ``EIG_c ~ 1/2 sum_rows log(1 +
sigma_row^2 / sigma_noise^2)`` without conditioning (no covariance to update) and rely on
deduplication for diversity.

Deduplication
-------------
Two structures are near-duplicates when the symmetric Hausdorff distance between their sets of
per-atom environments (descriptors divided by the per-feature RMS over the pool, distance divided
by ``sqrt(n_features)``) is below ``dedup_threshold``: every environment of one has a
near-identical environment in the other.  Selectors with ``dedup_threshold`` skip candidates
that duplicate an already chosen one (and ``exclude_structures``, e.g. the training set).
This matters for a deterministic oracle, which returns the same labels for the same structure:
under the independent-noise model of the posterior a second copy would still count as new
information.

Misspecified models
-------------------
All criteria above trust the model.  When its error is dominated by bias (small descriptors,
linear models), they favour the structures with the largest descriptor gradients and shift
the training mixture away from the distribution of use, which can make the test error *worse*
than random selection.  :class:`StratifiedSelector` wraps any of them: it clusters the pool
(fingerprints of the per-atom descriptors), gives each cluster its share of the labels, and
lets the inner criterion choose within the cluster.

Measured on the mlearn Ni pool (263 structures of 107-108 atoms; ``PowerSpectrum(n_max=4,
l_max=3)``, 41 weights; ``benchmarks/active_learning.py``): maximum force variance (mean or
max over atoms), greedy D-optimal and variance-reduction batches (whose sum over a structure
and conditioning within the batch already give diversity) all pick the same hottest AIMD
frames (force RMS 1.8-2.1 eV/Å against a median of 0.9 eV/Å).  The parameter variance is not
swamped by the noise term (after 2 structures: mean parameter variance 0.015 eV²/Å², fitted
noise variance 4e-5 eV²/Å²); the variance is simply largest where the descriptor gradients
are, which is also where the bias is (the full-pool model's force MAE on those frames is
0.073 eV/Å, 0.036 eV/Å over all AIMD frames), so the fit shifts toward them and the test
force MAE *rises* with more labels (D-optimal: 0.025 -> 0.028 eV/Å from 6 to 30 labels).
Stratification removes that failure: it is the default of
:class:`~hybridpot.learn.ActiveLearner`.

Everything is deterministic; :class:`RandomSelector` and the k-means of
:class:`StratifiedSelector` take a ``random_state``.
"""

from __future__ import annotations

import numbers

import numpy as np
import scipy.linalg

from .._exceptions import InvalidParameterError, NotFittedError
from .._validation import (check_choice, check_float, check_int, check_structure_list,
                           species_indices)
from ._calibration import check_model_with_uncertainty

__all__ = ["MaxVarianceSelector", "DOptimalSelector", "InformationPerCostSelector",
           "VarianceReductionSelector", "StratifiedSelector", "FacilityLocationSelector",
           "RandomSelector",
           "structure_fingerprints", "SELECTORS", "make_selector", "candidate_rows", "deduplicate",
           "environment_distance"]

_KINDS = ("energy", "forces", "both")


# ---------------------------------------------------------------------------- helpers
def _check_model(model, owner):
    if not hasattr(model, "regressor_"):
        raise NotFittedError(
            f"{owner}.select needs a fitted HybridPotential (call fit first). "
            f"Got an unfitted {type(model).__name__}.")


def _check_pool(pool, owner):
    return check_structure_list(pool, f"The 'pool' argument of {owner}.select",
                                allow_empty=True)


def _check_select(owner, model, pool, n):
    """Validated ``(pool as a list, n)`` of ``owner.select(model, pool, n)``."""
    _check_model(model, owner)
    return _check_pool(pool, owner), check_int(n, "n", f"{owner}.select", low=1)


def _is_sparse_gp(reg):
    from ..regression._gp import SparseGPRegressor

    return isinstance(reg, SparseGPRegressor)


def _has_covariance(model):
    """Whether the selectors can condition on a Gaussian weight posterior.

    True for a batch-fitted linear regressor with ``sigma_`` and ``precision_factor_``
    (unchanged), and for a fitted :class:`~hybridpot.regression.SparseGPRegressor` through its
    ``precision_factor_`` alone (its ``(M, M)`` covariance is never formed).  False when the
    model carries a committee ``uncertainty_``.
    """
    reg = model.regressor_
    if getattr(model, "uncertainty_", None) is not None \
            or getattr(reg, "precision_factor_", None) is None:
        return False
    if _is_sparse_gp(reg):
        return True
    return (getattr(reg, "sigma_", None) is not None
            and getattr(reg, "fit_mode_", "batch") == "batch")


def _single_batch(model, atoms, gradients):
    from ..potential import _volume
    from ..regression._base import StructureBatch

    z = species_indices(atoms, model.species_, "HybridPotential")
    if gradients:
        X, dX = model.descriptor.compute(atoms, gradients=True)
    else:
        X, dX = model.descriptor.compute(atoms), None
    n = len(atoms)
    return StructureBatch(
        X=X, species=z, structure=np.zeros(n, dtype=np.int64), gradients=dX,
        volume=np.array([_volume(atoms)]), energy=np.full(1, np.nan),
        forces=np.full((n, 3), np.nan), stress=np.full((1, 6), np.nan), weights={},
        group=np.zeros(1, dtype=np.int64), index=np.array([0]))


def _noise(reg, kind):
    v = getattr(reg, "noise_", {}).get(kind)
    if v is None:
        return 1.0
    if isinstance(v, dict):
        v = max(v.values())
    v = float(v)
    return v if v > 0 and np.isfinite(v) else 1.0


def candidate_rows(model, atoms, kind="forces", *, whiten=True):
    """Design rows of one candidate structure for a fitted linear model or sparse GP.

    Parameters
    ----------
    model : HybridPotential
        Fitted, with a linear regressor (``quadratic`` honoured) or a
        :class:`~hybridpot.regression.SparseGPRegressor` (rows from its
        :meth:`~hybridpot.regression.SparseGPRegressor.design_rows`).
    atoms : ase.Atoms
    kind : {"energy", "forces", "both"}, default="forces"
        ``"energy"``: one per-atom energy row (``sum_i phi_i / N``, eV/atom per weight; for
        the GP the total-energy row of ``design_rows`` divided by ``N``);
        ``"forces"``: ``3 N`` force rows (eV/Å per weight, row ``3 k + a`` is ``F_k[a]``);
        ``"both"``: stacked.
    whiten : bool, default=True
        Divide each row by the fitted noise σ of its kind (``regressor_.noise_``), making the
        rows dimensionless information rows.

    Returns
    -------
    ndarray, shape (n_rows, M)
        Linear: ``M = n_species * P`` columns in the layout of ``regressor_.sigma_``; GP:
        ``M = len(regressor_.coef_)`` columns (kernel weights, per-element constants, then the
        optional linear block).  ``rows @ coef_`` is the ML part of the predicted per-atom
        energy (without reference energies and baseline) and of the forces (``coef_``
        flattened for the linear model).
    """
    from ..regression._design import energy_rows, pair_rows

    reg = model.regressor_
    want_f = kind in ("forces", "both")
    batch = _single_batch(model, atoms, gradients=want_f)
    if _is_sparse_gp(reg):
        return _gp_candidate_rows(reg, batch, len(atoms), kind, whiten)
    nsp, quad = reg.n_species_, bool(reg.quadratic)
    rows = []
    if kind in ("energy", "both"):
        r = energy_rows(batch, nsp, quad)
        rows.append(r / _noise(reg, "energy") if whiten else r)
    if want_f:
        r, _ = pair_rows(batch, nsp, quad, forces=True, stress=False)
        rows.append(r / _noise(reg, "forces") if whiten else r)
    return np.vstack(rows)


def _gp_candidate_rows(reg, batch, n_atoms, kind, whiten):
    """:func:`candidate_rows` of a sparse GP from ``reg.design_rows`` (layout of ``coef_``)."""
    want_e, want_f = kind in ("energy", "both"), kind in ("forces", "both")
    Er, Fr, _ = reg.design_rows(batch, forces=want_f, stress=False)
    rows = []
    if want_e:
        r = Er / max(n_atoms, 1)          # total-energy row -> per-atom energy row (eV/atom)
        rows.append(r / _noise(reg, "energy") if whiten else r)
    if want_f:
        rows.append(Fr / _noise(reg, "forces") if whiten else Fr)
    return np.vstack(rows)


def _compress(B):
    """An R factor with ``R^T R = B^T B`` and at most ``M`` rows."""
    if B.shape[0] <= B.shape[1]:
        return B
    return scipy.linalg.qr(B, mode="r", check_finite=False)[0][:B.shape[1]]


def _whiten(model, B):
    """Rows ``C = B T^{-1}`` in the whitened weight space (``Sigma = T^{-1} T^{-T}``)."""
    T = model.regressor_.precision_factor_
    return scipy.linalg.solve_triangular(T, B.T, trans="T", check_finite=False).T


def _eig(C, R):
    """``0.5 logdet(I + C_c W^{-1} C_c^T)`` per candidate, ``W = R^T R`` (whitened precision)."""
    out = np.empty(len(C))
    for k, Ck in enumerate(C):
        G = scipy.linalg.solve_triangular(R, Ck.T, trans="T", check_finite=False)
        K = G.T @ G
        K[np.diag_indices_from(K)] += 1.0
        sign, ld = np.linalg.slogdet(K)
        out[k] = 0.5 * ld if sign > 0 else 0.0
    return out


def _environments(model, structures):
    return [np.asarray(model.descriptor.compute(a), dtype=np.float64) for a in structures]


def environment_distance(XA, XB):
    """Symmetric Hausdorff distance between two sets of (scaled) per-atom descriptors.

    Parameters
    ----------
    XA : ndarray, shape (n_a, F)
        Per-atom descriptors of one structure (scaled, e.g. by the per-feature RMS).
    XB : ndarray, shape (n_b, F)
        Those of the other structure.

    Returns
    -------
    float
        ``max(max_a min_b |x_a - x_b|, max_b min_a |x_a - x_b|) / sqrt(F)``.
    """
    d2 = np.empty((XA.shape[0], XB.shape[0]))
    step = max(1, 4096 // max(1, XB.shape[0]))
    for a in range(0, XA.shape[0], step):  # chunks of centres; exact differences (no cancellation)
        diff = XA[a:a + step, None, :] - XB[None, :, :]
        d2[a:a + step] = np.einsum("ijk,ijk->ij", diff, diff)
    h = max(float(np.sqrt(d2.min(axis=1).max())), float(np.sqrt(d2.min(axis=0).max())))
    return h / np.sqrt(XA.shape[1])


def _scale(envs):
    allX = np.vstack(envs)
    s = np.sqrt(np.mean(allX ** 2, axis=0))
    s[~(s > 0)] = 1.0
    return [X / s for X in envs]


def _composition(atoms):
    return tuple(sorted(atoms.get_chemical_symbols()))


def deduplicate(model, structures, threshold=1e-3):
    """Indices of the structures kept after removing near-duplicates (first one kept).

    Parameters
    ----------
    model : HybridPotential or Descriptor
        Supplies the descriptor (fitted or not).
    structures : list of ase.Atoms
        Candidates, in priority order (the first of duplicates is kept).
    threshold : float, default=1e-3
        Scaled environment distance (see :func:`environment_distance`; descriptors divided
        by their per-feature RMS over ``structures``) below which two structures of the same
        composition are duplicates.

    Returns
    -------
    ndarray of int64
        Sorted indices of the kept structures.
    """
    threshold = check_float(threshold, "threshold", "deduplicate", low=0.0,
                            low_inclusive=True)
    structures = _check_pool(structures, "deduplicate")
    desc = getattr(model, "descriptor", model)
    envs = _scale([np.asarray(desc.compute(a), dtype=np.float64) for a in structures])
    comp = [_composition(a) for a in structures]
    kept = []
    for k in range(len(structures)):
        if not any(comp[j] == comp[k] and environment_distance(envs[j], envs[k]) <= threshold
                   for j in kept):
            kept.append(k)
    return np.asarray(kept, dtype=np.int64)


class _Selector:
    """Shared validation and deduplication of the selectors (not public)."""

    def _validate_common(self):
        owner = type(self).__name__
        check_choice(self.kind, "kind", _KINDS, owner)
        check_float(self.dedup_threshold, "dedup_threshold", owner, low=0.0,
                    low_inclusive=True, allow_none=True)

    def _check_n(self, n, pool):
        return check_int(n, "n", f"{type(self).__name__}.select", low=1)

    def _nothing_to_select(self):
        """Result of ``select`` on an empty pool: no index (``scores_`` / ``gains_`` empty)."""
        self.scores_ = np.zeros(0)
        self.gains_ = np.zeros(0)
        return np.zeros(0, dtype=np.int64)

    def _dedup_state(self, model, pool, exclude_structures):
        if self.dedup_threshold is None:
            return None
        extra = list(exclude_structures or [])
        envs = _scale(_environments(model, pool + extra))
        comp = [_composition(a) for a in pool + extra]
        return {"envs": envs, "comp": comp, "chosen": list(range(len(pool),
                                                                 len(pool) + len(extra)))}

    def _is_dup(self, st, k):
        if st is None:
            return False
        return any(st["comp"][j] == st["comp"][k]
                   and environment_distance(st["envs"][j], st["envs"][k])
                   <= self.dedup_threshold for j in st["chosen"])

    def _ranked_pick(self, scores, n, st):
        """Highest scores first (ties: lower index), skipping duplicates."""
        order = np.lexsort((np.arange(scores.shape[0]), -scores))
        out = []
        for k in order:
            if len(out) == n:
                break
            if self._is_dup(st, int(k)):
                continue
            out.append(int(k))
            if st is not None:
                st["chosen"].append(int(k))
        return np.asarray(out, dtype=np.int64)


    def _greedy_pick(self, C, n, cost, st, gain):
        """Greedy batch over whitened candidate rows ``C`` with posterior conditioning.

        ``gain(R, avail)`` returns the gain of every candidate given the upper factor ``R`` of
        the whitened posterior precision; the best gain per unit ``cost`` is taken (first
        maximum: deterministic), duplicates are skipped, and ``R`` is updated by a QR of
        ``[R; C_k]``.  Sets ``scores_`` (first-round gain / cost) and ``gains_``.
        """
        M = C[0].shape[1]
        R = np.eye(M)
        avail = np.ones(len(C), dtype=bool)
        chosen, gains = [], []
        while len(chosen) < n and avail.any():
            g = gain(R, avail)
            if not chosen:
                self.scores_ = g / cost
            score = np.where(avail, g / cost, -np.inf)
            k = int(np.argmax(score))
            avail[k] = False
            if self._is_dup(st, k):
                continue
            chosen.append(k)
            gains.append(g[k])
            if st is not None:
                st["chosen"].append(k)
            R = scipy.linalg.qr(np.vstack([R, C[k]]), mode="r", check_finite=False)[0][:M]
        self.gains_ = np.asarray(gains)
        return np.asarray(chosen, dtype=np.int64)


class MaxVarianceSelector(_Selector):
    r"""Pick the candidates with the largest predictive variance.

    Score of a structure with ``N`` atoms (parameter part ``a^T Sigma a`` for linear models,
    else the full predictive variance of ``model.predict*(return_std=True)``):

    - ``kind="energy"``: variance of the energy per atom, ``(σ_E / N)^2`` (eV²/atom²);
    - ``kind="forces"``: mean (``reduce="mean"``) or maximum (``reduce="max"``) of the
      force-component variances ``σ_F^2`` (eV²/Å²);
    - ``kind="both"``: the sum of the two above after dividing each by its noise variance.

    Parameters
    ----------
    kind : {"energy", "forces", "both"}, default="forces"
        Which variance scores a candidate (see above).
    reduce : {"mean", "max"}, default="mean"
        How the force-component variances of a structure are combined.
    dedup_threshold : float or None, default=1e-3
        Skip candidates that duplicate an already chosen one: scaled descriptor distance
        below which two structures are duplicates (see :func:`deduplicate`); None disables
        the check.

    Attributes
    ----------
    scores_ : ndarray, shape (n_pool,)
        Score of every candidate at the last :meth:`select`.
    """

    def __init__(self, *, kind="forces", reduce="mean", dedup_threshold=1e-3):
        self.kind = kind
        self.reduce = reduce
        self.dedup_threshold = dedup_threshold

    def _row_scores(self, model, pool):
        red = np.mean if self.reduce == "mean" else np.max
        reg = model.regressor_
        out = np.empty(len(pool))
        if _has_covariance(model) and not _is_sparse_gp(reg):
            # parameter part a^T Sigma a; the sparse GP keeps its full predictive (DTC)
            # variance below: nothing is conditioned here, and its weight-space part alone
            # strongly underestimates the force variance away from the inducing set
            T = reg.precision_factor_
            for k, a in enumerate(pool):
                parts = []
                kinds = ("energy", "forces") if self.kind == "both" else (self.kind,)
                for kd in kinds:
                    A = candidate_rows(model, a, kd, whiten=self.kind == "both")
                    V = scipy.linalg.solve_triangular(T, A.T, trans="T", check_finite=False)
                    parts.append(red(np.einsum("ij,ij->j", V, V)))
                out[k] = sum(parts)
            return out
        for k, a in enumerate(pool):
            parts = []
            if self.kind in ("energy", "both"):
                _, s = model.predict([a], return_std=True)
                v = (s[0] / len(a)) ** 2
                parts.append(v / _noise(reg, "energy") ** 2 if self.kind == "both" else v)
            if self.kind in ("forces", "both"):
                _, s = model.predict_forces([a], return_std=True)
                v = red(s[0] ** 2)
                parts.append(v / _noise(reg, "forces") ** 2 if self.kind == "both" else v)
            out[k] = sum(parts)
        return out

    def select(self, model, pool, n, *, exclude_structures=None):
        """Indices of the ``n`` chosen candidates of ``pool`` (best first).

        Parameters
        ----------
        model : HybridPotential
            Fitted, with a predictive uncertainty.
        pool : list of ase.Atoms
            Unlabelled candidates.
        n : int
            Number to choose (fewer if the pool, after deduplication, is smaller).
        exclude_structures : list of ase.Atoms, optional
            Already labelled structures: candidates duplicating them are skipped (only with
            ``dedup_threshold``).

        Returns
        -------
        ndarray of int64, shape (<= n,)

        Raises
        ------
        hybridpot.InvalidParameterError
            For a model that is not a fitted HybridPotential with a posterior, a pool that is
            not a list of ase.Atoms, ``n < 1`` or an invalid hyperparameter.
        """
        owner = type(self).__name__
        self._validate_common()
        check_choice(self.reduce, "reduce", ("mean", "max"), owner)
        _check_model(model, owner)
        check_model_with_uncertainty(model, f"{owner}.select")
        pool = _check_pool(pool, owner)
        n = self._check_n(n, pool)
        if not pool:
            return self._nothing_to_select()
        self.scores_ = self._row_scores(model, pool)
        st = self._dedup_state(model, pool, exclude_structures)
        return self._ranked_pick(self.scores_, n, st)


def _default_cost(atoms):
    return float(len(atoms)) ** 3


class DOptimalSelector(_Selector):
    r"""Greedy batch D-optimal design: maximise the log-det gain of the posterior precision.

    Pick ``c* = argmax_c EIG_c(Sigma) / cost(c)`` with
    ``EIG_c = 1/2 log det(I + B_c Sigma B_c^T)`` (nats; ``B_c`` whitened design rows, see the
    module docstring), condition ``Sigma`` on ``B_{c*}``, repeat ``n`` times.  With
    ``cost=None`` every cost is 1 (plain D-optimality:
    ``sum EIG = 1/2 log det(H_after) - 1/2 log det(H_before)``).

    Parameters
    ----------
    kind : {"energy", "forces", "both"}, default="both"
        Which label rows a candidate contributes.
    cost : callable or None, default=None
        ``cost(atoms) -> float > 0`` (arbitrary units).
    dedup_threshold : float or None, default=1e-3
        Skip near-duplicates of already chosen (or excluded) structures
        (:func:`deduplicate`); None disables.  Needed also with a covariance: the
        independent-noise model credits a repeated label with new information (a second copy
        halves the variance along its directions), whereas a deterministic oracle (DFT, EMT)
        returns the same labels again.

    Attributes
    ----------
    scores_ : ndarray, shape (n_pool,)
        ``EIG_c / cost(c)`` under the initial posterior.
    gains_ : ndarray, shape (n_chosen,)
        Conditional gain (nats) of each chosen candidate at the time it was chosen.
    """

    _default_cost = None

    def __init__(self, *, kind="both", cost=None, dedup_threshold=1e-3):
        self.kind = kind
        self.cost = cost
        self.dedup_threshold = dedup_threshold

    def _costs(self, pool):
        owner = type(self).__name__
        fn = self.cost if self.cost is not None else self._default_cost
        if fn is None:
            return np.ones(len(pool))
        if not callable(fn):
            raise InvalidParameterError(
                f"The 'cost' parameter of {owner} must be a callable cost(atoms) -> float or "
                f"None. Got {type(fn).__name__} instead.")
        c = np.array([fn(a) for a in pool], dtype=np.float64)
        if not np.all(np.isfinite(c)) or np.any(c <= 0):
            raise InvalidParameterError(
                f"The 'cost' parameter of {owner} must return finite floats > 0. Got "
                f"{c[~(np.isfinite(c) & (c > 0))][:3].tolist()} instead.")
        return c

    def _noise_only_gain(self, model, pool):
        reg = model.regressor_
        g = np.zeros(len(pool))
        for k, a in enumerate(pool):
            if self.kind in ("energy", "both"):
                _, s = model.predict([a], return_std=True)
                g[k] += 0.5 * np.log1p((s[0] / len(a) / _noise(reg, "energy")) ** 2)
            if self.kind in ("forces", "both"):
                _, s = model.predict_forces([a], return_std=True)
                g[k] += 0.5 * np.sum(np.log1p((s[0] / _noise(reg, "forces")) ** 2))
        return g

    def select(self, model, pool, n, *, exclude_structures=None):
        """Indices of the ``n`` chosen candidates of ``pool`` in the order they were picked.

        Parameters
        ----------
        model : HybridPotential
            Fitted, with a predictive uncertainty.
        pool : list of ase.Atoms
            Unlabelled candidates.
        n : int
            Number to choose (fewer if the pool, after deduplication, is smaller).
        exclude_structures : list of ase.Atoms, optional
            Already labelled structures: candidates duplicating them are skipped (only with
            ``dedup_threshold``).

        Returns
        -------
        ndarray of int64, shape (<= n,)

        Raises
        ------
        hybridpot.InvalidParameterError
            For a model that is not a fitted HybridPotential with a posterior, a pool that is
            not a list of ase.Atoms, ``n < 1`` or an invalid hyperparameter.
        """
        owner = type(self).__name__
        self._validate_common()
        _check_model(model, owner)
        check_model_with_uncertainty(model, f"{owner}.select")
        pool = _check_pool(pool, owner)
        n = self._check_n(n, pool)
        if not pool:
            return self._nothing_to_select()
        cost = self._costs(pool)
        st = self._dedup_state(model, pool, exclude_structures)
        if not _has_covariance(model):
            self.scores_ = self._noise_only_gain(model, pool) / cost
            out = self._ranked_pick(self.scores_, n, st)
            self.gains_ = self.scores_[out] * cost[out]
            return out
        # whitened rows C_c = B_c T^{-1}: Sigma = T^{-1} T^{-T} becomes the identity, the
        # conditioned posterior has precision W = I + sum_chosen C^T C (eigenvalues >= 1),
        # and EIG_c = 1/2 logdet(I + C_c W^{-1} C_c^T)
        C = [_compress(_whiten(model, candidate_rows(model, a, self.kind))) for a in pool]
        # the upper factor R of W is updated by QR of [R; C_c] (never squares C_c)
        return self._greedy_pick(C, n, cost, st, lambda R, avail: _eig(C, R))


class InformationPerCostSelector(DOptimalSelector):
    r"""Expected information gain per unit labelling cost, greedy and conditioned.

    Same algorithm as :class:`DOptimalSelector` with ``cost(atoms) = N**3`` by default (the
    cubic scaling of DFT): candidates are ranked by ``EIG_c / N_c^3``.

    Parameters
    ----------
    kind : {"energy", "forces", "both"}, default="both"
        Which label rows a candidate contributes.
    cost : callable or None, default=None
        ``cost(atoms) -> float > 0``; None means ``len(atoms) ** 3``.
    dedup_threshold : float or None, default=1e-3
        Skip near-duplicates (:func:`deduplicate`); None disables.
    """

    _default_cost = staticmethod(_default_cost)


class VarianceReductionSelector(DOptimalSelector):
    r"""Greedy I-optimal batch: maximise the reduction of the summed predictive variance.

    D-optimality rewards information about the weights wherever it lies, so it favours
    outliers (unusual cells whose rows probe directions no test structure needs).  This
    selector instead scores a candidate by how much labelling it reduces the parameter part of
    the predictive variance summed over a *reference* set of structures (by default the pool
    itself, a stand-in for the distribution the model will be used on):

    .. math::
        \Delta_c = \mathrm{tr}(W^{-1} G) - \mathrm{tr}((W + C_c^T C_c)^{-1} G)
                 = \mathrm{tr}\big(K_c^{-1} X_c^T G X_c\big),\quad
        X_c = W^{-1} C_c^T,\ K_c = I + C_c X_c,

    with whitened candidate rows ``C_c`` (module docstring), the whitened precision ``W`` of
    the posterior conditioned on the picks so far, and ``G = sum_p P_p^T P_p`` over the
    whitened ``target_kind`` rows ``P_p`` of the reference structures (so ``tr(W^{-1} G)`` is
    the summed predictive variance in units of the noise variance).  Both traces are evaluated
    as ``||R^{-T} P||_F^2`` from QR factors (``W = R^T R``, ``G = P P^T``), so no normal
    matrix is ever formed; after each pick ``R`` is updated as in :class:`DOptimalSelector`.
    Cost per pick ``O(n_pool M^3)``.

    Parameters
    ----------
    kind : {"energy", "forces", "both"}, default="both"
        Rows a candidate's labels add.
    target_kind : {"energy", "forces", "both"}, default="forces"
        Predictions whose variance is reduced.
    reference : list of ase.Atoms or None, default=None
        Structures whose predictions matter; None: the pool.
    cost : callable or None, default=None
        ``cost(atoms) -> float > 0``; scores are divided by it.
    dedup_threshold : float or None, default=1e-3
        Skip near-duplicates (:func:`deduplicate`); None disables.

    Attributes
    ----------
    scores_ : ndarray, shape (n_pool,)
        ``Delta_c / cost(c)`` under the initial posterior.
    gains_ : ndarray, shape (n_chosen,)
        Variance reduction (noise-variance units) of each pick when chosen.
    """

    def __init__(self, *, kind="both", target_kind="forces", reference=None, cost=None,
                 dedup_threshold=1e-3):
        self.kind = kind
        self.target_kind = target_kind
        self.reference = reference
        self.cost = cost
        self.dedup_threshold = dedup_threshold

    def select(self, model, pool, n, *, exclude_structures=None):
        """Indices of the ``n`` chosen candidates of ``pool`` in the order they were picked.

        Parameters
        ----------
        model : HybridPotential
            Fitted, with a predictive uncertainty.
        pool : list of ase.Atoms
            Unlabelled candidates.
        n : int
            Number to choose (fewer if the pool, after deduplication, is smaller).
        exclude_structures : list of ase.Atoms, optional
            Already labelled structures: candidates duplicating them are skipped (only with
            ``dedup_threshold``).

        Returns
        -------
        ndarray of int64, shape (<= n,)

        Raises
        ------
        hybridpot.InvalidParameterError
            For a model that is not a fitted HybridPotential with a posterior, a pool that is
            not a list of ase.Atoms, ``n < 1`` or an invalid hyperparameter.
        """
        owner = type(self).__name__
        self._validate_common()
        check_choice(self.target_kind, "target_kind", _KINDS, owner)
        _check_model(model, owner)
        pool = _check_pool(pool, owner)
        n = self._check_n(n, pool)
        if not _has_covariance(model):
            if getattr(model, "uncertainty_", None) is not None:
                # a BLR / GP model given a posterior committee: it has a regressor posterior,
                # but the selectors cannot condition a committee's σ on new labels
                why = ("this model's σ comes from its posterior committee (uncertainty_, set by "
                       "LinearPosterior.apply), which cannot be conditioned on new labels; "
                       "select with the model as fitted, before apply")
            else:
                why = f"{type(model.regressor_).__name__} has none"
            raise InvalidParameterError(
                f"{owner} needs a linear model with a posterior covariance "
                "(BayesianLinearRegressor) or a SparseGPRegressor (weight posterior); "
                f"{why}. Use MaxVarianceSelector or DOptimalSelector instead.")
        if not pool:
            return self._nothing_to_select()
        cost = self._costs(pool)
        st = self._dedup_state(model, pool, exclude_structures)
        C = [_compress(_whiten(model, candidate_rows(model, a, self.kind))) for a in pool]
        M = C[0].shape[1]
        ref = pool if self.reference is None else _check_pool(self.reference, owner)
        if self.reference is None and self.target_kind == self.kind:
            P = C
        else:
            P = [_compress(_whiten(model, candidate_rows(model, a, self.target_kind)))
                 for a in ref]
        Pc = _compress(np.vstack(P)).T  # G = Pc Pc^T, shape (M, <= M)

        def summed_variance(Rw):
            # tr(W^{-1} G) = || Rw^{-T} Pc ||_F^2 with W = Rw^T Rw
            V = scipy.linalg.solve_triangular(Rw, Pc, trans="T", check_finite=False)
            return float(np.sum(V * V))

        def reduction(R, avail):
            base = summed_variance(R)
            g = np.zeros(len(pool))
            for k in np.flatnonzero(avail):
                Rk = scipy.linalg.qr(np.vstack([R, C[k]]), mode="r", check_finite=False)[0][:M]
                g[k] = base - summed_variance(Rk)
            return g

        return self._greedy_pick(C, n, cost, st, reduction)


def structure_fingerprints(model, structures):
    """Per-structure fingerprint: mean and standard deviation of the per-atom descriptors.

    Parameters
    ----------
    model : HybridPotential or Descriptor
        Its ``descriptor`` (or the descriptor itself) computes the per-atom descriptors.
    structures : list of ase.Atoms
        The structures.

    Returns
    -------
    ndarray, shape (n_structures, 2 * n_features)
        Each column standardised over ``structures`` (zero mean, unit variance; constant
        columns left at zero).
    """
    desc = getattr(model, "descriptor", model)
    fp = np.array([np.concatenate([X.mean(axis=0), X.std(axis=0)])
                   for X in (np.asarray(desc.compute(a), dtype=np.float64)
                             for a in structures)])
    sd = fp.std(axis=0)
    sd[~(sd > 0)] = 1.0
    return (fp - fp.mean(axis=0)) / sd


class StratifiedSelector:
    r"""Uncertainty selection within strata that keep the pool's mixture of structure types.

    Uncertainty-driven criteria assume the model is right and only its weights are uncertain.
    When the model is misspecified (a small descriptor, a linear model: its test error is
    dominated by bias), they concentrate on the structures with the largest descriptor
    gradients (e.g. the hottest MD frames), the least-squares solution shifts toward them and
    the error on typical structures *grows*.  This wrapper keeps the training mixture
    representative of the pool while still choosing the most informative structure of each
    part of it:

    1. the candidates and the already labelled structures (``exclude_structures``) are
       clustered with k-means (``n_strata``) on their fingerprints
       (:func:`structure_fingerprints`: mean and standard deviation of the per-atom
       descriptors, standardised);
    2. each pick goes to the stratum with the largest deficit
       ``f_k (n_labelled + n_chosen + 1) - m_k`` (``f_k`` the stratum's share of all
       structures, ``m_k`` its labelled and chosen ones; ties to the lower index) that still has
       candidates;
    3. within that stratum the inner ``selector`` picks one candidate, with the labelled and
       already chosen structures passed as ``exclude_structures`` (deduplication).

    Parameters
    ----------
    selector : selector or None, default=None
        Inner criterion; default :class:`MaxVarianceSelector` (forces).
    n_strata : int, default=8
        k-means clusters (at most the number of candidates plus labelled structures).
    random_state : int, default=0
        Seed of k-means (deterministic).

    Attributes
    ----------
    strata_ : ndarray of int64, shape (n_pool,)
        Stratum of every candidate at the last :meth:`select`.
    """

    def __init__(self, *, selector=None, n_strata=8, random_state=0):
        self.selector = selector
        self.n_strata = n_strata
        self.random_state = random_state

    def select(self, model, pool, n, *, exclude_structures=None):
        """Indices of the ``n`` chosen candidates of ``pool`` in the order they were picked.

        Parameters
        ----------
        model : HybridPotential
            Fitted, with a predictive uncertainty.
        pool : list of ase.Atoms
            Unlabelled candidates.
        n : int
            Number to choose (fewer if the pool, after deduplication, is smaller).
        exclude_structures : list of ase.Atoms, optional
            Already labelled structures: candidates duplicating them are skipped (only with
            ``dedup_threshold``).

        Returns
        -------
        ndarray of int64, shape (<= n,)

        Raises
        ------
        hybridpot.InvalidParameterError
            For a model that is not a fitted HybridPotential with a posterior, a pool that is
            not a list of ase.Atoms, ``n < 1`` or an invalid hyperparameter.
        """
        from sklearn.cluster import KMeans

        owner = type(self).__name__
        pool, n = _check_select(owner, model, pool, n)
        k_req = check_int(self.n_strata, "n_strata", owner, low=1)
        rs = check_int(self.random_state, "random_state", owner, low=0, high=2 ** 32 - 1)
        inner = self.selector if self.selector is not None else MaxVarianceSelector()
        if not hasattr(inner, "select"):
            raise InvalidParameterError(
                f"The 'selector' parameter of {owner} must be a selector (with a select method) "
                f"or None. Got {type(inner).__name__} instead.")
        if not pool:
            self.strata_ = np.zeros(0, dtype=np.int64)
            return np.zeros(0, dtype=np.int64)
        labelled = list(exclude_structures or [])
        allst = pool + labelled
        k = min(k_req, len(allst))
        fp = structure_fingerprints(model, allst)
        import warnings

        with warnings.catch_warnings():
            # identical fingerprints (copies) give fewer distinct clusters than asked
            warnings.filterwarnings("ignore", message="Number of distinct clusters")
            lab = KMeans(n_clusters=k, n_init=4, random_state=rs).fit_predict(fp)
        share = np.bincount(lab, minlength=k) / len(allst)
        counts = np.bincount(lab[len(pool):], minlength=k).astype(float)
        self.strata_ = lab[:len(pool)].astype(np.int64)
        avail = np.ones(len(pool), dtype=bool)
        chosen = []
        while len(chosen) < n and avail.any():
            deficit = share * (counts.sum() + 1) - counts
            has = np.bincount(self.strata_[avail], minlength=k) > 0
            c = int(np.argmax(np.where(has, deficit, -np.inf)))
            members = np.flatnonzero(avail & (self.strata_ == c))
            excl = labelled + [pool[j] for j in chosen]
            pick = np.asarray(inner.select(model, [pool[j] for j in members], 1,
                                           exclude_structures=excl), dtype=np.int64)
            if pick.size == 0:  # every member duplicates a chosen/labelled structure
                avail[members] = False
                continue
            j = int(members[pick[0]])
            chosen.append(j)
            avail[j] = False
            counts[c] += 1
        return np.asarray(chosen, dtype=np.int64)


class FacilityLocationSelector(_Selector):
    r"""Representative structures: greedy facility location on structure fingerprints,
    weighted by the model's predicted forces.

    Every structure ``i`` of the pool and of the labelled set is a *client* with weight

    .. math:: w_i = N_i \left(\overline{|\hat F_i|}\right)^{p}

    (``N_i`` atoms, ``\overline{|\hat F_i|}`` the mean absolute force component the current
    model predicts, eV/Å: no label is used; ``p = force_power``), i.e. roughly the structure's
    share of a force MAE.  With ``d(i, c)`` the Euclidean distance between the standardised
    fingerprints (:func:`structure_fingerprints`) and ``u_i`` the distance of client ``i`` to
    the nearest labelled or already chosen structure, the next pick maximises the coverage
    gain

    .. math:: g(c) = \sum_i w_i \max(0,\ u_i - d(i, c)),

    after which ``u_i <- min(u_i, d(i, c))`` (greedy k-medoids growth, batch-aware;
    duplicates of labelled or chosen structures are skipped as in the other selectors).
    Uncertainty criteria ignore the model's bias; this one labels the structures that stand
    for most of the pool, weighted towards those with large forces.  Pair it with
    importance-weighted refits (:class:`hybridpot.learn.ActiveLearner`
    ``importance_weighting="strata"``), which give each label the weight of the part of the
    pool it stands for: on the mlearn pools (``benchmarks/active_learning.py``) that pair
    needs 0.38 (Si) and 0.35 (Ni) of random selection's labels with a sparse GP, 0.41 and
    0.26 with a small linear model, where neither part alone beats
    :class:`StratifiedSelector`.

    Parameters
    ----------
    force_power : float, default=2.0
        Exponent ``p`` of the predicted mean absolute force in the client weights (>= 0; 0
        weights by atom count only).
    dedup_threshold : float or None, default=1e-3
        See :class:`MaxVarianceSelector`.

    Attributes
    ----------
    scores_ : ndarray, shape (n_pool,)
        Coverage gain ``g`` of every candidate for the first pick of the last :meth:`select`.
    """

    kind = "forces"

    def __init__(self, *, force_power=2.0, dedup_threshold=1e-3):
        self.force_power = force_power
        self.dedup_threshold = dedup_threshold

    def select(self, model, pool, n, *, exclude_structures=None):
        """Indices of the ``n`` chosen candidates of ``pool`` in the order they were picked.

        Parameters
        ----------
        model : HybridPotential
            Fitted, with a predictive uncertainty.
        pool : list of ase.Atoms
            Unlabelled candidates.
        n : int
            Number to choose (fewer if the pool, after deduplication, is smaller).
        exclude_structures : list of ase.Atoms, optional
            Already labelled structures: candidates duplicating them are skipped (only with
            ``dedup_threshold``).

        Returns
        -------
        ndarray of int64, shape (<= n,)

        Raises
        ------
        hybridpot.InvalidParameterError
            For a model that is not a fitted HybridPotential with a posterior, a pool that is
            not a list of ase.Atoms, ``n < 1`` or an invalid hyperparameter.
        """
        owner = type(self).__name__
        pool, n = _check_select(owner, model, pool, n)
        power = check_float(self.force_power, "force_power", owner, low=0.0,
                            low_inclusive=True, finite=True)
        self._validate_common()
        if not pool:
            return self._nothing_to_select()
        labelled = list(exclude_structures or [])
        allst = pool + labelled
        fp = structure_fingerprints(model, allst)
        sq = np.einsum("ij,ij->i", fp, fp)
        D = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2.0 * fp @ fp.T, 0.0))
        np.fill_diagonal(D, 0.0)
        forces = model.predict_forces(allst)
        w = np.array([len(a) * float(np.mean(np.abs(f))) ** power
                      for a, f in zip(allst, forces)])
        npool = len(pool)
        u = D[:, npool:].min(axis=1) if labelled else np.full(len(allst), D.max())
        avail = np.ones(npool, dtype=bool)
        st = self._dedup_state(model, pool, labelled)
        chosen = []
        while len(chosen) < n and avail.any():
            gain = w @ np.maximum(u[:, None] - D[:, :npool], 0.0)
            if not chosen:
                self.scores_ = gain.copy()
            k = int(np.argmax(np.where(avail, gain, -np.inf)))
            avail[k] = False
            if self._is_dup(st, k):
                continue
            chosen.append(k)
            if st is not None:
                st["chosen"].append(k)
            u = np.minimum(u, D[:, k])
        return np.asarray(chosen, dtype=np.int64)


class RandomSelector:
    """Uniformly random choice without replacement (the baseline of active learning).

    Parameters
    ----------
    random_state : int, numpy.random.Generator or None, default=None
        Seed or generator; an int gives the same choice on every call.
    """

    def __init__(self, *, random_state=None):
        self.random_state = random_state

    def select(self, model, pool, n, *, exclude_structures=None):
        """``n`` distinct random indices of ``pool``, sorted.

        Parameters
        ----------
        model : object
            Not used (any value, for the common selector interface).
        pool : list of ase.Atoms
            Candidates.
        n : int
            Number to choose (``>= 1``; all of the pool if it is smaller).
        exclude_structures : list of ase.Atoms, optional
            Not used.

        Returns
        -------
        ndarray of int64, shape (min(n, n_pool),)

        Raises
        ------
        hybridpot.InvalidParameterError
            For a pool that is not a list of ase.Atoms, ``n < 1`` or a bad ``random_state``.
        """
        pool = _check_pool(pool, "RandomSelector")
        n = check_int(n, "n", "RandomSelector.select", low=1)
        rs = self.random_state
        if rs is not None and not isinstance(rs, (numbers.Integral, np.random.Generator)):
            raise InvalidParameterError(
                "The 'random_state' parameter of RandomSelector must be an int, a "
                f"numpy.random.Generator or None. Got {type(rs).__name__} instead.")
        rng = np.random.default_rng(rs)
        return np.sort(rng.choice(len(pool), size=min(n, len(pool)), replace=False)) \
            .astype(np.int64)


SELECTORS = {"max_variance": MaxVarianceSelector, "d_optimal": DOptimalSelector,
             "information_per_cost": InformationPerCostSelector,
             "variance_reduction": VarianceReductionSelector, "stratified": StratifiedSelector,
             "facility_location": FacilityLocationSelector, "random": RandomSelector}


def make_selector(method="stratified", **params):
    """A selector by name (``"stratified"``, ``"max_variance"``, ``"d_optimal"``,
    ``"information_per_cost"``, ``"variance_reduction"``, ``"facility_location"``,
    ``"random"``) with keyword
    parameters; ``"stratified"`` (the default) wraps a force :class:`MaxVarianceSelector`
    unless ``selector=`` is given.

    Parameters
    ----------
    method : str, default="stratified"
        Selector name (see above).
    **params
        Keyword parameters of that selector's class.

    Returns
    -------
    selector
        An object with ``select(model, pool, n, *, exclude_structures=None)``.

    Raises
    ------
    hybridpot.InvalidParameterError
        For an unknown ``method`` or parameters the selector does not take.
    """
    check_choice(method, "method", tuple(SELECTORS), "make_selector")
    try:
        return SELECTORS[method](**params)
    except TypeError as e:
        raise InvalidParameterError(
            f"make_selector: invalid parameters {sorted(params)} for method {method!r}: {e}"
        ) from None
