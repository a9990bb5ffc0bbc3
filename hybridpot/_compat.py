"""Small shims over ASE versions."""

__all__ = ["thermalize", "langevin"]


def thermalize(atoms, temperature_K, rng):
    """Maxwell-Boltzmann momenta at ``temperature_K`` (K) drawn from the generator ``rng``.

    Uses ``ase.md.velocitydistribution.thermalize_momenta`` (ASE >= 3.29) and falls back to
    ``MaxwellBoltzmannDistribution`` on older ASE.

    Parameters
    ----------
    atoms : ase.Atoms
        Its momenta are set (modified in place).
    temperature_K : float
        K.
    rng : numpy.random.Generator
    """
    from ase.md import velocitydistribution as vd

    if hasattr(vd, "thermalize_momenta"):
        vd.thermalize_momenta(atoms, temperature_K, rng=rng)
    else:  # pragma: no cover - ASE < 3.29
        vd.MaxwellBoltzmannDistribution(atoms, temperature_K=temperature_K, rng=rng)


def _pins_atoms(constraint):
    """Whether ``constraint`` holds some atoms (or coordinates) in place."""
    from ase.constraints import FixAtoms, FixCartesian, FixedLine, FixedPlane

    return isinstance(constraint, (FixAtoms, FixCartesian, FixedLine, FixedPlane))


def langevin(atoms, timestep, temperature_K, friction, rng):
    """``ase.md.langevin.Langevin`` keeping the centre of mass fixed the recommended way.

    ASE >= 3.28 deprecates ``fixcm=True``; we pass ``fixcm=False`` and add a ``FixCom``
    constraint to ``atoms`` (modifies ``atoms.constraints``) instead -- unless ``atoms``
    already has a constraint holding atoms in place (``FixAtoms``, ``FixCartesian``,
    ``FixedLine``, ``FixedPlane``, e.g. the bottom layers of a slab): those atoms anchor the
    system, and ``FixCom`` would shift them (it moves every atom to restore the centre of
    mass).

    Parameters
    ----------
    atoms : ase.Atoms
        With a calculator attached.
    timestep : float
        ASE time units (multiply fs by ``ase.units.fs``).
    temperature_K : float
        K.
    friction : float
        ASE inverse time units (e.g. ``0.02 / ase.units.fs``, or the historic plain 0.02).
    rng : numpy.random.Generator
        Random forces.

    Returns
    -------
    ase.md.langevin.Langevin
    """
    from ase.constraints import FixCom
    from ase.md.langevin import Langevin

    if not any(isinstance(c, FixCom) or _pins_atoms(c) for c in atoms.constraints):
        atoms.set_constraint(list(atoms.constraints) + [FixCom()])
    return Langevin(atoms, timestep, temperature_K=temperature_K, friction=friction,
                    fixcm=False, rng=rng)
