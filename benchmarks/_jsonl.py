"""Strict JSON lines for the benchmarks (``../shared/BENCHMARKS.md``, "Machine-readable output").

Every benchmark prints its ``--json`` records through :func:`dumps`: strict JSON (RFC 8259) has
no ``NaN`` / ``Infinity``, which :func:`json.dumps` writes by default (a Spearman correlation of
fewer than 3 structures is NaN, for instance); such values become ``null``, as do the other
"not measured" fields.  Numpy scalars and arrays become Python numbers and lists.
"""

from __future__ import annotations

import json
import math

import numpy as np


def clean(value):
    """``value`` with every non-finite float as ``None`` and numpy types as Python ones."""
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    if isinstance(value, np.ndarray):
        return clean(value.tolist())
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else None
    return value


def dumps(record):
    """One strict-JSON line of ``record`` (NaN / ±inf written as ``null``)."""
    return json.dumps(clean(record), allow_nan=False)
