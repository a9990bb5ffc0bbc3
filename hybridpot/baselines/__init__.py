"""Empirical baselines ``E_EP`` under the machine-learned correction.

Pair potentials with smooth cutoffs and exact LAMMPS equivalents (:class:`ZBL`,
:class:`LennardJones`, :class:`Morse`, :class:`Buckingham`), :class:`EMT` (numba effective
medium theory, equal to ASE's) and :class:`ASEBaseline` wrapping any ASE calculator.  The
common interface (``compute``, ``calculator``, parameter vectors and their analytic gradients,
``to_dict`` / :func:`baseline_from_dict`, ``lammps_commands``) is documented in
:mod:`hybridpot.baselines._base`.
"""

from ._ase import ASEBaseline
from ._base import BASELINES, Baseline, BaselineCalculator, baseline_from_dict, register_baseline
from ._emt import EMT
from ._pair import ZBL, Buckingham, LennardJones, Morse

__all__ = ["Baseline", "BaselineCalculator", "BASELINES", "register_baseline",
           "baseline_from_dict", "ZBL", "LennardJones", "Morse", "Buckingham", "ASEBaseline",
           "EMT"]
