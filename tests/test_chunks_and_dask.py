"""Large batches in chunks, and the same generated module on Dask arrays.

Chunked and unchunked evaluation must agree to rounding, whatever the batch size around the
chunk boundary, the broadcasting, the reduction and the dtype; on Dask arrays the module must stay
lazy and agree with NumPy."""

import runpy
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import pytest
from oracle import random_point

import backpropc as bp

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
NAMES = sorted(p.stem for p in EXAMPLES.glob("*.py") if not p.stem.endswith("_grad"))  # not compiled output


def load(name, reduction="sum"):
    namespace = runpy.run_path(str(EXAMPLES / f"{name}.py"))
    return bp.compile(namespace["model"], reduction=reduction).load(), namespace.get("DOMAINS", {})


def both_ways(module, point, chunk):
    module.CHUNK = chunk
    chunked = module.value_and_grad(**point), module.forward(**point)
    module.CHUNK = 0
    whole = module.value_and_grad(**point), module.forward(**point)
    return chunked, whole


def assert_same(chunked, whole, rtol):
    (value, grads), per_example = chunked
    (value0, grads0), per_example0 = whole
    assert np.isclose(value, value0, rtol=rtol, atol=0)
    for g, g0 in zip(grads, grads0):
        assert np.shape(g) == np.shape(g0) and np.asarray(g).dtype == np.asarray(g0).dtype
        assert np.allclose(g, g0, rtol=rtol, atol=rtol * np.max(np.abs(g0)))
    assert np.allclose(per_example, per_example0, rtol=rtol, atol=0)


@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize("name", NAMES)
def test_chunked_equals_unchunked_around_the_chunk_boundary(name, reduction):
    module, domains = load(name, reduction)
    rng = np.random.default_rng(len(name))
    for batch in (199, 200, 201, 399, 400, 401, 1000):
        assert_same(*both_ways(module, random_point(module, rng, batch, domains, default=(0.2, 1.0)), 100), rtol=1e-12)


def test_chunked_equals_unchunked_with_broadcasting_float32_and_data_gradients():
    import sympy as sp

    w, x, t, s = sp.symbols("w x t s")
    module = bp.compile((bp.sigmoid(w * x) - t) ** 2 * s, wrt=[w, x], inputs=[t, s]).load()
    rng = np.random.default_rng(0)
    for dtype, rtol in ((np.float64, 1e-12), (np.float32, 1e-5)):
        point = {"w": np.float32(0.7) if dtype is np.float32 else 0.7,
                 "x": rng.normal(size=(450, 1)).astype(dtype),      # broadcasts along the second axis
                 "t": rng.normal(size=(450, 3)).astype(dtype),
                 "s": rng.normal(size=(3,)).astype(dtype)}          # broadcasts along the first axis
        chunked, whole = both_ways(module, point, 100)
        assert_same(chunked, whole, rtol)
        assert chunked[0][1][1].shape == (450, 1)  # the data gradient is put back together


# Indexed models (examples/*_indexed.py) take NumPy arrays and no batch: nothing to chunk or defer.
@pytest.mark.parametrize("name", [n for n in NAMES if not n.endswith("_indexed")])
def test_dask_arrays_give_lazy_results_equal_to_numpy(name):
    module, domains = load(name)
    point = random_point(module, np.random.default_rng(2), 400, domains, default=(0.2, 1.0))
    lazy = {a: v if a in module.WRT else da.from_array(v, chunks=(100,) + np.shape(v)[1:])
            for a, v in point.items()}
    value, grads = module.value_and_grad(**lazy)
    has_data = len(module.ARGS) > len(module.WRT)  # without data there is nothing to be lazy over
    assert isinstance(value, da.Array) == has_data  # nothing computed yet
    with dask.config.set(scheduler="threads"):
        value, grads = dask.compute(value, grads)
        per_example = dask.compute(module.forward(**lazy))[0]
    value0, grads0 = module.value_and_grad(**point)
    assert np.isclose(value, value0, rtol=1e-12)
    for g, g0 in zip(grads, grads0):
        assert np.shape(g) == np.shape(g0)
        assert np.allclose(g, g0, rtol=1e-12, atol=1e-12 * np.max(np.abs(g0)))
    assert np.allclose(per_example, module.forward(**point), rtol=1e-12)


def test_only_a_module_with_data_or_a_fast_path_on_floats_carries_the_chunks():
    """Chunks split a batch of data: a module whose arguments are all parameters and that has no
    path on Python floats (here re-rolled into lanes) goes without them, and a batch of
    parameter points is still evaluated, as one."""
    import sympy as sp

    x = sp.symbols("x0:80")
    loss = sp.Add(*[100 * (x[k + 1] - x[k] ** 2) ** 2 + (1 - x[k]) ** 2 for k in range(79)])
    lanes = bp.compile(loss, wrt=list(x))
    assert "_lane" in lanes.source and "_in_chunks" not in lanes.source and "CHUNK" not in lanes.source
    module = lanes.load()
    rng = np.random.default_rng(0)
    points = rng.uniform(0.5, 1.5, (80, 5))
    value, grads = module.value_and_grad(*points)
    singles = [module.value_and_grad(*points[:, k]) for k in range(5)]
    assert np.isclose(value, sum(v for v, _ in singles), rtol=1e-12)
    assert np.allclose(np.array(grads), np.array([g for _, g in singles]).T, rtol=1e-12)
    y, t = sp.symbols("y t")
    with_data = bp.compile(loss + (x[0] * y - t) ** 2, wrt=list(x), inputs=[y, t]).source
    assert "_in_chunks(" in with_data and "CHUNK = " in with_data
    floats = bp.compile((x[0] - x[1] ** 2) ** 2, wrt=[x[0], x[1]]).source  # its fast path
    assert "_value_and_grad_scalar" in floats and "_in_chunks(value_and_grad" in floats
