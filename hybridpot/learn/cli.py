"""``hybridpot select`` and ``hybridpot learn`` sub-commands (loaded by :mod:`hybridpot.cli`).

``hybridpot select --pool pool.extxyz -n 10 --out selected.extxyz [--model model.hpot]``
    picks ``n`` structures of a pool with a fitted model (``[select]`` section of the config).

``hybridpot learn -c learn.toml [--run-dir DIR] [--report FOLDER]``
    runs, or resumes, an :class:`~hybridpot.learn.ActiveLearner` with the model of the
    ``[descriptor]``, ``[regressor]`` and ``[baseline]`` sections, the oracle, sampler and
    stopping rule of ``[learn]`` (keys in :mod:`hybridpot.config`); ``--report`` then writes
    :func:`hybridpot.learn.write_run_report` of the run directory.

:data:`COMMANDS` is a list of ``(name, help, add_args(subparser), run(args, cfg) -> int)``.
"""

from __future__ import annotations

from pathlib import Path

from .._exceptions import ConfigError, HybridpotError

__all__ = ["COMMANDS", "build_sampler", "build_selector"]


def build_selector(sec, section="select"):
    """The selector of a ``[select]`` / ``[learn]`` table (keys ``method``, ``kind``,
    ``dedup_threshold``, ``seed``); the default method is ``"stratified"`` (maximum force
    variance within k-means strata, :func:`hybridpot.learn.default_selector`).

    Parameters
    ----------
    sec : dict
        The config table.
    section : str, default="select"
        Its name in error messages (``"select"`` or ``"learn"``).

    Returns
    -------
    selector
        An object with ``select(model, pool, n, *, exclude_structures=None)``.

    Raises
    ------
    hybridpot.ConfigError
        For a bad ``kind``, ``dedup_threshold`` or method parameter.
    """
    from ..uq.selection import _KINDS, make_selector

    method = sec.get("method", "stratified")
    if "kind" in sec and sec["kind"] not in _KINDS:
        raise ConfigError(f"{section}.kind must be one of {', '.join(map(repr, _KINDS))}. "
                          f"Got {sec['kind']!r}.")
    if "dedup_threshold" in sec and not float(sec["dedup_threshold"]) >= 0.0:
        raise ConfigError(f"{section}.dedup_threshold must be >= 0 (a scaled descriptor "
                          f"distance). Got {sec['dedup_threshold']!r}.")
    params = {}
    if method == "random":
        params["random_state"] = int(sec.get("seed", 0))
    else:
        if "kind" in sec:
            params["kind"] = sec["kind"]
        if "dedup_threshold" in sec:
            params["dedup_threshold"] = float(sec["dedup_threshold"])
    try:
        if method == "stratified":  # max variance within k-means strata of the pool
            return make_selector("stratified", selector=make_selector("max_variance", **params),
                                 random_state=int(sec.get("seed", 0)))
        return make_selector(method, **params)
    except HybridpotError as e:
        raise ConfigError(f"{section}.method/kind: {e}") from e


def _read(path, key, labels=None, species=None, label_keys=None):
    from ..config import read_structures

    return read_structures([str(path)], key, labels=labels, species=species,
                           label_keys=label_keys)


def _prototype(sec):
    from ..config import bulk_prototype

    st = sec.get("structure", "bulk")
    if st == "bulk":
        species = sec.get("species") or ["Cu"]
        try:
            return bulk_prototype(species[0], sec.get("crystal"), sec.get("lattice_constant"),
                                  "learn")
        except (ValueError, KeyError, RuntimeError) as e:
            if isinstance(e, ConfigError):
                raise
            raise ConfigError(f"learn.crystal/lattice_constant: cannot build bulk "
                              f"{species[0]!r}: {e}") from e
    atoms = _read(st, "learn.structure", labels=False)
    return atoms[0]


def _range(value):
    """A TOML number or array as the sampler takes it: a scalar stays a scalar, an array
    becomes a tuple (the sampler checks the values and names the parameter)."""
    return tuple(value) if isinstance(value, list) else value


def _supercell(sec):
    """``learn.supercell`` (default ``[1, 1, 1]``); a ConfigError unless three positive ints."""
    reps = sec.get("supercell", [1, 1, 1])
    if not (isinstance(reps, list) and len(reps) == 3
            and all(isinstance(r, int) and not isinstance(r, bool) and r > 0 for r in reps)):
        raise ConfigError(f"learn.supercell must be three positive integers. Got {reps!r}.")
    return reps


def build_sampler(sec, pool=None):
    """The sampler of a ``[learn]`` table (``sampler = "rattle" | "disorder" | "pool" |
    "md"``).

    Parameters
    ----------
    sec : dict
        The ``[learn]`` table.
    pool : list of ase.Atoms, optional
        The candidates of ``sampler = "pool"`` (read from ``learn.pool``).

    Returns
    -------
    hybridpot.sampling.Sampler

    Raises
    ------
    hybridpot.ConfigError
        For an unknown sampler, a bad ``supercell``, or ``"pool"`` without a pool.
    """
    from ..sampling import (PoolSampler, RandomDisorderSampler, RattleStrainSampler,
                            UncertaintyMDSampler)

    kind = sec.get("sampler", "rattle")
    reps = _supercell(sec)
    if kind == "rattle":
        return RattleStrainSampler(prototype=_prototype(sec), supercell=tuple(reps),
                                   rattle_std=_range(sec.get("rattle_std", [0.02, 0.15])),
                                   strain_max=float(sec.get("strain_max", 0.03)),
                                   min_distance=float(sec.get("min_distance", 1.5)))
    if kind == "disorder":
        return RandomDisorderSampler(
            species=list(sec.get("species") or ["Cu"]),
            n_atoms=tuple(sec.get("n_atoms", [2, 8])),
            volume_per_atom=tuple(sec.get("volume_per_atom", [10.0, 20.0])),
            min_distance=float(sec.get("min_distance", 2.0)))
    if kind == "pool":
        if pool is None:
            raise ConfigError("learn.sampler = 'pool' needs learn.pool (an extxyz file).")
        return PoolSampler(structures=pool)
    if kind == "md":
        starts = [_prototype(sec) * tuple(reps)]
        mode = sec.get("md_mode", "restart")
        if mode not in ("restart", "on_the_fly"):
            raise ConfigError(f"learn.md_mode must be 'restart' (independent MD runs from the "
                              f"structure) or 'on_the_fly' (one trajectory continued from each "
                              f"labelled frame). Got {mode!r}.")
        return UncertaintyMDSampler(
            starts=starts, temperature_range=tuple(sec.get("temperature_range", [300, 1500])),
            n_steps=int(sec.get("md_steps", 200)),
            sigma_threshold=float(sec.get("sigma_threshold", 0.2)),
            threshold_mode=sec.get("threshold_mode", "absolute"),
            check_interval=sec.get("check_interval", 10),
            timestep_fs=float(sec.get("timestep_fs", 2.0)),
            frames_per_run=sec.get("frames_per_run", 2),
            continue_md=mode == "on_the_fly",
            temperature_schedule=[tuple(p) if isinstance(p, list) else p
                                  for p in sec["temperature_schedule"]]
            if sec.get("temperature_schedule") else None)
    raise ConfigError(f"learn.sampler must be one of 'rattle', 'disorder', 'pool', 'md'. "
                      f"Got {kind!r}.")


# ---------------------------------------------------------------------------- select
def _select_args(p):
    p.add_argument("--pool", help="candidate structures (extxyz; overrides select.pool)")
    p.add_argument("-n", type=int, help="number to select (overrides select.n)")
    p.add_argument("--out", help="extxyz to write (overrides select.output)")
    p.add_argument("--method", help="stratified (default) | max_variance | d_optimal | "
                   "information_per_cost | variance_reduction | facility_location | random")


def cmd_select(args, cfg):
    from ase.io import write

    from ..cli import _load_model

    sec = dict(cfg.get("select", {}))
    if args.method:
        sec["method"] = args.method
    pool_path = args.pool or sec.get("pool")
    if not pool_path:
        raise ConfigError("select.pool: no pool file given (use --pool or select.pool).")
    n = args.n if args.n is not None else sec.get("n", 10)
    if not isinstance(n, int) or n < 1:
        raise ConfigError(f"select.n must be an int >= 1. Got {n!r}.")
    out = Path(args.out or sec.get("output", "selected.extxyz"))
    model = _load_model(args.model or cfg["output"]["model"])
    pool = _read(pool_path, "select.pool", labels=False, species=list(model.species_))
    sel = build_selector(sec)
    idx = sel.select(model, pool, n)
    chosen = []
    for k in idx:
        a = pool[int(k)].copy()
        a.calc = None
        a.info["pool_index"] = int(k)
        chosen.append(a)
    out.parent.mkdir(parents=True, exist_ok=True)
    write(out, chosen, format="extxyz")
    print(f"selected {len(chosen)} of {len(pool)} structures ({sec.get('method', 'stratified')})"
          f": indices {[int(k) for k in idx]} -> {out}")
    return 0


# ---------------------------------------------------------------------------- learn
def _learn_args(p):
    p.add_argument("--run-dir", help="run directory (overrides learn.run_dir)")
    p.add_argument("--report", metavar="FOLDER",
                   help="afterwards write the run's report (σ along the MD trajectory, labels, "
                   "σ before/after each refit) into FOLDER")


def _weighting(value):
    """``[learn] importance_weighting``: ``"none"`` (the default) means no weighting."""
    return None if value in ("none", "None", "") else value


def _candidate_structures(sec, pool):
    """Structures like those the ``[learn]`` sampler proposes, for ``weights.energy = "auto"``
    (only their sizes matter): the pool, the prototype supercell (rattle, md), or one cell of
    each size in ``n_atoms`` (disorder)."""
    kind = sec.get("sampler", "rattle")
    if kind == "pool":
        return list(pool or [])
    if kind == "disorder":
        from ase import Atoms

        n = sec.get("n_atoms", [2, 8])
        lo, hi = (n, n) if isinstance(n, int) else (n if isinstance(n, list) and len(n) == 2
                                                     else (0, -1))
        if not (isinstance(lo, int) and isinstance(hi, int)):
            return []   # invalid: RandomDisorderSampler names it below
        return [Atoms("X" * k) for k in range(max(lo, 1), hi + 1)]
    return [_prototype(sec) * tuple(_supercell(sec))]


def cmd_learn(args, cfg):
    from ..config import (LINEAR_REGRESSORS, build_baseline, build_descriptor,
                          build_regressor, label_keys, resolve_weights)
    from ..potential import HybridPotential
    from . import ActiveLearner

    sec = dict(cfg.get("learn", {}))
    run_dir = args.run_dir or sec.get("run_dir", "al_run")
    pool = _read(sec["pool"], "learn.pool", labels=False) if sec.get("pool") else None
    keys = label_keys(cfg)   # [data] energy_key ... name the labels of the files
    initial = _read(sec["initial"], "learn.initial", labels=True, label_keys=keys) \
        if sec.get("initial") else None
    validation = _read(sec["validation"], "learn.validation", labels=True, label_keys=keys) \
        if sec.get("validation") else None
    species = sec.get("species")
    explicit_order = bool(species)
    if not species:
        ref = pool or initial or [_prototype(sec)]
        species = []
        for a in ref:
            for s in a.get_chemical_symbols():
                if s not in species:
                    species.append(s)
    descriptor = build_descriptor(cfg, species, explicit_order=explicit_order)
    # [fit] weights.energy = "auto": its number for the structures this run will label (the
    # initial set and the sampler's candidates), fixed for all refits
    from ase import Atoms

    candidates = _candidate_structures(sec, pool)
    if not candidates and not initial:
        # nothing to size "auto" on: a sampler setting that proposes nothing (no learn.pool,
        # learn.n_atoms = [5, 2]) gets the sampler's own error, not the weight's
        try:
            sampler = build_sampler(sec, pool)
            if callable(getattr(sampler, "_validate", None)):
                sampler._validate()
        except HybridpotError as e:
            if isinstance(e, ConfigError):
                raise
            raise ConfigError(f"[learn]: {e}") from e
    sizes = [len(a) for a in (initial or []) + candidates]
    weights, note = resolve_weights(cfg["fit"].get("weights"), [Atoms("X" * n) for n in sizes])
    if isinstance(weights, dict) and "energy" not in weights and \
            cfg["regressor"].get("type") in LINEAR_REGRESSORS:
        # as in `hybridpot fit`: a [fit] weights table replaces the defaults whole
        note = ("note: fit.weights has no energy, so energy rows weigh 1 (HybridPotential's "
                "default); the linear regressors' default is energy = \"auto\" (15 x mean "
                "atoms^2): add it to the table")
    if note and not args.quiet:
        print(note)
    model = HybridPotential(descriptor=descriptor, regressor=build_regressor(cfg, descriptor),
                            baseline=build_baseline(cfg), weights=weights)
    if sec.get("sampler") == "md" and not initial and sec.get("md_mode") != "on_the_fly":
        raise ConfigError("learn.sampler = 'md' runs MD with the current model, so it needs "
                          "learn.initial (an extxyz of labelled structures) to fit the first "
                          "one (or learn.md_mode = 'on_the_fly', which labels the first MD "
                          "frame). Got no learn.initial.")
    oracle = sec.get("oracle", "EMT")
    if oracle.upper() != "EMT":
        raise ConfigError(f"learn.oracle: only 'EMT' is built into the command line; use the "
                          f"Python API (ActiveLearner(oracle=calculator)) for {oracle!r}.")
    from ase.calculators.emt import parameters as emt_parameters

    unsupported = [s for s in species if s not in emt_parameters]
    if unsupported:
        raise ConfigError(f"learn.species: the EMT oracle has no parameters for "
                          f"{', '.join(unsupported)}; it knows "
                          f"{', '.join(sorted(emt_parameters))} (use the Python API with "
                          f"another ASE calculator for other elements). Got species {species}.")
    if cfg["baseline"].get("type") == "EMT":
        import sys

        print("hybridpot learn: note: the baseline is EMT and so is the oracle, so the ML "
              "correction has nothing to learn; set [baseline] type = \"none\" (or another "
              "baseline) to learn EMT itself.", file=sys.stderr)
    # on the fly: one label per iteration, so the iteration cap defaults to the label cap
    on_the_fly = sec.get("sampler") == "md" and sec.get("md_mode") == "on_the_fly"
    max_labels = sec.get("max_labels", 50)
    try:
        learner = ActiveLearner(
            model, oracle, build_sampler(sec, pool), build_selector(sec, "learn"),
            run_dir=run_dir, initial=initial, validation=validation,
            n_candidates=sec.get("n_candidates", 32), batch_size=sec.get("batch_size", 4),
            max_labels=max_labels, max_iterations=sec.get(
                "max_iterations", max_labels if on_the_fly else 10),
            target_error=sec.get("target_force_mae"), target_sigma=sec.get("target_sigma"),
            oracle_timeout=sec.get("oracle_timeout"), n_workers=sec.get("n_workers", 1),
            random_state=sec.get("seed", 0), progress=False if args.quiet else None,
            importance_weighting=_weighting(sec.get("importance_weighting", "none")),
            recalibration=_weighting(sec.get("recalibration", "none")),
            max_oracle_seconds=sec.get("max_oracle_seconds"))
        learner.run()
    except HybridpotError as e:
        if isinstance(e, ConfigError):
            raise
        raise ConfigError(f"[learn]: {e}") from e
    last = learner.history_[-1] if learner.history_ else {}
    err = last.get("validation_force_mae")
    if err is None:
        val = ""
    elif err == err:  # not NaN
        val = f"; validation force MAE {err:.4f} eV/Å"
    else:
        val = "; validation force MAE n/a (no force labels in learn.validation)"
    print(f"learn: {len(learner.labelled_)} labels, {len(learner.failures_)} failures, "
          f"{len(learner.history_)} iterations in {run_dir}; stopped: {learner.stop_reason_}"
          + val)
    if args.report:
        from . import write_run_report

        try:
            path = write_run_report(run_dir, args.report)
        except HybridpotError as e:
            raise ConfigError(f"learn --report: {e}") from e
        print(f"run report -> {path}")
    return 0


COMMANDS = [
    ("select", "pick the most informative structures of a pool with a model", _select_args,
     cmd_select),
    ("learn", "run or resume active learning (oracle EMT by default)", _learn_args, cmd_learn),
]
