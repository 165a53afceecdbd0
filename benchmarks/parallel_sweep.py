"""Benchmark a local sweep: jobs one after another on all threads, against one single-threaded job per core.

The jobs are the depth-ladder chapter's ``cpu`` network (critical Delta-Orthogonal tanh CNN of width
``c = 16`` on Fashion-MNIST, :mod:`signalprop.presets.depth_ladder`) at ``--depth`` layers, shortened
to ``--steps`` steps with one held-out evaluation at the end; ``--jobs`` of them, differing only in
their minibatch seed.  Two ways of running the same sweep, each into a fresh folder:

* ``sequential``: :func:`signalprop.sweep.run_sweep` with ``workers=1`` in this process, with
  ``torch.set_num_threads(cpu_count)`` (the deep block then splits each batch over every core);
* ``parallel``: ``workers=cpu_count`` worker processes with one torch thread each (the default of
  :func:`signalprop.sweep.default_workers`).

Each way is timed end to end (wall clock, including the workers' start-up and data loading), best
of ``--repeats`` runs: the machine may be shared, and the best run is the least disturbed one.
Results go to ``--out`` (JSON, written atomically) with the machine's load average before each run.

Usage: ``.venv/bin/python benchmarks/parallel_sweep.py [--depth 1000 --steps 10 --jobs 2]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import torch
from signalprop import store, sweep
from signalprop.presets import depth_ladder


def _configs(depth: int, steps: int, jobs: int) -> list[dict]:
    base = next(c for c in depth_ladder.configs("cpu") if c["model"]["depth"] == depth)
    out = []
    for seed in range(jobs):
        config = {**base, "train": {**base["train"], "steps": steps, "eval_every": steps, "seed": seed}}
        out.append(config)
    return out


def _time(configs: list[dict], workers: int, threads: int) -> tuple[float, list[dict]]:
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    root = Path(tempfile.mkdtemp(prefix="ttl-parallel-sweep-"))
    try:
        start = time.perf_counter()
        results = sweep.run_sweep(configs, root, workers=workers)
        return time.perf_counter() - start, results
    finally:
        torch.set_num_threads(previous)
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--depth", type=int, default=1000, choices=depth_ladder.DEPTHS["cpu"])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "parallel_sweep.json"))
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    configs = _configs(args.depth, args.steps, args.jobs)
    runs: dict[str, list[dict]] = {"sequential": [], "parallel": []}
    histories = {}
    for _ in range(args.repeats):
        for mode, workers, threads in (("sequential", 1, cores), ("parallel", cores, 1)):
            load = os.getloadavg()[0]
            seconds, results = _time(configs, workers, threads)
            runs[mode].append({"wall_s": seconds, "load_before": load})
            histories[mode] = [r["history"] for r in results]
            print(f"{mode:>10}: {seconds:7.2f} s (load average before: {load:.2f})", flush=True)
    best = {mode: min(r["wall_s"] for r in rs) for mode, rs in runs.items()}
    report = {
        "machine": {"platform": platform.platform(), "cores": cores, "torch": torch.__version__},
        "depth": args.depth,
        "channels": configs[0]["model"]["channels"],
        "steps_per_job": args.steps,
        "jobs": args.jobs,
        "runs": runs,
        "best_wall_s": best,
        "speedup_parallel_over_sequential": best["sequential"] / best["parallel"],
        "same_histories": histories["sequential"] == histories["parallel"],
    }
    store.write_json_atomic(args.out, report)
    print(f"best: sequential {best['sequential']:.2f} s, parallel {best['parallel']:.2f} s, "
          f"speed-up {report['speedup_parallel_over_sequential']:.2f}; histories equal: {report['same_histories']}")


if __name__ == "__main__":
    main()
