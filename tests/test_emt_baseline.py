"""Tests of hybridpot.baselines.EMT: equality with ASE's EMT, derivatives, kernels, contract."""

import json

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.calculators.emt import EMT as AseEMT
from ase.calculators.fd import calculate_numerical_forces, calculate_numerical_stress
from ase.calculators.lj import LennardJones as AseLJ
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import read
from conftest import emt_dataset, skewed_two_element_cell

from hybridpot import (HybridPotential, InvalidParameterError, InvalidStructureError,
                       UnknownSpeciesError)
from hybridpot.baselines import BASELINES, EMT, ASEBaseline, baseline_from_dict
from hybridpot.baselines import _emt
from hybridpot.descriptors import PowerSpectrum
from hybridpot.neighbors import neighbor_list
from hybridpot.regression import BayesianLinearRegressor

SUPPORTED = ("Ag", "Al", "Au", "C", "Cu", "H", "N", "Ni", "O", "Pd", "Pt")


# ------------------------------------------------------------------------------------------
# structures
# ------------------------------------------------------------------------------------------
def small_cell(symbols=("Cu", "Ni"), seed=1):
    """4 atoms, skewed cell ~3.5 Å, smaller than the EMT cutoff (~5.9 Å)."""
    return skewed_two_element_cell(seed=seed, rattle=0.1, symbols=symbols)


def ni108(seed=0):
    at = bulk("Ni", "fcc", a=3.52, cubic=True) * (3, 3, 3)
    at.rattle(stdev=0.08, seed=seed)
    return at


def alloy_all_elements(seed=3):
    """Every supported element in one rattled, strained, non-orthogonal 32-atom fcc cell."""
    r = np.random.default_rng(seed)
    at = bulk("Cu", "fcc", a=3.8, cubic=True) * (2, 2, 2)
    at.set_cell(at.cell.array @ (np.eye(3) + r.uniform(-0.08, 0.08, (3, 3))),
                scale_atoms=True)
    syms = list(SUPPORTED) + list(r.choice(["Cu", "Ni", "Au", "Pt", "Al"], len(at) - 11))
    at.symbols = list(r.permutation(syms))
    at.rattle(stdev=0.1, seed=seed)
    return at


def cluster_with_isolated_atom():
    at = small_cell(("Au", "Pd"), seed=4)
    at.pbc = False
    at += Atoms("Al", positions=[[30.0, 0.0, 0.0]])  # no neighbour: E_i = -E0
    return at


def slab():
    at = small_cell(("Ag", "Pt"), seed=5) * (1, 1, 2)
    at.pbc = (True, True, False)
    return at


def tiny_skewed_cell():
    """Two atoms in a strongly skewed cell of ~3 Å: dozens of images of each."""
    cell = [[3.1, 0.0, 0.0], [1.1, 2.9, 0.0], [0.6, 0.9, 3.0]]
    return Atoms("NiCu", positions=[[0.1, 0.2, 0.3], [1.7, 1.1, 1.4]], cell=cell, pbc=True)


STRUCTURES = {
    "small": small_cell,
    "small_AuO": lambda: small_cell(("Au", "O"), seed=2),
    "ni108": ni108,
    "alloy": alloy_all_elements,
    "cluster": cluster_with_isolated_atom,
    "slab": slab,
    "tiny": tiny_skewed_cell,
}


def ase_results(at, asap_cutoff=False):
    a = at.copy()
    a.calc = AseEMT(asap_cutoff=asap_cutoff)
    out = {"energy": a.get_potential_energy(), "energies": a.get_potential_energies(),
           "forces": a.get_forces()}
    if all(a.pbc):
        out["stress"] = a.get_stress()
    return out


# ------------------------------------------------------------------------------------------
# equality with ASE
# ------------------------------------------------------------------------------------------
def test_parameter_table_is_ase_table():
    from ase.calculators import emt as ase_emt

    assert _emt.EMT_PARAMETERS == ase_emt.parameters
    assert _emt.BETA == ase_emt.beta
    assert tuple(sorted(_emt.EMT_PARAMETERS)) == SUPPORTED


@pytest.mark.parametrize("asap_cutoff", [False, True])
@pytest.mark.parametrize("name", list(STRUCTURES))
def test_matches_ase_emt(name, asap_cutoff):
    at = STRUCTURES[name]()
    before = at.copy()
    res = EMT(asap_cutoff=asap_cutoff).compute(at)
    assert at == before and at.calc is None
    ref = ase_results(at, asap_cutoff)
    scale = max(1.0, abs(ref["energy"]))
    assert abs(res["energy"] - ref["energy"]) < 1e-10 * scale
    np.testing.assert_allclose(res["energies"], ref["energies"], rtol=0, atol=1e-10)
    np.testing.assert_allclose(res["forces"], ref["forces"], rtol=0, atol=1e-10)
    assert np.abs(ref["forces"]).max() > 1e-3  # not a trivial check
    if all(at.pbc):
        np.testing.assert_allclose(res["stress"], ref["stress"], rtol=0, atol=1e-12)
        assert np.abs(ref["stress"]).max() > 1e-5
    else:
        assert res["stress"] is None


def test_isolated_atom_energy_is_minus_e0():
    res = EMT().compute(cluster_with_isolated_atom())
    assert res["energies"][-1] == pytest.approx(3.28, abs=1e-14)  # -E0 of Al
    np.testing.assert_array_equal(res["forces"][-1], 0.0)


def test_matches_ase_baseline_and_ase_calculator_interface():
    at = small_cell()
    ours = EMT().compute(at)
    theirs = ASEBaseline(AseEMT()).compute(at)
    for k in ("energies", "forces", "stress"):
        np.testing.assert_allclose(ours[k], theirs[k], rtol=0, atol=1e-10)
    a = small_cell()
    a.calc = EMT().calculator()
    assert a.get_potential_energy() == pytest.approx(theirs["energy"], abs=1e-10)
    np.testing.assert_allclose(a.get_forces(), theirs["forces"], atol=1e-10)


def test_matches_ase_on_mlearn_ni(mlearn_dir):
    train = read(mlearn_dir / "extxyz" / "Ni_train.xyz", "::40")
    for at in train:
        at.calc = None
        res = EMT().compute(at)
        ref = ase_results(at)
        assert abs(res["energy"] - ref["energy"]) < 1e-10 * max(1.0, abs(ref["energy"]))
        np.testing.assert_allclose(res["forces"], ref["forces"], rtol=0, atol=1e-10)
        np.testing.assert_allclose(res["stress"], ref["stress"], rtol=0, atol=1e-12)


def test_optional_outputs():
    at = small_cell()
    full = EMT().compute(at)
    e_only = EMT().compute(at, forces=False, stress=False)
    assert e_only["forces"] is None and e_only["stress"] is None
    assert e_only["energy"] == full["energy"]
    no_stress = EMT().compute(at, stress=False)
    assert no_stress["stress"] is None
    np.testing.assert_array_equal(no_stress["forces"], full["forces"])


def test_empty_structure():
    res = EMT().compute(Atoms(cell=np.eye(3) * 5.0, pbc=True))
    assert res["energy"] == 0.0 and res["forces"].shape == (0, 3)
    np.testing.assert_array_equal(res["stress"], 0.0)


# ------------------------------------------------------------------------------------------
# derivatives: central finite differences on rattled, periodic, non-orthogonal small cells
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["small", "small_AuO", "tiny"])
def test_forces_and_stress_finite_differences(name):
    at = STRUCTURES[name]()
    at.calc = EMT().calculator()
    F = at.get_forces()
    S = at.get_stress()
    F_fd = calculate_numerical_forces(at, eps=1e-5)
    S_fd = calculate_numerical_stress(at, eps=1e-6)
    np.testing.assert_allclose(F, F_fd, rtol=0, atol=1e-6 * max(1.0, np.abs(F).max()))
    np.testing.assert_allclose(S, S_fd, rtol=0, atol=1e-7 * max(1.0, np.abs(S).max()))
    assert np.abs(F).max() > 1e-2


def test_per_atom_energies_sum_and_translation_invariance():
    at = alloy_all_elements()
    res = EMT().compute(at)
    assert res["energy"] == pytest.approx(res["energies"].sum(), abs=1e-12)
    np.testing.assert_allclose(res["forces"].sum(0), 0.0, atol=1e-10)
    moved = at.copy()
    moved.positions += [3.3, -7.1, 12.0]  # positions outside the cell
    res2 = EMT().compute(moved)
    np.testing.assert_allclose(res2["energies"], res["energies"], atol=1e-11)
    np.testing.assert_allclose(res2["forces"], res["forces"], atol=1e-11)


# ------------------------------------------------------------------------------------------
# numba kernels vs a plain-numpy reference
# ------------------------------------------------------------------------------------------
def reference_emt(at, asap_cutoff=False):
    """Vectorised numpy EMT on the hybridpot neighbour list (no numba)."""
    syms = sorted(set(at.get_chemical_symbols()))
    s = _emt._setup(tuple(syms), asap_cutoff)
    t = np.array([syms.index(x) for x in at.get_chemical_symbols()])
    nl = neighbor_list(at, s.rc_list)
    n, P, B = len(at), s.par, _emt.BETA
    a, b, r = t[nl.i], t[nl.j], nl.d
    w = 1.0 / (1.0 + np.exp(s.acut * (r - s.rc)))
    dlw = s.acut * (w - 1.0)
    c = s.chi[a, b]
    E0, S0, V0 = P[:, _emt._E0], P[:, _emt._S0], P[:, _emt._V0]
    eta, kap, lam = P[:, _emt._ETA2], P[:, _emt._KAPPA], P[:, _emt._LAMBDA]
    s1i = np.exp(-eta[b] * (r - B * S0[b])) * c * w
    s1j = np.exp(-eta[a] * (r - B * S0[a])) / c * w
    sigma1 = np.bincount(nl.i, s1i, minlength=n)
    es = P[a, _emt._NHV] * np.exp(-kap[b] * (r / B - S0[b])) * c * w
    eo = P[b, _emt._NHV] * np.exp(-kap[a] * (r / B - S0[a])) / c * w
    e_as = np.bincount(nl.i, 0.5 * (es + eo), minlength=n)
    has = sigma1 > 0
    ds = np.where(has, -np.log(np.where(has, sigma1, 1.0) * P[t, _emt._INV12G1])
                  / (B * eta[t]), 0.0)
    e_c = np.where(has, E0[t] * (1 + lam[t] * ds) * np.exp(-lam[t] * ds)
                   + 6 * V0[t] * np.exp(-kap[t] * ds), 0.0)
    dec = -E0[t] * lam[t] ** 2 * ds * np.exp(-lam[t] * ds) - kap[t] * 6 * V0[t] * np.exp(
        -kap[t] * ds)
    deds = np.where(has, dec / (-B * eta[t] * np.where(has, sigma1, 1.0)), 0.0)
    G = (es * (dlw - kap[b] / B) + eo * (dlw - kap[a] / B) + deds[nl.i] * s1i * (dlw - eta[b])
         + deds[nl.j] * s1j * (dlw - eta[a]))
    f = (G / r)[:, None] * nl.D
    forces = np.stack([np.bincount(nl.i, f[:, k], minlength=n) for k in range(3)], axis=1)
    virial = 0.5 * nl.D.T @ f
    return e_c + e_as - E0[t], forces, virial


@pytest.mark.parametrize("name", ["small", "alloy", "cluster", "tiny"])
def test_kernels_match_numpy_reference(name):
    at = STRUCTURES[name]()
    energies, forces, virial = reference_emt(at)
    res = EMT().compute(at)
    np.testing.assert_allclose(res["energies"], energies, rtol=0, atol=1e-12)
    np.testing.assert_allclose(res["forces"], forces, rtol=0, atol=1e-12)
    if all(at.pbc):
        v = 0.5 * (virial + virial.T) / at.get_volume()
        np.testing.assert_allclose(res["stress"], v.flat[[0, 4, 8, 5, 2, 1]], atol=1e-14)


# ------------------------------------------------------------------------------------------
# errors
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("symbol", ["Fe", "Si", "X"])
def test_unsupported_element_is_typed(symbol):
    at = small_cell()
    at.symbols[2] = symbol
    supported = r"\['Ag', 'Al', 'Au', 'C', 'Cu', 'H', 'N', 'Ni', 'O', 'Pd', 'Pt'\]"
    with pytest.raises(UnknownSpeciesError,
                       match=rf"EMT has no parameters for element '{symbol}' \(atom 2\); "
                             rf"supported elements: {supported}"):
        EMT().compute(at)


@pytest.mark.parametrize("value", [1, "yes", None])
def test_bad_asap_cutoff(value):
    with pytest.raises(InvalidParameterError,
                       match=r"The 'asap_cutoff' parameter of EMT must be a bool\. Got "):
        EMT(asap_cutoff=value).compute(small_cell())


def test_bad_structures():
    with pytest.raises(InvalidStructureError, match=r"'atoms' argument of EMT must be an "
                                                    r"ase\.Atoms\. Got list"):
        EMT().compute([1, 2])
    at = small_cell()
    at.positions[1] = at.positions[0] + 0.01
    with pytest.raises(InvalidStructureError, match=r"atoms 0 and 1 only 0\.01732 Å apart"):
        EMT().compute(at)


def test_no_lammps_equivalent():
    with pytest.raises(InvalidParameterError, match=r"EMT has no LAMMPS equivalent"):
        EMT().lammps_commands(["Ni"])


# ------------------------------------------------------------------------------------------
# contract: parameters, serialisation, calculator, HybridPotential
# ------------------------------------------------------------------------------------------
def test_no_fittable_parameters():
    b = EMT()
    assert b.param_names == () and b.n_params == 0 and b.get_param_vector().shape == (0,)
    g = b.parameter_gradients(small_cell())
    assert g["energy"].shape == (0,) and g["forces"].shape == (0, 4, 3)
    assert g["stress"].shape == (0, 6)
    assert b.parameter_gradients(cluster_with_isolated_atom())["stress"] is None


def test_serialisation_roundtrip():
    assert BASELINES["EMT"] is EMT
    b = EMT(asap_cutoff=True)
    d = json.loads(json.dumps(b.to_dict()))
    assert d == {"class": "EMT", "params": {"asap_cutoff": True}}
    b2 = baseline_from_dict(d)
    assert isinstance(b2, EMT) and b2.asap_cutoff is True
    at = alloy_all_elements()
    np.testing.assert_array_equal(b2.compute(at)["forces"], b.compute(at)["forces"])


def test_calculator_resets_on_parameter_change():
    at = small_cell()
    b = EMT()
    at.calc = b.calculator()
    e1 = at.get_potential_energy()
    b.set_params(asap_cutoff=True)
    e2 = at.get_potential_energy()
    assert e1 == pytest.approx(ase_results(at)["energy"], abs=1e-10)
    assert e2 == pytest.approx(ase_results(at, asap_cutoff=True)["energy"], abs=1e-10)
    assert abs(e2 - e1) > 1e-6


def lj_labelled(structures):
    """The structures relabelled with a Lennard-Jones "DFT" (a residual EMT cannot explain)."""
    out = []
    for at in structures:
        a = at.copy()
        a.calc = AseLJ(sigma=2.3, epsilon=0.4, rc=5.0, smooth=True)
        res = {"energy": a.get_potential_energy(), "forces": a.get_forces(),
               "stress": a.get_stress()}
        a.calc = SinglePointCalculator(a, **res)
        out.append(a)
    return out


def test_drop_in_for_ase_baseline_in_hybrid_potential():
    train = lj_labelled(emt_dataset(4, seed=11, reps=(1, 1, 1)))
    test = lj_labelled(emt_dataset(2, seed=12, reps=(1, 1, 1)))

    def model(baseline):
        desc = PowerSpectrum(species=["Cu"], r_cut=4.0, n_max=3, l_max=2)
        return HybridPotential(descriptor=desc, regressor=BayesianLinearRegressor(),
                               baseline=baseline).fit(train)

    ours, theirs = model(EMT()), model(ASEBaseline(AseEMT()))
    np.testing.assert_allclose(ours.predict(test), theirs.predict(test), rtol=1e-9, atol=1e-8)
    for fa, fb in zip(ours.predict_forces(test), theirs.predict_forces(test)):
        np.testing.assert_allclose(fa, fb, rtol=0, atol=1e-7)
