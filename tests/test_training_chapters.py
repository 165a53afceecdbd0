"""The training chapters of Part III, executed for real at the ``smoke`` preset, and the stored
``cpu``-preset results re-run for their first steps.

1. Every chapter registered in :mod:`signalprop.presets` is executed through papermill at
   ``PRESET="smoke"`` with training allowed, on a synthetic data set written here in the real
   Fashion-MNIST IDX format (``TTL_DATA`` points at it) and with results in a temporary folder.
2. Every stored ``cpu``-preset result under ``book/*/results/*/cpu/`` is re-run from its own
   configuration for its first steps: the minibatch losses must equal the stored ``trace``, so the
   book's numbers are shown to come from this code.  Only the held-out subset is shrunk (it does
   not enter the training steps) and the run stops after three steps.
"""

from __future__ import annotations

import copy
import gzip
import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from signalprop import presets, train

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
CHAPTERS = sorted(presets.chapter_modules())
STORED = sorted(BOOK.glob("*/results/*/cpu/*/result.json"))


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


@pytest.mark.slow
@pytest.mark.parametrize("path", STORED, ids=[str(p.relative_to(BOOK).parent) for p in STORED])
def test_stored_cpu_result_reruns_to_its_first_losses(path, tmp_path):
    stored = json.loads(path.read_text())
    config = copy.deepcopy(stored["config"])
    k = min(3, len(stored["trace"]))
    assert k > 0, "a stored result without a trace"
    config["train"].update(steps=k, eval_every=k, checkpoint_every=0)
    config["data"]["n_test"] = 10  # held-out data do not enter the training steps (10: stratified subsets)
    threads = torch.get_num_threads()
    torch.set_num_threads(int(stored["provenance"]["torch_threads"]))
    try:
        result = train.run_experiment(config, tmp_path / "rerun", progress=False, device="cpu")
    finally:
        torch.set_num_threads(threads)
    # Same code, data, seeds and thread count: equal up to the last bits that another CPU's
    # SIMD code path may change.
    assert result["trace"] == pytest.approx(stored["trace"][:k], rel=1e-5, abs=0)

