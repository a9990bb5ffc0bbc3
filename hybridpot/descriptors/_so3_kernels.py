"""Numba kernels of the SO(3) power spectrum and bispectrum (see :mod:`._so3`).

Layouts (shared by every kernel)
--------------------------------
- harmonic index ``lm = l*l + l + m`` (``L2 = (l_max + 1)**2`` entries);
- radial function index ``f = l*n_max + k``;
- density channel ``q = c*n_max + k`` (``c`` the neighbour channel), ``A[lm, q]`` (channel
  fastest, so the inner loops run over contiguous channels);
- per-pair basis: ``Y[lm]``, ``dY[a, lm] = dY_lm / d r_ij[a]`` (Å⁻¹), ``R[f] = g_lk f_c``,
  ``dR[f] = d R / d r``, kept per centre in scratch arrays ``Ys[pp, lm]``, ``dYs[pp, a, lm]``,
  ``Rs[pp, f]``, ``dRs[pp, f]`` (``pp`` the pair's rank among the centre's pairs);
- radial table ``table[g, f, 0/1]``: value and derivative of ``R_f`` at ``r = g * h``; the
  radial functions are the cubic Hermite interpolants of these nodes, whose derivative is
  the exact derivative of the interpolant.

Each driver loops over atoms in compiled code (``offsets`` from the sorted neighbour list);
``mode`` 0 computes values, 1 values and the per-pair Jacobian, 2 the adjoint ``dE/dr_ij`` for
each of the ``K`` rows of ``dE_dX`` (shape (K, n_atoms, F); the density and its basis are
computed once and shared by the ``K`` scalars).
"""

import numpy as np
from numba import njit

__all__ = ["sph_harm_real", "radial_eval", "inner_switch", "power_spectrum_kernel",
           "bispectrum_kernel"]


@njit(cache=True)
def sph_harm_real(dx, dy, dz, l_max, K, C, S, Y, dY, grad, project=True):
    """Real spherical harmonics of the direction of ``(dx, dy, dz)`` and their gradients.

    Polynomial recurrences on the unit vector ``(x, y, z)``: ``Y_lm = K_lm Q_l^m(z) C_m(x, y)``
    (``S_m`` for ``m < 0``) with ``C_m + i S_m = (x + i y)^m`` and ``Q_l^m = P_l^m / sin^m``:
    ``Q_m^m = (2m-1)!!``, ``Q_{m+1}^m = (2m+1) z Q_m^m``,
    ``Q_l^m = [(2l-1) z Q_{l-1}^m - (l+m-1) Q_{l-2}^m] / (l-m)``.
    ``K`` (3, l_max+1, l_max+1) holds the normalisations ``K[0, l, m]`` and the recurrence
    coefficients ``K[1] = (2l-1)/(l-m)``, ``K[2] = (l+m-1)/(l-m)``
    (:func:`hybridpot.descriptors._so3.harmonic_constants`).  ``dY`` (3, L2) receives the
    Cartesian gradient w.r.t. the (unnormalised) vector (Å⁻¹) when ``grad``; with
    ``project=False`` it holds the partial derivatives of the polynomial w.r.t. the unit-vector
    components instead, ``G``, and the gradient of any linear combination is
    ``(G - u (u . G)) / r`` (applied once by the caller).  Returns ``r``.
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
        q1 = 0.0  # Q_{l-1}
        dq1 = 0.0
        for l in range(m, l_max + 1):
            if l == m:
                q = qmm
                dq = 0.0
            elif l == m + 1:
                q = (2 * m + 1) * z * qmm
                dq = (2 * m + 1) * qmm
            elif grad:
                q = K[1, l, m] * z * q1 - K[2, l, m] * q2
                dq = K[1, l, m] * (q1 + z * dq1) - K[2, l, m] * dq2
            else:
                q = K[1, l, m] * z * q1 - K[2, l, m] * q2
                dq = 0.0
            q2 = q1
            dq2 = dq1
            q1 = q
            dq1 = dq
            k = K[0, l, m]
            base = l * l + l
            if m == 0:
                Y[base] = k * q
                if grad:
                    dY[0, base] = 0.0
                    dY[1, base] = 0.0
                    dY[2, base] = k * dq
            else:
                kq = k * q
                Y[base + m] = kq * C[m]
                Y[base - m] = kq * S[m]
                if grad:
                    kqm = kq * m
                    kdq = k * dq
                    dY[0, base + m] = kqm * C[m - 1]
                    dY[1, base + m] = -kqm * S[m - 1]
                    dY[2, base + m] = kdq * C[m]
                    dY[0, base - m] = kqm * S[m - 1]
                    dY[1, base - m] = kqm * C[m - 1]
                    dY[2, base - m] = kdq * S[m]
    if grad and project:
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
def radial_eval(r, inv_h, h, table, R, dR, grad=True):
    """Cubic Hermite interpolation of every tabulated radial function at ``r``.

    ``R[f]`` receives the interpolant and, when ``grad``, ``dR[f]`` its exact derivative.
    """
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
    if grad:
        for f in range(table.shape[1]):
            y0 = table[i, f, 0]
            m0 = table[i, f, 1]
            y1 = table[i + 1, f, 0]
            m1 = table[i + 1, f, 1]
            R[f] = h00 * y0 + h10 * m0 + h01 * y1 + h11 * m1
            dR[f] = d00 * y0 + d10 * m0 + d01 * y1 + d11 * m1
    else:
        for f in range(table.shape[1]):
            R[f] = (h00 * table[i, f, 0] + h10 * table[i, f, 1] + h01 * table[i + 1, f, 0]
                    + h11 * table[i + 1, f, 1])


@njit(cache=True)
def inner_switch(r, s, d):
    """Inner switching function ``f_in(r)`` and ``df_in/dr`` (Å⁻¹), as LAMMPS SNAP's
    ``switchinnerflag``: 0 for ``r <= s - d``, ``(1 + sin(pi/2 (r - s)/d)) / 2`` for
    ``|r - s| < d``, 1 for ``r >= s + d`` (``s``, ``d`` in Å, ``d > 0``)."""
    x = (r - s) / d
    if x <= -1.0:
        return 0.0, 0.0
    if x >= 1.0:
        return 1.0, 0.0
    a = 0.5 * np.pi * x
    return 0.5 * (1.0 + np.sin(a)), 0.25 * np.pi / d * np.cos(a)


@njit(cache=True)
def _switch_radial(r, s, d, R, dR, grad):
    """Multiply the radial functions of one pair by ``f_in(r)`` (and ``dR`` by the product
    rule) when the pair is inside the switching window ``|r - s| < d``."""
    fin, dfin = inner_switch(r, s, d)
    if fin == 1.0 and dfin == 0.0:
        return
    if grad:
        for f in range(R.shape[0]):
            dR[f] = dR[f] * fin + R[f] * dfin
    for f in range(R.shape[0]):
        R[f] *= fin


@njit(cache=True)
def _density_values(p0, p1, j_arr, D, chan, wts, inv_h, h, table, n_max, l_max, n_ch, K,
                    sin_p, din_p):
    """Density of one centre, ``A[lm, q] = sum_j w_j f_in(r_ij) R_lk(r_ij) Y_lm(r_ij)``
    (``q = c_j n_max + k``), returned as a new (L2, n_ch * n_max) array.  ``sin_p``,
    ``din_p``: per-pair inner switch ``s``, ``d`` (Å), None when the switch is off (then
    ``f_in = 1``; a separate compiled specialisation, the same code as without the switch); pairs with ``r <= s - d`` are skipped.  Work arrays are local so that the
    compiler knows they do not alias (this vectorises the accumulation)."""
    L = l_max + 1
    L2 = L * L
    nf = n_max * L
    Y = np.empty(L2)
    dY = np.empty((3, 0))
    R = np.empty(nf)
    dR = np.empty(0)
    C = np.empty(L)
    S = np.empty(L)
    A3 = np.zeros((L2, n_ch, n_max))
    for p in range(p0, p1):
        if sin_p is not None:   # None when off: numba prunes the branch at compile time
            if np.sqrt(D[p, 0] ** 2 + D[p, 1] ** 2 + D[p, 2] ** 2) <= sin_p[p] - din_p[p]:
                continue
        r = sph_harm_real(D[p, 0], D[p, 1], D[p, 2], l_max, K, C, S, Y, dY, False)
        radial_eval(r, inv_h, h, table, R, dR, False)
        if sin_p is not None:
            _switch_radial(r, sin_p[p], din_p[p], R, dR, False)
        jj = j_arr[p]
        w = wts[jj]
        c = chan[jj]
        for l in range(L):
            f0 = l * n_max
            for lm in range(l * l, (l + 1) * (l + 1)):
                wy = w * Y[lm]
                for k in range(n_max):
                    A3[lm, c, k] += wy * R[f0 + k]
    return A3.reshape((L2, n_ch * n_max))


@njit(cache=True)
def _density_grad(p0, p1, j_arr, D, chan, wts, inv_h, h, table, n_max, l_max, n_ch, K,
                  Ys, dYs, Rs, dRs, project, sin_p, din_p):
    """:func:`_density_values` that also keeps the per-pair basis in the scratch arrays
    ``Ys[pp, lm]``, ``dYs[pp, a, lm]``, ``Rs[pp, f]``, ``dRs[pp, f]`` (``pp = p - p0``);
    ``dYs`` unprojected when not ``project`` (see :func:`sph_harm_real`).  With the inner
    switch ``Rs`` / ``dRs`` hold ``f_in R`` and its derivative, and a pair closer than
    ``s - d`` gets an all-zero basis (no contribution to the Jacobian or the adjoint)."""
    L = l_max + 1
    L2 = L * L
    C = np.empty(L)
    S = np.empty(L)
    A3 = np.zeros((L2, n_ch, n_max))
    for pp in range(p1 - p0):
        p = p0 + pp
        Y = Ys[pp]
        R = Rs[pp]
        if sin_p is not None:   # None when off: numba prunes the branch at compile time
            if np.sqrt(D[p, 0] ** 2 + D[p, 1] ** 2 + D[p, 2] ** 2) <= sin_p[p] - din_p[p]:
                Ys[pp, :] = 0.0
                dYs[pp, :, :] = 0.0
                Rs[pp, :] = 0.0
                dRs[pp, :] = 0.0
                continue
        r = sph_harm_real(D[p, 0], D[p, 1], D[p, 2], l_max, K, C, S, Y, dYs[pp], True, project)
        radial_eval(r, inv_h, h, table, R, dRs[pp], True)
        if sin_p is not None:
            _switch_radial(r, sin_p[p], din_p[p], R, dRs[pp], True)
        jj = j_arr[p]
        w = wts[jj]
        c = chan[jj]
        for l in range(L):
            f0 = l * n_max
            for lm in range(l * l, (l + 1) * (l + 1)):
                wy = w * Y[lm]
                for k in range(n_max):
                    A3[lm, c, k] += wy * R[f0 + k]
    return A3.reshape((L2, n_ch * n_max))


@njit(cache=True, fastmath={"reassoc", "contract"})
def _atom_adjoint(p0, p1, j_arr, D, chan, wts, n_max, l_max, Ys, dYs, Rs, dRs, dA3, out):
    """``out[p] = dE/dr_ij = w_j sum_{k,lm} dE/dA3[lm, c_j, k] d(R_lk Y_lm)/dr_ij`` for
    the pairs ``p0:p1`` of one centre (the per-pair basis is in the scratch arrays, with
    *unprojected* harmonic derivatives: the tangent projection is applied once per pair).

    Contracts over ``k`` first (``B_lm = sum_k dA R_lk``, ``B'_lm = sum_k dA R'_lk``), then
    ``dE/dr_a = w sum_lm (B'_lm u_a Y_lm + B_lm dY_lm/dr_a)``; reassociation is allowed so the
    length-``n_max`` dot products vectorise."""
    L = l_max + 1
    for pp in range(p1 - p0):  # range variables are known >= 0: no wrap-around in the loops
        p = p0 + pp
        jj = j_arr[p]
        dAc = dA3[:, chan[jj], :]
        r = np.sqrt(D[p, 0] ** 2 + D[p, 1] ** 2 + D[p, 2] ** 2)
        ty = 0.0
        gx = 0.0
        gy = 0.0
        gz = 0.0
        for l in range(L):
            f0 = l * n_max
            for lm in range(l * l, (l + 1) * (l + 1)):
                b = 0.0
                bd = 0.0
                for k in range(n_max):
                    v = dAc[lm, k]
                    b += v * Rs[pp, f0 + k]
                    bd += v * dRs[pp, f0 + k]
                ty += bd * Ys[pp, lm]
                gx += b * dYs[pp, 0, lm]
                gy += b * dYs[pp, 1, lm]
                gz += b * dYs[pp, 2, lm]
        w = wts[jj]
        ux = D[p, 0] / r
        uy = D[p, 1] / r
        uz = D[p, 2] / r
        dot = ux * gx + uy * gy + uz * gz
        out[p, 0] = w * (ty * ux + (gx - ux * dot) / r)
        out[p, 1] = w * (ty * uy + (gy - uy * dot) / r)
        out[p, 2] = w * (ty * uz + (gz - uz * dot) / r)


@njit(cache=True, fastmath={"reassoc", "contract"})
def _atom_adjoint_many(p0, p1, j_arr, D, chan, wts, n_max, l_max, Ys, dYs, Rs, dRs, dAm, out):
    """:func:`_atom_adjoint` for ``K`` members at once: ``dAm[lm, c, k, kk]`` holds member
    ``kk``'s ``dE/dA3`` (members last, so the innermost loops run over contiguous members and
    the per-pair basis is read once for all of them); writes ``out[kk, p]``."""
    L = l_max + 1
    K = dAm.shape[3]
    b = np.empty(K)
    bd = np.empty(K)
    ty = np.empty(K)
    gx = np.empty(K)
    gy = np.empty(K)
    gz = np.empty(K)
    for pp in range(p1 - p0):
        p = p0 + pp
        jj = j_arr[p]
        c = chan[jj]
        r = np.sqrt(D[p, 0] ** 2 + D[p, 1] ** 2 + D[p, 2] ** 2)
        ty[:] = 0.0
        gx[:] = 0.0
        gy[:] = 0.0
        gz[:] = 0.0
        for l in range(L):
            f0 = l * n_max
            for lm in range(l * l, (l + 1) * (l + 1)):
                b[:] = 0.0
                bd[:] = 0.0
                for k in range(n_max):
                    rk = Rs[pp, f0 + k]
                    drk = dRs[pp, f0 + k]
                    for kk in range(K):
                        v = dAm[lm, c, k, kk]
                        b[kk] += v * rk
                        bd[kk] += v * drk
                y = Ys[pp, lm]
                y0 = dYs[pp, 0, lm]
                y1 = dYs[pp, 1, lm]
                y2 = dYs[pp, 2, lm]
                for kk in range(K):
                    ty[kk] += bd[kk] * y
                    gx[kk] += b[kk] * y0
                    gy[kk] += b[kk] * y1
                    gz[kk] += b[kk] * y2
        w = wts[jj]
        ux = D[p, 0] / r
        uy = D[p, 1] / r
        uz = D[p, 2] / r
        for kk in range(K):
            dot = ux * gx[kk] + uy * gy[kk] + uz * gz[kk]
            out[kk, p, 0] = w * (ty[kk] * ux + (gx[kk] - ux * dot) / r)
            out[kk, p, 1] = w * (ty[kk] * uy + (gy[kk] - uy * dot) / r)
            out[kk, p, 2] = w * (ty[kk] * uz + (gz[kk] - uz * dot) / r)


#: below this many members, :func:`_member_adjoint` contracts each member on its own (the
#: batched kernel's loops over members are then too short to pay off)
MANY_MEMBERS = 8


@njit(cache=True)
def _member_adjoint(p0, p1, j_arr, D, chan, wts, n_max, l_max, Ys, dYs, Rs, dRs, dA3, dAm, g,
                    kk):
    """Member ``kk``'s ``dE/dA3`` of one centre: a single member goes through
    :func:`_atom_adjoint` at once; with several, it is stored in ``dAm`` and the last member
    runs :func:`_atom_adjoint_many` for all of them."""
    K = g.shape[0]
    if K <= MANY_MEMBERS:
        _atom_adjoint(p0, p1, j_arr, D, chan, wts, n_max, l_max, Ys, dYs, Rs, dRs, dA3, g[kk])
        return
    dAm[:, :, :, kk] = dA3
    if kk == K - 1:
        _atom_adjoint_many(p0, p1, j_arr, D, chan, wts, n_max, l_max, Ys, dYs, Rs, dRs, dAm, g)


@njit(cache=True)
def _pair_du(D, p, pp, w, n_max, l_max, Ys, dYs, Rs, dRs, du):
    """``du[a, k, lm] = w d(R_lk Y_lm)/dr_ij[a]`` for one pair (projected ``dYs``)."""
    r = np.sqrt(D[p, 0] ** 2 + D[p, 1] ** 2 + D[p, 2] ** 2)
    for a in range(3):
        ua = D[p, a] / r
        for l in range(l_max + 1):
            f0 = l * n_max
            for k in range(n_max):
                wdr = w * ua * dRs[pp, f0 + k]
                wr = w * Rs[pp, f0 + k]
                for lm in range(l * l, (l + 1) * (l + 1)):
                    du[a, k, lm] = wdr * Ys[pp, lm] + wr * dYs[pp, a, lm]


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
                          n_ch, K, fq1, fq2, fl, I1, I2, mode, dE_dX, sin_p, din_p):
    """Power spectrum values (mode 0), + Jacobian (mode 1) or adjoint ``dE/dr_ij`` (mode 2).

    Feature ``f = (fq1, fq2, fl)``: ``p = sum_m A[l m, fq1] A[l m, fq2]``.  ``I1[c, f]``,
    ``I2[c, f]`` index the two Jacobian terms of feature ``f`` in the flat per-pair table
    ``T[a, (k*(l_max+1) + l)*Q + q] = sum_m dA[lm, c n_max + k]/dr_a A[lm, q]`` for a neighbour
    of channel ``c`` (the zero slot ``T[a, -1]`` when the channel does not match; see
    :func:`._so3._ps_feature_index`).
    ``sin_p``, ``din_p`` (n_pairs,) or None: the per-pair inner switch (see
    :func:`_density_values`).
    Returns ``(X (n_atoms, F), d_drij (n_pairs, 3, F) or empty, g (K, n_pairs, 3) or empty)``;
    in mode 2 ``X`` is empty (not needed by the adjoint).
    """
    n_atoms = offsets.shape[0] - 1
    n_pairs = D.shape[0]
    F = fq1.shape[0]
    L = l_max + 1
    L2 = L * L
    Q = n_ch * n_max
    nf = n_max * L
    grad = mode > 0
    mx = _max_neighbours(offsets)
    Ys = np.empty((mx, L2))
    dYs = np.empty((mx, 3, L2))
    Rs = np.empty((mx, nf))
    dRs = np.empty((mx, nf))
    P = np.empty((L, Q, Q))
    X = np.empty((n_atoms if mode != 2 else 0, F))
    if mode == 1:
        dX = np.empty((n_pairs, 3, F))
    else:
        dX = np.empty((0, 3, F))
    n_members = dE_dX.shape[0] if mode == 2 else 0
    g = np.empty((n_members, n_pairs if mode == 2 else 0, 3))
    YA = np.empty((L, Q))
    dYA = np.empty((3, L, Q))
    nT = n_max * L * Q
    T = np.zeros((3, nT + 1))
    dA3 = np.empty((L2, n_ch, n_max))
    dA = dA3.reshape((L2, Q))
    dAm = np.empty((L2, n_ch, n_max, n_members))
    Gs = np.empty((L, Q, Q))
    for i in range(n_atoms):
        p0 = offsets[i]
        p1 = offsets[i + 1]
        if grad:
            A = _density_grad(p0, p1, j_arr, D, chan, wts, inv_h, h, table, n_max, l_max, n_ch,
                              K, Ys, dYs, Rs, dRs, mode == 1, sin_p, din_p)
        else:
            A = _density_values(p0, p1, j_arr, D, chan, wts, inv_h, h, table, n_max, l_max,
                                n_ch, K, sin_p, din_p)
        if mode != 2:  # the adjoint does not need the features
            P[:, :, :] = 0.0
            for l in range(L):
                for lm in range(l * l, (l + 1) * (l + 1)):
                    for q1 in range(Q):
                        a1 = A[lm, q1]
                        for q2 in range(q1, Q):
                            P[l, q1, q2] += a1 * A[lm, q2]
            for f in range(F):
                X[i, f] = P[fl[f], fq1[f], fq2[f]]
        if mode == 1:
            for p in range(p0, p1):
                pp = p - p0
                jj = j_arr[p]
                w = wts[jj]
                c = chan[jj]
                r = np.sqrt(D[p, 0] ** 2 + D[p, 1] ** 2 + D[p, 2] ** 2)
                # YA[l, q] = sum_m Y_lm A[lm, q]; dYA[a, l, q] = sum_m dY_lm/dr_a A[lm, q]
                YA[:, :] = 0.0
                dYA[:, :, :] = 0.0
                for l in range(L):
                    for lm in range(l * l, (l + 1) * (l + 1)):
                        y = Ys[pp, lm]
                        y0 = dYs[pp, 0, lm]
                        y1 = dYs[pp, 1, lm]
                        y2 = dYs[pp, 2, lm]
                        for q in range(Q):
                            v = A[lm, q]
                            YA[l, q] += y * v
                            dYA[0, l, q] += y0 * v
                            dYA[1, l, q] += y1 * v
                            dYA[2, l, q] += y2 * v
                for a in range(3):
                    ua = D[p, a] / r
                    for k in range(n_max):
                        for l in range(L):
                            wr = w * Rs[pp, l * n_max + k]
                            wdr = w * dRs[pp, l * n_max + k] * ua
                            base = (k * L + l) * Q
                            for q in range(Q):
                                T[a, base + q] = wdr * YA[l, q] + wr * dYA[a, l, q]
                # feature f: [c(q1) = c] T[k1, l, q2] + [c(q2) = c] T[k2, l, q1]
                for a in range(3):
                    for f in range(F):
                        dX[p, a, f] = T[a, I1[c, f]] + T[a, I2[c, f]]
        elif mode == 2:
            for kk in range(n_members):
                # dE/dA[lm, q] = sum_q' G_l[q, q'] A[lm, q'] with G symmetric
                Gs[:, :, :] = 0.0
                for f in range(F):
                    G = dE_dX[kk, i, f]
                    Gs[fl[f], fq1[f], fq2[f]] += G
                    Gs[fl[f], fq2[f], fq1[f]] += G
                dA[:, :] = 0.0
                for l in range(L):
                    for lm in range(l * l, (l + 1) * (l + 1)):
                        for q1 in range(Q):
                            a1 = A[lm, q1]
                            for q2 in range(Q):
                                dA[lm, q2] += Gs[l, q1, q2] * a1
                _member_adjoint(p0, p1, j_arr, D, chan, wts, n_max, l_max, Ys, dYs, Rs, dRs,
                                dA3, dAm, g, kk)
    return X, dX, g


# --------------------------------------------------------------------------------------------
# bispectrum
# --------------------------------------------------------------------------------------------
@njit(cache=True)
def _coupled(A, tl, eoff, emi, elm1, elm2, ecoef, zoff, Z):
    """``Z[zoff[t] + m + l, q] = sum C[m, m1, m2] A[l1 m1, q] A[l2 m2, q]`` for every triple."""
    Z[:, :] = 0.0
    Q = A.shape[1]
    for t in range(tl.shape[0]):
        z0 = zoff[t]
        for e in range(eoff[t], eoff[t + 1]):
            zi = z0 + emi[e]
            cf = ecoef[e]
            i1 = elm1[e]
            i2 = elm2[e]
            for q in range(Q):
                Z[zi, q] += cf * A[i1, q] * A[i2, q]


@njit(cache=True)
def bispectrum_kernel(offsets, j_arr, D, chan, wts, inv_h, h, table, n_max, l_max, n_ch, K,
                      tl, tl1, tl2, eoff, emi, elm1, elm2, ecoef, fq, fqp, ft, fc, fk, fcp, fkp,
                      mode, dE_dX, sin_p, din_p):
    """Bispectrum values (mode 0), + Jacobian (mode 1) or adjoint ``dE/dr_ij`` (mode 2).

    Feature ``f``: ``b = sum_m A[l m, fq] Z[zoff[t] + m + l, fqp]`` with ``t = ft[f]``;
    ``fq = fc * n_max + fk`` and ``fqp = fcp * n_max + fkp`` (channel and radial index).
    Jacobian: per atom ``J[f] = d b_f / d A[., fqp]`` on the ``l1`` and ``l2`` blocks, then per
    pair ``d b_f = sum_m Z_t[m, fqp] dA[l m, fq] + J[f] . dA[(l1, l2), fqp]``.  Adjoint:
    ``dE/dA`` through ``Z`` once per atom and member, then :func:`_atom_adjoint`.
    Returns ``(X, dX, g)`` as :func:`power_spectrum_kernel` (``X`` empty in mode 2: the adjoint
    does not need the features).
    """
    n_atoms = offsets.shape[0] - 1
    n_pairs = D.shape[0]
    F = fq.shape[0]
    L = l_max + 1
    L2 = L * L
    Q = n_ch * n_max
    nf = n_max * L
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
    Z = np.empty((NZ, Q))
    X = np.empty((n_atoms if mode != 2 else 0, F))
    if mode == 1:
        dX = np.empty((n_pairs, 3, F))
    else:
        dX = np.empty((0, 3, F))
    n_members = dE_dX.shape[0] if mode == 2 else 0
    g = np.empty((n_members, n_pairs if mode == 2 else 0, 3))
    du = np.empty((3, n_max, L2))
    J = np.empty((F if mode == 1 else 0, 4 * l_max + 2))
    dA3 = np.empty((L2, n_ch, n_max))
    dA = dA3.reshape((L2, Q))
    dAm = np.empty((L2, n_ch, n_max, n_members))
    H = np.empty((NZ, Q))
    for i in range(n_atoms):
        p0 = offsets[i]
        p1 = offsets[i + 1]
        if grad:
            A = _density_grad(p0, p1, j_arr, D, chan, wts, inv_h, h, table, n_max, l_max, n_ch,
                              K, Ys, dYs, Rs, dRs, mode == 1, sin_p, din_p)
        else:
            A = _density_values(p0, p1, j_arr, D, chan, wts, inv_h, h, table, n_max, l_max,
                                n_ch, K, sin_p, din_p)
        _coupled(A, tl, eoff, emi, elm1, elm2, ecoef, zoff, Z)
        for f in range(F if mode != 2 else 0):  # the adjoint does not need the features
            t = ft[f]
            l = tl[t]
            q = fq[f]
            qp = fqp[f]
            z0 = zoff[t] - l * l
            s = 0.0
            for lm in range(l * l, (l + 1) * (l + 1)):
                s += A[lm, q] * Z[z0 + lm, qp]
            X[i, f] = s
        if mode == 1:
            # J[f, :] = d b_f / d A[(l1 block, then l2 block), q'] (per atom, once):
            # J[l1 m1] = sum C A[lm, q] A[l2 m2, q'],  J[l2 m2] = sum C A[lm, q] A[l1 m1, q']
            J[:, :] = 0.0
            for f in range(F):
                t = ft[f]
                q = fq[f]
                qp = fqp[f]
                l = tl[t]
                l1 = tl1[t]
                l2 = tl2[t]
                o2 = 2 * l1 + 1 - l2 * l2
                for e in range(eoff[t], eoff[t + 1]):
                    ca = ecoef[e] * A[l * l + emi[e], q]
                    J[f, elm1[e] - l1 * l1] += ca * A[elm2[e], qp]
                    J[f, o2 + elm2[e]] += ca * A[elm1[e], qp]
            for p in range(p0, p1):
                pp = p - p0
                jj = j_arr[p]
                c = chan[jj]
                _pair_du(D, p, pp, wts[jj], n_max, l_max, Ys, dYs, Rs, dRs, du)
                # d b_f = sum_m Z_t[m, q'] dA[l m, q] + sum J[f] dA[(l1, l2 blocks), q']
                for a in range(3):
                    for f in range(F):
                        t = ft[f]
                        l = tl[t]
                        v = 0.0
                        if fc[f] == c:
                            kq = fk[f]
                            qp = fqp[f]
                            z0 = zoff[t] - l * l
                            for lm in range(l * l, (l + 1) * (l + 1)):
                                v += du[a, kq, lm] * Z[z0 + lm, qp]
                        if fcp[f] == c:
                            kp = fkp[f]
                            l1 = tl1[t]
                            l2 = tl2[t]
                            b1 = l1 * l1
                            for mi in range(2 * l1 + 1):
                                v += J[f, mi] * du[a, kp, b1 + mi]
                            o2 = 2 * l1 + 1
                            b2 = l2 * l2
                            for mi in range(2 * l2 + 1):
                                v += J[f, o2 + mi] * du[a, kp, b2 + mi]
                        dX[p, a, f] = v
        elif mode == 2:
            for kk in range(n_members):
                dA[:, :] = 0.0
                H[:, :] = 0.0
                for f in range(F):
                    t = ft[f]
                    l = tl[t]
                    q = fq[f]
                    qp = fqp[f]
                    z0 = zoff[t] - l * l
                    G = dE_dX[kk, i, f]
                    for lm in range(l * l, (l + 1) * (l + 1)):
                        dA[lm, q] += G * Z[z0 + lm, qp]
                        H[z0 + lm, qp] += G * A[lm, q]
                for t in range(nT):
                    z0 = zoff[t]
                    for e in range(eoff[t], eoff[t + 1]):
                        zi = z0 + emi[e]
                        cf = ecoef[e]
                        i1 = elm1[e]
                        i2 = elm2[e]
                        for q in range(Q):
                            hc = H[zi, q] * cf
                            dA[i1, q] += hc * A[i2, q]
                            dA[i2, q] += hc * A[i1, q]
                _member_adjoint(p0, p1, j_arr, D, chan, wts, n_max, l_max, Ys, dYs, Rs, dRs,
                                dA3, dAm, g, kk)
    return X, dX, g
