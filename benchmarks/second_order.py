"""Hessian-vector products and Hessians of backpropc's generated modules against JAX.

    python benchmarks/second_order.py [--quick] [--out benchmarks/results] [--threads 1] [--docs PATH]
    python benchmarks/second_order.py --from-json benchmarks/results/second_order.json  # re-render

On the workloads of benchmarks/workloads.py (the models, data and JAX losses of run.py), compiled with
`derivatives=("grad", "hvp", "hessian")`, it times in this one process:

- backpropc's `hvp_flat(theta, v, *data)` against `jax.jit(lambda x, v: jax.jvp(jax.grad(f), (x,),
  (v,))[1])` (forward-over-reverse in both), and `hessian_flat(theta, *data)` against
  `jax.jit(jax.hessian(f))`, where f is the workload's loss of the flat parameter vector (CPU,
  float64); for reference also backpropc's `value_and_grad_flat`, and on the problems without
  data `hessian_coo`;
- at batch 10^4 and 10^6 where the workload has data, once where it has none (Rosenbrock at
  n = 10, 100, 1,000: its Hessian is tridiagonal, 3 colours whatever n, so ours should grow
  linearly in n).

Times are medians of repeated calls after one warm-up call (JAX's first call, which traces and
compiles, is timed apart). Every result is checked against JAX's. Prints a table and writes
second_order.json (second_order.quick.json with --quick: batch 10^4, the smallest workloads), and
rewrites the "Second derivatives" section of docs/benchmarks.md (not with --quick; benchmarks/run.py
keeps the section when it regenerates that file: reporting.SECTION_TITLES).
Without JAX installed only backpropc's side is measured.
"""

from __future__ import annotations

import run  # first: it sizes the thread pools (--threads) before NumPy is imported

# isort: split
import argparse
import itertools
import json
import math
import os
import platform
import statistics
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import reporting
from baselines import flat_args
from calls import load_jax
from measuring import BATCHES, loadavg
from workloads import workloads

import backpropc as bp

FULL = ("logistic", "logistic_l2", "mlp n=4", "chain depth=10", "softmax K=3",
        "rosenbrock n=10", "rosenbrock n=100", "rosenbrock n=1000")
QUICK = ("logistic", "softmax K=3", "rosenbrock n=10", "rosenbrock n=100")
# jax.hessian pushes one tangent per parameter through the whole batch at once (vmap): past this
# many (parameters x examples) its intermediates would need gigabytes, so it is not run there.
JAX_HESSIAN_MAX = 10**7
MIN_REPEATS, MIN_TOTAL_S, MAX_REPEATS = 3, 0.5, 30


def median_time(f) -> tuple[float, int]:
    f()
    times = []
    while len(times) < MIN_REPEATS or (sum(times) < MIN_TOTAL_S and len(times) < MAX_REPEATS):
        start = time.perf_counter()
        f()
        times.append(time.perf_counter() - start)
    return statistics.median(times), len(times)


def relative_diff(got, ref) -> float:
    got, ref = np.asarray(got, float), np.asarray(ref, float)
    return float(np.max(np.abs(got - ref)) / max(np.max(np.abs(ref)), 1e-300))


class JaxSecondOrder:
    """The workload's loss as f(theta, D) of the flat parameter vector (pack's order), its
    forward-over-reverse HVP and its dense Hessian, jitted."""

    def __init__(self, workload, P, jax):
        import jax.numpy as jnp
        from jax import lax
        from jax.scipy.special import logsumexp

        def chain(w, x):
            return lax.scan(lambda x, wk: (jnp.sin(wk * x + x), None), x, w)[0]

        xp = SimpleNamespace(sum=jnp.sum, sigmoid=jax.nn.sigmoid, chain=chain,
                             logsumexp0=lambda z: logsumexp(z, axis=0))
        shapes = [np.shape(p) for p in P]
        sizes = [math.prod(s) for s in shapes]
        offsets = np.cumsum([0] + sizes)

        def f(theta, D):
            P = tuple(theta[a:b].reshape(s) for a, b, s in zip(offsets[:-1], offsets[1:], shapes))
            return workload.loss(xp, P, D)

        self.jax, self.jnp = jax, jnp
        self.hvp = jax.jit(lambda x, v, D: jax.jvp(lambda y: jax.grad(f)(y, D), (x,), (v,))[1])
        self.hessian = jax.jit(jax.hessian(f))


def _first_call(f) -> float:
    start = time.perf_counter()
    f()
    return time.perf_counter() - start


def measure(workload, batch, module, jax, rng) -> dict:
    P, D = workload.data(rng, batch or 1)
    args = flat_args(P, D)
    n_wrt = len(module.WRT)
    theta, data = module.pack(*args[:n_wrt]), args[n_wrt:]
    v = rng.normal(size=theta.size)
    ours = {"vg": lambda: module.value_and_grad_flat(theta, *data),
            "hvp": lambda: module.hvp_flat(theta, v, *data),
            "hessian": lambda: module.hessian_flat(theta, *data)}
    if not workload.batched:
        ours["hessian_coo"] = lambda: module.hessian_coo(*args)
    row = {"batch": batch, "n": int(theta.size), "ours": {}, "jax": {}}
    for name, f in ours.items():
        row["ours"][name] = median_time(f)[0]
    if jax is None:
        return row
    j = JaxSecondOrder(workload, P, jax)
    Pj, Dj, vj = j.jnp.asarray(theta), tuple(j.jnp.asarray(d) for d in D), j.jnp.asarray(v)
    calls = {"hvp": (lambda: jax.block_until_ready(j.hvp(Pj, vj, Dj)), ours["hvp"])}
    if theta.size * (batch or 1) <= JAX_HESSIAN_MAX:
        calls["hessian"] = (lambda: jax.block_until_ready(j.hessian(Pj, Dj)), ours["hessian"])
    else:
        row["jax"]["hessian"] = {"status": f"not run: {theta.size} parameters x {batch:,} examples "
                                           f"> {JAX_HESSIAN_MAX:.0e} (memory)"}
    for name, (jf, of) in calls.items():
        first = _first_call(jf)
        t, _ = median_time(jf)
        row["jax"][name] = {"status": "ok", "time_s": t, "first_call_s": first,
                            "rel_diff": relative_diff(of(), np.asarray(jf()))}
    return row


def run_all(quick: bool, log=print, labels=None) -> dict:
    """Every measurement of the chosen workloads (by default FULL, or QUICK with `quick`)."""
    jax = load_jax()
    chosen = labels or (QUICK if quick else FULL)
    load_before = loadavg()
    batches = (10**4,) if quick else BATCHES
    records = []
    for w in workloads(quick=False):
        if w.label not in chosen:
            continue
        start = time.perf_counter()
        compiled = bp.compile(w.model(), derivatives=("grad", "hvp", "hessian"))
        module = compiled.load()
        record = {"workload": w.label, "compile_s": time.perf_counter() - start, "ops": dict(compiled.ops),
                  "colours": int(max(module.HESSIAN_COLOURS)) + 1, "nonzeros": len(module.HESSIAN_ROWS),
                  "rows": []}
        for batch in (batches if w.batched else (None,)):
            rng = np.random.default_rng(0)
            record["rows"].append(measure(w, batch, module, jax, rng))
            log(f"  {w.label} @ {batch}: done")
        records.append(record)
    return {"quick": quick, "threads": run.THREADS, "records": records,
            "loadavg": {"before": load_before, "after": loadavg()},
            "environment": {"python": platform.python_version(), "numpy": np.__version__,
                            "jax": None if jax is None else jax.__version__,
                            "machine": platform.machine()}}


def _t(s) -> str:
    if s is None:
        return "-"
    return f"{s:.3g} s" if s >= 1 else f"{s * 1e3:.3g} ms" if s >= 1e-3 else f"{s * 1e6:.3g} µs"


def _jax_cell(row, name):
    j = row["jax"].get(name)
    if j is None:
        return "-", "-", "-"
    if j["status"] != "ok":
        return "not run", "-", "-"
    return _t(j["time_s"]), f"{row['ours'][name] / j['time_s']:.2f}", f"{j['rel_diff']:.0e}"


def table(data: dict) -> str:
    lines = [("| workload | batch | n | colours | backpropc vg | backpropc HVP | JAX jvp(grad) | x JAX | "
              "backpropc Hessian | JAX hessian | x JAX | agrees (rel. diff) |"),
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in data["records"]:
        for row in r["rows"]:
            hvp, hvp_x, hvp_d = _jax_cell(row, "hvp")
            hes, hes_x, hes_d = _jax_cell(row, "hessian")
            batch = "-" if row["batch"] is None else f"{row['batch']:,}"
            agrees = "/".join(d for d in (hvp_d, hes_d) if d != "-") or "-"
            lines.append(f"| {r['workload']} | {batch} | {row['n']} | {r['colours']} | {_t(row['ours']['vg'])} | "
                         f"{_t(row['ours']['hvp'])} | {hvp} | {hvp_x} | {_t(row['ours']['hessian'])} | {hes} | "
                         f"{hes_x} | {agrees} |")
    growth = [(r["workload"], r["rows"][0]) for r in data["records"] if r["rows"][0]["batch"] is None]
    if growth:
        lines += ["", ("| Rosenbrock n | non-zeros | colours | backpropc hessian_flat | backpropc hessian_coo | "
                       "backpropc HVP | JAX hessian | JAX jvp(grad) |"), "|---|---|---|---|---|---|---|---|"]
        for label, row in growth:
            r = next(r for r in data["records"] if r["workload"] == label)
            j = row["jax"]
            lines.append(f"| {row['n']:,} | {r['nonzeros']:,} | {r['colours']} | {_t(row['ours']['hessian'])} | "
                         f"{_t(row['ours'].get('hessian_coo'))} | {_t(row['ours']['hvp'])} | "
                         f"{_t(j.get('hessian', {}).get('time_s'))} | {_t(j.get('hvp', {}).get('time_s'))} |")
    return "\n".join(lines)


def op_counts(data: dict) -> str:
    """ops(HVP with value and gradient) / ops(forward), counted as in SPEC section 5."""
    lines = ["| workload | ops forward | ops value_and_grad | ops HVP (with value and gradient) | HVP / forward |",
             "|---|---:|---:|---:|---:|"]
    for r in data["records"]:
        ops = r.get("ops")
        if ops:
            lines.append(f"| {r['workload']} | {ops['forward']} | {ops['value_and_grad']} | {ops['hvp']} | "
                         f"{ops['hvp'] / ops['forward']:.2f} |")
    return "\n".join(lines) if len(lines) > 2 else ""


def section(data: dict) -> str:
    """The "Second derivatives" section of docs/benchmarks.md, from one run's JSON."""
    env = data["environment"]
    jax = f"JAX {env['jax']} (jit, CPU, float64)" if env["jax"] else "JAX not installed"
    intro = (f"`python benchmarks/second_order.py` (raw numbers: `benchmarks/results/second_order.json`), "
             f"{'quick' if data['quick'] else 'full'} mode, {data['threads']} thread(s), {jax}, NumPy "
             f"{env['numpy']}, Python {env['python']}. Modules compiled with `derivatives=(\"grad\", "
             "\"hvp\", \"hessian\")`. **backpropc HVP** is `hvp_flat(theta, v, *data)` against "
             "`jax.jit(lambda x, v: jax.jvp(jax.grad(f), (x,), (v,))[1])`; **backpropc Hessian** is "
             "`hessian_flat(theta, *data)` (one HVP per colour of the structural sparsity) against "
             "`jax.jit(jax.hessian(f))`, f being the workload's loss (benchmarks/workloads.py) of the flat "
             "parameter vector; **x JAX** divides ours by JAX's (under 1: ours is faster); **vg** is "
             "`value_and_grad_flat` for scale. Medians of at least 3 calls after a warm-up call (JAX's "
             "compile excluded); every result agrees with JAX's to the relative difference shown. "
             f"jax.hessian is not run where parameters x examples exceed {JAX_HESSIAN_MAX:.0e} (its vmapped "
             "intermediates would need gigabytes).")
    load = data.get("loadavg") or {}
    if load.get("before") and load.get("after"):
        intro += (f" The 1-minute load average was {load['before'][0]:.1f} before the run and "
                  f"{load['after'][0]:.1f} after it, on {os.cpu_count()} cores: other jobs shared the machine, "
                  "so single timings can be off by tens of per cent; ratios far from 1 are the robust part.")
    counts = op_counts(data)
    counted = ["", reporting._wrap("Operation counts (arithmetic operations and function calls of the emitted code, a "
                                   "shared temporary counted once, as in SPEC section 5); the goal of the issue is "
                                   "HVP / forward <= 5:"), "", counts] if counts else []
    return "\n".join([f"## {reporting.SECOND_ORDER_TITLE}", "", reporting._wrap(intro), "", table(data), "",
                      reporting._wrap(growth(data))] + counted + [""])


def growth(data: dict) -> str:
    """How the Hessian's cost grows with n on the problems without data, in words."""
    rows = [row for r in data["records"] for row in r["rows"] if row["batch"] is None]
    if len(rows) < 2:
        return ""

    def factors(get):
        values = [get(row) for row in rows]
        if any(v is None for v in values):
            return ""
        steps = ", ".join(f"x{b / a:.1f}" for a, b in itertools.pairwise(values))
        return f"{' -> '.join(_t(v) for v in values)} ({steps})"

    sizes = " -> ".join(f"{row['n']:,}" for row in rows)
    text = (f"Growth with n = {sizes} (no data): backpropc's hessian_flat "
            f"{factors(lambda r: r['ours']['hessian'])}, its hessian_coo {factors(lambda r: r['ours'].get('hessian_coo'))}, "
            f"its HVP {factors(lambda r: r['ours']['hvp'])}")
    jax_hessian = factors(lambda r: r["jax"].get("hessian", {}).get("time_s"))
    if jax_hessian:
        text += (f"; JAX's dense jax.hessian {jax_hessian} and its HVP "
                 f"{factors(lambda r: r['jax'].get('hvp', {}).get('time_s'))}")
    return text + "."


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="batch 10^4 and the smallest workloads")
    parser.add_argument("--out", type=Path, default=run.ROOT / "benchmarks" / "results")
    parser.add_argument("--threads", type=int, default=1, help="BLAS/XLA threads (read at import)")
    parser.add_argument("--docs", type=Path, default=None,
                        help="markdown whose section to rewrite (default docs/benchmarks.md; not with --quick)")
    parser.add_argument("--from-json", type=Path, default=None, help="re-render the docs from a run's JSON")
    args = parser.parse_args(argv)
    docs = args.docs or (None if args.quick else run.ROOT / "docs" / "benchmarks.md")
    if args.from_json:
        reporting.update_section(docs, reporting.SECOND_ORDER_TITLE, section(json.loads(args.from_json.read_text())))
        print(f"wrote {docs}")
        return
    data = run_all(args.quick)
    print(table(data))
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / ("second_order.quick.json" if args.quick else "second_order.json")
    path.write_text(json.dumps(data, indent=1) + "\n")
    print(f"wrote {path}")
    if docs:
        reporting.update_section(docs, reporting.SECOND_ORDER_TITLE, section(data))
        print(f"wrote {docs}")


if __name__ == "__main__":
    main()
