"""Baseline (empirical potential) base class, its ASE calculator and the registry.

A baseline is the empirical part ``E_EP`` of ``E = E_EP + E_ML``.  Every baseline implements
:meth:`Baseline.compute` returning a dict::

    {"energy":   float, eV,
     "energies": (n_atoms,) eV per atom, or None when unavailable,
     "forces":   (n_atoms, 3) eV/Å, or None when forces=False,
     "stress":   (6,) eV/Å³ in ASE sign and Voigt order (xx, yy, zz, yz, xz, xy),
                 or None when the structure is not periodic in 3-D (or stress=False)}

and, with ``compute(atoms, virials=True)`` (the built-in baselines), also
``"virials"``: (n_atoms, 3, 3) eV, per-atom virials ``W_k`` with ``sum_k W_k = dE/d eps``
(each pair term split half and half between its two atoms, as LAMMPS ``compute stress/atom``
and ASE's per-atom ``stresses`` do); ASE's ``stresses`` are ``voigt(W_k) / V``.

The ASE stress is ``(1/V) dE/d eps`` for a homogeneous strain ``eps`` applied to positions and
cell (so a compressed crystal that pushes outwards has a *negative* stress).

Baselines with fittable parameters (``param_names`` non-empty) also provide
:meth:`Baseline.parameter_gradients`, the analytic derivatives of energy, forces and stress with
respect to the flat parameter vector :meth:`Baseline.get_param_vector`.

Serialisation goes through :meth:`Baseline.to_dict` and :func:`baseline_from_dict`, which
rebuilds only classes in the explicit :data:`BASELINES` registry (no code is executed on load).
"""

from __future__ import annotations

import numpy as np
from ase.calculators.calculator import Calculator, all_changes
from sklearn.base import BaseEstimator, clone

from .._exceptions import InvalidParameterError, ModelFormatError

__all__ = ["Baseline", "BaselineCalculator", "BASELINES", "register_baseline",
           "baseline_from_dict"]

#: explicit registry: class name -> class (filled by :func:`register_baseline`)
BASELINES = {}


def register_baseline(cls):
    """Class decorator: make ``cls`` loadable by name with :func:`baseline_from_dict`.

    Parameters
    ----------
    cls : type
        A :class:`Baseline` subclass, registered under ``cls.__name__`` in
        :data:`BASELINES`.

    Returns
    -------
    type
        ``cls`` itself.
    """
    BASELINES[cls.__name__] = cls
    return cls


def baseline_from_dict(d):
    """Rebuild a baseline from :meth:`Baseline.to_dict` output.

    Parameters
    ----------
    d : dict
        ``{"class": name, "params": {...}}``.

    Returns
    -------
    Baseline

    Raises
    ------
    hybridpot.ModelFormatError
        If ``d`` is malformed, names a class outside the registry, or carries parameters
        the class does not accept.
    """
    if not isinstance(d, dict) or "class" not in d:
        raise ModelFormatError(
            f"A baseline description must be a dict with keys 'class' and 'params'. "
            f"Got {d!r} instead.")
    name = d["class"]
    if name not in BASELINES:
        raise ModelFormatError(
            f"Unknown baseline class {name!r}; known: {sorted(BASELINES)}.")
    params = d.get("params", {})
    if not isinstance(params, dict):
        raise ModelFormatError(
            f"The 'params' of a {name} baseline description must be a dict. "
            f"Got {type(params).__name__} instead.")
    return BASELINES[name]._from_params(params)


def voigt(m):
    """(3, 3) symmetric tensor -> (6,) Voigt vector xx, yy, zz, yz, xz, xy (symmetrised)."""
    s = 0.5 * (m + np.swapaxes(m, -1, -2))
    return np.stack([s[..., 0, 0], s[..., 1, 1], s[..., 2, 2], s[..., 1, 2], s[..., 0, 2],
                     s[..., 0, 1]], axis=-1)


def no_parameter_gradients(atoms):
    """Parameter gradients of a baseline without fittable parameters (leading dimension 0).

    Parameters
    ----------
    atoms : ase.Atoms

    Returns
    -------
    dict
        ``energy`` (0,), ``forces`` (0, n_atoms, 3) and ``stress`` (0, 6) (None unless the
        cell is periodic in 3-D), as :meth:`Baseline.parameter_gradients`.
    """
    n = len(atoms)
    return {"energy": np.zeros(0), "forces": np.zeros((0, n, 3)),
            "stress": np.zeros((0, 6)) if bool(np.all(atoms.pbc)) else None}


class Baseline(BaseEstimator):
    """Abstract empirical potential ``E_EP(r; θ)`` (eV) underneath the ML correction.

    Subclasses take keyword-only parameters in ``__init__`` and only store them; they are
    validated at first use (and again whenever they change, e.g. after ``set_params``) and
    raise :class:`~hybridpot.InvalidParameterError` naming the parameter.

    Subclasses implement :meth:`compute`, :attr:`param_names`, :meth:`get_param_vector`,
    :meth:`_params_from_vector`, :meth:`parameter_gradients` and :meth:`lammps_commands`.
    """

    # -- to be provided by subclasses -------------------------------------------------------
    def compute(self, atoms, *, forces=True, stress=True):  # pragma: no cover - abstract
        """Energy (eV), per-atom energies, forces (eV/Å), stress (eV/Å³); see module doc.

        Parameters
        ----------
        atoms : ase.Atoms
            Structure (not modified).
        forces, stress : bool, default=True
            Whether to return forces and (for cells periodic in 3-D) the stress.

        Returns
        -------
        dict
            ``energy`` (float, eV), ``energies`` ((n_atoms,) eV or None), ``forces``
            ((n_atoms, 3) eV/Å or None), ``stress`` ((6,) eV/Å³, ASE sign and Voigt order,
            or None); see the module docstring.

        Notes
        -----
        A subclass that also takes a keyword ``virials`` (default False) and then returns
        ``"virials"`` ((n_atoms, 3, 3) eV, see the module docstring) supports per-atom
        stresses (``HybridCalculator`` ``stresses``); the built-in baselines do.
        """
        raise NotImplementedError

    @property
    def param_names(self):
        """tuple of str: names of the fittable parameters, in flat-vector order."""
        return ()

    def get_param_vector(self):
        """Current fittable parameters as a flat float array of shape (n_params,)."""
        return np.zeros(0)

    def _params_from_vector(self, v):
        """``set_params`` keyword dict for the flat vector ``v`` (already checked)."""
        return {}

    def parameter_gradients(self, atoms):  # pragma: no cover - abstract
        """Analytic derivatives with respect to the flat parameter vector.

        Parameters
        ----------
        atoms : ase.Atoms
            Structure (not modified).

        Returns
        -------
        dict
            ``energy`` (n_params,) eV per parameter unit, ``forces`` (n_params, n_atoms, 3)
            eV/Å per parameter unit, ``stress`` (n_params, 6) eV/Å³ per parameter unit or None
            when the cell is not periodic in 3-D.
        """
        raise NotImplementedError

    def lammps_commands(self, species):  # pragma: no cover - abstract
        """LAMMPS ``pair_style`` / ``pair_coeff`` / table files for this baseline.

        Parameters
        ----------
        species : list of str
            Chemical symbol of LAMMPS atom types 1, 2, ...

        Returns
        -------
        dict
            ``pair_style`` (str), ``pair_coeff`` (list of str, ``hybrid/overlay`` form) and
            ``files`` (file name -> text).

        Raises
        ------
        hybridpot.InvalidParameterError
            When the baseline has no LAMMPS equivalent or ``species`` is invalid.
        """
        raise NotImplementedError

    # -- shared machinery -------------------------------------------------------------------
    @property
    def n_params(self):
        """int: number of fittable parameters."""
        return len(self.param_names)

    def with_param_vector(self, v):
        """A new baseline (a clone) whose fittable parameters are ``v``.

        Parameters
        ----------
        v : array_like of float, shape (n_params,)
            Values in the order of :attr:`param_names`.

        Returns
        -------
        Baseline
            ``self`` is not modified.  Ranges are checked at first use like any parameter
            (an out-of-range vector, e.g. a sampler proposing ``sigma < 0``, makes
            ``compute`` raise :class:`~hybridpot.InvalidParameterError`).
        """
        names = self.param_names
        v = np.asarray(v, dtype=np.float64)
        if v.shape != (len(names),):
            raise InvalidParameterError(
                f"The 'v' argument of {type(self).__name__}.with_param_vector must be a vector "
                f"of length {len(names)} (parameters {list(names)}). Got shape {v.shape} "
                f"instead.")
        if not np.all(np.isfinite(v)):
            raise InvalidParameterError(
                f"The 'v' argument of {type(self).__name__}.with_param_vector must be finite. "
                f"Got {v.tolist()} instead.")
        new = clone(self)
        new.set_params(**self._params_from_vector(v))
        return new

    def calculator(self):
        """An ASE calculator evaluating this baseline.

        Returns
        -------
        BaselineCalculator
            Implements ``energy``, ``free_energy``, ``energies``, ``forces`` and ``stress``
            (stress only for cells periodic in 3-D).  It keeps a reference to this baseline;
            cached results are discarded whenever the baseline's parameters change.
        """
        return BaselineCalculator(self)

    def _param_key(self):
        """Fingerprint of the current parameters (to detect changes made by set_params)."""
        return repr(sorted(self.get_params(deep=False).items(), key=lambda kv: kv[0]))

    def to_dict(self):
        """JSON-serialisable description ``{"class": name, "params": {...}}``."""
        params = {}
        for k, v in self.get_params(deep=False).items():
            params[k] = _jsonable(v, k, type(self).__name__)
        return {"class": type(self).__name__, "params": params}

    @classmethod
    def _from_params(cls, params):
        try:
            return cls(**params)
        except TypeError as e:
            raise ModelFormatError(
                f"Cannot rebuild a {cls.__name__} baseline from parameters "
                f"{sorted(params)}: {e}.") from None


def _jsonable(v, name, owner):
    if isinstance(v, np.generic):
        v = v.item()
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, dict):
        return {str(k): _jsonable(x, name, owner) for k, x in v.items()}
    if isinstance(v, (list, tuple, np.ndarray)):
        return [_jsonable(x, name, owner) for x in v]
    raise ModelFormatError(
        f"The '{name}' parameter of {owner} ({type(v).__name__}) cannot be saved as JSON.")


def _stress_needs_3d_pbc(owner, pbc, cutoff):
    """The ``PropertyNotImplementedError`` of an ASE calculator asked for the stress of a
    structure that is not periodic in 3-D (``cutoff`` names what the vacuum must exceed)."""
    from ase.calculators.calculator import PropertyNotImplementedError

    return PropertyNotImplementedError(
        f"{owner} gives the stress only for cells periodic in 3-D (pbc=(True, True, True)); "
        f"this structure has pbc={np.asarray(pbc).tolist()}. For a slab, set atoms.pbc = True "
        f"with a vacuum wider than {cutoff} (energy and forces are then unchanged).")


def compute_with_virials(baseline, atoms, owner, forces=True, stress=True, partition=True):
    """``baseline.compute(atoms, ..., virials=True)``, or the ``PropertyNotImplementedError``
    of a baseline whose ``compute`` takes no ``virials`` keyword (a user's subclass or a
    duck-typed baseline; ``**kwargs`` counts as taking it) or returns no ``"virials"``,
    naming it and ``owner`` (what asked for per-atom stresses); ``partition`` (True /
    "half" / "centroid") is passed as ``virials``."""
    import inspect

    from ase.calculators.calculator import PropertyNotImplementedError

    params = inspect.signature(baseline.compute).parameters
    if "virials" not in params and not any(p.kind == p.VAR_KEYWORD for p in params.values()):
        why = "its compute method takes no 'virials' argument"
    else:
        res = baseline.compute(atoms, forces=forces, stress=stress, virials=partition)
        virials = res.get("virials") if isinstance(res, dict) else None
        if virials is not None and np.shape(virials) == (len(atoms), 3, 3):
            return res
        why = (f"its compute(..., virials={partition!r}) returned no 'virials' of shape "
               f"(n_atoms, 3, 3) = ({len(atoms)}, 3, 3); got "
               + ("none" if virials is None else f"shape {np.shape(virials)}"))
    raise PropertyNotImplementedError(
        f"The baseline {type(baseline).__name__} of this {owner} gives no per-atom "
        f"virials ({why}), so the per-atom stresses cannot be computed. hybridpot's EMT, "
        f"ZBL, LennardJones, Morse, Buckingham and ASEBaseline of a calculator implementing "
        f"'stresses' give them.")


def cell_volume_per_atom(atoms, owner):
    """``get_atomic_volumes`` of the calculators (``owner``): the cell volume (Å³) for every atom
    of ``atoms`` (the attached structure or the one passed), the volume their per-atom
    ``stresses`` are divided by."""
    from ase import Atoms

    if atoms is None:
        raise InvalidParameterError(
            f"{owner}.get_atomic_volumes has no structure: pass one or attach the calculator. "
            f"Got atoms=None.")
    if not isinstance(atoms, Atoms):
        raise InvalidParameterError(
            f"The 'atoms' argument of {owner}.get_atomic_volumes must be an ase.Atoms or None. "
            f"Got {type(atoms).__name__} instead.")
    return np.full(len(atoms), float(atoms.get_volume()))


class BaselineCalculator(Calculator):
    """ASE calculator around :meth:`Baseline.compute`.

    Parameters
    ----------
    baseline : Baseline
        Evaluated on every new structure.  Results are cached per structure as usual in ASE
        and also reset when the baseline's parameters change (``baseline.set_params``).
        The stress (eV/Å³) is given for cells periodic in 3-D only (asking for it on a slab
        with ``pbc=(True, True, False)`` raises ``PropertyNotImplementedError``), and so
        are the per-atom ``stresses`` ((n_atoms, 6), eV/Å³, ASE Voigt order and sign,
        summing to the stress; computed only when asked for, with baselines whose
        ``compute`` takes ``virials``).

    Raises
    ------
    hybridpot.InvalidParameterError
        For a ``baseline`` that is not a :class:`Baseline`.
    """

    implemented_properties = ["energy", "free_energy", "energies", "forces", "stress",
                              "stresses"]

    def __init__(self, baseline):
        if not isinstance(baseline, Baseline):
            raise InvalidParameterError(
                f"The 'baseline' parameter of BaselineCalculator must be a Baseline. "
                f"Got {type(baseline).__name__} instead.")
        super().__init__()
        self.baseline = baseline
        self._key = None

    def set(self, **kwargs):
        """Reject ASE-style parameters: set them on the baseline with ``set_params``.

        Parameters
        ----------
        **kwargs
            Must be empty.

        Returns
        -------
        dict
            ``{}`` (no parameter changed).

        Raises
        ------
        hybridpot.InvalidParameterError
            For any keyword.
        """
        if kwargs:
            raise InvalidParameterError(
                f"BaselineCalculator has no parameters of its own; set "
                f"{sorted(kwargs)} on the baseline with baseline.set_params(...) "
                f"(allowed there: {sorted(self.baseline.get_params(deep=False))}).")
        return {}

    def check_state(self, atoms, tol=1e-15):
        """ASE's changes between ``atoms`` and the cached structure, plus
        ``"baseline_parameters"`` when the baseline's parameters changed.

        Parameters
        ----------
        atoms : ase.Atoms
            The structure to compare with the one of the cached results.
        tol : float, default=1e-15
            Position / cell tolerance (Å), as in ASE.

        Returns
        -------
        list of str
        """
        changes = super().check_state(atoms, tol)
        if self._key != self.baseline._param_key():
            changes = list(changes) + ["baseline_parameters"]
        return changes

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        """Fill ``self.results`` (energy, free_energy, forces, energies, stress; the per-atom
        ``stresses`` when asked for) for ``atoms``.

        Parameters
        ----------
        atoms : ase.Atoms or None, default=None
            The structure; ``None`` uses the attached one.
        properties : sequence of str, default=("energy",)
            Properties asked for.
        system_changes : list of str, default=ase.calculators.calculator.all_changes
            What changed since the last calculation (ASE's bookkeeping).

        Raises
        ------
        ase.calculators.calculator.PropertyNotImplementedError
            For ``stress`` or ``stresses`` of a cell not periodic in 3-D, and ``stresses``
            of an ``ASEBaseline`` whose calculator lacks them.
        """
        super().calculate(atoms, properties, system_changes)
        if {"stress", "stresses"} & set(properties) and not bool(np.all(self.atoms.pbc)):
            raise _stress_needs_3d_pbc("BaselineCalculator", self.atoms.pbc, "the cutoff")
        key = self.baseline._param_key()
        if "stresses" in properties:
            res = compute_with_virials(self.baseline, self.atoms, "BaselineCalculator")
        else:
            res = self.baseline.compute(self.atoms, forces=True, stress=True)
        self.results = {"energy": float(res["energy"]), "free_energy": float(res["energy"]),
                        "forces": np.array(res["forces"])}
        if res.get("energies") is not None:
            self.results["energies"] = np.array(res["energies"])
        if res.get("stress") is not None:
            self.results["stress"] = np.array(res["stress"])
        if res.get("virials") is not None:
            self.results["stresses"] = voigt(res["virials"]) / self.atoms.get_volume()
        self._key = key

    def get_atomic_volumes(self, atoms=None):
        """The cell volume for every atom (Å³, shape (n_atoms,)): the volume the per-atom
        ``stresses`` are divided by, which ASE's ``get_stresses(include_ideal_gas=True)``
        then also uses for each atom's kinetic term (so the sum stays the stress).

        Parameters
        ----------
        atoms : ase.Atoms or None, default=None
            The structure; ``None`` uses the attached one.

        Returns
        -------
        ndarray of float64, shape (n_atoms,)
        """
        return cell_volume_per_atom(atoms if atoms is not None else self.atoms,
                                    "BaselineCalculator")

    def reset(self):
        super().reset()
        self._key = None
