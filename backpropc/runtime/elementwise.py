"""Stable elementwise helpers: each argument is evaluated once, and on NumPy arrays the work
happens in place. Neither warns, and both keep full relative accuracy in the tails (sigmoid(-40)
is 4.2e-18, not 0), at a fraction of the cost of the logaddexp forms (docs/benchmarks.md)."""

import numpy as np

from .gamma import _loggamma


def _sigmoid(z):
    """1/(1 + exp(-z)), to full relative accuracy in both tails. Below z = -709, exp(-z)
    overflows to inf and the result is 0, the correctly rounded value: the overflow is harmless."""
    with np.errstate(over="ignore", under="ignore"):
        if type(z) is np.ndarray:  # in place: no temporary besides the result
            e = np.negative(z, out=np.empty_like(z, dtype=np.result_type(z, 1.0)))
            np.exp(e, out=e)
            e += 1.0
            return np.reciprocal(e, out=e)
        return 1 / (1 + np.exp(-z))


def _logsumexp(*args):
    """log(exp(a) + exp(b) + ...), shifted by the largest argument so that no exp overflows."""
    m = args[0]
    for a in args[1:]:
        m = np.maximum(m, a)
    m = np.where(np.isfinite(m), m, 0.0)  # all -inf, or an inf: no shift
    total = np.exp(args[0] - m)
    for a in args[1:]:
        total = total + np.exp(a - m)
    with np.errstate(divide="ignore"):
        return m + np.log(total)


NEEDS = {"_beta": ("_loggamma",)}


def _beta(a, b):
    """The Beta function Gamma(a) Gamma(b) / Gamma(a + b) for a, b > 0, through log Gamma: no
    overflow where the Gammas themselves would overflow."""
    with np.errstate(over="ignore", under="ignore"):
        return np.exp(_loggamma(a) + _loggamma(b) - _loggamma(a + b))


def _lambertw(x):
    """The principal branch W of Lambert's function (W exp(W) = x, W >= -1) for x >= -1/e,
    elementwise; NaN below -1/e. A start within 6 % (the branch-point series in
    p = sqrt(2(e x + 1)) below x = -1/4, log1p(x) (1 - log1p(log1p(x))/(2 + log1p(x))) above),
    then four Halley steps on W - x exp(-W), which stays finite up to the largest floats."""
    x = np.asarray(x)
    dtype = x.dtype if x.dtype.kind == "f" else np.dtype(np.float64)
    x = x.astype(np.float64, copy=False)
    with np.errstate(all="ignore"):
        p = np.sqrt(np.maximum(2.0 * (np.e * x + 1.0), 0.0))
        l1 = np.log1p(np.maximum(x, -0.25))
        w = np.where(x < -0.25, -1.0 + p * (1.0 + p * (-1.0 / 3.0 + p * (11.0 / 72.0))),
                     l1 * (1.0 - np.log1p(l1) / (2.0 + l1)))
        for _ in range(4):
            g = w - x * np.exp(-w)
            w1 = w + 1.0
            step = g / (w1 - (w + 2.0) * g / (2.0 * w1))
            w = np.where(np.isfinite(step), w - step, w)  # at the branch point W = -1 stays
        w = np.where(x < -1 / np.e, np.nan, np.where(x == np.inf, np.inf, w))
    return w.astype(dtype, copy=False)[()]
