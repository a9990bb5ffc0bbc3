"""Small shims over ASE versions."""

__all__ = ["thermalize"]


def thermalize(atoms, temperature_K, rng):
    """Maxwell-Boltzmann momenta at ``temperature_K`` (K) drawn from the generator ``rng``.

    Uses ``ase.md.velocitydistribution.thermalize_momenta`` (ASE >= 3.29) and falls back to
    ``MaxwellBoltzmannDistribution`` on older ASE.
    """
    from ase.md import velocitydistribution as vd

    if hasattr(vd, "thermalize_momenta"):
        vd.thermalize_momenta(atoms, temperature_K, rng=rng)
    else:  # pragma: no cover - ASE < 3.29
        vd.MaxwellBoltzmannDistribution(atoms, temperature_K=temperature_K, rng=rng)


def langevin(atoms, timestep, temperature_K, friction, rng):
    """``ase.md.langevin.Langevin`` keeping the centre of mass fixed the recommended way.

    ASE >= 3.28 deprecates ``fixcm=True``; we pass ``fixcm=False`` and add a ``FixCom``
    constraint to ``atoms`` (modifies ``atoms.constraints``) instead.

    Parameters
    ----------
    timestep : float
        ASE time units (multiply fs by ``ase.units.fs``).
    friction : float
        ASE inverse time units (e.g. ``0.02 / ase.units.fs``, or the historic plain 0.02).
    """
    from ase.constraints import FixCom
    from ase.md.langevin import Langevin

    if not any(isinstance(c, FixCom) for c in atoms.constraints):
        atoms.set_constraint(list(atoms.constraints) + [FixCom()])
    return Langevin(atoms, timestep, temperature_K=temperature_K, friction=friction,
                    fixcm=False, rng=rng)
