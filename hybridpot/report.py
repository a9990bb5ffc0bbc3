"""Model reports: a self-contained HTML page (PNGs embedded) plus the PNG files and metrics JSON.

:func:`write_report` evaluates a fitted model on labelled structures and draws parity plots of
energy (eV/atom), force components (eV/Å) and stress components (GPa), coloured by the
predictive σ when the model has a posterior, and the error-versus-σ plot.
:func:`write_uncertainty_report` adds the calibration curve, z-score histograms, the
calibration metrics table (coverage, NLL, Spearman) and, given a
:class:`~hybridpot.uq.LinearPosterior`, the chain traces and a corner plot of ``theta``
(``corner`` is used when installed, else a matplotlib pair plot).  matplotlib is an
optional dependency (extra ``plot``); without it the report holds the metrics table only and
says so.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

import numpy as np

from ._labels import get_labels

__all__ = ["collect_predictions", "error_table", "format_error_table", "write_report",
           "write_uncertainty_report"]

EV_A3_TO_GPA = 160.21766208


def collect_predictions(model, structures):
    """Labels and predictions of ``structures`` as flat arrays.

    Parameters
    ----------
    model : HybridPotential
        Fitted.
    structures : list of ase.Atoms (or one Atoms)
        Labelled structures (any subset of energy, forces, stress per structure).

    Returns
    -------
    dict
        ``energy`` / ``energy_pred`` / ``energy_std`` (eV/atom, per structure with an energy
        label), ``forces`` / ``forces_pred`` / ``forces_std`` (eV/Å, flattened components),
        ``stress`` / ``stress_pred`` / ``stress_std`` (GPa, flattened Voigt components).
        ``*_std`` are None when the model has no posterior.  Each value is a 1-D array
        (empty for a kind no structure carries).  ``energy_group`` / ``forces_group`` /
        ``stress_group``: the ``config_type`` of each entry (str; ``"default"`` without one).

    Raises
    ------
    hybridpot.InvalidParameterError
        For a ``model`` that is not a HybridPotential or ``structures`` that are not a
        non-empty list of ase.Atoms.
    hybridpot.NotFittedError
        For a model that is not fitted.
    """
    structures = _check_inputs(model, structures, "collect_predictions")
    has_std = model._has_posterior()
    out = {k: [] for k in ("energy", "energy_pred", "energy_std", "forces", "forces_pred",
                           "forces_std", "stress", "stress_pred", "stress_std")}
    groups = {"energy": [], "forces": [], "stress": []}
    for k, atoms in enumerate(structures):
        lab = get_labels(atoms, k)
        r = model._evaluate(atoms, forces=lab.forces is not None,
                            stress=lab.stress is not None, return_std=has_std, index=k)
        n = len(atoms)
        g = str(atoms.info.get("config_type", "default"))
        if lab.energy is not None:
            groups["energy"].append(g)
        if lab.forces is not None:
            groups["forces"] += [g] * lab.forces.size
        if lab.stress is not None and "stress" in r:
            groups["stress"] += [g] * np.size(lab.stress)
        if lab.energy is not None:
            out["energy"].append(lab.energy / n)
            out["energy_pred"].append(r["energy"] / n)
            if has_std:
                out["energy_std"].append(r["energy_std"] / n)
        if lab.forces is not None:
            out["forces"].append(lab.forces.ravel())
            out["forces_pred"].append(r["forces"].ravel())
            if has_std:
                out["forces_std"].append(r["forces_std"].ravel())
        if lab.stress is not None and "stress" in r:
            out["stress"].append(lab.stress * EV_A3_TO_GPA)
            out["stress_pred"].append(r["stress"] * EV_A3_TO_GPA)
            if has_std:
                out["stress_std"].append(r["stress_std"] * EV_A3_TO_GPA)
    res = {}
    for k, v in out.items():
        if not v:
            res[k] = None if k.endswith("_std") or not v else np.array([])
            continue
        res[k] = np.concatenate([np.atleast_1d(np.asarray(x, float)) for x in v])
    for k in ("energy", "forces", "stress"):
        if res[k] is None:
            res[k] = np.array([])
            res[k + "_pred"] = np.array([])
        res[k + "_group"] = np.array(groups[k], dtype=str)
    return res


def _check_inputs(model, structures, owner):
    """A fitted HybridPotential and a non-empty list of Atoms, or a typed error naming them."""
    from ._validation import check_structure_list
    from .potential import _check_model_argument

    _check_model_argument(model, owner)
    return check_structure_list(structures, f"The 'structures' argument of {owner}")


def _metrics(p):
    out = {}
    for kind, unit in (("energy", "eV/atom"), ("forces", "eV/Å"), ("stress", "GPa")):
        y, f = p[kind], p[kind + "_pred"]
        if y.size == 0:
            continue
        err = f - y
        row = {"unit": unit, "n": int(y.size), "mae": float(np.mean(np.abs(err))),
               "rmse": float(np.sqrt(np.mean(err ** 2)))}
        s = p.get(kind + "_std")
        if s is not None and s.size == y.size:
            z = err / np.maximum(s, 1e-300)
            row["coverage_1sigma"] = float(np.mean(np.abs(z) <= 1))
            row["coverage_2sigma"] = float(np.mean(np.abs(z) <= 2))
            row["mean_std"] = float(np.mean(s))
        out[kind] = row
    return out


def error_table(model, structures, *, group_key="config_type"):
    """Errors per config group (ACEpotentials' / FitSNAP's error table) and over all.

    Parameters
    ----------
    model : HybridPotential
        Fitted.
    structures : list of ase.Atoms (or one Atoms)
        Labelled structures (any subset of energy, forces, stress per structure).
    group_key : str, default="config_type"
        ``atoms.info`` key naming a structure's group (structures without it: ``"default"``).

    Returns
    -------
    dict
        Group name -> ``{"n_structures", "n_atoms", "energy_rmse", "energy_mae"`` (eV/atom),
        ``"force_rmse", "force_mae"`` (eV/Å, per component), ``"stress_rmse", "stress_mae"``
        (eV/Å³, per Voigt component)``}`` (NaN for a kind no structure of the group
        carries), in order of first appearance, then ``"all"`` (every structure; the same
        numbers as :meth:`~hybridpot.HybridPotential.evaluate`).  A group that is itself
        named ``"all"`` is reported as ``"all (<group_key>)"``.

    Raises
    ------
    hybridpot.InvalidParameterError
        For a ``model`` that is not a HybridPotential, ``structures`` that are not a
        non-empty list of ase.Atoms, or a ``group_key`` that is not a string.
    hybridpot.NotFittedError
        For a model that is not fitted.
    """
    from ._exceptions import InvalidParameterError
    from .potential import _error_stats, _label_errors

    structures = _check_inputs(model, structures, "error_table")
    if not isinstance(group_key, str):
        raise InvalidParameterError(
            f"The 'group_key' argument of error_table must be a str (an atoms.info key such "
            f"as 'config_type'). Got {group_key!r} instead.")
    errors = _label_errors(structures,
                           model._evaluate_many(structures, forces=True, stress=True))
    groups = {}   # group -> indices of its structures
    for k, a in enumerate(structures):
        g = str(a.info.get(group_key, "default"))
        if g == "all":   # the key of the overall row: keep the group apart from it
            g = f"all ({group_key})"
        groups.setdefault(g, []).append(k)

    def row(idx):
        out = {"n_structures": len(idx), "n_atoms": sum(len(structures[k]) for k in idx)}
        for kind in ("energy", "force", "stress"):
            mae, rmse = _error_stats([errors[k] for k in idx], kind)
            out[f"{kind}_rmse"], out[f"{kind}_mae"] = rmse, mae
        return out

    table = {g: row(idx) for g, idx in groups.items()}
    table["all"] = row(range(len(structures)))
    return table


def format_error_table(table, title=""):
    """Text of an :func:`error_table`: energies meV/atom, forces meV/Å, stress GPa.

    Parameters
    ----------
    table : dict
        Output of :func:`error_table`.
    title : str, default=""
        Printed above the table.

    Returns
    -------
    str
        One line per group (``-`` for a kind the group has no labels of).
    """
    w = max([16] + [len(str(g)) for g in table])   # full names (a cut could merge two)
    head = (f"{'config_type':<{w}} {'n':>5} {'E rmse':>8} {'E mae':>8} {'F rmse':>8} "
            f"{'F mae':>8} {'S rmse':>8} {'S mae':>8}")
    units = (f"{'':<{w}} {'':>5} {'meV/atom':>17} {'meV/Å':>17} {'GPa':>17}")
    lines = [title] if title else []
    lines += [head, units]
    for g, m in table.items():
        vals = []
        for key, f in (("energy_rmse", 1e3), ("energy_mae", 1e3), ("force_rmse", 1e3),
                       ("force_mae", 1e3), ("stress_rmse", EV_A3_TO_GPA),
                       ("stress_mae", EV_A3_TO_GPA)):
            v = m[key]
            vals.append(f"{f * v:8.3f}" if np.isfinite(v) else f"{'-':>8}")
        lines.append(f"{g:<{w}} {m['n_structures']:>5} " + " ".join(vals))
    return "\n".join(lines)


def _group_metrics(p):
    """Per config_type RMSE / MAE of every kind (units of :func:`_metrics`), or None with one
    group."""
    names = []
    for kind in ("energy", "forces", "stress"):
        for g in p[kind + "_group"]:
            if g not in names:
                names.append(g)
    if len(names) < 2:
        return None
    out = {}
    for g in names:
        row = {}
        for kind in ("energy", "forces", "stress"):
            m = p[kind + "_group"] == g
            if not m.any():
                continue
            err = p[kind + "_pred"][m] - p[kind][m]
            row[kind] = {"n": int(m.sum()), "mae": float(np.mean(np.abs(err))),
                         "rmse": float(np.sqrt(np.mean(err ** 2)))}
        out[g] = row
    return out


def _png(fig, dpi=110):
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return buf.getvalue()


def _plots(p):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    figs = {}
    for kind, unit in (("energy", "eV/atom"), ("forces", "eV/Å"), ("stress", "GPa")):
        y, f = p[kind], p[kind + "_pred"]
        if y.size == 0:
            continue
        s = p.get(kind + "_std")
        fig, ax = plt.subplots(figsize=(4.2, 4))
        if s is not None and s.size == y.size:
            sc = ax.scatter(y, f, c=s, s=6, cmap="viridis")
            fig.colorbar(sc, ax=ax, label=f"σ ({unit})")
        else:
            ax.scatter(y, f, s=6)
        lo, hi = float(min(y.min(), f.min())), float(max(y.max(), f.max()))
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
        ax.set_xlabel(f"reference {kind} ({unit})")
        ax.set_ylabel(f"predicted {kind} ({unit})")
        ax.set_title(f"{kind} parity")
        figs[f"parity_{kind}.png"] = _png(fig)
        plt.close(fig)
        if s is not None and s.size == y.size:
            fig, ax = plt.subplots(figsize=(4.2, 4))
            ax.loglog(np.maximum(s, 1e-12), np.maximum(np.abs(f - y), 1e-12), ".", ms=3)
            lim = [max(min(s.min(), np.abs(f - y).min()), 1e-12),
                   max(s.max(), np.abs(f - y).max())]
            ax.plot(lim, lim, "k--", lw=0.8, label="|error| = σ")
            ax.set_xlabel(f"predicted σ ({unit})")
            ax.set_ylabel(f"|error| ({unit})")
            ax.legend()
            ax.set_title(f"{kind}: error vs σ")
            figs[f"error_vs_sigma_{kind}.png"] = _png(fig)
            plt.close(fig)
    return figs


def write_report(model, structures, folder, *, title="hybridpot report", extra_figures=None,
                 extra_metrics=None):
    """Evaluate ``model`` on ``structures`` and write ``folder/report.html`` with its PNGs.

    Parameters
    ----------
    model : HybridPotential
        Fitted.
    structures : list of ase.Atoms
        Labelled structures to evaluate on.
    folder : str or Path
        Created if missing; receives ``report.html``, ``metrics.json`` and ``*.png``.
        ``metrics.json`` has per kind ``n``, ``mae``, ``rmse`` and ``unit`` (energy eV/atom,
        forces eV/Å, stress GPa) and, with a posterior, ``coverage_1sigma``,
        ``coverage_2sigma`` and ``mean_std``; with several config types also
        ``by_config_type`` (config_type -> kind -> ``n``, ``mae``, ``rmse``), shown as a
        table in the page.
    title : str, default="hybridpot report"
        Title of the HTML page.
    extra_figures : dict of str to bytes, optional
        More PNGs (file name → PNG bytes) to include (e.g. MCMC traces).
    extra_metrics : dict, optional
        Merged into ``metrics.json`` and shown as JSON.

    Returns
    -------
    Path
        The HTML file.

    Raises
    ------
    hybridpot.InvalidParameterError
        For a bad ``model``, ``structures``, ``folder``, ``extra_figures`` or
        ``extra_metrics``.
    hybridpot.NotFittedError
        For a model that is not fitted.
    """
    structures = _check_inputs(model, structures, "write_report")
    _check_extras(extra_figures, extra_metrics, "write_report")
    p = collect_predictions(model, structures)
    folder = _folder(folder, "write_report")
    metrics = _metrics(p)
    by_group = _group_metrics(p)
    if by_group is not None:
        metrics["by_config_type"] = by_group
    if extra_metrics:
        metrics.update(extra_metrics)
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=1))
    figs, note = _write_figures(folder, lambda: _plots(p), extra_figures)
    rows = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{v['n']}</td><td>{v['mae']:.4g}</td>"
        f"<td>{v['rmse']:.4g}</td><td>{html.escape(v['unit'])}</td>"
        f"<td>{v.get('coverage_1sigma', float('nan')):.3f}</td>"
        f"<td>{v.get('coverage_2sigma', float('nan')):.3f}</td></tr>"
        for k, v in metrics.items() if isinstance(v, dict) and "mae" in v)
    table = (f"<table><tr><th>kind</th><th>n</th><th>MAE</th><th>RMSE</th><th>unit</th>"
             f"<th>±1σ</th><th>±2σ</th></tr>{rows}</table>")
    if by_group is not None:   # ACEpotentials' / FitSNAP's error table per config_type
        def cell(d, kind, key):
            return f"{d[kind][key]:.4g}" if kind in d else "-"

        grows = "".join(
            f"<tr><td>{html.escape(g)}</td>"
            + "".join(f"<td>{cell(d, k, key)}</td>" for k in ("energy", "forces", "stress")
                      for key in ("rmse", "mae")) + "</tr>"
            for g, d in by_group.items())
        table += ("<p>Errors by config_type (energy eV/atom, forces eV/Å, stress GPa)</p>"
                  "<table><tr><th>config_type</th><th>E RMSE</th><th>E MAE</th>"
                  "<th>F RMSE</th><th>F MAE</th><th>S RMSE</th><th>S MAE</th></tr>"
                  f"{grows}</table>")
    extra = ""
    if extra_metrics:
        extra = f"<pre>{html.escape(json.dumps(extra_metrics, indent=1))}</pre>"
    intro = (f"<p>{len(structures)} structures; model "
             f"{html.escape(type(model.regressor_).__name__)} on "
             f"{html.escape(type(model.descriptor).__name__)}.</p>{note}")
    return _write_page(folder, title, intro + table + extra, figs)


def _check_extras(extra_figures, extra_metrics, owner):
    """Typed errors for ``extra_figures`` (file name -> PNG bytes) and ``extra_metrics``."""
    from ._exceptions import InvalidParameterError

    if extra_figures is not None:
        if not isinstance(extra_figures, dict):
            raise InvalidParameterError(
                f"The 'extra_figures' argument of {owner} must be a dict of file name to PNG "
                f"bytes, e.g. {{'trace.png': png_bytes}}. Got {type(extra_figures).__name__} "
                "instead.")
        for name, data in extra_figures.items():
            if not isinstance(name, str) or not name or Path(name).name != name \
                    or name in (".", ".."):
                raise InvalidParameterError(
                    f"The 'extra_figures' argument of {owner} must have plain file names as "
                    f"keys (written inside the report folder). Got {name!r} instead.")
            if not isinstance(data, (bytes, bytearray)):
                raise InvalidParameterError(
                    f"The 'extra_figures' argument of {owner} must map file names to PNG bytes. "
                    f"Got {type(data).__name__} for {name!r} instead.")
    if extra_metrics is not None:
        if not isinstance(extra_metrics, dict):
            raise InvalidParameterError(
                f"The 'extra_metrics' argument of {owner} must be a dict. Got "
                f"{type(extra_metrics).__name__} instead.")
        try:
            json.dumps(extra_metrics)
        except (TypeError, ValueError) as e:
            raise InvalidParameterError(
                f"The 'extra_metrics' argument of {owner} must be JSON-serialisable: {e}.") \
                from None


def _folder(folder, owner):
    """``Path(folder)``, created; a typed error when it names an existing file."""
    from ._exceptions import InvalidParameterError

    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise InvalidParameterError(
            f"The 'folder' argument of {owner} must be a folder; {str(folder)!r} is a file.")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _write_figures(folder, make, extra=None):
    """The PNGs of ``make()`` (name -> bytes) plus ``extra``, written to ``folder``, and the
    HTML note to show when matplotlib is missing (then only ``extra`` is written)."""
    try:
        figs = make()
        note = ""
    except ImportError:
        figs = {}
        note = "<p>matplotlib is not installed (pip install hybridpot[plot]): no plots.</p>"
    figs.update(extra or {})
    for name, data in figs.items():
        (folder / name).write_bytes(data)
    return figs, note


def _write_page(folder, title, body, figs):
    """``folder/report.html`` with ``body`` and the PNGs ``figs`` embedded (and linked)."""
    imgs = "".join(
        f'<figure><img src="data:image/png;base64,{base64.b64encode(d).decode()}" '
        f'alt="{html.escape(n)}"><figcaption><a href="{html.escape(n)}">{html.escape(n)}'
        f"</a></figcaption></figure>" for n, d in figs.items())
    doc = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
           f"</title><style>body{{font-family:sans-serif;margin:2em}}figure{{display:inline-block;"
           f"margin:0.5em}}td,th{{padding:0.2em 0.8em;text-align:right}}</style></head><body>"
           f"<h1>{html.escape(title)}</h1>{body}{imgs}</body></html>")
    out = folder / "report.html"
    out.write_text(doc, encoding="utf-8")
    return out


# ---------------------------------------------------------------------- uncertainty report
def _calibration_plots(data):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    import scipy.stats

    from .uq import calibration_curve

    figs = {}
    fig, ax = plt.subplots(figsize=(4.2, 4))
    for kind, d in data.items():
        z = (d["pred"] - d["y"]) / np.maximum(d["std"], 1e-300)
        nom, obs = calibration_curve(z)
        ax.plot(nom, obs, "o-", ms=3, label=kind)
    ax.plot([0, 1], [0, 1], "k--", lw=0.8, label="ideal")
    ax.set_xlabel("nominal coverage of the central interval")
    ax.set_ylabel("observed coverage")
    ax.set_title("calibration curve")
    ax.legend()
    figs["calibration_curve.png"] = _png(fig)
    plt.close(fig)
    for kind, d in data.items():
        z = (d["pred"] - d["y"]) / np.maximum(d["std"], 1e-300)
        fig, ax = plt.subplots(figsize=(4.2, 4))
        lim = max(4.0, float(np.percentile(np.abs(z), 99.5)))
        ax.hist(np.clip(z, -lim, lim), bins=60, range=(-lim, lim), density=True, alpha=0.7,
                label="z = (pred - ref) / σ")
        x = np.linspace(-lim, lim, 200)
        ax.plot(x, scipy.stats.norm.pdf(x), "k-", lw=1, label="N(0, 1)")
        ax.set_xlabel("z-score")
        ax.set_ylabel("density")
        ax.set_title(f"{kind}: z-scores")
        ax.legend(fontsize=8)
        figs[f"zscore_{kind}.png"] = _png(fig)
        plt.close(fig)
    return figs


def _chain_plots(posterior):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    chain = posterior.chain_
    names = list(posterior.theta_names_)
    n = chain.shape[-1]
    figs = {}
    # traces of at most 16 walkers, at most ~400 points each (drawing cost)
    stride = max(1, chain.shape[0] // 400)
    steps = np.arange(0, chain.shape[0], stride)
    fig, axes = plt.subplots(n, 1, figsize=(6, 1.0 * n + 0.5), sharex=True, squeeze=False)
    for k in range(n):
        ax = axes[k, 0]
        ax.plot(steps, chain[::stride, :16, k], "k-", alpha=0.2, lw=0.5)
        ax.set_ylabel(names[k], fontsize=7)
    axes[-1, 0].set_xlabel("step")
    fig.suptitle(f"emcee traces (acceptance {posterior.acceptance_fraction_:.2f}, "
                 f"max τ {np.max(posterior.autocorr_time_):.1f} steps)", fontsize=9)
    figs["chain_traces.png"] = _png(fig)
    plt.close(fig)
    flat = chain.reshape(-1, n)
    try:
        import corner  # optional

        fig = corner.corner(flat, labels=names)
    except ImportError:
        fig, axes = plt.subplots(n, n, figsize=(1.3 * n + 1, 1.3 * n + 1), squeeze=False)
        fig.subplots_adjust(wspace=0.05, hspace=0.05)
        for i in range(n):
            for j in range(n):
                ax = axes[i, j]
                if j > i:
                    ax.axis("off")
                    continue
                if i == j:
                    ax.hist(flat[:, i], bins=30, color="k", histtype="step")
                else:
                    h, xe, ye = np.histogram2d(flat[:, j], flat[:, i], bins=30)
                    ax.imshow(h.T, origin="lower", aspect="auto", cmap="Greys",
                              extent=(xe[0], xe[-1], ye[0], ye[-1]))
                if i == n - 1:
                    ax.set_xlabel(names[j], fontsize=7)
                else:
                    ax.set_xticklabels([])
                if j == 0 and i > 0:
                    ax.set_ylabel(names[i], fontsize=7)
                else:
                    ax.set_yticklabels([])
                ax.tick_params(labelsize=6)
    figs["corner.png"] = _png(fig, dpi=80)
    plt.close(fig)
    return figs


def write_uncertainty_report(model, structures, folder, *, posterior=None,
                             title="hybridpot uncertainty report", force=False):
    """Calibration report of a model with a posterior: HTML with embedded PNGs, PNGs, JSON.

    Contents: the calibration metrics table per label kind (MAE, RMSE, ±1σ / ±2σ coverage,
    mean Gaussian NLL, Spearman of per-structure σ with error, mean σ), parity plots of energy
    (eV/atom), forces (eV/Å) and stress (GPa) coloured by σ, error versus σ, the calibration
    curve, z-score histograms and, with ``posterior``, emcee traces and a corner plot of
    ``theta`` with its summary (autocorrelation times, acceptance).

    Parameters
    ----------
    model : HybridPotential
        Fitted, with a posterior (``model.uncertainty_`` from
        :meth:`hybridpot.uq.LinearPosterior.apply`, or a Bayesian regressor).
    structures : list of ase.Atoms
        Labelled evaluation structures.
    folder : str or Path
        Created if missing; receives ``report.html``, ``metrics.json`` and the ``*.png``.
        ``metrics.json`` has per kind the :func:`hybridpot.uq.calibration_metrics` and its
        ``unit`` (energy eV/atom, forces eV/Å, stress GPa, as :func:`write_report`, the
        plots and the command line).
    posterior : hybridpot.uq.LinearPosterior, optional
        A fitted posterior: adds its chain traces, corner plot and θ summary.
    title : str, default="hybridpot uncertainty report"
        Title of the HTML page.
    force : bool, default=False
        Summarise a chain shorter than 50 autocorrelation times (else
        :class:`~hybridpot.uq.ChainTooShortError`).

    Returns
    -------
    Path
        The HTML file.

    Raises
    ------
    hybridpot.InvalidParameterError
        For a model without a posterior, a ``posterior`` that is not a LinearPosterior, or
        bad ``structures`` / ``folder``.
    hybridpot.NotFittedError
        For a model (or posterior) that is not fitted.
    hybridpot.uq.ChainTooShortError
        For a chain shorter than 50 autocorrelation times without ``force``.
    """
    from ._exceptions import InvalidParameterError
    from .uq import LinearPosterior, calibration_metrics, collect_uncertainty
    from .uq._calibration import check_model_with_uncertainty

    structures = _check_inputs(model, structures, "write_uncertainty_report")
    check_model_with_uncertainty(model, "write_uncertainty_report")
    if posterior is not None and not isinstance(posterior, LinearPosterior):
        raise InvalidParameterError(
            "The 'posterior' argument of write_uncertainty_report must be a fitted "
            f"hybridpot.uq.LinearPosterior or None. Got {type(posterior).__name__} instead.")
    # the chain check first: a too-short chain fails before any evaluation or file
    summary = posterior.summary(force=force) if posterior is not None else None
    data = collect_uncertainty(model, structures, _owner="write_uncertainty_report")
    folder = _folder(folder, "write_uncertainty_report")
    units = {"energy": "eV/atom", "forces": "eV/Å", "stress": "GPa"}
    metrics = {}
    for kind, d in data.items():
        f = EV_A3_TO_GPA if kind == "stress" else 1.0   # stress in GPa, as write_report
        m = calibration_metrics(d["y"] * f, d["pred"] * f, d["std"] * f, d["structure"])
        m["unit"] = units[kind]
        metrics[kind] = m
    if summary is not None:
        metrics["posterior"] = summary
    scale = getattr(model, "uncertainty_scale_", None)
    if scale:
        metrics["uncertainty_scale"] = dict(scale)
    recal = getattr(model, "uncertainty_recalibration_", None)
    if recal:
        metrics["uncertainty_recalibration"] = recal
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=1))
    p = {}
    for kind in ("energy", "forces", "stress"):
        f = EV_A3_TO_GPA if kind == "stress" else 1.0
        d = data.get(kind)
        p[kind] = d["y"] * f if d else np.array([])
        p[kind + "_pred"] = d["pred"] * f if d else np.array([])
        p[kind + "_std"] = d["std"] * f if d else None
    def make():
        figs = _plots(p)
        figs.update(_calibration_plots(data))
        if posterior is not None:
            figs.update(_chain_plots(posterior))
        return figs

    figs, note = _write_figures(folder, make)
    cols = ("n", "mae", "rmse", "coverage_1sigma", "coverage_2sigma", "nll", "spearman",
            "mean_std")
    rows = "".join(
        f"<tr><td>{html.escape(k)}</td>" + "".join(
            f"<td>{v[c]}</td>" if c == "n" else f"<td>{v[c]:.4g}</td>" for c in cols)
        + f"<td>{html.escape(v['unit'])}</td></tr>"
        for k, v in metrics.items() if k in units)
    table = ("<table><tr><th>kind</th>" + "".join(f"<th>{c}</th>" for c in cols)
             + "<th>unit</th></tr>" + rows + "</table>"
             "<p>Coverage: fraction of |error| ≤ kσ (Gaussian: 0.683, 0.954); NLL: mean "
             "Gaussian negative log-likelihood per value; Spearman: per-structure RMS σ "
             "against RMS error.</p>")
    post_html = ""
    if summary is not None:
        prow = "".join(
            f"<tr><td>{html.escape(nm)}</td><td>{q50:.4g}</td><td>{lo:.4g}</td>"
            f"<td>{hi:.4g}</td><td>{tau:.1f}</td></tr>"
            for nm, q50, lo, hi, tau in zip(summary["theta_names"], summary["q50"],
                                            summary["q16"], summary["q84"],
                                            summary["autocorr_time"]))
        post_html = (f"<h2>Posterior of θ</h2><p>{summary['n_walkers']} walkers × "
                     f"{summary['n_steps']} steps, acceptance "
                     f"{summary['acceptance_fraction']:.3f}.</p><table><tr><th>θ</th>"
                     f"<th>median</th><th>16 %</th><th>84 %</th><th>τ (steps)</th></tr>"
                     f"{prow}</table>")
    scale_html = ""
    if scale:
        scale_html = ("<p>Recalibration factors of σ: "
                      + ", ".join(f"{html.escape(k)} × {v:.3g}" for k, v in scale.items())
                      + "</p>")
    intro = (f"<p>{len(structures)} structures; model "
             f"{html.escape(type(model.regressor_).__name__)} on "
             f"{html.escape(type(model.descriptor).__name__)}.</p>{note}")
    return _write_page(folder, title, intro + table + scale_html + post_html, figs)
