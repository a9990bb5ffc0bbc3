"""Uncertainty quantification: emcee posteriors of linear models, predictive committees,
calibration metrics and recalibration.

- :class:`LinearPosterior` samples the hyperparameters ``theta`` (prior precision, noise per
  label kind / config group, baseline parameters) of a fitted linear
  :class:`~hybridpot.HybridPotential` with emcee, the weights marginalised analytically.
- :class:`Committee` (from :meth:`LinearPosterior.committee` / :meth:`LinearPosterior.apply`)
  gives σ of energies, forces and stress in one pass (Jacobian design rows times all
  members, or a fused batched adjoint for small committees).
- :func:`calibration_metrics`, :func:`evaluate_uncertainty`, :func:`recalibrate`.
"""

from ._calibration import (calibration_curve, calibration_metrics, collect_uncertainty,
                           evaluate_uncertainty, recalibrate)
from ._committee import Committee
from ._posterior import ChainTooShortError, LinearPosterior, log_evidence_from_factors

__all__ = ["LinearPosterior", "ChainTooShortError", "Committee", "log_evidence_from_factors",
           "calibration_curve", "calibration_metrics", "collect_uncertainty",
           "evaluate_uncertainty", "recalibrate"]
from . import selection  # noqa: E402,F401  (active-learning selectors: hybridpot.uq.selection)
