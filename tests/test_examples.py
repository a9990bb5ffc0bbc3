"""Every example runs (in --quick mode) as a user would run it: a fresh interpreter."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run_example(name, *args, cwd):
    env = dict(os.environ, MPLBACKEND="Agg")
    proc = subprocess.run([sys.executable, str(EXAMPLES / name), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_lammps_export_example(tmp_path):
    out = run_example("lammps_export.py", "--quick", "--out", str(tmp_path / "lmp"),
                      cwd=tmp_path)
    assert "pair_style hybrid/overlay zbl" in out
    assert (tmp_path / "lmp" / "cu.snapcoeff").is_file()
    if "LAMMPS: energy" in out:
        diff = float(out.split("(difference ")[1].split(")")[0])
        assert abs(diff) < 1e-6


@pytest.mark.slow
def test_quickstart_example(tmp_path):
    out = run_example("quickstart.py", "--quick", "--md-steps", "200", cwd=tmp_path)
    assert "test: energy MAE" in out and "Langevin MD" in out
