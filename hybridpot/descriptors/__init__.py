"""Rotation-, translation- and permutation-invariant atomic environment descriptors.

Every descriptor has ``compute(atoms)``, ``compute(atoms, gradients=True)`` and the adjoint
``backward(atoms, dE_dX)``; the Jacobian layout is documented in
:mod:`hybridpot.descriptors._base`.
"""

from ._acsf import ACSF
from ._base import (DESCRIPTORS, Descriptor, DescriptorGradients, descriptor_from_dict,
                    register_descriptor)
from ._snap import SNAPBispectrum
from ._so3 import Bispectrum, PowerSpectrum
from ._stack import DescriptorStack

__all__ = ["PowerSpectrum", "Bispectrum", "SNAPBispectrum", "ACSF", "Descriptor",
           "DescriptorGradients", "DESCRIPTORS", "register_descriptor", "descriptor_from_dict",
           "DescriptorStack"]
