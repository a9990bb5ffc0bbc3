"""Behler-Parrinello neural-network regressor: one small MLP per element, trained on energies,
forces and stresses with hand-written double backpropagation (numpy + numba, no torch).

Notation used below (one ensemble member):

- ``x~_i = (X_i - mu_z) / s_z``: descriptor of atom ``i`` (element ``z = Z_i``) standardised with
  the per-element mean ``mu_z`` and standard deviation ``s_z`` of the training descriptors;
- ``o_z(x~)``: an MLP with layers ``a_l = h_{l-1} W_l + b_l``, ``h_l = phi(a_l)``, ``h_0 = x~``
  and a linear scalar output ``o = h_L w_o + b_o``;
- ``eps_i = c * o_z(x~_i) + e_z``: the atomic energy (eV), ``c`` a fixed output scale and ``e_z``
  a fixed per-element energy shift (least squares of the energies on the composition);
- ``G_i = dE/dX_i = c * (d o_z / d x~)(x~_i) / s_z``: the input of ``Descriptor.backward``.

Forces and stresses follow from the per-pair Jacobian ``d_drij`` (see
:mod:`hybridpot.descriptors._base`): ``g_p = d_drij[p]^T G_{pair_i[p]}`` is ``dE/dr_ij`` of
pair ``p``; ``dE/dr_k = sum_{p: j_p=k} g_p - sum_{p: i_p=k} g_p``, ``F = -dE/dr`` and
``dE/d eps = sum_p g_p (x) r_ij``, stress ``= dE/d eps / V``.

The training loss depends on the weights ``w`` through ``eps`` and through ``G``.  With the
adjoints ``eps_bar = dL/d eps`` and ``G_bar = dL/dG`` (the transpose of the linear force/stress
map above applied to ``dL/dF`` and ``dL/dsigma``) the weight gradient is the gradient of the
scalar ``J(w) = sum_i eps_bar_i eps_i + sum_i G_bar_i . G_i``.  The second term is a forward-mode
directional derivative of ``o`` along ``v_i = c G_bar_i / s_z``; ``J`` is evaluated by one
primal forward pass, one tangent forward pass (``a'_l = h'_{l-1} W_l``,
``h'_l = phi'(a_l) a'_l``, ``h'_0 = v``) and differentiated by one reverse pass through both,
which needs ``phi''`` (reverse-over-forward, "double backpropagation").
"""

from __future__ import annotations

import dataclasses
import numbers
import warnings

import numpy as np
from numba import njit
from scipy.optimize import minimize
from sklearn.exceptions import ConvergenceWarning
from threadpoolctl import threadpool_limits  # a hard dependency of scikit-learn

from .._exceptions import (InvalidParameterError, MissingLabelsError, ModelFormatError,
                           NotFittedError, UnknownSpeciesError)
from .._validation import check_choice, check_float, check_int, check_random_state_param
from ..descriptors._base import DescriptorGradients, gradient_chunks
from ._base import VOIGT, BatchSource, Regressor, StructureBatch, register_regressor

__all__ = ["NeuralNetworkRegressor"]

_OWNER = "NeuralNetworkRegressor"
ACTIVATIONS = ("tanh", "softplus", "silu")
SOLVERS = ("lbfgs", "adam")
_VOIGT_A = np.array([v[0] for v in VOIGT])
_VOIGT_B = np.array([v[1] for v in VOIGT])
_FORMAT_VERSION = 1
#: training structures are grouped into chunks of at most this many atoms (bounds the size of
#: the temporary activation arrays during full-batch L-BFGS)
_CHUNK_ATOMS = 4096
#: floor of the input standardisation scale of a feature, relative to the largest standard
#: deviation of that element's features in the training data
_MIN_RELATIVE_SCALE = 1e-2


# ------------------------------------------------------------------------------------------
# activations: value, first and second derivative (all smooth, so MD conserves energy)
# ------------------------------------------------------------------------------------------
def _sigmoid(a):
    return 0.5 * (1.0 + np.tanh(0.5 * a))


def activation(name, a, order=2):
    """Return ``(phi(a), phi'(a), phi''(a))`` (``None`` beyond ``order``) of an activation."""
    if name == "tanh":
        t = np.tanh(a)
        d1 = 1.0 - t * t
        return t, d1, (-2.0 * t * d1 if order >= 2 else None)
    if name == "softplus":
        s = _sigmoid(a)
        return np.logaddexp(0.0, a), s, (s * (1.0 - s) if order >= 2 else None)
    if name == "silu":
        s = _sigmoid(a)
        d1 = s + a * s * (1.0 - s)
        d2 = s * (1.0 - s) * (2.0 + a * (1.0 - 2.0 * s)) if order >= 2 else None
        return a * s, d1, d2
    raise InvalidParameterError(  # pragma: no cover - validated before
        f"Unknown activation {name!r}; allowed: {ACTIVATIONS}.")


# ------------------------------------------------------------------------------------------
# numba kernels: the linear map G -> (dE/dr, dE/deps) over pairs, and its transpose
# ------------------------------------------------------------------------------------------
@njit(cache=True)
def _pair_forward_kernel(pair_i, pair_j, pair_struct, rij, d_drij, G, n_atoms, n_struct):
    """``g_p = d_drij[p]^T G[pair_i[p]]`` scattered to ``dE/dr`` (n_atoms, 3) and per-structure
    ``dE/deps`` (n_struct, 3, 3)."""
    n_pairs = pair_i.shape[0]
    n_feat = G.shape[1]
    dE_dr = np.zeros((n_atoms, 3))
    dE_deps = np.zeros((n_struct, 3, 3))
    for p in range(n_pairs):
        i = pair_i[p]
        j = pair_j[p]
        s = pair_struct[p]
        for a in range(3):
            g = 0.0
            for f in range(n_feat):
                g += d_drij[p, a, f] * G[i, f]
            dE_dr[j, a] += g
            dE_dr[i, a] -= g
            for b in range(3):
                dE_deps[s, a, b] += g * rij[p, b]
    return dE_dr, dE_deps


@njit(cache=True)
def _pair_adjoint_kernel(pair_i, pair_j, pair_struct, rij, d_drij, dr_bar, deps_bar, n_atoms):
    """Transpose of :func:`_pair_forward_kernel`: from ``dL/d(dE/dr)`` (n_atoms, 3) and
    ``dL/d(dE/deps)`` (n_struct, 3, 3) to ``dL/dG`` (n_atoms, n_features)."""
    n_pairs = pair_i.shape[0]
    n_feat = d_drij.shape[2]
    G_bar = np.zeros((n_atoms, n_feat))
    for p in range(n_pairs):
        i = pair_i[p]
        j = pair_j[p]
        s = pair_struct[p]
        for a in range(3):
            gb = dr_bar[j, a] - dr_bar[i, a]
            for b in range(3):
                gb += deps_bar[s, a, b] * rij[p, b]
            if gb != 0.0:
                for f in range(n_feat):
                    G_bar[i, f] += gb * d_drij[p, a, f]
    return G_bar


# ------------------------------------------------------------------------------------------
# parameter layout of one ensemble member: per species, per layer W (n_in, n_out) then b
# ------------------------------------------------------------------------------------------
class _Layout:
    def __init__(self, n_features, hidden, n_species):
        self.sizes = [int(n_features), *[int(h) for h in hidden], 1]
        self.n_species = int(n_species)
        per = sum(self.sizes[k] * self.sizes[k + 1] + self.sizes[k + 1]
                  for k in range(len(self.sizes) - 1))
        self.n_per_species = per
        self.n_params = per * self.n_species
        mask = np.zeros(self.n_params, dtype=bool)
        for layers in self._slices():
            for sw, _ in layers:
                mask[sw] = True
        self.weight_mask = mask

    def _slices(self):
        out = []
        off = 0
        for _ in range(self.n_species):
            layers = []
            for k in range(len(self.sizes) - 1):
                nw = self.sizes[k] * self.sizes[k + 1]
                layers.append((slice(off, off + nw), slice(off + nw, off + nw + self.sizes[k + 1])))
                off += nw + self.sizes[k + 1]
            out.append(layers)
        return out

    def views(self, theta):
        """Per species, list of ``(W, b)`` views into the flat vector ``theta``."""
        out = []
        for layers in self._slices():
            out.append([(theta[sw].reshape(self.sizes[k], self.sizes[k + 1]), theta[sb])
                        for k, (sw, sb) in enumerate(layers)])
        return out

    def init(self, rng):
        """Glorot-uniform weights, zero biases."""
        theta = np.zeros(self.n_params)
        for layers in self.views(theta):
            for k, (W, _) in enumerate(layers):
                lim = np.sqrt(6.0 / (self.sizes[k] + self.sizes[k + 1]))
                W[...] = rng.uniform(-lim, lim, W.shape)
        return theta


def _forward(layers, xs, act, order):
    """Primal forward pass; returns output (n,) and the cache (h_l, phi'_l, phi''_l)."""
    hs = [xs]
    d1s = []
    d2s = []
    h = xs
    for W, b in layers[:-1]:
        h, d1, d2 = activation(act, h @ W + b, order)
        hs.append(h)
        d1s.append(d1)
        d2s.append(d2)
    Wo, bo = layers[-1]
    return h @ Wo[:, 0] + bo[0], (hs, d1s, d2s)


def _input_gradient(layers, cache):
    """``d o / d x~`` (n, n_features) by reverse mode from the forward cache."""
    hs, d1s, _ = cache
    delta = np.broadcast_to(layers[-1][0][:, 0], hs[-1].shape)
    for k in range(len(layers) - 2, -1, -1):
        delta = (delta * d1s[k]) @ layers[k][0].T
    return np.array(delta)


def _param_gradient(layers, grads, cache, c, v):
    """Gradient w.r.t. the weights of ``J = sum_i c_i o_i + sum_i v_i . do/dx~_i``.

    ``grads`` are the ``(dW, db)`` views to accumulate into; ``v`` may be None (no derivative
    term).  Reverse-over-forward: tangent forward along ``v``, then one reverse pass through
    the primal and tangent computations.
    """
    hs, d1s, d2s = cache
    L = len(layers) - 1
    if v is not None:
        hdots = [v]
        adots = []
        hd = v
        for k in range(L):
            ad = hd @ layers[k][0]
            hd = d1s[k] * ad
            adots.append(ad)
            hdots.append(hd)
    Wo = layers[-1][0][:, 0]
    dWo, dbo = grads[-1]
    dWo[:, 0] += hs[L].T @ c
    dbo[0] += c.sum()
    hbar = np.outer(c, Wo)
    if v is not None:
        dWo[:, 0] += hdots[L].sum(axis=0)
        hdbar = np.broadcast_to(Wo, hs[L].shape)
    for k in range(L - 1, -1, -1):
        W = layers[k][0]
        dW, db = grads[k]
        abar = hbar * d1s[k]
        if v is not None:
            abar = abar + hdbar * d2s[k] * adots[k]
            adbar = hdbar * d1s[k]
            dW += hdots[k].T @ adbar
        dW += hs[k].T @ abar
        db += abar.sum(axis=0)
        if k > 0:
            hbar = abar @ W.T
            if v is not None:
                hdbar = adbar @ W.T


# ------------------------------------------------------------------------------------------
# training data: per-structure access to the batches, and concatenated chunks
# ------------------------------------------------------------------------------------------
class _Chunk:
    """Concatenated, standardised training data of a set of structures (see ``_Data.gather``)."""


class _Data:
    """Index of the training structures held in a list of batches.

    Keeps references to the batches (no copy) plus, per batch, the atoms and pairs of each
    structure, the label masks and (with ``max_force_rows``) the subsampled force components
    and the pairs they need.
    """

    def __init__(self, batches, n_species, n_features, max_force_rows, rng):
        self.batches = []
        self.n_species = n_species
        self.n_features = n_features
        self.info = []
        self.items = []  # (batch, structure) of structures with at least one label
        self.index = {}  # (batch, structure) -> StructureBatch.index (or running position)
        pos = 0
        for b, batch in enumerate(batches):
            info = self._index(batch, max_force_rows, rng)
            if info.pop("pair_keep") is not None:
                batch = self._prune(batch, info)
            self.batches.append(batch)
            self.info.append(info)
            self.items.extend((b, int(s)) for s in np.flatnonzero(info["any"]))
            ids = (np.asarray(batch.index, dtype=np.int64) if batch.index is not None
                   and len(batch.index) == batch.n_structures
                   else pos + np.arange(batch.n_structures))
            self.index.update(((b, s), int(ids[s])) for s in range(batch.n_structures))
            pos += batch.n_structures

    @staticmethod
    def _prune(batch, info):
        """A copy of ``batch`` keeping only the Jacobian pairs some label needs (so a batch
        produced on the fly by a BatchSource is held in memory without the dropped pairs)."""
        keep = np.sort(info["p_order"])
        gr = batch.gradients
        remap = np.full(gr.pair_i.shape[0], -1, dtype=np.int64)
        remap[keep] = np.arange(keep.size)
        info["p_order"] = remap[info["p_order"]]
        pruned = DescriptorGradients(gr.pair_i[keep], gr.pair_j[keep], gr.rij[keep],
                                     gr.d_drij[keep], gr.n_atoms)
        return dataclasses.replace(batch, gradients=pruned)

    def _index(self, batch, max_force_rows, rng):
        n, S = batch.n_atoms, batch.n_structures
        st = np.asarray(batch.structure, dtype=np.int64)
        order = np.argsort(st, kind="stable")
        counts = np.bincount(st, minlength=S)
        a_off = np.concatenate([[0], np.cumsum(counts)])
        local = np.empty(n, dtype=np.int64)
        local[order] = np.arange(n) - a_off[st[order]]
        w = {k: (np.asarray(batch.weights[k], dtype=np.float64) if batch.weights.get(k)
                 is not None else np.ones(S)) for k in ("energy", "forces", "stress")}
        has = {k: batch.has(k) for k in ("energy", "forces", "stress")}
        if (has["forces"].any() or has["stress"].any()) and batch.gradients is None:
            raise MissingLabelsError(
                "A StructureBatch passed to NeuralNetworkRegressor.fit has force or stress "
                "labels but no descriptor gradients ('gradients' is None); compute the "
                "descriptors with gradients=True or drop those labels.")
        fmask = np.zeros((n, 3))
        fscale = np.ones(S)
        pair_keep = p_order = p_off = None
        if batch.gradients is not None:
            gr = batch.gradients
            ps = st[gr.pair_i]
            need_all = has["stress"].copy()
            atom_need = np.zeros(n, dtype=bool)
            for s in np.flatnonzero(has["forces"]):
                atoms_s = order[a_off[s]:a_off[s + 1]]
                n_rows = 3 * atoms_s.size
                if max_force_rows is None or max_force_rows >= n_rows:
                    fmask[atoms_s] = 1.0
                    atom_need[atoms_s] = True
                else:
                    rows = rng.choice(n_rows, size=max_force_rows, replace=False)
                    sub = np.zeros(n_rows)
                    sub[rows] = 1.0
                    fmask[atoms_s] = sub.reshape(-1, 3)
                    atom_need[atoms_s[np.unique(rows // 3)]] = True
                    fscale[s] = n_rows / max_force_rows
            pair_keep = need_all[ps] | atom_need[gr.pair_i] | atom_need[gr.pair_j]
            p_order = np.flatnonzero(pair_keep)
            p_order = p_order[np.argsort(ps[p_order], kind="stable")]
            p_off = np.concatenate([[0], np.cumsum(np.bincount(ps[p_order], minlength=S))])
            if pair_keep.all():
                pair_keep = None
        return {"pair_keep": pair_keep, "order": order, "a_off": a_off, "local": local, "w": w,
                "has": has, "fmask": fmask, "fscale": fscale, "p_order": p_order, "p_off": p_off,
                "any": has["energy"] | has["forces"] | has["stress"]}

    def gather(self, items, mult, x_mean, x_scale):
        """Concatenate structures ``items`` (list of (batch, structure)) with weight
        multipliers ``mult`` into a :class:`_Chunk` with standardised inputs."""
        X, sp, ast, e_y, e_w, f_y, f_w, s_y, s_w, vol = ([] for _ in range(10))
        pi, pj, pst, rij, dd = ([] for _ in range(5))
        n_at = 0
        for k, ((b, s), m) in enumerate(zip(items, mult)):
            batch, info = self.batches[b], self.info[b]
            atoms = info["order"][info["a_off"][s]:info["a_off"][s + 1]]
            has, w = info["has"], info["w"]
            X.append(batch.X[atoms])
            sp.append(batch.species[atoms])
            ast.append(np.full(atoms.size, k, dtype=np.int64))
            e_y.append(batch.energy[s] if has["energy"][s] else 0.0)
            e_w.append(m * w["energy"][s] if has["energy"][s] else 0.0)
            if has["forces"][s]:
                f_y.append(batch.forces[atoms])
                f_w.append(info["fmask"][atoms] * (m * w["forces"][s] * info["fscale"][s]))
            else:
                f_y.append(np.zeros((atoms.size, 3)))
                f_w.append(np.zeros((atoms.size, 3)))
            if has["stress"][s]:
                s_y.append(batch.stress[s])
                s_w.append(m * w["stress"][s])
                vol.append(batch.volume[s])
            else:
                s_y.append(np.zeros(6))
                s_w.append(0.0)
                vol.append(1.0)
            if info["p_order"] is not None:
                pairs = info["p_order"][info["p_off"][s]:info["p_off"][s + 1]]
                if pairs.size:
                    gr = batch.gradients
                    pi.append(n_at + info["local"][gr.pair_i[pairs]])
                    pj.append(n_at + info["local"][gr.pair_j[pairs]])
                    pst.append(np.full(pairs.size, k, dtype=np.int64))
                    rij.append(gr.rij[pairs])
                    dd.append(gr.d_drij[pairs])
            n_at += atoms.size
        ch = _Chunk()
        ch.n_atoms = n_at
        ch.n_struct = len(items)
        X = np.concatenate(X)
        species = np.concatenate(sp)
        ch.atom_struct = np.concatenate(ast)
        ch.n_per = np.bincount(ch.atom_struct, minlength=ch.n_struct).astype(np.float64)
        ch.idx, ch.xs = _split_species(X, species, self.n_species, x_mean, x_scale)
        ch.e_y, ch.e_w = np.array(e_y, dtype=np.float64), np.array(e_w, dtype=np.float64)
        ch.f_y, ch.f_w = np.concatenate(f_y), np.concatenate(f_w)
        ch.s_y, ch.s_w, ch.vol = np.array(s_y), np.array(s_w), np.array(vol)
        ch.has_forces = bool(ch.f_w.any())
        ch.has_stress = bool(ch.s_w.any())
        if pi:
            ch.pair_i, ch.pair_j = np.concatenate(pi), np.concatenate(pj)
            ch.pair_struct = np.concatenate(pst)
            ch.rij = np.ascontiguousarray(np.concatenate(rij))
            ch.d_drij = np.ascontiguousarray(np.concatenate(dd))
        else:
            ch.pair_i = None
        ch.need_G = ch.pair_i is not None and (ch.has_forces or ch.has_stress)
        return ch


def _split_species(X, species, n_species, x_mean, x_scale):
    idx, xs = {}, {}
    for z in range(n_species):
        ii = np.flatnonzero(species == z)
        if ii.size:
            idx[z] = ii
            xs[z] = (X[ii] - x_mean[z]) / x_scale[z]
    return idx, xs


def _chunk_loss(theta, layout, act, chunk, out_scale, shift, x_scale, need_grad):
    """Sum over the chunk of ``weight * residual**2`` and (optionally) its gradient."""
    layers = layout.views(theta)
    n = chunk.n_atoms
    eps = np.empty(n)
    G = np.zeros((n, layout.sizes[0])) if chunk.need_G else None
    caches = {}
    order = 2 if (need_grad and chunk.need_G) else 1
    for z, xs in chunk.xs.items():
        o, cache = _forward(layers[z], xs, act, order)
        caches[z] = cache
        eps[chunk.idx[z]] = out_scale * o + shift[z]
        if G is not None:
            G[chunk.idx[z]] = (out_scale / x_scale[z]) * _input_gradient(layers[z], cache)
    E = np.bincount(chunk.atom_struct, weights=eps, minlength=chunk.n_struct)
    r_e = (E - chunk.e_y) / chunk.n_per
    loss = float(np.sum(chunk.e_w * r_e ** 2))
    dr_bar = deps_bar = None
    if G is not None:
        dE_dr, dE_deps = _pair_forward_kernel(chunk.pair_i, chunk.pair_j, chunk.pair_struct,
                                              chunk.rij, chunk.d_drij, G, n, chunk.n_struct)
        r_f = -dE_dr - chunk.f_y
        loss += float(np.sum(chunk.f_w * r_f ** 2))
        dr_bar = -2.0 * chunk.f_w * r_f
        deps_bar = np.zeros((chunk.n_struct, 3, 3))
        if chunk.has_stress:
            sig = dE_deps[:, _VOIGT_A, _VOIGT_B] / chunk.vol[:, None]
            r_s = sig - chunk.s_y
            loss += float(np.sum(chunk.s_w[:, None] * r_s ** 2))
            deps_bar[:, _VOIGT_A, _VOIGT_B] = 2.0 * chunk.s_w[:, None] * r_s / chunk.vol[:, None]
    if not need_grad:
        return loss, None
    grad = np.zeros(layout.n_params)
    grads = layout.views(grad)
    eps_bar = (2.0 * chunk.e_w * r_e / chunk.n_per)[chunk.atom_struct]
    G_bar = None
    if G is not None:
        G_bar = _pair_adjoint_kernel(chunk.pair_i, chunk.pair_j, chunk.pair_struct, chunk.rij,
                                     chunk.d_drij, dr_bar, deps_bar, n)
    for z in chunk.xs:
        ii = chunk.idx[z]
        v = None if G_bar is None else G_bar[ii] * (out_scale / x_scale[z])
        _param_gradient(layers[z], grads[z], caches[z], out_scale * eps_bar[ii], v)
    return loss, grad


class _EarlyStop(Exception):
    pass


def _check_bool(value, name):
    if not isinstance(value, (bool, np.bool_)):
        raise InvalidParameterError(
            f"The '{name}' parameter of {_OWNER} must be a bool. Got {value!r} instead.")
    return bool(value)


# ------------------------------------------------------------------------------------------
@register_regressor
class NeuralNetworkRegressor(Regressor):
    r"""Behler-Parrinello neural network: one small MLP per element, trained on energies,
    forces and stresses, with an ensemble ("committee") for uncertainty.

    Model (per ensemble member ``m``; ``z = Z_i`` the element of atom ``i``)::

        eps_i   = c * MLP_z((X_i - mu_z) / s_z; w_m) + e_z                       (eV)
        E       = sum_i eps_i                                                    (eV)
        F_k     = -dE/dr_k = -sum_p g_p [j_p = k] + sum_p g_p [i_p = k],
                  g_p = d_drij[p]^T dE/dX_{i_p}                                  (eV/Å)
        sigma   = (1/V) sum_p g_p (x) r_ij,p   (ASE stress, Voigt xx yy zz yz xz xy; eV/Å³)

    ``MLP_z`` has ``hidden_layer_sizes`` hidden layers with a smooth ``activation`` and a linear
    scalar output; ``mu_z``, ``s_z`` are the per-element mean and standard deviation of the
    training descriptors (``s_z`` at least 1 % of the element's largest feature standard
    deviation, so a feature that barely varies in training is not amplified into huge inputs
    where it does vary), ``e_z`` the least-squares per-element energy of the training energies
    on the composition and ``c`` a fixed output scale (RMS of the remaining per-atom energy,
    else of the force labels); all four are stored.  Prediction returns the ensemble mean.

    Training minimises, for each member independently,

    ``L(w) = (1/N) sum_rows weight * residual**2 + alpha * sum(W**2)``

    with the rows and weights of :mod:`hybridpot.regression._base` (energy rows per atom, force
    rows per component, stress rows in Voigt), ``N`` the number of training structures and the
    L2 penalty on the weight matrices (not biases).  Its exact gradient, which for force and
    stress rows needs the derivative of ``dE/dX`` with respect to the weights, is computed by
    hand (reverse over forward mode, see the module docstring).

    Parameters
    ----------
    hidden_layer_sizes : sequence of int, default=(32, 32)
        Widths of the hidden layers of each element's network.
    activation : {"tanh", "softplus", "silu"}, default="tanh"
        Hidden-layer nonlinearity (all infinitely differentiable: forces are exact gradients
        and MD conserves energy).
    solver : {"lbfgs", "adam"}, default="lbfgs"
        ``"lbfgs"``: scipy L-BFGS-B on the full training set (best for small and medium data);
        ``"adam"``: Adam on mini-batches of ``batch_size`` structures.
    alpha : float, default=1e-6
        L2 penalty on the weights, >= 0.
    learning_rate : float, default=1e-3
        Adam step size (ignored by L-BFGS), > 0.
    batch_size : int, default=8
        Structures per Adam mini-batch.
    max_iter : int, default=500
        L-BFGS iterations, or Adam epochs.
    tol : float, default=1e-9
        L-BFGS: relative loss decrease (``ftol``) and projected-gradient (``gtol``) tolerance.
        Adam, and early stopping with either solver: a loss that does not drop by more than
        ``tol`` for ``n_iter_no_change`` epochs/iterations ends training.
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the structures (a different random split per
        member), monitor their loss and keep the weights with the lowest validation loss.
    validation_fraction : float, default=0.1
        Fraction of structures held out when ``early_stopping`` (rounded; at least one, and
        at least one is left for training).
    n_iter_no_change : int, default=20
        Patience (epochs or L-BFGS iterations) of the stopping rules above.
    n_models : int, default=1
        Ensemble size.  Members differ by initial weights (and validation split, and bootstrap
        sample).  ``predict_batch(return_std=True)`` needs ``n_models >= 2``.
    bootstrap : bool, default=False
        Train each member on a bootstrap resample (with replacement) of the training structures.
    max_force_rows : int or None, default=None
        Use at most this many force components per structure (a fixed random subset drawn once
        from ``random_state``; the weight of the kept rows is scaled by ``3 N_atoms / kept`` so
        the loss stays an unbiased estimate).  Pairs of the Jacobian that no kept force row
        needs (and no stress label) are not used.
    random_state : int, numpy Generator/RandomState or None, default=None
        Seeds the initial weights, splits, bootstrap samples, mini-batch order and force-row
        subsampling.  An int gives reproducible fits.

    Attributes
    ----------
    params_ : ndarray, shape (n_models, n_params)
        Flat weights of each member (per element, per layer ``W`` (n_in, n_out) then ``b``).
    x_mean_, x_scale_ : ndarray, shape (n_species, n_features)
        Input standardisation.
    energy_shift_ : ndarray, shape (n_species,)
        Per-element energy ``e_z`` (eV).
    energy_scale_ : float
        Output scale ``c`` (eV).
    species_trained_ : ndarray of bool, shape (n_species,)
        Elements that occur in the training data (others cannot be predicted).
    species_names_ : tuple of str or None
        Element symbols in species-index order (from the training
        :class:`~hybridpot.regression.BatchSource`; None when it named none); used in messages.
    n_features_in_, n_species_ : int
    hidden_layer_sizes_ : tuple of int
        Validated hidden-layer widths used by the fitted networks.
    loss_curve_ : list of list of float
        Training loss per iteration/epoch, per member.
    validation_scores_ : list of list of float or None
        Validation loss (data term only, no L2 penalty) per iteration/epoch, per member
        (``early_stopping`` only); the returned weights are those of the lowest score.
    validation_index_ : list of list of int or None
        Per member, the held-out structures (their ``StructureBatch.index``, else their
        position in the order the batches were given); ``early_stopping`` only.
    n_iter_ : list of int
        Iterations (L-BFGS) or epochs (Adam) run, per member.

    Notes
    -----
    Uncertainty: the ensemble standard deviation (``ddof=1``) of the energy, forces and
    stress is a *committee* estimate of the epistemic (model) uncertainty, as in ANI ensembles
    (Smith et al., J. Chem. Phys. 148, 241733 (2018)).  It grows away from the training data
    but is not calibrated and contains no label noise; rescale it on held-out data if
    calibrated errors are needed.

    Memory: ``fit`` iterates the batches once and keeps them (with their Jacobians) in memory;
    L-BFGS adds one concatenated copy of the training structures' Jacobians, so the peak is
    about ``2 * 24 * n_pairs * n_features`` bytes (e.g. 1000 structures of 100 atoms with 50
    neighbours and 50 features: 12 GB).  Adam copies only one mini-batch at a time.  For large
    data use ``max_force_rows``: each batch is pruned as it arrives to the Jacobian pairs the
    kept force rows (and stress labels) need, i.e. the pairs touching at most
    ``max_force_rows`` atoms per structure.
    """

    _TUPLE_PARAMS = ("hidden_layer_sizes",)

    def __init__(self, *, hidden_layer_sizes=(32, 32), activation="tanh", solver="lbfgs",
                 alpha=1e-6, learning_rate=1e-3, batch_size=8, max_iter=500, tol=1e-9,
                 early_stopping=False, validation_fraction=0.1, n_iter_no_change=20,
                 n_models=1, bootstrap=False, max_force_rows=None, random_state=None):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.max_iter = max_iter
        self.tol = tol
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.n_models = n_models
        self.bootstrap = bootstrap
        self.max_force_rows = max_force_rows
        self.random_state = random_state

    #: predict_batch reduces a ChunkedGradients chunk by chunk (HybridPotential passes one for
    #: the committee σ of a big cell instead of the whole per-pair Jacobian)
    _chunked_gradients = True

    @property
    def has_uncertainty(self):
        """True when ``n_models >= 2`` (the committee spread is the uncertainty)."""
        return isinstance(self.n_models, numbers.Integral) and self.n_models >= 2

    # -- validation ---------------------------------------------------------------------------
    def _validate_params(self):
        h = self.hidden_layer_sizes
        if isinstance(h, numbers.Integral) and not isinstance(h, bool):
            h = (h,)
        msg = (f"The 'hidden_layer_sizes' parameter of {_OWNER} must be a non-empty sequence "
               f"of positive ints such as (32, 32). Got {self.hidden_layer_sizes!r} instead.")
        try:
            h = tuple(h)
        except TypeError:
            raise InvalidParameterError(msg) from None
        if not h or not all(isinstance(k, numbers.Integral) and not isinstance(k, bool)
                            and k >= 1 for k in h):
            raise InvalidParameterError(msg)
        self._hidden = tuple(int(k) for k in h)
        check_choice(self.activation, "activation", ACTIVATIONS, _OWNER)
        check_choice(self.solver, "solver", SOLVERS, _OWNER)
        check_float(self.alpha, "alpha", _OWNER, low=0.0, low_inclusive=True)
        check_float(self.learning_rate, "learning_rate", _OWNER, low=0.0)
        check_int(self.batch_size, "batch_size", _OWNER, low=1)
        check_int(self.max_iter, "max_iter", _OWNER, low=1)
        check_float(self.tol, "tol", _OWNER, low=0.0, low_inclusive=True)
        _check_bool(self.early_stopping, "early_stopping")
        check_float(self.validation_fraction, "validation_fraction", _OWNER, low=0.0, high=1.0)
        check_int(self.n_iter_no_change, "n_iter_no_change", _OWNER, low=1)
        check_int(self.n_models, "n_models", _OWNER, low=1)
        _check_bool(self.bootstrap, "bootstrap")
        check_int(self.max_force_rows, "max_force_rows", _OWNER, low=1, allow_none=True)
        check_random_state_param(self.random_state, _OWNER)

    def _seed_sequence(self):
        rs = self.random_state
        if rs is None:
            return np.random.SeedSequence()
        if isinstance(rs, np.random.Generator):
            return np.random.SeedSequence(int(rs.integers(2 ** 63)))
        if isinstance(rs, np.random.RandomState):
            return np.random.SeedSequence(int(rs.randint(2 ** 31)))
        return np.random.SeedSequence(int(rs))

    def _checked(self, src):
        """Iterate ``src`` once, validating each batch."""
        F, S = src.n_features, src.n_species
        n = 0
        for b in src:
            if not isinstance(b, StructureBatch):
                raise InvalidParameterError(
                    f"The 'batches' argument of {_OWNER}.fit must yield StructureBatch "
                    f"objects. Got {type(b).__name__} instead.")
            self._check_X(b.X, F, "of a training batch")
            self._check_species(b.species, b.n_atoms, S, "of a training batch")
            n += 1
            yield b
        if n == 0:
            raise InvalidParameterError(
                f"The 'batches' argument of {_OWNER}.fit yielded no StructureBatch.")

    def _check_X(self, X, n_features, where):
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != n_features:
            raise InvalidParameterError(
                f"The descriptors 'X' {where} must have shape (n_atoms, {n_features}). "
                f"Got {X.shape} instead.")
        if not np.all(np.isfinite(X)):
            raise InvalidParameterError(f"The descriptors 'X' {where} must be finite.")
        return X

    def _check_species(self, species, n_atoms, n_species, where):
        sp = np.asarray(species)
        if sp.shape != (n_atoms,) or (n_atoms and not np.issubdtype(sp.dtype, np.integer)):
            raise InvalidParameterError(
                f"The 'species' indices {where} must be an int array of shape ({n_atoms},). "
                f"Got dtype {sp.dtype} and shape {sp.shape} instead.")
        sp = sp.astype(np.int64)
        if n_atoms and (sp.min() < 0 or sp.max() >= n_species):
            raise UnknownSpeciesError(
                f"The 'species' indices {where} must lie in [0, {n_species - 1}]. "
                f"Got values in [{sp.min()}, {sp.max()}] instead.")
        return sp

    # -- fitting ------------------------------------------------------------------------------
    def fit(self, batches, y=None):
        """Fit the ensemble to the residual labels of ``batches``.

        Parameters
        ----------
        batches : BatchSource or list of StructureBatch
            Training data (iterated once and kept in memory, see Notes of the class).
        y : None
            Ignored (labels are in the batches).

        Returns
        -------
        self

        Raises
        ------
        hybridpot.InvalidParameterError
            For invalid hyperparameters or batches.
        hybridpot.MissingLabelsError
            When no structure has a usable label (finite, positive weight).
        """
        self._validate_params()
        if hasattr(self, "params_"):  # a failed refit must not leave a half-updated model
            del self.params_
        src = BatchSource.wrap(batches)
        F, S = src.n_features, src.n_species
        ss = self._seed_sequence()
        ss_data, *ss_members = ss.spawn(1 + self.n_models)
        data = _Data(self._checked(src), S, F, self.max_force_rows,
                     np.random.default_rng(ss_data))
        blist = data.batches
        if not data.items:
            raise MissingLabelsError(
                f"{_OWNER}.fit got no structure with a usable label (finite energy, forces or "
                "stress with a positive weight).")
        self._fit_scaling(blist, data, S, F)
        self.n_features_in_, self.n_species_ = F, S
        self.species_names_ = (tuple(str(x) for x in src.species)
                               if src.species is not None and len(src.species) == S else None)
        self.hidden_layer_sizes_ = self._hidden
        layout = _Layout(F, self._hidden, S)
        params, curves, vals, iters, val_index = [], [], [], [], []
        # the matrices are small: threaded BLAS only adds synchronisation cost (x10 measured
        # on 2 busy cores, mostly inside scipy's L-BFGS-B), so use one BLAS thread while fitting
        with threadpool_limits(limits=1, user_api="blas"):
            for m in range(self.n_models):
                rng = np.random.default_rng(ss_members[m])
                theta, curve, val, nit, held_out = self._fit_member(data, layout, rng)
                val_index.append(held_out)
                params.append(theta)
                curves.append(curve)
                vals.append(val)
                iters.append(nit)
        self.params_ = np.array(params)
        self.loss_curve_ = curves
        self.validation_scores_ = vals if self.early_stopping else None
        self.validation_index_ = val_index if self.early_stopping else None
        self.n_iter_ = iters
        return self

    def _fit_scaling(self, blist, data, S, F):
        X = np.concatenate([b.X for b in blist])
        sp = np.concatenate([b.species for b in blist]).astype(np.int64)
        mean = np.zeros((S, F))
        scale = np.ones((S, F))
        trained = np.zeros(S, dtype=bool)
        for z in range(S):
            xz = X[sp == z]
            if xz.shape[0]:
                trained[z] = True
                mean[z] = xz.mean(axis=0)
                # at least _MIN_RELATIVE_SCALE of the element's largest spread: a feature that
                # barely varies in training (an ANI radial shell inside the shortest training
                # distance) was blown up to unit variance, and a structure that lit it up fed
                # the networks inputs of 1e6 and more (force spikes of tens of eV/Å in a dimer
                # scan); features constant to round-off keep the scale 1
                sd = xz.std(axis=0)
                sd = np.maximum(sd, _MIN_RELATIVE_SCALE * float(sd.max()))
                scale[z] = np.where(sd > 1e-8 * (1.0 + np.abs(mean[z])), sd, 1.0)
        # per-element energy shift: least squares of E_s on the composition
        comp, e = [], []
        f2, nf = 0.0, 0
        for b, info in zip(blist, data.info):
            cnt = np.zeros((b.n_structures, S))
            np.add.at(cnt, (b.structure, b.species), 1.0)
            m = info["has"]["energy"]
            comp.append(cnt[m])
            e.append(b.energy[m])
            fm = info["has"]["forces"][b.structure]
            f2 += float(np.sum(b.forces[fm] ** 2))
            nf += 3 * int(fm.sum())
        comp, e = np.concatenate(comp), np.concatenate(e)
        shift = np.zeros(S)
        c = 0.0
        if e.size:
            sol = np.linalg.lstsq(comp, e, rcond=None)[0]
            shift = np.where(trained, sol, 0.0)
            per_atom = (e - comp @ shift) / comp.sum(axis=1)
            c = float(np.sqrt(np.mean(per_atom ** 2)))
        if not c > 1e-6 and nf:
            c = float(np.sqrt(f2 / nf))
        if not c > 1e-6:
            c = 1.0
        self.x_mean_, self.x_scale_ = mean, scale
        self.energy_shift_, self.energy_scale_ = shift, c
        self.species_trained_ = trained

    def _chunks(self, data, items, mult):
        out, cur, curm, n = [], [], [], 0
        for it, m in zip(items, mult):
            na = data.info[it[0]]["a_off"][it[1] + 1] - data.info[it[0]]["a_off"][it[1]]
            if cur and n + na > _CHUNK_ATOMS:
                out.append(data.gather(cur, curm, self.x_mean_, self.x_scale_))
                cur, curm, n = [], [], 0
            cur.append(it)
            curm.append(m)
            n += na
        if cur:
            out.append(data.gather(cur, curm, self.x_mean_, self.x_scale_))
        return out

    def _total_loss(self, theta, layout, chunks, norm, need_grad, penalty=True):
        """``sum(weight * residual**2) / norm`` over ``chunks`` (+ the L2 penalty)."""
        loss, grad = 0.0, (np.zeros(layout.n_params) if need_grad else None)
        for ch in chunks:
            lo, g = _chunk_loss(theta, layout, self.activation, ch, self.energy_scale_,
                                self.energy_shift_, self.x_scale_, need_grad)
            loss += lo
            if need_grad:
                grad += g
        loss /= norm
        if need_grad:
            grad /= norm
        if penalty:
            wm = layout.weight_mask
            loss += self.alpha * float(np.sum(theta[wm] ** 2))
            if need_grad:
                grad[wm] += 2.0 * self.alpha * theta[wm]
        return loss, grad

    def _fit_member(self, data, layout, rng):
        items = list(data.items)
        n = len(items)
        perm = rng.permutation(n)
        val_items = []
        if self.early_stopping:
            if n < 2:
                raise InvalidParameterError(
                    f"The 'early_stopping' parameter of {_OWNER} needs at least 2 labelled "
                    f"structures (one to train on, one to validate); the training data has "
                    f"{n}. Got early_stopping=True instead.")
            # at least one structure on each side (validation_fraction=0.9 of 5 structures
            # was an error although 4 + 1 is a valid split)
            n_val = min(max(1, int(round(self.validation_fraction * n))), n - 1)
            val_items = [items[k] for k in perm[:n_val]]
            train_items = [items[k] for k in np.sort(perm[n_val:])]
        else:
            train_items = items
        n_train = len(train_items)
        if self.bootstrap:
            counts = rng.multinomial(n_train, np.full(n_train, 1.0 / n_train))
        else:
            counts = np.ones(n_train, dtype=np.int64)
        theta0 = layout.init(rng)
        val_chunks = self._chunks(data, val_items, [1.0] * len(val_items)) if val_items else []
        held_out = sorted(data.index[it] for it in val_items)
        if self.solver == "lbfgs":
            out = self._fit_lbfgs(data, layout, train_items, counts, val_chunks, theta0,
                                  len(val_items))
        else:
            out = self._fit_adam(data, layout, train_items, counts, val_chunks, theta0,
                                 len(val_items), rng)
        return (*out, held_out)

    def _fit_lbfgs(self, data, layout, train_items, counts, val_chunks, theta0, n_val):
        keep = counts > 0
        items = [it for it, k in zip(train_items, keep) if k]
        chunks = self._chunks(data, items, counts[keep].astype(np.float64))
        norm = float(counts.sum())
        curve, vals = [], []
        state = {"best": np.inf, "theta": theta0.copy(), "bad": 0, "last": None}

        def fun(theta):
            lo, g = self._total_loss(theta, layout, chunks, norm, True)
            state["last"] = lo
            return lo, g

        def callback(xk, *args):
            curve.append(state["last"])
            if val_chunks:
                v = self._total_loss(xk, layout, val_chunks, n_val, False, penalty=False)[0]
                vals.append(v)
                if v < state["best"] - self.tol:
                    state["best"], state["theta"], state["bad"] = v, xk.copy(), 0
                else:
                    if v < state["best"]:
                        state["best"], state["theta"] = v, xk.copy()
                    state["bad"] += 1
                    if state["bad"] >= self.n_iter_no_change:
                        raise _EarlyStop

        try:
            res = minimize(fun, theta0, jac=True, method="L-BFGS-B", callback=callback,
                           options={"maxiter": self.max_iter, "ftol": self.tol,
                                    "gtol": self.tol, "maxcor": 20})
        except _EarlyStop:
            return state["theta"], curve, vals, len(curve)
        if val_chunks:
            theta = state["theta"] if vals else res.x
        else:
            theta = res.x
        if res.status == 1:
            warnings.warn(
                f"{_OWNER}: L-BFGS stopped after max_iter={self.max_iter} iterations without "
                "converging; increase 'max_iter'.", ConvergenceWarning, stacklevel=4)
        return theta, curve, vals, int(res.nit)

    def _fit_adam(self, data, layout, train_items, counts, val_chunks, theta0, n_val, rng):
        pool = np.repeat(np.arange(len(train_items)), counts)
        theta = theta0.copy()
        mom = np.zeros_like(theta)
        vel = np.zeros_like(theta)
        b1, b2, eps = 0.9, 0.999, 1e-8
        t = 0
        curve, vals = [], []
        best, best_theta, bad = np.inf, theta.copy(), 0
        lr = self.learning_rate
        B = self.batch_size
        epoch = 0
        stopped = False
        for epoch in range(1, self.max_iter + 1):
            order = rng.permutation(pool)
            tot = 0.0
            for start in range(0, order.size, B):
                sel = order[start:start + B]
                ch = data.gather([train_items[k] for k in sel], [1.0] * sel.size,
                                 self.x_mean_, self.x_scale_)
                lo, g = self._total_loss(theta, layout, [ch], float(sel.size), True)
                tot += lo * sel.size
                t += 1
                mom = b1 * mom + (1.0 - b1) * g
                vel = b2 * vel + (1.0 - b2) * g * g
                step = lr * np.sqrt(1.0 - b2 ** t) / (1.0 - b1 ** t)
                theta = theta - step * mom / (np.sqrt(vel) + eps)
            curve.append(tot / order.size)
            score = curve[-1]
            if val_chunks:
                score = self._total_loss(theta, layout, val_chunks, n_val, False,
                                         penalty=False)[0]
                vals.append(score)
            if score < best - self.tol:
                best, best_theta, bad = score, theta.copy(), 0
            else:
                if score < best:
                    best, best_theta = score, theta.copy()
                bad += 1
                if bad >= self.n_iter_no_change:
                    stopped = True
                    break
        if not stopped:
            warnings.warn(
                f"{_OWNER}: Adam ran max_iter={self.max_iter} epochs without meeting the "
                "stopping rule; increase 'max_iter'.", ConvergenceWarning, stacklevel=4)
        return (best_theta if val_chunks else theta), curve, vals, epoch

    # -- prediction ---------------------------------------------------------------------------
    def _check_fitted(self):
        if not hasattr(self, "params_"):
            raise NotFittedError(
                f"This {_OWNER} instance is not fitted yet. Call 'fit' with training batches "
                "(or set_fitted_state) before using it.")

    def _untrained_message(self, bad):
        """Message for atoms of elements (indices ``bad``) without a trained network."""
        ok = np.flatnonzero(self.species_trained_)
        names = getattr(self, "species_names_", None)
        if names is not None:
            what = ", ".join(f"{names[i]} (species index {i})" for i in bad)
            can = [names[i] for i in ok]
            fix = f"fit on structures that contain {', '.join(names[i] for i in bad)}"
        else:
            what = f"species indices {bad.tolist()}"
            can = ok.tolist()
            fix = "fit on structures that contain every element of the descriptor"
        return (f"The structure contains {what}, which had no atom in the training data of "
                f"this {_OWNER}: that network was never trained, so only {can} can be "
                f"predicted; {fix}.")

    def _members(self, X, species, need_G):
        """Per member ``eps`` (n_models, n) and, if asked, ``G`` (n_models, n, F)."""
        self._check_fitted()
        F, S = self.n_features_in_, self.n_species_
        X = self._check_X(X, F, "passed for prediction")
        sp = self._check_species(species, X.shape[0], S, "passed for prediction")
        present = np.unique(sp)
        bad = present[~self.species_trained_[present]]
        if bad.size:
            raise UnknownSpeciesError(self._untrained_message(bad))
        layout = _Layout(F, self.hidden_layer_sizes_, S)
        idx, xs = _split_species(X, sp, S, self.x_mean_, self.x_scale_)
        n_m = self.params_.shape[0]
        eps = np.empty((n_m, X.shape[0]))
        G = np.empty((n_m, X.shape[0], F)) if need_G else None
        for m in range(n_m):
            layers = layout.views(self.params_[m])
            for z, x in xs.items():
                o, cache = _forward(layers[z], x, self.activation, 0)
                eps[m, idx[z]] = self.energy_scale_ * o + self.energy_shift_[z]
                if need_G:
                    G[m, idx[z]] = (self.energy_scale_ / self.x_scale_[z]) * \
                        _input_gradient(layers[z], cache)
        return eps, G

    def atomic_energy(self, X, species):
        """Per-atom ML energies (ensemble mean).

        Parameters
        ----------
        X : array_like, shape (n_atoms, n_features)
            Descriptors.
        species : array_like of int, shape (n_atoms,)
            Element indices.

        Returns
        -------
        eps : ndarray, shape (n_atoms,)
            Atomic energies in eV.
        """
        return self._members(X, species, False)[0].mean(axis=0)

    def atomic_energy_gradient(self, X, species):
        """Per-atom energies and ``dE/dX`` (ensemble means), the input of ``Descriptor.backward``.

        Parameters
        ----------
        X : array_like, shape (n_atoms, n_features)
        species : array_like of int, shape (n_atoms,)

        Returns
        -------
        eps : ndarray, shape (n_atoms,)
            Atomic energies (eV).
        dE_dX : ndarray, shape (n_atoms, n_features)
            ``d(sum_i eps_i)/dX`` (eV per feature unit).
        """
        eps, G = self._members(X, species, True)
        return eps.mean(axis=0), G.mean(axis=0)

    @property
    def _adjoint_std(self):
        """Whether ``HybridPotential`` takes the committee σ through the adjoint
        (:meth:`_committee_cotangents`): fitted with ``n_models >= 2``."""
        p = getattr(self, "params_", None)
        return p is not None and p.shape[0] >= 2

    def _committee_cotangents(self, X, species, energy_var=False):
        """Mean ``dE/dX`` and the committee rows for ``HybridPotential``'s adjoint σ.

        Row 0 is the members' mean ``dE/dX``, rows ``1 + m`` are
        ``(dE_m/dX - mean) / sqrt(n_models - 1)``: the sum of the squares of any force or
        stress component over those rows is the ``ddof=1`` committee variance of
        :meth:`predict_batch`, from one ``Descriptor.backward_many`` of ``1 + n_models`` rows
        instead of the per-pair descriptor Jacobian (``n_pairs * 3 * n_features`` floats).

        Parameters
        ----------
        X : ndarray, shape (n_atoms, n_features)
            Descriptors of the atoms of one structure.
        species : ndarray of int, shape (n_atoms,)
        energy_var : bool, default=False
            Also return the ``ddof=1`` variance of the members' total energies (eV²).

        Returns
        -------
        eps : ndarray, shape (n_atoms,)
            eV (ensemble mean).
        dE_dX : ndarray, shape (1 + n_models, n_atoms, n_features)
        energy_var : float
            Only with ``energy_var``.
        """
        eps, G = self._members(X, species, True)
        k = eps.shape[0]
        mean = G.mean(axis=0)
        G -= mean[None]
        G /= np.sqrt(k - 1)
        rows = np.concatenate([mean[None], G], axis=0)
        del G
        if not energy_var:
            return eps.mean(axis=0), rows
        return eps.mean(axis=0), rows, float(np.var(eps.sum(axis=1), ddof=1))

    def predict_batch(self, batch, return_std=False):
        """Energies, forces and stresses of the structures of ``batch`` (ensemble mean).

        Parameters
        ----------
        batch : StructureBatch
            Descriptors (and, for forces/stress, ``gradients``); labels are ignored.
        return_std : bool, default=False
            Also return the ensemble standard deviations (``n_models >= 2`` required).

        Returns
        -------
        dict
            ``"energy"`` (n_structures,) eV; with ``batch.gradients``: ``"forces"``
            (n_atoms, 3) eV/Å and ``"stress"`` (n_structures, 6) eV/Å³ (NaN for structures
            not periodic in 3-D, i.e. NaN volume); with ``return_std`` the same keys suffixed
            ``"_std"`` (committee standard deviation, ``ddof=1``).

        Raises
        ------
        hybridpot.NotFittedError
            Before ``fit``.
        hybridpot.InvalidParameterError
            For a ``batch`` that is not a StructureBatch, or ``return_std=True`` with
            ``n_models < 2``.
        """
        if not isinstance(batch, StructureBatch):
            raise InvalidParameterError(
                f"The 'batch' argument of {_OWNER}.predict_batch must be a StructureBatch. "
                f"Got {type(batch).__name__} instead.")
        self._check_fitted()
        if return_std and self.params_.shape[0] < 2:
            raise InvalidParameterError(
                f"predict_batch(return_std=True) needs an ensemble: the 'n_models' parameter "
                f"of {_OWNER} must be an int >= 2. Got {self.params_.shape[0]} instead.")
        gr = batch.gradients
        eps, G = self._members(batch.X, batch.species, gr is not None)
        st = np.asarray(batch.structure, dtype=np.int64)
        S = batch.n_structures
        n_m = eps.shape[0]
        E = np.stack([np.bincount(st, weights=e, minlength=S) for e in eps])
        out = {"energy": E}
        if gr is not None:
            forces = np.zeros((n_m, batch.n_atoms, 3))
            deps = np.zeros((n_m, S, 3, 3))
            vol = np.asarray(batch.volume, dtype=np.float64)
            for c in gradient_chunks(gr):   # one piece unless ChunkedGradients (big cells)
                pi = np.ascontiguousarray(c.pair_i, dtype=np.int64)
                pj = np.ascontiguousarray(c.pair_j, dtype=np.int64)
                pst = st[pi]
                rij = np.ascontiguousarray(c.rij, dtype=np.float64)
                dd = np.ascontiguousarray(c.d_drij, dtype=np.float64)
                for m in range(n_m):
                    dE_dr, dE_deps = _pair_forward_kernel(pi, pj, pst, rij, dd, G[m],
                                                          batch.n_atoms, S)
                    forces[m] -= dE_dr
                    deps[m] += dE_deps
            stress = deps[:, :, _VOIGT_A, _VOIGT_B] / vol[None, :, None]
            out["forces"], out["stress"] = forces, stress
        res = {}
        for k, v in out.items():
            res[k] = v.mean(axis=0)
            if return_std:
                res[k + "_std"] = v.std(axis=0, ddof=1)
        return res

    # -- persistence --------------------------------------------------------------------------
    def get_fitted_state(self):
        """Fitted state as ``(state, arrays)``: a JSON-able dict and a dict of ndarrays."""
        self._check_fitted()
        state = {"format_version": _FORMAT_VERSION, "n_features": int(self.n_features_in_),
                 "n_species": int(self.n_species_), "energy_scale": float(self.energy_scale_),
                 "n_iter": [int(k) for k in self.n_iter_],
                 "loss_curve": [[float(v) for v in c] for c in self.loss_curve_],
                 "validation_index": self.validation_index_,
                 "validation_scores": (None if self.validation_scores_ is None else
                                       [[float(v) for v in c] for c in self.validation_scores_])}
        arrays = {"params": self.params_.copy(), "x_mean": self.x_mean_.copy(),
                  "x_scale": self.x_scale_.copy(), "energy_shift": self.energy_shift_.copy(),
                  "species_trained": self.species_trained_.astype(np.int8)}
        names = getattr(self, "species_names_", None)
        if names is not None:
            state["species"] = list(names)
        return state, arrays

    def set_fitted_state(self, state, arrays):
        """Restore a state from :meth:`get_fitted_state` on an instance with the same
        hyperparameters (used by model loading).

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
        self._validate_params()
        try:
            if int(state["format_version"]) > _FORMAT_VERSION:
                raise ModelFormatError(
                    f"{_OWNER} state has format_version {state['format_version']}; this "
                    f"version reads <= {_FORMAT_VERSION}.")
            F, S = int(state["n_features"]), int(state["n_species"])
            params = np.asarray(arrays["params"], dtype=np.float64)
            x_mean = np.asarray(arrays["x_mean"], dtype=np.float64)
            x_scale = np.asarray(arrays["x_scale"], dtype=np.float64)
            shift = np.asarray(arrays["energy_shift"], dtype=np.float64)
            trained = np.asarray(arrays["species_trained"]).astype(bool)
            scale = float(state["energy_scale"])
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, ModelFormatError):
                raise
            raise ModelFormatError(f"{_OWNER} state is incomplete or corrupt: {exc!r}.") from None
        layout = _Layout(F, self._hidden, S)
        expect = {"params": (self.n_models, layout.n_params), "x_mean": (S, F),
                  "x_scale": (S, F), "energy_shift": (S,), "species_trained": (S,)}
        got = {"params": params.shape, "x_mean": x_mean.shape, "x_scale": x_scale.shape,
               "energy_shift": shift.shape, "species_trained": trained.shape}
        for k in expect:
            if tuple(got[k]) != expect[k]:
                raise ModelFormatError(
                    f"{_OWNER} state array '{k}' has shape {tuple(got[k])}; the "
                    f"hyperparameters (hidden_layer_sizes={self._hidden}, n_models="
                    f"{self.n_models}) need {expect[k]}.")
        self.n_features_in_, self.n_species_ = F, S
        self.hidden_layer_sizes_ = self._hidden
        self.params_, self.x_mean_, self.x_scale_ = params, x_mean, x_scale
        self.energy_shift_, self.energy_scale_, self.species_trained_ = shift, scale, trained
        self.n_iter_ = list(state.get("n_iter", []))
        self.loss_curve_ = list(state.get("loss_curve", []))
        self.validation_scores_ = state.get("validation_scores")
        self.validation_index_ = state.get("validation_index")
        names = state.get("species")
        self.species_names_ = (tuple(str(x) for x in names)
                               if isinstance(names, list) and len(names) == S else None)
        return self
