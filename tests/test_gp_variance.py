"""SparseGPRegressor predictive variance of forces and stresses (the DTC / GAP term).

Independent truths: the exact-GP prior covariance of force and stress components as central
finite differences of the energy covariance ``sum_ij k(X_i(r), X_j(r')) / alpha`` on a rattled,
periodic, non-orthogonal two-element cell; the dense exact-GP posterior written out in function
space (all training environments inducing, so DTC equals the exact GP for any test
functional); a plain-numpy kernel Hessian for the numba kernel.
"""

import numpy as np
import pytest

from hybridpot import InvalidParameterError
from hybridpot.descriptors import PowerSpectrum
from hybridpot.regression import SparseGPRegressor
from hybridpot.regression._gp import _hessian_quadratic_forms, kernel_matrix

from conftest import skewed_two_element_cell
from test_gp_regression import SPECIES, cells, make_batch

VOIGT = [(0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1)]
H = 1e-4


@pytest.fixture(scope="module")
def desc():
    return PowerSpectrum(species=SPECIES, r_cut=3.0, n_max=2, l_max=2)


def _gp(kernel, **kw):
    return SparseGPRegressor(kernel=kernel, zeta=3, length_scale=0.05, random_state=0, **kw)


def _energy_trained(desc, kernel, n_struct=5, **kw):
    structs = cells(n_struct, seed=3)
    b = make_batch(structs, desc)
    b.energy = np.sin(np.arange(n_struct) * 1.3) * 0.05 + 0.01 * b.n_atoms_per_structure
    return _gp(kernel, **kw).fit([b]), b


def _kernel_sum(gp, sp1, X1, sp2, X2):
    """``sum_{i, j same element} k(X1_i, X2_j) / alpha`` (eV²)."""
    tot = 0.0
    for z in range(gp.n_species_):
        a, b = sp1 == z, sp2 == z
        if a.any() and b.any():
            tot += kernel_matrix(X1[a], X2[b], kernel=gp.kernel, zeta=gp.zeta,
                                 length_scale=gp.length_scale_ or 1.0,
                                 centre=gp.centre_[z], softening=gp.dot_softening_[z]).sum()
    return tot / gp.alpha_


def _displaced(desc, at):
    """Descriptors at ``r -/+ H e`` for every force component, then every strain (Voigt)."""
    out = []
    for k in range(len(at)):
        for a in range(3):
            pair = []
            for sgn in (-1, 1):
                ad = at.copy()
                ad.positions[k, a] += sgn * H
                pair.append(desc.compute(ad))
            out.append(pair)
    for a, c in VOIGT:
        pair = []
        for sgn in (-1, 1):
            eps = np.zeros((3, 3))
            eps[a, c] = sgn * H
            ad = at.copy()
            ad.set_cell(at.cell.array @ (np.eye(3) + eps).T, scale_atoms=False)
            ad.positions = at.positions @ (np.eye(3) + eps).T
            pair.append(desc.compute(ad))
        out.append(pair)
    return out


def _fd_prior_and_cross(gp, desc, at, train):
    """Exact-GP prior variances of the force and stress components of ``at`` and their
    covariances with the per-atom energy labels of ``train`` (central differences)."""
    sp = np.array([SPECIES.index(s) for s in at.get_chemical_symbols()])
    disp = _displaced(desc, at)
    nat = train.n_atoms_per_structure
    scale = np.concatenate([np.ones(3 * len(at)), np.full(6, 1.0 / at.get_volume())])
    prior, cross = [], []
    for (Xm, Xp), c in zip(disp, scale):
        s = [[_kernel_sum(gp, sp, A, sp, B) for B in (Xm, Xp)] for A in (Xm, Xp)]
        prior.append(c * c * (s[1][1] - s[1][0] - s[0][1] + s[0][0]) / (4 * H * H))
        row = []
        for t in range(train.n_structures):
            m = train.structure == t
            e = [_kernel_sum(gp, sp, A, train.species[m], train.X[m]) for A in (Xm, Xp)]
            row.append(c * (e[1] - e[0]) / (2 * H) / nat[t])
        cross.append(row)
    prior, cross = np.array(prior), np.array(cross)
    n3 = 3 * len(at)
    cross[:n3] *= -1.0                                  # F = -dE/dr
    return prior, cross


# ---------------------------------------------------------------------------------------------
# prior: the kernel Hessian through the descriptor Jacobian
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kernel", ["dot", "se"])
def test_force_and_stress_prior_variance_vs_finite_differences(desc, kernel):
    gp, train = _energy_trained(desc, kernel, n_struct=3, n_sparse=5)
    at = skewed_two_element_cell(seed=2, rattle=0.12)
    b = make_batch([at], desc)
    fd, _ = _fd_prior_and_cross(gp, desc, at, train)
    kF = gp._force_prior_variance(b.X, b.species, b.gradients)
    kS = gp._stress_prior_variance(b.X, b.species, b.structure, b.gradients, b.volume,
                                   np.array([True]))
    np.testing.assert_allclose(kF, fd[:12], rtol=1e-5, atol=1e-6 * fd[:12].max())
    np.testing.assert_allclose(kS, fd[12:], rtol=1e-5, atol=1e-6 * fd[12:].max())


def _hessian_reference(kernel, x, y, zeta, ls):
    """Dense ``d^2 k(x, y) / dx dy^T`` (plain numpy, raw descriptor coordinates)."""
    F = x.size
    if kernel == "se":
        d = x - y
        k = np.exp(-d @ d / (2 * ls ** 2))
        return k / ls ** 2 * (np.eye(F) - np.outer(d, d) / ls ** 2)
    nx, ny = np.linalg.norm(x), np.linalg.norm(y)
    xh, yh = x / nx, y / ny
    c = xh @ yh
    Px = (np.eye(F) - np.outer(xh, xh)) / nx
    Py = (np.eye(F) - np.outer(yh, yh)) / ny
    f1 = zeta * c ** (zeta - 1)
    f2 = zeta * (zeta - 1) * c ** (zeta - 2) if zeta >= 2 else 0.0
    return f2 * Px @ np.outer(yh, xh) @ Py + f1 * Px @ Py


@pytest.mark.parametrize("kernel,zeta", [("dot", 1), ("dot", 2), ("dot", 4), ("se", 1)])
def test_numba_hessian_forms_match_the_dense_reference(rng, kernel, zeta):
    n, C, F, ls = 5, 3, 4, 0.8
    X = rng.normal(0.5, 1.0, (n, F))
    sp = np.array([0, 1, 0, 0, 1], dtype=np.int64)
    G = rng.normal(size=(n, C, F))
    want = np.zeros(C)
    for u in range(n):
        for v in range(n):
            if sp[u] == sp[v]:
                Hm = _hessian_reference(kernel, X[u], X[v], zeta, ls)
                want += np.einsum("cf,fg,cg->c", G[u], Hm, G[v])
    if kernel == "dot":
        nrm = np.linalg.norm(X, axis=1)
        Y = X / nrm[:, None]
        Gk = (G - np.einsum("ucf,uf->uc", G, Y)[:, :, None] * Y[:, None, :]) / nrm[:, None, None]
    else:
        Y, Gk = X - X.mean(axis=0), G
    got = _hessian_quadratic_forms(Y, sp, np.arange(n), Gk, kernel == "dot", zeta,
                                   1.0 / ls ** 2)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12 * np.abs(want).max())
    # a species without inducing points (-1) contributes nothing
    sp2 = sp.copy()
    sp2[sp2 == 1] = -1
    only0 = _hessian_quadratic_forms(Y, sp2, np.arange(n), Gk, kernel == "dot", zeta,
                                     1.0 / ls ** 2)
    m = sp == 0
    ref0 = _hessian_quadratic_forms(Y[m], sp[m], np.arange(m.sum()), Gk[m], kernel == "dot",
                                    zeta, 1.0 / ls ** 2)
    np.testing.assert_allclose(only0, ref0, rtol=1e-12)


# ---------------------------------------------------------------------------------------------
# posterior: dense exact GP
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kernel", ["dot", "se"])
def test_force_and_stress_std_equal_the_exact_gp(desc, kernel):
    """All training environments inducing: the DTC posterior of any linear functional of the
    per-atom energies (forces, stresses) is the exact GP posterior."""
    gp, train = _energy_trained(desc, kernel, n_sparse=1000, bias=False, jitter=1e-13)
    assert gp.inducing_.shape[0] == train.n_atoms
    at = skewed_two_element_cell(seed=11, rattle=0.15)
    b = make_batch([at], desc)
    prior, cross = _fd_prior_and_cross(gp, desc, at, train)
    nat = train.n_atoms_per_structure
    parts = [(train.species[train.structure == s], train.X[train.structure == s])
             for s in range(train.n_structures)]
    Kff = np.array([[_kernel_sum(gp, *ps, *pt) / (nat[s] * nat[t])
                     for t, pt in enumerate(parts)] for s, ps in enumerate(parts)])
    C = Kff + gp.noise_["energy"] ** 2 * np.eye(train.n_structures)
    var = prior - np.einsum("ij,ij->i", cross @ np.linalg.inv(C), cross)
    out = gp.predict_batch(b, return_std=True, include_noise=False)
    got = np.concatenate([out["forces_std"].ravel(), out["stress_std"][0]]) ** 2
    np.testing.assert_allclose(got, var, rtol=1e-5, atol=1e-8 * var.max())
    # the projected (SoR) part alone is far smaller: derivatives of k at U are not in the
    # span of k(., U), so the DTC term is what carries the force uncertainty here
    proj = gp.set_params(derivative_variance="projected").predict_batch(
        b, return_std=True, include_noise=False)
    assert np.all(proj["forces_std"] ** 2 <= out["forces_std"] ** 2 + 1e-15)
    assert np.sum(proj["forces_std"] ** 2) < 0.9 * np.sum(out["forces_std"] ** 2)


@pytest.mark.parametrize("kernel", ["dot", "se"])
def test_energy_dtc_term_vanishes_on_inducing_environments(desc, kernel):
    gp, train = _energy_trained(desc, kernel, n_sparse=1000, bias=False, jitter=1e-13)
    X, sp, st = train.X, train.species, train.structure
    Er = gp.design_rows(train, forces=False, stress=False)[0]
    dtc = gp._dtc_energy_variance(X, sp, st, train.n_structures, Er)
    prior = np.array([_kernel_sum(gp, sp[st == s], X[st == s], sp[st == s], X[st == s])
                      for s in range(train.n_structures)])
    assert np.all(dtc <= 1e-7 * prior)


def test_projected_option_reproduces_the_weight_posterior_only(desc):
    gp, _ = _energy_trained(desc, "se", n_sparse=6)
    b = make_batch(cells(2, seed=40), desc)
    Er, Fr, Sr = gp.design_rows(b)
    proj = gp.set_params(derivative_variance="projected").predict_batch(b, return_std=True)
    np.testing.assert_allclose(proj["forces_std"].ravel() ** 2,
                               gp._param_variance(Fr) + gp.noise_.get("forces", 0.0) ** 2,
                               rtol=1e-12)
    full = gp.set_params(derivative_variance="dtc").predict_batch(b, return_std=True)
    assert np.all(full["forces_std"] >= proj["forces_std"])
    assert np.all(full["stress_std"] >= proj["stress_std"])
    np.testing.assert_array_equal(full["energy_std"], proj["energy_std"])
    np.testing.assert_array_equal(full["forces"], proj["forces"])


def test_force_std_reaches_the_prior_far_from_the_data(desc):
    """SE kernel, descriptors moved far away: no information, std^2 = the exact prior."""
    gp, _ = _energy_trained(desc, "se", n_sparse=6, bias=False)
    b = make_batch(cells(1, seed=50), desc)
    b.X = b.X + 50.0 * gp.length_scale_
    out = gp.predict_batch(b, return_std=True, include_noise=False)
    prior = gp._force_prior_variance(b.X, b.species, b.gradients)
    np.testing.assert_allclose(out["forces_std"].ravel() ** 2, prior, rtol=1e-10)
    assert np.all(prior > 0)


def test_bad_derivative_variance_raises(desc):
    gp, train = _energy_trained(desc, "se", n_struct=3, n_sparse=4)
    with pytest.raises(InvalidParameterError,
                       match=r"'derivative_variance' parameter of SparseGPRegressor must be one "
                             r"of \{'dtc', 'projected', 'committee'\}. Got 'full'"):
        _gp("se", derivative_variance="full").fit([train])
    gp.set_params(derivative_variance="exact")
    with pytest.raises(InvalidParameterError, match=r"'derivative_variance' .* Got 'exact'"):
        gp.predict_batch(make_batch(cells(1, seed=5), desc), return_std=True)


@pytest.mark.parametrize("kernel", ["dot", "se"])
def test_blocked_stress_sum_equals_one_block(rng, kernel):
    from hybridpot.regression._gp import _stress_prior_kernel

    n, F = 11, 4
    X = rng.normal(0.5, 1.0, (n, F))
    Y = X / np.linalg.norm(X, axis=1)[:, None] if kernel == "dot" else X - X.mean(axis=0)
    sp = rng.integers(-1, 2, n)
    G = rng.normal(size=(n, 6, F))
    order = np.array([0, 2, 3, 5, 6, 7, 8, 10, 1, 4, 9], dtype=np.int64)
    bounds = np.array([0, 8, 11], dtype=np.int64)
    args = (Y, sp, order, bounds, G, kernel == "dot", 3, 1.0 / 0.7 ** 2)
    one = _stress_prior_kernel(*args, 64)
    for block in (1, 3, 5):
        np.testing.assert_allclose(_stress_prior_kernel(*args, block), one, rtol=1e-12,
                                   atol=1e-12 * np.abs(one).max())
    direct = _hessian_quadratic_forms(Y, sp, order[:8], G[order[:8]], kernel == "dot", 3,
                                      1.0 / 0.7 ** 2)
    np.testing.assert_allclose(one[0], direct, rtol=1e-12)


def test_energy_and_stress_variance_blocks_give_the_same_sums(desc, monkeypatch):
    import hybridpot.regression._gp as gpmod

    gp, _ = _energy_trained(desc, "dot", n_sparse=6)
    b = make_batch(cells(2, seed=70), desc)
    want = gp.predict_batch(b, return_std=True)
    monkeypatch.setattr(gpmod, "STRESS_BLOCK_ATOMS", 1)
    got = gp.predict_batch(b, return_std=True)
    for k in ("energy_std", "stress_std"):
        np.testing.assert_allclose(got[k], want[k], rtol=1e-12)
