"""Review of the neural-network regressor and the Dask fit path (session 8): regression tests
for the findings of notes/s8/nnpar/report.md.

Tiny EMT-labelled Cu / Cu-Ni cells; the whole file runs in a few seconds plus one embedded
process cluster.
"""

import pickle
import threading
import warnings

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT

from hybridpot import HybridPotential, InvalidParameterError
from hybridpot.baselines import ASEBaseline, LennardJones
from hybridpot.descriptors import PowerSpectrum
from hybridpot.regression import LinearRegressor, NeuralNetworkRegressor

from conftest import emt_dataset


class LockedEMT(EMT):
    """An ASE calculator that does not pickle (as one holding a lock, a socket or a live
    LAMMPS handle)."""

    def __init__(self):
        super().__init__()
        self.lock = threading.Lock()


def _locked_training_set(n=6):
    """Cu cells labelled by a calculator that stays attached and does not pickle."""
    out = []
    for k in range(n):
        at = bulk("Cu", "fcc", a=3.6 * (1 + 0.01 * (k - n / 2)), cubic=True)
        at.rattle(0.05, seed=k)
        at.calc = LockedEMT()
        at.get_potential_energy()
        at.get_forces()
        at.get_stress()
        out.append(at)
    return out


def _ps():
    return PowerSpectrum(species=["Cu"], r_cut=4.0, n_max=3, l_max=2)


@pytest.fixture(scope="module")
def process_client():
    """A one-worker LocalCluster with a worker *process*: everything sent to it is pickled
    (the in-process ``dask_client`` fixture passes objects by reference)."""
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                                  dashboard_address=":0") as cluster, \
            distributed.Client(cluster) as client:
        yield client


def test_parallel_payload_pickles_without_baseline_or_training_calculators():
    """The workers get the descriptor, chunk size and reference energies, and bare Atoms:
    neither the baseline nor the calculators attached to the training structures."""
    from hybridpot.parallel import _subset, _worker_model

    train = _locked_training_set(3)
    model = HybridPotential(_ps(), LinearRegressor(), ASEBaseline(LockedEMT()), chunk_size=2)
    with pytest.raises(TypeError):
        pickle.dumps(model)
    prep = model._prepare(train, model._validate())
    model.reference_energies_ = model._fit_reference_energies(prep)
    wm = pickle.loads(pickle.dumps(_worker_model(model)))
    assert wm.baseline is None and wm.regressor is None
    assert wm.reference_energies_ == model.reference_energies_
    sub = pickle.loads(pickle.dumps(_subset(prep, np.array([2, 0]))))
    assert [a.calc for a in sub.structures] == [None, None]
    for a, b in zip(sub.structures, [train[2], train[0]]):
        np.testing.assert_array_equal(a.positions, b.positions)
        np.testing.assert_array_equal(a.cell.array, b.cell.array)
        np.testing.assert_array_equal(a.numbers, b.numbers)
    # the batches the workers build equal the serial ones
    b_w = wm._batch(sub, [0, 1], True)
    b_s = model._batch(prep, [2, 0], True)
    np.testing.assert_array_equal(b_w.X, b_s.X)
    np.testing.assert_array_equal(b_w.energy, b_s.energy)
    np.testing.assert_array_equal(b_w.gradients.d_drij, b_s.gradients.d_drij)


def test_dask_fit_with_unpicklable_baseline_and_training_calculators(process_client):
    """An ASE calculator holding a lock as baseline, and attached to every training structure:
    the Dask fit equals the serial one (was a TypeError 'Could not serialize object of type
    HybridPotential' / 'LLGExpr')."""
    train = _locked_training_set()
    test = emt_dataset(2, seed=5, reps=(1, 1, 1))

    def model(reg):
        return HybridPotential(_ps(), reg, ASEBaseline(LockedEMT()), chunk_size=2)

    serial = model(LinearRegressor(alpha=1e-6)).fit(train)
    par = model(LinearRegressor(alpha=1e-6)).fit(train, client=process_client)
    np.testing.assert_allclose(par.predict(test), serial.predict(test), rtol=1e-10)
    nn = NeuralNetworkRegressor(hidden_layer_sizes=(4,), max_iter=200, tol=1e-6, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # ConvergenceWarning is not what this test is about
        serial = model(nn).fit(train)
        par = model(nn).fit(train, client=process_client)
    np.testing.assert_array_equal(par.regressor_.params_, serial.regressor_.params_)


def test_unpicklable_descriptor_is_a_typed_error_before_any_cluster_starts(monkeypatch):
    import hybridpot.parallel as par

    def no_cluster(*args, **kwargs):  # pragma: no cover - must not be reached
        raise AssertionError("a cluster was started")

    monkeypatch.setattr(par, "local_client", no_cluster)
    ps = _ps()
    ps.lock = threading.Lock()
    model = HybridPotential(ps, LinearRegressor(), n_workers=2)
    with pytest.raises(InvalidParameterError,
                       match=r"sends the descriptor \(PowerSpectrum\) to the workers, so it "
                             r"must pickle; TypeError: .*lock.*n_workers=1"):
        model.fit(emt_dataset(2, seed=3, reps=(1, 1, 1)))


def _lj():
    return LennardJones(epsilon=0.02, sigma=2.3, r_cut=4.0)


@pytest.mark.parametrize("client", ["tcp://127.0.0.1:8786", 3])
def test_client_must_be_a_distributed_client(client):
    pytest.importorskip("distributed")
    model = HybridPotential(_ps(), LinearRegressor())
    with pytest.raises(InvalidParameterError,
                       match=r"The 'client' argument of HybridPotential.fit must be a "
                             r"distributed.Client .* or None. Got .* instead"):
        model.fit(emt_dataset(2, seed=3, reps=(1, 1, 1)), client=client)


def test_closed_client_is_a_typed_error():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                  dashboard_address=":0") as cluster:
        client = distributed.Client(cluster)
        client.close()
        with pytest.raises(InvalidParameterError, match="must be a running distributed.Client. "
                                                        "Got a client with status 'closed'"):
            HybridPotential(_ps(), LinearRegressor()).fit(
                emt_dataset(2, seed=3, reps=(1, 1, 1)), client=client)


def _shifted(structures, de):
    out = []
    for a in structures:
        b = a.copy()
        res = dict(a.calc.results)
        res["energy"] = res["energy"] + de * len(a)
        from ase.calculators.singlepoint import SinglePointCalculator

        b.calc = SinglePointCalculator(b, **res)
        out.append(b)
    return out


@pytest.mark.parametrize("how", ["dask", "regressor"])
def test_failed_refit_leaves_the_previous_model_intact(how):
    """A refit that fails in the regressor or on the Dask path kept the previous regressor_
    with the *new* reference energies: energies 20 eV off, silently."""
    train = emt_dataset(4, seed=1, reps=(1, 1, 1))
    other = _shifted(emt_dataset(4, seed=9, reps=(1, 1, 1)), 5.0)
    reg = NeuralNetworkRegressor(hidden_layer_sizes=(3,), max_iter=5, random_state=0)
    model = HybridPotential(_ps(), reg, _lj())
    with pytest.warns(Warning, match="without converging"):
        model.fit(train)
    before = model.predict(train)
    state = {k: v for k, v in model.__dict__.items() if k.endswith("_")}
    if how == "dask":
        pytest.importorskip("distributed")
        with pytest.raises(InvalidParameterError, match="'client' argument"):
            model.fit(other, client="tcp://127.0.0.1:8786")
    else:
        # one labelled structure cannot be split for early stopping: the regressor raises
        model.set_params(regressor__early_stopping=True)
        with pytest.raises(InvalidParameterError, match="early_stopping"):
            model.fit(other[:1])
    assert {k: v for k, v in model.__dict__.items() if k.endswith("_")}.keys() == state.keys()
    for k, v in state.items():
        assert model.__dict__[k] is v, k
    np.testing.assert_array_equal(model.predict(train), before)


def test_local_client_closes_the_cluster_when_the_client_fails(monkeypatch):
    distributed = pytest.importorskip("distributed")
    from hybridpot.parallel import local_client

    closed = []

    class FakeCluster:
        def __init__(self, **kwargs):
            self.kwargs = kwargs

        def close(self):
            closed.append(self)

    def failing_client(cluster, **kwargs):
        raise OSError("cannot connect")

    monkeypatch.setattr(distributed, "LocalCluster", FakeCluster)
    monkeypatch.setattr(distributed, "Client", failing_client)
    with pytest.raises(OSError, match="cannot connect"):
        with local_client(2):
            pass  # pragma: no cover - not reached
    assert len(closed) == 1 and closed[0].kwargs["n_workers"] == 2


def test_embedded_client_is_not_the_default_and_is_closed():
    distributed = pytest.importorskip("distributed")
    from hybridpot.parallel import local_client

    with local_client(1, processes=False) as client:
        assert client.status == "running"
        try:
            default = distributed.default_client()
        except ValueError:  # no client at all
            default = None
        assert default is not client
    assert client.status == "closed"



class _CountingNN(NeuralNetworkRegressor):
    """Counts the Jacobians of one pass over the source that are still alive after it."""

    def fit(self, batches, y=None):
        import gc
        import weakref

        from hybridpot.regression import BatchSource

        refs = [weakref.ref(b.gradients.d_drij) for b in BatchSource.wrap(batches)]
        gc.collect()
        self.n_batches_seen_ = len(refs)
        self.n_batches_alive_ = sum(r() is not None for r in refs)
        return super().fit(batches)


def test_dask_nn_fit_reads_the_batches_one_task_at_a_time(process_client):
    """Regressors fitted on the client (NN) get a lazy source: the client holds one task's
    batches at a time, not every full Jacobian (the gathered list kept them all for the whole
    fit: with max_force_rows=2 the client peak was 123 MB vs 38 MB now and 55 MB serial,
    notes/s8/nnpar/probe10.py)."""
    train = emt_dataset(8, seed=4, reps=(1, 1, 1), stress=False)
    reg = _CountingNN(hidden_layer_sizes=(3,), max_iter=2, max_force_rows=2, random_state=0)
    serial = HybridPotential(_ps(), reg, chunk_size=2)
    par = HybridPotential(_ps(), reg, chunk_size=2)
    with pytest.warns(Warning, match="without converging"):
        serial.fit(train)
    with pytest.warns(Warning, match="without converging"):
        par.fit(train, client=process_client)
    assert par.regressor_.n_batches_seen_ == 4
    assert par.regressor_.n_batches_alive_ == 0
    np.testing.assert_array_equal(par.regressor_.params_, serial.regressor_.params_)


class _DieOnce(PowerSpectrum):
    """Kills the worker process the first time it computes a structure there (a worker lost to
    the OOM killer, a node failure)."""

    def compute(self, atoms, gradients=False):
        import os

        marker = self.__dict__.get("marker")
        if marker and os.getpid() != self.__dict__["client_pid"] and not os.path.exists(marker):
            with open(marker, "w"):
                pass
            os._exit(3)
        return super().compute(atoms, gradients=gradients)


def test_dask_fit_survives_a_worker_that_dies(process_client, tmp_path):
    """The model and regressor travel inside the tasks: a task lost with its worker is rerun
    (the scattered copies were lost: FutureCancelledError '... cancelled for reason: already
    forgotten')."""
    import os

    train = emt_dataset(6, seed=7, reps=(1, 1, 1))
    desc = _DieOnce(species=["Cu"], r_cut=4.0, n_max=3, l_max=2)
    serial = HybridPotential(desc, LinearRegressor(alpha=1e-6), _lj(), chunk_size=2).fit(train)
    desc.marker = str(tmp_path / "died")
    desc.client_pid = os.getpid()
    par = HybridPotential(desc, LinearRegressor(alpha=1e-6), _lj(), chunk_size=2)
    par.fit(train, client=process_client)
    assert os.path.exists(desc.marker)  # a worker did die
    np.testing.assert_allclose(par.predict(train), serial.predict(train), rtol=1e-10)


@pytest.mark.parametrize("act", ["tanh", "softplus", "silu"])
def test_loss_gradient_fd_on_power_spectrum_batches_in_several_chunks(act, monkeypatch):
    """Hand-written double backprop vs central FD of the training loss w.r.t. every weight, on
    real descriptors (PowerSpectrum, two elements, rattled triclinic cells) with energy, force
    and stress labels, per-structure weights, bootstrap multiplicities and several chunks."""
    import hybridpot.regression._nn as nnmod
    from conftest import emt_label, skewed_two_element_cell

    from hybridpot.regression._nn import _Data, _Layout

    monkeypatch.setattr(nnmod, "_CHUNK_ATOMS", 5)   # 4-atom cells: one structure per chunk
    train = []
    for k in range(3):
        at = emt_label(skewed_two_element_cell(seed=40 + k, rattle=0.12))
        at.info["fit_weight"] = 0.5 + k
        train.append(at)
    ps = PowerSpectrum(species=["Cu", "Ni"], r_cut=3.2, n_max=2, l_max=1)
    model = HybridPotential(ps, LinearRegressor(), _lj(), chunk_size=2,
                            weights={"energy": 1.0, "forces": 0.7, "stress": 3.0})
    prep = model._prepare(train, model._validate())
    model.reference_energies_ = model._fit_reference_energies(prep)
    src = model._batch_source(prep)
    reg = NeuralNetworkRegressor(hidden_layer_sizes=(3, 2), activation=act, alpha=1e-3)
    reg._validate_params()
    data = _Data(list(src), src.n_species, src.n_features, None, np.random.default_rng(0))
    reg._fit_scaling(data.batches, data, src.n_species, src.n_features)
    layout = _Layout(src.n_features, (3, 2), src.n_species)
    chunks = reg._chunks(data, data.items, [2.0, 1.0, 3.0])
    assert len(chunks) == 3 and all(c.has_stress and c.has_forces for c in chunks)
    theta = layout.init(np.random.default_rng(1)) + 0.05
    loss, grad = reg._total_loss(theta, layout, chunks, 6.0, True)
    h = 1e-6
    fd = np.empty_like(theta)
    for k in range(theta.size):
        tp, tm = theta.copy(), theta.copy()
        tp[k] += h
        tm[k] -= h
        fd[k] = (reg._total_loss(tp, layout, chunks, 6.0, False)[0]
                 - reg._total_loss(tm, layout, chunks, 6.0, False)[0]) / (2 * h)
    assert loss > 0 and np.abs(fd).max() > 0
    np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-7 * np.abs(fd).max())


def _cuni_train(n=8):
    from conftest import emt_label

    rng = np.random.default_rng(0)
    out = []
    for k in range(n):
        at = bulk("Cu", "fcc", a=3.6, cubic=True)
        if k % 2:
            at.symbols[[1, 2]] = "Ni"   # Ni is absent from half of the structures
        at.set_cell(at.cell.array @ (np.eye(3) + rng.uniform(-0.05, 0.05, (3, 3))),
                    scale_atoms=True)
        at.rattle(0.08, seed=k)
        out.append(emt_label(at))
    return out


def test_ensemble_of_networks_sigma_and_bit_exact_round_trip(tmp_path):
    """EnsembleRegressor of NN committees in HybridPotential: σ grows away from the data, the
    members differ, and save/load reproduces energies, forces, stress and σ bit for bit."""
    from hybridpot.regression import EnsembleRegressor

    train = _cuni_train()
    member = NeuralNetworkRegressor(hidden_layer_sizes=(6,), max_iter=150, n_models=2)
    reg = EnsembleRegressor(estimator=member, n_models=2, random_state=3)
    model = HybridPotential(PowerSpectrum(species=["Cu", "Ni"], r_cut=4.0, n_max=3, l_max=2),
                            reg, _lj(), chunk_size=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # max_iter is deliberately small
        model.fit(train)
    assert model.regressor_.random_states_ == [3, 4]
    p = [m.params_ for m in model.regressor_.estimators_]
    assert not np.allclose(p[0], p[1]) and not np.allclose(p[0][0], p[0][1])
    far = []
    for k in range(3):
        at = bulk("Cu", "fcc", a=3.3, cubic=True)
        at.symbols[[1]] = "Ni"
        at.rattle(0.25, seed=k)
        far.append(at)
    _, s_train = model.predict(train, return_std=True)
    _, s_far = model.predict(far, return_std=True)
    assert s_far.mean() > 2 * s_train.mean()
    path = tmp_path / "nn_ens.hpot"
    model.save(path)
    back = HybridPotential.load(path)
    for a, b in [(model.predict(far, return_std=True), back.predict(far, return_std=True)),
                 (model.predict_forces(far, return_std=True),
                  back.predict_forces(far, return_std=True)),
                 (model.predict_stress(far), back.predict_stress(far))]:
        for x, y in zip(a, b):
            np.testing.assert_array_equal(np.asarray(x, dtype=float), np.asarray(y, dtype=float))


@pytest.mark.parametrize("solver", ["lbfgs", "adam"])
def test_early_stopping_split_ignores_global_numpy_state(solver):
    train = emt_dataset(8, seed=1, reps=(1, 1, 1))
    out = []
    for seed in (0, 1):
        np.random.seed(seed)
        reg = NeuralNetworkRegressor(hidden_layer_sizes=(4,), solver=solver, max_iter=15,
                                     early_stopping=True, validation_fraction=0.25,
                                     n_iter_no_change=3, n_models=2, random_state=11)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out.append(HybridPotential(_ps(), reg, _lj(), chunk_size=3).fit(train).regressor_)
    assert out[0].validation_index_ == out[1].validation_index_
    assert out[0].validation_index_[0] != out[0].validation_index_[1]  # a split per member
    np.testing.assert_array_equal(out[0].params_, out[1].params_)


def test_large_validation_fraction_leaves_one_training_structure():
    """validation_fraction=0.9 of 3 structures rounds to 3 held out: now 2 held out and 1 for
    training (was an InvalidParameterError 'needs at least 2 labelled structures')."""
    train = emt_dataset(3, seed=1, reps=(1, 1, 1))
    reg = NeuralNetworkRegressor(hidden_layer_sizes=(3,), max_iter=5, early_stopping=True,
                                 validation_fraction=0.9, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fitted = HybridPotential(_ps(), reg, _lj()).fit(train).regressor_
    assert len(fitted.validation_index_[0]) == 2
    with pytest.raises(InvalidParameterError,
                       match=r"'early_stopping' .* needs at least 2 labelled structures .* has 1"):
        HybridPotential(_ps(), reg, _lj()).fit(train[:1])


def test_embedded_cluster_leaves_no_processes_threads_or_environment_behind(monkeypatch):
    """n_workers=2: a LocalCluster of two worker processes is started and closed by fit; after
    it no new child process or thread is left (dask's process-wide offload thread and
    multiprocessing's resource tracker aside), the thread-count variables of this process are
    restored,
    and no warning was raised (filterwarnings=error)."""
    pytest.importorskip("distributed")
    psutil = pytest.importorskip("psutil")
    import os

    from hybridpot.parallel import _SINGLE_THREAD_ENV

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.delenv("NUMBA_NUM_THREADS", raising=False)
    env = {k: os.environ.get(k) for k in _SINGLE_THREAD_ENV}   # (dask sets others itself)

    def children():
        return {p.pid for p in psutil.Process().children(recursive=True)
                if "resource_tracker" not in " ".join(p.cmdline())}

    def threads():
        return {t.ident for t in threading.enumerate()
                if not t.name.startswith("Dask-Offload")}

    train = emt_dataset(4, seed=2, reps=(1, 1, 1))
    kids, ths = children(), threads()
    serial = HybridPotential(_ps(), LinearRegressor(), _lj(), chunk_size=2).fit(train)
    par = HybridPotential(_ps(), LinearRegressor(), _lj(), chunk_size=2, n_workers=2).fit(train)
    np.testing.assert_allclose(par.predict(train), serial.predict(train), rtol=1e-10)
    assert children() <= kids
    assert threads() <= ths
    assert {k: os.environ.get(k) for k in _SINGLE_THREAD_ENV} == env


def test_failed_ensemble_refit_keeps_the_previous_fitted_state():
    """A member's fit raising in a refit left the old members with the new seeds in
    random_states_ and the half-fitted members in the instance."""
    from hybridpot.regression import BatchSource, EnsembleRegressor

    train = emt_dataset(4, seed=1, reps=(1, 1, 1))
    model = HybridPotential(_ps(), LinearRegressor(), _lj(), chunk_size=2)
    prep = model._prepare(train, model._validate())
    model.reference_energies_ = model._fit_reference_energies(prep)
    batches = list(model._batch_source(prep))
    src = BatchSource(batches, n_species=1, n_features=model.descriptor.n_features)
    member = NeuralNetworkRegressor(hidden_layer_sizes=(3,), max_iter=3, early_stopping=True)
    ens = EnsembleRegressor(estimator=member, n_models=2, random_state=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ens.fit(src)
    before = dict(ens.__dict__)
    assert ens.random_states_ == [5, 6]
    ens.set_params(random_state=7)
    # one labelled structure: the members' early stopping cannot split it and raises
    import dataclasses

    single = dataclasses.replace(
        batches[0], X=batches[0].X[batches[0].structure == 0],
        species=batches[0].species[batches[0].structure == 0],
        structure=batches[0].structure[batches[0].structure == 0], gradients=None,
        volume=batches[0].volume[:1], energy=batches[0].energy[:1],
        forces=np.full(((batches[0].structure == 0).sum(), 3), np.nan),
        stress=np.full((1, 6), np.nan), weights={k: v[:1] for k, v in batches[0].weights.items()},
        group=batches[0].group[:1], index=batches[0].index[:1])
    with pytest.raises(InvalidParameterError, match="early_stopping"):
        ens.fit(BatchSource([single], n_species=1, n_features=model.descriptor.n_features))
    assert ens.__dict__.keys() == before.keys()
    assert ens.random_states_ == [5, 6]
    assert all(ens.__dict__[k] is v for k, v in before.items() if k.endswith("_"))
