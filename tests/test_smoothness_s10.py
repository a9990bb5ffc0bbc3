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


# --- continuity of fitted models through every cutoff / switching radius ----------------------

def _train(n=4):
    r = np.random.default_rng(0)
    out = []
    for k in range(n):
        at = skewed_two_element_cell(seed=100 + k, rattle=0.1)
        at = at * (2, 1, 1) if k % 2 else at
        at.set_cell(at.cell.array * (1 + r.uniform(-0.03, 0.03)), scale_atoms=True)
        out.append(emt_label(at))
    return out


@pytest.fixture(scope="module")
def train():
    return _train()


def _fit(desc, reg, base, train):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # tiny data: ill-conditioned fits may warn
        # fixed reference energies: the trimer / dimer / lone atom compositions differ from
        # the training ones (no composition warning; continuity does not depend on e0)
        return HybridPotential(descriptor=desc, regressor=reg, baseline=base,
                               reference_energies={"Cu": 0.0, "Ni": 0.0}).fit(train)


def _trimer(x):
    """Cu at 0, Ni 2.5 Å along y, Cu moved along x (distance x from atom 0)."""
    return Atoms("CuNiCu", positions=[[0.0, 0.0, 0.0], [0.0, 2.5, 0.0], [x, 0.0, 0.0]])


def _jk(x):
    """Cu at 0, Ni at (-1.2, 0.9, 0) (1.5 Å away), Cu at (x, 0, 0): the Ni-Cu distance
    crosses an angular cutoff while both distances from atom 0 stay inside it."""
    return Atoms("CuNiCu", positions=[[0.0, 0.0, 0.0], [-1.2, 0.9, 0.0], [x, 0.0, 0.0]])


def _ef(calc, atoms):
    atoms.calc = calc
    return atoms.get_potential_energy(), atoms.get_forces()


def _steps(calc, build, x, d=1e-7, h=1e-3):
    """Energy and force steps across ``x`` (a 2d move of the last atom along +x) beyond the
    first-order change, and the jump of the slope dF_x/dx (one-sided, second order)."""
    em, fm = _ef(calc, build(x - d))
    ep, fp = _ef(calc, build(x + d))
    fl = [_ef(calc, build(x - k * h))[1] for k in (1, 2)]
    fr = [_ef(calc, build(x + k * h))[1] for k in (1, 2)]
    dE = abs(ep - em + (fp[-1, 0] + fm[-1, 0]) * d)   # dE/dx = -F_x
    dF = np.abs(fp - fm - (fr[0] - fl[0]) / (2 * h) * 2 * d).max()
    sl = (3 * fm[-1, 0] - 4 * fl[0][-1, 0] + fl[1][-1, 0]) / (2 * h)
    sr = (-3 * fp[-1, 0] + 4 * fr[0][-1, 0] - fr[1][-1, 0]) / (2 * h)
    return dE, dF, abs(sr - sl)


def _acsf(angular, cf):
    return D.ACSF(species=SP, r_cut=4.0, angular=angular, angular_cutoff=3.5,
                  radial_etas=[1.0], radial_shifts=[1.0, 2.5],
                  **({"ani_etas": [1.0], "ani_shifts": [1.5, 2.5], "ani_zetas": [2.0],
                      "ani_theta_shifts": [0.5, 2.0]} if angular == "ani" else
                     {"bp_etas": [0.1], "bp_zetas": [1.0, 2.5]}),
                  cutoff_function=cf)


@pytest.mark.parametrize("angular", ["bp", "g5", "ani"])
@pytest.mark.parametrize("cf", ["cosine", "tanh", "polynomial"])
def test_acsf_model_continuous_through_radial_and_angular_cutoffs(train, angular, cf):
    """Quadratic linear model (the most sensitive: products of features) + LJ: energy and
    forces continuous (C1) at r_c and at the angular cutoff (i-j and, for G4, j-k); the force
    has a kink (second-derivative jump) with the cosine cutoff only."""
    m = _fit(_acsf(angular, cf), R.LinearRegressor(alpha=1e-6, quadratic=True),
             B.LennardJones(epsilon=0.02, sigma=2.3, r_cut=4.5), train)
    calc = m.calculator()
    cases = [(_trimer, 4.0), (_trimer, 3.5), (_jk, np.sqrt(3.5 ** 2 - 0.81) - 1.2)]
    kinks = []
    for build, x in cases:
        dE, dF, dslope = _steps(calc, build, x)
        assert dE < 1e-8 and dF < 1e-6, (build.__name__, x, dE, dF)
        kinks.append(dslope)
    if cf == "cosine":
        assert max(kinks) > 1e-3        # the check sees the cosine cutoff's force kink
    else:
        assert max(kinks) < 1e-3        # tanh^3 / polynomial: f_c'' = 0 at the cutoff


@pytest.mark.parametrize("name", ["PS", "BS", "SNAP"])
@pytest.mark.parametrize("reg", ["quadratic", "gp_dot", "gp_se", "nn"])
def test_so3_snap_models_continuous_when_an_atom_leaves(train, name, reg):
    """An atom leaves all neighbours (trimer -> dimer + isolated atom, and dimer -> two isolated
    atoms) through r_c: energy and forces continuous for every regressor kind."""
    desc = {"PS": lambda: D.PowerSpectrum(species=SP, r_cut=4.0, n_max=3, l_max=2),
            "BS": lambda: D.Bispectrum(species=SP, r_cut=4.0, n_max=2, l_max=2),
            "SNAP": lambda: D.SNAPBispectrum(species=SP, twojmax=2, rcutfac=4.0)}[name]()
    regressor = {"quadratic": lambda: R.LinearRegressor(alpha=1e-6, quadratic=True),
                 "gp_dot": lambda: R.SparseGPRegressor(n_sparse=8, kernel="dot", zeta=2,
                                                       random_state=0),
                 "gp_se": lambda: R.SparseGPRegressor(n_sparse=8, kernel="se", random_state=0),
                 "nn": lambda: R.NeuralNetworkRegressor(hidden_layer_sizes=(6,), max_iter=20,
                                                        random_state=0)}[reg]()
    calc = _fit(desc, regressor, B.ZBL(r_inner=1.0, r_cut=2.0), train).calculator()
    for build in (_trimer, lambda x: _dimer(x)):
        dE, dF, _ = _steps(calc, build, 4.0)
        assert dE < 1e-8 and dF < 1e-6, (dE, dF)


@pytest.mark.parametrize("base, radii, c2", [
    (B.ZBL(r_inner=1.0, r_cut=2.0), (1.0, 2.0), True),
    (B.LennardJones(epsilon=0.02, sigma=2.3, r_cut=4.5), (4.5,), False),
    (B.Morse(D0=0.3, alpha=1.4, r0=2.6, r_cut=4.5), (4.5,), False),
    (B.Buckingham(A=1000.0, rho=0.25, C=5.0, r_cut=4.5), (4.5,), False)],
    ids=["zbl", "lj", "morse", "buckingham"])
def test_baseline_switches_continuity_order(base, radii, c2):
    """ZBL: E, F and F' continuous at r_inner and r_c (C2 switch); shifted-force LJ / Morse /
    Buckingham: E, F continuous at r_c (C1), F' jumps by -phi''(r_c)."""
    calc = base.calculator()
    for r in radii:
        for build in (_trimer, lambda x: _dimer(x)):
            dE, dF, dslope = _steps(calc, build, r)
            assert dE < 1e-8 and dF < 1e-6, (r, dE, dF)
            if c2:
                assert dslope < 1e-2, (r, dslope)
    if not c2:   # the C1 check is not blind: the force kink equals phi''(r_c) of the pair
        e = [base.calculator().get_potential_energy(_dimer(x, "CuCu"))
             for x in (4.5 - 2e-3, 4.5 - 1e-3, 4.5 - 1e-9)]
        curv = (e[2] - 2 * e[1] + e[0]) / 1e-6
        assert abs(_steps(calc, _dimer, 4.5)[2] - abs(curv)) < 0.05 * abs(curv) + 1e-6


def test_continuity_check_sees_a_step_cutoff(train):
    """The step measure is not blind: SNAP without switching (LAMMPS switchflag 0, a step
    cutoff) shows an energy step when the last neighbour leaves."""
    calc = _fit(D.SNAPBispectrum(species=SP, twojmax=2, rcutfac=4.0, switchflag=False),
                R.LinearRegressor(alpha=1e-6), None, train).calculator()
    dE, dF, _ = _steps(calc, _trimer, 4.0)
    assert dE > 1e-4
