"""Tests of signalprop.plainnet: He et al. (2016)'s 6n+2 CIFAR networks with Xie, Xiong & Pu (2017)'s rules.

Everything runs on tiny networks (n = 1, width multiplier 0.25-1) and a few small images.  The
architecture is checked against a functional forward pass written here from the description, the
initialisations against their laws, the regularisers against NumPy, and the error modulation against
moments measured by separate module hooks.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from signalprop import experiment as E
from signalprop import plainnet as P
from signalprop import train as T
from torch import nn


def images(batch: int = 6, channels: int = 1, size: int = 8, seed: int = 0, dtype=torch.float64) -> torch.Tensor:
    return torch.randn(batch, channels, size, size, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def reference_forward(net: P.PlainNet, x: torch.Tensor) -> torch.Tensor:
    """The network written from its description with functional operations (training-mode batch norm)."""

    def triple(conv: nn.Conv2d, bn: nn.BatchNorm2d, h: torch.Tensor, relu: bool = True) -> torch.Tensor:
        h = F.conv2d(h, conv.weight, None, conv.stride, 1)
        h = F.batch_norm(h, None, None, bn.weight, bn.bias, True, 0.0, 1e-5)
        return F.relu(h) if relu else h

    h = triple(net.convs[0], net.bns[0], x)
    if net.plain:
        for conv, bn in zip(net.convs[1:], net.bns[1:], strict=True):
            h = triple(conv, bn, h)
    else:
        for first in range(1, len(net.convs), 2):
            a = triple(net.convs[first], net.bns[first], h)
            a = triple(net.convs[first + 1], net.bns[first + 1], a, relu=False)
            if net.convs[first].in_channels != net.convs[first].out_channels:
                proj = net.projections[str(first)]
                h = triple(proj[0], proj[1], h, relu=False) + a
            else:
                h = h + a
            h = F.relu(h)
    return F.linear(h.mean(dim=(2, 3)), net.fc.weight, net.fc.bias)


def loss_grads(net: P.PlainNet, x: torch.Tensor, y: torch.Tensor, reference: bool = False) -> list[torch.Tensor]:
    logits = reference_forward(net, x) if reference else net(x)
    return list(torch.autograd.grad(F.cross_entropy(logits, y), list(net.parameters())))


def labels(batch: int = 6, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, 10, (batch,), generator=torch.Generator().manual_seed(seed))


# --- architecture -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 3])
@pytest.mark.parametrize("plain", [True, False])
def test_depth_is_6n_plus_2_parametric_layers(n, plain):
    net = P.PlainNet(n, 0.25, plain=plain)
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    projections = 0 if plain else 2  # stages 2 and 3 change the number of feature maps
    assert len(convs) == 6 * n + 1 + projections
    assert len(linears) == 1
    assert net.depth == len(net.convs) + 1 == 6 * n + 2
    assert sum(isinstance(m, nn.BatchNorm2d) for m in net.modules()) == len(convs)
    # widths and strides: 2n convolutions per stage, stride 2 at the first of stages 2 and 3
    assert [c.out_channels for c in net.convs] == [4] + [4] * 2 * n + [8] * 2 * n + [16] * 2 * n
    strides = [c.stride[0] for c in net.convs]
    assert [i for i, s in enumerate(strides) if s == 2] == [1 + 2 * n, 1 + 4 * n]
    assert all(c.kernel_size == (3, 3) and c.bias is None for c in convs)


@pytest.mark.parametrize(
    ("channels", "size", "width", "plain"), [(1, 28, 0.25, True), (3, 8, 0.5, False), (3, 7, 0.25, False)]
)
def test_forward_matches_the_description(channels, size, width, plain):
    net = P.PlainNet(1, width, plain=plain, in_channels=channels, image_size=size, classes=7, seed=2,
                     dtype=torch.float64)  # fmt: skip
    x = images(5, channels, size)
    out = net(x)
    assert out.shape == (5, 7)
    torch.testing.assert_close(out, reference_forward(net, x), rtol=1e-12, atol=1e-12)


def test_residual_differs_only_by_the_projection_shortcuts():
    plain, res = P.PlainNet(3, 0.5, seed=4), P.PlainNet(3, 0.5, plain=False, seed=4)
    ps, rs = plain.state_dict(), res.state_dict()
    extra = sorted(set(rs) - set(ps))
    assert set(ps) <= set(rs)
    assert all(k.startswith("projections.") for k in extra)
    for k, v in ps.items():  # the same seed draws the same main path
        assert torch.equal(v, rs[k]), k
    # projections exactly at the blocks whose first convolution changes the number of feature maps
    changing = [str(i) for i in range(1, len(res.convs), 2) if res.convs[i].in_channels != res.convs[i].out_channels]
    assert changing == ["7", "13"] and list(res.projections.keys()) == changing
    for key in changing:
        conv, main = res.projections[key][0], res.convs[int(key)]
        assert (conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride) == (
            main.in_channels, main.out_channels, (3, 3), (2, 2))  # fmt: skip
        assert isinstance(res.projections[key][1], nn.BatchNorm2d)
    assert len(plain.projections) == 0


# --- initialisation ---------------------------------------------------------------------------------------------------


def test_msra_is_gaussian_with_variance_two_over_fan_in():
    net = P.PlainNet(1, 1.0, plain=False, seed=5)
    layers = [m for m in net.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    z = []
    for m in layers:
        w = m.weight.detach().double().numpy()
        fan_in = w.shape[1] * (w.shape[2] * w.shape[3] if w.ndim == 4 else 1)
        z.append((w * math.sqrt(fan_in / 2.0)).ravel())
        # per layer, the variance of k standard normals has sd sqrt(2/k): 5 sd
        assert np.mean(z[-1] ** 2) == pytest.approx(1.0, abs=5 * math.sqrt(2 / z[-1].size) + 1e-12)
    z = np.concatenate(z)
    assert abs(np.mean(z)) < 5 / math.sqrt(z.size)
    assert np.var(z) == pytest.approx(1.0, abs=5 * math.sqrt(2 / z.size))
    assert np.mean(z**4) == pytest.approx(3.0, abs=5 * math.sqrt(96 / z.size))  # Gaussian kurtosis
    assert torch.equal(net.fc.bias, torch.zeros(10))


def _groups(f_in: int, f_out: int) -> list[tuple[int, int]]:
    return [(s, min(s + f_in, f_out)) for s in range(0, f_out, f_in)]


@pytest.mark.parametrize(("dtype", "tol"), [(torch.float32, 1e-6), (torch.float64, 1e-10)])
def test_orthonormal_init_is_orthonormal_per_group(dtype, tol):
    net = P.PlainNet(1, 1.0, plain=False, init="orthonormal", seed=6, dtype=dtype)
    grouped = 0
    for m in [mod for mod in net.modules() if isinstance(mod, nn.Conv2d | nn.Linear)]:
        w = m.weight.detach().double().numpy()
        mat = w.reshape(w.shape[0], -1).T  # (f_in, f_out), one filter per column
        f_in, f_out = mat.shape
        grouped += f_in < f_out
        for a, b in _groups(f_in, f_out):
            np.testing.assert_allclose(mat[:, a:b].T @ mat[:, a:b], np.eye(b - a), rtol=0, atol=tol)
    assert grouped == 1  # the stem: f_in = 9 < f_out = 16, groups of 9 and 7 filters


def test_seed_is_private_and_reproducible():
    state = torch.random.get_rng_state()
    a, b = P.PlainNet(1, 0.25, seed=7), P.PlainNet(1, 0.25, seed=7)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    c = P.PlainNet(1, 0.25, seed=8)
    assert not torch.equal(a.convs[1].weight, c.convs[1].weight)


# --- regularisers -----------------------------------------------------------------------------------------------------


def _weights_np(net: P.PlainNet) -> list[np.ndarray]:
    return [m.weight.detach().double().numpy() for m in net.modules() if isinstance(m, nn.Conv2d | nn.Linear)]


def test_l2_regulariser_is_half_lambda_sum_of_squares():
    net = P.PlainNet(1, 0.5, plain=False, regularizer="l2", lam=3e-4, seed=9, dtype=torch.float64)
    expected = 0.5 * 3e-4 * sum(float(np.sum(w**2)) for w in _weights_np(net))
    assert float(net.regularization_loss().detach()) == pytest.approx(expected, rel=1e-12)


def test_orthonormal_regulariser_is_eq3_per_group():
    # msra weights are far from orthonormal; the stem of k = 1 (f_in = 9 < 16 filters) is penalised per group
    net = P.PlainNet(1, 1.0, plain=False, init="msra", regularizer="orthonormal", lam=2e-4, seed=10,
                     dtype=torch.float64)  # fmt: skip
    total = 0.0
    for w in _weights_np(net):
        mat = w.reshape(w.shape[0], -1).T
        for a, b in _groups(*mat.shape):
            total += np.sum((mat[:, a:b].T @ mat[:, a:b] - np.eye(b - a)) ** 2)
    loss = net.regularization_loss()
    assert float(loss.detach()) == pytest.approx(0.5 * 2e-4 * total, rel=1e-12)
    loss.backward()
    assert net.fc.weight.grad is not None and float(net.fc.weight.grad.abs().sum()) > 0  # the fc layer is included
    # the orthonormal initialisation is the regulariser's minimum
    ortho = P.PlainNet(1, 1.0, plain=False, init="orthonormal", regularizer="orthonormal", seed=10,
                       dtype=torch.float64)  # fmt: skip
    assert float(ortho.regularization_loss().detach()) < 1e-24


@pytest.mark.parametrize("regularizer", ["l2", "orthonormal"])
def test_regulariser_of_non_finite_weights_is_not_finite(regularizer):
    net = P.PlainNet(1, 0.25, regularizer=regularizer)
    with torch.no_grad():
        net.convs[2].weight[0, 0, 0, 0] = float("inf")
    assert not math.isfinite(float(net.regularization_loss().detach()))  # a divergence for the loop, not an error


def test_filter_correlation_statistic():
    net = P.PlainNet(1, 0.5, plain=False, seed=11, dtype=torch.float64)
    num, count = 0.0, 0
    for m in [mod for mod in net.modules() if isinstance(mod, nn.Conv2d)]:  # all convolutions, no fc
        w = m.weight.detach().numpy()
        v = w.reshape(w.shape[0], -1)
        v = v / np.linalg.norm(v, axis=1, keepdims=True)
        cos = v @ v.T
        iu = np.triu_indices(len(v), k=1)
        num, count = num + cos[iu].sum(), count + len(iu[0])
    assert net.probe_statistics(None)["filter_correlation"] == pytest.approx(num / count, rel=1e-12)


# --- modulation -------------------------------------------------------------------------------------------------------


def _measure(net: P.PlainNet, x: torch.Tensor, y: torch.Tensor) -> tuple[list[float], list[float]]:
    """Second moments of dl/d(conv output) after modulation (conv hooks) and before it (batch-norm hooks)."""
    passed: dict[int, float] = {}
    raw: dict[int, float] = {}
    handles = []
    for i, (conv, bn) in enumerate(zip(net.convs, net.bns, strict=True)):

        def on_conv(module, grad_in, grad_out, i=i):
            passed[i] = float(np.mean(grad_out[0].detach().double().numpy() ** 2))

        def on_bn(module, grad_in, grad_out, i=i):
            raw[i] = float(np.mean(grad_in[0].detach().double().numpy() ** 2))

        handles += [conv.register_full_backward_hook(on_conv), bn.register_full_backward_hook(on_bn)]
    try:
        # the input needs a gradient for the stem's hook to see one
        F.cross_entropy(net(x.requires_grad_(True)), y).backward()
    finally:
        for h in handles:
            h.remove()
    return [passed[i] for i in range(len(net.convs))], [raw[i] for i in range(len(net.convs))]


@pytest.mark.parametrize("plain", [True, False])
def test_modulation_always_on_equalises_every_layer_with_the_top(plain):
    net = P.PlainNet(1, 0.25, plain=plain, image_size=16, modulate_steps=1, mismatch=1, seed=12)  # float32
    net.before_step(0)
    passed, raw = _measure(net, images(8, size=16, dtype=torch.float32), labels(8))
    np.testing.assert_allclose(passed, passed[-1], rtol=1e-5)
    assert max(raw) / min(raw) > 1.05  # the raw moments did differ
    stats = net.probe_statistics(None)
    np.testing.assert_allclose(stats["error_q_raw"], raw, rtol=1e-5)
    np.testing.assert_allclose(stats["error_q"], passed, rtol=1e-5)
    assert stats["error_ratio"] == pytest.approx(1.0, rel=1e-5)
    np.testing.assert_allclose(stats["error_rho"], np.sqrt(np.array(passed) / np.array(raw)), rtol=1e-5)


def test_modulation_follows_the_mismatch_rule():
    mismatch = 1.15
    net = P.PlainNet(1, 0.25, image_size=16, modulate_steps=1, mismatch=mismatch, seed=13, dtype=torch.float64)
    passed, raw = _measure(net, images(8, size=16), labels(8))
    expected = list(raw)
    for lo in range(len(raw) - 2, -1, -1):  # top-down: layer lo is matched to what layer lo + 1 passed on
        ratio = expected[lo + 1] / raw[lo]
        expected[lo] = expected[lo + 1] if max(ratio, 1 / ratio) >= mismatch else raw[lo]
    np.testing.assert_allclose(passed, expected, rtol=1e-10)
    modulated = sum(not math.isclose(p, r, rel_tol=1e-12) for p, r in zip(expected, raw, strict=True))
    assert 0 < modulated < len(raw) - 1  # the rule did act on some layers and not on others
    assert net.probe_statistics(None)["modulated_layers"] == modulated


def test_unmodulated_gradients_are_exactly_those_of_the_network():
    x, y = images(6, size=8), labels(6)
    net = P.PlainNet(1, 0.25, image_size=8, modulate_steps=0, mismatch=1, seed=14, dtype=torch.float64)
    assert not net.modulating
    for g, r in zip(loss_grads(net, x, y), loss_grads(net, x, y, reference=True), strict=True):
        assert torch.equal(g, r)


def test_before_step_switches_modulation_off_after_modulate_steps():
    x, y = images(6, size=8), labels(6)
    net = P.PlainNet(1, 0.25, image_size=8, modulate_steps=2, mismatch=1, seed=15, dtype=torch.float64)
    reference = loss_grads(net, x, y, reference=True)
    schedule = []
    for step in range(4):
        net.before_step(step)
        schedule.append(net.modulating)
        same = all(torch.equal(g, r) for g, r in zip(loss_grads(net, x, y), reference, strict=True))
        assert same != net.modulating
    assert schedule == [True, True, False, False]


# --- training through signalprop.train and signalprop.experiment ------------------------------------------------------


def test_three_training_steps_record_the_statistics():
    g = torch.Generator().manual_seed(16)
    train_x, train_y = torch.randn(48, 1, 8, 8, generator=g), torch.randint(0, 10, (48,), generator=g)
    test_x, test_y = torch.randn(20, 1, 8, 8, generator=g), torch.randint(0, 10, (20,), generator=g)
    net = P.build(n=1, width=0.25, image_size=8, init="orthonormal", regularizer="orthonormal", modulate_steps=2,
                  mismatch=1, seed=17)  # fmt: skip
    cfg = {"optimizer": "momentum", "lr": 0.1, "momentum": 0.9, "batch_size": 16, "steps": 3, "eval_every": 1}
    result = T.train(net, (train_x, train_y), (test_x, test_y), cfg, device="cpu", progress=False)
    assert result["status"] == "finished" and [r["step"] for r in result["history"]] == [0, 1, 2, 3]
    first, *records = result["history"]
    assert first["error_q"] == [None] * 7 and first["error_ratio"] is None  # no backward pass yet
    assert all(isinstance(r["filter_correlation"], float) for r in result["history"])
    for r in records[:2]:  # steps 0 and 1: modulated
        np.testing.assert_allclose(r["error_q"], r["error_q"][-1], rtol=1e-5)
        assert r["error_ratio"] == pytest.approx(1.0, rel=1e-5)
    assert records[2]["modulated_layers"] == 0 and records[2]["error_q"] == records[2]["error_q_raw"]
    assert abs(first["filter_correlation"]) < 1e-6  # orthonormal filters: zero correlation within groups


def test_experiment_factory():
    model = {"factory": "signalprop.plainnet:build", "n": 1, "width": 0.25, "plain": False, "seed": 3,
             "init": "orthonormal", "regularizer": "orthonormal", "lam": 1e-4, "modulate_steps": 5,
             "mismatch": 2}  # fmt: skip
    E.check_experiment({"data": {"name": "fashion_mnist"}, "model": model})
    a = E.build_experiment_model(model, seed=0)
    b = E.build_experiment_model(model, seed=1)
    direct = P.PlainNet(1, 0.25, plain=False, init="orthonormal", seed=3)
    for p, q, r in zip(a.parameters(), b.parameters(), direct.parameters(), strict=True):
        assert torch.equal(p, q) and torch.equal(p, r)
    assert isinstance(a, P.PlainNet) and a.modulator.modulate_steps == 5 and a.modulator.mismatch == 2.0


# --- bad input --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n": 0}, "n must be an integer >= 1"),
        ({"n": 1.5}, "n must be an integer >= 1"),
        ({"width": 0.3}, "16 \\* width an integer"),
        ({"width": -1}, "width must be a positive number"),
        ({"plain": "yes"}, "plain must be True or False"),
        ({"in_channels": 0}, "in_channels must be an integer >= 1"),
        ({"image_size": 0}, "image_size must be an integer >= 1"),
        ({"classes": 0}, "classes must be an integer >= 1"),
        ({"init": "xavier"}, "unknown init"),
        ({"regularizer": "l1"}, "unknown regularizer"),
        ({"lam": -1e-4}, "lam must be a finite number >= 0"),
        ({"modulate_steps": -1}, "modulate_steps must be an integer >= 0"),
        ({"mismatch": 0.5}, "mismatch must be a finite number >= 1"),
        ({"seed": -1}, "seed must be an integer >= 0"),
        ({"dtype": "float16"}, "dtype must be"),
        ({"depth": 20}, "unknown plainnet option"),
    ],
)
def test_bad_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        P.build(**{"n": 1, "width": 0.25, **kwargs})


def test_bad_input_shape_raises():
    net = P.PlainNet(1, 0.25, image_size=8)
    with pytest.raises(ValueError, match=r"x must have shape \(batch, 1, 8, 8\)"):
        net(torch.zeros(2, 1, 9, 9))


def test_bad_step_raises():
    with pytest.raises(ValueError, match="step must be an integer >= 0"):
        P.PlainNet(1, 0.25).before_step(-1)
