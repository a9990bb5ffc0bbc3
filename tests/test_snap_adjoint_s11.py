"""SNAPBispectrum default-path adjoint (s11): the lane kernel's Y = dE/dU (:func:`_y_lanes`,
which forms only the entries the reverse pass reads and sums the j1 == j2 blocks over half
their grid) against every Z entry formed with :func:`_z2_lanes` (the values kernel's Z, the
formulation the adjoint used before), and the lane adjoint against the scalar LAMMPS-literal
kernel and central finite differences, for even and odd 2J up to 8, a ragged last lane block and
zero columns of beta.
"""

import numpy as np
import pytest
from numba import njit

from hybridpot._validation import species_indices
from hybridpot.descriptors import SNAPBispectrum
from hybridpot.descriptors import _snap_kernels as K
from hybridpot.neighbors import neighbor_list

from conftest import skewed_two_element_cell


@njit(cache=True)
def _y_reference(beta, J, idxu_block, cglist, idxcg_block, idxz, z_jjb, z_fac, utr, uti):
    """Y of one lane block with every Z entry formed by _z2_lanes (all rows, full grids)."""
    L = utr.shape[1]
    yr = np.zeros_like(utr)
    yi = np.zeros_like(uti)
    zr = np.empty(L)
    zi = np.empty(L)
    sr = np.empty(L)
    si = np.empty(L)
    for k in range(idxz.shape[0]):
        K._z2_lanes(k, idxz, idxcg_block, cglist, idxu_block, utr, uti, utr, uti, zr, zi, sr, si)
        jju = idxz[k, 9]
        for l in range(L):
            b = z_fac[k] * beta[l, z_jjb[k]]
            yr[jju, l] += b * zr[l]
            yi[jju, l] += b * zi[l]
    return yr, yi


def _read_mask(J, idxu_block):
    """The Y entries the reverse pass reads: rows 2 mb < j, and ma <= mb of the middle row."""
    nu = idxu_block[J] + (J + 1) ** 2
    m = np.zeros(nu, dtype=bool)
    for j in range(J + 1):
        for mb in range(j // 2 + 1):
            for ma in range(j + 1):
                if 2 * mb == j and ma > mb:
                    break
                m[idxu_block[j] + (j + 1) * mb + ma] = True
    return m


def _setup(twojmax, switchinner=False, reps=(3, 2, 2)):
    at = skewed_two_element_cell(seed=3, rattle=0.12) * reps
    kw = dict(sinner=[2.4, 2.3], dinner=[0.3, 0.25]) if switchinner else {}
    d = SNAPBispectrum(species=["Cu", "Ni"], twojmax=twojmax, rcutfac=3.3, radelem=[0.5, 0.45],
                       wj=[1.0, 0.7], switchinnerflag=switchinner, **kw)
    d._validate()
    nl = neighbor_list(at, d.r_cut)
    return at, d, nl, d._pair_arrays(nl, species_indices(at, d._species))


@pytest.mark.parametrize("twojmax", [1, 4, 5, 8])
def test_y_lanes_equals_every_z_entry(twojmax, rng):
    at, d, nl, args = _setup(twojmax)
    t = d._tables
    n = len(at)
    L = K.LANES
    assert n % L != 0       # ragged last block: lanes past n get beta 0
    nu = t["idxu_block"][-1] + (twojmax + 1) ** 2
    beta = rng.normal(size=(n, len(t["idxb"])))
    beta[:, 1] = 0.0        # a zero column: its entries are skipped
    mask = _read_mask(twojmax, t["idxu_block"])
    utr = np.empty((1, nu, L))
    uti = np.empty((1, nu, L))
    ub = np.empty((nu, L))
    ej_p, ei = np.zeros(nl.n_pairs, dtype=np.int64), np.zeros(n, dtype=np.int64)
    yr = np.empty((nu, L))
    yi = np.empty((nu, L))
    bt = np.empty((beta.shape[1], L))
    zr = np.empty(L)
    zi = np.empty(L)
    for i0 in range(0, n, L):
        maxk = K._max_neighbours(i0, n, args[0], L)
        K._utot_lanes(i0, n, maxk, *args, ej_p, ei, True, d._rfac0, d._rmin0, d._switch,
                      d._wself, twojmax, t["idxu_block"], t["rootpq"], utr, uti, ub, ub.copy(),
                      np.empty((1, L)))
        K._y_lanes(i0, n, beta, bt, t["idxz"], t["idxcg_block"], t["cglist"], t["idxu_block"],
                   t["z_jjb"], t["z_fac"], utr[0], uti[0], yr, yi, zr, zi)
        bl = np.zeros((L, beta.shape[1]))
        bl[:min(L, n - i0)] = beta[i0:i0 + L]
        rr, ri = _y_reference(bl, twojmax, t["idxu_block"], t["cglist"], t["idxcg_block"],
                              t["idxz"], t["z_jjb"], t["z_fac"], utr[0], uti[0])
        scale = max(np.abs(rr).max(), np.abs(ri).max())
        np.testing.assert_allclose(yr[mask], rr[mask], rtol=0, atol=1e-13 * scale)
        np.testing.assert_allclose(yi[mask], ri[mask], rtol=0, atol=1e-13 * scale)
        # the entries the reverse pass does not read are left zero
        assert not yr[~mask].any() and not yi[~mask].any()
        # a single-element (j1 == j2) contribution is nonzero: the halved grid is exercised
        assert np.abs(rr[mask]).max() > 0


@pytest.mark.parametrize("twojmax,switchinner,reps", [(5, False, (3, 2, 2)), (8, False, (3, 2, 2)),
                                                     (6, True, (3, 2, 2)), (3, False, (5, 4, 3)),
                                                     (2, False, (1, 1, 1))])
def test_lane_adjoint_equals_scalar_kernel(twojmax, switchinner, reps, rng):
    """48 atoms (one block of 48 lanes), 240 atoms (two blocks of 120), 4 atoms (8 lanes, 4
    of them empty)."""
    at, d, nl, args = _setup(twojmax, switchinner, reps)
    t = d._tables
    if switchinner:     # some pairs are inside the inner switching region
        _, _, dist, inside, _, _, sin_p, din_p = args
        assert np.any(inside & (np.abs(dist - sin_p) < din_p))
    beta = rng.normal(size=(len(at), len(t["idxb"])))
    beta[:, 0] = 0.0
    cb = (d._rfac0, d._rmin0, d._switch, d._wself, d._J, t["idxu_block"], t["rootpq"],
          t["cglist"], t["idxcg_block"], t["idxz"], t["z_jjb"], t["z_fac"], beta)
    g = K._backward(*args, *cb)
    np.testing.assert_allclose(K._backward_lanes(*args, *cb), g, rtol=0,
                               atol=1e-12 * np.abs(g).max())


def test_forces_2j8_central_finite_differences(rng):
    """E = sum_i beta_i . B_i with 2J = 8 on a rattled periodic non-orthogonal cell: the
    adjoint's forces against central differences of the values."""
    at = skewed_two_element_cell(seed=5, rattle=0.1)
    d = SNAPBispectrum(species=["Cu", "Ni"], twojmax=8, rcutfac=3.0, radelem=[0.5, 0.45])
    B = d.compute(at)
    beta = rng.normal(size=B.shape)
    F = -d.backward(at, beta)[0]
    h = 1e-5
    for a in rng.choice(len(at), size=3, replace=False):
        for c in range(3):
            p = at.copy()
            p.positions[a, c] += h
            m = at.copy()
            m.positions[a, c] -= h
            fd = -(np.sum(beta * d.compute(p)) - np.sum(beta * d.compute(m))) / (2 * h)
            assert F[a, c] == pytest.approx(fd, rel=1e-6, abs=1e-8 * np.abs(F).max())


@pytest.mark.parametrize("n,lanes", [(1, 8), (4, 8), (9, 16), (108, 112), (128, 128),
                                     (129, 72), (256, 128), (1000, 128)])
def test_backward_lane_count(n, lanes):
    """At most BACKWARD_LANES, balanced over the blocks, a multiple of 8, covering n atoms."""
    L = K._lane_count(n, K.BACKWARD_LANES, 8)
    assert L == lanes
    assert L <= K.BACKWARD_LANES and L % 8 == 0
    nblk = -(-n // L)
    assert nblk == -(-n // K.BACKWARD_LANES)


@pytest.mark.parametrize("twojmax", [1, 2, 5, 8])
def test_dedr_lanes_reads_no_stale_scratch(twojmax, rng):
    """The reverse pass initialises every scratch entry it reads (rows up to (j + 1) / 2): NaN
    scratch gives the same dE/dr as zeroed scratch, the right half of the middle row and the
    mirror rows of Y are not read, nor the mirror rows of U that _u_lanes(full=False) skips."""
    from hybridpot.descriptors._snap import snap_tables

    t = snap_tables(twojmax)
    L = 8
    nu = t["idxu_block"][-1] + (twojmax + 1) ** 2
    x, y, z = rng.normal(size=(3, L))
    r = np.sqrt(x * x + y * y + z * z)
    z0 = r / np.tan(0.99363 * np.pi * r / 5.0)
    r0inv = 1.0 / np.sqrt(r * r + z0 * z0)
    a_r, a_i, b_r, b_i = r0inv * z0, -r0inv * z, r0inv * y, -r0inv * x
    geo = np.vstack([x, y, z, r, z0, rng.normal(size=L), rng.uniform(0.5, 1, L),
                     rng.normal(size=L)])
    ur = np.empty((nu, L))
    ui = np.empty((nu, L))
    K._u_lanes(a_r, a_i, b_r, b_i, twojmax, t["idxu_block"], t["rootpq"], ur, ui)
    yr, yi = rng.normal(size=(2, nu, L))
    tab = (twojmax, t["idxu_block"], t["rootpq"], ur, ui)
    out0 = np.empty((3, L))
    K._dedr_lanes(a_r, a_i, b_r, b_i, geo, *tab, yr, yi, np.zeros((nu, L)), np.zeros((nu, L)),
                  out0)
    mask = _read_mask(twojmax, t["idxu_block"])
    yr2, yi2 = yr.copy(), yi.copy()
    yr2[~mask] = np.nan
    yi2[~mask] = np.nan
    out1 = np.empty((3, L))
    K._dedr_lanes(a_r, a_i, b_r, b_i, geo, *tab, yr2, yi2, np.full((nu, L), np.nan),
                  np.full((nu, L), np.nan), out1)
    assert np.all(np.isfinite(out0))
    np.testing.assert_array_equal(out1, out0)
    # U with only the mirrored rows the reverse pass reads (full=False, as _backward_lanes
    # recomputes it per neighbour): the rest stays NaN and is not read
    ur2 = np.full((nu, L), np.nan)
    ui2 = np.full((nu, L), np.nan)
    K._u_lanes(a_r, a_i, b_r, b_i, twojmax, t["idxu_block"], t["rootpq"], ur2, ui2, False)
    if twojmax >= 3:
        assert np.isnan(ur2).any()
    out2 = np.empty((3, L))
    K._dedr_lanes(a_r, a_i, b_r, b_i, geo, twojmax, t["idxu_block"], t["rootpq"], ur2, ui2,
                  yr2, yi2, np.full((nu, L), np.nan), np.full((nu, L), np.nan), out2)
    np.testing.assert_array_equal(out2, out0)
