"""Elementwise functions of one argument (and the special functions of two), as a derivative sheet.

Each row is d out / d x, written with the output where that is cheaper (exp' = out,
tanh' = 1 - out**2), so the backward pass reuses forward values; both the reverse rule
(out_bar * d) and the forward rule (x_dot * d) are built from it. The NumPy form follows, then
the safe argument for untaken branches (functions with a restricted domain or that overflow),
the mpmath reference and the domain the tests draw from.
"""

from __future__ import annotations

import mpmath as mp
import sympy as sp
from sympy.codegen.cfunctions import Cbrt, Sqrt, exp2, expm1, hypot, log1p, log2, log10

from ..functions import relu, sigmoid, softplus
from .base import Op, call, where, zero_jvp, zero_vjp

REAL, POSITIVE, UNIT, ABOVE_ONE = (-2.0, 2.0), (0.2, 3.0), (-0.9, 0.9), (1.1, 3.0)


def sqrt(x):
    return x ** sp.S.Half


def digamma(x):
    return call(sp.polygamma, 0, x)


def elementwise(op, derivative, code, *, safe=None, mpmath=None, domain=REAL, helpers=(), scalar=None) -> Op:
    """The record of f(x) from its local derivative f'(x) = derivative(x, out). Its form on Python
    floats is `scalar`, or the math function of the same name by default ("" for none)."""
    def vjp(out_bar, out, args, needed):
        return [out_bar * derivative(args[0], out) if needed[0] else None]

    def jvp(out, args, tangents):
        return None if tangents[0] is None else tangents[0] * derivative(args[0], out)

    if scalar is None:
        simple = code.startswith("np.") and code.count("(") == 1
        scalar = "math." + code[3:].replace("arc", "a") if simple else ""  # np.arcsin({0}) -> math.asin({0})
    return Op(op, vjp, jvp, code, helpers=helpers, safe=safe, mpmath=mpmath, domain=domain, scalar=scalar, arity=1)


def piecewise_constant(op, code, *, mpmath=None, domain=REAL, scalar="") -> Op:
    """sign, Heaviside, floor, ceiling: the derivative is 0 everywhere it exists, and 0 at the jumps."""
    return Op(op, zero_vjp, zero_jvp, code, mpmath=mpmath, domain=domain, zero_derivative=True, scalar=scalar)


def _polygamma_code(k, x):
    return f"_digamma({x})" if k == "0" else f"_polygamma({k}, {x})"


def _polygamma_vjp(out_bar, out, args, needed):
    k, x = args
    return [None, out_bar * call(sp.polygamma, k + 1, x) if needed[1] else None]


def _polygamma_jvp(out, args, tangents):
    k, x = args
    return None if tangents[1] is None else tangents[1] * call(sp.polygamma, k + 1, x)


def _sinc_derivative(x, out):
    """(cos x - sinc x)/x, and 0 at x = 0 (sinc is even), with no 0/0 where x is 0."""
    nonzero = call(sp.Ne, x, 0)
    return where(nonzero, call(sp.cos, x) - out) / where(nonzero, x, 1)


def _two_argument(op, partials, code, helpers=(), mpmath=None, domain=REAL, scalar="") -> Op:
    """f(a, b) from its two partial derivatives, each (a, b, out) -> Ref."""
    def vjp(out_bar, out, args, needed):
        return [out_bar * d(*args, out) if n else None for d, n in zip(partials, needed)]

    def jvp(out, args, tangents):
        parts = [t * d(*args, out) for d, t in zip(partials, tangents) if t is not None]
        return None if not parts else sum(parts[1:], parts[0])

    return Op(op, vjp, jvp, code, helpers=helpers, mpmath=mpmath, domain=domain, scalar=scalar, arity=2)


def real_part(op, *, zero: bool) -> Op:
    """re, conjugate (the identity) and im (zero): every value a model computes is real, so
    they fold away as they are built, and what SymPy wraps around symbols it cannot prove
    real (an IndexedBase without real=True, Abs(x)**2 = x*conjugate(x)) costs nothing."""
    if zero:
        return Op(op, zero_vjp, zero_jvp, "0.0", mpmath=lambda x: mp.mpf(0), zero_derivative=True,
                  fold=lambda graph, args: graph.const(0), arity=1)
    return Op(op, lambda out_bar, out, args, needed: [out_bar], lambda out, args, tangents: tangents[0],
              "{0}", mpmath=lambda x: x, fold=lambda graph, args: args[0], arity=1)


def _mp_heaviside(x, h0=0.5):
    return mp.mpf(1) if x > 0 else (mp.mpf(0) if x < 0 else mp.mpf(h0))


RECORDS = [
    #           op         d out / d x                          NumPy form
    elementwise(sp.exp,    lambda x, out: out,                  "np.exp({0})", safe=0, mpmath=mp.exp),
    elementwise(sp.log,    lambda x, out: 1 / x,                "np.log({0})", safe=1, mpmath=mp.log,
                domain=POSITIVE),
    elementwise(sp.sin,    lambda x, out: call(sp.cos, x),      "np.sin({0})", mpmath=mp.sin),
    elementwise(sp.cos,    lambda x, out: -call(sp.sin, x),     "np.cos({0})", mpmath=mp.cos),
    elementwise(sp.tan,    lambda x, out: 1 + out ** 2,         "np.tan({0})", safe=0, mpmath=mp.tan,
                domain=UNIT),
    elementwise(sp.cot,    lambda x, out: -1 - out ** 2,        "1/np.tan({0})", safe=1, mpmath=mp.cot, scalar="1/math.tan({0})",
                domain=POSITIVE),
    elementwise(sp.sec,    lambda x, out: out * call(sp.tan, x), "1/np.cos({0})", safe=0, mpmath=mp.sec, scalar="1/math.cos({0})",
                domain=UNIT),
    elementwise(sp.csc,    lambda x, out: -out * call(sp.cot, x), "1/np.sin({0})", safe=1, mpmath=mp.csc, scalar="1/math.sin({0})",
                domain=POSITIVE),
    elementwise(sp.asec,   lambda x, out: 1 / (x ** 2 * sqrt(1 - x ** -2)), "np.arccos(1/{p0})", safe=2,
                mpmath=mp.asec, scalar="math.acos(1/{p0})", domain=ABOVE_ONE),
    elementwise(sp.acsc,   lambda x, out: -1 / (x ** 2 * sqrt(1 - x ** -2)), "np.arcsin(1/{p0})", safe=2,
                mpmath=mp.acsc, scalar="math.asin(1/{p0})", domain=ABOVE_ONE),
    elementwise(sp.asin,   lambda x, out: 1 / sqrt(1 - x ** 2), "np.arcsin({0})", safe=0, mpmath=mp.asin,
                domain=UNIT),
    elementwise(sp.acos,   lambda x, out: -1 / sqrt(1 - x ** 2), "np.arccos({0})", safe=0, mpmath=mp.acos,
                domain=UNIT),
    elementwise(sp.atan,   lambda x, out: 1 / (1 + x ** 2),     "np.arctan({0})", mpmath=mp.atan),
    elementwise(sp.acot,   lambda x, out: -1 / (1 + x ** 2),    "np.arctan(1/{p0})", safe=1, mpmath=mp.acot, scalar="math.atan(1/{p0})",
                domain=POSITIVE),
    elementwise(sp.sinh,   lambda x, out: call(sp.cosh, x),     "np.sinh({0})", safe=0, mpmath=mp.sinh),
    elementwise(sp.cosh,   lambda x, out: call(sp.sinh, x),     "np.cosh({0})", safe=0, mpmath=mp.cosh),
    elementwise(sp.tanh,   lambda x, out: 1 - out ** 2,         "np.tanh({0})", mpmath=mp.tanh),
    elementwise(sp.coth,   lambda x, out: 1 - out ** 2,         "1/np.tanh({0})", safe=1, mpmath=mp.coth, scalar="1/math.tanh({0})",
                domain=POSITIVE),
    elementwise(sp.asinh,  lambda x, out: 1 / sqrt(x ** 2 + 1), "np.arcsinh({0})", mpmath=mp.asinh),
    elementwise(sp.acosh,  lambda x, out: 1 / sqrt(x ** 2 - 1), "np.arccosh({0})", safe=2, mpmath=mp.acosh,
                domain=ABOVE_ONE),
    elementwise(sp.atanh,  lambda x, out: 1 / (1 - x ** 2),     "np.arctanh({0})", safe=0, mpmath=mp.atanh,
                domain=UNIT),
    elementwise(sp.erf,    lambda x, out: 2 / sp.sqrt(sp.pi) * call(sp.exp, -x ** 2), "_erf({0})",
                helpers=("_erf",), mpmath=mp.erf, scalar="math.erf({0})"),
    elementwise(sp.erfc,   lambda x, out: -2 / sp.sqrt(sp.pi) * call(sp.exp, -x ** 2), "_erfc({0})",
                helpers=("_erfc",), mpmath=mp.erfc, scalar="math.erfc({0})"),
    elementwise(sp.erfinv, lambda x, out: sp.sqrt(sp.pi) / 2 * call(sp.exp, out ** 2), "_erfinv({0})", safe=0,
                helpers=("_erfinv",), mpmath=mp.erfinv, domain=UNIT),
    elementwise(sp.LambertW, lambda x, out: call(sp.exp, -out) / (1 + out), "_lambertw({0})", safe=0,  # W/(x(1 + W))
                helpers=("_lambertw",), mpmath=lambda x: mp.re(mp.lambertw(x)), domain=(-0.3, 3.0)),
    elementwise(sp.Abs,    lambda x, out: call(sp.sign, x),     "np.abs({0})", mpmath=abs, scalar="abs({0})"),  # Abs'(0) = 0
    elementwise(sigmoid,   lambda x, out: out * (1 - out),      "_sigmoid({0})", helpers=("_sigmoid",),
                mpmath=lambda x: 1 / (1 + mp.exp(-x)), scalar="1/(1 + math.exp(-{p0}))"),
    elementwise(softplus,  lambda x, out: call(sigmoid, x),     "np.logaddexp(0, {0})",
                mpmath=lambda x: mp.log(1 + mp.exp(x)), scalar="math.log1p(math.exp({0}))"),
    elementwise(relu,      lambda x, out: call(sp.Heaviside, x, 0), "np.maximum({0}, 0)",  # relu'(0) = 0
                mpmath=lambda x: max(x, 0), scalar="max({0}, 0.0)"),
    elementwise(log1p,     lambda x, out: 1 / (1 + x),          "np.log1p({0})", safe=0, mpmath=mp.log1p,
                domain=UNIT),
    elementwise(expm1,     lambda x, out: out + 1,              "np.expm1({0})", safe=0, mpmath=mp.expm1),
    elementwise(exp2,      lambda x, out: out * sp.log(2),       "np.exp2({0})", safe=0,
                mpmath=lambda x: mp.power(2, x), scalar="2.0**{p0}"),
    elementwise(log2,      lambda x, out: 1 / (x * sp.log(2)),   "np.log2({0})", safe=1, mpmath=lambda x: mp.log(x, 2),
                scalar="math.log2({0})", domain=POSITIVE),
    elementwise(log10,     lambda x, out: 1 / (x * sp.log(10)),  "np.log10({0})", safe=1, mpmath=mp.log10,
                scalar="math.log10({0})", domain=POSITIVE),
    elementwise(Sqrt,      lambda x, out: 1 / (2 * out),         "np.sqrt({0})", safe=1, mpmath=mp.sqrt,
                domain=POSITIVE),
    elementwise(Cbrt,      lambda x, out: 1 / (3 * out ** 2),    "np.cbrt({0})", safe=1,  # real for x < 0
                mpmath=lambda x: mp.sign(x) * mp.cbrt(abs(x)), scalar="", domain=POSITIVE),  # math.cbrt: 3.11
    elementwise(sp.sinc,   _sinc_derivative,                    "np.sinc({p0}/np.pi)",  # SymPy's sinc is sin(x)/x
                mpmath=lambda x: mp.sin(x) / x if x else mp.mpf(1), scalar=""),
    elementwise(sp.frac,   lambda x, out: 1,                     "np.mod({0}, 1.0)",  # frac' = 1 away from the jumps
                mpmath=lambda x: x - mp.floor(x), scalar="({p0} % 1.0)"),
    _two_argument(hypot, (lambda a, b, out: a / out, lambda a, b, out: b / out), "np.hypot({0}, {1})",
                  mpmath=lambda a, b: mp.sqrt(a * a + b * b), scalar="math.hypot({0}, {1})"),
    _two_argument(sp.Mod, (lambda a, b, out: 1, lambda a, b, out: -call(sp.floor, a / b)),  # a - b*floor(a/b)
                  "np.mod({0}, {1})", mpmath=lambda a, b: a - b * mp.floor(a / b), domain=POSITIVE,
                  scalar="({p0} % {p1})"),
    elementwise(sp.loggamma, lambda x, out: digamma(x),         "_loggamma({0})", safe=1,
                helpers=("_loggamma",), mpmath=mp.loggamma, domain=POSITIVE, scalar="math.lgamma({0})"),
    elementwise(sp.gamma,  lambda x, out: out * digamma(x),     "_gamma({0})", safe=1, helpers=("_gamma",),
                mpmath=mp.gamma, domain=POSITIVE, scalar="math.gamma({0})"),
    elementwise(sp.factorial, lambda x, out: out * digamma(x + 1), "_factorial({0})", safe=1,
                helpers=("_factorial",), mpmath=mp.factorial, domain=POSITIVE),
    Op(sp.polygamma, _polygamma_vjp, _polygamma_jvp, _polygamma_code, safe=1,
       helpers=("_digamma", "_polygamma"), mpmath=lambda k, x: mp.polygamma(int(k), x), domain=POSITIVE),
    _two_argument(sp.beta, (lambda a, b, out: out * (digamma(a) - digamma(a + b)),
                            lambda a, b, out: out * (digamma(b) - digamma(a + b))),
                  "_beta({0}, {1})", ("_beta",), mp.beta, POSITIVE),
    _two_argument(sp.binomial, (lambda n, k, out: out * (digamma(n + 1) - digamma(n - k + 1)),
                                lambda n, k, out: out * (digamma(n - k + 1) - digamma(k + 1))),
                  "_binomial({0}, {1})", ("_binomial",), mp.binomial, ABOVE_ONE),
    real_part(sp.re, zero=False),
    real_part(sp.conjugate, zero=False),
    real_part(sp.im, zero=True),
    piecewise_constant(sp.sign,      "np.sign({0})", mpmath=mp.sign),
    piecewise_constant(sp.Heaviside, "np.heaviside({0}, {1})", mpmath=_mp_heaviside),
    piecewise_constant(sp.floor,     "np.floor({0})", mpmath=mp.floor, scalar="float(math.floor({0}))"),
    piecewise_constant(sp.ceiling,   "np.ceil({0})", mpmath=mp.ceil, scalar="float(math.ceil({0}))"),
]
