"""ACSF: plain-numpy reference, closed forms, feature order, derivatives, parameter errors.

The generic contract (symmetries, supercell, smooth cutoff, ...) runs on the default ACSF in
tests/test_descriptor_contract.py; here the BP variant and non-default grids get their own
finite-difference checks.
"""

import itertools
import math

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.neighborlist import neighbor_list as ase_neighbor_list

from hybridpot import InvalidParameterError
from hybridpot.descriptors import ACSF

from conftest import skewed_two_element_cell
# the contract checks that do not duplicate the derivative tests below, re-run here on the BP
# variant and on a non-default ANI grid (the contract suite itself runs the default ACSF)
from test_descriptor_contract import (cell_atoms,  # noqa: F401 (fixture)
                                      test_clone_and_serialisation,
                                      test_partial_periodicity_and_isolated_cluster,
                                      test_rotation_translation_permutation_invariance,
                                      test_smooth_at_cutoff, test_supercell_same_per_atom_values)

SPECIES = ["Cu", "Ni"]


# ---------------------------------------------------------------------------------------------
# plain-numpy reference (explicit loops over pairs and triples, ASE neighbour list)
# ---------------------------------------------------------------------------------------------
def _fc(r, rc):
    return 0.5 * (math.cos(math.pi * r / rc) + 1.0) if r < rc else 0.0


def reference_acsf(atoms, species, r_cut, radial_etas, radial_shifts, angular, rca,
                   ang_params):
    """Slow reference in the documented feature order.

    ``ang_params`` is ``(etas, shifts, zetas, theta_shifts)`` for ANI and
    ``(etas, zetas, lambdas)`` for BP.
    """
    S = len(species)
    pairs = list(itertools.combinations_with_replacement(range(S), 2))
    if angular == "ani":
        etas, shifts, zetas, tshifts = ang_params
        grid = list(itertools.product(etas, shifts, zetas, tshifts))
    else:
        etas, zetas, lambdas = ang_params
        grid = list(itertools.product(etas, zetas, lambdas))
    rgrid = list(itertools.product(radial_etas, radial_shifts))
    G, A = len(rgrid), len(grid)
    n = len(atoms)
    X = np.zeros((n, S * G + len(pairs) * A))
    ii, jj, DD = ase_neighbor_list("ijD", atoms, r_cut)
    sidx = [species.index(s) for s in atoms.get_chemical_symbols()]
    for i in range(n):
        nb = [(sidx[j], D) for j, D in zip(jj[ii == i], DD[ii == i])]
        for b, D in nb:
            r = np.linalg.norm(D)
            for g, (eta, rs) in enumerate(rgrid):
                X[i, b * G + g] += math.exp(-eta * (r - rs) ** 2) * _fc(r, r_cut)
        ang = [(b, D, np.linalg.norm(D)) for b, D in nb if np.linalg.norm(D) < rca]
        for a1 in range(len(ang)):
            for a2 in range(len(ang)):
                if a1 == a2 or (angular == "ani" and a2 < a1):
                    continue
                (b, Dj, rj), (c, Dk, rk) = ang[a1], ang[a2]
                col = S * G + pairs.index(tuple(sorted((b, c)))) * A
                cos = float(np.dot(Dj, Dk) / (rj * rk))
                cos = min(1.0, max(-1.0, cos))
                for m, par in enumerate(grid):
                    if angular == "ani":
                        eta, rs, z, ts = par
                        th = math.acos(0.95 * cos)
                        v = (2 ** (1 - z) * (1 + math.cos(th - ts)) ** z
                             * math.exp(-eta * ((rj + rk) / 2 - rs) ** 2)
                             * _fc(rj, rca) * _fc(rk, rca))
                    else:
                        eta, z, lam = par
                        rjk = np.linalg.norm(Dk - Dj)
                        v = (2 ** (1 - z) * (1 + lam * cos) ** z
                             * math.exp(-eta * (rj ** 2 + rk ** 2 + rjk ** 2))
                             * _fc(rj, rca) * _fc(rk, rca) * _fc(rjk, rca))
                    X[i, col + m] += v
    return X


ANI_CUSTOM = dict(species=SPECIES, r_cut=4.2, radial_etas=[2.0, 9.0],
                  radial_shifts=[0.8, 2.0, 3.1], angular="ani", angular_cutoff=3.3,
                  ani_etas=[3.0, 7.0], ani_shifts=[1.5, 2.6], ani_zetas=[1.0, 2.5, 8.0],
                  ani_theta_shifts=[0.0, 1.2, np.pi])
BP_CUSTOM = dict(species=SPECIES, r_cut=4.2, radial_etas=[2.0], radial_shifts=[0.0, 2.5],
                 angular="bp", angular_cutoff=3.9, bp_etas=[0.01, 0.3], bp_zetas=[1.0, 2.5, 8.0],
                 bp_lambdas=[1, -1])
# radial-only mode (angular=None)
RADIAL = dict(species=SPECIES, r_cut=4.2, radial_etas=[0.87, 6.0],
              radial_shifts=[0.0, 1.2, 2.4, 3.6], angular=None)


@pytest.fixture(params=["bp", "ani-custom"])
def desc(request):
    """The ``desc`` fixture of the imported contract tests."""
    if request.param == "bp":
        return ACSF(species=SPECIES, r_cut=4.0, angular="bp")
    return ACSF(**ANI_CUSTOM)


def _ref_for(params):
    p = dict(params)
    if p["angular"] == "ani":
        ang = (p["ani_etas"], p["ani_shifts"], p["ani_zetas"], p["ani_theta_shifts"])
    else:
        ang = (p["bp_etas"], p["bp_zetas"], p["bp_lambdas"])
    return lambda at: reference_acsf(at, p["species"], p["r_cut"], p["radial_etas"],
                                     p["radial_shifts"], p["angular"], p["angular_cutoff"], ang)


@pytest.mark.parametrize("params", [ANI_CUSTOM, BP_CUSTOM], ids=["ani", "bp"])
def test_matches_numpy_reference_two_element_cell(params):
    atoms = skewed_two_element_cell(seed=3, rattle=0.12)
    X = ACSF(**params).compute(atoms)
    ref = _ref_for(params)(atoms)
    assert np.abs(ref[:, 2 * 6:]).max() > 1e-3  # angular terms are exercised
    np.testing.assert_allclose(X, ref, rtol=1e-11, atol=1e-13)


def test_matches_reference_one_atom_cell_with_self_images():
    """Primitive fcc cell (1 atom, cell << cutoff): every neighbour is an image of atom 0."""
    atoms = bulk("Cu", "fcc", a=3.61)
    params = dict(BP_CUSTOM, species=["Cu"])
    X = ACSF(**params).compute(atoms)
    np.testing.assert_allclose(X, _ref_for(params)(atoms), rtol=1e-11, atol=1e-13)
    params = dict(ANI_CUSTOM, species=["Cu"])
    X = ACSF(**params).compute(atoms)
    np.testing.assert_allclose(X, _ref_for(params)(atoms), rtol=1e-11, atol=1e-13)


def test_default_bp_matches_reference():
    desc = ACSF(species=SPECIES, r_cut=4.0, angular="bp")
    atoms = skewed_two_element_cell(seed=5, rattle=0.1)
    rc = 4.0
    rs = 0.9 * rc / 5.2 + np.arange(16) * (rc - 0.9 * rc / 5.2) / 16
    ref = reference_acsf(atoms, SPECIES, rc, [16 * (5.2 / rc) ** 2], rs, "bp", rc,
                         (np.array([0.25, 1.0, 4.0]) / rc ** 2, [1.0, 4.0, 16.0], [-1, 1]))
    np.testing.assert_allclose(desc.compute(atoms), ref, rtol=1e-11, atol=1e-13)


# ---------------------------------------------------------------------------------------------
# closed forms
# ---------------------------------------------------------------------------------------------
def test_dimer_radial_closed_form():
    R = 2.3
    desc = ACSF(species=SPECIES, r_cut=4.0, radial_etas=[0.5, 4.0], radial_shifts=[0.0, 2.0])
    X, dX = desc.compute(Atoms(["Cu", "Ni"], positions=[[0, 0, 0], [0, 0, R]]), gradients=True)
    fc = 0.5 * (np.cos(np.pi * R / 4.0) + 1)
    dfc = -0.5 * np.pi / 4.0 * np.sin(np.pi * R / 4.0)
    expect = [np.exp(-eta * (R - rs) ** 2) * fc for eta in (0.5, 4.0) for rs in (0.0, 2.0)]
    np.testing.assert_allclose(X[0, :4], 0.0, atol=0)            # no Cu neighbour of atom 0
    np.testing.assert_allclose(X[0, 4:8], expect, rtol=1e-13)    # Ni channel
    np.testing.assert_allclose(X[1, :4], expect, rtol=1e-13)     # atom 1 sees a Cu
    np.testing.assert_allclose(X[:, 8:], 0.0, atol=0)            # no angular term in a dimer
    slope = [np.exp(-eta * (R - rs) ** 2) * (dfc - 2 * eta * (R - rs) * fc)
             for eta in (0.5, 4.0) for rs in (0.0, 2.0)]
    p = np.flatnonzero(dX.pair_i == 0)[0]
    np.testing.assert_allclose(dX.d_drij[p, 2, 4:8], slope, rtol=1e-12)
    np.testing.assert_allclose(dX.d_drij[p, :2], 0.0, atol=1e-15)


def _triangle(symbols, L):
    """Equilateral triangle of side L in the xy plane."""
    return Atoms(symbols, positions=[[0, 0, 0], [L, 0, 0], [L / 2, L * np.sqrt(3) / 2, 0]])


def test_bp_equilateral_triangle_closed_form():
    L, rc = 2.4, 4.5
    zetas, lambdas, etas = [1.0, 3.0], [-1, 1], [0.05, 0.4]
    desc = ACSF(species=["Cu"], r_cut=rc, radial_etas=[1.0], radial_shifts=[0.0],
                angular="bp", bp_etas=etas, bp_zetas=zetas, bp_lambdas=lambdas)
    X = desc.compute(_triangle(["Cu"] * 3, L))
    fc = 0.5 * (np.cos(np.pi * L / rc) + 1)
    # j != k: both orders of the one neighbour pair, cos(theta) = 1/2
    expect = [2 * 2 ** (1 - z) * (1 + lam / 2) ** z * np.exp(-3 * eta * L ** 2) * fc ** 3
              for eta in etas for z in zetas for lam in lambdas]
    for i in range(3):
        np.testing.assert_allclose(X[i, 0], 2 * np.exp(-L ** 2) * fc, rtol=1e-13)
        np.testing.assert_allclose(X[i, 1:], expect, rtol=1e-12)


def test_bp_rjk_cutoff_switches_term_off():
    """A right isosceles triangle with R_jk = L sqrt(2) beyond the angular cutoff: G4 = 0."""
    L = 2.0
    at = Atoms(["Cu"] * 3, positions=[[0, 0, 0], [L, 0, 0], [0, L, 0]])
    X = ACSF(species=["Cu"], r_cut=3.0, angular="bp", angular_cutoff=2.5).compute(at)
    np.testing.assert_allclose(X[0, 16:], 0.0, atol=0)
    X = ACSF(species=["Cu"], r_cut=3.0, angular="bp", angular_cutoff=3.0).compute(at)
    assert np.all(X[0, 16:] > 0)


def test_ani_right_angle_closed_form_and_species_pair_channel():
    """Centre Cu at the right angle, neighbours Cu and Ni: only the (Cu, Ni) channel is set."""
    L, rc = 2.2, 5.0
    etas, shifts, zetas, ts = [2.0], [1.0, 2.5], [1.0, 32.0], [0.3, np.pi / 2, 2.0]
    desc = ACSF(species=SPECIES, r_cut=rc, radial_etas=[1.0], radial_shifts=[0.0],
                angular_cutoff=3.0, ani_etas=etas, ani_shifts=shifts, ani_zetas=zetas,
                ani_theta_shifts=ts)
    at = Atoms(["Cu", "Cu", "Ni"], positions=[[0, 0, 0], [L, 0, 0], [0, L, 0]])
    X = desc.compute(at)
    fc = 0.5 * (np.cos(np.pi * L / 3.0) + 1)
    th = np.arccos(0.95 * 0.0)   # = pi / 2
    expect = [2 ** (1 - z) * (1 + np.cos(th - t)) ** z * np.exp(-eta * (L - rs) ** 2) * fc ** 2
              for eta in etas for rs in shifts for z in zetas for t in ts]
    A = len(expect)
    ang = X[0, 2:]                                   # radial block: 2 species x 1
    np.testing.assert_allclose(ang[:A], 0.0, atol=0)               # (Cu, Cu)
    np.testing.assert_allclose(ang[A:2 * A], expect, rtol=1e-12)   # (Cu, Ni)
    np.testing.assert_allclose(ang[2 * A:], 0.0, atol=0)           # (Ni, Ni)
    assert len(desc.feature_labels()) == 2 + 3 * A


def test_feature_labels_give_the_column_order():
    """Every column of an ANI triangle equals the closed form built from its label."""
    L, rc, rca = 2.4, 5.0, 3.2
    desc = ACSF(species=SPECIES, r_cut=rc, radial_etas=[0.7, 3.0], radial_shifts=[0.5, 2.0, 2.6],
                angular_cutoff=rca, ani_etas=[1.0, 4.0], ani_shifts=[1.0, 2.5],
                ani_zetas=[2.0, 5.0], ani_theta_shifts=[0.4, 2.2])
    at = _triangle(["Cu", "Ni", "Ni"], L)       # centre 0 (Cu) sees two Ni
    X = desc.compute(at)[0]
    labels = desc.feature_labels()
    assert len(labels) == desc.n_features == X.shape[0]
    fcr = 0.5 * (np.cos(np.pi * L / rc) + 1)
    fca = 0.5 * (np.cos(np.pi * L / rca) + 1)
    th = np.arccos(0.95 * 0.5)
    n_radial = 0
    for col, lab in enumerate(labels):
        if lab[0] == "radial":
            _, b, eta, rs = lab
            want = 2 * np.exp(-eta * (L - rs) ** 2) * fcr if b == "Ni" else 0.0
            assert col == n_radial       # radial block first
            n_radial += 1
        else:
            _, pair, eta, rs, z, t = lab
            want = (2 ** (1 - z) * (1 + np.cos(th - t)) ** z * np.exp(-eta * (L - rs) ** 2)
                    * fca ** 2) if pair == ("Ni", "Ni") else 0.0
        np.testing.assert_allclose(X[col], want, rtol=1e-12, atol=1e-300, err_msg=str(lab))
    # documented order: species, eta, shift for radial; pairs (Cu,Cu), (Cu,Ni), (Ni,Ni) and
    # (eta, shift, zeta, theta_s) with theta_s fastest for angular
    assert [lab[1] for lab in labels[:12]] == ["Cu"] * 6 + ["Ni"] * 6
    assert [(lab[2], lab[3]) for lab in labels[:3]] == [(0.7, 0.5), (0.7, 2.0), (0.7, 2.6)]
    ang = labels[12:]
    assert [lab[1] for lab in ang[::16]] == [("Cu", "Cu"), ("Cu", "Ni"), ("Ni", "Ni")]
    assert [lab[2:] for lab in ang[:4]] == [(1.0, 1.0, 2.0, 0.4), (1.0, 1.0, 2.0, 2.2),
                                            (1.0, 1.0, 5.0, 0.4), (1.0, 1.0, 5.0, 2.2)]
    bp = ACSF(species=["Cu"], r_cut=4.0, angular="bp", bp_etas=[0.1, 0.2], bp_zetas=[1, 2])
    assert [lab[2:] for lab in bp.feature_labels()[16:]] == [
        (0.1, 1.0, -1), (0.1, 1.0, 1), (0.1, 2.0, -1), (0.1, 2.0, 1),
        (0.2, 1.0, -1), (0.2, 1.0, 1), (0.2, 2.0, -1), (0.2, 2.0, 1)]


# ---------------------------------------------------------------------------------------------
# sizes and defaults
# ---------------------------------------------------------------------------------------------
SYMBOLS = ["H", "C", "N", "O"]


@pytest.mark.parametrize("n_species", [1, 2, 3, 4])
def test_n_features_formula(n_species):
    sp = SYMBOLS[:n_species]
    S = n_species
    assert ACSF(species=sp, r_cut=5.2).n_features == 16 * S + 32 * S * (S + 1) // 2
    assert ACSF(species=sp, r_cut=5.2, angular="bp").n_features == 16 * S + 18 * S * (S + 1) // 2
    d = ACSF(species=sp, r_cut=5.0, radial_etas=[1, 2, 3], radial_shifts=[0, 1],
             ani_etas=[1, 2], ani_shifts=[1, 2, 3], ani_zetas=[1, 2], ani_theta_shifts=[0.5])
    assert d.n_features == 6 * S + 12 * S * (S + 1) // 2
    d = ACSF(species=sp, r_cut=5.0, angular="bp", bp_etas=[1], bp_zetas=[1, 2, 4, 8],
             bp_lambdas=[1])
    assert d.n_features == 16 * S + 4 * S * (S + 1) // 2


def test_ani1x_defaults_at_ani1x_cutoff():
    """At r_cut = 5.2 Å the defaults are ANI-1x's: 384 features for H, C, N, O."""
    d = ACSF(species=SYMBOLS, r_cut=5.2)
    assert d.n_features == 384
    labels = d.feature_labels()
    np.testing.assert_allclose([lab[3] for lab in labels[:16]], 0.9 + 0.26875 * np.arange(16))
    assert {lab[2] for lab in labels[:64]} == {16.0}
    ang = labels[64:96]
    np.testing.assert_allclose(sorted({lab[3] for lab in ang}), [0.9, 1.55, 2.2, 2.85])
    np.testing.assert_allclose(sorted({lab[5] for lab in ang}), (2 * np.arange(8) + 1) * np.pi / 16)
    np.testing.assert_allclose([lab[2] for lab in ang], 8.0, rtol=1e-14)
    assert {lab[4] for lab in ang} == {32.0}
    assert d._angular_cutoff == pytest.approx(3.5)


# ---------------------------------------------------------------------------------------------
# derivatives of the variants not run through the contract suite
# ---------------------------------------------------------------------------------------------
def _fd_dense(desc, atoms, h=1e-5):
    n = len(atoms)
    out = np.zeros((n, desc.n_features, n, 3))
    for k in range(n):
        for a in range(3):
            p, m = atoms.copy(), atoms.copy()
            p.positions[k, a] += h
            m.positions[k, a] -= h
            out[:, :, k, a] = (desc.compute(p) - desc.compute(m)) / (2 * h)
    return out


def _strained(atoms, eps):
    at = atoms.copy()
    at.set_cell(atoms.cell.array @ (np.eye(3) + eps).T, scale_atoms=False)
    at.positions = atoms.positions @ (np.eye(3) + eps).T
    return at


@pytest.mark.parametrize("params", [ANI_CUSTOM, BP_CUSTOM,
                                    dict(species=SPECIES, r_cut=4.0, angular="bp"), RADIAL],
                         ids=["ani", "bp", "bp-default", "radial-only"])
def test_jacobian_strain_and_adjoint_vs_finite_differences(params, rng):
    desc = ACSF(**params)
    atoms = skewed_two_element_cell(seed=7, rattle=0.12)
    X, dX = desc.compute(atoms, gradients=True)
    fd = _fd_dense(desc, atoms)
    scale = max(np.abs(fd).max(), 1.0)
    np.testing.assert_allclose(dX.dense(), fd, atol=1e-6 * scale, rtol=1e-5)
    h = 1e-5
    fd_s = np.zeros((len(atoms), 3, 3, desc.n_features))
    for a in range(3):
        for b in range(3):
            e = np.zeros((3, 3))
            e[a, b] = h
            fd_s[:, a, b] = (desc.compute(_strained(atoms, e))
                             - desc.compute(_strained(atoms, -e))) / (2 * h)
    np.testing.assert_allclose(dX.strain, fd_s, atol=1e-6 * max(np.abs(fd_s).max(), 1), rtol=1e-5)
    w = rng.normal(size=X.shape)
    dE_dr, dE_deps = desc.backward(atoms, w)
    ref_r, ref_eps = dX.vjp(w)
    np.testing.assert_allclose(dE_dr, ref_r, rtol=1e-10, atol=1e-11 * np.abs(ref_r).max())
    np.testing.assert_allclose(dE_deps, ref_eps, rtol=1e-10, atol=1e-11 * np.abs(ref_eps).max())
    np.testing.assert_allclose(dE_dr, np.einsum("if,ifka->ka", w, fd),
                               rtol=1e-5, atol=1e-6 * np.abs(dE_dr).max())


@pytest.mark.parametrize("angular", ["ani", "bp"])
def test_collinear_triple_has_finite_matching_gradient(angular):
    """theta = 0 / pi: ANI's arccos(0.95 cos) keeps the derivative finite; BP needs no arccos."""
    at = Atoms(["Cu"] * 3, positions=[[0, 0, 0], [2.0, 0, 0], [-2.1, 0, 0]])
    at.positions[2, 1] += 1e-9   # within round-off of collinear
    desc = ACSF(species=["Cu"], r_cut=4.5, angular=angular, angular_cutoff=4.5,
                ani_zetas=[1.0, 4.0], bp_zetas=[1.0, 4.0])
    X, dX = desc.compute(at, gradients=True)
    assert np.all(np.isfinite(X)) and np.all(np.isfinite(dX.d_drij))
    fd = _fd_dense(desc, at, h=1e-6)
    np.testing.assert_allclose(dX.dense(), fd, atol=1e-6 * max(np.abs(fd).max(), 1.0),
                               rtol=1e-5)


def test_backward_on_bulk_matches_jacobian_contraction(rng):
    """Many neighbours per centre (fcc 2x2x2, r_cut 5 Å) for both angular kinds."""
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True) * (2, 2, 2)
    atoms.rattle(stdev=0.05, seed=0)
    for angular in ("ani", "bp"):
        desc = ACSF(species=["Cu"], r_cut=5.0, angular=angular)
        X, dX = desc.compute(atoms, gradients=True)
        w = rng.normal(size=X.shape)
        dE_dr, dE_deps = desc.backward(atoms, w)
        ref_r, ref_eps = dX.vjp(w)
        np.testing.assert_allclose(dE_dr, ref_r, rtol=1e-9, atol=1e-10 * np.abs(ref_r).max())
        np.testing.assert_allclose(dE_deps, ref_eps, rtol=1e-9,
                                   atol=1e-10 * np.abs(ref_eps).max())


# ---------------------------------------------------------------------------------------------
# parameter errors
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, match", [
    (dict(angular="soap"), r"'angular' parameter of ACSF must be one of "
                           r"\{'ani', 'bp', 'g5', None\}. Got 'soap'"),
    (dict(angular_cutoff=5.0), r"'angular_cutoff' parameter of ACSF must be a float in "
                               r"\(0, 4\]. Got 5.0"),
    (dict(angular_cutoff=0.0), r"'angular_cutoff' .* \(0, 4\]. Got 0.0"),
    (dict(radial_etas=[1.0, -2.0]), r"'radial_etas' parameter of ACSF must be a non-empty 1-D "
                                    r"sequence of floats in \(0, inf\). Got \[1.0, -2.0\]"),
    (dict(radial_etas=[]), r"'radial_etas' .* non-empty .* Got \[\]"),
    (dict(radial_etas=2.0), r"'radial_etas' .* 1-D sequence .* Got 2.0"),
    (dict(radial_etas=[np.nan]), r"'radial_etas' .* Got \[nan\]"),
    (dict(radial_shifts=[0.0, 4.5]), r"'radial_shifts' .* floats in \[0, 4\]. Got \[0.0, 4.5\]"),
    (dict(radial_shifts=["a"]), r"'radial_shifts' .* Got \['a'\]"),
    (dict(bp_etas=[0.0]), r"'bp_etas' .* floats in \(0, inf\). Got \[0.0\]"),
    (dict(bp_zetas=[0.5, 2]), r"'bp_zetas' .* floats in \[1, inf\). Got \[0.5, 2\]"),
    (dict(bp_lambdas=[1, 0]), r"'bp_lambdas' .* values in \{-1.0, 1.0\}. Got \[1, 0\]"),
    (dict(bp_lambdas=[]), r"'bp_lambdas' .* Got \[\]"),
    (dict(ani_etas=[-1]), r"'ani_etas' .* \(0, inf\). Got \[-1\]"),
    (dict(ani_shifts=[3.0]), r"'ani_shifts' .* floats in \[0, 2.69231\]. Got \[3.0\]"),
    (dict(ani_zetas=[0.0]), r"'ani_zetas' .* \[1, inf\). Got \[0.0\]"),
    (dict(ani_theta_shifts=[4.0]), r"'ani_theta_shifts' .* \[0, 3.14159\]. Got \[4.0\]"),
    (dict(ani_theta_shifts=[[0.1]]), r"'ani_theta_shifts' .* 1-D .* Got \[\[0.1\]\]"),
    (dict(r_cut=-1.0), r"'r_cut' parameter of ACSF must be a float in \(0, inf\). Got -1.0"),
    (dict(species="Cu"), r"'species' parameter of ACSF must be a non-empty list"),
])
def test_parameter_errors(kwargs, match):
    params = dict(species=SPECIES, r_cut=4.0)
    params.update(kwargs)
    desc = ACSF(**params)   # __init__ only stores
    with pytest.raises(InvalidParameterError, match=match):
        desc.compute(skewed_two_element_cell())


def test_init_only_stores_and_is_keyword_only():
    with pytest.raises(TypeError):
        ACSF(SPECIES, 4.0)  # noqa
    d = ACSF(species=SPECIES, r_cut=4.0, radial_etas=[-1.0])
    assert d.get_params()["radial_etas"] == [-1.0]


def test_bp_matches_dscribe_up_to_pair_counting():
    """Independent implementation: DScribe's G2 equal; its G4 sums over j < k, ours j != k."""
    pytest.importorskip("dscribe")
    from dscribe.descriptors import ACSF as DScribeACSF

    atoms = skewed_two_element_cell(seed=3, rattle=0.12)
    species = ["Ni", "Cu"]          # DScribe orders species by atomic number
    etas, shifts = [2.0, 0.5], [0.0, 2.5]
    g4 = dict(bp_etas=[0.01, 0.3], bp_zetas=[1.0, 2.5], bp_lambdas=[-1, 1])
    ours = ACSF(species=species, r_cut=4.2, radial_etas=etas, radial_shifts=shifts,
                angular="bp", **g4).compute(atoms)
    ref = DScribeACSF(r_cut=4.2, species=species, periodic=True,
                      g2_params=[[e, s] for e in etas for s in shifts],
                      g4_params=[[e, z, lam] for e in g4["bp_etas"] for z in g4["bp_zetas"]
                                 for lam in g4["bp_lambdas"]]).create(atoms)
    # DScribe: per species [G1, 4 x G2], then per species pair 8 x G4
    radial = ref[:, [1, 2, 3, 4, 6, 7, 8, 9]]
    np.testing.assert_allclose(ours[:, :8], radial, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ours[:, 8:], 2.0 * ref[:, 10:], rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# radial-only mode (angular=None); FD / invariance / adjoint run in the contract suite too
# ---------------------------------------------------------------------------------------------


def test_radial_only_is_the_radial_block_and_matches_reference():
    atoms = skewed_two_element_cell(seed=3, rattle=0.12)
    desc = ACSF(**RADIAL)
    X = desc.compute(atoms)
    assert desc.n_features == X.shape[1] == 2 * 8
    assert [lab[0] for lab in desc.feature_labels()] == ["radial"] * 16
    # identical to the leading (radial) columns of the same grid with an angular block
    full = ACSF(**dict(RADIAL, angular="bp", bp_etas=[0.1], bp_zetas=[2.0])).compute(atoms)
    np.testing.assert_array_equal(X, full[:, :16])
    # independent plain-numpy reference (radial part only; an angular cutoff that keeps no
    # neighbour leaves the angular columns empty)
    ref = reference_acsf(atoms, SPECIES, 4.2, RADIAL["radial_etas"], RADIAL["radial_shifts"],
                         "bp", 1e-9, ([1.0], [1.0], [1]))
    assert np.abs(ref[:, 16:]).max() == 0.0
    np.testing.assert_allclose(X, ref[:, :16], rtol=1e-11, atol=1e-13)
    assert np.abs(X).min(axis=0).max() > 1e-3   # no all-zero column


def test_radial_only_dimer_closed_form():
    r, rc = 2.3, 4.0
    at = Atoms(["Cu", "Ni"], positions=[[0, 0, 0], [r, 0, 0]])
    desc = ACSF(species=SPECIES, r_cut=rc, radial_etas=[0.5], radial_shifts=[0.0, 2.0],
                angular=None)
    fc = 0.5 * (np.cos(np.pi * r / rc) + 1)
    g = np.exp(-0.5 * (r - np.array([0.0, 2.0])) ** 2) * fc
    np.testing.assert_allclose(desc.compute(at), [[0, 0, *g], [*g, 0, 0]], rtol=1e-13)


def test_radial_only_serialisation_round_trip():
    import json

    from hybridpot.descriptors import descriptor_from_dict

    desc = ACSF(**RADIAL)
    d = json.loads(json.dumps(desc.to_dict()))
    assert d["params"]["angular"] is None
    back = descriptor_from_dict(d)
    assert back.angular is None and back.n_features == desc.n_features
    atoms = skewed_two_element_cell(seed=2, rattle=0.1)
    np.testing.assert_array_equal(back.compute(atoms), desc.compute(atoms))


@pytest.mark.parametrize("kwargs, match", [
    (dict(angular_cutoff=0.5), r"'angular_cutoff' parameter of ACSF must be None when "
                               r"angular=None \(radial G2 features only, no angular block\). "
                               r"Got 0.5 instead"),
    (dict(bp_etas=[0.1]), r"'bp_etas' parameter of ACSF must be None when angular=None .* "
                          r"Got \[0.1\]"),
    (dict(bp_zetas=[1.0]), r"'bp_zetas' .* must be None when angular=None"),
    (dict(ani_etas=[1.0]), r"'ani_etas' .* must be None when angular=None"),
    (dict(ani_shifts=[1.0]), r"'ani_shifts' .* must be None when angular=None"),
    (dict(ani_zetas=[1.0]), r"'ani_zetas' .* must be None when angular=None"),
    (dict(ani_theta_shifts=[1.0]), r"'ani_theta_shifts' .* must be None when angular=None"),
    (dict(bp_lambdas=[1]), r"'bp_lambdas' parameter of ACSF must be left at its default "
                           r"\(-1, 1\) or None when angular=None .* Got \[1\] instead"),
    (dict(radial_etas=[0.0]), r"'radial_etas' .* floats in \(0, inf\). Got \[0.0\]"),
    (dict(angular="None"), r"'angular' parameter of ACSF must be one of "
                           r"\{'ani', 'bp', 'g5', None\}. Got 'None'"),
])
def test_radial_only_parameter_errors(kwargs, match):
    params = dict(species=SPECIES, r_cut=4.0, angular=None)
    params.update(kwargs)
    desc = ACSF(**params)
    with pytest.raises(InvalidParameterError, match=match):
        desc.compute(skewed_two_element_cell())


def test_radial_only_accepts_default_or_none_lambdas():
    for lam in [(-1, 1), [-1.0, 1.0], np.array([-1, 1]), None]:
        assert ACSF(species=["Cu"], r_cut=4.0, angular=None, bp_lambdas=lam).n_features == 16
