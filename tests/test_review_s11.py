"""Regression tests of the s11 code review (per-atom virials, SNAP flags, model files)."""

import numpy as np
import pytest
from ase.calculators.lj import LennardJones as AseLJ

from conftest import skewed_two_element_cell
from hybridpot import InvalidParameterError
from hybridpot.baselines import EMT, ZBL, ASEBaseline, LennardJones
from hybridpot.descriptors import PowerSpectrum

SPECIES = ["Cu", "Ni"]


def _cell(seed=0):
    return skewed_two_element_cell(seed=seed) * (2, 1, 1)


@pytest.mark.parametrize("make", [
    EMT, lambda: ZBL(r_inner=1.2, r_cut=2.6),
    lambda: LennardJones(epsilon=0.02, sigma=2.2, r_cut=4.5),
    lambda: ASEBaseline(AseLJ(sigma=2.2, epsilon=0.02, rc=4.5)),
], ids=["EMT", "ZBL", "LennardJones", "ASEBaseline"])
def test_baseline_virials_flag_accepts_numpy_bools_and_names_false(make):
    """numpy booleans (e.g. from a mask or a config array) mean what the Python ones do; the
    error of a bad value says that False / None turn the virials off (was: "must be True,
    'half' or 'centroid'. Got np.False_ instead.", although False is the default)."""
    base, at = make(), _cell()
    assert "virials" not in base.compute(at, virials=np.False_)
    assert "virials" not in base.compute(at, virials=None)
    W = base.compute(at, virials=np.True_)["virials"]
    np.testing.assert_array_equal(W, base.compute(at, virials=True)["virials"])
    np.testing.assert_array_equal(W, base.compute(at, virials="half")["virials"])
    name = type(base).__name__
    with pytest.raises(InvalidParameterError,
                       match=rf"'virials' argument of {name}.compute must be True, 'half' or "
                             r"'centroid'. Got 1 instead \(False or None: no per-atom "
                             r"virials\)"):
        base.compute(at, virials=1)


def test_descriptor_backward_atomic_virials_numpy_bools(rng):
    d = PowerSpectrum(species=SPECIES, r_cut=4.0, n_max=2, l_max=1)
    at = _cell(1)
    w = rng.normal(size=(len(at), d.n_features))
    plain = d.backward(at, w, atomic_virials=np.False_)
    assert len(plain) == 2
    dE_dr, dE_deps, W = d.backward(at, w, atomic_virials=np.True_)
    np.testing.assert_allclose(W.sum(0), dE_deps, rtol=0, atol=1e-12 * np.abs(W).max())
    np.testing.assert_array_equal(dE_dr, plain[0])
    with pytest.raises(InvalidParameterError, match=r"'atomic_virials' argument of "
                                                    r"PowerSpectrum.backward must be True, "
                                                    r"'half' or 'centroid'. Got 'full' "
                                                    r"instead \(False or None"):
        d.backward(at, w, atomic_virials="full")
