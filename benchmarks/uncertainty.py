"""Workload W4 (uncertainty): calibration of force σ on the mlearn test sets.

For every element (``<El>_train.xyz`` / ``<El>_test.xyz`` in ``$MLEARN_DIR/extxyz``) and model:

1. split the training set at random (``--seed``) into a fitting part and a validation part
   (``--val-fraction``, default 20 %);
2. fit the model on the fitting part, sample the posterior of its hyperparameters with emcee
   (:class:`hybridpot.uq.LinearPosterior`, weights marginalised, one noise per label kind --
   or per kind and config type with ``--noise-groups yes`` --, cross-validated
   model-discrepancy inflation) and install the committee;
3. recalibrate σ on the validation part (``--recalibration``, any method of
   :func:`hybridpot.uq.recalibrate`; default ``heteroscedastic``: per label kind σ'² =
   a σ_param² + a_pow σ_ref² (σ_param/σ_ref)^(2γ) + b σ_noise² + c |F_i|², maximum
   likelihood; ``heteroscedastic_coverage`` adds one factor balancing the ±1σ/±2σ
   coverages; ``split``: one factor on the parameter and one on the noise part; ``nll``:
   one factor per kind); ``--compare-recalibrations`` also reports every method on the
   same fit;
4. on the test set: coverage of force components at ±1σ / ±2σ, mean Gaussian NLL per force
   component, Spearman correlation of per-structure RMS σ with RMS force error; plus the cost
   of force σ in MD (NVE velocity Verlet through the ASE calculator on the largest test cell,
   median of repeats) relative to forces alone: σ at every step (``sigma_cost_ratio``) and
   every 5th step (``sigma_cost_ratio_interval5``), in wall time, and the same in process CPU
   time (``*_cpu``, less sensitive to other load on a shared machine).

With ``--json`` one object per line::

    {"element", "model", "coverage_1sigma", "coverage_2sigma", "nll", "spearman", ...}

(``coverage_*`` are fractions of the test force components, 0.68 = 68 %: targets 0.68 ± 0.05
and 0.95 ± 0.03; ``nll`` in nats per force component, forces in eV/Å; extra keys: the same
before recalibration, energy figures, chain diagnostics, ``sigma_cost_ratio``).  Strict JSON:
a figure that is not defined (the Spearman correlation of fewer than 3 test structures, for
instance) is ``null``.

Usage::

    python benchmarks/uncertainty.py --elements Ni --models snap_linear --json

Measured (2026-11-21, seed 0, 80/20 fit/validation split of each training set, one noise
per label kind, CV inflation, 32 walkers x 6000 steps; force components of the test sets;
``--compare-recalibrations``, so every method is fitted on the same validation split of the
same posterior):

======  ===================  =====  =====  =====  =====  =====  ======  ======
El      recalibration        ±1σ    ±2σ    NLL    Spear  met    raw±1σ  raw±2σ
======  ===================  =====  =====  =====  =====  =====  ======  ======
Ni      split (old default)  74.5   94.1   -3.13  0.95   no     79.3    90.8
Ni      heteroscedastic      70.2   92.4   -3.28  0.94   yes
Ni      hetero._coverage     68.5   91.3   -3.26  0.94   no
Cu      split (old default)  84.2   97.7   -3.30  0.94   no     75.9    89.0
Cu      heteroscedastic      82.0   95.7   -4.41  0.90   no
Cu      hetero._coverage     71.0   88.9   -4.34  0.90   no
Mo      split (old default)  68.1   94.9   -0.49  0.96   yes    76.9    91.3
Mo      heteroscedastic      68.2   94.8   -0.68  0.96   yes
Mo      hetero._coverage     65.5   93.8   -0.68  0.96   yes
Si      split (old default)  85.4   94.4   -4.04  0.94   no     64.7    88.2
Si      heteroscedastic      65.2   92.7   -3.47  0.94   yes
Si      hetero._coverage     66.4   93.3   -3.48  0.93   yes
======  ===================  =====  =====  =====  =====  =====  ======  ======

PowerSpectrum (n_max 6, l_max 4) + Bayesian linear, same protocol (``--models ps_linear``):

======  ===================  =====  =====  =====  =====  =====
El      recalibration        ±1σ    ±2σ    NLL    Spear  met
======  ===================  =====  =====  =====  =====  =====
Ni      split                75.7   94.6   -3.30  0.94   no
Ni      heteroscedastic      71.2   92.8   -3.52  0.93   yes
Cu      split                85.0   97.9   -3.53  0.92   no
Cu      heteroscedastic      84.2   96.6   -4.64  0.91   no
Mo      split                65.2   93.8   -0.94  0.97   yes
Mo      heteroscedastic      65.2   93.8   -1.11  0.97   yes
Si      split                68.0   96.1   -3.69  0.86   yes
Si      heteroscedastic      67.7   92.0   -3.69  0.86   yes
======  ===================  =====  =====  =====  =====  =====

Sparse GPs (``--models ps_gp_smooth bs_gp``, 2026-11-21, session 5; the models of
``benchmarks/mlearn.py`` fitted on the same 80 % split, no emcee: their own projected-process
σ with the fixed observation noise, which the heteroscedastic model keeps as its noise part):

======  =============  ===================  =====  =====  =====  =====  =====  ======  ======
El      model          recalibration        ±1σ    ±2σ    NLL    Spear  met    raw±1σ  raw±2σ
======  =============  ===================  =====  =====  =====  =====  =====  ======  ======
Ni      ps_gp_smooth   heteroscedastic      71.6   92.2   -3.70  0.92   yes    93.8    99.2
Ni      ps_gp_smooth   hetero._coverage     68.8   90.2   -3.67  0.92   no
Cu      ps_gp_smooth   heteroscedastic      84.5   97.0   -4.80  0.91   no     98.8    100.0
Cu      ps_gp_smooth   hetero._coverage     71.5   90.5   -4.77  0.91   no
Mo      ps_gp_smooth   heteroscedastic      73.1   93.7   -1.28  0.96   no     100.0   100.0
Mo      ps_gp_smooth   hetero._coverage     71.5   92.7   -1.28  0.96   yes
Si      ps_gp_smooth   heteroscedastic      71.3   92.3   -3.81  0.84   yes    82.3    96.2
Si      ps_gp_smooth   hetero._coverage     70.1   91.7   -3.80  0.85   no
Mo      bs_gp (3 GPs)  heteroscedastic      72.9   94.1   -1.46  0.96   yes    82.8    97.1
Mo      bs_gp (3 GPs)  hetero._coverage     70.6   92.9   -1.45  0.96   yes
Si      bs_gp          heteroscedastic      69.8   92.3   -3.99  0.85   yes    82.5    97.0
Si      bs_gp          hetero._coverage     68.9   91.5   -3.98  0.85   no
======  =============  ===================  =====  =====  =====  =====  =====  ======  ======

(Mo's ps_gp_smooth default misses the ±1σ box by 0.1 point.)  The best models (bs_gp) have
the lowest NLL of every model on Mo and Si.  Cu fails for the reason given below (the
elastic cells: 92.8 % of their components within ±1σ).  The GP's σ in MD costs 23-30x the
forces at every step (5.5-8x with ``uncertainty_interval=5``; bs_gp 43x and 9x): its force
rows span all inducing points (``SparseGPRegressor.design_rows``), where the linear
committee needs one small product (1.0-1.5x).

Committee σ of the GPs (``--gp-variance committee --n-committee 16``, session 6, same
splits and models: ``SparseGPRegressor(derivative_variance="committee")``, 16 posterior
weight samples per GP pushed through the descriptor adjoint; the DTC term is dropped and the
heteroscedastic recalibration rescales what remains).  σ-in-MD cost is
``sigma_cost_ratio`` (σ every step / forces alone, largest test cell) and, in brackets, with
``uncertainty_interval=5``; DTC figures from the table above:

======  =============  ====  ===========  ======  =====  ======  ===========  ===========
El      model          K     ±1σ / ±2σ    NLL     Spear  met     cost         DTC cost
======  =============  ====  ===========  ======  =====  ======  ===========  ===========
Ni      ps_gp_smooth   16    71.6 / 92.3  -3.71   0.93   yes     4.5 (1.7)    29.6 (8.3)
Ni      ps_gp_smooth   8     72.5 / 92.4  -3.68   0.93   yes     3.0 (1.6)    29.6 (8.3)
Ni      ps_gp_smooth   4     72.2 / 91.4  -3.65   0.90   no      2.5 (1.6)    (session 7)
Ni      ps_gp_smooth   2     72.8 / 91.3  -3.61   0.90   no      1.7 (1.1)    (session 7)
Cu      ps_gp_smooth   16    83.7 / 96.7  -4.80   0.88   no      4.1 (1.7)    27.9 (6.3)
Mo      bs_gp (3 GPs)  16    74.5 / 94.0  -1.39   0.97   no      10.2 (2.8)   43.2 (9.3)
Mo      bs_gp (3 GPs)  6     75.0 / 94.3  -1.38   0.97   no      5.0 (1.6)    43.2 (9.3)
Si      bs_gp          16    67.0 / 93.4  -4.17   0.89   yes     7.3 (2.2)    43.8 (9.2)
======  =============  ====  ===========  ======  =====  ======  ===========  ===========

After recalibration the committee σ is as good as the exact DTC σ on Ni and Cu (same
coverage and NLL), better on Si (NLL -4.17 vs -3.99, Spearman 0.89 vs 0.85) and a little
worse on Mo (±1σ 74.5 % misses the box by 1.5 points, NLL -1.39 vs -1.46), at 4-7x less
σ cost (10.2x for Mo's three GPs with 16 samples each, 52 adjoint rows; 5.0x with 6 each,
22 rows, the same calibration; that run already had the batched SO(3) adjoint of commit
787c7f7, the others not).  Before recalibration it is
overconfident where the DTC term dominates (Mo raw ±1σ 60.6 % vs 82.8 %).  Still above the
1.5x target at every step: each member costs one ``(n_atoms, M) x (M, F)`` product and one
adjoint row, about a quarter of a force evaluation each, so 1.5x would leave 2 members.

(±1σ/±2σ in %, NLL in nats per force component (eV/Å units); "met": 68 ± 5 % and 95 ± 3 %;
"raw": ±1σ/±2σ of the posterior without recalibration.)  ``heteroscedastic`` (the
default) meets the target on Ni, Mo and Si (Ni and Si only just at ±2σ: 92.4 and 92.7 %);
Cu is over-covered at ±1σ (82 %).  The obstacle is the elastic cells (44 % of the Ni and
Cu test force components): DFT forces that vanish by symmetry, reproduced to ~1e-4 eV/Å,
except in a few cells whose DFT forces carry ~1e-3 eV/Å of numerical noise (6 of 13 Ni
test cells against 4 of 18 validation cells).  Nothing the model sees tells these cells
apart, so their errors are bimodal at any σ; with any single factor on Cu's maximum-
likelihood σ the test set stays outside the box (best ±1σ/±2σ 74.1/91.3 % with the factor
tuned on the test set itself, on the saved predictions of the baseline run; the same scan
finds a range of factors inside the box for Ni, Mo and Si).  ``heteroscedastic_coverage``
trades ±2σ for ±1σ and fails ±2σ on Ni and Cu because the test sets are hotter (AIMD) and
noisier (elastic) than the validation split.  Energies: the maximum-likelihood variance
model reduces to the split's ``a σ_param²`` (unchanged figures).  The σ cost in MD is
measured by ``sigma_cost_ratio`` (σ every step) and ``sigma_cost_ratio_interval5``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

# single-threaded, as every benchmark (BENCHMARKS.md): the σ cost ratio and the fit times
for _var in ("OMP_NUM_THREADS", "NUMBA_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))     # the mlearn benchmark's model definitions
from _jsonl import dumps  # noqa: E402  (strict JSON: NaN / inf as null)
DEFAULT_DIR = Path(os.environ.get("MLEARN_DIR", ROOT.parent / "shared" / "data" / "mlearn"))

MODELS = ["snap_linear", "ps_linear", "ps_gp_smooth", "bs_gp"]
#: sparse GP models of benchmarks/mlearn.py: their own projected-process σ (hyperparameters
#: by evidence or fixed, no emcee posterior), recalibrated the same way
GP_MODELS = ("ps_gp_smooth", "bs_gp")
#: keys of every record (BENCHMARKS.md); the "data not found" record has them as None
KEYS = ("element", "model", "coverage_1sigma", "coverage_2sigma", "nll", "spearman")
RECALIBRATIONS = ["nll", "coverage", "split", "heteroscedastic_coverage", "heteroscedastic"]


def build_model(element, name):
    """The (unfitted) HybridPotential ``name`` (mlearn SNAP / SO(3) / sparse GP settings)."""
    from mlearn import build_model as mlearn_model

    if name == "ps_linear":
        # a smaller SO(3) basis than the accuracy benchmark: the posterior costs O(P^3) per
        # likelihood evaluation, P = 1 + n_features
        from hybridpot import HybridPotential
        from hybridpot.descriptors import PowerSpectrum
        from hybridpot.regression import BayesianLinearRegressor

        ref = mlearn_model(element, "ps_linear")
        desc = PowerSpectrum(species=[element], r_cut=ref.descriptor.r_cut, n_max=6, l_max=4)
        return HybridPotential(desc, BayesianLinearRegressor(), ref.baseline, ref.weights)
    return mlearn_model(element, name)


def md_cost_ratio(model, atoms, n_steps=10, repeats=3, cpu=None):
    """Wall time of NVE MD (velocity Verlet, 1 fs) with σ relative to forces alone.

    Returns the median ratios for σ at every step and σ every 5 steps
    (``uncertainty_interval=5``), and the median seconds per step without σ; with a dict
    ``cpu``, the same two ratios in process CPU time are stored in ``cpu["every"]`` and
    ``cpu["every5"]``.
    """
    from ase import units
    from ase.md.verlet import VelocityVerlet

    def run_md(**kw):
        a = atoms.copy()
        a.rattle(0.02, seed=1)
        a.calc = model.calculator(**kw)
        dyn = VelocityVerlet(a, 1.0 * units.fs)
        a.get_forces()
        t0, c0 = time.perf_counter(), time.process_time()
        dyn.run(n_steps)
        return (time.perf_counter() - t0) / n_steps, (time.process_time() - c0) / n_steps

    t = {k: [] for k in ("none", "every", "every5")}
    for _ in range(repeats):
        t["none"].append(run_md())
        t["every"].append(run_md(uncertainty=True))
        t["every5"].append(run_md(uncertainty=True, uncertainty_interval=5))
    wall = {k: float(np.median([w for w, _ in v])) for k, v in t.items()}
    if cpu is not None:
        proc = {k: float(np.median([c for _, c in v])) for k, v in t.items()}
        cpu["every"] = proc["every"] / proc["none"]
        cpu["every5"] = proc["every5"] / proc["none"]
    return wall["every"] / wall["none"], wall["every5"] / wall["none"], wall["none"]


def run(data_dir, element, name, args):
    from ase.io import read

    from hybridpot.uq import LinearPosterior, evaluate_uncertainty

    train = read(data_dir / "extxyz" / f"{element}_train.xyz", ":")
    test = read(data_dir / "extxyz" / f"{element}_test.xyz", ":")
    rng = np.random.default_rng(args.seed)
    perm = rng.permutation(len(train))
    n_val = int(round(args.val_fraction * len(train)))
    val = [train[i] for i in perm[:n_val]]
    fit = [train[i] for i in perm[n_val:]]
    model = build_model(element, name)
    if name in GP_MODELS:
        # force / stress σ: "dtc" (exact projected process + DTC term), "projected" or
        # "committee" (n_committee weight samples through the adjoint; ensembles: per member)
        reg = model.regressor
        (reg.estimator if getattr(reg, "estimator", None) is not None else reg).set_params(
            derivative_variance=args.gp_variance, n_committee=args.n_committee)
    t0 = time.perf_counter()
    model.fit(fit)
    fit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    post = None
    # emcee chain figures (None for the GPs, which have no posterior over hyperparameters)
    chain = dict.fromkeys(("inflation", "acceptance_fraction", "max_autocorr_time", "n_steps",
                           "chain_converged_50tau", "n_theta"))
    if name not in GP_MODELS:
        post = LinearPosterior(noise_groups=args.noise_groups == "yes", robust=args.robust,
                               n_steps=args.n_steps,
                               n_burn=args.n_burn, random_state=args.seed).fit(model, fit)
        summ = post.summary(force=True)
        post.apply(model, n_theta_samples=64, force=True, random_state=args.seed)
        chain = {"inflation": post.inflation_,
                 "acceptance_fraction": summ["acceptance_fraction"],
                 "max_autocorr_time": max(summ["autocorr_time"]), "n_steps": summ["n_steps"],
                 "chain_converged_50tau": bool(
                     post.chain_.shape[0] >= 50 * max(summ["autocorr_time"])),
                 "n_theta": len(summ["theta_names"])}
    post_s = time.perf_counter() - t0
    before = evaluate_uncertainty(model, test)
    if args.save_predictions:
        from hybridpot.uq import collect_uncertainty

        arrays = {}
        for tag, structs in (("val", val), ("test", test)):
            for kind, d in collect_uncertainty(model, structs).items():
                for key, v in d.items():
                    arrays[f"{tag}_{kind}_{key}"] = v
            if post is None:
                continue
            for kind, d in collect_uncertainty(model, structs, include_noise=False).items():
                arrays[f"{tag}_{kind}_std_param"] = d["std"]
        np.savez(f"{args.save_predictions}_{element}_{name}.npz", **arrays)
    from hybridpot.uq import recalibrate

    comparison = {}
    if args.compare_recalibrations:
        # every method fitted on the same validation split (each call replaces the last)
        for method in RECALIBRATIONS:
            if method == "split" and post is None:
                continue      # needs a posterior committee
            t0 = time.perf_counter()
            recalibrate(model, val, method=method)
            fm = evaluate_uncertainty(model, test)["forces"]
            comparison[method] = {k: fm[k] for k in ("coverage_1sigma", "coverage_2sigma",
                                                     "nll", "spearman", "mean_std")}
            comparison[method]["recalibrate_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    scale = recalibrate(model, val, method=args.recalibration)
    recal_s = time.perf_counter() - t0
    after = evaluate_uncertainty(model, test)
    if args.report:
        from hybridpot.report import write_uncertainty_report

        write_uncertainty_report(model, test, Path(args.report) / f"{element}_{name}",
                                 posterior=post, force=True,
                                 title=f"W4 uncertainty: {element} {name} (mlearn test set)")
    from hybridpot.uq import calibration_metrics, collect_uncertainty

    d = collect_uncertainty(model, test)["forces"]
    ctype = np.array([str(a.info.get("config_type", "default")) for a in test])[d["structure"]]
    by_group = {}
    for g in np.unique(ctype):
        m = ctype == g
        gm = calibration_metrics(d["y"][m], d["pred"][m], d["std"][m], d["structure"][m])
        by_group[str(g)] = {k: gm[k] for k in ("n", "coverage_1sigma", "coverage_2sigma",
                                                "nll", "rmse", "mean_std")}
    f, fb = after["forces"], before["forces"]
    big = max(test, key=len)
    cpu = {}
    ratio, ratio5, t_forces = md_cost_ratio(model, big, cpu=cpu)
    return {"element": element, "model": name,
            "coverage_1sigma": f["coverage_1sigma"], "coverage_2sigma": f["coverage_2sigma"],
            "nll": f["nll"], "spearman": f["spearman"], "force_mae": f["mae"],
            "mean_force_std": f["mean_std"],
            "before_recalibration": {k: fb[k] for k in ("coverage_1sigma", "coverage_2sigma",
                                                        "nll", "spearman", "mean_std")},
            "energy": {k: after["energy"][k] for k in ("coverage_1sigma", "coverage_2sigma",
                                                       "nll", "spearman", "mae")},
            "forces_by_config_type": by_group, "noise_groups": args.noise_groups,
            "recalibration": args.recalibration, "recalibrate_s": recal_s,
            "gp_variance": args.gp_variance if name in GP_MODELS else None,
            "n_committee": args.n_committee if name in GP_MODELS else None,
            "recalibration_comparison": comparison,
            "scale": scale, **chain,
            "sigma_cost_ratio": ratio, "sigma_cost_ratio_interval5": ratio5,
            "sigma_cost_ratio_cpu": cpu["every"], "sigma_cost_ratio_interval5_cpu": cpu["every5"],
            "md_step_s_forces_only": t_forces, "md_atoms": len(big),
            "n_fit": len(fit), "n_val": len(val), "n_test": len(test),
            "fit_s": fit_s, "posterior_s": post_s}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--data", type=Path, default=DEFAULT_DIR)
    p.add_argument("--elements", nargs="*", default=None)
    p.add_argument("--models", nargs="*", default=["snap_linear"], choices=MODELS,
                   metavar="MODEL", help=f"models ({', '.join(MODELS)})")
    p.add_argument("--seed", type=int, default=0)
    from hybridpot.regression._gp import DERIVATIVE_VARIANCES

    p.add_argument("--gp-variance", choices=DERIVATIVE_VARIANCES, default="dtc",
                   help="force / stress σ of the sparse GPs (SparseGPRegressor's "
                        "derivative_variance)")
    p.add_argument("--n-committee", type=int, default=16,
                   help="weight samples of --gp-variance committee")
    p.add_argument("--val-fraction", type=float, default=0.2)
    p.add_argument("--n-steps", type=int, default=6000)
    p.add_argument("--n-burn", type=int, default=500)
    p.add_argument("--robust", choices=["none", "cv"], default="cv")
    p.add_argument("--noise-groups", choices=["yes", "no"], default="no",
                   help="one noise level per label kind and config type (yes) or per kind")
    p.add_argument("--recalibration", choices=RECALIBRATIONS, default="heteroscedastic",
                   help="method of hybridpot.uq.recalibrate fitted on the validation split")
    p.add_argument("--compare-recalibrations", action="store_true",
                   help="also report the test-set force figures of every recalibration "
                        "method (key 'recalibration_comparison')")
    p.add_argument("--report", default=None,
                   help="folder for an uncertainty report (HTML + PNGs) per element and model")
    p.add_argument("--save-predictions", default=None,
                   help="write validation/test labels, means and σ (before recalibration) to "
                        "<prefix>_<El>_<model>.npz")
    args = p.parse_args(argv)
    xyz = args.data / "extxyz"
    if not xyz.is_dir():
        msg = f"mlearn data not found at {args.data}"
        print(dumps({**dict.fromkeys(KEYS), "error": msg}) if args.json else msg)
        return 0
    elements = args.elements or sorted(q.name.split("_")[0] for q in xyz.glob("*_train.xyz"))
    for el in elements:
        for name in args.models:
            if name == "bs_gp":
                from mlearn import BS_GP

                if el not in BS_GP:
                    continue   # settings validated for Mo and Si only
            rec = run(args.data, el, name, args)
            if args.json:
                print(dumps(rec), flush=True)
            else:
                print(f"{el:3s} {name:12s} ±1σ {100 * rec['coverage_1sigma']:5.1f} %  "
                      f"±2σ {100 * rec['coverage_2sigma']:5.1f} %  NLL {rec['nll']:.3f}  "
                      f"Spearman {rec['spearman']:.3f}  (targets 68 ± 5 %, 95 ± 3 %)  "
                      f"σ cost ×{rec['sigma_cost_ratio']:.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
