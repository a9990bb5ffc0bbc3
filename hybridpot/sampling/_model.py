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


def _check_starts(starts, owner):
    from ase import Atoms

    if isinstance(starts, Atoms):
        starts = [starts]
    if not isinstance(starts, (list, tuple)) or not starts or \
            not all(isinstance(a, Atoms) for a in starts):
        raise InvalidParameterError(
            f"The 'starts' parameter of {owner} must be an ase.Atoms or a non-empty list of "
            f"them. Got {type(starts).__name__} instead.")
    return list(starts)


def _force_sigma(model, atoms):
    """Force-component σ (eV/Å, shape (n_atoms, 3)) and forces of the model at ``atoms``."""
    r = model._evaluate(atoms, forces=True, stress=False, return_std=True)
    return r["forces_std"], r["forces"], r["energy"]


class UncertaintyMDSampler(Sampler):
    r"""Langevin MD with the current model, stopped when its force uncertainty gets large.

    Each run starts from a random structure of ``starts`` with Maxwell-Boltzmann velocities at
    ``T_start`` and ramps the thermostat linearly to ``T_end`` over ``n_steps`` (both uniform in
    ``temperature_range``, K).  Every ``check_interval`` steps the predictive force σ
    (``model._evaluate(..., return_std=True)``: posterior or committee) is evaluated; the frame
    and its score ``max_{i,a} sigma_F[i, a]`` (eV/Å) are recorded.  The run stops when the score
    exceeds ``sigma_threshold``, after ``n_steps``, or when the structure becomes unusable (atoms
    closer than the neighbour list's limit).  The ``frames_per_run`` most uncertain recorded
    frames are returned (``info["sigma_max"]``), and runs repeat until ``n`` frames exist.

    Parameters
    ----------
    starts : ase.Atoms or list of ase.Atoms
    temperature_range : (float, float), default=(300.0, 1500.0)
        K.
    n_steps : int, default=500
    timestep_fs : float, default=2.0
    friction : float, default=0.01
        Langevin friction, 1/fs.
    check_interval : int, default=10
    sigma_threshold : float, default=0.2
        eV/Å.
    frames_per_run : int, default=2

    Attributes
    ----------
    n_runs_ : int
    stop_reasons_ : list of str
        ``"threshold"``, ``"steps"`` or ``"invalid"`` per run of the last :meth:`sample`.
    """

    needs_model = True
    needs_uncertainty = True

    def __init__(self, *, starts=None, temperature_range=(300.0, 1500.0), n_steps=500,
                 timestep_fs=2.0, friction=0.01, check_interval=10, sigma_threshold=0.2,
                 frames_per_run=2):
        self.starts = starts
        self.temperature_range = temperature_range
        self.n_steps = n_steps
        self.timestep_fs = timestep_fs
        self.friction = friction
        self.check_interval = check_interval
        self.sigma_threshold = sigma_threshold
        self.frames_per_run = frames_per_run

    def _run(self, model, rng, starts, tr, n_steps, dt, fric, every, thr):
        from ase import units

        from .._compat import langevin, thermalize

        atoms = starts[int(rng.integers(len(starts)))].copy()
        atoms.calc = model.calculator()
        t0, t1 = rng.uniform(*tr, size=2)
        thermalize(atoms, t0, rng)
        dyn = langevin(atoms, dt * units.fs, t0, fric / units.fs, rng)
        frames, scores = [], []
        reason = "steps"
        step = 0
        while step < n_steps:
            k = min(every, n_steps - step)
            try:
                dyn.run(k)
                s, _, _ = _force_sigma(model, atoms)
            except HybridpotError:
                reason = "invalid"
                break
            step += k
            dyn.set_temperature(temperature_K=t0 + (t1 - t0) * step / n_steps)
            fr = atoms.copy()
            fr.calc = None
            fr.set_constraint()
            score = float(np.max(s))
            fr.info.update({"sampler": "md", "sigma_max": score, "md_step": step,
                            "md_temperature": float(t0 + (t1 - t0) * step / n_steps)})
            frames.append(fr)
            scores.append(score)
            if score > thr:
                reason = "threshold"
                break
        return frames, np.asarray(scores), reason

    def sample(self, n, *, random_state=None, model=None):
        """``n`` frames from uncertainty-terminated MD runs (most uncertain first per run)."""
        owner = type(self).__name__
        n = check_int(n, "n", f"{owner}.sample", low=0)
        self._check_model(model)
        starts = _check_starts(self.starts, owner)
        tr = _check_range(self.temperature_range, "temperature_range", owner)
        n_steps = check_int(self.n_steps, "n_steps", owner, low=1)
        dt = check_float(self.timestep_fs, "timestep_fs", owner, low=0.0)
        fric = check_float(self.friction, "friction", owner, low=0.0, low_inclusive=True)
        every = check_int(self.check_interval, "check_interval", owner, low=1)
        thr = check_float(self.sigma_threshold, "sigma_threshold", owner, low=0.0)
        per = check_int(self.frames_per_run, "frames_per_run", owner, low=1)
        rng = as_generator(random_state, f"{owner}.sample")
        out, self.stop_reasons_ = [], []
        self.n_runs_ = 0
        while len(out) < n:
            frames, scores, reason = self._run(model, rng, starts, tr, n_steps, dt, fric,
                                               every, thr)
            self.n_runs_ += 1
            self.stop_reasons_.append(reason)
            if not frames:
                if self.n_runs_ > 10 * (n + 1):
                    raise InvalidParameterError(
                        f"{owner}: {self.n_runs_} MD runs produced no usable frame; reduce "
                        "temperature_range or timestep_fs.")
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
    temperature_K : float, default=300.0
    n_steps : int, default=10
    step_size : float, default=0.03
        Å.
    fd_delta : float, default=0.005
        Å.
    gradient : {"fd", "spsa"}, default="fd"
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
        """``J(x)`` (dimensionless) of the model at ``atoms``."""
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
        """``n`` adversarial structures (``info["sampler"] = "adversarial"``)."""
        owner = type(self).__name__
        n = check_int(n, "n", f"{owner}.sample", low=0)
        self._check_model(model)
        starts = _check_starts(self.starts, owner)
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
