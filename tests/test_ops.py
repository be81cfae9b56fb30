"""Every op record: its reverse rule (VJP) and forward rule (JVP) against sympy.diff, its NumPy
form against the mpmath reference, and its matrix rules against finite differences.

Each rule is applied to a graph holding the bare primitive, the nodes it returns are printed
as NumPy code (the same printer generated modules use) and evaluated at random points of the
primitive's domain.
"""

import mpmath
import numpy as np
import pytest
import sympy as sp
from sympy.codegen.cfunctions import hypot

from backpropc import runtime
from backpropc.emit import IRPrinter
from backpropc.forward import tangents
from backpropc.graph import Graph
from backpropc.ops import RECORDS, REGISTRY, Ref, supported_functions
from backpropc.ops import matrix as M

NAMESPACE = runtime.namespace()
RNG = np.random.default_rng(20261201)

# The number of arguments each primitive is tested with (and fixed arguments, as constants).
ARITY = {sp.Add: 3, sp.Mul: 3, sp.Max: 3, sp.Min: 3, sp.And: 2, sp.Or: 2, sp.ITE: 3,
         sp.atan2: 2, sp.beta: 2, sp.binomial: 2, sp.Pow: 2, hypot: 2, sp.Mod: 2}
FIXED = {sp.polygamma: {0: 1}, sp.Heaviside: {1: sp.S.Half}}
SCALAR_RECORDS = [r for r in RECORDS.values() if r.kind not in ("matrix", "array", "lanes") and r.op is not sp.Piecewise]
BOOLEAN = (sp.And, sp.Or, sp.Not, sp.ITE)


def evaluate(graph: Graph, node: int, values: dict):
    """The value of a graph node at `values` ({symbol: number}), through the NumPy printer."""
    names = {graph.find_symbol(s): s.name for s in values if graph.find_symbol(s) is not None}
    code = IRPrinter(graph).print(node, names)
    return eval(code, dict(NAMESPACE), {s.name: v for s, v in values.items()})


def primitive(record):
    """(graph, output node, argument symbols, argument nodes) of the bare primitive."""
    graph = Graph(REGISTRY)
    n = ARITY.get(record.op, record.arity or (2 if record.op.__name__ in ("Heaviside", "polygamma") else 1))
    if issubclass(record.op, sp.core.relational.Relational):
        n = 2
    symbols = sp.symbols(f"a0:{n}", real=True)
    nodes = [graph.const(FIXED[record.op][k]) if k in FIXED.get(record.op, {}) else graph.symbol(s)
             for k, s in enumerate(symbols)]
    return graph, graph.apply(record.op, *nodes), symbols, nodes


def point(record, symbols):
    low, high = record.domain
    values = {s: float(RNG.uniform(low, high)) for s in symbols}
    if record.op is sp.ITE:
        values = {symbols[0]: True, symbols[1]: 0.3, symbols[2]: -0.4}
    elif record.op in BOOLEAN:
        values = {s: bool(RNG.integers(2)) for s in symbols}
    return values


def sympy_form(record, symbols):
    args = [FIXED[record.op][k] if k in FIXED.get(record.op, {}) else s for k, s in enumerate(symbols)]
    return record.op(*args)


def exact_derivative(record, expr, s, symbols, values) -> float:
    """d expr / d s at values by sympy.diff; where SymPy leaves it unevaluated (Mod, frac), a
    central difference of the mpmath reference at 40 digits (the functions are linear there)."""
    derivative = sp.diff(expr, s)
    if not derivative.has(sp.Derivative):
        return float(derivative.subs(values).evalf(30))
    with mpmath.workdps(40):
        h = mpmath.mpf(10) ** -15
        at = [mpmath.mpf(values[v]) for v in symbols]
        k = symbols.index(s)
        up, down = list(at), list(at)
        up[k] += h
        down[k] -= h
        return float((record.mpmath(*up) - record.mpmath(*down)) / (2 * h))


def test_every_primitive_of_the_spec_has_a_record():
    spec = ["exp", "log", "sin", "cos", "tan", "asin", "acos", "atan", "atan2", "sinh", "cosh", "tanh",
            "asinh", "acosh", "atanh", "erf", "erfc", "Abs", "sign", "Max", "Min", "Heaviside",
            "Piecewise", "floor", "ceiling", "loggamma", "gamma", "polygamma", "beta", "cot", "sec",
            "csc", "coth", "acot", "factorial", "binomial", "sigmoid", "softplus", "relu",
            "logsumexp", "log1p", "expm1"]
    assert not set(spec) - set(supported_functions())


@pytest.mark.parametrize("record", list(RECORDS.values()), ids=lambda r: r.name)
def test_every_record_has_both_rules_and_a_numpy_form(record):
    assert callable(record.vjp) and callable(record.jvp)
    assert record.code or record.op in (sp.Add, sp.Mul, sp.Pow, sp.Piecewise)
    if record.kind not in ("matrix", "array", "lanes"):  # tests/test_arrays.py, tests/test_reroll.py
        assert record.mpmath is not None


@pytest.mark.parametrize("record", SCALAR_RECORDS, ids=lambda r: r.name)
def test_rules_match_sympy_diff(record):
    graph, out, symbols, nodes = primitive(record)
    wrt = [s for s, n in zip(symbols, nodes) if graph[n].op == "symbol"]
    expr = sympy_form(record, symbols)
    one = Ref(graph, graph.const(1))
    needed = [graph[n].op == "symbol" for n in nodes]
    vjp = record.vjp(one, Ref(graph, out), [Ref(graph, n) for n in nodes], needed)
    directions = sp.symbols(f"t0:{len(wrt)}", real=True)
    seeds = {graph.symbol(s): graph.symbol(t) for s, t in zip(wrt, directions)}
    jvp = tangents(graph, [out], seeds).get(out)
    for _ in range(5):
        values = point(record, symbols)
        if record.op in BOOLEAN or record.zero_derivative:
            assert all(c is None for c in vjp) and jvp is None
            return
        direction = {t: float(RNG.standard_normal()) for t in directions}
        exact = [exact_derivative(record, expr, s, symbols, values) for s in wrt]
        got = [evaluate(graph, c.id, values) for c, n in zip(vjp, needed) if n]
        np.testing.assert_allclose(got, exact, rtol=1e-11, atol=1e-13, err_msg=f"VJP of {record.name}")
        tangent = evaluate(graph, jvp, {**values, **direction})
        expected = sum(e * direction[t] for e, t in zip(exact, directions))
        np.testing.assert_allclose(tangent, expected, rtol=1e-11, atol=1e-13, err_msg=f"JVP of {record.name}")


@pytest.mark.parametrize("record", [r for r in SCALAR_RECORDS if r.op not in BOOLEAN
                                    and r.kind in ("elementwise", "arithmetic")], ids=lambda r: r.name)
def test_numpy_form_matches_mpmath(record):
    graph, out, symbols, nodes = primitive(record)
    for _ in range(20):
        values = point(record, symbols)
        args = [FIXED[record.op][k] if k in FIXED.get(record.op, {}) else values[s] for k, s in enumerate(symbols)]
        with mpmath.workdps(30):
            want = float(record.mpmath(*[mpmath.mpf(float(a)) for a in args]))
        got = evaluate(graph, out, values)
        assert abs(got - want) <= 1e-13 * max(1.0, abs(want)), (record.name, args, got, want)


def test_piecewise_rules_differentiate_the_branch_taken():
    graph = Graph(REGISTRY)
    x, y = sp.symbols("x y", real=True)
    nx, ny = graph.symbol(x), graph.symbol(y)
    branch = graph.mul(nx, nx)
    out = graph.piecewise((branch, graph.apply(sp.StrictGreaterThan, nx, graph.const(0))),
                          (ny, graph.const(sp.true)))
    t, u = sp.symbols("t u")
    jvp = tangents(graph, [out], {nx: graph.symbol(t), ny: graph.symbol(u)})[out]
    vjp = RECORDS[sp.Piecewise].vjp(Ref(graph, graph.const(1)), Ref(graph, out),
                                    [Ref(graph, a) for a in graph[out].args], [True, False, True, False])
    for xv, dx_exact, dy_exact in ((0.7, 1.4, 0.0), (-0.7, 0.0, 1.0)):
        values = {x: xv, y: 0.3}
        assert evaluate(graph, jvp, {**values, t: 2.0, u: 3.0}) == pytest.approx(2 * dx_exact + 3 * dy_exact)
        assert evaluate(graph, vjp[0].id, values) == pytest.approx(1.0 if xv > 0 else 0.0)
        assert evaluate(graph, vjp[2].id, values) == pytest.approx(dy_exact)


MATRIX_CASES = [  # (name, build(graph, X, Y) -> node, shapes of X and Y)
    ("matmul", lambda g, X, Y: g.apply(M.matmul, X, Y), (3, 2), (2, 4)),
    ("transpose", lambda g, X, Y: g.apply(M.transpose, X), (3, 2), None),
    ("trace", lambda g, X, Y: g.apply(M.trace, X), (3, 3), None),
    ("inverse", lambda g, X, Y: g.apply(M.inverse, X), (3, 3), None),
    ("det", lambda g, X, Y: g.apply(M.det, X), (3, 3), None),
    ("logdet", lambda g, X, Y: g.apply(M.logdet, X), (3, 3), None),
    ("sum_entries", lambda g, X, Y: g.apply(M.sum_entries, X), (3, 2), None),
    ("entry", lambda g, X, Y: g.apply(M.entry, X, g.const(1), g.const(0)), (3, 2), None),
]


@pytest.mark.parametrize("case", MATRIX_CASES, ids=lambda c: c[0])
def test_matrix_forward_rules_match_finite_differences(case):
    name, build, x_shape, y_shape = case
    graph = Graph(REGISTRY)
    X = sp.MatrixSymbol("X", *x_shape)
    Y = sp.MatrixSymbol("Y", *y_shape) if y_shape else None
    nx = graph.symbol(X)
    ny = graph.symbol(Y) if Y is not None else None
    out = build(graph, nx, ny)
    DX = sp.MatrixSymbol("DX", *x_shape)
    seeds = {nx: graph.symbol(DX)}
    if Y is not None:
        DY = sp.MatrixSymbol("DY", *y_shape)
        seeds[ny] = graph.symbol(DY)
    jvp = tangents(graph, [out], seeds).get(out)
    values = {X: RNG.standard_normal(x_shape) + 3 * np.eye(*x_shape)}
    direction = {DX: RNG.standard_normal(x_shape)}
    if Y is not None:
        values[Y] = RNG.standard_normal(y_shape)
        direction[DY] = RNG.standard_normal(y_shape)
    h = 1e-6
    moved = [{s: v + sign * h * direction[DX if s is X else DY] for s, v in values.items()} for sign in (1, -1)]
    estimate = (evaluate(graph, out, moved[0]) - evaluate(graph, out, moved[1])) / (2 * h)
    np.testing.assert_allclose(evaluate(graph, jvp, {**values, **direction}), estimate, rtol=1e-6, atol=1e-8)


def test_a_runtime_helper_leaves_out_its_blocks_for_what_a_module_lacks():
    """A block marked `[with X]` goes from a module without X, with the helpers only it needed;
    every helper stays valid Python whatever is left out, and no mark reaches a module."""
    import ast
    import itertools

    marks = {m.group(1) for name in runtime._helpers() for line in runtime.source_of(name).splitlines()
             for m in [runtime.ONLY_WITH.search(line)] if m} | {"data", "slices", "gathers", "checks"}
    assert {"data", "slices", "gathers", "checks"} <= marks
    for r in range(len(marks) + 1):
        for lacks in map(frozenset, itertools.combinations(sorted(marks), r)):
            text = runtime.source(list(runtime._helpers()), lacks)
            ast.parse(text)
            assert "[with " not in text
    assert runtime.closure(["_lane_accumulate"], frozenset({"data"})) == ["_lane_accumulate"]
    assert {"_lane_lazy", "_lane_placed"} <= set(runtime.closure(["_lane_accumulate"]))
    lean = runtime.source_of("_lane_accumulate", frozenset({"data", "slices"}))
    assert "_lane_lazy" not in lean and "start:stop:step" not in lean and "np.bincount" in lean
    assert "for check in checks" not in runtime.source_of("_checked", frozenset({"checks"}))
    assert "8192" not in runtime.source_of("_lane_dot", frozenset({"long"}))


@pytest.mark.parametrize("size", [10, 8192, 8193, 10000, 10001, 3 * 8192, 3 * 8192 + 5])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_a_long_dot_product_in_rows_is_the_dot_product(size, dtype):
    """_lane_dot takes a 1-D dot of more than 10,000 entries (where OpenBLAS would start its
    threads) in rows of 8192 (one BLAS thread each) and a ragged rest, a shorter one at once."""
    namespace = runtime.namespace(["_lane_dot"])
    rng = np.random.default_rng(size)
    a, b = rng.standard_normal(size).astype(dtype), rng.standard_normal(size).astype(dtype)
    got = namespace["_lane_dot"](a, b)
    assert got.dtype == dtype
    np.testing.assert_allclose(got, np.dot(a.astype(float), b.astype(float)), rtol=1e-4 if dtype == np.float32 else 1e-12)
    batch = namespace["_lane_dot"](np.stack([a, b]), b)  # a batch of vectors: one vecdot per row
    np.testing.assert_allclose(batch, [got, np.dot(b, b)], rtol=1e-4 if dtype == np.float32 else 1e-12)
