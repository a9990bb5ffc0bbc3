"""Contract suite run on every descriptor (see tests/descriptor_cases.py).

Symmetries, finite-difference Jacobians on rattled periodic non-orthogonal two-element cells,
adjoint == Jacobian contraction == finite differences, strain derivative, smooth cutoff,
supercell consistency, input not modified, typed errors for bad input.
"""

import numpy as np
import pytest
from ase import Atoms
from scipy.spatial.transform import Rotation
from sklearn.base import clone

from hybridpot import InvalidParameterError, InvalidStructureError, UnknownSpeciesError
from hybridpot.descriptors import descriptor_from_dict

from conftest import skewed_two_element_cell
from descriptor_cases import DESCRIPTOR_CASES

SPECIES = ["Cu", "Ni"]
NAMES = sorted(DESCRIPTOR_CASES)


@pytest.fixture(params=NAMES)
def desc(request):
    return DESCRIPTOR_CASES[request.param](SPECIES)


@pytest.fixture
def cell_atoms():
    return skewed_two_element_cell(seed=1, rattle=0.12)


def test_shape_dtype_and_input_untouched(desc, cell_atoms):
    before = cell_atoms.copy()
    X = desc.compute(cell_atoms)
    assert X.shape == (len(cell_atoms), desc.n_features)
    assert X.dtype == np.float64
    assert np.all(np.isfinite(X))
    assert np.abs(X).max() > 0
    X2, dX = desc.compute(cell_atoms, gradients=True)
    np.testing.assert_allclose(X2, X, rtol=1e-12, atol=1e-14)
    assert dX.d_drij.shape == (dX.pair_i.shape[0], 3, desc.n_features)
    desc.backward(cell_atoms, np.ones_like(X))
    assert cell_atoms == before
    np.testing.assert_array_equal(cell_atoms.positions, before.positions)


def test_rotation_translation_permutation_invariance(desc, cell_atoms, rng):
    X = desc.compute(cell_atoms)
    R = Rotation.random(random_state=rng.integers(1 << 31)).as_matrix()
    rot = cell_atoms.copy()
    rot.set_cell(cell_atoms.cell.array @ R.T, scale_atoms=False)
    rot.positions = cell_atoms.positions @ R.T + np.array([0.3, -1.7, 2.2])
    np.testing.assert_allclose(desc.compute(rot), X, rtol=1e-9, atol=1e-10)
    perm = rng.permutation(len(cell_atoms))
    np.testing.assert_allclose(desc.compute(cell_atoms[perm]), X[perm], rtol=1e-10, atol=1e-12)
    shifted = cell_atoms.copy()
    shifted.positions += cell_atoms.cell.array[0]  # a lattice translation of one atom set
    np.testing.assert_allclose(desc.compute(shifted), X, rtol=1e-9, atol=1e-10)


def _fd_positions(desc, atoms, h=1e-5):
    n = len(atoms)
    out = np.zeros((n, desc.n_features, n, 3))
    for k in range(n):
        for a in range(3):
            p, m = atoms.copy(), atoms.copy()
            p.positions[k, a] += h
            m.positions[k, a] -= h
            out[:, :, k, a] = (desc.compute(p) - desc.compute(m)) / (2 * h)
    return out


def _strained(atoms, eps):
    at = atoms.copy()
    F = np.eye(3) + eps
    at.set_cell(atoms.cell.array @ F.T, scale_atoms=False)
    at.positions = atoms.positions @ F.T
    return at


def test_jacobian_matches_finite_differences(desc, cell_atoms):
    _, dX = desc.compute(cell_atoms, gradients=True)
    fd = _fd_positions(desc, cell_atoms)
    scale = np.abs(fd).max()
    np.testing.assert_allclose(dX.dense(), fd, atol=1e-6 * max(scale, 1.0), rtol=1e-5)


def test_strain_derivative_matches_finite_strain(desc, cell_atoms):
    _, dX = desc.compute(cell_atoms, gradients=True)
    h = 1e-5
    fd = np.zeros((len(cell_atoms), 3, 3, desc.n_features))
    for a in range(3):
        for b in range(3):
            e = np.zeros((3, 3))
            e[a, b] = h
            fd[:, a, b] = (desc.compute(_strained(cell_atoms, e))
                           - desc.compute(_strained(cell_atoms, -e))) / (2 * h)
    scale = np.abs(fd).max()
    np.testing.assert_allclose(dX.strain, fd, atol=1e-6 * max(scale, 1.0), rtol=1e-5)


def test_backward_equals_jacobian_and_finite_differences(desc, cell_atoms, rng):
    X, dX = desc.compute(cell_atoms, gradients=True)
    w = rng.normal(size=X.shape)
    dE_dr, dE_deps = desc.backward(cell_atoms, w)
    ref_r, ref_eps = dX.vjp(w)
    np.testing.assert_allclose(dE_dr, ref_r, rtol=1e-9, atol=1e-10 * np.abs(ref_r).max())
    np.testing.assert_allclose(dE_deps, ref_eps, rtol=1e-9, atol=1e-10 * np.abs(ref_eps).max())

    def energy(at):
        return float(np.sum(w * desc.compute(at)))

    h = 1e-5
    fd = np.zeros_like(dE_dr)
    for k in range(len(cell_atoms)):
        for a in range(3):
            p, m = cell_atoms.copy(), cell_atoms.copy()
            p.positions[k, a] += h
            m.positions[k, a] -= h
            fd[k, a] = (energy(p) - energy(m)) / (2 * h)
    np.testing.assert_allclose(dE_dr, fd, rtol=1e-5, atol=1e-6 * np.abs(fd).max())
    fd_eps = np.zeros((3, 3))
    for a in range(3):
        for b in range(3):
            e = np.zeros((3, 3))
            e[a, b] = h
            fd_eps[a, b] = (energy(_strained(cell_atoms, e))
                            - energy(_strained(cell_atoms, -e))) / (2 * h)
    np.testing.assert_allclose(dE_deps, fd_eps, rtol=1e-5, atol=1e-6 * np.abs(fd_eps).max())


def test_smooth_at_cutoff(desc):
    """A dimer: features and their derivative go continuously to the isolated-atom values."""
    rc = desc.r_cut if hasattr(desc, "r_cut") and desc.r_cut is not None else None
    rc = getattr(desc, "cutoff_radius", rc)
    iso = desc.compute(Atoms(["Cu"], positions=[[0, 0, 0]]))
    prev = None
    for gap in (1e-2, 1e-3, 1e-4):
        dimer = Atoms(["Cu", "Ni"], positions=[[0, 0, 0], [rc - gap, 0, 0]])
        X, dX = desc.compute(dimer, gradients=True)
        diff = np.abs(X[0] - iso[0]).max()
        slope = np.abs(dX.d_drij).max()
        if prev is not None:
            assert diff <= prev[0] + 1e-14
            assert slope <= prev[1] + 1e-12
        prev = (diff, slope)
    assert prev[0] < 1e-6 * max(1.0, np.abs(iso).max())
    assert prev[1] < 1e-2
    beyond = Atoms(["Cu", "Ni"], positions=[[0, 0, 0], [rc + 1e-3, 0, 0]])
    np.testing.assert_allclose(desc.compute(beyond)[0], iso[0], atol=1e-14)


def test_supercell_same_per_atom_values(desc, cell_atoms):
    X = desc.compute(cell_atoms)
    sc = cell_atoms * (2, 1, 2)
    Xs = desc.compute(sc)
    np.testing.assert_allclose(Xs, np.tile(X, (4, 1)), rtol=1e-9, atol=1e-10)


def test_partial_periodicity_and_isolated_cluster(desc, cell_atoms):
    slab = cell_atoms.copy()
    slab.pbc = (True, True, False)
    X = desc.compute(slab)
    assert np.all(np.isfinite(X))
    cluster = cell_atoms.copy()
    cluster.pbc = False
    cluster.cell = np.zeros((3, 3))
    Xc, dXc = desc.compute(cluster, gradients=True)
    assert Xc.shape == (4, desc.n_features)
    # no periodic images: every pair is within the 4 atoms
    assert np.all(dXc.pair_j < 4)


def test_clone_and_serialisation(desc, cell_atoms):
    c = clone(desc)
    np.testing.assert_allclose(c.compute(cell_atoms), desc.compute(cell_atoms))
    d = descriptor_from_dict(desc.to_dict())
    np.testing.assert_allclose(d.compute(cell_atoms), desc.compute(cell_atoms))


@pytest.mark.parametrize("bad", ["nan", "inf"])
def test_non_finite_positions_rejected(desc, cell_atoms, bad):
    cell_atoms.positions[2, 1] = float(bad)
    with pytest.raises(InvalidStructureError, match="non-finite positions"):
        desc.compute(cell_atoms)


def test_unknown_species_rejected(desc, cell_atoms):
    cell_atoms[1].symbol = "Au"
    with pytest.raises(UnknownSpeciesError, match="'Au'"):
        desc.compute(cell_atoms)


def test_overlapping_atoms_rejected(desc, cell_atoms):
    # 5e-4 Å: below every floor (0.1 Å; 0.001 Å for a descriptor with its inner switch on)
    cell_atoms.positions[1] = cell_atoms.positions[0] + [5e-4, 0, 0]
    with pytest.raises(InvalidStructureError, match="apart"):
        desc.compute(cell_atoms)


def test_zero_volume_cell_rejected(desc, cell_atoms):
    cell = cell_atoms.cell.array.copy()
    cell[2] = cell[0] + cell[1]
    cell_atoms.set_cell(cell, scale_atoms=False)
    with pytest.raises(InvalidStructureError, match="degenerate"):
        desc.compute(cell_atoms)


def test_bad_backward_shape_rejected(desc, cell_atoms):
    with pytest.raises(InvalidParameterError, match="dE_dX"):
        desc.backward(cell_atoms, np.ones((len(cell_atoms), desc.n_features + 1)))
