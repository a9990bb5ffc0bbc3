"""Sparse Gaussian processes: one GP, an ensemble of GPs, recalibrated σ, MD with σ.

Fits a GAP-style SE-kernel sparse GP on top of ZBL to the shipped aluminium GPAW data, then
the mean of three such GPs on different inducing-point draws (``EnsembleRegressor``; the
three share the two passes over the training data), compares their test errors, recalibrates
the ensemble's force σ on a validation split (``method="heteroscedastic"``: the GPs' fixed
observation noise is kept apart from the part of σ that varies between environments), and
runs a short Langevin MD through the ASE calculator with σ at every step.  The GPs use
``derivative_variance="committee"``: their force and stress σ come from 16 posterior weight
samples each, pushed through the descriptor adjoint with the forces (several times cheaper
in MD than the exact DTC σ, and as well calibrated after recalibration on the mlearn sets).

    python examples/gp_ensemble.py [--quick]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from ase import units
from ase.io import read

from hybridpot import HybridPotential
from hybridpot._compat import langevin, thermalize
from hybridpot.baselines import ZBL
from hybridpot.config import default_data_path
from hybridpot.descriptors import PowerSpectrum
from hybridpot.regression import EnsembleRegressor, SparseGPRegressor
from hybridpot.uq import evaluate_uncertainty


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer inducing points, shorter MD")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    data = read(default_data_path(), ":")
    idx = np.random.default_rng(args.seed).permutation(len(data))
    n = len(data)
    test = [data[i] for i in idx[: n // 5]]
    val = [data[i] for i in idx[n // 5: 2 * n // 5]]
    train = [data[i] for i in idx[2 * n // 5:]]
    gp = SparseGPRegressor(kernel="se", n_sparse=100 if args.quick else 300,
                           noise={"energy": 0.001, "forces": 0.05}, random_state=args.seed,
                           derivative_variance="committee", n_committee=16)

    def model(regressor):
        return HybridPotential(PowerSpectrum(species=["Al"], r_cut=5.0, n_max=6, l_max=4),
                               regressor, ZBL(r_inner=1.5, r_cut=2.2))

    single = model(gp).fit(train)
    t0 = time.process_time()
    ens = model(EnsembleRegressor(estimator=gp, n_models=3, random_state=args.seed)).fit(train)
    fit_s = time.process_time() - t0
    for name, m in (("one GP", single), ("mean of 3 GPs", ens)):
        e = m.evaluate(test)
        print(f"{name}: test energy MAE {1000 * e['energy_mae']:.2f} meV/atom, "
              f"force MAE {e['force_mae']:.4f} eV/Å")
    print(f"ensemble fit: {fit_s:.1f} s CPU")
    before = evaluate_uncertainty(ens, test)["forces"]
    ens.recalibrate(val, method="heteroscedastic")
    after = evaluate_uncertainty(ens, test)["forces"]
    for name, f in (("before recalibration", before), ("after recalibration", after)):
        print(f"{name}: force ±1σ {100 * f['coverage_1sigma']:.1f} %, "
              f"±2σ {100 * f['coverage_2sigma']:.1f} %, NLL {f['nll']:.2f}")
    atoms = max(test, key=len).copy()
    rng = np.random.default_rng(args.seed)
    thermalize(atoms, 300.0, rng)
    n_steps = 20 if args.quick else 200
    cpu = {}
    for with_std in (False, True):
        a = atoms.copy()
        a.calc = ens.calculator(uncertainty=with_std)
        dyn = langevin(a, 2.0 * units.fs, 300.0, 0.02 / units.fs, np.random.default_rng(1))
        sig = []
        if with_std:
            dyn.attach(lambda: sig.append(float(np.max(a.calc.results["forces_std"]))))
        t0 = time.process_time()
        dyn.run(n_steps)
        cpu[with_std] = time.process_time() - t0
    print(f"Langevin MD ({len(atoms)} atoms, {n_steps} steps): largest force σ "
          f"{max(sig):.3f} eV/Å, T {a.get_temperature():.0f} K; σ at every step costs "
          f"{cpu[True] / cpu[False]:.1f}x the MD without σ (CPU time)")


if __name__ == "__main__":
    main()
