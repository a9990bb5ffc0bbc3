"""SO(4) SNAP bispectrum, identical to LAMMPS ML-SNAP ``compute sna/atom``."""

from __future__ import annotations

import math
import numbers
from pathlib import Path

import numpy as np
from ase.data import chemical_symbols

from .._exceptions import InvalidParameterError, InvalidStructureError, ModelFormatError
from .._validation import check_float, check_int, check_species_list
from ._base import Descriptor, register_descriptor
from . import _snap_kernels as _k

__all__ = ["SNAPBispectrum", "read_snapparam", "snap_tables"]


def _cg(j1, m1, j2, m2, j, m):
    """Clebsch-Gordan <j1/2 m1', j2/2 m2' | j/2 m'> with ``m' = m - j/2`` etc. (Racah formula).

    Arguments are LAMMPS array offsets (``0 <= m1 <= j1``); exact integer factorials.
    """
    a2 = 2 * m1 - j1
    b2 = 2 * m2 - j2
    c2 = 2 * m - j
    if a2 + b2 != c2:
        return 0.0
    f = math.factorial
    kmin = max(0, (j2 - j - a2) // 2, (j1 - j + b2) // 2)
    kmax = min((j1 + j2 - j) // 2, (j1 - a2) // 2, (j2 + b2) // 2)
    s = 0.0
    for k in range(kmin, kmax + 1):
        s += (-1) ** k / (f(k) * f((j1 + j2 - j) // 2 - k) * f((j1 - a2) // 2 - k)
                          * f((j2 + b2) // 2 - k) * f((j - j2 + a2) // 2 + k)
                          * f((j - j1 - b2) // 2 + k))
    tri = math.sqrt(f((j1 + j2 - j) // 2) * f((j1 - j2 + j) // 2) * f((-j1 + j2 + j) // 2)
                    / f((j1 + j2 + j) // 2 + 1))
    norm = math.sqrt(f((j1 + a2) // 2) * f((j1 - a2) // 2) * f((j2 + b2) // 2)
                     * f((j2 - b2) // 2) * f((j + c2) // 2) * f((j - c2) // 2) * (j + 1))
    return s * tri * norm


_TABLES = {}


def snap_tables(twojmax):
    """Index lists and constants of the SNAP bispectrum for ``twojmax`` (cached).

    Returns a dict with ``idxu_block`` (J+1,), ``rootpq`` (J+2, J+2), ``cglist``,
    ``idxcg_block`` (J+1, J+1, J+1), ``idxz`` (n_z, 10), ``idxz_block``, ``idxb`` (n_b, 3)
    (the LAMMPS component order ``j1 <= twojmax, j2 <= j1, j = j1-j2..min(J, j1+j2) step 2,
    j >= j1``), ``idxb_block`` and the Y-array maps ``z_jjb``/``z_fac``.
    """
    if twojmax in _TABLES:
        return _TABLES[twojmax]
    J = int(twojmax)
    jd = J + 1
    idxu_block = np.zeros(jd, dtype=np.int64)
    c = 0
    for j in range(jd):
        idxu_block[j] = c
        c += (j + 1) ** 2
    rootpq = np.zeros((J + 2, J + 2))
    for p in range(1, J + 1):
        for q in range(1, J + 1):
            rootpq[p, q] = math.sqrt(p / q)
    triples = [(j1, j2, j) for j1 in range(jd) for j2 in range(j1 + 1)
               for j in range(j1 - j2, min(J, j1 + j2) + 1, 2)]
    idxcg_block = np.full((jd, jd, jd), -1, dtype=np.int64)
    cg = []
    for j1, j2, j in triples:
        idxcg_block[j1, j2, j] = len(cg)
        for m1 in range(j1 + 1):
            for m2 in range(j2 + 1):
                m = (2 * m1 - j1 + 2 * m2 - j2 + j) // 2
                cg.append(_cg(j1, m1, j2, m2, j, m) if 0 <= m <= j else 0.0)
    idxb = np.array([t for t in triples if t[2] >= t[0]], dtype=np.int64).reshape(-1, 3)
    idxb_block = np.full((jd, jd, jd), -1, dtype=np.int64)
    for n, (j1, j2, j) in enumerate(idxb):
        idxb_block[j1, j2, j] = n
    idxz_block = np.full((jd, jd, jd), -1, dtype=np.int64)
    rows = []
    for j1, j2, j in triples:
        idxz_block[j1, j2, j] = len(rows)
        for mb in range(j // 2 + 1):
            for ma in range(j + 1):
                ma1min = max(0, (2 * ma - j - j2 + j1) // 2)
                ma2max = (2 * ma - j - (2 * ma1min - j1) + j2) // 2
                na = min(j1, (2 * ma - j + j2 + j1) // 2) - ma1min + 1
                mb1min = max(0, (2 * mb - j - j2 + j1) // 2)
                mb2max = (2 * mb - j - (2 * mb1min - j1) + j2) // 2
                nb = min(j1, (2 * mb - j + j2 + j1) // 2) - mb1min + 1
                jju = idxu_block[j] + (j + 1) * mb + ma
                rows.append((j1, j2, j, ma1min, ma2max, na, mb1min, mb2max, nb, jju))
    idxz = np.array(rows, dtype=np.int64)
    # Y = dE/dU: each Z_{j1 j2 j} entry feeds U^j with the coefficient of the B it belongs to
    z_jjb = np.empty(len(idxz), dtype=np.int64)
    z_fac = np.empty(len(idxz))
    for k, (j1, j2, j) in enumerate(idxz[:, :3]):
        if j >= j1:
            jjb = idxb_block[j1, j2, j]
            fac = 3.0 if (j1 == j and j2 == j) else (2.0 if j1 == j else 1.0)
        elif j >= j2:
            jjb = idxb_block[j, j2, j1]
            fac = 2.0 if j2 == j else 1.0
        else:
            jjb = idxb_block[j2, j, j1]
            fac = 1.0
        if j1 > j:
            fac *= (j1 + 1) / (j + 1.0)
        z_jjb[k] = jjb
        z_fac[k] = fac
    t = dict(idxu_block=idxu_block, rootpq=rootpq, cglist=np.array(cg),
             idxcg_block=idxcg_block, idxz=idxz, idxz_block=idxz_block, idxb=idxb,
             idxb_block=idxb_block, z_jjb=z_jjb, z_fac=z_fac)
    for v in t.values():
        v.setflags(write=False)
    _TABLES[J] = t
    return t


# LAMMPS pair_style snap defaults for optional .snapparam keywords
_SNAPPARAM_DEFAULTS = {"rfac0": 0.99363, "rmin0": 0.0, "switchflag": 1, "bzeroflag": 1,
                       "quadraticflag": 0, "chemflag": 0, "bnormflag": 0, "wselfallflag": 0,
                       "switchinnerflag": 0}
_SNAPPARAM_INT = {"twojmax", "switchflag", "bzeroflag", "quadraticflag", "chemflag",
                  "bnormflag", "wselfallflag", "switchinnerflag", "chunksize", "parallelthresh"}
_SNAPPARAM_FLOAT = {"rcutfac", "rfac0", "rmin0"}
#: keywords with one value per element (in the order of the pair_coeff elements)
_SNAPPARAM_LIST = {"sinner", "dinner"}


def read_snapparam(path):
    """Parse a LAMMPS ``.snapparam`` file into a dict (LAMMPS defaults filled in).

    ``sinner`` / ``dinner`` (inner switching, one value per element in the order of the
    LAMMPS ``pair_coeff`` elements) are lists of floats.  Raises
    :class:`~hybridpot.ModelFormatError` for unknown keywords, malformed lines, missing
    ``rcutfac``/``twojmax``, and ``switchinnerflag 1`` without both ``sinner`` and
    ``dinner`` (or these without it, as LAMMPS).
    """
    path = Path(path)
    if not path.is_file():
        raise ModelFormatError(f"SNAP parameter file {str(path)!r} does not exist.")
    out = dict(_SNAPPARAM_DEFAULTS)
    for lineno, raw in enumerate(_read_text(path, "SNAP parameter").splitlines(), 1):
        line = raw.split("#", 1)[0].replace('"', " ").replace("'", " ").split()
        if not line:
            continue
        key = line[0]
        if key in _SNAPPARAM_LIST:
            try:
                if len(line) < 2:
                    raise ValueError
                out[key] = [float(w) for w in line[1:]]
            except ValueError:
                raise ModelFormatError(
                    f"{path}:{lineno}: {key!r} needs one number per element (in the order of "
                    f"the pair_coeff elements). Got {raw.strip()!r} instead.") from None
            continue
        if len(line) != 2 or key not in (_SNAPPARAM_INT | _SNAPPARAM_FLOAT):
            raise ModelFormatError(
                f"{path}:{lineno}: expected '<keyword> <value>' with a keyword among "
                f"{sorted(_SNAPPARAM_INT | _SNAPPARAM_FLOAT | _SNAPPARAM_LIST)}. "
                f"Got {raw.strip()!r} instead.")
        try:
            out[key] = int(line[1]) if key in _SNAPPARAM_INT else float(line[1])
        except ValueError:
            raise ModelFormatError(
                f"{path}:{lineno}: the value of {key!r} must be "
                f"{'an integer' if key in _SNAPPARAM_INT else 'a number'}. "
                f"Got {line[1]!r} instead.") from None
    for key in ("rcutfac", "twojmax"):
        if key not in out:
            raise ModelFormatError(f"{path}: the required keyword {key!r} is missing.")
    inner = [k for k in ("sinner", "dinner") if k in out]
    if out["switchinnerflag"] and len(inner) != 2:
        raise ModelFormatError(
            f"{path}: switchinnerflag 1 needs both 'sinner' and 'dinner' lines (one value per "
            f"element); the file has {inner or 'neither'}.")
    if not out["switchinnerflag"] and inner:
        raise ModelFormatError(
            f"{path}: {' and '.join(repr(k) for k in inner)} given without switchinnerflag 1 "
            f"(LAMMPS refuses this too); add 'switchinnerflag 1' or remove them.")
    return out


def read_snapcoeff(path):
    """Parse a LAMMPS ``.snapcoeff`` file.

    Returns
    -------
    dict
        ``{element: (radius, weight, coefficients)}`` with coefficients an ndarray of shape
        (n_coeff,), in file order.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelFormatError(f"SNAP coefficient file {str(path)!r} does not exist.")
    lines, linenos = [], []
    for lineno, raw in enumerate(_read_text(path, "SNAP coefficient").splitlines(), 1):
        words = raw.split("#", 1)[0].replace('"', " ").replace("'", " ").split()
        if words:
            lines.append(words)
            linenos.append(lineno)
    try:
        nelem, ncoeff = int(lines[0][0]), int(lines[0][1])
        if len(lines[0]) != 2 or nelem < 1 or ncoeff < 1:
            raise ValueError
    except (IndexError, ValueError):
        raise ModelFormatError(
            f"{path}: the first non-comment line must be '<n_elements> <n_coefficients>'. "
            f"Got {' '.join(lines[0]) if lines else 'an empty file'!r} instead.") from None
    out = {}
    pos = 1
    for _ in range(nelem):
        try:
            head = lines[pos]
            if len(head) != 3:
                raise ValueError
            el, rad, wj = head[0], float(head[1]), float(head[2])
            coef = np.array([float(w[0]) for w in lines[pos + 1:pos + 1 + ncoeff]])
            if coef.shape != (ncoeff,) or any(len(w) != 1
                                              for w in lines[pos + 1:pos + 1 + ncoeff]):
                raise ValueError
        except (IndexError, ValueError):
            raise ModelFormatError(
                f"{path}: element block {len(out) + 1} must be a line '<element> <radius> "
                f"<weight>' followed by {ncoeff} coefficient lines.") from None
        if el in out:
            raise ModelFormatError(f"{path}: element {el!r} appears twice.")
        if el not in chemical_symbols or el == "X":
            raise ModelFormatError(f"{path}:{linenos[pos]}: element block {len(out) + 1} "
                                   f"names {el!r}, which is not a chemical symbol.")
        bad = np.flatnonzero(~np.isfinite(coef))
        if bad.size:
            raise ModelFormatError(
                f"{path}:{linenos[pos + 1 + bad[0]]}: coefficient {bad[0]} of element {el!r} "
                f"is {coef[bad[0]]}; coefficients must be finite.")
        out[el] = (rad, wj, coef)
        pos += 1 + ncoeff
    if pos != len(lines):
        # e.g. a header '1 56' over two element blocks: the second was dropped silently
        raise ModelFormatError(
            f"{path}:{linenos[pos]}: unexpected line {' '.join(lines[pos])!r} after the "
            f"{nelem} element block(s) the header '{nelem} {ncoeff}' announces.")
    return out


def _read_text(path, what):
    """The text of a LAMMPS input file; ModelFormatError for a binary / non-UTF-8 one."""
    try:
        return path.read_text()
    except UnicodeDecodeError as e:
        raise ModelFormatError(f"{path}: not a text {what} file ({e}).") from None


def _check_flag(value, name, owner):
    if isinstance(value, (bool, np.bool_)) or (isinstance(value, numbers.Integral)
                                               and value in (0, 1)):
        return bool(value)
    raise InvalidParameterError(
        f"The '{name}' parameter of {owner} must be a bool (or 0/1). Got {value!r} instead.")


def _per_species(value, default, name, owner, n, positive):
    if value is None:
        return np.full(n, default)
    if isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)):
        # one value for every species (FitSNAP's single-element 'radelem = 0.5')
        return np.full(n, check_float(value, name, owner, low=0.0 if positive else None,
                                      finite=True))
    if isinstance(value, (str, bytes)) or np.ndim(value) != 1 or len(value) != n:
        raise InvalidParameterError(
            f"The '{name}' parameter of {owner} must be None or a sequence of {n} floats "
            f"(one per species), or one float for every species. Got {value!r} instead.")
    out = np.empty(n)
    for k, v in enumerate(value):
        out[k] = check_float(v, f"{name}[{k}]", owner, low=0.0 if positive else None,
                             finite=True)
    return out


#: per-pair inner switching arrays when switchinnerflag is off (the kernels test their length)
_NO_INNER = np.zeros(0)
_NO_INNER.setflags(write=False)


def inner_switch_params(p, species, path):
    """``switchinnerflag`` / ``sinner`` / ``dinner`` keyword arguments of
    :class:`SNAPBispectrum` from a :func:`read_snapparam` dict, whose per-element values are in
    the order of ``species`` (LAMMPS's pair_coeff elements); ModelFormatError when their count
    differs."""
    if not p["switchinnerflag"]:
        return {}
    for key in ("sinner", "dinner"):
        if len(p[key]) != len(species):
            raise ModelFormatError(
                f"{path}: '{key}' has {len(p[key])} value(s); it needs one per element of "
                f"the pair_coeff element list {list(species)} (in that order).")
    return {"switchinnerflag": True, "sinner": list(p["sinner"]),
            "dinner": list(p["dinner"])}


def chem_lammps_coefficients(desc, coef, quadratic):
    """SNAP coefficients (rows ``[beta0, beta_1..beta_F, quadratic terms]``, the .snapcoeff
    layout) of a ``chemflag`` descriptor, averaged over its identical columns, for LAMMPS.

    ``B_{abc}(j j2 j) = B_{cba}(j j2 j)`` and ``B_{abc}(j j j') = B_{bac}(j j j')`` identically,
    so the energy depends on the coefficients of such columns only through their sum; LAMMPS's
    ``pair_style snap`` force (its ``compute_yi``) assumes them equal.  Averaging them (and the
    quadratic form ``M -> P M P`` with ``P`` the group average) leaves every energy unchanged
    and makes LAMMPS's forces the exact gradient.  Returns a new array.
    """
    desc._validate()
    ne = len(desc._species)
    idxb = desc._tables["idxb"]
    K = len(idxb)
    F = K * ne ** 3
    parent = np.arange(F)

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for k, (j1, j2, j) in enumerate(idxb):
        for a in range(ne):
            for b in range(ne):
                for c in range(ne):
                    col = ((a * ne + b) * ne + c) * K + k
                    if j1 == j:
                        parent[find(col)] = find(((c * ne + b) * ne + a) * K + k)
                    if j1 == j2:
                        parent[find(col)] = find(((b * ne + a) * ne + c) * K + k)
    roots = np.array([find(x) for x in range(F)])
    _, group, counts = np.unique(roots, return_inverse=True, return_counts=True)
    P = (group[:, None] == group[None, :]) / counts[group][:, None]   # group-average projector
    out = np.array(coef, dtype=np.float64)
    out[:, 1:1 + F] = out[:, 1:1 + F] @ P.T
    if quadratic:
        iu, ju = np.triu_indices(F)
        for r in range(out.shape[0]):
            M = np.zeros((F, F))
            M[iu, ju] = out[r, 1 + F:]
            M[ju, iu] = out[r, 1 + F:]
            M = P @ M @ P.T
            out[r, 1 + F:] = M[iu, ju]
    return out


@register_descriptor
class SNAPBispectrum(Descriptor):
    r"""SO(4) bispectrum of SNAP, identical to LAMMPS ML-SNAP ``compute sna/atom``.

    Each neighbour ``j`` of atom ``i`` (``r = |r_ij| < R_ij = rcutfac (R_i + R_j)``, with the
    element radii ``radelem``) is mapped to a point on the 3-sphere,
    ``theta0 = rfac0 pi (r - rmin0) / (R_ij - rmin0)``, ``z0 = r cot(theta0)``, with
    Cayley-Klein parameters ``a = (z0 - i z) / r0``, ``b = (y - i x) / r0``,
    ``r0 = sqrt(r^2 + z0^2)``.  The density expansion

    .. math:: U^j_{m m'}(i) = w_\mathrm{self} \delta_{m m'}
              + \sum_j f_c(r_{ij}) w_{Z_j} u^j_{m m'}(a, b),
              \qquad f_c(r) = \tfrac12 [\cos(\pi (r - r_\mathrm{min0}) / (R_{ij}
              - r_\mathrm{min0})) + 1]

    uses the Wigner U-functions ``u^j`` (``j = 0, 1/2, ..., twojmax/2``, computed by the VMK
    recursion), ``w_self = 1`` and the weight ``w_{Z_j}`` (``wj``) of the neighbour element
    (``f_c = 1`` when ``switchflag`` is False).  The bispectrum

    .. math:: B_{j_1 j_2 j} = \sum_{m m'} \overline{U^j_{m m'}} Z^{j}_{j_1 j_2, m m'},
              \quad Z^{j}_{j_1 j_2, m m'} = \sum C^{j m}_{j_1 m_1 j_2 m_2}
              C^{j m'}_{j_1 m_1' j_2 m_2'} U^{j_1}_{m_1 m_1'} U^{j_2}_{m_2 m_2'}

    is listed for ``j1 = 0..twojmax``, ``j2 = 0..j1``, ``j = j1-j2..min(twojmax, j1+j2)``
    (step 2, indices doubled), ``j >= j1``: the LAMMPS order (55 components for
    ``twojmax=8``, 30 for 6).  ``bzeroflag`` subtracts the isolated-atom value
    ``w_self^3 (j + 1)``; ``quadraticflag`` appends, like LAMMPS, for ``k = 0..K-1``:
    ``B_k^2 / 2`` then ``B_k B_l`` for ``l > k``.  Without ``chemflag`` all elements share
    one density, so ``wselfallflag`` has no effect (as in LAMMPS).

    ``chemflag`` (LAMMPS explicit multi-element SNAP) gives every element ``e`` of the ``N``
    species its own density ``U_e`` (the neighbours of element ``e``; ``w_self`` on the
    diagonal of the centre atom's element only, or of every element with ``wselfallflag``)
    and lists ``B_{e1 e2 e3, j1 j2 j} = sum conj(U_e3^j) Z^j_{j1 j2}(U_e1, U_e2)`` for every
    ordered triple: ``N^3 K`` components, column ``((e1 N + e2) N + e3) K + k`` (LAMMPS's
    order, elements in the order of ``species``, which must be LAMMPS's ``pair_coeff``
    element order); ``bzeroflag`` shifts the triple ``(e_i, e_i, e_i)`` only (every triple with
    ``wselfallflag``).  Its kernels are vectorised over atoms like those of ``chemflag``
    False; the Z blocks of the ``N^2`` element pairs make values and forces cost about 1.5-2
    times the single-density SNAP of the same ``twojmax`` for two elements (the Jacobian, with
    ``N^3`` times the columns, more), below LAMMPS's chemflag ``compute sna/atom`` and
    ``pair_style snap`` on one core.  Values and energies equal
    LAMMPS's (``compute sna/atom``, ``pair_style snap``) to round-off, and the forces here are
    the exact gradient of that energy; LAMMPS's ``pair_style snap`` chemflag forces (checked
    with 22 Jul 2025) are not, unless the coefficients are equal for the permuted element
    triples (its adjoint applies the single-element multiplicity factors 2 and 3 to one
    triple's coefficient, assuming the coefficients of identical columns equal);
    :func:`~hybridpot.io.lammps.write_snap` therefore writes the coefficients averaged over
    identical columns (same energies), with which LAMMPS's forces are exact.  ``bnormflag``
    divides every component
    by ``j + 1`` (``B_{j1 j2 j} / (j + 1)``, isolated-atom value ``w_self^3`` subtracted with
    ``bzeroflag``), as LAMMPS (which normalises the Z blocks and drops the ``(j1 + 1) /
    (j + 1)`` factors of its adjoint: the same derivative); the quadratic products are those
    of the normalised ``B``.  LAMMPS prints a warning when ``bnormflag`` differs from
    ``chemflag`` ("probably not what you intended"); it is nonetheless a valid model.

    ``switchinnerflag`` multiplies ``f_c`` by LAMMPS's inner switching function

    .. math:: f_\mathrm{in}(r) = \begin{cases} 0 & r \le s_{ij} - d_{ij}
              \\ \tfrac12 [1 + \sin(\tfrac{\pi}{2} (r - s_{ij}) / d_{ij})]
              & |r - s_{ij}| < d_{ij} \\ 1 & r \ge s_{ij} + d_{ij} \end{cases}

    with ``s_ij = (sinner_i + sinner_j) / 2`` and ``d_ij = (dinner_i + dinner_j) / 2`` (Å):
    neighbours closer than ``s_ij - d_ij`` do not enter the bispectrum at all, and the
    features, hence the SNAP energy, go smoothly to their isolated-atom values as a pair
    closes in.  Use it when the model must hold far from the training data at short range
    (radiation damage cascades, high pressure, shock): there the fitted polynomial in ``B``
    is an extrapolation that can turn attractive and let atoms collapse, while with the
    inner switch a repulsive baseline (e.g. :class:`~hybridpot.baselines.ZBL`) alone
    decides the energy of close pairs.  The baseline must then cover the window: choose
    ``sinner - dinner`` where it is already strongly repulsive and let its range reach
    ``sinner`` or beyond (a ZBL switched off below the window leaves the switched-out pairs
    with no repulsion at all); ``sinner + dinner`` near the shortest distances the training
    data sample well (the model is fitted with the switch on, so training pairs inside the
    window still count, with reduced weight).  It does not stop the ML part from
    extrapolating above the window (a coherent compression of all neighbours): add
    compressed cells to the training data for that range.  (Cu-Ni, 2J=6, linear model,
    ZBL(1.5, 2.3), window 2.05-2.55 Å, trained on +-2 % cells only: the fcc compression
    curve stays repulsive to V/V0 = 0.2 and within 0.2 eV/atom of the reference to 0.6.)

    The position Jacobian follows LAMMPS ``compute_dbidrj``; the adjoint :meth:`backward`
    forms ``Y = dE/dU`` once per atom (``compute_yi``) and contracts it with ``dU/dr_ij`` per
    neighbour (``compute_deidrj``, here by reverse-mode differentiation of the U recursion):
    its cost does not grow with the number of components.  Values and adjoint are computed
    for groups of atoms at once (SIMD over atoms); they agree with LAMMPS to round-off.

    For qSNAP prefer a linear bispectrum with a quadratic regressor
    (``LinearRegressor(quadratic=True)``): with ``quadraticflag`` the per-pair Jacobian has
    ``K + K (K + 1) / 2`` columns (1595 for ``twojmax=8``).

    Parameters
    ----------
    species : list of str
        Chemical symbols the descriptor accepts.
    twojmax : int
        Twice the maximum angular momentum, >= 0.
    rcutfac : float
        Cutoff scale (Å): the pair cutoff is ``rcutfac * (radelem_i + radelem_j)``.
    rfac0 : float, default=0.99363
        Fraction of pi reached by ``theta0`` at the cutoff, in (0, 1).
    rmin0 : float, default=0.0
        Inner distance of the angular mapping and switching function (Å), >= 0
        (``f_c = 1`` below it).  The mapping is discontinuous at ``r = rmin0`` (``theta0``
        changes sign; the half-integer-``j`` components jump), so with ``rmin0 > 0`` a
        structure with a pair closer than ``rmin0`` raises ``InvalidStructureError``.
    radelem : float, sequence of float or None, default=None
        Element radii (dimensionless, multiplied by ``rcutfac``) per species (a float: the
        same for every species); 0.5 each.
    wj : float, sequence of float or None, default=None
        Neighbour weights per species (a float: the same for every species); 1.0 each.
    switchflag : bool, default=True
        Smooth cosine switching function (needed for continuous forces).
    bzeroflag : bool, default=False
        Subtract the isolated-atom bispectrum.  (LAMMPS and FitSNAP default to 1, and
        :meth:`from_lammps` / ``read_snap`` use that default for a file without the key.  A
        constant shift of ``B``: linear and quadratic models span the same functions either
        way, only the ridge penalty / prior sees the difference.)
    quadraticflag : bool, default=False
        Append the quadratic products (qSNAP features).
    wselfallflag : bool, default=False
        With ``chemflag``: ``w_self`` on the diagonal of every element's density (and
        ``bzeroflag`` shifts every triple); no effect without ``chemflag``.
    chemflag : bool, default=False
        Explicit multi-element bispectrum (``N^3 K`` components, above).
    bnormflag : bool, default=False
        Normalise each component by ``1 / (j + 1)`` (LAMMPS ``bnormflag``).
    switchinnerflag : bool, default=False
        Multiply the switching function by the inner switch ``f_in`` (above); needs
        ``sinner`` and ``dinner``.  Atoms may then come as close as 0.001 Å (0.1 Å
        otherwise), as for a ZBL baseline (high-energy collisions).
    sinner : float, sequence of float or None, default=None
        Centre of the inner switch per species (Å, > 0; a float: the same for every
        species); only with ``switchinnerflag``.
    dinner : float, sequence of float or None, default=None
        Half-width of the inner switch per species (Å, > 0; a float: the same for every
        species); only with ``switchinnerflag``.

    Attributes
    ----------
    r_cut : float
        Neighbour-list cutoff ``rcutfac * 2 * max(radelem)`` (Å), read-only.
    n_features : int
        ``K`` components, or ``K + K (K + 1) / 2`` with ``quadraticflag`` (``K`` counts the
        ``N^3`` element blocks with ``chemflag``).
    """

    def __init__(self, *, species, twojmax, rcutfac, rfac0=0.99363, rmin0=0.0, radelem=None,
                 wj=None, switchflag=True, bzeroflag=False, quadraticflag=False,
                 wselfallflag=False, chemflag=False, bnormflag=False, switchinnerflag=False,
                 sinner=None, dinner=None):
        self.species = species
        self.twojmax = twojmax
        self.rcutfac = rcutfac
        self.rfac0 = rfac0
        self.rmin0 = rmin0
        self.radelem = radelem
        self.wj = wj
        self.switchflag = switchflag
        self.bzeroflag = bzeroflag
        self.quadraticflag = quadraticflag
        self.wselfallflag = wselfallflag
        self.chemflag = chemflag
        self.bnormflag = bnormflag
        self.switchinnerflag = switchinnerflag
        self.sinner = sinner
        self.dinner = dinner

    # -- construction from LAMMPS files ------------------------------------------------------
    @classmethod
    def from_lammps(cls, snapparam, *, species, snapcoeff=None):
        """Build the descriptor of a LAMMPS ``pair_style snap`` / ``compute sna/atom`` setup.

        Parameters
        ----------
        snapparam : str or path
            ``.snapparam`` file (rcutfac, twojmax, rfac0, rmin0, switchflag, bzeroflag,
            quadraticflag, wselfallflag, chemflag, bnormflag, switchinnerflag with sinner /
            dinner;
            LAMMPS defaults for absent keys, e.g. bzeroflag 1).
        species : list of str
            Elements, in the order of the descriptor's species (and of the ``sinner`` /
            ``dinner`` values: LAMMPS's ``pair_coeff`` element order).
        snapcoeff : str or path, optional
            ``.snapcoeff`` file giving each element's radius and weight (else 0.5 and 1.0).

        Returns
        -------
        SNAPBispectrum

        Raises
        ------
        ModelFormatError
            Malformed files, or an element of ``species`` missing from ``snapcoeff``.
        """
        species = list(check_species_list(species, "species", cls.__name__))
        p = read_snapparam(snapparam)
        radelem = wj = None
        if snapcoeff is not None:
            blocks = read_snapcoeff(snapcoeff)
            missing = [s for s in species if s not in blocks]
            if missing:
                raise ModelFormatError(
                    f"{snapcoeff}: no coefficient block for {missing}; the file has "
                    f"{sorted(blocks)}.")
            radelem = [blocks[s][0] for s in species]
            wj = [blocks[s][1] for s in species]
        return cls(species=species, twojmax=p["twojmax"], rcutfac=p["rcutfac"],
                   rfac0=p["rfac0"], rmin0=p["rmin0"], radelem=radelem, wj=wj,
                   switchflag=bool(p["switchflag"]), bzeroflag=bool(p["bzeroflag"]),
                   quadraticflag=bool(p["quadraticflag"]),
                   wselfallflag=bool(p["wselfallflag"]), chemflag=bool(p["chemflag"]),
                   bnormflag=bool(p["bnormflag"]),
                   **inner_switch_params(p, species, snapparam))

    # -- validation ----------------------------------------------------------------------------
    def _validate(self):
        owner = type(self).__name__
        self._species = check_species_list(self.species, "species", owner)
        n = len(self._species)
        self._J = check_int(self.twojmax, "twojmax", owner, low=0, high=30)
        # finite: an infinite cutoff would make the neighbour search never end
        rcutfac = check_float(self.rcutfac, "rcutfac", owner, low=0.0, finite=True)
        rfac0 = check_float(self.rfac0, "rfac0", owner, low=0.0, high=1.0)
        rmin0 = check_float(self.rmin0, "rmin0", owner, low=0.0, low_inclusive=True,
                            finite=True)
        rad = _per_species(self.radelem, 0.5, "radelem", owner, n, positive=True)
        wj = _per_species(self.wj, 1.0, "wj", owner, n, positive=False)
        self._switch = _check_flag(self.switchflag, "switchflag", owner)
        self._bzero = _check_flag(self.bzeroflag, "bzeroflag", owner)
        self._quadratic = _check_flag(self.quadraticflag, "quadraticflag", owner)
        self._wselfall = _check_flag(self.wselfallflag, "wselfallflag", owner)
        self._chem = _check_flag(self.chemflag, "chemflag", owner)
        self._bnorm = _check_flag(self.bnormflag, "bnormflag", owner)
        self._switchinner = _check_flag(self.switchinnerflag, "switchinnerflag", owner)
        if self._switchinner:
            for name in ("sinner", "dinner"):
                if getattr(self, name) is None:
                    raise InvalidParameterError(
                        f"The '{name}' parameter of {owner} must be given (one float per "
                        f"species, or one for all, in Å) when switchinnerflag is True. Got "
                        f"None instead.")
            self._sinner = _per_species(self.sinner, None, "sinner", owner, n, positive=True)
            self._dinner = _per_species(self.dinner, None, "dinner", owner, n, positive=True)
        else:
            given = [k for k in ("sinner", "dinner") if getattr(self, k) is not None]
            if given:
                raise InvalidParameterError(
                    f"The {' and '.join(repr(k) for k in given)} parameter"
                    f"{'s' if len(given) > 1 else ''} of {owner} only apply with "
                    f"switchinnerflag=True (LAMMPS refuses them without it too). Got "
                    f"switchinnerflag={self.switchinnerflag!r} with "
                    + ", ".join(f"{k}={getattr(self, k)!r}" for k in given) + ".")
            self._sinner = self._dinner = None
        rc_min = rcutfac * 2.0 * rad.min()
        if rmin0 >= rc_min:
            raise InvalidParameterError(
                f"The 'rmin0' parameter of {owner} must be smaller than the smallest pair "
                f"cutoff rcutfac * 2 * min(radelem) = {rc_min:g} Å. Got {rmin0!r} instead.")
        self._rcutfac, self._rfac0, self._rmin0 = rcutfac, rfac0, rmin0
        self._rad, self._wj = rad, wj
        self._r_cut = rcutfac * 2.0 * rad.max()
        if not 0.1 <= self._r_cut <= 1e6:   # the neighbour list's limits, named in SNAP's terms
            raise InvalidParameterError(
                f"The 'rcutfac' parameter of {owner} must give a cutoff rcutfac * 2 * "
                f"max(radelem) in [0.1, 1e6] Å. Got rcutfac = {self.rcutfac!r} (cutoff "
                f"{self._r_cut:g} Å).")
        self._tables = snap_tables(self._J)
        self._nb = int(self._tables["idxb"].shape[0]) * (n ** 3 if self._chem else 1)
        wself = 1.0
        self._wself = wself
        self._bzero_arr = (wself ** 3 * np.arange(1, self._J + 2, dtype=np.float64)
                           if self._bzero else np.zeros(self._J + 1))
        # bnormflag: B_{j1 j2 j} / (j + 1) (with bzero: (B - w^3 (j + 1)) / (j + 1))
        self._bnorm_scale = (np.tile(1.0 / (self._tables["idxb"][:, 2] + 1.0),
                                     n ** 3 if self._chem else 1) if self._bnorm else None)

    @property
    def r_cut(self):
        """Neighbour-list cutoff ``rcutfac * 2 * max(radelem)`` in Å (read-only)."""
        self._validate()
        return self._r_cut

    @property
    def min_distance(self):
        """float: overlap floor (Å): 0.1, or 0.001 with ``switchinnerflag`` (pairs closer than
        ``sinner - dinner`` drop out, so a ZBL baseline alone handles close collisions)."""
        from ._so3 import INNER_MIN_DISTANCE

        on = isinstance(self.switchinnerflag, (bool, np.bool_)) and bool(self.switchinnerflag)
        return INNER_MIN_DISTANCE if on else Descriptor.min_distance

    @property
    def n_features(self):
        """int: ``K`` bispectrum components, or ``K + K (K + 1) / 2`` with ``quadraticflag``."""
        self._validate()
        K = self._nb
        return K + K * (K + 1) // 2 if self._quadratic else K

    @property
    def n_bispectrum(self):
        """Number of linear bispectrum components ``K`` (without quadratic products; ``N^3``
        blocks of the ``(j1, j2, j)`` list with ``chemflag``)."""
        self._validate()
        return self._nb

    # -- kernels -------------------------------------------------------------------------------
    def _pair_arrays(self, nl, species_idx):
        si = species_idx[nl.i]
        sj = species_idx[nl.j]
        rcut_p = self._rcutfac * (self._rad[si] + self._rad[sj])
        inside = nl.d < rcut_p
        if self._switchinner:
            sin_p = 0.5 * (self._sinner[si] + self._sinner[sj])
            din_p = 0.5 * (self._dinner[si] + self._dinner[sj])
            # closer than sinner - dinner: switched off entirely (zero weight and derivative)
            inside &= nl.d > sin_p - din_p
        else:
            sin_p = din_p = _NO_INNER
        if self._rmin0 > 0.0 and np.any(inside & (nl.d <= self._rmin0)):
            # theta0 = rfac0 pi (r - rmin0) / (R - rmin0) changes sign at r = rmin0: the
            # neighbour's SU(2) element jumps from +1 to -1 (every half-integer-j component and
            # the energy jump, by hundreds of eV for a fitted model) and is undefined at r = rmin0
            k = int(np.argmin(np.where(inside, nl.d, np.inf)))
            raise InvalidStructureError(
                f"SNAPBispectrum: atoms {int(nl.i[k])} and {int(nl.j[k])} are {nl.d[k]:.4g} Å "
                f"apart, within rmin0 = {self._rmin0:g} Å; the SNAP mapping theta0 = rfac0 pi "
                f"(r - rmin0) / (R - rmin0) is discontinuous at r = rmin0 (the descriptor and "
                f"the energy jump there), so every pair must be farther apart than 'rmin0' "
                f"(use a smaller rmin0, e.g. 0, or a repulsive baseline that keeps atoms apart).")
        w_p = self._wj[sj]
        return (np.ascontiguousarray(nl.offsets), np.ascontiguousarray(nl.D),
                np.ascontiguousarray(nl.d), inside, rcut_p, w_p, sin_p, din_p)

    def _quadratic_values(self, B):
        K = B.shape[1]
        iu, ju = np.triu_indices(K)
        Q = B[:, iu] * B[:, ju]
        Q[:, iu == ju] *= 0.5
        return np.hstack([B, Q])

    def _chem_args(self, nl, species_idx):
        """Leading arguments of the chemflag kernels: pair arrays, element of each neighbour
        and centre, element count, flags."""
        return (*self._pair_arrays(nl, species_idx),
                np.ascontiguousarray(species_idx[nl.j], dtype=np.int64),
                np.ascontiguousarray(species_idx, dtype=np.int64), len(self._species),
                self._wselfall, self._rfac0, self._rmin0, self._switch, self._wself)

    def _compute(self, nl, species_idx, gradients):
        if self._chem:
            args = self._chem_args(nl, species_idx)
            t = self._tables
            common = (self._bzero_arr, self._J, t["idxu_block"], t["rootpq"], t["cglist"],
                      t["idxcg_block"], t["idxz"], t["idxz_block"], t["idxb"])
            if not gradients:
                return self._finish(nl, _k._chem_bispectrum_lanes(*args, *common), None)
            return self._finish(nl, *_k._chem_bispectrum_grad_lanes(*args, *common))
        t = self._tables
        args = self._pair_arrays(nl, species_idx)
        common = (self._rfac0, self._rmin0, self._switch, self._wself, self._bzero_arr, self._J,
                  t["idxu_block"], t["rootpq"], t["cglist"], t["idxcg_block"], t["idxz"],
                  t["idxz_block"], t["idxb"])
        if not gradients:
            return self._finish(nl, _k._bispectrum_lanes(*args, *common), None)
        return self._finish(nl, *_k._bispectrum_grad_lanes(*args, *common))

    def _finish(self, nl, B, dB):
        """bnormflag scaling and quadratic products of the kernels' B (and dB_i/dr_ij)."""
        if dB is None:
            if self._bnorm:
                B *= self._bnorm_scale
            return (self._quadratic_values(B) if self._quadratic else B), None
        if self._bnorm:
            B *= self._bnorm_scale
            dB *= self._bnorm_scale
        if not self._quadratic:
            return B, dB
        K = B.shape[1]
        iu, ju = np.triu_indices(K)
        Bi = B[nl.i]
        dQ = dB[:, :, iu] * Bi[:, None, ju] + Bi[:, None, iu] * dB[:, :, ju]
        dQ[:, :, iu == ju] *= 0.5
        return self._quadratic_values(B), np.concatenate([dB, dQ], axis=2)

    def _beta(self, nl, species_idx, dE_dX):
        """dE/dB (n_atoms, K) from dE/dX, including the chain rule of the quadratic terms."""
        K = self._nb
        beta = np.array(dE_dX[:, :K])
        if self._quadratic:
            B, _ = self._compute(nl, species_idx, False)
            B = B[:, :K]
            iu, ju = np.triu_indices(K)
            a = dE_dX[:, K:]
            # d(B_k B_l)/dB_k = B_l, d(B_k^2/2)/dB_k = B_k
            np.add.at(beta.T, iu, (a * B[:, ju]).T)
            off = iu != ju
            np.add.at(beta.T, ju[off], (a[:, off] * B[:, iu[off]]).T)
        return np.ascontiguousarray(beta)

    def _backward(self, nl, species_idx, dE_dX):
        t = self._tables
        beta = self._beta(nl, species_idx, dE_dX)
        if self._bnorm:
            beta *= self._bnorm_scale   # dE/dB_raw from dE/d(B_raw / (j + 1))
        if self._chem:
            return _k._chem_backward_lanes(
                *self._chem_args(nl, species_idx), self._J, t["idxu_block"], t["rootpq"],
                t["cglist"], t["idxcg_block"], t["idxz"], t["idxb_block"], beta)
        args = self._pair_arrays(nl, species_idx)
        return _k._backward_lanes(*args, self._rfac0, self._rmin0, self._switch, self._wself,
                                  self._J, t["idxu_block"], t["rootpq"], t["cglist"],
                                  t["idxcg_block"], t["idxz"], t["z_jjb"], t["z_fac"], beta)
