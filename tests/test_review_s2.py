"""Regression tests for defects found in the session-2 review (one test per fixed behaviour)."""

import numpy as np
import pytest

from hybridpot import HybridPotential
from hybridpot.descriptors import PowerSpectrum
from hybridpot.regression import BayesianLinearRegressor, LinearRegressor
from hybridpot.uq import recalibrate

from conftest import emt_dataset


@pytest.fixture(scope="module")
def model_and_val():
    desc = PowerSpectrum(species=["Cu"], r_cut=4.0, n_max=3, l_max=2)
    model = HybridPotential(descriptor=desc, regressor=BayesianLinearRegressor())
    model.fit(emt_dataset(6, seed=21, reps=(1, 1, 1)))
    return model, emt_dataset(6, seed=22, reps=(1, 1, 1))


@pytest.mark.parametrize("method", ["nll", "coverage", "heteroscedastic",
                                    "heteroscedastic_coverage"])
def test_recalibrate_accepts_a_one_shot_iterator(model_and_val, method):
    """The heteroscedastic methods read the structures twice (σ, then sizes and groups): a
    generator such as ``ase.io.iread`` was exhausted by the first pass."""
    model, val = model_and_val
    from_list = recalibrate(model, list(val), method=method)
    from_iter = recalibrate(model, (a for a in val), method=method)
    assert from_iter.keys() == from_list.keys() == {"energy", "forces", "stress"}
    for kind, v in from_list.items():
        if isinstance(v, dict):
            assert from_iter[kind] == pytest.approx(v, rel=1e-9)
        else:
            assert from_iter[kind] == pytest.approx(v, rel=1e-12)


def _shifted(atoms, de, fit_weight=None):
    """Copy of ``atoms`` whose energy label is shifted by ``de`` (eV)."""
    from ase.calculators.singlepoint import SinglePointCalculator

    a = atoms.copy()
    a.calc = SinglePointCalculator(a, energy=atoms.get_potential_energy() + de,
                                   forces=atoms.get_forces(), stress=atoms.get_stress())
    if fit_weight is not None:
        a.info["fit_weight"] = fit_weight
    return a


@pytest.mark.parametrize("regressor", [BayesianLinearRegressor, LinearRegressor])
def test_zero_fit_weight_does_not_move_fitted_reference_energies(regressor):
    """``reference_energies="fit"``: the least-squares e0 used every energy label unweighted,
    so a structure with ``fit_weight = 0`` (e.g. an outlier label) still moved e0."""
    desc = PowerSpectrum(species=["Cu"], r_cut=4.0, n_max=3, l_max=2)
    data = emt_dataset(5, seed=3, reps=(2, 1, 1))
    test = emt_dataset(2, seed=24, reps=(2, 1, 1))

    def fit(structures):
        return HybridPotential(descriptor=desc, regressor=regressor()).fit(structures)

    ref = fit(data[1:])
    got = fit([_shifted(data[0], 50.0, fit_weight=0.0)] + data[1:])
    assert got.reference_energies_["Cu"] == pytest.approx(ref.reference_energies_["Cu"],
                                                          rel=1e-12)
    np.testing.assert_allclose(got.predict(test), ref.predict(test), rtol=1e-9)
    # a weight of 2 counts the structure twice, also in e0
    dup = fit(data + [data[0]])
    two = fit([_shifted(data[0], 0.0, fit_weight=2.0)] + data[1:])
    assert two.reference_energies_["Cu"] == pytest.approx(dup.reference_energies_["Cu"],
                                                          rel=1e-12)


def test_fitted_reference_energies_without_any_energy_weight_stay_unweighted():
    """``weights={"energy": 0}``: energies do not enter the regression, so e0 is still the
    unweighted least-squares fit of the energy labels (the only thing fixing the constant)."""
    desc = PowerSpectrum(species=["Cu"], r_cut=4.0, n_max=3, l_max=2)
    data = emt_dataset(4, seed=25, reps=(1, 1, 1))
    model = HybridPotential(descriptor=desc, regressor=LinearRegressor(),
                            weights={"energy": 0.0}).fit(data)
    e = np.array([a.get_potential_energy() / len(a) for a in data])
    n = np.array([len(a) for a in data], dtype=float)
    want = float(np.sum(e * n ** 2) / np.sum(n ** 2))  # lstsq of E_s = n_s e0
    assert model.reference_energies_["Cu"] == pytest.approx(want, rel=1e-10)


@pytest.mark.parametrize("method", ["nll", "heteroscedastic"])
def test_applying_a_new_committee_drops_the_stale_recalibration(method):
    """A recalibration is fitted to one committee's σ (its noise part, its RMS parameter σ);
    ``LinearPosterior.apply`` kept it on top of the new committee."""
    from hybridpot.uq import LinearPosterior

    desc = PowerSpectrum(species=["Cu"], r_cut=4.0, n_max=3, l_max=2)
    train = emt_dataset(6, seed=3, reps=(2, 1, 1))
    val = emt_dataset(4, seed=26, reps=(2, 1, 1))
    model = HybridPotential(descriptor=desc, regressor=BayesianLinearRegressor()).fit(train)
    post = LinearPosterior(n_steps=60, n_burn=20, random_state=0).fit(model, train)
    post.apply(model, force=True, random_state=0)
    raw = model._evaluate(val[0], return_std=True)["forces_std"]
    recalibrate(model, val, method=method)
    scaled = model._evaluate(val[0], return_std=True)["forces_std"]
    assert not np.allclose(scaled, raw, rtol=1e-3)
    post.apply(model, force=True, random_state=0)
    assert not hasattr(model, "uncertainty_scale_")
    assert not hasattr(model, "uncertainty_recalibration_")
    np.testing.assert_allclose(model._evaluate(val[0], return_std=True)["forces_std"], raw,
                               rtol=1e-12)


@pytest.mark.parametrize("change,match", [
    ({"k": 0.0}, r"must be finite and >= 0, with k > 0 and gamma in \[0\.02, 1\.0\]\. Got"),
    ({"gamma": 3.0}, r"with k > 0 and gamma in \[0\.02, 1\.0\]\. Got .*'gamma': 3\.0"),
])
def test_recalibration_state_rejects_zero_k_and_gamma_out_of_range(change, match):
    """A model file with k = 0 gave σ = 0 for every value (infinite z-scores) on load."""
    from hybridpot._exceptions import ModelFormatError
    from hybridpot.uq._calibration import check_recalibration_state

    p = {"a": 1.0, "a_pow": 0.0, "gamma": 1.0, "b": 1.0, "c": 0.0, "d": 0.0, "ref": 1.0,
         "k": 1.0}
    good = {"version": 2, "method": "heteroscedastic", "kinds": {"forces": p},
            "regressor_noise": False}
    assert check_recalibration_state(good) == good
    with pytest.raises(ModelFormatError, match=match):
        check_recalibration_state({**good, "kinds": {"forces": {**p, **change}}})
    with pytest.raises(ModelFormatError, match=r"has version True; this hybridpot reads "
                                               r"versions \[1, 2\]"):
        check_recalibration_state({**good, "version": True})
