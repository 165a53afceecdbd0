"""Finite random CNNs, simulated to test the mean-field theory.

An ensemble of ``n_networks`` independent random CNNs (Xiao et al. 2018,
eq. (2.1)) with ``channels`` channels, stride 1 and periodic boundaries, run
together as one grouped convolution in float64.  Each network sees its own
input, drawn with ``channels`` i.i.d. channels from ``N(0, Sigma^0)`` over
positions.  Weight layout is PyTorch's ``(c_out, c_in, K[, K])``: the tap at
index ``t`` is the offset ``beta = t - k`` of eq. (2.1), a cross-correlation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import ArrayLike, NDArray

from signalprop.activations import get
from signalprop.layers import circular_pad
from signalprop.meanfield import _check_covariance, _params, check_variance_vector

Array = NDArray[np.float64]


@dataclass(frozen=True)
class RandomCNN:
    """Weights and biases of an ensemble of random CNNs (one entry per layer).

    ``weights[l]`` has shape ``(E * c, c, *kernel)`` (grouped by network) and
    ``biases[l]`` shape ``(E * c,)``.
    """

    weights: list[torch.Tensor]
    biases: list[torch.Tensor]
    n_networks: int
    channels: int
    v: Array


def sample_random_cnn(
    depth: int,
    channels: int,
    v: ArrayLike,
    sigma_w2: float,
    sigma_b2: float,
    *,
    n_networks: int = 1,
    generator: torch.Generator | None = None,
) -> RandomCNN:
    """Draw ``n_networks`` random CNNs of ``depth`` layers: eq. (2.1) with eq. (2.13)'s variances.

    ``omega_ij(beta) ~ N(0, sigma_w2 * v_beta / channels)``, ``b_j ~ N(0, sigma_b2)``.
    """
    v = check_variance_vector(v)
    sw, sb = (float(x) for x in _params(sigma_w2, sigma_b2))
    for name, val in (("depth", depth), ("channels", channels), ("n_networks", n_networks)):
        if int(val) != val or val < 1:
            raise ValueError(f"{name} must be a positive integer, got {val!r}")
    std = torch.from_numpy(np.sqrt(sw * v / channels))
    weights, biases = [], []
    for _ in range(depth):
        w = torch.randn((n_networks * channels, channels, *v.shape), generator=generator, dtype=torch.float64)
        weights.append(w * std)
        biases.append(np.sqrt(sb) * torch.randn(n_networks * channels, generator=generator, dtype=torch.float64))
    return RandomCNN(weights, biases, n_networks, channels, v)


def sample_inputs(
    sigma0: ArrayLike, channels: int, *, n_networks: int = 1, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Layer-0 pre-activations: ``channels`` i.i.d. draws from ``N(0, Sigma^0)`` per network.

    ``sigma0`` is ``(n, n)`` (1-D image) or ``(n1, n2, n1, n2)`` (2-D image).
    Returns a tensor of shape ``(n_networks, channels, *image)``.

    The draws are ``z @ S`` with ``z`` standard normal and ``S`` the symmetric
    square root of ``Sigma^0`` (:func:`symmetric_sqrt`).  That root is unique, so
    the samples do not depend on which eigenbasis LAPACK returns for a repeated
    eigenvalue (``q[(1 - c) I + c 11^T]`` has one of multiplicity ``n - 1``, and
    the basis LAPACK picks for it changes with the CPU's SIMD code path).
    """
    s = np.asarray(sigma0, dtype=float)
    image = s.shape[: s.ndim // 2]
    m = _check_covariance(s, len(image)).reshape(int(np.prod(image)), -1)
    root = torch.from_numpy(symmetric_sqrt(m))
    z = torch.randn((n_networks, channels, root.shape[0]), generator=generator, dtype=torch.float64)
    return (z @ root).reshape(n_networks, channels, *image)


def symmetric_sqrt(m: ArrayLike) -> Array:
    """The symmetric positive semi-definite square root ``S`` of a covariance matrix: ``S @ S = m``, ``S = S.T``.

    Computed as ``V diag(sqrt(max(lambda, 0))) V^T`` from ``eigh`` of the symmetrised
    matrix; unlike ``V diag(sqrt(lambda))`` alone it does not depend on the basis chosen
    inside a degenerate eigenspace.

    Raises
    ------
    ValueError
        ``m`` is not a square matrix of finite numbers.
    """
    a = np.asarray(m, dtype=float)
    if a.ndim != 2 or a.shape[0] != a.shape[1] or not np.all(np.isfinite(a)):
        raise ValueError(f"m must be a finite square matrix, got shape {a.shape}")
    evals, evecs = np.linalg.eigh(0.5 * (a + a.T))
    root = (evecs * np.sqrt(np.clip(evals, 0.0, None))) @ evecs.T
    return 0.5 * (root + root.T)


def forward(net: RandomCNN, h0: torch.Tensor, activation: Any) -> list[torch.Tensor]:
    """Pre-activations ``[h^0, h^1, ..., h^L]`` of every network, eq. (2.1).

    ``h0`` has shape ``(n_networks, channels, *image)``; the graph is kept, so
    gradients with respect to any ``h^l`` can be taken afterwards.
    """
    act = get(activation)
    ndim = net.v.ndim
    if h0.ndim != 2 + ndim or h0.shape[:2] != (net.n_networks, net.channels):
        raise ValueError(
            f"h0 must have shape (n_networks={net.n_networks}, channels={net.channels}, *image) "
            f"with {ndim} image axes, got {tuple(h0.shape)}"
        )
    conv = F.conv1d if ndim == 1 else F.conv2d
    pad = tuple(p for s in reversed(net.v.shape) for p in (s // 2, s // 2))
    image = h0.shape[2:]
    hs = [h0]
    for w, b in zip(net.weights, net.biases, strict=False):
        # Continue from the stored tensor itself, so that gradients with respect to
        # every h^l flow through the graph.
        x = act.torch_fn(hs[-1].reshape(1, net.n_networks * net.channels, *image))
        h = conv(circular_pad(x, pad), w, b, groups=net.n_networks)
        hs.append(h.reshape(net.n_networks, net.channels, *image))
    return hs


def empirical_covariance(h: torch.Tensor) -> Array:
    """Spatial covariance ``E[h_j(a) h_j(a')]`` estimated over networks and channels, eq. (2.2).

    ``h`` has shape ``(n_networks, channels, *image)``; the result is ``(n, n)``
    or ``(n1, n2, n1, n2)``.
    """
    image = tuple(h.shape[2:])
    flat = h.detach().reshape(-1, int(np.prod(image)))
    cov = flat.T @ flat / flat.shape[0]
    return cov.numpy().reshape(image + image)


def gradient_second_moments(
    net: RandomCNN, h0: torch.Tensor, activation: Any, *, generator: torch.Generator | None = None
) -> Array:
    """Mean squared back-propagated error ``E[delta^l(a)**2]`` per layer ``l = 0..L``.

    The error at the top is a standard normal vector (``delta^L ~ N(0, 1)``),
    and ``delta^l = dE/dh^l`` is computed by autograd through the same
    network: eqs. (2.14)-(2.15), without the gradient-independence assumption.
    """
    h0 = h0.detach().requires_grad_(True)
    hs = forward(net, h0, activation)
    top = torch.randn(hs[-1].shape, generator=generator, dtype=torch.float64)
    grads = torch.autograd.grad((hs[-1] * top).sum(), hs)
    return np.array([float((g**2).mean()) for g in grads])
