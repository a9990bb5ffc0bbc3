"""Stream a training set once into per-(label kind, group, fold) TSQR factors of ``[A | J | y]``.

``A`` are the linear-model design rows of :mod:`hybridpot.regression._design`, ``y`` the
residual labels ``y_DFT - y_EP(phi0) - e0`` at the fitted baseline parameters ``phi0`` and ``J``
the derivative of the *residual* with respect to the baseline parameters, ``J = -dy_EP/dphi``
(from the baseline's analytic :meth:`parameter_gradients`).  Everything the posterior needs
(Gram blocks, residual norms) follows from these small factors; the data are never revisited.
"""

from __future__ import annotations

import numpy as np

from .._exceptions import InvalidParameterError, MissingLabelsError
from ..regression._design import labelled_rows, n_block, split_batch
from ..regression._linear import BIAS_RELATIVE_PENALTY, CHUNK_BYTES, _column_scale
from ..regression._tsqr import TSQRAccumulator

__all__ = ["accumulate_factors", "Factors"]


class Factors:
    """Accumulated factors of a training set (see the module docstring).

    Attributes
    ----------
    R : dict
        ``(kind, group_name, fold) -> R`` upper-triangular factor of ``W^1/2 [A/D | J/s | y]``,
        shape (r, M + n_phi + 1).
    n_rows, sum_log_w : dict
        Same keys: number of rows and ``sum(log w_r)``.
    D : ndarray, shape (M,)
        Column scale of ``A`` (RMS of the weighted rows floored within its block, as the
        linear regressors' ``penalty_scaling="rms"``; 1 for empty columns; all 1 for a
        regressor with ``penalty_scaling="none"``).
    b2 : ndarray, shape (M,)
        Relative prior precision (``1e-6`` for per-element bias columns).
    phi0 : ndarray, shape (n_phi,)
        Fitted baseline parameters; ``phi_scale`` the scale ``s`` of the ``J`` columns.
    """

    def __init__(self, R, n_rows, sum_log_w, D, b2, phi0, phi_scale, phi_names, n_species,
                 n_features, quadratic, n_folds):
        self.R = R
        self.n_rows = n_rows
        self.sum_log_w = sum_log_w
        self.D = D
        self.b2 = b2
        self.phi0 = phi0
        self.phi_scale = phi_scale
        self.phi_names = phi_names
        self.n_species = n_species
        self.n_features = n_features
        self.quadratic = quadratic
        self.n_folds = n_folds

    @property
    def M(self):
        return int(self.D.shape[0])

    @property
    def n_phi(self):
        return int(self.phi0.shape[0])


def _baseline_rows(baseline_grads, sub, kind, n_phi, prep_index):
    """Rows of ``-d y_EP / d phi`` aligned with :func:`labelled_rows` of ``kind``."""
    ns = sub.n_structures
    if n_phi == 0:
        return None
    has = sub.has(kind)
    nat = sub.n_atoms_per_structure
    if kind == "energy":
        out = np.array([baseline_grads[int(prep_index[s])]["energy"] / nat[s]
                        for s in range(ns) if has[s]])
        return -out.reshape(-1, n_phi)
    if kind == "forces":
        blocks = []
        for s in range(ns):  # loop over structures, not atoms
            if has[s]:
                g = baseline_grads[int(prep_index[s])]["forces"]  # (n_phi, n_atoms, 3)
                blocks.append(g.transpose(1, 2, 0).reshape(-1, n_phi))
        # residual of forces: F_DFT - F_EP; d(-F_EP)/dphi = -dF_EP/dphi
        return -np.vstack(blocks)
    blocks = [baseline_grads[int(prep_index[s])]["stress"].T for s in range(ns) if has[s]]
    return -np.vstack(blocks)


def check_linear_model(model, owner):
    """Raise a typed error naming ``owner`` unless ``model`` is a HybridPotential fitted with a
    linear regressor on structure batches."""
    from ..potential import _check_model_argument
    from ..regression._linear import _LinearBase

    _check_model_argument(model, owner, " with a LinearRegressor or BayesianLinearRegressor")
    reg = model.regressor_
    if not isinstance(reg, _LinearBase) or getattr(reg, "fit_mode_", "batch") != "batch":
        raise InvalidParameterError(
            f"The 'model' argument of {owner} must be a HybridPotential fitted with "
            "LinearRegressor or BayesianLinearRegressor (the posterior marginalises linear "
            f"weights). Got a model with {type(reg).__name__} instead"
            + ("; its predict(..., return_std=True) already gives σ"
               if getattr(reg, "has_uncertainty", False) else "") + ".")
    if getattr(reg, "lambda_", None) is not None and getattr(reg, "active_", None) is not None:
        # ARDLinearRegressor: one prior precision per coefficient, which theta (one shared
        # prior precision) cannot represent; its committee would be another model's σ
        raise InvalidParameterError(
            f"The 'model' argument of {owner} has an ARDLinearRegressor, whose prior has one "
            "precision per coefficient (lambda_); the posterior samples one shared prior "
            "precision and would give the σ of another model. Use the ARD model's own σ "
            "(predict(..., return_std=True), calculator(uncertainty=True)), or refit with "
            "BayesianLinearRegressor.")


def accumulate_factors(model, structures, *, noise_groups=False, n_folds=1,
                       sample_baseline=True, random_state=None, owner="accumulate_factors"):
    """One pass over ``structures``: per (kind, group, fold) TSQR factors for the posterior.

    Parameters
    ----------
    model : HybridPotential
        Fitted, with a linear regressor (``LinearRegressor`` or ``BayesianLinearRegressor``).
    structures : list of ase.Atoms
        The labelled training set (the one ``model`` was fitted on).
    noise_groups : bool
        Keep config groups (``atoms.info["config_type"]``) apart.
    n_folds : int
        Structures are assigned to folds at random (for cross-validated inflation).
    sample_baseline : bool
        Add the baseline-parameter columns ``J``.
    random_state : numpy Generator, RandomState or int
    owner : str
        Name of the caller, used in error messages.

    Returns
    -------
    Factors
    """
    from sklearn.utils import check_random_state

    from ..potential import _as_structure_list

    check_linear_model(model, owner)
    reg = model.regressor_
    structures = _as_structure_list(structures)
    kind_weights = model._validate()
    prep = model._prepare(structures, kind_weights)
    source = model._batch_source(prep)
    nsp = len(model.descriptor.species)
    F = model.descriptor.n_features
    quadratic = bool(reg.quadratic)
    P = n_block(F, quadratic)
    M = nsp * P
    base = model.baseline
    n_phi = 0
    phi0 = np.zeros(0)
    names = ()
    if sample_baseline and base is not None and hasattr(base, "param_names"):
        names = tuple(base.param_names)
        n_phi = len(names)
        phi0 = np.asarray(base.get_param_vector(), dtype=np.float64) if n_phi else np.zeros(0)
    phi_scale = np.where(np.abs(phi0) > 0, np.abs(phi0), 1.0)
    rng = check_random_state(random_state) if not isinstance(random_state, np.random.Generator) \
        else random_state
    n_s = len(structures)
    perm = rng.permutation(n_s)
    fold_of = np.empty(n_s, dtype=np.int64)
    fold_of[perm] = np.arange(n_s) % int(n_folds)
    grads = {}
    if n_phi:
        for s, atoms in enumerate(structures):
            grads[s] = base.parameter_gradients(atoms)
    acc = TSQRAccumulator(M + n_phi, method="qr")
    col_sq = np.zeros(M)
    n_total = 0
    max_atoms = max(1, CHUNK_BYTES // (24 * M))
    gnames = prep.group_names
    for batch in source:
        for sub in split_batch(batch, max_atoms):
            for kind, group, A, y, w in labelled_rows(sub, nsp, quadratic):
                col_sq += np.einsum("r,rj,rj->j", w, A, A)
                n_total += A.shape[0]
                # structure (prep index) of every row, to assign folds
                ns = sub.n_structures
                has = sub.has(kind)
                if kind == "energy":
                    s_row = np.arange(ns)[has]
                elif kind == "forces":
                    s_row = np.repeat(sub.structure[has[sub.structure]], 3)
                else:
                    s_row = np.repeat(np.arange(ns)[has], 6)
                fold = fold_of[np.asarray(sub.index)[s_row]]
                Jr = _baseline_rows(grads, sub, kind, n_phi, sub.index)
                full = A if Jr is None else np.hstack([A, Jr * phi_scale[None, :]])
                for g in np.unique(group):
                    for f in np.unique(fold):
                        m = (group == g) & (fold == f)
                        if not m.any():
                            continue
                        gname = gnames[g] if noise_groups else "all"
                        acc.add((kind, gname, int(f)), full[m], y[m], w[m])
        batch = sub = None   # not alive while the source builds the next one (peak: 1 batch)
    if not acc.keys():
        raise MissingLabelsError("The posterior received no usable label (all NaN or zero "
                                 "weight).")
    # the regressor's column scale (zero columns, "rms" floored within its block, or "none"),
    # so that the prior is the regressor's
    D, zero = _column_scale(col_sq / max(n_total, 1), getattr(reg, "penalty_scaling", "rms"),
                            nsp, F, quadratic, getattr(reg, "scale_floor", None))
    b2 = np.ones(M)
    bias = np.zeros(M, dtype=bool)
    bias[np.arange(nsp) * P] = True
    b2[bias & ~zero] = BIAS_RELATIVE_PENALTY
    if getattr(reg, "prior_scale", None) is not None:
        b2 = b2 * reg._prior_factor(M)   # the regressor's prior_scale (smoothness prior)
    scale = np.concatenate([D, np.ones(n_phi), [1.0]])
    R = {k: acc.R(k) / scale[None, :] for k in acc.keys()}
    return Factors(R, {k: acc.n_rows[k] for k in R}, {k: acc.sum_log_weight[k] for k in R},
                   D, b2, phi0, phi_scale, names, nsp, F, quadratic, int(n_folds))
