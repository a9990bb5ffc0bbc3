"""Rotation-, translation- and permutation-invariant atomic environment descriptors.

Every descriptor has ``compute(atoms)``, ``compute(atoms, gradients=True)`` and the adjoint
``backward(atoms, dE_dX)``; the Jacobian layout is documented in
:mod:`hybridpot.descriptors._base`.
"""

from ._base import (DESCRIPTORS, Descriptor, DescriptorGradients, descriptor_from_dict,
                    register_descriptor)

__all__ = ["Descriptor", "DescriptorGradients", "DESCRIPTORS", "register_descriptor",
           "descriptor_from_dict"]

# Concrete descriptors register themselves on import.  While the package is being built up a
# descriptor module may not exist yet; any other import error propagates.
import importlib as _importlib

for _mod, _names in (("_so3", ("PowerSpectrum", "Bispectrum")), ("_acsf", ("ACSF",)),
                     ("_snap", ("SNAPBispectrum",))):
    try:
        _m = _importlib.import_module(f"{__name__}.{_mod}")
    except ModuleNotFoundError as _e:  # pragma: no cover
        if _e.name != f"{__name__}.{_mod}":
            raise
        continue
    for _n in _names:
        globals()[_n] = getattr(_m, _n)
        __all__.append(_n)
