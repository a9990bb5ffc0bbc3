"""Baseline speed: hybridpot's numba ``EMT`` against ASE's EMT (``ASEBaseline(EMT())``).

Both compute energy, per-atom energies, forces and stress, the work a fit or an MD step asks of
the baseline; the peer is ASE's ``ase.calculators.emt.EMT`` through ``ASEBaseline`` (the code
path the numba EMT replaces).  Cases:

- ``ni108``: ``bulk("Ni", "fcc", a=3.52, cubic=True) * (3, 3, 3)``, ``rattle(stdev=0.05,
  seed=0)``, 108 atoms; median over ``--repeats`` blocks of calls (>= 50 ms each) after
  warm-up calls (numba compilation excluded);
- ``mlearn_ni_train``: every structure of ``$MLEARN_DIR/extxyz/Ni_train.xyz`` (default
  ``../shared/data/mlearn``; 263 structures, 27,420 atoms) once; median over
  ``--dataset-repeats`` passes after a warm-up pass.

Also reported: the largest absolute difference of energy (eV), forces (eV/Å) and stress
(eV/Å³) between the two over the case.  Single-threaded.  With ``--json`` one line per case::

    {"what": "emt_baseline", "case", "n_structures", "n_atoms", "s", "us_per_atom",
     "peer": "ase", "peer_s", "peer_us_per_atom", "ratio", "cpu_s", "peer_cpu_s",
     "ratio_cpu", "time_ratio", "max_abs_diff_energy", "max_abs_diff_forces",
     "max_abs_diff_stress"}

Two directions of ratio, mind which one you read:

- ``ratio`` is peer time / our time (the speed-up, > 1 when we are faster) in wall-clock time,
  ``ratio_cpu`` the same in process CPU time (kept as they were: outside checks read them);
- ``time_ratio`` is our time / peer time in process CPU time (< 1 when we are faster), the
  direction of every other benchmark's ``ratio`` (``descriptors.py``, ``snap.py``,
  ``neighbors.py``: ours / peer); ``time_ratio == 1 / ratio_cpu``.

Both sides are single-threaded; on a loaded machine the CPU time is not inflated by
pre-emption, which costs a long pass over the data set proportionally more than the short
ni108 calls, whose median skips pre-empted calls.

Measured 2026-11-21 (2 cores shared, load average ~5-7, so wall times are ~2x the CPU times;
process CPU time, same run): ni108 ours 1.02 ms vs ASE 18.7 ms (x18.3; wall x18-36 over
several runs); the Ni training set ours 0.25 s vs ASE 4.84 s (x19.2; wall x13-23); largest
differences 1.7e-12 eV (energy), 1.0e-13 eV/Å (forces), 3e-15 eV/Å³ (stress).  About two
thirds of our time is the neighbour list (``hybridpot.neighbors``, 77 neighbours per atom
within the 5.88 Å EMT list cutoff), a quarter the EMT kernels.  Effect on a fit
(``benchmarks/mlearn.py`` Ni ``snap_linear``, same machine): 9.1 s CPU with
``ASEBaseline(EMT())`` -> 4.9-5.0 s with ``EMT()``, identical test errors (to 1e-12).

Usage::

    python benchmarks/baselines.py --json
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "NUMBA_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from ase.build import bulk  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # this tree's hybridpot
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _jsonl import dumps  # noqa: E402  (strict JSON: NaN / inf as null)

ROOT = Path(__file__).resolve().parents[1]
MLEARN_DIR = Path(os.environ.get("MLEARN_DIR", ROOT.parent / "shared" / "data" / "mlearn"))


def ni108():
    atoms = bulk("Ni", "fcc", a=3.52, cubic=True) * (3, 3, 3)
    atoms.rattle(stdev=0.05, seed=0)
    return atoms


def mlearn_ni_train():
    from ase.io import read

    path = MLEARN_DIR / "extxyz" / "Ni_train.xyz"
    if not path.exists():
        return None
    structures = read(path, ":")
    for at in structures:
        at.calc = None
    return structures


def median_time(fn, repeats, warmup=True, min_block=0.05):
    """Median wall-clock and CPU (process) time of one ``fn()`` call, in s.

    Calls are timed in blocks of at least ``min_block`` s (the process CPU clock can be
    coarse, ~ms), ``repeats`` blocks.
    """
    t0 = time.perf_counter()
    fn()  # warm-up (compilation, caches), also sizes the blocks
    first = time.perf_counter() - t0
    if warmup:
        t0 = time.perf_counter()
        fn()
        first = time.perf_counter() - t0
    number = max(1, int(min_block / max(first, 1e-9)))
    wall, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(number):
            fn()
        wall.append((time.perf_counter() - t0) / number)
        cpu.append((time.process_time() - c0) / number)
    return statistics.median(wall), statistics.median(cpu)


def _max_diff(ours, peer):
    out = {}
    for key in ("energy", "forces", "stress"):
        d = [float(np.max(np.abs(np.asarray(a[key]) - np.asarray(b[key]))))
             for a, b in zip(ours, peer) if a[key] is not None]
        out[f"max_abs_diff_{key}"] = max(d) if d else None
    return out


def run_case(name, structures, repeats):
    from ase.calculators.emt import EMT as AseEMT

    from hybridpot.baselines import EMT, ASEBaseline

    ours_b, peer_b = EMT(), ASEBaseline(AseEMT())
    n_atoms = sum(len(a) for a in structures)
    ours, ours_cpu = median_time(lambda: [ours_b.compute(a) for a in structures], repeats)
    # the peer has nothing to compile: no second warm-up pass
    peer, peer_cpu = median_time(lambda: [peer_b.compute(a) for a in structures], repeats,
                                 warmup=False)
    out = {"what": "emt_baseline", "case": name, "n_structures": len(structures),
           "n_atoms": n_atoms, "s": ours, "us_per_atom": ours / n_atoms * 1e6, "peer": "ase",
           "peer_s": peer, "peer_us_per_atom": peer / n_atoms * 1e6, "ratio": peer / ours,
           "cpu_s": ours_cpu, "peer_cpu_s": peer_cpu, "ratio_cpu": peer_cpu / ours_cpu,
           # ours / peer (CPU), the direction of the other benchmarks' ratio
           "time_ratio": ours_cpu / peer_cpu}
    out.update(_max_diff([ours_b.compute(a) for a in structures],
                         [peer_b.compute(a) for a in structures]))
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument("--repeats", type=int, default=9, help="ni108 blocks of calls")
    parser.add_argument("--dataset-repeats", type=int, default=3,
                        help="passes over the Ni training set")
    args = parser.parse_args(argv)
    for flag, value in (("--repeats", args.repeats), ("--dataset-repeats", args.dataset_repeats)):
        if value < 1:
            parser.error(f"{flag} must be at least 1; got {value}")
    cases = [("ni108", [ni108()], args.repeats)]
    train = mlearn_ni_train()
    if train is None:
        note = {"what": "emt_baseline", "case": "mlearn_ni_train",
                "note": f"mlearn data not found at {MLEARN_DIR}"}
        print(dumps(note) if args.json else note["note"], flush=True)
    else:
        cases.append(("mlearn_ni_train", train, args.dataset_repeats))
    for name, structures, repeats in cases:
        res = run_case(name, structures, repeats)
        if args.json:
            print(dumps(res), flush=True)
        else:
            print(f"EMT {name:16s} ({res['n_structures']} structures, {res['n_atoms']} atoms): "
                  f"ours {res['s']:.4g} s ({res['us_per_atom']:.2f} us/atom); ase "
                  f"{res['peer_s']:.4g} s ({res['peer_us_per_atom']:.2f} us/atom); speed-up "
                  f"x{res['ratio']:.1f} (CPU time x{res['ratio_cpu']:.1f}); max |dF| {res['max_abs_diff_forces']:.2g} eV/Å",
                  flush=True)


if __name__ == "__main__":
    main()
