"""Model files across hybridpot versions (review s11/upgrade).

``tests/data/models/`` holds small models saved by earlier commits of hybridpot (format
version 1, from 21 Nov 2026 06:01 on, and format version 2) -- every regressor type, the SO(3),
SO(4), ACSF and stacked descriptors, no / EMT / ZBL / LJ / Morse / Buckingham / ASE baselines,
σ recalibration (nll, coverage, split, heteroscedastic), posterior committees, per-group
noise -- with the predictions the writing code made (``predictions.json``; made by
/work/notes/s11/upgrade/gen.py).  The current code must load each and predict the same
energies, forces, stresses and σ, keep their settings, and refuse newer files with a clear
message (the compatibility policy of :mod:`hybridpot.io.model`).
"""

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms

from hybridpot import HybridPotential, ModelFormatError
from hybridpot.io.model import FORMAT_VERSION

DATA = Path(__file__).resolve().parent / "data" / "models"
RECORD = json.loads((DATA / "predictions.json").read_text())
MODELS = sorted(RECORD["models"])


def _structures():
    out = []
    for s in RECORD["structures"]:
        at = Atoms(numbers=s["numbers"], positions=s["positions"], cell=s["cell"], pbc=s["pbc"])
        at.info["config_type"] = s["config_type"]   # selects the noise of per-group models
        out.append(at)
    return out


def _predictions(model, structures):
    """What gen.py recorded: predict / predict_forces / predict_stress (with σ when the model
    has one) and the ASE calculator's results on the first structure."""
    unc = bool(getattr(model.regressor_, "has_uncertainty", False)) or \
        getattr(model, "uncertainty_", None) is not None
    out = {}
    if unc:
        e, es = model.predict(structures, return_std=True)
        f, fs = model.predict_forces(structures, return_std=True)
        s, ss = model.predict_stress(structures, return_std=True)
        out.update(energy_std=es, forces_std=fs, stress_std=ss)
    else:
        e, f, s = (model.predict(structures), model.predict_forces(structures),
                   model.predict_stress(structures))
    out.update(energy=e, forces=f, stress=s)
    at = structures[0].copy()
    at.calc = model.calculator(uncertainty=unc)
    calc = {"energy": at.get_potential_energy(), "forces": at.get_forces(),
            "stress": at.get_stress()}
    if unc:
        calc["energy_std"] = at.calc.get_property("energy_std", at)
        calc["forces_std"] = at.calc.get_property("forces_std", at)
    out["calculator"] = calc
    return out


def _flat(x):
    if isinstance(x, (list, tuple)) and len(x) and np.ndim(x[0]) >= 1:
        return np.concatenate([np.ravel(np.asarray(v, dtype=float)) for v in x])
    return np.ravel(np.asarray(x, dtype=float))


def _compare(want, got, where=""):
    for key, w in want.items():
        assert key in got, f"{where}{key} is not predicted any more"
        if isinstance(w, dict):
            _compare(w, got[key], f"{where}{key}/")
            continue
        a, b = _flat(w), _flat(got[key])
        assert a.shape == b.shape, f"{where}{key}: shape {a.shape} -> {b.shape}"
        # energies, forces, stresses: 1e-7 of the largest value; σ: 1e-6.  A format or
        # migration bug moves predictions by 1e-3 or more (the sparse-GP file read without its
        # dot_softening: 5e-3); round-off does not stay near 1e-10 across machines: the
        # recorded predictions come from one BLAS, and the projected sparse GP on a bispectrum
        # (a178c9a_gpproj_bs_zbl_split) differs by 1.3e-8 in energy with OpenBLAS's
        # Sandybridge kernels (its weights cancel), while a variance is a difference (prior
        # minus explained part), which amplifies round-off further.
        tol = 1e-6 if key.endswith("_std") else 1e-7
        scale = max(float(np.max(np.abs(a))), 1e-300)
        err = float(np.max(np.abs(a - b))) / scale
        assert err <= tol, f"{where}{key}: relative difference {err:.3g} > {tol}"


@pytest.mark.parametrize("name", MODELS)
def test_old_model_file_predicts_as_when_saved(name, tmp_path):
    rec = RECORD["models"][name]
    model = HybridPotential.load(DATA / name)
    _compare(rec["predictions"], _predictions(model, _structures()))
    # saved again by this hybridpot (the current format version): still the same model
    model.save(tmp_path / "again.hpot")
    _compare(rec["predictions"], _predictions(HybridPotential.load(tmp_path / "again.hpot"),
                                              _structures()))


def test_guard_covers_the_regressors_descriptors_and_baselines():
    """The committed files span what users fit (so the guard keeps meaning)."""
    docs = {}
    for name in MODELS:
        with zipfile.ZipFile(DATA / name) as zf:
            docs[name] = json.loads(zf.read("model.json"))
    regs = {d["regressor"]["class"] for d in docs.values()}
    descs = {d["descriptor"]["class"] for d in docs.values()}
    bases = {d["baseline"]["class"] for d in docs.values() if d["baseline"] is not None}
    assert regs >= {"LinearRegressor", "BayesianLinearRegressor", "ARDLinearRegressor",
                    "SparseGPRegressor", "NeuralNetworkRegressor", "EnsembleRegressor"}
    assert descs >= {"PowerSpectrum", "Bispectrum", "SNAPBispectrum", "ACSF", "DescriptorStack"}
    assert bases >= {"EMT", "ZBL", "LennardJones", "Morse", "Buckingham", "ASEBaseline"}
    assert {d["format_version"] for d in docs.values()} == {1, 2}
    assert sum((DATA / n).stat().st_size for n in MODELS) < 300_000


def test_old_files_keep_their_settings():
    """Recalibrations, committees, fit settings and fitted-state migrations survive loading."""
    load = {n.split("_", 1)[1].rsplit(".", 1)[0] + "@" + n.split("_", 1)[0]:
            (lambda n=n: HybridPotential.load(DATA / n)) for n in MODELS}
    m = load["blrs_bsw_morse@2d74ddf"]()          # recalibrate(method='coverage')
    assert set(m.uncertainty_scale_) == {"energy", "forces", "stress"}
    assert m.regressor_.noise_levels == "shared"
    assert m.baseline.get_params() == {"D0": 0.05, "alpha": 1.5, "r0": 2.6, "r_cut": 4.0}
    m = load["blrg_snap_emt_post@2d74ddf"]()      # LinearPosterior committee + 'split'
    assert m.uncertainty_ is not None and m.regressor_.noise_groups is True
    assert m.group_names_ == ("strained", "bulk")
    m = load["gp_bs_none_het@2d74ddf"]()          # heteroscedastic state version 1
    assert m.uncertainty_recalibration_["method"] == "heteroscedastic"
    assert m.uncertainty_recalibration_["version"] == 2      # migrated
    # sparse GP written before the dot-kernel softening: the unit-vector kernel it used
    np.testing.assert_array_equal(m.regressor_.dot_softening_, 0.0)
    assert np.all(load["gp_ps_emt@0ef48ef"]().regressor_.dot_softening_ > 0)
    m = load["lin_snapq_buck@2d74ddf"]()
    assert m.group_weights == {"strained": 3.0} and m.chunk_size == 5
    assert m.descriptor.quadraticflag is True and m.descriptor.bzeroflag is True
    # trained_species_ is recorded from 7b84fc2 on; older files are not checked
    assert getattr(load["nn_acsf_none@2d74ddf"](), "trained_species_", None) is None
    assert load["ard_acsf_none@0ef48ef"]().trained_species_ == ("Cu", "Ni")
    # no params.reference_energies before 7cf66ab: the fitted e0 are the hyperparameter
    m = load["blrq_snap_none_refnone@2d74ddf"]()
    assert m.reference_energies == {"Cu": 0.0, "Ni": 0.0} == m.reference_energies_
    # sparse GP of 5c9267e (before the per-element constant and the DTC derivative σ)
    m = load["gpse_acsf_lj@5c9267e"]()
    assert m.regressor_.bias is False and m.regressor_.derivative_variance == "projected"
    m = load["ensnn_acsf_none@format2"]()
    assert m.reference_energies == "fit"
    assert m.regressor_.estimator.hidden_layer_sizes == (3,)


def _rewrite(src, dst, edit):
    with zipfile.ZipFile(src) as zf:
        doc = json.loads(zf.read("model.json"))
        arrays = zf.read("arrays.npz")
    edit(doc)
    with zipfile.ZipFile(dst, "w") as zf:
        zf.writestr("model.json", json.dumps(doc))
        zf.writestr("arrays.npz", arrays)
    return dst


def test_saved_files_are_the_lowest_format_they_need_and_version_2_reads_the_same(tmp_path):
    """Session 12: a model that uses nothing added since 0.1.0 is written as format 1 (so
    0.1.0 reads it; tests/test_compat_s12.py runs the old readers); labelled 2 it reads the
    same."""
    src = DATA / "format2_ensnn_acsf_none.hpot"
    m = HybridPotential.load(src)
    m.save(tmp_path / "m.hpot")
    with zipfile.ZipFile(tmp_path / "m.hpot") as zf:
        assert json.loads(zf.read("model.json"))["format_version"] == 1
    assert FORMAT_VERSION == 2
    v2 = _rewrite(tmp_path / "m.hpot", tmp_path / "v2.hpot",
                  lambda d: d.__setitem__("format_version", 2))
    s = _structures()
    np.testing.assert_array_equal(HybridPotential.load(v2).predict(s), m.predict(s))


def test_newer_format_version_is_refused_naming_both_versions(tmp_path):
    bad = _rewrite(DATA / "2d74ddf_lin_snap_zbl.hpot", tmp_path / "new.hpot",
                   lambda d: d.__setitem__("format_version", FORMAT_VERSION + 1))
    with pytest.raises(ModelFormatError,
                       match=rf"new.hpot' was written with model format version "
                             rf"{FORMAT_VERSION + 1} \(hybridpot 0\.1\.0\); this hybridpot "
                             rf"\S+ reads format versions 1 to {FORMAT_VERSION}\. Upgrade "
                             "hybridpot to read it"):
        HybridPotential.load(bad)
    gone = _rewrite(DATA / "2d74ddf_lin_snap_zbl.hpot", tmp_path / "nov.hpot",
                    lambda d: d.pop("format_version"))
    with pytest.raises(ModelFormatError, match=rf"nov.hpot' has no format_version; a hybridpot "
                                               rf"model file records one \(1 to "
                                               rf"{FORMAT_VERSION}\)"):
        HybridPotential.load(gone)
    zero = _rewrite(DATA / "2d74ddf_lin_snap_zbl.hpot", tmp_path / "zero.hpot",
                    lambda d: d.__setitem__("format_version", 0))
    with pytest.raises(ModelFormatError, match=r"invalid format_version 0; this hybridpot "
                                               rf"reads format versions 1 to {FORMAT_VERSION}"):
        HybridPotential.load(zero)


@pytest.mark.parametrize("name, edit, where", [
    ("2d74ddf_blr_ps_emt.hpot",
     lambda d: d["regressor"]["params"].__setitem__("new_knob", 1),
     r"regressor BayesianLinearRegressor: \['new_knob'\]"),
    ("2d74ddf_lin_snap_zbl.hpot",
     lambda d: d["descriptor"]["params"].__setitem__("new_flag", True),
     r"descriptor SNAPBispectrum: \['new_flag'\]"),
    ("2d74ddf_lin_snap_zbl.hpot",
     lambda d: d["baseline"]["params"].update(a=1, b=2),
     r"baseline ZBL: \['a', 'b'\]"),
    ("a178c9a_blr_stack_emt.hpot",
     lambda d: d["descriptor"]["params"]["descriptors"][1]["params"].__setitem__("new_knob", 1),
     r"descriptor DescriptorStack.descriptors\[1\] ACSF: \['new_knob'\]"),
    ("a178c9a_ens_ps_none.hpot",
     lambda d: d["regressor"]["params"]["estimator"]["params"].__setitem__("new_knob", 1),
     r"regressor EnsembleRegressor.estimator SparseGPRegressor: \['new_knob'\]"),
])
def test_hyperparameter_of_a_newer_hybridpot_is_refused_clearly(tmp_path, name, edit, where):
    """A newer hybridpot adds hyperparameters without a new format version; this one must say
    so instead of 'incomplete or corrupt ... unexpected keyword argument'."""
    bad = _rewrite(DATA / name, tmp_path / "newer.hpot", edit)
    with pytest.raises(ModelFormatError,
                       match=r"newer.hpot' \(model format version 1, written by hybridpot "
                             r"0\.1\.0\) holds hyperparameters this hybridpot \S+ does not "
                             rf"know: {where}\. The file was probably written by a newer "
                             r"hybridpot: upgrade hybridpot to read it"):
        HybridPotential.load(bad)


def test_sdist_carries_the_old_model_files():
    """MANIFEST.in ships tests/data/models (the sdist's tests need them)."""
    import os

    egg_info = pytest.importorskip("setuptools.command.egg_info")
    root = DATA.parents[2]
    fl = egg_info.FileList()
    cwd = os.getcwd()
    os.chdir(root)
    try:
        for line in (root / "MANIFEST.in").read_text().splitlines():
            if line.strip() and not line.strip().startswith("#"):
                fl.process_template_line(line.strip())
    finally:
        os.chdir(cwd)
    on_disk = {p.relative_to(root).as_posix() for p in DATA.iterdir()}
    assert on_disk <= set(fl.files), sorted(on_disk - set(fl.files))


def _rewrite_arrays(src, dst, add):
    import io

    with zipfile.ZipFile(src) as zf:
        text = zf.read("model.json")
        with np.load(io.BytesIO(zf.read("arrays.npz")), allow_pickle=False) as npz:
            arrays = dict(npz)
    arrays.update(add)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    with zipfile.ZipFile(dst, "w") as zf:
        zf.writestr("model.json", text)
        zf.writestr("arrays.npz", buf.getvalue())
    return dst


@pytest.mark.parametrize("name, edit, where", [
    ("0ef48ef_gp_ps_emt.hpot", lambda d: d["regressor"]["state"].__setitem__("new_scale_", 2.0),
     r"SparseGPRegressor state \['new_scale_'\]"),
    ("a178c9a_ens_ps_none.hpot",
     lambda d: d["regressor"]["state"]["members"][1].__setitem__("new_scale_", 2.0),
     r"EnsembleRegressor state.members\[1\] \['new_scale_'\]"),
    ("2d74ddf_blrs_bsw_morse.hpot",
     lambda d: d["extra"].__setitem__("uncertainty_shift", {"energy": 0.1}),
     r"extra \['uncertainty_shift'\]"),
    ("2d74ddf_lin_snap_zbl.hpot", lambda d: d.__setitem__("pair_correction", {"a": 1}),
     r"top-level keys \['pair_correction'\]"),
    ("2d74ddf_lin_snap_zbl.hpot", lambda d: d["params"].__setitem__("energy_offset", 1.0),
     r"params \['energy_offset'\]"),
])
def test_fitted_state_of_a_newer_hybridpot_is_refused_not_ignored(tmp_path, name, edit, where):
    """How 634047d's dot_softening was misread by older readers: an entry the reader does
    not know would be ignored, and the model would predict other energies."""
    bad = _rewrite(DATA / name, tmp_path / "newer.hpot", edit)
    with pytest.raises(ModelFormatError,
                       match=r"newer.hpot' \(model format version 1, written by hybridpot "
                             r"0\.1\.0\) holds entries this hybridpot \S+ does not read: "
                             rf"{where}\. The file was probably written by a newer hybridpot "
                             r"whose predictions may depend on them: upgrade hybridpot"):
        HybridPotential.load(bad)


def test_unknown_array_of_a_newer_hybridpot_is_refused(tmp_path):
    bad = _rewrite_arrays(DATA / "0ef48ef_blr_ps_none_nll.hpot", tmp_path / "newer.hpot",
                          {"coef_correction": np.ones(3)})
    with pytest.raises(ModelFormatError, match=r"does not read: arrays \['coef_correction'\]"):
        HybridPotential.load(bad)
    ens = _rewrite_arrays(DATA / "a178c9a_ens_ps_none.hpot", tmp_path / "ens.hpot",
                          {"member0__dot_scale": np.ones(2)})
    with pytest.raises(ModelFormatError, match=r"arrays \['member0__dot_scale'\]"):
        HybridPotential.load(ens)
