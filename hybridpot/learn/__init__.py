"""Active learning: the crash-safe loop (:class:`ActiveLearner`) and its command line.

See :mod:`hybridpot.uq.selection` for the selectors and :mod:`hybridpot.sampling` for the
candidate generators, and :mod:`hybridpot.learn._weights` for the importance weights of an
actively selected training set.  :func:`run_summary` / :func:`write_run_report` summarise a
run directory (σ along the on-the-fly MD trajectory, labels, σ before / after each refit).
"""

from ._learner import (ActiveLearner, default_selector, label_structure, make_oracle,
                       read_labels)
from ._report import run_summary, write_run_report
from ._weights import WEIGHTING_METHODS, importance_weights, importance_weights_from_fingerprints

__all__ = ["ActiveLearner", "default_selector", "label_structure", "make_oracle",
           "read_labels", "importance_weights", "importance_weights_from_fingerprints",
           "WEIGHTING_METHODS", "run_summary", "write_run_report"]
