"""Small shims over ASE versions, and where numba keeps its cache of compiled kernels."""

import getpass
import os
import sys
import tempfile
from pathlib import Path

__all__ = ["thermalize", "langevin"]


def _writable_dir(path):
    """Whether ``path`` exists (or can be made) and a file can be written in it, as numba's
    cache locators test it."""
    try:
        os.makedirs(path, exist_ok=True)
        tempfile.TemporaryFile(dir=path).close()
    except OSError:
        return False
    return True


def _numba_user_cache_dir():
    """numba's user-wide cache folder (``~/.cache/numba`` on Linux)."""
    from numba.misc.appdirs import AppDirs

    return AppDirs(appname="numba", appauthor=False).user_cache_dir


def _private_dir(path):
    """``path`` made (mode 0700) and returned if it is a folder owned by this user that no one
    else can write to, else None: numba's cache holds pickles, which must not come from
    another user of a shared temporary folder."""
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        st = os.stat(path)
    except OSError:
        return None
    if hasattr(os, "getuid") and (st.st_uid != os.getuid() or st.st_mode & 0o022):
        return None
    return path if _writable_dir(path) else None


def ensure_numba_cache_dir(package_dir):
    """Give numba a writable cache folder when it would have none (called on import).

    The kernels are compiled with ``cache=True``; numba caches them next to the source
    (``__pycache__`` of the installed package) or, when that is read-only (a system-wide,
    container or read-only site-packages install), in the user's ``~/.cache/numba``.  With
    both read-only (e.g. a service account whose home does not exist) numba raises
    ``RuntimeError: cannot cache function ...: no locator available`` on import.  Then, and
    only when ``NUMBA_CACHE_DIR`` is unset, this sets ``NUMBA_CACHE_DIR`` to a private folder
    ``<tmp>/hybridpot-numba-cache-<uid>`` (reused by later runs on that machine).

    Parameters
    ----------
    package_dir : path-like
        The folder of the hybridpot package.

    Returns
    -------
    pathlib.Path or None
        The cache folder set, or None when numba's own choice works (or nothing does: then
        set ``NUMBA_CACHE_DIR`` to a writable folder yourself).
    """
    if os.environ.get("NUMBA_CACHE_DIR"):
        return None
    if _writable_dir(Path(package_dir) / "__pycache__"):
        return None
    try:
        if _writable_dir(_numba_user_cache_dir()):
            return None
    except ImportError:  # pragma: no cover - numba is a core dependency
        return None
    uid = os.getuid() if hasattr(os, "getuid") else getpass.getuser()
    path = _private_dir(Path(tempfile.gettempdir()) / f"hybridpot-numba-cache-{uid}")
    if path is None:
        try:
            path = Path(tempfile.mkdtemp(prefix="hybridpot-numba-cache-"))
        except OSError:
            return None
    os.environ["NUMBA_CACHE_DIR"] = str(path)
    config = sys.modules.get("numba.core.config")
    if config is not None:  # numba read its environment on import: tell it too
        config.CACHE_DIR = str(path)
    return path


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
