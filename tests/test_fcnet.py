"""Tests for signalprop.fcnet: the constant-width networks of Chang (2019), eq. (3.1), and their layer statistics.

Oracles: a NumPy re-implementation of eq. (3.1) from the stored weights, closed forms / quadrature for mu_1
(not the library's), np.var of the weights, orthogonality checks of W W^T, and eq. (3.7) at the Fig. 3.2 setting.
"""

import math

import numpy as np
import pytest
import torch
from scipy import integrate
from signalprop import fcnet, vni


def mu1_oracle(name: str, q: float) -> float:
    """mu_1 = E[phi'(h)^2], h ~ N(0, q), by closed forms or adaptive quadrature."""
    if name == "linear":
        return 1.0
    if name == "relu":
        return 0.5
    if name == "hardtanh":
        return math.erf(1 / math.sqrt(2 * q))
    s = math.sqrt(q)
    return integrate.quad(lambda z: math.cosh(s * z) ** -4 * math.exp(-z * z / 2) / math.sqrt(2 * math.pi), -40, 40,
                          epsabs=1e-14, limit=200)[0]  # fmt: skip


def numpy_forward(net: fcnet.FCNet, x: np.ndarray, phi) -> list[np.ndarray]:
    """Eq. (3.1) in NumPy from the network's stored weights: [x_1, ..., x_L]."""
    out = []
    for layer in net.layers:
        x = phi(x @ layer.weight.detach().double().numpy().T + layer.bias.detach().double().numpy())
        out.append(x)
    return out


PHI = {"tanh": np.tanh, "hardtanh": lambda h: np.clip(h, -1, 1), "relu": lambda h: np.maximum(h, 0), "linear": None}


@pytest.mark.parametrize("activation", ["tanh", "hardtanh", "relu", "linear"])
def test_forward_is_eq_3_1(activation):
    net = fcnet.FCNet(16, 5, activation, "gaussian", seed=1, dtype=torch.float64)
    with torch.no_grad():  # non-zero biases, to check they enter as in eq. (3.1)
        for layer in net.layers:
            layer.bias.normal_(0, 0.3)
    x = np.random.default_rng(0).normal(0, 1, (7, 16))
    phi = PHI[activation] or (lambda h: h)
    expected = numpy_forward(net, x, phi)
    got = fcnet.layer_activations(net, torch.from_numpy(x))
    assert len(got) == 5
    for e, g in zip(expected, got, strict=True):
        np.testing.assert_allclose(g.numpy(), e, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(net(torch.from_numpy(x)).detach().numpy(), expected[-1], rtol=1e-12, atol=1e-12)
    pre = fcnet.layer_activations(net, x, pre_activations=True)  # array input works too
    for h, a in zip(pre, got, strict=True):
        np.testing.assert_allclose(phi(h.numpy()), a.numpy(), rtol=1e-12, atol=1e-12)


def test_shapes_input_layer_and_readout():
    net = fcnet.FCNet(32, 4, "relu", "orthogonal", in_features=20, out_features=3, seed=0)
    x = fcnet.sample_inputs(9, 20, 0.5, seed=1)
    assert x.shape == (9, 20) and x.dtype == torch.float32
    assert net(x).shape == (9, 3)
    assert [tuple(a.shape) for a in fcnet.layer_activations(net, x)] == [(9, 32)] * 4
    assert [tuple(layer.weight.shape) for layer in net.layers] == [(32, 20)] + [(32, 32)] * 3
    assert tuple(net.readout.weight.shape) == (3, 32)
    assert fcnet.layer_vni(net, x).shape == (4,)
    assert fcnet.sigma_w2_mu1(net, x).shape == (4,)
    assert fcnet.FCNet(8, 2).readout is None
    assert "depth=4" in repr(net)


def test_biases_start_at_zero_and_everything_trains():
    net = fcnet.FCNet(12, 3, "tanh", "gaussian", out_features=2, seed=0)
    assert all(float(layer.bias.detach().abs().max()) == 0.0 for layer in [*net.layers, net.readout])
    before = [p.detach().clone() for p in net.parameters()]
    x = fcnet.sample_inputs(20, 12, seed=2)
    loss = torch.nn.functional.cross_entropy(net(x), torch.arange(20) % 2)
    loss.backward()
    torch.optim.SGD(net.parameters(), lr=0.1).step()
    assert all(not torch.equal(b, p) for b, p in zip(before, net.parameters(), strict=True))


@pytest.mark.parametrize("activation,sigma_w2", [("linear", 1.0), ("relu", 2.0), ("hardtanh", 1.0015678566),
                                                 ("tanh", 1.1775690962)])  # fmt: skip
@pytest.mark.parametrize("weights", ["gaussian", "orthogonal"])
def test_initialisation_has_sigma_w2_mu1_equal_to_one(activation, sigma_w2, weights):
    # sigma_w2 = 1 / mu_1(q = 0.1): reference values
    n = 300 if weights == "gaussian" else 100  # orthogonal: no sampling error to beat, and QR is the slow part
    net = fcnet.FCNet(n, 3, activation, weights, seed=3, dtype=torch.float64)
    assert net.sigma_w2 == pytest.approx(sigma_w2, abs=1e-9)
    assert net.sigma_w2 * mu1_oracle(activation, 0.1) == pytest.approx(1.0, abs=1e-12)
    # measured from the weights: N Var[W_ij] over N^2 entries has relative sd sqrt(2) / N = 0.5 % for Gaussian
    # weights (one layer) and ~0 for orthogonal ones (the squared entries sum exactly to N sigma_w2); 2.5 % is 5 sd
    measured = np.array([n * np.var(layer.weight.detach().numpy()) for layer in net.layers])
    np.testing.assert_allclose(fcnet.weight_sigma_w2(net), measured, rtol=1e-12)
    np.testing.assert_allclose(measured * mu1_oracle(activation, 0.1), 1.0, rtol=0.025)
    means = [float(layer.weight.detach().mean()) for layer in net.layers]
    assert max(abs(m) for m in means) < 5 * math.sqrt(sigma_w2 / n) / n  # 5 sd of the mean of N^2 entries


def test_sigma_w2_mu1_estimators():
    # hard-tanh at the Fig. 3.2 setting: the pre-activations stay near q = 0.1, so both estimators give ~1
    n = 200
    net = fcnet.FCNet(n, 5, "hardtanh", "gaussian", seed=4, dtype=torch.float64)
    x = fcnet.sample_inputs(1000, n, 0.1, seed=5, dtype=torch.float64)
    for est in ("empirical", "gaussian"):
        np.testing.assert_allclose(fcnet.sigma_w2_mu1(net, x, estimator=est), 1.0, atol=0.03)
    # the empirical estimator by hand: N Var[W] times the mean of phi'(h)^2 over inputs and nodes
    net = fcnet.FCNet(n, 2, "tanh", "gaussian", seed=6, dtype=torch.float64)
    with torch.no_grad():
        net.layers[1].weight.mul_(1.5)
    h = [t.numpy() for t in fcnet.layer_activations(net, x, pre_activations=True)]
    w = [layer.weight.detach().numpy() for layer in net.layers]
    by_hand = [n * np.var(wl) * np.mean((1 - np.tanh(hl) ** 2) ** 2) for wl, hl in zip(w, h, strict=True)]
    np.testing.assert_allclose(fcnet.sigma_w2_mu1(net, x), by_hand, rtol=1e-12)
    by_hand_gauss = [n * np.var(wl) * mu1_oracle("tanh", float(np.mean(hl**2))) for wl, hl in zip(w, h, strict=True)]
    np.testing.assert_allclose(fcnet.sigma_w2_mu1(net, x, estimator="gaussian"), by_hand_gauss, rtol=1e-9)
    assert by_hand[1] > 1.5  # the 1.5x rescaled layer (sigma_w2 x 2.25) is far from 1


def test_orthogonal_weights_are_orthogonal():
    net = fcnet.FCNet(50, 3, "tanh", "orthogonal", sigma_w2=1.7, seed=7, dtype=torch.float64)
    for layer in net.layers:
        w = layer.weight.detach().numpy()
        np.testing.assert_allclose(w @ w.T, 1.7 * np.eye(50), atol=1e-12)
        np.testing.assert_allclose(w.T @ w, 1.7 * np.eye(50), atol=1e-12)
    gauss = fcnet.FCNet(50, 1, "tanh", "gaussian", sigma_w2=1.7, seed=7, dtype=torch.float64).layers[0].weight
    g = gauss.detach().numpy()
    assert np.max(np.abs(g @ g.T - 1.7 * np.eye(50))) > 0.1
    # non-square Gaussian layers: Var[W_ij] = sigma_w2 / fan_in (8000 entries: relative sd 1.6 %, tolerance 5 sd)
    first = fcnet.FCNet(200, 1, "linear", "gaussian", sigma_w2=1.7, in_features=40, seed=9).layers[0]
    assert np.var(first.weight.detach().numpy()) == pytest.approx(1.7 / 40, rel=0.08)
    # non-square layers: orthonormal rows (fan_out <= fan_in) or columns, entries of mean square sigma_w2 / fan_in
    wide = fcnet.FCNet(10, 1, "linear", "orthogonal", in_features=40, seed=8, dtype=torch.float64).layers[0]
    w = wide.weight.detach().numpy()
    np.testing.assert_allclose(w @ w.T, np.eye(10), atol=1e-12)
    assert np.mean(w**2) == pytest.approx(1 / 40, rel=1e-12)
    tall = fcnet.FCNet(40, 1, "linear", "orthogonal", in_features=10, seed=8, dtype=torch.float64).layers[0]
    w = tall.weight.detach().numpy()
    np.testing.assert_allclose(w.T @ w, 4.0 * np.eye(10), atol=1e-12)
    assert np.mean(w**2) == pytest.approx(1 / 10, rel=1e-12)


def test_seeds_are_reproducible_and_private():
    torch.manual_seed(123)
    expected_global = torch.rand(3)
    torch.manual_seed(123)
    a = fcnet.FCNet(20, 3, "tanh", "orthogonal", seed=11)
    assert torch.equal(torch.rand(3), expected_global)  # the global RNG is untouched
    b = fcnet.FCNet(20, 3, "tanh", "orthogonal", seed=11)
    c = fcnet.FCNet(20, 3, "tanh", "orthogonal", seed=12)
    for la, lb, lc in zip(a.layers, b.layers, c.layers, strict=True):
        assert torch.equal(la.weight, lb.weight)
        assert not torch.equal(la.weight, lc.weight)
    a.reset_parameters(seed=12)
    assert all(torch.equal(la.weight, lc.weight) for la, lc in zip(a.layers, c.layers, strict=True))
    assert torch.equal(fcnet.sample_inputs(5, 4, seed=1), fcnet.sample_inputs(5, 4, seed=1))
    assert not torch.equal(fcnet.sample_inputs(5, 4, seed=1), fcnet.sample_inputs(5, 4, seed=2))
    x = fcnet.sample_inputs(20000, 4, 0.1, seed=3)
    assert float(x.var()) == pytest.approx(0.1, rel=0.03)  # 80000 samples: sd of the variance ~0.5 %


def test_layer_vni_matches_vni_of_each_layer_and_eq_3_7():
    # Fig. 3.2 setting at L = 10 (reference Monte Carlo: 0.0552 +- 0.0024 over seeds vs 0.0551): the mean over 5 seeds
    # has sd ~0.0011 (2 %), so +-15 % around eq. (3.7) is > 7 sd; each layer l is compared with eq. (3.7) at depth l.
    n, depth, m = 200, 10, 1000
    runs = []
    for seed in range(5):
        net = fcnet.FCNet(n, depth, "hardtanh", "gaussian", seed=seed)
        x = fcnet.sample_inputs(m, n, 0.1, seed=100 + seed)
        runs.append(fcnet.layer_vni(net, x))
        if seed == 0:
            layers = fcnet.layer_activations(net, x)
            np.testing.assert_allclose(runs[0], [vni.vni(a.double().numpy()) for a in layers], rtol=1e-12)
    theory = vni.vni_theory("hardtanh", np.arange(1, depth + 1), n, "gaussian", 0.1)
    np.testing.assert_allclose(np.mean(runs, axis=0), theory, rtol=0.15)
    # orthogonal weights: no growth with depth, R_sq = 1/N + ~1/M (reference Monte Carlo: 0.0060 +- 0.0005)
    net = fcnet.FCNet(n, depth, "hardtanh", "orthogonal", seed=0)
    np.testing.assert_allclose(fcnet.layer_vni(net, fcnet.sample_inputs(m, n, 0.1, seed=9)), 0.006, atol=5e-4)


def test_layer_vni_at_chosen_depths_is_the_same_as_at_all_layers():
    net = fcnet.FCNet(12, 9, "tanh", "gaussian", seed=4, dtype=torch.float64)
    x = fcnet.sample_inputs(50, 12, 0.5, seed=5, dtype=torch.float64)
    for pre in (False, True):
        full = fcnet.layer_vni(net, x, pre_activations=pre)
        got = fcnet.layer_vni(net, x, pre_activations=pre, depths=[7, 2, 9])
        np.testing.assert_array_equal(got, full[[6, 1, 8]])
    assert fcnet.layer_vni(net, x, depths=np.array([3])).shape == (1,)


@pytest.mark.parametrize("activation", ["tanh", "hardtanh", "relu", "linear"])
def test_jacobians_match_automatic_differentiation(activation):
    # A rectangular first layer, non-zero biases and inputs large enough to reach the kinks' both sides.
    net = fcnet.FCNet(9, 4, activation, "gaussian", in_features=6, seed=2, dtype=torch.float64)
    with torch.no_grad():
        for layer in net.layers:
            layer.bias.normal_(0, 0.3, generator=torch.Generator().manual_seed(3))
    x0 = torch.from_numpy(np.random.default_rng(1).normal(0, 1.5, 6))
    got = fcnet.jacobians(net, x0, depths=[2, 4, 1])
    for depth, jac in zip([2, 4, 1], got, strict=True):

        def partial(x, depth=depth):
            for layer in net.layers[:depth]:
                x = net.act.torch_fn(layer(x))
            return x

        expected = torch.autograd.functional.jacobian(partial, x0).numpy()
        assert jac.shape == (9, 6)
        np.testing.assert_allclose(jac, expected, rtol=1e-12, atol=1e-12)
    # default: the end-to-end Jacobian; a (1, in_features) input works too
    np.testing.assert_allclose(fcnet.jacobians(net, x0.reshape(1, -1))[0], got[1], rtol=1e-14, atol=0)


def test_jacobian_of_a_linear_network_is_the_product_of_its_weights():
    net = fcnet.FCNet(7, 3, "linear", "orthogonal", seed=0)
    (jac,) = fcnet.jacobians(net, np.ones(7))
    w = [layer.weight.detach().double().numpy() for layer in net.layers]
    np.testing.assert_allclose(jac, w[2] @ w[1] @ w[0], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(jac @ jac.T, np.eye(7), atol=1e-6)  # float32 weights, orthogonal product


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"width": 0}, "width"),
        ({"width": 2.5}, "width"),
        ({"depth": 0}, "depth"),
        ({"depth": True}, "depth"),
        ({"activation": "softsign"}, "unknown activation"),
        ({"weights": "uniform"}, "weights"),
        ({"q": 0.0}, "q"),
        ({"sigma_w2": -1.0}, "sigma_w2"),
        ({"sigma_w2": float("inf")}, "sigma_w2"),
        ({"in_features": 0}, "in_features"),
        ({"out_features": 0}, "out_features"),
        ({"seed": -1}, "seed"),
    ],
)
def test_fcnet_rejects_bad_configuration(kwargs, match):
    args = {"width": 8, "depth": 2} | kwargs
    with pytest.raises(ValueError, match=match):
        fcnet.FCNet(**args)


def test_statistics_reject_bad_input():
    net = fcnet.FCNet(8, 2, "tanh")
    with pytest.raises(ValueError, match="shape"):
        fcnet.layer_vni(net, torch.zeros(10, 7))
    with pytest.raises(ValueError, match="shape"):
        net(torch.zeros(10))
    with pytest.raises(ValueError, match="2 inputs"):
        fcnet.layer_vni(net, torch.ones(1, 8))
    for bad in ([0], [3], [], [True], "ab", 2):
        with pytest.raises(ValueError, match="depths"):
            fcnet.layer_vni(net, torch.randn(5, 8), depths=bad)
        with pytest.raises(ValueError, match="depths"):
            fcnet.jacobians(net, torch.zeros(8), depths=bad)
    with pytest.raises(ValueError, match="one input"):
        fcnet.jacobians(net, torch.zeros(2, 8))
    with pytest.raises(ValueError, match="FCNet"):
        fcnet.jacobians(torch.nn.Linear(3, 3), torch.zeros(3))
    with pytest.raises(ValueError, match="estimator"):
        fcnet.sigma_w2_mu1(net, torch.ones(4, 8), estimator="median")
    with pytest.raises(ValueError, match="FCNet"):
        fcnet.weight_sigma_w2(torch.nn.Linear(3, 3))
    with pytest.raises(ValueError, match="variance"):
        fcnet.sample_inputs(4, 4, variance=0.0)
    with pytest.raises(ValueError, match="weights"):
        fcnet.init_linear_(torch.nn.Linear(3, 3), "uniform", 1.0)


# --- classification: flattened images and the statistics recorded while training -------------------------------


def test_flatten_input_accepts_images_and_gives_the_flat_network():
    flat = fcnet.FCNet(6, 3, "tanh", in_features=12, out_features=4, seed=3)
    images = fcnet.FCNet(6, 3, "tanh", in_features=12, out_features=4, seed=3, flatten_input=True)
    x = torch.randn(5, 1, 3, 4, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(images(x), flat(x.reshape(5, 12)), rtol=0, atol=0)
    with pytest.raises(ValueError, match="shape"):
        flat(x)
    with pytest.raises(ValueError, match="flatten_input"):
        fcnet.FCNet(6, 3, flatten_input=1)


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_probe_statistics_are_the_per_layer_vni_and_sigma_w2_mu1(activation):
    net = fcnet.FCNet(20, 4, activation, "gaussian", in_features=12, out_features=3, seed=1, flatten_input=True,
                      dtype=torch.float64)
    x = torch.randn(64, 1, 3, 4, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    stats = net.probe_statistics(x)
    # oracle: eq. (3.4) as a weighted mean of squared correlations, on a NumPy forward pass
    acts = numpy_forward(net, x.reshape(64, 12).numpy(), PHI[activation])
    for got, a in zip(stats["vni"], acts, strict=True):
        c = np.cov(a, rowvar=False, bias=True)
        alive = np.diag(c) > 0  # a node constant over the inputs has zero weight sigma_i^2 sigma_j^2 in eq. (3.4)
        c = c[np.ix_(alive, alive)]
        s2 = np.diag(c)
        rho2 = c**2 / np.outer(s2, s2)
        w = np.outer(s2, s2)
        assert got == pytest.approx(float((rho2 * w).sum() / w.sum()), rel=1e-10)
    # oracle: fan_in * np.var(W) times the mean squared slope phi'(h)^2 of the layer
    dphi2 = {"tanh": lambda h: np.cosh(h) ** -4, "relu": lambda h: (h > 0).astype(float)}[activation]
    h = x.reshape(64, 12).numpy()
    for got, layer in zip(stats["sigma_w2_mu1"], net.layers, strict=True):
        w, b = layer.weight.detach().numpy(), layer.bias.detach().numpy()
        pre = h @ w.T + b
        assert got == pytest.approx(w.shape[1] * np.var(w) * float(np.mean(dphi2(pre))), rel=1e-10)
        h = PHI[activation](pre)


def test_probe_statistics_of_a_dead_layer_are_none():
    net = fcnet.FCNet(5, 2, "relu", in_features=4, seed=0)
    with torch.no_grad():
        net.layers[0].weight.zero_()
        net.layers[0].bias.fill_(-1.0)  # every ReLU of layer 1 (and so of layer 2) is off for every input
    stats = net.probe_statistics(torch.randn(10, 4))
    assert stats["vni"] == [None, None]


def test_training_records_the_probe_statistics():
    from signalprop import train

    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(60, 1, 2, 4, generator=g), torch.randint(0, 3, (60,), generator=g)
    net = fcnet.FCNet(10, 3, "tanh", in_features=8, out_features=3, seed=0, flatten_input=True)
    cfg = train.TrainConfig(optimizer="sgd", lr=0.1, batch_size=20, steps=4, eval_every=2)
    out = train.train(net, (x[:40], y[:40]), (x[40:], y[40:]), cfg, progress=False)
    assert [r["step"] for r in out["history"]] == [0, 2, 4]
    for record in out["history"]:
        assert len(record["vni"]) == len(record["sigma_w2_mu1"]) == 3
    # the last record's statistics are those of the trained network on the probe (the held-out images)
    expected = net.probe_statistics(x[40:])
    assert out["history"][-1]["vni"] == pytest.approx(expected["vni"], rel=1e-6)
