"""Determinism / reproducibility review (s10): the same ``random_state`` gives the same model,
and ``random_state=None`` never touches numpy's global random state."""

import numpy as np
import pytest

from conftest import emt_dataset
from hybridpot import HybridPotential
from hybridpot.descriptors import PowerSpectrum
from hybridpot.regression import BayesianLinearRegressor, SparseGPRegressor
from hybridpot.uq import LinearPosterior


@pytest.fixture(scope="module")
def train():
    return emt_dataset(4, 0)


def _desc():
    return PowerSpectrum(species=["Cu"], r_cut=4.0, n_max=3, l_max=2)


def _global_state():
    st = np.random.get_state()
    return st[1].copy(), st[2], st[3], st[4]


def _assert_global_untouched(fn):
    np.random.seed(12345)
    before = _global_state()
    out = fn()
    after = _global_state()
    assert np.array_equal(before[0], after[0]) and before[1:] == after[1:], \
        "numpy's global random state was advanced"
    return out


@pytest.mark.parametrize("method", ["cur", "fps"])
def test_sparse_gp_none_leaves_global_state(train, method):
    m = HybridPotential(descriptor=_desc(),
                        regressor=SparseGPRegressor(n_sparse=10, sparse_method=method))
    _assert_global_untouched(lambda: m.fit(train))
    assert m.regressor_.inducing_.shape[0] == 10


def test_linear_posterior_none_leaves_global_state(train):
    m = HybridPotential(descriptor=_desc(), regressor=BayesianLinearRegressor()).fit(train)
    post = LinearPosterior(n_steps=20, n_burn=5)
    _assert_global_untouched(lambda: post.fit(m, train))
    th = _assert_global_untouched(lambda: post.samples(10, force=True))
    assert th.shape[0] == 10
    com = _assert_global_untouched(lambda: post.committee(8, force=True))
    assert com is not None


def test_load_keeps_reference_energies_hyperparameter(train, tmp_path):
    """A saved model keeps reference_energies="fit" (not the fitted e0 as the hyperparameter),
    so a refit of the loaded model on new data reproduces a refit of the original."""
    from sklearn.base import clone

    m = HybridPotential(descriptor=_desc(), regressor=BayesianLinearRegressor()).fit(train)
    m.save(tmp_path / "m.hpot")
    m2 = HybridPotential.load(tmp_path / "m.hpot")
    assert m2.reference_energies == "fit"
    assert m2.reference_energies_ == m.reference_energies_
    new = emt_dataset(4, 5)
    a, b = clone(m).fit(new), clone(m2).fit(new)
    assert a.reference_energies_ == b.reference_energies_
    assert np.array_equal(a.predict(train), b.predict(train))
    for ref in ({"Cu": -3.5}, None):
        m.set_params(reference_energies=ref).fit(train)
        m.save(tmp_path / "r.hpot")
        assert HybridPotential.load(tmp_path / "r.hpot").reference_energies == ref


def test_load_rejects_bad_reference_energies_hyperparameter(train, tmp_path):
    import json
    import zipfile

    from hybridpot import ModelFormatError

    m = HybridPotential(descriptor=_desc(), regressor=BayesianLinearRegressor()).fit(train)
    m.save(tmp_path / "m.hpot")
    with zipfile.ZipFile(tmp_path / "m.hpot") as z:
        files = {n: z.read(n) for n in z.namelist()}
    doc = json.loads(files["model.json"])
    doc["params"]["reference_energies"] = "fitted"
    files["model.json"] = json.dumps(doc).encode()
    with zipfile.ZipFile(tmp_path / "bad.hpot", "w") as z:
        for n, data in files.items():
            z.writestr(n, data)
    with pytest.raises(ModelFormatError, match=r"'reference_energies' hyperparameter .*"
                                               r"Got 'fitted'"):
        HybridPotential.load(tmp_path / "bad.hpot")


@pytest.mark.parametrize("name", ["BayesianLinearRegressor", "ARDLinearRegressor"])
def test_posterior_draws_do_not_depend_on_structure_order(train, name):
    """sample_coef with one seed gives the same members whatever the order of the training
    structures (the QR precision factor is signed to diag >= 0; before, the draws differed by
    ~5 % of their size with the order reversed)."""
    from hybridpot import regression

    fits = [HybridPotential(descriptor=_desc(), regressor=getattr(regression, name)()).fit(s)
            for s in (train, train[::-1])]
    T = [f.regressor_.precision_factor_ for f in fits]
    assert np.all(np.diag(T[0]) >= 0) and np.all(np.diag(T[1]) >= 0)
    draws = [f.regressor_.sample_coef(4, random_state=3) for f in fits]
    scale = np.max(np.abs(draws[0]))
    np.testing.assert_allclose(draws[0], draws[1], rtol=0, atol=1e-7 * scale)
    np.testing.assert_allclose(T[0].T @ T[0], T[1].T @ T[1], rtol=1e-8,
                               atol=1e-10 * np.max(np.abs(T[0].T @ T[0])))


@pytest.mark.parametrize("bad", [True, -1, 1.5, "7", 2 ** 32])
def test_linear_posterior_random_state_validated(train, bad):
    """LinearPosterior's random_state is checked like the regressors' (before: True was taken
    as seed 1, -1 / 1.5 / '7' raised numpy's bare ValueError from inside fit)."""
    from hybridpot import InvalidParameterError

    m = HybridPotential(descriptor=_desc(), regressor=BayesianLinearRegressor()).fit(train)
    with pytest.raises(InvalidParameterError, match=r"'random_state' parameter of "
                       r"LinearPosterior must be None, a non-negative int below 2\*\*32, a "
                       rf"numpy Generator or RandomState\. Got {bad!r}"):
        LinearPosterior(n_steps=5, n_burn=1, random_state=bad).fit(m, train)
    post = LinearPosterior(n_steps=20, n_burn=5, random_state=0).fit(m, train)
    with pytest.raises(InvalidParameterError, match=r"LinearPosterior\.samples must be None"):
        post.samples(3, force=True, random_state=bad)


def test_seed_of_2_32_rejected_with_a_message(train):
    """A seed numpy's RandomState cannot take is refused by name (before: a bare ValueError
    'Seed must be between 0 and 2**32 - 1' from the GP; the ensemble's last member overflowed)."""
    from hybridpot import InvalidParameterError
    from hybridpot.regression import EnsembleRegressor

    with pytest.raises(InvalidParameterError, match=r"'random_state' parameter of "
                       r"SparseGPRegressor must be None, a non-negative int below 2\*\*32"):
        HybridPotential(descriptor=_desc(),
                        regressor=SparseGPRegressor(n_sparse=5, random_state=2 ** 32)).fit(train)
    with pytest.raises(InvalidParameterError, match=r"random_state \+ k, which must stay below "
                       r"2\*\*32 for all 2 members\. Got 4294967295"):
        HybridPotential(descriptor=_desc(), regressor=EnsembleRegressor(
            estimator=SparseGPRegressor(n_sparse=5), n_models=2,
            random_state=2 ** 32 - 1)).fit(train)
    reg = EnsembleRegressor(estimator=SparseGPRegressor(n_sparse=5), n_models=2,
                            random_state=2 ** 32 - 2)
    fitted = HybridPotential(descriptor=_desc(), regressor=reg).fit(train).regressor_
    assert fitted.random_states_ == [2 ** 32 - 2, 2 ** 32 - 1]


_SUBPROCESS_FIT = """
import sys, numpy as np
sys.path.insert(0, {tests!r})
from conftest import emt_dataset
from hybridpot import HybridPotential
from hybridpot.descriptors import PowerSpectrum
from hybridpot.regression import SparseGPRegressor, NeuralNetworkRegressor
train = emt_dataset(4, 0)
out = {{}}
for name, reg in [("gp", SparseGPRegressor(n_sparse=10, random_state=7)),
                  ("nn", NeuralNetworkRegressor(hidden_layer_sizes=(4,), max_iter=5,
                                                random_state=7))]:
    m = HybridPotential(descriptor=PowerSpectrum(species=["Cu"], r_cut=4.0, n_max=3, l_max=2),
                        regressor=reg).fit(train)
    out[name] = np.concatenate([m.predict(train), np.concatenate(m.predict_forces(train)).ravel()])
    if name == "gp":
        out["inducing"] = m.regressor_.inducing_.ravel()
np.savez({path!r}, **out)
"""


def test_same_seed_bit_identical_in_another_process(tmp_path):
    """A sparse GP (inducing points) and a network fitted with random_state=7 in a fresh
    process equal the same fits in this process bit for bit."""
    import os
    import subprocess
    import sys
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    tests = os.path.dirname(os.path.abspath(__file__))
    path = str(tmp_path / "child.npz")
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1",
               MKL_NUM_THREADS="1")
    subprocess.run([sys.executable, "-c", _SUBPROCESS_FIT.format(tests=tests, path=path)],
                   check=True, env=env, timeout=300)
    local = str(tmp_path / "local.npz")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)   # max_iter=5 on purpose
        exec(_SUBPROCESS_FIT.format(tests=tests, path=local), {})
    a, b = np.load(path), np.load(local)
    assert sorted(a.files) == ["gp", "inducing", "nn"]
    for k in a.files:
        assert np.array_equal(a[k], b[k]), k


def test_seeded_posterior_committee_is_reproducible(train):
    """LinearPosterior(random_state=7).fit(m, train).apply(m) twice gives the same σ (before:
    apply's theta draws used fresh entropy, energy σ differed by ~14 % between two runs)."""
    test = emt_dataset(2, 9)
    stds = []
    for _ in range(2):
        m = HybridPotential(descriptor=_desc(), regressor=BayesianLinearRegressor()).fit(train)
        post = LinearPosterior(n_steps=60, n_burn=10, random_state=7).fit(m, train)
        post.apply(m, n_theta_samples=8, force=True)
        stds.append(np.concatenate([m.predict(test, return_std=True)[1],
                                    np.concatenate(m.predict_forces(test, return_std=True)[1])
                                    .ravel()]))
        assert np.array_equal(post.samples(5, force=True), post.samples(5, force=True))
    assert np.array_equal(stds[0], stds[1])
    # an explicit seed still overrides the posterior's own
    a = post.samples(5, force=True, random_state=1)
    assert np.array_equal(a, post.samples(5, force=True, random_state=1))
    assert not np.array_equal(a, post.samples(5, force=True))


def test_sparse_gp_inducing_points_follow_structure_order_not_chunking(train):
    """As SparseGPRegressor's random_state entry says: the same seed and order give the same
    inducing points whatever the chunk size; another order gives other points."""
    def inducing(structures, chunk):
        m = HybridPotential(descriptor=_desc(), chunk_size=chunk,
                            regressor=SparseGPRegressor(n_sparse=6, random_state=3))
        return m.fit(structures).regressor_.inducing_

    ref = inducing(train, 16)
    assert np.array_equal(ref, inducing(train, 1))
    assert not np.array_equal(ref, inducing(train[::-1], 16))


def test_saving_a_model_twice_gives_the_same_bytes(train, tmp_path, monkeypatch):
    """The .hpot archive has fixed entry timestamps: the same model saved at another time has
    the same SHA-256 (before: the zip entries carried the save time)."""
    import hashlib
    import time
    import zipfile

    m = HybridPotential(descriptor=_desc(), regressor=BayesianLinearRegressor()).fit(train)
    m.save(tmp_path / "a.hpot")
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 86400.0 * 3)
    m.save(tmp_path / "b.hpot")
    monkeypatch.undo()
    digest = [hashlib.sha256((tmp_path / n).read_bytes()).hexdigest() for n in ("a.hpot", "b.hpot")]
    assert digest[0] == digest[1]
    with zipfile.ZipFile(tmp_path / "a.hpot") as z:
        assert [i.compress_type for i in z.infolist()] == [zipfile.ZIP_DEFLATED] * 2
    back = HybridPotential.load(tmp_path / "b.hpot")
    assert np.array_equal(back.predict(train), m.predict(train))


@pytest.mark.parametrize("interval", [1, 3])
def test_calculator_energy_identical_with_sigma_forces_to_round_off(train, interval):
    """As HybridCalculator's docstring says: energy, forces and stress with uncertainty on /
    off equal to round-off (the energy is bit-identical on most builds; under
    OPENBLAS_CORETYPE=Prescott with NUMBA_CPU_NAME=generic it differed by one ulp)."""
    m = HybridPotential(descriptor=_desc(), regressor=BayesianLinearRegressor()).fit(train)
    test = emt_dataset(1, 9)[0]
    plain, with_std = test.copy(), test.copy()
    plain.calc = m.calculator()
    with_std.calc = m.calculator(uncertainty=True, uncertainty_interval=interval)
    assert with_std.get_potential_energy() == pytest.approx(plain.get_potential_energy(),
                                                          rel=1e-14, abs=0)
    assert "energy_std" in with_std.calc.results
    np.testing.assert_allclose(with_std.get_forces(), plain.get_forces(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(with_std.get_stress(), plain.get_stress(), rtol=0, atol=1e-12)
    assert plain.get_potential_energy() == m.predict([test])[0]
    assert np.array_equal(plain.get_forces(), m.predict_forces([test])[0])


def test_stratified_selector_seed_range_named(train):
    """StratifiedSelector's seed goes to KMeans: one >= 2**32 is refused by hybridpot naming the
    selector (before: sklearn's KMeans error, naming KMeans)."""
    from hybridpot import InvalidParameterError
    from hybridpot.uq.selection import StratifiedSelector

    m = HybridPotential(descriptor=_desc(), regressor=BayesianLinearRegressor()).fit(train)
    pool = emt_dataset(5, 3)
    with pytest.raises(InvalidParameterError, match=r"'random_state' parameter of "
                       r"StratifiedSelector must be an int in \[0, 4294967295\]\. Got 4294967296"):
        StratifiedSelector(random_state=2 ** 32).select(m, pool, 2)
    a = StratifiedSelector(random_state=2 ** 32 - 1).select(m, pool, 2)
    assert np.array_equal(a, StratifiedSelector(random_state=2 ** 32 - 1).select(m, pool, 2))
    from hybridpot.learn._weights import importance_weights_from_fingerprints

    fp = np.random.default_rng(0).normal(size=(6, 3))
    with pytest.raises(InvalidParameterError, match=r"'random_state' parameter of .* must be an "
                       r"int in \[0, 4294967295\]"):
        importance_weights_from_fingerprints(fp, fp, method="strata", random_state=2 ** 32)
