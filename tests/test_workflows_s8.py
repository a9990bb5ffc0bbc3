"""Session-8 workflow review: HybridCalculator used as any ASE calculator (relaxations, cell
filters, NEB, MD, trajectories), compared with EMT (the labels) and finite differences."""

import pickle

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.calculator import PropertyNotImplementedError
from ase.calculators.emt import EMT as AseEMT

from hybridpot import HybridPotential
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
