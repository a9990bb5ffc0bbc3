"""Session-10 review: uncertainty on big cells (bounded memory, same numbers), report units,
typed errors of the ensemble's model-file parameters."""

import json

import numpy as np
import pytest

from hybridpot import HybridPotential, ModelFormatError
from hybridpot.descriptors import PowerSpectrum
from hybridpot.regression import (BayesianLinearRegressor, EnsembleRegressor,
                                  NeuralNetworkRegressor, SparseGPRegressor)
from hybridpot.report import write_report, write_uncertainty_report
from hybridpot.uq import calibration_metrics, collect_uncertainty

from conftest import emt_dataset, rattled_bulk

EV_A3_TO_GPA = 160.21766208


def _ps():
    return PowerSpectrum(species=["Cu"], r_cut=4.0, n_max=2, l_max=1)


@pytest.fixture(scope="module")
def train():
    return emt_dataset(6, 0)


@pytest.fixture(scope="module")
def blr(train):
    return HybridPotential(descriptor=_ps(), regressor=BayesianLinearRegressor()).fit(train)


# -- item 3: one stress unit in both reports ---------------------------------------------------
def test_uncertainty_report_writes_stress_in_gpa_like_write_report(blr, train, tmp_path):
    write_report(blr, train, tmp_path / "a")
    write_uncertainty_report(blr, train, tmp_path / "b")
    a = json.loads((tmp_path / "a" / "metrics.json").read_text())
    b = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert a["stress"]["unit"] == b["stress"]["unit"] == "GPa"
    # same errors and σ in the same unit (was eV/Å³ in the uncertainty report: 160x smaller)
    assert b["stress"]["mae"] == pytest.approx(a["stress"]["mae"], rel=1e-10)
    assert b["stress"]["rmse"] == pytest.approx(a["stress"]["rmse"], rel=1e-10)
    assert b["stress"]["mean_std"] == pytest.approx(a["stress"]["mean_std"], rel=1e-10)
    assert b["stress"]["coverage_1sigma"] == pytest.approx(a["stress"]["coverage_1sigma"])
    for kind in ("energy", "forces"):
        assert b[kind]["unit"] == a[kind]["unit"]
        assert b[kind]["mae"] == pytest.approx(a[kind]["mae"], rel=1e-10)
    html = (tmp_path / "b" / "report.html").read_text()
    assert "<td>GPa</td>" in html and "eV/Å³" not in html
    # the NLL is that of the GPa values (shifted by log(160.2) from eV/Å³)
    d = collect_uncertainty(blr, train)["stress"]
    m = calibration_metrics(d["y"] * EV_A3_TO_GPA, d["pred"] * EV_A3_TO_GPA,
                            d["std"] * EV_A3_TO_GPA, d["structure"])
    assert b["stress"]["nll"] == pytest.approx(m["nll"], rel=1e-10)


# -- item 4: typed errors of EnsembleRegressor.from_dict_params --------------------------------
def test_ensemble_from_dict_params_raises_model_format_error():
    with pytest.raises(ModelFormatError,
                       match=r"nested 'estimator' of EnsembleRegressor in a model file must be "
                             r"\{'class': one of \[.*'SparseGPRegressor'.*\].*Got "
                             r"\{'class': 'os.system'\} instead"):
        EnsembleRegressor.from_dict_params({"estimator": {"class": "os.system"}})
    with pytest.raises(ModelFormatError, match=r"nested 'estimator'.*Got 3 instead"):
        EnsembleRegressor.from_dict_params({"estimator": 3})
    with pytest.raises(ModelFormatError, match=r"nested 'estimator'.*'params': 5"):
        EnsembleRegressor.from_dict_params(
            {"estimator": {"class": "SparseGPRegressor", "params": 5}})
    with pytest.raises(ModelFormatError,
                       match=r"'params' of EnsembleRegressor in a model file may only hold "
                             r"'estimator', 'n_models' and 'random_state'. Got unknown "
                             r"\['n_model'\] instead"):
        EnsembleRegressor.from_dict_params({"n_model": 3})
    with pytest.raises(ModelFormatError, match=r"must be a dict of its hyperparameters. Got "
                                               r"list instead"):
        EnsembleRegressor.from_dict_params([1, 2])
    reg = EnsembleRegressor.from_dict_params(
        EnsembleRegressor(estimator=SparseGPRegressor(n_sparse=7), n_models=2,
                          random_state=3).to_dict()["params"])
    assert reg.n_models == 2 and reg.random_state == 3 and reg.estimator.n_sparse == 7


# -- item 1: EnsembleRegressor σ without the per-pair Jacobian ---------------------------------
def _skewed_cell(reps=(2, 2, 2), seed=3):
    at = rattled_bulk(reps=reps, stdev=0.06, seed=seed)
    at.set_cell(at.cell.array @ (np.eye(3) + np.array([[0, .05, .02], [0, 0, .04], [0, 0, 0]])),
                scale_atoms=True)
    return at


@pytest.fixture(scope="module")
def nn_ensemble(train):
    nn = NeuralNetworkRegressor(hidden_layer_sizes=(5,), max_iter=15, n_models=1)
    reg = EnsembleRegressor(estimator=nn, n_models=3, random_state=0)
    with pytest.warns(Warning, match="without converging"):
        return HybridPotential(descriptor=_ps(), regressor=reg).fit(train)


def test_ensemble_spread_sigma_takes_the_adjoint_without_jacobian(nn_ensemble, monkeypatch):
    model, reg = nn_ensemble, nn_ensemble.regressor_
    assert reg._spread_std and reg._adjoint_std
    at = _skewed_cell()
    X, dX = model.descriptor.compute(at, gradients=True)
    z = np.zeros(len(at), dtype=np.int64)
    # the former path: predict_batch on the whole per-pair Jacobian
    ref = reg.predict_batch(model._unlabelled_batch(at, X, z, dX, 0), return_std=True)
    members = [m.predict_batch(model._unlabelled_batch(at, X, z, dX, 0))
               for m in reg.estimators_]
    calls = []
    real = type(model.descriptor).compute

    def spy(self, atoms, gradients=False):
        calls.append(gradients)
        return real(self, atoms, gradients=gradients)

    monkeypatch.setattr(type(model.descriptor), "compute", spy)
    got = model._evaluate(at, forces=True, stress=True, return_std=True)
    assert calls and not any(calls)          # no Jacobian built
    np.testing.assert_allclose(got["forces_std"], ref["forces_std"], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(got["stress_std"], ref["stress_std"][0], rtol=1e-12, atol=1e-16)
    assert got["energy_std"] == pytest.approx(ref["energy_std"][0], rel=1e-12)
    np.testing.assert_allclose(got["forces"] - model._baseline(at, forces=True,
                                                              stress=True)["forces"],
                               ref["forces"], rtol=1e-10, atol=1e-12)
    # the committee σ (ddof=1) of the member forces
    fk = np.stack([p["forces"] for p in members])
    np.testing.assert_allclose(got["forces_std"], fk.std(axis=0, ddof=1), rtol=1e-10,
                               atol=1e-14)
    assert np.all(got["forces_std"] > 0)
    # the calculator gives the same, and a recalibration scale applies to it
    at.calc = model.calculator(uncertainty=True)
    np.testing.assert_allclose(at.get_forces(), got["forces"], rtol=1e-12)
    np.testing.assert_allclose(at.calc.results["forces_std"], got["forces_std"], rtol=1e-12)
    # energy-only σ (no gradients needed) is unchanged
    e, s = model.predict([at], return_std=True)
    assert s[0] == pytest.approx(ref["energy_std"][0], rel=1e-12)


# -- item 2: the GP's exact energy prior sum without the full atom-pair matrix ----------------
@pytest.mark.parametrize("kernel,zeta", [("dot", 1), ("dot", 2), ("dot", 3), ("dot", 4),
                                         ("se", 1)])
@pytest.mark.parametrize("n", [1, 7, 300])
def test_kernel_sum_equals_the_all_pairs_sum(kernel, zeta, n):
    from hybridpot.regression._gp import _kernel_sum, _prepared, kernel_matrix

    rng = np.random.default_rng(n + zeta)
    X = rng.normal(size=(n, 12)) + 0.5
    X[0] *= 1e-3                                  # a nearly vanishing descriptor (softening)
    centre, soft = X.mean(axis=0) + 0.1, 0.05
    ref = kernel_matrix(X, X, kernel=kernel, zeta=zeta, length_scale=2.5, centre=centre,
                        softening=soft).sum()
    Y = _prepared(kernel, X, centre, soft)[0]
    for block in (64, 512):                       # several tiles and one
        got = _kernel_sum(Y, kernel == "dot", zeta, 2.5, block=block)
        assert got == pytest.approx(ref, rel=1e-12)


@pytest.mark.parametrize("kernel", ["dot", "se"])
def test_gp_energy_std_equals_the_all_pairs_formula(train, kernel):
    from hybridpot.regression._gp import kernel_matrix

    gp = SparseGPRegressor(kernel=kernel, n_sparse=6, random_state=0)
    model = HybridPotential(descriptor=_ps(), regressor=gp).fit(train)
    reg = model.regressor_
    at = rattled_bulk(reps=(3, 3, 3), stdev=0.1, seed=5)       # 108 atoms
    X = model.descriptor.compute(at)
    z = np.zeros(len(at), dtype=np.int64)
    batch = model._unlabelled_batch(at, X, z, None, 0)
    Er = reg.design_rows(batch, forces=False, stress=False)[0]
    kss = kernel_matrix(reg._kx(X), reg._kx(X), kernel=kernel, zeta=reg._zeta,
                        length_scale=reg.length_scale_ or 1.0, centre=reg._kcentre[0],
                        softening=reg._ksoft[0]).sum()
    var = reg._param_variance(Er) + max(kss - reg._projected_prior(Er)[0], 0.0) / reg.alpha_
    var = var + (len(at) * reg._noise_of("energy")) ** 2
    got = reg.predict_batch(batch, return_std=True)["energy_std"]
    np.testing.assert_allclose(got, np.sqrt(var), rtol=1e-10)
    assert kss - reg._projected_prior(Er)[0] > 1e-6 * kss      # the DTC term is not zero


# -- item 5: the GP-committee ensemble's adjoint rows are assembled in place ---------------------
def test_ensemble_committee_rows_in_place_equal_concatenation(train):
    import tracemalloc

    gp = SparseGPRegressor(n_sparse=6, derivative_variance="committee", n_committee=4)
    desc = PowerSpectrum(species=["Cu"], r_cut=4.0, n_max=4, l_max=4)
    model = HybridPotential(descriptor=desc, regressor=EnsembleRegressor(
        estimator=gp, n_models=3, random_state=0)).fit(train)
    reg = model.regressor_
    at = rattled_bulk(reps=(4, 4, 4), stdev=0.1, seed=2)     # 256 atoms
    X = model.descriptor.compute(at)
    z = np.zeros(len(at), dtype=np.int64)
    def former():      # the former assembly: every member's rows, their copies, concatenated
        parts = [m._committee_cotangents(X, z, energy_var=True) for m in reg.estimators_]
        k = len(parts)
        mean = np.mean([p[1][0] for p in parts], axis=0)
        rows = [mean[None]]
        for p in parts:
            rows += [(p[1][:1] - mean[None]) / np.sqrt(k), p[1][1:] / np.sqrt(k)]
        energies = np.array([p[0].sum() for p in parts])
        return np.concatenate(rows), np.mean([p[2] for p in parts]) + np.mean(
            (energies - energies.mean()) ** 2)

    def traced(fn):
        tracemalloc.start()
        out = fn()
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return out, peak

    (ref, ref_var), old_peak = traced(former)
    (eps, G, var), peak = traced(lambda: reg._committee_cotangents(X, z, energy_var=True))
    assert G.shape == ref.shape == (1 + 3 * 5, len(at), X.shape[1])
    np.testing.assert_array_equal(G, ref)
    assert var == ref_var
    # the result plus about one member's rows (the former assembly held ~3x the result)
    assert peak < 0.75 * old_peak
    np.testing.assert_allclose(eps, np.mean([m.atomic_energy(X, z) for m in reg.estimators_],
                                            axis=0), rtol=1e-12)


# -- item 5: GP DTC force / stress σ without the projected copy of the pair Jacobian ------------
@pytest.mark.parametrize("cell", ["small", "bulk"])
def test_gp_dtc_prior_variances_project_after_summing(cell, monkeypatch):
    import scipy.sparse

    import hybridpot.regression._gp as gpmod
    from conftest import skewed_two_element_cell

    rng = np.random.default_rng(4)
    train = []
    for k in range(4):
        at = skewed_two_element_cell(seed=k, rattle=0.12)
        if k % 2:
            at = at * (2, 1, 1)
        train.append(at)
    from conftest import emt_label
    train = [emt_label(a) for a in train]
    desc = PowerSpectrum(species=["Cu", "Ni"], r_cut=4.0, n_max=3, l_max=2)
    model = HybridPotential(descriptor=desc, regressor=SparseGPRegressor(
        n_sparse=8, random_state=0)).fit(train)
    reg = model.regressor_
    if cell == "small":              # cell smaller than the cutoff: self-image pairs i == j
        at = skewed_two_element_cell(seed=9, rattle=0.1)
    else:
        at = skewed_two_element_cell(seed=9, rattle=0.1) * (3, 2, 2)
        at.positions += rng.normal(0, 0.05, at.positions.shape)
    X, g = desc.compute(at, gradients=True)
    z = np.array([model.species_.index(s) for s in at.get_chemical_symbols()])
    assert np.any(g.pair_i == g.pair_j) == (cell == "small")
    st, vol, ok = np.zeros(len(at), np.int64), np.array([at.get_volume()]), np.array([True])
    # the former route: the projected pair Jacobian, summed per atom
    Y, spk, D, pi, dot, zeta, inv_l2, inv_n = reg._hessian_coordinates(X, z, g)
    assert dot and np.shares_memory(D, g.d_drij)         # the raw Jacobian, not a copy
    Dp = gpmod._project_pair_jacobian(D, Y, pi, inv_n)
    pj = np.asarray(g.pair_j, dtype=np.int64)
    n = len(at)
    nbr = np.argsort(pj, kind="stable")
    ctr = np.argsort(pi, kind="stable")
    args = (nbr, np.searchsorted(pj[nbr], np.arange(n + 1)), ctr,
            np.searchsorted(pi[ctr], np.arange(n + 1)))
    ref_f = gpmod._force_prior_kernel(
        Y, spk, pi, Dp, args[1].astype(np.int64), args[0], args[3].astype(np.int64), args[2],
        int(np.bincount(pj, minlength=n).max()) + 1, dot, zeta, inv_l2, inv_n,
        False).reshape(-1) / reg.alpha_
    S = scipy.sparse.csr_matrix((np.ones(pi.size), (pi, np.arange(pi.size))), shape=(n, pi.size))
    G = np.stack([S @ (Dp[:, a, :] * g.rij[:, b, None]) for a, b in gpmod.VOIGT], axis=1)
    G /= vol[0]
    ref_s = gpmod._stress_prior_kernel(Y, spk, np.arange(n, dtype=np.int64),
                                       np.array([0, n], dtype=np.int64), G, dot, zeta, inv_l2,
                                       gpmod.STRESS_BLOCK_ATOMS).reshape(-1) / reg.alpha_

    def no_copy(*a):
        raise AssertionError("the projected pair Jacobian was built")

    monkeypatch.setattr(gpmod, "_project_pair_jacobian", no_copy)
    got_f = reg._force_prior_variance(X, z, g)
    got_s = reg._stress_prior_variance(X, z, st, g, vol, ok)
    np.testing.assert_allclose(got_f, ref_f, rtol=1e-12, atol=1e-14 * ref_f.max())
    np.testing.assert_allclose(got_s, ref_s, rtol=1e-12, atol=1e-14 * np.abs(ref_s).max())
    assert ref_f.min() > 0 and ref_s.max() > 0
    out = reg.predict_batch(model._unlabelled_batch(at, X, z, g, 0), return_std=True)
    assert np.all(np.isfinite(out["forces_std"])) and np.all(np.isfinite(out["stress_std"]))


# -- item 5: NeuralNetworkRegressor(n_models >= 2) σ through the adjoint --------------------------
def test_nn_committee_sigma_takes_the_adjoint_without_jacobian(train, monkeypatch):
    nn = NeuralNetworkRegressor(hidden_layer_sizes=(5,), max_iter=15, n_models=3,
                                random_state=0)
    with pytest.warns(Warning, match="without converging"):
        model = HybridPotential(descriptor=_ps(), regressor=nn).fit(train)
    reg = model.regressor_
    assert reg._adjoint_std
    at = _skewed_cell(seed=7)
    X, dX = model.descriptor.compute(at, gradients=True)
    z = np.zeros(len(at), dtype=np.int64)
    ref = reg.predict_batch(model._unlabelled_batch(at, X, z, dX, 0), return_std=True)
    calls = []
    real = type(model.descriptor).compute

    def spy(self, atoms, gradients=False):
        calls.append(gradients)
        return real(self, atoms, gradients=gradients)

    monkeypatch.setattr(type(model.descriptor), "compute", spy)
    got = model._evaluate(at, forces=True, stress=True, return_std=True)
    assert calls and not any(calls)          # no Jacobian built
    base = model._baseline(at, forces=True, stress=True)
    np.testing.assert_allclose(got["forces"] - base["forces"], ref["forces"], rtol=1e-10,
                               atol=1e-12)
    np.testing.assert_allclose(got["forces_std"], ref["forces_std"], rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(got["stress_std"], ref["stress_std"][0], rtol=1e-10,
                               atol=1e-16)
    assert got["energy_std"] == pytest.approx(ref["energy_std"][0], rel=1e-12)
    assert np.all(got["forces_std"] > 0)
    # an ensemble of such networks: the mixture σ of predict_batch, also without a Jacobian
    ens = EnsembleRegressor(estimator=nn, n_models=2, random_state=1)
    monkeypatch.setattr(type(model.descriptor), "compute", real)
    with pytest.warns(Warning, match="without converging"):
        em = HybridPotential(descriptor=_ps(), regressor=ens).fit(train)
    eref = em.regressor_.predict_batch(em._unlabelled_batch(at, X, z, dX, 0), return_std=True)
    monkeypatch.setattr(type(model.descriptor), "compute", spy)
    calls.clear()
    eg = em._evaluate(at, forces=True, stress=True, return_std=True)
    assert calls and not any(calls)
    np.testing.assert_allclose(eg["forces_std"], eref["forces_std"], rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(eg["stress_std"], eref["stress_std"][0], rtol=1e-10,
                               atol=1e-16)
    assert eg["energy_std"] == pytest.approx(eref["energy_std"][0], rel=1e-12)


# -- item 5: projected-variance GP σ on a bounded (chunked) Jacobian ----------------------------
def test_gp_projected_sigma_on_chunked_gradients_equals_full(monkeypatch):
    from conftest import emt_label, skewed_two_element_cell

    from hybridpot.descriptors import _base as dbase

    train = [emt_label(skewed_two_element_cell(seed=k, rattle=0.12) * (2, 1, 1))
             for k in range(4)]
    desc = PowerSpectrum(species=["Cu", "Ni"], r_cut=4.0, n_max=3, l_max=2)
    gp = SparseGPRegressor(n_sparse=8, derivative_variance="projected", random_state=0)
    model = HybridPotential(descriptor=desc, regressor=gp).fit(train)
    reg = model.regressor_
    assert reg._chunked_gradients and not SparseGPRegressor()._chunked_gradients
    at = skewed_two_element_cell(seed=9, rattle=0.1) * (3, 2, 2)
    z = np.array([model.species_.index(s) for s in at.get_chemical_symbols()])
    X, full = desc.compute(at, gradients=True)
    ref = reg.predict_batch(model._unlabelled_batch(at, X, z, full, 0), return_std=True)
    bound = full.d_drij.nbytes // 7
    Xc, ch = desc.compute_bounded(at, max_bytes=bound)
    assert isinstance(ch, dbase.ChunkedGradients) and len(list(ch.chunks())) >= 7
    np.testing.assert_array_equal(Xc, X)

    def no_full(self):
        raise AssertionError("the full Jacobian was built")

    monkeypatch.setattr(dbase.ChunkedGradients, "materialize", no_full)
    got = reg.predict_batch(model._unlabelled_batch(at, X, z, ch, 0), return_std=True)
    for key in ("energy", "forces", "stress", "energy_std", "forces_std", "stress_std"):
        np.testing.assert_allclose(got[key], ref[key], rtol=1e-12, atol=1e-13, err_msg=key)
    # the HybridPotential σ path takes the bounded Jacobian (forced small here)
    monkeypatch.setattr(dbase, "GRADIENT_CHUNK_BYTES", bound)
    out = model._evaluate(at, forces=True, stress=True, return_std=True)
    np.testing.assert_allclose(out["forces_std"], ref["forces_std"], rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(out["stress_std"], ref["stress_std"][0], rtol=1e-12, atol=1e-13)
    assert out["energy_std"] == pytest.approx(ref["energy_std"][0], rel=1e-12)


# -- item 5: Descriptor.backward_many in bounded row groups -------------------------------------
@pytest.mark.parametrize("fused", [True, False])
def test_backward_many_row_groups_equal_one_pass(fused, monkeypatch):
    from conftest import skewed_two_element_cell

    from hybridpot.descriptors import _base as dbase

    desc = PowerSpectrum(species=["Cu", "Ni"], r_cut=4.0, n_max=3, l_max=2)
    at = skewed_two_element_cell(seed=3, rattle=0.1) * (2, 2, 1)
    G = np.random.default_rng(0).normal(size=(21, len(at), desc.n_features))
    if not fused:     # the generic path: the Jacobian once, contracted per group
        monkeypatch.setattr(type(desc), "_backward_many", None)
    one_f, one_e = desc.backward_many(at, G)
    calls = []
    real = dbase._scatter_pair_gradients

    def spy(pi, pj, g, n):
        calls.append(g.shape[0])
        return real(pi, pj, g, n)

    monkeypatch.setattr(dbase, "_scatter_pair_gradients", spy)
    monkeypatch.setattr(dbase, "GRADIENT_CHUNK_BYTES", 1)      # groups of the minimum, 8 rows
    f, e = desc.backward_many(at, G)
    assert calls == [8, 8, 5]
    np.testing.assert_allclose(f, one_f, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(e, one_e, rtol=1e-13, atol=1e-13)
    ref = np.stack([desc.backward(at, G[k])[0] for k in (0, 9, 20)])
    np.testing.assert_allclose(f[[0, 9, 20]], ref, rtol=1e-10, atol=1e-12)
