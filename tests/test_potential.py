"""HybridPotential end to end: fit on EMT-labelled Cu, calculator derivatives, MD, files, errors."""

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.fd import calculate_numerical_forces, calculate_numerical_stress
from ase.calculators.singlepoint import SinglePointCalculator
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score

from hybridpot import (HybridPotential, InvalidParameterError, MissingLabelsError,
                       ModelFormatError, NotFittedError, UnknownSpeciesError)
from hybridpot.descriptors import PowerSpectrum
from hybridpot.regression import BayesianLinearRegressor, LinearRegressor

from conftest import emt_dataset, emt_label as _label

baselines = pytest.importorskip("hybridpot.baselines")


@pytest.fixture(scope="module")
def train():
    return emt_dataset(12, seed=1)


@pytest.fixture(scope="module")
def test_set():
    return emt_dataset(4, seed=2)


def make_model(**kw):
    desc = PowerSpectrum(species=["Cu"], r_cut=4.5, n_max=4, l_max=3)
    kw.setdefault("regressor", BayesianLinearRegressor())
    kw.setdefault("baseline", baselines.LennardJones(epsilon=0.02, sigma=2.3, r_cut=4.5))
    return HybridPotential(descriptor=desc, **kw)


@pytest.fixture(scope="module")
def fitted(train):
    return make_model().fit(train)


def test_fit_predicts_held_out_emt(fitted, test_set):
    m = fitted.evaluate(test_set)
    e_ref = np.array([a.get_potential_energy() for a in test_set])
    assert m["energy_mae"] < 5e-3, m  # eV/atom
    assert m["force_mae"] < 0.05, m  # eV/Å
    np.testing.assert_allclose(fitted.predict(test_set), e_ref, atol=5e-3 * 32)
    assert fitted.score(test_set) > -0.1


def test_calculator_forces_and_stress_match_finite_differences(fitted, test_set):
    at = test_set[0].copy()
    at.set_cell(at.cell.array @ np.array([[1, 0.05, 0], [0, 1, 0.03], [0, 0, 1]]),
                scale_atoms=True)
    at.calc = fitted.calculator()
    f = at.get_forces()
    np.testing.assert_allclose(f, calculate_numerical_forces(at, eps=1e-5), atol=2e-6)
    np.testing.assert_allclose(at.get_stress(), calculate_numerical_stress(at, eps=1e-6),
                               atol=2e-7)
    np.testing.assert_allclose(at.get_potential_energies().sum(), at.get_potential_energy(),
                               rtol=1e-12)
    # the calculator and predict_* agree
    np.testing.assert_allclose(fitted.predict_forces([at])[0], f, atol=1e-12)


def test_uncertainty_through_calculator(fitted, test_set):
    at = test_set[1].copy()
    at.calc = fitted.calculator(uncertainty=True)
    at.get_potential_energy()
    res = at.calc.results
    assert res["energy_std"] > 0
    assert res["forces_std"].shape == (len(at), 3) and np.all(res["forces_std"] > 0)
    assert res["stress_std"].shape == (6,)
    e, e_std = fitted.predict([at], return_std=True)
    np.testing.assert_allclose(e_std, [res["energy_std"]], rtol=1e-10)
    # mean of the uncertainty path equals the adjoint path
    at2 = test_set[1].copy()
    at2.calc = fitted.calculator()
    np.testing.assert_allclose(at.get_forces(), at2.get_forces(), atol=1e-9)


def test_nve_energy_conservation(fitted):
    from ase import units

    from hybridpot._compat import thermalize
    from ase.md.verlet import VelocityVerlet

    at = bulk("Cu", "fcc", a=3.61, cubic=True) * (3, 3, 3)  # 108 atoms
    at.rattle(stdev=0.02, seed=3)
    at.calc = fitted.calculator()
    thermalize(at, 300, np.random.default_rng(4))
    dt = 1.0
    dyn = VelocityVerlet(at, timestep=dt * units.fs)
    etot = []
    for _ in range(40):
        dyn.run(5)
        etot.append(at.get_total_energy() / len(at))
    etot = np.array(etot)
    t_ps = np.arange(len(etot)) * 5 * dt / 1000.0
    drift = abs(np.polyfit(t_ps, etot, 1)[0])  # eV/atom/ps
    assert drift < 1e-5, drift
    assert np.ptp(etot) < 1e-4


def test_save_load_round_trip(fitted, test_set, tmp_path):
    p = tmp_path / "cu.hpot"
    fitted.save(p)
    loaded = HybridPotential.load(p)
    np.testing.assert_array_equal(loaded.predict(test_set), fitted.predict(test_set))
    for a, b in zip(loaded.predict_forces(test_set), fitted.predict_forces(test_set)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(loaded.predict_stress(test_set),
                                  fitted.predict_stress(test_set))
    _, s1 = loaded.predict(test_set, return_std=True)
    _, s2 = fitted.predict(test_set, return_std=True)
    np.testing.assert_array_equal(s1, s2)


def test_load_rejects_newer_and_corrupt_files(fitted, tmp_path):
    import json
    import zipfile

    p = tmp_path / "m.hpot"
    fitted.save(p)
    with zipfile.ZipFile(p) as zf:
        doc = json.loads(zf.read("model.json"))
        arrays = zf.read("arrays.npz")
    doc["format_version"] = 99
    newer = tmp_path / "newer.hpot"
    with zipfile.ZipFile(newer, "w") as zf:
        zf.writestr("model.json", json.dumps(doc))
        zf.writestr("arrays.npz", arrays)
    with pytest.raises(ModelFormatError, match="version 99"):
        HybridPotential.load(newer)
    bad = tmp_path / "bad.hpot"
    bad.write_bytes(p.read_bytes()[:200])
    with pytest.raises(ModelFormatError, match="not a readable"):
        HybridPotential.load(bad)
    doc["format_version"] = 1
    doc["regressor"]["class"] = "os.system"
    evil = tmp_path / "evil.hpot"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("model.json", json.dumps(doc))
        zf.writestr("arrays.npz", arrays)
    with pytest.raises(ModelFormatError, match="Unknown regressor"):
        HybridPotential.load(evil)


def test_mixed_labels_with_and_without_stress(train, test_set):
    mixed = [a if k % 3 else _label(a, stress=False) for k, a in enumerate(train)]
    energy_only = _label(train[0])
    energy_only.calc = SinglePointCalculator(energy_only,
                                             energy=train[0].get_potential_energy())
    model = make_model().fit(mixed + [energy_only])
    assert model.evaluate(test_set)["force_mae"] < 0.06


def test_pure_ml_without_baseline_and_ridge(train, test_set):
    model = make_model(baseline=None, regressor=LinearRegressor()).fit(train)
    assert model.evaluate(test_set)["force_mae"] < 0.06
    with pytest.raises(InvalidParameterError, match="posterior"):
        model.predict(test_set, return_std=True)


def test_sklearn_model_selection(train):
    model = make_model(regressor=LinearRegressor())
    c = clone(model)
    assert c.get_params()["descriptor__n_max"] == 4
    scores = cross_val_score(model, train, cv=KFold(3))
    assert scores.shape == (3,) and np.all(np.isfinite(scores))
    gs = GridSearchCV(model, {"descriptor__l_max": [2, 3]}, cv=KFold(2)).fit(train)
    assert gs.best_params_["descriptor__l_max"] in (2, 3)


def test_bad_input_errors(train):
    with pytest.raises(NotFittedError, match="not fitted"):
        make_model().predict(train[:1])
    unlabelled = train[0].copy()
    unlabelled.calc = None
    with pytest.raises(MissingLabelsError, match="Structure 1 .* carries no label"):
        make_model().fit([train[1], unlabelled])
    nan_e = train[0].copy()
    nan_e.calc = SinglePointCalculator(nan_e, energy=float("nan"))
    with pytest.raises(MissingLabelsError, match="energy label of structure 0 is nan"):
        make_model().fit([nan_e])
    au = train[0].copy()
    au[0].symbol = "Au"
    au.calc = SinglePointCalculator(au, energy=-1.0)
    with pytest.raises(UnknownSpeciesError, match=r"The structure \w+ contains the element "
                       r"'Au' \(first at atom 0\), which .+ does not know; its elements are \["):
        make_model().fit([au])
    with pytest.raises(InvalidParameterError, match="'weights'"):
        make_model(weights={"energies": 1.0}).fit(train)
    with pytest.raises(InvalidParameterError, match="'descriptor'"):
        HybridPotential(descriptor="soap", regressor=LinearRegressor()).fit(train)


def test_per_group_noise_used_for_prediction(train, test_set):
    model = make_model(regressor=BayesianLinearRegressor(noise_groups=True)).fit(train)
    assert set(model.group_names_) == {"rattle", "strain"}
    at = test_set[0].copy()
    stds = {}
    for ct in ("rattle", "strain"):
        at.info["config_type"] = ct
        stds[ct] = model.predict([at], return_std=True)[1][0]
    noise = model.regressor_.noise_["energy"]
    # the observation-noise part of the energy std follows the structure's own group
    assert (stds["rattle"] > stds["strain"]) == (noise["rattle"] > noise["strain"])
    assert stds["rattle"] != stds["strain"]


def test_group_weights_zero_equals_leaving_the_group_out(train, test_set):
    """A group weight 0 removes that config_type's structures from the fit (and from e0)."""
    tagged = []
    for k, a in enumerate(train):
        a = a.copy()
        a.calc = SinglePointCalculator(a, **train[k].calc.results)
        a.info["config_type"] = "odd" if k % 2 else "even"
        tagged.append(a)
    kw = dict(regressor=LinearRegressor(alpha=1e-6))
    w0 = make_model(group_weights={"odd": 0.0}, **kw).fit(tagged)
    even = make_model(**kw).fit(tagged[::2])
    np.testing.assert_allclose(w0.predict(test_set), even.predict(test_set), rtol=0,
                               atol=1e-8 * len(test_set[0]))
    # one kind only: forces of "odd" at 0 still use its energies (a different fit)
    wf = make_model(group_weights={"odd": {"forces": 0.0}}, **kw).fit(tagged)
    assert not np.allclose(wf.predict(test_set), even.predict(test_set), atol=1e-6)


def test_group_weights_naming_no_training_group_warns(train):
    """A misspelt config_type in group_weights is reported (not silently ignored)."""
    tagged = [a.copy() for a in train[:4]]
    for k, a in enumerate(tagged):
        a.calc = SinglePointCalculator(a, **train[k].calc.results)
        a.info["config_type"] = "Surface"
    with pytest.warns(UserWarning, match=r"'group_weights' parameter of HybridPotential names "
                      r"config_type groups \['Surfce'\] that no training structure has .* "
                      r"the training groups are \['Surface'\]"):
        make_model(group_weights={"Surfce": 2.0}).fit(tagged)


def test_uncertainty_calculator_needs_a_posterior(train):
    """calculator(uncertainty=True) on a model without a posterior fails at once, naming
    the parameter (it used to fail at the first energy call)."""
    plain = make_model(regressor=LinearRegressor()).fit(train[:4])
    with pytest.raises(InvalidParameterError, match=r"The 'uncertainty' parameter of "
                       r"HybridCalculator needs a model with a posterior .* LinearRegressor "
                       r"has none\. Got uncertainty=True\."):
        plain.calculator(uncertainty=True)
    plain.calculator()            # without σ it is fine


def test_reference_energies_dict_must_name_every_element(train):
    desc = PowerSpectrum(species=["Cu", "Ni"], r_cut=4.5, n_max=3, l_max=2)
    with pytest.raises(InvalidParameterError, match=r"must give every element of the "
                       r"descriptor species \['Cu', 'Ni'\] .* Missing: \['Ni'\]"):
        HybridPotential(descriptor=desc, regressor=LinearRegressor(),
                        reference_energies={"Cu": -3.5}).fit(train[:3])
    with pytest.raises(InvalidParameterError, match=r"reference_energies\['Ni'\]"):
        HybridPotential(descriptor=desc, regressor=LinearRegressor(),
                        reference_energies={"Cu": -3.5, "Ni": float("nan")}).fit(train[:3])
    m = HybridPotential(descriptor=desc, regressor=LinearRegressor(),
                        reference_energies={"Cu": -3.5, "Ni": 0.0}).fit(train[:3])
    assert m.reference_energies_ == {"Cu": -3.5, "Ni": 0.0}


def test_score_needs_energy_or_force_labels(fitted, test_set):
    """Stress labels alone are not scored (the score was 0, a perfect score)."""
    only_stress = []
    for a in test_set[:2]:
        b = a.copy()
        b.calc = SinglePointCalculator(b, stress=a.get_stress())
        only_stress.append(b)
    with pytest.raises(MissingLabelsError, match="needs structures with energy or force "
                       "labels"):
        fitted.score(only_stress)
    assert fitted.score(test_set) < 0
