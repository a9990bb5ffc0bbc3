"""hybridpot.uq.selection on a SparseGPRegressor: the selectors condition on the GP's weight
posterior (issue #7 follow-up).

Independent truths: the GP's own predictions (``HybridPotential.predict*``) for the design rows,
its projected (weight-space) predictive variance for ``rows Sigma rows^T``, and the dense
posterior in the whitened weight space (dense ``I + C^T C`` updates formed in the test, tiny
``M``), on two-element (Cu/Al) EMT cells, with and without the additive linear block.
"""

import copy

import numpy as np
import pytest
import scipy.linalg
from ase.build import bulk

from conftest import emt_label
from hybridpot import HybridPotential, InvalidParameterError
from hybridpot.descriptors import ACSF, DescriptorStack, PowerSpectrum
from hybridpot.regression import SparseGPRegressor
from hybridpot.uq.selection import (DOptimalSelector, InformationPerCostSelector,
                                    MaxVarianceSelector, VarianceReductionSelector,
                                    _has_covariance, _single_batch, candidate_rows)


def cell(seed, a=3.7, stdev=0.08):
    """Rattled, sheared 8-atom fcc cell with 3 Al among 5 Cu (periodic, non-orthogonal)."""
    r = np.random.default_rng(seed)
    at = bulk("Cu", "fcc", a=a, cubic=True) * (2, 1, 1)
    sym = np.array(at.get_chemical_symbols())
    sym[r.choice(8, 3, replace=False)] = "Al"
    at.set_chemical_symbols(sym.tolist())
    at.set_cell(at.cell.array @ (np.eye(3) + r.uniform(-0.03, 0.03, (3, 3))), scale_atoms=True)
    at.rattle(stdev, seed=seed)
    return at


def _descriptor(linear):
    ps = PowerSpectrum(species=["Cu", "Al"], r_cut=4.0, n_max=3, l_max=2)
    if not linear:
        return ps, None
    g2 = ACSF(species=["Cu", "Al"], r_cut=4.5, radial_etas=[2.0],
              radial_shifts=[2.0, 3.0, 4.0], angular=None)
    return DescriptorStack([ps, g2]), g2.n_features


@pytest.fixture(scope="module", params=[False, True], ids=["kernel", "kernel+linear"])
def gp(request):
    """SE-kernel sparse GP (12 inducing environments per element) on 4 EMT cells; with the
    ``linear_features`` block of radial G2 functions in the second case."""
    desc, k = _descriptor(request.param)
    reg = SparseGPRegressor(kernel="se", length_scale=2.0, n_sparse=12, linear_features=k,
                            random_state=0)
    train = [emt_label(cell(s), stress=False) for s in range(4)]
    model = HybridPotential(descriptor=desc, regressor=reg,
                            weights={"energy": 1.0, "forces": 1.0, "stress": 0.0}).fit(train)
    assert model.regressor_.inducing_.shape[0] == 24  # sparse: 20 Cu, 12 Al environments
    return model


def _white(model, B):
    """Rows ``B T^{-1}`` in the whitened weight space (``Sigma = T^{-1} T^{-T}`` becomes I;
    forming ``Sigma`` itself would square the condition number of ``T``, up to ~1e9 here)."""
    T = model.regressor_.precision_factor_
    return scipy.linalg.solve_triangular(T, B.T, trans="T").T


def _projected(model):
    """A copy whose force variance is the weight-space part only."""
    m = copy.deepcopy(model)
    m.regressor_.derivative_variance = "projected"
    return m


def test_gp_is_recognised_without_a_dense_covariance(gp):
    reg = gp.regressor_
    assert not hasattr(reg, "sigma_") and _has_covariance(gp)
    n_lin = 0 if reg.linear_features is None else 2 * reg.linear_scale_.shape[1]
    assert reg.coef_.shape == (24 + 2 + n_lin,)


def test_rows_reproduce_the_gp_predictions(gp):
    """rows . coef_ = per-atom ML energy (prediction minus reference energies) and forces."""
    reg = gp.regressor_
    at = cell(10, stdev=0.15)
    A = candidate_rows(gp, at, "both", whiten=False)
    assert A.shape == (1 + 3 * len(at), reg.coef_.size)
    e0 = sum(gp.reference_energies_[s] for s in at.get_chemical_symbols())
    np.testing.assert_allclose(A[0] @ reg.coef_, (gp.predict([at])[0] - e0) / len(at),
                               rtol=1e-10, atol=1e-12)
    f = gp.predict_forces([at])[0]
    np.testing.assert_allclose(A[1:] @ reg.coef_, f.reshape(-1), rtol=1e-9,
                               atol=1e-10 * np.abs(f).max())
    # the same as the regressor's own batch prediction, and kinds stack energy-then-forces
    pred = reg.predict_batch(_single_batch(gp, at, gradients=True))
    np.testing.assert_allclose(A[0] @ reg.coef_ * len(at), pred["energy"][0], rtol=1e-10)
    np.testing.assert_array_equal(candidate_rows(gp, at, "energy", whiten=False), A[:1])
    np.testing.assert_array_equal(candidate_rows(gp, at, "forces", whiten=False), A[1:])
    # whitening divides by the fitted noise of each kind
    W = candidate_rows(gp, at, "both")
    np.testing.assert_allclose(W[0], A[0] / reg.noise_["energy"], rtol=1e-14)
    np.testing.assert_allclose(W[1:], A[1:] / reg.noise_["forces"], rtol=1e-14)


def test_rows_sigma_rows_is_the_weight_space_variance(gp):
    """diag(A Sigma A^T) = the GP's predictive variance without noise minus the DTC term."""
    reg = gp.regressor_
    at = cell(11, stdev=0.15)
    V = _white(gp, candidate_rows(gp, at, "forces", whiten=False))
    var = np.einsum("ij,ij->i", V, V)
    std = _projected(gp).regressor_.predict_batch(
        _single_batch(gp, at, gradients=True), return_std=True,
        include_noise=False)["forces_std"]
    np.testing.assert_allclose(var, std.reshape(-1) ** 2, rtol=1e-6, atol=1e-12 * var.max())
    # the full (DTC) force variance is larger: the DTC term is not in the weight posterior
    _, full = gp.predict_forces([at], return_std=True)
    assert np.all(full[0].reshape(-1) ** 2 - reg.noise_["forces"] ** 2 >= var * (1 - 1e-9))
    # energy per atom: total-energy variance minus its DTC term, over N^2
    v = _white(gp, candidate_rows(gp, at, "energy", whiten=False))[0]
    batch = _single_batch(gp, at, gradients=False)
    pe = reg.predict_batch(batch, return_std=True, include_noise=False)
    Er = reg.design_rows(batch, forces=False, stress=False)[0]
    dtc = reg._dtc_energy_variance(batch.X, batch.species, batch.structure, 1, Er)[0]
    assert dtc > 0
    np.testing.assert_allclose(v @ v, (pe["energy_std"][0] ** 2 - dtc) / len(at) ** 2,
                               rtol=1e-6)


def _copies_pool():
    # two copies of a more strongly rattled cell first, then four distinct cells
    nov = cell(99, stdev=0.18)
    return [nov, nov.copy()] + [cell(20 + s, stdev=0.12) for s in range(4)]


@pytest.mark.parametrize("kind", ["forces", "both"])
def test_d_optimal_conditions_on_earlier_picks(gp, kind):
    """The copies have the two best initial scores, but after the first is picked the second
    is worth less than a distinct cell; gains = one-shot log-det gain (whitened rows)."""
    pool = _copies_pool()
    sel = DOptimalSelector(kind=kind, dedup_threshold=None)
    idx = sel.select(gp, pool, 3)
    np.testing.assert_allclose(sel.scores_[0], sel.scores_[1], rtol=1e-12)
    assert np.all(sel.scores_[2:] < sel.scores_[0])       # unconditioned: both copies first
    assert idx[0] in (0, 1) and 1 - idx[0] not in idx[:2]  # conditioned: not both
    C = [_white(gp, candidate_rows(gp, pool[k], kind)) for k in idx]

    def logdet_gain(rows):
        Cs = np.vstack(rows)
        return 0.5 * np.linalg.slogdet(np.eye(Cs.shape[0]) + Cs @ Cs.T)[1]

    np.testing.assert_allclose(sel.scores_[idx[0]], logdet_gain(C[:1]), rtol=1e-8)
    np.testing.assert_allclose(np.cumsum(sel.gains_), [logdet_gain(C[:k + 1]) for k in range(3)],
                               rtol=1e-8)
    # the copy's conditional gain (whitened precision W = I + C^T C after the first pick) is
    # below that of the second pick
    W = np.eye(C[0].shape[1]) + C[0].T @ C[0]
    copy_gain = 0.5 * np.linalg.slogdet(np.eye(C[0].shape[0])
                                        + C[0] @ np.linalg.solve(W, C[0].T))[1]
    assert copy_gain < sel.gains_[1] < sel.scores_[idx[0]]
    # information per cost (all cells have 8 atoms) picks the same batch
    ipc = InformationPerCostSelector(kind=kind, dedup_threshold=None)
    assert ipc.select(gp, pool, 3).tolist() == idx.tolist()
    np.testing.assert_allclose(ipc.gains_, sel.gains_, rtol=1e-12)


def test_energy_copy_gain_is_the_rank_one_closed_form(gp):
    a = cell(7, stdev=0.12)
    sel = DOptimalSelector(kind="energy", dedup_threshold=None)
    sel.select(gp, [a, a.copy()], 2)
    g1, g2 = sel.gains_
    lam = np.exp(2 * g1) - 1          # b^T Sigma b of the whitened energy row
    c = _white(gp, candidate_rows(gp, a, "energy"))[0]
    np.testing.assert_allclose(lam, c @ c, rtol=1e-8)
    np.testing.assert_allclose(g2, 0.5 * np.log1p(lam / (1 + lam)), rtol=1e-6)


def test_variance_reduction_on_the_gp(gp):
    """Gains = reduction of the summed weight-space force variance of the reference set
    (dense conditioned covariance); in physical units the GP's projected variance."""
    pool = [cell(30 + s, stdev=0.06 + 0.03 * s) for s in range(4)]
    ref = [cell(40, stdev=0.1), cell(41, stdev=0.1)]
    sel = VarianceReductionSelector(kind="both", target_kind="forces", reference=ref,
                                    dedup_threshold=None)
    idx = sel.select(gp, pool, 2)
    P = np.vstack([_white(gp, candidate_rows(gp, a, "forces")) for a in ref])
    M = P.shape[1]

    def summed(W):                  # tr(P W^{-1} P^T): whitened precision W
        return float(np.sum(P * np.linalg.solve(W, P.T).T))

    def condition(W, at):
        C = _white(gp, candidate_rows(gp, at, "both"))
        return W + C.T @ C

    base = summed(np.eye(M))
    first = np.array([base - summed(condition(np.eye(M), a)) for a in pool])
    np.testing.assert_allclose(sel.scores_, first, rtol=1e-7)
    assert idx[0] == int(np.argmax(first)) and np.all(first > 0)
    W1 = condition(np.eye(M), pool[idx[0]])
    W2 = condition(W1, pool[idx[1]])
    np.testing.assert_allclose(sel.gains_, [base - summed(W1), summed(W1) - summed(W2)],
                               rtol=1e-7)
    assert summed(W2) < summed(W1) < base
    # base in eV^2/Å^2: the summed projected force variance the GP itself predicts
    proj = _projected(gp).regressor_
    tot = sum(np.sum(proj.predict_batch(_single_batch(gp, a, gradients=True),
                                        return_std=True, include_noise=False)["forces_std"] ** 2)
              for a in ref)
    np.testing.assert_allclose(gp.regressor_.noise_["forces"] ** 2 * base, tot, rtol=1e-6)


def test_max_variance_keeps_the_full_predictive_variance(gp):
    """Nothing is conditioned by max-variance: GP candidates keep their DTC predictive σ."""
    pool = [cell(50 + s, stdev=0.05 + 0.04 * s) for s in range(3)]
    sel = MaxVarianceSelector(kind="forces")
    sel.select(gp, pool, 1)
    _, std = gp.predict_forces(pool, return_std=True)
    np.testing.assert_allclose(sel.scores_, [np.mean(s ** 2) for s in std], rtol=1e-10)


def test_committee_uncertainty_disables_conditioning(gp):
    m = copy.deepcopy(gp)
    m.uncertainty_ = object()
    assert not _has_covariance(m)
    with pytest.raises(InvalidParameterError, match="VarianceReductionSelector needs a linear "
                                                    "model with a posterior covariance "
                                                    r"\(BayesianLinearRegressor\) or a "
                                                    "SparseGPRegressor"):
        VarianceReductionSelector().select(m, [cell(1)], 1)
