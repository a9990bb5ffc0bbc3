"""Uncertainty: emcee posterior of a Bayesian SNAP model, recalibration, and an HTML report.

Fits a linear SNAP model on top of ZBL to the shipped aluminium GPAW data, samples the
hyperparameters (prior precision, noise per label kind, ZBL has none) with emcee with the
weights marginalised analytically, installs the posterior committee on the model, recalibrates
σ on a validation split, and writes ``uncertainty_report/report.html`` (parity plots coloured
by σ, calibration curve, z-score histograms, chain traces, corner plot).

    python examples/uncertainty_report.py [--quick] [--out uncertainty_report]
"""

from __future__ import annotations

import argparse

import numpy as np
from ase.io import read

from hybridpot import HybridPotential
from hybridpot.baselines import ZBL
from hybridpot.config import default_data_path
from hybridpot.descriptors import SNAPBispectrum
from hybridpot.regression import BayesianLinearRegressor
from hybridpot.report import write_uncertainty_report
from hybridpot.uq import LinearPosterior, evaluate_uncertainty


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="shorter chain")
    p.add_argument("--out", default="uncertainty_report")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    data = read(default_data_path(), ":")
    idx = np.random.default_rng(args.seed).permutation(len(data))
    n = len(data)
    test = [data[i] for i in idx[: n // 5]]
    val = [data[i] for i in idx[n // 5: 2 * n // 5]]
    train = [data[i] for i in idx[2 * n // 5:]]
    model = HybridPotential(SNAPBispectrum(species=["Al"], twojmax=6, rcutfac=5.0),
                            BayesianLinearRegressor(), ZBL(r_inner=1.5, r_cut=2.2))
    model.fit(train)
    n_steps = 1500 if args.quick else 4000
    post = LinearPosterior(n_steps=n_steps, n_burn=300, random_state=args.seed)
    post.fit(model, train)
    s = post.summary(force=args.quick)
    print("posterior:", {k: v for k, v in s.items() if k in ("acceptance_fraction",
                                                              "autocorr_time")})
    post.apply(model, n_theta_samples=32, force=args.quick, random_state=args.seed)
    before = evaluate_uncertainty(model, test)
    model.recalibrate(val)
    after = evaluate_uncertainty(model, test)
    for name, m in (("before recalibration", before), ("after recalibration", after)):
        f = m["forces"]
        print(f"{name}: force ±1σ {100 * f['coverage_1sigma']:.1f} %, "
              f"±2σ {100 * f['coverage_2sigma']:.1f} %")
    path = write_uncertainty_report(model, test, args.out, posterior=post, force=args.quick)
    print(f"report -> {path}")


if __name__ == "__main__":
    main()
