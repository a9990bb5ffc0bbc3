"""Neighbour lists.

:func:`neighbor_list` returns every ordered pair ``(i, j, S)`` with
``r_ij = r_j + S @ cell - r_i`` and ``0 < |r_ij| < r_cut`` (a full list: both ``(i, j)`` and
``(j, i)`` appear), periodic along the directions where ``atoms.pbc`` is True, for any triclinic
cell, including cells smaller than the cutoff (then several images of one atom, and images of
atom ``i`` itself, are neighbours of ``i``).  Pairs are sorted by ``i``.

TEMPORARY: this implementation delegates to ``ase.neighborlist.neighbor_list``; the numba cell
list replaces it (issue: core).  The returned contract does not change.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._exceptions import InvalidStructureError
from ._validation import check_atoms, check_float

__all__ = ["NeighborList", "neighbor_list"]


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
        return int(self.i.shape[0])


def _ase_pairs(positions, cell, pbc, r_cut):
    from ase import Atoms
    from ase.neighborlist import neighbor_list as _nl

    a = Atoms(numbers=np.ones(len(positions), dtype=int), positions=positions, cell=cell,
              pbc=pbc)
    i, j, D, S = _nl("ijDS", a, float(r_cut), self_interaction=False)
    return i.astype(np.int64), j.astype(np.int64), D.astype(np.float64), S.astype(np.int64)


def neighbor_list(atoms, r_cut, *, min_distance=0.1, name="atoms", owner=None):
    """Full neighbour list of ``atoms`` within ``r_cut`` Å.

    Parameters
    ----------
    atoms : ase.Atoms
        The structure (not modified).  Positions must be finite; a periodic cell must have
        non-zero volume.
    r_cut : float
        Cutoff radius in Å, > 0.
    min_distance : float or None, default=0.1
        Raise :class:`~hybridpot.InvalidStructureError` if two atoms (or an atom and an image)
        are closer than this (Å).  ``None`` disables the check.

    Returns
    -------
    NeighborList
    """
    r_cut = check_float(r_cut, "r_cut", owner, low=0.0)
    pos, cell, pbc, _ = check_atoms(atoms, owner=owner, name=name)
    n = len(pos)
    if n == 0:
        e = np.zeros(0, dtype=np.int64)
        return NeighborList(e, e, np.zeros((0, 3)), np.zeros((0, 3), np.int64), np.zeros(0),
                            np.zeros(1, np.int64), 0)
    i, j, D, S = _ase_pairs(pos, cell, pbc, r_cut)
    order = np.lexsort((j, i))
    i, j, D, S = i[order], j[order], D[order], S[order]
    d = np.sqrt(np.einsum("pk,pk->p", D, D))
    if min_distance is not None and d.size and d.min() < min_distance:
        p = int(np.argmin(d))
        raise InvalidStructureError(
            f"The '{name}' argument{' of ' + owner if owner else ''} has atoms {i[p]} and "
            f"{j[p]} only {d[p]:.4g} Å apart (minimum allowed {min_distance:g} Å); "
            f"overlapping atoms are not a physical structure.")
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(i, minlength=n), out=offsets[1:])
    return NeighborList(i, j, D, S, d, offsets, n)
