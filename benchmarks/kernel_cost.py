#!/usr/bin/env python3
"""Time the generation of Algorithm 1 orthogonal convolution kernels (Xiao et al. 2018, App. C.1).

For every kernel size ``k`` and channel count ``c`` this times
``signalprop.init.orthogonal_kernel(k, c, c, dims=2)`` a few times and keeps the
median; it also times one random symmetric projection of size ``c`` (the
``O(c^3)`` building block, needed ``2 (k - 1)`` times per kernel).  Results and
machine information are written atomically as JSON, by default to
``book/xiao2018/data/kernel_cost.json``, which the chapter
``book/xiao2018/kernel_cost.md`` loads (the chapter never times anything itself).

Usage::

    python benchmarks/kernel_cost.py                 # the book's grid
    python benchmarks/kernel_cost.py --threads 1 --repeats 7 --out /tmp/kc.json

Sizes whose predicted time (the median of the previous, smaller ``c`` with the
same ``k``, scaled by ``(c / c_prev)^3``) exceeds ``--max-seconds`` are skipped
and listed.  By default torch runs on one thread: on a shared machine,
multi-threaded LAPACK calls under contention can be tens of times slower than
single-threaded ones, which would hide the arithmetic cost this measures.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from signalprop import init
from tqdm import tqdm

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "book" / "xiao2018" / "data" / "kernel_cost.json"


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo, or platform.processor(), or "unknown"."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def time_call(fn, repeats: int) -> list[float]:
    """Wall-clock seconds of ``repeats`` calls of ``fn`` (perf_counter)."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def write_json_atomically(data: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2, sort_keys=True)
            fh.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 2, 3, 5, 7], help="kernel sizes k (k x k)")
    parser.add_argument("--cs", type=int, nargs="+", default=[8, 16, 32, 64, 128, 256], help="channels c_in = c_out")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per size (the median is kept)")
    parser.add_argument("--max-seconds", type=float, default=20.0, help="skip sizes predicted to take longer")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch.set_num_threads; 0 keeps torch's default (default: 1)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if args.threads < 0:
        parser.error("--threads must be >= 0")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(args.seed)

    init.orthogonal_kernel(3, 8, 8, generator=gen)  # warm-up: first-call overheads of torch and LAPACK
    load_before = os.getloadavg() if hasattr(os, "getloadavg") else None

    projections = []
    for c in tqdm(sorted(args.cs), desc="projections", file=sys.stderr):
        times = time_call(lambda c=c: init.random_symmetric_projection(c, generator=gen), args.repeats)
        projections.append({"c": c, "median_s": statistics.median(times), "times_s": times})

    results, skipped = [], []
    grid = [(k, c) for k in sorted(args.ks) for c in sorted(args.cs)]
    for k, c in tqdm(grid, desc="kernels", file=sys.stderr):
        done = [r for r in results if r["k"] == k]
        if done:
            predicted = done[-1]["median_s"] * (c / done[-1]["c"]) ** 3
            if predicted > args.max_seconds:
                skipped.append({"k": k, "c": c, "predicted_s": predicted})
                continue
        times = time_call(lambda k=k, c=c: init.orthogonal_kernel(k, c, c, dims=2, generator=gen), args.repeats)
        results.append({"k": k, "c": c, "kc": k * c, "median_s": statistics.median(times), "times_s": times})

    data = {
        "description": "Median wall-clock seconds of signalprop.init.orthogonal_kernel(k, c, c, dims=2) "
        "(float32 result, float64 construction) and of random_symmetric_projection(c)",
        "command": "python benchmarks/kernel_cost.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": {
            "cpu_model": cpu_model(),
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "torch_version": torch.__version__,
            "python_version": platform.python_version(),
            "platform": platform.platform(),
            "load_average_1min_before_after": [
                None if load_before is None else round(load_before[0], 2),
                round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
            ],
        },
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "seed": args.seed,
        "repeats": args.repeats,
        "max_seconds": args.max_seconds,
        "kernels": results,
        "projections": projections,
        "skipped": skipped,
    }
    write_json_atomically(data, args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
