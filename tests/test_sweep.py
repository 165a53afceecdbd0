"""Tests of signalprop.sweep: job keys, grids, skipping and resuming jobs, tables, and the Ray backend."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import time

import numpy as np
import pytest
import torch
from signalprop import experiment as E
from signalprop import store as S
from signalprop import sweep
from torch import nn

# --- a tiny experiment, importable by path (``"test_sweep:..."``) ---------------------------------

CRASH = {"at": None}


class Interrupted(Exception):
    pass


class _MaybeCrashing(nn.Sequential):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and CRASH["at"] is not None:
            CRASH["calls"] = CRASH.get("calls", 0) + 1
            if CRASH["calls"] == CRASH["at"]:
                raise Interrupted
        return super().forward(x)


def blobs(name: str, split: str, n: int = 48) -> tuple[torch.Tensor, torch.Tensor]:
    means = 2.0 * torch.randn(3, 16, generator=torch.Generator().manual_seed(99))
    g = torch.Generator().manual_seed(int(split == "test"))
    y = torch.randint(0, 3, (n,), generator=g)
    return (means[y] + torch.randn(n, 16, generator=g)).view(n, 1, 4, 4), y


def tiny_mlp(hidden: int = 6) -> nn.Module:
    return _MaybeCrashing(nn.Flatten(), nn.Linear(16, hidden), nn.Tanh(), nn.Linear(hidden, 3))


BASE = {
    "data": {"name": "blobs", "loader": "test_sweep:blobs"},
    "model": {"factory": "test_sweep:tiny_mlp"},
    "train": {"batch_size": 12, "steps": 20, "eval_every": 5, "checkpoint_every": 5},
}


@pytest.fixture(autouse=True)
def _no_crash():
    CRASH.clear()
    CRASH["at"] = None
    yield
    CRASH.clear()
    CRASH["at"] = None


def fake_runner(calls: list, config: dict, directory) -> dict:
    """Stands in for run_experiment: records the call and writes a finished result."""
    calls.append(config)
    result = minimal_result(config)
    S.write_json_atomic(directory / S.RESULT_NAME, result)
    return result


def minimal_result(config: dict) -> dict:
    """The smallest result document the store accepts: one record after one step."""
    record = {"step": 1, "epoch": 0.5, "train_loss": 1.0, "train_accuracy": 0.5, "test_loss": 1.1, "test_accuracy": 0.4}
    return {
        "schema": S.SCHEMA,
        "config": config,
        "config_sha256": S.config_sha256(config),
        "status": "finished",
        "steps_completed": 1,
        "diverged_at_step": None,
        "history": [record],
        "trace": [1.0],
        "final": dict(record),
        "provenance": {},
    }


# --- keys and grids ------------------------------------------------------------------------------


def test_key_is_the_sha256_of_the_sorted_compact_json():
    config = {"b": 1, "a": {"y": [1, 2.5], "x": "s"}}
    text = '{"a":{"x":"s","y":[1,2.5]},"b":1}'
    assert sweep.config_key(config) == hashlib.sha256(text.encode()).hexdigest()[:12]
    assert sweep.config_key(config, length=64) == hashlib.sha256(text.encode()).hexdigest()
    assert sweep.config_key({"a": {"x": "s", "y": [1, 2.5]}, "b": 1}) == sweep.config_key(config)
    assert sweep.config_key({**config, "b": 2}) != sweep.config_key(config)
    assert sweep.job_dir("/r", config).name == sweep.config_key(config)


def test_key_of_a_non_json_configuration_raises():
    with pytest.raises(ValueError, match="not plain JSON"):
        sweep.config_key({"lr": float("nan")})


def test_key_length_out_of_range_raises():
    with pytest.raises(ValueError, match="length must be an integer in 1..64"):
        sweep.config_key({}, length=0)


def test_grid_is_the_cartesian_product():
    base = {"train": {"steps": 5}, "model": {"depth": 4}}
    configs = sweep.grid(base, train__lr=[0.1, 0.01], **{"model.depth": [8, 16, 32]}, meta__tag=["x"])
    assert len(configs) == 6
    assert [(c["train"]["lr"], c["model"]["depth"]) for c in configs] == [
        (lr, d) for lr in (0.1, 0.01) for d in (8, 16, 32)
    ]
    assert all(c["train"]["steps"] == 5 and c["meta"] == {"tag": "x"} for c in configs)
    assert base == {"train": {"steps": 5}, "model": {"depth": 4}}
    assert sweep.grid(base) == [base]


def test_grid_takes_numpy_arrays_as_plain_numbers():
    configs = sweep.grid({}, train__lr=np.logspace(-3, -1, 3), train__steps=np.arange(1, 3))
    assert [(c["train"]["lr"], c["train"]["steps"]) for c in configs] == [
        (lr, s) for lr in (0.001, 0.01, 0.1) for s in (1, 2)
    ]
    assert all(type(c["train"]["steps"]) is int for c in configs)
    assert len({sweep.config_key(c) for c in configs}) == 6


def test_grid_axis_without_values_raises():
    with pytest.raises(ValueError, match="has no values"):
        sweep.grid({}, train__lr=[])


def test_grid_axis_given_as_a_string_raises():
    with pytest.raises(ValueError, match="must be a list of values"):
        sweep.grid({}, optimizer="adam")


def test_grid_axis_through_a_value_raises():
    with pytest.raises(ValueError, match="not an object"):
        sweep.grid({"train": 3}, train__lr=[0.1])


def test_grid_axis_with_an_empty_path_part_raises():
    with pytest.raises(ValueError, match="is not a key path"):
        sweep.grid({}, **{"train..lr": [0.1]})


# --- running -------------------------------------------------------------------------------------


def test_finished_jobs_are_skipped(tmp_path):
    configs = sweep.grid({"x": 0}, x=[1, 2, 3])
    calls: list = []
    runner = functools.partial(fake_runner, calls)
    first = sweep.run_sweep([*configs, configs[0]], tmp_path, runner=runner)
    assert calls == configs  # the duplicate ran once
    assert [r["config"] for r in first] == [*configs, configs[0]]
    for config in configs:
        directory = sweep.job_dir(tmp_path, config)
        assert json.loads((directory / "config.json").read_text()) == config
    calls.clear()
    assert sweep.run_sweep(configs, tmp_path, runner=runner) == first[:3]
    assert calls == []
    (sweep.job_dir(tmp_path, configs[1]) / S.RESULT_NAME).unlink()
    sweep.run_sweep(configs, tmp_path, runner=runner)
    assert calls == [configs[1]]


def test_unknown_backend_raises(tmp_path):
    with pytest.raises(ValueError, match="unknown backend 'slurm'"):
        sweep.run_sweep([BASE], tmp_path, backend="slurm")


def test_a_stopped_sweep_resumes_where_it_stopped(tmp_path):
    configs = sweep.grid(BASE, train__lr=[0.05, 0.2])
    CRASH["at"] = 20 + 13  # the first job runs its 20 steps, the second stops at its 13th
    with pytest.raises(Interrupted):
        sweep.run_sweep(configs, tmp_path)
    first, second = (sweep.job_dir(tmp_path, c) for c in configs)
    assert (first / S.RESULT_NAME).exists() and not (second / S.RESULT_NAME).exists()
    assert S.load_checkpoint(second / S.CHECKPOINT_NAME)["step"] == 10
    CRASH["at"] = None
    ran: list = []

    def counting_runner(config, directory):
        ran.append(config)
        return E.run_experiment(config, directory, device="cpu")

    results = sweep.run_sweep(configs, tmp_path, runner=counting_runner)
    assert ran == [configs[1]]
    assert results[1]["resumed_from_steps"] == [10]
    straight = E.run_experiment(configs[1], tmp_path / "straight", device="cpu")
    assert results[1]["history"] == straight["history"]


def test_collect_makes_a_table(tmp_path):
    configs = sweep.grid(BASE, train__lr=[0.05, 0.2, 0.4])
    results = sweep.run_sweep(configs[:2], tmp_path)
    sweep.job_dir(tmp_path, configs[2]).mkdir()
    rows = sweep.collect(tmp_path, configs)
    assert [r["status"] for r in rows] == ["finished", "finished", "interrupted"]  # nobody holds its lock
    assert [r["train.lr"] for r in rows] == [0.05, 0.2, 0.4]
    assert rows[0]["data.loader"] == "test_sweep:blobs" and rows[0]["train.steps"] == 20
    for row, result in zip(rows, results, strict=False):
        assert row["key"] == sweep.config_key(result["config"])
        assert row["test_accuracy"] == result["final"]["test_accuracy"] and row["step"] == 20
        assert row["history"] == result["history"] and row["steps_completed"] == 20
    assert rows[2]["test_accuracy"] is None and rows[2]["history"] == []
    assert sweep.collect(tmp_path / "nowhere", configs[:1])[0]["status"] == "missing"


def test_collect_refuses_clashing_columns(tmp_path):
    with pytest.raises(ValueError, match=r"clash with the table's own columns"):
        sweep.collect(tmp_path, [{"status": 1}])


# --- parallel local workers ----------------------------------------------------------------------


def test_default_workers_is_one_job_per_core():
    cores = os.cpu_count() or 1
    assert sweep.default_workers(1) == 1 and sweep.default_workers(0) == 1
    assert sweep.default_workers(1000) == (1 if torch.cuda.is_available() else cores)
    with pytest.raises(ValueError, match="n_jobs must be a non-negative integer"):
        sweep.default_workers(-1)


@pytest.mark.parametrize("workers", [0, -2, 1.5, True])
def test_bad_worker_count_raises(tmp_path, workers):
    with pytest.raises(ValueError, match="workers must be a positive integer or None"):
        sweep.run_sweep([BASE], tmp_path, workers=workers)


@pytest.mark.slow
def test_parallel_workers_give_the_single_threaded_results(tmp_path):
    configs = sweep.grid(BASE, train__lr=[0.05, 0.2, 0.4])
    parallel = sweep.run_sweep(configs, tmp_path / "parallel", workers=2)
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        serial = sweep.run_sweep(configs, tmp_path / "serial", workers=1)
    finally:
        torch.set_num_threads(previous)
    assert [r["history"] for r in parallel] == [r["history"] for r in serial]
    assert [r["trace"] for r in parallel] == [r["trace"] for r in serial]
    assert all(r["provenance"]["torch_threads"] == 1 for r in parallel)
    assert {p.name for p in (tmp_path / "parallel").iterdir()} == {sweep.config_key(c) for c in configs}


@pytest.mark.slow
def test_an_error_in_a_worker_propagates_after_the_other_jobs(tmp_path):
    configs = sweep.grid(BASE, train__lr=[0.05, 0.2])
    broken = {**configs[1], "model": {"factory": "test_sweep:no_such_factory"}}
    with pytest.raises(ValueError, match="cannot import model factory"):
        sweep.run_sweep([broken, configs[0]], tmp_path, workers=2)
    assert sweep.collect(tmp_path, [configs[0]])[0]["status"] == "finished"


# --- Ray -----------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:`local_mode` is an experimental feature:FutureWarning")
@pytest.mark.filterwarnings("ignore::ResourceWarning")  # files and processes Ray's node launcher leaves open
def test_ray_local_mode_runs_the_same_jobs(tmp_path, ray_local):
    configs = sweep.grid(BASE, train__lr=[0.05, 0.2])
    t0 = time.perf_counter()
    on_ray = sweep.run_sweep(configs, tmp_path / "ray", backend="ray")
    assert time.perf_counter() - t0 < 60
    local = sweep.run_sweep(configs, tmp_path / "local")
    assert [r["history"] for r in on_ray] == [r["history"] for r in local]
    assert [r["status"] for r in on_ray] == ["finished", "finished"]
    assert sweep.run_sweep(configs, tmp_path / "ray", backend="ray") == on_ray  # nothing left to run
