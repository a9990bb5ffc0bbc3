"""Any ASE calculator as a baseline."""

from __future__ import annotations

import importlib

import numpy as np

from .._exceptions import (HybridpotError, InvalidParameterError, InvalidStructureError,
                           ModelFormatError)
from .._validation import check_atoms
from ._base import Baseline, no_parameter_gradients, register_baseline

__all__ = ["ASEBaseline"]

#: calculators that can be saved and rebuilt by name (explicit allowlist; no code on load)
SAVEABLE_CALCULATORS = {
    "EMT": ("ase.calculators.emt", "EMT"),
    "LennardJones": ("ase.calculators.lj", "LennardJones"),
    "MorsePotential": ("ase.calculators.morse", "MorsePotential"),
}


def _calculator_class(name):
    module, attr = SAVEABLE_CALCULATORS[name]
    return getattr(importlib.import_module(module), attr)


#: strain step of the numerical stress of calculators without ``"stress"``
_STRAIN_STEP = 1e-5
_VOIGT_PAIRS = ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))


@register_baseline
class ASEBaseline(Baseline):
    """Any ASE calculator (e.g. ``ase.calculators.emt.EMT()``) as the baseline ``E_EP``.

    Energy, forces and stress are whatever the calculator returns, evaluated on a copy of the
    structure (the input is never modified and the calculator is not left attached to it)
    after resetting the calculator (so ``calc.set(...)`` never yields stale results);
    constraints on the input are ignored (raw forces).  Per-atom energies come from
    ``get_potential_energies`` when the calculator implements ``"energies"`` (else None); the
    stress (eV/Å³) is returned for 3-D periodic cells: the calculator's own when it implements
    ``"stress"``, else by central differences of its energy under the six symmetric strains of
    size 1e-5 (12 extra energy evaluations per structure; exact to ``O(1e-10)`` relative for a
    smooth energy).  No fittable parameters.

    Parameters
    ----------
    calc : ase.calculators.calculator.BaseCalculator
        The calculator.  Only ``EMT``, ``LennardJones`` and ``MorsePotential`` from
        ``ase.calculators`` can be saved with :meth:`to_dict` (these are also pickled as a
        fresh calculator with the same parameters: a used ASE ``EMT`` does not pickle
        itself); no calculator has a LAMMPS equivalent (:meth:`lammps_commands` raises),
        except ASE's ``LAMMPSlib``, which :func:`hybridpot.io.lammps.write_snap` exports
        with its own ``pair_style`` / ``pair_coeff`` commands.
    """

    def __init__(self, calc):
        self.calc = calc

    def __getstate__(self):
        # ASE's EMT keeps a lambda once used (EMT.initialize): such a calculator does not
        # pickle, nor would a model or a HybridCalculator holding it.  Calculators rebuilt by
        # name (SAVEABLE_CALCULATORS) are pickled as a fresh copy from their parameters (the
        # cached results are dropped; compute resets them anyway); others as they are.
        state = dict(super().__getstate__())
        try:
            d = self.to_dict()
        except HybridpotError:
            return state
        state["calc"] = ASEBaseline._from_params(d["params"]).calc
        return state

    def _check(self):
        from ase.calculators.calculator import BaseCalculator

        if not isinstance(self.calc, BaseCalculator):
            raise InvalidParameterError(
                f"The 'calc' parameter of ASEBaseline must be an ASE calculator (an instance "
                f"of ase.calculators.calculator.BaseCalculator). Got "
                f"{type(self.calc).__name__} instead.")
        return self.calc

    def _param_key(self):
        # the wrapped calculator's own parameters count too (calc.set(...) changes results)
        params = getattr(self.calc, "parameters", None)
        return repr((id(self.calc), type(self.calc).__name__,
                     sorted(dict(params).items()) if isinstance(params, dict) else None))

    def _implements(self, prop):
        return prop in getattr(self.calc, "implemented_properties", ())

    @staticmethod
    def _numerical_stress(a):
        """Voigt stress (eV/Å³) of ``a`` (calculator attached) by central differences of the
        energy under symmetric strains of size ``_STRAIN_STEP`` (12 energy evaluations)."""
        cell0, pos0 = a.cell.array.copy(), a.positions.copy()
        vol = abs(np.linalg.det(cell0))
        out = np.empty(6)
        try:
            for v, (i, j) in enumerate(_VOIGT_PAIRS):
                de = []
                for sign in (1.0, -1.0):
                    eps = np.zeros((3, 3))
                    # diagonal: eps_ii = h; shear: eps_ij = eps_ji = h / 2 (engineering h)
                    eps[i, j] += 0.5 * sign * _STRAIN_STEP
                    eps[j, i] += 0.5 * sign * _STRAIN_STEP
                    a.set_cell(cell0 @ (np.eye(3) + eps), scale_atoms=False)
                    a.positions = pos0 @ (np.eye(3) + eps)
                    de.append(float(a.get_potential_energy()))
                out[v] = (de[0] - de[1]) / (2.0 * _STRAIN_STEP * vol)
        finally:
            a.set_cell(cell0, scale_atoms=False)
            a.positions = pos0
        return out

    def compute(self, atoms, *, forces=True, stress=True, virials=False):
        """Energy (eV), per-atom energies, forces (eV/Å) and stress (eV/Å³) from the calculator.

        Parameters
        ----------
        atoms : ase.Atoms
            Structure (not modified: the calculator is run on a copy).
        forces, stress : bool, default=True
            Whether to return forces and (for cells periodic in 3-D) the stress.
        virials : bool or "half", default=False
            Also return the per-atom virials (key ``"virials"``, (n_atoms, 3, 3), eV): the
            calculator's per-atom stresses (ASE ``"stresses"``, symmetric Voigt, eV/Å³) times
            the volume.  Needs a calculator implementing ``"stresses"`` (e.g. ASE's
            ``LennardJones``; not ASE's ``EMT``: use :class:`hybridpot.baselines.EMT`) and a
            cell periodic in 3-D.

        Returns
        -------
        dict
            Layout of :meth:`hybridpot.baselines.Baseline.compute`.

        Raises
        ------
        hybridpot.InvalidStructureError
            When the calculator fails on the structure (e.g. EMT and an element it lacks);
            the calculator's exception is chained.
        ase.calculators.calculator.PropertyNotImplementedError
            With ``virials=True``, for a calculator that does not implement ``"stresses"``
            or a cell not periodic in 3-D.
        """
        calc = self._check()
        check_atoms(atoms, owner="ASEBaseline")
        from ..descriptors._base import _virial_share

        share = _virial_share(virials, "virials", "ASEBaseline.compute")
        if share == 0.0:   # centroid
            from ase.calculators.calculator import PropertyNotImplementedError

            raise PropertyNotImplementedError(
                f"ASEBaseline({type(calc).__name__}) cannot give centroid per-atom virials: "
                f"an ASE calculator gives only its own per-atom 'stresses'. Use "
                f"partition='half', or hybridpot's own EMT, ZBL, LennardJones, Morse or "
                f"Buckingham baseline.")
        virials = share is not None
        if virials and not self._implements("stresses"):
            from ase.calculators.calculator import PropertyNotImplementedError

            raise PropertyNotImplementedError(
                f"ASEBaseline({type(calc).__name__}) cannot give per-atom virials: the ASE "
                f"calculator {type(calc).__name__} does not implement 'stresses' (its "
                f"implemented_properties: {list(getattr(calc, 'implemented_properties', []))})."
                f" Use a calculator with per-atom stresses, or hybridpot's own EMT, ZBL, "
                f"LennardJones, Morse or Buckingham baseline.")
        if virials and not bool(np.all(atoms.pbc)):
            from ._base import _stress_needs_3d_pbc

            raise _stress_needs_3d_pbc(f"ASEBaseline({type(calc).__name__})", atoms.pbc,
                                       "the cutoff")
        a = atoms.copy()
        a.set_constraint()
        # ASE keeps results after calc.set(...) unless discard_results_on_any_change: never
        # trust the wrapped calculator's cache
        calc.reset()
        a.calc = calc
        try:
            res = {"energy": float(a.get_potential_energy()), "energies": None,
                   "forces": None, "stress": None}
            if self._implements("energies"):
                res["energies"] = np.array(a.get_potential_energies(), dtype=np.float64)
            if forces:
                res["forces"] = np.array(a.get_forces(), dtype=np.float64)
            if stress and bool(np.all(a.pbc)):
                if self._implements("stress"):
                    res["stress"] = np.array(a.get_stress(voigt=True), dtype=np.float64)
                else:
                    res["stress"] = self._numerical_stress(a)
            if virials:
                from ase.stress import voigt_6_to_full_3x3_stress

                res["virials"] = voigt_6_to_full_3x3_stress(
                    np.array(a.get_stresses(), dtype=np.float64)) * a.get_volume()
        except HybridpotError:
            raise
        except Exception as e:  # e.g. EMT: NotImplementedError("No EMT-potential for Fe")
            raise InvalidStructureError(
                f"ASEBaseline({type(calc).__name__}) cannot evaluate the structure "
                f"{atoms.get_chemical_formula()}: {type(e).__name__}: {e}") from e
        finally:
            a.calc = None
        return res

    def parameter_gradients(self, atoms):
        """No fittable parameters: arrays with a leading dimension of 0.

        Parameters
        ----------
        atoms : ase.Atoms
            Structure (not modified).

        Returns
        -------
        dict
            ``energy`` (0,), ``forces`` (0, n_atoms, 3) and ``stress`` (0, 6) (None unless the
            cell is periodic in 3-D).
        """
        self._check()
        return no_parameter_gradients(atoms)

    def to_dict(self):
        """``{"class": "ASEBaseline", "params": {"calculator": name, "parameters": {...}}}``.

        Raises
        ------
        hybridpot.ModelFormatError
            If the calculator is not one of ``ase.calculators.emt.EMT``,
            ``ase.calculators.lj.LennardJones``, ``ase.calculators.morse.MorsePotential``.
        """
        calc = self._check()
        name = type(calc).__name__
        if name not in SAVEABLE_CALCULATORS or type(calc) is not _calculator_class(name):
            allowed = [".".join(v) for v in SAVEABLE_CALCULATORS.values()]
            raise ModelFormatError(
                f"ASEBaseline cannot save the calculator {type(calc).__module__}."
                f"{type(calc).__qualname__}: only calculators rebuilt by name from their "
                f"parameters can be saved ({allowed}). Recreate the baseline with the "
                f"calculator after loading instead.")
        params = {}
        for k, v in dict(getattr(calc, "parameters", {})).items():
            if isinstance(v, np.generic):
                v = v.item()
            if not (v is None or isinstance(v, (bool, int, float, str))):
                raise ModelFormatError(
                    f"ASEBaseline cannot save the {name} parameter {k!r}={v!r}: only "
                    f"scalar parameters can be saved.")
            params[k] = v
        return {"class": "ASEBaseline", "params": {"calculator": name, "parameters": params}}

    @classmethod
    def _from_params(cls, params):
        name = params.get("calculator")
        if set(params) - {"calculator", "parameters"} or name not in SAVEABLE_CALCULATORS:
            raise ModelFormatError(
                f"Cannot rebuild an ASEBaseline from {params!r}: expected keys 'calculator' "
                f"(one of {sorted(SAVEABLE_CALCULATORS)}) and 'parameters'.")
        klass = _calculator_class(name)
        kw = params.get("parameters", {})
        if not isinstance(kw, dict):
            raise ModelFormatError(
                f"The 'parameters' of a saved ASEBaseline({name}) must be a dict. "
                f"Got {type(kw).__name__} instead.")
        unknown = sorted(set(kw) - set(klass.default_parameters))
        if unknown:
            raise ModelFormatError(
                f"Unknown parameters {unknown} for ase {name} in a saved ASEBaseline; "
                f"allowed: {sorted(klass.default_parameters)}.")
        return cls(calc=klass(**kw))

    def lammps_commands(self, species):
        """Always raises: an arbitrary ASE calculator has no LAMMPS equivalent.

        Parameters
        ----------
        species : list of str
            Chemical symbol of LAMMPS atom types 1, 2, ...

        Raises
        ------
        hybridpot.InvalidParameterError
        """
        name = type(self.calc).__name__
        raise InvalidParameterError(
            f"ASEBaseline({name}) has no LAMMPS equivalent: an arbitrary ASE calculator cannot "
            f"be exported to LAMMPS. Use ZBL, LennardJones, Morse or Buckingham as the "
            f"baseline to export the model (or, for any LAMMPS pair style, ASE's LAMMPSlib "
            f"calculator in ASEBaseline).")
