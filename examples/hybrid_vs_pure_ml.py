"""Learning curve: pure ML versus EMT + ML on real DFT data (workload W3 in miniature).

Fits the same descriptor and Bayesian linear model on growing random subsets of the training
set, once with no baseline (pure ML) and once on top of EMT (``hybridpot.baselines.EMT``), and
prints the held-out force and energy errors.  Uses the mlearn Ni data (``../shared/data/mlearn`` or
``$MLEARN_DIR``) when present, else the shipped aluminium GPAW data.  Writes
``learning_curve.png`` when matplotlib is installed.

    python examples/hybrid_vs_pure_ml.py [--quick] [--out learning_curve.png]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
from ase.io import read

from hybridpot import HybridPotential
from hybridpot.baselines import EMT
from hybridpot.config import default_data_path
from hybridpot.descriptors import PowerSpectrum
from hybridpot.regression import BayesianLinearRegressor

ROOT = Path(__file__).resolve().parents[1]
MLEARN = Path(os.environ.get("MLEARN_DIR", ROOT.parent / "shared" / "data" / "mlearn"))


def load(quick):
    if (MLEARN / "extxyz" / "Ni_train.xyz").exists():
        train = read(MLEARN / "extxyz" / "Ni_train.xyz", ":")
        test = read(MLEARN / "extxyz" / "Ni_test.xyz", ":")
        element = "Ni"
    else:
        data = read(default_data_path(), ":")
        idx = np.random.default_rng(0).permutation(len(data))
        n_test = max(2, len(data) // 5)
        test = [data[i] for i in idx[:n_test]]
        train = [data[i] for i in idx[n_test:]]
        element = "Al"
    if quick:
        test = test[::3]
    return element, train, test


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="three small fractions only")
    p.add_argument("--out", default="learning_curve.png")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    element, train, test = load(args.quick)
    fractions = (0.02, 0.05, 0.1) if args.quick else (0.05, 0.1, 0.25, 0.5, 1.0)
    order = np.random.default_rng(args.seed).permutation(len(train))
    rows = []
    print(f"{element}: {len(train)} training structures, {len(test)} test structures")
    print(f"{'fraction':>8} {'n':>4} {'baseline':>8} {'E MAE meV/at':>12} {'F MAE eV/Å':>11}")
    for frac in fractions:
        sub = [train[i] for i in order[:max(2, int(round(frac * len(train))))]]
        for name, baseline in (("none", None), ("EMT", EMT())):
            model = HybridPotential(
                PowerSpectrum(species=[element], r_cut=4.5, n_max=6, l_max=4),
                BayesianLinearRegressor(), baseline,
                weights={"energy": 1.0, "forces": 1.0, "stress": 0.0})
            m = model.fit(sub).evaluate(test)
            rows.append((frac, len(sub), name, 1000 * m["energy_mae"], m["force_mae"]))
            print(f"{frac:8.2f} {len(sub):4d} {name:>8} {rows[-1][3]:12.2f} {rows[-1][4]:11.4f}")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return rows
    fig, ax = plt.subplots(figsize=(4.5, 3.5))
    for name, style in (("none", "o-"), ("EMT", "s-")):
        n = [r[1] for r in rows if r[2] == name]
        f = [r[4] for r in rows if r[2] == name]
        ax.loglog(n, f, style, label="pure ML" if name == "none" else "EMT + ML")
    ax.set_xlabel("training structures")
    ax.set_ylabel("test force MAE (eV/Å)")
    ax.legend()
    fig.savefig(args.out, dpi=110, bbox_inches="tight")
    print(f"plot -> {args.out}")
    return rows


if __name__ == "__main__":
    main()
