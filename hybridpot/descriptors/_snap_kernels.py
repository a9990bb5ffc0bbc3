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
centre (pairs sorted by centre atom).  Pairs with ``inside[p] == False`` (beyond their
element-pair cutoff) are skipped.
"""

import numpy as np
from numba import njit

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
        jju = idxu_block[j]
        jjup = idxu_block[j - 1]
        for mb in range(j // 2 + 1):
            ur[jju] = 0.0
            ui[jju] = 0.0
            for ma in range(j):
                c = rootpq[j - ma, j - mb]
                pr = ur[jjup]
                pi = ui[jjup]
                ur[jju] += c * (a_r * pr + a_i * pi)
                ui[jju] += c * (a_r * pi - a_i * pr)
                c = rootpq[ma + 1, j - mb]
                ur[jju + 1] = -c * (b_r * pr + b_i * pi)
                ui[jju + 1] = -c * (b_r * pi - b_i * pr)
                jju += 1
                jjup += 1
            jju += 1
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
def _sfac(r, rcut, rmin0, switchflag):
    """Switching function and its radial derivative (LAMMPS compute_sfac / compute_dsfac)."""
    if not switchflag:
        return 1.0, 0.0
    if r <= rmin0:
        return 1.0, 0.0
    if r > rcut:
        return 0.0, 0.0
    f = np.pi / (rcut - rmin0)
    return 0.5 * (np.cos((r - rmin0) * f) + 1.0), -0.5 * np.sin((r - rmin0) * f) * f


@njit(cache=True)
def _z_one(k, idxz, idxcg_block, cglist, idxu_block, utr, uti):
    """Entry ``k`` of the Z list from the summed U (``utr``/``uti``)."""
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
            u1r = utr[jju1 + ma1]
            u1i = uti[jju1 + ma1]
            u2r = utr[jju2 + ma2]
            u2i = uti[jju2 + ma2]
            sr += c * (u1r * u2r - u1i * u2i)
            si += c * (u1r * u2i + u1i * u2r)
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
def _utot_atom(i, offsets, D, d, inside, rcut_p, w_p, rfac0, rmin0, switchflag, wself, J,
               idxu_block, rootpq, utr, uti, ubuf_r, ubuf_i):
    """Sum of weighted U over the neighbours of ``i`` plus ``wself`` on the diagonal.

    The U of each inside neighbour is kept in ``ubuf_r[p - offsets[i]]`` (for derivatives).
    """
    nu = utr.shape[0]
    for q in range(nu):
        utr[q] = 0.0
        uti[q] = 0.0
    for j in range(J + 1):
        for ma in range(j + 1):
            utr[idxu_block[j] + (j + 1) * ma + ma] = wself
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
        s, _ = _sfac(r, rc, rmin0, switchflag)
        s *= w_p[p]
        for q in range(nu):
            utr[q] += s * ur[q]
            uti[q] += s * ui[q]


@njit(cache=True)
def _bispectrum(offsets, D, d, inside, rcut_p, w_p, rfac0, rmin0, switchflag, wself, bzero, J,
                idxu_block, rootpq, cglist, idxcg_block, idxz, idxz_block, idxb):
    """B of every atom, shape (n_atoms, n_b), only the Z blocks B needs (``j >= j1``)."""
    n = offsets.shape[0] - 1
    nu = idxu_block[J] + (J + 1) * (J + 1)
    nb_ = idxb.shape[0]
    out = np.zeros((n, nb_))
    utr = np.empty(nu)
    uti = np.empty(nu)
    maxn = 1
    for i in range(n):
        maxn = max(maxn, offsets[i + 1] - offsets[i])
    ubr = np.empty((1, nu))
    ubi = np.empty((1, nu))
    for i in range(n):
        # values only: U of one neighbour at a time is enough
        for q in range(nu):
            utr[q] = 0.0
            uti[q] = 0.0
        for j in range(J + 1):
            for ma in range(j + 1):
                utr[idxu_block[j] + (j + 1) * ma + ma] = wself
        for p in range(offsets[i], offsets[i + 1]):
            if not inside[p]:
                continue
            r = d[p]
            rc = rcut_p[p]
            theta0 = (r - rmin0) * rfac0 * np.pi / (rc - rmin0)
            z0 = r / np.tan(theta0)
            _u_one(D[p, 0], D[p, 1], D[p, 2], z0, r, J, idxu_block, rootpq, ubr[0], ubi[0])
            s, _ = _sfac(r, rc, rmin0, switchflag)
            s *= w_p[p]
            for q in range(nu):
                utr[q] += s * ubr[0, q]
                uti[q] += s * ubi[0, q]
        for jjb in range(nb_):
            j1 = idxb[jjb, 0]
            j2 = idxb[jjb, 1]
            j = idxb[jjb, 2]
            k = idxz_block[j1, j2, j]
            jju = idxu_block[j]
            s = 0.0
            for mb in range(j // 2 + 1):
                for ma in range(j + 1):
                    if 2 * mb == j and ma > mb:
                        break
                    zr, zi = _z_one(k, idxz, idxcg_block, cglist, idxu_block, utr, uti)
                    t = utr[jju] * zr + uti[jju] * zi
                    if 2 * mb == j and ma == mb:
                        t *= 0.5
                    s += t
                    k += 1
                    jju += 1
            out[i, jjb] = 2.0 * s - bzero[j]
    return out


@njit(cache=True)
def _half_dot3(jju, k, jdim, dur, dui, zr, zi, out):
    """out += 2 * sum over the independent rows of Re(conj(dU) Z) (middle diagonal halved)."""
    s0 = 0.0
    s1 = 0.0
    s2 = 0.0
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
    out[0] += 2.0 * s0
    out[1] += 2.0 * s1
    out[2] += 2.0 * s2


@njit(cache=True)
def _bispectrum_grad(offsets, D, d, inside, rcut_p, w_p, rfac0, rmin0, switchflag, wself, bzero,
                     J, idxu_block, rootpq, cglist, idxcg_block, idxz, idxz_block, idxb):
    """B (n_atoms, n_b) and dB_i/dr_ij (n_pairs, 3, n_b) (LAMMPS compute_dbidrj)."""
    n = offsets.shape[0] - 1
    npairs = D.shape[0]
    nu = idxu_block[J] + (J + 1) * (J + 1)
    nz = idxz.shape[0]
    nb_ = idxb.shape[0]
    out = np.zeros((n, nb_))
    dout = np.zeros((npairs, 3, nb_))
    utr = np.empty(nu)
    uti = np.empty(nu)
    zr = np.empty(nz)
    zi = np.empty(nz)
    dur = np.empty((nu, 3))
    dui = np.empty((nu, 3))
    g = np.empty(3)
    maxn = 1
    for i in range(n):
        maxn = max(maxn, offsets[i + 1] - offsets[i])
    ubr = np.empty((maxn, nu))
    ubi = np.empty((maxn, nu))
    for i in range(n):
        _utot_atom(i, offsets, D, d, inside, rcut_p, w_p, rfac0, rmin0, switchflag, wself, J,
                   idxu_block, rootpq, utr, uti, ubr, ubi)
        for k in range(nz):
            zr[k], zi[k] = _z_one(k, idxz, idxcg_block, cglist, idxu_block, utr, uti)
        for jjb in range(nb_):
            j = idxb[jjb, 2]
            k = idxz_block[idxb[jjb, 0], idxb[jjb, 1], j]
            jju = idxu_block[j]
            s = 0.0
            for mb in range(j // 2 + 1):
                for ma in range(j + 1):
                    if 2 * mb == j and ma > mb:
                        break
                    t = utr[jju] * zr[k] + uti[jju] * zi[k]
                    if 2 * mb == j and ma == mb:
                        t *= 0.5
                    s += t
                    k += 1
                    jju += 1
            out[i, jjb] = 2.0 * s - bzero[j]
        for p in range(offsets[i], offsets[i + 1]):
            if not inside[p]:
                continue
            r = d[p]
            rc = rcut_p[p]
            rscale0 = rfac0 * np.pi / (rc - rmin0)
            theta0 = (r - rmin0) * rscale0
            z0 = r * np.cos(theta0) / np.sin(theta0)
            dz0dr = z0 / r - (r * rscale0) * (r * r + z0 * z0) / (r * r)
            s, ds = _sfac(r, rc, rmin0, switchflag)
            q0 = p - offsets[i]
            _du_one(D[p, 0], D[p, 1], D[p, 2], z0, r, dz0dr, s * w_p[p], ds * w_p[p], J,
                    idxu_block, rootpq, ubr[q0], ubi[q0], dur, dui)
            for jjb in range(nb_):
                j1 = idxb[jjb, 0]
                j2 = idxb[jjb, 1]
                j = idxb[jjb, 2]
                g[0] = 0.0
                g[1] = 0.0
                g[2] = 0.0
                _half_dot3(idxu_block[j], idxz_block[j1, j2, j], j, dur, dui, zr, zi, g)
                f1 = (j + 1) / (j1 + 1.0)
                f2 = (j + 1) / (j2 + 1.0)
                h = np.zeros(3)
                _half_dot3(idxu_block[j1], idxz_block[j, j2, j1], j1, dur, dui, zr, zi, h)
                for a in range(3):
                    g[a] += f1 * h[a]
                    h[a] = 0.0
                _half_dot3(idxu_block[j2], idxz_block[j, j1, j2], j2, dur, dui, zr, zi, h)
                for a in range(3):
                    dout[p, a, jjb] = g[a] + f2 * h[a]
    return out, dout


@njit(cache=True)
def _backward(offsets, D, d, inside, rcut_p, w_p, rfac0, rmin0, switchflag, wself, J,
              idxu_block, rootpq, cglist, idxcg_block, idxz, z_jjb, z_fac, beta):
    """Adjoint: dE/dr_ij (n_pairs, 3) for E = sum_i beta[i] . B_i (LAMMPS compute_yi/deidrj).

    ``z_jjb[k]`` / ``z_fac[k]`` map Z entry ``k`` to the B component and multiplicity factor of
    its contribution to Y = dE/dU.
    """
    n = offsets.shape[0] - 1
    npairs = D.shape[0]
    nu = idxu_block[J] + (J + 1) * (J + 1)
    nz = idxz.shape[0]
    g = np.zeros((npairs, 3))
    utr = np.empty(nu)
    uti = np.empty(nu)
    yr = np.empty(nu)
    yi = np.empty(nu)
    dur = np.empty((nu, 3))
    dui = np.empty((nu, 3))
    maxn = 1
    for i in range(n):
        maxn = max(maxn, offsets[i + 1] - offsets[i])
    ubr = np.empty((maxn, nu))
    ubi = np.empty((maxn, nu))
    for i in range(n):
        if offsets[i + 1] == offsets[i]:
            continue
        _utot_atom(i, offsets, D, d, inside, rcut_p, w_p, rfac0, rmin0, switchflag, wself, J,
                   idxu_block, rootpq, utr, uti, ubr, ubi)
        for q in range(nu):
            yr[q] = 0.0
            yi[q] = 0.0
        for k in range(nz):
            bj = z_fac[k] * beta[i, z_jjb[k]]
            if bj == 0.0:
                continue
            zr, zi = _z_one(k, idxz, idxcg_block, cglist, idxu_block, utr, uti)
            jju = idxz[k, 9]
            yr[jju] += bj * zr
            yi[jju] += bj * zi
        for p in range(offsets[i], offsets[i + 1]):
            if not inside[p]:
                continue
            r = d[p]
            rc = rcut_p[p]
            rscale0 = rfac0 * np.pi / (rc - rmin0)
            theta0 = (r - rmin0) * rscale0
            z0 = r * np.cos(theta0) / np.sin(theta0)
            dz0dr = z0 / r - (r * rscale0) * (r * r + z0 * z0) / (r * r)
            s, ds = _sfac(r, rc, rmin0, switchflag)
            q0 = p - offsets[i]
            _du_one(D[p, 0], D[p, 1], D[p, 2], z0, r, dz0dr, s * w_p[p], ds * w_p[p], J,
                    idxu_block, rootpq, ubr[q0], ubi[q0], dur, dui)
            s0 = 0.0
            s1 = 0.0
            s2 = 0.0
            for j in range(J + 1):
                jju = idxu_block[j]
                for mb in range(j // 2 + 1):
                    for ma in range(j + 1):
                        if 2 * mb == j and ma > mb:
                            break
                        a = yr[jju]
                        b = yi[jju]
                        if 2 * mb == j and ma == mb:
                            a *= 0.5
                            b *= 0.5
                        s0 += dur[jju, 0] * a + dui[jju, 0] * b
                        s1 += dur[jju, 1] * a + dui[jju, 1] * b
                        s2 += dur[jju, 2] * a + dui[jju, 2] * b
                        jju += 1
            g[p, 0] = 2.0 * s0
            g[p, 1] = 2.0 * s1
            g[p, 2] = 2.0 * s2
    return g
