"""Each derivative rule against sympy.diff on the primitive's own input domain."""

import numpy as np
import pytest
import sympy as sp
from oracle import assert_close, sympy_gradient

import backpropc as bp
from backpropc.ops import has_record, supported_functions

x, y, z = sp.symbols("x y z", real=True)  # real, so sympy.diff of Abs is sign, as in NumPy
u = sp.Symbol("u", real=True)  # a data input, so every case also broadcasts over a batch

REAL = (-2.0, 2.0)
POSITIVE = (0.2, 3.0)
UNIT = (-0.9, 0.9)
ABOVE_ONE = (1.1, 3.0)

# (id, loss in x, y, z and the data u, domain of x, y, z)
CASES = [
    ("add", x + y * u + 3, REAL),
    ("sub", x - y * u, REAL),
    ("mul", x * y * u, REAL),
    ("mul_many", x * y * z * u * (x + 1) * (y - 2), REAL),
    ("square", (x * u) ** 2, REAL),
    ("cube", (x + u) ** 3, REAL),
    ("reciprocal", 1 / (x + 3 + u), REAL),
    ("negative_power", (x + 3) ** -3 * u, REAL),
    ("sqrt", sp.sqrt(x * u + 2), POSITIVE),
    ("rsqrt", (x + u + 2) ** sp.Rational(-1, 2), POSITIVE),
    ("rational_power", (x + u + 1) ** sp.Rational(3, 2), POSITIVE),
    ("float_power", (x + 1) ** 2.5 * u, POSITIVE),
    ("symbolic_power", x ** (y * u), POSITIVE),
    ("constant_base", 2 ** (x * u), REAL),
    ("exp", sp.exp(x * u), REAL),
    ("log", sp.log(x + u + 1), POSITIVE),
    ("log_base", sp.log(x * u + 3, 3), POSITIVE),
    ("sin", sp.sin(x * u), REAL),
    ("cos", sp.cos(x * u), REAL),
    ("tan", sp.tan(x * u / 2), UNIT),
    ("asin", sp.asin(x * u / 2), UNIT),
    ("acos", sp.acos(x * u / 2), UNIT),
    ("atan", sp.atan(x * u), REAL),
    ("atan2", sp.atan2(y * u, x), POSITIVE),
    ("sinh", sp.sinh(x * u), REAL),
    ("cosh", sp.cosh(x * u), REAL),
    ("tanh", sp.tanh(x * u), REAL),
    ("asinh", sp.asinh(x * u), REAL),
    ("acosh", sp.acosh(x + u + 1.5), POSITIVE),
    ("atanh", sp.atanh(x * u / 2), UNIT),
    ("erf", sp.erf(x * u), REAL),
    ("erfc", sp.erfc(x * u), REAL),
    ("abs", sp.Abs(x * u), REAL),
    ("sign", sp.sign(x) * y * u, REAL),
    ("max", sp.Max(x, y * u), REAL),
    ("max_constant", sp.Max(0, x * u) * y, REAL),
    ("max_three", sp.Max(x, y, z * u), REAL),
    ("min", sp.Min(x, y * u), REAL),
    ("heaviside", sp.Heaviside(x) * y * u, REAL),
    ("piecewise", sp.Piecewise((x ** 2 * u, x > 0), (sp.sin(y * u), True)), REAL),
    ("floor", sp.floor(x * 3) * y * u, REAL),
    ("ceiling", sp.ceiling(x * 3) * y * u, REAL),
    ("constants", sp.pi * x * u + sp.E * y, REAL),
    ("sigmoid", bp.sigmoid(x * u), REAL),
    ("softplus", bp.softplus(x * u), REAL),
    ("relu", bp.relu(x * u) * y, REAL),
    ("logsumexp", bp.logsumexp(x, y * u, z), REAL),
    ("log1p", bp.log1p(x * u / 2), UNIT),
    ("expm1", bp.expm1(x * u), REAL),
]


@pytest.mark.parametrize("case_id, loss, domain", CASES, ids=[c[0] for c in CASES])
def test_rule_matches_sympy_diff(case_id, loss, domain):
    wrt = [s for s in (x, y, z) if loss.has(s)]
    compiled = bp.compile(loss, wrt=wrt, inputs=[u], name=case_id)
    module = compiled.load()
    rng = np.random.default_rng(len(case_id))
    for _ in range(4):
        point = {str(w): float(rng.uniform(*domain)) for w in wrt}
        point["u"] = rng.uniform(0.5, 1.0, 3)
        _, grads = module.value_and_grad(**point)
        exact = sympy_gradient(bp.Model(case_id, [], loss, wrt, [u]), wrt + [u], point)
        assert_close(grads, exact, 1e-10, what=case_id)


PRIMITIVES = [sp.Add, sp.Mul, sp.Pow, sp.exp, sp.log, sp.sin, sp.cos, sp.tan, sp.asin, sp.acos,
                   sp.atan, sp.atan2, sp.sinh, sp.cosh, sp.tanh, sp.asinh, sp.acosh, sp.atanh, sp.erf,
                   sp.erfc, sp.Abs, sp.sign, sp.Max, sp.Min, sp.Heaviside, sp.Piecewise, sp.floor,
                   sp.ceiling, bp.sigmoid, bp.softplus, bp.relu, bp.logsumexp, bp.log1p, bp.expm1]


@pytest.mark.parametrize("op", PRIMITIVES, ids=lambda op: op.__name__)
def test_every_primitive_has_a_rule(op):
    assert has_record(op)
    if op not in (sp.Add, sp.Mul, sp.Pow):  # operators are not listed as functions
        assert op.__name__ in supported_functions()


def test_every_primitive_has_a_test_case():
    tested = {type(c[1]).__name__ for c in CASES} | {f.func.__name__ for c in CASES for f in c[1].atoms(sp.Function)}
    tested |= {"Add", "Mul", "Pow", "Piecewise"}
    missing = [op.__name__ for op in PRIMITIVES if op.__name__ not in tested]
    assert not missing


def test_user_function_with_fdiff_goes_through_the_generic_rule():
    class cube(sp.Function):
        def fdiff(self, argindex=1):
            return 3 * self.args[0] ** 2

        def _numpycode(self, printer):
            return f"({printer._print(self.args[0])})**3"

    module = bp.compile(cube(x * u), wrt=[x], inputs=[u], name="cube").load()
    g = module.grad(x=1.5, u=np.array([1.0, 2.0]))[0]
    assert g == pytest.approx(3 * 1.5 ** 2 * 1 + 3 * 3.0 ** 2 * 2)


def test_undefined_function_is_refused_with_what_to_add():
    f = sp.Function("f")
    with pytest.raises(bp.errors.UnsupportedFunctionError, match="fdiff"):
        bp.compile(f(x) * y, wrt=[x], name="undefined")


def test_function_without_numpy_form_is_refused():
    class noprint(sp.Function):
        def fdiff(self, argindex=1):
            return sp.cos(self.args[0])

    with pytest.raises(bp.errors.UnsupportedFunctionError, match="_numpycode"):
        bp.compile(noprint(x), wrt=[x], name="noprint")
