"""signalprop.zeromode against brute force: convolutions of constant images, a linear network, least squares."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from signalprop import models, zeromode
from signalprop.layers import circular_pad


def test_zero_mode_matrix_is_what_a_circular_convolution_does_to_a_constant_image():
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(3, 5, 4, 3, 3, generator=gen, dtype=torch.float64)  # depth 3, c_out 5, c_in 4
    mats = zeromode.zero_mode_matrices(w)
    assert mats.shape == (3, 5, 4)
    v = torch.randn(4, generator=gen, dtype=torch.float64)
    image = v[None, :, None, None].expand(1, 4, 6, 6)
    for layer in range(3):
        out = torch.nn.functional.conv2d(circular_pad(image, (1, 1, 1, 1)), w[layer])
        assert out.shape == (1, 5, 6, 6)
        expected = out[0, :, 2, 3].numpy()  # every position holds the same vector
        np.testing.assert_allclose(out[0].numpy(), np.broadcast_to(expected[:, None, None], (5, 6, 6)), atol=1e-12)
        np.testing.assert_allclose(mats[layer] @ v.numpy(), expected, atol=1e-12)
    np.testing.assert_allclose(zeromode.zero_mode_matrices(w[0].numpy()), mats[0], atol=0)


@pytest.mark.parametrize("kernel", ["delta_orthogonal", "orthogonal"])
def test_orthogonal_kernels_have_sigma_w_times_orthogonal_zero_mode(kernel):
    net = models.VanillaCNN(6, 4, kernel_init=kernel, seed=1, dtype=torch.float64)
    sw2 = net.config["sigma_w2"]
    mats = zeromode.zero_mode_matrices(net.deep_parameters()[0])
    for m in mats:
        np.testing.assert_allclose(m @ m.T / sw2, np.eye(6), atol=1e-10)


def test_prediction_is_exact_for_a_network_in_its_linear_regime():
    # no biases and tiny images: every tanh works at slope 1 to ~1e-10, so the pooled features are the product of
    # the zero-mode matrices applied to the pooled stem output
    net = models.VanillaCNN(5, 6, kernel_init="gaussian", v=models.gs_profile(2), seed=3, dtype=torch.float64)
    with torch.no_grad():
        for conv in net.stem:
            conv.bias.zero_()
        net.block.bias.zero_()
    x = 1e-5 * torch.randn(20, 1, 28, 28, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    pooled, predicted = zeromode.pooled_and_zero_mode_prediction(net, x)
    assert pooled.shape == predicted.shape == (20, 5)
    np.testing.assert_allclose(pooled, predicted, rtol=1e-6, atol=1e-18)
    assert zeromode.unexplained_fraction(pooled, predicted) < 1e-10


def test_unexplained_fraction_is_the_least_squares_residual_of_one_gain():
    rng = np.random.default_rng(0)
    p = rng.standard_normal((30, 4)) + 5.0
    q = 0.3 * p + 0.2 * rng.standard_normal((30, 4)) - 2.0
    pc, qc = p - p.mean(0), q - q.mean(0)
    a, res, *_ = np.linalg.lstsq(qc.reshape(-1, 1), pc.ravel(), rcond=None)
    assert zeromode.unexplained_fraction(p, q) == pytest.approx(float(res[0]) / np.sum(pc**2), rel=1e-12)
    assert zeromode.unexplained_fraction(p, -7 * p + 1) == pytest.approx(0.0, abs=1e-14)
    # a prediction orthogonal to the truth explains nothing
    p2 = np.array([[1.0, 0.0], [-1.0, 0.0]])
    q2 = np.array([[0.0, 1.0], [0.0, -1.0]])
    assert zeromode.unexplained_fraction(p2, q2) == pytest.approx(1.0)


def test_bad_input_raises():
    with pytest.raises(ValueError, match="shape"):
        zeromode.zero_mode_matrices(np.ones((3, 3, 3)))
    with pytest.raises(ValueError, match="finite"):
        zeromode.zero_mode_matrices(np.full((1, 2, 2, 3, 3), np.nan))
    with pytest.raises(ValueError, match="n >= 2"):
        zeromode.unexplained_fraction(np.ones((1, 3)), np.ones((1, 3)))
    with pytest.raises(ValueError, match="n >= 2"):
        zeromode.unexplained_fraction(np.ones((4, 3)), np.ones((4, 2)))
    with pytest.raises(ValueError, match="vary"):
        zeromode.unexplained_fraction(np.ones((4, 3)), np.arange(12.0).reshape(4, 3))
    with pytest.raises(ValueError, match="finite"):
        zeromode.unexplained_fraction(np.full((4, 3), np.inf), np.ones((4, 3)))
    with pytest.raises(ValueError, match="deep block"):
        zeromode.pooled_and_zero_mode_prediction(models.VanillaCNN(4, 0, seed=0), torch.zeros(2, 1, 28, 28))
    with pytest.raises(ValueError, match="VanillaCNN"):
        zeromode.pooled_and_zero_mode_prediction(torch.nn.Linear(2, 2), torch.zeros(2, 2))
    with pytest.raises(ValueError, match="input must have shape"):
        zeromode.pooled_and_zero_mode_prediction(models.VanillaCNN(4, 2, seed=0), torch.zeros(2, 1, 20, 20))
