"""Smoothness / MD review (session 10): continuity through every cutoff and switching radius,
energy conservation of fitted models in NVE, lattice dynamics (acoustic sum rule, relaxed
stress, bulk modulus), and configurations a long MD run reaches (wrapped / far-away atoms,
compressed pairs, an atom leaving all its neighbours)."""
import warnings

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk

import hybridpot.baselines as B
import hybridpot.descriptors as D
import hybridpot.regression as R
from hybridpot import HybridPotential
from hybridpot._exceptions import InvalidStructureError

from conftest import emt_label, skewed_two_element_cell

SP = ["Cu", "Ni"]


def _dimer(r, symbols="CuNi"):
    return Atoms(symbols, positions=[[0.0, 0.0, 0.0], [r, 0.0, 0.0]])


# --- SNAP rmin0: the angular mapping is discontinuous at r = rmin0 -----------------------------

def test_snap_rmin0_descriptor_jumps_at_rmin0_so_closer_pairs_raise():
    d = D.SNAPBispectrum(species=SP, twojmax=2, rcutfac=4.0, rmin0=1.0)
    # just outside rmin0: finite values; the reference (rmin0 = 0) descriptor is unaffected
    X = d.compute(_dimer(1.0 + 1e-7))
    assert np.all(np.isfinite(X))
    # the mapping theta0 = rfac0 pi (r - rmin0) / (R - rmin0) flips sign at rmin0: the
    # half-integer-j components of a dimer jump (16 -> 0 here), so the energy would jump
    for r in (1.0 - 1e-7, 1.0, 0.5):
        with pytest.raises(InvalidStructureError,
                           match=r"atoms 0 and 1 are .* apart, within rmin0 = 1 Å.*discontinuous"):
            d.compute(_dimer(r))
    with pytest.raises(InvalidStructureError, match="within rmin0"):
        d.compute(_dimer(0.9), gradients=True)
    # rmin0 = 0 (the default, every published SNAP model): any distance is fine
    d0 = D.SNAPBispectrum(species=SP, twojmax=2, rcutfac=4.0)
    assert np.all(np.isfinite(d0.compute(_dimer(0.3))))
