"""Reading DFT labels (energy, forces, stress or virial) from ``ase.Atoms`` without triggering a
calculation.

Label keys
----------
By default the labels are what ``ase.io.read`` of an extxyz file or an ASE calculator leaves on
the structure: ``atoms.calc.results`` (or ``atoms.info`` / ``atoms.arrays``) ``"energy"`` (eV;
``"free_energy"`` when there is no energy), ``"forces"`` (eV/Å), ``"stress"`` (eV/Å³, ASE sign,
Voigt or 3x3) and ``atoms.info["virial"]`` (eV, 3x3 or 9 numbers, the QUIP/GAP convention
``virial = -stress * volume``).  Other key names (GAP's ``dft_energy`` / ``dft_forces`` /
``dft_virial``, MACE's ``REF_energy`` / ``REF_forces`` / ``REF_stress``) are selected with a
``label_keys`` dict with any of the keys ``"energy"``, ``"forces"``, ``"stress"``, ``"virial"``
(see :func:`check_label_keys`; :func:`hybridpot.io.read_extxyz` and
:func:`hybridpot.io.standardize_labels` store such labels where every part of hybridpot reads
them).
"""

from __future__ import annotations

import numpy as np

from ._exceptions import InvalidStructureError, MissingLabelsError

__all__ = ["Labels", "get_labels", "voigt_from_any", "voigt_to_matrix", "matrix_to_voigt",
           "DEFAULT_LABEL_KEYS", "check_label_keys"]

#: label kinds a ``label_keys`` dict may name, and their default keys
DEFAULT_LABEL_KEYS = {"energy": "energy", "forces": "forces", "stress": "stress",
                      "virial": "virial"}

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


def check_label_keys(label_keys, name="label_keys"):
    """``label_keys`` merged over :data:`DEFAULT_LABEL_KEYS` (a new dict).

    Parameters
    ----------
    label_keys : dict or None
        Label kind (``"energy"``, ``"forces"``, ``"stress"``, ``"virial"``) -> the key of
        ``atoms.info`` / ``atoms.arrays`` / ``atoms.calc.results`` holding it, e.g.
        ``{"energy": "dft_energy", "forces": "dft_forces", "virial": "dft_virial"}``; kinds not
        given keep their default key; None does not read that kind (e.g. ``{"virial": None}``
        ignores the virials of a file).
    name : str
        The parameter named in errors.

    Raises
    ------
    InvalidParameterError
        An unknown kind, or a key that is not a non-empty string.
    """
    from ._exceptions import InvalidParameterError

    if label_keys is None:
        return dict(DEFAULT_LABEL_KEYS)
    if not isinstance(label_keys, dict):
        raise InvalidParameterError(
            f"The '{name}' parameter must be a dict of label kind to key name, e.g. "
            f"{{'energy': 'dft_energy', 'forces': 'dft_forces', 'virial': 'dft_virial'}}. "
            f"Got {type(label_keys).__name__} instead.")
    out = dict(DEFAULT_LABEL_KEYS)
    for kind, key in label_keys.items():
        if kind not in DEFAULT_LABEL_KEYS:
            raise InvalidParameterError(
                f"The '{name}' parameter may only have the keys {list(DEFAULT_LABEL_KEYS)}. "
                f"Got {kind!r} instead.")
        if key is not None and (not isinstance(key, str) or not key.strip()):
            raise InvalidParameterError(
                f"The '{name}' parameter must map {kind!r} to a non-empty key name (a "
                f"string), or None to not read that kind. Got {key!r} instead.")
        out[kind] = key
    return out


def _lookup(atoms, key, per_atom=False):
    """``atoms.calc.results[key]``, else ``atoms.arrays[key]`` (``per_atom``) or
    ``atoms.info[key]``; None when absent (or ``key`` is None)."""
    if key is None:
        return None
    calc = atoms.calc
    if calc is not None:
        res = getattr(calc, "results", None) or {}
        if key in res and res[key] is not None:
            return res[key]
    store = atoms.arrays if per_atom else atoms.info
    if key in store and key not in ("numbers", "positions"):
        return store[key]
    return None


#: words of info / arrays keys that look like labels under another name (named in errors)
_LABEL_WORDS = ("energy", "force", "stress", "virial")


def _label_like_keys(atoms, keys):
    """``(info_keys, arrays_keys)`` that look like labels but are not the selected keys."""
    used = set(keys.values()) | {"free_energy", "energies"}

    def like(k):
        low = str(k).lower()
        return k not in used and any(w in low for w in _LABEL_WORDS) and \
            not any(w in low for w in ("sigma", "weight", "std"))

    return ([k for k in atoms.info if like(k)], [k for k in atoms.arrays if like(k)])


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


def get_labels(atoms, index=0, *, require=True, label_keys=None):
    """Return the :class:`Labels` stored on ``atoms`` (calculator results, or info/arrays).

    Looks at ``atoms.calc.results`` (what ``ase.io.read`` of extxyz or a SinglePointCalculator
    gives) and falls back to ``atoms.info`` (energy, stress, virial) and ``atoms.arrays``
    (forces).  Never runs a calculator.  A virial (eV, 3x3, 9 or 6 Voigt numbers, QUIP/GAP
    sign ``virial = -stress * volume``) becomes the stress ``-virial / V`` (eV/Å³) when the
    structure has no stress label; when it has both they must agree (relative 1e-6, absolute
    1e-8 eV/Å³).  Stress and virial labels of a structure that is not periodic in 3-D are
    not used.

    Parameters
    ----------
    atoms : ase.Atoms
    index : int
        Position of the structure, named in errors.
    require : bool, default=True
        A structure without any label is an error.
    label_keys : dict or None
        Key names of the labels (see :func:`check_label_keys`); default
        :data:`DEFAULT_LABEL_KEYS` (the energy falls back to ``"free_energy"`` only then).

    Raises
    ------
    MissingLabelsError
        When ``require`` and the structure has no label at all (the message names keys of
        ``atoms.info`` / ``atoms.arrays`` that look like labels under another name), when a
        label contains NaN or inf (a corrupt label is an error; an absent one is allowed),
        or when its stress and virial disagree.
    """
    keys = check_label_keys(label_keys)
    e = _lookup(atoms, keys["energy"])
    if e is None and keys["energy"] == "energy":
        e = _lookup(atoms, "free_energy")
    f = _lookup(atoms, keys["forces"], per_atom=True)
    s = _lookup(atoms, keys["stress"])
    v = _lookup(atoms, keys["virial"])
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
    if v is not None:
        v = _number(v, "virial", index, None)
        if v.shape not in ((3, 3), (9,), (6,)):
            raise MissingLabelsError(f"The virial label ({keys['virial']!r}) of structure "
                                     f"{index} must have 9 (3x3) or 6 (Voigt) numbers, eV. "
                                     f"Got shape {v.shape} instead.")
        v = voigt_from_any(v)
        if not np.all(np.isfinite(v)):
            raise MissingLabelsError(f"The virial label of structure {index} contains NaN or "
                                     f"inf; labels must be finite.")
    if not np.all(atoms.pbc):
        s = v = None  # stress (and virial) are only defined for 3-D periodic cells
    if v is not None:
        from_virial = -v / atoms.get_volume()
        if s is None:
            s = from_virial
        elif not np.allclose(s, from_virial, rtol=1e-6,
                             atol=max(1e-6 * float(np.max(np.abs(s))), 1e-8)):
            raise MissingLabelsError(
                f"The stress label ({keys['stress']!r}) and the virial label "
                f"({keys['virial']!r}) of structure {index} disagree: -virial / volume = "
                f"{np.round(from_virial, 6).tolist()} eV/Å³, stress = "
                f"{np.round(s, 6).tolist()} eV/Å³ (Voigt xx, yy, zz, yz, xz, xy). Remove one, "
                f"or select another key with label_keys.")
    lab = Labels(e, f, s)
    if require and lab.empty:
        info_k, arr_k = _label_like_keys(atoms, keys)
        hint = ""
        if info_k or arr_k:
            found = "; ".join(x for x in (
                f"atoms.info has {info_k}" if info_k else "",
                f"atoms.arrays has {arr_k}" if arr_k else "") if x)
            example = {}
            for k in info_k + arr_k:
                kind = next(w for w in _LABEL_WORDS if w in str(k).lower())
                kind = "forces" if kind == "force" else kind
                if kind not in example and (kind == "forces") == (k in arr_k):
                    example[kind] = k
            hint = (f" It has labels under other names ({found}): select them with "
                    f"label_keys={example} (hybridpot.io.read_extxyz; in a config: [data] "
                    f"energy_key, forces_key, stress_key, virial_key).")
        used = ", ".join(f"{k}={v!r}" for k, v in keys.items())
        raise MissingLabelsError(
            f"Structure {index} ({atoms.get_chemical_formula()}) carries no label: it needs an "
            f"energy, forces, stress or virial in atoms.calc.results (e.g. from ase.io.read of "
            f"an extxyz file) or in atoms.info / atoms.arrays (keys looked at: {used}).{hint}")
    return lab
