"""Design rows of linear (and quadratic) per-atom energy models from a StructureBatch.

Feature map
-----------
An atom ``i`` of element ``z_i`` with descriptor ``X_i`` (``F`` values) is mapped to
``phi(X_i, z_i) = e_{z_i} (x) q(X_i)`` with the per-element block (length ``P``)

``q(X) = [1, X_0, ..., X_{F-1}]``                                   (linear, ``P = 1 + F``)

and, with ``quadratic=True``, followed by ``for k in range(F): for l in range(k, F):``
``0.5 * X_k**2 if k == l else X_k * X_l`` (``P = 1 + F + F (F + 1) / 2``) -- exactly the
LAMMPS SNAP / qSNAP ``.snapcoeff`` layout.  The per-atom energy is
``eps_i = coef[z_i] . q(X_i)`` (eV) with ``coef`` of shape ``(n_species, P)``; flattened, the
design has ``M = n_species * P`` columns (column ``z * P + p``).

Rows (label conventions of :mod:`hybridpot.regression._base`)
--------------------------------------------------------------
- energy row of structure ``s``: ``sum_{i in s} phi_i / N_s`` (target ``E_s / N_s``, eV/atom);
- force rows: ``-dE/dr_k[a]`` with ``E = sum_i phi_i``, i.e. ``-sum_p dphi_{i_p}/dr_ij[p]``
  scattered ``+`` to the neighbour ``j_p`` and ``-`` to the centre ``i_p`` of each pair, where
  ``dphi/dr_ij[a] = J(X_i) d_drij[p, a, :]`` and ``J = dq/dX`` (for the quadratic block
  ``d(X_k X_l) = X_l dX_k + X_k dX_l`` -- it depends on the centre's ``X_i``);
- stress rows (Voigt ``xx, yy, zz, yz, xz, xy``): ``(1/V) sum_p dphi_{i_p}/dr_ij[p, a] r_ij[p, b]``
  (eV/Å³), only for 3-D periodic structures.

The per-pair reduction runs in a small numba kernel (:func:`_pair_rows_kernel`); a plain-numpy
reference (:func:`pair_rows_reference`) is used in the tests.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ..descriptors._base import gradient_chunks
from ._base import KINDS, VOIGT

__all__ = ["n_block", "quadratic_index", "feature_map", "energy_rows", "pair_rows",
           "pair_rows_reference", "labelled_rows"]

_VOIGT_A = np.array([a for a, _ in VOIGT], dtype=np.int64)
_VOIGT_B = np.array([b for _, b in VOIGT], dtype=np.int64)


def n_block(n_features, quadratic):
    """Length ``P`` of one element's coefficient block."""
    F = int(n_features)
    return 1 + F + (F * (F + 1) // 2 if quadratic else 0)


def quadratic_index(n_features):
    """``(k, l)`` index arrays of the quadratic terms (``k <= l``, row-major, qSNAP order)."""
    iu, ju = np.triu_indices(int(n_features))
    return iu.astype(np.int64), ju.astype(np.int64)


def feature_map(X, quadratic):
    """Per-element block ``q(X)`` for every atom, shape (n_atoms, P)."""
    X = np.asarray(X, dtype=np.float64)
    n, F = X.shape
    parts = [np.ones((n, 1)), X]
    if quadratic:
        iu, ju = quadratic_index(F)
        Q = X[:, iu] * X[:, ju]
        Q[:, iu == ju] *= 0.5
        parts.append(Q)
    return np.hstack(parts)


def energy_rows(batch, n_species, quadratic):
    """Per-atom energy rows of every structure, shape (n_structures, n_species * P).

    Row ``s`` is ``sum_{i in s} phi_i / N_s`` (zero for a structure without atoms).
    """
    phi = feature_map(batch.X, quadratic)
    P = phi.shape[1]
    ns = batch.n_structures
    out = np.zeros((ns * n_species, P))
    np.add.at(out, batch.structure * n_species + batch.species, phi)
    out = out.reshape(ns, n_species * P)
    nat = batch.n_atoms_per_structure
    out /= np.maximum(nat, 1)[:, None]
    return out


@njit(cache=True)
def _pair_rows_kernel(pair_i, pair_j, rij, d_drij, X, species, atom_structure, n_structures,
                      n_species, quadratic, voigt_a, voigt_b, want_forces, want_stress, dEr, vir):
    """Add the pairs' terms to ``dEr`` (n_atoms or 0, 3, M) and ``vir`` (n_structures or 0, 6, M).

    ``dE_dr_rows[k, a] = d(sum_i phi_i)/dr_k[a]`` and
    ``virial_rows[s, v] = sum_{p in s} dphi_{i_p}/dr_ij[p, a_v] r_ij[p, b_v]``.
    Contributions to the centre atom and to the virial are summed in a local buffer while
    consecutive pairs share the centre (pairs sorted by ``pair_i``; any order is correct).
    """
    F = X.shape[1]
    P = 1 + F + (F * (F + 1) // 2 if quadratic else 0)
    g = np.zeros((3, P))
    loc = np.zeros((3, P))
    locv = np.zeros((6, P))
    n_pairs = pair_i.shape[0]
    cur = -1
    for p in range(n_pairs + 1):
        i = pair_i[p] if p < n_pairs else -2
        if i != cur:
            if cur >= 0:
                off = species[cur] * P
                if want_forces:
                    for a in range(3):
                        for q in range(1, P):
                            dEr[cur, a, off + q] -= loc[a, q]
                            loc[a, q] = 0.0
                if want_stress:
                    s = atom_structure[cur]
                    for v in range(6):
                        for q in range(1, P):
                            vir[s, v, off + q] += locv[v, q]
                            locv[v, q] = 0.0
            cur = i
        if p == n_pairs:
            break
        j = pair_j[p]
        off = species[i] * P
        for a in range(3):
            for f in range(F):
                g[a, 1 + f] = d_drij[p, a, f]
            if quadratic:
                m = 1 + F
                for k in range(F):
                    xk = X[i, k]
                    dk = d_drij[p, a, k]
                    g[a, m] = xk * dk
                    m += 1
                    for l in range(k + 1, F):
                        g[a, m] = dk * X[i, l] + xk * d_drij[p, a, l]
                        m += 1
        if want_forces:
            for a in range(3):
                for q in range(1, P):
                    dEr[j, a, off + q] += g[a, q]
                    loc[a, q] += g[a, q]
        if want_stress:
            for v in range(6):
                a = voigt_a[v]
                r = rij[p, voigt_b[v]]
                for q in range(1, P):
                    locv[v, q] += g[a, q] * r


def _finish_pair_rows(batch, dEr, vir, want_forces, want_stress):
    force = -dEr.reshape(-1, dEr.shape[-1]) if want_forces else None
    stress = None
    if want_stress:
        with np.errstate(invalid="ignore", divide="ignore"):
            inv_v = np.where(np.isfinite(batch.volume) & (batch.volume > 0),
                             1.0 / batch.volume, np.nan)
        stress = (vir * inv_v[:, None, None]).reshape(-1, vir.shape[-1])
    return force, stress


def _empty_pair_rows(batch, n_species, P, want_forces, want_stress):
    M = n_species * P
    dEr = np.zeros((batch.n_atoms if want_forces else 0, 3, M))
    vir = np.zeros((batch.n_structures if want_stress else 0, 6, M))
    return dEr, vir


def pair_rows(batch, n_species, quadratic, *, forces=True, stress=True):
    """Force and stress design rows of every atom / structure of ``batch``.

    Parameters
    ----------
    batch : StructureBatch
        Must carry ``gradients`` (the descriptor Jacobian): a
        :class:`~hybridpot.descriptors._base.DescriptorGradients`, or a
        :class:`~hybridpot.descriptors._base.ChunkedGradients` reduced one range of centres
        at a time (memory: the rows plus one chunk of the Jacobian).
    n_species : int
    quadratic : bool
    forces, stress : bool
        Which rows to build.

    Returns
    -------
    force_rows : ndarray, shape (3 * n_atoms, n_species * P) or None
        Row ``3 k + a`` models the force ``F_k[a]`` (eV/Å).
    stress_rows : ndarray, shape (6 * n_structures, n_species * P) or None
        Row ``6 s + v`` models the Voigt stress component ``v`` of structure ``s`` (eV/Å³);
        NaN for structures that are not 3-D periodic.
    """
    X = np.ascontiguousarray(batch.X, dtype=np.float64)
    F = X.shape[1]
    P = n_block(F, quadratic)
    g = batch.gradients
    dEr, vir = _empty_pair_rows(batch, n_species, P, forces, stress)
    if g is None or g.pair_i.shape[0] == 0:
        return _finish_pair_rows(batch, dEr, vir, forces, stress)
    species = np.ascontiguousarray(batch.species, dtype=np.int64)
    structure = np.ascontiguousarray(batch.structure, dtype=np.int64)
    for c in gradient_chunks(g):   # a ChunkedGradients yields ranges of centres
        _pair_rows_kernel(
            np.ascontiguousarray(c.pair_i, dtype=np.int64),
            np.ascontiguousarray(c.pair_j, np.int64),
            np.ascontiguousarray(c.rij, dtype=np.float64),
            np.ascontiguousarray(c.d_drij, dtype=np.float64), X, species, structure,
            batch.n_structures, int(n_species), bool(quadratic), _VOIGT_A, _VOIGT_B,
            bool(forces), bool(stress), dEr, vir)
    return _finish_pair_rows(batch, dEr, vir, forces, stress)


def pair_rows_reference(batch, n_species, quadratic, *, forces=True, stress=True):
    """Plain-numpy reference of :func:`pair_rows` (slow, memory hungry; for tests)."""
    X = np.asarray(batch.X, dtype=np.float64)
    F = X.shape[1]
    P = n_block(F, quadratic)
    g = batch.gradients
    pi, pj, d = g.pair_i, g.pair_j, g.d_drij
    n_p = pi.shape[0]
    G = np.zeros((n_p, 3, P))
    G[:, :, 1:1 + F] = d
    if quadratic:
        iu, ju = quadratic_index(F)
        Xi = X[pi]
        Q = d[:, :, iu] * Xi[:, None, ju] + Xi[:, None, iu] * d[:, :, ju]
        Q[:, :, iu == ju] *= 0.5
        G[:, :, 1 + F:] = Q
    # place in the element block of the centre
    Gfull = np.zeros((n_p, 3, n_species, P))
    Gfull[np.arange(n_p), :, batch.species[pi], :] = G
    Gfull = Gfull.reshape(n_p, 3, n_species * P)
    dEr, vir = _empty_pair_rows(batch, n_species, P, forces, stress)
    if forces:
        np.add.at(dEr, pj, Gfull)
        np.add.at(dEr, pi, -Gfull)
    if stress:
        s = batch.structure[pi]
        for v, (a, b) in enumerate(VOIGT):
            np.add.at(vir[:, v, :], s, Gfull[:, a, :] * g.rij[:, b][:, None])
    return _finish_pair_rows(batch, dEr, vir, forces, stress)


def labelled_rows(batch, n_species, quadratic):
    """Weighted fitting rows of the labels present in ``batch``.

    Missing labels (NaN, zero weight, or stress of a non-3-D-periodic structure) contribute no
    rows.

    Yields
    ------
    kind : str
        ``"energy"``, ``"forces"`` or ``"stress"``.
    group : ndarray of int64, shape (n_rows,)
        Config group of each row's structure.
    A : ndarray, shape (n_rows, n_species * P)
    y : ndarray, shape (n_rows,)
        Targets (eV/atom, eV/Å or eV/Å³).
    w : ndarray, shape (n_rows,)
        Row weights (> 0); the loss is ``sum w * (A c - y)**2``.
    """
    ns = batch.n_structures
    group = (np.zeros(ns, dtype=np.int64) if batch.group is None
             else np.asarray(batch.group, dtype=np.int64))
    has = {k: batch.has(k) for k in KINDS}

    def weight(kind):
        w = batch.weights.get(kind)
        return np.ones(ns) if w is None else np.asarray(w, dtype=np.float64)

    if has["energy"].any():
        m = has["energy"]
        A = energy_rows(batch, n_species, quadratic)[m]
        nat = batch.n_atoms_per_structure[m]
        y = np.asarray(batch.energy, dtype=np.float64)[m] / nat
        yield "energy", group[m], A, y, weight("energy")[m]
    want_f, want_s = bool(has["forces"].any()), bool(has["stress"].any())
    if not (want_f or want_s):
        return
    if batch.gradients is None:
        from .._exceptions import MissingLabelsError

        raise MissingLabelsError(
            "A StructureBatch carries force or stress labels but no descriptor gradients "
            "('gradients' is None); compute the descriptors with gradients=True.")
    Fr, Sr = pair_rows(batch, n_species, quadratic, forces=want_f, stress=want_s)
    if want_f:
        atom_m = has["forces"][batch.structure]
        row_m = np.repeat(atom_m, 3)
        y = np.asarray(batch.forces, dtype=np.float64).reshape(-1)[row_m]
        s_of_row = np.repeat(batch.structure, 3)[row_m]
        yield "forces", group[s_of_row], Fr[row_m], y, weight("forces")[s_of_row]
    if want_s:
        row_m = np.repeat(has["stress"], 6)
        y = np.asarray(batch.stress, dtype=np.float64).reshape(-1)[row_m]
        s_of_row = np.repeat(np.arange(ns), 6)[row_m]
        yield "stress", group[s_of_row], Sr[row_m], y, weight("stress")[s_of_row]


def split_batch(batch, max_atoms):
    """Split ``batch`` into sub-batches of whole structures with at most ``max_atoms`` atoms.

    A structure larger than ``max_atoms`` forms a sub-batch of its own.  Yields ``batch``
    itself when it is small enough.  Cost ``O(n_atoms + n_pairs)`` (one sort).
    """
    from ._base import StructureBatch
    from ..descriptors._base import DescriptorGradients

    if batch.n_atoms <= max_atoms or batch.n_structures <= 1:
        yield batch
        return
    ns = batch.n_structures
    nat = batch.n_atoms_per_structure
    # consecutive structure ranges [s0, s1) of at most max_atoms atoms (at least one structure)
    bounds = [0]
    count = 0
    for s in range(ns):  # loop over structures (not atoms or pairs)
        if count and count + nat[s] > max_atoms:
            bounds.append(s)
            count = 0
        count += nat[s]
    bounds.append(ns)
    structure = np.asarray(batch.structure, dtype=np.int64)
    aorder = np.argsort(structure, kind="stable")
    astart = np.searchsorted(structure[aorder], bounds)
    g = batch.gradients
    if g is not None:
        ps = structure[g.pair_i]
        porder = np.argsort(ps, kind="stable")
        pstart = np.searchsorted(ps[porder], bounds)
    newidx = np.empty(batch.n_atoms, dtype=np.int64)
    group = None if batch.group is None else np.asarray(batch.group)
    index = None if batch.index is None else np.asarray(batch.index)
    for c in range(len(bounds) - 1):
        s0, s1 = bounds[c], bounds[c + 1]
        atoms = aorder[astart[c]:astart[c + 1]]
        newidx[atoms] = np.arange(atoms.shape[0])
        grads = None
        if g is not None:
            pairs = porder[pstart[c]:pstart[c + 1]]
            grads = DescriptorGradients(newidx[g.pair_i[pairs]], newidx[g.pair_j[pairs]],
                                        g.rij[pairs], g.d_drij[pairs], atoms.shape[0])
        yield StructureBatch(
            X=batch.X[atoms], species=batch.species[atoms], structure=structure[atoms] - s0,
            gradients=grads, volume=batch.volume[s0:s1], energy=batch.energy[s0:s1],
            forces=batch.forces[atoms], stress=batch.stress[s0:s1],
            weights={k: np.asarray(w)[s0:s1] for k, w in batch.weights.items()},
            group=None if group is None else group[s0:s1],
            index=None if index is None else index[s0:s1])
