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


def standardize_labels(structures, label_keys=None, *, require=True):
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

    Returns
    -------
    list of ase.Atoms
        Copies (``info`` and ``arrays`` kept, e.g. ``config_type``) with a
        ``SinglePointCalculator`` holding ``energy``, ``forces`` and ``stress`` (Voigt, eV/Å³)
        of the labels found; unlabelled structures (``require=False``) get no calculator.

    Raises
    ------
    InvalidParameterError
        ``label_keys`` has an unknown kind or a non-string key.
    MissingLabelsError
        A structure has no label (with ``require``), a non-finite or non-numeric label, a
        label of the wrong shape, or a stress and a virial that disagree.
    """
    from ase.calculators.singlepoint import SinglePointCalculator

    from .._labels import check_label_keys, get_labels
    from .._validation import check_structure_list

    keys = check_label_keys(label_keys)
    structures = check_structure_list(structures, "The 'structures' argument")
    out = []
    for k, atoms in enumerate(structures):
        lab = get_labels(atoms, k, require=require, label_keys=keys)
        at = atoms.copy()   # copies info and arrays, drops the calculator
        res = {name: value for name, value in (("energy", lab.energy), ("forces", lab.forces),
                                               ("stress", lab.stress)) if value is not None}
        if res:
            at.calc = SinglePointCalculator(at, **res)
        out.append(at)
    return out


def read_extxyz(path, index=":", *, label_keys=None, require=True):
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
    return standardize_labels(frames, label_keys, require=require)
