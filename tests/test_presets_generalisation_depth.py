"""Presets of the chapter xiao2018/generalisation_depth (Figs. 3 and 4a of Xiao et al. 2018).

Oracles are typed from the paper (its section 3: architecture and Figs. 3-4) and
sec. 1.6 (GS0 = delta, GS4 = uniform), not taken from the preset module.
"""

from __future__ import annotations

import json

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


def fig3(preset, family=None):
    return [c for c in presets.configs(CHAPTER, preset)
            if c["meta"]["figure"] == "fig3" and (family is None or c["meta"]["family"] == family)]


def fig4a(preset):
    return [c for c in presets.configs(CHAPTER, preset) if c["meta"]["figure"] == "fig4a"]


def figs_3_4(preset):
    return [c for c in presets.configs(CHAPTER, preset) if c["meta"]["figure"] in ("fig3", "fig4a")]


def no_downsampling(preset):
    return [c for c in presets.configs(CHAPTER, preset) if c["meta"]["figure"] == "no_downsampling"]


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
        assert c["meta"]["figure"] in ("fig3", "fig4a", "no_downsampling")
        # critical parameters from q* = 1/depth: no variances fixed by the preset
        assert c["model"].get("sigma_w2") is None and c["model"].get("sigma_b2") is None
        assert c["model"].get("q_star") is None


def _ladder_twin(config):
    """The depth ladder's job with the same preset, depth, seed and variant, from the ladder's own list or
    its public job builder (typed names: the ladder chapter's preset is the reference)."""
    from signalprop.presets import depth_ladder

    m, t = config["model"], config["train"]
    return depth_ladder.config(config["meta"]["preset"], config["data"]["name"], m["depth"], t["seed"],
                               config["meta"]["variant"])


def _strip(config, kernel_keys=("kernel_init", "v")):
    c = json.loads(json.dumps(config))
    for k in kernel_keys:
        c["model"].pop(k, None)
    c["train"].pop("steps")
    c.pop("meta")
    return c


@pytest.mark.parametrize("preset", presets.PRESETS)
def test_every_fig3_and_fig4a_job_is_a_ladder_job_with_other_kernels(preset):
    for c in figs_3_4(preset):
        twin = _ladder_twin(c)
        assert _strip(c) == _strip(twin)
        assert twin["model"]["kernel_init"] == "delta_orthogonal"
        assert c["meta"]["variant"] in ("trained", "frozen")
        rates = c["train"]["lr_groups"]  # the depth ladder's rule, typed here
        assert rates["stem"] == rates["readout"] == 1e-2 and rates["block_bias"] == 0.0
        expected = 1e-2 / (9 * c["model"]["depth"]) if c["meta"]["variant"] == "trained" else 0.0
        assert rates["block_weight"] == pytest.approx(expected)
        if preset != "paper":
            assert c["train"]["steps"] == twin["train"]["steps"]


def test_cpu_jobs_are_key_for_key_the_ladders_where_the_ladder_has_them():
    from signalprop.presets import depth_ladder
    from signalprop.sweep import config_key

    ladder = {(c["model"]["depth"], c["train"]["seed"], c["meta"]["variant"]): c
              for c in depth_ladder.configs("cpu") if c["meta"]["variant"] in ("trained", "frozen")}
    for c in figs_3_4("cpu"):
        twin = ladder[(c["model"]["depth"], c["train"]["seed"], c["meta"]["variant"])]
        same = {**c, "model": {**c["model"], "kernel_init": "delta_orthogonal", "v": None}, "meta": twin["meta"]}
        assert config_key(same) == config_key(twin)


@pytest.mark.parametrize("preset", presets.PRESETS)
def test_fig3_has_trained_and_frozen_pairs_on_a_ladder_of_both_kernels(preset):
    from signalprop.sweep import config_key

    cells: dict = {}
    for c in fig3(preset) + [c for _, c in gd.reference_configs(preset)]:
        kernel = c["model"]["kernel_init"]
        assert kernel in ("orthogonal", "delta_orthogonal", "gaussian") and c["model"]["v"] is None
        cells.setdefault((kernel, c["model"]["depth"], c["train"]["seed"]), set()).add(c["meta"]["variant"])
    assert all(v == {"trained", "frozen"} for v in cells.values())
    depths = {k: sorted({L for kk, L, _ in cells if kk == k}) for k in ("orthogonal", "delta_orthogonal")}
    assert len(depths["orthogonal"]) >= 2 and depths["orthogonal"] == depths["delta_orthogonal"]
    if preset == "cpu":
        assert depths["orthogonal"] == [10, 100, 1000]
        assert {s for _, _, s in cells} == {0, 1, 2}
        # the reference runs are jobs of their own chapters
        for chapter, c in gd.reference_configs(preset):
            assert config_key(c) in {config_key(x) for x in presets.configs(chapter, "cpu")}


@pytest.mark.parametrize("preset", presets.PRESETS)
def test_fig4a_is_the_gs_family(preset):
    configs = fig4a(preset)
    cells = {}
    for c in configs:
        cells.setdefault((c["model"]["depth"], c["train"]["seed"], c["meta"]["variant"]), {})[c["meta"]["family"]] = c
    assert len({d for d, _, _ in cells}) == 2
    for at in cells.values():
        assert sorted(at) == ["GS0", "GS1", "GS2", "GS3", "GS4"]
        for level in range(5):
            c = at[f"GS{level}"]
            assert c["model"]["kernel_init"] == "gaussian"
            t = level / 4
            expected = (1 - t) * np.array(DELTA, float) + t * np.array(UNIFORM)
            np.testing.assert_allclose(np.array(c["model"]["v"]), expected, atol=1e-15)
    assert {v for _, _, v in cells} == {"trained", "frozen"}
    if preset == "cpu":
        assert {s for _, s, _ in cells} == {0, 1, 2}


def test_paper_preset_uses_the_papers_setting():
    for c in presets.configs(CHAPTER, "paper"):
        assert c["data"]["name"] == "cifar10"
        assert "n_train" not in c["data"] and "n_test" not in c["data"]  # the full data set
        assert c["model"]["in_channels"] == 3 and c["model"]["image_size"] == 32
        assert c["model"]["num_classes"] == 10
        depth = c["model"]["depth"]
        assert c["model"]["channels"] == PAPER_WIDTH.get(depth, 256 if depth <= 256 else 128)
    for c in figs_3_4("paper"):
        assert c["train"]["steps"] == 50_000  # our choice: 40 epochs of batch 40
    assert sorted(c["model"]["depth"] for c in fig3("paper", "orthogonal")) == sorted(2 * PAPER_DEPTHS)
    # the uniform Gaussian of section 4 ("below 70 % at depth 259") at the same ladder
    assert sorted(c["model"]["depth"] for c in fig3("paper", "gaussian")) == sorted(2 * PAPER_DEPTHS)
    assert gd.reference_configs("paper") == []


def test_smoke_is_small():
    assert len(figs_3_4("smoke")) <= 28
    assert len(no_downsampling("smoke")) <= 4
    # The per-configuration limits of every smoke preset are checked in tests/test_presets.py.


def test_cpu_is_the_full_fashion_mnist_within_a_multiply_accumulate_budget():
    # forward MACs per image: the stem (28 x 28, 14 x 14, 7 x 7) plus L layers of c -> c 3 x 3 on 7 x 7; training
    # ~3x forward; records on the 2,000-image subset, the last on all 10,000 test images.  Measured: the depth
    # ladder's 1,000-layer jobs (1.1e8 MAC per image, 1.7e13 MAC per job) took 15-20 min each, two at a time on
    # this machine's two cores.  1e14 MAC allow about 2 h of it.
    total = 0.0
    for config in figs_3_4("cpu"):
        assert config["data"]["name"] == "fashion-mnist"
        assert config["data"].get("n_train") is None and config["data"].get("n_test") is None
        c, depth, t = config["model"]["channels"], config["model"]["depth"], config["train"]
        assert c == 16 and t["steps"] >= 1500
        forward = 9 * (28 * 28 * c + 14 * 14 * c * c + 7 * 7 * c * c) + depth * 9 * 7 * 7 * c * c
        evaluated = t["eval_subset"] * (t["steps"] // t["eval_every"]) + 10_000 + 512
        total += 3 * forward * t["batch_size"] * t["steps"] + forward * evaluated
    assert total <= 1e14


def test_unknown_preset_family_and_variant_raise():
    with pytest.raises(ValueError, match="preset"):
        gd.configs("gpu")
    with pytest.raises(ValueError, match="preset"):
        gd.reference_configs("gpu")
    with pytest.raises(ValueError, match="family"):
        gd.kernel_config("cpu", 10, 0, "trained", "GS5", "fig4a")
    with pytest.raises(ValueError, match="variant"):
        gd.kernel_config("cpu", 10, 0, "sometimes", "GS1", "fig4a")


# Xiao et al. (2018), section 3: "a 50 layers network without downsampling" (CIFAR-10, 89.90 % test accuracy)
NO_DOWNSAMPLING_DEPTH = 50


@pytest.mark.parametrize("preset", presets.PRESETS)
def test_no_downsampling_pairs_the_stem_strides_with_everything_else_equal(preset):
    configs = no_downsampling(preset)
    cells: dict = {}
    for c in configs:
        m = c["model"]
        assert m["kernel_init"] == "delta_orthogonal" and m["readout_scale"] == "auto"
        assert m.get("downsample", True) is c["meta"]["downsample"]
        if preset != "smoke":
            assert m["depth"] == NO_DOWNSAMPLING_DEPTH
        rates = c["train"]["lr_groups"]  # the depth ladder's rule, typed here
        assert rates["stem"] == rates["readout"] == 1e-2 and rates["block_bias"] == 0.0
        expected = 1e-2 / (9 * m["depth"]) if c["meta"]["variant"] == "trained" else 0.0
        assert rates["block_weight"] == pytest.approx(expected)
        stripped = {**c, "model": {k: v for k, v in m.items() if k != "downsample"},
                    "train": {k: v for k, v in c["train"].items() if k != "checkpoint_every"}, "meta": None}
        cells.setdefault((c["train"]["seed"], c["meta"]["variant"]), []).append(stripped)
    # per seed and variant: one network with and one without downsampling, otherwise the same job
    assert cells and all(len(v) == 2 and v[0] == v[1] for v in cells.values())
    assert {variant for _, variant in cells} == {"trained", "frozen"}


def test_no_downsampling_cpu_is_the_full_fashion_mnist_with_three_seeds():
    configs = no_downsampling("cpu")
    assert {c["train"]["seed"] for c in configs} == {0, 1, 2}
    for c in configs:
        assert c["data"]["name"] == "fashion-mnist"
        assert c["data"].get("n_train") is None and c["data"].get("n_test") is None
        assert c["train"]["steps"] >= 1500
        if not c["meta"]["downsample"]:
            assert 0 < c["train"]["checkpoint_every"] <= 25  # a job of about 15 minutes: resumable


def test_no_downsampling_cpu_budget_by_a_multiply_accumulate_count():
    # forward MACs per image: stem at full resolution (28 x 28 throughout without downsampling) plus L layers of
    # c -> c 3 x 3 on the block's grid; training ~3x forward; records on the 2,000-image subset, the last on all
    # 10,000 test images.  Measured: the 1,000-layer jobs of the orthogonal_vs_gaussian chapter (1.13e8 MAC per
    # image) took about 20 min each, two at a time on this machine's two cores.  1.5e14 MAC allow 2.5 h of it.
    total = 0.0
    for config in no_downsampling("cpu"):
        c, depth, t = config["model"]["channels"], config["model"]["depth"], config["train"]
        side = 7 if config["meta"]["downsample"] else 28
        stem = 9 * (28 * 28 * c + (14 if side == 7 else 28) ** 2 * c * c + side * side * c * c)
        forward = stem + depth * 9 * side * side * c * c
        evaluated = t["eval_subset"] * (t["steps"] // t["eval_every"]) + 10_000 + 512
        total += 3 * forward * t["batch_size"] * t["steps"] + forward * evaluated
    assert total <= 1.5e14
