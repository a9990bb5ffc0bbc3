"""SparseGPRegressor with an additive linear block (``linear_features``): SE kernel on part of
the descriptor plus per-element linear weights on the rest (GAP's 2-body + SOAP recipe).

Independent truths: the exact GP with the summed covariance ``k/alpha + x^L.x'^L/(alpha_L s^2)``
written out densely (mean, variance, log evidence), the augmented weight posterior built from
the design rows, central finite differences of the energy through HybridPotential on a
rattled, periodic, non-orthogonal cell, and a synthetic pair + many-body target.
"""

import json

import numpy as np
import pytest
import scipy.linalg
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from ase.neighborlist import neighbor_list
from sklearn.base import clone

from hybridpot import HybridPotential, InvalidParameterError
from hybridpot._exceptions import ModelFormatError
from hybridpot.descriptors import ACSF, DescriptorStack, PowerSpectrum
from hybridpot.regression import BayesianLinearRegressor, SparseGPRegressor, StructureBatch
from hybridpot.regression._gp import kernel_matrix

from conftest import emt_dataset, emt_label, rattled_bulk

KW = dict(kernel="se", length_scale=1.3, jitter=1e-12, random_state=0)


def energy_batch(X, structure, energy):
    n = X.shape[0]
    ns = int(structure.max()) + 1
    return StructureBatch(
        X=X, species=np.zeros(n, np.int64), structure=structure.astype(np.int64),
        gradients=None, volume=np.full(ns, np.nan), energy=np.asarray(energy, float),
        forces=np.full((n, 3), np.nan), stress=np.full((ns, 6), np.nan), weights={},
        group=np.zeros(ns, np.int64), index=np.arange(ns))


def toy(rng, n_struct=12, shift=0.0):
    """Energy-only: 3 kernel features then 2 linear ones, target sin(xK.a) + xL.c."""
    nat = rng.integers(1, 4, n_struct)
    st = np.repeat(np.arange(n_struct), nat)
    X = rng.normal(0.0, 1.0, (st.size, 5))
    X[:, 3:] *= np.array([5.0, 0.2])
    eps = np.sin(X[:, :3] @ np.array([1.0, -0.7, 0.4])) + X[:, 3:] @ np.array([0.3, -2.0])
    E = np.bincount(st, weights=eps) + rng.normal(0, 0.01, n_struct)
    return energy_batch(X + shift, st, E)


def averaging(st, ns):
    P = np.zeros((ns, st.size))
    P[st, np.arange(st.size)] = 1.0
    return P


def stack(r_pair=4.6):
    ps = PowerSpectrum(species=["Cu"], r_cut=3.2, n_max=3, l_max=2)
    g2 = ACSF(species=["Cu"], r_cut=r_pair, radial_etas=[2.0],
              radial_shifts=np.linspace(2.0, r_pair - 0.4, 7).tolist(), angular=None)
    return DescriptorStack([ps, g2]), g2.n_features


# ---------------------------------------------------------------------------------------------
# closed forms
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("lf", [2, (3, 5)])
def test_equals_the_exact_gp_with_a_summed_linear_kernel(rng, lf):
    b = toy(rng)
    test = toy(np.random.default_rng(5), n_struct=4)
    gp = SparseGPRegressor(n_sparse=1000, bias=False, linear_features=lf, **KW).fit([b])
    assert gp.inducing_.shape[0] == b.n_atoms and gp.coef_.shape == (b.n_atoms + 2,)
    np.testing.assert_allclose(gp.linear_scale_[0], b.X[:, 3:].std(axis=0), rtol=1e-12)
    alpha, al, sig = gp.alpha_, gp.alpha_linear_, gp.noise_["energy"]
    S2 = np.diag(1.0 / (al * gp.linear_scale_[0] ** 2))

    def ktot(A, B):
        return (kernel_matrix(A[:, :3], B[:, :3], kernel="se", length_scale=1.3) / alpha
                + A[:, 3:] @ S2 @ B[:, 3:].T)

    nat = b.n_atoms_per_structure
    P = averaging(b.structure, b.n_structures) / nat[:, None]
    y = b.energy / nat

    def log_ml(C):
        return (-0.5 * y @ np.linalg.solve(C, y) - 0.5 * np.linalg.slogdet(C)[1]
                - 0.5 * y.size * np.log(2 * np.pi))

    C = P @ ktot(b.X, b.X) @ P.T + sig ** 2 * np.eye(b.n_structures)
    Cinv = np.linalg.inv(C)
    Pt = averaging(test.structure, test.n_structures)
    Kt = Pt @ ktot(test.X, b.X) @ P.T
    mean = Kt @ Cinv @ y
    var = np.diag(Pt @ ktot(test.X, test.X) @ Pt.T - Kt @ Cinv @ Kt.T)
    out = gp.predict_batch(test, return_std=True, include_noise=False)
    np.testing.assert_allclose(out["energy"], mean, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(out["energy_std"] ** 2, var, rtol=1e-4, atol=1e-9)
    assert gp.log_evidence_ == pytest.approx(log_ml(C), rel=1e-6)
    # alpha_L is an evidence maximum: moving it either way lowers the dense evidence
    for f in (1.3, 1 / 1.3):
        Cf = C + P @ (b.X[:, 3:] @ ((f - 1) * S2) @ b.X[:, 3:].T) @ P.T
        assert log_ml(Cf) < log_ml(C)


def test_linear_features_are_scale_invariant_and_beat_the_kernel_alone(rng):
    b = toy(rng, n_struct=30)
    test = toy(np.random.default_rng(8), n_struct=6)
    kw = dict(n_sparse=12, sparse_method="fps", **KW)
    gp = SparseGPRegressor(linear_features=2, **kw).fit([b])
    scaled = [energy_batch(bb.X * np.array([1, 1, 1, 7.0, 0.01]), bb.structure, bb.energy)
              for bb in (b, test)]
    gs = SparseGPRegressor(linear_features=2, **kw).fit([scaled[0]])
    p, ps = gp.predict_batch(test, return_std=True), gs.predict_batch(scaled[1], return_std=True)
    np.testing.assert_allclose(ps["energy"], p["energy"], rtol=1e-6)
    np.testing.assert_allclose(ps["energy_std"], p["energy_std"], rtol=1e-6)
    assert gs.alpha_linear_ == pytest.approx(gp.alpha_linear_, rel=1e-6)
    # the kernel alone on all five features (same inducing budget) does worse
    only = SparseGPRegressor(**kw).fit([b])
    err = [np.mean(np.abs(m.predict_batch(test)["energy"] - test.energy)) for m in (gp, only)]
    assert err[0] < 0.5 * err[1]
    assert gp.log_evidence_ > only.log_evidence_


def test_fixed_linear_alpha_at_the_evidence_optimum_changes_nothing(rng):
    b = toy(rng, n_struct=25)
    test = toy(np.random.default_rng(4), n_struct=4)
    kw = dict(n_sparse=10, linear_features=2, **KW)
    free = SparseGPRegressor(**kw).fit([b])
    fixed = SparseGPRegressor(linear_alpha=free.alpha_linear_, **kw).fit([b])
    assert fixed.alpha_linear_ == free.alpha_linear_
    assert fixed.alpha_ == pytest.approx(free.alpha_, rel=1e-4)
    np.testing.assert_allclose(fixed.predict_batch(test)["energy"],
                               free.predict_batch(test)["energy"], rtol=1e-5)
    tight = SparseGPRegressor(linear_alpha=1e4 * free.alpha_linear_, **kw).fit([b])
    assert tight.alpha_linear_ == 1e4 * free.alpha_linear_
    assert tight.log_evidence_ < free.log_evidence_
    lin = tight.coef_[tight._lin_off:] * tight.linear_scale_.ravel()
    assert np.linalg.norm(lin) < 0.1 * np.linalg.norm(
        free.coef_[free._lin_off:] * free.linear_scale_.ravel())


# ---------------------------------------------------------------------------------------------
# forces, stress, adjoint and the augmented weight posterior through HybridPotential
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fitted():
    desc, n_lin = stack()
    train = emt_dataset(4, seed=41, stress=True)
    model = HybridPotential(desc, SparseGPRegressor(kernel="se", n_sparse=20, random_state=0,
                                                    linear_features=n_lin),
                            weights={"energy": 1.0, "forces": 1.0, "stress": 0.1})
    return model.fit(train)


def skewed_cu(seed):
    at = rattled_bulk("Cu", reps=(1, 2, 2), stdev=0.12, seed=seed)
    at.set_cell(at.cell.array @ np.array([[1.0, 0.0, 0.0], [0.12, 1.0, 0.0],
                                          [0.07, -0.09, 1.0]]), scale_atoms=True)
    return at


def test_forces_and_stress_are_energy_derivatives(fitted):
    reg = fitted.regressor_
    assert reg.alpha_linear_ > 0 and np.any(reg.coef_[reg._lin_off:] != 0)
    at = skewed_cu(3)
    at.calc = fitted.calculator()
    F = at.get_forces()
    S = at.get_stress(voigt=False)
    h = 1e-4
    for k, a in [(0, 0), (3, 1), (9, 2), (14, 0)]:
        e = []
        for s in (h, -h):
            b = at.copy()
            b.positions[k, a] += s
            b.calc = fitted.calculator()
            e.append(b.get_potential_energy())
        assert F[k, a] == pytest.approx(-(e[0] - e[1]) / (2 * h), abs=2e-6)
    for a, c in [(0, 0), (1, 2), (2, 1)]:
        e = []
        for s in (h, -h):
            b = at.copy()
            eps = np.eye(3)
            eps[a, c] += s
            b.set_cell(at.cell.array @ eps.T, scale_atoms=True)
            b.calc = fitted.calculator()
            e.append(b.get_potential_energy())
        assert S[a, c] == pytest.approx((e[0] - e[1]) / (2 * h) / at.get_volume(), abs=1e-6)
    # the design rows (fitting path) give the same forces and energy as the adjoint (MD path)
    batch = fitted._batch(fitted._prepare([at], fitted._validate()), [0], True)
    Er, Fr, Sr = reg.design_rows(batch)
    out = reg.predict_batch(batch)
    np.testing.assert_allclose(Er @ reg.coef_, out["energy"], rtol=1e-12)
    np.testing.assert_allclose(Fr @ reg.coef_, out["forces"].ravel(), atol=1e-10)
    np.testing.assert_allclose(Sr @ reg.coef_, out["stress"].ravel(), atol=1e-12)


def test_parameter_variance_is_the_augmented_weight_posterior(fitted):
    reg = fitted.regressor_
    kw = fitted._validate()
    train = emt_dataset(4, seed=41, stress=True)
    tb = fitted._batch(fitted._prepare(train, kw), list(range(4)), True)
    tb.weights = {"energy": np.ones(4), "forces": np.ones(4), "stress": np.full(4, 0.1)}
    # dense posterior precision over (w, b, beta) from the training design rows, in the
    # whitened coordinates v = L^T (w, b, beta) (H itself has condition number ~1e13)
    Er, Fr, Sr = reg.design_rows(tb)
    nat = tb.n_atoms_per_structure
    nk, lo = reg._n_kernel, reg._lin_off
    L = reg.kmm_factor_
    np.testing.assert_allclose(np.diag(L)[lo:], reg.linear_scale_.ravel(), rtol=1e-15)

    def white(rows):
        return scipy.linalg.solve_triangular(L, rows.T, lower=True).T

    prior = np.concatenate([np.full(nk, reg.alpha_), np.full(lo - nk, 1e-4),
                            np.full(L.shape[0] - lo, reg.alpha_linear_)])
    H = np.diag(prior)
    for rows, kind, w in [(Er / nat[:, None], "energy", 1.0), (Fr, "forces", 1.0),
                          (Sr, "stress", 0.1)]:
        H += w / reg.noise_[kind] ** 2 * white(rows).T @ white(rows)
    b = fitted._batch(fitted._prepare([emt_label(skewed_cu(5))], kw), [0], True)
    reg.set_params(derivative_variance="projected")
    out = reg.predict_batch(b, return_std=True, include_noise=False)
    reg.set_params(derivative_variance="dtc")
    Er2, Fr2, _ = reg.design_rows(b)
    Hinv = np.linalg.inv(H)
    W2 = white(Fr2)
    ref = np.einsum("ij,jk,ik->i", W2, Hinv, W2)
    np.testing.assert_allclose(out["forces_std"].ravel() ** 2, ref, rtol=1e-7)
    # beta's posterior contributes: with beta known (conditional posterior of (w, b), the
    # inverse of H's leading block) every variance is smaller
    Hc = np.linalg.inv(H[:lo, :lo])
    cond = np.einsum("ij,jk,ik->i", W2[:, :lo], Hc, W2[:, :lo])
    assert np.all(cond <= ref * (1 + 1e-9)) and np.sum(cond) < 0.95 * np.sum(ref)
    # the DTC term uses the kernel block only: it is the same as with beta's columns removed
    full = reg.predict_batch(b, return_std=True, include_noise=False)
    dtc = full["forces_std"].ravel() ** 2 - ref
    kss = reg._force_prior_variance(b.X, b.species, b.gradients)
    np.testing.assert_allclose(dtc, np.maximum(kss - reg._projected_prior(Fr2) / reg.alpha_, 0),
                               rtol=1e-6, atol=1e-12)
    assert np.all(dtc >= 0)


# ---------------------------------------------------------------------------------------------
# a pair potential on top of a many-body one
# ---------------------------------------------------------------------------------------------
def pair_term(at, rc=4.6):
    """E = 1/2 sum phi(r), phi = -0.04 exp(-(r - 3.9)^2 / 0.18) (1 + cos(pi r / rc)) / 2."""
    i, j, d, D = neighbor_list("ijdD", at, rc)
    g = np.exp(-(d - 3.9) ** 2 / 0.18)
    fc = 0.5 * (1 + np.cos(np.pi * d / rc))
    phi = -0.04 * g * fc
    dphi = -0.04 * (g * (-2 * (d - 3.9) / 0.18) * fc - g * 0.5 * np.pi / rc
                    * np.sin(np.pi * d / rc))
    F = np.zeros((len(at), 3))
    np.add.at(F, i, (dphi / d)[:, None] * D)
    return 0.5 * phi.sum(), F


def labelled(n, seed):
    out = []
    for at in emt_dataset(n, seed=seed, stress=False):
        e, f = pair_term(at)
        at2 = at.copy()
        at2.calc = EMT()
        e0, f0 = at2.get_potential_energy(), at2.get_forces()
        at2.calc = SinglePointCalculator(at2, energy=e0 + e, forces=f0 + f)
        out.append(at2)
    return out


def test_linear_block_recovers_pair_plus_many_body_better_than_either_part():
    """EMT Cu plus a longer-ranged pair well at 3.9 Å: the PS (3.2 Å) kernel cannot see the
    pair term, a linear model in G2 functions cannot represent EMT's embedding; the additive
    model gets both (test forces)."""
    train, test = labelled(8, seed=61), labelled(4, seed=62)
    desc, n_lin = stack()
    w = {"energy": 1.0, "forces": 1.0, "stress": 0.0}
    gp_kw = dict(kernel="se", n_sparse=60, random_state=0, length_scale="auto",
                 noise={"energy": 1e-4, "forces": 0.003})
    models = {
        "both": HybridPotential(desc, SparseGPRegressor(linear_features=n_lin, **gp_kw),
                                weights=w),
        "kernel": HybridPotential(PowerSpectrum(species=["Cu"], r_cut=3.2, n_max=3, l_max=2),
                                  SparseGPRegressor(**gp_kw), weights=w),
        "pair": HybridPotential(stack()[0].descriptors[1], BayesianLinearRegressor(),
                                weights={"energy": 1e4, "forces": 1.0, "stress": 0.0}),
        # the same stacked descriptor with all features inside one SE kernel
        "joint": HybridPotential(stack()[0], SparseGPRegressor(**gp_kw), weights=w),
    }
    err = {}
    for name, m in models.items():
        m.fit(train)
        fe = np.concatenate([(f - t.get_forces()).ravel()
                             for f, t in zip(m.predict_forces(test), test)])
        err[name] = np.sqrt(np.mean(fe ** 2))
    ref = np.sqrt(np.mean(np.concatenate([t.get_forces().ravel() for t in test]) ** 2))
    # measured RMS force errors (eV/Å): both 0.005, kernel 0.028, pair 0.10, joint 0.037
    assert err["both"] < 0.6 * min(err["kernel"], err["pair"], err["joint"]), (err, ref)
    assert err["both"] < 0.2 * ref, (err, ref)


# ---------------------------------------------------------------------------------------------
# serialisation, parameters, errors
# ---------------------------------------------------------------------------------------------
def test_fitted_state_round_trip_and_clone(fitted):
    reg = fitted.regressor_
    state, arrays = reg.get_fitted_state()
    state = json.loads(json.dumps(state))
    new = SparseGPRegressor(**reg.get_params()).set_fitted_state(state, arrays)
    b = fitted._batch(fitted._prepare([emt_label(skewed_cu(7))], fitted._validate()), [0],
                      True)
    p0, p1 = reg.predict_batch(b, return_std=True), new.predict_batch(b, return_std=True)
    for k in p0:
        np.testing.assert_array_equal(p0[k], p1[k])
    np.testing.assert_array_equal(new.atomic_energy_gradient(b.X, b.species)[1],
                                  reg.atomic_energy_gradient(b.X, b.species)[1])
    assert clone(reg).get_params()["linear_features"] == reg.linear_features
    with pytest.raises(ModelFormatError, match=r"'alpha_linear_' is .* linear_features=None"):
        SparseGPRegressor(kernel="se").set_fitted_state(state, arrays)
    bad = dict(arrays, linear_scale=arrays["linear_scale"][:, :-1])
    with pytest.raises(ModelFormatError, match="'linear_scale' has shape"):
        SparseGPRegressor(**reg.get_params()).set_fitted_state(state, bad)


def test_model_save_load(fitted, tmp_path):
    fitted.save(tmp_path / "m.hpot")
    back = HybridPotential.load(tmp_path / "m.hpot")
    at = skewed_cu(9)
    np.testing.assert_array_equal(back.predict([at]), fitted.predict([at]))
    assert back.regressor_.linear_features == fitted.regressor_.linear_features
    assert back.regressor_.get_params() == fitted.regressor_.get_params()
    tup = SparseGPRegressor(kernel="se", linear_features=(0, 2))
    assert SparseGPRegressor.from_dict_params(
        json.loads(json.dumps(tup.to_dict()))["params"]).linear_features == (0, 2)


@pytest.mark.parametrize("lf,match", [
    (0, r"'linear_features' parameter of SparseGPRegressor must be None, an int k >= 1 .*"
        r"Got 0 instead"),
    (-2, r"'linear_features' .* Got -2 instead"),
    (True, r"'linear_features' .* Got True instead"),
    (2.0, r"'linear_features' .* Got 2.0 instead"),
    ((3, 3), r"'linear_features' .* 0 <= start < stop. Got \(3, 3\) instead"),
    ((-1, 2), r"'linear_features' .* Got \(-1, 2\)"),
    ((1, 2, 3), r"'linear_features' .* Got \(1, 2, 3\)"),
    (5, r"'linear_features' .* select a block of the 5 descriptor features that leaves at "
        r"least one kernel feature \(k <= 4.*Got 5 instead"),
    ((0, 5), r"'linear_features' .* leaves at least one kernel feature.*Got \(0, 5\)"),
    ((2, 7), r"'linear_features' .* stop <= 5.*Got \(2, 7\)"),
])
def test_bad_linear_features_raise_typed_errors(rng, lf, match):
    b = toy(rng, n_struct=5)
    with pytest.raises(InvalidParameterError, match=match):
        SparseGPRegressor(kernel="se", linear_features=lf).fit([b])


@pytest.mark.parametrize("la", [0.0, -1.0, np.inf, "auto"])
def test_bad_linear_alpha_raises(rng, la):
    b = toy(rng, n_struct=5)
    with pytest.raises(InvalidParameterError,
                       match=r"'linear_alpha' parameter of SparseGPRegressor must be a float in "
                             r"\(0, inf\) or None. Got"):
        SparseGPRegressor(kernel="se", linear_features=2, linear_alpha=la).fit([b])


# ---------------------------------------------------------------------------------------------
# Dask: the two passes on the workers give the serial fit
# ---------------------------------------------------------------------------------------------
def test_dask_fit_equals_serial(dask_client):
    train, test = emt_dataset(6, seed=71), emt_dataset(2, seed=72)

    def model():
        desc, n_lin = stack(4.2)
        return HybridPotential(desc, SparseGPRegressor(kernel="se", n_sparse=12, random_state=3,
                                                       linear_features=n_lin), chunk_size=2)

    serial = model().fit(train)
    par = model().fit(train, client=dask_client)
    s, p = serial.regressor_, par.regressor_
    np.testing.assert_array_equal(p.inducing_, s.inducing_)
    np.testing.assert_allclose(p.linear_scale_, s.linear_scale_, rtol=1e-12)
    # the evidence is flat in alpha_L near its maximum: merged row factors (round-off) move
    # the optimum by ~1e-6 relative, far below anything visible in the predictions
    assert p.alpha_linear_ == pytest.approx(s.alpha_linear_, rel=1e-5)
    assert p.log_evidence_ == pytest.approx(s.log_evidence_, rel=1e-9)
    np.testing.assert_allclose(p.coef_, s.coef_, rtol=1e-6, atol=1e-8 * np.abs(s.coef_).max())
    e_s, sd_s = serial.predict(test, return_std=True)
    e_p, sd_p = par.predict(test, return_std=True)
    np.testing.assert_allclose(e_p, e_s, rtol=1e-9)
    np.testing.assert_allclose(sd_p, sd_s, rtol=1e-6)
