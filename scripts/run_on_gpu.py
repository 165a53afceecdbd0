"""Run some jobs of a chapter's preset on one CUDA GPU, several at once, each step replayed from a CUDA graph.

The deep block of a 10,000-layer network launches about ten small kernels per layer and step, so on a GPU
a step costs launch overhead, not arithmetic.  This script runs each selected job in its own thread and CUDA
stream (so the kernels of different jobs can overlap on the GPU) with ``cuda_graph=True`` (an operational
setting: the job's key and identity do not change) and writes every result to ``OUT/<key>/result.json``,
the layout of the chapter's result folder.  A short timed probe comes first: when the jobs would not finish
within ``--budget`` seconds, nothing else runs.

Usage::

    python3 scripts/run_on_gpu.py xiao2018/depth_ladder cpu --depth 10000 --out OUT [--deadline 540]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
import traceback
from pathlib import Path

import torch
from signalprop import experiment, presets, sweep, train


def _probe(config: dict, steps: int, device: str) -> float:
    """Seconds per training step of ``config`` (graph replay), from the difference of two short runs."""
    cfg = experiment.check_experiment(config)
    train_data, _ = experiment.load_experiment_data({**cfg["data"], "n_train": 640, "n_test": 10, "stratified": True})
    times = []
    for n in (2, 5, 5 + steps):  # the first run pays for start-up (kernels, allocator) and is not used
        model = experiment.build_experiment_model(cfg["model"], 0, device, calibration=train_data[0])
        tcfg = {**cfg["train"], "steps": n, "eval_every": n, "cuda_graph": True, "checkpoint_every": 0}
        t = time.perf_counter()
        train.train(model, train_data, None, tcfg, device=device, progress=False)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return (times[2] - times[1]) / steps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("chapter")
    parser.add_argument("preset")
    parser.add_argument("--depth", type=int, required=True, help="run the jobs of this depth")
    parser.add_argument("--out", required=True)
    parser.add_argument("--deadline", type=float, default=540.0, help="seconds from the start by which all must end")
    parser.add_argument("--probe-steps", type=int, default=20, help="0: no probe (the seconds per step are known)")
    parser.add_argument("--variant", default=None, help="only the jobs of this variant (meta.variant)")
    parser.add_argument("--device", default="cuda", help="cuda (the point of this script) or cpu (to try it)")
    args = parser.parse_args(argv)
    device = args.device
    cuda = device.startswith("cuda")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    jobs = [
        c
        for c in presets.configs(args.chapter, args.preset)
        if c["model"]["depth"] == args.depth and args.variant in (None, c["meta"].get("variant"))
    ]
    if not jobs:
        raise SystemExit(f"no jobs of depth {args.depth}")
    print(
        json.dumps(
            {"gpu": torch.cuda.get_device_name(0) if cuda else None, "torch": torch.__version__, "jobs": len(jobs)}
        ),
        flush=True,
    )

    projected, left = 0.0, 1.0
    if args.probe_steps > 0:
        per_step = _probe(jobs[0], args.probe_steps, device)
        steps = jobs[0]["train"]["steps"]
        projected = per_step * steps * len(jobs)
        print(json.dumps({"seconds_per_step_one_job": per_step, "projected_serial_s": projected}), flush=True)
        left = args.deadline - (time.perf_counter() - START) - 60  # a minute for evaluations and writing
    # the jobs overlap on the GPU (one stream each); count on a 1.5-fold gain at most
    if projected / 1.5 > left:
        print(json.dumps({"not_run": "the jobs would not finish before the deadline", "left_s": left}), flush=True)
        return 3

    errors: list[str] = []

    def run(config: dict) -> None:
        key = sweep.config_key(config)
        config = {**config, "train": {**config["train"], "cuda_graph": True, "checkpoint_every": 0}}
        try:
            t = time.perf_counter()
            if cuda:
                with torch.cuda.stream(torch.cuda.Stream()):
                    result = experiment.run_experiment(config, out / key, device=device, progress=True)
                    torch.cuda.synchronize()
            else:
                result = experiment.run_experiment(config, out / key, device=device, progress=True)
            final = result["final"] or {}
            print(json.dumps({"key": key, "variant": config["meta"].get("variant"), "status": result["status"],
                              "test_accuracy": final.get("test_accuracy"), "wall_s": time.perf_counter() - t}),
                  flush=True)  # fmt: skip
        except Exception:  # reported, the other jobs go on
            errors.append(traceback.format_exc())
            print(errors[-1], flush=True)

    threads = [threading.Thread(target=run, args=(c,)) for c in jobs]
    t0 = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    print(json.dumps({"all_jobs_wall_s": time.perf_counter() - t0, "errors": len(errors)}), flush=True)
    for p in out.glob("*/checkpoint.pt"):
        p.unlink()
    return 1 if errors else 0


START = time.perf_counter()

if __name__ == "__main__":
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    sys.exit(main())
