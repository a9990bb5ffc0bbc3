"""Fits whose labels the baseline already reproduces: the ML correction is ~0.

The evidence updates of the prior precision divide by the weights' squared norm, which is
then ~0; they must reach their cap without an overflow warning (an error under the test
suite's ``filterwarnings = error``) and give the baseline's predictions.
"""
import numpy as np
import pytest
from ase.calculators.emt import EMT

from conftest import emt_dataset
from hybridpot import HybridPotential
from hybridpot.baselines import ASEBaseline
from hybridpot.descriptors import PowerSpectrum
from hybridpot.regression import BayesianLinearRegressor, SparseGPRegressor


@pytest.fixture(scope="module")
def cells():
    return emt_dataset(4, seed=3)


@pytest.mark.parametrize("reg", [
    BayesianLinearRegressor(),                                   # one noise per kind
    BayesianLinearRegressor(accelerate=True),                    # Anderson-accelerated
    BayesianLinearRegressor(noise_levels="shared"),              # one noise: SVD iteration
    SparseGPRegressor(n_sparse=20, random_state=0),
], ids=["blr_kind", "blr_kind_anderson", "blr_shared", "sparse_gp"])
def test_fit_to_labels_the_baseline_reproduces(cells, reg):
    model = HybridPotential(descriptor=PowerSpectrum(species=["Cu"], r_cut=4.0, n_max=3,
                                                     l_max=2),
                            regressor=reg, baseline=ASEBaseline(EMT()))
    model.fit(cells)            # no RuntimeWarning (overflow in the precision update)
    ref = np.array([a.get_potential_energy() for a in cells])
    np.testing.assert_allclose(model.predict(cells), ref, rtol=0, atol=1e-6)
    for f, a in zip(model.predict_forces(cells), cells):
        np.testing.assert_allclose(f, a.get_forces(), rtol=0, atol=1e-6)
    # the prior precision of the (vanishing) weights sits at its cap
    alpha = getattr(model.regressor_, "alpha_", None)
    if alpha is not None:
        assert float(np.max(alpha)) == pytest.approx(1e12)
