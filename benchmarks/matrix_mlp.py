"""The vectorised MLP (lecture 6, slide 17) at a real size: 784-128-10, sigmoid, batch 1,000.

    python benchmarks/matrix_mlp.py [--batch 1000] [--repeats 30] [--out benchmarks/results]

Times value-and-gradient of the summed squared error, all in this process on the same data:
- backpropc: the module generated from examples/vectorised_mlp.py at this size;
- backpropc with plain `@`: the same module with its batched products written as NumPy's `@` on
  stacks (one small product per example), to measure what one large product per batch buys;
- hand-written NumPy: the usual row-major code (X of shape (N, 784), X @ W1.T);
- PyTorch CPU autograd (float64, eager), when torch is installed.
Prints a table (medians, ratios against hand-written NumPy) and writes matrix_mlp.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import runpy
import statistics
import sys
import time
from pathlib import Path

import numpy as np

import backpropc as bp

ROOT = Path(__file__).resolve().parent.parent
SIZES = (784, 128, 10)


def median_time(f, repeats: int) -> float:
    f()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        f()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)

    build = runpy.run_path(str(ROOT / "examples" / "vectorised_mlp.py"))["vectorised_mlp"]
    start = time.perf_counter()
    compiled = bp.compile(build(*SIZES))
    compile_s = time.perf_counter() - start
    module = compiled.load()
    # the same module, with every batched product as NumPy's `@` on stacks of matrices
    stacked = type(module)("stacked")
    exec(compile(compiled.source.replace("\ndef _matmul(a, b):", "\ndef _matmul(a, b):\n    return a @ b\n\n\ndef _unused(a, b):"),
                 "<stacked>", "exec"), stacked.__dict__)

    n_in, n_hidden, n_out = SIZES
    rng = np.random.default_rng(0)
    W1, b1 = rng.normal(0, n_in ** -0.5, (n_hidden, n_in)), rng.normal(0, 1, (n_hidden, 1))
    W2, b2 = rng.normal(0, n_hidden ** -0.5, (n_out, n_hidden)), rng.normal(0, 1, (n_out, 1))
    X, T = rng.random((args.batch, n_in)), rng.random((args.batch, n_out))
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

    rows = []
    for name, f in methods.items():
        value, grads = f()
        error = max(float(np.max(np.abs(g - r) / np.maximum(np.abs(r), 1.0)))
                    for g, r in zip(grads, reference[1]))
        rows.append({"method": name, "seconds": median_time(f, args.repeats),
                     "max_rel_diff": error, "value_rel_diff": abs(value - reference[0]) / abs(reference[0])})
    base = next(r["seconds"] for r in rows if r["method"] == "hand-written NumPy")
    for r in rows:
        r["vs_numpy"] = r["seconds"] / base

    print(f"value and gradient of a {'-'.join(map(str, SIZES))} sigmoid MLP, batch {args.batch:,}, "
          f"float64, median of {args.repeats}")
    print(f"{'method':<30} {'ms':>8} {'vs NumPy':>9} {'max rel diff':>13}")
    for r in rows:
        print(f"{r['method']:<30} {r['seconds'] * 1e3:>8.2f} {r['vs_numpy']:>8.2f}x {r['max_rel_diff']:>13.1e}")
    print(f"compile time {compile_s:.3f} s, {compiled.ops['forward']} ops forward, "
          f"{compiled.ops['value_and_grad']} ops value and gradient; "
          f"generated source {len(compiled.source.splitlines())} lines")

    args.out.mkdir(parents=True, exist_ok=True)
    result = {"sizes": SIZES, "batch": args.batch, "repeats": args.repeats, "compile_s": compile_s,
              "ops": compiled.ops, "rows": rows,
              "machine": {"python": platform.python_version(), "numpy": np.__version__,
                          "torch": torch_version, "processor": platform.machine()}}
    path = args.out / "matrix_mlp.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"json: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
