"""Checks of the presets of Part IV's training chapters (Chang 2019, Figs. 3.4-3.5 and chapter 5) against the
thesis's stated settings: the grid of chapter 5 (31,680 runs = 16 configurations x 99 cells x 20 runs, Table 5.1),
batch 100, 100 epochs, N = 500, L from 25 to 500, learning rates from 1e-4 to 1e-2 (SGD) and momentum 0.9, and
sigma_w2 mu_1 = 1 with mu_1 = E[phi'(h)^2] in the small-q limit (phi'(0)^2 = 1 for tanh, 1/2 for ReLU).  One test runs
a few ``paper`` jobs, shortened, through Ray's local mode."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
import torch
from signalprop import experiment, presets, sweep
from signalprop.presets import chang2019_dynamics as dyn
from signalprop.presets import chang2019_success as suc

MU1_SMALL_Q = {"tanh": 1.0, "relu": 0.5}  # phi'(h)^2 at h -> 0 (ReLU: half the inputs have slope 1)


def test_modules_are_registered_for_their_chapters():
    assert presets.module_for("chang2019/training_success") is suc
    assert presets.module_for("chang2019/training_dynamics") is dyn
    for module in (suc, dyn):
        assert set(module.DESCRIPTION) == set(presets.PRESETS)


@pytest.mark.parametrize("module", [suc, dyn])
@pytest.mark.parametrize("preset", ["smoke", "cpu"])
def test_every_config_is_a_valid_experiment_with_a_unique_key(module, preset):
    configs = module.configs(preset)
    for config in configs:
        experiment.check_experiment(config)
        json.dumps(config)
    keys = [sweep.config_key(c) for c in configs]
    assert len(set(keys)) == len(keys)


def test_paper_grid_is_the_thesis_grid():
    configs = suc.configs("paper")
    assert len(configs) == 31680  # Chang (2019), section 5.2
    per_setting = Counter((c["train"]["optimizer"], c["model"]["activation"], c["model"]["weights"]) for c in configs)
    assert len(per_setting) == 16 and set(per_setting.values()) == {1980}  # Table 5.1: 1,980 runs per row
    cells = Counter((c["model"]["depth"], c["train"]["lr"]) for c in configs if c["train"]["optimizer"] == "sgd")
    assert len(cells) == 99 and set(cells.values()) == {4 * 20}  # 99 (L, alpha) cells, 20 runs x 4 settings
    depths = sorted({c["model"]["depth"] for c in configs})
    assert depths[0] == 25 and depths[-1] == 500 and len(depths) == 11
    ratios = np.diff(np.log(depths))
    assert np.allclose(ratios, np.log(20) / 10, atol=0.03)  # uniformly spaced on a log scale
    for opt, (lo, hi) in {"sgd": (1e-4, 1e-2), "momentum": (1e-4, 1e-2), "adam": (1e-6, 1e-4),
                          "rmsprop": (1e-6, 1e-4)}.items():
        lrs = sorted({c["train"]["lr"] for c in configs if c["train"]["optimizer"] == opt})
        assert len(lrs) == 9 and lrs[0] == pytest.approx(lo) and lrs[-1] == pytest.approx(hi)
        assert np.allclose(np.diff(np.log10(lrs)), 0.25)
    for c in configs:
        assert c["data"]["name"] == "mnist" and c["model"]["width"] == 500
        assert c["train"]["batch_size"] == 100 and c["train"]["steps"] * 100 == 100 * 60000  # 100 epochs
        assert (c["train"].get("momentum") == 0.9) == (c["train"]["optimizer"] == "momentum")
    assert suc.SUCCESS_ACCURACY["paper"] == 0.9


@pytest.mark.parametrize("module", [suc, dyn])
@pytest.mark.parametrize("preset", presets.PRESETS)
def test_initialisation_has_sigma_w2_mu1_equal_to_one(module, preset):
    for c in module.configs(preset):
        m = c["model"]
        assert m["sigma_w2"] * MU1_SMALL_Q[m["activation"]] == 1.0
        assert m["in_features"] == 784 and m["out_features"] == 10 and m["flatten_input"]
        assert m["seed"] == c["train"]["seed"]


def test_cpu_success_grid_spans_the_thesis_depth_to_width_ratios():
    configs = suc.configs("cpu")
    assert len(configs) == 16 * 3 * 3 * len(suc.SEEDS["cpu"])
    ratios = {c["model"]["depth"] / c["model"]["width"] for c in configs}
    assert min(ratios) == pytest.approx(0.1) and max(ratios) == pytest.approx(1.0)  # thesis: 25/500 to 500/500


def test_dynamics_presets_are_the_figure_settings():
    for preset in ("cpu", "paper"):
        configs = dyn.configs(preset)
        assert {c["train"]["lr"] for c in configs} == {1e-4, 1e-3, 1e-2}
        for c in configs:
            assert c["model"]["depth"] == 100 and c["model"]["activation"] == "tanh"
            assert c["model"]["weights"] == "gaussian" and c["train"]["optimizer"] == "sgd"
            assert c["train"]["batch_size"] == 100
    assert {c["model"]["width"] for c in dyn.configs("paper")} == {500}


def test_success_is_reaching_the_accuracy_at_any_record():
    def result(accs):
        return {"history": [{"train_accuracy": a} for a in accs]}

    assert suc.succeeded(result([None, 0.5, 0.81, 0.7]), "cpu")
    assert not suc.succeeded(result([None, 0.5, 0.79]), "cpu")
    assert not suc.succeeded(result([None, 0.85]), "paper")
    with pytest.raises(ValueError, match="history"):
        suc.succeeded({}, "cpu")
    with pytest.raises(ValueError, match="preset"):
        suc.succeeded(result([0.9]), "gpu")


@pytest.mark.parametrize(
    "kwargs, match",
    [({"preset": "gpu"}, "preset"), ({"optimizer": "lbfgs"}, "optimizer"), ({"activation": "erf"}, "activation"),
     ({"init": "uniform"}, "init")],
)
def test_bad_arguments_raise(kwargs, match):
    args = {"preset": "cpu", "optimizer": "sgd", "activation": "tanh", "init": "gaussian", "depth": 10, "lr": 1e-2,
            "seed": 0, **kwargs}
    with pytest.raises(ValueError, match=match):
        suc.config(**args)
    if "preset" in kwargs:
        with pytest.raises(ValueError, match="preset"):
            dyn.configs(kwargs["preset"])


def mnist_like(name: str, split: str, n: int = 200) -> tuple[torch.Tensor, torch.Tensor]:
    """A small MNIST-shaped data set made here (no download): class k lights row band k."""
    g = torch.Generator().manual_seed(int(split == "test"))
    y = torch.randint(0, 10, (n,), generator=g)
    x = 0.3 * torch.randn(n, 1, 28, 28, generator=g)
    for i, k in enumerate(y.tolist()):
        x[i, 0, 2 * k : 2 * k + 3, 4:24] += 1.0
    return x, y


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:`local_mode` is an experimental feature:FutureWarning")
@pytest.mark.filterwarnings("ignore::ResourceWarning")  # files and processes Ray's node launcher leaves open
def test_paper_jobs_run_through_ray_local_mode(tmp_path, ray_local):
    """Two jobs of the paper grid (N = 500, L = 25; plain SGD on tanh, Adam on ReLU), shortened to one step on 100
    images made here, give on Ray the results they give locally."""
    picked = {}
    for c in suc.configs("paper"):
        key = (c["train"]["optimizer"], c["model"]["activation"])
        if key in {("sgd", "tanh"), ("adam", "relu")} and key not in picked:
            picked[key] = c
    jobs = []
    for c in picked.values():
        c = json.loads(json.dumps(c))
        c["data"] = {"name": "mnist-like", "loader": "test_presets_chang2019:mnist_like", "n": 100}
        c["train"].update(steps=1, eval_every=1, checkpoint_every=1)
        c["train"].pop("eval_subset")
        jobs.append(c)
    assert [j["model"]["depth"] for j in jobs] == [25, 25] and {j["model"]["width"] for j in jobs} == {500}
    on_ray = sweep.run_sweep(jobs, tmp_path / "ray", backend="ray")
    local = sweep.run_sweep(jobs, tmp_path / "local")
    assert [r["status"] for r in on_ray] == ["finished"] * 2
    assert [r["history"] for r in on_ray] == [r["history"] for r in local]
    assert all(len(r["history"][-1]["vni"]) == 25 for r in on_ray)
