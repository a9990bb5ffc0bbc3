"""The Dask fit path gives the serial result (design reduced on the workers)."""

import numpy as np
import pytest

from hybridpot import HybridPotential
from hybridpot.baselines import LennardJones
from hybridpot.descriptors import PowerSpectrum
from hybridpot.regression import BayesianLinearRegressor, LinearRegressor, NeuralNetworkRegressor

from conftest import emt_dataset

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def data():
    return emt_dataset(9, seed=21), emt_dataset(2, seed=22)


def _model(reg, **kw):
    return HybridPotential(PowerSpectrum(species=["Cu"], r_cut=4.2, n_max=3, l_max=3), reg,
                           LennardJones(epsilon=0.02, sigma=2.3, r_cut=4.2), chunk_size=2,
                           **kw)


@pytest.mark.parametrize("reg", [LinearRegressor(alpha=1e-6),
                                 BayesianLinearRegressor(noise_groups=True),
                                 LinearRegressor(quadratic=True)])
def test_dask_fit_equals_serial(dask_client, data, reg):
    train, test = data
    serial = _model(reg).fit(train)
    dask = _model(reg).fit(train, client=dask_client)
    np.testing.assert_allclose(dask.regressor_.coef_, serial.regressor_.coef_,
                               rtol=1e-7, atol=1e-10 * np.abs(serial.regressor_.coef_).max())
    np.testing.assert_allclose(dask.predict(test), serial.predict(test), rtol=1e-11)
    for a, b in zip(dask.predict_forces(test), serial.predict_forces(test)):
        np.testing.assert_allclose(a, b, atol=1e-8)
    if hasattr(serial.regressor_, "noise_"):
        assert dask.regressor_.noise_.keys() == serial.regressor_.noise_.keys()


def test_dask_fallback_for_non_streamed_regressor(dask_client, data):
    train, test = data
    reg = NeuralNetworkRegressor(hidden_layer_sizes=(6,), max_iter=30, random_state=0)
    with pytest.warns(Warning, match="without converging"):
        serial = _model(reg).fit(train)
    with pytest.warns(Warning, match="without converging"):
        dask = _model(reg).fit(train, client=dask_client)
    np.testing.assert_allclose(dask.predict(test), serial.predict(test), rtol=1e-10)


@pytest.mark.slow
def test_embedded_local_cluster_with_processes(data):
    train, test = data
    serial = _model(LinearRegressor()).fit(train)
    par = _model(LinearRegressor(), n_workers=2).fit(train)
    np.testing.assert_allclose(par.predict(test), serial.predict(test), rtol=1e-11)
