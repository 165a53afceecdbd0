"""Modulation of back-propagated errors between consecutive parametric layers: Xie, Xiong & Pu (2017), §3.3, §4, §5.3.

For a chain of parametric layers ``l = 1..L`` (1 lowest, ``L`` the top; convolutions in the paper),
the paper computes at every iteration the second moment of each layer's back-propagated error,
``q^l``, and rescales the error passed down from layer ``l + 1`` to layer ``l`` by

    rho = sqrt(q^{l+1} / q^l),

so that consecutive layers carry errors of the same second moment ("quasi-isometry").  It does so
only during the first ``n`` iterations, and only where the two moments "mismatch".

Choices the paper leaves open (ours):

* **Which tensor.**  ``delta^l``, the gradient of the loss with respect to the *output* of layer
  ``l`` (for a Conv-BN-ReLU triple: the convolution's output, the input of batch normalisation).
  In the paper's §3.1 vocabulary this is the "input error" of the layer's backward step; it is the
  error from which the layer's own weight gradient is formed (``dl/dW_l`` is the correlation of
  the layer's input with ``delta^l``), so rescaling it rescales the weight gradient of layer ``l``
  and, through the backward pass, of every layer below.  ``q^l = mean(delta^l ** 2)`` over the
  mini-batch and all units (channels and positions), accumulated in float64.
* **Order.**  The backward pass reaches the layers top-down.  ``q^{l+1}`` is the second moment of
  the error *after* layer ``l + 1`` was itself rescaled, so with modulation at every layer all
  layers end with the top layer's second moment ``q^L`` (the top layer is never rescaled).
* **Mismatch criterion.**  Layer ``l`` is rescaled when the larger of ``q^{l+1}, q^l`` is at least
  ``mismatch`` times the smaller (default 2: a factor ``sqrt 2`` in root mean square);
  ``mismatch = 1`` rescales always (the paper's "isometric" variant, which it reports as harmful,
  81.6 % vs 73.5 %).  A layer with ``q = 0`` on either side is left alone.
* **Schedule.**  Rescaling is on for the steps ``0 .. modulate_steps - 1``; the paper's ``n`` is
  not given (its Fig. 4 suggests 2,000-3,000 iterations).  :meth:`ErrorModulator.before_step`
  switches it, called by :func:`signalprop.train.train` through the model's ``before_step``.

The moments are measured at every backward pass through layers attached in grad mode, whether
rescaling is on or not, so the statistics of the paper's Figs. 3 and 4 can be recorded in any
run (:meth:`ErrorModulator.moments`).  Nothing is synchronised with the host during the backward
pass: the decision is taken on device with :func:`torch.where`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from numbers import Integral, Real
from typing import Any

import torch

__all__ = ["DEFAULT_MISMATCH", "second_moment", "check_mismatch", "check_modulate_steps", "ErrorModulator"]

#: Default mismatch factor between the second moments of consecutive layers (our choice; the paper gives none).
DEFAULT_MISMATCH = 2.0


def second_moment(grad: torch.Tensor) -> torch.Tensor:
    """``mean(grad ** 2)`` over all entries, as a 0-d float64 tensor (the squares summed in float64).

    Raises
    ------
    ValueError
        ``grad`` is not a non-empty floating-point tensor.
    """
    if not isinstance(grad, torch.Tensor) or not torch.is_floating_point(grad) or grad.numel() == 0:
        raise ValueError("grad must be a non-empty floating-point tensor")
    g = grad.detach()
    return torch.sum(g * g, dtype=torch.float64) / g.numel()


def _check_layers(n_layers: Any) -> int:
    if isinstance(n_layers, bool) or not isinstance(n_layers, Integral) or n_layers < 1:
        raise ValueError(f"n_layers must be an integer >= 1, got {n_layers!r}")
    return int(n_layers)


def check_mismatch(mismatch: Any) -> float:
    """``mismatch`` as a float ``>= 1``.

    Raises
    ------
    ValueError
        Not a finite real number ``>= 1``.
    """
    if isinstance(mismatch, bool) or not isinstance(mismatch, Real) or not math.isfinite(mismatch) or mismatch < 1:
        raise ValueError(f"mismatch must be a finite number >= 1 (1: modulate always), got {mismatch!r}")
    return float(mismatch)


def check_modulate_steps(steps: Any) -> int:
    """``steps`` as an integer ``>= 0``.

    Raises
    ------
    ValueError
        Not an integer ``>= 0``.
    """
    if isinstance(steps, bool) or not isinstance(steps, Integral) or steps < 0:
        raise ValueError(f"modulate_steps must be an integer >= 0, got {steps!r}")
    return int(steps)


class ErrorModulator:
    """Measures, and during the first ``modulate_steps`` steps rescales, the errors of a chain of layers.

    Xie et al. (2017), §3.3 and §4, with the choices of the module notes.  The owner calls
    :meth:`begin` at the start of every forward pass and :meth:`attach` with each layer's output
    (index ``0`` the lowest layer, ``n_layers - 1`` the top) in the order of the chain.

    Parameters
    ----------
    n_layers : int
        ``L``, the number of layers in the chain.
    mismatch : float
        Rescale layer ``l`` when ``max(q^{l+1}, q^l) >= mismatch * min(q^{l+1}, q^l)``; ``>= 1``
        (1: always).
    modulate_steps : int
        Rescaling is on at the steps ``0 .. modulate_steps - 1`` (:meth:`before_step`); ``>= 0``
        (0: never, the errors are only measured).

    Attributes
    ----------
    active : bool
        Whether the next backward pass rescales.  Initially ``modulate_steps > 0`` (step 0).

    Raises
    ------
    ValueError
        For a bad ``n_layers``, ``mismatch`` or ``modulate_steps``.
    """

    def __init__(self, n_layers: int, mismatch: float = DEFAULT_MISMATCH, modulate_steps: int = 0) -> None:
        self.n_layers = _check_layers(n_layers)
        self.mismatch = check_mismatch(mismatch)
        self.modulate_steps = check_modulate_steps(modulate_steps)
        self.active = self.modulate_steps > 0
        self._raw: list[torch.Tensor | None] = [None] * self.n_layers
        self._passed: list[torch.Tensor | None] = [None] * self.n_layers
        self._rho: list[torch.Tensor | None] = [None] * self.n_layers
        self._pending: list[torch.Tensor | None] = [None] * self.n_layers

    def before_step(self, step: int) -> None:
        """Switch rescaling on for the (0-based) steps ``< modulate_steps``, off afterwards.

        Raises
        ------
        ValueError
            ``step`` is not an integer ``>= 0``.
        """
        if isinstance(step, bool) or not isinstance(step, Integral) or step < 0:
            raise ValueError(f"step must be an integer >= 0, got {step!r}")
        self.active = step < self.modulate_steps

    def begin(self) -> None:
        """Start a new forward pass: the moments of the next backward pass replace the stored ones."""
        self._pending = [None] * self.n_layers

    def attach(self, index: int, output: torch.Tensor) -> torch.Tensor:
        """Register the measuring (and rescaling) hook on layer ``index``'s output; return ``output``.

        Nothing is registered when autograd does not track ``output`` (evaluation under
        :func:`torch.no_grad`).
        """
        if not 0 <= index < self.n_layers:
            raise ValueError(f"index must be in 0..{self.n_layers - 1}, got {index!r}")
        if torch.is_grad_enabled() and output.requires_grad:
            output.register_hook(self._hook(index))
        return output

    def _hook(self, index: int) -> Callable[[torch.Tensor], torch.Tensor | None]:
        top = index == self.n_layers - 1

        def hook(grad: torch.Tensor) -> torch.Tensor | None:
            with torch.no_grad():
                q = second_moment(grad)
                above = None if top else self._pending[index + 1]
                if top:  # a new backward pass: the top layer is never rescaled
                    self._raw = [None] * self.n_layers
                    self._passed = [None] * self.n_layers
                    self._rho = [None] * self.n_layers
                self._raw[index] = q
                if not self.active or above is None:
                    self._pending[index] = self._passed[index] = q
                    return None
                ratio = above / q
                spread = torch.maximum(ratio, 1.0 / ratio)
                do = (q > 0) & (above > 0) & torch.isfinite(ratio) & (spread >= self.mismatch)
                rho = torch.where(do, torch.sqrt(ratio), torch.ones_like(ratio))
                self._rho[index] = rho
                self._pending[index] = self._passed[index] = q * rho * rho
                return grad * rho.to(grad.dtype)

        return hook

    def moments(self) -> dict[str, Any]:
        """The second moments of the last backward pass, lowest layer first (JSON-ready).

        Returns
        -------
        dict
            ``"error_q"``: ``q^l`` of the error passed on by each layer (after its rescaling), the
            quantity the paper equalises; ``"error_q_raw"``: the same before rescaling (equal to
            ``"error_q"`` when rescaling is off); ``"error_rho"``: the factor applied at each layer
            (1 where none); ``"error_ratio"``: ``q^1 / q^L``, the first layer's second moment over
            the top layer's (the paper's Fig. 3); ``"modulated_layers"``: the number of layers
            rescaled (``rho != 1``).  Entries are ``None`` before the first backward pass, and where
            a value is not finite.
        """

        def num(t: torch.Tensor | None) -> float | None:
            if t is None:
                return None
            v = float(t)
            return v if math.isfinite(v) else None

        passed = [num(t) for t in self._passed]
        raw = [num(t) for t in self._raw]
        rho = [None if r is None else (1.0 if p is None else num(p)) for r, p in zip(raw, self._rho, strict=True)]
        first, last = passed[0], passed[-1]
        ratio = first / last if first is not None and last not in (None, 0.0) else None
        return {
            "error_q": passed,
            "error_q_raw": raw,
            "error_rho": rho,
            "error_ratio": ratio,
            "modulated_layers": None if raw[-1] is None else sum(1 for r in rho if r is not None and r != 1.0),
        }
