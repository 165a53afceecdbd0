"""Presets of the chapter xiao2018/generalisation_depth (Figs. 3 and 4a of Xiao et al. 2018).

Oracles are typed from the paper (its section 3: architecture and Figs. 3-4) and
sec. 1.6 (GS0 = delta, GS4 = uniform), not taken from the preset module.
"""

from __future__ import annotations

import numpy as np
import pytest
from signalprop import presets
from signalprop.experiment import check_experiment
from signalprop.presets import generalisation_depth as gd

CHAPTER = "xiao2018/generalisation_depth"
# Xiao et al. (2018), Fig. 3: CIFAR-10, depth 32 to 8192 (the figure's ladder doubles)
PAPER_DEPTHS = [32, 64, 128, 256, 512, 1024, 2048, 4096, 8192]
# Xiao et al. (2018), section 3: c = 256 if d <= 256, c = 128 otherwise
PAPER_WIDTH = {32: 256, 64: 256, 128: 256, 256: 256, 512: 128, 1024: 128, 2048: 128, 4096: 128, 8192: 128}
DELTA = [[0, 0, 0], [0, 1, 0], [0, 0, 0]]
UNIFORM = [[1 / 9] * 3] * 3
# measured on this machine (one thread, shared, batch 100, c = 16): about 2.5 ms per deep layer per step,
# plus a few seconds per job for loading the data
SECONDS_PER_LAYER_STEP = 2.5e-3
SECONDS_PER_JOB = 5.0
CPU_BUDGET_S = 20 * 60


def fig3(preset, family=None):
    return [c for c in presets.configs(CHAPTER, preset)
            if c["meta"]["figure"] == "fig3" and (family is None or c["meta"]["family"] == family)]


def fig4a(preset):
    return [c for c in presets.configs(CHAPTER, preset) if c["meta"]["figure"] == "fig4a"]


def test_registered():
    assert presets.module_for(CHAPTER) is gd
    for preset in presets.PRESETS:
        assert presets.description(CHAPTER, preset)


@pytest.mark.parametrize("preset", presets.PRESETS)
def test_every_config_is_a_valid_experiment(preset):
    configs = presets.configs(CHAPTER, preset)
    assert configs
    for config in configs:
        check_experiment(config)


@pytest.mark.parametrize("preset", presets.PRESETS)
def test_configs_are_distinct_and_labelled(preset):
    from signalprop.sweep import config_key

    configs = presets.configs(CHAPTER, preset)
    assert len({config_key(c) for c in configs}) == len(configs)
    for c in configs:
        assert c["meta"]["figure"] in ("fig3", "fig4a")
        # critical parameters from q* = 1/depth: no variances fixed by the preset
        assert c["model"].get("sigma_w2") is None and c["model"].get("sigma_b2") is None
        assert c["model"].get("q_star") is None


@pytest.mark.parametrize("preset", presets.PRESETS)
def test_fig3_pairs_uniform_orthogonal_with_delta_orthogonal(preset):
    uniform = sorted(c["model"]["depth"] for c in fig3(preset, "orthogonal"))
    delta = sorted(c["model"]["depth"] for c in fig3(preset, "delta_orthogonal"))
    assert len(uniform) >= 2 and uniform == delta
    for c in fig3(preset):
        assert c["model"]["kernel_init"] == c["meta"]["family"]
        assert c["model"]["v"] is None


@pytest.mark.parametrize("preset", presets.PRESETS)
def test_fig4a_is_the_gs_family(preset):
    configs = fig4a(preset)
    depths = sorted({c["model"]["depth"] for c in configs})
    assert depths
    for depth in depths:
        at = {c["meta"]["family"]: c for c in configs if c["model"]["depth"] == depth}
        assert sorted(at) == ["GS0", "GS1", "GS2", "GS3", "GS4"]
        for level in range(5):
            c = at[f"GS{level}"]
            assert c["model"]["kernel_init"] == "gaussian"
            t = level / 4
            expected = (1 - t) * np.array(DELTA, float) + t * np.array(UNIFORM)
            np.testing.assert_allclose(np.array(c["model"]["v"]), expected, atol=1e-15)


def test_paper_preset_uses_the_papers_setting():
    configs = presets.configs(CHAPTER, "paper")
    for c in configs:
        assert c["data"]["name"] == "cifar10"
        assert "n_train" not in c["data"] and "n_test" not in c["data"]  # the full data set
        assert c["model"]["in_channels"] == 3 and c["model"]["image_size"] == 32
        assert c["model"]["num_classes"] == 10
        depth = c["model"]["depth"]
        assert c["model"]["channels"] == PAPER_WIDTH.get(depth, 256 if depth <= 256 else 128)
        assert c["train"]["optimizer"] == "momentum"  # the demo's optimiser
        assert c["train"]["lr"] == 1e-2 and c["train"]["momentum"] == 0.95 and c["train"]["batch_size"] == 100
    assert sorted(c["model"]["depth"] for c in fig3("paper", "orthogonal")) == PAPER_DEPTHS
    # the uniform Gaussian of section 4 ("below 70 % at depth 259") at the same ladder
    assert sorted(c["model"]["depth"] for c in fig3("paper", "gaussian")) == PAPER_DEPTHS


def test_smoke_is_small():
    configs = presets.configs(CHAPTER, "smoke")
    assert len(configs) <= 12
    # The per-configuration limits of every smoke preset are checked in tests/test_presets.py.


def test_cpu_is_fashion_mnist_within_budget():
    configs = presets.configs(CHAPTER, "cpu")
    seconds = 0.0
    for c in configs:
        assert c["data"]["name"] == "fashion-mnist"
        assert c["data"]["stratified"] and c["data"]["n_train"] <= 2000
        assert c["model"]["channels"] == 16
        t = c["train"]
        seconds += SECONDS_PER_JOB + SECONDS_PER_LAYER_STEP * c["model"]["depth"] * t["steps"] * t["batch_size"] / 100
        assert t["checkpoint_every"] > 0  # resumable
    assert seconds <= CPU_BUDGET_S


def test_unknown_preset_raises():
    with pytest.raises(ValueError, match="preset"):
        gd.configs("gpu")
