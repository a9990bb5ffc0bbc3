"""Ensembles of one regressor fitted with different random states (committee averaging).

A sparse GP's inducing environments are a random draw (the candidate reservoir and CUR / FPS
selection depend on ``random_state``); an inducing set of ``M`` points misses parts of the
training distribution that another draw covers.  Averaging ``K`` GPs fitted with different
draws lowers that part of the error, and their disagreement adds to the predictive variance.
Measured on two validation splits of the mlearn Mo training set (PS + bispectrum SE GP, 1000
inducing points): three members lower the energy MAE by 2-5 % and the force MAE by 1.5 % on
both splits, more than any hyperparameter changed there (``benchmarks/mlearn.py``, ``BS_GP``).

The same class makes committees of any regressor that takes a ``random_state`` (a
:class:`NeuralNetworkRegressor` with ``n_models=1`` per member, say).  A sparse GP's members
are fitted in the two passes over the training batches of a single GP (descriptors and
Jacobians are computed once for all members), serially or with Dask
(:mod:`hybridpot.parallel`).
"""

from __future__ import annotations

import inspect
import numbers

import numpy as np
from sklearn.base import clone

from .._exceptions import InvalidParameterError, ModelFormatError, NotFittedError
from .._validation import check_int, check_random_state_param
from ._base import REGRESSORS, BatchSource, Regressor, StructureBatch, register_regressor

__all__ = ["EnsembleRegressor"]

_OWNER = "EnsembleRegressor"
#: the streamed-statistics protocol of the sparse GP / linear models (see hybridpot.parallel)
_STREAM = ("_new_stats", "_add_batch", "_merge_stats", "_fit_stats")
_CANDIDATES = ("_validate", "_candidate_keys", "_new_candidates", "_add_candidates", "_merge_candidates",
               "_set_inducing")


@register_regressor
class EnsembleRegressor(Regressor):
    """Average of ``n_models`` copies of a regressor fitted with different random states.

    Every member is ``clone(estimator)`` with its own ``random_state``; predictions (per-atom
    energies in eV, their descriptor gradients, energies, forces in eV/Å and stresses in
    eV/Å³) are the members' mean, so forces stay the exact negative gradient of the energy
    and MD uses the members' adjoints.  Prediction costs ``n_models`` times one member's.

    Parameters
    ----------
    estimator : Regressor or None, default=None
        The member template (cloned; None means ``SparseGPRegressor()``).  It must take a
        ``random_state``
        parameter (members of a deterministic regressor would be identical), e.g.
        :class:`SparseGPRegressor` (the random state draws the inducing environments) or
        :class:`NeuralNetworkRegressor`.  Its own ``random_state`` is replaced.
    n_models : int, default=3
        Number of members (>= 1).
    random_state : int, numpy Generator/RandomState or None, default=None
        Member ``k`` gets ``random_state + k`` for an int (so member 0 equals
        ``estimator`` fitted with ``random_state`` alone); seeds drawn from the generator,
        or from fresh OS entropy for None.  The seeds used are kept in ``random_states_``.

    Attributes
    ----------
    estimators_ : list of Regressor
        The fitted members.
    random_states_ : list of int
        The members' random states.
    n_features_in_ : int
        Descriptor length.
    n_species_ : int
        Number of elements.
    species_ : tuple of str or None
        Element symbols in index order (when the training source named them).
    group_names_ : tuple of str
        Config groups of the training set.

    Notes
    -----
    ``predict_batch(return_std=True)``: when the members have a posterior
    (``has_uncertainty``), the standard deviation of the equal-weight mixture of their
    predictive distributions, ``sqrt(mean_k sigma_k^2 + mean_k (mu_k - mu)^2)``; otherwise
    the committee standard deviation of the members' means (``ddof=1``, as
    :class:`NeuralNetworkRegressor`), which needs ``n_models >= 2``.

    Members with an adjoint committee (``SparseGPRegressor(derivative_variance=
    "committee")``) give the same mixture σ in ``HybridPotential``'s calculator through one
    ``Descriptor.backward_many`` call of ``1 + n_models (1 + n_committee)`` rows (the mean,
    every member's offset from it, every member's samples): the σ cost grows with that
    number, so a smaller ``n_committee`` per member keeps it down (the mixture averages the
    members' sample variances, e.g. 3 members of 6 samples pool 18).  Members without a
    posterior (networks) give their committee σ there the same way, from ``1 + n_models``
    rows (the mean and every member's offset from it): no per-pair descriptor Jacobian is
    built, so memory stays O(n_atoms n_features) on big cells.  Members with a posterior but
    no adjoint committee (``SparseGPRegressor`` with ``derivative_variance="dtc"``, the
    default, or ``"projected"``) read the structure's whole per-pair Jacobian, as one such GP
    does (``n_pairs * 3 * n_features`` floats).

    Examples
    --------
    >>> from hybridpot.regression import EnsembleRegressor, SparseGPRegressor
    >>> reg = EnsembleRegressor(estimator=SparseGPRegressor(kernel="se", n_sparse=1000),
    ...                         n_models=3, random_state=0)
    """

    def __init__(self, *, estimator=None, n_models=3, random_state=None):
        self.estimator = estimator
        self.n_models = n_models
        self.random_state = random_state

    # -- validation -------------------------------------------------------------------------
    @property
    def _template(self):
        if self.estimator is None:
            from ._gp import SparseGPRegressor

            return SparseGPRegressor()
        return self.estimator

    def _validate(self):
        est = self._template
        if not isinstance(est, Regressor):
            raise InvalidParameterError(
                f"The 'estimator' parameter of {_OWNER} must be a hybridpot Regressor "
                f"instance (e.g. SparseGPRegressor()). Got {type(est).__name__} instead.")
        if "random_state" not in est.get_params(deep=False):
            raise InvalidParameterError(
                f"The 'estimator' parameter of {_OWNER} must take a 'random_state' parameter "
                f"(the members differ only through it). {type(est).__name__} has none, so "
                "its members would be identical.")
        check_int(self.n_models, "n_models", _OWNER, low=1)
        check_random_state_param(self.random_state, _OWNER)
        rs = self.random_state
        if isinstance(rs, numbers.Integral) and int(rs) + int(self.n_models) - 1 >= 2 ** 32:
            raise InvalidParameterError(
                f"The 'random_state' parameter of {_OWNER} gives member k the seed "
                f"random_state + k, which must stay below 2**32 for all {int(self.n_models)} "
                f"members. Got {rs!r} instead.")

    def _member_seeds(self):
        n, rs = int(self.n_models), self.random_state
        if rs is None:
            return [int(s) for s in np.random.SeedSequence().generate_state(n) % (2 ** 31)]
        if isinstance(rs, np.random.Generator):
            return [int(s) for s in rs.integers(2 ** 31, size=n)]
        if isinstance(rs, np.random.RandomState):
            return [int(s) for s in rs.randint(2 ** 31, size=n)]
        return [int(rs) + k for k in range(n)]

    def _new_members(self, seeds):
        return [clone(self._template).set_params(random_state=s) for s in seeds]

    @property
    def has_uncertainty(self):
        """True: the members' mixture (or committee spread) gives predictive std."""
        return bool(getattr(self._template, "has_uncertainty", False)) or \
            (isinstance(self.n_models, numbers.Integral) and self.n_models >= 2)

    # -- fitting -------------------------------------------------------------------------------
    @property
    def _fit_passes(self):
        """Streamed passes this ensemble supports (read by :mod:`hybridpot.parallel`):
        ``("candidates", "stats")`` for members with the sparse GP's two-pass protocol,
        ``()`` otherwise (members are fitted one after another on the same batches)."""
        est = self._template
        if all(hasattr(est, a) for a in _STREAM + _CANDIDATES):
            return ("candidates", "stats")
        return ()

    def fit(self, batches, y=None):
        """Fit every member on the same training batches.

        Parameters
        ----------
        batches : BatchSource or list of StructureBatch
            Training batches (residual labels); iterated twice for sparse GP members (once
            for all members together per pass), once per member otherwise.
        y : ignored

        Returns
        -------
        self
        """
        self._validate()
        source = BatchSource.wrap(batches)
        meta = {"n_species": source.n_species, "n_features": source.n_features,
                "species": source.species, "group_names": source.group_names}
        self._start(meta)
        try:
            return self._fit_members(source, meta)
        except BaseException:
            # a failed refit keeps the previous fitted state as it was (it kept the previous
            # members with the new seeds in random_states_, and the half-fitted members)
            self.__dict__.pop("_members_fit", None)
            self.__dict__.pop("_seeds_fit", None)
            raise

    def _fit_members(self, source, meta):
        members = self._members_fit
        if not self._fit_passes:
            for m in members:
                m.fit(source)
            return self._finish(meta)
        # the streamed protocol below, each member drawing its reservoir keys batch by batch
        # from its own generator as its serial fit would
        from sklearn.utils import check_random_state

        for m in members:
            m._validate()
        rngs = [check_random_state(m.random_state) for m in members]
        cand = self._new_candidates(meta)
        for batch in source:
            keys = np.stack([r.random_sample(batch.n_atoms) for r in rngs], axis=1)
            self._add_candidates(cand, batch, keys, meta)
        self._set_inducing(cand, meta, rngs)
        stats = self._new_stats(meta)
        for batch in source:
            self._add_batch(stats, batch, meta)
        return self._fit_stats(stats, meta)

    def _start(self, meta):
        self._validate()
        self._seeds_fit = self._member_seeds()
        self._members_fit = self._new_members(self._seeds_fit)

    def _finish(self, meta):
        members = self.__dict__.pop("_members_fit")
        self.random_states_ = self.__dict__.pop("_seeds_fit")
        self.estimators_ = members
        self._set_meta(members[0], meta.get("species"), meta.get("group_names"))
        return self

    def _set_meta(self, first, species, group_names):
        self.n_features_in_ = int(first.n_features_in_)
        self.n_species_ = int(first.n_species_)
        sp = getattr(first, "species_", None) if species is None else species
        self.species_ = None if sp is None else tuple(sp)
        names = getattr(first, "group_names_", None) or group_names or ("default",)
        self.group_names_ = tuple(names)

    # streamed protocol for hybridpot.parallel: the members' states side by side; the
    # reservoir keys of n atoms are an (n, n_models) array (member k: column k)
    def _candidate_keys(self, meta, n_atoms):
        self._start(meta)
        return np.stack([m._candidate_keys(meta, n_atoms) for m in self._members_fit], axis=1)

    def _new_candidates(self, meta):
        return [m._new_candidates(meta) for m in self._members_fit]

    def _add_candidates(self, cand, batch, keys, meta):
        keys = np.asarray(keys).reshape(batch.n_atoms, len(self._members_fit))
        for k, (m, c) in enumerate(zip(self._members_fit, cand)):
            m._add_candidates(c, batch, keys[:, k], meta)
        return cand

    def _merge_candidates(self, a, b):
        return [m._merge_candidates(x, y) for m, x, y in zip(self._members_fit, a, b)]

    def _set_inducing(self, cand, meta, rng=None):
        """``rng``: the members' generators (serial fit), or None (each member's
        ``_candidate_keys`` kept its own)."""
        rngs = [None] * len(self._members_fit) if rng is None else rng
        for m, c, r in zip(self._members_fit, cand, rngs):
            m._set_inducing(c, meta, r)
        return self

    def _new_stats(self, meta):
        return [m._new_stats(meta) for m in self._members_fit]

    def _add_batch(self, stats, batch, meta):
        for m, s in zip(self._members_fit, stats):
            m._add_batch(s, batch, meta)
        return stats

    def _merge_stats(self, a, b):
        return [m._merge_stats(x, y) for m, x, y in zip(self._members_fit, a, b)]

    def _fit_stats(self, stats, meta):
        for m, s in zip(self._members_fit, stats):
            m._fit_stats(s, meta)
        return self._finish(meta)

    # -- prediction ----------------------------------------------------------------------------
    def _check_fitted(self):
        if not hasattr(self, "estimators_"):
            raise NotFittedError(f"This {_OWNER} instance is not fitted yet; call fit first.")

    def atomic_energy(self, X, species):
        """Per-atom ML energies, the members' mean.

        Parameters
        ----------
        X : ndarray, shape (n_atoms, n_features)
            Per-atom descriptors.
        species : ndarray of int, shape (n_atoms,)
            Index of each atom's element in the model's species list.

        Returns
        -------
        ndarray, shape (n_atoms,)
            eV.
        """
        self._check_fitted()
        X, sp = self._check_atomic_input(X, species)
        return np.mean([m.atomic_energy(X, sp) for m in self.estimators_], axis=0)

    def atomic_energy_gradient(self, X, species):
        """Per-atom energies and ``d(sum_i eps_i)/dX``, the members' means.

        Parameters
        ----------
        X : ndarray, shape (n_atoms, n_features)
            Per-atom descriptors.
        species : ndarray of int, shape (n_atoms,)
            Index of each atom's element in the model's species list.

        Returns
        -------
        eps : ndarray, shape (n_atoms,)
            eV.
        dE_dX : ndarray, shape (n_atoms, n_features)
            eV per descriptor unit (the input of ``Descriptor.backward``).
        """
        self._check_fitted()
        X, sp = self._check_atomic_input(X, species, "atomic_energy_gradient")
        eps, grad = 0.0, 0.0
        for m in self.estimators_:
            e, g = m.atomic_energy_gradient(X, sp)
            eps, grad = eps + e, grad + g
        k = len(self.estimators_)
        return eps / k, grad / k

    @property
    def _spread_std(self):
        """Whether σ is the spread of the member means (members without a posterior of their
        own, ``n_models >= 2``: the ``ddof=1`` branch of :meth:`predict_batch`)."""
        members = getattr(self, "estimators_", None)
        return bool(members) and len(members) >= 2 and \
            not getattr(members[0], "has_uncertainty", False)

    @property
    def _adjoint_std(self):
        """Whether ``HybridPotential`` takes force / stress σ through the adjoint
        (:meth:`_committee_cotangents`, no descriptor Jacobian): every member has an adjoint
        committee, or the σ is the spread of the member means."""
        members = getattr(self, "estimators_", None)
        return bool(members) and (self._spread_std or all(
            getattr(m, "_adjoint_std", False) for m in members))

    def _committee_cotangents(self, X, species, energy_var=False):
        """The mixture's mean and committee rows for ``HybridPotential``'s adjoint σ.

        Row 0 is the mean of the members' mean ``dE/dX``; then, for every member ``m`` of
        ``n_models``, ``(mean_m - mean) / sqrt(n_models)`` and member ``m``'s own committee
        rows divided by ``sqrt(n_models)``: the sum of the squares of the rows' outputs is the
        mixture's parameter variance (mean member variance plus the spread of the member
        means, as in :meth:`predict_batch`).

        Parameters
        ----------
        X : ndarray, shape (n_atoms, n_features)
            Descriptors of the atoms of one structure.
        species : ndarray of int, shape (n_atoms,)
        energy_var : bool, default=False
            Also return the mixture variance of the total energy (eV², the square of
            :meth:`predict_batch`'s ``energy_std``).

        Returns
        -------
        eps : ndarray, shape (n_atoms,)
            eV.
        dE_dX : ndarray, shape (n_rows, n_atoms, n_features)
        energy_var : float
            Only with ``energy_var``.
        """
        self._check_fitted()
        X, sp = self._check_atomic_input(X, species, "_committee_cotangents")
        if self._spread_std:
            return self._spread_cotangents(X, sp, energy_var)
        # the rows are written into one preallocated array member by member (holding every
        # member's rows and their scaled copies before concatenating took ~3x the result:
        # 3 members of 16 samples on 4000 atoms, F=180: ~860 MB for a 300 MB array)
        k = len(self.estimators_)
        root = np.sqrt(k)
        G = None
        eps, mean = 0.0, 0.0
        energies, member_var, starts = [], [], []
        for j, m in enumerate(self.estimators_):
            p = m._committee_cotangents(X, sp, energy_var=energy_var)
            Gm = p[1]
            if G is None:
                G = np.empty((1 + k * Gm.shape[0],) + Gm.shape[1:])
                r = 1
            elif r + Gm.shape[0] > G.shape[0]:   # members with more rows than the first
                G = np.concatenate([G[:r], np.empty((Gm.shape[0] * (k - j),) + Gm.shape[1:])])
            starts.append(r)
            G[r] = Gm[0]                          # the member's mean (offset applied below)
            np.divide(Gm[1:], root, out=G[r + 1:r + Gm.shape[0]])
            r += Gm.shape[0]
            eps = eps + p[0]
            mean = mean + Gm[0]
            energies.append(float(p[0].sum()))
            if energy_var:
                member_var.append(p[2])
            del p, Gm
        G = G[:r]
        eps, mean = eps / k, mean / k
        G[0] = mean
        for r0 in starts:
            G[r0] -= mean
            G[r0] /= root
        if not energy_var:
            return eps, G
        energies = np.array(energies)
        var = np.mean(member_var) + np.mean((energies - energies.mean()) ** 2)
        return eps, G, float(var)

    def _spread_cotangents(self, X, sp, energy_var):
        """:meth:`_committee_cotangents` of members without a posterior: row 0 the mean
        ``dE/dX``, then ``(dE_k/dX - mean) / sqrt(n_models - 1)`` for every member ``k``, so
        that the sum of the squares of the rows' forces / stresses is the ``ddof=1`` variance
        of the member means (:meth:`predict_batch`'s σ) without the per-pair Jacobian;
        ``energy_var`` the same variance of the members' total energies."""
        k = len(self.estimators_)
        parts = [m.atomic_energy_gradient(X, sp) for m in self.estimators_]
        G = np.stack([p[1] for p in parts])
        eps = np.mean([p[0] for p in parts], axis=0)
        mean = G.mean(axis=0)
        G -= mean[None]
        G /= np.sqrt(k - 1)
        G = np.concatenate([mean[None], G], axis=0)
        if not energy_var:
            return eps, G
        energies = np.array([p[0].sum() for p in parts])
        return eps, G, float(np.var(energies, ddof=1))

    def predict_batch(self, batch, return_std=False, include_noise=True):
        """Energies, forces and stresses of a batch, the members' mean.

        Parameters
        ----------
        batch : StructureBatch
            Descriptors (and, for forces and stress, ``gradients``); labels are ignored.
        return_std : bool, default=False
            Add ``"energy_std"`` (eV), ``"forces_std"`` (eV/Å) and ``"stress_std"``
            (eV/Å³): the mixture standard deviation (see the class notes).
        include_noise : bool, default=True
            Passed to members whose ``predict_batch`` takes it (observation noise in their
            predictive variance).

        Returns
        -------
        dict
            ``"energy"`` (n_structures,) eV; with ``batch.gradients`` ``"forces"``
            (n_atoms, 3) eV/Å and ``"stress"`` (n_structures, 6) eV/Å³ (NaN unless 3-D
            periodic); with ``return_std`` the same keys suffixed ``"_std"``.

        Raises
        ------
        hybridpot.NotFittedError
            Before ``fit``.
        hybridpot.InvalidParameterError
            For a ``batch`` that is not a StructureBatch or of the wrong shape, or
            ``return_std=True`` with one member that has no posterior of its own.
        """
        self._check_fitted()
        if not isinstance(batch, StructureBatch):
            raise InvalidParameterError(
                f"The 'batch' argument of {_OWNER}.predict_batch must be a StructureBatch. "
                f"Got {type(batch).__name__} instead.")
        self._check_atomic_input(batch.X, batch.species, "predict_batch")
        members = self.estimators_
        own = bool(getattr(members[0], "has_uncertainty", False))
        if return_std and not own and len(members) < 2:
            raise InvalidParameterError(
                f"predict_batch(return_std=True) needs members with a posterior or a "
                f"committee: the 'n_models' parameter of {_OWNER} must be an int >= 2 for "
                f"{type(members[0]).__name__} members. Got {len(members)} instead.")
        kw = {}
        if "include_noise" in inspect.signature(members[0].predict_batch).parameters:
            kw["include_noise"] = include_noise
        preds = [m.predict_batch(batch, return_std=return_std and own, **kw) for m in members]
        out = {}
        for key in ("energy", "forces", "stress"):
            if key not in preds[0]:
                continue
            mu = np.stack([p[key] for p in preds])
            mean = mu.mean(axis=0)
            out[key] = mean
            if not return_std:
                continue
            if own:
                var = np.mean([p[key + "_std"] ** 2 for p in preds], axis=0) + \
                    np.mean((mu - mean) ** 2, axis=0)
                out[key + "_std"] = np.sqrt(var)
            else:
                out[key + "_std"] = mu.std(axis=0, ddof=1)
        return out

    def _predictive_noise_std(self, kind):
        """Noise std of one value of ``kind`` in the mixture σ: the root-mean-square of the
        members' (None unless every member reports one)."""
        self._check_fitted()
        vals = [getattr(m, "_predictive_noise_std", lambda k: None)(kind)
                for m in self.estimators_]
        if any(v is None for v in vals) or not getattr(self.estimators_[0], "has_uncertainty",
                                                         False):
            return None
        return float(np.sqrt(np.mean(np.square(vals))))

    # -- persistence ---------------------------------------------------------------------------
    def to_dict(self):
        """JSON-serialisable hyperparameters, the member template nested as its own
        ``{"class", "params"}`` (a Generator or RandomState ``random_state`` is written as
        None; the members' seeds are in the fitted state, ``random_states_``)."""
        self._validate()
        rs = self.random_state
        return {"class": _OWNER,
                "params": {"estimator": None if self.estimator is None else
                           self.estimator.to_dict(), "n_models": int(self.n_models),
                           "random_state": None if rs is None or not isinstance(
                               rs, numbers.Integral) else int(rs)}}

    @classmethod
    def from_dict_params(cls, params):
        """An unfitted instance from :meth:`to_dict` ``"params"`` (the nested estimator is
        looked up by class name among the registered regressors; no code is executed).

        Parameters
        ----------
        params : dict
            Hyperparameters, as in ``to_dict()["params"]``; ``"estimator"`` is the member
            template's own ``{"class", "params"}``.

        Returns
        -------
        EnsembleRegressor
            Unfitted.

        Raises
        ------
        hybridpot.ModelFormatError
            For ``params`` that is not a dict, a nested estimator that is not
            ``{"class": <registered regressor>, "params": {...}}``, or a parameter name
            ``EnsembleRegressor`` does not take.
        """
        if not isinstance(params, dict):
            raise ModelFormatError(
                f"The 'params' of {_OWNER} in a model file must be a dict of its "
                f"hyperparameters. Got {type(params).__name__} instead.")
        params = dict(params)
        unknown = sorted(set(params) - {"estimator", "n_models", "random_state"})
        if unknown:
            raise ModelFormatError(
                f"The 'params' of {_OWNER} in a model file may only hold 'estimator', "
                f"'n_models' and 'random_state'. Got unknown {unknown} instead.")
        doc = params.pop("estimator", None)
        if doc is None:
            return cls(**params)
        if not isinstance(doc, dict) or doc.get("class") not in REGRESSORS or \
                not isinstance(doc.get("params", {}), dict):
            raise ModelFormatError(
                f"The nested 'estimator' of {_OWNER} in a model file must be {{'class': one "
                f"of {sorted(REGRESSORS)}, 'params': {{...}}}}. Got {doc!r} instead.")
        est = REGRESSORS[doc["class"]].from_dict_params(doc.get("params", {}))
        return cls(estimator=est, **params)

    def get_fitted_state(self):
        """``(state, arrays)``: the members' states (arrays prefixed ``member<k>__``)."""
        self._check_fitted()
        states, arrays = [], {}
        for k, m in enumerate(self.estimators_):
            s, a = m.get_fitted_state()
            states.append(s)
            arrays.update({f"member{k}__{name}": v for name, v in a.items()})
        return {"random_states": list(self.random_states_), "members": states,
                "n_features": int(self.n_features_in_), "n_species": int(self.n_species_),
                "species": None if self.species_ is None else list(self.species_),
                "group_names": list(self.group_names_)}, arrays

    def set_fitted_state(self, state, arrays):
        """Restore :meth:`get_fitted_state` output (used by model loading).

        Parameters
        ----------
        state : dict
            The JSON part of :meth:`get_fitted_state`.
        arrays : dict of str to ndarray
            Its array part.

        Returns
        -------
        self

        Raises
        ------
        hybridpot.ModelFormatError
            For an incomplete or inconsistent state.
        """
        self._validate()
        try:
            seeds = [int(s) for s in state["random_states"]]
            states = list(state["members"])
            species = state.get("species")
            names = state.get("group_names")
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelFormatError(
                f"Fitted state of {_OWNER} is incomplete or corrupt: {exc!r}.") from exc
        if len(seeds) != int(self.n_models) or len(states) != int(self.n_models):
            raise ModelFormatError(
                f"Fitted state of {_OWNER}: n_models={self.n_models} but the state holds "
                f"{len(states)} member(s) and {len(seeds)} random state(s).")
        members = self._new_members(seeds)
        for k, (m, s) in enumerate(zip(members, states)):
            pre = f"member{k}__"
            m.set_fitted_state(s, {n[len(pre):]: v for n, v in arrays.items()
                                   if n.startswith(pre)})
        self.random_states_ = seeds
        self.estimators_ = members
        self._set_meta(members[0], species, names)
        return self
