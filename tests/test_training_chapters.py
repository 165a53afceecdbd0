"""The training chapters (Parts III-V), executed for real at the ``smoke`` preset, and the stored
``cpu``-preset results re-run for their first steps.

1. Every chapter registered in :mod:`signalprop.presets` is executed through papermill at
   ``PRESET="smoke"`` with training allowed, on a synthetic data set written here in the real
   Fashion-MNIST IDX format (``TTL_DATA`` points at it) and with results in a temporary folder.
2. Stored ``cpu``-preset results under ``book/*/results/*/cpu/`` are re-run from their own
   configurations for their first steps: the minibatch losses must equal the stored ``trace``, so the
   book's numbers are shown to come from this code.  Only the held-out subset is shrunk (it does
   not enter the training steps) and the run stops after three steps.  By default at most
   ``RERUN_PER_CHAPTER`` runs of each chapter, evenly spaced in sorted order, are re-run (a chapter
   with hundreds of runs would take most of the CI's time); ``TTL_RERUN_ALL=1`` re-runs every one.
"""

from __future__ import annotations

import copy
import gzip
import json
import os
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from signalprop import experiment, presets, train

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
CHAPTERS = sorted(presets.chapter_modules())
STORED = sorted(BOOK.glob("*/results/*/cpu/*/result.json"))
#: Stored runs re-run per chapter by default: an evenly spaced sample of its sorted runs (all with TTL_RERUN_ALL=1).
RERUN_PER_CHAPTER = 40


def _rerun_sample(paths: list[Path]) -> list[Path]:
    """At most ``RERUN_PER_CHAPTER`` stored runs of every chapter, evenly spaced in sorted order (deterministic)."""
    if os.environ.get("TTL_RERUN_ALL") == "1":
        return paths
    by_chapter: dict[Path, list[Path]] = {}
    for p in paths:
        by_chapter.setdefault(p.parents[2], []).append(p)
    out = []
    for runs in by_chapter.values():
        picks = np.unique(np.linspace(0, len(runs) - 1, min(len(runs), RERUN_PER_CHAPTER)).round().astype(int))
        out += [runs[i] for i in picks]
    return sorted(out)


RERUN = _rerun_sample(STORED)


def _write_idx(path: Path, array: np.ndarray) -> None:
    codes = {np.dtype(np.uint8): 0x08}
    header = struct.pack(">HBB", 0, codes[array.dtype], array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.tobytes())


@pytest.fixture(scope="module")
def synthetic_fashion_mnist(tmp_path_factory) -> Path:
    """A learnable 10-class stand-in for Fashion-MNIST: class k is a bright bar at a k-dependent place."""
    root = tmp_path_factory.mktemp("data")
    folder = root / "fashion-mnist"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 512), ("t10k", 256)):
        labels = np.arange(n) % 10
        rng.shuffle(labels)
        images = rng.integers(0, 60, size=(n, 28, 28))
        for i, k in enumerate(labels):
            r = 2 + 2 * k
            images[i, r : r + 3, 4:24] += 180
        _write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images.astype(np.uint8))
        _write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels.astype(np.uint8))
    return root


@pytest.mark.slow
@pytest.mark.parametrize("chapter", CHAPTERS)
def test_chapter_runs_at_the_smoke_preset(chapter, synthetic_fashion_mnist, tmp_path, monkeypatch):
    papermill = pytest.importorskip("papermill")
    import jupytext

    md = BOOK / f"{chapter}.md"
    source = tmp_path / "chapter.ipynb"
    jupytext.write(jupytext.read(md), source)
    monkeypatch.setenv("TTL_DATA", str(synthetic_fashion_mnist))
    results = tmp_path / "results"
    out = tmp_path / "executed.ipynb"
    papermill.execute_notebook(
        str(source),
        str(out),
        parameters={"PRESET": "smoke", "ALLOW_TRAINING": True, "RESULTS": str(results)},
        cwd=str(md.parent),
        kernel_name="python3",
        progress_bar=False,
    )
    configs = presets.configs(chapter, "smoke")
    stored = list(presets.results_dir(results, chapter, "smoke").glob("*/result.json"))
    assert len(stored) == len(configs)
    for path in stored:
        assert json.loads(path.read_text())["status"] in ("finished", "diverged")


def test_there_are_stored_cpu_results():
    assert STORED, "no stored cpu-preset results under book/*/results/*/cpu/"


_LAST_DATA: dict[str, tuple] = {}


def _data(section: dict) -> tuple:
    """``experiment.load_experiment_data(section)``, remembered for the next call with the same section.

    The stored runs are collected in sorted order, so runs of one chapter, which share their data
    section, follow each other: one cached entry saves reading and standardising the training set
    again for every run (most of a re-run's time).
    """
    key = json.dumps(section, sort_keys=True)
    if key not in _LAST_DATA:
        _LAST_DATA.clear()
        _LAST_DATA[key] = experiment.load_experiment_data(section)
    return _LAST_DATA[key]


def _first_losses(config: dict, steps: int, threads: int, perturb: float = 0.0) -> list[float]:
    """The first ``steps`` minibatch losses of ``config``, with every initial parameter scaled by
    ``1 + perturb * (+-1)`` (random signs, seeded) to measure the run's sensitivity to rounding."""
    cfg = train.TrainConfig.from_dict({**config["train"], "steps": steps, "eval_every": steps, "checkpoint_every": 0})
    train_data, test_data = _data(config["data"])
    init_seed = cfg.seed if cfg.init_seed is None else cfg.init_seed
    model = experiment.build_experiment_model(config["model"], init_seed, "cpu", calibration=train_data[0])
    if perturb:
        g = torch.Generator().manual_seed(12345)
        with torch.no_grad():
            for p in model.parameters():
                signs = torch.randint(0, 2, p.shape, generator=g).to(p.dtype) * 2 - 1
                p.mul_(1 + perturb * signs)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return train.train(model, train_data, test_data, cfg, device="cpu", progress=False)["trace"]
    finally:
        torch.set_num_threads(previous)


@pytest.mark.slow
@pytest.mark.parametrize("path", RERUN, ids=[str(p.relative_to(BOOK).parent) for p in RERUN])
def test_stored_cpu_result_reruns_to_its_first_losses(path):
    stored = json.loads(path.read_text())
    config = copy.deepcopy(stored["config"])
    k = min(3, len(stored["trace"]))
    assert k > 0, "a stored result without a trace"
    config["data"]["n_test"] = 10  # held-out data do not enter the training steps (10: stratified subsets)
    config["train"].pop("eval_subset", None)  # (nor does the held-out subset of the intermediate records)
    threads = int(stored["provenance"]["torch_threads"])
    rerun = np.array(_first_losses(config, k, threads))
    expected = np.array(stored["trace"][:k])
    if np.array_equal(rerun, expected):  # same code, data, seeds, threads and CPU: bit for bit
        return
    # Another CPU takes other SIMD code paths, which changes the last bits of every layer. A network in
    # the chaotic phase amplifies such differences exponentially with depth (by about chi_1^(L/2)), so the
    # tolerance is the run's own measured sensitivity: the change of its losses when every initial
    # parameter moves by two float32 ulps (2.4e-7 relative), times 20, plus 1e-5 relative. A trajectory that is
    # sensitive at one step stays so at the next (the difference is carried by the parameters), but one perturbed
    # run can land close to the original by chance at a later step: the sensitivity of a step is the largest
    # measured up to it (a depth-160, sigma_w2 = 3 network measured 0.026, 0.098 and 0.002 at steps 1-3 on an
    # AVX-512 CPU, while its stored losses differed by 0.037, 0.010 and 0.12).
    sensitivity = np.abs(np.array(_first_losses(config, k, threads, perturb=2.0**-22)) - rerun)
    tolerance = 1e-5 * np.abs(expected) + 20 * np.maximum.accumulate(sensitivity)
    assert np.all(np.abs(rerun - expected) <= tolerance), (rerun, expected, sensitivity)


def _cheapest_stored_run() -> Path:
    """The stored depth-ladder run with the least wall time (a 10-layer network, about half a minute)."""
    ladder = [p for p in STORED if "depth_ladder" in p.parts]
    return min(ladder, key=lambda p: json.loads(p.read_text())["provenance"]["wall_time_s"])


@pytest.mark.slow
def test_cheapest_stored_run_reruns_to_its_final_metrics(tmp_path):
    stored = json.loads(_cheapest_stored_run().read_text())
    rerun = experiment.run_experiment(stored["config"], tmp_path / "rerun", device="cpu", progress=False)
    assert rerun["status"] == stored["status"] == "finished"
    assert [h["step"] for h in rerun["history"]] == [h["step"] for h in stored["history"]]
    assert rerun["readout_scale"] == pytest.approx(stored["readout_scale"], rel=1e-5)
    final, ref = rerun["final"], stored["final"]
    if final == ref:  # same CPU code paths and threads: bit for bit
        return
    # Another CPU rounds the last bits differently; over 1,500 steps of SGD the trajectories drift apart, but
    # they stay statistically equivalent. Two points of accuracy on 10,000 test images are about the spread
    # between seeds; a broken pipeline (chance, 10 %, or a collapsed network) is far outside it.
    assert abs(final["test_accuracy"] - ref["test_accuracy"]) <= 0.02
    assert final["test_loss"] == pytest.approx(ref["test_loss"], rel=0.05)
