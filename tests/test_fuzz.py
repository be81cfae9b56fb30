"""Fuzzing: random models over the whole primitive set, with shared subexpressions, named steps,
hostile names (of symbols, steps and models), broadcast shapes and both float widths.

CI runs a short profile; the long campaign (docs/robustness.md) is

    python -m pytest tests/test_fuzz.py -q -p no:cacheprovider --hypothesis-profile=campaign
"""

import ast
import os
import subprocess
import sys
import tempfile
import warnings

import numpy as np
import pytest
import sympy as sp
from hypothesis import event, given, settings
from hypothesis import strategies as st
from oracle import assert_close, sympy_gradient

import backpropc as bp
from backpropc.errors import BackpropcError

NAMES = ["w", "b", "lambda", "print", "np", "x_bar", "c0", "shape", "L", "__class__", "α", "a b",
         "1st", "__import__('os').system('touch PWNED')", "value_and_grad", "_sum_like", "ARGS"]
# Text that ends strings, comments or docstrings, or that Python or a terminal reads specially:
# user text of every kind (symbol, step, model, dimension and function names) is drawn from it.
PAYLOADS = ['"""', "'''", "\\", 'q"""\nimport os; os.system("touch PWNED")\n"""',
            "q')\nimport os; os.system('touch PWNED')\n#", 'n", __import__("os").system("touch PWNED"), "',
            "a\rb", "a\u2028b", "a\x85b", "a\x0cb", "\x1b[2J", "\u202e", "# -*- coding: rot13 -*-",
            "\u0303", "\u1e7d", "\ufb01", "fi", "\uff58", "x\\", "{name}", "%s"]
HOSTILE_NAMES = NAMES + PAYLOADS

# Every function, composed so that each argument stays in its domain for any real input.
UNARY = [
    sp.exp, sp.sin, sp.cos, sp.tanh, sp.atan, sp.asinh, sp.sinh, sp.erf, sp.erfc, sp.Abs, sp.sign,
    sp.floor, sp.ceiling, sp.Heaviside, bp.sigmoid, bp.softplus, bp.relu, bp.expm1,
    lambda a: sp.cosh(a / 4), lambda a: sp.log(1 + a ** 2), lambda a: sp.sqrt(a ** 2 + 1),
    lambda a: bp.log1p(a ** 2), lambda a: sp.tan(sp.atan(a) / 2), lambda a: sp.asin(sp.tanh(a) / 2),
    lambda a: sp.acos(sp.tanh(a) / 2), lambda a: sp.atanh(sp.tanh(a) / 2), lambda a: sp.acosh(2 + a ** 2),
    lambda a: 1 / (2 + sp.sin(a)), lambda a: (1 + a ** 2) ** sp.Rational(-3, 2), lambda a: -a,
    lambda a: a ** 3, lambda a: sp.log(sp.exp(a) + 1), lambda a: 1 / (1 + sp.exp(-a)),
    lambda a: sp.Piecewise((sp.log(a), a > 1), (a - 1, True)),
    lambda a: sp.Piecewise((sp.sqrt(a), a > 0), (-a, True)),
]
BINARY = [
    lambda a, c: a + c, lambda a, c: a - c, lambda a, c: a * c, lambda a, c: a / (1 + c ** 2),
    lambda a, c: sp.atan2(a, 1 + c ** 2), sp.Max, sp.Min, bp.logsumexp,
    lambda a, c: (1 + a ** 2) ** sp.tanh(c), lambda a, c: sp.log(sp.exp(a) + sp.exp(c)),
    lambda a, c: sp.Piecewise((a, a > c), (c * a, True)), lambda a, c: 2 ** sp.tanh(a * c),
]


@st.composite
def models(draw):
    names = draw(st.lists(st.sampled_from(HOSTILE_NAMES), min_size=4, max_size=4, unique=True))
    params = [sp.Symbol(n) for n in names[:2]]
    data = [sp.Symbol(n) for n in names[2:]]
    pool = params + data
    steps = []
    for i in range(draw(st.integers(1, 8))):
        if draw(st.booleans()):
            expr = draw(st.sampled_from(UNARY))(draw(st.sampled_from(pool)))
        else:
            expr = draw(st.sampled_from(BINARY))(draw(st.sampled_from(pool)), draw(st.sampled_from(pool)))
        if draw(st.booleans()):
            name = sp.Symbol(draw(st.sampled_from(HOSTILE_NAMES + [f"s{i}"])) + f"{i}")
            steps.append((name, expr))
            pool.append(name)
        else:
            pool.append(expr)
    loss = pool[-1] + params[0] * params[1] * draw(st.sampled_from(pool)) + params[0] ** 2 + params[1] ** 2
    return bp.Model(draw(st.sampled_from(["fuzz"] + PAYLOADS)), steps, loss, params, data)


def _point(module, rng, shapes, dtype):
    point = {}
    for i, name in enumerate(module.ARGS):
        shape = () if name in module.WRT else shapes[i % len(shapes)]
        point[name] = np.asarray(rng.uniform(-2, 2, shape), dtype=dtype)[()]
    return point


@given(model=models(), seed=st.integers(0, 2 ** 16),
       shapes=st.sampled_from([[()], [(3,)], [(2, 1), (1, 3)], [(4,), ()]]))
def test_fuzz(model, seed, shapes):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", bp.errors.UnusedWrtWarning)
            compiled = bp.compile(model, broadcast=True)  # data of shapes (2, 1) and (1, 3) on purpose
    except BackpropcError as exc:
        event(f"refused: {type(exc).__name__}")
        return  # a typed refusal is an allowed outcome; anything else fails the test
    source = compiled.source
    ast.parse(source)
    assert bp.compile(model, broadcast=True).source == source
    module = inert(compiled)
    rng = np.random.default_rng(seed)
    point = _point(module, rng, shapes, np.float64)
    with np.errstate(all="ignore"):
        value, grads = module.value_and_grad(**point)
    if not (np.isfinite(value) and all(np.all(np.isfinite(g)) for g in grads)):
        event("not finite at the drawn point: compiled and run only")
        return
    event("checked against sympy.diff and float32")
    for g in grads:
        assert np.shape(g) == ()
    args = model.wrt + model.inputs
    exact = sympy_gradient(model, args, {str(s): point[name] for s, name in zip(args, module.ARGS)})
    assert_close(grads, exact, 1e-7, atol=1e-9, what=source)
    with np.errstate(all="ignore"):
        value32, grads32 = module.value_and_grad(**{k: np.float32(v) if np.ndim(v) == 0 else v.astype(np.float32)
                                                    for k, v in point.items()})
    assert all(np.asarray(g).dtype == np.float32 for g in grads32)


def inert(compiled):
    """The compiled module, imported and called once in an empty folder, which it must leave
    empty: no user text may run as code."""
    here = os.getcwd()
    with tempfile.TemporaryDirectory() as folder:
        os.chdir(folder)
        try:
            module = compiled.load()
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                shapes = getattr(module, "SHAPES", {})  # a named dimension is 3
                module.value_and_grad(**{a: np.full([3 if isinstance(d, str) else d for d in shapes.get(a, ())], 0.5)
                                         for a in module.ARGS})
            assert not os.listdir(folder), f"the module created {os.listdir(folder)}"
        finally:
            os.chdir(here)
    return module


@pytest.mark.skipif(sys.platform == "win32", reason="uses a subprocess per model")
@settings(max_examples=10)
@given(model=models())
def test_fuzzed_modules_pass_ruff(model):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", bp.errors.UnusedWrtWarning)
            source = bp.compile(model).source
    except BackpropcError:
        return
    run = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--isolated", "-"],
                         input=source, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout


# ---- hostile text in the places the core writes (dimension and function names) -------------
def _hostile_function(name):
    """A user function whose class name is `name` (it reaches docstrings and `# from` comments)."""
    return type(name, (sp.Function,), {
        "fdiff": lambda self, argindex=1: sp.cos(self.args[0]),
        "_numpycode": lambda self, printer: f"np.sin({printer._print(self.args[0])})"})


@pytest.mark.parametrize("place", ["dimension", "function"])
@pytest.mark.parametrize("text", PAYLOADS, ids=ascii)
def test_hostile_text_in_dimension_and_function_names(place, text):
    """Every dimension name and function class name reaches the module as inert text, or the
    model is refused with a typed error."""
    w, x = sp.symbols("w x")
    if place == "dimension":
        n = sp.Symbol(text, integer=True, positive=True)
        A = sp.MatrixSymbol("A", n, 1)
        model = bp.Model("m", [], bp.sum(A.T * A) * w ** 2, [w], [A])
    else:
        model = bp.Model("m", [], _hostile_function(text)(w * x), [w], [x])
    try:
        compiled = bp.compile(model)
    except BackpropcError:
        return
    ast.parse(compiled.source)
    module = inert(compiled)
    if place == "function":
        assert_close(module.grad(0.3, 2.0), [2.0 * np.cos(0.6)], 1e-12)
