"""Labelled structures from extxyz files written with other codes' label names.

QUIP/GAP files carry ``energy`` / ``forces`` / ``virial`` (or ``dft_energy``, ``dft_forces``,
``dft_virial``), MACE files ``REF_energy`` / ``REF_forces`` / ``REF_stress``.  hybridpot reads
its labels from ``atoms.calc.results`` (and ``atoms.info`` / ``atoms.arrays``) under the names
of :data:`hybridpot._labels.DEFAULT_LABEL_KEYS`; the functions here read the labels under
the names you give and store them as a ``SinglePointCalculator`` (energy eV, forces eV/Å,
stress eV/Å³ in ASE's sign and Voigt order; a virial becomes ``stress = -virial / V``), so
that ``HybridPotential.fit`` / ``evaluate``, reports, recalibration and the active learner
all see them.
"""

from __future__ import annotations

__all__ = ["read_extxyz", "standardize_labels"]


#: gap_fit's per-configuration sigma keys (atoms.info) and the label kind they weight
GAP_SIGMA_KINDS = {"energy_sigma": "energy", "force_sigma": "forces", "virial_sigma": "virial"}
#: hybridpot's weight key of each gap_fit sigma kind
_WEIGHT_OF = {"energy": "fit_weight_energy", "forces": "fit_weight_forces",
              "virial": "fit_weight_stress"}


def _positive(value, name):
    import numbers

    import numpy as np

    from .._exceptions import InvalidParameterError

    if isinstance(value, bool) or not isinstance(value, numbers.Real) or \
            not np.isfinite(value) or not value > 0:
        raise InvalidParameterError(f"{name} must be a float in (0, inf). Got {value!r} instead.")
    return float(value)


def _sigma_table(table, name):
    from .._exceptions import InvalidParameterError

    if not isinstance(table, dict) or not set(table) <= set(_WEIGHT_OF):
        raise InvalidParameterError(
            f"The '{name}' parameter must be a dict with keys among {list(_WEIGHT_OF)} (eV/atom, "
            f"eV/Å, eV/atom: gap_fit's default_sigma with sigma_per_atom=T). Got {table!r} "
            f"instead.")
    return {k: _positive(v, f"The '{name}' parameter's {k!r} entry") for k, v in table.items()}


def _gap_weights(atoms, index, default, by_type):
    """Per-kind weight factors of gap_fit's sigmas, relative to ``default`` (in place)."""
    import numpy as np

    from .._exceptions import InvalidParameterError

    n = len(atoms)
    ct = str(atoms.info.get("config_type", "default"))
    base = {**default, **by_type.get(ct, {})}
    for key, kind in GAP_SIGMA_KINDS.items():
        if kind not in default:
            if key in atoms.info:
                raise InvalidParameterError(
                    f"Structure {index} has a gap_fit '{key}' but the 'default_sigma' parameter "
                    f"has no {kind!r} entry to weigh it against. Got {sorted(default)}.")
            continue
        per_atom = np.sqrt(n) if kind != "forces" else 1.0   # sigma_per_atom=T
        ref = default[kind] * per_atom
        own = _positive(atoms.info.pop(key), f"The '{key}' of structure {index}") \
            if key in atoms.info else base[kind] * per_atom
        factor = (ref / own) ** 2
        if factor != 1.0:
            w = _WEIGHT_OF[kind]
            atoms.info[w] = float(atoms.info.get(w, 1.0)) * factor


def _check_sigmas(default_sigma, config_type_sigma):
    """Validated ``(default, by_type)`` sigma tables of :func:`standardize_labels`."""
    from .._exceptions import InvalidParameterError

    default = None if default_sigma is None else _sigma_table(default_sigma, "default_sigma")
    by_type = {}
    if config_type_sigma is not None:
        if default is None or not isinstance(config_type_sigma, dict):
            raise InvalidParameterError(
                "The 'config_type_sigma' parameter must be a dict of config_type to a sigma "
                "dict, and needs 'default_sigma'. Got "
                f"config_type_sigma={config_type_sigma!r}, default_sigma={default_sigma!r}.")
        by_type = {str(ct): _sigma_table(t, f"config_type_sigma[{ct!r}]")
                   for ct, t in config_type_sigma.items()}
        for ct, t in by_type.items():
            if not set(t) <= set(default):
                raise InvalidParameterError(
                    f"The 'config_type_sigma' parameter gives {sorted(set(t) - set(default))} "
                    f"sigmas for {ct!r}, which 'default_sigma' lacks (the weights are relative "
                    f"to it). Got default_sigma={default_sigma!r}.")
    return default, by_type


def standardize_labels(structures, label_keys=None, *, require=True, default_sigma=None,
                       config_type_sigma=None):
    """Copies of ``structures`` whose labels are stored where hybridpot reads them.

    Parameters
    ----------
    structures : list of ase.Atoms
    label_keys : dict or None
        Label kind -> key name (any of ``"energy"``, ``"forces"``, ``"stress"``,
        ``"virial"``), e.g. ``{"energy": "dft_energy", "forces": "dft_forces", "virial":
        "dft_virial"}`` (GAP) or ``{"energy": "REF_energy", "forces": "REF_forces",
        "stress": "REF_stress"}`` (MACE); kinds not given keep their default key
        (:func:`hybridpot._labels.check_label_keys`), so name every kind of a file that also
        holds a model's predictions under the default names (``energy`` / ``forces`` /
        ``stress`` written by a calculator), with None for the kinds it has no label of,
        e.g. ``{"energy": "REF_energy", "forces": "REF_forces", "stress": None, "virial":
        None}``.  The energy is eV (total), forces
        eV/Å, stress eV/Å³ (ASE sign: positive under tension; 3x3, 9 or 6 Voigt numbers),
        virial eV (``-stress * volume``, QUIP/GAP's sign; 3x3, 9 or 6 numbers).
    require : bool, default=True
        A structure without any label under these keys is an error.
    default_sigma : dict or None, default=None
        gap_fit's ``default_sigma`` (with its default ``sigma_per_atom=T``): ``{"energy":
        eV/atom, "forces": eV/Å, "virial": eV/atom}`` (any of them).  Given, gap_fit's
        per-configuration ``atoms.info`` sigmas ``energy_sigma`` (eV, total),
        ``force_sigma`` (eV/Å), ``virial_sigma`` (eV) and ``config_type_sigma`` become
        per-structure weight factors relative to it, ``atoms.info["fit_weight_energy"]``,
        ``["fit_weight_forces"]``, ``["fit_weight_stress"]`` = ``(sigma_default /
        sigma_structure)**2`` with the energy and virial sigmas of a structure of ``N`` atoms
        taken as ``sqrt(N)`` times the per-atom ones, as gap_fit does; the converted sigma
        keys are removed from the copies.  This reproduces gap_fit's weight of each
        configuration relative to a default one of the same size; the noise of a default
        structure is the regressor's (fix it as ``SparseGPRegressor(noise=...)``), and
        between sizes hybridpot's per-atom energy noise differs from gap_fit's ``sqrt(N)``
        scaling (see the GP's "From gap_fit" notes).  Per-atom
        ``force_atom_sigma`` cannot be expressed (``HybridPotential.fit`` warns).
    config_type_sigma : dict or None, default=None
        gap_fit's ``config_type_sigma``: ``{config_type: {"energy": ..., "forces": ...,
        "virial": ...}}`` in the units of ``default_sigma`` (kinds left out keep the
        default); needs ``default_sigma``.  A structure's own ``energy_sigma`` etc. win.

    Returns
    -------
    list of ase.Atoms
        Copies (``info`` and ``arrays`` kept, e.g. ``config_type``) with a
        ``SinglePointCalculator`` holding ``energy``, ``forces`` and ``stress`` (Voigt, eV/Å³)
        of the labels found; unlabelled structures (``require=False``) get no calculator.

    Raises
    ------
    InvalidParameterError
        ``label_keys`` has an unknown kind or a non-string key; a sigma is not a positive
        number, or a structure has a per-configuration sigma of a kind ``default_sigma``
        lacks.
    MissingLabelsError
        A structure has no label (with ``require``), a non-finite or non-numeric label, a
        label of the wrong shape, or a stress and a virial that disagree.
    """
    from ase.calculators.singlepoint import SinglePointCalculator

    from .._labels import check_label_keys, get_labels
    from .._validation import check_structure_list

    keys = check_label_keys(label_keys)
    structures = check_structure_list(structures, "The 'structures' argument")
    default, by_type = _check_sigmas(default_sigma, config_type_sigma)
    out = []
    for k, atoms in enumerate(structures):
        lab = get_labels(atoms, k, require=require, label_keys=keys)
        at = atoms.copy()   # copies info and arrays, drops the calculator
        if default is not None:
            _gap_weights(at, k, default, by_type)
        res = {name: value for name, value in (("energy", lab.energy), ("forces", lab.forces),
                                               ("stress", lab.stress)) if value is not None}
        if res:
            at.calc = SinglePointCalculator(at, **res)
        out.append(at)
    return out


def read_extxyz(path, index=":", *, label_keys=None, require=True, default_sigma=None,
                config_type_sigma=None):
    """Read an extxyz file (``ase.io.read``) and store its labels where hybridpot reads them.

    Parameters
    ----------
    path : str or path-like
    index : str or int, default=":"
        Frames to read (``ase.io.read``'s ``index``; an int reads one frame, returned in a
        list of one).
    label_keys : dict or None
        Key names of the labels in the file, see :func:`standardize_labels`.
    require : bool, default=True
        Every frame needs a label.
    default_sigma, config_type_sigma : dict or None, default=None
        gap_fit's weighting of the configurations, see :func:`standardize_labels`.

    Returns
    -------
    list of ase.Atoms
        See :func:`standardize_labels`.

    Examples
    --------
    A gap_fit training file with ``dft_energy``, ``dft_forces``, ``dft_virial`` and
    ``isolated_atom`` frames:

    >>> frames = read_extxyz("train.xyz", label_keys={           # doctest: +SKIP
    ...     "energy": "dft_energy", "forces": "dft_forces", "virial": "dft_virial"})
    >>> model = HybridPotential(descriptor, SparseGPRegressor(),  # doctest: +SKIP
    ...                         reference_energies="isolated_atom").fit(frames)
    """
    from ase.io import read

    frames = read(path, index)
    if not isinstance(frames, list):
        frames = [frames]
    return standardize_labels(frames, label_keys, require=require, default_sigma=default_sigma,
                              config_type_sigma=config_type_sigma)
