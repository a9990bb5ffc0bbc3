"""hybridpot: machine-learned interatomic potentials on top of empirical ones.

The model is ``E(r) = E_EP(r) + E_ML(d(r); w)``: an empirical baseline plus a learned correction
on rotation-invariant atomic descriptors, fitted to the residual of DFT energies, forces and
stresses, with Bayesian uncertainty, and run through ASE.  Units: eV, Å, eV/Å, eV/Å³.
"""

__version__ = "0.2.0"

from ._compat import ensure_numba_cache_dir as _ensure_numba_cache_dir  # noqa: E402

_ensure_numba_cache_dir(__path__[0])

from ._exceptions import (ConfigError, HybridpotError, InvalidParameterError,  # noqa: F401
                          InvalidStructureError, MissingLabelsError, ModelFormatError,
                          NotFittedError, OracleError, UnknownSpeciesError)

__all__ = ["__version__", "HybridpotError", "InvalidParameterError", "InvalidStructureError",
           "UnknownSpeciesError", "MissingLabelsError", "NotFittedError", "ModelFormatError",
           "ConfigError", "OracleError"]


def __getattr__(name):
    # HybridPotential pulls in descriptors, regression and ASE: import it lazily.
    if name in ("HybridPotential", "HybridCalculator"):
        from . import potential

        return getattr(potential, name)
    raise AttributeError(f"module 'hybridpot' has no attribute {name!r}")
