"""Tests of the depth-scaled training parameterisation: read-out scale, per-group rates, kernel traces,
frozen groups, training statistics and the held-out subset.

Oracles are independent of the code under test: closed forms (a linear block, the read-out's gradient),
the reference layer-stack implementation of the deep block (autograd through ``CircularConv2d``), and
exact equality of parameters that must not move.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from signalprop import experiment, models, report, train
from signalprop import parameterisation as P


def _images(n: int, seed: int = 0, scale: float = 1.0) -> torch.Tensor:
    return scale * torch.randn(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed))


def _labels(n: int) -> torch.Tensor:
    return torch.arange(n) % 10


# --- read-out scale ------------------------------------------------------------------------------


def test_readout_scale_gives_unit_mean_square_features():
    net = models.VanillaCNN(6, 5, seed=0)
    x = _images(40)
    g = P.readout_scale(net, x, batch_size=7)
    scaled = models.VanillaCNN(6, 5, seed=0, readout_scale=g)
    with torch.no_grad():
        feats = scaled.features(x).double() * g
    assert float((feats**2).mean()) == pytest.approx(1.0, rel=1e-5)
    # the model applies it in front of the read-out, and nowhere else
    with torch.no_grad():
        expected = scaled.readout(scaled.features(x) * g)
        assert torch.allclose(scaled(x), expected)
        assert torch.equal(scaled.features(x), net.features(x))


@pytest.mark.parametrize("bad", [0.0, -1.0, float("inf"), float("nan"), "2", True])
def test_bad_readout_scale_raises(bad):
    with pytest.raises(ValueError, match="readout_scale"):
        models.VanillaCNN(4, 2, seed=0, readout_scale=bad)


def test_readout_scale_bad_input_raises():
    net = models.VanillaCNN(4, 2, seed=0)
    with pytest.raises(ValueError, match="tensor"):
        P.readout_scale(net, torch.zeros(3, 28, 28))
    with pytest.raises(ValueError, match="batch_size"):
        P.readout_scale(net, _images(4), batch_size=0)
    with pytest.raises(ValueError, match="features"):
        P.readout_scale(torch.nn.Linear(3, 3), _images(4))


def test_auto_readout_scale_is_measured_on_the_calibration_images():
    x = _images(600)
    cfg = {"depth": 3, "channels": 4, "seed": 2, "readout_scale": "auto"}
    net = experiment.build_experiment_model(cfg, 0, "cpu", calibration=x)
    plain = models.build_model({**cfg, "readout_scale": 1.0})
    with torch.no_grad():
        ms = float((plain.features(x[: P.CALIBRATION_IMAGES]).double() ** 2).mean())
    assert net.readout_scale == pytest.approx(1 / math.sqrt(ms), rel=1e-9)
    assert net.config["readout_scale"] == net.readout_scale
    with pytest.raises(ValueError, match="calibration"):
        experiment.build_experiment_model(cfg, 0, "cpu")
    with pytest.raises(ValueError, match="resolved"):
        models.build_model(cfg)


def test_readout_scale_is_left_out_of_the_defaults():
    # stored jobs hash their configurations: a new key with its default must not change them
    assert "readout_scale" not in models.model_config_defaults()
    assert "readout_scale" not in models.model_config_for_dataset("fashion-mnist")


# --- groups and rates ----------------------------------------------------------------------------


@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("depth", [0, 3])
def test_parameter_groups_partition_the_parameters(fast, depth):
    net = models.VanillaCNN(4, depth, seed=0, fast=fast)
    groups = net.parameter_groups()
    assert tuple(groups) == P.GROUPS
    ids = [id(p) for ps in groups.values() for p in ps]
    assert len(ids) == len(set(ids))
    assert set(ids) == {id(p) for p in net.parameters()}
    assert sum(p.numel() for p in groups["block_weight"]) == depth * 4 * 4 * 9
    assert sum(p.numel() for p in groups["block_bias"]) == depth * 4


def test_depth_scaled_rates_closed_form():
    r = P.depth_scaled_rates(100, 1e-2)
    assert r == {"stem": 1e-2, "block_weight": 1e-2 / 900, "block_bias": 0.0, "readout": 1e-2}
    assert P.depth_scaled_rates(7, 0.5, kernel_size=5)["block_weight"] == pytest.approx(0.5 / (25 * 7))
    assert P.depth_scaled_rates(0, 1e-2)["block_weight"] == 0.0


def test_variant_rates_freeze_only_the_block_in_the_control():
    trained = P.variant_rates(50, 1e-2, "trained")
    frozen = P.variant_rates(50, 1e-2, "frozen")
    assert trained == {"stem": 1e-2, "block_weight": 1e-2 / 450, "block_bias": 0.0, "readout": 1e-2}
    assert frozen == {"stem": 1e-2, "block_weight": 0.0, "block_bias": 0.0, "readout": 1e-2}
    with pytest.raises(ValueError, match="variant"):
        P.variant_rates(50, 1e-2, "demo")
    with pytest.raises(ValueError, match="depth"):
        P.variant_rates(-1, 1e-2, "frozen")


@pytest.mark.parametrize(
    "args, match",
    [((-1, 1e-2), "depth"), ((2.5, 1e-2), "depth"), ((3, 0.0), "base_lr"), ((3, float("nan")), "base_lr"),
     ((3, 1e-2, 2), "kernel_size")],
)  # fmt: skip
def test_depth_scaled_rates_bad_input(args, match):
    with pytest.raises(ValueError, match=match):
        P.depth_scaled_rates(*args)


@pytest.mark.parametrize(
    "rates, match",
    [([1, 2], "mapping"), ({"stem": 1.0}, "exactly"), (dict.fromkeys(P.GROUPS, -1.0), ">= 0"),
     (dict.fromkeys(P.GROUPS, float("inf")), ">= 0"), ({**dict.fromkeys(P.GROUPS, 0.1), "extra": 0.1}, "exactly")],
)  # fmt: skip
def test_bad_group_rates_raise(rates, match):
    with pytest.raises(ValueError, match=match):
        P.check_group_rates(rates)
    with pytest.raises(ValueError, match=match):
        train.TrainConfig(lr_groups=rates)


# --- kernel traces -------------------------------------------------------------------------------


def test_ntk_traces_match_the_reference_block_and_the_readout_closed_form():
    net = models.VanillaCNN(3, 4, seed=1, readout_scale=2.5)
    ref = net.converted(fast=False)  # CircularConv2d + tanh layers, plain autograd
    x = _images(3, seed=4)
    traces = P.group_ntk_traces(net, x, logit=2)
    expected = dict.fromkeys(P.GROUPS, 0.0)
    for i in range(3):
        ref.zero_grad()
        ref(x[i : i + 1])[0, 2].backward()
        for g, ps in ref.parameter_groups().items():
            expected[g] += sum(float((p.grad.double() ** 2).sum()) for p in ps) / 3
    for g in P.GROUPS:
        assert traces[g] == pytest.approx(expected[g], rel=1e-4)
    with torch.no_grad():
        p = net.features(x).double()
    assert traces["readout"] == pytest.approx(float((2.5**2 * (p**2).sum(dim=1) + 1).mean()), rel=1e-5)
    # the traces leave requires_grad as it was
    net.block.weight.requires_grad_(False)
    P.group_ntk_traces(net, x[:1])
    assert not net.block.weight.requires_grad


def test_linear_prediction_is_exact_for_a_linear_orthogonal_block():
    # tiny inputs and zero biases: every tanh works at slope 1, so the block is linear and isometric
    net = models.VanillaCNN(4, 6, seed=3, sigma_w2=1.0, sigma_b2=0.0, readout_scale=3.0, dtype=torch.float64)
    x = _images(4, seed=5, scale=1e-4).double()
    traces = P.group_ntk_traces(net, x, logit=1)
    pred = P.linear_ntk_prediction(net, x, logit=1)
    for g in ("block_weight", "block_bias", "readout"):
        assert traces[g] == pytest.approx(pred[g], rel=1e-6)
    # in this limit the isometric forms hold as well: k^2 G^2 |u|^2 sum_l |p_l|^2 with |p_l| = |p_0|
    assert pred["block_weight_isometric"] == pytest.approx(pred["block_weight"], rel=1e-6)
    assert pred["pooled_sum"] == pytest.approx(6 * pred["pooled_in"], rel=1e-6)


def test_ntk_bad_input_raises():
    net = models.VanillaCNN(3, 2, seed=0)
    with pytest.raises(ValueError, match="logit"):
        P.group_ntk_traces(net, _images(1), logit=10)
    with pytest.raises(ValueError, match="logit"):
        P.linear_ntk_prediction(net, _images(1), logit=-1)
    with pytest.raises(ValueError, match="deep block"):
        P.linear_ntk_prediction(models.VanillaCNN(3, 0, seed=0), _images(1))
    with pytest.raises(ValueError, match="parameter_groups"):
        P.group_ntk_traces(_FeaturesOnly(), _images(1))


class _FeaturesOnly(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(784, 10)

    def features(self, x):
        return x.flatten(1)

    def forward(self, x):
        return self.lin(x.flatten(1))


def test_relative_change_closed_form():
    a = {"g": [torch.tensor([3.0, 4.0])], "empty": []}
    b = {"g": [torch.tensor([3.0, 5.0])], "empty": []}
    assert P.relative_change(b, a) == {"g": pytest.approx(0.2), "empty": None}
    with pytest.raises(ValueError, match="groups"):
        P.relative_change({"h": []}, a)
    with pytest.raises(ValueError, match="shapes"):
        P.relative_change({"g": [torch.zeros(3)], "empty": []}, a)


# --- training with groups, statistics and a held-out subset --------------------------------------


def _train(net, rates=None, **kw):
    x, y = _images(64, seed=7), _labels(64)
    xt, yt = _images(40, seed=8), _labels(40)
    cfg = dict(batch_size=8, steps=6, eval_every=2, lr=0.05, lr_groups=rates, **kw)
    return train.train(net, (x, y), (xt, yt), cfg, device="cpu", progress=False)


def test_frozen_groups_do_not_move_and_the_others_do():
    net = models.VanillaCNN(4, 3, seed=0, readout_scale=4.0)
    before = {g: [p.detach().clone() for p in ps] for g, ps in net.parameter_groups().items()}
    rates = {"stem": 0.05, "block_weight": 0.0, "block_bias": 0.0, "readout": 0.05}
    out = _train(net, rates)
    after = net.parameter_groups()
    for g in ("block_weight", "block_bias"):
        assert all(torch.equal(a, b) for a, b in zip(after[g], before[g], strict=True))
        assert all(not p.requires_grad for p in after[g])
    for g in ("stem", "readout"):
        assert not all(torch.equal(a, b) for a, b in zip(after[g], before[g], strict=True))
    final = out["final"]["weight_change"]
    assert final["block_weight"] == 0.0 and final["block_bias"] == 0.0
    assert final["readout"] == pytest.approx(P.relative_change(after, before)["readout"], rel=1e-9)


def test_group_rates_reach_the_optimizer():
    net = models.VanillaCNN(4, 2, seed=0)
    rates = {"stem": 0.1, "block_weight": 0.01, "block_bias": 0.0, "readout": 0.2}
    cfg = train.TrainConfig(lr_groups=rates)
    groups = train._parameter_groups(net, cfg)
    opt = train.make_optimizer([{"params": ps, "lr": rates[g]} for g, ps in groups.items() if rates[g] > 0], cfg)
    assert [pg["lr"] for pg in opt.param_groups] == [0.1, 0.01, 0.2]
    # one step of plain SGD moves the block's kernel by exactly lr * gradient
    net = models.VanillaCNN(4, 2, seed=0)
    w0 = net.block.weight.detach().clone()
    x, y = _images(8, seed=9), _labels(8)
    loss = torch.nn.functional.cross_entropy(net(x), y)
    (grad,) = torch.autograd.grad(loss, [net.block.weight])
    train.train(net, (x, y), None, dict(optimizer="sgd", batch_size=8, steps=1, lr_groups=rates), device="cpu")
    assert torch.allclose(net.block.weight.detach(), w0 - 0.01 * grad, atol=1e-7)


def test_lr_groups_need_a_model_with_groups():
    with pytest.raises(ValueError, match="parameter_groups"):
        _train(_FeaturesOnly(), dict.fromkeys(P.GROUPS, 0.1))


def test_history_records_statistics_and_the_held_out_subset():
    net = models.VanillaCNN(4, 3, seed=0, readout_scale=4.0)
    out = _train(net, P.depth_scaled_rates(3, 0.05), eval_subset=20)
    hist = out["history"]
    assert [h["test_n"] for h in hist] == [20, 20, 20, 40]  # steps 0, 2, 4 on the subset, 6 on all
    assert hist[0]["weight_change"]["stem"] == 0.0
    assert hist[-1]["weight_change"]["block_weight"] > 0
    x_probe = _images(40, seed=8)[: train.PROBE_IMAGES]
    with torch.no_grad():
        ms = float((net.features(x_probe).double() ** 2).mean())
    assert hist[-1]["feature_mean_square"] == pytest.approx(ms, rel=1e-6)
    # the final held-out numbers are those of the whole set
    loss, acc = train.evaluate(net, _images(40, seed=8), _labels(40))
    assert hist[-1]["test_accuracy"] == acc and hist[-1]["test_loss"] == pytest.approx(loss, rel=1e-6)
    with pytest.raises(ValueError, match="eval_subset"):
        _train(models.VanillaCNN(4, 1, seed=0), eval_subset=41)


def test_resumed_run_keeps_the_initial_parameters(tmp_path):
    rates = P.depth_scaled_rates(2, 0.05)
    ref = _train(models.VanillaCNN(4, 2, seed=0), rates, checkpoint_every=0)
    ck = tmp_path / "ck.pt"
    net = models.VanillaCNN(4, 2, seed=0)
    x, y = _images(64, seed=7), _labels(64)
    xt, yt = _images(40, seed=8), _labels(40)
    cfg = dict(batch_size=8, steps=6, eval_every=2, lr=0.05, lr_groups=rates)
    train.train(net, (x, y), (xt, yt), {**cfg, "steps": 6, "checkpoint_every": 3}, checkpoint_path=ck,
                device="cpu")  # fmt: skip
    state = torch.load(ck, weights_only=True)
    assert state["step"] == 6 and set(state["initial"]) == set(P.GROUPS)
    # restart from the step-3 checkpoint: write it by running 3 steps, then continue in a fresh model
    ck.unlink()
    part = models.VanillaCNN(4, 2, seed=0)

    class Stop(Exception):
        pass

    real = train.store.save_checkpoint

    def save_and_stop(path, st):
        real(path, st)
        raise Stop

    train.store.save_checkpoint = save_and_stop
    try:
        with pytest.raises(Stop):
            train.train(part, (x, y), (xt, yt), {**cfg, "checkpoint_every": 3}, checkpoint_path=ck, device="cpu")
    finally:
        train.store.save_checkpoint = real
    resumed = train.train(models.VanillaCNN(4, 2, seed=0), (x, y), (xt, yt), {**cfg, "checkpoint_every": 3},
                          checkpoint_path=ck, device="cpu")  # fmt: skip
    assert resumed["history"] == ref["history"]


def test_cuda_graph_is_operational_and_validated():
    assert "cuda_graph" in train.OPERATIONAL_FIELDS
    with pytest.raises(ValueError, match="cuda_graph"):
        train.TrainConfig(cuda_graph=1)
    # on the CPU the flag changes nothing
    a = _train(models.VanillaCNN(4, 2, seed=0), cuda_graph=True)
    b = _train(models.VanillaCNN(4, 2, seed=0), cuda_graph=False)
    assert a["history"] == b["history"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_cuda_graph_steps_equal_eager_steps():
    def run(graph):
        net = models.VanillaCNN(4, 5, seed=0, device="cuda")
        return _train(net, P.depth_scaled_rates(5, 0.05), cuda_graph=graph, steps=8)

    a, b = run(True), run(False)
    np.testing.assert_allclose([h["train_loss"] or 0 for h in a["history"]],
                               [h["train_loss"] or 0 for h in b["history"]], rtol=1e-5)  # fmt: skip


def test_markdown_table():
    text = report.markdown_table([{"a": "x|y", "b": 1}, {"a": "z", "b": 2.5}])
    assert text.splitlines() == ["| a | b |", "|---|---|", "| x\\|y | 1 |", "| z | 2.5 |"]
    with pytest.raises(ValueError, match="at least one"):
        report.markdown_table([])
    with pytest.raises(ValueError, match="same keys"):
        report.markdown_table([{"a": 1}, {"b": 2}])
