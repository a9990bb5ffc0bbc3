"""Numerics of the evidence maximisation on degenerate but legal training sets.

- Labels the baseline already reproduces: the ML correction is ~0, so the updates of the
  prior precision divide by a squared weight norm ~0; they must reach their cap without an
  overflow warning (an error under the test suite's ``filterwarnings = error``) and give the
  baseline's predictions.
- Every training structure with the same composition (a compound, an ordered alloy): the
  difference of the per-element constants is not determined by the data, its posterior
  variance is huge, and the several-noise-level iteration must still converge.
"""
import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT

from conftest import emt_dataset, emt_label
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


def _cu4ni4_cells(n, seed):
    """``n`` rattled, strained 8-atom Cu4Ni4 cells (a different Ni arrangement each)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        at = bulk("Cu", "fcc", a=3.58, cubic=True) * (2, 1, 1)
        sym = np.array(["Cu"] * 8)
        sym[rng.choice(8, 4, replace=False)] = "Ni"
        at.set_chemical_symbols(sym.tolist())
        at.set_cell(at.cell[:] @ (np.eye(3) + rng.normal(0, 0.02, (3, 3))), scale_atoms=True)
        at.rattle(0.05, seed=int(rng.integers(1 << 30)))
        out.append(emt_label(at))
    return out


@pytest.mark.parametrize("accelerate", [False, True])
def test_bayesian_linear_converges_at_one_fixed_composition(accelerate):
    cells = _cu4ni4_cells(10, seed=0)
    reg = BayesianLinearRegressor(accelerate=accelerate)
    model = HybridPotential(descriptor=PowerSpectrum(species=["Cu", "Ni"], r_cut=4.0,
                                                     n_max=2, l_max=2), regressor=reg)
    model.fit(cells)            # no ConvergenceWarning (an error here)
    assert model.regressor_.n_iter_ < 200
    # the fit is good where the data are: Cu4Ni4 cells it has not seen
    test = _cu4ni4_cells(4, seed=1)
    err = (model.predict(test) - np.array([a.get_potential_energy() for a in test])) / 8
    assert np.max(np.abs(err)) < 0.01
