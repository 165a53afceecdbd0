"""Initialisers for convolution kernels, in the style of ``torch.nn.init``.

Orthogonal kernels (Xiao et al. 2018, Algorithm 1, after Kautsky & Turcajova
1994), Delta-Orthogonal kernels (Algorithm 2), and Gaussian kernels with a
spatial variance profile ``v`` (eq. (2.13)).  Weights use PyTorch's layout
``(c_out, c_in, k)`` (1-D) or ``(c_out, c_in, k, k)`` (2-D), and the
convolution is PyTorch's cross-correlation.  ``gain`` multiplies the kernel,
so it is the standard deviation sigma_w (pass ``math.sqrt(sigma_w2)``): an
orthogonal kernel scaled by ``gain`` has every singular value of its periodic
convolution operator equal to ``gain``.

Orthogonality of Algorithm 1 kernels holds for stride 1 and **periodic
(circular) boundaries**, for any image size; with zero padding it fails
(see :func:`conv_operator_singular_values`).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "haar_orthogonal",
    "random_symmetric_projection",
    "orthogonal_kernel",
    "delta_orthogonal_kernel",
    "conv_orthogonal_",
    "delta_orthogonal_",
    "conv_gaussian_",
    "conv_operator_singular_values",
]


def _check_sizes(k: int, c_in: int, c_out: int, dims: int, gain: float) -> None:
    for name, val in (("k", k), ("c_in", c_in), ("c_out", c_out)):
        if int(val) != val or val < 1:
            raise ValueError(f"{name} must be a positive integer, got {val!r}")
    if c_in > c_out:
        raise ValueError(
            f"an orthogonal kernel needs c_in <= c_out (an isometry cannot reduce dimension), got c_in={c_in}, "
            f"c_out={c_out}"
        )
    if dims not in (1, 2):
        raise ValueError(f"dims must be 1 or 2, got {dims!r}")
    if not (math.isfinite(gain) and gain > 0):
        raise ValueError(f"gain must be a positive number (sigma_w, a standard deviation), got {gain!r}")


def haar_orthogonal(
    n: int, *, generator: torch.Generator | None = None, dtype: torch.dtype = torch.float64
) -> torch.Tensor:
    """A Haar-random ``n x n`` orthogonal matrix.

    QR decomposition of a standard Gaussian matrix, with the columns of ``Q``
    multiplied by the signs of ``diag(R)`` so that the law is exactly Haar
    (Mezzadri 2007); without the correction it is not.
    """
    if int(n) != n or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    a = torch.randn((n, n), generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(a)
    signs = torch.sign(torch.diagonal(r))
    signs[signs == 0] = 1.0
    return (q * signs).to(dtype)


def random_symmetric_projection(n: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """A random symmetric projection ``P = P**2 = P.T`` of size ``n x n`` (float64).

    ``P = C C.T`` where ``C`` keeps each column of a Haar orthogonal matrix
    independently with probability 1/2, so the rank is Binomial(n, 1/2).
    """
    q = haar_orthogonal(n, generator=generator)
    keep = torch.randn(n, generator=generator, dtype=torch.float64) > 0
    c = q[:, keep]
    return c @ c.T


def _block_convolve(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Block convolution of block kernels ``x`` (spatial ``p``) and ``y`` (spatial ``q``).

    Shapes ``(*p, c, c)`` and ``(*q, c, c)``; result ``(*(p + q - 1), c, c)`` with
    ``out[i] = sum_{i'} x[i'] @ y[i - i']`` (out-of-range blocks are zero).
    Xiao et al. (2018), section 2.3.
    """
    spatial = x.ndim - 2
    shape = tuple(a + b - 1 for a, b in zip(x.shape[:spatial], y.shape[:spatial], strict=True))
    out = torch.zeros((*shape, *x.shape[-2:]), dtype=x.dtype)
    for i in np.ndindex(*x.shape[:spatial]):
        for j in np.ndindex(*y.shape[:spatial]):
            idx = tuple(a + b for a, b in zip(i, j, strict=True))
            out[idx] += x[i] @ y[j]
    return out


def orthogonal_kernel(
    k: int,
    c_in: int,
    c_out: int,
    *,
    dims: int = 2,
    gain: float = 1.0,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """A random orthogonal convolution kernel: Xiao et al. (2018), Algorithm 1.

    Start from the 1 x 1 block kernel ``I`` (``c_out x c_out``) and block-convolve
    it ``k - 1`` times with ``[P, I - P]`` (1-D) or
    ``[[P Q, P (I - Q)], [(I - P) Q, (I - P)(I - Q)]]`` (2-D) for fresh random
    symmetric projections ``P, Q``; each factor has a unitary symbol on the unit
    circle because ``P (I - P) = 0``, so the product is paraunitary.  Finally
    map ``c_in`` input channels in with the first ``c_in`` rows of a Haar
    orthogonal matrix and multiply by ``gain``.

    Parameters
    ----------
    k : int
        Kernel size (``k x k`` in 2-D), any ``k >= 1``.
    c_in, c_out : int
        Channels, ``c_in <= c_out``.
    dims : {1, 2}
        Spatial dimensions.
    gain : float
        sigma_w: every singular value of the periodic convolution operator equals ``gain``.
    generator : torch.Generator, optional
    dtype : torch.dtype
        Of the result (the construction runs in float64).

    Returns
    -------
    torch.Tensor
        Shape ``(c_out, c_in, k)`` or ``(c_out, c_in, k, k)``.

    Raises
    ------
    ValueError
        If ``c_in > c_out``, ``k < 1``, ``dims`` not in (1, 2) or ``gain <= 0``.

    Notes
    -----
    Cost O((k c_out)^3) (Xiao et al. 2018, App. C.1).  The kernel is not
    spatially uniform in expected energy: each factor splits it about
    evenly between two taps, giving binomial tap energies.
    """
    _check_sizes(k, c_in, c_out, dims, gain)
    eye = torch.eye(c_out, dtype=torch.float64)
    h = eye.reshape((1,) * dims + (c_out, c_out))
    for _ in range(k - 1):
        p = random_symmetric_projection(c_out, generator=generator)
        if dims == 1:
            block = torch.stack([p, eye - p])
        else:
            q = random_symmetric_projection(c_out, generator=generator)
            block = torch.stack(
                [torch.stack([p @ q, p @ (eye - q)]), torch.stack([(eye - p) @ q, (eye - p) @ (eye - q)])]
            )
        h = _block_convolve(h, block)
    o = haar_orthogonal(c_out, generator=generator)[:c_in]  # (c_in, c_out), orthonormal rows
    kernel = torch.einsum("ab,...bc->...ac", o, h)  # TF layout per tap: (c_in, c_out)
    weight = kernel.movedim((-1, -2), (0, 1))  # (c_out, c_in, *taps)
    return (gain * weight).to(dtype).contiguous()


def delta_orthogonal_kernel(
    k: int,
    c_in: int,
    c_out: int,
    *,
    dims: int = 2,
    gain: float = 1.0,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """A Delta-Orthogonal kernel: Xiao et al. (2018), Algorithm 2.

    All taps are zero except the centre ``(k - 1) // 2`` (per axis), which is
    ``gain * H`` with ``H`` (``c_out x c_in``) the first ``c_in`` columns of a
    Haar orthogonal matrix, so ``H.T @ H = I``.  The convolution (stride 1)
    multiplies every input's norm by exactly ``gain`` whatever the padding.
    Arguments and errors as :func:`orthogonal_kernel`.
    """
    _check_sizes(k, c_in, c_out, dims, gain)
    weight = torch.zeros((c_out, c_in) + (k,) * dims, dtype=torch.float64)
    centre = ((k - 1) // 2,) * dims
    weight[(slice(None), slice(None), *centre)] = haar_orthogonal(c_out, generator=generator)[:, :c_in]
    return (gain * weight).to(dtype)


def _weight_geometry(weight: torch.Tensor) -> tuple[int, int, int, int]:
    if not isinstance(weight, torch.Tensor):
        raise ValueError(f"weight must be a torch.Tensor, got {type(weight).__name__}")
    if weight.ndim not in (3, 4):
        raise ValueError(
            f"weight must have shape (c_out, c_in, k) or (c_out, c_in, k, k), got a tensor of rank {weight.ndim}"
        )
    if weight.ndim == 4 and weight.shape[2] != weight.shape[3]:
        raise ValueError(f"2-D kernels must be square, got spatial shape {tuple(weight.shape[2:])}")
    c_out, c_in, k = weight.shape[:3]
    return k, c_in, c_out, weight.ndim - 2


def conv_orthogonal_(weight: torch.Tensor, gain: float = 1.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """Fill a conv weight with an Algorithm 1 orthogonal kernel, in place; returns ``weight``.

    Xiao et al. (2018), Algorithm 1; see :func:`orthogonal_kernel`.  ``gain`` is sigma_w.

    Examples
    --------
    >>> w = torch.empty(16, 8, 3, 3)
    >>> _ = conv_orthogonal_(w, gain=1.05 ** 0.5)
    """
    k, c_in, c_out, dims = _weight_geometry(weight)
    kernel = orthogonal_kernel(k, c_in, c_out, dims=dims, gain=gain, generator=generator, dtype=weight.dtype)
    with torch.no_grad():
        return weight.copy_(kernel)


def delta_orthogonal_(
    weight: torch.Tensor, gain: float = 1.0, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Fill a conv weight with a Delta-Orthogonal kernel, in place; returns ``weight``.

    Xiao et al. (2018), Algorithm 2; see :func:`delta_orthogonal_kernel`.  ``gain`` is sigma_w.
    """
    k, c_in, c_out, dims = _weight_geometry(weight)
    kernel = delta_orthogonal_kernel(k, c_in, c_out, dims=dims, gain=gain, generator=generator, dtype=weight.dtype)
    with torch.no_grad():
        return weight.copy_(kernel)


def conv_gaussian_(
    weight: torch.Tensor,
    gain: float = 1.0,
    v: ArrayLike | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Fill a conv weight with Gaussian entries of variance ``gain**2 * v_beta / c_in``, in place.

    Xiao et al. (2018), eqs. (2.1) and (2.13): the critical Gaussian
    initialisation when ``gain**2`` is a critical sigma_w2.  ``v`` is the
    spatial variance profile: shape ``(k,)`` or ``(k, k)`` matching the kernel,
    non-negative, summing to 1; ``None`` means uniform (``1 / k**dims`` per tap,
    the fan-in normalisation of ``torch.nn.init``).  A 1-D ``v`` for a 2-D kernel
    is used as the separable profile ``outer(v, v)``.
    """
    k, c_in, _, dims = _weight_geometry(weight)
    if not (math.isfinite(gain) and gain > 0):
        raise ValueError(f"gain must be a positive number, got {gain!r}")
    if v is None:
        prof = np.full((k,) * dims, 1.0 / k**dims)
    else:
        prof = np.asarray(v, dtype=float)
        if dims == 2 and prof.ndim == 1:
            prof = np.outer(prof, prof)
        if prof.shape != (k,) * dims:
            raise ValueError(f"v must have the kernel's spatial shape {(k,) * dims}, got {prof.shape}")
        if np.any(~np.isfinite(prof)) or np.any(prof < 0) or abs(prof.sum() - 1.0) > 1e-10:
            raise ValueError("v must be non-negative and sum to 1")
    std = torch.from_numpy(gain * np.sqrt(prof / c_in))
    with torch.no_grad():
        z = torch.randn(weight.shape, generator=generator, dtype=torch.float64)
        return weight.copy_((z * std).to(weight.dtype))


def conv_operator_singular_values(weight: torch.Tensor | NDArray[np.float64], n: int) -> NDArray[np.float64]:
    """Singular values of the periodic convolution operator of ``weight`` on an ``n`` (or ``n x n``) image.

    The operator x -> conv(x, weight) with stride 1 and circular boundaries is
    block-circulant; the DFT block-diagonalises it, so its singular values are
    the union over frequencies ``p`` of those of the ``c_out x c_in`` symbol
    ``W(p) = sum_t W[:, :, t] exp(2 pi i p t / n)``.  Taps wrap modulo ``n``
    when ``k > n``.  No ``n c x n c`` matrix is formed.

    Returns
    -------
    ndarray
        Sorted in descending order, ``n**dims * min(c_in, c_out)`` values.
    """
    if int(n) != n or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    w = weight.detach().cpu().double().numpy() if isinstance(weight, torch.Tensor) else np.asarray(weight, float)
    if w.ndim not in (3, 4):
        raise ValueError(f"weight must have shape (c_out, c_in, k) or (c_out, c_in, k, k), got rank {w.ndim}")
    symbol = np.fft.fftn(_wrap_taps(w, n), axes=tuple(range(2, w.ndim)))  # (c_out, c_in, n[, n])
    mats = np.moveaxis(symbol, (0, 1), (-2, -1)).reshape(-1, w.shape[0], w.shape[1])
    return np.sort(np.linalg.svd(mats, compute_uv=False).ravel())[::-1]


def _wrap_taps(w: NDArray[np.float64], n: int) -> NDArray[np.float64]:
    """Fold the taps of ``w`` modulo ``n`` into an ``n``-periodic kernel of spatial size ``n``."""
    out = np.zeros(w.shape[:2] + (n,) * (w.ndim - 2))
    for t in np.ndindex(*w.shape[2:]):
        out[(slice(None), slice(None), *(ti % n for ti in t))] += w[(slice(None), slice(None), *t)]
    return out
