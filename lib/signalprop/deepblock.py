"""A fast deep block of vanilla tanh convolutions with periodic boundaries.

The deep block of Xiao et al. (2018), section 5 (Figure 1): ``depth`` layers of
the stride-1 cross-correlation of eq. (2.1) on a periodic image, each followed
by a bias and ``tanh``,

    x^{l+1}_{i, alpha} = tanh( sum_{j, beta in ker} W^{l}_{i j beta} x^{l}_{j, alpha + beta} + b^{l}_i ),

with ``c`` channels in and out.  The straightforward implementation (a stack of
:class:`signalprop.layers.CircularConv2d` and ``tanh``, see
:meth:`DeepTanhBlock.reference_forward`) spends most of its time on per-layer
overhead when images are small (7 x 7) and channels few (16): padding copies,
autograd bookkeeping and convolution kernels tuned for large images.

This module computes the same function with one custom autograd function for
the whole block:

* activations are kept channels-last as an ``(N, c)`` matrix, ``N = batch * H * W``;
* the circular padding is fused into the im2col: one ``index_select`` with
  precomputed wrapped indices builds the ``(N, k*k*c)`` patch matrix (any image
  size, also smaller than the kernel, since the indices wrap modulo the size);
* each layer is then one GEMM with the bias fused (``addmm``) and an in-place ``tanh``;
* the backward is hand-written: ``tanh_backward``, the weight gradient as one GEMM
  ``patches^T @ g``, and the input gradient as the *same* gather applied to ``g``
  followed by one GEMM with the spatially flipped, transposed kernel (for a
  stride-1 circular convolution each tap is a cyclic shift, whose adjoint is the
  opposite shift, i.e. the flipped tap);
* all buffers are preallocated, so a layer allocates nothing;
* optional activation checkpointing stores only the inputs of ``s`` segments and
  recomputes each segment during the backward: memory ``O(s + depth / s)``
  activations instead of ``O(depth)`` (``s ~ sqrt(depth)``), for one extra forward pass.

The code is device-agnostic (only ``index_select``, ``addmm``, ``mm`` and
pointwise ops), so it runs on a GPU as well.  Float32 tensors on the CPU take a
faster path with the same mathematics: the GEMMs go through oneDNN with bias and
``tanh`` fused into the forward GEMM, the weight and bias gradients come out of
one GEMM, and the layer loops are compiled by TorchScript (no GIL, less overhead
per op); see :func:`_fast_forward_layers`.  Under :func:`torch.no_grad` nothing
is stored for a backward.
"""

from __future__ import annotations

import math
import threading
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import torch
import torch.nn.functional as F
from numpy.typing import ArrayLike
from torch import nn

from signalprop import init as sp_init
from signalprop.layers import circular_pad

__all__ = ["circular_patch_index", "deep_tanh_block", "default_segments", "DeepTanhBlock"]


def circular_patch_index(batch: int, height: int, width: int, kernel_size: int, device=None) -> torch.Tensor:
    """Row indices of the circular im2col of an ``(batch * height * width, c)`` channels-last matrix.

    Entry ``(n, t)`` of the result (flattened, length ``batch * height * width * k * k``)
    is the row of pixel ``(b, (h + ky - p) mod height, (w + kx - p) mod width)``
    for output pixel ``n = (b, h, w)`` and tap ``t = (ky, kx)``, ``p = k // 2``:
    the cross-correlation of Xiao et al. (2018), eq. (2.1), on a periodic image.
    The wrap is modulo the size, so images smaller than the kernel are allowed.
    """
    for name, val in (("batch", batch), ("height", height), ("width", width)):
        if int(val) != val or val < 1:
            raise ValueError(f"{name} must be a positive integer, got {val!r}")
    if int(kernel_size) != kernel_size or kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be a positive odd integer, got {kernel_size!r}")
    k, p = int(kernel_size), int(kernel_size) // 2
    b = torch.arange(batch, device=device).view(-1, 1, 1, 1, 1)
    h = torch.arange(height, device=device).view(1, -1, 1, 1, 1)
    w = torch.arange(width, device=device).view(1, 1, -1, 1, 1)
    ky = torch.arange(k, device=device).view(1, 1, 1, -1, 1)
    kx = torch.arange(k, device=device).view(1, 1, 1, 1, -1)
    rows = (b * height + (h + ky - p) % height) * width + (w + kx - p) % width
    return rows.reshape(-1)


def default_segments(depth: int) -> int:
    """The number of checkpoint segments that minimises stored activations: ``round(sqrt(depth))``."""
    if int(depth) != depth or depth < 1:
        raise ValueError(f"depth must be a positive integer, got {depth!r}")
    return max(1, round(math.sqrt(depth)))


def _segment_bounds(depth: int, segments: int) -> list[int]:
    """Start layers of ``segments`` nearly equal segments, plus ``depth`` at the end."""
    return [(i * depth) // segments for i in range(segments)] + [depth]


class _Part:
    """One slice of the batch, run independently of the others (samples never mix in the block).

    Holds the slice's patch indices and preallocated buffers, so that a layer allocates nothing.
    """

    def __init__(self, rows: slice, n: int, c: int, kk: int, idx: torch.Tensor, like: torch.Tensor):
        self.rows, self.n, self.c, self.idx = rows, n, c, idx
        self.cols = like.new_empty((n * kk, c))
        self.cols_mat = self.cols.view(n, kk * c)
        self.gz = like.new_empty((n, c))
        self.g = [like.new_empty((n, c)), like.new_empty((n, c))]
        self.saved: torch.Tensor | None = None  # activations (d + 1, n, c) or checkpoints (s, n, c)


Seq = tuple[torch.Tensor, ...]  # per-layer views made once by ``unbind(0)``, cheaper than indexing per layer


def _forward_layers(p: _Part, x0: torch.Tensor, wl: Seq, bl: Seq, first: int, last: int, out: Seq) -> torch.Tensor:
    """Run layers ``first .. last - 1`` on ``x0``, writing the output of the ``j``-th of them to ``out[j + 1]``.

    ``out`` has ``last - first + 1`` slots (to keep every activation; ``out[0]`` is
    not touched) or 2 slots (ping-pong: slot ``(j + 1) % 2``).  ``wl[l]`` is layer
    ``l``'s ``(k*k*c, c)`` GEMM kernel, ``bl[l]`` its bias.  Returns the last output.
    """
    x, slots = x0, len(out)
    for j, layer in enumerate(range(first, last)):
        y = out[(j + 1) % slots] if slots == 2 else out[j + 1]
        torch.index_select(x, 0, p.idx, out=p.cols)  # circular im2col: (n * k * k, c)
        torch.addmm(bl[layer], p.cols_mat, wl[layer], out=y)
        y.tanh_()
        x = y
    return x


def _backward_layers(
    p: _Part,
    acts: Seq,
    g: torch.Tensor,
    wfl: Seq,
    first: int,
    last: int,
    gw: Seq | None,
    gb: Seq | None,
    need_input_grad: bool,
) -> torch.Tensor | None:
    """Backpropagate ``g`` (gradient w.r.t. ``acts[last - first]``) through layers ``last - 1 .. first``.

    ``acts[i]`` is the input of layer ``first + i``; ``wfl[l]`` layer ``l``'s
    flipped kernel.  For the weight gradient ``gw[layer]`` receives
    ``x^T @ patches(gz)``, shape ``(c_in, k*k*c_out)``, entry ``[i, (t', o)]``
    being ``dL/dW[o, i, flip(t')]`` (see :func:`_weight_grad_layout`);
    ``gb[layer]`` receives the bias gradient.  Returns the gradient w.r.t.
    ``acts[0]`` (``None`` if not needed at layer 0).
    """
    cols, cols_mat, gz = p.cols, p.cols_mat, p.gz
    for j in range(last - first - 1, -1, -1):
        layer = first + j
        torch.ops.aten.tanh_backward.grad_input(g, acts[j + 1], grad_input=gz)  # gz = g * (1 - y^2)
        if gb is not None:
            torch.sum(gz, 0, out=gb[layer])
        # Each tap of a stride-1 circular convolution is a cyclic shift; its adjoint is the opposite shift,
        # i.e. the flipped tap.  So one gather of gz with the forward's indices serves both gradients.
        torch.index_select(gz, 0, p.idx, out=cols)
        if gw is not None:
            torch.mm(acts[j].t(), cols_mat, out=gw[layer])
        if layer == 0 and not need_input_grad:
            return None
        g_next = p.g[0] if g is not p.g[0] else p.g[1]
        torch.mm(cols_mat, wfl[layer], out=g_next)
        g = g_next
    return g


# The CPU float32 path.  Its GEMMs go through oneDNN's inner product (``torch.ops.mkldnn._linear_pointwise``, the
# op of torch.compile's CPU backend) with bias and tanh fused into the GEMM's epilogue: at these shapes MKL's sgemm,
# which ``addmm``/``mm`` call, is ~25 % slower, and ATen's float32 ``tanh`` alone costs most of a GEMM.  Both layer
# loops are compiled by TorchScript, whose interpreter runs a whole loop without taking the GIL and with less
# overhead per op than Python, so the threads of the batch slices run truly in parallel.


def _fast_forward_layers(
    x0: torch.Tensor,
    idx: torch.Tensor,
    cols: torch.Tensor,
    wt: list[torch.Tensor],
    bt: list[torch.Tensor],
    out: list[torch.Tensor],
) -> torch.Tensor:
    """:func:`_forward_layers` for the CPU float32 path: the layers of kernels ``wt`` and biases ``bt`` on ``x0``.

    ``wt[j]`` is the ``j``-th layer's ``(c_out, k*k*c_in)`` kernel (:func:`_fast_kernels`), ``cols`` the
    ``(n * k * k, c)`` im2col buffer.  Returns the last output; if ``out`` is not empty, the ``j``-th layer's
    output is also copied to ``out[j]`` (slices of one preallocated block: many small tensors kept alive
    would fragment the heap, which then keeps their memory after they are freed).
    """
    cols_mat = cols.view(x0.shape[0], -1)
    keep = len(out) > 0
    x = x0
    for j in range(len(wt)):
        torch.index_select(x, 0, idx, out=cols)  # circular im2col
        x = torch.ops.mkldnn._linear_pointwise(cols_mat, wt[j], bt[j], "tanh", [], "")  # tanh(cols @ W^T + b)
        if keep:
            x = out[j].copy_(x)
    return x


def _fast_backward_layers(
    acts: list[torch.Tensor],
    g: torch.Tensor,
    idx: torch.Tensor,
    cols: torch.Tensor,
    gz: torch.Tensor,
    xt: torch.Tensor,
    wft: list[torch.Tensor],
    need_params: bool,
    need_input_grad: bool,
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """:func:`_backward_layers` for the CPU float32 path: ``g`` (w.r.t. ``acts[-1]``) back through ``len(wft)`` layers.

    ``acts[j]`` is the input of the ``j``-th layer, ``wft[j]`` its ``(c_in, k*k*c_out)`` flipped kernel
    (:func:`_fast_kernels`); ``xt`` a ``(c + 1, n)`` buffer whose last row is ones.  Returns the gradient
    w.r.t. ``acts[0]`` (``g`` unchanged if not ``need_input_grad``: only the first layer's input gradient
    is skipped) and, if ``need_params``, one ``[x^T; 1^T] @ patches(gz)`` per layer, last layer first, of shape
    ``(c + 1, k*k*c_out)``: rows ``0 .. c - 1`` the weight gradient of :func:`_backward_layers`, row ``c``
    the column sums of the patches, whose first ``c_out`` entries are the bias gradient (tap 0 is a cyclic
    shift, a permutation of the pixels).
    """
    n, c = gz.shape
    cols_mat = cols.view(n, -1)
    xt_c = xt[:c]
    params: list[torch.Tensor] = []
    for j in range(len(wft) - 1, -1, -1):
        torch.ops.aten.tanh_backward(g, acts[j + 1], grad_input=gz)  # gz = g * (1 - y^2)
        torch.index_select(gz, 0, idx, out=cols)  # the adjoint of each tap is the flipped tap (_backward_layers)
        if need_params:
            xt_c.copy_(acts[j].t())  # oneDNN wants the GEMM's left operand row-major
            params.append(torch.ops.mkldnn._linear_pointwise(xt, cols_mat.t(), None, "none", [], ""))
        if j > 0 or need_input_grad:
            g = torch.ops.mkldnn._linear_pointwise(cols_mat, wft[j], None, "none", [], "")
    return g, params


def _fast_kernels(weight: torch.Tensor, flipped: bool) -> torch.Tensor:
    """The CPU float32 path's GEMM operands: ``wt[l][o, (ky, kx, i)] = W[l, o, i, ky, kx]`` (forward) or,
    ``flipped``, ``wft[l][i, (ky, kx, o)] = W[l, o, i, k-1-ky, k-1-kx]`` (input gradient)."""
    d, c_out, c_in, k, _ = weight.shape
    if flipped:
        return weight.flip(3, 4).permute(0, 2, 3, 4, 1).reshape(d, c_in, k * k * c_out).contiguous()
    return weight.permute(0, 1, 3, 4, 2).reshape(d, c_out, k * k * c_in).contiguous()


_FAST_LOOPS: tuple[Callable, Callable] | None = None


def _fast_loops() -> tuple[Callable, Callable]:
    """:func:`_fast_forward_layers` and :func:`_fast_backward_layers` compiled by TorchScript (once), or as they are
    where TorchScript is unavailable."""
    global _FAST_LOOPS
    if _FAST_LOOPS is None:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # torch.jit.script is deprecated in favour of torch.compile
                _FAST_LOOPS = (torch.jit.script(_fast_forward_layers), torch.jit.script(_fast_backward_layers))
        except Exception:
            _FAST_LOOPS = (_fast_forward_layers, _fast_backward_layers)
    return _FAST_LOOPS


def _use_fast_path(x: torch.Tensor) -> bool:
    """Whether ``x`` (float32 on the CPU) takes the oneDNN path: oneDNN available and enabled."""
    return (
        x.device.type == "cpu"
        and x.dtype == torch.float32
        and torch.backends.mkldnn.is_available()
        and torch.backends.mkldnn.enabled
        and hasattr(torch.ops.mkldnn, "_linear_pointwise")
    )


def _forward_kernels(weight: torch.Tensor) -> torch.Tensor:
    """``(d, c_out, c_in, k, k)`` weights as forward GEMM operands ``wmat[l][(ky, kx, i), o] = W[l, o, i, ky, kx]``."""
    d, c_out, c_in, k, _ = weight.shape
    return weight.permute(0, 3, 4, 2, 1).reshape(d, k * k * c_in, c_out).contiguous()


def _flipped_kernels(weight: torch.Tensor) -> torch.Tensor:
    """The input-gradient GEMM operands ``wflip[l][(ky, kx, o), i] = W[l, o, i, k-1-ky, k-1-kx]``."""
    d, c_out, c_in, k, _ = weight.shape
    return weight.flip(3, 4).permute(0, 3, 4, 1, 2).reshape(d, k * k * c_out, c_in).contiguous()


def _weight_grad_layout(gw: torch.Tensor, k: int) -> torch.Tensor:
    """``(d, c_in, k*k*c_out)`` from :func:`_backward_layers` to the ``(d, c_out, c_in, k, k)`` weight layout."""
    d, c = gw.shape[:2]
    return gw.view(d, c, k, k, c).flip(2, 3).permute(0, 4, 1, 2, 3).contiguous()


_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _pool(workers: int) -> ThreadPoolExecutor:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None or _POOL._max_workers < workers:
            _POOL = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="deepblock")
        return _POOL


def _run_parts(fn: Callable[[int, _Part], None], parts: list[_Part], device: torch.device) -> None:
    """Run ``fn`` on every part: one after another, or on CPU threads with single-threaded kernels.

    Parts share no data until the end of the call, so the threads never wait for
    each other inside the block; this avoids one barrier of the OpenMP pool per
    (small) operation, which dominates at these sizes, all the more on a busy machine.
    """
    if len(parts) == 1 or device.type != "cpu":
        for i, p in enumerate(parts):
            fn(i, p)
        return
    n_threads = torch.get_num_threads()

    def task(i: int, p: _Part) -> None:
        torch.set_num_threads(1)
        with torch.no_grad():  # grad mode is thread-local; the block's ops are never recorded
            fn(i, p)

    torch.set_num_threads(1)
    try:
        for f in [_pool(len(parts)).submit(task, i, p) for i, p in enumerate(parts)]:
            f.result()
    finally:
        torch.set_num_threads(n_threads)


def _make_parts(batch: int, hw: tuple[int, int], c: int, k: int, threads: int, like: torch.Tensor) -> list[_Part]:
    n_parts = max(1, min(threads, batch))
    sizes = [batch // n_parts + (i < batch % n_parts) for i in range(n_parts)]
    parts, start, idx_cache = [], 0, {}
    for bsz in sizes:
        if bsz not in idx_cache:
            idx_cache[bsz] = circular_patch_index(bsz, hw[0], hw[1], k, device=like.device)
        n = bsz * hw[0] * hw[1]
        parts.append(_Part(slice(start, start + n), n, c, k * k, idx_cache[bsz], like))
        start += n
    return parts


class _DeepTanhFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, hw, batch, segments, threads, grad_enabled):
        d, c, _, k, _ = weight.shape
        weight, bias = weight.detach(), bias.detach()
        # needs_input_grad says requires_grad also under torch.no_grad: then nothing is stored for a backward
        needs_grad = grad_enabled and any(ctx.needs_input_grad[:3])
        fast = _use_fast_path(x)
        if fast:
            wmat = _fast_kernels(weight, flipped=False)
            wflip = _fast_kernels(weight, flipped=True) if needs_grad else None
            fwd = _fast_loops()[0]  # compiled here, before the threads start
        else:
            wmat = _forward_kernels(weight)
            wflip = _flipped_kernels(weight) if needs_grad else None
        wl, bl = wmat.unbind(0), bias.unbind(0)
        parts = _make_parts(batch, hw, c, k, threads, x)
        y = torch.empty_like(x)
        bounds = _segment_bounds(d, segments) if (needs_grad and segments is not None) else None

        def run_fast(_: int, p: _Part) -> None:
            xp = x[p.rows]
            if not needs_grad:
                y[p.rows] = fwd(xp, p.idx, p.cols, list(wl), list(bl), [])
            elif bounds is None:
                p.saved = x.new_empty((d + 1, p.n, c))  # every activation
                acts = list(p.saved.unbind(0))
                acts[0].copy_(xp)
                y[p.rows] = fwd(acts[0], p.idx, p.cols, list(wl), list(bl), acts[1:])
            else:
                p.saved = x.new_empty((len(bounds) - 1, p.n, c))  # the segments' inputs
                x_cur = xp
                for s in range(len(bounds) - 1):
                    first, last = bounds[s], bounds[s + 1]
                    p.saved[s].copy_(x_cur)
                    x_cur = fwd(p.saved[s], p.idx, p.cols, list(wl[first:last]), list(bl[first:last]), [])
                y[p.rows] = x_cur

        def run(_: int, p: _Part) -> None:
            xp = x[p.rows]
            if not needs_grad:
                y[p.rows] = _forward_layers(p, xp, wl, bl, 0, d, x.new_empty((2, p.n, c)).unbind(0))
            elif bounds is None:
                p.saved = x.new_empty((d + 1, p.n, c))
                acts = p.saved.unbind(0)
                acts[0].copy_(xp)
                y[p.rows] = _forward_layers(p, acts[0], wl, bl, 0, d, acts)
            else:
                p.saved = x.new_empty((len(bounds) - 1, p.n, c))
                buf = x.new_empty((2, p.n, c)).unbind(0)
                x_cur = xp
                for s in range(len(bounds) - 1):
                    p.saved[s].copy_(x_cur)
                    x_cur = _forward_layers(p, p.saved[s], wl, bl, bounds[s], bounds[s + 1], buf)
                y[p.rows] = x_cur

        _run_parts(run_fast if fast else run, parts, x.device)
        if needs_grad:
            ctx.parts, ctx.bounds, ctx.k, ctx.fast = parts, bounds, k, fast
            # the forward kernels and biases are needed again only to recompute checkpointed segments
            ctx.save_for_backward(*((wmat, wflip, bias) if bounds is not None else (None, wflip, None)))
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        wmat, wflip, bias = ctx.saved_tensors
        parts, bounds, k, fast = ctx.parts, ctx.bounds, ctx.k, ctx.fast
        d, c = wflip.shape[0], wflip.shape[1 if fast else 2]
        wfl = wflip.unbind(0)
        wl, bl = (wmat.unbind(0), bias.unbind(0)) if bounds is not None else ((), ())
        grad_out = grad_out.contiguous()
        gx = torch.empty_like(grad_out) if need_x else None
        partials: list[tuple[torch.Tensor | None, torch.Tensor | None]] = [(None, None)] * len(parts)

        def run_fast(i: int, p: _Part) -> None:
            fwd, bwd = _fast_loops()
            need_params = need_w or need_b
            params = grad_out.new_empty((d, c + 1, k * k * c)) if need_params else None
            xt = grad_out.new_ones((c + 1, p.n))
            g = grad_out[p.rows]
            if bounds is None:  # go back in chunks, so that each call converts short lists
                chunks, acts = _segment_bounds(d, default_segments(d)), p.saved.unbind(0)
            else:
                chunks = bounds
                longest = max(b - a for a, b in zip(bounds[:-1], bounds[1:], strict=True))
                seg = list(grad_out.new_empty((longest + 1, p.n, c)).unbind(0))
            for s in range(len(chunks) - 2, -1, -1):
                first, last = chunks[s], chunks[s + 1]
                if bounds is None:
                    a = list(acts[first : last + 1])
                else:
                    seg[0].copy_(p.saved[s])
                    fwd(seg[0], p.idx, p.cols, list(wl[first:last]), list(bl[first:last]), seg[1 : last - first + 1])
                    a = seg[: last - first + 1]
                g, grads = bwd(a, g, p.idx, p.cols, p.gz, xt, list(wfl[first:last]), need_params, first > 0 or need_x)
                if need_params:
                    torch.stack(grads[::-1], out=params[first:last])
            p.saved = None
            if need_x:
                gx[p.rows] = g
            partials[i] = (params, None)

        def run(i: int, p: _Part) -> None:
            gw = grad_out.new_empty((d, c, k * k * c)) if need_w else None
            gb = grad_out.new_empty((d, c)) if need_b else None
            gws = gw.unbind(0) if need_w else None
            gbs = gb.unbind(0) if need_b else None
            g = p.g[0]
            g.copy_(grad_out[p.rows])
            if bounds is None:
                g = _backward_layers(p, p.saved.unbind(0), g, wfl, 0, d, gws, gbs, need_x)
            else:
                longest = max(b - a for a, b in zip(bounds[:-1], bounds[1:], strict=True))
                seg = grad_out.new_empty((longest + 1, p.n, c)).unbind(0)
                for s in range(len(bounds) - 2, -1, -1):
                    first, last = bounds[s], bounds[s + 1]
                    seg[0].copy_(p.saved[s])
                    _forward_layers(p, seg[0], wl, bl, first, last, seg)
                    g = _backward_layers(p, seg, g, wfl, first, last, gws, gbs, need_x)
            p.saved = None
            if need_x:
                gx[p.rows] = g
            partials[i] = (gw, gb)

        _run_parts(run_fast if fast else run, parts, grad_out.device)
        del ctx.parts
        grad_w = grad_b = None
        if fast and (need_w or need_b):
            params = _sum([pp for pp, _ in partials])  # (d, c + 1, k*k*c), see _fast_backward_layers
            grad_w = _weight_grad_layout(params[:, :c], k) if need_w else None
            grad_b = params[:, c, :c].clone() if need_b else None
        elif not fast:
            if need_w:
                grad_w = _weight_grad_layout(_sum([gw for gw, _ in partials]), k)
            if need_b:
                grad_b = _sum([gb for _, gb in partials])
        return gx, grad_w, grad_b, None, None, None, None, None


def _sum(ts: list[torch.Tensor]) -> torch.Tensor:
    """Sum of the parts' partial gradients, in place in the first (they are parameter-sized)."""
    out = ts[0]
    for t in ts[1:]:
        out += t
    return out


def deep_tanh_block(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    *,
    checkpoint_segments: int | None = None,
    threads: int | None = None,
) -> torch.Tensor:
    """``depth`` layers of circular 3 x 3 (any odd ``k``) convolution, bias and tanh, fused for speed.

    Xiao et al. (2018), eq. (2.1) with ``phi = tanh`` and periodic boundaries,
    applied ``depth`` times.  Same function, forward and backward, as
    :meth:`DeepTanhBlock.reference_forward`.

    Parameters
    ----------
    x : torch.Tensor
        ``(batch, c, H, W)``, any ``H, W >= 1`` (smaller than the kernel too).
    weight : torch.Tensor
        ``(depth, c, c, k, k)``, layer ``l``'s kernel in :class:`torch.nn.Conv2d` layout.
    bias : torch.Tensor
        ``(depth, c)``.
    checkpoint_segments : int, optional
        Store only the inputs of this many segments and recompute each one in
        the backward (``None``: store every activation).
    threads : int, optional
        CPU only: split the batch into this many slices run on as many Python
        threads, each with single-threaded kernels (``None``: ``torch.get_num_threads()``;
        1: one slice, kernels use torch's intra-op threads).  While the block
        runs, ``torch.set_num_threads(1)`` is in force process-wide; the previous
        value is restored afterwards.

    Returns
    -------
    torch.Tensor
        ``(batch, c, H, W)``.

    Raises
    ------
    ValueError
        On shapes, dtypes or devices that do not match, an even kernel, or a
        ``checkpoint_segments`` outside ``1 .. depth``, or ``threads < 1``.
    """
    _check_block_args(x, weight, bias, checkpoint_segments)
    if threads is not None and (int(threads) != threads or threads < 1):
        raise ValueError(f"threads must be None or a positive integer, got {threads!r}")
    b, c, h, w = x.shape
    if threads is None:
        threads = torch.get_num_threads() if x.device.type == "cpu" else 1
    x_rows = x.permute(0, 2, 3, 1).reshape(b * h * w, c).contiguous()
    grad_enabled = torch.is_grad_enabled()
    y_rows = _DeepTanhFunction.apply(x_rows, weight, bias, (h, w), b, checkpoint_segments, threads, grad_enabled)
    return y_rows.view(b, h, w, c).permute(0, 3, 1, 2).contiguous()


def _check_block_args(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, checkpoint_segments: int | None
) -> None:
    for name, t in (("x", x), ("weight", weight), ("bias", bias)):
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if weight.ndim != 5 or weight.shape[1] != weight.shape[2] or weight.shape[3] != weight.shape[4]:
        raise ValueError(f"weight must have shape (depth, c, c, k, k), got {tuple(weight.shape)}")
    d, c, _, k, _ = weight.shape
    if d < 1 or c < 1:
        raise ValueError(f"weight must have depth >= 1 and c >= 1, got {tuple(weight.shape)}")
    if k % 2 == 0:
        raise ValueError(f"the kernel size must be odd, got {k}")
    if bias.shape != (d, c):
        raise ValueError(f"bias must have shape (depth, c) = {(d, c)}, got {tuple(bias.shape)}")
    if x.ndim != 4 or x.shape[1] != c:
        raise ValueError(f"x must have shape (batch, c={c}, H, W), got {tuple(x.shape)}")
    if min(x.shape) < 1:
        raise ValueError(f"x must be non-empty, got shape {tuple(x.shape)}")
    if not x.is_floating_point() or x.dtype != weight.dtype or x.dtype != bias.dtype:
        raise ValueError(
            f"x, weight and bias must share one floating dtype, got {x.dtype}, {weight.dtype}, {bias.dtype}"
        )
    if x.device != weight.device or x.device != bias.device:
        raise ValueError(f"x, weight and bias must be on one device, got {x.device}, {weight.device}, {bias.device}")
    if checkpoint_segments is not None and (
        int(checkpoint_segments) != checkpoint_segments or not 1 <= checkpoint_segments <= d
    ):
        raise ValueError(f"checkpoint_segments must be None or an integer in 1..{d}, got {checkpoint_segments!r}")


_KERNEL_INITS: dict[str, Callable[..., torch.Tensor]] = {
    "delta_orthogonal": sp_init.delta_orthogonal_,
    "orthogonal": sp_init.conv_orthogonal_,
    "gaussian": sp_init.conv_gaussian_,
}


class DeepTanhBlock(nn.Module):
    """``depth`` layers of circular ``k x k`` convolution + bias + tanh with ``channels`` channels.

    The deep block of Xiao et al. (2018), section 5, computed by
    :func:`deep_tanh_block`.  Parameters: ``weight`` ``(depth, c, c, k, k)``
    (layer ``l``'s kernel in :class:`torch.nn.Conv2d` layout) and ``bias``
    ``(depth, c)``.  Initialised with i.i.d. ``N(0, 1 / (c k^2))`` weights (the law of
    :func:`signalprop.init.conv_gaussian_` with ``gain = 1``, drawn in one call) and zero
    biases; call :meth:`initialise_` for other kernels or a point of the critical line.

    Parameters
    ----------
    channels : int
    depth : int
    kernel_size : int
        Odd.
    checkpoint_segments : int or "sqrt", optional
        Activation checkpointing: ``None`` stores every activation (fastest);
        an integer stores that many segment inputs and recomputes segments in
        the backward; ``"sqrt"`` means ``round(sqrt(depth))``.
    """

    def __init__(
        self,
        channels: int,
        depth: int,
        kernel_size: int = 3,
        checkpoint_segments: int | str | None = None,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ):
        super().__init__()
        for name, val in (("channels", channels), ("depth", depth)):
            if int(val) != val or val < 1:
                raise ValueError(f"{name} must be a positive integer, got {val!r}")
        if int(kernel_size) != kernel_size or kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be a positive odd integer, got {kernel_size!r}")
        if checkpoint_segments == "sqrt":
            checkpoint_segments = default_segments(depth)
        if checkpoint_segments is not None and (
            isinstance(checkpoint_segments, str)
            or int(checkpoint_segments) != checkpoint_segments
            or not 1 <= checkpoint_segments <= depth
        ):
            raise ValueError(
                f"checkpoint_segments must be None, 'sqrt' or an integer in 1..{depth}, got {checkpoint_segments!r}"
            )
        self.channels, self.depth, self.kernel_size = int(channels), int(depth), int(kernel_size)
        self.checkpoint_segments = checkpoint_segments
        k = self.kernel_size
        self.weight = nn.Parameter(torch.empty((depth, channels, channels, k, k), device=device, dtype=dtype))
        self.bias = nn.Parameter(torch.empty((depth, channels), device=device, dtype=dtype))
        with torch.no_grad():  # one vectorised draw: cheap also at depth 10,000
            self.weight.normal_(0.0, 1.0 / (k * math.sqrt(channels)))
            self.bias.zero_()

    def initialise_(
        self,
        kernel: str = "delta_orthogonal",
        sigma_w2: float = 1.0,
        sigma_b2: float = 0.0,
        generator: torch.Generator | None = None,
        v: ArrayLike | None = None,
    ) -> DeepTanhBlock:
        """Re-initialise every layer in place; returns ``self``.

        Each layer's kernel is drawn independently by the :mod:`signalprop.init`
        initialiser named by ``kernel`` (``"delta_orthogonal"``, Algorithm 2;
        ``"orthogonal"``, Algorithm 1; ``"gaussian"``, eq. (2.13)) with
        ``gain = sqrt(sigma_w2)``, and biases are ``N(0, sigma_b2)``
        (Xiao et al. 2018, eq. (2.1)).  Draws happen on the CPU in float64 and
        are copied, so results do not depend on the device.

        Parameters
        ----------
        kernel : {"delta_orthogonal", "orthogonal", "gaussian"}
        sigma_w2 : float
            Weight variance, ``> 0``.
        sigma_b2 : float
            Bias variance, ``>= 0``.
        generator : torch.Generator, optional
        v : array_like, optional
            ``kernel="gaussian"`` only: the spatial variance profile of eq. (2.13),
            shape ``(k, k)`` (or ``(k,)``, used as the separable ``outer(v, v)``),
            non-negative, summing to 1; tap ``beta`` gets weight variance
            ``sigma_w2 * v_beta / c``.  ``None`` is the uniform profile.  The
            non-uniform critical Gaussian initialisations GS0-GS4 of Xiao et al.
            (2018), section 3.3 / Figure 4, are such profiles.

        Raises
        ------
        ValueError
            Unknown ``kernel``; a variance that is negative, not finite or a zero
            ``sigma_w2``; ``v`` given with a kernel other than ``"gaussian"``, or a
            ``v`` of the wrong shape, with negative entries or not summing to 1.
        """
        if kernel not in _KERNEL_INITS:
            raise ValueError(f"kernel must be one of {sorted(_KERNEL_INITS)}, got {kernel!r}")
        if v is not None and kernel != "gaussian":
            raise ValueError(f"a spatial variance profile v applies to kernel='gaussian' only, got kernel={kernel!r}")
        for name, val in (("sigma_w2", sigma_w2), ("sigma_b2", sigma_b2)):
            if not (math.isfinite(val) and val >= 0):
                raise ValueError(f"{name} must be a finite variance >= 0, got {val!r}")
        if sigma_w2 == 0:
            raise ValueError("sigma_w2 must be > 0")
        fill = _KERNEL_INITS[kernel]
        extra = {} if v is None else {"v": v}
        gain = math.sqrt(sigma_w2)
        w = torch.empty(self.weight.shape[1:], dtype=torch.float64)
        with torch.no_grad():
            for layer in range(self.depth):
                fill(w, gain=gain, generator=generator, **extra)  # a bad v raises here, before any copy
                self.weight[layer].copy_(w)
            b = torch.randn(self.bias.shape, generator=generator, dtype=torch.float64) * math.sqrt(sigma_b2)
            self.bias.copy_(b)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The block applied to ``x`` of shape ``(batch, channels, H, W)``."""
        return deep_tanh_block(x, self.weight, self.bias, checkpoint_segments=self.checkpoint_segments)

    def reference_forward(self, x: torch.Tensor) -> torch.Tensor:
        """The straightforward implementation, for tests: per layer ``circular_pad``, ``conv2d``, ``tanh``.

        Differentiable by autograd; numerically the same stack as
        :class:`signalprop.layers.CircularConv2d` followed by ``tanh``.
        """
        _check_block_args(x, self.weight, self.bias, None)
        p = self.kernel_size // 2
        for layer in range(self.depth):
            x = torch.tanh(F.conv2d(circular_pad(x, (p, p, p, p)), self.weight[layer], self.bias[layer]))
        return x

    def extra_repr(self) -> str:
        return (
            f"channels={self.channels}, depth={self.depth}, kernel_size={self.kernel_size}, "
            f"checkpoint_segments={self.checkpoint_segments}"
        )
