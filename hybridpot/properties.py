"""Materials properties of a fitted potential, with σ from a posterior committee.

The properties the mlearn benchmark (Zuo et al., J. Phys. Chem. A 124, 731 (2020)) reports
for each potential, computed through an ASE calculator (a model's
:meth:`~hybridpot.HybridPotential.calculator`, its baseline's, or any other) with standard
ASE tools:

- lattice constant ``a0`` (Å): cubic cell relaxed with ``FrechetCellFilter`` + ``BFGS``
  (:func:`relaxed_bulk`);
- bulk modulus ``B`` (GPa): Birch-Murnaghan fit (``ase.eos.EquationOfState``) to seven
  volumes within ±3 % of the relaxed one (:func:`bulk_modulus`);
- cubic elastic constants ``C11``, ``C12``, ``C44`` (GPa) twice: from the stress of ±0.5 %
  strains (central differences, ``C_ij = dσ_i/dε_j``, Voigt order xx, yy, zz, yz, xz, xy,
  engineering shear strain; :func:`elastic_from_stress`) and, as ``C11(E)``, ``C12(E)``,
  ``C44(E)``, from the second derivative of the energy, ``E(ε)/V0 = E0/V0 + ½ Σ C_ij ε_i
  ε_j`` (:func:`elastic_from_energy`; a model whose stress is the strain derivative of its
  energy gives the same numbers); ``B(C) = (C11 + 2 C12) / 3`` must equal the EOS ``B``.
  Every atom of a monatomic fcc / bcc crystal is a centre of inversion, so no internal
  relaxation enters; for diamond the ions are relaxed in every strained cell (relaxed-ion
  constants: the inner strain lowers C44);
- vacancy formation energy ``E_v = E(N-1) - (N-1)/N E(N)`` (eV), the defect cell relaxed at
  fixed volume (:func:`vacancy_formation`; 2x2x2 cubic cells with ``quick``, else 3x3x3:
  fcc 32 / 108 atoms, bcc 16 / 54, diamond 64 / 216);
- vacancy migration energy ``E_m`` (eV): climbing-image NEB (``ase.mep.NEB``, FIRE) of a
  nearest neighbour hopping into the vacancy, in the same cell (:func:`migration_barrier`;
  1 image and fmax 0.05 eV/Å in a 2x2x2 cell with ``quick``, else 3 images and 0.02 eV/Å in
  a 3x3x3 cell);
- surface energies ``γ100``, ``γ111`` (bcc: ``γ100``, ``γ110``), ``γ = (E_slab - N e_bulk) /
  2A`` (J/m², 1 eV/Å² = 16.02 J/m²) of relaxed slabs (diamond: unreconstructed) with 8 Å of
  vacuum, in a cell periodic in 3-D (the stress needs ``pbc=True``; energy and forces do not
  see the vacuum; :func:`surface_energy`);
- phonons by finite displacements (``ase.phonons.Phonons``; :func:`zone_boundary_phonons`):
  the lowest and highest frequency (THz) at the zone-boundary point X (fcc, diamond; keys
  ``νX lo``, ``νX hi``) or H (bcc; ``νH lo``, ``νH hi``), and, as a check, ``ν(Γ)``: the
  largest |ν| of the acoustic modes at Γ without the acoustic-sum-rule correction (zero for
  forces that are the exact gradient of a translation-invariant energy).  The supercell
  must hold the range of the force constants, twice the model's cutoff, or the dispersion
  is aliased (bcc Mo with a 5.2 Å cutoff: the two transverse branches along [100] split by
  10 % with a 5x5x5 primitive supercell, exact with 9x9x9); it spans ``4 r_cut`` (``3
  r_cut`` with ``quick``).

:func:`compute_properties` computes all of them for a fitted
:class:`~hybridpot.HybridPotential`, for its empirical baseline alone (not for ZBL, which
binds nothing) and for the members of a posterior committee (:func:`committee`), whose
spread is the σ of each property.  The Bayesian posterior of the linear coefficients is
Gaussian, so coefficient draws (``BayesianLinearRegressor.sample_coef``) give member
potentials (``LinearRegressor.from_coef`` + ``HybridPotential.from_fitted``); every property
is recomputed for each member (relaxations included).  For an ``EnsembleRegressor`` (e.g.
sparse GPs on different inducing points) the members are its fitted copies; other
regressors get no σ.  It is the parameter part of the uncertainty of a *derived*
property, which the calculator's ``energy_std`` cannot give: adding the variances of two
energies ignores that their errors are correlated, and ``energy_std`` includes the
observation noise ``N σ_E``, no error of a property (108-atom Ni cell and its vacancy,
mlearn ps_linear: energy_std 0.011 eV each, committee σ of the energies 0.0018 / 0.0026 eV,
of E_v 0.0020 eV).  It does not include the error of the model's form: on mlearn Ni and Mo
the properties of linear models differ from the DFT values by many such σ (e.g. C11 of Ni,
289 ± 0.5 GPa against 286 GPa from the DFT stresses).

Cost: on the shipped Al data (power spectrum n_max 4, l_max 3) model, EMT baseline and 4
members with ``quick=True`` take ~4 s of CPU; 16 members without ``quick`` ~1 min.
The command line is ``hybridpot properties --model model.hpot``; ``examples/properties.py``
fits a model first.

Relaxations that stop before their force threshold issue a ``RuntimeWarning`` naming the
step (the property is still returned), and so does a crystal the calculator does not bind
(bulk modulus <= 0, e.g. an ``a_guess`` beyond its range) or that is mechanically unstable
(Born criteria ``C11 - C12 > 0``, ``C11 + 2 C12 > 0``, ``C44 > 0`` fail, e.g. bcc for a pair
potential, diamond Al): its defect, surface and phonon values are not those of that crystal.
The module imports ASE lazily and never matplotlib; only the phonons need it, through ASE
(``ase.phonons`` imports ``ase.vibrations``, which imports matplotlib, a requirement of ASE).

Usage, for a fitted one-element ``model``::

    from hybridpot.properties import compute_properties, format_table

    res = compute_properties(model, quick=True, members=4, random_state=0)
    res["model"]["C44"], res["sigma"]["C44"]      # GPa: value and committee σ
    print(format_table(res))
"""

from __future__ import annotations

import math
import numbers
import tempfile
import warnings

import numpy as np

from ._exceptions import InvalidParameterError, NotFittedError
from ._validation import check_choice, check_float, check_int, check_random_state_param

__all__ = [
    "CRYSTALS",
    "FACETS",
    "UNITS",
    "default_lattice_constant",
    "reference_crystal",
    "relaxed_bulk",
    "bulk_modulus",
    "elastic_from_stress",
    "elastic_from_energy",
    "cubic_constants",
    "vacancy_formation",
    "migration_barrier",
    "surface_energy",
    "zone_boundary_phonons",
    "calculator_properties",
    "committee_kind",
    "committee",
    "compute_properties",
    "format_table",
    "unit_of",
]

#: crystal structures the properties are defined for (monatomic cubic cells)
CRYSTALS = ("fcc", "bcc", "diamond")
#: the two surface facets computed per crystal (Miller indices as strings)
FACETS = {"fcc": ("100", "111"), "bcc": ("100", "110"), "diamond": ("100", "111")}
#: unit of every key of :func:`calculator_properties` (see :func:`unit_of`)
UNITS = {"a0": "Å", "B": "GPa", "C11": "GPa", "C12": "GPa", "C44": "GPa", "C11(E)": "GPa",
         "C12(E)": "GPa", "C44(E)": "GPa", "B(C)": "GPa", "E_v": "eV", "E_m": "eV",
         "γ100": "J/m²", "γ110": "J/m²", "γ111": "J/m²", "ν(Γ)": "THz", "νX lo": "THz",
         "νX hi": "THz", "νH lo": "THz", "νH hi": "THz"}
VOIGT_PAIRS = ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))
#: the ASE builders of the slabs, per crystal and facet
_SLAB_BUILDERS = {"fcc": {"100": "fcc100", "110": "fcc110", "111": "fcc111"},
                  "bcc": {"100": "bcc100", "110": "bcc110"},
                  "diamond": {"100": "diamond100", "111": "diamond111"}}


def unit_of(key):
    """Unit of a property key (``"a0"`` -> ``"Å"``, ``"γ111"`` -> ``"J/m²"``, ...).

    Raises
    ------
    hybridpot.InvalidParameterError
        For a key that is not a property of :data:`UNITS` (any ``γ<facet>`` / ``ν<...>``
        key is J/m² / THz).
    """
    if key in UNITS:
        return UNITS[key]
    if isinstance(key, str) and key[:1] in ("γ", "ν") and len(key) > 1:
        return {"γ": "J/m²", "ν": "THz"}[key[:1]]
    raise InvalidParameterError(
        f"The 'key' parameter of unit_of must be a property key ({', '.join(UNITS)}). "
        f"Got {key!r} instead.")


def _j_per_m2():
    from ase.units import J, m

    return J / m ** 2            # 1 J/m² in eV/Å²


def _check_crystal(crystal, owner):
    return check_choice(crystal, "crystal", CRYSTALS, owner)


def _check_symbol(symbol, owner):
    from ase.data import atomic_numbers

    if not isinstance(symbol, str) or symbol not in atomic_numbers or symbol == "X":
        raise InvalidParameterError(
            f"The 'symbol' parameter of {owner} must be a chemical symbol such as 'Al'. "
            f"Got {symbol!r} instead.")
    return symbol


def _check_calc(calc, owner):
    if calc is None or not hasattr(calc, "get_property"):
        raise InvalidParameterError(
            f"The 'calc' parameter of {owner} must be an ASE calculator (e.g. "
            f"model.calculator()). Got {calc!r} instead.")
    return calc


def _check_atoms0(atoms0, owner):
    from ase import Atoms

    if not isinstance(atoms0, Atoms) or len(atoms0) == 0 or not np.all(atoms0.pbc):
        raise InvalidParameterError(
            f"The 'atoms0' parameter of {owner} must be a non-empty ase.Atoms periodic in "
            f"3-D (e.g. the cell of relaxed_bulk). Got {atoms0!r} instead.")
    return atoms0


def _check_reps(reps, owner):
    if isinstance(reps, numbers.Integral) and not isinstance(reps, bool):
        reps = (reps,) * 3
    ok = (isinstance(reps, (tuple, list)) and len(reps) == 3
          and all(isinstance(r, numbers.Integral) and not isinstance(r, bool) and r >= 1
                  for r in reps))
    if not ok:
        raise InvalidParameterError(
            f"The 'reps' parameter of {owner} must be a positive int or three positive "
            f"ints (supercell repetitions). Got {reps!r} instead.")
    return tuple(int(r) for r in reps)


def _relax(opt, what, fmax, steps):
    """Run an ASE optimizer; a RuntimeWarning when it stops before ``fmax`` (eV/Å)."""
    if not opt.run(fmax=fmax, steps=steps):
        warnings.warn(f"{what} not converged to fmax={fmax} eV/Å in {steps} steps",
                      RuntimeWarning, stacklevel=3)


def _strained(atoms, voigt):
    """Copy of ``atoms`` with the cell (and positions) deformed by the Voigt strain
    ``voigt`` (engineering shear components)."""
    eps = np.zeros((3, 3))
    for k, (i, j) in enumerate(VOIGT_PAIRS):
        eps[i, j] = eps[j, i] = voigt[k] if i == j else 0.5 * voigt[k]
    a = atoms.copy()
    a.set_cell(atoms.cell[:] @ (np.eye(3) + eps), scale_atoms=True)
    return a


def reference_crystal(symbol):
    """The crystal of :data:`CRYSTALS` to compute for ``symbol`` by default.

    ASE's reference structure of the element (``ase.data.reference_states``) when it is fcc,
    bcc or diamond (Al, Cu, Ni: ``"fcc"``; Mo, W: ``"bcc"``; Si: ``"diamond"``), else
    ``"fcc"``.

    Parameters
    ----------
    symbol : str
        Chemical symbol.

    Returns
    -------
    str

    Raises
    ------
    hybridpot.InvalidParameterError
        For an unknown ``symbol``.
    """
    from ase.data import atomic_numbers, reference_states

    _check_symbol(symbol, "reference_crystal")
    ref = reference_states[atomic_numbers[symbol]] or {}
    return ref["symmetry"] if ref.get("symmetry") in CRYSTALS else "fcc"


def default_lattice_constant(symbol, crystal="fcc"):
    """Starting lattice constant (Å) of the cubic cell of ``symbol`` in ``crystal``.

    ASE's reference value (``ase.data.reference_states``) when the element's reference
    state is that crystal, else from twice the covalent radius ``d`` taken as the
    nearest-neighbour distance: fcc ``d √2``, bcc ``2 d / √3``, diamond ``4 d / √3``.

    Parameters
    ----------
    symbol : str
        Chemical symbol, e.g. ``"Al"``.
    crystal : {"fcc", "bcc", "diamond"}, default="fcc"

    Returns
    -------
    float
        Lattice constant of the cubic conventional cell, Å.

    Raises
    ------
    hybridpot.InvalidParameterError
        For an unknown ``symbol`` or ``crystal``.
    """
    from ase.data import atomic_numbers, covalent_radii, reference_states

    owner = "default_lattice_constant"
    _check_symbol(symbol, owner)
    _check_crystal(crystal, owner)
    z = atomic_numbers[symbol]
    ref = reference_states[z] or {}
    if ref.get("symmetry") == crystal and ref.get("a"):
        return float(ref["a"])
    d = 2 * covalent_radii[z]          # nearest-neighbour distance
    return float({"fcc": d * 2 ** 0.5, "bcc": 2 * d / 3 ** 0.5,
                  "diamond": 4 * d / 3 ** 0.5}[crystal])


def relaxed_bulk(calc, symbol, crystal="fcc", a_guess=None, fmax=1e-4, steps=200):
    """Cubic cell of ``symbol`` relaxed (cell and positions).

    Parameters
    ----------
    calc : ase.calculators.calculator.Calculator
        Energy, forces and stress (e.g. ``model.calculator()``).
    symbol : str
        Chemical symbol.
    crystal : {"fcc", "bcc", "diamond"}, default="fcc"
    a_guess : float, optional
        Starting lattice constant, Å (default: :func:`default_lattice_constant`).
    fmax : float, default=1e-4
        Force threshold of the ``FrechetCellFilter`` + ``BFGS`` relaxation, eV/Å.
    steps : int, default=200
        Largest number of BFGS steps.

    Returns
    -------
    atoms : ase.Atoms
        The relaxed cubic cell (4 / 2 / 8 atoms), exactly cubic, with ``calc`` attached.
    a0 : float
        Relaxed lattice constant, Å.

    Raises
    ------
    hybridpot.InvalidParameterError
        For a bad ``calc``, ``symbol``, ``crystal``, ``a_guess``, ``fmax`` or ``steps``.
    """
    from ase.build import bulk
    from ase.filters import FrechetCellFilter
    from ase.optimize import BFGS

    owner = "relaxed_bulk"
    _check_calc(calc, owner)
    _check_symbol(symbol, owner)
    _check_crystal(crystal, owner)
    a_guess = (default_lattice_constant(symbol, crystal) if a_guess is None
               else check_float(a_guess, "a_guess", owner, low=0.0, finite=True))
    fmax = check_float(fmax, "fmax", owner, low=0.0, finite=True)
    steps = check_int(steps, "steps", owner, low=1)
    atoms = bulk(symbol, crystal, a=a_guess, cubic=True)
    atoms.calc = calc
    _relax(BFGS(FrechetCellFilter(atoms), logfile=None), "cell relaxation", fmax, steps)
    a0 = float(np.linalg.det(atoms.cell[:]) ** (1 / 3))
    atoms.set_cell(np.eye(3) * a0, scale_atoms=True)   # remove round-off shear
    atoms.calc = calc
    return atoms, a0


def bulk_modulus(calc, atoms0, span=0.03, n=7):
    """Birch-Murnaghan bulk modulus (GPa) from ``n`` volumes within ±``span`` of ``atoms0``'s.

    Parameters
    ----------
    calc : ase.calculators.calculator.Calculator
    atoms0 : ase.Atoms
        The relaxed cell (:func:`relaxed_bulk`); not modified.
    span : float, default=0.03
        Relative volume range, in (0, 0.5).
    n : int, default=7
        Number of volumes, >= 5.

    Returns
    -------
    float
        Bulk modulus, GPa (0 when the energy does not change with the volume: no neighbour
        within the calculator's range).
    """
    from ase.eos import EquationOfState
    from ase.units import GPa

    owner = "bulk_modulus"
    _check_calc(calc, owner)
    _check_atoms0(atoms0, owner)
    span = check_float(span, "span", owner, low=0.0, high=0.5)
    n = check_int(n, "n", owner, low=5)
    vols, ens = [], []
    for s in np.linspace(1 - span, 1 + span, n):
        a = atoms0.copy()
        a.set_cell(atoms0.cell[:] * s ** (1 / 3), scale_atoms=True)
        a.calc = calc
        vols.append(a.get_volume())
        ens.append(a.get_potential_energy())
    if np.ptp(ens) <= 1e-12 * max(1.0, float(np.max(np.abs(ens)))):
        return 0.0          # no curvature (nothing within range): the EOS fit is ill-posed
    eos = EquationOfState(vols, ens, eos="birchmurnaghan")
    eos.fit()
    return float(eos.B / GPa)


def _strained_relaxed(calc, atoms0, voigt, relax_ions):
    from ase.optimize import BFGS

    a = _strained(atoms0, voigt)
    a.calc = calc
    if relax_ions:     # relaxed-ion constants (diamond: the inner strain lowers C44)
        _relax(BFGS(a, logfile=None), "ions of a strained cell", 1e-4, 300)
    return a


def elastic_from_stress(calc, atoms0, delta=0.005, relax_ions=False):
    """6x6 elastic tensor from central differences of the stress, ``C_ij = dσ_i/dε_j``.

    Parameters
    ----------
    calc : ase.calculators.calculator.Calculator
    atoms0 : ase.Atoms
        The relaxed (stress-free) cell; not modified.
    delta : float, default=0.005
        Strain step (engineering shear strain for the shear components).
    relax_ions : bool, default=False
        Relax the ions in every strained cell (relaxed-ion constants; needed when not every
        atom is a centre of inversion, e.g. diamond).

    Returns
    -------
    ndarray, shape (6, 6)
        ``C`` in GPa, Voigt order xx, yy, zz, yz, xz, xy.
    """
    from ase.units import GPa

    owner = "elastic_from_stress"
    _check_calc(calc, owner)
    _check_atoms0(atoms0, owner)
    delta = check_float(delta, "delta", owner, low=0.0, high=0.1)
    C = np.zeros((6, 6))
    for j in range(6):
        s = []
        for sign in (1, -1):
            v = np.zeros(6)
            v[j] = sign * delta
            a = _strained_relaxed(calc, atoms0, v, relax_ions)
            s.append(a.get_stress(voigt=True))
        C[:, j] = (s[0] - s[1]) / (2 * delta)
    return C / GPa


def elastic_from_energy(calc, atoms0, delta=0.005, relax_ions=False):
    """Cubic elastic constants from second differences of the energy.

    ``C11 = d²(E/V0)/dε_xx²``, ``2 C11 + 2 C12`` from ``ε_xx = ε_yy``, ``C44`` from the
    engineering shear strain ``γ_yz``.

    Parameters
    ----------
    calc, atoms0, delta, relax_ions
        As in :func:`elastic_from_stress`.

    Returns
    -------
    tuple of float
        ``(C11, C12, C44)``, GPa.
    """
    from ase.units import GPa

    owner = "elastic_from_energy"
    _check_calc(calc, owner)
    _check_atoms0(atoms0, owner)
    delta = check_float(delta, "delta", owner, low=0.0, high=0.1)
    V0 = atoms0.get_volume()

    def d2(voigt):
        e = []
        for sign in (1, 0, -1):
            a = _strained_relaxed(calc, atoms0, sign * np.asarray(voigt, float), relax_ions)
            e.append(a.get_potential_energy())
        return (e[0] - 2 * e[1] + e[2]) / (delta ** 2 * V0) / GPa

    c11 = d2([delta, 0, 0, 0, 0, 0])
    c11_c12 = d2([delta, delta, 0, 0, 0, 0])   # = 2 C11 + 2 C12
    c44 = d2([0, 0, 0, delta, 0, 0])
    return float(c11), float(0.5 * c11_c12 - c11), float(c44)


def cubic_constants(C):
    """``(C11, C12, C44)`` averaged over the cubic-equivalent entries of a 6x6 tensor.

    Parameters
    ----------
    C : array_like, shape (6, 6)
        Elastic tensor (any unit; returned in the same).

    Returns
    -------
    tuple of float
    """
    C = np.asarray(C, dtype=float)
    if C.shape != (6, 6):
        raise InvalidParameterError(
            f"The 'C' parameter of cubic_constants must be a 6x6 array. Got shape "
            f"{C.shape} instead.")
    c11 = np.mean(np.diag(C)[:3])
    c12 = np.mean([C[0, 1], C[0, 2], C[1, 2], C[1, 0], C[2, 0], C[2, 1]])
    return float(c11), float(c12), float(np.mean(np.diag(C)[3:]))


def vacancy_formation(calc, atoms0, reps, fmax=0.01):
    """Relaxed (fixed volume) vacancy formation energy ``E(N-1) - (N-1)/N E(N)``.

    Parameters
    ----------
    calc : ase.calculators.calculator.Calculator
    atoms0 : ase.Atoms
        The relaxed cubic cell; not modified.
    reps : int or tuple of 3 int
        Supercell of ``atoms0`` holding the vacancy.
    fmax : float, default=0.01
        Force threshold of the BFGS relaxation, eV/Å.

    Returns
    -------
    float
        Vacancy formation energy, eV.
    """
    from ase.optimize import BFGS

    owner = "vacancy_formation"
    _check_calc(calc, owner)
    _check_atoms0(atoms0, owner)
    reps = _check_reps(reps, owner)
    fmax = check_float(fmax, "fmax", owner, low=0.0, finite=True)
    sc = atoms0.repeat(reps)
    sc.calc = calc
    e_bulk = sc.get_potential_energy()
    n = len(sc)
    vac = sc.copy()
    del vac[0]
    vac.rattle(0.01, seed=1)          # break the symmetry a perfect start would keep
    vac.calc = calc
    _relax(BFGS(vac, logfile=None), "vacancy relaxation", fmax, 300)
    return float(vac.get_potential_energy() - (n - 1) / n * e_bulk)


def migration_barrier(calc, atoms0, reps, n_images=3, fmax=0.02):
    """Vacancy migration energy: climbing-image NEB of a nearest neighbour hopping into
    the vacancy of a ``reps`` supercell, end points relaxed.

    Parameters
    ----------
    calc : ase.calculators.calculator.Calculator
        Shared by the images (``allow_shared_calculator=True``).
    atoms0 : ase.Atoms
        The relaxed cubic cell; not modified.
    reps : int or tuple of 3 int
        Supercell of ``atoms0``.
    n_images : int, default=3
        Intermediate images, >= 1.
    fmax : float, default=0.02
        Force threshold of the end points (BFGS) and of the NEB (FIRE), eV/Å.

    Returns
    -------
    float
        Highest image energy minus the initial one, eV.
    """
    from ase.mep import NEB
    from ase.optimize import BFGS, FIRE

    owner = "migration_barrier"
    _check_calc(calc, owner)
    _check_atoms0(atoms0, owner)
    reps = _check_reps(reps, owner)
    n_images = check_int(n_images, "n_images", owner, low=1)
    fmax = check_float(fmax, "fmax", owner, low=0.0, finite=True)
    sc = atoms0.repeat(reps)
    d = sc.get_distances(0, range(1, len(sc)), mic=True)
    hop = 1 + int(np.argmin(d))                   # a nearest neighbour of atom 0
    ends = [sc.copy(), sc.copy()]
    ends[1].positions[hop] = sc.positions[0]      # the neighbour moved into the site
    for end in ends:
        del end[0]
        end.calc = calc
        _relax(BFGS(end, logfile=None), "NEB end point", fmax, 300)
    images = [ends[0]] + [ends[0].copy() for _ in range(n_images)] + [ends[1]]
    for im in images[1:-1]:
        im.calc = calc
    neb = NEB(images, climb=True, allow_shared_calculator=True, method="improvedtangent")
    neb.interpolate(mic=True)
    _relax(FIRE(neb, logfile=None), "NEB", fmax, 500)
    energies = [im.get_potential_energy() for im in images]
    return float(max(energies) - energies[0])


def zone_boundary_phonons(calc, symbol, crystal, a0, r_cut, delta=0.01, span=4.0):
    """Phonon frequencies at the zone boundary by finite displacements.

    ``ase.phonons.Phonons`` on ``n x n x n`` primitive cells spanning ``span * r_cut``: the
    force constants reach ``2 r_cut``, and a supercell shorter than ``4 r_cut`` aliases them
    (a few % off the zone boundary with 3).

    Parameters
    ----------
    calc : ase.calculators.calculator.Calculator
    symbol : str
    crystal : {"fcc", "bcc", "diamond"}
    a0 : float
        Lattice constant of the cubic cell, Å.
    r_cut : float
        Range of the interactions (the model's cutoff), Å.
    delta : float, default=0.01
        Displacement, Å.
    span : float, default=4.0
        Supercell length in units of ``r_cut``.

    Returns
    -------
    nu : ndarray, shape (n_branches,)
        Frequencies at X (fcc, diamond) or H (bcc), ascending, THz.
    nu_gamma : float
        Largest |frequency| of the three acoustic modes at Γ without the acoustic sum rule
        correction, THz (0 for forces that are the exact gradient of a
        translation-invariant energy).
    """
    from ase.build import bulk
    from ase.phonons import Phonons
    from ase.units import _e, _hplanck

    owner = "zone_boundary_phonons"
    _check_calc(calc, owner)
    _check_symbol(symbol, owner)
    _check_crystal(crystal, owner)
    a0 = check_float(a0, "a0", owner, low=0.0, finite=True)
    r_cut = check_float(r_cut, "r_cut", owner, low=0.0, finite=True)
    delta = check_float(delta, "delta", owner, low=0.0, high=0.5)
    span = check_float(span, "span", owner, low=0.0, finite=True)
    prim = bulk(symbol, crystal, a=a0)
    n = math.ceil(span * r_cut / min(prim.cell.lengths()))
    with tempfile.TemporaryDirectory() as tmp:
        ph = Phonons(prim, calc, supercell=(n, n, n), delta=delta, name=f"{tmp}/ph")
        ph.run()
        ph.read(acoustic=False)
        q = prim.cell.bandpath().special_points["H" if crystal == "bcc" else "X"]
        to_thz = _e / _hplanck / 1e12               # eV -> THz
        gamma = np.sort(np.abs(ph.band_structure([[0, 0, 0]], verbose=False)[0]))[2] * to_thz
        nu = np.sort(ph.band_structure([q], verbose=False)[0]) * to_thz
    return nu, float(gamma)


def surface_energy(calc, symbol, crystal, a0, e_bulk_atom, facet, size=(2, 2, 9),
                   vacuum=8.0, fmax=0.01):
    """Relaxed surface energy ``(E_slab - N e_bulk) / 2A`` of a slab.

    Parameters
    ----------
    calc : ase.calculators.calculator.Calculator
    symbol : str
    crystal : {"fcc", "bcc", "diamond"}
        Diamond surfaces are unreconstructed.
    a0 : float
        Lattice constant, Å.
    e_bulk_atom : float
        Energy per atom of the bulk crystal, eV.
    facet : str
        ``"100"``, ``"110"``, ``"111"`` (fcc), ``"100"``, ``"110"`` (bcc), ``"100"``,
        ``"111"`` (diamond).
    size : tuple of 3 int, default=(2, 2, 9)
        Slab size (ASE's surface builders: in-plane repetitions, layers).
    vacuum : float, default=8.0
        Vacuum on each side, Å (the cell is periodic in 3-D).
    fmax : float, default=0.01
        Force threshold of the BFGS relaxation, eV/Å.

    Returns
    -------
    float
        Surface energy, J/m².
    """
    import ase.build
    from ase.optimize import BFGS

    owner = "surface_energy"
    _check_calc(calc, owner)
    _check_symbol(symbol, owner)
    _check_crystal(crystal, owner)
    check_choice(facet, "facet", tuple(_SLAB_BUILDERS[crystal]), f"{owner} ({crystal})")
    a0 = check_float(a0, "a0", owner, low=0.0, finite=True)
    e_bulk_atom = check_float(e_bulk_atom, "e_bulk_atom", owner, finite=True)
    vacuum = check_float(vacuum, "vacuum", owner, low=0.0, finite=True)
    size = _check_reps(size, owner)
    build = getattr(ase.build, _SLAB_BUILDERS[crystal][facet])
    kw = {} if crystal == "diamond" else {"orthogonal": True}
    slab = build(symbol, size, a=a0, vacuum=vacuum, **kw)
    slab.pbc = True                     # the model gives stress for 3-D periodic cells only
    slab.calc = calc
    _relax(BFGS(slab, logfile=None), f"({facet}) slab", fmax, 300)
    area = np.linalg.norm(np.cross(slab.cell[0], slab.cell[1]))
    gamma = (slab.get_potential_energy() - len(slab) * e_bulk_atom) / (2 * area)
    return float(gamma / _j_per_m2())


def calculator_properties(calc, symbol, crystal="fcc", a_guess=None, quick=False, r_cut=None):
    """Every property of one calculator.

    Parameters
    ----------
    calc : ase.calculators.calculator.Calculator
        Energy, forces and stress of 3-D periodic cells.
    symbol : str
        Chemical symbol of the monatomic crystal.
    crystal : {"fcc", "bcc", "diamond"}, default="fcc"
    a_guess : float, optional
        Starting lattice constant, Å (default: :func:`default_lattice_constant`).
    quick : bool, default=False
        Smaller defect cells and slabs, a 1-image NEB with fmax 0.05 eV/Å and a 3 ``r_cut``
        phonon supercell (seconds instead of a minute).
    r_cut : float, optional
        Range of the interactions, Å; with it also the zone-boundary phonons.

    Returns
    -------
    dict
        Property key -> float, in this order: ``a0`` (Å), ``B``, ``C11``, ``C12``, ``C44``,
        ``C11(E)``, ``C12(E)``, ``C44(E)``, ``B(C)`` (GPa), ``E_v``, ``E_m`` (eV), two
        surface energies ``γ<facet>`` (J/m², facets of :data:`FACETS`), and with ``r_cut``
        ``ν(Γ)``, ``νX lo``, ``νX hi`` (``νH ...`` for bcc) (THz); see the module docstring.
        Units also in :data:`UNITS`.

    Raises
    ------
    hybridpot.InvalidParameterError
        For a bad ``calc``, ``symbol``, ``crystal``, ``a_guess``, ``quick`` or ``r_cut``.
    """
    owner = "calculator_properties"
    _check_calc(calc, owner)
    _check_symbol(symbol, owner)
    _check_crystal(crystal, owner)
    if not isinstance(quick, (bool, np.bool_)):
        raise InvalidParameterError(f"The 'quick' parameter of {owner} must be a bool. "
                                    f"Got {quick!r} instead.")
    r_cut = check_float(r_cut, "r_cut", owner, low=0.0, finite=True, allow_none=True)
    atoms0, a0 = relaxed_bulk(calc, symbol, crystal, a_guess)
    e_atom = atoms0.get_potential_energy() / len(atoms0)
    out = {"a0": a0, "B": bulk_modulus(calc, atoms0)}
    if not out["B"] > 0:      # e.g. an a_guess beyond the interaction range: all zeros
        warnings.warn(
            f"{symbol} {crystal}: the relaxed cell (a0 = {a0:.4g} Å) has no positive bulk "
            f"modulus (B = {out['B']:.3g} GPa), so the calculator does not bind the crystal "
            f"there (an a_guess outside the interaction range?); the properties are not "
            f"those of a bound crystal", RuntimeWarning, stacklevel=2)
    relax = crystal == "diamond"      # fcc / bcc: every atom a centre of inversion
    C = elastic_from_stress(calc, atoms0, relax_ions=relax)
    out.update(zip(("C11", "C12", "C44"), cubic_constants(C)))
    out.update(zip(("C11(E)", "C12(E)", "C44(E)"),
                   elastic_from_energy(calc, atoms0, relax_ions=relax)))
    out["B(C)"] = (out["C11"] + 2 * out["C12"]) / 3
    c11, c12, c44 = out["C11"], out["C12"], out["C44"]
    if out["B"] > 0 and not (c11 - c12 > 0 and c11 + 2 * c12 > 0 and c44 > 0):
        # e.g. bcc for a pair potential, diamond Al: the defect cells, slabs and phonons
        # then relax away from (or are imaginary in) this crystal
        warnings.warn(
            f"{symbol} {crystal} is mechanically unstable for this calculator (Born "
            f"criteria C11 - C12 > 0, C11 + 2 C12 > 0, C44 > 0 fail: C11 = {c11:.4g}, C12 = "
            f"{c12:.4g}, C44 = {c44:.4g} GPa); its vacancy, migration, surface and phonon "
            f"values are not those of a stable crystal", RuntimeWarning, stacklevel=2)
    out["E_v"] = vacancy_formation(calc, atoms0, 2 if quick else 3)
    out["E_m"] = (migration_barrier(calc, atoms0, 2, 1, fmax=0.05) if quick
                  else migration_barrier(calc, atoms0, 3, 3))
    size = (2, 2, 5) if quick else (2, 2, 9)
    for facet in FACETS[crystal]:
        out[f"γ{facet}"] = surface_energy(calc, symbol, crystal, a0, e_atom, facet, size)
    if r_cut is not None:
        point = "H" if crystal == "bcc" else "X"
        nu, out["ν(Γ)"] = zone_boundary_phonons(calc, symbol, crystal, a0, r_cut,
                                                span=3.0 if quick else 4.0)
        out[f"ν{point} lo"], out[f"ν{point} hi"] = float(nu[0]), float(nu[-1])
    return {k: float(v) for k, v in out.items()}


def _check_model(model, owner):
    from .potential import HybridPotential

    if not isinstance(model, HybridPotential):
        raise InvalidParameterError(
            f"The 'model' parameter of {owner} must be a fitted HybridPotential. Got "
            f"{type(model).__name__} instead.")
    if not hasattr(model, "regressor_"):
        raise NotFittedError(
            f"The 'model' parameter of {owner} is a HybridPotential that is not fitted yet. "
            "Call 'fit' first (or load a saved model with HybridPotential.load).")
    return model


def committee_kind(model):
    """How :func:`committee` draws members of a fitted model.

    Parameters
    ----------
    model : HybridPotential
        Fitted.

    Returns
    -------
    str or None
        ``"ensemble"`` (an ``EnsembleRegressor``'s fitted members), ``"posterior"``
        (coefficient draws from a Bayesian linear posterior), or None (no committee).

    Raises
    ------
    hybridpot.NotFittedError
        For a model that is not fitted.
    hybridpot.InvalidParameterError
        For a ``model`` that is no HybridPotential.
    """
    _check_model(model, "committee_kind")
    reg = model.regressor_
    if getattr(reg, "estimators_", None):
        return "ensemble"
    if hasattr(reg, "sample_coef") and getattr(reg, "precision_factor_", None) is not None:
        return "posterior"
    return None


def committee(model, n_members, random_state=0):
    """Member potentials of a fitted model for the σ of derived properties.

    Parameters
    ----------
    model : HybridPotential
        Fitted; its regressor a Bayesian linear model (``sample_coef``) or an
        ``EnsembleRegressor``.
    n_members : int
        Number of coefficient draws, >= 1 (an ensemble gives all its members instead).
    random_state : None, int, numpy Generator or RandomState, default=0
        Seeds the coefficient draws (not used for an ensemble).

    Returns
    -------
    list of HybridPotential
        Members with the model's descriptor, baseline and reference energies.

    Raises
    ------
    hybridpot.NotFittedError
        For a model that is not fitted.
    hybridpot.InvalidParameterError
        For a bad ``model``, ``n_members`` or ``random_state``, or a regressor with neither a
        coefficient posterior nor ensemble members.
    """
    from .potential import HybridPotential
    from .regression import LinearRegressor

    owner = "committee"
    _check_model(model, owner)
    n_members = check_int(n_members, "n_members", owner, low=1)
    check_random_state_param(random_state, owner)
    kind = committee_kind(model)
    reg = model.regressor_
    common = dict(baseline=model.baseline, reference_energies=model.reference_energies_)
    if kind == "ensemble":
        return [HybridPotential.from_fitted(model.descriptor, est, **common)
                for est in reg.estimators_]
    if kind is None:
        raise InvalidParameterError(
            f"The 'model' parameter of {owner} must have a regressor with a coefficient "
            f"posterior (BayesianLinearRegressor) or ensemble members (EnsembleRegressor). "
            f"Got {type(reg).__name__} instead.")
    draws = reg.sample_coef(n_members, random_state=random_state)
    return [HybridPotential.from_fitted(model.descriptor,
                                        LinearRegressor.from_coef(c, quadratic=reg.quadratic),
                                        **common)
            for c in draws]


def compute_properties(model, symbol=None, crystal="fcc", a_guess=None, quick=False,
                       members=None, random_state=0):
    """Materials properties of a fitted model, its baseline, and their committee σ.

    Parameters
    ----------
    model : HybridPotential
        Fitted.
    symbol : str, optional
        Element of the monatomic crystal, one of ``model.species_``; default: the model's
        element when it has one.
    crystal : {"fcc", "bcc", "diamond"}, default="fcc"
    a_guess : float, optional
        Starting lattice constant, Å (default: :func:`default_lattice_constant`: ASE's
        reference value when the element's reference state is ``crystal``).  The members
        start from the model's relaxed ``a0``.
    quick : bool, default=False
        Smaller cells, NEB and phonon supercell (see :func:`calculator_properties`).
    members : int, optional
        Committee size for σ: ``0`` no σ; ``>= 2`` coefficient draws of a Bayesian linear
        model (an ``EnsembleRegressor`` always uses all its members).  Default None: 16 (4
        with ``quick``) when the model has a committee (:func:`committee_kind`), else 0.
        An explicit ``members >= 2`` for a model without one is an error.
    random_state : None, int, numpy Generator or RandomState, default=0
        Seeds the coefficient draws.

    Returns
    -------
    dict
        JSON-serialisable (plain floats, None for what is missing):

        - ``symbol``, ``crystal``, ``quick``, ``a_guess`` (Å), ``r_cut`` (Å, the range of
          the interactions that sizes the phonon supercell: the descriptor's cutoff, or the
          baseline's ``r_cut`` when that is longer; EMT has no ``r_cut`` and is not counted);
        - ``keys``: property keys in table order; ``units``: key -> unit (Å, GPa, eV,
          J/m², THz);
        - ``model``: key -> value of the model;
        - ``sigma``: key -> standard deviation (``ddof=1``) over the members, or None
          without a committee;
        - ``n_members``, ``committee`` (``"posterior"``, ``"ensemble"`` or None),
          ``members``: list of key -> value dicts, one per member;
        - ``baseline_name`` (class name or None), ``baseline``: key -> value of the
          baseline alone and ``difference``: model minus baseline, both None without a
          baseline or with ZBL (which binds nothing);
        - ``notes``: list of str (e.g. that the model's recalibration is not used for σ, or
          that a ZBL baseline is not computed alone).

    Raises
    ------
    hybridpot.NotFittedError
        For a model that is not fitted.
    hybridpot.InvalidParameterError
        For a ``model`` that is no HybridPotential, a ``symbol`` that is not one of its
        species (or missing for a multi-element model), an unknown ``crystal``, a
        non-positive ``a_guess``, ``members`` < 0 or 1, ``members >= 2`` for a model
        without committee, or a bad ``random_state``.
    """
    from .baselines import ZBL

    owner = "compute_properties"
    _check_model(model, owner)
    species = list(model.species_)
    if symbol is None:
        if len(species) != 1:
            raise InvalidParameterError(
                f"The 'symbol' parameter of {owner} must name one of the model's elements "
                f"{species} (it has several). Got None instead.")
        symbol = species[0]
    if symbol not in species:
        raise InvalidParameterError(
            f"The 'symbol' parameter of {owner} must be one of the model's elements "
            f"{species}. Got {symbol!r} instead.")
    _check_crystal(crystal, owner)
    a_guess = (default_lattice_constant(symbol, crystal) if a_guess is None
               else check_float(a_guess, "a_guess", owner, low=0.0, finite=True))
    if not isinstance(quick, (bool, np.bool_)):
        raise InvalidParameterError(f"The 'quick' parameter of {owner} must be a bool. "
                                    f"Got {quick!r} instead.")
    quick = bool(quick)
    check_random_state_param(random_state, owner)
    kind = committee_kind(model)
    if members is None:
        n_members = 0 if kind is None else (4 if quick else 16)
    else:
        n_members = check_int(members, "members", owner, low=0)
        if n_members == 1:
            raise InvalidParameterError(
                f"The 'members' parameter of {owner} must be 0 (no σ) or >= 2 (σ is the "
                f"spread of the members). Got 1 instead.")
        if n_members and kind is None:
            raise InvalidParameterError(
                f"The 'members' parameter of {owner} must be 0 for a model whose regressor "
                f"({type(model.regressor_).__name__}) has no coefficient posterior "
                f"(BayesianLinearRegressor) and no ensemble members. Got {n_members} "
                f"instead.")
    notes = []
    if kind is None:
        notes.append(f"no σ: {type(model.regressor_).__name__} has no coefficient posterior "
                     "(a Bayesian linear model has) and no ensemble members")
    if n_members and kind == "ensemble":
        n_members = len(model.regressor_.estimators_)
    if n_members and (getattr(model, "uncertainty_", None) is not None
                      or getattr(model, "uncertainty_scale_", None)):
        notes.append("the property σ come from the fitted members; the model's "
                     "LinearPosterior committee and σ recalibration are not used for them")

    # the range of the interactions (phonon supercell): the longer of the descriptor's
    # cutoff and the baseline's (LennardJones, Morse, Buckingham, ZBL take an r_cut)
    r_cut = float(model.descriptor.r_cut)
    b_cut = getattr(model.baseline, "r_cut", None)
    if isinstance(b_cut, numbers.Real) and math.isfinite(b_cut) and b_cut > r_cut:
        r_cut = float(b_cut)
    run = dict(symbol=symbol, quick=quick, crystal=crystal, r_cut=r_cut)
    ml = calculator_properties(model.calculator(), a_guess=a_guess, **run)
    base_name = type(model.baseline).__name__ if model.baseline is not None else None
    if isinstance(model.baseline, ZBL):
        notes.append("the ZBL baseline alone is not computed: a screened repulsion binds no "
                     "crystal (baseline and difference are None)")
    base = (calculator_properties(model.baseline.calculator(), a_guess=a_guess, **run)
            if model.baseline is not None and not isinstance(model.baseline, ZBL) else None)
    mem = ([calculator_properties(m.calculator(), a_guess=ml["a0"], **run)
            for m in committee(model, n_members, random_state)] if n_members else [])
    sigma = ({k: float(np.std([m[k] for m in mem], ddof=1)) for k in ml}
             if len(mem) > 1 else None)
    return {
        "symbol": symbol, "crystal": crystal, "quick": quick, "a_guess": float(a_guess),
        "r_cut": r_cut, "keys": list(ml), "units": {k: unit_of(k) for k in ml},
        "model": ml, "sigma": sigma, "n_members": len(mem),
        "committee": kind if mem else None, "members": mem,
        "baseline_name": base_name, "baseline": base,
        "difference": ({k: ml[k] - base[k] for k in ml} if base is not None else None),
        "notes": notes,
    }


def format_table(result):
    """The properties of :func:`compute_properties` as a text table.

    One row per property: key, unit, model value, σ (``nan`` without a committee), and
    with a baseline its value and the difference; then a line comparing the stress- and
    energy-derived elastic constants and the two bulk moduli.

    Parameters
    ----------
    result : dict
        As returned by :func:`compute_properties`.

    Returns
    -------
    str
        Starts with an empty line.
    """
    ml, base, sig = result["model"], result["baseline"], result["sigma"]
    head = f"\n{'property':<10} {'unit':<5} {'model':>9} {'± σ':>8}"
    if base:
        head += f" {result['baseline_name'][:9]:>9} {'difference':>10}"
    lines = [head]
    for key in result["keys"]:
        s = sig[key] if sig else float("nan")
        row = f"{key:<10} {result['units'][key]:<5} {ml[key]:9.4f} {s:8.4f}"
        if base:
            row += f" {base[key]:9.4f} {ml[key] - base[key]:10.4f}"
        lines.append(row)
    dE = max(abs(ml[k] - ml[f"{k}(E)"]) for k in ("C11", "C12", "C44"))
    lines.append(f"\nelastic constants from stress vs energy: max difference {dE:.3f} GPa; "
                 f"B from C {ml['B(C)']:.2f} vs EOS {ml['B']:.2f} GPa")
    return "\n".join(lines)
