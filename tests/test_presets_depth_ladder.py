"""Checks of the presets of the chapter xiao2018/depth_ladder (Xiao et al. 2018, Figure 1) against the paper.

The oracles are typed from the paper (its section 3), not taken from the module:
Figure 1 trains critical Delta-Orthogonal CNNs of depth 1,250, 2,500, 5,000 and 10,000 on MNIST and
CIFAR-10, with width c = 256 for depth <= 256 and 128 beyond.
"""

from __future__ import annotations

import pytest
from signalprop import experiment, models, presets
from signalprop.presets import depth_ladder

PAPER_DEPTHS = {1250, 2500, 5000, 10000}
PAPER_DATASETS = {"mnist", "cifar10"}
PAPER_WIDTH_BEYOND_256 = 128
# Data set sizes (training images): MNIST 60,000, CIFAR-10 50,000.
TRAIN_SIZE = {"mnist": 60000, "cifar10": 50000, "fashion-mnist": 60000}


def _flops_per_step(cfg: dict) -> float:
    """Multiply-adds x 2 x 3 (forward + backward) of the deep block for one training step."""
    m, t = cfg["model"], cfg["train"]
    side = models.IMAGE_SIZES[m["image_size"]]
    return 6.0 * t["batch_size"] * side**2 * m["channels"] ** 2 * 9 * m["depth"]


@pytest.mark.parametrize("preset", presets.PRESETS)
def test_every_config_is_valid_and_registered(preset):
    cfgs = presets.configs(depth_ladder.CHAPTER, preset)
    assert cfgs
    for cfg in cfgs:
        experiment.check_experiment(cfg)
        # the model section is accepted (depth 0: cheap; "auto" is resolved from images by the experiment)
        scale = cfg["model"].get("readout_scale", 1.0)
        models.build_model({**cfg["model"], "depth": 0, "readout_scale": 1.0 if scale == "auto" else scale})
        assert cfg["model"]["kernel_init"] == "delta_orthogonal"
        # critical point of the demo: the variances are left to q* = 1/depth
        assert cfg["model"]["sigma_w2"] is None and cfg["model"]["sigma_b2"] is None
        assert cfg["model"]["q_star"] is None
        assert cfg["train"]["optimizer"] == "momentum"
        assert cfg["train"]["momentum"] == 0.95 and cfg["train"]["lr"] == 1e-2  # demo values
        depth, variant = cfg["model"]["depth"], cfg["meta"]["variant"]
        if variant == "demo":  # the demo's parameterisation: one rate, no read-out scale
            assert "lr_groups" not in cfg["train"] and "readout_scale" not in cfg["model"]
            continue
        assert cfg["model"]["readout_scale"] == "auto"
        rates = cfg["train"]["lr_groups"]
        # the derived rule, typed here: base rate for stem and read-out, 1e-2 / (9 L) for the block's kernels
        assert rates["stem"] == rates["readout"] == 1e-2 and rates["block_bias"] == 0.0
        assert rates["block_weight"] == (pytest.approx(1e-2 / (9 * depth)) if variant == "trained" else 0.0)
    assert isinstance(presets.description(depth_ladder.CHAPTER, preset), str)
    # one configuration per (data set, depth, seed, variant), all trained for the same number of steps
    keys = {(c["data"]["name"], c["model"]["depth"], c["train"]["seed"], c["meta"]["variant"]) for c in cfgs}
    assert len(keys) == len(cfgs)
    # every trained network has its frozen-block control with the same seed
    trained = {k[:3] for k in keys if k[3] == "trained"}
    assert trained == {k[:3] for k in keys if k[3] == "frozen"}
    assert len({c["train"]["steps"] for c in cfgs}) == 1
    assert len({c["train"]["batch_size"] for c in cfgs}) == 1


def test_paper_preset_matches_figure_1():
    cfgs = depth_ladder.configs("paper")
    assert {c["data"]["name"] for c in cfgs} == PAPER_DATASETS
    for name in PAPER_DATASETS:
        assert {c["model"]["depth"] for c in cfgs if c["data"]["name"] == name} == PAPER_DEPTHS
    for c in cfgs:
        assert c["model"]["channels"] == PAPER_WIDTH_BEYOND_256
        assert c["data"].get("n_train") is None and c["data"].get("n_test") is None  # full data sets
        assert c["model"]["image_size"] == (32 if c["data"]["name"] == "cifar10" else 28)
        assert c["model"]["in_channels"] == (3 if c["data"]["name"] == "cifar10" else 1)
        epochs = c["train"]["steps"] * c["train"]["batch_size"] / TRAIN_SIZE[c["data"]["name"]]
        assert 5 <= epochs <= 20  # "about 10 epochs"


def test_smoke_is_small():
    cfgs = depth_ladder.configs("smoke")
    assert len(cfgs) <= 4
    # The per-configuration limits of every smoke preset are checked in tests/test_presets.py.


def test_cpu_reaches_ten_thousand_layers_on_the_full_training_set():
    cfgs = depth_ladder.configs("cpu")
    assert max(c["model"]["depth"] for c in cfgs) == 10000
    assert {c["data"]["name"] for c in cfgs} == {"fashion-mnist"}
    for c in cfgs:
        # the full 60,000-image training set and at least 1,500 steps at every depth
        assert c["data"].get("n_train") is None and c["data"].get("n_test") is None
        assert c["train"]["steps"] >= 1500
        assert c["train"]["eval_subset"] == 2000
        if c["model"]["depth"] >= 1000:
            assert 0 < c["train"]["checkpoint_every"] <= 25  # an interruption loses little
    # three seeds wherever a run takes less than an hour of this CPU
    for depth in (10, 100, 1000):
        assert {c["train"]["seed"] for c in cfgs if c["model"]["depth"] == depth} == {0, 1, 2}


def test_unknown_preset_raises():
    with pytest.raises(ValueError, match="preset"):
        depth_ladder.configs("gpu")
