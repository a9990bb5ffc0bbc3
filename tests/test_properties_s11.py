"""Materials properties through the ASE calculator (session-11 properties review).

What a user validating a potential computes with standard ASE tools, as the mlearn paper
(Zuo et al. 2020) did for every model: lattice constant (cell filter + BFGS), equation of
state, cubic elastic constants (stress of finite strains, and the energy's second
derivative), vacancy formation and surface energies, phonons (acoustic sum rule, sound
velocities from the elastic constants), and the σ of such derived quantities from a
posterior committee.  Independent truth: ASE's own EMT calculator, the model's own energy
(stress must be its strain derivative), the DFT stresses of the mlearn Elastic cells.
"""

import numpy as np
import pytest
from ase.build import bulk, fcc100, fcc111
from ase.calculators.emt import EMT as AseEMT
from ase.eos import EquationOfState
from ase.filters import FrechetCellFilter
from ase.optimize import BFGS
from ase.phonons import Phonons
from ase.units import GPa, _amu, _e, _hbar
from conftest import emt_dataset, emt_label

from hybridpot import HybridPotential
from hybridpot.baselines import EMT, LennardJones
from hybridpot.descriptors import PowerSpectrum
from hybridpot.regression import BayesianLinearRegressor, LinearRegressor

VOIGT = ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))


def strained(atoms, voigt):
    eps = np.zeros((3, 3))
    for k, (i, j) in enumerate(VOIGT):
        eps[i, j] = eps[j, i] = voigt[k] if i == j else 0.5 * voigt[k]
    a = atoms.copy()
    a.set_cell(atoms.cell[:] @ (np.eye(3) + eps), scale_atoms=True)
    return a


def relaxed_cubic(calc, a_guess=3.6):
    at = bulk("Cu", "fcc", a=a_guess, cubic=True)
    at.calc = calc
    BFGS(FrechetCellFilter(at), logfile=None).run(fmax=1e-5, steps=200)
    a0 = np.linalg.det(at.cell[:]) ** (1 / 3)
    at.set_cell(np.eye(3) * a0, scale_atoms=True)
    return at, a0


def elastic_from_stress(calc, at0, delta=0.004):
    C = np.zeros((6, 6))
    for j in range(6):
        v = np.zeros(6)
        v[j] = delta
        s = []
        for sign in (1, -1):
            a = strained(at0, sign * v)
            a.calc = calc
            s.append(a.get_stress())
        C[:, j] = (s[0] - s[1]) / (2 * delta) / GPa
    return C


def elastic_from_energy(calc, at0, delta=0.004):
    V0 = at0.get_volume()

    def d2(voigt):
        e = []
        for sign in (1, 0, -1):
            a = strained(at0, sign * np.asarray(voigt, float))
            a.calc = calc
            e.append(a.get_potential_energy())
        return (e[0] - 2 * e[1] + e[2]) / (delta ** 2 * V0) / GPa

    c11 = d2([delta, 0, 0, 0, 0, 0])
    c12 = 0.5 * d2([delta, delta, 0, 0, 0, 0]) - c11
    return np.array([c11, c12, d2([0, 0, 0, delta, 0, 0])])


def bulk_modulus(calc, at0):
    vols, ens = [], []
    for s in np.linspace(0.97, 1.03, 7):
        a = at0.copy()
        a.set_cell(at0.cell[:] * s ** (1 / 3), scale_atoms=True)
        a.calc = calc
        vols.append(a.get_volume())
        ens.append(a.get_potential_energy())
    eos = EquationOfState(vols, ens, eos="birchmurnaghan")
    eos.fit()
    return eos.B / GPa


def vacancy_energy(calc, at0):
    sc = at0.repeat(2)
    sc.calc = calc
    e_bulk, n = sc.get_potential_energy(), len(sc)
    vac = sc.copy()
    del vac[0]
    vac.rattle(0.01, seed=1)
    vac.calc = calc
    BFGS(vac, logfile=None).run(fmax=1e-3, steps=300)
    return vac.get_potential_energy() - (n - 1) / n * e_bulk


def surface_energy(calc, build, a0, e_atom):
    slab = build("Cu", (2, 2, 5), a=a0, vacuum=7.0, orthogonal=True)
    slab.pbc = True
    slab.calc = calc
    BFGS(slab, logfile=None).run(fmax=1e-3, steps=300)
    area = np.linalg.norm(np.cross(slab.cell[0], slab.cell[1]))
    return (slab.get_potential_energy() - len(slab) * e_atom) / (2 * area)


def cubic(C):
    return np.array([np.mean(np.diag(C)[:3]),
                     np.mean([C[i, j] for i in range(3) for j in range(3) if i != j]),
                     np.mean(np.diag(C)[3:])])


@pytest.fixture(scope="module")
def cu_data():
    """12 strained, rattled fcc Cu cells and 4 such cells with a vacancy, EMT labels."""
    vacancies = []
    for at in emt_dataset(4, seed=4):
        del at[0]
        vacancies.append(emt_label(at))
    return emt_dataset(12, seed=3) + vacancies


@pytest.fixture(scope="module")
def lj_model(cu_data):
    """A model with a real ML part: Bayesian linear power spectrum on an LJ baseline."""
    return HybridPotential(PowerSpectrum(species=["Cu"], r_cut=4.2, n_max=4, l_max=3),
                           BayesianLinearRegressor(noise_levels="shared"),
                           LennardJones(epsilon=0.02, sigma=2.3, r_cut=4.2),
                           {"energy": 1000.0, "forces": 1.0, "stress": 100.0}).fit(cu_data)


def test_emt_residual_model_gives_ase_emt_properties(cu_data):
    """EMT-labelled data on the (numba) EMT baseline: the ML part fits a zero residual, so
    every property through the model's calculator must be ASE's EMT's (independent code)."""
    model = HybridPotential(PowerSpectrum(species=["Cu"], r_cut=4.2, n_max=3, l_max=2),
                            LinearRegressor(), EMT()).fit(cu_data)
    got, ref = {}, {}
    for out, calc in ((got, model.calculator()), (ref, AseEMT())):
        at0, out["a0"] = relaxed_cubic(calc)
        e_atom = at0.get_potential_energy() / len(at0)
        out["B"] = bulk_modulus(calc, at0)
        out["C"] = cubic(elastic_from_stress(calc, at0))
        out["E_v"] = vacancy_energy(calc, at0)
        out["g100"] = surface_energy(calc, fcc100, out["a0"], e_atom)
        out["g111"] = surface_energy(calc, fcc111, out["a0"], e_atom)
    assert got["a0"] == pytest.approx(ref["a0"], abs=1e-5)
    assert got["B"] == pytest.approx(ref["B"], rel=1e-4)
    np.testing.assert_allclose(got["C"], ref["C"], rtol=1e-4)
    for key in ("E_v", "g100", "g111"):
        assert got[key] == pytest.approx(ref[key], abs=1e-4), key


def test_elastic_constants_from_stress_equal_energy_curvature(lj_model):
    calc = lj_model.calculator()
    at0, a0 = relaxed_cubic(calc)
    assert 3.4 < a0 < 3.8
    C = elastic_from_stress(calc, at0)
    # cubic symmetry: symmetric tensor, no normal-shear or shear-shear coupling
    np.testing.assert_allclose(C, C.T, atol=2e-3 * np.abs(C).max())
    assert np.abs(C[:3, 3:]).max() < 1e-6 and np.abs(C[3:, 3:] - np.diag(np.diag(C)[3:])).max() \
        < 1e-6
    c_s = cubic(C)
    np.testing.assert_allclose(c_s, elastic_from_energy(calc, at0), rtol=2e-3)
    # the EOS bulk modulus is (C11 + 2 C12) / 3 of the same model
    assert bulk_modulus(calc, at0) == pytest.approx((c_s[0] + 2 * c_s[1]) / 3, rel=0.01)
    # in-place strain of one Atoms object (ASE tools do this) = strained copies
    at = at0.copy()
    at.calc = calc
    at.set_cell(strained(at0, [0.004, 0, 0, 0, 0, 0]).cell, scale_atoms=True)
    s_plus = at.get_stress()
    at.set_cell(strained(at0, [-0.004, 0, 0, 0, 0, 0]).cell, scale_atoms=True)
    np.testing.assert_allclose((s_plus - at.get_stress()) / 0.008 / GPa, C[:, 0], atol=1e-9)


def test_perfect_lattice_has_zero_forces_and_isotropic_stress(lj_model):
    calc = lj_model.calculator()
    e_per_atom = []
    for at in (bulk("Cu", "fcc", a=3.63), bulk("Cu", "fcc", a=3.63, cubic=True).repeat(3)):
        at.calc = calc
        assert np.abs(at.get_forces()).max() < 1e-12
        s = at.get_stress()
        assert np.abs(s[3:]).max() < 1e-12 and np.ptp(s[:3]) < 1e-12
        assert np.ptp(at.get_potential_energies()) < 1e-12
        e_per_atom.append(at.get_potential_energy() / len(at))
    assert e_per_atom[0] == pytest.approx(e_per_atom[1], abs=1e-12)


def test_phonons_acoustic_sum_rule_and_sound_velocities(lj_model, tmp_path):
    """ase.phonons: zero frequencies at Γ without the ASR correction, no imaginary modes,
    and the long-wavelength slopes along [100] equal sqrt(C11/ρ) and sqrt(C44/ρ)."""
    calc = lj_model.calculator()
    at0, a0 = relaxed_cubic(calc)
    C = cubic(elastic_from_stress(calc, at0))
    prim = bulk("Cu", "fcc", a=a0)
    # force constants reach 2 r_cut = 8.4 Å: 7x7x7 primitive cells (17.8 Å) hold them
    ph = Phonons(prim, calc, supercell=(7, 7, 7), delta=0.01, name=str(tmp_path / "ph"))
    ph.run()
    ph.read(acoustic=False)
    assert np.abs(ph.band_structure([[0, 0, 0]])).max() < 1e-6      # eV
    path = prim.cell.bandpath("GXWKGL", npoints=40)
    assert ph.get_band_structure(path).energies.min() > -1e-6
    k = 0.02 * 2 * np.pi / a0                                          # 1/Å along x
    q_scaled = np.array([k, 0, 0]) @ prim.cell[:].T / (2 * np.pi)
    v = np.sort(ph.band_structure([q_scaled])[0]) * _e / _hbar / (k * 1e10)   # m/s
    rho = prim.get_masses().sum() * _amu / (prim.get_volume() * 1e-30)
    np.testing.assert_allclose(v, np.sqrt(np.array([C[2], C[2], C[0]]) * 1e9 / rho),
                               rtol=0.01)


def test_committee_sigma_of_derived_energies(lj_model):
    """Members drawn from the coefficient posterior reproduce the parameter part of the
    model's energy σ; an energy difference (vacancy formation) has a smaller σ than the two
    energies' σ added in quadrature (their errors are correlated)."""
    reg = lj_model.regressor_
    members = [HybridPotential.from_fitted(lj_model.descriptor, LinearRegressor.from_coef(c),
                                           baseline=lj_model.baseline,
                                           reference_energies=lj_model.reference_energies_)
               for c in reg.sample_coef(300, random_state=0)]
    sc = bulk("Cu", "fcc", a=3.63, cubic=True).repeat(2)
    vac = sc.copy()
    del vac[0]
    E, S = lj_model.predict([sc, vac], return_std=True)
    Em = np.array([m.predict([sc, vac]) for m in members])
    np.testing.assert_allclose(Em.mean(0), E, atol=3 * S.max() / np.sqrt(300))
    noise = np.array([len(sc), len(vac)]) * reg.noise_["energy"]
    np.testing.assert_allclose(Em.std(0, ddof=1), np.sqrt(S ** 2 - noise ** 2), rtol=0.15)
    e_v = Em[:, 1] - (len(sc) - 1) / len(sc) * Em[:, 0]
    # positively correlated members: below the quadrature sum of the parameter σ, and far
    # below that of the predictive σ (the observation noise N σ_E is no error of a property)
    assert e_v.std(ddof=1) < 0.9 * np.hypot(*Em.std(0, ddof=1))
    assert e_v.std(ddof=1) < 0.5 * np.hypot(*S), (e_v.std(ddof=1), S)


def _dft_elastic_fit(structures, stresses, a_ref, tol=0.021):
    """C11, C12, C44 (GPa) by least squares of stress on strain over the Elastic cells."""
    cell0 = np.eye(3) * a_ref
    rows, ys = [], []
    for at, s in zip(structures, stresses):
        F = np.linalg.solve(cell0, at.cell[:])
        e = 0.5 * (F + F.T) - np.eye(3)
        v = np.array([e[0, 0], e[1, 1], e[2, 2], 2 * e[1, 2], 2 * e[0, 2], 2 * e[0, 1]])
        if np.abs(v).max() <= tol:
            rows.append(v)
            ys.append(s)
    X = np.hstack([np.ones((len(rows), 1)), rows])
    coef = np.linalg.lstsq(X, np.array(ys), rcond=None)[0]      # (7, 6): intercept, C^T
    return cubic(coef[1:].T / GPa), len(rows)


def test_mlearn_mo_elastic_constants_near_dft(mlearn_dir):
    """A Mo model fitted with stresses (ZBL baseline) gives elastic constants within 10 %
    of those of the DFT stresses of the mlearn Elastic cells (what the data says)."""
    from ase.io import read

    from hybridpot.baselines import ZBL

    train = read(mlearn_dir / "extxyz" / "Mo_train.xyz", ":")
    model = HybridPotential(PowerSpectrum(species=["Mo"], r_cut=5.2, n_max=8, l_max=6),
                            BayesianLinearRegressor(noise_levels="shared"),
                            ZBL(r_inner=1.0, r_cut=2.0),
                            {"energy": 1e5, "forces": 1.0, "stress": 1e3}).fit(train)
    elastic = [a for a in train if a.info["config_type"] == "Elastic" and len(a) == 54]
    a_ref = 3 * np.median([a.cell[0, 0] / 3 for a in elastic])
    dft, n = _dft_elastic_fit(elastic, [a.get_stress() for a in elastic], a_ref)
    assert n >= 10
    # DFT (PBE) C11, C12, C44 of Mo from its stresses: ~479, 164, 109 GPa
    assert dft == pytest.approx([479, 164, 109], rel=0.03)
    calc = model.calculator()
    at0 = bulk("Mo", "bcc", a=3.16, cubic=True)
    at0.calc = calc
    BFGS(FrechetCellFilter(at0), logfile=None).run(fmax=1e-5, steps=200)
    a0 = np.linalg.det(at0.cell[:]) ** (1 / 3)
    assert a0 == pytest.approx(a_ref / 3, rel=0.005)
    at0.set_cell(np.eye(3) * a0, scale_atoms=True)
    np.testing.assert_allclose(cubic(elastic_from_stress(calc, at0)), dft, rtol=0.1)


def _run_properties_example(*args, cwd):
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "examples" / "properties.py"
    return subprocess.run([sys.executable, str(script), *args], cwd=cwd, capture_output=True,
                           text=True, timeout=600, env=dict(os.environ, MPLBACKEND="Agg"))


@pytest.mark.slow  # ~27 s: fits and saves an ensemble, then runs the example on it
def test_properties_example_on_a_saved_ensemble_model(cu_data, tmp_path):
    """``--model`` with an EnsembleRegressor: σ is the spread of its fitted members."""
    from hybridpot.regression import EnsembleRegressor, SparseGPRegressor

    gp = SparseGPRegressor(kernel="se", n_sparse=20, noise={"energy": 0.001, "forces": 0.05})
    model = HybridPotential(PowerSpectrum(species=["Cu"], r_cut=4.2, n_max=3, l_max=2),
                            EnsembleRegressor(estimator=gp, n_models=2, random_state=0),
                            LennardJones(epsilon=0.02, sigma=2.3, r_cut=4.2)).fit(cu_data)
    model.save(tmp_path / "cu.hpot")
    proc = _run_properties_example("--model", "cu.hpot", "--quick", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "the baseline and 2 committee members" in proc.stdout
    rows = {ln.split()[0]: ln.split() for ln in proc.stdout.splitlines() if ln.split()}
    # EMT labels (EMT a0 3.59 Å); members on different inducing points differ
    assert 3.5 < float(rows["a0"][2]) < 3.7, proc.stdout
    assert all(float(rows[k][3]) > 0 for k in ("a0", "C11", "C44", "E_v")), proc.stdout
    bad = _run_properties_example("--model", "missing.hpot", cwd=tmp_path)
    assert bad.returncode == 2
    assert "error: --model missing.hpot: [Errno 2] No such file" in bad.stderr


def test_stress_sigma_without_stress_training_is_too_small_until_recalibrated():
    """The documented behaviour (HybridCalculator docstring): a model fitted without stress
    labels gives a parameter-only stress σ, far too small; recalibrating on structures with
    stresses scales it to a usable coverage."""
    from ase.io import read

    from hybridpot.config import default_data_path
    from hybridpot.uq import evaluate_uncertainty

    data = read(default_data_path(), ":")
    idx = np.random.default_rng(0).permutation(len(data))
    train, val, test = ([data[i] for i in idx[:150]], [data[i] for i in idx[150:200]],
                        [data[i] for i in idx[200:]])
    model = HybridPotential(PowerSpectrum(species=["Al"], r_cut=5.0, n_max=4, l_max=3),
                            BayesianLinearRegressor(noise_levels="shared"), EMT(),
                            {"energy": 1000.0, "forces": 1.0, "stress": 0.0}).fit(train)
    assert "stress" not in model.regressor_.noise_
    before = evaluate_uncertainty(model, test)["stress"]["coverage_1sigma"]
    model.recalibrate(val)
    after = evaluate_uncertainty(model, test)["stress"]["coverage_1sigma"]
    assert before < 0.3 and after > 0.55, (before, after)
    assert model.uncertainty_scale_["stress"] > 3


def test_mlearn_mo_energy_weight_documented_in_load_config(mlearn_dir):
    """load_config's docstring: the CLI's default energy weight 1000 underweights the energies
    of 54-atom cells; 1e5 halves the Mo test energy error and raises the (100) surface
    energy towards DFT."""
    from ase.io import read

    from hybridpot.baselines import ZBL

    train = read(mlearn_dir / "extxyz" / "Mo_train.xyz", ":")
    test = read(mlearn_dir / "extxyz" / "Mo_test.xyz", ":")
    out = {}
    for e_weight in (1e3, 1e5):
        model = HybridPotential(PowerSpectrum(species=["Mo"], r_cut=5.0, n_max=6, l_max=4),
                                BayesianLinearRegressor(noise_levels="shared"),
                                ZBL(r_inner=1.0, r_cut=2.0),
                                {"energy": e_weight, "forces": 1.0, "stress": 100.0}).fit(train)
        calc = model.calculator()
        at0 = bulk("Mo", "bcc", a=3.167, cubic=True)
        at0.calc = calc
        e_atom = at0.get_potential_energy() / 2
        slab = bulk("Mo", "bcc", a=3.167, cubic=True).repeat((1, 1, 6))
        slab.center(vacuum=8.0, axis=2)
        slab.calc = calc
        gamma = (slab.get_potential_energy() - 12 * e_atom) / (2 * 3.167 ** 2) * 16.0218
        out[e_weight] = (model.evaluate(test)["energy_mae"], gamma)
    assert out[1e5][0] < 0.6 * out[1e3][0], out
    assert out[1e3][1] < out[1e5][1] - 0.2, out      # J/m² (unrelaxed (100) slab)


def test_mlearn_si_diamond_relaxed_ion_elastic_constants(mlearn_dir):
    """hybridpot.properties (examples/properties.py) on diamond Si: ions relaxed in every
    strained cell (the inner strain lowers C44 below the clamped-ion value); stress- and
    energy-derived constants agree; acoustic modes at Γ are zero, the optical one is not."""
    from ase.io import read

    from hybridpot import properties as props
    from hybridpot.baselines import ZBL

    train = read(mlearn_dir / "extxyz" / "Si_train.xyz", ":")
    model = HybridPotential(PowerSpectrum(species=["Si"], r_cut=5.4, n_max=4, l_max=3),
                            BayesianLinearRegressor(noise_levels="shared"),
                            ZBL(r_inner=1.0, r_cut=2.0),
                            {"energy": 1e5, "forces": 1.0, "stress": 1e3}).fit(train)
    calc = model.calculator()
    at0, a0 = props.relaxed_bulk(calc, "Si", "diamond", 5.43)
    assert a0 == pytest.approx(5.47, abs=0.03)          # PBE Si
    clamped = props.cubic_constants(props.elastic_from_stress(calc, at0))
    relaxed = props.cubic_constants(props.elastic_from_stress(calc, at0, relax_ions=True))
    np.testing.assert_allclose(relaxed[:2], clamped[:2], rtol=1e-3)   # no inner strain
    assert relaxed[2] < 0.9 * clamped[2]
    np.testing.assert_allclose(props.elastic_from_energy(calc, at0, relax_ions=True), relaxed,
                               rtol=2e-3)
    nu_x, nu_gamma = props.zone_boundary_phonons(calc, "Si", "diamond", a0, 3.0)
    assert abs(nu_gamma) < 1e-3 and nu_x[-1] > 10.0                 # THz
