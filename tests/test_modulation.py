"""Tests of signalprop.modulation: the error modulation of Xie, Xiong & Pu (2017), §3.3, on a small chain.

The chain is a tanh perceptron whose layers have very different scales, so that the back-propagated
errors differ from layer to layer; the moments are checked against gradients taken by autograd on
the layers' outputs (``retain_grad``) and against NumPy.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from signalprop import modulation as M


class Chain(torch.nn.Module):
    """``L`` tanh layers of width 12 with gains 0.5..2, each output attached to the modulator."""

    def __init__(self, n_layers: int = 5, **kwargs) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        gains = np.linspace(0.5, 2.0, n_layers)
        self.weights = torch.nn.ParameterList(
            torch.nn.Parameter(float(a) * torch.randn(12, 12, generator=g, dtype=torch.float64) / 12**0.5)
            for a in gains
        )
        self.modulator = M.ErrorModulator(n_layers, **kwargs)
        self.outputs: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.modulator.begin()
        self.outputs = []
        for i, w in enumerate(self.weights):
            h = self.modulator.attach(i, x @ w.T)
            h.retain_grad()  # the gradient autograd leaves in h.grad is the one after the hooks
            self.outputs.append(h)
            x = torch.tanh(h)
        return x


def data() -> torch.Tensor:
    return torch.randn(16, 12, generator=torch.Generator().manual_seed(1), dtype=torch.float64)


def test_second_moment_is_the_mean_square():
    g = torch.randn(3, 4, 5, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    assert float(M.second_moment(g)) == pytest.approx(float(np.mean(g.numpy() ** 2)), rel=1e-14)
    # float32: squares rounded in float32 (relative 6e-8 each), summed in float64
    assert float(M.second_moment(g.float())) == pytest.approx(float(np.mean(g.float().double().numpy() ** 2)), rel=1e-7)
    assert M.second_moment(g.float()).dtype == torch.float64


def test_always_on_gives_every_layer_the_top_moment():
    net = Chain(mismatch=1, modulate_steps=1)
    (net(data()) ** 2).sum().backward()
    q = [float(np.mean(h.grad.numpy() ** 2)) for h in net.outputs]
    np.testing.assert_allclose(q, q[-1], rtol=1e-12)
    moments = net.modulator.moments()
    np.testing.assert_allclose(moments["error_q"], q, rtol=1e-12)
    assert moments["error_ratio"] == pytest.approx(1.0, rel=1e-12)
    assert moments["modulated_layers"] == 4 and moments["error_rho"][-1] == 1.0


def test_off_changes_nothing_and_still_measures():
    x = data()
    plain = Chain(modulate_steps=0)
    assert not plain.modulator.active
    assert plain.modulator.moments()["error_q"] == [None] * 5  # before any backward pass
    (plain(x) ** 2).sum().backward()
    # the same chain without any hook
    ref = Chain(modulate_steps=0)
    h, outs = x, []
    for w in ref.weights:
        o = h @ w.T
        o.retain_grad()
        outs.append(o)
        h = torch.tanh(o)
    (h**2).sum().backward()
    for a, b in zip(plain.weights, ref.weights, strict=True):
        assert torch.equal(a.grad, b.grad)
    q = [float(np.mean(o.grad.numpy() ** 2)) for o in outs]
    moments = plain.modulator.moments()
    np.testing.assert_allclose(moments["error_q"], q, rtol=1e-12)
    assert moments["error_q_raw"] == moments["error_q"] and moments["modulated_layers"] == 0
    assert max(q) / min(q) > 2  # the layers did differ


def test_schedule():
    mod = M.ErrorModulator(3, modulate_steps=3)
    states = []
    for step in (0, 2, 3, 10):
        mod.before_step(step)
        states.append(mod.active)
    assert states == [True, True, False, False]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_layers": 0}, "n_layers must be an integer >= 1"),
        ({"n_layers": 3, "mismatch": 0.9}, "mismatch must be a finite number >= 1"),
        ({"n_layers": 3, "modulate_steps": 1.5}, "modulate_steps must be an integer >= 0"),
    ],
)
def test_bad_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        M.ErrorModulator(**kwargs)


def test_bad_index_raises():
    with pytest.raises(ValueError, match="index must be in 0..2"):
        M.ErrorModulator(3).attach(3, torch.zeros(2, requires_grad=True))


def test_bad_gradient_raises():
    with pytest.raises(ValueError, match="non-empty floating-point tensor"):
        M.second_moment(torch.zeros(0))
