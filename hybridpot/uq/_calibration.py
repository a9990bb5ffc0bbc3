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
           "recalibrate", "calibration_curve", "apply_recalibration"]

KIND_UNITS = {"energy": "eV/atom", "forces": "eV/Å", "stress": "eV/Å³"}

#: values of the ``method`` parameter of :func:`recalibrate`
METHODS = ("nll", "coverage", "split", "heteroscedastic", "heteroscedastic_coverage")

#: central coverages of the ±1σ and ±2σ Gaussian intervals
GAUSS_1SIGMA = float(2 * scipy.stats.norm.cdf(1.0) - 1)
GAUSS_2SIGMA = float(2 * scipy.stats.norm.cdf(2.0) - 1)

#: relative weights of the ±1σ and ±2σ coverage errors in the balancing factor of
#: ``method="heteroscedastic_coverage"`` (the W4 tolerances, 5 % and 3 %)
COVERAGE_TOLERANCES = (0.05, 0.03)

#: format version of the ``uncertainty_recalibration_`` state saved with the model
RECALIBRATION_VERSION = 2
#: versions read: 1 (before the GP noise split: no 'regressor_noise' key, read as False)
READABLE_RECALIBRATION_VERSIONS = (1, 2)

#: bounds of the exponent gamma of the parameter part of the heteroscedastic model
GAMMA_BOUNDS = (0.02, 1.0)


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
    nominal, observed : ndarray, shape (n_levels,)
        Nominal coverages and the fraction of ``|z|`` inside each central interval (NaN
        for an empty ``z``).

    Raises
    ------
    hybridpot.InvalidParameterError
        For ``levels`` outside (0, 1) or a ``z`` with NaN.
    """
    z = np.abs(np.asarray(z, dtype=np.float64))
    nominal = np.r_[np.arange(0.05, 0.96, 0.05), 0.99] if levels is None \
        else np.atleast_1d(np.asarray(levels, dtype=np.float64))
    if levels is not None and (nominal.ndim != 1 or not nominal.size
                               or not np.all((nominal > 0) & (nominal < 1))):
        raise InvalidParameterError(
            "The 'levels' argument of calibration_curve must be a non-empty 1-D sequence of "
            f"nominal coverages in (0, 1). Got {levels!r} instead.")
    if np.isnan(z).any():
        raise InvalidParameterError(
            "The 'z' argument of calibration_curve must not contain NaN.")
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

    Raises
    ------
    hybridpot.InvalidParameterError
        For arrays of different shapes, non-finite ``y`` / ``pred``, or ``std`` not finite
        and > 0.
    hybridpot.MissingLabelsError
        For empty arrays.

    Examples
    --------
    >>> from hybridpot.uq import calibration_metrics
    >>> m = calibration_metrics([0.0, 1.0, 2.0, 3.0], [0.05, 0.85, 2.15, 2.75], [0.1] * 4)
    >>> m["coverage_1sigma"], m["coverage_2sigma"], round(m["rmse"], 4)  # |z| = .5 1.5 1.5 2.5
    (0.25, 0.75, 0.1658)
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
    for name, v in (("y", y), ("pred", pred)):
        bad = np.flatnonzero(~np.isfinite(v))
        if bad.size:
            raise InvalidParameterError(
                f"The '{name}' argument of calibration_metrics must be finite. Got "
                f"{bad.size} NaN or inf value(s), first at index {bad[0]}, instead.")
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


def check_model_with_uncertainty(model, owner):
    """Raise a typed error naming ``owner`` unless ``model`` is a fitted HybridPotential with a
    predictive σ (a posterior committee ``uncertainty_`` or a regressor with a posterior)."""
    from ..potential import _check_model_argument
    from ..regression._linear import _LinearBase

    _check_model_argument(model, owner, " with a posterior")
    reg = model.regressor_
    if not model._has_posterior():
        hint = ("give this linear model a posterior with "
                "LinearPosterior(...).fit(model, train).apply(model), or fit it with "
                "BayesianLinearRegressor" if isinstance(reg, _LinearBase) else
                "fit with BayesianLinearRegressor, SparseGPRegressor, "
                "NeuralNetworkRegressor(n_models > 1) or an EnsembleRegressor")
        raise InvalidParameterError(
            f"The 'model' argument of {owner} needs a predictive σ, but its regressor "
            f"{type(reg).__name__} has no posterior; {hint}.")


def collect_uncertainty(model, structures, *, unscaled=False, include_noise=True,
                        _owner="collect_uncertainty"):
    """Labels, means, σ and structure index of every labelled value of ``structures``.

    Parameters
    ----------
    model : HybridPotential
        Fitted, with a posterior (``uncertainty_`` or a Bayesian regressor).
    structures : list of ase.Atoms
        Labelled structures (any subset of kinds per structure).
    unscaled : bool, default=False
        Ignore the model's ``uncertainty_scale_`` and ``uncertainty_recalibration_`` (used by
        :func:`recalibrate`).
    include_noise : bool, default=True
        False: the parameter (epistemic) part of σ only (needs a posterior committee,
        ``model.uncertainty_``).

    Returns
    -------
    dict
        kind -> dict with ``y``, ``pred``, ``std``, ``structure`` (ndarrays; energies per atom
        in eV/atom, forces eV/Å flattened components, stress eV/Å³ Voigt components).

    Raises
    ------
    hybridpot.InvalidParameterError
        For a model without a posterior, ``include_noise=False`` without a posterior
        committee, or ``structures`` that are not ase.Atoms.
    hybridpot.NotFittedError
        For a model that is not fitted.
    """
    from ..potential import _as_structure_list

    check_model_with_uncertainty(model, _owner)
    structures = _as_structure_list(structures)
    if not include_noise and getattr(model, "uncertainty_", None) is None:
        raise InvalidParameterError(
            "collect_uncertainty(include_noise=False) needs a posterior committee on the model "
            "(LinearPosterior(...).fit(model, train).apply(model)).")
    saved = model.__dict__.pop("uncertainty_scale_", None) if unscaled else None
    saved_rec = model.__dict__.pop("uncertainty_recalibration_", None) if unscaled else None
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
        if saved_rec is not None:
            model.uncertainty_recalibration_ = saved_rec
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

    Parameters
    ----------
    model : HybridPotential
        Fitted, with a posterior (``uncertainty_`` or a Bayesian regressor).
    structures : iterable of ase.Atoms
        Labelled evaluation structures (energy eV, forces eV/Å, stress eV/Å³).

    Returns
    -------
    dict
        kind -> metrics dict of :func:`calibration_metrics` plus ``unit`` (energy eV/atom,
        forces eV/Å, stress eV/Å³), for the kinds present.

    Raises
    ------
    hybridpot.InvalidParameterError
        For a model without a posterior or ``structures`` that are not ase.Atoms.
    hybridpot.NotFittedError
        For a model that is not fitted.
    """
    data = collect_uncertainty(model, structures, _owner="evaluate_uncertainty")
    out = {}
    for k, d in data.items():
        m = calibration_metrics(d["y"], d["pred"], d["std"], d["structure"])
        m["unit"] = KIND_UNITS[k]
        out[k] = m
    return out


def recalibrate(model, structures, *, method="nll"):
    r"""Fit a recalibration of σ on validation ``structures`` and store it on the model.

    With the unscaled z-scores ``z`` of a label kind:

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
    - ``method="heteroscedastic"``: a variance model per kind with more informative terms,

      .. math::

          \sigma'^2 = k^2 \Big[a\,\sigma_\mathrm{param}^2 + a_\mathrm{pow}\,
              \sigma_\mathrm{ref}^2 \big(\sigma_\mathrm{param}/\sigma_\mathrm{ref}\big)^{2\gamma}
              + b\,\sigma_\mathrm{noise}^2 + c\,|\mathbf F_i|^2 + d\Big],

      ``sigma_param`` the parameter (epistemic) part of σ, ``sigma_noise`` the noise part
      (per config group if the posterior has one noise per group), ``|F_i|`` the predicted
      force on the atom of a force component (forces only; ``c = 0`` for energy and stress),
      ``d`` a floor used only when the model has no noise part (``b = 0``) and
      ``sigma_ref`` the RMS ``sigma_param`` of the validation values.  σ is thus a monotone
      function of ``sigma_param`` (a linear plus a power-law part, ``gamma`` in
      [0.02, 1]) plus noise and force terms: force errors of near-equilibrium cells (tiny
      ``sigma_param``) and of hot MD frames differ by 3 orders of magnitude, which one
      linear factor cannot follow.  ``a, a_pow, gamma, b, c, d >= 0`` maximise the Gaussian
      likelihood of the validation labels (L-BFGS-B, analytic gradient, 18-36 starts);
      ``k = 1``.  Without a posterior committee, ``sigma_noise`` is the fitted observation
      noise that the regressor's own σ includes (a sparse GP's noise per label kind, the
      mean-square member noise of an :class:`~hybridpot.regression.EnsembleRegressor` of
      them) and ``sigma_param`` the rest; for other regressors ``sigma_param`` is the total
      σ and ``sigma_noise = 0``.
    - ``method="heteroscedastic_coverage"``: the same variance model, then the factor ``k``
      of each kind minimises ``max(|c_1 - 68.27 %| / 5 %, |c_2 - 95.45 %| / 3 %)``, ``c_1,
      c_2`` the validation coverages of ±1σ and ±2σ (the middle of the optimal range of
      ``k``).  The variance model fixes the relative σ of values; ``k`` balances the two
      coverages when the z-scores are heavy tailed (where no Gaussian scale gets both).

    Out of domain: the recalibration is fitted where ``structures`` are and calibrates σ
    there only.  Fitted on in-domain cells it can make σ *less* honest elsewhere (EMT
    Cu-Ni, 12 training cells rattled by 0.06 Å, 6 in-domain validation cells; ratio of the
    force MAE to the mean per-atom σ, 1 is honest): a ``SparseGPRegressor`` whose raw σ
    was 2.2x too large in domain and within 2x of honest on hotter, compressed or
    Ni-richer cells became 1.9-4.3x overconfident there after ``"nll"`` (x0.43) and
    2.3-5.0x after ``"heteroscedastic"`` (its ``gamma < 1`` shrinks the largest σ); a
    ``BayesianLinearRegressor`` already calibrated in domain went from 4.8-6.6x to
    5.6-7.9x overconfident with ``"heteroscedastic"``.  For σ-driven sampling include
    structures like the ones to be flagged (e.g. the first labels of an active-learning
    run; :class:`~hybridpot.learn.ActiveLearner` ``recalibration=``) in ``structures``.

    Each call replaces the previous recalibration: the heteroscedastic methods store
    ``model.uncertainty_recalibration_`` (plain floats, saved with the model) and drop
    ``uncertainty_scale_``; the other methods drop ``uncertainty_recalibration_``; all but
    ``"split"`` reset the committee's ``param_scale``/``noise_scale``.
    Everything is applied to every later energy, forces and stress σ (also the ASE
    calculator's ``energy_std``/``forces_std``/``stress_std``) and saved with the model.
    Values whose σ is numerically zero (below ``1e-8`` times the median, e.g. components
    that vanish by symmetry in a kind without a noise model) are left out of the fits.

    Parameters
    ----------
    model : HybridPotential
        Fitted, with a posterior.
    structures : iterable of ase.Atoms
        Labelled validation structures (not the training set); any iterable (e.g.
        ``ase.io.iread``), read into a list once.
    method : str, default="nll"
        One of ``"nll"``, ``"coverage"``, ``"split"``, ``"heteroscedastic"``,
        ``"heteroscedastic_coverage"`` (described above).

    Returns
    -------
    dict
        kind -> scale factor (``"split"``: kind -> {"param": sqrt(a), "noise": sqrt(b)};
        heteroscedastic: kind -> {"a", "a_pow", "gamma", "b", "c", "d", "ref", "k"}).

    Raises
    ------
    hybridpot.InvalidParameterError
        For an unknown ``method``, a model without a posterior, or ``"split"`` without a
        posterior committee.
    hybridpot.NotFittedError
        For a model that is not fitted.
    hybridpot.MissingLabelsError
        When ``structures`` carry no usable label of any kind.
    """
    if not isinstance(method, str) or method not in METHODS:
        raise InvalidParameterError(
            f"The 'method' parameter of recalibrate must be one of {list(METHODS)}. "
            f"Got {method!r} instead.")
    from ..potential import _as_structure_list

    check_model_with_uncertainty(model, "recalibrate")
    # a list once: the split and heteroscedastic methods read the structures twice
    structures = _as_structure_list(structures)
    com = getattr(model, "uncertainty_", None)
    if method in ("heteroscedastic", "heteroscedastic_coverage"):
        return _recalibrate_heteroscedastic(model, com, structures,
                                            balance=method == "heteroscedastic_coverage")
    if method == "split":
        if com is None:
            from ..regression._linear import _LinearBase

            if isinstance(model.regressor_, _LinearBase):
                raise InvalidParameterError(
                    "recalibrate(method='split') needs a posterior committee on the model "
                    "(LinearPosterior(...).fit(model, train).apply(model)); use method='nll' "
                    "otherwise.")
            raise InvalidParameterError(
                "recalibrate(method='split') needs a posterior committee, which only linear "
                "models get (LinearPosterior); for this "
                f"{type(model.regressor_).__name__} use method='nll', 'coverage' or "
                "'heteroscedastic'.")
        out = _recalibrate_split(model, com, structures)
        model.__dict__.pop("uncertainty_recalibration_", None)
        return out
    # a previous split recalibration is replaced, not stacked
    saved_scales = None if com is None else (dict(com.param_scale), dict(com.noise_scale))
    if com is not None:
        com.param_scale, com.noise_scale = {}, {}
    try:
        data = collect_uncertainty(model, structures, unscaled=True)
        if not data:
            raise MissingLabelsError("recalibrate received structures without any label.")
    except Exception:
        if com is not None:
            com.param_scale, com.noise_scale = saved_scales
        raise
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
    model.__dict__.pop("uncertainty_recalibration_", None)
    return scale


# ---------------------------------------------------------------- heteroscedastic model
_PARAM_KEYS = ("a", "a_pow", "gamma", "b", "c", "d", "ref", "k")


def _regressor_noise_std(model, kind):
    """The noise std of ``kind`` that the regressor's own predictive σ includes
    (``_predictive_noise_std``: sparse GPs and ensembles of them), or None."""
    get = getattr(getattr(model, "regressor_", None), "_predictive_noise_std", None)
    return None if get is None else get(kind)


def _noise_std(com, kind, group_name, n_atoms, model=None):
    """Noise part of the σ of one value of ``kind`` (inflated, unscaled).

    With a committee, mirrors :meth:`Committee.evaluate`: total energies get ``n_atoms``
    times the per-atom noise; the kind's inflation multiplies the variance.  Without one,
    the noise the regressor's own predictive σ includes (``_predictive_noise_std``: sparse
    GPs and ensembles of them), else 0.
    """
    if com is None:
        sd = _regressor_noise_std(model, kind)
        if sd is None:
            return 0.0
    else:
        sd = np.sqrt(com._noise(kind, group_name) * com.inflation.get(kind, 1.0))
    return float(sd * n_atoms) if kind == "energy" else float(sd)


def _hetero_var(p, vp, vn, f2):
    """Variance of the heteroscedastic model (without ``k^2``); ``p`` a parameter dict."""
    ref2 = p["ref"] ** 2
    rel = np.divide(vp, ref2, out=np.zeros_like(vp), where=ref2 > 0)
    return (p["a"] * vp + p["a_pow"] * ref2 * rel ** p["gamma"] + p["b"] * vn
            + p["c"] * f2 + p["d"])


def _variance_objective(err, vp, vn, f2, use_force):
    """Negative log-likelihood of :func:`_hetero_var` in unconstrained coordinates ``x``.

    Returns
    -------
    nll : callable
        ``x -> (mean NLL up to a constant, gradient)``.
    unpack : callable
        ``x -> parameter dict`` of :func:`_hetero_var`.
    n_x : int
        Number of coordinates.
    has_param, use_force : bool
        Whether the parameter-σ and force terms are fitted.
    """
    e2 = err ** 2
    scale = float(np.mean(e2))
    if not scale > 0:
        scale = 1.0
    ref = float(np.sqrt(np.mean(vp)))
    has_param = ref > 0
    # the noise term is b * vn when the model has one (a constant vn is a floor already),
    # otherwise a floor d
    has_noise = bool(np.any(vn > 0))
    mean_vn = float(np.mean(vn)) if has_noise else 1.0
    mean_f2 = float(np.mean(f2)) if use_force else 1.0
    use_force = use_force and mean_f2 > 0
    lo, hi = GAMMA_BOUNDS

    def unpack(x):
        p = {"a": 0.0, "a_pow": 0.0, "gamma": 1.0, "b": 0.0, "c": 0.0, "d": 0.0, "ref": ref,
             "k": 1.0}
        i = 0
        if has_param:
            p["a"] = float(np.exp(x[0])) * scale / ref ** 2
            p["a_pow"] = float(np.exp(x[1])) * scale / ref ** 2
            p["gamma"] = float(lo + (hi - lo) / (1.0 + np.exp(-x[2])))
            i = 3
        if has_noise:
            p["b"] = float(np.exp(x[i])) * scale / mean_vn
        else:
            p["d"] = float(np.exp(x[i])) * scale
        i += 1
        if use_force:
            p["c"] = float(np.exp(x[i])) * scale / mean_f2
        return p

    tiny = 1e-300 * scale
    # scaled variables: the model variance over `scale` is linear in exp(x)
    vps = vp / ref ** 2 if has_param else vp
    vns, f2s, e2s = vn / mean_vn, f2 / mean_f2, e2 / scale
    with np.errstate(divide="ignore"):
        log_r = np.where(vps > 0, np.log(np.where(vps > 0, vps, 1.0)), 0.0)

    def nll(x):
        """Mean negative log-likelihood (up to a constant) and its gradient in ``x``."""
        terms = []
        i = 0
        if has_param:
            sg = 1.0 / (1.0 + np.exp(-x[2]))
            gamma = lo + (hi - lo) * sg
            power = np.exp(gamma * log_r) * (vps > 0)
            terms.append(np.exp(x[0]) * vps)
            tp = np.exp(x[1]) * power
            terms.append(tp)
            terms.append(tp * log_r * (hi - lo) * sg * (1.0 - sg))
            i = 3
        terms.append(np.exp(x[i]) * (vns if has_noise else 1.0))
        if use_force:
            terms.append(np.exp(x[i + 1]) * f2s)
        if has_param:
            v = terms[0] + terms[1] + sum(terms[3:])
            dv = [terms[0], terms[1], terms[2]] + terms[3:]
        else:
            v = sum(terms)
            dv = terms
        v = np.maximum(v, tiny / scale)
        f = float(np.mean(0.5 * np.log(v) + 0.5 * e2s / v))
        w = 0.5 * (1.0 / v - e2s / v ** 2) / v.size
        grad = np.array([float(np.sum(w * np.broadcast_to(d, v.shape))) for d in dv])
        return f, grad

    n_x = (3 if has_param else 0) + 1 + int(use_force)
    return nll, unpack, n_x, has_param, use_force


def _fit_variance_model(err, vp, vn, f2, use_force):
    """Maximum-likelihood parameters of :func:`_hetero_var` (see :func:`recalibrate`).

    L-BFGS-B with the analytic gradient from 18 (36 with the force term) starting points.
    """
    import scipy.optimize

    nll, unpack, n_x, has_param, use_force = _variance_objective(err, vp, vn, f2, use_force)
    bounds = [(-300.0, 300.0)] * n_x
    if has_param:
        bounds[2] = (-40.0, 40.0)
    starts = []
    for pw in ([(np.log(1e-2), 2.0), (np.log(1e-2), 0.0), (np.log(1e-5), -2.0),
                (np.log(1e-2), -2.0), (np.log(1e-5), 0.0), (np.log(1e-5), 2.0)]
               if has_param else [None]):
        for n0 in (np.log(0.5), np.log(1e-3), np.log(1e-6)):
            x = ([np.log(0.5), pw[0], pw[1]] if has_param else []) + [n0]
            for c0 in ((np.log(1e-3), np.log(1e-8)) if use_force else (None,)):
                starts.append(x + ([c0] if use_force else []))
    best = None
    for x0 in starts:
        res = scipy.optimize.minimize(nll, np.asarray(x0, dtype=np.float64), jac=True,
                                      method="L-BFGS-B", bounds=bounds,
                                      options={"maxiter": 2000, "ftol": 1e-13, "gtol": 1e-9})
        if best is None or res.fun < best.fun:
            best = res
    return unpack(best.x)


def _balance_factor(err, std):
    """``k`` minimising the larger relative coverage error at ±1σ and ±2σ (see recalibrate)."""
    z = np.sort(np.abs(err) / std)
    ks = np.exp(np.linspace(-3.0, 3.0, 6001))
    c1 = np.searchsorted(z, ks, side="right") / z.size
    c2 = np.searchsorted(z, 2 * ks, side="right") / z.size
    t1, t2 = COVERAGE_TOLERANCES
    loss = np.maximum(np.abs(c1 - GAUSS_1SIGMA) / t1, np.abs(c2 - GAUSS_2SIGMA) / t2)
    best = np.flatnonzero(loss <= loss.min() + 1e-12)
    return float(ks[best[best.size // 2]])


def _recalibrate_heteroscedastic(model, com, structures, balance):
    saved_scales = None if com is None else (dict(com.param_scale), dict(com.noise_scale))
    if com is not None:
        com.param_scale, com.noise_scale = {}, {}
    try:
        data = collect_uncertainty(model, structures, unscaled=True)
    except Exception:
        if com is not None:
            com.param_scale, com.noise_scale = saved_scales
        raise
    if not data:
        if com is not None:
            com.param_scale, com.noise_scale = saved_scales
        raise MissingLabelsError("recalibrate received structures without any label.")
    from ..potential import _as_structure_list

    structures = _as_structure_list(structures)
    # without a committee: split off the noise the regressor's own σ includes (sparse GP)
    reg_noise = com is None and _regressor_noise_std(model, "forces") is not None
    sizes = np.array([len(a) for a in structures])
    groups = [str(a.info.get("config_type", "default")) for a in structures]
    params = {}
    for kind, d in data.items():
        st = d["structure"]
        # noise part of every value, in the units of collect_uncertainty (energy per atom)
        sn = np.array([_noise_std(com, kind, groups[s], sizes[s], model if reg_noise else None)
                       for s in range(len(sizes))])
        if kind == "energy":
            sn = sn / sizes
        vn = sn[st] ** 2
        vt = d["std"] ** 2
        vp = np.maximum(vt - vn, 0.0)
        f2 = np.zeros_like(vt)
        if kind == "forces":
            f2 = np.repeat(np.sum(d["pred"].reshape(-1, 3) ** 2, axis=1), 3)
        err = d["pred"] - d["y"]
        ok = _informative(d["std"])
        if not ok.any():
            params[kind] = {"a": 1.0, "a_pow": 0.0, "gamma": 1.0, "b": 1.0, "c": 0.0,
                            "d": 0.0, "ref": 1.0, "k": 1.0}
            continue
        p = _fit_variance_model(err[ok], vp[ok], vn[ok], f2[ok], kind == "forces")
        if balance:
            std = np.sqrt(np.maximum(_hetero_var(p, vp[ok], vn[ok], f2[ok]), 1e-300))
            p["k"] = _balance_factor(err[ok], std)
        params[kind] = p
    model.__dict__.pop("uncertainty_scale_", None)
    model.uncertainty_recalibration_ = {
        "version": RECALIBRATION_VERSION,
        "method": "heteroscedastic_coverage" if balance else "heteroscedastic",
        "kinds": params, "regressor_noise": reg_noise}
    return {k: dict(v) for k, v in params.items()}


def check_recalibration_state(doc):
    """Validate a stored ``uncertainty_recalibration_`` dict; return a clean copy.

    Raises
    ------
    ModelFormatError
        Unknown version, missing or non-finite parameters.
    """
    from .._exceptions import ModelFormatError

    if not isinstance(doc, dict):
        raise ModelFormatError("The 'uncertainty_recalibration' entry of a model file must be "
                               f"a dict. Got {type(doc).__name__} instead.")
    version = doc.get("version")
    if isinstance(version, bool) or version not in READABLE_RECALIBRATION_VERSIONS:
        raise ModelFormatError(
            "The 'uncertainty_recalibration' entry of a model file has version "
            f"{doc.get('version')!r}; this hybridpot reads versions "
            f"{list(READABLE_RECALIBRATION_VERSIONS)}.")
    reg_noise = doc.get("regressor_noise", False)
    if not isinstance(reg_noise, bool):
        raise ModelFormatError(
            "The 'regressor_noise' flag of the 'uncertainty_recalibration' entry of a model "
            f"file must be true or false. Got {reg_noise!r} instead.")
    method = doc.get("method")
    if method not in ("heteroscedastic", "heteroscedastic_coverage"):
        raise ModelFormatError(
            "The 'uncertainty_recalibration' entry of a model file has method "
            f"{method!r}; allowed: ['heteroscedastic', 'heteroscedastic_coverage'].")
    kinds = doc.get("kinds")
    if not isinstance(kinds, dict):
        raise ModelFormatError("The 'uncertainty_recalibration' entry of a model file has no "
                               "'kinds' dict.")
    out = {}
    for kind, p in kinds.items():
        if kind not in KIND_UNITS or not isinstance(p, dict) or \
                any(key not in p for key in _PARAM_KEYS):
            raise ModelFormatError(
                f"The 'uncertainty_recalibration' entry of a model file has a corrupt kind "
                f"{kind!r}: need a dict with keys {list(_PARAM_KEYS)} for a kind in "
                f"{list(KIND_UNITS)}.")
        try:
            vals = {key: float(p[key]) for key in _PARAM_KEYS}
        except (TypeError, ValueError) as exc:
            raise ModelFormatError(
                f"The 'uncertainty_recalibration' parameters of {kind!r} are not numbers: "
                f"{exc}.") from None
        lo, hi = GAMMA_BOUNDS
        if not all(np.isfinite(v) and v >= 0 for v in vals.values()) or \
                not vals["k"] > 0 or not lo <= vals["gamma"] <= hi:
            # k = 0 would make every σ zero (infinite z-scores)
            raise ModelFormatError(
                f"The 'uncertainty_recalibration' parameters of {kind!r} must be finite and "
                f">= 0, with k > 0 and gamma in [{lo}, {hi}]. Got {vals} instead.")
        out[str(kind)] = vals
    return {"version": RECALIBRATION_VERSION, "method": method, "kinds": out,
            "regressor_noise": reg_noise}


def apply_recalibration(model, atoms, result):
    """Recalibrated σ of one :meth:`HybridPotential._evaluate` result (in place; returned).

    Applies the heteroscedastic model stored in ``model.uncertainty_recalibration_`` (see
    :func:`recalibrate`) to ``energy_std`` (eV), ``forces_std`` (eV/Å, shape (n_atoms, 3))
    and ``stress_std`` (eV/Å³) of ``result`` (the raw σ from the committee or regressor).

    Parameters
    ----------
    model : HybridPotential
        Fitted; without ``uncertainty_recalibration_`` ``result`` is returned unchanged.
    atoms : ase.Atoms
        The structure of ``result`` (its size and ``info["config_type"]`` noise group).
    result : dict
        Raw ``_evaluate(..., return_std=True, recalibrated=False)`` output: ``energy_std``
        float (eV), ``forces_std`` (n_atoms, 3) with ``forces`` (n_atoms, 3) (eV/Å) and
        ``stress_std`` (6,) (eV/Å³), each optional.

    Returns
    -------
    dict
        ``result`` with the σ entries replaced.
    """
    rec = getattr(model, "uncertainty_recalibration_", None)
    if not rec:
        return result
    com = getattr(model, "uncertainty_", None)
    group = str(atoms.info.get("config_type", "default"))
    n = len(atoms)
    for kind, key in (("energy", "energy_std"), ("forces", "forces_std"),
                      ("stress", "stress_std")):
        p = rec["kinds"].get(kind)
        if p is None or key not in result:
            continue
        std = np.asarray(result[key], dtype=np.float64)
        sn = _noise_std(com, kind, group, n, model if rec.get("regressor_noise") else None)
        if kind == "energy":
            # fitted per atom
            std, sn = std / n, sn / n
        vn = np.full(std.shape, sn ** 2)
        vp = np.maximum(std ** 2 - vn, 0.0)
        f2 = np.zeros(std.shape)
        if kind == "forces" and p["c"] > 0:
            f2 = np.broadcast_to(np.sum(np.asarray(result["forces"]) ** 2, axis=1)[:, None],
                                 std.shape)
        new = p["k"] * np.sqrt(np.maximum(_hetero_var(p, vp, vn, f2), 0.0))
        if kind == "energy":
            result[key] = float(new * n)
        else:
            result[key] = new
    return result


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
