"""Tests for signalprop.layers."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from signalprop import init, layers


def test_circular_pad_matches_torch_where_torch_works_and_wraps_beyond():
    x = torch.arange(24.0).reshape(1, 2, 3, 4)
    np.testing.assert_array_equal(layers.circular_pad(x, (1, 1, 1, 1)), F.pad(x, (1, 1, 1, 1), mode="circular"))
    wide = layers.circular_pad(torch.arange(3.0), (5, 4))  # pad wider than the axis
    np.testing.assert_array_equal(wide, [(i % 3) for i in range(-5, 7)])


def test_circular_conv_keeps_size_and_orthogonal_kernels_keep_norms():
    g = torch.Generator().manual_seed(0)
    conv = layers.CircularConv2d(8, 16, 3, bias=False)
    init.conv_orthogonal_(conv.weight, gain=math.sqrt(2.0), generator=g)
    x = torch.randn(3, 8, 2, 2, generator=g)  # image smaller than the kernel
    with torch.no_grad():
        y = conv(x)
    assert y.shape == (3, 16, 2, 2)
    np.testing.assert_allclose(y.flatten(1).norm(dim=1), math.sqrt(2.0) * x.flatten(1).norm(dim=1), rtol=1e-5)


def test_bad_arguments():
    with pytest.raises(ValueError, match="odd"):
        layers.CircularConv2d(2, 2, 2)
    with pytest.raises(ValueError, match="non-negative"):
        layers.circular_pad(torch.zeros(3), (-1, 0))
