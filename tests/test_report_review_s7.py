"""Session-7 review: write_report / write_uncertainty_report / collect_predictions refuse bad
input with typed errors naming the argument (they raised AttributeError on an unfitted model,
on a single Atom or a string, and wrote an empty report for an empty list)."""

import pytest

from hybridpot import HybridPotential, InvalidParameterError, NotFittedError
from hybridpot.descriptors import PowerSpectrum
from hybridpot.regression import BayesianLinearRegressor
from hybridpot.report import collect_predictions, write_report, write_uncertainty_report

from conftest import emt_dataset

pytest.importorskip("matplotlib")


def _model():
    return HybridPotential(descriptor=PowerSpectrum(species=["Cu"], r_cut=4.0, n_max=2,
                                                    l_max=2),
                           regressor=BayesianLinearRegressor())


@pytest.fixture(scope="module")
def data():
    train = emt_dataset(6, seed=5)
    return _model().fit(train), train


@pytest.mark.parametrize("write", [write_report, write_uncertainty_report])
def test_unfitted_model_and_wrong_model(tmp_path, data, write):
    _, train = data
    with pytest.raises(NotFittedError, match="not fitted yet"):
        write(_model(), train, tmp_path / "r")
    with pytest.raises(InvalidParameterError,
                       match=rf"The 'model' argument of {write.__name__} must be a fitted "
                             r"HybridPotential. Got NoneType instead."):
        write(None, train, tmp_path / "r")
    assert not (tmp_path / "r").exists()    # nothing written for bad input


@pytest.mark.parametrize("write", [write_report, write_uncertainty_report])
def test_empty_or_non_atoms_structures(tmp_path, data, write):
    model, train = data
    with pytest.raises(InvalidParameterError,
                       match=rf"The 'structures' argument of {write.__name__} must not be "
                             r"empty."):
        write(model, [], tmp_path / "r")
    with pytest.raises(InvalidParameterError, match=r"must be a list of ase.Atoms; item 0 is "
                                                    r"a str."):
        write(model, ["train.xyz"], tmp_path / "r")
    with pytest.raises(InvalidParameterError,
                       match=r"The 'structures' argument of collect_predictions must be a "
                             r"list of ase.Atoms. Got Atom instead."):
        collect_predictions(model, train[0][0])   # an ase.Atom, not an Atoms
    assert not (tmp_path / "r").exists()


def test_single_atoms_and_file_as_folder(tmp_path, data):
    model, train = data
    out = write_report(model, train[0], tmp_path / "one")     # one Atoms is one structure
    assert "1 structures" in out.read_text(encoding="utf-8")
    f = tmp_path / "afile"
    f.write_text("x")
    with pytest.raises(InvalidParameterError,
                       match=r"The 'folder' argument of write_report must be a folder; "
                             r".*afile' is a file."):
        write_report(model, train, f)
