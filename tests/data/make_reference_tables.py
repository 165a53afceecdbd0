"""Write the mean-field reference tables of tests/data/ by a route independent of ``signalprop``.

The library evaluates Gaussian expectations by Gauss-Hermite quadrature (``signalprop.gaussian``) and solves
fixed points by its own iterations.  This script uses neither: it integrates with SciPy's adaptive QUADPACK
routines (``quad`` and, for the correlation map, ``dblquad``) to an absolute tolerance of 1e-13, or with
mpmath's adaptive quadrature at 40 digits where a difference cancels (the critical line), and finds
roots with Brent's method, then writes each table with a stated number of significant digits.  The tests
(``tests/test_meanfield.py``, ``tests/test_models.py``) compare the library against these numbers to within
one unit of the last digit written.

Definitions (Xiao et al. 2018, section 2; Schoenholz et al. 2017), for ``phi = tanh`` and ``z ~ N(0, 1)``:

* length map ``V(q) = sigma_w2 E[phi(sqrt(q) z)^2] + sigma_b2``; ``q*`` its fixed point;
* ``chi_1 = sigma_w2 E[phi'(sqrt(q*) z)^2]``;
* ``chi_q = dV/dq (q*) = sigma_w2 E[phi'^2 + phi phi'']`` (Gaussian integration by parts);
* correlation map ``c -> (sigma_w2 E[phi(u_1) phi(u_2)] + sigma_b2) / q*`` with ``(u_1, u_2)`` centred
  Gaussian of variances ``q*`` and correlation ``c``; ``c*`` its fixed point (1 in the ordered phase) and
  ``chi_c = sigma_w2 E[phi'(u_1) phi'(u_2)]`` at ``c*``;
* depth scales ``xi_q = -1 / ln chi_q`` and ``xi_c = -1 / ln chi_c``.

Run from the repository root: ``python tests/data/make_reference_tables.py`` (about a minute).
"""

from __future__ import annotations

import math
from pathlib import Path

import mpmath
import numpy as np
from scipy import integrate, optimize

mpmath.mp.dps = 40

HERE = Path(__file__).resolve().parent
TOL = 1e-13
DIGITS = 10  # significant digits written


def gauss(f) -> float:
    """E[f(z)] for z ~ N(0, 1), adaptive quadrature over the real line."""
    w = 1.0 / math.sqrt(2 * math.pi)
    val, _ = integrate.quad(lambda z: f(z) * math.exp(-0.5 * z * z) * w, -np.inf, np.inf, epsabs=TOL, epsrel=TOL,
                            limit=500)  # fmt: skip
    return val


def sech2(x: float) -> float:
    return 1.0 / math.cosh(x) ** 2 if abs(x) < 350 else 0.0


def length_map(q: float, sw2: float, sb2: float) -> float:
    s = math.sqrt(q)
    return sw2 * gauss(lambda z: math.tanh(s * z) ** 2) + sb2


def fixed_point_q(sw2: float, sb2: float) -> float:
    hi = sw2 + sb2 + 1.0  # V(q) < sw2 + sb2 for every q
    return optimize.brentq(lambda q: length_map(q, sw2, sb2) - q, 1e-300 if sb2 > 0 else 1e-12, hi, xtol=1e-15,
                           rtol=1e-15)  # fmt: skip


def chi_1(q: float, sw2: float) -> float:
    s = math.sqrt(q)
    return sw2 * gauss(lambda z: sech2(s * z) ** 2)


def chi_q(q: float, sw2: float) -> float:
    s = math.sqrt(q)

    def f(z: float) -> float:
        t = math.tanh(s * z)
        d = sech2(s * z)
        return d * d + t * (-2.0 * t * d)  # phi'^2 + phi phi''

    return sw2 * gauss(f)


def _pair(c: float, q: float, g) -> float:
    """E[g(u_1, u_2)], (u_1, u_2) centred Gaussian with variances q and correlation c (2-d adaptive quadrature)."""
    s, r = math.sqrt(q), math.sqrt(max(1.0 - c * c, 0.0))
    w = 1.0 / (2 * math.pi)

    def inner(z2: float, z1: float) -> float:
        return g(s * z1, s * (c * z1 + r * z2)) * math.exp(-0.5 * (z1 * z1 + z2 * z2)) * w

    val, _ = integrate.dblquad(inner, -12, 12, -12, 12, epsabs=1e-13, epsrel=1e-13)
    return val


def correlation_fixed_point(q: float, sw2: float, sb2: float) -> tuple[float, float]:
    """``(c*, chi_c)``: ``c* = 1`` when ``chi_1 <= 1`` (ordered phase), else the root below 1."""
    c1 = chi_1(q, sw2)
    if c1 <= 1.0:
        return 1.0, c1

    def gap(c: float) -> float:
        return (sw2 * _pair(c, q, lambda a, b: math.tanh(a) * math.tanh(b)) + sb2) / q - c

    c_star = optimize.brentq(gap, 1e-6, 1 - 1e-9, xtol=1e-14)
    return c_star, sw2 * _pair(c_star, q, lambda a, b: sech2(a) * sech2(b))


def critical_line_point(q: float) -> tuple[float, float]:
    """``(sigma_w2, sigma_b2)`` on ``chi_1 = 1`` with fixed point ``q``.

    ``sigma_b2 = q - sigma_w2 E[tanh^2]`` cancels catastrophically for small ``q`` (``sigma_b2 ~ q^3``), so
    both expectations are taken with mpmath at 40 significant digits.
    """
    s = mpmath.sqrt(mpmath.mpf(q))

    def mgauss(f):
        w = 1 / mpmath.sqrt(2 * mpmath.pi)
        return mpmath.quad(lambda z: f(z) * mpmath.exp(-z * z / 2) * w, [-mpmath.inf, -6, 0, 6, mpmath.inf])

    sw2 = 1 / mgauss(lambda z: mpmath.sech(s * z) ** 4)
    sb2 = mpmath.mpf(q) - sw2 * mgauss(lambda z: mpmath.tanh(s * z) ** 2)
    return float(sw2), float(sb2)


def fmt(x: float, digits: int = DIGITS) -> str:
    return f"{x:.{digits}g}"


def sweep_table() -> list[str]:
    sb2 = 0.05
    out = ["sigma_w2,q_star,c_star,chi_1,chi_q,chi_c,xi_c,xi_q"]
    for sw2 in (1.0, 1.25, 1.5, 1.6, 1.7, 1.75, 1.76, 1.77, 1.8, 2.0, 2.5, 3.0, 3.5, 4.0):
        q = fixed_point_q(sw2, sb2)
        c_star, chi_c = correlation_fixed_point(q, sw2, sb2)
        cq = chi_q(q, sw2)
        # chi_c near 1 makes xi_c ill-conditioned: 6 significant digits, the tests use it where xi_c < 100
        row = [f"{sw2:.2f}", fmt(q), fmt(c_star, 8), fmt(chi_1(q, sw2)), fmt(cq), fmt(chi_c, 8),
               fmt(-1 / math.log(chi_c), 6), fmt(-1 / math.log(cq))]  # fmt: skip
        out.append(",".join(row))
    return out


def critical_line_table() -> list[str]:
    out = ["q_star,sigma_w2,sigma_b2,chi_q,xi_q"]
    qs = [1e-4, 2.5e-4, 1e-3, 1e-2, 1 / 64, 0.0625, 0.1, 0.25, 0.5, 1.0, 2.0]
    # two points named by one coordinate: sigma_w2 = 1.05 (the authors' demo at 50 layers) and sigma_b2 = 0.05
    qs.append(optimize.brentq(lambda q: critical_line_point(q)[0] - 1.05, 1e-3, 0.1, xtol=1e-15))
    qs.append(optimize.brentq(lambda q: critical_line_point(q)[1] - 0.05, 0.1, 1.0, xtol=1e-15))
    for q in sorted(qs):
        sw2, sb2 = critical_line_point(q)
        cq = chi_q(q, sw2)
        out.append(",".join([fmt(q), fmt(sw2), fmt(sb2), fmt(cq), fmt(-1 / math.log(cq))]))
    return out


def critical_sigma_w2_table() -> list[str]:
    out = ["sigma_b2,q_star,sigma_w2"]
    for sb2 in (1e-5, 2e-5, 1e-4, 1e-3, 0.01, 0.05, 0.1):
        # on the critical line sigma_b2 grows with q*: solve for the q* that gives this sigma_b2
        q = optimize.brentq(lambda q, sb2=sb2: critical_line_point(q)[1] - sb2, 1e-4, 5.0, xtol=1e-15)
        sw2, _ = critical_line_point(q)
        # check: the fixed point of (sw2, sb2) is q and chi_1 = 1 there
        assert abs(fixed_point_q(sw2, sb2) - q) < 1e-9 * max(q, 1e-3) and abs(chi_1(q, sw2) - 1) < 1e-11
        out.append(",".join([f"{sb2:g}", fmt(q), fmt(sw2)]))
    return out


def erf_table() -> list[str]:
    """The erf network of Xiao et al. (2018), appendix F, at (sigma_w2, sigma_b2) = (2.25, 0.25), from the
    closed forms of the Gaussian expectations of erf (arcsine laws), evaluated with 40 digits."""
    sw2, sb2 = mpmath.mpf("2.25"), mpmath.mpf("0.25")
    two_pi = 2 / mpmath.pi

    def v(q):
        return sw2 * two_pi * mpmath.asin(2 * q / (1 + 2 * q)) + sb2

    q = mpmath.findroot(lambda q: v(q) - q, (1, 2), solver="illinois")
    c = mpmath.findroot(
        lambda c: (sw2 * two_pi * mpmath.asin(2 * q * c / (1 + 2 * q)) + sb2) / q - c, (0.5, 0.99), solver="illinois"
    )
    chi1 = sw2 * (4 / mpmath.pi) / mpmath.sqrt(1 + 4 * q)
    chiq = sw2 * (4 / mpmath.pi) / ((1 + 2 * q) * mpmath.sqrt(1 + 4 * q))
    chic = sw2 * (4 / mpmath.pi) / mpmath.sqrt((1 + 2 * q) ** 2 - (2 * q * c) ** 2)
    row = [q, c, chi1, chiq, chic, -1 / mpmath.log(chic)]
    return ["sigma_w2,sigma_b2,q_star,c_star,chi_1,chi_q,chi_c,xi_c",
            "2.25,0.25," + ",".join(mpmath.nstr(x, 13) for x in row)]  # fmt: skip


HEADERS = {
    "erf_appendix_f.csv": "erf at (sigma_w2, sigma_b2) = (2.25, 0.25), from closed forms.",
    "tanh_sweep_sb005.csv": "tanh at sigma_b2 = 0.05 across the order-to-chaos transition.",
    "tanh_critical_line.csv": "tanh critical line (chi_1 = 1) parametrised by q*.",
    "tanh_critical_sigma_w2.csv": "critical sigma_w2 of tanh for a given sigma_b2.",
}


def main() -> None:
    tables = {
        "tanh_sweep_sb005.csv": sweep_table(),
        "tanh_critical_line.csv": critical_line_table(),
        "tanh_critical_sigma_w2.csv": critical_sigma_w2_table(),
        "erf_appendix_f.csv": erf_table(),
    }
    for name, lines in tables.items():
        text = f"# Written by tests/data/make_reference_tables.py (adaptive quadrature): {HEADERS[name]}\n"
        (HERE / name).write_text(text + "\n".join(lines) + "\n", encoding="utf-8")
        print(f"wrote {name}: {len(lines) - 1} rows")


if __name__ == "__main__":
    main()
