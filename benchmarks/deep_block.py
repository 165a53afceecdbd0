"""Benchmark the deep tanh block: straightforward reference against :mod:`signalprop.deepblock`.

For each configuration (depth, channels, batch, image size, padding) this measures the
time of one training step (forward + backward of ``sum(block(x))``) per layer and the
achieved GFLOP/s, for

* ``reference``: the straightforward stack (per layer ``circular_pad`` + ``conv2d`` + ``tanh``
  under autograd, :meth:`DeepTanhBlock.reference_forward`), timed on at most ``--ref-depth``
  layers (its cost per layer does not depend on depth);
* ``fast``: :func:`signalprop.deepblock.deep_tanh_block` with the batch split over
  ``--threads`` CPU threads (the default of the library);
* ``fast_1slice``: the same with one slice and torch's own intra-op threads;
* ``fast_addmm``: ``fast`` with oneDNN disabled (``torch.backends.mkldnn.enabled = False``), i.e. the
  generic path of the block (``index_select`` + ``addmm`` + ``tanh`` per layer, Python loops) that float64 and
  GPU tensors take, for a before/after comparison of the CPU float32 path in the same run;

and, in the same run and process, the machine's throughput on one large dense convolution of
the same kind (3 x 3, stride 1, forward + backward, ``--dense`` shape), measured before and
after the configurations.  Ratios are to the best dense figure of the run.  Every time is the
best (and the median) of ``--repeats`` runs after one warm-up run: the machine may be shared,
and the best run is the least disturbed one.  The CPU time per layer (all threads) is
reported too, as a figure that depends less on the other processes.

FLOPs of a step: ``3 * 2 * batch * H * W * c^2 * k^2`` per layer (one GEMM forward, two
backward); bias, tanh and padding are not counted.

The 10,000-layer step (``--big-depth``) runs in fresh child processes, with and without
activation checkpointing (``sqrt(depth)`` segments): each reports its step time and its peak
memory: the process's resident high-water mark after the steps
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``) minus its resident size just before the first
step (``VmRSS``), i.e. the memory a step needs on top of the model and its input (activations,
gradients, buffers).  A fresh process per case keeps one case's peak from hiding another's.
The reference is not run at that depth; its step time is extrapolated from its time per layer.

Results go to ``--out`` (JSON, written atomically) with machine information.  Where CUDA is
available the configurations are also run on the GPU.

Usage: ``.venv/bin/python benchmarks/deep_block.py [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from signalprop.deepblock import DeepTanhBlock, deep_tanh_block, default_segments
from tqdm import tqdm

ROOT = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Config:
    depth: int
    channels: int
    batch: int
    image: int
    padding: str = "circular"
    kernel: int = 3

    def flops_per_layer(self) -> float:
        return 3 * 2 * self.batch * self.image**2 * self.channels**2 * self.kernel**2

    def label(self) -> str:
        return f"d={self.depth} c={self.channels} B={self.batch} {self.image}x{self.image} {self.padding}"


DEFAULT_CONFIGS = [Config(200, 16, 32, 7), Config(200, 32, 32, 7)]


def parse_config(text: str) -> Config:
    """``depth,channels,batch,image[,padding]``, e.g. ``200,16,32,7,circular``."""
    parts = text.split(",")
    if len(parts) not in (4, 5):
        raise argparse.ArgumentTypeError(f"expected depth,channels,batch,image[,padding], got {text!r}")
    padding = parts[4] if len(parts) == 5 else "circular"
    if padding not in ("circular", "zeros"):
        raise argparse.ArgumentTypeError(f"padding must be circular or zeros, got {padding!r}")
    return Config(*(int(p) for p in parts[:4]), padding=padding)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_it(fn: Callable[[], None], repeats: int, device: torch.device) -> dict[str, float]:
    """Best and median wall time of ``repeats`` calls after one warm-up call, in seconds.

    Also the least CPU time of a call (``time.process_time``, all threads of the process): on a
    busy machine the wall time grows with the other processes' load, the CPU time much less.
    """
    fn()
    sync(device)
    times, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return {"best_s": min(times), "median_s": statistics.median(times), "cpu_best_s": min(cpu)}


def dense_throughput(shape: tuple[int, int, int], repeats: int, device: torch.device, seed: int) -> dict[str, float]:
    """GFLOP/s of forward + backward of one large 3 x 3 stride-1 convolution (batch, channels, size)."""
    batch, ch, size = shape
    gen = torch.Generator(device="cpu").manual_seed(seed)
    x = torch.randn((batch, ch, size, size), generator=gen).to(device).requires_grad_()
    w = (torch.randn((ch, ch, 3, 3), generator=gen) / (3 * ch**0.5)).to(device).requires_grad_()
    b = torch.zeros(ch, device=device, requires_grad=True)

    def step() -> None:
        x.grad = w.grad = b.grad = None
        F.conv2d(x, w, b, padding=1).sum().backward()

    t = time_it(step, repeats, device)
    flops = 3 * 2 * batch * size * size * ch * ch * 9
    return {"gflops_best": flops / t["best_s"] / 1e9, "gflops_median": flops / t["median_s"] / 1e9, **t}


def make_block(cfg: Config, depth: int, device: torch.device, seed: int) -> tuple[DeepTanhBlock, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    block = DeepTanhBlock(cfg.channels, depth, cfg.kernel)
    # Gaussian weights near the tanh critical line (sigma_w2 = 1.1, sigma_b2 = 1e-3): activations neither vanish
    # nor saturate.  Vectorised draws (the per-layer initialisers of initialise_ take seconds at depth 10,000);
    # the step's cost does not depend on the values.
    with torch.no_grad():
        block.weight.mul_(math.sqrt(1.1))
        block.bias.normal_(0.0, math.sqrt(1e-3), generator=gen)
    block.to(device)
    x = torch.randn((cfg.batch, cfg.channels, cfg.image, cfg.image), generator=gen).to(device)
    return block, x


def reference_step(block: DeepTanhBlock, x: torch.Tensor, padding: str) -> Callable[[], None]:
    p = block.kernel_size // 2
    xg = x.clone().requires_grad_()

    def step() -> None:
        block.zero_grad(set_to_none=True)
        xg.grad = None
        if padding == "circular":
            y = block.reference_forward(xg)
        else:
            y = xg
            for layer in range(block.depth):
                y = torch.tanh(F.conv2d(y, block.weight[layer], block.bias[layer], padding=p))
        y.sum().backward()

    return step


def fast_step(
    block: DeepTanhBlock, x: torch.Tensor, threads: int | None, segments: int | None, onednn: bool = True
) -> Callable[[], None]:
    xg = x.clone().requires_grad_()

    def step() -> None:
        block.zero_grad(set_to_none=True)
        xg.grad = None
        enabled = torch.backends.mkldnn.enabled
        torch.backends.mkldnn.enabled = onednn and enabled
        try:
            y = deep_tanh_block(xg, block.weight, block.bias, checkpoint_segments=segments, threads=threads)
            y.sum().backward()
        finally:
            torch.backends.mkldnn.enabled = enabled

    return step


def run_config(cfg: Config, args: argparse.Namespace, device: torch.device) -> dict:
    out: dict = {"config": asdict(cfg), "flops_per_layer": cfg.flops_per_layer()}
    variants: list[tuple[str, int, Callable[[DeepTanhBlock, torch.Tensor], Callable[[], None]]]] = [
        ("reference", min(cfg.depth, args.ref_depth), lambda b, x: reference_step(b, x, cfg.padding))
    ]
    if cfg.padding == "circular":
        variants.append(("fast", cfg.depth, lambda b, x: fast_step(b, x, None, None)))
        if device.type == "cpu":
            variants.append(("fast_1slice", cfg.depth, lambda b, x: fast_step(b, x, 1, None)))
            variants.append(("fast_addmm", cfg.depth, lambda b, x: fast_step(b, x, None, None, onednn=False)))
    for name, depth, make in variants:
        block, x = make_block(cfg, depth, device, args.seed)
        t = time_it(make(block, x), args.repeats, device)
        out[name] = {
            "timed_depth": depth,
            "ms_per_layer_best": 1e3 * t["best_s"] / depth,
            "ms_per_layer_median": 1e3 * t["median_s"] / depth,
            "gflops_best": cfg.flops_per_layer() * depth / t["best_s"] / 1e9,
            "cpu_ms_per_layer_best": 1e3 * t["cpu_best_s"] / depth,
        }
    return out


def memory_probe(args: argparse.Namespace) -> None:
    """Child process: time ``--repeats-big`` steps at ``--big-depth`` and print peak memory growth as JSON."""
    torch.set_num_threads(args.threads)
    cfg = Config(args.big_depth, args.big_channels, args.big_batch, args.big_image)
    block, x = make_block(cfg, cfg.depth, torch.device("cpu"), args.seed)
    segments = default_segments(cfg.depth) if args.probe_checkpoint else None
    step = fast_step(block, x, None, segments)
    before = current_rss_kib()
    times, cpu = [], []
    for _ in range(args.repeats_big):
        start, start_cpu = time.perf_counter(), time.process_time()
        step()
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    n = cfg.batch * cfg.image**2 * cfg.channels * 4
    stored = (cfg.depth + 1) if segments is None else segments + -(-cfg.depth // segments) + 1
    print(
        json.dumps(
            {
                "depth": cfg.depth,
                "checkpoint_segments": segments,
                "step_s_best": min(times),
                "step_s_all": times,
                "step_cpu_s_best": min(cpu),
                "load_average": os.getloadavg(),
                "peak_rss_growth_mib": (after - before) / 1024,  # KiB on Linux
                "activation_mib_model": stored * n / 2**20,
            }
        )
    )


def current_rss_kib() -> int:
    """Resident set size now (Linux ``/proc/self/status``), falling back on the high-water mark."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def big_step(args: argparse.Namespace, checkpoint: bool) -> dict:
    cmd = [sys.executable, __file__, "--_probe", "--big-depth", str(args.big_depth), "--threads", str(args.threads)]
    cmd += ["--big-channels", str(args.big_channels), "--big-batch", str(args.big_batch)]
    cmd += ["--big-image", str(args.big_image), "--repeats-big", str(args.repeats_big), "--seed", str(args.seed)]
    if checkpoint:
        cmd.append("--probe-checkpoint")
    res = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def machine_info() -> dict:
    model = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": model,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "mkl": torch.backends.mkl.is_available(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "load_average_start": os.getloadavg(),
    }


def write_atomic(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", type=parse_config, action="append", help="depth,channels,batch,image[,padding]")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--ref-depth", type=int, default=20, help="layers timed for the reference")
    ap.add_argument("--dense", type=int, nargs=3, default=(32, 128, 32), metavar=("BATCH", "CHANNELS", "SIZE"))
    ap.add_argument("--big-depth", type=int, default=10_000, help="the deep training step (0: skip)")
    ap.add_argument("--big-channels", type=int, default=16)
    ap.add_argument("--big-batch", type=int, default=32)
    ap.add_argument("--big-image", type=int, default=7)
    ap.add_argument("--repeats-big", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="small run to check the script")
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "deep_block.json")
    ap.add_argument("--_probe", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--probe-checkpoint", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args._probe:
        memory_probe(args)
        return
    if args.quick:
        args.config = args.config or [Config(20, 16, 8, 7)]
        args.repeats, args.big_depth, args.repeats_big, args.dense = 2, min(args.big_depth, 200), 1, (8, 64, 16)
    configs = args.config or DEFAULT_CONFIGS
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    result: dict = {"machine": machine_info(), "args": {k: str(v) for k, v in vars(args).items()}, "devices": {}}
    for device in devices:
        dense_runs = [dense_throughput(tuple(args.dense), args.repeats, device, args.seed)]
        runs = [run_config(cfg, args, device) for cfg in tqdm(configs, desc=f"configs on {device.type}")]
        dense_runs.append(dense_throughput(tuple(args.dense), args.repeats, device, args.seed))
        dense = max(r["gflops_best"] for r in dense_runs)
        for r in runs:
            for name in ("reference", "fast", "fast_1slice", "fast_addmm"):
                if name in r:
                    r[name]["ratio_to_dense"] = r[name]["gflops_best"] / dense
            if "fast" in r:
                r["speedup_fast_over_reference"] = r["reference"]["ms_per_layer_best"] / r["fast"]["ms_per_layer_best"]
        result["devices"][device.type] = {"dense": {"shape": list(args.dense), "runs": dense_runs}, "configs": runs}
        print(f"\n{device.type}: dense 3x3 conv {tuple(args.dense)}: best {dense:.1f} GFLOP/s")
        print(f"{'config':40s} {'variant':12s} {'ms/layer':>9s} {'GFLOP/s':>8s} {'/dense':>7s} {'CPU ms/layer':>12s}")
        for r in runs:
            cfg = Config(**r["config"])
            for name in ("reference", "fast", "fast_1slice", "fast_addmm"):
                if name in r:
                    v = r[name]
                    print(
                        f"{cfg.label():40s} {name:12s} {v['ms_per_layer_best']:9.3f} {v['gflops_best']:8.1f} "
                        f"{v['ratio_to_dense']:7.1%} {v['cpu_ms_per_layer_best']:12.3f}"
                    )
    if args.big_depth > 0:
        big = {}
        for checkpoint in tqdm((False, True), desc=f"{args.big_depth}-layer steps"):
            big["checkpoint" if checkpoint else "no_checkpoint"] = big_step(args, checkpoint)
        cpu = result["devices"]["cpu"]["configs"]
        same = [
            r
            for r in cpu
            if (r["config"]["channels"], r["config"]["batch"], r["config"]["image"])
            == (args.big_channels, args.big_batch, args.big_image)
            and r["config"]["padding"] == "circular"
        ]
        if same:
            big["reference_step_s_extrapolated"] = same[0]["reference"]["ms_per_layer_best"] * args.big_depth / 1e3
        result["big_step"] = big
        shape = f"c={args.big_channels}, B={args.big_batch}, {args.big_image}x{args.big_image}"
        print(f"\n{args.big_depth}-layer step, {shape}:")
        for key in ("no_checkpoint", "checkpoint"):
            v = big[key]
            print(
                f"  {key:14s} segments={v['checkpoint_segments']!s:5s} step {v['step_s_best']:7.2f} s "
                f"(CPU {v['step_cpu_s_best']:6.2f} s)  "
                f"peak RSS growth {v['peak_rss_growth_mib']:8.1f} MiB  "
                f"(stored activations {v['activation_mib_model']:.1f} MiB)"
            )
        if "reference_step_s_extrapolated" in big:
            print(f"  reference (extrapolated): {big['reference_step_s_extrapolated']:.1f} s")
    result["machine"]["load_average_end"] = os.getloadavg()
    write_atomic(args.out, result)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
