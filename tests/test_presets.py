"""Tests of signalprop.presets: the registry of training chapters, their presets and run_or_load.

Chapter-specific checks of each preset module (the paper's depths, widths and data sets)
live in ``tests/test_presets_<module>.py``.  Here: what every chapter must satisfy.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from signalprop import experiment, models, presets, sweep

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
CHAPTERS = sorted(presets.chapter_modules())


def test_every_preset_module_names_an_existing_chapter():
    assert CHAPTERS, "no training chapter registered"
    for chapter in CHAPTERS:
        assert (BOOK / f"{chapter}.md").is_file(), chapter
        module = presets.module_for(chapter)
        assert set(module.DESCRIPTION) == set(presets.PRESETS), chapter


@pytest.mark.parametrize("chapter", CHAPTERS)
@pytest.mark.parametrize("preset", presets.PRESETS)
def test_configs_are_valid_experiments_with_distinct_keys(chapter, preset):
    configs = presets.configs(chapter, preset)
    assert configs, (chapter, preset)
    for config in configs:
        experiment.check_experiment(config)  # raises on an invalid configuration
        json.dumps(config)  # plain JSON
    keys = [sweep.config_key(c) for c in configs]
    assert len(set(keys)) == len(keys), "two jobs of one preset share a configuration"


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_paper_preset_uses_the_papers_data_and_widths(chapter):
    # Xiao et al. (2018), section 3: MNIST or CIFAR-10, width 256 up to depth 256
    # and 128 beyond, 3x3 kernels, tanh, no downsampling inside the deep block.
    for config in presets.configs(chapter, "paper"):
        assert config["data"]["name"] in ("mnist", "cifar10"), config["data"]
        model = {**models.model_config_defaults(), **config["model"]}
        depth = model["depth"]
        width = model["channels"] if model["channels"] is not None else models.paper_width(depth)
        assert width == (256 if depth <= 256 else 128), (depth, width)
        assert model["image_size"] == (28 if config["data"]["name"] == "mnist" else 32)
        assert model["in_channels"] == (1 if config["data"]["name"] == "mnist" else 3)


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_smoke_preset_is_small(chapter):
    for config in presets.configs(chapter, "smoke"):
        assert config["data"]["name"] == "fashion-mnist"
        assert config["data"].get("n_train", 10**9) <= 256
        assert config["data"].get("n_test", 10**9) <= 128
        model = config["model"]
        factory = model.get("factory")
        if factory is None:  # the vanilla CNN of signalprop.models
            assert model["depth"] <= 8 and model.get("channels", 10**9) <= 8
        elif factory == "signalprop.fcnet:FCNet":  # Part IV: depth hidden layers of the given width
            assert model["depth"] <= 8 and model["width"] <= 8
        elif factory == "signalprop.plainnet:build":  # Part V: 6n + 2 layers, widths (16, 32, 64) x width
            assert model["n"] <= 1 and model["width"] <= 0.25
        else:
            raise AssertionError(f"no size rule for the model factory {factory!r}")
        assert config["train"]["steps"] <= 20


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_cpu_preset_runs_on_the_offline_data_set(chapter):
    for config in presets.configs(chapter, "cpu"):
        assert config["data"]["name"] == "fashion-mnist"


def test_unknown_chapter_and_preset_raise():
    with pytest.raises(ValueError, match="no presets for chapter"):
        presets.configs("xiao2018/no_such_chapter", "cpu")
    with pytest.raises(ValueError, match="preset must be one of"):
        presets.configs(CHAPTERS[0], "huge")


def test_missing_results_are_an_error_naming_the_command(tmp_path):
    chapter = CHAPTERS[0]
    with pytest.raises(FileNotFoundError, match=f"python3 tasks.py run {chapter} smoke"):
        presets.run_or_load(chapter, "smoke", tmp_path, allow_training=False)


def test_results_dir_layout(tmp_path):
    assert presets.results_dir(tmp_path, "xiao2018/trainability", "cpu") == tmp_path / "trainability" / "cpu"


@pytest.mark.parametrize(
    ("env", "backend", "address"),
    [(None, "local", None), ("auto", "ray", "auto"), ("10.0.0.1:6379", "ray", "10.0.0.1:6379")],
)
def test_missing_jobs_go_to_ray_when_an_address_is_given(tmp_path, monkeypatch, env, backend, address):
    calls = []
    monkeypatch.setattr(sweep, "run_sweep", lambda configs, root, **kw: calls.append(kw))
    if env is None:
        monkeypatch.delenv("TTL_RAY_ADDRESS", raising=False)
    else:
        monkeypatch.setenv("TTL_RAY_ADDRESS", env)
    chapter = CHAPTERS[0]
    rows = presets.run_or_load(chapter, "smoke", tmp_path, allow_training=True)
    assert len(calls) == 1 and calls[0]["backend"] == backend and calls[0]["ray_address"] == address
    assert [r["status"] for r in rows] == ["missing"] * len(presets.configs(chapter, "smoke"))
