"""Numba kernels of the SO(3) power spectrum and bispectrum (see :mod:`._so3`).

Layouts (shared by every kernel)
--------------------------------
- harmonic index ``lm = l*l + l + m`` (``L2 = (l_max + 1)**2`` entries);
- radial function index ``f = l*n_max + k``;
- density channel ``q = c*n_max + k`` (``c`` the neighbour channel), ``A[q, lm]``;
- per-pair basis: ``Y[lm]``, ``dY[a, lm] = dY_lm / d r_ij[a]`` (Å⁻¹), ``R[f] = g_lk f_c``,
  ``dR[f] = d R / d r``;
- radial table ``table[g, f, 0/1]``: value and derivative of ``R_f`` at ``r = g * h``; the
  radial functions are the cubic Hermite interpolants of these nodes, whose derivative is
  the exact derivative of the interpolant.

Each driver loops over atoms in compiled code (``offsets`` from the sorted neighbour list);
``mode`` 0 computes values, 1 values and the per-pair Jacobian, 2 the adjoint ``dE/dr_ij``.
"""

import numpy as np
from numba import njit

__all__ = ["sph_harm_real", "radial_eval", "power_spectrum_kernel", "bispectrum_kernel"]


@njit(cache=True)
def sph_harm_real(dx, dy, dz, l_max, K, C, S, Y, dY, grad):
    """Real spherical harmonics of the direction of ``(dx, dy, dz)`` and their gradients.

    Polynomial recurrences on the unit vector ``(x, y, z)``: ``Y_lm = K_lm Q_l^m(z) C_m(x, y)``
    (``S_m`` for ``m < 0``) with ``C_m + i S_m = (x + i y)^m`` and ``Q_l^m = P_l^m / sin^m``.
    ``dY`` (3, L2) receives the Cartesian gradient w.r.t. the (unnormalised) vector (Å⁻¹).
    Returns ``r``.
    """
    r = np.sqrt(dx * dx + dy * dy + dz * dz)
    rinv = 1.0 / r
    x = dx * rinv
    y = dy * rinv
    z = dz * rinv
    C[0] = 1.0
    S[0] = 0.0
    for m in range(1, l_max + 1):
        C[m] = x * C[m - 1] - y * S[m - 1]
        S[m] = x * S[m - 1] + y * C[m - 1]
    qmm = 1.0
    for m in range(l_max + 1):
        if m > 0:
            qmm *= 2 * m - 1
        q2 = 0.0  # Q_{l-2}
        dq2 = 0.0
        q1 = qmm  # Q_{l-1}, starts as Q_m^m
        dq1 = 0.0
        for l in range(m, l_max + 1):
            if l == m:
                q = qmm
                dq = 0.0
            elif l == m + 1:
                q = (2 * m + 1) * z * qmm
                dq = (2 * m + 1) * qmm
            else:
                q = ((2 * l - 1) * z * q1 - (l + m - 1) * q2) / (l - m)
                dq = ((2 * l - 1) * (q1 + z * dq1) - (l + m - 1) * dq2) / (l - m)
            if l > m:
                q2 = q1
                dq2 = dq1
            q1 = q
            dq1 = dq
            k = K[l, m]
            base = l * l + l
            if m == 0:
                Y[base] = k * q
                if grad:
                    dY[0, base] = 0.0
                    dY[1, base] = 0.0
                    dY[2, base] = k * dq
            else:
                Y[base + m] = k * q * C[m]
                Y[base - m] = k * q * S[m]
                if grad:
                    kqm = k * q * m
                    dY[0, base + m] = kqm * C[m - 1]
                    dY[1, base + m] = -kqm * S[m - 1]
                    dY[2, base + m] = k * dq * C[m]
                    dY[0, base - m] = kqm * S[m - 1]
                    dY[1, base - m] = kqm * C[m - 1]
                    dY[2, base - m] = k * dq * S[m]
    if grad:
        # project on the tangent plane and divide by r: d/dr_vec of f(r_vec / r)
        L2 = (l_max + 1) * (l_max + 1)
        for lm in range(L2):
            gx = dY[0, lm]
            gy = dY[1, lm]
            gz = dY[2, lm]
            dot = x * gx + y * gy + z * gz
            dY[0, lm] = (gx - x * dot) * rinv
            dY[1, lm] = (gy - y * dot) * rinv
            dY[2, lm] = (gz - z * dot) * rinv
    return r


@njit(cache=True)
def radial_eval(r, inv_h, h, table, R, dR):
    """Cubic Hermite interpolation of every tabulated radial function at ``r``."""
    G = table.shape[0] - 1
    t = r * inv_h
    i = int(t)
    if i >= G:
        i = G - 1
    s = t - i
    s2 = s * s
    h00 = (1.0 + 2.0 * s) * (1.0 - s) * (1.0 - s)
    h10 = s * (1.0 - s) * (1.0 - s) * h
    h01 = s2 * (3.0 - 2.0 * s)
    h11 = s2 * (s - 1.0) * h
    d00 = (6.0 * s2 - 6.0 * s) * inv_h
    d10 = 3.0 * s2 - 4.0 * s + 1.0
    d01 = -d00
    d11 = 3.0 * s2 - 2.0 * s
    for f in range(table.shape[1]):
        y0 = table[i, f, 0]
        m0 = table[i, f, 1]
        y1 = table[i + 1, f, 0]
        m1 = table[i + 1, f, 1]
        R[f] = h00 * y0 + h10 * m0 + h01 * y1 + h11 * m1
        dR[f] = d00 * y0 + d10 * m0 + d01 * y1 + d11 * m1


@njit(cache=True)
def _atom_density(p0, p1, j_arr, D, chan, wts, inv_h, h, table, n_max, l_max, K, C, S,
                  Ys, dYs, Rs, dRs, A, grad):
    """Basis of every pair of one centre (stored in the scratch arrays) and its density ``A``."""
    A[:, :] = 0.0
    for p in range(p0, p1):
        pp = p - p0
        r = sph_harm_real(D[p, 0], D[p, 1], D[p, 2], l_max, K, C, S, Ys[pp], dYs[pp], grad)
        radial_eval(r, inv_h, h, table, Rs[pp], dRs[pp])
        jj = j_arr[p]
        w = wts[jj]
        q0 = chan[jj] * n_max
        for l in range(l_max + 1):
            for k in range(n_max):
                wr = w * Rs[pp, l * n_max + k]
                q = q0 + k
                for lm in range(l * l, (l + 1) * (l + 1)):
                    A[q, lm] += wr * Ys[pp, lm]


@njit(cache=True)
def _pair_adjoint(D, p, pp, w, q0, n_max, l_max, Ys, dYs, Rs, dRs, dA, out):
    """``out[p] = dE/dr_ij = w sum_{k,lm} dE/dA[q0+k, lm] d(R_lk Y_lm)/dr_ij``."""
    r = np.sqrt(D[p, 0] ** 2 + D[p, 1] ** 2 + D[p, 2] ** 2)
    ux = D[p, 0] / r
    uy = D[p, 1] / r
    uz = D[p, 2] / r
    gx = 0.0
    gy = 0.0
    gz = 0.0
    for l in range(l_max + 1):
        for lm in range(l * l, (l + 1) * (l + 1)):
            sa = 0.0  # sum_k dA R
            sb = 0.0  # sum_k dA dR
            for k in range(n_max):
                v = dA[q0 + k, lm]
                sa += v * Rs[pp, l * n_max + k]
                sb += v * dRs[pp, l * n_max + k]
            t = sb * Ys[pp, lm]
            gx += t * ux + sa * dYs[pp, 0, lm]
            gy += t * uy + sa * dYs[pp, 1, lm]
            gz += t * uz + sa * dYs[pp, 2, lm]
    out[p, 0] = w * gx
    out[p, 1] = w * gy
    out[p, 2] = w * gz


@njit(cache=True)
def _max_neighbours(offsets):
    m = 0
    for i in range(offsets.shape[0] - 1):
        c = offsets[i + 1] - offsets[i]
        if c > m:
            m = c
    return m


# --------------------------------------------------------------------------------------------
# power spectrum
# --------------------------------------------------------------------------------------------
@njit(cache=True)
def power_spectrum_kernel(offsets, j_arr, D, chan, wts, inv_h, h, table, n_max, l_max,
                          n_ch, K, fq1, fq2, fl, I1, I2, mode, dE_dX):
    """Power spectrum values (mode 0), + Jacobian (mode 1) or adjoint ``dE/dr_ij`` (mode 2).

    ``I1[c, f]``, ``I2[c, f]`` index the two Jacobian terms of feature ``f`` in the per-pair
    table ``T`` for a neighbour of channel ``c`` (see :func:`._so3._ps_feature_index`).
    Returns ``(X (n_atoms, F), d_drij (n_pairs, 3, F) or empty, g (n_pairs, 3) or empty)``.
    """
    n_atoms = offsets.shape[0] - 1
    n_pairs = D.shape[0]
    F = fq1.shape[0]
    L2 = (l_max + 1) * (l_max + 1)
    Q = n_ch * n_max
    nf = n_max * (l_max + 1)
    grad = mode > 0
    mx = _max_neighbours(offsets)
    Ys = np.empty((mx, L2))
    dYs = np.empty((mx, 3, L2))
    Rs = np.empty((mx, nf))
    dRs = np.empty((mx, nf))
    C = np.empty(l_max + 1)
    S = np.empty(l_max + 1)
    A = np.empty((Q, L2))
    X = np.zeros((n_atoms, F))
    if mode == 1:
        dX = np.empty((n_pairs, 3, F))
    else:
        dX = np.empty((0, 3, F))
    if mode == 2:
        g = np.empty((n_pairs, 3))
    else:
        g = np.empty((0, 3))
    YA = np.empty((Q, l_max + 1))
    dYA = np.empty((Q, 3, l_max + 1))
    nT = n_max * Q * (l_max + 1)
    T = np.zeros((3, nT + 1))
    dA = np.empty((Q, L2))
    for i in range(n_atoms):
        p0 = offsets[i]
        p1 = offsets[i + 1]
        _atom_density(p0, p1, j_arr, D, chan, wts, inv_h, h, table, n_max, l_max, K, C, S,
                      Ys, dYs, Rs, dRs, A, grad)
        for f in range(F):
            l = fl[f]
            a1 = fq1[f]
            a2 = fq2[f]
            s = 0.0
            for lm in range(l * l, (l + 1) * (l + 1)):
                s += A[a1, lm] * A[a2, lm]
            X[i, f] = s
        if mode == 1:
            for p in range(p0, p1):
                pp = p - p0
                jj = j_arr[p]
                w = wts[jj]
                c = chan[jj]
                r = np.sqrt(D[p, 0] ** 2 + D[p, 1] ** 2 + D[p, 2] ** 2)
                u0 = D[p, 0] / r
                u1 = D[p, 1] / r
                u2 = D[p, 2] / r
                # YA[q, l] = sum_m Y_lm A[q, lm]; dYA[q, a, l] = sum_m dY_lm/dr_a A[q, lm]
                for q in range(Q):
                    for l in range(l_max + 1):
                        s0 = 0.0
                        s1 = 0.0
                        s2 = 0.0
                        s3 = 0.0
                        for lm in range(l * l, (l + 1) * (l + 1)):
                            v = A[q, lm]
                            s0 += Ys[pp, lm] * v
                            s1 += dYs[pp, 0, lm] * v
                            s2 += dYs[pp, 1, lm] * v
                            s3 += dYs[pp, 2, lm] * v
                        YA[q, l] = s0
                        dYA[q, 0, l] = s1
                        dYA[q, 1, l] = s2
                        dYA[q, 2, l] = s3
                # T[a, (k*Q + q)*(l_max+1) + l] = sum_m dA[c k, lm]/dr_a A[q, lm]
                for k in range(n_max):
                    for q in range(Q):
                        base = (k * Q + q) * (l_max + 1)
                        for l in range(l_max + 1):
                            wr = w * Rs[pp, l * n_max + k]
                            wdr = w * dRs[pp, l * n_max + k] * YA[q, l]
                            T[0, base + l] = wdr * u0 + wr * dYA[q, 0, l]
                            T[1, base + l] = wdr * u1 + wr * dYA[q, 1, l]
                            T[2, base + l] = wdr * u2 + wr * dYA[q, 2, l]
                # feature f: [c(q1) = c] T[k1, q2, l] + [c(q2) = c] T[k2, q1, l]; the index
                # tables point at the zero slot T[:, -1] when the channel does not match
                for a in range(3):
                    for f in range(F):
                        dX[p, a, f] = T[a, I1[c, f]] + T[a, I2[c, f]]
        elif mode == 2:
            dA[:, :] = 0.0
            for f in range(F):
                l = fl[f]
                a1 = fq1[f]
                a2 = fq2[f]
                G = dE_dX[i, f]
                for lm in range(l * l, (l + 1) * (l + 1)):
                    dA[a1, lm] += G * A[a2, lm]
                    dA[a2, lm] += G * A[a1, lm]
            for p in range(p0, p1):
                jj = j_arr[p]
                _pair_adjoint(D, p, p - p0, wts[jj], chan[jj] * n_max, n_max, l_max, Ys, dYs,
                              Rs, dRs, dA, g)
    return X, dX, g


# --------------------------------------------------------------------------------------------
# bispectrum
# --------------------------------------------------------------------------------------------
@njit(cache=True)
def _coupled(A, q, tl, tl1, tl2, eoff, emi, elm1, elm2, ecoef, zoff, Z):
    """``Z[zoff[t] + m + l] = sum C[m, m1, m2] A[q, l1 m1] A[q, l2 m2]`` for every triple."""
    for t in range(tl.shape[0]):
        z0 = zoff[t]
        for mi in range(2 * tl[t] + 1):
            Z[q, z0 + mi] = 0.0
        for e in range(eoff[t], eoff[t + 1]):
            Z[q, z0 + emi[e]] += ecoef[e] * A[q, elm1[e]] * A[q, elm2[e]]


@njit(cache=True)
def bispectrum_kernel(offsets, j_arr, D, chan, wts, inv_h, h, table, n_max, l_max, n_ch, K,
                      tl, tl1, tl2, eoff, emi, elm1, elm2, ecoef, fq, fqp, ft, mode, dE_dX):
    """Bispectrum values (mode 0), + Jacobian (mode 1) or adjoint ``dE/dr_ij`` (mode 2).

    Feature ``f``: ``b = sum_m A[fq, l m] Z[fqp, t, m]`` with ``t = ft[f]``.
    """
    n_atoms = offsets.shape[0] - 1
    n_pairs = D.shape[0]
    F = fq.shape[0]
    L2 = (l_max + 1) * (l_max + 1)
    Q = n_ch * n_max
    nf = n_max * (l_max + 1)
    nT = tl.shape[0]
    zoff = np.zeros(nT + 1, dtype=np.int64)
    for t in range(nT):
        zoff[t + 1] = zoff[t] + 2 * tl[t] + 1
    NZ = zoff[nT]
    grad = mode > 0
    mx = _max_neighbours(offsets)
    Ys = np.empty((mx, L2))
    dYs = np.empty((mx, 3, L2))
    Rs = np.empty((mx, nf))
    dRs = np.empty((mx, nf))
    C = np.empty(l_max + 1)
    S = np.empty(l_max + 1)
    A = np.empty((Q, L2))
    Z = np.empty((Q, NZ))
    X = np.zeros((n_atoms, F))
    if mode == 1:
        dX = np.empty((n_pairs, 3, F))
    else:
        dX = np.empty((0, 3, F))
    if mode == 2:
        g = np.empty((n_pairs, 3))
    else:
        g = np.empty((0, 3))
    du = np.empty((n_max, 3, L2))
    dZ = np.empty((n_max, 3, NZ))
    dA = np.empty((Q, L2))
    H = np.empty((Q, NZ))
    for i in range(n_atoms):
        p0 = offsets[i]
        p1 = offsets[i + 1]
        _atom_density(p0, p1, j_arr, D, chan, wts, inv_h, h, table, n_max, l_max, K, C, S,
                      Ys, dYs, Rs, dRs, A, grad)
        for q in range(Q):
            _coupled(A, q, tl, tl1, tl2, eoff, emi, elm1, elm2, ecoef, zoff, Z)
        for f in range(F):
            t = ft[f]
            l = tl[t]
            q = fq[f]
            qp = fqp[f]
            z0 = zoff[t] - l * l
            s = 0.0
            for lm in range(l * l, (l + 1) * (l + 1)):
                s += A[q, lm] * Z[qp, z0 + lm]
            X[i, f] = s
        if mode == 1:
            for p in range(p0, p1):
                pp = p - p0
                jj = j_arr[p]
                w = wts[jj]
                c = chan[jj]
                r = np.sqrt(D[p, 0] ** 2 + D[p, 1] ** 2 + D[p, 2] ** 2)
                for l in range(l_max + 1):
                    for k in range(n_max):
                        wr = w * Rs[pp, l * n_max + k]
                        wdr = w * dRs[pp, l * n_max + k] / r
                        for lm in range(l * l, (l + 1) * (l + 1)):
                            for a in range(3):
                                du[k, a, lm] = wdr * D[p, a] * Ys[pp, lm] + wr * dYs[pp, a, lm]
                # dZ[k, a, t, m] for the channel q = c*n_max + k
                for k in range(n_max):
                    q = c * n_max + k
                    for a in range(3):
                        for t in range(nT):
                            z0 = zoff[t]
                            for mi in range(2 * tl[t] + 1):
                                dZ[k, a, z0 + mi] = 0.0
                            for e in range(eoff[t], eoff[t + 1]):
                                dZ[k, a, z0 + emi[e]] += ecoef[e] * (
                                    du[k, a, elm1[e]] * A[q, elm2[e]]
                                    + A[q, elm1[e]] * du[k, a, elm2[e]])
                for a in range(3):
                    for f in range(F):
                        t = ft[f]
                        l = tl[t]
                        q = fq[f]
                        qp = fqp[f]
                        z0 = zoff[t] - l * l
                        v = 0.0
                        if q // n_max == c:
                            kq = q - c * n_max
                            for lm in range(l * l, (l + 1) * (l + 1)):
                                v += du[kq, a, lm] * Z[qp, z0 + lm]
                        if qp // n_max == c:
                            kp = qp - c * n_max
                            for lm in range(l * l, (l + 1) * (l + 1)):
                                v += A[q, lm] * dZ[kp, a, z0 + lm]
                        dX[p, a, f] = v
        elif mode == 2:
            dA[:, :] = 0.0
            H[:, :] = 0.0
            for f in range(F):
                t = ft[f]
                l = tl[t]
                q = fq[f]
                qp = fqp[f]
                z0 = zoff[t] - l * l
                G = dE_dX[i, f]
                for lm in range(l * l, (l + 1) * (l + 1)):
                    dA[q, lm] += G * Z[qp, z0 + lm]
                    H[qp, z0 + lm] += G * A[q, lm]
            for q in range(Q):
                for t in range(nT):
                    z0 = zoff[t]
                    for e in range(eoff[t], eoff[t + 1]):
                        hc = H[q, z0 + emi[e]] * ecoef[e]
                        dA[q, elm1[e]] += hc * A[q, elm2[e]]
                        dA[q, elm2[e]] += hc * A[q, elm1[e]]
            for p in range(p0, p1):
                jj = j_arr[p]
                _pair_adjoint(D, p, p - p0, wts[jj], chan[jj] * n_max, n_max, l_max, Ys, dYs,
                              Rs, dRs, dA, g)
    return X, dX, g
