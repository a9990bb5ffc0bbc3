"""Shared fixtures: explicit seeds, standard test structures, the mlearn data location."""

import os
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator

ROOT = Path(__file__).resolve().parents[1]
MLEARN_DIR = Path(os.environ.get("MLEARN_DIR", ROOT.parent / "shared" / "data" / "mlearn"))


def pytest_configure(config):
    os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture
def rng():
    """A fresh, explicitly seeded generator per test (never global seeding)."""
    return np.random.default_rng(20261121)


@pytest.fixture(scope="session")
def mlearn_dir():
    """Path to ../shared/data/mlearn; the test is skipped when it is absent."""
    if not (MLEARN_DIR / "extxyz").is_dir():
        pytest.skip(f"mlearn data not found at {MLEARN_DIR}")
    return MLEARN_DIR


@pytest.fixture(scope="session")
def dask_client():
    """A ``dask.distributed`` Client on a 2-worker in-process LocalCluster (skips without
    distributed).  Threads, not processes: fast to start, and the tasks still run through the
    scheduler."""
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=":0") as cluster, \
            distributed.Client(cluster) as client:
        yield client


def skewed_two_element_cell(seed=0, rattle=0.1, symbols=("Cu", "Ni")):
    """Small rattled, periodic, non-orthogonal cell (smaller than typical cutoffs).

    4 atoms, two elements, lattice vectors ~3 Å with ~15° skew: periodic images matter.
    """
    r = np.random.default_rng(seed)
    cell = np.array([[3.6, 0.0, 0.0], [0.9, 3.4, 0.0], [0.5, 0.7, 3.5]])
    frac = np.array([[0.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.5, 0.0, 0.5], [0.0, 0.5, 0.5]])
    pos = frac @ cell + r.normal(0.0, rattle, (4, 3))
    syms = [symbols[0], symbols[1], symbols[0], symbols[1 % len(symbols)]]
    return Atoms(syms, positions=pos, cell=cell, pbc=True)


def rattled_bulk(symbol="Cu", a=3.61, reps=(2, 2, 2), stdev=0.05, seed=0):
    """Rattled fcc supercell (cubic conventional cell times ``reps``)."""
    at = bulk(symbol, "fcc", a=a, cubic=True) * reps
    at.rattle(stdev=stdev, seed=seed)
    return at


def emt_label(atoms, stress=True):
    """Copy of ``atoms`` carrying EMT energy, forces (and stress) as stored labels."""
    at = atoms.copy()
    at.calc = EMT()
    e = at.get_potential_energy()
    f = at.get_forces()
    s = at.get_stress() if stress else None
    res = {"energy": e, "forces": f}
    if s is not None:
        res["stress"] = s
    at.calc = SinglePointCalculator(at, **res)
    return at


def emt_dataset(n, seed, reps=(2, 2, 2), stress=True):
    """``n`` strained, rattled fcc Cu cells labelled with EMT (a cheap stand-in for DFT)."""
    r = np.random.default_rng(seed)
    out = []
    for k in range(n):
        a = 3.61 * (1 + r.uniform(-0.03, 0.03))
        at = bulk("Cu", "fcc", a=a, cubic=True) * reps
        cell = at.cell.array @ (np.eye(3) + r.uniform(-0.02, 0.02, (3, 3)))
        at.set_cell(cell, scale_atoms=True)
        at.rattle(stdev=0.08, seed=int(r.integers(1 << 30)))
        at.info["config_type"] = "strain" if k % 2 else "rattle"
        out.append(emt_label(at, stress=stress))
    return out
