"""Exact constants of the SO(3) descriptors, generated once with sympy / mpmath and cached.

- :func:`bessel_zeros`: positive zeros ``z_lk`` of the spherical Bessel functions ``j_l``
  (zeros of ``J_{l+1/2}``, found by mpmath to 30 significant digits);
- :func:`radial_normalisation`: ``n_lk = sqrt(2) / |j_{l+1}(z_lk)|`` so that
  ``g_lk(r) = n_lk r_cut^{-3/2} j_l(z_lk r / r_cut)`` satisfies
  ``int_0^{r_cut} g_lk g_lk' r^2 dr = delta_kk'``;
- :func:`complex_to_real`: the unitary ``U_l`` with ``Y^R_lm = sum_mu U_l[m, mu] Y_l^mu``
  (complex ``Y_l^mu`` with the Condon-Shortley phase, as ``scipy.special.sph_harm_y``);
- :func:`real_coupling`: real-basis coupling coefficients built from the complex
  Clebsch-Gordan coefficients of sympy;
- :func:`coupling_table`: the sparse table of all symmetry-unique triples up to ``l_max``.

Everything is cached with :func:`functools.lru_cache`; arrays returned are read-only.  The
coupling table (sympy Clebsch-Gordan, ~40 s for ``l_max = 12``) is also cached on disk, in
``$HYBRIDPOT_CACHE_DIR`` or else ``$NUMBA_CACHE_DIR/hybridpot`` or ``~/.cache/hybridpot``
(a best-effort cache: unreadable or unwritable locations are ignored and the table is
regenerated).
"""

from __future__ import annotations

import io
import os
import zipfile
from functools import lru_cache
from pathlib import Path

import numpy as np

__all__ = ["bessel_zeros", "radial_normalisation", "complex_to_real", "complex_cg",
           "real_coupling", "coupling_triples", "coupling_table"]

_DPS = 30


def _readonly(a):
    a = np.ascontiguousarray(a)
    a.setflags(write=False)
    return a


@lru_cache(maxsize=None)
def _zeros_of_l(l, n):
    import mpmath

    with mpmath.workdps(_DPS):
        nu = mpmath.mpf(l) + mpmath.mpf(1) / 2
        return tuple(mpmath.besseljzero(nu, k) for k in range(1, n + 1))


@lru_cache(maxsize=None)
def bessel_zeros(l_max, n_max):
    """First ``n_max`` positive zeros of ``j_l`` for ``l = 0..l_max``.

    Returns
    -------
    ndarray of float64, shape (l_max + 1, n_max)
    """
    out = np.empty((l_max + 1, n_max))
    for l in range(l_max + 1):
        out[l] = [float(z) for z in _zeros_of_l(l, n_max)]
    return _readonly(out)


@lru_cache(maxsize=None)
def radial_normalisation(l_max, n_max):
    """``n_lk = sqrt(2) / |j_{l+1}(z_lk)|`` (dimensionless; divide by ``r_cut**1.5``).

    Uses ``int_0^1 j_l(z x)^2 x^2 dx = j_{l+1}(z)^2 / 2`` at a zero ``z`` of ``j_l``.

    Returns
    -------
    ndarray of float64, shape (l_max + 1, n_max)
    """
    import mpmath

    out = np.empty((l_max + 1, n_max))
    with mpmath.workdps(_DPS):
        for l in range(l_max + 1):
            for k, z in enumerate(_zeros_of_l(l, n_max)):
                jl1 = mpmath.sqrt(mpmath.pi / (2 * z)) * mpmath.besselj(l + mpmath.mpf(3) / 2, z)
                out[l, k] = float(mpmath.sqrt(2) / abs(jl1))
    return _readonly(out)


@lru_cache(maxsize=None)
def complex_to_real(l):
    """Unitary ``U`` (2l+1, 2l+1), index ``m + l``: ``Y^R_lm = sum_mu U[m, mu] Y_l^mu``.

    Real harmonics: ``Y^R_l0 = Y_l^0``, ``Y^R_lm = sqrt(2) (-1)^m Re Y_l^m`` and
    ``Y^R_l,-m = sqrt(2) (-1)^m Im Y_l^m`` for ``m > 0``.
    """
    U = np.zeros((2 * l + 1, 2 * l + 1), dtype=np.complex128)
    s = 1.0 / np.sqrt(2.0)
    U[l, l] = 1.0
    for m in range(1, l + 1):
        sign = (-1.0) ** m
        U[l + m, l + m] = sign * s
        U[l + m, l - m] = s
        U[l - m, l + m] = -1j * sign * s
        U[l - m, l - m] = 1j * s
    return _readonly(U)


@lru_cache(maxsize=None)
def complex_cg(l1, l2, l):
    """Complex Clebsch-Gordan ``<l1 m1 l2 m2 | l m>`` from sympy, shape (2l+1, 2l1+1, 2l2+1)."""
    from sympy.physics.wigner import clebsch_gordan

    out = np.zeros((2 * l + 1, 2 * l1 + 1, 2 * l2 + 1))
    for m1 in range(-l1, l1 + 1):
        for m2 in range(-l2, l2 + 1):
            m = m1 + m2
            if abs(m) <= l:
                out[m + l, m1 + l1, m2 + l2] = float(clebsch_gordan(l1, l2, l, m1, m2, m))
    return _readonly(out)


@lru_cache(maxsize=None)
def real_coupling(l, l1, l2):
    """Real-basis coupling coefficients ``C[m, m1, m2]`` (index ``m + l`` etc.).

    ``C[m, m1, m2] = sum_{mu mu1 mu2} <l1 mu1 l2 mu2 | l mu> U_l[m, mu] conj(U_l1[m1, mu1])
    conj(U_l2[m2, mu2])``, so that for real densities ``a`` (coefficients on the real
    harmonics) ``sum C a_lm a'_l1m1 a''_l2m2`` equals the complex invariant
    ``sum <l1 mu1 l2 mu2 | l mu> conj(c_lmu) c'_l1mu1 c''_l2mu2``.  Real for even
    ``l + l1 + l2`` (purely imaginary for odd, which is why those triples are not used).

    Returns
    -------
    ndarray of float64, shape (2l+1, 2l1+1, 2l2+1)

    Raises
    ------
    ValueError
        If the triangle or parity condition fails (internal use only).
    """
    if not (abs(l1 - l2) <= l <= l1 + l2) or (l + l1 + l2) % 2:
        raise ValueError(f"real_coupling needs |l1-l2| <= l <= l1+l2 and l+l1+l2 even; "
                         f"got (l, l1, l2) = {(l, l1, l2)}")
    cg = complex_cg(l1, l2, l)
    c = np.einsum("abc,ma,nb,pc->mnp", cg, complex_to_real(l), complex_to_real(l1).conj(),
                  complex_to_real(l2).conj())
    if np.abs(c.imag).max() > 1e-12:  # pragma: no cover - mathematical invariant
        raise RuntimeError(f"real coupling coefficients for {(l, l1, l2)} are not real")
    out = c.real.copy()
    out[np.abs(out) < 1e-14] = 0.0
    return _readonly(out)


def coupling_triples(l_max):
    """Symmetry-unique non-zero triples ``(l, l1, l2)``: ``l1 <= l2 <= l_max``,
    ``|l1 - l2| <= l <= min(l1 + l2, l_max)``, ``l + l1 + l2`` even; in that loop order."""
    out = []
    for l1 in range(l_max + 1):
        for l2 in range(l1, l_max + 1):
            for l in range(l2 - l1, min(l1 + l2, l_max) + 1):
                if (l + l1 + l2) % 2 == 0:
                    out.append((l, l1, l2))
    return out


_TABLE_VERSION = 1
_TABLE_KEYS = ("triples", "entry_offsets", "entry_mi", "entry_lm1", "entry_lm2", "entry_coef")


def _cache_dir():
    env = os.environ.get("HYBRIDPOT_CACHE_DIR")
    if env:
        return Path(env)
    numba_dir = os.environ.get("NUMBA_CACHE_DIR")
    if numba_dir:
        return Path(numba_dir) / "hybridpot"
    return Path.home() / ".cache" / "hybridpot"


def _load_table(path, l_max):
    try:
        data = path.read_bytes()  # np.load on a path leaks the handle of a corrupt zip
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            out = tuple(np.array(z[k]) for k in _TABLE_KEYS)
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile):
        return None
    triples = out[0]
    expected = np.array(coupling_triples(l_max), dtype=np.int64).reshape(-1, 3)
    n = out[1][-1] if out[1].size else -1
    if (triples.shape != expected.shape or not np.array_equal(triples, expected)
            or out[1].shape != (len(expected) + 1,)
            or any(a.shape != (n,) for a in out[2:])):
        return None
    return out


def _build_table(l_max):
    triples = coupling_triples(l_max)
    offs = [0]
    mi, lm1, lm2, coef = [], [], [], []
    for (l, l1, l2) in triples:
        C = real_coupling(l, l1, l2)
        idx = np.argwhere(C != 0.0)
        for (a, b, c) in idx:
            mi.append(a)
            lm1.append(l1 * l1 + b)
            lm2.append(l2 * l2 + c)
            coef.append(C[a, b, c])
        offs.append(len(coef))
    return (np.array(triples, dtype=np.int64).reshape(-1, 3), np.array(offs, dtype=np.int64),
            np.array(mi, dtype=np.int64), np.array(lm1, dtype=np.int64),
            np.array(lm2, dtype=np.int64), np.array(coef, dtype=np.float64))


@lru_cache(maxsize=None)
def coupling_table(l_max, use_disk_cache=True):
    """Sparse real coupling table of every triple of :func:`coupling_triples`.

    Parameters
    ----------
    l_max : int
    use_disk_cache : bool, default=True
        Read/write the table under :func:`_cache_dir` (validated on load).

    Returns
    -------
    triples : ndarray of int64, shape (n_triples, 3)
        ``(l, l1, l2)``.
    entry_offsets : ndarray of int64, shape (n_triples + 1,)
        Entries of triple ``t`` are ``entry_offsets[t]:entry_offsets[t + 1]``.
    entry_mi : ndarray of int64
        ``m + l`` (position inside the ``l`` block).
    entry_lm1, entry_lm2 : ndarray of int64
        Flat harmonic indices ``l1*l1 + l1 + m1`` and ``l2*l2 + l2 + m2``.
    entry_coef : ndarray of float64
        Non-zero coefficients ``C[m, m1, m2]``.
    """
    path = _cache_dir() / f"so3_coupling_v{_TABLE_VERSION}_lmax{l_max}.npz"
    out = _load_table(path, l_max) if use_disk_cache else None
    if out is None:
        out = _build_table(l_max)
        if use_disk_cache:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
                np.savez(tmp, **dict(zip(_TABLE_KEYS, out)))
                os.replace(tmp, path)
            except OSError:
                pass
    return tuple(_readonly(a) for a in out)
