"""Descriptor base class, the Jacobian container and the registry.

Derivative layout (documented once, used everywhere)
---------------------------------------------------
A descriptor maps each atom ``i`` to a feature vector ``X[i]`` of length ``n_features`` that
depends on its neighbours only through the pair vectors ``r_ij = r_j + S_ij @ cell - r_i``
(``|r_ij| < r_cut``, from :func:`hybridpot.neighbors.neighbor_list`).  The Jacobian is therefore
stored *per neighbour pair*:

``DescriptorGradients.d_drij[p, a, f] = dX[pair_i[p], f] / d r_ij[a]``   (units: feature / Å)

with ``p`` running over the pairs of the neighbour list (sorted by ``pair_i``; several images of
one atom are separate pairs).  Derivatives with respect to atomic positions follow as

``dX[i, f]/dr_k[a] = sum_{p: pair_i=i, pair_j=k} d_drij[p, a, f] - delta_ik sum_{p: pair_i=i} d_drij[p, a, f]``

(:meth:`DescriptorGradients.dense`) and the derivative with respect to a homogeneous strain
``eps`` (positions and cell mapped by ``1 + eps``) as

``dX[i, f]/d eps[a, b] = sum_{p: pair_i=i} d_drij[p, a, f] * r_ij[p, b]``

(:attr:`DescriptorGradients.strain`, shape ``(n_atoms, 3, 3, n_features)``).

Adjoint
-------
For a scalar ``E = sum_i sum_f dE_dX[i, f] X[i, f]`` (or the linearisation of any ``E(X)``),
:meth:`Descriptor.backward` returns ``dE/dr`` (``(n_atoms, 3)``, eV/Å when ``dE_dX`` is in eV per
feature unit) and ``dE/d eps`` (``(3, 3)``, eV) without building ``d_drij``; forces are
``-dE/dr`` and the ASE stress is ``dE/d eps / volume`` (eV/Å³).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from ase import Atoms
from numba import njit
from sklearn.base import BaseEstimator

from .._exceptions import InvalidParameterError
from .._validation import check_atoms, check_float, check_species_list
from ..neighbors import neighbor_list

__all__ = ["Descriptor", "DescriptorGradients", "ChunkedGradients", "gradient_chunks",
           "register_descriptor", "DESCRIPTORS", "descriptor_from_dict"]

DESCRIPTORS = {}


def register_descriptor(cls):
    """Class decorator: make ``cls`` loadable by name from a model file.

    Parameters
    ----------
    cls : type
        A :class:`Descriptor` subclass, registered under ``cls.__name__`` in
        :data:`DESCRIPTORS`.

    Returns
    -------
    type
        ``cls`` itself.
    """
    DESCRIPTORS[cls.__name__] = cls
    return cls


def descriptor_from_dict(d):
    """Rebuild a descriptor from :meth:`Descriptor.to_dict` output (no code is executed).

    Parameters
    ----------
    d : dict
        ``{"class": name, "params": {...}}`` with ``name`` in :data:`DESCRIPTORS`.

    Returns
    -------
    Descriptor

    Raises
    ------
    hybridpot.ModelFormatError
        For an unknown class, ``params`` that is not a dict, or parameters the class does not
        take.
    """
    from .._exceptions import ModelFormatError

    name = d.get("class") if isinstance(d, dict) else None
    if name not in DESCRIPTORS:
        raise ModelFormatError(
            f"Unknown descriptor class {name!r}; known: {sorted(DESCRIPTORS)}.")
    params = d.get("params", {})
    if not isinstance(params, dict):
        raise ModelFormatError(
            f"The 'params' of a {name} descriptor description must be a dict. "
            f"Got {type(params).__name__} instead.")
    cls = DESCRIPTORS[name]
    try:
        if hasattr(cls, "_from_params"):  # composite descriptors rebuild their members
            return cls._from_params(params)
        return cls(**params)
    except TypeError as e:   # a parameter the class does not take, or a missing one
        raise ModelFormatError(
            f"Cannot rebuild a {name} descriptor from parameters {sorted(params)}: {e}.") \
            from None


@dataclass
class DescriptorGradients:
    """Sparse per-pair Jacobian of per-atom descriptors (layout in the module docstring).

    Attributes
    ----------
    pair_i, pair_j : ndarray of int64, shape (n_pairs,)
        Centre atom and neighbour atom of each pair.
    rij : ndarray of float64, shape (n_pairs, 3)
        Pair vectors ``r_j + S @ cell - r_i`` (Å).
    d_drij : ndarray of float64, shape (n_pairs, 3, n_features)
        ``dX[pair_i[p], f] / d rij[p, a]`` (feature unit / Å).
    n_atoms : int
        Atoms of the structure.
    """

    pair_i: np.ndarray
    pair_j: np.ndarray
    rij: np.ndarray
    d_drij: np.ndarray
    n_atoms: int
    _strain: np.ndarray = field(default=None, repr=False)

    @property
    def n_features(self):
        """int: length of each atom's descriptor vector."""
        return int(self.d_drij.shape[2])

    @property
    def strain(self):
        """ndarray, shape (n_atoms, 3, 3, n_features): ``dX[i, f] / d eps[a, b]``."""
        if self._strain is None:
            out = np.zeros((self.n_atoms, 3, 3, self.n_features))
            contrib = self.d_drij[:, :, None, :] * self.rij[:, None, :, None]
            np.add.at(out, self.pair_i, contrib)
            self._strain = out
        return self._strain

    def dense(self):
        """Dense position Jacobian, shape (n_atoms, n_features, n_atoms, 3): dX[i,f]/dr_k[a]."""
        n, F = self.n_atoms, self.n_features
        out = np.zeros((n, n, 3, F))
        np.add.at(out, (self.pair_i, self.pair_j), self.d_drij)
        np.add.at(out, (self.pair_i, self.pair_i), -self.d_drij)
        return out.transpose(0, 3, 1, 2)

    def position_rows(self, coef=None):
        """Sum over centres: ``d(sum_i X_i)/dr_k``, shape (n_atoms, 3, n_features).

        Parameters
        ----------
        coef : ndarray, shape (n_atoms, n_features), optional
            A per-centre weighting: the rows are then ``sum_i coef[i] * dX_i/dr_k``.

        Returns
        -------
        ndarray, shape (n_atoms, 3, n_features)
            Feature unit / Å (times the unit of ``coef``).
        """
        g = self.d_drij if coef is None else self.d_drij * coef[self.pair_i][:, None, :]
        out = np.zeros((self.n_atoms, 3, self.n_features))
        np.add.at(out, self.pair_j, g)
        np.add.at(out, self.pair_i, -g)
        return out

    def vjp(self, dE_dX):
        """Contract the Jacobian with ``dE_dX`` (the adjoint of :meth:`Descriptor.backward`).

        Parameters
        ----------
        dE_dX : array_like, shape (n_atoms, n_features)
            Derivative of a scalar (e.g. an energy, eV) with respect to each descriptor.

        Returns
        -------
        dE_dr : ndarray, shape (n_atoms, 3)
            eV/Å when ``dE_dX`` is in eV per feature unit.
        dE_deps : ndarray, shape (3, 3)
            eV.
        """
        g = np.einsum("paf,pf->pa", self.d_drij, np.asarray(dE_dX)[self.pair_i])
        return _scatter_pair_gradient(self.pair_i, self.pair_j, self.rij, g, self.n_atoms)


#: default bound (bytes) on the per-pair Jacobian of one chunk of :class:`ChunkedGradients`
GRADIENT_CHUNK_BYTES = 1 << 26


def _centre_ranges(offsets, max_pairs):
    """Consecutive centre ranges ``[a0, a1)`` with at most ``max_pairs`` pairs each (at least
    one centre per range), from neighbour-list ``offsets`` (n_atoms + 1,)."""
    n = offsets.shape[0] - 1
    bounds = [0]
    while bounds[-1] < n:   # loop over chunks (not atoms): a binary search per chunk
        a0 = bounds[-1]
        a1 = int(np.searchsorted(offsets, offsets[a0] + max_pairs, side="right")) - 1
        bounds.append(min(n, max(a1, a0 + 1)))
    return bounds


class ChunkedGradients:
    """Per-pair Jacobian of one structure, computed on demand a range of centre atoms at a time.

    Same pairs (``pair_i``, ``pair_j``, ``rij``), ``n_atoms`` and ``n_features`` as
    :class:`DescriptorGradients`; :meth:`chunks` yields :class:`DescriptorGradients` of
    consecutive centre ranges (global atom indices, at most ``max_bytes`` of ``d_drij`` each
    unless a single centre has more pairs), whose sum over chunks is the full Jacobian (every
    row depends on the pairs of its own centre only).  Consumers that reduce pairs (force,
    virial and design rows) iterate over the chunks, so memory stays at one chunk instead of
    ``n_pairs * 3 * n_features`` floats (2 GB for PowerSpectrum(F=180) on 10^4 Cu atoms).
    Any other attribute (``d_drij``, ``strain``, ``dense``, ``vjp``, ...) builds the full
    :class:`DescriptorGradients` once and delegates to it.

    Made by :meth:`Descriptor.compute_chunked_gradients` (and by
    :meth:`Descriptor.compute_bounded` for a Jacobian above its bound).
    """

    def __init__(self, descriptor, nl, species_idx, max_bytes):
        self._descriptor = descriptor
        self._nl = nl
        self._sidx = species_idx
        self._full = None
        self.max_bytes = int(max_bytes)
        self.pair_i, self.pair_j, self.rij = nl.i, nl.j, nl.D
        self.n_atoms = int(nl.n_atoms)

    @property
    def n_features(self):
        return int(self._descriptor.n_features)

    def chunks(self):
        """Yield :class:`DescriptorGradients` of consecutive centre ranges (global indices)."""
        from ..neighbors import NeighborList

        nl = self._nl
        if self._full is not None:
            yield self._full
            return
        max_pairs = max(1, self.max_bytes // (24 * max(1, self.n_features)))
        off = nl.offsets
        bounds = _centre_ranges(off, max_pairs)
        for a0, a1 in zip(bounds[:-1], bounds[1:]):
            p0, p1 = int(off[a0]), int(off[a1])
            if p1 == p0:
                continue
            # renumbered sub-structure: the centres a0..a1-1, then their outside neighbours
            # (no pairs), so the descriptor kernel visits O(chunk) atoms, not n_atoms
            k = a1 - a0
            jj = nl.j[p0:p1]
            inside = (jj >= a0) & (jj < a1)
            outer, inv = np.unique(jj[~inside], return_inverse=True)
            jl = np.empty_like(jj)
            jl[inside] = jj[inside] - a0
            jl[~inside] = k + inv.reshape(-1)
            sub_off = np.concatenate([off[a0:a1 + 1] - p0,
                                      np.full(outer.shape[0], p1 - p0, dtype=np.int64)])
            sub = NeighborList(nl.i[p0:p1] - a0, jl, nl.D[p0:p1], nl.S[p0:p1], nl.d[p0:p1],
                               sub_off, k + int(outer.shape[0]))
            sidx = np.concatenate([self._sidx[a0:a1], self._sidx[outer]])
            _, d = self._descriptor._compute(sub, sidx, True)
            yield DescriptorGradients(nl.i[p0:p1], nl.j[p0:p1], nl.D[p0:p1], d, nl.n_atoms)

    def materialize(self):
        """The full :class:`DescriptorGradients` (built once)."""
        if self._full is None:
            nl = self._nl
            _, d = self._descriptor._compute(nl, self._sidx, True)
            self._full = DescriptorGradients(nl.i.copy(), nl.j.copy(), nl.D.copy(), d,
                                             nl.n_atoms)
        return self._full

    def __getattr__(self, name):
        if name.startswith("__") or name in ("_descriptor", "_nl", "_sidx", "_full"):
            raise AttributeError(name)
        return getattr(self.materialize(), name)


def gradient_chunks(g):
    """The :class:`DescriptorGradients` pieces of ``g`` (``g`` itself unless chunked)."""
    return g.chunks() if isinstance(g, ChunkedGradients) else (g,)


@njit(cache=True)
def _contract_members(pair_i, d_drij, G):
    """``g[k, p, a] = sum_f d_drij[p, a, f] * G[k, pair_i[p], f]`` (no gathered copy of G)."""
    K = G.shape[0]
    n_pairs, _, F = d_drij.shape
    g = np.zeros((K, n_pairs, 3))
    for p in range(n_pairs):
        i = pair_i[p]
        for k in range(K):
            for a in range(3):
                s = 0.0
                for f in range(F):
                    s += d_drij[p, a, f] * G[k, i, f]
                g[k, p, a] = s
    return g


def _scatter_pair_gradients(pair_i, pair_j, g, n_atoms):
    """``dE/dr`` (K, n_atoms, 3) of ``K`` members from ``g[k, p] = dE_k/d r_ij[p]``
    (K, n_pairs, 3): ``+g`` to the neighbour ``j``, ``-g`` to the centre ``i`` of every pair,
    as one sparse product with the pair incidence matrix."""
    import scipy.sparse

    K, npair = g.shape[0], g.shape[1]
    S = scipy.sparse.csr_matrix(   # +1 at (j_p, p), -1 at (i_p, p)
        (np.concatenate([np.ones(npair), -np.ones(npair)]),
         (np.concatenate([pair_j, pair_i]), np.tile(np.arange(npair), 2))),
        shape=(n_atoms, npair))
    gt = np.ascontiguousarray(g.transpose(1, 0, 2)).reshape(npair, K * 3)
    return np.asarray(S @ gt).reshape(n_atoms, K, 3).transpose(1, 0, 2)


@njit(cache=True)
def _pair_virials(pair_i, pair_j, rij, g, n_atoms, w_centre):
    """Per-atom virials ``W[k, a, b]`` (eV), shape (n_atoms, 3, 3), from
    ``g[p] = dE/d r_ij[p]`` (n_pairs, 3): each pair's ``g[p, a] * rij[p, b]`` goes a share
    ``w_centre`` to its centre ``pair_i[p]`` and ``1 - w_centre`` to its neighbour
    ``pair_j[p]`` (0.5: LAMMPS's ``stress/atom`` tally of pair terms; 0: the centroid form),
    so ``W.sum(0) == dE/d eps``."""
    W = np.zeros((n_atoms, 3, 3))
    w_j = 1.0 - w_centre
    for p in range(pair_i.shape[0]):
        i = pair_i[p]
        j = pair_j[p]
        for a in range(3):
            ga = g[p, a]
            for b in range(3):
                v = ga * rij[p, b]
                W[i, a, b] += w_centre * v
                W[j, a, b] += w_j * v
    return W


#: ``atomic_virials`` / ``partition`` values and the centre's share of each pair term
VIRIAL_PARTITIONS = {"half": 0.5, "centroid": 0.0}


def _virial_share(value, name, owner):
    """The centre's share of :data:`VIRIAL_PARTITIONS` for ``value`` (True means "half"), or
    None when ``value`` asks for no per-atom virials (False, numpy False or None)."""
    if value is None or isinstance(value, (bool, np.bool_)):
        return 0.5 if value else None
    if isinstance(value, str) and value in VIRIAL_PARTITIONS:
        return VIRIAL_PARTITIONS[value]
    raise InvalidParameterError(
        f"The '{name}' argument of {owner} must be True, 'half' or 'centroid'. Got {value!r} "
        f"instead (False or None: no per-atom virials).")


def _scatter_pair_gradient(pair_i, pair_j, rij, g, n_atoms):
    """From ``g[p] = dE/d r_ij[p]`` (n_pairs, 3) to ``(dE/dr (n_atoms, 3), dE/deps (3, 3))``."""
    dE_dr = np.empty((n_atoms, 3))
    for a in range(3):  # bincount: an order of magnitude faster than np.add.at
        dE_dr[:, a] = (np.bincount(pair_j, weights=g[:, a], minlength=n_atoms)
                       - np.bincount(pair_i, weights=g[:, a], minlength=n_atoms))
    dE_deps = g.T @ rij
    return dE_dr, dE_deps


class Descriptor(BaseEstimator):
    """Base class of rotation-, translation- and permutation-invariant atomic descriptors.

    Subclasses take keyword-only hyperparameters in ``__init__`` and only store them (the
    scikit-learn convention); :meth:`_validate` checks them at first use and raises
    :class:`~hybridpot.InvalidParameterError`.  They implement

    - ``_validate(self)``: check hyperparameters, prepare cached constants;
    - ``n_features`` (property);
    - ``_compute(self, nl, species_idx, gradients)`` returning ``X`` of shape
      (n_atoms, n_features) and, when ``gradients`` is True, ``d_drij`` of shape
      (n_pairs, 3, n_features) (else None);
    - ``_backward(self, nl, species_idx, dE_dX)`` returning ``dE/d r_ij`` of shape (n_pairs, 3).

    ``nl`` is a :class:`hybridpot.neighbors.NeighborList` for ``self.r_cut`` and ``species_idx``
    the index of each atom's element in ``self.species``.  Attributes ``species`` (list of
    symbols) and ``r_cut`` (Å) are required of every subclass.
    """

    #: minimum interatomic distance (Å) below which a structure is rejected
    min_distance = 0.1

    # -- to be provided by subclasses -------------------------------------------------------
    def _validate(self):  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def n_features(self):  # pragma: no cover - abstract
        """int: length of each atom's descriptor vector (columns of ``compute``'s ``X``)."""
        raise NotImplementedError

    def _compute(self, nl, species_idx, gradients):  # pragma: no cover - abstract
        raise NotImplementedError

    def _backward(self, nl, species_idx, dE_dX):  # pragma: no cover - abstract
        raise NotImplementedError

    # -- shared machinery -------------------------------------------------------------------
    def _check_common(self):
        owner = type(self).__name__
        self._species = check_species_list(self.species, "species", owner)
        self._r_cut = check_float(self.r_cut, "r_cut", owner, low=0.0)
        if self._r_cut < 0.1:   # no neighbours at all (e.g. a cutoff in metres); overflows
            raise InvalidParameterError(
                f"The 'r_cut' parameter of {owner} must be at least 0.1 Å (a cutoff in Å, e.g. "
                f"5.0). Got {self.r_cut!r} instead.")

    def _prepare(self, atoms):
        """Validated species indices and neighbour list of ``atoms``.

        The last structure's are kept (read-only) and reused while the positions, cell, pbc,
        atomic numbers and the cutoff are unchanged: a :meth:`compute` followed by a
        :meth:`backward` of the same structure (one force evaluation) builds one list.
        """
        self._validate()
        owner = type(self).__name__
        if not isinstance(atoms, Atoms):
            check_atoms(atoms, species=self._species, owner=owner)   # raises the typed error
        key = (np.ascontiguousarray(atoms.positions).tobytes(),
               np.ascontiguousarray(atoms.cell.array).tobytes(),
               np.asarray(atoms.pbc, dtype=bool).tobytes(),
               np.ascontiguousarray(atoms.numbers).tobytes(),
               self._r_cut, tuple(self._species), float(self.min_distance))
        memo = self.__dict__.get("_prepared_memo")
        if memo is not None and memo[0] == key:
            return memo[1], memo[2]
        pos, cell, pbc, sidx = check_atoms(atoms, species=self._species, owner=owner)
        nl = neighbor_list(atoms, self._r_cut, min_distance=self.min_distance, owner=owner,
                           _checked=(pos, cell, pbc))
        for a in (sidx, nl.i, nl.j, nl.D, nl.S, nl.d, nl.offsets):
            a.setflags(write=False)
        self._prepared_memo = (key, nl, sidx)
        return nl, sidx

    def __getstate__(self):
        state = super().__getstate__()
        state.pop("_prepared_memo", None)   # a cache, not state (pickling for Dask)
        return state

    def compute(self, atoms, gradients=False):
        """Per-atom descriptors of one structure.

        Parameters
        ----------
        atoms : ase.Atoms
            Structure (not modified).  Periodic in any subset of directions; cells smaller
            than ``r_cut`` are handled with periodic images.
        gradients : bool, default=False
            Also return the sparse Jacobian.

        Returns
        -------
        X : ndarray of float64, shape (n_atoms, n_features)
        dX : DescriptorGradients
            Only when ``gradients=True``; layout in :mod:`hybridpot.descriptors._base`.

        Raises
        ------
        hybridpot.InvalidParameterError
            For invalid hyperparameters (checked at first use).
        hybridpot.InvalidStructureError
            For ``atoms`` that is not an ase.Atoms, non-finite positions or cell, a
            degenerate periodic cell, or atoms closer than ``min_distance`` (0.1 Å).
        hybridpot.UnknownSpeciesError
            For an element outside ``species``.
        """
        nl, sidx = self._prepare(atoms)
        X, d_drij = self._compute(nl, sidx, bool(gradients))
        if not gradients:
            return X
        # copies: the neighbour list is a read-only cache (see _prepare)
        return X, DescriptorGradients(nl.i.copy(), nl.j.copy(), nl.D.copy(), d_drij, nl.n_atoms)

    def compute_chunked_gradients(self, atoms, max_bytes=None):
        """The Jacobian of :meth:`compute` as a :class:`ChunkedGradients` (built on demand,
        ``max_bytes`` of ``d_drij`` per range of centre atoms) for big structures.

        Parameters
        ----------
        atoms : ase.Atoms
        max_bytes : int, optional
            Bound on the per-pair Jacobian of one chunk (a centre with more pairs forms a
            chunk of its own); default ``GRADIENT_CHUNK_BYTES`` (64 MiB).

        Returns
        -------
        ChunkedGradients
        """
        from .._validation import check_int

        max_bytes = check_int(GRADIENT_CHUNK_BYTES if max_bytes is None else max_bytes,
                              "max_bytes", type(self).__name__, low=1)
        nl, sidx = self._prepare(atoms)
        return ChunkedGradients(self, nl, sidx, max_bytes)

    def compute_bounded(self, atoms, max_bytes=None):
        """Descriptors and Jacobian of one structure, the Jacobian chunked only when it is big.

        The whole per-pair Jacobian (``n_pairs * 3 * n_features`` floats) is built with the
        values in one pass, as :meth:`compute` with ``gradients=True`` does, when it fits in
        ``max_bytes``; otherwise it is a :class:`ChunkedGradients` (built range by range on
        demand, the values computed apart).  Both give the same numbers.

        Parameters
        ----------
        atoms : ase.Atoms
        max_bytes : int, optional
            Bound on the per-pair Jacobian held at once; default ``GRADIENT_CHUNK_BYTES``
            (64 MiB).

        Returns
        -------
        X : ndarray of float64, shape (n_atoms, n_features)
        dX : DescriptorGradients or ChunkedGradients
        """
        from .._validation import check_int

        max_bytes = check_int(GRADIENT_CHUNK_BYTES if max_bytes is None else max_bytes,
                              "max_bytes", type(self).__name__, low=1)
        nl, sidx = self._prepare(atoms)
        if nl.n_pairs * 24 * self.n_features <= max_bytes:
            return self.compute(atoms, gradients=True)
        X, _ = self._compute(nl, sidx, False)
        return X, ChunkedGradients(self, nl, sidx, max_bytes)

    def backward(self, atoms, dE_dX, atomic_virials=False):
        """Adjoint: gradient of ``E = sum(dE_dX * X)`` without building the Jacobian.

        Parameters
        ----------
        atoms : ase.Atoms
            Structure (checked as in :meth:`compute`).
        dE_dX : array_like, shape (n_atoms, n_features)
            Derivative of a scalar (e.g. the ML energy, eV) with respect to each descriptor.
        atomic_virials : bool or {"half", "centroid"}, default=False
            Also return the per-atom virials (a third result); True means ``"half"``.

        Returns
        -------
        dE_dr : ndarray, shape (n_atoms, 3)
            ``dE/dr_k`` (eV/Å); forces are ``-dE_dr``.
        dE_deps : ndarray, shape (3, 3)
            ``dE/d eps`` (eV) under homogeneous strain; ASE stress is ``dE_deps / volume``.
        virials : ndarray, shape (n_atoms, 3, 3)
            Only with ``atomic_virials``: ``W[k, a, b]`` (eV), a partition of ``dE_deps``
            over atoms (``W.sum(0) == dE_deps``; not symmetric per atom in general).
            ``"half"``: each pair term ``dE/d r_ij[a] * r_ij[b]`` goes half to the centre
            ``i`` and half to the neighbour ``j``, as LAMMPS tallies the per-atom virial of
            its many-body pair styles (``pair_style snap``): LAMMPS ``compute stress/atom``
            (bar·Å³, ``units metal``) is ``W * 1.6021765e6`` with ``xy`` the ``W[k, 1, 0]``
            component; the ASE per-atom stress is ``W / volume``.  ``"centroid"``: the whole
            term goes to the neighbour ``j`` (``W_k = sum_i dE_i/dr_k ⊗ r_ik``, ``r_ik =
            r_k - r_i``, with ``E_i`` the centre's energy): the per-atom virial of the heat
            flux of many-body potentials (Fan et al., PRB 92, 094301 (2015)).

        Raises
        ------
        hybridpot.InvalidParameterError
            For ``dE_dX`` of another shape or with non-finite values.
        hybridpot.InvalidStructureError, hybridpot.UnknownSpeciesError
            As :meth:`compute`.
        """
        share = _virial_share(atomic_virials, "atomic_virials", f"{type(self).__name__}.backward")
        nl, sidx = self._prepare(atoms)
        dE_dX = np.asarray(dE_dX, dtype=np.float64)
        if dE_dX.shape != (len(atoms), self.n_features):
            raise InvalidParameterError(
                f"The 'dE_dX' argument of {type(self).__name__}.backward must have shape "
                f"(n_atoms, n_features) = {(len(atoms), self.n_features)}. "
                f"Got {dE_dX.shape} instead.")
        if not np.all(np.isfinite(dE_dX)):
            raise InvalidParameterError(
                f"The 'dE_dX' argument of {type(self).__name__}.backward must be finite.")
        g = self._backward(nl, sidx, np.ascontiguousarray(dE_dX))
        if share is not None:
            return (*_scatter_pair_gradient(nl.i, nl.j, nl.D, g, nl.n_atoms),
                    _pair_virials(nl.i, nl.j, nl.D, np.ascontiguousarray(g), nl.n_atoms,
                                  share))
        return _scatter_pair_gradient(nl.i, nl.j, nl.D, g, nl.n_atoms)

    def backward_many(self, atoms, dE_dX_stack):
        """Batched adjoint: :meth:`backward` for ``K`` scalars at once, in one pass.

        Used for committee / posterior uncertainties (the mean model and the members share one
        neighbour list and one descriptor-derivative evaluation).  Subclasses may provide a
        fused kernel ``_backward_many(nl, species_idx, dE_dX_stack)`` returning ``dE/d r_ij``
        of shape (K, n_pairs, 3); otherwise the per-pair Jacobian is computed once and
        contracted with every member (cost: one ``compute(gradients=True)`` plus
        ``K * n_pairs * 3 * n_features`` multiply-adds).

        Parameters
        ----------
        atoms : ase.Atoms
            Structure (checked as in :meth:`compute`).
        dE_dX_stack : array_like, shape (K, n_atoms, n_features)
            ``K`` derivatives of scalars (eV per feature unit), e.g. one per committee member.

        Returns
        -------
        dE_dr : ndarray, shape (K, n_atoms, 3)
            eV/Å per member.
        dE_deps : ndarray, shape (K, 3, 3)
            eV per member.

        Raises
        ------
        hybridpot.InvalidParameterError
            For ``dE_dX_stack`` of another shape or with non-finite values.
        hybridpot.InvalidStructureError, hybridpot.UnknownSpeciesError
            As :meth:`compute`.
        """
        nl, sidx = self._prepare(atoms)
        G = np.asarray(dE_dX_stack, dtype=np.float64)
        if G.ndim != 3 or G.shape[1:] != (len(atoms), self.n_features):
            raise InvalidParameterError(
                f"The 'dE_dX_stack' argument of {type(self).__name__}.backward_many must have "
                f"shape (K, n_atoms, n_features) = (K, {len(atoms)}, {self.n_features}). "
                f"Got {G.shape} instead.")
        if not np.all(np.isfinite(G)):
            raise InvalidParameterError(
                f"The 'dE_dX_stack' argument of {type(self).__name__}.backward_many must be "
                "finite.")
        fused = getattr(self, "_backward_many", None)
        d_drij = None if fused is not None else self._compute(nl, sidx, True)[1]
        # rows in groups whose per-pair output (rows x n_pairs x 3 floats, plus the fused
        # kernel's work arrays and the scatter's copy) stays near GRADIENT_CHUNK_BYTES; at
        # least 8 rows a group, which keeps the per-pair basis of a fused kernel amortised
        # (3 GP committees of 16 samples on 4000 atoms: 52 rows, 380 -> ~100 MB, same time)
        step = max(8, GRADIENT_CHUNK_BYTES // max(1, 24 * nl.n_pairs))
        K = G.shape[0]
        dE_dr = np.empty((K, nl.n_atoms, 3))
        dE_deps = np.empty((K, 3, 3))
        for r0 in range(0, K, step):
            Gk = np.ascontiguousarray(G[r0:r0 + step])
            if fused is not None:
                g = fused(nl, sidx, Gk)
            else:
                g = _contract_members(nl.i, np.ascontiguousarray(d_drij), Gk)
            dE_deps[r0:r0 + step] = np.einsum("kpa,pb->kab", g, nl.D)
            dE_dr[r0:r0 + step] = _scatter_pair_gradients(nl.i, nl.j, g, nl.n_atoms)
            del g
        return dE_dr, dE_deps

    def compute_many(self, structures, gradients=False):
        """:meth:`compute` over a list of structures.

        Parameters
        ----------
        structures : iterable of ase.Atoms
            Structures (not modified).
        gradients : bool, default=False
            Also compute the sparse Jacobians.

        Returns
        -------
        list
            One result of :meth:`compute` per structure: ``X`` arrays, or ``(X, dX)`` tuples
            with ``gradients=True``.
        """
        return [self.compute(a, gradients=gradients) for a in structures]

    # -- serialisation ----------------------------------------------------------------------
    def to_dict(self):
        """JSON-serialisable description: ``{"class": name, "params": get_params()}``."""
        params = {}
        for k, v in self.get_params(deep=False).items():
            if isinstance(v, np.ndarray):
                v = v.tolist()
            elif isinstance(v, tuple):
                v = list(v)
            params[k] = v
        return {"class": type(self).__name__, "params": params}
