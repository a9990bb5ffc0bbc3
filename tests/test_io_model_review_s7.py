"""Session-7 review: model files.  Saving into a missing folder named a temporary file
('/nonexistent/.hpot-dl2wjmm0'); load errors raised by the class registries or the fitted
state did not name the model file."""

import json
import zipfile

import pytest

from hybridpot import HybridPotential, ModelFormatError
from hybridpot.descriptors import PowerSpectrum
from hybridpot.regression import BayesianLinearRegressor

from conftest import emt_dataset


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    model = HybridPotential(descriptor=PowerSpectrum(species=["Cu"], r_cut=4.0, n_max=2,
                                                     l_max=2),
                            regressor=BayesianLinearRegressor()).fit(emt_dataset(5, seed=2))
    path = tmp_path_factory.mktemp("m") / "m.hpot"
    model.save(path)
    return model, path


def test_save_into_a_missing_folder_names_the_target(saved, tmp_path):
    model, _ = saved
    target = tmp_path / "no" / "such" / "m.hpot"
    with pytest.raises(FileNotFoundError, match=r"Cannot save the model to '.*m.hpot': its "
                                                r"folder '.*such' does not exist"):
        model.save(target)
    with pytest.raises(IsADirectoryError, match=r"it is a folder; give a file name"):
        model.save(tmp_path)
    assert list(tmp_path.iterdir()) == []      # no temporary file left behind


def _rewrite(src, dst, change):
    with zipfile.ZipFile(src) as z:
        doc, arrays = json.loads(z.read("model.json")), z.read("arrays.npz")
    change(doc)
    with zipfile.ZipFile(dst, "w") as z:
        z.writestr("model.json", json.dumps(doc))
        z.writestr("arrays.npz", arrays)
    return dst


@pytest.mark.parametrize("change, message", [
    (lambda d: d["descriptor"].update({"class": "os.system"}),
     r"Unknown descriptor class 'os.system'"),
    (lambda d: d["regressor"].update({"state": {}}), r"Fitted state of BayesianLinearRegressor"),
    (lambda d: d.update({"regressor": ["not", "a", "table"]}),
     r"incomplete or corrupt hybridpot model: AttributeError"),
])
def test_load_errors_name_the_file(saved, tmp_path, change, message):
    _, path = saved
    bad = _rewrite(path, tmp_path / "bad.hpot", change)
    with pytest.raises(ModelFormatError, match=rf"^'{bad}'.*{message}"):
        HybridPotential.load(bad)
