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
from signalprop import experiment, presets, store
from signalprop.presets import orthogonal_vs_gaussian as P

PAPER_DEPTH = 4000  # Xiao et al. (2018), Fig. 5
PAPER_WIDTH = 128  # "c = 128 otherwise" (d > 256), sec. 3
PAPER_STEPS = 90000  # "after 90,000 steps (~60 epochs)"
MNIST_TRAIN = 60000


def _all_configs() -> list[tuple[str, dict]]:
    return [(preset, c) for preset in presets.PRESETS for c in P.configs(preset)]


@pytest.mark.parametrize("preset", presets.PRESETS)
def test_every_config_is_a_valid_experiment(preset: str) -> None:
    cfgs = P.configs(preset)
    assert cfgs
    for cfg in cfgs:
        assert experiment.check_experiment(cfg) == cfg


def test_module_is_registered_for_the_chapter() -> None:
    assert presets.module_for("xiao2018/orthogonal_vs_gaussian") is P
    for preset in presets.PRESETS:
        assert presets.configs(P.CHAPTER, preset) == P.configs(preset)
        assert presets.description(P.CHAPTER, preset) == P.DESCRIPTION[preset]


def test_unknown_preset_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown preset"):
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
        q = 1.0 / m["depth"]
        e_phi2, e_dphi2 = _tanh_moments(q)
        assert m["sigma_w2"] * e_phi2 + m["sigma_b2"] == pytest.approx(q, rel=1e-9)  # fixed point q*
        assert m["sigma_w2"] * e_dphi2 == pytest.approx(1.0, abs=1e-9)  # chi_1 = 1


@pytest.mark.parametrize("preset", presets.PRESETS)
def test_schemes_differ_only_in_the_kernel(preset: str) -> None:
    """Same data, variances, optimiser and seeds: only ``kernel_init`` (and the meta label) changes."""
    cfgs = [c for c in P.configs(preset) if c["meta"]["role"] == "comparison"]
    kinds = {c["model"]["kernel_init"] for c in cfgs}
    assert {"gaussian", "orthogonal"} <= kinds
    for c in cfgs:
        assert c["model"].get("v") is None  # spatially uniform Gaussian (eq. (2.13) with uniform v)
        assert c["meta"]["scheme"] == c["model"]["kernel_init"]
    strip = [
        {**c, "model": {k: v for k, v in c["model"].items() if k != "kernel_init"}, "meta": None} for c in cfgs
    ]
    by_seed: dict[int, list] = {}
    for s in strip:
        by_seed.setdefault(s["train"]["seed"], []).append(s)
    for group in by_seed.values():
        assert all(g == group[0] for g in group)
    everything = P.configs(preset)
    assert len({store.canonical_json(c) for c in everything}) == len(everything)  # distinct jobs


@pytest.mark.parametrize("preset", presets.PRESETS)
def test_demo_learning_rate_run(preset: str) -> None:
    """The extra run: the orthogonal network of the comparison at the demo learning rate 1e-2."""
    cfgs = P.configs(preset)
    comparison = {
        (c["model"]["kernel_init"], c["train"]["seed"]): c for c in cfgs if c["meta"]["role"] == "comparison"
    }
    for c in cfgs:
        if c["meta"]["role"] != "demo_lr":
            continue
        assert c["model"]["kernel_init"] == "orthogonal" and c["train"]["lr"] == 1e-2
        ref = comparison[("orthogonal", c["train"]["seed"])]
        assert c["model"] == ref["model"] and c["data"] == ref["data"]
        assert c["train"]["steps"] <= ref["train"]["steps"]


def test_paper_preset_matches_the_paper() -> None:
    cfgs = P.configs("paper")
    assert {c["model"]["kernel_init"] for c in cfgs} == {"gaussian", "orthogonal"}
    for c in cfgs:
        assert c["train"]["lr"] == 1e-2  # the authors' demo value (the paper states none)
        assert c["data"]["name"] == "mnist"
        assert "n_train" not in c["data"] and "n_test" not in c["data"]  # the whole of MNIST
        assert c["model"]["depth"] == PAPER_DEPTH
        assert c["model"]["channels"] == PAPER_WIDTH
        assert c["model"]["in_channels"] == 1 and c["model"]["image_size"] == 28
        assert c["train"]["steps"] == PAPER_STEPS
        epochs = PAPER_STEPS * c["train"]["batch_size"] / MNIST_TRAIN
        assert 55 <= epochs <= 65  # "~60 epochs"
        assert c["train"]["optimizer"] == "momentum" and c["train"]["momentum"] == 0.95
        assert c["train"]["checkpoint_every"] > 0  # days of GPU time: resumable


def test_smoke_is_small() -> None:
    cfgs = P.configs("smoke")
    assert len(cfgs) <= 6
    # The per-configuration limits of every smoke preset are checked in tests/test_presets.py.


def test_cpu_preset_fits_the_budget() -> None:
    """Cost in layer-image passes of the deep block, training (forward + backward ~ 3 passes) plus evaluation.

    Measured on this project's shared CPU with one thread: a 2,000-step run at depth 128, c = 16,
    batch 32 with 21 evaluations of 1,000 images (~2.7e7 passes) took ~190-210 s, i.e. ~7.5e-6 s
    per pass; we charge 8e-6.  The budget is 20 minutes for the whole preset.
    """
    cost_per_pass = 8e-6  # seconds per layer-image forward pass at c = 16
    total = 0.0
    for c in P.configs("cpu"):
        m, t, d = c["model"], c["train"], c["data"]
        assert d["name"] == "fashion-mnist"
        width_factor = (m["channels"] / 16) ** 2
        n_evals = t["steps"] // t["eval_every"] + 1
        passes = 3 * t["steps"] * t["batch_size"] * m["depth"] + n_evals * d["n_test"] * m["depth"]
        total += passes * cost_per_pass * width_factor
    assert total <= 20 * 60


@pytest.mark.parametrize("preset", presets.PRESETS)
def test_stratified_subsets_have_whole_classes(preset: str) -> None:
    """signalprop.data draws a stratified subset only when its size is a multiple of the 10 classes."""
    for c in P.configs(preset):
        for key in ("n_train", "n_test"):
            n = c["data"].get(key)
            assert n is None or (c["data"]["stratified"] and n % 10 == 0)
            assert n is None or n >= c["train"]["batch_size"] or key == "n_test"
