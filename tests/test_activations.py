"""Tests for signalprop.activations."""

import numpy as np
import pytest
import torch
from scipy import special
from signalprop import activations

X = np.linspace(-3.0, 3.0, 41) + 0.013  # avoid the kinks at 0 and +-1


@pytest.mark.parametrize("name", ["tanh", "erf", "relu", "hardtanh", "linear"])
def test_derivatives_match_finite_differences(name):
    act = activations.get(name)
    h = 1e-5
    np.testing.assert_allclose(act.dphi(X), (act.phi(X + h) - act.phi(X - h)) / (2 * h), atol=1e-8)
    np.testing.assert_allclose(act.d2phi(X), (act.dphi(X + h) - act.dphi(X - h)) / (2 * h), atol=1e-6)


@pytest.mark.parametrize("name", ["tanh", "erf", "relu", "hardtanh", "linear"])
def test_numpy_and_torch_forms_agree(name):
    act = activations.get(name)
    np.testing.assert_allclose(act.torch_fn(torch.from_numpy(X)).numpy(), act.phi(X), rtol=1e-14)


def test_tanh_derivative_is_finite_for_large_arguments():
    assert activations.TANH.dphi(np.array([800.0]))[0] == 0.0


def test_autograd_derivatives_of_a_user_callable():
    act = activations.from_callable(torch.sin)
    np.testing.assert_allclose(act.phi(X), np.sin(X), rtol=1e-14)
    np.testing.assert_allclose(act.dphi(X), np.cos(X), rtol=1e-14)
    np.testing.assert_allclose(act.d2phi(X), -np.sin(X), rtol=1e-13, atol=1e-15)
    linear = activations.from_callable(lambda x: 3 * x)
    np.testing.assert_allclose(linear.d2phi(X), 0.0)
    np.testing.assert_allclose(linear.dphi(X), 3.0)


def test_get_resolves_names_objects_and_known_functions():
    assert activations.get("TANH") is activations.TANH
    assert activations.get(activations.ERF) is activations.ERF
    assert activations.get(np.tanh) is activations.TANH
    assert activations.get(special.erf) is activations.ERF
    assert activations.get(torch.relu) is activations.RELU


def test_bad_activations_are_rejected():
    with pytest.raises(ValueError, match="unknown activation 'softsign'"):
        activations.get("softsign")
    with pytest.raises(ValueError, match="torch tensors"):
        activations.get(lambda x: np.maximum(x.detach().numpy(), 0) + np.exp(x))  # not differentiable
    with pytest.raises(ValueError, match="shape"):
        activations.get(lambda x: x.sum())
    with pytest.raises(ValueError, match="callable"):
        activations.from_callable(3.0)


def test_closed_form_moments_agree_with_quadrature():
    for act in (activations.ERF, activations.LINEAR):
        quad = activations.from_callable(act.torch_fn)
        for s in [(1.0, 0.5, 0.3), (2.0, 2.0, -1.2)]:
            assert act.cross_moment(*s) == pytest.approx(quad.cross_moment(*s), rel=1e-10)
            assert act.derivative_cross_moment(*s) == pytest.approx(quad.derivative_cross_moment(*s), rel=1e-10)
