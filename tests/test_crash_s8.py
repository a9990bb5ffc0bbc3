"""Session-8 crash / bad-file review (notes/s8/crash/report.md): active-learning runs killed
and resumed, damaged run files, bad oracle results, damaged model files."""

import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.emt import EMT

from conftest import emt_label
from hybridpot import HybridPotential, InvalidParameterError, ModelFormatError
from hybridpot.descriptors import PowerSpectrum
from hybridpot.learn import ActiveLearner, label_structure
from hybridpot.regression import BayesianLinearRegressor
from hybridpot.sampling import RattleStrainSampler

pytestmark = pytest.mark.filterwarnings(
    "ignore:BayesianLinearRegressor. evidence maximisation did not converge")


class Killed(BaseException):
    """Stands for a kill in the middle of labelling."""


class BadEMT(Calculator):
    """EMT whose ``bad_at``-th call (shared counter) returns a bad result or dies."""

    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def __init__(self, what, calls, bad_at=2):
        super().__init__()
        self.what, self.calls, self.bad_at = what, calls, bad_at

    def __deepcopy__(self, memo):
        return BadEMT(self.what, self.calls, self.bad_at)

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        self.calls.append(self.atoms.info.get("al_id"))
        at = self.atoms.copy()
        at.calc = EMT()
        r = {"energy": at.get_potential_energy(), "forces": at.get_forces(),
             "stress": at.get_stress()}
        if len(self.calls) == self.bad_at:
            if self.what == "kill":
                raise Killed("killed")
            if self.what == "nan_stress":
                r["stress"] = r["stress"] * np.nan
            if self.what == "force_shape":
                r["forces"] = r["forces"][:3]
        r["free_energy"] = r["energy"]
        self.results = r


def _sampler():
    return RattleStrainSampler(prototype=bulk("Cu", "fcc", a=3.61, cubic=True),
                               supercell=(2, 1, 1), rattle_std=(0.02, 0.25), strain_max=0.04)


@pytest.fixture(scope="module")
def initial():
    return [emt_label(a) for a in _sampler().sample(2, random_state=100)]


def _learner(run_dir, oracle, initial, **kw):
    kw = {"n_candidates": 12, "batch_size": 3, "max_iterations": 2, "max_labels": 100,
          "random_state": 7, "progress": False, **kw}
    model = HybridPotential(descriptor=PowerSpectrum(species=["Cu"], r_cut=4.5, n_max=4,
                                                     l_max=3),
                            regressor=BayesianLinearRegressor())
    return ActiveLearner(model, oracle, _sampler(), None, run_dir=run_dir, initial=initial,
                         **kw)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, initial):
    """An uninterrupted run (2 iterations, 6 labels)."""
    return _learner(tmp_path_factory.mktemp("ref") / "run", "EMT", initial).run()


def _same_run(res, ref, initial):
    assert [a.info["al_id"] for a in res.labelled_] == [a.info["al_id"] for a in ref.labelled_]
    for a, b in zip(res.labelled_, ref.labelled_):
        np.testing.assert_array_equal(a.positions, b.positions)
        np.testing.assert_array_equal(a.get_forces(), b.get_forces())
        assert a.get_potential_energy() == b.get_potential_energy()
    np.testing.assert_array_equal(res.model_.predict(initial), ref.model_.predict(initial))


# ---------------------------------------------------------------------------- resume
def test_resumed_run_gives_exactly_the_uninterrupted_labels_and_model(tmp_path, initial,
                                                                       reference):
    # extxyz keeps 8 decimals: the uninterrupted run labelled and fitted the unrounded
    # in-memory positions and forces, a resumed one those of the files (1e-8 differences in
    # energies and the model)
    run_dir = tmp_path / "run"
    with pytest.raises(Killed):
        _learner(run_dir, BadEMT("kill", [], bad_at=2), initial).run()
    res = _learner(run_dir, "EMT", initial).run()
    _same_run(res, reference, initial)


_DRIVER = textwrap.dedent("""
    import os, signal, sys, warnings
    warnings.simplefilter("ignore")
    sys.path.insert(0, {tests!r})
    import test_crash_s8 as T
    from hybridpot.learn import _learner as L
    kill_at, calls = int(sys.argv[2]), []
    append = L._append_durable
    def torn_append(path, text):   # SIGKILL in the middle of the kill_at-th append
        calls.append(path)
        if len(calls) == kill_at:
            with open(path, "a") as fh:
                fh.write(text[: len(text) // 2])
            os.kill(os.getpid(), signal.SIGKILL)
        append(path, text)
    L._append_durable = torn_append
    initial = [T.emt_label(a) for a in T._sampler().sample(2, random_state=100)]
    T._learner(sys.argv[1], "EMT", initial).run()
""")


def test_sigkill_during_a_label_append_then_resume(tmp_path, initial, reference):
    script = tmp_path / "driver.py"
    script.write_text(_DRIVER.format(tests=os.path.dirname(__file__)))
    run_dir = tmp_path / "run"
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(script), str(run_dir), "5"], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert not (run_dir / "labels.extxyz").read_text().endswith("\n")   # torn frame
    res = _learner(run_dir, "EMT", initial).run()
    _same_run(res, reference, initial)
    assert res.n_oracle_calls_ == 2     # the torn label and the sixth


# ---------------------------------------------------------------------------- oracle
@pytest.mark.parametrize("what, message", [
    ("nan_stress", r"OracleError: the oracle returned non-finite stress \(NaN or inf\)"),
    ("force_shape", r"OracleError: the oracle returned forces of shape \(3, 3\) for 8 atoms; "
                    r"expected \(8, 3\)"),
])
def test_bad_oracle_result_is_a_failure_not_a_label(tmp_path, initial, what, message):
    # a NaN stress was appended to labels.extxyz and every refit, also of every resumed run,
    # raised MissingLabelsError; a wrong force shape raised a raw ValueError while writing
    at = _sampler().sample(1, random_state=3)[0]
    res = label_structure(BadEMT(what, [], bad_at=1), at)
    assert not res["ok"]
    assert res["error"].startswith(message.replace("\\", "")[:30])
    run = _learner(tmp_path / "run", BadEMT(what, []), initial).run()
    assert len(run.labelled_) == 5 and len(run.failures_) == 1
    import re
    assert re.match(message, next(iter(run.failures_.values())))
    again = _learner(tmp_path / "run", "EMT", initial, max_iterations=3).run()
    assert len(again.labelled_) == 8


# ---------------------------------------------------------------------------- run files
def _edit_json(name):
    def edit(run_dir, change):
        p = run_dir / name
        doc = json.loads(p.read_text())
        doc = change(doc)
        p.write_text(json.dumps(doc))
    return edit


@pytest.mark.parametrize("change, message", [
    (lambda d: [1, 2], r"state.json is not a valid active-learning state file: it must hold "
                       r"a JSON object. Got 'list'"),
    (lambda d: {**d, "iteration": "x"}, r"'iteration' must be an int >= 0. Got 'x'"),
    (lambda d: {k: v for k, v in d.items() if k != "seed"}, r"'seed' must be an int >= 0. "
                                                            r"Got None"),
    (lambda d: {**d, "history": {}}, r"'history' must be a list of objects"),
    (lambda d: {**d, "proposals": {"iteration": 2, "file": "../x.extxyz", "ids": []}},
     r"'proposals' must be null or an object"),
])
def test_damaged_state_file_is_a_typed_error(tmp_path, initial, reference, change, message):
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(reference.run_dir, run_dir)
    _edit_json("state.json")(run_dir, change)
    with pytest.raises(InvalidParameterError, match=message):
        _learner(run_dir, "EMT", initial).run()


def test_damaged_run_files_are_typed_errors_or_repaired(tmp_path, initial, reference):
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(reference.run_dir, run_dir)
    p = run_dir / "labels.extxyz"
    good = p.read_text()
    lines = good.splitlines(keepends=True)
    lines[4] = "garbage line\n"
    p.write_text("".join(lines))
    with pytest.raises(InvalidParameterError, match=r"unreadable labels.extxyz .*ValueError"):
        _learner(run_dir, "EMT", initial).run()
    p.write_text(good)
    f = run_dir / "failures.jsonl"
    f.write_text('{"id": 1}\n')
    with pytest.raises(InvalidParameterError, match=r"Line 1 of .*failures.jsonl is not a "
                                                    r"failure record"):
        _learner(run_dir, "EMT", initial).run()
    f.unlink()
    # a damaged model.hpot is derived data: refitted from the labels, with a warning
    (run_dir / "model.hpot").write_bytes((run_dir / "model.hpot").read_bytes()[:100])
    with pytest.warns(RuntimeWarning, match=r"model.hpot' is not a readable hybridpot model "
                                            r"file.*refitted from the labels"):
        res = _learner(run_dir, "EMT", initial).run()
    _same_run(res, reference, initial)


def test_unreadable_proposals_file_is_a_typed_error(tmp_path, initial):
    run_dir = tmp_path / "run"
    with pytest.raises(Killed):
        _learner(run_dir, BadEMT("kill", [], bad_at=5), initial).run()
    st = json.loads((run_dir / "state.json").read_text())
    path = run_dir / "proposals" / st["proposals"]["file"]
    path.write_text(path.read_text()[:300])
    with pytest.raises(InvalidParameterError, match=r"proposals file .*iter_0001.extxyz' of the "
                                                    r"interrupted iteration is unreadable"):
        _learner(run_dir, "EMT", initial).run()


def test_torn_failure_record_is_cut_off(tmp_path, initial):
    # the next record was appended to the torn line: unreadable, so the failure was lost and
    # the failing structure labelled again by every resumed run
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "failures.jsonl").write_text('{"id": "i0000-c0010", "iter')
    calls = []
    _learner(run_dir, BadEMT("nan_stress", calls, bad_at=1), initial, max_iterations=1).run()
    text = (run_dir / "failures.jsonl").read_text()
    assert text.startswith('{"id": "i0000-c0010", "iteration": 0, "error": "OracleError')
    calls2 = []
    res = _learner(run_dir, BadEMT("none", calls2), initial, max_iterations=1).run()
    assert calls2 == [] and "i0000-c0010" in res.failures_
