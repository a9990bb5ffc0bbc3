"""Validate a fitted potential on materials properties, with σ from a posterior committee.

Fits the model ``hybridpot fit`` makes by default (a Bayesian linear power-spectrum model with
one shared noise level and energy / force / stress row weights "auto" / 1 / 100, "auto" being
15 x (mean atoms per structure)², see ``hybridpot.config.auto_energy_weight``) on top of EMT
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

The computations are the library module :mod:`hybridpot.properties` (``compute_properties``
and one function per property); this script fits (or loads) the model and prints the table.
``hybridpot properties --model model.hpot`` does the same for a saved model, with ``--json``.

Full run (16 members) ~1 min of CPU, ``--quick`` ~5 s.

    python examples/properties.py [--quick] [--members 16] [--data path.extxyz]
    hybridpot fit && python examples/properties.py --model model.hpot
    python examples/properties.py --model mo.hpot --crystal bcc
"""

from __future__ import annotations

import argparse
import time

from ase.io import read

from hybridpot import HybridPotential, HybridpotError
from hybridpot.baselines import EMT, ZBL
from hybridpot.config import auto_energy_weight, default_data_path
from hybridpot.descriptors import PowerSpectrum
from hybridpot.properties import CRYSTALS, compute_properties, format_table, reference_crystal
from hybridpot.regression import BayesianLinearRegressor


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
    p.add_argument("--crystal", choices=sorted(CRYSTALS), default=None,
                   help="default: the element's reference structure if fcc / bcc / diamond "
                        "(as `hybridpot properties`), else fcc")
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
        # "auto" / 1 / 100 for energy / force / stress rows), on an EMT baseline (ZBL for an
        # element EMT has no parameters for, as benchmarks/mlearn.py does for Mo and Si)
        desc = (PowerSpectrum(species=species, r_cut=5.0, n_max=4, l_max=3) if args.quick
                else PowerSpectrum(species=species, r_cut=5.0, n_max=6, l_max=4))
        baseline = (EMT() if symbol in {"Ni", "Cu", "Al", "Ag", "Au", "Pd", "Pt"}
                    else ZBL(r_inner=1.0, r_cut=2.0))
        model = HybridPotential(desc, BayesianLinearRegressor(noise_levels="shared"), baseline,
                                {"energy": auto_energy_weight(data)[0], "forces": 1.0,
                                 "stress": 100.0})
        t0 = time.process_time()
        model.fit(data)
        print(f"fitted {symbol}: {len(data)} structures, {desc.n_features} features, "
              f"{time.process_time() - t0:.1f} s CPU")

    t0 = time.process_time()
    try:
        res = compute_properties(model, symbol,
                                 crystal=args.crystal or reference_crystal(symbol),
                                 a_guess=args.a_guess,
                                 quick=args.quick, members=args.members,
                                 random_state=args.seed)
    except HybridpotError as exc:
        p.error(str(exc))
    for note in res["notes"]:
        print(f"note: {note}")
    print(f"properties of the model{', the baseline' if res['baseline'] else ''} and "
          f"{res['n_members']} committee members: {time.process_time() - t0:.1f} s CPU")
    print(format_table(res))


if __name__ == "__main__":
    main()
