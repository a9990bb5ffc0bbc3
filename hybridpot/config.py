"""TOML configuration for the command line: schema, defaults, validation, object builders.

Every table and key is checked against the schema below; an unknown key, a value of the wrong
type or a missing file is a :class:`~hybridpot.ConfigError` naming the key.  A section's
``type`` picks the class; the other keys of the section are that class's keyword arguments.

Example (every key optional; these are the defaults of ``hybridpot fit``)::

    [data]
    train = "<package data>/al_gpaw.extxyz"   # extxyz file(s) with energy/forces/stress
                                              # or virial (names: *_key below)
    test = ""                                 # optional; else test_fraction of train is held out
    test_fraction = 0.1
    seed = 0
    species = []                # the model's elements in order, e.g. ["Cu", "Ni"] (LAMMPS
                                # atom types of 'hybridpot export'); [] = order of first
                                # appearance in data.train
    energy_key = "energy"       # label names in the files (every command reading labelled
    forces_key = "forces"       # data): e.g. GAP "dft_energy", "dft_forces", "dft_virial";
    stress_key = "stress"       # MACE "REF_energy", "REF_forces", "REF_stress"; "none" =
    virial_key = "virial"       # not read. energy eV, forces eV/Å, stress eV/Å³ (ASE sign),
                                # virial eV (= -stress * volume, QUIP/GAP); see
                                # hybridpot.io.read_extxyz
    default_sigma = {energy = 0.001, forces = 0.05, virial = 0.05}   # optional: gap_fit's
                                # default_sigma (eV/atom, eV/Å, eV/atom); with it the
                                # training structures' energy_sigma / force_sigma /
                                # virial_sigma and config_type_sigma below become weights
                                # relative to it (hybridpot.io.standardize_labels)
    config_type_sigma = {Liquid = {energy = 0.01, forces = 0.2}}      # optional

    [descriptor]
    type = "PowerSpectrum"      # PowerSpectrum | Bispectrum | ACSF | SNAPBispectrum |
    r_cut = 5.0                 # DescriptorStack (see below)
    n_max = 6
    l_max = 4

    [regressor]
    type = "BayesianLinearRegressor"   # LinearRegressor | ARDLinearRegressor |
                                       # SparseGPRegressor | ...
    # prior_scale = {p = 4}     # linear models: ACEpotentials' smoothness prior
                                # 1 + wn sum n^p + wl sum l^p (PowerSpectrum, Bispectrum, SNAP)
    noise_levels = "shared"     # one noise level; the [fit] weights set the kinds' balance
                                # (random_state of the GP / network / ensemble: data.seed)

    [baseline]
    type = "EMT"                # none | EMT | ZBL | LennardJones | Morse | Buckingham
                                # (EMT takes asap_cutoff = false | true; the others their
                                # parameters, e.g. r_inner, r_cut for ZBL)

    [fit]
    weights = {energy = "auto", forces = 1.0, stress = 100.0}   # per-atom eV, eV/Å, eV/Å³ rows
                                # (linear regressors; 1, 1, 0.1 for the others). energy =
                                # "auto" (linear regressors only): 15 x (mean number of atoms
                                # per training structure with an energy)^2, e.g. 574 for
                                # the shipped Al data, 1.6e5 for 104-atom cells (see
                                # load_config); `hybridpot fit` prints the number
    reference_energies = "fit"  # "fit" | "isolated_atom" (e0 from the one-atom structures
                                # without neighbours, e.g. config_type=isolated_atom; every
                                # one-atom structure stays in the training part of the
                                # split) | {Cu = -0.2, Ni = -0.4} (eV/atom)
    chunk_size = 16
    n_workers = 1

    [output]
    model = "model.hpot"
    report = "report"

    [md]
    structure = "bulk"          # "bulk" (crystal of the model's first species) or a file
                                # readable by ASE (its last frame)
    crystal = "fcc"             # fcc | bcc | sc | diamond | hcp; default: ASE's reference
    lattice_constant = 4.05     # structure of the element (Al: fcc, 4.05 Å; Mo: bcc, 3.15)
    supercell = [3, 3, 3]       # repetitions along the periodic directions (a molecule or
                                # cluster with pbc = False is run as it is)
    ensemble = "langevin"       # nve | langevin | bussi | nose_hoover (NVT) | npt_mtk (NPT,
                                # MTK barostat) | npt (Berendsen: relaxes T and P, does
                                # not sample NPT); bussi and nose_hoover need
                                # ASE >= 3.24, npt_mtk ASE >= 3.25
    temperature_K = 300.0         # initial Maxwell-Boltzmann velocities (no centre-of-mass
                                # motion; no rotation of a molecule or cluster)
    timestep_fs = 1.0
    steps = 1000
    friction = 0.02             # Langevin friction, 1/fs
    # taut_fs = 100.0           # thermostat time constant (bussi, nose_hoover, npt*), fs
    # taup_fs = 1000.0          # barostat time constant (npt, npt_mtk), fs
    # pressure_GPa = 0.0        # target pressure (npt, npt_mtk), GPa
    trajectory = "md.traj"
    seed = 0
    uncertainty_interval = 0    # n >= 1: σ of energy / forces / stress every n steps (needs
                                # a model with a posterior), logged to sigma_log
    sigma_log = "md_sigma.csv"  # step, time_fs, energy_std_eV, max_force_std_eV_per_A, ...
    max_force_std = 0.0         # > 0: stop the run once the largest force σ exceeds it (eV/Å)

    [export]
    prefix = "lammps/model"
    species = []                # element of LAMMPS atom types 1, 2, ... (may repeat, e.g.
                                # ["Cu", "Cu", "Ni"]); [] = the model's trained elements

Per-element descriptor values (SNAPBispectrum ``radelem`` / ``wj`` / ``sinner`` / ``dinner``,
PowerSpectrum and Bispectrum ``species_weights``, the inner switch ``r_inner`` / ``d_inner``
of PowerSpectrum, Bispectrum and ACSF) are best given as tables keyed by element, e.g.
``radelem = {Cu = 0.5, Ni = 0.45}``; a list is read in the model's element order, so with
several elements it needs ``data.species`` (``learn.species``) to fix that order.

Several descriptors concatenated (:class:`~hybridpot.descriptors.DescriptorStack`, e.g. a
many-body block plus a longer-ranged 2-body block): ``type = "DescriptorStack"``, one
``[[descriptor.members]]`` table per member (in block order; each with its own ``type`` and
that class's keys, ``species`` coming from the data as for a single descriptor) and an
optional ``scales`` (one positive factor per member; default all 1).  In TOML, which has no
null, ACSF's ``angular = "none"`` means ``angular=None`` (radial G2 features only)::

    [descriptor]
    type = "DescriptorStack"
    scales = [1.0, 1.0]         # optional

    [[descriptor.members]]
    type = "PowerSpectrum"
    r_cut = 5.0
    n_max = 4
    l_max = 3

    [[descriptor.members]]
    type = "ACSF"
    r_cut = 6.5
    angular = "none"
    radial_etas = [4.0]
    radial_shifts = [1.8, 2.7, 3.6, 4.5, 5.4]

GAP's "2-body + SOAP" with the sparse GP: the radial member enters linearly (a learned pair
term) with ``[regressor] type = "SparseGPRegressor"`` and ``linear_features =
"descriptor.members[1]"`` (or its ``[start, stop]`` columns; columns cutting through a member
are an error).

An average of several copies of one regressor fitted with different random states
(:class:`~hybridpot.regression.EnsembleRegressor`, e.g. sparse GPs on different
inducing-point draws) takes its member template from a ``[regressor.estimator]`` table::

    [regressor]
    type = "EnsembleRegressor"
    n_models = 3
    random_state = 0            # member k gets random_state + k

    [regressor.estimator]
    type = "SparseGPRegressor"
    kernel = "se"
    n_sparse = 1000

Active learning (``hybridpot select`` / ``hybridpot learn``, :mod:`hybridpot.learn.cli`;
both sections optional, values shown are the defaults)::

    [select]
    pool = ""                   # extxyz of candidates (or --pool)
    n = 10
    method = "stratified"       # stratified | max_variance | d_optimal |
                                # information_per_cost | variance_reduction | random
    kind = "forces"             # energy | forces | both (rows used to score candidates;
                                # default "both" for d_optimal and the other greedy methods)
    output = "selected.extxyz"
    dedup_threshold = 1e-3      # scaled descriptor distance of near-duplicates
    seed = 0                    # method = "random" / "stratified" only

    [learn]
    run_dir = "al_run"          # labels.extxyz, state.json, model.hpot, failures.jsonl
    oracle = "EMT"              # only EMT from the command line (any ASE calculator in Python)
    sampler = "rattle"          # rattle | disorder | pool | md
    species = ["Cu"]            # default: from pool / initial / the bulk prototype
    structure = "bulk"          # "bulk" (crystal + lattice_constant of species[0]) or a file
    crystal = "fcc"             # default: ASE's reference structure of species[0]
    lattice_constant = 3.61     # Å; default: ASE's reference value of species[0]
    supercell = [1, 1, 1]
    rattle_std = [0.02, 0.15]   # Å, range (rattle sampler)
    strain_max = 0.03
    min_distance = 1.5          # Å (2.0 for the disorder sampler)
    n_atoms = [2, 8]            # disorder sampler
    volume_per_atom = [10.0, 20.0]   # Å³/atom, disorder sampler
    temperature_range = [300, 1500]  # K, md sampler
    md_steps = 200
    sigma_threshold = 0.2       # eV/Å, md sampler stops above this force σ
    threshold_mode = "absolute" # absolute (eV/Å) | noise (sigma_threshold x fitted force noise)
    md_mode = "restart"         # restart (runs from structure) | on_the_fly (one trajectory
                                # continued from each labelled frame, FLARE's loop)
    check_interval = 10         # md steps between σ checks
    temperature_schedule = []   # on_the_fly: [[step, K], ...] piecewise linear from step 0
                                # (default: temperature_range as a ramp over md_steps)
    timestep_fs = 2.0
    frames_per_run = 2          # md_mode = "restart": most uncertain frames kept per run
    recalibration = "none"      # nll | coverage | ...: recalibrate every refit on validation
    max_oracle_seconds = 0.0    # s of oracle wall time over the run directory; unset: none
    pool = ""                   # extxyz (sampler = "pool")
    initial = ""                # labelled extxyz always in the training set
    validation = ""             # labelled extxyz for the force MAE / target_force_mae
    n_candidates = 32
    batch_size = 4
    max_labels = 50
    max_iterations = 10         # md_mode = "on_the_fly": default max_labels (1 label each)
    target_force_mae = 0.0      # eV/Å; unset: not used
    target_sigma = 0.0          # eV/Å; unset: not used
    method = "stratified"       # as in [select]; kind, dedup_threshold too
    oracle_timeout = 0.0        # s per structure; unset: none
    n_workers = 1               # > 1: Dask LocalCluster for the oracle calls
    seed = 0
    importance_weighting = "none"   # none | strata | nearest (weighted refits, see ActiveLearner)
"""

from __future__ import annotations

import copy
import os
import sys
from pathlib import Path

from ._exceptions import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["DEFAULT_CONFIG", "load_config", "default_data_path", "build_descriptor",
           "auto_energy_weight", "resolve_weights",
           "build_regressor", "build_baseline", "read_structures", "label_keys", "gap_sigmas"]


def _default_data_candidates():
    """Where the shipped dataset may be: the source tree, then ``share/hybridpot`` of the
    install prefix (found from the package's own location for ``--prefix`` / ``--target``
    installs, then the interpreter's, then the ``--user`` one)."""
    import site
    import sysconfig

    here = Path(__file__).resolve().parent
    out = [here / "data" / "al_gpaw.extxyz", here.parent / "data" / "al_gpaw.extxyz"]
    # <prefix>/lib/pythonX.Y/site-packages/hybridpot (POSIX), <prefix>/Lib/site-packages/
    # hybridpot (Windows), <target>/hybridpot (pip --target)
    prefixes = list(here.parents)[:4]
    prefixes += [sysconfig.get_path("data"), sys.prefix, site.getuserbase()]
    for prefix in prefixes:
        p = Path(prefix) / "share" / "hybridpot" / "al_gpaw.extxyz"
        if p not in out:
            out.append(p)
    return out


def default_data_path():
    """The shipped aluminium GPAW dataset (``data/al_gpaw.extxyz`` of the source tree; an
    installed wheel has it in ``<prefix>/share/hybridpot/``, ``<prefix>`` being the
    environment's, the ``--prefix`` / ``--target`` folder or the ``--user`` base).  When it is
    nowhere, the source-tree path (which does not exist)."""
    candidates = _default_data_candidates()
    for p in candidates:
        if p.exists():
            return p
    return candidates[1]


DEFAULT_CONFIG = {
    "data": {"train": "", "test": "", "test_fraction": 0.1, "seed": 0},
    "descriptor": {"type": "PowerSpectrum", "r_cut": 5.0, "n_max": 6, "l_max": 4},
    "regressor": {"type": "BayesianLinearRegressor", "noise_levels": "shared"},
    "baseline": {"type": "EMT"},
    "fit": {"weights": {"energy": "auto", "forces": 1.0, "stress": 100.0}, "chunk_size": 16,
            "n_workers": 1},
    "output": {"model": "model.hpot", "report": "report"},
    "md": {"structure": "bulk", "supercell": [3, 3, 3],
           "ensemble": "langevin", "temperature_K": 300.0, "timestep_fs": 1.0, "steps": 1000,
           "friction": 0.02, "trajectory": "md.traj", "seed": 0, "uncertainty_interval": 0,
           "sigma_log": "md_sigma.csv", "max_force_std": 0.0},
    "export": {"prefix": "lammps/model", "species": []},
}

# key -> allowed python types (sections with "type" accept extra keys: class kwargs)
_SCHEMA = {
    "data": {"train": (str, list), "test": (str, list), "test_fraction": (float, int),
             "seed": (int,), "species": (list,), "energy_key": (str,), "forces_key": (str,),
             "stress_key": (str,), "virial_key": (str,), "default_sigma": (dict,),
             "config_type_sigma": (dict,)},
    "fit": {"weights": (dict,), "group_weights": (dict,), "chunk_size": (int,),
            "n_workers": (int,), "reference_energies": (str, dict)},
    "output": {"model": (str,), "report": (str,)},
    "md": {"structure": (str,), "crystal": (str,), "lattice_constant": (float, int),
           "supercell": (list,),
           "ensemble": (str,), "temperature_K": (float, int), "timestep_fs": (float, int),
           "steps": (int,), "friction": (float, int), "trajectory": (str,), "seed": (int,),
           "pressure_GPa": (float, int), "taut_fs": (float, int), "taup_fs": (float, int),
           "uncertainty_interval": (int,), "sigma_log": (str,), "max_force_std": (float, int)},
    "export": {"prefix": (str,), "species": (list,)},
    # active learning (hybridpot.learn.cli): `hybridpot select` and `hybridpot learn`
    "select": {"pool": (str,), "n": (int,), "method": (str,), "kind": (str,),
               "output": (str,), "dedup_threshold": (float, int), "seed": (int,)},
    "learn": {"run_dir": (str,), "oracle": (str,), "sampler": (str,), "species": (list,),
              "structure": (str,), "crystal": (str,), "lattice_constant": (float, int),
              "supercell": (list,), "rattle_std": (list, float, int),
              "strain_max": (float, int), "min_distance": (float, int), "n_atoms": (list,),
              "volume_per_atom": (list,), "temperature_range": (list,), "md_steps": (int,),
              "sigma_threshold": (float, int), "threshold_mode": (str,), "md_mode": (str,),
              "check_interval": (int,), "timestep_fs": (float, int), "frames_per_run": (int,),
              "temperature_schedule": (list,),
              "recalibration": (str,), "max_oracle_seconds": (float, int),
              "pool": (str,), "initial": (str,),
              "validation": (str,), "n_candidates": (int,), "batch_size": (int,),
              "max_labels": (int,), "max_iterations": (int,),
              "target_force_mae": (float, int), "target_sigma": (float, int),
              "method": (str,), "kind": (str,), "dedup_threshold": (float, int),
              "oracle_timeout": (float, int), "n_workers": (int,), "seed": (int,),
              "importance_weighting": (str,)},
}
_CLASS_SECTIONS = ("descriptor", "regressor", "baseline")
#: regressor types whose default [fit] weights are DEFAULT_CONFIG's (one shared noise level)
LINEAR_REGRESSORS = ("LinearRegressor", "BayesianLinearRegressor", "ARDLinearRegressor")
_SECTIONS = tuple(DEFAULT_CONFIG) + tuple(s for s in ("select", "learn") if s not in DEFAULT_CONFIG)
#: ``[fit] weights.energy = "auto"``: AUTO_ENERGY_WEIGHT x (mean atoms per structure)^2
#: (see :func:`auto_energy_weight`; chosen on validation splits, :func:`load_config`)
AUTO_ENERGY_WEIGHT = 15.0
_WEIGHT_KINDS = ("energy", "forces", "stress")


def auto_energy_weight(structures):
    """The energy-row weight of ``[fit] weights.energy = "auto"`` for ``structures``.

    ``AUTO_ENERGY_WEIGHT * n_mean**2`` (15 n_mean²), ``n_mean`` the mean number of atoms of
    the structures that carry an energy label (of all of them when none does; the weight
    then multiplies no row).  A structure's force rows (3 n) grow with its size and its
    energy row (eV/atom) does not; on validation splits the best energy / force compromise
    of the linear models grew about as n_mean², from ~600-2000 for 6-atom cells to ~2e5 for
    104-atom cells (see :func:`load_config`).

    Parameters
    ----------
    structures : list of ase.Atoms
        The training structures (labels as ``hybridpot fit`` reads them).

    Returns
    -------
    weight : float
        Weight of an energy row (eV/atom) relative to a force component (eV/Å) of weight 1.
    n_mean : float
        The mean number of atoms it was computed from.

    Raises
    ------
    hybridpot.ConfigError
        For an empty list.
    """
    from ._labels import get_labels

    if not structures:
        raise ConfigError("fit.weights.energy = 'auto' needs at least one training structure. "
                          "Got none.")
    sizes = [len(a) for a in structures]
    with_energy = [len(a) for k, a in enumerate(structures)
                   if get_labels(a, k, require=False).energy is not None]
    n_mean = float(sum(with_energy or sizes)) / len(with_energy or sizes)
    return AUTO_ENERGY_WEIGHT * n_mean ** 2, n_mean


def resolve_weights(weights, structures):
    """``[fit] weights`` with ``energy = "auto"`` replaced by its number for ``structures``.

    Parameters
    ----------
    weights : dict or None
        ``cfg["fit"]["weights"]`` (validated by :func:`load_config`).
    structures : list of ase.Atoms
        The training structures of the fit.

    Returns
    -------
    weights : dict or None
        Floats only (None stays None: HybridPotential's defaults).
    note : str or None
        One line saying what ``"auto"`` resolved to (None without ``"auto"``).

    Raises
    ------
    hybridpot.ConfigError
        For an empty ``structures`` with ``energy = "auto"``.
    """
    if weights is None or weights.get("energy") != "auto":
        return weights, None
    w, n_mean = auto_energy_weight(structures)
    note = (f"fit.weights.energy = 'auto': {AUTO_ENERGY_WEIGHT:g} x ({n_mean:.2f} atoms per "
            f"training structure)^2 = {w:.6g}")
    return {**weights, "energy": w}, note


def _check_fit_weights(cfg, source):
    """ConfigError for a ``[fit] weights`` value that is not a number >= 0 (or ``"auto"`` for
    the energy of a linear regressor); the message names the key."""
    weights = cfg["fit"].get("weights")
    if not isinstance(weights, dict):
        return
    for k, v in weights.items():
        if k not in _WEIGHT_KINDS:
            raise ConfigError(f"{source}: unknown key fit.weights.{k}; allowed keys: "
                              f"{', '.join(_WEIGHT_KINDS)}.")
        if k == "energy" and v == "auto":
            reg = cfg["regressor"].get("type")
            if reg not in LINEAR_REGRESSORS:
                raise ConfigError(
                    f"{source}: fit.weights.energy = 'auto' is for the linear regressors "
                    f"({', '.join(LINEAR_REGRESSORS)}), whose one shared noise level the "
                    f"weights balance; [regressor] type {reg!r} needs a number >= 0 (e.g. "
                    f"1.0). Got 'auto'.")
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0 or \
                v == float("inf"):
            allowed = "a finite number >= 0" + (' or "auto"' if k == "energy" else "")
            raise ConfigError(f"{source}: fit.weights.{k} must be {allowed}. Got {v!r}.")


def _merge(base, over):
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict) and k not in ("weights",):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def validate_config(cfg, source="config"):
    """Check sections, keys and value types; raise :class:`ConfigError` naming the key."""
    for sec, body in cfg.items():
        if sec not in _SECTIONS:
            raise ConfigError(f"{source}: unknown section [{sec}]; allowed sections: "
                              f"{', '.join(_SECTIONS)}.")
        if not isinstance(body, dict):
            raise ConfigError(f"{source}: [{sec}] must be a table. Got {body!r}.")
        if sec in _CLASS_SECTIONS:
            if "type" in body and not isinstance(body["type"], str):
                raise ConfigError(f"{source}: {sec}.type must be a string. "
                                  f"Got {body['type']!r}.")
            continue
        schema = _SCHEMA.get(sec)
        if schema is None:
            continue
        for k, v in body.items():
            if k not in schema:
                raise ConfigError(f"{source}: unknown key {sec}.{k}; allowed keys: "
                                  f"{', '.join(sorted(schema))}.")
            types = schema[k]
            if isinstance(v, bool) or not isinstance(v, types):
                names = " or ".join(t.__name__ for t in types)
                raise ConfigError(f"{source}: {sec}.{k} must be {names}. Got {v!r}.")
            if k == "seed" and v < 0:  # numpy seeds are non-negative
                raise ConfigError(f"{source}: {sec}.seed must be an int >= 0. Got {v!r}.")
    return cfg


def load_config(path=None, overrides=None):
    """Defaults merged with the TOML file at ``path`` (if any) and ``overrides``; validated.

    Paths in ``[data]`` are resolved relative to the config file's folder.  Without
    ``[fit] weights`` the linear regressors, whose single noise level the weights balance,
    get energy / forces / stress = ``"auto"`` / 1 / 100, and the others HybridPotential's
    1 / 1 / 0.1 (sparse GP, network, ensemble: their noise levels per label kind set the
    balance).  ``"auto"`` (:func:`auto_energy_weight`, resolved by ``hybridpot fit`` on its
    training part, which prints it and stores the number in the model) is
    ``15 * n_mean**2``, ``n_mean`` the mean number of atoms per training structure with an
    energy label: a structure's force rows (3 n) grow with its size and its energy row
    (eV/atom) does not.  Until 0.2.0 the energy weight was 1000 whatever the cell size,
    which suits 4-12-atom cells (the shipped data) and underfits larger ones.  ``hybridpot
    learn`` resolves ``"auto"`` once, on the sizes of the structures its run will label
    (``learn.initial`` and the sampler's candidates), and keeps that number for every refit.
    Python callers resolve it with :func:`resolve_weights`.

    Chosen on validation data only (never a test set): 5-fold CV of the training part of
    ``hybridpot fit``'s split of the shipped Al data, and 20 % of each config_type of the
    mlearn *training* sets (seeds 0, 1; EMT baseline for Al, Ni, Cu, ZBL(1, 2) for Mo, Si),
    CLI default model (PS 5.0 Å 6/4, Bayesian linear, one shared noise level), forces 1,
    stress 100.  Validation energy MAE (meV/atom), force MAE (eV/Å), stress MAE (GPa), mean
    of the folds / splits (n_mean = 6.2, 104, 105, 52, 62)::

        energy weight    Al             Ni             Cu             Mo             Si
        1000 (0.2.0)     7.27 .053 .67  3.04 .015 .38  2.47 .007 .34  10.5 .111 .79  9.87 .088 .61
        1e5 (constant)   8.43 .104 .93  0.45 .016 1.1  0.27 .008 .88  4.21 .118 .59  5.18 .104 .57
        300 n_mean       7.08 .056 .69  0.63 .016 1.0  0.35 .008 .84  5.15 .114 .58  5.34 .091 .51
        1000 n_mean      7.12 .066 .74  0.44 .016 1.1  0.27 .008 .88  4.40 .116 .58  5.16 .098 .54
        15 n_mean² auto  7.51 .051 .66  0.41 .016 1.1  0.26 .009 .89  4.50 .115 .58  5.17 .097 .54

    (weights 574, 1.6e5, 1.6e5, 4.1e4, 5.7e4).  Rule chosen: the smallest worst case over
    the five sets of (E/E* + F/F*)/2, E* and F* the best validation energy and force MAE of
    any candidate on that set (constants 1e2-1e6, c n_mean for c = 10-1e4, c n_mean² for
    c = 3-100, and per-structure weights c n and c n² through ``fit_weight_energy``): 15
    n_mean² 1.15 (c = 10-20: 1.15-1.16; mean over the sets 1.11), per-structure 20 n²
    1.14 (mean 1.12; no single number to print and store), 700 n_mean 1.18, 1e5 1.72,
    1000 5.2.  Ni and Cu stresses are offset from the energy derivative
    (data/mlearn/README.md), hence their stress MAE rising with the energy weight.  The
    rule is calibrated on mean cell sizes of 6-105 atoms; for much larger cells check the
    force error or give a number.  Earlier, on the mlearn Mo *test* set (54-atom cells),
    energy weight 1e3 / 1e4 / 1e5 gave energy MAE 11.4 / 5.4 / 4.6 meV/atom, force MAE
    0.122 / 0.125 / 0.133 eV/Å, (100) surface energy 2.63 / 2.91 / 3.03 J/m² (DFT slabs:
    3.20), C44 91 / 105 / 114 GPa (DFT stresses: 109); benchmarks/mlearn.py uses 1e5.

    Parameters
    ----------
    path : str or path-like, optional
        A TOML config file; None: the defaults only.
    overrides : dict, optional
        Nested tables merged over the file (e.g. ``{"md": {"steps": 100}}``, what the
        command-line options set); relative ``[data]`` paths in them are resolved like the
        file's.

    Returns
    -------
    dict
        The full, validated configuration (every section; ``data.train`` / ``data.test`` as
        lists of absolute paths, the shipped aluminium data when no training file is given).

    Raises
    ------
    hybridpot.ConfigError
        For a missing or invalid TOML file, an unknown section or key, or a value of the wrong
        type (e.g. a ``[fit] weights`` value that is not a number >= 0, or ``"auto"`` for
        another kind than energy or with a regressor that is not linear); the message names
        the file and the key.
    """
    cfg = copy.deepcopy(DEFAULT_CONFIG)
    base_dir = Path.cwd()
    user = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {str(path)!r} does not exist.")
        try:
            user = tomllib.loads(path.read_text())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise ConfigError(f"{path}: not valid TOML: {e}") from e
        validate_config(user, str(path))
        for sec in _CLASS_SECTIONS:  # a new type replaces the default kwargs
            if sec in user and "type" in user[sec] and \
                    user[sec]["type"] != DEFAULT_CONFIG[sec]["type"]:
                cfg[sec] = {}
        cfg = _merge(cfg, user)
        base_dir = path.parent
    if overrides:
        cfg = _merge(cfg, overrides)
    validate_config(cfg, str(path) if path else "config")
    # validated above: any [fit] given is a table
    if not any("weights" in src.get("fit", {}) for src in (user, overrides or {})) and \
            cfg["regressor"].get("type") not in LINEAR_REGRESSORS:
        # the default [fit] weights balance the kinds of the linear models' single noise
        # level; kernel and network regressors have their own noise per kind
        from .potential import DEFAULT_WEIGHTS

        cfg["fit"]["weights"] = dict(DEFAULT_WEIGHTS)
    _check_fit_weights(cfg, str(path) if path else "config")
    for key in ("train", "test"):
        v = cfg["data"][key]
        if key == "train" and isinstance(v, list) and not v:
            raise ConfigError(f"{path if path else 'config'}: data.train = [] names no file; "
                              "give one or more extxyz files, or leave data.train out for the "
                              "shipped aluminium data.")
        if isinstance(v, list) and not all(isinstance(x, str) and x for x in v):
            raise ConfigError(f"data.{key} must be a file name or a list of file names. "
                              f"Got {v!r}.")
        vals = v if isinstance(v, list) else ([v] if v else [])
        cfg["data"][key] = [str(p if os.path.isabs(p) else base_dir / p) for p in vals]
    if not cfg["data"]["train"]:
        cfg["data"]["train"] = [str(default_data_path())]
    return cfg


#: crystal structures of ``[md]`` / ``[learn]`` ``structure = "bulk"``
CRYSTALS = ("fcc", "bcc", "sc", "diamond", "hcp")


def bulk_prototype(symbol, crystal=None, lattice_constant=None, key="md"):
    """The conventional cell of ``symbol`` in ``crystal`` with ``lattice_constant`` (Å).

    Either may be None: ASE's reference state of the element (``ase.data.reference_states``)
    fills it in (e.g. Cu fcc 3.61 Å, Mo bcc 3.15 Å, Si diamond 5.43 Å).  ``hcp`` uses the
    reference c/a (1.633 when the element has none) and the orthorhombic 4-atom cell; the
    others the cubic cell.  ``key`` names the config section in errors.
    """
    from ase.build import bulk
    from ase.data import atomic_numbers, reference_states

    ref = reference_states[atomic_numbers[symbol]] if symbol in atomic_numbers else None
    ref = ref or {}
    if crystal is None:
        crystal = ref.get("symmetry")
        if crystal not in CRYSTALS:
            raise ConfigError(f"{key}.crystal: ASE has no simple reference crystal for "
                              f"{symbol} (its reference state is {crystal!r}); set {key}.crystal "
                              f"to one of {', '.join(CRYSTALS)} and {key}.lattice_constant, or "
                              f"give a structure file as {key}.structure.")
        if lattice_constant is None and crystal == ref.get("symmetry"):
            lattice_constant = ref.get("a")
    if crystal not in CRYSTALS:
        raise ConfigError(f"{key}.crystal must be one of {', '.join(CRYSTALS)}. "
                          f"Got {crystal!r}.")
    if lattice_constant is None:
        if ref.get("symmetry") != crystal or ref.get("a") is None:
            raise ConfigError(f"{key}.lattice_constant: ASE has no reference lattice constant "
                              f"of {symbol} in {crystal}; set {key}.lattice_constant (Å).")
        lattice_constant = ref["a"]
    a = float(lattice_constant)
    if crystal == "hcp":
        ca = float(ref.get("c/a", (8.0 / 3.0) ** 0.5)) if ref.get("symmetry") == "hcp" \
            else (8.0 / 3.0) ** 0.5
        return bulk(symbol, "hcp", a=a, c=ca * a, orthorhombic=True)
    return bulk(symbol, crystal, a=a, cubic=True)


def label_keys(cfg):
    """The ``label_keys`` dict of ``[data]`` ``energy_key`` / ``forces_key`` / ``stress_key`` /
    ``virial_key`` (``"none"`` -> None: not read), or None when none is set.

    Parameters
    ----------
    cfg : dict
        A configuration from :func:`load_config`.

    Returns
    -------
    dict of str to (str or None), or None
        Label kind -> key name (None: that kind is not read).

    Raises
    ------
    hybridpot.ConfigError
        For an empty key name.
    """
    data = cfg.get("data", {})
    out = {}
    for kind in ("energy", "forces", "stress", "virial"):
        v = data.get(f"{kind}_key")
        if v is None:
            continue
        if not v.strip():
            raise ConfigError(f"data.{kind}_key must be a key name such as 'dft_{kind}', or "
                              f"'none' to not read {kind} labels. Got {v!r}.")
        out[kind] = None if v in ("none", "None") else v
    return out or None


def gap_sigmas(cfg):
    """``[data] default_sigma`` / ``config_type_sigma`` as keyword arguments of
    :func:`read_structures` (empty when not set).

    Parameters
    ----------
    cfg : dict
        A configuration from :func:`load_config`.

    Returns
    -------
    dict
        ``{"default_sigma": ..., "config_type_sigma": ...}`` (the keys given).

    Raises
    ------
    hybridpot.ConfigError
        A sigma table that :func:`hybridpot.io.standardize_labels` refuses.
    """
    from ._exceptions import InvalidParameterError
    from .io.extxyz import _check_sigmas

    data = cfg.get("data", {})
    out = {k: data[k] for k in ("default_sigma", "config_type_sigma") if data.get(k)}
    try:   # check the tables once, naming the config keys
        _check_sigmas(out.get("default_sigma"), out.get("config_type_sigma"))
    except InvalidParameterError as e:
        msg = str(e).replace("The 'default_sigma' parameter", "data.default_sigma").replace(
            "The 'config_type_sigma' parameter", "data.config_type_sigma")
        raise ConfigError(msg) from e
    return out


def read_structures(paths, key="data.train", *, labels=None, species=None, label_keys=None,
                    default_sigma=None, config_type_sigma=None):
    """Read every structure of the given files with ``ase.io.read`` and check each one.

    Parameters
    ----------
    paths : list of str
        Files readable by ``ase.io.read`` (every frame is read).
    key : str, default="data.train"
        The config key (or option) the paths come from, named in every error.
    labels : bool or None, default=None
        True: every structure needs an energy, forces or stress label; False: labels are not
        looked at; None: labels, when present, must be finite.
    species : list of str, optional
        The elements a model knows; a structure with another element is an error.
    label_keys : dict or None, default=None
        Key names of the labels (``[data] energy_key`` etc., :func:`label_keys`); given, the
        structures returned carry their labels as ``calc.results`` energy, forces and stress
        (:func:`hybridpot.io.standardize_labels`; a virial becomes ``-virial / V``).
    default_sigma, config_type_sigma : dict or None, default=None
        gap_fit's configuration weighting (``[data]`` keys, :func:`gap_sigmas`): the
        structures' per-configuration sigmas become ``fit_weight_<kind>`` factors
        (:func:`hybridpot.io.standardize_labels`); errors name ``key``.

    Returns
    -------
    list of ase.Atoms
        Every frame of every file, in order.

    Raises
    ------
    ConfigError
        A file is missing, unreadable or empty.
    InvalidStructureError, UnknownSpeciesError, MissingLabelsError
        A structure has non-finite positions or cell, a degenerate periodic cell, atoms
        closer than 0.1 Å, an element outside ``species``, or a missing / non-finite label;
        the message names ``key``, the file and the structure's index in it.
    """
    from ase.io import read

    from ._exceptions import HybridpotError

    out = []
    for p in paths:
        if os.path.isdir(p):
            raise ConfigError(f"{key}: {p!r} is a folder; give a structure file (extxyz).")
        if not os.path.isfile(p):
            defaults = _default_data_candidates()
            if Path(p) in defaults:  # data.train left out, and the shipped data is not there
                looked = ", ".join(str(d.parent) for d in defaults)
                raise ConfigError(f"{key} is not set and the shipped aluminium data "
                                  f"(al_gpaw.extxyz) is not installed (looked in "
                                  f"{looked}); set data.train to your extxyz file(s).")
            raise ConfigError(f"{key}: file {p!r} does not exist.")
        try:
            frames = read(p, ":")
        except Exception as e:  # ASE raises many kinds on malformed files
            raise ConfigError(f"{key}: cannot read {p!r}: {type(e).__name__}: {e}") from e
        for k, atoms in enumerate(frames):
            try:
                _check_structure(atoms, k, labels, species, label_keys)
                if labels is not False and (label_keys is not None or default_sigma or
                                            config_type_sigma):
                    from .io.extxyz import standardize_labels

                    frames[k] = standardize_labels(
                        [atoms], label_keys, require=bool(labels), default_sigma=default_sigma,
                        config_type_sigma=config_type_sigma)[0]
            except HybridpotError as e:
                name = f"structure {k} ({atoms.get_chemical_formula()})"
                msg = str(e)
                if msg.lower().startswith(name.lower() + " "):   # label messages name it too
                    msg = msg[len(name) + 1:]
                raise type(e)(f"{key}: {name} of {p!r}: {msg}") from e
        out.extend(frames)
    if not out:
        raise ConfigError(f"{key}: no structures in {paths}.")
    return out


def _check_keys(cls, body, section, prefix, reserved=()):
    """ConfigError for a key of ``body`` (the table ``section``) that is not a keyword of
    ``cls``'s constructor; the message starts with ``prefix`` and lists the allowed keys."""
    import inspect

    try:
        params = inspect.signature(cls).parameters
    except (TypeError, ValueError):  # pragma: no cover - builtins without a signature
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    allowed = sorted(k for k in params if k not in ("self",) + tuple(reserved))
    for key in body:
        if key in reserved:
            raise ConfigError(f"{section}.{key} is not allowed: hybridpot sets it (the species "
                              "come from the training data).")
        if key not in params:
            raise ConfigError(f"{prefix}: unknown key {section}.{key}; allowed keys: type, "
                              f"{', '.join(allowed)}.")


def _check_structure(atoms, index, labels, species, label_keys=None):
    """The checks of :func:`read_structures` on one structure (typed errors)."""
    from ._exceptions import UnknownSpeciesError
    from ._labels import get_labels
    from .neighbors import neighbor_list

    if species is not None:
        unknown = sorted(set(atoms.get_chemical_symbols()) - set(species))
        if unknown:
            raise UnknownSpeciesError(f"it contains {', '.join(unknown)}, which the model "
                                      f"does not know (model species: {', '.join(species)}).")
    neighbor_list(atoms, 0.5, min_distance=0.1)  # finite positions, cell, no overlaps
    if labels is not False:
        get_labels(atoms, index, require=bool(labels), label_keys=label_keys)


def _build(section, cfg, registry, extra=None):
    body = dict(cfg[section])
    name = body.pop("type", None)
    if name not in registry:
        raise ConfigError(f"{section}.type must be one of {sorted(registry)}. Got {name!r}.")
    _check_keys(registry[name], body, section, f"[{section}] type {name!r}",
                reserved=tuple(extra or ()))
    kwargs = {**(extra or {}), **body}
    try:
        return registry[name](**kwargs)
    except TypeError as e:
        raise ConfigError(f"[{section}] type {name!r}: {e}") from e


def _acsf_none(body):
    """TOML has no null: ACSF's ``angular = "none"`` is ``angular=None`` (radial only)."""
    if body.get("type") == "ACSF" and body.get("angular") in ("none", "None"):
        body = {**body, "angular": None}
    return body


def _build_stack(body, species):
    """A :class:`DescriptorStack` from ``[descriptor]`` with ``[[descriptor.members]]``."""
    from ._exceptions import InvalidParameterError
    from .descriptors import DESCRIPTORS

    unknown = sorted(set(body) - {"type", "members", "scales"})
    if unknown:
        raise ConfigError(f"unknown key descriptor.{unknown[0]} for type 'DescriptorStack'; "
                          "allowed keys: members, scales (descriptor options go in the "
                          "[[descriptor.members]] tables).")
    members = body.get("members")
    if not isinstance(members, list) or not members or \
            not all(isinstance(m, dict) for m in members):
        raise ConfigError("descriptor.members must be a non-empty array of tables "
                          "([[descriptor.members]], each with a 'type'). "
                          f"Got {members!r}.")
    allowed = sorted(k for k in DESCRIPTORS if k != "DescriptorStack")
    built = []
    for n, m in enumerate(members):
        key = f"descriptor.members[{n}]"
        name = m.get("type")
        if name not in allowed:
            raise ConfigError(f"{key}.type must be one of {allowed}. Got {name!r}.")
        if "species" in m:
            raise ConfigError(f"{key}.species is not allowed: the species of every member "
                              "come from the training data.")
        kwargs = {k: v for k, v in _acsf_none(m).items() if k != "type"}
        _check_keys(DESCRIPTORS[name], kwargs, key, f"{key} (type {name!r})",
                    reserved=("species",))
        try:
            built.append(DESCRIPTORS[name](species=list(species), **kwargs))
        except TypeError as e:
            raise ConfigError(f"{key} (type {name!r}): {e}") from e
    scales = body.get("scales")
    if scales is not None:
        if not isinstance(scales, list) or len(scales) != len(built) or any(
                isinstance(v, bool) or not isinstance(v, (int, float)) for v in scales):
            raise ConfigError(f"descriptor.scales must be a list of {len(built)} positive "
                              f"numbers (one per member). Got {scales!r}.")
        scales = [float(v) for v in scales]
    stack = DESCRIPTORS["DescriptorStack"](built, scales=scales)
    # validate now: a bad member parameter is a one-line error naming the member and key
    for n, m in enumerate(built):
        try:
            m._validate()
        except InvalidParameterError as e:
            raise ConfigError(f"descriptor.members[{n}] (type {type(m).__name__!r}): "
                              f"{str(e).splitlines()[0]}") from e
    try:
        stack._validate()
    except InvalidParameterError as e:
        raise ConfigError(f"[descriptor] type 'DescriptorStack': "
                          f"{str(e).splitlines()[0]}") from e
    return stack


#: descriptor keys holding one value per element (in the descriptor's species order)
PER_ELEMENT_KEYS = ("radelem", "wj", "species_weights", "sinner", "dinner", "r_inner",
                    "d_inner")


def _per_element_values(body, key, species, explicit_order):
    """``body`` with its per-element keys (:data:`PER_ELEMENT_KEYS`) as lists in the order of
    ``species``: a table keyed by element is reordered; a list is taken as it is only for one
    element or an order the config fixed (``data.species`` / ``learn.species``)."""
    out = dict(body)
    for name in PER_ELEMENT_KEYS:
        v = body.get(name)
        if isinstance(v, dict):
            missing = [s for s in species if s not in v]
            extra = sorted(set(v) - set(species))
            if missing or extra:
                raise ConfigError(
                    f"{key}.{name} must give one value per element of the model "
                    f"{list(species)}" + (f"; missing {missing}" if missing else "")
                    + (f"; {extra} are not elements of the model" if extra else "")
                    + f". Got {v!r}.")
            out[name] = [v[s] for s in species]
        elif isinstance(v, list) and len(species) > 1 and not explicit_order:
            example = ", ".join(f"{s} = ..." for s in species)
            raise ConfigError(
                f"{key}.{name} is a list, but the element order of this model is that of "
                f"first appearance in the data ({list(species)}), not one the config fixes: "
                f"give a table keyed by element, e.g. {name} = {{{example}}}, or fix the "
                f"order with data.species (learn.species for 'hybridpot learn'). "
                f"Got {v!r}.")
    return out


def build_descriptor(cfg, species, *, explicit_order=False):
    """The descriptor of ``[descriptor]`` for the given species.

    ``type = "DescriptorStack"`` builds every ``[[descriptor.members]]`` table for
    ``species`` and stacks them (optional ``scales``); see the module docstring.
    Per-element values (:data:`PER_ELEMENT_KEYS`: SNAP ``radelem`` / ``wj`` / ``sinner`` /
    ``dinner``, SO(3) ``species_weights``, inner switch ``r_inner`` / ``d_inner``) may be tables
    keyed by element (``radelem = {Cu = 0.5, Ni = 0.45}``); a list is accepted for one
    element or when ``explicit_order`` (the config fixed the species order: ``data.species``
    or ``learn.species``), else it is a :class:`~hybridpot.ConfigError` (the order of first
    appearance in a data file is an accident of the file).

    Parameters
    ----------
    cfg : dict
        A configuration from :func:`load_config`.
    species : list of str
        The model's elements, in order.
    explicit_order : bool, default=False
        Whether the config fixed the species order (allows per-element lists).

    Returns
    -------
    hybridpot.descriptors.Descriptor

    Raises
    ------
    hybridpot.ConfigError
        For an unknown descriptor type or key, or a bad value (the message names the key).
    """
    from .descriptors import DESCRIPTORS

    body = _acsf_none(dict(cfg["descriptor"]))
    if body.get("type") == "DescriptorStack":
        members = body.get("members")
        if isinstance(members, list):
            body["members"] = [
                _per_element_values(m, f"descriptor.members[{n}]", species, explicit_order)
                if isinstance(m, dict) else m for n, m in enumerate(members)]
        return _build_stack(body, species)
    body = _per_element_values(body, "descriptor", species, explicit_order)
    return _build("descriptor", {"descriptor": body}, DESCRIPTORS, {"species": list(species)})


def _linear_block(value, descriptor, key):
    """``linear_features`` of the config: ``"descriptor.members[k]"`` -> that member's
    ``(start, stop)``; numbers are checked against the members of a ``DescriptorStack``."""
    import re

    blocks = None
    if descriptor is not None and hasattr(descriptor, "block_slices"):
        blocks = [(sl.start, sl.stop) for sl in descriptor.block_slices()]
    members = "" if blocks is None else "; the descriptor members' columns are " + ", ".join(
        f"descriptor.members[{k}] = [{a}, {b}]" for k, (a, b) in enumerate(blocks))
    if isinstance(value, str):
        m = re.fullmatch(r"\s*descriptor\.members\[(\d+)\]\s*", value)
        if m is None or blocks is None or int(m.group(1)) >= len(blocks):
            raise ConfigError(
                f"{key} must be a number of trailing features, [start, stop], or "
                f"'descriptor.members[k]' naming a member of a DescriptorStack descriptor"
                f"{members}. Got {value!r}.")
        return tuple(blocks[int(m.group(1))])
    if blocks is None or isinstance(value, bool):
        return value
    n = blocks[-1][1]
    if isinstance(value, int):
        span = (n - value, n)
    elif isinstance(value, list) and len(value) == 2 and all(
            isinstance(v, int) and not isinstance(v, bool) for v in value):
        span = tuple(value)
    else:
        return value   # the regressor's own validation names the problem
    edges = {0, n} | {a for a, _ in blocks}
    if 0 <= span[0] < span[1] <= n and not (span[0] in edges and span[1] in edges):
        raise ConfigError(
            f"{key} = {value!r} selects the columns [{span[0]}, {span[1]}), which cut through a "
            f"descriptor member{members}: give whole members, e.g. "
            f"'descriptor.members[{len(blocks) - 1}]'.")
    return value


def build_regressor(cfg, descriptor=None):
    """The regressor of ``[regressor]``.

    ``type = "EnsembleRegressor"`` takes its member template from a ``[regressor.estimator]``
    table (with its own ``type``).  A regressor with a ``random_state`` parameter (sparse GP,
    network, ensemble) gets ``data.seed`` (default 0) unless the table sets it, so that a
    config always fits the same model.

    The sparse GP's ``linear_features`` (GAP's "2-body + SOAP": a block that enters
    linearly) may name a member of a ``DescriptorStack``, ``linear_features =
    "descriptor.members[1]"``, instead of counting its columns; numbers that cut through a
    member are a :class:`~hybridpot.ConfigError` listing the members' columns.

    Parameters
    ----------
    cfg : dict
        A configuration from :func:`load_config`.
    descriptor : hybridpot.descriptors.Descriptor or None, default=None
        The model's descriptor (:func:`build_descriptor`), needed to resolve and check
        ``linear_features`` against the members of a ``DescriptorStack``.

    Returns
    -------
    hybridpot.regression.Regressor
        Unfitted.

    Raises
    ------
    hybridpot.ConfigError
        For an unknown regressor type or key, or a bad value (the message names the key).
    """
    import inspect

    from .regression import REGRESSORS

    body = dict(cfg["regressor"])
    if body.get("type") == "EnsembleRegressor" and isinstance(body.get("estimator"), dict):
        est = dict(body["estimator"])
        if "linear_features" in est:
            est["linear_features"] = _linear_block(est["linear_features"], descriptor,
                                                   "regressor.estimator.linear_features")
        body["estimator"] = est
    if "linear_features" in body:
        body["linear_features"] = _linear_block(body["linear_features"], descriptor,
                                                "regressor.linear_features")
    if isinstance(body.get("prior_scale"), dict):
        body["prior_scale"] = _smoothness_prior(body["prior_scale"], descriptor)
    cls = REGRESSORS.get(body.get("type"))
    if cls is not None and "random_state" not in body and \
            "random_state" in inspect.signature(cls).parameters:
        # reproducible by default: the same config fits the same model (sparse-point draws,
        # network initialisation); the Python classes keep scikit-learn's None
        body["random_state"] = int(cfg.get("data", {}).get("seed", 0))
    if body.get("type") == "EnsembleRegressor" and isinstance(body.get("estimator"), dict):
        body["estimator"] = _build("regressor.estimator",
                                   {"regressor.estimator": body["estimator"]}, REGRESSORS)
    return _build("regressor", {"regressor": body}, REGRESSORS)


def _smoothness_prior(table, descriptor):
    """``[regressor] prior_scale = {p = 4, wn = 1, wl = 1}``: ACEpotentials' algebraic
    smoothness prior of the descriptor's features
    (:func:`hybridpot.regression.smoothness_prior`)."""
    from ._exceptions import InvalidParameterError
    from .regression import smoothness_prior

    unknown = sorted(set(table) - {"p", "wn", "wl"})
    if unknown:
        raise ConfigError(f"regressor.prior_scale takes the keys p, wn, wl (the smoothness "
                          f"prior) or is a list of numbers. Got unknown key(s) {unknown}.")
    try:
        return smoothness_prior(descriptor, **table)
    except InvalidParameterError as exc:
        raise ConfigError(f"regressor.prior_scale: {exc}") from exc


def build_baseline(cfg):
    """The baseline of ``[baseline]`` (``type = "none"`` for pure ML, ``"EMT"`` for
    :class:`hybridpot.baselines.EMT`, the numba equal of ASE's EMT).

    Parameters
    ----------
    cfg : dict
        A configuration from :func:`load_config`.

    Returns
    -------
    hybridpot.baselines.Baseline or None
        None for ``type = "none"``.

    Raises
    ------
    hybridpot.ConfigError
        For an unknown baseline type or key, or a bad value (the message names the key).
    """
    from . import baselines as B

    body = dict(cfg["baseline"])
    name = body.pop("type", "none")
    if name in ("none", "None", ""):
        return None
    if name == "EMT":
        unknown = sorted(set(body) - {"asap_cutoff"})
        if unknown:
            raise ConfigError(f"[baseline] type 'EMT' takes only the key 'asap_cutoff'. Got "
                              f"unknown key(s) {unknown}.")
        if not isinstance(body.get("asap_cutoff", False), bool):
            raise ConfigError(f"baseline.asap_cutoff must be true or false. Got "
                              f"{body['asap_cutoff']!r}.")
        return B.EMT(**body)
    registry = {k: getattr(B, k) for k in ("ZBL", "LennardJones", "Morse", "Buckingham")
                if hasattr(B, k)}
    return _build("baseline", {"baseline": {"type": name, **body}}, registry)
