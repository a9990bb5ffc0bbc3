"""Candidate generators for active learning (all take ``random_state``, never seed globally).

- :class:`RandomDisorderSampler`: random cells and positions with a density range and a minimum
  interatomic distance (no knowledge of the crystal needed).
- :class:`RattleStrainSampler`: rattled, strained copies of a prototype crystal.
- :class:`PoolSampler`: candidates drawn from a fixed list (pool-based active learning).
- :class:`UncertaintyMDSampler`: MD with the current model at a random temperature ramp,
  stopped when the predicted force uncertainty passes a threshold; returns the most uncertain
  frames.  With ``continue_md=True`` (on-the-fly learning, FLARE's loop) one trajectory is
  continued from each labelled frame it proposed.
- :class:`AdversarialSampler`: gradient ascent of ``-E/kT + log sigma_F^2`` on the positions.

Every sampler has ``sample(n, *, random_state, model=None) -> list[ase.Atoms]`` (samplers
with ``uses_labels`` also take ``labelled=``, the learner's training structures).
"""

from ._base import Sampler, as_generator
from ._crystal import PoolSampler, RandomDisorderSampler, RattleStrainSampler, min_image_distance
from ._model import AdversarialSampler, UncertaintyMDSampler

__all__ = ["Sampler", "as_generator", "RandomDisorderSampler", "RattleStrainSampler",
           "PoolSampler", "UncertaintyMDSampler", "AdversarialSampler", "min_image_distance"]
