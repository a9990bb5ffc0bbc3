"""``hybridpot properties`` and :mod:`hybridpot.properties` (session 12), and ``hybridpot md
--per-atom-stress``.

The CLI's JSON must hold the numbers of the library function (same model, seed and
options); the properties must be internally consistent (EOS bulk modulus = (C11 + 2 C12)/3,
stress- = energy-derived elastic constants, σ = the members' spread, difference = model -
baseline); bad input is a typed error naming the parameter (library) or a one-line error
with exit code 2 (CLI).  The per-atom stresses stored in MD trajectory frames are checked
against the model's per-atom virials recomputed for the frame (ASE sign and Voigt order
written out here) and against the frame's cell stress (they sum to it: Σ_k W_k = V σ).
"""

import json

import numpy as np
import pytest
from ase.build import bulk
from ase.io import read, write

from conftest import emt_dataset, emt_label, skewed_two_element_cell
from hybridpot import HybridPotential, InvalidParameterError, NotFittedError
from hybridpot.baselines import LennardJones
from hybridpot.cli import main
from hybridpot.descriptors import PowerSpectrum
from hybridpot.properties import (committee, committee_kind, compute_properties,
                                  default_lattice_constant, format_table, relaxed_bulk)
from hybridpot.regression import BayesianLinearRegressor, LinearRegressor


@pytest.fixture(scope="module")
def cu_model(tmp_path_factory):
    """Bayesian linear power spectrum on a Lennard-Jones baseline (a real ML part), EMT Cu
    labels (strained / rattled cells and cells with a vacancy), saved to a file."""
    vacancies = []
    for at in emt_dataset(3, seed=4):
        del at[0]
        vacancies.append(emt_label(at))
    model = HybridPotential(PowerSpectrum(species=["Cu"], r_cut=4.0, n_max=3, l_max=2),
                            BayesianLinearRegressor(noise_levels="shared"),
                            LennardJones(epsilon=0.02, sigma=2.3, r_cut=4.0),
                            {"energy": 1000.0, "forces": 1.0, "stress": 100.0})
    model.fit(emt_dataset(8, seed=3) + vacancies)
    path = tmp_path_factory.mktemp("props") / "cu.hpot"
    model.save(path)
    return model, path


@pytest.fixture(scope="module")
def cuni_model(tmp_path_factory):
    """A two-element model without posterior (LinearRegressor), saved."""
    train = [emt_label(skewed_two_element_cell(seed=s) * (2, 2, 1)) for s in range(4)]
    model = HybridPotential(PowerSpectrum(species=["Cu", "Ni"], r_cut=3.5, n_max=2, l_max=2),
                            LinearRegressor(alpha=1e-6)).fit(train)
    path = tmp_path_factory.mktemp("props2") / "cuni.hpot"
    model.save(path)
    return model, path


def _cli(argv, out):
    """Run ``hybridpot properties`` in-process; (stdout, the JSON it wrote)."""
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main(["properties", *argv, "--json", str(out)])
    assert code == 0
    return buf.getvalue(), json.loads(out.read_text(encoding="utf-8"))


def _same_numbers(js, lib, parts):
    for part in parts:
        assert set(js[part]) == set(js["keys"]), part
        for k in js["keys"]:
            assert isinstance(js[part][k], float)
            assert js[part][k] == pytest.approx(lib[part][k], rel=1e-9, abs=1e-12), (part, k)


def _check_consistent(res):
    for part in [res["model"]] + ([res["baseline"]] if res["baseline"] else []) \
            + res["members"]:
        # EOS bulk modulus = (C11 + 2 C12) / 3; stress- and energy-derived constants agree
        assert part["B(C)"] == pytest.approx(part["B"], rel=0.01)
        for k in ("C11", "C12", "C44"):
            assert part[f"{k}(E)"] == pytest.approx(part[k], rel=2e-3, abs=0.05), k
        assert abs(part["ν(Γ)"]) < 1e-3 and part["νX hi"] >= part["νX lo"] > 0
        assert 3.3 < part["a0"] < 3.9
    if res["baseline"]:
        for k in res["keys"]:
            assert res["difference"][k] == pytest.approx(
                res["model"][k] - res["baseline"][k], abs=1e-12)


def test_cli_json_holds_the_library_numbers(cu_model, tmp_path):
    """--members 0 (no σ): the model and its LJ baseline; element from the model."""
    model, path = cu_model
    stdout, js = _cli(["--model", str(path), "--quick", "--members", "0"],
                      tmp_path / "sub" / "props.json")
    lib = compute_properties(HybridPotential.load(path), "Cu", quick=True, members=0)
    assert js["model_file"] == str(path)
    assert js["symbol"] == "Cu" and js["crystal"] == "fcc" and js["quick"] is True
    assert js["a_guess"] == pytest.approx(3.61)     # ASE's reference fcc Cu
    assert js["r_cut"] == 4.0
    assert js["n_members"] == 0 and js["committee"] is None and js["members"] == []
    assert js["sigma"] is None and js["notes"] == []
    assert js["baseline_name"] == "LennardJones"
    assert js["keys"] == ["a0", "B", "C11", "C12", "C44", "C11(E)", "C12(E)", "C44(E)",
                          "B(C)", "E_v", "E_m", "γ100", "γ111", "ν(Γ)", "νX lo", "νX hi"]
    assert js["units"] == {k: lib["units"][k] for k in js["keys"]}
    assert js["units"]["a0"] == "Å" and js["units"]["γ111"] == "J/m²"
    assert js["units"]["E_m"] == "eV" and js["units"]["νX hi"] == "THz"
    assert js["units"]["C44(E)"] == "GPa" and js["units"]["B"] == "GPa"
    _same_numbers(js, lib, ("model", "baseline", "difference"))
    _check_consistent(js)
    # a fitted EMT-like Cu (EMT: a0 3.59 Å, E_v 1.1 eV)
    assert 3.5 < js["model"]["a0"] < 3.7 and js["model"]["E_v"] > 0.3
    # the printed table shows the same numbers (4 decimals), σ nan
    rows = {ln.split()[0]: ln.split() for ln in stdout.splitlines() if ln.split()}
    assert "the model, the baseline and 0 committee members" in stdout
    for k in ("a0", "C11", "E_v", "γ111"):
        assert float(rows[k][2]) == pytest.approx(js["model"][k], abs=6e-5)
        assert rows[k][3] == "nan"
        assert float(rows[k][4]) == pytest.approx(js["baseline"][k], abs=6e-5)
    assert stdout.rstrip().endswith(f"-> {tmp_path / 'sub' / 'props.json'}")


@pytest.mark.slow   # 8-11 s: model, baseline and 3 members, twice
def test_cli_json_with_committee_sigma(cu_model, tmp_path):
    """--members 3 --seed 5: σ, members and baseline equal the library's for that seed."""
    model, path = cu_model
    stdout, js = _cli(["--model", str(path), "--quick", "--members", "3", "--seed", "5"],
                      tmp_path / "props.json")
    lib = compute_properties(HybridPotential.load(path), "Cu", quick=True, members=3,
                             random_state=5)
    assert js["n_members"] == 3 and js["committee"] == "posterior"
    _same_numbers(js, lib, ("model", "sigma", "baseline", "difference"))
    assert len(js["members"]) == 3
    for m_js, m_lib in zip(js["members"], lib["members"]):
        for k in js["keys"]:
            assert m_js[k] == pytest.approx(m_lib[k], rel=1e-9, abs=1e-12)
    _check_consistent(lib)
    for k in lib["keys"]:
        assert lib["sigma"][k] == pytest.approx(
            np.std([m[k] for m in lib["members"]], ddof=1), rel=1e-12, abs=1e-15)
    # posterior draws differ from the mean model
    assert all(lib["sigma"][k] > 0 for k in ("a0", "B", "C44", "E_v", "γ100"))
    rows = {ln.split()[0]: ln.split() for ln in stdout.splitlines() if ln.split()}
    assert "the model, the baseline and 3 committee members" in stdout
    assert float(rows["C44"][3]) == pytest.approx(js["sigma"]["C44"], abs=6e-5)
    table = format_table(lib)
    assert "± σ" in table and "LennardJ" in table


def test_committee_seed_and_ensemble_kinds(cu_model, cuni_model):
    model, _ = cu_model
    a = committee(model, 3, random_state=1)
    b = committee(model, 3, random_state=1)
    c = committee(model, 3, random_state=2)
    np.testing.assert_array_equal(a[2].regressor_.coef_, b[2].regressor_.coef_)
    assert not np.array_equal(a[2].regressor_.coef_, c[2].regressor_.coef_)
    # members share the model's descriptor, baseline and reference energies; their mean
    # coefficient tends to the posterior mean
    assert a[0].baseline is model.baseline
    assert a[0].reference_energies_ == model.reference_energies_
    draws = np.array([m.regressor_.coef_ for m in committee(model, 400, random_state=0)])
    spread = draws.std(0)
    assert np.all(np.abs(draws.mean(0) - model.regressor_.coef_) <= 5 * spread / 20 + 1e-12)
    assert committee_kind(model) == "posterior" and committee_kind(cuni_model[0]) is None


def test_library_errors(cu_model, cuni_model):
    model, _ = cu_model
    with pytest.raises(NotFittedError, match="'model' parameter of compute_properties"):
        compute_properties(HybridPotential(PowerSpectrum(species=["Cu"], r_cut=4.0, n_max=2,
                                                         l_max=1), LinearRegressor()))
    with pytest.raises(InvalidParameterError, match=r"'model' parameter of compute_properties "
                                                    r"must be a fitted HybridPotential. Got str"):
        compute_properties("cu.hpot")
    with pytest.raises(InvalidParameterError, match=r"'crystal' parameter of compute_properties "
                                                    r"must be one of .*'fcc'.*Got 'hcp'"):
        compute_properties(model, crystal="hcp")
    with pytest.raises(InvalidParameterError, match=r"'symbol' parameter.*\['Cu'\]. Got 'Ni'"):
        compute_properties(model, "Ni")
    with pytest.raises(InvalidParameterError, match=r"'symbol' parameter.*it has several"):
        compute_properties(cuni_model[0])
    with pytest.raises(InvalidParameterError, match=r"'members' parameter.*\[0, inf\]. Got -2"):
        compute_properties(model, members=-2)
    with pytest.raises(InvalidParameterError, match=r"'members' parameter.*>= 2.*Got 1"):
        compute_properties(model, members=1)
    with pytest.raises(InvalidParameterError, match=r"'members' parameter.*must be 0 for a "
                                                    r"model whose regressor \(LinearRegressor"):
        compute_properties(cuni_model[0], "Cu", members=4)
    with pytest.raises(InvalidParameterError, match=r"'a_guess' parameter.*Got -3.6"):
        compute_properties(model, a_guess=-3.6)
    with pytest.raises(InvalidParameterError, match=r"'random_state' parameter"):
        compute_properties(model, random_state="seed")
    with pytest.raises(InvalidParameterError, match=r"'quick' parameter"):
        compute_properties(model, quick="yes")
    with pytest.raises(InvalidParameterError, match=r"'n_members' parameter of committee.*"
                                                    r"Got 0"):
        committee(model, 0)
    with pytest.raises(InvalidParameterError, match=r"'model' parameter of committee must have "
                                                    r"a regressor with a coefficient posterior "
                                                    r".*Got LinearRegressor instead"):
        committee(cuni_model[0], 3)
    with pytest.raises(InvalidParameterError, match=r"'symbol' parameter of "
                                                    r"default_lattice_constant.*Got 'Qq'"):
        default_lattice_constant("Qq")
    with pytest.raises(InvalidParameterError, match=r"'calc' parameter of relaxed_bulk"):
        relaxed_bulk(None, "Cu")


def test_default_lattice_constant():
    assert default_lattice_constant("Cu") == pytest.approx(3.61)
    assert default_lattice_constant("Mo", "bcc") == pytest.approx(3.15)
    assert default_lattice_constant("Si", "diamond") == pytest.approx(5.43)
    # no reference state in that crystal: nearest-neighbour distance 2 r_cov
    from ase.data import atomic_numbers, covalent_radii

    d = 2 * covalent_radii[atomic_numbers["Mo"]]
    assert default_lattice_constant("Mo", "fcc") == pytest.approx(d * np.sqrt(2))
    assert default_lattice_constant("Cu", "bcc") == pytest.approx(
        4 * covalent_radii[29] / np.sqrt(3))


def test_cli_errors(cu_model, cuni_model, tmp_path, capsys):
    _, cu = cu_model
    _, cuni = cuni_model

    def err(*argv):
        assert main(["properties", *argv]) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1, lines
        return lines[0]

    missing = tmp_path / "missing.hpot"
    assert err("--model", str(missing)) == (
        f"hybridpot properties: error: model file {str(missing)!r} does not exist (fit one "
        f"with 'hybridpot fit').")
    assert err("--model", str(cuni)) == (
        "hybridpot properties: error: --element: the model has several elements "
        "['Cu', 'Ni']; choose the one whose crystal to compute (e.g. --element Cu).")
    assert "--element must be one of the model's elements ['Cu', 'Ni']. Got 'Ag'" in err(
        "--model", str(cuni), "--element", "Ag")
    assert "--members 3: the model's LinearRegressor has no coefficient posterior" in err(
        "--model", str(cuni), "--element", "Cu", "--members", "3")
    assert "--members must be 0 (no σ) or >= 2" in err("--model", str(cu), "--members", "1")
    assert "--seed must be >= 0. Got -1" in err("--model", str(cu), "--seed", "-1")
    assert "--a-guess must be a positive" in err("--model", str(cu), "--a-guess", "0")
    assert "--json: " in err("--model", str(cu), "--json", str(tmp_path))
    with pytest.raises(SystemExit) as exc:
        main(["properties", "--model", str(cu), "--crystal", "hcp"])
    assert exc.value.code == 2
    assert "invalid choice: 'hcp'" in capsys.readouterr().err


# ------------------------------------------------------------------ md --per-atom-stress
def _md_config(tmp_path, traj="md.traj", structure=None):
    cfg = tmp_path / "md.toml"
    cfg.write_text(f"""
[md]
lattice_constant = 3.61
supercell = [2, 2, 2]
steps = 20
seed = 3
trajectory = "{tmp_path / traj if traj else ''}"
{f'structure = "{structure}"' if structure else ''}
""")
    return cfg


def _voigt_ase(W):
    """ASE Voigt order xx, yy, zz, yz, xz, xy of 3x3 tensors, off-diagonal pairs averaged."""
    return np.stack([W[:, 0, 0], W[:, 1, 1], W[:, 2, 2], 0.5 * (W[:, 1, 2] + W[:, 2, 1]),
                     0.5 * (W[:, 0, 2] + W[:, 2, 0]), 0.5 * (W[:, 0, 1] + W[:, 1, 0])], axis=1)


def test_md_per_atom_stress_in_trajectory(cu_model, tmp_path, capsys):
    model, path = cu_model
    cfg = _md_config(tmp_path)
    assert main(["md", "-c", str(cfg), "--model", str(path), "--quiet",
                 "--per-atom-stress"]) == 0
    assert "(with per-atom stresses)" in capsys.readouterr().out
    frames = read(tmp_path / "md.traj", ":")
    assert len(frames) == 3                       # steps 0, 10, 20
    moved = 0.0
    for fr in frames:
        S = fr.get_stresses()                     # stored, not recomputed (no calculator)
        assert S.shape == (len(fr), 6)
        s, V = fr.get_stress(), fr.get_volume()
        # ASE's convention: per-atom stresses sum to the cell stress (Σ_k W_k = V σ)
        np.testing.assert_allclose(S.sum(0), s, rtol=0, atol=1e-12 * np.abs(S).sum(0).max())
        # and are the model's per-atom virials of this frame over the cell volume
        W = model.predict_atomic_virials([fr])[0]
        np.testing.assert_allclose(S * V, _voigt_ase(W), rtol=0, atol=1e-10 * np.abs(W).max())
        fresh = fr.copy()
        fresh.calc = model.calculator()
        np.testing.assert_allclose(s, fresh.get_stress(), rtol=0, atol=1e-12)
        moved = max(moved, np.abs(fr.positions - frames[0].positions).max())
    assert moved > 1e-3                            # the frames are different structures
    # without the option the frames carry no per-atom stresses (as before)
    assert main(["md", "-c", str(cfg), "--model", str(path), "--quiet"]) == 0
    plain = read(tmp_path / "md.traj", ":")
    assert len(plain) == 3 and "stresses" not in plain[-1].calc.results
    np.testing.assert_array_equal(plain[-1].positions, frames[-1].positions)


def test_md_per_atom_stress_errors(cu_model, tmp_path, capsys):
    _, path = cu_model
    assert main(["md", "-c", str(_md_config(tmp_path, traj="")), "--model", str(path),
                 "--quiet", "--per-atom-stress"]) == 2
    assert "--per-atom-stress stores the per-atom stresses in the trajectory frames; set " \
           "md.trajectory" in capsys.readouterr().err
    cluster = bulk("Cu", "fcc", a=3.61, cubic=True)
    cluster.pbc = False
    cluster.center(vacuum=5.0)
    write(tmp_path / "cluster.xyz", cluster)
    cfg = _md_config(tmp_path, structure=tmp_path / "cluster.xyz")
    assert main(["md", "-c", str(cfg), "--model", str(path), "--quiet",
                 "--per-atom-stress"]) == 2
    assert "--per-atom-stress needs a structure periodic in 3-D" in capsys.readouterr().err


def test_top_level_help_lists_properties(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "    properties " in out and "compute materials properties" in out
    with pytest.raises(SystemExit):
        main(["md", "--help"])
    assert "--per-atom-stress" in capsys.readouterr().out


def test_module_works_without_matplotlib():
    """hybridpot.properties imports, and its EOS, NEB and surface functions run, with
    matplotlib blocked (a fresh interpreter; ASE's EMT as the calculator).  Only the phonons
    need it: ase.phonons imports ase.vibrations, which imports matplotlib (a requirement of
    ASE itself)."""
    import subprocess
    import sys

    code = ("import sys; sys.modules['matplotlib'] = None\n"
            "import hybridpot.properties as p\n"
            "from ase.calculators.emt import EMT\n"
            "at, a0 = p.relaxed_bulk(EMT(), 'Cu')\n"
            "e = at.get_potential_energy() / len(at)\n"
            "print(round(a0, 4), p.bulk_modulus(EMT(), at) > 100,\n"
            "      p.migration_barrier(EMT(), at, 2, 1, fmax=0.05) > 0.3,\n"
            "      p.surface_energy(EMT(), 'Cu', 'fcc', a0, e, '111', (2, 2, 5)) > 0.5)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["3.5898", "True", "True", "True"], proc.stdout


def test_format_table_without_baseline_or_sigma():
    keys = ["a0", "B", "C11", "C12", "C44", "C11(E)", "C12(E)", "C44(E)", "B(C)"]
    vals = dict(zip(keys, [3.6, 140.0, 170.0, 125.0, 75.0, 170.01, 124.98, 75.0, 140.0]))
    from hybridpot.properties import unit_of

    res = {"keys": keys, "units": {k: unit_of(k) for k in keys}, "model": vals,
           "sigma": None, "baseline": None, "baseline_name": None}
    lines = format_table(res).splitlines()
    assert lines[0] == "" and lines[1].split() == ["property", "unit", "model", "±", "σ"]
    assert lines[2].split() == ["a0", "Å", "3.6000", "nan"]
    assert lines[3].split() == ["B", "GPa", "140.0000", "nan"]
    assert lines[-1] == ("elastic constants from stress vs energy: max difference 0.020 GPa; "
                         "B from C 140.00 vs EOS 140.00 GPa")
    assert [unit_of(k) for k in ("γ110", "νH hi", "E_m", "C44(E)")] == ["J/m²", "THz", "eV",
                                                                         "GPa"]
