"""Summary and report of an active-learning run directory (on-the-fly runs included)."""

from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np

from .._exceptions import InvalidParameterError

__all__ = ["run_summary", "write_run_report"]

_FRAME_KEYS = ("al_id", "al_iteration", "md_step", "md_temperature", "sigma_max",
               "sigma_threshold", "oracle_seconds")


def _plain(v):
    """A JSON value of an ``atoms.info`` entry (numpy scalars as Python numbers)."""
    if isinstance(v, np.generic):
        return v.item()
    return v


def run_summary(run_dir):
    """What an :class:`~hybridpot.learn.ActiveLearner` run directory holds.

    Parameters
    ----------
    run_dir : str or path-like
        The run's folder (``state.json``, ``labels.extxyz``, ``failures.jsonl``,
        ``proposals/trajectory_<t>.extxyz`` of MD samplers).

    Returns
    -------
    dict
        ``history`` (the learner's ``history_``: σ before / after each refit in eV/Å,
        validation force MAE, ...), ``stop_reason``, ``labels`` (one dict per labelled
        structure in file order: ``al_id``, ``al_iteration``, ``n_atoms``, ``max_force``
        (eV/Å) and, for MD frames, ``md_step``, ``md_temperature`` (K), ``sigma_max``,
        ``sigma_threshold`` (eV/Å) and ``oracle_seconds``), ``n_failures``,
        ``oracle_seconds`` (s, labels and failures) and ``trajectory`` (the checked MD
        frames of every iteration: ``iteration``, ``md_step``, ``md_temperature``,
        ``sigma_max``, ``sigma_threshold``; empty for other samplers).

    Raises
    ------
    hybridpot.InvalidParameterError
        When ``run_dir`` is not a run directory (no ``state.json``).
    """
    from ase.io import read

    from ._learner import FAILURES_FILE, LABELS_FILE, PROPOSALS_DIR, STATE_FILE, read_labels

    d = Path(run_dir)
    if not (d / STATE_FILE).is_file():
        raise InvalidParameterError(
            f"The 'run_dir' argument of run_summary must be an active-learning run directory "
            f"(with {STATE_FILE}). Got {str(d)!r}, which has none.")
    try:
        state = json.loads((d / STATE_FILE).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InvalidParameterError(
            f"The 'run_dir' argument of run_summary has a corrupt {STATE_FILE}: {e}.") from e
    labels = []
    for a in read_labels(d / LABELS_FILE):
        row = {k: _plain(a.info[k]) for k in _FRAME_KEYS if k in a.info}
        row["n_atoms"] = len(a)
        try:
            row["max_force"] = float(np.max(np.linalg.norm(a.get_forces(), axis=1)))
        except Exception:  # a label without forces
            pass
        labels.append(row)
    fails, fail_s = 0, 0.0
    if (d / FAILURES_FILE).is_file():
        for line in (d / FAILURES_FILE).read_text().splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(rec, dict):
                fails += 1
                sec = rec.get("seconds")
                fail_s += float(sec) if isinstance(sec, (int, float)) else 0.0
    traj = []
    for p in sorted((d / PROPOSALS_DIR).glob("trajectory_*.extxyz")):
        it = int(p.stem.split("_")[1])
        for a in read(p, ":", format="extxyz"):
            traj.append({"iteration": it, **{k: _plain(a.info[k]) for k in (
                "md_step", "md_temperature", "sigma_max", "sigma_threshold") if k in a.info}})
    return {"history": list(state.get("history", [])), "stop_reason": state.get("stop_reason"),
            "labels": labels, "n_failures": fails,
            "oracle_seconds": float(sum(r.get("oracle_seconds", 0.0) for r in labels)
                                    + fail_s),
            "trajectory": traj}


def _plots(summary):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from ..report import _png

    figs = {}
    traj = [r for r in summary["trajectory"] if "md_step" in r and "sigma_max" in r]
    lab = [r for r in summary["labels"] if "md_step" in r and "sigma_max" in r]
    if traj:
        fig, ax = plt.subplots(figsize=(6.4, 3.6))
        x = np.array([r["md_step"] for r in traj])
        ax.semilogy(x, [r["sigma_max"] for r in traj], ".", ms=3, label="checked frames")
        if all("sigma_threshold" in r for r in traj):
            ax.step(x, [r["sigma_threshold"] for r in traj], "k-", lw=0.8, where="post",
                    label="threshold")
        if lab:
            ax.semilogy([r["md_step"] for r in lab], [r["sigma_max"] for r in lab], "rv",
                        ms=6, label="labelled")
        ax.set_xlabel("MD step")
        ax.set_ylabel("largest force σ (eV/Å)")
        ax.legend(fontsize=8)
        if all("md_temperature" in r for r in traj):
            ax2 = ax.twinx()
            ax2.plot(x, [r["md_temperature"] for r in traj], color="0.7", lw=0.8)
            ax2.set_ylabel("temperature (K)", color="0.5")
        figs["sigma_trajectory.png"] = _png(fig)
        plt.close(fig)
    hist = summary["history"]
    if hist:
        fig, ax = plt.subplots(figsize=(6.4, 3.6))
        it = [h["iteration"] for h in hist]
        for key, style, name in (("selected_sigma_max", "o-",
                                  "force σ of the proposals (RMS; before)"),
                                 ("selected_sigma_after", "s--", "after the refit"),
                                 ("validation_force_mae", "^-", "validation force MAE")):
            y = [h.get(key) for h in hist]
            if any(v is not None for v in y):
                ax.semilogy(it, [np.nan if v is None else v for v in y], style, ms=4,
                            label=name)
        ax.set_xlabel("iteration")
        ax.set_ylabel("eV/Å")
        ax.legend(fontsize=8)
        figs["history.png"] = _png(fig)
        plt.close(fig)
    return figs


def write_run_report(run_dir, folder):
    """HTML report of an active-learning run: σ along the MD trajectory with the threshold
    and the labelled frames, σ before / after each refit and the validation force MAE per
    iteration, and a table of the labels.

    Parameters
    ----------
    run_dir : str or path-like
        The run's folder (see :func:`run_summary`).
    folder : str or path-like
        Output folder (created): ``report.html``, ``run.json`` (the :func:`run_summary`) and
        the PNGs (matplotlib, extra ``plot``; without it the page has the tables only).

    Returns
    -------
    pathlib.Path
        The ``report.html`` written.

    Raises
    ------
    hybridpot.InvalidParameterError
        For a ``run_dir`` that is not a run directory or a ``folder`` that is a file.
    """
    from ..report import _folder, _write_figures, _write_page

    summary = run_summary(run_dir)
    folder = _folder(folder, "write_run_report")
    (folder / "run.json").write_text(json.dumps(summary, indent=1))
    figs, note = _write_figures(folder, lambda: _plots(summary))
    cols = ("al_id", "al_iteration", "n_atoms", "md_step", "md_temperature", "sigma_max",
            "sigma_threshold", "max_force", "oracle_seconds")

    def cell(v):
        return f"{v:.4g}" if isinstance(v, float) else html.escape(str(v))

    rows = "".join("<tr>" + "".join(f"<td>{cell(r[c]) if c in r else ''}</td>" for c in cols)
                   + "</tr>" for r in summary["labels"])
    table = ("<table><tr>" + "".join(f"<th>{c}</th>" for c in cols) + f"</tr>{rows}</table>")
    intro = (f"<p>{len(summary['labels'])} labels, {summary['n_failures']} failures, "
             f"{len(summary['history'])} iterations, oracle time "
             f"{summary['oracle_seconds']:.4g} s; stopped: "
             f"{html.escape(str(summary['stop_reason']))}.</p>{note}")
    return _write_page(folder, f"active-learning run {Path(run_dir).name}", intro + table,
                       figs)
