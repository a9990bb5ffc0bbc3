"""The command line end to end in a temporary folder, and its one-line errors (exit code 2)."""

import json
import subprocess
import sys

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import write

from hybridpot.cli import main
from hybridpot import ConfigError
from hybridpot.config import load_config


@pytest.fixture(scope="module")
def emt_file(tmp_path_factory):
    r = np.random.default_rng(7)
    out = []
    for k in range(10):
        at = bulk("Cu", "fcc", a=3.61 * (1 + r.uniform(-0.03, 0.03)), cubic=True) * (2, 2, 2)
        at.rattle(stdev=0.06, seed=k)
        at.calc = EMT()
        res = {"energy": at.get_potential_energy(), "forces": at.get_forces(),
               "stress": at.get_stress()}
        at.calc = SinglePointCalculator(at, **res)
        at.info["config_type"] = "rattle"
        out.append(at)
    p = tmp_path_factory.mktemp("data") / "cu.extxyz"
    write(p, out)
    return p


def _config(tmp_path, emt_file, extra=""):
    cfg = tmp_path / "fit.toml"
    cfg.write_text(f"""
[data]
train = "{emt_file}"
test_fraction = 0.2

[descriptor]
type = "PowerSpectrum"
r_cut = 4.5
n_max = 4
l_max = 3

[baseline]
type = "LennardJones"
epsilon = 0.02
sigma = 2.3
r_cut = 4.5

[output]
model = "{tmp_path / 'cu.hpot'}"
report = "{tmp_path / 'report'}"

[md]
lattice_constant = 3.61
supercell = [2, 2, 2]
steps = 20
trajectory = "{tmp_path / 'md.traj'}"
{extra}
""")
    return cfg


def test_fit_evaluate_md_report(tmp_path, emt_file, capsys):
    cfg = _config(tmp_path, emt_file)
    assert main(["fit", "-c", str(cfg), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "test: energy MAE" in out
    assert (tmp_path / "cu.hpot").is_file()
    html = (tmp_path / "report" / "report.html").read_text()
    assert "parity_forces.png" in html and (tmp_path / "report" / "parity_forces.png").is_file()
    assert main(["evaluate", "-c", str(cfg), "--data", str(emt_file), "--json"]) == 0
    m = json.loads(capsys.readouterr().out)
    assert m["force_mae"] < 0.1
    assert main(["md", "-c", str(cfg), "--quiet"]) == 0
    cap = capsys.readouterr()
    assert "md (langevin): 20 steps" in cap.out
    assert "step/s" not in cap.err          # --quiet: no progress bar
    assert (tmp_path / "md.traj").is_file()
    assert main(["report", "-c", str(cfg), "--out", str(tmp_path / "r2")]) == 0
    assert (tmp_path / "r2" / "metrics.json").is_file()


def test_md_with_sigma_log_and_stop(tmp_path, emt_file, capsys):
    """[md] uncertainty_interval logs σ every n steps (one CSV row per fresh σ, equal to the
    calculator's σ of that structure); max_force_std stops the run when exceeded."""
    log = tmp_path / "sigma.csv"
    cfg = _config(tmp_path, emt_file, f'uncertainty_interval = 3\nsigma_log = "{log}"\n')
    assert main(["fit", "-c", str(cfg), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["md", "-c", str(cfg), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "md (langevin): 20 steps" in out and f"σ every 3 steps -> {log}" in out
    rows = np.loadtxt(log, delimiter=",", skiprows=1, ndmin=2)
    assert log.read_text().splitlines()[0].startswith("step,time_fs,energy_std_eV,")
    np.testing.assert_array_equal(rows[:, 0], np.arange(0, 21, 3))
    np.testing.assert_allclose(rows[:, 1], rows[:, 0] * 1.0)
    assert np.all(rows[:, 2:] > 0) and np.all(rows[:, 3] >= rows[:, 4])
    # the logged σ of step 0 is the calculator's σ of the first trajectory frame (step 0)
    from ase.io import read

    from hybridpot import HybridPotential

    model = HybridPotential.load(tmp_path / "cu.hpot")
    at = read(tmp_path / "md.traj", 0)
    at.calc = model.calculator(uncertainty=True)
    at.get_forces()
    fs = at.calc.results["forces_std"]
    np.testing.assert_allclose(rows[0, 2:5], [at.calc.results["energy_std"], fs.max(),
                                              fs.mean()], rtol=1e-5)
    # stop rule: a threshold below the first σ ends the run at step 0
    first = rows[0, 3]
    cfg2 = _config(tmp_path, emt_file, f'uncertainty_interval = 2\nsigma_log = "{log}"\n'
                   f"max_force_std = {first / 2}\n")
    assert main(["md", "-c", str(cfg2), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "stopped at step 0: largest force σ" in out and "md (langevin): 0 steps" in out
    assert len(log.read_text().splitlines()) == 2
    # a threshold above every σ runs to the end
    cfg3 = _config(tmp_path, emt_file, f'uncertainty_interval = 5\nsigma_log = "{log}"\n'
                   f"max_force_std = {10 * rows[:, 3].max()}\n")
    assert main(["md", "-c", str(cfg3), "--quiet"]) == 0
    assert "stopped" not in capsys.readouterr().out
    assert len(log.read_text().splitlines()) == 1 + 5


def test_md_sigma_needs_a_posterior(tmp_path, emt_file, capsys):
    cfg = _config(tmp_path, emt_file, 'uncertainty_interval = 2\n[regressor]\n'
                  'type = "LinearRegressor"\n')
    assert main(["fit", "-c", str(cfg), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["md", "-c", str(cfg), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "md.uncertainty_interval = 2 needs a model with a posterior" in err
    assert "LinearRegressor has none" in err
    assert len(err.splitlines()) == 1 and not (tmp_path / "md_sigma.csv").exists()


@pytest.mark.parametrize("extra, message", [
    ("uncertainty_interval = -1\n", "md.uncertainty_interval must be >= 0"),
    ("max_force_std = -0.1\n", "md.max_force_std must be >= 0"),
    ("max_force_std = 0.1\n", "md.max_force_std needs md.uncertainty_interval >= 1"),
    ("uncertainty_interval = 'x'\n", "md.uncertainty_interval must be int"),
])
def test_bad_md_sigma_config_exit_2(tmp_path, emt_file, capsys, extra, message):
    cfg = _config(tmp_path, emt_file, extra)
    assert main(["fit", "-c", str(cfg), "--quiet"]) in (0, 2)
    capsys.readouterr()
    assert main(["md", "-c", str(cfg), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("extra, message", [
    ("[fit]\nchunk_sise = 4\n", "unknown key fit.chunk_sise"),
    ("[fitting]\nx = 1\n", "unknown section [fitting]"),
    ("[fit]\nchunk_size = 'four'\n", "fit.chunk_size must be int"),
    ("[fit]\nchunk_size = 0\n", "'chunk_size'"),
])
def test_bad_config_is_one_line_exit_2(tmp_path, emt_file, capsys, extra, message):
    cfg = _config(tmp_path, emt_file, extra)
    assert main(["fit", "-c", str(cfg), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_bad_paths_exit_2(tmp_path, capsys):
    assert main(["fit", "-c", str(tmp_path / "missing.toml")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["fit", "--train", str(tmp_path / "nope.xyz"), "--quiet"]) == 2
    assert "nope.xyz" in capsys.readouterr().err
    assert main(["evaluate", "--model", str(tmp_path / "none.hpot")]) == 2
    assert "does not exist" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text("[data\n")
    assert main(["fit", "-c", str(bad)]) == 2
    assert "not valid TOML" in capsys.readouterr().err


def test_descriptor_type_and_unknown_descriptor_key(tmp_path, emt_file):
    cfg = _config(tmp_path, emt_file).read_text().replace("l_max = 3", "l_max = 3\nlmax = 2")
    p = tmp_path / "x.toml"
    p.write_text(cfg)
    c = load_config(p)
    from hybridpot.config import build_descriptor

    with pytest.raises(ConfigError, match="lmax"):
        build_descriptor(c, ["Cu"])


def test_entry_point_installed():
    r = subprocess.run([sys.executable, "-m", "hybridpot.cli", "--version"],
                       capture_output=True, text=True)
    assert r.returncode == 0 and "hybridpot" in r.stdout


def test_emt_baseline_section():
    from hybridpot.config import build_baseline

    emt = build_baseline({"baseline": {"type": "EMT", "asap_cutoff": True}})
    assert type(emt).__name__ == "EMT" and emt.asap_cutoff is True
    assert build_baseline({"baseline": {"type": "EMT"}}).asap_cutoff is False
    with pytest.raises(ConfigError, match=r"takes only the key 'asap_cutoff'. Got unknown key"
                                          r"\(s\) \['colour'\]"):
        build_baseline({"baseline": {"type": "EMT", "colour": 1}})
    with pytest.raises(ConfigError, match="baseline.asap_cutoff must be true or false. Got 1"):
        build_baseline({"baseline": {"type": "EMT", "asap_cutoff": 1}})


@pytest.mark.parametrize("regressor, fit, overrides, want", [
    ('type = "BayesianLinearRegressor"', "", None, {"energy": "auto", "forces": 1.0,
                                                    "stress": 100.0}),
    ('type = "LinearRegressor"', "", None, {"energy": "auto", "forces": 1.0, "stress": 100.0}),
    ('type = "SparseGPRegressor"', "", None, {"energy": 1.0, "forces": 1.0, "stress": 0.1}),
    ('type = "EnsembleRegressor"', "", None, {"energy": 1.0, "forces": 1.0, "stress": 0.1}),
    ('type = "SparseGPRegressor"', "[fit]\nweights = {energy = 5.0, forces = 1.0}\n", None,
     {"energy": 5.0, "forces": 1.0}),
    ('type = "SparseGPRegressor"', "", {"fit": {"weights": {"energy": 2.0}}}, {"energy": 2.0}),
])
def test_default_fit_weights_follow_the_regressor(tmp_path, regressor, fit, overrides, want):
    # the linear models' defaults (one shared noise level balanced by the row weights) would
    # make a GP's fixed energy noise 30x smaller and ruin its forces
    p = tmp_path / "w.toml"
    p.write_text(f"[regressor]\n{regressor}\n{fit}")
    assert load_config(p, overrides)["fit"]["weights"] == want
    assert load_config()["fit"]["weights"] == {"energy": "auto", "forces": 1.0, "stress": 100.0}
