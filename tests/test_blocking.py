"""Cache blocking (backpropc.blocking): a Sum's range evaluated BLOCK entries at a time.

Blocks are made tiny here (BLOCK of 1 to 5 entries), so that every range runs in several
blocks, a last partial one included: every value, gradient and Hessian-vector product is
checked against sympy.diff of the Sum written out and against central finite differences
(test_arrays.check_model; with a batch of data, test_indexed_batches.check_batched, which also
sums the oracle over the examples), and against the same module with the range in one block.
"""

from __future__ import annotations

import re
import warnings
from contextlib import contextmanager

import numpy as np
import pytest
import sympy as sp
from hypothesis import given
from hypothesis import strategies as st
from test_arrays import (
    FUNCTIONS,
    ROSENBROCK,
    A,
    X,
    _summand,
    a,
    check_model,
    i,
    j,
    m,
    n,
    t,
    w,
    x,
    y,
    z,
)

import backpropc as bp
from backpropc import blocking

P = sp.IndexedBase("P", shape=(n, 4))
POWELL = sp.Sum((P[i, 0] + 10 * P[i, 1]) ** 2 + 5 * (P[i, 2] - P[i, 3]) ** 2 + (P[i, 1] - 2 * P[i, 2]) ** 4
                + 10 * (P[i, 0] - P[i, 3]) ** 4, (i, 0, n - 1))
BROYDEN = (((3 - 2 * x[0]) * x[0] - 2 * x[1] + 1) ** 2 + ((3 - 2 * x[n - 1]) * x[n - 1] - x[n - 2] + 1) ** 2
           + sp.Sum(((3 - 2 * x[i]) * x[i] - x[i - 1] - 2 * x[i + 1] + 1) ** 2, (i, 1, n - 2)))

# (loss, wrt, shapes, sizes): each is blocked
BLOCKED = {
    "rosenbrock": (ROSENBROCK, [x], {"x": (9,)}, {n: 9}),
    "powell, columns of a 2-D array": (POWELL, [P], {"P": (7, 4)}, {n: 7}),
    "broyden, fixed entries beside the range": (BROYDEN, [x], {"x": (8,)}, {n: 8}),
    "strided and shifted": (sp.Sum(x[2 * i + 1] * sp.exp(x[2 * i]) + x[i + 3] * x[i] ** 2, (i, 0, 4)),
                            [x], {"x": (11,)}, {n: 11}),
    "the index's own values": (sp.Sum(i * x[i] ** 2 + sp.sin(i * x[i + 1]), (i, 2, n - 2)), [x], {"x": (10,)}, {n: 10}),
    "two Sums over different ranges": (sp.Sum(x[i] ** 2, (i, 0, n - 1)) + sp.Sum(sp.sin(x[j + 1] * x[j]), (j, 0, n - 3)),
                                       [x], {"x": (7,)}, {n: 7}),
    "a scalar parameter beside the array": (sp.Sum((a * x[i] - sp.cos(x[i + 1])) ** 2, (i, 0, n - 2)) + a ** 2,
                                            [x, a], {"x": (8,), "a": ()}, {n: 8}),
    "a summand without the index": (sp.Sum(w ** 2, (i, 0, n - 1)) + sp.Sum(x[i], (i, 0, n - 1)), [w, x],
                                    {"w": (), "x": (6,)}, {n: 6}),
    "piecewise inside the summand": (sp.Sum(sp.Piecewise((x[i] ** 2, x[i + 1] > 0), (sp.sin(x[i]), True)),
                                            (i, 0, n - 2)), [x], {"x": (9,)}, {n: 9}),
    "columns and a row of 2-D arrays": (sp.Sum(X[i, 0] * X[i, 2] ** 2 - sp.cos(X[i, 1]), (i, 1, n - 1))
                                        + sp.Sum(A[1, i] ** 3 * A[i, 0], (i, 0, 3)), [X, A],
                                        {"X": (6, 3), "A": (6, 5)}, {n: 6, m: 5}),
}


@contextmanager
def block_of(size: int):
    """Modules compiled inside run their ranges `size` entries at a time."""
    saved = blocking.BLOCK
    blocking.BLOCK = size
    try:
        yield
    finally:
        blocking.BLOCK = saved


@pytest.mark.parametrize("size", [1, 2, 5])
@pytest.mark.parametrize("name", list(BLOCKED))
def test_blocked_ranges_match_sympy_and_finite_differences(name, size):
    loss, wrt, shapes, sizes = BLOCKED[name]
    with block_of(size), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = check_model(loss, wrt, shapes, sizes, seed=size)
    assert all("for _lo in range(0, " in function(bp.compile(loss, wrt=wrt, derivatives=("grad", "hvp")), f)
               for f in ("forward", "value_and_grad", "hvp"))
    assert module.BLOCK == size


def function(compiled, name: str) -> str:
    """The source of one function of a compiled module."""
    return compiled.source.split(f"\ndef {name}(")[1].split("\ndef ")[0]


@pytest.mark.parametrize("name", ["powell, columns of a 2-D array", "broyden, fixed entries beside the range"])
def test_a_negated_signal_is_subtracted_from_its_window(name):
    """-(c7_bar + c6_bar) into X_bar[:, 3] is a subtraction of c7_bar + c6_bar: no pass to negate
    (the signals' values are checked against sympy.diff by the test above)."""
    loss, wrt, *_ = BLOCKED[name]
    adds = [line for line in function(bp.compile(loss, wrt=wrt), "value_and_grad").splitlines()
            if "_add_windows(" in line]
    assert adds and all(re.search(r"\(-\w+, |\(-\(", line) is None for line in adds), adds
    assert any(line.rstrip().endswith(",))") and "), ((" in line for line in adds), adds  # a subtracted tuple


@pytest.mark.parametrize("name", ["rosenbrock", "broyden, fixed entries beside the range",
                                  "a scalar parameter beside the array"])
def test_every_function_agrees_with_the_range_in_one_block(name):
    loss, wrt, shapes, _ = BLOCKED[name]
    with block_of(3):
        compiled = bp.compile(loss, wrt=wrt, derivatives=("grad", "hvp"))
    module = compiled.load()
    rng = np.random.default_rng(1)
    values = [rng.uniform(-1, 1, shapes[str(v)]) if shapes[str(v)] else float(rng.uniform(-1, 1)) for v in wrt]
    directions = [rng.normal(size=np.shape(v)) if np.ndim(v) else 0.7 for v in values]
    blocked = module.forward(*values), module.value_and_grad(*values), module.hvp(*values, *directions)
    module.BLOCK = 10 ** 6  # the same module, every range in one block
    whole = module.forward(*values), module.value_and_grad(*values), module.hvp(*values, *directions)
    np.testing.assert_allclose(blocked[0], whole[0], rtol=1e-13)
    for got, want in zip(blocked[1:], whole[1:]):
        np.testing.assert_allclose(got[0], want[0], rtol=1e-13)
        for g, h in zip(got[1:], want[1:]):
            for u, v in zip(g, h):
                np.testing.assert_allclose(u, v, rtol=1e-12, atol=1e-13)


def test_an_empty_range_and_a_range_of_one_entry():
    with block_of(2):
        module = bp.compile(ROSENBROCK, wrt=[x]).load()
    value, (g,) = module.value_and_grad(np.array([0.5]))  # no terms at all
    assert value == 0 and np.array_equal(g, [0.0])
    value, (g,) = module.value_and_grad(np.array([0.5, -0.25]))
    assert value == pytest.approx(100 * (-0.25 - 0.25) ** 2 + 0.25)


def test_float32_stays_float32():
    with block_of(2):
        module = bp.compile(ROSENBROCK, wrt=[x], derivatives=("grad", "hvp")).load()
    v = np.linspace(-1, 1, 7, dtype=np.float32)
    value, (g,) = module.value_and_grad(v)
    assert np.asarray(value).dtype == np.float32 and g.dtype == np.float32
    assert module.hvp(v, np.ones(7, np.float32))[2][0].dtype == np.float32


def test_out_of_range_windows_are_reported_as_before():
    with block_of(2):
        module = bp.compile(sp.Sum(x[i + 2] * x[i], (i, 0, 5)), wrt=[x]).load()
    with pytest.raises(IndexError, match=r"x\[...\] reaches index 7 along axis 0, but x has 6 entries"):
        module.value_and_grad(np.ones(6))


@pytest.mark.parametrize("loss, wrt, shapes, why", [
    (sp.log(1 + sp.Sum(x[i] ** 2, (i, 0, n - 1))), [x], {"x": (5,)}, "the backward pass needs the total first"),
    (sp.Sum(sp.Sum(A[i, j] * z[j], (j, 0, m - 1)) ** 2 + w * i, (i, 0, n - 1)), [z, w],
     {"z": (4,), "w": (), "A": (5, 4)}, "a nested Sum"),
    (sp.Sum(x[4 - i] * x[i] ** 2, (i, 0, 4)), [x], {"x": (5,)}, "a gather: the reversed index"),
])
def test_what_is_not_blocked_is_computed_as_before(loss, wrt, shapes, why):
    with block_of(2):
        compiled = bp.compile(loss, wrt=wrt)
        check_model(loss, wrt, shapes, {n: 5, m: 4})
    assert "for _lo in" not in function(compiled, "value_and_grad"), why


@given(st.lists(st.tuples(st.integers(-3, 3), st.integers(0, 2), st.sampled_from(range(len(FUNCTIONS))),
                          st.integers(1, 3)), min_size=1, max_size=4),
       st.integers(4, 9), st.integers(1, 4), st.integers(0, 2 ** 16))
def test_random_summands_in_random_blocks(terms, size, block, seed):
    summand = _summand([(c, s, FUNCTIONS[f], p) for c, s, f, p in terms])
    if summand == 0:
        return
    with block_of(block), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check_model(sp.Sum(summand, (i, 0, n - 3)), [x], {"x": (size,)}, {n: size}, seed=seed)


# ---- data with a batch: each example's range runs in the same blocks ----------------------------
s, c = sp.symbols("s c")
Y = sp.IndexedBase("Y", shape=(n, 2))
BATCHED = {  # (loss, wrt, parameters, data, sizes)
    "a line fit to a batch of series": (s * sp.Sum((a * t[i] + w - y[i]) ** 2, (i, 0, n - 1)), [a, w],
                                        {"a": (), "w": ()}, {"t": (6,), "y": (6,), "s": ()}, {n: 6}),
    "a per-example scalar inside the summand, an indexed parameter":
        (sp.Sum(s * (x[i] - y[i]) ** 2 + c * x[i + 1] * x[i], (i, 0, n - 2)), [x, c], {"x": (5,), "c": ()},
         {"y": (5,), "s": ()}, {n: 5}),
    "fixed entries of batched data": (sp.Sum((x[i] - y[0]) ** 2 * sp.exp(y[n - 1]), (i, 0, n - 1)) + x[0] * y[1],
                                      [x], {"x": (4,)}, {"y": (4,)}, {n: 4}),
    "a batch that only adds to the loss": (sp.Sum(x[i] ** 2 + x[i] * x[i + 1], (i, 0, n - 2)) + s + a ** 2 * x[1],
                                           [x, a], {"x": (4,), "a": ()}, {"s": ()}, {n: 4}),
    "a per-example scalar sent to a whole slice": (sp.Sum(s * x[i] + x[i] ** 2 * y[i], (i, 1, n - 1)), [x],
                                                   {"x": (5,)}, {"y": (5,), "s": ()}, {n: 5}),
    "columns of batched 2-D data": (sp.Sum((a * Y[i, 0] + w - Y[i, 1]) ** 2, (i, 0, n - 1)), [a, w],
                                    {"a": (), "w": ()}, {"Y": (4, 2)}, {n: 4}),
}


@pytest.mark.parametrize("batch", [(4,), (2, 3)])
@pytest.mark.parametrize("size", [1, 3])
@pytest.mark.parametrize("name", list(BATCHED))
def test_blocked_ranges_over_a_batch_of_data(name, size, batch):
    from test_indexed_batches import check_batched

    loss, wrt, params, data, sizes = BATCHED[name]
    with block_of(size):
        check_batched(loss, wrt, params, data, sizes, batch, seed=size)
    assert "for _lo in range(0, max(" in function(bp.compile(loss, wrt=wrt), "value_and_grad")


@pytest.mark.parametrize("name", ["a line fit to a batch of series", "a batch that only adds to the loss"])
def test_the_mean_over_a_batch_in_blocks(name):
    """The mean's seed 1/N comes from the data's shapes, before the loop."""
    from test_indexed_batches import check_batched

    loss, wrt, params, data, sizes = BATCHED[name]
    with block_of(2):
        check_batched(loss, wrt, params, data, sizes, (2, 3), reduction="mean")
    assert "for _lo in range(0, max(" in function(bp.compile(loss, wrt=wrt, reduction="mean"), "value_and_grad")


def test_an_empty_range_still_counts_every_example():
    """With data, a range without entries runs once: each example keeps its loss a**2."""
    loss = sp.Sum((a * t[i] - sp.cos(x[i + 2])) ** 2, (i, 0, n - 3)) + a ** 2
    with block_of(2):
        module = bp.compile(bp.Model("m", loss=loss, wrt=[x, a], inputs=[t])).load()
    value, (gx, ga) = module.value_and_grad(np.array([0.5, 1.0]), 0.7, np.ones((3, 2)))
    assert value == pytest.approx(3 * 0.49) and ga == pytest.approx(3 * 1.4) and np.array_equal(gx, [0.0, 0.0])
    assert np.shape(module.forward(np.array([0.5, 1.0]), 0.7, np.ones((3, 2)))) == (3,)


def test_hessian_vector_products_over_a_batch_of_data_in_blocks():
    loss, wrt, *_ = BATCHED["a per-example scalar inside the summand, an indexed parameter"]
    with block_of(2):
        module = bp.compile(loss, wrt=wrt, derivatives=("grad", "hvp")).load()
    assert "for _lo in" in function(bp.compile(loss, wrt=wrt, derivatives=("grad", "hvp")), "hvp")
    rng = np.random.default_rng(3)
    args = [rng.uniform(-1, 1, 5), 0.4, rng.uniform(0.5, 1.5, (3,)), rng.uniform(0.5, 1.5, (3, 5))]
    directions = [rng.normal(size=5), -0.3]
    blocked = module.hvp(*args, *directions)
    module.BLOCK = 10 ** 6
    whole = module.hvp(*args, *directions)
    np.testing.assert_allclose(blocked[0], whole[0], rtol=1e-13)
    for got, want in zip(blocked[1] + blocked[2], whole[1] + whole[2]):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-13)
    # and the product is the Hessian's: central differences of the gradient along the direction
    h = 1e-6
    up = module.value_and_grad(args[0] + h * directions[0], args[1] + h * directions[1], *args[2:])[1]
    down = module.value_and_grad(args[0] - h * directions[0], args[1] - h * directions[1], *args[2:])[1]
    for got, u, d in zip(blocked[2], up, down):
        np.testing.assert_allclose(got, (np.asarray(u) - np.asarray(d)) / (2 * h), rtol=1e-6, atol=1e-7)


def test_fuzz_found_blocked_models_order_and_sum_what_comes_after_the_range():
    """Found by a fuzzing campaign: the signals computed after the range from a total
    (exp(Sum(x[i])), a Sum squared) were added into the gradient before their statements
    (UnboundLocalError); a Hessian-vector product's accumulator, already summed over a batch of
    data, was summed over it again (B times too large, with sum and with mean)."""
    n = sp.Symbol("n", integer=True, positive=True)
    x, t = sp.IndexedBase("x", shape=(n,)), sp.IndexedBase("t", shape=(n,))
    i = sp.Symbol("i", integer=True)
    v = np.linspace(0.1, 0.4, 4)
    for loss, value, grad in [(sp.exp(sp.Sum(x[i], (i, 0, n - 1))), np.exp(1.0), np.exp(1.0) * np.ones(4)),
                              (sp.Sum(x[i + 1] + x[i], (i, 0, n - 2)) ** 2, 2.25, [3.0, 6.0, 6.0, 3.0])]:
        got, (g,) = bp.compile(loss, wrt=[x]).load().value_and_grad(v)
        assert got == pytest.approx(value) and np.allclose(g, grad)
    loss = sp.Sum(sp.cos((sp.sin(x[i]) + sp.Rational(3, 2)) ** -3), (i, 0, n - 1)) + t[0]
    u = sp.Symbol("u")
    second = float(sp.diff(sp.cos((sp.sin(u) + sp.Rational(3, 2)) ** -3), u, 2).subs(u, 0.1))
    direction = np.array([1.0, 0.0, 0.0, 0.0])
    for reduction, copies in (("sum", 3), ("mean", 1)):
        module = bp.compile(loss, wrt=[x], derivatives=("grad", "hvp"), reduction=reduction).load()
        product = module.hvp(v, np.ones((3, 4)), direction)[2][0]
        np.testing.assert_allclose(product, [copies * second, 0, 0, 0], rtol=1e-12, atol=1e-15)


def test_a_function_over_whole_arrays_first_keeps_freed_memory_for_reuse():
    """A function of an indexed model over whole arrays (a nested Sum's pairs) starts by freeing
    one large array, which keeps glibc from returning the memory its temporaries reuse; a
    blocked one does so in the zeros of a large gradient (not at small n, where it would cost a
    call a few percent); a model of numbers does not pay for it."""
    first = "np.empty(1 << 21)"
    nested = bp.compile(sp.Sum(sp.Sum((x[i] - x[j]) ** 2, (j, i + 1, n - 1)), (i, 0, n - 1)), wrt=[x],
                        derivatives=("grad", "hvp")).source
    for name in ("value_and_grad", "hvp"):
        body = nested.split(f"\ndef {name}(")[1].split("\ndef ")[0].splitlines()[2:]  # after the docstring
        statements = [line.strip() for line in body if not line.strip().startswith("#")]
        assert statements[0].startswith(first), (name, statements[:2])
    blocked = bp.compile(ROSENBROCK, wrt=[x]).source
    body = blocked.split("\ndef value_and_grad(")[1].split("\ndef ")[0]
    assert first not in body and "_zeros_for(x)" in body
    zeros = blocked.split("\ndef _zeros_for(")[1].split("\ndef ")[0]
    assert "if x.size > 1 << 15:" in zeros and first in zeros
    numbers = bp.compile((a - w) ** 2, wrt=[a, w]).source
    assert first not in numbers.split("\ndef value_and_grad(")[1].split("\ndef ")[0]
