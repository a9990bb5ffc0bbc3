"""Regression tests of the s10 input-boundary fuzzing (hypothesis, not needed here): each test
is one concrete failing input that raised an untyped error, now a typed hybridpot error."""
import io
import json
import zipfile

import numpy as np
import pytest

from hybridpot import ModelFormatError
from hybridpot.baselines import EMT
from hybridpot.descriptors import ACSF
from hybridpot.potential import HybridPotential
from hybridpot.regression import SparseGPRegressor

from conftest import emt_label, rattled_bulk


@pytest.fixture(scope="module")
def gp_model_parts(tmp_path_factory):
    """(model.json dict, arrays dict) of a tiny fitted sparse-GP model."""
    train = [emt_label(rattled_bulk("Cu", reps=(1, 1, 1), seed=s)) for s in range(4)]
    model = HybridPotential(descriptor=ACSF(species=["Cu"], r_cut=4.0),
                            regressor=SparseGPRegressor(n_sparse=4, random_state=0),
                            baseline=EMT()).fit(train)
    path = tmp_path_factory.mktemp("fuzz") / "gp.hpot"
    model.save(path)
    with zipfile.ZipFile(path) as zf:
        doc = json.loads(zf.read("model.json"))
        arrays = dict(np.load(io.BytesIO(zf.read("arrays.npz"))))
    return doc, arrays


def _write(path, doc, arrays):
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("model.json", json.dumps(doc))
        zf.writestr("arrays.npz", buf.getvalue())
    return path


@pytest.mark.parametrize("value", [-1.0, 0.0, -4.9e204, 1e200])
def test_gp_model_bad_noise_is_model_format_error(gp_model_parts, tmp_path, value):
    # -4.9e204 raised OverflowError (1 / v**2) from load; -1 and 0 loaded silently
    doc, arrays = gp_model_parts
    doc = json.loads(json.dumps(doc))
    doc["regressor"]["state"]["noise_"]["stress"] = value
    path = _write(tmp_path / "m.hpot", doc, arrays)
    with pytest.raises(ModelFormatError,
                       match=r"m\.hpot.*'noise_' values must be finite and in \(0, 1e100\)"):
        HybridPotential.load(path)


def test_gp_model_huge_dot_softening_is_model_format_error(gp_model_parts, tmp_path):
    # dot_softening * 1e300 squared raised OverflowError from load
    doc, arrays = gp_model_parts
    arrays = dict(arrays, dot_softening=np.full_like(arrays["dot_softening"], 1e300))
    path = _write(tmp_path / "m.hpot", doc, arrays)
    with pytest.raises(ModelFormatError, match=r"m\.hpot.*corrupt.*OverflowError"):
        HybridPotential.load(path)


@pytest.mark.parametrize("x", [1e300, -1e20, 1e12])
def test_periodic_atom_far_outside_the_cell_is_invalid_structure(x):
    # 1e300 / -1e20: the int64 image shift overflowed (RuntimeWarning 'invalid value
    # encountered in cast', garbage energies without -W error); 1e12: the image was lost in
    # double precision and the energy silently wrong
    from hybridpot import InvalidStructureError
    from hybridpot.neighbors import neighbor_list

    atoms = rattled_bulk("Cu", reps=(1, 1, 1), seed=0)
    pos = atoms.get_positions()
    pos[1, 2] = x
    atoms.set_positions(pos)
    with pytest.raises(InvalidStructureError,
                       match=r"'atoms' argument has atom 1 .* cell lengths from the cell along a "
                             r"periodic direction \(at most 1e\+09 allowed\); wrap"):
        neighbor_list(atoms, 4.0)
    atoms.pbc = False   # without periodicity the far atom is just isolated
    nl = neighbor_list(atoms, 4.0)
    assert not np.any(nl.i == 1) and not np.any(nl.j == 1) and len(nl.i) > 0


def test_periodic_atom_a_million_cells_away_matches_wrapped():
    from hybridpot.neighbors import neighbor_list

    atoms = rattled_bulk("Cu", reps=(1, 1, 1), seed=0)
    pos = atoms.get_positions()
    pos[1] += 1e6 * atoms.cell[0]
    atoms.set_positions(pos)
    wrapped = atoms.copy()
    wrapped.wrap()
    assert np.allclose(np.sort(neighbor_list(atoms, 4.0).d), np.sort(neighbor_list(wrapped, 4.0).d),
                       atol=1e-6)


def test_gp_model_singular_precision_factor_is_model_format_error(gp_model_parts, tmp_path):
    # precision_factor * 0 loaded, then predict(return_std=True) raised scipy's LinAlgError
    doc, arrays = gp_model_parts
    arrays = dict(arrays, precision_factor=np.zeros_like(arrays["precision_factor"]))
    path = _write(tmp_path / "m.hpot", doc, arrays)
    with pytest.raises(ModelFormatError, match=r"m\.hpot.*'precision_factor' is singular"):
        HybridPotential.load(path)


def test_linear_model_huge_noise_is_model_format_error(tmp_path):
    # noise_ = 1e308 loaded; predict(return_std=True) gave inf (overflow) without an error
    from hybridpot.regression import BayesianLinearRegressor
    from hybridpot.descriptors import PowerSpectrum

    train = [emt_label(rattled_bulk("Cu", reps=(1, 1, 1), seed=s)) for s in range(3)]
    model = HybridPotential(descriptor=PowerSpectrum(species=["Cu"], r_cut=4.0, n_max=2, l_max=1),
                            regressor=BayesianLinearRegressor(), baseline=EMT()).fit(train)
    model.save(tmp_path / "ok.hpot")
    with zipfile.ZipFile(tmp_path / "ok.hpot") as zf:
        doc = json.loads(zf.read("model.json"))
        arrays = dict(np.load(io.BytesIO(zf.read("arrays.npz"))))
    for value in (1e308, -1.0, 0.0):
        doc["regressor"]["state"]["noise_"]["energy"] = value
        path = _write(tmp_path / "m.hpot", doc, arrays)
        with pytest.raises(ModelFormatError,
                           match=r"m\.hpot.*'noise_' values must be finite and in \(0, 1e100\)"):
            HybridPotential.load(path)


@pytest.mark.parametrize("r_cut, msg", [
    (4e3, r"must be at most 1000 times the height of the 'atoms' cell along a periodic "
          r"direction .*Got r_cut = 4000 Å, 1\.\d+e\+03 times it"),
    (3.6e16, r"must be at most 1e\+06 Å\. Got 3\.6e\+16 instead"),
    (1e300, r"must be at most 1e\+06 Å\. Got 1e\+300 instead")])
def test_periodic_cutoff_over_a_thousand_cells_is_invalid_parameter(r_cut, msg):
    # PowerSpectrum(r_cut=3.6e16) raised MemoryError (143 PiB offset table), 1e300 an
    # OverflowError 'Python int too large to convert to C long', from fit / predict
    from hybridpot import InvalidParameterError
    from hybridpot.descriptors import PowerSpectrum

    atoms = rattled_bulk("Cu", reps=(1, 1, 1), seed=0)
    with pytest.raises(InvalidParameterError,
                       match=r"'r_cut' parameter of PowerSpectrum " + msg):
        PowerSpectrum(species=["Cu"], r_cut=r_cut, n_max=2, l_max=1).compute(atoms)


@pytest.mark.parametrize("r_cut", [1e300, float("inf")])
def test_huge_cutoff_of_a_molecule_is_invalid_parameter(r_cut):
    # non-periodic: 1e300 overflowed (RuntimeWarning / OverflowError) in the bin layout
    from ase.build import molecule

    from hybridpot import InvalidParameterError
    from hybridpot.neighbors import neighbor_list

    with pytest.raises(InvalidParameterError,
                       match=r"'r_cut' parameter must be at most 1e\+06 Å\. Got (1e\+300|inf)"):
        neighbor_list(molecule("CH4"), r_cut)
    assert neighbor_list(molecule("CH4"), 1e6).i.size == 20   # every pair of the molecule


@pytest.mark.parametrize("noise_init", [4e198, 1e-300])
def test_bayesian_linear_extreme_noise_init_is_invalid_parameter(noise_init):
    # 4e198: OverflowError in 1 / noise_init**2 from fit; 1e-300: ZeroDivisionError
    from hybridpot import InvalidParameterError
    from hybridpot.descriptors import PowerSpectrum
    from hybridpot.regression import BayesianLinearRegressor

    train = [emt_label(rattled_bulk("Cu", reps=(1, 1, 1), seed=s)) for s in range(3)]
    model = HybridPotential(descriptor=PowerSpectrum(species=["Cu"], r_cut=4.0, n_max=2, l_max=1),
                            regressor=BayesianLinearRegressor(noise_init=noise_init))
    with pytest.raises(InvalidParameterError,
                       match=r"'noise_init' parameter of BayesianLinearRegressor must be a float "
                             r"in \[1e-100, 1e100\] or None\. Got"):
        model.fit(train)


def test_check_choice_with_an_array_is_invalid_parameter():
    # BayesianLinearRegressor(noise_levels=np.array([1., 2.])): 'The truth value of an array
    # with more than one element is ambiguous' (ValueError) from check_choice
    from hybridpot import InvalidParameterError
    from hybridpot._validation import check_choice
    from hybridpot.regression import BayesianLinearRegressor

    with pytest.raises(InvalidParameterError,
                       match=r"'noise_levels' parameter must be one of \{'a', 'b'\}\. Got "
                             r"array\(\[1\., 2\.\]\)"):
        check_choice(np.array([1.0, 2.0]), "noise_levels", ("a", "b"))
    with pytest.raises(InvalidParameterError, match=r"'x' parameter must be one of"):
        check_choice({"unhashable": []}, "x", {"a", "b"})
    train = [emt_label(rattled_bulk("Cu", reps=(1, 1, 1), seed=s)) for s in range(3)]
    from hybridpot.descriptors import PowerSpectrum
    model = HybridPotential(descriptor=PowerSpectrum(species=["Cu"], r_cut=4.0, n_max=2, l_max=1),
                            regressor=BayesianLinearRegressor(noise_levels=np.array([1.0, 2.0])))
    with pytest.raises(InvalidParameterError, match=r"'noise_levels' parameter of "
                                                    r"BayesianLinearRegressor must be one of"):
        model.fit(train)


@pytest.mark.parametrize("noise_init", [2.75e-295, 4e198])
def test_ard_extreme_noise_init_is_invalid_parameter(noise_init):
    # 2.75e-295: ZeroDivisionError in 1 / noise_init**2 from fit; 4e198: OverflowError
    from hybridpot import InvalidParameterError
    from hybridpot.descriptors import PowerSpectrum
    from hybridpot.regression import ARDLinearRegressor

    train = [emt_label(rattled_bulk("Cu", reps=(1, 1, 1), seed=s)) for s in range(3)]
    model = HybridPotential(descriptor=PowerSpectrum(species=["Cu"], r_cut=4.0, n_max=2, l_max=1),
                            regressor=ARDLinearRegressor(noise_init=noise_init))
    with pytest.raises(InvalidParameterError,
                       match=r"'noise_init' parameter of ARDLinearRegressor must be a float in "
                             r"\[1e-100, 1e\+100\] or None\. Got"):
        model.fit(train)


@pytest.mark.parametrize("name, r_cut", [("Bispectrum", 2.39e-248), ("PowerSpectrum", 5e-10),
                                         ("ACSF", 0.05)])
def test_descriptor_cutoff_below_a_tenth_of_an_angstrom_is_invalid_parameter(name, r_cut):
    # Bispectrum(r_cut=2.39e-248): OverflowError in r_cut ** -1.5; 5e-10 (metres): no pair at
    # all, silently zero features
    from hybridpot import InvalidParameterError
    from hybridpot.descriptors import DESCRIPTORS

    desc = DESCRIPTORS[name](species=["Cu"], r_cut=r_cut)
    with pytest.raises(InvalidParameterError,
                       match=rf"'r_cut' parameter of {name} must be at least 0\.1 Å \(a cutoff in "
                             rf"Å, e\.g\. 5\.0\)\. Got {r_cut!r}"):
        desc.compute(rattled_bulk("Cu", reps=(1, 1, 1), seed=0))


@pytest.mark.parametrize("kwargs", [dict(A=100.0, rho=1e-300, C=1.0, r_cut=4.0),
                                    dict(A=100.0, rho=0.3, C=1.0, r_cut=1.16e-258)])
def test_buckingham_overflowing_parameters_are_invalid_parameter(kwargs):
    # ZeroDivisionError 'division by zero' from the cutoff shift terms
    from hybridpot import InvalidParameterError
    from hybridpot.baselines import Buckingham

    atoms = rattled_bulk("Cu", reps=(1, 1, 1), seed=0)
    with pytest.raises(InvalidParameterError,
                       match=r"The parameters of Buckingham give no finite energy at r_cut = .* "
                             r"\(ZeroDivisionError\); check 'r_cut' and \['A', 'rho', 'C'\]"):
        Buckingham(**kwargs).compute(atoms)


@pytest.mark.parametrize("rcutfac", [4e265, 0.01])
def test_snap_cutoff_out_of_range_names_rcutfac(rcutfac):
    # 4e265: the neighbour list's error named 'r_cut', which a SNAP user never sets
    from hybridpot import InvalidParameterError
    from hybridpot.descriptors import SNAPBispectrum

    with pytest.raises(InvalidParameterError,
                       match=r"'rcutfac' parameter of SNAPBispectrum must give a cutoff rcutfac "
                             r"\* 2 \* max\(radelem\) in \[0\.1, 1e6\] Å\. Got rcutfac = "):
        SNAPBispectrum(species=["Cu"], twojmax=2, rcutfac=rcutfac).compute(
            rattled_bulk("Cu", reps=(1, 1, 1), seed=0))
