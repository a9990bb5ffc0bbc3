"""SO(3) descriptors: smooth power spectrum and bispectrum (MDP.jl / Bartók-Kondor-Csányi).

Both expand the neighbour density of atom ``i`` on spherical Bessel radial functions times
real spherical harmonics and contract the coefficients into rotation invariants.  The exact
constants (zeros of ``j_l``, normalisations, Clebsch-Gordan coefficients) come from
:mod:`._sympy_basis`; the compiled kernels are in :mod:`._so3_kernels`.
"""

from __future__ import annotations

import math
import numbers
from functools import lru_cache

import numpy as np

from .._exceptions import InvalidParameterError
from .._validation import check_float, check_int
from ._base import Descriptor, register_descriptor
from ._so3_kernels import bispectrum_kernel, power_spectrum_kernel
from ._sympy_basis import (bessel_zeros, coupling_table, coupling_triples,
                           radial_normalisation)

__all__ = ["PowerSpectrum", "Bispectrum", "radial_basis_exact", "radial_table",
           "harmonic_constants", "check_inner_switch", "pair_inner_switch",
           "INNER_MIN_DISTANCE"]

N_MAX_RANGE = (1, 20)
L_MAX_RANGE = (0, 12)
#: radial table nodes per unit of the largest ``z_lk`` (spline error ~ (1/40)^4 / 384)
_NODES_PER_ZERO = 40


def radial_basis_exact(r, r_cut, n_max, l_max, derivative=False, cutoff=True):
    """Exact radial functions ``R_lk(r) = g_lk(r) f_c(r)`` (scipy spherical Bessel functions).

    Parameters
    ----------
    r : array_like, shape (n,)
        Distances in Å, in ``[0, r_cut]``.
    r_cut : float
        Cutoff radius (Å).
    n_max, l_max : int
    derivative : bool, default=False
        Also return ``dR/dr`` (Å⁻¹ times the unit of ``R``).
    cutoff : bool, default=True
        Multiply by the cosine cutoff ``f_c``; ``False`` gives the orthonormal ``g_lk``.

    Returns
    -------
    R : ndarray, shape (n, l_max + 1, n_max)
        In Å^{-3/2}.
    dR : ndarray, shape (n, l_max + 1, n_max)
        Only with ``derivative=True``.
    """
    from scipy.special import spherical_jn

    r = np.asarray(r, dtype=np.float64)
    z = bessel_zeros(l_max, n_max)
    nrm = radial_normalisation(l_max, n_max) * r_cut ** -1.5
    x = r[:, None, None] * z[None] / r_cut
    ls = np.arange(l_max + 1)[None, :, None]
    j = spherical_jn(ls, x)
    if cutoff:
        fc = 0.5 * (1.0 + np.cos(np.pi * r / r_cut))[:, None, None]
        dfc = (-0.5 * np.pi / r_cut * np.sin(np.pi * r / r_cut))[:, None, None]
    else:
        fc, dfc = np.ones_like(r)[:, None, None], np.zeros_like(r)[:, None, None]
    R = nrm * j * fc
    if not derivative:
        return R
    dj = spherical_jn(ls, x, derivative=True) * (z / r_cut)[None]
    return R, nrm * (dj * fc + j * dfc)


@lru_cache(maxsize=8)  # a table is up to ~14 MB (n_max 20, l_max 12)
def radial_table(r_cut, n_max, l_max):
    """Cubic Hermite table of ``R_lk`` and ``dR_lk/dr`` on a uniform grid over ``[0, r_cut]``.

    Returns
    -------
    table : ndarray, shape (n_nodes, (l_max + 1) * n_max, 2)
        ``table[g, l*n_max + k] = (R_lk(g h), R'_lk(g h))``.
    h : float
        Grid spacing (Å).
    """
    z_max = float(bessel_zeros(l_max, n_max).max())
    G = max(64, int(math.ceil(_NODES_PER_ZERO * z_max)))
    h = r_cut / G
    r = np.arange(G + 1) * h
    R, dR = radial_basis_exact(r, r_cut, n_max, l_max, derivative=True)
    table = np.empty((G + 1, (l_max + 1) * n_max, 2))
    table[:, :, 0] = R.reshape(G + 1, -1)
    table[:, :, 1] = dR.reshape(G + 1, -1)
    table[-1] = 0.0  # R and R' vanish at r_cut exactly
    table.setflags(write=False)
    return table, h


@lru_cache(maxsize=None)
def harmonic_constants(l_max):
    """Constants of the real-harmonic recurrence, shape (3, l_max + 1, l_max + 1).

    ``[0, l, m] = sqrt((2l+1)/(4 pi) (l-m)!/(l+m)!)`` (times ``sqrt(2)`` for ``m > 0``),
    ``[1, l, m] = (2l-1)/(l-m)`` and ``[2, l, m] = (l+m-1)/(l-m)`` for ``l > m``.
    """
    K = np.zeros((3, l_max + 1, l_max + 1))
    for l in range(l_max + 1):
        for m in range(l + 1):
            K[0, l, m] = math.sqrt((2 * l + 1) / (4 * math.pi) * math.factorial(l - m)
                                   / math.factorial(l + m))
            if m > 0:
                K[0, l, m] *= math.sqrt(2.0)
            if l > m:
                K[1, l, m] = (2 * l - 1) / (l - m)
                K[2, l, m] = (l + m - 1) / (l - m)
    K.setflags(write=False)
    return K


#: overlap floor (Å) of a descriptor whose inner switch is on: closer pairs drop out of it, so
#: only a baseline's own floor (ZBL: :data:`hybridpot.baselines._pair.ZBL_MIN_DISTANCE`)
#: limits close collisions; 0.1 Å (:attr:`Descriptor.min_distance`) when off
INNER_MIN_DISTANCE = 1e-3

#: per-pair inner switch arrays when the switch is off (the kernels test their length)
NO_INNER = np.zeros(0)
NO_INNER.setflags(write=False)


def _inner_values(value, name, owner, n, species):
    msg = (f"The '{name}' parameter of {owner} must be None, one finite float (Å) or a "
           f"sequence of {n} (one per species {list(species)}). Got {value!r} instead.")
    if isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)):
        return np.full(n, check_float(value, name, owner, low=0.0, low_inclusive=True,
                                      finite=True))
    if isinstance(value, (str, bytes, dict, set)) or not hasattr(value, "__len__"):
        raise InvalidParameterError(msg)
    try:
        ndim = np.ndim(value)
    except ValueError:   # ragged nested sequence
        ndim = -1
    if ndim != 1 or len(value) != n:
        raise InvalidParameterError(msg)
    return np.array([check_float(v, f"{name}[{k}]", owner, low=0.0, low_inclusive=True,
                                 finite=True) for k, v in enumerate(value)])


def check_inner_switch(r_inner, d_inner, r_cut, species, owner):
    """Validated inner switch: ``None`` (off, both parameters None) or per-species arrays
    ``(s, d)`` (Å).  Raises :class:`InvalidParameterError` naming the parameter unless
    ``d_inner > 0``, ``r_inner - d_inner >= 0`` and ``r_inner + d_inner < r_cut`` for every
    species (so for every pair, whose ``s``, ``d`` are the means of its two species')."""
    if r_inner is None and d_inner is None:
        return None
    for name, value, other in (("r_inner", r_inner, "d_inner"), ("d_inner", d_inner, "r_inner")):
        if value is None:
            raise InvalidParameterError(
                f"The '{name}' parameter of {owner} must be given (one float or one per "
                f"species, in Å) with '{other}' (the inner switch needs both). Got None "
                f"with {other}={(d_inner if name == 'r_inner' else r_inner)!r}.")
    n = len(species)
    s = _inner_values(r_inner, "r_inner", owner, n, species)
    d = _inner_values(d_inner, "d_inner", owner, n, species)
    for k in range(n):
        if not d[k] > 0.0:
            raise InvalidParameterError(
                f"The 'd_inner' parameter of {owner} must be > 0 Å (the half-width of the "
                f"inner switching window) for every species. Got {d_inner!r} instead.")
        if s[k] - d[k] < 0.0:
            raise InvalidParameterError(
                f"The 'r_inner' parameter of {owner} must satisfy r_inner - d_inner >= 0 for "
                f"every species (the switching window [r_inner - d_inner, r_inner + d_inner] "
                f"starts at r >= 0). Got r_inner={r_inner!r}, d_inner={d_inner!r} instead.")
        if s[k] + d[k] >= r_cut:
            raise InvalidParameterError(
                f"The 'r_inner' parameter of {owner} must satisfy r_inner + d_inner < r_cut = "
                f"{r_cut:g} Å for every species (the switching window must end inside the "
                f"cutoff). Got r_inner={r_inner!r}, d_inner={d_inner!r} instead.")
    s.setflags(write=False)
    d.setflags(write=False)
    return s, d


def pair_inner_switch(inner, nl, species_idx):
    """Per-pair ``(s, d)`` arrays (n_pairs,) of the inner switch, the means of the two
    species' values (as LAMMPS SNAP's ``sinner`` / ``dinner``); empty arrays when off."""
    if inner is None:
        return NO_INNER, NO_INNER
    s, d = inner
    si = species_idx[nl.i]
    sj = species_idx[nl.j]
    return (np.ascontiguousarray(0.5 * (s[si] + s[sj])),
            np.ascontiguousarray(0.5 * (d[si] + d[sj])))


class _SO3Base(Descriptor):
    """Shared validation, channels and radial/angular constants of the SO(3) descriptors."""

    @property
    def min_distance(self):
        """float: overlap floor (Å): 0.1, or 0.001 with the inner switch (``r_inner``)."""
        return INNER_MIN_DISTANCE if self.r_inner is not None else Descriptor.min_distance

    def _check_params(self):
        owner = type(self).__name__
        n_max = check_int(self.n_max, "n_max", owner, low=N_MAX_RANGE[0], high=N_MAX_RANGE[1])
        l_max = check_int(self.l_max, "l_max", owner, low=L_MAX_RANGE[0], high=L_MAX_RANGE[1])
        return n_max, l_max

    def _validate(self):
        self._check_common()
        owner = type(self).__name__
        self._n_max, self._l_max = self._check_params()
        sw = self.species_weights
        if sw is None:
            self._weights = np.ones(len(self._species))
            self._n_ch = len(self._species)
        else:
            msg = (f"The 'species_weights' parameter of {owner} must be None or a sequence of "
                   f"{len(self._species)} finite floats (one per species {list(self._species)}"
                   f"). Got {sw!r} instead.")
            if isinstance(sw, (str, bytes, dict)) or not hasattr(sw, "__len__"):
                raise InvalidParameterError(msg)
            vals = list(sw)
            if len(vals) != len(self._species) or not all(
                    isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)
                    for v in vals):
                raise InvalidParameterError(msg)
            self._weights = np.array(vals, dtype=np.float64)
            self._n_ch = 1
        self._table, self._h = radial_table(self._r_cut, self._n_max, self._l_max)
        self._K = harmonic_constants(self._l_max)
        self._inner = check_inner_switch(self.r_inner, self.d_inner, self._r_cut,
                                         self._species, owner)

    def _n_channels(self):
        if self.species_weights is not None:
            return 1
        try:
            return len(self.species)
        except TypeError:
            return 1

    def _channels(self, species_idx):
        sidx = np.ascontiguousarray(species_idx, dtype=np.int64)
        if self.species_weights is None:
            return sidx, np.ones(len(sidx))
        return np.zeros(len(sidx), dtype=np.int64), self._weights[sidx]

    def _pair_switch(self, nl, species_idx):
        """Per-pair inner switch arrays for the kernels; (None, None) when off (the kernels'
        compiled specialisation without the switch)."""
        if self._inner is None:
            return None, None
        return pair_inner_switch(self._inner, nl, species_idx)

    def _run(self, nl, species_idx, mode, dE_dX):
        raise NotImplementedError  # pragma: no cover

    def _compute(self, nl, species_idx, gradients):
        X, dX, _ = self._run(nl, species_idx, 1 if gradients else 0, np.empty((0, 0, 0)))
        return X, (dX if gradients else None)

    def _backward(self, nl, species_idx, dE_dX):
        _, _, g = self._run(nl, species_idx, 2, np.ascontiguousarray(dE_dX)[None])
        return g[0]

    def _backward_many(self, nl, species_idx, dE_dX_stack):
        """Fused batched adjoint (hook of :meth:`Descriptor.backward_many`): the density and
        the per-pair basis are computed once for the ``K`` scalars; returns (K, n_pairs, 3)."""
        _, _, g = self._run(nl, species_idx, 2, np.ascontiguousarray(dE_dX_stack))
        return g


@register_descriptor
class PowerSpectrum(_SO3Base):
    r"""Smooth SO(3) power spectrum (SOAP), MDP.jl / Bartók-Kondor-Csányi definition.

    Neighbour basis (``r = |r_ij|``, ``r̂ = r_ij / r``, Å):

    .. math::

        u_{klm}(\mathbf r) = g_{lk}(r)\, Y_{lm}(\hat{\mathbf r})\, f_c(r), \qquad
        g_{lk}(r) = N_{lk}\, j_l(z_{lk} r / r_c), \qquad
        f_c(r) = \tfrac12 \left(1 + \cos(\pi r / r_c)\right)

    with ``z_lk`` the ``k``-th positive zero of the spherical Bessel function ``j_l``
    (``k = 0..n_max-1``) and ``N_lk = sqrt(2 / r_c^3) / |j_{l+1}(z_lk)|`` so that
    ``int_0^{r_c} g_lk g_lk' r^2 dr = delta_kk'`` (Å^{-3/2}).  ``Y_lm`` are the real,
    orthonormal spherical harmonics ``Y_l0 = Y_l^0``, ``Y_lm = sqrt(2) (-1)^m Re Y_l^m``,
    ``Y_l,-m = sqrt(2) (-1)^m Im Y_l^m`` (``m > 0``, Condon-Shortley ``Y_l^m``).  Both ``g_lk``
    and ``f_c`` vanish at ``r_c`` and ``f_c'(r_c) = 0``, so every feature and its first
    derivative go to zero (as ``(r_c - r)^3``) when a neighbour leaves the sphere.

    Density coefficients with species-resolved channels ``c`` (default; one channel per
    entry of ``species``, ``w = 1``)

    .. math:: a^{c}_{iklm} = \sum_{j \ne i,\ Z_j = c} u_{klm}(\mathbf r_{ij})

    or, with ``species_weights``, a single channel ``a_{iklm} = sum_j w_{Z_j} u_klm(r_ij)``.
    The central atom is not part of its density, and the descriptor does not depend on the
    central atom's species (models split by element themselves).  Power spectrum

    .. math:: p_i(ck, c'k', l) = \sum_{m=-l}^{l} a^{c}_{iklm}\, a^{c'}_{ik'lm}

    over the symmetry-unique channel pairs ``(c, k) <= (c', k')`` (flat index
    ``q = c n_max + k``) and ``l = 0..l_max``; no per-``l`` normalisation.  Feature order:
    ``(q, q')`` pairs in row-major upper-triangular order, ``l`` fastest; so
    ``n_features = Q (Q + 1) / 2 * (l_max + 1)`` with ``Q = n_channels * n_max``.

    Parameters
    ----------
    species : list of str
        Chemical symbols the descriptor knows (order defines the channels).
    r_cut : float
        Cutoff radius in Å, > 0.
    n_max : int, default=8
        Number of radial functions per ``l``, in [1, 20].
    l_max : int, default=6
        Largest angular momentum, in [0, 12].
    species_weights : sequence of float or None, default=None
        One weight per species; when given, a single weighted density channel replaces the
        species-resolved channels.
    r_inner, d_inner : float, sequence of float or None, default=None
        Inner switch (Å; one value, or one per species, a pair using the mean of its two
        species' values, as LAMMPS SNAP's ``sinner`` / ``dinner``): every neighbour's term is
        multiplied by ``f_in(r)`` (see Notes), so neighbours closer than ``r_inner - d_inner``
        drop out and the features go smoothly to their isolated-atom values at short range
        (where a repulsive baseline such as ZBL should take over).  Both None (default): off,
        results bit-identical to a descriptor without the switch.  Needs ``d_inner > 0``,
        ``r_inner - d_inner >= 0`` and ``r_inner + d_inner < r_cut``.  With the switch on,
        atoms may come as close as 0.001 Å (0.1 Å otherwise), as for a ZBL baseline
        (high-energy collisions).

    Notes
    -----
    Inner switch (with ``r_inner`` / ``d_inner``; ``s``, ``d`` the pair's values):
    ``u_klm`` is multiplied by ``f_in(r) = 0`` for ``r <= s - d``,
    ``(1 + sin(pi/2 (r - s)/d)) / 2`` for ``|r - s| < d`` and 1 above (LAMMPS SNAP's
    ``switchinnerflag`` function), in the values, the Jacobian and the adjoint alike.
    Choosing the window: start it (``s - d``) where the baseline is already strongly
    repulsive and let the baseline's range reach ``s`` or beyond (switched-out pairs get no
    repulsion from the ML part); ``s + d`` near the shortest distances of the training set
    (a window below every training pair leaves the fit unchanged and only removes the
    extrapolation).  Linear model on 24 EMT Cu28Ni4 frames near equilibrium, isotropic
    compression to V/V0 = 0.22 (EMT: +24 eV/atom): -1015 eV/atom without the switch,
    +87 eV/atom with ``s = 2.3``, ``d = 0.25`` Å and ``ZBL(r_inner=1.5, r_cut=2.3)``.

    Radial functions are evaluated with a cubic Hermite spline through the exact values and
    derivatives on ``40 * max(z_lk)`` uniform nodes (relative error < 1e-8); the Jacobian is
    the exact derivative of the interpolant.  Real harmonics and their Cartesian gradients
    use polynomial recurrences on ``r_ij / r``.  The adjoint forms ``dE/da`` once per atom and
    contracts it with ``du/dr_ij`` per pair, so its cost does not grow with ``n_features``.

    Examples
    --------
    >>> from ase.build import bulk
    >>> from hybridpot.descriptors import PowerSpectrum
    >>> desc = PowerSpectrum(species=["Cu"], r_cut=5.0, n_max=8, l_max=6)
    >>> desc.compute(bulk("Cu", "fcc", a=3.61)).shape
    (1, 252)
    """

    def __init__(self, *, species, r_cut, n_max=8, l_max=6, species_weights=None,
                 r_inner=None, d_inner=None):
        self.species = species
        self.r_cut = r_cut
        self.n_max = n_max
        self.l_max = l_max
        self.species_weights = species_weights
        self.r_inner = r_inner
        self.d_inner = d_inner

    @property
    def n_features(self):
        """int: ``Q (Q + 1) / 2 * (l_max + 1)``, ``Q = n_channels * n_max``."""
        n_max, l_max = self._check_params()
        Q = self._n_channels() * n_max
        return Q * (Q + 1) // 2 * (l_max + 1)

    def _validate(self):
        super()._validate()
        self._features = _ps_feature_index(self._n_ch, self._n_max, self._l_max)

    def _run(self, nl, species_idx, mode, dE_dX):
        chan, wts = self._channels(species_idx)
        fq1, fq2, fl, I1, I2 = self._features
        return power_spectrum_kernel(nl.offsets, nl.j, nl.D, chan, wts, 1.0 / self._h,
                                     self._h, self._table, self._n_max, self._l_max,
                                     self._n_ch, self._K, fq1, fq2, fl, I1, I2, mode, dE_dX,
                                     *self._pair_switch(nl, species_idx))


@lru_cache(maxsize=64)
def _ps_feature_index(n_ch, n_max, l_max):
    """Feature ``(q1, q2, l)`` arrays and the Jacobian gather indices ``I1, I2 (n_ch, F)``.

    For a neighbour of channel ``c``, ``d p(q1, q2, l) = [c(q1) = c] T[k1, l, q2]
    + [c(q2) = c] T[k2, l, q1]`` with ``T`` flat ``(k * (l_max + 1) + l) * Q + q``; a
    mismatching channel points at the zero slot ``n_max * (l_max + 1) * Q``.
    """
    Q = n_ch * n_max
    L = l_max + 1
    rows = [(q1, q2, l) for q1 in range(Q) for q2 in range(q1, Q) for l in range(L)]
    a = np.array(rows, dtype=np.int64).reshape(-1, 3)
    q1, q2, l = (np.ascontiguousarray(a[:, k]) for k in range(3))
    zero = n_max * L * Q
    I1 = np.full((n_ch, len(a)), zero, dtype=np.int64)
    I2 = np.full((n_ch, len(a)), zero, dtype=np.int64)
    for c in range(n_ch):
        m1 = q1 // n_max == c
        m2 = q2 // n_max == c
        I1[c, m1] = ((q1[m1] % n_max) * L + l[m1]) * Q + q2[m1]
        I2[c, m2] = ((q2[m2] % n_max) * L + l[m2]) * Q + q1[m2]
    return q1, q2, l, I1, I2


@register_descriptor
class Bispectrum(_SO3Base):
    r"""SO(3) bispectrum on the same density as :class:`PowerSpectrum`.

    With the density coefficients ``a^c_iklm`` of :class:`PowerSpectrum` (spherical Bessel
    radial functions times real spherical harmonics times the cosine cutoff, species-resolved
    channels or a single ``species_weights`` channel; flat channel index ``q = c n_max + k``)

    .. math::

        b_i(q, q', l, l_1, l_2) = \sum_{m, m_1, m_2} C^{l m}_{l_1 m_1 l_2 m_2}\,
            a_{i q l m}\, a_{i q' l_1 m_1}\, a_{i q' l_2 m_2}

    where ``C`` are the real-basis coupling coefficients

    .. math::

        C^{lm}_{l_1 m_1 l_2 m_2} = \sum_{\mu \mu_1 \mu_2}
            \langle l_1 \mu_1 l_2 \mu_2 | l \mu \rangle\, U^{l}_{m\mu}\,
            \overline{U^{l_1}_{m_1\mu_1}}\, \overline{U^{l_2}_{m_2\mu_2}}

    built from the complex Clebsch-Gordan coefficients (sympy) and the unitary
    complex-to-real transform ``Y_lm = sum_mu U^l_{m mu} Y_l^mu``; then ``b`` equals the
    complex bispectrum ``sum <l1 mu1 l2 mu2|l mu> conj(c_lmu) c'_l1mu1 c'_l2mu2`` exactly.
    Triples: ``l1 <= l2 <= l_max``, ``|l1 - l2| <= l <= min(l1 + l2, l_max)`` and
    ``l + l1 + l2`` even (for odd sums the real-basis coefficients are imaginary and the
    invariants are parity-odd pseudoscalars; they are excluded).  All ordered channel pairs
    ``(q, q')`` are kept, except that for ``q = q'`` (where ``b`` is symmetric under any
    permutation of ``(l, l1, l2)`` up to a constant) only ``l <= l1`` is kept.  Feature order:
    ``q`` slowest, then ``q'``, then the triples in the order of
    :func:`hybridpot.descriptors._sympy_basis.coupling_triples`.
    ``n_features = Q (Q - 1) T + Q T_s`` with ``T`` triples and ``T_s`` of them with
    ``l <= l1``.

    Parameters
    ----------
    species : list of str
        Chemical symbols the descriptor knows (order defines the channels).
    r_cut : float
        Cutoff radius in Å, > 0.
    n_max : int, default=5
        Number of radial functions per ``l``, in [1, 20].
    l_max : int, default=4
        Largest angular momentum, in [0, 12].  The first use of a new ``l_max`` generates the
        Clebsch-Gordan coefficients with sympy (about 1 s for 6, 40 s for 12; cached).
    species_weights : sequence of float or None, default=None
        One weight per species; when given, a single weighted density channel replaces the
        species-resolved channels.
    r_inner, d_inner : float, sequence of float or None, default=None
        Inner switch (Å; one value, or one per species, a pair using the mean of its two
        species' values, as LAMMPS SNAP's ``sinner`` / ``dinner``): every neighbour's term is
        multiplied by ``f_in(r)`` (see Notes), so neighbours closer than ``r_inner - d_inner``
        drop out and the features go smoothly to their isolated-atom values at short range
        (where a repulsive baseline such as ZBL should take over).  Both None (default): off,
        results bit-identical to a descriptor without the switch.  Needs ``d_inner > 0``,
        ``r_inner - d_inner >= 0`` and ``r_inner + d_inner < r_cut``.  With the switch on,
        atoms may come as close as 0.001 Å (0.1 Å otherwise), as for a ZBL baseline
        (high-energy collisions).

    Notes
    -----
    Same radial spline, harmonic recurrences and inner switch (``r_inner`` / ``d_inner``) as
    :class:`PowerSpectrum`.  Per atom the
    coupled products ``Z(q', l, l1, l2)_m = sum C a_q'l1m1 a_q'l2m2`` are formed once; the
    adjoint back-propagates ``dE/db`` through them to ``dE/da`` once per atom and then
    contracts with ``du/dr_ij`` per pair.  The per-pair Jacobian costs
    ``O(n_features * l_max)`` per pair and is much more expensive than the adjoint.

    Examples
    --------
    >>> from ase.build import bulk
    >>> from hybridpot.descriptors import Bispectrum
    >>> desc = Bispectrum(species=["Cu"], r_cut=4.5, n_max=2, l_max=2)
    >>> desc.n_features
    26
    >>> desc.compute(bulk("Cu", "fcc", a=3.61)).shape
    (1, 26)
    """

    def __init__(self, *, species, r_cut, n_max=5, l_max=4, species_weights=None,
                 r_inner=None, d_inner=None):
        self.species = species
        self.r_cut = r_cut
        self.n_max = n_max
        self.l_max = l_max
        self.species_weights = species_weights
        self.r_inner = r_inner
        self.d_inner = d_inner

    @property
    def n_features(self):
        """int: ``Q (Q - 1) T + Q T_s`` (see the class docstring)."""
        n_max, l_max = self._check_params()
        Q = self._n_channels() * n_max
        triples = coupling_triples(l_max)
        T = len(triples)
        Ts = sum(1 for (l, l1, _) in triples if l <= l1)
        return Q * (Q - 1) * T + Q * Ts

    def _validate(self):
        super()._validate()
        self._coupling = coupling_table(self._l_max)
        self._features = _bs_feature_index(self._n_ch, self._n_max, self._l_max)

    def _run(self, nl, species_idx, mode, dE_dX):
        chan, wts = self._channels(species_idx)
        triples, eoff, emi, elm1, elm2, ecoef = self._coupling
        fq, fqp, ft, fc, fk, fcp, fkp = self._features
        return bispectrum_kernel(nl.offsets, nl.j, nl.D, chan, wts, 1.0 / self._h, self._h,
                                 self._table, self._n_max, self._l_max, self._n_ch, self._K,
                                 np.ascontiguousarray(triples[:, 0]),
                                 np.ascontiguousarray(triples[:, 1]),
                                 np.ascontiguousarray(triples[:, 2]), eoff, emi, elm1, elm2,
                                 ecoef, fq, fqp, ft, fc, fk, fcp, fkp, mode, dE_dX,
                                 *self._pair_switch(nl, species_idx))


@lru_cache(maxsize=64)
def _bs_feature_index(n_ch, n_max, l_max):
    """Feature arrays ``(q, q', t)`` and the channel / radial split of ``q`` and ``q'``."""
    Q = n_ch * n_max
    triples = coupling_triples(l_max)
    rows = [(q, qp, t) for q in range(Q) for qp in range(Q)
            for t, (l, l1, _) in enumerate(triples) if q != qp or l <= l1]
    a = np.array(rows, dtype=np.int64).reshape(-1, 3)
    q, qp, t = (np.ascontiguousarray(a[:, k]) for k in range(3))
    return q, qp, t, q // n_max, q % n_max, qp // n_max, qp % n_max
