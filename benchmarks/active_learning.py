"""Active learning versus random selection: labels needed to reach a force-MAE target (W4).

Pool-based (mlearn, ``$MLEARN_DIR/extxyz/<El>_train.xyz`` is the pool, labels revealed on
request, ``<El>_test.xyz`` gives the force MAE), for Ni and Si; and live with ASE's EMT as the
oracle (Cu, rattled/strained 2x2x1 fcc candidates drawn by
:class:`~hybridpot.sampling.RattleStrainSampler`, run through
:class:`~hybridpot.learn.ActiveLearner`).

Protocol (both settings): a cheap model (``PowerSpectrum(n_max=4, l_max=3)`` +
``BayesianLinearRegressor``, no baseline, energy and force labels) starts from
``--n-initial`` random labelled structures; each round labels ``--batch`` more, chosen by the
strategy, refits and measures the test force MAE (eV/Å per component), up to ``--budget``
labels.  The target is ``--target-factor`` times the force MAE of the same model fitted on
the whole pool (live: on ``--budget`` random EMT structures).  ``labels_to_target`` is the first
label count whose MAE is at or below the target (``null`` when the budget is not enough).
``random`` is averaged over ``--seeds`` seeds (mean of the per-seed label counts; a seed that
never reaches the target counts as the budget); the active strategies over ``--al-seeds``
initial sets (``null`` unless every set reaches the target).

Measured (2026-11-21, 2 shared cores, defaults: budget 40, batch 2, 2 initial, target
1.05 x full-pool force MAE; random over 3 seeds, each AL strategy over 3 initial sets
(``--al-seeds 3``); labels to target, mean (ratio to random)):

============  ==========  ======  ===========  ===========  ===========  ===========
pool          target eV/Å random  stratified   var. red.    D-optimal    full pool
============  ==========  ======  ===========  ===========  ===========  ===========
mlearn Ni     0.0241      10.7    5.3 (0.50)   not reached  not reached  0.0230
mlearn Si     0.1158      24.0    9.3 (0.39)   16.7 (0.69)  not reached  0.1103
live EMT Cu   0.0592      17.3    14.0 (0.81)  2/3 missed   2/3 missed   0.0564
============  ==========  ======  ===========  ===========  ===========  ===========

(per seed: Ni random 14/10/8, stratified 6/4/6; Si random 30/10/32, stratified 6/12/10; live
random 22/10/20, stratified 10/14/18.  With 2 initial labels and batches of 2 the smallest
possible count is 4.  A 1-seed run of max_variance behaved like D-optimal: not reached.)

The <= 40 % target is met on Si (stratified), not on Ni (50 %) nor live EMT Cu (81 %).  The
plain uncertainty criteria (D-optimal, max variance) never reach the target on the mlearn
pools: this cheap linear model's test error is dominated by bias, not by weight uncertainty,
so they pick the hottest AIMD frames (largest descriptor gradients), the least-squares solution
shifts toward them (Ni: fitted force noise 0.083 vs 0.045 eV/Å after 16 picks) and the error on
typical test structures grows.  ``stratified`` (max variance within k-means strata of the
pool, :class:`~hybridpot.uq.selection.StratifiedSelector`) keeps the pool's mixture and is the
only strategy that beats random on all three pools.

Usage::

    python benchmarks/active_learning.py [--json] [--quick] [--elements Ni Si] [--no-live]

``--json`` prints one line per pool and strategy:
``{"pool", "strategy", "target_force_mae", "labels_to_target", ...}`` (extra keys: the
learning curve, the ratio to random, timings).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hybridpot import HybridPotential  # noqa: E402
from hybridpot.descriptors import PowerSpectrum  # noqa: E402
from hybridpot.regression import BayesianLinearRegressor  # noqa: E402
from hybridpot.uq.selection import (DOptimalSelector, MaxVarianceSelector,  # noqa: E402
                                    RandomSelector, StratifiedSelector,
                                    VarianceReductionSelector)

MLEARN_DIR = Path(os.environ.get("MLEARN_DIR", ROOT.parent / "shared" / "data" / "mlearn"))
R_CUT = {"Ni": 4.0, "Cu": 4.0, "Si": 5.0, "Mo": 5.0}
WEIGHTS = {"energy": 1.0, "forces": 1.0, "stress": 0.0}
#: descriptor size (set from --n-max / --l-max)
BASIS = {"n_max": 4, "l_max": 3}


def make_model(element):
    return HybridPotential(
        descriptor=PowerSpectrum(species=[element], r_cut=R_CUT[element], **BASIS),
        regressor=BayesianLinearRegressor(), weights=WEIGHTS)


def force_mae(model, test):
    return float(model.evaluate(test)["force_mae"])


def labels_to_target(curve, target):
    for n, mae in curve:
        if mae <= target:
            return int(n)
    return None


def strategies():
    return {"stratified": StratifiedSelector(selector=MaxVarianceSelector(kind="forces")),
            "variance_reduction": VarianceReductionSelector(),
            "d_optimal": DOptimalSelector(kind="both"),
            "max_variance": MaxVarianceSelector(kind="forces")}


# ---------------------------------------------------------------------------- pool-based
def pool_curve(element, pool, test, selector, seed, n_initial, batch, budget):
    """Learning curve [(n_labels, force MAE)] of one strategy on the pool."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(pool))
    chosen = [int(k) for k in order[:n_initial]]
    curve = []
    while True:
        model = make_model(element).fit([pool[k] for k in chosen])
        curve.append((len(chosen), force_mae(model, test)))
        if len(chosen) >= budget:
            return curve
        taken = set(chosen)
        rest = [k for k in range(len(pool)) if k not in taken]
        n = min(batch, budget - len(chosen), len(rest))
        if n == 0:
            return curve
        if isinstance(selector, RandomSelector):
            # random selection: continue along the seed's permutation of the pool
            pick = [int(k) for k in order if int(k) not in taken][:n]
        else:
            cands = [pool[k] for k in rest]
            idx = selector.select(model, cands, n,
                                  exclude_structures=[pool[k] for k in chosen])
            pick = [rest[int(k)] for k in idx]
        chosen.extend(pick)


def run_pool(element, args, emit):
    from ase.io import read

    pool = read(MLEARN_DIR / "extxyz" / f"{element}_train.xyz", ":")
    test = read(MLEARN_DIR / "extxyz" / f"{element}_test.xyz", ":")
    t0 = time.perf_counter()
    full = force_mae(make_model(element).fit(pool), test)
    target = args.target_factor * full
    name = f"mlearn-{element}"
    budget = min(args.budget, len(pool))
    rand_n, rand_curves = [], []
    for s in range(args.seeds):
        c = pool_curve(element, pool, test, RandomSelector(), 1000 + s, args.n_initial,
                       args.batch, budget)
        rand_curves.append(c)
        n = labels_to_target(c, target)
        rand_n.append(budget if n is None else n)
    mean_curve = [(c[0], float(np.mean([rc[k][1] for rc in rand_curves])))
                  for k, c in enumerate(rand_curves[0])]
    rand_reached = all(labels_to_target(c, target) is not None for c in rand_curves)
    rand_mean = float(np.mean(rand_n))
    emit({"pool": name, "strategy": "random", "target_force_mae": target,
          "labels_to_target": rand_mean if rand_reached else None,
          "labels_to_target_per_seed": rand_n, "full_pool_force_mae": full,
          "pool_size": len(pool), "budget": budget, "seeds": args.seeds,
          "curve": mean_curve, "seconds": time.perf_counter() - t0})
    for sname, sel in strategies().items():
        if sname not in args.strategies:
            continue
        t0 = time.perf_counter()
        ns, curves = [], []
        for s in range(args.al_seeds):
            c = pool_curve(element, pool, test, sel, 1000 + s, args.n_initial, args.batch,
                           budget)
            curves.append(c)
            ns.append(labels_to_target(c, target))
        ok = [n for n in ns if n is not None]
        n_mean = float(np.mean(ok)) if len(ok) == len(ns) else None
        emit({"pool": name, "strategy": sname, "target_force_mae": target,
              "labels_to_target": n_mean, "labels_to_target_per_seed": ns,
              "ratio_to_random": (n_mean / rand_mean) if n_mean is not None and rand_reached
              else None,
              "full_pool_force_mae": full, "budget": budget, "seeds": args.al_seeds,
              "curve": [(n, float(np.mean([c[k][1] for c in curves])))
                        for k, (n, _) in enumerate(curves[0])],
              "seconds": time.perf_counter() - t0})


# ---------------------------------------------------------------------------- live (EMT)
def run_live(args, emit):
    from ase.build import bulk
    from ase.calculators.emt import EMT
    from ase.calculators.singlepoint import SinglePointCalculator

    from hybridpot.learn import ActiveLearner
    from hybridpot.sampling import RattleStrainSampler

    def sampler():
        return RattleStrainSampler(prototype=bulk("Cu", "fcc", a=3.61, cubic=True),
                                   supercell=(2, 2, 1), rattle_std=(0.01, 0.3),
                                   strain_max=0.05)

    def label(structures):
        out = []
        for a in structures:
            a = a.copy()
            a.calc = EMT()
            res = {"energy": a.get_potential_energy(), "forces": a.get_forces(),
                   "stress": a.get_stress()}
            a.calc = SinglePointCalculator(a, **res)
            out.append(a)
        return out

    test = label(sampler().sample(40, random_state=99))
    budget = args.budget
    t0 = time.perf_counter()
    full = force_mae(make_model("Cu").fit(label(sampler().sample(budget, random_state=98))),
                     test)
    target = args.target_factor * full
    results = {}
    runs = {"random": [RandomSelector(random_state=s) for s in range(args.seeds)]}
    for sname, sel in strategies().items():
        if sname in args.strategies:
            runs[sname] = [sel] * args.al_seeds
    for sname, sels in runs.items():
        t0 = time.perf_counter()
        ns, curves = [], []
        for s, sel in enumerate(sels):
            initial = label(sampler().sample(args.n_initial, random_state=500 + s))
            with tempfile.TemporaryDirectory() as tmp:
                learner = ActiveLearner(
                    make_model("Cu"), "EMT", sampler(), sel, run_dir=tmp, initial=initial,
                    validation=test, n_candidates=args.live_candidates,
                    batch_size=args.batch, max_labels=budget - args.n_initial,
                    max_iterations=10 ** 6, random_state=s, progress=False).run()
            init_mae = force_mae(make_model("Cu").fit(initial), test)
            c = [(args.n_initial, init_mae)] + [
                (args.n_initial + h["n_labels"], h["validation_force_mae"])
                for h in learner.history_]
            curves.append(c)
            n = labels_to_target(c, target)
            ns.append(budget if (n is None and sname == "random") else n)
        results[sname] = ns
        ok = [n for n in ns if n is not None]
        n_mean = float(np.mean(ok)) if len(ok) == len(ns) else None
        rec = {"pool": "live-EMT-Cu", "strategy": sname, "target_force_mae": target,
               "labels_to_target": n_mean, "labels_to_target_per_seed": ns,
               "full_pool_force_mae": full, "budget": budget, "seeds": len(sels),
               "curve": [(n, float(np.mean([c[k][1] for c in curves if k < len(c)])))
                         for k, (n, _) in enumerate(curves[0])],
               "seconds": time.perf_counter() - t0}
        if sname != "random" and n_mean is not None:
            r = results["random"]
            rec["ratio_to_random"] = n_mean / float(np.mean(r))
        emit(rec)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--quick", action="store_true", help="smaller budget, fewer seeds")
    p.add_argument("--elements", nargs="*", default=["Ni", "Si"])
    p.add_argument("--no-live", action="store_true", help="skip the live EMT run")
    p.add_argument("--strategies", nargs="*",
                   default=["stratified", "variance_reduction", "d_optimal"])
    p.add_argument("--budget", type=int, default=40)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--n-initial", type=int, default=2)
    p.add_argument("--seeds", type=int, default=3, help="random-selection seeds")
    p.add_argument("--al-seeds", type=int, default=3, help="initial sets of the AL runs")
    p.add_argument("--target-factor", type=float, default=1.05)
    p.add_argument("--live-candidates", type=int, default=24)
    p.add_argument("--n-max", type=int, default=4)
    p.add_argument("--l-max", type=int, default=3)
    args = p.parse_args(argv)
    BASIS.update(n_max=args.n_max, l_max=args.l_max)
    if args.quick:
        args.budget, args.seeds = min(args.budget, 30), min(args.seeds, 2)
        args.al_seeds = min(args.al_seeds, 1)
    warnings.filterwarnings("ignore", message=".*evidence maximisation did not converge")

    def emit(rec):
        if args.json:
            print(json.dumps(rec), flush=True)
        else:
            n = rec["labels_to_target"]
            extra = f" ({rec['ratio_to_random']:.2f} x random)" if rec.get("ratio_to_random") \
                else ""
            print(f"{rec['pool']:>14s} {rec['strategy']:>13s}: target "
                  f"{rec['target_force_mae']:.4f} eV/Å reached with "
                  f"{'not reached' if n is None else f'{n:.1f}'} labels{extra} "
                  f"[{rec['seconds']:.0f} s]", flush=True)

    if not (MLEARN_DIR / "extxyz").is_dir():
        print(json.dumps({"skipped": f"mlearn data not found at {MLEARN_DIR}"})
              if args.json else f"mlearn data not found at {MLEARN_DIR}")
    else:
        for el in args.elements:
            run_pool(el, args, emit)
    if not args.no_live:
        run_live(args, emit)
    return 0


if __name__ == "__main__":
    sys.exit(main())
