"""PyTorch layers with the periodic boundaries that the theory assumes.

Xiao et al. (2018), eq. (2.1) is a stride-1 cross-correlation on a periodic
image; Algorithm 1 kernels are orthogonal only with periodic boundaries.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def circular_pad(x: torch.Tensor, pad: tuple[int, ...]) -> torch.Tensor:
    """Periodic padding of the trailing spatial axes, valid for any pad (also wider than the image).

    ``pad`` follows :func:`torch.nn.functional.pad`: ``(left, right)`` pairs
    starting from the last axis.  Unlike ``F.pad(mode="circular")``, which
    needs ``pad <= size``, this wraps as many times as needed.
    """
    if len(pad) % 2 or len(pad) // 2 > x.ndim:
        raise ValueError(f"pad must hold (left, right) pairs for at most {x.ndim} axes, got {pad}")
    for i, (left, right) in enumerate(zip(pad[0::2], pad[1::2], strict=True)):
        if left < 0 or right < 0:
            raise ValueError(f"pads must be non-negative, got {pad}")
        axis = x.ndim - 1 - i
        n = x.shape[axis]
        idx = torch.arange(-left, n + right, device=x.device) % n
        x = x.index_select(axis, idx)
    return x


class CircularConv2d(nn.Conv2d):
    """A ``k x k`` convolution (odd ``k``, stride 1 by default) with periodic boundaries.

    The output has the input's spatial size when ``stride = 1``.  Parameters
    and initialisation are those of :class:`torch.nn.Conv2d`; use
    :mod:`signalprop.init` to re-initialise the weight.
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int = 3, *, stride: int = 1, bias: bool = True
    ):
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be a positive odd integer, got {kernel_size!r}")
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=0, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.kernel_size[0] // 2
        return F.conv2d(circular_pad(x, (p, p, p, p)), self.weight, self.bias, self.stride)
