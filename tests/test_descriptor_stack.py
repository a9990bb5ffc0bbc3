"""DescriptorStack: blocks equal the members', errors, adjoints, serialisation, in a model.

The generic contract (finite-difference Jacobian and strain derivative on a rattled periodic
non-orthogonal cell, adjoint, invariances, smooth cutoff) runs on it through
tests/descriptor_cases.py.
"""

import numpy as np
import pytest
from sklearn.base import clone

from hybridpot import HybridPotential, InvalidParameterError, ModelFormatError
from hybridpot.descriptors import (ACSF, DescriptorStack, PowerSpectrum, SNAPBispectrum,
                                   descriptor_from_dict)
from hybridpot.regression import BayesianLinearRegressor

from conftest import emt_dataset, skewed_two_element_cell

SPECIES = ["Cu", "Ni"]


def _members():
    return [ACSF(species=SPECIES, r_cut=4.5, angular="bp", bp_etas=[0.2], bp_zetas=[1]),
            PowerSpectrum(species=SPECIES, r_cut=3.0, n_max=3, l_max=2),
            SNAPBispectrum(species=SPECIES, twojmax=2, rcutfac=1.9)]


@pytest.fixture
def atoms():
    return skewed_two_element_cell(seed=4, rattle=0.1)


def test_blocks_in_order_equal_scaled_members(atoms):
    members = _members()
    scales = [1.0, 3.0, 0.5]
    stack = DescriptorStack(members, scales=scales)
    assert stack.r_cut == pytest.approx(4.5)
    assert stack.species == SPECIES
    assert stack.n_features == sum(m.n_features for m in members)
    X, dX = stack.compute(atoms, gradients=True)
    slices = stack.block_slices()
    assert [s.stop - s.start for s in slices] == [m.n_features for m in members]
    assert slices[0].start == 0 and slices[-1].stop == stack.n_features
    for m, sl, s in zip(members, slices, scales):
        Xm, dXm = m.compute(atoms, gradients=True)
        np.testing.assert_allclose(X[:, sl], s * Xm, rtol=1e-13, atol=1e-15)
        # the member's pairs are the stack's pairs inside the member cutoff, in order
        inside = np.linalg.norm(dX.rij, axis=1) < m.r_cut
        np.testing.assert_array_equal(dX.pair_i[inside], dXm.pair_i)
        np.testing.assert_array_equal(dX.pair_j[inside], dXm.pair_j)
        np.testing.assert_allclose(dX.d_drij[inside][:, :, sl], s * dXm.d_drij, rtol=1e-13,
                                   atol=1e-15)
        assert not np.any(dX.d_drij[~inside][:, :, sl])
        np.testing.assert_allclose(dX.strain[..., sl], s * dXm.strain, rtol=1e-12,
                                   atol=1e-14)


def test_backward_is_sum_of_member_adjoints(atoms, rng):
    members = _members()
    scales = [2.0, 1.0, 0.25]
    stack = DescriptorStack(members, scales=scales)
    W = rng.normal(size=(len(atoms), stack.n_features))
    dr, deps = stack.backward(atoms, W)
    ref_r, ref_e = np.zeros((len(atoms), 3)), np.zeros((3, 3))
    for m, sl, s in zip(members, stack.block_slices(), scales):
        r, e = m.backward(atoms, s * W[:, sl])
        ref_r += r
        ref_e += e
    np.testing.assert_allclose(dr, ref_r, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(deps, ref_e, rtol=1e-10, atol=1e-12)


def test_backward_many_equals_backward_loop(atoms, rng):
    # PowerSpectrum has a fused batched kernel, ACSF and SNAP do not: both paths are used
    stack = DescriptorStack(_members(), scales=[1.0, 2.0, 1.5])
    G = rng.normal(size=(3, len(atoms), stack.n_features))
    dr, de = stack.backward_many(atoms, G)
    for k in range(3):
        r1, e1 = stack.backward(atoms, G[k])
        np.testing.assert_allclose(dr[k], r1, rtol=1e-9, atol=1e-11)
        np.testing.assert_allclose(de[k], e1, rtol=1e-9, atol=1e-11)


def test_single_member_is_that_member(atoms):
    ps = PowerSpectrum(species=SPECIES, r_cut=3.5, n_max=3, l_max=2)
    stack = DescriptorStack([ps])
    X, dX = stack.compute(atoms, gradients=True)
    Xp, dXp = ps.compute(atoms, gradients=True)
    np.testing.assert_array_equal(X, Xp)
    np.testing.assert_array_equal(dX.d_drij, dXp.d_drij)


def test_nested_stack(atoms):
    a, b, c = _members()
    flat = DescriptorStack([a, b, c])
    nested = DescriptorStack([DescriptorStack([a, b]), c])
    np.testing.assert_allclose(nested.compute(atoms), flat.compute(atoms), rtol=1e-14)
    d = descriptor_from_dict(nested.to_dict())
    np.testing.assert_allclose(d.compute(atoms), flat.compute(atoms), rtol=1e-14)


def test_params_clone_and_dict_round_trip(atoms):
    stack = DescriptorStack(_members(), scales=np.array([1.0, 2.0, 3.0]))
    params = stack.get_params(deep=False)
    assert set(params) == {"descriptors", "scales"}
    c = clone(stack)
    assert c.descriptors[0] is not stack.descriptors[0]
    np.testing.assert_allclose(c.compute(atoms), stack.compute(atoms))
    c.set_params(scales=[1.0, 1.0, 1.0])
    assert not np.allclose(c.compute(atoms), stack.compute(atoms))
    import json

    doc = json.loads(json.dumps(stack.to_dict()))
    assert doc["class"] == "DescriptorStack"
    assert [m["class"] for m in doc["params"]["descriptors"]] == [
        "ACSF", "PowerSpectrum", "SNAPBispectrum"]
    back = descriptor_from_dict(doc)
    assert isinstance(back, DescriptorStack)
    np.testing.assert_allclose(back.compute(atoms), stack.compute(atoms), rtol=1e-14)


def test_model_save_load_round_trip(tmp_path):
    train = emt_dataset(4, seed=2)
    test = emt_dataset(2, seed=3)
    desc = DescriptorStack([ACSF(species=["Cu"], r_cut=5.0, angular="bp", bp_etas=[0.1],
                                 bp_zetas=[1]),
                            PowerSpectrum(species=["Cu"], r_cut=4.0, n_max=3, l_max=2)],
                           scales=[0.5, 2.0])
    model = HybridPotential(descriptor=desc, regressor=BayesianLinearRegressor(),
                            weights={"energy": 1.0, "forces": 1.0, "stress": 0.1})
    model.fit(train)
    path = tmp_path / "stack.hpot"
    model.save(path)
    loaded = HybridPotential.load(path)
    assert isinstance(loaded.descriptor, DescriptorStack)
    assert loaded.descriptor.scales == [0.5, 2.0]
    np.testing.assert_allclose(loaded.predict(test), model.predict(test), rtol=1e-12)
    for f1, f2 in zip(loaded.predict_forces(test), model.predict_forces(test)):
        np.testing.assert_allclose(f1, f2, rtol=1e-10, atol=1e-12)
    # HybridPotential's nested parameters reach the stack
    assert "descriptor__scales" in model.get_params(deep=True)


@pytest.mark.parametrize("bad, match", [
    (None, r"'descriptors' parameter of DescriptorStack must be a non-empty list.*Got None"),
    ([], r"'descriptors' parameter of DescriptorStack must be a non-empty list.*Got \[\]"),
    ("PowerSpectrum", r"'descriptors' parameter.*Got 'PowerSpectrum' instead"),
    ([PowerSpectrum(species=["Cu"], r_cut=3.0), "ACSF"],
     r"'descriptors' parameter of DescriptorStack must hold hybridpot descriptors; entry 1 "
     r"is a str"),
])
def test_bad_descriptors_rejected(bad, match):
    with pytest.raises(InvalidParameterError, match=match):
        DescriptorStack(bad).n_features


def test_bare_descriptor_instead_of_list_rejected():
    with pytest.raises(InvalidParameterError, match="must be a non-empty list"):
        DescriptorStack(PowerSpectrum(species=["Cu"], r_cut=3.0)).n_features


@pytest.mark.parametrize("other", [["Ni"], ["Ni", "Cu"], ["Cu", "Ni", "Al"]])
def test_species_must_agree(other):
    stack = DescriptorStack([PowerSpectrum(species=["Cu", "Ni"], r_cut=3.0),
                             ACSF(species=other, r_cut=4.0)])
    with pytest.raises(InvalidParameterError,
                       match=(r"'descriptors' parameter of DescriptorStack must hold descriptors "
                              r"with the same species in the same order; descriptor 0 "
                              r"\(PowerSpectrum\) has \['Cu', 'Ni'\], descriptor 1 \(ACSF\) has "
                              + repr(other).replace("[", r"\[").replace("]", r"\]"))):
        stack.compute(skewed_two_element_cell())


def test_invalid_member_parameter_surfaces():
    stack = DescriptorStack([PowerSpectrum(species=["Cu"], r_cut=-1.0)])
    with pytest.raises(InvalidParameterError, match="'r_cut' parameter of PowerSpectrum"):
        stack.n_features


@pytest.mark.parametrize("bad", [[1.0], [1.0, 0.0], [1.0, -2.0], [1.0, float("nan")],
                                 [1.0, True], "1,1", 2.0])
def test_bad_scales_rejected(bad):
    stack = DescriptorStack([PowerSpectrum(species=["Cu"], r_cut=3.0),
                             ACSF(species=["Cu"], r_cut=4.0)], scales=bad)
    with pytest.raises(InvalidParameterError,
                       match=r"'scales' parameter of DescriptorStack must be None or a sequence "
                             r"of 2 finite floats > 0 \(one per descriptor\)\. Got"):
        stack.n_features


@pytest.mark.parametrize("doc", [
    {"class": "DescriptorStack", "params": {"descriptors": []}},
    {"class": "DescriptorStack", "params": {"descriptors": "PowerSpectrum"}},
    {"class": "DescriptorStack", "params": {}},
])
def test_bad_model_file_entry_rejected(doc):
    with pytest.raises(ModelFormatError, match="DescriptorStack entry needs 'params.descriptors'"):
        descriptor_from_dict(doc)


def test_unknown_member_class_in_file_rejected():
    doc = {"class": "DescriptorStack",
           "params": {"descriptors": [{"class": "Nope", "params": {}}], "scales": None}}
    with pytest.raises(ModelFormatError, match="Unknown descriptor class 'Nope'"):
        descriptor_from_dict(doc)
