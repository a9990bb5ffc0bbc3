"""A descriptor that concatenates the features of other descriptors (e.g. 2-body + many-body).

The members share one neighbour list built for the largest cutoff; each member sees the
pairs inside its own cutoff (an order-preserving sub-list), and its per-pair Jacobian rows
and adjoint contributions are scattered back onto the shared pairs, so the stacked Jacobian
obeys the layout of :mod:`hybridpot.descriptors._base` exactly.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from .._exceptions import InvalidParameterError, ModelFormatError
from ..neighbors import NeighborList
from ._base import Descriptor, _contract_members, register_descriptor

__all__ = ["DescriptorStack"]


def _sub_list(nl, inside):
    """The pairs of ``nl`` where ``inside`` is True, in the same order (a NeighborList)."""
    i = nl.i[inside]
    counts = np.bincount(i, minlength=nl.n_atoms)
    offsets = np.zeros(nl.n_atoms + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    return NeighborList(np.ascontiguousarray(i), np.ascontiguousarray(nl.j[inside]),
                        np.ascontiguousarray(nl.D[inside]), np.ascontiguousarray(nl.S[inside]),
                        np.ascontiguousarray(nl.d[inside]), offsets, nl.n_atoms)


@register_descriptor
class DescriptorStack(Descriptor):
    r"""Concatenation of the features of several descriptors of the same species.

    For member descriptors :math:`D^{(1)}, \dots, D^{(M)}` with cutoffs :math:`r_c^{(m)}` and
    block scale factors :math:`s_m` (``scales``), the feature vector of atom :math:`i` is

    .. math:: X_i = \left[\, s_1 X^{(1)}_i,\ s_2 X^{(2)}_i,\ \dots,\ s_M X^{(M)}_i \,\right]

    (blocks in the order of ``descriptors``; ``n_features = sum_m n_features^{(m)}``) and the
    cutoff is :math:`r_c = \max_m r_c^{(m)}` (Å).  Every Jacobian block is the member's own,

    .. math:: \frac{\partial X_i}{\partial \mathbf r_{ij}}
              = \left[\, s_m \frac{\partial X^{(m)}_i}{\partial \mathbf r_{ij}} \,\right]_m,

    zero for a pair farther than the member's cutoff; the strain derivative follows from the
    shared per-pair layout (:mod:`hybridpot.descriptors._base`).  The adjoint splits
    ``dE_dX`` by blocks and sums the members' adjoints,
    :math:`\partial E/\partial \mathbf r = \sum_m \mathrm{backward}^{(m)}(s_m\, \partial E /
    \partial X^{(m)})`.

    Typical use: a short-ranged many-body descriptor plus a longer-ranged 2-body block (radial
    symmetry functions), as GAP models of Si and Mo add a 2-body term.  ``scales`` matters for
    distance-based kernels (the SE length scale of
    :class:`~hybridpot.regression.SparseGPRegressor` acts on the whole vector); linear and
    quadratic Bayesian regressors with the default RMS column scaling are invariant to it.

    Parameters
    ----------
    descriptors : list of Descriptor
        The members, at least one; all must have the same ``species`` (same order).  They
        are not modified (the stack validates and uses them in place; clone them to reuse
        them elsewhere with different settings).
    scales : sequence of float or None, default=None
        One positive factor per member multiplying its features (dimensionless); None means
        all 1.

    Attributes
    ----------
    species : list of str
        The members' species.
    r_cut : float
        Largest member cutoff (Å), the neighbour-list cutoff.
    n_features : int
        Sum of the members' feature counts.

    Examples
    --------
    >>> from ase.build import bulk
    >>> from hybridpot.descriptors import ACSF, DescriptorStack, PowerSpectrum
    >>> ps = PowerSpectrum(species=["Si"], r_cut=5.0, n_max=4, l_max=3)
    >>> g2 = ACSF(species=["Si"], r_cut=6.5)
    >>> stack = DescriptorStack([g2, ps])
    >>> stack.r_cut, stack.n_features == g2.n_features + ps.n_features
    (6.5, True)
    >>> stack.compute(bulk("Si", "diamond", a=5.43)).shape[1] == stack.n_features
    True
    """

    def __init__(self, descriptors, *, scales=None):
        self.descriptors = descriptors
        self.scales = scales

    # -- validation --------------------------------------------------------------------------
    def _validate(self):
        owner = type(self).__name__
        members = self.descriptors
        if (isinstance(members, (str, bytes, dict, Descriptor))
                or not hasattr(members, "__len__") or len(members) == 0):
            # (message built only here: the repr of estimators is slow, and _validate runs
            # on every compute / backward)
            raise InvalidParameterError(
                f"The 'descriptors' parameter of {owner} must be a non-empty list of hybridpot "
                f"descriptors (e.g. [ACSF(...), PowerSpectrum(...)]). Got {members!r} instead.")
        members = list(members)
        for k, m in enumerate(members):
            if not isinstance(m, Descriptor):
                raise InvalidParameterError(
                    f"The 'descriptors' parameter of {owner} must hold hybridpot descriptors; "
                    f"entry {k} is a {type(m).__name__} ({m!r}).")
        for m in members:
            m._validate()
        species = tuple(members[0]._species)
        for k, m in enumerate(members[1:], start=1):
            if tuple(m._species) != species:
                raise InvalidParameterError(
                    f"The 'descriptors' parameter of {owner} must hold descriptors with the "
                    f"same species in the same order; descriptor 0 "
                    f"({type(members[0]).__name__}) has {list(species)}, descriptor {k} "
                    f"({type(m).__name__}) has {list(m._species)}.")
        sc = self.scales
        if sc is None:
            scales = np.ones(len(members))
        else:
            ok = not isinstance(sc, (str, bytes, dict)) and hasattr(sc, "__len__")
            vals = list(sc) if ok else []
            if not ok or len(vals) != len(members) or not all(
                    isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_))
                    and math.isfinite(v) and v > 0 for v in vals):
                raise InvalidParameterError(
                    f"The 'scales' parameter of {owner} must be None or a sequence of "
                    f"{len(members)} finite floats > 0 (one per descriptor). Got {sc!r} "
                    "instead.")
            scales = np.array(vals, dtype=np.float64)
        self._members = members
        self._scales = scales
        self._species = species
        self._r_cuts = np.array([m._r_cut for m in members], dtype=np.float64)
        self._r_cut = float(self._r_cuts.max())
        sizes = [int(m.n_features) for m in members]
        edges = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
        self._slices = [slice(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]
        self._n_feat = int(edges[-1])

    # -- attributes --------------------------------------------------------------------------
    @property
    def species(self):
        """list of str: the members' species (validated)."""
        self._validate()
        return list(self._species)

    @property
    def r_cut(self):
        """float: the largest member cutoff in Å (read-only)."""
        self._validate()
        return self._r_cut

    @property
    def n_features(self):
        """int: sum of the members' ``n_features``."""
        self._validate()
        return self._n_feat

    @property
    def min_distance(self):
        """float: the largest of the members' minimum interatomic distances (Å): 0.001 when
        every member has its inner switch on, else 0.1 (no members: 0.1)."""
        members = self.descriptors if isinstance(self.descriptors, (list, tuple)) else ()
        return max((m.min_distance for m in members if isinstance(m, Descriptor)),
                   default=Descriptor.min_distance)

    def block_slices(self):
        """Column range of every member in the stacked features.

        Returns
        -------
        list of slice
            ``X[:, block_slices()[m]] == scales[m] * descriptors[m].compute(atoms)``.
        """
        self._validate()
        return list(self._slices)

    # -- members on their own pairs ----------------------------------------------------------
    def _member_lists(self, nl):
        """Per member: (sub neighbour list, pair mask or None when every pair is inside)."""
        out = []
        for rc in self._r_cuts:
            inside = nl.d < rc
            if inside.all():
                out.append((nl, None))
            else:
                out.append((_sub_list(nl, inside), inside))
        return out

    def _compute(self, nl, species_idx, gradients):
        X = np.empty((nl.n_atoms, self._n_feat))
        d_drij = np.empty((nl.n_pairs, 3, self._n_feat)) if gradients else None
        for m, (sub, inside), sl, s in zip(self._members, self._member_lists(nl), self._slices,
                                           self._scales):
            Xm, dm = m._compute(sub, species_idx, gradients)
            X[:, sl] = Xm if s == 1.0 else s * Xm
            if gradients:
                dm = dm if s == 1.0 else s * dm
                if inside is None:
                    d_drij[:, :, sl] = dm
                else:
                    d_drij[inside, :, sl] = dm
                    d_drij[~inside, :, sl] = 0.0
        return X, d_drij

    def _backward(self, nl, species_idx, dE_dX):
        g = np.zeros((nl.n_pairs, 3))
        for m, (sub, inside), sl, s in zip(self._members, self._member_lists(nl), self._slices,
                                           self._scales):
            gm = m._backward(sub, species_idx, np.ascontiguousarray(s * dE_dX[:, sl]))
            if inside is None:
                g += gm
            else:
                g[inside] += gm
        return g

    def _backward_many(self, nl, species_idx, dE_dX_stack):
        """Batched adjoint (hook of :meth:`Descriptor.backward_many`): every member's fused
        kernel when it has one, else its Jacobian contracted with the ``K`` scalars; returns
        ``dE/d r_ij`` of shape (K, n_pairs, 3)."""
        K = dE_dX_stack.shape[0]
        g = np.zeros((K, nl.n_pairs, 3))
        for m, (sub, inside), sl, s in zip(self._members, self._member_lists(nl), self._slices,
                                           self._scales):
            Gm = np.ascontiguousarray(s * dE_dX_stack[:, :, sl])
            fused = getattr(m, "_backward_many", None)
            if fused is not None:
                gm = fused(sub, species_idx, Gm)
            else:
                _, dm = m._compute(sub, species_idx, True)
                gm = _contract_members(sub.i, np.ascontiguousarray(dm), Gm)
            if inside is None:
                g += gm
            else:
                g[:, inside] += gm
        return g

    # -- serialisation -----------------------------------------------------------------------
    def to_dict(self):
        """JSON-serialisable description with the members' own :meth:`to_dict` nested."""
        members = self.descriptors
        if not isinstance(members, (list, tuple)) or not all(
                isinstance(m, Descriptor) for m in members):
            self._validate()  # raises the typed error
        sc = self.scales
        if isinstance(sc, np.ndarray):
            sc = sc.tolist()
        elif sc is not None:
            sc = [float(v) for v in sc]
        return {"class": type(self).__name__,
                "params": {"descriptors": [m.to_dict() for m in members], "scales": sc}}

    @classmethod
    def _from_params(cls, params):
        """Rebuild from the ``params`` of :meth:`to_dict` (used by ``descriptor_from_dict``)."""
        from ._base import descriptor_from_dict

        members = params.get("descriptors") if isinstance(params, dict) else None
        if not isinstance(members, list) or not members:
            raise ModelFormatError(
                f"A {cls.__name__} entry needs 'params.descriptors', a non-empty list of "
                f"descriptor descriptions. Got {members!r}.")
        return cls([descriptor_from_dict(m) for m in members], scales=params.get("scales"))
