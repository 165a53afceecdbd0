"""Checks of the presets of Part V's chapters on modulation and Table 2 (Xie, Xiong & Pu 2017, section 5.3, Table 2)
against the paper's stated settings: plain 44- and 110-layer networks (6n + 2, n = 7 and 18), the optimisers of Table 2
with msra init + L2 (lambda = 1e-4), "Ours" = orthonormal init + regulariser + modulation during the first steps, and
He et al. (2016)'s learning rate 0.1, batch 128 and momentum 0.9.  One test trains the smoke runs of "ortho", "ours" and
"isometric" for a few steps and checks that modulation is on exactly where the configuration says."""

from __future__ import annotations

import json

import pytest
import torch
from signalprop import experiment, plainnet, presets, sweep, train
from signalprop.modulation import DEFAULT_MISMATCH
from signalprop.presets import xie2017_modulation as xm


def test_module_is_registered_for_its_chapter():
    assert presets.module_for("xie2017/modulation") is xm
    assert set(xm.DESCRIPTION) == set(presets.PRESETS)


@pytest.mark.parametrize("preset", presets.PRESETS)
def test_every_config_is_a_valid_experiment_with_a_unique_key(preset):
    configs = xm.configs(preset)
    for config in configs:
        experiment.check_experiment(config)
        json.dumps(config)
    keys = [sweep.config_key(c) for c in configs]
    assert len(set(keys)) == len(keys)
    if preset == "smoke":
        assert len(configs) == len(xm.METHODS)
        return
    # the variants are trained at 110 layers only, and the 110-layer runs for DEEP_SEEDS only
    shallow = len(xm.METHODS) - len(xm._DEEP_ONLY)
    assert len(configs) == shallow * len(xm.SEEDS[preset]) + len(xm.METHODS) * len(xm.DEEP_SEEDS[preset])
    assert set(xm.DEEP_SEEDS[preset]) <= set(xm.SEEDS[preset])


@pytest.mark.parametrize("preset", ["cpu", "paper"])
def test_the_paper_settings(preset):
    configs = xm.configs(preset)
    methods = {(c["meta"]["method"], c["meta"]["depth"]) for c in configs}
    assert {m for m, d in methods if d == 44} == set(xm.METHODS) - set(xm._DEEP_ONLY)
    assert {m for m, d in methods if d == 110} == set(xm.METHODS)
    assert set(xm.TABLE2) <= set(xm.METHODS)
    for n, width, depth in {(c["model"]["n"], c["model"]["width"], c["meta"]["depth"]) for c in configs}:
        assert plainnet.PlainNet(n, width).depth == depth in (44, 110)
    for c in configs:
        m, t, method = c["model"], c["train"], c["meta"]["method"]
        assert m["plain"] is True and m["lam"] == 1e-4 and t["batch_size"] == 128 and t["weight_decay"] == 0.0
        assert m["seed"] == t["seed"]
        ortho = method.startswith(("ortho", "ours", "isometric"))
        assert (m["init"], m["regularizer"]) == (("orthonormal", "orthonormal") if ortho else ("msra", "l2"))
        expected_optimizer = {"sgd": "momentum", "nesterov": "nesterov", "adagrad": "adagrad", "adadelta": "adadelta",
                              "adam": "adam", "rmsprop": "rmsprop"}.get(method, "momentum")
        lr = {"adadelta": 1.0, "ortho_lr0.01": 0.01, "ours_lr0.01": 0.01, "sgd_lr0.01": 0.01}.get(method, 0.1)
        assert t["optimizer"] == expected_optimizer
        assert t["lr"] == lr and t["momentum"] == 0.9
        modulate = {"isometric": t["steps"], "ortho": 0, "ortho_lr0.01": 0}.get(
            method, xm.MODULATE_STEPS[preset] if ortho else 0)
        assert m["modulate_steps"] == modulate
        assert m["mismatch"] == {"isometric": 1.0, "ours_mismatch1": 1.0, "ours_mismatch1.2": 1.2}.get(
            method, DEFAULT_MISMATCH)
        assert 0 < xm.MODULATE_STEPS[preset] < t["steps"]
    assert len(xm.DEEP_SEEDS[preset]) >= 2


def test_the_deciding_runs_come_first_in_every_seed():
    configs = xm.configs("cpu")
    first = [(c["meta"]["method"], c["meta"]["depth"], c["train"]["seed"]) for c in configs[:4]]
    assert first == [("ours", 110, 0), ("ortho", 110, 0), ("sgd", 110, 0), ("isometric", 110, 0)]
    seeds = [c["train"]["seed"] for c in configs]
    assert seeds == sorted(seeds)


def test_cpu_and_paper_data_and_widths():
    cpu, paper = xm.configs("cpu"), xm.configs("paper")
    assert {c["data"]["name"] for c in cpu} == {"fashion-mnist"} and all(len(c["data"]) == 1 for c in cpu)
    assert {(c["model"]["in_channels"], c["model"]["image_size"], c["model"]["width"]) for c in cpu} == {(1, 28, 0.25)}
    assert {c["data"]["name"] for c in paper} == {"cifar10"}
    assert {(c["model"]["in_channels"], c["model"]["image_size"], c["model"]["width"]) for c in paper} == {(3, 32, 1.0)}
    assert {c["train"]["steps"] for c in paper} == {32000}


def test_smoke_is_tiny():
    configs = xm.configs("smoke")
    assert len(configs) == len(xm.METHODS)
    for c in configs:
        assert c["data"]["n_train"] <= 250 and c["train"]["steps"] <= 10 and c["model"]["n"] == 1


@pytest.mark.parametrize("method", ["ortho", "ours", "isometric"])
def test_modulation_is_on_exactly_in_the_configured_steps(method):
    (config,) = [c for c in xm.configs("smoke") if c["meta"]["method"] == method]
    g = torch.Generator().manual_seed(0)
    x = torch.randn(60, 1, 28, 28, generator=g)
    y = torch.arange(60) % 10
    model = experiment.build_experiment_model(config["model"], config["train"]["seed"])
    cfg = train.TrainConfig.from_dict({**config["train"], "batch_size": 20, "steps": 4, "eval_every": 1,
                                       "eval_batch_size": 60})
    history = train.train(model, (x, y), (x, y), cfg, device="cpu", progress=False)["history"]
    on = config["model"]["modulate_steps"]
    assert on == {"ortho": 0, "ours": 2, "isometric": 4}[method]
    for h in history[1:]:
        last = h["step"] - 1  # the record after step h["step"] holds the moments of the 0-based step h["step"] - 1
        if last >= on:
            assert h["error_rho"] == [1.0] * len(h["error_q"]) and h["error_q"] == h["error_q_raw"]
            assert h["modulated_layers"] == 0
        elif method == "isometric":  # every layer rescaled to the top layer's second moment
            assert h["modulated_layers"] > 0
            assert h["error_q"] == pytest.approx([h["error_q"][-1]] * len(h["error_q"]), rel=1e-6)


def test_bad_preset_raises():
    with pytest.raises(ValueError, match="preset"):
        xm.configs("gpu")
