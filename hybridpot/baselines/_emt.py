r"""Effective medium theory (EMT) as a numba baseline, numerically equal to ASE's ``EMT``.

A compiled re-implementation of :class:`ase.calculators.emt.EMT` (Jacobsen, Stoltze and Nørskov,
Surf. Sci. 366, 394 (1996), in the ASAP/ASE formulation): same parameter table, same
Fermi-function cut-off, same energy zero, so energies, per-atom energies, forces and stress
agree with ASE to rounding (~1e-12 relative), at a small fraction of the cost (no Python loop
over atoms or pairs; neighbours from :func:`hybridpot.neighbors.neighbor_list`).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from .._exceptions import InvalidParameterError, UnknownSpeciesError
from .._validation import check_atoms
from ..neighbors import neighbor_list
from ._base import Baseline, no_parameter_gradients, register_baseline, voigt

__all__ = ["EMT", "EMT_PARAMETERS"]

#: EMT parameters per element, in atomic units as published:
#: ``(E0 [eV], s0 [bohr], V0 [eV], eta2 [1/bohr], kappa [1/bohr], lambda [1/bohr],
#: n0 [1/bohr^3])``.  Al, Cu, Ag, Au, Ni, Pd, Pt: Jacobsen, Stoltze, Nørskov (1996);
#: H, C, N, O: the ad-hoc values ASE ships (not for serious use).  Identical to
#: ``ase.calculators.emt.parameters`` (checked by the tests).
EMT_PARAMETERS = {
    "Al": (-3.28, 3.00, 1.493, 1.240, 2.000, 1.169, 0.00700),
    "Cu": (-3.51, 2.67, 2.476, 1.652, 2.740, 1.906, 0.00910),
    "Ag": (-2.96, 3.01, 2.132, 1.652, 2.790, 1.892, 0.00547),
    "Au": (-3.80, 3.00, 2.321, 1.674, 2.873, 2.182, 0.00703),
    "Ni": (-4.44, 2.60, 3.673, 1.669, 2.757, 1.948, 0.01030),
    "Pd": (-3.90, 2.87, 2.773, 1.818, 3.107, 2.155, 0.00688),
    "Pt": (-5.85, 2.90, 4.067, 1.812, 3.145, 2.192, 0.00802),
    "H": (-3.21, 1.31, 0.132, 2.652, 2.790, 3.892, 0.00547),
    "C": (-3.50, 1.81, 0.332, 1.652, 2.790, 1.892, 0.01322),
    "N": (-5.10, 1.88, 0.132, 1.652, 2.790, 1.892, 0.01222),
    "O": (-4.60, 1.95, 0.332, 1.652, 2.790, 1.892, 0.00850),
}

#: ``beta = (16 pi / 3)^(1/3) / sqrt(2)`` with the historical rounding of ASAP/ASE
BETA = 1.809

# columns of the per-type parameter array used by the kernels (lengths in Å)
_E0, _S0, _V0, _ETA2, _KAPPA, _LAMBDA, _N0, _INV12G1, _NHV = range(9)
_N_COLUMNS = 9


# ------------------------------------------------------------------------------------------
# numba kernels (small, pure; plain-numpy references in tests/test_emt_baseline.py)
# ------------------------------------------------------------------------------------------
@njit(cache=True)
def emt_pair_terms(i, j, d, t, par, chi, rc, acut, n_atoms):
    """Per-pair EMT terms from a full neighbour list.

    Parameters
    ----------
    i, j : (n_pairs,) int64
        Centre and neighbour atoms.
    d : (n_pairs,) float64
        Distances (Å).
    t : (n_atoms,) int64
        Type index of each atom (row of ``par``).
    par : (n_types, 9) float64
        Columns ``E0, s0, V0, eta2, kappa, lambda, n0, 1/(12 gamma1), -V0/(2 gamma2)``
        (eV and Å).
    chi : (n_types, n_types) float64
        ``n0[b] / n0[a]``.
    rc, acut : float
        Fermi cut-off midpoint (Å) and steepness (1/Å).
    n_atoms : int

    Returns
    -------
    sigma1 : (n_atoms,)
        Neighbour density ``sigma1_i = sum_j chi_ij w(r) exp(-eta2_j (r - beta s0_j))``.
    e_as : (n_atoms,)
        Each atom's half of the pair (atomic-sphere correction) energy (eV).
    ds1_i, ds1_j : (n_pairs,)
        ``d sigma1_i / d r`` and ``d sigma1_j / d r`` through this pair (1/Å).
    g_as : (n_pairs,)
        ``d/dr`` of the pair energy ``e_ij + e_ji`` (eV/Å).
    """
    n = d.shape[0]
    sigma1 = np.zeros(n_atoms)
    e_as = np.zeros(n_atoms)
    ds1_i = np.empty(n)
    ds1_j = np.empty(n)
    g_as = np.empty(n)
    for p in range(n):
        a = t[i[p]]
        b = t[j[p]]
        r = d[p]
        w = 1.0 / (1.0 + math.exp(acut * (r - rc)))
        dlw = acut * (w - 1.0)  # d ln w / dr
        c = chi[a, b]
        eta_a = par[a, _ETA2]
        eta_b = par[b, _ETA2]
        kap_a = par[a, _KAPPA]
        kap_b = par[b, _KAPPA]
        s1i = math.exp(-eta_b * (r - BETA * par[b, _S0])) * c * w
        es = par[a, _NHV] * math.exp(-kap_b * (r / BETA - par[b, _S0])) * c * w
        if a == b:  # chi = 1: both directions are equal (saves two exponentials)
            s1j = s1i
            eo = es
        else:
            s1j = math.exp(-eta_a * (r - BETA * par[a, _S0])) / c * w
            eo = par[b, _NHV] * math.exp(-kap_a * (r / BETA - par[a, _S0])) / c * w
        sigma1[i[p]] += s1i
        ds1_i[p] = s1i * (dlw - eta_b)
        ds1_j[p] = s1j * (dlw - eta_a)
        e_as[i[p]] += 0.5 * (es + eo)
        g_as[p] = es * (dlw - kap_b / BETA) + eo * (dlw - kap_a / BETA)
    return sigma1, e_as, ds1_i, ds1_j, g_as


@njit(cache=True)
def emt_embedding(sigma1, t, par):
    """Cohesive-function energy ``E_c`` + reference term, and ``dE/d sigma1`` per atom.

    With ``s = -ln(sigma1 / (12 gamma1)) / (beta eta2)``:
    ``E_i = E0 (1 + lambda s) e^{-lambda s} + 6 V0 e^{-kappa s}`` (eV); 0 for an atom without
    neighbours (``sigma1 = 0``, the ``s -> inf`` limit).

    Returns
    -------
    e_c : (n_atoms,) eV
    dE_dsigma : (n_atoms,) eV
    """
    n = sigma1.shape[0]
    e_c = np.zeros(n)
    dE_ds = np.zeros(n)
    for k in range(n):
        s1 = sigma1[k]
        if s1 <= 0.0:
            continue
        q = par[t[k]]
        ds = -math.log(s1 * q[_INV12G1]) / (BETA * q[_ETA2])
        x = q[_LAMBDA] * ds
        ex = math.exp(-x)
        ek = 6.0 * q[_V0] * math.exp(-q[_KAPPA] * ds)
        e_c[k] = q[_E0] * (1.0 + x) * ex + ek
        dE_ds[k] = (-q[_E0] * q[_LAMBDA] * x * ex - q[_KAPPA] * ek) / (-BETA * q[_ETA2] * s1)
    return e_c, dE_ds


@njit(cache=True)
def emt_forces(i, j, D, d, ds1_i, ds1_j, g_as, dE_dsigma, n_atoms):
    """``dE/dr`` per atom and the virial ``dE/d eps`` (3, 3) from the per-pair EMT terms.

    The full derivative of the energy along pair ``p`` is
    ``G = g_as + dE/dsigma1_i ds1_i + dE/dsigma1_j ds1_j`` (symmetric in ``i <-> j``); as every
    pair appears twice in the full list, it is applied to the centre only and the virial
    takes half of it.
    """
    dE_dr = np.zeros((n_atoms, 3))
    vir = np.zeros((3, 3))
    for p in range(d.shape[0]):
        c = (g_as[p] + dE_dsigma[i[p]] * ds1_i[p] + dE_dsigma[j[p]] * ds1_j[p]) / d[p]
        for a in range(3):
            ga = c * D[p, a]
            dE_dr[i[p], a] -= ga
            for b in range(3):
                vir[a, b] += 0.5 * ga * D[p, b]
    return dE_dr, vir


# ------------------------------------------------------------------------------------------
# set-up (per set of elements)
# ------------------------------------------------------------------------------------------
class _EMTSetup:
    """Cut-off and per-type parameters for one set of elements (internal)."""

    def __init__(self, rc, rc_list, acut, par, chi):
        self.rc = rc              # Fermi midpoint (Å)
        self.rc_list = rc_list    # neighbour-list cutoff (Å)
        self.acut = acut          # Fermi steepness (1/Å)
        self.par = par            # (n_types, 9)
        self.chi = chi            # (n_types, n_types)


def _cutoff(symbols, asap_cutoff):
    from ase.units import Bohr

    table = symbols if asap_cutoff else EMT_PARAMETERS
    s0_max = max(EMT_PARAMETERS[s][1] for s in table) * Bohr
    r1nn = BETA * s0_max                  # fcc nearest-neighbour distance
    rc = r1nn * 0.5 * (math.sqrt(3.0) + 2.0)  # between 3rd and 4th neighbour shells
    r4nn = 2.0 * r1nn
    acut = math.log(1.0 / 1e-4 - 1.0) / (r4nn - rc)  # w(r4nn) = 1e-4
    rc_list = rc * 1.045 if asap_cutoff else rc + 0.5
    return rc, rc_list, acut


def _setup(symbols, asap_cutoff):
    from ase.units import Bohr

    rc, rc_list, acut = _cutoff(symbols, asap_cutoff)
    nt = len(symbols)
    par = np.empty((nt, _N_COLUMNS))
    shells = np.array([12.0, 6.0, 24.0])
    for a, s in enumerate(symbols):
        e0, s0, v0, eta2, kappa, lam, n0 = EMT_PARAMETERS[s]
        s0 *= Bohr
        eta2 /= Bohr
        kappa /= Bohr
        # reference fcc crystal: first three neighbour shells, with the cut-off function
        r = BETA * s0 * np.sqrt([1.0, 2.0, 3.0])
        x = shells / 12.0 / (1.0 + np.exp(acut * (r - rc)))
        gamma1 = float(x @ np.exp(-eta2 * (r - BETA * s0)))
        gamma2 = float(x @ np.exp(-kappa / BETA * (r - BETA * s0)))
        par[a] = (e0, s0, v0, eta2, kappa, lam / Bohr, n0 / Bohr ** 3,
                  1.0 / (12.0 * gamma1), -0.5 * v0 / gamma2)
    chi = par[None, :, _N0] / par[:, None, _N0]
    return _EMTSetup(rc, rc_list, acut, par, np.ascontiguousarray(chi))


@register_baseline
class EMT(Baseline):
    r"""Effective medium theory, numerically identical to ``ase.calculators.emt.EMT``.

    A numba drop-in for ``ASEBaseline(ase.calculators.emt.EMT())`` (same energies, per-atom
    energies, forces and stress to ~1e-12 relative) for Al, Cu, Ag, Au, Ni, Pd, Pt and the
    ad-hoc H, C, N, O parameters of ASE (:data:`EMT_PARAMETERS`).  Per atom ``i`` of element
    ``a`` with neighbours ``j`` of element ``b`` at distance ``r = r_ij`` (Å), lengths and
    inverse lengths converted from bohr:

    .. math::

        w(r) = \frac{1}{1 + e^{a_c (r - r_c)}},\qquad
        \chi_{ab} = n_{0,b} / n_{0,a},

        \sigma_{1,i} = \sum_j \chi_{ab}\, w(r)\, e^{-\eta_{2,b}(r - \beta s_{0,b})},\qquad
        s_i = -\frac{\ln\left(\sigma_{1,i} / 12\gamma_{1,a}\right)}{\beta \eta_{2,a}},

        E_i = E_{0,a}(1 + \lambda_a s_i)e^{-\lambda_a s_i} + 6 V_{0,a} e^{-\kappa_a s_i}
        + \tfrac12 \sum_j \left(\epsilon_{ij} + \epsilon_{ji}\right) - E_{0,a},

        \epsilon_{ij} = -\frac{V_{0,a}}{2\gamma_{2,a}}\,\chi_{ab}\, w(r)\,
        e^{-\kappa_b (r/\beta - s_{0,b})},

    and ``E = sum_i E_i`` (eV; zero for isolated atoms and, with the ``- E0`` shift, near zero
    for the perfect fcc crystal at its equilibrium ``s0``).  ``beta = 1.809``;
    ``gamma1 = sum_shell (n_k / 12) w(r_k) e^{-eta2 (r_k - beta s0)}`` and
    ``gamma2 = sum_shell (n_k / 12) w(r_k) e^{-kappa/beta (r_k - beta s0)}`` over the first
    three fcc shells ``r_k = beta s0 sqrt(k)``, ``n_k = 12, 6, 24``.  The cut-off midpoint
    ``r_c = beta s0_max (sqrt(3) + 2) / 2`` (between the 3rd and 4th fcc shells) and the
    steepness ``a_c = ln(1e4 - 1) / (2 beta s0_max - r_c)`` (so ``w = 1e-4`` at the 4th
    shell) use the largest ``s0`` of the whole table (of the elements present if
    ``asap_cutoff``).  Neighbours are counted up to ``r_c + 0.5`` Å (``1.045 r_c`` if
    ``asap_cutoff``), where ``w`` is not 0: exactly as in ASE the energy and forces jump when a
    neighbour crosses that distance; ``w`` there is ~7e-6 by default (a Cu-Ni dimer: 1.5e-5 eV,
    2.4e-4 eV/Å at 5.88 Å) but ~3e-3 with ``asap_cutoff`` (3.1e-3 eV, 0.054 eV/Å at 4.98 Å,
    between the 3rd and 4th fcc shells of Cu).

    Forces are ``-dE/dr_k`` (eV/Å) and the stress is ASE's ``(1/V) dE/d eps`` (eV/Å³,
    Voigt order xx, yy, zz, yz, xz, xy) for cells periodic in 3-D (None otherwise; unlike
    ASE's EMT, which gives it for any cell of rank 3: for a slab with ``pbc=(True, True,
    False)`` set ``pbc=True`` with a vacuum wider than the cut-off, which gives ASE's value).
    No fittable parameters (``param_names == ()``).

    Parameters
    ----------
    asap_cutoff : bool, default=False
        As ASE's ``asap_cutoff``: take the cut-off from the elements present in each structure
        (ASAP behaviour) instead of from the whole parameter table.

    Notes
    -----
    There is no LAMMPS equivalent (:meth:`lammps_commands` raises).  Structures containing an
    element outside :data:`EMT_PARAMETERS` raise :class:`~hybridpot.UnknownSpeciesError`.

    Examples
    --------
    >>> from ase.build import bulk
    >>> from hybridpot.baselines import EMT
    >>> res = EMT().compute(bulk("Ni", "fcc", a=3.52, cubic=True))
    >>> sorted(res)
    ['energies', 'energy', 'forces', 'stress']
    """

    def __init__(self, *, asap_cutoff=False):
        self.asap_cutoff = asap_cutoff

    def _check(self):
        if not isinstance(self.asap_cutoff, (bool, np.bool_)):
            raise InvalidParameterError(
                f"The 'asap_cutoff' parameter of EMT must be a bool. Got "
                f"{self.asap_cutoff!r} instead.")
        return bool(self.asap_cutoff)

    def _types(self, atoms):
        """Sorted element symbols present, the type index of each atom and the set-up."""
        from ase.data import chemical_symbols

        asap = self._check()
        numbers = np.asarray(atoms.numbers, dtype=np.int64)
        znums, t = np.unique(numbers, return_inverse=True)
        symbols = []
        for z in znums:
            s = chemical_symbols[z] if 0 <= z < len(chemical_symbols) else str(z)
            if s not in EMT_PARAMETERS:
                atom = int(np.flatnonzero(numbers == z)[0])
                raise UnknownSpeciesError(
                    f"EMT has no parameters for element {s!r} (atom {atom}); supported "
                    f"elements: {sorted(EMT_PARAMETERS)}.")
            symbols.append(s)
        key = (asap, tuple(symbols))
        cache = self.__dict__.setdefault("_setup_cache", {})
        if key not in cache:
            cache[key] = _setup(tuple(symbols), asap)
        return cache[key], t.astype(np.int64).ravel()

    def compute(self, atoms, *, forces=True, stress=True, virials=False):
        """Energy (eV), per-atom energies (eV), forces (eV/Å) and stress (eV/Å³).

        Parameters
        ----------
        atoms : ase.Atoms
            Any periodicity and cell (including cells smaller than the cutoff); not modified.
        forces, stress : bool, default=True
            Compute the forces / the stress (stress only for cells periodic in 3-D).
        virials : bool or {"half", "centroid"}, default=False
            Also return the per-atom virials (key ``"virials"``); True means ``"half"``.

        Returns
        -------
        dict
            ``energy`` float, ``energies`` (n_atoms,), ``forces`` (n_atoms, 3) or None,
            ``stress`` (6,) or None; see :meth:`hybridpot.baselines.Baseline.compute`.
            With ``virials=True`` also ``virials`` ((n_atoms, 3, 3), eV): the energy depends
            on the pair distances only, so each pair ``(i, j)`` has a central force
            ``G_ij r_ij / r_ij`` (``G_ij`` the full derivative of ``E`` along the pair,
            embedding terms of both atoms included), and half of its virial
            ``G_ij r_ij ⊗ r_ij / r_ij`` goes to each atom; they sum to ``dE/d eps``.
            ``"centroid"``: atom ``k`` gets ``sum_i dE_i/dr_k ⊗ r_ik`` (``E_i`` atom ``i``'s
            energy, ``r_ik = r_k - r_i``), the heat-flux form of a many-body potential.

        Raises
        ------
        hybridpot.UnknownSpeciesError
            An element without EMT parameters.
        hybridpot.InvalidStructureError
            Non-finite positions, degenerate periodic cell, or atoms closer than 0.1 Å.
        """
        check_atoms(atoms, owner="EMT")
        s, t = self._types(atoms)
        n = len(atoms)
        nl = neighbor_list(atoms, s.rc_list, owner="EMT")
        sigma1, e_as, ds1_i, ds1_j, g_as = emt_pair_terms(nl.i, nl.j, nl.d, t, s.par, s.chi,
                                                          s.rc, s.acut, n)
        e_c, dE_dsigma = emt_embedding(sigma1, t, s.par)
        energies = e_c + e_as - s.par[t, _E0]
        res = {"energy": float(energies.sum()), "energies": energies, "forces": None,
               "stress": None}
        want_stress = stress and bool(np.all(atoms.pbc))
        if forces or want_stress:
            dE_dr, vir = emt_forces(nl.i, nl.j, nl.D, nl.d, ds1_i, ds1_j, g_as, dE_dsigma, n)
            if forces:
                res["forces"] = -dE_dr
            if want_stress:
                res["stress"] = voigt(vir) / atoms.get_volume()
        from ..descriptors._base import _virial_share

        share = _virial_share(virials, "virials", "EMT.compute")
        if share is not None:
            from ._kernels import atomic_virials

            if share == 0.5:
                G = g_as + dE_dsigma[nl.i] * ds1_i + dE_dsigma[nl.j] * ds1_j
                res["virials"] = atomic_virials(nl.i, nl.D, 0.5 * G / nl.d, n)
            else:   # centroid: d E_i / d r_ij of the centre's own energy, to the neighbour
                Gi = 0.5 * g_as + dE_dsigma[nl.i] * ds1_i
                res["virials"] = atomic_virials(nl.j, nl.D, Gi / nl.d, n)
        return res

    def parameter_gradients(self, atoms):
        """EMT has no fittable parameters: arrays with a leading dimension of 0.

        Parameters
        ----------
        atoms : ase.Atoms
            Structure (not modified).

        Returns
        -------
        dict
            ``energy`` (0,), ``forces`` (0, n_atoms, 3) and ``stress`` (0, 6) (None unless the
            cell is periodic in 3-D).
        """
        self._check()
        return no_parameter_gradients(atoms)

    def lammps_commands(self, species):
        """Always raises: LAMMPS has no pair style equal to ASE's EMT.

        Parameters
        ----------
        species : list of str
            Chemical symbol of LAMMPS atom types 1, 2, ...

        Raises
        ------
        hybridpot.InvalidParameterError
        """
        raise InvalidParameterError(
            "EMT has no LAMMPS equivalent: LAMMPS has no pair style reproducing ASE's "
            "effective medium theory, so a model with an EMT baseline cannot be exported. "
            "Use ZBL, LennardJones, Morse or Buckingham as the baseline to export the model.")
