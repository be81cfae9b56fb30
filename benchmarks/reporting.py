"""Reporting for benchmarks/run.py: the Markdown tables, the findings computed from a run's
numbers, and docs/benchmarks.md rendered from a run's JSON (plus the sections of the other
benchmarks whose JSON sits beside it: compile_time.json, calls.json).
"""

from __future__ import annotations

import re

from measuring import (
    COMPILE_REPEATS,
    MAX_REPEATS,
    MIN_REPEATS,
    MIN_TOTAL_S,
    NAIVE_MAX,
    SYMENGINE_MAX,
)
from workloads import SIZE_NAMES

FAMILIES = ("logistic", "logistic_l2", "mlp", "chain", "softmax", "rosenbrock")
FAMILY_TITLES = {
    "logistic": "Logistic least squares (examples/logistic.py)",
    "logistic_l2": "Logistic least squares + L2 (examples/logistic_l2.py)",
    "mlp": "Scalar-weight MLP, 3 inputs, n hidden, 2 outputs (examples/mlp.py, mlp_model(3, n, 2))",
    "chain": "Deep chain x_(k+1) = sin(w_k x_k + x_k), one SymPy expression",
    "softmax": "Softmax cross-entropy, K classes, 2 features (logsumexp form)",
    "rosenbrock": "Rosenbrock, n variables, no data (per-call latency)",
}
METHOD_ORDER = ("backpropc", "numpy", "naive", "naive_cse", "symengine", "jax", "torch", "autograd")
METHOD_TITLES = {
    "backpropc": "backpropc", "numpy": "hand-written NumPy", "naive": "naive sympy.diff",
    "naive_cse": "naive + sympy.cse", "symengine": "SymEngine (LLVM)", "jax": "JAX jit",
    "torch": "PyTorch eager", "autograd": "HIPS autograd",
}


# ---------------------------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------------------------

def _t(s) -> str:
    """Seconds, compactly: 1.23 s, 45.6 ms, 789 µs."""
    if s is None:
        return "-"
    if s >= 1:
        return f"{s:.3g} s"
    if s >= 1e-3:
        return f"{s * 1e3:.3g} ms"
    return f"{s * 1e6:.3g} µs"


def _x(a, b) -> str:
    return "-" if a is None or b is None or b == 0 else f"{a / b:.2f}"


def _mb(b) -> str:
    return "-" if b is None else f"{b / 1e6:,.1f}"


def _ops(n) -> str:
    return "-" if n is None else f"{n:,}"


def _size(r) -> str:
    return "" if r["size"] is None else str(r["size"])


def _methods(r):
    for name in METHOD_ORDER:
        if name in r["methods"]:
            yield name, r["methods"][name]


def table_compile(records: list[dict], family: str) -> str:
    size_name = SIZE_NAMES.get(family, "")
    lines = [f"| {size_name} | method | build s | ops forward | ops value_and_grad | ratio | result |",
             "|---|---|---|---|---|---|---|"]
    for r in records:
        if r["family"] != family:
            continue
        for name, m in _methods(r):
            ops = m.get("ops") or [None, None]
            status = _status(m.get("status") or _first_status(m))
            build = m.get("build_s")
            lines.append(f"| {_size(r)} | {METHOD_TITLES[name]} | {'-' if build is None else f'{build:.3g}'} | "
                         f"{_ops(ops[0])} | {_ops(ops[1])} | "
                         f"{_x(ops[1], ops[0]) if ops[0] else '-'} | {status} |")
    return "\n".join(lines)


def _status(text: str) -> str:
    """A status as the tables show it (older runs spelled the size cutoffs out)."""
    match = re.match(r"not built \(size > (\d+)", text or "")
    return f"not built (size > {match.group(1)}, see Limits)" if match else (text or "-")


def _first_status(m) -> str:
    for b in m.get("batches", {}).values():
        if b.get("status") == "ok":
            return "ok" if b.get("rel_diff", 0) < 1e-6 else f"differs by {b['rel_diff']:.1e}"
    statuses = [b.get("status") for b in m.get("batches", {}).values()]
    return statuses[0] if statuses else "-"


def table_run(records: list[dict], family: str, batch: int, mem: bool) -> str:
    """Run times at one batch size (1: per call), with the memory columns when `mem`."""
    size_name = SIZE_NAMES.get(family, "")
    header = f"| {size_name} | method | value_and_grad | forward | vg / fwd | x numpy | x JAX |"
    header += " peak MB | arrays | peak RSS MB | x numpy (peak) | agrees |" if mem else " agrees |"
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    for r in records:
        if r["family"] != family:
            continue
        key = str(batch if r["batched"] else 1)
        hand = r["methods"].get("numpy", {}).get("batches", {}).get(key, {})
        jax = r["methods"].get("jax", {}).get("batches", {}).get(key, {})
        for name, m in _methods(r):
            b = m.get("batches", {}).get(key)
            if b is None:
                status = _status(m.get("status", "-"))
                cells = [status] + ["-"] * (header.count("|") - 4)
                lines.append(f"| {_size(r)} | {METHOD_TITLES[name]} | " + " | ".join(cells) + " |")
                continue
            if b.get("status") != "ok":
                cells = [b["status"]] + ["-"] * (header.count("|") - 4)
                lines.append(f"| {_size(r)} | {METHOD_TITLES[name]} | " + " | ".join(cells) + " |")
                continue
            agrees = "yes" if b["rel_diff"] < 1e-6 else f"{b['rel_diff']:.1e}"
            if b.get("fwd_status"):
                fwd = b["fwd_status"]
            else:
                fwd = _t(b["fwd_s"]) + (" (1 call)" if b.get("fwd_repeats") == 1 else "")
            cells = [_t(b["vg_s"]), fwd, _x(b["vg_s"], b["fwd_s"]),
                     _x(b["vg_s"], hand.get("vg_s")) if name != "numpy" else "1",
                     _x(b["vg_s"], jax.get("vg_s")) if name != "jax" else "1"]
            if mem:
                arrays = "-" if b["peak_traced"] is None else f"{b['peak_traced'] / (8 * batch):.1f}"
                cells += [_mb(b["peak_traced"]), arrays, _mb(b["peak_rss"]),
                          _x(b["peak_traced"], hand.get("peak_traced")) if name != "numpy" else "1"]
            cells.append(agrees)
            lines.append(f"| {_size(r)} | {METHOD_TITLES[name]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def table_summary(records: list[dict], batches) -> str:
    big = max(batches)
    lines = [("| workload | ops ratio | compile | vg / fwd | "
             "backpropc vg | x numpy | x JAX | x PyTorch | x autograd | x SymEngine | x naive+cse | peak x numpy |"),
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in records:
        key = str(big if r["batched"] else 1)
        bpb = r["methods"]["backpropc"]["batches"].get(key, {})
        if bpb.get("status") != "ok":
            key = str(min(batches))   # fall back to the smaller batch
            bpb = r["methods"]["backpropc"]["batches"].get(key, {})
        if bpb.get("status") != "ok":
            continue
        label = r["label"] + ("" if not r["batched"] else f" @ {int(key):,}")

        def x(name, field="vg_s", r=r, key=key, bpb=bpb):
            other = r["methods"].get(name, {}).get("batches", {}).get(key, {})
            return _x(bpb.get(field), other.get(field)) if other.get("status") == "ok" else "-"

        lines.append(f"| {label} | {r['ops_vg'] / r['ops_forward']:.2f} | {_t(r['compile_s'])} | "
                     f"{_x(bpb['vg_s'], bpb['fwd_s'])} | {_t(bpb['vg_s'])} | {x('numpy')} | {x('jax')} | "
                     f"{x('torch')} | {x('autograd')} | {x('symengine')} | {x('naive_cse')} | "
                     f"{x('numpy', 'peak_traced') if r['batched'] else '-'} |")
    return "\n".join(lines)


def table_slopes(slopes: dict) -> str:
    lines = ["| family | sizes | ops forward | compile s | slope (all sizes) | slope between consecutive sizes |",
             "|---|---|---|---|---|---|"]
    for family, s in slopes.items():
        pts = s["points"]
        sizes = ", ".join(str(p["size"]) for p in pts)
        ops = ", ".join(format(p["ops_forward"], ",") for p in pts)
        times = ", ".join(format(p["compile_s"], ".3g") for p in pts)
        slope = "-" if s["slope"] is None else format(s["slope"], ".2f")
        local = ", ".join(format(v, ".2f") for v in s["local"])
        lines.append(f"| {family} | {sizes} | {ops} | {times} | {slope} | {local} |")
    return "\n".join(lines)


def table_micro(rows: list[dict], wrapper: list[dict]) -> str:
    lines = ["| what | form | time |", "|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['group']} | `{r['label'].split('  (')[0]}`"
                     f"{'  (' + r['label'].split('  (')[1] if '  (' in r['label'] else ''} | {_t(r['s'])} |")
    for w in wrapper:
        lines.append(f"| argument checks, {w['label']} | `value_and_grad` (checked) / `value_and_grad.__wrapped__` | "
                     f"{_t(w['checked_s'])} / {_t(w['bare_s'])} |")
    return "\n".join(lines)


def _wrap(text: str, width: int = 100) -> str:
    """Fill each paragraph (and each "- " list item) of `text` to `width` columns."""
    import textwrap
    out = []
    for block in text.strip("\n").split("\n\n"):
        items = re.split(r"\n(?=- )", block)
        out.append("\n".join(textwrap.fill(" ".join(item.split()), width,
                                           subsequent_indent="  " if item.startswith("- ") else "")
                             for item in items))
    return "\n\n".join(out)


def header(data: dict) -> str:
    env, meta = data["env"], data["meta"]
    load = meta.get("loadavg_start"), meta.get("loadavg_end")
    cpus = env.get("cpus_usable", env.get("cpus"))
    threads = meta.get("threads", 0)
    threads_text = (f"BLAS, JAX (XLA) and PyTorch were limited to {threads} thread{'s' if threads > 1 else ''} "
                    f"(`--threads {threads}`), like NumPy's elementwise loops, which are single-threaded."
                    if threads else "BLAS, JAX and PyTorch used their default thread pools (`--threads 0`).")
    during = [r["loadavg"][0] for r in data["records"] if r.get("loadavg")]
    peak_load = max(during, default=None)
    start_load = load[0][0] if load[0] else None
    seen = (f"The 1-minute load average was {start_load} just before the run; during it (where the run "
            f"itself counts about 1) it ranged from {min(during, default='?')} to {peak_load}, on {cpus} cores.")
    if (start_load or 0) >= 0.7 or (peak_load or 0) >= 1.3:
        others = f"up to about {peak_load - 1:.1f} of a core" if peak_load and peak_load > 1.1 else "some CPU"
        load_text = (f"**Caveat: noisy timings.** {seen} So other processes used {others} at times (this "
                     f"project's fuzzing campaign and other sessions' test runs were active on the machine "
                     f"during the session, not necessarily throughout this run). The benchmark had at most one core to itself "
                     f"and shared memory bandwidth and caches. {threads_text} Expect single timings to move by "
                     f"10-30 % between runs: ratios far from 1 are robust, ratios near 1 are not.")
    else:
        load_text = f"{seen} {threads_text}"
    optional = ", ".join(f"{k} {v}" for k, v in env["optional"].items()) or "none installed"
    missing = "" if not env["missing"] else \
        " Not available: " + "; ".join(f"{k} ({v})" for k, v in env["missing"].items()) + "."
    usable = "" if env.get("cpus_usable") in (None, env.get("cpus")) else f" ({env['cpus_usable']} usable)"
    machine = (f"{env.get('cpu_model', env['machine'])}, {env.get('cpus')} cores{usable}, "
               f"{env.get('memory_gb', '?')} GB RAM, {env['machine']}, Linux")
    pools = "" if not env.get("threadpools") else "; threadpoolctl: " + ", ".join(env["threadpools"])
    big = max(meta["batches"])
    text = f"""
Generated by `python benchmarks/run.py` from one run: {meta['started']}, {meta['mode']} mode,
{meta['duration_s'] / 60:.1f} minutes, command `{meta.get('command', '')}`. The raw numbers are in
`{meta.get('json', 'benchmarks/results/run.json')}`. Do not edit by hand: rerun
the script, or re-render from the JSON with `--from-json`.

**Machine.** {machine}. NumPy {env['numpy']} (BLAS: {env['blas']}{pools}), SymPy {env['sympy']},
Python {env['python']}, backpropc {env['backpropc']}. Baselines: {optional}.{missing}

{load_text}

**What is measured.** Each workload is compiled with `bp.compile` (median of {COMPILE_REPEATS} compiles,
each in a fresh SymPy cache). Data inputs are float64 arrays of the batch length and parameters
are scalars; the baselines get the same numbers, with parameters as arrays and the data stacked as
(features, batch) for the vectorised libraries (prepared before timing). Run times are medians of
at least {MIN_REPEATS} calls after one warm-up call (more, up to {MAX_REPEATS}, until {MIN_TOTAL_S:g} s has been
spent), all in one process on the same data. Every method's objective and gradient are checked
against backpropc's ("agrees": the largest difference relative to the largest component is under
1e-6).

- **build s**: backpropc's compile time; for the naive rows, `sympy.diff` of the substituted loss
per parameter and `lambdify` (benchmarks/baselines.py); for SymEngine, conversion,
`diff` and `Lambdify(cse=True, backend="llvm")`; for JAX, the first call at batch 10^4 (trace,
XLA compile and one run). Hand-written NumPy, PyTorch and autograd have no build step.
- **ops**: `compiled.ops`: arithmetic operations and function calls, a shared temporary counted
once, one sum per output; **ratio** = value_and_grad / forward. The naive rows count their
printed trees the same way.
- **value_and_grad**, **forward**: median time per call; **vg / fwd** is their ratio; **x numpy**
and **x JAX** divide the row's value_and_grad time by the hand-written NumPy's and by JAX's (under
1: faster). backpropc's `forward` returns the per-example losses, the baselines' forward the
objective (one more sum).
- **peak MB** (at batch {big:,}): the peak of memory allocated during one value_and_grad call, by
`tracemalloc` (it sees NumPy's allocations, not JAX's or PyTorch's: "-"); **arrays** is that peak
in units of one float64 array of the batch (8 bytes x batch): how many batch-sized temporaries are
alive at once. **peak RSS MB**: growth of the process's resident high-water mark during another
call (Linux `VmHWM`, reset through `clear_refs`, after glibc's `malloc_trim(0)` has returned freed
memory): it sees every allocator, so it is the column for JAX and PyTorch, but memory that an
allocator keeps cached between calls is not counted (a lower bound); on the NumPy rows it can be
compared with peak MB. **x numpy (peak)** divides peak MB by the hand-written NumPy's.
- Limits: a baseline is skipped at a batch size when one call there took, or is estimated from the
smaller batch to take, more than {meta['max_call_s']:g} s; any method (backpropc included) is
skipped where it is estimated to need more than {meta['max_gb']:g} GB; the table says which. A
forward pass that takes more than 1 s and more than 5 times the same method's value_and_grad is
timed once, marked "(1 call)", and not run at the family's larger sizes (this catches JAX's jitted
MLP forward at batch 10^6, which is far slower than its value_and_grad in this version). Size cutoffs: the naive gradients (with and without cse) are
not built past chain depth {NAIVE_MAX['chain']}, MLP width {NAIVE_MAX['mlp']} and Rosenbrock
n = {NAIVE_MAX['rosenbrock']}, where `sympy.diff` of the next size up takes, or would take, about
20 s or more (chain depth 12: 27 s in a trial; MLP width 64: over a 10 s budget in
docs/comparison.md; Rosenbrock: about 1.5 s at n = 100, growing as n^2). SymEngine is not built for the chain past depth {SYMENGINE_MAX['chain']}: its
`Lambdify(cse=True)` of depth 1000 had not finished after 5 minutes in a trial.
- Baselines as written: JAX runs the chain with `lax.scan` (one traced step), PyTorch and autograd
loop in Python; autograd's sigmoid is 0.5 + 0.5 tanh(z/2). The hand-written NumPy rows of the MLP
(matrix form, BLAS) and of Rosenbrock are extra baselines; the chain has none. SymEngine's
`Lambdify` evaluates one row of arguments per example, so its batch runs in chunks of rows (8 MB
of arguments) whose outputs are summed.
"""
    return "# Benchmarks\n\n" + _wrap(text) + "\n"


def render_docs(data: dict) -> str:
    meta = data["meta"]
    text = header(data)
    records, batches = data["records"], meta["batches"]
    parts = [text, "## Summary", "",
             _wrap("backpropc's value_and_grad at the largest batch each workload ran, as a multiple of each "
                   "baseline's time at the same batch (under 1: backpropc is faster); **ops ratio** and "
                   "**vg / fwd** are backpropc's own value-and-gradient cost over its forward pass, counted and "
                   "timed."), "",
             table_summary(records, batches), ""]
    found = findings(data)
    if found:
        parts += [_wrap("\n".join(found)), ""]
    for family in FAMILIES:
        if not any(r["family"] == family for r in records):
            continue
        parts += [f"## {FAMILY_TITLES[family]}", "", table_compile(records, family), ""]
        notes = [r["note"] for r in records if r["family"] == family and r.get("note")]
        family_batches = batches if any(r["batched"] for r in records if r["family"] == family) else (1,)
        for batch in family_batches:
            title = "Per call" if batch == 1 else f"Batch {batch:,}"
            parts += [f"**{title}**", "", table_run(records, family, batch, batch > 1 and batch == family_batches[-1]), ""]
        parts += [f"Note: {n}." for n in notes] + ([""] if notes else [])
    if data.get("slopes"):
        parts += ["## Compile time against graph size", "",
                  ("Log-log slope of backpropc's compile time against its forward operation count "
                  "(1 is linear), least squares over all sizes and between consecutive sizes:"), "",
                  table_slopes(data["slopes"]), ""]
    if data.get("matrix_mlp"):
        import matrix_mlp

        parts += ["## Vectorised MLP (examples/vectorised_mlp.py at 784-128-10)", "",
                  ("Matrix-level gradients (docs/matrices.md) against the same network written by hand and "
                  "in PyTorch and JAX; `plain @ on stacks` is the generated module with its batched products "
                  "left to NumPy's `@`, one small product per example (benchmarks/matrix_mlp.py)."), "",
                  matrix_mlp.table(data["matrix_mlp"]), ""]
    if data.get("micro"):
        parts += ["## Forms in the generated code", "",
                  ("Each form the generated code uses against the alternatives, timed alone "
                  f"(median of >= {MIN_REPEATS})."), "", table_micro(data["micro"], data.get("wrapper", [])), ""]
    return "\n".join(parts).rstrip() + "\n"


def findings(data: dict) -> list[str]:
    """A few sentences computed from the run's numbers."""
    out = []
    records, big = data["records"], str(max(data["meta"]["batches"]))
    for label in ("logistic", "softmax K=10", "softmax K=3"):
        r = next((r for r in records if r["label"] == label), None)
        if not r:
            continue
        b = r["methods"]["backpropc"]["batches"].get(big, {})
        h = r["methods"].get("numpy", {}).get("batches", {}).get(big, {})
        j = r["methods"].get("jax", {}).get("batches", {}).get(big, {})
        if b.get("status") == "ok" and h.get("status") == "ok":
            jax = "" if j.get("status") != "ok" else f" and JAX's {_t(j['vg_s'])} ({b['vg_s'] / j['vg_s']:.2f}x)"
            out.append(f"- {label}, batch {int(big):,}: backpropc's value_and_grad takes {_t(b['vg_s'])}, against "
                       f"hand-written NumPy's {_t(h['vg_s'])} ({b['vg_s'] / h['vg_s']:.2f}x){jax}; its peak memory "
                       f"is {_mb(b['peak_traced'])} MB against {_mb(h['peak_traced'])} MB "
                       f"({b['peak_traced'] / h['peak_traced']:.2f}x).")
    for family, s in (data.get("slopes") or {}).items():
        if s["slope"] is not None:
            out.append(f"- Compile time grows as (graph size)^{s['slope']:.2f} on the {family} "
                       f"(log-log least squares over {len(s['points'])} sizes).")
    micro_rows = {r["label"].split("  (")[0]: r for r in data.get("micro", [])}

    def ratio(a, b):
        ra, rb = micro_rows.get(a), micro_rows.get(b)
        return None if not ra or not rb else ra["s"] / rb["s"]

    sig = ratio("_sigmoid(z)", "0.5 + 0.5*np.tanh(0.5*z)")
    old = ratio("np.exp(-np.logaddexp(0, -z))", "_sigmoid(z)")
    if sig and old:
        out.append(f"- The generated sigmoid, `_sigmoid(z)`, takes {sig:.2f}x as long as `0.5 + 0.5*np.tanh(0.5*z)` "
                   f"(which loses all relative accuracy below z = -37); the earlier form "
                   f"`np.exp(-np.logaddexp(0, -z))` took {old:.1f}x as long as `_sigmoid`.")
    lse = ratio("nested np.logaddexp, 9 calls", "_logsumexp(*zs)")
    if lse:
        out.append(f"- The generated logsumexp of 10 arrays, `_logsumexp`, is {lse:.1f}x faster than nested "
                   f"`np.logaddexp` calls.")
    chunk = ratio("all at once", "in chunks of 65,536 examples")
    if chunk:
        out.append(f"- Evaluating the logistic batch in chunks of 65,536 examples (the generated module's "
                   f"default `CHUNK`) is {chunk:.2f}x as fast as all at once.")
    sl = micro_rows.get("_sum_like(g, 0.3, ())")
    if sl:
        out.append(f"- `_sum_like` costs {_t(sl['s'])} per scalar gradient when there is no batch: "
                   f"{_t(sl['s'] * 1000)} of every call for 1,000 parameters (Rosenbrock n=1000).")
    tmp = ratio("x*g", "np.multiply(x, g, out=buffer)")
    if tmp:
        out.append(f"- A multiplication into a new temporary takes {tmp:.2f}x as long as one into preallocated "
                   f"memory when repeated alone (the allocator hands back the block just freed); the cost of "
                   f"temporaries shows instead in peak memory, the **arrays** column.")
    slow = sorted({f"{r['label']} at batch {int(k):,}" for r in records for name, m in r["methods"].items()
                   if name == "jax" for k, b in m.get("batches", {}).items() if b.get("fwd_repeats") == 1})
    if slow:
        out.append(f"- JAX's jitted forward pass (not its value_and_grad) was pathologically slow on "
                   f"{', '.join(slow)}: timed once there, and skipped at the family's larger sizes.")
    r = next((r for r in records if r["label"] == "mlp n=256"), None)
    b = r["methods"]["backpropc"]["batches"].get(big, {}) if r else {}
    h = r["methods"].get("numpy", {}).get("batches", {}).get(big, {}) if r else {}
    if b.get("status") == "ok" and h.get("status") == "ok":
        out.append(f"- mlp n=256, batch {int(big):,}: backpropc {_t(b['vg_s'])} against the hand-written "
                   f"matrix form's {_t(h['vg_s'])} ({b['vg_s'] / h['vg_s']:.2f}x); peak "
                   f"{_mb(b['peak_traced'])} MB against {_mb(h['peak_traced'])} MB.")
    return out


def print_tables(data: dict) -> None:
    records, batches = data["records"], data["meta"]["batches"]
    print()
    print(table_summary(records, batches))
    for family in FAMILIES:
        if any(r["family"] == family for r in records):
            print(f"\n{FAMILY_TITLES[family]}\n")
            print(table_compile(records, family))
            fb = batches if any(r["batched"] for r in records if r["family"] == family) else (1,)
            for batch in fb:
                print(f"\n{'per call' if batch == 1 else f'batch {batch:,}'}\n")
                print(table_run(records, family, batch, batch > 1 and batch == fb[-1]))
    if data.get("slopes"):
        print("\n" + table_slopes(data["slopes"]))
    if data.get("micro"):
        print("\n" + table_micro(data["micro"], data.get("wrapper", [])))



# ---------------------------------------------------------------------------------------------
# Sections of docs/benchmarks.md written by the other benchmarks (compile_time.py, calls.py).
# Each replaces its own section; run.py's full re-render keeps them.
# ---------------------------------------------------------------------------------------------

COMPILE_TIME_TITLE = "Compile time against sympy.lambdify and SymEngine"
CALLS_TITLE = "Per-call latency on the Moré-Garbow-Hillstrom problems"
SECOND_ORDER_TITLE = "Second derivatives"   # written by benchmarks/second_order.py
# from the tables benchmarks/mgh_hessian.py and benchmarks/indexed_hessian.py print
MGH_HESSIAN_TITLE = "Hessians of the Moré-Garbow-Hillstrom problems"
INDEXED_HESSIAN_TITLE = "Hessians of indexed models"
SECTION_TITLES = (COMPILE_TIME_TITLE, CALLS_TITLE, SECOND_ORDER_TITLE, MGH_HESSIAN_TITLE, INDEXED_HESSIAN_TITLE)


def _sections(text: str) -> dict[str, str]:
    """The level-2 sections of a Markdown text by title, each with its heading."""
    parts = re.split(r"(?m)^(?=## )", text)
    return {part.split("\n", 1)[0][3:].strip(): part.rstrip() + "\n" for part in parts if part.startswith("## ")}


def update_section(path, title: str, section: str) -> None:
    """Replace the section `title` of the Markdown file at `path` (or append it)."""
    from pathlib import Path

    path = Path(path)
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    old = _sections(text).get(title)
    section = section.rstrip() + "\n"  # as _sections cuts it: a rerun adds no blank lines
    text = text.replace(old, section) if old else text.rstrip() + "\n\n" + section
    path.write_text(text.rstrip() + "\n")


def with_kept_sections(new_text: str, old_path) -> str:
    """run.py's rendering of docs/benchmarks.md, followed by the sections other benchmarks wrote."""
    from pathlib import Path

    old_path = Path(old_path)
    old = _sections(old_path.read_text()) if old_path.exists() else {}
    kept = [old[t] for t in SECTION_TITLES if t in old]
    return "\n".join([new_text.rstrip() + "\n"] + kept)


def _provenance(meta: dict, script: str) -> str:
    load = "" if not meta.get("loadavg_start") else \
        f"; 1-minute load average {meta['loadavg_start'][0]} before, {meta['loadavg_end'][0]} after, on a shared machine"
    return (f"Generated by `python benchmarks/{script}` ({meta['mode']} mode, {meta['started']}, "
            f"{meta['duration_s'] / 60:.1f} minutes{load}); raw numbers in `benchmarks/results/"
            f"{script.replace('.py', '.json')}`.")


def section_compile_time(data: dict) -> str:
    import compile_time

    meta = data["meta"]
    text = [f"## {COMPILE_TIME_TITLE}", "",
            _wrap(_provenance(meta, "compile_time.py") + f" SymPy {meta['sympy']}, SymEngine "
                  f"{meta['symengine'] or 'not installed'}, Python {meta['python']}."), "",
            _wrap(f"Each workload is written as a user would, a Python loop over scalar symbols. **bp.compile** "
                  f"builds the module with value and gradient; **lambdify** is `sympy.lambdify` of the forward "
                  f"expression alone (the steps inlined into one expression beforehand, untimed); **SymEngine** "
                  f"converts that expression, differentiates it per parameter and builds "
                  f"`Lambdify(args, [f, df/dx...], cse=True)` (default backend). Every compile starts from an "
                  f"empty SymPy cache; the three take turns for {meta['rounds']} rounds in one process and each "
                  f"time is the median. **agree**: the largest relative difference between the functions built "
                  f"(value, and gradient against SymEngine's) at a random point. The slopes are log-log least "
                  f"squares of time against N. bp.compile re-rolls a family of 64 or more alike terms into "
                  f"array code (docs/arrays.md, \"Re-rolled scalar models\"): extended Rosenbrock at N = 100 "
                  f"has 50 pairs of terms, written out; every other row is re-rolled, so its compile time "
                  f"grows with the conversion of the SymPy expression, not with the module."), "",
            compile_time.table(data), "",
            "Against the goals of the op-registry issue:", ""]
    text += [f"- {g}" for g in data["goals"]]
    return "\n".join(text) + "\n"


def section_calls(data: dict) -> str:
    import calls

    meta = data["meta"]
    text = [f"## {CALLS_TITLE}", "",
            _wrap(_provenance(meta, "calls.py") + f" NumPy {meta['numpy']}, JAX {meta['jax'] or 'not installed'} "
                  f"(CPU, float64), Python {meta['python']}."), "",
            _wrap("One value-and-gradient call of each of the 35 problems of Moré, Garbow and Hillstrom (1981) "
                  "at its standard starting point (benchmarks/mgh.py: n = 10 for most variable-dimension "
                  "problems), and of extended Rosenbrock at the larger n of the last row, with the parameters "
                  "as an optimiser hands them over, one float64 vector theta. **backpropc**: "
                  "`value_and_grad_flat(theta)` where the module has it, else `value_and_grad(*theta.tolist())` "
                  "(unpacking inside the timed call); **floats**: `value_and_grad(*floats)`, unpacked beforehand; "
                  "**np.float64**: `value_and_grad(*theta)`, np.float64 scalars; **JAX**: "
                  "`jax.jit(jax.value_and_grad(f))(theta)` of the same function over the array, waited for. "
                  f"The methods take turns for {meta['rounds']} rounds in one process, each round a loop of "
                  "calls, and each figure is the median over the rounds. **agrees**: largest difference of "
                  "value and gradient from JAX's, relative to the largest."), "",
            calls.table(data), ""]
    return "\n".join(text) + "\n"
