"""Session-7 review: importance weights on near-duplicate fingerprints.

``hybridpot learn`` with ``sampler = "disorder"`` and ``importance_weighting = "strata"``
printed sklearn's ConvergenceWarning 'Number of distinct clusters (6) found smaller than
n_clusters (8)' (an error under ``-W error`` / pytest's filterwarnings = error): np.unique
counts fingerprints that differ by round-off as distinct, k-means does not.
"""

import numpy as np
import pytest

from hybridpot.learn import importance_weights_from_fingerprints


@pytest.mark.filterwarnings("error")
def test_strata_weights_on_numerically_coincident_fingerprints():
    lab = np.array([[0.0, 0.0], [1.0, 1.0]])
    ref = np.array([[0.0, 0.0], [0.0, 1e-300], [1.0, 1.0], [1.0, 1.0 + 1e-15],
                    [1.0, 1.0 + 2e-15], [5.0, 5.0]])
    w = importance_weights_from_fingerprints(lab, ref, method="strata", n_strata=8)
    # the pool is 2/6 near (0, 0) and 3/6 near (1, 1) (the last sixth has no label)
    np.testing.assert_allclose(w, np.array([2.0, 3.0]) * 2 / 5)
    assert w.mean() == pytest.approx(1.0)
