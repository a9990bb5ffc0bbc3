"""Baseline speed: hybridpot's numba ``EMT`` against ASE's EMT (``ASEBaseline(EMT())``).

Both compute energy, per-atom energies, forces and stress, the work a fit or an MD step asks of
the baseline; the peer is ASE's ``ase.calculators.emt.EMT`` through ``ASEBaseline`` (the code
path the numba EMT replaces).  Cases:

- ``ni108``: ``bulk("Ni", "fcc", a=3.52, cubic=True) * (3, 3, 3)``, ``rattle(stdev=0.05,
  seed=0)``, 108 atoms; median over ``--repeats`` calls after one warm-up call (numba
  compilation excluded);
- ``mlearn_ni_train``: every structure of ``$MLEARN_DIR/extxyz/Ni_train.xyz`` (default
  ``../shared/data/mlearn``; 263 structures, 27,420 atoms) once; median over
  ``--dataset-repeats`` passes.

Also reported: the largest absolute difference of energy (eV), forces (eV/Å) and stress
(eV/Å³) between the two over the case.  Single-threaded.  With ``--json`` one line per case::

    {"what": "emt_baseline", "case", "n_structures", "n_atoms", "s", "us_per_atom",
     "peer": "ase", "peer_s", "peer_us_per_atom", "ratio", "max_abs_diff_energy",
     "max_abs_diff_forces", "max_abs_diff_stress"}

``ratio`` is peer time / our time (the speed-up).

Measured (2 shared cores, noisy; medians): ni108 ASE 40 ms vs ours 0.9 ms, x45;
the Ni training set ASE 10.9 s vs ours 0.26 s, x42; differences below 1e-12.

Usage::

    python benchmarks/baselines.py --json
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "NUMBA_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from ase.build import bulk  # noqa: E402

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


def median_time(fn, repeats, warmup=True):
    if warmup:
        fn()  # compilation, caches
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


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
    ours = median_time(lambda: [ours_b.compute(a) for a in structures], repeats)
    # the peer has nothing to compile; one warm-up pass only on the small case
    peer = median_time(lambda: [peer_b.compute(a) for a in structures], repeats,
                       warmup=len(structures) == 1)
    out = {"what": "emt_baseline", "case": name, "n_structures": len(structures),
           "n_atoms": n_atoms, "s": ours, "us_per_atom": ours / n_atoms * 1e6, "peer": "ase",
           "peer_s": peer, "peer_us_per_atom": peer / n_atoms * 1e6, "ratio": peer / ours}
    out.update(_max_diff([ours_b.compute(a) for a in structures],
                         [peer_b.compute(a) for a in structures]))
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument("--repeats", type=int, default=15, help="ni108 repeats")
    parser.add_argument("--dataset-repeats", type=int, default=3,
                        help="passes over the Ni training set")
    args = parser.parse_args(argv)
    cases = [("ni108", [ni108()], args.repeats)]
    train = mlearn_ni_train()
    if train is None:
        note = {"what": "emt_baseline", "case": "mlearn_ni_train",
                "note": f"mlearn data not found at {MLEARN_DIR}"}
        print(json.dumps(note) if args.json else note["note"], flush=True)
    else:
        cases.append(("mlearn_ni_train", train, args.dataset_repeats))
    for name, structures, repeats in cases:
        res = run_case(name, structures, repeats)
        if args.json:
            print(json.dumps(res), flush=True)
        else:
            print(f"EMT {name:16s} ({res['n_structures']} structures, {res['n_atoms']} atoms): "
                  f"ours {res['s']:.4g} s ({res['us_per_atom']:.2f} us/atom); ase "
                  f"{res['peer_s']:.4g} s ({res['peer_us_per_atom']:.2f} us/atom); speed-up "
                  f"x{res['ratio']:.1f}; max |dF| {res['max_abs_diff_forces']:.2g} eV/Å",
                  flush=True)


if __name__ == "__main__":
    main()
