"""SparseGPRegressor(derivative_variance="committee"): force and stress σ from posterior
weight samples pushed through the descriptor adjoint (issue #6, σ in MD).

Independent truths: every member's forces and stress equal those of the same GP with its
coefficients shifted by that member's sample (the ordinary prediction path); the adjoint
path of the calculator (``Descriptor.backward_many``, no Jacobian) equals the batch path
(Jacobian contraction) for single GPs and for ensembles of them; with many samples the
committee variance converges to the closed-form projected-process variance; the samples have
the posterior covariance.
"""

import copy

import numpy as np
import pytest
import scipy.linalg
from ase.build import bulk

from conftest import emt_label, skewed_two_element_cell
from hybridpot import HybridPotential, InvalidParameterError, ModelFormatError
from hybridpot.baselines import LennardJones
from hybridpot.descriptors import PowerSpectrum
from hybridpot.potential import _volume
from hybridpot.regression import EnsembleRegressor, SparseGPRegressor, StructureBatch

# fitted on one Cu/Ni composition and evaluated at others: the energy is an arbitrary
# (but deterministic) extrapolation, which HybridPotential warns about
pytestmark = pytest.mark.filterwarnings(
    "ignore:The energy of .* is an arbitrary extrapolation:UserWarning")


SPECIES = ["Cu", "Ni"]
WEIGHTS = {"energy": 1.0, "forces": 1.0, "stress": 0.1}


def _train():
    out = []
    for k in range(5):
        at = bulk("Cu", "fcc", a=3.61 * (1 + 0.01 * k), cubic=True)
        at[1].symbol = "Ni"
        at = at * (2, 1, 1)
        at.rattle(0.08, seed=k)
        out.append(emt_label(at))
    return out


def _gp(**kw):
    params = dict(kernel="se", n_sparse=30, random_state=3, derivative_variance="committee",
                  n_committee=6, noise={"energy": 2e-3, "forces": 0.05, "stress": 1e-3})
    params.update(kw)
    return SparseGPRegressor(**params)


def _model(regressor):
    return HybridPotential(PowerSpectrum(species=SPECIES, r_cut=3.6, n_max=3, l_max=2),
                           regressor, LennardJones(epsilon=0.01, sigma=2.2, r_cut=3.6),
                           WEIGHTS).fit(_train())


@pytest.fixture(scope="module")
def fitted():
    return _model(_gp())


@pytest.fixture(scope="module")
def fitted_linear_block():
    return _model(_gp(linear_features=3))


def _batch(model, atoms):
    X, dX = model.descriptor.compute(atoms, gradients=True)
    n = len(atoms)
    z = np.array([SPECIES.index(s) for s in atoms.get_chemical_symbols()])
    return StructureBatch(
        X=X, species=z, structure=np.zeros(n, dtype=np.int64), gradients=dX,
        volume=np.array([_volume(atoms)]), energy=np.full(1, np.nan),
        forces=np.full((n, 3), np.nan), stress=np.full((1, 6), np.nan), weights={},
        group=np.zeros(1, dtype=np.int64), index=np.array([0]))


def _probe(seed=5):
    return skewed_two_element_cell(seed=seed, rattle=0.12)


@pytest.mark.parametrize("which", ["plain", "linear_block"])
def test_members_equal_shifted_coefficients(fitted, fitted_linear_block, which):
    """Member k's force / stress deviation = prediction with coef_ + s_k minus the mean."""
    model = fitted if which == "plain" else fitted_linear_block
    reg = model.regressor_
    at = _probe()
    b = _batch(model, at)
    fk, sk = reg._committee_outputs(b.X, b.species, b.structure, b.gradients, b.volume,
                                    np.array([True]))
    assert fk.shape == (6, len(at), 3) and sk.shape == (6, 1, 6)
    mean = model._evaluate(at)
    for k in (0, 3, 5):
        shifted = copy.deepcopy(model)
        shifted.regressor_.coef_ = reg.coef_ + reg.committee_[:, k]
        r = shifted._evaluate(at)
        scale_f = np.abs(fk[k]).max()
        assert scale_f > 1e-6
        np.testing.assert_allclose(r["forces"] - mean["forces"], fk[k], rtol=0,
                                   atol=1e-9 * scale_f)
        np.testing.assert_allclose(r["stress"] - mean["stress"], sk[k, 0], rtol=0,
                                   atol=1e-9 * np.abs(sk[k]).max())


def _assert_adjoint_equals_batch(model, at):
    """σ (and mean forces) of the calculator's adjoint path equal the batch (Jacobian) path's
    and the plain prediction's; returns (adjoint result, batch prediction, plain result)."""
    res = model._evaluate(at, return_std=True)
    p = model.regressor_.predict_batch(_batch(model, at), return_std=True)
    np.testing.assert_allclose(res["forces_std"], p["forces_std"], rtol=1e-10, atol=1e-15)
    np.testing.assert_allclose(res["stress_std"], p["stress_std"][0], rtol=1e-10, atol=1e-18)
    assert res["energy_std"] == pytest.approx(float(p["energy_std"][0]), rel=1e-12)
    plain = model._evaluate(at)
    np.testing.assert_allclose(res["forces"], plain["forces"], rtol=0, atol=1e-12)
    return res, p, plain


@pytest.mark.parametrize("which", ["plain", "linear_block"])
def test_adjoint_path_equals_batch_path(fitted, fitted_linear_block, which):
    """The calculator's adjoint committee (backward_many) equals the Jacobian batch path, and
    the mean predictions equal those of the same GP with the DTC σ."""
    model = fitted if which == "plain" else fitted_linear_block
    reg = model.regressor_
    at = _probe(7)
    res, p, plain = _assert_adjoint_equals_batch(model, at)
    np.testing.assert_allclose(res["stress"], plain["stress"], rtol=0, atol=1e-14)
    assert res["energy"] == pytest.approx(plain["energy"], rel=1e-13)
    np.testing.assert_allclose(res["energies"], plain["energies"], rtol=0, atol=1e-12)
    # the DTC energy σ is kept in committee mode
    dtc = copy.deepcopy(model)
    dtc.regressor_.set_params(derivative_variance="dtc")
    assert dtc._evaluate(at, return_std=True)["energy_std"] == pytest.approx(
        res["energy_std"], rel=1e-12)
    # noise: the fitted (here fixed) force noise is added in quadrature
    q = reg.predict_batch(_batch(model, at), return_std=True, include_noise=False)
    np.testing.assert_allclose(p["forces_std"] ** 2, q["forces_std"] ** 2 + 0.05 ** 2,
                               rtol=1e-12)


def test_samples_have_the_posterior_covariance(fitted):
    """s_k = T^-1 xi_k: with the stored xi recovered, T s_k is standard normal data."""
    reg = fitted.regressor_
    S = reg.committee_
    xi = reg.precision_factor_ @ S
    np.testing.assert_allclose(
        xi, np.random.RandomState(3).standard_normal(S.shape), rtol=1e-8, atol=1e-8)


def test_many_samples_converge_to_projected_variance(fitted):
    """E[(a . s)^2] = a^T H^-1 a: the committee variance with 4000 samples is within a few
    per cent of the closed-form projected-process variance (relative sd sqrt(2/4000))."""
    reg = copy.deepcopy(fitted.regressor_)
    b = _batch(fitted, _probe(11))
    reg.set_params(n_committee=4000)
    c = reg.predict_batch(b, return_std=True, include_noise=False)
    reg.set_params(derivative_variance="projected")
    p = reg.predict_batch(b, return_std=True, include_noise=False)
    ratio_f = (c["forces_std"] / p["forces_std"]) ** 2
    ratio_s = (c["stress_std"] / p["stress_std"]) ** 2
    assert np.all(np.abs(ratio_f - 1.0) < 0.15) and abs(np.median(ratio_f) - 1.0) < 0.05
    assert np.all(np.abs(ratio_s - 1.0) < 0.15)
    np.testing.assert_allclose(c["energy_std"], p["energy_std"], rtol=1e-12)


def test_committee_is_deterministic_and_saved(fitted, tmp_path):
    reg = fitted.regressor_
    again = _model(_gp())
    np.testing.assert_array_equal(again.regressor_.committee_, reg.committee_)
    other = _model(_gp(random_state=4))
    assert not np.allclose(other.regressor_.committee_[:, 0], reg.committee_[:, 0])
    at = _probe(2)
    path = tmp_path / "gp.hpot"
    fitted.save(path)
    loaded = HybridPotential.load(path)
    np.testing.assert_array_equal(loaded.regressor_.committee_, reg.committee_)
    a, b = fitted._evaluate(at, return_std=True), loaded._evaluate(at, return_std=True)
    np.testing.assert_array_equal(a["forces_std"], b["forces_std"])
    np.testing.assert_array_equal(a["stress_std"], b["stress_std"])


def test_refit_and_mode_switch_redraw(fitted):
    """A refit drops the old samples; switching a DTC model to the committee (or changing
    n_committee) draws them from random_state at first use, equal to drawing at fit."""
    dtc = _model(_gp(derivative_variance="dtc"))
    assert getattr(dtc.regressor_, "committee_", None) is None
    dtc.regressor_.set_params(derivative_variance="committee")
    at = _probe(4)
    np.testing.assert_allclose(dtc._evaluate(at, return_std=True)["forces_std"],
                               fitted._evaluate(at, return_std=True)["forces_std"],
                               rtol=1e-10)
    reg = copy.deepcopy(fitted.regressor_)
    reg.set_params(n_committee=9)
    assert reg._committee_samples().shape == (reg.coef_.shape[0], 9)
    b = _batch(fitted, at)
    reg.predict_batch(b)  # the mean path does not need samples
    refit = copy.deepcopy(fitted.regressor_)
    old = refit.committee_.copy()
    refit.set_params(random_state=8)
    refit.fit(_train_batches(fitted))
    assert not np.allclose(refit.committee_, old)


def _train_batches(model):
    batches = []
    for at in _train():
        b = _batch(model, at)
        b.energy = np.array([at.get_potential_energy()])
        b.forces = at.get_forces()
        batches.append(b)
    return batches


def test_ensemble_adjoint_equals_batch_path():
    """The mixture rows of an ensemble of committee GPs give the ensemble's own σ."""
    ens = _model(EnsembleRegressor(estimator=_gp(n_committee=4), n_models=2, random_state=1))
    assert ens.regressor_._adjoint_std
    _assert_adjoint_equals_batch(ens, _probe(9))


def test_calculator_md_with_committee(fitted):
    at = _probe(3)
    at.calc = fitted.calculator(uncertainty=True)
    f = at.get_forces()
    fs = at.calc.results["forces_std"]
    assert f.shape == fs.shape == (len(at), 3) and np.all(fs > 0.05)
    assert at.calc.results["stress_std"].shape == (6,)


@pytest.mark.parametrize("value", [1, 0, 2.5, "8", True])
def test_bad_n_committee_raises(value):
    with pytest.raises(InvalidParameterError,
                       match=r"'n_committee' parameter of SparseGPRegressor must be an int "
                             r"in \[2, inf\]\. Got"):
        _gp(n_committee=value)._validate()


def test_bad_derivative_variance_names_committee():
    with pytest.raises(InvalidParameterError,
                       match=r"'derivative_variance' .*'committee'.* Got 'sample'"):
        _gp(derivative_variance="sample")._validate()


def test_corrupt_committee_array_raises(fitted):
    reg = fitted.regressor_
    state, arrays = reg.get_fitted_state()
    arrays["committee"] = arrays["committee"][:-1]
    with pytest.raises(ModelFormatError, match=r"'committee' has shape"):
        SparseGPRegressor(**reg.get_params()).set_fitted_state(state, arrays)


def test_projected_variance_closed_form_reference(fitted):
    """The projected variance used above is a^T H^-1 a with the explicit inverse."""
    reg = fitted.regressor_
    b = _batch(fitted, _probe(1))
    _, Fr, _ = reg.design_rows(b, forces=True, stress=False)
    Tinv = scipy.linalg.inv(reg.precision_factor_)
    ref = np.einsum("ij,jk,ik->i", Fr, Tinv @ Tinv.T, Fr)
    np.testing.assert_allclose(reg._param_variance(Fr), ref, rtol=1e-8, atol=1e-16)


def test_nve_with_committee_sigma_follows_the_plain_trajectory(fitted):
    """σ at every step does not change the dynamics: forces from the committee's first row
    equal the plain adjoint's, so the NVE trajectories agree, and energy is conserved."""
    from ase import units
    from ase.md.verlet import VelocityVerlet

    from hybridpot._compat import thermalize

    start = _probe(6)
    thermalize(start, 600.0, np.random.default_rng(0))
    runs = {}
    for unc in (False, True):
        at = start.copy()
        at.calc = fitted.calculator(uncertainty=unc)
        e = []
        dyn = VelocityVerlet(at, 0.5 * units.fs)
        dyn.attach(lambda: e.append(at.get_total_energy()), interval=1)
        dyn.run(40)
        runs[unc] = (at.get_positions(), np.array(e))
    np.testing.assert_allclose(runs[True][0], runs[False][0], rtol=0, atol=1e-9)
    e = runs[True][1]
    assert np.abs(e - e[0]).max() < 1e-5 * len(start)     # measured 1.0e-5 eV in total


def test_numpy_generator_random_state(tmp_path):
    """A numpy Generator as random_state (accepted by the other regressors): the draws come
    from it, the model is saved with random_state None and loads with the same σ."""
    gen = np.random.default_rng(5)
    model = _model(_gp(random_state=gen))
    at = _probe(4)
    res = model._evaluate(at, return_std=True)
    assert np.all(res["forces_std"] > 0)
    assert model.regressor_.to_dict()["params"]["random_state"] is None
    model.save(tmp_path / "m")
    back = HybridPotential.load(tmp_path / "m")
    assert back.regressor_.random_state is None
    np.testing.assert_allclose(back._evaluate(at, return_std=True)["forces_std"],
                               res["forces_std"], rtol=1e-12)
    # the same seed through a fresh Generator gives the same model
    again = _model(_gp(random_state=np.random.default_rng(5)))
    np.testing.assert_allclose(again.regressor_.coef_, model.regressor_.coef_, rtol=1e-12)
    with pytest.raises(InvalidParameterError, match="'random_state' parameter of "
                       "SparseGPRegressor must be None, a non-negative int"):
        _model(_gp(random_state=-1))
