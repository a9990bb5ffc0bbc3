"""GAP-style sparse Gaussian process regression of per-atom energies.

The projected-process (DTC) sparse GP is written as Bayesian linear regression in kernel
features: with ``M_z`` inducing environments ``U_z`` of element ``z`` the per-atom energy is

``eps_i = sum_m w_{z_i, m} k_{z_i}(X_i, U_{z_i, m})``,   ``w_z ~ N(0, K_z^{-1} / alpha)``

(``K_z = k(U_z, U_z) + jitter``), so every label is linear in ``w`` and the energy, force and
stress rows are streamed through the same :class:`~hybridpot.regression._tsqr.TSQRAccumulator`
as the linear models.  After whitening ``v = L^T w`` (``K = L L^T``) the prior is isotropic and
the evidence maximisation is the MacKay fixed point of the linear model.
"""

from __future__ import annotations

import dataclasses
import numbers
import warnings

import numpy as np
import scipy.linalg
import scipy.optimize
import scipy.sparse
from numba import njit
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state

from .._exceptions import InvalidParameterError, MissingLabelsError
from .._validation import check_choice, check_float, check_int, check_random_state_param
from ..descriptors._base import ChunkedGradients, gradient_chunks
from ._base import KINDS, VOIGT, BatchSource, Regressor, StructureBatch, register_regressor
from ._design import split_batch
from ._linear import _max_noise_precision, _precision_update
from ._tsqr import TSQRAccumulator

__all__ = ["SparseGPRegressor", "kernel_matrix", "kernel_gradient_coefficients",
           "select_sparse_points"]

#: candidates kept per element (reservoir) = this factor times n_sparse
CANDIDATE_FACTOR = 20
#: bytes of pair-level kernel-gradient work arrays built at once
CHUNK_BYTES = 1 << 26
#: factors of the median inducing-point distance tried for the SE length scale ("auto")
LENGTH_SCALE_FACTORS = (0.5, 1.0, 2.0, 4.0)
#: prior standard deviation (eV/atom) of the per-element constant (nearly flat)
BIAS_PRIOR_STD = 100.0
#: relative floor of the linear-block feature scales (a constant feature gets this x the largest)
LINEAR_SCALE_FLOOR = 1e-6
#: force / stress variance methods of ``derivative_variance``
DERIVATIVE_VARIANCES = ("dtc", "projected", "committee")
#: atoms per block of the atom-pair sums of the energy and stress variances (bounded memory)
STRESS_BLOCK_ATOMS = 512
#: the dot kernel normalises ``x / sqrt(|x|^2 + s^2)`` with ``s`` this fraction of the median
#: descriptor norm of the element's training environments: the kernel then goes to 0
#: continuously (and its forces stay bounded) where a descriptor vanishes, e.g. when an
#: atom's last neighbour leaves the cutoff; a plain ``x / |x|`` jumps there
DOT_SOFTENING = 0.01


# ---------------------------------------------------------------------------------------------
# kernels
# ---------------------------------------------------------------------------------------------
def _unit_rows(X, softening=0.0):
    """Rows divided by ``n = sqrt(|x|^2 + softening^2)``; returns ``(Xhat, n)``.

    With ``softening = 0`` unit vectors (zero rows stay zero).  With ``softening > 0``
    ``Xhat -> 0`` smoothly as ``x -> 0`` (and ``dXhat/dx = (I - Xhat Xhat^T) / n`` as for the
    unit vectors), so the dot kernel is continuous where a descriptor vanishes.
    """
    n = np.sqrt(np.einsum("ij,ij->i", X, X) + float(softening) ** 2)
    safe = np.where(n > 0, n, 1.0)
    return X / safe[:, None], n


def _prepared(kernel, X, centre, softening=0.0):
    """Kernel-space coordinates: (softly) normalised vectors (dot) or centred descriptors
    (SE)."""
    X = np.asarray(X, dtype=np.float64)
    if kernel == "dot":
        return _unit_rows(X, softening)
    return X - centre[None, :], None


def kernel_matrix(X, U, *, kernel="dot", zeta=4, length_scale=1.0, centre=None,
                  softening=0.0):
    """Kernel values ``k(X_i, U_m)``, shape (n, M).

    ``dot``: ``(x.u / (n(x) n(u)))**zeta`` with ``n(x) = sqrt(|x|^2 + softening^2)``
    (``|x|`` when ``softening = 0``; 0 for a zero descriptor); ``se``:
    ``exp(-|x - u|^2 / (2 length_scale^2))`` computed on descriptors centred at ``centre``
    (default: the mean of ``U``) so that it is accurate far from the origin.
    """
    X = np.asarray(X, dtype=np.float64)
    U = np.asarray(U, dtype=np.float64)
    if kernel == "dot":
        Xh, _ = _unit_rows(X, softening)
        Uh, _ = _unit_rows(U, softening)
        return _dot_power(Xh @ Uh.T, zeta)
    c = U.mean(axis=0) if centre is None else centre
    Xc, Uc = X - c, U - c
    d2 = (np.einsum("ij,ij->i", Xc, Xc)[:, None] + np.einsum("ij,ij->i", Uc, Uc)[None, :]
          - 2.0 * Xc @ Uc.T)
    return np.exp(-np.maximum(d2, 0.0) / (2.0 * length_scale ** 2))


def _legacy_rng(random_state):
    """A ``RandomState`` for ``random_state`` (None, int, RandomState or numpy Generator).

    Ints and RandomStates give sklearn's ``check_random_state`` (so fitted models do not
    change); a ``Generator`` is wrapped around its own bit generator, so the draws come from
    (and advance) the caller's generator.  None gives a freshly seeded ``RandomState`` (OS
    entropy), never numpy's global one (whose state the fit would otherwise advance).
    """
    if isinstance(random_state, np.random.Generator):
        return np.random.RandomState(random_state.bit_generator)
    if random_state is None:
        return np.random.RandomState()
    return check_random_state(random_state)


def _dot_softening(kernel, C):
    """The dot kernel's softening of one element: :data:`DOT_SOFTENING` times the median
    descriptor norm of its candidate environments ``C`` (0 for SE or without candidates)."""
    if kernel != "dot" or C.shape[0] == 0:
        return 0.0
    return DOT_SOFTENING * float(np.median(np.sqrt(np.einsum("ij,ij->i", C, C))))


def _dot_power(d, zeta):
    out = d.copy()
    for _ in range(int(zeta) - 1):
        out *= d
    return out


def _kernel_sum(Y, dot, zeta, length_scale, block=STRESS_BLOCK_ATOMS):
    """``sum_{ij} k(y_i, y_j)`` over all ordered pairs of rows of kernel coordinates ``Y``
    (:func:`_prepared`: softly normalised rows for dot, centred rows for SE).

    Dot kernel with ``zeta`` 1 or 2 through its finite feature map, exactly:
    ``|sum_i y_i|^2`` and ``||Y^T Y||_F^2`` (``O(n F^zeta)``); otherwise the upper triangle
    of ``block x block`` tiles, each off-diagonal tile counted twice (``O(n^2 F / 2)``,
    memory ``O(block^2)``).
    """
    n, F = Y.shape
    if n == 0:
        return 0.0
    if dot and zeta == 1:
        t = Y.sum(axis=0)
        return float(t @ t)
    if dot and zeta == 2 and n > F:
        C = Y.T @ Y
        return float(np.einsum("ij,ij->", C, C))
    sq = None if dot else np.einsum("ij,ij->i", Y, Y)
    total = 0.0
    for a0 in range(0, n, block):
        Ya = Y[a0:a0 + block]
        for b0 in range(a0, n, block):
            G = Ya @ Y[b0:b0 + block].T
            if dot:
                K = _dot_power(G, zeta)
            else:
                G *= -2.0
                G += sq[a0:a0 + block, None]
                G += sq[None, b0:b0 + block]
                K = np.exp(-np.maximum(G, 0.0) / (2.0 * length_scale ** 2))
            total += K.sum() * (1.0 if b0 == a0 else 2.0)
    return float(total)


def kernel_gradient_coefficients(X, Uk, *, kernel, zeta, length_scale, centre, softening=0.0):
    r"""Kernel values and the factors of their gradient with respect to ``X``.

    ``dk(X_i, U_m)/dX_i = A[i, m] * Uk[m] + B[i, m] * V[i]`` with

    - dot: ``Uk`` normalised inducing vectors, ``V = x / n(x)`` the normalised descriptors
      (``n(x) = sqrt(|x|^2 + softening^2)``, see :func:`kernel_matrix`), ``d = V.Uk``,
      ``A = zeta d^(zeta-1) / n(x)``, ``B = -zeta d^zeta / n(x)``;
    - SE: ``Uk = U - centre``, ``V = X - centre``, ``A = k / l^2``, ``B = -k / l^2``.

    Parameters
    ----------
    X : ndarray, shape (n, F)
    Uk : ndarray, shape (M, F)
        Inducing points in kernel coordinates (unit vectors for dot, centred for SE).

    Returns
    -------
    K, A, B : ndarray, shape (n, M)
    V : ndarray, shape (n, F)
    """
    if kernel == "dot":
        V, n = _unit_rows(X, softening)
        d = V @ Uk.T
        dz1 = _dot_power(d, zeta - 1) if zeta > 1 else np.ones_like(d)
        K = dz1 * d
        inv = np.where(n > 0, 1.0 / np.where(n > 0, n, 1.0), 0.0)[:, None]
        A = zeta * dz1 * inv
        B = -zeta * K * inv
        return K, A, B, V
    V = X - centre[None, :]
    d2 = (np.einsum("ij,ij->i", V, V)[:, None] + np.einsum("ij,ij->i", Uk, Uk)[None, :]
          - 2.0 * V @ Uk.T)
    K = np.exp(-np.maximum(d2, 0.0) / (2.0 * length_scale ** 2))
    A = K / length_scale ** 2
    return K, A, -A, V


# ---------------------------------------------------------------------------------------------
# sparse-point selection
# ---------------------------------------------------------------------------------------------
def _dedupe(X, keys=None):
    """Indices of the distinct rows of ``X`` (rounded to 1e-10; first by ``keys`` order)."""
    if X.shape[0] == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.arange(X.shape[0]) if keys is None else np.argsort(keys, kind="stable")
    _, first = np.unique(np.round(X[order], 10), axis=0, return_index=True)
    return np.sort(order[first])


def select_sparse_points(C, n_sparse, method, random_state=None):
    """Choose ``n_sparse`` rows of the candidate matrix ``C`` (kernel coordinates).

    Parameters
    ----------
    C : ndarray, shape (n_candidates, F)
        Distinct candidate environments (unit vectors for the dot kernel, centred
        descriptors for SE).
    n_sparse : int
    method : {"cur", "fps"}
        ``"cur"``: sample rows without replacement with probability proportional to their
        statistical leverage ``sum_{j<k} U[i, j]^2`` (``C = U S V^T``, ``k`` = numerical
        rank, at most ``n_sparse``); ``"fps"``: farthest-point sampling in Euclidean distance
        starting from a random row.
    random_state : int, RandomState, numpy Generator or None

    Returns
    -------
    index : ndarray of int64, shape (min(n_sparse, n_candidates),)
        Sorted row indices.
    """
    rng = _legacy_rng(random_state)
    n = C.shape[0]
    if n <= n_sparse:
        return np.arange(n, dtype=np.int64)
    if method == "cur":
        Uc, s, _ = np.linalg.svd(C, full_matrices=False)
        rank = int(np.sum(s > s[0] * 1e-10)) if s.size and s[0] > 0 else 0
        k = max(1, min(n_sparse, rank))
        lev = np.einsum("ij,ij->i", Uc[:, :k], Uc[:, :k])
        p = lev + 1e-12 * max(lev.max(), 1e-300)
        p = p / p.sum()
        return np.sort(rng.choice(n, size=n_sparse, replace=False, p=p)).astype(np.int64)
    first = int(rng.randint(n))
    sq = np.einsum("ij,ij->i", C, C)
    chosen = [first]
    dmin = sq - 2.0 * C @ C[first] + sq[first]
    for _ in range(n_sparse - 1):  # loop over chosen points (vectorised over candidates)
        nxt = int(np.argmax(dmin))
        chosen.append(nxt)
        dmin = np.minimum(dmin, sq - 2.0 * C @ C[nxt] + sq[nxt])
    return np.sort(np.array(chosen, dtype=np.int64))


# ---------------------------------------------------------------------------------------------
# kernel Hessians: exact-GP prior variance of force and stress components
# ---------------------------------------------------------------------------------------------
@njit(cache=True)
def _hessian_cross_forms(Y, sp, atoms_a, Ga, atoms_b, Gb, dot, zeta, inv_l2):
    """``sum_{u in a, v in b} Ga[u, c] . H(Y[atoms_a[u]], Y[atoms_b[v]]) Gb[v, c]`` per ``c``.

    ``H(x, x') = d^2 k(x, x') / dx dx'^T`` in kernel coordinates, only over pairs of the same
    species (``sp < 0``: no kernel term).  SE (``Y`` centred descriptors):
    ``g.H g' = k / l^2 (g.g' - (g.d)(g'.d) / l^2)``, ``d = y - y'``; dot (``Y`` unit vectors,
    ``G`` already projected, ``h = (I - y y^T) g / |x|``):
    ``h.H h' = zeta (zeta-1) c^(zeta-2) (h.y')(h'.y) + zeta c^(zeta-1) h.h'``, ``c = y.y'``.
    The ``m_a x m_b`` inner products are BLAS products (``Ga Gb^T``, ``Ga Yb^T``, ``Ya Yb^T``).
    """
    ma, C, F = Ga.shape
    mb = Gb.shape[0]
    out = np.zeros(C)
    Ya = np.empty((ma, F))
    Yb = np.empty((mb, F))
    for u in range(ma):
        Ya[u] = Y[atoms_a[u]]
    for v in range(mb):
        Yb[v] = Y[atoms_b[v]]
    YY = Ya @ Yb.T
    sqa = np.zeros(ma)
    sqb = np.zeros(mb)
    for u in range(ma):
        for f in range(F):
            sqa[u] += Ya[u, f] * Ya[u, f]
    for v in range(mb):
        for f in range(F):
            sqb[v] += Yb[v, f] * Yb[v, f]
    # pair coefficients: dot (zeta c^(zeta-1), zeta (zeta-1) c^(zeta-2)); SE (k / l^2, 0)
    c1 = np.zeros((ma, mb))
    c2 = np.zeros((ma, mb))
    for u in range(ma):
        su = sp[atoms_a[u]]
        if su < 0:
            continue
        for v in range(mb):
            if sp[atoms_b[v]] != su:
                continue
            if dot:
                c = YY[u, v]
                f1 = float(zeta)
                for _ in range(zeta - 1):
                    f1 *= c
                f2 = 0.0
                if zeta >= 2:
                    f2 = float(zeta * (zeta - 1))
                    for _ in range(zeta - 2):
                        f2 *= c
                c1[u, v] = f1
                c2[u, v] = f2
            else:
                d2 = max(sqa[u] + sqb[v] - 2.0 * YY[u, v], 0.0)
                c1[u, v] = np.exp(-0.5 * d2 * inv_l2) * inv_l2
    Gqa = np.empty((ma, F))
    Gqb = np.empty((mb, F))
    for q in range(C):
        for u in range(ma):
            for f in range(F):
                Gqa[u, f] = Ga[u, q, f]
        for v in range(mb):
            for f in range(F):
                Gqb[v, f] = Gb[v, q, f]
        GG = Gqa @ Gqb.T
        Pab = Gqa @ Yb.T                   # g_u . y_v
        Pba = Gqb @ Ya.T                   # g_v . y_u
        gya = np.zeros(ma)                 # g_u . y_u (SE only)
        gyb = np.zeros(mb)
        if not dot:
            for u in range(ma):
                for f in range(F):
                    gya[u] += Gqa[u, f] * Ya[u, f]
            for v in range(mb):
                for f in range(F):
                    gyb[v] += Gqb[v, f] * Yb[v, f]
        s = 0.0
        for u in range(ma):
            for v in range(mb):
                if c1[u, v] == 0.0 and c2[u, v] == 0.0:
                    continue
                if dot:
                    s += c2[u, v] * Pab[u, v] * Pba[v, u] + c1[u, v] * GG[u, v]
                else:
                    gud = gya[u] - Pab[u, v]
                    gvd = Pba[v, u] - gyb[v]
                    s += c1[u, v] * (GG[u, v] - gud * gvd * inv_l2)
        out[q] = s
    return out


@njit(cache=True)
def _hessian_quadratic_forms(Y, sp, atoms, G, dot, zeta, inv_l2):
    """``sum_{u,v} G[u, c] . H(Y[atoms[u]], Y[atoms[v]]) G[v, c]`` for every component ``c``
    (see :func:`_hessian_cross_forms`)."""
    return _hessian_cross_forms(Y, sp, atoms, G, atoms, G, dot, zeta, inv_l2)


@njit(cache=True)
def _force_prior_kernel(Y, sp, pair_i, D, nbr_ptr, nbr_pair, ctr_ptr, ctr_pair, max_local, dot,
                        zeta, inv_l2, inv_n, project):
    """Exact prior variance (times ``alpha``) of every force component, shape (n_atoms, 3).

    For atom ``k`` the local atoms are ``k`` and the centres of the pairs whose neighbour is
    ``k``; ``g_i = dX_i / dr_k[a]`` is ``+D[p]`` for those pairs and ``-sum D[p]`` over the
    pairs centred on ``k`` (the Jacobian layout of :mod:`hybridpot.descriptors._base`).
    With ``project`` (dot kernel, ``D`` the raw pair Jacobian) every local ``g_i`` is then
    projected, ``h_i = (g_i - (g_i . y_i) y_i) inv_n[i]``: all its pairs have centre ``i``,
    so this equals summing the projected pair Jacobian (:func:`_project_pair_jacobian`)
    without holding that second ``(n_pairs, 3, F)`` array.
    """
    n, F = Y.shape
    out = np.zeros((n, 3))
    loc = np.full(n, -1, dtype=np.int64)
    atoms = np.empty(max_local, dtype=np.int64)
    G = np.zeros((max_local, 3, F))
    for k in range(n):
        atoms[0] = k
        loc[k] = 0
        m = 1
        for a in range(3):
            for f in range(F):
                G[0, a, f] = 0.0
        for t in range(ctr_ptr[k], ctr_ptr[k + 1]):
            p = ctr_pair[t]
            for a in range(3):
                for f in range(F):
                    G[0, a, f] -= D[p, a, f]
        for t in range(nbr_ptr[k], nbr_ptr[k + 1]):
            p = nbr_pair[t]
            i = pair_i[p]
            li = loc[i]
            if li < 0:
                li = m
                loc[i] = m
                atoms[m] = i
                for a in range(3):
                    for f in range(F):
                        G[m, a, f] = 0.0
                m += 1
            for a in range(3):
                for f in range(F):
                    G[li, a, f] += D[p, a, f]
        if project:
            for u in range(m):
                i = atoms[u]
                s = inv_n[i]
                for a in range(3):
                    t = 0.0
                    for f in range(F):
                        t += G[u, a, f] * Y[i, f]
                    for f in range(F):
                        G[u, a, f] = (G[u, a, f] - t * Y[i, f]) * s
        out[k] = _hessian_quadratic_forms(Y, sp, atoms[:m], G[:m], dot, zeta, inv_l2)
        for u in range(m):
            loc[atoms[u]] = -1
    return out


@njit(cache=True)
def _stress_prior_kernel(Y, sp, order, bounds, G, dot, zeta, inv_l2, block):
    """Exact prior variance (times ``alpha``) of the Voigt stress of every structure.

    ``G[i, v] = dX_i / d eps_v / V`` (atom-level strain Jacobian over the volume); the atoms
    of structure ``s`` are ``order[bounds[s]:bounds[s + 1]]``.  The atom-pair sum runs over
    blocks of at most ``block`` atoms (memory ``O(block^2)``, time ``O(n_atoms^2 F)``).
    """
    ns = bounds.shape[0] - 1
    C, F = G.shape[1], G.shape[2]
    out = np.zeros((ns, C))
    for s in range(ns):
        atoms = order[bounds[s]:bounds[s + 1]]
        n = atoms.shape[0]
        for a0 in range(0, n, block):
            aa = atoms[a0:min(a0 + block, n)]
            Ga = np.empty((aa.shape[0], C, F))
            for u in range(aa.shape[0]):
                Ga[u] = G[aa[u]]
            out[s] += _hessian_cross_forms(Y, sp, aa, Ga, aa, Ga, dot, zeta, inv_l2)
            for b0 in range(a0 + block, n, block):     # off-diagonal blocks count twice
                bb = atoms[b0:min(b0 + block, n)]
                Gb = np.empty((bb.shape[0], C, F))
                for v in range(bb.shape[0]):
                    Gb[v] = G[bb[v]]
                out[s] += 2.0 * _hessian_cross_forms(Y, sp, aa, Ga, bb, Gb, dot, zeta, inv_l2)
    return out


@njit(cache=True)
def _project_pair_jacobian(D, Y, pair_i, inv_n):
    """``out[p, a] = (D[p, a] - (D[p, a] . y) y) * inv_n[i]`` with ``y = Y[i]``, ``i = pair_i[p]``
    (the pair Jacobian of the unit descriptor ``x / |x|`` of the centre), shape of ``D``."""
    P, C, F = D.shape
    out = np.empty((P, C, F))
    for p in range(P):
        i = pair_i[p]
        s = inv_n[i]
        for a in range(C):
            t = 0.0
            for f in range(F):
                t += D[p, a, f] * Y[i, f]
            for f in range(F):
                out[p, a, f] = (D[p, a, f] - t * Y[i, f]) * s
    return out


#: pairs per block of the pair-kernel products ``T`` in :meth:`SparseGPRegressor.design_rows`
PAIR_BLOCK = 1024


@njit(cache=True, fastmath={"reassoc", "contract"})
def _scatter_pair_rows(T, sv, A, B, dot, li, pc, pn, ps, rij, off, dEr, vir):
    r"""Accumulate the kernel force and virial rows of a block of pairs, every length scale.

    For pair ``p`` (centre ``pc[p]``, neighbour ``pn[p]``, structure ``ps[p]``) and length
    scale ``q`` the pair derivative of the kernel columns ``m`` is

    ``g = A[q, li[p], m] T[p, a, m] (+ B[q, li[p], m] sv[p, a] for the dot kernel)``

    (``T`` already holds ``d_drij . Uk^T - sv`` for SE); ``g`` is added to the neighbour's and
    subtracted from the centre's row ``dEr[q, atom, a, off + m]`` (when ``dEr`` has rows) and
    ``g r_ij[b]`` added to ``vir[q, ps[p], v, off + m]`` for the Voigt pairs ``v = (a, b)``
    (when ``vir`` has rows).  One pass over ``T`` for all length scales, no ``(P, 3, M)``
    temporaries; the centre's terms (consecutive pairs share it) and the virial are summed in
    local buffers and written once per run of pairs of one centre.
    """
    nq = A.shape[0]
    Mz = T.shape[2]
    want_f = dEr.shape[1] > 0
    want_s = vir.shape[1] > 0
    cen = np.zeros((nq, 3, Mz))
    vb = np.zeros((nq, 6, Mz))
    # Voigt (xx, yy, zz, yz, xz, xy): for derivative component a the components (a, b)
    vo = np.array([[0, 4, 5], [1, 3, -1], [2, -1, -1]])
    vbx = np.array([[0, 2, 1], [1, 2, 0], [2, 0, 0]])
    P = T.shape[0]
    for p in range(P):
        i = li[p]
        j = pn[p]
        for a in range(3):
            bs = sv[p, a] if dot else 0.0
            for q in range(nq):
                Aq = A[q, i]
                Bq = B[q, i] if dot else A[q, i]
                Tp = T[p, a]
                if want_f:
                    rowj = dEr[q, j, a]
                    rowc = cen[q, a]
                    for m in range(Mz):
                        g = Aq[m] * Tp[m]
                        if dot:
                            g += Bq[m] * bs
                        rowj[off + m] += g
                        rowc[m] += g
                if want_s:
                    for t in range(3 - a):
                        v = vo[a, t]
                        r = rij[p, vbx[a, t]]
                        row = vb[q, v]
                        for m in range(Mz):
                            g = Aq[m] * Tp[m]
                            if dot:
                                g += Bq[m] * bs
                            row[m] += g * r
        if p == P - 1 or pc[p + 1] != pc[p] or ps[p + 1] != ps[p]:   # flush
            c = pc[p]
            s = ps[p]
            for q in range(nq):
                if want_f:
                    for a in range(3):
                        for m in range(Mz):
                            dEr[q, c, a, off + m] -= cen[q, a, m]
                            cen[q, a, m] = 0.0
                if want_s:
                    for v in range(6):
                        for m in range(Mz):
                            vir[q, s, v, off + m] += vb[q, v, m]
                            vb[q, v, m] = 0.0


def _species_scatter(sp, st, g, z, ns, forces, stress):
    """Sparse operators that sum the atom and pair terms of element ``z`` of a batch.

    Returns ``(idx, Sa, pz, Sf, Sv)``: ``idx`` the atoms of element ``z``, ``Sa`` (ns, |idx|)
    sums them per structure; ``pz`` the pairs centred on them (None without ``g``), ``Sf``
    (n_atoms, |pz|) scatters a pair derivative ``+`` to the neighbour and ``-`` to the centre
    (None unless ``forces``), ``Sv`` one (ns, |pz|) operator per Voigt component weighting
    pair ``p`` by ``r_ij[b]`` (None unless ``stress``).  ``idx``, ``Sa`` and ``pz`` serve both
    the kernel and the linear columns of :meth:`SparseGPRegressor.design_rows`, ``Sf`` and
    ``Sv`` the linear columns only.
    """
    idx = np.nonzero(sp == z)[0]
    Sa = scipy.sparse.csr_matrix((np.ones(idx.size), (st[idx], np.arange(idx.size))),
                                 shape=(ns, idx.size))
    pz = Sf = Sv = None
    if g is not None:
        pi, pj = np.asarray(g.pair_i, np.int64), np.asarray(g.pair_j, np.int64)
        pz = np.nonzero(sp[pi] == z)[0]
        if forces:
            Sf = scipy.sparse.csr_matrix(
                (np.concatenate([np.ones(pz.size), -np.ones(pz.size)]),
                 (np.concatenate([pj[pz], pi[pz]]), np.tile(np.arange(pz.size), 2))),
                shape=(sp.shape[0], pz.size))
        if stress:
            rij = np.asarray(g.rij[pz], dtype=np.float64)
            Sv = [scipy.sparse.csr_matrix((rij[:, b], (st[pi[pz]], np.arange(pz.size))),
                                          shape=(ns, pz.size)) for _, b in VOIGT]
    return idx, Sa, pz, Sf, Sv


# ---------------------------------------------------------------------------------------------
# the regressor
# ---------------------------------------------------------------------------------------------
@register_regressor
class SparseGPRegressor(Regressor):
    r"""GAP-style sparse Gaussian process on per-atom descriptors (DTC / projected process).

    For each element ``z`` a set of ``M_z`` inducing environments ``U_z`` (rows of the
    training descriptors, chosen by CUR or farthest-point sampling) defines the per-atom
    energy (eV)

    .. math::
        \varepsilon_i = b_{z_i} + \sum_m w_{z_i m}\, k(X_i, U_{z_i m}),\qquad
        w_z \sim N\big(0,\ \alpha^{-1} (K_z + j\,\bar k_z I)^{-1}\big),\qquad
        b_z \sim N(0, (100\ \mathrm{eV})^2),

    i.e. ``eps`` is a GP with covariance ``k / alpha`` projected onto the inducing set
    (``K_z = k(U_z, U_z)``, ``j`` the relative ``jitter``, ``\bar k_z`` the mean diagonal)
    plus a per-element constant ``b_z`` (eV/atom) with a nearly flat prior (``bias=True``;
    forces cannot fix the constant part of the kernel expansion, so without it energies of
    force-dominated fits are offset).
    Kernels: ``"dot"`` ``k = (\hat x \cdot \hat u)^\zeta`` on normalised descriptors
    ``\hat x = x / \sqrt{|x|^2 + s_z^2}`` (SOAP-GAP; ``s_z`` = :data:`DOT_SOFTENING` times the
    median ``|x|`` of element ``z``'s training environments, fitted as ``dot_softening_``:
    ``\hat x`` is a unit vector to 5e-5 for typical environments and goes to 0 with ``x``, so
    the energy stays continuous and the forces bounded when an atom's last neighbour leaves
    the cutoff and a descriptor that vanishes for an isolated atom reaches 0; with plain unit
    vectors the energy jumped there, by up to tens of eV) and ``"se"``
    ``k = \exp(-|x - u|^2 / 2\ell^2)``.

    Additive linear block (``linear_features``, GAP's "2-body + SOAP" recipe): a contiguous
    block ``x^L`` of the descriptor (e.g. the radial G2 functions of a
    :class:`~hybridpot.descriptors.DescriptorStack`) is removed from the kernel input
    ``x^K`` and enters linearly with per-element weights ``beta_z`` (eV per feature unit),

    .. math::
        \varepsilon_i = b_{z_i} + \sum_m w_{z_i m}\, k(x^K_i, U^K_{z_i m})
        + \beta_{z_i} \cdot x^L_i,\qquad
        \beta_{z f} \sim N\big(0,\ (\alpha_L\, s_{z f}^2)^{-1}\big),

    with ``s_zf`` the standard deviation of feature ``f`` over the distinct training
    environments of element ``z`` (the candidate reservoir; floored at ``1e-6`` times the
    largest).  This is a ridge prior on standardised features: the prior variance of the
    centred linear term is ``n_L / alpha_L`` eV² per atom, predictions do not change when a
    linear feature is rescaled, and ``alpha_L`` (``alpha_linear_``) is evidence-maximised
    alongside ``alpha`` (or fixed by ``linear_alpha``).  With radial G2 functions
    ``exp(-eta (r - R_s)^2) f_c(r)`` the linear term is a learned pair potential in a
    Gaussian radial basis.  The model stays
    linear in ``(w, b, beta)``: the linear block adds ``n_species * n_L`` design columns
    built from the same descriptor Jacobian rows, and the MD adjoint
    (:meth:`atomic_energy_gradient`) gets ``dE/dx^L_i = beta_{z_i}``.  Labels are linear in
    ``w`` (and ``beta``):

    - energy rows (eV/atom): ``sum_{i in s} [k(X_i, U), e_{z_i}] / N_s``;
    - force rows (eV/Å): ``-sum_p dk(X_{i_p}, U)/dX . d_drij[p]`` scattered ``+`` to the
      neighbour and ``-`` to the centre of every pair ``p`` (``F = -dE/dr``);
    - stress rows (Voigt, eV/Å³): ``(1/V) sum_p (dk/dX . d_drij[p, a]) r_ij[p, b]``.

    With ``y_r ~ N(a_r . w, 1 / (beta_k w_r))`` for every row of label kind ``k`` (noise per
    kind, ``w_r`` the structure's weight), the posterior of ``w`` is Gaussian with precision
    ``H_w = alpha K + sum_k beta_k A_k^T W_k A_k`` (plus ``1e-4 eV^-2`` on the constants).
    The signal precision ``alpha`` and the noise levels ``beta_k`` maximise the exact log
    evidence (a few MacKay fixed-point steps, then L-BFGS-B on the log-hyperparameters with
    the analytic gradient, in the whitened weights ``v = L^T w``, ``K = L L^T``; unless
    fixed by ``noise``); with ``kernel="se"`` and ``length_scale="auto"`` the length scale
    is the evidence maximum over ``(0.5, 1, 2, 4)`` times the median distance between
    inducing points (all candidates are accumulated in the same pass over the data).  Rows
    are reduced by streamed TSQR per label kind, so memory is ``O(M^2)`` plus a bounded
    chunk; the inducing points are chosen in a first pass over ``batch.X`` that keeps at
    most ``20 * n_sparse`` distinct candidate environments per element (bottom-k reservoir
    sample under ``random_state``).

    Predictive variances (:meth:`predict_batch` with ``return_std=True``) are the DTC /
    GAP variances of the linear functional ``L`` (total energy, one force component, one
    Voigt stress) of the per-atom energies,

    .. math::
        \sigma^2_L = a_L^T H_w^{-1} a_L
        + \alpha^{-1}\big(k_{LL} - \tilde a_L^T K^{-1} \tilde a_L\big)
        \ [+\ \sigma^2_{\mathrm{noise}}],

    with ``a_L`` the design row (:meth:`design_rows`), ``\tilde a_L`` its kernel columns and
    ``k_LL`` the exact prior covariance of ``L`` (pairs ``i, j`` of atoms of one element):

    - energy: ``k_EE = sum_{ij} k(X_i, X_j)``;
    - force ``F_k[a]``: ``k_FF = sum_{ij} g_i^T H(X_i, X_j) g_j`` with
      ``g_i = dX_i/dr_k[a]`` (nonzero for ``k`` and the atoms having ``k`` as neighbour)
      and the kernel Hessian ``H = d^2 k(x, x')/dx dx'^T``:
      SE ``H = k/l^2 (I - d d^T/l^2)``, ``d = x - x'``; dot
      ``H = zeta(zeta-1) c^(zeta-2) P(x) x̂' x̂^T P(x') + zeta c^(zeta-1) P(x) P(x')``,
      ``c = x̂.x̂'``, ``P(x) = (I - x̂ x̂^T)/sqrt(|x|^2 + s_z^2)`` (= ``dx̂/dx``);
    - stress ``v = (a, b)``: the same with ``g_i = (1/V) sum_{p: i_p = i} d_drij[p, a] r_ij[p, b]``
      summed over all atoms of the structure.

    With a linear block ``a_L`` and ``H_w`` include the ``beta`` columns (the parameter
    variance is that of the augmented weight vector ``(w, b, beta)``), while the DTC term
    uses the kernel block only: a finite linear basis is represented exactly by its weights
    and has no residual prior variance.
    The first term is the weight posterior (SoR); the second, the DTC correction, makes the
    variance grow away from the inducing set and tends to the prior ``k_LL / alpha`` far from
    it.  It vanishes for the energy of an environment that is itself inducing, but not for
    forces (derivatives of ``k`` at ``U`` are not in the span of ``k(., U)``); when every
    training environment is inducing, the result is the exact GP posterior of every
    functional.  The fitted noise of the label kind is added unless ``include_noise=False``.
    Cost of the force term (numba + BLAS, per atom and direction, ``n_nb`` neighbours):
    ``O(n_nb^2 F)``, i.e. ``O(n_atoms n_nb^2 F)`` per structure; stress and energy
    ``O(n_atoms^2 F)`` (summed over blocks of 512 atoms, bounded memory).  Measured on
    108-atom fcc Ni (``F = 252``, ``M = 256``, ``n_nb`` ~ 50, medians of 5 on a shared 2-core
    machine): forces alone 14 ms, forces + σ with the projected part only 150-200 ms, with
    the DTC term 280-360 ms (1.5-1.9x).  ``derivative_variance="projected"`` keeps only the
    SoR part for forces and stresses: cheaper, but it strongly underestimates the force
    uncertainty away from the data (EMT Ni, training cells rattled by 0.08 Å, test cells by
    0.14 Å: RMS force z-score 9.9 projected vs 1.4 DTC; 95 % coverage 0.23 vs 0.92).  In MD,
    ``HybridCalculator(uncertainty_interval=n)`` amortises either.
    Memory of σ on a big cell (``HybridPotential`` / calculator): ``"dtc"`` holds the
    structure's whole per-pair descriptor Jacobian (``n_pairs * 3 * F`` floats: ~190 KB
    per atom for ``F = 180`` and ~43 neighbours, 4000 atoms 0.87 GB peak); ``"projected"``
    reduces it one bounded range of centre atoms at a time (``GRADIENT_CHUNK_BYTES``,
    4000 atoms 0.27 GB, mostly the ``(3 n_atoms, M)`` force rows); ``"committee"`` never
    builds it and holds
    ``(1 + n_committee) * n_atoms * F`` floats of adjoint rows plus their pair forces
    (4000 atoms, 16 samples: 0.24 GB).  The energy and stress prior sums are
    ``O(n_atoms^2 F)`` per element (4000 atoms: 0.1 s energy, 1.7 s stress with the DTC
    term).

    ``derivative_variance="committee"`` (σ in MD): force and stress variances from
    ``K = n_committee`` fixed samples of the weight posterior,
    ``s_k = T^{-1} \xi_k``, ``\xi_k \sim N(0, I)`` (``H_w = T^T T``, so
    ``Cov[s_k] = H_w^{-1}``), drawn once from ``random_state`` and saved with the model:

    .. math::
        \hat\sigma^2_L = \frac{1}{K} \sum_k (a_L \cdot s_k)^2
        \ [+\ \sigma^2_{\mathrm{noise}}],\qquad
        E[\hat\sigma^2_L] = a_L^T H_w^{-1} a_L,

    an unbiased Monte-Carlo estimate of the projected (SoR) part with relative standard
    deviation ``sqrt(2 / K)`` of the variance (about ``1/sqrt(2K)`` of σ), the same samples
    for every structure, so σ is a smooth function of the positions.  Each member's force
    ``a_L . s_k`` is that of the model with weights ``s_k``: ``dE/dX`` of every member
    (:meth:`_committee_cotangents`, ``K`` BLAS products of ``(n_atoms, M) x (M, F)``) goes
    with the mean's through one ``Descriptor.backward_many`` in ``HybridPotential``'s
    calculator, without the ``(3 n_atoms, M)`` force rows or the kernel Hessian.  Energies
    keep their exact DTC variance.  The DTC term of forces and stresses is dropped, as with
    ``"projected"`` (``recalibrate`` can scale the result; see
    :func:`hybridpot.uq.recalibrate`).

    MD and calculator forces use the adjoint: :meth:`atomic_energy_gradient` returns
    ``dE/dX_i = sum_m w_m dk(X_i, U_m)/dX_i`` for ``Descriptor.backward``.

    Cost: force rows need ``T = d_drij . U^T`` per pair (one BLAS product, ``3 F M`` flops
    per pair, shared by all candidate length scales), formed in blocks of ``PAIR_BLOCK``
    pairs and scattered to the atoms' force rows and the structures' virial rows of every
    candidate length scale in one numba pass (memory ``O(PAIR_BLOCK M)`` beyond the rows);
    the ``(n_pairs, 3, M, F)`` kernel Jacobian is never formed.  The TSQR reduction costs
    ``~2 M^2`` flops per row and each evidence step ``O(M^3)``.  Prediction costs
    ``O(M F)`` per atom.

    Practical note: on the power spectrum the SE kernel was clearly better than the
    normalised dot-product kernel in our mlearn Ni tests (normalisation discards the
    density magnitude); ``zeta`` 2 beat 4 and 12 for the dot kernel.  An additive pair term
    (``linear_features`` on radial G2 functions, 5.2-7 Å) on top of the SE kernel on the
    power spectrum did not improve mlearn Mo or Si energies robustly (changes of -0.06 to
    +0.08 meV/atom whose sign flips between validation splits; the pair weights are fixed by
    the force rows, whatever ``linear_alpha``); a likely reason (not tested) is that the
    unnormalised power spectrum already carries the 2-body information inside its cutoff.

    From gap_fit (what each option is here; units eV, Å):

    - ``gap={soap cutoff n_max l_max ...}``: ``HybridPotential(descriptor=PowerSpectrum(
      species, r_cut, n_max, l_max))``.  ``atom_sigma`` has no equivalent (the neighbour
      density is a sum of delta functions expanded in ``n_max`` spherical Bessel functions:
      ``n_max`` sets its smoothness), nor ``cutoff_transition_width`` (the cosine cutoff
      spans the whole sphere); ``add_species=T`` is automatic (one GP per central element,
      one density channel per neighbour element).
    - ``covariance_type=dot_product`` with ``zeta``: ``kernel="dot"``, ``zeta`` (GAP's
      ``normalise=T``, softened, see above); ``ard_se`` with ``theta_uniform``:
      ``kernel="se"`` with one isotropic ``length_scale`` in descriptor units (``"auto"``:
      chosen by the evidence).
    - ``delta``: ``1 / sqrt(alpha_)`` (eV), fitted by the evidence, not set (``alpha_init``
      only starts the search).  The per-element constant ``b_z`` (``bias``) has no gap_fit
      equivalent.
    - ``n_sparse``: ``n_sparse`` (per element); ``sparse_method=cur_points``: ``"cur"``;
      ``uniform`` / ``random`` / ``kmeans``: not available (``"fps"``, farthest points, is
      the other choice); ``sparse_jitter``: ``jitter``, relative to the mean diagonal of
      ``K_z`` (gap_fit's is absolute).
    - ``default_sigma={E F V H}``: ``noise={"energy": ..., "forces": ..., "stress": ...}``;
      a kind left out is fitted by the evidence.  Forces are the same (eV/Å).  Energy rows
      here are per atom, ``E / N``, with noise ``noise["energy"]`` (eV/atom), i.e. a total
      energy noise ``N noise["energy"]``; gap_fit's default ``sigma_per_atom=T`` gives
      ``sqrt(N) sigma_E``, so ``noise["energy"] = sigma_E / sqrt(N)`` matches it for cells
      of ``N`` atoms.  The virial sigma ``sigma_V`` (eV, also times ``sqrt(N)``) is a stress
      noise ``sigma_V sqrt(N) / V`` (eV/Å³).  Hessians are not fitted.
    - ``config_type_sigma`` and per-structure ``energy_sigma`` / ``force_sigma`` /
      ``virial_sigma``: weights ``(sigma_default / sigma)**2`` per structure and kind
      (``atoms.info["fit_weight_energy"]`` etc.; a weight ``w`` divides a row's noise
      variance) from ``hybridpot.io.standardize_labels(structures, default_sigma=...,
      config_type_sigma=...)`` (``[data] default_sigma`` / ``config_type_sigma`` in a
      config), with the kinds' noise fixed to the default sigmas; ``HybridPotential.fit``
      warns about sigmas left unconverted (per-atom ``force_atom_sigma`` has no equivalent).
    - ``e0`` / ``e0_method``: ``HybridPotential(reference_energies=...)``: a dict, or
      ``"isolated_atom"`` (from the one-atom structures without neighbours, as
      ``e0_method=isolated``); the default ``"fit"`` is a least-squares fit on the
      compositions, not ``e0_method=average``.  ``core_ip_args``: ``baseline``.
    - Training data: the extxyz keys ``energy`` / ``forces`` / ``virial`` are read as such;
      ``energy_parameter_name`` etc. are ``label_keys`` of
      :func:`hybridpot.io.read_extxyz` (``[data] energy_key`` ... in a config).
    - 2-body + SOAP: a :class:`~hybridpot.descriptors.DescriptorStack` of the power
      spectrum and radial ``ACSF(angular=None)`` functions with ``linear_features`` on the
      radial block (see above): the 2-body term is linear in a Gaussian radial basis, not a
      second GP with its own ``delta`` and ``theta``; or a fixed pair potential as
      ``baseline``.
    - Variances: gap_fit's ``local_gap_variance`` is the variance (eV²) of one atom's local
      energy without noise: ``HybridPotential.predict_atomic_std(structures) ** 2``.
      ``HybridPotential.predict(..., return_std=True)`` and the calculator's
      ``energy_std`` give the σ (eV) of the total energy of a structure with the fitted
      noise ``N noise_["energy"]`` added (``predict_batch(..., include_noise=False)`` leaves
      it out), and ``forces_std`` / ``stress_std`` the σ of each force / stress component.
    - Output: ``HybridPotential.save`` / ``load`` (``.hpot``), not a GAP XML file; LAMMPS
      export (``write_snap``) is for SNAP models only, not for this GP.

    Data selection (:mod:`hybridpot.uq.selection`): the D-optimal, information-per-cost and
    variance-reduction selectors condition on the weight posterior (rows of
    :meth:`design_rows`, ``precision_factor_``; the ``(M, M)`` covariance is never formed),
    i.e. only on the projected-process part of the predictive variance; the DTC term
    (prior minus Nyström) is not conditioned on the picks (at fixed inducing points it does
    not depend on the labels).  The max-variance selector ranks by the full predictive σ.

    Parameters
    ----------
    kernel : {"dot", "se"}, default="dot"
        Dot-product kernel ``(x̂ . û)^zeta`` on softly normalised descriptors (SOAP-GAP) or
        squared exponential (formulas above).
    zeta : int, default=4
        Exponent of the dot-product kernel (>= 1).
    length_scale : float or "auto", default="auto"
        SE length scale in descriptor units; ignored by the dot kernel.
    n_sparse : int, default=500
        Maximum number of inducing environments per element (fewer when the data has fewer
        distinct environments).
    sparse_method : {"cur", "fps"}, default="cur"
        Choice of the inducing environments among the training descriptors of each element:
        a random draw weighted by CUR leverage scores, or farthest-point sampling.
    jitter : float, default=1e-8
        Relative diagonal regulariser of ``K_z``.
    solver : {"tsqr", "normal"}, default="tsqr"
        Row reduction: Householder TSQR or Gram accumulation (faster, squares the condition
        number).
    alpha_init : float or None, default=None
        Initial signal precision ``alpha`` (default 1).
    noise_init : float or None, default=None
        Initial noise standard deviation of every kind, in the units of its labels (eV/atom,
        eV/Å, eV/Å³; default: RMS of the targets / 10).
    noise : dict or None, default=None
        Fixed noise standard deviations of some label kinds, e.g. ``{"energy": 0.001,
        "forces": 0.05}`` (eV/atom, eV/Å, eV/Å³; GAP's ``default_sigma``); the others (and
        ``alpha``) are still evidence-maximised.  The evidence weighs the kinds by their
        number of rows (forces outnumber energies ~300:1), which can trade energy accuracy
        for force accuracy; fixing the energy noise restores the balance.  This matters most
        where the energies carry what the forces do not, e.g. the mixing energies of an
        alloy: on twelve 8-atom Cu-Ni cells the evidence chose 28 meV/atom of energy noise
        (15 meV/atom test errors), ``{"energy": 0.001}`` gave 1.3 meV/atom.  The mlearn
        benchmark fixes ``{"energy": 0.0005, "forces": 0.05}``.
    max_iter : int, default=500
        Maximum fixed-point iterations of the evidence maximisation.
    tol : float, default=1e-6
        Convergence on the largest change of ``log(alpha)``, ``log(beta_k)``.
    bias : bool, default=True
        Fit the per-element constant ``b_z``.
    derivative_variance : {"dtc", "projected", "committee"}, default="dtc"
        Force and stress predictive variances with the DTC term through the kernel Hessian
        (``"dtc"``), the weight-posterior part only (``"projected"``), or its Monte-Carlo
        estimate from ``n_committee`` weight samples through the adjoint (``"committee"``,
        the cheap option for σ in MD; see above).  Energies always include their DTC term.
    n_committee : int, default=16
        Weight samples of ``derivative_variance="committee"`` (>= 2).
    linear_features : None, int or (int, int), default=None
        Descriptor features that enter linearly (see above) instead of through the kernel:
        an int ``k`` selects the last ``k`` features, a pair ``(start, stop)`` the features
        ``start:stop`` (e.g. ``(b.start, b.stop)`` of ``b = DescriptorStack.block_slices()[k]``,
        a 2-body member; a ``slice`` itself is not accepted).  At
        least one feature must remain for the kernel.  None: no linear block.
    linear_alpha : float or None, default=None
        Fixed prior precision ``alpha_L`` of the standardised linear weights (eV^-2; the prior
        variance of the centred linear term is ``n_L / alpha_L`` eV² per atom); None
        maximises the evidence over it.  Ignored without ``linear_features``.
    random_state : int, RandomState, numpy Generator or None, default=None
        Seeds the reservoir sample and the inducing-point choice.  The reservoir draws one
        key per training atom in the order of the training structures, so the inducing
        points depend on that order (not on ``chunk_size``, Dask workers or BLAS threads):
        the same structures in another order give another, equally valid, model.

    Attributes
    ----------
    inducing_ : ndarray, shape (M, n_features)
        Inducing descriptors of all elements, concatenated in element order.
    inducing_species_ : ndarray of int64, shape (M,)
    dot_softening_ : ndarray, shape (n_species,)
        ``s_z`` of the dot kernel's normalisation (descriptor units; 0 for SE, and in model
        files written before it existed, which keep their unit-vector kernel).
    coef_ : ndarray, shape (M + n_species + n_species * n_L,) (``bias=True``)
        Posterior mean of ``w``, then ``b`` (eV; absent with ``bias=False``), then ``beta``
        (element-major, eV per feature unit; absent without a linear block, ``n_L = 0``).
    precision_factor_ : ndarray, shape (len(coef_), len(coef_))
        Upper-triangular ``T`` with ``H_w = T^T T``.
    alpha_ : float
        Signal precision (the GP prior variance is ``1 / alpha_`` eV²).
    alpha_linear_ : float or None
        Prior precision ``alpha_L`` of the standardised linear-block weights (None without a
        linear block).
    linear_scale_ : ndarray, shape (n_species, n_L) or None
        Feature scales ``s_zf`` of the linear block (descriptor units).
    noise_ : dict
        Label kind -> noise standard deviation (eV/atom, eV/Å, eV/Å³).
    committee_ : ndarray, shape (len(coef_), n_committee)
        Posterior weight samples minus the mean, ``s_k`` (columns); set by ``fit`` with
        ``derivative_variance="committee"``, else at first use of the committee.
    length_scale_ : float or None
        SE length scale used (None for the dot kernel).
    log_evidence_ : float
    n_iter_ : int
    n_species_, n_features_in_ : int
    group_names_ : tuple of str
        Config groups of the training data (per-group noise is not used by the GP).
    centre_ : ndarray, shape (n_species, n_features)
        Per-element centre of the descriptors for the SE kernel (the mean of the element's
        candidate environments).
    kmm_factor_ : ndarray, shape (len(coef_), len(coef_))
        Lower-triangular factor of the prior (block-diagonal: the jittered inducing-point
        kernel of each element, identity for the bias, the scales of the linear block).

    Examples
    --------
    >>> from hybridpot import HybridPotential
    >>> from hybridpot.descriptors import PowerSpectrum
    >>> model = HybridPotential(PowerSpectrum(species=["Ni"], r_cut=3.9),
    ...                         SparseGPRegressor(n_sparse=1000, zeta=4, random_state=0))
    """

    has_uncertainty = True

    _TUPLE_PARAMS = ("linear_features",)

    def __init__(self, *, kernel="dot", zeta=4, length_scale="auto", n_sparse=500,
                 sparse_method="cur", jitter=1e-8, solver="tsqr", alpha_init=None,
                 noise_init=None, noise=None, max_iter=500, tol=1e-6, bias=True,
                 derivative_variance="dtc", n_committee=16, linear_features=None,
                 linear_alpha=None, random_state=None):
        self.kernel = kernel
        self.zeta = zeta
        self.length_scale = length_scale
        self.n_sparse = n_sparse
        self.sparse_method = sparse_method
        self.jitter = jitter
        self.solver = solver
        self.alpha_init = alpha_init
        self.noise_init = noise_init
        self.noise = noise
        self.max_iter = max_iter
        self.tol = tol
        self.bias = bias
        self.derivative_variance = derivative_variance
        self.n_committee = n_committee
        self.linear_features = linear_features
        self.linear_alpha = linear_alpha
        self.random_state = random_state

    # -- validation -------------------------------------------------------------------------
    def _validate(self):
        owner = type(self).__name__
        check_choice(self.kernel, "kernel", ("dot", "se"), owner)
        check_random_state_param(self.random_state, owner)
        self._zeta = check_int(self.zeta, "zeta", owner, low=1)
        if isinstance(self.length_scale, str):
            if self.length_scale != "auto":
                raise InvalidParameterError(
                    f"The 'length_scale' parameter of {owner} must be a float in (0, inf) or "
                    f"'auto'. Got {self.length_scale!r} instead.")
            self._length_scale = None
        else:
            ls = check_float(self.length_scale, "length_scale", owner, low=0.0)
            if not np.isfinite(ls):
                raise InvalidParameterError(
                    f"The 'length_scale' parameter of {owner} must be a float in (0, inf) or "
                    f"'auto'. Got {self.length_scale!r} instead.")
            self._length_scale = ls
        self._n_sparse = check_int(self.n_sparse, "n_sparse", owner, low=1)
        check_choice(self.sparse_method, "sparse_method", ("cur", "fps"), owner)
        self._jitter = check_float(self.jitter, "jitter", owner, low=0.0, high=1.0,
                                   low_inclusive=True, high_inclusive=True)
        check_choice(self.solver, "solver", ("tsqr", "normal"), owner)
        self._alpha0 = check_float(self.alpha_init, "alpha_init", owner, low=0.0,
                                   allow_none=True, finite=True)
        self._noise0 = check_float(self.noise_init, "noise_init", owner, low=0.0,
                                   allow_none=True, finite=True)
        self._fixed_noise = {}
        if self.noise is not None:
            if not isinstance(self.noise, dict) or not set(self.noise) <= set(KINDS):
                raise InvalidParameterError(
                    f"The 'noise' parameter of {owner} must be None or a dict mapping label "
                    f"kinds {KINDS} to noise standard deviations. Got {self.noise!r} instead.")
            for k, v in self.noise.items():
                self._fixed_noise[k] = check_float(v, f"noise[{k!r}]", owner, low=0.0,
                                                   finite=True)
        self._max_iter = check_int(self.max_iter, "max_iter", owner, low=1)
        self._tol = check_float(self.tol, "tol", owner, low=0.0)
        if not isinstance(self.bias, (bool, np.bool_)):
            raise InvalidParameterError(
                f"The 'bias' parameter of {owner} must be a bool. Got {self.bias!r} instead.")
        check_choice(self.derivative_variance, "derivative_variance", DERIVATIVE_VARIANCES,
                     owner)
        self._n_committee = check_int(self.n_committee, "n_committee", owner, low=2)
        self._linear_spec = self._check_linear_features()
        self._linear_alpha = check_float(self.linear_alpha, "linear_alpha", owner, low=0.0,
                                         allow_none=True, finite=True)

    def _check_linear_features(self):
        """``None``, ``("last", k)`` or ``("range", start, stop)`` (feature count unknown)."""
        owner = type(self).__name__
        lf = self.linear_features
        msg = (f"The 'linear_features' parameter of {owner} must be None, an int k >= 1 (the "
               f"last k descriptor features) or a (start, stop) pair of ints with "
               f"0 <= start < stop. Got {lf!r} instead.")
        if lf is None:
            return None
        if isinstance(lf, numbers.Integral) and not isinstance(lf, (bool, np.bool_)):
            if int(lf) < 1:
                raise InvalidParameterError(msg)
            return ("last", int(lf))
        if isinstance(lf, (tuple, list)) and len(lf) == 2 and all(
                isinstance(v, numbers.Integral) and not isinstance(v, (bool, np.bool_))
                for v in lf):
            a, b = int(lf[0]), int(lf[1])
            if 0 <= a < b:
                return ("range", a, b)
        raise InvalidParameterError(msg)

    def _set_blocks(self, F):
        """Kernel and linear feature blocks for ``F`` descriptor features.

        Sets ``_lcols`` (slice of the linear features or None), ``_kcols`` (slice or index
        array of the kernel features), ``_n_lin`` and ``_n_kfeat``.
        """
        owner = type(self).__name__
        spec = getattr(self, "_linear_spec", None)
        if spec is None:
            self._lcols, self._kcols, self._n_lin, self._n_kfeat = None, slice(0, F), 0, F
            return
        a, b = (F - spec[1], F) if spec[0] == "last" else (spec[1], spec[2])
        if a < 1 and b >= F or a < 0 or b > F:
            raise InvalidParameterError(
                f"The 'linear_features' parameter of {owner} must select a block of the "
                f"{F} descriptor features that leaves at least one kernel feature (k <= "
                f"{F - 1}, or 0 <= start < stop <= {F} not covering all). Got "
                f"{self.linear_features!r} instead.")
        self._lcols = slice(a, b)
        if a == 0:
            self._kcols = slice(b, F)
        elif b == F:
            self._kcols = slice(0, a)
        else:
            self._kcols = np.concatenate([np.arange(a), np.arange(b, F)]).astype(np.int64)
        self._n_lin, self._n_kfeat = b - a, F - (b - a)

    def _kx(self, A):
        """The kernel features (last axis) of descriptors or Jacobians."""
        return A[..., self._kcols]

    def _lx(self, A):
        """The linear-block features (last axis) of descriptors or Jacobians."""
        return A[..., self._lcols]

    # -- fitting ----------------------------------------------------------------------------
    def fit(self, batches, y=None):
        """Choose inducing points, stream the rows, maximise the evidence.

        Parameters
        ----------
        batches : BatchSource or list of StructureBatch
            Iterated twice (inducing-point selection, then the rows).
        y : ignored

        Returns
        -------
        self
        """
        self._validate()
        source = BatchSource.wrap(batches)
        meta = {"n_species": source.n_species, "n_features": source.n_features,
                "species": source.species, "group_names": source.group_names}
        rng = _legacy_rng(self.random_state)
        cand = self._new_candidates(meta)
        for batch in source.features():   # descriptors only: no Jacobian needed here
            self._add_candidates(cand, batch, rng.random_sample(batch.n_atoms), meta)
            del batch   # not alive while the source builds the next one (peak: 1 batch)
        self._set_inducing(cand, meta, rng)
        stats = self._new_stats(meta)
        for batch in source:
            self._add_batch(stats, batch, meta)
            del batch
        return self._fit_stats(stats, meta)

    # -- streamed statistics: the serial fit above, and hybridpot.parallel (Dask), which runs
    #    the candidate pass and the row pass on the workers and merges the partial results:
    #    _candidate_keys -> _new_candidates / _add_candidates / _merge_candidates ->
    #    _set_inducing -> _new_stats / _add_batch / _merge_stats -> _fit_stats ---------------
    def _check_meta(self, meta):
        nsp, F = int(meta["n_species"]), int(meta["n_features"])
        if nsp < 1 or F < 1:
            raise InvalidParameterError(
                f"{type(self).__name__}.fit needs n_species >= 1 and n_features >= 1. "
                f"Got {nsp} and {F} instead.")
        self._set_blocks(F)
        return nsp, F

    def _candidate_keys(self, meta, n_atoms):
        """Validate and draw the reservoir keys of ``n_atoms`` atoms (training-set order).

        The serial fit draws the same keys batch by batch from the same generator; the
        generator is kept (``_selection_rng``) for :meth:`_set_inducing`.
        """
        self._validate()
        self._check_meta(meta)
        self._selection_rng = _legacy_rng(self.random_state)
        return self._selection_rng.random_sample(int(n_atoms))

    def _new_candidates(self, meta):
        """Empty per-element candidate reservoir ``{"C": [...], "keys": [...]}``."""
        nsp, F = self._check_meta(meta)
        return {"C": [np.zeros((0, F)) for _ in range(nsp)],
                "keys": [np.zeros(0) for _ in range(nsp)], "n_batches": 0}

    def _reservoir(self, cand, z, C, k):
        """Keep the distinct rows of ``C`` with the ``20 n_sparse`` smallest keys (in order)."""
        Ck = self._kx(C)
        coords = _unit_rows(Ck)[0] if self.kernel == "dot" else Ck
        keep = _dedupe(coords, k)
        cap = CANDIDATE_FACTOR * self._n_sparse
        if keep.shape[0] > cap:
            keep = keep[np.argsort(k[keep], kind="stable")[:cap]]
            keep.sort()
        cand["C"][z], cand["keys"][z] = C[keep], k[keep]

    def _add_candidates(self, cand, batch, keys, meta):
        """Offer the atoms of ``batch`` (reservoir keys ``keys``) to the candidate reservoir."""
        nsp, F = self._check_meta(meta)
        self._check_batch(batch, nsp, F)
        cand["n_batches"] += 1
        X = np.asarray(batch.X, dtype=np.float64)
        sp = np.asarray(batch.species, dtype=np.int64)
        for z in np.unique(sp):
            m = sp == z
            self._reservoir(cand, z, np.vstack([cand["C"][z], X[m]]),
                            np.concatenate([cand["keys"][z], keys[m]]))
        return cand

    def _merge_candidates(self, a, b):
        """Reservoir of the atoms of ``a`` followed by those of ``b`` (returns ``a``)."""
        for z in range(len(a["C"])):
            if b["C"][z].shape[0]:
                self._reservoir(a, z, np.vstack([a["C"][z], b["C"][z]]),
                                np.concatenate([a["keys"][z], b["keys"][z]]))
        a["n_batches"] += b["n_batches"]
        return a

    def _set_inducing(self, cand, meta, rng=None):
        """Choose the inducing points from the candidates; set the kernel-space state."""
        owner = type(self).__name__
        nsp, F = self._check_meta(meta)
        if rng is None:
            rng = self.__dict__.pop("_selection_rng")
        U, centre, soft = [], np.zeros((nsp, F)), np.zeros(nsp)
        lstd = np.zeros((nsp, self._n_lin))
        for z in range(nsp):
            C = cand["C"][z]
            if C.shape[0]:
                centre[z] = C.mean(axis=0)
                if self._n_lin:
                    lstd[z] = self._lx(C).std(axis=0)
            soft[z] = _dot_softening(self.kernel, self._kx(C))
            coords = _prepared(self.kernel, self._kx(C), self._kx(centre[z]), soft[z])[0]
            idx = select_sparse_points(coords, self._n_sparse, self.sparse_method, rng)
            U.append(C[idx])
        if self._n_lin:
            top = float(lstd.max())
            self.linear_scale_ = np.maximum(lstd, LINEAR_SCALE_FLOOR * top if top > 0 else 1.0)
        else:
            self.linear_scale_ = None
        self.n_species_ = nsp
        self.n_features_in_ = F
        self.species_ = tuple(meta["species"]) if meta.get("species") is not None else None
        self.inducing_species_ = np.concatenate(
            [np.full(u.shape[0], z, dtype=np.int64) for z, u in enumerate(U)])
        self.inducing_ = np.vstack(U)
        self.centre_ = centre
        self.dot_softening_ = soft
        self._set_offsets()
        if self.inducing_.shape[0] == 0:
            raise MissingLabelsError(f"{owner}.fit received no atoms.")
        if self.kernel == "se":
            if self._length_scale is not None:
                self._scales = [self._length_scale]
            else:
                med = self._median_inducing_distance()
                self._scales = [f * med for f in LENGTH_SCALE_FACTORS]
        else:
            self._scales = [None]
        self._n_length_scales = len(self._scales)
        return self

    def _new_stats(self, meta):
        """Empty row accumulators (one per candidate length scale); needs the inducing set."""
        method = "qr" if self.solver == "tsqr" else "gram"
        return {"accs": [TSQRAccumulator(self._n_columns, method=method)
                         for _ in self._scales], "n_batches": 0}

    def _add_batch(self, stats, batch, meta):
        """Add the labelled rows of one batch (nothing is stored on ``self``)."""
        nsp, F = self._check_meta(meta)
        stats["n_batches"] += 1
        self._check_batch(batch, nsp, F)
        for sub in split_batch(batch, self._max_chunk_atoms(batch)):
            rows = self._labelled_rows(sub, self._scales)
            for acc, rows_q in zip(stats["accs"], rows):
                for kind, A, yv, w in rows_q:
                    acc.add(kind, A, yv, w)
        return stats

    @staticmethod
    def _merge_stats(a, b):
        """Combine the accumulators of two disjoint row sets (returns ``a``)."""
        for acc, other in zip(a["accs"], b["accs"]):
            acc.merge(other)
        a["n_batches"] += b["n_batches"]
        return a

    def _fit_stats(self, stats, meta):
        """Maximise the evidence from the merged row factors; returns ``self``."""
        owner = type(self).__name__
        accs = stats["accs"]
        if not accs[0].keys():
            raise MissingLabelsError(
                f"{owner}.fit received {stats['n_batches']} batch(es) with no usable "
                "label: every energy, force and stress label is missing (NaN), has zero "
                "weight, or (stress) belongs to a structure that is not periodic in 3-D.")
        self.group_names_ = tuple(meta.get("group_names") or ("default",))
        best = None
        for ls, acc in zip(self._scales, accs):
            self.length_scale_ = ls
            L = self._kmm_factor()
            res = self._evidence(acc, L)
            res.update({"length_scale": ls, "L": L})
            if best is None or res["log_evidence"] > best["log_evidence"]:
                best = res
        if not best["converged"]:
            warnings.warn(
                f"{owner}: evidence maximisation did not converge in max_iter={self._max_iter} "
                f"iterations (last convergence measure {best['change']:.3g} > "
                f"tol={self._tol:g}); increase max_iter.", ConvergenceWarning, stacklevel=3)
        self.length_scale_ = best["length_scale"]
        self.kmm_factor_ = best["L"]
        self.alpha_ = float(best["alpha"])
        self.alpha_linear_ = (None if best["alpha_linear"] is None
                              else float(best["alpha_linear"]))
        self._beta = dict(best["beta"])
        self._set_noise_dict()
        self.log_evidence_ = float(best["log_evidence"])
        self.n_iter_ = int(best["n_iter"])
        L = best["L"]
        self.coef_ = scipy.linalg.solve_triangular(L, best["m"], lower=True, trans="T",
                                                   check_finite=False)
        self.precision_factor_ = best["T"] @ L.T
        self.__dict__.pop("committee_", None)
        if self.derivative_variance == "committee":
            self._committee_samples()
        return self

    def _set_offsets(self):
        """Column layout ``[kernel (M) | bias (n_species) | linear (n_species * n_lin)]``."""
        self._set_blocks(self.n_features_in_)
        counts = np.bincount(self.inducing_species_, minlength=self.n_species_)
        self._offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self._n_kernel = int(self._offsets[-1])
        self._lin_off = self._n_kernel + (self.n_species_ if self.bias else 0)
        self._n_columns = self._lin_off + self.n_species_ * self._n_lin
        self._kcentre = [self._kx(self.centre_[z]) for z in range(self.n_species_)]
        soft = getattr(self, "dot_softening_", None)
        self._ksoft = [0.0 if soft is None else float(soft[z]) for z in range(self.n_species_)]
        self._kcoords = []
        for z in range(self.n_species_):
            Uz = self._kx(self.inducing_[self._offsets[z]:self._offsets[z + 1]])
            self._kcoords.append(_prepared(self.kernel, Uz, self._kcentre[z],
                                           self._ksoft[z])[0])

    def _median_inducing_distance(self):
        d = []
        for Uk in self._kcoords:
            if Uk.shape[0] > 1:
                sq = np.einsum("ij,ij->i", Uk, Uk)
                D2 = sq[:, None] + sq[None, :] - 2.0 * Uk @ Uk.T
                iu = np.triu_indices(Uk.shape[0], 1)
                d.append(np.sqrt(np.maximum(D2[iu], 0.0)))
        d = np.concatenate(d) if d else np.zeros(0)
        d = d[d > 0]
        return float(np.median(d)) if d.size else 1.0

    def _kmm_factor(self):
        M = self._n_columns
        L = np.zeros((M, M))
        nk = self._n_kernel
        L[nk:, nk:] = np.eye(M - nk)          # the bias columns are not whitened
        if self._n_lin:                        # linear block: v = s * beta (standardised)
            lo = self._lin_off
            L[lo:, lo:] = np.diag(self.linear_scale_.reshape(-1))
        for z in range(self.n_species_):
            a, b = self._offsets[z], self._offsets[z + 1]
            if b == a:
                continue
            Uk = self._kcoords[z]
            if self.kernel == "dot":
                K = _dot_power(Uk @ Uk.T, self._zeta)
            else:
                K = kernel_gradient_coefficients(Uk + self._kcentre[z], Uk, kernel="se", zeta=1,
                                                 length_scale=self.length_scale_,
                                                 centre=self._kcentre[z])[0]
            K = 0.5 * (K + K.T)
            kbar = max(float(np.mean(np.diag(K))), np.finfo(float).tiny)
            jit = self._jitter * kbar
            for _ in range(8):
                try:
                    L[a:b, a:b] = np.linalg.cholesky(K + jit * np.eye(b - a))
                    break
                except np.linalg.LinAlgError:
                    jit = max(jit * 100.0, 1e-12 * kbar)
            else:  # pragma: no cover - K is a Gram matrix, some jitter always works
                raise InvalidParameterError(
                    f"The inducing kernel matrix of element {z} is not positive definite; "
                    f"increase 'jitter' (got {self.jitter!r}).")
        return L

    def _max_chunk_atoms(self, batch):
        M = max(self._n_columns, 1)
        g = batch.gradients
        ppa = g.pair_i.shape[0] / max(batch.n_atoms, 1) if g is not None else 0.0
        nl = max(getattr(self, "_n_length_scales", 1), 1)
        # pair arrays T, G (3 ppa each) + per length scale force rows and their copy (6)
        return max(1, int(CHUNK_BYTES // (8 * M * (6 * ppa + 6 * nl + 6))))

    def _evidence(self, acc, L):
        """MacKay fixed point in the whitened weights; returns the posterior and evidence."""
        keys = acc.keys()
        M = acc.n_columns
        Rk, rk = [], []
        for k in keys:
            R = acc.R(k)
            # whitened rows: A L^{-T}  ->  R L^{-T} = (L^{-1} R^T)^T
            Rk.append(scipy.linalg.solve_triangular(L, R[:, :-1].T, lower=True,
                                                    check_finite=False).T)
            rk.append(R[:, -1].copy())
        N = np.array([acc.n_rows[k] for k in keys], dtype=np.float64)
        slw = float(sum(acc.sum_log_weight[k] for k in keys))
        Gk = [R.T @ R for R in Rk]
        bk = [R.T @ r for R, r in zip(Rk, rk)]
        yy = np.array([r @ r for r in rk])
        alpha = 1.0 if self._alpha0 is None else self._alpha0
        if self._noise0 is not None:
            beta = np.full(len(keys), 1.0 / self._noise0 ** 2)
        else:
            ms = yy / N
            beta = np.where(ms > 0, 100.0 / np.where(ms > 0, ms, 1.0), 1.0)
        beta_max = _max_noise_precision(yy, N)
        fixed = np.array([k in self._fixed_noise for k in keys], dtype=bool)
        for q, k in enumerate(keys):
            if fixed[q]:
                beta[q] = beta_max[q] = 1.0 / self._fixed_noise[k] ** 2
        eye = np.eye(M)
        nk = len(keys)
        Mk = self._n_kernel
        kmask = np.arange(M) < Mk
        lmask = np.arange(M) >= self._lin_off
        Ml = int(lmask.sum())
        nh = 2 if Ml else 1                 # prior precisions: alpha (kernel), alpha_L (linear)
        pb = 1.0 / BIAS_PRIOR_STD ** 2
        la_fixed = bool(Ml) and self._linear_alpha is not None
        alpha_l = (self._linear_alpha if la_fixed else alpha) if Ml else None

        def prior(alpha, alpha_l=None):
            p = np.where(kmask, alpha, pb)
            if Ml:
                p[lmask] = alpha_l
            return p

        def state(alpha, beta, alpha_l=None):
            H = np.diag(prior(alpha, alpha_l))
            rhs = np.zeros(M)
            for bq, G, bv in zip(beta, Gk, bk):
                H += bq * G
                rhs += bq * bv
            try:
                C = np.linalg.cholesky(H)
            except np.linalg.LinAlgError:
                H = H + eye * 1e-12 * np.trace(H) / M
                C = np.linalg.cholesky(H)
            m = scipy.linalg.cho_solve((C, True), rhs, check_finite=False)
            Hinv, _ = scipy.linalg.lapack.dpotri(C, lower=1)
            Hinv = np.tril(Hinv) + np.tril(Hinv, -1).T
            rss = np.array([np.sum((R @ m - r) ** 2) for R, r in zip(Rk, rk)])
            trG = np.array([np.sum(Hinv * G) for G in Gk])
            logdet = 2.0 * np.sum(np.log(np.diag(C)))
            dH = np.diag(Hinv)
            return m, rss, trG, float(np.sum(dH[kmask])), logdet, float(np.sum(dH[lmask]))

        # MacKay fixed point first (fast initial progress) ...
        converged, change, n_iter = False, np.inf, 0
        n_fixed = min(self._max_iter, 30)
        def prior_update(n_w, a, tr, mm):
            return _precision_update(min(max(n_w - a * tr, 1e-12), n_w - 1e-12), mm)

        for n_iter in range(1, n_fixed + 1):
            m, rss, trG, trH, _, trL = state(alpha, beta, alpha_l)
            gamma = beta * trG
            alpha_new = prior_update(Mk, alpha, trH, float(m[kmask] @ m[kmask]))
            beta_new = np.minimum(np.maximum(N - gamma, 1e-12) / np.maximum(rss, 1e-300),
                                  beta_max)
            beta_new[fixed] = beta[fixed]
            change = max(abs(np.log(alpha_new / alpha)),
                         float(np.max(np.abs(np.log(beta_new / beta)))))
            if Ml and not la_fixed:
                al_new = prior_update(Ml, alpha_l, trL, float(m[lmask] @ m[lmask]))
                change = max(change, abs(np.log(al_new / alpha_l)))
                alpha_l = al_new
            alpha, beta = alpha_new, beta_new
            if change < self._tol:
                converged = True
                break
        # ... then quasi-Newton on the log-hyperparameters with the analytic gradient
        if not converged:
            bmask = ~(kmask | lmask)

            def objective(theta):
                a, bt = np.exp(theta[0]), np.exp(theta[nh:])
                al = np.exp(theta[1]) if Ml else None
                m, rss, trG, trH, logdet, trL = state(a, bt, al)
                mm = float(m[kmask] @ m[kmask])
                mb = float(m[bmask] @ m[bmask])
                ml = float(m[lmask] @ m[lmask])
                f = -(0.5 * (N @ theta[nh:]) + 0.5 * Mk * theta[0]
                      - 0.5 * (bt @ rss + a * mm + pb * mb) - 0.5 * logdet)
                g = np.empty(nk + nh)
                g[0] = -0.5 * (Mk - a * trH - a * mm)
                if Ml:
                    f -= 0.5 * Ml * theta[1] - 0.5 * al * ml
                    g[1] = -0.5 * (Ml - al * trL - al * ml)
                g[nh:] = -0.5 * (N - bt * trG - bt * rss)
                return f, g

            theta0 = np.concatenate([[np.log(alpha)], [np.log(alpha_l)] if Ml else [],
                                     np.log(beta)])
            bounds = [(np.log(1e-12), np.log(1e12))] * nh + [
                ((float(np.log(bm)) if fx else None), float(np.log(bm)))
                for bm, fx in zip(beta_max, fixed)]
            if la_fixed:
                bounds[1] = (float(np.log(alpha_l)), float(np.log(alpha_l)))
            res = scipy.optimize.minimize(
                objective, theta0, jac=True, method="L-BFGS-B", bounds=bounds,
                options={"maxiter": max(self._max_iter - n_fixed, 1), "ftol": 1e-15,
                         "gtol": self._tol * (N.sum() + M)})
            alpha, beta = float(np.exp(res.x[0])), np.exp(res.x[nh:])
            if Ml and not la_fixed:
                alpha_l = float(np.exp(res.x[1]))
            n_iter += int(res.nit)
            _, g = objective(res.x)
            # projected gradient (active bounds do not count)
            at_upper = np.concatenate([[False] * nh, res.x[nh:] >= np.log(beta_max) - 1e-12])
            gproj = np.where(at_upper & (g < 0), 0.0, g)
            gproj[nh:][fixed] = 0.0
            if la_fixed:
                gproj[1] = 0.0
            change = float(np.max(np.abs(gproj)) / (N.sum() + M))
            # status 2 (line search cannot decrease the objective further) means the evidence
            # is flat to floating-point precision -- typically alpha -> inf, when the data
            # prefer no kernel contribution; only running out of iterations is a failure.
            converged = bool(res.success) or change < self._tol or int(res.status) == 2
        pr = prior(alpha, alpha_l)
        blocks = [np.sqrt(bq) * R for bq, R in zip(beta, Rk)] + [np.diag(np.sqrt(pr))]
        rhs = np.concatenate([np.sqrt(bq) * r for bq, r in zip(beta, rk)] + [np.zeros(M)])
        Q, T = scipy.linalg.qr(np.vstack(blocks), mode="economic", check_finite=False)
        m = scipy.linalg.solve_triangular(T, Q.T @ rhs, check_finite=False)
        rss = np.array([np.sum((R @ m - r) ** 2) for R, r in zip(Rk, rk)])
        E = float(beta @ rss + m @ (pr * m))
        logdetH = 2.0 * np.sum(np.log(np.abs(np.diag(T))))
        logev = (0.5 * (N @ np.log(beta)) + 0.5 * slw + 0.5 * np.sum(np.log(pr)) - 0.5 * E
                 - 0.5 * logdetH - 0.5 * N.sum() * np.log(2 * np.pi))
        return {"alpha": alpha, "alpha_linear": alpha_l, "beta": dict(zip(keys, beta)),
                "m": m, "T": T,
                "log_evidence": float(logev), "n_iter": n_iter, "converged": converged,
                "change": change}

    # -- rows -------------------------------------------------------------------------------
    def _element_terms(self, X, sp):
        """Per element present: (z, atom indices, K, A, B, V, column offset); ``X`` holds
        the kernel features only."""
        out = []
        for z in np.unique(sp):
            a, b = self._offsets[z], self._offsets[z + 1]
            if b == a:
                continue
            idx = np.nonzero(sp == z)[0]
            K, A, B, V = kernel_gradient_coefficients(
                X[idx], self._kcoords[z], kernel=self.kernel, zeta=self._zeta,
                length_scale=self.length_scale_, centre=self._kcentre[z],
                softening=self._ksoft[z])
            out.append((int(z), idx, K, A, B, V, int(a)))
        return out

    def design_rows(self, batch, *, forces=True, stress=True):
        """Kernel design rows of a batch in the column layout of :attr:`coef_`.

        Parameters
        ----------
        batch : StructureBatch
        forces, stress : bool, default=True
            Build the force / stress rows (needs ``batch.gradients``).

        Returns
        -------
        energy_rows : ndarray, shape (n_structures, len(coef_))
            Total-energy rows ``sum_{i in s} [k(X^K_i, U), e_{z_i}, e_{z_i} (x) x^L_i]`` (eV
            per unit weight; the last block only with ``linear_features``).
        force_rows : ndarray, shape (3 * n_atoms, len(coef_)) or None
            Row ``3 k + a`` models ``F_k[a]`` (eV/Å).
        stress_rows : ndarray, shape (6 * n_structures, len(coef_)) or None
            Row ``6 s + v`` models the Voigt stress ``v`` (eV/Å³); NaN unless 3-D periodic.
        """
        g = batch.gradients
        if not isinstance(g, ChunkedGradients) or not (forces or stress):
            return self._design_rows_multi(batch, [self.length_scale_], forces, stress)[0]
        # a big cell's Jacobian one range of centres at a time: the force and stress rows are
        # sums over pairs, the energy rows do not depend on the Jacobian
        Er = Fr = Sr = None
        for c in g.chunks():
            e, f, s = self._design_rows_multi(dataclasses.replace(batch, gradients=c),
                                              [self.length_scale_], forces, stress)[0]
            Er = e
            Fr = f if Fr is None or f is None else Fr + f
            Sr = s if Sr is None or s is None else Sr + s
        if Er is None:   # no pairs at all: the (empty) full Jacobian
            return self._design_rows_multi(dataclasses.replace(batch, gradients=g.materialize()),
                                           [self.length_scale_], forces, stress)[0]
        return Er, Fr, Sr

    def _design_rows_multi(self, batch, length_scales, forces, stress):
        """:meth:`design_rows` for several SE length scales sharing the pair contractions.

        The pair-level products ``T = d_drij . Uk^T`` and ``s = d_drij . V_i`` do not depend
        on the length scale, only the factors ``K``, ``A`` do; ``dk/dr_ij = A (T - s)`` (SE)
        or ``A T + B s`` (dot).
        """
        Xfull = np.asarray(batch.X, dtype=np.float64)
        X = self._kx(Xfull)
        sp = np.asarray(batch.species, dtype=np.int64)
        st = np.asarray(batch.structure, dtype=np.int64)
        ns, n = batch.n_structures, batch.n_atoms
        M = self._n_columns
        nl = len(length_scales)
        g = batch.gradients
        want = g is not None and (forces or stress)
        Er = [np.zeros((ns, M)) for _ in range(nl)]
        # one array per kind with a leading length-scale axis (the pair kernel writes all
        # scales at once); the lists are views of it
        dEr_all = np.zeros((nl, n if want and forces else 0, 3, M))
        vir_all = np.zeros((nl, ns if want and stress else 0, 6, M))
        dEr = list(dEr_all) if want and forces else None
        vir = list(vir_all) if want and stress else None
        if self.bias:
            for E in Er:
                np.add.at(E, (st, self._n_kernel + sp), 1.0)
        if want:
            pi = np.asarray(g.pair_i, np.int64)
            pj = np.asarray(g.pair_j, np.int64)
            loc = np.full(n, -1, dtype=np.int64)
        # per element: the atoms, their pairs and the sparse scatter operators (the pair
        # operators only for the linear block: the kernel columns use _scatter_pair_rows)
        lin = bool(self._n_lin)
        scatter = {z: _species_scatter(sp, st, g if want else None, z, ns, forces and lin,
                                       stress and lin)
                   for z in np.unique(sp)}
        if lin:
            self._linear_design_rows(Xfull, g if want else None, scatter, Er, dEr, vir)
        for z, (idx, Sa, pz, _, _) in scatter.items():
            off, end = int(self._offsets[z]), int(self._offsets[z + 1])
            if end == off:
                continue
            Mz = end - off
            Uk = self._kcoords[z]
            if self.kernel == "se":
                V = X[idx] - self._kcentre[z][None, :]
                d2 = np.maximum(np.einsum("ij,ij->i", V, V)[:, None]
                                + np.einsum("ij,ij->i", Uk, Uk)[None, :] - 2.0 * V @ Uk.T, 0.0)
                KA = []
                for ls in length_scales:
                    K = np.exp(-d2 / (2.0 * ls ** 2))
                    KA.append((K, K / ls ** 2, None))
            else:
                K, A, B, V = kernel_gradient_coefficients(
                    X[idx], Uk, kernel="dot", zeta=self._zeta, length_scale=None, centre=None,
                    softening=self._ksoft[z])
                KA = [(K, A, B)]
            for q, (K, _, _) in enumerate(KA):
                Er[q][:, off:end] = Sa @ K
            if not want:
                continue
            loc[idx] = np.arange(idx.size)
            if pz.size == 0:
                continue
            # dk/dr_ij = A (T - s) (SE) or A T + B s (dot), T = d_drij . Uk^T, s = d_drij . V_i:
            # T in blocks of pairs (one reused buffer), scattered to the force and virial rows
            # of every length scale by _scatter_pair_rows
            dot = self.kernel == "dot"
            Aq = np.stack([A for _, A, _ in KA])                          # (nq, n_z, Mz)
            Bq = np.stack([B for _, _, B in KA]) if dot else np.zeros((1, 1, 1))
            Tbuf = np.empty((min(PAIR_BLOCK, pz.size) * 3, Mz))
            for b0 in range(0, pz.size, PAIR_BLOCK):
                pb = pz[b0:b0 + PAIR_BLOCK]
                D = np.asarray(self._kx(g.d_drij[pb]), dtype=np.float64)  # (Pb, 3, F_kernel)
                li = loc[pi[pb]]
                T = np.matmul(D.reshape(-1, D.shape[2]), Uk.T,
                              out=Tbuf[:3 * pb.size]).reshape(pb.size, 3, Mz)
                sv = np.einsum("paf,pf->pa", D, V[li])
                if not dot:
                    T -= sv[:, :, None]
                _scatter_pair_rows(T, sv, Aq, Bq, dot, li, pi[pb], pj[pb], st[pi[pb]],
                                   np.ascontiguousarray(g.rij[pb], dtype=np.float64), off,
                                   dEr_all, vir_all)
        out = []
        vol = np.asarray(batch.volume, dtype=np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            inv_v = np.where(np.isfinite(vol) & (vol > 0), 1.0 / vol, np.nan)
        for q in range(nl):
            Fr = -dEr[q].reshape(3 * n, M) if dEr is not None else None
            Sr = (vir[q] * inv_v[:, None, None]).reshape(6 * ns, M) if vir is not None else None
            out.append((Er[q], Fr, Sr))
        return out

    def _linear_design_rows(self, X, g, scatter, Er, dEr, vir):
        """Add the linear-block columns (the same for every length scale) in place.

        ``eps_i = beta_{z_i} . x_i^L``: energy columns ``sum_{i in s, z_i = z} x_i^L``; the
        pair term ``d eps_i / d r_ij = beta . d_drij[p]^L`` is scattered like the kernel
        columns (``+`` to the neighbour, ``-`` to the centre; stress ``(.)_a r_ij[b]``), with
        the same per-element operators ``scatter`` (:func:`_species_scatter`).
        """
        n, nL = X.shape[0], self._n_lin
        XL = self._lx(X)
        for z, (idx, Sa, pz, Sf, Sv) in scatter.items():
            lo = self._lin_off + int(z) * nL
            e = Sa @ XL[idx]
            for E in Er:
                E[:, lo:lo + nL] = e
            if g is None or pz.size == 0:
                continue
            D = np.asarray(self._lx(g.d_drij[pz]), dtype=np.float64)   # (P, 3, nL)
            if dEr is not None:
                f = (Sf @ D.reshape(pz.size, 3 * nL)).reshape(n, 3, nL)
                for dE in dEr:
                    dE[:, :, lo:lo + nL] = f
            if vir is not None:
                for v, (a, _) in enumerate(VOIGT):
                    c = Sv[v] @ D[:, a, :]
                    for vr in vir:
                        vr[:, v, lo:lo + nL] = c

    def _labelled_rows(self, batch, length_scales):
        """Per length scale, the weighted rows ``[(kind, A, y, w), ...]`` of ``batch``."""
        ns = batch.n_structures
        has = {k: batch.has(k) for k in KINDS}

        def weight(kind):
            w = batch.weights.get(kind)
            return np.ones(ns) if w is None else np.asarray(w, dtype=np.float64)

        want_f, want_s = bool(has["forces"].any()), bool(has["stress"].any())
        if (want_f or want_s) and batch.gradients is None:
            raise MissingLabelsError(
                "A StructureBatch carries force or stress labels but no descriptor gradients "
                "('gradients' is None); compute the descriptors with gradients=True.")
        out = []
        for Er, Fr, Sr in self._design_rows_multi(batch, length_scales, want_f, want_s):
            out.append(list(self._rows_of(batch, has, weight, Er, Fr, Sr)))
        return out

    def _rows_of(self, batch, has, weight, Er, Fr, Sr):
        ns = batch.n_structures
        want_f, want_s = bool(has["forces"].any()), bool(has["stress"].any())
        if has["energy"].any():
            m = has["energy"]
            nat = batch.n_atoms_per_structure[m]
            yield ("energy", Er[m] / nat[:, None],
                   np.asarray(batch.energy, dtype=np.float64)[m] / nat, weight("energy")[m])
        if want_f:
            row_m = np.repeat(has["forces"][batch.structure], 3)
            s_of_row = np.repeat(batch.structure, 3)[row_m]
            yield ("forces", Fr[row_m],
                   np.asarray(batch.forces, dtype=np.float64).reshape(-1)[row_m],
                   weight("forces")[s_of_row])
        if want_s:
            row_m = np.repeat(has["stress"], 6)
            s_of_row = np.repeat(np.arange(ns), 6)[row_m]
            yield ("stress", Sr[row_m],
                   np.asarray(batch.stress, dtype=np.float64).reshape(-1)[row_m],
                   weight("stress")[s_of_row])

    # -- prediction -------------------------------------------------------------------------
    def _check_X(self, X, species, what="atomic_energy"):
        self._check_fitted()
        return self._check_atomic_input(X, species, what)

    def atomic_energy(self, X, species):
        """Per-atom ML energies ``eps_i = sum_m w_m k(X_i, U_m)``.

        Parameters
        ----------
        X : array_like, shape (n_atoms, n_features)
        species : array_like of int, shape (n_atoms,)

        Returns
        -------
        eps : ndarray, shape (n_atoms,)
            eV.
        """
        return self.atomic_energy_gradient(X, species, _grad=False)[0]

    def atomic_energy_gradient(self, X, species, _grad=True):
        """Per-atom energies and ``dE_dX = d(sum_i eps_i)/dX`` (input of ``backward``).

        Parameters
        ----------
        X : array_like, shape (n_atoms, n_features)
            Per-atom descriptors.
        species : array_like of int, shape (n_atoms,)
            Index of each atom's element in the model's species list.

        Returns
        -------
        eps : ndarray, shape (n_atoms,)
            eV.
        dE_dX : ndarray, shape (n_atoms, n_features)
            eV per descriptor unit: ``sum_m w_m (A_im Uk_m + B_im V_i)`` (see
            :func:`kernel_gradient_coefficients`).
        """
        X, sp = self._check_X(X, species)
        eps, dE = self._weight_gradients(X, sp, self.coef_[:, None], _grad)
        return eps[0], (dE[0] if _grad else None)

    def _weight_gradients(self, X, sp, W, grad=True, energy_row=False):
        """Per-atom energies and ``dE/dX`` of the model with each coefficient column of ``W``.

        Parameters
        ----------
        X : ndarray, shape (n_atoms, n_features)
        sp : ndarray of int, shape (n_atoms,)
        W : ndarray, shape (len(coef_), K)
            Coefficient vectors in the layout of :attr:`coef_` (the mean, posterior samples
            or their deviations from the mean: the outputs are linear in ``W``).
        grad : bool, default=True
        energy_row : bool, default=False
            Also return the design row of the total energy of the atoms ``X`` (one
            structure), shape (len(coef_),): :meth:`design_rows`' energy row, from the kernel
            values computed here anyway.

        Returns
        -------
        eps : ndarray, shape (K, n_atoms)
            eV.
        dE_dX : ndarray, shape (K, n_atoms, n_features) or None
            eV per descriptor unit.
        row : ndarray, shape (len(coef_),)
            Only with ``energy_row``.
        """
        K, n = W.shape[1], X.shape[0]
        eps = W[self._n_kernel + sp].T.copy() if self.bias else np.zeros((K, n))
        row = np.zeros(W.shape[0]) if energy_row else None
        if energy_row and self.bias:
            np.add.at(row, self._n_kernel + sp, 1.0)
        Xk = self._kx(X)
        dEk = np.zeros((K, n, Xk.shape[1])) if grad else None
        for z, idx, Kz, A, B, V, off in self._element_terms(Xk, sp):
            Wz = W[off:off + Kz.shape[1]]                       # (Mz, K)
            eps[:, idx] += (Kz @ Wz).T
            if energy_row:
                row[off:off + Kz.shape[1]] = Kz.sum(axis=0)
            if grad:
                BW = B @ Wz
                for k in range(K):  # K BLAS products of (n_z, Mz) x (Mz, F)
                    dEk[k, idx] = (A * Wz[None, :, k]) @ self._kcoords[z] + BW[:, k, None] * V
        dE = None
        if grad:
            dE = np.zeros((K, n, X.shape[1]))
            dE[:, :, self._kcols] = dEk
        if self._n_lin:
            Bl = W[self._lin_off:].reshape(self.n_species_, self._n_lin, K)[sp]  # (n, nL, K)
            XL = self._lx(X)
            eps += np.einsum("if,ifk->ki", XL, Bl)
            if grad:
                dE[:, :, self._lcols] = Bl.transpose(2, 0, 1)
            if energy_row:
                lin = np.zeros((self.n_species_, self._n_lin))
                np.add.at(lin, sp, XL)
                row[self._lin_off:] = lin.reshape(-1)
        if energy_row:
            return eps, dE, row
        return eps, dE

    def _committee_samples(self):
        """Posterior weight deviations ``s_k = T^{-1} xi_k``, ``xi_k ~ N(0, I)``, shape
        (len(coef_), n_committee): ``Cov[s_k] = H_w^{-1}`` (``T`` = ``precision_factor_``).

        Drawn once from ``random_state`` (at fit with ``derivative_variance="committee"``,
        else at first use) and kept in ``committee_`` (saved with the model).
        """
        K = check_int(self.n_committee, "n_committee", type(self).__name__, low=2)
        S = getattr(self, "committee_", None)
        if S is None or S.shape != (self.coef_.shape[0], K):
            xi = _legacy_rng(self.random_state).standard_normal((self.coef_.shape[0], K))
            S = scipy.linalg.solve_triangular(self.precision_factor_, xi, check_finite=False)
            self.committee_ = S
        return S

    @property
    def _chunked_gradients(self):
        """Whether :meth:`predict_batch` reduces a ChunkedGradients one range of centres at a
        time (read by ``HybridPotential``'s σ path, which then bounds the Jacobian of a big
        cell): with ``derivative_variance="projected"`` (mean forces and design rows are sums
        over pairs); the DTC prior variances read the whole Jacobian."""
        return self.derivative_variance == "projected"

    @property
    def _adjoint_std(self):
        """Whether force / stress σ come from the adjoint committee (read by
        ``HybridPotential``, which then pushes :meth:`_committee_cotangents` through
        ``Descriptor.backward_many`` instead of building the Jacobian)."""
        return self.derivative_variance == "committee"

    def _committee_cotangents(self, X, species, energy_var=False):
        """Per-atom energies of the mean and the ``dE/dX`` rows of the adjoint committee.

        Parameters
        ----------
        X : ndarray, shape (n_atoms, n_features)
            Descriptors of the atoms of **one** structure.
        species : ndarray of int, shape (n_atoms,)
        energy_var : bool, default=False
            Also return the predictive variance of the structure's total energy (the exact
            projected-process + DTC variance plus the energy noise, the square of
            :meth:`predict_batch`'s ``energy_std``), from the kernel values computed for the
            rows.

        Returns
        -------
        eps : ndarray, shape (n_atoms,)
            eV (mean model).
        dE_dX : ndarray, shape (1 + n_committee, n_atoms, n_features)
            Row 0: the mean model; rows ``1 + k``: member ``k``'s deviation ``s_k`` divided by
            ``sqrt(n_committee)``, so that the parameter variance of any force or stress
            component is the sum of the squares of its rows' values (the input of
            ``Descriptor.backward_many``).
        energy_var : float
            eV², only with ``energy_var``.
        """
        X, sp = self._check_X(X, species, "_committee_cotangents")
        S = self._committee_samples()
        W = np.concatenate([self.coef_[:, None], S / np.sqrt(S.shape[1])], axis=1)
        if not energy_var:
            eps, dE = self._weight_gradients(X, sp, W)
            return eps[0], dE
        eps, dE, row = self._weight_gradients(X, sp, W, energy_row=True)
        n = X.shape[0]
        Er = row[None, :]
        var = self._param_variance(Er) + self._dtc_energy_variance(
            X, sp, np.zeros(n, dtype=np.int64), 1, Er)
        return eps[0], dE, float(var[0] + (n * self._noise_of("energy")) ** 2)

    def _committee_outputs(self, X, sp, st, g, vol, ok):
        """Forces (K, n_atoms, 3) and Voigt stresses (K, n_structures, 6; NaN unless
        ``ok``) of the committee members' deviations ``s_k``, through the batch Jacobian."""
        from ..descriptors._base import _contract_members, _scatter_pair_gradients

        _, G = self._weight_gradients(X, sp, self._committee_samples())
        K, n, ns = G.shape[0], X.shape[0], vol.shape[0]
        pi = np.ascontiguousarray(g.pair_i, dtype=np.int64)
        pj = np.asarray(g.pair_j, dtype=np.int64)
        gk = _contract_members(pi, np.ascontiguousarray(g.d_drij, dtype=np.float64), G)
        npair = pi.shape[0]
        forces = -_scatter_pair_gradients(pi, pj, gk, n)
        S = scipy.sparse.csr_matrix((np.ones(npair), (st[pi], np.arange(npair))),
                                    shape=(ns, npair))
        rij = np.asarray(g.rij, dtype=np.float64)
        stress = np.full((K, ns, 6), np.nan)
        for v, (a, b) in enumerate(VOIGT):
            vir = np.asarray(S @ (gk[:, :, a] * rij[None, :, b]).T)     # (ns, K)
            stress[:, ok, v] = (vir[ok] / vol[ok, None]).T
        return forces, stress

    def predict_batch(self, batch, return_std=False, include_noise=True):
        """Energies, forces and stresses of a batch (see the Regressor contract).

        Parameters
        ----------
        batch : StructureBatch
            Descriptors (and, for forces and stress, ``gradients``); labels are ignored.
        return_std : bool, default=False
            Add ``"energy_std"`` (eV), ``"forces_std"`` (eV/Å), ``"stress_std"`` (eV/Å³).
        include_noise : bool, default=True
            Add the fitted observation noise of the label kind (the per-atom energy noise
            times ``N_s`` for total energies).

        Returns
        -------
        dict
            ``"energy"`` (n_structures,) eV; with gradients ``"forces"`` (n_atoms, 3) eV/Å and
            ``"stress"`` (n_structures, 6) eV/Å³ (NaN unless 3-D periodic).

        Raises
        ------
        hybridpot.NotFittedError
            Before ``fit``.
        hybridpot.InvalidParameterError
            For a ``batch`` that is not a StructureBatch or whose descriptors have the wrong
            shape.
        """
        self._check_fitted()
        owner = type(self).__name__
        if not isinstance(batch, StructureBatch):
            raise InvalidParameterError(
                f"The 'batch' argument of {owner}.predict_batch must be a StructureBatch. "
                f"Got {type(batch).__name__} instead.")
        X, sp = self._check_X(batch.X, batch.species, "predict_batch")
        ns = batch.n_structures
        st = np.asarray(batch.structure, dtype=np.int64)
        g = batch.gradients
        eps, dE_dX = self.atomic_energy_gradient(X, sp, _grad=g is not None)
        out = {"energy": np.bincount(st, weights=eps, minlength=ns)}
        vol = np.asarray(batch.volume, dtype=np.float64)
        ok = np.isfinite(vol) & (vol > 0)
        if g is not None:
            dE_dr = np.zeros((batch.n_atoms, 3))
            vir = np.zeros((ns, 6))
            for c in gradient_chunks(g):   # one piece unless ChunkedGradients (big cells)
                gp = np.einsum("paf,pf->pa", c.d_drij, dE_dX[c.pair_i])
                np.add.at(dE_dr, c.pair_j, gp)
                np.add.at(dE_dr, c.pair_i, -gp)
                s_of_pair = st[c.pair_i]
                for v, (a, b) in enumerate(VOIGT):
                    vir[:, v] += np.bincount(s_of_pair, weights=gp[:, a] * c.rij[:, b],
                                             minlength=ns)
            out["forces"] = -dE_dr
            stress = np.full((ns, 6), np.nan)
            stress[ok] = vir[ok] / vol[ok, None]
            out["stress"] = stress
        if not return_std:
            return out
        nat = batch.n_atoms_per_structure
        mode = check_choice(self.derivative_variance, "derivative_variance",
                            DERIVATIVE_VARIANCES, owner)
        want_rows = g is not None and mode != "committee"
        Er, Fr, Sr = self.design_rows(batch, forces=want_rows, stress=want_rows)
        var = self._param_variance(Er) + self._dtc_energy_variance(X, sp, st, ns, Er)
        if include_noise:
            var = var + (nat * self._noise_of("energy")) ** 2
        out["energy_std"] = np.sqrt(var)
        if g is not None and mode == "committee":
            fk, sk = self._committee_outputs(X, sp, st, g, vol, ok)
            nf = self._noise_of("forces") ** 2 if include_noise else 0.0
            ns2 = self._noise_of("stress") ** 2 if include_noise else 0.0
            out["forces_std"] = np.sqrt(np.mean(fk ** 2, axis=0) + nf)
            out["stress_std"] = np.sqrt(np.mean(sk ** 2, axis=0) + ns2)
        elif g is not None:
            dtc = mode == "dtc"
            var = self._param_variance(Fr)
            coords = self._hessian_coordinates(X, sp, g) if dtc else None
            if dtc:
                var = var + self._dtc_force_variance(X, sp, g, Fr, coords)
            if include_noise:
                var = var + self._noise_of("forces") ** 2
            out["forces_std"] = np.sqrt(var).reshape(-1, 3)
            sstd = np.full((ns, 6), np.nan)
            if ok.any():
                rows = Sr.reshape(ns, 6, -1)[ok].reshape(-1, Sr.shape[1])
                var = self._param_variance(rows)
                if dtc:
                    var = var + self._dtc_stress_variance(X, sp, st, g, vol, ok, rows,
                                                          coords)
                if include_noise:
                    var = var + self._noise_of("stress") ** 2
                sstd[ok] = np.sqrt(var).reshape(-1, 6)
            out["stress_std"] = sstd
        return out

    def _param_variance(self, A):
        if A.shape[0] == 0:
            return np.zeros(0)
        V = scipy.linalg.solve_triangular(self.precision_factor_, A.T, trans="T",
                                          check_finite=False)
        return np.einsum("ij,ij->j", V, V)

    def _dtc_energy_variance(self, X, sp, st, ns, Er):
        """``alpha^{-1} (sum_{ij} k(X_i, X_j) - a^T K^{-1} a)`` per structure (>= 0).

        The exact prior term ``sum_{ij} k`` (pairs of atoms of one element) has no form
        through the ``M`` inducing points (replacing it by the Nyström ``a^T K^{-1} a`` would
        drop the DTC term): it is ``O(n^2 F / 2)`` (:func:`_kernel_sum`), ``O(n F^2)`` for the
        dot kernel with ``zeta`` <= 2.
        """
        kss = np.zeros(ns)
        order = np.argsort(st, kind="stable")
        bounds = np.searchsorted(st[order], np.arange(ns + 1))
        for s in range(ns):  # loop over structures; each term is vectorised over its atoms
            atoms = order[bounds[s]:bounds[s + 1]]
            for z in np.unique(sp[atoms]):
                if self._offsets[z + 1] == self._offsets[z]:
                    continue
                Y = _prepared(self.kernel, self._kx(X[atoms[sp[atoms] == z]]),
                              self._kcentre[z], self._ksoft[z])[0]
                kss[s] += _kernel_sum(Y, self.kernel == "dot", self._zeta,
                                      self.length_scale_ or 1.0)
        nk = self._n_kernel
        Z = scipy.linalg.solve_triangular(self.kmm_factor_[:nk, :nk], Er[:, :nk].T, lower=True,
                                          check_finite=False)
        q = np.einsum("ij,ij->j", Z, Z)
        return np.maximum(kss - q, 0.0) / self.alpha_

    def _projected_prior(self, rows):
        """``a^T K^{-1} a`` of the kernel columns of every row (the DTC prior, times alpha)."""
        nk = self._n_kernel
        Z = scipy.linalg.solve_triangular(self.kmm_factor_[:nk, :nk], rows[:, :nk].T,
                                          lower=True, check_finite=False)
        return np.einsum("ij,ij->j", Z, Z)

    def _hessian_coordinates(self, X, sp, g):
        """Kernel coordinates ``Y``, species (-1: no inducing points), the pair Jacobian ``D``
        of the kernel features (``X`` and the Jacobian are restricted to them; no copy without
        a linear block) and, for dot, ``inv_n`` = ``1 / sqrt(|x|^2 + s^2)``: the coordinates of
        :func:`_hessian_quadratic_forms` are the projections ``(I - y y^T) g / n`` of the
        per-atom sums ``g`` of ``D``, applied after summing (:func:`_force_prior_kernel`,
        :meth:`_stress_prior_variance`), so the projected ``(n_pairs, 3, F)`` copy is never
        held (it doubled the σ memory: ~750 MB on 4000 atoms at F=180)."""
        X = self._kx(np.asarray(X, dtype=np.float64))
        Y = np.zeros_like(X)
        spk = sp.copy()
        inv_n = np.zeros(X.shape[0])
        for z in range(self.n_species_):
            m = sp == z
            if self._offsets[z + 1] == self._offsets[z]:
                spk[m] = -1
                continue
            if self.kernel == "dot":
                Y[m], nrm = _unit_rows(X[m], self._ksoft[z])
                inv_n[m] = np.where(nrm > 0, 1.0 / np.where(nrm > 0, nrm, 1.0), 0.0)
            else:
                Y[m] = X[m] - self._kcentre[z][None, :]
        D = np.asarray(self._kx(g.d_drij), dtype=np.float64)
        pi = np.asarray(g.pair_i, dtype=np.int64)
        inv_l2 = 0.0 if self.kernel == "dot" else 1.0 / self.length_scale_ ** 2
        return (np.ascontiguousarray(Y), spk, np.ascontiguousarray(D), pi,
                self.kernel == "dot", int(self._zeta), float(inv_l2), inv_n)

    def _dtc_force_variance(self, X, sp, g, Fr, coords=None):
        """``alpha^{-1} (k_** - a^T K^{-1} a)`` of every force component, shape (3 n_atoms,)."""
        kss = self._force_prior_variance(X, sp, g, coords)
        return np.maximum(kss - self._projected_prior(Fr) / self.alpha_, 0.0)

    def _force_prior_variance(self, X, sp, g, coords=None):
        """Exact-GP prior variance ``k_**`` (eV²/Å²) of every force component, (3 n_atoms,)."""
        n = X.shape[0]
        if g.pair_i.shape[0] == 0 or n == 0:
            return np.zeros(3 * n)
        Y, spk, D, pi, dot, zeta, inv_l2, inv_n = coords or self._hessian_coordinates(X, sp, g)
        pj = np.asarray(g.pair_j, dtype=np.int64)
        nbr_pair = np.argsort(pj, kind="stable")
        nbr_ptr = np.searchsorted(pj[nbr_pair], np.arange(n + 1)).astype(np.int64)
        ctr_pair = np.argsort(pi, kind="stable")
        ctr_ptr = np.searchsorted(pi[ctr_pair], np.arange(n + 1)).astype(np.int64)
        max_local = int(np.bincount(pj, minlength=n).max()) + 1
        kss = _force_prior_kernel(Y, spk, pi, D, nbr_ptr, nbr_pair, ctr_ptr, ctr_pair,
                                  max_local, dot, zeta, inv_l2, inv_n, dot).reshape(-1)
        return kss / self.alpha_

    def _dtc_stress_variance(self, X, sp, st, g, vol, ok, rows, coords=None):
        """The DTC term of the Voigt stresses of the structures ``ok``, shape (6 n_ok,)."""
        kss = self._stress_prior_variance(X, sp, st, g, vol, ok, coords)
        return np.maximum(kss - self._projected_prior(rows) / self.alpha_, 0.0)

    def _stress_prior_variance(self, X, sp, st, g, vol, ok, coords=None):
        """Exact-GP prior variance (eV²/Å⁶) of the Voigt stresses of the structures ``ok``,
        shape (6 n_ok,)."""
        n, ns = X.shape[0], vol.shape[0]
        if g.pair_i.shape[0] == 0 or n == 0:
            return np.zeros(6 * int(np.sum(ok)))
        Y, spk, D, pi, dot, zeta, inv_l2, inv_n = coords or self._hessian_coordinates(X, sp, g)
        rij = np.asarray(g.rij, dtype=np.float64)
        inv_v = np.zeros(ns)
        inv_v[ok] = 1.0 / vol[ok]
        G = np.zeros((n, 6, Y.shape[1]))
        # in blocks of pairs: the product D[:, a] * r_b is (block, F), not (n_pairs, F)
        for p0 in range(0, pi.size, PAIR_BLOCK * 64):
            p1 = min(pi.size, p0 + PAIR_BLOCK * 64)
            S = scipy.sparse.csr_matrix((np.ones(p1 - p0), (pi[p0:p1], np.arange(p1 - p0))),
                                        shape=(n, p1 - p0))
            for v, (a, b) in enumerate(VOIGT):   # dX_i / d eps_ab / V
                G[:, v] += S @ (D[p0:p1, a, :] * rij[p0:p1, b, None])
        if dot:   # the projection (I - y y^T) / n of each atom's sum (see _hessian_coordinates)
            G -= np.einsum("ivf,if->iv", G, Y)[:, :, None] * Y[:, None, :]
            G *= inv_n[:, None, None]
        G *= inv_v[st][:, None, None]
        keep = ok[st]
        kss = np.zeros((int(np.sum(ok)), 6))
        # one pass per element: the kernel (and its Hessian) vanishes between elements, so
        # element-pure atom blocks skip the cross-element block products (22 % of the
        # O(n^2 F) work for Cu7Ni1, half of it for a 1:1 binary)
        for z in np.unique(spk[keep]):
            if z < 0:
                continue
            sel = np.nonzero(keep & (spk == z))[0]
            order = sel[np.argsort(st[sel], kind="stable")]
            bounds = np.searchsorted(st[order], np.nonzero(ok)[0])
            bounds = np.append(bounds, order.size).astype(np.int64)
            kss += _stress_prior_kernel(Y, spk, order.astype(np.int64), bounds, G, dot, zeta,
                                        inv_l2, STRESS_BLOCK_ATOMS)
        return kss.reshape(-1) / self.alpha_

    def _noise_of(self, kind):
        return float(self.noise_.get(kind, 0.0))

    def _predictive_noise_std(self, kind):
        """Noise std of one value of ``kind`` included in ``predict_batch``'s σ (eV/atom for
        energies, eV/Å, eV/Å³); read by :func:`hybridpot.uq.recalibrate` to separate it."""
        self._check_fitted()
        return self._noise_of(kind)

    def _set_noise_dict(self):
        self.noise_ = {k: float(1.0 / np.sqrt(b)) for k, b in self._beta.items()}

    # -- serialisation ----------------------------------------------------------------------
    def get_fitted_state(self):
        """``(state, arrays)``: JSON-able dict and ndarrays of the fitted posterior."""
        self._check_fitted()
        state = {"n_species": int(self.n_species_), "n_features": int(self.n_features_in_),
                 "species": list(self.species_) if self.species_ is not None else None,
                 "group_names": list(self.group_names_), "alpha_": self.alpha_,
                 "noise_": dict(self.noise_), "length_scale_": self.length_scale_,
                 "log_evidence_": self.log_evidence_, "n_iter_": int(self.n_iter_),
                 "alpha_linear_": self.alpha_linear_}
        arrays = {"inducing": self.inducing_.copy(),
                  "inducing_species": self.inducing_species_.copy(),
                  "centre": self.centre_.copy(), "coef": self.coef_.copy(),
                  "precision_factor": self.precision_factor_.copy(),
                  "kmm_factor": self.kmm_factor_.copy()}
        if getattr(self, "dot_softening_", None) is not None:
            arrays["dot_softening"] = self.dot_softening_.copy()
        if self.linear_scale_ is not None:
            arrays["linear_scale"] = self.linear_scale_.copy()
        if getattr(self, "committee_", None) is not None:
            arrays["committee"] = self.committee_.copy()
        return state, arrays

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
        from .._exceptions import ModelFormatError

        self._validate()
        owner = type(self).__name__
        try:
            self.n_species_ = int(state["n_species"])
            self.n_features_in_ = int(state["n_features"])
            self.species_ = None if state["species"] is None else tuple(state["species"])
            self.group_names_ = tuple(state["group_names"])
            self.alpha_ = float(state["alpha_"])
            noise = {str(k): float(v) for k, v in dict(state["noise_"]).items()}
            ls = state["length_scale_"]
            self.length_scale_ = None if ls is None else float(ls)
            self.log_evidence_ = float(state["log_evidence_"])
            self.n_iter_ = int(state["n_iter_"])
            U = np.asarray(arrays["inducing"], dtype=np.float64)
            usp = np.asarray(arrays["inducing_species"], dtype=np.int64)
            centre = np.asarray(arrays["centre"], dtype=np.float64)
            coef = np.asarray(arrays["coef"], dtype=np.float64)
            T = np.asarray(arrays["precision_factor"], dtype=np.float64)
            L = np.asarray(arrays["kmm_factor"], dtype=np.float64)
            self._set_blocks(self.n_features_in_)
            al = state.get("alpha_linear_")
            self.alpha_linear_ = None if al is None else float(al)
            ls_lin = (np.asarray(arrays["linear_scale"], dtype=np.float64) if self._n_lin
                      else None)
            com = (np.asarray(arrays["committee"], dtype=np.float64) if "committee" in arrays
                   else None)
            # absent from files written before it existed: those models used unit vectors
            soft = (np.asarray(arrays["dot_softening"], dtype=np.float64)
                    if "dot_softening" in arrays else np.zeros(self.n_species_))
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelFormatError(
                f"Fitted state of {owner} is incomplete or corrupt: {exc!r}.") from exc
        if (self._n_lin > 0) != (self.alpha_linear_ is not None):
            raise ModelFormatError(
                f"Fitted state of {owner}: 'alpha_linear_' is {self.alpha_linear_!r} but "
                f"linear_features={self.linear_features!r}; the state was saved with another "
                "linear block.")
        M, F = U.shape[0], self.n_features_in_
        Mt = M + (self.n_species_ if self.bias else 0) + self.n_species_ * self._n_lin
        shapes = {"inducing": (U.shape, (M, F)), "inducing_species": (usp.shape, (M,)),
                  "centre": (centre.shape, (self.n_species_, F)), "coef": (coef.shape, (Mt,)),
                  "precision_factor": (T.shape, (Mt, Mt)), "kmm_factor": (L.shape, (Mt, Mt))}
        if ls_lin is not None:
            shapes["linear_scale"] = (ls_lin.shape, (self.n_species_, self._n_lin))
        if com is not None:
            shapes["committee"] = (com.shape, (Mt, com.shape[1] if com.ndim == 2 else -1))
        shapes["dot_softening"] = (soft.shape, (self.n_species_,))
        for name, (got, want) in shapes.items():
            if got != want:
                raise ModelFormatError(
                    f"Fitted state of {owner}: '{name}' has shape {got}, expected {want}.")
        if not np.all(np.isfinite(soft) & (soft >= 0)):
            raise ModelFormatError(
                f"Fitted state of {owner}: 'dot_softening' must be finite and >= 0.")
        if not all(np.isfinite(v) and 0.0 < v < 1e100 for v in noise.values()):
            raise ModelFormatError(
                f"Fitted state of {owner}: 'noise_' values must be finite and in (0, 1e100). "
                f"Got {noise}.")
        if not np.all(np.diag(T) != 0.0):   # triangular: predictive variances solve with it
            raise ModelFormatError(
                f"Fitted state of {owner}: 'precision_factor' is singular (a zero on its "
                "diagonal).")
        self.inducing_, self.inducing_species_, self.centre_ = U, usp, centre
        self.dot_softening_ = soft
        self.coef_, self.precision_factor_, self.kmm_factor_ = coef, T, L
        self.linear_scale_ = ls_lin
        self.__dict__.pop("committee_", None)
        if com is not None:
            self.committee_ = com
        self._beta = {k: 1.0 / v ** 2 for k, v in noise.items()}
        self._set_noise_dict()
        self._set_offsets()
        return self
