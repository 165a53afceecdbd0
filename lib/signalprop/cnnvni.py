"""The vanishing node indicator of deep random CNNs: simulation and mean-field prediction.

An extension of Chang (2019), chapter 3, to the periodic CNNs of Xiao et al. (2018), eq. (2.1).
The nodes of layer ``L`` are all its ``N = c n`` post-activations ``x^L_{i, alpha}`` (``c`` channels
``i``, ``n`` spatial positions ``alpha``).  The layer map is ``h^l = W^l x^{l-1} + b^l``,
``x^l = phi(h^l)``, where ``W^l`` is the ``N x N`` block-circulant matrix of the stride-1 periodic
cross-correlation (:func:`signalprop.spectra.conv_operator_matrix`).  The input-output Jacobian
``J = D^L W^L ... D^1 W^1`` has the fully connected form with ``N = c n``, so the first-order
approximation ``C ~ sigma_x**2 J J^T`` (Chang (2019), eq. (3.3)) and the spectral form
``R_sq ~ m_2 / (N m_1**2)`` (eq. (3.6)) carry over.  With the free-probability moments of
Pennington et al. (2018) (eq. (3.7)) the prediction is ``R_sq ~ (1 + L g) / (c n)`` with
``g = mu_2 / mu_1**2 - 1 - s_1``, ``s_1 = -1`` for Gaussian kernels (each frequency block of
``W^l`` is a ``c x c`` Gaussian matrix, Marchenko-Pastur in the limit) and ``s_1 = 0`` for
orthogonal (Algorithm 1) and Delta-Orthogonal (Algorithm 2) kernels (``W^l`` exactly orthogonal
up to ``sigma_w``).

The module draws the three kernel families (:func:`sample_kernels`), runs a batch of inputs through
one network and returns the nodes of chosen layers (:func:`cnn_activations`), gives the prediction
(:func:`predicted_vni`) and the expected value of the finite-sample estimate
:func:`signalprop.vni.vni` from ``M`` Gaussian inputs (:func:`expected_sample_vni`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from numpy.typing import ArrayLike

from signalprop import init as sp_init
from signalprop import vni as sp_vni
from signalprop.activations import get

__all__ = [
    "KERNELS",
    "WEIGHT_LAW",
    "sample_kernels",
    "input_variance",
    "circular_tap_index",
    "cnn_activations",
    "predicted_vni",
    "expected_sample_vni",
]

#: Kernel families and the weight law (through ``s_1``, :data:`signalprop.vni.WEIGHT_LAWS`) of each.
WEIGHT_LAW: dict[str, str] = {"gaussian": "gaussian", "orthogonal": "orthogonal", "delta-orthogonal": "orthogonal"}
KERNELS: tuple[str, ...] = tuple(WEIGHT_LAW)


def _check_kind(kind: Any) -> str:
    if not isinstance(kind, str) or kind.lower() not in WEIGHT_LAW:
        raise ValueError(f"unknown kernel family {kind!r}; known: {', '.join(KERNELS)}")
    return kind.lower()


def _check_int(name: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def sample_kernels(
    kind: str,
    depth: int,
    channels: int,
    kernel_size: int,
    sigma_w2: float,
    sigma_b2: float,
    *,
    dims: int = 1,
    generator: torch.Generator | None = None,
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Kernels and biases of one random periodic CNN of ``depth`` layers, in float64.

    Xiao et al. (2018): ``"gaussian"`` draws i.i.d. entries of variance ``sigma_w2 / (c k**dims)``
    (eq. (2.13) with the uniform variance profile ``v``, :func:`signalprop.init.conv_gaussian_`);
    ``"orthogonal"`` is Algorithm 1 (:func:`signalprop.init.orthogonal_kernel`) and
    ``"delta-orthogonal"`` Algorithm 2 (:func:`signalprop.init.delta_orthogonal_kernel`), both with
    gain ``sqrt(sigma_w2)``.  Biases are i.i.d. ``N(0, sigma_b2)``, one per channel.  The layers are
    drawn one after the other from ``generator``: kernel, then bias.

    Parameters
    ----------
    kind : {"gaussian", "orthogonal", "delta-orthogonal"}
    depth, channels, kernel_size : int
        ``>= 1``; ``kernel_size`` odd.
    sigma_w2, sigma_b2 : float
        Weight and bias variances, ``sigma_w2 > 0``, ``sigma_b2 >= 0``.
    dims : {1, 2}
        Spatial dimensions of the image.
    generator : torch.Generator, optional

    Returns
    -------
    weights : list of torch.Tensor
        ``depth`` tensors of shape ``(c, c, k)`` or ``(c, c, k, k)`` (PyTorch layout, cross-correlation).
    biases : list of torch.Tensor
        ``depth`` tensors of shape ``(c,)``.

    Raises
    ------
    ValueError
        Unknown ``kind``, a size below one, an even ``kernel_size``, ``dims`` not 1 or 2,
        ``sigma_w2 <= 0`` or ``sigma_b2 < 0``.
    """
    kind = _check_kind(kind)
    depth = _check_int("depth", depth)
    c = _check_int("channels", channels)
    k = _check_int("kernel_size", kernel_size)
    if k % 2 == 0:
        raise ValueError(f"kernel_size must be odd (centred taps), got {k}")
    if dims not in (1, 2):
        raise ValueError(f"dims must be 1 or 2, got {dims!r}")
    sw, sb = float(sigma_w2), float(sigma_b2)
    if not (math.isfinite(sw) and sw > 0):
        raise ValueError(f"sigma_w2 must be finite and > 0, got {sigma_w2!r}")
    if not (math.isfinite(sb) and sb >= 0):
        raise ValueError(f"sigma_b2 must be finite and >= 0, got {sigma_b2!r}")
    gain = math.sqrt(sw)
    weights, biases = [], []
    for _ in range(depth):
        if kind == "gaussian":
            w = sp_init.conv_gaussian_(torch.empty((c, c) + (k,) * dims, dtype=torch.float64), gain, None, generator)
        elif kind == "orthogonal":
            w = sp_init.orthogonal_kernel(k, c, c, dims=dims, gain=gain, generator=generator, dtype=torch.float64)
        else:
            w = sp_init.delta_orthogonal_kernel(k, c, c, dims=dims, gain=gain, generator=generator, dtype=torch.float64)
        weights.append(w)
        biases.append(math.sqrt(sb) * torch.randn(c, generator=generator, dtype=torch.float64))
    return weights, biases


def input_variance(sigma_w2: float, sigma_b2: float, q_star: float) -> float:
    """Variance ``sigma_x**2 = (q* - sigma_b2) / sigma_w2`` of white inputs ``x^0`` that put ``h^1`` at ``q*``.

    The pre-activation of the first layer, ``h^1 = W^1 x^0 + b^1``, has variance
    ``sigma_w2 sigma_x**2 + sigma_b2`` (Xiao et al. (2018), eq. (2.5) with ``x^0`` in place of
    ``phi(h^0)``); equating it with the fixed point ``q*`` starts the network at its fixed point.

    Raises
    ------
    ValueError
        ``sigma_w2 <= 0``, ``sigma_b2 < 0``, ``q_star <= 0`` or ``q_star <= sigma_b2`` (no such variance).
    """
    sw, sb, q = float(sigma_w2), float(sigma_b2), float(q_star)
    if not (math.isfinite(sw) and sw > 0):
        raise ValueError(f"sigma_w2 must be finite and > 0, got {sigma_w2!r}")
    if not (math.isfinite(sb) and sb >= 0):
        raise ValueError(f"sigma_b2 must be finite and >= 0, got {sigma_b2!r}")
    if not (math.isfinite(q) and q > sb):
        raise ValueError(f"q_star must be finite and exceed sigma_b2 = {sb!r}, got {q_star!r}")
    return (q - sb) / sw


def circular_tap_index(image: Sequence[int], kernel_size: int) -> torch.Tensor:
    """Flat input position read by each (output position, tap) of a periodic stride-1 cross-correlation.

    Entry ``[p, t]`` is the flattened position ``alpha + beta (mod n)`` of output position ``alpha``
    (flattened as ``p``) for the tap ``t`` at offset ``beta = t - k // 2`` (per axis, row-major over
    ``(k,)`` or ``(k, k)`` taps): Xiao et al. (2018), eq. (2.1), the convention of
    :func:`signalprop.spectra.conv_operator_matrix`.

    Parameters
    ----------
    image : sequence of int
        ``(n,)`` or ``(n1, n2)``, sizes ``>= 1`` (smaller than the kernel is allowed: taps wrap).
    kernel_size : int
        Odd, ``>= 1``.

    Returns
    -------
    torch.Tensor
        Long tensor of shape ``(prod(image), kernel_size**len(image))``.

    Raises
    ------
    ValueError
        ``image`` not of length 1 or 2 or with a size below one, or ``kernel_size`` not a positive odd integer.
    """
    image = tuple(image)
    if len(image) not in (1, 2):
        raise ValueError(f"image must be (n,) or (n1, n2), got {image!r}")
    sizes = [_check_int("image size", s) for s in image]
    k = _check_int("kernel_size", kernel_size)
    if k % 2 == 0:
        raise ValueError(f"kernel_size must be odd, got {k}")
    offsets = torch.arange(k) - k // 2
    if len(sizes) == 1:
        (n,) = sizes
        return (torch.arange(n).view(-1, 1) + offsets.view(1, -1)) % n
    n1, n2 = sizes
    a1 = (torch.arange(n1).view(-1, 1, 1, 1) + offsets.view(1, 1, -1, 1)) % n1
    a2 = (torch.arange(n2).view(1, -1, 1, 1) + offsets.view(1, 1, 1, -1)) % n2
    return (a1 * n2 + a2).reshape(n1 * n2, k * k)


def cnn_activations(
    weights: Sequence[torch.Tensor],
    biases: Sequence[torch.Tensor],
    x0: torch.Tensor,
    *,
    depths: Sequence[int] | None = None,
    activation: Any = "tanh",
) -> list[torch.Tensor]:
    """Nodes ``x^L`` of a periodic CNN for a batch of inputs, at the layers ``depths``.

    ``h^l = W^l x^{l-1} + b^l`` (stride-1 periodic cross-correlation, Xiao et al. (2018), eq. (2.1))
    and ``x^l = phi(h^l)`` for ``l = 1..L``.  Computed channels-last: each layer gathers the ``k**dims``
    periodic neighbours of every position (:func:`circular_tap_index`) and multiplies by the
    ``(k**dims c, c)`` kernel matrix in one GEMM.  Taps whose kernel is zero for every channel pair
    (all but the centre of a Delta-Orthogonal kernel) are skipped, which changes nothing but the cost.
    No gradient is kept.

    Parameters
    ----------
    weights : sequence of torch.Tensor
        ``L`` kernels of shape ``(c, c, k)`` or ``(c, c, k, k)`` (as :func:`sample_kernels`).
    biases : sequence of torch.Tensor
        ``L`` tensors of shape ``(c,)``.
    x0 : torch.Tensor
        Inputs, shape ``(M, c, *image)``.
    depths : sequence of int, optional
        Layers ``1 <= L' <= L`` to return, in any order; default ``[L]``.
    activation : str, Activation or callable
        :func:`signalprop.activations.get`; default tanh.

    Returns
    -------
    list of torch.Tensor
        One float64 ``(M, c * prod(image))`` matrix per entry of ``depths``, rows the inputs and columns
        the nodes in channel-major order (node ``i * n + alpha``), ready for :func:`signalprop.vni.vni`.

    Raises
    ------
    ValueError
        No layers, mismatched numbers of kernels and biases, kernels of inconsistent or non-square shape,
        an input whose shape does not fit them, or a depth outside ``1..L``.
    """
    if len(weights) == 0 or len(weights) != len(biases):
        raise ValueError(f"need as many biases as kernels (at least one), got {len(weights)} and {len(biases)}")
    w0 = weights[0]
    if not isinstance(w0, torch.Tensor) or w0.ndim not in (3, 4) or w0.shape[0] != w0.shape[1]:
        raise ValueError("kernels must be tensors of shape (c, c, k) or (c, c, k, k)")
    c, k, dims = int(w0.shape[0]), int(w0.shape[2]), w0.ndim - 2
    shape = (c, c) + (k,) * dims
    for w, b in zip(weights, biases, strict=True):
        if not isinstance(w, torch.Tensor) or tuple(w.shape) != shape:
            raise ValueError(f"every kernel must have shape {shape}, got {tuple(getattr(w, 'shape', ()))}")
        if not isinstance(b, torch.Tensor) or tuple(b.shape) != (c,):
            raise ValueError(f"every bias must have shape ({c},), got {tuple(getattr(b, 'shape', ()))}")
    if not isinstance(x0, torch.Tensor) or x0.ndim != 2 + dims or x0.shape[1] != c:
        got = tuple(getattr(x0, "shape", ()))
        raise ValueError(f"x0 must have shape (M, {c}, *image) with {dims} image axes, got {got}")
    n_layers = len(weights)
    wanted = [n_layers] if depths is None else [int(d) for d in depths]
    if not wanted or any(d < 1 or d > n_layers for d in wanted):
        raise ValueError(f"depths must lie in 1..{n_layers}, got {depths!r}")
    act = get(activation)
    m, image = x0.shape[0], tuple(x0.shape[2:])
    pos = int(np.prod(image))
    index = circular_tap_index(image, k)  # (pos, taps)
    out: dict[int, torch.Tensor] = {}
    with torch.no_grad():
        x = x0.detach().double().reshape(m, c, pos).transpose(1, 2).contiguous()  # (M, pos, c)
        for layer, (w, b) in enumerate(zip(weights, biases, strict=True), start=1):
            taps = w.detach().double().reshape(c, c, -1)  # (c_out, c_in, taps)
            used = torch.nonzero(taps.abs().sum(dim=(0, 1)) > 0).flatten()
            if used.numel() == 0:
                used = torch.zeros(1, dtype=torch.long)
            mat = taps[:, :, used].permute(2, 1, 0).reshape(-1, c)  # (taps * c_in, c_out)
            patches = x[:, index[:, used], :].reshape(m * pos, -1)  # (M pos, taps * c_in)
            h = torch.addmm(b.detach().double(), patches, mat)
            x = act.torch_fn(h).reshape(m, pos, c)
            if layer in wanted:
                out[layer] = x.transpose(1, 2).reshape(m, c * pos).clone()
    return [out[d] for d in wanted]


def predicted_vni(
    kind: str, depth: ArrayLike, channels: int, positions: int, q_star: float, *, activation: Any = "tanh"
) -> Any:
    """Mean-field prediction of ``R_sq`` of layer ``L`` of a critical random CNN: Chang (2019), eqs. (3.6)-(3.7).

    ::

        R_sq ~ m_2 / (N m_1**2) = (1 + L (mu_2 / mu_1**2 - 1 - s_1)) / N,     N = c n

    with ``mu_k = E[phi'(h)**(2k)]`` at ``h ~ N(0, q*)`` and ``s_1 = -1`` for Gaussian kernels, 0 for
    orthogonal and Delta-Orthogonal kernels (:data:`WEIGHT_LAW`).  It is
    :func:`signalprop.vni.vni_theory` with the width ``N = c n`` of all channels at all positions:
    the Jacobian of the CNN is the fully connected product ``D^L W^L ... D^1 W^1`` with
    block-circulant ``W^l``.  Expected to hold for ``L`` small against ``c`` (the size of the
    independent ``c x c`` blocks that carry the randomness) and ``q*`` small (the linearisation).

    Parameters
    ----------
    kind : {"gaussian", "orthogonal", "delta-orthogonal"}
    depth : array_like of int
        ``L >= 1``.
    channels, positions : int
        ``c >= 1`` and the number of positions ``n`` (``n1 n2`` for a 2-D image), ``>= 1``.
    q_star : float
        Fixed point of the pre-activation variance, ``> 0``.
    activation : str, Activation or callable
        Default tanh.

    Returns
    -------
    float or ndarray
        Population ``R_sq`` (not clipped to ``[1/N, 1]``); for an estimate from ``M`` inputs see
        :func:`expected_sample_vni`.

    Raises
    ------
    ValueError
        Unknown ``kind``, ``channels`` or ``positions`` below one, or as :func:`signalprop.vni.vni_theory`.
    """
    law = WEIGHT_LAW[_check_kind(kind)]
    c = _check_int("channels", channels)
    n = _check_int("positions", positions)
    return sp_vni.vni_theory(activation, depth, c * n, law, q_star)


def expected_sample_vni(r_sq: ArrayLike, n_inputs: int) -> Any:
    """Expected value of :func:`signalprop.vni.vni` from ``M`` Gaussian inputs, given the population ``R_sq``.

    For ``M`` i.i.d. rows ``~ N(mu, C)`` the centred scatter matrix is Wishart with ``m = M - 1``
    degrees of freedom, ``m S ~ W(m, C)``, whose moments give ``E[tr S] = tr C``,
    ``E[tr S**2] = (1 + 1/m) tr C**2 + (tr C)**2 / m`` and ``E[(tr S)**2] = (tr C)**2 + 2 tr C**2 / m``.
    The ratio of the expectations is::

        E[R_sq estimate] ~ ((1 + 1/m) R_sq + 1/m) / (1 + 2 R_sq / m)

    with an error of order ``1 / m**2`` (the ratio of expectations for the expectation of the ratio).
    The finite sample raises ``R_sq`` by about ``1/M``; Chang (2019), eq. (3.5) is the population value.

    Parameters
    ----------
    r_sq : array_like
        Population values in ``(0, 1]``.
    n_inputs : int
        ``M >= 2``.

    Raises
    ------
    ValueError
        ``r_sq`` outside ``(0, 1]`` or ``n_inputs < 2``.
    """
    r = np.asarray(r_sq, dtype=float)
    if np.any(~np.isfinite(r)) or np.any(r <= 0) or np.any(r > 1):
        raise ValueError(f"r_sq must lie in (0, 1], got {r_sq!r}")
    m = _check_int("n_inputs", n_inputs, 2) - 1
    out = ((1 + 1 / m) * r + 1 / m) / (1 + 2 * r / m)
    return float(out) if out.ndim == 0 else out
