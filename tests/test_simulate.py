"""Tests for signalprop.simulate: finite networks against explicit loops and the mean-field map."""

import numpy as np
import pytest
import torch
from signalprop import meanfield, simulate


def test_forward_matches_equation_2_1_with_explicit_loops():
    g = torch.Generator().manual_seed(0)
    v = [0.2, 0.5, 0.3]
    net = simulate.sample_random_cnn(2, 3, v, 1.5, 0.1, n_networks=2, generator=g)
    n = 4
    h0 = torch.randn(2, 3, n, generator=g, dtype=torch.float64)
    hs = simulate.forward(net, h0, "tanh")
    for e in range(2):
        h = h0[e].numpy()
        for layer in range(2):
            w = net.weights[layer][e * 3 : (e + 1) * 3].numpy()  # (c_out, c_in, K)
            b = net.biases[layer][e * 3 : (e + 1) * 3].numpy()
            out = np.zeros_like(h)
            for j in range(3):
                for a in range(n):
                    out[j, a] = b[j] + sum(
                        np.tanh(h[i, (a + beta) % n]) * w[j, i, beta + 1] for i in range(3) for beta in (-1, 0, 1)
                    )
            h = out
            np.testing.assert_allclose(hs[layer + 1][e].detach().numpy(), h, rtol=1e-12)


def test_kernel_wider_than_image_wraps_periodically():
    g = torch.Generator().manual_seed(1)
    v = np.full(5, 0.2)
    net = simulate.sample_random_cnn(1, 2, v, 1.0, 0.0, generator=g)
    h0 = torch.randn(1, 2, 3, generator=g, dtype=torch.float64)
    got = simulate.forward(net, h0, "linear")[1][0].detach().numpy()
    w = net.weights[0].numpy()
    expected = np.zeros((2, 3))
    for j in range(2):
        for a in range(3):
            expected[j, a] = sum(
                h0[0, i, (a + beta) % 3].item() * w[j, i, beta + 2] for i in range(2) for beta in range(-2, 3)
            )
    np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_weight_statistics():
    g = torch.Generator().manual_seed(2)
    v = np.array([0.25, 0.5, 0.25])
    net = simulate.sample_random_cnn(1, 200, v, 1.8, 0.3, n_networks=3, generator=g)
    w = net.weights[0]
    # per-entry variance sigma_w2 * v_beta / c, within ~3% (each tap has 120,000 samples)
    np.testing.assert_allclose(w.var(dim=(0, 1)).numpy(), 1.8 * v / 200, rtol=0.03)
    assert net.biases[0].var().item() == pytest.approx(0.3, rel=0.15)


def test_inputs_have_the_requested_covariance():
    g = torch.Generator().manual_seed(3)
    sigma0 = np.array([[1.0, 0.6, 0.1], [0.6, 0.8, 0.3], [0.1, 0.3, 0.5]])
    h0 = simulate.sample_inputs(sigma0, 2000, n_networks=10, generator=g)
    np.testing.assert_allclose(simulate.empirical_covariance(h0), sigma0, atol=0.03)


def test_symmetric_sqrt_matches_schur_square_root():
    """Against scipy's Schur-method sqrtm, including a matrix with a repeated eigenvalue."""
    from scipy.linalg import sqrtm

    n, c = 8, 0.6
    degenerate = (1 - c) * np.eye(n) + c * np.ones((n, n))  # eigenvalue 1 - c, multiplicity n - 1
    rng = np.random.default_rng(5)
    a = rng.standard_normal((n, n))
    for m in (degenerate, a @ a.T / n + 0.1 * np.eye(n)):
        root = simulate.symmetric_sqrt(m)
        np.testing.assert_allclose(root, np.real(sqrtm(m)), atol=1e-12)
        np.testing.assert_allclose(root, root.T, atol=0)


def test_inputs_do_not_depend_on_the_eigenbasis_of_a_repeated_eigenvalue():
    """The samples are z @ S with S the unique symmetric root: the same z gives the same h for any eigenbasis."""
    from scipy.linalg import sqrtm

    n, c = 6, 0.4
    sigma0 = 2.0 * ((1 - c) * np.eye(n) + c * np.ones((n, n)))
    h0 = simulate.sample_inputs(sigma0, 5, n_networks=2, generator=torch.Generator().manual_seed(9))
    z = torch.randn((2, 5, n), generator=torch.Generator().manual_seed(9), dtype=torch.float64).numpy()
    np.testing.assert_allclose(h0.numpy(), z @ np.real(sqrtm(sigma0)), atol=1e-12)


def test_symmetric_sqrt_rejects_non_square_input():
    with pytest.raises(ValueError, match="finite square matrix"):
        simulate.symmetric_sqrt(np.ones((2, 3)))


def test_wide_network_follows_the_covariance_map():
    """One layer of a wide network: the empirical covariance agrees with eq. (2.3) within Monte Carlo error."""
    g = torch.Generator().manual_seed(4)
    n, sw, sb, v = 5, 1.8, 0.05, [1 / 3] * 3
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n))
    sigma0 = a @ a.T / n + 0.2 * np.eye(n)
    theory = meanfield.cnn_covariance_step(sigma0, "tanh", sw, sb, v)
    errors = []
    for c in (64, 1024):
        net = simulate.sample_random_cnn(1, c, v, sw, sb, n_networks=4, generator=g)
        hs = simulate.forward(net, simulate.sample_inputs(sigma0, c, n_networks=4, generator=g), "tanh")
        errors.append(np.abs(simulate.empirical_covariance(hs[1]) - theory).max())
    assert errors[1] < 0.05
    assert errors[1] < errors[0]


def test_gradient_moments_shrink_by_chi_1_per_layer():
    g = torch.Generator().manual_seed(5)
    sw, sb, n, c, depth = 1.2, 0.05, 6, 256, 12
    star = meanfield.fixed_point_covariance("tanh", sw, sb, n)
    net = simulate.sample_random_cnn(depth, c, [1 / 3] * 3, sw, sb, n_networks=4, generator=g)
    h0 = simulate.sample_inputs(star, c, n_networks=4, generator=g)
    m = simulate.gradient_second_moments(net, h0, "tanh", generator=g)
    slope = np.polyfit(np.arange(depth + 1), np.log(m), 1)[0]
    assert np.exp(-slope) == pytest.approx(meanfield.chi_1("tanh", sw, sb), rel=0.03)


def test_same_generator_seed_gives_the_same_network():
    a = simulate.sample_random_cnn(2, 4, [1.0], 1.0, 0.1, generator=torch.Generator().manual_seed(9))
    b = simulate.sample_random_cnn(2, 4, [1.0], 1.0, 0.1, generator=torch.Generator().manual_seed(9))
    assert all(torch.equal(x, y) for x, y in zip(a.weights + a.biases, b.weights + b.biases, strict=False))


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match="depth must be a positive integer"):
        simulate.sample_random_cnn(0, 4, [1.0], 1.0, 0.1)
    with pytest.raises(ValueError, match="odd length"):
        simulate.sample_random_cnn(1, 4, [0.5, 0.5], 1.0, 0.1)
    with pytest.raises(ValueError, match="sigma_b2 is a variance"):
        simulate.sample_random_cnn(1, 4, [1.0], 1.0, -0.1)
    net = simulate.sample_random_cnn(1, 4, [1.0], 1.0, 0.1)
    with pytest.raises(ValueError, match="h0 must have shape"):
        simulate.forward(net, torch.zeros(1, 3, 5, dtype=torch.float64), "tanh")
    with pytest.raises(ValueError, match="positive semi-definite"):
        simulate.sample_inputs(np.array([[1.0, 2.0], [2.0, 1.0]]), 4)
