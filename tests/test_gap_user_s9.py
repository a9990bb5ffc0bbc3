"""Session-9 review by a QUIP/GAP (and MACE-data) user: label key names, virials, isolated-atom
e0, the CLI [data] keys (notes/s9/gap/report.md)."""

import warnings

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.io import read, write

from conftest import emt_dataset, rattled_bulk, skewed_two_element_cell
from hybridpot import HybridPotential
from hybridpot._exceptions import InvalidParameterError, MissingLabelsError
from hybridpot._labels import check_label_keys, get_labels
from hybridpot.baselines import EMT as EMTBaseline
from hybridpot.cli import main
from hybridpot.descriptors import PowerSpectrum
from hybridpot.io import read_extxyz, standardize_labels
from hybridpot.regression import BayesianLinearRegressor, SparseGPRegressor

GAP_KEYS = {"energy": "dft_energy", "forces": "dft_forces", "virial": "dft_virial"}
MACE_KEYS = {"energy": "REF_energy", "forces": "REF_forces", "stress": "REF_stress"}


def _emt_truth(atoms):
    at = atoms.copy()
    at.calc = EMT()
    return at.get_potential_energy(), at.get_forces(), at.get_stress()


def _gap_frame(atoms, keys="gap"):
    """``atoms`` with EMT labels under GAP (dft_*, virial) or MACE (REF_*) names, no calc."""
    e, f, s = _emt_truth(atoms)
    at = atoms.copy()
    if keys == "gap":
        from hybridpot._labels import voigt_to_matrix

        at.info["dft_energy"] = e
        at.arrays["dft_forces"] = f
        at.info["dft_virial"] = (-voigt_to_matrix(s) * at.get_volume()).ravel()
    else:
        at.info["REF_energy"] = e
        at.arrays["REF_forces"] = f
        at.info["REF_stress"] = s
    return at


def _isolated(symbol="Cu"):
    at = Atoms(symbol, positions=[[0.0, 0.0, 0.0]], cell=[20.0, 20.0, 20.0], pbc=False)
    at.calc = EMT()
    e = at.get_potential_energy()
    at.calc = None
    at.info["dft_energy"] = e
    at.info["config_type"] = "isolated_atom"
    return at, e


# ------------------------------------------------------------------------------- virial
def test_virial_in_extxyz_becomes_the_ase_stress(tmp_path):
    """GAP files carry ``energy=`` and ``virial=`` (eV, -stress * V): the virial was dropped
    without a word; it is now the stress label, equal to ASE's EMT stress."""
    at = skewed_two_element_cell(seed=3)
    e, f, s = _emt_truth(at)
    from hybridpot._labels import voigt_to_matrix

    g = at.copy()
    g.info["virial"] = -voigt_to_matrix(s) * at.get_volume()
    g.arrays["forces"] = f
    g.info["energy"] = e
    write(tmp_path / "v.xyz", g, format="extxyz")
    back = read(tmp_path / "v.xyz")
    assert "virial" in back.info and "stress" not in (back.calc.results if back.calc else {})
    lab = get_labels(back)
    np.testing.assert_allclose(lab.stress, s, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(lab.forces, f)
    assert lab.energy == pytest.approx(e)


@pytest.mark.parametrize("shape", [(3, 3), (9,), (6,)])
def test_virial_shapes(shape):
    at = skewed_two_element_cell(seed=1)
    _, _, s = _emt_truth(at)
    from hybridpot._labels import voigt_to_matrix

    v = -voigt_to_matrix(s) * at.get_volume()
    at.info["virial"] = v.reshape(shape) if shape != (6,) else -s * at.get_volume()
    np.testing.assert_allclose(get_labels(at).stress, s, rtol=1e-9, atol=1e-12)


def test_virial_and_stress_must_agree_and_nonperiodic_virial_is_unused():
    at = skewed_two_element_cell(seed=2)
    _, _, s = _emt_truth(at)
    at.info["stress"] = s
    at.info["virial"] = -s * at.get_volume()
    np.testing.assert_allclose(get_labels(at).stress, s)            # consistent: fine
    at.info["virial"] = s * at.get_volume()                          # VASP-like sign slip
    with pytest.raises(MissingLabelsError, match=r"stress label \('stress'\) and the virial "
                       r"label \('virial'\) of structure 0 disagree"):
        get_labels(at)
    # {"virial": None}: the virial is not read
    np.testing.assert_allclose(get_labels(at, label_keys={"virial": None}).stress, s)
    mol = Atoms("Cu2", positions=[[0, 0, 0], [0, 0, 2.4]])
    mol.info["virial"] = np.eye(3)
    mol.info["energy"] = -1.0
    assert get_labels(mol).stress is None


def test_bad_virial_shape_message():
    at = skewed_two_element_cell(seed=2)
    at.info["virial"] = np.ones(4)
    with pytest.raises(MissingLabelsError, match=r"virial label \('virial'\) of structure 0 "
                       r"must have 9 \(3x3\) or 6 \(Voigt\) numbers, eV. Got shape \(4,\)"):
        get_labels(at)


# ------------------------------------------------------------------------------- key names
def test_unlabelled_message_names_the_keys_it_has():
    at = _gap_frame(skewed_two_element_cell(seed=0))
    at.info["energy_sigma"] = 0.001   # not a label: not suggested
    with pytest.raises(MissingLabelsError, match=r"carries no label.*atoms.info has "
                       r"\['dft_energy', 'dft_virial'\]; atoms.arrays has \['dft_forces'\].*"
                       r"label_keys=\{'energy': 'dft_energy', 'virial': 'dft_virial', "
                       r"'forces': 'dft_forces'\}.*\[data\] energy_key"):
        get_labels(at, 4)


@pytest.mark.parametrize("style, keys", [("gap", GAP_KEYS), ("mace", MACE_KEYS)])
def test_read_extxyz_with_gap_and_mace_names(tmp_path, style, keys):
    frames = [_gap_frame(skewed_two_element_cell(seed=k), style) for k in range(3)]
    write(tmp_path / "d.xyz", frames, format="extxyz")
    got = read_extxyz(tmp_path / "d.xyz", label_keys=keys)
    assert len(got) == 3
    for a, ref in zip(got, frames):
        e, f, s = _emt_truth(ref)
        res = a.calc.results
        assert res["energy"] == pytest.approx(e, abs=1e-10)
        np.testing.assert_allclose(res["forces"], f, atol=1e-10)
        np.testing.assert_allclose(res["stress"], s, atol=1e-10)
        assert a.calc.results is not None and get_labels(a).stress is not None
    one = read_extxyz(tmp_path / "d.xyz", 1, label_keys=keys)
    assert len(one) == 1 and one[0].calc.results["energy"] == got[1].calc.results["energy"]


def test_fit_on_gap_names_equals_fit_on_ase_labels():
    """The same data under GAP names (virial instead of stress) fits the same model."""
    plain = emt_dataset(4, 0)
    gap = []
    for a in plain:
        g = _gap_frame(a)
        g.info["config_type"] = a.info["config_type"]
        gap.append(g)
    desc = PowerSpectrum(species=["Cu"], r_cut=4.0, n_max=3, l_max=2)
    m1 = HybridPotential(desc, BayesianLinearRegressor()).fit(plain)
    m2 = HybridPotential(desc, BayesianLinearRegressor()).fit(
        standardize_labels(gap, GAP_KEYS))
    np.testing.assert_allclose(m2.regressor_.coef_, m1.regressor_.coef_, rtol=1e-7,
                               atol=1e-10)
    assert m2.evaluate(plain)["stress_rmse"] == pytest.approx(m1.evaluate(plain)["stress_rmse"])


def test_label_keys_validation():
    assert check_label_keys(None)["virial"] == "virial"
    assert check_label_keys({"energy": "dft_energy"})["forces"] == "forces"
    with pytest.raises(InvalidParameterError, match=r"'label_keys' parameter may only have the "
                       r"keys \['energy', 'forces', 'stress', 'virial'\]. Got 'force'"):
        check_label_keys({"force": "dft_forces"})
    with pytest.raises(InvalidParameterError, match=r"must map 'energy' to a non-empty key "
                       r"name.*Got 3 instead"):
        standardize_labels([bulk("Cu")], {"energy": 3})
    with pytest.raises(InvalidParameterError, match="must be a dict of label kind to key name"):
        standardize_labels([bulk("Cu")], ["dft_energy"])


# ------------------------------------------------------------------------------- e0
def test_isolated_atom_reference_energies():
    data = standardize_labels([_gap_frame(a) for a in emt_dataset(3, 1)], GAP_KEYS)
    iso, e_iso = _isolated()
    iso = standardize_labels([iso], GAP_KEYS)[0]
    assert iso.info["config_type"] == "isolated_atom"
    desc = PowerSpectrum(species=["Cu"], r_cut=4.0, n_max=3, l_max=2)
    m = HybridPotential(desc, BayesianLinearRegressor(),
                        reference_energies="isolated_atom").fit(data + [iso])
    assert m.reference_energies_ == {"Cu": pytest.approx(e_iso)}   # no baseline: E_DFT
    # with an EMT baseline e0 is what the baseline misses of the isolated atom (here 0)
    mb = HybridPotential(desc, BayesianLinearRegressor(), baseline=EMTBaseline(),
                         reference_energies="isolated_atom").fit(data + [iso])
    assert mb.reference_energies_["Cu"] == pytest.approx(0.0, abs=1e-9)
    assert mb.predict([iso])[0] == pytest.approx(e_iso, abs=1e-6)


def test_isolated_atom_errors():
    data = emt_dataset(2, 2)
    desc = PowerSpectrum(species=["Cu", "Ni"], r_cut=4.0, n_max=3, l_max=2)
    iso = standardize_labels([_isolated("Cu")[0]], GAP_KEYS)[0]
    with pytest.raises(InvalidParameterError, match=r"is 'isolated_atom', but the training "
                       r"set has no isolated atom of \['Ni'\].*within r_cut = 4 Å"):
        HybridPotential(desc, BayesianLinearRegressor(),
                        reference_energies="isolated_atom").fit(data + [iso])
    # a one-atom periodic crystal is not an isolated atom, whatever its config_type (gap_fit
    # looks for neighbours too)
    prim = bulk("Cu", "fcc", a=3.61)
    prim.info.update(dft_energy=-0.01, config_type="isolated_atom")
    prim = standardize_labels([prim], GAP_KEYS)[0]
    desc_cu = PowerSpectrum(species=["Cu"], r_cut=4.0, n_max=3, l_max=2)
    with pytest.raises(InvalidParameterError, match=r"no isolated atom of \['Cu'\]"):
        HybridPotential(desc_cu, BayesianLinearRegressor(),
                        reference_energies="isolated_atom").fit(data + [prim])
    # MACE's config_type=IsolatedAtom (any config_type): found by its missing neighbours
    iso.info["config_type"] = "IsolatedAtom"
    m = HybridPotential(desc_cu, BayesianLinearRegressor(),
                        reference_energies="isolated_atom").fit(data + [prim, iso])
    assert m.reference_energies_["Cu"] == pytest.approx(iso.get_potential_energy())
    with pytest.raises(InvalidParameterError, match="must be 'fit', 'isolated_atom', a dict"):
        HybridPotential(desc, BayesianLinearRegressor(),
                        reference_energies="isolated").fit(data)


# ------------------------------------------------------------------------------- CLI
def _write_gap_file(path):
    frames = []
    for a in emt_dataset(5, 3):
        g = _gap_frame(a)
        g.info["config_type"] = a.info["config_type"]
        frames.append(g)
    frames.append(_isolated()[0])
    write(path, frames, format="extxyz")
    return frames


CONFIG = """
[data]
train = "gap.xyz"
energy_key = "dft_energy"
forces_key = "dft_forces"
virial_key = "dft_virial"
test_fraction = 0.5
seed = {seed}
[descriptor]
type = "PowerSpectrum"
r_cut = 4.0
n_max = 3
l_max = 2
[baseline]
type = "EMT"
[fit]
reference_energies = "isolated_atom"
[output]
model = "m.hpot"
report = ""
"""


def test_cli_gap_file_keys_and_isolated_atom(tmp_path, capsys):
    _write_gap_file(tmp_path / "gap.xyz")
    for seed in range(6):  # whatever the split, the isolated atom stays in the training part
        (tmp_path / "c.toml").write_text(CONFIG.format(seed=seed))
        assert main(["fit", "-c", str(tmp_path / "c.toml"), "-q",
                     "--out", str(tmp_path / "m.hpot")]) == 0
    out = capsys.readouterr().out
    assert "stress MAE" in out and "n/a" not in out   # the virials were used as stresses
    assert main(["evaluate", "-c", str(tmp_path / "c.toml"), "--json",
                 "--model", str(tmp_path / "m.hpot")]) == 0
    import json

    m = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert m["n_structures"] == 3 and m["stress_mae"] is not None
    # without the key names the file has no labels: the message says which keys to use
    (tmp_path / "d.toml").write_text(CONFIG.format(seed=0).replace(
        'energy_key = "dft_energy"\n', ""))
    assert main(["fit", "-c", str(tmp_path / "d.toml"), "-q"]) == 2
    err = capsys.readouterr().err
    assert "structure 5 (Cu) of" in err and "'dft_energy'" in err
    assert err.count("(Cu)") == 1 and "gap.xyz': carries no label: it needs" in err


@pytest.mark.parametrize("line, msg", [
    ('energy_key = ""', r"data.energy_key must be a key name such as 'dft_energy', or 'none'"),
    ("energy_key = 3", r"data.energy_key must be str. Got 3"),
])
def test_cli_bad_label_keys(tmp_path, capsys, line, msg):
    _write_gap_file(tmp_path / "gap.xyz")
    (tmp_path / "c.toml").write_text(CONFIG.format(seed=0).replace(
        'energy_key = "dft_energy"', line))
    assert main(["fit", "-c", str(tmp_path / "c.toml"), "-q"]) == 2
    import re

    assert re.search(msg, capsys.readouterr().err)


# ------------------------------------------------------------------------------- local σ
@pytest.mark.parametrize("make", [
    lambda: BayesianLinearRegressor(),
    lambda: SparseGPRegressor(n_sparse=20, random_state=0)])
def test_predict_atomic_std(make):
    """GAP's local_gap_variance: σ of each atom's energy, no noise.  In a perfect crystal every
    atom has the same environment, so the noiseless total-energy σ is N times the atom's."""
    data = emt_dataset(3, 4)
    desc = PowerSpectrum(species=["Cu"], r_cut=4.0, n_max=3, l_max=2)
    m = HybridPotential(desc, make()).fit(data)
    perfect = bulk("Cu", "fcc", a=3.65, cubic=True)
    loc = m.predict_atomic_std([perfect])[0]
    assert loc.shape == (4,) and np.allclose(loc, loc[0], rtol=1e-6)
    total = m.predict([perfect], return_std=True)[1][0]
    noise = len(perfect) * m.regressor_.noise_["energy"]
    assert np.sqrt(total ** 2 - noise ** 2) == pytest.approx(4 * loc[0], rel=1e-5)
    # far from the data the atoms are less certain
    far = rattled_bulk(stdev=0.3, seed=5)
    assert m.predict_atomic_std(far)[0].mean() > 3 * m.predict_atomic_std(data[0])[0].mean()


def test_predict_atomic_std_needs_a_posterior():
    from hybridpot.regression import LinearRegressor

    m = HybridPotential(PowerSpectrum(species=["Cu"], r_cut=4.0, n_max=3, l_max=2),
                        LinearRegressor()).fit(emt_dataset(2, 5))
    with pytest.raises(InvalidParameterError, match=r"predict_atomic_std needs a regressor with "
                       r"a posterior.*from LinearRegressor, which has no posterior"):
        m.predict_atomic_std(emt_dataset(1, 6))


def test_gap_sigmas_are_not_silently_ignored():
    data = emt_dataset(2, 7)
    data[1].info["energy_sigma"] = 0.002
    data[1].arrays["force_atom_sigma"] = np.full(len(data[1]), 0.1)
    model = HybridPotential(PowerSpectrum(species=["Cu"], r_cut=4.0, n_max=3, l_max=2),
                            BayesianLinearRegressor())
    with pytest.warns(UserWarning, match=r"1 training structures carry gap_fit per-configuration "
                      r"sigmas \['energy_sigma', 'force_atom_sigma'\], which HybridPotential "
                      r"does not read"):
        model.fit(data)


# ------------------------------------------------------------------------------- 2b + SOAP
def _stack_cfg(tmp_path, linear, ensemble=False):
    from hybridpot.config import build_descriptor, build_regressor, load_config

    table = "[regressor.estimator]" if ensemble else "[regressor]"
    head = '[regressor]\ntype = "EnsembleRegressor"\nn_models = 2\n' if ensemble else ""
    (tmp_path / "s.toml").write_text(f"""
[descriptor]
type = "DescriptorStack"
[[descriptor.members]]
type = "PowerSpectrum"
r_cut = 4.0
n_max = 3
l_max = 2
[[descriptor.members]]
type = "ACSF"
r_cut = 5.0
angular = "none"
radial_etas = [4.0]
radial_shifts = [1.8, 2.7, 3.6, 4.5]
{head}{table}
type = "SparseGPRegressor"
n_sparse = 10
linear_features = {linear}
""")
    cfg = load_config(tmp_path / "s.toml")
    desc = build_descriptor(cfg, ["Cu"])
    return build_regressor(cfg, desc), desc


def test_config_linear_features_names_a_member(tmp_path):
    from hybridpot._exceptions import ConfigError

    reg, desc = _stack_cfg(tmp_path, '"descriptor.members[1]"')
    sl = desc.block_slices()[1]
    assert reg.linear_features == (sl.start, sl.stop) == (18, 22)
    assert _stack_cfg(tmp_path, 4)[0].linear_features == 4     # whole member: as given
    assert list(_stack_cfg(tmp_path, "[18, 22]")[0].linear_features) == [18, 22]
    ens, _ = _stack_cfg(tmp_path, '"descriptor.members[1]"', ensemble=True)
    assert ens.estimator.linear_features == (18, 22)
    with pytest.raises(ConfigError, match=r"regressor.linear_features = 5 selects the columns "
                       r"\[17, 22\), which cut through a descriptor member; the descriptor "
                       r"members' columns are descriptor.members\[0\] = \[0, 18\], "
                       r"descriptor.members\[1\] = \[18, 22\]"):
        _stack_cfg(tmp_path, 5)
    with pytest.raises(ConfigError, match=r"must be a number of trailing features, \[start, "
                       r"stop\], or 'descriptor.members\[k\]'.*Got 'descriptor.members\[2\]'"):
        _stack_cfg(tmp_path, '"descriptor.members[2]"')


def test_model_predictions_under_default_names_are_not_taken_when_named_none(tmp_path):
    """A MACE-style file carries a model's energy / forces / stress (calculator results) next
    to the REF_* labels: with every kind named, only the labels are read."""
    from ase.calculators.singlepoint import SinglePointCalculator

    at = _gap_frame(skewed_two_element_cell(seed=4), "mace")
    del at.info["REF_stress"]
    at.calc = SinglePointCalculator(at, energy=1.0, forces=np.zeros((4, 3)),
                                    stress=np.ones(6))          # a model's predictions
    write(tmp_path / "m.xyz", at, format="extxyz")
    keys = {"energy": "REF_energy", "forces": "REF_forces", "stress": None, "virial": None}
    got = read_extxyz(tmp_path / "m.xyz", label_keys=keys)[0]
    e, f, _ = _emt_truth(at)
    assert got.calc.results["energy"] == pytest.approx(e) and "stress" not in got.calc.results
    np.testing.assert_allclose(got.calc.results["forces"], f, atol=1e-10)


def test_cli_learn_reads_gap_named_initial_and_validation(tmp_path, capsys):
    """[data] energy_key ... apply to `hybridpot learn`'s initial / validation files too (the
    no-label message points there)."""
    frames = []
    for k in range(6):
        at = bulk("Cu", "fcc", a=3.61, cubic=True) * (2, 1, 1)
        at.rattle(0.05 + 0.02 * k, seed=k)
        frames.append(_gap_frame(at))
    write(tmp_path / "init.xyz", frames[:4], format="extxyz")
    write(tmp_path / "val.xyz", frames[4:], format="extxyz")
    cfg = tmp_path / "learn.toml"
    cfg.write_text(f"""
[data]
energy_key = "dft_energy"
forces_key = "dft_forces"
virial_key = "dft_virial"
[descriptor]
type = "PowerSpectrum"
r_cut = 4.0
n_max = 3
l_max = 2
[baseline]
type = "none"
[learn]
run_dir = "{tmp_path / 'run'}"
sampler = "rattle"
species = ["Cu"]
supercell = [2, 1, 1]
initial = "{tmp_path / 'init.xyz'}"
validation = "{tmp_path / 'val.xyz'}"
n_candidates = 4
batch_size = 1
max_iterations = 1
""")
    assert main(["learn", "-c", str(cfg), "-q"]) == 0
    assert "force MAE" in capsys.readouterr().out


# ------------------------------------------------------------------------------- gap weights
def test_gap_sigmas_become_relative_weights():
    data = emt_dataset(4, 8)                       # 32-atom cells, config_type rattle/strain
    data[0].info["energy_sigma"] = 0.001 * np.sqrt(32) / 2     # half the default: weight 4
    data[1].info["virial_sigma"] = 0.05 * np.sqrt(32) * 2      # twice: weight 1/4
    data[2].info["force_sigma"] = 0.1
    data[3].arrays["force_atom_sigma"] = np.full(32, 0.1)      # per atom: not expressible
    got = standardize_labels(data, default_sigma={"energy": 0.001, "forces": 0.05,
                                                  "virial": 0.05},
                             config_type_sigma={"strain": {"forces": 0.025}})
    assert got[0].info["fit_weight_energy"] == pytest.approx(4.0)
    assert "energy_sigma" not in got[0].info and "energy_sigma" in data[0].info
    assert got[1].info["fit_weight_stress"] == pytest.approx(0.25)
    assert got[1].info["fit_weight_forces"] == pytest.approx(4.0)   # strain: 0.05/0.025
    assert got[2].info["fit_weight_forces"] == pytest.approx(0.25)  # own sigma wins
    assert got[3].info["fit_weight_forces"] == pytest.approx(4.0)   # strain, no own sigma
    assert [k for k in got[0].info if k.startswith("fit_weight")] == ["fit_weight_energy"]
    desc = PowerSpectrum(species=["Cu"], r_cut=4.0, n_max=3, l_max=2)
    with pytest.warns(UserWarning, match=r"\['force_atom_sigma'\]"):
        HybridPotential(desc, BayesianLinearRegressor()).fit(got)


def test_per_kind_fit_weights_equal_group_weights():
    """atoms.info['fit_weight_<kind>'] weighs one kind of one structure exactly as a
    group_weights entry of its config_type does."""
    data = emt_dataset(4, 9)
    desc = PowerSpectrum(species=["Cu"], r_cut=4.0, n_max=3, l_max=2)
    reg = SparseGPRegressor(n_sparse=15, random_state=0,
                            noise={"energy": 0.002, "forces": 0.05, "stress": 0.01})
    m1 = HybridPotential(desc, reg, group_weights={"strain": {"energy": 9.0, "forces": 0.5}})
    m1.fit(data)
    marked = [a.copy() for a in data]
    for a, b in zip(marked, data):
        a.calc = b.calc
        if a.info["config_type"] == "strain":
            a.info.update(fit_weight_energy=9.0, fit_weight_forces=0.5)
    m2 = HybridPotential(desc, reg).fit(marked)
    np.testing.assert_allclose(m2.regressor_.coef_, m1.regressor_.coef_, rtol=1e-8, atol=1e-12)
    marked[1].info["fit_weight_stress"] = -1.0
    with pytest.raises(InvalidParameterError, match=r"The 'fit_weight_stress' entry of atoms.info "
                       r"of training structure 1 must be a float in \[0, inf\). Got -1.0"):
        HybridPotential(desc, reg).fit(marked)


def test_gap_sigma_errors():
    at = emt_dataset(1, 10)[0]
    at.info["energy_sigma"] = 0.01
    with pytest.raises(InvalidParameterError, match=r"Structure 0 has a gap_fit 'energy_sigma' but "
                       r"the 'default_sigma' parameter has no 'energy' entry"):
        standardize_labels([at], default_sigma={"forces": 0.05})
    with pytest.raises(InvalidParameterError, match=r"'default_sigma' parameter's 'forces' entry "
                       r"must be a float in \(0, inf\). Got 0"):
        standardize_labels([at], default_sigma={"energy": 0.001, "forces": 0})
    with pytest.raises(InvalidParameterError, match=r"'default_sigma' parameter must be a dict "
                       r"with keys among \['energy', 'forces', 'virial'\]"):
        standardize_labels([at], default_sigma={"stress": 0.01})
    with pytest.raises(InvalidParameterError, match="needs 'default_sigma'"):
        standardize_labels([at], config_type_sigma={"rattle": {"energy": 0.01}})
    with pytest.raises(InvalidParameterError, match=r"gives \['forces'\] sigmas for 'rattle', "
                       r"which 'default_sigma' lacks"):
        standardize_labels([at], default_sigma={"energy": 0.001},
                           config_type_sigma={"rattle": {"forces": 0.1}})


def test_cli_default_sigma_and_config_type_sigma(tmp_path, capsys):
    frames = _write_gap_file(tmp_path / "gap.xyz")
    frames[0].info["energy_sigma"] = 0.0005
    write(tmp_path / "gap.xyz", frames, format="extxyz")
    base = CONFIG.format(seed=0).replace("[descriptor]", "{sig}\n[descriptor]")
    good = 'default_sigma = {energy = 0.001, forces = 0.05, virial = 0.05}\n' \
        'config_type_sigma = {strain = {forces = 0.1}}'
    (tmp_path / "c.toml").write_text(base.format(sig=good))
    with warnings.catch_warnings():
        warnings.simplefilter("error")          # energy_sigma converted: no gap-sigma warning
        assert main(["fit", "-c", str(tmp_path / "c.toml"), "-q",
                     "--out", str(tmp_path / "m.hpot")]) == 0
    capsys.readouterr()
    (tmp_path / "d.toml").write_text(base.format(sig='default_sigma = {energy = -1.0}'))
    assert main(["fit", "-c", str(tmp_path / "d.toml"), "-q"]) == 2
    assert "data.default_sigma's 'energy' entry must be a float in (0, inf). Got -1.0" in \
        capsys.readouterr().err
