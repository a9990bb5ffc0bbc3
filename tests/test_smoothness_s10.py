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
    # through a fitted model's calculator (an MD step that compresses a pair below rmin0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = HybridPotential(descriptor=D.SNAPBispectrum(species=SP, twojmax=2, rcutfac=4.0,
                                                        rmin0=1.0),
                            regressor=R.LinearRegressor(alpha=1e-6),
                            baseline=B.ZBL(r_inner=0.8, r_cut=2.0),
                            reference_energies={"Cu": 0.0, "Ni": 0.0}).fit(_train())
    a = _dimer(0.95)
    a.calc = m.calculator()
    with pytest.raises(InvalidStructureError, match="0.95 Å apart, within rmin0 = 1 Å"):
        a.get_forces()
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


# --- NVE: energy conservation of a fitted model against EMT itself in the same run ------------

def _nve(atoms, calc, dt_fs, steps, T, seed=1):
    from ase import units
    from ase.md.velocitydistribution import Stationary
    from ase.md.verlet import VelocityVerlet

    from hybridpot._compat import thermalize

    a = atoms.copy()
    a.calc = calc
    thermalize(a, T, np.random.default_rng(seed))
    Stationary(a)
    dyn = VelocityVerlet(a, dt_fs * units.fs)
    E = []
    dyn.attach(lambda: E.append(a.get_total_energy() / len(a)), interval=1)
    dyn.run(steps)
    return np.array(E)


@pytest.mark.parametrize("reg", ["gp_se", "nn"])
def test_nve_energy_conservation_like_emt(reg):
    """32-atom Cu28Ni4 at 1000 K (about 500 K after equipartition), VelocityVerlet 2 fs for
    0.4 ps: the hybrid model (ACSF G5 with the polynomial cutoff + ZBL) conserves the total
    energy as well as EMT does from the same start (long runs in the review report)."""
    from ase.calculators.emt import EMT

    at = bulk("Cu", "fcc", a=3.61, cubic=True) * (2, 2, 2)
    at[[3, 11, 19, 27]].symbols = "Ni"
    rng = np.random.default_rng(5)
    train = []
    for k in range(5):
        b = at.copy()
        b.set_cell(b.cell.array * (1 + rng.uniform(-0.02, 0.02)), scale_atoms=True)
        b.rattle(0.1, seed=k)
        train.append(emt_label(b))
    desc = D.ACSF(species=SP, r_cut=4.5, angular="g5", radial_etas=[1.0, 4.0],
                  radial_shifts=[2.0, 2.6, 3.4], bp_etas=[0.1], bp_zetas=[1.0, 4.0],
                  cutoff_function="polynomial")
    regressor = (R.SparseGPRegressor(n_sparse=20, kernel="se", random_state=0) if reg == "gp_se"
                 else R.NeuralNetworkRegressor(hidden_layer_sizes=(8,), max_iter=100,
                                               random_state=0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # an unconverged NN is still a smooth function
        m = HybridPotential(descriptor=desc, regressor=regressor,
                            baseline=B.ZBL(r_inner=1.0, r_cut=2.0)).fit(train)
    at.rattle(0.02, seed=3)
    e_emt = _nve(at, EMT(), 2.0, 200, 1000.0)
    e_hyb = _nve(at, m.calculator(), 2.0, 200, 1000.0)
    t = np.arange(len(e_emt)) * 2e-3                       # ps
    # Verlet's bounded O(dt^2) fluctuation, no drift: both as EMT's (measured ratios 0.8-1.2)
    fl_emt = np.std(e_emt - np.polyval(np.polyfit(t, e_emt, 1), t))
    fl_hyb = np.std(e_hyb - np.polyval(np.polyfit(t, e_hyb, 1), t))
    assert fl_hyb < 2.0 * fl_emt
    assert np.ptp(e_hyb) < 3.0 * np.ptp(e_emt)
    assert abs(np.polyfit(t, e_hyb, 1)[0]) < 1e-4 + 3 * abs(np.polyfit(t, e_emt, 1)[0])  # eV/atom/ps


# --- lattice dynamics: relaxation, Gamma force constants, bulk modulus ------------------------

@pytest.fixture(scope="module")
def cu_model():
    rng = np.random.default_rng(11)
    train = []
    for k in range(5):
        b = bulk("Cu", "fcc", a=3.61 * (1 + rng.uniform(-0.03, 0.03)), cubic=True) * (2, 1, 1)
        b.rattle(0.08, seed=k)
        train.append(emt_label(b))
    desc = D.PowerSpectrum(species=["Cu"], r_cut=4.5, n_max=3, l_max=3)
    return HybridPotential(descriptor=desc, regressor=R.SparseGPRegressor(
        n_sparse=15, kernel="se", random_state=0),
        baseline=B.LennardJones(epsilon=0.02, sigma=2.3, r_cut=4.5)).fit(train)


def test_relax_gamma_phonons_and_bulk_modulus(cu_model):
    """FrechetCellFilter + BFGS reaches fmax 1e-4 eV/Å with a stress-free cell; the Gamma
    force constants (central differences of forces) are symmetric and obey the acoustic sum
    rule (three zero modes, the others real); the bulk modulus from d²E/dV² equals the one from
    the slope of the stress (the stress is the strain derivative of the energy along the path)."""
    from ase.filters import FrechetCellFilter
    from ase.optimize import BFGS

    calc = cu_model.calculator()
    a = bulk("Cu", "fcc", a=3.65, cubic=True) * (1, 1, 2)
    a.rattle(0.03, seed=1)
    a.calc = calc
    assert BFGS(FrechetCellFilter(a), logfile=None).run(fmax=1e-4, steps=300)
    assert np.abs(a.get_forces()).max() < 1e-4
    assert np.abs(a.get_stress()).max() * a.get_volume() < 2e-4     # eV: stress ~ 0
    # Gamma force constants
    n, p0, delta = len(a), a.positions.copy(), 0.01
    Phi = np.zeros((3 * n, 3 * n))
    for i in range(n):
        for al in range(3):
            f = []
            for s in (1.0, -1.0):
                a.positions = p0
                a.positions[i, al] += s * delta
                f.append(a.get_forces().ravel())
            Phi[3 * i + al] = -(f[0] - f[1]) / (2 * delta)
    a.positions = p0
    scale = np.abs(Phi).max()
    assert np.abs(Phi - Phi.T).max() < 1e-6 * scale
    assert np.abs(Phi.reshape(3 * n, n, 3).sum(axis=1)).max() < 1e-9 * scale
    w2 = np.linalg.eigvalsh(0.5 * (Phi + Phi.T))
    assert np.all(np.abs(w2[:3]) < 1e-8 * scale) and w2[3] > 1e-3 * scale
    # bulk modulus: E(V) curvature vs stress slope (fcc: no internal relaxation under scaling)
    V, E, P = [], [], []
    cell0 = a.cell.array.copy()
    for x in (-0.003, -0.0015, 0.0, 0.0015, 0.003):
        b = a.copy()
        b.set_cell(cell0 * (1 + x), scale_atoms=True)
        b.calc = calc
        V.append(b.get_volume())
        E.append(b.get_potential_energy())
        P.append(-b.get_stress()[:3].mean())
    V, E, P = np.array(V), np.array(E), np.array(P)
    B_energy = V[2] * 2 * np.polyfit(V - V[2], E, 4)[-3]
    B_stress = -V[2] * np.polyfit(V - V[2], P, 3)[-2]
    assert B_energy > 0
    assert abs(B_stress / B_energy - 1) < 1e-3


def test_unwrapped_atoms_far_outside_the_cell(cu_model):
    """A long NVE run does not wrap positions: atoms 10^5 cells away give the same energy,
    forces and stress (to the round-off of the coordinates, ~|x| 1e-16)."""
    a = bulk("Cu", "fcc", a=3.62, cubic=True) * (2, 1, 1)
    a.set_cell(a.cell.array + [[0, 0, 0], [0.6, 0, 0], [0.3, -0.4, 0]], scale_atoms=True)
    a.rattle(0.05, seed=2)
    a.calc = cu_model.calculator()
    e0, f0, s0 = a.get_potential_energy(), a.get_forces(), a.get_stress()
    b = a.copy()
    k = np.random.default_rng(0).integers(-100000, 100001, size=(len(b), 3))
    b.positions += k @ a.cell.array
    b.calc = cu_model.calculator()
    assert np.abs(b.positions).max() > 1e5
    assert abs(b.get_potential_energy() - e0) < 1e-8
    np.testing.assert_allclose(b.get_forces(), f0, atol=1e-8)
    np.testing.assert_allclose(b.get_stress(), s0, atol=1e-10)


@pytest.mark.parametrize("asap, lo, hi", [(False, 5e-6, 5e-5), (True, 1e-3, 1e-2)])
def test_emt_step_at_the_neighbour_radius_as_documented_and_as_ase(asap, lo, hi):
    """EMT (like ASE's) cuts w at r_c + 0.5 Å (1.045 r_c with asap_cutoff) where w != 0: the
    Cu-Ni dimer energy steps by 1.5e-5 eV (3.1e-3 eV with asap_cutoff), as the docstring says,
    and by exactly ASE's step."""
    from ase.calculators.emt import EMT as AseEMT

    from hybridpot.baselines._emt import _cutoff

    r = _cutoff(["Cu", "Ni"], asap)[1]
    steps = []
    for calc in (B.EMT(asap_cutoff=asap).calculator(), AseEMT(asap_cutoff=asap)):
        e = [_ef(calc, _dimer(x))[0] for x in (r - 1e-7, r + 1e-7)]
        steps.append(abs(e[1] - e[0]))
    assert lo < steps[0] < hi
    assert steps[0] == pytest.approx(steps[1], rel=1e-6)
