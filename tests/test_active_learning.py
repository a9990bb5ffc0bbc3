"""hybridpot.learn: the active-learning loop on EMT Cu, kill-and-resume without loss or
recomputation, failing and timed-out oracle calls, Dask labelling, and the CLI."""

import json
import multiprocessing
import os
import threading
import time

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.emt import EMT
from ase.io import read, write

from conftest import emt_label
from hybridpot import HybridPotential, InvalidParameterError
from hybridpot.cli import main
from hybridpot.descriptors import PowerSpectrum
from hybridpot.learn import ActiveLearner, label_structure, read_labels
from hybridpot.regression import BayesianLinearRegressor
from hybridpot.sampling import RattleStrainSampler

# refits on a handful of structures may stop the evidence iteration early; not under test here
pytestmark = pytest.mark.filterwarnings(
    "ignore:BayesianLinearRegressor. evidence maximisation did not converge")


class SimulatedKill(BaseException):
    """Stands for SIGKILL / a node failure: not an oracle error, it must stop the run."""


class CountingOracle(Calculator):
    """EMT that logs every call; optionally dies, fails or hangs on chosen calls."""

    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def __init__(self, log, *, kill_at=None, fail_ids=(), sleep_ids=(), sleep=2.0):
        super().__init__()
        self.log = log
        self.kill_at = kill_at
        self.fail_ids = set(fail_ids)
        self.sleep_ids = set(sleep_ids)
        self.sleep = sleep

    def __deepcopy__(self, memo):
        # the learner labels each structure with a copy of the oracle: copies share the log
        return CountingOracle(self.log, kill_at=self.kill_at, fail_ids=self.fail_ids,
                              sleep_ids=self.sleep_ids, sleep=self.sleep)

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        aid = self.atoms.info.get("al_id")
        self.log.append(aid)
        if self.kill_at is not None and len(self.log) == self.kill_at:
            raise SimulatedKill(f"killed at call {len(self.log)}")
        if aid in self.fail_ids:
            raise RuntimeError(f"SCF did not converge for {aid}")
        if aid in self.sleep_ids:
            time.sleep(self.sleep)
        at = self.atoms.copy()
        at.calc = EMT()
        self.results = {"energy": at.get_potential_energy(), "forces": at.get_forces(),
                        "stress": at.get_stress()}
        self.results["free_energy"] = self.results["energy"]


def _model():
    return HybridPotential(descriptor=PowerSpectrum(species=["Cu"], r_cut=4.5, n_max=4,
                                                    l_max=3),
                           regressor=BayesianLinearRegressor())


def _sampler():
    return RattleStrainSampler(prototype=bulk("Cu", "fcc", a=3.61, cubic=True),
                               supercell=(2, 1, 1), rattle_std=(0.02, 0.25), strain_max=0.04)


@pytest.fixture(scope="module")
def initial():
    return [emt_label(a) for a in _sampler().sample(2, random_state=100)]


@pytest.fixture(scope="module")
def validation():
    return [emt_label(a) for a in _sampler().sample(8, random_state=200)]


def _learner(run_dir, oracle, initial, **kw):
    kw = {"n_candidates": 12, "batch_size": 3, "max_iterations": 3, "max_labels": 100,
          "random_state": 7, "progress": False, **kw}
    return ActiveLearner(_model(), oracle, _sampler(), None, run_dir=run_dir,
                         initial=initial, **kw)


def test_loop_reduces_force_error(tmp_path, initial, validation):
    before = _model().fit(initial).evaluate(validation)["force_mae"]
    learner = _learner(tmp_path / "run", "EMT", initial, validation=validation,
                       max_iterations=4, batch_size=2).run()
    after = learner.history_[-1]["validation_force_mae"]
    assert len(learner.labelled_) == 8 and learner.stop_reason_.startswith("max_iterations")
    assert after < 0.7 * before
    # artefacts: labels with energy/forces/stress, a loadable model, the state
    labels = read(tmp_path / "run" / "labels.extxyz", ":")
    assert len(labels) == 8
    assert all(a.get_stress().shape == (6,) and a.get_forces().shape == (8, 3) for a in labels)
    m = HybridPotential.load(tmp_path / "run" / "model.hpot")
    np.testing.assert_allclose(m.predict(validation), learner.model_.predict(validation),
                               rtol=1e-10)
    st = json.loads((tmp_path / "run" / "state.json").read_text())
    assert st["iteration"] == 4 and st["n_labels"] == 8 and len(st["history"]) == 4


@pytest.mark.parametrize("method", ["strata", "nearest"])
def test_importance_weighted_refits(tmp_path, initial, method):
    from hybridpot.learn import importance_weights

    learner = _learner(tmp_path / "run", "EMT", initial, max_iterations=2, batch_size=2,
                       importance_weighting=method).run()
    cand_files = sorted((tmp_path / "run" / "proposals").glob("candidates_*.extxyz"))
    assert [f.name for f in cand_files] == ["candidates_0000.extxyz", "candidates_0001.extxyz"]
    reference = [a for f in cand_files for a in read(f, ":")]
    assert len(reference) == 2 * 12
    # the final model is the fit of initial + labels with the documented weights
    train = learner._training()
    w = importance_weights(_model(), train, reference, method=method)
    assert w.mean() == pytest.approx(1.0) and np.ptp(w) > 0.05
    weighted = []
    for a, wk in zip(train, w):
        b = a.copy()
        b.calc = a.calc
        b.info["fit_weight"] = float(wk)
        weighted.append(b)
    ref_model = _model().fit(weighted)
    np.testing.assert_allclose(learner.model_.regressor_.coef_, ref_model.regressor_.coef_,
                               rtol=1e-9, atol=1e-12)
    plain = _model().fit(train)
    assert not np.allclose(learner.model_.regressor_.coef_, plain.regressor_.coef_,
                           rtol=1e-6, atol=0)
    # resuming the finished run restores the same (weighted) model
    again = _learner(tmp_path / "run", "EMT", initial, max_iterations=2, batch_size=2,
                     importance_weighting=method).run()
    assert again.n_oracle_calls_ == 0
    np.testing.assert_allclose(again.model_.regressor_.coef_, learner.model_.regressor_.coef_,
                               rtol=1e-12)


def test_target_error_stops(tmp_path, initial, validation):
    learner = _learner(tmp_path / "run", "EMT", initial, validation=validation,
                       target_error=10.0).run()
    assert learner.stop_reason_.startswith("target_error") and len(learner.history_) == 1


@pytest.mark.parametrize("kill_at", [1, 3, 5])
def test_kill_and_resume_loses_nothing_and_recomputes_nothing(tmp_path, initial, kill_at):
    ref_log = []
    ref = _learner(tmp_path / "ref", CountingOracle(ref_log), initial).run()
    ref_ids = [a.info["al_id"] for a in ref.labelled_]
    assert len(ref_ids) == 9 and len(ref_log) == 9

    log = []
    run_dir = tmp_path / "crash"
    with pytest.raises(SimulatedKill):
        _learner(run_dir, CountingOracle(log, kill_at=kill_at), initial).run()
    survived = read_labels(run_dir / "labels.extxyz")
    assert len(survived) == kill_at - 1  # every label computed before the kill is on disk
    # a torn write of a further frame (killed in the middle of an append) is repaired
    with open(run_dir / "labels.extxyz", "a") as fh:
        fh.write("8\nLattice=\"7.2 0 0 0 3.6 0 0 0 3.6\" Properties=species:S:1:pos:R:3\nCu 0")

    log2 = []
    res = _learner(run_dir, CountingOracle(log2), initial).run()
    ids = [a.info["al_id"] for a in res.labelled_]
    assert sorted(ids) == sorted(ref_ids)  # same labels as the uninterrupted run
    successful_before = log[:kill_at - 1]
    assert len(successful_before) + len(log2) == 9  # nothing computed twice
    assert not set(successful_before) & set(log2)
    assert res.n_oracle_calls_ == len(log2)
    by_id = {a.info["al_id"]: a for a in ref.labelled_}
    for a in res.labelled_:
        np.testing.assert_allclose(a.positions, by_id[a.info["al_id"]].positions, atol=1e-8)
    np.testing.assert_allclose(res.model_.predict(initial), ref.model_.predict(initial),
                               rtol=1e-8)
    # running again finds nothing to do
    log3 = []
    again = _learner(run_dir, CountingOracle(log3), initial).run()
    assert log3 == [] and len(again.labelled_) == 9


def test_failing_and_timed_out_oracle_calls_are_skipped(tmp_path, initial):
    run_dir = tmp_path / "run"
    log = []
    oracle = CountingOracle(log, fail_ids={"i0000-c0001"}, sleep_ids={"i0001-c0002"},
                            sleep=3.0)
    # which candidates are proposed is deterministic; find two that get selected
    probe = _learner(tmp_path / "probe", "EMT", initial, max_iterations=2).run()
    proposed = [a.info["al_id"] for a in probe.labelled_]
    bad, slow = proposed[1], proposed[4]
    oracle.fail_ids, oracle.sleep_ids = {bad}, {slow}
    res = _learner(run_dir, oracle, initial, max_iterations=2, oracle_timeout=1.0).run()
    assert set(res.failures_) == {bad, slow}
    assert "SCF did not converge" in res.failures_[bad]
    assert res.failures_[slow].startswith("timeout after 1 s")
    assert len(res.labelled_) == 4
    assert res.history_[0]["n_failed"] == 1 and res.history_[1]["n_failed"] == 1
    recs = [json.loads(x) for x in (run_dir / "failures.jsonl").read_text().splitlines()]
    assert {r["id"] for r in recs} == {bad, slow}
    st = json.loads((run_dir / "state.json").read_text())
    assert set(st["failures"]) == {bad, slow}
    # resuming for one more iteration never retries the failed structures
    log2 = []
    more = _learner(run_dir, CountingOracle(log2), initial, max_iterations=3).run()
    assert len(log2) == 3 and not {bad, slow} & set(log2)
    assert len(more.labelled_) == 7


def test_label_structure_records_errors():
    at = bulk("Cu", cubic=True)
    res = label_structure(CountingOracle([], fail_ids={None}), at)
    assert not res["ok"] and res["error"].startswith("RuntimeError: SCF did not converge")
    calc = EMT()
    res = label_structure(calc, at, timeout=30.0)
    assert res["ok"] and res["forces"].shape == (4, 3) and res["stress"].shape == (6,)
    assert calc.results == {}  # each structure gets its own copy (no stale state)
    res = label_structure(calc, at)
    assert res["ok"] and res["forces"].shape == (4, 3) and calc.results == {}
    with pytest.raises(SimulatedKill):
        label_structure(CountingOracle([], kill_at=1), at, timeout=30.0)


class SleepingOracle(Calculator):
    """Writes its process id to ``pid_file``, then sleeps (a hung DFT run)."""

    implemented_properties = ["energy", "forces"]

    def __init__(self, pid_file, sleep=60.0):
        super().__init__()
        self.pid_file = pid_file
        self.sleep = sleep

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        self.pid_file.write_text(str(os.getpid()))
        time.sleep(self.sleep)
        self.results = {"energy": 0.0, "forces": np.zeros((len(self.atoms), 3))}


class DyingOracle(Calculator):
    """Kills its own process (a segfaulting or out-of-memory oracle)."""

    implemented_properties = ["energy", "forces"]

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        os._exit(3)


def test_timed_out_oracle_leaves_no_worker_running(tmp_path):
    at = bulk("Cu", cubic=True)
    pid_file = tmp_path / "pid"
    n_threads = threading.active_count()
    t0 = time.perf_counter()
    # 2 s: time enough for the forked worker to write its pid on a loaded machine
    res = label_structure(SleepingOracle(pid_file), at, timeout=2.0)
    elapsed = time.perf_counter() - t0
    assert not res["ok"] and res["error"] == "timeout after 2 s (worker process terminated)"
    assert 2.0 <= res["seconds"] and elapsed < 15.0
    pid = int(pid_file.read_text())
    assert pid != os.getpid()  # the oracle ran in a worker process ...
    with pytest.raises(ProcessLookupError):  # ... which has been terminated and reaped
        os.kill(pid, 0)
    assert multiprocessing.active_children() == []
    assert threading.active_count() == n_threads  # and no thread was left behind


def test_dead_oracle_worker_is_a_failure():
    res = label_structure(DyingOracle(), bulk("Cu", cubic=True), timeout=30.0)
    assert not res["ok"] and res["error"] == "oracle worker process died (exit code 3)"
    assert multiprocessing.active_children() == []


def test_loop_records_and_skips_a_hung_oracle(tmp_path, initial):
    # every call of this oracle hangs: each proposal is recorded as a timeout and skipped
    res = _learner(tmp_path / "run", SleepingOracle(tmp_path / "pid"), initial,
                   max_iterations=1, batch_size=2, oracle_timeout=0.3).run()
    assert res.labelled_ == [] and len(res.failures_) == 2
    assert all(e.startswith("timeout after 0.3 s") for e in res.failures_.values())
    assert res.history_[0]["n_failed"] == 2
    assert multiprocessing.active_children() == []


def test_dask_labelling_matches_serial(tmp_path, initial):
    pytest.importorskip("distributed")
    from hybridpot.parallel import local_client

    serial = _learner(tmp_path / "serial", "EMT", initial, max_iterations=2).run()
    with local_client(2, processes=False) as client:
        par = _learner(tmp_path / "dask", "EMT", initial, max_iterations=2, client=client).run()
    key = {a.info["al_id"]: a for a in serial.labelled_}
    assert sorted(key) == sorted(a.info["al_id"] for a in par.labelled_)
    for a in par.labelled_:
        np.testing.assert_allclose(a.get_forces(), key[a.info["al_id"]].get_forces(),
                                   atol=1e-12)


def test_errors(tmp_path, initial):
    with pytest.raises(InvalidParameterError, match="'oracle' parameter of ActiveLearner"):
        _learner(tmp_path, "VASP", initial).run()
    with pytest.raises(InvalidParameterError, match="'random_state' parameter of ActiveLearner "
                                                    "must be an int >= 0"):
        _learner(tmp_path, "EMT", initial, random_state=np.random.default_rng(0)).run()
    with pytest.raises(InvalidParameterError, match="'target_error' parameter of ActiveLearner "
                                                    "needs labelled 'validation'"):
        _learner(tmp_path, "EMT", initial, target_error=0.1).run()
    with pytest.raises(InvalidParameterError,
                       match=r"'importance_weighting' parameter of ActiveLearner must be one "
                             r"of \['nearest', 'strata'\] or None\. Got 'kmm'"):
        _learner(tmp_path, "EMT", initial, importance_weighting="kmm").run()
    _learner(tmp_path / "r", "EMT", initial, max_iterations=1).run()
    with pytest.raises(InvalidParameterError, match="must match the run in"):
        _learner(tmp_path / "r", "EMT", initial, random_state=8).run()


# ---------------------------------------------------------------------------- CLI
def test_cli_select(tmp_path, initial):
    model = _model().fit(initial)
    model.save(tmp_path / "m.hpot")
    pool = _sampler().sample(6, random_state=3)
    pool.append(pool[0].copy())
    write(tmp_path / "pool.extxyz", pool)
    out = tmp_path / "sel.extxyz"
    assert main(["select", "--model", str(tmp_path / "m.hpot"), "--pool",
                 str(tmp_path / "pool.extxyz"), "-n", "3", "--out", str(out)]) == 0
    chosen = read(out, ":")
    idx = [a.info["pool_index"] for a in chosen]
    from hybridpot.learn import default_selector

    # the default method is the learner's default (stratified maximum force variance)
    assert idx == default_selector().select(model, read(tmp_path / "pool.extxyz", ":"),
                                            3).tolist()
    assert not {0, 6} <= set(idx)  # structure 6 is a copy of 0: never both
    assert main(["select", "--model", str(tmp_path / "m.hpot"), "--pool",
                 str(tmp_path / "pool.extxyz"), "-n", "3", "--out", str(out),
                 "--method", "facility_location"]) == 0
    from hybridpot.uq.selection import FacilityLocationSelector

    idx = [a.info["pool_index"] for a in read(out, ":")]
    assert idx == FacilityLocationSelector().select(
        model, read(tmp_path / "pool.extxyz", ":"), 3).tolist()


def _learn_config(tmp_path, initial, validation, extra=""):
    write(tmp_path / "init.extxyz", initial)
    write(tmp_path / "val.extxyz", validation)
    cfg = tmp_path / "learn.toml"
    cfg.write_text(f"""
[descriptor]
type = "PowerSpectrum"
r_cut = 4.5
n_max = 4
l_max = 3

[baseline]
type = "none"

[learn]
run_dir = "{tmp_path / 'run'}"
sampler = "rattle"
species = ["Cu"]
lattice_constant = 3.61
supercell = [2, 1, 1]
rattle_std = [0.02, 0.25]
initial = "{tmp_path / 'init.extxyz'}"
validation = "{tmp_path / 'val.extxyz'}"
n_candidates = 8
batch_size = 2
{extra}
""")
    return cfg


def test_cli_learn_and_resume(tmp_path, initial, validation, capsys):
    cfg = _learn_config(tmp_path, initial, validation, "max_iterations = 2")
    assert main(["learn", "-c", str(cfg), "-q"]) == 0
    out = capsys.readouterr().out
    assert "learn: 4 labels, 0 failures, 2 iterations" in out and "force MAE" in out
    cfg = _learn_config(tmp_path, initial, validation, "max_iterations = 3")
    assert main(["learn", "-c", str(cfg), "-q"]) == 0
    assert "learn: 6 labels, 0 failures, 3 iterations" in capsys.readouterr().out
    assert len(read(tmp_path / "run" / "labels.extxyz", ":")) == 6


@pytest.mark.parametrize("extra, message", [
    ('max_labels = "many"', "learn.max_labels must be int"),
    ("colour = 1", "unknown key learn.colour"),
    ('oracle = "VASP"', "learn.oracle: only 'EMT' is built into the command line"),
    ("max_labels = 0", "'max_labels' parameter of ActiveLearner must be an int in [1, inf]"),
    ('importance_weighting = "uniform"',
     "'importance_weighting' parameter of ActiveLearner must be one of"),
])
def test_cli_learn_bad_config(tmp_path, initial, validation, capsys, extra, message):
    cfg = _learn_config(tmp_path, initial, validation, extra)
    assert main(["learn", "-c", str(cfg), "-q"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and err.startswith("hybridpot learn: error")


def test_cli_select_errors(tmp_path, initial, capsys):
    model = _model().fit(initial)
    model.save(tmp_path / "m.hpot")
    assert main(["select", "--model", str(tmp_path / "m.hpot"), "-n", "2"]) == 2
    err = capsys.readouterr().err
    assert err == "hybridpot select: error: select.pool: no pool file given (use --pool or " \
                  "select.pool).\n"
    cfg = tmp_path / "s.toml"
    cfg.write_text('[select]\nmethod = "best"\npool = "x.extxyz"\n')
    write(tmp_path / "x.extxyz", initial)
    assert main(["select", "-c", str(cfg), "--model", str(tmp_path / "m.hpot"),
                 "--pool", str(tmp_path / "x.extxyz")]) == 2
    err = capsys.readouterr().err
    assert "'method' parameter of make_selector must be one of" in err and err.count("\n") == 1


def test_kill_during_model_save_resumes(tmp_path, initial, monkeypatch):
    """Killed after the labels of an iteration but before its model and state were saved."""
    ref = _learner(tmp_path / "ref", "EMT", initial, max_iterations=2).run()
    calls = {"n": 0}
    real_save = HybridPotential.save

    def dying_save(self, path):
        calls["n"] += 1
        if calls["n"] == 3:  # initial fit, after iteration 0, after iteration 1 (dies)
            raise SimulatedKill("killed while saving the model")
        real_save(self, path)

    monkeypatch.setattr(HybridPotential, "save", dying_save)
    log = []
    with pytest.raises(SimulatedKill):
        _learner(tmp_path / "run", CountingOracle(log), initial, max_iterations=2).run()
    monkeypatch.setattr(HybridPotential, "save", real_save)
    st = json.loads((tmp_path / "run" / "state.json").read_text())
    assert st["iteration"] == 1 and st["n_labels"] == 6  # labels on disk, iteration not closed
    log2 = []
    res = _learner(tmp_path / "run", CountingOracle(log2), initial, max_iterations=2).run()
    assert log2 == [] and len(log) == 6  # the refit is redone, no label is recomputed
    assert len(res.history_) == 2
    assert sorted(a.info["al_id"] for a in res.labelled_) == \
        sorted(a.info["al_id"] for a in ref.labelled_)
    np.testing.assert_allclose(res.model_.predict(initial), ref.model_.predict(initial),
                               rtol=1e-8)


def test_loop_with_uncertainty_md_sampler(tmp_path, initial):
    from hybridpot.sampling import UncertaintyMDSampler

    md = UncertaintyMDSampler(starts=[bulk("Cu", "fcc", a=3.61, cubic=True) * (2, 1, 1)],
                              n_steps=20, check_interval=5, sigma_threshold=0.5,
                              frames_per_run=2)
    res = ActiveLearner(_model(), "EMT", md, None, run_dir=tmp_path / "run", initial=initial,
                        n_candidates=4, batch_size=2, max_iterations=2, random_state=1,
                        progress=False).run()
    assert len(res.labelled_) == 4
    assert all(a.info["sampler"] == "md" for a in res.labelled_)
    with pytest.raises(InvalidParameterError, match="needs a fitted model"):
        ActiveLearner(_model(), "EMT", md, None, run_dir=tmp_path / "r2",
                      progress=False).run()


def test_cli_learn_importance_weighting(tmp_path, initial, validation, capsys):
    cfg = _learn_config(tmp_path, initial, validation,
                        'max_iterations = 1\nimportance_weighting = "strata"')
    assert main(["learn", "-c", str(cfg), "-q"]) == 0
    assert "learn: 2 labels, 0 failures, 1 iterations" in capsys.readouterr().out
    # the weighted learner keeps its reference sample (the unweighted one, above, does not)
    assert len(read(tmp_path / "run" / "proposals" / "candidates_0000.extxyz", ":")) == 8


def test_cli_learn_unweighted_keeps_no_reference_sample(tmp_path, initial, validation):
    cfg = _learn_config(tmp_path, initial, validation, "max_iterations = 1")
    assert main(["learn", "-c", str(cfg), "-q"]) == 0
    assert not list((tmp_path / "run" / "proposals").glob("candidates_*.extxyz"))
