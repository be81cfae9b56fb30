"""Indexed models over data: one decay fitted to long series, with cache blocking and without.

    python benchmarks/indexed_data.py [--quick] [--repeats 9] [--out benchmarks/results]

The model is examples/decay_series_indexed.py: L = sum_i (A exp(-k t[i]) - y[i])**2 / 2 over n
samples, with t of shape (n,) and y of shape (n,) or (series, n) (a batch of series). At each
size, in this process on the same data, timed in turn round after round (medians):
- backpropc: one call of the generated value_and_grad, each Sum's range in blocks of BLOCK;
- the same module with BLOCK past the range (the range in one block, as without blocking);
- hand-written vectorised NumPy of the value and the gradient;
- jax.jit(jax.value_and_grad) of the same loss (CPU, float64), when installed;
and the peak memory of one call of each NumPy contender (tracemalloc). Prints a table and
writes indexed_data.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import runpy
from pathlib import Path

import arrays
import numpy as np

import backpropc as bp

ROOT = Path(__file__).resolve().parent.parent
SIZES = ((1, 10 ** 4), (1, 10 ** 6), (8, 2 * 10 ** 5))  # (series, samples per series)
QUICK_SIZES = ((1, 1000), (3, 500))
A, K = 2.0, 1.3


def data(series: int, n: int, seed=0):
    rng = np.random.default_rng(seed)
    t = np.linspace(0.0, 3.0, n)
    y = 2.0 * np.exp(-1.3 * t) + rng.normal(0.0, 0.01, (series, n))
    return t, y[0] if series == 1 else y


def numpy_value_and_grad(t, y):
    e = np.exp(-K * t)
    r = A * e - y
    return 0.5 * np.sum(r * r), (np.sum(r * e), np.sum(r * (-A * t * e)))


def jax_value_and_grad():
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        return None
    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_platforms", "cpu")
    g = jax.jit(jax.value_and_grad(lambda p, t, y: 0.5 * jnp.sum((p[0] * jnp.exp(-p[1] * t) - y) ** 2)))
    p = jnp.array([A, K])
    return lambda t, y: jax.block_until_ready(g(p, t, y))


def run(quick: bool, repeats: int) -> dict:
    module = bp.compile(runpy.run_path(str(ROOT / "examples" / "decay_series_indexed.py"))["model"]).load()
    block = module.BLOCK
    jax_fn = None if quick else jax_value_and_grad()

    def blocked(v):
        return module.value_and_grad(A, K, *v)

    def one_block(v):
        module.BLOCK = 2 ** 62
        try:
            return module.value_and_grad(A, K, *v)
        finally:
            module.BLOCK = block

    contenders = {"backpropc_s": blocked, "one_block_s": one_block,
                  "numpy_s": lambda v: numpy_value_and_grad(*v)}
    if jax_fn is not None:
        contenders["jax_s"] = lambda v: jax_fn(*v)
    rows = []
    for series, n in QUICK_SIZES if quick else SIZES:
        v = data(series, n)
        value, grads = blocked(v)
        hand_value, hand_grads = numpy_value_and_grad(*v)
        assert np.allclose(value, hand_value, rtol=1e-9) and np.allclose(grads, hand_grads, rtol=1e-8), \
            f"series {series}, n {n}: backpropc and hand-written NumPy disagree"
        row = {"series": series, "n": n}
        if not quick:
            row.update(arrays.interleaved_medians(contenders, v, repeats, 20 if series * n <= 10 ** 4 else 1))
        row.update({f"peak_{key[:-2]}_bytes": arrays.peak_bytes(contenders[key], v)
                    for key in ("backpropc_s", "one_block_s", "numpy_s")})
        rows.append(row)
        print(format_row(row), flush=True)
    return {"python": platform.python_version(), "numpy": np.__version__, "machine": platform.machine(),
            "load_average": os.getloadavg(), "block": block, "jax": jax_fn is not None, "quick": quick,
            "rows": rows}


HEADER = (f"{'series':>6} {'n':>9} {'backpropc':>10} {'one block':>10} {'NumPy':>10} {'jax.jit':>10} "
          f"{'x one block':>11} {'x NumPy':>8} {'x jax':>6} {'peak MB (blocked / one block / NumPy)':>38}")


def format_row(r: dict) -> str:
    t = arrays._time
    ours = r.get("backpropc_s")
    ratio = {key: f"{ours / r[key]:.2f}" if ours and r.get(key) else "-" for key in ("one_block_s", "numpy_s", "jax_s")}
    memory = " / ".join(f"{r[f'peak_{k}_bytes'] / 1e6:.1f}" for k in ("backpropc", "one_block", "numpy"))
    return (f"{r['series']:>6} {r['n']:>9} {t(ours):>10} {t(r.get('one_block_s')):>10} {t(r.get('numpy_s')):>10} "
            f"{t(r.get('jax_s')):>10} {ratio['one_block_s']:>11} {ratio['numpy_s']:>8} {ratio['jax_s']:>6} {memory:>38}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, no timing: a smoke test")
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)
    print(HEADER)
    results = run(args.quick, args.repeats)
    if not args.quick:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "indexed_data.json").write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {args.out / 'indexed_data.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
