"""Shared fixtures: explicit seeds, standard test structures, the mlearn data location."""

import os
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk

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
