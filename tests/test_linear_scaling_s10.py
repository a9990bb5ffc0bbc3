"""The linear regressors' RMS column scaling is floored within its block (review s10, LIN1).

A design column that barely varies in training (an ACSF shell inside the shortest training
distance) used to be divided by its tiny RMS, which left its coefficient unpenalised: a Bayesian
linear model on EMT Cu clusters predicted 1.9e7 eV for a Cu2 at 1 Å.
"""

import numpy as np
import pytest
from ase import Atoms
from ase.cluster import Icosahedron

from hybridpot import HybridPotential, InvalidParameterError
from hybridpot.descriptors import ACSF, PowerSpectrum
from hybridpot.regression import BayesianLinearRegressor, LinearRegressor, _linear
from hybridpot.regression._design import quadratic_index

from conftest import emt_dataset, emt_label


def _cu_clusters(n, seed):
    """EMT-labelled Cu dimers, trimers and rattled icosahedron fragments (2-13 atoms, no cell);
    the shortest distance is ~2.2 Å."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        m = int(rng.integers(2, 14))
        if m <= 3:
            pos = np.array([[0, 0, 0], [2.3 + 0.4 * rng.random(), 0, 0],
                            [1.2, 2.0, 0.3 * rng.random()]])[:m]
            a = Atoms(f"Cu{m}", positions=pos)
        else:
            a = Icosahedron("Cu", 2)[:m]
            a.positions *= 1 + 0.05 * rng.normal()
            a.rattle(0.08, seed=int(rng.integers(1 << 30)))
        a.center()
        out.append(emt_label(a, stress=False))
    return out


@pytest.fixture(scope="module")
def clusters():
    return _cu_clusters(16, 0)


def _dimers(rs):
    return [Atoms("Cu2", positions=[[0, 0, 0], [r, 0, 0]]) for r in rs]


def test_blr_on_acsf_stays_bounded_inside_the_shortest_training_distance(clusters):
    # LIN1: ACSF shells centred inside 2.2 Å have a training RMS ~1e-7 of the largest column;
    # unfloored, the evidence gave them coefficients of ~1e7 (E(Cu2, 1 Å) = 1.9e7 eV, σ 1.2e7)
    model = HybridPotential(ACSF(species=["Cu"], r_cut=5.0), BayesianLinearRegressor())
    model.fit(clusters)
    rs = np.linspace(0.8, 2.0, 13)
    e, s = model.predict(_dimers(rs), return_std=True)
    f = model.predict_forces(_dimers(rs))
    e_train = model.predict(clusters)
    # the training energies span a few eV; the old code gave 1e6-1e7 eV here
    assert np.ptp(e_train) < 30.0
    assert np.max(np.abs(e)) < 30.0, e
    assert np.max(np.abs(f)) < 100.0
    # σ still flags the extrapolation, but at a physical magnitude (old: 1.2e7 eV)
    _, s_in = model.predict(_dimers([2.4]), return_std=True)
    assert np.all(s[rs <= 1.5] > 10 * s_in[0])
    assert np.max(s) < 1e4
    # the rule: the shell columns are floored at RMS_FLOOR x the largest linear-column RMS
    F = model.regressor_.n_features_in_
    d = model.regressor_.penalty_scale_[1:1 + F]
    assert np.min(d) == pytest.approx(_linear.RMS_FLOOR * np.max(d), rel=1e-12)


def test_ridge_on_acsf_is_far_less_explosive(clusters):
    # the default alpha = 1e-6 is nearly least squares, so the floor cannot make the scan
    # physical (|E| up to 2.3e4 eV here, where the unfloored fit gave 1.25e9 eV): it removes
    # five orders of magnitude; the evidence (BayesianLinearRegressor) or a larger alpha is
    # what keeps it bounded
    model = HybridPotential(ACSF(species=["Cu"], r_cut=5.0), LinearRegressor(alpha=1e-6))
    model.fit(clusters)
    e = model.predict(_dimers(np.linspace(0.8, 2.0, 7)))
    assert np.max(np.abs(e)) < 1e5, e


def test_quadratic_blr_on_acsf_products_of_flat_shells_are_floored(clusters):
    # the square of a shell that is ~1e-5 of its training maximum at 2.2 Å had a coefficient
    # of 2.6e6 (old code: E(Cu2, 1 Å) = 1.4e6 eV, test-cluster force RMSE 34 eV/Å; now 29 eV
    # and 5.7 eV/Å).  Closer in (1.5 Å and below) a quadratic model on features 1e4 x their
    # training range still extrapolates to 1e4 eV, with σ of the same size
    model = HybridPotential(ACSF(species=["Cu"], r_cut=5.0),
                            BayesianLinearRegressor(quadratic=True))
    model.fit(clusters)
    e, s = model.predict(_dimers([1.0]), return_std=True)
    assert abs(e[0]) < 300.0, e
    test = _cu_clusters(8, 9)
    f_err = np.concatenate([(model.predict_forces([a])[0] - a.get_forces()).ravel()
                            for a in test])
    assert np.sqrt(np.mean(f_err ** 2)) < 10.0


@pytest.mark.parametrize("quadratic", [False, True])
def test_floor_leaves_a_well_posed_design_unchanged(quadratic):
    # EMT Cu cells and a power spectrum: every column RMS is far above its block's floor, so
    # the coefficients are those of the unfloored scaling (scale_floor=0) to the last bit
    data = emt_dataset(6, 1)
    desc = PowerSpectrum(species=["Cu"], r_cut=4.0, n_max=3, l_max=2)
    fits = {}
    for floor in (None, 0.0):
        kw = {} if floor is None else {"scale_floor": floor}
        for reg in (LinearRegressor(alpha=1e-6, quadratic=quadratic, **kw),
                    BayesianLinearRegressor(quadratic=quadratic, noise_levels="shared", **kw)):
            m = HybridPotential(desc, reg, weights={"energy": 100.0, "forces": 1.0,
                                                    "stress": 0.0}).fit(data)
            fits[floor, type(reg).__name__] = m.regressor_
    for name in ("LinearRegressor", "BayesianLinearRegressor"):
        new, old = fits[None, name], fits[0.0, name]
        np.testing.assert_array_equal(new.penalty_scale_, old.penalty_scale_)
        np.testing.assert_array_equal(new.coef_, old.coef_)


def test_floored_rms_rule_per_block():
    # two elements, F = 3, quadratic: columns [1, x1, x2, x3, x1x1, x1x2, x1x3, x2x2, x2x3, x3x3]
    F = 3
    k, l = quadratic_index(F)
    lin0 = np.array([10.0, 1e-7, 2.0])
    quad0 = 0.05 * lin0[k] * lin0[l]
    quad0[0] = 0.0                                   # a column exactly zero in the data
    D = np.concatenate([[0.3], lin0, quad0, np.zeros(1 + F + k.size)])  # element 1 absent
    zero = D == 0.0
    f = 1e-3
    fp = 0.03
    out = _linear._floored_rms(np.where(zero, 1.0, D), zero, 2, F, True, floor=f,
                               product_floor=fp)
    out = out.reshape(2, -1)
    s = np.array([10.0, f * 10.0, 2.0])              # linear block: floor f x its largest
    np.testing.assert_array_equal(out[0, 0], 0.3)    # bias untouched
    np.testing.assert_allclose(out[0, 1:1 + F], s, rtol=1e-15)
    Q = quad0.max()
    expect = np.maximum(quad0, fp * Q * s[k] * s[l] / 100.0)
    expect[0] = 1.0
    np.testing.assert_allclose(out[0, 1 + F:], expect, rtol=1e-15)
    # ordinary products are not floored; products with the flat feature are
    assert np.array_equal(out[0, 1 + F:][(k != 1) & (l != 1) & (quad0 > 0)],
                          quad0[(k != 1) & (l != 1) & (quad0 > 0)])
    flat = ((k == 1) | (l == 1)) & (quad0 > 0)
    # floored with their factor: 5e-8 -> 3e-5 (x1 x2), 1e-8 -> 6e-6 (x2 x3), 5e-16 -> 3e-7
    assert np.all(out[0, 1 + F:][flat] >= 500 * quad0[flat])
    # the zero x1 x1 column keeps D = 1 (the penalty pins it to 0)
    assert out[0, 1 + F] == 1.0
    # an element absent from the data keeps D = 1 (the penalty pins it to 0)
    np.testing.assert_array_equal(out[1], 1.0)
    # plain path: all columns one block
    plain = _linear._floored_rms(np.array([5.0, 1e-9, 1.0]), np.zeros(3, bool), None, 3,
                                 False, floor=f)
    np.testing.assert_array_equal(plain, [5.0, f * 5.0, 1.0])


def test_penalty_scaling_none_is_not_floored():
    rng = np.random.default_rng(0)
    A = rng.normal(size=(40, 4)) * np.array([1.0, 1e-8, 1.0, 1.0])
    y = A @ np.array([1.0, 2.0, -1.0, 0.5]) + 0.01 * rng.normal(size=40)
    none = LinearRegressor(alpha=1e-3, penalty_scaling="none").fit(A, y)
    np.testing.assert_array_equal(none.penalty_scale_, 1.0)
    rms = LinearRegressor(alpha=1e-3).fit(A, y)
    d = np.sqrt(np.mean(A ** 2, axis=0))
    np.testing.assert_allclose(rms.penalty_scale_[[0, 2, 3]], d[[0, 2, 3]], rtol=1e-12)
    assert rms.penalty_scale_[1] == pytest.approx(_linear.RMS_FLOOR * d.max(), rel=1e-12)


def test_linear_posterior_floors_the_same_columns(clusters):
    # the emcee posterior (uq.LinearPosterior) rebuilds the column scaling from the training
    # rows: unfloored, its committee gave σ = 4.8e11 eV for the Cu2 at 1 Å (now ~3e2 eV)
    from hybridpot.uq import LinearPosterior
    from hybridpot.uq._accumulate import accumulate_factors

    model = HybridPotential(ACSF(species=["Cu"], r_cut=5.0), BayesianLinearRegressor())
    model.fit(clusters)
    fac = accumulate_factors(model, clusters)
    np.testing.assert_allclose(fac.D, model.regressor_.penalty_scale_
                               / np.sqrt(fac.b2), rtol=1e-6)
    post = LinearPosterior(random_state=0).fit(model, clusters)
    post.apply(model, n_theta_samples=16)
    _, s = model.predict(_dimers([1.0]), return_std=True)
    assert s[0] < 1e4


def test_scale_floor_hyperparameter(clusters):
    # a larger floor (the network's 1e-2, better for ACSF) is a hyperparameter; it round-trips
    # through to_dict / from_dict_params (model files) and reaches the emcee posterior
    from hybridpot.uq._accumulate import accumulate_factors

    reg = BayesianLinearRegressor(scale_floor=1e-2)
    model = HybridPotential(ACSF(species=["Cu"], r_cut=5.0), reg).fit(clusters)
    F = model.regressor_.n_features_in_
    d = model.regressor_.penalty_scale_[1:1 + F]
    assert np.min(d) == pytest.approx(1e-2 * np.max(d), rel=1e-12)
    fac = accumulate_factors(model, clusters)
    np.testing.assert_allclose(fac.D, model.regressor_.penalty_scale_ / np.sqrt(fac.b2),
                               rtol=1e-6)
    again = BayesianLinearRegressor.from_dict_params(reg.to_dict()["params"])
    assert again.get_params()["scale_floor"] == 1e-2
    assert LinearRegressor().get_params()["scale_floor"] == _linear.RMS_FLOOR


@pytest.mark.parametrize("bad", [-1e-3, 1.5, float("nan"), "big"])
def test_scale_floor_is_validated(bad):
    A = np.eye(3)
    for cls in (LinearRegressor, BayesianLinearRegressor):
        with pytest.raises(InvalidParameterError,
                           match=rf"'scale_floor' parameter of {cls.__name__} must be a float "
                                 r"in \[0, 1\]\. Got .* instead"):
            cls(scale_floor=bad).fit(A, np.ones(3))
