"""Checks of the presets of Part V's training chapter on orthonormality (Xie, Xiong & Pu 2017, Figs. 2 and 3)
against the paper's stated settings: a plain 44-layer network (6n + 2, n = 7), lambda = 1e-4 for both regularisers
with learning rate 0.1, and He et al. (2016)'s batch 128 and momentum 0.9; the two schemes differ only in the
initialisation and the regulariser.  One test builds a model of each scheme from its configuration and checks that a
short training run records the filter correlation (eq. (8)) and the error ratio (Fig. 3) at every history record."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from signalprop import experiment, plainnet, presets, sweep, train
from signalprop.presets import xie2017_orthonormality as xo


def test_module_is_registered_for_its_chapter():
    assert presets.module_for("xie2017/orthonormality") is xo
    assert set(xo.DESCRIPTION) == set(presets.PRESETS)


@pytest.mark.parametrize("preset", presets.PRESETS)
def test_every_config_is_a_valid_experiment_with_a_unique_key(preset):
    configs = xo.configs(preset)
    for config in configs:
        experiment.check_experiment(config)
        json.dumps(config)
    keys = [sweep.config_key(c) for c in configs]
    assert len(set(keys)) == len(keys)
    assert len(configs) == 2 * len(xo.SEEDS[preset])


@pytest.mark.parametrize("preset", presets.PRESETS)
def test_the_schemes_differ_only_in_init_and_regulariser(preset):
    by_scheme: dict[str, dict[int, dict]] = {}
    for c in xo.configs(preset):
        by_scheme.setdefault(c["meta"]["scheme"], {})[c["train"]["seed"]] = c
    assert set(by_scheme) == {"ortho", "msra+l2"}
    assert set(by_scheme["ortho"]) == set(by_scheme["msra+l2"]) == set(xo.SEEDS[preset])
    for seed, a in by_scheme["ortho"].items():
        b = by_scheme["msra+l2"][seed]
        assert (a["model"]["init"], a["model"]["regularizer"]) == ("orthonormal", "orthonormal")
        assert (b["model"]["init"], b["model"]["regularizer"]) == ("msra", "l2")
        strip = copy.deepcopy(a), copy.deepcopy(b)
        for c in strip:
            del c["model"]["init"], c["model"]["regularizer"], c["meta"]["scheme"]
        assert strip[0] == strip[1]
        assert a["model"]["seed"] == a["train"]["seed"] == seed


@pytest.mark.parametrize("preset", ["cpu", "paper"])
def test_the_paper_settings(preset):
    for c in xo.configs(preset):
        m, t = c["model"], c["train"]
        assert 6 * m["n"] + 2 == 44 and m["plain"] is True and m["modulate_steps"] == 0
        assert plainnet.PlainNet(m["n"], m["width"]).depth == 44
        assert m["lam"] == 1e-4 and t["lr"] == 0.1  # Xie et al. (2017), section 5.1
        assert t["batch_size"] == 128 and t["optimizer"] == "momentum" and t["momentum"] == 0.9
        assert t["weight_decay"] == 0.0  # the regulariser is the model's own
        assert t["eval_every"] == 50  # Fig. 3 samples every 50 iterations
    assert len(xo.SEEDS[preset]) >= 3


def test_cpu_and_paper_data_and_widths():
    cpu, paper = xo.configs("cpu"), xo.configs("paper")
    assert {c["data"]["name"] for c in cpu} == {"fashion-mnist"} and all(len(c["data"]) == 1 for c in cpu)
    assert {(c["model"]["in_channels"], c["model"]["image_size"], c["model"]["width"]) for c in cpu} == {(1, 28, 0.5)}
    assert plainnet.stage_widths(0.5) == (8, 16, 32)
    assert {c["train"]["steps"] for c in cpu} == {1000}
    assert {c["data"]["name"] for c in paper} == {"cifar10"}
    assert {(c["model"]["in_channels"], c["model"]["image_size"], c["model"]["width"]) for c in paper} == {(3, 32, 1.0)}
    assert {c["train"]["steps"] for c in paper} == {32000}  # constant rate: He et al.'s schedule before its first cut


def test_smoke_is_tiny():
    configs = xo.configs("smoke")
    assert len(configs) <= 4
    for c in configs:
        assert c["data"]["n_train"] <= 250 and c["train"]["steps"] <= 10 and c["model"]["n"] == 1


@pytest.mark.parametrize("scheme", ["ortho", "msra+l2"])
def test_a_run_records_filter_correlation_and_error_ratio(scheme):
    config = next(c for c in xo.configs("smoke") if c["meta"]["scheme"] == scheme)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(60, 1, 28, 28, generator=g)
    y = torch.arange(60) % 10
    model = experiment.build_experiment_model(config["model"], config["train"]["seed"])
    cfg = train.TrainConfig.from_dict({**config["train"], "batch_size": 20, "steps": 4, "eval_every": 2,
                                       "eval_batch_size": 60})
    history = train.train(model, (x, y), (x, y), cfg, device="cpu", progress=False)["history"]
    assert [h["step"] for h in history] == [0, 2, 4]
    assert all(isinstance(h["filter_correlation"], float) for h in history)
    assert history[0]["error_ratio"] is None  # no backward pass before the first step
    for h in history[1:]:
        assert isinstance(h["error_ratio"], float) and h["error_ratio"] > 0
        assert h["error_ratio"] == pytest.approx(h["error_q"][0] / h["error_q"][-1])
    if scheme == "ortho":
        assert abs(history[0]["filter_correlation"]) < 1e-6  # orthonormal filters at initialisation


def test_bad_preset_raises():
    with pytest.raises(ValueError, match="preset"):
        xo.configs("gpu")
