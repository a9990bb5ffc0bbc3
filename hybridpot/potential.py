"""The hybrid potential ``E = E_EP + sum_i (e0[Z_i] + eps(X_i, Z_i; w))`` and its ASE calculator."""

from __future__ import annotations

import numbers
import time
import warnings
import weakref

import numpy as np
from ase.calculators.calculator import Calculator, all_changes
from sklearn.base import BaseEstimator, clone

from ._exceptions import (InvalidParameterError, InvalidStructureError, MissingLabelsError,
                          ModelFormatError, NotFittedError, UnknownSpeciesError)
from ._labels import get_labels, matrix_to_voigt
from ._validation import check_float, check_int, check_structure_list, species_indices
from .regression._base import KINDS, BatchSource, StructureBatch

__all__ = ["HybridPotential", "HybridCalculator"]

DEFAULT_WEIGHTS = {"energy": 1.0, "forces": 1.0, "stress": 0.1}


def _check_model_argument(model, owner, requirement=""):
    """Raise unless ``model`` is a fitted :class:`HybridPotential`: an
    :class:`InvalidParameterError` ("The 'model' argument of ``owner`` must be a fitted
    HybridPotential``requirement``. Got ... instead.") or its ``NotFittedError``."""
    if not isinstance(model, HybridPotential):
        raise InvalidParameterError(
            f"The 'model' argument of {owner} must be a fitted HybridPotential{requirement}. "
            f"Got {type(model).__name__} instead.")
    model._check_fitted()


def _as_structure_list(structures, name="structures"):
    return check_structure_list(structures, f"The '{name}' argument")


def _volume(atoms):
    return float(atoms.get_volume()) if np.all(atoms.pbc) else np.nan


class _Prepared:
    """Per-structure residual labels and metadata of a training set (small: no descriptors)."""

    def __init__(self, structures, species_idx, energy, forces, stress, weights, group,
                 group_names):
        self.structures = structures
        self.species_idx = species_idx
        self.energy = energy
        self.forces = forces
        self.stress = stress
        self.weights = weights
        self.group = group
        self.group_names = group_names


#: gap_fit's per-configuration (info) and per-atom (arrays) sigmas, which fit does not read
_GAP_SIGMA_KEYS = ("energy_sigma", "force_sigma", "virial_sigma", "hessian_sigma",
                   "force_atom_sigma", "force_component_sigma")


def _warn_gap_sigmas(structures):
    """A UserWarning when training structures carry gap_fit sigmas (silently unused)."""
    found, n = set(), 0
    for atoms in structures:
        keys = [k for k in _GAP_SIGMA_KEYS if k in atoms.info or k in atoms.arrays]
        found.update(keys)
        n += bool(keys)
    if n:
        warnings.warn(
            f"{n} training structures carry gap_fit per-configuration sigmas "
            f"{sorted(found)}, which HybridPotential does not read (each label kind has one "
            f"noise level): convert energy_sigma / force_sigma / virial_sigma into weights "
            f"with hybridpot.io.standardize_labels(structures, default_sigma=...) ([data] "
            f"default_sigma in a config); per-atom sigmas have no equivalent. Delete the keys "
            f"to silence this warning.", UserWarning, stacklevel=4)


#: attributes HybridPotential.fit sets or drops (restored when a fit fails)
_FIT_ATTRIBUTES = ("species_", "reference_energies_", "trained_species_", "group_names_",
                   "regressor_", "n_train_structures_", "fit_time_", "uncertainty_",
                   "uncertainty_scale_", "uncertainty_recalibration_",
                   "composition_null_space_")


def _label_errors(structures, results):
    """Prediction errors against the labels, one dict per structure: ``"energy"`` (eV/atom,
    shape (1,)), ``"force"`` (eV/Å, flattened components), ``"stress"`` (eV/Å³, Voigt), each
    only for a kind the structure carries (``results``: :meth:`HybridPotential._evaluate_many`
    of ``structures``)."""
    out = []
    for k, (a, r) in enumerate(zip(structures, results)):
        lab = get_labels(a, k)
        e = {}
        if lab.energy is not None:
            e["energy"] = np.atleast_1d((r["energy"] - lab.energy) / len(a))
        if lab.forces is not None:
            e["force"] = (r["forces"] - lab.forces).ravel()
        if lab.stress is not None and "stress" in r:
            e["stress"] = np.ravel(r["stress"] - lab.stress)
        out.append(e)
    return out


def _error_stats(errors, kind):
    """``(MAE, RMSE)`` of ``kind`` over :func:`_label_errors` dicts (NaN, NaN without it)."""
    v = [e[kind] for e in errors if kind in e]
    if not v:
        return np.nan, np.nan
    v = np.concatenate(v)
    return float(np.mean(np.abs(v))), float(np.sqrt(np.mean(v ** 2)))


class HybridPotential(BaseEstimator):
    r"""An empirical baseline plus a machine-learned correction, fitted to DFT residuals.

    .. math::

        E(\mathbf r) = E_\mathrm{EP}(\mathbf r) + \sum_i \big(e_0[Z_i]
                       + \varepsilon(\mathbf d_i(\mathbf r), Z_i; \mathbf w)\big)

    The regressor is fitted to ``y_DFT - y_EP - sum_i e0[Z_i]`` for energies, forces
    (``F = -dE/dr``) and stresses (``(1/V) dE/d eps``, ASE sign); forces and stress at
    prediction time come from the descriptor adjoint (``descriptor.backward``), never from a
    dense Jacobian.

    Parameters
    ----------
    descriptor : hybridpot.descriptors.Descriptor
        Per-atom environment descriptor; its ``species`` list defines the model's elements.
    regressor : hybridpot.regression.Regressor
        Model of the per-atom ML energy (cloned at ``fit``).
    baseline : hybridpot.baselines.Baseline or None, default=None
        Empirical potential; ``None`` is a zero baseline (pure ML).
    weights : dict, optional
        Weight of the squared residuals of each label kind, keys ``"energy"`` (per-atom
        energies, eV/atom), ``"forces"`` (eV/Å) and ``"stress"`` (eV/Å³). Default
        ``{"energy": 1.0, "forces": 1.0, "stress": 0.1}``; a missing key means 1.
        (FitSNAP's ``eweight`` / ``fweight`` / ``vweight`` multiply the rows, i.e. the
        residuals: the equivalent weights here, and in ``group_weights``, are their squares.)
    group_weights : dict, optional
        Extra factor per ``atoms.info["config_type"]`` group: ``{"Surface": 2.0}`` scales every
        kind, ``{"Surface": {"forces": 0.5}}`` one kind.  A training structure may also
        carry its own factor ``atoms.info["fit_weight"]`` (float >= 0, default 1), which
        multiplies every kind of that structure on top of ``weights`` and ``group_weights``
        (e.g. importance weights of an actively selected training set,
        :mod:`hybridpot.learn`), and factors of one kind, ``atoms.info["fit_weight_energy"]``,
        ``["fit_weight_forces"]``, ``["fit_weight_stress"]`` (e.g. gap_fit's per-configuration
        sigmas, :func:`hybridpot.io.standardize_labels` with ``default_sigma``).
    reference_energies : "fit", "isolated_atom", dict or None, default="fit"
        Per-element reference energies ``e0`` (eV/atom; GAP's ``e0``): fitted by least
        squares on the composition of the training energies after the baseline (weighted by
        the energy weights of the structures, so ``fit_weight = 0`` leaves ``e0`` unchanged;
        unweighted if every energy weight is 0), given as a dict (every element of the
        descriptor species, eV/atom), or zero (``None``: the regressor's own per-element
        constant must then carry the whole energy per atom -- unpenalised in the linear models
        and the network, but the sparse GP's has a ``N(0, (100 eV)^2)`` prior, so DFT total
        energies of hundreds of eV/atom need ``"fit"`` or a dict; with ``None`` a GP fitted to
        H/C/N/O molecule total energies was 640 eV off).  When the training compositions do not
        determine them (e.g. every structure has the same element ratio) the minimum-norm
        least-squares solution is used: energies at other compositions are then
        extrapolations (a Bayesian model's σ shows it).  Without any energy label ("fit"
        gives ``e0 = 0``) the data fix forces and stresses but not the energy's constant:
        predicted energies are then meaningful only as differences between structures of
        the same composition.  ``"isolated_atom"`` (gap_fit's ``e0_method=isolated``): ``e0``
        of each element is the energy label minus the baseline energy of the training
        structures of one atom with no neighbour (periodic image) within the descriptor's
        ``r_cut``, as gap_fit finds them (e.g. a non-periodic cell with
        ``config_type=isolated_atom``; their mean if several); every element needs one.
        These structures stay in the training set, as in gap_fit.  Without a baseline the
        ML term must then carry the whole cohesive energy between the isolated atom (whose
        descriptor vanishes) and the condensed phase: fix the energy noise as gap_fit's
        ``default_sigma`` does (e.g. ``SparseGPRegressor(noise={"energy": 0.001, "forces":
        0.05})``); with evidence-maximised noise the fit may explain the energies as noise
        (EMT Cu, six 32-atom cells plus the isolated atom, training energy MAE: 0.42
        eV/atom, 0.007 meV/atom with the noise fixed).
    chunk_size : int, default=16
        Structures per descriptor batch: peak memory scales with the Jacobian of one chunk.
    n_workers : int, default=1
        Processes for descriptor and design-matrix computation (Dask; see
        :mod:`hybridpot.parallel`). 1 computes in this process.
    verbose : bool, default=False
        Progress bars (tqdm) over structures.

    Attributes
    ----------
    species_ : tuple of str
    reference_energies_ : dict of str to float
        eV/atom.
    regressor_ : Regressor
        The fitted regressor.
    group_names_ : tuple of str
    trained_species_ : tuple of str
        Elements of ``species_`` that have atoms in a training structure with a label of
        positive weight.  Predicting a structure with another element of the descriptor
        species raises :class:`~hybridpot.UnknownSpeciesError`: its reference energy and ML
        correction were never fitted.
    composition_null_space_ : ndarray of shape (n_species, k) or None
        Orthonormal element-count directions (rows follow ``species_``) that the training
        compositions do not span when ``reference_energies="fit"`` (e.g. every training
        structure has the same element ratio: only that combination of the ``e0`` is
        fixed); None when they span every trained element.  Predicting a structure whose
        composition has a component along them warns (UserWarning) that its energy is an
        arbitrary extrapolation.
    fit_time_ : float
        Wall time of :meth:`fit`, s.
    n_train_structures_ : int
        Structures given to :meth:`fit`.
    uncertainty_ : hybridpot.uq.Committee
        Posterior committee installed by :meth:`hybridpot.uq.LinearPosterior.apply` (only
        then); it gives every σ in place of the regressor's own.  Dropped by a refit.
    uncertainty_scale_ : dict of str to float
        Label kind -> σ factor set by :meth:`recalibrate` (``"nll"``, ``"coverage"``,
        ``"split"``); absent before.  Dropped by a refit.
    uncertainty_recalibration_ : dict
        Label kind -> variance model set by :meth:`recalibrate` with a heteroscedastic method;
        absent otherwise.  Dropped by a refit.
    """

    def __init__(self, descriptor=None, regressor=None, baseline=None, weights=None, *,
                 group_weights=None, reference_energies="fit", chunk_size=16, n_workers=1,
                 verbose=False):
        self.descriptor = descriptor
        self.regressor = regressor
        self.baseline = baseline
        self.weights = weights
        self.group_weights = group_weights
        self.reference_energies = reference_energies
        self.chunk_size = chunk_size
        self.n_workers = n_workers
        self.verbose = verbose

    # ------------------------------------------------------------------ validation helpers
    def _validate(self):
        from .descriptors._base import Descriptor
        from .regression._base import Regressor

        if not isinstance(self.descriptor, Descriptor):
            raise InvalidParameterError(
                "The 'descriptor' parameter of HybridPotential must be a hybridpot descriptor "
                f"(e.g. PowerSpectrum). Got {type(self.descriptor).__name__} instead.")
        if not isinstance(self.regressor, Regressor):
            raise InvalidParameterError(
                "The 'regressor' parameter of HybridPotential must be a hybridpot regressor "
                f"(e.g. BayesianLinearRegressor). Got {type(self.regressor).__name__} instead.")
        if self.baseline is not None and not hasattr(self.baseline, "compute"):
            raise InvalidParameterError(
                "The 'baseline' parameter of HybridPotential must be a hybridpot baseline or "
                f"None. Got {type(self.baseline).__name__} instead.")
        w = dict(DEFAULT_WEIGHTS if self.weights is None else self.weights)
        for k, v in w.items():
            if k not in KINDS:
                raise InvalidParameterError(
                    f"The 'weights' parameter of HybridPotential may only have the keys "
                    f"{list(KINDS)}. Got {k!r} instead.")
            if isinstance(v, bool) or not isinstance(v, numbers.Real) or not v >= 0 \
                    or not np.isfinite(v):
                raise InvalidParameterError(
                    f"The 'weights' parameter of HybridPotential must map to floats in "
                    f"[0, inf). Got {k!r}: {v!r} instead.")
        if self.group_weights is not None and not isinstance(self.group_weights, dict):
            raise InvalidParameterError(
                "The 'group_weights' parameter of HybridPotential must be a dict or None. "
                f"Got {type(self.group_weights).__name__} instead.")
        for g, gw in (self.group_weights or {}).items():
            # a misspelt kind ({"forces"} as {"force"}) was ignored silently, a negative or
            # NaN factor failed in the solver
            items = gw.items() if isinstance(gw, dict) else [(None, gw)]
            for k, v in items:
                if (k is not None and k not in KINDS) or isinstance(v, bool) or not isinstance(
                        v, numbers.Real) or not np.isfinite(v) or not v >= 0:
                    raise InvalidParameterError(
                        f"The 'group_weights' parameter of HybridPotential must map each "
                        f"config_type group to a float in [0, inf) or to a dict of such floats "
                        f"with keys among {list(KINDS)}. Got {g!r}: {gw!r} instead.")
        ref = self.reference_energies
        if not (ref is None or ref in ("fit", "isolated_atom") or isinstance(ref, dict)):
            raise InvalidParameterError(
                "The 'reference_energies' parameter of HybridPotential must be 'fit', "
                f"'isolated_atom', a dict of element to eV/atom, or None. Got {ref!r} instead.")
        check_int(self.chunk_size, "chunk_size", "HybridPotential", low=1)
        check_int(self.n_workers, "n_workers", "HybridPotential", low=1)
        self.descriptor._validate()
        return {k: float(w.get(k, 1.0)) for k in KINDS}

    def _check_fitted(self):
        if not hasattr(self, "regressor_"):
            raise NotFittedError(
                "This HybridPotential is not fitted yet. Call 'fit' with a list of labelled "
                "ase.Atoms first (or build one with HybridPotential.from_fitted / load).")

    def _has_posterior(self):
        """Whether the fitted model has a predictive σ: a posterior committee
        (``uncertainty_``) or a regressor with a posterior (``has_uncertainty``)."""
        return getattr(self, "uncertainty_", None) is not None or bool(
            getattr(getattr(self, "regressor_", None), "has_uncertainty", False))

    @property
    def species(self):
        """Element symbols of the model (those of the descriptor)."""
        return tuple(self.descriptor.species)

    # ------------------------------------------------------------------ baseline
    def _baseline(self, atoms, forces=True, stress=True, virials=False):
        # virials: False, or the partition ("half" / "centroid") of the per-atom virials
        n = len(atoms)
        if self.baseline is None:
            return {"energy": 0.0, "energies": np.zeros(n), "forces": np.zeros((n, 3)),
                    "stress": np.zeros(6) if np.all(atoms.pbc) else None,
                    "virials": np.zeros((n, 3, 3))}
        if not virials:
            return self.baseline.compute(atoms, forces=forces, stress=stress)
        from .baselines._base import compute_with_virials

        return compute_with_virials(self.baseline, atoms, "HybridPotential", forces=forces,
                                    stress=stress, partition=virials)

    # ------------------------------------------------------------------ data preparation
    def _prepare(self, structures, kind_weights):
        species = tuple(self.descriptor.species)
        n_s = len(structures)
        sidx, energy, forces, stress = [], np.full(n_s, np.nan), [], np.full((n_s, 6), np.nan)
        wts = {k: np.zeros(n_s) for k in KINDS}
        groups, group_names = np.zeros(n_s, dtype=np.int64), []
        gw = self.group_weights or {}
        it = structures
        if self.verbose:
            from tqdm.auto import tqdm

            it = tqdm(structures, desc="baseline", unit="structure", disable=None)
        for s, atoms in enumerate(it):
            z = species_indices(atoms, species, "HybridPotential")
            lab = get_labels(atoms, s)
            need_s = lab.stress is not None
            base = self._baseline(atoms, forces=lab.forces is not None, stress=need_s)
            sidx.append(z)
            if lab.energy is not None:
                energy[s] = lab.energy - base["energy"]
            f = np.full((len(atoms), 3), np.nan)
            if lab.forces is not None:
                f = lab.forces - base["forces"]
            forces.append(f)
            if need_s:
                stress[s] = lab.stress - base["stress"]
            g = str(atoms.info.get("config_type", "default"))
            if g not in group_names:
                group_names.append(g)
            groups[s] = group_names.index(g)
            gws = gw.get(g, 1.0)
            fw = atoms.info.get("fit_weight", 1.0)
            for name in ("fit_weight",) + tuple(f"fit_weight_{k}" for k in KINDS):
                v = atoms.info.get(name, 1.0)
                if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real) or \
                        not np.isfinite(v) or not v >= 0:
                    raise InvalidParameterError(
                        f"The '{name}' entry of atoms.info of training structure {s} must be "
                        f"a float in [0, inf). Got {v!r} instead.")
            for k in KINDS:
                factor = gws.get(k, 1.0) if isinstance(gws, dict) else gws
                wts[k][s] = kind_weights[k] * float(factor) * float(fw) * \
                    float(atoms.info.get(f"fit_weight_{k}", 1.0))
        _warn_gap_sigmas(structures)
        unused = sorted(str(g) for g in gw if g not in group_names)
        if unused:
            # a warning, not an error: a cross-validation fold may lack a group
            warnings.warn(
                f"The 'group_weights' parameter of HybridPotential names config_type groups "
                f"{unused} that no training structure has (their weights have no effect); "
                f"the training groups are {sorted(group_names)}.", UserWarning, stacklevel=3)
        return _Prepared(structures, sidx, energy, forces, stress, wts, groups,
                         tuple(group_names))

    def _fit_reference_energies(self, prep):
        species = tuple(self.descriptor.species)
        self.composition_null_space_ = None
        ref = self.reference_energies
        if ref is None:
            return {s: 0.0 for s in species}
        if isinstance(ref, dict):
            unknown = set(ref) - set(species)
            if unknown:
                raise InvalidParameterError(
                    f"The 'reference_energies' parameter of HybridPotential has elements "
                    f"{sorted(unknown)} that are not in the descriptor species {list(species)}.")
            missing = [s for s in species if s not in ref]
            if missing:   # a forgotten element would silently get e0 = 0
                raise InvalidParameterError(
                    f"The 'reference_energies' parameter of HybridPotential must give every "
                    f"element of the descriptor species {list(species)} (0.0 explicitly if "
                    f"meant). Missing: {missing}.")
            return {s: check_float(ref[s], f"reference_energies[{s!r}]", "HybridPotential",
                                   finite=True) for s in species}
        if ref == "isolated_atom":
            return self._isolated_atom_energies(prep)
        has_e = np.isfinite(prep.energy)
        if not has_e.any():
            return {s: 0.0 for s in species}
        counts = np.array([np.bincount(z, minlength=len(species)) for z in prep.species_idx],
                          dtype=float)[has_e]
        # weighted like the energy rows of the fit (group_weights, info["fit_weight"]: a
        # structure of weight 0 does not move e0); unweighted when no energy has a weight
        # (weights={"energy": 0}: e0 is then the only fit of the energy constant)
        w = np.asarray(prep.weights["energy"], dtype=float)[has_e]
        sw = np.sqrt(w / w.max()) if np.any(w > 0) else np.ones(w.shape)
        e0, *_ = np.linalg.lstsq(counts * sw[:, None], prep.energy[has_e] * sw, rcond=None)
        counts = counts[sw > 0]  # an element only in weight-0 structures gets e0 = 0
        present = counts.sum(axis=0) > 0
        e0[~present] = 0.0
        self._composition_null_space(counts[:, present], present)
        return {s: float(v) for s, v in zip(species, e0)}

    def _isolated_atom_energies(self, prep):
        """``e0`` of ``reference_energies="isolated_atom"``: the residual (label minus
        baseline) energy of the one-atom structures without a neighbour within ``r_cut``."""
        from .neighbors import neighbor_list

        species = tuple(self.descriptor.species)
        r_cut = float(self.descriptor.r_cut)
        found = {s: [] for s in species}
        for s, z in enumerate(prep.species_idx):
            if len(z) == 1 and np.isfinite(prep.energy[s]) and \
                    neighbor_list(prep.structures[s], r_cut).n_pairs == 0:
                found[species[z[0]]].append(prep.energy[s])
        missing = [s for s in species if not found[s]]
        if missing:
            raise InvalidParameterError(
                f"The 'reference_energies' parameter of HybridPotential is 'isolated_atom', "
                f"but the training set has no isolated atom of {missing} (descriptor species "
                f"{list(species)}): a one-atom structure with an energy label and no "
                f"neighbour or periodic image within r_cut = {r_cut:g} Å, e.g. a "
                f"non-periodic cell. Add one per element, or use reference_energies='fit' "
                f"or a dict.")
        return {s: float(np.mean(found[s])) for s in species}

    def _composition_null_space(self, counts, present):
        """Set ``composition_null_space_``: the element-count directions (over the trained
        elements) that the training compositions do not span, e.g. every structure has the
        same element ratio; None when they span every direction."""
        self.composition_null_space_ = None
        if counts.size == 0:
            return
        _, sv, vt = np.linalg.svd(counts, full_matrices=True)
        rank = int(np.sum(sv > sv[0] * max(counts.shape) * np.finfo(float).eps))
        if rank < counts.shape[1]:
            null = np.zeros((present.size, counts.shape[1] - rank))
            null[present] = vt[rank:].T
            self.composition_null_space_ = null

    def _check_composition(self, atoms, z):
        """Warn when the composition of ``atoms`` has a component along
        ``composition_null_space_``: its energy is then an arbitrary extrapolation."""
        null = getattr(self, "composition_null_space_", None)
        if null is None:
            return
        c = np.bincount(z, minlength=null.shape[0]).astype(float)
        if np.linalg.norm(c @ null) > 1e-9 * np.linalg.norm(c):
            trained = [s for s, used in zip(self.species_, np.any(null != 0, axis=1)) if used]
            warnings.warn(
                f"The energy of {atoms.get_chemical_formula()} is an arbitrary "
                f"extrapolation: the training energies fix the per-element reference "
                f"energies of {trained} only in the combinations of the training "
                f"compositions (e.g. every training structure had the same element ratio), "
                f"and this composition is not one of them. Forces and energy differences at "
                f"a fixed composition are unaffected. Add training structures of other "
                f"compositions (e.g. the pure elements) or give reference_energies as a "
                f"dict.", UserWarning, stacklevel=3)

    def _trained_species(self, prep):
        """Elements with atoms in a structure that has a label of positive weight."""
        species = tuple(self.descriptor.species)
        seen = np.zeros(len(species), dtype=bool)
        for s, z in enumerate(prep.species_idx):
            labelled = (np.isfinite(prep.energy[s]) and prep.weights["energy"][s] > 0) or (
                np.isfinite(prep.forces[s]).any() and prep.weights["forces"][s] > 0) or (
                np.isfinite(prep.stress[s]).any() and prep.weights["stress"][s] > 0)
            if labelled:
                seen[z] = True
        return tuple(sp for sp, ok in zip(species, seen) if ok)

    def _untrained_elements(self, atoms):
        """Elements of ``atoms`` that no training structure had (see ``trained_species_``;
        empty for a model without that record, e.g. one loaded from an older file)."""
        trained = getattr(self, "trained_species_", None)
        if trained is None:
            return set()
        return set(atoms.get_chemical_symbols()) - set(trained)

    def _check_trained_species(self, atoms, z):
        """UnknownSpeciesError if ``atoms`` holds an element no training structure had."""
        trained = getattr(self, "trained_species_", None)
        if trained is None or len(trained) == len(self.species_):
            return
        ok = np.isin(np.arange(len(self.species_)), [self.species_.index(s) for s in trained])
        bad = np.flatnonzero(~ok[z])
        if bad.size:
            el = self.species_[z[bad[0]]]
            raise UnknownSpeciesError(
                f"The structure {atoms.get_chemical_formula()} contains the element {el!r} "
                f"(first at atom {bad[0]}), which no training structure of this "
                f"HybridPotential contained: its reference energy and ML correction were "
                f"never fitted, so only {list(trained)} can be predicted. Fit on structures "
                f"that contain {el}.")

    def _batch(self, prep, ids, gradients):
        """StructureBatch of structures ``ids`` (residual labels minus reference energies)."""
        e0 = np.array([self.reference_energies_[s] for s in self.descriptor.species])
        Xs, zs, st, fs = [], [], [], []
        pi, pj, rij, dd = [], [], [], []
        offset = 0
        chunked = None
        if gradients and len(ids) == 1 and self._chunked_jacobian(prep.structures[ids[0]]):
            # a big structure alone: its Jacobian is reduced by ranges of centre atoms
            chunked = self.descriptor.compute_chunked_gradients(prep.structures[ids[0]])
        for local, s in enumerate(ids):
            atoms = prep.structures[s]
            if gradients and chunked is None:
                X, dX = self.descriptor.compute(atoms, gradients=True)
                pi.append(dX.pair_i + offset)
                pj.append(dX.pair_j + offset)
                rij.append(dX.rij)
                dd.append(dX.d_drij)
            else:
                X = self.descriptor.compute(atoms)
            z = prep.species_idx[s]
            Xs.append(X)
            zs.append(z)
            st.append(np.full(len(atoms), local, dtype=np.int64))
            fs.append(prep.forces[s])
            offset += len(atoms)
        ids = np.asarray(ids, dtype=np.int64)
        species = np.concatenate(zs)
        structure = np.concatenate(st)
        e_ref = np.bincount(structure, weights=e0[species], minlength=len(ids))
        gr = chunked
        if gradients and chunked is None:
            from .descriptors._base import DescriptorGradients

            # the per-pair Jacobians moved one by one into the batch's array (no second
            # full copy alive next to the list, as np.concatenate would make)
            npair = sum(d.shape[0] for d in dd)
            d_drij = np.empty((npair,) + dd[0].shape[1:]) if dd else np.zeros((0, 3, 0))
            p0 = 0
            for k in range(len(dd)):   # loop over structures
                d_drij[p0:p0 + dd[k].shape[0]] = dd[k]
                p0 += dd[k].shape[0]
                dd[k] = None
            gr = DescriptorGradients(np.concatenate(pi), np.concatenate(pj),
                                     np.concatenate(rij), d_drij, offset)
        return StructureBatch(
            X=np.concatenate(Xs), species=species, structure=structure, gradients=gr,
            volume=np.array([_volume(prep.structures[s]) for s in ids]),
            energy=prep.energy[ids] - e_ref, forces=np.concatenate(fs),
            stress=prep.stress[ids], weights={k: prep.weights[k][ids] for k in KINDS},
            group=prep.group[ids], index=ids)

    def _chunks(self, n, structures=None):
        """Index lists of ``chunk_size`` structures; with ``structures``, a structure whose
        Jacobian is reduced in chunks (:meth:`_chunked_jacobian`) forms a batch of its own."""
        c = int(self.chunk_size)
        if structures is None or not any(self._chunked_jacobian(a) for a in structures):
            return [list(range(a, min(a + c, n))) for a in range(0, n, c)]
        out, cur = [], []
        for s, atoms in enumerate(structures):   # loop over structures
            if self._chunked_jacobian(atoms):
                if cur:
                    out.append(cur)
                    cur = []
                out.append([s])
                continue
            cur.append(s)
            if len(cur) == c:
                out.append(cur)
                cur = []
        if cur:
            out.append(cur)
        return out

    def _chunked_jacobian(self, atoms):
        """True for a structure fitted alone with a ChunkedGradients: the regressor's fit
        reduces one (``_chunked_fit``: linear models) and its Jacobian would exceed
        ``GRADIENT_CHUNK_BYTES`` (estimated at 64 pairs per atom)."""
        from .descriptors import _base as dbase

        return bool(getattr(self.regressor, "_chunked_fit", False)) and \
            64 * 24 * len(atoms) * self.descriptor.n_features > dbase.GRADIENT_CHUNK_BYTES

    def _batch_source(self, prep):
        n = len(prep.structures)
        chunks = self._chunks(n, prep.structures)
        need_grad = [bool(np.isfinite(prep.stress[ids]).any()
                          or any(np.isfinite(prep.forces[s]).any() for s in ids))
                     for ids in chunks]

        def factory():
            seq = zip(chunks, need_grad)
            if self.verbose:
                from tqdm.auto import tqdm

                seq = tqdm(list(seq), desc="descriptors", unit="chunk", disable=None)
            for ids, g in seq:
                yield self._batch(prep, ids, g)

        def features():   # the same batches without the Jacobian
            for ids in chunks:
                yield self._batch(prep, ids, False)

        return BatchSource(factory, n_species=len(self.descriptor.species),
                           n_features=self.descriptor.n_features,
                           species=self.descriptor.species, group_names=prep.group_names,
                           features=features)

    # ------------------------------------------------------------------ fitting
    def fit(self, structures, y=None, *, client=None):
        """Fit the ML correction to the residual labels of ``structures``.

        Parameters
        ----------
        structures : list of ase.Atoms
            Training structures carrying DFT labels (``atoms.calc.results`` or
            ``atoms.info``/``atoms.arrays``): energy (eV), forces (eV/Å) and/or stress
            (eV/Å³) or virial (eV, ``-stress * V``, QUIP/GAP). A structure may lack some
            kinds; one with no label is an error.  Labels under other names (``dft_energy``,
            ``REF_forces``, ...): :func:`hybridpot.io.read_extxyz` / ``standardize_labels``.
        y : ignored
            Present for scikit-learn compatibility (labels live on the Atoms).
        client : distributed.Client, optional
            Compute descriptors and reduce the design on this Dask cluster (see
            :mod:`hybridpot.parallel`); default: in this process, or an embedded local
            cluster when ``n_workers > 1``.

        Returns
        -------
        self

        Raises
        ------
        hybridpot.InvalidParameterError
            For an invalid hyperparameter (checked here, not in ``__init__``) or
            ``structures`` that are not a non-empty list of ase.Atoms.
        hybridpot.MissingLabelsError
            For a structure without any label (or with non-finite / malformed labels).
        hybridpot.UnknownSpeciesError, hybridpot.InvalidStructureError
            For an element outside the descriptor species, or an unphysical structure
            (non-finite positions, atoms closer than 0.1 Å, degenerate cell).  A fit that
            raises leaves the previous fitted state (if any) unchanged.
        """
        t0 = time.perf_counter()
        kind_weights = self._validate()
        structures = _as_structure_list(structures)
        prep = self._prepare(structures, kind_weights)
        # a fit that fails below (regressor, Dask worker, interrupt) leaves the model as it
        # was: the new reference energies with the previous regressor_ were silently wrong
        old = {k: self.__dict__[k] for k in _FIT_ATTRIBUTES if k in self.__dict__}
        try:
            self.species_ = tuple(self.descriptor.species)
            self.reference_energies_ = self._fit_reference_energies(prep)
            self.trained_species_ = self._trained_species(prep)
            self.group_names_ = prep.group_names
            source = self._batch_source(prep)
            regressor = clone(self.regressor)
            # a posterior committee or σ scale of a previous fit would be stale
            self.__dict__.pop("uncertainty_", None)
            self.__dict__.pop("uncertainty_scale_", None)
            self.__dict__.pop("uncertainty_recalibration_", None)
            if client is not None or int(self.n_workers) > 1:
                from .parallel import fit_parallel

                fit_parallel(self, regressor, prep, source, client=client)
            else:
                regressor.fit(source)
        except BaseException:
            for k in _FIT_ATTRIBUTES:
                self.__dict__.pop(k, None)
            self.__dict__.update(old)
            raise
        self.regressor_ = regressor
        self.n_train_structures_ = len(structures)
        self.fit_time_ = time.perf_counter() - t0
        return self

    @classmethod
    def from_fitted(cls, descriptor, regressor, *, baseline=None, reference_energies=None,
                    **params):
        """A ready-to-use model from an already fitted regressor (e.g. read from LAMMPS).

        Parameters
        ----------
        descriptor : hybridpot.descriptors.Descriptor
            The descriptor the regressor was fitted on; its ``species`` become ``species_``.
        regressor : hybridpot.regression.Regressor
            Fitted (has its fitted attributes); used as ``regressor_`` without a refit.
        baseline : hybridpot.baselines.Baseline or None, default=None
            Empirical potential; ``None`` is a zero baseline.
        reference_energies : dict of str to float or None, default=None
            Per-element e0 in eV/atom; an element left out (or ``None``) has 0.
        **params
            Other :class:`HybridPotential` hyperparameters (``weights``, ``chunk_size``,
            ...), stored for a later refit.

        Returns
        -------
        HybridPotential
            Fitted: ``species_``, ``reference_energies_``, ``group_names_ = ("default",)``
            and ``regressor_`` are set (no ``trained_species_``: every descriptor species is
            accepted).

        Raises
        ------
        hybridpot.InvalidParameterError
            When a hyperparameter is invalid (as at :meth:`fit`) or unknown.
        """
        allowed = sorted(set(cls._get_param_names()) - {
            "descriptor", "regressor", "baseline", "reference_energies"})
        unknown = sorted(set(params) - set(allowed))
        if unknown:
            raise InvalidParameterError(
                f"HybridPotential.from_fitted takes the hyperparameters {allowed} besides "
                f"descriptor, regressor, baseline and reference_energies. Got {unknown} "
                "instead.")
        model = cls(descriptor=descriptor, regressor=regressor, baseline=baseline,
                    reference_energies=reference_energies, **params)
        model._validate()
        model.species_ = tuple(descriptor.species)
        ref = reference_energies or {}
        model.reference_energies_ = {s: float(ref.get(s, 0.0)) for s in model.species_}
        model.group_names_ = ("default",)
        model.regressor_ = regressor
        return model

    # ------------------------------------------------------------------ prediction
    def _group_of(self, atoms):
        """Index of ``atoms.info["config_type"]`` among the training groups (per-group noise).

        A config type not seen in training gets ``len(group_names_)``, no training group: a
        regressor with per-group noise then adds the largest noise of the kind, as its
        posterior committee does (it got group 0's, the first training group's, which may be
        the least noisy).
        """
        names = tuple(getattr(self, "group_names_", ("default",)))
        ct = str(atoms.info.get("config_type", "default"))
        return names.index(ct) if ct in names else len(names)

    def _evaluate(self, atoms, *, forces=True, stress=True, return_std=False, index=0,
                  recalibrated=True, virials=False):
        """Energy, per-atom energies, forces, stress (and std) of one structure; with
        ``virials`` (True / "half" or "centroid"; neither ``return_std`` nor a cell not
        periodic in 3-D) also the per-atom virials ``"virials"`` ((n_atoms, 3, 3), eV,
        summing to ``V * stress``)."""
        if return_std and recalibrated and \
                getattr(self, "uncertainty_recalibration_", None) is not None:
            from .uq._calibration import apply_recalibration

            raw = self._evaluate(atoms, forces=forces, stress=stress, return_std=True,
                                 index=index, recalibrated=False)
            return apply_recalibration(self, atoms, raw)
        species = self.species_
        z = species_indices(atoms, species, "HybridPotential")
        self._check_trained_species(atoms, z)
        self._check_composition(atoms, z)
        want_stress = stress and bool(np.all(atoms.pbc))
        virials = (("half" if virials is True else virials)
                   if virials and want_stress and not return_std else False)
        base = self._baseline(atoms, forces=forces, stress=want_stress, virials=virials) \
            if virials else self._baseline(atoms, forces=forces, stress=want_stress)
        e0 = np.array([self.reference_energies_[s] for s in species])[z]
        out = {}
        reg = self.regressor_
        if return_std:
            unc = getattr(self, "uncertainty_", None)
            if unc is not None:
                g = str(atoms.info.get("config_type", "default"))
                return unc.evaluate(self, atoms, forces=forces, stress=want_stress,
                                    group_name=g, baseline=base)
            if not getattr(reg, "has_uncertainty", False):
                raise InvalidParameterError(
                    f"return_std=True needs a regressor with a posterior; "
                    f"{type(reg).__name__} has none (use BayesianLinearRegressor, "
                    f"SparseGPRegressor or NeuralNetworkRegressor(n_models>1)).")
            need_grad = forces or want_stress
            if need_grad and getattr(reg, "_adjoint_std", False):
                return self._evaluate_committee(atoms, z, base, e0, forces, want_stress)
            if need_grad and getattr(reg, "_chunked_gradients", False):
                # a big cell's Jacobian is built and reduced per range of centres
                X, dX = self.descriptor.compute_bounded(atoms)
            elif need_grad:
                X, dX = self.descriptor.compute(atoms, gradients=True)
            else:
                X, dX = self.descriptor.compute(atoms), None
            pred = reg.predict_batch(self._unlabelled_batch(atoms, X, z, dX, index),
                                     return_std=True)
            scale = getattr(self, "uncertainty_scale_", None) or {}
            for kind in ("energy", "forces", "stress"):
                if kind + "_std" in pred and kind in scale:
                    pred[kind + "_std"] = pred[kind + "_std"] * scale[kind]
            eps = reg.atomic_energy(X, z)
            out["energy"] = base["energy"] + float(e0.sum()) + float(pred["energy"][0])
            out["energy_std"] = float(pred["energy_std"][0])
            out["energies"] = (base["energies"] if base["energies"] is not None else 0.0) \
                + e0 + eps
            if forces:
                out["forces"] = base["forces"] + pred["forces"]
                out["forces_std"] = pred["forces_std"]
            if want_stress:
                out["stress"] = base["stress"] + pred["stress"][0]
                out["stress_std"] = pred["stress_std"][0]
            return out
        X = self.descriptor.compute(atoms)
        if virials:
            eps, dE_dX = reg.atomic_energy_gradient(X, z)
            dE_dr, dE_deps, W = self.descriptor.backward(atoms, dE_dX,
                                                         atomic_virials=virials)
            out["virials"] = base["virials"] + W
        elif forces or want_stress:
            eps, dE_dX = reg.atomic_energy_gradient(X, z)
            dE_dr, dE_deps = self.descriptor.backward(atoms, dE_dX)
        else:
            eps = reg.atomic_energy(X, z)
        energies = e0 + eps
        out["energy"] = base["energy"] + float(energies.sum())
        out["energies"] = energies + (base["energies"] if base["energies"] is not None
                                      else 0.0)
        if forces:
            out["forces"] = base["forces"] - dE_dr
        if want_stress:
            out["stress"] = base["stress"] + matrix_to_voigt(dE_deps) / atoms.get_volume()
        return out

    def _unlabelled_batch(self, atoms, X, z, dX, index):
        """A one-structure :class:`StructureBatch` without labels (for ``predict_batch``)."""
        n = len(atoms)
        return StructureBatch(
            X=X, species=z, structure=np.zeros(n, dtype=np.int64), gradients=dX,
            volume=np.array([_volume(atoms)]), energy=np.full(1, np.nan),
            forces=np.full((n, 3), np.nan), stress=np.full((1, 6), np.nan),
            weights={}, group=np.array([self._group_of(atoms)], dtype=np.int64),
            index=np.array([index]))

    def _evaluate_committee(self, atoms, z, base, e0, forces, want_stress):
        """Mean and σ through the regressor's adjoint committee (no descriptor Jacobian).

        The regressor (``_adjoint_std`` true, e.g. ``SparseGPRegressor(derivative_variance=
        "committee")``) gives ``dE/dX`` of its mean and of scaled committee rows; one
        :meth:`Descriptor.backward_many` turns them into forces and virials, and the sum of
        the squares of the rows' forces / stresses is their parameter variance (the fitted
        noise is added; none for networks and ensembles of them, whose rows are the members'
        offsets from the mean).
        The energy σ is the regressor's own (that of :meth:`predict_batch`), from the kernel
        values of the rows.
        """
        reg = self.regressor_
        X = self.descriptor.compute(atoms)
        eps, G, e_var = reg._committee_cotangents(X, z, energy_var=True)
        dE_dr, dE_deps = self.descriptor.backward_many(atoms, G)
        scale = getattr(self, "uncertainty_scale_", None) or {}

        def std(rows, kind):
            noise = getattr(reg, "_predictive_noise_std", lambda k: None)(kind) or 0.0
            var = np.sum(rows ** 2, axis=0) + noise ** 2
            return np.sqrt(var) * scale.get(kind, 1.0)

        out = {"energy": base["energy"] + float(e0.sum()) + float(eps.sum()),
               "energy_std": float(np.sqrt(e_var)) * scale.get("energy", 1.0),
               "energies": (base["energies"] if base["energies"] is not None else 0.0)
               + e0 + eps}
        if forces:
            out["forces"] = base["forces"] - dE_dr[0]
            out["forces_std"] = std(dE_dr[1:], "forces")
        if want_stress:
            sv = np.array([matrix_to_voigt(m) for m in dE_deps]) / atoms.get_volume()
            out["stress"] = base["stress"] + sv[0]
            out["stress_std"] = std(sv[1:], "stress")
        return out

    def _evaluate_many(self, structures, **kw):
        self._check_fitted()
        structures = _as_structure_list(structures)
        it = enumerate(structures)
        if self.verbose:
            from tqdm.auto import tqdm

            it = tqdm(list(it), desc="predict", unit="structure", disable=None)
        return [self._evaluate(a, index=k, **kw) for k, a in it]

    def predict(self, structures, return_std=False):
        """Total energies.

        Parameters
        ----------
        structures : list of ase.Atoms (or one Atoms)
            Structures of the model's trained species (labels, if any, are ignored).
        return_std : bool, default=False
            Also return the predictive standard deviation (needs a posterior: a
            ``LinearPosterior`` committee or a regressor with ``has_uncertainty``).

        Returns
        -------
        energy : ndarray, shape (n_structures,)
            eV.
        energy_std : ndarray, shape (n_structures,)
            eV, only with ``return_std``.

        Raises
        ------
        hybridpot.NotFittedError
            Before :meth:`fit`.
        hybridpot.UnknownSpeciesError
            For an element outside the descriptor species or one without training data
            (not in ``trained_species_``).
        hybridpot.InvalidParameterError
            For ``return_std=True`` without a posterior, or ``structures`` that are not
            ase.Atoms.
        """
        res = self._evaluate_many(structures, forces=False, stress=False,
                                  return_std=return_std)
        e = np.array([r["energy"] for r in res])
        if return_std:
            return e, np.array([r["energy_std"] for r in res])
        return e

    def predict_forces(self, structures, return_std=False):
        """Forces ``-dE/dr``.

        Parameters
        ----------
        structures : list of ase.Atoms (or one Atoms)
            Structures of the model's trained species.
        return_std : bool, default=False
            Also return the predictive standard deviation of every component (needs a
            posterior, as in :meth:`predict`).

        Returns
        -------
        forces : list of ndarray, each of shape (n_atoms, 3)
            eV/Å, one array per structure.
        forces_std : list of ndarray, each of shape (n_atoms, 3)
            eV/Å, only with ``return_std``.

        Raises
        ------
        hybridpot.NotFittedError, hybridpot.UnknownSpeciesError, \
hybridpot.InvalidParameterError
            As :meth:`predict`.
        """
        res = self._evaluate_many(structures, forces=True, stress=False,
                                  return_std=return_std)
        f = [r["forces"] for r in res]
        if return_std:
            return f, [r["forces_std"] for r in res]
        return f

    def predict_stress(self, structures, return_std=False):
        """ASE stress ``(1/V) dE/d eps`` (Voigt xx, yy, zz, yz, xz, xy).

        Parameters
        ----------
        structures : list of ase.Atoms (or one Atoms)
            Structures of the model's trained species.
        return_std : bool, default=False
            Also return the predictive standard deviation (needs a posterior, as in
            :meth:`predict`).

        Returns
        -------
        stress : ndarray, shape (n_structures, 6)
            eV/Å³ (ASE sign: negative under compression).  Rows of structures that are not
            periodic in 3-D are NaN.
        stress_std : ndarray, shape (n_structures, 6)
            eV/Å³, only with ``return_std`` (NaN rows as above).

        Raises
        ------
        hybridpot.NotFittedError, hybridpot.UnknownSpeciesError, \
hybridpot.InvalidParameterError
            As :meth:`predict`.
        """
        res = self._evaluate_many(structures, forces=False, stress=True,
                                  return_std=return_std)
        nan = np.full(6, np.nan)
        s = np.array([r.get("stress", nan) for r in res])
        if return_std:
            return s, np.array([r.get("stress_std", nan) for r in res])
        return s

    def predict_atomic_virials(self, structures, partition="half"):
        r"""Per-atom virials ``W_k`` (eV), the partition of ``dE/d eps`` over atoms that
        LAMMPS ``compute stress/atom`` reports (the ASE per-atom ``stresses`` are
        ``voigt(W_k) / V``).

        The ML energy ``sum_i eps(d_i)`` depends on the pair vectors ``r_ij`` of each centre
        ``i``; each pair term :math:`\partial E/\partial r_{ij,a}\, r_{ij,b}` goes half to
        ``i`` and half to ``j`` (as ``pair_style snap`` tallies it), and each baseline pair
        term likewise, so ``sum_k W_k = dE/d eps = V * stress`` (3 x 3).  A single atom's
        ``W_k`` is not symmetric for a many-body term.  In LAMMPS ``units metal``,
        ``compute stress/atom NULL virial`` gives ``c_s[k] = W_k[a, b] * nktv2p``
        (``nktv2p = 1.6021765e6`` bar·Å³/eV; ``1 / ase.units.bar`` differs from it by
        8e-8) in the order xx, yy, zz, xy, xz, yz with ``xy = W_k[1, 0]``,
        ``xz = W_k[2, 0]``, ``yz = W_k[2, 1]``; this is the per-atom virial of LAMMPS's
        ``compute heat/flux`` with ``stress/atom``.

        With ``partition="centroid"`` each ML pair term goes wholly to the neighbour ``j``
        instead: ``W_k = sum_i dE_i/dr_k ⊗ r_ik`` (``E_i`` atom ``i``'s energy, ``r_ik = r_k
        - r_i``), the per-atom virial of the heat flux of a many-body potential (Fan et al.,
        PRB 92, 094301 (2015); LAMMPS's ``centroid/stress/atom``, which LAMMPS does not
        offer for ``pair_style snap``): along Newton's equations the heat flux is
        ``d/dt sum_i r_i e_i = sum_i e_i v_i - sum_k W_k^T v_k`` with ``e_i`` atom ``i``'s
        kinetic plus potential energy (LAMMPS's ``compute heat/flux`` with ``S_k =
        W_k^T``).  The ``"half"`` form of a many-body term does not satisfy this identity
        and misestimates a Green-Kubo thermal conductivity; both have the same sum.  Pair
        baselines give the same virials in either form; :class:`~hybridpot.baselines.EMT`
        has both; ``ASEBaseline`` only ``"half"``.

        Parameters
        ----------
        structures : list of ase.Atoms (or one Atoms)
            Structures of the model's trained species, periodic in 3-D.
        partition : {"half", "centroid"}, default="half"
            How each pair term is shared between its two atoms (see above).

        Returns
        -------
        list of ndarray, each of shape (n_atoms, 3, 3)
            eV (pressure x volume; divide by the cell volume for eV/Å³).

        Raises
        ------
        hybridpot.NotFittedError, hybridpot.UnknownSpeciesError
            As :meth:`predict`.
        hybridpot.InvalidStructureError
            For a structure not periodic in 3-D (per-atom stresses need a volume).
        hybridpot.InvalidParameterError
            For another ``partition``.
        ase.calculators.calculator.PropertyNotImplementedError
            For a baseline that gives no per-atom virials (an ``ASEBaseline`` whose
            calculator lacks ``"stresses"``, e.g. ASE's ``EMT``: use
            :class:`hybridpot.baselines.EMT`; or any ``ASEBaseline`` with ``"centroid"``).
        """
        if not (isinstance(partition, str) and partition in ("half", "centroid")):
            raise InvalidParameterError(
                f"The 'partition' argument of HybridPotential.predict_atomic_virials must be "
                f"'half' or 'centroid'. Got {partition!r} instead.")
        self._check_fitted()
        structures = _as_structure_list(structures)
        for k, a in enumerate(structures):
            if not bool(np.all(a.pbc)):
                raise InvalidStructureError(
                    f"predict_atomic_virials needs structures periodic in 3-D (per-atom "
                    f"stresses need a volume); structure {k} has pbc="
                    f"{np.asarray(a.pbc).tolist()}. For a slab, set atoms.pbc = True with a "
                    f"vacuum wider than the model's cutoffs.")
        return [r["virials"] for r in self._evaluate_many(structures, forces=False,
                                                          stress=True, virials=partition)]

    def predict_atomic_std(self, structures):
        """σ of every atom's ML energy ``eps_i`` without the noise (GAP's
        ``sqrt(local_gap_variance)``): where a model is unsure, atom by atom.

        The regressor's posterior σ of one atom's energy (for :class:`SparseGPRegressor`
        the DTC variance of ``eps_i``, prior ``1 / alpha_`` far from the inducing set),
        without the fitted noise and without σ recalibration (its factors were fitted on
        totals).  A structure's total ``energy_std`` is not the sum of these: the atoms'
        errors are correlated.

        Parameters
        ----------
        structures : list of ase.Atoms (or one Atoms)
            Structures of the model's trained species.

        Returns
        -------
        list of ndarray, shape (n_atoms,)
            eV, one array per structure.

        Raises
        ------
        InvalidParameterError
            The regressor has no posterior, or the model's σ comes from a posterior committee
            (``LinearPosterior``), which has no per-atom σ.
        """
        self._check_fitted()
        structures = _as_structure_list(structures)
        reg = self.regressor_
        committee = getattr(self, "uncertainty_", None) is not None
        if committee or not getattr(reg, "has_uncertainty", False):
            what = "a posterior committee (no per-atom σ)" if committee else \
                f"{type(reg).__name__}, which has no posterior"
            raise InvalidParameterError(
                f"predict_atomic_std needs a regressor with a posterior (BayesianLinearRegressor, "
                f"SparseGPRegressor, NeuralNetworkRegressor(n_models>1)); this model's σ comes "
                f"from {what}.")
        import inspect

        quiet = {"include_noise": False} if "include_noise" in \
            inspect.signature(reg.predict_batch).parameters else {}
        out = []
        for k, atoms in enumerate(structures):
            z = species_indices(atoms, self.species_, "HybridPotential")
            self._check_trained_species(atoms, z)
            self._check_composition(atoms, z)
            n = len(atoms)
            X = self.descriptor.compute(atoms)
            batch = StructureBatch(
                X=X, species=z, structure=np.arange(n, dtype=np.int64), gradients=None,
                volume=np.full(n, np.nan), energy=np.full(n, np.nan),
                forces=np.full((n, 3), np.nan), stress=np.full((n, 6), np.nan), weights={},
                group=np.full(n, self._group_of(atoms), dtype=np.int64),
                index=np.full(n, k, dtype=np.int64))
            out.append(np.asarray(reg.predict_batch(batch, return_std=True,
                                                    **quiet)["energy_std"], dtype=float))
        return out

    def evaluate(self, structures):
        """Errors against the labels of ``structures``.

        Parameters
        ----------
        structures : list of ase.Atoms (or one Atoms)
            Labelled structures (energy eV, forces eV/Å, stress eV/Å³; any subset of kinds).

        Returns
        -------
        dict
            ``energy_mae``/``energy_rmse`` (eV/atom), ``force_mae``/``force_rmse`` (eV/Å, per
            component), ``stress_mae``/``stress_rmse`` (eV/Å³, per Voigt component) over the
            structures carrying each label kind (NaN when none), and ``n_structures``.
        """
        structures = _as_structure_list(structures)
        errors = _label_errors(structures,
                               self._evaluate_many(structures, forces=True, stress=True))
        out = {"n_structures": len(structures)}
        for name in ("energy", "force", "stress"):
            out[f"{name}_mae"], out[f"{name}_rmse"] = _error_stats(errors, name)
        return out

    def score(self, structures, y=None):
        """Negative ``energy_rmse`` (eV/atom) plus ``force_rmse`` (eV/Å): higher is better.

        Kinds absent from ``structures`` are left out; structures with neither energy nor
        force labels raise :class:`~hybridpot.MissingLabelsError` (there is nothing to score:
        a score of 0 would rank every candidate of a grid search first).  Used by
        ``GridSearchCV`` and ``cross_val_score``.

        Parameters
        ----------
        structures : list of ase.Atoms (or one Atoms)
            Labelled structures.
        y : ignored
            Present for scikit-learn compatibility (labels live on the Atoms).

        Returns
        -------
        float
            ``-(energy_rmse + force_rmse)``, mixing eV/atom and eV/Å.
        """
        m = self.evaluate(structures)
        parts = [m["energy_rmse"], m["force_rmse"]]
        if not np.any(np.isfinite(parts)):
            raise MissingLabelsError(
                "HybridPotential.score needs structures with energy or force labels; the "
                "structures given have neither (stress labels alone are not scored).")
        return -float(np.nansum(parts))

    # ------------------------------------------------------------------ uncertainty
    def recalibrate(self, structures, *, method="nll"):
        """Fit a σ recalibration per label kind on labelled ``structures``; store it.

        The factors (``uncertainty_scale_``, kind -> float) multiply every later predictive
        σ of that kind and are saved with the model; the heteroscedastic methods store a
        variance model in ``uncertainty_recalibration_`` instead.  See
        :func:`hybridpot.uq.recalibrate`.

        Parameters
        ----------
        structures : list of ase.Atoms
            Validation structures with DFT labels (not used in training).
        method : {"nll", "coverage", "split", "heteroscedastic", \
"heteroscedastic_coverage"}, default="nll"
            ``"nll"``: ``s^2 = mean(z^2)`` (maximum Gaussian likelihood); ``"coverage"``:
            the median of ``|z| / s`` is that of a standard normal (0.6745); ``"split"``
            (posterior committee only): separate factors on the parameter and noise parts;
            ``"heteroscedastic"``: maximum-likelihood variance model in the parameter σ
            (power law), the noise σ and the predicted atomic force;
            ``"heteroscedastic_coverage"``: the same, then one factor per kind balancing the
            ±1σ and ±2σ coverages.

        Returns
        -------
        self
        """
        from .uq import recalibrate

        recalibrate(self, structures, method=method)
        return self

    def _extra_state(self):
        doc = {}
        if getattr(self, "uncertainty_scale_", None):
            doc["uncertainty_scale"] = {k: float(v) for k, v in
                                        self.uncertainty_scale_.items()}
        if getattr(self, "uncertainty_", None) is not None:
            doc["uncertainty_committee"] = self.uncertainty_.to_state()
        if getattr(self, "uncertainty_recalibration_", None):
            doc["uncertainty_recalibration"] = self.uncertainty_recalibration_
        if getattr(self, "trained_species_", None) is not None:
            doc["trained_species"] = list(self.trained_species_)
        if getattr(self, "composition_null_space_", None) is not None:
            doc["composition_null_space"] = self.composition_null_space_.tolist()
        return doc

    def _set_extra_state(self, doc):
        if not isinstance(doc, dict):
            raise ModelFormatError(f"The 'extra' entry of a model file must be a dict. Got "
                                   f"{type(doc).__name__} instead.")
        if "uncertainty_scale" in doc:
            self.uncertainty_scale_ = {str(k): float(v)
                                       for k, v in dict(doc["uncertainty_scale"]).items()}
        if "uncertainty_committee" in doc:
            from .uq import Committee

            self.uncertainty_ = Committee.from_state(doc["uncertainty_committee"])
        if "uncertainty_recalibration" in doc:
            from .uq._calibration import check_recalibration_state

            self.uncertainty_recalibration_ = check_recalibration_state(
                doc["uncertainty_recalibration"])
        if "trained_species" in doc:
            ts = doc["trained_species"]
            if not isinstance(ts, list) or not set(map(str, ts)) <= set(self.species_):
                raise ModelFormatError(
                    f"The 'trained_species' entry of a model file must be a list of the "
                    f"model's elements {list(self.species_)}. Got {ts!r} instead.")
            self.trained_species_ = tuple(s for s in self.species_ if s in ts)
        if "composition_null_space" in doc:
            try:
                null = np.array(doc["composition_null_space"], dtype=float)
            except (TypeError, ValueError):
                null = None
            if null is None or null.ndim != 2 or null.shape[0] != len(self.species_) or \
                    null.shape[1] < 1 or not np.all(np.isfinite(null)):
                raise ModelFormatError(
                    f"The 'composition_null_space' entry of a model file must be a finite "
                    f"({len(self.species_)}, k) array, k >= 1 (one row per element). Got "
                    f"{doc['composition_null_space']!r} instead.")
            self.composition_null_space_ = null

    # ------------------------------------------------------------------ ASE and files
    def calculator(self, *, uncertainty=False, uncertainty_interval=1):
        """An ASE calculator for this fitted model.

        Parameters
        ----------
        uncertainty : bool, default=False
            Add ``energy_std``, ``forces_std`` and ``stress_std`` to every calculation
            (needs a posterior); see :class:`HybridCalculator`.
        uncertainty_interval : int, default=1
            With ``uncertainty=True``, recompute the σ every this many calculations
            (``>= 1``); see :class:`HybridCalculator`.

        Returns
        -------
        HybridCalculator

        Raises
        ------
        hybridpot.NotFittedError
            Before :meth:`fit`.
        hybridpot.InvalidParameterError
            For ``uncertainty=True`` without a posterior, or a bad ``uncertainty_interval``.
        """
        self._check_fitted()
        return HybridCalculator(self, uncertainty=uncertainty,
                                uncertainty_interval=uncertainty_interval)

    def save(self, path):
        """Write the fitted model as versioned JSON + npz (see :mod:`hybridpot.io.model`).

        Later hybridpot versions load the file and predict the same; an older hybridpot that
        cannot read it correctly refuses it with a ``ModelFormatError`` (compatibility policy
        in :mod:`hybridpot.io.model`).

        Parameters
        ----------
        path : str or path-like
            Output file (conventionally ``*.hpot``); replaced atomically if it exists.

        Raises
        ------
        hybridpot.NotFittedError
            Before :meth:`fit`.
        FileNotFoundError, IsADirectoryError
            When the folder of ``path`` does not exist, or ``path`` is a folder.
        """
        from .io.model import save_model

        save_model(self, path)

    @classmethod
    def load(cls, path):
        """Read a model written by :meth:`save`; never executes code from the file.

        Files saved by any earlier hybridpot load and predict the same energies, forces,
        stresses and σ (recalibration and committee included); files of a newer hybridpot are
        refused with a message naming the version found and the versions this one reads
        (compatibility policy in :mod:`hybridpot.io.model`).

        Parameters
        ----------
        path : str or path-like
            A file written by :meth:`save` (or :func:`hybridpot.io.save_model`).

        Returns
        -------
        HybridPotential
            The fitted model (hyperparameters, fitted state, posterior committee and σ
            recalibration as saved).

        Raises
        ------
        FileNotFoundError
            When ``path`` does not exist.
        hybridpot.ModelFormatError
            For a file that is not a hybridpot model, is corrupt or incomplete, or was
            written by a newer hybridpot (a newer format version or unknown
            hyperparameters; the message names the file).
        """
        from .io.model import load_model

        return load_model(path)


_POSTERIOR_HINT = ("a posterior committee, uq.LinearPosterior(...).apply(model), or a "
                   "BayesianLinearRegressor, SparseGPRegressor, EnsembleRegressor or "
                   "NeuralNetworkRegressor(n_models > 1)")


class HybridCalculator(Calculator):
    r"""ASE calculator of a fitted :class:`HybridPotential`.

    .. math::

        E = E_\mathrm{EP} + \sum_i \big(e_0[Z_i] + \varepsilon(\mathbf d_i, Z_i;
        \mathbf w)\big), \qquad \mathbf F_j = -\frac{\partial E}{\partial \mathbf r_j},
        \qquad \sigma_{\alpha\beta} = \frac{1}{V}
        \frac{\partial E}{\partial \epsilon_{\alpha\beta}}

    (ASE sign: a compressed crystal has a negative stress; Voigt order xx, yy, zz, yz, xz,
    xy).  Forces and stress come from the descriptor adjoint.

    ``implemented_properties``: ``energy`` and ``free_energy`` (eV, equal), ``energies``
    (eV per atom, shape (n_atoms,), summing to the energy; only when the baseline gives
    per-atom energies, else asking for them raises ``PropertyNotImplementedError``),
    ``forces`` (eV/Å, (n_atoms, 3)), ``stress`` (eV/Å³, (6,), cells periodic in 3-D
    only) and ``stresses`` (per-atom stresses, eV/Å³, (n_atoms, 6), ASE sign and Voigt
    order, 3-D periodic cells; computed only when asked for, e.g.
    ``atoms.get_stresses()``, so MD asking for forces pays nothing; asked for after the
    other results of the same structure, only the virials are computed): ``stresses[k] =
    voigt(W_k) / V`` with ``V`` the cell volume (not an atomic volume), so that
    ``stresses.sum(0) == stress``; ``W_k`` are the per-atom virials of
    :meth:`HybridPotential.predict_atomic_virials`, every pair term of the ML and baseline
    energies split half to each of its two atoms as LAMMPS ``compute stress/atom`` does
    (LAMMPS ``units metal`` gives ``stresses[k] * V * 1.6021765e6`` bar·Å³; ASE's Voigt
    form averages the off-diagonal pairs of ``W_k``, which LAMMPS does not: the full
    tensors are in ``predict_atomic_virials``; a baseline without per-atom virials, e.g.
    ``ASEBaseline(ase EMT)``, raises ``PropertyNotImplementedError``; with
    ``include_ideal_gas=True`` ASE adds ``-m v ⊗ v / V`` per atom, see
    :meth:`get_atomic_volumes`); for a model with a posterior also ``energy_std`` (eV),
    ``forces_std`` (eV/Å, (n_atoms, 3)) and ``stress_std`` (eV/Å³, (6,), 3-D periodic
    cells) from the model's posterior (its ``uncertainty_`` committee if set, else the
    regressor's).

    Parameters
    ----------
    model : HybridPotential
        A fitted model.  The calculator keeps a reference: refitting the model, changing its
        baseline's parameters, applying a posterior (``LinearPosterior.apply``) or
        recalibrating it discards the cached results (as a changed structure does).
    uncertainty : bool, default=False
        Add the σ to the results of every calculation.  With False they are computed only
        when asked for (``atoms.calc.get_property("energy_std", atoms)``), so MD pays for
        them only on request.  True needs a model with a posterior.
    uncertainty_interval : int, default=1
        ``n >= 1``: with ``uncertainty=True`` recompute the σ only on every ``n``-th
        calculation and report the last computed σ in between (``std_fresh`` is True after a
        calculation that recomputed it), so the reported σ is up to ``n - 1`` calls old.
        The older σ is reused only for the same ``Atoms`` object with the same atomic
        numbers and ``pbc``: a calculator shared by several structures (NEB images, a loop
        over a data set) recomputes the σ whenever it moves to another structure.  An
        explicit request (``get_property("forces_std", atoms)``) always recomputes.  With a
        linear model's posterior committee a step with σ costs one descriptor Jacobian
        evaluation instead of the adjoint (the Jacobian gives the forces too; the baseline
        is evaluated once): 1.0-1.3 x the forces alone for SNAP 2J=8 models, 1.5 x for an
        SO(3) power spectrum (``benchmarks/md.py``); a sparse GP's exact σ costs 25-32 x,
        4.3-4.5 x with ``SparseGPRegressor(derivative_variance="committee")`` and its
        default 16 samples (2.3 x with 4).  Energy, forces and stress with σ agree with
        those without to round-off (energy: bit for bit on most builds, a few ulps on some
        BLAS / CPU targets; forces ~1e-15 eV/Å), not always bitwise, since a step with σ
        may take them from that other route: MD with σ on departs from MD with σ off at the
        round-off level (which grows along a long trajectory).
    **kwargs
        Not accepted: any other keyword (an ASE calculator parameter such as ``label`` or
        ``directory``) raises :class:`~hybridpot.InvalidParameterError`.

    Raises
    ------
    hybridpot.InvalidParameterError
        For a ``model`` that is not a :class:`HybridPotential`, ``uncertainty=True`` without
        a posterior, a non-bool ``uncertainty``, ``uncertainty_interval < 1`` or any other
        keyword.
    hybridpot.NotFittedError
        For a model that is not fitted.

    Attributes
    ----------
    std_fresh : bool
        Whether the last calculation computed the σ (False when it reported older σ or none).

    Notes
    -----
    Caching is ASE's: results are reused until the positions, cell, ``pbc``, atomic numbers
    (or initial magnetic moments / charges) change, so one calculator can serve several
    ``Atoms`` in turn; ``atoms.copy()`` does not copy the calculator.  The calculator has
    no ASE parameters (``calc.set(...)`` with any keyword raises), pickles with its model,
    and ``Trajectory`` stores it as a ``SinglePointCalculator`` of the standard properties.

    The σ are not standard ASE properties, so ``ase.io.Trajectory`` and extxyz files drop
    them.  To keep them along a run, copy them into the structure before writing (a
    trajectory keeps ``atoms.info``; extxyz keeps ``info`` and per-atom ``arrays``)::

        def keep_sigma():
            atoms.info["energy_std"] = atoms.calc.results["energy_std"]
            atoms.arrays["forces_std"] = atoms.calc.results["forces_std"]

        dyn.attach(keep_sigma, interval=10)                       # before the writer
        dyn.attach(lambda: ase.io.write("md.xyz", atoms, append=True), interval=10)

    Stress needs a cell periodic in all three directions: for a slab (``pbc=(True, True,
    False)``) set ``atoms.pbc = True`` with a vacuum wider than the model's cutoffs, which
    leaves energy and forces unchanged.

    The σ of a label kind the model was not fitted on (stresses of data without them, or
    with a stress weight of 0) has no observation-noise part, only the parameter part, and
    is far too small: on the shipped Al data, Bayesian linear model fitted without stresses,
    ±1σ covered 6 % of the held-out stress errors (sparse GP: 29 %; fitted with stresses:
    87 %).  ``model.recalibrate(validation)`` on structures carrying that label scales it
    (to 88 %).  The σ of a property derived from several calculations (an elastic constant,
    a vacancy formation energy) is not the σ of its inputs added in quadrature: their
    errors are correlated; :func:`hybridpot.properties.committee` draws a committee of member
    models and :func:`hybridpot.properties.compute_properties` uses it.
    """

    implemented_properties = ["energy", "free_energy", "energies", "forces", "stress",
                              "stresses"]

    def __init__(self, model, *, uncertainty=False, uncertainty_interval=1, **kwargs):
        if kwargs:
            raise InvalidParameterError(
                f"HybridCalculator takes no parameters besides the model, 'uncertainty' and "
                f"'uncertainty_interval'. Got {sorted(kwargs)} instead.")
        _check_model_argument(model, "HybridCalculator")
        if not isinstance(uncertainty, (bool, np.bool_)):
            raise InvalidParameterError(
                f"The 'uncertainty' parameter of HybridCalculator must be a bool. Got "
                f"{uncertainty!r} instead.")
        super().__init__()
        self.model = model
        self.uncertainty = bool(uncertainty)
        has_posterior = model._has_posterior()
        if self.uncertainty and not has_posterior:
            raise InvalidParameterError(
                f"The 'uncertainty' parameter of HybridCalculator needs a model with a "
                f"posterior ({_POSTERIOR_HINT}); this model's "
                f"{type(model.regressor_).__name__} has none. Got "
                f"uncertainty={uncertainty!r}.")
        self.uncertainty_interval = check_int(uncertainty_interval, "uncertainty_interval",
                                              "HybridCalculator", low=1)
        if has_posterior:
            # the σ are ASE properties of a model with a posterior (get_property works)
            self.implemented_properties = list(self.implemented_properties) + [
                "energy_std", "forces_std", "stress_std"]
        self._last_std = {}
        self._std_owner = None     # weak reference to the Atoms the last σ belong to
        self._std_key = None       # (atomic numbers, pbc) of that structure
        self._stale_calls = 0      # calculations that reused the last σ
        self._model_key = None     # fingerprint of the fitted state behind self.results
        self._model_refs = ()      # its objects (weak where possible): see _model_unchanged
        self.std_fresh = False

    def _model_objects(self):
        """What the results depend on besides the structure: the fitted regressor, reference
        energies, posterior committee and σ recalibration (each replaced, not modified, by
        fit / apply / recalibrate) and the baseline."""
        m = self.model
        return (getattr(m, "regressor_", None), getattr(m, "reference_energies_", None),
                getattr(m, "uncertainty_", None),
                getattr(m, "uncertainty_recalibration_", None), m.baseline)

    def _model_state(self):
        """Fingerprint of :meth:`_model_objects`: their ids, the σ scale factors and the
        baseline's parameters."""
        *fitted, base = self._model_objects()
        return (*map(id, fitted), repr(getattr(self.model, "uncertainty_scale_", None)),
                # a duck-typed baseline (only ``compute``) has no parameter fingerprint
                base._param_key() if hasattr(base, "_param_key") else id(base))

    @staticmethod
    def _hold(obj):
        try:
            return weakref.ref(obj)
        except TypeError:       # dicts, None: small, kept alive
            return obj

    def _model_unchanged(self):
        """Whether the results were computed with the model's current fitted state.

        The fingerprint holds ``id``s; the objects themselves are held too (weakly where
        possible), so that an object freed by a refit cannot pass for its successor at the
        same address: a dead reference counts as a change.
        """
        if self._model_key != self._model_state():
            return False
        return all(not isinstance(h, weakref.ref) or h() is not None
                   for h in self._model_refs)

    def check_state(self, atoms, tol=1e-15):
        """ASE's changes between ``atoms`` and the cached structure, plus ``"model"`` when the
        model was refitted, given a posterior, recalibrated or had its baseline changed.

        Parameters
        ----------
        atoms : ase.Atoms
            The structure to compare with the one of the cached results.
        tol : float, default=1e-15
            Position / cell tolerance (Å), as in ASE.

        Returns
        -------
        list of str
            The changed quantities (empty: the cached results are valid).
        """
        changes = super().check_state(atoms, tol)
        if not self._model_unchanged():
            changes = list(changes) + ["model"]
        return changes

    def set(self, **kwargs):
        """Reject ASE-style parameters: the calculator has none of its own.

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
            For any keyword (ASE's ``Calculator.set`` would store it silently).
        """
        if kwargs:
            raise InvalidParameterError(
                f"HybridCalculator has no parameters to set. Got {sorted(kwargs)} instead. "
                f"Build another calculator with model.calculator(uncertainty=..., "
                f"uncertainty_interval=...).")
        return {}

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_std_owner"] = None   # a weak reference does not pickle; σ recomputed after
        # ids mean nothing in another process: the first calculation there starts afresh
        state["_model_key"], state["_model_refs"] = None, ()
        return state

    def _reuses_std(self, owner, key):
        """Whether this calculation may report the last σ instead of computing it."""
        if not (self.uncertainty and self._last_std and self._std_key == key):
            return False
        if self._std_owner is None or self._std_owner() is not owner:
            return False
        return self._stale_calls < self.uncertainty_interval - 1

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        """Fill ``self.results`` for ``atoms`` (ASE's calculator protocol).

        Usually called through ``atoms.get_potential_energy()`` / ``get_forces()`` /
        ``get_stress()`` / ``calc.get_property(name, atoms)``; energy, forces (and stress for
        a cell periodic in 3-D) are always computed together.

        Parameters
        ----------
        atoms : ase.Atoms or None, default=None
            The structure; ``None`` uses the one attached before.
        properties : sequence of str, default=("energy",)
            Properties asked for (see the class docstring for the list and units).  A
            ``*_std`` property is always recomputed.
        system_changes : list of str, default=ase.calculators.calculator.all_changes
            What changed since the last calculation (ASE's bookkeeping).

        Raises
        ------
        hybridpot.InvalidParameterError
            When there is no structure to evaluate.
        ase.calculators.calculator.PropertyNotImplementedError
            For ``stress``/``stress_std`` of a cell not periodic in 3-D, and for
            ``energies`` when the baseline gives no per-atom energies.
        hybridpot.UnknownSpeciesError
            For an element the model was not trained on.
        """
        super().calculate(atoms, properties, system_changes)
        a = self.atoms
        if a is None:
            raise InvalidParameterError(
                "HybridCalculator has no structure to evaluate: attach it (atoms.calc = calc; "
                "atoms.get_potential_energy()) or pass one (calc.get_potential_energy(atoms)). "
                "Got atoms=None.")
        periodic = bool(np.all(a.pbc))
        if not periodic and ({"stress", "stress_std", "stresses"} & set(properties)):
            from .baselines._base import _stress_needs_3d_pbc

            raise _stress_needs_3d_pbc("HybridCalculator", a.pbc, "the model's cutoffs")
        if not system_changes and set(properties) == {"stresses"} and "forces" in self.results \
                and self._model_unchanged():
            # stresses asked for after the other results of this very structure (an MD
            # observer): the per-atom virials alone; energy, forces and σ are kept, and the
            # σ interval is not advanced by a call that is no new step
            W = self.model._evaluate(a, forces=False, stress=True, virials=True)["virials"]
            self.results["stresses"] = matrix_to_voigt(W) / a.get_volume()
            return
        owner = atoms if atoms is not None else a
        key = (a.numbers.tobytes(), tuple(bool(p) for p in a.pbc))
        # a σ property asked for explicitly is always computed (uncertainty=False included)
        asked_std = any(str(p).endswith("_std") for p in properties)
        fresh_std = asked_std or (self.uncertainty and not self._reuses_std(owner, key))
        self.std_fresh = False
        if not self._model_unchanged():   # refitted / recalibrated: older σ are invalid
            self._last_std, self._std_owner = {}, None
            fresh_std = asked_std or self.uncertainty
        model_key, model_refs = self._model_state(), tuple(map(self._hold,
                                                              self._model_objects()))
        # per-atom virials only when asked for (the forces / stress path is unchanged)
        want_virials = "stresses" in properties
        r = self.model._evaluate(a, forces=True, stress=periodic, return_std=fresh_std,
                                 virials=want_virials)
        if want_virials and "virials" not in r:   # the σ route gives none: the mean's own
            r["virials"] = self.model._evaluate(a, forces=False, stress=True,
                                                virials=True)["virials"]
        self._model_key, self._model_refs = model_key, model_refs
        self.std_fresh = bool(fresh_std)
        energy = float(r["energy"])
        energies = np.asarray(r["energies"], dtype=np.float64)
        self.results = {"energy": energy, "free_energy": energy, "forces": r["forces"]}
        # per-atom energies only when they add up to the energy (a baseline without
        # per-atom energies, e.g. ASEBaseline of a calculator lacking "energies", leaves
        # them without the baseline's share)
        if abs(float(energies.sum()) - energy) <= 1e-8 * (1.0 + float(np.abs(energies).sum())):
            self.results["energies"] = energies
        if "stress" in r:
            self.results["stress"] = r["stress"]
        if "virials" in r:
            self.results["stresses"] = matrix_to_voigt(r["virials"]) / a.get_volume()
        if fresh_std:
            self._last_std = {k: r[k] for k in ("energy_std", "forces_std", "stress_std")
                              if k in r}
            try:
                self._std_owner = weakref.ref(owner)
            except TypeError:   # not weak-referenceable: never reuse its σ
                self._std_owner = None
            self._std_key = key
            self._stale_calls = 0
        elif self.uncertainty:
            self._stale_calls += 1
        if self.uncertainty or fresh_std:
            self.results.update(self._last_std)
        if "energies" in properties and "energies" not in self.results:
            from ase.calculators.calculator import PropertyNotImplementedError

            base = self.model.baseline
            name = type(base).__name__ + (f"({type(base.calc).__name__})"
                                          if hasattr(base, "calc") else "")
            raise PropertyNotImplementedError(
                f"HybridCalculator cannot give per-atom energies of this model: its baseline "
                f"{name} gives none (an ASE calculator must implement 'energies'), so the "
                f"per-atom ML energies would not add up to the total energy. Energy, forces "
                f"and stress are unaffected.")

    def get_atomic_volumes(self, atoms=None):
        """The volume each per-atom stress is normalised by: the cell volume, for every atom.

        ``stresses`` are per-atom virials divided by the cell volume ``V`` (they sum to the
        stress); ASE's ``atoms.get_stresses(include_ideal_gas=True)`` divides each atom's
        kinetic term ``-m v ⊗ v`` by this volume (by ``V / n_atoms`` for a calculator
        without it, which made the per-atom sum ``n_atoms`` times the kinetic stress), so
        with it the per-atom stresses with the ideal-gas term also sum to
        ``atoms.get_stress(include_ideal_gas=True)``.

        Parameters
        ----------
        atoms : ase.Atoms or None, default=None
            The structure; ``None`` uses the attached one.

        Returns
        -------
        ndarray of float64, shape (n_atoms,)
            Å³, all equal to the cell volume.
        """
        from .baselines._base import cell_volume_per_atom

        return cell_volume_per_atom(atoms if atoms is not None else self.atoms,
                                    "HybridCalculator")

    def get_property(self, name, atoms=None, allow_calculation=True):
        """One property of ``atoms`` (ASE), e.g. ``"forces"`` or ``"energy_std"``.

        Parameters
        ----------
        name : str
            A name in ``implemented_properties`` (see the class docstring for units and
            shapes); the ``*_std`` names need a model with a posterior (one applied after
            the calculator was made counts).
        atoms : ase.Atoms or None, default=None
            The structure; ``None`` uses the attached one.
        allow_calculation : bool, default=True
            False returns None instead of calculating when the cache is stale.

        Returns
        -------
        float or ndarray or None
            The property (a copy of the cached value).

        Raises
        ------
        ase.calculators.calculator.PropertyNotImplementedError
            For a ``*_std`` property of a model without a posterior, or an unknown name.
        """
        std = ["energy_std", "forces_std", "stress_std"]
        # a posterior applied (or removed) after the calculator was made
        has = self.model._has_posterior()
        if has != all(k in self.implemented_properties for k in std):
            self.implemented_properties = list(HybridCalculator.implemented_properties) + (
                std if has else [])
        if name in std and name not in self.implemented_properties:
            from ase.calculators.calculator import PropertyNotImplementedError

            raise PropertyNotImplementedError(
                f"{name} needs a model with a posterior ({_POSTERIOR_HINT}); this model's "
                f"{type(self.model.regressor_).__name__} has none.")
        return super().get_property(name, atoms, allow_calculation)
