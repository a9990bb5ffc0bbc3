"""Review s10 (an ACEpotentials.jl / FitSNAP user): per-config_type error tables, the ARD
solver, smoothness priors."""

import json

import numpy as np
import pytest
from ase.io import write

from conftest import emt_dataset
from hybridpot import HybridPotential, InvalidParameterError
from hybridpot.cli import main
from hybridpot.descriptors import PowerSpectrum
from hybridpot.regression import LinearRegressor
from hybridpot.report import error_table, format_error_table


@pytest.fixture(scope="module")
def cu_data():
    return emt_dataset(12, 3)


@pytest.fixture(scope="module")
def cu_model(cu_data):
    desc = PowerSpectrum(species=["Cu"], r_cut=4.5, n_max=3, l_max=2)
    return HybridPotential(descriptor=desc, regressor=LinearRegressor(alpha=1e-6)).fit(
        cu_data[:8])


def _errors(model, structures):
    """Independent per-structure errors: energy per atom, force and stress components."""
    de, df, ds = [], [], []
    for a in structures:
        e = model.predict([a])[0]
        f = model.predict_forces([a])[0]
        c = a.copy()
        c.calc = model.calculator()
        s = c.get_stress()
        de.append((e - a.get_potential_energy()) / len(a))
        df.append((f - a.get_forces()).ravel())
        ds.append(s - a.get_stress())
    return np.array(de), np.concatenate(df), np.concatenate(ds)


def test_error_table_per_config_type(cu_data, cu_model):
    test = cu_data[8:]
    table = error_table(cu_model, test)
    assert list(table) == ["strain", "rattle", "all"] or list(table) == ["rattle", "strain",
                                                                         "all"]
    for g in ("rattle", "strain"):
        sub = [a for a in test if a.info["config_type"] == g]
        de, df, ds = _errors(cu_model, sub)
        m = table[g]
        assert m["n_structures"] == len(sub)
        assert m["n_atoms"] == sum(len(a) for a in sub)
        np.testing.assert_allclose(m["energy_rmse"], np.sqrt(np.mean(de ** 2)), rtol=1e-8)
        np.testing.assert_allclose(m["energy_mae"], np.mean(np.abs(de)), rtol=1e-8)
        np.testing.assert_allclose(m["force_rmse"], np.sqrt(np.mean(df ** 2)), rtol=1e-8)
        np.testing.assert_allclose(m["force_mae"], np.mean(np.abs(df)), rtol=1e-8)
        np.testing.assert_allclose(m["stress_rmse"], np.sqrt(np.mean(ds ** 2)), rtol=1e-6)
    # "all" is what evaluate gives
    ev = cu_model.evaluate(test)
    for k in ("energy_rmse", "energy_mae", "force_rmse", "force_mae", "stress_rmse",
              "stress_mae", "n_structures"):
        np.testing.assert_allclose(table["all"][k], ev[k], rtol=1e-12)
    text = format_error_table(table, "test")
    assert text.splitlines()[0] == "test"
    assert "meV/atom" in text and "GPa" in text
    row = [ln for ln in text.splitlines() if ln.startswith("rattle")][0].split()
    np.testing.assert_allclose(float(row[2]), 1e3 * table["rattle"]["energy_rmse"], atol=1e-3)


def test_error_table_missing_kinds_and_errors(cu_data, cu_model):
    a = cu_data[9].copy()
    a.calc = None
    a.info = {"config_type": "nolabel", "energy": cu_data[9].get_potential_energy()}
    table = error_table(cu_model, [a])
    assert np.isfinite(table["nolabel"]["energy_rmse"])
    assert np.isnan(table["nolabel"]["force_rmse"]) and np.isnan(table["all"]["stress_mae"])
    assert "-" in format_error_table(table).splitlines()[-1]
    with pytest.raises(InvalidParameterError, match="'group_key' argument of error_table "
                                                    "must be a str.*Got 3"):
        error_table(cu_model, cu_data[:1], group_key=3)
    with pytest.raises(InvalidParameterError, match="error_table"):
        error_table(cu_model, [])


def test_cli_prints_error_table(tmp_path, cu_data, capsys):
    p = tmp_path / "cu.extxyz"
    write(p, cu_data)
    cfg = tmp_path / "fit.toml"
    cfg.write_text(f"""
[data]
train = "{p}"
test_fraction = 0.25
[descriptor]
type = "PowerSpectrum"
r_cut = 4.5
n_max = 3
l_max = 2
[baseline]
type = "none"
[output]
model = "{tmp_path / 'cu.hpot'}"
report = ""
""")
    assert main(["fit", "-c", str(cfg), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "train errors by config_type:" in out and "test errors by config_type:" in out
    assert any(ln.startswith("rattle") for ln in out.splitlines())
    assert main(["evaluate", "-c", str(cfg), "--data", str(p), "--json"]) == 0
    m = json.loads(capsys.readouterr().out)
    assert set(m["by_config_type"]) == {"rattle", "strain"}
    assert m["by_config_type"]["rattle"]["n_structures"] == 6
    assert main(["evaluate", "-c", str(cfg), "--data", str(p)]) == 0
    assert "errors by config_type:" in capsys.readouterr().out
