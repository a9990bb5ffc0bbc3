"""Workload W3: learning curves, pure ML versus EMT + ML, on the mlearn Ni and Cu sets.

For each element, each baseline (``None``: pure ML; ``EMT``: ASE's EMT as the empirical
potential) and each training fraction (5, 10, 25, 50, 100 % by default) the same descriptor
and regressor are fitted to a random subset of ``<El>_train.xyz`` (nested subsets: the first
``n`` structures of one fixed permutation, ``--seed``) and evaluated on ``<El>_test.xyz``.
With ``--json`` one line per (element, baseline, fraction)::

    {"element", "baseline", "fraction", "n_train", "energy_mae_mev", "force_mae", "fit_s",
     "fit_cpu_s", ...}

(``fit_s`` wall, ``fit_cpu_s`` process CPU time, single-threaded) and one summary line per
element::

    {"element", "hybrid_fraction_to_reach_pure_full_force_mae", "pure_full_force_mae",
     "pure_reference_fraction", ...}

(``null`` when no hybrid fraction reaches the pure model's full-data force MAE; "full data"
is the largest of ``--fractions``, given as ``pure_reference_fraction``).  Target: the hybrid
reaches it with at most a third of the data.

Usage::

    python benchmarks/learning_curves.py --json
    python benchmarks/learning_curves.py --elements Ni --model ps_gp --json
    python benchmarks/learning_curves.py --model ps_gp --gp-noise 0.0005 0.05 --json
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

# single-threaded, as every benchmark (BENCHMARKS.md), whatever the caller's environment
for _var in ("OMP_NUM_THREADS", "NUMBA_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # this tree's hybridpot
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _jsonl import dumps  # noqa: E402  (strict JSON: NaN / inf as null)
from mlearn import DEFAULT_DIR, SO3_CUTOFF  # noqa: E402

FRACTIONS = (0.05, 0.10, 0.25, 0.50, 1.00)
MODELS = ("ps_linear", "ps_gp")


def build(element, baseline, model, n_sparse, gp_noise=None):
    """The (unfitted) HybridPotential: PowerSpectrum + regressor (+ EMT baseline)."""
    from hybridpot import HybridPotential
    from hybridpot import regression as R
    from hybridpot.descriptors import PowerSpectrum

    if model == "ps_linear":
        desc = PowerSpectrum(species=[element], r_cut=SO3_CUTOFF[element], n_max=8, l_max=6)
        reg = R.BayesianLinearRegressor()
    else:
        desc = PowerSpectrum(species=[element], r_cut=SO3_CUTOFF[element], n_max=6, l_max=4)
        noise = None if gp_noise is None else {"energy": gp_noise[0], "forces": gp_noise[1]}
        reg = R.SparseGPRegressor(kernel="se", n_sparse=n_sparse, random_state=0, noise=noise)
    base = None
    if baseline == "EMT":
        from hybridpot.baselines import EMT

        base = EMT()  # numba EMT, equal to ASEBaseline(ase.calculators.emt.EMT())
    # stress off for Ni/Cu (the mlearn stresses are offset from the energy derivative)
    return HybridPotential(desc, reg, base, {"energy": 1.0, "forces": 1.0, "stress": 0.0})


def run_element(data_dir, element, fractions, seed, model, n_sparse, emit, gp_noise=None):
    from ase.io import read

    train = read(data_dir / "extxyz" / f"{element}_train.xyz", ":")
    test = read(data_dir / "extxyz" / f"{element}_test.xyz", ":")
    perm = np.random.default_rng(seed).permutation(len(train))
    rows = []
    for baseline in ("None", "EMT"):
        for frac in fractions:
            n = max(2, int(round(frac * len(train))))
            subset = [train[i] for i in perm[:n]]
            pot = build(element, baseline, model, n_sparse, gp_noise)
            t0, c0 = time.perf_counter(), time.process_time()
            pot.fit(subset)
            fit_s, fit_cpu_s = time.perf_counter() - t0, time.process_time() - c0
            m = pot.evaluate(test)
            rec = {"element": element, "baseline": baseline, "fraction": frac, "n_train": n,
                   "energy_mae_mev": 1000.0 * m["energy_mae"], "force_mae": m["force_mae"],
                   "fit_s": fit_s, "fit_cpu_s": fit_cpu_s, "model": model,
                   "gp_noise": gp_noise}
            rows.append(rec)
            emit(rec)
    pure_full = [r for r in rows if r["baseline"] == "None" and r["fraction"] == max(fractions)]
    target = pure_full[0]["force_mae"] if pure_full else float("nan")
    reach = [r["fraction"] for r in rows
             if r["baseline"] == "EMT" and r["force_mae"] <= target]
    summary = {"element": element,
               "hybrid_fraction_to_reach_pure_full_force_mae": min(reach) if reach else None,
               "pure_full_force_mae": target, "pure_reference_fraction": max(fractions),
               "model": model,
               "target_fraction": 1.0 / 3.0,
               "target_met": bool(reach) and min(reach) <= 1.0 / 3.0}
    emit(summary)
    return rows, summary


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--data", type=Path, default=DEFAULT_DIR)
    p.add_argument("--elements", nargs="*", default=["Ni", "Cu"])
    p.add_argument("--fractions", nargs="*", type=float, default=list(FRACTIONS))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--model", choices=MODELS, default="ps_linear")
    p.add_argument("--n-sparse", type=int, default=500, help="inducing points (ps_gp)")
    p.add_argument("--gp-noise", type=float, nargs=2, default=None, metavar=("E", "F"),
                   help="fixed GP noise: energy (eV/atom) and force (eV/Å) sigma (ps_gp); "
                        "default: evidence-maximised")
    args = p.parse_args(argv)
    bad = [f for f in args.fractions if not 0.0 < f <= 1.0]
    if bad or not args.fractions:
        p.error(f"--fractions must be one or more numbers in (0, 1]; got {args.fractions}")
    if not (args.data / "extxyz").is_dir():
        msg = f"mlearn data not found at {args.data}"
        print(dumps({"element": None, "error": msg}) if args.json else msg)
        return 0

    def emit(rec):
        if args.json:
            print(dumps(rec), flush=True)
        elif "baseline" in rec:
            print(f"{rec['element']:3} {rec['baseline']:5} {rec['fraction']:5.2f} "
                  f"{rec['n_train']:4d} {rec['energy_mae_mev']:8.2f} meV/at "
                  f"{rec['force_mae']:7.4f} eV/Å  ({rec['fit_s']:.0f} s)", flush=True)
        else:
            print(f"{rec['element']:3} hybrid reaches pure full-data force MAE "
                  f"{rec['pure_full_force_mae']:.4f} at fraction "
                  f"{rec['hybrid_fraction_to_reach_pure_full_force_mae']}", flush=True)

    for el in args.elements:
        run_element(args.data, el, sorted(args.fractions), args.seed, args.model,
                    args.n_sparse, emit, args.gp_noise)
    return 0


if __name__ == "__main__":
    sys.exit(main())
