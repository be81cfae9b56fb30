"""Matrix models: every matrix rule against sympy.diff (the model written out entry by entry)
and finite differences, the scalar path as a second reference, batches, shapes, and sizes."""

import re
import runpy
from pathlib import Path

import numpy as np
import pytest
import sympy as sp
from oracle import assert_close, directional_derivatives, random_point, reference_gradient

import backpropc as bp
from backpropc.check import scalar_model
from backpropc.errors import ModelError, NonScalarLossError

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

A, B = sp.MatrixSymbol("A", 3, 2), sp.MatrixSymbol("B", 2, 3)
S, P = sp.MatrixSymbol("S", 3, 3), sp.MatrixSymbol("P", 3, 3)
u, v = sp.MatrixSymbol("u", 3, 1), sp.MatrixSymbol("v", 2, 1)
a, s = sp.symbols("a s")
I3 = sp.Identity(3)
ROTATION = sp.Matrix([[sp.cos(a), -sp.sin(a), 0], [sp.sin(a), sp.cos(a), 0], [0, 0, 1]])

# (name, loss, wrt, inputs): each exercises one matrix rule (u, v and s are batched data)
CASES = [
    ("matmul", bp.sum(A * B), [A, B], []),
    ("matvec", bp.sum((A * v).applyfunc(sp.sin)), [A], [v]),
    ("vecmat", u.T * S * u, [S], [u]),
    ("transpose", bp.sum(sp.hadamard_product(A.T, B)), [A, B], []),
    ("trace", sp.Trace(A * B) * s, [A, B], [s]),
    ("inverse", bp.sum(sp.Inverse(S + 3 * I3) * u), [S], [u]),
    ("matpow", bp.sum(sp.MatPow(S, 2) * u), [S], [u]),
    ("det", sp.Determinant(S + 2 * I3), [S], []),
    ("logdet", sp.log(sp.Determinant(S * S.T + I3)), [S], []),
    ("hadamard_power", bp.sum(sp.HadamardPower(S * u, 3)), [S], [u]),
    ("elementwise", bp.sum((S * u).applyfunc(bp.sigmoid)) + bp.sum((S * u).applyfunc(sp.exp)), [S], [u]),
    ("scalar_times_matrix", bp.sum(a * S * u) + a ** 2 * s, [a, S], [u, s]),
    ("scalar_data_times_matrix", bp.sum(s * (S * u).applyfunc(sp.tanh)), [S], [u, s]),
    ("ones_and_identity", bp.sum(sp.OneMatrix(1, 3) * (S + I3) * u), [S], [u]),
    ("one_by_one_entry", (v.T * v)[0, 0] * a + bp.sum(A * v), [a, A], [v]),
    ("data_gradient", bp.sum(sp.HadamardPower(S * u, 2)), [u], [S]),
    # explicit sympy.Matrix objects of scalars beside matrix symbols: a rotation of data, a weighting
    ("explicit_rotation", (ROTATION * u - sp.Matrix([s, 1, 2])).T * (ROTATION * u - sp.Matrix([s, 1, 2])), [a], [u, s]),
    ("explicit_entries", bp.sum(sp.Matrix([[a, 2 * a, 0], [1, a ** 2, sp.exp(a)]]) * S * u), [a, S], [u]),
]


def compiled_case(loss, wrt, inputs):
    return bp.compile(loss, wrt=wrt, inputs=inputs, name="case")


@pytest.mark.parametrize("batch", [None, 4])
@pytest.mark.parametrize("name, loss, wrt, inputs", CASES, ids=[c[0] for c in CASES])
def test_matrix_rule_matches_sympy_diff_and_finite_differences(name, loss, wrt, inputs, batch):
    compiled = compiled_case(loss, wrt, inputs)
    module = compiled.load()
    model = bp.Model(name, [], loss, wrt, inputs)
    rng = np.random.default_rng(len(name))
    for _ in range(2):
        point = random_point(module, rng, batch, default=(-1, 1))
        value, grads = module.value_and_grad(**point)
        for arg, g, exact in zip(module.WRT, grads, reference_gradient(model, point)):
            assert np.shape(g) == np.shape(point[arg]), f"{name}: d/d{arg} has the wrong shape"
            assert_close(g, exact, 1e-9, what=f"{name}: d/d{arg} vs sympy.diff")
        backprop, finite = directional_derivatives(module, point, grads, rng).T
        assert_close(backprop, finite, 1e-6, what=f"{name} vs finite differences")
        assert np.isclose(value, np.sum(module.forward(**point)))


@pytest.mark.parametrize("name, loss, wrt, inputs", CASES, ids=[c[0] for c in CASES])
def test_matrix_path_agrees_with_the_scalar_path(name, loss, wrt, inputs):
    """The same model written with one scalar symbol per entry, compiled through the scalar path."""
    module = compiled_case(loss, wrt, inputs).load()
    scalar = scalar_model(bp.Model(name, [], loss, wrt, inputs))
    scalar_module = bp.compile(scalar.model).load()
    point = random_point(module, np.random.default_rng(7), 5, default=(-1, 1))
    value, grads = module.value_and_grad(**point)
    flat = scalar.flatten(point)
    scalar_value, scalar_grads = scalar_module.value_and_grad(**{k: flat[k] for k in scalar_module.ARGS})
    by_entry = dict(zip(scalar_module.WRT, scalar_grads))
    assert np.isclose(value, scalar_value, rtol=1e-12)
    for w, g in zip(wrt, grads):
        assert_close(g, scalar.gather(w, by_entry), 1e-11, what=f"{name}: d/d{w}")


@pytest.mark.parametrize("example", ["vectorised_mlp", "least_squares", "gaussian_nll"])
def test_batch_gradient_is_the_sum_of_per_example_gradients(example):
    model = runpy.run_path(str(EXAMPLES / f"{example}.py"))["model"]
    module = bp.compile(model).load()
    point = random_point(module, np.random.default_rng(3), 6, default=(-1, 1))
    value, grads = module.value_and_grad(**point)
    data = [n for n in module.ARGS if n not in module.WRT]
    total_value, totals = 0.0, [0.0] * len(grads)
    for i in range(6):
        one = dict(point, **{n: point[n][i] for n in data})
        v, gs = module.value_and_grad(**one)
        total_value += v
        totals = [t + g for t, g in zip(totals, gs)]
    assert np.isclose(value, total_value)
    for g, t in zip(grads, totals):
        assert_close(g, t, 1e-12)


def test_vectorised_mlp_matches_the_lecture_and_the_scalar_mlp():
    """Slide 17's backward pass, and the same numbers as the scalar-weight examples/mlp.py."""
    namespace = runpy.run_path(str(EXAMPLES / "vectorised_mlp.py"))
    source = bp.compile(namespace["model"]).source
    for line in ["y_bar = y - t", "h_bar = _matmul(_T(W2), y_bar)", "z_bar = h*h_bar*(1 - h)",
                 "W1_bar = _sum_matmul(z_bar, _T(x), W1, shape)", "W2_bar = _sum_matmul(y_bar, _T(h), W2, shape)"]:
        assert line in source
    scalar = runpy.run_path(str(EXAMPLES / "mlp.py"))["model"]
    module, scalar_module = bp.compile(namespace["model"]).load(), bp.compile(scalar).load()
    rng = np.random.default_rng(0)
    W1, b1, W2, b2 = rng.normal(size=(4, 3)), rng.normal(size=(4, 1)), rng.normal(size=(2, 4)), rng.normal(size=(2, 1))
    x, t = rng.normal(size=(8, 3, 1)), rng.normal(size=(8, 2, 1))
    value, grads = module.value_and_grad(W1, b1, W2, b2, x, t)
    point = {f"w1_{i + 1}_{j + 1}": W1[i, j] for i in range(4) for j in range(3)}
    point |= {f"b1_{i + 1}": b1[i, 0] for i in range(4)}
    point |= {f"w2_{k + 1}_{i + 1}": W2[k, i] for k in range(2) for i in range(4)}
    point |= {f"b2_{k + 1}": b2[k, 0] for k in range(2)}
    point |= {f"x{j + 1}": x[:, j, 0] for j in range(3)} | {f"t{k + 1}": t[:, k, 0] for k in range(2)}
    scalar_value, scalar_grads = scalar_module.value_and_grad(**point)
    assert np.isclose(value, scalar_value)
    flat = np.concatenate([g.ravel() for g in grads])
    assert_close(flat, np.array(scalar_grads), 1e-12)


def test_generated_source_does_not_grow_with_the_layer_sizes():
    build = runpy.run_path(str(EXAMPLES / "vectorised_mlp.py"))["vectorised_mlp"]
    small = bp.compile(build(784, 8, 10)).source
    large = bp.compile(build(784, 256, 10)).source
    assert re.sub(r"\d+", "0", small) == re.sub(r"\d+", "0", large)
    assert len(small.splitlines()) == len(large.splitlines())


def test_one_shape_generic_module_runs_at_two_sizes():
    module = bp.compile(runpy.run_path(str(EXAMPLES / "least_squares.py"))["model"]).load()
    rng = np.random.default_rng(5)
    for m, n in [(5, 2), (40, 7)]:
        A, x, b = rng.normal(size=(m, n)), rng.normal(size=(n, 1)), rng.normal(size=(m, 1))
        value, (x_bar,) = module.value_and_grad(x, A, b)
        assert np.isclose(value, np.sum((A @ x - b) ** 2))
        assert_close(x_bar, 2 * A.T @ (A @ x - b), 1e-12)
        assert x_bar.shape == (n, 1)


def test_mismatched_matrix_shapes_are_refused_with_the_expected_shape():
    module = bp.compile(runpy.run_path(str(EXAMPLES / "least_squares.py"))["model"]).load()
    with pytest.raises(ValueError, match=r"A must have shape \(3, 2\), or \(\.\.\., 3, 2\) for a batch; got \(3, 4\)"):
        module.value_and_grad(np.zeros((2, 1)), np.zeros((3, 4)), np.zeros((3, 1)))
    mlp = bp.compile(runpy.run_path(str(EXAMPLES / "vectorised_mlp.py"))["model"]).load()
    with pytest.raises(ValueError, match=r"x must have shape \(3, 1\).*got \(10, 3\)"):
        mlp.value_and_grad(np.zeros((4, 3)), np.zeros((4, 1)), np.zeros((2, 4)), np.zeros((2, 1)),
                           np.zeros((10, 3)), np.zeros((10, 2, 1)))


def test_float32_matrices_stay_float32():
    module = bp.compile(runpy.run_path(str(EXAMPLES / "vectorised_mlp.py"))["model"]).load()
    rng = np.random.default_rng(2)
    args = [rng.normal(size=s).astype(np.float32) for s in [(4, 3), (4, 1), (2, 4), (2, 1), (5, 3, 1), (5, 2, 1)]]
    value, grads = module.value_and_grad(*args)
    assert all(g.dtype == np.float32 for g in grads)


def test_non_scalar_matrix_loss_is_refused():
    with pytest.raises(NonScalarLossError, match=r"shape \(3, 1\), not a scalar.*bp.sum"):
        bp.compile(S * u, wrt=[S], inputs=[u])


def test_matrix_step_shape_must_match():
    z = sp.MatrixSymbol("z", 2, 1)
    with pytest.raises(ModelError, match="step z is a 2x1 matrix but its expression has shape"):
        bp.compile(bp.Model("bad", [(z, S * u)], bp.sum(z), [S], [u]))


def test_dimension_of_a_constant_matrix_must_be_an_argument_size():
    k = sp.Symbol("k", integer=True)
    Q = sp.MatrixSymbol("Q", k, k)
    module = bp.compile(sp.Trace(Q + sp.Identity(k)), wrt=[Q]).load()
    assert np.isclose(module.value_and_grad(np.ones((4, 4)))[0], 8.0)
    j = sp.Symbol("j", integer=True)
    with pytest.raises(ModelError, match="dimension j is not the size of any matrix argument"):
        bp.compile(sp.Trace(Q) + bp.sum(sp.OneMatrix(j, 1)), wrt=[Q])



def test_a_product_with_the_identity_is_not_computed():
    """The trace's signal is the identity: its products with other signals fold away."""
    W, Aq = sp.MatrixSymbol("W", 3, 3), sp.MatrixSymbol("A", 3, 3)
    compiled = bp.compile(sp.Trace(W * Aq) + sp.Trace(W * W), wrt=[W], inputs=[Aq])
    body = compiled.source.split("def value_and_grad(")[1].split("\ndef ")[0]
    assert "np.eye" not in body and body.count("_matmul(") == 2  # W @ A and W @ W only
    rng = np.random.default_rng(4)
    w, a = rng.standard_normal((3, 3)), rng.standard_normal((2, 3, 3))
    _, (g,) = compiled.load().value_and_grad(w, a)
    np.testing.assert_allclose(g, np.sum(np.swapaxes(a, -1, -2), axis=0) + 2 * 2 * w.T, rtol=1e-12)

# ---- random matrix models ------------------------------------------------------------------------
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

# Parameters and data of every shape the generator asks for (2 and 3 rows or columns).
LEAVES = {(2, 3): [sp.MatrixSymbol("P23", 2, 3)], (3, 2): [sp.MatrixSymbol("P32", 3, 2)],
          (2, 2): [sp.MatrixSymbol("P22", 2, 2)], (3, 1): [sp.MatrixSymbol("d31", 3, 1)],
          (2, 1): [sp.MatrixSymbol("d21", 2, 1)], (1, 2): [sp.MatrixSymbol("d21", 2, 1).T],
          (1, 3): [sp.MatrixSymbol("d31", 3, 1).T], (3, 3): [sp.MatrixSymbol("P32", 3, 2) * sp.MatrixSymbol("P23", 2, 3)]}
ELEMENTWISE = [sp.sin, sp.tanh, bp.sigmoid, lambda z: sp.log(1 + z ** 2), bp.softplus]


@st.composite
def matrix_exprs(draw, shape, depth=3):
    r, c = shape
    choice = draw(st.integers(0, 5 if depth else 0))
    if choice == 0:
        return draw(st.sampled_from(LEAVES.get(shape) or [sp.OneMatrix(r, c)]))
    if choice == 1:
        k = draw(st.sampled_from([2, 3]))
        return draw(matrix_exprs((r, k), depth - 1)) * draw(matrix_exprs((k, c), depth - 1))
    if choice == 2:
        return draw(matrix_exprs((r, c), depth - 1)) + draw(matrix_exprs((r, c), depth - 1))
    if choice == 3:
        return sp.hadamard_product(draw(matrix_exprs((r, c), depth - 1)), draw(matrix_exprs((r, c), depth - 1)))
    if choice == 4:
        return draw(matrix_exprs((c, r), depth - 1)).T
    return draw(matrix_exprs((r, c), depth - 1)).applyfunc(draw(st.sampled_from(ELEMENTWISE)))


@st.composite
def matrix_losses(draw):
    a = sp.Symbol("a")
    kind = draw(st.integers(0, 2))
    if kind == 0:
        return bp.sum(draw(matrix_exprs((2, 2)))) * a
    if kind == 1:
        return sp.Trace(draw(matrix_exprs((2, 2)))) + a ** 2
    return draw(matrix_exprs((1, 2))) * draw(matrix_exprs((2, 1)))


@pytest.mark.filterwarnings("ignore::backpropc.errors.UnusedWrtWarning")
@given(matrix_losses())
def test_random_matrix_models_agree_with_the_scalar_path(loss):
    free = {s for s in loss.atoms(sp.MatrixSymbol, sp.Symbol) if s.name in ("P23", "P32", "P22", "a")}
    wrt = sorted(free, key=lambda s: s.name)
    inputs = sorted({s for s in loss.atoms(sp.MatrixSymbol) if s.name.startswith("d")}, key=lambda s: s.name)
    if not wrt:
        return
    model = bp.Model("random", [], loss, wrt, inputs)
    module = bp.compile(model).load()
    scalar = scalar_model(model)
    scalar_module = bp.compile(scalar.model).load()
    rng = np.random.default_rng(0)
    point = random_point(module, rng, 3, default=(-1, 1))
    value, grads = module.value_and_grad(**point)
    flat = scalar.flatten(point)
    scalar_value, scalar_grads = scalar_module.value_and_grad(**{k: flat[k] for k in scalar_module.ARGS})
    by_entry = dict(zip(scalar_module.WRT, scalar_grads))
    assert np.isclose(value, scalar_value, rtol=1e-10)
    for w, g in zip(wrt, grads):
        assert np.shape(g) == np.shape(point[str(w)])
        assert_close(g, scalar.gather(w, by_entry), 1e-9, atol=1e-9, what=f"d/d{w} of {loss}")
    backprop, finite = directional_derivatives(module, point, grads, rng).T
    assert_close(backprop, finite, 1e-5, atol=1e-7, what=f"{loss} vs finite differences")


def test_a_block_matrix_is_refused_by_name():
    with pytest.raises(ModelError, match="BlockMatrix is not supported in matrix expressions"):
        bp.compile(sp.Trace(sp.BlockMatrix([[S, P]]) * sp.BlockMatrix([[S], [P]])), wrt=[S])


def test_indexing_a_symbolic_product_says_to_use_the_product_itself():
    m, n = sp.symbols("m n", integer=True, positive=True)
    A, x = sp.MatrixSymbol("A", m, n), sp.MatrixSymbol("x", n, 1)
    with pytest.raises(ModelError, match=r"needs numeric indices .*use the 1x1 product itself, or bp.sum of it"):
        bp.compile(((A * x).T * (A * x))[0, 0], wrt=[x], inputs=[A])


@pytest.mark.filterwarnings("ignore::backpropc.errors.UnusedWrtWarning")
@settings(max_examples=30, deadline=None, derandomize=True, database=None)
@given(matrix_losses())
def test_random_matrix_models_hessians_agree_with_their_products(loss):
    """The Hessian over matrix parameters, through its structure (straight-line or product by
    product), column by column against hvp_flat, which reads no structure, symmetric, and times a
    direction against central differences of the gradient."""
    free = {s for s in loss.atoms(sp.MatrixSymbol, sp.Symbol) if s.name in ("P23", "P32", "P22", "a")}
    wrt = sorted(free, key=lambda s: s.name)
    inputs = sorted({s for s in loss.atoms(sp.MatrixSymbol) if s.name.startswith("d")}, key=lambda s: s.name)
    if not wrt:
        return
    module = bp.compile(bp.Model("random", [], loss, wrt, inputs), derivatives=("hvp", "hessian")).load()
    point = random_point(module, np.random.default_rng(1), 3, default=(-1, 1))
    theta = module.pack(*[point[w] for w in module.WRT])
    data = [point[a] for a in module.ARGS if a not in module.WRT]
    dense = module.hessian_flat(theta, *data)
    assert np.array_equal(dense, dense.T)
    for k, column in enumerate(np.eye(theta.size)):
        assert_close(dense[:, k], module.hvp_flat(theta, column, *data), 1e-10, atol=1e-10, what=f"H column {k} of {loss}")
    p, h = np.random.default_rng(2).standard_normal(theta.size), 1e-6  # and the products, against differences
    differences = (module.value_and_grad_flat(theta + h * p, *data)[1] - module.value_and_grad_flat(theta - h * p, *data)[1]) / (2 * h)
    assert_close(dense @ p, differences, 1e-5, atol=1e-6, what=f"H p of {loss} vs differences")
