"""Dask scale-out of fitting: descriptors and design rows computed, and reduced, on the workers.

With ``HybridPotential(n_workers=k)`` (k > 1) or an explicit ``client=`` given to
:func:`fit_parallel`, the training structures are split into tasks of whole chunks.  Each
worker computes descriptors and Jacobians of its chunks and, for regressors that support
streamed sufficient statistics (the linear and Bayesian linear models and the sparse GP: the
TSQR factors of ``[A | y]`` per label kind), reduces them locally; partial factors are merged
pairwise on the workers (a tree reduction), so only ``O(P^2)`` factors ever travel and nothing
passes through the scheduler but task graphs.  The sparse GP first runs a candidate pass the
same way (per-task reservoirs of environments under the serial fit's per-atom random keys,
merged in order) and chooses the inducing points on the client; an
:class:`~hybridpot.regression.EnsembleRegressor` of sparse GPs runs both passes for all its
members at once (per-atom keys of every member).  Other regressors (the neural network,
ensembles of them) are fitted on the client from a source that fetches the batches from the
workers one task at a time, in the serial order (descriptors still computed in parallel; the
batches stay on the workers until read, so the client holds what the regressor keeps, e.g. the
Jacobians pruned by ``max_force_rows``, plus one task's batches).

The result is identical to the serial path up to floating-point round-off (QR factors of the
same rows in a different order); ``BayesianLinearRegressor(solver="normal")`` amplifies that
round-off through its normal equations (1e-6 relative on a small Cu fit).

The baseline is evaluated on the client (the residual labels are formed before the cluster is
used); the workers get only the descriptor, the chunk size, the reference energies and the
geometry of the training structures (bare ``Atoms``: no calculator, info or arrays), so an
ASE calculator that does not pickle works as baseline or as the labels' calculator.

A ``dask.distributed`` client is created on demand as an embedded ``LocalCluster`` with
``n_workers`` single-threaded worker processes (``OMP_NUM_THREADS=1`` and friends set in the
workers), and closed after the fit; pass ``client=`` to use any existing cluster.
Dask is an optional dependency: ``pip install "hybridpot[dask]"``.
"""

from __future__ import annotations

import contextlib
import os

from ._exceptions import InvalidParameterError

__all__ = ["fit_parallel", "local_client"]

_SINGLE_THREAD_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
                      "MKL_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}


def _require_dask():
    try:
        import distributed  # noqa: F401
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise InvalidParameterError(
            "n_workers > 1 needs dask.distributed: pip install 'hybridpot[dask]'.") from e


@contextlib.contextmanager
def local_client(n_workers, *, processes=True):
    """An embedded ``LocalCluster`` client with single-threaded workers (closed on exit).

    The client is not made dask's default client: wrap code that needs a current client
    (``distributed.as_completed``, ``get_client``) in ``client.as_current()``.  A context
    manager: ``with local_client(2) as client: ...``.

    Parameters
    ----------
    n_workers : int
        Worker processes (or threads with ``processes=False``), one thread each; the
        OpenBLAS / OMP / MKL thread counts are set to 1 in the workers.
    processes : bool, default=True
        Workers in separate processes (False: threads of this process).

    Yields
    ------
    distributed.Client
        Connected to the cluster; client and cluster are closed when the block exits.

    Raises
    ------
    hybridpot.InvalidParameterError
        When dask.distributed is not installed (extra ``dask``).
    """
    _require_dask()
    from distributed import Client, LocalCluster

    old = {k: os.environ.get(k) for k in _SINGLE_THREAD_ENV}
    os.environ.update(_SINGLE_THREAD_ENV)  # inherited by the worker processes
    try:
        cluster = LocalCluster(n_workers=int(n_workers), threads_per_worker=1,
                               processes=processes, dashboard_address=":0")
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    try:
        # not the default client: dask computations elsewhere in the program keep their
        # scheduler, and nothing outlives the fit
        client = Client(cluster, set_as_default=False)
    except BaseException:
        cluster.close()  # a client that cannot connect must not leave the workers running
        raise
    try:
        yield client
    finally:
        try:
            client.close()
        finally:
            cluster.close()


def _worker_model(model):
    """The part of ``model`` the workers use to build training batches (``_chunks`` and
    ``_batch``): its descriptor, chunk size and fitted reference energies.

    Not the baseline (the residual labels are computed on the client before the cluster is
    used, so an unpicklable ASE calculator, e.g. one holding a lock, a socket or a GPU model,
    works), nor the regressor or the fitted state of an earlier fit (which would travel to
    every worker for nothing).
    """
    from .potential import HybridPotential

    wm = HybridPotential(descriptor=model.descriptor, chunk_size=model.chunk_size)
    wm.reference_energies_ = dict(model.reference_energies_)
    return wm


#: task arguments up to this pickled size are sent with every task; larger ones are scattered
_INLINE_BYTES = 1 << 20


def _pickled_size(obj):
    import cloudpickle  # a dependency of dask.distributed

    return len(cloudpickle.dumps(obj))


def _argument(cl, obj):
    """``obj`` as a task argument.  Small objects (the worker model, an unfitted regressor)
    travel inside each task, so a task lost with a dying worker is rerun elsewhere; data
    scattered to the workers is lost with a worker that dies ('cancelled for reason: already
    forgotten').  Large ones (a sparse GP with its inducing set) are scattered."""
    if _pickled_size(obj) <= _INLINE_BYTES:
        return obj
    return cl.scatter(obj, broadcast=True)


def _check_picklable(obj, what):
    """Raise a typed error before any cluster is started if ``obj`` cannot travel."""
    try:
        _pickled_size(obj)
    except Exception as exc:  # pickling raises TypeError, PicklingError, AttributeError, ...
        raise InvalidParameterError(
            f"Fitting with Dask (n_workers > 1 or client=) sends the {what} to the workers, "
            f"so it must pickle; {type(exc).__name__}: {exc}. Use n_workers=1 and no client "
            "to fit in this process.") from exc


def _subset(prep, ids):
    """The part of a prepared training set with structures ``ids`` (renumbered 0..)."""
    from ase import Atoms

    from .potential import _Prepared

    # the descriptors need only the geometry: the labels are already in ``prep`` and the
    # user's Atoms may carry a calculator that does not pickle (a lock, a socket, a live
    # LAMMPS handle) or large info/arrays that need not travel
    bare = [Atoms(numbers=a.numbers, positions=a.positions, cell=a.cell.array, pbc=a.pbc)
            for a in (prep.structures[s] for s in ids)]
    return _Prepared(bare, [prep.species_idx[s] for s in ids],
                     prep.energy[ids], [prep.forces[s] for s in ids], prep.stress[ids],
                     {k: v[ids] for k, v in prep.weights.items()}, prep.group[ids],
                     prep.group_names)


def _task_batches(model, sub, global_ids):
    import numpy as np

    n = len(sub.structures)
    for ids in model._chunks(n):
        need = bool(np.isfinite(sub.stress[ids]).any()
                    or any(np.isfinite(sub.forces[s]).any() for s in ids))
        b = model._batch(sub, ids, need)
        b.index = np.asarray(global_ids)[ids]
        yield b


def _worker_stats(model, regressor, sub, global_ids, meta):
    stats = regressor._new_stats(meta)
    for batch in _task_batches(model, sub, global_ids):
        regressor._add_batch(stats, batch, meta)
    return stats


def _worker_batches(model, sub, global_ids):
    return list(_task_batches(model, sub, global_ids))


def _merge(regressor, a, b):
    return regressor._merge_stats(a, b)


def _worker_candidates(model, regressor, sub, global_ids, meta, keys):
    cand = regressor._new_candidates(meta)
    off = 0
    for batch in _task_batches(model, sub, global_ids):
        regressor._add_candidates(cand, batch, keys[off:off + batch.n_atoms], meta)
        off += batch.n_atoms
    return cand


def _merge_candidates(regressor, a, b):
    return regressor._merge_candidates(a, b)


def _tree_reduce(cl, merge, reg_f, futs):
    """Merge ``futs`` pairwise on the workers, keeping their order; returns the result."""
    while len(futs) > 1:
        nxt = [cl.submit(merge, reg_f, futs[k], futs[k + 1], pure=False)
               for k in range(0, len(futs) - 1, 2)]
        if len(futs) % 2:
            nxt.append(futs[-1])
        futs = nxt
    return futs[0].result()


def fit_parallel(model, regressor, prep, source, *, client=None, tasks_per_worker=4):
    """Fit ``regressor`` on the training set ``prep`` of ``model`` with Dask (see module doc).

    Parameters
    ----------
    model : HybridPotential
        Supplies the descriptor, reference energies and chunking.
    regressor : Regressor
        Unfitted clone; fitted in place.
    prep : hybridpot.potential._Prepared
        Residual labels of the training structures.
    source : BatchSource
        The serial batch source (its sizes and group names are reused).
    client : distributed.Client, optional
        Use this cluster; default: an embedded LocalCluster with ``model.n_workers`` workers.
    tasks_per_worker : int, default=4
        The training set is split into ``min(n_structures, n_workers * tasks_per_worker)``
        tasks (smaller tasks balance the load, larger ones cost less scheduling).

    Raises
    ------
    hybridpot.InvalidParameterError
        For a ``client`` that is not a running ``distributed.Client``, a descriptor or
        regressor that does not pickle, or dask.distributed missing.
    """
    import numpy as np

    n = len(prep.structures)
    meta = {"n_species": source.n_species, "n_features": source.n_features,
            "species": source.species, "group_names": source.group_names}
    if client is not None:
        _require_dask()
        from distributed import Client

        if not isinstance(client, Client):
            raise InvalidParameterError(
                "The 'client' argument of HybridPotential.fit must be a distributed.Client "
                "(e.g. Client('tcp://host:8786') for a running scheduler) or None. Got "
                f"{client!r} instead.")
        if client.status != "running":
            raise InvalidParameterError(
                "The 'client' argument of HybridPotential.fit must be a running "
                f"distributed.Client. Got a client with status {client.status!r}.")
    worker_model = _worker_model(model)
    _check_picklable(worker_model.descriptor, f"descriptor ({type(model.descriptor).__name__})")
    _check_picklable(regressor, f"regressor ({type(regressor).__name__})")
    ctx = contextlib.nullcontext(client) if client is not None else \
        local_client(model.n_workers)
    with ctx as cl:
        n_workers = max(1, len(cl.scheduler_info().get("workers", {})) or int(model.n_workers))
        n_tasks = max(1, min(n, n_workers * int(tasks_per_worker)))
        splits = [s for s in np.array_split(np.arange(n), n_tasks) if len(s)]
        passes = getattr(regressor, "_fit_passes", None)   # EnsembleRegressor says which
        if passes is None:
            streamed = all(hasattr(regressor, a) for a in
                           ("_new_stats", "_add_batch", "_merge_stats", "_fit_stats"))
            passes = ()
            if streamed:
                passes = ("candidates", "stats") if hasattr(regressor, "_candidate_keys") \
                    else ("stats",)
        streamed = "stats" in passes
        model_f = _argument(cl, worker_model)
        if "candidates" in passes:
            # two-pass regressors (sparse GP): a candidate pass on the workers with the
            # per-atom reservoir keys of the serial fit, then the inducing points on the client
            nat = np.array([len(a) for a in prep.structures], dtype=np.int64)
            keys = regressor._candidate_keys(meta, int(nat.sum()))
            off = np.concatenate([[0], np.cumsum(nat)])
            reg_f = _argument(cl, regressor)
            futs = [cl.submit(_worker_candidates, model_f, reg_f, _subset(prep, ids), ids, meta,
                              keys[off[ids[0]]:off[ids[-1] + 1]], pure=False) for ids in splits]
            regressor._set_inducing(_tree_reduce(cl, _merge_candidates, reg_f, futs), meta)
        if streamed:
            reg_f = _argument(cl, regressor)
            futs = [cl.submit(_worker_stats, model_f, reg_f, _subset(prep, ids), ids, meta,
                              pure=False) for ids in splits]
            regressor._fit_stats(_tree_reduce(cl, _merge, reg_f, futs), meta)
        else:
            futs = [cl.submit(_worker_batches, model_f, _subset(prep, ids), ids, pure=False)
                    for ids in splits]
            from .regression._base import BatchSource

            def fetched():
                # one task's batches at a time, in the serial order: the batches stay on the
                # workers until the regressor reads them (a NeuralNetworkRegressor with
                # max_force_rows keeps only the pruned copy; a list held here kept every
                # full Jacobian on the client as well); each pass over the source (one per
                # member of an EnsembleRegressor) fetches them again
                for f in futs:
                    yield from f.result()

            regressor.fit(BatchSource(fetched, n_species=meta["n_species"],
                                      n_features=meta["n_features"], species=meta["species"],
                                      group_names=meta["group_names"]))
    return regressor
