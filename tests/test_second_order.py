"""Second derivatives, Jacobians and flat vectors: Hessian-vector products and Hessians against
sympy.hessian and central differences of the gradient, Jacobians against
sympy.Matrix.jacobian, the sparsity of banded Hessians, and what SciPy calls."""

import re

import mpmath
import numpy as np
import pytest
import sympy as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from oracle import MPMATH, random_point, substituted_loss, sympy_gradient, written_out_point
from test_examples import NAMES, load_example
from test_properties import models

import backpropc as bp
from backpropc.errors import ModelError, NonScalarLossError


def sympy_hessian(model: bp.Model, point: dict, reduction="sum"):
    """The Hessian of the objective by sympy.diff twice, summed (or averaged) over the examples
    (an indexed model with every Sum written out)."""
    if any(isinstance(a, sp.IndexedBase) for a in model.wrt + list(model.inputs)):
        model, point, _ = written_out_point(model, point)
    args = model.wrt + list(model.inputs)
    real = {a: sp.Dummy(str(a), real=True) for a in args}
    loss = substituted_loss(model).xreplace(real)
    entries = [[sp.diff(loss, real[a], real[b]) for b in model.wrt] for a in model.wrt]
    entries = [[e.replace(lambda x: isinstance(x, sp.Derivative), lambda x: 0) for e in row] for row in entries]
    f = sp.lambdify([real[a] for a in args], entries, modules=[MPMATH, "mpmath"])
    arrays = np.broadcast_arrays(*[np.asarray(point[str(a)], dtype=float) for a in args])
    total = np.zeros((len(model.wrt), len(model.wrt)))
    with mpmath.workdps(30):
        for values in zip(*[a.ravel() for a in arrays]):
            total += np.array([[float(v) for v in row] for row in f(*[mpmath.mpf(float(v)) for v in values])])
    return total / arrays[0].size if reduction == "mean" else total


def gradient_differences(module, point, direction, h=1e-6):
    """Central differences of the flat gradient along `direction` (a flat vector)."""
    data = [point[a] for a in module.ARGS if a not in module.WRT]
    theta = module.pack(*[point[w] for w in module.WRT])
    step = h * max(1.0, float(np.max(np.abs(theta))))
    up = module.value_and_grad_flat(theta + step * direction, *data)[1]
    down = module.value_and_grad_flat(theta - step * direction, *data)[1]
    return (up - down) / (2 * step)


def numeric_shapes(model) -> bool:
    """Whether every wrt symbol has a numeric shape (flat vectors and Hessians need them)."""
    return all(all(d.is_Integer for d in w.shape) for w in model.wrt
               if isinstance(w, (sp.MatrixSymbol, sp.IndexedBase)))


@pytest.fixture(scope="module", params=NAMES)
def second_order_example(request):
    model, domains = load_example(request.param)
    derivatives = ("grad", "hvp", "hessian") if numeric_shapes(model) else ("grad", "hvp")
    return request.param, model, bp.compile(model, derivatives=derivatives), domains


@pytest.mark.parametrize("batch", [None, 4])
def test_hvp_and_hessian_of_every_example(second_order_example, batch):
    name, model, compiled, domains = second_order_example
    module = compiled.load()
    rng = np.random.default_rng(sum(map(ord, name)))
    point = random_point(module, rng, batch, domains)
    if not numeric_shapes(model):  # a named dimension: the structured forms only
        directions = [rng.standard_normal(np.shape(point[w])) for w in module.WRT]
        _, _, hv = module.hvp(*[point[a] for a in module.ARGS], *directions)
        h = 1e-6
        up = module.grad(**{**point, **{w: point[w] + h * d for w, d in zip(module.WRT, directions)}})
        down = module.grad(**{**point, **{w: point[w] - h * d for w, d in zip(module.WRT, directions)}})
        for got, u, dn in zip(hv, up, down):
            np.testing.assert_allclose(got, (u - dn) / (2 * h), rtol=1e-5, atol=1e-6)
        return
    data = [point[a] for a in module.ARGS if a not in module.WRT]
    theta = module.pack(*[point[w] for w in module.WRT])
    p = rng.standard_normal(theta.shape)
    value, grads = module.value_and_grad(**point)
    hv_value, hv_grads, _ = module.hvp(*[point[a] for a in module.ARGS], *module.unpack(p))
    assert hv_value == pytest.approx(value, rel=1e-12)
    for g, h in zip(grads, hv_grads):
        np.testing.assert_allclose(h, g, rtol=1e-12, atol=1e-14)
    hv = module.hvp_flat(theta, p, *data)
    np.testing.assert_allclose(hv, gradient_differences(module, point, p), rtol=1e-5, atol=1e-6)
    hessian = module.hessian_flat(theta, *data)
    assert hessian.shape == (theta.size, theta.size) and np.array_equal(hessian, hessian.T)
    np.testing.assert_allclose(hessian @ p, hv, rtol=1e-9, atol=1e-9)
    if not any(isinstance(a, sp.MatrixSymbol) for a in model.wrt + list(model.inputs)) and len(model.wrt) <= 6:
        np.testing.assert_allclose(hessian, sympy_hessian(model, point), rtol=1e-9, atol=1e-9)


def test_hvp_costs_at_most_three_value_and_gradient_passes(second_order_example):
    compiled = second_order_example[2]
    assert compiled.ops["hvp"] <= 3 * compiled.ops["value_and_grad"]


def test_the_tangent_of_a_sum_takes_a_shared_tangent_once():
    """c2 = c0 + c0*w1: its tangent is c0_dot*(1 + w1) + c0*w1_dot (1 + w1 is what c0_bar
    multiplies the signal by), not c0_dot + c0_dot*w1 + c0*w1_dot."""
    x, w0, w1 = sp.symbols("x w0 w1")
    e = sp.sin(w0 * x)
    source = bp.compile(sp.sin(e + e * w1), wrt=[w0, w1], inputs=[x], derivatives=("hvp",)).source
    hvp = source.split("def hvp(")[1].split("\ndef ")[0]
    shared = re.search(r"= (c\d+) \+ \1\*w1\n", hvp).group(1)  # the forward pass's c0
    uses = [line for line in hvp.splitlines() if f"{shared}*w1_dot" in line]
    assert uses, hvp
    for line in uses:
        assert len(re.findall(rf"\b{shared}_dot\b", line)) == 1, line


def test_a_product_rules_terms_that_share_a_tangent_up_to_a_number_are_factored():
    """sigmoid's c3 = c0*(1 - c0): its tangent c0_dot*(1 - c0) + c0*(-c0_dot) is written
    c0_dot*((1 - c0) - c0), one product of the tangent, not two."""
    z, t = sp.symbols("z t")
    compiled = bp.compile((bp.sigmoid(z) - t) ** 2, wrt=[z], inputs=[t], derivatives=("hvp",))
    tangent_pass = compiled.source.split("# tangent pass")[1].split("return")[0]
    dot = re.search(r"(c\d+_dot) = ", tangent_pass).group(1)  # the tangent of sigmoid(z)
    last = tangent_pass.strip().splitlines()[-1]
    assert len(re.findall(rf"\b{dot}\b", last)) == 2, last  # once per term of z_bar = c1_bar*c3
    assert compiled.ops["hvp"] < 2 * compiled.ops["value_and_grad"]


def rosenbrock(n):
    xs = sp.symbols(f"x0:{n}")
    return bp.Model(f"rosenbrock{n}", [], sum(100 * (xs[i + 1] - xs[i] ** 2) ** 2 + (1 - xs[i]) ** 2
                                             for i in range(n - 1)), list(xs), [])


@pytest.mark.parametrize("n", [10, 100, 1000])
def test_a_banded_hessian_costs_three_products_whatever_its_size(n):
    model = rosenbrock(n)
    compiled = bp.compile(model, derivatives=("hessian",))
    module = compiled.load()
    assert compiled.ops["hessian_products"] == 3  # tridiagonal: three colours
    assert len(module.HESSIAN_ROWS) == 3 * n - 2
    theta = np.linspace(-1.2, 1.0, n)
    rows, cols, values = module.hessian_coo(*theta)
    dense = module.hessian_flat(theta)
    np.testing.assert_array_equal(dense[rows, cols], values)
    assert np.count_nonzero(dense) <= 3 * n - 2
    if n == 10:
        np.testing.assert_allclose(dense, sympy_hessian(model, dict(zip(module.ARGS, theta))), rtol=1e-12)
    p = np.cos(np.arange(n))
    np.testing.assert_allclose(dense @ p, module.hvp_flat(theta, p), rtol=1e-12, atol=1e-9)


def test_a_hessian_of_few_colours_is_straight_line_code_exactly_symmetric():
    """Powell's singular function: the four colours' tangent sweeps written out with the
    directions' 0s and 1s folded in, each entry computed once for both triangles, equal to
    sympy.hessian; on a batch it is summed over the examples."""
    x = sp.symbols("x0:4")
    f = (x[0] + 10 * x[1]) ** 2 + 5 * (x[2] - x[3]) ** 2 + (x[1] - 2 * x[2]) ** 4 + 10 * (x[0] - x[3]) ** 4
    compiled = bp.compile(f, wrt=list(x), derivatives=("hessian",))
    body = compiled.source.split("\ndef hessian_flat(")[1].split("\ndef ")[0]
    assert "hvp_flat" not in body and "_hessian_values(" in body
    assert compiled.ops["hessian"] < compiled.ops["hvp"]  # all of it for less than one product
    module = compiled.load()
    theta = np.array([3.0, -1.0, 0.5, 1.0])
    dense = module.hessian_flat(theta)
    assert np.array_equal(dense, dense.T)
    exact = np.array(sp.hessian(f, x).xreplace(dict(zip(x, theta))), dtype=float)
    np.testing.assert_allclose(dense, exact, rtol=1e-13)
    np.testing.assert_allclose(module.hessian(*theta.tolist()), exact, rtol=1e-13)  # Python floats
    a, t = sp.symbols("a t")
    model = bp.Model("fit", [], (x[0] * sp.exp(-a * t) - x[1]) ** 2 * x[2] ** 2, [x[0], x[1], x[2], a], [t])
    batch = bp.compile(model, derivatives=("hessian",)).load()
    point = {"x0": 1.2, "x1": 0.3, "x2": -0.7, "a": 0.4, "t": np.linspace(0, 1, 5)}
    dense = batch.hessian_flat(np.array([1.2, 0.3, -0.7, 0.4]), point["t"])
    np.testing.assert_allclose(dense, sympy_hessian(model, point), rtol=1e-12)
    mean = bp.compile(model, derivatives=("hessian",), reduction="mean").load()
    np.testing.assert_allclose(mean.hessian_flat(np.array([1.2, 0.3, -0.7, 0.4]), point["t"]),
                               sympy_hessian(model, point, "mean"), rtol=1e-12)
    assert np.allclose(mean.hessian(1.2, 0.3, -0.7, 0.4, 0.5), batch.hessian(1.2, 0.3, -0.7, 0.4, 0.5))  # one example

def test_a_matrix_parameters_hessian_is_straight_line_code_too():
    """Logistic regression with a 1x3 weight matrix: each colour's direction is a matrix of 0s
    and 1s, whose entries fold away; the Hessian, summed over the batch, equals sympy.hessian of
    the model written out on explicit entries, for less than the work of one product."""
    W, x = sp.MatrixSymbol("W", 1, 3), sp.MatrixSymbol("x", 3, 1)
    b, t = sp.symbols("b t")
    model = bp.Model("logistic", [], sp.log(1 + sp.exp((W * x)[0, 0] + b)) - t * ((W * x)[0, 0] + b), [W, b], [x, t])
    compiled = bp.compile(model, derivatives=("hessian",))
    assert "hessian" in compiled.ops and compiled.ops["hessian"] < compiled.ops["hvp"]
    assert "= _entries(" not in compiled.source.split("def hessian_values(")[1].split("\ndef ")[0]
    rng = np.random.default_rng(7)
    w, xs, ts = rng.standard_normal((1, 3)), rng.standard_normal((5, 3, 1)), rng.uniform(0, 1, 5)
    dense = compiled.load().hessian_flat(np.append(w.ravel(), 0.2), xs, ts)
    ws, xe = sp.symbols("w0:3"), sp.symbols("e0:3")
    z = sum(wk * ek for wk, ek in zip(ws, xe)) + b
    f = sp.log(1 + sp.exp(z)) - t * z
    exact = sp.lambdify([*ws, b, *xe, t], sp.hessian(f, [*ws, b]))
    expected = sum(np.array(exact(*w.ravel(), 0.2, *xs[k].ravel(), ts[k]), dtype=float) for k in range(5))
    np.testing.assert_allclose(dense, expected, rtol=1e-12)

def test_a_hessian_of_many_colours_takes_one_product_per_colour():
    """Twenty parameters all coupled: past 16 colours the entries are not written out; the
    module calls hvp_flat once per colour."""
    x = sp.symbols("x0:20")
    f = sp.log(1 + sum(v ** 2 for v in x)) + x[0] * x[19]
    compiled = bp.compile(f, wrt=list(x), derivatives=("hessian",))
    assert compiled.ops["hessian_products"] == 20 and "hessian" not in compiled.ops
    assert "_hessian_coo(lambda p: hvp_flat(theta, p), theta, (HESSIAN_ROWS, HESSIAN_COLS, HESSIAN_COLOURS))" in compiled.source
    theta = np.linspace(-1, 1, 20)
    exact = np.array(sp.hessian(f, x).xreplace(dict(zip(x, theta))), dtype=float)
    np.testing.assert_allclose(compiled.load().hessian_flat(theta), exact, rtol=1e-12, atol=1e-14)

def _indexed_hessian_case(loss, base, size, seed=0):
    """Compile an indexed loss over one parameter of numeric shape with a Hessian, and check the
    Hessian against sympy.hessian of the Sum written out (.doit()) and central differences of
    the gradient; (compiled, module, Hessian)."""
    compiled = bp.compile(loss, wrt=[base], derivatives=("hvp", "hessian"))
    module = compiled.load()
    shape = tuple(int(d) for d in base.shape)
    theta = np.random.default_rng(seed).uniform(0.2, 1.0, size)
    dense = module.hessian_flat(theta)
    rows, cols, values = module.hessian_coo(theta.reshape(shape))
    np.testing.assert_array_equal(dense[rows, cols], values)
    entries = [base[k] for k in np.ndindex(*shape)]
    exact = sp.hessian(loss.doit(), entries).xreplace(dict(zip(entries, theta)))
    np.testing.assert_allclose(dense, np.array(exact, dtype=float), rtol=1e-10, atol=1e-10)
    point = {base.name: theta.reshape(shape)}
    for p in np.eye(size)[:3].tolist() + [np.cos(np.arange(size)).tolist()]:
        np.testing.assert_allclose(dense @ p, gradient_differences(module, point, np.array(p)), rtol=1e-5, atol=1e-5)
    return compiled, module, dense


def _sizes(compiled, module) -> tuple[int, int]:
    return compiled.ops["hessian_products"], len(module.HESSIAN_ROWS)


@pytest.mark.parametrize("n", [6, 17])
def test_an_indexed_parameter_gets_the_hessian_structure_its_windows_give(n):
    x, i = sp.IndexedBase("x", shape=(n,)), sp.Idx("i")
    rosenbrock = sp.Sum(100 * (x[i + 1] - x[i] ** 2) ** 2 + (1 - x[i]) ** 2, (i, 0, n - 2))
    assert _sizes(*_indexed_hessian_case(rosenbrock, x, n)[:2]) == (3, 3 * n - 2)  # tridiagonal
    reversed_pairs = sp.Sum(x[i] ** 2 * x[n - 1 - i], (i, 0, n - 1))  # the diagonal and the anti-diagonal
    compiled, module, _ = _indexed_hessian_case(reversed_pairs, x, n, seed=1)
    assert _sizes(compiled, module) == (2, 2 * n - n % 2)  # odd n: the two meet in the middle
    broyden = sp.Sum(((3 - 2 * x[i]) * x[i] - x[i - 1] - 2 * x[i + 1] + 1) ** 2, (i, 1, n - 2))
    products, nnz = _sizes(*_indexed_hessian_case(broyden, x, n, seed=2)[:2])
    assert products == 5 and nnz == 5 * n - 6  # pentadiagonal
    gathered = sp.Sum((x[2 * i] - x[2 * i + 1]) ** 4, (i, 0, n // 2 - 1))  # 2-by-2 blocks
    assert _sizes(*_indexed_hessian_case(gathered, x, n, seed=3)[:2]) == (2, 4 * (n // 2))


def test_a_matrix_of_rows_coupled_only_within_each_row_is_block_diagonal():
    W, i, j = sp.IndexedBase("W", shape=(7, 3)), sp.Idx("i"), sp.Idx("j")
    row_norms = sp.Sum((sp.Sum(W[i, j] ** 2, (j, 0, 2)) - 1) ** 2, (i, 0, 6))
    assert _sizes(*_indexed_hessian_case(row_norms, W, 21)[:2]) == (3, 7 * 9)
    diagonal = sp.Sum(sp.exp(W[i, i]) + W[i, i] ** 3, (i, 0, 2))
    assert _sizes(*_indexed_hessian_case(diagonal, W, 21, seed=1)[:2]) == (1, 3)
    M = sp.MatrixSymbol("M", 2, 3)
    v = sp.MatrixSymbol("v", 3, 1)
    module = bp.compile(bp.Model("m", [], bp.sum((M * v).applyfunc(sp.tanh)), [M], [v]),
                        derivatives=("hessian",)).load()
    blocks = np.zeros((6, 6), dtype=bool)
    blocks[module.HESSIAN_ROWS, module.HESSIAN_COLS] = True
    assert np.array_equal(blocks, np.kron(np.eye(2), np.ones((3, 3))).astype(bool))  # one block per row of M


def test_a_dense_indexed_hessian_is_one_product_per_column_written_as_ranges():
    n = 30
    x, i = sp.IndexedBase("x", shape=(n,)), sp.Idx("i")
    compiled, module, dense = _indexed_hessian_case(sp.log(1 + sp.Sum(x[i] ** 2, (i, 0, n - 1))), x, n)
    assert _sizes(compiled, module) == (n, n * n) and np.all(dense != 0)
    assert "np.repeat(np.arange(30), 30)" in compiled.source


def test_a_large_indexed_hessian_compiles_into_a_module_of_the_same_size():
    sizes = {}
    for n in (100, 100_000):
        x, i = sp.IndexedBase("x", shape=(n,)), sp.Idx("i")
        compiled = bp.compile(sp.Sum(100 * (x[i + 1] - x[i] ** 2) ** 2 + (1 - x[i]) ** 2, (i, 0, n - 2)),
                              wrt=[x], derivatives=("hessian",))
        assert compiled.ops["hessian_products"] == 3
        sizes[n] = len(compiled.source)
    module = compiled.load()
    theta = np.linspace(-1.2, 1.0, 100_000)
    rows, cols, values = module.hessian_coo(theta)
    assert len(rows) == 3 * 100_000 - 2 and np.all(np.abs(rows - cols) <= 1)
    p = np.sin(np.arange(100_000))
    hv = np.zeros(100_000)
    np.add.at(hv, rows, values * p[cols])
    np.testing.assert_allclose(hv, module.hvp_flat(theta, p), rtol=1e-12, atol=1e-9)
    # the band is written as runs of rows: the module is the same size at every n
    assert abs(sizes[100_000] - sizes[100]) < 100
    assert "HESSIAN_ROW_RUNS = ((1, ((0, 1),)), (99998, ((-1, 0, 1),)), (1, ((-1, 0),)))" in compiled.source



# ---- the structure is never missing an entry: random indexed and matrix models ----------------------
def _affine_index(i, size, kind):
    """An index expression over i and the largest i it allows in an array of `size`."""
    a, c = ((1, 0), (1, 1), (1, 2), (2, 0), (2, 1), (-1, size - 1))[kind]
    return a * i + c, size - 1 if a < 0 else (size - 1 - c) // a


INNER = [lambda v: v, lambda v: v ** 2, sp.sin, sp.exp, lambda v: 1 / (2 + v ** 2)]
OUTER = [lambda s: s, lambda s: s ** 2, lambda s: sp.log(1 + s ** 2)]


@settings(max_examples=30, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(5, 8), st.lists(st.tuples(st.sampled_from(range(6)), st.sampled_from(range(6)),
                                             st.sampled_from(range(len(INNER))), st.sampled_from(range(len(OUTER)))),
                                   min_size=1, max_size=3))
def test_random_indexed_hessians_have_every_non_zero_in_their_structure(size, sums):
    """Sums of products of windows, strided and reversed entries, some under a nonlinear outer
    function (which couples the whole range): the Hessian through its structure and colouring
    equals sympy.hessian of the sums written out."""
    x, i = sp.IndexedBase("x", shape=(size,)), sp.Idx("i")
    loss = sp.S.Zero
    for first, second, inner, outer in sums:
        (e1, top1), (e2, top2) = _affine_index(i, size, first), _affine_index(i, size, second)
        loss += OUTER[outer](sp.Sum(INNER[inner](x[e1]) * x[e2], (i, 0, min(top1, top2))))
    _indexed_hessian_case(loss, x, size, seed=size)


W23 = sp.MatrixSymbol("W", 2, 3)
v31, t21 = sp.MatrixSymbol("v", 3, 1), sp.MatrixSymbol("t", 2, 1)


@pytest.mark.parametrize("expr", [
    bp.sum((W23 * v31).applyfunc(sp.tanh)),
    bp.sum(sp.HadamardPower(W23 * v31 - t21, 2)),
    bp.sum((W23.T * W23).applyfunc(sp.exp)),
    sp.Trace(W23[:, :2] * W23[:, 1:]) + (W23[1, :] * v31)[0, 0] ** 3,
    bp.sum(W23.applyfunc(sp.sin)) + bp.sum(sp.HadamardProduct(W23[:, :1], W23[:, 2:])) ** 2,
    sp.log(1 + bp.sum(sp.HadamardPower(W23 * v31, 2))),
])
def test_matrix_hessians_have_every_non_zero_in_their_structure(expr):
    """Matrix products, transposes, slices and entries: the Hessian through its structure equals
    the Hessian-vector products (which read no structure) column by column, and those equal
    central differences of the gradient."""
    module = bp.compile(expr, wrt=[W23], inputs=[v31, t21], derivatives=("hvp", "hessian")).load()
    rng = np.random.default_rng(3)
    point = {"W": rng.uniform(-1, 1, (2, 3)), "v": rng.uniform(-1, 1, (3, 3, 1)), "t": rng.uniform(-1, 1, (3, 2, 1))}
    data = [point[a] for a in module.ARGS if a != "W"]
    theta = module.pack(point["W"])
    dense = module.hessian_flat(theta, *data)
    for k, column in enumerate(np.eye(6)):
        np.testing.assert_allclose(dense[:, k], module.hvp_flat(theta, column, *data), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(dense[:, k], gradient_differences(module, point, column), rtol=1e-5, atol=1e-6)

_c, _x, _w, _t = sp.symbols("c x w t")


@pytest.mark.parametrize("model", [
    bp.Model("rational", [], (_c * (_c + _x) + 1) / (_c + _x), [_c], [_x]),
    bp.Model("sum_angles", [], sp.sin(_t + _w) * sp.cos(_t - _w), [_w], [_t]),
    bp.Model("wrong_entry_once", [], _w * sp.exp(_c) * sp.sin(_c) + 3 * _w * sp.exp(_c) + sp.sin(_c), [_w, _c], [_t]),
    bp.Model("residual", [], None, [_w], [_t], residuals=[_t + sp.sin(_t + _w) * sp.cos(_t - _w)]),
], ids=lambda m: m.name)
@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_fuzz_found_hessians_whose_tangent_sums_read_one_term_twice(model, reduction):
    """A sum's terms with one tangent (the Hessian's seeds are numbers, so tangents fold to
    the same node) are that tangent twice: the straight-line Hessian once crashed on them, or
    (w*exp(c)*sin(c) + 3*w*exp(c) + sin(c)) gave a wrong d2L/dc2."""
    module = bp.compile(model, derivatives=("grad", "hessian"), reduction=reduction, rewrite=False).load()
    point = {"c": 0.7, "w": 0.4, "x": np.array([0.3, -1.2, 2.0]), "t": np.array([0.3, -1.2, 2.0])}
    data = [point[a] for a in module.ARGS if a not in module.WRT]
    hessian = module.hessian_flat(module.pack(*[point[w] for w in module.WRT]), *data)
    if model.residuals:
        model = bp.Model(model.name, [], (_t + sp.sin(_t + _w) * sp.cos(_t - _w)) ** 2 / 2, [_w], [_t])
    np.testing.assert_allclose(hessian, sympy_hessian(model, point, reduction), rtol=1e-10, atol=1e-12)


@settings(max_examples=40, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(model=models(), seed=st.integers(0, 2 ** 16))
def test_random_models_hessians_match_sympy(model, seed):
    module = bp.compile(model, derivatives=("grad", "hessian")).load()
    rng = np.random.default_rng(seed)
    point = {a: float(rng.uniform(-1.5, 1.5)) for a in module.ARGS}
    point.update({str(d): rng.uniform(-1.5, 1.5, 3) for d in model.inputs})
    data = [point[a] for a in module.ARGS if a not in module.WRT]
    theta = module.pack(*[point[w] for w in module.WRT])
    with np.errstate(all="ignore"):
        hessian = module.hessian_flat(theta, *data)
    np.testing.assert_allclose(hessian, sympy_hessian(model, point), rtol=1e-8, atol=1e-8)


def test_hvp_on_python_floats_equals_the_numpy_path():
    module = bp.compile(rosenbrock(4), derivatives=("hvp",)).load()
    args = [0.3, -0.2, 1.1, 0.7, 1.0, 0.5, -1.0, 2.0]
    fast = module.hvp(*args)
    slow = module.hvp(*[np.array(a) for a in args])
    assert all(type(g) is float for g in fast[2])
    np.testing.assert_allclose(fast[2], slow[2], rtol=1e-14)


def test_float32_stays_float32():
    w, x = sp.symbols("w x")
    module = bp.compile(bp.Model("m", [], sp.sin(w * x) ** 2, [w], [x]), derivatives=("hvp",)).load()
    value, grads, hv = module.hvp(np.float32(0.5), np.ones(3, np.float32), np.float32(1.0))
    assert np.asarray(hv[0]).dtype == np.float32 and np.asarray(grads[0]).dtype == np.float32


@pytest.mark.parametrize("residuals", [lambda w, v, x: [w - x], lambda w, v, x: [w - x, 3 * v, w * v * x],
                                       lambda w, v, x: [w - x, sp.Piecewise((1, v > 0), (v, True))]])
def test_a_jacobian_with_constant_entries_stays_float32(residuals):
    """dr/dw = 1 is a number, and so is an integer np.where of numbers (the derivative of a
    Piecewise of constants): weak beside float32 arguments, as NumPy's own numbers are."""
    w, v, x = sp.symbols("w v x")
    module = bp.compile(bp.Model("r", [], None, [w, v], [x], residuals=residuals(w, v, x)),
                        derivatives=("jacobian",)).load()
    for dtype in (np.float32, np.float64):
        theta, xs = np.array([0.5, 0.25], dtype), np.arange(3, dtype=dtype)
        jacobian = module.jacobian_flat(theta, xs)
        assert jacobian.dtype == dtype and module.jacobian(dtype(0.5), dtype(0.25), xs).dtype == dtype
        np.testing.assert_allclose(jacobian[0], [1.0, 0.0])  # the first residual of the first example


def test_second_derivatives_at_kinks_are_zero_and_untaken_branches_stay_finite():
    w = sp.Symbol("w")
    cases = [(sp.Abs(w), 0.0, 0.0), (bp.relu(w), 0.0, 0.0), (sp.Max(w, 0), 0.0, 0.0),
             (w * sp.Heaviside(w), 0.0, 0.0), (sp.Piecewise((sp.log(w), w > 0), (0, True)), -1.0, 0.0),
             (sp.Piecewise((sp.log(w), w > 0), (0, True)), 2.0, -0.25), (sp.Piecewise((w ** 3, w < 1), (w, True)), 0.5, 3.0)]
    for loss, at, expected in cases:
        module = bp.compile(loss, wrt=[w], derivatives=("hessian",)).load()
        with np.errstate(all="raise"):
            assert module.hessian_flat(np.array([at]))[0, 0] == pytest.approx(expected)
            assert module.hvp(np.float64(at), np.float64(1.0))[2][0] == pytest.approx(expected)


def decay_model(residuals):
    a, b, c, t, y = sp.symbols("a b c t y")
    exprs = {"one": [a * sp.exp(-b * t) + c - y],
             "many": [a * sp.exp(-b * t) + c - y, a - 2, b * c, sp.sin(a * t), c ** 2 - y]}[residuals]
    return bp.Model("decay", [], None, [a, b, c], [t, y], residuals=exprs), exprs, (a, b, c), (t, y)


@pytest.mark.parametrize("residuals", ["one", "many"])  # reverse mode, forward mode
def test_jacobian_of_residuals_matches_sympy(residuals):
    model, exprs, params, (t, y) = decay_model(residuals)
    compiled = bp.compile(model, derivatives=("jacobian", "hessian"))
    module = compiled.load()
    assert ("reverse" if residuals == "one" else "forward") in module.jacobian.__doc__
    ts, ys = np.linspace(0, 2, 7), np.cos(np.linspace(0, 2, 7))
    theta = np.array([1.5, 0.7, -0.2])
    point = dict(zip(("a", "b", "c"), theta), t=ts, y=ys)
    jacobian = module.jacobian(**point)
    assert jacobian.shape == (7, len(exprs), 3)
    oracle = sp.lambdify([*params, t, y], sp.Matrix(exprs).jacobian(params))
    for k in range(7):
        np.testing.assert_allclose(jacobian[k], np.asarray(oracle(*theta, ts[k], ys[k]), dtype=float),
                                   rtol=1e-12, atol=1e-14)
    residual = module.residuals(**point)
    assert residual.shape == (7, len(exprs))
    np.testing.assert_allclose(module.residuals_flat(theta, ts, ys), residual.ravel())
    np.testing.assert_allclose(module.jacobian_flat(theta, ts, ys), jacobian.reshape(-1, 3))
    # the objective is half the sum of the squared residuals, with its gradient J^T r
    value, gradient = module.value_and_grad_flat(theta, ts, ys)
    assert value == pytest.approx(0.5 * np.sum(residual ** 2))
    np.testing.assert_allclose(gradient, module.jacobian_flat(theta, ts, ys).T @ residual.ravel(), rtol=1e-12)
    assert module.hessian_flat(theta, ts, ys).shape == (3, 3)


@pytest.mark.parametrize("residual_count", [2, 5])  # fewer and more residuals than matrix entries
def test_jacobian_with_a_matrix_parameter_matches_sympy(residual_count):
    """A 2x2 calibration matrix and an offset fitted to points: each residual's row of the
    Jacobian holds a column per entry of the matrix (C order), then the offset's."""
    W, x = sp.MatrixSymbol("W", 2, 2), sp.MatrixSymbol("x", 2, 1)
    b, y0, y1 = sp.symbols("b y0 y1")
    Wx = W * x
    exprs = [Wx[0, 0] + b - y0, sp.tanh(Wx[1, 0]) - y1, Wx[0, 0] * Wx[1, 0], sp.exp(b * Wx[1, 0]), W[0, 1] ** 2]
    exprs = exprs[:residual_count]
    model = bp.Model("calibration", [], residuals=exprs, wrt=[W, b], inputs=[x, y0, y1])
    module = bp.compile(model, derivatives=("jacobian",)).load()
    rng = np.random.default_rng(residual_count)
    w, xs, a, c = rng.uniform(-1, 1, (2, 2)), rng.uniform(-1, 1, (6, 2, 1)), rng.uniform(-1, 1, 6), rng.uniform(-1, 1, 6)
    jacobian = module.jacobian(w, 0.3, xs, a, c)
    assert jacobian.shape == (6, residual_count, 5)
    entries = sp.Matrix(2, 2, lambda r, k: sp.Symbol(f"w{r}{k}"))
    xe = sp.Matrix(2, 1, lambda r, _: sp.Symbol(f"x{r}"))
    explicit = [sp.sympify(e).xreplace({W: sp.ImmutableMatrix(entries), x: sp.ImmutableMatrix(xe)}).doit()
                for e in exprs]
    params = list(entries) + [b]
    oracle = sp.lambdify(params + list(xe) + [y0, y1], sp.Matrix(explicit).jacobian(params))
    for k in range(6):
        expected = np.asarray(oracle(*w.ravel(), 0.3, *xs[k].ravel(), a[k], c[k]), dtype=float)
        np.testing.assert_allclose(jacobian[k], expected, rtol=1e-12, atol=1e-14)
    theta = module.pack(w, 0.3)
    flat = module.jacobian_flat(theta, xs, a, c)
    np.testing.assert_allclose(flat, jacobian.reshape(-1, 5))
    h = 1e-6
    differences = np.stack([(module.residuals_flat(theta + h * e, xs, a, c) - module.residuals_flat(theta - h * e, xs, a, c))
                            / (2 * h) for e in np.eye(5)], axis=-1)
    np.testing.assert_allclose(flat, differences, rtol=1e-6, atol=1e-8)

def test_jacobian_with_indexed_parameters_fits_a_polynomial():
    """Coefficients c[k] of a polynomial, a smoothness residual over neighbouring coefficients,
    per-index data T[k] and a 2-D A[i, j]: a column per entry (C order, in pack's layout), against
    central differences of residuals_flat and, for the polynomial, the exact -t**k; then
    least_squares recovers the coefficients."""
    K, k, i, j = 4, sp.Idx("k"), sp.Idx("i"), sp.Idx("j")
    c, T, A = sp.IndexedBase("c", shape=(K,)), sp.IndexedBase("T", shape=(K,)), sp.IndexedBase("A", shape=(2, 2))
    t, y = sp.symbols("t y")
    polynomial = sp.Sum(c[k] * t ** k, (k, 0, K - 1))
    residuals = [y - polynomial, sp.Sum((c[k + 1] - c[k]) ** 2, (k, 0, K - 2)) * t / 100,
                 sp.Sum(sp.exp(c[k]) * T[k], (k, 0, K - 1)) * sp.Sum(A[i, j] * t ** j, (i, 0, 1), (j, 0, 1))]
    module = bp.compile(bp.Model("poly", [], residuals=residuals, wrt=[c, A], inputs=[t, y, T]),
                        derivatives=("jacobian",)).load()
    rng = np.random.default_rng(3)
    ts, ys, Ts = np.linspace(0, 1, 7), np.cos(np.linspace(0, 1, 7)), rng.uniform(0, 1, (7, K))
    theta = np.concatenate([[0.3, -0.2, 0.5, 0.1], rng.uniform(-1, 1, 4)])
    jacobian = module.jacobian(*module.unpack(theta), ts, ys, Ts)
    assert jacobian.shape == (7, 3, K + 4)
    np.testing.assert_allclose(jacobian[:, 0, :K], -ts[:, None] ** np.arange(K), rtol=1e-14, atol=1e-15)
    h = 1e-6
    flat = module.jacobian_flat(theta, ts, ys, Ts)
    differences = np.stack([(module.residuals_flat(theta + h * e, ts, ys, Ts) - module.residuals_flat(theta - h * e, ts, ys, Ts))
                            / (2 * h) for e in np.eye(theta.size)], axis=-1)
    np.testing.assert_allclose(flat, differences, rtol=1e-6, atol=1e-8)
    scipy_optimize = pytest.importorskip("scipy.optimize")
    fit = bp.compile(bp.Model("fit", [], residuals=[y - polynomial], wrt=[c], inputs=[t, y]), derivatives=("jacobian",)).load()
    samples = np.linspace(-1, 1, 20)
    solution = scipy_optimize.least_squares(fit.residuals_flat, np.zeros(K), jac=fit.jacobian_flat,
                                            args=(samples, 1 - 2 * samples + 0.5 * samples ** 3))
    np.testing.assert_allclose(solution.x, [1, -2, 0, 0.5], atol=1e-10)

def test_scipy_fits_with_the_flat_forms():
    scipy_optimize = pytest.importorskip("scipy.optimize")
    model, _, _, _ = decay_model("one")
    module = bp.compile(model, derivatives=("hvp", "hessian", "jacobian")).load()
    ts = np.linspace(0, 3, 30)
    ys = 2 * np.exp(-1.3 * ts) + 0.5
    start = np.array([1.0, 1.0, 0.0])
    fit = scipy_optimize.least_squares(module.residuals_flat, start, jac=module.jacobian_flat, args=(ts, ys))
    np.testing.assert_allclose(fit.x, [2.0, 1.3, 0.5], rtol=1e-6)
    for method, extra in (("Newton-CG", {"hessp": module.hvp_flat}), ("trust-exact", {"hess": module.hessian_flat})):
        fit = scipy_optimize.minimize(module.value_and_grad_flat, start, jac=True, args=(ts, ys),
                                      method=method, **extra)
        np.testing.assert_allclose(fit.x, [2.0, 1.3, 0.5], rtol=1e-4)


def test_pack_and_unpack_matrix_parameters():
    W, x = sp.MatrixSymbol("W", 2, 3), sp.MatrixSymbol("x", 3, 1)
    b = sp.Symbol("b")
    model = bp.Model("m", [], bp.sum((W * x).applyfunc(sp.tanh)) + b ** 2, [W, b], [x])
    module = bp.compile(model, derivatives=("hvp", "hessian")).load()
    weights = np.arange(6.0).reshape(2, 3) / 10
    theta = module.pack(weights, 0.5)
    assert theta.shape == (7,) and np.array_equal(theta[:6], weights.ravel())
    unpacked = module.unpack(theta)
    assert np.array_equal(unpacked[0], weights) and unpacked[1] == 0.5
    xs = np.ones((4, 3, 1))
    value, grad = module.value_and_grad_flat(theta, xs)
    structured = module.value_and_grad(weights, 0.5, xs)
    assert value == pytest.approx(structured[0])
    np.testing.assert_allclose(grad, np.concatenate([structured[1][0].ravel(), [structured[1][1]]]))
    point = {"W": weights, "b": 0.5, "x": xs}
    p = np.linspace(-1, 1, 7)
    np.testing.assert_allclose(module.hvp_flat(theta, p, xs), gradient_differences(module, point, p), rtol=1e-6)
    np.testing.assert_allclose(module.hessian_flat(theta, xs) @ p, module.hvp_flat(theta, p, xs), rtol=1e-10)


def test_bad_second_order_input_gets_typed_errors():
    w, x = sp.symbols("w x")
    with pytest.raises(ModelError, match="unknown derivative 'hessain'"):
        bp.compile(w ** 2, wrt=[w], derivatives=("hessain",))
    with pytest.raises(ModelError, match="needs residuals"):
        bp.compile(w ** 2, wrt=[w], derivatives=("jacobian",))
    n, i = sp.Symbol("n", integer=True, positive=True), sp.Idx("i")
    u = sp.IndexedBase("u", shape=(n,))
    # (a parameter of named size is no error: its Jacobian's columns come from its shape at call time)
    named = bp.compile(bp.Model("m", [], residuals=[sp.Sum(u[i] * x, (i, 0, n - 1)) - 1], wrt=[u], inputs=[x]),
                       derivatives=("jacobian",)).load()
    np.testing.assert_array_equal(named.jacobian(np.ones(4), np.array([2.0, 3.0])), [[[2.0] * 4], [[3.0] * 4]])
    with pytest.raises(NonScalarLossError, match="residual 0"):
        bp.Model("m", [], None, [w], [x], residuals=[sp.Matrix([w, x])])
        bp.compile(bp.Model("m", [], None, [w], [x], residuals=[sp.Matrix([w, x])]))
    module = bp.compile(w ** 2 * x, wrt=[w], inputs=[x], derivatives=("hvp",)).load()
    with pytest.raises(ValueError, match="p must be a 1-D array of 1 numbers"):
        module.hvp_flat(np.array([1.0]), np.array([1.0, 2.0]), 3.0)


def test_arguments_named_theta_and_p_keep_their_names_beside_the_flat_forms():
    """A data symbol p and a parameter theta: the flat forms name their vectors around them."""
    a, theta, p = sp.symbols("a theta p")
    model = bp.Model("m", loss=(a * theta - p) ** 2 + sp.cos(theta), wrt=[a, theta], inputs=[p])
    module = bp.compile(model, derivatives=("grad", "hvp", "hessian")).load()
    assert module.ARGS == ("a", "theta", "p")
    vector, direction, data = np.array([1.5, -0.4]), np.array([0.3, 1.0]), np.array([0.5, 2.0])
    point = {"a": 1.5, "theta": -0.4, "p": data}
    exact = sympy_hessian(model, point)
    np.testing.assert_allclose(module.hessian_flat(vector, data), exact, rtol=1e-12)
    np.testing.assert_allclose(module.hvp_flat(vector, direction, data), exact @ direction, rtol=1e-12)
    np.testing.assert_allclose(module.hvp_flat(vector, direction, data),
                               gradient_differences(module, point, direction), rtol=1e-6)
    value, grad = module.value_and_grad_flat(vector, data)
    assert value == pytest.approx(module.value_and_grad(1.5, -0.4, data)[0])


def _chain(n: int) -> bp.Model:
    """A chained sum of n - 1 terms; re-rolled into lane code from 64 terms on."""
    x = sp.symbols(f"x0:{n}")
    terms = [(x[k + 1] - x[k] ** 2) ** 2 / 4 + sp.cos(x[k]) for k in range(n - 1)]
    return bp.Model("chain", loss=sp.Add(*terms), wrt=list(x), inputs=[])


@pytest.mark.parametrize("n", [5, 70])
def test_flat_forms_of_a_model_without_data_check_theta_as_they_read_it(n):
    """The flat forms an optimiser calls take no wrapper when theta (and p) are all they read:
    those readers accept lists and integers, and refuse text, complex numbers and a wrong length."""
    model = _chain(n)
    module = bp.compile(model, derivatives=("grad", "hvp", "hessian")).load()
    assert ("_lane_accumulate" in module.__dict__) == (n == 70)  # the second is re-rolled
    for name in ("value_and_grad_flat", "hvp_flat", "hessian_flat", "unpack"):
        assert not hasattr(getattr(module, name), "__wrapped__"), name
    assert hasattr(module.value_and_grad, "__wrapped__")
    theta = [(-1) ** k * (k % 3) for k in range(n)]  # a list of integers
    point = {f"x{k}": float(v) for k, v in enumerate(theta)}
    value, grad = module.value_and_grad_flat(theta)
    assert type(value) is float and grad.shape == (n,) and grad.dtype == np.float64
    np.testing.assert_allclose(grad, sympy_gradient(model, model.wrt, point), rtol=1e-12, atol=1e-12)
    direction = np.linspace(-1, 1, n)
    # sympy.diff twice on the small model; the large one against its own written-out compile
    exact = sympy_hessian(model, point) if n < 64 else \
        bp.compile(model, derivatives=("hessian",), reroll=False).load().hessian_flat(np.array(theta, dtype=float))
    np.testing.assert_allclose(module.hvp_flat(theta, direction), exact @ direction, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(module.hvp_flat(theta, direction), gradient_differences(module, point, direction),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(module.hessian_flat(np.array(theta, dtype=float)), exact, rtol=1e-10, atol=1e-10)
    for bad, error, message in ((np.ones(n) * 1j, TypeError, "theta is complex"),
                                ("x" * n, TypeError, "theta must be a number or an array of numbers"),
                                (np.ones(n + 1), ValueError, f"theta must be a 1-D array of {n} numbers")):
        with pytest.raises(error, match=message):
            module.value_and_grad_flat(bad)
    with pytest.raises(ValueError, match=f"p must be a 1-D array of {n} numbers"):
        module.hvp_flat(theta, np.ones(2))


def test_a_module_carries_only_the_argument_checks_its_functions_call():
    """_check_batch for functions of two or more data arguments (unless broadcast=True), and
    _check_matrices for functions of matrix arguments; neither when nothing calls it."""
    w, x, t = sp.symbols("w x t")
    one = bp.compile(bp.Model("m", loss=(w * x - 1) ** 2, wrt=[w], inputs=[x])).source
    assert "def _check_batch" not in one and "def _check_matrices" not in one
    two = bp.compile(bp.Model("m", loss=(w * x - t) ** 2, wrt=[w], inputs=[x, t]))
    assert "def _check_batch" in two.source and "def _check_matrices" not in two.source
    module = two.load()
    with pytest.raises(ValueError, match="larger than any one of them"):
        module.value_and_grad(0.5, np.ones(3), np.ones((3, 1)))
    assert module.value_and_grad_flat(np.array([0.5]), np.ones(3), np.ones(3))[0] == pytest.approx(0.75)
    with pytest.raises(ValueError, match="larger than any one of them"):
        module.value_and_grad_flat(np.array([0.5]), np.ones(3), np.ones((3, 1)))
    outer = bp.compile(bp.Model("m", loss=(w * x - t) ** 2, wrt=[w], inputs=[x, t]), broadcast=True)
    assert "def _check_batch" not in outer.source
    assert outer.load().value_and_grad(0.5, np.ones(3), np.ones((3, 1)))[0] == pytest.approx(9 * 0.25)
    W = sp.MatrixSymbol("W", 2, 2)
    matrices = bp.compile(bp.Model("m", loss=bp.sum(W) ** 2, wrt=[W]))
    assert "def _check_matrices" in matrices.source and "def _check_batch" not in matrices.source
    with pytest.raises(ValueError, match=r"W must have shape \(2, 2\)"):
        matrices.load().value_and_grad(np.ones((3, 3)))


def test_a_dense_hessian_too_large_to_index_is_refused_with_the_fix():
    n = 8000
    x, i = sp.IndexedBase("x", shape=(n,)), sp.Idx("i")
    with pytest.raises(ModelError, match="8,000 parameters has 6.4e\\+07 structural non-zeros.*derivatives=\\('hvp',\\)"):
        bp.compile(sp.log(1 + sp.Sum(x[i] ** 2, (i, 0, n - 1))), wrt=[x], derivatives=("hessian",))
    assert bp.compile(sp.log(1 + sp.Sum(x[i] ** 2, (i, 0, n - 1))), wrt=[x], derivatives=("hvp",)).ops["hvp"] > 0


def test_second_order_modules_pass_ruff_and_their_self_check(tmp_path):
    """A straight-line Hessian (mean over a batch), a matrix Jacobian, indexed Hessians (of
    numeric and named size) and residuals over a range: the modules pass ruff's default rules and
    their own gradient check."""
    import subprocess
    import sys

    x, (a, t) = sp.symbols("x0:3"), sp.symbols("a t")
    W, v = sp.MatrixSymbol("W", 2, 2), sp.MatrixSymbol("v", 2, 1)
    y0, b = sp.symbols("y0 b")
    u, i = sp.IndexedBase("u", shape=(9,)), sp.Idx("i")
    modules = {
        "straight": bp.compile(bp.Model("fit", [], (x[0] * sp.exp(-a * t) - x[1]) ** 2 * x[2] ** 2, [*x, a], [t]),
                               derivatives=("hvp", "hessian"), reduction="mean"),
        "calibration": bp.compile(bp.Model("cal", [], residuals=[(W * v)[0, 0] + b - y0, sp.tanh((W * v)[1, 0])],
                                           wrt=[W, b], inputs=[v, y0]), derivatives=("jacobian", "hessian")),
        "indexed": bp.compile(sp.Sum((u[i + 1] - u[i] ** 2) ** 2, (i, 0, 7)), wrt=[u], derivatives=("hessian",)),
    }
    # over a named n: the Hessian's families, the dense one by products, residuals over a range
    n = sp.Symbol("n", integer=True, positive=True)
    un, yn = sp.IndexedBase("u", shape=(n,)), sp.IndexedBase("y", shape=(n,))
    modules["families"] = bp.compile(sp.Sum((un[i + 1] - un[i] ** 2) ** 2 * a, (i, 0, n - 2)), wrt=[un, a],
                                     derivatives=("hessian",), reduction="mean")
    modules["dense"] = bp.compile(sp.log(sp.Sum(un[i] ** 2, (i, 0, n - 1))), wrt=[un], derivatives=("hessian",))
    modules["ranged"] = bp.compile(bp.Model("decay", residuals=[(a * sp.exp(-b * yn[i]) - 1, (i, 0, n - 1)), a - b],
                                            wrt=[a, b], inputs=[yn]), derivatives=("jacobian", "hessian"))
    for name, compiled in modules.items():
        compiled.write(tmp_path / f"{name}.py")
        check = subprocess.run([sys.executable, str(tmp_path / f"{name}.py")], capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr
    run = subprocess.run([sys.executable, "-m", "ruff", "check", "--isolated", "--no-cache", str(tmp_path)],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def test_a_straight_line_hessian_entry_that_is_the_graphs_first_node():
    """d²/dp² of p² + s with s = 2p is the constant 2, the first node the graph made: it is an
    entry like any other (a node number 0 is not a missing one)."""
    p, s, d = sp.symbols("p s d")
    module = bp.compile(bp.Model("m", [(s, 2 * p)], p ** 2 + s, [p], [d]), derivatives=("hessian",)).load()
    assert module.hessian(0.4, 1.0).tolist() == [[2.0]]
    assert module.hessian_flat(np.array([0.4]), np.ones(3)).tolist() == [[6.0]]
