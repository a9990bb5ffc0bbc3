"""σ in MD (issue #6): the committee σ of the calculator equals a slow per-member reference;
the vectorised SNAP Jacobian kernel equals the scalar LAMMPS-literal one; NVE with σ at every
step conserves energy.  No timings here (those are in ``benchmarks/md.py``)."""

import numpy as np
import pytest
from ase import units
from ase.build import bulk

from conftest import skewed_two_element_cell
from hybridpot import HybridPotential
from hybridpot._labels import matrix_to_voigt
from hybridpot.baselines import LennardJones
from hybridpot.descriptors import PowerSpectrum, SNAPBispectrum
from hybridpot.regression import LinearRegressor
from hybridpot.uq import Committee
from hybridpot.uq._committee import member_gradients

SPECIES = ["Cu", "Ni"]


def _descriptor(name):
    if name == "snap":
        return SNAPBispectrum(species=SPECIES, twojmax=4, rcutfac=3.3, radelem=[0.5, 0.45],
                              wj=[1.0, 0.8])
    if name == "snap_quadratic":
        return SNAPBispectrum(species=SPECIES, twojmax=2, rcutfac=3.3, quadraticflag=True)
    return PowerSpectrum(species=SPECIES, r_cut=3.6, n_max=3, l_max=2)


def _model(name, n_members, seed, coef_scale=0.05):
    """A 'fitted' hybrid model with random coefficients and a random committee."""
    r = np.random.default_rng(seed)
    desc = _descriptor(name)
    quadratic = name == "snap_quadratic"
    F = desc.n_features
    P = 1 + F + (F * (F + 1) // 2 if quadratic else 0)
    reg = LinearRegressor.from_coef(r.normal(scale=coef_scale, size=(len(SPECIES), P)),
                                    quadratic=quadratic)
    model = HybridPotential.from_fitted(
        desc, reg, baseline=LennardJones(epsilon=0.01, sigma=2.2, r_cut=3.6),
        reference_energies={"Cu": -3.5, "Ni": -4.4})
    n_phi = model.baseline.n_params
    model.uncertainty_ = Committee(
        modes=r.normal(scale=0.01, size=(n_members, len(SPECIES), P)),
        baseline_modes=r.normal(scale=1e-3, size=(n_members, n_phi)),
        baseline_shift=np.zeros(n_phi),
        noise_var={"energy": {"all": 1e-6}, "forces": {"all": 4e-4}, "stress": {"all": 1e-8}},
        inflation={"forces": 1.3}, quadratic=quadratic, grouped=False)
    return model


def _reference(model, atoms):
    """Slow reference: every member separately through the adjoint ``backward``."""
    com = model.uncertainty_
    z = np.array([SPECIES.index(s) for s in atoms.get_chemical_symbols()])
    X = model.descriptor.compute(atoms)
    pg = model.baseline.parameter_gradients(atoms)
    f_modes, s_modes = [], []
    for k in range(com.n_members):
        _, dE = member_gradients(com.modes[k:k + 1], X, z, com.quadratic)
        dr, deps = model.descriptor.backward(atoms, dE[0])
        f_modes.append(-dr + np.einsum("q,qia->ia", com.baseline_modes[k], pg["forces"]))
        s_modes.append(matrix_to_voigt(deps) / atoms.get_volume()
                       + com.baseline_modes[k] @ pg["stress"])
    f_var = np.sum(np.square(f_modes), axis=0)
    s_var = np.sum(np.square(s_modes), axis=0)
    f_std = np.sqrt((f_var + com.noise_var["forces"]["all"]) * com.inflation["forces"])
    s_std = np.sqrt(s_var + com.noise_var["stress"]["all"])
    return f_std, s_std


def _cell():
    at = skewed_two_element_cell(seed=7, rattle=0.1) * (2, 2, 1)
    return at


@pytest.mark.parametrize("name", ["snap", "snap_quadratic", "ps"])
def test_calculator_sigma_equals_per_member_adjoint_reference(name, monkeypatch):
    """Design-row path (Jacobian rows times all members; linear models: the committee's own
    row kernel, quadratic ones: ``pair_rows``) against the per-member adjoint."""
    from hybridpot.uq import _committee

    monkeypatch.setattr(_committee, "FUSED_MAX_MEMBERS", 0)
    model = _model(name, n_members=6, seed=1)
    at = _cell()
    f_ref, s_ref = _reference(model, at)
    at.calc = model.calculator(uncertainty=True)
    f = at.get_forces()
    res = at.calc.results
    np.testing.assert_allclose(res["forces_std"], f_ref, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(res["stress_std"], s_ref, rtol=1e-10, atol=1e-16)
    # the mean of the σ path equals the adjoint-only calculator
    plain = at.copy()
    plain.calc = model.calculator()
    np.testing.assert_allclose(f, plain.get_forces(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(res["stress"], plain.get_stress(), rtol=1e-10, atol=1e-14)
    assert res["energy"] == pytest.approx(plain.get_potential_energy(), rel=1e-12)


def test_fused_adjoint_committee_path_equals_reference(monkeypatch):
    """Small committees of a descriptor with a fused ``_backward_many`` use that kernel."""
    from hybridpot.uq import _committee

    model = _model("ps", n_members=4, seed=2)
    at = _cell()
    f_ref, s_ref = _reference(model, at)
    monkeypatch.setattr(_committee, "FUSED_MAX_MEMBERS", 1000)
    out = model._evaluate(at, return_std=True)
    np.testing.assert_allclose(out["forces_std"], f_ref, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(out["stress_std"], s_ref, rtol=1e-10, atol=1e-16)


def test_baseline_evaluated_once_per_step_with_sigma(monkeypatch):
    model = _model("snap", n_members=3, seed=3)
    calls = []
    original = model._baseline

    def counting(atoms, forces=True, stress=True):
        calls.append(len(atoms))
        return original(atoms, forces=forces, stress=stress)

    monkeypatch.setattr(model, "_baseline", counting)
    at = _cell()
    at.calc = model.calculator(uncertainty=True)
    at.get_forces()
    assert len(calls) == 1
    com = model.uncertainty_
    with pytest.raises(Exception, match="coefficient blocks of shape"):
        Committee(com.modes[:, :, :-1], com.baseline_modes, com.baseline_shift, com.noise_var,
                  com.inflation, com.quadratic, com.grouped).evaluate(model, at)


@pytest.mark.parametrize("kw", [
    dict(twojmax=6, rcutfac=3.4, radelem=[0.5, 0.42], wj=[1.0, 0.8], bzeroflag=True),
    dict(twojmax=5, rcutfac=3.0, rmin0=0.3, rfac0=0.9),
    dict(twojmax=4, rcutfac=3.2, switchflag=False),
], ids=["2J6-radelem-bzero", "2J5-rmin0", "2J4-noswitch"])
def test_vectorised_snap_jacobian_equals_scalar_kernel(kw):
    """``_bispectrum_grad_lanes`` (production) against the scalar LAMMPS ``compute_dbidrj``
    kernel on a slab with vacuum (varying neighbour counts, a partly empty lane block)."""
    from hybridpot._validation import species_indices
    from hybridpot.descriptors import _snap_kernels as K
    from hybridpot.neighbors import neighbor_list

    at = skewed_two_element_cell(seed=4, rattle=0.15) * (3, 3, 2)
    del at[5]  # 71 atoms: two lane blocks of 36, the last one partly empty
    at.pbc = (True, True, False)
    at.center(vacuum=3.0, axis=2)
    assert len(at) % K.LANES != 0 and len(at) % 4 != 0
    d = SNAPBispectrum(species=SPECIES, **kw)
    d._validate()
    nl = neighbor_list(at, d.r_cut)
    assert np.diff(nl.offsets).min() < np.diff(nl.offsets).max()
    t = d._tables
    args = d._pair_arrays(nl, species_indices(at, d._species))
    cv = (d._rfac0, d._rmin0, d._switch, d._wself, d._bzero_arr, d._J, t["idxu_block"],
          t["rootpq"], t["cglist"], t["idxcg_block"], t["idxz"], t["idxz_block"], t["idxb"])
    B, dB = K._bispectrum_grad(*args, *cv)
    B2, dB2 = K._bispectrum_grad_lanes(*args, *cv)
    np.testing.assert_allclose(B2, B, rtol=1e-12, atol=1e-12 * np.abs(B).max())
    np.testing.assert_allclose(dB2, dB, rtol=1e-11, atol=1e-12 * np.abs(dB).max())
    assert np.abs(dB).max() > 0


def test_snap_jacobian_finite_differences_periodic_skewed_cell():
    """Central finite differences of the (vectorised) SNAP Jacobian on a rattled periodic
    non-orthogonal cell, positions and strain."""
    d = SNAPBispectrum(species=SPECIES, twojmax=4, rcutfac=3.3, radelem=[0.5, 0.45],
                       wj=[1.0, 0.8])
    at = skewed_two_element_cell(seed=9, rattle=0.12)
    X, dX = d.compute(at, gradients=True)
    dense = dX.dense()
    h = 1e-5
    for k in range(len(at)):
        for a in range(3):
            p, m = at.copy(), at.copy()
            p.positions[k, a] += h
            m.positions[k, a] -= h
            fd = (d.compute(p) - d.compute(m)) / (2 * h)
            np.testing.assert_allclose(dense[:, :, k, a], fd, rtol=1e-5,
                                       atol=2e-6 * max(np.abs(fd).max(), 1.0))
    eps = np.zeros((3, 3))
    eps[0, 1] = eps[1, 0] = h
    p, m = at.copy(), at.copy()
    p.set_cell(at.cell @ (np.eye(3) + eps), scale_atoms=True)
    m.set_cell(at.cell @ (np.eye(3) - eps), scale_atoms=True)
    fd = (d.compute(p) - d.compute(m)) / (2 * h)
    an = dX.strain[:, 0, 1] + dX.strain[:, 1, 0]
    np.testing.assert_allclose(an, fd, rtol=1e-5, atol=2e-6 * max(np.abs(fd).max(), 1.0))


def test_nve_with_sigma_every_step_conserves_energy():
    """NVE (1 fs) through the σ path (forces from the Jacobian design rows): energy is
    conserved and the trajectory is the one of the plain adjoint calculator."""
    from ase.md.verlet import VelocityVerlet

    from hybridpot._compat import thermalize

    # small ML coefficients: a random model with large ones is not a stable solid
    model = _model("snap", n_members=4, seed=5, coef_scale=0.005)
    runs = {}
    for unc in (True, False):
        at = bulk("Cu", "fcc", a=3.61, cubic=True) * (2, 2, 2)
        at.symbols[::3] = "Ni"
        at.rattle(stdev=0.02, seed=3)
        at.calc = model.calculator(uncertainty=unc)
        thermalize(at, 300, np.random.default_rng(6))
        dyn = VelocityVerlet(at, timestep=1.0 * units.fs)
        etot, stds = [], []
        for _ in range(30):
            dyn.run(5)
            etot.append(at.get_total_energy() / len(at))
            if unc:
                stds.append(at.calc.results["forces_std"].mean())
        runs[unc] = at.positions.copy()
        if unc:
            etot = np.array(etot)
            t_ps = np.arange(len(etot)) * 5e-3
            drift = abs(np.polyfit(t_ps, etot, 1)[0])  # eV/atom/ps
            assert drift < 1e-5, drift
            # σ is recomputed at every step: it changes along the trajectory
            assert np.ptp(stds) > 0
    np.testing.assert_allclose(runs[True], runs[False], atol=1e-9)
