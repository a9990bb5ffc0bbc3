"""Tests of the numba cell-list neighbour list against ASE and a brute-force numpy reference."""

import itertools
import math

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.neighborlist import neighbor_list as ase_neighbor_list

from hybridpot import InvalidParameterError, InvalidStructureError
from hybridpot.neighbors import NeighborList, _bin_layout, neighbor_list


# --------------------------------------------------------------------------------------------
# independent references
# --------------------------------------------------------------------------------------------

def reference_pairs(pos, cell, pbc, r_cut):
    """Brute force O(N^2 x images) in plain numpy: set of (i, j, S0, S1, S2) -> D."""
    pos = np.asarray(pos, float)
    cell = np.asarray(cell, float)
    pbc = np.asarray(pbc, bool)
    n = len(pos)
    A = cell[pbc]
    nshift = np.zeros((n, 3), dtype=np.int64)
    ranges = [range(1) for _ in range(3)]
    if pbc.any():
        P = np.linalg.pinv(A)  # (3, p): fractional coordinates in the periodic span
        f = pos @ P
        nshift[:, pbc] = np.floor(f).astype(np.int64)
        heights = 1.0 / np.linalg.norm(P, axis=0)
        for k, h in zip(np.flatnonzero(pbc), heights):
            mk = int(np.ceil(r_cut / h)) + 1
            ranges[k] = range(-mk, mk + 1)
    wrapped = pos - nshift @ cell
    out = {}
    for s in itertools.product(*ranges):
        s = np.array(s)
        Dw = wrapped[None, :, :] - wrapped[:, None, :] + s @ cell
        ii, jj = np.nonzero(np.einsum("ijk,ijk->ij", Dw, Dw) < (r_cut + 1e-6) ** 2)
        for i, j in zip(ii, jj):
            S = s + nshift[i] - nshift[j]
            D = pos[j] + S @ cell - pos[i]
            dist = np.linalg.norm(D)
            if 0.0 < dist < r_cut:
                out[(int(i), int(j), *map(int, S))] = D
    return out


def as_dict(i, j, S, D):
    return {(int(a), int(b), *map(int, s)): v for a, b, s, v in zip(i, j, S, D)}


def ase_pairs(atoms, r_cut):
    i, j, D, S = ase_neighbor_list("ijDS", atoms, r_cut, self_interaction=False)
    return as_dict(i, j, S, D)


def check_contract(nl, atoms, r_cut):
    """Layout, dtypes, ordering and exactness of one NeighborList."""
    n = len(atoms)
    assert isinstance(nl, NeighborList)
    assert nl.n_atoms == n
    P = nl.n_pairs
    for arr, dtype, shape in [(nl.i, np.int64, (P,)), (nl.j, np.int64, (P,)),
                              (nl.S, np.int64, (P, 3)), (nl.D, np.float64, (P, 3)),
                              (nl.d, np.float64, (P,)), (nl.offsets, np.int64, (n + 1,))]:
        assert arr.dtype == dtype
        assert arr.shape == shape
    assert np.all(np.diff(nl.i) >= 0)
    assert nl.offsets[0] == 0 and nl.offsets[-1] == P
    np.testing.assert_array_equal(np.diff(nl.offsets), np.bincount(nl.i, minlength=n))
    for a in range(n):
        assert np.all(nl.i[nl.offsets[a]:nl.offsets[a + 1]] == a)
    # canonical order within i: by j then S
    keys = np.column_stack([nl.i, nl.j, nl.S])
    if P > 1:
        order = np.lexsort(keys.T[::-1])
        np.testing.assert_array_equal(order, np.arange(P))
        assert len(np.unique(keys, axis=0)) == P
    # D from the ORIGINAL positions, |D| in (0, r_cut)
    D_ref = atoms.positions[nl.j] + nl.S @ atoms.cell.array - atoms.positions[nl.i]
    atol = 1e-9 * max(1.0, np.abs(atoms.positions).max() / 1e3)  # rounding of huge coordinates
    np.testing.assert_allclose(nl.D, D_ref, rtol=0, atol=atol)
    np.testing.assert_allclose(nl.d, np.linalg.norm(nl.D, axis=1), rtol=1e-14, atol=0)
    assert np.all(nl.d > 0) and np.all(nl.d < r_cut)
    # S is zero along non-periodic directions
    assert np.all(nl.S[:, ~np.asarray(atoms.pbc)] == 0)


def assert_same_pairs(nl, expected, atol=1e-9):
    got = as_dict(nl.i, nl.j, nl.S, nl.D)
    missing = set(expected) - set(got)
    extra = set(got) - set(expected)
    assert not missing and not extra, (sorted(missing)[:5], sorted(extra)[:5])
    keys = list(expected)
    if keys:
        np.testing.assert_allclose(np.array([got[k] for k in keys]),
                                   np.array([expected[k] for k in keys]), rtol=0, atol=atol)


# --------------------------------------------------------------------------------------------
# random structures
# --------------------------------------------------------------------------------------------

def random_cell(r, scale, skew=0.35):
    cell = scale * (np.eye(3) + skew * r.uniform(-1, 1, (3, 3)))
    if np.linalg.det(cell) < 0:
        cell[0] *= -1
    return cell


def heights(cell):
    inv = np.linalg.inv(cell)
    return 1.0 / np.linalg.norm(inv, axis=0)


def make_case(kind, seed):
    """(atoms, r_cut) for one random test case."""
    r = np.random.default_rng(1000 * seed + sum(map(ord, kind)))
    if kind == "triclinic":
        cell = random_cell(r, r.uniform(5, 9))
        n = int(r.integers(5, 40))
        pos = r.uniform(0, 1, (n, 3)) @ cell
        rc = r.uniform(2.0, 6.0)
        return Atoms(numbers=[29] * n, positions=pos, cell=cell, pbc=True), rc
    if kind == "tiny":
        cell = random_cell(r, r.uniform(1.5, 3.0), skew=0.4)
        n = int(r.integers(1, 4))
        pos = r.uniform(0, 1, (n, 3)) @ cell
        rc = 3.0 * heights(cell).min()
        return Atoms(numbers=[29] * n, positions=pos, cell=cell, pbc=True), rc
    if kind == "partial":
        pbc = [(True, False, False), (False, True, False), (False, False, True),
               (True, True, False), (True, False, True), (False, True, True)][seed % 6]
        cell = random_cell(r, r.uniform(3, 7))
        n = int(r.integers(2, 30))
        frac = r.uniform(0, 1, (n, 3))
        frac[:, ~np.array(pbc)] *= r.uniform(0.2, 3.0)  # non-periodic: any extent
        pos = frac @ cell
        zero = seed % 3
        if zero == 1:
            cell[~np.array(pbc)] = 0.0  # non-periodic vectors zero
        elif zero == 2:
            pos[:, :] += 30.0 * r.normal(size=3)  # atoms far from the (non-periodic) cell
        return Atoms(numbers=[29] * n, positions=pos, cell=cell, pbc=pbc), r.uniform(2, 5)
    if kind == "slab":
        # pbc (T, T, F), non-periodic cell vector zero or not containing the atoms
        cell = random_cell(r, 4.0)
        cell[2] = [0.0, 0.0, 0.0] if seed % 2 == 0 else [0.3, -0.2, 2.0]
        n = 20
        pos = r.uniform(0, 1, (n, 3)) @ np.vstack([cell[:2], [0.0, 0.0, 12.0]])
        pos[:, 2] -= 40.0
        return Atoms(numbers=[29] * n, positions=pos, cell=cell, pbc=(True, True, False)), 4.5
    if kind == "cluster":
        n = int(r.integers(1, 40))
        pos = r.uniform(-6, 6, (n, 3)) + 100.0 * r.normal(size=3)
        cell = np.zeros((3, 3)) if seed % 2 == 0 else random_cell(r, 2.0)
        return Atoms(numbers=[29] * n, positions=pos, cell=cell, pbc=False), r.uniform(2, 6)
    if kind == "outside":
        cell = random_cell(r, r.uniform(3, 6))
        n = int(r.integers(2, 15))
        frac = r.uniform(0, 1, (n, 3)) + r.integers(-50, 50, (n, 3))
        pos = frac @ cell + r.normal(0, 0.01, (n, 3))
        pbc = [True, True, True] if seed % 2 == 0 else [True, False, True]
        return Atoms(numbers=[29] * n, positions=pos, cell=cell, pbc=pbc), r.uniform(3, 8)
    raise ValueError(kind)


CASES = ([("triclinic", s) for s in range(8)] + [("tiny", s) for s in range(8)]
         + [("partial", s) for s in range(12)] + [("slab", s) for s in range(4)]
         + [("cluster", s) for s in range(6)] + [("outside", s) for s in range(6)])


@pytest.mark.parametrize("kind,seed", CASES, ids=[f"{k}-{s}" for k, s in CASES])
def test_matches_ase_and_reference(kind, seed):
    atoms, rc = make_case(kind, seed)
    before = atoms.copy()
    nl = neighbor_list(atoms, rc, min_distance=None)
    assert atoms == before and np.array_equal(atoms.positions, before.positions)
    check_contract(nl, atoms, rc)
    assert_same_pairs(nl, reference_pairs(atoms.positions, atoms.cell.array, atoms.pbc, rc))
    # ASE computes D from wrapped positions: allow its rounding for far-out atoms
    assert_same_pairs(nl, ase_pairs(atoms, rc), atol=1e-8)


def test_tiny_cell_has_self_images():
    atoms = Atoms("Cu", positions=[[0.3, 0.2, 0.1]],
                  cell=[[2.0, 0.0, 0.0], [0.7, 1.9, 0.0], [0.4, 0.3, 2.1]], pbc=True)
    rc = 3.0 * heights(atoms.cell.array).min()
    nl = neighbor_list(atoms, rc)
    check_contract(nl, atoms, rc)
    assert nl.n_pairs > 26
    assert np.all(nl.j == 0) and np.all(np.any(nl.S != 0, axis=1))
    # full list: S and -S both present, with opposite D
    got = as_dict(nl.i, nl.j, nl.S, nl.D)
    for (i, j, *S), D in got.items():
        np.testing.assert_allclose(got[(j, i, *(-np.array(S)))], -D, atol=1e-12)
    assert_same_pairs(nl, ase_pairs(atoms, rc))


def test_random_500_atoms():
    r = np.random.default_rng(7)
    cell = random_cell(r, 17.0, skew=0.25)
    pos = r.uniform(0, 1, (500, 3)) @ cell
    atoms = Atoms(numbers=[29] * 500, positions=pos, cell=cell, pbc=True)
    nl = neighbor_list(atoms, 4.5, min_distance=None)
    check_contract(nl, atoms, 4.5)
    assert_same_pairs(nl, ase_pairs(atoms, 4.5))


def test_rattled_fcc_matches_ase():
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True) * (3, 3, 3)
    atoms.rattle(stdev=0.05, seed=0)
    nl = neighbor_list(atoms, 5.0)
    check_contract(nl, atoms, 5.0)
    assert_same_pairs(nl, ase_pairs(atoms, 5.0))


def _perfect_structures():
    from ase.build import fcc111

    slab = fcc111("Cu", (3, 3, 3))  # pbc (T, T, F), zero third cell vector
    return {"fcc-primitive": bulk("Cu", "fcc", a=3.61), "bcc": bulk("Fe", "bcc", a=2.87),
            "hcp": bulk("Mg", "hcp", a=3.2, c=5.2),
            "diamond-cubic": bulk("Si", "diamond", a=5.43, cubic=True),
            "fcc111-slab": slab, "fcc111-vacuum": fcc111("Cu", (2, 2, 3), vacuum=4.0)}


@pytest.mark.parametrize("name", list(_perfect_structures()))
@pytest.mark.parametrize("rc", [2.9, 4.4, 6.3])
@pytest.mark.parametrize("nudge", [0.0, -1e-13])
def test_perfect_lattices_atoms_on_faces(name, rc, nudge):
    """Unrattled crystals: atoms exactly on (or just below) the cell faces."""
    atoms = _perfect_structures()[name]
    atoms.positions += nudge
    nl = neighbor_list(atoms, rc)
    check_contract(nl, atoms, rc)
    assert_same_pairs(nl, ase_pairs(atoms, rc))


@pytest.mark.parametrize("pbc", [(True, True, True), (True, False, True), (False, False, False)])
def test_independent_of_wrapping(pbc):
    """Moving atoms by lattice vectors keeps the pairs and D; S changes by n_i - n_j."""
    r = np.random.default_rng(3)
    cell = random_cell(r, 4.0)
    n = 12
    atoms = Atoms(numbers=[29] * n, positions=r.uniform(0, 1, (n, 3)) @ cell, cell=cell,
                  pbc=pbc)
    rc = 5.0
    nl = neighbor_list(atoms, rc, min_distance=None)
    shift = r.integers(-7, 8, (n, 3)) * np.asarray(pbc)
    moved = atoms.copy()
    moved.positions += shift @ cell
    nl2 = neighbor_list(moved, rc, min_distance=None)
    check_contract(nl2, moved, rc)
    expected = {(i, j, *(np.array(S) - shift[j] + shift[i])): D
                for (i, j, *S), D in as_dict(nl.i, nl.j, nl.S, nl.D).items()}
    assert_same_pairs(nl2, expected, atol=1e-9)
    np.testing.assert_array_equal(nl2.offsets, nl.offsets)
    np.testing.assert_array_equal(nl2.j, nl.j)


def test_empty_and_single_atom():
    nl = neighbor_list(Atoms(), 3.0)
    assert nl.n_atoms == 0 and nl.n_pairs == 0
    np.testing.assert_array_equal(nl.offsets, [0])
    assert nl.D.shape == (0, 3) and nl.S.shape == (0, 3)
    single = Atoms("Cu", positions=[[1.0, 2.0, 3.0]])
    nl = neighbor_list(single, 3.0)
    assert nl.n_atoms == 1 and nl.n_pairs == 0
    np.testing.assert_array_equal(nl.offsets, [0, 0])
    periodic = Atoms("Cu", positions=[[1.0, 2.0, 3.0]], cell=np.diag([2.5, 10.0, 10.0]),
                     pbc=True)
    nl = neighbor_list(periodic, 3.0)
    assert sorted(map(tuple, nl.S.tolist())) == [(-1, 0, 0), (1, 0, 0)]
    np.testing.assert_allclose(nl.d, [2.5, 2.5])


def test_dilute_huge_cell_and_spread_cluster():
    """Memory stays O(N): the bin count is capped, results stay exact."""
    r = np.random.default_rng(11)
    cell = np.diag([1e4, 2e4, 3e4])
    pos = np.vstack([[0.0, 0.0, 0.0], [1.5, 0.5, 0.0], [9999.0, 0.0, 0.0],
                     r.uniform(0, 1, (5, 3)) @ cell])
    atoms = Atoms(numbers=[29] * len(pos), positions=pos, cell=cell, pbc=True)
    nl = neighbor_list(atoms, 4.0)
    check_contract(nl, atoms, 4.0)
    assert_same_pairs(nl, reference_pairs(pos, cell, atoms.pbc, 4.0))
    assert {(0, 1), (1, 0), (0, 2), (2, 0)} <= set(zip(nl.i.tolist(), nl.j.tolist()))
    cluster = Atoms(numbers=[29] * 4, positions=[[0, 0, 0], [1e6, 0, 0], [1e6, 2.0, 0],
                                                 [0, 0, -3e5]])
    nl = neighbor_list(cluster, 4.0)
    assert sorted(zip(nl.i.tolist(), nl.j.tolist())) == [(1, 2), (2, 1)]


def test_huge_lattice_shifts_keep_canonical_order():
    """Shifts of ~1e6 cells: the packed (j, S) sort key would overflow; order stays canonical."""
    r = np.random.default_rng(5)
    cell = random_cell(r, 2.5)
    n = 6
    frac = r.uniform(0, 1, (n, 3))
    base = Atoms(numbers=[29] * n, positions=frac @ cell, cell=cell, pbc=True)
    rc = 2.5 * heights(cell).min()
    shift = r.integers(-1_000_000, 1_000_000, (n, 3))
    assert n * math.prod(2 * int(x) + 1 for x in np.ptp(shift, axis=0)) >= 2 ** 62
    far = base.copy()
    far.positions = (frac + shift) @ cell
    nl0 = neighbor_list(base, rc, min_distance=None)
    nl = neighbor_list(far, rc, min_distance=None)
    check_contract(nl, far, rc)
    expected = {(i, j, *(np.array(S) - shift[j] + shift[i])): D
                for (i, j, *S), D in as_dict(nl0.i, nl0.j, nl0.S, nl0.D).items()}
    assert_same_pairs(nl, expected, atol=1e-8)


def test_buffer_growth_when_density_estimate_is_low():
    """A dense cluster plus a far outlier: the bounding-box density underestimates the pairs."""
    crystal = bulk("Cu", "fcc", a=3.61, cubic=True) * (4, 4, 4)
    crystal.rattle(stdev=0.05, seed=2)
    pos = np.vstack([crystal.positions, [[2000.0, -1500.0, 900.0]]])
    atoms = Atoms(numbers=[29] * len(pos), positions=pos)
    nl = neighbor_list(atoms, 5.0)
    check_contract(nl, atoms, 5.0)
    assert nl.n_pairs > 5000
    assert_same_pairs(nl, ase_pairs(atoms, 5.0))


@pytest.mark.parametrize("n", [1, 10, 1000])
def test_bin_count_is_linear_in_atoms(n):
    frac = np.random.default_rng(0).uniform(0, 1, (n, 3))
    nb, m, _, _ = _bin_layout(n, frac, np.array([True] * 3), np.array([1e5, 1e5, 1e5]), 3.0)
    assert np.prod(nb) <= 2 * n
    assert np.all(m >= 1)


def test_coincident_atoms():
    atoms = Atoms("Cu2", positions=[[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]])
    with pytest.raises(InvalidStructureError, match=r"atoms 0 and 1 only 0 Å apart"):
        neighbor_list(atoms, 3.0)
    nl = neighbor_list(atoms, 3.0, min_distance=None)
    assert nl.n_pairs == 0
    np.testing.assert_array_equal(nl.offsets, [0, 0, 0])


def test_min_distance_error():
    atoms = Atoms("Cu2", positions=[[0.0, 0.0, 0.0], [0.05, 0.0, 0.0]], cell=np.eye(3) * 5,
                  pbc=True)
    with pytest.raises(InvalidStructureError,
                       match=r"'atoms' argument of Foo has atoms 0 and 1 only 0\.05 Å apart "
                             r"\(minimum allowed 0\.1 Å\)"):
        neighbor_list(atoms, 3.0, owner="Foo")
    assert neighbor_list(atoms, 3.0, min_distance=0.01).n_pairs == 2
    # an atom and its own image too close (cell vector shorter than min_distance)
    thin = Atoms("Cu", positions=[[0.0, 0.0, 0.0]], cell=[[0.05, 0, 0], [0, 5, 0], [0, 0, 5]],
                 pbc=True)
    with pytest.raises(InvalidStructureError, match=r"atoms 0 and 0 only 0\.05 Å apart"):
        neighbor_list(thin, 1.0)


def test_zero_volume_periodic_cell_error():
    atoms = Atoms("Cu2", positions=[[0, 0, 0], [1, 1, 1]],
                  cell=[[3, 0, 0], [0, 3, 0], [3, 3, 0]], pbc=True)
    with pytest.raises(InvalidStructureError, match=r"periodic along .* degenerate"):
        neighbor_list(atoms, 3.0)
    slab = Atoms("Cu2", positions=[[0, 0, 0], [1, 1, 1]], cell=[[3, 0, 0], [0, 0, 0], [0, 0, 0]],
                 pbc=(True, True, False))
    with pytest.raises(InvalidStructureError, match=r"degenerate"):
        neighbor_list(slab, 3.0)


def test_nan_position_error():
    atoms = Atoms("Cu2", positions=[[0, 0, 0], [np.nan, 1, 1]], cell=np.eye(3) * 4, pbc=True)
    with pytest.raises(InvalidStructureError, match=r"non-finite positions .* atom 1"):
        neighbor_list(atoms, 3.0)


def test_not_atoms_error():
    with pytest.raises(InvalidStructureError, match=r"'structure' argument must be an ase.Atoms"):
        neighbor_list(np.zeros((3, 3)), 3.0, name="structure")


@pytest.mark.parametrize("bad", [0.0, -1.0, np.nan, "5", None])
def test_bad_cutoff(bad):
    with pytest.raises(InvalidParameterError,
                       match=r"'r_cut' parameter must be a float in \(0, inf\)"):
        neighbor_list(Atoms("Cu"), bad)


def test_bad_min_distance():
    with pytest.raises(InvalidParameterError, match=r"'min_distance' parameter .* Got -1"):
        neighbor_list(Atoms("Cu"), 3.0, min_distance=-1.0)
