"""Numba kernels of the SO(4) SNAP bispectrum (conventions of LAMMPS ML-SNAP).

Index conventions (``j`` is twice the angular momentum, ``0 <= ma, mb <= j``):

- ``U^j`` is stored row-major by ``mb`` then ``ma`` at ``idxu_block[j] + (j + 1) * mb + ma``;
  only rows ``2 * mb <= j`` are independent, the others follow from
  ``U^j[j - mb, j - ma] = (-1)^(ma - mb) conj(U^j[mb, ma])``.
- ``Z_{j1 j2 j}[mb, ma]`` (``j1 >= j2``) is stored for the rows ``2 * mb <= j`` at
  ``idxz_block[j1, j2, j] + (j + 1) * mb + ma``; ``idxz[k]`` holds
  ``(j1, j2, j, ma1min, ma2max, na, mb1min, mb2max, nb, jju)`` of entry ``k``.
- ``B_{j1 j2 j}`` (``j >= j1 >= j2``) in the order ``idxb``.

The kernels loop over atoms and pairs in compiled code; ``offsets`` delimits the pairs of each
centre (pairs sorted by centre atom).  The production kernels (``*_lanes``) treat a block of
atoms together (up to ``LANES``, ``GRAD_LANES`` or ``BACKWARD_LANES``, balanced over the blocks:
:func:`_lane_count`), the k-th neighbours of all of them as one vector, so that every inner
loop runs over lanes and vectorises (AVX); the scalar kernels follow LAMMPS line by line and are
the reference they are tested against.  The adjoint differentiates the U recursion in reverse
mode (``dE/da``, ``dE/db`` of the Cayley-Klein parameters) instead of forming ``dU/dr_ij``; the
Jacobian (:func:`_bispectrum_grad_lanes`, used for fitting rows and the committee σ) forms
``dU/dr_ij`` in forward mode and contracts it with the Z blocks of every B component (the lane
helpers take the lane count from their arrays).
Pairs with ``inside[p] == False`` (beyond their element-pair cutoff, or inside the inner
switching radius ``sin_p - din_p``) are skipped.  ``sin_p`` / ``din_p`` (per pair, Å) are the
inner switching centre and half-width of ``switchinnerflag``; empty arrays switch it off.

The explicit multi-element (``chemflag``) kernels keep one density per element
((n_elements, idxu_max, L)); per neighbour they use the Y (adjoint) or the columns (Jacobian)
of the neighbour's element.  The densities (:func:`_utot_atom`, :func:`_utot_lanes`), the
values (:func:`_chem_bispectrum_lanes`) and the Jacobian (:func:`_chem_bispectrum_grad_lanes`)
are written once, for ``n_elements`` densities: the single-density SNAP calls them with one
element (``ej_p`` and ``ei`` all 0, ``wself`` on every atom's diagonal and ``bzero``
subtracted from every B), which gives its results bit for bit; its Jacobian keeps its own
contraction (:func:`_fold_dbdr_lanes`: coinciding Z blocks folded, ``fold=True``) and its
adjoint its own Y (:func:`_y_lanes`: half the grid of the ``j1 == j2`` blocks), with the
blocks around them shared (:func:`_utot_lanes`, :func:`_dedr_neighbours_lanes`).  The scalar
chemflag kernels (one atom at a time, the reference of the ``_chem_*_lanes`` kernels) live with
the tests (``tests/snap_reference_kernels.py``), built from the scalar blocks here.
"""

import numpy as np
from numba import njit

from ._so3_kernels import inner_switch

__all__ = []


@njit(cache=True)
def _u_one(x, y, z, z0, r, J, idxu_block, rootpq, ur, ui):
    """Wigner U^j(x, y, z) of one neighbour for j = 0..J into ``ur``/``ui`` (full layers)."""
    r0inv = 1.0 / np.sqrt(r * r + z0 * z0)
    a_r = r0inv * z0
    a_i = -r0inv * z
    b_r = r0inv * y
    b_i = -r0inv * x
    ur[0] = 1.0
    ui[0] = 0.0
    for j in range(1, J + 1):
        base = idxu_block[j]
        basep = idxu_block[j - 1]
        for mb in range(j // 2 + 1):
            row = base + (j + 1) * mb
            prow = basep + j * mb
            for ma in range(j + 1):
                vr = 0.0
                vi = 0.0
                if ma < j:
                    c = rootpq[j - ma, j - mb]
                    pr = ur[prow + ma]
                    pi = ui[prow + ma]
                    vr = c * (a_r * pr + a_i * pi)
                    vi = c * (a_r * pi - a_i * pr)
                if ma > 0:
                    c = rootpq[ma, j - mb]
                    pr = ur[prow + ma - 1]
                    pi = ui[prow + ma - 1]
                    vr += -c * (b_r * pr + b_i * pi)
                    vi += -c * (b_r * pi - b_i * pr)
                ur[row + ma] = vr
                ui[row + ma] = vi
        # lower rows from the inversion symmetry
        jju = idxu_block[j]
        jjup = jju + (j + 1) * (j + 1) - 1
        mbpar = 1
        for mb in range(j // 2 + 1):
            mapar = mbpar
            for ma in range(j + 1):
                if mapar == 1:
                    ur[jjup] = ur[jju]
                    ui[jjup] = -ui[jju]
                else:
                    ur[jjup] = -ur[jju]
                    ui[jjup] = ui[jju]
                mapar = -mapar
                jju += 1
                jjup -= 1
            mbpar = -mbpar


@njit(cache=True)
def _du_one(x, y, z, z0, r, dz0dr, sfac, dsfac, J, idxu_block, rootpq, ur, ui, dur, dui):
    """d(sfac * U^j)/d r_ij (3 components) for the independent rows; ``ur``/``ui`` from _u_one.

    ``dur``/``dui`` have shape (idxu_max, 3); on return rows ``2 * mb <= j`` hold
    ``dsfac * U * r_hat + sfac * dU/dr`` (``sfac``, ``dsfac`` already include the weight).
    """
    rinv = 1.0 / r
    ux = x * rinv
    uy = y * rinv
    uz = z * rinv
    r0inv = 1.0 / np.sqrt(r * r + z0 * z0)
    a_r = z0 * r0inv
    a_i = -z * r0inv
    b_r = y * r0inv
    b_i = -x * r0inv
    dr0invdr = -(r0inv ** 3) * (r + z0 * dz0dr)
    u = (ux, uy, uz)
    da_r = np.empty(3)
    da_i = np.empty(3)
    db_r = np.empty(3)
    db_i = np.empty(3)
    for k in range(3):
        dr0 = dr0invdr * u[k]
        da_r[k] = dz0dr * u[k] * r0inv + z0 * dr0
        da_i[k] = -z * dr0
        db_r[k] = y * dr0
        db_i[k] = -x * dr0
    da_i[2] -= r0inv
    db_i[0] -= r0inv
    db_r[1] += r0inv
    for k in range(3):
        dur[0, k] = 0.0
        dui[0, k] = 0.0
    for j in range(1, J + 1):
        jju = idxu_block[j]
        jjup = idxu_block[j - 1]
        for mb in range(j // 2 + 1):
            for k in range(3):
                dur[jju, k] = 0.0
                dui[jju, k] = 0.0
            for ma in range(j):
                c = rootpq[j - ma, j - mb]
                pr = ur[jjup]
                pi = ui[jjup]
                for k in range(3):
                    dpr = dur[jjup, k]
                    dpi = dui[jjup, k]
                    dur[jju, k] += c * (da_r[k] * pr + da_i[k] * pi + a_r * dpr + a_i * dpi)
                    dui[jju, k] += c * (da_r[k] * pi - da_i[k] * pr + a_r * dpi - a_i * dpr)
                c = rootpq[ma + 1, j - mb]
                for k in range(3):
                    dpr = dur[jjup, k]
                    dpi = dui[jjup, k]
                    dur[jju + 1, k] = -c * (db_r[k] * pr + db_i[k] * pi + b_r * dpr + b_i * dpi)
                    dui[jju + 1, k] = -c * (db_r[k] * pi - db_i[k] * pr + b_r * dpi - b_i * dpr)
                jju += 1
                jjup += 1
            jju += 1
        jju = idxu_block[j]
        jjup = jju + (j + 1) * (j + 1) - 1
        mbpar = 1
        for mb in range(j // 2 + 1):
            mapar = mbpar
            for ma in range(j + 1):
                for k in range(3):
                    if mapar == 1:
                        dur[jjup, k] = dur[jju, k]
                        dui[jjup, k] = -dui[jju, k]
                    else:
                        dur[jjup, k] = -dur[jju, k]
                        dui[jjup, k] = dui[jju, k]
                mapar = -mapar
                jju += 1
                jjup -= 1
            mbpar = -mbpar
    # switching function and weight (independent rows only)
    for j in range(J + 1):
        jju = idxu_block[j]
        for mb in range(j // 2 + 1):
            for ma in range(j + 1):
                for k in range(3):
                    dur[jju, k] = dsfac * ur[jju] * u[k] + sfac * dur[jju, k]
                    dui[jju, k] = dsfac * ui[jju] * u[k] + sfac * dui[jju, k]
                jju += 1


@njit(cache=True)
def _sfac(r, rcut, rmin0, switchflag, p, sin_p, din_p):
    """Switching function of pair ``p`` and its radial derivative (LAMMPS compute_sfac /
    compute_dsfac).

    The outer cosine switch (``switchflag``) times, when ``sin_p`` is not empty
    (``switchinnerflag``), the inner switch of the pair, centre ``sin_p[p]`` and half-width
    ``din_p[p]`` (Å): 0 for ``r <= s - d``, ``(1 + sin(pi/2 (r - s) / d)) / 2`` between,
    1 for ``r >= s + d`` (:func:`~hybridpot.descriptors._so3_kernels.inner_switch`, shared
    with the SO(3) and ACSF descriptors' inner switch).
    """
    if not switchflag or r <= rmin0:
        f, df = 1.0, 0.0
    elif r > rcut:
        return 0.0, 0.0
    else:
        c = np.pi / (rcut - rmin0)
        f = 0.5 * (np.cos((r - rmin0) * c) + 1.0)
        df = -0.5 * np.sin((r - rmin0) * c) * c
    if sin_p.shape[0] > 0:
        fi, dfi = inner_switch(r, sin_p[p], din_p[p])
        return f * fi, df * fi + f * dfi
    return f, df


@njit(cache=True)
def _z_two(k, idxz, idxcg_block, cglist, idxu_block, u1r, u1i, u2r, u2i):
    """Entry ``k`` of the Z list coupling ``U1^{j1}`` (``u1r``/``u1i``) with ``U2^{j2}``:
    :func:`_z_one` with two different densities (LAMMPS compute_zi, elem1 / elem2)."""
    j1 = idxz[k, 0]
    j2 = idxz[k, 1]
    j = idxz[k, 2]
    ma1min = idxz[k, 3]
    ma2max = idxz[k, 4]
    na = idxz[k, 5]
    mb1min = idxz[k, 6]
    mb2max = idxz[k, 7]
    nb = idxz[k, 8]
    cgb = idxcg_block[j1, j2, j]
    zr = 0.0
    zi = 0.0
    jju1 = idxu_block[j1] + (j1 + 1) * mb1min
    jju2 = idxu_block[j2] + (j2 + 1) * mb2max
    icgb = mb1min * (j2 + 1) + mb2max
    for ib in range(nb):
        sr = 0.0
        si = 0.0
        ma1 = ma1min
        ma2 = ma2max
        icga = ma1min * (j2 + 1) + ma2max
        for ia in range(na):
            c = cglist[cgb + icga]
            ar = u1r[jju1 + ma1]
            ai = u1i[jju1 + ma1]
            br = u2r[jju2 + ma2]
            bi = u2i[jju2 + ma2]
            sr += c * (ar * br - ai * bi)
            si += c * (ar * bi + ai * br)
            ma1 += 1
            ma2 -= 1
            icga += j2
        cb = cglist[cgb + icgb]
        zr += cb * sr
        zi += cb * si
        jju1 += j1 + 1
        jju2 -= j2 + 1
        icgb += j2
    return zr, zi


@njit(cache=True)
def _z_one(k, idxz, idxcg_block, cglist, idxu_block, utr, uti):
    """Entry ``k`` of the Z list from the summed U (``utr``/``uti``): :func:`_z_two` with
    the same density twice."""
    return _z_two(k, idxz, idxcg_block, cglist, idxu_block, utr, uti, utr, uti)


@njit(cache=True)
def _single_element(npairs, n):
    """Element arrays of the single-density SNAP: every neighbour and centre of element 0."""
    return np.zeros(npairs, dtype=np.int64), np.zeros(n, dtype=np.int64)


@njit(cache=True)
def _utot_atom(i, offsets, D, d, inside, rcut_p, w_p, sin_p, din_p, ej_p, ei, wselfall, rfac0,
               rmin0, switchflag, wself, J, idxu_block, rootpq, utr, uti, ubuf_r, ubuf_i):
    """Sum of weighted U over the neighbours of ``i``, one density per element: ``utr``/``uti``
    (n_elements, idxu_max), neighbour ``p`` added to element ``ej_p[p]``'s, ``wself`` on the
    diagonal of the centre's element ``ei[i]`` (of every element with ``wselfall``; LAMMPS
    compute_ui / compute_uarray).

    The U of each inside neighbour is kept in ``ubuf_r[p - offsets[i]]`` (for derivatives).
    """
    ne = utr.shape[0]
    nu = utr.shape[1]
    for e in range(ne):
        for q in range(nu):
            utr[e, q] = 0.0
            uti[e, q] = 0.0
        if e == ei[i] or wselfall:
            for j in range(J + 1):
                for ma in range(j + 1):
                    utr[e, idxu_block[j] + (j + 1) * ma + ma] = wself
    for p in range(offsets[i], offsets[i + 1]):
        if not inside[p]:
            continue
        x = D[p, 0]
        y = D[p, 1]
        z = D[p, 2]
        r = d[p]
        rc = rcut_p[p]
        theta0 = (r - rmin0) * rfac0 * np.pi / (rc - rmin0)
        z0 = r / np.tan(theta0)
        q0 = p - offsets[i]
        ur = ubuf_r[q0]
        ui = ubuf_i[q0]
        _u_one(x, y, z, z0, r, J, idxu_block, rootpq, ur, ui)
        s, _ = _sfac(r, rc, rmin0, switchflag, p, sin_p, din_p)
        s *= w_p[p]
        e = ej_p[p]
        for q in range(nu):
            utr[e, q] += s * ur[q]
            uti[e, q] += s * ui[q]


@njit(cache=True)
def _pair_scratch(offsets, nu):
    """Scratch of the scalar kernels: the U of every neighbour of one atom ``ubr``/``ubi``
    (max neighbours, idxu_max) and one pair's dU ``dur``/``dui`` (idxu_max, 3)."""
    n = offsets.shape[0] - 1
    maxn = max(1, _max_neighbours(0, n, offsets, n))
    return np.empty((maxn, nu)), np.empty((maxn, nu)), np.empty((nu, 3)), np.empty((nu, 3))


@njit(cache=True)
def _du_pair(p, q0, D, d, rcut_p, w_p, sin_p, din_p, rfac0, rmin0, switchflag, J, idxu_block,
             rootpq, ubr, ubi, dur, dui):
    """d(sfac * w * U)/d r_ij of pair ``p`` (LAMMPS compute_duidrj) into ``dur``/``dui``
    (idxu_max, 3) by :func:`_du_one`, from its U kept in ``ubr[q0]``/``ubi[q0]``."""
    r = d[p]
    rc = rcut_p[p]
    rscale0 = rfac0 * np.pi / (rc - rmin0)
    theta0 = (r - rmin0) * rscale0
    z0 = r * np.cos(theta0) / np.sin(theta0)
    dz0dr = z0 / r - (r * rscale0) * (r * r + z0 * z0) / (r * r)
    s, ds = _sfac(r, rc, rmin0, switchflag, p, sin_p, din_p)
    _du_one(D[p, 0], D[p, 1], D[p, 2], z0, r, dz0dr, s * w_p[p], ds * w_p[p], J, idxu_block,
            rootpq, ubr[q0], ubi[q0], dur, dui)


@njit(cache=True)
def _b_sum(j, jju, k, ur, ui, zr, zi):
    """``sum Re(conj(U^j) Z)`` over the independent rows (middle diagonal halved): half of
    ``B`` before ``bzero`` (U from ``jju``, the Z block from entry ``k``)."""
    s = 0.0
    for mb in range(j // 2 + 1):
        for ma in range(j + 1):
            if 2 * mb == j and ma > mb:
                break
            t = ur[jju] * zr[k] + ui[jju] * zi[k]
            if 2 * mb == j and ma == mb:
                t *= 0.5
            s += t
            k += 1
            jju += 1
    return s


@njit(cache=True)
def _half_dot3(jju, k, jdim, dur, dui, zr, zi, s0, s1, s2):
    """``(s0, s1, s2)`` plus ``sum Re(conj(dU) Z)`` over the independent rows of ``U^jdim``
    (middle diagonal halved), one sum per component of ``dur``/``dui`` (idxu_max, 3) from
    ``jju``, the Z block from entry ``k``."""
    for mb in range(jdim // 2 + 1):
        for ma in range(jdim + 1):
            if 2 * mb == jdim and ma > mb:
                break
            a = zr[k]
            b = zi[k]
            if 2 * mb == jdim and ma == mb:
                a *= 0.5
                b *= 0.5
            s0 += dur[jju, 0] * a + dui[jju, 0] * b
            s1 += dur[jju, 1] * a + dui[jju, 1] * b
            s2 += dur[jju, 2] * a + dui[jju, 2] * b
            k += 1
            jju += 1
    return s0, s1, s2


@njit(cache=True)
def _bispectrum_grad(offsets, D, d, inside, rcut_p, w_p, sin_p, din_p, rfac0, rmin0, switchflag,
                     wself, bzero, J, idxu_block, rootpq, cglist, idxcg_block, idxz, idxz_block,
                     idxb):
    """B (n_atoms, n_b) and dB_i/dr_ij (n_pairs, 3, n_b) (LAMMPS compute_bi / compute_dbidrj).

    Scalar reference (one atom, one neighbour at a time) of :func:`_bispectrum_lanes` (B) and
    :func:`_bispectrum_grad_lanes`.
    """
    n = offsets.shape[0] - 1
    npairs = D.shape[0]
    nu = idxu_block[J] + (J + 1) * (J + 1)
    nz = idxz.shape[0]
    nb_ = idxb.shape[0]
    ej_p, ei = _single_element(npairs, n)
    out = np.zeros((n, nb_))
    dout = np.zeros((npairs, 3, nb_))
    utr = np.empty((1, nu))
    uti = np.empty((1, nu))
    zr = np.empty(nz)
    zi = np.empty(nz)
    ubr, ubi, dur, dui = _pair_scratch(offsets, nu)
    for i in range(n):
        _utot_atom(i, offsets, D, d, inside, rcut_p, w_p, sin_p, din_p, ej_p, ei, True, rfac0,
                   rmin0, switchflag, wself, J, idxu_block, rootpq, utr, uti, ubr, ubi)
        for k in range(nz):
            zr[k], zi[k] = _z_one(k, idxz, idxcg_block, cglist, idxu_block, utr[0], uti[0])
        for jjb in range(nb_):
            j = idxb[jjb, 2]
            k = idxz_block[idxb[jjb, 0], idxb[jjb, 1], j]
            out[i, jjb] = 2.0 * _b_sum(j, idxu_block[j], k, utr[0], uti[0], zr, zi) - bzero[j]
        for p in range(offsets[i], offsets[i + 1]):
            if not inside[p]:
                continue
            _du_pair(p, p - offsets[i], D, d, rcut_p, w_p, sin_p, din_p, rfac0, rmin0,
                     switchflag, J, idxu_block, rootpq, ubr, ubi, dur, dui)
            for jjb in range(nb_):
                j1 = idxb[jjb, 0]
                j2 = idxb[jjb, 1]
                j = idxb[jjb, 2]
                g = _half_dot3(idxu_block[j], idxz_block[j1, j2, j], j, dur, dui, zr, zi, 0.0,
                               0.0, 0.0)
                f1 = (j + 1) / (j1 + 1.0)
                f2 = (j + 1) / (j2 + 1.0)
                h1 = _half_dot3(idxu_block[j1], idxz_block[j, j2, j1], j1, dur, dui, zr, zi, 0.0,
                                0.0, 0.0)
                h2 = _half_dot3(idxu_block[j2], idxz_block[j, j1, j2], j2, dur, dui, zr, zi, 0.0,
                                0.0, 0.0)
                for a in range(3):
                    dout[p, a, jjb] = 2.0 * g[a] + f1 * (2.0 * h1[a]) + f2 * (2.0 * h2[a])
    return out, dout


@njit(cache=True)
def _y_dot_du(J, idxu_block, yr, yi, dur, dui, out):
    """``out[:3] = dE/dr_ij = 2 sum Re(conj(dU) Y)`` over the independent rows of every layer
    (middle diagonals halved; LAMMPS compute_deidrj), ``dur``/``dui`` (idxu_max, 3) from
    :func:`_du_pair`, Y stored as U."""
    s = (0.0, 0.0, 0.0)
    for j in range(J + 1):
        s = _half_dot3(idxu_block[j], idxu_block[j], j, dur, dui, yr, yi, s[0], s[1], s[2])
    out[0] = 2.0 * s[0]
    out[1] = 2.0 * s[1]
    out[2] = 2.0 * s[2]


@njit(cache=True)
def _backward(offsets, D, d, inside, rcut_p, w_p, sin_p, din_p, rfac0, rmin0, switchflag, wself, J,
              idxu_block, rootpq, cglist, idxcg_block, idxz, z_jjb, z_fac, beta):
    """Adjoint: dE/dr_ij (n_pairs, 3) for E = sum_i beta[i] . B_i (LAMMPS compute_yi/deidrj).

    Scalar, forward-mode reference of :func:`_backward_lanes` (dU/dr formed per neighbour).

    ``z_jjb[k]`` / ``z_fac[k]`` map Z entry ``k`` to the B component and multiplicity factor of
    its contribution to Y = dE/dU.
    """
    n = offsets.shape[0] - 1
    npairs = D.shape[0]
    nu = idxu_block[J] + (J + 1) * (J + 1)
    nz = idxz.shape[0]
    ej_p, ei = _single_element(npairs, n)
    g = np.zeros((npairs, 3))
    utr = np.empty((1, nu))
    uti = np.empty((1, nu))
    yr = np.empty(nu)
    yi = np.empty(nu)
    ubr, ubi, dur, dui = _pair_scratch(offsets, nu)
    for i in range(n):
        if offsets[i + 1] == offsets[i]:
            continue
        _utot_atom(i, offsets, D, d, inside, rcut_p, w_p, sin_p, din_p, ej_p, ei, True, rfac0,
                   rmin0, switchflag, wself, J, idxu_block, rootpq, utr, uti, ubr, ubi)
        for q in range(nu):
            yr[q] = 0.0
            yi[q] = 0.0
        for k in range(nz):
            bj = z_fac[k] * beta[i, z_jjb[k]]
            if bj == 0.0:
                continue
            zr, zi = _z_one(k, idxz, idxcg_block, cglist, idxu_block, utr[0], uti[0])
            jju = idxz[k, 9]
            yr[jju] += bj * zr
            yi[jju] += bj * zi
        for p in range(offsets[i], offsets[i + 1]):
            if not inside[p]:
                continue
            _du_pair(p, p - offsets[i], D, d, rcut_p, w_p, sin_p, din_p, rfac0, rmin0,
                     switchflag, J, idxu_block, rootpq, ubr, ubi, dur, dui)
            _y_dot_du(J, idxu_block, yr, yi, dur, dui, g[p])
    return g


# -- lane kernels: a block of atoms at a time, innermost loops over lanes (SIMD) -----------------
#: largest lane count of the values kernels (:func:`_chem_bispectrum_lanes`, also the
#: single-density values) and of the chemflag adjoint / Jacobian; the k-th neighbours of the
#: block's atoms are handled as one vector (measured on 256 atoms at 2J=8, 64 balanced vs 32:
#: chemflag values 0.7x, adjoint 0.85x the time; single-density values 0.8x)
LANES = 64
#: largest lane count of the Jacobian kernels (their per-neighbour work is larger: longer
#: vectors amortise the loop overhead; measured 64 balanced vs 32: 25 % faster)
GRAD_LANES = 64
#: largest lane count of the default-path adjoint (:func:`_backward_lanes`): its lane loops are
#: short (one U / Y entry each), so longer vectors amortise their overhead; measured on 256 Cu
#: atoms, 2J=8 (kernel CPU time relative to 32 lanes): 64 lanes 0.83x, 128 lanes 0.77x
BACKWARD_LANES = 128
#: fastmath (FMA contraction) lets LLVM vectorise the lane loops; results differ from the
#: scalar kernels by rounding only (tested to 1e-12)
_FM = True


@njit(cache=True)
def _lane_count(n, most, multiple):
    """Lanes per block for ``n`` atoms: at most ``most``, balanced over the blocks, a multiple
    of ``multiple`` (adjoint, at most 128, multiples of 8: 256 atoms 2 x 128, 108 atoms
    1 x 112, 4 atoms 8; values / Jacobian, at most 64, multiples of 4: 108 atoms 2 x 56)."""
    nblk = max(1, (n + most - 1) // most)
    return max(multiple, ((n + nblk - 1) // nblk + multiple - 1) // multiple * multiple)


@njit(cache=True)
def _max_neighbours(i0, n, offsets, L):
    """Largest neighbour count of atoms i0..i0+L-1 (those below ``n``)."""
    m = 0
    for l in range(L):
        if i0 + l < n:
            m = max(m, offsets[i0 + l + 1] - offsets[i0 + l])
    return m


@njit(cache=True, fastmath=_FM)
def _u_lanes(a_r, a_i, b_r, b_i, J, idxu_block, rootpq, ur, ui, full=True):
    """:func:`_u_one` for LANES neighbours at once; ``ur``/``ui`` have shape (idxu_max, LANES).

    With ``full=False`` only the mirrored rows the reverse pass :func:`_dedr_lanes` reads are
    filled (an even ``j``'s middle row, an odd ``j``'s row ``(j + 1) / 2``); the other rows
    ``2 mb > j`` are left as they were."""
    L = ur.shape[1]
    for l in range(L):
        ur[0, l] = 1.0
        ui[0, l] = 0.0
    for j in range(1, J + 1):
        base = idxu_block[j]
        basep = idxu_block[j - 1]
        for mb in range(j // 2 + 1):
            row = base + (j + 1) * mb
            prow = basep + j * mb
            c = rootpq[j, j - mb]
            for l in range(L):
                pr = ur[prow, l]
                pi = ui[prow, l]
                ur[row, l] = c * (a_r[l] * pr + a_i[l] * pi)
                ui[row, l] = c * (a_r[l] * pi - a_i[l] * pr)
            for ma in range(1, j):
                c1 = rootpq[j - ma, j - mb]
                c2 = -rootpq[ma, j - mb]
                for l in range(L):
                    pr = ur[prow + ma, l]
                    pi = ui[prow + ma, l]
                    qr = ur[prow + ma - 1, l]
                    qi = ui[prow + ma - 1, l]
                    ur[row + ma, l] = (c1 * (a_r[l] * pr + a_i[l] * pi)
                                       + c2 * (b_r[l] * qr + b_i[l] * qi))
                    ui[row + ma, l] = (c1 * (a_r[l] * pi - a_i[l] * pr)
                                       + c2 * (b_r[l] * qi - b_i[l] * qr))
            c2 = -rootpq[j, j - mb]
            for l in range(L):
                qr = ur[prow + j - 1, l]
                qi = ui[prow + j - 1, l]
                ur[row + j, l] = c2 * (b_r[l] * qr + b_i[l] * qi)
                ui[row + j, l] = c2 * (b_r[l] * qi - b_i[l] * qr)
        last = base + (j + 1) * (j + 1) - 1
        for mb in range(j // 2 + 1):
            if not (full or 2 * mb == j or 2 * mb == j - 1):
                continue
            for ma in range(j + 1):
                src = base + (j + 1) * mb + ma
                dst = last - (j + 1) * mb - ma
                if (mb + ma) % 2 == 0:
                    for l in range(L):
                        ur[dst, l] = ur[src, l]
                        ui[dst, l] = -ui[src, l]
                else:
                    for l in range(L):
                        ur[dst, l] = -ur[src, l]
                        ui[dst, l] = ui[src, l]


@njit(cache=True, fastmath=_FM)
def _z2_lanes(k, idxz, idxcg_block, cglist, idxu_block, u1r, u1i, u2r, u2i, zr, zi, sr, si):
    """:func:`_z_two` for LANES atoms: Z entry ``k`` coupling ``U1^{j1}`` (``u1r``/``u1i``,
    (idxu_max, LANES)) with ``U2^{j2}`` into ``zr``/``zi`` (LANES,)."""
    L = zr.shape[0]
    j1 = idxz[k, 0]
    j2 = idxz[k, 1]
    j = idxz[k, 2]
    ma1min = idxz[k, 3]
    ma2max = idxz[k, 4]
    na = idxz[k, 5]
    mb1min = idxz[k, 6]
    mb2max = idxz[k, 7]
    nb = idxz[k, 8]
    cgb = idxcg_block[j1, j2, j]
    for l in range(L):
        zr[l] = 0.0
        zi[l] = 0.0
    jju1 = idxu_block[j1] + (j1 + 1) * mb1min
    jju2 = idxu_block[j2] + (j2 + 1) * mb2max
    icgb = mb1min * (j2 + 1) + mb2max
    for ib in range(nb):
        for l in range(L):
            sr[l] = 0.0
            si[l] = 0.0
        i1 = jju1 + ma1min
        i2 = jju2 + ma2max
        icga = cgb + ma1min * (j2 + 1) + ma2max
        for ia in range(na):
            c = cglist[icga]
            for l in range(L):
                ar = u1r[i1, l]
                ai = u1i[i1, l]
                br = u2r[i2, l]
                bi = u2i[i2, l]
                sr[l] += c * (ar * br - ai * bi)
                si[l] += c * (ar * bi + ai * br)
            i1 += 1
            i2 -= 1
            icga += j2
        cb = cglist[cgb + icgb]
        for l in range(L):
            zr[l] += cb * sr[l]
            zi[l] += cb * si[l]
        jju1 += j1 + 1
        jju2 -= j2 + 1
        icgb += j2


@njit(cache=True)
def _geometry_lanes(i0, k, n, offsets, D, d, inside, rcut_p, w_p, sin_p, din_p, rfac0, rmin0,
                    switchflag, pidx, a_r, a_i, b_r, b_i, geo):
    """Cayley-Klein parameters of the k-th neighbour of atoms i0..i0+LANES-1.

    ``pidx[l]`` is the pair index or -1 (no such neighbour, or beyond its cutoff: weight 0 and
    a harmless dummy geometry).  ``geo[:, l]`` = (x, y, z, r, z0, dz0dr, sfac*w, dsfac*w).
    Returns the number of live lanes.
    """
    live = 0
    for l in range(pidx.shape[0]):
        i = i0 + l
        p = -1
        if i < n and k < offsets[i + 1] - offsets[i]:
            p = offsets[i] + k
            if not inside[p]:
                p = -1
        pidx[l] = p
        if p < 0:
            x, y, z, r, z0, dz0dr, s, ds = 0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0
        else:
            live += 1
            x = D[p, 0]
            y = D[p, 1]
            z = D[p, 2]
            r = d[p]
            rc = rcut_p[p]
            rscale0 = rfac0 * np.pi / (rc - rmin0)
            theta0 = (r - rmin0) * rscale0
            z0 = r / np.tan(theta0)
            dz0dr = z0 / r - (r * rscale0) * (r * r + z0 * z0) / (r * r)
            s, ds = _sfac(r, rc, rmin0, switchflag, p, sin_p, din_p)
            s *= w_p[p]
            ds *= w_p[p]
        r0inv = 1.0 / np.sqrt(r * r + z0 * z0)
        a_r[l] = r0inv * z0
        a_i[l] = -r0inv * z
        b_r[l] = r0inv * y
        b_i[l] = -r0inv * x
        geo[0, l] = x
        geo[1, l] = y
        geo[2, l] = z
        geo[3, l] = r
        geo[4, l] = z0
        geo[5, l] = dz0dr
        geo[6, l] = s
        geo[7, l] = ds
    return live


@njit(cache=True, fastmath=_FM)
def _utot_lanes(i0, n, maxk, offsets, D, d, inside, rcut_p, w_p, sin_p, din_p, ej_p, ei,
                wselfall, rfac0, rmin0, switchflag, wself, J, idxu_block, rootpq, utr, uti, ur, ui,
                ws):
    """Summed U per element (``utr``/``uti`` (n_elements, idxu_max, L)) of atoms i0..i0+L-1:
    each neighbour added to its element's density, ``wself`` on the diagonal of the centre's
    element (every element with ``wselfall``); :func:`_utot_atom` for L atoms.  ``ur``/``ui``
    (idxu_max, L) and ``ws`` (n_elements, L) are scratch."""
    ne = utr.shape[0]
    nu = utr.shape[1]
    L = utr.shape[2]
    # scratch allocated here, not returned by a helper: with the arrays of a shared helper
    # the chemflag values took up to 1.15x the time (measured, s12)
    pidx = np.empty(L, dtype=np.int64)
    a_r = np.empty(L)
    a_i = np.empty(L)
    b_r = np.empty(L)
    b_i = np.empty(L)
    geo = np.empty((8, L))
    for e in range(ne):
        for q in range(nu):
            for l in range(L):
                utr[e, q, l] = 0.0
                uti[e, q, l] = 0.0
        for l in range(L):
            if wselfall or (i0 + l < n and ei[i0 + l] == e):
                for j in range(J + 1):
                    for ma in range(j + 1):
                        utr[e, idxu_block[j] + (j + 1) * ma + ma, l] = wself
    for k in range(maxk):
        live = _geometry_lanes(i0, k, n, offsets, D, d, inside, rcut_p, w_p, sin_p, din_p, rfac0,
                               rmin0, switchflag, pidx, a_r, a_i, b_r, b_i, geo)
        if live == 0:
            continue
        _u_lanes(a_r, a_i, b_r, b_i, J, idxu_block, rootpq, ur, ui)
        for e in range(ne):
            for l in range(L):
                p = pidx[l]
                ws[e, l] = geo[6, l] if (p >= 0 and ej_p[p] == e) else 0.0
        for e in range(ne):
            for q in range(nu):
                for l in range(L):
                    utr[e, q, l] += ws[e, l] * ur[q, l]
                    uti[e, q, l] += ws[e, l] * ui[q, l]


# -- values: B of every atom -----------------------------------------------------------------------
@njit(cache=True)
def _chem_bispectrum_lanes(offsets, D, d, inside, rcut_p, w_p, sin_p, din_p, ej_p, ei, ne,
                           wselfall, rfac0, rmin0, switchflag, wself, bzero, J, idxu_block,
                           rootpq, cglist, idxcg_block, idxz, idxz_block, idxb):
    """Chemflag B of every atom (n_atoms, ne^3 K), up to LANES atoms at a time (each Z entry
    formed once and used by the ``ne`` triples that share its element pair).

    One density ``U_e`` per element ``e`` (neighbours of element ``ej_p[p]``; ``wself`` on the
    diagonal of the centre's element ``ei[i]``, or of every element with ``wselfall``), Z per
    element pair ``(e1, e2)``, and ``B_{e1 e2 e3} = sum conj(U_e3) Z_{e1 e2}`` in the LAMMPS
    column order ``((e1 ne + e2) ne + e3) K + jjb``; ``bzero`` is subtracted from the triple
    ``(ei, ei, ei)`` only (every triple with ``wselfall``).  With one element and ``wselfall``
    the single-density B (:func:`_bispectrum_lanes`).
    """
    L = _lane_count(offsets.shape[0] - 1, LANES, 4)
    n = offsets.shape[0] - 1
    nu = idxu_block[J] + (J + 1) * (J + 1)
    K = idxb.shape[0]
    out = np.zeros((n, ne * ne * ne * K))
    utr = np.empty((ne, nu, L))
    uti = np.empty((ne, nu, L))
    ur = np.empty((nu, L))
    ui = np.empty((nu, L))
    ws = np.empty((ne, L))
    zr = np.empty(L)
    zi = np.empty(L)
    sr = np.empty(L)
    si = np.empty(L)
    acc = np.empty((ne, L))
    for i0 in range(0, n, L):
        maxk = _max_neighbours(i0, n, offsets, L)
        _utot_lanes(i0, n, maxk, offsets, D, d, inside, rcut_p, w_p, sin_p, din_p, ej_p, ei,
                    wselfall, rfac0, rmin0, switchflag, wself, J, idxu_block, rootpq, utr, uti,
                    ur, ui, ws)
        for e1 in range(ne):
            for e2 in range(ne):
                idouble = e1 * ne + e2
                for jjb in range(K):
                    j1 = idxb[jjb, 0]
                    j2 = idxb[jjb, 1]
                    j = idxb[jjb, 2]
                    if j1 == j2 and e2 < e1:
                        # Z_{e1 e2} = Z_{e2 e1}: B_{e1 e2 e3} = B_{e2 e1 e3}, already formed
                        for e3 in range(ne):
                            col = (idouble * ne + e3) * K + jjb
                            col2 = ((e2 * ne + e1) * ne + e3) * K + jjb
                            for l in range(L):
                                if i0 + l < n:
                                    out[i0 + l, col] = out[i0 + l, col2]
                        continue
                    kz = idxz_block[j1, j2, j]
                    jju = idxu_block[j]
                    for e3 in range(ne):
                        for l in range(L):
                            acc[e3, l] = 0.0
                    for mb in range(j // 2 + 1):
                        for ma in range(j + 1):
                            if 2 * mb == j and ma > mb:
                                break
                            _z2_lanes(kz, idxz, idxcg_block, cglist, idxu_block, utr[e1],
                                      uti[e1], utr[e2], uti[e2], zr, zi, sr, si)
                            w = 0.5 if (2 * mb == j and ma == mb) else 1.0
                            for e3 in range(ne):
                                for l in range(L):
                                    acc[e3, l] += w * (utr[e3, jju, l] * zr[l]
                                                       + uti[e3, jju, l] * zi[l])
                            kz += 1
                            jju += 1
                    for e3 in range(ne):
                        col = (idouble * ne + e3) * K + jjb
                        for l in range(L):
                            i = i0 + l
                            if i < n:
                                shift = wselfall or (e1 == ei[i] and e2 == ei[i] and e3 == ei[i])
                                out[i, col] = 2.0 * acc[e3, l] - (bzero[j] if shift else 0.0)
    return out


@njit(cache=True)
def _bispectrum_lanes(offsets, D, d, inside, rcut_p, w_p, sin_p, din_p, rfac0, rmin0, switchflag,
                      wself, bzero, J, idxu_block, rootpq, cglist, idxcg_block, idxz, idxz_block,
                      idxb):
    """B of every atom (n_atoms, n_b); same result as the B of :func:`_bispectrum_grad`, a
    lane block at a time: :func:`_chem_bispectrum_lanes` with one element."""
    ej_p, ei = _single_element(D.shape[0], offsets.shape[0] - 1)
    return _chem_bispectrum_lanes(offsets, D, d, inside, rcut_p, w_p, sin_p, din_p, ej_p, ei, 1,
                                  True, rfac0, rmin0, switchflag, wself, bzero, J, idxu_block,
                                  rootpq, cglist, idxcg_block, idxz, idxz_block, idxb)


# -- adjoint: dE/dr_ij through Y = dE/dU ---------------------------------------------------------
@njit(cache=True, fastmath=_FM)
def _dedr_lanes(a_r, a_i, b_r, b_i, geo, J, idxu_block, rootpq, ur, ui, yr, yi, gr, gi, out):
    """``dE/dr_ij = Y . dU/dr_ij`` by reverse-mode differentiation of the U recursion (the
    vectorised counterpart of the forward-mode per-neighbour loop of :func:`_backward`) for
    LANES neighbours at once; ``out`` has shape (3, LANES).

    Reads ``yr``/``yi`` on the independent entries only (rows ``2 mb < j`` and ``ma <= mb`` of
    the middle row); ``gr``/``gi`` (idxu_max, LANES) are scratch, of which only the rows a layer
    above reads are initialised and folded (the mirror row ``(j + 1) / 2`` of an odd ``j``, the
    right half of an even ``j``'s middle row).
    """
    L = out.shape[1]
    suy = np.zeros(L)
    for j in range(J + 1):
        base = idxu_block[j]
        # rows up to (j + 1) // 2 are read by layer j + 1 (an odd j's row (j + 1) / 2 is the
        # mirror of row (j - 1) / 2): adjoint Y on the independent entries, zero elsewhere
        for mb in range((j + 1) // 2 + 1):
            row = base + (j + 1) * mb
            for ma in range(j + 1):
                q = row + ma
                if 2 * mb > j or (2 * mb == j and ma > mb):
                    for l in range(L):
                        gr[q, l] = 0.0
                        gi[q, l] = 0.0
                else:
                    w = 1.0 if (2 * mb == j and ma == mb) else 2.0
                    for l in range(L):
                        suy[l] += w * (ur[q, l] * yr[q, l] + ui[q, l] * yi[q, l])
                        gr[q, l] = w * geo[6, l] * yr[q, l]
                        gi[q, l] = w * geo[6, l] * yi[q, l]
    abr = np.zeros(L)
    abi = np.zeros(L)
    bbr = np.zeros(L)
    bbi = np.zeros(L)
    for j in range(J, 0, -1):
        base = idxu_block[j]
        basep = idxu_block[j - 1]
        last = base + (j + 1) * (j + 1) - 1
        # fold the adjoint of the mirrored entries back onto their sources: only the rows
        # layer j + 1 read can carry one (none for j == J)
        mb = j // 2 if j % 2 == 0 else (j - 1) // 2
        for ma in range(j + 1):
            src = base + (j + 1) * mb + ma
            dst = last - (j + 1) * mb - ma
            s = 1.0 if (mb + ma) % 2 == 0 else -1.0
            if 2 * mb < j or ma < mb:
                if j < J:
                    for l in range(L):
                        gr[src, l] += s * gr[dst, l]
                        gi[src, l] -= s * gi[dst, l]
            elif ma == mb:
                for l in range(L):
                    gi[src, l] = -gi[src, l]
        for mb in range(j // 2 + 1):
            row = base + (j + 1) * mb
            prow = basep + j * mb
            top = j if 2 * mb < j else mb  # right half of the middle row carries no adjoint
            # ma = 0: the a-term only
            c = rootpq[j, j - mb]
            for l in range(L):
                g_r = gr[row, l]
                g_i = gi[row, l]
                pr = ur[prow, l]
                pi = ui[prow, l]
                abr[l] += c * (g_r * pr + g_i * pi)
                abi[l] += c * (g_r * pi - g_i * pr)
                gr[prow, l] += c * (a_r[l] * g_r - a_i[l] * g_i)
                gi[prow, l] += c * (a_r[l] * g_i + a_i[l] * g_r)
            for ma in range(1, min(top, j - 1) + 1):
                c1 = rootpq[j - ma, j - mb]
                c2 = -rootpq[ma, j - mb]
                q1 = prow + ma
                q2 = prow + ma - 1
                for l in range(L):
                    g_r = gr[row + ma, l]
                    g_i = gi[row + ma, l]
                    pr = ur[q1, l]
                    pi = ui[q1, l]
                    qr = ur[q2, l]
                    qi = ui[q2, l]
                    abr[l] += c1 * (g_r * pr + g_i * pi)
                    abi[l] += c1 * (g_r * pi - g_i * pr)
                    bbr[l] += c2 * (g_r * qr + g_i * qi)
                    bbi[l] += c2 * (g_r * qi - g_i * qr)
                    gr[q1, l] += c1 * (a_r[l] * g_r - a_i[l] * g_i)
                    gi[q1, l] += c1 * (a_r[l] * g_i + a_i[l] * g_r)
                    gr[q2, l] += c2 * (b_r[l] * g_r - b_i[l] * g_i)
                    gi[q2, l] += c2 * (b_r[l] * g_i + b_i[l] * g_r)
            if top == j:
                # ma = j: the b-term only
                c = -rootpq[j, j - mb]
                q2 = prow + j - 1
                for l in range(L):
                    g_r = gr[row + j, l]
                    g_i = gi[row + j, l]
                    qr = ur[q2, l]
                    qi = ui[q2, l]
                    bbr[l] += c * (g_r * qr + g_i * qi)
                    bbi[l] += c * (g_r * qi - g_i * qr)
                    gr[q2, l] += c * (b_r[l] * g_r - b_i[l] * g_i)
                    gi[q2, l] += c * (b_r[l] * g_i + b_i[l] * g_r)
    for l in range(L):
        x = geo[0, l]
        y = geo[1, l]
        z = geo[2, l]
        r = geo[3, l]
        z0 = geo[4, l]
        dz0dr = geo[5, l]
        rinv = 1.0 / r
        r0inv = 1.0 / np.sqrt(r * r + z0 * z0)
        dr0invdr = -(r0inv ** 3) * (r + z0 * dz0dr)
        for k in range(3):
            uk = (x if k == 0 else (y if k == 1 else z)) * rinv
            dr0 = dr0invdr * uk
            da_r = dz0dr * uk * r0inv + z0 * dr0
            da_i = -z * dr0
            db_r = y * dr0
            db_i = -x * dr0
            if k == 2:
                da_i -= r0inv
            if k == 0:
                db_i -= r0inv
            if k == 1:
                db_r += r0inv
            out[k, l] = (abr[l] * da_r + abi[l] * da_i + bbr[l] * db_r + bbi[l] * db_i
                         + geo[7, l] * uk * suy[l])


@njit(cache=True)
def _beta_lanes(i0, n, beta, bt):
    """``bt[c, l] = beta[i0 + l, c]`` (0 for lanes past the last atom): the block's beta,
    contiguous over lanes."""
    for c in range(bt.shape[0]):
        for l in range(bt.shape[1]):
            bt[c, l] = beta[i0 + l, c] if i0 + l < n else 0.0


@njit(cache=True, fastmath=_FM)
def _y_lanes(i0, n, beta, bt, idxz, idxcg_block, cglist, idxu_block, z_jjb, z_fac, utr, uti,
             yr, yi, zr, zi):
    """Y = dE/dU (LAMMPS ``compute_yi``) of atoms i0..i0+L-1 into ``yr``/``yi`` (nu, L).

    ``Y^j[mb, ma] = sum_{j1 >= j2} z_fac * beta[i, z_jjb] * Z_{j1 j2 j}[mb, ma]`` over the
    entries ``k`` of ``idxz``, from the summed U ``utr``/``uti`` (nu, L).  Only the entries
    :func:`_dedr_lanes` reads are formed: the right half of the middle row (``2 mb == j``,
    ``ma > mb``) is left zero.  A block with ``j1 == j2`` sums half of its (ib, ia) grid twice
    (terms (ib, ia) and (nb-1-ib, na-1-ia) are equal: the two U factors swap and the signs of the
    two swapped Clebsch-Gordan coefficients cancel).  ``bt`` (n_b, L) is scratch (beta of
    the block, transposed), ``zr``/``zi`` (L,) scratch.  Same Y as forming every entry with
    :func:`_z2_lanes` to rounding (tested).
    """
    L = yr.shape[1]
    nu = utr.shape[0]
    for q in range(nu):
        for l in range(L):
            yr[q, l] = 0.0
            yi[q, l] = 0.0
    _beta_lanes(i0, n, beta, bt)
    for k in range(idxz.shape[0]):
        j1 = idxz[k, 0]
        j2 = idxz[k, 1]
        j = idxz[k, 2]
        jju = idxz[k, 9]
        ju = jju - idxu_block[j]
        mb = ju // (j + 1)
        ma = ju - (j + 1) * mb
        if 2 * mb == j and ma > mb:
            continue   # the right half of the middle row carries no adjoint
        jb = z_jjb[k]
        nonzero = False
        for l in range(L):
            nonzero = nonzero or bt[jb, l] != 0.0
        if not nonzero:
            continue
        ma1min = idxz[k, 3]
        ma2max = idxz[k, 4]
        na = idxz[k, 5]
        mb1min = idxz[k, 6]
        mb2max = idxz[k, 7]
        nb = idxz[k, 8]
        cgb = idxcg_block[j1, j2, j]
        for l in range(L):
            zr[l] = 0.0
            zi[l] = 0.0
        # j1 == j2: the terms (ib, ia) and (nb-1-ib, na-1-ia) are equal (U1 = U2, the CG
        # swap signs cancel in the product): half the grid, twice
        half = j1 == j2
        ntot = na * nb
        jju1 = idxu_block[j1] + (j1 + 1) * mb1min
        jju2 = idxu_block[j2] + (j2 + 1) * mb2max
        icgb = mb1min * (j2 + 1) + mb2max
        t = 0
        for ib in range(nb):
            cb = cglist[cgb + icgb]
            i1 = jju1 + ma1min
            i2 = jju2 + ma2max
            icga = cgb + ma1min * (j2 + 1) + ma2max
            for ia in range(na):
                cc = cb * cglist[icga]
                if half:
                    if 2 * t > ntot - 1:
                        break
                    if 2 * t < ntot - 1:
                        cc *= 2.0
                for l in range(L):
                    u1r = utr[i1, l]
                    u1i = uti[i1, l]
                    u2r = utr[i2, l]
                    u2i = uti[i2, l]
                    zr[l] += cc * (u1r * u2r - u1i * u2i)
                    zi[l] += cc * (u1r * u2i + u1i * u2r)
                i1 += 1
                i2 -= 1
                icga += j2
                t += 1
            jju1 += j1 + 1
            jju2 -= j2 + 1
            icgb += j2
        f = z_fac[k]
        for l in range(L):
            b = f * bt[jb, l]
            yr[jju, l] += b * zr[l]
            yi[jju, l] += b * zi[l]


@njit(cache=True, inline="always")
def _chem_y_lanes(i0, n, beta, betal, ne, idxz, idxcg_block, cglist, idxu_block, idxb_block, utr,
                  uti, yr, yi, c, zr, zi, sr, si):
    """Chemflag ``Y_e = dE/dU_e`` of atoms i0..i0+L-1 into ``yr``/``yi`` (ne, idxu_max, L), with
    the exact sums over the permuted element triples: a Z entry ``Z_{e1 e2}(j1, j2 -> j)``
    feeds ``Y_e3^j`` with the coefficients of every B block it serves (see
    ``tests/snap_reference_kernels.py``).  Only the entries :func:`_dedr_lanes` reads are
    formed.  ``betal`` (F, L), ``c`` (ne, L), ``zr``, ``zi``, ``sr``, ``si`` (L,) scratch."""
    L = yr.shape[2]
    nu = yr.shape[1]
    nz = idxz.shape[0]
    K = beta.shape[1] // (ne * ne * ne)
    for e in range(ne):
        for q in range(nu):
            for l in range(L):
                yr[e, q, l] = 0.0
                yi[e, q, l] = 0.0
    _beta_lanes(i0, n, beta, betal)
    for k in range(nz):
        j1 = idxz[k, 0]
        j2 = idxz[k, 1]
        j = idxz[k, 2]
        ju = idxz[k, 9] - idxu_block[j]
        if 2 * (ju // (j + 1)) == j and ju % (j + 1) > j // 2:
            continue   # right half of the middle row: _dedr_lanes does not read its Y
        # the B blocks this Z entry serves (-1: none) and their factors
        b0 = idxb_block[j1, j2, j] if j >= j1 else -1
        b1 = idxb_block[j, j2, j1] if (j1 >= j and j >= j2) else -1
        b2 = idxb_block[j2, j, j1] if j2 >= j else -1
        fac = (j1 + 1) / (j + 1.0)
        jju = idxz[k, 9]
        for e1 in range(ne):
            for e2 in range(ne):
                # j1 == j2: Z_{e2 e1} = Z_{e1 e2} (the Clebsch-Gordan phases of swapping
                # j1 and j2 cancel between the two factors): one Z, coefficients summed
                if j1 == j2 and e2 < e1:
                    continue
                nonzero = False
                for e3 in range(ne):
                    for l in range(L):
                        c[e3, l] = 0.0
                    for sw in range(2):
                        if sw == 0:
                            f1_, f2_ = e1, e2
                        elif j1 == j2 and e1 != e2:
                            f1_, f2_ = e2, e1
                        else:
                            break
                        if b0 >= 0:
                            c0 = ((f1_ * ne + f2_) * ne + e3) * K + b0
                            for l in range(L):
                                c[e3, l] += betal[c0, l]
                        if b1 >= 0:
                            c1 = ((e3 * ne + f2_) * ne + f1_) * K + b1
                            for l in range(L):
                                c[e3, l] += fac * betal[c1, l]
                        if b2 >= 0:
                            c2 = ((f2_ * ne + e3) * ne + f1_) * K + b2
                            for l in range(L):
                                c[e3, l] += fac * betal[c2, l]
                    for l in range(L):
                        nonzero = nonzero or c[e3, l] != 0.0
                if not nonzero:
                    continue
                _z2_lanes(k, idxz, idxcg_block, cglist, idxu_block, utr[e1], uti[e1],
                          utr[e2], uti[e2], zr, zi, sr, si)
                for e3 in range(ne):
                    for l in range(L):
                        yr[e3, jju, l] += c[e3, l] * zr[l]
                        yi[e3, jju, l] += c[e3, l] * zi[l]


@njit(cache=True)
def _dedr_neighbours_lanes(i0, n, maxk, offsets, D, d, inside, rcut_p, w_p, sin_p, din_p, ej_p,
                           rfac0, rmin0, switchflag, J, idxu_block, rootpq, yr, yi, g):
    """The reverse pass of atoms i0..i0+L-1: per neighbour k, ``dE/dr_ij`` by
    :func:`_dedr_lanes` with the Y of the neighbour's element (``yr``/``yi``
    (n_elements, idxu_max, L)) into ``g[p]`` (n_pairs, 3); U recomputed (cheaper than storing
    it for every neighbour: memory traffic), only the rows the reverse pass reads."""
    ne = yr.shape[0]
    nu = yr.shape[1]
    L = yr.shape[2]
    pidx = np.empty(L, dtype=np.int64)
    a_r = np.empty(L)
    a_i = np.empty(L)
    b_r = np.empty(L)
    b_i = np.empty(L)
    geo = np.empty((8, L))
    ur = np.empty((nu, L))
    ui = np.empty((nu, L))
    gr = np.empty((nu, L))
    gi = np.empty((nu, L))
    o = np.empty((3, L))
    el = np.empty(L, dtype=np.int64)
    selr = np.empty((nu if ne > 1 else 0, L))   # the Y of each lane's neighbour element
    seli = np.empty((nu if ne > 1 else 0, L))
    ylr = yr[0] if ne == 1 else selr
    yli = yi[0] if ne == 1 else seli
    for k in range(maxk):
        live = _geometry_lanes(i0, k, n, offsets, D, d, inside, rcut_p, w_p, sin_p, din_p,
                               rfac0, rmin0, switchflag, pidx, a_r, a_i, b_r, b_i, geo)
        if live == 0:
            continue
        if ne > 1:
            for l in range(L):
                el[l] = ej_p[pidx[l]] if pidx[l] >= 0 else 0
            for q in range(nu):
                for l in range(L):
                    selr[q, l] = yr[el[l], q, l]
                    seli[q, l] = yi[el[l], q, l]
        _u_lanes(a_r, a_i, b_r, b_i, J, idxu_block, rootpq, ur, ui, False)
        _dedr_lanes(a_r, a_i, b_r, b_i, geo, J, idxu_block, rootpq, ur, ui, ylr, yli, gr, gi, o)
        for l in range(L):
            p = pidx[l]
            if p >= 0:
                g[p, 0] = o[0, l]
                g[p, 1] = o[1, l]
                g[p, 2] = o[2, l]


@njit(cache=True)
def _chem_backward_lanes(offsets, D, d, inside, rcut_p, w_p, sin_p, din_p, ej_p, ei, ne,
                         wselfall, rfac0, rmin0, switchflag, wself, J, idxu_block, rootpq,
                         cglist, idxcg_block, idxz, idxb_block, beta):
    """Chemflag adjoint dE/dr_ij (n_pairs, 3) for ``E = sum_i beta[i] . B_i``, up to LANES
    atoms at a time: ``Y_e = dE/dU_e`` (:func:`_chem_y_lanes`), per neighbour the
    reverse-mode :func:`_dedr_lanes` with the Y of the neighbour's element."""
    n = offsets.shape[0] - 1
    L = _lane_count(n, LANES, 4)
    nu = idxu_block[J] + (J + 1) * (J + 1)
    g = np.zeros((D.shape[0], 3))
    betal = np.empty((beta.shape[1], L))
    utr = np.empty((ne, nu, L))
    uti = np.empty((ne, nu, L))
    yr = np.empty((ne, nu, L))
    yi = np.empty((ne, nu, L))
    ur = np.empty((nu, L))
    ui = np.empty((nu, L))
    ws = np.empty((ne, L))
    zr = np.empty(L)
    zi = np.empty(L)
    sr = np.empty(L)
    si = np.empty(L)
    c = np.empty((ne, L))
    for i0 in range(0, n, L):
        maxk = _max_neighbours(i0, n, offsets, L)
        if maxk == 0:
            continue
        _utot_lanes(i0, n, maxk, offsets, D, d, inside, rcut_p, w_p, sin_p, din_p, ej_p, ei,
                    wselfall, rfac0, rmin0, switchflag, wself, J, idxu_block, rootpq, utr, uti,
                    ur, ui, ws)
        _chem_y_lanes(i0, n, beta, betal, ne, idxz, idxcg_block, cglist, idxu_block, idxb_block,
                      utr, uti, yr, yi, c, zr, zi, sr, si)
        _dedr_neighbours_lanes(i0, n, maxk, offsets, D, d, inside, rcut_p, w_p, sin_p, din_p,
                               ej_p, rfac0, rmin0, switchflag, J, idxu_block, rootpq, yr, yi, g)
    return g


@njit(cache=True)
def _backward_lanes(offsets, D, d, inside, rcut_p, w_p, sin_p, din_p, rfac0, rmin0, switchflag,
                    wself, J, idxu_block, rootpq, cglist, idxcg_block, idxz, z_jjb, z_fac, beta):
    """Adjoint dE/dr_ij (n_pairs, 3) for E = sum_i beta[i] . B_i, up to BACKWARD_LANES atoms
    at a time.

    Y = dE/dU per atom as LAMMPS ``compute_yi`` (:func:`_y_lanes`); per neighbour the
    reverse-mode :func:`_dedr_lanes` replaces ``compute_duidrj`` + ``compute_deidrj``.
    """
    n = offsets.shape[0] - 1
    L = _lane_count(n, BACKWARD_LANES, 8)
    nu = idxu_block[J] + (J + 1) * (J + 1)
    ej_p, ei = _single_element(D.shape[0], n)
    g = np.zeros((D.shape[0], 3))
    utr = np.empty((1, nu, L))
    uti = np.empty((1, nu, L))
    ur = np.empty((nu, L))
    ui = np.empty((nu, L))
    ws = np.empty((1, L))
    yr = np.empty((1, nu, L))
    yi = np.empty((1, nu, L))
    zr = np.empty(L)
    zi = np.empty(L)
    bt = np.empty((beta.shape[1], L))
    for i0 in range(0, n, L):
        maxk = _max_neighbours(i0, n, offsets, L)
        if maxk == 0:
            continue
        _utot_lanes(i0, n, maxk, offsets, D, d, inside, rcut_p, w_p, sin_p, din_p, ej_p, ei,
                    True, rfac0, rmin0, switchflag, wself, J, idxu_block, rootpq, utr, uti, ur,
                    ui, ws)
        _y_lanes(i0, n, beta, bt, idxz, idxcg_block, cglist, idxu_block, z_jjb, z_fac, utr[0],
                 uti[0], yr[0], yi[0], zr, zi)
        _dedr_neighbours_lanes(i0, n, maxk, offsets, D, d, inside, rcut_p, w_p, sin_p, din_p,
                               ej_p, rfac0, rmin0, switchflag, J, idxu_block, rootpq, yr, yi, g)
    return g


# -- Jacobian: dB_i/dr_ij in forward mode ----------------------------------------------------------
@njit(cache=True, fastmath=_FM)
def _du_lanes(a_r, a_i, b_r, b_i, geo, J, idxu_block, rootpq, ur, ui, dur, dui, da):
    """:func:`_du_one` for LANES neighbours at once (forward mode, 3 tangents).

    ``ur``/``ui`` (idxu_max, LANES) from :func:`_u_lanes`; on return ``dur``/``dui``
    (idxu_max, 3, LANES) hold ``dsfac * U * r_hat + sfac * dU/dr`` on the independent rows
    ``2 * mb <= j`` (``geo`` as in :func:`_geometry_lanes`).  ``da`` is scratch (15, LANES):
    the derivatives of the Cayley-Klein parameters ``a_r, a_i, b_r, b_i`` along x, y, z and
    the unit vector ``r_hat``.
    """
    L = dur.shape[2]
    for l in range(L):
        x = geo[0, l]
        y = geo[1, l]
        z = geo[2, l]
        r = geo[3, l]
        z0 = geo[4, l]
        dz0dr = geo[5, l]
        rinv = 1.0 / r
        r0inv = 1.0 / np.sqrt(r * r + z0 * z0)
        dr0invdr = -(r0inv ** 3) * (r + z0 * dz0dr)
        for k in range(3):
            uk = (x if k == 0 else (y if k == 1 else z)) * rinv
            da[12 + k, l] = uk
            dr0 = dr0invdr * uk
            da[k, l] = dz0dr * uk * r0inv + z0 * dr0
            da[3 + k, l] = -z * dr0
            da[6 + k, l] = y * dr0
            da[9 + k, l] = -x * dr0
        da[5, l] -= r0inv
        da[9, l] -= r0inv
        da[7, l] += r0inv
    for k in range(3):
        for l in range(L):
            dur[0, k, l] = 0.0
            dui[0, k, l] = 0.0
    for j in range(1, J + 1):
        base = idxu_block[j]
        basep = idxu_block[j - 1]
        for mb in range(j // 2 + 1):
            row = base + (j + 1) * mb
            prow = basep + j * mb
            # ma = 0: the a-term only
            c = rootpq[j, j - mb]
            for k in range(3):
                for l in range(L):
                    pr = ur[prow, l]
                    pi = ui[prow, l]
                    dpr = dur[prow, k, l]
                    dpi = dui[prow, k, l]
                    dur[row, k, l] = c * (da[k, l] * pr + da[3 + k, l] * pi + a_r[l] * dpr
                                          + a_i[l] * dpi)
                    dui[row, k, l] = c * (da[k, l] * pi - da[3 + k, l] * pr + a_r[l] * dpi
                                          - a_i[l] * dpr)
            for ma in range(1, j):
                c1 = rootpq[j - ma, j - mb]
                c2 = -rootpq[ma, j - mb]
                q1 = prow + ma
                q2 = prow + ma - 1
                for k in range(3):
                    for l in range(L):
                        pr = ur[q1, l]
                        pi = ui[q1, l]
                        dpr = dur[q1, k, l]
                        dpi = dui[q1, k, l]
                        qr = ur[q2, l]
                        qi = ui[q2, l]
                        dqr = dur[q2, k, l]
                        dqi = dui[q2, k, l]
                        dur[row + ma, k, l] = (
                            c1 * (da[k, l] * pr + da[3 + k, l] * pi + a_r[l] * dpr
                                  + a_i[l] * dpi)
                            + c2 * (da[6 + k, l] * qr + da[9 + k, l] * qi + b_r[l] * dqr
                                    + b_i[l] * dqi))
                        dui[row + ma, k, l] = (
                            c1 * (da[k, l] * pi - da[3 + k, l] * pr + a_r[l] * dpi
                                  - a_i[l] * dpr)
                            + c2 * (da[6 + k, l] * qi - da[9 + k, l] * qr + b_r[l] * dqi
                                    - b_i[l] * dqr))
            # ma = j: the b-term only
            c2 = -rootpq[j, j - mb]
            q2 = prow + j - 1
            for k in range(3):
                for l in range(L):
                    qr = ur[q2, l]
                    qi = ui[q2, l]
                    dqr = dur[q2, k, l]
                    dqi = dui[q2, k, l]
                    dur[row + j, k, l] = c2 * (da[6 + k, l] * qr + da[9 + k, l] * qi
                                               + b_r[l] * dqr + b_i[l] * dqi)
                    dui[row + j, k, l] = c2 * (da[6 + k, l] * qi - da[9 + k, l] * qr
                                               + b_r[l] * dqi - b_i[l] * dqr)
        if j % 2 == 1 and j < J:
            # the next layer reads row (j + 1) / 2, the mirror of row (j - 1) / 2
            mb = (j - 1) // 2
            last = base + (j + 1) * (j + 1) - 1
            for ma in range(j + 1):
                src = base + (j + 1) * mb + ma
                dst = last - (j + 1) * mb - ma
                if (mb + ma) % 2 == 0:
                    for k in range(3):
                        for l in range(L):
                            dur[dst, k, l] = dur[src, k, l]
                            dui[dst, k, l] = -dui[src, k, l]
                else:
                    for k in range(3):
                        for l in range(L):
                            dur[dst, k, l] = -dur[src, k, l]
                            dui[dst, k, l] = dui[src, k, l]
    # switching function and weight (independent rows only)
    for j in range(J + 1):
        for mb in range(j // 2 + 1):
            row = idxu_block[j] + (j + 1) * mb
            for ma in range(j + 1):
                q = row + ma
                for k in range(3):
                    for l in range(L):
                        dur[q, k, l] = (geo[7, l] * da[12 + k, l] * ur[q, l]
                                        + geo[6, l] * dur[q, k, l])
                        dui[q, k, l] = (geo[7, l] * da[12 + k, l] * ui[q, l]
                                        + geo[6, l] * dui[q, k, l])


@njit(cache=True, fastmath=_FM)
def _half_dot3_lanes(jju, kz, jdim, fac, dur, dui, zr, zi, out):
    """``out[a, l] += fac * 2 * sum`` over the independent rows of ``Re(conj(dU) Z)``
    (middle diagonal halved): :func:`_half_dot3` for LANES neighbours."""
    L = out.shape[1]
    for mb in range(jdim // 2 + 1):
        for ma in range(jdim + 1):
            if 2 * mb == jdim and ma > mb:
                break
            w = fac if (2 * mb == jdim and ma == mb) else 2.0 * fac
            for k in range(3):
                for l in range(L):
                    out[k, l] += w * (dur[jju, k, l] * zr[kz, l] + dui[jju, k, l] * zi[kz, l])
            kz += 1
            jju += 1


@njit(cache=True)
def _z_all_lanes(idxz, idxcg_block, cglist, idxu_block, utr, uti, zr, zi, sr, si):
    """Every Z entry of every element pair ``(e1, e2)`` of a lane block into ``zr``/``zi``
    (n_elements^2, n_z, L) from the densities ``utr``/``uti`` (n_elements, idxu_max, L);
    a block with ``j1 == j2`` is copied from ``(e2, e1)`` (``Z_{e1 e2} = Z_{e2 e1}``)."""
    ne = utr.shape[0]
    L = utr.shape[2]
    for e1 in range(ne):
        for e2 in range(ne):
            for k in range(idxz.shape[0]):
                if e2 < e1 and idxz[k, 0] == idxz[k, 1]:
                    for l in range(L):
                        zr[e1 * ne + e2, k, l] = zr[e2 * ne + e1, k, l]
                        zi[e1 * ne + e2, k, l] = zi[e2 * ne + e1, k, l]
                    continue
                _z2_lanes(k, idxz, idxcg_block, cglist, idxu_block, utr[e1], uti[e1], utr[e2],
                          uti[e2], zr[e1 * ne + e2, k], zi[e1 * ne + e2, k], sr, si)


@njit(cache=True)
def _b_from_z_lanes(i0, n, ei, wselfall, bzero, idxu_block, idxz_block, idxb, utr, uti, zr, zi,
                    acc, out):
    """B of atoms i0..i0+L-1 into ``out`` (n_atoms, n_elements^3 K) from the densities and the
    Z of :func:`_z_all_lanes`: ``B_{e1 e2 e3} = 2 sum conj(U_e3) Z_{e1 e2}``, minus ``bzero``
    for the triple ``(ei, ei, ei)`` (every triple with ``wselfall``); ``acc`` (L,) scratch."""
    ne = utr.shape[0]
    L = utr.shape[2]
    K = idxb.shape[0]
    for dbl in range(ne * ne):
        for e3 in range(ne):
            for jjb in range(K):
                j = idxb[jjb, 2]
                kz = idxz_block[idxb[jjb, 0], idxb[jjb, 1], j]
                jju = idxu_block[j]
                for l in range(L):
                    acc[l] = 0.0
                for mb in range(j // 2 + 1):
                    for ma in range(j + 1):
                        if 2 * mb == j and ma > mb:
                            break
                        w = 0.5 if (2 * mb == j and ma == mb) else 1.0
                        for l in range(L):
                            acc[l] += w * (utr[e3, jju, l] * zr[dbl, kz, l]
                                           + uti[e3, jju, l] * zi[dbl, kz, l])
                        kz += 1
                        jju += 1
                col = (dbl * ne + e3) * K + jjb
                e1 = dbl // ne
                e2 = dbl % ne
                for l in range(L):
                    i = i0 + l
                    if i < n:
                        shift = wselfall or (e1 == ei[i] and e2 == ei[i] and e3 == ei[i])
                        out[i, col] = 2.0 * acc[l] - (bzero[j] if shift else 0.0)


@njit(cache=True)
def _du_neighbour_lanes(i0, k, n, offsets, D, d, inside, rcut_p, w_p, sin_p, din_p, rfac0, rmin0,
                        switchflag, J, idxu_block, rootpq, pidx, a_r, a_i, b_r, b_i, geo, ur, ui,
                        dur, dui, da):
    """Geometry (:func:`_geometry_lanes`), U and the forward-mode dU (:func:`_du_lanes`) of the
    k-th neighbours of atoms i0..i0+L-1; returns the number of live lanes (0: nothing done)."""
    live = _geometry_lanes(i0, k, n, offsets, D, d, inside, rcut_p, w_p, sin_p, din_p, rfac0,
                           rmin0, switchflag, pidx, a_r, a_i, b_r, b_i, geo)
    if live > 0:
        _u_lanes(a_r, a_i, b_r, b_i, J, idxu_block, rootpq, ur, ui)
        _du_lanes(a_r, a_i, b_r, b_i, geo, J, idxu_block, rootpq, ur, ui, dur, dui, da)
    return live


@njit(cache=True, inline="always")
def _fold_dbdr_lanes(pidx, dur, dui, zr, zi, idxu_block, idxz_block, idxb, o, dout):
    """Single-density dB_i/dr_ij of the lanes' neighbours ``pidx`` into ``dout`` (n_pairs, 3,
    n_b): per B component 2 Re sum of conj(dU) Z over its three blocks (``zr``/``zi``
    (n_z, L)), coinciding blocks (``j1 == j``, or ``j2 == j1``) sharing one dot product with
    the factors summed.  ``o`` (3, L) scratch."""
    L = o.shape[1]
    for jjb in range(idxb.shape[0]):
        j1 = idxb[jjb, 0]
        j2 = idxb[jjb, 1]
        j = idxb[jjb, 2]
        for a in range(3):
            for l in range(L):
                o[a, l] = 0.0
        f1 = (j + 1) / (j1 + 1.0)
        f2 = (j + 1) / (j2 + 1.0)
        fa = 1.0
        if j1 == j:
            fa += f1
            f1 = 0.0
        if j2 == j1:
            if f1 != 0.0:
                f1 += f2
            else:
                fa += f2
            f2 = 0.0
        _half_dot3_lanes(idxu_block[j], idxz_block[j1, j2, j], j, fa, dur, dui, zr, zi, o)
        if f1 != 0.0:
            _half_dot3_lanes(idxu_block[j1], idxz_block[j, j2, j1], j1, f1, dur, dui, zr, zi, o)
        if f2 != 0.0:
            _half_dot3_lanes(idxu_block[j2], idxz_block[j, j1, j2], j2, f2, dur, dui, zr, zi, o)
        for l in range(L):
            p = pidx[l]
            if p >= 0:
                dout[p, 0, jjb] = o[0, l]
                dout[p, 1, jjb] = o[1, l]
                dout[p, 2, jjb] = o[2, l]


@njit(cache=True, inline="always")
def _chem_dbdr_lanes(pidx, ej_p, dur, dui, zr, zi, idxu_block, idxz_block, idxb, msk, ot, dl,
                     dout):
    """Chemflag dB_i/dr_ij of the lanes' neighbours ``pidx`` into ``dout`` (n_pairs, 3,
    ne^3 K): per ``(j1, j2, j)`` and element pair the (at most three distinct) Z blocks
    (``zr``/``zi`` (ne^2, n_z, L)) dotted with dU, added to the columns of the neighbour's
    element.  ``msk`` (ne, L), ``ot`` (3, ne^2, 3, L), ``dl`` (3, ne^3 K, L) scratch."""
    nd = zr.shape[0]
    ne = msk.shape[0]
    L = msk.shape[1]
    K = idxb.shape[0]
    F = nd * ne * K
    for e in range(ne):
        for l in range(L):
            p = pidx[l]
            msk[e, l] = 1.0 if (p >= 0 and ej_p[p] == e) else 0.0
    for jjb in range(K):
        j1 = idxb[jjb, 0]
        j2 = idxb[jjb, 1]
        j = idxb[jjb, 2]
        f1 = (j + 1) / (j1 + 1.0)
        f2 = (j + 1) / (j2 + 1.0)
        # distinct Z blocks: t0 (j1 j2 -> j), t1 (j j2 -> j1), t2 (j j1 -> j2)
        t1 = 0 if j1 == j else 1
        t2 = t1 if j2 == j1 else 2
        for dbl in range(nd):
            e1 = dbl // ne
            e2 = dbl % ne
            for t in range(3):
                if (t == 1 and t1 == 0) or (t == 2 and t2 != 2):
                    continue
                if e2 < e1 and ((t == 0 and j1 == j2) or (t == 2 and j1 == j)):
                    # a block (ja, ja, jc) of Z_{e1 e2} = that of Z_{e2 e1}
                    d21 = e2 * ne + e1
                    for a in range(3):
                        for l in range(L):
                            ot[t, dbl, a, l] = ot[t, d21, a, l]
                    continue
                for a in range(3):
                    for l in range(L):
                        ot[t, dbl, a, l] = 0.0
                if t == 0:
                    _half_dot3_lanes(idxu_block[j], idxz_block[j1, j2, j], j, 1.0, dur,
                                     dui, zr[dbl], zi[dbl], ot[0, dbl])
                elif t == 1:
                    _half_dot3_lanes(idxu_block[j1], idxz_block[j, j2, j1], j1, 1.0,
                                     dur, dui, zr[dbl], zi[dbl], ot[1, dbl])
                else:
                    _half_dot3_lanes(idxu_block[j2], idxz_block[j, j1, j2], j2, 1.0,
                                     dur, dui, zr[dbl], zi[dbl], ot[2, dbl])
        # d/dU_e3^j: B_{e1 e2 e3}; d/dU_e3^j1: B_{e3 e2 e1} (Z_{e1 e2});
        # d/dU_e3^j2: B_{e1 e3 e2} (Z_{e2 e1}); e3 = the lane's neighbour element
        # (masks msk[e3]), into the lane-major dl, vectorised over lanes
        for tr in range(nd * ne):
            for a in range(3):
                for l in range(L):
                    dl[a, tr * K + jjb, l] = 0.0
        for e3 in range(ne):
            for e1 in range(ne):
                for e2 in range(ne):
                    c0 = ((e1 * ne + e2) * ne + e3) * K + jjb
                    c1 = ((e3 * ne + e2) * ne + e1) * K + jjb
                    c2 = ((e1 * ne + e3) * ne + e2) * K + jjb
                    d12 = e1 * ne + e2
                    d21 = e2 * ne + e1
                    for a in range(3):
                        for l in range(L):
                            m = msk[e3, l]
                            dl[a, c0, l] += m * ot[0, d12, a, l]
                            dl[a, c1, l] += (m * f1) * ot[t1, d12, a, l]
                            dl[a, c2, l] += (m * f2) * ot[t2, d21, a, l]
    for l in range(L):
        p = pidx[l]
        if p >= 0:
            for a in range(3):
                for c in range(F):
                    dout[p, a, c] = dl[a, c, l]


@njit(cache=True)
def _chem_bispectrum_grad_lanes(offsets, D, d, inside, rcut_p, w_p, sin_p, din_p, ej_p, ei, ne,
                                wselfall, rfac0, rmin0, switchflag, wself, bzero, J, idxu_block,
                                rootpq, cglist, idxcg_block, idxz, idxz_block, idxb, fold=False):
    """Chemflag B (n_atoms, ne^3 K) and dB_i/dr_ij (n_pairs, 3, ne^3 K), up to GRAD_LANES atoms
    at a time (LAMMPS ``compute_dbidrj``).

    Z of every element pair once (:func:`_z_all_lanes`); per neighbour the forward-mode dU
    (:func:`_du_lanes`) dotted with the (at most three distinct) Z blocks of each
    ``(j1, j2, j)`` and element pair, then added to the columns of the neighbour's element
    (:func:`_chem_dbdr_lanes`).  With ``fold`` (one element, ``wselfall``) the single-density
    Jacobian :func:`_bispectrum_grad_lanes` (:func:`_fold_dbdr_lanes`).
    """
    n = offsets.shape[0] - 1
    L = _lane_count(n, GRAD_LANES, 4)
    npairs = D.shape[0]
    nu = idxu_block[J] + (J + 1) * (J + 1)
    nz = idxz.shape[0]
    K = idxb.shape[0]
    nd = ne * ne
    F = nd * ne * K
    out = np.zeros((n, F))
    dout = np.zeros((npairs, 3, F))
    utr = np.empty((ne, nu, L))
    uti = np.empty((ne, nu, L))
    ur = np.empty((nu, L))
    ui = np.empty((nu, L))
    ws = np.empty((ne, L))
    zr = np.empty((nd, nz, L))
    zi = np.empty((nd, nz, L))
    sr = np.empty(L)
    si = np.empty(L)
    acc = np.empty(L)
    dur = np.empty((nu, 3, L))
    dui = np.empty((nu, 3, L))
    da = np.empty((15, L))
    o = np.empty((3, L))
    ot = np.empty((3, nd, 3, L))
    dl = np.empty((3, F, L))
    msk = np.empty((ne, L))
    pidx = np.empty(L, dtype=np.int64)
    a_r = np.empty(L)
    a_i = np.empty(L)
    b_r = np.empty(L)
    b_i = np.empty(L)
    geo = np.empty((8, L))
    for i0 in range(0, n, L):
        maxk = _max_neighbours(i0, n, offsets, L)
        _utot_lanes(i0, n, maxk, offsets, D, d, inside, rcut_p, w_p, sin_p, din_p, ej_p, ei,
                    wselfall, rfac0, rmin0, switchflag, wself, J, idxu_block, rootpq, utr, uti,
                    ur, ui, ws)
        _z_all_lanes(idxz, idxcg_block, cglist, idxu_block, utr, uti, zr, zi, sr, si)
        _b_from_z_lanes(i0, n, ei, wselfall, bzero, idxu_block, idxz_block, idxb, utr, uti, zr,
                        zi, acc, out)
        for k in range(maxk):
            if _du_neighbour_lanes(i0, k, n, offsets, D, d, inside, rcut_p, w_p, sin_p, din_p,
                                   rfac0, rmin0, switchflag, J, idxu_block, rootpq, pidx, a_r,
                                   a_i, b_r, b_i, geo, ur, ui, dur, dui, da) == 0:
                continue
            if fold:
                _fold_dbdr_lanes(pidx, dur, dui, zr[0], zi[0], idxu_block, idxz_block, idxb, o,
                                 dout)
            else:
                _chem_dbdr_lanes(pidx, ej_p, dur, dui, zr, zi, idxu_block, idxz_block, idxb, msk,
                                 ot, dl, dout)
    return out, dout


@njit(cache=True)
def _bispectrum_grad_lanes(offsets, D, d, inside, rcut_p, w_p, sin_p, din_p, rfac0, rmin0,
                           switchflag, wself, bzero, J, idxu_block, rootpq, cglist, idxcg_block,
                           idxz, idxz_block, idxb):
    """B (n_atoms, n_b) and dB_i/dr_ij (n_pairs, 3, n_b), up to GRAD_LANES atoms at a time:
    :func:`_chem_bispectrum_grad_lanes` with one element and ``fold``.

    Same result as the scalar :func:`_bispectrum_grad` (LAMMPS ``compute_dbidrj``): Z of
    every atom once, then per neighbour the forward-mode dU (:func:`_du_lanes`) contracted
    with the three Z blocks of each B component.
    """
    ej_p, ei = _single_element(D.shape[0], offsets.shape[0] - 1)
    return _chem_bispectrum_grad_lanes(offsets, D, d, inside, rcut_p, w_p, sin_p, din_p, ej_p, ei,
                                       1, True, rfac0, rmin0, switchflag, wself, bzero, J,
                                       idxu_block, rootpq, cglist, idxcg_block, idxz, idxz_block,
                                       idxb, True)

