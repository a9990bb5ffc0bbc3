"""The descriptors' last-structure neighbour-list cache (``Descriptor._prepare``)."""

import copy
import pickle

import numpy as np
import pytest

import hybridpot.descriptors._base as base
from hybridpot import InvalidStructureError

from conftest import skewed_two_element_cell
from descriptor_cases import DESCRIPTOR_CASES

SPECIES = ["Cu", "Ni"]


@pytest.fixture
def counted(monkeypatch):
    """Count the neighbour lists the descriptors build."""
    calls = []
    real = base.neighbor_list

    def spy(*args, **kw):
        calls.append(1)
        return real(*args, **kw)

    monkeypatch.setattr(base, "neighbor_list", spy)
    return calls


@pytest.mark.parametrize("name", ["PowerSpectrum", "SNAPBispectrum", "ACSF"])
def test_compute_then_backward_builds_one_list(counted, name):
    d = DESCRIPTOR_CASES[name](SPECIES)
    at = skewed_two_element_cell(seed=2)
    X = d.compute(at)
    g = np.random.default_rng(0).normal(size=X.shape)
    d.backward(at, g)
    d.backward_many(at, g[None])
    assert len(counted) == 1


@pytest.mark.parametrize("name", ["PowerSpectrum", "SNAPBispectrum", "ACSF"])
def test_any_change_of_the_structure_is_seen(counted, name):
    """Moving an atom in place, changing the cell, a species or pbc gives a fresh list and the
    results of a descriptor without the cache."""
    d = DESCRIPTOR_CASES[name](SPECIES)
    at = skewed_two_element_cell(seed=3)
    d.compute(at)
    edits = [lambda a: a.positions.__setitem__((0, 1), a.positions[0, 1] + 0.05),
             lambda a: a.set_cell(a.cell.array * 1.01, scale_atoms=False),
             lambda a: a.numbers.__setitem__(1, 28 if a.numbers[1] == 29 else 29),
             lambda a: a.set_pbc([True, True, False])]
    g = np.random.default_rng(1).normal(size=(len(at), d.n_features))
    for k, edit in enumerate(edits):
        edit(at)                                       # in place, same Atoms object
        fresh = DESCRIPTOR_CASES[name](SPECIES)
        np.testing.assert_array_equal(d.compute(at), fresh.compute(at))
        for a, b in zip(d.backward(at, g), fresh.backward(at, g)):
            np.testing.assert_array_equal(a, b)
        assert len(counted) == 1 + 2 * (k + 1)          # one for d, one for fresh


def test_cutoff_change_is_seen():
    d = DESCRIPTOR_CASES["PowerSpectrum"](SPECIES)
    at = skewed_two_element_cell(seed=4)
    X1 = d.compute(at)
    d.set_params(r_cut=3.0)
    X2 = d.compute(at)
    fresh = DESCRIPTOR_CASES["PowerSpectrum"](SPECIES).set_params(r_cut=3.0)
    np.testing.assert_array_equal(X2, fresh.compute(at))
    assert not np.allclose(X1, X2)


def test_invalid_structure_is_not_cached():
    d = DESCRIPTOR_CASES["ACSF"](SPECIES)
    at = skewed_two_element_cell(seed=5)
    d.compute(at)
    bad = at.copy()
    bad.positions[2] = np.nan
    for _ in range(2):
        with pytest.raises(InvalidStructureError, match="non-finite positions"):
            d.compute(bad)


def test_returned_jacobian_is_writable_and_cache_is_not_pickled():
    d = DESCRIPTOR_CASES["PowerSpectrum"](SPECIES)
    at = skewed_two_element_cell(seed=6)
    X, dX = d.compute(at, gradients=True)
    dX.rij[0, 0] += 1.0                                 # the caller's copy, not the cache
    X2, dX2 = d.compute(at, gradients=True)
    assert dX2.rij[0, 0] == pytest.approx(dX.rij[0, 0] - 1.0)
    assert "_prepared_memo" in d.__dict__
    assert "_prepared_memo" not in pickle.loads(pickle.dumps(d)).__dict__
    np.testing.assert_array_equal(copy.deepcopy(d).compute(at), X)


def test_not_an_atoms_is_a_typed_error():
    d = DESCRIPTOR_CASES["PowerSpectrum"](SPECIES)
    with pytest.raises(InvalidStructureError, match="must be an ase.Atoms. Got list"):
        d.compute([skewed_two_element_cell(seed=1)])


def test_descriptor_from_dict_bad_parameters_are_model_format_errors():
    from hybridpot import ModelFormatError
    from hybridpot.descriptors import descriptor_from_dict

    good = DESCRIPTOR_CASES["PowerSpectrum"](SPECIES).to_dict()
    bad = {"class": good["class"], "params": dict(good["params"], rcut=4.0)}
    with pytest.raises(ModelFormatError, match=r"Cannot rebuild a PowerSpectrum descriptor "
                       r"from parameters .*'rcut'"):
        descriptor_from_dict(bad)
    with pytest.raises(ModelFormatError, match="'params' of a PowerSpectrum descriptor "
                       "description must be a dict"):
        descriptor_from_dict({"class": "PowerSpectrum", "params": [1, 2]})
    stack = DESCRIPTOR_CASES["DescriptorStack"](SPECIES).to_dict()
    assert descriptor_from_dict(stack).to_dict() == stack
