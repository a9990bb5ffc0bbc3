"""Reading DFT labels (energy, forces, stress) from ``ase.Atoms`` without triggering a calculation."""

from __future__ import annotations

import numpy as np

from ._exceptions import InvalidStructureError, MissingLabelsError

__all__ = ["Labels", "get_labels", "voigt_from_any", "voigt_to_matrix", "matrix_to_voigt"]

VOIGT = ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))


def voigt_to_matrix(v):
    """(6,) Voigt (xx, yy, zz, yz, xz, xy) → symmetric (3, 3)."""
    v = np.asarray(v, dtype=float)
    m = np.empty(v.shape[:-1] + (3, 3))
    for k, (a, b) in enumerate(VOIGT):
        m[..., a, b] = v[..., k]
        m[..., b, a] = v[..., k]
    return m


def matrix_to_voigt(m):
    """(3, 3) → (6,) Voigt, symmetrising the off-diagonal pairs."""
    m = np.asarray(m, dtype=float)
    return np.stack([0.5 * (m[..., a, b] + m[..., b, a]) for a, b in VOIGT], axis=-1)


def voigt_from_any(s):
    """Accept a (6,) Voigt or a (3, 3) stress and return (6,) Voigt."""
    s = np.asarray(s, dtype=float)
    if s.shape == (6,):
        return s.copy()
    if s.shape == (3, 3):
        return matrix_to_voigt(s)
    if s.shape == (9,):
        return matrix_to_voigt(s.reshape(3, 3))
    raise InvalidStructureError(f"A stress label must have shape (6,) or (3, 3). Got {s.shape}.")


class Labels:
    """DFT labels of one structure; absent kinds are ``None``.

    Attributes
    ----------
    energy : float or None
        Total energy, eV.
    forces : ndarray (n_atoms, 3) or None
        eV/Å.
    stress : ndarray (6,) or None
        ASE sign, Voigt order, eV/Å³.
    """

    __slots__ = ("energy", "forces", "stress")

    def __init__(self, energy, forces, stress):
        self.energy, self.forces, self.stress = energy, forces, stress

    @property
    def empty(self):
        return self.energy is None and self.forces is None and self.stress is None


def _lookup(atoms, key):
    calc = atoms.calc
    if calc is not None:
        res = getattr(calc, "results", None) or {}
        if key in res and res[key] is not None:
            return res[key]
    if key in ("energy", "free_energy", "stress") and key in atoms.info:
        return atoms.info[key]
    if key == "forces" and "forces" in atoms.arrays:
        return atoms.arrays["forces"]
    return None


def _number(value, kind, index, shape):
    """``value`` as float64 (a scalar when ``shape == ()``); a label that is not numeric (an
    extxyz ``energy=abc``, a scalar energy of several values) is a MissingLabelsError, not a
    raw ValueError."""
    try:
        a = np.array(value, dtype=float)
        return float(a.reshape(())) if shape == () else a
    except (TypeError, ValueError):
        raise MissingLabelsError(
            f"The {kind} label of structure {index} must be "
            f"{'a number' if shape == () else 'an array of numbers'}. Got {value!r} instead.") \
            from None


def get_labels(atoms, index=0, *, require=True):
    """Return the :class:`Labels` stored on ``atoms`` (calculator results, or info/arrays).

    Looks at ``atoms.calc.results`` (what ``ase.io.read`` of extxyz or a SinglePointCalculator
    gives) and falls back to ``atoms.info["energy"|"free_energy"|"stress"]`` and
    ``atoms.arrays["forces"]``.  Never runs a calculator.

    Raises
    ------
    MissingLabelsError
        When ``require`` and the structure has no label at all, or when a label contains NaN
        or inf (a corrupt label is an error; an absent one is allowed).
    """
    e = _lookup(atoms, "energy")
    if e is None:
        e = _lookup(atoms, "free_energy")
    f = _lookup(atoms, "forces")
    s = _lookup(atoms, "stress")
    if e is not None:
        e = _number(e, "energy", index, ())
        if not np.isfinite(e):
            raise MissingLabelsError(f"The energy label of structure {index} is {e}; labels "
                                     f"must be finite (remove the label to skip it).")
    if f is not None:
        f = _number(f, "forces", index, None)
        if f.shape != (len(atoms), 3):
            raise MissingLabelsError(f"The forces label of structure {index} must have shape "
                                     f"{(len(atoms), 3)}. Got {f.shape} instead.")
        if not np.all(np.isfinite(f)):
            raise MissingLabelsError(f"The forces label of structure {index} contains NaN or "
                                     f"inf; labels must be finite.")
    if s is not None:
        s = voigt_from_any(_number(s, "stress", index, None))
        if not np.all(np.isfinite(s)):
            raise MissingLabelsError(f"The stress label of structure {index} contains NaN or "
                                     f"inf; labels must be finite.")
        if not np.all(atoms.pbc):
            s = None  # stress is only defined for 3-D periodic cells
    lab = Labels(e, f, s)
    if require and lab.empty:
        raise MissingLabelsError(
            f"Structure {index} ({atoms.get_chemical_formula()}) carries no label: it needs an "
            f"energy, forces or stress in atoms.calc.results (e.g. from ase.io.read of an "
            f"extxyz file) or in atoms.info / atoms.arrays.")
    return lab
