"""Neighbour-list speed: hybridpot's numba cell list against ``ase.neighborlist.neighbor_list``.

Cases: workload W1 (``bulk("Cu", "fcc", a=3.61, cubic=True) * (4, 4, 4)``, 256 atoms,
``rattle(stdev=0.05, seed=0)``, cutoff 5.0 Å) and the same crystal with 4000 atoms
(``* (10, 10, 10)``).  Each timing is the median over repeats, after one warm-up call (numba
compilation excluded), single-threaded.  With ``--json`` one line per case::

    {"what": "neighbor_list", "n_atoms", "us_per_atom", "peer": "ase", "peer_us_per_atom",
     "ratio"}

(``ratio`` = ours / ASE's, in the same run.)

Usage::

    python benchmarks/neighbors.py --json
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

from ase.build import bulk  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # this tree's hybridpot
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _jsonl import dumps  # noqa: E402  (strict JSON: NaN / inf as null)

CUTOFF = 5.0


def structure(reps):
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True) * reps
    atoms.rattle(stdev=0.05, seed=0)
    return atoms


def median_time(fn, repeats):
    fn()  # warm-up (compilation, caches)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def run_case(reps, repeats):
    from hybridpot.neighbors import neighbor_list

    atoms = structure(reps)
    n = len(atoms)
    ours = median_time(lambda: neighbor_list(atoms, CUTOFF), repeats)
    out = {"what": "neighbor_list", "n_atoms": n, "us_per_atom": ours / n * 1e6,
           "peer": "ase", "peer_us_per_atom": None, "ratio": None}
    try:
        from ase.neighborlist import neighbor_list as ase_nl
    except ImportError:  # pragma: no cover - ase is a core dependency
        out["peer_note"] = "peer not installed"
        return out
    peer = median_time(lambda: ase_nl("ijDS", atoms, CUTOFF, self_interaction=False), repeats)
    out["peer_us_per_atom"] = peer / n * 1e6
    out["ratio"] = ours / peer
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1; got {args.repeats}")
    for reps in [(4, 4, 4), (10, 10, 10)]:
        res = run_case(reps, args.repeats)
        if args.json:
            print(dumps(res), flush=True)
        else:
            print(f"neighbor_list n_atoms={res['n_atoms']:5d}: {res['us_per_atom']:8.2f} us/atom;"
                  f" ase {res['peer_us_per_atom']:8.2f} us/atom; ratio {res['ratio']:.3f}",
                  flush=True)


if __name__ == "__main__":
    main()
