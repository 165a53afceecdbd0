"""Tests of the presets of the chapter xiao2018/orthogonal_vs_gaussian (Xiao et al. 2018, Fig. 5).

The oracles are typed from the paper (its section 3): depth 4,000 on MNIST, width
c = 128 for d > 256, Gaussian versus Algorithm 1 orthogonal kernels, 90,000 steps ~ 60 epochs
(so ~40 images per step), momentum 0.95 (authors' demo), critical (sigma_w2, sigma_b2)
with q* = 1/depth (authors' demo).  The critical point is checked by our own Gauss-Hermite
quadrature, not by the library's mean-field code.  No training here.
"""

from __future__ import annotations

import numpy as np
import pytest
from signalprop import experiment, models, parameterisation, presets, store
from signalprop.presets import depth_ladder
from signalprop.presets import orthogonal_vs_gaussian as P

PAPER_DEPTH = 4000  # Xiao et al. (2018), Fig. 5
PAPER_WIDTH = 128  # "c = 128 otherwise" (d > 256), sec. 3
PAPER_STEPS = 90000  # "after 90,000 steps (~60 epochs)"
MNIST_TRAIN = 60000


@pytest.mark.parametrize("preset", presets.PRESETS)
def test_every_config_is_a_valid_experiment(preset: str) -> None:
    cfgs = P.configs(preset)
    assert cfgs
    for cfg in cfgs:
        assert experiment.check_experiment(cfg) == cfg
        scale = cfg["model"]["readout_scale"]
        models.build_model({**cfg["model"], "depth": 0, "readout_scale": 1.0 if scale == "auto" else scale})


def test_module_is_registered_for_the_chapter() -> None:
    assert presets.module_for("xiao2018/orthogonal_vs_gaussian") is P
    for preset in presets.PRESETS:
        assert presets.configs(P.CHAPTER, preset) == P.configs(preset)
        assert presets.description(P.CHAPTER, preset) == P.DESCRIPTION[preset]


def test_unknown_preset_is_rejected() -> None:
    with pytest.raises(ValueError, match="preset must be one of"):
        P.configs("huge")


def test_descriptions_name_the_data() -> None:
    assert "Fashion-MNIST" in P.DESCRIPTION["smoke"]
    assert "Fashion-MNIST" in P.DESCRIPTION["cpu"]
    assert "MNIST" in P.DESCRIPTION["paper"] and "Fashion" not in P.DESCRIPTION["paper"]


def _tanh_moments(q: float) -> tuple[float, float]:
    """E[tanh(h)^2] and E[sech(h)^4] for h ~ N(0, q), by our own Gauss-Hermite rule."""
    z, w = np.polynomial.hermite_e.hermegauss(201)
    w = w / w.sum()
    h = np.sqrt(q) * z
    return float(np.sum(w * np.tanh(h) ** 2)), float(np.sum(w / np.cosh(h) ** 4))


@pytest.mark.parametrize("preset", presets.PRESETS)
def test_critical_point_with_q_star_one_over_depth(preset: str) -> None:
    for cfg in P.configs(preset):
        m = cfg["model"]
        # the variances are left to the demo's heuristic q* = 1/depth, resolved when the model is built
        assert m["sigma_w2"] is None and m["sigma_b2"] is None and m["q_star"] is None
        sw2, sb2 = models.critical_parameters(depth=m["depth"])
        q = 1.0 / m["depth"]
        e_phi2, e_dphi2 = _tanh_moments(q)
        assert sw2 * e_phi2 + sb2 == pytest.approx(q, rel=1e-9)  # fixed point q*
        assert sw2 * e_dphi2 == pytest.approx(1.0, abs=1e-9)  # chi_1 = 1


@pytest.mark.parametrize("preset", presets.PRESETS)
def test_schemes_differ_only_in_the_kernel(preset: str) -> None:
    """Same data, variances, optimiser and seed: only ``kernel_init`` (and the meta label) changes."""
    cfgs = P.configs(preset)
    assert {c["model"]["kernel_init"] for c in cfgs} == {"gaussian", "orthogonal"}
    groups: dict = {}
    for c in cfgs:
        assert c["model"].get("v") is None  # spatially uniform Gaussian (eq. (2.13) with uniform v)
        assert c["meta"]["scheme"] == c["model"]["kernel_init"]
        stripped = {**c, "model": {k: v for k, v in c["model"].items() if k != "kernel_init"}, "meta": None}
        groups.setdefault((c["train"]["seed"], c["meta"]["variant"]), []).append(stripped)
    for group in groups.values():
        assert len(group) == 2 and group[0] == group[1]
    assert len({store.canonical_json(c) for c in cfgs}) == len(cfgs)  # distinct jobs


@pytest.mark.parametrize("preset", presets.PRESETS)
def test_every_network_is_trained_in_the_depth_scaled_parameterisation_with_its_frozen_control(preset: str) -> None:
    cfgs = P.configs(preset)
    cells: dict = {}
    for c in cfgs:
        depth, variant = c["model"]["depth"], c["meta"]["variant"]
        assert c["model"]["readout_scale"] == "auto"
        assert c["train"]["optimizer"] == "momentum" and c["train"]["momentum"] == 0.95  # the demo's
        rates = c["train"]["lr_groups"]
        # typed here: base rate 1e-2 for stem and read-out, 1e-2 / (9 L) for the block's kernels, biases frozen
        assert rates["stem"] == rates["readout"] == 1e-2 and rates["block_bias"] == 0.0
        assert rates["block_weight"] == (pytest.approx(1e-2 / (9 * depth)) if variant == "trained" else 0.0)
        cells.setdefault((c["model"]["kernel_init"], c["train"]["seed"]), set()).add(variant)
    assert all(v == set(parameterisation.VARIANTS) for v in cells.values())


def test_cpu_jobs_are_the_depth_ladder_jobs_with_other_kernels() -> None:
    """The Delta-Orthogonal reference is the depth ladder's run of the same depth, seed and variant."""
    ladder = {store.canonical_json({**c, "meta": None}) for c in depth_ladder.configs("cpu")}
    for c in P.configs("cpu"):
        as_ladder = {**c, "model": {**c["model"], "kernel_init": "delta_orthogonal"}, "meta": None}
        assert store.canonical_json(as_ladder) in ladder


def test_cpu_preset_is_deep_seeded_and_on_the_full_training_set() -> None:
    cfgs = P.configs("cpu")
    for c in cfgs:
        assert c["model"]["depth"] >= 1000  # "at >= 1,000 layers"
        assert c["data"]["name"] == "fashion-mnist"
        assert c["data"].get("n_train") is None and c["data"].get("n_test") is None
        assert c["train"]["steps"] >= 1500 and c["train"]["eval_subset"] == 2000
        assert 0 < c["train"]["checkpoint_every"] <= 25  # an interruption loses little
    for kernel in ("gaussian", "orthogonal"):
        for variant in parameterisation.VARIANTS:
            seeds = {c["train"]["seed"] for c in cfgs if (c["model"]["kernel_init"], c["meta"]["variant"]) == (
                kernel, variant)}
            assert len(seeds) >= 3


def test_paper_preset_matches_the_paper() -> None:
    cfgs = P.configs("paper")
    assert {c["model"]["kernel_init"] for c in cfgs} == {"gaussian", "orthogonal"}
    for c in cfgs:
        assert c["data"]["name"] == "mnist"
        assert "n_train" not in c["data"] and "n_test" not in c["data"]  # the whole of MNIST
        assert c["model"]["depth"] == PAPER_DEPTH
        assert c["model"]["channels"] == PAPER_WIDTH
        assert c["model"]["in_channels"] == 1 and c["model"]["image_size"] == 28
        assert c["train"]["steps"] == PAPER_STEPS
        epochs = PAPER_STEPS * c["train"]["batch_size"] / MNIST_TRAIN
        assert 55 <= epochs <= 65  # "~60 epochs"
        assert c["train"]["checkpoint_every"] > 0  # days of GPU time: resumable


def test_smoke_is_small() -> None:
    assert len(P.configs("smoke")) <= 4
    # The per-configuration limits of every smoke preset are checked in tests/test_presets.py.


def test_cpu_preset_fits_the_budget_by_a_multiply_accumulate_count() -> None:
    """Forward multiply-accumulates per image: stem plus L layers of 7x7 c->c 3x3; training ~3x forward.

    Measured on this machine: a 1,500-step job at L = 1,000, c = 16 took 15-20 min on one thread alone
    (about 1.7e10 MAC/s).  At a conservative 1e10 MAC/s, 2.5e14 MAC are 7 h of one thread, 3.5 h on
    this machine's two cores.  Intermediate records use the 2,000-image subset, the last one all 10,000
    test images, and the read-out scale is measured on the calibration images.
    """
    total = 0
    for config in P.configs("cpu"):
        c, depth, t = config["model"]["channels"], config["model"]["depth"], config["train"]
        forward = 9 * (28 * 28 * c + 14 * 14 * c * c + 7 * 7 * c * c) + depth * 9 * 7 * 7 * c * c
        n_evals = t["steps"] // t["eval_every"]
        evaluated = t["eval_subset"] * n_evals + 10_000 + parameterisation.CALIBRATION_IMAGES
        total += 3 * forward * t["batch_size"] * t["steps"] + forward * evaluated
    assert total <= 2.5e14
