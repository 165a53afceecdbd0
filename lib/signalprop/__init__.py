"""signalprop: tested routines behind the book *Ten Thousand Layers*.

The package re-exports its modules, not their names, so that calls read as
``sp.meanfield.q_star(...)``.
"""

from signalprop import (
    activations,
    claims,
    deepblock,
    gaussian,
    init,
    layers,
    linearisation,
    meanfield,
    simulate,
    spectra,
)

__version__ = "0.1.0"

__all__ = [
    "activations",
    "claims",
    "deepblock",
    "gaussian",
    "init",
    "layers",
    "linearisation",
    "meanfield",
    "simulate",
    "spectra",
    "__version__",
]
