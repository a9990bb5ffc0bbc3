"""Pair-potential baselines: ZBL, Lennard-Jones, Morse and Buckingham.

All are sums over pairs within a cutoff ``r_c``, ``E = 1/2 sum_i sum_{j != i} phi(r_ij)`` over a
full periodic neighbour list (:func:`hybridpot.neighbors.neighbor_list`), with per-atom energies
``E_i = 1/2 sum_j phi(r_ij)``, forces ``F_k = -dE/dr_k`` and the ASE stress
``sigma = (1/V) sum_{pairs (i<j)} phi'(r_ij) r_ij ⊗ r_ij / r_ij`` (eV/Å³; symmetric; ASE sign,
i.e. ``(1/V) dE/d eps``).

Each form is chosen to have an exact LAMMPS equivalent (``units metal``), returned by
``lammps_commands``.
"""

from __future__ import annotations

import numbers

import numpy as np

from .._exceptions import InvalidParameterError, UnknownSpeciesError
from .._validation import check_float, check_species_list, species_indices
from ..neighbors import neighbor_list
from . import _kernels as K
from ._base import Baseline, no_parameter_gradients, register_baseline, voigt

__all__ = ["ZBL", "LennardJones", "Morse", "Buckingham"]

#: Coulomb constant e²/(4 π ε0) in eV·Å, exactly the LAMMPS ``units metal`` value
QQR2E = 14.399645

# Universal screening function (Ziegler, Biersack, Littmark 1985), as in LAMMPS pair_zbl
_ZBL_C = np.array([0.02817, 0.28022, 0.50986, 0.18175])
_ZBL_D = np.array([0.20162, 0.40290, 0.94229, 3.19980])
_ZBL_A0 = 0.46850
_ZBL_P = 0.23


def _fmt(x):
    return repr(float(x))


def _wants_virials(virials, owner):
    """Whether ``virials`` asks for them (both partitions agree for pair terms)."""
    from ..descriptors._base import _virial_share

    return _virial_share(virials, "virials", f"{owner}.compute") is not None


def _finish(atoms, energies, dE_dr, virial, forces, stress, nl=None, g=None):
    res = {"energy": float(energies.sum()), "energies": energies,
           "forces": -dE_dr if forces else None, "stress": None}
    if stress and bool(np.all(atoms.pbc)):
        res["stress"] = voigt(virial) / atoms.get_volume()
    if g is not None:   # per-atom virials asked for: half of each pair's to each atom
        res["virials"] = K.atomic_virials(nl.i, nl.D, 0.5 * g / nl.d, len(atoms))
    return res


# ------------------------------------------------------------------------------------------
# pair-parameter handling
# ------------------------------------------------------------------------------------------
def _canonical_pair(key, name, owner):
    from ase.data import atomic_numbers

    msg = (f"The '{name}' parameter of {owner} must be a float or a dict keyed by pair "
           f"strings 'A-B' of chemical symbols (e.g. 'Cu-Ni'). Got key {key!r} instead.")
    if not isinstance(key, str) or key.count("-") != 1:
        raise InvalidParameterError(msg)
    a, b = (s.strip() for s in key.split("-"))
    for s in (a, b):
        if s not in atomic_numbers or s == "X":
            raise InvalidParameterError(msg)
    return tuple(sorted((a, b)))


class _PairSetup:
    """Validated parameters of a pair baseline (internal)."""

    def __init__(self, names, species, P, C, flat_index, vector, r_cut, values):
        self.names = names            # flat parameter names
        self.species = species        # tuple of symbols or None (all-scalar)
        self.P = P                    # (n_types, n_types, k)
        self.C = C                    # raw terms at r_cut, (n_types, n_types, 2 + 2k)
        self.flat_index = flat_index  # (n_types, n_types, k) int64
        self.vector = vector          # (n_params,)
        self.r_cut = r_cut
        self.values = values          # name -> float or {canonical pair tuple: float}


class _ShiftedForcePair(Baseline):
    """Shared machinery of the shifted-force pair baselines (LJ, Morse, Buckingham).

    ``phi_sf(r) = phi(r) - phi(r_c) - (r - r_c) phi'(r_c)`` for ``r < r_c`` and 0 beyond, so
    energy and force are continuous and vanish at ``r_c``.
    """

    _form = None
    _base_names = ()
    #: name -> (low, low_inclusive) for the interval check
    _bounds = {}

    # -- validation -------------------------------------------------------------------------
    def _setup(self):
        key = self._param_key()
        if getattr(self, "_setup_key", None) == key:
            return self._setup_cache
        owner = type(self).__name__
        r_cut = check_float(self.r_cut, "r_cut", owner, low=0.0)
        if not np.isfinite(r_cut):
            raise InvalidParameterError(
                f"The 'r_cut' parameter of {owner} must be a finite float in (0, inf). "
                f"Got {self.r_cut!r} instead.")
        values = {}
        for name in self._base_names:
            v = getattr(self, name)
            low, inclusive = self._bounds[name]
            if isinstance(v, dict):
                if not v:
                    raise InvalidParameterError(
                        f"The '{name}' parameter of {owner} must be a float or a non-empty dict "
                        f"keyed by 'A-B' pair strings. Got an empty dict instead.")
                d = {}
                for k, x in v.items():
                    pk = _canonical_pair(k, name, owner)
                    if pk in d:
                        raise InvalidParameterError(
                            f"The '{name}' parameter of {owner} gives the pair {pk[0]}-{pk[1]} "
                            f"twice (keys are order-insensitive). Got keys {list(v)!r}.")
                    d[pk] = check_float(x, f"{name}['{k}']", owner, low=low,
                                        low_inclusive=inclusive)
                    if not np.isfinite(d[pk]):
                        raise InvalidParameterError(
                            f"The '{name}['{k}']' parameter of {owner} must be finite. "
                            f"Got {x!r} instead.")
                values[name] = d
            elif isinstance(v, numbers.Real) and not isinstance(v, bool):
                values[name] = check_float(v, name, owner, low=low, low_inclusive=inclusive)
                if not np.isfinite(values[name]):
                    raise InvalidParameterError(
                        f"The '{name}' parameter of {owner} must be finite. Got {v!r} instead.")
            else:
                raise InvalidParameterError(
                    f"The '{name}' parameter of {owner} must be a float or a dict keyed by "
                    f"'A-B' pair strings (e.g. {{'Cu-Cu': ..., 'Cu-Ni': ..., 'Ni-Ni': ...}}). "
                    f"Got {v!r} instead.")
        dict_names = [n for n in self._base_names if isinstance(values[n], dict)]
        if dict_names:
            species = tuple(sorted({s for n in dict_names for pk in values[n] for s in pk}))
            pairs = [(a, b) for ia, a in enumerate(species) for b in species[ia:]]
            for n in dict_names:
                missing = [f"{a}-{b}" for a, b in pairs if (a, b) not in values[n]]
                if missing:
                    raise InvalidParameterError(
                        f"The '{n}' parameter of {owner} must give a value for every pair of "
                        f"the species {list(species)} named in its pair parameters; missing "
                        f"{missing}. Got keys {list(getattr(self, n))!r}.")
        else:
            species, pairs = None, [None]
        nt = 1 if species is None else len(species)
        k = len(self._base_names)
        P = np.empty((nt, nt, k))
        flat = np.empty((nt, nt, k), dtype=np.int64)
        names, vector = [], []
        for q, n in enumerate(self._base_names):
            v = values[n]
            if not isinstance(v, dict):
                P[:, :, q] = v
                flat[:, :, q] = len(vector)
                names.append(n)
                vector.append(v)
                continue
            for a, b in pairs:
                ia, ib = species.index(a), species.index(b)
                P[ia, ib, q] = P[ib, ia, q] = v[(a, b)]
                flat[ia, ib, q] = flat[ib, ia, q] = len(vector)
                names.append(f"{n}[{a}-{b}]")
                vector.append(v[(a, b)])
        try:   # e.g. C / r_cut**6 with r_cut = 1e-258, or a rho of 1e-300
            terms = K.cutoff_terms(self._form, P, r_cut)
        except ArithmeticError as exc:
            raise InvalidParameterError(
                f"The parameters of {owner} give no finite energy at r_cut = {r_cut!r} Å "
                f"({type(exc).__name__}); check 'r_cut' and {list(self._base_names)}. Got "
                f"{values!r}.") from None
        s = _PairSetup(tuple(names), species, P, terms, flat,
                       np.array(vector, dtype=np.float64), r_cut, values)
        self._setup_key, self._setup_cache = key, s
        return s

    # -- parameters -------------------------------------------------------------------------
    @property
    def param_names(self):
        """tuple of str: fittable parameter names in flat-vector order.

        A scalar parameter contributes its name (e.g. ``"epsilon"``); a pair-dict parameter
        contributes ``"epsilon[A-B]"`` for every pair, ``A <= B`` alphabetically, pairs in
        alphabetical order.  Parameters come in the order of the constructor.
        """
        return self._setup().names

    def get_param_vector(self):
        """Fittable parameters, shape (n_params,), in the order of :attr:`param_names`."""
        return self._setup().vector.copy()

    def _params_from_vector(self, v):
        s = self._setup()
        out, pos = {}, 0
        for n in self._base_names:
            val = s.values[n]
            if isinstance(val, dict):
                out[n] = {}
                for a, b in sorted(val):
                    out[n][f"{a}-{b}"] = float(v[pos])
                    pos += 1
            else:
                out[n] = float(v[pos])
                pos += 1
        return out

    # -- evaluation -------------------------------------------------------------------------
    def _pairs(self, atoms):
        s = self._setup()
        owner = type(self).__name__
        nl = neighbor_list(atoms, s.r_cut, owner=owner)
        if s.species is None:
            t = np.zeros(len(atoms), dtype=np.int64)
        else:
            t = species_indices(atoms, s.species, owner)
        return s, nl, t

    def compute(self, atoms, *, forces=True, stress=True, virials=False):
        """Energy, per-atom energies, forces and stress of one structure.

        Parameters
        ----------
        atoms : ase.Atoms
            Structure (not modified); any periodicity, cells smaller than ``r_cut`` allowed.
        forces, stress : bool, default=True
            Whether to return forces and (for 3-D periodic cells) the stress.
        virials : bool or {"half", "centroid"}, default=False
            Also return the per-atom virials (key ``"virials"``); for a pair potential the
            ``"half"`` and ``"centroid"`` partitions are the same.

        Returns
        -------
        dict
            ``energy`` (float, eV), ``energies`` ((n_atoms,), eV), ``forces`` ((n_atoms, 3),
            eV/Å, or None), ``stress`` ((6,), eV/Å³, ASE Voigt order, or None when not
            requested or not periodic in 3-D); with ``virials=True`` also ``virials``
            ((n_atoms, 3, 3), eV): half of each pair's ``phi'(r) r_ij ⊗ r_ij / r`` to each
            of its two atoms (LAMMPS's and ASE's per-atom tally), summing to ``dE/d eps``.
        """
        s, nl, t = self._pairs(atoms)
        e, g, _, _ = K.pair_terms(self._form, nl.d, t[nl.i], t[nl.j], s.P, s.C, s.r_cut, False)
        energies, dE_dr, vir = K.accumulate(nl.i, nl.j, nl.D, nl.d, e, g, len(atoms))
        return _finish(atoms, energies, dE_dr, vir, forces, stress, nl,
                       g if _wants_virials(virials, type(self).__name__) else None)

    def parameter_gradients(self, atoms):
        """Analytic derivatives with respect to the flat parameter vector.

        Parameters
        ----------
        atoms : ase.Atoms
            Structure (not modified).

        Returns
        -------
        dict
            ``energy`` (n_params,) eV per parameter unit; ``forces`` (n_params, n_atoms, 3);
            ``stress`` (n_params, 6) or None when the cell is not periodic in 3-D.
        """
        s, nl, t = self._pairs(atoms)
        ti, tj = t[nl.i], t[nl.j]
        _, _, e_th, g_th = K.pair_terms(self._form, nl.d, ti, tj, s.P, s.C, s.r_cut, True)
        dE, dG, dV = K.accumulate_params(nl.i, nl.j, ti, tj, nl.D, nl.d, e_th, g_th,
                                         s.flat_index, len(s.names), len(atoms))
        st = voigt(dV) / atoms.get_volume() if bool(np.all(atoms.pbc)) else None
        return {"energy": dE, "forces": -dG, "stress": st}

    def pair_energy(self, r, pair=None):
        """Pair function ``phi_sf(r)`` and its derivative (vectorised; for plots and tests).

        Parameters
        ----------
        r : array_like of float
            Distances (Å); values ``>= r_cut`` give 0.
        pair : str, optional
            ``"A-B"`` when the parameters are per pair.

        Returns
        -------
        phi, dphi : ndarray
            eV and eV/Å, same shape as ``r``.

        Raises
        ------
        hybridpot.InvalidParameterError
            For per-pair parameters without ``pair``, or a malformed ``pair``.
        hybridpot.UnknownSpeciesError
            For a ``pair`` naming an element without parameters.
        """
        s = self._setup()
        r = np.asarray(r, dtype=np.float64)
        flat = np.ascontiguousarray(r.ravel())
        a = b = 0
        if s.species is not None:
            if pair is None:
                raise InvalidParameterError(
                    f"The 'pair' argument of {type(self).__name__}.pair_energy is required "
                    f"when parameters are per pair; allowed pairs of {list(s.species)}.")
            pa, pb = _canonical_pair(pair, "pair", type(self).__name__)
            if pa not in s.species or pb not in s.species:
                raise UnknownSpeciesError(
                    f"The 'pair' argument {pair!r} of {type(self).__name__}.pair_energy names "
                    f"a species outside {list(s.species)}.")
            a, b = s.species.index(pa), s.species.index(pb)
        ti = np.full(flat.size, a, dtype=np.int64)
        tj = np.full(flat.size, b, dtype=np.int64)
        e, g, _, _ = K.pair_terms(self._form, flat, ti, tj, s.P, s.C, s.r_cut, False)
        inside = flat < s.r_cut
        return (np.where(inside, e, 0.0).reshape(r.shape),
                np.where(inside, g, 0.0).reshape(r.shape))

    # -- LAMMPS -----------------------------------------------------------------------------
    def _lammps_types(self, species):
        owner = type(self).__name__
        species = check_species_list(species, "species", owner)
        s = self._setup()
        if s.species is not None:
            missing = [x for x in species if x not in s.species]
            if missing:
                raise InvalidParameterError(
                    f"The 'species' argument of {owner}.lammps_commands contains {missing}, "
                    f"which have no pair parameters (known: {list(s.species)}).")
        return s, species

    def _type_pairs(self, s, species):
        """(type-pair label, param row) for the pair_coeff lines."""
        if s.species is None:
            return [("* *", s.P[0, 0])]
        out = []
        for i, a in enumerate(species):
            for j in range(i, len(species)):
                ia, ib = s.species.index(a), s.species.index(species[j])
                out.append((f"{i + 1} {j + 1}", s.P[ia, ib]))
        return out


@register_baseline
class LennardJones(_ShiftedForcePair):
    r"""Shifted-force Lennard-Jones pair potential (LAMMPS ``lj/smooth/linear``).

    .. math::

        \phi(r) = 4\epsilon\left[(\sigma/r)^{12} - (\sigma/r)^6\right],\qquad
        \phi_\mathrm{sf}(r) = \phi(r) - \phi(r_c) - (r - r_c)\,\phi'(r_c)\quad (r < r_c)

    and 0 beyond ``r_c``: energy and force are continuous and vanish at ``r_c``.
    ``E = 1/2 sum_i sum_j phi_sf(r_ij)``; per-atom energies take half of each pair.

    Parameters
    ----------
    epsilon : float or dict
        Well depth (eV), >= 0.  A float applies to all pairs; a dict keyed by ``"A-B"`` pair
        strings (order-insensitive, every pair of the species named must be present) gives
        per-pair values.
    sigma : float or dict
        Length scale (Å), > 0; float or pair dict as ``epsilon``.
    r_cut : float
        Cutoff (Å), > 0, shared by all pairs.

    Notes
    -----
    ``param_names`` is ``("epsilon", "sigma")`` for scalar parameters (see
    :attr:`param_names` for pair dicts).  Exact LAMMPS equivalent::

        pair_style lj/smooth/linear r_cut
        pair_coeff * * epsilon sigma
    """

    _form = K.FORM_LJ
    _base_names = ("epsilon", "sigma")
    _bounds = {"epsilon": (0.0, True), "sigma": (0.0, False)}

    def __init__(self, *, epsilon, sigma, r_cut):
        self.epsilon = epsilon
        self.sigma = sigma
        self.r_cut = r_cut

    def lammps_commands(self, species):
        """LAMMPS commands (``units metal``) reproducing this baseline exactly.

        Parameters
        ----------
        species : list of str
            Chemical symbol of LAMMPS atom types 1, 2, ...

        Returns
        -------
        dict
            ``pair_style`` (sub-style and arguments, e.g. ``"lj/smooth/linear 8.5"``),
            ``pair_coeff`` (lines without the ``pair_coeff`` word, in ``hybrid/overlay``
            form: type pair, sub-style name, coefficients) and ``files`` (empty).
        """
        s, species = self._lammps_types(species)
        st = "lj/smooth/linear"
        lines = [f"{tp} {st} {_fmt(p[0])} {_fmt(p[1])}" for tp, p in self._type_pairs(s, species)]
        return {"pair_style": f"{st} {_fmt(s.r_cut)}", "pair_coeff": lines, "files": {}}


@register_baseline
class Morse(_ShiftedForcePair):
    r"""Shifted-force Morse pair potential (LAMMPS ``morse/smooth/linear``).

    .. math::

        \phi(r) = D_0\left[e^{-2\alpha(r - r_0)} - 2e^{-\alpha(r - r_0)}\right],\qquad
        \phi_\mathrm{sf}(r) = \phi(r) - \phi(r_c) - (r - r_c)\,\phi'(r_c)\quad (r < r_c)

    and 0 beyond ``r_c``.

    Parameters
    ----------
    D0 : float or dict
        Well depth (eV), >= 0; float for all pairs or dict keyed by ``"A-B"``.
    alpha : float or dict
        Stiffness (1/Å), > 0.
    r0 : float or dict
        Equilibrium distance (Å), > 0.
    r_cut : float
        Cutoff (Å), > 0.

    Notes
    -----
    ``param_names`` is ``("D0", "alpha", "r0")`` for scalar parameters.  LAMMPS::

        pair_style morse/smooth/linear r_cut
        pair_coeff * * D0 alpha r0
    """

    _form = K.FORM_MORSE
    _base_names = ("D0", "alpha", "r0")
    _bounds = {"D0": (0.0, True), "alpha": (0.0, False), "r0": (0.0, False)}

    def __init__(self, *, D0, alpha, r0, r_cut):
        self.D0 = D0
        self.alpha = alpha
        self.r0 = r0
        self.r_cut = r_cut

    def lammps_commands(self, species):
        """LAMMPS commands (``units metal``); same layout as :meth:`LennardJones.lammps_commands`.

        Parameters
        ----------
        species : list of str
            Chemical symbol of LAMMPS atom types 1, 2, ...

        Returns
        -------
        dict
            ``pair_style``, ``pair_coeff`` and ``files`` (empty).
        """
        s, species = self._lammps_types(species)
        st = "morse/smooth/linear"
        lines = [f"{tp} {st} {_fmt(p[0])} {_fmt(p[1])} {_fmt(p[2])}"
                 for tp, p in self._type_pairs(s, species)]
        return {"pair_style": f"{st} {_fmt(s.r_cut)}", "pair_coeff": lines, "files": {}}


@register_baseline
class Buckingham(_ShiftedForcePair):
    r"""Shifted-force Buckingham pair potential (exported to LAMMPS as ``pair_style table``).

    .. math::

        \phi(r) = A e^{-r/\rho} - C/r^6,\qquad
        \phi_\mathrm{sf}(r) = \phi(r) - \phi(r_c) - (r - r_c)\,\phi'(r_c)\quad (r < r_c)

    and 0 beyond ``r_c``.  (LAMMPS ``buck`` has no smooth variant, hence the table export.)
    Like every Buckingham potential it diverges to -inf as ``r -> 0`` when ``C > 0``.

    Parameters
    ----------
    A : float or dict
        Repulsion prefactor (eV), >= 0; float for all pairs or dict keyed by ``"A-B"``.
    rho : float or dict
        Repulsion length (Å), > 0.
    C : float or dict
        Dispersion coefficient (eV·Å⁶), >= 0.
    r_cut : float
        Cutoff (Å), > 0.

    Notes
    -----
    ``param_names`` is ``("A", "rho", "C")`` for scalar parameters.
    """

    _form = K.FORM_BUCKINGHAM
    _base_names = ("A", "rho", "C")
    _bounds = {"A": (0.0, True), "rho": (0.0, False), "C": (0.0, True)}

    def __init__(self, *, A, rho, C, r_cut):
        self.A = A
        self.rho = rho
        self.C = C
        self.r_cut = r_cut

    @staticmethod
    def _second_derivative(r, p):
        a, rho, c = p
        return a * np.exp(-r / rho) / rho ** 2 - 42.0 * c / r ** 8

    def lammps_commands(self, species, *, table_r_min=0.5, table_points=None,
                        table_tolerance=1e-8):
        """LAMMPS commands (``units metal``): ``pair_style table spline N`` and a table file.

        The table is written in ``RSQ`` spacing from ``table_r_min`` to ``r_cut`` with exact
        end derivatives (``FPRIME``), so LAMMPS uses the file values at its own nodes and
        interpolates them with clamped cubic splines in ``r²``.  ``N`` is doubled from 1000
        until that interpolation (evaluated here as LAMMPS does, see
        :func:`lammps_spline_table`) reproduces the analytic pair energy to
        ``table_tolerance * max(1, |phi|)`` eV and the force to
        ``100 * table_tolerance * max(1, |F|)`` eV/Å between the table nodes (absolute below
        1 eV, relative on the steep repulsive wall).

        Parameters
        ----------
        species : list of str
            Chemical symbol of LAMMPS atom types 1, 2, ...
        table_r_min : float, default=0.5
            Inner table distance (Å), in (0, r_cut); LAMMPS stops with "Pair distance <
            table inner cutoff" below it.
        table_points : int, optional
            Fixed number of table points instead of the automatic choice.
        table_tolerance : float, default=1e-8
            Target interpolation error per pair (eV, relative above 1 eV).

        Returns
        -------
        dict
            ``pair_style`` (``"table spline N"``), ``pair_coeff`` (``hybrid/overlay`` form,
            e.g. ``"* * table hybridpot_buckingham.table BUCK 6"``) and ``files``
            (``{"hybridpot_buckingham.table": text}``).

        Raises
        ------
        hybridpot.InvalidParameterError
            For an element of ``species`` without parameters, a bad table option, or a
            ``table_r_min`` so small that 2**21 points miss ``table_tolerance``.
        """
        owner = "Buckingham"
        s, species = self._lammps_types(species)
        r_lo = check_float(table_r_min, "table_r_min", owner, low=0.0, high=s.r_cut)
        tol = check_float(table_tolerance, "table_tolerance", owner, low=0.0)
        from .._validation import check_int

        fixed = check_int(table_points, "table_points", owner, low=2, high=2 ** 22,
                          allow_none=True)
        pairs = self._type_pairs(s, species)
        n = fixed if fixed is not None else 1000
        while True:
            err_e, err_f = 0.0, 0.0
            if fixed is None:
                for _, p in pairs:
                    ee, ef = _table_spline_error(self, p, r_lo, s.r_cut, n)
                    err_e, err_f = max(err_e, ee), max(err_f, ef)
            if fixed is not None or (err_e <= tol and err_f <= 100 * tol):
                break
            if n >= 2 ** 21:
                raise InvalidParameterError(
                    f"The 'table_r_min' parameter of Buckingham ({r_lo:g} Å) is too small: "
                    f"even {n} table points do not reach table_tolerance={tol:g} eV "
                    f"(error {err_e:.3g} eV). Use a larger table_r_min.")
            n *= 2
        fname = "hybridpot_buckingham.table"
        sections, lines = [], []
        for tp, p in pairs:
            if tp == "* *":
                kw = "BUCK"
            else:
                i, j = (int(x) for x in tp.split())
                kw = f"BUCK_{species[i - 1]}_{species[j - 1]}"
            sections.append(_table_section(self, kw, p, r_lo, s.r_cut, n))
            lines.append(f"{tp} table {fname} {kw} {_fmt(s.r_cut)}")
        header = (f"# Shifted-force Buckingham pair table written by hybridpot "
                  f"(units metal: Å, eV, eV/Å)\n"
                  f"# phi(r) = A exp(-r/rho) - C/r^6 - phi(rc) - (r - rc) phi'(rc), "
                  f"rc = {_fmt(s.r_cut)}\n")
        return {"pair_style": f"table spline {n}", "pair_coeff": lines,
                "files": {fname: header + "".join(sections)}}


def _table_nodes(r_lo, r_cut, n):
    # exactly LAMMPS compute_table: rsq_i = innersq + i * (cut^2 - innersq) / (n - 1)
    innersq = r_lo * r_lo
    delta = (r_cut * r_cut - innersq) / (n - 1)
    rsq = innersq + np.arange(n) * delta
    return rsq, delta


def _sf_values(pot, p, r, r_cut):
    """Shifted-force energy, force -dphi/dr and dF/dr at distances ``r`` (numpy)."""
    P = np.asarray(p, dtype=np.float64).reshape(1, 1, -1)
    C = K.cutoff_terms(pot._form, P, r_cut)
    z = np.zeros(r.size, dtype=np.int64)
    e, g, _, _ = K.pair_terms(pot._form, np.ascontiguousarray(r, dtype=np.float64), z, z, P, C,
                              r_cut, False)
    dF = -pot._second_derivative(r, p)
    return e, -g, dF


def _table_section(pot, kw, p, r_lo, r_cut, n):
    rsq, _ = _table_nodes(r_lo, r_cut, n)
    r = np.sqrt(rsq)
    e, f, dF = _sf_values(pot, p, r, r_cut)
    e[-1], f[-1] = 0.0, 0.0
    out = [f"\n{kw}\nN {n} RSQ {_fmt(r_lo)} {_fmt(r_cut)} FPRIME {_fmt(dF[0])} {_fmt(dF[-1])}\n\n"]
    out.extend(f"{k + 1} {_fmt(r[k])} {_fmt(e[k])} {_fmt(f[k])}\n" for k in range(n))
    return "".join(out)


def lammps_spline_table(r_lo, r_cut, e, f, fplo, fphi):
    """LAMMPS ``pair_style table spline`` interpolants built from table values at its nodes.

    Mirrors LAMMPS ``PairTable::compute_table`` for the SPLINE style: a clamped cubic spline
    of ``e`` in ``r²`` with end slopes ``-f/(2r)``, and a clamped cubic spline of ``f/r`` in
    ``r²`` with end slopes from ``FPRIME`` (``fplo``, ``fphi`` = dF/dr at the ends).

    Returns
    -------
    callable
        ``r -> (energy (eV), force (eV/Å))``, valid for ``r_lo <= r < r_cut``.
    """
    from scipy.interpolate import CubicSpline

    n = len(e)
    rsq, _ = _table_nodes(r_lo, r_cut, n)
    r_in, r_c = np.sqrt(rsq[0]), r_cut
    ep0, epn = -f[0] / (2.0 * r_in), -f[-1] / (2.0 * r_c)
    es = CubicSpline(rsq, e, bc_type=((1, ep0), (1, epn)))
    fp0 = (fplo / r_in - f[0] / rsq[0]) / (2.0 * r_in)
    fpn = (fphi / r_c - f[-1] / (r_c * r_c)) / (2.0 * r_c)
    fs = CubicSpline(rsq, f / np.sqrt(rsq), bc_type=((1, fp0), (1, fpn)))

    def evaluate(r):
        r = np.asarray(r, dtype=np.float64)
        return es(r * r), fs(r * r) * r

    return evaluate


def _table_spline_error(pot, p, r_lo, r_cut, n):
    rsq, delta = _table_nodes(r_lo, r_cut, n)
    e, f, dF = _sf_values(pot, p, np.sqrt(rsq), r_cut)
    e[-1], f[-1] = 0.0, 0.0
    ev = lammps_spline_table(r_lo, r_cut, e, f, dF[0], dF[-1])
    rq = np.sqrt(np.concatenate([rsq[:-1] + 0.5 * delta, rsq[:-1] + 0.25 * delta]))
    e_ref, f_ref, _ = _sf_values(pot, p, rq, r_cut)
    e_t, f_t = ev(rq)
    return (float(np.max(np.abs(e_t - e_ref) / np.maximum(1.0, np.abs(e_ref)))),
            float(np.max(np.abs(f_t - f_ref) / np.maximum(1.0, np.abs(f_ref)))))


# ------------------------------------------------------------------------------------------
# ZBL
# ------------------------------------------------------------------------------------------
def zbl_coefficients(zi, zj, r_inner, r_cut):
    """Per-pair ZBL constants ``[zze, d1a..d4a, sw1..sw5]`` exactly as LAMMPS ``pair_zbl``.

    ``zze = Z_i Z_j e²/(4 π ε0)`` (eV·Å), ``d_k a = d_k / a`` with
    ``a = 0.46850 / (Z_i^0.23 + Z_j^0.23)`` Å, and the switching coefficients from the
    unswitched energy ``E_c``, derivative ``E_c'`` and second derivative ``E_c''`` at the outer
    cutoff, ``t_c = r_c - r_inner``: ``A = (-3E_c' + t_c E_c'')/t_c²``,
    ``B = (2E_c' - t_c E_c'')/t_c³``, ``C = -E_c + t_c E_c'/2 - t_c² E_c''/12``;
    ``sw1 = A, sw2 = B, sw3 = A/3, sw4 = B/4, sw5 = C``.
    """
    ainv = (zi ** _ZBL_P + zj ** _ZBL_P) / _ZBL_A0
    da = _ZBL_D * ainv
    zze = zi * zj * QQR2E
    r = r_cut
    ex = _ZBL_C * np.exp(-da * r)
    s, sp, spp = ex.sum(), -(da * ex).sum(), (da * da * ex).sum()
    fc = zze * s / r
    fcp = zze * (sp - s / r) / r
    fcpp = zze * (spp - 2.0 * sp / r + 2.0 * s / (r * r)) / r
    tc = r_cut - r_inner
    swa = (-3.0 * fcp + tc * fcpp) / (tc * tc)
    swb = (2.0 * fcp - tc * fcpp) / (tc * tc * tc)
    swc = -fc + (tc / 2.0) * fcp - (tc * tc / 12.0) * fcpp
    return np.array([zze, *da, swa, swb, swa / 3.0, swb / 4.0, swc])


#: ZBL's overlap floor (Å): a close collision is physical for a nuclear repulsion (Cu-Cu at
#: 0.1 Å, the floor of the other baselines and descriptors, is ~50 keV; cascades with
#: primary knock-on atoms of 100 keV and more get closer); closer than this (Cu-Cu ~10 MeV)
#: the structure is refused as overlapping
ZBL_MIN_DISTANCE = 1e-3


@register_baseline
class ZBL(Baseline):
    r"""Ziegler-Biersack-Littmark screened nuclear repulsion, exactly LAMMPS ``pair_style zbl``.

    .. math::

        E^\mathrm{ZBL}(r) = \frac{Z_i Z_j e^2}{4\pi\varepsilon_0 r}\,\phi(r/a),\qquad
        a = \frac{0.46850}{Z_i^{0.23} + Z_j^{0.23}}\ \text{Å},

        \phi(x) = 0.18175 e^{-3.19980x} + 0.50986 e^{-0.94229x} + 0.28022 e^{-0.40290x}
        + 0.02817 e^{-0.20162x},

    with ``e²/(4πε0) = 14.399645`` eV·Å (LAMMPS ``metal``).  The pair energy is

    .. math::

        \phi_{ij}(r) = E^\mathrm{ZBL}(r) + S(r),\qquad
        S(r) = C + [r > r_i]\left(\tfrac{A}{3}t^3 + \tfrac{B}{4}t^4\right),\ t = r - r_i,

    where ``A``, ``B``, ``C`` (see :func:`zbl_coefficients`) make the energy, its first and its
    second derivative vanish at ``r_c``; ``phi = 0`` beyond ``r_c``.  Note that the constant
    ``C`` shifts the energy at all ``r < r_c``, as in LAMMPS.  ``Z`` is each atom's atomic
    number.  No fittable parameters (``param_names == ()``).

    Parameters
    ----------
    r_inner : float
        Start of the switching region (Å), in (0, r_cut).
    r_cut : float
        Outer cutoff (Å), > r_inner.

    Notes
    -----
    Atoms may come as close as 0.001 Å (:data:`ZBL_MIN_DISTANCE`; Cu-Cu ~10 MeV), not 0.1 Å
    as for the other baselines: high-energy collisions are what ZBL is for.  In a
    :class:`~hybridpot.HybridPotential` the descriptor's floor applies too: 0.1 Å, or 0.001 Å
    for a descriptor with its inner switch on (``r_inner`` / ``d_inner`` of PowerSpectrum,
    Bispectrum, ACSF; ``switchinnerflag`` of SNAPBispectrum).

    LAMMPS (``units metal``)::

        pair_style zbl r_inner r_cut
        pair_coeff i j Z_i Z_j
    """

    def __init__(self, *, r_inner, r_cut):
        self.r_inner = r_inner
        self.r_cut = r_cut

    def _check(self):
        key = self._param_key()
        if getattr(self, "_setup_key", None) == key:
            return self._cutoffs
        r_cut = check_float(self.r_cut, "r_cut", "ZBL", low=0.0)
        r_inner = check_float(self.r_inner, "r_inner", "ZBL", low=0.0, high=r_cut)
        if not np.isfinite(r_cut):
            raise InvalidParameterError(
                f"The 'r_cut' parameter of ZBL must be a finite float in (0, inf). "
                f"Got {self.r_cut!r} instead.")
        self._setup_key, self._cutoffs, self._coef_cache = key, (r_inner, r_cut), {}
        return self._cutoffs

    def _table(self, znums):
        r_inner, r_cut = self._check()
        key = tuple(int(z) for z in znums)
        if key not in self._coef_cache:
            nt = len(key)
            T = np.empty((nt, nt, 10))
            for a in range(nt):
                for b in range(a, nt):
                    T[a, b] = T[b, a] = zbl_coefficients(float(key[a]), float(key[b]),
                                                         r_inner, r_cut)
            self._coef_cache[key] = T
        return self._coef_cache[key]

    def _pairs(self, atoms):
        r_inner, r_cut = self._check()
        nl = neighbor_list(atoms, r_cut, min_distance=ZBL_MIN_DISTANCE, owner="ZBL")
        numbers = np.asarray(atoms.numbers)
        if numbers.size and numbers.min() < 1:
            raise UnknownSpeciesError(
                f"The structure contains atomic number {int(numbers.min())} (atom "
                f"{int(np.argmin(numbers))}); ZBL needs real elements (Z >= 1).")
        znums, t = np.unique(numbers, return_inverse=True)
        return nl, t.astype(np.int64).ravel(), self._table(znums), r_inner

    def compute(self, atoms, *, forces=True, stress=True, virials=False):
        """Energy, per-atom energies, forces and stress; same layout as
        :meth:`LennardJones.compute`.

        Parameters
        ----------
        atoms : ase.Atoms
            Structure (not modified).
        forces, stress : bool, default=True
            Whether to return forces and (for cells periodic in 3-D) the stress.
        virials : bool or {"half", "centroid"}, default=False
            Also return the per-atom virials (key ``"virials"``, as
            :meth:`LennardJones.compute`).

        Returns
        -------
        dict
            ``energy`` (float, eV), ``energies`` ((n_atoms,), eV), ``forces`` ((n_atoms, 3),
            eV/Å, or None), ``stress`` ((6,), eV/Å³, or None); ``virials`` ((n_atoms, 3, 3),
            eV) with ``virials=True``.
        """
        nl, t, T, r_inner = self._pairs(atoms)
        e, g = K.zbl_terms(nl.d, t[nl.i], t[nl.j], T, r_inner)
        energies, dE_dr, vir = K.accumulate(nl.i, nl.j, nl.D, nl.d, e, g, len(atoms))
        return _finish(atoms, energies, dE_dr, vir, forces, stress, nl,
                       g if _wants_virials(virials, type(self).__name__) else None)

    def parameter_gradients(self, atoms):
        """ZBL has no fittable parameters: arrays with a leading dimension of 0.

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

    def pair_energy(self, r, zi, zj):
        """Pair energy (eV) and derivative (eV/Å) at distances ``r`` for atomic numbers
        ``zi``, ``zj`` (vectorised; 0 at and beyond ``r_cut``).

        Parameters
        ----------
        r : array_like of float
            Distances (Å).
        zi, zj : int
            Atomic numbers of the two atoms.

        Returns
        -------
        phi, dphi : ndarray
            eV and eV/Å, same shape as ``r``.
        """
        r_inner, r_cut = self._check()
        r = np.asarray(r, dtype=np.float64)
        flat = np.ascontiguousarray(r.ravel())
        T = zbl_coefficients(float(zi), float(zj), r_inner, r_cut).reshape(1, 1, 10)
        z = np.zeros(flat.size, dtype=np.int64)
        e, g = K.zbl_terms(flat, z, z, T, r_inner)
        inside = flat < r_cut
        return (np.where(inside, e, 0.0).reshape(r.shape),
                np.where(inside, g, 0.0).reshape(r.shape))

    def lammps_commands(self, species):
        """LAMMPS commands (``units metal``): ``pair_style zbl r_inner r_cut``.

        Parameters
        ----------
        species : list of str
            Chemical symbol of LAMMPS atom types 1, 2, ...

        Returns
        -------
        dict
            ``pair_style`` (e.g. ``"zbl 3 4"``), ``pair_coeff`` in ``hybrid/overlay`` form
            (``"* * zbl 28 28"`` for one species, else one ``"i j zbl Z_i Z_j"`` line per type
            pair ``i <= j``) and ``files`` (empty).
        """
        from ase.data import atomic_numbers

        r_inner, r_cut = self._check()
        species = check_species_list(species, "species", "ZBL")
        z = [atomic_numbers[s] for s in species]
        if len(species) == 1:
            lines = [f"* * zbl {z[0]} {z[0]}"]
        else:
            lines = [f"{i + 1} {j + 1} zbl {z[i]} {z[j]}"
                     for i in range(len(z)) for j in range(i, len(z))]
        return {"pair_style": f"zbl {_fmt(r_inner)} {_fmt(r_cut)}", "pair_coeff": lines,
                "files": {}}
