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


def test_kill_after_the_model_save_before_the_state_save(tmp_path, initial, reference,
                                                        monkeypatch):
    # model.hpot already held the refit on the iteration's labels while state.json still
    # counted the labels before them: the resumed iteration loaded it as the model that
    # proposed the batch (history σ 0.043 instead of 0.055 eV/Å)
    save, calls = HybridPotential.save, []

    def save_then_die(self, path):
        save(self, path)
        calls.append(path)
        if len(calls) == 2:       # the refit at the end of iteration 0
            raise Killed("after the model save")

    monkeypatch.setattr(HybridPotential, "save", save_then_die)
    run_dir = tmp_path / "run"
    with pytest.raises(Killed):
        _learner(run_dir, "EMT", initial).run()
    monkeypatch.setattr(HybridPotential, "save", save)
    res = _learner(run_dir, "EMT", initial).run()
    _same_run(res, reference, initial)
    strip = [{k: v for k, v in h.items() if k != "label_seconds"} for h in res.history_]
    assert strip == [{k: v for k, v in h.items() if k != "label_seconds"}
                     for h in reference.history_]


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
    # temp files of writes a kill interrupted are removed at the restart (each killed model
    # save left a model-sized .hpot-* behind)
    (run_dir / ".hpot-abc123").write_bytes(b"x" * 100)
    (run_dir / ".state.json.tmp4242").write_text("{")
    (run_dir / "proposals" / ".iter_0001.extxyz.tmp4242").write_text("8\n")
    res = _learner(run_dir, "EMT", initial).run()
    _same_run(res, reference, initial)
    assert sorted(f.name for f in run_dir.iterdir() if f.name.startswith(".")) == [".lock"]
    assert not [f for f in (run_dir / "proposals").iterdir() if f.name.startswith(".")]
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


# ---------------------------------------------------------------------------- model files
@pytest.fixture(scope="module")
def saved(tmp_path_factory, initial):
    from conftest import emt_dataset
    from hybridpot.baselines import Morse

    model = HybridPotential(descriptor=PowerSpectrum(species=["Cu"], r_cut=4.0, n_max=2,
                                                     l_max=2),
                            regressor=BayesianLinearRegressor(),
                            baseline=Morse(D0=0.3, alpha=1.3, r0=2.5, r_cut=4.0))
    model.fit(emt_dataset(4, seed=2, reps=(1, 1, 1)))
    path = tmp_path_factory.mktemp("m") / "m.hpot"
    model.save(path)
    with zipfile.ZipFile(path) as z:
        doc, npz = json.loads(z.read("model.json")), z.read("arrays.npz")
    return model, path, doc, npz


def _write(path, members):
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return path


def _npz(arrays, raw=None):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for k, v in arrays.items():
            b = io.BytesIO()
            np.save(b, v, allow_pickle=True)
            z.writestr(k + ".npy", b.getvalue())
        for k, v in (raw or {}).items():
            z.writestr(k + ".npy", v)
    return buf.getvalue()


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch PWNED_BY_MODEL_FILE",))


def _huge_header():
    b = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        b, {"descr": "<f8", "fortran_order": False, "shape": (10 ** 6, 10 ** 6)})
    return b.getvalue() + b"\0" * 64


@pytest.mark.parametrize("make, message", [
    # a header announcing a 8 TB array: was a raw MemoryError (or an allocation that size)
    (lambda doc, arr: {"model.json": json.dumps(doc), "arrays.npz": _npz(
        {k: v for k, v in arr.items() if k != "coef"}, {"coef": _huge_header()})},
     r"array 'coef' announces shape \(1000000, 1000000\) \(8000000000000 bytes\) but holds "
     r"64 bytes"),
    (lambda doc, arr: {"model.json": json.dumps(doc), "arrays.npz": _npz(
        {**arr, "coef": np.array([_Evil()], dtype=object)})},
     r"array 'coef' has dtype object; a model file holds only numeric arrays"),
    (lambda doc, arr: {"model.json": json.dumps(doc), "arrays.npz": _npz(
        {**arr, "coef": arr["coef"] * np.nan})}, r"array 'coef' holds NaN or inf values"),
    (lambda doc, arr: {"model.json": json.dumps(doc), "arrays.npz": _npz(arr),
                       "evil.py": "import os"},
     r"must hold exactly model.json and arrays.npz; found \['arrays.npz', 'evil.py', "),
    (lambda doc, arr: {"model.json": json.dumps({**doc, "format_version": True}),
                       "arrays.npz": _npz(arr)}, r"invalid format_version True"),
    (lambda doc, arr: {"model.json": "[" * 100000, "arrays.npz": _npz(arr)},
     r"not a readable hybridpot model file: RecursionError"),
    # a descriptor parameter missing from the file took its default: failed only at predict
    (lambda doc, arr: {"model.json": json.dumps(
        {**doc, "descriptor": {"class": "PowerSpectrum", "params": {
            k: v for k, v in doc["descriptor"]["params"].items() if k != "n_max"}}}),
        "arrays.npz": _npz(arr)},
     r"the regressor was fitted on 9 descriptor features, but the descriptor .* gives 108"),
    (lambda doc, arr: {"model.json": json.dumps({**doc, "reference_energies": {
        "Cu": float("nan")}}), "arrays.npz": _npz(arr)},
     r"'reference_energies' must map elements of \['Cu'\] to finite energies"),
    (lambda doc, arr: {"model.json": json.dumps({**doc, "regressor": {
        **doc["regressor"], "state": {**doc["regressor"]["state"], "fit_mode": None}}}),
        "arrays.npz": _npz(arr)}, r"fit_mode must be 'batch' in a model file. Got 'None'"),
    # a bad baseline parameter loaded and failed at the first prediction
    (lambda doc, arr: {"model.json": json.dumps({**doc, "baseline": {
        "class": "Morse", "params": {**doc["baseline"]["params"], "r0": -1}}}),
        "arrays.npz": _npz(arr)},
     r"invalid baseline parameters: The 'r0' parameter of Morse must be a float in \(0, inf\)"),
    (lambda doc, arr: {"model.json": json.dumps({**doc, "baseline": {
        "class": "EMT", "params": {"asap_cutoff": "x"}}}), "arrays.npz": _npz(arr)},
     r"invalid baseline parameters: The 'asap_cutoff' parameter of EMT must be a bool"),
])
def test_damaged_model_file_is_a_model_format_error(saved, tmp_path, make, message,
                                                    monkeypatch):
    _, _, doc, npz = saved
    arrays = dict(np.load(io.BytesIO(npz)))
    path = _write(tmp_path / "bad.hpot", make(doc, arrays))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelFormatError, match=rf"^'{path}'.*{message}"):
        HybridPotential.load(path)
    assert not (tmp_path / "PWNED_BY_MODEL_FILE").exists()


def test_bit_flips_in_a_model_file_are_model_format_errors(saved, tmp_path):
    # flips in the compressed data raised zlib.error (a raw error) before
    _, path, _, _ = saved
    data = path.read_bytes()
    rng = np.random.default_rng(0)
    n_err = 0
    for k in range(60):
        b = bytearray(data)
        j = int(rng.integers(len(b)))
        b[j] ^= 1 << int(rng.integers(8))
        bad = tmp_path / "flip.hpot"
        bad.write_bytes(bytes(b))
        try:
            HybridPotential.load(bad)   # flips in zip metadata the CRC does not cover
        except ModelFormatError:
            n_err += 1
    assert n_err > 40


def test_saved_model_has_the_umask_mode(saved, tmp_path):
    # mkstemp made every saved model 0600 (unreadable by the group of a shared project)
    model = saved[0]
    old = os.umask(0o022)
    try:
        model.save(tmp_path / "a.hpot")
        assert (tmp_path / "a.hpot").stat().st_mode & 0o777 == 0o644
        os.chmod(tmp_path / "a.hpot", 0o640)
        model.save(tmp_path / "a.hpot")             # over an existing file: keeps its mode
        assert (tmp_path / "a.hpot").stat().st_mode & 0o777 == 0o640
    finally:
        os.umask(old)
    np.testing.assert_array_equal(HybridPotential.load(tmp_path / "a.hpot").predict(
        saved_structures := [bulk("Cu", "fcc", a=3.6, cubic=True)]),
        model.predict(saved_structures))


# ---------------------------------------------------------------------------- LAMMPS SNAP
def _snap_files(tmp_path, coeff_body=None, n_blocks=1):
    from hybridpot.descriptors import SNAPBispectrum

    K = SNAPBispectrum(species=["Cu"], twojmax=2, rcutfac=4.0).n_features
    (tmp_path / "m.snapparam").write_text("rcutfac 4.0\ntwojmax 2\n")
    blocks = "".join(f"{el} 0.5 1.0\n" + "".join(f"{0.01 * k}\n" for k in range(K + 1))
                     for el in ["Cu", "Ni"][:n_blocks])
    (tmp_path / "m.snapcoeff").write_text(
        coeff_body(K, blocks) if coeff_body else f"# test\n1 {K + 1}\n{blocks}")
    return tmp_path / "m.snapcoeff", tmp_path / "m.snapparam"


@pytest.mark.parametrize("body, message", [
    # a NaN coefficient was an InvalidParameterError of LinearRegressor.from_coef naming
    # neither the file nor the line ('Got shape (1, 6)')
    (lambda K, b: f"1 {K + 1}\n" + b.replace("\n0.02\n", "\nnan\n"),
     r"m.snapcoeff:5: coefficient 2 of element 'Cu' is nan; coefficients must be finite"),
    # a header announcing one element over two blocks dropped the second silently
    (lambda K, b: f"1 {K + 1}\n" + b + "Ni 0.5 1.0\n" + "0.0\n" * (K + 1),
     r"m.snapcoeff:\d+: unexpected line 'Ni 0.5 1.0' after the 1 element block\(s\) the "
     r"header '1 \d+' announces"),
    # an invalid element name came out as 'The species parameter of read_snap ...'
    (lambda K, b: f"1 {K + 1}\n" + b.replace("Cu ", "Xx "),
     r"m.snapcoeff:2: element block 1 names 'Xx', which is not a chemical symbol"),
])
def test_malformed_snapcoeff_is_a_model_format_error(tmp_path, body, message):
    from hybridpot.io.lammps import read_snap

    coeff, param = _snap_files(tmp_path, body)
    with pytest.raises(ModelFormatError, match=message):
        read_snap(coeff, param)


def test_binary_snap_files_are_model_format_errors(tmp_path):
    # a raw UnicodeDecodeError before
    from hybridpot.io.lammps import read_snap

    coeff, param = _snap_files(tmp_path)
    assert read_snap(coeff, param).predict([bulk("Cu", "fcc", a=3.6, cubic=True)]).shape == (1,)
    coeff.write_bytes(b"\x80\x81\xff" * 10)
    with pytest.raises(ModelFormatError, match=r"m.snapcoeff: not a text SNAP coefficient "
                                               r"file"):
        read_snap(coeff, param)
    param.write_bytes(b"\x80\x81\xff" * 10)
    with pytest.raises(ModelFormatError, match=r"m.snapparam: not a text SNAP parameter file"):
        read_snap(coeff, param)


# ---------------------------------------------------------------------------- training data
def test_non_numeric_label_in_extxyz_is_a_missing_labels_error(tmp_path, initial):
    # energy=abc in an extxyz comment line: a raw ValueError traceback from `hybridpot fit`
    from ase.io import write

    from hybridpot import MissingLabelsError
    from hybridpot._labels import get_labels
    from hybridpot.config import read_structures

    path = tmp_path / "d.extxyz"
    write(path, initial, format="extxyz")
    path.write_text(path.read_text().replace("energy=", "energy=abc x=", 1))
    with pytest.raises(MissingLabelsError, match=r"data.train: structure 0 \(Cu8\) of '.*d.extxyz'"
                                                 r": The energy label of structure 0 must be a "
                                                 r"number. Got 'abc' instead"):
        read_structures([str(path)], "data.train", labels=True)
    at = initial[0].copy()
    at.info["stress"] = ["a", "b"]
    with pytest.raises(MissingLabelsError, match=r"stress label of structure 3 must be an "
                                                 r"array of numbers"):
        get_labels(at, 3)


_SLOW_DRIVER = textwrap.dedent("""
    import os, sys, time, warnings
    warnings.simplefilter("ignore")
    sys.path.insert(0, {tests!r})
    from ase.calculators.calculator import Calculator, all_changes
    import test_crash_s8 as T

    class Slow(Calculator):
        implemented_properties = ["energy", "free_energy", "forces"]

        def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
            with open(sys.argv[2] + ".tmp", "w") as fh:
                fh.write(str(os.getpid()))
            os.replace(sys.argv[2] + ".tmp", sys.argv[2])
            time.sleep(120)

    initial = [T.emt_label(a) for a in T._sampler().sample(2, random_state=100)]
    T._learner(sys.argv[1], Slow(), initial, oracle_timeout=300).run()
""")


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux")
def test_oracle_worker_dies_with_a_killed_learner(tmp_path):
    # the worker of oracle_timeout went on as an orphan (a DFT run beside the resumed one)
    import time

    script = tmp_path / "driver.py"
    script.write_text(_SLOW_DRIVER.format(tests=os.path.dirname(__file__)))
    pid_file = tmp_path / "worker.pid"
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path / "run"), str(pid_file)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        t0 = time.time()
        while not pid_file.exists() and time.time() - t0 < 120:
            time.sleep(0.1)
        worker = int(pid_file.read_text())
        assert _alive(worker)
    finally:
        proc.kill()
        proc.wait()
    t0 = time.time()
    while _alive(worker) and time.time() - t0 < 10:
        time.sleep(0.1)
    alive = _alive(worker)
    if alive:
        os.kill(worker, signal.SIGKILL)
    assert not alive


def test_second_process_on_the_same_run_dir_is_refused(tmp_path, initial, reference):
    # two runs on one folder (a requeued batch job while the first still ran) labelled every
    # proposal twice (16 oracle calls for 9 labels, duplicated frames) and raced on state.json
    from hybridpot.learn._learner import _run_lock

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    with _run_lock(run_dir):       # stands for the other process (flock: per open file)
        with pytest.raises(InvalidParameterError, match=r"is in use by another active-learning "
                                                        rf"process \(pid {os.getpid()}\)"):
            _learner(run_dir, "EMT", initial).run()
    res = _learner(run_dir, "EMT", initial).run()    # released: runs
    _same_run(res, reference, initial)
    again = _learner(run_dir, "EMT", initial).run()  # and the lock of a finished run is free
    assert again.n_oracle_calls_ == 0


def test_cli_learn_ctrl_c_is_a_message_and_resumes(tmp_path, initial, capsys, monkeypatch):
    # Ctrl-C printed a KeyboardInterrupt traceback from deep inside the learner
    from ase.io import write

    from hybridpot.cli import main
    from hybridpot.learn import _learner as L

    write(tmp_path / "init.extxyz", initial)
    cfg = tmp_path / "learn.toml"
    cfg.write_text(textwrap.dedent(f"""
        [descriptor]
        type = "PowerSpectrum"
        r_cut = 4.5
        n_max = 4
        l_max = 3
        [baseline]
        type = "none"
        [learn]
        run_dir = "{tmp_path / 'run'}"
        species = ["Cu"]
        lattice_constant = 3.61
        supercell = [2, 1, 1]
        initial = "{tmp_path / 'init.extxyz'}"
        n_candidates = 6
        batch_size = 2
        max_iterations = 2
        """))
    compute, calls = L._compute, []

    def interrupted(oracle, atoms):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return compute(oracle, atoms)

    monkeypatch.setattr(L, "_compute", interrupted)
    assert main(["learn", "-c", str(cfg), "-q"]) == 130
    assert capsys.readouterr().err == (
        "hybridpot learn: interrupted; run the same command again to resume (the labels "
        "computed so far are kept in the run directory).\n")
    assert len(L.read_labels(tmp_path / "run" / "labels.extxyz")) == 2
    monkeypatch.setattr(L, "_compute", compute)
    assert main(["learn", "-c", str(cfg), "-q"]) == 0
    assert "learn: 4 labels, 0 failures, 2 iterations" in capsys.readouterr().out
