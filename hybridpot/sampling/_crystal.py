"""Structure generators that need no model: random-disorder cells, rattled/strained crystals,
a fixed pool."""

from __future__ import annotations

import numbers

import numpy as np

from .._exceptions import InvalidParameterError, InvalidStructureError
from .._validation import check_float, check_int, check_species_list
from ._base import Sampler, as_generator

__all__ = ["RandomDisorderSampler", "RattleStrainSampler", "PoolSampler", "min_image_distance",
           "cell_heights"]


def cell_heights(cell):
    """Perpendicular widths of a cell, ``V / |b x c|`` etc., shape (3,), Å."""
    cell = np.asarray(cell, dtype=np.float64)
    vol = abs(np.linalg.det(cell))
    return np.array([vol / np.linalg.norm(np.cross(cell[(k + 1) % 3], cell[(k + 2) % 3]))
                     for k in range(3)])


def _shifts(cell, radius):
    """Integer lattice shifts that can bring a wrapped difference within ``radius``."""
    m = np.ceil(radius / cell_heights(cell)).astype(int) + 1
    g = np.mgrid[-m[0]:m[0] + 1, -m[1]:m[1] + 1, -m[2]:m[2] + 1].reshape(3, -1).T
    return g.astype(np.float64)


def _min_dist_to(frac_new, frac_old, cell, shifts):
    """Smallest distance from a fractional point to points ``frac_old`` over all images."""
    if frac_old.shape[0] == 0:
        return np.inf
    d = frac_new[None, :] - frac_old
    d -= np.round(d)
    cart = (d[:, None, :] + shifts[None, :, :]) @ cell
    return float(np.sqrt(np.min(np.einsum("ijk,ijk->ij", cart, cart))))


def min_image_distance(atoms):
    """Shortest distance (Å) between two atoms of a 3-D periodic cell, images included.

    An atom's distance to its own images counts as well.  Cost O(N^2 * n_images).

    Parameters
    ----------
    atoms : ase.Atoms
        A cell periodic in 3-D.

    Returns
    -------
    float
        Å.
    """
    cell = np.asarray(atoms.cell.array, dtype=np.float64)
    frac = atoms.get_scaled_positions(wrap=True)
    h = cell_heights(cell)
    best = float(h.min())  # self-image distance is at least the smallest height
    shifts = _shifts(cell, best)
    nonzero = np.any(shifts != 0, axis=1)
    self_img = np.linalg.norm(shifts[nonzero] @ cell, axis=1).min()
    best = min(best, float(self_img))
    for i in range(1, len(atoms)):
        best = min(best, _min_dist_to(frac[i], frac[:i], cell, shifts))
    return best


def _check_range(value, name, owner, low=0.0):
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        value = (value, value)
    try:
        lo, hi = value
    except (TypeError, ValueError):
        raise InvalidParameterError(
            f"The '{name}' parameter of {owner} must be a float or a pair (low, high). "
            f"Got {value!r} instead.") from None
    lo = check_float(lo, name, owner, low=low, low_inclusive=True)
    hi = check_float(hi, name, owner, low=low, low_inclusive=True)
    if not (np.isfinite(lo) and np.isfinite(hi)) or hi < lo:
        raise InvalidParameterError(
            f"The '{name}' parameter of {owner} must be a finite pair with low <= high. "
            f"Got {value!r} instead.")
    return lo, hi


class RandomDisorderSampler(Sampler):
    r"""Random cells filled with randomly placed atoms (no knowledge of the crystal needed).

    For every structure: ``N`` atoms (uniform in ``n_atoms``) of random elements (uniform over
    ``species``, or ``composition`` fractions); a volume ``V = N v`` with ``v`` uniform in
    ``volume_per_atom`` (so the number density ``N / V`` lies in
    ``[1 / v_max, 1 / v_min]`` atoms/Å³); angles ``alpha, beta, gamma`` uniform in
    ``angle_range``; lengths ``a, b, c`` with random ratios (longest / shortest at most
    ``max_aspect``) scaled to ``V``.  This is the *smallest box* holding ``N`` atoms at that
    density: no supercell, but every perpendicular width of the cell is at least
    ``min_distance`` so an atom never meets its own image closer than that.  Atoms are inserted
    one by one at uniform random fractional positions; a position closer than
    ``min_distance`` (Å) to any atom or periodic image is rejected.  A cell that cannot be
    filled in ``max_attempts`` tries per atom is discarded and redrawn.

    Parameters
    ----------
    species : list of str, default=("Cu",)
        Elements of the cells.
    n_atoms : int or (int, int), default=(2, 8)
        Atoms per cell, or the range of a uniform draw (inclusive).
    volume_per_atom : float or (float, float), default=(10.0, 20.0)
        Å³/atom, or the range of the density draw.
    min_distance : float, default=2.0
        Å.
    angle_range : (float, float), default=(60.0, 120.0)
        Degrees, within (0, 180).
    max_aspect : float, default=2.0
        Largest ratio of lattice vector lengths (>= 1).
    composition : dict of str to float, optional
        Element fractions (normalised); default uniform.
    max_attempts : int, default=1000
        Insertion tries per atom before the cell is redrawn.
    """

    def __init__(self, *, species=("Cu",), n_atoms=(2, 8), volume_per_atom=(10.0, 20.0),
                 min_distance=2.0, angle_range=(60.0, 120.0), max_aspect=2.0,
                 composition=None, max_attempts=1000):
        self.species = species
        self.n_atoms = n_atoms
        self.volume_per_atom = volume_per_atom
        self.min_distance = min_distance
        self.angle_range = angle_range
        self.max_aspect = max_aspect
        self.composition = composition
        self.max_attempts = max_attempts

    def _validate(self):
        owner = type(self).__name__
        species = check_species_list(self.species, "species", owner)
        if isinstance(self.n_atoms, numbers.Integral) and not isinstance(self.n_atoms, bool):
            nlo = nhi = check_int(self.n_atoms, "n_atoms", owner, low=1)
        else:
            try:
                nlo, nhi = self.n_atoms
            except (TypeError, ValueError):
                raise InvalidParameterError(
                    f"The 'n_atoms' parameter of {owner} must be an int or a pair (low, high). "
                    f"Got {self.n_atoms!r} instead.") from None
            nlo = check_int(nlo, "n_atoms", owner, low=1)
            nhi = check_int(nhi, "n_atoms", owner, low=1)
            if nhi < nlo:
                raise InvalidParameterError(
                    f"The 'n_atoms' parameter of {owner} must be an int or a pair (low, high) "
                    f"with 1 <= low <= high. Got {self.n_atoms!r} instead.")
        vlo, vhi = _check_range(self.volume_per_atom, "volume_per_atom", owner)
        if vlo <= 0:
            raise InvalidParameterError(
                f"The 'volume_per_atom' parameter of {owner} must be > 0. "
                f"Got {self.volume_per_atom!r} instead.")
        dmin = check_float(self.min_distance, "min_distance", owner, low=0.0)
        alo, ahi = _check_range(self.angle_range, "angle_range", owner)
        if not (0 < alo and ahi < 180):
            raise InvalidParameterError(
                f"The 'angle_range' parameter of {owner} must lie within (0, 180) degrees. "
                f"Got {self.angle_range!r} instead.")
        aspect = check_float(self.max_aspect, "max_aspect", owner, low=1.0, low_inclusive=True)
        # spheres of diameter dmin cannot fill more than 74 % of space: reject impossible input
        if vhi < np.pi / 6 * dmin ** 3 / 0.74:
            raise InvalidParameterError(
                f"The 'min_distance' parameter of {owner} ({dmin} Å) is too large for "
                f"volume_per_atom {self.volume_per_atom!r} Å³: spheres of that diameter cannot "
                "be packed at this density.")
        p = np.ones(len(species)) / len(species)
        if self.composition is not None:
            if not isinstance(self.composition, dict) or set(self.composition) - set(species):
                raise InvalidParameterError(
                    f"The 'composition' parameter of {owner} must map elements of 'species' to "
                    f"fractions. Got {self.composition!r} instead.")
            p = np.array([float(self.composition.get(s, 0.0)) for s in species])
            if np.any(p < 0) or not p.sum() > 0:
                raise InvalidParameterError(
                    f"The 'composition' parameter of {owner} must have fractions >= 0 with a "
                    f"positive sum. Got {self.composition!r} instead.")
            p = p / p.sum()
        attempts = check_int(self.max_attempts, "max_attempts", owner, low=1)
        return species, (nlo, nhi), (vlo, vhi), dmin, (alo, ahi), aspect, p, attempts

    def _cell(self, rng, n, vrange, arange, aspect, dmin):
        from ase.geometry import cellpar_to_cell

        for _ in range(10000):
            ang = rng.uniform(*arange, size=3)
            ca, cb, cg = np.cos(np.radians(ang))
            if 1 - ca ** 2 - cb ** 2 - cg ** 2 + 2 * ca * cb * cg <= 1e-3:
                continue
            lengths = rng.uniform(1.0, aspect, size=3)
            cell = cellpar_to_cell(np.concatenate([lengths, ang]))
            V = n * rng.uniform(*vrange)
            cell = cell * (V / abs(np.linalg.det(cell))) ** (1.0 / 3.0)
            if cell_heights(cell).min() >= dmin:
                return cell
        raise InvalidParameterError(
            f"{type(self).__name__}: no cell of {n} atoms with the requested angles, aspect and "
            f"density has all widths >= min_distance={dmin} Å; increase n_atoms or "
            "volume_per_atom.")

    def sample(self, n, *, random_state=None, model=None):
        """``n`` random-disorder structures (periodic; ``info["sampler"] = "disorder"``).

        Parameters
        ----------
        n : int
            Number of structures (``>= 0``).
        random_state : int, numpy.random.Generator or None, default=None
            Seed (a non-negative int) or generator; never the global numpy state.
        model : HybridPotential, optional
            Not used by this sampler (the common sampler interface).

        Returns
        -------
        list of ase.Atoms
            Unlabelled structures.

        Raises
        ------
        hybridpot.InvalidParameterError
            For a bad ``n``, ``random_state`` or hyperparameter.
        """
        from ase import Atoms

        owner = type(self).__name__
        n = check_int(n, "n", f"{owner}.sample", low=0)
        species, (nlo, nhi), vr, dmin, ar, aspect, p, attempts = self._validate()
        rng = as_generator(random_state, f"{owner}.sample")
        out = []
        tries = 0
        while len(out) < n:
            tries += 1
            if tries > 100 * (n + 1):
                raise InvalidParameterError(
                    f"{owner}: could not place the atoms with min_distance={dmin} Å in "
                    f"{tries - 1} cells; increase volume_per_atom or max_attempts, or reduce "
                    "min_distance.")
            na = int(rng.integers(nlo, nhi + 1))
            cell = self._cell(rng, na, vr, ar, aspect, dmin)
            shifts = _shifts(cell, dmin)
            frac = np.zeros((0, 3))
            for _ in range(na):
                for _ in range(attempts):
                    f = rng.random(3)
                    if _min_dist_to(f, frac, cell, shifts) >= dmin:
                        frac = np.vstack([frac, f])
                        break
                else:
                    break
            if frac.shape[0] < na:
                continue
            syms = [species[k] for k in rng.choice(len(species), size=na, p=p)]
            at = Atoms(syms, scaled_positions=frac, cell=cell, pbc=True)
            at.info["sampler"] = "disorder"
            out.append(at)
        return out


class RattleStrainSampler(Sampler):
    r"""Rattled and strained copies of a prototype crystal.

    Each sample is ``prototype * supercell`` with the cell (and atoms) mapped by
    ``1 + eps``, ``eps`` a random symmetric strain (``(e + e^T) / 2`` of a matrix ``e``
    with entries uniform in ``[-strain_max, strain_max]``: diagonal components uniform in
    that range, off-diagonal ones the mean of two such draws), then every Cartesian coordinate displaced by a normal
    deviate of standard deviation ``s`` (Å), ``s`` drawn uniformly in ``rattle_std`` per
    structure.  Displacements that bring two atoms closer than ``min_distance`` (Å) are
    redrawn.

    Parameters
    ----------
    prototype : ase.Atoms
        Periodic crystal (not modified; required).
    supercell : (int, int, int), default=(1, 1, 1)
        Repetitions of ``prototype`` along its cell vectors.
    rattle_std : float or (float, float), default=(0.02, 0.15)
        Å; a pair is the range of the per-structure standard deviation.
    strain_max : float, default=0.03
        Largest strain component (dimensionless, in [0, 0.5)).
    min_distance : float or None, default=1.5
        Å; None disables the check.

    Examples
    --------
    >>> from ase.build import bulk
    >>> from hybridpot.sampling import RattleStrainSampler
    >>> sampler = RattleStrainSampler(prototype=bulk("Cu", "fcc", a=3.61, cubic=True),
    ...                               supercell=(2, 2, 2))
    >>> frames = sampler.sample(3, random_state=0)
    >>> len(frames), len(frames[0]), frames[0].info["sampler"]
    (3, 32, 'rattle')
    """

    def __init__(self, *, prototype=None, supercell=(1, 1, 1), rattle_std=(0.02, 0.15),
                 strain_max=0.03, min_distance=1.5):
        self.prototype = prototype
        self.supercell = supercell
        self.rattle_std = rattle_std
        self.strain_max = strain_max
        self.min_distance = min_distance

    def sample(self, n, *, random_state=None, model=None):
        """``n`` rattled, strained structures (``info["sampler"] = "rattle"``).

        Parameters
        ----------
        n : int
            Number of structures (``>= 0``).
        random_state : int, numpy.random.Generator or None, default=None
            Seed (a non-negative int) or generator; never the global numpy state.
        model : HybridPotential, optional
            Not used by this sampler (the common sampler interface).

        Returns
        -------
        list of ase.Atoms
            Unlabelled structures.

        Raises
        ------
        hybridpot.InvalidParameterError
            For a bad ``n``, ``random_state`` or hyperparameter.
        hybridpot.InvalidStructureError
            When 1000 draws give no structure with every distance >= ``min_distance``.
        """
        from ase import Atoms

        owner = type(self).__name__
        n = check_int(n, "n", f"{owner}.sample", low=0)
        if not isinstance(self.prototype, Atoms) or not np.all(self.prototype.pbc):
            got = (f"an Atoms with pbc={[bool(p) for p in self.prototype.pbc]}"
                   if isinstance(self.prototype, Atoms) else type(self.prototype).__name__)
            raise InvalidParameterError(
                f"The 'prototype' parameter of {owner} must be a 3-D periodic ase.Atoms (a "
                f"crystal: the strain acts on its cell; for a molecule or cluster rattle "
                f"copies yourself or use UncertaintyMDSampler). Got {got} instead.")
        try:
            reps = tuple(int(check_int(r, "supercell", owner, low=1)) for r in self.supercell)
        except TypeError:
            reps = ()
        if len(reps) != 3:
            raise InvalidParameterError(
                f"The 'supercell' parameter of {owner} must be three ints >= 1. "
                f"Got {self.supercell!r} instead.")
        slo, shi = _check_range(self.rattle_std, "rattle_std", owner)
        smax = check_float(self.strain_max, "strain_max", owner, low=0.0, high=0.5,
                           low_inclusive=True)
        dmin = check_float(self.min_distance, "min_distance", owner, low=0.0,
                           low_inclusive=True, allow_none=True)
        rng = as_generator(random_state, f"{owner}.sample")
        base = self.prototype.copy() * reps
        base.calc = None
        out = []
        for _ in range(n):
            for _ in range(1000):
                at = base.copy()
                e = rng.uniform(-smax, smax, (3, 3))
                e = 0.5 * (e + e.T)
                at.set_cell(at.cell.array @ (np.eye(3) + e), scale_atoms=True)
                at.positions += rng.normal(0.0, rng.uniform(slo, shi), at.positions.shape)
                if dmin is None or len(at) < 1 or min_image_distance(at) >= dmin:
                    break
            else:
                raise InvalidStructureError(
                    f"{owner}: could not draw a structure with all distances >= "
                    f"min_distance={dmin} Å; reduce rattle_std or min_distance.")
            at.info["sampler"] = "rattle"
            out.append(at)
        return out


class PoolSampler(Sampler):
    """Candidates drawn without replacement from a fixed list of structures.

    Every returned copy carries ``info["pool_index"]`` (its position in ``structures``), so a
    learner can recognise candidates it has already labelled.  Labels carried by the pool
    structures are stripped (``calc = None``) unless ``keep_labels=True``.

    Parameters
    ----------
    structures : list of ase.Atoms
        The pool (required, non-empty).
    keep_labels : bool, default=False
        Keep the pool structures' calculators / labels on the returned copies.
    """

    def __init__(self, *, structures=None, keep_labels=False):
        self.structures = structures
        self.keep_labels = keep_labels

    def sample(self, n, *, random_state=None, model=None, exclude=()):
        """``min(n, available)`` random structures of the pool whose index is not in
        ``exclude``, in random order.

        Parameters
        ----------
        n : int
            Number of structures (``>= 0``).
        random_state : int, numpy.random.Generator or None, default=None
            Seed (a non-negative int) or generator; never the global numpy state.
        model : HybridPotential, optional
            Not used by this sampler (the common sampler interface).
        exclude : iterable of int, default=()
            Indices into ``structures`` not to return (e.g. those already labelled).

        Returns
        -------
        list of ase.Atoms
            Copies of pool structures, each with ``info["pool_index"]``.

        Raises
        ------
        hybridpot.InvalidParameterError
            For a bad ``n``, ``random_state`` or ``structures``.
        """
        from ase import Atoms

        owner = type(self).__name__
        n = check_int(n, "n", f"{owner}.sample", low=0)
        pool = self.structures
        if not isinstance(pool, (list, tuple)) or not pool or \
                not all(isinstance(a, Atoms) for a in pool):
            raise InvalidParameterError(
                f"The 'structures' parameter of {owner} must be a non-empty list of ase.Atoms. "
                f"Got {type(pool).__name__} instead.")
        rng = as_generator(random_state, f"{owner}.sample")
        ex = set(int(k) for k in exclude)
        avail = np.array([k for k in range(len(pool)) if k not in ex], dtype=np.int64)
        pick = rng.permutation(avail)[:n]
        out = []
        for k in pick:
            at = pool[int(k)].copy()
            if self.keep_labels:
                at.calc = pool[int(k)].calc
            at.info["pool_index"] = int(k)
            out.append(at)
        return out
