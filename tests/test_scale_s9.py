"""Scale review (s9): behaviour that must not depend on memory-saving code paths.

Each test compares a memory-lean path with the straightforward (dense / unchunked) one, and,
where it is robust, bounds the numpy allocations (tracemalloc) relative to the output size.
"""

import tracemalloc

import numpy as np
import pytest

from hybridpot.regression import BayesianLinearRegressor, LinearRegressor
from hybridpot.regression._design import feature_map, quadratic_index


def _numpy_peak(fn):
    """Result of ``fn()`` and the peak of traced (numpy) allocations during it, in bytes."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        out = fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return out, peak


@pytest.mark.parametrize("cls", [LinearRegressor, BayesianLinearRegressor])
@pytest.mark.parametrize("quadratic", [False, True])
def test_atomic_energy_matches_feature_map_and_is_lean(cls, quadratic):
    """Per-atom energies and dE/dX of (q)SNAP-layout models equal the explicit feature-map
    contraction, without per-atom (n, P) / (n, F, F) temporaries (a 10^4-atom qSNAP cell with
    F = 55 took 385 MB for atomic_energy and 518 MB for its gradient, 80-110x the size of X)."""
    rng = np.random.default_rng(0)
    n, F, nsp = 3000, 20, 3
    P = 1 + F + (F * (F + 1) // 2 if quadratic else 0)
    coef = rng.normal(size=(nsp, P))
    reg = cls.from_coef(coef, quadratic=quadratic)
    X = rng.normal(size=(n, F))
    sp = rng.integers(0, nsp - 1, n)      # the last element is absent
    eps_ref = np.einsum("ip,ip->i", feature_map(X, quadratic), coef[sp])
    dE_ref = coef[sp][:, 1:1 + F].copy()
    if quadratic:
        iu, ju = quadratic_index(F)
        for z in range(nsp):
            S = np.zeros((F, F))
            S[iu, ju] = coef[z, 1 + F:]
            S[ju, iu] = coef[z, 1 + F:]
            dE_ref[sp == z] += X[sp == z] @ S
    (eps, dE), peak = _numpy_peak(lambda: reg.atomic_energy_gradient(X, sp))
    np.testing.assert_allclose(eps, eps_ref, rtol=1e-12, atol=1e-10)
    np.testing.assert_allclose(dE, dE_ref, rtol=1e-12, atol=1e-10)
    assert peak < 4 * X.nbytes
    eps2, peak = _numpy_peak(lambda: reg.atomic_energy(X, sp))
    np.testing.assert_allclose(eps2, eps_ref, rtol=1e-12, atol=1e-10)
    assert peak < 3 * X.nbytes


# ---------------------------------------------------------------------------------------------
# Chunked descriptor Jacobians (σ of linear models on big cells)
# ---------------------------------------------------------------------------------------------

from ase.build import bulk  # noqa: E402

from conftest import emt_dataset, skewed_two_element_cell  # noqa: E402
from descriptor_cases import DESCRIPTOR_CASES  # noqa: E402
from hybridpot import (HybridPotential, InvalidParameterError,  # noqa: E402
                       InvalidStructureError)
from hybridpot.baselines import EMT  # noqa: E402
from hybridpot.descriptors._base import ChunkedGradients  # noqa: E402
from hybridpot.regression import _linear  # noqa: E402
from hybridpot.regression._base import StructureBatch  # noqa: E402
from hybridpot.regression._design import pair_rows  # noqa: E402


def _skewed_supercell(seed=0):
    """Rattled, periodic, non-orthogonal two-element cell of 32 atoms (images of small cells)."""
    at = skewed_two_element_cell(seed=seed, rattle=0.1) * (2, 2, 2)
    at.rattle(0.05, seed=seed + 1)
    return at


@pytest.mark.parametrize("name", sorted(DESCRIPTOR_CASES))
def test_chunked_gradients_equal_full_jacobian(name):
    """Chunks of centre ranges (renumbered sub-structures) give exactly the pairs and per-pair
    Jacobian of compute(gradients=True), for every descriptor, also for a cell smaller than the
    cutoff (self images) and a slab."""
    desc = DESCRIPTOR_CASES[name](["Cu", "Ni"])
    slab = _skewed_supercell(2)
    slab.pbc = (True, True, False)
    for at in (_skewed_supercell(), skewed_two_element_cell(seed=3), slab):
        _, full = desc.compute(at, gradients=True)
        per_pair = 24 * desc.n_features
        ch = desc.compute_chunked_gradients(at, max_bytes=7 * per_pair)
        assert isinstance(ch, ChunkedGradients)
        pieces = list(ch.chunks())
        assert len(pieces) > 1
        assert all(p.d_drij.shape[0] <= 7 or np.unique(p.pair_i).size == 1 for p in pieces)
        for attr in ("pair_i", "pair_j", "rij", "d_drij"):
            np.testing.assert_array_equal(
                np.concatenate([getattr(p, attr) for p in pieces]), getattr(full, attr))
        assert ch.n_atoms == full.n_atoms and ch.n_features == full.n_features
        # anything else is the materialised full Jacobian
        np.testing.assert_array_equal(ch.d_drij, full.d_drij)
        np.testing.assert_array_equal(ch.strain, full.strain)


def test_chunked_gradients_bad_max_bytes():
    desc = DESCRIPTOR_CASES["PowerSpectrum"](["Cu"])
    with pytest.raises(InvalidParameterError, match="max_bytes"):
        desc.compute_chunked_gradients(bulk("Cu", cubic=True), max_bytes=0)


def _batch_of(at, desc, species, grads):
    n = len(at)
    return StructureBatch(
        X=desc.compute(at), species=species, structure=np.zeros(n, dtype=np.int64),
        gradients=grads, volume=np.array([at.get_volume()]), energy=np.full(1, np.nan),
        forces=np.full((n, 3), np.nan), stress=np.full((1, 6), np.nan), weights={},
        group=np.zeros(1, dtype=np.int64), index=np.zeros(1, dtype=np.int64))


@pytest.mark.parametrize("quadratic", [False, True])
def test_pair_rows_of_chunked_gradients_equal_unchunked(quadratic):
    desc = DESCRIPTOR_CASES["SNAPBispectrum"](["Cu", "Ni"])
    at = _skewed_supercell()
    sp = (at.numbers == 28).astype(np.int64)
    _, full = desc.compute(at, gradients=True)
    ch = desc.compute_chunked_gradients(at, max_bytes=24 * desc.n_features * 50)
    assert len(list(ch.chunks())) > 1
    F1, S1 = pair_rows(_batch_of(at, desc, sp, full), 2, quadratic)
    F2, S2 = pair_rows(_batch_of(at, desc, sp, ch), 2, quadratic)
    np.testing.assert_allclose(F2, F1, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(S2, S1, rtol=1e-12, atol=1e-14)


@pytest.fixture(scope="module")
def blr_model():
    from hybridpot.descriptors import PowerSpectrum
    from hybridpot.regression import BayesianLinearRegressor

    return HybridPotential(
        descriptor=PowerSpectrum(species=["Cu"], r_cut=4.0, n_max=3, l_max=2),
        regressor=BayesianLinearRegressor(), baseline=EMT()).fit(emt_dataset(6, 0))


def test_blr_sigma_on_chunked_gradients_equals_full(blr_model, monkeypatch):
    """HybridPotential's σ path reduces the Jacobian chunk by chunk (and the variance by row
    blocks): same energies, forces, stresses and σ as predict_batch on the full Jacobian.  A
    10976-atom PowerSpectrum(F=180) cell held 2.4 GB of per-pair Jacobian for σ before."""
    from hybridpot.descriptors import _base as dbase

    at = bulk("Cu", "fcc", a=3.6, cubic=True) * (3, 3, 3)
    at.rattle(0.05, seed=4)
    at.set_cell(at.cell.array @ (np.eye(3) + [[0, 0.05, 0], [0, 0, 0.03], [0, 0, 0]]),
                scale_atoms=True)
    m = blr_model
    reg = m.regressor_
    X, full = m.descriptor.compute(at, gradients=True)
    batch = m._unlabelled_batch(at, X, np.zeros(len(at), dtype=np.int64), full, 0)
    ref = reg.predict_batch(batch, return_std=True)
    monkeypatch.setattr(dbase, "GRADIENT_CHUNK_BYTES", 24 * m.descriptor.n_features * 300)
    monkeypatch.setattr(_linear, "CHUNK_BYTES", 8 * 20 * reg.coef_.size)   # 20-row blocks
    calls = []
    orig = dbase.ChunkedGradients.chunks

    def counting(self):
        for c in orig(self):
            calls.append(c.d_drij.shape[0])
            yield c

    monkeypatch.setattr(dbase.ChunkedGradients, "chunks", counting)
    monkeypatch.setattr(dbase.ChunkedGradients, "materialize", None)   # never the full array
    out = m._evaluate(at, forces=True, stress=True, return_std=True)
    assert len(calls) > 5 and max(calls) <= 300
    base = m._baseline(at)
    np.testing.assert_allclose(out["forces"] - base["forces"], ref["forces"], atol=1e-10)
    np.testing.assert_allclose(out["stress"] - base["stress"], ref["stress"][0], atol=1e-12)
    np.testing.assert_allclose(out["forces_std"], ref["forces_std"], rtol=1e-9)
    np.testing.assert_allclose(out["stress_std"], ref["stress_std"][0], rtol=1e-9)
    assert out["energy_std"] == pytest.approx(ref["energy_std"][0], rel=1e-12)
    # the σ-free path (adjoint) gives the same mean
    plain = m._evaluate(at, forces=True, stress=True)
    np.testing.assert_allclose(out["forces"], plain["forces"], atol=1e-10)
    np.testing.assert_allclose(out["stress"], plain["stress"], atol=1e-12)
    assert out["energy"] == pytest.approx(plain["energy"], rel=1e-13)


# ---------------------------------------------------------------------------------------------
# Per-structure overhead of many tiny structures
# ---------------------------------------------------------------------------------------------

def test_descriptor_validates_a_structure_once(monkeypatch):
    """compute() checks the structure once (the neighbour list reuses the checked arrays):
    the second check_atoms was ~15 % of the cost of a two-atom cell."""
    import hybridpot.descriptors._base as dbase
    import hybridpot.neighbors as nbmod
    from ase import Atoms

    calls = []
    for mod in (dbase, nbmod):
        real = mod.check_atoms
        monkeypatch.setattr(mod, "check_atoms",
                            lambda *a, _real=real, **k: calls.append(1) or _real(*a, **k))
    desc = DESCRIPTOR_CASES["PowerSpectrum"](["Cu"])
    dimer = Atoms("Cu2", positions=[[0, 0, 0], [0, 0, 2.3]], cell=[9, 9, 9], pbc=True)
    X, g = desc.compute(dimer, gradients=True)
    assert len(calls) == 1
    ref = nbmod.neighbor_list(dimer, desc.r_cut)
    np.testing.assert_array_equal(g.pair_j, ref.j)
    # bad structures are still rejected with the typed error, naming the argument
    dimer.positions[1] = dimer.positions[0] + 0.01
    with pytest.raises(InvalidStructureError,
                       match=r"'atoms' argument of PowerSpectrum has atoms 0 and 1 only "
                             r"0\.01732 Å apart \(minimum allowed 0\.1 Å\)"):
        desc.compute(dimer)


def test_bin_layout_matches_reference(monkeypatch):
    """_bin_layout's bin-count cap (Python ints) equals the former numpy argmax loop."""
    import math

    import hybridpot.neighbors as nbmod

    monkeypatch.setattr(nbmod, "_MAX_BINS_PER_ATOM", 2)

    from hybridpot.neighbors import _bin_layout

    rng = np.random.default_rng(5)
    for _ in range(200):
        n = int(rng.integers(1, 50))
        pbc = rng.random(3) < 0.6
        frac = rng.random((n, 3)) * np.where(pbc, 1.0, rng.uniform(0.1, 30.0, 3))
        heights = rng.uniform(2.0, 200.0, 3)
        r_cut = float(rng.uniform(2.0, 8.0))
        nb, m, lo, span = _bin_layout(n, frac, pbc, heights, r_cut)
        # reference: the same first step, then the numpy loop
        length = np.where(pbc, heights, (frac.max(0) - frac.min(0)) * heights)
        ref = np.maximum(np.floor(np.minimum(length / (r_cut / 2), 1e9)), 1.0).astype(np.int64)
        while math.prod(int(x) for x in ref) > max(1, 2 * n):
            k = int(np.argmax(ref))
            ref[k] = max(1, int(ref[k] * 0.8))
        np.testing.assert_array_equal(nb, ref)
        assert math.prod(int(x) for x in nb) <= max(1, 2 * n)


# ---------------------------------------------------------------------------------------------
# Training batches: one batch's Jacobian alive at a time
# ---------------------------------------------------------------------------------------------

def test_linear_fit_holds_one_batch_at_a_time():
    """The linear regressors drop a batch before the source builds the next one (the loop
    variable kept it alive: two chunks' Jacobians at the peak; mlearn Ni, PowerSpectrum F=147,
    chunk_size=16: fit peak 774 -> 518 MB with the batch assembly below)."""
    import weakref

    from hybridpot.regression import BayesianLinearRegressor
    from hybridpot.regression._base import BatchSource

    m = HybridPotential(descriptor=DESCRIPTOR_CASES["PowerSpectrum"](["Cu"]),
                        regressor=BayesianLinearRegressor(), chunk_size=2)
    data = emt_dataset(8, 1)
    prep = m._prepare(data, m._validate())
    m.reference_energies_ = {"Cu": 0.0}
    src = m._batch_source(prep)
    alive = []

    def factory():
        for b in src:
            alive.append(sum(r() is not None for r in refs))
            refs.append(weakref.ref(b))
            yield b

    refs = []
    reg = BayesianLinearRegressor().fit(BatchSource(
        factory, n_species=1, n_features=m.descriptor.n_features, species=("Cu",)))
    assert len(alive) == 4 and max(alive) == 0
    ref = BayesianLinearRegressor().fit(list(src))   # same rows from a plain list
    np.testing.assert_allclose(reg.coef_, ref.coef_, rtol=1e-10, atol=1e-12)


def test_training_batch_jacobian_is_the_concatenation():
    from hybridpot.regression import BayesianLinearRegressor

    m = HybridPotential(descriptor=DESCRIPTOR_CASES["SNAPBispectrum"](["Cu", "Ni"]),
                        regressor=BayesianLinearRegressor())
    data = [emt_label_any(skewed_two_element_cell(seed=s)) for s in range(3)]
    prep = m._prepare(data, m._validate())
    m.reference_energies_ = {"Cu": 0.0, "Ni": 0.0}
    b = m._batch(prep, [0, 1, 2], True)
    parts = [m.descriptor.compute(a, gradients=True)[1] for a in data]
    np.testing.assert_array_equal(b.gradients.d_drij, np.concatenate([p.d_drij for p in parts]))
    off = np.cumsum([0] + [len(a) for a in data])[:-1]
    np.testing.assert_array_equal(b.gradients.pair_j,
                                  np.concatenate([p.pair_j + o for p, o in zip(parts, off)]))


def emt_label_any(atoms):
    from conftest import emt_label

    return emt_label(atoms)


def test_big_training_structure_uses_chunked_jacobian(monkeypatch):
    """A training structure whose Jacobian exceeds GRADIENT_CHUNK_BYTES is a batch of its own
    with a ChunkedGradients (linear models): same coefficients as the one-array path.  Two
    4000-atom EMT Cu cells, PowerSpectrum F=180: fit peak 477 -> 134 MB."""
    from hybridpot.descriptors import _base as dbase
    from hybridpot.regression import BayesianLinearRegressor, SparseGPRegressor

    small = emt_dataset(3, 2)
    big = bulk("Cu", "fcc", a=3.62, cubic=True) * (3, 3, 3)
    big.rattle(0.08, seed=9)
    data = [small[0], emt_label_any(big), small[1], small[2]]

    def fitted(chunk_bytes):
        monkeypatch.setattr(dbase, "GRADIENT_CHUNK_BYTES", chunk_bytes)
        return HybridPotential(descriptor=DESCRIPTOR_CASES["PowerSpectrum"](["Cu"]),
                               regressor=BayesianLinearRegressor(), chunk_size=2,
                               baseline=EMT()).fit(data)

    F = DESCRIPTOR_CASES["PowerSpectrum"](["Cu"]).n_features
    limit = 64 * 24 * 40 * F        # 108 atoms are big, 32 are not
    m = fitted(limit)
    assert m._chunks(4, data) == [[0], [1], [2, 3]]
    prep = m._prepare(data, m._validate())
    kinds = [type(b.gradients).__name__ for b in m._batch_source(prep)]
    assert kinds == ["DescriptorGradients", "ChunkedGradients", "DescriptorGradients"]
    ref = fitted(1 << 40)
    assert ref._chunks(4, data) == [[0, 1], [2, 3]]
    np.testing.assert_allclose(m.regressor_.coef_, ref.regressor_.coef_, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(m.predict_forces([big])[0], ref.predict_forces([big])[0],
                               atol=1e-9)
    # regressors that need the full Jacobian keep the plain batches
    gp = HybridPotential(descriptor=DESCRIPTOR_CASES["PowerSpectrum"](["Cu"]),
                         regressor=SparseGPRegressor(n_sparse=8, random_state=0), chunk_size=2)
    monkeypatch.setattr(dbase, "GRADIENT_CHUNK_BYTES", limit)
    assert gp._chunks(4, data) == [[0, 1], [2, 3]]


def test_gp_projected_pair_jacobian_matches_numpy():
    """The numba projection of the pair Jacobian onto the unit sphere (GP dot-kernel σ) equals
    the former numpy expression, also on a strided (kernel-feature) view."""
    from hybridpot.regression._gp import _project_pair_jacobian

    rng = np.random.default_rng(3)
    P, F, n = 300, 12, 40
    D_full = rng.normal(size=(P, 3, F + 3))
    D = D_full[..., 3:]                       # a view, as SparseGPRegressor._kx gives
    Y = rng.normal(size=(n, F))
    Y /= np.linalg.norm(Y, axis=1)[:, None]
    pi = np.sort(rng.integers(0, n, P))
    inv_n = rng.uniform(0.0, 2.0, n)
    inv_n[3] = 0.0
    yc = Y[pi]
    ref = (D - np.matmul(D, yc[:, :, None]) * yc[:, None, :]) * inv_n[pi][:, None, None]
    before = D_full.copy()
    out = _project_pair_jacobian(D, Y, pi, inv_n)
    np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(D_full, before)    # input untouched


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_nn_committee_sigma_on_chunked_gradients_equals_full(monkeypatch):
    """NeuralNetworkRegressor(n_models>1) σ through HybridPotential reduces the Jacobian chunk
    by chunk (it held the whole per-pair Jacobian: 172 KB/atom for PowerSpectrum F=180):
    same forces, stresses and σ as predict_batch on the full Jacobian; the NN fit keeps its
    plain batches."""
    from hybridpot.descriptors import _base as dbase
    from hybridpot.regression import NeuralNetworkRegressor

    m = HybridPotential(
        descriptor=DESCRIPTOR_CASES["PowerSpectrum"](["Cu"]),
        regressor=NeuralNetworkRegressor(hidden_layer_sizes=(8,), max_iter=20, n_models=3,
                                         random_state=0)).fit(emt_dataset(4, 3))
    at = bulk("Cu", "fcc", a=3.6, cubic=True) * (3, 3, 3)
    at.rattle(0.05, seed=4)
    X, full = m.descriptor.compute(at, gradients=True)
    ref = m.regressor_.predict_batch(
        m._unlabelled_batch(at, X, np.zeros(len(at), dtype=np.int64), full, 0), return_std=True)
    monkeypatch.setattr(dbase, "GRADIENT_CHUNK_BYTES", 24 * m.descriptor.n_features * 300)
    monkeypatch.setattr(dbase.ChunkedGradients, "materialize", None)   # never the full array
    real = m.descriptor.compute

    def no_full_jacobian(atoms, gradients=False):
        assert not gradients
        return real(atoms)

    monkeypatch.setattr(m.descriptor, "compute", no_full_jacobian)
    out = m._evaluate(at, forces=True, stress=True, return_std=True)
    np.testing.assert_allclose(out["forces"], ref["forces"], atol=1e-10)
    np.testing.assert_allclose(out["forces_std"], ref["forces_std"], rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(out["stress"], ref["stress"][0], atol=1e-12)
    np.testing.assert_allclose(out["stress_std"], ref["stress_std"][0], rtol=1e-8, atol=1e-14)
    assert not m._chunked_jacobian(at * (3, 3, 3))


@pytest.mark.parametrize("name", ["ps", "snap_quadratic"])
def test_posterior_committee_sigma_chunked_equals_one_chunk(name, monkeypatch):
    """The posterior committee (uncertainty_, > FUSED_MAX_MEMBERS members: design-row path)
    reduces the Jacobian chunk by chunk: same forces, stresses and σ as with one chunk; its
    quadratic member gradients need no (K, n_atoms, F, F) gather (checked against the
    per-member linear-regressor gradient)."""
    from test_md_uncertainty_cost import _model

    from hybridpot.descriptors import _base as dbase
    from hybridpot.regression import LinearRegressor
    from hybridpot.uq import _committee

    model = _model(name, n_members=20, seed=1)
    at = skewed_two_element_cell(seed=5) * (2, 2, 2)
    at.rattle(0.03, seed=6)
    ref = model._evaluate(at, forces=True, stress=True, return_std=True)
    monkeypatch.setattr(dbase, "GRADIENT_CHUNK_BYTES", 24 * model.descriptor.n_features * 40)
    monkeypatch.setattr(dbase.ChunkedGradients, "materialize", None)
    out = model._evaluate(at, forces=True, stress=True, return_std=True)
    for k in ("forces", "forces_std", "stress", "stress_std"):
        np.testing.assert_allclose(out[k], ref[k], rtol=1e-9, atol=1e-12)
    com = model.uncertainty_
    X = model.descriptor.compute(at)
    z = np.array([["Cu", "Ni"].index(s) for s in at.get_chemical_symbols()])
    _, dE = _committee.member_gradients(com.modes[:3], X, z, com.quadratic)
    for k in range(3):
        _, g = LinearRegressor.from_coef(com.modes[k], quadratic=com.quadratic) \
            .atomic_energy_gradient(X, z)
        np.testing.assert_allclose(dE[k], g, rtol=1e-12, atol=1e-13)


def test_noise_vector_per_row_matches_group_table(blr_model):
    """BayesianLinearRegressor._noise_vector (per atom / row σ of the noise, called with one
    group per atom for forces) is a table lookup, not a Python loop over atoms."""
    reg = blr_model.regressor_
    names = reg.group_names_
    group = np.random.default_rng(0).integers(0, len(names) + 2, 5000)
    v = reg._noise_vector("forces", group)
    ref = [reg._noise_of("forces", names[g] if g < len(names) else f"group{g}") for g in group]
    np.testing.assert_array_equal(v, ref)
    assert reg._noise_vector("forces", np.zeros(0, dtype=np.int64)).shape == (0,)


# ---------------------------------------------------------------------------------------------
# Neighbour list: sparse grid for far outliers / huge vacuum
# ---------------------------------------------------------------------------------------------

def _nl_cases():
    from ase import Atoms

    rng = np.random.default_rng(11)
    out = [skewed_two_element_cell(seed=1), _skewed_supercell(4)]
    slab = _skewed_supercell(5)
    slab.pbc = (True, False, True)
    out.append(slab)
    cl = bulk("Cu", "fcc", a=3.61, cubic=True) * (3, 3, 3)
    cl.rattle(0.05, seed=3)
    far = cl + Atoms("Cu2", positions=[[4000.0, -50.0, 3.0], [1.0, 3000.0, -2500.0]])
    far.pbc = False
    out.append(far.copy())                   # free cluster with far outliers
    far.set_cell(np.diag([9000.0, 7000.0, 6000.0]))
    far.pbc = True                           # periodic, huge vacuum
    out.append(far)
    tri = _skewed_supercell(6)
    tri.positions += rng.integers(-40, 40, (len(tri), 3)) @ tri.cell.array   # huge shifts
    out.append(tri)
    return out


@pytest.mark.parametrize("k", range(6))
@pytest.mark.parametrize("r_cut", [3.0, 5.5])
def test_sparse_grid_neighbor_list_equals_dense(k, r_cut, monkeypatch):
    """The sparse cell grid (occupied bins, binary search, image shifts computed) gives
    bit-identical lists to the dense tables, on periodic triclinic cells smaller than the cutoff,
    a slab, clusters with far outliers and a huge periodic box, and unwrapped positions."""
    import hybridpot.neighbors as nbmod

    at = _nl_cases()[k]
    monkeypatch.setattr(nbmod, "_SPARSE_FACTOR", 1e300)      # dense (coarsened if needed)
    ref = nbmod.neighbor_list(at, r_cut)
    monkeypatch.setattr(nbmod, "_MAX_BINS_PER_ATOM", 0)     # dense grid capped to one bin:
    monkeypatch.setattr(nbmod, "_SPARSE_FACTOR", 0)         # the sparse grid is used
    monkeypatch.setattr(nbmod, "_bin_sort", None)           # (the dense path would call it)
    nl = nbmod.neighbor_list(at, r_cut)
    for attr in ("i", "j", "S", "D", "d", "offsets"):
        np.testing.assert_array_equal(getattr(nl, attr), getattr(ref, attr))
    assert nl.n_pairs > 0


def test_far_outliers_use_the_sparse_grid(monkeypatch):
    """Two atoms 10^4 Å from a cluster stretched the dense grid (capped at 2 bins per atom)
    until the whole cluster shared a few bins: O(N^2) screening (87808 atoms: 7.0 s, 0.87 s
    now).  Such a structure takes the sparse grid and still matches ASE."""
    from ase import Atoms
    from ase.neighborlist import neighbor_list as ase_nl

    import hybridpot.neighbors as nbmod

    cl = bulk("Cu", "fcc", a=3.61, cubic=True) * (6, 6, 6)
    cl.rattle(0.05, seed=8)
    at = cl + Atoms("Cu2", positions=[[1e4, 0.0, 0.0], [0.0, 1e4, 1e4]])
    at.pbc = False
    monkeypatch.setattr(nbmod, "_bin_sort", None)           # the dense path is not taken
    nl = nbmod.neighbor_list(at, 4.0)
    i, j, S = ase_nl("ijS", at, 4.0)
    key = np.lexsort((S[:, 2], S[:, 1], S[:, 0], j, i))
    np.testing.assert_array_equal(nl.i, i[key])
    np.testing.assert_array_equal(nl.j, j[key])


def _tracking_source(src, alive):
    """A BatchSource replaying ``src`` that records, whenever it yields a batch, how many of
    the batches it yielded before are still alive."""
    import weakref

    from hybridpot.regression._base import BatchSource

    refs = []

    def factory():
        for b in src:
            alive.append(sum(r() is not None for r in refs))
            refs.append(weakref.ref(b))
            yield b
            del b

    return BatchSource(factory, n_species=src.n_species, n_features=src.n_features,
                       species=src.species, group_names=src.group_names)


def test_gp_fit_and_posterior_accumulation_hold_one_batch_at_a_time(monkeypatch):
    """SparseGPRegressor.fit (both passes) and the linear posterior's accumulation drop a
    batch before the next is built (mlearn Ni, SNAP 2J=8, chunk_size=16: GP fit peak 182 ->
    100 MB)."""
    from hybridpot.regression import BayesianLinearRegressor, SparseGPRegressor
    from hybridpot.uq._accumulate import accumulate_factors

    data = emt_dataset(6, 2)
    m = HybridPotential(descriptor=DESCRIPTOR_CASES["PowerSpectrum"](["Cu"]),
                        regressor=BayesianLinearRegressor(), chunk_size=2).fit(data)
    prep = m._prepare(data, m._validate())
    alive = []
    SparseGPRegressor(n_sparse=8, random_state=0).fit(_tracking_source(m._batch_source(prep),
                                                                       alive))
    assert len(alive) == 6 and max(alive) == 0
    alive.clear()
    real = HybridPotential._batch_source
    monkeypatch.setattr(HybridPotential, "_batch_source",
                        lambda self, p: _tracking_source(real(self, p), alive))
    accumulate_factors(m, data)
    assert len(alive) == 3 and max(alive) == 0


def test_gp_fit_builds_each_jacobian_once(monkeypatch):
    """SparseGPRegressor's inducing-point pass reads only the descriptors: through
    HybridPotential it gets batches without the Jacobian (BatchSource.features), so each
    structure's Jacobian is computed once per fit (it was twice); same fit as from a list."""
    from hybridpot.regression import SparseGPRegressor
    from hybridpot.regression._base import BatchSource

    data = emt_dataset(6, 4)
    desc = DESCRIPTOR_CASES["PowerSpectrum"](["Cu"])
    m = HybridPotential(descriptor=desc, regressor=SparseGPRegressor(n_sparse=8,
                                                                       random_state=0),
                        chunk_size=2)
    calls = []
    real = type(desc).compute

    def counting(self, atoms, gradients=False):
        calls.append(bool(gradients))
        return real(self, atoms, gradients=gradients)

    monkeypatch.setattr(type(desc), "compute", counting)
    m.fit(data)
    assert sum(calls) == len(data)
    prep = m._prepare(data, m._validate())
    src = m._batch_source(prep)
    assert all(b.gradients is None for b in src.features())
    ref = SparseGPRegressor(n_sparse=8, random_state=0).fit(list(src))
    plain = SparseGPRegressor(n_sparse=8, random_state=0).fit(BatchSource(
        lambda: iter(src), n_species=1, n_features=desc.n_features, species=("Cu",),
        group_names=src.group_names))
    np.testing.assert_allclose(m.regressor_.coef_, ref.coef_, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(plain.coef_, ref.coef_, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("quadratic", [False, True])
def test_committee_summed_feature_map_equals_per_atom_sum(quadratic):
    """The posterior committee's per-element sums of q(X) (member energies) equal the sum of
    the per-atom feature map, which it no longer builds (n_atoms x P: 127 MB for qSNAP F=55 on
    10^4 atoms)."""
    from hybridpot.uq._committee import _summed_feature_map

    rng = np.random.default_rng(2)
    X = rng.normal(size=(500, 9))
    sp = rng.integers(0, 2, 500)            # element 2 of 3 absent
    q = feature_map(X, quadratic)
    ref = np.zeros((3, q.shape[1]))
    np.add.at(ref, sp, q)
    np.testing.assert_allclose(_summed_feature_map(X, sp, 3, quadratic), ref, rtol=1e-12,
                               atol=1e-10)
