"""Neighbour lists (numba cell list, O(N) time and memory).

:func:`neighbor_list` returns every ordered pair ``(i, j, S)`` with
``r_ij = r_j + S @ cell - r_i`` and ``0 < |r_ij| < r_cut`` (a full list: both ``(i, j)`` and
``(j, i)`` appear), periodic along the directions where ``atoms.pbc`` is True, for any triclinic
cell, including cells smaller than the cutoff (then several images of one atom, and images of
atom ``i`` itself, are neighbours of ``i``).  Pairs are sorted by ``i``, then by ``j``, then
lexicographically by ``S``; the order is therefore canonical (it does not depend on how the
atoms are binned or on whether their positions are wrapped into the cell).

Algorithm
---------
1. Build a full-rank basis ``B``: the periodic rows are the cell vectors; the non-periodic rows
   are an orthonormal basis of the complement of the periodic vectors (so a zero or arbitrary
   non-periodic cell vector is irrelevant, and ``S`` is always 0 along non-periodic directions).
2. Fractional coordinates ``f = r B^-1``.  Along periodic directions they are wrapped to
   ``[0, 1)`` with integer shifts ``n_i = floor(f_i)`` (the original positions are kept: the
   returned ``S`` and ``r_ij`` refer to them).  Along non-periodic directions the bounding box of
   the atoms is used.
3. Each direction ``k`` is cut into ``nb_k`` bins of perpendicular width at least ``r_cut / 2``
   (the perpendicular height of the cell is ``h_k = V / |a_l x a_m|``); the total number of bins
   is capped at about twice the number of atoms, which keeps memory O(N) for dilute or huge
   cells.  When the cap would coarsen the bins by more than ``_SPARSE_FACTOR`` in volume (a
   few atoms far from the rest, or a huge vacuum: then most atoms would share a few bins and
   the screening would be O(N^2)), a sparse grid is used instead: the bins keep their width,
   only the occupied ones are stored (sorted linear keys, found by binary search) and the
   image shift of each searched bin is computed rather than tabulated.  Two atoms closer than
   ``r_cut`` have fractional coordinates closer than ``r_cut / h_k``, so their bins differ by
   at most ``m_k = ceil(r_cut nb_k / h_k)``; the search visits the ``(2 m_k + 1)`` bin offsets
   per direction, each offset of a periodic direction being a distinct (bin, lattice image)
   pair, so small cells are handled without replicating atoms.
4. Candidate pairs are screened with the wrapped positions, then ``r_ij`` is recomputed exactly
   from the original positions and the integer shift ``S = S' + n_i - n_j`` and tested against
   ``r_cut``.  One pass over the atoms in index order: the neighbours of centre ``i`` are
   collected in a small scratch buffer, sorted by ``(j, S)`` (a packed integer key, insertion
   sort) and appended to a growable output buffer, so the output is sorted by ``i`` without a
   global sort.  Cost: O(N (r_cut^3 rho + number of searched bins)), memory O(N + pairs).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit

from ._exceptions import InvalidParameterError, InvalidStructureError
from ._validation import check_atoms, check_float

__all__ = ["NeighborList", "neighbor_list"]

# Bins per cutoff length along each direction (bin width >= r_cut / _BINS_PER_CUTOFF).
_BINS_PER_CUTOFF = 2
# Upper bound on the number of bins relative to the number of atoms (memory stays O(N)).
_MAX_BINS_PER_ATOM = 2
# Bins per direction of the sparse grid (only occupied bins stored; linear keys < 2**60), used
# when the dense grid would need more than _MAX_BINS_PER_ATOM bins per atom (far outliers,
# huge vacuum): the dense grid then had to be coarsened until most atoms shared a few bins.
_MAX_SPARSE_BINS = 1 << 20
# The sparse grid (a binary search per visited bin) replaces the dense one when capping made
# the dense bins this many times larger in volume (the atoms then screen ever more candidates).
# Measured on a 42592-atom Cu cluster in a periodic box: 300 Å of vacuum (234x) dense 0.35 s /
# sparse 0.40 s; 600 Å (1600x) 0.95 / 0.48 s; 2500 Å 1.76 / 0.42 s; 87808 atoms with two
# atoms 10^4 Å away: 7.0 / 0.87 s (the dense time grows as N^2 there).
_SPARSE_FACTOR = 512
# Safety margins on the number of bin layers searched (rounding of fractional coordinates):
# relative, and absolute in units of bins.
_MARGIN = 1e-9
_MARGIN_BINS = 1e-6


@dataclass(frozen=True)
class NeighborList:
    """Full neighbour list of one structure, sorted by centre atom.

    Attributes
    ----------
    i, j : ndarray of int64, shape (n_pairs,)
        Centre and neighbour atom indices.
    D : ndarray of float64, shape (n_pairs, 3)
        Pair vectors ``r_ij = r_j + S @ cell - r_i`` in Å.
    S : ndarray of int64, shape (n_pairs, 3)
        Integer lattice shift of the neighbour image.
    d : ndarray of float64, shape (n_pairs,)
        Pair distances ``|r_ij|`` in Å.
    offsets : ndarray of int64, shape (n_atoms + 1,)
        Pairs of centre ``i`` are ``offsets[i]:offsets[i + 1]``.
    n_atoms : int
        Atoms of the structure.
    """

    i: np.ndarray
    j: np.ndarray
    D: np.ndarray
    S: np.ndarray
    d: np.ndarray
    offsets: np.ndarray
    n_atoms: int

    @property
    def n_pairs(self):
        """int: number of (directed) pairs; each pair appears as (i, j) and (j, i)."""
        return int(self.i.shape[0])


# --------------------------------------------------------------------------------------------
# numba kernels
# --------------------------------------------------------------------------------------------

@njit(cache=True)
def _bin_sort(bin_idx, nb):
    """Counting sort of atoms by linear bin index.

    Returns ``(order, start)``: atoms of bin ``c`` are ``order[start[c]:start[c + 1]]`` (in
    increasing atom index), with ``c = (b0 * nb1 + b1) * nb2 + b2``.
    """
    n = bin_idx.shape[0]
    nbins = nb[0] * nb[1] * nb[2]
    lin = np.empty(n, dtype=np.int64)
    start = np.zeros(nbins + 1, dtype=np.int64)
    for a in range(n):
        c = (bin_idx[a, 0] * nb[1] + bin_idx[a, 1]) * nb[2] + bin_idx[a, 2]
        lin[a] = c
        start[c + 1] += 1
    for c in range(nbins):
        start[c + 1] += start[c]
    fill = start[:-1].copy()
    order = np.empty(n, dtype=np.int64)
    for a in range(n):
        c = lin[a]
        order[fill[c]] = a
        fill[c] += 1
    return order, start


@njit(cache=True)
def _grow(a, new_cap):
    out = np.empty((new_cap,) + a.shape[1:], dtype=a.dtype)
    out[:a.shape[0]] = a
    return out


@njit(cache=True)
def _argsort_pairs(key, S, k, perm):
    """Insertion sort of ``perm[:k]`` by ``key`` then ``S`` lexicographically (short lists)."""
    for p in range(k):
        perm[p] = p
    for p in range(1, k):
        a = perm[p]
        q = p
        while q > 0:
            b = perm[q - 1]
            if key[a] > key[b]:
                break
            if key[a] == key[b]:
                # only reached when the key does not encode S (huge shift ranges)
                if S[a, 0] > S[b, 0] or (S[a, 0] == S[b, 0] and (
                        S[a, 1] > S[b, 1] or (S[a, 1] == S[b, 1] and S[a, 2] >= S[b, 2]))):
                    break
            perm[q] = b
            q -= 1
        perm[q] = a


@njit(cache=True)
def _scan_bin(i, q0, q1, s0, s1, s2, sx, sy, sz, pos, pw, nshift, cell, order, key_base,
              key_radix, rc2, rs2, tj, tS, tD, td, tkey, k):
    """Candidates ``order[q0:q1]`` of centre ``i`` in one (bin, lattice image ``s``) with the
    screening shift ``(sx, sy, sz)``: accepted pairs appended to the scratch at ``k``; returns
    the new ``k`` or -1 when the scratch is full."""
    tcap = tj.shape[0]
    for q in range(q0, q1):
        dx = pw[q, 0] + sx
        dy = pw[q, 1] + sy
        dz = pw[q, 2] + sz
        if dx * dx + dy * dy + dz * dz >= rs2:
            continue
        j = order[q]
        t0 = s0 + nshift[i, 0] - nshift[j, 0]
        t1 = s1 + nshift[i, 1] - nshift[j, 1]
        t2 = s2 + nshift[i, 2] - nshift[j, 2]
        if i == j and t0 == 0 and t1 == 0 and t2 == 0:
            continue
        # exact pair vector from the original positions
        ex = pos[j, 0] - pos[i, 0] + t0 * cell[0, 0] + t1 * cell[1, 0] + t2 * cell[2, 0]
        ey = pos[j, 1] - pos[i, 1] + t0 * cell[0, 1] + t1 * cell[1, 1] + t2 * cell[2, 1]
        ez = pos[j, 2] - pos[i, 2] + t0 * cell[0, 2] + t1 * cell[1, 2] + t2 * cell[2, 2]
        r2 = ex * ex + ey * ey + ez * ez
        if r2 >= rc2:
            continue
        if k == tcap:
            return -1
        tj[k] = j
        tS[k, 0] = t0
        tS[k, 1] = t1
        tS[k, 2] = t2
        tD[k, 0] = ex
        tD[k, 1] = ey
        tD[k, 2] = ez
        td[k] = r2
        if key_radix[0] > 0:
            tkey[k] = ((j * key_radix[0] + t0 + key_base[0]) * key_radix[1]
                       + t1 + key_base[1]) * key_radix[2] + t2 + key_base[2]
        else:
            tkey[k] = j
        k += 1
    return k


@njit(cache=True)
def _centre_pairs(i, pos, pos_w, pw, nshift, cell, bin_idx, nb, order, start, tab0, tab1, tab2,
                  key_base, key_radix, rc2, rs2, tj, tS, tD, td, tkey):
    """Neighbours of centre ``i`` written to the scratch ``t*[:k]``; returns ``k``.

    Returns -1 if the scratch (length ``tj.shape[0]``) is too short; the caller then grows it and
    calls again (kept out of the hot loop so the scratch arrays are never reassigned in it).
    ``td`` receives squared distances.  ``pw`` are the wrapped positions in bin order.
    """
    k = 0
    xi = pos_w[i, 0]
    yi = pos_w[i, 1]
    zi = pos_w[i, 2]
    b0 = bin_idx[i, 0]
    b1 = bin_idx[i, 1]
    b2 = bin_idx[i, 2]
    for a0 in range(tab0.shape[1]):
        c0 = tab0[b0, a0, 0]
        if c0 < 0:
            continue
        s0 = tab0[b0, a0, 1]
        for a1 in range(tab1.shape[1]):
            c1 = tab1[b1, a1, 0]
            if c1 < 0:
                continue
            s1 = tab1[b1, a1, 1]
            c01 = (c0 * nb[1] + c1) * nb[2]
            for a2 in range(tab2.shape[1]):
                c2 = tab2[b2, a2, 0]
                if c2 < 0:
                    continue
                s2 = tab2[b2, a2, 1]
                c = c01 + c2
                # image shift relative to the wrapped centre
                sx = s0 * cell[0, 0] + s1 * cell[1, 0] + s2 * cell[2, 0] - xi
                sy = s0 * cell[0, 1] + s1 * cell[1, 1] + s2 * cell[2, 1] - yi
                sz = s0 * cell[0, 2] + s1 * cell[1, 2] + s2 * cell[2, 2] - zi
                k = _scan_bin(i, start[c], start[c + 1], s0, s1, s2, sx, sy, sz, pos, pw,
                              nshift, cell, order, key_base, key_radix, rc2, rs2, tj, tS, tD,
                              td, tkey, k)
                if k < 0:
                    return -1
    return k


@njit(cache=True)
def _centre_pairs_sparse(i, pos, pos_w, pw, nshift, cell, bin_idx, nb, m, periodic, order,
                         ukeys, start, key_base, key_radix, rc2, rs2, tj, tS, tD, td, tkey):
    """:func:`_centre_pairs` on a sparse grid: only the occupied bins exist (sorted linear
    keys ``ukeys``, atoms of the ``u``-th ``order[start[u]:start[u + 1]]``), each neighbour bin
    is found by binary search and its image shift computed (no per-bin tables), so memory and
    time stay O(N) when a few far atoms (or a huge vacuum) stretch the box."""
    k = 0
    xi = pos_w[i, 0]
    yi = pos_w[i, 1]
    zi = pos_w[i, 2]
    nu = ukeys.shape[0]
    for o0 in range(-m[0], m[0] + 1):
        c0 = bin_idx[i, 0] + o0
        s0 = 0
        if periodic[0]:
            s0 = c0 // nb[0]
            c0 -= s0 * nb[0]
        elif c0 < 0 or c0 >= nb[0]:
            continue
        for o1 in range(-m[1], m[1] + 1):
            c1 = bin_idx[i, 1] + o1
            s1 = 0
            if periodic[1]:
                s1 = c1 // nb[1]
                c1 -= s1 * nb[1]
            elif c1 < 0 or c1 >= nb[1]:
                continue
            c01 = (c0 * nb[1] + c1) * nb[2]
            for o2 in range(-m[2], m[2] + 1):
                c2 = bin_idx[i, 2] + o2
                s2 = 0
                if periodic[2]:
                    s2 = c2 // nb[2]
                    c2 -= s2 * nb[2]
                elif c2 < 0 or c2 >= nb[2]:
                    continue
                c = c01 + c2
                u = np.searchsorted(ukeys, c)
                if u == nu or ukeys[u] != c:
                    continue
                sx = s0 * cell[0, 0] + s1 * cell[1, 0] + s2 * cell[2, 0] - xi
                sy = s0 * cell[0, 1] + s1 * cell[1, 1] + s2 * cell[2, 1] - yi
                sz = s0 * cell[0, 2] + s1 * cell[1, 2] + s2 * cell[2, 2] - zi
                k = _scan_bin(i, start[u], start[u + 1], s0, s1, s2, sx, sy, sz, pos, pw,
                              nshift, cell, order, key_base, key_radix, rc2, rs2, tj, tS, tD,
                              td, tkey, k)
                if k < 0:
                    return -1
    return k


@njit(cache=True)
def _cell_list_pairs(pos, pos_w, nshift, cell, bin_idx, nb, order, start, tab0, tab1, tab2,
                     key_base, key_radix, r_cut, r_screen, cap, m, periodic, ukeys):
    """All pairs ``(i, j, S)`` with ``|r_j + S @ cell - r_i| < r_cut``, ``(i, S) != (j, 0)``.

    Parameters
    ----------
    pos : (n, 3) float64
        Original positions (Å); ``D`` is computed from them.
    pos_w : (n, 3) float64
        Wrapped positions ``pos - nshift @ cell`` (Å), used to screen candidates.
    nshift : (n, 3) int64
        ``floor`` of the fractional coordinates along periodic directions (0 otherwise).
    cell : (3, 3) float64
    bin_idx : (n, 3) int64
        Bin of each atom along each direction.
    nb : (3,) int64
        Number of bins along each direction.
    order, start : from :func:`_bin_sort`.
    tab0, tab1, tab2 : (nb_k, 2 m_k + 1, 2) int64
        For a centre bin ``b`` and each searched offset: the neighbour bin (-1: none, outside a
        non-periodic box) and the lattice shift of that bin's image.
    key_base, key_radix : (3,) int64
        ``S + key_base`` lies in ``[0, key_radix)``; the sort key is
        ``((j * r0 + S0') * r1 + S1') * r2 + S2'``, or ``j`` alone if ``key_radix[0] == 0``.
    r_cut : float
        Cutoff (Å), applied to the exact ``D``.
    r_screen : float
        Slightly larger cutoff (Å) used on the wrapped positions.
    cap : int
        Initial buffer capacity (pairs); the buffer grows as needed.
    m : (3,) int64, periodic : (3,) bool, ukeys : (n_occupied,) int64
        Sparse grid (``ukeys`` not empty): the sorted linear keys of the occupied bins,
        ``start`` indexes them and the tables are unused (:func:`_centre_pairs_sparse`).

    Returns
    -------
    j : (P,) int64, S : (P, 3) int64, D : (P, 3) float64, d : (P,) float64, counts : (n,) int64
        Pairs in order of ``i``, then ``j``, then ``S``.
    """
    n = pos.shape[0]
    rc2 = r_cut * r_cut
    rs2 = r_screen * r_screen
    cap = max(cap, 16)
    J = np.empty(cap, dtype=np.int64)
    SS = np.empty((cap, 3), dtype=np.int64)
    DD = np.empty((cap, 3), dtype=np.float64)
    dd = np.empty(cap, dtype=np.float64)
    counts = np.zeros(n, dtype=np.int64)
    # per-centre scratch (sorted into the output at the end of each centre)
    tcap = 128
    tj = np.empty(tcap, dtype=np.int64)
    tS = np.empty((tcap, 3), dtype=np.int64)
    tD = np.empty((tcap, 3), dtype=np.float64)
    td = np.empty(tcap, dtype=np.float64)
    tkey = np.empty(tcap, dtype=np.int64)
    perm = np.empty(tcap, dtype=np.int64)
    # positions in bin order, for contiguous reads in the inner loop
    pw = np.empty((n, 3), dtype=np.float64)
    for q in range(n):
        for k in range(3):
            pw[q, k] = pos_w[order[q], k]
    sparse = ukeys.shape[0] > 0
    p = 0
    for i in range(n):
        k = -1
        if sparse:
            k = _centre_pairs_sparse(i, pos, pos_w, pw, nshift, cell, bin_idx, nb, m, periodic,
                                     order, ukeys, start, key_base, key_radix, rc2, rs2, tj, tS,
                                     tD, td, tkey)
        else:
            k = _centre_pairs(i, pos, pos_w, pw, nshift, cell, bin_idx, nb, order, start, tab0,
                              tab1, tab2, key_base, key_radix, rc2, rs2, tj, tS, tD, td, tkey)
        while k < 0:
            tcap *= 2
            tj = np.empty(tcap, dtype=np.int64)
            tS = np.empty((tcap, 3), dtype=np.int64)
            tD = np.empty((tcap, 3), dtype=np.float64)
            td = np.empty(tcap, dtype=np.float64)
            tkey = np.empty(tcap, dtype=np.int64)
            perm = np.empty(tcap, dtype=np.int64)
            if sparse:
                k = _centre_pairs_sparse(i, pos, pos_w, pw, nshift, cell, bin_idx, nb, m,
                                         periodic, order, ukeys, start, key_base, key_radix,
                                         rc2, rs2, tj, tS, tD, td, tkey)
            else:
                k = _centre_pairs(i, pos, pos_w, pw, nshift, cell, bin_idx, nb, order, start,
                                  tab0, tab1, tab2, key_base, key_radix, rc2, rs2, tj, tS, tD,
                                  td, tkey)
        counts[i] = k
        if p + k > J.shape[0]:
            new_cap = max(2 * J.shape[0], p + k)
            J = _grow(J, new_cap)
            SS = _grow(SS, new_cap)
            DD = _grow(DD, new_cap)
            dd = _grow(dd, new_cap)
        _argsort_pairs(tkey, tS, k, perm)
        for u in range(k):
            v = perm[u]
            J[p] = tj[v]
            SS[p, 0] = tS[v, 0]
            SS[p, 1] = tS[v, 1]
            SS[p, 2] = tS[v, 2]
            DD[p, 0] = tD[v, 0]
            DD[p, 1] = tD[v, 1]
            DD[p, 2] = tD[v, 2]
            dd[p] = np.sqrt(td[v])
            p += 1
    if 5 * p < 4 * J.shape[0]:
        # buffer much larger than the result: release it
        return J[:p].copy(), SS[:p].copy(), DD[:p].copy(), dd[:p].copy(), counts
    return J[:p], SS[:p], DD[:p], dd[:p], counts


# --------------------------------------------------------------------------------------------
# set-up (O(N) numpy, no loop over atoms)
# --------------------------------------------------------------------------------------------

#: largest |fractional coordinate| along a periodic direction that neighbor_list accepts
_MAX_CELLS = 1e9
#: largest r_cut / (perpendicular cell height) along a periodic direction (images searched)
_MAX_CELLS_IN_CUTOFF = 1e3
#: largest cutoff (Å) neighbor_list accepts (a molecule's 'all pairs')
_MAX_CUTOFF = 1e6


def _full_basis(cell, pbc):
    """Rows: periodic cell vectors; non-periodic rows: orthonormal complement of them."""
    basis = np.array(cell, dtype=np.float64)
    npbc = int(pbc.sum())
    if npbc < 3:
        if npbc == 0:
            comp = np.eye(3)
        else:
            _, _, vt = np.linalg.svd(cell[pbc], full_matrices=True)
            comp = vt[npbc:]
        basis[~pbc] = comp
    return basis


def _bin_layout(n, frac, pbc, heights, r_cut):
    """Bin counts ``nb``, searched layers ``m``, the fractional origin and width per direction."""
    lo = np.zeros(3)
    span = np.ones(3)  # fractional length that is binned
    length = np.array(heights, dtype=np.float64)  # perpendicular length (Å) that is binned
    for k in range(3):
        if not pbc[k]:
            lo[k] = frac[:, k].min()
            span[k] = frac[:, k].max() - lo[k]
            length[k] = span[k] * heights[k]
    target = r_cut / _BINS_PER_CUTOFF
    with np.errstate(over="ignore", invalid="ignore"):
        nb = np.floor(np.minimum(length / target, 1e9))
    nb = [int(x) for x in np.maximum(nb, 1.0)]   # Python ints: a few steps per structure
    max_bins = max(1, _MAX_BINS_PER_ATOM * n)
    while math.prod(nb) > max_bins:
        k = nb.index(max(nb))   # the first largest, as np.argmax
        nb[k] = max(1, int(nb[k] * 0.8))
    nb = np.array(nb, dtype=np.int64)
    m = np.zeros(3, dtype=np.int64)
    for k in range(3):
        if length[k] > 0:
            # min before int(): a huge r_cut must not overflow int64 (non-periodic: capped)
            m[k] = int(min(np.ceil(r_cut * nb[k] / length[k] * (1.0 + _MARGIN) + _MARGIN_BINS),
                           2.0 ** 62))
        if not pbc[k]:
            m[k] = min(m[k], nb[k] - 1)
    return nb, m, lo, span


def _sparse_layout(frac, pbc, heights, r_cut, lo, span):
    """Uncapped bin counts (at most ``_MAX_SPARSE_BINS`` per direction) and searched layers of
    the sparse grid used when :func:`_bin_layout` had to coarsen the bins."""
    length = np.where(pbc, heights, span * heights)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        nb = np.floor(np.minimum(length / (r_cut / _BINS_PER_CUTOFF), _MAX_SPARSE_BINS))
    nb = np.maximum(nb, 1.0).astype(np.int64)
    m = np.zeros(3, dtype=np.int64)
    for k in range(3):
        if length[k] > 0:
            # min before int(): a huge r_cut must not overflow int64 (non-periodic: capped)
            m[k] = int(min(np.ceil(r_cut * nb[k] / length[k] * (1.0 + _MARGIN) + _MARGIN_BINS),
                           2.0 ** 62))
        if not pbc[k]:
            m[k] = min(m[k], nb[k] - 1)
    return nb, m


def _offset_table(nb, m, periodic):
    """(nb, 2m + 1, 2) table: neighbour bin (-1 if outside) and image shift per bin, offset."""
    c = np.arange(nb)[:, None] + np.arange(-m, m + 1)[None, :]
    if periodic:
        s = np.floor_divide(c, nb)
        c = c - s * nb
    else:
        s = np.zeros_like(c)
        c = np.where((c >= 0) & (c < nb), c, -1)
    return np.ascontiguousarray(np.stack([c, s], axis=-1).astype(np.int64))


def _pairs(pos, cell, pbc, r_cut):
    n = pos.shape[0]
    basis = _full_basis(cell, pbc)
    inv = np.linalg.inv(basis)
    frac = pos @ inv
    # perpendicular height along k = 1 / |k-th reciprocal vector| = V / |a_l x a_m|
    heights = 1.0 / np.linalg.norm(inv, axis=0)
    nshift = np.zeros((n, 3), dtype=np.int64)
    if pbc.any():
        fl = np.floor(frac[:, pbc])
        nshift[:, pbc] = fl.astype(np.int64)
        frac[:, pbc] -= fl
    nb, m, lo, span = _bin_layout(n, frac, pbc, heights, r_cut)
    safe_span = np.where(span > 0, span, 1.0)
    fine, m_fine = _sparse_layout(frac, pbc, heights, r_cut, lo, span)
    sparse = math.prod(int(x) for x in fine) > _SPARSE_FACTOR * math.prod(int(x) for x in nb)
    if sparse:   # the dense grid was coarsened: occupied bins only, at full resolution
        nb, m = fine, m_fine
    bin_idx = np.floor((frac - lo) / safe_span * nb).astype(np.int64)
    np.clip(bin_idx, 0, nb - 1, out=bin_idx)
    pos_w = pos - nshift @ cell
    if sparse:
        lin = (bin_idx[:, 0] * nb[1] + bin_idx[:, 1]) * nb[2] + bin_idx[:, 2]
        order = np.argsort(lin, kind="stable").astype(np.int64)
        ukeys, counts = np.unique(lin[order], return_counts=True)
        start = np.zeros(ukeys.shape[0] + 1, dtype=np.int64)
        np.cumsum(counts, out=start[1:])
        ukeys = ukeys.astype(np.int64)
        tabs = [np.zeros((1, 1, 2), dtype=np.int64)] * 3
        # image shifts of the searched bins: floor((b + o) / nb), b < nb, |o| <= m
        smin = np.where(pbc, np.floor_divide(-m, nb), 0)
        smax = np.where(pbc, np.floor_divide(nb - 1 + m, nb), 0)
    else:
        order, start = _bin_sort(bin_idx, nb)
        ukeys = np.zeros(0, dtype=np.int64)
        tabs = [_offset_table(int(nb[k]), int(m[k]), bool(pbc[k])) for k in range(3)]
        smin = np.array([int(t[:, :, 1].min()) for t in tabs])
        smax = np.array([int(t[:, :, 1].max()) for t in tabs])
    # sort key (j, S) packed in one int64 when the ranges allow it
    base = np.zeros(3, dtype=np.int64)
    radix = np.zeros(3, dtype=np.int64)
    for k in range(3):
        spread = int(nshift[:, k].max() - nshift[:, k].min())
        base[k] = -(int(smin[k]) - spread)
        radix[k] = int(smax[k]) - int(smin[k]) + 2 * spread + 1
    if n * int(radix[0]) * int(radix[1]) * int(radix[2]) >= 2 ** 62:
        radix[:] = 0  # the kernel then sorts by j and compares S explicitly
    # screening radius on wrapped positions: covers their rounding error relative to pos
    scale = np.abs(pos).max() + np.abs(cell).sum() * (1 + m.max()) + r_cut
    r_screen = r_cut + 1e-12 * scale
    # initial capacity from the mean density (the buffer grows if this is short)
    volume = abs(np.linalg.det(basis)) * np.prod(np.where(pbc, 1.0, span + r_cut / heights))
    est = n / volume * (4.0 / 3.0) * np.pi * r_cut ** 3
    cap = int(min(1.2 * est * n, float(1 << 22))) + 64
    j, S, D, d, counts = _cell_list_pairs(pos, pos_w, nshift, cell, bin_idx, nb, order, start,
                                          tabs[0], tabs[1], tabs[2], base, radix,
                                          float(r_cut), float(r_screen), cap,
                                          np.asarray(m, dtype=np.int64),
                                          np.asarray(pbc, dtype=np.bool_), ukeys)
    return j, S, D, d, counts


def neighbor_list(atoms, r_cut, *, min_distance=0.1, name="atoms", owner=None,
                  _checked=None):
    """Full neighbour list of ``atoms`` within ``r_cut`` Å.

    Every ordered pair ``(i, j, S)`` with ``r_ij = r_j + S @ cell - r_i`` and
    ``0 < |r_ij| < r_cut`` is returned, with ``S`` relative to the positions as given (they need
    not lie inside the cell).  Pairs are sorted by ``i``, then ``j``, then ``S``.  Cost and
    memory are O(N) for a fixed density (numba cell list, see the module docstring).

    Parameters
    ----------
    atoms : ase.Atoms
        The structure (not modified).  Positions must be finite; a periodic cell must have
        non-zero volume.  Along non-periodic directions the cell vector is ignored (it may be
        zero).
    r_cut : float
        Cutoff radius in Å, > 0, at most 1e6 and at most 1000 times the cell's height along
        a periodic direction.
    min_distance : float or None, default=0.1
        Raise :class:`~hybridpot.InvalidStructureError` if two atoms (or an atom and an image)
        are closer than this (Å).  ``None`` disables the check.
    name : str, default="atoms"
        Name of the argument in error messages.
    owner : str or None, default=None
        Name of the calling class or function in error messages.

    Returns
    -------
    NeighborList

    Raises
    ------
    hybridpot.InvalidParameterError
        For ``r_cut <= 0``, ``r_cut > 1e6`` or reaching more than 1000 periodic images, or a
        negative ``min_distance``.
    hybridpot.InvalidStructureError
        For an ``atoms`` that is not an ase.Atoms, non-finite positions or cell, a degenerate
        periodic cell, or two atoms closer than ``min_distance``.

    Examples
    --------
    The one-atom fcc cell sees its 12 nearest neighbours as periodic images:

    >>> from ase.build import bulk
    >>> from hybridpot.neighbors import neighbor_list
    >>> nl = neighbor_list(bulk("Cu", "fcc", a=3.61), r_cut=3.0)
    >>> nl.n_pairs, round(float(nl.d.min()), 4)
    (12, 2.5527)
    """
    r_cut = check_float(r_cut, "r_cut", owner, low=0.0)
    if not r_cut <= _MAX_CUTOFF:   # also inf: the bin layout overflows
        raise InvalidParameterError(
            f"The 'r_cut' parameter{' of ' + owner if owner else ''} must be at most "
            f"{_MAX_CUTOFF:g} Å. Got {r_cut!r} instead.")
    min_distance = check_float(min_distance, "min_distance", owner, low=0.0,
                               low_inclusive=True, allow_none=True)
    # _checked (internal): (positions, cell, pbc) of check_atoms(atoms) from a caller that
    # validated atoms already -- skips a second validation (overhead of many small cells)
    if _checked is None:
        pos, cell, pbc, _ = check_atoms(atoms, owner=owner, name=name)
    else:
        pos, cell, pbc = _checked
    n = len(pos)
    if n == 0:
        return NeighborList(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, 3)),
                            np.zeros((0, 3), np.int64), np.zeros(0), np.zeros(1, np.int64), 0)
    if pbc.any():
        inv = np.linalg.inv(_full_basis(cell, pbc))
        reach = (r_cut * np.linalg.norm(inv, axis=0))[pbc].max()   # r_cut / cell height
        if reach > _MAX_CELLS_IN_CUTOFF:
            raise InvalidParameterError(
                f"The 'r_cut' parameter{' of ' + owner if owner else ''} must be at most "
                f"{_MAX_CELLS_IN_CUTOFF:g} times the height of the '{name}' cell along a "
                f"periodic direction (the periodic images searched). Got r_cut = {r_cut:.6g} Å, "
                f"{reach:.3g} times it.")
        # wrapping into the cell: beyond ~1e9 cells the image is lost in double precision
        # (and the int64 image shift overflows near 1e19)
        far = np.abs(pos @ inv)[:, pbc].max(axis=1)
        if far.max() > _MAX_CELLS:
            k = int(np.argmax(far))
            raise InvalidStructureError(
                f"The '{name}' argument{' of ' + owner if owner else ''} has atom {k} "
                f"{far[k]:.3g} cell lengths from the cell along a periodic direction (at most "
                f"{_MAX_CELLS:.0e} allowed); wrap the positions into the cell (atoms.wrap()).")
    j, S, D, d, counts = _pairs(pos, cell, pbc, r_cut)
    i = np.repeat(np.arange(n, dtype=np.int64), counts)
    if min_distance is not None and d.size and d.min() < min_distance:
        p = int(np.argmin(d))
        raise InvalidStructureError(
            f"The '{name}' argument{' of ' + owner if owner else ''} has atoms {i[p]} and "
            f"{j[p]} only {d[p]:.4g} Å apart (minimum allowed {min_distance:g} Å); "
            f"overlapping atoms are not a physical structure.")
    if d.size and d.min() == 0.0:
        # coincident distinct atoms (only reachable with min_distance None or 0): |r_ij| > 0
        keep = d > 0.0
        i, j, D, S, d = i[keep], j[keep], D[keep], S[keep], d[keep]
        counts = np.bincount(i, minlength=n).astype(np.int64)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    return NeighborList(i, j, D, S, d, offsets, n)
