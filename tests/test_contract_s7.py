"""Regression tests of the session-7 contract audit (DESIGN.md "Public contract").

Each test calls an entry point exactly as DESIGN.md writes it and checks the documented result.
"""

import numpy as np
import pytest
from ase.calculators.calculator import PropertyNotImplementedError

from hybridpot import HybridPotential
from hybridpot.baselines import ZBL
from hybridpot.descriptors import PowerSpectrum
from hybridpot.regression import BayesianLinearRegressor, LinearRegressor

from conftest import emt_dataset


@pytest.fixture(scope="module")
def data():
    return emt_dataset(8, seed=3), emt_dataset(2, seed=4)


def _model(regressor):
    return HybridPotential(descriptor=PowerSpectrum(species=["Cu"], r_cut=4.0, n_max=3, l_max=2),
                           regressor=regressor, baseline=ZBL(r_inner=1.0, r_cut=2.0),
                           weights={"energy": 1.0, "forces": 1.0, "stress": 0.1})


def test_default_calculator_gives_energy_std_and_forces_std_as_ase_properties(data):
    # DESIGN.md: atoms.calc = model.calculator()  # ASE: ..., energy_std, forces_std
    train, test = data
    model = _model(BayesianLinearRegressor()).fit(train)
    at = test[0].copy()
    at.calc = model.calculator()
    e = at.get_potential_energy()
    assert "energy_std" not in at.calc.results          # not paid for unless asked
    e_std = at.calc.get_property("energy_std", at)
    f_std = at.calc.get_property("forces_std", at)
    s_std = at.calc.get_property("stress_std", at)
    ref_e, ref_std = model.predict([at], return_std=True)
    _, ref_fstd = model.predict_forces([at], return_std=True)
    assert at.get_potential_energy() == pytest.approx(e, abs=1e-12)
    np.testing.assert_allclose(e_std, ref_std[0], rtol=1e-10)
    np.testing.assert_allclose(f_std, ref_fstd[0], rtol=1e-10)
    assert f_std.shape == (len(at), 3) and np.all(f_std > 0)
    assert s_std.shape == (6,) and np.all(s_std > 0)
    np.testing.assert_allclose(ref_e[0], e, rtol=1e-12)
    # uncertainty=True: the same σ through get_property
    at.calc = model.calculator(uncertainty=True)
    np.testing.assert_allclose(at.calc.get_property("energy_std", at), e_std, rtol=1e-12)


def test_calculator_of_a_model_without_posterior_has_no_std_property(data):
    train, test = data
    model = _model(LinearRegressor()).fit(train)
    at = test[0].copy()
    at.calc = model.calculator()
    assert "energy_std" not in at.calc.implemented_properties
    with pytest.raises(PropertyNotImplementedError, match="energy_std"):
        at.calc.get_property("energy_std", at)
