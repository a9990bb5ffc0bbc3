"""Smoothness priors (ACEpotentials' algebraic prior) from the basis degrees of a descriptor.

A linear model on a many-body basis extrapolates better when high radial / angular degrees
are penalised more: ACEpotentials.jl's ``algebraic_smoothness_prior`` gives basis function
``B = prod_t phi_{n_t l_t}`` the prior precision factor ``Gamma_B = 1 + w_n sum_t n_t^p +
w_l sum_t l_t^p``.  :func:`feature_degrees` reads the one-particle ``(n_t, l_t)`` of every
feature of a :class:`~hybridpot.descriptors.PowerSpectrum`,
:class:`~hybridpot.descriptors.Bispectrum` or
:class:`~hybridpot.descriptors.SNAPBispectrum`; :func:`smoothness_prior` turns them into
``Gamma`` for the ``prior_scale`` of the linear regressors.
"""

from __future__ import annotations

import numpy as np

from .._exceptions import InvalidParameterError
from .._validation import check_float

__all__ = ["feature_degrees", "smoothness_prior"]


def feature_degrees(descriptor):
    """Radial and angular degrees of the one-particle factors of every feature.

    Parameters
    ----------
    descriptor : PowerSpectrum, Bispectrum, SNAPBispectrum or DescriptorStack of them
        (SNAP without ``quadraticflag``).

    Returns
    -------
    n : ndarray, shape (n_features, T)
        Radial index (0 = smoothest radial function) of each of the ``T`` factors: power
        spectrum ``p(ck, c'k', l)``: ``(k, k')``, ``T = 2``; SO(3) bispectrum
        ``b(ck, c'k', l, l1, l2)``: ``(k, k', k')``, ``T = 3``; SNAP (its hyperspherical
        harmonics carry radius and angle together): zeros.
    l : ndarray, shape (n_features, T)
        Angular degrees: ``(l, l)``; ``(l, l1, l2)``; SNAP ``(j1, j2, j) / 2`` (LAMMPS's
        ``2j`` indices halved, the SU(2) degrees).  A ``DescriptorStack`` concatenates its
        members' rows (``T`` the largest; missing factors are 0).

    Raises
    ------
    hybridpot.InvalidParameterError
        For another descriptor type or SNAP with ``quadraticflag``.
    """
    from ..descriptors import Bispectrum, DescriptorStack, PowerSpectrum, SNAPBispectrum
    from ..descriptors._so3 import _bs_feature_index, _ps_feature_index
    from ..descriptors._sympy_basis import coupling_triples

    if isinstance(descriptor, DescriptorStack):
        descriptor._validate()
        parts = [feature_degrees(m) for m in descriptor._members]
        T = max(p[0].shape[1] for p in parts)
        pad = [tuple(np.pad(a, ((0, 0), (0, T - a.shape[1]))) for a in p) for p in parts]
        return (np.vstack([p[0] for p in pad]), np.vstack([p[1] for p in pad]))
    if isinstance(descriptor, PowerSpectrum):
        descriptor._validate()
        n_max = descriptor._n_max
        q1, q2, l, *_ = _ps_feature_index(descriptor._n_ch, n_max, descriptor._l_max)
        return (np.stack([q1 % n_max, q2 % n_max], axis=1).astype(float),
                np.stack([l, l], axis=1).astype(float))
    if isinstance(descriptor, Bispectrum):
        descriptor._validate()
        _, _, t, _, k, _, kp = _bs_feature_index(descriptor._n_ch, descriptor._n_max,
                                                 descriptor._l_max)
        tri = np.asarray(coupling_triples(descriptor._l_max), dtype=float).reshape(-1, 3)
        return np.stack([k, kp, kp], axis=1).astype(float), tri[t]
    if isinstance(descriptor, SNAPBispectrum):
        descriptor._validate()
        if descriptor._quadratic:
            raise InvalidParameterError(
                "feature_degrees: SNAPBispectrum with quadraticflag has product features; "
                "use quadraticflag=False (the quadratic regressors take the products' "
                "prior from the linear features'). Got quadraticflag=True.")
        jjj = np.asarray(descriptor._tables["idxb"], dtype=float) / 2.0
        if descriptor._chem:   # the same (j1, j2, j) for every element triple block
            jjj = np.tile(jjj, (len(descriptor._species) ** 3, 1))
        return np.zeros_like(jjj), jjj
    raise InvalidParameterError(
        "The 'descriptor' argument of feature_degrees must be a PowerSpectrum, Bispectrum, "
        "SNAPBispectrum or a DescriptorStack of them (features with a radial / angular "
        f"degree). Got {type(descriptor).__name__} instead.")


def smoothness_prior(descriptor, *, p=2.0, wn=1.0, wl=1.0):
    r"""ACEpotentials' algebraic smoothness prior ``Gamma`` of every feature.

    .. math:: \Gamma_j = 1 + w_n \sum_t n_t^p + w_l \sum_t l_t^p

    over the one-particle factors ``(n_t, l_t)`` of feature ``j`` (:func:`feature_degrees`;
    ``n_t`` counts from 0, so the smoothest feature has ``Gamma = 1``).  Given as
    ``prior_scale`` to :class:`~hybridpot.regression.LinearRegressor` or
    :class:`~hybridpot.regression.BayesianLinearRegressor`, the prior precision (ridge
    penalty) of the coefficient of feature ``j`` is multiplied by ``Gamma_j**2``: its prior
    standard deviation by ``1 / Gamma_j``.

    Parameters
    ----------
    descriptor : PowerSpectrum, Bispectrum, SNAPBispectrum or DescriptorStack of them
    p : float, default=2.0
        Exponent (ACEpotentials' ``p``; 2 and 4 are common), >= 0.
    wn, wl : float, default=1.0
        Weights of the radial and angular degrees, >= 0.

    Returns
    -------
    tuple of float, length n_features
        ``Gamma`` (a tuple, so that it round-trips through ``get_params`` and model files).

    Raises
    ------
    hybridpot.InvalidParameterError
        For a descriptor without degrees (see :func:`feature_degrees`) or a negative or
        non-finite ``p``, ``wn``, ``wl``.
    """
    p = check_float(p, "p", "smoothness_prior", low=0.0, low_inclusive=True, finite=True)
    wn = check_float(wn, "wn", "smoothness_prior", low=0.0, low_inclusive=True, finite=True)
    wl = check_float(wl, "wl", "smoothness_prior", low=0.0, low_inclusive=True, finite=True)
    n, l = feature_degrees(descriptor)
    gamma = 1.0 + wn * np.sum(n ** p * (n > 0), axis=1) + wl * np.sum(l ** p * (l > 0), axis=1)
    return tuple(float(g) for g in gamma)
