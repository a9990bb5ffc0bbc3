"""Regressor base class and the training-data container shared by every regressor.

A regressor models the per-atom ML energy ``eps(X_i, Z_i; w)`` (eV) of an atom with descriptor
``X_i`` and element index ``Z_i``; the ML energy of a structure is ``sum_i eps(X_i, Z_i)``.
It is fitted to *residual* labels (DFT minus baseline minus per-element reference energies),
delivered as :class:`StructureBatch` objects by :class:`hybridpot.HybridPotential` (or by hand).

Label conventions used in fitting (every regressor):

- energy rows are per atom: target ``E_s / N_s`` (eV/atom), model ``sum_i eps_i / N_s``;
- force rows are per Cartesian component (eV/Å): ``F_k = -dE/dr_k``;
- stress rows are the six Voigt components (xx, yy, zz, yz, xz, xy) of the ASE stress
  ``(1/V) dE/d eps`` (eV/Å³), only for structures periodic in 3-D;
- the loss is ``sum_rows weight * residual**2``; ``weights[kind][s]`` multiplies the squared
  residuals of every row of kind ``kind`` in structure ``s`` (0 switches a structure off).
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field

import numpy as np
from sklearn.base import BaseEstimator

from ..descriptors._base import DescriptorGradients

__all__ = ["StructureBatch", "BatchSource", "Regressor", "REGRESSORS", "register_regressor", "KINDS",
           "VOIGT"]

KINDS = ("energy", "forces", "stress")
#: Voigt order of ASE: (xx, yy, zz, yz, xz, xy) as (row, column) index pairs
VOIGT = ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))

REGRESSORS = {}


def register_regressor(cls):
    """Class decorator: make ``cls`` loadable by name from a model file.

    Parameters
    ----------
    cls : type
        A :class:`Regressor` subclass, registered under ``cls.__name__`` in
        :data:`REGRESSORS`.

    Returns
    -------
    type
        ``cls`` itself.
    """
    REGRESSORS[cls.__name__] = cls
    return cls


@dataclass
class StructureBatch:
    """Descriptors, Jacobians and residual labels of a group of structures.

    Atom arrays are concatenated over the structures of the batch; pair indices in
    ``gradients`` refer to those concatenated atom indices.

    Attributes
    ----------
    X : ndarray, shape (n_atoms, n_features)
        Per-atom descriptors.
    species : ndarray of int64, shape (n_atoms,)
        Index of each atom's element in the model's species list.
    structure : ndarray of int64, shape (n_atoms,)
        Index (0 .. n_structures-1, within the batch) of the structure each atom belongs to.
    gradients : DescriptorGradients or None
        Sparse Jacobian (pairs never cross structures).  None when no force or stress label
        is present in the batch (and none is needed).
    volume : ndarray, shape (n_structures,)
        Cell volume in Å³ (NaN when not periodic in 3-D).
    energy : ndarray, shape (n_structures,)
        Residual total energy in eV; NaN where a structure has no energy label.
    forces : ndarray, shape (n_atoms, 3)
        Residual forces in eV/Å; NaN rows where a structure has no force labels.
    stress : ndarray, shape (n_structures, 6)
        Residual ASE stress (Voigt) in eV/Å³; NaN where absent.
    weights : dict of str to ndarray of shape (n_structures,)
        Per-structure weight of each label kind (``"energy"``, ``"forces"``, ``"stress"``).
    group : ndarray of int64, shape (n_structures,)
        Index of the structure's config group (``atoms.info["config_type"]``), for per-group
        noise levels.
    index : ndarray of int64, shape (n_structures,)
        Position of each structure in the full training set.
    """

    X: np.ndarray
    species: np.ndarray
    structure: np.ndarray
    gradients: DescriptorGradients | None
    volume: np.ndarray
    energy: np.ndarray
    forces: np.ndarray
    stress: np.ndarray
    weights: dict = field(default_factory=dict)
    group: np.ndarray = None
    index: np.ndarray = None

    @property
    def n_structures(self):
        """int: structures in the batch."""
        return int(self.volume.shape[0])

    @property
    def n_atoms(self):
        """int: atoms of all structures of the batch."""
        return int(self.X.shape[0])

    @property
    def n_atoms_per_structure(self):
        """ndarray of int64, shape (n_structures,): atoms of each structure."""
        return np.bincount(self.structure, minlength=self.n_structures)

    def has(self, kind):
        """Which structures carry labels of ``kind`` with a positive weight.

        Parameters
        ----------
        kind : {"energy", "forces", "stress"}
            Label kind (stress counts only for cells periodic in 3-D).

        Returns
        -------
        ndarray of bool, shape (n_structures,)
        """
        if kind == "energy":
            m = np.isfinite(self.energy)
        elif kind == "forces":
            ok = np.isfinite(self.forces).all(axis=1)
            m = np.bincount(self.structure, weights=ok, minlength=self.n_structures) == \
                self.n_atoms_per_structure
            m &= self.n_atoms_per_structure > 0
        elif kind == "stress":
            m = np.isfinite(self.stress).all(axis=1) & np.isfinite(self.volume)
        else:
            raise KeyError(kind)
        w = self.weights.get(kind)
        if w is not None:
            m = m & (np.asarray(w) > 0)
        return m


class Regressor(BaseEstimator):
    """Base class of per-atom energy regressors (scikit-learn estimators).

    Subclasses store keyword-only hyperparameters in ``__init__``, validate in ``fit``, and set
    fitted attributes ending in ``_``.  They implement

    - ``fit(batches, y=None)``: ``batches`` is a re-iterable of :class:`StructureBatch`
      (iterating it again recomputes or replays the batches); returns ``self``;
    - ``atomic_energy(X, species)``: per-atom ML energies eps_i, shape (n_atoms,), eV;
    - ``atomic_energy_gradient(X, species)``: ``(eps, dE_dX)`` with ``dE_dX`` of shape
      (n_atoms, n_features) = d(sum_i eps_i)/dX (the input of ``Descriptor.backward``);
    - ``predict_batch(batch, return_std=False)``: dict with ``"energy"`` (n_structures,) eV,
      ``"forces"`` (n_atoms, 3) eV/Å when ``batch.gradients`` is given, ``"stress"``
      (n_structures, 6) eV/Å³ for 3-D periodic structures (NaN otherwise), and with
      ``return_std`` the same keys suffixed ``"_std"`` (predictive standard deviations);
    - ``get_fitted_state()`` returning ``(state, arrays)``: the fitted state as a JSON-able dict
      and a dict of ndarrays (saved as JSON + npz by :meth:`hybridpot.HybridPotential.save`,
      never pickled), and ``set_fitted_state(state, arrays)`` restoring it on an instance built
      from :meth:`to_dict` hyperparameters.
    """

    #: True when the regressor has a posterior and ``predict_batch(return_std=True)`` works
    has_uncertainty = False

    def _check_batch(self, batch, n_species, F):
        """Validate one training :class:`StructureBatch` (type, ``X`` shape and finiteness,
        species indices in ``[0, n_species)``); raise :class:`~hybridpot.InvalidParameterError`."""
        from .._exceptions import InvalidParameterError

        owner = type(self).__name__
        if not isinstance(batch, StructureBatch):
            raise InvalidParameterError(
                f"{owner}.fit expects StructureBatch items. Got {type(batch).__name__} instead.")
        X = np.asarray(batch.X)
        if X.ndim != 2 or X.shape[1] != F:
            raise InvalidParameterError(
                f"The descriptors 'X' of a StructureBatch given to {owner}.fit must have shape "
                f"(n_atoms, {F}). Got {X.shape} instead.")
        if not np.all(np.isfinite(X)):
            raise InvalidParameterError(
                f"The descriptors 'X' of a StructureBatch given to {owner}.fit must be finite.")
        sp = np.asarray(batch.species)
        if sp.size and (sp.min() < 0 or sp.max() >= n_species):
            raise InvalidParameterError(
                f"The 'species' indices of a StructureBatch given to {owner}.fit must lie in "
                f"[0, {n_species - 1}]. Got values in [{sp.min()}, {sp.max()}] instead.")

    def _check_fitted(self):
        """NotFittedError unless ``fit`` has set ``coef_`` (regressors without ``coef_``
        override this)."""
        from .._exceptions import NotFittedError

        if not hasattr(self, "coef_"):
            raise NotFittedError(
                f"This {type(self).__name__} instance is not fitted yet; call fit first.")

    def _check_atomic_input(self, X, species, what="atomic_energy"):
        """Validate per-atom ``X`` (n_atoms, n_features_in_) and ``species`` indices.

        Returns ``(X as float64, species as int64)``; raises
        :class:`~hybridpot.InvalidParameterError` naming the argument otherwise.
        """
        from .._exceptions import InvalidParameterError

        owner = type(self).__name__
        X = np.asarray(X, dtype=np.float64)
        F = self.n_features_in_
        if X.ndim != 2 or X.shape[1] != F:
            raise InvalidParameterError(
                f"The 'X' argument of {owner}.{what} must have shape (n_atoms, {F}). "
                f"Got {X.shape} instead.")
        sp = np.asarray(species)
        if sp.shape != (X.shape[0],) or (sp.size and not np.issubdtype(sp.dtype, np.integer)):
            raise InvalidParameterError(
                f"The 'species' argument of {owner}.{what} must be integer indices of "
                f"shape ({X.shape[0]},). Got {sp.dtype} array of shape {sp.shape} instead.")
        if sp.size and (sp.min() < 0 or sp.max() >= self.n_species_):
            raise InvalidParameterError(
                f"The 'species' argument of {owner}.{what} must lie in "
                f"[0, {self.n_species_ - 1}]. Got values in [{sp.min()}, {sp.max()}] instead.")
        return X, sp.astype(np.int64)

    #: hyperparameters given as tuples; JSON turns them into lists, :meth:`from_dict_params`
    #: turns them back
    _TUPLE_PARAMS = ()

    def to_dict(self):
        """JSON-serialisable hyperparameters: ``{"class": name, "params": get_params()}``.

        A ``random_state`` that is a numpy Generator or RandomState is written as None (the
        fitted state keeps what its draws produced, e.g. inducing points or committee
        samples).
        """
        params = {k: (list(v) if isinstance(v, tuple) else v)
                  for k, v in self.get_params(deep=False).items()}
        rs = params.get("random_state")
        if rs is not None and (isinstance(rs, bool) or not isinstance(rs, numbers.Integral)):
            params["random_state"] = None
        return {"class": type(self).__name__, "params": params}

    @classmethod
    def from_dict_params(cls, params):
        """An unfitted instance from the ``"params"`` of :meth:`to_dict` (lists of the
        tuple-valued hyperparameters become tuples again, so ``get_params`` round-trips).

        Parameters
        ----------
        params : dict
            Hyperparameters, as in ``to_dict()["params"]``.

        Returns
        -------
        Regressor
            Unfitted.
        """
        params = {k: (tuple(v) if k in cls._TUPLE_PARAMS and isinstance(v, list) else v)
                  for k, v in params.items()}
        return cls(**params)


class BatchSource:
    """A re-iterable sequence of :class:`StructureBatch` plus what a regressor needs to size itself.

    Iterating twice yields the same batches (recomputed by ``factory`` or replayed from a list),
    so a regressor may make several passes (e.g. choose sparse points, then accumulate).

    Parameters
    ----------
    batches : list of StructureBatch or callable
        The batches, or a zero-argument callable returning a fresh iterator over them.
    n_species : int
        Number of elements (species indices run over ``range(n_species)``).
    n_features : int
        Descriptor length.
    species : sequence of str, optional
        Element symbols, in index order.
    group_names : sequence of str, optional
        Names of the config groups (``StructureBatch.group`` indexes this list).
    features : callable, optional
        Zero-argument callable returning an iterator over the same batches without the
        descriptor Jacobian (``gradients`` None), for passes that read only the descriptors
        and labels (see :meth:`features`).
    """

    def __init__(self, batches, *, n_species, n_features, species=None, group_names=None,
                 features=None):
        self._batches = batches
        self._features = features
        self.n_species = int(n_species)
        self.n_features = int(n_features)
        self.species = tuple(species) if species is not None else None
        self.group_names = tuple(group_names) if group_names is not None else ("default",)

    def __iter__(self):
        if callable(self._batches):
            return iter(self._batches())
        return iter(self._batches)

    def features(self):
        """Iterate the batches for a pass that needs no Jacobian (e.g. choosing sparse points
        from ``X``): built without gradients when the source can (``features``), else the
        batches themselves."""
        if self._features is not None:
            return iter(self._features())
        return iter(self)

    @classmethod
    def wrap(cls, batches):
        """Return ``batches`` if already a BatchSource, else wrap a list (sizes inferred).

        Parameters
        ----------
        batches : BatchSource, StructureBatch or iterable of StructureBatch
            The training batches; a list is read once.  The number of species is inferred
            from the largest species index, the groups are named ``group0``, ``group1``, ...

        Returns
        -------
        BatchSource

        Raises
        ------
        hybridpot.InvalidParameterError
            For an empty list or an item that is not a StructureBatch.
        """
        if isinstance(batches, BatchSource):
            return batches
        if isinstance(batches, StructureBatch):
            batches = [batches]
        batches = list(batches)
        if not batches or not all(isinstance(b, StructureBatch) for b in batches):
            from .._exceptions import InvalidParameterError

            raise InvalidParameterError(
                "The 'batches' argument must be a BatchSource or a non-empty list of "
                f"StructureBatch. Got {type(batches).__name__} of length {len(batches)} instead.")
        n_species = max(int(b.species.max()) for b in batches if b.n_atoms) + 1
        n_groups = max(int(b.group.max()) if b.group is not None and len(b.group) else 0
                       for b in batches) + 1
        return cls(batches, n_species=n_species, n_features=batches[0].X.shape[1],
                   group_names=[f"group{g}" for g in range(n_groups)])
