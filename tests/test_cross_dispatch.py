"""The chapters of Parts I and II give the same book under other SIMD code paths.

numpy, OpenBLAS, MKL, oneDNN and PyTorch pick SIMD kernels at run time, so CI may run on
a CPU whose code paths round differently from the machine that executed the twins.  Here
every simulation chapter of Parts I-II is executed again, in a copy of the book, with the
AVX-512 paths switched off (``avx2``: the default path of a CPU without AVX-512) and with
every optional path switched off (``baseline``), and every output nbval compares, every
glued value and every claim record must equal the committed ones.  On a CPU without
AVX-512 the ``avx2`` variant is close to the default run; ``baseline`` still differs.
"""

from __future__ import annotations

import dispatch
import pytest


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["avx2", "baseline"])
def test_parts_i_and_ii_are_identical_under_another_simd_dispatch(variant, tmp_path):
    copy = dispatch.run_variant(dispatch.PARTS_I_II, variant, tmp_path)
    found = dispatch.differences(dispatch.PARTS_I_II, copy)
    assert not found, f"{len(found)} outputs or records differ under {variant}:\n" + "\n".join(found)


def test_variants_switch_off_what_this_cpu_has():
    avx2, baseline = dispatch.variant_env("avx2"), dispatch.variant_env("baseline")
    assert avx2["ATEN_CPU_CAPABILITY"] == "avx2" and baseline["ATEN_CPU_CAPABILITY"] == "default"
    assert all(f.startswith("AVX512") for f in avx2.get("NPY_DISABLE_CPU_FEATURES", "").split())
    assert set(avx2.get("NPY_DISABLE_CPU_FEATURES", "").split()) <= set(baseline["NPY_DISABLE_CPU_FEATURES"].split())
    with pytest.raises(ValueError, match="variant must be"):
        dispatch.variant_env("avx1024")
