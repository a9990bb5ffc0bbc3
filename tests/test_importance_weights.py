"""Per-structure fit weights (atoms.info["fit_weight"]) and the importance weights of
hybridpot.learn that make an actively selected training set represent the pool."""

import numpy as np
import pytest

from conftest import emt_dataset
from hybridpot import HybridPotential, InvalidParameterError
from hybridpot.descriptors import PowerSpectrum
from hybridpot.learn import importance_weights, importance_weights_from_fingerprints
from hybridpot.regression import LinearRegressor


def _model():
    return HybridPotential(descriptor=PowerSpectrum(species=["Cu"], r_cut=4.0, n_max=3,
                                                    l_max=2),
                           regressor=LinearRegressor(alpha=1e-8),
                           weights={"energy": 1.0, "forces": 1.0, "stress": 0.1},
                           reference_energies=None)


@pytest.fixture(scope="module")
def data():
    return emt_dataset(5, seed=3, reps=(2, 1, 1))


def _with_weight(atoms, w):
    a = atoms.copy()
    a.calc = atoms.calc
    a.info["fit_weight"] = w
    return a


def test_zero_fit_weight_equals_dropping_the_structure(data):
    ref = _model().fit(data[1:]).regressor_.coef_
    got = _model().fit([_with_weight(data[0], 0.0)] + data[1:]).regressor_.coef_
    np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-12)


def test_fit_weight_two_equals_a_duplicate(data):
    # the weighted loss of w=2 is the loss with the structure twice; the penalty scaling
    # (column RMS over rows) differs slightly, hence the tiny alpha; compare predictions
    # (eV/Å), the coefficients of this small basis are ill-conditioned
    def forces(model):
        return np.concatenate([f.ravel() for f in model.predict_forces(data)])

    ref = forces(_model().fit(data + [data[0]]))
    got = forces(_model().fit([_with_weight(data[0], 2.0)] + data[1:]))
    unweighted = forces(_model().fit(data))
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-6)
    assert np.max(np.abs(unweighted - ref)) > 100 * np.max(np.abs(got - ref))


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf"), "2", True])
def test_bad_fit_weight(data, bad):
    with pytest.raises(InvalidParameterError,
                       match=r"'fit_weight' entry of atoms.info of training structure 1 "
                             r"must be a float in \[0, inf\)\. Got"):
        _model().fit([data[0], _with_weight(data[1], bad)])


def test_nearest_weights_closed_form():
    # labelled at 0 and 10 on a line; reference 0, 1, 2, 9 (3 nearest to 0, 1 nearest to 10)
    lab = np.array([[0.0], [10.0]])
    ref = np.array([[0.0], [1.0], [2.0], [9.0]])
    w = importance_weights_from_fingerprints(lab, ref, method="nearest")
    # (1 + 3) : (1 + 1), scaled to mean 1
    np.testing.assert_allclose(w, [4 / 3, 2 / 3])


def test_strata_weights_closed_form():
    # two well separated clusters; the reference is 3:1, the labelled set 1:3
    lab = np.array([[0.0], [100.0], [100.1], [100.2]])
    ref = np.array([[0.1], [0.2], [0.3], [100.3]])
    w = importance_weights_from_fingerprints(lab, ref, method="strata", n_strata=2)
    # ratio (3/4)/(1/4) = 3 for the first, (1/4)/(3/4) = 1/3 for the others; mean 1
    raw = np.array([3.0, 1 / 3, 1 / 3, 1 / 3])
    np.testing.assert_allclose(w, raw * 4 / raw.sum())
    assert w.mean() == pytest.approx(1.0)


def test_importance_weights_down_weight_an_oversampled_region():
    # reference: 12 lightly and 4 strongly rattled cells; labelled: 1 light, 3 strong
    light = emt_dataset(13, seed=11, reps=(2, 1, 1))
    strong = [a for a in emt_dataset(7, seed=12, reps=(2, 1, 1))]
    for a in strong:
        a.positions += np.random.default_rng(0).normal(0, 0.25, a.positions.shape)
    model = _model()
    for method in ("nearest", "strata"):
        w = importance_weights(model, [light[0]] + strong[:3], light[1:] + strong[3:],
                               method=method, n_strata=2)
        assert w.shape == (4,)
        assert w.mean() == pytest.approx(1.0)
        assert w[0] > 2 * w[1:].max(), (method, w)


def test_importance_weight_errors():
    fp = np.zeros((3, 2))
    with pytest.raises(InvalidParameterError,
                       match=r"'method' parameter of importance_weights must be one of "
                             r"\['nearest', 'strata'\]\. Got 'voronoi'"):
        importance_weights_from_fingerprints(fp, fp, method="voronoi")
    with pytest.raises(InvalidParameterError,
                       match=r"'reference_fp' argument of importance_weights must be a finite "
                             r"2-D array with at least one row\. Got shape \(0, 2\)"):
        importance_weights_from_fingerprints(fp, np.zeros((0, 2)))
    with pytest.raises(InvalidParameterError, match=r"same number of columns\. Got 2 and 3"):
        importance_weights_from_fingerprints(fp, np.zeros((3, 3)))
    with pytest.raises(InvalidParameterError, match="n_strata"):
        importance_weights_from_fingerprints(fp, fp, method="strata", n_strata=0)
    with pytest.raises(InvalidParameterError,
                       match=r"'labelled' and 'reference' arguments of importance_weights "
                             r"must be non-empty lists of ase.Atoms\. Got 0 and 1"):
        importance_weights(_model(), [], emt_dataset(1, seed=1, reps=(2, 1, 1)))
    with pytest.raises(InvalidParameterError,
                       match=r"'model' argument of importance_weights must be a "
                             r"HybridPotential or a descriptor\. Got int"):
        importance_weights(3, emt_dataset(1, seed=1, reps=(2, 1, 1)),
                           emt_dataset(1, seed=2, reps=(2, 1, 1)))
