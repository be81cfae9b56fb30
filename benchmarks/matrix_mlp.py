"""The vectorised MLP (lecture 6, slide 17) at a real size: 784-128-10, sigmoid, batch 1,000.

    python benchmarks/matrix_mlp.py [--batch 1000] [--repeats 30] [--out benchmarks/results]

Times value-and-gradient of the summed squared error, all in this process on the same data:
- backpropc: the module generated from examples/vectorised_mlp.py at this size;
- backpropc with plain `@`: the same module with its batched products written as NumPy's `@` on
  stacks (one small product per example), to measure what one large product per batch buys;
- hand-written NumPy: the usual row-major code (X of shape (N, 784), X @ W1.T);
- PyTorch CPU autograd (float64, eager) and JAX (jit, CPU, float64), when installed.
Prints a table (medians, ratios against hand-written NumPy) and writes matrix_mlp.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import runpy
import sys
import time
from pathlib import Path

import numpy as np
from measuring import median_time

import backpropc as bp

ROOT = Path(__file__).resolve().parent.parent
SIZES = (784, 128, 10)


def hand_written(W1, b1, W2, b2, X, T):
    """What one writes by hand: a batch as rows, each layer one matrix product."""
    Z = X @ W1.T + b1.T
    H = 0.5 + 0.5 * np.tanh(0.5 * Z)
    Y = H @ W2.T + b2.T
    Y_bar = Y - T
    loss = 0.5 * np.sum(Y_bar ** 2)
    Z_bar = (Y_bar @ W2) * H * (1 - H)
    return loss, (Z_bar.T @ X, Z_bar.sum(axis=0)[:, None], Y_bar.T @ H, Y_bar.sum(axis=0)[:, None])


def torch_function():
    try:
        import torch
    except ImportError:
        return None, None
    torch.set_num_threads(1)

    def value_and_grad(W1, b1, W2, b2, X, T):
        params = [torch.from_numpy(p).requires_grad_() for p in (W1, b1, W2, b2)]
        w1, c1, w2, c2 = params
        Xt, Tt = torch.from_numpy(X), torch.from_numpy(T)
        H = torch.sigmoid(Xt @ w1.T + c1.T)
        loss = 0.5 * torch.sum((H @ w2.T + c2.T - Tt) ** 2)
        loss.backward()
        return loss.item(), tuple(p.grad.numpy() for p in params)
    return value_and_grad, torch.__version__


def jax_function():
    try:
        import jax
    except ImportError:
        return None, None
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    def loss(params, X, T):
        w1, c1, w2, c2 = params
        H = jax.nn.sigmoid(X @ w1.T + c1.T)
        return 0.5 * jnp.sum((H @ w2.T + c2.T - T) ** 2)

    compiled = jax.jit(jax.value_and_grad(loss))

    def value_and_grad(W1, b1, W2, b2, X, T):
        value, grads = compiled((W1, b1, W2, b2), X, T)
        value.block_until_ready()
        return float(value), tuple(np.asarray(g) for g in grads)
    return value_and_grad, jax.__version__


def measure(batch: int = 1000, repeats: int = 30) -> dict:
    """Time every method on one batch; the result is what matrix_mlp.json holds."""
    build = runpy.run_path(str(ROOT / "examples" / "vectorised_mlp.py"))["vectorised_mlp"]
    start = time.perf_counter()
    compiled = bp.compile(build(*SIZES))
    compile_s = time.perf_counter() - start
    module = compiled.load()
    # the same module, with every batched product as NumPy's `@` on stacks of matrices
    stacked = type(module)("stacked")
    source = compiled.source.replace("\ndef _matmul(a, b):", "\ndef _matmul(a, b):\n    return a @ b\n\n\ndef _unused(a, b):")
    exec(compile(source, "<stacked>", "exec"), stacked.__dict__)  # noqa: S102 - as compiled.load() does

    n_in, n_hidden, n_out = SIZES
    rng = np.random.default_rng(0)
    W1, b1 = rng.normal(0, n_in ** -0.5, (n_hidden, n_in)), rng.normal(0, 1, (n_hidden, 1))
    W2, b2 = rng.normal(0, n_hidden ** -0.5, (n_out, n_hidden)), rng.normal(0, 1, (n_out, 1))
    X, T = rng.random((batch, n_in)), rng.random((batch, n_out))
    x, t = X[:, :, None], T[:, :, None]  # the generated module's layout: a batch of column vectors

    reference = hand_written(W1, b1, W2, b2, X, T)
    methods = {
        "backpropc": lambda: module.value_and_grad(W1, b1, W2, b2, x, t),
        "backpropc, plain @ on stacks": lambda: stacked.value_and_grad(W1, b1, W2, b2, x, t),
        "hand-written NumPy": lambda: hand_written(W1, b1, W2, b2, X, T),
    }
    torch_vg, torch_version = torch_function()
    if torch_vg is not None:
        methods["PyTorch eager (CPU)"] = lambda: torch_vg(W1, b1, W2, b2, X, T)
    jax_vg, jax_version = jax_function()
    if jax_vg is not None:
        methods["JAX jit (CPU)"] = lambda: jax_vg(W1, b1, W2, b2, X, T)

    rows = []
    for name, f in methods.items():
        value, grads = f()
        error = max(float(np.max(np.abs(g - r) / np.maximum(np.abs(r), 1.0)))
                    for g, r in zip(grads, reference[1]))
        rows.append({"method": name, "seconds": median_time(f, repeats)[0],
                     "max_rel_diff": error, "value_rel_diff": abs(value - reference[0]) / abs(reference[0])})
    base = next(r["seconds"] for r in rows if r["method"] == "hand-written NumPy")
    jax_s = next((r["seconds"] for r in rows if r["method"].startswith("JAX")), None)
    for r in rows:
        r["vs_numpy"] = r["seconds"] / base
        r["vs_jax"] = r["seconds"] / jax_s if jax_s else None
    return {"sizes": SIZES, "batch": batch, "repeats": repeats, "compile_s": compile_s,
            "ops": compiled.ops, "source_lines": len(compiled.source.splitlines()), "rows": rows,
            "machine": {"python": platform.python_version(), "numpy": np.__version__,
                        "torch": torch_version, "jax": jax_version, "processor": platform.machine()}}


def table(result: dict) -> str:
    """The result as a Markdown table, with the compile line under it."""
    lines = [(f"Value and gradient of a {'-'.join(map(str, result['sizes']))} sigmoid MLP, batch "
             f"{result['batch']:,}, float64, median of {result['repeats']}:"), "",
             "| method | ms | vs hand-written NumPy | vs JAX | max rel diff |", "|---|---:|---:|---:|---:|"]
    for r in result["rows"]:
        jax = "-" if r["vs_jax"] is None else f"{r['vs_jax']:.2f}x"
        lines.append(f"| {r['method']} | {r['seconds'] * 1e3:.2f} | {r['vs_numpy']:.2f}x | {jax} | "
                     f"{r['max_rel_diff']:.1e} |")
    lines += ["", (f"Compile time {result['compile_s']:.3f} s; {result['ops']['forward']} matrix operations "
                  f"forward, {result['ops']['value_and_grad']} for value and gradient; the generated module "
                  f"has {result['source_lines']} lines at every layer size.")]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)
    result = measure(args.batch, args.repeats)
    print(table(result))
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "matrix_mlp.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"json: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
