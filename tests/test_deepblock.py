"""Tests for signalprop.deepblock: the fused deep tanh block against a stack of CircularConv2d + tanh."""

import math

import pytest
import torch
import torch.nn.functional as F
from signalprop import deepblock, layers
from signalprop.deepblock import DeepTanhBlock, deep_tanh_block


def _stack_of_layers(block: DeepTanhBlock) -> torch.nn.Sequential:
    """The straightforward model: independent CircularConv2d modules holding copies of the block's parameters."""
    mods = []
    for layer in range(block.depth):
        conv = layers.CircularConv2d(block.channels, block.channels, block.kernel_size).to(block.weight.dtype)
        with torch.no_grad():
            conv.weight.copy_(block.weight[layer])
            conv.bias.copy_(block.bias[layer])
        mods += [conv, torch.nn.Tanh()]
    return torch.nn.Sequential(*mods)


def _grads_fast_and_stack(block, x, g, **kwargs):
    """(output, d/dx, d/dW, d/db) of the fused block and of the layer stack, for the cotangent ``g``."""
    xf = x.clone().requires_grad_()
    y = deep_tanh_block(xf, block.weight, block.bias, **kwargs)
    fast = (y.detach(), *torch.autograd.grad(y, (xf, block.weight, block.bias), g))
    stack = _stack_of_layers(block)
    xs = x.clone().requires_grad_()
    ys = stack(xs)
    gx, *per_layer = torch.autograd.grad(ys, (xs, *stack.parameters()), g)
    ref = (ys.detach(), gx, torch.stack(per_layer[0::2]), torch.stack(per_layer[1::2]))
    return fast, ref


def _block(c, d, k=3, dtype=torch.float64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    # Gaussian kernels with a large sigma_w2 and a bias: every tap and the tanh nonlinearity matter
    return DeepTanhBlock(c, d, k, dtype=dtype).initialise_("gaussian", sigma_w2=1.8, sigma_b2=0.1, generator=gen)


@pytest.mark.parametrize(
    ("batch", "c", "h", "w", "d", "k", "threads"),
    [
        (3, 4, 5, 6, 5, 3, 1),  # non-square image
        (3, 4, 5, 6, 5, 3, 2),  # batch split unevenly over two threads
        (2, 3, 2, 1, 4, 3, 2),  # image smaller than the kernel: taps wrap more than once
        (1, 2, 1, 1, 3, 3, 1),  # a single pixel
        (2, 3, 4, 4, 3, 5, 2),  # 5 x 5 kernel on a 4 x 4 image
    ],
)
def test_float64_forward_and_gradients_equal_the_layer_stack(batch, c, h, w, d, k, threads):
    block = _block(c, d, k)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(batch, c, h, w, generator=gen, dtype=torch.float64)
    g = torch.randn(batch, c, h, w, generator=gen, dtype=torch.float64)
    fast, ref = _grads_fast_and_stack(block, x, g, threads=threads)
    for a, b in zip(fast, ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-13)


def test_float32_deep_block_within_float32_tolerance():
    # the paper's deep block geometry, shallow and small: c = 16, 7 x 7.  Float32 rounding differs
    # between the two summation orders, so the fast block's error (against the float64 stack) is
    # asked to be of the size of the float32 stack's own error.
    block = _block(16, 12, dtype=torch.float64)
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(4, 16, 7, 7, generator=gen, dtype=torch.float64)
    g = torch.randn(4, 16, 7, 7, generator=gen, dtype=torch.float64)
    _, exact = _grads_fast_and_stack(block, x, g)
    block32 = block.float()
    fast, stack = _grads_fast_and_stack(block32, x.float(), g.float())
    for a, b, e in zip(fast, stack, exact, strict=True):
        scale = e.abs().max().item()
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5 * scale)
        assert (a.double() - e).abs().max() <= 4 * (b.double() - e).abs().max() + 1e-7 * scale


def test_reference_forward_is_the_layer_stack():
    block = _block(3, 4)
    x = torch.randn(2, 3, 5, 5, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(block.reference_forward(x), _stack_of_layers(block)(x), rtol=0, atol=0)


@pytest.mark.parametrize("segments", [1, 2, 3, 7])
def test_checkpointing_gives_the_same_output_and_gradients(segments):
    block = _block(3, 7)
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(3, 3, 4, 5, generator=gen, dtype=torch.float64)
    g = torch.randn(3, 3, 4, 5, generator=gen, dtype=torch.float64)
    outs = []
    for seg in (None, segments):
        xf = x.clone().requires_grad_()
        y = deep_tanh_block(xf, block.weight, block.bias, checkpoint_segments=seg, threads=2)
        outs.append((y, *torch.autograd.grad(y, (xf, block.weight, block.bias), g)))
    for a, b in zip(*outs, strict=True):
        # the same operations on the same numbers; only buffer addresses differ
        torch.testing.assert_close(a, b, rtol=1e-14, atol=1e-15)


def test_module_checkpoint_option_and_no_grad_forward():
    block = _block(2, 9)
    x = torch.randn(2, 2, 3, 3, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    with torch.no_grad():
        y0 = block(x)
    assert not y0.requires_grad
    sq = DeepTanhBlock(2, 9, checkpoint_segments="sqrt", dtype=torch.float64)
    assert sq.checkpoint_segments == 3 == deepblock.default_segments(9)
    sq.load_state_dict(block.state_dict())
    torch.testing.assert_close(sq(x), y0, rtol=1e-14, atol=1e-15)


def test_only_parameter_gradients_when_the_input_needs_none():
    block = _block(3, 4)
    x = torch.randn(2, 3, 3, 3, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    block(x).square().sum().backward()
    stack = _stack_of_layers(block)
    stack(x).square().sum().backward()
    torch.testing.assert_close(block.weight.grad, torch.stack([m.weight.grad for m in stack[0::2]]))
    torch.testing.assert_close(block.bias.grad, torch.stack([m.bias.grad for m in stack[0::2]]))


def test_patch_index_matches_unfold_of_the_circularly_padded_image():
    b, c, h, w, k = 2, 3, 3, 4, 3
    x = torch.randn(b, c, h, w, generator=torch.Generator().manual_seed(7))
    idx = deepblock.circular_patch_index(b, h, w, k)
    rows = x.permute(0, 2, 3, 1).reshape(-1, c)
    patches = rows[idx].view(b, h, w, k, k, c)
    p = k // 2
    unfold = F.unfold(layers.circular_pad(x, (p, p, p, p)), k).view(b, c, k, k, h, w)
    torch.testing.assert_close(patches, unfold.permute(0, 4, 5, 2, 3, 1), rtol=0, atol=0)


def test_delta_orthogonal_initialisation_per_layer():
    block = DeepTanhBlock(4, 3, dtype=torch.float64)
    block.initialise_("delta_orthogonal", sigma_w2=1.5, sigma_b2=0.0, generator=torch.Generator().manual_seed(8))
    centre = block.weight[:, :, :, 1, 1]
    eye = torch.eye(4, dtype=torch.float64).expand(3, 4, 4)
    torch.testing.assert_close(centre.transpose(1, 2) @ centre, 1.5 * eye)
    assert block.weight.detach().abs().sum().item() == pytest.approx(centre.abs().sum().item())
    assert torch.all(block.bias == 0)
    assert not torch.equal(centre[0], centre[1])  # layers drawn independently


def test_gaussian_bias_variance():
    block = DeepTanhBlock(8, 400).initialise_("gaussian", 1.0, 0.04, generator=torch.Generator().manual_seed(9))
    assert block.bias.detach().std().item() == pytest.approx(math.sqrt(0.04), rel=0.05)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_gpu_matches_cpu():
    block = _block(4, 5, dtype=torch.float32)
    x = torch.randn(3, 4, 5, 5, generator=torch.Generator().manual_seed(10))
    y = block(x)
    y_gpu = block.to("cuda")(x.cuda())
    torch.testing.assert_close(y_gpu.cpu(), y, rtol=1e-4, atol=1e-5)


def test_bad_input_raises():
    block = _block(3, 2)
    w, b = block.weight, block.bias
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match="x must have shape"):
        block(torch.randn(2, 4, 4, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match="x must have shape"):
        block(torch.randn(3, 4, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match="dtype"):
        block(x.float())
    with pytest.raises(ValueError, match="weight must have shape"):
        deep_tanh_block(x, w[:, :, :2], b)
    with pytest.raises(ValueError, match="odd"):
        deep_tanh_block(x, torch.zeros(2, 3, 3, 2, 2, dtype=torch.float64), b)
    with pytest.raises(ValueError, match="bias must have shape"):
        deep_tanh_block(x, w, b[:1])
    with pytest.raises(ValueError, match="checkpoint_segments"):
        deep_tanh_block(x, w, b, checkpoint_segments=3)
    with pytest.raises(ValueError, match="threads"):
        deep_tanh_block(x, w, b, threads=0)
    with pytest.raises(ValueError, match="kernel_size"):
        DeepTanhBlock(3, 2, kernel_size=4)
    with pytest.raises(ValueError, match="depth"):
        DeepTanhBlock(3, 0)
    with pytest.raises(ValueError, match="checkpoint_segments"):
        DeepTanhBlock(3, 2, checkpoint_segments="all")
    with pytest.raises(ValueError, match="kernel must be one of"):
        block.initialise_("uniform")
    with pytest.raises(ValueError, match="sigma_b2"):
        block.initialise_(sigma_b2=-1.0)
    with pytest.raises(ValueError, match="kernel_size"):
        deepblock.circular_patch_index(1, 2, 2, 2)


def test_gaussian_spatial_variance_profile():
    # eq. (2.13): tap beta of every layer has weight variance sigma_w2 * v_beta / c; taps with v_beta = 0 are zero
    c, d, sigma_w2 = 16, 50, 2.0
    v = [[0.0, 0.1, 0.0], [0.1, 0.6, 0.1], [0.0, 0.1, 0.0]]
    block = DeepTanhBlock(c, d, dtype=torch.float64)
    block.initialise_("gaussian", sigma_w2, 0.0, generator=torch.Generator().manual_seed(11), v=v)
    w = block.weight.detach()
    n = d * c * c  # samples per tap; relative standard error of a sample variance sqrt(2 / n)
    for ky in range(3):
        for kx in range(3):
            tap = w[:, :, :, ky, kx]
            if v[ky][kx] == 0:
                assert torch.count_nonzero(tap) == 0
            else:
                expected = sigma_w2 * v[ky][kx] / c
                assert tap.square().mean().item() == pytest.approx(expected, rel=4 * math.sqrt(2 / n))
    # a 1-D profile is used as the separable outer(v, v): the corners get v_0 * v_2
    sep = DeepTanhBlock(c, d, dtype=torch.float64)
    sep.initialise_("gaussian", sigma_w2, 0.0, generator=torch.Generator().manual_seed(12), v=[0.25, 0.5, 0.25])
    corner = sep.weight.detach()[:, :, :, 0, 2]
    assert corner.square().mean().item() == pytest.approx(sigma_w2 / 16 / c, rel=4 * math.sqrt(2 / n))


def test_gaussian_delta_profile_equals_uniform_draws_only_at_the_centre():
    # the profile changes each tap's scale, not the random stream: same seed, delta v -> only the centre survives
    block = DeepTanhBlock(4, 3, dtype=torch.float64)
    delta = [[0.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]]
    block.initialise_("gaussian", 1.5, 0.0, generator=torch.Generator().manual_seed(13), v=delta)
    uniform = DeepTanhBlock(4, 3, dtype=torch.float64)
    uniform.initialise_("gaussian", 1.5, 0.0, generator=torch.Generator().manual_seed(13))
    centre = block.weight.detach()[:, :, :, 1, 1]
    torch.testing.assert_close(centre, 3.0 * uniform.weight.detach()[:, :, :, 1, 1], rtol=1e-14, atol=0)
    assert block.weight.detach().abs().sum().item() == pytest.approx(centre.abs().sum().item())


def test_profile_with_another_kernel_raises():
    block = DeepTanhBlock(3, 2)
    with pytest.raises(ValueError, match="kernel='gaussian' only"):
        block.initialise_("delta_orthogonal", v=[0.25, 0.5, 0.25])


def test_malformed_profile_raises_and_leaves_the_block_unchanged():
    block = _block(3, 2)
    before = block.weight.detach().clone()
    with pytest.raises(ValueError, match="sum to 1"):
        block.initialise_("gaussian", v=[[0.2] * 3] * 3)
    assert torch.equal(block.weight.detach(), before)


_FAST = deepblock._use_fast_path(torch.empty(1))


@pytest.mark.skipif(not _FAST, reason="the CPU float32 path needs oneDNN")
@pytest.mark.parametrize(
    ("batch", "c", "h", "w", "d", "k", "threads", "segments"),
    [
        (3, 4, 5, 6, 5, 3, 1, None),  # non-square image
        (3, 4, 5, 6, 5, 3, 2, None),  # batch split unevenly over two threads
        (2, 3, 2, 1, 4, 3, 2, 2),  # image smaller than the kernel, checkpointed
        (1, 2, 1, 1, 3, 3, 1, None),  # a single pixel
        (2, 3, 4, 4, 3, 5, 2, 3),  # 5 x 5 kernel on a 4 x 4 image, one layer per segment
        (5, 16, 7, 7, 12, 3, 2, 4),  # the paper's geometry, checkpointed
    ],
)
def test_float32_cpu_fast_path_within_float32_tolerance(batch, c, h, w, d, k, threads, segments):
    # float32 on the CPU takes the oneDNN path (fused bias + tanh, TorchScript loops); its error against the
    # float64 stack must be of the size of the float32 stack's own error, as in the float32 test above.
    block = _block(c, d, k)
    gen = torch.Generator().manual_seed(14)
    x = torch.randn(batch, c, h, w, generator=gen, dtype=torch.float64)
    g = torch.randn(batch, c, h, w, generator=gen, dtype=torch.float64)
    _, exact = _grads_fast_and_stack(block, x, g)
    fast, stack = _grads_fast_and_stack(
        block.float(), x.float(), g.float(), threads=threads, checkpoint_segments=segments
    )
    for a, b, e in zip(fast, stack, exact, strict=True):
        scale = e.abs().max().item()
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5 * scale)
        assert (a.double() - e).abs().max() <= 4 * (b.double() - e).abs().max() + 1e-7 * scale


@pytest.mark.skipif(not _FAST, reason="the CPU float32 path needs oneDNN")
def test_float32_cpu_fast_path_checkpointing_no_grad_and_parameter_only_gradients():
    block = _block(4, 9).float()
    gen = torch.Generator().manual_seed(15)
    x = torch.randn(3, 4, 5, 5, generator=gen)
    g = torch.randn(3, 4, 5, 5, generator=gen)
    outs = []
    for seg in (None, 1, 3, 9):
        xf = x.clone().requires_grad_()
        y = deep_tanh_block(xf, block.weight, block.bias, checkpoint_segments=seg, threads=2)
        outs.append((y, *torch.autograd.grad(y, (xf, block.weight, block.bias), g)))
    for other in outs[1:]:
        for a, b in zip(outs[0], other, strict=True):
            # the same operations on the same numbers
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    with torch.no_grad():
        torch.testing.assert_close(deep_tanh_block(x, block.weight, block.bias), outs[0][0], rtol=1e-6, atol=1e-7)
    y = deep_tanh_block(x, block.weight, block.bias, threads=2)  # x needs no gradient: layer 0's is skipped
    gw, gb = torch.autograd.grad(y, (block.weight, block.bias), g)
    torch.testing.assert_close(gw, outs[0][2], rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(gb, outs[0][3], rtol=1e-6, atol=1e-7)


@pytest.mark.skipif(not _FAST, reason="the CPU float32 path needs oneDNN")
def test_fast_path_only_for_float32_on_the_cpu_with_onednn_enabled(monkeypatch):
    assert deepblock._use_fast_path(torch.empty(1, dtype=torch.float32))
    assert not deepblock._use_fast_path(torch.empty(1, dtype=torch.float64))
    monkeypatch.setattr(torch.backends.mkldnn, "enabled", False)
    assert not deepblock._use_fast_path(torch.empty(1, dtype=torch.float32))
