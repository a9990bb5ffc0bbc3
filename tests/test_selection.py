"""hybridpot.uq.selection: novelty is preferred, D-optimal batches are diverse and their gains
are the log-det gain of the posterior precision, cost weighting, deduplication, errors."""

import numpy as np
import pytest
from ase.build import bulk

from conftest import emt_dataset, rattled_bulk
from hybridpot import HybridPotential, InvalidParameterError, NotFittedError
from hybridpot.descriptors import PowerSpectrum
from hybridpot.regression import BayesianLinearRegressor
from hybridpot.uq.selection import (DOptimalSelector, FacilityLocationSelector,
                                    InformationPerCostSelector,
                                    MaxVarianceSelector, RandomSelector, StratifiedSelector,
                                    VarianceReductionSelector, candidate_rows, deduplicate,
                                    environment_distance, make_selector)


# the evidence iteration may stop early on these tiny training sets (2 cells of 8 atoms); the
# posterior is still a valid Gaussian, which is all these tests use
pytestmark = pytest.mark.filterwarnings(
    "ignore:BayesianLinearRegressor. evidence maximisation did not converge")

def _model():
    return HybridPotential(descriptor=PowerSpectrum(species=["Cu"], r_cut=4.5, n_max=4,
                                                    l_max=3),
                           regressor=BayesianLinearRegressor())


@pytest.fixture(scope="module")
def model():
    return _model().fit(emt_dataset(2, 1, reps=(2, 1, 1)))


def _typical(seed):
    at = rattled_bulk(reps=(2, 1, 1), stdev=0.05, seed=seed)
    return at


@pytest.fixture(scope="module")
def novel_pool():
    # five copies of a typical structure and one compressed, strongly rattled one (index 5)
    typical = _typical(3)
    novel = rattled_bulk(a=3.45, reps=(2, 1, 1), stdev=0.25, seed=4)
    return [typical.copy() for _ in range(5)] + [novel]


@pytest.mark.parametrize("selector", [
    MaxVarianceSelector(), MaxVarianceSelector(kind="energy"),
    MaxVarianceSelector(kind="both", reduce="max"), DOptimalSelector(),
    DOptimalSelector(kind="forces"), InformationPerCostSelector(),
    VarianceReductionSelector(reference=[_typical(11), _typical(12)])],
    ids=["maxvar-forces", "maxvar-energy", "maxvar-both-max", "dopt", "dopt-forces", "eig-cost",
         "var-reduction"])
def test_novel_structure_preferred(model, novel_pool, selector):
    idx = selector.select(model, novel_pool, 1)
    assert idx.tolist() == [5]
    assert selector.scores_.shape == (6,)
    assert np.argmax(selector.scores_) == 5


@pytest.mark.parametrize("selector", [MaxVarianceSelector(), DOptimalSelector(),
                                      InformationPerCostSelector(),
                                      VarianceReductionSelector(),
                                      FacilityLocationSelector()])
def test_batch_has_no_duplicates(model, selector):
    distinct = [rattled_bulk(a=3.61 * (1 + 0.02 * k), reps=(2, 1, 1), stdev=0.05 + 0.05 * k,
                             seed=k) for k in range(4)]
    pool = [a.copy() for a in distinct for _ in range(3)]  # 3 copies of each
    idx = selector.select(model, pool, 4)
    assert sorted((idx // 3).tolist()) == [0, 1, 2, 3]
    # a pool of copies only yields one structure
    assert len(selector.select(model, [distinct[0].copy() for _ in range(4)], 3)) == 1


def test_dedup_against_excluded_structures(model):
    pool = [_typical(1), _typical(2)]
    idx = DOptimalSelector().select(model, pool, 2, exclude_structures=[pool[0].copy()])
    assert idx.tolist() == [1]


def test_d_optimal_gains_equal_log_det_gain(model):
    """Sum of the greedy conditional gains = one-shot 1/2 log det(I + B Sigma B^T) of the batch.

    ``B`` stacks the whitened rows of every chosen structure; ``Sigma = T^-1 T^-T`` is applied
    through the precision factor (forming Sigma would square its condition number).
    """
    import scipy.linalg

    pool = [_typical(s) for s in range(5)]
    sel = DOptimalSelector(kind="both", dedup_threshold=None)
    idx = sel.select(model, pool, 3)
    T = model.regressor_.precision_factor_
    B = np.vstack([candidate_rows(model, pool[k], "both") for k in idx])
    V = scipy.linalg.solve_triangular(T, B.T, trans="T")
    K = V.T @ V + np.eye(B.shape[0])
    np.testing.assert_allclose(sel.gains_.sum(), 0.5 * np.linalg.slogdet(K)[1], rtol=1e-8)
    # greedy gains do not increase, and the first is the largest initial score
    assert np.all(np.diff(sel.gains_) <= 1e-9)
    np.testing.assert_allclose(sel.gains_[0], sel.scores_.max(), rtol=1e-12)


def test_variance_reduction_gains(model):
    """Independent truth: Delta = tr(G) - tr((I + C^T C)^-1 G) in the whitened weight space,
    and the reduction of the summed parameter variance of the reference predictions."""
    import scipy.linalg

    pool = [_typical(s) for s in range(4)]
    ref = [_typical(20), _typical(21)]
    sel = VarianceReductionSelector(kind="forces", target_kind="forces", reference=ref,
                                    dedup_threshold=None)
    idx = sel.select(model, pool, 2)
    T = model.regressor_.precision_factor_

    def white(at, kind):
        B = candidate_rows(model, at, kind)
        return scipy.linalg.solve_triangular(T, B.T, trans="T").T

    P = np.vstack([white(a, "forces") for a in ref])
    G = P.T @ P
    C0 = white(pool[idx[0]], "forces")
    W1 = np.eye(G.shape[0]) + C0.T @ C0
    np.testing.assert_allclose(sel.gains_[0], np.trace(G) - np.trace(np.linalg.solve(W1, G)),
                               rtol=1e-6)
    C1 = white(pool[idx[1]], "forces")
    W2 = W1 + C1.T @ C1
    np.testing.assert_allclose(sel.gains_[1], np.trace(np.linalg.solve(W1, G))
                               - np.trace(np.linalg.solve(W2, G)), rtol=1e-6)
    # in physical units: the summed force variance (noise^2 x whitened) of the reference
    _, std = model.predict_forces(ref, return_std=True)
    noise = model.regressor_.noise_["forces"]
    total = sum(np.sum(s ** 2 - noise ** 2) for s in std)
    np.testing.assert_allclose(noise ** 2 * np.trace(G), total, rtol=1e-6)


def test_conditioning_reduces_gain_of_a_copy(model):
    a = _typical(7)
    sel = DOptimalSelector(kind="energy", dedup_threshold=None)
    sel.select(model, [a, a.copy()], 2)
    g1, g2 = sel.gains_
    # rank one: with lambda = b^T Sigma b the copy's gain is 1/2 log(1 + lambda / (1 + lambda))
    lam = np.exp(2 * g1) - 1
    np.testing.assert_allclose(g2, 0.5 * np.log1p(lam / (1 + lam)), rtol=1e-6)
    assert g2 < g1


def test_max_variance_scores_match_predictive_std(model):
    pool = [_typical(s) for s in range(3)]
    sel = MaxVarianceSelector(kind="forces")
    sel.select(model, pool, 1)
    _, std = model.predict_forces(pool, return_std=True)
    noise = model.regressor_.noise_["forces"]
    expect = [np.mean(s ** 2 - noise ** 2) for s in std]
    np.testing.assert_allclose(sel.scores_, expect, rtol=1e-6, atol=1e-12)
    sel = MaxVarianceSelector(kind="energy")
    sel.select(model, pool, 1)
    _, es = model.predict(pool, return_std=True)
    en = model.regressor_.noise_["energy"]
    np.testing.assert_allclose(sel.scores_, (es / 8) ** 2 - en ** 2, rtol=1e-5, atol=1e-14)


def test_information_per_cost_prefers_cheap_cells(model):
    small = bulk("Cu", "fcc", a=3.61, cubic=True)
    small.rattle(0.1, seed=1)
    big = rattled_bulk(reps=(2, 2, 1), stdev=0.1, seed=2)
    pool = [big, small]
    assert InformationPerCostSelector().select(model, pool, 1).tolist() == [1]
    # plain D-optimal (unit cost) takes the bigger, more informative cell
    assert DOptimalSelector().select(model, pool, 1).tolist() == [0]
    # an overriding cost that penalises small cells
    sel = InformationPerCostSelector(cost=lambda at: 1.0 / len(at))
    assert sel.select(model, pool, 1).tolist() == [0]


def test_deduplicate_and_distance(model):
    a, b = _typical(1), _typical(2)
    shifted = a.copy()
    shifted.translate([0.3, 0.1, 0.2])  # same environments
    shifted.wrap()
    kept = deduplicate(model, [a, b, a.copy(), shifted, b.copy()])
    assert kept.tolist() == [0, 1]
    X = model.descriptor.compute(a)
    assert environment_distance(X, X) == 0.0
    assert environment_distance(X, model.descriptor.compute(shifted)) < 1e-9
    assert environment_distance(X, model.descriptor.compute(b)) > 1e-4
    # a threshold above the distance of two rattled cells merges them
    assert deduplicate(model, [a, b], threshold=10.0).tolist() == [0]


def test_random_selector_deterministic():
    pool = [_typical(s) for s in range(6)]
    a = RandomSelector(random_state=3).select(None, pool, 3)
    b = RandomSelector(random_state=3).select(None, pool, 3)
    assert a.tolist() == b.tolist() and len(set(a.tolist())) == 3
    assert make_selector("random", random_state=3).select(None, pool, 3).tolist() == a.tolist()


def test_errors(model, novel_pool):
    with pytest.raises(InvalidParameterError, match="'kind' parameter of MaxVarianceSelector "
                                                    "must be one of"):
        MaxVarianceSelector(kind="stress").select(model, novel_pool, 1)
    with pytest.raises(InvalidParameterError, match="'n' parameter of DOptimalSelector.select "
                                                    r"must be an int in \[1, inf\]. Got 0"):
        DOptimalSelector().select(model, novel_pool, 0)
    with pytest.raises(NotFittedError, match="needs a fitted HybridPotential"):
        DOptimalSelector().select(_model(), novel_pool, 1)
    with pytest.raises(InvalidParameterError, match="'pool' argument of DOptimalSelector"):
        DOptimalSelector().select(model, [1, 2], 1)
    with pytest.raises(InvalidParameterError, match="must return finite floats > 0"):
        InformationPerCostSelector(cost=lambda a: -1.0).select(model, novel_pool, 1)
    with pytest.raises(InvalidParameterError, match="'method' parameter of make_selector"):
        make_selector("greedy")
    with pytest.raises(InvalidParameterError, match="'dedup_threshold' parameter"):
        DOptimalSelector(dedup_threshold=-1.0).select(model, novel_pool, 1)


@pytest.mark.filterwarnings("ignore:NeuralNetworkRegressor. L-BFGS stopped")
def test_ensemble_without_covariance_uses_predictive_sigma(novel_pool):
    """An NN ensemble has no weight covariance: scores come from the committee's sigma."""
    from hybridpot.regression import NeuralNetworkRegressor

    nn = HybridPotential(
        descriptor=PowerSpectrum(species=["Cu"], r_cut=4.5, n_max=4, l_max=3),
        regressor=NeuralNetworkRegressor(hidden_layer_sizes=(8,), n_models=3, max_iter=60,
                                         random_state=0)).fit(emt_dataset(2, 1, reps=(2, 1, 1)))
    mv = MaxVarianceSelector(kind="forces")
    assert mv.select(nn, novel_pool, 2).tolist() == [5, 0]  # copies 1-4 deduplicated
    _, std = nn.predict_forces(novel_pool, return_std=True)
    np.testing.assert_allclose(mv.scores_, [np.mean(s ** 2) for s in std], rtol=1e-10)
    dopt = DOptimalSelector(kind="forces")
    assert dopt.select(nn, novel_pool, 2).tolist() == [5, 0]
    noise = nn.regressor_.noise_["forces"] if hasattr(nn.regressor_, "noise_") else 1.0
    expect = [0.5 * np.sum(np.log1p((s / noise) ** 2)) for s in std]
    np.testing.assert_allclose(dopt.scores_, expect, rtol=1e-10)
    with pytest.raises(InvalidParameterError, match="VarianceReductionSelector needs a linear "
                                                    "model with a posterior covariance"):
        VarianceReductionSelector().select(nn, novel_pool, 1)


def _families():
    compressed = [rattled_bulk(a=3.45, reps=(2, 1, 1), stdev=0.03, seed=k)
                  for k in range(8)]
    expanded = [rattled_bulk(a=3.80, reps=(2, 1, 1), stdev=0.03, seed=50 + k)
                for k in range(4)]
    return compressed + expanded  # family of index k: 0 if k < 8 else 1


def test_stratified_keeps_the_pool_mixture(model):
    pool = _families()
    sel = StratifiedSelector(n_strata=2, random_state=0)
    idx = sel.select(model, pool, 3)
    fam = (idx >= 8).astype(int).tolist()
    assert fam == [0, 1, 0]  # shares 2/3 and 1/3: largest deficit first
    assert sorted(set(sel.strata_[:8])) == [sel.strata_[0]] and \
        set(sel.strata_[8:]) == {sel.strata_[8]} and sel.strata_[0] != sel.strata_[8]
    # within a stratum the inner criterion decides: the most uncertain of the family
    mv = MaxVarianceSelector()
    mv.select(model, pool[:8], 1)
    assert idx[0] == int(np.argmax(mv.scores_))
    mv.select(model, pool[8:], 1)
    assert idx[1] == 8 + int(np.argmax(mv.scores_))
    # labelled structures count toward their stratum's share
    idx2 = StratifiedSelector(n_strata=2).select(model, pool, 1,
                                                 exclude_structures=pool[:2])
    assert idx2.tolist() == [8 + int(np.argmax(mv.scores_))]
    assert make_selector("stratified", n_strata=2).select(model, pool, 3).tolist() == \
        idx.tolist()


def test_stratified_errors(model):
    with pytest.raises(InvalidParameterError, match="'n_strata' parameter of StratifiedSelector "
                                                    r"must be an int in \[1, inf\]. Got 0"):
        StratifiedSelector(n_strata=0).select(model, _families(), 1)
    with pytest.raises(InvalidParameterError, match="'selector' parameter of "
                                                    "StratifiedSelector must be a selector"):
        StratifiedSelector(selector="max").select(model, _families(), 1)
