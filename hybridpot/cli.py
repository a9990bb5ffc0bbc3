"""Command line: ``hybridpot fit | evaluate | md | report | export | properties | select |
learn``, driven by a TOML config (keys and defaults: :mod:`hybridpot.config`).

``hybridpot fit`` with no config fits the shipped aluminium GPAW data with the defaults of
:data:`hybridpot.config.DEFAULT_CONFIG` and writes ``model.hpot`` and a report folder.
Errors in the config, paths or data print one line to stderr and exit with code 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

from . import __version__
from ._exceptions import ConfigError, HybridpotError, InvalidParameterError

__all__ = ["main"]


def _progress_disabled(args):
    # tqdm's ``disable``: None lets it switch itself off when stderr is not a TTY; --quiet
    # forces it off (True)
    return True if args.quiet else None


def _split(structures, cfg, species=None):
    test_paths = cfg["data"]["test"]
    if test_paths:
        from .config import label_keys, read_structures

        # the test set may only hold elements of the training data (checked before fitting)
        return structures, read_structures(test_paths, "data.test", labels=True,
                                           species=species, label_keys=label_keys(cfg))
    frac = float(cfg["data"]["test_fraction"])
    if not 0.0 <= frac < 1.0:
        raise ConfigError(f"data.test_fraction must be in [0, 1). Got {frac!r}.")
    rng = np.random.default_rng(int(cfg["data"]["seed"]))
    idx = rng.permutation(len(structures))
    n_test = int(round(frac * len(structures)))
    test_idx = set(int(i) for i in idx[:n_test])
    if cfg["fit"].get("reference_energies") == "isolated_atom":
        # the isolated atoms give e0: they stay in the training part (as in gap_fit)
        test_idx = {i for i in test_idx if len(structures[i]) > 1}
    test = [a for i, a in enumerate(structures) if i in test_idx]
    train = [a for i, a in enumerate(structures) if i not in test_idx]
    return train, test



def _configured_species(cfg):
    """``data.species`` as a list of element symbols, or None when not given (or empty)."""
    from ._exceptions import InvalidParameterError
    from ._validation import check_species_list

    value = cfg["data"].get("species")
    if not value:
        return None
    try:
        return list(check_species_list(value, "species"))
    except InvalidParameterError as e:
        raise ConfigError(f"data.species must be a list of distinct chemical symbols such as "
                          f"['Cu', 'Ni']. Got {value!r}.") from e


def _species_of(structures):
    seen = []
    for a in structures:
        for s in a.get_chemical_symbols():
            if s not in seen:
                seen.append(s)
    return seen


def _load_model(path):
    from .potential import HybridPotential

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"model file {str(p)!r} does not exist (fit one with 'hybridpot fit').")
    return HybridPotential.load(p)


def _output_path(path, key):
    """``Path(path)`` with its folder created; a ConfigError naming ``key`` if impossible."""
    p = Path(path)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"{key}: cannot create the folder of {str(p)!r}: "
                          f"{e.strerror or e}.") from e
    if p.is_dir():
        raise ConfigError(f"{key}: {str(p)!r} is a folder; give a file name.")
    return p


def _print_metrics(title, m):
    def part(name, key, factor, fmt, unit):
        v = m[key]
        if not np.isfinite(v):  # no structure carries this label kind
            return f"{name} MAE n/a (no {name} labels)"
        return f"{name} MAE {factor * v:{fmt}} {unit}"

    print(f"{title}: {part('energy', 'energy_mae', 1000.0, '.2f', 'meV/atom')}, "
          f"{part('force', 'force_mae', 1.0, '.4f', 'eV/Å')}, "
          f"{part('stress', 'stress_mae', 160.21766, '.3f', 'GPa')} "
          f"({m['n_structures']} structures)")


def cmd_fit(args, cfg):
    from .config import (LINEAR_REGRESSORS, build_baseline, build_descriptor, build_regressor,
                         gap_sigmas, label_keys, read_structures, resolve_weights)
    from .potential import HybridPotential

    if not str(cfg["output"]["model"]).strip():
        raise ConfigError("output.model must be a file name such as 'model.hpot'. Got ''.")
    out = _output_path(cfg["output"]["model"], "output.model")   # checked before the fit
    fixed = _configured_species(cfg)
    data = read_structures(cfg["data"]["train"], "data.train", labels=True, species=fixed,
                           label_keys=label_keys(cfg), **gap_sigmas(cfg))
    species = fixed or _species_of(data)
    train, test = _split(data, cfg, species)
    fitcfg = cfg["fit"]
    # energy = "auto": its number for the training part (printed below, stored in the model)
    weights, weight_note = resolve_weights(fitcfg.get("weights"), train)
    if isinstance(weights, dict) and "energy" not in weights and \
            cfg["regressor"].get("type") in LINEAR_REGRESSORS:
        # a [fit] weights table replaces the defaults whole: a missing energy is not "auto"
        from .potential import DEFAULT_WEIGHTS

        weight_note = (f"note: fit.weights has no energy, so energy rows weigh "
                       f"{DEFAULT_WEIGHTS['energy']:g} (HybridPotential's default); the linear "
                       f"regressors' default is energy = \"auto\" (15 x mean atoms^2): add it "
                       f"to the table")
    descriptor = build_descriptor(cfg, species, explicit_order=bool(fixed))
    model = HybridPotential(
        descriptor=descriptor, regressor=build_regressor(cfg, descriptor),
        baseline=build_baseline(cfg), weights=weights,
        group_weights=fitcfg.get("group_weights"),
        reference_energies=fitcfg.get("reference_energies", "fit"),
        chunk_size=fitcfg.get("chunk_size", 16), n_workers=fitcfg.get("n_workers", 1),
        verbose=not args.quiet)
    model.fit(train)
    model.save(out)
    print(f"fitted {type(model.regressor).__name__} on {type(model.descriptor).__name__} "
          f"({model.descriptor.n_features} features) for {species} with "
          f"{len(train)} structures in {model.fit_time_:.1f} s -> {out}")
    if weight_note:
        print(weight_note)
    from .report import error_table, format_error_table

    for name, part in (("train", train), ("test", test)):
        if not part:
            continue
        table = error_table(model, part)   # per config_type, and "all" (= evaluate)
        _print_metrics(name, table["all"])
        if len(table) > 2:   # several config types: the per-group error table
            print(format_error_table(table, f"{name} errors by config_type:"))
    if cfg["output"]["report"]:
        from .report import write_report

        path = write_report(model, test or train, cfg["output"]["report"],
                            title=f"hybridpot fit: {' '.join(species)}")
        print(f"report -> {path}")
    return 0


def _labelled(args, cfg, model):
    """The labelled structures of ``evaluate`` / ``report`` and what they are.

    ``--data``, else ``data.test``, else the held-out part of ``data.train`` that ``fit``
    used as its test set (same ``test_fraction`` and ``seed``; all of ``data.train`` when
    ``test_fraction = 0``), so that the default errors are not training errors.
    """
    from .config import label_keys, read_structures

    species = list(model.species_)
    keys = label_keys(cfg)
    if args.data:
        return read_structures([args.data], "--data", labels=True, species=species,
                               label_keys=keys), args.data
    if cfg["data"]["test"]:
        return read_structures(cfg["data"]["test"], "data.test", labels=True,
                               species=species, label_keys=keys), "data.test"
    data = read_structures(cfg["data"]["train"], "data.train", labels=True, species=species,
                           label_keys=keys)
    _, test = _split(data, cfg)
    if test:
        return test, (f"the held-out {100 * float(cfg['data']['test_fraction']):g} % of "
                      "data.train, as in fit")
    return data, "data.train (the training data: data.test_fraction = 0)"


def cmd_evaluate(args, cfg):
    model = _load_model(args.model or cfg["output"]["model"])
    structures, what = _labelled(args, cfg, model)
    from .report import error_table, format_error_table

    table = error_table(model, structures)   # per config_type, and "all" (= evaluate)
    m = table["all"]

    def strict(d):   # strict JSON: a kind without labels (NaN) is null, not NaN
        return {k: (None if isinstance(v, float) and not np.isfinite(v) else v)
                for k, v in d.items()}

    if args.json:
        out = strict(m)
        out["by_config_type"] = {g: strict(v) for g, v in table.items() if g != "all"}
        print(json.dumps(out))
    else:
        _print_metrics(f"evaluate on {what}", m)
        if len(table) > 2:
            print(format_error_table(table, "errors by config_type:"))
    return 0


def _md_structure(cfg, model):
    md = cfg["md"]
    if md["structure"] == "bulk":
        from .config import bulk_prototype

        atoms = bulk_prototype(model.species_[0], md.get("crystal"),
                               md.get("lattice_constant"), "md")
    else:
        from .config import read_structures

        # the last frame of the file, as ase.io.read gives it
        atoms = read_structures([str(md["structure"])], "md.structure", labels=False,
                                species=list(model.species_))[-1]
    reps = md["supercell"]
    if len(reps) != 3 or not all(isinstance(r, int) and r > 0 for r in reps):
        raise ConfigError(f"md.supercell must be three positive integers. Got {reps!r}.")
    # repeated along the periodic directions only: a molecule or cluster (pbc False, often no
    # cell) is run as it is (ASE raised 'Cannot repeat along undefined lattice vector'), a
    # slab is not stacked along its normal
    return atoms * tuple(r if p else 1 for r, p in zip(reps, atoms.pbc))


#: [md] numbers and their allowed ranges: key -> (low, low_inclusive, meaning)
_MD_RANGES = {"timestep_fs": (0.0, False, "fs"), "temperature_K": (0.0, True, "K"),
              "friction": (0.0, True, "1/fs"), "lattice_constant": (0.0, False, "Å"),
              "taut_fs": (0.0, False, "fs"), "taup_fs": (0.0, False, "fs")}


def _check_md_numbers(md):
    """One-line ConfigError for an out-of-range ``[md]`` number (before ASE sees it)."""
    for key, (low, inclusive, unit) in _MD_RANGES.items():
        if key not in md:
            continue
        v = float(md[key])
        ok = np.isfinite(v) and (v >= low if inclusive else v > low)
        if not ok:
            raise ConfigError(f"md.{key} must be a finite number {'>=' if inclusive else '>'} "
                              f"{low:g} ({unit}). Got {md[key]!r}.")
    if "pressure_GPa" in md and not np.isfinite(float(md["pressure_GPa"])):
        raise ConfigError(f"md.pressure_GPa must be a finite number (GPa). "
                          f"Got {md['pressure_GPa']!r}.")



#: md.ensemble values -> (ASE class path, what it samples)
MD_ENSEMBLES = {
    "nve": ("ase.md.verlet.VelocityVerlet", "NVE, velocity Verlet"),
    "langevin": ("ase.md.langevin.Langevin", "NVT, Langevin (friction)"),
    "bussi": ("ase.md.bussi.Bussi", "NVT, stochastic velocity rescaling (taut_fs)"),
    "nose_hoover": ("ase.md.nose_hoover_chain.NoseHooverChainNVT",
                    "NVT, Nose-Hoover chain (taut_fs)"),
    "npt": ("ase.md.nptberendsen.NPTBerendsen",
            "Berendsen weak coupling of T and P (taut_fs, taup_fs, pressure_GPa); relaxes to "
            "the target but does not sample the NPT ensemble"),
    "npt_mtk": ("ase.md.nose_hoover_chain.IsotropicMTKNPT",
                "NPT, isotropic Martyna-Tobias-Klein with Nose-Hoover chains (taut_fs, taup_fs, "
                "pressure_GPa)"),
}


def _ase_md_class(ens):
    """The ASE dynamics class of ``md.ensemble`` (a ConfigError naming the installed ASE
    version when it is too old to have it)."""
    import importlib

    import ase

    module, _, name = MD_ENSEMBLES[ens][0].rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise ConfigError(f"md.ensemble = {ens!r} needs {MD_ENSEMBLES[ens][0]}, which the "
                          f"installed ASE {ase.__version__} does not have; upgrade ASE "
                          f"(pip install -U ase) or choose another ensemble.") from e


def _md_dynamics(atoms, md, ens, dt, T, rng):
    """The ASE dynamics object of ``md.ensemble`` (time step ``dt`` in ASE units, ``T`` in K,
    ``rng`` a numpy Generator for the stochastic thermostats)."""
    from ase import units

    if ens not in MD_ENSEMBLES:
        raise ConfigError(f"md.ensemble must be one of {', '.join(map(repr, MD_ENSEMBLES))}. "
                          f"Got {ens!r}.")
    if ens.startswith("npt") and not np.all(atoms.pbc):
        # NPT needs the stress (was a traceback at the first step)
        raise ConfigError(
            f"md.ensemble = {ens!r} needs a structure periodic in 3-D (it controls the "
            f"pressure through the stress); md.structure has pbc="
            f"{[bool(p) for p in atoms.pbc]}. Use 'nve', 'langevin', 'bussi' or "
            f"'nose_hoover' for a molecule, cluster or slab.")
    if ens == "langevin":
        from ._compat import langevin

        return langevin(atoms, dt, T, float(md["friction"]) / units.fs, rng)
    cls = _ase_md_class(ens)
    taut = float(md.get("taut_fs", 100.0)) * units.fs
    taup = float(md.get("taup_fs", 1000.0)) * units.fs
    pressure = float(md.get("pressure_GPa", 0.0)) * units.GPa
    if ens == "nve":
        return cls(atoms, dt)
    if ens == "bussi":
        return cls(atoms, dt, temperature_K=T, taut=taut, rng=rng)
    if ens == "nose_hoover":
        return cls(atoms, dt, temperature_K=T, tdamp=taut)
    if ens == "npt":
        return cls(atoms, dt, temperature_K=T, pressure_au=pressure, taut=taut, taup=taup,
                   compressibility_au=1.0 / (100.0 * units.GPa))
    return cls(atoms, dt, temperature_K=T, pressure_au=pressure, tdamp=taut, pdamp=taup)


def cmd_md(args, cfg):
    from ase import units
    from ase.io.trajectory import Trajectory

    from ._compat import thermalize

    model = _load_model(args.model or cfg["output"]["model"])
    md = cfg["md"]
    _check_md_numbers(md)
    atoms = _md_structure(cfg, model)
    interval = int(md["uncertainty_interval"])
    if interval < 0:
        raise ConfigError(f"md.uncertainty_interval must be >= 0 (0: no σ). Got {interval}.")
    max_std = float(md["max_force_std"])
    if not max_std >= 0.0:
        raise ConfigError(f"md.max_force_std must be >= 0 eV/Å (0: never stop). Got {max_std}.")
    if max_std > 0.0 and interval == 0:
        raise ConfigError("md.max_force_std needs md.uncertainty_interval >= 1 (σ is not "
                          f"computed with uncertainty_interval = 0). Got max_force_std = "
                          f"{max_std}.")
    try:
        atoms.calc = model.calculator(uncertainty=interval > 0,
                                      uncertainty_interval=max(interval, 1))
    except InvalidParameterError as e:   # no posterior: name the config key
        raise ConfigError(f"md.uncertainty_interval = {interval} needs a model with a "
                          f"posterior (0: no σ). {e}") from e
    rng = np.random.default_rng(int(md["seed"]))
    T = float(md["temperature_K"])
    thermalize(atoms, T, rng)
    # no drift of the whole system (its kinetic energy would count as temperature), and no
    # rotation of a molecule or cluster (a periodic cell cannot rotate)
    from ase.md.velocitydistribution import Stationary, ZeroRotation

    Stationary(atoms)
    if not np.any(atoms.pbc) and len(atoms) > 1:
        ZeroRotation(atoms)
    atoms.get_potential_energy()   # the first evaluation (and σ) before the dynamics
    dt = float(md["timestep_fs"]) * units.fs
    ens = md["ensemble"]
    dyn = _md_dynamics(atoms, md, ens, dt, T, rng)
    steps = int(md["steps"])
    if steps < 0:
        raise ConfigError(f"md.steps must be >= 0. Got {steps}.")
    per_atom = bool(getattr(args, "per_atom_stress", False))
    if per_atom:
        _check_per_atom_stress(atoms, md)
    traj = Trajectory(_output_path(md["trajectory"], "md.trajectory"), "w", atoms) \
        if md["trajectory"] else None
    if traj is not None:
        if per_atom:
            def write_frame():
                # the per-atom virials of this step (energy, forces and stress are cached):
                # Trajectory then stores "stresses" with the other results of the frame
                atoms.get_stresses()
                traj.write()

            dyn.attach(write_frame, interval=10)
        else:
            dyn.attach(traj.write, interval=10)
    from tqdm.auto import tqdm

    stopped = log = None
    with tqdm(total=steps, desc="md", unit="step", disable=_progress_disabled(args)) as bar:
        dyn.attach(lambda: bar.update(1), interval=1)
        e0 = atoms.get_total_energy()
        try:
            if interval > 0:
                log = _SigmaLog(_output_path(md["sigma_log"], "md.sigma_log"), atoms, dyn,
                                max_std)
                dyn.attach(log, interval=1)   # called at step 0 too
            dyn.run(steps)
        except _SigmaExceeded as exc:
            stopped = exc
        finally:
            dyn.close()   # ASE 3.23 opens os.devnull as the log of a dynamics without one
            if log is not None:
                log.close()
            if traj is not None:
                traj.close()
    done = stopped.step if stopped is not None else steps
    print(f"md ({ens}): {done} steps of {md['timestep_fs']} fs, {len(atoms)} atoms "
          f"({atoms.get_chemical_formula()}), "
          f"T = {atoms.get_temperature():.0f} K, total energy change "
          f"{(atoms.get_total_energy() - e0) / len(atoms):.2e} eV/atom"
          + (f" -> {md['trajectory']}" if traj is not None else "")
          + (" (with per-atom stresses)" if traj is not None and per_atom else ""))
    if log is not None:
        print(f"σ every {interval} steps -> {md['sigma_log']}: largest force σ "
              f"{log.largest:.4f} eV/Å")
    if stopped is not None:
        print(f"stopped at step {stopped.step}: largest force σ {stopped.value:.4f} eV/Å > "
              f"md.max_force_std = {max_std} eV/Å")
    return 0


def _check_per_atom_stress(atoms, md):
    """ConfigError unless ``hybridpot md --per-atom-stress`` can store per-atom stresses:
    a trajectory file, a 3-D periodic structure and a model (baseline included) that gives
    per-atom virials (checked on the starting structure)."""
    from ase.calculators.calculator import PropertyNotImplementedError

    if not md["trajectory"]:
        raise ConfigError("--per-atom-stress stores the per-atom stresses in the trajectory "
                          "frames; set md.trajectory to a file name such as 'md.traj'. "
                          "Got md.trajectory = ''.")
    if not np.all(atoms.pbc):
        raise ConfigError(f"--per-atom-stress needs a structure periodic in 3-D (per-atom "
                          f"stresses are virials divided by the cell volume); md.structure "
                          f"has pbc={[bool(p) for p in atoms.pbc]}.")
    try:
        atoms.get_stresses()
    except PropertyNotImplementedError as e:
        raise ConfigError(f"--per-atom-stress: {str(e).splitlines()[0]}") from e


class _SigmaExceeded(Exception):
    """Raised by :class:`_SigmaLog` to end the MD run (caught in :func:`cmd_md`)."""

    def __init__(self, step, value):
        super().__init__(step, value)
        self.step, self.value = step, value


class _SigmaLog:
    """MD observer: one CSV row per freshly computed σ (flushed at once), and the stop rule
    ``max |forces_std| > max_force_std``."""

    HEADER = ("step,time_fs,energy_std_eV,max_force_std_eV_per_A,mean_force_std_eV_per_A,"
              "max_stress_std_eV_per_A3")

    def __init__(self, path, atoms, dyn, max_std):
        from ase import units

        self.atoms, self.dyn, self.max_std = atoms, dyn, max_std
        self.fs = units.fs
        self.file = open(path, "w")
        self.file.write(self.HEADER + "\n")
        self.largest = 0.0

    def __call__(self):
        calc = self.atoms.calc
        if not calc.std_fresh:
            return
        fs = np.asarray(calc.results["forces_std"])
        ss = calc.results.get("stress_std")
        step = int(self.dyn.nsteps)
        fmax = float(np.max(fs)) if fs.size else 0.0
        self.largest = max(self.largest, fmax)
        self.file.write(f"{step},{step * self.dyn.dt / self.fs:.6g},"
                        f"{float(calc.results['energy_std']):.6e},{fmax:.6e},"
                        f"{float(np.mean(fs)) if fs.size else 0.0:.6e},"
                        + (f"{float(np.max(ss)):.6e}" if ss is not None else "") + "\n")
        self.file.flush()
        if self.max_std > 0.0 and fmax > self.max_std:
            raise _SigmaExceeded(step, fmax)

    def close(self):
        self.file.close()


#: what ``hybridpot properties --json`` writes (the dict of
#: :func:`hybridpot.properties.compute_properties`, plus the model file)
PROPERTIES_JSON_KEYS = (
    "model_file: the model file as given; symbol, crystal, quick, a_guess (Å), r_cut (Å); "
    "keys: property names in table order (a0, B, C11, C12, C44, C11(E), C12(E), C44(E), "
    "B(C), E_v, E_m, γ<facet> x2, ν(Γ), νX lo / νX hi or νH lo / νH hi); units: name -> "
    "unit (Å, GPa, eV, J/m², THz); model: name -> value; sigma: name -> committee standard "
    "deviation (null without a committee); n_members, committee ('posterior', 'ensemble' or "
    "null), members: one name -> value object per member; baseline_name, baseline: name -> "
    "value of the baseline alone, difference: model minus baseline (both null without a "
    "baseline or with ZBL); notes: list of strings")


def _strict_json(obj):
    """``obj`` with non-finite floats as None (strict JSON has no NaN)."""
    if isinstance(obj, dict):
        return {k: _strict_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_strict_json(v) for v in obj]
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj


def cmd_properties(args, cfg):
    """``hybridpot properties``: :func:`hybridpot.properties.compute_properties` of a saved
    model, printed as a table (model ± σ, baseline, difference) and with ``--json`` written
    as a JSON file (keys: :data:`PROPERTIES_JSON_KEYS`)."""
    import time

    from .properties import committee_kind, compute_properties, format_table, reference_crystal

    model_file = args.model or cfg["output"]["model"]
    model = _load_model(model_file)
    species = list(model.species_)
    symbol = args.element
    if symbol is None:
        if len(species) != 1:
            raise ConfigError(f"--element: the model has several elements {species}; choose "
                              f"the one whose crystal to compute (e.g. --element "
                              f"{species[0]}).")
        symbol = species[0]
    elif symbol not in species:
        raise ConfigError(f"--element must be one of the model's elements {species}. "
                          f"Got {symbol!r}.")
    members = args.members
    if members is not None:
        if members < 0 or members == 1:
            raise ConfigError(f"--members must be 0 (no σ) or >= 2 (σ is the spread of the "
                              f"committee). Got {members}.")
        if members and committee_kind(model) is None:
            raise ConfigError(f"--members {members}: the model's "
                              f"{type(model.regressor_).__name__} has no coefficient "
                              f"posterior (BayesianLinearRegressor) and no ensemble members "
                              f"to draw a committee from; use --members 0.")
    if args.seed < 0:
        raise ConfigError(f"--seed must be >= 0. Got {args.seed}.")
    if args.a_guess is not None and not (np.isfinite(args.a_guess) and args.a_guess > 0):
        raise ConfigError(f"--a-guess must be a positive lattice constant in Å. "
                          f"Got {args.a_guess}.")
    out = _output_path(args.json, "--json") if args.json else None   # checked first
    crystal = args.crystal or reference_crystal(symbol)
    t0 = time.process_time()
    res = compute_properties(model, symbol, crystal=crystal, a_guess=args.a_guess,
                             quick=bool(args.quick), members=members, random_state=args.seed)
    for note in res["notes"]:
        print(f"note: {note}")
    print(f"properties of {symbol} ({crystal}"
          f"{'' if args.crystal else ', its reference structure; --crystal to change'}) "
          f"with {model_file}: the model"
          f"{', the baseline' if res['baseline'] else ''} and {res['n_members']} committee "
          f"members, {time.process_time() - t0:.1f} s CPU")
    print(format_table(res))
    if out is not None:
        with open(out, "w", encoding="utf-8") as f:
            json.dump(_strict_json({"model_file": str(model_file), **res}), f, indent=1,
                      ensure_ascii=False, allow_nan=False)
            f.write("\n")
        print(f"-> {out}")
    return 0


def cmd_report(args, cfg):
    from .report import write_report

    folder = args.out or cfg["output"]["report"]
    if not folder:
        raise ConfigError("report: no output folder (give --out or output.report). "
                          "Got output.report = ''.")
    model = _load_model(args.model or cfg["output"]["model"])
    structures, what = _labelled(args, cfg, model)
    path = write_report(model, structures, folder,
                        title=f"hybridpot report: {what}")
    print(f"report on {what} -> {path}")
    return 0


def cmd_export(args, cfg):
    from .io.lammps import _lammps_word, write_snap

    model = _load_model(args.model or cfg["output"]["model"])
    prefix = args.prefix or cfg["export"]["prefix"]
    if not Path(prefix).name or Path(prefix).name in (".", "..") \
            or str(prefix).endswith(("/", os.sep)) or Path(prefix).is_dir():
        raise ConfigError(f"export.prefix must end in a file name prefix, e.g. 'lammps/model' "
                          f"(writes lammps/model.snapcoeff, ...). Got {prefix!r}.")
    Path(prefix).parent.mkdir(parents=True, exist_ok=True)
    species = args.species or cfg["export"].get("species") or None
    try:
        paths = write_snap(model, prefix, species=species,
                           absolute_paths=bool(args.absolute_paths))
    except InvalidParameterError as e:
        if species is None:
            raise
        where = (f"--species {' '.join(args.species)}" if args.species
                 else f"export.species = {species!r}")
        raise ConfigError(f"{where}: {e}") from e
    written = [paths[k] for k in ("snapcoeff", "snapparam", "mod")] + list(paths["files"])
    print("wrote " + ", ".join(str(f) for f in written))
    mod = Path(paths["mod"])
    # quoted as LAMMPS needs it when the name holds a space
    if args.absolute_paths or mod.parent.resolve() == Path.cwd().resolve():
        print(f"use in LAMMPS (units metal): include {_lammps_word(str(mod))}")
    else:
        # the .mod names its files relative to the folder LAMMPS runs in
        print(f"use in LAMMPS (units metal), running in {str(mod.parent)!r}: include "
              f"{_lammps_word(mod.name)} (or export with --absolute-paths to include "
              f"{_lammps_word(str(mod))} from anywhere)")
    print("LAMMPS atom types: " + ", ".join(f"{k + 1} = {el}"
                                            for k, el in enumerate(paths["types"])))
    return 0


COMMANDS = {"fit": cmd_fit, "evaluate": cmd_evaluate, "md": cmd_md, "report": cmd_report,
            "export": cmd_export, "properties": cmd_properties}


def _parser():
    p = argparse.ArgumentParser(
        prog="hybridpot",
        description="Fit machine-learned interatomic potentials on top of an empirical one, "
        "evaluate them, run MD with them, write reports, export SNAP models to LAMMPS, and "
        "select / learn new training structures; compute materials properties with "
        "committee σ. Every sub-command reads an optional TOML "
        "config (-c; keys and defaults in the hybridpot.config docstring); errors are one "
        "line with exit code 2.",
        epilog="'hybridpot <command> --help' lists the options of a command.")
    p.add_argument("--version", action="version", version=f"hybridpot {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-c", "--config", help="TOML config file (see hybridpot.config)")
    common.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    with_model = argparse.ArgumentParser(add_help=False, parents=[common])
    with_model.add_argument("--model", help="model file (default: output.model of the config)")
    s = sub.add_parser("fit", parents=[common], help="fit a model (default: shipped Al data)")
    s.add_argument("--train", help="training extxyz (overrides data.train)")
    s.add_argument("--out", "--model", dest="out",
                   help="model file to write (overrides output.model)")
    s = sub.add_parser("evaluate", parents=[with_model],
                       help="errors of a model on labelled data")
    s.add_argument("--data", help="labelled structures (extxyz)")
    s.add_argument("--json", action="store_true", help="print the metrics as JSON")
    s = sub.add_parser("md", parents=[with_model],
                       help="molecular dynamics with a model (ASE)")
    s.add_argument("--steps", type=int, help="number of MD steps (overrides md.steps)")
    s.add_argument("--per-atom-stress", action="store_true",
                   help="store the per-atom stresses in every trajectory frame (ASE "
                   "'stresses': (n_atoms, 6) eV/Å³, ASE sign and Voigt order xx yy zz yz xz "
                   "xy, virial part without the kinetic term, each atom's virial divided by "
                   "the cell volume so that they sum to the frame's stress; read back with "
                   "ase.io.read(traj, ':')[k].get_stresses()); needs a 3-D periodic "
                   "structure")
    s = sub.add_parser("report", parents=[with_model], help="HTML report with parity plots")
    s.add_argument("--data", help="labelled structures (extxyz)")
    s.add_argument("--out", help="report folder")
    s = sub.add_parser("export", parents=[with_model], help="LAMMPS files of a SNAP model")
    s.add_argument("--prefix", help="file prefix (overrides export.prefix)")
    s.add_argument("--absolute-paths", action="store_true",
                   help="name the coefficient files by absolute path in the .mod include "
                   "(default: by file name, for LAMMPS running in the export folder)")
    s.add_argument("--species", nargs="+", metavar="EL",
                   help="element of LAMMPS atom types 1, 2, ... (an element may repeat; "
                   "overrides export.species; default: the model's trained elements in order)")
    from .properties import CRYSTALS

    s = sub.add_parser(
        "properties", parents=[with_model],
        help="materials properties of a model with committee σ (a0, B, elastic constants, "
        "vacancy, surfaces, phonons)",
        description="Lattice constant, bulk modulus, elastic constants (from stress and "
        "energy), vacancy formation and migration energies, surface energies and "
        "zone-boundary phonons of a saved model, its baseline alone and a posterior "
        "committee (σ); see hybridpot.properties.",
        epilog="--json keys: " + PROPERTIES_JSON_KEYS)
    s.add_argument("--element", help="element of the crystal (default: the model's element "
                   "when it has one)")
    s.add_argument("--crystal", choices=CRYSTALS,
                   help="crystal structure (default: the element's reference structure when "
                   "it is one of these, e.g. Mo bcc, Si diamond; else fcc)")
    s.add_argument("--a-guess", type=float, help="starting lattice constant, Å (default: "
                   "ASE's reference value, or from the covalent radius)")
    s.add_argument("--quick", action="store_true",
                   help="smaller defect cells, slabs, NEB and phonon supercell (seconds)")
    s.add_argument("--members", type=int, help="committee size for σ (default 16, --quick "
                   "4, when the model has a posterior or ensemble; 0: no σ)")
    s.add_argument("--seed", type=int, default=0, help="seed of the committee draws "
                   "(default 0)")
    s.add_argument("--json", metavar="OUT", help="also write the numbers as JSON to OUT")
    for name, (helptext, fn) in _extra_commands().items():
        # `learn` writes its model into the run directory: it takes no --model
        s = sub.add_parser(name, parents=[common if name == "learn" else with_model],
                           help=helptext)
        fn(s)
    return p


def _extra_commands():
    """Sub-commands contributed by optional modules (``select``, ``learn``)."""
    out = {}
    try:
        from .learn import cli as learn_cli
    except ModuleNotFoundError as e:
        if e.name not in (f"{__package__}.learn", f"{__package__}.learn.cli"):
            raise
        return out
    for name, helptext, add_args, run in learn_cli.COMMANDS:
        out[name] = (helptext, add_args)
        COMMANDS[name] = run
    return out


def main(argv=None):
    """Entry point of the ``hybridpot`` command; returns the exit code.

    Parameters
    ----------
    argv : list of str, optional
        Command-line arguments without the program name (``["fit", "--config",
        "fit.toml"]``); None: ``sys.argv[1:]``.

    Returns
    -------
    int
        0 on success, 2 for a hybridpot or file error (one line ``hybridpot <command>:
        error: ...`` on stderr, no traceback), 130 when interrupted (Ctrl-C).
    """
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        from .config import load_config

        overrides = {}
        if getattr(args, "train", None):
            overrides.setdefault("data", {})["train"] = [str(Path(args.train).resolve())]
        if getattr(args, "out", None) and args.command == "fit":
            overrides.setdefault("output", {})["model"] = args.out
        if getattr(args, "steps", None) is not None:
            overrides.setdefault("md", {})["steps"] = args.steps
        cfg = load_config(args.config, overrides)
        return COMMANDS[args.command](args, cfg)
    except (HybridpotError, OSError) as e:
        if isinstance(e, OSError) and e.filename is not None:
            msg = f"cannot use {e.filename!r}: {e.strerror or type(e).__name__}"
        else:
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        print(f"hybridpot {args.command}: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:   # Ctrl-C: a message, not a traceback
        hint = ("; run the same command again to resume (the labels computed so far are kept "
                "in the run directory)" if args.command == "learn" else "")
        print(f"hybridpot {args.command}: interrupted{hint}.", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
