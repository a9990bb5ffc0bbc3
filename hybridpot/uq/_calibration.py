r"""Calibration of predictive uncertainties: coverage, NLL, z-scores, Spearman, recalibration.

For a label ``y`` with prediction ``mu`` and predictive standard deviation ``sigma`` the
z-score is ``z = (y - mu) / sigma``; a calibrated Gaussian predictive has ``z ~ N(0, 1)``:
``P(|z| <= 1) = 68.27 %``, ``P(|z| <= 2) = 95.45 %`` and mean negative log-likelihood
``0.5 log(2 pi sigma^2) + z^2 / 2``.
"""

from __future__ import annotations

import numpy as np
import scipy.stats

from .._exceptions import InvalidParameterError, MissingLabelsError
from .._labels import get_labels

__all__ = ["calibration_metrics", "collect_uncertainty", "evaluate_uncertainty",
           "recalibrate", "calibration_curve"]

KIND_UNITS = {"energy": "eV/atom", "forces": "eV/Å", "stress": "eV/Å³"}


def calibration_curve(z, levels=None):
    """Observed against nominal central coverage of Gaussian intervals.

    Parameters
    ----------
    z : array_like
        z-scores.
    levels : array_like, optional
        Nominal coverages in (0, 1) (default 0.05 ... 0.95 and 0.99).

    Returns
    -------
    nominal, observed : ndarray
    """
    z = np.abs(np.asarray(z, dtype=np.float64))
    nominal = np.r_[np.arange(0.05, 0.96, 0.05), 0.99] if levels is None \
        else np.asarray(levels, dtype=np.float64)
    half = scipy.stats.norm.ppf(0.5 + nominal / 2)
    observed = np.array([np.mean(z <= h) for h in half]) if z.size else np.full(
        nominal.shape, np.nan)
    return nominal, observed


def calibration_metrics(y, pred, std, structure=None):
    """Calibration of one label kind.

    Parameters
    ----------
    y, pred, std : array_like, shape (n,)
        Labels, predictive means and predictive standard deviations (same units, std > 0).
    structure : array_like of int, shape (n,), optional
        Structure index of each value, for the per-structure Spearman correlation of RMS σ
        with RMS error (otherwise per value).

    Returns
    -------
    dict
        ``n``, ``mae``, ``rmse``, ``coverage_1sigma``, ``coverage_2sigma`` (fractions),
        ``nll`` (mean Gaussian negative log-likelihood per value, nats, in the units of ``y``),
        ``mean_z2``, ``spearman`` (NaN with fewer than 3 structures), ``mean_std``.
    """
    y = np.asarray(y, dtype=np.float64).ravel()
    pred = np.asarray(pred, dtype=np.float64).ravel()
    std = np.asarray(std, dtype=np.float64).ravel()
    if not (y.shape == pred.shape == std.shape):
        raise InvalidParameterError(
            "The 'y', 'pred' and 'std' arguments of calibration_metrics must have the same "
            f"shape. Got {y.shape}, {pred.shape} and {std.shape} instead.")
    if y.size == 0:
        raise MissingLabelsError("calibration_metrics received no values.")
    if not np.all(std > 0) or not np.all(np.isfinite(std)):
        raise InvalidParameterError(
            "The 'std' argument of calibration_metrics must be finite and > 0. Got values in "
            f"[{np.nanmin(std):.3g}, {np.nanmax(std):.3g}] instead.")
    err = pred - y
    z = err / std
    nll = 0.5 * np.log(2 * np.pi * std ** 2) + 0.5 * z ** 2
    if structure is None:
        s_err, s_std = np.abs(err), std
    else:
        structure = np.asarray(structure, dtype=np.int64).ravel()
        if structure.shape != y.shape:
            raise InvalidParameterError(
                "The 'structure' argument of calibration_metrics must have the shape of 'y'. "
                f"Got {structure.shape} instead of {y.shape}.")
        _, inv = np.unique(structure, return_inverse=True)
        cnt = np.bincount(inv)
        s_err = np.sqrt(np.bincount(inv, err ** 2) / cnt)
        s_std = np.sqrt(np.bincount(inv, std ** 2) / cnt)
    rho = float("nan")
    if s_err.size >= 3 and np.ptp(s_std) > 0 and np.ptp(s_err) > 0:
        rho = float(scipy.stats.spearmanr(s_std, s_err)[0])
    return {"n": int(y.size), "mae": float(np.mean(np.abs(err))),
            "rmse": float(np.sqrt(np.mean(err ** 2))),
            "coverage_1sigma": float(np.mean(np.abs(z) <= 1)),
            "coverage_2sigma": float(np.mean(np.abs(z) <= 2)),
            "nll": float(np.mean(nll)), "mean_z2": float(np.mean(z ** 2)),
            "spearman": rho, "mean_std": float(np.mean(std))}


def collect_uncertainty(model, structures, *, unscaled=False, include_noise=True):
    """Labels, means, σ and structure index of every labelled value of ``structures``.

    Parameters
    ----------
    model : HybridPotential
        Fitted, with a posterior (``uncertainty_`` or a Bayesian regressor).
    structures : list of ase.Atoms
    unscaled : bool, default=False
        Ignore the model's ``uncertainty_scale_`` (used by :func:`recalibrate`).
    include_noise : bool, default=True
        False: the parameter (epistemic) part of σ only (needs a posterior committee,
        ``model.uncertainty_``).

    Returns
    -------
    dict
        kind -> dict with ``y``, ``pred``, ``std``, ``structure`` (ndarrays; energies per atom
        in eV/atom, forces eV/Å flattened components, stress eV/Å³ Voigt components).
    """
    from ..potential import _as_structure_list

    structures = _as_structure_list(structures)
    model._check_fitted()
    if not include_noise and getattr(model, "uncertainty_", None) is None:
        raise InvalidParameterError(
            "collect_uncertainty(include_noise=False) needs a posterior committee on the model "
            "(LinearPosterior(...).fit(model, train).apply(model)).")
    saved = model.__dict__.pop("uncertainty_scale_", None) if unscaled else None
    try:
        out = {k: {"y": [], "pred": [], "std": [], "structure": []} for k in KIND_UNITS}
        for s, atoms in enumerate(structures):
            lab = get_labels(atoms, s)
            if include_noise:
                r = model._evaluate(atoms, forces=lab.forces is not None,
                                    stress=lab.stress is not None, return_std=True, index=s)
            else:
                r = model.uncertainty_.evaluate(
                    model, atoms, forces=lab.forces is not None,
                    stress=lab.stress is not None, include_noise=False,
                    group_name=str(atoms.info.get("config_type", "default")))
            n = len(atoms)
            if lab.energy is not None:
                out["energy"]["y"].append([lab.energy / n])
                out["energy"]["pred"].append([r["energy"] / n])
                out["energy"]["std"].append([r["energy_std"] / n])
                out["energy"]["structure"].append([s])
            if lab.forces is not None:
                out["forces"]["y"].append(lab.forces.ravel())
                out["forces"]["pred"].append(r["forces"].ravel())
                out["forces"]["std"].append(np.asarray(r["forces_std"]).ravel())
                out["forces"]["structure"].append(np.full(3 * n, s))
            if lab.stress is not None and "stress" in r:
                out["stress"]["y"].append(lab.stress)
                out["stress"]["pred"].append(r["stress"])
                out["stress"]["std"].append(r["stress_std"])
                out["stress"]["structure"].append(np.full(6, s))
    finally:
        if saved is not None:
            model.uncertainty_scale_ = saved
    res = {}
    for k, d in out.items():
        if d["y"]:
            res[k] = {name: np.concatenate([np.atleast_1d(np.asarray(v, dtype=np.float64))
                                            for v in vals])
                      for name, vals in d.items()}
            res[k]["structure"] = res[k]["structure"].astype(np.int64)
    return res


def evaluate_uncertainty(model, structures):
    """:func:`calibration_metrics` of every label kind present in ``structures``.

    Returns
    -------
    dict
        kind -> metrics dict (plus ``unit``).
    """
    data = collect_uncertainty(model, structures)
    out = {}
    for k, d in data.items():
        m = calibration_metrics(d["y"], d["pred"], d["std"], d["structure"])
        m["unit"] = KIND_UNITS[k]
        out[k] = m
    return out


def recalibrate(model, structures, *, method="nll"):
    r"""Fit σ scale factors per label kind on validation ``structures`` and store them.

    With the unscaled z-scores ``z`` of a kind:

    - ``method="nll"``: ``s = sqrt(mean(z^2))``, the maximiser of the Gaussian likelihood of
      the scaled predictive, stored in ``model.uncertainty_scale_`` (kind -> s);
    - ``method="coverage"``: ``s = median(|z|) / 0.6745`` (the 50 % central interval is exact;
      robust to heavy tails), stored likewise;
    - ``method="split"`` (needs a posterior committee, ``model.uncertainty_``): separate
      factors on the parameter and noise parts, ``sigma'^2 = a sigma_param^2 + b
      sigma_noise^2``, ``(a, b)`` maximising the Gaussian likelihood of the validation labels.
      This lets the data re-weight the part of σ that varies between environments (the
      parameter part) against the constant noise -- useful because near-noise-free MLIP fits
      give a tiny parameter part.  Stored on the committee (``param_scale``/``noise_scale``),
      and ``model.uncertainty_scale_`` is set to 1.

    Everything is applied to every later σ and saved with the model.  Values whose σ is
    numerically zero (below ``1e-8`` times the median, e.g. components that vanish by
    symmetry in a kind without a noise model) are left out of the fits.

    Parameters
    ----------
    model : HybridPotential
        Fitted, with a posterior.
    structures : list of ase.Atoms
        Labelled validation structures (not the training set).
    method : {"nll", "coverage", "split"}, default="nll"

    Returns
    -------
    dict
        kind -> scale factor (``"split"``: kind -> {"param": sqrt(a), "noise": sqrt(b)}).
    """
    if method not in ("nll", "coverage", "split"):
        raise InvalidParameterError(
            "The 'method' parameter of recalibrate must be one of ['nll', 'coverage', "
            f"'split']. Got {method!r} instead.")
    com = getattr(model, "uncertainty_", None)
    if method == "split":
        if com is None:
            raise InvalidParameterError(
                "recalibrate(method='split') needs a posterior committee on the model "
                "(LinearPosterior(...).fit(model, train).apply(model)); use method='nll' "
                "otherwise.")
        return _recalibrate_split(model, com, structures)
    data = collect_uncertainty(model, structures, unscaled=True)
    if not data:
        raise MissingLabelsError("recalibrate received structures without any label.")
    scale = {}
    for k, d in data.items():
        ok = _informative(d["std"])
        if not ok.any():
            scale[k] = 1.0
            continue
        z = (d["pred"] - d["y"])[ok] / d["std"][ok]
        if method == "nll":
            s = float(np.sqrt(np.mean(z ** 2)))
        else:
            s = float(np.median(np.abs(z)) / scipy.stats.norm.ppf(0.75))
        scale[k] = s if np.isfinite(s) and s > 0 else 1.0
    model.uncertainty_scale_ = scale
    return scale


def _informative(std):
    """Values whose σ is not (numerically) zero: ``std > 1e-8 * median(std > 0)``.

    Components that vanish by symmetry (e.g. shear stress of a cubic crystal without a noise
    model) have σ ~ 0 and would otherwise dominate any fitted scale factor.
    """
    std = np.asarray(std, dtype=np.float64)
    pos = std[std > 0]
    if pos.size == 0:
        return np.zeros(std.shape, dtype=bool)
    return std > 1e-8 * np.median(pos)


def _gauss_nll(var, err):
    return float(np.mean(0.5 * np.log(2 * np.pi * var) + 0.5 * err ** 2 / var))


def _recalibrate_split(model, com, structures):
    import scipy.optimize

    saved = (dict(com.param_scale), dict(com.noise_scale))
    com.param_scale, com.noise_scale = {}, {}
    try:
        total = collect_uncertainty(model, structures, unscaled=True)
        param = collect_uncertainty(model, structures, unscaled=True, include_noise=False)
    except Exception:
        com.param_scale, com.noise_scale = saved
        raise
    if not total:
        com.param_scale, com.noise_scale = saved
        raise MissingLabelsError("recalibrate received structures without any label.")
    out = {}
    for k, d in total.items():
        ok = _informative(d["std"])
        if not ok.any():
            com.param_scale[k] = com.noise_scale[k] = 1.0
            out[k] = {"param": 1.0, "noise": 1.0}
            continue
        err = (d["pred"] - d["y"])[ok]
        vp = param[k]["std"][ok] ** 2
        vn = np.maximum(d["std"][ok] ** 2 - vp, 0.0)
        tiny = 1e-300
        if not np.any(vn > 0):
            a = float(np.mean(err ** 2 / np.maximum(vp, tiny)))
            ab = (a, 1.0)
        elif not np.any(vp > 0):
            ab = (1.0, float(np.mean(err ** 2 / np.maximum(vn, tiny))))
        else:
            a0 = float(np.mean(err ** 2) / np.mean(vp + vn))

            def f(p):
                return _gauss_nll(np.maximum(np.exp(p[0]) * vp + np.exp(p[1]) * vn, tiny), err)

            best = None
            for start in ([np.log(a0), np.log(a0)], [np.log(a0) + 5, np.log(a0) - 1]):
                res = scipy.optimize.minimize(f, start, method="Nelder-Mead",
                                              options={"xatol": 1e-6, "fatol": 1e-10,
                                                       "maxiter": 4000})
                if best is None or res.fun < best.fun:
                    best = res
            ab = (float(np.exp(best.x[0])), float(np.exp(best.x[1])))
        com.param_scale[k] = float(np.sqrt(ab[0]))
        com.noise_scale[k] = float(np.sqrt(ab[1]))
        out[k] = {"param": com.param_scale[k], "noise": com.noise_scale[k]}
    model.uncertainty_scale_ = {k: 1.0 for k in total}
    return out
