"""hybridpot.sampling: constraints of the generated cells (checked with ASE's neighbour list),
determinism under random_state, model-driven MD and adversarial samplers."""

import numpy as np
import pytest
from ase.build import bulk
from ase.neighborlist import neighbor_list as ase_neighbor_list

from conftest import emt_dataset
from hybridpot import HybridPotential, InvalidParameterError
from hybridpot.descriptors import PowerSpectrum
from hybridpot.regression import BayesianLinearRegressor
from hybridpot.sampling import (AdversarialSampler, PoolSampler, RandomDisorderSampler,
                                RattleStrainSampler, UncertaintyMDSampler, min_image_distance)
from hybridpot.sampling._crystal import cell_heights


# the evidence iteration may stop early on these tiny training sets (2 cells of 8 atoms); the
# posterior is still a valid Gaussian, which is all these tests use
pytestmark = pytest.mark.filterwarnings(
    "ignore:BayesianLinearRegressor. evidence maximisation did not converge")

def _ase_min_distance(atoms, r=6.0):
    d = ase_neighbor_list("d", atoms, r, self_interaction=False)
    return float(d.min())


@pytest.fixture(scope="module")
def model():
    d = PowerSpectrum(species=["Cu"], r_cut=4.5, n_max=4, l_max=3)
    return HybridPotential(descriptor=d, regressor=BayesianLinearRegressor()).fit(
        emt_dataset(2, 1, reps=(2, 1, 1)))


@pytest.fixture(scope="module")
def disorder():
    s = RandomDisorderSampler(species=["Cu", "Al"], n_atoms=(2, 6),
                              volume_per_atom=(12.0, 18.0), min_distance=2.1,
                              angle_range=(70.0, 110.0), max_aspect=1.8)
    return s, s.sample(12, random_state=np.random.default_rng(5))


def test_disorder_constraints(disorder):
    s, structures = disorder
    assert len(structures) == 12
    for at in structures:
        n = len(at)
        assert 2 <= n <= 6
        assert set(at.get_chemical_symbols()) <= {"Cu", "Al"}
        assert np.all(at.pbc)
        density = n / at.get_volume()
        assert 1 / 18.0 - 1e-12 <= density <= 1 / 12.0 + 1e-12
        angles = at.cell.cellpar()[3:]
        assert np.all((angles >= 70.0 - 1e-9) & (angles <= 110.0 + 1e-9))
        lengths = at.cell.lengths()
        assert lengths.max() / lengths.min() <= 1.8 + 1e-9
        assert cell_heights(at.cell.array).min() >= 2.1
        # independent truth: ASE's neighbour list over all images
        assert _ase_min_distance(at) >= 2.1 - 1e-9
        np.testing.assert_allclose(min_image_distance(at), _ase_min_distance(at), rtol=1e-12)


def test_disorder_deterministic(disorder):
    s, structures = disorder
    again = s.sample(12, random_state=np.random.default_rng(5))
    for a, b in zip(structures, again):
        np.testing.assert_array_equal(a.positions, b.positions)
        np.testing.assert_array_equal(a.cell.array, b.cell.array)
    other = s.sample(1, random_state=6)[0]
    assert not np.array_equal(other.cell.array, structures[0].cell.array)


def test_rattle_strain_constraints():
    proto = bulk("Cu", "fcc", a=3.61, cubic=True)
    s = RattleStrainSampler(prototype=proto, supercell=(2, 1, 1), rattle_std=(0.05, 0.2),
                            strain_max=0.04, min_distance=1.9)
    out = s.sample(8, random_state=np.random.default_rng(0))
    base = (proto * (2, 1, 1)).cell.array
    for at in out:
        assert len(at) == 8
        F = np.linalg.solve(base, at.cell.array)  # cell = base @ (1 + eps)
        eps = F - np.eye(3)
        np.testing.assert_allclose(eps, eps.T, atol=1e-12)
        assert np.abs(eps).max() <= 0.04 + 1e-12
        assert _ase_min_distance(at) >= 1.9 - 1e-9
        assert at.calc is None
    assert proto.get_volume() == pytest.approx(3.61 ** 3)  # prototype untouched


def test_pool_sampler_excludes_and_tags():
    pool = emt_dataset(5, 3, reps=(1, 1, 1))
    s = PoolSampler(structures=pool)
    out = s.sample(10, random_state=1, exclude=[0, 3])
    assert sorted(a.info["pool_index"] for a in out) == [1, 2, 4]
    assert all(a.calc is None for a in out)
    assert all(a.calc is not None for a in pool)


def test_md_sampler_stops_at_threshold(model):
    start = bulk("Cu", "fcc", a=3.61, cubic=True) * (2, 1, 1)
    s = UncertaintyMDSampler(starts=[start], temperature_range=(800.0, 1200.0), n_steps=60,
                             timestep_fs=2.0, check_interval=5, sigma_threshold=1e-6,
                             frames_per_run=1)
    out = s.sample(2, random_state=np.random.default_rng(1), model=model)
    assert len(out) == 2 and s.stop_reasons_ == ["threshold", "threshold"]
    for at in out:
        _, std = model.predict_forces([at], return_std=True)
        assert at.info["sigma_max"] == pytest.approx(float(std[0].max()), rel=1e-10)
    # a high threshold runs to the end and returns the most uncertain frames first
    s.set_params(sigma_threshold=1e3, frames_per_run=3, n_steps=30)
    out = s.sample(3, random_state=2, model=model)
    assert s.stop_reasons_ == ["steps"]
    sig = [a.info["sigma_max"] for a in out]
    assert sig == sorted(sig, reverse=True)


@pytest.mark.parametrize("gradient", ["fd", "spsa"])
def test_adversarial_step_increases_objective(model, gradient):
    start = bulk("Cu", "fcc", a=3.61, cubic=True)
    s = AdversarialSampler(starts=[start], temperature_K=2000.0, n_steps=1, step_size=0.01,
                           gradient=gradient, start_rattle=0.05)
    (best,) = s.sample(1, random_state=np.random.default_rng(3), model=model)
    # the same start (same generator stream) without any step
    s0 = AdversarialSampler(starts=[start], temperature_K=2000.0, n_steps=0,
                            start_rattle=0.05)
    (x0,) = s0.sample(1, random_state=np.random.default_rng(3), model=model)
    assert s.objective(model, best) == pytest.approx(best.info["adversarial_J"], rel=1e-12)
    if gradient == "fd":
        # an exact ascent direction and a small step: J increases
        assert best.info["adversarial_J"] > x0.info["adversarial_J"]
        return
    # SPSA follows one random +-1 direction, so one step may go downhill (the sampler then
    # keeps the start: J never decreases); its estimate is unbiased: the mean over many
    # directions points along the finite-difference gradient of log sigma_F^2
    assert best.info["adversarial_J"] >= x0.info["adversarial_J"]
    at = x0.copy()
    fd = s._grad_log_var(model, at, None, 0.005, "fd")
    rng = np.random.default_rng(0)
    est = np.mean([s._grad_log_var(model, at, rng, 0.005, "spsa") for _ in range(150)],
                  axis=0)
    cos = float(np.sum(est * fd) / (np.linalg.norm(est) * np.linalg.norm(fd)))
    assert cos > 0.7, cos


def test_errors(model):
    with pytest.raises(InvalidParameterError, match="'volume_per_atom' parameter of "
                                                    "RandomDisorderSampler must be a finite pair"):
        RandomDisorderSampler(volume_per_atom=(20.0, 10.0)).sample(1, random_state=0)
    with pytest.raises(InvalidParameterError, match="too large for volume_per_atom"):
        RandomDisorderSampler(min_distance=4.0, volume_per_atom=(10.0, 12.0)).sample(1)
    with pytest.raises(InvalidParameterError, match="'angle_range' parameter"):
        RandomDisorderSampler(angle_range=(0.0, 100.0)).sample(1)
    with pytest.raises(InvalidParameterError, match="'prototype' parameter of "
                                                    "RattleStrainSampler must be a 3-D periodic"):
        RattleStrainSampler().sample(1)
    with pytest.raises(InvalidParameterError, match="needs a fitted HybridPotential"):
        UncertaintyMDSampler(starts=[bulk("Cu")]).sample(1, random_state=0)
    with pytest.raises(InvalidParameterError, match="'random_state' argument"):
        RandomDisorderSampler().sample(1, random_state="seed")
    with pytest.raises(InvalidParameterError, match="'gradient' parameter of "
                                                    "AdversarialSampler must be one of"):
        AdversarialSampler(starts=bulk("Cu"), gradient="exact").sample(1, model=model)
