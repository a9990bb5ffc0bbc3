"""Atom-centred symmetry functions: Behler-Parrinello G2/G4 and the ANI modified angular terms.

With ``angular=None`` only the radial (G2, 2-body) block is computed.

All loops over pairs and neighbour-pair triples are numba kernels (``@njit(cache=True)``); the
adjoint (:meth:`ACSF.backward`) accumulates ``dE/d r_ij`` per triple without forming the
Jacobian.  Every derivative is expressed through the pair vectors ``r_ij`` of the centre atom
``i`` (the three-body distance uses ``r_jk = r_ik - r_ij``), as the Jacobian layout of
:mod:`hybridpot.descriptors._base` requires.
"""

from __future__ import annotations

import numbers

import numpy as np
from numba import njit

from .._exceptions import InvalidParameterError
from .._validation import check_choice, check_float
from ._base import Descriptor, register_descriptor
from ._so3 import INNER_MIN_DISTANCE, check_inner_switch, pair_inner_switch
from ._so3_kernels import inner_switch

__all__ = ["ACSF"]

#: TorchANI's factor in ``theta = arccos(0.95 cos(theta_ijk))`` (finite derivative at 0 and pi)
ANI_COS_SCALE = 0.95

# ANI-1x reference grids (Smith, Isayev, Roitberg 2017; TorchANI ``ani1x`` constants), for the
# radial cutoff 5.2 Å and the angular cutoff 3.5 Å; the defaults below rescale them.
_ANI_RC_R, _ANI_RC_A = 5.2, 3.5
_ANI_ETA_R, _ANI_ETA_A, _ANI_ZETA = 16.0, 8.0, 32.0
_ANI_N_SHF_R, _ANI_N_SHF_A, _ANI_N_SHF_Z = 16, 4, 8
_ANI_SHF_START = 0.9


# ----------------------------------------------------------------------------------------------
# numba kernels
# ----------------------------------------------------------------------------------------------
#: ``kind`` of :func:`_cutoff`
CUTOFF_COSINE, CUTOFF_TANH, CUTOFF_POLYNOMIAL = 0, 1, 2
CUTOFF_KINDS = {"cosine": CUTOFF_COSINE, "tanh": CUTOFF_TANH, "polynomial": CUTOFF_POLYNOMIAL}


@njit(cache=True)
def _cutoff(r, rc, kind):
    """Cutoff function ``f_c(r)`` for r < rc, else 0; and ``f_c'``.

    ``kind``: CUTOFF_COSINE ``0.5 (cos(pi r / rc) + 1)``; CUTOFF_TANH ``tanh^3(1 - r / rc)``;
    CUTOFF_POLYNOMIAL ``1 - 10 x^3 + 15 x^4 - 6 x^5`` with ``x = r / rc``.
    """
    if r >= rc:
        return 0.0, 0.0
    if kind == CUTOFF_TANH:
        t = np.tanh(1.0 - r / rc)
        return t * t * t, -3.0 * t * t * (1.0 - t * t) / rc
    if kind == CUTOFF_POLYNOMIAL:
        x = r / rc
        x2 = x * x
        return 1.0 + x2 * x * (-10.0 + x * (15.0 - 6.0 * x)), \
            -30.0 * x2 * (1.0 - x) * (1.0 - x) / rc
    a = np.pi / rc
    return 0.5 * (np.cos(a * r) + 1.0), -0.5 * a * np.sin(a * r)


@njit(cache=True)
def _pair_cutoff(fc, dfc, r, s, d):
    """``f_c f_in`` and its derivative in ``r`` (inner switch with ``s``, ``d`` in Å;
    ``(0, 0)`` for ``r <= s - d``)."""
    fin, dfin = inner_switch(r, s, d)
    return fc * fin, dfc * fin + fc * dfin


@njit(cache=True)
def _radial_forward(offsets, D, d, sp_j, etas, shifts, rc, X, d_drij, gradients, ckind,
                    sin_p, din_p):
    """G2 terms: ``X[i, b*G + g] += exp(-eta_g (R - Rs_g)^2) f_c(R)`` for neighbours of species b.

    ``etas``/``shifts`` are the flattened radial grid (length G).  Writes ``d_drij`` when
    ``gradients``.  ``sin_p``, ``din_p``: per-pair inner switch (Å), empty when off; with it
    ``f_c`` is multiplied by ``f_in`` (:func:`_pair_cutoff`).
    """
    n_atoms = offsets.shape[0] - 1
    G = etas.shape[0]
    sw = sin_p.shape[0] > 0
    for i in range(n_atoms):
        for p in range(offsets[i], offsets[i + 1]):
            r = d[p]
            if r >= rc:
                continue
            fc, dfc = _cutoff(r, rc, ckind)
            if sw:
                fc, dfc = _pair_cutoff(fc, dfc, r, sin_p[p], din_p[p])
                if fc == 0.0 and dfc == 0.0:
                    continue
            base = sp_j[p] * G
            ux = D[p, 0] / r
            uy = D[p, 1] / r
            uz = D[p, 2] / r
            for g in range(G):
                x = r - shifts[g]
                e = np.exp(-etas[g] * x * x)
                X[i, base + g] += e * fc
                if gradients:
                    dv = e * (dfc - 2.0 * etas[g] * x * fc)
                    d_drij[p, 0, base + g] += dv * ux
                    d_drij[p, 1, base + g] += dv * uy
                    d_drij[p, 2, base + g] += dv * uz


@njit(cache=True)
def _radial_backward(offsets, D, d, sp_j, etas, shifts, rc, W, g_out, ckind, sin_p, din_p):
    """Adjoint of :func:`_radial_forward`: ``g_out[p] += sum_f W[i, f] dX[i, f]/d r_ij[p]``."""
    n_atoms = offsets.shape[0] - 1
    G = etas.shape[0]
    sw = sin_p.shape[0] > 0
    for i in range(n_atoms):
        for p in range(offsets[i], offsets[i + 1]):
            r = d[p]
            if r >= rc:
                continue
            fc, dfc = _cutoff(r, rc, ckind)
            if sw:
                fc, dfc = _pair_cutoff(fc, dfc, r, sin_p[p], din_p[p])
                if fc == 0.0 and dfc == 0.0:
                    continue
            base = sp_j[p] * G
            s = 0.0
            for g in range(G):
                x = r - shifts[g]
                e = np.exp(-etas[g] * x * x)
                s += W[i, base + g] * e * (dfc - 2.0 * etas[g] * x * fc)
            s /= r
            g_out[p, 0] += s * D[p, 0]
            g_out[p, 1] += s * D[p, 1]
            g_out[p, 2] += s * D[p, 2]


#: ``mode`` of the angular kernels
MODE_VALUES, MODE_JACOBIAN, MODE_BACKWARD = 0, 1, 2


@njit(cache=True)
def _pow_zm1(base, zeta, zint):
    """``base ** (zeta - 1)``; by repeated squaring when ``zint = zeta - 1`` is an int >= 0."""
    if zint < 0:
        return base ** (zeta - 1.0)
    out = 1.0
    b = base
    n = zint
    while n > 0:
        if n & 1:
            out *= b
        b *= b
        n >>= 1
    return out


# The per-triple code below is written out inside each kernel on purpose: numba helper calls
# taking many array arguments cost ~100 ns each in the innermost loop (measured), more than
# the arithmetic of a triple.  One kernel per angular kind serves the three modes.

@njit(cache=True)
def _ani_kernel(offsets, D, d, sp_j, pair_table, col0, rca, r_eta, r_shift, z_val, z_int,
                z_pref, t_c, t_s, max_nb, mode, X, d_drij, W, g_out, ckind, sin_p, din_p):
    """ANI angular block over the neighbour pairs j < k (pair index) of every centre.

    Feature ``col0 + pair_table[b, c] * M*U + m*U + z*T + t`` of centre ``i`` receives
    ``R[m] A[z, t]`` with ``R[m] = exp(-eta_m ((Rij + Rik)/2 - Rs_m)^2) f_c(Rij) f_c(Rik)`` and
    ``A[z, t] = 2^(1-zeta_z) (1 + cos(theta' - theta_t))^zeta_z``,
    ``theta' = arccos(0.95 cos theta_ijk)``, evaluated as ``cos(theta' - theta_t) =
    c cos(theta_t) + sqrt(1 - c^2) sin(theta_t)`` with ``c = 0.95 cos theta_ijk``.
    ``t_c``, ``t_s``: cos and sin of the T angle centres; ``z_pref = 2^(1-zeta)``;
    ``z_int = zeta - 1`` when integral (powers by squaring), else -1.

    ``mode``: MODE_VALUES adds to ``X``; MODE_JACOBIAN also to ``d_drij``; MODE_BACKWARD only
    adds ``sum_f W[i, f] dX[i, f]/d r_ij`` to ``g_out`` (n_pairs, 3).
    """
    n_atoms = offsets.shape[0] - 1
    M = r_eta.shape[0]
    T = t_c.shape[0]
    U = z_val.shape[0] * T
    idx = np.empty(max_nb, dtype=np.int64)
    fc = np.empty(max_nb)
    dfc = np.empty(max_nb)
    R = np.empty(M)
    dRj = np.empty(M)
    dRk = np.empty(M)
    A = np.empty(U)
    dA = np.empty(U)
    base = np.empty(T)
    dd = np.empty(T)
    pw = np.empty(T)
    bb = np.empty(T)
    uj = np.empty(3)
    uk = np.empty(3)
    gj = np.empty(3)
    gk = np.empty(3)
    sw = sin_p.shape[0] > 0
    for i in range(n_atoms):
        cnt = 0
        for p in range(offsets[i], offsets[i + 1]):
            if d[p] < rca:
                f0, df0 = _cutoff(d[p], rca, ckind)
                if sw:
                    f0, df0 = _pair_cutoff(f0, df0, d[p], sin_p[p], din_p[p])
                    if f0 == 0.0 and df0 == 0.0:
                        continue
                idx[cnt] = p
                fc[cnt] = f0
                dfc[cnt] = df0
                cnt += 1
        for a in range(cnt):
            p = idx[a]
            rij = d[p]
            fj = fc[a]
            dfj = dfc[a]
            for b in range(a + 1, cnt):
                q = idx[b]
                rik = d[q]
                fk = fc[b]
                dfk = dfc[b]
                cos = (D[p, 0] * D[q, 0] + D[p, 1] * D[q, 1] + D[p, 2] * D[q, 2]) / (rij * rik)
                cos = min(1.0, max(-1.0, cos))
                # radial factor and its partial derivatives in Rij, Rik
                ff = fj * fk
                ravg = 0.5 * (rij + rik)
                for m in range(M):
                    x = ravg - r_shift[m]
                    e = np.exp(-r_eta[m] * x * x)
                    R[m] = e * ff
                    tm = -r_eta[m] * x * ff
                    dRj[m] = e * (tm + dfj * fk)
                    dRk[m] = e * (tm + fj * dfk)
                # angular factor and its derivative in cos(theta_ijk)
                c = ANI_COS_SCALE * cos
                s = np.sqrt(1.0 - c * c)
                ds_fac = ANI_COS_SCALE * c / s
                for t in range(T):
                    bt = 1.0 + c * t_c[t] + s * t_s[t]
                    base[t] = bt if bt > 0.0 else 0.0
                    # d cos(theta' - theta_t) / d cos = 0.95 (cos theta_t - c sin theta_t / s)
                    dd[t] = ANI_COS_SCALE * t_c[t] - ds_fac * t_s[t]
                for z in range(z_val.shape[0]):
                    n = z_int[z]
                    if n >= 0:   # base^n by squaring, in lockstep over the angle centres
                        for t in range(T):
                            pw[t] = 1.0
                            bb[t] = base[t]
                        while n > 0:
                            if n & 1:
                                for t in range(T):
                                    pw[t] *= bb[t]
                            for t in range(T):
                                bb[t] *= bb[t]
                            n >>= 1
                    else:
                        for t in range(T):
                            pw[t] = base[t] ** (z_val[z] - 1.0)
                    pref = z_pref[z]
                    pz = pref * z_val[z]
                    for t in range(T):
                        A[z * T + t] = pref * pw[t] * base[t]
                        dA[z * T + t] = pz * pw[t] * dd[t]
                col = col0 + pair_table[sp_j[p], sp_j[q]] * M * U
                if mode != MODE_BACKWARD:
                    for m in range(M):
                        for u in range(U):
                            X[i, col + m * U + u] += R[m] * A[u]
                if mode == MODE_VALUES:
                    continue
                for k in range(3):
                    uj[k] = D[p, k] / rij
                    uk[k] = D[q, k] / rik
                    gj[k] = (uk[k] - cos * uj[k]) / rij   # d cos / d r_ij
                    gk[k] = (uj[k] - cos * uk[k]) / rik   # d cos / d r_ik
                if mode == MODE_JACOBIAN:   # contiguous in the feature index
                    for k in range(3):
                        for m in range(M):
                            f0 = col + m * U
                            aj = dRj[m] * uj[k]
                            ak = dRk[m] * uk[k]
                            rj = R[m] * gj[k]
                            rk = R[m] * gk[k]
                            for u in range(U):
                                d_drij[p, k, f0 + u] += aj * A[u] + rj * dA[u]
                                d_drij[q, k, f0 + u] += ak * A[u] + rk * dA[u]
                else:
                    sj = 0.0   # sum_f W_f dR/dRij A
                    sk = 0.0   # sum_f W_f dR/dRik A
                    sc = 0.0   # sum_f W_f R dA/dcos
                    for m in range(M):
                        wa = 0.0
                        wda = 0.0
                        for u in range(U):
                            w = W[i, col + m * U + u]
                            wa += w * A[u]
                            wda += w * dA[u]
                        sj += dRj[m] * wa
                        sk += dRk[m] * wa
                        sc += R[m] * wda
                    for k in range(3):
                        g_out[p, k] += sj * uj[k] + sc * gj[k]
                        g_out[q, k] += sk * uk[k] + sc * gk[k]


@njit(cache=True)
def _bp_kernel(offsets, D, d, sp_j, pair_table, col0, rca, r_eta, u_zeta, u_zint, u_pref,
               u_lambda, max_nb, mode, X, d_drij, W, g_out, wide, ckind, sin_p, din_p):
    """BP G4 (or, with ``wide``, G5) block over the neighbour pairs j != k of every centre.

    Each unordered pair j < k is visited once and counted twice (both orders).  Feature
    ``col0 + pair_table[b, c] * M*U + m*U + u`` of centre ``i`` receives ``R[m] A[u]`` with
    ``R[m] = 2 exp(-eta_m (Rij^2 + Rik^2 + Rjk^2)) f_c(Rij) f_c(Rik) f_c(Rjk)``,
    ``r_jk = r_ik - r_ij``, and ``A[u] = 2^(1-zeta_u) (1 + lambda_u cos theta_ijk)^zeta_u``
    (``u_pref = 2^(1-zeta)``, ``u_zint = zeta - 1`` when integral, else -1).
    ``dR/d r_ij = cj[m] r_ij + cjk[m] r_jk`` and ``dR/d r_ik = ck[m] r_ik + ckj[m] r_jk``.
    ``wide`` (G5): ``R[m] = 2 exp(-eta_m (Rij^2 + Rik^2)) f_c(Rij) f_c(Rik)`` (no ``R_jk`` term
    or cutoff; ``cjk = ckj = 0``).  ``mode`` as for :func:`_ani_kernel`.
    """
    n_atoms = offsets.shape[0] - 1
    M = r_eta.shape[0]
    U = u_zeta.shape[0]
    idx = np.empty(max_nb, dtype=np.int64)
    fc = np.empty(max_nb)
    dfc = np.empty(max_nb)
    ex = np.empty((max_nb, M))   # exp(-eta_m R^2) per angular neighbour
    R = np.empty(M)
    cj = np.empty(M)
    cjk = np.empty(M)
    ck = np.empty(M)
    ckj = np.empty(M)
    A = np.empty(U)
    dA = np.empty(U)
    v = np.empty(3)
    gj = np.empty(3)
    gk = np.empty(3)
    sw = sin_p.shape[0] > 0
    for i in range(n_atoms):
        cnt = 0
        for p in range(offsets[i], offsets[i + 1]):
            r = d[p]
            if r < rca:
                f0, df0 = _cutoff(r, rca, ckind)
                if sw:
                    f0, df0 = _pair_cutoff(f0, df0, r, sin_p[p], din_p[p])
                    if f0 == 0.0 and df0 == 0.0:
                        continue
                idx[cnt] = p
                fc[cnt] = f0
                dfc[cnt] = df0
                for m in range(M):
                    ex[cnt, m] = np.exp(-r_eta[m] * r * r)
                cnt += 1
        for a in range(cnt):
            p = idx[a]
            rij = d[p]
            fj = fc[a]
            dfj = dfc[a]
            for b in range(a + 1, cnt):
                q = idx[b]
                v0 = D[q, 0] - D[p, 0]
                v1 = D[q, 1] - D[p, 1]
                v2 = D[q, 2] - D[p, 2]
                rjk = np.sqrt(v0 * v0 + v1 * v1 + v2 * v2)
                if rjk >= rca and not wide:
                    continue
                rik = d[q]
                fk = fc[b]
                dfk = dfc[b]
                cos = (D[p, 0] * D[q, 0] + D[p, 1] * D[q, 1] + D[p, 2] * D[q, 2]) / (rij * rik)
                cos = min(1.0, max(-1.0, cos))
                if wide:
                    fl, dfl = 1.0, 0.0
                else:
                    fl, dfl = _cutoff(rjk, rca, ckind)
                F = fj * fk * fl
                aj = dfj * fk * fl / rij
                ak = fj * dfk * fl / rik
                al = 0.0 if wide else fj * fk * dfl / rjk
                for m in range(M):
                    eta = r_eta[m]
                    e2 = 2.0 * ex[a, m] * ex[b, m]
                    if not wide:
                        e2 *= np.exp(-eta * rjk * rjk)
                    R[m] = e2 * F
                    tm = 2.0 * eta * F
                    cj[m] = e2 * (aj - tm)
                    ck[m] = e2 * (ak - tm)
                    if wide:   # no R_jk: nothing along r_jk
                        cjk[m] = 0.0
                        ckj[m] = 0.0
                    else:
                        cjk[m] = e2 * (tm - al)
                        ckj[m] = e2 * (al - tm)
                for u in range(U):
                    lam = u_lambda[u]
                    bu = 1.0 + lam * cos
                    if bu < 0.0:
                        bu = 0.0
                    bz1 = _pow_zm1(bu, u_zeta[u], u_zint[u])
                    A[u] = u_pref[u] * bz1 * bu
                    dA[u] = u_pref[u] * u_zeta[u] * lam * bz1
                col = col0 + pair_table[sp_j[p], sp_j[q]] * M * U
                if mode != MODE_BACKWARD:
                    for m in range(M):
                        for u in range(U):
                            X[i, col + m * U + u] += R[m] * A[u]
                if mode == MODE_VALUES:
                    continue
                v[0] = v0
                v[1] = v1
                v[2] = v2
                for k in range(3):
                    ujk = D[p, k] / rij
                    ukk = D[q, k] / rik
                    gj[k] = (ukk - cos * ujk) / rij   # d cos / d r_ij
                    gk[k] = (ujk - cos * ukk) / rik   # d cos / d r_ik
                if mode == MODE_JACOBIAN:   # contiguous in the feature index
                    for k in range(3):
                        for m in range(M):
                            f0 = col + m * U
                            aj = cj[m] * D[p, k] + cjk[m] * v[k]
                            ak = ck[m] * D[q, k] + ckj[m] * v[k]
                            rj = R[m] * gj[k]
                            rk = R[m] * gk[k]
                            for u in range(U):
                                d_drij[p, k, f0 + u] += aj * A[u] + rj * dA[u]
                                d_drij[q, k, f0 + u] += ak * A[u] + rk * dA[u]
                else:
                    sj = 0.0
                    sjk = 0.0
                    sk = 0.0
                    skj = 0.0
                    sc = 0.0
                    for m in range(M):
                        wa = 0.0
                        wda = 0.0
                        for u in range(U):
                            w = W[i, col + m * U + u]
                            wa += w * A[u]
                            wda += w * dA[u]
                        sj += cj[m] * wa
                        sjk += cjk[m] * wa
                        sk += ck[m] * wa
                        skj += ckj[m] * wa
                        sc += R[m] * wda
                    for k in range(3):
                        g_out[p, k] += sj * D[p, k] + sjk * v[k] + sc * gj[k]
                        g_out[q, k] += sk * D[q, k] + skj * v[k] + sc * gk[k]


# ----------------------------------------------------------------------------------------------
# parameter checks
# ----------------------------------------------------------------------------------------------
def _check_grid(value, name, owner, *, low, high=None, low_inclusive=False,
                high_inclusive=False, integer_choices=None):
    """Validate a non-empty 1-D grid of finite reals; return it as a float64 array."""
    if integer_choices is not None:
        allowed = f"values in {{{', '.join(str(c) for c in integer_choices)}}}"
    else:
        lo = f"{low:g}"
        hi = "inf" if high is None else f"{high:g}"
        allowed = (f"floats in {'[' if low_inclusive else '('}{lo}, {hi}"
                   f"{']' if high_inclusive else ')'}")
    msg = (f"The '{name}' parameter of {owner} must be a non-empty 1-D sequence of {allowed}. "
           f"Got {value!r} instead.")
    try:
        ndim = np.ndim(value)
    except ValueError:   # ragged nested sequence
        ndim = -1
    if isinstance(value, (str, bytes, dict, set)) or ndim != 1:
        raise InvalidParameterError(msg)
    vals = list(value)
    if len(vals) == 0:
        raise InvalidParameterError(msg)
    out = np.empty(len(vals))
    for n, v in enumerate(vals):
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real):
            raise InvalidParameterError(msg)
        v = float(v)
        if integer_choices is not None:
            if v not in integer_choices:
                raise InvalidParameterError(msg)
        else:
            if not np.isfinite(v) or v < low or (v == low and not low_inclusive):
                raise InvalidParameterError(msg)
            if high is not None and (v > high or (v == high and not high_inclusive)):
                raise InvalidParameterError(msg)
        out[n] = v
    return out


def _is_default_lambdas(value):
    """True if ``value`` is the sequence ``(-1, 1)`` (the default ``bp_lambdas``)."""
    try:
        ndim = np.ndim(value)
    except ValueError:   # ragged nested sequence
        return False
    if isinstance(value, (str, bytes, dict, set)) or ndim != 1 or len(value) != 2:
        return False
    vals = list(value)
    return all(isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_))
               for v in vals) and [float(v) for v in vals] == [-1.0, 1.0]


def _integer_exponent(zetas):
    """``zeta - 1`` as int64 where ``zeta`` is integral (powers by squaring), else -1."""
    integral = (zetas == np.round(zetas)) & (zetas <= 1025.0)
    return np.where(integral, np.round(zetas) - 1.0, -1.0).astype(np.int64)


@register_descriptor
class ACSF(Descriptor):
    r"""Atom-centred symmetry functions (Behler-Parrinello G2/G4/G5, ANI angular, or G2 only).

    With the cutoff function :math:`f_c(R; R_c)` (0 for :math:`R \ge R_c`; ``cutoff_function``:
    the cosine :math:`\tfrac12(\cos(\pi R/R_c) + 1)` of BP and ANI, whose value and first
    derivative vanish at :math:`R_c`; Behler's :math:`\tanh^3(1 - R/R_c)` or the polynomial
    :math:`1 - 10x^3 + 15x^4 - 6x^5`, :math:`x = R/R_c`, whose second derivative vanishes too,
    so the forces have no kink at the cutoff), the features of atom :math:`i` are

    *Radial* (G2), one per neighbour species :math:`b` and grid point :math:`(\eta, R_s)`:

    .. math:: G^{R}_{i,b} = \sum_{j \in b} e^{-\eta (R_{ij} - R_s)^2} f_c(R_{ij}; R_c)

    *Angular* (absent with ``angular=None``: a pure 2-body descriptor), one per unordered
    neighbour species pair :math:`\{b, c\}` and angular grid point, using neighbours within the
    angular cutoff :math:`R_a`; either Behler-Parrinello G4
    (``angular="bp"``)

    .. math:: G^{BP}_{i,bc} = 2^{1-\zeta} \sum_{j \ne k} (1 + \lambda\cos\theta_{ijk})^\zeta
              e^{-\eta (R_{ij}^2 + R_{ik}^2 + R_{jk}^2)}
              f_c(R_{ij}) f_c(R_{ik}) f_c(R_{jk})

    (ordered pairs: every unordered pair counts twice, so these values are twice those of codes
    that sum over :math:`j < k`, e.g. DScribe; :math:`R_{jk} = |r_{ik} - r_{ij}|` and all three
    cutoffs use :math:`R_a`), Behler's G5 (``angular="g5"``, the "wide" angular function: no
    :math:`R_{jk}` term, so triples whose outer atoms are far apart still count; n2p2's type 9)

    .. math:: G^{G5}_{i,bc} = 2^{1-\zeta} \sum_{j \ne k} (1 + \lambda\cos\theta_{ijk})^\zeta
              e^{-\eta (R_{ij}^2 + R_{ik}^2)} f_c(R_{ij}) f_c(R_{ik})

    (same pair counting, parameters ``bp_*``), or the ANI modified angular term
    (``angular="ani"``, Smith et al. 2017)

    .. math:: G^{ANI}_{i,bc} = 2^{1-\zeta} \sum_{j < k} (1 + \cos(\theta'_{ijk} - \theta_s))^\zeta
              e^{-\eta ((R_{ij} + R_{ik})/2 - R_s)^2} f_c(R_{ij}) f_c(R_{ik})

    with :math:`\theta'_{ijk} = \arccos(0.95 \cos\theta_{ijk})`.  The factor 0.95 (as in
    TorchANI) keeps :math:`d\theta'/d\cos\theta` finite for collinear triples, where
    :math:`\arccos` has an infinite derivative; the feature is thus a smooth function of the
    positions at the price of a slightly compressed angle (:math:`\theta' \in [0.101\pi,
    0.899\pi]`).  The ANI sum visits each unordered pair once, as TorchANI does; with the
    ANI-1x defaults at ``r_cut=5.2`` the angular block equals TorchANI's AEV and the radial block
    is 4 times TorchANI's, which keeps NeuroChem's factor 0.25 (the paper's form is used here).
    Sums run over neighbour *pairs* of the neighbour list: periodic images of one
    atom are distinct neighbours and :math:`j \ne k` means distinct pairs.

    Parameters
    ----------
    species : list of str
        Chemical symbols; their order fixes the species channels.
    r_cut : float
        Radial cutoff :math:`R_c` (Å).
    radial_etas : sequence of float > 0, default=None
        Radial widths :math:`\eta` (Å⁻²).  None: ANI-1x's 16 Å⁻² scaled to ``r_cut``,
        ``(16 (5.2 / r_cut)^2,)``.
    radial_shifts : sequence of float in [0, r_cut], default=None
        Radial centres :math:`R_s` (Å).  None: ANI-1x's 16 shifts scaled to ``r_cut``,
        ``s0 + k (r_cut - s0) / 16`` for k = 0..15 with ``s0 = 0.9 r_cut / 5.2``.
    angular : {"ani", "bp", "g5"} or None, default="ani"
        Angular term: ANI modified angular, Behler-Parrinello G4, Behler's G5, or None for no
        angular block (radial G2 features only; then every angular parameter below must be
        left at its default).
    angular_cutoff : float in (0, r_cut], default=None
        Angular cutoff :math:`R_a` (Å).  None: ``3.5 / 5.2 * r_cut`` for ``"ani"`` (ANI-1x's
        ratio), ``r_cut`` for ``"bp"`` and ``"g5"``; unused with ``angular=None``.
    bp_etas : sequence of float > 0, default=None
        G4 / G5 widths :math:`\eta` (Å⁻²).  None: ``(0.25, 1, 4) / angular_cutoff^2``.
    bp_zetas : sequence of float >= 1, default=None
        G4 / G5 exponents :math:`\zeta`.  None: ``(1, 4, 16)``.
    bp_lambdas : sequence of {-1, 1}, default=(-1, 1)
        G4 / G5 signs :math:`\lambda`.
    ani_etas : sequence of float > 0, default=None
        ANI angular radial widths :math:`\eta` (Å⁻²).  None: ANI-1x's 8 Å⁻² scaled to the
        angular cutoff, ``(8 (3.5 / angular_cutoff)^2,)``.
    ani_shifts : sequence of float in [0, angular_cutoff], default=None
        ANI angular radial centres :math:`R_s` (Å).  None: ANI-1x's 4 shifts scaled,
        ``s0 + k (angular_cutoff - s0) / 4``, k = 0..3, ``s0 = 0.9 angular_cutoff / 3.5``.
    ani_zetas : sequence of float >= 1, default=None
        ANI angular exponents :math:`\zeta`.  None: ``(32,)``.
    ani_theta_shifts : sequence of float in [0, pi], default=None
        ANI angle centres :math:`\theta_s` (rad).  None: ANI-1x's ``(2k + 1) pi / 16``,
        k = 0..7.
    cutoff_function : {"cosine", "tanh", "polynomial"}, default="cosine"
        :math:`f_c` of every radial and angular term (n2p2's ``cos``, ``tanh`` (unnormalised,
        :math:`f_c(0) = \tanh^3 1 = 0.44`) and ``poly2``).
    r_inner, d_inner : float, sequence of float or None, default=None
        Inner switch (Å; one value, or one per species, a pair using the mean of its two
        species' values, as LAMMPS SNAP's ``sinner`` / ``dinner``): :math:`f_c(R_{ij})` and
        :math:`f_c(R_{ik})` of every term are multiplied by :math:`f_{in}(R)` (see Notes), so
        neighbours closer than ``r_inner - d_inner`` drop out and the features go smoothly to
        their isolated-atom values (0) at short range, where a repulsive baseline such as ZBL
        should take over.  Both None (default): off, results bit-identical to a descriptor
        without the switch.  Needs ``d_inner > 0``, ``r_inner - d_inner >= 0`` and
        ``r_inner + d_inner < r_cut``.  With the switch on, atoms may come as close as 0.001 Å
        (0.1 Å otherwise), as for a ZBL baseline (high-energy collisions).  Choosing the
        window: see :class:`~hybridpot.descriptors.PowerSpectrum` (on its compression example
        a linear ACSF model gives -5824 eV/atom without the switch, +89 with it).

    Notes
    -----
    The parameters of the angular kind not selected are validated but unused.  With
    ``angular=None``, passing any angular parameter (``angular_cutoff``, ``bp_*``, ``ani_*``;
    ``bp_lambdas`` other than its default) raises
    :class:`~hybridpot.InvalidParameterError` naming it.

    Inner switch (with ``r_inner`` / ``d_inner``; :math:`s`, :math:`d` the pair's values):
    :math:`f_{in}(R) = 0` for :math:`R \le s - d`, :math:`\tfrac12 (1 + \sin(\tfrac\pi2
    (R - s)/d))` for :math:`|R - s| < d`, 1 above (LAMMPS SNAP's ``switchinnerflag``
    function); it multiplies the cutoffs of the centre-neighbour distances :math:`R_{ij}`,
    :math:`R_{ik}` (not the BP :math:`f_c(R_{jk})`, a neighbour-neighbour distance), in the
    values, the Jacobian and the adjoint alike.

    **Feature order** (also given by :meth:`feature_labels`).  With ``S`` species, the radial
    grid ``G = len(radial_etas) * len(radial_shifts)`` and the angular grid ``A``
    (``len(ani_etas) * len(ani_shifts) * len(ani_zetas) * len(ani_theta_shifts)`` for ANI,
    ``len(bp_etas) * len(bp_zetas) * len(bp_lambdas)`` for BP and G5)::

        n_features = S * G + S (S + 1) / 2 * A      (A = 0 for angular=None)

    Radial block first: column ``b * G + e * len(radial_shifts) + s`` (neighbour species ``b``
    outermost, then eta, then shift).  Then the angular block: species pairs ``(b, c)`` with
    ``b <= c`` in row-major upper-triangle order ((0,0), (0,1), ..., (0,S-1), (1,1), ...), each
    followed by its ``A`` grid points in the order (eta, shift, zeta, theta_shift) for ANI and
    (eta, zeta, lambda) for BP and G5, the last index varying fastest.

    With the defaults, ANI gives ``16 S + 32 S (S + 1) / 2`` features (384 for 4 species, the
    ANI-1x AEV length), BP and G5 ``16 S + 18 S (S + 1) / 2``, ``angular=None`` ``16 S``.

    The features do not depend on the centre atom's own species (a per-element regressor
    handles that).  Units: features are dimensionless; their derivatives are in Å⁻¹.

    Cost per atom is ``O(n_nb G + n_a^2 A)`` with ``n_nb`` neighbours within ``r_cut`` and
    ``n_a`` within ``angular_cutoff``; the adjoint :meth:`backward` costs about as much as the
    values.

    Examples
    --------
    >>> from ase.build import bulk
    >>> desc = ACSF(species=["Cu"], r_cut=5.0)
    >>> desc.n_features
    48
    >>> desc.compute(bulk("Cu", "fcc", a=3.61)).shape
    (1, 48)
    >>> ACSF(species=["Cu"], r_cut=5.0, angular=None).n_features   # 2-body only
    16
    """

    def __init__(self, *, species, r_cut, radial_etas=None, radial_shifts=None, angular="ani",
                 angular_cutoff=None, bp_etas=None, bp_zetas=None, bp_lambdas=(-1, 1),
                 ani_etas=None, ani_shifts=None, ani_zetas=None, ani_theta_shifts=None,
                 cutoff_function="cosine", r_inner=None, d_inner=None):
        self.species = species
        self.r_cut = r_cut
        self.radial_etas = radial_etas
        self.radial_shifts = radial_shifts
        self.angular = angular
        self.angular_cutoff = angular_cutoff
        self.bp_etas = bp_etas
        self.bp_zetas = bp_zetas
        self.bp_lambdas = bp_lambdas
        self.ani_etas = ani_etas
        self.ani_shifts = ani_shifts
        self.ani_zetas = ani_zetas
        self.ani_theta_shifts = ani_theta_shifts
        self.cutoff_function = cutoff_function
        self.r_inner = r_inner
        self.d_inner = d_inner

    @property
    def min_distance(self):
        """float: overlap floor (Å): 0.1, or 0.001 with the inner switch (``r_inner``)."""
        return INNER_MIN_DISTANCE if self.r_inner is not None else Descriptor.min_distance

    # -- validation and cached constants -------------------------------------------------------
    def _validate(self):
        self._check_common()
        owner = type(self).__name__
        rc = self._r_cut
        check_choice(self.angular, "angular", ("ani", "bp", "g5", None), owner)
        check_choice(self.cutoff_function, "cutoff_function", tuple(CUTOFF_KINDS), owner)
        self._cut_kind = CUTOFF_KINDS[self.cutoff_function]
        self._inner = check_inner_switch(self.r_inner, self.d_inner, rc, self._species, owner)
        if self.angular is None:
            self._check_no_angular_parameters(owner)
            rca = rc   # unused: no angular block
        elif self.angular_cutoff is None:
            rca = rc * _ANI_RC_A / _ANI_RC_R if self.angular == "ani" else rc
        else:
            rca = check_float(self.angular_cutoff, "angular_cutoff", owner, low=0.0, high=rc,
                              high_inclusive=True)
        self._angular_cutoff = rca

        sr = rc / _ANI_RC_R
        sa = rca / _ANI_RC_A
        defaults = {
            "radial_etas": np.array([_ANI_ETA_R / sr ** 2]),
            "radial_shifts": _ANI_SHF_START * sr
            + np.arange(_ANI_N_SHF_R) * (rc - _ANI_SHF_START * sr) / _ANI_N_SHF_R,
            "bp_etas": np.array([0.25, 1.0, 4.0]) / rca ** 2,
            "bp_zetas": np.array([1.0, 4.0, 16.0]),
            "ani_etas": np.array([_ANI_ETA_A / sa ** 2]),
            "ani_shifts": _ANI_SHF_START * sa
            + np.arange(_ANI_N_SHF_A) * (rca - _ANI_SHF_START * sa) / _ANI_N_SHF_A,
            "ani_zetas": np.array([_ANI_ZETA]),
            "ani_theta_shifts": (2 * np.arange(_ANI_N_SHF_Z) + 1) * np.pi / 16,
        }

        def grid(name, **kw):
            v = getattr(self, name)
            if v is None and name in defaults:
                return defaults[name]
            return _check_grid(v, name, owner, **kw)

        self._radial_etas = grid("radial_etas", low=0.0)
        self._radial_shifts = grid("radial_shifts", low=0.0, high=rc, low_inclusive=True,
                                   high_inclusive=True)
        e, s = np.meshgrid(self._radial_etas, self._radial_shifts, indexing="ij")
        self._g2_eta, self._g2_shift = e.ravel().copy(), s.ravel().copy()
        if self.angular is None:   # empty angular grid: A = 0
            self._ang_eta = self._ang_shift = np.zeros(0)
            self._ang_zeta = self._ang_third = np.zeros(0)
            return
        self._bp_etas = grid("bp_etas", low=0.0)
        self._bp_zetas = grid("bp_zetas", low=1.0, low_inclusive=True)
        self._bp_lambdas = grid("bp_lambdas", low=None, integer_choices=(-1.0, 1.0))
        self._ani_etas = grid("ani_etas", low=0.0)
        self._ani_shifts = grid("ani_shifts", low=0.0, high=rca, low_inclusive=True,
                                high_inclusive=True)
        self._ani_zetas = grid("ani_zetas", low=1.0, low_inclusive=True)
        self._ani_theta_shifts = grid("ani_theta_shifts", low=0.0, high=np.pi,
                                      low_inclusive=True, high_inclusive=True)

        # flattened angular grids, in feature order
        if self.angular == "ani":
            e, s = np.meshgrid(self._ani_etas, self._ani_shifts, indexing="ij")
            self._ang_eta, self._ang_shift = e.ravel().copy(), s.ravel().copy()
            z, t = np.meshgrid(self._ani_zetas, self._ani_theta_shifts, indexing="ij")
            self._ang_zeta, self._ang_third = z.ravel().copy(), t.ravel().copy()
        else:
            self._ang_eta = self._bp_etas.copy()
            self._ang_shift = np.zeros_like(self._ang_eta)
            z, lam = np.meshgrid(self._bp_zetas, self._bp_lambdas, indexing="ij")
            self._ang_zeta, self._ang_third = z.ravel().copy(), lam.ravel().copy()
        # BP: per angular grid point u = (zeta, lambda), lambda fastest
        self._u_pref = 2.0 ** (1.0 - self._ang_zeta)
        self._u_zint = _integer_exponent(self._ang_zeta)
        # ANI: the angular grid is zetas x theta shifts (theta fastest)
        self._z_val = self._ani_zetas
        self._z_pref = 2.0 ** (1.0 - self._z_val)
        self._z_int = _integer_exponent(self._z_val)
        self._t_c = np.cos(self._ani_theta_shifts)
        self._t_s = np.sin(self._ani_theta_shifts)
        S = len(self._species)
        table = np.empty((S, S), dtype=np.int64)
        n = 0
        for b in range(S):
            for c in range(b, S):
                table[b, c] = table[c, b] = n
                n += 1
        self._pair_table = table

    def _check_no_angular_parameters(self, owner):
        """With ``angular=None``: every angular parameter must be left at its default."""
        names = ("angular_cutoff", "bp_etas", "bp_zetas", "ani_etas", "ani_shifts", "ani_zetas",
                 "ani_theta_shifts")
        for name in names:
            value = getattr(self, name)
            if value is not None:
                raise InvalidParameterError(
                    f"The '{name}' parameter of {owner} must be None when angular=None (radial "
                    f"G2 features only, no angular block). Got {value!r} instead.")
        lam = self.bp_lambdas
        if lam is not None and not _is_default_lambdas(lam):
            raise InvalidParameterError(
                f"The 'bp_lambdas' parameter of {owner} must be left at its default (-1, 1) or "
                "None when angular=None (radial G2 features only, no angular block). "
                f"Got {lam!r} instead.")

    @property
    def n_features(self):
        """int: ``S * G + S (S + 1) / 2 * A`` (see the class Notes)."""
        self._validate()
        return self._n_features()

    def _n_features(self):
        # from the constants cached by _validate (no re-validation in the hot path)
        S = len(self._species)
        A = self._ang_eta.shape[0] * self._ang_zeta.shape[0]
        return S * self._g2_eta.shape[0] + S * (S + 1) // 2 * A

    def feature_labels(self):
        """Description of every column, in feature order.

        Returns
        -------
        list of tuple
            ``("radial", b, eta, R_s)`` for the radial block, then (unless ``angular`` is
            None) ``("ani", (b, c), eta, R_s, zeta, theta_s)`` or ``(kind, (b, c), eta, zeta,
            lambda)`` (kind ``"bp"`` or ``"g5"``) for the angular block; ``b``, ``c`` are
            species symbols (``b`` before ``c`` in ``species``), ``eta`` in Å⁻², ``R_s`` in Å,
            ``theta_s`` in rad.
        """
        self._validate()
        sp = self._species
        out = [("radial", b, float(e), float(s))
               for b in sp for e, s in zip(self._g2_eta, self._g2_shift)]
        for bi in range(len(sp)):
            for ci in range(bi, len(sp)):
                pair = (sp[bi], sp[ci])
                for e, s in zip(self._ang_eta, self._ang_shift):
                    for z, t in zip(self._ang_zeta, self._ang_third):
                        if self.angular == "ani":
                            out.append(("ani", pair, float(e), float(s), float(z), float(t)))
                        else:
                            out.append((self.angular, pair, float(e), float(z), int(t)))
        return out

    # -- kernels -------------------------------------------------------------------------------
    def _common_args(self, nl, species_idx):
        sp_j = np.ascontiguousarray(species_idx[nl.j]) if nl.n_pairs else np.zeros(0, np.int64)
        counts = np.diff(nl.offsets)
        max_nb = int(counts.max()) if counts.size else 0
        D = np.ascontiguousarray(nl.D, dtype=np.float64)
        d = np.ascontiguousarray(nl.d, dtype=np.float64)
        offsets = np.ascontiguousarray(nl.offsets, dtype=np.int64)
        col0 = len(self._species) * self._g2_eta.shape[0]
        sin_p, din_p = pair_inner_switch(self._inner, nl, species_idx)
        return offsets, D, d, sp_j, max_nb, col0, sin_p, din_p

    def _angular(self, args, mode, X, d_drij, W, g_out):
        offsets, D, d, sp_j, max_nb, col0, sin_p, din_p = args
        if self.angular is None:
            return
        if self.angular == "ani":
            _ani_kernel(offsets, D, d, sp_j, self._pair_table, col0, self._angular_cutoff,
                        self._ang_eta, self._ang_shift, self._z_val, self._z_int, self._z_pref,
                        self._t_c, self._t_s, max_nb, mode, X, d_drij, W, g_out,
                        self._cut_kind, sin_p, din_p)
        else:
            _bp_kernel(offsets, D, d, sp_j, self._pair_table, col0, self._angular_cutoff,
                       self._ang_eta, self._ang_zeta, self._u_zint, self._u_pref,
                       self._ang_third, max_nb, mode, X, d_drij, W, g_out,
                       self.angular == "g5", self._cut_kind, sin_p, din_p)

    def _compute(self, nl, species_idx, gradients):
        args = self._common_args(nl, species_idx)
        offsets, D, d, sp_j = args[:4]
        F = self._n_features()
        X = np.zeros((nl.n_atoms, F))
        d_drij = np.zeros((nl.n_pairs, 3, F) if gradients else (0, 3, F))
        _radial_forward(offsets, D, d, sp_j, self._g2_eta, self._g2_shift, self._r_cut, X,
                        d_drij, gradients, self._cut_kind, *args[6:])
        self._angular(args, MODE_JACOBIAN if gradients else MODE_VALUES, X, d_drij,
                      np.zeros((0, F)), np.zeros((0, 3)))
        return X, (d_drij if gradients else None)

    def _backward(self, nl, species_idx, dE_dX):
        args = self._common_args(nl, species_idx)
        offsets, D, d, sp_j = args[:4]
        F = self._n_features()
        g = np.zeros((nl.n_pairs, 3))
        W = np.ascontiguousarray(dE_dX, dtype=np.float64)
        _radial_backward(offsets, D, d, sp_j, self._g2_eta, self._g2_shift, self._r_cut, W, g,
                         self._cut_kind, *args[6:])
        self._angular(args, MODE_BACKWARD, np.zeros((0, F)), np.zeros((0, 3, F)), W, g)
        return g
