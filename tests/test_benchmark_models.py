"""Every model that benchmarks/mlearn.py knows builds for every element it has settings for.

The W2 benchmark is not part of the suite (it fits the whole mlearn training sets); this
catches a broken model definition (a bad parameter, a stack whose blocks do not fit) without
fitting: every model is built, validated and serialised, and its descriptor is computed on a
small cell of the element.
"""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk

from conftest import ROOT
from hybridpot import HybridPotential

spec = importlib.util.spec_from_file_location("bench_mlearn", ROOT / "benchmarks" / "mlearn.py")
mlearn = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mlearn)

#: per-element settings tables: models outside them are built for every element
LIMITED = {"ps_quadratic_long": mlearn.PS_QUADRATIC_LONG, "ps2b_quadratic": mlearn.PS2B_QUADRATIC,
           "bs_gp": mlearn.BS_GP}
CELLS = {"Ni": ("fcc", 3.52), "Cu": ("fcc", 3.62), "Mo": ("bcc", 3.16), "Si": ("diamond", 5.47)}
CASES = [(el, name) for name in mlearn.MODELS for el in CELLS
         if name not in LIMITED or el in LIMITED[name]]


@pytest.mark.parametrize("element,name", CASES)
def test_model_builds(element, name):
    model = mlearn.build_model(element, name)
    assert isinstance(model, HybridPotential)
    model._validate()
    doc = json.loads(json.dumps(model.descriptor.to_dict()))
    assert doc["class"] == type(model.descriptor).__name__
    xtal, a = CELLS[element]
    atoms = bulk(element, xtal, a=a, cubic=True)
    X = model.descriptor.compute(atoms)
    assert X.shape == (len(atoms), model.descriptor.n_features)
    assert np.isfinite(X).all()


def test_limited_models_refuse_other_elements():
    with pytest.raises(SystemExit, match="bs_gp has settings for"):
        mlearn.build_model("Ni", "bs_gp")


def test_si_example_config_builds_the_benchmark_model(mlearn_dir):
    """examples/mlearn_si_bs_gp.toml is the bs_gp Si model of the benchmark, key for key."""
    from hybridpot.config import build_baseline, build_descriptor, build_regressor, load_config

    cfg = load_config(ROOT / "examples" / "mlearn_si_bs_gp.toml")
    ref = mlearn.build_model("Si", "bs_gp")
    desc = build_descriptor(cfg, ["Si"])
    assert desc.to_dict() == ref.descriptor.to_dict()
    assert build_regressor(cfg).get_params() == ref.regressor.get_params()
    assert build_baseline(cfg).to_dict() == ref.baseline.to_dict()
    assert cfg["fit"]["weights"] == ref.weights
    default = ROOT.parent / "shared" / "data" / "mlearn" / "extxyz"
    if default.is_dir():  # the data beside the project, where the config points
        assert Path(cfg["data"]["train"][0]).resolve() == (default / "Si_train.xyz").resolve()
        assert Path(cfg["data"]["test"][0]).resolve() == (default / "Si_test.xyz").resolve()
