"""Activation functions with the derivatives and moments that mean-field maps need.

An :class:`Activation` carries the function in NumPy form (``phi``), its first
and second derivatives, the same function for PyTorch tensors (used by the
simulations), and, where one exists, closed forms of the two Gaussian moments
that the mean-field maps integrate:
``E[phi(u1) phi(u2)]`` and ``E[phi'(u1) phi'(u2)]`` for a centred 2-D Gaussian.

Built-ins: ``tanh``, ``erf``, ``relu``, ``hardtanh`` and ``linear``.  Any other
function can be used through :func:`from_callable`: it must accept and return
``torch`` tensors (``torch.sin``, ``lambda x: x * torch.sigmoid(x)``), and its
derivatives are taken by automatic differentiation in float64.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from scipy import special

from signalprop import gaussian

Array = NDArray[np.float64]
Moment = Callable[[Array, Array, Array], Array]


@dataclass(frozen=True)
class Activation:
    """An elementwise nonlinearity ``phi`` with ``phi'``, ``phi''`` and optional closed forms.

    Attributes
    ----------
    name : str
        Short name, e.g. ``"tanh"``.
    phi, dphi, d2phi : callable
        ``phi`` and its first two derivatives, vectorised over NumPy arrays.
    torch_fn : callable
        ``phi`` for PyTorch tensors (differentiable).
    smooth : bool
        True when ``phi`` is twice continuously differentiable.  Quadrature is
        accurate to ~1e-10 only for smooth activations; for kinked ones the
        closed forms (ReLU) or the derivative-free Stein identity are used.
    moment : callable or None
        ``(s11, s22, s12) -> E[phi(u1) phi(u2)]`` in closed form, if known.
    derivative_moment : callable or None
        ``(s11, s22, s12) -> E[phi'(u1) phi'(u2)]`` in closed form, if known.
    moment_1d, derivative_moment_1d, length_slope_1d : callable or None
        ``q -> E[phi(u)**2]``, ``q -> E[phi'(u)**2]`` and
        ``q -> d E[phi(u)**2] / dq`` for ``u ~ N(0, q)`` in closed form, for
        activations that have them only in one dimension (hard-tanh).
    """

    name: str
    phi: Callable[[Array], Array]
    dphi: Callable[[Array], Array]
    d2phi: Callable[[Array], Array]
    torch_fn: Callable[[torch.Tensor], torch.Tensor]
    smooth: bool = True
    moment: Moment | None = None
    derivative_moment: Moment | None = None
    moment_1d: Callable[[Array], Array] | None = None
    derivative_moment_1d: Callable[[Array], Array] | None = None
    length_slope_1d: Callable[[Array], Array] | None = None

    def __repr__(self) -> str:
        return f"Activation({self.name!r})"

    def __call__(self, x: Any) -> Any:
        """Apply ``phi`` to a NumPy array or a torch tensor."""
        if isinstance(x, torch.Tensor):
            return self.torch_fn(x)
        return self.phi(np.asarray(x, dtype=float))

    # Gaussian moments: closed form when known, quadrature otherwise.
    def cross_moment(self, s11: Any, s22: Any, s12: Any, *, n_nodes: int = gaussian.DEFAULT_NODES_2D) -> Array:
        """``E[phi(u1) phi(u2)]`` for a centred Gaussian with covariance ``[[s11, s12], [s12, s22]]``."""
        if self.moment is not None:
            gaussian.bivariate_points(s11, s22, s12, n_nodes=1)  # validates the covariance
            return self.moment(*(np.asarray(s, dtype=float) for s in (s11, s22, s12)))
        return gaussian.expect2(self.phi, self.phi, s11, s22, s12, n_nodes=n_nodes)

    def derivative_cross_moment(
        self, s11: Any, s22: Any, s12: Any, *, n_nodes: int = gaussian.DEFAULT_NODES_2D
    ) -> Array:
        """``E[phi'(u1) phi'(u2)]`` for a centred Gaussian with covariance ``[[s11, s12], [s12, s22]]``."""
        if self.derivative_moment is not None:
            gaussian.bivariate_points(s11, s22, s12, n_nodes=1)
            return self.derivative_moment(*(np.asarray(s, dtype=float) for s in (s11, s22, s12)))
        return gaussian.expect2(self.dphi, self.dphi, s11, s22, s12, n_nodes=n_nodes)

    def second_moment(self, q: Any, *, n_nodes: int = gaussian.DEFAULT_NODES_1D) -> Array:
        """``E[phi(u)**2]`` for ``u ~ N(0, q)``."""
        if self.moment is not None:
            q = gaussian._check_variance("q", q)
            return self.moment(q, q, q)
        if self.moment_1d is not None:
            return self.moment_1d(gaussian._check_variance("q", q))
        return gaussian.expect(lambda u: self.phi(u) ** 2, q, n_nodes=n_nodes)

    def derivative_second_moment(self, q: Any, *, n_nodes: int = gaussian.DEFAULT_NODES_1D) -> Array:
        """``E[phi'(u)**2]`` for ``u ~ N(0, q)``."""
        if self.derivative_moment is not None:
            q = gaussian._check_variance("q", q)
            return self.derivative_moment(q, q, q)
        if self.derivative_moment_1d is not None:
            return self.derivative_moment_1d(gaussian._check_variance("q", q))
        return gaussian.expect(lambda u: self.dphi(u) ** 2, q, n_nodes=n_nodes)


def _zeros_like(x: Array) -> Array:
    return np.zeros_like(np.asarray(x, dtype=float))


def _ones_like(x: Array) -> Array:
    return np.ones_like(np.asarray(x, dtype=float))


_SQRT_PI = np.sqrt(np.pi)


def _sech2(x: Array) -> Array:
    """``sech(x)**2`` without overflow: ``4 e^{-2|x|} / (1 + e^{-2|x|})**2``."""
    e = np.exp(-2.0 * np.abs(np.asarray(x, dtype=float)))
    return 4.0 * e / (1.0 + e) ** 2


TANH = Activation(
    "tanh",
    phi=np.tanh,
    dphi=_sech2,
    d2phi=lambda x: -2.0 * np.tanh(x) * _sech2(x),
    torch_fn=torch.tanh,
)

ERF = Activation(
    "erf",
    phi=special.erf,
    dphi=lambda x: 2.0 / _SQRT_PI * np.exp(-(x**2)),
    d2phi=lambda x: -4.0 / _SQRT_PI * x * np.exp(-(x**2)),
    torch_fn=torch.erf,
    moment=gaussian.erf_moment,
    derivative_moment=gaussian.erf_derivative_moment,
)

RELU = Activation(
    "relu",
    phi=lambda x: np.maximum(x, 0.0),
    dphi=lambda x: (np.asarray(x) > 0).astype(float),
    d2phi=_zeros_like,
    torch_fn=torch.relu,
    smooth=False,
    moment=gaussian.relu_moment,
    derivative_moment=gaussian.relu_derivative_moment,
)


def _hardtanh_inner(q: Array) -> tuple[Array, Array]:
    """``P(|u| < 1)`` and the density of ``u ~ N(0, q)`` at 1 (``q = 0`` gives 1, 0)."""
    q = np.asarray(q, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.where(q > 0, 1.0 / np.sqrt(2.0 * np.where(q > 0, q, 1.0)), np.inf)
        density = np.where(q > 0, np.exp(-(a**2)) * a / _SQRT_PI, 0.0)
    return special.erf(a), density


def _hardtanh_moment_1d(q: Array) -> Array:
    """``E[clip(u, -1, 1)**2] = q P(|u|<1) - 2 q p(1) + P(|u|>1)`` for ``u ~ N(0, q)``."""
    inside, density = _hardtanh_inner(q)
    return np.asarray(q * inside - 2.0 * q * density + 1.0 - inside)


def _hardtanh_slope_1d(q: Array) -> Array:
    """``dE[clip(u)**2]/dq = E[g'']/2 = P(|u|<1) - 2 p(1)`` with ``g = min(u**2, 1)``."""
    inside, density = _hardtanh_inner(q)
    return np.asarray(inside - 2.0 * density)


HARDTANH = Activation(
    "hardtanh",
    phi=lambda x: np.clip(x, -1.0, 1.0),
    dphi=lambda x: (np.abs(x) < 1).astype(float),
    d2phi=_zeros_like,
    torch_fn=torch.nn.functional.hardtanh,
    smooth=False,
    moment_1d=_hardtanh_moment_1d,
    derivative_moment_1d=lambda q: _hardtanh_inner(q)[0],
    length_slope_1d=_hardtanh_slope_1d,
)

LINEAR = Activation(
    "linear",
    phi=lambda x: np.asarray(x, dtype=float),
    dphi=_ones_like,
    d2phi=_zeros_like,
    torch_fn=lambda x: x,
    moment=lambda s11, s22, s12: np.asarray(s12, dtype=float),
    derivative_moment=lambda s11, s22, s12: np.ones(np.broadcast(s11, s22, s12).shape),
)

BUILTINS: dict[str, Activation] = {a.name: a for a in (TANH, ERF, RELU, HARDTANH, LINEAR)}

# Well-known function objects that name a built-in (so that ``get(np.tanh)`` works).
_KNOWN_FUNCTIONS: dict[Any, Activation] = {
    np.tanh: TANH,
    torch.tanh: TANH,
    special.erf: ERF,
    torch.erf: ERF,
    torch.relu: RELU,
    torch.nn.functional.relu: RELU,
    torch.nn.functional.hardtanh: HARDTANH,
}


def from_callable(fn: Callable[[torch.Tensor], torch.Tensor], name: str | None = None) -> Activation:
    """Wrap a user-supplied elementwise function; derivatives come from ``torch.autograd``.

    Parameters
    ----------
    fn : callable
        Accepts a float64 ``torch.Tensor`` and returns one of the same shape,
        differentiably (``torch.sin``, ``lambda x: x * torch.sigmoid(x)``).
    name : str, optional
        Name for display; defaults to ``fn.__name__``.

    Returns
    -------
    Activation
        With ``smooth=True`` and no closed forms: moments by quadrature.

    Raises
    ------
    ValueError
        If ``fn`` does not map a tensor to a tensor of the same shape, or is not
        differentiable by autograd.
    """
    if not callable(fn):
        raise ValueError(f"an activation must be a name, an Activation or a callable, got {fn!r}")
    label = name or getattr(fn, "__name__", "custom")
    probe = torch.linspace(-2.0, 2.0, 5, dtype=torch.float64, requires_grad=True)
    try:
        out = fn(probe)
        ok = isinstance(out, torch.Tensor) and out.shape == probe.shape
        if ok:
            torch.autograd.grad(out.sum(), probe, allow_unused=True)
    except Exception as exc:  # noqa: BLE001 - re-raised with the reason below
        raise ValueError(
            f"activation {label!r} must accept and return torch tensors so that its derivatives "
            f"can be taken by autograd; calling it on a float64 tensor failed: {exc}"
        ) from exc
    if not ok:
        raise ValueError(f"activation {label!r} must return a tensor of its input's shape")

    def derivatives(x: Array, order: int) -> Array:
        xs = np.asarray(x, dtype=float)
        t = torch.from_numpy(np.ascontiguousarray(xs)).requires_grad_(True)
        y = fn(t)
        if order == 0:
            return y.detach().numpy()
        (d1,) = torch.autograd.grad(y.sum(), t, create_graph=order > 1, allow_unused=True)
        if d1 is None:
            d1 = torch.zeros_like(t)
        if order == 1:
            return d1.detach().numpy()
        if not d1.requires_grad:
            return np.zeros_like(xs)
        (d2,) = torch.autograd.grad(d1.sum(), t, allow_unused=True)
        return np.zeros_like(xs) if d2 is None else d2.detach().numpy()

    return Activation(
        label,
        phi=lambda x: derivatives(x, 0),
        dphi=lambda x: derivatives(x, 1),
        d2phi=lambda x: derivatives(x, 2),
        torch_fn=fn,
    )


def get(activation: str | Activation | Callable[..., Any]) -> Activation:
    """Resolve a name, an :class:`Activation` or a callable to an :class:`Activation`.

    Raises
    ------
    ValueError
        For an unknown name, or a callable that autograd cannot differentiate.
    """
    if isinstance(activation, Activation):
        return activation
    if isinstance(activation, str):
        try:
            return BUILTINS[activation.lower()]
        except KeyError:
            raise ValueError(f"unknown activation {activation!r}; known names: {', '.join(sorted(BUILTINS))}") from None
    try:
        known = _KNOWN_FUNCTIONS.get(activation)
    except TypeError:  # unhashable callable
        known = None
    if known is not None:
        return known
    return from_callable(activation)
