"""Run some jobs of a chapter's preset on one CUDA GPU, several at once, each step replayed from a CUDA graph.

The deep block of a 10,000-layer network launches about ten small kernels per layer and step, so on a GPU
a step costs launch overhead, not arithmetic.  This script runs each selected job in its own process with
``cuda_graph=True`` and checkpoints every ``--checkpoint-every`` steps (operational settings: the job's key
and identity do not change), in job folders under ``--work``.  At ``--deadline`` seconds the jobs still
running are stopped; a later call with the same ``--work`` resumes them from their checkpoints (on a lent GPU
machine that folder survives between calls while the machine stays warm).  Finished results are copied to
``OUT/<key>/``, the layout of the chapter's result folder.  An optional timed probe (``--probe-steps``)
comes first: when the jobs could not finish before the deadline, nothing else runs.

Usage::

    python3 scripts/run_on_gpu.py xiao2018/depth_ladder cpu --depth 10000 --out OUT [--deadline 540]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
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
    parser.add_argument("--work", default="/tmp/ttl_gpu_jobs", help="job folders with checkpoints (kept)")
    parser.add_argument("--checkpoint-every", type=int, default=100, help="steps between checkpoints")
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
    # the jobs share the GPU; count on a 1.5-fold gain from running them together at most
    if projected / 1.5 > left:
        print(json.dumps({"not_run": "the jobs would not finish before the deadline", "left_s": left}), flush=True)
        return 3

    work = Path(args.work)
    procs = {}
    for config in jobs:
        key = sweep.config_key(config)
        config = {
            **config,
            "train": {**config["train"], "cuda_graph": cuda, "checkpoint_every": args.checkpoint_every},
        }
        (work / key).mkdir(parents=True, exist_ok=True)
        cfg_path = work / f"{key}.json"
        cfg_path.write_text(json.dumps(config))
        cmd = [sys.executable, "-m", "signalprop.experiment", "--config", str(cfg_path), "--out", str(work / key),
               "--device", device, "--progress"]  # fmt: skip
        procs[key] = subprocess.Popen(cmd)  # one process per job: its own CUDA context, killed cleanly at the deadline
    status = {}
    while procs:
        for key, proc in list(procs.items()):
            if proc.poll() is not None:
                status[key] = proc.returncode
                del procs[key]
        if time.perf_counter() - START > args.deadline:
            for key, proc in procs.items():  # resumable: the next call with the same --work continues
                proc.terminate()
                proc.wait()
                status[key] = "stopped at the deadline"
            procs = {}
        time.sleep(2)
    for config in jobs:
        key = sweep.config_key(config)
        result = work / key / "result.json"
        if result.exists():
            (out / key).mkdir(exist_ok=True)
            shutil.copy(result, out / key / "result.json")
            shutil.copy(work / key / "config.json", out / key / "config.json")
            final = json.loads(result.read_text())["final"] or {}
            print(json.dumps({"key": key, "variant": config["meta"].get("variant"), "finished": True,
                              "test_accuracy": final.get("test_accuracy")}), flush=True)  # fmt: skip
        else:
            print(json.dumps({"key": key, "variant": config["meta"].get("variant"), "finished": False,
                              "exit": status.get(key)}), flush=True)  # fmt: skip
    return 0 if all(code == 0 for code in status.values()) else 1


START = time.perf_counter()

if __name__ == "__main__":
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    sys.exit(main())
