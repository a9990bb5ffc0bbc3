"""SNAPBispectrum: LAMMPS ML-SNAP reference outputs, an independent plain-numpy reference
(SU(2) symmetric-power representation and sympy Clebsch-Gordan), flags, file readers, errors.

The contract suite (tests/test_descriptor_contract.py) covers finite-difference Jacobians,
strain, adjoint, symmetries and the cutoff for the default configuration; here the derivative
checks are repeated for the non-default flags (quadratic, bzero, rmin0, per-element radii and
weights).
"""

import itertools
import math

import numpy as np
import pytest
from ase import Atoms

from hybridpot import InvalidParameterError, ModelFormatError
from hybridpot.descriptors import SNAPBispectrum
from hybridpot.descriptors._snap import read_snapcoeff, read_snapparam, snap_tables

from conftest import skewed_two_element_cell

ELEMENTS = ["Ni", "Cu", "Mo", "Si"]


# -- plain-numpy reference --------------------------------------------------------------------
def _su2_power(M, j):
    """Spin-j/2 representation of the 2x2 matrix M: the action of M^{(x)j} on normalised
    symmetric states |m> (m = number of "1" factors), rows and columns in that basis."""
    if j == 0:
        return np.ones((1, 1), dtype=complex)
    T = M
    for _ in range(j - 1):
        T = np.kron(T, M)
    states = np.zeros((2 ** j, j + 1))
    for idx, bits in enumerate(itertools.product((0, 1), repeat=j)):
        states[idx, sum(bits)] = 1.0
    states /= np.linalg.norm(states, axis=0)
    return states.T @ T @ states


def _cg_sympy(j1, j2, j):
    """C[m1, m2, m] = <j1/2 (m1 - j1/2), j2/2 (m2 - j2/2) | j/2 (m - j/2)> from sympy."""
    from sympy import Rational
    from sympy.physics.quantum.cg import CG

    C = np.zeros((j1 + 1, j2 + 1, j + 1))
    for m1 in range(j1 + 1):
        for m2 in range(j2 + 1):
            m = m1 + m2 - (j1 + j2 - j) // 2
            if 0 <= m <= j:
                C[m1, m2, m] = float(CG(Rational(j1, 2), Rational(2 * m1 - j1, 2),
                                        Rational(j2, 2), Rational(2 * m2 - j2, 2),
                                        Rational(j, 2), Rational(2 * m - j, 2)).doit())
    return C


def reference_bispectrum(atoms, species, twojmax, rcutfac, rfac0=0.99363, rmin0=0.0,
                         radelem=None, wj=None, bzero=False):
    """Slow reference: dense U matrices, full (unsymmetrised) sums, sympy CG, ASE neighbours."""
    from ase.neighborlist import neighbor_list

    rad = np.full(len(species), 0.5) if radelem is None else np.asarray(radelem, float)
    w = np.ones(len(species)) if wj is None else np.asarray(wj, float)
    sidx = np.array([species.index(s) for s in atoms.get_chemical_symbols()])
    i, jn, D = neighbor_list("ijD", atoms, rcutfac * 2 * rad.max())
    Utot = [[np.eye(j + 1, dtype=complex) for j in range(twojmax + 1)]
            for _ in range(len(atoms))]
    for p in range(len(i)):
        rc = rcutfac * (rad[sidx[i[p]]] + rad[sidx[jn[p]]])
        r = np.linalg.norm(D[p])
        if r >= rc:
            continue
        x, y, z = D[p]
        z0 = r / np.tan(rfac0 * np.pi * (r - rmin0) / (rc - rmin0))
        r0 = np.hypot(r, z0)
        a = (z0 - 1j * z) / r0
        b = (y - 1j * x) / r0
        M = np.array([[np.conj(a), -np.conj(b)], [b, a]])  # rows mb, columns ma
        fc = 0.5 * (np.cos(np.pi * (r - rmin0) / (rc - rmin0)) + 1.0) if r > rmin0 else 1.0
        for j in range(twojmax + 1):
            Utot[i[p]][j] += fc * w[sidx[jn[p]]] * _su2_power(M, j)
    idxb = snap_tables(twojmax)["idxb"]
    cgs = {tuple(t): _cg_sympy(*t) for t in idxb}
    out = np.zeros((len(atoms), len(idxb)))
    for n in range(len(atoms)):
        U = Utot[n]
        for k, (j1, j2, j) in enumerate(idxb):
            C = cgs[(j1, j2, j)]
            Z = np.einsum("pqb,rsa,pr,qs->ba", C, C, U[j1], U[j2])
            out[n, k] = np.real(np.sum(np.conj(U[j]) * Z)) - (j + 1 if bzero else 0.0)
    return out


def test_matches_plain_numpy_reference_two_elements():
    at = skewed_two_element_cell(seed=3, rattle=0.1)
    kw = dict(twojmax=4, rcutfac=2.3, rfac0=0.97, rmin0=0.2, radelem=[0.5, 0.6], wj=[1.0, 0.7])
    d = SNAPBispectrum(species=["Cu", "Ni"], bzeroflag=True, **kw)
    ref = reference_bispectrum(at, ["Cu", "Ni"], bzero=True, **kw)
    np.testing.assert_allclose(d.compute(at), ref, rtol=1e-10, atol=1e-10)


def test_component_order_and_count_as_lammps():
    # LAMMPS: 55 components for 2J=8, 30 for 2J=6, order j1, j2 <= j1, j >= j1 step 2
    assert SNAPBispectrum(species=["Ni"], twojmax=8, rcutfac=4.0).n_features == 55
    assert SNAPBispectrum(species=["Ni"], twojmax=6, rcutfac=4.0).n_features == 30
    idxb = snap_tables(2)["idxb"]
    expect = [(j1, j2, j) for j1 in range(3) for j2 in range(j1 + 1)
              for j in range(j1 - j2, min(2, j1 + j2) + 1, 2) if j >= j1]
    assert [tuple(t) for t in idxb] == expect
    q = SNAPBispectrum(species=["Ni"], twojmax=6, rcutfac=4.0, quadraticflag=True)
    assert q.n_features == 30 + 30 * 31 // 2


def test_clebsch_gordan_matches_sympy():
    t = snap_tables(4)
    for j1, j2, j in [(1, 1, 2), (2, 1, 1), (3, 2, 3), (4, 4, 4), (4, 2, 2)]:
        start = t["idxcg_block"][j1, j2, j]
        ours = t["cglist"][start:start + (j1 + 1) * (j2 + 1)].reshape(j1 + 1, j2 + 1)
        ref = _cg_sympy(j1, j2, j)
        dense = np.zeros_like(ours)
        for m1 in range(j1 + 1):
            for m2 in range(j2 + 1):
                m = m1 + m2 - (j1 + j2 - j) // 2
                if 0 <= m <= j:
                    dense[m1, m2] = ref[m1, m2, m]
        np.testing.assert_allclose(ours, dense, atol=1e-14)


def test_isolated_atom_and_bzero():
    one = Atoms(["Ni"], positions=[[0, 0, 0]])
    d = SNAPBispectrum(species=["Ni"], twojmax=6, rcutfac=4.0)
    j = snap_tables(6)["idxb"][:, 2]
    # U = identity: B_{j1 j2 j} = (j + 1) (self contribution only)
    np.testing.assert_allclose(d.compute(one)[0], j + 1.0, rtol=1e-13)
    d0 = SNAPBispectrum(species=["Ni"], twojmax=6, rcutfac=4.0, bzeroflag=True)
    np.testing.assert_allclose(d0.compute(one)[0], 0.0, atol=1e-12)


def test_quadratic_features_layout():
    at = skewed_two_element_cell(seed=2)
    lin = SNAPBispectrum(species=["Cu", "Ni"], twojmax=2, rcutfac=2.2)
    q = SNAPBispectrum(species=["Cu", "Ni"], twojmax=2, rcutfac=2.2, quadraticflag=True)
    B = lin.compute(at)
    Xq = q.compute(at)
    K = B.shape[1]
    np.testing.assert_allclose(Xq[:, :K], B, rtol=1e-14)
    col = K
    for k in range(K):
        np.testing.assert_allclose(Xq[:, col], 0.5 * B[:, k] ** 2, rtol=1e-13)
        col += 1
        for m in range(k + 1, K):
            np.testing.assert_allclose(Xq[:, col], B[:, k] * B[:, m], rtol=1e-13)
            col += 1
    assert col == Xq.shape[1]


def _fd_check(desc, atoms, rng, h=1e-5):
    X, dX = desc.compute(atoms, gradients=True)
    dense = dX.dense()
    w = rng.normal(size=X.shape)
    dE_dr, dE_deps = desc.backward(atoms, w)
    ref_r, ref_eps = dX.vjp(w)
    np.testing.assert_allclose(dE_dr, ref_r, rtol=1e-9, atol=1e-10 * np.abs(ref_r).max())
    np.testing.assert_allclose(dE_deps, ref_eps, rtol=1e-9, atol=1e-10 * np.abs(ref_eps).max())
    for k in range(len(atoms)):
        for a in range(3):
            p, m = atoms.copy(), atoms.copy()
            p.positions[k, a] += h
            m.positions[k, a] -= h
            fd = (desc.compute(p) - desc.compute(m)) / (2 * h)
            scale = max(np.abs(fd).max(), 1.0)
            np.testing.assert_allclose(dense[:, :, k, a], fd, atol=2e-6 * scale, rtol=1e-5)


@pytest.mark.parametrize("kw", [
    dict(quadraticflag=True),
    dict(bzeroflag=True, rmin0=0.3, rfac0=0.9),
    dict(radelem=[0.45, 0.55], wj=[1.0, 0.6]),
], ids=["quadratic", "bzero-rmin0", "radelem-wj"])
def test_flags_jacobian_and_adjoint_finite_differences(kw, rng):
    at = skewed_two_element_cell(seed=5, rattle=0.12)
    d = SNAPBispectrum(species=["Cu", "Ni"], twojmax=3, rcutfac=3.2, **kw)
    _fd_check(d, at, rng)


def test_per_element_cutoff_excludes_pairs_beyond_it():
    # Cu-Cu pair cutoff 2*0.4*5 = 4 Å, Cu-Ni 4.5 Å: a Cu-Cu dimer at 4.2 Å does not interact
    d = SNAPBispectrum(species=["Cu", "Ni"], twojmax=2, rcutfac=5.0, radelem=[0.4, 0.5])
    assert d.r_cut == pytest.approx(5.0)
    iso = d.compute(Atoms(["Cu"], positions=[[0, 0, 0]]))
    cucu = d.compute(Atoms(["Cu", "Cu"], positions=[[0, 0, 0], [4.2, 0, 0]]))
    cuni = d.compute(Atoms(["Cu", "Ni"], positions=[[0, 0, 0], [4.2, 0, 0]]))
    np.testing.assert_allclose(cucu[0], iso[0], atol=1e-14)
    assert np.abs(cuni[0] - iso[0]).max() > 1e-6


# -- LAMMPS reference outputs (mlearn) ---------------------------------------------------------
def _model(mlearn_dir, el):
    import ase.io

    base = mlearn_dir / "snap_models" / el / "snap" / "SNAPotential"
    desc = SNAPBispectrum.from_lammps(f"{base}.snapparam", species=[el],
                                      snapcoeff=f"{base}.snapcoeff")
    coef = read_snapcoeff(f"{base}.snapcoeff")[el][2]
    ref = np.load(mlearn_dir / "lammps_reference" / f"{el}_snap_test_reference.npz")
    test = ase.io.read(mlearn_dir / "extxyz" / f"{el}_test.xyz", ":")
    return desc, coef, ref, test


def _energy_forces(desc, coef, atoms):
    """Linear SNAP: E = sum_i (beta0 + beta . B_i), forces from the adjoint."""
    X = desc.compute(atoms)
    E = len(atoms) * coef[0] + float(np.sum(X @ coef[1:]))
    dE_dr, _ = desc.backward(atoms, np.tile(coef[1:], (len(atoms), 1)))
    return E, -dE_dr


@pytest.mark.parametrize("el", ELEMENTS)
def test_bispectrum_matches_lammps_compute_sna_atom(mlearn_dir, el):
    desc, _, ref, test = _model(mlearn_dir, el)
    B = desc.compute(test[0])
    Bref = ref["bispectrum_0"]
    assert B.shape == Bref.shape
    np.testing.assert_allclose(B, Bref, rtol=1e-8, atol=1e-8 * np.abs(Bref).max())


def _check_all_configurations(mlearn_dir, el):
    desc, coef, ref, test = _model(mlearn_dir, el)
    assert len(test) == len(ref["energy"])
    for k, at in enumerate(test):
        E, F = _energy_forces(desc, coef, at)
        assert abs(E - ref["energy"][k]) < 1e-6
        np.testing.assert_allclose(F, ref[f"forces_{k}"], rtol=0, atol=1e-6)


@pytest.mark.parametrize("el", ELEMENTS)
def test_linear_snap_energies_forces_match_lammps(mlearn_dir, el):
    """Every test configuration: energy to 1e-6 eV, forces to 1e-6 eV/Å (about 2 s in all)."""
    _check_all_configurations(mlearn_dir, el)


# -- files and parameters ----------------------------------------------------------------------
def test_from_lammps_reads_parameters(tmp_path):
    p = tmp_path / "x.snapparam"
    p.write_text("# comment\nrcutfac 4.2\ntwojmax 6\n\nrfac0 0.98\nrmin0 0.1\n"
                 "quadraticflag 1\nswitchflag 1\nwselfallflag 0\n")
    c = tmp_path / "x.snapcoeff"
    c.write_text("# c\n2 31\n" + "Ni 0.5 1.0\n" + "0.0\n" * 31 + "Al 0.6 0.8\n" + "0.0\n" * 31)
    d = SNAPBispectrum.from_lammps(p, species=["Al", "Ni"], snapcoeff=c)
    assert (d.twojmax, d.rcutfac, d.rfac0, d.rmin0) == (6, 4.2, 0.98, 0.1)
    assert d.quadraticflag and d.switchflag
    assert d.bzeroflag  # LAMMPS default when the keyword is absent
    assert list(d.radelem) == [0.6, 0.5] and list(d.wj) == [0.8, 1.0]
    assert d.r_cut == pytest.approx(4.2 * 1.2)
    d2 = SNAPBispectrum.from_lammps(p, species=["Ni"])
    assert d2.radelem is None and d2.wj is None


@pytest.mark.parametrize("text, match", [
    ("rcutfac 4\ntwojmax 6\nchemflag yes\n", "the value of 'chemflag' must be an integer"),
    ("rcutfac 4\ntwojmax 6\nbnormflag one\n", "the value of 'bnormflag' must be an integer"),
    ("twojmax 6\n", "rcutfac"),
    ("rcutfac 4\ntwojmax six\n", "twojmax"),
    ("rcutfac 4\ntwojmax 6\nfoo 1\n", "foo"),
])
def test_snapparam_errors(tmp_path, text, match):
    p = tmp_path / "bad.snapparam"
    p.write_text(text)
    with pytest.raises(ModelFormatError, match=match):
        read_snapparam(p)


def test_snapcoeff_errors(tmp_path):
    p = tmp_path / "ok.snapparam"
    p.write_text("rcutfac 4\ntwojmax 2\n")
    c = tmp_path / "bad.snapcoeff"
    c.write_text("1 6\nNi 0.5 1\n1\n2\n")
    with pytest.raises(ModelFormatError, match="element block 1"):
        read_snapcoeff(c)
    c.write_text("1 6\nNi 0.5 1\n" + "0\n" * 6)
    with pytest.raises(ModelFormatError, match="'Cu'"):
        SNAPBispectrum.from_lammps(p, species=["Cu"], snapcoeff=c)
    with pytest.raises(ModelFormatError, match="does not exist"):
        read_snapparam(tmp_path / "missing.snapparam")


@pytest.mark.parametrize("kw, match", [
    (dict(twojmax=-1), "'twojmax' parameter of SNAPBispectrum must be an int"),
    (dict(twojmax=2.5), "'twojmax'"),
    (dict(rcutfac=0.0), "'rcutfac' parameter of SNAPBispectrum must be a float in \\(0, inf\\)"),
    (dict(rfac0=1.5), "'rfac0'"),
    (dict(rmin0=-0.1), "'rmin0'"),
    (dict(rmin0=4.0), "'rmin0' parameter of SNAPBispectrum must be smaller"),
    (dict(radelem=[0.5]), "'radelem' parameter of SNAPBispectrum must be None or a sequence of 2"),
    (dict(radelem=[0.5, -0.1]), "'radelem\\[1\\]'"),
    (dict(wj=[1.0, float("nan")]), "'wj\\[1\\]'"),
    (dict(switchflag="yes"), "'switchflag' parameter of SNAPBispectrum must be a bool"),
    (dict(quadraticflag=2), "'quadraticflag'"),
    (dict(species="Cu"), "'species'"),
])
def test_bad_parameters_rejected(kw, match):
    params = dict(species=["Cu", "Ni"], twojmax=2, rcutfac=2.0)
    params.update(kw)
    d = SNAPBispectrum(**params)
    with pytest.raises(InvalidParameterError, match=match):
        d.compute(skewed_two_element_cell())


def test_switchflag_off_is_lammps_step_cutoff():
    d = SNAPBispectrum(species=["Cu"], twojmax=2, rcutfac=2.0, switchflag=False)
    inside = d.compute(Atoms(["Cu", "Cu"], positions=[[0, 0, 0], [1.99, 0, 0]]))
    beyond = d.compute(Atoms(["Cu", "Cu"], positions=[[0, 0, 0], [2.01, 0, 0]]))
    # no switching: the neighbour contributes with full weight up to the cutoff
    assert np.abs(inside[0] - beyond[0]).max() > 0.1
    assert math.isfinite(inside.sum())


def test_vectorised_kernels_equal_scalar_lammps_kernels(rng):
    """The lane kernels (production) against the scalar LAMMPS-literal kernels, on a
    two-element slab with vacuum (varying neighbour counts, partly empty lane blocks)."""
    from hybridpot._validation import species_indices
    from hybridpot.descriptors import _snap_kernels as K
    from hybridpot.neighbors import neighbor_list

    at = skewed_two_element_cell(seed=4, rattle=0.15) * (3, 3, 2)
    del at[5]   # 71 atoms: values in two blocks of 36 lanes, the adjoint in one of 72
    at.pbc = (True, True, False)
    at.center(vacuum=3.0, axis=2)
    assert len(at) % K._lane_count(len(at), K.LANES, 4) != 0
    assert len(at) % K._lane_count(len(at), K.BACKWARD_LANES, 8) != 0
    d = SNAPBispectrum(species=["Cu", "Ni"], twojmax=6, rcutfac=3.4, radelem=[0.5, 0.42],
                       wj=[1.0, 0.8], bzeroflag=True)
    d._validate()
    nl = neighbor_list(at, d.r_cut)
    counts = np.diff(nl.offsets)
    assert counts.min() < counts.max()
    t = d._tables
    args = d._pair_arrays(nl, species_indices(at, d._species))
    cv = (d._rfac0, d._rmin0, d._switch, d._wself, d._bzero_arr, d._J, t["idxu_block"],
          t["rootpq"], t["cglist"], t["idxcg_block"], t["idxz"], t["idxz_block"], t["idxb"])
    B = K._bispectrum_grad(*args, *cv)[0]
    np.testing.assert_allclose(K._bispectrum_lanes(*args, *cv), B, rtol=1e-12,
                               atol=1e-12 * np.abs(B).max())
    beta = rng.normal(size=B.shape)
    cb = (d._rfac0, d._rmin0, d._switch, d._wself, d._J, t["idxu_block"], t["rootpq"],
          t["cglist"], t["idxcg_block"], t["idxz"], t["z_jjb"], t["z_fac"], beta)
    g = K._backward(*args, *cb)
    np.testing.assert_allclose(K._backward_lanes(*args, *cb), g, rtol=1e-11,
                               atol=1e-12 * np.abs(g).max())
