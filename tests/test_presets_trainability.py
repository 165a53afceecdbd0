"""Checks of the presets of the chapter xiao2018/trainability (Xiao et al. 2018, Fig. 2) against
independent facts: the paper's architecture and data (its section 3), the authors' demo optimiser, and the
depth scales of the reference table tests/data/tanh_sweep_sb005.csv (written by adaptive quadrature,
tests/data/make_reference_tables.py).  No training."""

from __future__ import annotations

import json

import pytest
from conftest import _rows
from signalprop import experiment, models, parameterisation, presets, sweep
from signalprop.presets import trainability as tr

CHAPTER = "xiao2018/trainability"

# xi_c of tanh at sigma_b2 = 0.05 (the critical point is sigma_w2 = 1.7610, tanh_critical_sigma_w2.csv)
XI_C = {float(r["sigma_w2"]): float(r["xi_c"]) for r in _rows("tanh_sweep_sb005.csv")}
SW2_CRITICAL = 1.7610


def _model(config):
    return {**models.model_config_defaults(), **config["model"]}


def test_module_is_registered_for_the_chapter():
    assert presets.module_for(CHAPTER) is tr
    assert set(tr.DESCRIPTION) == set(presets.PRESETS)


@pytest.mark.parametrize("preset", presets.PRESETS)
def test_every_config_is_a_valid_experiment(preset):
    configs = tr.configs(preset)
    assert configs
    for config in configs:
        experiment.check_experiment(config)
        json.dumps(config)
    keys = [sweep.config_key(c) for c in configs]
    assert len(set(keys)) == len(keys)


@pytest.mark.parametrize("preset", presets.PRESETS)
def test_every_config_is_a_uniform_gaussian_network_at_sigma_b2_005_with_the_demo_optimiser(preset):
    for config in tr.configs(preset):
        model = _model(config)
        assert model["kernel_init"] == "gaussian" and model["v"] is None  # spatially uniform i.i.d. Gaussian
        assert model["sigma_b2"] == 0.05 and model["q_star"] is None
        t = config["train"]
        # the authors' demo notebook: MomentumOptimizer, lr 1e-2, momentum 0.95 (here the base rate)
        assert (t["optimizer"], t["lr"], t["momentum"]) == ("momentum", 1e-2, 0.95)


@pytest.mark.parametrize("preset", presets.PRESETS)
def test_every_cell_is_trained_in_the_depth_scaled_parameterisation_and_has_its_frozen_control(preset):
    by_cell: dict = {}
    for config in tr.configs(preset):
        model, t = config["model"], config["train"]
        assert model["readout_scale"] == "auto"
        by_cell.setdefault((model["depth"], model["sigma_w2"]), {})[config["meta"]["variant"]] = config
        rates = t["lr_groups"]
        # closed form of the chapter's rule: stem and read-out at 1e-2, kernels at 1e-2 / (9 L), biases frozen
        assert rates["stem"] == rates["readout"] == 1e-2 and rates["block_bias"] == 0.0
        expected = 1e-2 / (9 * model["depth"]) if config["meta"]["variant"] == "trained" else 0.0
        assert rates["block_weight"] == pytest.approx(expected, rel=1e-12)
    for variants in by_cell.values():
        assert set(variants) == set(parameterisation.VARIANTS)
        trained, frozen = variants["trained"], variants["frozen"]
        # the control differs from its network only in the block's kernel rate and the label
        assert trained["model"] == frozen["model"] and trained["data"] == frozen["data"]
        assert {k: v for k, v in trained["train"].items() if k != "lr_groups"} == {
            k: v for k, v in frozen["train"].items() if k != "lr_groups"
        }


@pytest.mark.parametrize("preset", presets.PRESETS)
def test_grid_is_the_full_product_of_depths_and_weight_variances(preset):
    configs = tr.configs(preset)
    cells = {(c["model"]["depth"], c["model"]["sigma_w2"]) for c in configs}
    depths = {d for d, _ in cells}
    sw2 = {s for _, s in cells}
    assert len(cells) == len(depths) * len(sw2)
    assert len(configs) == len(cells) * len(parameterisation.VARIANTS)
    # the grid crosses the order-to-chaos transition
    assert min(sw2) < SW2_CRITICAL < max(sw2)


def test_paper_preset_uses_mnist_depths_10_to_600_and_the_paper_width():
    # Xiao et al. (2018), section 3: MNIST, L = 10 ... 600, c = 256 for d <= 256 and 128 beyond.
    configs = tr.configs("paper")
    depths = sorted({c["model"]["depth"] for c in configs})
    assert depths[0] == 10 and depths[-1] == 600 and len(depths) >= 8
    sw2 = sorted({c["model"]["sigma_w2"] for c in configs})
    assert sw2[0] >= 1.0 and sw2[-1] <= 4.0  # Schoenholz et al.'s range (our reading for Fig. 2)
    for config in configs:
        assert config["data"]["name"] == "mnist"
        assert "n_train" not in config["data"]  # the full training set
        model = _model(config)
        assert model["channels"] is None
        assert models.paper_width(model["depth"]) == (256 if model["depth"] <= 256 else 128)
        assert (model["image_size"], model["in_channels"], model["num_classes"]) == (28, 1, 10)


def test_cpu_preset_is_the_coarse_x10_grid_on_the_full_fashion_mnist():
    # the chapter's small-scale grid: c = 16, L in {10, 20, 40, 80, 160}, sigma_w2 in {1, ..., 3}; all
    # 60,000 training images, intermediate records on a 2,000-image test subset, the last on all 10,000.
    configs = tr.configs("cpu")
    assert {c["model"]["depth"] for c in configs} == {10, 20, 40, 80, 160}
    assert {c["model"]["sigma_w2"] for c in configs} <= set(XI_C)
    for config in configs:
        assert config["data"] == {"name": "fashion-mnist"}
        assert config["model"]["channels"] == 16
        assert config["train"]["eval_subset"] == 2000
        assert config["train"]["steps"] <= 1000


def test_cpu_grid_has_cells_on_both_sides_of_the_x10_bounds():
    # X10 scores cells with L <= 3 xi_c (should train) and L >= 10 xi_c (should not); both must exist.
    ratios = [c["model"]["depth"] / XI_C[c["model"]["sigma_w2"]] for c in tr.configs("cpu")]
    assert sum(r <= 3 for r in ratios) >= 5
    assert sum(r >= 10 for r in ratios) >= 5


def test_cpu_preset_fits_the_budget_by_a_multiply_accumulate_count():
    # Forward multiply-accumulates per image: stem (28x28 1->c, 14x14 c->c, 7x7 c->c, 3x3 kernels)
    # plus L layers of 7x7 c->c 3x3; training ~3x forward.  At a conservative 1e10 MAC/s on one thread
    # (measured: ~0.11 s per step of batch 32 at L = 160, c = 16, about 2e10), 75 minutes allow 4.5e13.
    # Intermediate records use the 2,000-image subset, the last one all 10,000 test images, and the
    # read-out scale is measured on 512 training images.
    total = 0
    for config in tr.configs("cpu"):
        c, depth = config["model"]["channels"], config["model"]["depth"]
        t = config["train"]
        forward = 9 * (28 * 28 * c + 14 * 14 * c * c + 7 * 7 * c * c) + depth * 9 * 7 * 7 * c * c
        n_evals = t["steps"] // t["eval_every"]
        evaluated = t["eval_subset"] * n_evals + 10_000 + parameterisation.CALIBRATION_IMAGES
        total += 3 * forward * t["batch_size"] * t["steps"] + forward * evaluated
    assert total <= 4.5e13


def test_smoke_preset_is_tiny():
    configs = tr.configs("smoke")
    assert len(configs) <= 12
    # The per-configuration limits of every smoke preset are checked in tests/test_presets.py.


def test_unknown_preset_raises():
    with pytest.raises(ValueError, match="preset must be one of"):
        tr.configs("huge")
