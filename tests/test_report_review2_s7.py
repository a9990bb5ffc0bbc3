"""Review 2 (session 7) of hybridpot.report: extra_figures / extra_metrics are checked before
anything is written (a list, an int value or a path as a key failed deep inside, after the
metrics file was written, or wrote outside the folder)."""

import numpy as np
import pytest
from ase.build import bulk

from hybridpot import HybridPotential, InvalidParameterError
from hybridpot.descriptors import PowerSpectrum
from hybridpot.regression import LinearRegressor
from hybridpot.report import write_report

from conftest import emt_label


@pytest.fixture(scope="module")
def fitted():
    rng = np.random.default_rng(0)
    data = []
    for _ in range(3):
        a = bulk("Cu", "fcc", a=3.61, cubic=True)
        a.positions += 0.05 * rng.standard_normal(a.positions.shape)
        data.append(emt_label(a, stress=False))
    desc = PowerSpectrum(species=["Cu"], r_cut=3.5, n_max=2, l_max=1)
    return HybridPotential(descriptor=desc, regressor=LinearRegressor()).fit(data), data


@pytest.mark.parametrize("kw, match", [
    (dict(extra_figures=[b"png"]), r"'extra_figures' argument of write_report must be a dict "
                                   r"of file name to PNG bytes.*Got list instead"),
    (dict(extra_figures={"trace.png": 1}), r"must map file names to PNG bytes. Got int for "
                                           r"'trace.png' instead"),
    (dict(extra_figures={"../escape.png": b"x"}), r"plain file names as keys.*Got "
                                                  r"'\.\./escape\.png' instead"),
    (dict(extra_metrics=[1, 2]), r"'extra_metrics' argument of write_report must be a dict. "
                                 r"Got list instead"),
    (dict(extra_metrics={"a": np.ones(2)}), r"'extra_metrics' argument of write_report must be "
                                            r"JSON-serialisable"),
])
def test_bad_extras_are_typed_errors_and_write_nothing(fitted, tmp_path, kw, match):
    model, data = fitted
    with pytest.raises(InvalidParameterError, match=match):
        write_report(model, data, tmp_path / "rep", **kw)
    assert not (tmp_path / "rep").exists() and not (tmp_path / "escape.png").exists()


def test_good_extras_are_written(fitted, tmp_path):
    model, data = fitted
    out = write_report(model, data, tmp_path / "rep", extra_figures={"x.png": b"\x89PNG"},
                       extra_metrics={"note": "ok", "value": np.float64(1.5)})
    assert (tmp_path / "rep" / "x.png").read_bytes() == b"\x89PNG"
    assert '"note": "ok"' in (tmp_path / "rep" / "metrics.json").read_text()
    assert out.name == "report.html"
