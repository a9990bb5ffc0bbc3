"""check_structure_list: the one list-of-Atoms check of HybridPotential and the selectors."""

import numpy as np
import pytest
from ase.build import bulk

from hybridpot import HybridPotential, InvalidParameterError
from hybridpot._validation import check_structure_list
from hybridpot.descriptors import PowerSpectrum
from hybridpot.regression import BayesianLinearRegressor
from hybridpot.uq.selection import RandomSelector


def test_atoms_and_iterables_become_lists():
    a = bulk("Cu")
    assert check_structure_list(a, "The 'x' argument") == [a]
    assert check_structure_list(iter([a, a]), "The 'x' argument") == [a, a]
    assert check_structure_list([], "The 'x' argument", allow_empty=True) == []


@pytest.mark.parametrize("value, message", [
    (3, r"^The 'x' argument must be a list of ase.Atoms. Got int instead.$"),
    ([bulk("Cu"), "Cu"], r"^The 'x' argument must be a list of ase.Atoms; item 1 is a str.$"),
    ([], r"^The 'x' argument must not be empty.$"),
])
def test_bad_structure_lists(value, message):
    with pytest.raises(InvalidParameterError, match=message):
        check_structure_list(value, "The 'x' argument")


def test_fit_and_select_name_their_argument():
    model = HybridPotential(PowerSpectrum(species=["Cu"], r_cut=3.0, n_max=2, l_max=1),
                            BayesianLinearRegressor())
    with pytest.raises(InvalidParameterError,
                       match=r"The 'structures' argument must be a list of ase.Atoms; item 0 "
                             r"is a ndarray"):
        model.fit([np.zeros(3)])
    with pytest.raises(InvalidParameterError,
                       match=r"The 'pool' argument of RandomSelector.select must be a list of "
                             r"ase.Atoms. Got float instead"):
        RandomSelector(random_state=0).select(None, 1.5, 1)
