"""FacilityLocationSelector: force-weighted greedy facility location on structure fingerprints.

Independent truths: the coverage gain of every candidate equals the brute-force decrease of the
weighted facility-location objective written out in numpy; the client weights are the atom
count times the mean absolute predicted force to the given power; on a pool of one large
cluster, one small one and a zero-force outlier, the picks go to the large cluster first, cover
the small one next and never spend a label on the outlier or on a copy of a labelled cell.
"""

import numpy as np
import pytest
from ase.build import bulk

from conftest import emt_label
from hybridpot import HybridPotential, InvalidParameterError
from hybridpot.descriptors import PowerSpectrum
from hybridpot.regression import BayesianLinearRegressor
from hybridpot.uq.selection import (SELECTORS, FacilityLocationSelector, make_selector,
                                    structure_fingerprints)


def _cell(a=3.61, rattle=0.05, seed=0, strain=None):
    at = bulk("Cu", "fcc", a=a, cubic=True) * (2, 1, 1)
    if strain is not None:
        at.set_cell(at.cell @ (np.eye(3) + strain), scale_atoms=True)
    if rattle:
        at.rattle(rattle, seed=seed)
    return at


@pytest.fixture(scope="module")
def model():
    train = [emt_label(_cell(a=3.61 * (1 + 0.01 * k), rattle=0.06, seed=k)) for k in range(6)]
    return HybridPotential(PowerSpectrum(species=["Cu"], r_cut=4.0, n_max=3, l_max=2),
                           BayesianLinearRegressor(), None,
                           {"energy": 1.0, "forces": 1.0, "stress": 0.0}).fit(train)


def _cluster(a, seed, n):
    """``n`` near-copies of one rattled cell (extra 0.003 Å rattles)."""
    base = _cell(a=a, rattle=0.06, seed=seed)
    out = []
    for k in range(n):
        at = base.copy()
        at.rattle(0.003, seed=100 + seed + k)
        out.append(at)
    return out


@pytest.fixture(scope="module")
def pool():
    shear = np.array([[0.0, 0.06, 0.0], [0.06, 0.0, 0.0], [0.0, 0.0, 0.0]])
    outlier = [_cell(rattle=0.0, strain=shear)]                          # zero forces
    return _cluster(3.61, 10, 6) + _cluster(3.66, 30, 2) + outlier   # A, B, outlier


def _objective(D, w, chosen_cols, labelled_cols, n_all):
    """sum_i w_i min_{c in chosen or labelled} d(i, c) (every client at D.max() if none)."""
    cols = list(chosen_cols) + list(labelled_cols)
    if not cols:
        return float(np.sum(w * D.max()))
    return float(np.sum(w * D[:, cols].min(axis=1)))


def _reference(model, pool, labelled, power):
    allst = pool + labelled
    fp = structure_fingerprints(model, allst)
    D = np.linalg.norm(fp[:, None, :] - fp[None, :, :], axis=2)
    f = model.predict_forces(allst)
    w = np.array([len(a) * np.mean(np.abs(fi)) ** power for a, fi in zip(allst, f)])
    return D, w


@pytest.mark.parametrize("n_labelled, power", [(0, 2.0), (2, 2.0), (2, 0.0), (1, 1.0)])
def test_gain_is_the_objective_decrease(model, pool, n_labelled, power):
    labelled = [_cell(rattle=0.05, seed=90 + k) for k in range(n_labelled)]
    sel = FacilityLocationSelector(force_power=power, dedup_threshold=None)
    sel.select(model, pool, 1, exclude_structures=labelled)
    D, w = _reference(model, pool, labelled, power)
    lab_cols = range(len(pool), len(pool) + n_labelled)
    base = _objective(D, w, [], lab_cols, len(pool) + n_labelled)
    ref = [base - _objective(D, w, [c], lab_cols, len(pool) + n_labelled)
           for c in range(len(pool))]
    np.testing.assert_allclose(sel.scores_, ref, rtol=1e-9, atol=1e-12 * max(ref))


def test_picks_large_cluster_then_small_never_the_zero_force_outlier(model, pool):
    sel = FacilityLocationSelector(dedup_threshold=None)
    picks = sel.select(model, pool, 3)
    assert picks[0] < 6                 # a representative of the large cluster first
    assert picks[1] in (6, 7)           # the small cluster is covered next
    assert 8 not in picks.tolist()      # the outlier has zero predicted forces: no weight
    assert sel.scores_[8] < 0.2 * sel.scores_[:8].min()   # the least representative
    # the same batch, picked one at a time with the earlier picks labelled
    one_by_one = []
    for _ in range(3):
        lab = [pool[j] for j in one_by_one]
        rest = [j for j in range(len(pool)) if j not in one_by_one]
        k = sel.select(model, [pool[j] for j in rest], 1, exclude_structures=lab)[0]
        one_by_one.append(rest[k])
    assert one_by_one == picks.tolist()


def test_forces_weight_the_clients(model, pool):
    """Scaling the predicted forces of the small cluster up moves the first pick there."""
    class Scaled:
        def __init__(self, inner, boost):
            self.inner, self.boost = inner, boost

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def predict_forces(self, structures):
            f = self.inner.predict_forces(structures)
            return [fi * (50.0 if any(a is b for b in self.boost) else 1.0)
                    for a, fi in zip(structures, f)]

    sel = FacilityLocationSelector(dedup_threshold=None)
    assert sel.select(model, pool, 1)[0] < 6
    assert sel.select(Scaled(model, pool[6:8]), pool, 1)[0] in (6, 7)


def test_copies_of_labelled_structures_are_skipped(model, pool):
    labelled = [pool[0].copy()]
    picks = FacilityLocationSelector().select(model, pool, 4, exclude_structures=labelled)
    assert 0 not in picks.tolist() and len(picks) == 4


@pytest.mark.parametrize("power", [-1.0, float("nan"), float("inf"), "2"])
def test_bad_force_power_raises(model, pool, power):
    with pytest.raises(InvalidParameterError,
                       match=r"'force_power' parameter of FacilityLocationSelector must be a "
                             r"float in \[0, inf\)"):
        FacilityLocationSelector(force_power=power).select(model, pool, 1)


def test_registered_and_bad_n(model, pool):
    assert SELECTORS["facility_location"] is FacilityLocationSelector
    sel = make_selector("facility_location", force_power=1.0)
    assert isinstance(sel, FacilityLocationSelector) and sel.force_power == 1.0
    with pytest.raises(InvalidParameterError, match=r"'n' parameter"):
        sel.select(model, pool, 0)
