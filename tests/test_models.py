"""Tests for signalprop.models: the vanilla tanh CNN of Xiao et al. (2018), section 3 (Experiments).

Checked against a hand-written network (explicit circular shifts), the layer-stack
reference, the critical-line table of tests/data/ (make_reference_tables.py there) and adaptive quadrature of
the critical-line equations.
"""

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import integrate
from signalprop import init, models
from signalprop.deepblock import DeepTanhBlock


def _model(**kw):
    args = {"channels": 6, "depth": 4, "seed": 0}
    args.update(kw)
    return models.VanillaCNN(args.pop("channels"), args.pop("depth"), **args)


def _hand_written_forward(model: models.VanillaCNN, x: torch.Tensor) -> torch.Tensor:
    """The architecture written out: zero-padded stem, circular deep layers by explicit shifts, mean, linear."""
    h = x
    strides = (1, 2, 2) if model.downsample else (1, 1, 1)
    for conv, stride in zip(model.stem, strides, strict=True):
        h = torch.tanh(F.conv2d(F.pad(h, (1, 1, 1, 1)), conv.weight, conv.bias, stride=stride))
    params = model.deep_parameters()
    if params is not None:
        weight, bias = params
        for w, b in zip(weight, bias, strict=True):
            out = b.view(1, -1, 1, 1).expand_as(h).clone()
            for ky in range(3):
                for kx in range(3):
                    # tap (ky, kx) reads pixel (h + ky - 1, w + kx - 1) modulo the image size
                    shifted = torch.roll(h, shifts=(1 - ky, 1 - kx), dims=(2, 3))
                    out = out + torch.einsum("oi,bihw->bohw", w[:, :, ky, kx], shifted)
            h = torch.tanh(out)
    return h.mean(dim=(2, 3)) @ model.readout.weight.T + model.readout.bias


# --- architecture -----------------------------------------------------------------------------


@pytest.mark.parametrize(("in_channels", "size", "spatial"), [(1, 28, 7), (3, 32, 8)])
@pytest.mark.parametrize("depth", [0, 3])
def test_output_and_intermediate_shapes(in_channels, size, spatial, depth):
    model = _model(in_channels=in_channels, image_size=size, depth=depth, num_classes=7)
    assert model.spatial_size == spatial
    seen = []
    model.stem[2].register_forward_hook(lambda mod, inp, out: seen.append(out.shape))
    x = torch.randn(2, in_channels, size, size, generator=torch.Generator().manual_seed(0))
    assert model(x).shape == (2, 7)
    assert seen == [(2, 6, spatial, spatial)]
    assert model.features(x).shape == (2, 6)
    assert (model.block is None) == (depth == 0)


@pytest.mark.parametrize(("in_channels", "size"), [(1, 28), (3, 32)])
def test_float64_model_equals_the_hand_written_network(in_channels, size):
    # Gaussian kernels with a large variance and a bias, so every tap and the nonlinearity matter
    for fast in (True, False):
        model = _model(
            in_channels=in_channels, image_size=size, kernel_init="gaussian", sigma_w2=1.8, sigma_b2=0.1,
            fast=fast, dtype=torch.float64,
        )  # fmt: skip
        x = torch.randn(3, in_channels, size, size, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
        with torch.no_grad():
            torch.testing.assert_close(model(x), _hand_written_forward(model, x), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("in_channels", "size"), [(1, 28), (3, 32)])
def test_without_downsampling_the_block_works_on_the_full_image(in_channels, size):
    # the paper's 50-layer network "without downsampling": stem strides 1, 1, 1
    seen = []
    for fast in (True, False):
        model = _model(
            in_channels=in_channels, image_size=size, downsample=False, depth=2, kernel_init="gaussian",
            sigma_w2=1.8, sigma_b2=0.1, fast=fast, dtype=torch.float64,
        )  # fmt: skip
        assert model.spatial_size == size and model.config["downsample"] is False
        assert [c.stride for c in model.stem] == [(1, 1)] * 3
        model.stem[-1].register_forward_hook(lambda m, i, o: seen.append(tuple(o.shape)))
        x = torch.randn(2, in_channels, size, size, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
        with torch.no_grad():
            torch.testing.assert_close(model(x), _hand_written_forward(model, x), rtol=1e-12, atol=1e-12)
    assert seen == [(2, 6, size, size)] * 2


def test_downsample_is_a_later_key_so_stored_job_keys_do_not_change():
    # configurations written before the option existed have no such key; it must not appear in defaults
    assert "downsample" not in models.model_config_defaults()
    assert "downsample" not in models.model_config_for_dataset("fashion-mnist", depth=3, channels=4)
    assert models.build_model({"depth": 1, "channels": 2, "seed": 0}).config["downsample"] is True
    rebuilt = models.build_model({"depth": 1, "channels": 2, "seed": 0, "downsample": False})
    assert rebuilt.spatial_size == 28
    assert models.build_model(rebuilt.config).spatial_size == 28


def _all_gradients(model, x, g):
    """Logits and gradients w.r.t. the input and every parameter, deep block as (depth, ...) stacks."""
    xr = x.clone().requires_grad_()
    y = model(xr)
    stem = list(model.stem.parameters())
    readout = list(model.readout.parameters())
    if isinstance(model.block, DeepTanhBlock):
        deep = [model.block.weight, model.block.bias]
        grads = torch.autograd.grad(y, [xr, *stem, *deep, *readout], g)
        n = len(stem)
        return y.detach(), grads[: 1 + n], grads[1 + n : 3 + n], grads[3 + n :]
    convs = [m for m in model.block if isinstance(m, torch.nn.Conv2d)]
    deep = [p for m in convs for p in (m.weight, m.bias)]
    grads = torch.autograd.grad(y, [xr, *stem, *deep, *readout], g)
    n, d = len(stem), len(deep)
    per_layer = grads[1 + n : 1 + n + d]
    return y.detach(), grads[: 1 + n], (torch.stack(per_layer[0::2]), torch.stack(per_layer[1::2])), grads[1 + n + d :]


@pytest.mark.parametrize(("in_channels", "size", "kernel_init"), [(1, 28, "delta_orthogonal"), (3, 32, "gaussian")])
def test_fast_and_reference_models_agree_in_float32(in_channels, size, kernel_init):
    fast = _model(channels=8, depth=6, in_channels=in_channels, image_size=size, kernel_init=kernel_init, seed=3)
    ref = _model(channels=8, depth=6, in_channels=in_channels, image_size=size, kernel_init=kernel_init, seed=3,
                 fast=False)  # fmt: skip
    # the same seed gives the same parameters whatever the implementation
    for a, b in zip(fast.deep_parameters(), ref.deep_parameters(), strict=True):
        assert torch.equal(a, b)
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(4, in_channels, size, size, generator=gen)
    g = torch.randn(4, 10, generator=gen)
    out_f, head_f, deep_f, tail_f = _all_gradients(fast, x, g)
    out_r, head_r, deep_r, tail_r = _all_gradients(ref, x, g)
    torch.testing.assert_close(out_f, out_r, rtol=1e-5, atol=1e-6)
    for a, b in zip((*head_f, *deep_f, *tail_f), (*head_r, *deep_r, *tail_r), strict=True):
        scale = b.abs().max().item()
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5 * scale)


def test_converted_copy_has_the_same_function():
    model = _model(kernel_init="orthogonal", seed=5)
    ref = model.converted(fast=False)
    assert not ref.fast and ref.config["seed"] == 5
    x = torch.randn(2, 1, 28, 28, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        torch.testing.assert_close(ref(x), model(x), rtol=1e-5, atol=1e-6)
        back = ref.converted(fast=True)
        torch.testing.assert_close(back(x), model(x), rtol=0, atol=0)


def test_checkpointing_does_not_change_outputs_or_gradients():
    x = torch.randn(2, 1, 28, 28, generator=torch.Generator().manual_seed(7))
    results = []
    for segments in (None, 2, "sqrt"):
        model = _model(depth=5, checkpoint_segments=segments, seed=8, dtype=torch.float64)
        y = model(x.double())
        results.append((y, *torch.autograd.grad(y.square().sum(), list(model.parameters()))))
    for other in results[1:]:
        for a, b in zip(results[0], other, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-13, atol=1e-14)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
@pytest.mark.parametrize("fast", [True, False])
def test_gpu_model_matches_cpu(fast):
    cpu = _model(channels=8, depth=5, fast=fast, seed=19)
    gpu = _model(channels=8, depth=5, fast=fast, seed=19, device="cuda")
    x = torch.randn(3, 1, 28, 28, generator=torch.Generator().manual_seed(20))
    torch.testing.assert_close(gpu(x.cuda()).cpu(), cpu(x), rtol=1e-4, atol=1e-5)


# --- initialisation ---------------------------------------------------------------------------


@pytest.mark.parametrize("kernel_init", ["delta_orthogonal", "orthogonal"])
def test_orthogonal_deep_kernels_give_orthogonal_periodic_operators(kernel_init):
    model = _model(channels=8, depth=3, kernel_init=kernel_init, seed=9)
    weight, _ = model.deep_parameters()
    gain = math.sqrt(model.sigma_w2)
    for layer in range(3):
        sv = init.conv_operator_singular_values(weight[layer], model.spatial_size)
        assert sv.shape == (49 * 8,)
        np.testing.assert_allclose(sv, gain, rtol=2e-6)


def test_gaussian_deep_kernels_are_not_orthogonal():
    model = _model(channels=8, depth=1, kernel_init="gaussian", seed=9)
    sv = init.conv_operator_singular_values(model.deep_parameters()[0][0], 7)
    assert sv[0] / sv[-1] > 10


def test_gs_profiles_and_gaussian_model_with_a_profile():
    v0, v2, v4 = models.gs_profile(0), models.gs_profile(2), models.gs_profile(4)
    np.testing.assert_array_equal(v0, np.pad([[1.0]], 1))
    np.testing.assert_allclose(v4, np.full((3, 3), 1 / 9), rtol=1e-15)
    np.testing.assert_allclose(v2, 0.5 * v0 + 0.5 * v4, rtol=1e-15)
    model = _model(channels=4, depth=2, kernel_init="gaussian", v=v0, seed=10)
    weight, _ = model.deep_parameters()
    centre = weight[:, :, :, 1, 1].clone()
    weight[:, :, :, 1, 1] = 0
    assert torch.count_nonzero(weight) == 0 and torch.count_nonzero(centre) == 2 * 16
    assert model.config["v"] == v0.tolist()


def test_stem_and_readout_initial_statistics():
    sigma_w2, sigma_b2, c = 1.7, 0.25, 128
    model = _model(channels=c, depth=0, in_channels=3, image_size=32, sigma_w2=sigma_w2, sigma_b2=sigma_b2, seed=11)

    def check_std(t, expected):
        n = t.numel()  # relative standard error of a sample std ~ 1/sqrt(2n); allow 4 of them
        assert t.detach().double().pow(2).mean().sqrt().item() == pytest.approx(expected, rel=4 / math.sqrt(2 * n))

    check_std(model.stem[0].weight, math.sqrt(sigma_w2 / (9 * 3)))
    check_std(model.stem[1].weight, math.sqrt(sigma_w2 / (9 * c)))
    check_std(model.stem[2].weight, math.sqrt(sigma_w2 / (9 * c)))
    check_std(torch.cat([m.bias for m in model.stem]), math.sqrt(sigma_b2))
    check_std(model.readout.weight, math.sqrt(1 / c))
    assert torch.count_nonzero(model.readout.bias) == 0


def test_deep_bias_variance():
    model = _model(channels=16, depth=40, sigma_w2=1.2, sigma_b2=0.09, seed=12)
    bias = model.deep_parameters()[1]
    assert bias.double().pow(2).mean().sqrt().item() == pytest.approx(0.3, rel=4 / math.sqrt(2 * bias.numel()))


def test_seeded_initialisation_is_reproducible():
    a, b, c = _model(seed=13), _model(seed=13), _model(seed=14)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert ka == kb and torch.equal(va, vb)
    assert not torch.equal(a.stem[0].weight, c.stem[0].weight)
    gen_model = _model(seed=None, generator=torch.Generator().manual_seed(13))
    assert all(torch.equal(p, q) for p, q in zip(gen_model.parameters(), a.parameters(), strict=True))
    torch.manual_seed(15)
    d = _model(seed=None)
    torch.manual_seed(15)
    e = _model(seed=None)
    assert all(torch.equal(p, q) for p, q in zip(d.parameters(), e.parameters(), strict=True))
    assert d.config["seed"] is not None  # the drawn seed is recorded, so the model can be rebuilt


def test_build_model_round_trips_through_json():
    cfg = models.model_config_for_dataset("cifar10", depth=3, channels=5, kernel_init="gaussian",
                                          v=models.gs_profile(1).tolist(), seed=16)  # fmt: skip
    model = models.build_model(cfg)
    assert (model.in_channels, model.image_size, model.num_classes) == (3, 32, 10)
    stored = json.loads(json.dumps(model.config))
    # every default resolved, also readout_scale and downsample, which the defaults leave out (so that stored jobs
    # keep their keys)
    assert set(stored) == set(models.model_config_defaults()) | {"readout_scale", "downsample"}
    assert stored["readout_scale"] == 1.0 and stored["downsample"] is True
    again = models.build_model(stored)
    assert again.config == model.config
    for p, q in zip(model.state_dict().values(), again.state_dict().values(), strict=True):
        assert torch.equal(p, q)
    again = models.build_model(models.ModelConfig(**stored))
    assert again.config == model.config


def test_build_model_defaults():
    cfg = models.model_config_defaults()
    assert cfg["depth"] == 16 and cfg["channels"] is None and cfg["kernel_init"] == "delta_orthogonal"
    assert cfg["seed"] is None
    torch.manual_seed(18)  # without a seed in the configuration, the global generator decides
    a = models.build_model({"depth": 1, "channels": 3})
    torch.manual_seed(18)
    b = models.build_model({"depth": 1, "channels": 3})
    assert a.config["seed"] == b.config["seed"] is not None
    assert torch.equal(a.stem[0].weight, b.stem[0].weight)
    assert torch.equal(models.build_model(a.config).readout.weight, a.readout.weight)
    model = models.build_model({"depth": 2, "seed": 0, "dtype": "float64"})
    assert model.channels == models.paper_width(2) == 256
    assert model.readout.weight.dtype == torch.float64
    assert (model.sigma_w2, model.sigma_b2) == models.critical_parameters(2)


def test_paper_width_rule():
    assert [models.paper_width(d) for d in (0, 2, 256, 257, 10000)] == [256, 256, 256, 128, 128]


# --- the critical point -------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [16, 64, 100])
def test_critical_parameters_match_the_reference_table(depth, table):
    (row,) = [r for r in table("tanh_critical_line.csv") if float(r["q_star"]) == 1 / depth]  # q* = 1 / depth
    sw, sb = models.critical_parameters(depth)
    assert isinstance(sw, float) and isinstance(sb, float)
    assert sw == pytest.approx(float(row["sigma_w2"]), rel=1e-9)
    assert sb == pytest.approx(float(row["sigma_b2"]), rel=1e-9)
    assert models.critical_parameters(q_star=1 / depth) == (sw, sb)


def _gauss(f, q):
    """E f(sqrt(q) z), z ~ N(0, 1), by adaptive quadrature."""
    val, _ = integrate.quad(lambda z: f(math.sqrt(q) * z) * math.exp(-z * z / 2) / math.sqrt(2 * math.pi), -40, 40,
                            epsabs=1e-14, epsrel=1e-13, limit=200)  # fmt: skip
    return val


def test_default_model_variances_are_critical_with_q_star_one_over_depth():
    model = _model(depth=37, seed=17)
    q = 1 / 37
    chi_1 = model.sigma_w2 * _gauss(lambda u: 1 / math.cosh(u) ** 4, q)
    q_next = model.sigma_w2 * _gauss(lambda u: math.tanh(u) ** 2, q) + model.sigma_b2
    assert chi_1 == pytest.approx(1.0, rel=1e-9)
    assert q_next == pytest.approx(q, rel=1e-9)


# --- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"depth": -1}, "depth must be an integer >= 0"),
        ({"channels": 0}, "channels must be an integer >= 1"),
        ({"in_channels": 0}, "in_channels must be an integer >= 1"),
        ({"num_classes": 0}, "num_classes must be an integer >= 1"),
        ({"image_size": 30}, "image_size must be 28"),
        ({"kernel_init": "he"}, "kernel_init must be one of"),
        ({"sigma_w2": 1.0, "sigma_b2": -0.1}, "sigma_b2 must be a finite variance >= 0"),
        ({"sigma_w2": 0.0, "sigma_b2": 0.1}, "sigma_w2 must be a finite variance > 0"),
        ({"sigma_w2": 1.0}, "give both sigma_w2 and sigma_b2"),
        ({"sigma_w2": 1.0, "sigma_b2": 0.0, "q_star": 0.1}, "q_star only chooses"),
        ({"q_star": -0.1}, "q_star must be a positive finite variance"),
        ({"v": models.gs_profile(1)}, "needs kernel_init='gaussian'"),
        ({"kernel_init": "gaussian", "v": [[1.0, 0.0], [0.0, 0.0]]}, r"v must have shape \(3, 3\)"),
        ({"kernel_init": "gaussian", "v": np.full((3, 3), 0.2)}, "sum to 1"),
        ({"generator": torch.Generator()}, "generator or seed, not both"),
        ({"checkpoint_segments": 9}, "checkpoint_segments"),
        ({"fast": 1}, "fast must be a bool"),
        ({"downsample": 0}, "downsample must be a bool"),
    ],
)
def test_bad_model_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        _model(**kwargs)


def test_wrong_input_shape_raises():
    with pytest.raises(ValueError, match=r"input must have shape \(batch, 1, 28, 28\)"):
        _model()(torch.zeros(2, 1, 32, 32))


def test_unknown_config_key_raises():
    with pytest.raises(ValueError, match=r"unknown configuration keys \['width'\]"):
        models.build_model({"width": 3})


def test_bad_config_dtype_raises():
    with pytest.raises(ValueError, match="dtype must be one of"):
        models.build_model({"depth": 1, "channels": 2, "dtype": "float16"})


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({}, "exactly one"),
        ({"depth": 4, "q_star": 0.25}, "exactly one"),
        ({"depth": 0}, "depth must be an integer >= 1"),
        ({"q_star": 0.0}, "q_star must be a positive finite variance"),
    ],
)
def test_bad_critical_parameters_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        models.critical_parameters(**kwargs)


def test_gs_profile_level_out_of_range_raises():
    with pytest.raises(ValueError, match="level must be an integer in 0..4"):
        models.gs_profile(5)
