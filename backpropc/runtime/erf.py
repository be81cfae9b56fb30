"""The error functions NumPy lacks, copied into generated modules that use erf or erfc.

`_erf(x)` and `_erfc(x)` use only `np` (the generated module's `import numpy as np`). They work elementwise on any shape and return a NumPy scalar for
a Python scalar or 0-d input. A floating input keeps its dtype (float32 stays float32;
the arithmetic is float64 throughout), anything else gives float64. They raise no
floating-point warnings, not even under np.errstate(all="raise") or at +-inf and NaN.

Accuracy against mpmath (measured on 10^5 random points; tests/test_special.py asserts
2e-15): erf within 7e-16 relative on the whole line, down to |x| = 1e-300; erfc within
1.2e-15 relative up to x = 26.5, past which it underflows to 0 as the exact value does.

How: for |x| < 0.5, erf(x) = x * P(x*x) with P of degree 8. Everything else comes from
erfc(a), a = |x|, written as exp(-a*a) * q(t) / (a + 3.5) with t = (a - 3.5)/(a + 3.5):
t maps [0, inf) onto [-1, 1), where q is smooth and bounded, so one polynomial of
degree 21 covers the whole range. Then erf(x) = sign(x) * (1 - erfc(a)) for a >= 0.5
and erfc(-a) = 2 - erfc(a) lose nothing. A call is a fixed number of whole-array
operations (Horner loops, two exps, one np.where in _erf): on large float64 arrays
about 45 ns (erfc) and 70 ns (erf) per element, 60 and 90 times np.exp.

The coefficients are Chebyshev interpolants computed with mpmath at 40 digits;
reprint them, with the error of each polynomial, by running

    python -m backpropc.runtime.erf
"""

import numpy as np

NEEDS = {"_erf": ("_erfc",), "_erfinv": ("_erf", "_erfc")}


def _erf(x):
    """Error function, elementwise; float32 stays float32, non-float input gives float64."""
    x = np.asarray(x)
    dtype = x.dtype if x.dtype.kind == "f" else np.dtype(np.float64)
    x = x.astype(np.float64, copy=False)
    # erf(x)/x as a polynomial in x*x on |x| < 0.5, highest power first: x * P(x*x) stays
    # relatively accurate down to the tiniest x, where 1 - erfc(x) would cancel to nothing
    coeffs = (
        1.4725865480556744e-06, -1.4845849259707869e-05, 0.00012053335124353741,
        -0.0008548297753674966, 0.00522397737302147, -0.026866170632887928,
        0.11283791670925353, -0.37612638903183476, 1.1283791670955126,
    )
    with np.errstate(under="ignore"):  # x*x underflows for tiny x, harmlessly
        # clamped: only |x| < 0.5 uses this branch, the rest must just stay finite
        xs = np.clip(x, -0.5, 0.5)
        s = xs * xs
        p = np.full_like(s, coeffs[0])
        for c in coeffs[1:]:  # Horner, in place
            p *= s
            p += c
        p *= xs
        a = np.abs(x)
        # for |x| >= 0.5, erfc(|x|) <= 0.48, so 1 - erfc(|x|) keeps full relative accuracy
        y = np.where(a < 0.5, p, np.copysign(1.0 - _erfc(a), x))
        return y.astype(dtype, copy=False)[()]  # a float32 result may underflow, too


def _erfc(x):
    """Complementary error function 1 - erf(x), elementwise, relatively accurate in the tail."""
    x = np.asarray(x)
    dtype = x.dtype if x.dtype.kind == "f" else np.dtype(np.float64)
    x = x.astype(np.float64, copy=False)
    # erfc(a) = exp(-a*a) * q(t) / (a + 3.5) with t = (a - 3.5)/(a + 3.5): t maps [0, inf)
    # onto [-1, 1), where q = erfcx(a) * (a + 3.5) is smooth and stays between 0.56 and 3.5,
    # so one polynomial in t (highest power first) covers every a
    coeffs = (
        3.293682463397327e-09, 9.031017983964218e-09, -2.1774410583489834e-08,
        -8.349318749998197e-08, 1.1621592025478326e-07, 5.505253540897674e-07,
        -7.964822404914152e-07, -3.3920367839087342e-06, 7.244222809393519e-06,
        1.8647198808567475e-05, -7.477710555963672e-05, -4.2062167567124515e-05,
        0.0007145316870789162, -0.0013053546913654316, -0.0031770503425422435,
        0.026518619881630366, -0.09231870663851531, 0.22573862164741204,
        -0.4352560267168871, 0.6941136466346444, -0.937799724567112,
        1.08705558926226,
    )
    with np.errstate(under="ignore"):  # erfc(a) underflows to 0 near a = 26.6, as it should
        # erfc(27.5) < 1e-330 rounds to 0, so clamping there gives erfc(inf) = 0 for free
        # and keeps every intermediate finite; NaN passes through np.minimum
        a = np.minimum(np.abs(x), 27.5)
        r = 1.0 / (a + 3.5)
        t = (a - 3.5) * r
        q = np.full_like(t, coeffs[0])
        for c in coeffs[1:]:  # Horner, in place
            q *= t
            q += c
        q *= r  # now erfcx(a) = exp(a*a) * erfc(a)
        # exp(-a*a) = exp(-(a - h)*(a + h)) * exp(-h*h) with h = a rounded down to 1/16:
        # a - h and h*h are exact, so the rounding error of a*a, which exp would turn into
        # a relative error of up to 6e-14 at a = 26, never reaches the result
        h = np.floor(a * 16.0) * 0.0625
        q *= np.exp((h - a) * (a + h))
        q *= np.exp(-(h * h))  # last, so a result in the subnormal range is rounded once
        # erfc(-a) = 2 - erfc(a), branch-free because np.where is slow on mixed signs;
        # signbit (not x < 0) so that -0.0 gets -1 + 2 = 1 as well
        y = np.copysign(q, x) + 2.0 * np.signbit(x)
        return y.astype(dtype, copy=False)[()]


def _erfinv(y):
    """Inverse error function on [-1, 1], elementwise: +-inf at +-1, NaN outside; float32 stays
    float32. Winitzki's closed form starts within 0.2 %, then three Halley steps solve
    erf(x) = |y| (for |y| < 0.5) or erfc(x) = 1 - |y| (nearer 1, where 1 - |y| is exact and
    erfc keeps its relative accuracy); each step cubes the relative error."""
    y = np.asarray(y)
    dtype = y.dtype if y.dtype.kind == "f" else np.dtype(np.float64)
    a = np.abs(y.astype(np.float64, copy=False))
    with np.errstate(all="ignore"):  # log(0) at |y| = 1 and NaN outside, fixed below
        log = np.log((1.0 - a) * (1.0 + a))
        c = 2.0 / (np.pi * 0.147) + log / 2
        x = np.sqrt(np.sqrt(c * c - log / 0.147) - c)
        small = a < 0.5
        target = np.where(small, a, 1.0 - a)
        sign = np.where(small, 1.0, -1.0)  # erfc' = -erf'
        for _ in range(3):
            f = np.where(small, _erf(x), _erfc(x)) - target
            slope = sign * 1.1283791670955126 * np.exp(-x * x)  # 2/sqrt(pi) exp(-x^2)
            x = x - f / (slope + x * f)  # Halley: f'' = -2 x f'
        x = np.where(a == 1.0, np.inf, x)
    return np.copysign(x, y).astype(dtype, copy=False)[()]


def fit():
    """Recompute the coefficients of ERF_SOURCE with mpmath.

    Returns {"erf": (coeffs, error), "erfc": (coeffs, error)}: the coefficients as floats,
    highest power first, and mpmath's estimate of the maximum absolute error of the exact
    (unrounded) polynomial.
    """
    import mpmath as mp

    with mp.workdps(40):
        # erf(x)/x = 2/sqrt(pi) * 1F1(1/2; 3/2; -x^2), as a function of s = x^2 on [0, 0.5^2]
        def erf_over_x(s):
            return 2 / mp.sqrt(mp.pi) * mp.hyp1f1(0.5, 1.5, -s)

        small, small_err = mp.chebyfit(erf_over_x, [0, 0.25], 9, error=True)

        # erfcx(a) * (a + K) as a function of t = (a - K)/(a + K), for a in [0, 27.5]
        # (the clamp in _erfc); K = 3.5 needs the fewest terms for 2e-17 accuracy
        k, a_max = mp.mpf(3.5), mp.mpf(27.5)

        def q(t):
            a = k * (1 + t) / (1 - t)
            return mp.erfc(a) * mp.exp(a * a) * (a + k)

        big, big_err = mp.chebyfit(q, [-1, (a_max - k) / (a_max + k)], 22, error=True)
        return {
            "erf": (tuple(float(c) for c in small), float(small_err)),
            "erfc": (tuple(float(c) for c in big), float(big_err)),
        }


if __name__ == "__main__":
    for name, (coeffs, err) in fit().items():
        print(f"# {name}: max abs error of the polynomial about {err:.1e}")
        print("    coeffs = (")
        for i in range(0, len(coeffs), 3):
            print("        " + " ".join(f"{c!r}," for c in coeffs[i : i + 3]))
        print("    )")
