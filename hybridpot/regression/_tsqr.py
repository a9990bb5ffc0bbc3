"""Streaming (TSQR) reduction of weighted least-squares rows.

For every *key* (a label kind such as ``"forces"``, or a ``(kind, group)`` pair) the
accumulator keeps the upper-triangular factor ``R`` of the QR decomposition of the augmented
matrix ``[A | y]`` of all rows seen so far under that key:

``R <- qr(vstack(R, chunk)).r``       (tall-skinny QR, "TSQR")

Incoming chunks are buffered until at least ``buffer_rows`` rows are pending, so each QR runs
over a block of a few times ``n_columns`` rows.  Memory is ``O(n_columns**2)`` per key plus the
buffer, independent of the total number of rows.  From ``R`` (shape ``(r, n_columns + 1)``,
``r <= n_columns + 1``)

- ``A^T A = R[:, :-1]^T R[:, :-1]``,
- ``A^T y = R[:, :-1]^T R[:, -1]``,
- ``y^T y = ||R[:, -1]||^2``,

without ever forming ``A^T A`` from the rows (no loss of precision from squaring the condition
number while accumulating); solvers stack the ``R`` factors directly.

``method="gram"`` is the fast alternative: it accumulates ``[A | y]^T [A | y]`` with BLAS-3
products (typically 10-100x faster than Householder QR on tall blocks) and returns a factor
``R`` with ``R^T R = [A | y]^T [A | y]`` (Cholesky, or a symmetric square root of the
column-equilibrated matrix when it is numerically singular).  It squares the condition number
of ``A``: relative accuracy of order ``eps * cond(A)**2`` instead of ``eps * cond(A)``; use it
for well-scaled problems.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg

from .._exceptions import InvalidParameterError

__all__ = ["TSQRAccumulator"]


class TSQRAccumulator:
    """Per-key streaming QR factor of weighted least-squares rows ``[A | y]``.

    Parameters
    ----------
    n_columns : int
        Number of columns of the design ``A`` (the target ``y`` is appended as one more).
    buffer_rows : int, optional
        Rows buffered before a QR update; default ``max(4 * (n_columns + 1), 256)``.
    method : {"qr", "gram"}, default="qr"
        Householder TSQR (numerically careful) or Gram accumulation (fast).

    Attributes
    ----------
    n_rows : dict
        Key -> number of rows added.
    sum_log_weight : dict
        Key -> ``sum(log(w_r))`` over the rows (each row was pre-multiplied by ``sqrt(w_r)``);
        needed for the exact log evidence of heteroscedastic data.
    """

    def __init__(self, n_columns, *, buffer_rows=None, method="qr"):
        if method not in ("qr", "gram"):
            raise InvalidParameterError(
                "The 'method' parameter of TSQRAccumulator must be one of {'qr', 'gram'}. "
                f"Got {method!r} instead.")
        self.method = method
        self.n_columns = int(n_columns)
        if self.n_columns < 1:
            raise InvalidParameterError(
                f"The 'n_columns' parameter of TSQRAccumulator must be an int in [1, inf]. "
                f"Got {n_columns!r} instead.")
        self.buffer_rows = (max(4 * (self.n_columns + 1), 256) if buffer_rows is None
                            else int(buffer_rows))
        self._R = {}
        self._buf = {}
        self._nbuf = {}
        self.n_rows = {}
        self.sum_log_weight = {}

    def add(self, key, A, y, weights=None):
        """Add rows ``sqrt(w) * A`` and targets ``sqrt(w) * y`` under ``key``.

        Parameters
        ----------
        key : hashable
        A : ndarray, shape (n_rows, n_columns)
        y : ndarray, shape (n_rows,)
        weights : ndarray, shape (n_rows,), optional
            Positive row weights (the loss is ``sum w * (A c - y)**2``); default 1.
        """
        A = np.asarray(A, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        if A.ndim != 2 or A.shape[1] != self.n_columns or y.shape != (A.shape[0],):
            raise InvalidParameterError(
                f"TSQRAccumulator.add expects A of shape (n_rows, {self.n_columns}) and y of "
                f"shape (n_rows,). Got {A.shape} and {y.shape} instead.")
        n = A.shape[0]
        if n == 0:
            return
        block = np.empty((n, self.n_columns + 1))
        block[:, :-1] = A
        block[:, -1] = y
        if weights is not None:
            w = np.asarray(weights, dtype=np.float64)
            if w.shape != (n,) or not np.all(w > 0) or not np.all(np.isfinite(w)):
                raise InvalidParameterError(
                    "The 'weights' argument of TSQRAccumulator.add must be finite and > 0 "
                    f"with shape ({n},). Got shape {w.shape} instead.")
            block *= np.sqrt(w)[:, None]
            self.sum_log_weight[key] = self.sum_log_weight.get(key, 0.0) + float(np.log(w).sum())
        else:
            self.sum_log_weight.setdefault(key, 0.0)
        if not np.all(np.isfinite(block)):
            raise InvalidParameterError(
                "TSQRAccumulator.add received non-finite rows or targets.")
        self.n_rows[key] = self.n_rows.get(key, 0) + n
        if self.method == "gram":
            G = self._buf.get(key)
            self._buf[key] = block.T @ block if G is None else G + block.T @ block
            self._R.pop(key, None)
            return
        self._buf.setdefault(key, []).append(block)
        self._nbuf[key] = self._nbuf.get(key, 0) + n
        if self._nbuf[key] >= self.buffer_rows:
            self._flush(key)

    def _gram_factor(self, key):
        G = self._buf[key]
        try:
            return np.linalg.cholesky(G).T
        except np.linalg.LinAlgError:
            # Numerically singular: symmetric square root of the *equilibrated* matrix
            # C = S^-1 G S^-1 (S = sqrt(diag G)), then R = C^(1/2) S.  Unlike the eigenvalues
            # of G itself (absolute error eps * ||G||, which wipes out columns whose scale is
            # many orders below the largest one), those of C resolve every column to
            # relative precision (Cholesky is scale-invariant, eigh is not).
            s = np.sqrt(np.diag(G))
            s[~(s > 0) | ~np.isfinite(s)] = 1.0
            w, V = np.linalg.eigh(G / s[:, None] / s[None, :])
            return (np.sqrt(np.clip(w, 0.0, None))[:, None] * V.T) * s[None, :]

    def _flush(self, key):
        if self.method == "gram":
            if key not in self._R and key in self._buf:
                self._R[key] = self._gram_factor(key)
            return
        parts = self._buf.get(key)
        if not parts:
            return
        if key in self._R:
            parts = [self._R[key]] + parts
        M = np.vstack(parts) if len(parts) > 1 else parts[0]
        R = scipy.linalg.qr(M, mode="r", overwrite_a=True, check_finite=False)[0]
        k = min(M.shape[0], M.shape[1])
        self._R[key] = np.ascontiguousarray(R[:k])
        self._buf[key] = []
        self._nbuf[key] = 0

    def keys(self):
        """Keys with at least one row, in insertion order."""
        return [k for k in self.n_rows if self.n_rows[k] > 0]

    def R(self, key):
        """Upper-triangular factor of ``[A | y]`` for ``key``, shape (r, n_columns + 1)."""
        self._flush(key)
        return self._R[key]

    def column_sq(self, key):
        """Weighted sums of squares of the columns of ``A``, shape (n_columns,)."""
        if self.method == "gram":
            return np.diag(self._buf[key])[:-1].copy()
        R = self.R(key)[:, :-1]
        return np.einsum("ij,ij->j", R, R)

    def gram(self, key):
        """``(A^T A, A^T y, y^T y)`` for ``key`` (computed from the R factor)."""
        R = self.R(key)
        Ra, r = R[:, :-1], R[:, -1]
        return Ra.T @ Ra, Ra.T @ r, float(r @ r)

    def merge(self, other):
        """Add all rows of another accumulator (same ``n_columns``) into this one."""
        if other.n_columns != self.n_columns:
            raise InvalidParameterError(
                f"Cannot merge accumulators with {other.n_columns} and {self.n_columns} columns.")
        if other.method != self.method:
            raise InvalidParameterError(
                f"Cannot merge a {other.method!r} accumulator into a {self.method!r} one.")
        for key in other.keys():
            R = other.R(key)
            if self.method == "gram":
                G = self._buf.get(key)
                self._buf[key] = R.T @ R if G is None else G + R.T @ R
                self._R.pop(key, None)
                self.n_rows[key] = self.n_rows.get(key, 0) + other.n_rows[key]
                self.sum_log_weight[key] = (self.sum_log_weight.get(key, 0.0)
                                            + other.sum_log_weight.get(key, 0.0))
                continue
            self._buf.setdefault(key, []).append(R.copy())
            self._nbuf[key] = self._nbuf.get(key, 0) + R.shape[0]
            self.n_rows[key] = self.n_rows.get(key, 0) + other.n_rows[key]
            self.sum_log_weight[key] = (self.sum_log_weight.get(key, 0.0)
                                        + other.sum_log_weight.get(key, 0.0))
            self._flush(key)
        return self
