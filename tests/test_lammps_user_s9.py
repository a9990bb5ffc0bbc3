"""Session-9 review by a FitSNAP + LAMMPS user: write_snap files that LAMMPS reads as the model
(baseline table files per export prefix, quoted paths, several atom types per element), SNAP
parameter validation, FitSNAP files; live LAMMPS checks (energy, forces, stress on a rattled
triclinic cell) when the optional ``lammps`` module loads."""

import numpy as np
import pytest
from ase.build import bulk
from ase.data import atomic_masses, atomic_numbers

from hybridpot import HybridPotential, InvalidParameterError, ModelFormatError
from hybridpot.baselines import ZBL, Buckingham, LennardJones
from hybridpot.descriptors import SNAPBispectrum
from hybridpot.io.lammps import import_lammps, read_snap, write_snap
from hybridpot.regression import LinearRegressor

#: LAMMPS units metal: bar per eV/Å³ (its nktv2p)
_NKTV2P = 1.6021765e6


def _model(baseline, species=("Cu",), seed=0, quadratic=False):
    """A SNAP model with random small coefficients (no fit needed to test the export)."""
    desc = SNAPBispectrum(species=list(species), twojmax=4, rcutfac=4.3,
                          radelem=[0.5, 0.46][:len(species)], wj=[1.0, 0.8][:len(species)])
    K = desc.n_features
    P = 1 + K + (K * (K + 1) // 2 if quadratic else 0)
    coef = np.random.default_rng(seed).normal(scale=1e-3, size=(len(species), P))
    coef[:, 0] = -3.0
    return HybridPotential.from_fitted(desc, LinearRegressor.from_coef(coef, quadratic=quadratic),
                                       baseline=baseline)


def _triclinic(species=("Cu",), seed=5):
    """Rattled, strained primitive-fcc supercell (non-orthogonal), LAMMPS-canonical cell."""
    rng = np.random.default_rng(seed)
    at = bulk("Cu", "fcc", a=3.6) * (3, 3, 3)
    if len(species) > 1:
        sym = np.array(at.get_chemical_symbols())
        sym[rng.random(len(at)) < 0.4] = species[1]
        at.set_chemical_symbols(sym.tolist())
    at.set_cell(at.cell.array @ (np.eye(3) + rng.uniform(-0.03, 0.03, (3, 3))),
                scale_atoms=True)
    at.rattle(0.1, seed=seed)
    at.set_cell(at.cell.cellpar(), scale_atoms=True)  # a along x, b in the xy plane
    return at


def _lammps_or_skip():
    try:
        return import_lammps()
    except ImportError as e:
        pytest.skip(f"LAMMPS not available: {e}")


def _run_lammps(atoms, types, mod, seed=0):
    """Energy, forces (atom order) and ASE-sign stress (eV/Å³) of LAMMPS ``run 0`` with
    ``include mod``; each atom gets a random LAMMPS type of its element."""
    lammps = _lammps_or_skip()
    rng = np.random.default_rng(seed)
    c = atoms.cell.array
    lmp = lammps(cmdargs=["-log", "none", "-screen", "none", "-nocite"])
    try:
        lmp.commands_list([
            "units metal", "atom_style atomic", "boundary p p p",
            "atom_modify map array sort 0 0.0",
            "region box prism 0 %r 0 %r 0 %r %r %r %r units box"
            % tuple(float(x) for x in (c[0, 0], c[1, 1], c[2, 2], c[1, 0], c[2, 0], c[2, 1])),
            f"create_box {len(types)} box"])
        for s, p in zip(atoms.get_chemical_symbols(), atoms.positions):
            t = int(rng.choice([k + 1 for k, e in enumerate(types) if e == s]))
            lmp.command("create_atoms %d single %r %r %r units box remap yes"
                        % ((t,) + tuple(float(x) for x in p)))
        lmp.commands_list([f"mass {k + 1} {float(atomic_masses[atomic_numbers[s]])!r}"
                           for k, s in enumerate(types)])
        lmp.commands_list([f'include "{mod}"',
                           "thermo_style custom step pe pxx pyy pzz pyz pxz pxy", "run 0"])
        e = lmp.get_thermo("pe")
        ids = np.array(lmp.gather_atoms("id", 0, 1))
        f = np.array(lmp.gather_atoms("f", 1, 3)).reshape(-1, 3)
        forces = np.empty_like(f)
        forces[ids - 1] = f
        stress = -np.array([lmp.get_thermo(k) for k in ("pxx", "pyy", "pzz", "pyz", "pxz",
                                                          "pxy")]) / _NKTV2P
    finally:
        lmp.close()
    return e, forces, stress


def _assert_lammps_matches(model, atoms, types, mod, seed=0):
    e, f, s = _run_lammps(atoms, types, mod, seed)
    at = atoms.copy()
    at.calc = model.calculator()
    assert abs(e - at.get_potential_energy()) < 1e-9
    np.testing.assert_allclose(f, at.get_forces(), rtol=0, atol=1e-9)
    np.testing.assert_allclose(s, at.get_stress(), rtol=0, atol=1e-10)


# -- S1: baseline table files are named after the export prefix -----------------------------
def test_two_buckingham_exports_in_one_folder_keep_their_own_tables(tmp_path):
    models = [_model(Buckingham(A=A, rho=0.25, C=5.0, r_cut=5.0)) for A in (500.0, 2000.0)]
    paths = [write_snap(m, tmp_path / name) for m, name in zip(models, ("a", "b"))]
    assert [p["files"] for p in paths] == [[tmp_path / "a.hybridpot_buckingham.table"],
                                           [tmp_path / "b.hybridpot_buckingham.table"]]
    assert "table a.hybridpot_buckingham.table BUCK" in paths[0]["mod"].read_text()
    assert "table b.hybridpot_buckingham.table BUCK" in paths[1]["mod"].read_text()
    assert paths[0]["files"][0].read_text() != paths[1]["files"][0].read_text()
    at = _triclinic()
    paths = [write_snap(m, tmp_path / name, absolute_paths=True)
             for m, name in zip(models, ("a", "b"))]
    for m, p in zip(models, paths):   # each .mod runs its own model (was: a.mod ran b's table)
        _assert_lammps_matches(m, at, ["Cu"], p["mod"])


# -- S2: file names LAMMPS would split are quoted -------------------------------------------
def test_paths_with_spaces_are_quoted_for_lammps(tmp_path):
    model = _model(ZBL(r_inner=1.6, r_cut=2.3))
    folder = tmp_path / "my run"
    paths = write_snap(model, folder / "cu", absolute_paths=True)
    mod = paths["mod"].read_text()
    assert f"pair_coeff * * snap '{paths['snapcoeff'].resolve()}' " \
           f"'{paths['snapparam'].resolve()}' Cu" in mod
    paths = write_snap(_model(Buckingham(A=500.0, rho=0.25, C=5.0, r_cut=5.0)),
                       folder / "my model")
    mod = paths["mod"].read_text()
    assert "pair_coeff * * snap 'my model.snapcoeff' 'my model.snapparam' Cu" in mod
    assert "table 'my model.hybridpot_buckingham.table' BUCK" in mod
    plain = write_snap(model, tmp_path / "cu")["mod"].read_text()
    assert "pair_coeff * * snap cu.snapcoeff cu.snapparam Cu" in plain   # unquoted when safe
    with pytest.raises(InvalidParameterError, match="cannot name the file"):
        write_snap(model, tmp_path / "a'b\"c\"\"\"d")


def test_paths_with_spaces_run_in_lammps(tmp_path):
    model = _model(ZBL(r_inner=1.6, r_cut=2.3))
    paths = write_snap(model, tmp_path / "my run" / "cu", absolute_paths=True)
    _assert_lammps_matches(model, _triclinic(), ["Cu"], paths["mod"])


# -- S3: several LAMMPS atom types of one element ---------------------------------------------
def test_repeated_element_types_expand_baseline_pair_lines(tmp_path):
    lj = LennardJones(epsilon={"Cu-Cu": 0.02, "Cu-Ni": 0.03, "Ni-Ni": 0.04},
                      sigma={"Cu-Cu": 2.3, "Cu-Ni": 2.2, "Ni-Ni": 2.1}, r_cut=5.0)
    model = _model(lj, species=("Cu", "Ni"))
    paths = write_snap(model, tmp_path / "m", species=["Ni", "Cu", "Ni"])
    lines = paths["mod"].read_text().splitlines()
    assert lines[-1] == "pair_coeff * * snap m.snapcoeff m.snapparam Ni Cu Ni"
    coeffs = {tuple(ln.split()[1:3]): ln.split()[4:] for ln in lines if "lj/smooth" in ln
              and ln.startswith("pair_coeff")}
    assert coeffs == {("1", "1"): ["0.04", "2.1"], ("1", "3"): ["0.04", "2.1"],
                      ("3", "3"): ["0.04", "2.1"], ("1", "2"): ["0.03", "2.2"],
                      ("2", "3"): ["0.03", "2.2"], ("2", "2"): ["0.02", "2.3"]}
    # a single-element model with a scalar baseline keeps its '* *' line
    one = write_snap(_model(ZBL(r_inner=1.6, r_cut=2.3)), tmp_path / "one",
                     species=["Cu", "Cu"])["mod"].read_text()
    assert "pair_coeff * * zbl 29 29" in one and "one.snapparam Cu Cu" in one
    with pytest.raises(InvalidParameterError, match="one per LAMMPS atom type"):
        write_snap(model, tmp_path / "x", species="CuNi")
    with pytest.raises(InvalidParameterError, match=r"contains \['Al'\], which the model"):
        write_snap(model, tmp_path / "x", species=["Cu", "Al", "Al"])


@pytest.mark.parametrize("baseline", [
    ZBL(r_inner=1.6, r_cut=2.3),
    Buckingham(A={"Cu-Cu": 500.0, "Cu-Ni": 600.0, "Ni-Ni": 700.0}, rho=0.25,
               C={"Cu-Cu": 5.0, "Cu-Ni": 4.0, "Ni-Ni": 3.0}, r_cut=5.0)],
    ids=["zbl", "buckingham-pairs"])
def test_repeated_element_types_run_in_lammps(tmp_path, baseline):
    model = _model(baseline, species=("Cu", "Ni"), quadratic=True)
    types = ["Ni", "Cu", "Ni", "Cu"]
    paths = write_snap(model, tmp_path / "m", species=types, absolute_paths=True)
    _assert_lammps_matches(model, _triclinic(("Cu", "Ni"), seed=9), types, paths["mod"])


# -- S4: SNAP parameters must be finite --------------------------------------------------------
@pytest.mark.parametrize("kw, name", [(dict(rcutfac=np.inf), "rcutfac"),
                                      (dict(radelem=[np.inf]), r"radelem\[0\]"),
                                      (dict(wj=[np.inf]), r"wj\[0\]"),
                                      (dict(rmin0=np.inf), "rmin0")])
def test_snap_infinite_parameters_are_errors(kw, name):
    desc = SNAPBispectrum(species=["Cu"], **{**dict(twojmax=2, rcutfac=4.0), **kw})
    with pytest.raises(InvalidParameterError, match=f"'{name}' parameter of SNAPBispectrum "
                                                    f"must be a float .*Got inf"):
        desc.compute(bulk("Cu"))   # was: an endless neighbour search


def test_snapparam_with_infinite_cutoff_is_a_model_format_error(tmp_path):
    (tmp_path / "a.snapparam").write_text("rcutfac inf\ntwojmax 2\n")
    (tmp_path / "a.snapcoeff").write_text("1 6\nCu 0.5 1.0\n" + "0.0\n" * 6)
    with pytest.raises(ModelFormatError, match="invalid SNAP parameters: The 'rcutfac'"):
        read_snap(tmp_path / "a.snapcoeff", tmp_path / "a.snapparam")


# -- S5: a reference potential recorded in the .snapparam (FitSNAP) ---------------------------
_FITSNAP_PARAM = """# required
rcutfac 4.3
twojmax 4

# optional
rfac0 0.99363
rmin0 0
bzeroflag 1
wselfallflag 0
chemflag 0
bnormflag 0
switchinnerflag 0
quadraticflag 0

# This file was generated by FitSNAP.
# Hash: 1234
# FitSNAP REFERENCE section settings:
# units metal
# atom_style atomic
# pair_style {style}
# pair_coeff * * zero
# pair_coeff * * zbl 29 29
"""


def _fitsnap_files(tmp_path, style):
    """A FitSNAP-written Cu model: '# ...' header, coefficient lines with '#  B[...]'
    comments, the REFERENCE section as comments of the .snapparam."""
    coef = np.random.default_rng(0).normal(scale=1e-2, size=15)
    text = "# FitSNAP fit generated on 2026-01-01 with Hash: 1234\n\n1 15\nCu 0.5 1.0\n"
    text += "\n".join(f" {v:<30.18} #  B[{k}] " for k, v in enumerate(coef))
    text += "\n\n# End of potential"
    (tmp_path / "pot.snapcoeff").write_text(text)
    (tmp_path / "pot.snapparam").write_text(_FITSNAP_PARAM.format(style=style))
    return tmp_path / "pot.snapcoeff", tmp_path / "pot.snapparam", coef


def test_read_snap_of_a_fitsnap_model_with_zbl_reference_warns(tmp_path):
    coeff, param, coef = _fitsnap_files(tmp_path, "hybrid/overlay zero 10.0 zbl 4.0 4.8")
    with pytest.warns(UserWarning, match=r"records the reference potential 'pair_style "
                                         r"hybrid/overlay zero 10.0 zbl 4.0 4.8' .*incomplete "
                                         r"model.*baseline=ZBL\(r_inner=4.0, r_cut=4.8\)"):
        model = read_snap(coeff, param)
    np.testing.assert_array_equal(model.regressor_.coef_[0], coef)
    assert model.descriptor.bzeroflag and model.baseline is None
    with_zbl = read_snap(coeff, param, baseline=ZBL(r_inner=4.0, r_cut=4.8))   # no warning
    assert isinstance(with_zbl.baseline, ZBL)


def test_read_snap_of_a_fitsnap_model_without_reference_is_silent(tmp_path):
    coeff, param, _ = _fitsnap_files(tmp_path, "zero 10.0")
    read_snap(coeff, param)   # 'zero' is no reference potential: no warning (errors here)
    coeff, param, _ = _fitsnap_files(tmp_path, "snap")
    read_snap(coeff, param)   # the SNAP model itself
    coeff, param, _ = _fitsnap_files(tmp_path, "hybrid/overlay zero 8.0 lj/cut 5.0")
    with pytest.warns(UserWarning, match="lj/cut 5.0.*one of ZBL"):
        read_snap(coeff, param)


def test_write_snap_records_its_baseline_for_read_snap(tmp_path):
    model = _model(ZBL(r_inner=1.6, r_cut=2.3))
    paths = write_snap(model, tmp_path / "cu")
    assert "# pair_style hybrid/overlay zbl 1.6 2.3\n# pair_coeff * * zbl 29 29\n" in \
        paths["snapparam"].read_text()
    with pytest.warns(UserWarning, match=r"baseline=ZBL\(r_inner=1.6, r_cut=2.3\)"):
        read_snap(paths["snapcoeff"], paths["snapparam"])
    again = read_snap(paths["snapcoeff"], paths["snapparam"], baseline=model.baseline)
    at = _triclinic()
    np.testing.assert_allclose(again.predict([at]), model.predict([at]), rtol=1e-13)
    # LAMMPS reads the commented file as before
    paths = write_snap(model, tmp_path / "cu", absolute_paths=True)
    _assert_lammps_matches(model, at, ["Cu"], paths["mod"])
    plain = write_snap(_model(None), tmp_path / "plain")
    assert "pair_style" not in plain["snapparam"].read_text()
    read_snap(plain["snapcoeff"], plain["snapparam"])   # no baseline: no warning


# -- S6: hybridpot export --species ------------------------------------------------------------
def test_cli_export_species_sets_the_lammps_types(tmp_path, capsys, monkeypatch):
    from hybridpot.cli import main

    model = _model(ZBL(r_inner=1.6, r_cut=2.3), species=("Cu", "Ni"))
    model.save(tmp_path / "m.hpot")
    monkeypatch.chdir(tmp_path)
    assert main(["export", "--model", "m.hpot", "--prefix", "lmp/m"]) == 0
    out = capsys.readouterr().out
    assert "LAMMPS atom types: 1 = Cu, 2 = Ni" in out
    assert main(["export", "--model", "m.hpot", "--prefix", "lmp/m",
                 "--species", "Ni", "Cu", "Cu"]) == 0
    assert "LAMMPS atom types: 1 = Ni, 2 = Cu, 3 = Cu" in capsys.readouterr().out
    mod = (tmp_path / "lmp" / "m.mod").read_text()
    assert "pair_coeff * * snap m.snapcoeff m.snapparam Ni Cu Cu" in mod
    assert "pair_coeff 2 3 zbl 29 29" in mod and "pair_coeff 1 3 zbl 28 29" in mod
    assert main(["export", "--model", "m.hpot", "--prefix", "lmp/m", "--species", "Cu",
                 "Al"]) == 2
    err = capsys.readouterr().err
    assert "hybridpot export: error: --species Cu Al: The 'species' argument of write_snap " \
           "contains ['Al'], which the model does not know" in err


# -- S10: FitSNAP-style group weights are validated -------------------------------------------
def _grouped_cells():
    from ase.calculators.emt import EMT
    from ase.calculators.singlepoint import SinglePointCalculator

    out = []
    for k in range(4):
        at = bulk("Cu", "fcc", a=3.6, cubic=True)
        at.rattle(0.05, seed=k)
        at.calc = EMT()
        at.calc = SinglePointCalculator(at, energy=at.get_potential_energy(),
                                        forces=at.get_forces())
        at.info["config_type"] = "Surface" if k % 2 else "Bulk"
        out.append(at)
    return out


@pytest.mark.parametrize("gw", [{"Surface": {"force": 100.0}}, {"Surface": -1.0},
                                {"Surface": {"energy": np.nan}}, {"Surface": [1, 2]},
                                {"Surface": "2"}])
def test_bad_group_weights_are_errors(gw):
    """A misspelt kind ('force') was ignored silently; a negative or NaN factor failed in the
    solver (LinAlgError 'SVD did not converge'); a list was a TypeError."""
    model = HybridPotential(descriptor=SNAPBispectrum(species=["Cu"], twojmax=2, rcutfac=4.0),
                            regressor=LinearRegressor(), group_weights=gw)
    with pytest.raises(InvalidParameterError,
                       match=r"'group_weights' parameter of HybridPotential must map each "
                             r"config_type group to a float in \[0, inf\) or to a dict of such "
                             r"floats with keys among \['energy', 'forces', 'stress'\]\. "
                             r"Got 'Surface': "):
        model.fit(_grouped_cells())


def test_group_weight_per_kind_changes_the_fit():
    cells = _grouped_cells()
    desc = SNAPBispectrum(species=["Cu"], twojmax=2, rcutfac=4.0)
    plain = HybridPotential(descriptor=desc, regressor=LinearRegressor()).fit(cells)
    weighted = HybridPotential(descriptor=desc, regressor=LinearRegressor(),
                               group_weights={"Surface": {"forces": 100.0, "energy": 0}})
    weighted.fit(cells)
    assert not np.allclose(plain.regressor_.coef_, weighted.regressor_.coef_)


# -- S11: a LAMMPS pair style as the reference potential (ASEBaseline(LAMMPSlib)) --------------
def _lammpslib(lmpcmds, atom_types):
    _lammps_or_skip()
    from ase.calculators.lammpslib import LAMMPSlib

    return LAMMPSlib(lmpcmds=lmpcmds, atom_types=atom_types, log_file=None, keep_alive=True)


@pytest.mark.parametrize("lmpcmds", [
    ["pair_style lj/cut 5.0", "pair_coeff * * 0.01 2.3", "pair_coeff 2 2 0.02 2.2"],
    ["pair_style hybrid/overlay zbl 1.6 2.3 morse 5.0", "pair_coeff 1 1 zbl 29 29",
     "pair_coeff 1 2 zbl 29 28", "pair_coeff 2 2 zbl 28 28", "mass * 60.0",
     "pair_coeff * * morse 0.05 1.3 2.6"]], ids=["lj-cut", "hybrid-overlay"])
def test_lammpslib_baseline_is_exported_with_its_pair_style(tmp_path, lmpcmds):
    from hybridpot.baselines import ASEBaseline

    calc = _lammpslib(lmpcmds, {"Cu": 1, "Ni": 2})
    model = _model(ASEBaseline(calc), species=("Cu", "Ni"))
    paths = write_snap(model, tmp_path / "m", absolute_paths=True)
    mod = paths["mod"].read_text()
    if "lj/cut" in lmpcmds[0]:
        assert "pair_style hybrid/overlay lj/cut 5.0 snap\npair_coeff * * lj/cut 0.01 2.3\n" \
               "pair_coeff 2 2 lj/cut 0.02 2.2\n" in mod
    else:
        assert "pair_style hybrid/overlay zbl 1.6 2.3 morse 5.0 snap\n" in mod
        assert "pair_coeff * * morse 0.05 1.3 2.6" in mod and "mass" not in mod
    at = _triclinic(("Cu", "Ni"), seed=4)
    e, f, _ = _run_lammps(at, ["Cu", "Ni"], paths["mod"])
    assert abs(e - model.predict([at])[0]) < 1e-9
    np.testing.assert_allclose(f, model.predict_forces([at])[0], rtol=0, atol=1e-9)


def test_lammpslib_baseline_that_cannot_be_carried_over_is_an_error(tmp_path):
    from hybridpot.baselines import ASEBaseline

    cases = [
        (["pair_style lj/cut 5.0", "pair_coeff * * 0.01 2.3", "pair_modify shift yes"],
         {"Cu": 1, "Ni": 2}, r"commands other than pair_style / pair_coeff / mass: "
                             r"\['pair_modify shift yes'\]"),
        (["pair_style lj/cut 5.0", "pair_coeff * * 0.01 2.3"], {"Ni": 1, "Cu": 2},
         r"atom types \{'Ni': 1, 'Cu': 2\}.*atom_types=\{'Cu': 1, 'Ni': 2\}"),
        (["pair_style hybrid lj/cut 5.0 zbl 1 2", "pair_coeff * * lj/cut 0.01 2.3"],
         {"Cu": 1, "Ni": 2}, "'pair_style hybrid' assigns one style per type pair"),
    ]
    for lmpcmds, types, match in cases:
        model = _model(ASEBaseline(_lammpslib(lmpcmds, types)), species=("Cu", "Ni"))
        with pytest.raises(InvalidParameterError, match="cannot export the model's baseline "
                                                        "ASEBaseline\\(LAMMPSlib\\).*" + match):
            write_snap(model, tmp_path / "m")
    assert not list(tmp_path.iterdir())


def test_cli_export_prints_an_include_lammps_reads_for_a_folder_with_a_space(
        tmp_path, capsys, monkeypatch):
    from hybridpot.cli import main

    model = _model(ZBL(r_inner=1.6, r_cut=2.3))
    model.save(tmp_path / "m.hpot")
    monkeypatch.chdir(tmp_path)
    assert main(["export", "--model", "m.hpot", "--prefix", "run dir/cu",
                 "--absolute-paths"]) == 0
    line = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("use in")][0]
    assert line == "use in LAMMPS (units metal): include 'run dir/cu.mod'"
    # the printed include runs as given (LAMMPS in the folder the user ran hybridpot in)
    e, _, _ = _run_lammps_include(line.split("include ", 1)[1], _triclinic())
    assert abs(e - model.predict([_triclinic()])[0]) < 1e-9


def _run_lammps_include(include_arg, atoms):
    """Energy of LAMMPS ``run 0`` with ``include <include_arg>`` taken literally."""
    lammps = _lammps_or_skip()
    c = atoms.cell.array
    lmp = lammps(cmdargs=["-log", "none", "-screen", "none", "-nocite"])
    try:
        lmp.commands_list(
            ["units metal", "atom_style atomic", "boundary p p p",
             "region box prism 0 %r 0 %r 0 %r %r %r %r units box"
             % tuple(float(x) for x in (c[0, 0], c[1, 1], c[2, 2], c[1, 0], c[2, 0], c[2, 1])),
             "create_box 1 box"]
            + ["create_atoms 1 single %r %r %r units box remap yes" % tuple(float(x) for x in p)
               for p in atoms.positions]
            + ["mass 1 63.546", f"include {include_arg}", "run 0"])
        return lmp.get_thermo("pe"), None, None
    finally:
        lmp.close()


# -- L4 -> fixed: one radelem / wj for every species ------------------------------------------
def test_scalar_radelem_and_wj_apply_to_every_species():
    at = _triclinic(("Cu", "Ni"))
    scalar = SNAPBispectrum(species=["Cu", "Ni"], twojmax=2, rcutfac=4.0, radelem=0.45, wj=0.9)
    listed = SNAPBispectrum(species=["Cu", "Ni"], twojmax=2, rcutfac=4.0, radelem=[0.45, 0.45],
                            wj=[0.9, 0.9])
    np.testing.assert_array_equal(scalar.compute(at), listed.compute(at))
    assert scalar.r_cut == pytest.approx(3.6)
    with pytest.raises(InvalidParameterError, match=r"'radelem' parameter of SNAPBispectrum "
                                                    r"must be a float in \(0, inf\)\. Got -0.5"):
        SNAPBispectrum(species=["Cu"], twojmax=2, rcutfac=4.0, radelem=-0.5).r_cut
    with pytest.raises(InvalidParameterError, match=r"sequence of 2 floats \(one per species\), "
                                                    r"or one float for every species"):
        SNAPBispectrum(species=["Cu", "Ni"], twojmax=2, rcutfac=4.0, wj=[1.0]).r_cut


def test_prefix_with_a_lammps_suffix_names_the_files(tmp_path):
    """Before: prefix 'lmp/cu.mod' wrote cu.mod.snapcoeff, cu.mod.snapparam and cu.mod.mod."""
    for given in ("cu.mod", "cu.snapcoeff", "cu.snapparam"):
        paths = write_snap(_model(None), tmp_path / given)
        assert [paths[k].name for k in ("snapcoeff", "snapparam", "mod")] == \
               ["cu.snapcoeff", "cu.snapparam", "cu.mod"]
    assert write_snap(_model(None), tmp_path / "cu.v2")["mod"].name == "cu.v2.mod"


def test_config_export_species(tmp_path, capsys, monkeypatch):
    from hybridpot.cli import main

    _model(None, species=("Cu", "Ni")).save(tmp_path / "m.hpot")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "e.toml").write_text('[export]\nprefix = "lmp/m"\nspecies = ["Ni", "Ni", "Cu"]\n')
    assert main(["export", "-c", "e.toml", "--model", "m.hpot"]) == 0
    assert "LAMMPS atom types: 1 = Ni, 2 = Ni, 3 = Cu" in capsys.readouterr().out
    assert main(["export", "-c", "e.toml", "--model", "m.hpot", "--species", "Cu"]) == 0
    assert "LAMMPS atom types: 1 = Cu\n" in capsys.readouterr().out   # the option wins
    (tmp_path / "e.toml").write_text('[export]\nspecies = ["Ni", 3]\n')
    assert main(["export", "-c", "e.toml", "--model", "m.hpot"]) == 2
    assert "error: export.species = ['Ni', 3]: The 'species' parameter of write_snap must " \
           "contain chemical symbols" in capsys.readouterr().err
