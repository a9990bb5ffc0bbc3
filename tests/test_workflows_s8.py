"""Session-8 workflow review: HybridCalculator used as any ASE calculator (relaxations, cell
filters, NEB, MD, trajectories), compared with EMT (the labels) and finite differences."""

import pickle
import warnings

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.calculator import PropertyNotImplementedError
from ase.calculators.emt import EMT as AseEMT
from ase.calculators.lj import LennardJones as AseLJ

from hybridpot import HybridCalculator, HybridPotential, InvalidParameterError, NotFittedError
from hybridpot.baselines import ASEBaseline, LennardJones
from hybridpot.descriptors import PowerSpectrum
from hybridpot.regression import BayesianLinearRegressor, LinearRegressor

from conftest import emt_dataset


def _desc():
    return PowerSpectrum(species=["Cu"], r_cut=4.5, n_max=4, l_max=3)


@pytest.fixture(scope="module")
def train():
    return emt_dataset(10, seed=8)


@pytest.fixture(scope="module")
def model(train):
    """BayesianLinear + LJ baseline: a posterior, EMT to a few meV/atom."""
    return HybridPotential(descriptor=_desc(), regressor=BayesianLinearRegressor(),
                           baseline=LennardJones(epsilon=0.02, sigma=2.3, r_cut=4.5)).fit(train)


def _cu(a=3.6, reps=(2, 2, 2), rattle=0.05, seed=0):
    at = bulk("Cu", "fcc", a=a, cubic=True) * reps
    at.rattle(rattle, seed=seed)
    return at


def _counting(model, monkeypatch):
    """Count the model evaluations behind a calculator."""
    calls = []
    orig = model._evaluate

    def counted(*args, **kw):
        calls.append(kw.get("return_std", False))
        return orig(*args, **kw)

    monkeypatch.setattr(model, "_evaluate", counted)
    return calls


# ---------------------------------------------------------------- σ of a shared calculator
def test_sigma_interval_not_reused_across_structures(model):
    """uncertainty_interval > 1 reuses σ only for the same Atoms object: a calculator
    shared by NEB images or a loop over structures reported the σ of *another* structure
    (a GP: 0.16 eV instead of 5.8 eV for a strongly distorted cell)."""
    calc = model.calculator(uncertainty=True, uncertainty_interval=3)
    a = _cu(seed=1)
    b = _cu(rattle=0.3, seed=2)
    a.calc = calc
    b.calc = calc
    a.get_potential_energy()
    assert calc.std_fresh
    b.get_potential_energy()
    assert calc.std_fresh   # another structure: σ recomputed
    want = model._evaluate(b, return_std=True)
    np.testing.assert_allclose(calc.results["energy_std"], want["energy_std"], rtol=1e-10)
    np.testing.assert_allclose(calc.results["forces_std"], want["forces_std"], rtol=1e-10)
    # the same object moving (MD, relaxation) still reuses σ for the next two calls
    sig_b = calc.results["energy_std"]
    for _ in range(2):
        b.positions[0, 0] += 0.01
        b.get_potential_energy()
        assert not calc.std_fresh and calc.results["energy_std"] == sig_b
    b.positions[0, 0] += 0.01
    b.get_potential_energy()
    assert calc.std_fresh


def test_sigma_interval_slab_gets_no_stale_stress_std(model):
    """The same Atoms made a slab (pbc False along z) must not keep the bulk stress σ."""
    calc = model.calculator(uncertainty=True, uncertainty_interval=5)
    a = _cu()
    a.calc = calc
    a.get_forces()
    assert "stress_std" in calc.results
    a.pbc = (True, True, False)
    a.get_forces()
    assert calc.std_fresh and "stress_std" not in calc.results
    with pytest.raises(PropertyNotImplementedError,
                       match=r"stress only for cells periodic in 3-D .* pbc=\[True, True, "
                             r"False\]"):
        calc.get_property("stress_std", a)


def test_pickled_calculator_after_sigma(model):
    """The weak reference behind σ reuse does not break pickling (multiprocessing NEB)."""
    calc = model.calculator(uncertainty=True, uncertainty_interval=2)
    a = _cu(seed=3)
    a.calc = calc
    e = a.get_potential_energy()
    sig = calc.results["energy_std"]
    b = a.copy()
    b.calc = pickle.loads(pickle.dumps(calc))
    assert b.get_potential_energy() == pytest.approx(e, abs=1e-12)
    assert b.calc.std_fresh and b.calc.results["energy_std"] == pytest.approx(sig, rel=1e-12)


# ---------------------------------------------------------------- per-atom energies
class _LJWithoutEnergies(AseLJ):
    implemented_properties = ["energy", "free_energy", "forces", "stress"]


def test_energies_refused_when_baseline_has_none(train):
    """A baseline without per-atom energies (ASEBaseline of a calculator lacking 'energies',
    e.g. EAM) gave get_potential_energies() the ML share only: sum 5.52 eV vs energy 1.80 eV."""
    m = HybridPotential(descriptor=PowerSpectrum(species=["Cu"], r_cut=4.0, n_max=3, l_max=2),
                        regressor=BayesianLinearRegressor(),
                        baseline=ASEBaseline(_LJWithoutEnergies(sigma=2.3, epsilon=0.02,
                                                                rc=4.5))).fit(train[:4])
    for unc in (False, True):
        at = _cu(seed=4)
        at.calc = m.calculator(uncertainty=unc)
        with pytest.raises(PropertyNotImplementedError,
                           match=r"per-atom energies of this model: its baseline "
                                 r"ASEBaseline\(_LJWithoutEnergies\) gives none"):
            at.get_potential_energies()
        e = at.get_potential_energy()   # the rest is unaffected
        assert e == pytest.approx(m.predict([at])[0], abs=1e-10)
    # with per-atom baseline energies they are reported and add up
    m2 = HybridPotential(descriptor=PowerSpectrum(species=["Cu"], r_cut=4.0, n_max=3, l_max=2),
                         regressor=BayesianLinearRegressor(),
                         baseline=ASEBaseline(AseLJ(sigma=2.3, epsilon=0.02, rc=4.5)))
    m2.fit(train[:4])
    at = _cu(seed=4)
    at.calc = m2.calculator()
    assert at.get_potential_energies().sum() == pytest.approx(at.get_potential_energy(),
                                                              abs=1e-10)


# ---------------------------------------------------------------- arguments and messages
def test_calculator_argument_errors(model, train):
    calc = model.calculator()
    with pytest.raises(InvalidParameterError,
                       match=r"HybridCalculator has no parameters to set. Got \['sigam'\]"):
        calc.set(sigam=2.0)   # ASE's Calculator.set stored it silently
    assert calc.set() == {}
    with pytest.raises(InvalidParameterError,
                       match=r"'uncertainty' parameter of HybridCalculator must be a bool. "
                             r"Got 'no' instead"):
        model.calculator(uncertainty="no")   # was bool('no') = True
    with pytest.raises(InvalidParameterError,
                       match=r"'model' argument of HybridCalculator must be a fitted "
                             r"HybridPotential. Got str instead"):
        HybridCalculator("ni.hpot")
    with pytest.raises(NotFittedError, match="not fitted yet"):
        HybridCalculator(HybridPotential(descriptor=_desc(),
                                         regressor=BayesianLinearRegressor()))
    with pytest.raises(InvalidParameterError, match="HybridCalculator has no structure to "
                                                    "evaluate.*Got atoms=None"):
        model.calculator().get_potential_energy()
    plain = HybridPotential(descriptor=PowerSpectrum(species=["Cu"], r_cut=4.0, n_max=3,
                                                     l_max=2),
                            regressor=LinearRegressor()).fit(train[:3])
    at = _cu()
    at.calc = plain.calculator()
    with pytest.raises(PropertyNotImplementedError,
                       match=r"forces_std needs a model with a posterior .* this model's "
                             r"LinearRegressor has none"):
        at.calc.get_property("forces_std", at)


def test_slab_stress_message_and_vacuum_workaround(model):
    """pbc=(T, T, F): stress refused naming the pbc; the documented workaround (pbc True
    with vacuum) leaves energy and forces unchanged and gives a stress."""
    from ase.build import fcc111

    slab = fcc111("Cu", size=(2, 2, 3), a=3.6, vacuum=6.0)
    slab.calc = model.calculator()
    with pytest.raises(PropertyNotImplementedError, match=r"pbc=\[True, True, False\].*set "
                                                          r"atoms.pbc = True with a vacuum"):
        slab.get_stress()
    e, f = slab.get_potential_energy(), slab.get_forces()
    per = slab.copy()
    per.pbc = True
    per.calc = model.calculator()
    assert per.get_potential_energy() == pytest.approx(e, abs=1e-10)
    np.testing.assert_allclose(per.get_forces(), f, atol=1e-10)
    assert np.all(np.isfinite(per.get_stress()))


# ---------------------------------------------------------------- caching (ASE check_state)
def test_caching_recomputes_exactly_on_changes(model, monkeypatch):
    calls = _counting(model, monkeypatch)
    calc = model.calculator()
    a = _cu()
    a.calc = calc
    e = a.get_potential_energy()
    a.get_forces(), a.get_stress(), a.get_potential_energies(), a.get_potential_energy()
    assert len(calls) == 1   # nothing changed: one evaluation for every property
    for change in (lambda: a.positions.__setitem__((0, 0), a.positions[0, 0] + 0.01),
                   lambda: a.set_cell(a.cell * 1.01, scale_atoms=True),
                   lambda: setattr(a, "pbc", (True, True, False)),
                   lambda: setattr(a, "pbc", True)):
        n = len(calls)
        change()
        a.get_potential_energy()
        assert len(calls) == n + 1
    # σ asked for explicitly (uncertainty=False): one σ evaluation, then cached
    s1 = calc.get_property("energy_std", a)
    s2 = calc.get_property("energy_std", a)
    assert s1 == s2 and calls[-1] is True and len(calls) == 6
    # one calculator on two Atoms in turn gives each its own result
    b = _cu(a=3.65, seed=5)
    b.calc = calc
    assert b.get_potential_energy() != pytest.approx(a.get_potential_energy())
    assert a.get_potential_energy() == pytest.approx(model.predict([a])[0], abs=1e-10)
    assert e != a.get_potential_energy()


# ---------------------------------------------------------------- workflows against EMT
def test_cell_relaxation_on_a_skewed_cell_matches_emt(model):
    """FrechetCellFilter + BFGS from a sheared primitive cell: converged stress-free fcc with
    the lattice constant of EMT (the labels) within the fit quality (0.5 %)."""
    from ase.filters import FrechetCellFilter
    from ase.optimize import BFGS

    def relax(calc):
        at = bulk("Cu", "fcc", a=3.5)
        at.set_cell(at.cell.array @ np.array([[1, 0.04, 0], [0, 1, 0.02], [0, 0, 1]]),
                    scale_atoms=True)
        at.calc = calc
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            assert BFGS(FrechetCellFilter(at), logfile=None).run(fmax=1e-4, steps=200)
        return at

    m, e = relax(model.calculator()), relax(AseEMT())
    assert np.abs(m.get_stress()).max() < 1e-4
    a_model, a_emt = (4 * m.get_volume()) ** (1 / 3), (4 * e.get_volume()) ** (1 / 3)
    assert a_model == pytest.approx(a_emt, rel=5e-3)
    np.testing.assert_allclose(m.cell.cellpar()[3:], 60.0, atol=0.05)   # back to fcc


def test_elastic_constants_sign_and_voigt_order_match_emt(model):
    """C_ij from ±0.1 % strains of the stress: Voigt order and sign as EMT's (C11 > C12 > 0,
    C44 > 0, no spurious couplings), values within 25 % (a small fit)."""
    from ase.units import GPa

    def elastic(make):
        at = bulk("Cu", "fcc", a=3.59, cubic=True)
        C = np.zeros((6, 6))
        for j in range(6):
            s = []
            for sgn in (1, -1):
                eps = np.zeros(6)
                eps[j] = 1e-3 * sgn
                E = np.array([[eps[0], eps[5] / 2, eps[4] / 2], [eps[5] / 2, eps[1], eps[3] / 2],
                              [eps[4] / 2, eps[3] / 2, eps[2]]])
                b = at.copy()
                b.set_cell(at.cell.array @ (np.eye(3) + E), scale_atoms=True)
                b.calc = make()
                s.append(b.get_stress())
            C[:, j] = (s[0] - s[1]) / 2e-3 / GPa
        return C

    cm, ce = elastic(model.calculator), elastic(AseEMT)
    for C in (cm, ce):
        assert C[0, 0] > C[0, 1] > 0 and C[3, 3] > 0
        np.testing.assert_allclose(C, C.T, atol=1e-3 * C[0, 0])
    big = np.abs(ce) > 10
    np.testing.assert_allclose(cm[big], ce[big], rtol=0.25)
    assert np.abs(cm[~big]).max() < 5


def test_sigma_survives_extxyz_with_the_documented_recipe(model, tmp_path):
    """The class docstring's recipe keeps σ along an MD run (extxyz: info and arrays)."""
    from ase import units
    from ase.io import read, write
    from ase.md.verlet import VelocityVerlet

    atoms = _cu(seed=6)
    atoms.calc = model.calculator(uncertainty=True)
    path = tmp_path / "md.xyz"

    def keep_sigma():
        atoms.info["energy_std"] = atoms.calc.results["energy_std"]
        atoms.arrays["forces_std"] = atoms.calc.results["forces_std"]

    dyn = VelocityVerlet(atoms, 2 * units.fs)
    dyn.attach(keep_sigma, interval=1)
    dyn.attach(lambda: write(path, atoms, append=True), interval=1)
    dyn.run(2)
    frames = read(path, ":")
    assert len(frames) == 3
    last = frames[-1]
    np.testing.assert_allclose(last.info["energy_std"], atoms.calc.results["energy_std"])
    np.testing.assert_allclose(last.arrays["forces_std"], atoms.calc.results["forces_std"],
                               atol=1e-8)   # extxyz writes 8 decimals
    assert last.get_potential_energy() == pytest.approx(atoms.get_potential_energy())


# ---------------------------------------------------------------- baselines as calculators
def test_baseline_calculator_slab_stress_message():
    """BaselineCalculator on a pbc=(T, T, F) slab: was ASE's bare 'stress not present in this
    calculation'; now names the pbc and the workaround, which reproduces ASE's EMT stress."""
    from ase.build import fcc111

    from hybridpot.baselines import EMT

    slab = fcc111("Cu", size=(2, 2, 3), a=3.6, vacuum=6.0)
    slab.calc = EMT().calculator()
    with pytest.raises(PropertyNotImplementedError,
                       match=r"BaselineCalculator gives the stress only for cells periodic in "
                             r"3-D .* pbc=\[True, True, False\]"):
        slab.get_stress()
    ref = slab.copy()
    ref.calc = AseEMT()           # ASE's EMT: any cell of rank 3
    per = slab.copy()
    per.pbc = True
    per.calc = EMT().calculator()
    np.testing.assert_allclose(per.get_stress(), ref.get_stress(), atol=1e-12)


def test_model_with_used_ase_emt_baseline_pickles(train):
    """ASE's EMT keeps a lambda once used, so a fitted model with ASEBaseline(EMT()) and its
    calculator could not be pickled (multiprocessing NEB, joblib)."""
    m = HybridPotential(descriptor=PowerSpectrum(species=["Cu"], r_cut=4.0, n_max=3, l_max=2),
                        regressor=LinearRegressor(), baseline=ASEBaseline(AseEMT()))
    m.fit(train[:3])
    at = _cu(seed=7)
    at.calc = m.calculator()
    e = at.get_potential_energy()
    calc = pickle.loads(pickle.dumps(at.calc))
    b = at.copy()
    b.calc = calc
    assert b.get_potential_energy() == pytest.approx(e, abs=1e-10)
    assert pickle.loads(pickle.dumps(m)).predict([at])[0] == pytest.approx(e, abs=1e-10)
    assert type(calc.model.baseline.calc) is AseEMT


# ---------------------------------------------------------------- MD helpers
def test_langevin_keeps_fixed_atoms_fixed():
    """_compat.langevin added FixCom to a slab with FixAtoms on its bottom layers: FixCom
    shifts every atom to restore the centre of mass, so the 'fixed' atoms drifted (1.8e-3 Å
    in 100 steps)."""
    from ase import units
    from ase.build import fcc100
    from ase.constraints import FixAtoms, FixCom

    from hybridpot._compat import langevin, thermalize

    slab = fcc100("Cu", size=(2, 2, 4), vacuum=6.0)
    fixed = [a.index for a in slab if a.tag >= 3]
    slab.set_constraint(FixAtoms(indices=fixed))
    p0 = slab.positions.copy()
    thermalize(slab, 300, np.random.default_rng(0))
    slab.calc = AseEMT()
    langevin(slab, 2 * units.fs, 300, 0.02 / units.fs, np.random.default_rng(1)).run(30)
    assert not any(isinstance(c, FixCom) for c in slab.constraints)
    np.testing.assert_array_equal(slab.positions[fixed], p0[fixed])
    free = np.setdiff1d(np.arange(len(slab)), fixed)
    assert np.abs(slab.positions[free] - p0[free]).max() > 1e-2
    # without pinned atoms the centre of mass is held by FixCom, as before
    bulk_cu = _cu(reps=(2, 2, 2), rattle=0.0)
    thermalize(bulk_cu, 300, np.random.default_rng(2))
    bulk_cu.calc = AseEMT()
    com = bulk_cu.get_center_of_mass()
    langevin(bulk_cu, 2 * units.fs, 300, 0.02 / units.fs, np.random.default_rng(3)).run(10)
    assert any(isinstance(c, FixCom) for c in bulk_cu.constraints)
    np.testing.assert_allclose(bulk_cu.get_center_of_mass(), com, atol=1e-10)


# ---------------------------------------------------------------- the model changes under the calculator
def test_results_follow_model_changes(model, train):
    """A calculator attached to unchanged Atoms kept the results of the model as it was:
    after recalibrate() σ stayed 0.107 eV while the model said 0.055 eV; after a refit the old
    energy; a posterior applied later was not an ASE property."""
    from sklearn.base import clone

    from hybridpot.uq import LinearPosterior

    m = clone(model).fit(train[:6])
    at = _cu(seed=9)
    at.calc = m.calculator(uncertainty=True)
    s0 = at.calc.get_property("energy_std", at)
    m.uncertainty_scale_ = {"energy": 3.0}     # what recalibrate() stores
    assert at.calc.get_property("energy_std", at) == pytest.approx(3 * s0, rel=1e-12)
    m.fit(train[4:])                           # refit
    assert at.get_potential_energy() == pytest.approx(m.predict([at])[0], abs=1e-10)
    assert at.calc.results["energy_std"] == pytest.approx(
        m.predict([at], return_std=True)[1][0], rel=1e-10)
    m.baseline.set_params(epsilon=0.03)         # the baseline's parameters
    assert at.get_potential_energy() == pytest.approx(m.predict([at])[0], abs=1e-10)
    # a posterior applied to a model that had none when the calculator was made
    plain = HybridPotential(descriptor=_desc(), regressor=LinearRegressor()).fit(train[:4])
    b = _cu(seed=10)
    b.calc = plain.calculator()
    e = b.get_potential_energy()
    with pytest.raises(PropertyNotImplementedError, match="energy_std needs a model with"):
        b.calc.get_property("energy_std", b)
    LinearPosterior(n_steps=40, n_burn=0, random_state=0).fit(plain, train[:4]).apply(
        plain, random_state=0, force=True)
    assert b.calc.get_property("energy_std", b) == pytest.approx(
        plain.predict([b], return_std=True)[1][0], rel=1e-10)
    assert b.get_potential_energy() == pytest.approx(e, abs=1e-8)


def test_refit_is_seen_even_if_the_new_regressor_reuses_the_old_address(model, train):
    """The fingerprint holds ids; after two refits without a calculation in between, the
    new regressor can sit at the freed address of the one the results came from.  The
    calculator also holds the objects (weakly), so a freed one counts as a change."""
    import gc

    from sklearn.base import clone

    m = clone(model).fit(train[:6])
    at = _cu(seed=11)
    at.calc = m.calculator()
    at.get_potential_energy()
    m.fit(train[4:])
    gc.collect()
    # what an address reuse looks like to the id fingerprint: equal keys
    at.calc._model_key = at.calc._model_state()
    assert "model" in at.calc.check_state(at)
    assert at.get_potential_energy() == pytest.approx(m.predict([at])[0], abs=1e-10)
    assert at.calc.check_state(at) == []


def test_duck_typed_baseline_in_the_calculator(train):
    """HybridPotential accepts any baseline with ``compute``; the calculator's model
    fingerprint (3c4a9a0) asked it for Baseline._param_key (AttributeError)."""

    class Zero:
        def compute(self, atoms, *, forces=True, stress=True):
            n = len(atoms)
            return {"energy": 0.0, "energies": np.zeros(n), "forces": np.zeros((n, 3)),
                    "stress": np.zeros(6) if all(atoms.pbc) else None}

    m = HybridPotential(descriptor=PowerSpectrum(species=["Cu"], r_cut=4.0, n_max=3, l_max=2),
                        regressor=LinearRegressor(), baseline=Zero()).fit(train[:3])
    at = _cu(seed=11)
    at.calc = m.calculator()
    assert at.get_potential_energy() == pytest.approx(m.predict([at])[0], abs=1e-10)
    assert at.get_potential_energies().sum() == pytest.approx(at.get_potential_energy())
