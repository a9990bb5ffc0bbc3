"""Session-7 new-user review: regression tests of the command-line mistakes a user makes.

Each test reproduces one finding of the walkthrough (a traceback, a silent wrong answer or an
error message that did not name the key, file or structure) and checks the one-line typed
error (exit code 2) or the corrected behaviour.
"""

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import read, write

from hybridpot import ConfigError, InvalidStructureError, MissingLabelsError
from hybridpot.cli import main
from hybridpot.config import build_baseline, build_descriptor, build_regressor, load_config
from hybridpot.config import read_structures


def _labelled(atoms):
    atoms.calc = EMT()
    res = {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces(),
           "stress": atoms.get_stress()}
    atoms.calc = SinglePointCalculator(atoms, **res)
    return atoms


@pytest.fixture(scope="module")
def cual(tmp_path_factory):
    """Eight EMT-labelled Cu/Al cells and a fitted model (no baseline) in one folder."""
    d = tmp_path_factory.mktemp("s7")
    cells = []
    for k in range(8):
        a = bulk("Cu", "fcc", a=3.61, cubic=True) * (2, 1, 1)
        a.rattle(0.05, seed=k)
        if k % 2:
            a.symbols[[0, 3]] = "Al"
        cells.append(_labelled(a))
    write(d / "cual.xyz", cells)
    cfg = d / "fit.toml"
    cfg.write_text(f"""
[data]
train = "{d / 'cual.xyz'}"
test_fraction = 0.25
[descriptor]
r_cut = 4.0
n_max = 3
l_max = 2
[baseline]
type = "none"
[output]
model = "{d / 'cu.hpot'}"
report = ""
[md]
lattice_constant = 3.61
supercell = [1, 1, 1]
trajectory = ""
""")
    assert main(["fit", "-c", str(cfg), "--quiet"]) == 0
    return d


def _run(capsys, argv):
    code = main(argv)
    cap = capsys.readouterr()
    return code, cap.out, cap.err.strip()


def _one_line_error(capsys, argv, pattern):
    code, _, err = _run(capsys, argv)
    assert code == 2, err
    assert len(err.splitlines()) == 1, err
    assert pattern in err, err
    return err


# ------------------------------------------------------------------ [md] numbers
@pytest.mark.parametrize("table, message", [
    ("timestep_fs = -1.0", "md.timestep_fs must be a finite number > 0 (fs). Got -1.0"),
    ("timestep_fs = nan", "md.timestep_fs must be a finite number > 0 (fs). Got nan"),
    ("temperature_K = -300.0", "md.temperature_K must be a finite number >= 0 (K). Got -300.0"),
    ("friction = -0.1", "md.friction must be a finite number >= 0 (1/fs). Got -0.1"),
    ("lattice_constant = 0", "md.lattice_constant must be a finite number > 0 (Å). Got 0"),
])
def test_md_bad_numbers_are_one_line_errors(cual, tmp_path, capsys, table, message):
    """Before: a negative timestep or temperature reached ASE (RuntimeWarnings, then a numpy
    casting traceback from inside Langevin)."""
    cfg = tmp_path / "md.toml"
    cfg.write_text(f"[md]\n{table}\n")
    _one_line_error(capsys, ["md", "-q", "-c", str(cfg), "--model", str(cual / "cu.hpot"),
                             "--steps", "2"], message)


def test_md_output_folder_is_created_or_named(cual, tmp_path, capsys):
    traj = tmp_path / "new" / "dir" / "md.traj"
    cfg = tmp_path / "md.toml"
    cfg.write_text(f'[md]\nlattice_constant = 3.61\nsupercell = [1, 1, 1]\n'
                   f'trajectory = "{traj}"\n')
    code, out, err = _run(capsys, ["md", "-q", "-c", str(cfg), "--model",
                                   str(cual / "cu.hpot"), "--steps", "10"])
    assert code == 0, err
    assert traj.is_file() and len(read(traj, ":")) == 2   # steps 0 and 10
    cfg.write_text(f'[md]\nsupercell = [1, 1, 1]\ntrajectory = "{tmp_path}"\n')
    _one_line_error(capsys, ["md", "-q", "-c", str(cfg), "--model", str(cual / "cu.hpot"),
                             "--steps", "2"], f"md.trajectory: {str(tmp_path)!r} is a folder")


# ------------------------------------------------------------------ unknown class keys
@pytest.mark.parametrize("table, message", [
    ('[descriptor]\ntype = "PowerSpectrum"\nrcut = 4.0\n',
     "[descriptor] type 'PowerSpectrum': unknown key descriptor.rcut; allowed keys: type, "
     "d_inner, l_max, n_max, r_cut, r_inner, species_weights."),
    ('[descriptor]\nspecies = ["Cu"]\n',
     "descriptor.species is not allowed: hybridpot sets it"),
    ('[regressor]\ntype = "SparseGPRegressor"\nnsparse = 3\n',
     "[regressor] type 'SparseGPRegressor': unknown key regressor.nsparse; allowed keys: "
     "type, alpha_init,"),
    ('[baseline]\ntype = "ZBL"\nrcut = 3.0\n',
     "[baseline] type 'ZBL': unknown key baseline.rcut; allowed keys: type, r_cut, r_inner."),
    ('[regressor]\ntype = "EnsembleRegressor"\n[regressor.estimator]\n'
     'type = "SparseGPRegressor"\nkernal = "se"\n',
     "unknown key regressor.estimator.kernal; allowed keys: type, "),
])
def test_misspelled_class_keys_name_the_key_and_the_allowed_ones(cual, tmp_path, capsys,
                                                                  table, message):
    """Before: 'PowerSpectrum.__init__() got an unexpected keyword argument 'rcut'' (no
    allowed keys; descriptor.species: 'got multiple values for keyword argument')."""
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[data]\ntrain = "{cual / "cual.xyz"}"\n' + table)
    c = load_config(cfg)
    with pytest.raises(ConfigError, match="unknown key|is not allowed"):
        build_descriptor(c, ["Cu", "Al"]), build_regressor(c), build_baseline(c)
    _one_line_error(capsys, ["fit", "-q", "-c", str(cfg)], message)


# ------------------------------------------------------------------ bad structures in files
def _bad_files(folder, cual):
    cells = read(cual / "cual.xyz", ":")
    nan = cells[0].copy()
    nan.positions[1, 2] = np.nan
    nan.calc = SinglePointCalculator(nan, energy=0.0)
    overlap = cells[0].copy()
    overlap.positions[1] = overlap.positions[0]
    overlap.calc = SinglePointCalculator(overlap, energy=0.0)
    nanforce = cells[2].copy()
    f = cells[2].get_forces().copy()
    f[1, 2] = np.nan
    nanforce.calc = SinglePointCalculator(nanforce, energy=cells[2].get_potential_energy(),
                                          forces=f)
    nolabel = cells[3].copy()
    nolabel.calc = None
    si = _labelled(bulk("Al", "fcc", a=4.05, cubic=True))
    si.symbols[0] = "Si"
    si.calc = SinglePointCalculator(si, energy=-10.0)
    files = {}
    for name, bad in (("nan", nan), ("overlap", overlap), ("nanforce", nanforce),
                      ("nolabel", nolabel), ("si", si)):
        p = folder / f"{name}.xyz"
        write(p, cells[:2] + [bad])    # the bad structure is frame 2 of the file
        files[name] = p
    return files


@pytest.mark.parametrize("name, error, message", [
    ("nan", InvalidStructureError, "has non-finite positions"),
    ("overlap", InvalidStructureError, "atoms 0 and 1 only 0 Å apart"),
    ("nanforce", MissingLabelsError, "forces label of structure 2 contains NaN"),
    ("nolabel", MissingLabelsError, "carries no label"),
])
def test_read_structures_names_key_file_and_structure(cual, tmp_path, name, error, message):
    p = _bad_files(tmp_path, cual)[name]
    with pytest.raises(error, match=rf"^data.train: structure 2 \(\w+\) of '.*{name}.xyz': "
                                    rf".*{message}"):
        read_structures([str(p)], "data.train", labels=True)


def test_read_structures_species_and_folder(cual, tmp_path):
    p = _bad_files(tmp_path, cual)["si"]
    with pytest.raises(InvalidStructureError,
                       match=r"select.pool: structure 2 \(Al3Si\) of .*: it contains Si, "
                             r"which the model does not know \(model species: Cu, Al\)"):
        read_structures([str(p)], "select.pool", labels=False, species=["Cu", "Al"])
    # labels=False ignores labels, None accepts missing ones
    nolab = _bad_files(tmp_path, cual)["nolabel"]
    assert len(read_structures([str(nolab)], "select.pool", labels=False)) == 3
    assert len(read_structures([str(nolab)], "learn.pool")) == 3
    with pytest.raises(ConfigError, match="--data: .* is a folder; give a structure file"):
        read_structures([str(tmp_path)], "--data")


def test_fit_rejects_a_nan_label_before_writing_a_model(cual, tmp_path, capsys):
    """Before: the NaN-force structure landed in the test split, the model was written and
    the train metrics printed, then the error named 'structure 0' (of the split)."""
    p = _bad_files(tmp_path, cual)["nanforce"]
    cfg = tmp_path / "f.toml"
    cfg.write_text(f'[data]\ntrain = "{p}"\n[descriptor]\nr_cut = 4.0\nn_max = 3\nl_max = 2\n'
                   f'[baseline]\ntype = "none"\n[output]\nmodel = "{tmp_path / "m.hpot"}"\n'
                   'report = ""\n')
    err = _one_line_error(capsys, ["fit", "-q", "-c", str(cfg)],
                          "data.train: structure 2 (Cu8) of ")
    assert "nanforce.xyz" in err and not (tmp_path / "m.hpot").exists()


def test_evaluate_report_md_select_name_the_bad_structure(cual, tmp_path, capsys):
    files = _bad_files(tmp_path, cual)
    model = str(cual / "cu.hpot")
    _one_line_error(capsys, ["evaluate", "--model", model, "--data", str(files["si"])],
                    "--data: structure 2 (Al3Si) of ")
    _one_line_error(capsys, ["report", "--model", model, "--data", str(files["overlap"]),
                             "--out", str(tmp_path / "r")], "--data: structure 2 (Cu8) of ")
    _one_line_error(capsys, ["select", "-q", "--model", model, "--pool", str(files["si"]),
                             "-n", "1", "--out", str(tmp_path / "s.xyz")],
                    "select.pool: structure 2 (Al3Si) of ")
    cfg = tmp_path / "md.toml"
    cfg.write_text(f'[md]\nstructure = "{files["nan"]}"\nsupercell = [1, 1, 1]\n'
                   'trajectory = ""\n')
    _one_line_error(capsys, ["md", "-q", "-c", str(cfg), "--model", model, "--steps", "1"],
                    "md.structure: structure 2 (Cu8) of ")


def _energy_only_file(cual, tmp_path):
    """The cells of ``cual`` with their energies only, written to ``tmp_path / "e.xyz"``."""
    cells = read(cual / "cual.xyz", ":")
    for a in cells:
        a.calc = SinglePointCalculator(a, energy=a.get_potential_energy())
    write(tmp_path / "e.xyz", cells)


def test_evaluate_without_force_labels_says_so(cual, tmp_path, capsys):
    _energy_only_file(cual, tmp_path)
    code, out, err = _run(capsys, ["evaluate", "--model", str(cual / "cu.hpot"), "--data",
                                   str(tmp_path / "e.xyz")])
    assert code == 0, err
    assert "force MAE n/a (no force labels), stress MAE n/a (no stress labels)" in out
    assert "nan" not in out


# ------------------------------------------------------------------ options
def test_fit_model_option_is_the_output_and_learn_has_none(cual, tmp_path, capsys):
    """Before: 'hybridpot fit --model x.hpot' was accepted and ignored (model.hpot written);
    'hybridpot learn --model' was accepted and ignored too."""
    out = tmp_path / "alias.hpot"
    code, _, err = _run(capsys, ["fit", "-q", "-c", str(cual / "fit.toml"), "--model",
                                 str(out)])
    assert code == 0, err
    assert out.is_file()
    with pytest.raises(SystemExit):
        main(["learn", "--model", str(out)])
    assert "unrecognized arguments: --model" in capsys.readouterr().err


# ------------------------------------------------------------------ learn
def test_learn_scalar_rattle_std(tmp_path, capsys):
    """Before: 'rattle_std = 0.05' (allowed by the schema) was a TypeError traceback."""
    cfg = tmp_path / "l.toml"
    cfg.write_text(f'[descriptor]\nr_cut = 4.0\nn_max = 2\nl_max = 2\n[baseline]\n'
                   f'type = "none"\n[learn]\nrun_dir = "{tmp_path / "run"}"\n'
                   'rattle_std = 0.05\nmax_labels = 2\nbatch_size = 2\nn_candidates = 4\n')
    code, out, err = _run(capsys, ["learn", "-q", "-c", str(cfg)])
    assert code == 0, err
    assert "learn: 2 labels" in out
    cfg.write_text(cfg.read_text().replace("rattle_std = 0.05", "rattle_std = -0.1")
                   .replace(str(tmp_path / "run"), str(tmp_path / "run2")))
    _one_line_error(capsys, ["learn", "-q", "-c", str(cfg)],
                    "The 'rattle_std' parameter of RattleStrainSampler must be a float in "
                    "[0, inf). Got -0.1")


# ------------------------------------------------------------------ export
def test_export_prints_an_include_that_lammps_can_follow(tmp_path, capsys, monkeypatch):
    """Before: 'use in LAMMPS: include lq/cu.mod' while the .mod names 'cu.snapcoeff'
    relative to the folder LAMMPS runs in, so LAMMPS could not open it."""
    cells = []
    for k in range(6):
        a = bulk("Cu", "fcc", a=3.61, cubic=True)
        a.rattle(0.05, seed=k)
        cells.append(_labelled(a))
    write(tmp_path / "cu.xyz", cells)
    cfg = tmp_path / "s.toml"
    cfg.write_text(f'[data]\ntrain = "{tmp_path / "cu.xyz"}"\ntest_fraction = 0.0\n'
                   '[descriptor]\ntype = "SNAPBispectrum"\ntwojmax = 2\nrcutfac = 4.0\n'
                   f'[baseline]\ntype = "none"\n[output]\nmodel = "{tmp_path / "s.hpot"}"\n'
                   'report = ""\n')
    assert main(["fit", "-q", "-c", str(cfg)]) == 0
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    assert main(["export", "-c", str(cfg), "--prefix", "lq/cu"]) == 0
    out = capsys.readouterr().out
    assert "running in 'lq': include cu.mod" in out and "--absolute-paths" in out
    assert "pair_coeff * * cu.snapcoeff cu.snapparam Cu" in (tmp_path / "lq" / "cu.mod").read_text()
    assert main(["export", "-c", str(cfg), "--prefix", "lq/cu", "--absolute-paths"]) == 0
    assert "use in LAMMPS (units metal): include lq/cu.mod" in capsys.readouterr().out
    mod = (tmp_path / "lq" / "cu.mod").read_text()
    assert f"pair_coeff * * {tmp_path / 'lq' / 'cu.snapcoeff'} " in mod


# ------------------------------------------------------------------ md / learn bulk defaults
def test_md_bulk_defaults_to_the_elements_reference_crystal(tmp_path, capsys):
    """Before: 'structure = "bulk"' was fcc with a = 4.04 Å (aluminium's) for every model:
    a Cu model ran expanded fcc Cu, a Mo model fcc Mo."""
    from hybridpot.config import bulk_prototype
    from hybridpot.cli import _md_structure
    from hybridpot.config import load_config

    class Model:
        species_ = ["Mo"]

    cfg = load_config(None, {"md": {"supercell": [1, 1, 1]}})
    mo = _md_structure(cfg, Model())
    assert len(mo) == 2 and np.allclose(mo.cell.lengths(), 3.15)      # bcc, 3.15 Å
    Model.species_ = ["Cu"]
    np.testing.assert_allclose(_md_structure(cfg, Model()).cell.lengths(), 3.61)
    cfg = load_config(None, {"md": {"supercell": [1, 1, 1], "crystal": "bcc",
                                    "lattice_constant": 2.9}})
    cu = _md_structure(cfg, Model())
    assert len(cu) == 2 and np.allclose(cu.cell.lengths(), 2.9)
    assert len(bulk_prototype("Si")) == 8 and len(bulk_prototype("Mg")) == 4
    with pytest.raises(ConfigError, match=r"md.lattice_constant: ASE has no reference lattice "
                                          r"constant of Cu in bcc; set md.lattice_constant"):
        bulk_prototype("Cu", "bcc")
    with pytest.raises(ConfigError, match=r"learn.crystal must be one of fcc, bcc, sc, "
                                          r"diamond, hcp. Got 'rocksalt'."):
        bulk_prototype("Cu", "rocksalt", 4.0, "learn")
    with pytest.raises(ConfigError, match=r"md.crystal: ASE has no simple reference crystal "
                                          r"for H \(its reference state is 'diatom'\)"):
        bulk_prototype("H")


def test_md_prints_what_it_simulated(cual, tmp_path, capsys):
    cfg = tmp_path / "md.toml"
    cfg.write_text('[md]\nsupercell = [1, 1, 1]\ntrajectory = ""\n')
    code, out, err = _run(capsys, ["md", "-q", "-c", str(cfg), "--model",
                                   str(cual / "cu.hpot"), "--steps", "2"])
    assert code == 0, err
    assert "md (langevin): 2 steps of 1.0 fs, 4 atoms (Cu4), " in out


@pytest.mark.parametrize("table, message", [
    ('kind = "force"', "select.kind must be one of 'energy', 'forces', 'both'. Got 'force'."),
    ("dedup_threshold = -1", "select.dedup_threshold must be >= 0 (a scaled descriptor "
                             "distance). Got -1."),
])
def test_select_kind_and_dedup_errors_name_the_key(cual, tmp_path, capsys, table, message):
    """Before: 'The 'kind' parameter of MaxVarianceSelector must be one of ...' (no key)."""
    cfg = tmp_path / "s.toml"
    cfg.write_text(f'[select]\npool = "{cual / "cual.xyz"}"\nn = 2\n{table}\n')
    _one_line_error(capsys, ["select", "-q", "-c", str(cfg), "--model", str(cual / "cu.hpot"),
                             "--out", str(tmp_path / "s.xyz")], message)


def test_top_level_help_lists_every_command(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "select / learn new training structures" in out and "``" not in out
    for name in ("fit", "evaluate", "md", "report", "export", "select", "learn"):
        assert f"    {name} " in out


@pytest.mark.parametrize("table", ["[data]\nseed = -1\n", "[md]\nseed = -3\n",
                                   "[select]\nseed = -2\n", "[learn]\nseed = -4\n"])
def test_negative_seeds_are_config_errors(tmp_path, table):
    """Before: '[data] seed = -1' was a numpy 'expected non-negative integer' traceback."""
    cfg = tmp_path / "c.toml"
    cfg.write_text(table)
    with pytest.raises(ConfigError, match=r"\.seed must be an int >= 0. Got -\d."):
        load_config(cfg)


def test_evaluate_json_is_strict_json(cual, tmp_path, capsys):
    """Before: a kind without labels was printed as NaN, which strict JSON parsers reject."""
    import json

    _energy_only_file(cual, tmp_path)
    code, out, err = _run(capsys, ["evaluate", "--model", str(cual / "cu.hpot"), "--data",
                                   str(tmp_path / "e.xyz"), "--json"])
    assert code == 0, err

    def refuse(name):
        raise ValueError(name)

    m = json.loads(out, parse_constant=refuse)
    assert m["force_mae"] is None and m["stress_rmse"] is None and m["energy_mae"] > 0


@pytest.mark.parametrize("table, message", [
    ('sampler = "md"', "learn.sampler = 'md' runs MD with the current model, so it needs "
                       "learn.initial"),
])
def test_learn_config_errors_name_the_key(tmp_path, capsys, table, message):
    """Before: 'The sampler UncertaintyMDSampler needs a fitted model; give ActiveLearner
    labelled 'initial' structures' (Python names for a config user)."""
    cfg = tmp_path / "l.toml"
    cfg.write_text(f'[baseline]\ntype = "none"\n[learn]\nrun_dir = "{tmp_path / "run"}"\n'
                   f'species = ["Cu"]\nmax_labels = 2\n{table}\n')
    _one_line_error(capsys, ["learn", "-q", "-c", str(cfg)], message)
    assert not (tmp_path / "run").exists()


def test_fit_checks_the_test_files_elements_before_fitting(cual, tmp_path, capsys):
    """Before: a data.test with an element absent from data.train failed after the model
    had been fitted and written ('The structure contains species 'Al' (atom 0) which of
    HybridPotential only knows ['Cu']')."""
    cells = read(cual / "cual.xyz", ":")
    write(tmp_path / "cu.xyz", [a for a in cells if set(a.get_chemical_symbols()) == {"Cu"}])
    cfg = tmp_path / "t.toml"
    cfg.write_text(f'[data]\ntrain = "{tmp_path / "cu.xyz"}"\ntest = "{cual / "cual.xyz"}"\n'
                   '[descriptor]\nr_cut = 4.0\nn_max = 2\nl_max = 2\n[baseline]\ntype = "none"\n'
                   f'[output]\nmodel = "{tmp_path / "t.hpot"}"\nreport = ""\n')
    _one_line_error(capsys, ["fit", "-q", "-c", str(cfg)],
                    "data.test: structure 1 (Al2Cu6) of ")
    assert not (tmp_path / "t.hpot").exists()


def test_evaluate_and_report_default_to_the_held_out_split(cual, tmp_path, capsys):
    """Before: without --data and data.test, evaluate / report used all of data.train, i.e.
    mostly training structures, and printed them as 'evaluate: ...' (the fit's test line
    showed other numbers)."""
    cfg = str(cual / "fit.toml")
    code, out, err = _run(capsys, ["fit", "-q", "-c", cfg, "--out", str(tmp_path / "m.hpot")])
    assert code == 0, err
    test_line = [ln for ln in out.splitlines() if ln.startswith("test: ")][0]
    code, out, err = _run(capsys, ["evaluate", "-c", cfg, "--model", str(tmp_path / "m.hpot")])
    assert code == 0, err
    assert out.startswith("evaluate on the held-out 25 % of data.train, as in fit: ")
    assert out.split(": ", 1)[1].strip() == test_line.split(": ", 1)[1].strip()
    code, out, err = _run(capsys, ["report", "-c", cfg, "--model", str(tmp_path / "m.hpot"),
                                   "--out", str(tmp_path / "r")])
    assert code == 0, err
    assert "report on the held-out 25 % of data.train" in out
    html = (tmp_path / "r" / "report.html").read_text(encoding="utf-8")
    assert "<p>2 structures;" in html and "held-out 25 %" in html
    # output.report = "" and no --out: a one-line error, not a report in the working folder
    _one_line_error(capsys, ["report", "-c", cfg, "--model", str(tmp_path / "m.hpot")],
                    "report: no output folder (give --out or output.report).")


@pytest.mark.parametrize("argv_tail, table, message", [
    (["fit"], '[output]\nmodel = ""\n',
     "output.model must be a file name such as 'model.hpot'. Got ''."),
    (["fit"], "[data]\ntrain = []\n", "data.train = [] names no file"),
    (["fit"], '[data]\ntrain = ["a.xyz", 3]\n',
     "data.train must be a file name or a list of file names. Got ['a.xyz', 3]."),
    (["export"], '[export]\nprefix = ""\n', "export.prefix must end in a file name prefix"),
    (["export", "--prefix", "lq/"], "", "export.prefix must end in a file name prefix, e.g. "
                                        "'lammps/model' (writes lammps/model.snapcoeff, ...). "
                                        "Got 'lq/'."),
])
def test_empty_output_names_are_config_errors(cual, tmp_path, capsys, monkeypatch,
                                              argv_tail, table, message):
    """Before: output.model = '' failed after the fit ('cannot use '.''), export.prefix = ''
    was a ValueError traceback from pathlib, 'train = []' silently fitted the shipped Al
    data, and '--prefix lq/' wrote lq.snapcoeff beside the folder."""
    monkeypatch.chdir(tmp_path)
    cfg = tmp_path / "c.toml"
    cfg.write_text(table)
    argv = [argv_tail[0], "-q", "-c", str(cfg), *argv_tail[1:]]
    if argv_tail[0] == "export":
        argv += ["--model", str(cual / "cu.hpot")]
    _one_line_error(capsys, argv, message)
    assert not list(tmp_path.glob("*.snapcoeff")) and not list(tmp_path.glob("*.hpot"))


def test_config_regressors_are_reproducible_by_default(cual, tmp_path, capsys):
    """Before: a SparseGPRegressor config without random_state drew other sparse points at
    every run (the README's shipped-Al GP figure, 5.4 meV/atom, came out 5.1-6.0)."""
    def config(text):
        p = tmp_path / "r.toml"
        p.write_text(text)
        return load_config(p)

    gp = '[regressor]\ntype = "SparseGPRegressor"\nn_sparse = 20\n'
    assert build_regressor(config(gp + "[data]\nseed = 3\n")).random_state == 3
    assert build_regressor(config(gp + "random_state = 7\n")).random_state == 7
    ens = build_regressor(config('[regressor]\ntype = "EnsembleRegressor"\n'
                                 '[regressor.estimator]\ntype = "SparseGPRegressor"\n'))
    assert ens.random_state == 0 and ens.estimator.random_state is None   # members: 0, 1, ...
    assert not hasattr(build_regressor(load_config()), "random_state")    # Bayesian linear
    cfg = tmp_path / "gp.toml"
    cfg.write_text((cual / "fit.toml").read_text().replace(
        "[baseline]", '[regressor]\ntype = "SparseGPRegressor"\nkernel = "se"\nn_sparse = 12\n'
        "[baseline]"))
    outs = []
    for k in range(2):
        code, out, err = _run(capsys, ["fit", "-q", "-c", str(cfg), "--out",
                                       str(tmp_path / f"gp{k}.hpot")])
        assert code == 0, err
        outs.append([ln for ln in out.splitlines() if ln.startswith(("train:", "test:"))])
    assert outs[0] == outs[1]
