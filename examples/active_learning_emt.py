"""Active learning with EMT as the oracle: Cu/Al from random-disorder and rattled crystals.

The loop (:class:`hybridpot.learn.ActiveLearner`) samples candidates, picks a batch with the
learner's default selector (:func:`hybridpot.learn.default_selector`: the largest force
variance of the Bayesian linear model within k-means strata of the candidates, which keeps the
training mixture representative; plain D-optimal or maximum-variance batches chase the most
distorted cells, see ``benchmarks/active_learning.py``), labels it with ASE's
EMT (stand-in for DFT: any ASE calculator works, e.g. GPAW or tblite when installed), refits,
and stops at a label budget or when the held-out force error reaches a target.  Everything is
written to a run directory; interrupt the script (Ctrl-C) and start it again: it resumes where
it stopped, without losing or recomputing a label.  Afterwards, a short MD run with the learned
model is watched by an uncertainty-terminated MD sampler.

    python examples/active_learning_emt.py [--quick] [--run-dir al_emt_run] [--workers 1]
"""

from __future__ import annotations

import argparse
import os
import warnings

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from sklearn.base import clone  # noqa: E402
from ase.build import bulk  # noqa: E402
from ase.calculators.emt import EMT  # noqa: E402
from ase.calculators.singlepoint import SinglePointCalculator  # noqa: E402

from hybridpot import HybridPotential  # noqa: E402
from hybridpot.descriptors import PowerSpectrum  # noqa: E402
from hybridpot.learn import ActiveLearner  # noqa: E402
from hybridpot.regression import BayesianLinearRegressor  # noqa: E402
from hybridpot.sampling import (RandomDisorderSampler, RattleStrainSampler,  # noqa: E402
                                UncertaintyMDSampler)


class MixedSampler(RattleStrainSampler):
    """Half rattled/strained fcc Cu-Al cells, half random-disorder cells (seed techniques 1+3)."""

    def __init__(self, *, prototype=None, supercell=(1, 1, 1), rattle_std=(0.02, 0.2),
                 strain_max=0.04, min_distance=1.8):
        super().__init__(prototype=prototype, supercell=supercell, rattle_std=rattle_std,
                         strain_max=strain_max, min_distance=min_distance)

    def sample(self, n, *, random_state=None, model=None):
        rng = np.random.default_rng(random_state) if not isinstance(
            random_state, np.random.Generator) else random_state
        crystal = super().sample(n - n // 2, random_state=rng)
        disorder = RandomDisorderSampler(species=["Cu", "Al"], n_atoms=(3, 8),
                                         volume_per_atom=(11.0, 17.0), min_distance=2.1)
        return crystal + disorder.sample(n // 2, random_state=rng)


def prototype():
    at = bulk("Cu", "fcc", a=3.70, cubic=True)
    at.symbols[[1, 2]] = "Al"  # a CuAl L1_0-like ordering in the 4-atom cubic cell
    return at


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


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small budget (about a minute)")
    p.add_argument("--run-dir", default="al_emt_run")
    p.add_argument("--workers", type=int, default=1, help="Dask workers for the oracle")
    args = p.parse_args()
    # refits on a few structures may end the evidence iteration early: harmless here
    warnings.filterwarnings("ignore", message=".*evidence maximisation did not converge")
    budget, n_val = (12, 10) if args.quick else (40, 30)

    sampler = MixedSampler(prototype=prototype(), supercell=(2, 1, 1))
    validation = label(sampler.sample(n_val, random_state=12345))
    initial = label(sampler.sample(2, random_state=1))
    model = HybridPotential(
        descriptor=PowerSpectrum(species=["Cu", "Al"], r_cut=4.5, n_max=4, l_max=3),
        regressor=BayesianLinearRegressor(), weights={"energy": 1.0, "forces": 1.0,
                                                      "stress": 0.1})
    first = clone(model).fit(initial).evaluate(validation)
    print(f"initial model ({len(initial)} structures): force MAE "
          f"{first['force_mae']:.3f} eV/Å on {n_val} held-out structures")

    learner = ActiveLearner(
        model, "EMT", sampler, None, run_dir=args.run_dir,
        initial=initial, validation=validation, n_candidates=24, batch_size=4,
        max_labels=budget, max_iterations=100, target_error=0.02, oracle_timeout=60.0,
        n_workers=args.workers, random_state=0)
    learner.run()
    for h in learner.history_:
        print(f"iteration {h['iteration']}: {h['n_labels']:3d} labels, force MAE "
              f"{h['validation_force_mae']:.3f} eV/Å, max σ_F of the batch "
              f"{h['selected_sigma_max'] or float('nan'):.3f} eV/Å")
    print(f"stopped: {learner.stop_reason_}; {len(learner.failures_)} failed oracle calls; "
          f"run directory {args.run_dir}/ (labels.extxyz, state.json, model.hpot)")

    # where does the learned model become unsure?  uncertainty-terminated MD
    md = UncertaintyMDSampler(starts=[prototype() * (2, 2, 1)],
                              temperature_range=(300.0, 1500.0),
                              n_steps=50 if args.quick else 300, sigma_threshold=0.3,
                              frames_per_run=2)
    frames = md.sample(2, random_state=np.random.default_rng(7), model=learner.model_)
    print("uncertainty-terminated MD: runs stopped by", md.stop_reasons_,
          "; most uncertain frames σ_F max =",
          [round(f.info["sigma_max"], 3) for f in frames], "eV/Å")


if __name__ == "__main__":
    main()
