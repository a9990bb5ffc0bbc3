"""SparseGPRegressor: closed forms (exact GP, DTC), kernel and row derivatives, uncertainty,
inducing-point selection, serialisation and parameter errors.

Independent truths: dense exact-GP and DTC formulas written out here in function space,
central finite differences on a rattled, periodic, non-orthogonal two-element cell.
"""

import json

import numpy as np
import pytest
from sklearn.base import clone

from hybridpot import InvalidParameterError, MissingLabelsError, ModelFormatError, NotFittedError
from hybridpot.descriptors import PowerSpectrum
from hybridpot.descriptors._base import DescriptorGradients
from hybridpot.regression import SparseGPRegressor, StructureBatch
from hybridpot.regression._gp import (DOT_SOFTENING, kernel_gradient_coefficients, kernel_matrix,
                                      select_sparse_points)

from conftest import skewed_two_element_cell

SPECIES = ["Cu", "Ni"]


def energy_batch(X, structure, energy, species=None):
    """Energy-only batch from raw descriptors."""
    n = X.shape[0]
    ns = int(structure.max()) + 1
    return StructureBatch(
        X=X, species=np.zeros(n, np.int64) if species is None else species,
        structure=structure.astype(np.int64), gradients=None, volume=np.full(ns, np.nan),
        energy=np.asarray(energy, float), forces=np.full((n, 3), np.nan),
        stress=np.full((ns, 6), np.nan), weights={}, group=np.zeros(ns, np.int64),
        index=np.arange(ns))


def make_batch(structs, desc):
    """Batch with descriptor gradients (labels absent) from Atoms."""
    Xs, sps, st, pi, pj, rij, dd, vol = [], [], [], [], [], [], [], []
    off = 0
    for s, at in enumerate(structs):
        X, g = desc.compute(at, gradients=True)
        Xs.append(X)
        sps.append([SPECIES.index(c) for c in at.get_chemical_symbols()])
        st.append(np.full(len(at), s))
        pi.append(g.pair_i + off)
        pj.append(g.pair_j + off)
        rij.append(g.rij)
        dd.append(g.d_drij)
        vol.append(at.get_volume())
        off += len(at)
    ns = len(structs)
    grads = DescriptorGradients(np.concatenate(pi), np.concatenate(pj), np.concatenate(rij),
                                np.concatenate(dd), off)
    return StructureBatch(
        X=np.vstack(Xs), species=np.concatenate(sps).astype(np.int64),
        structure=np.concatenate(st).astype(np.int64), gradients=grads, volume=np.array(vol),
        energy=np.full(ns, np.nan), forces=np.full((off, 3), np.nan),
        stress=np.full((ns, 6), np.nan), weights={}, group=np.zeros(ns, np.int64),
        index=np.arange(ns))


@pytest.fixture(scope="module")
def desc():
    return PowerSpectrum(species=SPECIES, r_cut=3.0, n_max=2, l_max=2)


def cells(n, seed=0):
    out = []
    for s in range(n):
        at = skewed_two_element_cell(seed=seed + s, rattle=0.12)
        at.set_cell(at.cell.array * (1.0 + 0.03 * (s % 3)), scale_atoms=True)
        out.append(at)
    return out


def toy_problem(rng, n_struct=12, F=3, shift=0.0):
    """Energy-only data: structures of 1-4 atoms, target sum_i sin(X_i . a)."""
    nat = rng.integers(1, 5, n_struct)
    st = np.repeat(np.arange(n_struct), nat)
    X = rng.normal(0.0, 1.0, (st.size, F))
    a = np.array([1.0, -0.7, 0.4])[:F]
    E = np.bincount(st, weights=np.sin(X @ a)) + rng.normal(0, 0.01, n_struct)
    return energy_batch(X + shift, st, E)


def averaging(st, ns):
    P = np.zeros((ns, st.size))
    P[st, np.arange(st.size)] = 1.0
    return P


# ---------------------------------------------------------------------------------------------
# closed forms
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kernel", ["se", "dot"])
def test_equals_exact_gp_when_all_environments_are_inducing(rng, kernel):
    b = toy_problem(rng)
    test = toy_problem(np.random.default_rng(5), n_struct=4)
    gp = SparseGPRegressor(kernel=kernel, zeta=2, length_scale=1.3, n_sparse=1000,
                           bias=False, jitter=1e-12, random_state=0).fit([b])
    assert gp.inducing_.shape[0] == b.n_atoms
    alpha, sig = gp.alpha_, gp.noise_["energy"]
    ns = b.n_structures
    nat = b.n_atoms_per_structure
    P = averaging(b.structure, ns) / nat[:, None]           # per-atom energy rows
    # the model's kernel (the dot kernel's softening is fitted: a fraction of the median |x|)
    kw = dict(kernel=kernel, zeta=2, length_scale=1.3, softening=gp.dot_softening_[0])
    if kernel == "dot":
        med = np.median(np.linalg.norm(b.X, axis=1))
        assert gp.dot_softening_[0] == pytest.approx(DOT_SOFTENING * med, rel=1e-12)
    Kxx = kernel_matrix(b.X, b.X, **kw)
    C = P @ Kxx @ P.T / alpha + sig ** 2 * np.eye(ns)
    y = b.energy / nat
    Pt = averaging(test.structure, test.n_structures)      # total energies
    Kt = kernel_matrix(test.X, b.X, **kw)
    Ktt = kernel_matrix(test.X, test.X, **kw)
    Cinv = np.linalg.inv(C)
    mean = Pt @ Kt @ P.T @ Cinv @ y / alpha
    cov = Pt @ Ktt @ Pt.T / alpha - Pt @ Kt @ P.T @ Cinv @ P @ Kt.T @ Pt.T / alpha ** 2
    out = gp.predict_batch(test, return_std=True, include_noise=False)
    np.testing.assert_allclose(out["energy"], mean, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(out["energy_std"] ** 2, np.diag(cov), rtol=1e-4, atol=1e-9)
    # exact log marginal likelihood of the per-atom energy labels
    sign, logdet = np.linalg.slogdet(C)
    logev = -0.5 * (y @ Cinv @ y) - 0.5 * logdet - 0.5 * ns * np.log(2 * np.pi)
    assert gp.log_evidence_ == pytest.approx(logev, rel=1e-6)


def test_dtc_mean_and_variance_on_a_sparse_case(rng):
    b = toy_problem(rng, n_struct=20)
    test = toy_problem(np.random.default_rng(7), n_struct=5)
    gp = SparseGPRegressor(kernel="se", length_scale=1.1, n_sparse=6, sparse_method="fps",
                           bias=False, jitter=1e-10, random_state=1).fit([b])
    U = gp.inducing_
    assert U.shape[0] == 6
    alpha, sig = gp.alpha_, gp.noise_["energy"]
    kw = dict(kernel="se", length_scale=1.1)
    nat = b.n_atoms_per_structure
    P = averaging(b.structure, b.n_structures) / nat[:, None]
    Kmm = kernel_matrix(U, U, **kw) + 1e-10 * np.eye(6)
    Kmm_inv = np.linalg.inv(Kmm)
    Kxm = kernel_matrix(b.X, U, **kw)
    Q = P @ Kxm @ Kmm_inv @ Kxm.T @ P.T / alpha            # DTC prior of the labels
    y = b.energy / nat
    Cinv = np.linalg.inv(Q + sig ** 2 * np.eye(b.n_structures))
    Pt = averaging(test.structure, test.n_structures)
    Ktm = Pt @ kernel_matrix(test.X, U, **kw)
    Qtf = Ktm @ Kmm_inv @ Kxm.T @ P.T / alpha
    mean = Qtf @ Cinv @ y
    Ktt = Pt @ kernel_matrix(test.X, test.X, **kw) @ Pt.T / alpha
    Qtt = Ktm @ Kmm_inv @ Ktm.T / alpha
    var = np.diag(Ktt - Qtf @ Cinv @ Qtf.T)                  # DTC: K** - Q*f C^-1 Qf*
    out = gp.predict_batch(test, return_std=True, include_noise=False)
    np.testing.assert_allclose(out["energy"], mean, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(out["energy_std"] ** 2, var, rtol=1e-5, atol=1e-10)
    assert np.all(np.diag(Ktt - Qtt) >= -1e-9)
    noisy = gp.predict_batch(test, return_std=True)["energy_std"]
    np.testing.assert_allclose(noisy ** 2, var + (test.n_atoms_per_structure * sig) ** 2,
                               rtol=1e-5)


def test_bias_absorbs_a_constant_per_atom_energy(rng):
    b = toy_problem(rng, n_struct=20)
    test = toy_problem(np.random.default_rng(9), n_struct=4)
    shifted = energy_batch(b.X, b.structure, b.energy + 2.5 * b.n_atoms_per_structure)
    kw = dict(kernel="dot", zeta=2, n_sparse=10, random_state=0)
    g0, g1 = SparseGPRegressor(**kw).fit([b]), SparseGPRegressor(**kw).fit([shifted])
    p0, p1 = g0.predict_batch(test), g1.predict_batch(test)
    np.testing.assert_allclose(p1["energy"] - p0["energy"], 2.5 * test.n_atoms_per_structure,
                               rtol=1e-4)
    assert g1.noise_["energy"] == pytest.approx(g0.noise_["energy"], rel=1e-3)
    assert g1.coef_[-1] - g0.coef_[-1] == pytest.approx(2.5, rel=1e-4)
    # without the constant the offset must be carried by the kernel weights (worse evidence)
    g2 = SparseGPRegressor(bias=False, **kw).fit([shifted])
    assert g2.log_evidence_ < g1.log_evidence_


def test_fixed_noise_at_the_evidence_optimum_changes_nothing(rng):
    b = toy_problem(rng, n_struct=25)
    test = toy_problem(np.random.default_rng(3), n_struct=4)
    kw = dict(kernel="se", n_sparse=12, length_scale=1.0, random_state=0)
    free = SparseGPRegressor(**kw).fit([b])
    fixed = SparseGPRegressor(noise={"energy": free.noise_["energy"]}, **kw).fit([b])
    assert fixed.noise_["energy"] == free.noise_["energy"]
    assert fixed.alpha_ == pytest.approx(free.alpha_, rel=1e-4)
    np.testing.assert_allclose(fixed.predict_batch(test)["energy"],
                               free.predict_batch(test)["energy"], rtol=1e-5)
    tight = SparseGPRegressor(noise={"energy": 1e-3}, **kw).fit([b])
    assert tight.noise_["energy"] == 1e-3 and tight.log_evidence_ < free.log_evidence_


# ---------------------------------------------------------------------------------------------
# derivatives
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kernel,zeta,soft", [("dot", 1, 0.0), ("dot", 3, 0.0), ("dot", 1, 0.7),
                                              ("dot", 3, 0.7), ("se", 1, 0.0)])
def test_kernel_gradient_vs_finite_differences(rng, kernel, zeta, soft):
    X = rng.normal(0.3, 1.0, (4, 5))
    if soft:
        X[0] *= 1e-3                 # a nearly vanishing descriptor (softening dominates)
    U = rng.normal(0.3, 1.0, (6, 5))
    c = U.mean(axis=0)
    nu = np.sqrt(np.sum(U ** 2, axis=1) + soft ** 2)
    Uk = U / nu[:, None] if kernel == "dot" else U - c
    K, A, B, V = kernel_gradient_coefficients(X, Uk, kernel=kernel, zeta=zeta,
                                              length_scale=0.9, centre=c, softening=soft)
    kw = dict(kernel=kernel, zeta=zeta, length_scale=0.9, centre=c, softening=soft)
    if kernel == "dot":   # closed form: (x.u / (sqrt(|x|^2 + s^2) sqrt(|u|^2 + s^2)))^zeta
        nx = np.sqrt(np.sum(X ** 2, axis=1) + soft ** 2)
        np.testing.assert_allclose(K, ((X @ U.T) / np.outer(nx, nu)) ** zeta, rtol=1e-12,
                                   atol=1e-15)
    np.testing.assert_allclose(K, kernel_matrix(X, U, **kw), rtol=1e-12, atol=1e-14)
    grad = A[:, :, None] * Uk[None, :, :] + B[:, :, None] * V[:, None, :]   # (n, M, F)
    h = 1e-6
    for f in range(X.shape[1]):
        Xp, Xm = X.copy(), X.copy()
        Xp[:, f] += h
        Xm[:, f] -= h
        fd = (kernel_matrix(Xp, U, **kw) - kernel_matrix(Xm, U, **kw)) / (2 * h)
        np.testing.assert_allclose(grad[:, :, f], fd, rtol=1e-6, atol=1e-8)


def _fitted_on_cells(desc, kernel, structs, **kw):
    b = make_batch(structs, desc)
    b.energy = np.linspace(-0.1, 0.2, b.n_structures)
    return SparseGPRegressor(kernel=kernel, zeta=3, length_scale=0.05, random_state=0,
                             **kw).fit([b])


@pytest.mark.parametrize("kernel", ["dot", "se"])
def test_force_and_stress_rows_vs_finite_differences(desc, kernel):
    gp = _fitted_on_cells(desc, kernel, cells(3, seed=3), n_sparse=5)
    at = skewed_two_element_cell(seed=2, rattle=0.12)
    b = make_batch([at], desc)
    Er, Fr, Sr = gp.design_rows(b)

    def erow(a):
        return gp.design_rows(make_batch([a], desc), forces=False, stress=False)[0][0]

    np.testing.assert_allclose(Er[0], erow(at), rtol=1e-12)
    h = 1e-5
    scale = np.abs(Fr).max()
    for k in range(len(at)):
        for a in range(3):
            ap, am = at.copy(), at.copy()
            ap.positions[k, a] += h
            am.positions[k, a] -= h
            fd = (erow(ap) - erow(am)) / (2 * h)
            np.testing.assert_allclose(Fr[3 * k + a], -fd, rtol=1e-5, atol=1e-7 * scale)
    V = at.get_volume()
    for v, (a, c) in enumerate([(0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1)]):
        rows = []
        for sgn in (1, -1):
            eps = np.zeros((3, 3))
            eps[a, c] = sgn * h
            ad = at.copy()
            ad.set_cell(at.cell.array @ (np.eye(3) + eps).T, scale_atoms=False)
            ad.positions = at.positions @ (np.eye(3) + eps).T
            rows.append(erow(ad))
        np.testing.assert_allclose(Sr[v], (rows[0] - rows[1]) / (2 * h) / V, rtol=1e-5,
                                   atol=1e-7 * np.abs(Sr).max())
    # the adjoint path (atomic_energy_gradient) equals the rows times the weights
    pred = gp.predict_batch(b)
    np.testing.assert_allclose(pred["forces"].reshape(-1), Fr @ gp.coef_, rtol=1e-10,
                               atol=1e-12)
    np.testing.assert_allclose(pred["stress"][0], Sr @ gp.coef_, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(pred["energy"], Er @ gp.coef_, rtol=1e-12)


def test_rows_of_several_length_scales_share_one_pass(desc):
    gp = _fitted_on_cells(desc, "se", cells(3, seed=3), n_sparse=5)
    b = make_batch(cells(2, seed=60), desc)
    multi = gp._design_rows_multi(b, [0.03, 0.2], True, True)
    for ls, rows in zip([0.03, 0.2], multi):
        gp.length_scale_ = ls
        for got, want in zip(rows, gp.design_rows(b)):
            np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("kernel", ["dot", "se"])
def test_pair_blocks_do_not_change_the_rows(desc, kernel, monkeypatch):
    """The pair-kernel products are formed in blocks of PAIR_BLOCK pairs: any block size
    (here 7 pairs, so blocks end inside a centre's pairs) gives the same rows."""
    import hybridpot.regression._gp as gpmod

    gp = _fitted_on_cells(desc, kernel, cells(3, seed=3), n_sparse=5)
    b = make_batch(cells(2, seed=61), desc)
    scales = [0.03, 0.2] if kernel == "se" else [None]
    want = gp._design_rows_multi(b, scales, True, True)
    assert b.gradients.pair_i.size > 7
    monkeypatch.setattr(gpmod, "PAIR_BLOCK", 7)
    got = gp._design_rows_multi(b, scales, True, True)
    for rows_got, rows_want in zip(got, want):
        for a, w in zip(rows_got, rows_want):
            np.testing.assert_allclose(a, w, rtol=1e-13, atol=1e-14 * np.abs(w).max())
    # forces only / stress only fill the same rows
    only_f = gp._design_rows_multi(b, scales, True, False)
    only_s = gp._design_rows_multi(b, scales, False, True)
    for q in range(len(scales)):
        np.testing.assert_array_equal(only_f[q][1], got[q][1])
        np.testing.assert_array_equal(only_s[q][2], got[q][2])
        assert only_f[q][2] is None and only_s[q][1] is None


def test_fit_to_forces_and_stress_recovers_a_gp_sample(desc, rng):
    """Labels generated by a GP in the model class are recovered from forces and stress."""
    structs = cells(6, seed=10)
    teacher = _fitted_on_cells(desc, "dot", structs, n_sparse=8)
    teacher.coef_ = rng.normal(0, 1.0, teacher.coef_.shape)
    b = make_batch(structs, desc)
    p = teacher.predict_batch(b)
    b.forces, b.stress = p["forces"], p["stress"]
    student = SparseGPRegressor(kernel="dot", zeta=3, n_sparse=8, random_state=0).fit([b])
    np.testing.assert_array_equal(student.inducing_, teacher.inducing_)
    test = make_batch(cells(2, seed=40), desc)
    pt, ps = teacher.predict_batch(test), student.predict_batch(test, return_std=True)
    np.testing.assert_allclose(ps["forces"], pt["forces"], atol=1e-4 * np.abs(pt["forces"]).max())
    assert student.noise_["forces"] < 1e-3 * np.abs(b.forces).max()
    assert set(student.noise_) == {"forces", "stress"}
    assert np.all(np.isfinite(ps["forces_std"])) and np.all(np.isfinite(ps["stress_std"]))


# ---------------------------------------------------------------------------------------------
# uncertainty
# ---------------------------------------------------------------------------------------------
def test_energy_std_grows_away_from_data(rng):
    b = toy_problem(rng, n_struct=30)
    gp = SparseGPRegressor(kernel="se", n_sparse=15, bias=False, random_state=0).fit([b])
    st = np.zeros(1, np.int64)
    near = gp.predict_batch(energy_batch(b.X[:1], st, [np.nan]), return_std=True,
                            include_noise=False)["energy_std"][0]
    stds = [gp.predict_batch(energy_batch(b.X[:1] + d, st, [np.nan]), return_std=True,
                             include_noise=False)["energy_std"][0] for d in (1.0, 3.0, 30.0)]
    assert near < stds[0] < stds[1] <= stds[2] + 1e-12
    # far away: the prior standard deviation 1 / sqrt(alpha) of one atom's energy
    assert stds[2] == pytest.approx(1.0 / np.sqrt(gp.alpha_), rel=1e-6)


@pytest.mark.parametrize("method", ["cur", "fps"])
def test_se_prediction_invariant_to_a_descriptor_shift(rng, method):
    b = toy_problem(rng, n_struct=25)
    test = toy_problem(np.random.default_rng(3), n_struct=4)
    shift = 1e3
    far = energy_batch(b.X + shift, b.structure, b.energy)
    test_far = energy_batch(test.X + shift, test.structure, test.energy)
    kw = dict(kernel="se", n_sparse=12, sparse_method=method, random_state=0)
    g0 = SparseGPRegressor(**kw).fit([b])
    g1 = SparseGPRegressor(**kw).fit([far])
    np.testing.assert_allclose(g1.inducing_ - shift, g0.inducing_, atol=1e-9)
    assert g1.length_scale_ == pytest.approx(g0.length_scale_, rel=1e-6)
    p0 = g0.predict_batch(test, return_std=True)
    p1 = g1.predict_batch(test_far, return_std=True)
    np.testing.assert_allclose(p1["energy"], p0["energy"], rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(p1["energy_std"], p0["energy_std"], rtol=1e-6)


def test_length_scale_auto_picks_the_evidence_maximum(rng):
    b = toy_problem(rng, n_struct=25)
    auto = SparseGPRegressor(kernel="se", n_sparse=12, random_state=0).fit([b])
    for ls in (0.5, 1.0, 2.0, 4.0):
        g = SparseGPRegressor(kernel="se", n_sparse=12, random_state=0,
                              length_scale=ls * auto.length_scale_
                              / _nearest_factor(auto)).fit([b])
        assert g.log_evidence_ <= auto.log_evidence_ + 1e-8


def _nearest_factor(gp):
    from hybridpot.regression._gp import LENGTH_SCALE_FACTORS

    med = gp._median_inducing_distance()
    return min(LENGTH_SCALE_FACTORS, key=lambda f: abs(f * med - gp.length_scale_))


# ---------------------------------------------------------------------------------------------
# inducing points
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["cur", "fps"])
def test_selection_deterministic_under_random_state(rng, method):
    C = rng.normal(size=(200, 6))
    a = select_sparse_points(C, 20, method, random_state=3)
    b = select_sparse_points(C, 20, method, random_state=3)
    c = select_sparse_points(C, 20, method, random_state=4)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (20,) and np.unique(a).size == 20
    assert not np.array_equal(a, c)
    np.testing.assert_array_equal(select_sparse_points(C, 500, method, 0), np.arange(200))


def test_fps_picks_the_farthest_point(rng):
    C = rng.normal(size=(50, 3))
    C[17] = 40.0                                            # an outlier is always chosen
    idx = select_sparse_points(C, 2, "fps", random_state=0)
    assert 17 in idx
    D = np.linalg.norm(C[:, None] - C[None], axis=2)
    other = idx[idx != 17][0] if idx[0] != idx[1] else idx[0]
    assert D[17, other] == pytest.approx(D[17].max()) or D[other, 17] == D[other].max()


def test_cur_prefers_high_leverage_rows(rng):
    C = np.zeros((300, 4))
    C[:, :3] = rng.normal(size=(300, 3))
    C[7, 3] = 1.0                                           # the only row spanning axis 3
    picks = [select_sparse_points(C, 10, "cur", random_state=s) for s in range(20)]
    hits = sum(7 in p for p in picks)
    # leverage 1 of a total of 4: p = 1/4 per draw, ~94 % over 10 draws (uniform: 3 %)
    assert hits >= 15
    assert np.mean([p.size for p in picks]) == 10


def test_reservoir_bounds_candidates_and_skips_duplicates(rng, monkeypatch):
    import hybridpot.regression._gp as gpmod

    monkeypatch.setattr(gpmod, "CANDIDATE_FACTOR", 3)
    X = np.vstack([rng.normal(size=(40, 3)), np.ones((40, 3))])  # 40 copies of one row
    st = np.repeat(np.arange(20), 4)
    batches = [energy_batch(X[:40], st[:40], rng.normal(size=10)),
               energy_batch(X[40:], st[40:] - 10, rng.normal(size=10))]
    meta = {"n_species": 1, "n_features": 3, "species": None, "group_names": ("default",)}

    def candidates(gp):
        gp._validate()
        r = np.random.RandomState(0)
        cand = gp._new_candidates(meta)
        for b in batches:
            gp._add_candidates(cand, b, r.random_sample(b.n_atoms), meta)
        return cand, r

    cand, _ = candidates(SparseGPRegressor(kernel="se", length_scale=1.0, n_sparse=200))
    assert cand["C"][0].shape[0] == 41                       # cap 600: every distinct row
    assert np.unique(np.round(cand["C"][0], 12), axis=0).shape[0] == 41
    gp2 = SparseGPRegressor(kernel="se", length_scale=1.0, n_sparse=5)
    cand, r = candidates(gp2)
    assert cand["C"][0].shape[0] == 3 * 5                    # bottom-15 keys kept
    gp2._set_inducing(cand, meta, r)
    assert gp2.inducing_.shape == (5, 3)


def test_fit_is_deterministic_and_elementwise(desc):
    structs = cells(4, seed=20)
    b = make_batch(structs, desc)
    b.energy = np.linspace(0, 0.1, 4)
    g1 = SparseGPRegressor(n_sparse=4, random_state=0).fit([b])
    g2 = SparseGPRegressor(n_sparse=4, random_state=0).fit([b])
    np.testing.assert_array_equal(g1.inducing_, g2.inducing_)
    np.testing.assert_array_equal(g1.coef_, g2.coef_)
    np.testing.assert_array_equal(np.bincount(g1.inducing_species_), [4, 4])


# ---------------------------------------------------------------------------------------------
# serialisation, errors
# ---------------------------------------------------------------------------------------------
def test_fitted_state_round_trip(desc):
    structs = cells(4, seed=30)
    b = make_batch(structs, desc)
    b.energy = np.linspace(0, 0.1, 4)
    gp = SparseGPRegressor(kernel="se", n_sparse=6, random_state=0).fit([b])
    state, arrays = gp.get_fitted_state()
    state = json.loads(json.dumps(state))
    new = SparseGPRegressor(**gp.get_params()).set_fitted_state(state, arrays)
    test = make_batch(cells(1, seed=50), desc)
    p0, p1 = gp.predict_batch(test, return_std=True), new.predict_batch(test, return_std=True)
    for k in p0:
        np.testing.assert_array_equal(p0[k], p1[k])
    assert clone(gp).get_params() == gp.get_params()
    from hybridpot._exceptions import ModelFormatError

    bad = dict(arrays, coef=arrays["coef"][:-1])
    with pytest.raises(ModelFormatError, match="'coef' has shape"):
        SparseGPRegressor(kernel="se").set_fitted_state(state, bad)


@pytest.mark.parametrize("params,match", [
    ({"kernel": "rbf"}, r"'kernel' parameter of SparseGPRegressor must be one of .*'dot', "
                        r"'se'.*Got 'rbf'"),
    ({"zeta": 0}, r"'zeta' parameter of SparseGPRegressor must be an int in \[1, inf\]. Got 0"),
    ({"zeta": 2.5}, r"'zeta' .* must be an int .* Got 2.5"),
    ({"n_sparse": 0}, r"'n_sparse' .* must be an int in \[1, inf\]. Got 0"),
    ({"sparse_method": "random"}, r"'sparse_method' .* one of .*'cur', 'fps'.*Got 'random'"),
    ({"length_scale": -1.0}, r"'length_scale' .* float in \(0, inf\).* Got -1.0"),
    ({"length_scale": "median"}, r"'length_scale' .* or 'auto'. Got 'median'"),
    ({"jitter": -1e-3}, r"'jitter' .* float in \[0, 1\]"),
    ({"solver": "lu"}, r"'solver' .* one of"),
    ({"max_iter": 0}, r"'max_iter' .* int in \[1, inf\]"),
    ({"bias": 1}, r"'bias' parameter of SparseGPRegressor must be a bool. Got 1"),
    ({"noise": {"energies": 0.1}}, r"'noise' parameter .* None or a dict mapping label kinds"),
    ({"noise": {"energy": -1.0}}, r"'noise\['energy'\]' parameter .* float in \(0, inf\)"),
    ({"noise": {"forces": np.inf}}, r"'noise\['forces'\]' parameter .* float in \(0, inf\)\. "
                                    r"Got inf"),
    ({"alpha_init": np.inf}, r"'alpha_init' .* float in \(0, inf\) or None\. Got inf"),
    ({"noise_init": np.inf}, r"'noise_init' .* float in \(0, inf\) or None\. Got inf"),
])
def test_bad_hyperparameters_raise_typed_errors(rng, params, match):
    b = toy_problem(rng, n_struct=5)
    with pytest.raises(InvalidParameterError, match=match):
        SparseGPRegressor(**params).fit([b])


def test_not_fitted_no_labels_and_bad_inputs(rng):
    b = toy_problem(rng, n_struct=5)
    with pytest.raises(NotFittedError, match="not fitted"):
        SparseGPRegressor().atomic_energy(b.X, b.species)
    empty = energy_batch(b.X, b.structure, np.full(5, np.nan))
    with pytest.raises(MissingLabelsError, match="no usable label"):
        SparseGPRegressor().fit([empty])
    gp = SparseGPRegressor(kernel="se", n_sparse=5).fit([b])
    with pytest.raises(InvalidParameterError, match=r"'X' argument .* shape \(n_atoms, 3\)"):
        gp.atomic_energy(b.X[:, :2], b.species)
    with pytest.raises(InvalidParameterError, match=r"'species' argument .* lie in \[0, 0\]"):
        gp.atomic_energy(b.X, b.species + 1)
    with pytest.raises(InvalidParameterError, match="must be a StructureBatch"):
        gp.predict_batch(b.X)


# ---------------------------------------------------------------------------------------------
# Dask: the two passes on the workers give the serial fit
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("params", [dict(kernel="se", n_sparse=12),
                                    dict(kernel="dot", zeta=2, n_sparse=10,
                                         sparse_method="fps")])
def test_dask_fit_equals_serial(params, dask_client):
    from hybridpot import HybridPotential
    from conftest import emt_dataset

    train, test = emt_dataset(7, seed=31), emt_dataset(2, seed=32)

    def model():
        return HybridPotential(PowerSpectrum(species=["Cu"], r_cut=4.2, n_max=3, l_max=2),
                               SparseGPRegressor(random_state=3, **params), chunk_size=2)

    serial = model().fit(train)
    par = model().fit(train, client=dask_client)
    s, p = serial.regressor_, par.regressor_
    np.testing.assert_array_equal(p.inducing_, s.inducing_)
    np.testing.assert_allclose(p.centre_, s.centre_, rtol=1e-13, atol=1e-15)
    assert p.length_scale_ == s.length_scale_
    assert p.alpha_ == pytest.approx(s.alpha_, rel=1e-7)
    assert p.noise_.keys() == s.noise_.keys()
    for k in s.noise_:
        assert p.noise_[k] == pytest.approx(s.noise_[k], rel=1e-7)
    assert p.log_evidence_ == pytest.approx(s.log_evidence_, rel=1e-9)
    np.testing.assert_allclose(p.coef_, s.coef_, rtol=1e-6, atol=1e-8 * np.abs(s.coef_).max())
    e_s, sd_s = serial.predict(test, return_std=True)
    e_p, sd_p = par.predict(test, return_std=True)
    np.testing.assert_allclose(e_p, e_s, rtol=1e-10)
    np.testing.assert_allclose(sd_p, sd_s, rtol=1e-6)
    for (a, sa), (b, sb) in zip(zip(*par.predict_forces(test, return_std=True)),
                                zip(*serial.predict_forces(test, return_std=True))):
        np.testing.assert_allclose(a, b, atol=1e-7 * np.abs(b).max())
        np.testing.assert_allclose(sa, sb, rtol=1e-6)


def test_dot_softening_is_fitted_saved_and_absent_from_old_files(rng):
    """The dot kernel's softening ``s`` is fitted (DOT_SOFTENING x median |x|), saved with the
    state, and a state written before it existed (no ``dot_softening`` array) loads with
    ``s = 0``: the unit-vector kernel that model was fitted with."""
    b = toy_problem(rng)
    gp = SparseGPRegressor(kernel="dot", zeta=2, n_sparse=8, random_state=0).fit([b])
    assert gp.dot_softening_.shape == (gp.n_species_,) and np.all(gp.dot_softening_ > 0)
    state, arrays = gp.get_fitted_state()
    again = SparseGPRegressor(kernel="dot", zeta=2, n_sparse=8).set_fitted_state(state, arrays)
    np.testing.assert_array_equal(again.dot_softening_, gp.dot_softening_)
    np.testing.assert_array_equal(again.predict_batch(b)["energy"], gp.predict_batch(b)["energy"])
    old = {k: v for k, v in arrays.items() if k != "dot_softening"}
    legacy = SparseGPRegressor(kernel="dot", zeta=2, n_sparse=8).set_fitted_state(state, old)
    np.testing.assert_array_equal(legacy.dot_softening_, 0.0)
    # its energies are those of the unit-vector kernel with the same coefficients
    e = np.zeros(b.n_structures)
    for z in range(gp.n_species_):
        m = gp.inducing_species_ == z
        a = b.species == z
        k0 = kernel_matrix(b.X[a], gp.inducing_[m], kernel="dot", zeta=2)
        eps = k0 @ gp.coef_[:gp.inducing_.shape[0]][m] + gp.coef_[gp.inducing_.shape[0] + z]
        e += np.bincount(b.structure[a], weights=eps, minlength=b.n_structures)
    np.testing.assert_allclose(legacy.predict_batch(b)["energy"], e, rtol=1e-12, atol=1e-12)
    bad = dict(arrays, dot_softening=-arrays["dot_softening"])
    with pytest.raises(ModelFormatError, match="dot_softening"):
        SparseGPRegressor(kernel="dot", zeta=2).set_fitted_state(state, bad)
