"""The graph IR and the passes around it: sharing, folding, activity, deep graphs."""

import numpy as np
import pytest
import sympy as sp
from sympy.core.cache import clear_cache

import backpropc as bp
from backpropc.graph import SYMBOL, Graph
from backpropc.model import lower
from backpropc.reverse import active_nodes

x, y, w, b = sp.symbols("x y w b")


def chain(depth):
    """x_{k+1} = sin(w_k*x_k + x_k) as ONE expression: its printed tree has ~2**depth nodes."""
    clear_cache()  # no equal-but-not-identical chain from another test, compared level by level
    ws = sp.symbols(f"w0:{depth}")
    e = x
    for k in range(depth):
        e = sp.sin(ws[k] * e + e)
    return e, list(ws)


def test_one_node_per_distinct_subexpression():
    e, ws = chain(30)
    program = lower(bp.Model("chain", [], e, ws, [x]))
    # per level: w_k, w_k*x_k, w_k*x_k + x_k, sin(...); plus the leaf x
    assert len(program.graph) == 4 * 30 + 1


def test_smart_constructors_fold_constants_zero_one_and_negation():
    g = Graph()
    a, c = g.symbol(x), g.symbol(y)
    zero, one, two = g.const(0), g.const(1), g.const(2)
    assert g.add(a, zero) == a
    assert g.mul(a, one) == a
    assert g.mul(a, zero) == zero
    assert g.pow(a, one) == a
    assert g.mul(g.const(-1), g.mul(g.const(-1), a)) == a
    assert g.number(g.add(two, g.const(sp.Rational(1, 2)))) == sp.Rational(5, 2)
    assert g.mul(a, c) == g.mul(c, a)  # commutative ops are canonical
    assert g.add(a, a) == g.mul(two, a)
    assert g.apply(sp.sin, zero) == zero


def test_step_names_are_kept_and_steps_share_nodes():
    z, h = sp.symbols("z h")
    model = bp.Model("m", [(z, w * x + b), (h, sp.tanh(z) + sp.tanh(w * x + b))], h, [w, b], [x])
    program = lower(model)
    assert [s.name for s, _ in program.steps] == ["z", "h"]
    source = bp.compile(model).source
    assert source.count("np.tanh(z)") == 2  # forward() and value_and_grad() compute it once each
    assert "h = 2*np.tanh(z)" in source


def test_activity_analysis_skips_nodes_that_do_not_depend_on_wrt():
    z = sp.Symbol("z")
    model = bp.Model("m", [(z, sp.exp(x) * y)], z * w, [w], [x, y])
    program = lower(model)
    active = active_nodes(program)
    names = {program.graph[i].value: active[i] for i in range(len(active)) if program.graph[i].op == SYMBOL}
    assert names == {x: False, y: False, w: True}
    assert "x_bar" not in bp.compile(model).source and "z_bar" not in bp.compile(model).source


def test_products_are_differentiated_without_division():
    module = bp.compile(w * x * y * b, wrt=[w, x, y, b], name="product").load()
    assert module.grad(0.0, 0.0, 2.0, 3.0) == (0.0, 0.0, 0.0, 0.0)
    assert module.grad(0.0, 5.0, 2.0, 3.0)[0] == 30.0
    source = bp.compile(w * x * y * b, wrt=[w, x, y, b], name="product").source
    backward = source.split("# backward pass")[1].split("\n", 1)[1].split("return")[0]
    assert "/" not in "".join(line.split("#")[0] for line in backward.splitlines())


def test_thousand_level_chain_compiles_and_passes_a_directional_check():
    e, ws = chain(1000)
    compiled = bp.compile(e, wrt=ws, inputs=[x], name="chain")
    assert compiled.ops["value_and_grad"] <= 3 * compiled.ops["forward"]
    module = compiled.load()
    rng = np.random.default_rng(0)
    w0, xs = rng.uniform(-0.3, 0.3, 1000), rng.uniform(0.5, 1.0, 3)
    direction, h = rng.normal(size=1000), 1e-6
    _, grads = module.value_and_grad(*w0, xs)
    slope = (np.sum(module.forward(*(w0 + h * direction), xs))
             - np.sum(module.forward(*(w0 - h * direction), xs))) / (2 * h)
    assert np.dot(grads, direction) == pytest.approx(slope, rel=1e-5, abs=1e-9)


def test_a_sum_takes_out_the_coefficients_its_terms_share():
    """SymPy spreads numbers into sums (s/4 - s/8 as x0/4 + x1/4 - ...): terms with one
    coefficient (up to sign) are summed before it multiplies, and an integer content comes out
    (3*x0 + 6*x1 is 3*(x0 + 2*x1)), so the sum of the x's is computed once for every place it
    is scaled. The gradients stay exact."""
    from oracle import directional_derivatives, sympy_gradient
    xs = sp.symbols("x0:6")
    s, q = sp.Add(*xs), sp.Add(*[v ** 2 for v in xs])
    loss = (s / 4 - 1) ** 2 + (q / 8 - s / 4 + 2) ** 2 + (3 * xs[0] + 6 * xs[1] - 1) ** 2 + (6 * xs[0] + 12 * xs[1]) ** 2
    assert loss.args and "x0/4" in str(loss)  # SymPy gave every term its own coefficient
    model = bp.Model("m", loss=loss, wrt=list(xs), inputs=[])
    compiled = bp.compile(model)
    forward = compiled.source.split("def forward")[1].split("\ndef ")[0]
    assert forward.count("x0 + x1 + x2 + x3 + x4 + x5") == 1 and "x0/4" not in forward
    assert forward.count("x0 + 2*x1") == 1 and "6*x1" not in forward and "12*x1" not in forward
    module = compiled.load()
    rng = np.random.default_rng(3)
    point = {f"x{k}": v for k, v in enumerate(rng.uniform(-2, 2, 6))}
    value, grads = module.value_and_grad(**point)
    assert value == pytest.approx(float(loss.subs({xs[k]: point[f"x{k}"] for k in range(6)})), rel=1e-12)
    np.testing.assert_allclose(grads, sympy_gradient(model, model.wrt, point), rtol=1e-12)
    differences = directional_derivatives(module, point, grads, rng)
    np.testing.assert_allclose([d[0] for d in differences], [d[1] for d in differences], rtol=1e-6)


def test_an_error_signal_takes_out_the_factors_its_contributions_share():
    """Every user of q sends q_bar a product with its own signal: in r = q*(3 - 2*q) + t both
    contributions (3 - 2*q)*r_bar and -2*q*r_bar hold r_bar, so q_bar is r_bar times their
    sum, one product by r_bar; where only some contributions share a factor (l1 in the two
    links of an arm) it comes out of those. A signal that two users read (s_bar, sent by both
    terms of s = a + b) is not taken apart. Checked against sympy.diff, finite differences and
    sympy.hessian."""
    from oracle import directional_derivatives, sympy_gradient
    q, t, l1, l2, a, c = sp.symbols("q t l1 l2 a c")
    r, s = sp.symbols("r s")
    model = bp.Model("m", steps=[(r, q * (3 - 2 * q) + t), (s, a + q)],
                     loss=r ** 2 + l1 * sp.cos(q) * c + l1 * sp.sin(q) * a + l2 * sp.cos(s) + 7 * s ** 2,
                     wrt=[q, a, l1], inputs=[t, c, l2])
    compiled = bp.compile(model, derivatives=("grad", "hessian"))
    backward = compiled.source.split("def value_and_grad(")[1].split("\ndef ")[0].split("# backward pass")[1]
    q_bar = next(line for line in backward.splitlines() if line.strip().startswith("q_bar"))
    assert q_bar.count("r_bar") == 1 and q_bar.count("l1") == 1, q_bar
    s_bar = next(line for line in backward.splitlines() if line.strip().startswith("s_bar"))
    assert "_sum_like" not in s_bar  # s_bar is one named value, read whole by a_bar and q_bar
    module = compiled.load()
    rng = np.random.default_rng(7)
    point = {"q": 0.3, "a": -0.7, "l1": 1.3, "t": rng.uniform(-1, 1, 4), "c": rng.uniform(-1, 1, 4),
             "l2": rng.uniform(0.5, 1.5, 4)}
    value, grads = module.value_and_grad(**point)
    np.testing.assert_allclose(grads, sympy_gradient(model, model.wrt + model.inputs, point), rtol=1e-12)
    differences = directional_derivatives(module, point, grads, rng)
    np.testing.assert_allclose([d[0] for d in differences], [d[1] for d in differences], rtol=1e-6)
    loss = (r ** 2 + l1 * sp.cos(q) * c + l1 * sp.sin(q) * a + l2 * sp.cos(s) + 7 * s ** 2).subs(
        {r: q * (3 - 2 * q) + t, s: a + q})
    theta = module.pack(point["q"], point["a"], point["l1"])
    exact = np.zeros((3, 3))
    for k in range(4):
        example = {t: point["t"][k], c: point["c"][k], l2: point["l2"][k], q: 0.3, a: -0.7, l1: 1.3}
        exact += np.array(sp.hessian(loss, (q, a, l1)).subs(example), dtype=float)
    np.testing.assert_allclose(module.hessian_flat(theta, point["t"], point["c"], point["l2"]), exact, rtol=1e-10)
