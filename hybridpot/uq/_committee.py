r"""A committee of coefficient modes pushed through the descriptor adjoint in one pass.

For a linear (or quadratic) model every output ``o`` (total energy, a force component, a
stress component) is linear in the coefficients: ``o = g_o . c`` (+ ``j_o . phi`` for the
baseline parameters).  With the posterior covariance of ``[c, phi]`` written as ``V V^T``
(columns ``v_k``, the *members*), the parameter variance is exactly

.. math::  \mathrm{Var}[o] = \sum_k (g_o \cdot v_k + j_o \cdot v^\phi_k)^2,

so the members are contracted with the descriptors (energies), pushed through
:meth:`Descriptor.backward_many` together with the mean model (forces, stress) and through the
baseline's ``parameter_gradients``.  Observation noise (per label kind, mixed over the ``theta``
samples; total energies get ``N_s`` times the per-atom noise) is added and, per kind, the
variance is multiplied by the inflation factor and the model's ``uncertainty_scale_``.
"""

from __future__ import annotations

import numpy as np

from .._exceptions import InvalidParameterError, ModelFormatError
from .._labels import matrix_to_voigt
from ..regression._design import feature_map, quadratic_index

__all__ = ["Committee", "member_gradients"]


def member_gradients(coefs, X, species, quadratic):
    """Energies and ``dE/dX`` of every member (coefficient set) for one structure.

    Parameters
    ----------
    coefs : ndarray, shape (K, n_species, P)
    X : ndarray, shape (n_atoms, F)
    species : ndarray of int, shape (n_atoms,)
    quadratic : bool

    Returns
    -------
    energy : ndarray, shape (K,)
        Sum over atoms of ``eps_i`` (eV).
    dE_dX : ndarray, shape (K, n_atoms, F)
    """
    F = X.shape[1]
    q = feature_map(X, quadratic)
    # sum_i q(X_i) per species, then contract: cost K * n_species * P
    nsp = coefs.shape[1]
    Qs = np.zeros((nsp, q.shape[1]))
    np.add.at(Qs, species, q)
    energy = np.einsum("ksp,sp->k", coefs, Qs)
    dE = coefs[:, species, 1:1 + F].copy()
    if quadratic:
        iu, ju = quadratic_index(F)
        S = np.zeros((coefs.shape[0], nsp, F, F))
        S[:, :, iu, ju] = coefs[:, :, 1 + F:]
        S[:, :, ju, iu] = coefs[:, :, 1 + F:]
        dE += np.einsum("kikl,il->kik", S[:, species], X)
    return energy, dE


class Committee:
    """Posterior committee of a linear hybrid model (built by :class:`LinearPosterior`).

    Parameters
    ----------
    modes : ndarray, shape (K, n_species, P)
        Members ``v_k`` (coefficient layout of ``coef_``): the weight-covariance modes.
    baseline_modes : ndarray, shape (K, n_phi)
        Baseline-parameter part of the members (physical units).
    baseline_shift : ndarray, shape (n_phi,)
        Posterior mean of ``phi - phi0`` (informative; predictions keep the fitted means).
    noise_var : dict
        kind -> {group -> noise variance at unit weight}.
    inflation : dict
        kind -> variance inflation (robust option).
    quadratic : bool
    grouped : bool
        Whether ``noise_var`` is per config group (else the single group ``"all"``).
    """

    def __init__(self, modes, baseline_modes, baseline_shift, noise_var, inflation, quadratic,
                 grouped):
        self.modes = np.asarray(modes, dtype=np.float64)
        self.baseline_modes = np.asarray(baseline_modes, dtype=np.float64)
        self.baseline_shift = np.asarray(baseline_shift, dtype=np.float64)
        self.noise_var = noise_var
        self.inflation = inflation
        self.quadratic = bool(quadratic)
        self.grouped = bool(grouped)

    @property
    def n_members(self):
        return int(self.modes.shape[0])

    def _noise(self, kind, group_name):
        v = self.noise_var.get(kind)
        if not v:
            return 0.0
        if self.grouped:
            return float(v.get(group_name, max(v.values())))
        return float(v.get("all", max(v.values())))

    def evaluate(self, model, atoms, *, forces=True, stress=True, include_noise=True,
                 group_name="default"):
        """Mean (the fitted model's) and σ of energy, forces and stress of one structure.

        Returns
        -------
        dict
            ``energy`` (eV), ``energy_std``, ``energies`` (n_atoms,), ``forces`` (n_atoms, 3)
            and ``forces_std`` (eV/Å), ``stress`` and ``stress_std`` (eV/Å³, 3-D periodic
            cells only).
        """
        from .._validation import species_indices

        species = model.species_
        z = species_indices(atoms, species, "HybridPotential")
        want_stress = stress and bool(np.all(atoms.pbc))
        need_grad = forces or want_stress
        base = model._baseline(atoms, forces=forces, stress=want_stress)
        e0 = np.array([model.reference_energies_[s] for s in species])[z]
        reg = model.regressor_
        X = model.descriptor.compute(atoms)
        coef = np.asarray(reg.coef_, dtype=np.float64)
        K = self.n_members
        if coef.shape != self.modes.shape[1:]:
            raise InvalidParameterError(
                f"The posterior committee has coefficient blocks of shape {self.modes.shape[1:]}"
                f" but the model's regressor has {coef.shape}; rebuild it with "
                "LinearPosterior.apply(model).")
        stack = np.concatenate([coef[None], self.modes], axis=0)
        E, dE = member_gradients(stack, X, z, self.quadratic)
        eps = np.einsum("ip,ip->i", feature_map(X, self.quadratic), coef[z])
        n = len(atoms)
        out = {"energy": base["energy"] + float(e0.sum()) + float(E[0]),
               "energies": (base["energies"] if base["energies"] is not None else 0.0)
               + e0 + eps}
        e_modes = E[1:]
        bm = self.baseline_modes
        pg = None
        if bm.size:
            pg = model.baseline.parameter_gradients(atoms)
            e_modes = e_modes + bm @ pg["energy"]
        infl = self.inflation
        scale = getattr(model, "uncertainty_scale_", None) or {}

        def finish(kind, var_param, noise_sd):
            var = var_param + (noise_sd ** 2 if include_noise else 0.0)
            return np.sqrt(var * infl.get(kind, 1.0)) * scale.get(kind, 1.0)

        noise_e = n * np.sqrt(self._noise("energy", group_name))
        out["energy_std"] = float(finish("energy", float(e_modes @ e_modes), noise_e))
        if need_grad:
            dE_dr, dE_deps = model.descriptor.backward_many(atoms, dE)
            if forces:
                out["forces"] = base["forces"] - dE_dr[0]
                f_modes = -dE_dr[1:]
                if pg is not None:
                    f_modes = f_modes + np.einsum("kq,qia->kia", bm, pg["forces"])
                var = np.einsum("kia,kia->ia", f_modes, f_modes)
                out["forces_std"] = finish("forces", var,
                                           np.sqrt(self._noise("forces", group_name)))
            if want_stress:
                vol = atoms.get_volume()
                sv = np.array([matrix_to_voigt(m) for m in dE_deps]) / vol
                out["stress"] = base["stress"] + sv[0]
                s_modes = sv[1:]
                if pg is not None:
                    s_modes = s_modes + bm @ pg["stress"]
                var = np.einsum("kv,kv->v", s_modes, s_modes)
                out["stress_std"] = finish("stress", var,
                                           np.sqrt(self._noise("stress", group_name)))
        return out

    # ------------------------------------------------------------------ serialisation
    def to_state(self):
        """JSON-able dict (arrays as nested lists)."""
        return {"modes": self.modes.tolist(), "modes_shape": list(self.modes.shape),
                "baseline_modes": self.baseline_modes.tolist(),
                "baseline_modes_shape": list(self.baseline_modes.shape),
                "baseline_shift": self.baseline_shift.tolist(),
                "noise_var": self.noise_var, "inflation": self.inflation,
                "quadratic": self.quadratic, "grouped": self.grouped}

    @classmethod
    def from_state(cls, d):
        """Inverse of :meth:`to_state`."""
        try:
            modes = np.asarray(d["modes"], dtype=np.float64).reshape(d["modes_shape"])
            bm = np.asarray(d["baseline_modes"], dtype=np.float64).reshape(
                d["baseline_modes_shape"])
            return cls(modes, bm, np.asarray(d["baseline_shift"], dtype=np.float64),
                       {k: {g: float(v) for g, v in dict(gv).items()}
                        for k, gv in dict(d["noise_var"]).items()},
                       {k: float(v) for k, v in dict(d["inflation"]).items()},
                       bool(d["quadratic"]), bool(d["grouped"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelFormatError(
                f"The uncertainty committee stored in the model file is corrupt: {exc!r}.") \
                from exc
