"""Execute chapters under another SIMD dispatch and compare them with their committed twins.

numpy, OpenBLAS, MKL, oneDNN and PyTorch's CPU kernels choose SIMD code paths at run
time (AVX-512, AVX2, SSE), so the last bits of a float differ between CPUs.  A chapter
whose printed numbers, glued values or claim records change with the code path would
show another book on another CPU.  This module runs chapters in a copy of ``book/`` with
a forced code path and lists every output that nbval would compare, every glued value
and every claim record that differs from the committed twin and records.

    python tests/dispatch.py [--variant avx2|baseline] [chapter ...]   # e.g. xiao2018/backpropagation

Variants: ``avx2`` switches the AVX-512 paths off (the default path of a CPU without
AVX-512); ``baseline`` switches every optional path off (SSE only).  A variant only
switches off what this CPU has, so it is a different path wherever the CPU has more.
"""

from __future__ import annotations

import argparse
import configparser
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
PARTS_I_II = [
    "xiao2018/cnn_covariance_map",
    "xiao2018/fixed_points_phase_diagram",
    "xiao2018/linearisation",
    "xiao2018/fourier_modes",
    "xiao2018/nonuniform_kernels",
    "xiao2018/backpropagation",
    "xiao2018/conv_random_matrices",
    "xiao2018/orthogonal_kernels",
    "xiao2018/kernel_cost",
    "xiao2018/jacobian_spectra",
]
COMPARED = ("text/plain", "text/markdown", "text/html", "text/latex", "application/json")


def _numpy_dispatch_enabled() -> list[str]:
    """numpy's run-time dispatch targets that this CPU has (those can be switched off)."""
    from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__

    return [f for f in __cpu_dispatch__ if __cpu_features__.get(f)]


def variant_env(variant: str) -> dict[str, str]:
    """Environment variables that force ``variant``'s code paths in numpy, OpenBLAS, MKL, oneDNN and PyTorch."""
    enabled = _numpy_dispatch_enabled()
    if variant == "avx2":
        off = [f for f in enabled if f.startswith("AVX512")]
        env = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "AVX2",
               "MKL_ENABLE_INSTRUCTIONS": "AVX2", "OPENBLAS_CORETYPE": "Haswell"}
    elif variant == "baseline":
        off = enabled
        env = {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41", "MKL_CBWR": "COMPATIBLE",
               "MKL_ENABLE_INSTRUCTIONS": "SSE4_2", "OPENBLAS_CORETYPE": "Nehalem"}
    else:
        raise ValueError(f"variant must be 'avx2' or 'baseline', got {variant!r}")
    if off:
        env["NPY_DISABLE_CPU_FEATURES"] = " ".join(off)
    return env


def _sanitizers() -> list[tuple[re.Pattern[str], str]]:
    cfg = configparser.ConfigParser()
    cfg.read(BOOK / "nbval-sanitize.cfg")
    return [(re.compile(cfg[s]["regex"]), cfg[s]["replace"]) for s in cfg.sections()]


def _sanitize(text: str, rules: list[tuple[re.Pattern[str], str]]) -> str:
    for pattern, replace in rules:
        text = pattern.sub(replace, text)
    return text


def compared_outputs(notebook: Path) -> list[list[str]]:
    """Per code cell, the outputs nbval compares (streams, text-like data, glue), sanitised as nbval does."""
    rules = _sanitizers()
    doc = json.loads(notebook.read_text(encoding="utf-8"))
    cells = []
    for cell in doc["cells"]:
        if cell["cell_type"] != "code":
            continue
        out = []
        streams: dict[str, str] = {}  # a stream may arrive in several chunks: compare it whole, as nbval does
        for o in cell.get("outputs", []):
            if o["output_type"] == "stream":
                streams[o["name"]] = streams.get(o["name"], "") + "".join(o["text"])
            elif o["output_type"] in ("execute_result", "display_data"):
                for mime, data in sorted(o.get("data", {}).items()):
                    if mime in COMPARED or mime.startswith("application/papermill.record/"):
                        text = data if isinstance(data, str) else "".join(data) if isinstance(data, list) else \
                            json.dumps(data, sort_keys=True)
                        out.append(f"{mime}: " + _sanitize(text, rules))
            elif o["output_type"] == "error":
                out.append(f"error: {o['ename']}: {o['evalue']}")
        out += [f"{name}: " + _sanitize(text, rules) for name, text in sorted(streams.items())]
        cells.append(out)
    return cells


def run_variant(chapters: list[str], variant: str, workdir: Path) -> Path:
    """Execute ``chapters`` in a copy of ``book/`` under ``workdir`` with ``variant``'s code paths; return the copy."""
    copy = workdir / "book"
    shutil.copytree(BOOK, copy, ignore=shutil.ignore_patterns("_build", ".jupyter_cache", "results"),
                    symlinks=True)
    env = dict(os.environ)
    env.update(variant_env(variant))
    env["TTL_WRITE_CLAIMS"] = "1"
    env["PYDEVD_DISABLE_FILE_VALIDATION"] = "1"
    for chapter in chapters:
        nb = copy / f"{chapter}.ipynb"
        subprocess.run(
            [sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute", "--inplace",
             "--ExecutePreprocessor.timeout=600", str(nb)],
            env=env, check=True, capture_output=True,
        )
    return copy


def differences(chapters: list[str], copy: Path) -> list[str]:
    """Every compared output and claim record of ``copy`` that differs from the committed book."""
    found = []
    for chapter in chapters:
        ref = compared_outputs(BOOK / f"{chapter}.ipynb")
        new = compared_outputs(copy / f"{chapter}.ipynb")
        if len(ref) != len(new):
            found.append(f"{chapter}: {len(new)} code cells, committed twin has {len(ref)}")
            continue
        for i, (a, b) in enumerate(zip(ref, new, strict=True)):
            if a != b:
                detail = next(((x, y) for x, y in zip(a + [""] * len(b), b + [""] * len(a), strict=False) if x != y))
                found.append(f"{chapter} code cell {i}: committed {detail[0][:300]!r} != {detail[1][:300]!r}")
    for path in sorted((copy / "status").glob("*.json")):
        committed = BOOK / "status" / path.name
        if not committed.exists():
            found.append(f"status/{path.name}: not committed")
        elif json.loads(path.read_text(encoding="utf-8")) != json.loads(committed.read_text(encoding="utf-8")):
            found.append(f"status/{path.name}: differs from the committed record")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("chapters", nargs="*", default=PARTS_I_II)
    parser.add_argument("--variant", default="avx2", choices=["avx2", "baseline"])
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        print(f"variant {args.variant}: {variant_env(args.variant)}", flush=True)
        copy = run_variant(args.chapters, args.variant, Path(tmp))
        found = differences(args.chapters, copy)
    print("\n".join(found) if found else f"identical: {', '.join(args.chapters)}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
