"""Validate a fitted potential on materials properties, with σ from a posterior committee.

Fits the model ``hybridpot fit`` makes by default (a Bayesian linear power-spectrum model with
one shared noise level and energy / force / stress row weights 1000 / 1 / 100) on top of EMT
(ZBL for elements without EMT parameters) to the shipped aluminium GPAW data or ``--data`` --
or evaluates a saved model (``--model model.hpot``) --
and computes, through the model's ASE calculator and standard ASE tools, the properties the
mlearn benchmark (Zuo et al., J. Phys. Chem. A 124, 731 (2020)) reports for each potential:

- lattice constant ``a0`` (Å): cubic cell relaxed with ``FrechetCellFilter`` + ``BFGS``;
- bulk modulus ``B`` (GPa): Birch-Murnaghan fit (``ase.eos.EquationOfState``) to seven
  volumes within ±3 % of the relaxed one;
- cubic elastic constants ``C11``, ``C12``, ``C44`` (GPa) twice: from the stress of ±0.5 %
  strains (central differences, ``C_ij = dσ_i/dε_j``, Voigt order, engineering shear
  strain) and, marked ``(E)``, from the second derivative of the energy,
  ``E(ε)/V0 = E0/V0 + ½ Σ C_ij ε_i ε_j`` (a model whose stress is the strain derivative of
  its energy gives the same numbers); ``B(C) = (C11 + 2 C12) / 3`` must equal the EOS ``B``.
  Every atom of a monatomic fcc / bcc crystal is a centre of inversion, so no internal
  relaxation enters; for diamond (``--crystal diamond``) the ions are relaxed in every
  strained cell (relaxed-ion constants: the inner strain lowers C44);
- vacancy formation energy ``E_v = E(N-1) - (N-1)/N E(N)`` (eV), the defect cell relaxed at
  fixed volume (2x2x2 cubic cells with ``--quick``, else 3x3x3: fcc 32 / 108 atoms, bcc
  16 / 54, diamond 64 / 216);
- vacancy migration energy ``E_m`` (eV): climbing-image NEB (``ase.mep.NEB``, FIRE) of a
  nearest neighbour hopping into the vacancy, in the same cell (1 image and fmax 0.05
  eV/Å with ``--quick``, else 3 and 0.02);
- surface energies ``γ = (E_slab - N e_bulk) / 2A`` (J/m², 1 eV/Å² = 16.02 J/m²) of relaxed
  (100) and (111) slabs (bcc: (100) and (110); diamond: unreconstructed) with 8 Å of vacuum,
  in a cell periodic in 3-D (the model's stress needs ``pbc=True``; energy and forces do
  not see the vacuum);
- phonons by finite displacements (``ase.phonons.Phonons``): the lowest and highest
  frequency (THz) at the zone-boundary point X (fcc, diamond) or H (bcc), and, as a check,
  the largest |ν| of the acoustic modes at Γ without the acoustic-sum-rule correction (zero
  for forces that are the exact gradient of a translation-invariant energy).  The
  supercell must hold the range of the force constants, twice the model's cutoff, or the
  dispersion is aliased (bcc Mo with a 5.2 Å cutoff: the two transverse branches along
  [100] split by 10 % with a 5x5x5 primitive supercell, exact with 9x9x9); here it spans
  ``4 r_cut`` (``3 r_cut`` with ``--quick``).

Each property is printed for the model (with σ), for its empirical baseline alone (EMT here;
not for ZBL, which binds nothing) and their difference.  σ: the Bayesian posterior of the
linear coefficients is Gaussian, so ``--members`` coefficient draws
(``BayesianLinearRegressor.sample_coef``) give a committee of member potentials
(``LinearRegressor.from_coef`` + ``HybridPotential.from_fitted``); every property is
recomputed for each member (relaxations included) and σ is the members' spread.  For an
``EnsembleRegressor`` (e.g. sparse GPs on different inducing points) the members are its
fitted copies; other regressors get no σ.  It is the
parameter part of the uncertainty of a *derived* property, which the calculator's
``energy_std`` cannot give: adding the variances of two energies ignores that their errors
are correlated, and ``energy_std`` includes the observation noise ``N σ_E``, no error of a
property (108-atom Ni cell and its vacancy, mlearn ps_linear: energy_std 0.011 eV each,
committee σ of the energies 0.0018 / 0.0026 eV, of E_v 0.0020 eV).  It does not include the
error of the model's form: on mlearn Ni and Mo the properties of linear models differ from
the DFT values by many such σ (e.g. C11 of Ni, 289 ± 0.5 GPa against 286 GPa from the DFT
stresses).

Full run (16 members) ~1 min of CPU, ``--quick`` ~5 s.

    python examples/properties.py [--quick] [--members 16] [--data path.extxyz]
    hybridpot fit && python examples/properties.py --model model.hpot
    python examples/properties.py --model mo.hpot --crystal bcc
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time

import numpy as np
from ase.build import bcc100, bcc110, bulk, diamond100, diamond111, fcc100, fcc110, fcc111
from ase.data import atomic_numbers, covalent_radii, reference_states
from ase.eos import EquationOfState
from ase.filters import FrechetCellFilter
from ase.io import read
from ase.mep import NEB
from ase.optimize import BFGS, FIRE
from ase.phonons import Phonons
from ase.units import GPa, J, _e, _hplanck, m

from hybridpot import HybridPotential, HybridpotError
from hybridpot.baselines import EMT, ZBL
from hybridpot.config import default_data_path
from hybridpot.descriptors import PowerSpectrum
from hybridpot.regression import BayesianLinearRegressor, LinearRegressor

J_PER_M2 = J / m**2            # 1 J/m² in eV/Å²
VOIGT_PAIRS = ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))


def _relax(opt, what, fmax, steps):
    """Run an ASE optimizer; say so when it stops before ``fmax`` (eV/Å)."""
    if not opt.run(fmax=fmax, steps=steps):
        print(f"warning: {what} not converged to fmax={fmax} eV/Å in {steps} steps")


def _strained(atoms, voigt):
    """Copy of ``atoms`` with the cell (and positions) deformed by the Voigt strain
    ``voigt`` (engineering shear components)."""
    eps = np.zeros((3, 3))
    for k, (i, j) in enumerate(VOIGT_PAIRS):
        eps[i, j] = eps[j, i] = voigt[k] if i == j else 0.5 * voigt[k]
    a = atoms.copy()
    a.set_cell(atoms.cell[:] @ (np.eye(3) + eps), scale_atoms=True)
    return a


def relaxed_bulk(calc, symbol, crystal, a_guess, fmax=1e-4):
    """Cubic cell of ``symbol`` relaxed (cell and positions): ``(atoms, a0 in Å)``."""
    atoms = bulk(symbol, crystal, a=a_guess, cubic=True)
    atoms.calc = calc
    _relax(BFGS(FrechetCellFilter(atoms), logfile=None), "cell relaxation", fmax, 200)
    a0 = np.linalg.det(atoms.cell[:]) ** (1 / 3)
    atoms.set_cell(np.eye(3) * a0, scale_atoms=True)   # remove round-off shear
    atoms.calc = calc
    return atoms, a0


def bulk_modulus(calc, atoms0, span=0.03, n=7):
    """Birch-Murnaghan bulk modulus (GPa) from ``n`` volumes within ±``span`` of ``atoms0``'s."""
    vols, ens = [], []
    for s in np.linspace(1 - span, 1 + span, n):
        a = atoms0.copy()
        a.set_cell(atoms0.cell[:] * s ** (1 / 3), scale_atoms=True)
        a.calc = calc
        vols.append(a.get_volume())
        ens.append(a.get_potential_energy())
    eos = EquationOfState(vols, ens, eos="birchmurnaghan")
    eos.fit()
    return eos.B / GPa


def _strained_relaxed(calc, atoms0, voigt, relax_ions):
    a = _strained(atoms0, voigt)
    a.calc = calc
    if relax_ions:     # relaxed-ion constants (diamond: the inner strain lowers C44)
        _relax(BFGS(a, logfile=None), "ions of a strained cell", 1e-4, 300)
    return a


def elastic_from_stress(calc, atoms0, delta=0.005, relax_ions=False):
    """6x6 elastic tensor (GPa) from central differences of the stress, ``C_ij = dσ_i/dε_j``
    (ions relaxed in every strained cell with ``relax_ions``)."""
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
    """Cubic ``(C11, C12, C44)`` (GPa) from second differences of the energy."""
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
    return c11, 0.5 * c11_c12 - c11, c44


def cubic_constants(C):
    """``(C11, C12, C44)`` averaged over the cubic-equivalent entries of a 6x6 tensor."""
    c11 = np.mean(np.diag(C)[:3])
    c12 = np.mean([C[0, 1], C[0, 2], C[1, 2], C[1, 0], C[2, 0], C[2, 1]])
    return c11, c12, np.mean(np.diag(C)[3:])


def vacancy_formation(calc, atoms0, reps, fmax=0.01):
    """Relaxed (fixed volume) vacancy formation energy (eV) in a ``reps`` supercell."""
    sc = atoms0.repeat(reps)
    sc.calc = calc
    e_bulk = sc.get_potential_energy()
    n = len(sc)
    vac = sc.copy()
    del vac[0]
    vac.rattle(0.01, seed=1)          # break the symmetry a perfect start would keep
    vac.calc = calc
    _relax(BFGS(vac, logfile=None), "vacancy relaxation", fmax, 300)
    return vac.get_potential_energy() - (n - 1) / n * e_bulk


def migration_barrier(calc, atoms0, reps, n_images=3, fmax=0.02):
    """Vacancy migration energy (eV): climbing-image NEB (``ase.mep.NEB``) of a nearest
    neighbour hopping into the vacancy of a ``reps`` supercell, end points relaxed."""
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
    return max(energies) - energies[0]


def zone_boundary_phonons(calc, symbol, crystal, a0, r_cut, delta=0.01, span=4.0):
    """Phonon frequencies (THz) at X (fcc, diamond) or H (bcc) by finite displacements
    (``ase.phonons.Phonons``), and the largest |frequency| of the three acoustic modes at Γ
    without the acoustic sum rule correction (0 for forces that are the exact gradient of a
    translation-invariant energy).  The supercell (n x n x n primitive cells) spans
    ``span * r_cut``: the force constants reach ``2 r_cut``, and a supercell shorter than
    ``4 r_cut`` aliases them (a few % off the zone boundary with 3)."""
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
    return nu, gamma


SLABS = {"fcc": {"100": fcc100, "110": fcc110, "111": fcc111},
         "bcc": {"100": bcc100, "110": bcc110},
         "diamond": {"100": diamond100, "111": diamond111}}
FACETS = {"fcc": ("100", "111"), "bcc": ("100", "110"), "diamond": ("100", "111")}


def surface_energy(calc, symbol, crystal, a0, e_bulk_atom, facet, size, vacuum=8.0,
                   fmax=0.01):
    """Relaxed surface energy (J/m²) of a ``crystal`` (``"fcc"``, ``"bcc"``, ``"diamond"``:
    unreconstructed) slab with the ``facet`` (``"100"``, ``"110"``, ``"111"``; see
    ``FACETS``) of ``size`` atoms."""
    build = SLABS[crystal][facet]
    kw = {} if crystal == "diamond" else {"orthogonal": True}
    slab = build(symbol, size, a=a0, vacuum=vacuum, **kw)
    slab.pbc = True                     # the model gives stress for 3-D periodic cells only
    slab.calc = calc
    _relax(BFGS(slab, logfile=None), f"({facet}) slab", fmax, 300)
    area = np.linalg.norm(np.cross(slab.cell[0], slab.cell[1]))
    gamma = (slab.get_potential_energy() - len(slab) * e_bulk_atom) / (2 * area)
    return gamma / J_PER_M2


def properties(calc, symbol, a_guess, quick=False, crystal="fcc", r_cut=None):
    """Every property of one calculator (a dict of floats; units in the module docstring);
    with ``r_cut`` (Å, the range of the interactions) also zone-boundary phonons."""
    atoms0, a0 = relaxed_bulk(calc, symbol, crystal, a_guess)
    e_atom = atoms0.get_potential_energy() / len(atoms0)
    out = {"a0": a0, "B": bulk_modulus(calc, atoms0)}
    relax = crystal == "diamond"      # fcc / bcc: every atom a centre of inversion
    C = elastic_from_stress(calc, atoms0, relax_ions=relax)
    out.update(zip(("C11", "C12", "C44"), cubic_constants(C)))
    out.update(zip(("C11(E)", "C12(E)", "C44(E)"),
                   elastic_from_energy(calc, atoms0, relax_ions=relax)))
    out["B(C)"] = (out["C11"] + 2 * out["C12"]) / 3
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
        out[f"ν{point} lo"], out[f"ν{point} hi"] = nu[0], nu[-1]
    return out


def committee(model, n_members, random_state=0):
    """Member potentials: ``n_members`` draws from a fitted Bayesian linear model's
    coefficient posterior, or the members of an ``EnsembleRegressor`` (all of them)."""
    reg = model.regressor_
    if hasattr(reg, "estimators_"):
        return [HybridPotential.from_fitted(model.descriptor, est, baseline=model.baseline,
                                            reference_energies=model.reference_energies_)
                for est in reg.estimators_]
    draws = reg.sample_coef(n_members, random_state=random_state)
    return [HybridPotential.from_fitted(model.descriptor,
                                        LinearRegressor.from_coef(c, quadratic=reg.quadratic),
                                        baseline=model.baseline,
                                        reference_energies=model.reference_energies_)
            for c in draws]


UNITS = {"a0": "Å", "B": "GPa", "B(C)": "GPa", "E_v": "eV", "E_m": "eV"}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true",
                   help="smaller model, defect cells and committee (runs in seconds)")
    p.add_argument("--members", type=int, default=None,
                   help="committee members for σ (default 16, --quick 4; 0: no σ)")
    p.add_argument("--data", default=None,
                   help="extxyz file of one element with energies, forces, stresses to fit "
                        "(default: the shipped Al GPAW data)")
    p.add_argument("--model", default=None,
                   help="a saved one-element model (.hpot, e.g. from `hybridpot fit`) to "
                        "evaluate instead of fitting one")
    p.add_argument("--crystal", choices=sorted(SLABS), default="fcc")
    p.add_argument("--a-guess", type=float, default=None,
                   help="starting lattice constant, Å (default: ASE's reference value)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.members is not None and args.members < 0:
        p.error(f"--members must be >= 0; got {args.members}")
    if args.model:
        try:
            model = HybridPotential.load(args.model)
        except (OSError, HybridpotError) as exc:
            p.error(f"--model {args.model}: {exc}")
        species = list(model.species_)
    else:
        data = read(args.data or default_data_path(), ":")
        species = sorted({s for a in data for s in a.get_chemical_symbols()})
    if len(species) != 1:
        p.error(f"the model must be of one element; got {species}")
    symbol = species[0]
    if not args.model:
        # the model `hybridpot fit` makes by default (one shared noise level, weights
        # 1000 / 1 / 100 for energy / force / stress rows), on an EMT baseline (ZBL for an
        # element EMT has no parameters for, as benchmarks/mlearn.py does for Mo and Si)
        desc = (PowerSpectrum(species=species, r_cut=5.0, n_max=4, l_max=3) if args.quick
                else PowerSpectrum(species=species, r_cut=5.0, n_max=6, l_max=4))
        baseline = (EMT() if symbol in {"Ni", "Cu", "Al", "Ag", "Au", "Pd", "Pt"}
                    else ZBL(r_inner=1.0, r_cut=2.0))
        model = HybridPotential(desc, BayesianLinearRegressor(noise_levels="shared"), baseline,
                                {"energy": 1000.0, "forces": 1.0, "stress": 100.0})
        t0 = time.process_time()
        model.fit(data)
        print(f"fitted {symbol}: {len(data)} structures, {desc.n_features} features, "
              f"{time.process_time() - t0:.1f} s CPU")
    a_guess = args.a_guess
    if a_guess is None:   # ASE's reference lattice constant, or from the covalent radius
        ref = reference_states[atomic_numbers[symbol]] or {}
        d = 2 * covalent_radii[atomic_numbers[symbol]]          # nearest-neighbour distance
        a_guess = ref["a"] if ref.get("symmetry") == args.crystal else (
            {"fcc": d * 2 ** 0.5, "bcc": 2 * d / 3 ** 0.5, "diamond": 4 * d / 3 ** 0.5}[
                args.crystal])
    n_members = args.members if args.members is not None else (4 if args.quick else 16)
    if hasattr(model.regressor_, "estimators_"):
        n_members = len(model.regressor_.estimators_) if n_members else 0
    elif n_members and not hasattr(model.regressor_, "sample_coef"):
        print(f"no σ: {type(model.regressor_).__name__} has no coefficient posterior "
              "(a Bayesian linear model has) and no ensemble members")
        n_members = 0
    if n_members and (getattr(model, "uncertainty_", None) is not None
                      or getattr(model, "uncertainty_scale_", None)):
        print("note: the property σ come from the fitted members; the model's LinearPosterior "
              "committee and σ recalibration are not used for them")

    t0 = time.process_time()
    run = dict(symbol=symbol, quick=args.quick, crystal=args.crystal,
               r_cut=float(model.descriptor.r_cut))
    ml = properties(model.calculator(), a_guess=a_guess, **run)
    ref_name = type(model.baseline).__name__ if model.baseline is not None else None
    base = (properties(model.baseline.calculator(), a_guess=a_guess, **run)
            if ref_name not in (None, "ZBL") else None)    # ZBL alone binds nothing
    members = [properties(mm.calculator(), a_guess=ml["a0"], **run)
               for mm in committee(model, n_members, args.seed)] if n_members else []
    print(f"properties of the model{', the baseline' if base else ''} and {n_members} "
          f"committee members: {time.process_time() - t0:.1f} s CPU")

    head = f"\n{'property':<10} {'unit':<5} {'model':>9} {'± σ':>8}"
    if base:
        head += f" {ref_name[:9]:>9} {'difference':>10}"
    print(head)
    for key in ml:
        sig = np.std([mm[key] for mm in members], ddof=1) if n_members > 1 else np.nan
        unit = UNITS.get(key, {"γ": "J/m²", "ν": "THz"}.get(key[0], "GPa"))
        row = f"{key:<10} {unit:<5} {ml[key]:9.4f} {sig:8.4f}"
        if base:
            row += f" {base[key]:9.4f} {ml[key] - base[key]:10.4f}"
        print(row)
    dE = max(abs(ml[k] - ml[f"{k}(E)"]) for k in ("C11", "C12", "C44"))
    print(f"\nelastic constants from stress vs energy: max difference {dE:.3f} GPa; "
          f"B from C {ml['B(C)']:.2f} vs EOS {ml['B']:.2f} GPa")


if __name__ == "__main__":
    main()
