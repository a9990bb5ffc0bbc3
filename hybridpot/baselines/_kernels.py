"""Numba kernels of the pair baselines (small, pure; plain-numpy references live in the tests).

Conventions: ``d`` (n_pairs,) are pair distances (Å) from a *full* neighbour list, ``ti``/``tj``
the type index of the centre/neighbour atom, ``P`` (n_types, n_types, k) the per-type-pair
parameters.  ``phi`` is the pair energy (eV) and ``dphi`` its derivative ``d phi / d r`` (eV/Å).
"""

from __future__ import annotations

import numpy as np
from numba import njit

#: functional forms handled by :func:`pair_terms`
FORM_LJ = 0
FORM_MORSE = 1
FORM_BUCKINGHAM = 2

#: number of parameters of each form
N_PARAMS = (2, 3, 3)


@njit(cache=True)
def raw_terms(form, r, prm, out):
    """Unshifted pair function at ``r`` and its parameter derivatives.

    Fills ``out`` (length ``2 + 2k``) with ``[phi, dphi/dr, dphi/dθ_0.., d²phi/(dr dθ_0)..]``.
    """
    if form == FORM_LJ:
        eps = prm[0]
        sig = prm[1]
        s6 = (sig / r) ** 6
        s12 = s6 * s6
        out[0] = 4.0 * eps * (s12 - s6)
        out[1] = 4.0 * eps * (-12.0 * s12 + 6.0 * s6) / r
        out[2] = 4.0 * (s12 - s6)
        out[3] = 4.0 * eps * (12.0 * s12 - 6.0 * s6) / sig
        out[4] = 4.0 * (-12.0 * s12 + 6.0 * s6) / r
        out[5] = 4.0 * eps * (-144.0 * s12 + 36.0 * s6) / (r * sig)
    elif form == FORM_MORSE:
        d0 = prm[0]
        alpha = prm[1]
        r0 = prm[2]
        dr = r - r0
        x = np.exp(-alpha * dr)
        out[0] = d0 * (x * x - 2.0 * x)
        out[1] = 2.0 * alpha * d0 * (x - x * x)
        out[2] = x * x - 2.0 * x
        out[3] = -2.0 * d0 * (x - 1.0) * x * dr
        out[4] = 2.0 * alpha * d0 * x * (x - 1.0)
        out[5] = 2.0 * alpha * (x - x * x)
        out[6] = 2.0 * d0 * (x - x * x) - 2.0 * alpha * d0 * (1.0 - 2.0 * x) * dr * x
        out[7] = 2.0 * alpha * alpha * d0 * (1.0 - 2.0 * x) * x
    else:
        a = prm[0]
        rho = prm[1]
        c = prm[2]
        ex = np.exp(-r / rho)
        r6 = r ** 6
        out[0] = a * ex - c / r6
        out[1] = -a * ex / rho + 6.0 * c / (r6 * r)
        out[2] = ex
        out[3] = a * ex * r / (rho * rho)
        out[4] = -1.0 / r6
        out[5] = -ex / rho
        out[6] = a * ex * (1.0 / (rho * rho) - r / (rho * rho * rho))
        out[7] = 6.0 / (r6 * r)


@njit(cache=True)
def cutoff_terms(form, P, r_cut):
    """``raw_terms`` at ``r_cut`` for every type pair: shape (n_types, n_types, 2 + 2k)."""
    nt = P.shape[0]
    k = P.shape[2]
    C = np.empty((nt, nt, 2 + 2 * k))
    for a in range(nt):
        for b in range(nt):
            raw_terms(form, r_cut, P[a, b], C[a, b])
    return C


@njit(cache=True)
def pair_terms(form, d, ti, tj, P, C, r_cut, with_params):
    """Shifted-force pair energies, derivatives and (optionally) parameter derivatives.

    ``phi_sf(r) = phi(r) - phi(r_c) - (r - r_c) phi'(r_c)``.

    Returns ``e`` (n_pairs,), ``g = d phi_sf/dr`` (n_pairs,), and when ``with_params``
    ``e_th`` (n_pairs, k) = d phi_sf / d θ and ``g_th`` (n_pairs, k) = d² phi_sf / (dr dθ)
    (else arrays of shape (0, k)).
    """
    n = d.shape[0]
    k = P.shape[2]
    e = np.empty(n)
    g = np.empty(n)
    m = n if with_params else 0
    e_th = np.empty((m, k))
    g_th = np.empty((m, k))
    buf = np.empty(2 + 2 * k)
    for p in range(n):
        a = ti[p]
        b = tj[p]
        r = d[p]
        raw_terms(form, r, P[a, b], buf)
        c = C[a, b]
        x = r - r_cut
        e[p] = buf[0] - c[0] - x * c[1]
        g[p] = buf[1] - c[1]
        if with_params:
            for q in range(k):
                e_th[p, q] = buf[2 + q] - c[2 + q] - x * c[2 + k + q]
                g_th[p, q] = buf[2 + k + q] - c[2 + k + q]
    return e, g, e_th, g_th


@njit(cache=True)
def zbl_terms(d, ti, tj, Z, r_inner):
    """LAMMPS ``pair_style zbl`` pair energies and derivatives.

    ``Z`` (n_types, n_types, 10) holds per type pair
    ``[zze, d1a, d2a, d3a, d4a, sw1, sw2, sw3, sw4, sw5]`` (see :class:`~hybridpot.baselines.ZBL`).
    """
    c1 = 0.02817
    c2 = 0.28022
    c3 = 0.50986
    c4 = 0.18175
    n = d.shape[0]
    e = np.empty(n)
    g = np.empty(n)
    for p in range(n):
        z = Z[ti[p], tj[p]]
        r = d[p]
        e1 = c1 * np.exp(-z[1] * r)
        e2 = c2 * np.exp(-z[2] * r)
        e3 = c3 * np.exp(-z[3] * r)
        e4 = c4 * np.exp(-z[4] * r)
        s = e1 + e2 + e3 + e4
        sp = -(z[1] * e1 + z[2] * e2 + z[3] * e3 + z[4] * e4)
        ev = z[0] * s / r + z[9]
        gv = z[0] * (sp - s / r) / r
        if r > r_inner:
            t = r - r_inner
            ev += t * t * t * (z[7] + z[8] * t)
            gv += t * t * (z[5] + z[6] * t)
        e[p] = ev
        g[p] = gv
    return e, g


@njit(cache=True)
def accumulate(i, j, D, d, e, g, n_atoms):
    """Per-atom energies, ``dE/dr`` and ``dE/d eps`` from a full list of pair terms.

    ``E = 1/2 sum_p e[p]`` with the half of each pair energy assigned to its centre atom;
    ``dE/d r_ij[p] = 1/2 g[p] r_ij / |r_ij|``.
    """
    energies = np.zeros(n_atoms)
    dE_dr = np.zeros((n_atoms, 3))
    virial = np.zeros((3, 3))
    for p in range(i.shape[0]):
        energies[i[p]] += 0.5 * e[p]
        c = 0.5 * g[p] / d[p]
        for a in range(3):
            ga = c * D[p, a]
            dE_dr[j[p], a] += ga
            dE_dr[i[p], a] -= ga
            for b in range(3):
                virial[a, b] += ga * D[p, b]
    return energies, dE_dr, virial


@njit(cache=True)
def accumulate_params(i, j, ti, tj, D, d, e_th, g_th, flat_index, n_params, n_atoms):
    """Parameter derivatives of the energy, ``dE/dr`` and ``dE/d eps``.

    ``flat_index[a, b, q]`` is the position in the flat parameter vector of parameter ``q``
    of type pair ``(a, b)``.
    """
    k = e_th.shape[1]
    dE = np.zeros(n_params)
    dG = np.zeros((n_params, n_atoms, 3))
    dV = np.zeros((n_params, 3, 3))
    for p in range(i.shape[0]):
        for q in range(k):
            f = flat_index[ti[p], tj[p], q]
            dE[f] += 0.5 * e_th[p, q]
            c = 0.5 * g_th[p, q] / d[p]
            for a in range(3):
                ga = c * D[p, a]
                dG[f, j[p], a] += ga
                dG[f, i[p], a] -= ga
                for b in range(3):
                    dV[f, a, b] += ga * D[p, b]
    return dE, dG, dV


@njit(cache=True)
def atomic_virials(i, D, c, n_atoms):
    """Per-atom virials ``W`` (n_atoms, 3, 3), eV, of central pair terms from a full list.

    ``W[i[p]] += c[p] D[p] ⊗ D[p]``, where ``c[p] D[p]`` is the directed pair's share of
    ``dE/d r_ij`` (both directions of a pair are listed, so each atom of a pair gets half of
    the pair's virial, as LAMMPS and ASE tally it); ``W.sum(0)`` is ``dE/d eps``.
    """
    W = np.zeros((n_atoms, 3, 3))
    for p in range(i.shape[0]):
        k = i[p]
        for a in range(3):
            ca = c[p] * D[p, a]
            for b in range(3):
                W[k, a, b] += ca * D[p, b]
    return W
