r"""Model-driven samplers: uncertainty-terminated MD and adversarial search on positions."""

from __future__ import annotations

import numpy as np

from .._exceptions import HybridpotError, InvalidParameterError
from .._validation import check_choice, check_float, check_int
from ._base import Sampler, as_generator
from ._crystal import _check_range

__all__ = ["UncertaintyMDSampler", "AdversarialSampler"]

#: Boltzmann constant, eV/K
KB = 8.617333262e-5


def _check_starts(starts, owner, model=None):
    """``starts`` as a list; with ``model``, every start must hold only elements the model
    was trained on (else each MD run or ascent failed at its first step, which was reported
    as an unstable MD / returned the start with ``J = -inf``)."""
    from ase import Atoms

    if isinstance(starts, Atoms):
        starts = [starts]
    if not isinstance(starts, (list, tuple)) or not starts or \
            not all(isinstance(a, Atoms) for a in starts):
        raise InvalidParameterError(
            f"The 'starts' parameter of {owner} must be an ase.Atoms or a non-empty list of "
            f"them. Got {type(starts).__name__} instead.")
    if model is not None:
        known = set(model.species_)
        for k, a in enumerate(starts):
            bad = sorted((set(a.get_chemical_symbols()) - known)
                         | model._untrained_elements(a))
            if bad:
                trained = sorted(getattr(model, "trained_species_", None) or known)
                raise InvalidParameterError(
                    f"The 'starts' parameter of {owner} must hold elements the model can "
                    f"predict ({', '.join(trained)}): structure {k} ({a.get_chemical_formula()})"
                    f" has {', '.join(bad)}.")
    return list(starts)


def _force_sigma(model, atoms):
    """Force-component σ (eV/Å, shape (n_atoms, 3)) and forces of the model at ``atoms``."""
    r = model._evaluate(atoms, forces=True, stress=False, return_std=True)
    return r["forces_std"], r["forces"], r["energy"]


def _force_noise(model):
    """Fitted force-noise std (eV/Å) included in the model's predictive force σ, or None.

    The posterior committee's (``uncertainty_``, inflation included) if the model has one,
    else the regressor's (``_predictive_noise_std``: sparse GPs and ensembles of them;
    ``noise_["forces"]``: Bayesian linear regression, the largest group's).  Networks have
    none.
    """
    from ..uq._calibration import _noise_std, _regressor_noise_std

    com = getattr(model, "uncertainty_", None)
    if com is not None:
        return _noise_std(com, "forces", "default", 1)
    sd = _regressor_noise_std(model, "forces")
    if sd is None:
        noise = getattr(model.regressor_, "noise_", None)
        sd = noise.get("forces") if isinstance(noise, dict) else None
        if isinstance(sd, dict):
            sd = max(sd.values()) if sd else None
    if sd is None or not np.isfinite(sd) or sd <= 0:
        return None
    return float(sd)


class UncertaintyMDSampler(Sampler):
    r"""Langevin MD with the current model, stopped when its force uncertainty gets large.

    Each run starts from a random structure of ``starts`` with Maxwell-Boltzmann velocities at
    ``T_start`` and ramps the thermostat linearly to ``T_end`` over ``n_steps`` (both uniform in
    ``temperature_range``, K).  Every ``check_interval`` steps the predictive force σ
    (``model._evaluate(..., return_std=True)``: posterior or committee) is evaluated; the frame
    and its score ``max_{i,a} sigma_F[i, a]`` (eV/Å) are recorded.  The run stops when the score
    exceeds the threshold, after ``n_steps``, or when the structure becomes unusable (atoms
    closer than the neighbour list's limit).  The ``frames_per_run`` most uncertain recorded
    frames are returned, and runs repeat until ``n`` frames exist.

    On-the-fly mode (``continue_md=True``, FLARE's loop: MD with the current model until σ
    passes the threshold, label that frame, refit, *continue the same trajectory*): one
    trajectory of ``n_steps`` steps in total with the deterministic temperature ramp
    ``T(s) = T_0 + (T_1 - T_0) s / n_steps`` (``(T_0, T_1) = temperature_range``, which may
    decrease for a quench; ``s`` the step of the whole trajectory).  :meth:`sample`
    continues it from the last structure of ``labelled`` that this sampler produced
    (``info["md_step"]`` and its momenta, both kept in ``labels.extxyz``), or starts it
    from a random structure of ``starts`` at ``T_0``;
    each call runs until the threshold is passed (returns that frame, the most uncertain
    of the run, ``n`` is then irrelevant beyond 1) or until step ``n_steps`` (returns no
    frame and sets ``finished_``: the trajectory is done).
    :class:`~hybridpot.learn.ActiveLearner` passes its training structures as ``labelled``
    (``uses_labels`` is true); use it with ``n_candidates=1, batch_size=1``.  Without a
    model (no ``initial`` labels) the first call returns the trajectory's first frame
    (a structure of ``starts``, ``md_step`` 0) to be labelled, and the MD starts from it
    with Maxwell-Boltzmann velocities at ``T_0`` once the model is fitted.

    Threshold: ``sigma_threshold`` in eV/Å (``threshold_mode="absolute"``) or, as FLARE's
    positive ``std_tolerance_factor``, in units of the model's fitted force-noise std
    ``sigma_n`` (``threshold_mode="noise"``: threshold ``sigma_threshold * sigma_n``, eV/Å;
    ``sigma_n`` is the posterior committee's force noise if the model has one, else the
    regressor's fitted force noise, re-estimated at every refit; network ensembles have
    none).  The predictive σ includes that noise
    (``sigma^2 = sigma_param^2 + sigma_n^2``), so the factor must exceed 1; a factor of 2
    triggers when the parameter part reaches ``sqrt(3) sigma_n``.  The relative mode needs a
    realistic noise: with noise-free labels (EMT) a sparse GP fits ``sigma_n`` ~ 0.002-0.005
    eV/Å while its DTC σ stays at 0.01-0.1 eV/Å, so a factor of 2 labelled every checked
    frame (40 labels in the first 390 steps of a Cu32 run); fix the noise
    (``SparseGPRegressor(noise={"forces": 0.05})``) or use an absolute threshold.

    Every frame records ``info["sigma_max"]`` (the score, eV/Å), ``info["sigma_threshold"]``
    (eV/Å), ``info["md_step"]``, ``info["md_temperature"]`` (K) and the per-atom, per-component
    σ ``arrays["forces_std"]`` (eV/Å, shape (n_atoms, 3)) of the model that proposed it;
    ``trajectory_`` holds every recorded frame of the last :meth:`sample`.

    Which σ to trust out of domain (EMT Cu-Ni, 12 training cells rattled by 0.06 Å; ratio
    of the force MAE to the mean predicted per-atom σ over nine out-of-domain sets, 1 is
    honest): ``SparseGPRegressor`` with the default ``derivative_variance="dtc"`` 0.35-1.8
    (4.8 at 0.25 Å rattles); ``BayesianLinearRegressor`` 1.1-12 (compressed 8 %: 6.6,
    rattled 0.15 Å: 4.8, vacancy: 5.0);
    ``derivative_variance="committee"`` 1.4-39 (it drops the DTC term that grows away
    from the data); ``NeuralNetworkRegressor(n_models=4)`` 1.5-100 (σ did not grow with
    the rattle).  A threshold calibrated in domain therefore fires late out of domain for
    all but the DTC sparse GP; recalibrating on in-domain data does not change that.  In an
    on-the-fly run (Cu32, 300 -> 1500 K over 1500 steps of 2 fs, one labelled start frame)
    the median ratio of the largest force error to the largest σ of the 150 checked frames
    was 0.67 for that sparse GP (absolute threshold 0.06 eV/Å: 22 labels) and 4.3 for
    Bayesian linear regression (threshold 2 x noise: 7 labels).

    Parameters
    ----------
    starts : ase.Atoms or list of ase.Atoms
        Starting structures (required; not modified), e.g. a supercell of the crystal.
    temperature_range : (float, float), default=(300.0, 1500.0)
        K.
    n_steps : int, default=500
        Steps per run (with ``continue_md``: of the whole trajectory).
    timestep_fs : float, default=2.0
        MD time step, fs.
    friction : float, default=0.01
        Langevin friction, 1/fs.
    check_interval : int, default=10
        MD steps between two evaluations of the force σ.
    sigma_threshold : float, default=0.2
        eV/Å, or a multiple (> 1) of the fitted force-noise std with ``threshold_mode="noise"``.
    frames_per_run : int, default=2
        Most uncertain recorded frames kept per run (restart mode).
    threshold_mode : {"absolute", "noise"}, default="absolute"
        How ``sigma_threshold`` is read (see Threshold above).
    continue_md : bool, default=False
        On-the-fly mode (see above).
    temperature_schedule : list of (int, float) or None, default=None
        On the fly only: the trajectory's temperature (K) at MD steps, piecewise linear
        between the points (steps increasing from 0), constant after the last one; e.g.
        ``[(0, 300), (1000, 1500), (2000, 1500), (3000, 300)]`` heats, holds and quenches.
        None: the linear ramp of ``temperature_range``.

    Attributes
    ----------
    n_runs_ : int
    stop_reasons_ : list of str
        ``"threshold"``, ``"steps"`` or ``"invalid"`` per run of the last :meth:`sample`.
    threshold_ : float or None
        The threshold of the last :meth:`sample`, eV/Å (None when it proposed the first
        frame of an on-the-fly trajectory without a model).
    trajectory_ : list of ase.Atoms
        Every recorded frame (every ``check_interval`` steps) of the last :meth:`sample`.
    finished_ : bool
        With ``continue_md``: the trajectory reached ``n_steps`` (nothing left to sample).
    """

    needs_uncertainty = True

    @property
    def needs_model(self):
        """Whether :meth:`sample` needs a fitted model (not on the fly: with no model yet
        the trajectory's first frame is proposed for labelling, FLARE's first step)."""
        return self.continue_md is not True

    def __init__(self, *, starts=None, temperature_range=(300.0, 1500.0), n_steps=500,
                 timestep_fs=2.0, friction=0.01, check_interval=10, sigma_threshold=0.2,
                 frames_per_run=2, threshold_mode="absolute", continue_md=False,
                 temperature_schedule=None):
        self.starts = starts
        self.temperature_range = temperature_range
        self.n_steps = n_steps
        self.timestep_fs = timestep_fs
        self.friction = friction
        self.check_interval = check_interval
        self.sigma_threshold = sigma_threshold
        self.frames_per_run = frames_per_run
        self.threshold_mode = threshold_mode
        self.continue_md = continue_md
        self.temperature_schedule = temperature_schedule

    @property
    def uses_labels(self):
        """Whether :meth:`sample` reads ``labelled`` (on-the-fly mode)."""
        return self.continue_md is True

    def _threshold(self, model, owner):
        mode = check_choice(self.threshold_mode, "threshold_mode", ("absolute", "noise"),
                            owner)
        if mode == "absolute":
            return check_float(self.sigma_threshold, "sigma_threshold", owner, low=0.0)
        f = check_float(self.sigma_threshold, "sigma_threshold", owner, low=1.0)
        sd = _force_noise(model)
        if sd is None:
            raise InvalidParameterError(
                f"{owner}(threshold_mode='noise') needs a model with a fitted force noise; "
                f"its regressor {type(model.regressor_).__name__} has none (a network "
                "ensemble's σ is the members' spread). Use threshold_mode='absolute' with "
                "sigma_threshold in eV/Å.")
        return f * sd

    def _schedule(self, owner):
        """``(steps, temperatures)`` arrays of ``temperature_schedule``, validated."""
        sch = self.temperature_schedule
        msg = (f"The 'temperature_schedule' parameter of {owner} must be a list of (step, "
               f"temperature K) pairs with steps increasing from 0 and temperatures >= 0, "
               f"e.g. [(0, 300), (500, 1500), (1000, 300)]. Got {sch!r} instead.")
        try:
            pts = [(v[0], v[1]) for v in sch]
        except (TypeError, IndexError, KeyError):
            raise InvalidParameterError(msg) from None
        if not pts or any(len(v) != 2 for v in sch):
            raise InvalidParameterError(msg)
        xs, ys = [], []
        for st, temp in pts:
            if isinstance(st, bool) or not isinstance(st, (int, np.integer)) or \
                    isinstance(temp, bool) or not isinstance(temp, (int, float, np.number)) \
                    or not np.isfinite(temp) or temp < 0:
                raise InvalidParameterError(msg)
            xs.append(float(st))
            ys.append(float(temp))
        if xs[0] != 0.0 or any(b <= a for a, b in zip(xs, xs[1:])):
            raise InvalidParameterError(msg)
        return np.array(xs), np.array(ys)

    @staticmethod
    def _last_md_frame(labelled, owner):
        """The last structure of ``labelled`` (list order) this sampler produced, or None."""
        if labelled is None:
            return None
        if not isinstance(labelled, (list, tuple)):
            raise InvalidParameterError(
                f"The 'labelled' argument of {owner}.sample must be a list of ase.Atoms or "
                f"None. Got {type(labelled).__name__} instead.")
        for a in reversed(labelled):
            if a.info.get("sampler") == "md" and "md_step" in a.info:
                return a
        return None

    def _run(self, model, rng, starts, tr, n_steps, dt, fric, every, thr, start=None):
        """One MD run; ``tr`` is the temperature range (restart mode) or, on the fly, the
        breakpoints ``(steps, temperatures)`` of the trajectory's schedule."""
        from ase import units

        from .._compat import langevin, thermalize

        on_the_fly = self.continue_md is True
        if start is None:
            atoms = starts[int(rng.integers(len(starts)))].copy()
            step = 0
        else:
            atoms = start.copy()
            # the label's bookkeeping (ActiveLearner ids, oracle time) is not the new frames'
            for key in ("al_id", "al_iteration", "al_order", "oracle_seconds"):
                atoms.info.pop(key, None)
            step = int(start.info["md_step"])
        ramp = tr if on_the_fly else rng.uniform(*tr, size=2)

        def temp_at(s):
            if on_the_fly:
                return float(np.interp(s, *ramp))
            return float(ramp[0] + (ramp[1] - ramp[0]) * s / n_steps)

        if start is None or not atoms.has("momenta"):
            thermalize(atoms, temp_at(step), rng)
        atoms.calc = model.calculator()
        dyn = langevin(atoms, dt * units.fs, temp_at(step), fric / units.fs, rng)
        frames, scores = [], []
        reason = "steps"
        while step < n_steps:
            k = min(every, n_steps - step)
            try:
                dyn.run(k)
                s, _, _ = _force_sigma(model, atoms)
            except HybridpotError as e:
                reason = "invalid"
                self._last_error = f"{type(e).__name__}: {e}"
                break
            step += k
            temp = temp_at(step)
            dyn.set_temperature(temperature_K=temp)
            fr = atoms.copy()
            fr.calc = None
            fr.set_constraint()
            score = float(np.max(s))
            fr.info.update({"sampler": "md", "sigma_max": score, "sigma_threshold": float(thr),
                            "md_step": step, "md_temperature": temp})
            fr.arrays["forces_std"] = np.array(s, dtype=np.float64)
            frames.append(fr)
            scores.append(score)
            if score > thr:
                reason = "threshold"
                break
        dyn.close()   # ASE 3.23 opens os.devnull as the log of a dynamics without one
        return frames, np.asarray(scores), reason

    def sample(self, n, *, random_state=None, model=None, labelled=None):
        """``n`` frames from uncertainty-terminated MD runs (most uncertain first per run).

        Parameters
        ----------
        n : int
            Number of frames (``>= 0``).
        random_state : int, numpy.random.Generator or None, default=None
            Seed (a non-negative int) or generator; never the global numpy state.
        model : HybridPotential
            Fitted, with a posterior.  With ``continue_md`` and no labelled frame yet, None
            proposes the trajectory's first frame (``md_step`` 0) for labelling.
        labelled : list of ase.Atoms, optional
            With ``continue_md``: the training structures; the trajectory continues from
            the last one this sampler produced.  Ignored otherwise.

        Returns
        -------
        list of ase.Atoms
            Unlabelled frames.

        Raises
        ------
        hybridpot.InvalidParameterError
            For a missing model or one without a posterior, a bad ``n``, ``random_state`` or
            hyperparameter.
        """
        owner = type(self).__name__
        n = check_int(n, "n", f"{owner}.sample", low=0)
        if not isinstance(self.continue_md, (bool, np.bool_)):
            raise InvalidParameterError(
                f"The 'continue_md' parameter of {owner} must be a bool. Got "
                f"{self.continue_md!r} instead.")
        first = self.continue_md is True and model is None
        if not first:
            self._check_model(model)
        starts = _check_starts(self.starts, owner, model)
        tr = self.temperature_range
        n_steps = check_int(self.n_steps, "n_steps", owner, low=1)
        if self.temperature_schedule is not None:
            if self.continue_md is not True:
                raise InvalidParameterError(
                    f"The 'temperature_schedule' parameter of {owner} needs continue_md=True "
                    f"(one trajectory); independent runs draw their ramps from "
                    f"temperature_range. Got temperature_schedule="
                    f"{self.temperature_schedule!r} with continue_md={self.continue_md!r}.")
            tr = self._schedule(owner)
        elif self.continue_md is True and isinstance(tr, (list, tuple)) and len(tr) == 2:
            # the ramp of one trajectory: (T_start, T_end), a decreasing one (quench) too
            tr = tuple(check_float(v, "temperature_range", owner, low=0.0,
                                   low_inclusive=True, finite=True) for v in tr)
            tr = (np.array([0.0, float(n_steps)]), np.array(tr))
        else:
            tr = _check_range(tr, "temperature_range", owner)
            if self.continue_md is True:
                tr = (np.array([0.0, float(n_steps)]), np.array(tr))
        dt = check_float(self.timestep_fs, "timestep_fs", owner, low=0.0)
        fric = check_float(self.friction, "friction", owner, low=0.0, low_inclusive=True)
        every = check_int(self.check_interval, "check_interval", owner, low=1)
        thr = None if first else self._threshold(model, owner)
        per = check_int(self.frames_per_run, "frames_per_run", owner, low=1)
        rng = as_generator(random_state, f"{owner}.sample")
        out, self.stop_reasons_, self.trajectory_ = [], [], []
        self._last_error = None
        self.n_runs_ = 0
        self.threshold_ = thr
        self.finished_ = False
        if first:
            if self._last_md_frame(labelled, owner) is not None:
                raise InvalidParameterError(
                    f"{owner}.sample continues the trajectory of the 'labelled' frames with "
                    "the model fitted to them; got model=None.")
            if n == 0:
                return []
            # no model yet: the trajectory's first frame, to be labelled (FLARE's first step)
            fr = starts[int(rng.integers(len(starts)))].copy()
            fr.calc = None
            fr.info.update({"sampler": "md", "md_step": 0,
                            "md_temperature": float(np.interp(0.0, *tr))})
            self.trajectory_ = [fr]
            return [fr]
        if self.continue_md is True:
            if n == 0:
                return []
            start = self._last_md_frame(labelled, owner)
            if start is not None and int(start.info["md_step"]) >= n_steps:
                self.finished_ = True
                return []
            frames, scores, reason = self._run(model, rng, starts, tr, n_steps, dt, fric,
                                               every, thr, start=start)
            self.n_runs_ = 1
            self.stop_reasons_.append(reason)
            self.trajectory_ = list(frames)
            if reason == "threshold":
                return [frames[-1]]
            if reason == "steps":
                self.finished_ = True
                return []
            last = frames[-1].info["md_step"] if frames else (
                start.info["md_step"] if start is not None else 0)
            raise InvalidParameterError(
                f"{owner}: the on-the-fly MD became unusable after step {last} "
                f"({self._last_error}); reduce temperature_range or timestep_fs, or lower "
                "sigma_threshold so that frames are labelled before the model fails.")
        while len(out) < n:
            frames, scores, reason = self._run(model, rng, starts, tr, n_steps, dt, fric,
                                               every, thr)
            self.n_runs_ += 1
            self.stop_reasons_.append(reason)
            self.trajectory_.extend(frames)
            if not frames:
                if self.n_runs_ > 10 * (n + 1):
                    raise InvalidParameterError(
                        f"{owner}: {self.n_runs_} MD runs produced no usable frame (last "
                        f"error: {self._last_error}); reduce temperature_range or "
                        "timestep_fs.")
                continue
            order = np.lexsort((np.arange(scores.shape[0]), -scores))[:per]
            out.extend(frames[k] for k in order)
        return out[:n]


class AdversarialSampler(Sampler):
    r"""Adversarial structures: gradient ascent of ``p(x) sigma_F^2(x)`` on the positions.

    Maximises the log of the Boltzmann-weighted force variance of the model,

    .. math::  J(x) = -E(x) / (k_B T) + \log \overline{\sigma_F^2}(x),

    with ``E`` the model energy (eV), ``\overline{\sigma_F^2}`` the mean predictive variance
    of the force components (eV²/Å², from ``model._evaluate(..., return_std=True)``) and
    ``T = temperature_K``.  The energy gradient is exact (``-F/kT``); the gradient of
    ``log sigma_F^2`` is taken by central finite differences on every coordinate
    (``gradient="fd"``, ``6 N`` evaluations per step, exact up to ``O(delta^2)``) or by a
    simultaneous-perturbation estimate along one random ±1 direction (``gradient="spsa"``, 2
    evaluations per step, unbiased only on average).  Each step moves the atoms along the
    gradient so that the largest atomic displacement is ``step_size`` (Å).  Each sample starts
    from a random structure of ``starts`` rattled by ``start_rattle`` (Å) and returns the
    iterate of highest ``J`` (``info["adversarial_J"]``).

    Parameters
    ----------
    starts : ase.Atoms or list of ase.Atoms
        Starting structures (required; not modified).
    temperature_K : float, default=300.0
        ``T`` of the Boltzmann factor, K.
    n_steps : int, default=10
        Gradient-ascent steps per sample.
    step_size : float, default=0.03
        Å.
    fd_delta : float, default=0.005
        Å.
    gradient : {"fd", "spsa"}, default="fd"
        Gradient of ``log sigma_F^2``: finite differences or SPSA (see above).
    start_rattle : float, default=0.02
        Å.
    """

    needs_model = True
    needs_uncertainty = True

    def __init__(self, *, starts=None, temperature_K=300.0, n_steps=10, step_size=0.03,
                 fd_delta=0.005, gradient="fd", start_rattle=0.02):
        self.starts = starts
        self.temperature_K = temperature_K
        self.n_steps = n_steps
        self.step_size = step_size
        self.fd_delta = fd_delta
        self.gradient = gradient
        self.start_rattle = start_rattle

    @staticmethod
    def _log_var(model, atoms):
        s, f, e = _force_sigma(model, atoms)
        return float(np.log(np.mean(s ** 2))), f, e

    def objective(self, model, atoms):
        """``J(x)`` (dimensionless) of the model at ``atoms``.

        Parameters
        ----------
        model : HybridPotential
            Fitted, with a posterior.
        atoms : ase.Atoms
            The structure.

        Returns
        -------
        float
            ``-E / (k_B T) + log(mean force variance)`` (see the class docstring).
        """
        kT = KB * check_float(self.temperature_K, "temperature_K", type(self).__name__,
                              low=0.0)
        lv, _, e = self._log_var(model, atoms)
        return -e / kT + lv

    def _grad_log_var(self, model, atoms, rng, delta, mode):
        x0 = atoms.positions.copy()
        g = np.zeros_like(x0)
        try:
            if mode == "spsa":
                d = rng.choice([-1.0, 1.0], size=x0.shape)
                atoms.positions = x0 + delta * d
                lp = self._log_var(model, atoms)[0]
                atoms.positions = x0 - delta * d
                lm = self._log_var(model, atoms)[0]
                return (lp - lm) / (2 * delta) * d
            for i in range(x0.shape[0]):  # loop over coordinates of a small cell (documented)
                for a in range(3):
                    x = x0.copy()
                    x[i, a] += delta
                    atoms.positions = x
                    lp = self._log_var(model, atoms)[0]
                    x[i, a] -= 2 * delta
                    atoms.positions = x
                    lm = self._log_var(model, atoms)[0]
                    g[i, a] = (lp - lm) / (2 * delta)
            return g
        finally:
            atoms.positions = x0

    def sample(self, n, *, random_state=None, model=None):
        """``n`` adversarial structures (``info["sampler"] = "adversarial"``).

        Parameters
        ----------
        n : int
            Number of structures (``>= 0``).
        random_state : int, numpy.random.Generator or None, default=None
            Seed (a non-negative int) or generator; never the global numpy state.
        model : HybridPotential
            Fitted, with a posterior (required).

        Returns
        -------
        list of ase.Atoms
            Unlabelled structures.

        Raises
        ------
        hybridpot.InvalidParameterError
            For a missing model or one without a posterior, a bad ``n``, ``random_state`` or
            hyperparameter.
        """
        owner = type(self).__name__
        n = check_int(n, "n", f"{owner}.sample", low=0)
        self._check_model(model)
        starts = _check_starts(self.starts, owner, model)
        kT = KB * check_float(self.temperature_K, "temperature_K", owner, low=0.0)
        n_steps = check_int(self.n_steps, "n_steps", owner, low=0)
        step = check_float(self.step_size, "step_size", owner, low=0.0)
        delta = check_float(self.fd_delta, "fd_delta", owner, low=0.0)
        mode = check_choice(self.gradient, "gradient", ("fd", "spsa"), owner)
        rat = check_float(self.start_rattle, "start_rattle", owner, low=0.0,
                          low_inclusive=True)
        rng = as_generator(random_state, f"{owner}.sample")
        out = []
        for _ in range(n):
            atoms = starts[int(rng.integers(len(starts)))].copy()
            atoms.calc = None
            atoms.positions += rng.normal(0.0, rat, atoms.positions.shape)
            best, best_j = atoms.copy(), -np.inf
            for it in range(n_steps + 1):
                try:
                    lv, f, e = self._log_var(model, atoms)
                except HybridpotError:
                    break
                j = -e / kT + lv
                if j > best_j:
                    best, best_j = atoms.copy(), j
                if it == n_steps:
                    break
                try:
                    g = f / kT + self._grad_log_var(model, atoms, rng, delta, mode)
                except HybridpotError:
                    break
                gmax = float(np.max(np.linalg.norm(g, axis=1)))
                if not gmax > 0:
                    break
                atoms.positions = atoms.positions + step * g / gmax
            best.info.update({"sampler": "adversarial", "adversarial_J": float(best_j)})
            out.append(best)
        return out
