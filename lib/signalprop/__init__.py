"""signalprop: signal propagation in deep convolutional networks (Ten Thousand Layers).

The package re-exports its modules, not their names, so that calls read as
``sp.meanfield.q_star(...)``.  The experiment modules (``data``, ``models``,
``train``, ``experiment``, ``store``, ``sweep``, ``provenance``, ``presets``, and the torch-based ``fcnet``,
``vni``, ``vnidepth``, ``vnitrain``, ``zeromode``, ``batchnorm``, ``orthonormal``, ``modulation`` and
``plainnet``) are imported on first use,
so that ``import signalprop`` stays light and ``python -m signalprop.experiment`` runs cleanly.
"""

import importlib
from typing import Any

from signalprop import (
    activations,
    claims,
    deepblock,
    gaussian,
    init,
    layers,
    linearisation,
    meanfield,
    report,
    simulate,
    spectra,
)

__version__ = "0.1.0"

_LAZY = (
    "batchnorm", "cnnvni", "data", "experiment", "fcnet", "models", "modulation", "orthonormal", "plainnet", "presets",
    "provenance", "store", "sweep", "train", "vni", "vnidepth", "vnitrain", "zeromode",
)

__all__ = [
    "activations",
    "claims",
    "deepblock",
    "gaussian",
    "init",
    "layers",
    "linearisation",
    "meanfield",
    "report",
    "simulate",
    "spectra",
    *_LAZY,
    "__version__",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return importlib.import_module(f"signalprop.{name}")
    raise AttributeError(f"module 'signalprop' has no attribute {name!r}")
