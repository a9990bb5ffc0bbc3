"""Lead's session-9 fixes found through the reviews."""

import warnings

import numpy as np
import pytest
from ase.build import bulk

from conftest import emt_label
from hybridpot import HybridPotential
from hybridpot.descriptors import PowerSpectrum
from hybridpot.regression import BayesianLinearRegressor


def _alloys(ratios, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for k, n_ni in enumerate(ratios):
        a = bulk("Cu", "fcc", a=3.6, cubic=True) * (2, 1, 1)
        order = rng.permutation(len(a))
        syms = np.array(a.get_chemical_symbols())
        syms[order[:n_ni]] = "Ni"
        a.set_chemical_symbols(list(syms))
        a.rattle(0.05, seed=seed + k)
        out.append(emt_label(a))
    return out


def _model():
    return HybridPotential(
        descriptor=PowerSpectrum(species=["Cu", "Ni"], r_cut=3.5, n_max=2, l_max=2),
        regressor=BayesianLinearRegressor(), baseline=None)


def test_one_composition_warns_when_predicting_another(tmp_path):
    train = _alloys([2, 2, 2, 2, 2])          # every cell Cu6Ni2: one composition
    model = _model().fit(train)
    null = model.composition_null_space_
    assert null.shape == (2, 1)
    # the training composition (6, 2) has no component along the null direction
    assert abs(np.array([6.0, 2.0]) @ null[:, 0]) < 1e-12
    same = _alloys([2], seed=7)[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.predict([same])                 # same composition: no warning
        model.predict([same * (2, 1, 1)])     # twice the cell, same ratio: no warning
    pure = _alloys([0], seed=3)[0]
    with pytest.warns(UserWarning, match=r"energy of Cu8 is an arbitrary extrapolation.*"
                      r"\['Cu', 'Ni'\]"):
        model.predict([pure])
    calc_atoms = pure.copy()
    calc_atoms.calc = model.calculator()
    with pytest.warns(UserWarning, match="arbitrary extrapolation"):
        calc_atoms.get_potential_energy()
    # saved and loaded with the model
    path = tmp_path / "m.hpot"
    model.save(path)
    loaded = HybridPotential.load(path)
    np.testing.assert_array_equal(loaded.composition_null_space_, null)
    with pytest.warns(UserWarning, match="arbitrary extrapolation"):
        loaded.predict([pure])


def test_several_compositions_span_every_direction():
    train = _alloys([0, 2, 4, 2, 1])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = _model().fit(train)
        model.predict(_alloys([3, 0], seed=5))
    assert model.composition_null_space_ is None
    # given reference energies: nothing to warn about
    m2 = _model().set_params(reference_energies={"Cu": 0.0, "Ni": 0.0}).fit(
        _alloys([2, 2, 2]))
    assert m2.composition_null_space_ is None


def test_composition_null_space_in_a_model_file_is_validated(tmp_path):
    import json
    import zipfile

    from hybridpot import ModelFormatError

    model = _model().fit(_alloys([2, 2, 2, 2]))
    path = tmp_path / "m.hpot"
    model.save(path)
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
        members = {n: z.read(n) for n in names}
    json_name = next(n for n in names if n.endswith(".json"))
    doc = json.loads(members[json_name])
    assert "composition_null_space" in json.dumps(doc)

    def patch(d):
        if isinstance(d, dict):
            for k, v in d.items():
                if k == "composition_null_space":
                    d[k] = [[1.0, "x"]]
                else:
                    patch(v)
    patch(doc)
    bad = tmp_path / "bad.hpot"
    with zipfile.ZipFile(bad, "w") as z:
        for n in names:
            z.writestr(n, json.dumps(doc) if n == json_name else members[n])
    with pytest.raises(ModelFormatError, match="composition_null_space"):
        HybridPotential.load(bad)


def test_small_structure_sigma_takes_the_one_pass_jacobian(monkeypatch):
    """The chunked Jacobian (values computed apart from it) is only for structures whose
    Jacobian exceeds GRADIENT_CHUNK_BYTES; a small cell's σ computes values and Jacobian in
    one pass, with the same result."""
    from hybridpot.descriptors import _base as dbase

    train = _alloys([0, 2, 4, 2, 1])
    model = _model().fit(train)
    at = _alloys([3], seed=11)[0]
    default = dbase.GRADIENT_CHUNK_BYTES
    monkeypatch.setattr(dbase, "GRADIENT_CHUNK_BYTES", 24 * model.descriptor.n_features * 40)
    calls = []
    orig = dbase.ChunkedGradients.chunks

    def counting(self):
        for c in orig(self):
            calls.append(c.d_drij.shape[0])
            yield c

    monkeypatch.setattr(dbase.ChunkedGradients, "chunks", counting)
    chunked = model._evaluate(at, forces=True, stress=True, return_std=True)
    assert len(calls) > 1 and max(calls) <= 40
    monkeypatch.setattr(dbase, "GRADIENT_CHUNK_BYTES", default)
    monkeypatch.setattr(dbase.ChunkedGradients, "__init__",
                        lambda *a, **k: pytest.fail("chunked Jacobian for a small cell"))
    out = model._evaluate(at, forces=True, stress=True, return_std=True)
    for k in ("energy", "forces", "stress", "energy_std", "forces_std", "stress_std"):
        np.testing.assert_allclose(out[k], chunked[k], rtol=1e-12, atol=1e-14)


def test_cli_md_starts_without_drift_or_molecular_rotation(tmp_path):
    """`hybridpot md` removes the centre-of-mass momentum of the drawn velocities (every
    structure) and the angular momentum of a molecule or cluster (no cell), so the printed
    temperature and NVE are about internal motion only."""
    from ase.build import molecule
    from ase.io import read, write

    from hybridpot.cli import main

    rng = np.random.default_rng(0)
    train = []
    for name in ("H2O", "NH3"):
        for k in range(4):
            a = molecule(name)
            a.rattle(0.05 * (1 + k % 3) / 2, seed=int(rng.integers(1 << 30)))
            train.append(emt_label(a, stress=False))
    write(tmp_path / "train.extxyz", train)
    write(tmp_path / "nh3.xyz", molecule("NH3"))
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        f'[data]\ntrain = "{tmp_path / "train.extxyz"}"\n'
        '[descriptor]\ntype = "ACSF"\nr_cut = 4.0\nangular = "none"\n'
        '[baseline]\ntype = "none"\n'
        f'[output]\nmodel = "{tmp_path / "m.hpot"}"\nreport = ""\n'
        f'[md]\nstructure = "{tmp_path / "nh3.xyz"}"\nensemble = "nve"\nsteps = 1\n'
        f'temperature_K = 600\ntimestep_fs = 0.25\ntrajectory = "{tmp_path / "md.traj"}"\n')
    assert main(["fit", "-c", str(cfg), "--quiet"]) == 0
    assert main(["md", "-c", str(cfg), "--quiet"]) == 0
    first = read(tmp_path / "md.traj", 0)
    p = first.get_momenta()
    assert np.abs(p).max() > 1e-3                       # thermalised
    np.testing.assert_allclose(p.sum(axis=0), 0.0, atol=1e-12)
    r = first.positions - first.get_center_of_mass()
    np.testing.assert_allclose(np.cross(r, p).sum(axis=0), 0.0, atol=1e-10)


def test_reports_without_matplotlib_say_so_and_keep_extra_figures(tmp_path, monkeypatch):
    """write_report without matplotlib: no plots, a note in the page, the extra figures are
    still written (one helper serves the three report writers)."""
    from hybridpot import report

    def no_mpl(*a, **k):
        raise ImportError("no matplotlib")

    monkeypatch.setattr(report, "_plots", no_mpl)
    model = _model().fit(_alloys([0, 2, 4, 2, 1]))
    report.write_report(model, _alloys([1, 3], seed=9), tmp_path / "r",
                        extra_figures={"extra.png": b"\x89PNG"})
    assert sorted(p.name for p in (tmp_path / "r").glob("*.png")) == ["extra.png"]
    assert "matplotlib is not installed" in (tmp_path / "r" / "report.html").read_text()


def test_compute_bounded_chunks_only_a_jacobian_above_the_bound():
    """Descriptor.compute_bounded: the whole Jacobian in one pass when it fits in max_bytes,
    a ChunkedGradients otherwise; the same numbers either way."""
    from hybridpot._exceptions import InvalidParameterError
    from hybridpot.descriptors._base import ChunkedGradients, DescriptorGradients

    desc = _model().descriptor
    at = _alloys([3], seed=12)[0]
    X, full = desc.compute(at, gradients=True)
    whole = full.d_drij.nbytes
    X1, d1 = desc.compute_bounded(at, max_bytes=whole)
    assert isinstance(d1, DescriptorGradients)
    np.testing.assert_array_equal(X1, X)
    np.testing.assert_array_equal(d1.d_drij, full.d_drij)
    X2, d2 = desc.compute_bounded(at, max_bytes=whole - 1)
    assert isinstance(d2, ChunkedGradients)
    np.testing.assert_array_equal(X2, X)
    np.testing.assert_array_equal(d2.materialize().d_drij, full.d_drij)
    with pytest.raises(InvalidParameterError, match="max_bytes"):
        desc.compute_bounded(at, max_bytes=0)
