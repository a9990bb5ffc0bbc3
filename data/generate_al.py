#!/usr/bin/env python
"""Generate the shipped aluminium DFT dataset ``data/al_gpaw.extxyz``.

Geometries are proposed cheaply (analytic strains, rattling, random packing,
and Langevin MD with ASE's EMT potential); **every label comes from GPAW**
(PAW, plane-wave mode, PBE).  EMT is used only to propose hot-MD geometries,
never to label anything.

Structures (4-32 atoms, every one periodic in 3-D) and ``atoms.info["config_type"]``:

``bulk_strain``
    fcc Al cells (4-atom conventional, 4-atom 2x2x1 primitive supercell,
    8-atom 2x2x2 primitive supercell, 8/16/32-atom conventional supercells)
    under a random volumetric strain (dV/V uniform in [-8 %, +8 %]) plus a
    random traceless shear strain (components up to +-3 %), then rattled
    (Gaussian, sigma 0.03-0.10 Angstrom).
``vacancy``
    fcc supercells (7, 11, 15, 26, 31 atoms after removing one atom), small
    volumetric strain (+-3 %), rattled.
``surface``
    (111) and (100) slabs with 4-16 atoms and 5 Angstrom of vacuum on each
    side, periodic in all three directions (as in the mlearn data), small
    in-plane strain, rattled.
``random_disorder``
    random triclinic cells (axis ratios 0.8-1.25, angles 60-120 degrees) with
    volume per atom uniform in [14, 22] Angstrom^3 (fcc Al: ~16.5) and atoms
    placed at random with a minimum interatomic distance of 2.2 Angstrom.
``hot_md``
    the last frame of a short independent Langevin MD run with EMT
    (600-1500 K, 1 fs time step, 150-400 steps) started from a
    (slightly strained) fcc supercell.

The structures are produced in *rounds*: each round yields one structure of
every config type, and the rounds get larger (tier "small" 4-7 atoms, then
"medium" 6-12 atoms, then "large" 12-32 atoms).  Hence whatever prefix of the
sequence has been labelled is a balanced set, with the cheapest structures
first.  Structure ``i`` is generated from ``numpy.random.default_rng([seed, i])``
only, so the sequence is deterministic and independent of ``--n-max``.

Resumable: each labelled structure is appended to ``--out`` as one extxyz
frame (written in one call, flushed and fsync-ed) before the next one is
computed.  On restart the file is read, a truncated last frame (from a kill
during the write) is cut away, and structures whose ``struct_id`` is already
present are skipped.  The DFT settings stored in the file must match the
command-line ones, otherwise the script refuses to mix them.

Usage (the command that built the shipped file is in ``data/README.md``)::

    OMP_NUM_THREADS=1 python data/generate_al.py --out data/al_gpaw.extxyz \\
        --n-max 350 --seed 2026 --kpt-density 3.0 --ecut 300

Requires GPAW (``CC=g++ pip install gpaw``, which pulls in ``gpaw-data`` with
the PAW setups) in addition to ASE and numpy.  It is not a dependency of the
hybridpot package: only this script needs it.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time

import numpy as np
from ase import Atoms
from ase.build import bulk, fcc100, fcc111
from ase.calculators.calculator import kptdensity2monkhorstpack
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from ase.geometry import get_distances
from ase.io import read, write
from ase import units

A0 = 4.04  # PBE lattice constant of fcc Al (Angstrom), starting geometry
CONFIG_TYPES = ("bulk_strain", "vacancy", "surface", "random_disorder", "hot_md")
MIN_DIST = 2.2  # Angstrom, minimum distance for random_disorder cells
MIN_DIST_ANY = 2.1  # Angstrom, rejection threshold for every other generator
SMEARING = "marzari-vanderbilt"
SMEARING_WIDTH = 0.1  # eV
# No point-group symmetry (the cells are rattled); time-reversal symmetry
# (k <-> -k) is exact for this spin-paired, scalar-relativistic problem and
# halves the number of k-points at no loss of accuracy.
SYMMETRY = {"point_group": False, "time_reversal": True}


# --------------------------------------------------------------------------
# geometry generators; each takes a numpy Generator and a "variant" string
# --------------------------------------------------------------------------

def _fcc_cell(variant: str) -> Atoms:
    """fcc Al cell named by ``variant`` (e.g. 'conv', 'prim221', 'conv221')."""
    if variant.startswith("conv"):
        base = bulk("Al", "fcc", a=A0, cubic=True)
        rep = variant[4:] or "111"
    elif variant.startswith("prim"):
        base = bulk("Al", "fcc", a=A0)
        rep = variant[4:] or "111"
    else:
        raise ValueError(f"unknown fcc variant {variant!r}")
    return base * tuple(int(c) for c in rep)


def _strain(atoms: Atoms, rng, dv_max: float, shear_max: float) -> Atoms:
    """Apply dV/V ~ U(-dv_max, dv_max) and a random traceless symmetric shear."""
    dv = rng.uniform(-dv_max, dv_max)
    eps = rng.uniform(-shear_max, shear_max, size=(3, 3))
    eps = 0.5 * (eps + eps.T)
    eps -= np.trace(eps) / 3.0 * np.eye(3)
    deform = (1.0 + dv) ** (1.0 / 3.0) * (np.eye(3) + eps)
    atoms.set_cell(atoms.cell.array @ deform.T, scale_atoms=True)
    return atoms


def _min_dist(atoms: Atoms) -> float:
    """Smallest interatomic distance, periodic images (incl. self) included."""
    # self-image distance: shortest non-zero lattice vector among small combos
    cell = atoms.cell.array
    combos = np.array([[i, j, k] for i in (-1, 0, 1) for j in (-1, 0, 1)
                       for k in (-1, 0, 1) if (i, j, k) != (0, 0, 0)])
    self_d = np.linalg.norm(combos @ cell, axis=1).min()
    if len(atoms) < 2:
        return float(self_d)
    _, d = get_distances(atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
    d = d[np.triu_indices(len(atoms), 1)]
    return float(min(self_d, d.min()))


def _rattle(atoms: Atoms, rng, sigma: float) -> Atoms:
    for _ in range(100):
        trial = atoms.copy()
        trial.positions += rng.normal(0.0, sigma, size=trial.positions.shape)
        if _min_dist(trial) >= MIN_DIST_ANY:
            return trial
    raise RuntimeError("could not rattle without creating a short contact")


def gen_bulk_strain(rng, variant: str) -> Atoms:
    atoms = _strain(_fcc_cell(variant), rng, dv_max=0.08, shear_max=0.03)
    return _rattle(atoms, rng, rng.uniform(0.03, 0.10))


def gen_vacancy(rng, variant: str) -> Atoms:
    atoms = _fcc_cell(variant)
    del atoms[int(rng.integers(len(atoms)))]
    atoms = _strain(atoms, rng, dv_max=0.03, shear_max=0.01)
    return _rattle(atoms, rng, rng.uniform(0.03, 0.10))


def gen_surface(rng, variant: str) -> Atoms:
    """variant like '111-1x1x4' or '100-2x2x3'."""
    facet, size = variant.split("-")
    size = tuple(int(c) for c in size.split("x"))
    build = fcc111 if facet == "111" else fcc100
    atoms = build("Al", size=size, a=A0, vacuum=5.0, periodic=True)
    atoms.info.pop("adsorbate_info", None)
    # in-plane strain only (keep the vacuum thickness)
    e = rng.uniform(-0.02, 0.02, size=2)
    deform = np.diag([1.0 + e[0], 1.0 + e[1], 1.0])
    cell = atoms.cell.array.copy()
    cell[:2] = cell[:2] @ deform.T
    atoms.set_cell(cell, scale_atoms=True)
    return _rattle(atoms, rng, rng.uniform(0.03, 0.10))


def _random_cell(rng, volume: float) -> np.ndarray | None:
    lengths = rng.uniform(0.8, 1.25, size=3)
    angles = np.radians(rng.uniform(60.0, 120.0, size=3))
    ca, cb, cg = np.cos(angles)
    sg = np.sin(angles[2])
    arg = 1 - ca**2 - cb**2 - cg**2 + 2 * ca * cb * cg
    if arg < 0.35:  # invalid or very flat cell
        return None
    a, b, c = lengths
    cell = np.array([[a, 0, 0], [b * cg, b * sg, 0],
                     [c * cb, c * (ca - cb * cg) / sg, c * np.sqrt(arg) / sg]])
    cell *= (volume / abs(np.linalg.det(cell))) ** (1.0 / 3.0)
    # every cell height must exceed the minimum distance (self images)
    heights = abs(np.linalg.det(cell)) / np.linalg.norm(
        np.cross(cell[[1, 2, 0]], cell[[2, 0, 1]]), axis=1)
    if heights.min() < 1.2 * MIN_DIST:
        return None
    return cell


def gen_random_disorder(rng, variant: str) -> Atoms:
    """variant like 'n4-6': number of atoms drawn uniformly from 4..6."""
    lo, hi = (int(x) for x in variant[1:].split("-"))
    n = int(rng.integers(lo, hi + 1))
    for _ in range(1000):
        cell = _random_cell(rng, n * rng.uniform(14.0, 22.0))
        if cell is None:
            continue
        atoms = Atoms("Al", cell=cell, pbc=True)
        ok = True
        for _ in range(n - 1):
            for _ in range(500):
                trial = atoms + Atoms("Al", cell=cell, pbc=True,
                                      scaled_positions=[rng.random(3)])
                if _min_dist(trial) >= MIN_DIST:
                    atoms = trial
                    break
            else:
                ok = False
                break
        if ok and len(atoms) == n:
            return atoms
    raise RuntimeError("random packing failed")


def gen_hot_md(rng, variant: str) -> Atoms:
    from ase.constraints import FixCom
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import Stationary, thermalize_momenta

    atoms = _strain(_fcc_cell(variant), rng, dv_max=0.04, shear_max=0.01)
    temp = rng.uniform(600.0, 1500.0)
    atoms.calc = EMT()
    thermalize_momenta(atoms, temperature_K=temp, rng=rng)
    Stationary(atoms)
    atoms.set_constraint(FixCom())
    dyn = Langevin(atoms, 1.0 * units.fs, temperature_K=temp,
                   friction=0.02 / units.fs, fixcm=False, rng=rng)
    dyn.run(int(rng.integers(150, 401)))
    for _ in range(20):  # in the rare case of a close contact, run on
        if _min_dist(atoms) >= MIN_DIST_ANY:
            break
        dyn.run(20)
    else:
        raise RuntimeError("hot MD kept producing close contacts")
    out = Atoms(atoms.get_chemical_symbols(), positions=atoms.get_positions(),
                cell=atoms.cell, pbc=True)
    out.info["md_temperature_K"] = round(float(temp), 1)
    return out


GENERATORS = {
    "bulk_strain": gen_bulk_strain,
    "vacancy": gen_vacancy,
    "surface": gen_surface,
    "random_disorder": gen_random_disorder,
    "hot_md": gen_hot_md,
}

# (number of rounds, {config_type: list of variants cycled through the rounds})
TIERS = [
    (30, {"bulk_strain": ["conv", "prim221"],
          "vacancy": ["prim222"],
          "surface": ["111-1x1x4", "100-1x1x4"],
          "random_disorder": ["n4-6"],
          "hot_md": ["conv", "prim221"]}),
    (25, {"bulk_strain": ["prim222", "conv211"],
          "vacancy": ["prim222", "prim322"],
          "surface": ["111-1x1x6", "100-1x1x6", "111-2x2x3"],
          "random_disorder": ["n7-10"],
          "hot_md": ["prim222", "conv211"]}),
    (20, {"bulk_strain": ["conv221", "conv222", "prim322"],
          "vacancy": ["conv221", "prim333", "conv222"],
          "surface": ["111-2x2x4", "100-2x2x4"],
          "random_disorder": ["n12-16"],
          "hot_md": ["conv221", "prim333"]}),
]


def structure_plan(n_max: int) -> list[tuple[int, str, str]]:
    """The deterministic (struct_id, config_type, variant) sequence."""
    plan = []
    for n_rounds, variants in TIERS:
        for r in range(n_rounds):
            for ct in CONFIG_TYPES:
                v = variants[ct]
                plan.append((len(plan), ct, v[r % len(v)]))
    return plan[:n_max]


def build_structure(seed: int, sid: int, config_type: str, variant: str) -> Atoms:
    rng = np.random.default_rng([seed, sid])
    atoms = GENERATORS[config_type](rng, variant)
    atoms.wrap()
    atoms.info["config_type"] = config_type
    atoms.info["variant"] = variant
    atoms.info["struct_id"] = sid
    atoms.info["gen_seed"] = seed
    return atoms


# --------------------------------------------------------------------------
# DFT labelling
# --------------------------------------------------------------------------

def dft_settings(args) -> dict:
    import gpaw
    import gpaw_data

    return {"dft_code": "GPAW", "dft_version": gpaw.__version__,
            "setups_package": f"gpaw-data {gpaw_data.__version__}",
            "mode": "pw", "xc": "PBE", "ecut_eV": float(args.ecut),
            "kpt_density": float(args.kpt_density), "smearing": SMEARING,
            "smearing_width_eV": SMEARING_WIDTH,
            "symmetry": "time_reversal_only"}


def kpoint_mesh(atoms: Atoms, density: float) -> np.ndarray:
    """Gamma-centred mesh from ``density``; a single k-point across slab vacuum."""
    size = kptdensity2monkhorstpack(atoms, density, even=False)
    if atoms.info.get("config_type") == "surface":
        size[2] = 1  # the slab normal is the third cell vector (vacuum)
    return size


def label(atoms: Atoms, settings: dict) -> Atoms:
    """Run GPAW on ``atoms``; return a copy carrying a SinglePointCalculator."""
    from gpaw import GPAW, PW

    size = kpoint_mesh(atoms, settings["kpt_density"])
    calc = GPAW(mode=PW(settings["ecut_eV"]), xc=settings["xc"],
                kpts={"size": tuple(int(k) for k in size), "gamma": True},
                occupations={"name": SMEARING, "width": SMEARING_WIDTH},
                symmetry=SYMMETRY, txt=None)
    work = atoms.copy()
    work.calc = calc
    t0 = time.time()
    free = work.get_potential_energy(force_consistent=True)
    sigma0 = work.get_potential_energy()
    forces = work.get_forces()
    stress = work.get_stress(voigt=True)
    wall = time.time() - t0

    out = atoms.copy()
    out.info.update(settings)
    out.info["kpts"] = "x".join(str(int(k)) for k in size)
    out.info["energy_sigma0"] = float(sigma0)
    out.info["wall_time_s"] = round(wall, 2)
    out.calc = SinglePointCalculator(out, energy=free, free_energy=free,
                                     forces=forces, stress=stress)
    return out


# --------------------------------------------------------------------------
# resumable extxyz output
# --------------------------------------------------------------------------

def repair_and_read(path: str) -> list[Atoms]:
    """Read complete frames of ``path``; cut a truncated trailing frame."""
    if not os.path.exists(path):
        return []
    with open(path, "rb") as fh:
        lines = fh.read().splitlines(keepends=True)
    pos, offset, good_offset = 0, 0, 0
    while pos < len(lines):
        try:
            nat = int(lines[pos].strip())
        except ValueError:
            break
        end = pos + 2 + nat
        if end > len(lines) or not all(l.endswith(b"\n") for l in lines[pos:end]):
            break
        offset += sum(len(l) for l in lines[pos:end])
        pos, good_offset = end, offset
    if good_offset != sum(len(l) for l in lines):
        print(f"[resume] cutting incomplete trailing frame from {path}",
              file=sys.stderr)
        with open(path, "r+b") as fh:
            fh.truncate(good_offset)
    if good_offset == 0:
        return []
    return read(path, ":", format="extxyz")


def append_frame(path: str, atoms: Atoms) -> None:
    buf = io.StringIO()
    write(buf, atoms, format="extxyz")
    with open(path, "a") as fh:
        fh.write(buf.getvalue())
        fh.flush()
        os.fsync(fh.fileno())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="data/al_gpaw.extxyz",
                   help="extxyz file to append to (default: %(default)s)")
    p.add_argument("--n-max", type=int, default=375,
                   help="number of structures in the plan (default: %(default)s)")
    p.add_argument("--seed", type=int, default=2026,
                   help="seed of the geometry generation (default: %(default)s)")
    p.add_argument("--kpt-density", type=float, default=3.0,
                   help="Monkhorst-Pack k-point density in points per "
                        "Angstrom^-1 (ASE convention, 2*pi included; "
                        "default: %(default)s)")
    p.add_argument("--ecut", type=float, default=300.0,
                   help="plane-wave cutoff in eV (default: %(default)s)")
    p.add_argument("--dry-run", action="store_true",
                   help="only build the geometries and print the plan")
    args = p.parse_args(argv)
    if args.n_max < 1:
        p.error(f"--n-max must be >= 1, got {args.n_max}")
    if args.ecut <= 0 or args.kpt_density <= 0:
        p.error("--ecut and --kpt-density must be positive")

    plan = structure_plan(args.n_max)
    if args.dry_run:
        for sid, ct, var in plan:
            at = build_structure(args.seed, sid, ct, var)
            size = kpoint_mesh(at, args.kpt_density)
            print(sid, ct, var, len(at), "x".join(map(str, size)),
                  f"{_min_dist(at):.2f}")
        return 0

    settings = dft_settings(args)
    done = repair_and_read(args.out)
    for at in done:
        for key in ("ecut_eV", "kpt_density", "xc", "smearing_width_eV"):
            if at.info.get(key) != settings[key]:
                sys.exit(f"{args.out}: struct_id {at.info.get('struct_id')} has "
                         f"{key}={at.info.get(key)!r}, but this run uses "
                         f"{settings[key]!r}; refusing to mix settings")
        if at.info.get("gen_seed") != args.seed:
            sys.exit(f"{args.out}: was generated with seed "
                     f"{at.info.get('gen_seed')}, not {args.seed}")
    done_ids = {int(at.info["struct_id"]) for at in done}
    todo = [t for t in plan if t[0] not in done_ids]
    print(f"[plan] {len(plan)} structures, {len(done_ids)} already labelled, "
          f"{len(todo)} to do", flush=True)

    t_start = time.time()
    for k, (sid, ct, var) in enumerate(todo):
        atoms = build_structure(args.seed, sid, ct, var)
        try:
            labelled = label(atoms, settings)
        except Exception as exc:  # SCF failure etc.: report and go on
            print(f"[fail] {sid} {ct} {var}: {type(exc).__name__}: {exc}",
                  flush=True)
            continue
        append_frame(args.out, labelled)
        e = labelled.get_potential_energy() / len(labelled)
        print(f"[done] {sid:4d} {ct:16s} {var:10s} n={len(labelled):2d} "
              f"kpts={labelled.info['kpts']:7s} E/N={e:9.4f} eV "
              f"t={labelled.info['wall_time_s']:7.1f} s "
              f"total={time.time() - t_start:8.0f} s ({k + 1}/{len(todo)})",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
