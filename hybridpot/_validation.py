"""Shared argument and structure validation (never ``assert``)."""

from __future__ import annotations

import numbers

import numpy as np

from ._exceptions import InvalidParameterError, InvalidStructureError, UnknownSpeciesError

__all__ = [
    "check_float",
    "check_int",
    "check_choice",
    "check_species_list",
    "check_atoms",
    "species_indices",
]


def _owner_text(owner):
    return f" of {owner}" if owner else ""


def check_float(value, name, owner=None, *, low=None, high=None, low_inclusive=False,
                high_inclusive=False, allow_none=False, finite=False):
    """Return ``value`` as float or raise :class:`InvalidParameterError`.

    The interval is described in the message as e.g. ``(0, inf)`` or ``[0, 1]``.  An open
    end (``low`` or ``high`` None) admits the matching infinity unless ``finite=True``.
    """
    if value is None and allow_none:
        return None
    lo = "-inf" if low is None else f"{low:g}"
    hi = "inf" if high is None else f"{high:g}"
    interval = f"{'[' if low_inclusive else '('}{lo}, {hi}{']' if high_inclusive else ')'}"
    msg = (f"The '{name}' parameter{_owner_text(owner)} must be a float in {interval}"
           f"{' or None' if allow_none else ''}. Got {value!r} instead.")
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InvalidParameterError(msg)
    v = float(value)
    if not np.isfinite(v):
        if finite or not ((v == np.inf and high is None) or (v == -np.inf and low is None)):
            raise InvalidParameterError(msg)
    if low is not None and (v < low or (v == low and not low_inclusive)):
        raise InvalidParameterError(msg)
    if high is not None and (v > high or (v == high and not high_inclusive)):
        raise InvalidParameterError(msg)
    return v


def check_random_state_param(value, owner=None, name="random_state"):
    """Raise :class:`InvalidParameterError` unless ``value`` is None, an int in
    ``[0, 2**32)`` (numpy's RandomState seeds), a numpy Generator or RandomState; return it
    unchanged."""
    if value is None or isinstance(value, (np.random.Generator, np.random.RandomState)):
        return value
    if isinstance(value, numbers.Integral) and not isinstance(value, bool) and \
            0 <= value < 2 ** 32:
        return value
    raise InvalidParameterError(
        f"The '{name}' parameter{_owner_text(owner)} must be None, a non-negative int "
        f"below 2**32, a numpy Generator or RandomState. Got {value!r} instead.")


def check_int(value, name, owner=None, *, low=None, high=None, allow_none=False):
    """Return ``value`` as int or raise :class:`InvalidParameterError` (closed interval)."""
    if value is None and allow_none:
        return None
    lo = "-inf" if low is None else str(low)
    hi = "inf" if high is None else str(high)
    msg = (f"The '{name}' parameter{_owner_text(owner)} must be an int in [{lo}, {hi}]"
           f"{' or None' if allow_none else ''}. Got {value!r} instead.")
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InvalidParameterError(msg)
    v = int(value)
    if (low is not None and v < low) or (high is not None and v > high):
        raise InvalidParameterError(msg)
    return v


def check_choice(value, name, choices, owner=None):
    """Return ``value`` if it is one of ``choices`` else raise :class:`InvalidParameterError`."""
    try:   # an array or an object whose == raises is no choice
        ok = not isinstance(value, np.ndarray) and value in choices
    except (TypeError, ValueError):
        ok = False
    if not ok:
        allowed = ", ".join(repr(c) for c in choices)
        raise InvalidParameterError(
            f"The '{name}' parameter{_owner_text(owner)} must be one of {{{allowed}}}. "
            f"Got {value!r} instead.")
    return value


def check_species_list(species, name="species", owner=None):
    """Validate a list of chemical symbols; return it as a tuple of str (order kept)."""
    from ase.data import atomic_numbers

    if isinstance(species, str) or species is None:
        raise InvalidParameterError(
            f"The '{name}' parameter{_owner_text(owner)} must be a non-empty list of chemical "
            f"symbols such as ['Ni'] or ['Si', 'O']. Got {species!r} instead.")
    try:
        out = tuple(species)
    except TypeError:   # a number or another non-iterable: not a raw TypeError
        raise InvalidParameterError(
            f"The '{name}' parameter{_owner_text(owner)} must be a non-empty list of chemical "
            f"symbols such as ['Ni'] or ['Si', 'O']. Got {species!r} instead.") from None
    if len(out) == 0:
        raise InvalidParameterError(
            f"The '{name}' parameter{_owner_text(owner)} must be a non-empty list of chemical "
            f"symbols. Got an empty list instead.")
    for s in out:
        if not isinstance(s, str) or s not in atomic_numbers or s == "X":
            raise InvalidParameterError(
                f"The '{name}' parameter{_owner_text(owner)} must contain chemical symbols. "
                f"Got {s!r} instead.")
    if len(set(out)) != len(out):
        raise InvalidParameterError(
            f"The '{name}' parameter{_owner_text(owner)} must not repeat a symbol. "
            f"Got {list(out)!r} instead.")
    return out


def species_indices(atoms, species, owner=None):
    """Index of each atom's symbol in ``species``; :class:`UnknownSpeciesError` if absent."""
    symbols = atoms.get_chemical_symbols()
    lookup = {s: k for k, s in enumerate(species)}
    out = np.empty(len(symbols), dtype=np.int64)
    for n, s in enumerate(symbols):
        k = lookup.get(s)
        if k is None:
            who = owner if owner else "this model"
            raise UnknownSpeciesError(
                f"The structure {atoms.get_chemical_formula()} contains the element {s!r} "
                f"(first at atom {n}), which {who} does not know; its elements are "
                f"{list(species)!r}.")
        out[n] = k
    return out


def check_structure_list(structures, where, *, allow_empty=False):
    """A list of ``ase.Atoms`` from one Atoms or any iterable of them (read once).

    ``where`` starts every error message and names the argument, e.g. ``"The 'pool'
    argument of MaxVarianceSelector.select"``.  Raises InvalidParameterError for a
    non-iterable, an item that is not an Atoms or (unless ``allow_empty``) no structures.
    """
    from ase import Atoms

    if isinstance(structures, Atoms):
        return [structures]
    try:
        out = list(structures)
    except TypeError:
        raise InvalidParameterError(
            f"{where} must be a list of ase.Atoms. "
            f"Got {type(structures).__name__} instead.") from None
    for k, a in enumerate(out):
        if not isinstance(a, Atoms):
            raise InvalidParameterError(
                f"{where} must be a list of ase.Atoms; item {k} is a {type(a).__name__}.")
    if not out and not allow_empty:
        raise InvalidParameterError(f"{where} must not be empty.")
    return out


def check_atoms(atoms, *, species=None, owner=None, min_distance=0.1, name="atoms"):
    """Validate an ``ase.Atoms`` for evaluation; return ``(positions, cell, pbc, species_idx)``.

    Checks: it is an Atoms, positions finite, periodic directions have a non-degenerate cell,
    the cell is finite, species known (when ``species`` is given).  The minimum interatomic
    distance check (``min_distance`` Å, including periodic images) is done by the neighbour list
    (see :func:`hybridpot.neighbors.neighbor_list`), which sees every pair anyway.
    Nothing is modified; copies are returned.
    """
    from ase import Atoms

    if not isinstance(atoms, Atoms):
        raise InvalidStructureError(
            f"The '{name}' argument{_owner_text(owner)} must be an ase.Atoms. "
            f"Got {type(atoms).__name__} instead.")
    pos = np.array(atoms.positions, dtype=np.float64)
    if not np.all(np.isfinite(pos)):
        bad = np.argwhere(~np.isfinite(pos))[0, 0]
        raise InvalidStructureError(
            f"The '{name}' argument{_owner_text(owner)} has non-finite positions "
            f"(NaN or inf), first at atom {bad}.")
    cell = np.array(atoms.cell.array, dtype=np.float64)
    pbc = np.array(atoms.pbc, dtype=bool)
    if not np.all(np.isfinite(cell)):
        raise InvalidStructureError(
            f"The '{name}' argument{_owner_text(owner)} has a non-finite cell.")
    if pbc.any():
        # every periodic lattice vector must be non-zero and the periodic ones independent
        vecs = cell[pbc]
        sv = np.linalg.svd(vecs, compute_uv=False) if len(vecs) else np.array([1.0])
        if sv.min() < 1e-8 or (pbc.all() and abs(np.linalg.det(cell)) < 1e-8):
            raise InvalidStructureError(
                f"The '{name}' argument{_owner_text(owner)} is periodic along "
                f"{['xyz'[k] for k in range(3) if pbc[k]]} but its cell is degenerate "
                f"(zero volume or zero-length lattice vector): cell={cell.tolist()}.")
    sidx = species_indices(atoms, species, owner) if species is not None else None
    return pos, cell, pbc, sidx
