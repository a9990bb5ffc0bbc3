"""EnsembleRegressor: committees of one regressor under different random states.

Members fitted in the shared passes equal the same regressor fitted alone; predictions are the
members' mean; the predictive std is the mixture's; the Dask fit equals the serial one; bad
parameters and corrupt model files give typed errors.  (The scikit-learn contract, forces by
finite differences and the save/load round trip are in test_regressor_contract.py.)
"""

import numpy as np
import pytest

from hybridpot import HybridPotential, InvalidParameterError
from hybridpot import regression as R
from hybridpot._exceptions import ModelFormatError
from hybridpot.baselines import LennardJones
from hybridpot.config import build_regressor, load_config
from hybridpot.descriptors import PowerSpectrum

from conftest import emt_dataset


@pytest.fixture(scope="module")
def data():
    return emt_dataset(8, seed=31), emt_dataset(3, seed=32)


def _model(reg, **kw):
    return HybridPotential(PowerSpectrum(species=["Cu"], r_cut=4.2, n_max=3, l_max=2), reg,
                           LennardJones(epsilon=0.02, sigma=2.3, r_cut=4.2), chunk_size=3, **kw)


def _gp(**kw):
    return R.SparseGPRegressor(kernel="se", n_sparse=15, length_scale=2.0, **kw)


def _member_models(model):
    """Each fitted member of ``model``'s ensemble as a HybridPotential of its own."""
    return [HybridPotential.from_fitted(model.descriptor, m, baseline=model.baseline,
                                        reference_energies=model.reference_energies_)
            for m in model.regressor_.estimators_]


@pytest.fixture(scope="module")
def gp_ensemble(data):
    return _model(R.EnsembleRegressor(estimator=_gp(), n_models=3, random_state=5)).fit(data[0])


def test_members_equal_the_regressor_fitted_alone(gp_ensemble, data):
    ens = gp_ensemble.regressor_
    assert ens.random_states_ == [5, 6, 7]
    for k, member in enumerate(ens.estimators_):
        alone = _model(_gp(random_state=5 + k)).fit(data[0]).regressor_
        np.testing.assert_array_equal(member.inducing_, alone.inducing_)
        np.testing.assert_allclose(member.coef_, alone.coef_, rtol=1e-10,
                                   atol=1e-12 * np.abs(alone.coef_).max())
    # the random states differ, so do the inducing sets (otherwise the ensemble is pointless)
    assert not np.array_equal(ens.estimators_[0].inducing_, ens.estimators_[1].inducing_)


def test_predictions_are_the_members_mean(gp_ensemble, data):
    test = data[1]
    members = _member_models(gp_ensemble)
    e = np.mean([m.predict(test) for m in members], axis=0)
    np.testing.assert_allclose(gp_ensemble.predict(test), e, rtol=1e-12)
    f_members = [m.predict_forces(test) for m in members]
    for s, f in enumerate(gp_ensemble.predict_forces(test)):
        np.testing.assert_allclose(f, np.mean([fm[s] for fm in f_members], axis=0),
                                   atol=1e-12)
    # the calculator (adjoint path) gives the same forces as predict_batch
    at = test[0].copy()
    at.calc = gp_ensemble.calculator()
    np.testing.assert_allclose(at.get_forces(), gp_ensemble.predict_forces([test[0]])[0],
                               atol=1e-10)


def test_std_is_the_mixture_std(gp_ensemble, data):
    test = data[1]
    members = _member_models(gp_ensemble)
    mu, sd = zip(*[m.predict(test, return_std=True) for m in members])
    mu, sd = np.array(mu), np.array(sd)
    want = np.sqrt(np.mean(sd ** 2, axis=0) + mu.var(axis=0))
    _, got = gp_ensemble.predict(test, return_std=True)
    np.testing.assert_allclose(got, want, rtol=1e-10)
    # never narrower than the members' root-mean-square std
    assert np.all(got >= np.sqrt(np.mean(sd ** 2, axis=0)) * (1 - 1e-12))
    fmu, fsd = zip(*[m.predict_forces(test, return_std=True) for m in members])
    _, fgot = gp_ensemble.predict_forces(test, return_std=True)
    for s in range(len(test)):
        m_ = np.array([f[s] for f in fmu])
        s_ = np.array([f[s] for f in fsd])
        np.testing.assert_allclose(fgot[s], np.sqrt(np.mean(s_ ** 2, axis=0) + m_.var(axis=0)),
                                   rtol=1e-10)
    # the ASE calculator reports the same std (what MD sees)
    at = test[0].copy()
    at.calc = gp_ensemble.calculator(uncertainty=True)
    at.get_forces()
    np.testing.assert_allclose(at.calc.results["forces_std"], fgot[0], rtol=1e-10)
    np.testing.assert_allclose(at.calc.results["energy_std"], got[0], rtol=1e-10)


def test_committee_std_for_members_without_posterior(data):
    nn = R.NeuralNetworkRegressor(hidden_layer_sizes=(6,), max_iter=40, n_models=1)
    with pytest.warns(Warning, match="without converging"):
        model = _model(R.EnsembleRegressor(estimator=nn, n_models=3, random_state=0)).fit(
            data[0])
    assert model.regressor_.has_uncertainty
    members = _member_models(model)
    e = np.array([m.predict(data[1]) for m in members])
    assert e.std(axis=0).min() > 0          # members differ (different initial weights)
    mean, std = model.predict(data[1], return_std=True)
    np.testing.assert_allclose(mean, e.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(std, e.std(axis=0, ddof=1), rtol=1e-10)
    with pytest.warns(Warning, match="without converging"):
        single = _model(R.EnsembleRegressor(estimator=nn, n_models=1, random_state=0)).fit(
            data[0])
    assert not single.regressor_.has_uncertainty
    with pytest.raises(InvalidParameterError, match="n_models"):
        single.predict(data[1], return_std=True)


def test_seeds():
    assert R.EnsembleRegressor(n_models=3, random_state=10)._member_seeds() == [10, 11, 12]
    a = R.EnsembleRegressor(n_models=4, random_state=np.random.default_rng(1))._member_seeds()
    b = R.EnsembleRegressor(n_models=4, random_state=np.random.default_rng(1))._member_seeds()
    assert a == b and len(set(a)) == 4
    fresh = R.EnsembleRegressor(n_models=4)._member_seeds()
    assert len(set(fresh)) == 4
    assert isinstance(R.EnsembleRegressor()._template, R.SparseGPRegressor)


@pytest.mark.parametrize("kw, match", [
    ({"estimator": "gp"}, "'estimator' parameter of EnsembleRegressor must be a hybridpot "
                          "Regressor instance.*Got str"),
    ({"estimator": R.LinearRegressor()}, "must take a 'random_state'.*LinearRegressor has none"),
    ({"n_models": 0}, "n_models"),
    ({"n_models": 2.5}, "n_models"),
    ({"random_state": -1}, "'random_state' parameter of EnsembleRegressor.*Got -1"),
])
def test_bad_parameters(data, kw, match):
    with pytest.raises(InvalidParameterError, match=match):
        _model(R.EnsembleRegressor(**kw)).fit(data[0])


def test_not_fitted_and_bad_batch(gp_ensemble):
    from hybridpot._exceptions import NotFittedError

    with pytest.raises(NotFittedError, match="EnsembleRegressor"):
        R.EnsembleRegressor().atomic_energy(np.zeros((1, 3)), np.zeros(1, dtype=int))
    with pytest.raises(InvalidParameterError, match="'batch' argument of EnsembleRegressor"):
        gp_ensemble.regressor_.predict_batch({"X": 1})
    n = gp_ensemble.regressor_.n_features_in_
    with pytest.raises(InvalidParameterError, match=rf"shape \(n_atoms, {n}\)"):
        gp_ensemble.regressor_.atomic_energy(np.zeros((2, n + 1)), np.zeros(2, dtype=int))


def test_save_load_and_corrupt_state(gp_ensemble, data, tmp_path):
    p = tmp_path / "ens.hpot"
    gp_ensemble.save(p)
    loaded = HybridPotential.load(p)
    assert loaded.regressor_.random_states_ == [5, 6, 7]
    assert loaded.regressor_.to_dict() == gp_ensemble.regressor_.to_dict()
    np.testing.assert_array_equal(loaded.predict(data[1], return_std=True)[1],
                                  gp_ensemble.predict(data[1], return_std=True)[1])
    state, arrays = gp_ensemble.regressor_.get_fitted_state()
    reg = R.EnsembleRegressor.from_dict_params(gp_ensemble.regressor_.to_dict()["params"])
    with pytest.raises(ModelFormatError, match="n_models=3 but the state holds 2 member"):
        reg.set_fitted_state({**state, "members": state["members"][:2],
                              "random_states": state["random_states"][:2]}, arrays)
    with pytest.raises(ModelFormatError, match="incomplete or corrupt"):
        reg.set_fitted_state({"members": state["members"]}, arrays)
    with pytest.raises(ValueError, match="nested 'estimator'"):
        R.EnsembleRegressor.from_dict_params({"estimator": {"class": "os.system"}})


def test_dask_fit_equals_serial(dask_client, data, gp_ensemble):
    pytest.importorskip("distributed")
    dask = _model(R.EnsembleRegressor(estimator=_gp(), n_models=3, random_state=5)).fit(
        data[0], client=dask_client)
    for a, b in zip(dask.regressor_.estimators_, gp_ensemble.regressor_.estimators_):
        np.testing.assert_array_equal(a.inducing_, b.inducing_)
        # the same rows reduced in another order: round-off only (the small test GP's
        # whitened weights are ~1e5, so compare relative to their size)
        np.testing.assert_allclose(a.coef_, b.coef_, rtol=1e-5,
                                   atol=1e-8 * np.abs(b.coef_).max())
    np.testing.assert_allclose(dask.predict(data[1]), gp_ensemble.predict(data[1]),
                               rtol=1e-7)     # 0.2 µeV; 2e-9 seen with other BLAS kernels


def test_dask_fallback_for_members_without_streamed_fit(dask_client, data):
    pytest.importorskip("distributed")
    nn = R.NeuralNetworkRegressor(hidden_layer_sizes=(6,), max_iter=20)
    reg = R.EnsembleRegressor(estimator=nn, n_models=2, random_state=0)
    assert reg._fit_passes == ()
    with pytest.warns(Warning, match="without converging"):
        serial = _model(reg).fit(data[0])
    with pytest.warns(Warning, match="without converging"):
        dask = _model(reg).fit(data[0], client=dask_client)
    np.testing.assert_allclose(dask.predict(data[1]), serial.predict(data[1]), rtol=1e-10)


def test_config_builds_nested_estimator(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[regressor]\ntype = "EnsembleRegressor"\nn_models = 2\nrandom_state = 3\n'
                   '[regressor.estimator]\ntype = "SparseGPRegressor"\nkernel = "se"\n'
                   'n_sparse = 40\n')
    reg = build_regressor(load_config(cfg))
    assert isinstance(reg, R.EnsembleRegressor) and reg.n_models == 2
    assert isinstance(reg.estimator, R.SparseGPRegressor)
    assert reg.estimator.n_sparse == 40 and reg.estimator.kernel == "se"
    bad = tmp_path / "bad.toml"
    bad.write_text('[regressor]\ntype = "EnsembleRegressor"\n[regressor.estimator]\n'
                   'type = "Nope"\n')
    from hybridpot.config import ConfigError

    with pytest.raises(ConfigError, match="regressor.estimator.type must be one of"):
        build_regressor(load_config(bad))
