"""Descriptor speed on workload W1 (see ../shared/BENCHMARKS.md), against peers in the same run.

W1: ``bulk("Cu", "fcc", a=3.61, cubic=True) * (4, 4, 4)`` (256 atoms), ``rattle(stdev=0.05,
seed=0)``, periodic, cutoff 5.0 Å (about 43 neighbours per atom), one thread.  Every timing is
the median of ``--repeats`` (>= 5) calls after a warm-up call (numba compilation excluded) and
covers the whole public call (validation, neighbour list, kernel), as do the peers' timings.

Measurements (``what``):

- ``values``: ``desc.compute(atoms)``;
- ``values+jacobian``: ``desc.compute(atoms, gradients=True)``;
- ``backward``: ``desc.backward(atoms, dE_dX)`` (adjoint); its peer is our own ``values``
  (target: backward <= 3 x values);
- ``energy+forces``: ``desc.compute(atoms)`` then ``desc.backward(atoms, dE_dX)`` (one
  force evaluation of a model, sharing one neighbour list); its peer is our own ``values``
  (energy alone): the W1 row "adjoint energy+forces vs energy alone" (target <= 3 x).

Every timed call starts without the descriptor's cached neighbour list (``Descriptor``
keeps the last structure's), so it builds its own, as the peers' calls do.

The SNAP rows of W1 (``SNAPBispectrum`` ``values`` against LAMMPS ``compute sna/atom`` and
``energy+forces`` of a linear model against LAMMPS ``pair_style snap``, 2J=8) come from
``benchmarks/snap.py`` and are printed here too (``--only SNAPBispectrum``), with the same keys.

With ``--json`` one line per (measurement, peer)::

    {"descriptor", "what", "us_per_atom", "peer", "peer_us_per_atom", "n_features",
     "ratio", "cpu_us_per_atom", "peer_cpu_us_per_atom", "cpu_ratio"}

``us_per_atom`` / ``peer_us_per_atom`` are median wall times; the ``cpu_*`` fields are the
median CPU time of the process over the same calls (all threads), which is much less
sensitive to other load on a shared machine.

A missing peer gives ``"peer": "<name> not installed"`` and ``null``.  Peers (optional extra
``bench``): featomic (``SoapPowerSpectrum``, same cutoff, ``max_radial = n_max - 1``,
``max_angular = l_max``) and DScribe (``SOAP``, same ``n_max``, ``l_max``; values only: its
periodic derivatives are numerical, ~61 ms/atom).

Adding a descriptor: append a :class:`Case` to :func:`cases` (a name, a factory for ours, and
optionally peer timers ``{what: [(peer name, factory returning a callable(atoms) or None)]}``).

Usage::

    python benchmarks/descriptors.py --json [--only PowerSpectrum] [--repeats 7]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "NUMBA_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
             "RAYON_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from ase.build import bulk  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _jsonl import dumps  # noqa: E402  (strict JSON: NaN / inf as null)

CUTOFF = 5.0
N_MAX = 8
L_MAX = 6


def w1():
    """Workload W1: rattled fcc Cu, 256 atoms."""
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True) * (4, 4, 4)
    atoms.rattle(stdev=0.05, seed=0)
    return atoms


def timings(fn, repeats):
    """Median wall time and median CPU time of this process (s), after one warm-up call."""
    fn()  # warm-up (compilation, caches)
    wall, cpu = [], []
    for _ in range(repeats):
        c0 = time.process_time()
        t0 = time.perf_counter()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return statistics.median(wall), statistics.median(cpu)


def median_time(fn, repeats):
    """Median wall time (s) after one warm-up call."""
    return timings(fn, repeats)[0]


# -- peers: each factory returns a callable(atoms) or None when the package is missing -------
def _featomic_soap(gradients):
    def make():
        try:
            import featomic
        except ImportError:
            return None
        calc = featomic.SoapPowerSpectrum(
            cutoff={"radius": CUTOFF, "smoothing": {"type": "ShiftedCosine", "width": 0.5}},
            density={"type": "Gaussian", "width": 0.3},
            basis={"type": "TensorProduct", "max_angular": L_MAX,
                   "radial": {"type": "Gto", "max_radial": N_MAX - 1}})
        grads = ["positions"] if gradients else None
        return lambda atoms: calc.compute(atoms, gradients=grads)
    return make


def _dscribe_soap():
    try:
        from dscribe.descriptors import SOAP
    except ImportError:
        return None
    soap = SOAP(species=["Cu"], r_cut=CUTOFF, n_max=N_MAX, l_max=L_MAX, sigma=0.3,
                periodic=True, sparse=False)
    return lambda atoms: soap.create(atoms)


def _dscribe_acsf():
    """DScribe ACSF with the G2/G4 grid of our default BP ACSF (its G4 sums j < k only)."""
    try:
        from dscribe.descriptors import ACSF as DScribeACSF
    except ImportError:
        return None
    from hybridpot.descriptors import ACSF

    labels = ACSF(species=["Cu"], r_cut=CUTOFF, angular="bp").feature_labels()
    acsf = DScribeACSF(r_cut=CUTOFF, species=["Cu"], periodic=True,
                       g2_params=[lab[2:] for lab in labels if lab[0] == "radial"],
                       g4_params=[lab[2:] for lab in labels if lab[0] == "bp"])
    return lambda atoms: acsf.create(atoms)


@dataclass
class Case:
    """One descriptor row: ``make()`` builds ours; ``peers[what]`` lists (name, factory)."""

    name: str
    make: object
    peers: dict = field(default_factory=dict)


def cases():
    from hybridpot.descriptors import ACSF, Bispectrum, PowerSpectrum

    out = [
        Case("PowerSpectrum",
             lambda: PowerSpectrum(species=["Cu"], r_cut=CUTOFF, n_max=N_MAX, l_max=L_MAX),
             {"values": [("featomic", _featomic_soap(False)), ("dscribe", _dscribe_soap)],
              "values+jacobian": [("featomic", _featomic_soap(True))]}),
        Case("Bispectrum",
             lambda: Bispectrum(species=["Cu"], r_cut=CUTOFF, n_max=4, l_max=4)),
    ]
    out += [
        Case("ACSF", lambda: ACSF(species=["Cu"], r_cut=CUTOFF)),   # ANI-1x-like defaults
        Case("ACSF-BP", lambda: ACSF(species=["Cu"], r_cut=CUTOFF, angular="bp"),
             {"values": [("dscribe", _dscribe_acsf)]}),
    ]
    # other descriptors (ACSF, SNAPBispectrum, ...) add their Case here
    return out


def _fresh(desc):
    """Drop the descriptor's cached neighbour list (``Descriptor._prepare`` keeps the last
    structure's): the next call builds its own, as a call on a new structure (and the
    peers') does."""
    desc.__dict__.pop("_prepared_memo", None)
    return desc


def run_case(case, atoms, repeats):
    desc = case.make()
    n = len(atoms)
    X = desc.compute(atoms)
    dE_dX = np.random.default_rng(0).normal(size=X.shape)

    def energy_forces():
        _fresh(desc).compute(atoms)
        return desc.backward(atoms, dE_dX)   # reuses the list of compute, as in a force call

    calls = {
        "values": lambda: _fresh(desc).compute(atoms),
        "values+jacobian": lambda: _fresh(desc).compute(atoms, gradients=True),
        "backward": lambda: _fresh(desc).backward(atoms, dE_dX),
        "energy+forces": energy_forces,
    }
    # (wall, cpu) in us/atom; the CPU time of the process is less sensitive to other load
    ours = {what: tuple(x / n * 1e6 for x in timings(fn, repeats))
            for what, fn in calls.items()}
    rows = []
    for what, (us, cpu) in ours.items():
        peers = list(case.peers.get(what, []))
        if what in ("backward", "energy+forces"):
            rows.append({"descriptor": case.name, "what": what, "us_per_atom": us,
                         "peer": f"{case.name} values (self)",
                         "peer_us_per_atom": ours["values"][0], "cpu_us_per_atom": cpu,
                         "peer_cpu_us_per_atom": ours["values"][1]})
            continue
        if not peers:
            rows.append({"descriptor": case.name, "what": what, "us_per_atom": us,
                         "peer": None, "peer_us_per_atom": None, "cpu_us_per_atom": cpu,
                         "peer_cpu_us_per_atom": None})
        for peer_name, factory in peers:
            fn = factory()
            row = {"descriptor": case.name, "what": what, "us_per_atom": us,
                   "peer": peer_name, "peer_us_per_atom": None, "cpu_us_per_atom": cpu,
                   "peer_cpu_us_per_atom": None}
            if fn is None:
                row["peer"] = f"{peer_name} not installed"
            else:
                wall, pcpu = timings(lambda: fn(atoms), repeats)
                row["peer_us_per_atom"] = wall / n * 1e6
                row["peer_cpu_us_per_atom"] = pcpu / n * 1e6
            rows.append(row)
    for row in rows:
        row["n_features"] = desc.n_features
        _ratios(row)
    return rows


def _ratios(row):
    """``row`` with ``ratio`` (wall) and ``cpu_ratio`` of ours to the peer; ``None`` without
    a peer figure (every row has both keys)."""
    for key, ours, peer in (("ratio", "us_per_atom", "peer_us_per_atom"),
                            ("cpu_ratio", "cpu_us_per_atom", "peer_cpu_us_per_atom")):
        row[key] = (row[ours] / row[peer]
                    if row.get(ours) is not None and row.get(peer) else None)
    return row


def _snap_module():
    """``benchmarks/snap.py`` (the SNAP timers against LAMMPS), loaded from this folder."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "bench_snap", Path(__file__).resolve().parent / "snap.py")
    snap = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(snap)
    return snap


def snap_rows(atoms, repeats, steps=5):
    """The W1 SNAP rows of ``benchmarks/snap.py`` (2J=8, cutoff 5 Å) with this script's keys:
    ``values`` against LAMMPS ``compute sna/atom``, ``energy+forces`` (linear model) against
    LAMMPS ``pair_style snap`` (``"<peer> not installed"`` without LAMMPS) and against our own
    ``values`` (W1's "adjoint energy+forces vs energy alone, any descriptor", as for the other
    descriptors)."""
    snap = _snap_module()
    coef = np.concatenate([[-3.0], np.random.default_rng(0).normal(scale=1e-3, size=55)])
    cpu, cpu_lmp = {}, {}
    t_val, t_ef, _ = snap.ours(atoms, coef, repeats, cpu)
    lmp = snap.lammps_times(atoms, coef, steps, repeats, cpu_lmp)
    rows = [{"descriptor": "SNAPBispectrum", "what": "values", "us_per_atom": t_val,
             "peer": "lammps compute sna/atom", "peer_us_per_atom": None},
            {"descriptor": "SNAPBispectrum", "what": "energy+forces", "us_per_atom": t_ef,
             "peer": "lammps pair_style snap", "peer_us_per_atom": None}]
    for k, row in enumerate(rows):
        row["cpu_us_per_atom"] = cpu.get(row["what"])
        row["peer_cpu_us_per_atom"] = None
        row["n_features"] = 55
        if lmp is None:
            row["peer"] += " not installed"
        else:
            row["peer_us_per_atom"] = lmp[k]
            row["peer_cpu_us_per_atom"] = cpu_lmp.get(row["what"])
        _ratios(row)
    rows.append(_ratios({
        "descriptor": "SNAPBispectrum", "what": "energy+forces", "us_per_atom": t_ef,
        "peer": "SNAPBispectrum values (self)", "peer_us_per_atom": t_val,
        "cpu_us_per_atom": cpu.get("energy+forces"), "peer_cpu_us_per_atom": cpu.get("values"),
        "n_features": 55}))
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls (>= 5)")
    all_cases = [*cases(), "SNAPBispectrum"]
    names = [c if isinstance(c, str) else c.name for c in all_cases]
    parser.add_argument("--only", default=None, choices=names, metavar="DESCRIPTOR",
                        help=f"run only this descriptor ({', '.join(names)})")
    args = parser.parse_args(argv)
    repeats = max(5, args.repeats)
    atoms = w1()
    for case, name in zip(all_cases, names):
        if args.only and name != args.only:
            continue
        rows = snap_rows(atoms, repeats) if isinstance(case, str) else \
            run_case(case, atoms, repeats)
        for row in rows:
            if args.json:
                print(dumps(row), flush=True)
            else:
                cpu = "-" if row["cpu_ratio"] is None else f"{row['cpu_ratio']:.2f}"
                peer = (f"{row['peer']}: {row['peer_us_per_atom']:.1f} us/atom, ratio "
                        f"{row['ratio']:.2f} (cpu {cpu})"
                        if row["ratio"] is not None else str(row["peer"]))
                print(f"{row['descriptor']:>14s} {row['what']:>16s} "
                      f"{row['us_per_atom']:9.1f} us/atom   [{peer}]", flush=True)


if __name__ == "__main__":
    main()
