"""Inner switch (r_inner / d_inner) of PowerSpectrum, Bispectrum and ACSF (session 11).

f_in(r) = 0 below r_inner - d_inner, (1 + sin(pi/2 (r - r_inner)/d_inner)) / 2 inside the
window, 1 above; it multiplies every neighbour's weight in values, Jacobian and adjoint.
"""

import numpy as np
import pytest
from ase import Atoms

from hybridpot import InvalidParameterError
from hybridpot.descriptors import ACSF, Bispectrum, PowerSpectrum, descriptor_from_dict
from hybridpot.descriptors._so3_kernels import inner_switch

from conftest import skewed_two_element_cell

SPECIES = ["Cu", "Ni"]
# per-element windows: Cu 1.75-2.45, Ni 1.85-2.75 (pair means in between)
INNER = {"r_inner": [2.1, 2.3], "d_inner": [0.35, 0.45]}


def _factories():
    return {
        "PowerSpectrum": lambda **kw: PowerSpectrum(species=SPECIES, r_cut=4.0, n_max=3,
                                                    l_max=2, **kw),
        "PowerSpectrum-weights": lambda **kw: PowerSpectrum(
            species=SPECIES, r_cut=4.0, n_max=3, l_max=2, species_weights=[1.0, -0.7], **kw),
        "Bispectrum": lambda **kw: Bispectrum(species=SPECIES, r_cut=4.0, n_max=2, l_max=2,
                                              **kw),
        "ACSF-ani": lambda **kw: ACSF(species=SPECIES, r_cut=4.0, angular_cutoff=3.5, **kw),
        "ACSF-bp": lambda **kw: ACSF(species=SPECIES, r_cut=4.0, angular="bp",
                                     bp_etas=[0.1], bp_zetas=[1, 4], **kw),
        "ACSF-g5": lambda **kw: ACSF(species=SPECIES, r_cut=4.0, angular="g5",
                                     bp_etas=[0.1], bp_zetas=[2], cutoff_function="tanh", **kw),
        "ACSF-radial": lambda **kw: ACSF(species=SPECIES, r_cut=4.0, angular=None,
                                         radial_etas=[0.5, 4.0], radial_shifts=[0.0, 2.0],
                                         **kw),
    }


FACTORIES = _factories()
NAMES = sorted(FACTORIES)


@pytest.fixture
def close_cell():
    """Rattled periodic skewed Cu/Ni cell with one pair below every window (atom 1 moved to
    1.45 Å of atom 0) and many pairs inside the windows."""
    at = skewed_two_element_cell(seed=1, rattle=0.12)
    v = at.positions[1] - at.positions[0]
    at.positions[1] = at.positions[0] + 1.45 * v / np.linalg.norm(v)
    return at


def _pair_counts(at, lo, hi):
    d = at.get_all_distances(mic=True)[np.triu_indices(len(at), 1)]
    return int(np.sum(d <= lo)), int(np.sum((d > lo) & (d < hi)))


def test_inner_switch_function_closed_form_and_derivative():
    s, d = 2.0, 0.4
    r = np.linspace(1.0, 3.0, 401)
    f = np.array([inner_switch(x, s, d)[0] for x in r])
    df = np.array([inner_switch(x, s, d)[1] for x in r])
    x = np.clip((r - s) / d, -1.0, 1.0)
    np.testing.assert_allclose(f, 0.5 * (1.0 + np.sin(0.5 * np.pi * x)), atol=1e-15)
    assert np.all(f[r <= s - d] == 0.0) and np.all(f[r >= s + d] == 1.0)
    h = 1e-6
    fd = np.array([(inner_switch(v + h, s, d)[0] - inner_switch(v - h, s, d)[0]) / (2 * h)
                   for v in r])
    ends = np.isclose(np.abs(r - s), d)   # one-sided kinks of f'' at the window's ends
    np.testing.assert_allclose(df[~ends], fd[~ends], atol=1e-8)
    np.testing.assert_allclose(df[ends], fd[ends], atol=1e-5)
    # C1 at both ends of the window
    assert inner_switch(s - d + 1e-9, s, d)[1] < 1e-7
    assert inner_switch(s + d - 1e-9, s, d)[1] < 1e-7


@pytest.mark.parametrize("name", NAMES)
def test_jacobian_strain_and_adjoint_match_finite_differences(name, close_cell, rng):
    """FD across the switching window on a rattled periodic non-orthogonal cell with pairs
    below, inside and above the windows (per-element r_inner / d_inner)."""
    below, inside = _pair_counts(close_cell, 1.75, 2.75)
    assert below >= 1 and inside >= 4
    desc = FACTORIES[name](**INNER)
    X, dX = desc.compute(close_cell, gradients=True)
    h = 1e-5
    n = len(close_cell)
    fd = np.zeros((n, desc.n_features, n, 3))
    for k in range(n):
        for a in range(3):
            p, m = close_cell.copy(), close_cell.copy()
            p.positions[k, a] += h
            m.positions[k, a] -= h
            fd[:, :, k, a] = (desc.compute(p) - desc.compute(m)) / (2 * h)
    scale = max(np.abs(fd).max(), 1.0)
    np.testing.assert_allclose(dX.dense(), fd, atol=1e-6 * scale, rtol=1e-5)
    # strain derivative
    fd_s = np.zeros((n, 3, 3, desc.n_features))
    for a in range(3):
        for b in range(3):
            e = np.zeros((3, 3))
            e[a, b] = h
            F_p, F_m = np.eye(3) + e, np.eye(3) - e
            sp, sm = close_cell.copy(), close_cell.copy()
            sp.set_cell(close_cell.cell.array @ F_p.T, scale_atoms=True)
            sm.set_cell(close_cell.cell.array @ F_m.T, scale_atoms=True)
            fd_s[:, a, b] = (desc.compute(sp) - desc.compute(sm)) / (2 * h)
    np.testing.assert_allclose(dX.strain, fd_s, atol=1e-6 * max(np.abs(fd_s).max(), 1.0),
                               rtol=1e-5)
    # adjoint (single and batched) == Jacobian contraction
    w = rng.normal(size=X.shape)
    g_r, g_eps = desc.backward(close_cell, w)
    ref_r, ref_eps = dX.vjp(w)
    np.testing.assert_allclose(g_r, ref_r, rtol=1e-9, atol=1e-10 * np.abs(ref_r).max())
    np.testing.assert_allclose(g_eps, ref_eps, rtol=1e-9, atol=1e-10 * np.abs(ref_eps).max())
    W = rng.normal(size=(10,) + X.shape)   # > MANY_MEMBERS: the SO(3) batched kernel
    many_r, many_eps = desc.backward_many(close_cell, W)
    for k in (0, 9):
        ref_k, ref_eps_k = dX.vjp(W[k])
        np.testing.assert_allclose(many_r[k], ref_k, rtol=1e-9,
                                   atol=1e-10 * np.abs(ref_k).max())
        np.testing.assert_allclose(many_eps[k], ref_eps_k, rtol=1e-9,
                                   atol=1e-10 * np.abs(ref_eps_k).max())


@pytest.mark.parametrize("name", NAMES)
def test_default_off_and_window_below_all_pairs_are_bit_identical(name, close_cell):
    """Default (None, None) is the descriptor without the switch; a window below every pair
    multiplies by exactly 1 (values, Jacobian and adjoint bit-identical)."""
    off = FACTORIES[name]()
    assert off.get_params()["r_inner"] is None and off.get_params()["d_inner"] is None
    low = FACTORIES[name](r_inner=0.7, d_inner=0.5)   # window 0.2-1.2 Å, every pair above
    X0, d0 = off.compute(close_cell, gradients=True)
    X1, d1 = low.compute(close_cell, gradients=True)
    np.testing.assert_array_equal(X0, X1)
    np.testing.assert_array_equal(d0.d_drij, d1.d_drij)
    w = np.random.default_rng(0).normal(size=X0.shape)
    np.testing.assert_array_equal(off.backward(close_cell, w)[0], low.backward(close_cell, w)[0])


@pytest.mark.parametrize("name", NAMES)
def test_pair_below_window_changes_nothing(name):
    """A dimer closer than r_inner - d_inner has the isolated atom's features and no
    derivative, wherever it is below the window."""
    desc = FACTORIES[name](r_inner=2.0, d_inner=0.5)
    iso = desc.compute(Atoms("CuNi", positions=[[0, 0, 0], [20.0, 0, 0]]))
    for r in (0.3, 0.9, 1.49):
        dimer = Atoms("CuNi", positions=[[0, 0, 0], [r * 0.6, r * 0.8, 0.0]])
        X, dX = desc.compute(dimer, gradients=True)
        np.testing.assert_array_equal(X, iso)
        assert np.all(dX.d_drij == 0.0)
        g, eps = desc.backward(dimer, np.ones_like(X))
        assert np.all(g == 0.0) and np.all(eps == 0.0)
    # inside the window it does count, and continuously goes to the isolated value
    X_in = desc.compute(Atoms("CuNi", positions=[[0, 0, 0], [1.8, 0, 0]]))
    X_edge = desc.compute(Atoms("CuNi", positions=[[0, 0, 0], [1.5 + 1e-4, 0, 0]]))
    assert np.abs(X_in - iso).max() > 1e-8   # bispectrum of a dimer: cubic and small
    assert np.abs(X_edge - iso).max() < 1e-6 * max(np.abs(X_in - iso).max(), 1.0)


@pytest.mark.parametrize("name", ["PowerSpectrum", "Bispectrum", "ACSF-bp"])
def test_switch_equals_explicit_weight(name):
    """Dimer inside the window: the PowerSpectrum / ACSF-radial value is f_in(r) (f_in^2 for
    the quadratic power spectrum) times the unswitched one."""
    r = 1.9
    dimer = Atoms("CuCu", positions=[[0, 0, 0], [r, 0, 0]])
    s, d = 2.0, 0.5
    f = inner_switch(r, s, d)[0]
    assert 0.2 < f < 0.8
    X_off = FACTORIES[name]().compute(dimer)
    X_on = FACTORIES[name](r_inner=s, d_inner=d).compute(dimer)
    power = {"PowerSpectrum": 2, "Bispectrum": 3, "ACSF-bp": 1}[name]
    if name == "ACSF-bp":   # a dimer has no angular triple: radial block only
        X_off, X_on = X_off[:, :2], X_on[:, :2]
    np.testing.assert_allclose(X_on, f ** power * X_off, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("name", ["PowerSpectrum", "Bispectrum", "ACSF-ani"])
def test_params_to_dict_clone_and_model_file(name, close_cell, tmp_path):
    from sklearn.base import clone

    desc = FACTORIES[name](**INNER)
    X = desc.compute(close_cell)
    back = descriptor_from_dict(desc.to_dict())
    assert back.get_params()["r_inner"] == INNER["r_inner"]
    np.testing.assert_array_equal(back.compute(close_cell), X)
    np.testing.assert_array_equal(clone(desc).compute(close_cell), X)


def test_config_per_element_tables(tmp_path):
    from hybridpot.config import PER_ELEMENT_KEYS, _per_element_values

    assert "r_inner" in PER_ELEMENT_KEYS and "d_inner" in PER_ELEMENT_KEYS
    body = {"type": "PowerSpectrum", "r_inner": {"Ni": 2.3, "Cu": 2.1},
            "d_inner": {"Cu": 0.35, "Ni": 0.45}}
    out = _per_element_values(body, "descriptor", ["Cu", "Ni"], True)
    assert out["r_inner"] == [2.1, 2.3] and out["d_inner"] == [0.35, 0.45]


@pytest.mark.parametrize("cls", [PowerSpectrum, Bispectrum, ACSF])
@pytest.mark.parametrize("kw, match", [
    ({"r_inner": 2.0}, r"'d_inner' parameter of \w+ must be given .* with 'r_inner'"),
    ({"d_inner": 0.3}, r"'r_inner' parameter of \w+ must be given .* with 'd_inner'"),
    ({"r_inner": 2.0, "d_inner": 0.0}, r"'d_inner' parameter of \w+ must be > 0 .*Got 0.0"),
    ({"r_inner": 2.0, "d_inner": -0.1},
     r"'d_inner' parameter of \w+ must be a float in \[0, inf\).*Got -0.1"),
    ({"r_inner": 0.2, "d_inner": 0.3}, r"'r_inner' parameter .* r_inner - d_inner >= 0"),
    ({"r_inner": 3.8, "d_inner": 0.2},
     r"'r_inner' parameter .* r_inner \+ d_inner < r_cut = 4 Å.*r_inner=3.8, d_inner=0.2"),
    ({"r_inner": [2.0], "d_inner": 0.3},
     r"'r_inner' parameter of \w+ must be None, one finite float \(Å\) or a sequence of 2 "
     r"\(one per species \['Cu', 'Ni'\]\)\. Got \[2.0\]"),
    ({"r_inner": "2", "d_inner": 0.3}, r"'r_inner' parameter .* Got '2'"),
    ({"r_inner": 2.0, "d_inner": [0.3, float("nan")]}, r"'d_inner\[1\]' parameter"),
    ({"r_inner": True, "d_inner": 0.3}, r"'r_inner' parameter"),
])
def test_bad_parameters_raise_named_errors(cls, kw, match):
    desc = cls(species=SPECIES, r_cut=4.0, **kw)
    at = skewed_two_element_cell(seed=0)
    with pytest.raises(InvalidParameterError, match=match):
        desc.compute(at)


def test_model_file_round_trip_with_switch(tmp_path):
    from hybridpot import HybridPotential
    from hybridpot.io.model import load_model
    from hybridpot.regression import BayesianLinearRegressor

    from conftest import emt_dataset

    data = emt_dataset(4, seed=3)
    desc = PowerSpectrum(species=["Cu"], r_cut=4.0, n_max=2, l_max=2, r_inner=2.2,
                         d_inner=0.3)
    model = HybridPotential(descriptor=desc, regressor=BayesianLinearRegressor()).fit(data)
    model.save(tmp_path / "m.hpot")
    back = load_model(tmp_path / "m.hpot")
    assert back.descriptor.get_params()["r_inner"] == 2.2
    assert back.descriptor.get_params()["d_inner"] == 0.3
    np.testing.assert_array_equal(back.predict(data), model.predict(data))
    np.testing.assert_array_equal(back.predict_forces(data[:1])[0],
                                  model.predict_forces(data[:1])[0])


def test_build_descriptor_from_config_tables():
    from hybridpot.config import build_descriptor

    cfg = {"descriptor": {"type": "ACSF", "r_cut": 4.0, "angular": "bp",
                          "r_inner": {"Ni": 2.3, "Cu": 2.1}, "d_inner": {"Cu": 0.35, "Ni": 0.45}}}
    desc = build_descriptor(cfg, ["Cu", "Ni"])
    assert desc.get_params()["r_inner"] == [2.1, 2.3]
    assert desc.get_params()["d_inner"] == [0.35, 0.45]


def test_close_collision_zbl_and_switched_descriptor(tmp_path):
    """S4 (s10/smooth): ZBL, and a descriptor with its inner switch on, accept atoms down to
    0.001 Å (was 0.1 Å for everything): a HybridPotential with ZBL and a switched descriptor
    gives the ZBL energy + the isolated-atom ML energies and exactly ZBL's force there."""
    from hybridpot import HybridPotential, InvalidStructureError
    from hybridpot.baselines import ZBL
    from hybridpot.regression import BayesianLinearRegressor

    from conftest import emt_dataset

    zbl = ZBL(r_inner=1.0, r_cut=2.0)
    data = emt_dataset(4, seed=3)
    dimer = Atoms("Cu2", positions=[[0, 0, 0], [0.05, 0, 0]])
    res = zbl.compute(dimer)
    assert 1e5 < res["energy"] < 1e6            # ~300 keV head-on at 0.05 Å
    with pytest.raises(InvalidStructureError, match=r"minimum allowed 0\.001 Å"):
        zbl.compute(Atoms("Cu2", positions=[[0, 0, 0], [5e-4, 0, 0]]))
    for desc in (PowerSpectrum(species=["Cu"], r_cut=4.0, n_max=2, l_max=2, r_inner=1.6,
                               d_inner=0.3),
                 ACSF(species=["Cu"], r_cut=4.0, angular="bp", r_inner=1.6, d_inner=0.3)):
        assert desc.min_distance == 1e-3
        m = HybridPotential(descriptor=desc, regressor=BayesianLinearRegressor(),
                            baseline=zbl).fit(data)
        iso = m.predict([Atoms("Cu", positions=[[0, 0, 0]])])[0]
        at = dimer.copy()
        at.calc = m.calculator()
        np.testing.assert_allclose(at.get_potential_energy(), res["energy"] + 2 * iso,
                                   rtol=1e-12)
        np.testing.assert_allclose(at.get_forces(), res["forces"], rtol=1e-12, atol=1e-9)
    off = PowerSpectrum(species=["Cu"], r_cut=4.0, n_max=2, l_max=2)
    assert off.min_distance == 0.1
    with pytest.raises(InvalidStructureError, match=r"minimum allowed 0\.1 Å"):
        off.compute(dimer)


@pytest.mark.parametrize("name", ["PowerSpectrum", "ACSF-bp"])
def test_chunked_gradients_stack_and_many_structures_with_switch(name, close_cell):
    """The other paths that build their own (sub) neighbour lists: chunked Jacobians
    (renumbered centre ranges), DescriptorStack members (pair sub-lists of a smaller cutoff),
    compute_many; per-element windows, so the pair means must follow the renumbering."""
    from hybridpot.descriptors import DescriptorStack

    desc = FACTORIES[name](**INNER)
    big = close_cell * (2, 1, 1)
    X, dX = desc.compute(big, gradients=True)
    chunks = list(desc.compute_chunked_gradients(big, max_bytes=2000).chunks())
    assert len(chunks) > 1
    full = dX.d_drij
    got = np.concatenate([c.d_drij for c in chunks])
    np.testing.assert_array_equal(got, full)
    stack = DescriptorStack([FACTORIES["ACSF-radial"](), FACTORIES[name](**INNER)])
    Xs, dXs = stack.compute(close_cell, gradients=True)
    Xm, dXm = desc.compute(close_cell, gradients=True)
    np.testing.assert_allclose(Xs[:, -desc.n_features:], Xm, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(dXs.dense()[:, -desc.n_features:], dXm.dense(), rtol=1e-12,
                               atol=1e-14)
    many = desc.compute_many([close_cell, big])
    np.testing.assert_array_equal(many[1], X)


@pytest.mark.parametrize("name", ["PowerSpectrum", "Bispectrum", "ACSF-ani"])
def test_model_forces_and_stress_match_finite_differences_across_window(name, close_cell):
    """A fitted HybridPotential (BLR on EMT Cu/Ni cells) with per-element windows: forces
    and stress from the calculator vs central differences of its energy on the cell with
    pairs below / inside / above the windows."""
    from hybridpot import HybridPotential
    from hybridpot.regression import BayesianLinearRegressor

    from conftest import emt_label

    train = [emt_label(skewed_two_element_cell(seed=10 + k, rattle=0.15)) for k in range(6)]
    m = HybridPotential(descriptor=FACTORIES[name](**INNER),
                        regressor=BayesianLinearRegressor()).fit(train)
    at = close_cell.copy()
    at.calc = m.calculator()
    F = at.get_forces()
    S = at.get_stress(voigt=False)
    h = 1e-5
    fd = np.zeros_like(F)
    for k in range(len(at)):
        for a in range(3):
            p, q = close_cell.copy(), close_cell.copy()
            p.positions[k, a] += h
            q.positions[k, a] -= h
            p.calc = q.calc = m.calculator()
            fd[k, a] = -(p.get_potential_energy() - q.get_potential_energy()) / (2 * h)
    assert np.abs(F).max() > 1e-3
    np.testing.assert_allclose(F, fd, rtol=1e-5, atol=1e-6 * np.abs(fd).max())
    fd_s = np.zeros((3, 3))
    for a in range(3):
        for b in range(3):
            e = np.zeros((3, 3))
            e[a, b] = e[b, a] = h / (2 if a != b else 1)
            p, q = close_cell.copy(), close_cell.copy()
            p.set_cell(close_cell.cell.array @ (np.eye(3) + e).T, scale_atoms=True)
            q.set_cell(close_cell.cell.array @ (np.eye(3) - e).T, scale_atoms=True)
            p.calc = q.calc = m.calculator()
            # symmetric strain, e_ab = e_ba = h/2 off the diagonal: dE = sigma_ab h V
            fd_s[a, b] = ((p.get_potential_energy() - q.get_potential_energy())
                          / (2 * h * close_cell.get_volume()))
    np.testing.assert_allclose(S, fd_s, rtol=1e-5, atol=1e-6 * np.abs(fd_s).max())
