r"""A committee of coefficient modes pushed through the descriptor adjoint in one pass.

For a linear (or quadratic) model every output ``o`` (total energy, a force component, a
stress component) is linear in the coefficients: ``o = g_o . c`` (+ ``j_o . phi`` for the
baseline parameters).  With the posterior covariance of ``[c, phi]`` written as ``V V^T``
(columns ``v_k``, the *members*), the parameter variance is exactly

.. math::  \mathrm{Var}[o] = \sum_k (g_o \cdot v_k + j_o \cdot v^\phi_k)^2,

so the members are contracted with the descriptors (energies); forces and stress of the mean
model and of all members come from one pass: the per-atom force / stress design rows are built
once from the descriptor Jacobian and multiplied by all members in one BLAS product (or, for a
descriptor with a fused batched adjoint ``_backward_many``, through
:meth:`Descriptor.backward_many`); the baseline part goes through its ``parameter_gradients``.
By default (:meth:`LinearPosterior.committee` with ``n_members=None``) the members are all
non-negligible eigenmodes of the covariance, so ``V V^T`` is the covariance itself, not a
sample: σ is exact, with no Monte-Carlo noise and no truncation (keeping only the leading
modes would pay off for a multi-RHS adjoint, whose cost grows with the number of members; the
design-row product used here costs the same for any number).
Cost: one ``compute(gradients=True)`` (the Jacobian gives the mean forces too, so no separate
adjoint call) plus one small BLAS product; the baseline of the step is evaluated once (the
caller passes it in).  Measured in NVE MD (``benchmarks/md.py``, 108-atom fcc Ni, σ of energy,
forces and stress at every step / forces alone): 1.0-1.3 x for SNAP 2J=8 (56 members, with or
without an EMT baseline), 1.4-1.5 x for EMT + SO(3) power spectrum n_max=6, l_max=4
(106 members).
Observation noise (per label kind, mixed over the ``theta``
samples; total energies get ``N_s`` times the per-atom noise) is added; per kind the variance
is multiplied by the inflation factor (robust option) and σ by the model's
``uncertainty_scale_`` (recalibration).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .._exceptions import InvalidParameterError, ModelFormatError
from .._labels import VOIGT, matrix_to_voigt
from ..descriptors._base import gradient_chunks
from ..regression._design import quadratic_index

__all__ = ["Committee", "member_gradients"]

#: largest committee pushed through a fused batched adjoint; larger ones use the design rows
#: (measured on Ni, 107 atoms, PowerSpectrum n_max=8, l_max=6: fused 14 ms for 8 members,
#: 47 ms for 32, 384 ms for 254; design rows + one BLAS product about 40 ms for any size)
FUSED_MAX_MEMBERS = 16


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
    # sum_i q(X_i) per species, then contract: cost K * n_species * P
    nsp = coefs.shape[1]
    Qs = _summed_feature_map(X, species, nsp, quadratic)
    energy = np.einsum("ksp,sp->k", coefs, Qs)
    dE = coefs[:, species, 1:1 + F].copy()
    if quadratic:
        iu, ju = quadratic_index(F)
        for s in range(nsp):   # per element: no (K, n_atoms, F, F) gather of S
            idx = np.flatnonzero(species == s)
            if idx.size == 0:
                continue
            S = np.zeros((coefs.shape[0], F, F))
            S[:, iu, ju] = coefs[:, s, 1 + F:]
            S[:, ju, iu] = coefs[:, s, 1 + F:]
            dE[:, idx] += np.einsum("kfl,il->kif", S, X[idx])
    return energy, dE


def _summed_feature_map(X, species, n_species, quadratic):
    """``sum_{i: species_i = s} q(X_i)`` per element, shape (n_species, P), without the
    per-atom feature map (n_atoms, P): the quadratic block is the triangle of ``X_s^T X_s``."""
    F = X.shape[1]
    P = 1 + F + (F * (F + 1) // 2 if quadratic else 0)
    Qs = np.zeros((n_species, P))
    if quadratic:
        iu, ju = quadratic_index(F)
        half = np.where(iu == ju, 0.5, 1.0)
    for s in range(n_species):   # loop over elements
        Xs = X[species == s]
        if Xs.shape[0] == 0:
            continue
        Qs[s, 0] = Xs.shape[0]
        Qs[s, 1:1 + F] = Xs.sum(axis=0)
        if quadratic:
            Qs[s, 1 + F:] = (Xs.T @ Xs)[iu, ju] * half
    return Qs


@njit(cache=True)
def _pair_rows_kernel(pair_i, pair_j, rij, species, d_drij, R, V):
    """Add the pairs' terms to the position rows
    ``R[k, a, s, f] = sum_{i: species_i = s} dX_i[f] / dr_k[a]`` (n_atoms, 3, n_species, F)
    and virial rows ``V[s, b, a, f] = sum_{p: species_{i_p} = s} r_ij[p, b] dX_{i_p}[f] /
    dr_ij[p, a]`` (n_species, 3, 3, F), in one pass over the per-pair Jacobian."""
    n_pairs, _, F = d_drij.shape
    for p in range(n_pairs):
        i = pair_i[p]
        j = pair_j[p]
        s = species[i]
        r0 = rij[p, 0]
        r1 = rij[p, 1]
        r2 = rij[p, 2]
        for a in range(3):
            for f in range(F):
                v = d_drij[p, a, f]
                R[j, a, s, f] += v
                R[i, a, s, f] -= v
                V[s, 0, a, f] += r0 * v
                V[s, 1, a, f] += r1 * v
                V[s, 2, a, f] += r2 * v


def _linear_pair_outputs(atoms, dX, z, stack, forces, want_stress):
    """Forces (K+1, n_atoms, 3) and stress (K+1, 6) of every coefficient set of a linear model.

    ``F_k = -sum_s R_s . c_s`` and stress ``(1 / volume) sum_s V_s . c_s`` (symmetrised in
    Voigt notation) with the position and virial rows of :func:`_pair_rows_kernel`; the
    constant column of ``c`` has no derivative.
    """
    K1, nsp, P = stack.shape
    F = P - 1
    n = len(atoms)
    W = stack[:, :, 1:].reshape(K1, nsp * F).T  # (nsp * F, K + 1)
    R = np.zeros((n, 3, nsp, F))
    V = np.zeros((nsp, 3, 3, F))
    zc = np.ascontiguousarray(z, dtype=np.int64)
    for c in gradient_chunks(dX):   # a ChunkedGradients (big cells) one range at a time
        _pair_rows_kernel(np.ascontiguousarray(c.pair_i, dtype=np.int64),
                          np.ascontiguousarray(c.pair_j, dtype=np.int64),
                          np.ascontiguousarray(c.rij, dtype=np.float64), zc,
                          np.ascontiguousarray(c.d_drij, dtype=np.float64), R, V)
    f_all = sv = None
    if forces:
        f_all = -(R.reshape(n * 3, nsp * F) @ W).T.reshape(K1, n, 3)
    if want_stress:
        vo = np.array([0.5 * (V[:, b, a] + V[:, a, b]) for a, b in VOIGT])  # (6, nsp, F)
        sv = (vo.reshape(6, nsp * F) @ W).T / atoms.get_volume()
    return f_all, sv


class Committee:
    r"""Posterior committee of a linear hybrid model (built by :class:`LinearPosterior`).

    For an output ``y`` of one structure (energy, eV; a force component, eV/Å; a stress
    component, eV/Å³) with design row ``a_y`` (``y = a_y . c`` for the coefficients ``c``)
    and baseline-parameter derivative ``J_y = dy/dphi``, the predictive σ is

    .. math::

        \sigma_y^2 = s_k^2\, \iota_k \Big(p_k^2 \sum_{m=1}^{K}
            \big(\mathbf a_y \cdot \mathbf v_m + \mathbf J_y \cdot \mathbf b_m\big)^2
            + n_k^2\, \sigma_{\mathrm{noise},k}^2\Big)

    with the members ``v_m`` (``modes``) and ``b_m`` (``baseline_modes``), ``k`` the label
    kind of ``y``, ``iota_k`` its ``inflation``, ``p_k`` / ``n_k`` the ``param_scale`` /
    ``noise_scale`` factors, ``s_k`` the model's ``uncertainty_scale_`` and
    ``sigma_noise,k^2`` the ``noise_var`` of the structure's group (for the total energy
    ``N^2`` times the per-atom value; the noise term only with ``include_noise``).  The mean
    is the fitted model's prediction.

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
        Whether the model's feature map has the quadratic block (``coef_`` layout).
    grouped : bool
        Whether ``noise_var`` is per config group (else the single group ``"all"``).
    param_scale, noise_scale : dict, optional
        kind -> factor on the parameter / noise part of σ (set by
        ``recalibrate(method="split")``; default 1).
    """

    def __init__(self, modes, baseline_modes, baseline_shift, noise_var, inflation, quadratic,
                 grouped, param_scale=None, noise_scale=None):
        self.modes = np.asarray(modes, dtype=np.float64)
        self.baseline_modes = np.asarray(baseline_modes, dtype=np.float64)
        self.baseline_shift = np.asarray(baseline_shift, dtype=np.float64)
        self.noise_var = noise_var
        self.inflation = inflation
        self.quadratic = bool(quadratic)
        self.grouped = bool(grouped)
        self.param_scale = dict(param_scale or {})
        self.noise_scale = dict(noise_scale or {})

    @property
    def n_members(self):
        """int: committee members (posterior eigenmodes kept)."""
        return int(self.modes.shape[0])

    def _noise(self, kind, group_name):
        v = self.noise_var.get(kind)
        if not v:
            return 0.0
        if self.grouped:
            return float(v.get(group_name, max(v.values())))
        return float(v.get("all", max(v.values())))

    def evaluate(self, model, atoms, *, forces=True, stress=True, include_noise=True,
                 group_name="default", baseline=None):
        """Mean (the fitted model's) and σ of energy, forces and stress of one structure.

        Parameters
        ----------
        model : HybridPotential
            Fitted model whose ``regressor_.coef_`` is the mean of the committee.
        atoms : ase.Atoms
        forces, stress : bool, default=True
            Also return forces / stress (stress only for 3-D periodic cells) and their σ.
        include_noise : bool, default=True
            Add the observation noise to the variances.
        group_name : str, default="default"
            Config type whose noise level applies (when the noise is per group).
        baseline : dict, optional
            ``model._baseline(atoms, forces=forces, stress=...)`` already computed by the
            caller for this structure (the baseline is then not evaluated again).

        Returns
        -------
        dict
            ``energy`` (eV), ``energy_std``, ``energies`` (n_atoms,), ``forces`` (n_atoms, 3)
            and ``forces_std`` (eV/Å), ``stress`` and ``stress_std`` (eV/Å³, 3-D periodic
            cells only).

        Raises
        ------
        hybridpot.InvalidParameterError
            When the committee does not match the model's coefficient layout (a refitted
            model of another size: rebuild it with ``LinearPosterior.apply``).
        hybridpot.UnknownSpeciesError
            For an element outside the model's species.
        """
        from .._validation import species_indices

        species = model.species_
        z = species_indices(atoms, species, "HybridPotential")
        want_stress = stress and bool(np.all(atoms.pbc))
        need_grad = forces or want_stress
        base = baseline if baseline is not None else model._baseline(
            atoms, forces=forces, stress=want_stress)
        e0 = np.array([model.reference_energies_[s] for s in species])[z]
        reg = model.regressor_
        K = self.n_members
        fused = getattr(model.descriptor, "_backward_many", None) is not None \
            and K + 1 <= FUSED_MAX_MEMBERS
        dX = None
        if need_grad and not fused:
            # a big cell's Jacobian per range of centres: it never holds all of it
            X, dX = model.descriptor.compute_bounded(atoms)
        else:
            X = model.descriptor.compute(atoms)
        coef = np.asarray(reg.coef_, dtype=np.float64)
        if coef.shape != self.modes.shape[1:]:
            raise InvalidParameterError(
                f"The posterior committee has coefficient blocks of shape {self.modes.shape[1:]}"
                f" but the model's regressor has {coef.shape}; rebuild it with "
                "LinearPosterior.apply(model).")
        stack = np.concatenate([coef[None], self.modes], axis=0)
        Qs = _summed_feature_map(X, z, stack.shape[1], self.quadratic)
        E = np.einsum("ksp,sp->k", stack, Qs)
        eps = reg.atomic_energy(X, z)
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
            var = var_param * self.param_scale.get(kind, 1.0) ** 2
            if include_noise:
                var = var + (noise_sd * self.noise_scale.get(kind, 1.0)) ** 2
            return np.sqrt(var * infl.get(kind, 1.0)) * scale.get(kind, 1.0)

        noise_e = n * np.sqrt(self._noise("energy", group_name))
        out["energy_std"] = float(finish("energy", float(e_modes @ e_modes), noise_e))
        if need_grad:
            f_all, sv = self._pair_outputs(model, atoms, X, dX, z, stack, forces, want_stress)
            if forces:
                out["forces"] = base["forces"] + f_all[0]
                f_modes = f_all[1:]
                if pg is not None:
                    f_modes = f_modes + np.einsum("kq,qia->kia", bm, pg["forces"])
                var = np.einsum("kia,kia->ia", f_modes, f_modes)
                out["forces_std"] = finish("forces", var,
                                           np.sqrt(self._noise("forces", group_name)))
            if want_stress:
                out["stress"] = base["stress"] + sv[0]
                s_modes = sv[1:]
                if pg is not None:
                    s_modes = s_modes + bm @ pg["stress"]
                var = np.einsum("kv,kv->v", s_modes, s_modes)
                out["stress_std"] = finish("stress", var,
                                           np.sqrt(self._noise("stress", group_name)))
        return out

    def _pair_outputs(self, model, atoms, X, dX, z, stack, forces, want_stress):
        """Forces (K+1, n_atoms, 3) and stress (K+1, 6) of the mean model and every member.

        Without the Jacobian ``dX`` (a fused descriptor kernel ``_backward_many`` and at most
        :data:`FUSED_MAX_MEMBERS` members) they go through the adjoint; otherwise the
        force / stress design rows are built once from the Jacobian (linear models:
        :func:`_linear_pair_outputs`; quadratic ones:
        :func:`~hybridpot.regression._design.pair_rows`) and multiplied by all members in
        one BLAS product.
        """
        desc = model.descriptor
        K1 = stack.shape[0]
        n = len(atoms)
        if dX is None:
            _, dE = member_gradients(stack, X, z, self.quadratic)
            dE_dr, dE_deps = desc.backward_many(atoms, dE)
            sv = None
            if want_stress:
                sv = np.array([matrix_to_voigt(m) for m in dE_deps]) / atoms.get_volume()
            return -dE_dr, sv
        if not self.quadratic:
            return _linear_pair_outputs(atoms, dX, z, stack, forces, want_stress)
        from ..potential import _volume
        from ..regression._base import StructureBatch
        from ..regression._design import pair_rows

        batch = StructureBatch(
            X=X, species=z, structure=np.zeros(n, dtype=np.int64), gradients=dX,
            volume=np.array([_volume(atoms)]), energy=np.full(1, np.nan),
            forces=np.full((n, 3), np.nan), stress=np.full((1, 6), np.nan), weights={},
            group=np.zeros(1, dtype=np.int64), index=np.array([0]))
        Fr, Sr = pair_rows(batch, stack.shape[1], self.quadratic, forces=forces,
                           stress=want_stress)
        W = stack.reshape(K1, -1).T  # (M, K + 1)
        f_all = (Fr @ W).T.reshape(K1, n, 3) if forces else None
        sv = (Sr @ W).T if want_stress else None
        return f_all, sv

    # ------------------------------------------------------------------ serialisation
    def to_state(self):
        """JSON-able dict (arrays as nested lists)."""
        return {"modes": self.modes.tolist(), "modes_shape": list(self.modes.shape),
                "baseline_modes": self.baseline_modes.tolist(),
                "baseline_modes_shape": list(self.baseline_modes.shape),
                "baseline_shift": self.baseline_shift.tolist(),
                "noise_var": self.noise_var, "inflation": self.inflation,
                "quadratic": self.quadratic, "grouped": self.grouped,
                "param_scale": self.param_scale, "noise_scale": self.noise_scale}

    @classmethod
    def from_state(cls, d):
        """Inverse of :meth:`to_state`.

        Parameters
        ----------
        d : dict
            Output of :meth:`to_state` (JSON-able).

        Returns
        -------
        Committee

        Raises
        ------
        hybridpot.ModelFormatError
            For an incomplete or corrupt state.
        """
        try:
            modes = np.asarray(d["modes"], dtype=np.float64).reshape(d["modes_shape"])
            bm = np.asarray(d["baseline_modes"], dtype=np.float64).reshape(
                d["baseline_modes_shape"])
            return cls(modes, bm, np.asarray(d["baseline_shift"], dtype=np.float64),
                       {k: {g: float(v) for g, v in dict(gv).items()}
                        for k, gv in dict(d["noise_var"]).items()},
                       {k: float(v) for k, v in dict(d["inflation"]).items()},
                       bool(d["quadratic"]), bool(d["grouped"]),
                       {k: float(v) for k, v in dict(d.get("param_scale", {})).items()},
                       {k: float(v) for k, v in dict(d.get("noise_scale", {})).items()})
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelFormatError(
                f"The uncertainty committee stored in the model file is corrupt: {exc!r}.") \
                from exc
