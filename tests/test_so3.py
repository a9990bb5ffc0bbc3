"""SO(3) PowerSpectrum and Bispectrum beyond the contract suite.

Independent truth: a plain-numpy reference (scipy ``spherical_jn`` / ``sph_harm_y``, Bessel zeros
by ``brentq``, normalisation by quadrature, the bispectrum in the *complex* basis with
``sympy.physics.quantum.cg.CG``), exact sympy real coupling coefficients, orthonormality by
quadrature, finite differences.
"""

from functools import lru_cache

import numpy as np
import pytest
from ase import Atoms
from ase.neighborlist import neighbor_list as ase_neighbor_list
from scipy.integrate import quad
from scipy.optimize import brentq
from scipy.spatial.transform import Rotation
from scipy.special import spherical_jn, sph_harm_y

from hybridpot import InvalidParameterError
from hybridpot.descriptors import Bispectrum, PowerSpectrum
from hybridpot.descriptors._so3 import harmonic_constants, radial_basis_exact, radial_table
from hybridpot.descriptors._so3_kernels import MANY_MEMBERS, radial_eval, sph_harm_real
from hybridpot.descriptors._sympy_basis import (bessel_zeros, complex_to_real, coupling_table,
                                                coupling_triples, real_coupling)

from conftest import skewed_two_element_cell

SPECIES = ["Cu", "Ni"]


# ------------------------------------------------------------------------------------------
# plain-numpy reference
# ------------------------------------------------------------------------------------------
def _ref_zeros(l, n):
    x = np.linspace(0.5, (n + l / 2 + 3) * np.pi, 40000)
    f = spherical_jn(l, x)
    idx = np.nonzero(np.sign(f[:-1]) != np.sign(f[1:]))[0][:n]
    return np.array([brentq(lambda t: spherical_jn(l, t), x[i], x[i + 1], xtol=1e-15)
                     for i in idx])


@lru_cache(maxsize=None)
def _ref_radial_constants(r_cut, n_max, l_max):
    """Zeros (brentq) and normalisations (quadrature), shape (l_max + 1, n_max) each."""
    z = np.array([_ref_zeros(l, n_max) for l in range(l_max + 1)])
    nrm = np.empty_like(z)
    for l in range(l_max + 1):
        for k in range(n_max):
            norm2 = quad(lambda s: spherical_jn(l, z[l, k] * s / r_cut) ** 2 * s * s, 0, r_cut,
                         epsabs=1e-14, epsrel=1e-13, limit=200)[0]
            nrm[l, k] = 1.0 / np.sqrt(norm2)
    return z, nrm


def _ref_radial(r, r_cut, n_max, l_max):
    """g_lk(r) f_c(r); shape (l_max + 1, n_max)."""
    z, nrm = _ref_radial_constants(r_cut, n_max, l_max)
    j = spherical_jn(np.arange(l_max + 1)[:, None], z * r / r_cut)
    return nrm * j * 0.5 * (1 + np.cos(np.pi * r / r_cut))


def _complex_ylm(l, m, v):
    r = np.linalg.norm(v)
    theta = np.arccos(np.clip(v[2] / r, -1, 1))
    phi = np.arctan2(v[1], v[0])
    return complex(sph_harm_y(l, m, theta, phi))


def _real_ylm(l, m, v):
    if m == 0:
        return _complex_ylm(l, 0, v).real
    y = _complex_ylm(l, abs(m), v)
    return np.sqrt(2) * (-1) ** m * (y.real if m > 0 else y.imag)


def _ref_density(atoms, r_cut, n_max, l_max, species, weights=None, complex_basis=False):
    """Density coefficients per atom, shape (n_atoms, n_channels * n_max, l_max+1, 2l_max+1)."""
    i_, j_, D_ = ase_neighbor_list("ijD", atoms, r_cut)
    nch = 1 if weights is not None else len(species)
    sym = atoms.get_chemical_symbols()
    dt = complex if complex_basis else float
    a = np.zeros((len(atoms), nch * n_max, l_max + 1, 2 * l_max + 1), dtype=dt)
    for i, j, v in zip(i_, j_, D_):
        s = species.index(sym[j])
        c, w = (0, weights[s]) if weights is not None else (s, 1.0)
        R = _ref_radial(np.linalg.norm(v), r_cut, n_max, l_max)
        for l in range(l_max + 1):
            for m in range(-l, l + 1):
                y = _complex_ylm(l, m, v) if complex_basis else _real_ylm(l, m, v)
                a[i, c * n_max:(c + 1) * n_max, l, m + l] += w * R[l] * y
    return a


def _ref_power_spectrum(atoms, r_cut, n_max, l_max, species, weights=None):
    a = _ref_density(atoms, r_cut, n_max, l_max, species, weights)
    Q = a.shape[1]
    rows = []
    for q1 in range(Q):
        for q2 in range(q1, Q):
            for l in range(l_max + 1):
                rows.append(np.sum(a[:, q1, l] * a[:, q2, l], axis=1))
    return np.array(rows).T


_CG_CACHE = {}


def _cg(l1, m1, l2, m2, l, m):
    from sympy.physics.quantum.cg import CG

    key = (l1, m1, l2, m2, l, m)
    if key not in _CG_CACHE:
        _CG_CACHE[key] = float(CG(l1, m1, l2, m2, l, m).doit())
    return _CG_CACHE[key]


def _ref_bispectrum(atoms, r_cut, n_max, l_max, species, weights=None):
    """Complex-basis bispectrum sum <l1 m1 l2 m2|l m> conj(c_qlm) c_q'l1m1 c_q'l2m2."""
    c = _ref_density(atoms, r_cut, n_max, l_max, species, weights, complex_basis=True)
    Q = c.shape[1]
    triples = []
    for l1 in range(l_max + 1):  # documented order: l1, then l2 >= l1, then l
        for l2 in range(l1, l_max + 1):
            for l in range(l2 - l1, min(l1 + l2, l_max) + 1):
                if (l + l1 + l2) % 2 == 0:
                    triples.append((l, l1, l2))
    rows = []
    for q in range(Q):
        for qp in range(Q):
            for (l, l1, l2) in triples:
                if q == qp and l > l1:
                    continue
                b = np.zeros(len(atoms), dtype=complex)
                for m1 in range(-l1, l1 + 1):
                    for m2 in range(-l2, l2 + 1):
                        m = m1 + m2
                        if abs(m) > l:
                            continue
                        cg = _cg(l1, m1, l2, m2, l, m)
                        if cg:
                            b += (cg * np.conj(c[:, q, l, m + l]) * c[:, qp, l1, m1 + l1]
                                  * c[:, qp, l2, m2 + l2])
                rows.append(b)
    B = np.array(rows).T
    assert np.abs(B.imag).max() <= 1e-12 * max(1.0, np.abs(B.real).max())
    return B.real


@pytest.fixture(scope="module")
def small_cell():
    return skewed_two_element_cell(seed=3, rattle=0.1)


@pytest.mark.parametrize("weights", [None, [1.0, -0.6]])
def test_power_spectrum_matches_numpy_reference(small_cell, weights):
    desc = PowerSpectrum(species=SPECIES, r_cut=4.0, n_max=3, l_max=3, species_weights=weights)
    X = desc.compute(small_cell)
    ref = _ref_power_spectrum(small_cell, 4.0, 3, 3, SPECIES, weights)
    assert X.shape == ref.shape == (4, desc.n_features)
    np.testing.assert_allclose(X, ref, rtol=1e-7, atol=1e-9 * np.abs(ref).max())


@pytest.mark.parametrize("weights", [None, [0.8, 1.3]])
def test_bispectrum_matches_complex_reference(small_cell, weights):
    desc = Bispectrum(species=SPECIES, r_cut=4.0, n_max=2, l_max=3, species_weights=weights)
    X = desc.compute(small_cell)
    ref = _ref_bispectrum(small_cell, 4.0, 2, 3, SPECIES, weights)
    assert X.shape == ref.shape == (4, desc.n_features)
    np.testing.assert_allclose(X, ref, rtol=1e-7, atol=1e-9 * np.abs(ref).max())


# ------------------------------------------------------------------------------------------
# radial basis
# ------------------------------------------------------------------------------------------
def test_bessel_zeros_match_brentq():
    z = bessel_zeros(12, 20)
    for l in (0, 1, 5, 12):
        np.testing.assert_allclose(z[l], _ref_zeros(l, 20), rtol=1e-13)
    np.testing.assert_allclose(z[0], np.pi * np.arange(1, 21), rtol=1e-14)


@pytest.mark.parametrize("l", [0, 1, 4])
def test_radial_basis_orthonormal(l):
    r_cut, n_max = 3.7, 6

    def g(r):
        return radial_basis_exact(np.atleast_1d(r), r_cut, n_max, l, cutoff=False)[0, l]

    gram = np.empty((n_max, n_max))
    for k in range(n_max):
        for kp in range(k, n_max):
            gram[k, kp] = gram[kp, k] = quad(lambda r: g(r)[k] * g(r)[kp] * r * r, 0, r_cut,
                                             limit=200, epsabs=1e-12)[0]
    np.testing.assert_allclose(gram, np.eye(n_max), atol=1e-9)


@pytest.mark.parametrize("r_cut,n_max,l_max", [(5.0, 8, 6), (4.0, 20, 12), (2.5, 1, 0)])
def test_radial_spline_error(r_cut, n_max, l_max, rng):
    table, h = radial_table(r_cut, n_max, l_max)
    r = np.concatenate([rng.uniform(0, r_cut, 400), [0.0, h * 0.5, r_cut * (1 - 1e-9)]])
    exact, dexact = radial_basis_exact(r, r_cut, n_max, l_max, derivative=True)
    exact = exact.reshape(len(r), -1)
    dexact = dexact.reshape(len(r), -1)
    nf = table.shape[1]
    R, dR = np.empty((len(r), nf)), np.empty((len(r), nf))
    for n, x in enumerate(r):
        radial_eval(x, 1 / h, h, table, R[n], dR[n])
    scale = np.abs(exact).max(axis=0)
    assert (np.abs(R - exact).max(axis=0) / scale).max() < 1e-8
    dscale = np.abs(dexact).max(axis=0)
    assert (np.abs(dR - dexact).max(axis=0) / dscale).max() < 1e-5


# ------------------------------------------------------------------------------------------
# angular basis and coupling coefficients
# ------------------------------------------------------------------------------------------
def _kernel_ylm(v, l_max, grad=True):
    L2 = (l_max + 1) ** 2
    Y, dY = np.empty(L2), np.empty((3, L2))
    C, S = np.empty(l_max + 1), np.empty(l_max + 1)
    sph_harm_real(v[0], v[1], v[2], l_max, harmonic_constants(l_max), C, S, Y, dY, grad)
    return Y, dY


def test_real_harmonics_match_scipy_and_transform(rng):
    l_max = 8
    for _ in range(5):
        v = rng.normal(size=3) * 2.0
        Y, _ = _kernel_ylm(v, l_max)
        for l in range(l_max + 1):
            ref = np.array([_real_ylm(l, m, v) for m in range(-l, l + 1)])
            yc = np.array([_complex_ylm(l, m, v) for m in range(-l, l + 1)])
            np.testing.assert_allclose(Y[l * l:(l + 1) ** 2], ref, atol=1e-12)
            np.testing.assert_allclose(complex_to_real(l) @ yc, ref, atol=1e-12)


def test_real_harmonic_gradients_match_finite_differences(rng):
    l_max, h = 7, 1e-6
    v = rng.normal(size=3)
    _, dY = _kernel_ylm(v, l_max)
    fd = np.empty_like(dY)
    for a in range(3):
        e = np.zeros(3)
        e[a] = h
        fd[a] = (_kernel_ylm(v + e, l_max)[0] - _kernel_ylm(v - e, l_max)[0]) / (2 * h)
    np.testing.assert_allclose(dY, fd, atol=1e-7)


def _sympy_real_coupling(l, l1, l2):
    import sympy as sp
    from sympy.physics.quantum.cg import CG

    def U(ll):
        M = sp.zeros(2 * ll + 1, 2 * ll + 1)
        M[ll, ll] = 1
        for m in range(1, ll + 1):
            M[ll + m, ll + m] = (-1) ** m / sp.sqrt(2)
            M[ll + m, ll - m] = 1 / sp.sqrt(2)
            M[ll - m, ll + m] = -sp.I * (-1) ** m / sp.sqrt(2)
            M[ll - m, ll - m] = sp.I / sp.sqrt(2)
        return M

    U0, U1, U2 = U(l), U(l1), U(l2)
    out = np.empty((2 * l + 1, 2 * l1 + 1, 2 * l2 + 1), dtype=complex)
    for a in range(2 * l + 1):
        for b in range(2 * l1 + 1):
            for c in range(2 * l2 + 1):
                s = 0
                for mu1 in range(-l1, l1 + 1):
                    for mu2 in range(-l2, l2 + 1):
                        mu = mu1 + mu2
                        if abs(mu) > l:
                            continue
                        s += (CG(l1, mu1, l2, mu2, l, mu).doit() * U0[a, mu + l]
                              * sp.conjugate(U1[b, mu1 + l1]) * sp.conjugate(U2[c, mu2 + l2]))
                out[a, b, c] = complex(sp.nsimplify(sp.expand(s)).evalf(30))
    return out


@pytest.mark.parametrize("lll", [(0, 1, 1), (2, 1, 1), (1, 1, 2), (2, 2, 2)])
def test_real_coupling_matches_sympy(lll):
    ref = _sympy_real_coupling(*lll)
    assert np.abs(ref.imag).max() < 1e-25
    np.testing.assert_allclose(real_coupling(*lll), ref.real, atol=1e-14)


def test_coupling_table_disk_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HYBRIDPOT_CACHE_DIR", str(tmp_path))
    coupling_table.cache_clear()
    try:
        fresh = coupling_table(3, use_disk_cache=False)
        first = coupling_table(3)
        files = list(tmp_path.glob("so3_coupling_*lmax3.npz"))
        assert len(files) == 1
        coupling_table.cache_clear()
        loaded = coupling_table(3)
        for a, b, c in zip(fresh, first, loaded):
            np.testing.assert_array_equal(a, b)
            np.testing.assert_array_equal(a, c)
        # a corrupt or mismatching file is ignored and rewritten
        files[0].write_bytes(b"not an npz")
        coupling_table.cache_clear()
        for a, b in zip(fresh, coupling_table(3)):
            np.testing.assert_array_equal(a, b)
        with np.load(files[0]) as z:
            np.testing.assert_array_equal(z["entry_coef"], fresh[5])
        files[0].write_bytes(files[0].read_bytes()[:200])  # truncated zip
        coupling_table.cache_clear()
        for a, b in zip(fresh, coupling_table(3)):
            np.testing.assert_array_equal(a, b)
        # entries: coefficient of triple t at (m, m1, m2) equals the dense real coupling
        triples, offs, mi, lm1, lm2, coef = fresh
        for t, (l, l1, l2) in enumerate(triples):
            dense = np.zeros((2 * l + 1, 2 * l1 + 1, 2 * l2 + 1))
            sl = slice(offs[t], offs[t + 1])
            dense[mi[sl], lm1[sl] - l1 * l1, lm2[sl] - l2 * l2] = coef[sl]
            np.testing.assert_array_equal(dense, real_coupling(l, l1, l2))
    finally:
        coupling_table.cache_clear()


def test_odd_parity_triple_rejected():
    with pytest.raises(ValueError, match="even"):
        real_coupling(1, 1, 1)


def test_bispectrum_rotation_and_inversion_invariant_large_l(rng):
    pos = rng.uniform(-2.2, 2.2, size=(9, 3))
    pos[0] = 0.0
    keep = [0] + [k for k in range(1, 9) if 1.0 < np.linalg.norm(pos[k]) < 3.9]
    atoms = Atoms(["Cu", "Ni", "Cu", "Ni", "Cu", "Ni", "Cu", "Ni", "Cu"][:len(pos)],
                  positions=pos)[keep]
    desc = Bispectrum(species=SPECIES, r_cut=4.5, n_max=2, l_max=6)
    X = desc.compute(atoms)
    assert np.abs(X[0]).max() > 0
    for _ in range(3):
        R = Rotation.random(random_state=rng.integers(1 << 31)).as_matrix()
        rot = atoms.copy()
        rot.positions = atoms.positions @ R.T
        np.testing.assert_allclose(desc.compute(rot), X, rtol=1e-9,
                                   atol=1e-12 * np.abs(X).max())
    inv = atoms.copy()
    inv.positions = -atoms.positions
    np.testing.assert_allclose(desc.compute(inv), X, rtol=1e-9, atol=1e-12 * np.abs(X).max())


# ------------------------------------------------------------------------------------------
# weighted channel: Jacobian and adjoint (the contract suite covers species channels)
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls,kw", [(PowerSpectrum, dict(n_max=3, l_max=3)),
                                    (Bispectrum, dict(n_max=2, l_max=2))])
def test_weighted_channel_derivatives(cls, kw, rng):
    atoms = skewed_two_element_cell(seed=5, rattle=0.12)
    desc = cls(species=SPECIES, r_cut=4.0, species_weights=[1.0, -0.7], **kw)
    X, dX = desc.compute(atoms, gradients=True)
    dense = dX.dense()
    h = 1e-5
    for k, a in [(0, 0), (1, 2), (3, 1)]:
        p, m = atoms.copy(), atoms.copy()
        p.positions[k, a] += h
        m.positions[k, a] -= h
        fd = (desc.compute(p) - desc.compute(m)) / (2 * h)
        np.testing.assert_allclose(dense[:, :, k, a], fd, rtol=1e-5,
                                   atol=1e-7 * max(1.0, np.abs(fd).max()))
    w = rng.normal(size=X.shape)
    dE_dr, dE_deps = desc.backward(atoms, w)
    ref_r, ref_eps = dX.vjp(w)
    np.testing.assert_allclose(dE_dr, ref_r, rtol=1e-9, atol=1e-11 * np.abs(ref_r).max())
    np.testing.assert_allclose(dE_deps, ref_eps, rtol=1e-9, atol=1e-11 * np.abs(ref_eps).max())


@pytest.mark.parametrize("cls,kw", [(PowerSpectrum, dict(n_max=3, l_max=3)),
                                    (Bispectrum, dict(n_max=2, l_max=2))])
@pytest.mark.parametrize("K", [3, MANY_MEMBERS + 3])
def test_fused_backward_many_matches_single_adjoints(cls, kw, K, rng):
    """Both member paths: one contraction per member (few) and the batched kernel (many)."""
    atoms = skewed_two_element_cell(seed=7, rattle=0.1)
    desc = cls(species=SPECIES, r_cut=4.0, **kw)
    X, dX = desc.compute(atoms, gradients=True)
    G = rng.normal(size=(K,) + X.shape)
    dE_dr, dE_deps = desc.backward_many(atoms, G)
    assert dE_dr.shape == (K, len(atoms), 3) and dE_deps.shape == (K, 3, 3)
    for k in range(K):
        r1, e1 = desc.backward(atoms, G[k])
        r2, e2 = dX.vjp(G[k])
        np.testing.assert_allclose(dE_dr[k], r1, rtol=1e-12, atol=1e-13 * np.abs(r1).max())
        np.testing.assert_allclose(dE_deps[k], e1, rtol=1e-12, atol=1e-13 * np.abs(e1).max())
        np.testing.assert_allclose(dE_dr[k], r2, rtol=1e-9, atol=1e-11 * np.abs(r2).max())


def test_equal_weights_equal_summed_channels(small_cell):
    """One channel with unit weights is the density summed over the species channels."""
    n = 3
    single = PowerSpectrum(species=SPECIES, r_cut=4.0, n_max=n, l_max=2,
                           species_weights=[1.0, 1.0]).compute(small_cell)
    a = _ref_density(small_cell, 4.0, n, 2, SPECIES)
    summed = a[:, :n] + a[:, n:]
    rows = [np.sum(summed[:, k, l] * summed[:, kp, l], axis=1)
            for k in range(n) for kp in range(k, n) for l in range(3)]
    np.testing.assert_allclose(single, np.array(rows).T, rtol=1e-7, atol=1e-10)


# ------------------------------------------------------------------------------------------
# sizes and parameter errors
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("species,weights,n_max,l_max", [
    (["Cu"], None, 8, 6), (SPECIES, None, 4, 3), (SPECIES, [1.0, 2.0], 5, 0),
    (["Si", "O", "H"], None, 2, 4)])
def test_n_features_formulas(species, weights, n_max, l_max):
    Q = (1 if weights is not None else len(species)) * n_max
    ps = PowerSpectrum(species=species, r_cut=4.0, n_max=n_max, l_max=l_max,
                       species_weights=weights)
    assert ps.n_features == Q * (Q + 1) // 2 * (l_max + 1)
    bs = Bispectrum(species=species, r_cut=4.0, n_max=n_max, l_max=l_max,
                    species_weights=weights)
    count = 0
    for q in range(Q):
        for qp in range(Q):
            for l in range(l_max + 1):
                for l1 in range(l_max + 1):
                    for l2 in range(l1, l_max + 1):
                        ok = abs(l1 - l2) <= l <= l1 + l2 and (l + l1 + l2) % 2 == 0
                        if ok and (q != qp or l <= l1):
                            count += 1
    assert bs.n_features == count
    assert len(coupling_triples(l_max)) == sum(
        1 for l in range(l_max + 1) for l1 in range(l_max + 1) for l2 in range(l1, l_max + 1)
        if abs(l1 - l2) <= l <= l1 + l2 and (l + l1 + l2) % 2 == 0)
    if weights is None and len(species) <= 2 and l_max <= 3:
        at = skewed_two_element_cell(symbols=tuple(species) * 2)
        assert ps.compute(at).shape == (4, ps.n_features)


@pytest.mark.parametrize("cls", [PowerSpectrum, Bispectrum])
@pytest.mark.parametrize("kw,match", [
    (dict(n_max=0), r"'n_max' parameter of {} must be an int in \[1, 20\]\. Got 0"),
    (dict(n_max=21), r"'n_max' parameter of {} must be an int in \[1, 20\]\. Got 21"),
    (dict(n_max=2.5), r"'n_max' parameter of {} must be an int in \[1, 20\]\. Got 2\.5"),
    (dict(l_max=-1), r"'l_max' parameter of {} must be an int in \[0, 12\]\. Got -1"),
    (dict(l_max=13), r"'l_max' parameter of {} must be an int in \[0, 12\]\. Got 13"),
    (dict(r_cut=0.0), r"'r_cut' parameter of {} must be a float in \(0, inf\)\. Got 0\.0"),
    (dict(r_cut=-2.0), r"'r_cut' parameter of {} must be a float in \(0, inf\)\. Got -2\.0"),
    (dict(species_weights=[1.0]),
     r"'species_weights' parameter of {} must be None or a sequence of 2 finite floats"),
    (dict(species_weights=[1.0, float("nan")]), r"'species_weights' parameter of {}"),
    (dict(species_weights="ab"), r"'species_weights' parameter of {}.*Got 'ab'"),
])
def test_parameter_errors(cls, kw, match, small_cell):
    params = dict(species=SPECIES, r_cut=4.0, n_max=2, l_max=2)
    params.update(kw)
    desc = cls(**params)  # __init__ only stores
    with pytest.raises(InvalidParameterError, match=match.format(cls.__name__)):
        desc.compute(small_cell)
    if "n_max" in kw or "l_max" in kw:
        with pytest.raises(InvalidParameterError, match=match.format(cls.__name__)):
            desc.n_features
