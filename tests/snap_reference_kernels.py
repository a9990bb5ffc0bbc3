"""Scalar (one atom at a time) chemflag SNAP kernels: the reference the production lane kernels
``_chem_*_lanes`` of :mod:`hybridpot.descriptors._snap_kernels` are tested against.

They follow LAMMPS ``compute_ui`` / ``compute_zi`` / ``compute_bi`` / ``compute_yi`` /
``compute_deidrj`` / ``compute_dbidrj`` with ``chemflag 1`` literally, built from the package's
scalar blocks (:func:`_utot_atom` with one density per element, :func:`_z_two`,
:func:`_du_pair`, :func:`_b_sum`, :func:`_half_dot3`, :func:`_y_dot_du`, :func:`_pair_scratch`);
only production code lives in the package.
"""

import numpy as np
from numba import njit

from hybridpot.descriptors._snap_kernels import (_b_sum, _du_pair, _half_dot3, _pair_scratch,
                                                 _utot_atom, _y_dot_du, _z_two)


@njit(cache=True)
def chem_bispectrum(mode, offsets, D, d, inside, rcut_p, w_p, sin_p, din_p, ej_p, ei, ne,
                    wselfall, rfac0, rmin0, switchflag, wself, bzero, J, idxu_block, rootpq,
                    cglist, idxcg_block, idxz, idxz_block, idxb, beta):
    """Explicit multi-element bispectrum (LAMMPS ``chemflag 1``), one atom at a time.

    One density ``U_e`` per element ``e`` (neighbours of element ``ej_p[p]``; ``wself`` on the
    diagonal of the centre's element ``ei[i]``, or of every element with ``wselfall``), Z per
    element pair ``(e1, e2)``, and ``B_{e1 e2 e3} = sum conj(U_e3) Z_{e1 e2}`` in the LAMMPS
    column order ``((e1 ne + e2) ne + e3) K + jjb``; ``bzero`` is subtracted from the triple
    ``(ei, ei, ei)`` only (every triple with ``wselfall``).

    ``mode`` 0: returns ``(B, empty, empty)``; 1: ``(B, dB_i/dr_ij (n_pairs, 3, F), empty)``
    (LAMMPS ``compute_dbidrj``); 2: ``(B, empty, dE/dr_ij (n_pairs, 3))`` for
    ``E = sum_i beta[i] . B_i``, contracting the per-pair Jacobian with ``beta`` as it is formed
    (no (n_pairs, 3, F) array).
    """
    n = offsets.shape[0] - 1
    npairs = D.shape[0]
    nu = idxu_block[J] + (J + 1) * (J + 1)
    nz = idxz.shape[0]
    K = idxb.shape[0]
    nd = ne * ne
    F = nd * ne * K
    out = np.zeros((n, F))
    dout = np.zeros((npairs if mode == 1 else 0, 3, F))
    gout = np.zeros((npairs if mode == 2 else 0, 3))
    utr = np.empty((ne, nu))
    uti = np.empty((ne, nu))
    zr = np.empty((nd, nz))
    zi = np.empty((nd, nz))
    ubr, ubi, dur, dui = _pair_scratch(offsets, nu)
    for i in range(n):
        _utot_atom(i, offsets, D, d, inside, rcut_p, w_p, sin_p, din_p, ej_p, ei, wselfall,
                   rfac0, rmin0, switchflag, wself, J, idxu_block, rootpq, utr, uti, ubr, ubi)
        for e1 in range(ne):
            for e2 in range(ne):
                for k in range(nz):
                    zr[e1 * ne + e2, k], zi[e1 * ne + e2, k] = _z_two(
                        k, idxz, idxcg_block, cglist, idxu_block, utr[e1], uti[e1], utr[e2],
                        uti[e2])
        for e1 in range(ne):
            for e2 in range(ne):
                idouble = e1 * ne + e2
                for e3 in range(ne):
                    itriple = idouble * ne + e3
                    shift = wselfall or (e1 == ei[i] and e2 == ei[i] and e3 == ei[i])
                    for jjb in range(K):
                        j = idxb[jjb, 2]
                        k = idxz_block[idxb[jjb, 0], idxb[jjb, 1], j]
                        s = _b_sum(j, idxu_block[j], k, utr[e3], uti[e3], zr[idouble],
                                   zi[idouble])
                        out[i, itriple * K + jjb] = 2.0 * s - (bzero[j] if shift else 0.0)
        if mode == 0:
            continue
        for p in range(offsets[i], offsets[i + 1]):
            if not inside[p]:
                continue
            _du_pair(p, p - offsets[i], D, d, rcut_p, w_p, sin_p, din_p, rfac0, rmin0,
                     switchflag, J, idxu_block, rootpq, ubr, ubi, dur, dui)
            e3 = ej_p[p]
            for jjb in range(K):
                j1 = idxb[jjb, 0]
                j2 = idxb[jjb, 1]
                j = idxb[jjb, 2]
                f1 = (j + 1) / (j1 + 1.0)
                f2 = (j + 1) / (j2 + 1.0)
                for e1 in range(ne):
                    for e2 in range(ne):
                        # d/dU_e3^j: B_{e1 e2 e3}
                        # d/dU_e3^j1: B_{e3 e2 e1}, Z_{e1 e2} coupled (j, j2) -> j1
                        # d/dU_e3^j2: B_{e1 e3 e2}, Z_{e2 e1} coupled (j, j1) -> j2
                        for term in range(3):
                            if term == 0:
                                jd, kz, dbl, fac = j, idxz_block[j1, j2, j], e1 * ne + e2, 1.0
                                col = ((e1 * ne + e2) * ne + e3) * K + jjb
                            elif term == 1:
                                jd, kz, dbl, fac = j1, idxz_block[j, j2, j1], e1 * ne + e2, f1
                                col = ((e3 * ne + e2) * ne + e1) * K + jjb
                            else:
                                jd, kz, dbl, fac = j2, idxz_block[j, j1, j2], e2 * ne + e1, f2
                                col = ((e1 * ne + e3) * ne + e2) * K + jjb
                            h = _half_dot3(idxu_block[jd], kz, jd, dur, dui, zr[dbl], zi[dbl],
                                           0.0, 0.0, 0.0)
                            if mode == 1:
                                for a in range(3):
                                    dout[p, a, col] += fac * (2.0 * h[a])
                            else:
                                b = fac * beta[i, col]
                                for a in range(3):
                                    gout[p, a] += b * (2.0 * h[a])
    return out, dout, gout


@njit(cache=True)
def chem_backward(offsets, D, d, inside, rcut_p, w_p, sin_p, din_p, ej_p, ei, ne, wselfall,
                  rfac0, rmin0, switchflag, wself, J, idxu_block, rootpq, cglist, idxcg_block,
                  idxz, idxb_block, beta):
    """Adjoint dE/dr_ij (n_pairs, 3) of the chemflag bispectrum for ``E = sum_i beta[i] . B_i``
    through ``Y_e = dE/dU_e`` (LAMMPS compute_yi / compute_deidrj), one atom at a time.

    A Z entry ``Z_{e1 e2}(j1, j2 -> j)`` feeds ``Y_e3^j`` with the coefficients of every B
    block it serves: ``B_{e1 e2 e3}(j1 j2 j)`` when ``j >= j1``; ``B_{e3 e2 e1}(j j2 j1)``
    times ``(j1 + 1) / (j + 1)`` when ``j1 >= j >= j2``; ``B_{e2 e3 e1}(j2 j j1)`` times
    ``(j1 + 1) / (j + 1)`` when ``j1 >= j2 >= j``.  (LAMMPS multiplies the first triple's
    coefficient by 2 or 3 where blocks coincide, which equals this sum only when the
    coefficients of the permuted triples are equal.)  Same result as :func:`chem_bispectrum`
    mode 2, at the cost of the values plus one dU per neighbour.
    """
    n = offsets.shape[0] - 1
    npairs = D.shape[0]
    nu = idxu_block[J] + (J + 1) * (J + 1)
    nz = idxz.shape[0]
    K = beta.shape[1] // (ne * ne * ne)
    g = np.zeros((npairs, 3))
    utr = np.empty((ne, nu))
    uti = np.empty((ne, nu))
    yr = np.empty((ne, nu))
    yi = np.empty((ne, nu))
    ubr, ubi, dur, dui = _pair_scratch(offsets, nu)
    for i in range(n):
        if offsets[i + 1] == offsets[i]:
            continue
        _utot_atom(i, offsets, D, d, inside, rcut_p, w_p, sin_p, din_p, ej_p, ei, wselfall,
                   rfac0, rmin0, switchflag, wself, J, idxu_block, rootpq, utr, uti, ubr, ubi)
        yr[:, :] = 0.0
        yi[:, :] = 0.0
        for e1 in range(ne):
            for e2 in range(ne):
                for k in range(nz):
                    j1 = idxz[k, 0]
                    j2 = idxz[k, 1]
                    j = idxz[k, 2]
                    zr = 0.0
                    zi = 0.0
                    done = False
                    for e3 in range(ne):
                        c = 0.0
                        if j >= j1:
                            c += beta[i, ((e1 * ne + e2) * ne + e3) * K + idxb_block[j1, j2, j]]
                        if j1 >= j and j >= j2:
                            c += beta[i, ((e3 * ne + e2) * ne + e1) * K
                                      + idxb_block[j, j2, j1]] * ((j1 + 1) / (j + 1.0))
                        if j2 >= j:
                            c += beta[i, ((e2 * ne + e3) * ne + e1) * K
                                      + idxb_block[j2, j, j1]] * ((j1 + 1) / (j + 1.0))
                        if c == 0.0:
                            continue
                        if not done:
                            zr, zi = _z_two(k, idxz, idxcg_block, cglist, idxu_block, utr[e1],
                                            uti[e1], utr[e2], uti[e2])
                            done = True
                        jju = idxz[k, 9]
                        yr[e3, jju] += c * zr
                        yi[e3, jju] += c * zi
        for p in range(offsets[i], offsets[i + 1]):
            if not inside[p]:
                continue
            _du_pair(p, p - offsets[i], D, d, rcut_p, w_p, sin_p, din_p, rfac0, rmin0,
                     switchflag, J, idxu_block, rootpq, ubr, ubi, dur, dui)
            e = ej_p[p]
            _y_dot_du(J, idxu_block, yr[e], yi[e], dur, dui, g[p])
    return g


def chem_reference(desc, nl, species_idx, mode, beta):
    """:func:`chem_bispectrum` of a chemflag ``SNAPBispectrum`` (validated) on a neighbour list
    (``beta`` (n_atoms, n_bispectrum) for mode 2, else ``np.zeros((0, 0))``)."""
    t = desc._tables
    return chem_bispectrum(
        mode, *desc._chem_args(nl, species_idx), desc._bzero_arr, desc._J, t["idxu_block"],
        t["rootpq"], t["cglist"], t["idxcg_block"], t["idxz"], t["idxz_block"], t["idxb"], beta)
