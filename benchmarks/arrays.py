"""Indexed models (IndexedBase and Sum) against hand-written vectorised NumPy and jax.jit.

    python benchmarks/arrays.py [--quick] [--repeats 15] [--out benchmarks/results]

Four problems, each written once with sympy.IndexedBase and sympy.Sum over a symbolic length n:
- extended Rosenbrock, chained form: sum_i 100 (x[i+1] - x[i]^2)^2 + (1 - x[i])^2 (MGH 21);
- extended Powell singular (MGH 22), x as q x 4 rows (n = 4q);
- Broyden tridiagonal (MGH 30), the sum of squares of its n residuals;
- a Lennard-Jones cluster, the triangular double Sum over atom pairs (X of shape (atoms, 3)).
At each n (LJ: number of atoms), in this process on the same data:
- backpropc: one call of the generated value_and_grad (one module serves every n);
- hand-written NumPy: value and gradient written by hand, vectorised;
- jax.jit(jax.value_and_grad) of the same function in jax.numpy (CPU, float64), when installed;
- compile time of the model with that n as a number in the shape, and the module's line count
  (the same at every n);
- at the largest n, the peak memory of one call (tracemalloc) against hand-written NumPy, and
  cache blocking's effect: the module against itself with every range in one block (BLOCK set
  past the range), in time and peak memory; and dot products in rows of 8192 against one BLAS
  call each, as the machine is and with every other core busy.
The three are timed in turn, round after round, and each reports its median, so that a change
of the machine's load affects them alike. Prints a table (medians, ratios against hand-written NumPy) and writes arrays.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import sympy as sp

import backpropc as bp

ROOT = Path(__file__).resolve().parent.parent
SIZES = (10, 100, 10 ** 4, 10 ** 6)
ATOMS = (13, 38, 100, 1000)
QUICK_SIZES, QUICK_ATOMS = (10, 100), (13, 38)
i, j = sp.symbols("i j", integer=True)


# ---- the models, with the length as a symbol (or a number, to time compilation per n) ---------------
def rosenbrock_model(n):
    x = sp.IndexedBase("x", shape=(n,))
    return bp.Model("rosenbrock", loss=sp.Sum(100 * (x[i + 1] - x[i] ** 2) ** 2 + (1 - x[i]) ** 2,
                                              (i, 0, n - 2)), wrt=[x])


def powell_model(n):
    q = n // 4 if isinstance(n, int) else n
    X = sp.IndexedBase("X", shape=(q, 4))
    term = ((X[i, 0] + 10 * X[i, 1]) ** 2 + 5 * (X[i, 2] - X[i, 3]) ** 2 + (X[i, 1] - 2 * X[i, 2]) ** 4
            + 10 * (X[i, 0] - X[i, 3]) ** 4)
    return bp.Model("powell", loss=sp.Sum(term, (i, 0, q - 1)), wrt=[X])


def broyden_model(n):
    x = sp.IndexedBase("x", shape=(n,))
    first = ((3 - 2 * x[0]) * x[0] - 2 * x[1] + 1) ** 2
    last = ((3 - 2 * x[n - 1]) * x[n - 1] - x[n - 2] + 1) ** 2
    inner = sp.Sum(((3 - 2 * x[i]) * x[i] - x[i - 1] - 2 * x[i + 1] + 1) ** 2, (i, 1, n - 2))
    return bp.Model("broyden", loss=first + inner + last, wrt=[x])


def lennard_jones_model(n):
    X = sp.IndexedBase("X", shape=(n, 3))
    r2 = sum((X[i, k] - X[j, k]) ** 2 for k in range(3))
    return bp.Model("lennard_jones", loss=sp.Sum(4 * (r2 ** -6 - r2 ** -3), (j, i + 1, n - 1), (i, 0, n - 1)),
                    wrt=[X])


# ---- hand-written NumPy ------------------------------------------------------------------------------
def rosenbrock_numpy(x):
    a = x[1:] - x[:-1] ** 2
    b = 1 - x[:-1]
    g = np.zeros_like(x)
    g[:-1] = -400 * a * x[:-1] - 2 * b
    g[1:] += 200 * a
    return np.sum(100 * a * a + b * b), g


def powell_numpy(X):
    a = X[:, 0] + 10 * X[:, 1]
    b = X[:, 2] - X[:, 3]
    c = X[:, 1] - 2 * X[:, 2]
    d = X[:, 0] - X[:, 3]
    c3, d3 = c ** 3, d ** 3
    g = np.empty_like(X)
    g[:, 0] = 2 * a + 40 * d3
    g[:, 1] = 20 * a + 4 * c3
    g[:, 2] = 10 * b - 8 * c3
    g[:, 3] = -10 * b - 40 * d3
    return np.sum(a * a + 5 * b * b + c3 * c + 10 * d3 * d), g


def broyden_numpy(x):
    padded = np.concatenate(([0.0], x, [0.0]))
    f = (3 - 2 * x) * x - padded[:-2] - 2 * padded[2:] + 1
    g = 2 * f * (3 - 4 * x)
    g[1:] -= 4 * f[:-1]  # x[i] is the right neighbour in f[i - 1] (coefficient -2)
    g[:-1] -= 2 * f[1:]  # and the left one in f[i + 1] (coefficient -1)
    return np.sum(f * f), g


def lennard_jones_numpy(X):
    """The dense form a NumPy user writes: all pairs as an (N, N, 3) difference, diagonal masked."""
    d = X[:, None, :] - X[None, :, :]
    r2 = np.einsum("ijk,ijk->ij", d, d)
    np.fill_diagonal(r2, np.inf)
    inv6 = r2 ** -3
    energy = 2 * np.sum(inv6 * inv6 - inv6)  # each pair twice in the dense form
    dr2 = 4 * (-6 * inv6 * inv6 + 3 * inv6) / r2  # dE/d(r2) per pair
    return energy, 2 * np.einsum("ij,ijk->ik", dr2, d)


# ---- JAX ---------------------------------------------------------------------------------------------
def jax_functions():
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        return None
    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_platforms", "cpu")

    def rosenbrock(x):
        return jnp.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)

    def powell(X):
        return jnp.sum((X[:, 0] + 10 * X[:, 1]) ** 2 + 5 * (X[:, 2] - X[:, 3]) ** 2
                       + (X[:, 1] - 2 * X[:, 2]) ** 4 + 10 * (X[:, 0] - X[:, 3]) ** 4)

    def broyden(x):
        padded = jnp.concatenate((jnp.zeros(1), x, jnp.zeros(1)))
        f = (3 - 2 * x) * x - padded[:-2] - 2 * padded[2:] + 1
        return jnp.sum(f * f)

    def lennard_jones(X):
        n = X.shape[0]
        a, b = np.triu_indices(n, 1)
        d = X[a] - X[b]
        r2 = jnp.sum(d * d, axis=1)
        inv6 = r2 ** -3
        return jnp.sum(4 * (inv6 * inv6 - inv6))

    def compiled(f):
        g = jax.jit(jax.value_and_grad(f))
        return lambda v: jax.block_until_ready(g(v))
    return {name: compiled(f) for name, f in
            (("rosenbrock", rosenbrock), ("powell", powell), ("broyden", broyden), ("lennard_jones", lennard_jones))}


PROBLEMS = [  # name, model builder, hand-written NumPy, argument shape at n, sizes, quick sizes
    ("rosenbrock", rosenbrock_model, rosenbrock_numpy, lambda n: (n,), SIZES, QUICK_SIZES),
    ("powell", powell_model, powell_numpy, lambda n: (n // 4, 4), SIZES, QUICK_SIZES),
    ("broyden", broyden_model, broyden_numpy, lambda n: (n,), SIZES, QUICK_SIZES),
    ("lennard_jones", lennard_jones_model, lennard_jones_numpy, lambda n: (n, 3), ATOMS, QUICK_ATOMS),
]


def point(name: str, shape, seed=0):
    rng = np.random.default_rng(seed)
    if name == "lennard_jones":  # atoms on a jittered cubic lattice: no two too close
        side = int(np.ceil(shape[0] ** (1 / 3)))
        grid = np.stack(np.meshgrid(*[np.arange(side)] * 3, indexing="ij"), -1).reshape(-1, 3)[:shape[0]]
        return 1.12 * grid + rng.uniform(-0.05, 0.05, shape)
    return rng.uniform(-1.5, 1.5, shape)


def interleaved_medians(functions: dict, v, calls: int, inner: int) -> dict:
    """Median seconds per call of each function, timed in turn round after round: a change of
    the machine's load affects all of them alike."""
    times = {key: [] for key in functions}
    for f in functions.values():
        f(v)  # warm-up (and jax's compilation)
    for _ in range(calls):
        for key, f in functions.items():
            start = time.perf_counter()
            for _ in range(inner):
                f(v)
            times[key].append((time.perf_counter() - start) / inner)
    return {key: statistics.median(t) for key, t in times.items()}


def one_block(module, v, calls: int) -> dict:
    """Cache blocking's effect: the module against itself with BLOCK past the range, timed in turn."""
    block = module.BLOCK

    def whole(v):
        module.BLOCK = 2 ** 62
        try:
            return module.value_and_grad(v)
        finally:
            module.BLOCK = block
    times = interleaved_medians({"blocked_s": module.value_and_grad, "one_block_s": whole}, v, calls, 1)
    return {**times, "peak_one_block_bytes": peak_bytes(whole, v)}


def one_call_dots(module, v, calls: int) -> dict:
    """Dot products in rows of 8192 (_lane_dot): the module against itself with each block's dot
    product one BLAS call (which OpenBLAS splits over its threads), timed in turn on the machine as
    it is and with a busy loop on every other core."""
    in_rows = module._lane_dot

    def single(a, b):
        return np.vecdot(a, b) if type(a) is np.ndarray and type(b) is np.ndarray else (a * b).sum(-1)

    def one_call(v):
        module._lane_dot = single
        try:
            return module.value_and_grad(v)
        finally:
            module._lane_dot = in_rows
    # one after the other, not in turn: BLAS threads woken by one call would slow the next
    times = {}
    for key, f in (("rows", module.value_and_grad), ("one_call", one_call)):
        times[f"{key}_s"] = interleaved_medians({key: f}, v, calls, 1)[key]
        busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range((os.cpu_count() or 2) - 1)]
        try:
            times[f"{key}_busy_s"] = interleaved_medians({key: f}, v, calls, 1)[key]
        finally:
            for process in busy:
                process.kill()
                process.wait()
    return times


def peak_bytes(f, *args) -> int:
    tracemalloc.start()
    f(*args)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def run(quick: bool, repeats: int) -> dict:
    jax_fns = None if quick else jax_functions()
    rows = []
    for name, build, hand, shape_of, sizes, quick_sizes in PROBLEMS:
        symbolic = bp.compile(build(sp.Symbol("n", integer=True, positive=True)))
        module = symbolic.load()
        for n in quick_sizes if quick else sizes:
            start = time.perf_counter()
            numeric = bp.compile(build(n))
            compile_seconds = time.perf_counter() - start
            v = point(name, shape_of(n))
            value, (g,) = module.value_and_grad(v)
            hand_value, hand_g = hand(v)
            assert np.allclose(value, hand_value, rtol=1e-9) and np.allclose(g, hand_g, rtol=1e-8, atol=1e-8), \
                f"{name} at n = {n}: backpropc and hand-written NumPy disagree"
            row = {"problem": name, "n": n, "compile_s": compile_seconds,
                   "lines": len(numeric.source.splitlines()), "lines_symbolic": len(symbolic.source.splitlines())}
            if not quick:
                calls = repeats  # rounds: at 10^6 too, where one slow call among five moved the median
                inner = 200 if n <= 100 else 20 if n <= 10 ** 4 else 1
                contenders = {"backpropc_s": module.value_and_grad, "numpy_s": hand}
                if jax_fns is not None:
                    contenders["jax_s"] = jax_fns[name]
                row.update(interleaved_medians(contenders, v, calls, inner))
                if n == sizes[-1]:
                    row["peak_backpropc_bytes"] = peak_bytes(module.value_and_grad, v)
                    row["peak_numpy_bytes"] = peak_bytes(hand, v)
                    if hasattr(module, "BLOCK"):  # the same module with the range in one block
                        row.update(one_block(module, v, calls))
                    if hasattr(module, "_lane_dot"):
                        row.update(one_call_dots(module, v, calls))
            rows.append(row)
            print(format_row(row), flush=True)
            if "one_block_s" in row:
                print(f"{'':<14} {'':>8} cache blocking: {_time(row['blocked_s'])} against {_time(row['one_block_s'])} "
                      f"in one block ({row['one_block_s'] / row['blocked_s']:.2f} x faster), peak memory "
                      f"{row['peak_backpropc_bytes'] / 1e6:.1f} MB against {row['peak_one_block_bytes'] / 1e6:.1f} MB",
                      flush=True)
            if "one_call_s" in row:
                print(f"{'':<14} {'':>8} dot products in rows: {_time(row['rows_s'])} against {_time(row['one_call_s'])} "
                      f"as one BLAS call; with the other cores busy, {_time(row['rows_busy_s'])} against "
                      f"{_time(row['one_call_busy_s'])}", flush=True)
    return {"python": platform.python_version(), "numpy": np.__version__, "machine": platform.machine(),
            "load_average": os.getloadavg(),
            "jax": jax_fns is not None, "quick": quick, "rows": rows}


HEADER = (f"{'problem':<14} {'n':>8} {'backpropc':>11} {'NumPy':>11} {'ratio':>6} {'jax.jit':>11} "
          f"{'ratio':>6} {'compile':>8} {'lines':>6} {'peak mem ratio':>14}")


def _time(s) -> str:
    if s is None:
        return "-"
    return f"{s * 1e6:.1f} us" if s < 1e-3 else f"{s * 1e3:.2f} ms"


def format_row(r: dict) -> str:
    bp_s, np_s, jax_s = r.get("backpropc_s"), r.get("numpy_s"), r.get("jax_s")
    ratio = f"{bp_s / np_s:.2f}" if bp_s and np_s else "-"
    jax_ratio = f"{bp_s / jax_s:.2f}" if bp_s and jax_s else "-"
    memory = (f"{r['peak_backpropc_bytes'] / r['peak_numpy_bytes']:.2f}" if "peak_numpy_bytes" in r else "")
    return (f"{r['problem']:<14} {r['n']:>8} {_time(bp_s):>11} {_time(np_s):>11} {ratio:>6} {_time(jax_s):>11} "
            f"{jax_ratio:>6} {r['compile_s']:>7.2f}s {r['lines']:>6} {memory:>14}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small n, no timing: a smoke test of the structure")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)
    print(HEADER)
    results = run(args.quick, args.repeats)
    if not args.quick:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "arrays.json").write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {args.out / 'arrays.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
