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
