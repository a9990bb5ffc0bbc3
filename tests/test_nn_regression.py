"""NeuralNetworkRegressor: hand-written gradients against finite differences, fitting a known
smooth toy potential, forces = -dE/dr through the descriptor, ensembles, persistence, the
scikit-learn contract and typed errors.

The toy descriptor below (radial Gaussians with a cosine cutoff, exact Jacobian and adjoint) is
independent of the project's descriptors so these tests do not depend on them.
"""

import io
import json
import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning

from hybridpot import (InvalidParameterError, MissingLabelsError, ModelFormatError,
                       NotFittedError, UnknownSpeciesError)
from hybridpot.descriptors import Descriptor
from hybridpot.regression import (REGRESSORS, VOIGT, BatchSource, NeuralNetworkRegressor,
                                  StructureBatch)
from hybridpot.regression._nn import (ACTIVATIONS, _Data, _Layout, _pair_adjoint_kernel,
                                      _pair_forward_kernel, activation)

from conftest import skewed_two_element_cell

SPECIES = ["Cu", "Ni"]


# ------------------------------------------------------------------------------------------
# toy descriptor and toy target
# ------------------------------------------------------------------------------------------
class GaussDescriptor(Descriptor):
    """X_ik = sum_j exp(-a_k r_ij^2) f_c(r_ij), f_c = (cos(pi r / r_cut) + 1) / 2."""

    def __init__(self, *, species=("Cu", "Ni"), r_cut=4.0, alphas=(0.25, 0.5, 0.9, 1.5)):
        self.species = species
        self.r_cut = r_cut
        self.alphas = alphas

    def _validate(self):
        self._check_common()
        self._a = np.asarray(self.alphas, dtype=np.float64)

    @property
    def n_features(self):
        return len(self.alphas)

    def _terms(self, nl):
        r = nl.d[:, None]
        rc = self._r_cut
        fc = 0.5 * (np.cos(np.pi * r / rc) + 1.0)
        dfc = -0.5 * np.pi / rc * np.sin(np.pi * r / rc)
        g = np.exp(-self._a * r ** 2)
        return g * fc, (-2.0 * self._a * r * g) * fc + g * dfc  # (P, K) value, d/dr

    def _compute(self, nl, species_idx, gradients):
        t, dt = self._terms(nl)
        X = np.zeros((nl.n_atoms, self.n_features))
        np.add.at(X, nl.i, t)
        if not gradients:
            return X, None
        unit = nl.D / nl.d[:, None]
        return X, dt[:, None, :] * unit[:, :, None]

    def _backward(self, nl, species_idx, dE_dX):
        _, dt = self._terms(nl)
        return np.einsum("pk,pk->p", dt, dE_dX[nl.i])[:, None] * nl.D / nl.d[:, None]


DESC = GaussDescriptor(species=SPECIES)
U = np.array([[1.2, -0.7, 0.5, 0.9], [-0.4, 1.1, 0.8, -0.6]])
V = np.array([0.6, 0.3, -0.5, 0.2])


def toy_atomic(X, sp):
    """Known smooth per-atom energy and its gradient: eps = s_z tanh(X u_z) + (X v)^2."""
    s = np.array([0.8, -0.5])[sp]
    t = np.tanh(np.einsum("nk,nk->n", X, U[sp]))
    q = X @ V
    eps = s * t + q ** 2
    grad = (s * (1 - t ** 2))[:, None] * U[sp] + 2 * q[:, None] * V[None, :]
    return eps, grad


def labels(atoms):
    X = DESC.compute(atoms)
    sp = np.array([SPECIES.index(s) for s in atoms.get_chemical_symbols()])
    eps, grad = toy_atomic(X, sp)
    dE_dr, dE_deps = DESC.backward(atoms, grad)
    sig = dE_deps / atoms.get_volume()
    return eps.sum(), -dE_dr, np.array([sig[a, b] for a, b in VOIGT])


def structures(n, seed, scale=(0.95, 1.05), rattle=0.15):
    out = []
    r = np.random.default_rng(seed)
    for k in range(n):
        a = skewed_two_element_cell(seed=seed * 1000 + k, rattle=rattle)
        f = r.uniform(*scale)
        a.set_cell(a.cell.array * f, scale_atoms=True)
        out.append(a)
    return out


def make_batch(atoms_list, with_labels=True, stress=True, forces=True, energy=True, offset=0):
    """StructureBatch of ``atoms_list`` for the toy descriptor (labels from the toy target)."""
    Xs, sps, sts, pi, pj, rij, dd = [], [], [], [], [], [], []
    E, Fs, Ss, vol = [], [], [], []
    off = 0
    for s, a in enumerate(atoms_list):
        X, g = DESC.compute(a, gradients=True)
        Xs.append(X)
        sps.append(np.array([SPECIES.index(c) for c in a.get_chemical_symbols()]))
        sts.append(np.full(len(a), s))
        pi.append(g.pair_i + off)
        pj.append(g.pair_j + off)
        rij.append(g.rij)
        dd.append(g.d_drij)
        e, f, st = labels(a) if with_labels else (np.nan, np.full((len(a), 3), np.nan),
                                                   np.full(6, np.nan))
        E.append(e if energy else np.nan)
        Fs.append(f if forces else np.full((len(a), 3), np.nan))
        Ss.append(st if stress else np.full(6, np.nan))
        vol.append(a.get_volume())
        off += len(a)
    from hybridpot.descriptors import DescriptorGradients

    gr = DescriptorGradients(np.concatenate(pi), np.concatenate(pj), np.concatenate(rij),
                             np.concatenate(dd), off)
    n_s = len(atoms_list)
    return StructureBatch(
        X=np.concatenate(Xs), species=np.concatenate(sps).astype(np.int64),
        structure=np.concatenate(sts).astype(np.int64), gradients=gr, volume=np.array(vol),
        energy=np.array(E), forces=np.concatenate(Fs), stress=np.array(Ss),
        weights={"energy": np.ones(n_s), "forces": np.ones(n_s), "stress": np.ones(n_s)},
        group=np.zeros(n_s, dtype=np.int64), index=offset + np.arange(n_s))


@pytest.fixture(scope="module")
def train_batches():
    atoms = structures(36, seed=1)
    return [make_batch(atoms[:18]), make_batch(atoms[18:], offset=18)]


@pytest.fixture(scope="module")
def test_atoms():
    return structures(10, seed=2)


@pytest.fixture(scope="module")
def fitted(train_batches):
    """A small L-BFGS fit used by several tests (stops at max_iter, hence the warning)."""
    reg = NeuralNetworkRegressor(hidden_layer_sizes=(8, 8), max_iter=300, random_state=0)
    with pytest.warns(ConvergenceWarning, match="max_iter=300"):
        return reg.fit(train_batches)


def random_model(rng, act="tanh", hidden=(5, 4), n_models=1):
    """An unfitted-by-training model with random weights and non-trivial standardisation."""
    reg = NeuralNetworkRegressor(hidden_layer_sizes=hidden, activation=act, n_models=n_models)
    lay = _Layout(4, hidden, 2)
    state = {"format_version": 1, "n_features": 4, "n_species": 2, "energy_scale": 0.7}
    arrays = {"params": rng.normal(0, 0.6, (n_models, lay.n_params)),
              "x_mean": rng.normal(0, 0.3, (2, 4)), "x_scale": rng.uniform(0.5, 2, (2, 4)),
              "energy_shift": np.array([-0.3, 0.2]), "species_trained": np.ones(2, np.int8)}
    return reg.set_fitted_state(state, arrays)


# ------------------------------------------------------------------------------------------
# kernels and derivatives
# ------------------------------------------------------------------------------------------
def _np_pair_forward(gr, G, structure, n_struct):
    """Plain-numpy reference of _pair_forward_kernel."""
    g = np.einsum("paf,pf->pa", gr.d_drij, G[gr.pair_i])
    dE_dr = np.zeros((gr.n_atoms, 3))
    np.add.at(dE_dr, gr.pair_j, g)
    np.add.at(dE_dr, gr.pair_i, -g)
    dE_deps = np.zeros((n_struct, 3, 3))
    np.add.at(dE_deps, structure[gr.pair_i], g[:, :, None] * gr.rij[:, None, :])
    return dE_dr, dE_deps


def _np_pair_adjoint(gr, dr_bar, deps_bar, structure):
    """Plain-numpy reference of _pair_adjoint_kernel."""
    gb = dr_bar[gr.pair_j] - dr_bar[gr.pair_i]
    gb += np.einsum("pab,pb->pa", deps_bar[structure[gr.pair_i]], gr.rij)
    out = np.zeros((gr.n_atoms, gr.d_drij.shape[2]))
    np.add.at(out, gr.pair_i, np.einsum("pa,paf->pf", gb, gr.d_drij))
    return out


def test_pair_kernels_match_numpy_reference_and_are_adjoint(rng):
    b = make_batch(structures(3, seed=5))
    gr, st = b.gradients, b.structure
    G = rng.normal(size=(b.n_atoms, 4))
    args = (gr.pair_i, gr.pair_j, st[gr.pair_i], gr.rij, gr.d_drij)
    dE_dr, dE_deps = _pair_forward_kernel(*args, G, b.n_atoms, 3)
    ref_dr, ref_deps = _np_pair_forward(gr, G, st, 3)
    np.testing.assert_allclose(dE_dr, ref_dr, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dE_deps, ref_deps, rtol=1e-12, atol=1e-12)
    # per structure it is the descriptor's own Jacobian contraction
    np.testing.assert_allclose(dE_dr, gr.vjp(G)[0], rtol=1e-12, atol=1e-12)
    dr_bar, deps_bar = rng.normal(size=(b.n_atoms, 3)), rng.normal(size=(3, 3, 3))
    Gb = _pair_adjoint_kernel(*args, dr_bar, deps_bar, b.n_atoms)
    np.testing.assert_allclose(Gb, _np_pair_adjoint(gr, dr_bar, deps_bar, st), rtol=1e-12,
                               atol=1e-12)
    lhs = np.sum(dE_dr * dr_bar) + np.sum(dE_deps * deps_bar)
    assert lhs == pytest.approx(np.sum(G * Gb), rel=1e-12)


@pytest.mark.parametrize("act", ACTIVATIONS)
def test_activation_derivatives_fd(act):
    a = np.linspace(-4, 4, 41)
    h = 1e-5
    f, d1, d2 = activation(act, a)
    fp, d1p, _ = activation(act, a + h)
    fm, d1m, _ = activation(act, a - h)
    np.testing.assert_allclose(d1, (fp - fm) / (2 * h), rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(d2, (d1p - d1m) / (2 * h), rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("act", ACTIVATIONS)
def test_dE_dX_matches_finite_differences(act, rng):
    reg = random_model(rng, act, n_models=2)
    X = rng.normal(0.5, 0.3, (7, 4))
    sp = np.array([0, 1, 1, 0, 1, 0, 0])
    eps, G = reg.atomic_energy_gradient(X, sp)
    np.testing.assert_allclose(eps, reg.atomic_energy(X, sp), rtol=1e-13)
    h = 1e-6
    fd = np.zeros_like(X)
    for i in range(X.shape[0]):
        for f in range(4):
            Xp, Xm = X.copy(), X.copy()
            Xp[i, f] += h
            Xm[i, f] -= h
            fd[i, f] = (reg.atomic_energy(Xp, sp).sum() - reg.atomic_energy(Xm, sp).sum()) / (2 * h)
    np.testing.assert_allclose(G, fd, rtol=1e-6, atol=1e-8)


def _loss_setup(rng, act, max_force_rows=None, alpha=0.0, hidden=(5, 4)):
    atoms = structures(4, seed=7)
    b = make_batch(atoms)
    # perturb labels away from any model and switch some labels/weights
    b.energy = b.energy + rng.normal(0, 0.5, 4)
    b.forces = b.forces + rng.normal(0, 0.3, b.forces.shape)
    b.stress = b.stress + rng.normal(0, 0.01, b.stress.shape)
    b.weights = {"energy": np.array([1.0, 2.0, 0.5, 1.0]), "forces": np.array([1.0, 0.0, 3.0, 1.0]),
                 "stress": np.array([5.0, 1.0, 0.0, 2.0])}
    b.energy[3] = np.nan
    reg = random_model(rng, act, hidden=hidden)
    reg.alpha = alpha
    data = _Data([b], 2, 4, max_force_rows, np.random.default_rng(0))
    items = data.items
    chunk = data.gather(items, [1.0, 2.0, 1.0, 1.0], reg.x_mean_, reg.x_scale_)
    return reg, chunk, _Layout(4, hidden, 2), b


@pytest.mark.parametrize("act, max_force_rows, hidden", [
    *[(a, None, (5, 4)) for a in ACTIVATIONS], *[(a, 5, (5, 4)) for a in ACTIVATIONS],
    ("silu", None, (3,)), ("tanh", None, (4, 3, 3))])
def test_loss_gradient_matches_finite_differences(act, max_force_rows, hidden, rng):
    """Energy + force + stress loss, weights, multipliers, L2: gradient w.r.t. all weights."""
    reg, chunk, lay, _ = _loss_setup(rng, act, max_force_rows, alpha=1e-3, hidden=hidden)
    assert chunk.need_G and chunk.has_stress and chunk.has_forces
    theta = reg.params_[0].copy()
    loss, grad = reg._total_loss(theta, lay, [chunk], 5.0, True)
    assert loss > 0
    h = 1e-6
    fd = np.zeros_like(theta)
    for k in range(theta.size):
        tp, tm = theta.copy(), theta.copy()
        tp[k] += h
        tm[k] -= h
        fd[k] = (reg._total_loss(tp, lay, [chunk], 5.0, False)[0]
                 - reg._total_loss(tm, lay, [chunk], 5.0, False)[0]) / (2 * h)
    np.testing.assert_allclose(grad, fd, rtol=2e-5, atol=1e-7 * np.abs(fd).max())


def test_loss_value_matches_direct_evaluation(rng):
    """The chunk loss equals sum(weight * residual**2) computed from predict_batch."""
    reg, chunk, lay, b = _loss_setup(rng, "silu")
    pred = reg.predict_batch(b)
    mult = np.array([1.0, 2.0, 1.0, 1.0])
    w = b.weights
    n = b.n_atoms_per_structure
    ok_e = np.isfinite(b.energy)
    ref = np.sum((mult * w["energy"] * ((pred["energy"] - b.energy) / n) ** 2)[ok_e])
    ref += np.sum((mult * w["forces"])[b.structure][:, None] * (pred["forces"] - b.forces) ** 2)
    ref += np.sum((mult * w["stress"])[:, None] * (pred["stress"] - b.stress) ** 2)
    loss, _ = reg._total_loss(reg.params_[0], lay, [chunk], 1.0, False)
    assert loss == pytest.approx(ref, rel=1e-10)


# ------------------------------------------------------------------------------------------
# fitting
# ------------------------------------------------------------------------------------------
def _errors(reg, atoms):
    b = make_batch(atoms)
    p = reg.predict_batch(b)
    n = b.n_atoms_per_structure
    e_rmse = np.sqrt(np.mean(((p["energy"] - b.energy) / n) ** 2))
    f_rmse = np.sqrt(np.mean((p["forces"] - b.forces) ** 2))
    e_spread = np.std(b.energy / n)
    f_rms = np.sqrt(np.mean(b.forces ** 2))
    return e_rmse / e_spread, f_rmse / f_rms


def test_lbfgs_fits_toy_target(fitted, test_atoms):
    e_rel, f_rel = _errors(fitted, test_atoms)
    assert e_rel < 0.1
    assert f_rel < 0.1
    assert fitted.loss_curve_[0][-1] < 0.02 * fitted.loss_curve_[0][0]
    assert fitted.n_iter_[0] >= 10


def test_adam_with_early_stopping_fits_and_keeps_best(train_batches, test_atoms):
    reg = NeuralNetworkRegressor(hidden_layer_sizes=(12,), solver="adam", learning_rate=0.02,
                                 batch_size=6, max_iter=150, early_stopping=True,
                                 validation_fraction=0.2, n_iter_no_change=15, random_state=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reg.fit(train_batches)
    vals = reg.validation_scores_[0]
    assert len(vals) == reg.n_iter_[0] == len(reg.loss_curve_[0])
    assert min(vals) < 0.1 * vals[0]
    e_rel, f_rel = _errors(reg, test_atoms)
    assert e_rel < 0.35 and f_rel < 0.35


@pytest.mark.parametrize("solver", ["lbfgs", "adam"])
def test_early_stopping_keeps_the_weights_with_the_best_validation_loss(solver):
    """Noisy labels and a flexible net over-fit; the returned members must be the ones with
    the lowest validation loss, recomputed here from predict_batch on the held-out set."""
    r = np.random.default_rng(0)
    batches = []
    for k, a in enumerate(structures(24, seed=6)):
        b = make_batch([a], offset=k)
        b.energy = b.energy + r.normal(0, 0.3)
        b.forces = b.forces + r.normal(0, 0.3, b.forces.shape)
        b.weights = {"energy": np.array([3.0]), "forces": np.array([1.0]),
                     "stress": np.array([0.0])}
        batches.append(b)
    reg = NeuralNetworkRegressor(hidden_layer_sizes=(16, 16), solver=solver, max_iter=400,
                                 learning_rate=0.01, batch_size=4, early_stopping=True,
                                 validation_fraction=0.25, n_iter_no_change=8, n_models=2,
                                 random_state=2)
    reg.fit(batches)  # stops early: no ConvergenceWarning
    state, arrays = reg.get_fitted_state()
    assert reg.validation_index_[0] != reg.validation_index_[1]
    for m in range(2):
        vals = reg.validation_scores_[m]
        held = reg.validation_index_[m]
        assert len(held) == 6 and reg.n_iter_[m] == len(vals) < 400
        assert np.argmin(vals) <= len(vals) - 8
        member = NeuralNetworkRegressor(hidden_layer_sizes=(16, 16)).set_fitted_state(
            state, dict(arrays, params=arrays["params"][m:m + 1]))
        loss = 0.0
        for k in held:
            b = batches[k]
            p = member.predict_batch(b)
            loss += 3.0 * ((p["energy"][0] - b.energy[0]) / b.n_atoms) ** 2
            loss += np.sum((p["forces"] - b.forces) ** 2)
        assert loss / len(held) == pytest.approx(min(vals), rel=1e-9)


def test_fit_is_deterministic_under_random_state(train_batches):
    kw = dict(hidden_layer_sizes=(6,), solver="adam", max_iter=3, batch_size=5,
              early_stopping=True, n_models=2, bootstrap=True, max_force_rows=4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a = NeuralNetworkRegressor(**kw, random_state=11).fit(train_batches)
        b = NeuralNetworkRegressor(**kw, random_state=11).fit(train_batches)
        c = NeuralNetworkRegressor(**kw, random_state=12).fit(train_batches)
    np.testing.assert_array_equal(a.params_, b.params_)
    assert a.loss_curve_ == b.loss_curve_
    assert not np.allclose(a.params_, c.params_)
    assert not np.allclose(a.params_[0], a.params_[1])  # members differ


# ------------------------------------------------------------------------------------------
# forces, stress and the MD (adjoint) path
# ------------------------------------------------------------------------------------------
def _predicted_energy(reg, atoms):
    return reg.predict_batch(make_batch([atoms], with_labels=False))["energy"][0]


def test_forces_and_stress_are_energy_derivatives(rng):
    reg = random_model(rng, "softplus", n_models=3)
    atoms = skewed_two_element_cell(seed=3, rattle=0.12)
    pred = reg.predict_batch(make_batch([atoms], with_labels=False))
    h = 1e-5
    fd = np.zeros((len(atoms), 3))
    for k in range(len(atoms)):
        for a in range(3):
            p, m = atoms.copy(), atoms.copy()
            p.positions[k, a] += h
            m.positions[k, a] -= h
            fd[k, a] = -(_predicted_energy(reg, p) - _predicted_energy(reg, m)) / (2 * h)
    np.testing.assert_allclose(pred["forces"], fd, rtol=1e-6, atol=1e-8)
    assert np.abs(fd).max() > 1e-2
    fd_s = np.zeros(6)
    for v, (a, b) in enumerate(VOIGT):
        e = np.zeros((3, 3))
        e[a, b] = e[b, a] = h / (1 if a == b else 2)
        vals = []
        for sgn in (1, -1):
            at = atoms.copy()
            Fm = np.eye(3) + sgn * e
            at.set_cell(atoms.cell.array @ Fm.T, scale_atoms=False)
            at.positions = atoms.positions @ Fm.T
            vals.append(_predicted_energy(reg, at))
        fd_s[v] = (vals[0] - vals[1]) / (2 * h) / atoms.get_volume()
    np.testing.assert_allclose(pred["stress"][0], fd_s, rtol=1e-6, atol=1e-9)


def test_adjoint_path_through_descriptor_backward_gives_the_same_forces(fitted):
    atoms = skewed_two_element_cell(seed=9, rattle=0.1)
    pred = fitted.predict_batch(make_batch([atoms], with_labels=False))
    X = DESC.compute(atoms)
    sp = np.array([SPECIES.index(c) for c in atoms.get_chemical_symbols()])
    eps, dE_dX = fitted.atomic_energy_gradient(X, sp)
    dE_dr, dE_deps = DESC.backward(atoms, dE_dX)
    np.testing.assert_allclose(-dE_dr, pred["forces"], rtol=1e-10, atol=1e-12)
    sig = dE_deps / atoms.get_volume()
    np.testing.assert_allclose([sig[a, b] for a, b in VOIGT], pred["stress"][0], rtol=1e-10,
                               atol=1e-13)
    assert eps.sum() == pytest.approx(pred["energy"][0], rel=1e-12)


def test_predict_batch_without_gradients_and_non_periodic_stress(fitted, test_atoms):
    b = make_batch(test_atoms[:2])
    b.gradients = None
    out = fitted.predict_batch(b)
    assert set(out) == {"energy"}
    b = make_batch(test_atoms[:2])
    b.volume = np.array([np.nan, b.volume[1]])
    out = fitted.predict_batch(b)
    assert np.isnan(out["stress"][0]).all() and np.isfinite(out["stress"][1]).all()


# ------------------------------------------------------------------------------------------
# ensembles
# ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ensemble(train_batches):
    reg = NeuralNetworkRegressor(hidden_layer_sizes=(8, 8), max_iter=150, n_models=3,
                                 random_state=4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return reg.fit(train_batches)


def test_ensemble_std_positive_and_larger_far_from_data(ensemble, test_atoms):
    assert ensemble.has_uncertainty
    near = ensemble.predict_batch(make_batch(test_atoms), return_std=True)
    for k in ("energy", "forces", "stress"):
        assert near[k + "_std"].shape == near[k].shape
        assert np.all(near[k + "_std"] >= 0) and near[k + "_std"].mean() > 0
    # far: strongly compressed and stretched cells (descriptors well outside the training set)
    far_atoms = structures(4, seed=8, scale=(0.8, 0.82)) + structures(4, seed=9, scale=(1.3, 1.35))
    far = ensemble.predict_batch(make_batch(far_atoms), return_std=True)
    n_near, n_far = 4.0, 4.0
    assert np.median(far["energy_std"] / n_far) > 3 * np.median(near["energy_std"] / n_near)
    assert np.median(far["forces_std"][:16]) > 3 * np.median(near["forces_std"])
    # the std is the spread of the members' predictions
    m0 = NeuralNetworkRegressor(hidden_layer_sizes=(8, 8), n_models=1)
    state, arrays = ensemble.get_fitted_state()
    e = []
    for m in range(3):
        arr = dict(arrays, params=arrays["params"][m:m + 1])
        e.append(clone(m0).set_fitted_state(state, arr).predict_batch(
            make_batch(far_atoms))["energy"])
    np.testing.assert_allclose(far["energy"], np.mean(e, axis=0), rtol=1e-12)
    np.testing.assert_allclose(far["energy_std"], np.std(e, axis=0, ddof=1), rtol=1e-10)


def test_return_std_needs_an_ensemble(fitted, test_atoms):
    assert not fitted.has_uncertainty
    with pytest.raises(InvalidParameterError, match="'n_models'.*>= 2. Got 1"):
        fitted.predict_batch(make_batch(test_atoms[:1]), return_std=True)


def test_bootstrap_members_differ_and_fit(train_batches, test_atoms):
    reg = NeuralNetworkRegressor(hidden_layer_sizes=(8,), max_iter=150, n_models=2,
                                 bootstrap=True, random_state=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reg.fit(train_batches)
    e_rel, f_rel = _errors(reg, test_atoms)
    assert e_rel < 0.3 and f_rel < 0.3


def test_max_force_rows_subsamples_and_still_fits(train_batches, test_atoms):
    data = _Data(train_batches, 2, 4, 3, np.random.default_rng(0))
    info = data.info[0]
    assert info["fmask"].reshape(-1).sum() == 3 * 18
    assert info["p_order"].size < train_batches[0].gradients.pair_i.size or \
        np.isfinite(train_batches[0].stress).all()
    # without stress labels the pairs no kept force row needs are dropped
    atoms = structures(6, seed=1)
    b = make_batch(atoms, stress=False)
    d = _Data([b], 2, 4, 2, np.random.default_rng(0))
    assert 0 < d.info[0]["p_order"].size < b.gradients.pair_i.size
    # the stored batch is pruned to those pairs, and gathering it gives the same chunk as
    # selecting the pairs from the full batch
    kept = d.batches[0].gradients
    assert kept.pair_i.size == d.info[0]["p_order"].size
    ch = d.gather(d.items, [1.0] * len(d.items), np.zeros((2, 4)), np.ones((2, 4)))
    assert ch.pair_i.size == kept.pair_i.size
    full = np.hstack([b.gradients.pair_i[:, None], b.gradients.pair_j[:, None],
                      b.gradients.rij])
    sel = np.hstack([ch.pair_i[:, None], ch.pair_j[:, None], ch.rij])
    assert {tuple(r) for r in sel} <= {tuple(r) for r in full}
    reg = NeuralNetworkRegressor(hidden_layer_sizes=(8,), max_iter=200, max_force_rows=4,
                                 random_state=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reg.fit(train_batches)
    e_rel, f_rel = _errors(reg, test_atoms)
    assert e_rel < 0.3 and f_rel < 0.3


# ------------------------------------------------------------------------------------------
# persistence and scikit-learn contract
# ------------------------------------------------------------------------------------------
def test_fitted_state_round_trip_gives_identical_predictions(ensemble, test_atoms):
    state, arrays = ensemble.get_fitted_state()
    text = json.dumps(state)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    buf.seek(0)
    loaded = dict(np.load(buf, allow_pickle=False))
    d = json.loads(json.dumps(ensemble.to_dict()))
    new = REGRESSORS[d["class"]](**d["params"]).set_fitted_state(json.loads(text), loaded)
    b = make_batch(test_atoms)
    p1, p2 = ensemble.predict_batch(b, return_std=True), new.predict_batch(b, return_std=True)
    for k in p1:
        np.testing.assert_array_equal(p1[k], p2[k])
    assert new.loss_curve_ == ensemble.loss_curve_


def test_set_fitted_state_rejects_mismatched_or_corrupt_state(ensemble):
    state, arrays = ensemble.get_fitted_state()
    with pytest.raises(ModelFormatError, match="'params' has shape"):
        NeuralNetworkRegressor(hidden_layer_sizes=(8, 8), n_models=2).set_fitted_state(
            state, arrays)
    with pytest.raises(ModelFormatError, match="'params' has shape"):
        NeuralNetworkRegressor(hidden_layer_sizes=(9, 8), n_models=3).set_fitted_state(
            state, arrays)
    with pytest.raises(ModelFormatError, match="incomplete or corrupt"):
        NeuralNetworkRegressor(hidden_layer_sizes=(8, 8), n_models=3).set_fitted_state(
            {k: v for k, v in state.items() if k != "n_features"}, arrays)
    with pytest.raises(ModelFormatError, match="format_version 99"):
        NeuralNetworkRegressor(hidden_layer_sizes=(8, 8), n_models=3).set_fitted_state(
            dict(state, format_version=99), arrays)


def test_sklearn_clone_get_set_params(fitted):
    params = fitted.get_params()
    assert params["hidden_layer_sizes"] == (8, 8) and params["random_state"] == 0
    c = clone(fitted)
    assert c.get_params() == params
    assert not hasattr(c, "params_")
    c.set_params(activation="silu", n_models=4)
    assert c.activation == "silu" and c.n_models == 4 and fitted.activation == "tanh"
    assert NeuralNetworkRegressor().to_dict()["params"]["hidden_layer_sizes"] == [32, 32]
    assert REGRESSORS["NeuralNetworkRegressor"] is NeuralNetworkRegressor
    public_state = [k for k in vars(fitted) if not k.startswith("_") and k not in params]
    assert "params_" in public_state and all(k.endswith("_") for k in public_state)


def test_fit_returns_self_and_accepts_a_batch_source(train_batches):
    src = BatchSource(lambda: iter(train_batches), n_species=2, n_features=4)
    reg = NeuralNetworkRegressor(hidden_layer_sizes=(4,), max_iter=5, random_state=0)
    with pytest.warns(ConvergenceWarning):
        assert reg.fit(src) is reg
    with pytest.warns(ConvergenceWarning):
        ref = clone(reg).fit(train_batches)
    np.testing.assert_array_equal(reg.params_, ref.params_)


# ------------------------------------------------------------------------------------------
# typed errors
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kw, match", [
    ({"hidden_layer_sizes": ()}, r"'hidden_layer_sizes' parameter of NeuralNetworkRegressor "
                                 r"must be a non-empty sequence of positive ints.*Got \(\)"),
    ({"hidden_layer_sizes": (8, 0)}, r"'hidden_layer_sizes'.*Got \(8, 0\) instead"),
    ({"hidden_layer_sizes": "32"}, r"'hidden_layer_sizes'.*Got '32' instead"),
    ({"activation": "relu"}, r"'activation' parameter.*one of \{'tanh', 'softplus', 'silu'\}"
                             r".*Got 'relu'"),
    ({"solver": "sgd"}, r"'solver'.*Got 'sgd'"),
    ({"learning_rate": 0.0}, r"'learning_rate'.*float in \(0, inf\). Got 0.0"),
    ({"learning_rate": "fast"}, r"'learning_rate'.*Got 'fast'"),
    ({"alpha": -1.0}, r"'alpha'.*\[0, inf\). Got -1.0"),
    ({"n_models": 0}, r"'n_models'.*int in \[1, inf\]. Got 0"),
    ({"n_models": 2.5}, r"'n_models'.*Got 2.5"),
    ({"batch_size": 0}, r"'batch_size'.*Got 0"),
    ({"max_iter": -3}, r"'max_iter'.*Got -3"),
    ({"validation_fraction": 1.0}, r"'validation_fraction'.*\(0, 1\). Got 1.0"),
    ({"n_iter_no_change": 0}, r"'n_iter_no_change'.*Got 0"),
    ({"early_stopping": "yes"}, r"'early_stopping'.*bool. Got 'yes'"),
    ({"bootstrap": 1}, r"'bootstrap'.*bool. Got 1"),
    ({"max_force_rows": 0}, r"'max_force_rows'.*or None. Got 0"),
    ({"random_state": -1}, r"'random_state'.*Got -1"),
    ({"tol": -1e-3}, r"'tol'.*Got -0.001"),
])
def test_bad_hyperparameters_raise_typed_errors(kw, match, train_batches):
    reg = NeuralNetworkRegressor(**kw)  # __init__ only stores
    with pytest.raises(InvalidParameterError, match=match):
        reg.fit(train_batches)


def test_bad_data_and_usage_raise_typed_errors(fitted, train_batches, test_atoms):
    with pytest.raises(NotFittedError, match="not fitted yet"):
        NeuralNetworkRegressor().predict_batch(train_batches[0])
    with pytest.raises(NotFittedError):
        NeuralNetworkRegressor().atomic_energy(np.zeros((2, 4)), np.zeros(2, dtype=int))
    with pytest.raises(InvalidParameterError, match="'batches' argument"):
        NeuralNetworkRegressor().fit([1, 2])
    with pytest.raises(InvalidParameterError, match=r"shape \(n_atoms, 4\). Got \(3, 5\)"):
        fitted.atomic_energy(np.zeros((3, 5)), np.zeros(3, dtype=int))
    with pytest.raises(InvalidParameterError, match="must be finite"):
        fitted.atomic_energy(np.full((1, 4), np.nan), np.zeros(1, dtype=int))
    with pytest.raises(UnknownSpeciesError, match=r"\[0, 1\]. Got values in \[0, 2\]"):
        fitted.atomic_energy(np.zeros((2, 4)), np.array([0, 2]))
    with pytest.raises(InvalidParameterError, match="'batch' argument.*StructureBatch"):
        fitted.predict_batch(np.zeros((2, 4)))
    nolab = make_batch(test_atoms[:2], with_labels=False)
    with pytest.raises(MissingLabelsError, match="no structure with a usable label"):
        NeuralNetworkRegressor().fit([nolab])
    b = make_batch(test_atoms[:2])
    b.gradients = None
    with pytest.raises(MissingLabelsError, match="no descriptor gradients"):
        NeuralNetworkRegressor().fit([b])
    one = make_batch(test_atoms[:1])
    with pytest.raises(InvalidParameterError, match="'early_stopping'.*at least 2"):
        NeuralNetworkRegressor(early_stopping=True).fit([one])


def test_species_absent_from_training_cannot_be_predicted(test_atoms):
    cu = [a.copy() for a in structures(4, seed=3)]
    for a in cu:
        a.set_chemical_symbols(["Cu"] * len(a))
    b = make_batch(cu, energy=True, forces=True, stress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reg = NeuralNetworkRegressor(hidden_layer_sizes=(3,), max_iter=5, random_state=0).fit(
            BatchSource([b], n_species=2, n_features=4))
    assert reg.species_trained_.tolist() == [True, False]
    assert np.isfinite(reg.predict_batch(make_batch(cu[:1]))["energy"]).all()
    with pytest.raises(UnknownSpeciesError,
                       match=r"species indices \[1\], which had no atom.*only \[0\] can be"):
        reg.predict_batch(make_batch(test_atoms[:1]))


def test_energy_only_training_without_gradients(test_atoms):
    b = make_batch(structures(12, seed=4), forces=False, stress=False)
    b.gradients = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reg = NeuralNetworkRegressor(hidden_layer_sizes=(6,), max_iter=100,
                                     random_state=0).fit([b])
    assert reg.loss_curve_[0][-1] < 0.1 * reg.loss_curve_[0][0]
