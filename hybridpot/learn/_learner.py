"""The crash-safe active-learning loop: sample -> select -> label -> refit -> repeat."""

from __future__ import annotations

import io
import json
import numbers
import os
import time
import warnings
from pathlib import Path

import numpy as np

from .._exceptions import InvalidParameterError, ModelFormatError, OracleError
from .._validation import check_float, check_int
from ._weights import WEIGHTING_METHODS, importance_weights

__all__ = ["ActiveLearner", "label_structure", "read_labels", "make_oracle",
           "default_selector"]

STATE_FORMAT = "hybridpot-active-learning"
STATE_VERSION = 1
LABELS_FILE = "labels.extxyz"
FAILURES_FILE = "failures.jsonl"
STATE_FILE = "state.json"
MODEL_FILE = "model.hpot"
PROPOSALS_DIR = "proposals"


# ---------------------------------------------------------------------------- files
def _fsync_dir(path):
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _atomic_write(path, data):
    """Write ``data`` (str or bytes) to ``path`` atomically: temp file, fsync, os.replace."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    mode = "wb" if isinstance(data, bytes) else "w"
    with open(tmp, mode) as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _append_durable(path, text):
    """Append ``text`` to ``path`` in one write and fsync before returning."""
    with open(path, "a") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())


def _extxyz_text(structures):
    from ase.io import write

    buf = io.StringIO()
    write(buf, structures, format="extxyz")
    return buf.getvalue()


def _parse_frames(text):
    """The structures of extxyz ``text`` (what :func:`read_labels` gives for that file)."""
    from ase.io import read

    return read(io.StringIO(text), ":", format="extxyz")


def _complete_frames_end(text):
    """Character offset after the last complete extxyz frame of ``text``."""
    pos, end = 0, 0
    lines = text.splitlines(keepends=True)
    k = 0
    while k < len(lines):
        head = lines[k].strip()
        if not head:
            pos += len(lines[k])
            k += 1
            end = pos
            continue
        try:
            n = int(head)
        except ValueError:
            break
        if k + 2 + n > len(lines) or not lines[k + 1 + n].endswith("\n"):
            break
        pos += sum(len(x) for x in lines[k:k + 2 + n])
        k += 2 + n
        end = pos
    return end


def read_labels(path, *, repair=False):
    """Labelled structures of a run's ``labels.extxyz`` (file order).

    A trailing partial frame (a crash in the middle of an append) is ignored, and cut off the
    file when ``repair=True``.

    Parameters
    ----------
    path : str or path-like
        The ``labels.extxyz`` of a run directory.
    repair : bool, default=False
        Truncate the file after its last complete frame.

    Returns
    -------
    list of ase.Atoms
        The complete frames with their labels (empty when the file does not exist).
    """
    from ase.io import read

    path = Path(path)
    if not path.is_file():
        return []
    text = path.read_text()
    end = _complete_frames_end(text)
    if end != len(text) and repair:
        with open(path, "r+") as fh:
            fh.truncate(len(text[:end].encode()))
            fh.flush()
            os.fsync(fh.fileno())
    if end == 0:
        return []
    return read(io.StringIO(text[:end]), ":", format="extxyz")


class _run_lock:
    """Exclusive advisory lock on ``<run_dir>/.lock`` (``fcntl.flock``; no-op where flock is
    unavailable).  Two processes on one run directory (a requeued batch job while the first
    still runs) labelled every proposal twice (16 oracle calls for 9 labels, duplicated frames
    in labels.extxyz) and overwrote each other's state.json."""

    def __init__(self, folder):
        self.path = Path(folder) / ".lock"
        self.fh = None

    def __enter__(self):
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            return self
        self.fh = open(self.path, "a+")
        try:
            fcntl.flock(self.fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.fh.seek(0)
            holder = self.fh.read().strip() or "unknown"
            self.fh.close()
            self.fh = None
            raise InvalidParameterError(
                f"The run directory {str(self.path.parent)!r} is in use by another active-"
                f"learning process (pid {holder}); wait for it to end or give another "
                "'run_dir'.") from None
        except OSError:  # pragma: no cover - a file system without flock (some NFS)
            return self
        self.fh.seek(0)
        self.fh.truncate()
        self.fh.write(str(os.getpid()))
        self.fh.flush()
        return self

    def __exit__(self, *exc):
        if self.fh is not None:
            self.fh.close()   # releases the lock
            self.fh = None
        return False


# ---------------------------------------------------------------------------- oracle
def make_oracle(oracle):
    """An ASE calculator (or factory) from ``"EMT"``, a calculator, or a zero-arg callable.

    Parameters
    ----------
    oracle : str, ase calculator or callable
        ``"EMT"`` (case-insensitive; ASE's EMT), an ASE calculator (copied per structure)
        or a callable returning a fresh calculator.

    Returns
    -------
    ase calculator or callable
        ``oracle`` itself, or ASE's EMT for ``"EMT"``.

    Raises
    ------
    hybridpot.InvalidParameterError
        For another string or object.
    """
    from ase.calculators.calculator import BaseCalculator

    if isinstance(oracle, str):
        if oracle.upper() == "EMT":
            from ase.calculators.emt import EMT

            return EMT()
        raise InvalidParameterError(
            f"The 'oracle' parameter of ActiveLearner must be 'EMT', an ASE calculator or a "
            f"callable returning one. Got the string {oracle!r} instead.")
    if isinstance(oracle, BaseCalculator) or callable(oracle):
        return oracle
    raise InvalidParameterError(
        "The 'oracle' parameter of ActiveLearner must be 'EMT', an ASE calculator or a callable "
        f"returning one. Got {type(oracle).__name__} instead.")


def _fresh_calculator(oracle):
    """A calculator for one structure: ``oracle()`` for a factory, else a deep copy.

    A copy per structure keeps concurrent calls (Dask worker threads) from sharing one
    calculator's state; a calculator that cannot be
    copied is used as is (pass a factory to be safe).
    """
    import copy

    from ase.calculators.calculator import BaseCalculator

    if not isinstance(oracle, BaseCalculator):
        return oracle()
    try:
        return copy.deepcopy(oracle)
    except Exception:  # e.g. open files or MPI handles: fall back to the shared instance
        return oracle


def _compute(oracle, atoms):
    from ase.calculators.calculator import PropertyNotImplementedError

    calc = _fresh_calculator(oracle)
    at = atoms.copy()
    at.calc = calc
    out = {"energy": float(at.get_potential_energy()),
           "forces": np.array(at.get_forces(), dtype=np.float64)}
    if np.all(at.pbc):
        try:
            out["stress"] = np.array(at.get_stress(voigt=True), dtype=np.float64)
        except PropertyNotImplementedError:
            pass
    # a bad label must be a recorded failure, not a line of labels.extxyz: a NaN stress or
    # a wrong shape appended there broke every later refit, also of every resumed run
    n = len(at)
    shapes = {"energy": (), "forces": (n, 3), "stress": (6,)}
    for key, val in out.items():
        shape = np.shape(val)
        if shape != shapes[key]:
            raise OracleError(f"the oracle returned {key} of shape {shape} for {n} atoms; "
                              f"expected {shapes[key]}")
        if not np.all(np.isfinite(val)):
            raise OracleError(f"the oracle returned non-finite {key} (NaN or inf)")
    return out


def _die_with_parent(parent_pid):
    """Make this (worker) process end when its parent does (Linux: PR_SET_PDEATHSIG).

    A learner killed with SIGKILL (out-of-memory killer, ``scancel``) or SIGTERM runs no
    cleanup: its oracle worker, e.g. a DFT calculation, went on running as an orphan, beside
    the worker of the resumed run and in the same scratch folder.
    """
    import signal
    import sys

    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):  # pragma: no cover - no libc prctl
            pass
    if os.getppid() != parent_pid:   # the parent died before prctl took effect
        os._exit(1)


def _worker_main(conn, oracle, atoms, parent_pid=None):
    """Body of the oracle worker process: label, send the outcome through ``conn``."""
    if parent_pid is not None:
        _die_with_parent(parent_pid)
    try:
        msg = ("ok", _compute(oracle, atoms))
    except BaseException as e:  # re-raised (not Exception) or recorded by the parent
        msg = ("exc", e)
    try:
        conn.send(msg)
    except Exception:  # an exception that cannot be pickled: send its text
        e = msg[1]
        conn.send(("error", f"{type(e).__name__}: {e}"))
    finally:
        conn.close()


def _mp_context():
    import multiprocessing

    # fork: no pickling of the oracle into the worker (any calculator works, as in-process);
    # elsewhere spawn, which needs a picklable oracle
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else "spawn")


def _stop(proc):
    """Terminate ``proc`` (SIGTERM, then SIGKILL after 5 s) and reap it."""
    if proc.is_alive():
        proc.terminate()
        proc.join(5.0)
    if proc.is_alive():  # pragma: no cover - an oracle that ignores SIGTERM
        proc.kill()
        proc.join()
    proc.join()
    proc.close()


def _label_in_process(oracle, atoms, timeout, t0):
    ctx = _mp_context()
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_worker_main, args=(send, oracle, atoms, os.getpid()),
                       name="hybridpot-oracle", daemon=True)
    with warnings.catch_warnings():
        # Python >= 3.12 warns on fork() while other threads (e.g. tqdm's monitor) run; the
        # child only calls the oracle and sends its result, taking no lock those threads hold
        warnings.filterwarnings("ignore", message=r".*multi-threaded.*fork\(\)",
                                category=DeprecationWarning)
        proc.start()
    send.close()  # the child holds the only write end: EOF if it dies without sending
    try:
        left = t0 + float(timeout) - time.perf_counter()
        if not recv.poll(max(left, 0.0)):
            return {"ok": False, "error": f"timeout after {timeout:g} s (worker process "
                    "terminated)", "seconds": time.perf_counter() - t0}
        try:
            msg = recv.recv()
        except EOFError:  # the worker died without a result (segfault, out of memory, ...)
            proc.join()
            return {"ok": False, "error": "oracle worker process died (exit code "
                    f"{proc.exitcode})", "seconds": time.perf_counter() - t0}
    finally:
        recv.close()
        _stop(proc)
    dt = time.perf_counter() - t0
    kind, val = msg
    if kind == "ok":
        val.update(ok=True, seconds=dt)
        return val
    if kind == "exc":
        if not isinstance(val, Exception):
            raise val
        return {"ok": False, "error": f"{type(val).__name__}: {val}", "seconds": dt}
    return {"ok": False, "error": val, "seconds": dt}


def label_structure(oracle, atoms, timeout=None):
    """Label one structure with ``oracle``; never raises for an oracle error.

    Parameters
    ----------
    oracle : ase calculator or callable returning one
        A calculator is deep-copied for every structure (see :func:`_fresh_calculator`); a
        callable is called once per structure.
    atoms : ase.Atoms
    timeout : float or None, default=None
        Seconds.  None: the oracle runs in the calling thread.  Otherwise it runs in a
        separate worker process (``fork`` start method where available, else ``spawn``,
        which needs a picklable oracle); when the call takes longer the worker is terminated
        (SIGTERM, then SIGKILL) and the structure reported as a failure, so nothing is left
        running.  A worker that dies (segfault, out of memory) is a failure too.  Inside a
        daemonic process (e.g. a Dask nanny worker), which may not start children, the call
        runs in the calling thread and the timeout is checked when it returns.

    Returns
    -------
    dict
        ``{"ok": True, "energy": eV, "forces": (n, 3) eV/Å, "stress": (6,) eV/Å³ (3-D
        periodic only), "seconds": s}`` or ``{"ok": False, "error": str, "seconds": s}``.
        Exceptions that are not ``Exception`` (``KeyboardInterrupt``, ``SystemExit``) propagate.
    """
    import multiprocessing

    t0 = time.perf_counter()
    if timeout is not None and not multiprocessing.current_process().daemon:
        return _label_in_process(oracle, atoms, timeout, t0)
    try:
        out = _compute(oracle, atoms)
    except Exception as e:  # any oracle error is recorded, not fatal
        return {"ok": False, "error": f"{type(e).__name__}: {e}",
                "seconds": time.perf_counter() - t0}
    dt = time.perf_counter() - t0
    if timeout is not None and dt > float(timeout):
        return {"ok": False, "error": f"timeout after {timeout:g} s (took {dt:.3g} s)",
                "seconds": dt}
    out.update(ok=True, seconds=dt)
    return out


# ---------------------------------------------------------------------------- the loop
def default_selector():
    """The selector :class:`ActiveLearner` uses when none is given.

    :class:`~hybridpot.uq.selection.StratifiedSelector` around a force
    :class:`~hybridpot.uq.selection.MaxVarianceSelector`: the candidates and the labelled
    structures are clustered (k-means on descriptor fingerprints), each pick goes to the
    stratum furthest below its share of the pool, and the force variance chooses within it.
    Measured on the mlearn Ni and Si pools and live on EMT Cu
    (``benchmarks/active_learning.py``) it is the only criterion that needs fewer labels
    than random selection: plain maximum variance, D-optimal and variance-reduction batches
    all pick the hottest MD frames (largest descriptor gradients, hence largest parameter
    variance), which are also where a small model's *bias* is largest (Ni: force MAE of the
    full-pool model 0.073 eV/Å on the picked frames, 0.036 eV/Å averaged over all MD
    frames), so the least-squares fit shifts toward them and the test error stops improving
    or grows.  Importance-weighted refits (``ActiveLearner(importance_weighting="strata")``,
    weights = pool share / labelled share of each k-means stratum) let D-optimal and maximum
    variance reach the target on Ni, but only with as many labels as random selection
    (not on Si), and change the stratified selector from 20 to 16 labels on Ni but from 18
    to 20 on Si, so they are not the default.
    """
    from ..uq.selection import MaxVarianceSelector, StratifiedSelector

    return StratifiedSelector(selector=MaxVarianceSelector(kind="forces"))


class ActiveLearner:
    r"""Active learning: sample candidates, select the most informative, label, refit, repeat.

    One iteration ``t``:

    1. **sample** ``n_candidates`` structures with ``sampler.sample(n, random_state=rng_t,
       model=current_model)``, ``rng_t = numpy.random.default_rng([random_state, t])``;
       candidates already labelled or failed (pool samplers: same ``pool_index``) are dropped;
    2. **select** ``batch_size`` of them with ``selector.select(model, candidates, n,
       exclude_structures=labelled)`` (the first ones in sampler order while no model exists;
       candidates containing an element no training structure had, which the model cannot
       predict, come first in sampler order, e.g. when ``initial`` holds one element of an
       alloy); the proposals are written to ``proposals/iter_<t>.extxyz`` and the state file;
    3. **label** each proposal with the oracle (in parallel through Dask when a client is
       given or ``n_workers > 1``); each result is appended to ``labels.extxyz`` (energy,
       forces, stress through a SinglePointCalculator, ``info["al_id"]``) and fsync'ed at
       once; an oracle error or timeout is appended to ``failures.jsonl`` and skipped;
    4. **refit** a clone of ``model`` on ``initial`` plus all labels (in proposal order),
       save it atomically to ``model.hpot``, record the history (labels, validation force
       MAE, σ of the selection), advance ``t`` in ``state.json`` (atomic: temp + os.replace).

    Stopping rule (checked before each iteration): ``max_labels`` labels, ``max_iterations``
    iterations, ``max_oracle_seconds`` of oracle time, the validation force MAE (eV/Å) at
    most ``target_error``, or the largest force σ (RMS over components, eV/Å) of the
    selected candidates at most ``target_sigma`` (the batch is then not labelled), or no
    candidate left (on the fly: the trajectory reached the sampler's ``n_steps``, or its
    frame duplicates a label).  The run also stops after an iteration in which every
    oracle call failed -- with ``batch_size=1`` (on the fly) after three such iterations in
    a row, so that one failed frame (an SCF that does not converge) does not end the run --
    (``stop_reason_`` quotes the first error; restarting the run resumes it, e.g. once the
    oracle is fixed; on the fly the next iteration continues from the last label on a new
    branch of the trajectory).

    On-the-fly learning (FLARE's loop): ``UncertaintyMDSampler(continue_md=True, ...)``
    with ``n_candidates=1, batch_size=1`` (and ``max_iterations >= max_labels``: one label
    per iteration) runs one MD trajectory with the current model;
    each iteration continues it from the last labelled frame (positions, momenta, step,
    temperature ramp) until the force σ passes the sampler's threshold (eV/Å, or a multiple
    of the fitted noise), labels that frame, refits, and the run stops when the trajectory
    reaches the sampler's ``n_steps`` or at ``max_labels``; without ``initial`` (or a
    fitted ``model``) the first iteration labels the trajectory's first frame, as FLARE
    does.  ``labels.extxyz`` then holds
    the labelled frames in order with ``info["md_step"]``, ``info["md_temperature"]``,
    ``info["sigma_max"]``, ``info["sigma_threshold"]`` and the per-atom σ of the proposing
    model (``arrays["forces_std"]``); the history has σ before and after each refit;
    ``proposals/trajectory_<t>.extxyz`` holds every checked MD frame of iteration ``t``
    with the same records (the trajectory between labels).
    Whole frames are labelled (FLARE's adding of only the most uncertain atoms'
    environments to a sparse set has no counterpart: structures, not atoms, are the
    training unit).

    Crash safety: ``labels.extxyz`` and ``failures.jsonl`` are the source of truth.  A run
    killed at any point and restarted with the same ``run_dir`` re-reads them (a partial last
    frame is cut off), reuses the saved proposals of the interrupted iteration (or re-draws
    them identically from the seed and the same model), and labels only what is missing: no
    label is lost and none is computed twice.

    Parameters
    ----------
    model : HybridPotential
        Template (cloned at every refit); if already fitted it is used for the first selection.
    oracle : "EMT", ASE calculator, or callable returning one, default="EMT"
        Any ASE calculator (GPAW, tblite, ... when installed).  Each structure is labelled by
        a deep copy of it (or by a fresh ``oracle()`` from a factory).  With Dask it must be
        picklable (or pass a factory).
    sampler : hybridpot.sampling.Sampler
        Candidate generator (required).
    selector : selector of :mod:`hybridpot.uq.selection` or None
        None: :func:`default_selector`, maximum force variance within k-means strata of the
        candidates and labels (:class:`~hybridpot.uq.selection.StratifiedSelector`); it keeps
        the training mixture representative, which the plain uncertainty criteria do not
        (see :func:`default_selector` for the measurements).
    run_dir : str or Path
        Folder of the run (created; required).  Running again with the same folder resumes.
    initial : list of ase.Atoms, optional
        Labelled structures always in the training set.
    n_candidates : int, default=32
        Candidates sampled per iteration (>= 1).
    batch_size : int, default=4
        Candidates selected and labelled per iteration (>= 1).
    max_labels : int, default=50
        Labels computed by the learner (``initial`` not counted).
    max_iterations : int, default=10
    target_error, target_sigma : float or None, default=None
        Stop criteria, eV/Å: the validation force MAE (needs ``validation``), and the largest
        force σ (RMS over a structure's components) of the selected candidates; None: not
        used.
    validation : list of ase.Atoms, optional
        Labelled held-out structures for the force MAE in the history (and ``target_error``).
    oracle_timeout : float or None, default=None
        Seconds per structure (None: no timeout).  When set, each oracle call runs in a
        worker process that is terminated at the timeout (see :func:`label_structure`); the
        structure is recorded in ``failures.jsonl`` and skipped.
    n_workers : int, default=1
        > 1 starts an embedded Dask ``LocalCluster`` (single-threaded workers) for labelling.
    client : distributed.Client, optional
        Label on this cluster instead.
    random_state : int, default=0
        Seed of every iteration's sampling (an int so a resumed run re-draws identically).
    progress : bool or None, default=None
        tqdm progress bar over labels (None: only on a TTY).
    importance_weighting : {"strata", "nearest"} or None, default=None
        Importance-weighted refits (:func:`hybridpot.learn.importance_weights`): every refit
        weights the training structures (``initial`` and labels) so that they represent the
        candidates sampled so far (saved as ``proposals/candidates_<t>.extxyz``; the weights
        multiply any ``info["fit_weight"]`` of the structures).  None: unweighted refits.
    recalibration : str or None, default=None
        A method of :func:`hybridpot.uq.recalibrate` other than ``"split"`` (``"nll"``,
        ``"coverage"``, ``"heteroscedastic"``, ``"heteroscedastic_coverage"``): every
        refitted model is recalibrated on the ``validation`` structures it can predict
        (saved with it), so σ-driven samplers, selectors and ``target_sigma`` see calibrated
        σ at every iteration.  A refit clones ``model``: a recalibration, posterior
        committee (``LinearPosterior.apply``) or σ scale of the given model is not carried
        over (a warning says so when this is None), and after the first refit σ would
        silently change scale (a model recalibrated by x2.1 then gave σ 2.1 x smaller).
    max_oracle_seconds : float or None, default=None
        Budget of oracle wall time (s, summed over the labels' ``info["oracle_seconds"]``
        and the failures of all runs of ``run_dir``): no new iteration starts once it is
        used up (the iteration running then completes, so it can be exceeded by one batch).

    Attributes
    ----------
    model_ : HybridPotential or None
        The latest fitted model.
    labelled_ : list of ase.Atoms
        Labels computed so far (all runs of this directory).
    failures_ : dict of str to str
        Proposal id -> error message.
    history_ : list of dict
        One entry per completed iteration: ``iteration``, ``n_labels``, ``n_new``,
        ``n_failed``, ``selected_sigma_max`` (largest force σ, RMS over the components of a
        structure, eV/Å, of the proposals under the model that proposed them; None for a
        model without a posterior), ``selected_sigma_after`` (the same under the model
        refitted with their labels), ``validation_force_mae`` (eV/Å or None),
        ``label_seconds``.
    stop_reason_ : str
    oracle_seconds_ : float
        Oracle wall time (s) of every label and failure of the run directory (all runs).
    n_oracle_calls_ : int
        Oracle calls made by this process (a resumed run counts only its own).
    state_ : dict
        The run state saved in ``<run_dir>/state.json`` (iteration, proposals, history,
        stop reason).
    """

    def __init__(self, model=None, oracle="EMT", sampler=None, selector=None, *, run_dir=None,
                 initial=None, n_candidates=32, batch_size=4, max_labels=50, max_iterations=10,
                 target_error=None, target_sigma=None, validation=None, oracle_timeout=None,
                 n_workers=1, client=None, random_state=0, progress=None,
                 importance_weighting=None, recalibration=None, max_oracle_seconds=None):
        self.model = model
        self.oracle = oracle
        self.sampler = sampler
        self.selector = selector
        self.run_dir = run_dir
        self.initial = initial
        self.n_candidates = n_candidates
        self.batch_size = batch_size
        self.max_labels = max_labels
        self.max_iterations = max_iterations
        self.target_error = target_error
        self.target_sigma = target_sigma
        self.validation = validation
        self.oracle_timeout = oracle_timeout
        self.n_workers = n_workers
        self.client = client
        self.random_state = random_state
        self.progress = progress
        self.importance_weighting = importance_weighting
        self.recalibration = recalibration
        self.max_oracle_seconds = max_oracle_seconds

    # ------------------------------------------------------------------ validation / state
    def _validate(self):
        from ..potential import HybridPotential

        owner = "ActiveLearner"
        if not isinstance(self.model, HybridPotential):
            raise InvalidParameterError(
                f"The 'model' parameter of {owner} must be a HybridPotential. "
                f"Got {type(self.model).__name__} instead.")
        self._oracle = make_oracle(self.oracle)
        if not hasattr(self.sampler, "sample"):
            raise InvalidParameterError(
                f"The 'sampler' parameter of {owner} must be a sampler with a sample(n, "
                f"random_state=, model=) method. Got {type(self.sampler).__name__} instead.")
        if self.selector is not None and not hasattr(self.selector, "select"):
            raise InvalidParameterError(
                f"The 'selector' parameter of {owner} must have a select(model, pool, n) "
                f"method or be None. Got {type(self.selector).__name__} instead.")
        if self.run_dir is None:
            raise InvalidParameterError(
                f"The 'run_dir' parameter of {owner} must be a folder path. Got None instead.")
        check_int(self.n_candidates, "n_candidates", owner, low=1)
        check_int(self.batch_size, "batch_size", owner, low=1)
        check_int(self.max_labels, "max_labels", owner, low=1)
        check_int(self.max_iterations, "max_iterations", owner, low=1)
        check_float(self.target_error, "target_error", owner, low=0.0, allow_none=True)
        check_float(self.target_sigma, "target_sigma", owner, low=0.0, allow_none=True)
        check_float(self.oracle_timeout, "oracle_timeout", owner, low=0.0, allow_none=True)
        check_float(self.max_oracle_seconds, "max_oracle_seconds", owner, low=0.0,
                    allow_none=True)
        check_int(self.n_workers, "n_workers", owner, low=1)
        rs = self.random_state
        if isinstance(rs, bool) or not isinstance(rs, numbers.Integral) or rs < 0:
            raise InvalidParameterError(
                f"The 'random_state' parameter of {owner} must be an int >= 0 (a resumed run "
                f"re-draws its candidates from it). Got {rs!r} instead.")
        iw = self.importance_weighting
        if iw is not None and iw not in WEIGHTING_METHODS:
            raise InvalidParameterError(
                f"The 'importance_weighting' parameter of {owner} must be one of "
                f"{list(WEIGHTING_METHODS)} or None. Got {iw!r} instead.")
        rc = self.recalibration
        if rc is not None:
            from ..uq._calibration import METHODS

            # "split" needs a posterior committee (LinearPosterior.apply), which a refitted
            # clone never has: it would fail at the first refit, after the first labels
            allowed = [m for m in METHODS if m != "split"]
            if not isinstance(rc, str) or rc not in allowed:
                raise InvalidParameterError(
                    f"The 'recalibration' parameter of {owner} must be one of {allowed} or "
                    f"None ('split' needs a posterior committee, which refits do not "
                    f"have). Got {rc!r} instead.")
            if not self.validation:
                raise InvalidParameterError(
                    f"The 'recalibration' parameter of {owner} needs labelled 'validation' "
                    f"structures to recalibrate every refit on. Got validation="
                    f"{self.validation!r}.")
        elif any(getattr(self.model, k, None) for k in (
                "uncertainty_", "uncertainty_scale_", "uncertainty_recalibration_")):
            warnings.warn(
                f"The 'model' of {owner} carries a σ recalibration or posterior committee; "
                "refits clone the unfitted model, so from the first refit on σ is the "
                "regressor's own (a threshold in eV/Å then means something else). Pass "
                "recalibration='nll' (or another method) and 'validation' to recalibrate "
                "every refit.", RuntimeWarning, stacklevel=3)
        if self.target_error is not None and not self.validation:
            raise InvalidParameterError(
                f"The 'target_error' parameter of {owner} needs labelled 'validation' "
                "structures. Got validation=None.")
        if self.target_error is not None:
            from .._labels import get_labels

            if not any(get_labels(a, k, require=False).forces is not None
                       for k, a in enumerate(self.validation)):
                raise InvalidParameterError(
                    f"The 'target_error' parameter of {owner} is a force MAE (eV/Å), but no "
                    f"'validation' structure carries forces (got {len(self.validation)} "
                    "structures without force labels).")

    def _paths(self):
        d = Path(self.run_dir)
        return {"dir": d, "labels": d / LABELS_FILE, "failures": d / FAILURES_FILE,
                "state": d / STATE_FILE, "model": d / MODEL_FILE, "proposals": d / PROPOSALS_DIR}

    def _new_state(self):
        return {"format": STATE_FORMAT, "version": STATE_VERSION,
                "seed": int(self.random_state), "iteration": 0, "proposals": None,
                "history": [], "model_n_labels": -1, "stop_reason": None}

    def _save_state(self):
        st = dict(self.state_)
        st["n_labels"] = len(self.labelled_)
        st["labelled_ids"] = [a.info["al_id"] for a in self.labelled_]
        st["failures"] = dict(self.failures_)
        _atomic_write(self._p["state"], json.dumps(st, indent=1))

    def _check_state(self, st):
        """Raise a typed error naming ``state.json`` and the entry when ``st`` is not a state
        this version wrote (a hand edit, another program's file, disk corruption)."""
        path = str(self._p["state"])

        def bad(what, got):
            return InvalidParameterError(
                f"{path} is not a valid active-learning state file: {what}. Got {got!r}. "
                f"Labels and failures are kept in {LABELS_FILE} and {FAILURES_FILE}; remove "
                f"{STATE_FILE} to restart the iteration count from them.")

        def is_int(v):
            return isinstance(v, numbers.Integral) and not isinstance(v, bool)

        if not isinstance(st, dict):
            raise bad("it must hold a JSON object", type(st).__name__)
        if st.get("format") != STATE_FORMAT:
            raise InvalidParameterError(
                f"{path} is not an active-learning state file (format {st.get('format')!r}).")
        if not is_int(st.get("version")) or not 1 <= st["version"] <= STATE_VERSION:
            raise bad(f"'version' must be an int in [1, {STATE_VERSION}]", st.get("version"))
        for key in ("seed", "iteration", "model_n_labels"):
            if not is_int(st.get(key)) or st[key] < (-1 if key == "model_n_labels" else 0):
                raise bad(f"{key!r} must be an int >= "
                          f"{-1 if key == 'model_n_labels' else 0}", st.get(key))
        if not isinstance(st.get("history"), list) or \
                not all(isinstance(h, dict) for h in st["history"]):
            raise bad("'history' must be a list of objects", st.get("history"))
        pr = st.get("proposals")
        if pr is not None:
            if not (isinstance(pr, dict) and is_int(pr.get("iteration"))
                    and isinstance(pr.get("file"), str)
                    and pr["file"] == os.path.basename(pr["file"])
                    and isinstance(pr.get("ids"), list)
                    and all(isinstance(i, str) for i in pr["ids"])):
                raise bad("'proposals' must be null or an object with an int 'iteration', a "
                          f"file name 'file' in {PROPOSALS_DIR}/ and a list of str 'ids'", pr)

    def _remove_stale_temp_files(self):
        """Temp files of writes a kill interrupted (``.hpot-*`` of the model save, ``.<name>
        .tmp<pid>`` of the atomic writes): never read, but each killed save left a model-sized
        file behind.  Safe under the run lock (no other learner writes here)."""
        import re

        pattern = re.compile(r"^(\.hpot-.+|\..+\.tmp\d+)$")
        for folder in (self._p["dir"], self._p["proposals"]):
            for f in folder.iterdir():
                if pattern.match(f.name) and f.is_file():
                    try:
                        f.unlink()
                    except OSError:  # pragma: no cover - e.g. removed concurrently
                        pass

    def _load(self):
        p = self._p
        p["dir"].mkdir(parents=True, exist_ok=True)
        p["proposals"].mkdir(exist_ok=True)
        self._remove_stale_temp_files()
        if p["state"].is_file():
            try:
                st = json.loads(p["state"].read_text())
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise InvalidParameterError(
                    f"The run directory {str(p['dir'])!r} has a corrupt {STATE_FILE}: {e}. "
                    f"Labels and failures are kept in {LABELS_FILE} and {FAILURES_FILE}; "
                    f"remove {STATE_FILE} to restart the iteration count from them.") from e
            self._check_state(st)
            if int(st["seed"]) != int(self.random_state):
                raise InvalidParameterError(
                    f"The 'random_state' parameter of ActiveLearner must match the run in "
                    f"{str(p['dir'])!r}, started with {st['seed']}. Got {self.random_state} "
                    "instead.")
            for k in ("n_labels", "labelled_ids", "failures"):
                st.pop(k, None)
        else:
            st = self._new_state()
        self.state_ = st
        # the labels and failures files are the source of truth
        try:
            labels = read_labels(p["labels"], repair=True)
        except Exception as e:  # ase's XYZError, ValueError, ... of a damaged frame
            raise InvalidParameterError(
                f"The run directory {str(p['dir'])!r} has an unreadable {LABELS_FILE} (a "
                f"frame before the last one is damaged): {type(e).__name__}: {e}. Repair or "
                "remove the damaged frame; the run relabels what is missing.") from e
        seen, self.labelled_ = set(), []
        for a in labels:
            aid = a.info.get("al_id")
            if aid is None or aid in seen:
                continue
            seen.add(aid)
            self.labelled_.append(a)
        self.failures_ = {}
        self._failure_seconds = 0.0
        if p["failures"].is_file():
            text = p["failures"].read_text()
            if text and not text.endswith("\n"):
                # a torn last record (killed in the middle of an append): cut it off, or the
                # next record appended to the same line would be unreadable, hence lost
                end = text.rfind("\n") + 1
                with open(p["failures"], "r+") as fh:
                    fh.truncate(len(text[:end].encode()))
                    fh.flush()
                    os.fsync(fh.fileno())
                text = text[:end]
            for k, line in enumerate(text.splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    rec = None
                if not (isinstance(rec, dict) and isinstance(rec.get("id"), str)
                        and isinstance(rec.get("error"), str)):
                    raise InvalidParameterError(
                        f"Line {k} of {p['failures']} is not a failure record (a JSON object "
                        f"with str 'id' and 'error'). Got {line[:200]!r}.")
                self.failures_[rec["id"]] = rec["error"]
                sec = rec.get("seconds")
                if isinstance(sec, (int, float)) and np.isfinite(sec):
                    self._failure_seconds += float(sec)

    # ------------------------------------------------------------------ steps
    def _training(self, exclude=()):
        lab = sorted((a for a in self.labelled_ if a.info["al_id"] not in exclude),
                     key=lambda a: (int(a.info.get("al_iteration", 0)),
                                    int(a.info.get("al_order", 0))))
        return list(self.initial or []) + lab

    def _reference(self):
        """Candidates sampled so far (all iterations, from ``proposals/candidates_*``)."""
        from ase.io import read

        out = []
        for path in sorted(self._p["proposals"].glob("candidates_*.extxyz")):
            out.extend(read(path, ":", format="extxyz"))
        return out

    def _weighted(self, train):
        """``train`` with importance weights in ``info["fit_weight"]`` (copies), or as is."""
        if self.importance_weighting is None:
            return train
        reference = self._reference()
        if not reference:
            return train
        w = importance_weights(self.model, train, reference, method=self.importance_weighting)
        out = []
        for a, wk in zip(train, w):
            b = a.copy()
            b.calc = a.calc
            b.info["fit_weight"] = float(a.info.get("fit_weight", 1.0)) * float(wk)
            out.append(b)
        return out

    def _refit(self, exclude=()):
        from sklearn.base import clone

        train = self._training(exclude)
        if not train:
            self.model_ = self.model if hasattr(self.model, "regressor_") else None
            return
        train = self._weighted(train)
        model = clone(self.model)
        model.fit(train)
        if self.recalibration is not None:
            val = [a for a in self.validation if not model._untrained_elements(a)]
            if val:   # none yet: the model has not seen every element of the validation set
                model.recalibrate(val, method=self.recalibration)
        if self.state_.get("model_n_labels") != -1:
            # model.hpot is replaced before the state records what it holds: a run killed in
            # between must not take the new file for the model of the completed iterations
            # (it scored the resumed iteration's proposals with a model already fitted to
            # them: σ 0.043 instead of 0.055 eV/Å)
            self.state_["model_n_labels"] = -1
            self._save_state()
        model.save(self._p["model"])
        self.model_ = model
        self.state_["model_n_labels"] = len(train) - len(self.initial or [])

    def _pending_ids(self):
        """Ids of the labels of the interrupted iteration (its saved proposals)."""
        pr = self.state_.get("proposals")
        if not pr or int(pr["iteration"]) != int(self.state_["iteration"]):
            return set()
        return set(pr.get("ids", ()))

    def _restore_model(self):
        """The model of the completed iterations: a resumed iteration scores its proposals
        (``selected_sigma_max``) with the model that proposed them, not with one already
        fitted to the labels it computed before the interruption."""
        from ..potential import HybridPotential

        pending = self._pending_ids()
        train = self._training(pending)
        if not train:
            self.model_ = self.model if hasattr(self.model, "regressor_") else None
            return
        n_done = len(train) - len(self.initial or [])
        if self.state_.get("model_n_labels") == n_done and self._p["model"].is_file():
            try:
                self.model_ = HybridPotential.load(self._p["model"])
                return
            except ModelFormatError as e:  # derived data: refit it from the labels
                warnings.warn(f"{e} The model is refitted from the labels.", RuntimeWarning,
                              stacklevel=3)
        self._refit(pending)
        self._save_state()

    def _done_ids(self):
        return {a.info["al_id"] for a in self.labelled_} | set(self.failures_)

    def _candidate_id(self, t, k, atoms):
        if "pool_index" in atoms.info:
            return f"pool-{int(atoms.info['pool_index'])}"
        return f"i{t:04d}-c{k:04d}"

    def _sigma(self, model, structures):
        structures = [a for a in structures if not model._untrained_elements(a)]
        if not structures:   # the model cannot score them (see _propose)
            return None
        _, s = model.predict_forces(structures, return_std=True)
        return float(max(np.sqrt(np.mean(x ** 2)) for x in s))

    def _propose(self, t, n_left):
        """Proposals of iteration ``t``: list of (id, atoms), or a stop reason string."""
        from ..sampling import PoolSampler

        rng = np.random.default_rng([int(self.random_state), int(t)])
        model = self.model_
        done = self._done_ids()
        kw = {}
        if isinstance(self.sampler, PoolSampler):
            kw["exclude"] = [int(i.split("-")[1]) for i in done if i.startswith("pool-")]
        if getattr(self.sampler, "uses_labels", False) is True:
            # on-the-fly MD (UncertaintyMDSampler(continue_md=True)) continues the trajectory
            # from the last frame it proposed that was labelled (read from labels.extxyz, so
            # a resumed run continues from the same frame)
            kw["labelled"] = self._training()
        if getattr(self.sampler, "needs_model", False) and model is None:
            raise InvalidParameterError(
                f"The sampler {type(self.sampler).__name__} needs a fitted model; give "
                "ActiveLearner labelled 'initial' structures or a fitted 'model'.")
        cands = self.sampler.sample(int(self.n_candidates), random_state=rng, model=model,
                                    **kw)
        traj = getattr(self.sampler, "trajectory_", None)
        if traj:
            # every checked MD frame with its σ (UncertaintyMDSampler): the on-the-fly
            # trajectory between labels, for inspection (not read back)
            _atomic_write(self._p["proposals"] / f"trajectory_{t:04d}.extxyz",
                          _extxyz_text(traj))
        if self.importance_weighting is not None and cands:
            # the reference sample of the importance weights (see _weighted)
            ref = [a.copy() for a in cands]
            for a in ref:
                a.calc = None
            _atomic_write(self._p["proposals"] / f"candidates_{t:04d}.extxyz",
                          _extxyz_text(ref))
        ids = [self._candidate_id(t, k, a) for k, a in enumerate(cands)]
        keep = [k for k, i in enumerate(ids) if i not in done]
        cands, ids = [cands[k] for k in keep], [ids[k] for k in keep]
        if not cands:
            if getattr(self.sampler, "finished_", False) is True:
                return (f"the sampler's on-the-fly MD reached its n_steps "
                        f"({self.sampler.n_steps}) with force σ below the threshold")
            return "no candidates"
        n = min(int(self.batch_size), n_left, len(cands))
        # candidates with an element no training structure had: the model cannot predict them
        # (UnknownSpeciesError), and they are the ones it most needs; they go first, in the
        # sampler's order, and the selector ranks the others for the rest of the batch
        new = [k for k, a in enumerate(cands) if model is not None
               and model._untrained_elements(a)]
        if model is None:
            pick = np.arange(n)
        elif len(new) >= n:
            pick = np.asarray(new[:n], dtype=np.int64)
        else:
            sel = self.selector if self.selector is not None else default_selector()
            known = [k for k in range(len(cands)) if k not in set(new)]
            sub = np.asarray(sel.select(model, [cands[k] for k in known], n - len(new),
                                        exclude_structures=self._training()), dtype=np.int64)
            pick = np.asarray(new + [known[k] for k in sub], dtype=np.int64)
            if pick.size == 0:
                if getattr(self.sampler, "uses_labels", False) is True and cands:
                    # on the fly: the frame that passed the threshold duplicates a label
                    # (the selector's deduplication), so σ stays above the threshold where
                    # the model was just refitted: the threshold is below σ's floor
                    a = cands[0]
                    return (f"the on-the-fly frame of MD step {a.info.get('md_step')} (force "
                            f"σ {float(a.info.get('sigma_max', np.nan)):.3g} > threshold "
                            f"{float(a.info.get('sigma_threshold', np.nan)):.3g} eV/Å) "
                            "duplicates a labelled structure (the selector's deduplication; "
                            "a deterministic oracle would give the same label): σ stays above "
                            "the threshold next to a label, so the threshold is below what "
                            "the model's σ reaches; raise sigma_threshold (see "
                            "'selected_sigma_after' in the history), increase check_interval, "
                            "or give a selector with dedup_threshold=None to label it anyway")
                return "no candidates"
            if self.target_sigma is not None and not new:
                sig = self._sigma(model, [cands[k] for k in pick])
                if sig <= float(self.target_sigma):
                    return f"target_sigma reached (max force sigma {sig:.4g} eV/Å)"
        out = []
        for order, k in enumerate(pick):
            a = cands[int(k)].copy()
            a.calc = None
            a.info.update({"al_id": ids[int(k)], "al_iteration": int(t), "al_order": order})
            out.append(a)
        return out

    def _save_proposals(self, t, proposals):
        """Write the proposals of iteration ``t``; returns them as read back from the file.

        extxyz keeps positions to 1e-8 Å: a resumed run labels the structures of the file,
        so the uninterrupted run must label the same (rounded) ones to give the same labels
        and model.
        """
        path = self._p["proposals"] / f"iter_{t:04d}.extxyz"
        text = _extxyz_text(proposals)
        _atomic_write(path, text)
        self.state_["proposals"] = {"iteration": int(t), "file": str(path.name),
                                    "ids": [a.info["al_id"] for a in proposals]}
        self._save_state()
        return _parse_frames(text)

    def _load_proposals(self):
        from ase.io import read

        pr = self.state_.get("proposals")
        if not pr or int(pr["iteration"]) != int(self.state_["iteration"]):
            return None
        path = self._p["proposals"] / pr["file"]
        if not path.is_file():
            return None
        try:
            out = read(path, ":", format="extxyz")
        except Exception as e:  # ase's XYZError, ValueError, ... (written atomically)
            raise InvalidParameterError(
                f"The proposals file {str(path)!r} of the interrupted iteration is "
                f"unreadable: {type(e).__name__}: {e}. Remove it to draw the proposals "
                "again.") from e
        if [a.info.get("al_id") for a in out] != list(pr["ids"]):
            raise InvalidParameterError(
                f"The proposals file {str(path)!r} holds the structures "
                f"{[a.info.get('al_id') for a in out]}, but {STATE_FILE} records "
                f"{list(pr['ids'])}. Remove it to draw the proposals again.")
        for a in out:
            a.calc = None
        return out

    def _record(self, atoms, res):
        if res["ok"]:
            from ase.calculators.singlepoint import SinglePointCalculator

            at = atoms.copy()
            kw = {"energy": res["energy"], "forces": res["forces"]}
            if "stress" in res:
                kw["stress"] = res["stress"]
            at.calc = SinglePointCalculator(at, **kw)
            at.info["oracle_seconds"] = float(res["seconds"])
            text = _extxyz_text([at])
            _append_durable(self._p["labels"], text)
            # the label as a resumed run reads it (forces to 1e-8 eV/Å): refits of an
            # uninterrupted and of a resumed run then see the same numbers
            self.labelled_.append(_parse_frames(text)[0])
        else:
            rec = {"id": atoms.info["al_id"], "iteration": int(atoms.info["al_iteration"]),
                   "error": res["error"], "seconds": float(res["seconds"])}
            _append_durable(self._p["failures"], json.dumps(rec) + "\n")
            self.failures_[rec["id"]] = rec["error"]
            self._failure_seconds += rec["seconds"]
        self.n_oracle_calls_ += 1
        self._save_state()

    def _label(self, todo, client):
        from tqdm.auto import tqdm

        bar = tqdm(total=len(todo), desc=f"labelling (iteration {self.state_['iteration']})",
                   unit="structure",
                   disable=None if self.progress is None else not self.progress)
        try:
            if client is None:
                for a in todo:
                    self._record(a, label_structure(self._oracle, a, self.oracle_timeout))
                    bar.update(1)
                return
            from distributed import as_completed

            oracle_f = client.scatter(self._oracle, broadcast=True)
            futs = {client.submit(label_structure, oracle_f, a, self.oracle_timeout,
                                  pure=False): a for a in todo}
            # as_completed needs a current client: the embedded local_client is not dask's
            # default client (24ab570), which made it raise 'No clients found'
            with client.as_current():
                for fut in as_completed(list(futs)):
                    try:
                        res = fut.result()
                    except Exception as e:  # worker died, unpicklable result, ...
                        res = {"ok": False, "error": f"{type(e).__name__}: {e}",
                               "seconds": 0.0}
                    self._record(futs[fut], res)
                    bar.update(1)
        finally:
            bar.close()

    def _validation_error(self):
        if not self.validation or self.model_ is None:
            return None
        if any(self.model_._untrained_elements(a) for a in self.validation):
            return None   # not yet trained on every element of the validation set
        return float(self.model_.evaluate(self.validation)["force_mae"])

    def _stop_reason(self):
        st = self.state_
        if len(self.labelled_) >= int(self.max_labels):
            return f"max_labels ({self.max_labels}) reached"
        if int(st["iteration"]) >= int(self.max_iterations):
            return f"max_iterations ({self.max_iterations}) reached"
        if self.max_oracle_seconds is not None:
            used = self.oracle_seconds_
            if used >= float(self.max_oracle_seconds):
                return (f"oracle time budget used ({used:.4g} s of max_oracle_seconds = "
                        f"{float(self.max_oracle_seconds):g} s)")
        if self.target_error is not None and st["history"]:
            err = st["history"][-1].get("validation_force_mae")
            if err is not None and err <= float(self.target_error):
                return f"target_error reached (force MAE {err:.4g} eV/Å)"
        return None

    # ------------------------------------------------------------------ public
    def run(self):
        """Run (or resume) the loop until the stopping rule holds; returns ``self``.

        The run directory is locked while the loop runs (``.lock``, an advisory ``flock``
        the system releases when the process ends, also when it is killed): a second run
        on the same directory is an :class:`~hybridpot.InvalidParameterError`.
        """
        self._validate()
        self._p = self._paths()
        self._p["dir"].mkdir(parents=True, exist_ok=True)
        with _run_lock(self._p["dir"]):
            return self._run()

    def _run(self):
        import contextlib

        self._load()
        self.n_oracle_calls_ = 0
        self._restore_model()
        if self.client is not None:
            ctx = contextlib.nullcontext(self.client)
        elif int(self.n_workers) > 1:
            from ..parallel import local_client

            ctx = local_client(int(self.n_workers))
        else:
            ctx = contextlib.nullcontext(None)
        failed_run = []   # consecutive iterations whose every oracle call failed
        with ctx as client:
            while True:
                reason = self._stop_reason()
                if reason is not None:
                    break
                t = int(self.state_["iteration"])
                proposals = self._load_proposals()
                if proposals is None:
                    res = self._propose(t, int(self.max_labels) - len(self.labelled_))
                    if isinstance(res, str):
                        reason = res
                        break
                    proposals = self._save_proposals(t, res)
                done = self._done_ids()
                todo = [a for a in proposals if a.info["al_id"] not in done]
                t0 = time.perf_counter()
                self._label(todo, client)
                label_s = time.perf_counter() - t0
                ids = {a.info["al_id"] for a in proposals}
                n_ok = sum(1 for a in self.labelled_ if a.info["al_id"] in ids)
                sig = None
                if self.model_ is not None and self.model_._has_posterior():
                    sig = self._sigma(self.model_, proposals)
                self._refit()
                sig_after = None
                if sig is not None and self.model_ is not None and self.model_._has_posterior():
                    sig_after = self._sigma(self.model_, proposals)
                self.state_["history"].append({
                    "iteration": t, "n_labels": len(self.labelled_), "n_new": n_ok,
                    "n_failed": len(proposals) - n_ok, "selected_sigma_max": sig,
                    "selected_sigma_after": sig_after,
                    "validation_force_mae": self._validation_error(),
                    "label_seconds": label_s})
                self.state_["iteration"] = t + 1
                self.state_["proposals"] = None
                self._save_state()
                if todo and not any(a.info["al_id"] not in self.failures_ for a in todo):
                    # every oracle call of this process in this iteration failed: a broken
                    # oracle (unsupported element, missing executable, ...) would otherwise
                    # burn every remaining iteration; a restart resumes normally.  With one
                    # call per iteration (on the fly) one failed frame (an SCF that does not
                    # converge) is no evidence of a broken oracle: three in a row are
                    failed_run.append((t, todo))
                    needed = 3 if int(self.batch_size) == 1 else 1
                    if len(failed_run) >= needed:
                        t_first, todo_first = failed_run[-needed]
                        first = self.failures_[todo_first[0].info["al_id"]]
                        n_calls = sum(len(x) for _, x in failed_run[-needed:])
                        its = (f"iteration {t}" if needed == 1 else
                               f"iterations {t_first}-{t}")
                        reason = (f"every oracle call of {its} failed ({n_calls} "
                                  f"structures; first error: {first}); see {FAILURES_FILE}")
                        break
                elif todo:
                    failed_run = []
        self.stop_reason_ = reason
        self.state_["stop_reason"] = reason
        self._save_state()
        return self

    @property
    def oracle_seconds_(self):
        """float: oracle wall time (s) of every label and failure of the run directory."""
        if not hasattr(self, "labelled_"):
            return 0.0
        return float(sum(float(a.info.get("oracle_seconds", 0.0)) for a in self.labelled_)
                     + getattr(self, "_failure_seconds", 0.0))

    @property
    def history_(self):
        """list of dict: one entry per completed iteration (see the class Attributes)."""
        return list(self.state_["history"]) if hasattr(self, "state_") else []
