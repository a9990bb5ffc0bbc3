"""Model files: versioned JSON + npz in one zip archive, never pickle.

A ``.hpot`` file is a zip archive holding

- ``model.json``: ``{"format": "hybridpot-model", "format_version", "hybridpot_version",
  "species", "descriptor": {"class", "params"}, "regressor": {"class", "params", "state"},
  "baseline": {"class", "params"} | null, "reference_energies", "params", "extra"}``
- ``arrays.npz``: the regressor's fitted arrays (loaded with ``allow_pickle=False``).

Loading looks classes up in explicit registries (no import by name, no code execution).  The
file is written to a temporary name and renamed, so a crash never leaves half a model.

Compatibility policy
--------------------
- **Older files load and predict the same.**  A file written by any earlier hybridpot (format
  versions 1 and 2) loads in this one and gives the same energies, forces, stresses and σ (to
  round-off; checked by ``tests/test_model_compat_s11.py`` on files saved by earlier commits,
  ``tests/data/models/``).  A hyperparameter added after a file was written takes its
  neutral value (:data:`ADDED_HYPERPARAMETERS`, below), which predicts as the code that
  wrote it did; fitted state added later is migrated
  (sparse GP ``dot_softening`` absent: 0, the unit-vector kernel those files used; σ
  recalibration state version 1; no ``trained_species``: not checked; no
  ``params.reference_energies``: the fitted e0 become the hyperparameter, as before), and
  so are the few hyperparameters whose default changed what a file predicts (a sparse GP
  without ``bias`` / ``derivative_variance``: ``False`` / ``"projected"``, see
  :func:`_migrate_v1`).  Where a later release fixed a bug in prediction itself, old files
  get the fix too (e.g. ff81030: σ of per-group noise models uses the structure's own
  group, files before it predicted with group 0's noise).
- **Newer files are refused, never misread.**  A file of a format version above
  :data:`FORMAT_VERSION`, or holding a hyperparameter, fitted array, state key or entry this
  hybridpot does not know (one it would not write back), is a
  :class:`~hybridpot.ModelFormatError` naming the file, what it holds and what this version
  reads: upgrade hybridpot to read it.
- **A model that uses nothing new loads in older hybridpot.**  A file records the *lowest*
  format version that holds what it uses, not :data:`FORMAT_VERSION`: a model using nothing
  added since 0.1.0 is a format-1 file that hybridpot 0.1.0 reads and predicts the same from
  (checked by ``tests/test_compat_s12.py``, which runs the loaders of the 0.1.0 and 0.2.0
  commits on files written by this code).  For that, a hyperparameter added later is left out
  of the file while it has its *neutral value*, the value that makes its class behave as
  before the addition, and a file without it is read as that value.  The neutral value and
  the format version of a file that uses the hyperparameter are listed per class in
  :data:`ADDED_HYPERPARAMETERS`, an explicit registry: hyperparameters are not dropped merely
  for being at today's default, because a default that later changes must not change what
  existing files mean (an absent entry is always the registry's neutral value, never the
  constructor's default of the day), and one whose default already changed what a file
  predicts (sparse GP ``bias``, ``derivative_variance``) has no entry and is always written.
  A file using a registered hyperparameter at another value has at least its format version,
  so older readers refuse it as a newer file instead of misreading it (hybridpot 0.1.0 with
  its "written with model format version 2 ... Upgrade hybridpot"; hybridpot since 0.2.0
  also names a hyperparameter it does not know).  Fitted arrays that format-1 readers before
  them ignored are listed in :data:`ADDED_ARRAYS`: a fitted dot-kernel sparse GP (its
  ``dot_softening`` is not 0) is therefore always format 2.  Adding a hyperparameter: give it
  an entry with the value reproducing the previous behaviour (format version 2 unless an
  older reader could misread it).
- ``FORMAT_VERSION`` is raised whenever an older reader could *misread* a new file: an
  entry changes meaning (the next version's loader then migrates the old one), or a new
  entry that readers before this policy ignored changes predictions (readers since refuse
  entries they do not know).  Version history: 1 (21 Nov 2026) the first files; 2 (22 Nov 2026)
  the same layout, raised because version-1 readers older than the sparse-GP
  ``dot_softening`` (634047d) ignore that array and predicted other energies (up to 0.5 %)
  and σ (1 %) from a current sparse-GP file without an error.  From 0.3.0 on a writer records
  the lowest version the file needs (above), so it writes version-1 files again for models
  that need nothing of version 2.
- Refitting a loaded model (``clone(model).fit(...)``) uses the current algorithms, not the
  writer's: only predictions of the saved model are guaranteed.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import zipfile
import zlib
from typing import NamedTuple

import numpy as np

from .._exceptions import ModelFormatError, NotFittedError

__all__ = ["FORMAT_VERSION", "ADDED_HYPERPARAMETERS", "ADDED_ARRAYS", "save_model", "load_model"]

FORMAT_NAME = "hybridpot-model"
#: the newest format version this hybridpot writes (a file records the lowest version that
#: holds what it uses, see :data:`ADDED_HYPERPARAMETERS`); it reads every version from 1 to
#: this one
FORMAT_VERSION = 2


class Added(NamedTuple):
    """A hyperparameter (or fitted array) added after the first model files.

    Attributes
    ----------
    release : str
        The hybridpot release that added it.
    format_version : int
        The lowest format version of a file that uses it (a value other than ``neutral``):
        readers of lower versions do not know it.
    neutral : object
        The value that makes the class behave as it did before the addition (files without
        the entry mean it).  Fixed forever: not "the current default".
    """

    release: str
    format_version: int
    neutral: object


_INNER_SWITCH = {"r_inner": Added("0.2.0", 2, None), "d_inner": Added("0.2.0", 2, None)}

#: Hyperparameters added since the first model files, per ``(kind, class)``.  A hyperparameter
#: at its neutral value is left out of the file (so older readers, which refuse names they do
#: not know, read it) and an absent one is read as its neutral value; any other value makes the
#: file at least that format version.  A new hyperparameter gets an entry here, with the value
#: that reproduces the previous behaviour, and the lowest format version whose readers refuse
#: it with the "newer file" message rather than misread it (2 for anything added from 0.2.0 on:
#: readers since 0.2.0 refuse hyperparameters they do not know by name).  A hyperparameter
#: whose *default* changed what a file predicts (sparse GP ``bias``, ``derivative_variance``)
#: has no entry: it is always written (files without it are migrated, :func:`_migrate_v1`).
ADDED_HYPERPARAMETERS = {
    ("descriptor", "PowerSpectrum"): _INNER_SWITCH,
    ("descriptor", "Bispectrum"): _INNER_SWITCH,
    ("descriptor", "ACSF"): _INNER_SWITCH,
    ("descriptor", "SNAPBispectrum"): {
        "chemflag": Added("0.2.0", 2, False), "bnormflag": Added("0.2.0", 2, False),
        "switchinnerflag": Added("0.2.0", 2, False), "sinner": Added("0.2.0", 2, None),
        "dinner": Added("0.2.0", 2, None)},
}

#: Fitted arrays that format-1 readers before it existed ignored (so they misread a file using
#: it): an array of this name (an ensemble member's ``member<k>__<name>`` too) holding any
#: value other than ``neutral`` makes the file that format version.  ``dot_softening``
#: (634047d): the sparse GP's dot-kernel softening, 0 for files before it (the unit-vector
#: kernel) -- the reason format 2 exists.
ADDED_ARRAYS = {"dot_softening": Added("0.1.0", 2, 0.0)}


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def save_model(model, path):
    """Write a fitted :class:`~hybridpot.HybridPotential` to ``path`` (a ``.hpot`` zip).

    The file is written to a temporary name in the same folder and renamed, so an existing
    model is replaced atomically (keeping its permissions).  It records the lowest format
    version that holds what the model uses (1 for a model using nothing added since 0.1.0,
    at most :data:`FORMAT_VERSION`), leaving out hyperparameters added since 0.1.0 while they
    have their neutral value (:data:`ADDED_HYPERPARAMETERS`): this and every later hybridpot
    loads it and predicts the same, an older one reads it when the model uses nothing it
    lacks and otherwise refuses it with an error rather than misread it (see the module's
    compatibility policy).

    Parameters
    ----------
    model : HybridPotential
        A fitted model.
    path : str or path-like
        Output file, conventionally ``*.hpot``.

    Raises
    ------
    hybridpot.NotFittedError
        If ``model`` is not fitted.
    FileNotFoundError, IsADirectoryError
        When the folder of ``path`` does not exist, or ``path`` is a folder.
    """
    from .. import __version__

    if not hasattr(model, "regressor_"):
        raise NotFittedError("Only a fitted HybridPotential can be saved; call fit first.")
    state, arrays = model.regressor_.get_fitted_state()
    doc = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "hybridpot_version": __version__,
        "species": list(model.species_),
        "descriptor": model.descriptor.to_dict(),
        "regressor": {**model.regressor_.to_dict(), "state": state},
        "baseline": None if model.baseline is None else model.baseline.to_dict(),
        "reference_energies": model.reference_energies_,
        "params": {
            "weights": model.weights,
            "group_weights": model.group_weights,
            "chunk_size": model.chunk_size,
            "group_names": list(getattr(model, "group_names_", ("default",))),
            # the hyperparameter ("fit", "isolated_atom", a dict or None), so that a refit of
            # the loaded model follows the same recipe (the fitted e0 are reference_energies)
            "reference_energies": model.reference_energies,
        },
    }
    extra = getattr(model, "_extra_state", None)
    if callable(extra):
        doc["extra"] = extra()
    doc = _jsonable(doc)
    # the lowest version that holds what the model uses, so that older hybridpot reads it
    doc["format_version"] = max(_omit_neutral(doc), _arrays_format_version(arrays))
    text = json.dumps(doc, indent=1, allow_nan=True)
    buf = io.BytesIO()
    np.savez(buf, **{str(k): np.asarray(v) for k, v in arrays.items()})
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(2, f"Cannot save the model to {path!r}: its folder {folder!r} "
                                   "does not exist", path)
    if os.path.isdir(path):
        raise IsADirectoryError(21, f"Cannot save the model to {path!r}: it is a folder; give "
                                    "a file name such as model.hpot", path)
    fd, tmp = tempfile.mkstemp(prefix=".hpot-", dir=folder)
    try:
        # mkstemp makes the file 0600: give it the mode an ordinary write would (umask), or
        # keep that of the file it replaces, so colleagues can still read a shared model
        if os.path.isfile(path):
            mode = os.stat(path).st_mode & 0o777
        else:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        os.chmod(tmp, mode)
        with os.fdopen(fd, "wb") as fh, zipfile.ZipFile(fh, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr(_entry("model.json"), text)
            zf.writestr(_entry("arrays.npz"), buf.getvalue())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


#: entries nested in another's params: (kind, class) -> the params key holding them
_NESTED = {("descriptor", "DescriptorStack"): "descriptors",
           ("regressor", "EnsembleRegressor"): "estimator"}


def _hyper_entries(doc):
    """``(kind, entry)`` for the descriptor, regressor and baseline entries of a parsed
    ``model.json``, nested ones (stack members, the ensemble's member template) included;
    only entries with a class name and a dict of params."""
    def walk(kind, entry):
        if not isinstance(entry, dict) or not isinstance(entry.get("class"), str) or \
                not isinstance(entry.get("params", {}), dict):
            return
        yield kind, entry
        sub = entry.get("params", {}).get(_NESTED.get((kind, entry["class"])))
        for member in sub if isinstance(sub, list) else [sub]:
            yield from walk(kind, member)

    for kind in ("descriptor", "regressor", "baseline"):
        yield from walk(kind, doc.get(kind))


def _is_neutral(value, neutral):
    """Whether ``value`` (as JSON gives it) is exactly ``neutral`` (None, a bool, a number):
    an equivalent value of another type (0 for False) is written, so that a file read back
    gives the same ``get_params``."""
    if neutral is None or isinstance(neutral, bool):
        return value is neutral
    return type(value) is type(neutral) and value == neutral


def _omit_neutral(doc):
    """Remove the hyperparameters of :data:`ADDED_HYPERPARAMETERS` at their neutral value from
    a JSON-ready ``doc`` (in place); return the lowest format version the rest needs (1 when
    it uses nothing added since the first files)."""
    version = 1
    for kind, entry in _hyper_entries(doc):
        params = entry.get("params", {})
        for name, added in ADDED_HYPERPARAMETERS.get((kind, entry["class"]), {}).items():
            if name not in params:
                continue
            if _is_neutral(params[name], added.neutral):
                del params[name]
            else:
                version = max(version, added.format_version)
    return version


def _fill_neutral(doc):
    """The inverse of :func:`_omit_neutral` at load: a hyperparameter of
    :data:`ADDED_HYPERPARAMETERS` absent from the file is its neutral value (what the file's
    writer did), not whatever the constructor's default is today (in place)."""
    for kind, entry in _hyper_entries(doc):
        added = ADDED_HYPERPARAMETERS.get((kind, entry["class"]), {})
        if added and "params" in entry:
            for name, a in added.items():
                entry["params"].setdefault(name, a.neutral)


def _arrays_format_version(arrays):
    """The lowest format version whose every reader reads the fitted ``arrays`` as meant
    (:data:`ADDED_ARRAYS`; an ensemble's ``member<k>__<name>`` counts as ``<name>``)."""
    version = 1
    for key, value in arrays.items():
        added = ADDED_ARRAYS.get(str(key).rsplit("__", 1)[-1])
        if added is not None and np.any(np.asarray(value) != added.neutral):
            version = max(version, added.format_version)
    return version


def _entry(name):
    """A zip entry with a fixed timestamp, so that saving the same model twice gives the same
    bytes (a published model file can be checked by its hash)."""
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o600 << 16
    return info


def load_model(path):
    """Read a model written by :func:`save_model`.

    Files of every format version from 1 to :data:`FORMAT_VERSION` (any earlier hybridpot)
    load and predict the same energies, forces, stresses and σ as when they were saved, with
    their recalibration, committee and fit settings; fitted state added since is migrated
    (see the module's compatibility policy); a registered hyperparameter the file leaves out
    (:data:`ADDED_HYPERPARAMETERS`) takes its neutral value.  A newer file -- a higher format
    version, or a hyperparameter this hybridpot does not know -- is refused, never read
    approximately.

    Parameters
    ----------
    path : str or path-like
        A ``.hpot`` file.

    Returns
    -------
    HybridPotential
        The fitted model.

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist.
    hybridpot.ModelFormatError
        If the file is not a hybridpot model, is corrupt or incomplete, or was written by a
        newer hybridpot (a format version above :data:`FORMAT_VERSION`, or hyperparameters
        this version does not know).  The message names the file and, for a newer file, the
        version found and the versions this hybridpot reads.
    """
    path = os.fspath(path)
    try:
        with zipfile.ZipFile(path, "r") as zf:
            names = set(zf.namelist())
            if names != {"model.json", "arrays.npz"}:
                raise ModelFormatError(
                    f"{path!r} is not a hybridpot model file: it must hold exactly model.json "
                    f"and arrays.npz; found {sorted(names)}.")
            doc = json.loads(zf.read("model.json").decode("utf-8"))
            npz_bytes = zf.read("arrays.npz")
        arrays = _read_arrays(npz_bytes, path)
    except FileNotFoundError:
        raise
    except ModelFormatError:
        raise
    except (zipfile.BadZipFile, zlib.error, json.JSONDecodeError, UnicodeDecodeError,
            ValueError, OSError, KeyError, EOFError, RecursionError, NotImplementedError,
            MemoryError) as e:
        raise ModelFormatError(f"{path!r} is not a readable hybridpot model file: "
                               f"{type(e).__name__}: {e}") from e
    if not isinstance(doc, dict) or doc.get("format") != FORMAT_NAME:
        raise ModelFormatError(f"{path!r} is not a hybridpot model file (format field "
                               f"{doc.get('format') if isinstance(doc, dict) else None!r}).")
    if "format_version" not in doc:
        raise ModelFormatError(f"{path!r} has no format_version; a hybridpot model file "
                               f"records one (1 to {FORMAT_VERSION}).")
    version = doc.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ModelFormatError(f"{path!r} has an invalid format_version {version!r}; this "
                               f"hybridpot reads format versions 1 to {FORMAT_VERSION}.")
    from .. import __version__

    if version > FORMAT_VERSION:
        raise ModelFormatError(
            f"{path!r} was written with model format version {version} (hybridpot "
            f"{doc.get('hybridpot_version')}); this hybridpot {__version__} reads format "
            f"versions 1 to {FORMAT_VERSION}. Upgrade hybridpot to read it.")
    if version == 1:
        _migrate_v1(doc)
    _fill_neutral(doc)
    unknown = _unknown_hyperparameters(doc)
    if unknown:
        raise ModelFormatError(
            f"{path!r} (model format version {version}, written by hybridpot "
            f"{doc.get('hybridpot_version')}) holds hyperparameters this hybridpot "
            f"{__version__} does not know: {'; '.join(unknown)}. The file was probably "
            "written by a newer hybridpot: upgrade hybridpot to read it (or, if the file was "
            "edited by hand, remove those entries)." + _same_version_note(doc))
    try:
        return _model_from_doc(doc, arrays, path)
    except ModelFormatError as e:
        if repr(path) in str(e):
            raise
        raise ModelFormatError(f"{path!r}: {e}") from e


def _migrate_v1(doc):
    """Hyperparameters a version-1 file may lack whose current default predicts otherwise
    than the code that wrote it (set in place on the parsed ``model.json``).

    - SparseGPRegressor ``bias``: files before 6721500 (21 Nov 2026 06:09) had no per-element
      constant; the default ``True`` expects its coefficients ('coef' has shape (40,),
      expected (42,)).  -> ``False``.
    - SparseGPRegressor ``derivative_variance``: before 72ad34d (21 Nov 2026 07:54) force and
      stress σ were the projected-process variance; the default ``"dtc"`` gave 6x other force
      σ.  -> ``"projected"``.
    """
    def regressor(entry):
        if not isinstance(entry, dict) or not isinstance(entry.get("params"), dict):
            return
        params = entry["params"]
        if entry.get("class") == "SparseGPRegressor":
            params.setdefault("bias", False)
            params.setdefault("derivative_variance", "projected")
        elif entry.get("class") == "EnsembleRegressor":
            regressor(params.get("estimator"))

    regressor(doc.get("regressor"))


def _unknown_hyperparameters(doc):
    """``"<where> <Class>: [names]"`` for every descriptor / regressor / baseline entry of
    ``doc`` whose ``params`` name a hyperparameter its class (in this hybridpot) does not take,
    nested entries (DescriptorStack members, the EnsembleRegressor member template) included.

    Such a file comes from a newer hybridpot (a parameter added since); rebuilding the class
    would fail with a bare ``unexpected keyword argument``.  Malformed entries are left to the
    loader's own checks.
    """
    import inspect

    from ..baselines import BASELINES
    from ..descriptors import DESCRIPTORS
    from ..regression import REGRESSORS

    # classes whose params are not their __init__ arguments: (allowed keys, nested entries)
    special = {("descriptor", "DescriptorStack"): ({"descriptors", "scales"}, "descriptors"),
               ("regressor", "EnsembleRegressor"): ({"estimator", "n_models", "random_state"},
                                                    "estimator"),
               ("baseline", "ASEBaseline"): ({"calculator", "parameters"}, None)}
    registries = {"descriptor": DESCRIPTORS, "regressor": REGRESSORS, "baseline": BASELINES}
    found = []

    def visit(kind, entry, where):
        if not isinstance(entry, dict):
            return
        name = entry.get("class")
        params = entry.get("params", {})
        cls = registries[kind].get(name) if isinstance(name, str) else None
        if cls is None or not isinstance(params, dict):
            return
        if (kind, name) in special:
            allowed, nested = special[(kind, name)]
            sub = params.get(nested) if nested else None
            for k, member in enumerate(sub if isinstance(sub, list) else [sub]):
                visit(kind, member, f"{where} {name}.{nested}"
                      + (f"[{k}]" if isinstance(sub, list) else ""))
        else:
            try:
                sig = inspect.signature(cls.__init__).parameters
            except (TypeError, ValueError):
                return
            if any(p.kind == p.VAR_KEYWORD for p in sig.values()):
                return
            allowed = set(sig) - {"self"}
        extra = sorted(set(params) - allowed)
        if extra:
            found.append(f"{where} {name}: {extra}")

    visit("descriptor", doc.get("descriptor"), "descriptor")
    reg = doc.get("regressor")
    visit("regressor", reg, "regressor")
    if doc.get("baseline") is not None:
        visit("baseline", doc.get("baseline"), "baseline")
    return found


def _read_arrays(npz_bytes, path):
    """The arrays of ``arrays.npz`` (bytes), checked before any is read.

    Every member must be a ``.npy`` of a numeric dtype (no object arrays: never unpickled)
    whose header size matches its data, so a header announcing a huge shape is a
    :class:`ModelFormatError` instead of an allocation of that size; non-finite values are
    refused (no fitted state holds them).
    """
    from numpy.lib import format as npy

    arrays = {}
    with zipfile.ZipFile(io.BytesIO(npz_bytes), "r") as zf:
        for info in zf.infolist():
            name = info.filename
            if not name.endswith(".npy"):
                raise ModelFormatError(f"{path!r}: arrays.npz member {name!r} is not a .npy "
                                       "array.")
            key = name[:-4]
            with zf.open(info) as fh:
                version = npy.read_magic(fh)
                if version not in ((1, 0), (2, 0)):
                    raise ModelFormatError(f"{path!r}: array {key!r} has an unsupported .npy "
                                           f"version {version}.")
                read_header = (npy.read_array_header_1_0 if version == (1, 0)
                               else npy.read_array_header_2_0)
                shape, fortran, dtype = read_header(fh)
                if dtype.hasobject or dtype.kind not in "biuf":
                    raise ModelFormatError(
                        f"{path!r}: array {key!r} has dtype {dtype}; a model file holds "
                        "only numeric arrays (object arrays are never unpickled).")
                n = int(np.prod(shape, dtype=object)) * dtype.itemsize
                if n != info.file_size - fh.tell():
                    raise ModelFormatError(
                        f"{path!r}: array {key!r} announces shape {shape} ({n} bytes) but "
                        f"holds {info.file_size - fh.tell()} bytes of data.")
                a = npy.read_array(zf.open(info), allow_pickle=False)
            if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
                raise ModelFormatError(f"{path!r}: array {key!r} holds NaN or inf values.")
            arrays[key] = a
    return arrays


def _model_from_doc(doc, arrays, path):
    """The HybridPotential of a parsed ``model.json`` and its arrays (see :func:`load_model`)."""
    from ..baselines import baseline_from_dict
    from ..descriptors import descriptor_from_dict
    from ..potential import HybridPotential
    from ..regression import REGRESSORS

    try:
        descriptor = descriptor_from_dict(doc["descriptor"])
        reg_doc = doc["regressor"]
        cls = REGRESSORS.get(reg_doc.get("class"))
        if cls is None:
            raise ModelFormatError(f"Unknown regressor class {reg_doc.get('class')!r}; "
                                   f"known: {sorted(REGRESSORS)}.")
        regressor = cls.from_dict_params(reg_doc.get("params", {}))
        regressor.set_fitted_state(reg_doc.get("state", {}), arrays)
        baseline = None if doc.get("baseline") is None else baseline_from_dict(doc["baseline"])
        params = doc.get("params", {})
        model = HybridPotential.from_fitted(
            descriptor, regressor, baseline=baseline,
            reference_energies=doc.get("reference_energies"))
        model.weights = params.get("weights")
        model.group_weights = params.get("group_weights")
        model.chunk_size = params.get("chunk_size", 16)
        if "reference_energies" in params:   # files before it kept only the fitted e0
            model.reference_energies = params["reference_energies"]
        model.group_names_ = tuple(params.get("group_names", ("default",)))
        if tuple(model.species_) != tuple(doc.get("species", model.species_)):
            raise ModelFormatError(f"{path!r}: species {doc.get('species')} do not match the "
                                   f"descriptor's {list(model.species_)}.")
        if "extra" in doc and hasattr(model, "_set_extra_state"):
            model._set_extra_state(doc["extra"])
        _check_consistent(model, doc)
        unread = _unread_entries(model, doc, arrays)
    except ModelFormatError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, ArithmeticError) as e:
        # ArithmeticError: e.g. OverflowError of a huge number squared while restoring
        raise ModelFormatError(f"{path!r} is an incomplete or corrupt hybridpot model: "
                               f"{type(e).__name__}: {e}") from e
    if unread:
        from .. import __version__

        raise ModelFormatError(
            f"{path!r} (model format version {doc.get('format_version')}, written by hybridpot "
            f"{doc.get('hybridpot_version')}) holds entries this hybridpot {__version__} does "
            f"not read: {'; '.join(unread)}. The file was probably written by a newer "
            "hybridpot whose predictions may depend on them: upgrade hybridpot to read it."
            + _same_version_note(doc))
    return model


def _same_version_note(doc):
    """For the 'newer file' errors: when the writer recorded this very version string, the
    file comes from a later development state under the same number (hyperparameters and
    state are added between releases), which 'upgrade' alone does not make clear."""
    from .. import __version__

    if str(doc.get("hybridpot_version")) != __version__:
        return ""
    return (f" It records the same version, {__version__}, as this installation: it was "
            f"written by a later development state of hybridpot {__version__}; install that "
            f"(e.g. the current source tree).")


_TOP_KEYS = {"format", "format_version", "hybridpot_version", "species", "descriptor",
             "regressor", "baseline", "reference_energies", "params", "extra"}
_PARAM_KEYS = {"weights", "group_weights", "chunk_size", "group_names", "reference_energies"}


def _unread_entries(model, doc, arrays):
    """Entries of the file the loaded model would not write back: a newer writer's fitted
    state (a new array, state key or ``extra`` entry) that this reader would silently ignore
    -- as readers before 634047d ignored the sparse GP's ``dot_softening`` and predicted other
    energies.  Everything an earlier hybridpot wrote is still written (checked on files of
    every earlier version, tests/test_model_compat_s11.py)."""
    out = []
    top = sorted(set(doc) - _TOP_KEYS)
    if top:
        out.append(f"top-level keys {top}")
    params = doc.get("params", {})
    extra_params = sorted(set(params) - _PARAM_KEYS) if isinstance(params, dict) else []
    if extra_params:
        out.append(f"params {extra_params}")
    reg = doc.get("regressor", {})
    reg_keys = sorted(set(reg) - {"class", "params", "state"})
    if reg_keys:
        out.append(f"regressor keys {reg_keys}")
    state, arrs = model.regressor_.get_fitted_state()

    def state_keys(file_state, own, where):
        if isinstance(file_state, dict) and isinstance(own, dict):
            unknown = sorted(set(file_state) - set(own))
            if unknown:
                out.append(f"{where} {unknown}")
            for k in ("members",):   # EnsembleRegressor: one state per member
                if isinstance(file_state.get(k), list) and isinstance(own.get(k), list):
                    for i, (a, b) in enumerate(zip(file_state[k], own[k])):
                        state_keys(a, b, f"{where}.{k}[{i}]")

    state_keys(reg.get("state", {}), state, f"{reg.get('class')} state")
    unknown_arrays = sorted(set(arrays) - set(arrs))
    if unknown_arrays:
        out.append(f"arrays {unknown_arrays}")
    extra = doc.get("extra")
    if isinstance(extra, dict):
        own = model._extra_state() if hasattr(model, "_extra_state") else {}
        unknown = sorted(k for k, v in extra.items() if k not in own and v)
        if unknown:
            out.append(f"extra {unknown}")
    return out


def _check_consistent(model, doc):
    """Refuse a model whose parts do not fit together (a hand edit, a damaged file): a
    descriptor parameter dropped from the file took its default and the model failed only at
    the first prediction, a NaN reference energy predicted NaN."""
    import numbers

    n_desc = int(model.descriptor.n_features)
    n_reg = getattr(model.regressor_, "n_features_in_", None)
    if n_reg is not None and int(n_reg) != n_desc:
        raise ModelFormatError(
            f"the regressor was fitted on {int(n_reg)} descriptor features, but the "
            f"descriptor {doc['descriptor']} gives {n_desc}.")
    mode = getattr(model.regressor_, "fit_mode_", "batch")
    if mode != "batch":
        raise ModelFormatError(f"the regressor's fit_mode must be 'batch' in a model file. "
                               f"Got {mode!r}.")
    hyper = doc.get("params", {}).get("reference_energies")
    if not (hyper is None or hyper in ("fit", "isolated_atom") or isinstance(hyper, dict)):
        raise ModelFormatError(
            f"the 'reference_energies' hyperparameter in 'params' must be 'fit', "
            f"'isolated_atom', a dict of element to eV/atom or null. Got {hyper!r}.")
    ref = doc.get("reference_energies")
    if ref is not None and not (
            isinstance(ref, dict) and set(ref) <= set(model.species_)
            and all(isinstance(v, numbers.Real) and not isinstance(v, bool)
                    and np.isfinite(v) for v in ref.values())):
        raise ModelFormatError(
            f"'reference_energies' must map elements of {list(model.species_)} to finite "
            f"energies (eV/atom). Got {ref!r}.")
    from .._exceptions import InvalidParameterError

    for check in ("_check", "_setup"):   # the baselines' parameter validation (as at compute)
        fn = getattr(model.baseline, check, None)
        if callable(fn):
            try:
                fn()
            except InvalidParameterError as e:
                raise ModelFormatError(f"invalid baseline parameters: {e}") from None
    ts = getattr(model, "trained_species_", None)
    if ts is not None and len(ts) == 0:
        raise ModelFormatError("'trained_species' must name at least one element. Got [].")
