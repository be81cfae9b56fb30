"""The Gamma function and its relatives in pure NumPy, for generated modules (no SciPy).

Each helper is copied verbatim into a generated module that needs it (with the helpers it
calls, listed in NEEDS), so each uses only `np` and keeps its coefficients in its body.
All work elementwise on any shape, return a NumPy scalar for a Python scalar or 0-d input,
keep float32 as float32 (the arithmetic is float64 throughout; other input gives float64),
propagate NaN and raise no floating-point warning, even under np.errstate(all="raise").

Accuracy against mpmath at 30 digits (tests/test_runtime_gamma.py; docs/special.md lists
the measured maxima): relative error <= 1e-13, absolute where the value is below 1.

_loggamma(x), x > 0: log Gamma(x). Below 10, log Gamma(x) = log Gamma(x + 10) -
    log(x (x+1) ... (x+9)) (one fixed shift, the product over whole arrays, log x apart so
    that a subnormal x keeps its digits); at z >= 10 Stirling's series
    (z - 1/2)(log z - 1) + log(2 pi)/2 - 1/2 + sum B_2j / (2j (2j-1) z^(2j-1)), 8 terms
    (the next is below 2e-18). log Gamma(+-0) = inf; x < 0 gives nan (the real log
    Gamma of a negative number is not defined here: SymPy's loggamma is complex there).
_gamma(x), real x: for x >= 0 the same shift and Stirling's series in product form,
    sqrt(2 pi) z^(z/2 - 1/4) (z^(z/2 - 1/4) e^-z) e^S(z), so that no factor overflows before
    the result does (above x = 171.62 the result is inf, without a warning). For x < 0 the
    reflection Gamma(x) = pi / (sin(pi x) (-x) Gamma(-x)): through Gamma(-x) rather than
    Gamma(1 - x), because -x is exact while 1 - x would be rounded, which costs up to 7e-14
    near x = -170; sin(pi x) is taken of x minus its nearest integer (exact). Poles:
    Gamma(+0) = inf and Gamma(-0) = -inf (the limit from the side the zero's sign names, as
    C's tgamma); at negative integers and -inf nan: SymPy gives zoo there, an unsigned
    infinity, and no signed limit exists. Below about -171.6 the result underflows to +-0.
_digamma(x), real x: psi(x) = psi(x + 10) - sum 1/(x + j), j < 10, below 10, then
    log z - 1/(2z) - sum B_2j / (2j z^(2j)), 8 terms. For x < 0 the reflection
    psi(x) = psi(1 - x) - pi cot(pi x). psi(+0) = -inf, psi(-0) = inf (one-sided limits),
    nan at negative integers and -inf.
_polygamma(k, x), integer k >= 0 (a Python int or an integer-valued array, broadcast with
    x), x > 0: k = 0 is _digamma (which also takes x < 0). For k >= 1,
    psi_k(x) = (-1)^(k+1) k! sum 1/(x + j)^(k+1), j < 20, plus psi_k(x + 20) from the
    asymptotic series (-1)^(k+1) (k-1)!/z^k (1 + k/(2z) + sum B_2j k(k+1)...(k+2j-1) /
    ((2j)! z^2j)), 10 terms: accurate to 1e-15 for k <= 10 (tested to k = 8), degrading
    slowly beyond. x = +-0 gives the one-sided limit (+-inf); x < 0 (no reflection) and
    k that is negative or not an integer give nan.
_factorial(n): n! exactly (a table) for the integers 0..22, whose factorials float64 holds
    exactly; otherwise Gamma(n + 1), the Gamma-function extension that SymPy's factorial
    evaluates numerically (1e-15 relative); nan at negative integers (SymPy: zoo), inf past
    170.6.
_binomial(n, k): for integer k, the product prod (n - k + i)/i, i = 1..k, with k replaced by
    m = n - k when 0 <= k <= n are integers and that is shorter: exact while the result and
    k times it fit in 53 bits, otherwise within 2k roundings. This covers k (or n - k) up to
    30; beyond, for integers 0 <= k <= n, Gamma(n+1) / (Gamma(k+1) Gamma(n-k+1)) up to
    n = 170 and Stirling's product form above (about m ulps; see the code). Integer k < 0
    gives 0, and so does k > n >= 0 (as SymPy). Non-integer k: the Gamma ratio with
    1/Gamma = 0 at poles (as SymPy's binomial evaluates numerically), which needs |n|, |k|,
    |n - k| below about 170; nan where n is a negative integer. Rounding n + 1 or
    n - k + 1 costs about 1e-16 / d relative within d of a pole (also in _factorial).
"""

import numpy as np

NEEDS = {
    "_loggamma": (),
    "_gamma": (),
    "_digamma": (),
    "_polygamma": ("_digamma",),
    "_factorial": ("_gamma",),
    "_binomial": ("_gamma",),
}


def _loggamma(x):
    """log Gamma(x) for x > 0, elementwise; float32 stays float32."""
    x = np.asarray(x)
    dtype = x.dtype if x.dtype.kind == "f" else np.dtype(np.float64)
    x = x.astype(np.float64, copy=False)
    # Stirling's series B_2j / (2j (2j - 1)) in powers of 1/z^2, highest first
    coeffs = (
        -0.029550653594771242, 0.00641025641025641, -0.0019175269175269176,
        0.0008417508417508417, -0.0005952380952380953, 0.0007936507936507937,
        -0.002777777777777778, 0.08333333333333333,
    )
    # log 0 = -inf, log of a negative is nan, and inf - inf does not occur: every special
    # value comes out right by itself, so the warnings are noise
    with np.errstate(all="ignore"):
        small = x < 10.0
        z = np.where(small, x + 10.0, x)
        p = x + 1.0
        for j in range(2, 10):
            p *= x + j
        shift = np.where(small, np.log(x) + np.log(p), 0.0)
        r = 1.0 / z
        r2 = r * r
        s = np.full_like(r, coeffs[0])
        for c in coeffs[1:]:
            s *= r2
            s += c
        # (z - 1/2) log z - z = (z - 1/2)(log z - 1) - 1/2, which keeps z = inf finite-free
        y = (z - 0.5) * (np.log(z) - 1.0) + 0.4189385332046727 + s * r - shift
        return y.astype(dtype, copy=False)[()]


def _gamma(x):
    """Gamma(x) for real x, elementwise; nan at negative integers, +-inf at +-0."""
    x = np.asarray(x)
    dtype = x.dtype if x.dtype.kind == "f" else np.dtype(np.float64)
    x = x.astype(np.float64, copy=False)
    coeffs = (  # as in _loggamma
        -0.029550653594771242, 0.00641025641025641, -0.0019175269175269176,
        0.0008417508417508417, -0.0005952380952380953, 0.0007936507936507937,
        -0.002777777777777778, 0.08333333333333333,
    )
    with np.errstate(all="ignore"):  # poles and overflow are meant; the masks pick the lanes
        neg = x < 0.0
        t = np.where(neg, -x, x)  # exact; -0.0 stays -0.0 and gives -inf below
        small = t < 10.0
        # past 180 Gamma is inf anyway; the clamp keeps every factor finite
        z = np.minimum(np.where(small, t + 10.0, t), 180.0)
        r = 1.0 / z
        r2 = r * r
        s = np.full_like(r, coeffs[0])
        for c in coeffs[1:]:
            s *= r2
            s += c
        h = np.power(z, 0.5 * z - 0.25)
        g = 2.5066282746310007 * h * (h * np.exp(-z)) * np.exp(s * r)
        g = np.where(t > 180.0, np.inf, g)
        p = t + 1.0
        for j in range(2, 10):
            p *= t + j
        g = np.where(small, g / p / t, g)  # Gamma(t) = Gamma(t + 10) / (t (t+1) ... (t+9))
        # reflection: sin(pi x) from x minus its nearest integer n, exact, times (-1)^n
        n = np.round(x)
        sin = np.sin(np.pi * (x - n)) * (1.0 - 2.0 * (n % 2.0))
        y = np.where(neg, np.pi / sin / g / t, g)
        y = np.where(neg & (x == n), np.nan, y)
        return y.astype(dtype, copy=False)[()]


def _digamma(x):
    """psi(x) = d/dx log Gamma(x) for real x, elementwise; nan at negative integers."""
    x = np.asarray(x)
    dtype = x.dtype if x.dtype.kind == "f" else np.dtype(np.float64)
    x = x.astype(np.float64, copy=False)
    # the asymptotic series B_2j / (2j) in powers of 1/z^2, highest first
    coeffs = (
        -0.4432598039215686, 0.08333333333333333, -0.021092796092796094,
        0.007575757575757576, -0.004166666666666667, 0.003968253968253968,
        -0.008333333333333333, 0.08333333333333333,
    )
    with np.errstate(all="ignore"):  # poles are meant; the masks pick the lanes
        neg = x < 0.0
        t = np.where(neg, 1.0 - x, x)  # -0.0 stays: 1/(-0.0) gives psi(-0) = inf
        small = t < 10.0
        z = np.where(small, t + 10.0, t)
        total = 1.0 / t
        for j in range(1, 10):
            total += 1.0 / (t + j)
        r2 = 1.0 / (z * z)
        s = np.full_like(r2, coeffs[0])
        for c in coeffs[1:]:
            s *= r2
            s += c
        y = np.log(z) - 0.5 / z - s * r2
        y = np.where(small, y - total, y)
        n = np.round(x)
        y = np.where(neg, y - np.pi / np.tan(np.pi * (x - n)), y)
        y = np.where(neg & (x == n), np.nan, y)
        return y.astype(dtype, copy=False)[()]


def _polygamma(k, x):
    """The k-th derivative of psi, for integer k >= 0 and x > 0 (k = 0: any real x)."""
    x = np.asarray(x)
    dtype = x.dtype if x.dtype.kind == "f" else np.dtype(np.float64)
    k, x = np.broadcast_arrays(np.asarray(k, dtype=np.float64), x.astype(np.float64))
    # B_2j / (2j)!, j = 1, 2, ..., for the asymptotic series
    coeffs = (
        0.08333333333333333, -0.001388888888888889, 3.306878306878307e-05,
        -8.267195767195768e-07, 2.08767569878681e-08, -5.284190138687493e-10,
        1.3382536530684679e-11, -3.3896802963225827e-13, 8.586062056277845e-15,
        -2.174868698558062e-16,
    )
    with np.errstate(all="ignore"):  # poles and underflow are meant; the masks pick lanes
        valid = (k >= 0.0) & (k == np.floor(k))
        k = np.where(valid, k, 1.0)  # invalid lanes become nan at the end
        # (k - 1)! by a loop over the values of k (not over elements)
        top = int(min(np.max(k, initial=1.0), 171.0))
        fact = np.ones_like(x)
        for i in range(2, top):
            fact *= np.where(i < k, float(i), 1.0)
        m = -(k + 1.0)
        small = x < 20.0
        z = np.where(small, x + 20.0, x)
        total = np.power(x, m)
        for j in range(1, 20):
            total += np.power(x + j, m)
        r2 = 1.0 / (z * z)
        series = 1.0 + 0.5 * k / z
        rising = np.ones_like(z)
        w = np.ones_like(z)
        for j, c in enumerate(coeffs, 1):
            rising *= (k + (2 * j - 2)) * (k + (2 * j - 1))
            w *= r2
            series += c * rising * w
        y = np.power(z, -k) * series
        y = np.where(small, y + k * total, y) * fact
        y = np.where(k % 2.0 == 1.0, y, -y)
        y = np.where(x < 0.0, np.nan, y)
        if np.any(k == 0.0):
            y = np.where(k == 0.0, _digamma(x), y)
        y = np.where(valid, y, np.nan)
        return y.astype(dtype, copy=False)[()]


def _factorial(n):
    """n! for data: exact for the integers 0..22, Gamma(n + 1) otherwise."""
    n = np.asarray(n)
    dtype = n.dtype if n.dtype.kind == "f" else np.dtype(np.float64)
    n = n.astype(np.float64, copy=False)
    table = np.array((
        1.0, 1.0, 2.0, 6.0, 24.0, 120.0, 720.0, 5040.0, 40320.0, 362880.0, 3628800.0,
        39916800.0, 479001600.0, 6227020800.0, 87178291200.0, 1307674368000.0,
        20922789888000.0, 355687428096000.0, 6402373705728000.0, 1.21645100408832e17,
        2.43290200817664e18, 5.109094217170944e19, 1.1240007277776077e21,
    ))
    with np.errstate(all="ignore"):  # nan and inf compare false; the masks pick the lanes
        whole = n == np.floor(n)
        exact = whole & (n >= 0.0) & (n <= 22.0)
        y = np.where(exact, table[np.where(exact, n, 0.0).astype(np.intp)], _gamma(n + 1.0))
        y = np.where(whole & (n < 0.0), np.nan, y)
        return y.astype(dtype, copy=False)[()]


def _binomial(n, k):
    """Binomial coefficient C(n, k) for data, with SymPy's Gamma-function extension."""
    n, k = np.asarray(n), np.asarray(k)
    floats = [a.dtype for a in (n, k) if a.dtype.kind == "f"]  # an integer k keeps float32
    dtype = np.result_type(*floats) if floats else np.dtype(np.float64)
    n, k = np.broadcast_arrays(n.astype(np.float64), k.astype(np.float64))
    with np.errstate(all="ignore"):  # poles and masked-out lanes overflow harmlessly
        n_int = n == np.floor(n)
        k_int = k == np.floor(k)
        both = n_int & k_int & (n >= 0.0)
        # C(n, k) = C(n, n - k) for integers 0 <= k <= n: take the shorter product
        m = np.where(both & (k <= n) & (n - k < k), n - k, k)
        by_product = k_int & (m >= 0.0) & (m <= 30.0)
        # C(n, m) = prod (n - m + i)/i: each partial product C(n - m + i, i) is an integer
        # for integer n, so while it fits in 53 bits every step is exact
        product = np.ones_like(n)
        top = int(np.max(np.where(by_product, m, 0.0), initial=0.0))
        for i in range(1, top + 1):
            product = np.where(i <= m, product * (n - m + i) / i, product)
        # the Gamma ratio, with 1/Gamma = 0 at the poles of the denominator
        a, b = k + 1.0, n - k + 1.0
        ratio = _gamma(n + 1.0) * np.where((a <= 0.0) & k_int, 0.0, 1.0 / _gamma(a))
        ratio *= np.where((b <= 0.0) & (b == np.floor(b)), 0.0, 1.0 / _gamma(b))
        # integers past 170 with m > 30: Stirling's Gamma(z) = sqrt(2 pi) z^(z - 1/2) e^-z e^S(z)
        # for a = n + 1, b = m + 1, c = n - m + 1 (all exact, b and c >= 32) gives
        # C = (a/b)^(b - 1/2) (1 + m/c)^(c - 1/2) e / sqrt(2 pi a) e^(S(a) - S(b) - S(c)),
        # which rounds a/b and m/c once each: about m ulps, where exp(log Gamma(n + 1) - ...)
        # would lose the ulps of log Gamma(n + 1) (2e-9 relative at n = 1e6)
        a, b = n + 1.0, np.maximum(m, 31.0) + 1.0
        c = a - b + 1.0
        stirling = 0.0
        for z, sign in ((a, 1.0), (b, -1.0), (c, -1.0)):
            r2 = 1.0 / (z * z)  # S(z) to 1/z^7; the next term is below 3e-17 at z = 32
            s = ((-0.0005952380952380953 * r2 + 0.0007936507936507937) * r2
                 - 0.002777777777777778) * r2 + 0.08333333333333333
            stirling = stirling + sign * s / z
        big = np.power(a / b, b - 0.5) * np.exp((c - 0.5) * np.log1p((b - 1.0) / c))
        big *= 1.0844375514192277 / np.sqrt(a) * np.exp(stirling)  # e / sqrt(2 pi)
        y = np.where(both & (n > 170.0) & (m > 30.0), big, ratio)
        y = np.where(by_product, product, y)
        y = np.where((k_int & (k < 0.0)) | (both & (k > n)), 0.0, y)
        return y.astype(dtype, copy=False)[()]
