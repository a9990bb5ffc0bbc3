"""Typed exceptions.

Every error raised on purpose by hybridpot derives from :class:`HybridpotError`.  The subclasses
also derive from the matching built-in (``ValueError``, ``KeyError``, ...) so that generic
``except ValueError`` code keeps working.  Messages name the parameter, what is allowed and what
was given, in the scikit-learn style::

    The 'r_cut' parameter of PowerSpectrum must be a float in (0, inf). Got -1.0 instead.
"""

from sklearn.exceptions import NotFittedError as _SkNotFittedError

__all__ = [
    "HybridpotError",
    "InvalidParameterError",
    "InvalidStructureError",
    "UnknownSpeciesError",
    "MissingLabelsError",
    "NotFittedError",
    "ModelFormatError",
    "ConfigError",
    "OracleError",
]


class HybridpotError(Exception):
    """Base class of every error hybridpot raises on purpose."""


class InvalidParameterError(HybridpotError, ValueError):
    """A constructor or function argument is out of its allowed range or of the wrong type."""


class InvalidStructureError(HybridpotError, ValueError):
    """An ``ase.Atoms`` cannot be used: NaN/inf positions, overlapping atoms, zero-volume cell..."""


class UnknownSpeciesError(InvalidStructureError):
    """A structure contains a chemical element the model or descriptor was not built for."""


class MissingLabelsError(HybridpotError, ValueError):
    """A training structure carries no usable label (energy, forces or stress), or a NaN label."""


class NotFittedError(HybridpotError, _SkNotFittedError):
    """A model is used for prediction before ``fit`` (also a scikit-learn ``NotFittedError``)."""


class ModelFormatError(HybridpotError, ValueError):
    """A model file is corrupt, incomplete, or written by a newer format version."""


class ConfigError(HybridpotError, ValueError):
    """A configuration file has an unknown key, a bad value or a bad path."""


class OracleError(HybridpotError, RuntimeError):
    """A labelling oracle (an ASE calculator) failed or timed out on a structure."""
