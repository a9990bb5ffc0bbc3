"""Contract suite run on every regressor through HybridPotential (issue: GP/NN regressors).

scikit-learn conventions (clone, get_params/set_params, fitted attributes end in ``_``, fit
returns self), GridSearchCV and cross_val_score on a list of Atoms, forces = -dE/dr by finite
differences through the calculator, stress = strain derivative, determinism under
random_state, save/load round trip.
"""

import inspect

import numpy as np
import pytest
from ase.calculators.fd import calculate_numerical_forces, calculate_numerical_stress
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score

from hybridpot import HybridPotential
from hybridpot import regression as R
from hybridpot.baselines import LennardJones
from hybridpot.descriptors import PowerSpectrum

from conftest import emt_dataset


def _cases():
    cases = {
        "LinearRegressor": (lambda: R.LinearRegressor(alpha=1e-8), "alpha", [1e-8, 1e-4]),
        "LinearRegressor-quadratic": (lambda: R.LinearRegressor(quadratic=True, alpha=1e-6),
                                      "alpha", [1e-6, 1e-3]),
        "BayesianLinearRegressor": (lambda: R.BayesianLinearRegressor(), "quadratic",
                                    [False, True]),
        "ARDLinearRegressor": (lambda: R.ARDLinearRegressor(), "threshold_lambda",
                               [1e4, 1e6]),
        "NeuralNetworkRegressor": (
            lambda: R.NeuralNetworkRegressor(hidden_layer_sizes=(8,), max_iter=60, n_models=2,
                                             random_state=0), "alpha", [1e-6, 1e-3]),
    }
    if hasattr(R, "SparseGPRegressor"):
        cases["SparseGPRegressor"] = (
            lambda: R.SparseGPRegressor(n_sparse=20, random_state=0), "zeta", [2, 4])
    cases["EnsembleRegressor"] = (
        lambda: R.EnsembleRegressor(estimator=R.SparseGPRegressor(n_sparse=20), n_models=2,
                                    random_state=0), "n_models", [2, 3])
    return cases


def _comparable(params):
    """``get_params()`` with nested estimators replaced by their ``to_dict()`` (estimator
    objects compare by identity)."""
    from sklearn.base import BaseEstimator

    return {k: (v.to_dict() if isinstance(v, BaseEstimator) else v) for k, v in params.items()}


CASES = _cases()
NAMES = sorted(CASES)
# the small networks here are not trained to convergence: these tests check conventions
pytestmark = pytest.mark.filterwarnings(
    "ignore:.*without converging:sklearn.exceptions.ConvergenceWarning")


@pytest.fixture(scope="module")
def data():
    return emt_dataset(8, seed=11), emt_dataset(2, seed=12)


def _model(reg):
    return HybridPotential(
        descriptor=PowerSpectrum(species=["Cu"], r_cut=4.2, n_max=3, l_max=2),
        regressor=reg, baseline=LennardJones(epsilon=0.02, sigma=2.3, r_cut=4.2))


@pytest.fixture(scope="module", params=NAMES)
def fitted(request, data):
    train, _ = data
    reg = CASES[request.param][0]()
    model = _model(reg)
    returned = model.fit(train)
    return request.param, model, returned


def test_sklearn_conventions(fitted):
    name, model, returned = fitted
    assert returned is model
    reg = CASES[name][0]()
    params = reg.get_params()
    sig = inspect.signature(type(reg).__init__)
    assert all(p.kind == p.KEYWORD_ONLY for n, p in sig.parameters.items() if n != "self")
    assert set(reg.get_params(deep=False)) == {n for n in sig.parameters if n != "self"}
    c = clone(reg)
    assert _comparable(c.get_params()) == _comparable(params) and c is not reg
    key, values = CASES[name][1], CASES[name][2]
    c.set_params(**{key: values[1]})
    assert c.get_params()[key] == values[1]
    fitted_attrs = [a for a in vars(model.regressor_) if a.endswith("_") and not a.startswith("_")]
    assert fitted_attrs, "a fitted regressor has attributes ending in '_'"
    assert not any(a.endswith("_") and not a.startswith("_") for a in vars(model.regressor)), \
        "fit must not modify the unfitted regressor given as a parameter"


def test_forces_and_stress_are_energy_derivatives(fitted, data):
    _, model, _ = fitted
    at = data[1][0].copy()
    at.calc = model.calculator()
    f = at.get_forces()
    fd = calculate_numerical_forces(at, eps=1e-5)
    np.testing.assert_allclose(f, fd, atol=1e-6 + 1e-5 * np.abs(fd).max())
    s = at.get_stress()
    sfd = calculate_numerical_stress(at, eps=1e-6)
    np.testing.assert_allclose(s, sfd, atol=1e-7 + 1e-5 * np.abs(sfd).max())


def test_reasonable_accuracy(fitted, data):
    _, model, _ = fitted
    m = model.evaluate(data[1])
    assert m["force_mae"] < 0.15, m  # EMT Cu forces are ~0.5 eV/Å in these cells
    assert m["energy_mae"] < 0.02, m


def test_deterministic_under_random_state(fitted, data):
    name, model, _ = fitted
    again = _model(CASES[name][0]()).fit(data[0])
    np.testing.assert_allclose(again.predict(data[1]), model.predict(data[1]), rtol=0,
                               atol=1e-10)


def test_save_load_round_trip(fitted, data, tmp_path):
    _, model, _ = fitted
    p = tmp_path / "m.hpot"
    model.save(p)
    loaded = HybridPotential.load(p)
    # hyperparameters come back with their types (tuples stay tuples through JSON)
    assert _comparable(loaded.regressor_.get_params()) == \
        _comparable(model.regressor_.get_params())
    np.testing.assert_array_equal(loaded.predict(data[1]), model.predict(data[1]))
    for a, b in zip(loaded.predict_forces(data[1]), model.predict_forces(data[1])):
        np.testing.assert_array_equal(a, b)
    if getattr(model.regressor_, "has_uncertainty", False):
        np.testing.assert_allclose(loaded.predict(data[1], return_std=True)[1],
                                   model.predict(data[1], return_std=True)[1], rtol=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_model_selection_on_atoms(name, data):
    train, _ = data
    model = _model(CASES[name][0]())
    key, values = CASES[name][1], CASES[name][2]
    scores = cross_val_score(model, train, cv=KFold(2))
    assert np.all(np.isfinite(scores))
    gs = GridSearchCV(model, {f"regressor__{key}": values}, cv=KFold(2)).fit(train)
    assert gs.best_params_[f"regressor__{key}"] in values
    assert np.isfinite(gs.best_estimator_.predict(train[:1])).all()
