"""Model files that older hybridpot reads when they use nothing new (session 12, compat).

``save_model`` leaves out the hyperparameters of :data:`hybridpot.io.model.ADDED_HYPERPARAMETERS`
at their neutral value and records the lowest format version the file needs, so a model that
uses nothing added since 0.1.0 is a format-1 file.  The checks run the *loader of an older
commit* (extracted from this repository's git history with ``git archive``) on files written by
this code, in a subprocess:

- ``0bb561b``: hybridpot 0.1.0 as released (the last commit before session 11: none of the
  SNAP LAMMPS flags or inner switches, format 1 only);
- ``a8614f8``: hybridpot 0.2.0 (its CHANGELOG commit; format 2, refuses unknown entries).

Without ``git`` or without that history (an sdist) they skip.  Loading is a few seconds; the
prediction comparison compiles the old numba kernels (about 2 minutes) and is ``slow``.
"""

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms

from hybridpot import HybridPotential, ModelFormatError
from hybridpot.io import model as model_io
from hybridpot.io.model import ADDED_ARRAYS, ADDED_HYPERPARAMETERS, FORMAT_VERSION

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data" / "models"
RECORD = json.loads((DATA / "predictions.json").read_text())
MODELS = sorted(RECORD["models"])
RELEASE_010 = "0bb561b"     # hybridpot 0.1.0: last commit before session 11
RELEASE_020 = "a8614f8"     # hybridpot 0.2.0: CHANGELOG "## 0.2.0 (2026-11-22)"
PRE_SOFTENING = "9a0a61b"   # a format-1 reader without the sparse GP's dot_softening (634047d)
NEW_FEATURE = {"PowerSpectrum": {"r_inner": 1.6, "d_inner": 0.4},
               "SNAPBispectrum": {"chemflag": True}}

# Run by the old hybridpot: load each file, save it again with the old writer (what the old
# reader understood of it), optionally predict; one JSON document on stdout.
OLD_READER = r'''
import json, os, sys
import numpy as np
from ase import Atoms
import hybridpot
from hybridpot import HybridPotential
job = json.load(open(sys.argv[1]))
structures = []
for s in job["structures"]:
    at = Atoms(numbers=s["numbers"], positions=s["positions"], cell=s["cell"], pbc=s["pbc"])
    at.info["config_type"] = s["config_type"]
    structures.append(at)
out = {"file": hybridpot.__file__, "version": hybridpot.__version__, "models": {}}
for path in job["files"]:
    try:
        m = HybridPotential.load(path)
    except Exception as e:
        out["models"][path] = {"error": f"{type(e).__name__}: {e}"}
        continue
    res = {"resaved": path + ".old.hpot"}
    m.save(res["resaved"])
    if job["predict"]:
        unc = bool(getattr(m.regressor_, "has_uncertainty", False)) or \
            getattr(m, "uncertainty_", None) is not None
        if unc:
            e, es = m.predict(structures, return_std=True)
            f, fs = m.predict_forces(structures, return_std=True)
            res["energy_std"] = np.ravel(es).tolist()
            res["forces_std"] = np.concatenate([np.ravel(x) for x in fs]).tolist()
        else:
            e, f = m.predict(structures), m.predict_forces(structures)
        res["energy"] = np.ravel(e).tolist()
        res["forces"] = np.concatenate([np.ravel(x) for x in f]).tolist()
        res["stress"] = np.ravel(m.predict_stress(structures)).tolist()
    out["models"][path] = res
json.dump(out, sys.stdout)
'''


def _structures():
    out = []
    for s in RECORD["structures"]:
        at = Atoms(numbers=s["numbers"], positions=s["positions"], cell=s["cell"], pbc=s["pbc"])
        at.info["config_type"] = s["config_type"]
        out.append(at)
    return out


def _predictions(model, structures):
    unc = bool(getattr(model.regressor_, "has_uncertainty", False)) or \
        getattr(model, "uncertainty_", None) is not None
    out = {}
    if unc:
        e, es = model.predict(structures, return_std=True)
        f, fs = model.predict_forces(structures, return_std=True)
        out["energy_std"] = np.ravel(es)
        out["forces_std"] = np.concatenate([np.ravel(x) for x in fs])
    else:
        e, f = model.predict(structures), model.predict_forces(structures)
    out["energy"] = np.ravel(e)
    out["forces"] = np.concatenate([np.ravel(x) for x in f])
    out["stress"] = np.ravel(model.predict_stress(structures))
    return out


def _doc(path):
    with zipfile.ZipFile(path) as zf:
        return json.loads(zf.read("model.json"))


def _arrays(path):
    with zipfile.ZipFile(path) as zf, \
            np.load(io.BytesIO(zf.read("arrays.npz")), allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


def _keys(obj, prefix=""):
    """Every dotted key path of a JSON document (list items as [i])."""
    out = set()
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.add(prefix + k)
            out |= _keys(v, prefix + k + ".")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out |= _keys(v, f"{prefix}[{i}].")
    return out


# -- models written by this code ---------------------------------------------------------------
@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """Every kind of tests/data/models loaded and saved again by this hybridpot, plus models
    built here (from_fitted): no new feature, and each with one post-0.1 feature."""
    from hybridpot.baselines import EMT
    from hybridpot.descriptors import PowerSpectrum, SNAPBispectrum
    from hybridpot.regression import BayesianLinearRegressor, LinearRegressor

    folder = tmp_path_factory.mktemp("written")
    plain, featured = {}, {}
    for name in MODELS:
        path = folder / name
        HybridPotential.load(DATA / name).save(path)
        (featured if name.startswith("0ef48ef_gp_ps_emt") else plain)[name] = path
    r = np.random.default_rng(12)
    species = ["Cu", "Ni"]

    def build(tag, descriptor, regressor_cls, **kw):
        coef = r.normal(0.0, 0.01, (2, 1 + descriptor.n_features))
        coef[:, 0] = [-3.5, -4.4]
        if kw:   # a posterior: covariance of the flattened coefficients, noise
            kw = {"covariance": np.eye(coef.size) * 1e-4,
                  "noise": {"energy": 0.01, "forces": 0.05}}
        reg = regressor_cls.from_coef(coef, **kw)
        model = HybridPotential.from_fitted(descriptor, reg, baseline=EMT())
        path = folder / f"new_{tag}.hpot"
        model.save(path)
        return path

    plain["new_ps_defaults"] = build(
        "ps_defaults", PowerSpectrum(species=species, n_max=2, l_max=1, r_cut=4.0,
                                     r_inner=None, d_inner=None), BayesianLinearRegressor,
        posterior=True)
    plain["new_snap_defaults"] = build(
        "snap_defaults", SNAPBispectrum(species=species, twojmax=2, rcutfac=4.0,
                                        chemflag=False, bnormflag=False,
                                        switchinnerflag=False), LinearRegressor)
    featured["new_ps_r_inner"] = build(
        "ps_r_inner", PowerSpectrum(species=species, n_max=2, l_max=1, r_cut=4.0,
                                    **NEW_FEATURE["PowerSpectrum"]), LinearRegressor)
    featured["new_snap_chemflag"] = build(
        "snap_chemflag", SNAPBispectrum(species=species, twojmax=2, rcutfac=4.0,
                                        **NEW_FEATURE["SNAPBispectrum"]), LinearRegressor)
    return plain, featured


def test_models_using_nothing_new_are_format_1_without_the_new_keys(written):
    plain, featured = written
    new_names = {name for added in ADDED_HYPERPARAMETERS.values() for name in added}
    for tag, path in plain.items():
        doc = _doc(path)
        assert doc["format_version"] == 1, tag
        leaves = {k.rsplit(".", 1)[-1] for k in _keys(doc["descriptor"])}
        assert not leaves & new_names, (tag, leaves & new_names)
        # omitted = neutral value: the same hyperparameters as the file it was saved from
        if tag in MODELS:
            back, src = HybridPotential.load(path), HybridPotential.load(DATA / tag)
            for part in ("descriptor", "baseline"):
                a, b = getattr(back, part), getattr(src, part)
                assert (a is None and b is None) or a.to_dict() == b.to_dict(), (tag, part)
            assert back.regressor_.to_dict() == src.regressor_.to_dict(), tag
    for tag, path in featured.items():
        assert _doc(path)["format_version"] == FORMAT_VERSION == 2, tag
    d = _doc(featured["new_ps_r_inner"])["descriptor"]["params"]
    assert d["r_inner"] == 1.6 and d["d_inner"] == 0.4
    d = _doc(featured["new_snap_chemflag"])["descriptor"]["params"]
    assert d["chemflag"] is True and "bnormflag" not in d and "switchinnerflag" not in d
    # the dot-kernel sparse GP's fitted softening: format-1 readers before 634047d ignore it
    assert np.all(_arrays(featured["0ef48ef_gp_ps_emt.hpot"])["dot_softening"] > 0)


def test_omitted_hyperparameters_load_as_their_neutral_value_not_todays_default(
        written, monkeypatch):
    """A default that changes later must not change what an old file means."""
    from hybridpot.descriptors import PowerSpectrum, SNAPBispectrum

    plain, _ = written
    s = _structures()[:1]
    ps = HybridPotential.load(plain["new_ps_defaults"])
    snap = HybridPotential.load(plain["new_snap_defaults"])
    want_ps, want_snap = ps.predict(s), snap.predict(s)
    assert ps.descriptor.r_inner is None and snap.descriptor.chemflag is False
    monkeypatch.setattr(PowerSpectrum.__init__, "__kwdefaults__",
                        {**PowerSpectrum.__init__.__kwdefaults__, "r_inner": 1.6,
                         "d_inner": 0.4})
    monkeypatch.setattr(SNAPBispectrum.__init__, "__kwdefaults__",
                        {**SNAPBispectrum.__init__.__kwdefaults__, "bnormflag": True})
    assert PowerSpectrum(species=["Cu"], n_max=2, l_max=1, r_cut=4.0).r_inner == 1.6
    ps2 = HybridPotential.load(plain["new_ps_defaults"])
    snap2 = HybridPotential.load(plain["new_snap_defaults"])
    assert ps2.descriptor.r_inner is None and ps2.descriptor.d_inner is None
    assert snap2.descriptor.bnormflag is False
    np.testing.assert_array_equal(ps2.predict(s), want_ps)
    np.testing.assert_array_equal(snap2.predict(s), want_snap)


def test_registry_names_real_parameters_and_neutral_values_are_exact():
    import inspect

    from hybridpot.baselines import BASELINES
    from hybridpot.descriptors import DESCRIPTORS
    from hybridpot.regression import REGRESSORS

    regs = {"descriptor": DESCRIPTORS, "regressor": REGRESSORS, "baseline": BASELINES}
    for (kind, name), added in ADDED_HYPERPARAMETERS.items():
        sig = inspect.signature(regs[kind][name].__init__).parameters
        for p, a in added.items():
            assert p in sig, (kind, name, p)
            assert 2 <= a.format_version <= FORMAT_VERSION
    # 0 means False to SNAP but is written: the file reads back with the same get_params
    assert model_io._is_neutral(False, False) and not model_io._is_neutral(0, False)
    assert model_io._is_neutral(None, None) and not model_io._is_neutral(0.0, None)
    arr = model_io._arrays_format_version
    assert arr({"coef": np.ones(3), "dot_softening": np.zeros(2)}) == 1
    assert arr({"member1__dot_softening": np.array([0.0, 0.2])}) == 2
    assert set(ADDED_ARRAYS) == {"dot_softening"}


def test_nested_entries_are_stripped_and_versioned():
    """Stack members and the ensemble's member template are visited like the top entry."""
    doc = {"descriptor": {"class": "DescriptorStack", "params": {"descriptors": [
        {"class": "PowerSpectrum", "params": {"r_cut": 4.0, "r_inner": None, "d_inner": None}},
        {"class": "SNAPBispectrum", "params": {"chemflag": False, "sinner": None}}],
        "scales": None}},
        "regressor": {"class": "EnsembleRegressor", "params": {"estimator": {
            "class": "LinearRegressor", "params": {"alpha": 1.0}}}}, "baseline": None}
    assert model_io._omit_neutral(doc) == 1
    members = doc["descriptor"]["params"]["descriptors"]
    assert members[0]["params"] == {"r_cut": 4.0} and members[1]["params"] == {}
    model_io._fill_neutral(doc)
    assert members[0]["params"] == {"r_cut": 4.0, "r_inner": None, "d_inner": None}
    assert members[1]["params"]["chemflag"] is False
    members[1]["params"]["bnormflag"] = True
    assert model_io._omit_neutral(doc) == 2 and members[1]["params"] == {"bnormflag": True}


# -- the loaders of older commits ----------------------------------------------------------------
def _old_tree(tmp_path_factory, commit):
    """``hybridpot/`` of ``commit`` extracted with ``git archive`` (skip without git or the
    history, e.g. from an sdist)."""
    if shutil.which("git") is None:
        pytest.skip("git is not available")
    probe = subprocess.run(["git", "-C", str(ROOT), "cat-file", "-e", f"{commit}^{{commit}}"],
                           capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"commit {commit} is not in this checkout's history")
    tar = subprocess.run(["git", "-C", str(ROOT), "archive", commit, "hybridpot"],
                         capture_output=True, check=True).stdout
    folder = tmp_path_factory.mktemp(f"hybridpot_{commit}")
    with tarfile.open(fileobj=io.BytesIO(tar)) as tf:
        tf.extractall(folder, filter="data") if hasattr(tarfile, "data_filter") \
            else tf.extractall(folder)
    return folder


def _run_old(folder, files, predict, tmp_path):
    job = tmp_path / "job.json"
    job.write_text(json.dumps({"files": [str(f) for f in files], "predict": predict,
                               "structures": RECORD["structures"]}))
    script = tmp_path / "old_reader.py"
    script.write_text(OLD_READER)
    env = {**os.environ, "PYTHONPATH": str(folder), "OPENBLAS_NUM_THREADS": "1",
           "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    res = subprocess.run([sys.executable, str(script), str(job)], capture_output=True,
                         text=True, cwd=str(tmp_path), env=env, timeout=1800)
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout)
    assert Path(out["file"]).resolve().is_relative_to(Path(folder).resolve()), out["file"]
    return out


def _normalised(doc):
    """A model.json without what legitimately differs between writers: the version fields and
    hyperparameters at their neutral value (the 0.2.0 writer still wrote them)."""
    doc = json.loads(json.dumps(doc))
    doc.pop("format_version")
    doc.pop("hybridpot_version")
    model_io._omit_neutral(doc)
    return doc


@pytest.fixture(scope="module")
def tree_010(tmp_path_factory):
    return _old_tree(tmp_path_factory, RELEASE_010)


@pytest.mark.parametrize("commit, version", [(RELEASE_010, "0.1.0"), (RELEASE_020, "0.2.0")])
def test_old_release_reads_every_model_that_uses_nothing_new(
        written, tmp_path_factory, tmp_path, commit, version):
    """The old loader accepts the file, and what it understood -- the model it saves again --
    holds every hyperparameter, state entry and array of the file, unchanged."""
    plain, _ = written
    folder = _old_tree(tmp_path_factory, commit)
    out = _run_old(folder, list(plain.values()), False, tmp_path)
    assert out["version"] == version
    for tag, path in plain.items():
        res = out["models"][str(path)]
        assert "error" not in res, (tag, res.get("error"))
        assert _normalised(_doc(res["resaved"])) == _normalised(_doc(path)), tag
        a, b = _arrays(path), _arrays(res["resaved"])
        assert set(a) == set(b), tag
        for k in a:
            np.testing.assert_array_equal(a[k], b[k], err_msg=f"{tag}: {k}")


@pytest.mark.parametrize("commit", [RELEASE_010, PRE_SOFTENING])
def test_old_release_refuses_a_model_using_a_new_feature_as_newer(
        written, tmp_path_factory, tmp_path, commit):
    """Not misread: refused with the old reader's own 'newer file' message (also by a
    format-1 reader from before the dot-kernel softening, which would have ignored it)."""
    _, featured = written
    folder = _old_tree(tmp_path_factory, commit)
    out = _run_old(folder, list(featured.values()), False, tmp_path)
    for tag, path in featured.items():
        err = out["models"][str(path)].get("error", "")
        assert err.startswith("ModelFormatError: "), (tag, err)
        assert (f"{path.name}' was written with model format version 2 (hybridpot "
                f"{_doc(path)['hybridpot_version']}); this hybridpot reads up to version 1. "
                "Upgrade hybridpot to read it.") in err, (tag, err)


@pytest.mark.slow
def test_old_release_predicts_the_same_from_todays_files(written, tree_010, tmp_path):
    """hybridpot 0.1.0 predicts, from every format-1 file this code writes, the energies,
    forces, stresses and σ this code predicts (to round-off; a misread entry moves them by
    1e-3 or more).  Compiles 0.1.0's numba kernels: about 2 minutes."""
    plain, _ = written
    out = _run_old(tree_010, list(plain.values()), True, tmp_path)
    structures = _structures()
    for tag, path in plain.items():
        old = out["models"][str(path)]
        assert "error" not in old, (tag, old.get("error"))
        new = _predictions(HybridPotential.load(path), structures)
        assert set(new) <= set(old), tag
        for key, b in new.items():
            a = np.asarray(old[key])
            assert a.shape == b.shape, (tag, key)
            err = float(np.max(np.abs(a - b))) / max(float(np.max(np.abs(b))), 1e-300)
            assert err <= 1e-9, f"{tag} {key}: relative difference {err:.3g}"


def test_todays_reader_reads_the_old_releases_rewrite(written, tree_010, tmp_path):
    """Round trip the other way: what 0.1.0 saves again of today's file loads here as the
    same model (so files exchanged back and forth keep their meaning)."""
    plain, _ = written
    files = [plain["new_ps_defaults"], plain["new_snap_defaults"],
             plain["a178c9a_ens_ps_none.hpot"]]
    out = _run_old(tree_010, files, False, tmp_path)
    s = _structures()[:2]
    for path in files:
        back = HybridPotential.load(out["models"][str(path)]["resaved"])
        here = HybridPotential.load(path)
        assert back.descriptor.get_params() == here.descriptor.get_params()
        np.testing.assert_array_equal(back.predict(s), here.predict(s))


def test_todays_loader_still_refuses_unknown_hyperparameters(written, tmp_path):
    """Omission is only for registered names at their neutral value: a name this hybridpot
    does not know is still a 'newer file' error."""
    plain, _ = written
    src = plain["new_ps_defaults"]
    doc = _doc(src)
    doc["descriptor"]["params"]["r_outer"] = None
    bad = tmp_path / "bad.hpot"
    with zipfile.ZipFile(src) as zf, zipfile.ZipFile(bad, "w") as out:
        out.writestr("model.json", json.dumps(doc))
        out.writestr("arrays.npz", zf.read("arrays.npz"))
    with pytest.raises(ModelFormatError, match=r"descriptor PowerSpectrum: \['r_outer'\]"):
        HybridPotential.load(bad)
