"""Random-matrix tools: Marchenko-Pastur and quarter-circle laws, dense convolution
operators, end-to-end Jacobians of deep CNNs and their free-probability moments.

Xiao et al. (2018), section 2.2 and Appendix E; Pennington et al. (2017, 2018).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from numpy.typing import ArrayLike, NDArray

from signalprop import gaussian
from signalprop.activations import get

Array = NDArray[np.float64]


def marchenko_pastur_pdf(x: ArrayLike, ratio: float = 1.0, sigma2: float = 1.0) -> Array:
    """Density of the eigenvalues of ``W W.T`` for ``W`` (N x M) with i.i.d. entries of variance ``sigma2 / M``.

    Marchenko & Pastur (1967), for ``ratio = N / M`` in (0, 1]::

        rho(x) = sqrt((x+ - x)(x - x-)) / (2 pi sigma2 ratio x),   x+- = sigma2 (1 +- sqrt(ratio))**2
    """
    if not 0 < ratio <= 1:
        raise ValueError(f"ratio = N / M must lie in (0, 1], got {ratio!r}")
    if not sigma2 > 0:
        raise ValueError(f"sigma2 must be positive, got {sigma2!r}")
    x = np.asarray(x, dtype=float)
    lo, hi = sigma2 * (1 - np.sqrt(ratio)) ** 2, sigma2 * (1 + np.sqrt(ratio)) ** 2
    inside = (x > lo) & (x < hi)
    with np.errstate(invalid="ignore", divide="ignore"):
        dens = np.sqrt(np.clip((hi - x) * (x - lo), 0, None)) / (2 * np.pi * sigma2 * ratio * x)
    return np.where(inside, dens, 0.0)


def quarter_circle_pdf(s: ArrayLike) -> Array:
    """Density ``sqrt(4 - s**2) / pi`` on [0, 2] of the singular values of a square MP matrix (ratio 1, sigma2 1)."""
    s = np.asarray(s, dtype=float)
    return np.where((s >= 0) & (s <= 2), np.sqrt(np.clip(4 - s**2, 0, None)) / np.pi, 0.0)


def quarter_circle_cdf(s: ArrayLike) -> Array:
    """CDF ``(s sqrt(4 - s**2) / 2 + 2 arcsin(s / 2)) / pi`` of the quarter-circle law, clipped to [0, 1]."""
    s = np.clip(np.asarray(s, dtype=float), 0.0, 2.0)
    return (s * np.sqrt(4 - s**2) / 2 + 2 * np.arcsin(s / 2)) / np.pi


def ks_distance(samples: ArrayLike, cdf: Any) -> float:
    """Kolmogorov-Smirnov distance ``sup |F_n - F|`` between the samples' empirical CDF and ``cdf``."""
    x = np.sort(np.asarray(samples, dtype=float).ravel())
    if x.size == 0:
        raise ValueError("need at least one sample")
    f = cdf(x)
    n = x.size
    return float(max(np.max(np.arange(1, n + 1) / n - f), np.max(f - np.arange(n) / n)))


def conv_operator_matrix(weight: torch.Tensor | Array, n: int) -> Array:
    """Dense matrix of the periodic convolution ``x -> conv(x, weight)`` on a 1-D image of size ``n``.

    Cross-correlation with stride 1, centred taps (offset ``t - k // 2``) and
    circular boundaries, as in Xiao et al. (2018), eq. (2.1).  Rows and columns
    are ordered channel-major: index ``channel * n + position``.  ``weight`` has
    shape ``(c_out, c_in, k)``; the result is ``(c_out n, c_in n)``: a
    ``c_out x c_in`` block matrix of ``n x n`` circulant blocks.
    """
    w = weight.detach().cpu().double().numpy() if isinstance(weight, torch.Tensor) else np.asarray(weight, float)
    if w.ndim != 3:
        raise ValueError(f"weight must have shape (c_out, c_in, k), got {w.shape}")
    if int(n) != n or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    c_out, c_in, k = w.shape
    shift = np.zeros((k, n, n))
    rows = np.arange(n)
    for t in range(k):
        shift[t, rows, (rows + t - k // 2) % n] = 1.0
    blocks = np.einsum("oit,tab->oaib", w, shift)
    return blocks.reshape(c_out * n, c_in * n)


def jacobian_moments(activation: Any, q: ArrayLike, *, n_nodes: int | None = None) -> tuple[Any, Any]:
    """``mu_1 = E[phi'(u)**2]`` and ``mu_2 = E[phi'(u)**4]`` for ``u ~ N(0, q)``.

    The first two moments of the squared diagonal of ``D^l``; Pennington et al. (2017, 2018).
    """
    act = get(activation)
    n = gaussian.DEFAULT_NODES_1D if n_nodes is None else n_nodes
    mu1 = gaussian.expect(lambda u: act.dphi(u) ** 2, q, n_nodes=n)
    mu2 = gaussian.expect(lambda u: act.dphi(u) ** 4, q, n_nodes=n)
    return (float(mu1), float(mu2)) if np.ndim(mu1) == 0 else (mu1, mu2)


def predicted_spectral_variance(activation: Any, q: ArrayLike, depth: int, *, orthogonal: bool) -> Any:
    """Variance of the eigenvalues of ``J J.T`` of a deep critical network.

    Pennington et al. (2018): at ``sigma_w2 mu_1 = 1`` the variance is
    ``L (mu_2 / mu_1**2 - 1 - s_1)`` with ``s_1 = 0`` for orthogonal weights and
    ``s_1 = -1`` for i.i.d. Gaussian ones.  In the free-probability model, where
    every layer has the same diagonal law ``D^l`` (all pre-activations at ``q``),
    the formula is exact for every depth ``L``, not only its leading order: the
    variance of a product of ``L`` freely independent factors of mean 1 is the
    sum of their variances.
    """
    if int(depth) != depth or depth < 1:
        raise ValueError(f"depth must be a positive integer, got {depth!r}")
    mu1, mu2 = jacobian_moments(activation, q)
    s1 = 0.0 if orthogonal else -1.0
    return depth * (np.asarray(mu2) / np.asarray(mu1) ** 2 - 1.0 - s1)
