"""Tests for signalprop.vnitrain: one SGD step with given output gradients (Chang 2019, Fig. 3.6).

Oracles: a hand-written NumPy back-propagation through a tiny tanh network (the chain rule written out),
central finite differences of the cost sum(y * G), and the exact rescaling of the step by 1/M for "mean".
"""

import numpy as np
import pytest
import torch
from signalprop import fcnet, vnitrain


def tiny(seed: int = 0, readout: bool = False) -> fcnet.FCNet:
    return fcnet.FCNet(3, 2, "tanh", "gaussian", sigma_w2=1.5, in_features=4, out_features=2 if readout else None,
                       seed=seed, dtype=torch.float64)


def batch(m: int = 5, n_in: int = 4, n_out: int = 3, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.standard_normal((m, n_in))), torch.from_numpy(rng.standard_normal((m, n_out)))


def numpy_gradients(weights, biases, x, g):
    """dCost/dW_l and dCost/db_l of Cost = sum(x_L * G) for x_l = tanh(x_{l-1} W_l^T + b_l), by hand."""
    acts = [x]
    for w, b in zip(weights, biases, strict=True):
        acts.append(np.tanh(acts[-1] @ w.T + b))
    delta = g * (1 - acts[-1] ** 2)                      # dCost/dh_L
    grads_w, grads_b = [None] * len(weights), [None] * len(weights)
    for layer in range(len(weights) - 1, -1, -1):
        grads_w[layer] = delta.T @ acts[layer]            # sum over the batch
        grads_b[layer] = delta.sum(axis=0)
        if layer > 0:
            delta = (delta @ weights[layer]) * (1 - acts[layer] ** 2)
    return grads_w, grads_b


def test_step_equals_hand_written_backpropagation():
    net = tiny()
    with torch.no_grad():  # non-zero biases, so that their gradient is tested too
        for k, layer in enumerate(net.layers):
            layer.bias.copy_(torch.linspace(-0.3, 0.2 + 0.1 * k, 3, dtype=torch.float64))
    x, g = batch()
    weights = [layer.weight.detach().numpy().copy() for layer in net.layers]
    biases = [layer.bias.detach().numpy().copy() for layer in net.layers]
    gw, gb = numpy_gradients(weights, biases, x.numpy(), g.numpy())
    lr = 0.05
    vnitrain.output_gradient_step(net, x, g, lr)
    for layer, w, b, dw, db in zip(net.layers, weights, biases, gw, gb, strict=True):
        np.testing.assert_allclose(layer.weight.detach().numpy(), w - lr * dw, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(layer.bias.detach().numpy(), b - lr * db, rtol=1e-12, atol=1e-14)


def test_step_matches_finite_differences_of_the_cost_with_a_readout():
    net = tiny(seed=2, readout=True)
    x, g = batch(n_out=2, seed=3)
    before = [p.detach().clone() for p in net.parameters()]

    def cost(params) -> float:
        with torch.no_grad():
            for p, v in zip(net.parameters(), params, strict=True):
                p.copy_(v)
            return float((net(x) * g).sum())

    eps, lr = 1e-6, 1e-3
    expected = []
    for k, p0 in enumerate(before):
        grad = torch.zeros_like(p0)
        for idx in np.ndindex(*p0.shape):
            plus = [q.clone() for q in before]
            minus = [q.clone() for q in before]
            plus[k][idx] += eps
            minus[k][idx] -= eps
            grad[idx] = (cost(plus) - cost(minus)) / (2 * eps)
        expected.append(p0 - lr * grad)
    returned_cost = cost(before)
    got_cost = vnitrain.output_gradient_step(net, x, g, lr)
    assert got_cost == pytest.approx(returned_cost, rel=1e-12)
    for p, e in zip(net.parameters(), expected, strict=True):
        np.testing.assert_allclose(p.detach().numpy(), e.numpy(), rtol=0, atol=1e-11)


def test_mean_reduction_is_the_sum_step_with_the_rate_divided_by_the_batch_size():
    x, g = batch(m=8, seed=4)
    a, b = tiny(seed=5), tiny(seed=5)
    vnitrain.output_gradient_step(a, x, g, 0.08, reduction="mean")
    vnitrain.output_gradient_step(b, x, g, 0.01, reduction="sum")
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        np.testing.assert_allclose(p.detach().numpy(), q.detach().numpy(), rtol=1e-13, atol=1e-15)


def test_grad_fields_are_left_untouched():
    net = tiny()
    x, g = batch()
    vnitrain.output_gradient_step(net, x, g, 0.1)
    assert all(p.grad is None for p in net.parameters())


def test_rejects_a_model_that_is_not_an_fcnet():
    x, g = batch()
    with pytest.raises(ValueError, match="FCNet"):
        vnitrain.output_gradient_step(torch.nn.Linear(4, 3), x, g, 0.1)


def test_rejects_an_unknown_reduction():
    x, g = batch()
    with pytest.raises(ValueError, match="reduction"):
        vnitrain.output_gradient_step(tiny(), x, g, 0.1, reduction="max")


@pytest.mark.parametrize("lr", [0.0, -1e-3, float("nan"), float("inf"), "fast", True])
def test_rejects_a_bad_learning_rate(lr):
    x, g = batch()
    with pytest.raises(ValueError, match="lr"):
        vnitrain.output_gradient_step(tiny(), x, g, lr)


def test_rejects_inputs_of_the_wrong_shape():
    _, g = batch()
    with pytest.raises(ValueError, match="x must"):
        vnitrain.output_gradient_step(tiny(), torch.zeros(5, 3, dtype=torch.float64), g, 0.1)


def test_rejects_output_gradients_of_the_wrong_shape():
    x, _ = batch()
    with pytest.raises(ValueError, match="grad_output"):
        vnitrain.output_gradient_step(tiny(), x, torch.zeros(5, 2, dtype=torch.float64), 0.1)


def test_rejects_non_finite_data():
    x, g = batch()
    g[0, 0] = float("nan")
    with pytest.raises(ValueError, match="finite"):
        vnitrain.output_gradient_step(tiny(), x, g, 0.1)
