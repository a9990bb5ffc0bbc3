"""SNAP kernels after the s12 de-duplication: the single-density SNAP runs the chemflag kernels'
shared blocks with one element, so a chemflag descriptor of one species must give the
single-density results (values bit for bit, the Jacobian and adjoint through their own
contraction / Y to rounding), and the scalar chemflag reference with one element the scalar
single-density kernels; the balanced lane counts of the values / Jacobian blocks."""

import numpy as np
import pytest

from hybridpot._validation import species_indices
from hybridpot.descriptors import SNAPBispectrum
from hybridpot.descriptors import _snap_kernels as K
from hybridpot.neighbors import neighbor_list

from conftest import rattled_bulk
from snap_reference_kernels import chem_backward, chem_reference


def _pair(twojmax, inner, **kw):
    extra = dict(switchinnerflag=True, sinner=2.35, dinner=0.3) if inner else {}
    single = SNAPBispectrum(species=["Cu"], twojmax=twojmax, rcutfac=3.6, bzeroflag=True,
                            **extra, **kw)
    chem = SNAPBispectrum(species=["Cu"], twojmax=twojmax, rcutfac=3.6, bzeroflag=True,
                          chemflag=True, **extra, **kw)
    at = rattled_bulk(reps=(3, 2, 2), stdev=0.12, seed=7)    # 48 atoms, periodic
    del at[[5, 17]]                                           # 46: partly empty lane blocks
    for d in (single, chem):
        d._validate()
    nl = neighbor_list(at, single.r_cut)
    return at, single, chem, nl, species_indices(at, single._species)


@pytest.mark.parametrize("twojmax,inner", [(6, False), (5, True)])
def test_chemflag_of_one_species_equals_single_density(twojmax, inner, rng):
    at, single, chem, nl, sidx = _pair(twojmax, inner)
    if inner:   # some pairs inside the inner switching region
        assert np.any(np.abs(nl.d - 2.35) < 0.3)
    X, _ = single._compute(nl, sidx, False)
    Xc, _ = chem._compute(nl, sidx, False)
    assert X.shape == Xc.shape and np.abs(X).max() > 1.0
    np.testing.assert_array_equal(Xc, X)        # the same kernel with the same arguments
    Xg, dX = single._compute(nl, sidx, True)
    Xcg, dXc = chem._compute(nl, sidx, True)
    np.testing.assert_array_equal(Xg, X)
    np.testing.assert_array_equal(Xcg, X)
    # folded single-density contraction vs the chemflag one: equal to rounding
    assert np.abs(dX).max() > 0.1
    np.testing.assert_allclose(dXc, dX, rtol=1e-11, atol=1e-13 * np.abs(dX).max())
    # adjoint: _y_lanes (half grids of the j1 == j2 blocks) vs the chemflag Y, and both
    # against the Jacobian contracted with beta of the centre atom
    beta = rng.normal(size=X.shape)
    g = single._backward(nl, sidx, beta)
    gc = chem._backward(nl, sidx, beta)
    np.testing.assert_allclose(gc, g, rtol=1e-11, atol=1e-12 * np.abs(g).max())
    np.testing.assert_allclose(g, np.einsum("pak,pk->pa", dX, beta[nl.i]), rtol=1e-9,
                               atol=1e-11 * np.abs(g).max())


def test_scalar_chemflag_reference_of_one_element_equals_scalar_kernels(rng):
    at, single, chem, nl, sidx = _pair(4, True)
    t = single._tables
    args = single._pair_arrays(nl, sidx)
    cv = (single._rfac0, single._rmin0, single._switch, single._wself, single._bzero_arr,
          single._J, t["idxu_block"], t["rootpq"], t["cglist"], t["idxcg_block"], t["idxz"],
          t["idxz_block"], t["idxb"])
    B, dB = K._bispectrum_grad(*args, *cv)
    Bc, dBc, _ = chem_reference(chem, nl, sidx, 1, np.zeros((0, 0)))
    # the same scalar blocks (_utot_atom, _z_two, _b_sum, _half_dot3) in the same order
    np.testing.assert_array_equal(Bc, B)
    np.testing.assert_array_equal(dBc, dB)
    beta = rng.normal(size=B.shape)
    g = K._backward(*args, single._rfac0, single._rmin0, single._switch, single._wself,
                    single._J, t["idxu_block"], t["rootpq"], t["cglist"], t["idxcg_block"],
                    t["idxz"], t["z_jjb"], t["z_fac"], beta)
    gc = chem_backward(*chem._chem_args(nl, sidx), chem._J, t["idxu_block"], t["rootpq"],
                       t["cglist"], t["idxcg_block"], t["idxz"], t["idxb_block"], beta)
    assert np.abs(g).max() > 0.1
    np.testing.assert_allclose(gc, g, rtol=1e-11, atol=1e-12 * np.abs(g).max())
    g2 = chem_reference(chem, nl, sidx, 2, beta)[2]
    np.testing.assert_allclose(g2, g, rtol=1e-10, atol=1e-11 * np.abs(g).max())


@pytest.mark.parametrize("n,lanes", [(1, 4), (3, 4), (46, 48), (64, 64), (65, 36), (108, 56),
                                     (256, 64), (1001, 64)])
def test_values_and_jacobian_lane_count(n, lanes):
    """At most LANES (= GRAD_LANES), balanced over the blocks, a multiple of 4, covering n."""
    for most in (K.LANES, K.GRAD_LANES):
        L = K._lane_count(n, most, 4)
        assert L == lanes
        assert L % 4 == 0 and L <= most
        assert -(-n // L) == -(-n // most)
