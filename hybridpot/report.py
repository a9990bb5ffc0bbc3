"""Model reports: a self-contained HTML page (PNGs embedded) plus the PNG files and metrics JSON.

:func:`write_report` evaluates a fitted model on labelled structures and draws parity plots of
energy (eV/atom), force components (eV/Å) and stress components (GPa), coloured by the
predictive σ when the model has a posterior, and the error-versus-σ plot.  matplotlib is an
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

__all__ = ["collect_predictions", "write_report"]

EV_A3_TO_GPA = 160.21766208


def collect_predictions(model, structures):
    """Labels and predictions of ``structures`` as flat arrays.

    Returns
    -------
    dict
        ``energy`` / ``energy_pred`` / ``energy_std`` (eV/atom, per structure with an energy
        label), ``forces`` / ``forces_pred`` / ``forces_std`` (eV/Å, flattened components),
        ``stress`` / ``stress_pred`` / ``stress_std`` (GPa, flattened Voigt components).
        ``*_std`` are None when the model has no posterior.
    """
    has_std = bool(getattr(model.regressor_, "has_uncertainty", False))
    out = {k: [] for k in ("energy", "energy_pred", "energy_std", "forces", "forces_pred",
                           "forces_std", "stress", "stress_pred", "stress_std")}
    for k, atoms in enumerate(structures):
        lab = get_labels(atoms, k)
        r = model._evaluate(atoms, forces=lab.forces is not None,
                            stress=lab.stress is not None, return_std=has_std, index=k)
        n = len(atoms)
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
    return res


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


def _png(fig):
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
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
    extra_figures : dict of str to bytes, optional
        More PNGs (file name → PNG bytes) to include (e.g. MCMC traces).
    extra_metrics : dict, optional
        Merged into ``metrics.json`` and shown as JSON.

    Returns
    -------
    Path
        The HTML file.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    p = collect_predictions(model, structures)
    metrics = _metrics(p)
    if extra_metrics:
        metrics.update(extra_metrics)
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=1))
    try:
        figs = _plots(p)
        note = ""
    except ImportError:
        figs = {}
        note = "<p>matplotlib is not installed (pip install hybridpot[plot]): no plots.</p>"
    figs.update(extra_figures or {})
    for name, data in figs.items():
        (folder / name).write_bytes(data)
    rows = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{v['n']}</td><td>{v['mae']:.4g}</td>"
        f"<td>{v['rmse']:.4g}</td><td>{html.escape(v['unit'])}</td>"
        f"<td>{v.get('coverage_1sigma', float('nan')):.3f}</td>"
        f"<td>{v.get('coverage_2sigma', float('nan')):.3f}</td></tr>"
        for k, v in metrics.items() if isinstance(v, dict) and "mae" in v)
    imgs = "".join(
        f'<figure><img src="data:image/png;base64,{base64.b64encode(d).decode()}" '
        f'alt="{html.escape(n)}"><figcaption><a href="{html.escape(n)}">{html.escape(n)}'
        f"</a></figcaption></figure>" for n, d in figs.items())
    extra = ""
    if extra_metrics:
        extra = f"<pre>{html.escape(json.dumps(extra_metrics, indent=1))}</pre>"
    doc = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
           f"</title><style>body{{font-family:sans-serif;margin:2em}}figure{{display:inline-block;"
           f"margin:0.5em}}td,th{{padding:0.2em 0.8em;text-align:right}}</style></head><body>"
           f"<h1>{html.escape(title)}</h1><p>{len(structures)} structures; model "
           f"{html.escape(type(model.regressor_).__name__)} on "
           f"{html.escape(type(model.descriptor).__name__)}.</p>{note}"
           f"<table><tr><th>kind</th><th>n</th><th>MAE</th><th>RMSE</th><th>unit</th>"
           f"<th>±1σ</th><th>±2σ</th></tr>{rows}</table>{extra}{imgs}</body></html>")
    out = folder / "report.html"
    out.write_text(doc, encoding="utf-8")
    return out
