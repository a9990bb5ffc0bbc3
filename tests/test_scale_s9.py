"""Scale review (s9): behaviour that must not depend on memory-saving code paths.

Each test compares a memory-lean path with the straightforward (dense / unchunked) one, and,
where it is robust, bounds the numpy allocations (tracemalloc) relative to the output size.
"""

import tracemalloc

import numpy as np
import pytest

from hybridpot.regression import BayesianLinearRegressor, LinearRegressor
from hybridpot.regression._design import feature_map, quadratic_index


def _numpy_peak(fn):
    """Result of ``fn()`` and the peak of traced (numpy) allocations during it, in bytes."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        out = fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return out, peak


@pytest.mark.parametrize("cls", [LinearRegressor, BayesianLinearRegressor])
@pytest.mark.parametrize("quadratic", [False, True])
def test_atomic_energy_matches_feature_map_and_is_lean(cls, quadratic):
    """Per-atom energies and dE/dX of (q)SNAP-layout models equal the explicit feature-map
    contraction, without per-atom (n, P) / (n, F, F) temporaries (a 10^4-atom qSNAP cell with
    F = 55 took 385 MB for atomic_energy and 518 MB for its gradient, 80-110x the size of X)."""
    rng = np.random.default_rng(0)
    n, F, nsp = 3000, 20, 3
    P = 1 + F + (F * (F + 1) // 2 if quadratic else 0)
    coef = rng.normal(size=(nsp, P))
    reg = cls.from_coef(coef, quadratic=quadratic)
    X = rng.normal(size=(n, F))
    sp = rng.integers(0, nsp - 1, n)      # the last element is absent
    eps_ref = np.einsum("ip,ip->i", feature_map(X, quadratic), coef[sp])
    dE_ref = coef[sp][:, 1:1 + F].copy()
    if quadratic:
        iu, ju = quadratic_index(F)
        for z in range(nsp):
            S = np.zeros((F, F))
            S[iu, ju] = coef[z, 1 + F:]
            S[ju, iu] = coef[z, 1 + F:]
            dE_ref[sp == z] += X[sp == z] @ S
    (eps, dE), peak = _numpy_peak(lambda: reg.atomic_energy_gradient(X, sp))
    np.testing.assert_allclose(eps, eps_ref, rtol=1e-12, atol=1e-10)
    np.testing.assert_allclose(dE, dE_ref, rtol=1e-12, atol=1e-10)
    assert peak < 4 * X.nbytes
    eps2, peak = _numpy_peak(lambda: reg.atomic_energy(X, sp))
    np.testing.assert_allclose(eps2, eps_ref, rtol=1e-12, atol=1e-10)
    assert peak < 3 * X.nbytes
