r"""Importance weights that make an actively selected training set represent the pool.

An uncertainty criterion does not pick training structures the way the structures of use are
distributed (the pool, the sampler, the test set): it over-samples the regions of largest
parameter variance.  A least-squares or Bayesian fit on such a set minimises the error on the
*selected* distribution.  Importance weighting (importance-weighted active learning,
Beygelzimer, Dasgupta and Langford 2009) re-weights each labelled structure ``j`` by the ratio
of the reference density to the selection density at it,

.. math::  w_j \propto \frac{p_\mathrm{ref}(x_j)}{p_\mathrm{lab}(x_j)},

so the weighted training loss estimates the loss over the reference distribution.  Both
densities are estimated on structure fingerprints
(:func:`hybridpot.uq.selection.structure_fingerprints`):

- ``method="nearest"``: a partition of the reference set into the cells of the labelled
  structures (each reference structure belongs to its nearest labelled structure, Euclidean
  distance between fingerprints); ``w_j = (1 + n_j) / (n_ref / n_lab + 1)`` with ``n_j`` the
  reference structures in the cell of ``j`` (the ``+1``: ``j`` itself, so no weight is zero);
- ``method="strata"``: k-means (``n_strata`` clusters) on the fingerprints of the labelled and
  reference structures together; ``w_j = (n_ref,c / n_ref) / (n_lab,c / n_lab)`` for ``j`` in
  cluster ``c``.

The weights are scaled to mean 1 over the labelled structures, so the total weight (and the
noise level a Bayesian fit infers) stays that of ``n_lab`` unweighted structures.  They enter
a fit through ``atoms.info["fit_weight"]`` (see :class:`hybridpot.HybridPotential`).
"""

from __future__ import annotations

import numpy as np

from .._exceptions import InvalidParameterError
from .._validation import check_int

__all__ = ["importance_weights", "importance_weights_from_fingerprints", "WEIGHTING_METHODS"]

WEIGHTING_METHODS = ("nearest", "strata")


def _check_method(method, owner):
    if method not in WEIGHTING_METHODS:
        raise InvalidParameterError(
            f"The 'method' parameter of {owner} must be one of {list(WEIGHTING_METHODS)}. "
            f"Got {method!r} instead.")


def importance_weights_from_fingerprints(labelled_fp, reference_fp, *, method="nearest",
                                         n_strata=8, random_state=0):
    """Importance weights of labelled structures from fingerprints (see the module docstring).

    Parameters
    ----------
    labelled_fp : array_like, shape (n_lab, n_fp)
        Fingerprints of the labelled structures.
    reference_fp : array_like, shape (n_ref, n_fp)
        Fingerprints of structures distributed like the structures of use (the pool or a
        sample of candidates; it may include the labelled ones).
    method : {"nearest", "strata"}, default="nearest"
        ``"nearest"``: proportional to 1 + the number of reference structures whose nearest
        labelled fingerprint is this one; ``"strata"``: the reference share over the
        labelled share of the structure's k-means cluster (see the module docstring).
    n_strata : int, default=8
        Clusters of ``method="strata"`` (at most the number of distinct fingerprints).
    random_state : int, default=0
        Seed of k-means (``method="strata"``).

    Returns
    -------
    ndarray, shape (n_lab,)
        Weights >= 0 with mean 1.

    Raises
    ------
    hybridpot.InvalidParameterError
        For an unknown ``method``, fingerprints that are not finite 2-D arrays with rows and
        the same number of columns, or a bad ``n_strata`` / ``random_state``.
    """
    owner = "importance_weights"
    _check_method(method, owner)
    lab = np.asarray(labelled_fp, dtype=np.float64)
    ref = np.asarray(reference_fp, dtype=np.float64)
    for name, a in (("labelled_fp", lab), ("reference_fp", ref)):
        if a.ndim != 2 or a.shape[0] == 0 or not np.all(np.isfinite(a)):
            raise InvalidParameterError(
                f"The '{name}' argument of {owner} must be a finite 2-D array with at least "
                f"one row. Got shape {a.shape} instead.")
    if lab.shape[1] != ref.shape[1]:
        raise InvalidParameterError(
            f"The 'labelled_fp' and 'reference_fp' arguments of {owner} must have the same "
            f"number of columns. Got {lab.shape[1]} and {ref.shape[1]} instead.")
    n_strata = check_int(n_strata, "n_strata", owner, low=1)
    random_state = check_int(random_state, "random_state", owner, low=0, high=2 ** 32 - 1)
    n_lab, n_ref = lab.shape[0], ref.shape[0]
    if method == "nearest":
        # squared distances through the Gram trick: (n_ref, n_lab), no (n_ref, n_lab, n_fp)
        d2 = (np.einsum("ij,ij->i", ref, ref)[:, None] - 2.0 * ref @ lab.T
              + np.einsum("ij,ij->i", lab, lab)[None, :])
        cell = np.argmin(d2, axis=1)
        w = 1.0 + np.bincount(cell, minlength=n_lab).astype(np.float64)
    else:
        from sklearn.cluster import KMeans

        both = np.vstack([lab, ref])
        k = min(n_strata, len(np.unique(both, axis=0)))
        if k <= 1:
            return np.ones(n_lab)
        import warnings

        with warnings.catch_warnings():
            # distinct but numerically coincident fingerprints (np.unique sees them apart)
            # give fewer clusters than asked; the strata stay valid
            warnings.filterwarnings("ignore", message="Number of distinct clusters")
            lab_c = KMeans(n_clusters=k, n_init=4,
                           random_state=random_state).fit_predict(both)
        c_lab, c_ref = lab_c[:n_lab], lab_c[n_lab:]
        f_ref = np.bincount(c_ref, minlength=k) / n_ref
        f_lab = np.bincount(c_lab, minlength=k) / n_lab
        w = f_ref[c_lab] / f_lab[c_lab]
        if not np.any(w > 0):  # every labelled structure in a cluster without references
            return np.ones(n_lab)
    return w * (n_lab / w.sum())


def importance_weights(model, labelled, reference, *, method="nearest", n_strata=8,
                       random_state=0):
    """Importance weights that make ``labelled`` represent ``reference`` (mean 1).

    Parameters
    ----------
    model : HybridPotential or Descriptor
        Its descriptor gives the fingerprints (mean and standard deviation of the per-atom
        descriptors, standardised over ``labelled`` and ``reference`` together).
    labelled : list of ase.Atoms
        The training structures (``n_lab``).
    reference : list of ase.Atoms
        Structures distributed like the structures of use (pool, candidates).
    method : {"nearest", "strata"}, default="nearest"
        See :func:`importance_weights_from_fingerprints`.
    n_strata : int, default=8
        See :func:`importance_weights_from_fingerprints`.
    random_state : int, default=0
        See :func:`importance_weights_from_fingerprints`.

    Returns
    -------
    ndarray, shape (n_lab,)
        Put them on the structures as ``atoms.info["fit_weight"]`` before fitting.

    Raises
    ------
    hybridpot.InvalidParameterError
        For empty ``labelled`` / ``reference``, a ``model`` without a descriptor, or bad
        ``method``, ``n_strata``, ``random_state``.
    """
    from ..uq.selection import structure_fingerprints

    _check_method(method, "importance_weights")
    labelled, reference = list(labelled or []), list(reference or [])
    if not labelled or not reference:
        raise InvalidParameterError(
            "The 'labelled' and 'reference' arguments of importance_weights must be non-empty "
            f"lists of ase.Atoms. Got {len(labelled)} and {len(reference)} structures instead.")
    desc = getattr(model, "descriptor", model)
    if not hasattr(desc, "compute"):
        raise InvalidParameterError(
            "The 'model' argument of importance_weights must be a HybridPotential or a "
            f"descriptor. Got {type(model).__name__} instead.")
    fp = structure_fingerprints(desc, labelled + reference)
    return importance_weights_from_fingerprints(
        fp[:len(labelled)], fp[len(labelled):], method=method, n_strata=n_strata,
        random_state=random_state)
