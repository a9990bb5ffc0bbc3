"""Active learning: the crash-safe loop (:class:`ActiveLearner`) and its command line.

See :mod:`hybridpot.uq.selection` for the selectors and :mod:`hybridpot.sampling` for the
candidate generators.
"""

from ._learner import (ActiveLearner, default_selector, label_structure, make_oracle,
                       read_labels)

__all__ = ["ActiveLearner", "default_selector", "label_structure", "make_oracle",
           "read_labels"]
