"""Review 2 (session 7) of the baselines: ASEBaseline around a calculator without stress."""

import numpy as np
from ase.build import bulk
from ase.calculators.emt import EMT as AseEMT
from ase.calculators.singlepoint import SinglePointCalculator

from hybridpot import HybridPotential
from hybridpot.baselines import ASEBaseline
from hybridpot.descriptors import PowerSpectrum
from hybridpot.regression import LinearRegressor


class _EMTWithoutStress(AseEMT):
    """ASE's EMT advertising energy and forces only (like many external codes)."""

    implemented_properties = ["energy", "forces"]


def _cell(seed):
    rng = np.random.default_rng(seed)
    a = bulk("Cu", "fcc", a=3.61) * (2, 2, 1)
    a.symbols[[1, 3]] = "Al"
    a.set_cell(a.cell @ (np.eye(3) + 0.03 * rng.standard_normal((3, 3))), scale_atoms=True)
    a.positions += 0.08 * rng.standard_normal(a.positions.shape)
    return a


def test_stress_of_a_calculator_without_stress_is_numerical():
    # was stress None on a periodic cell -> HybridPotential.fit / predict_stress raised
    # "TypeError: unsupported operand type(s) for -: 'float' and 'NoneType'"
    a = _cell(0)   # rattled, periodic, non-orthogonal, two elements
    ref = ASEBaseline(AseEMT()).compute(a)
    num = ASEBaseline(_EMTWithoutStress()).compute(a)
    np.testing.assert_allclose(num["stress"], ref["stress"], rtol=0, atol=1e-9)
    assert np.abs(ref["stress"]).max() > 1e-3          # a non-trivial stress
    np.testing.assert_array_equal(num["forces"], ref["forces"])
    assert num["energy"] == ref["energy"]
    np.testing.assert_array_equal(a.cell.array, _cell(0).cell.array)   # input untouched
    assert ASEBaseline(_EMTWithoutStress()).compute(a, stress=False)["stress"] is None
    mol = a.copy()
    mol.pbc = False
    assert ASEBaseline(_EMTWithoutStress()).compute(mol)["stress"] is None


def test_fit_with_stress_labels_on_a_baseline_without_stress():
    train = []
    for s in range(4):
        a = _cell(s + 1)
        a.calc = AseEMT()
        e, f, st = a.get_potential_energy(), a.get_forces(), a.get_stress()
        a.calc = SinglePointCalculator(a, energy=e, forces=f, stress=st)
        train.append(a)
    desc = PowerSpectrum(species=["Cu", "Al"], r_cut=3.5, n_max=2, l_max=1)
    m = HybridPotential(descriptor=desc, regressor=LinearRegressor(),
                        baseline=ASEBaseline(_EMTWithoutStress())).fit(train)
    # the baseline is the labelling potential: the ML correction is ~0 and stress is exact
    stress = m.predict_stress(train)
    np.testing.assert_allclose(stress, np.array([t.get_stress() for t in train]), atol=1e-6)
