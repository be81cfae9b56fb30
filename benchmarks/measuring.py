"""Measuring for benchmarks/run.py: timing and memory helpers, one method at one batch size, one
workload with all its baselines, the compile-time sweep, micro-benchmarks of forms the generated
code uses, and the machine's description.
"""

from __future__ import annotations

import functools
import gc
import math
import os
import platform
import re
import statistics
import time
import tracemalloc
from dataclasses import dataclass
from pathlib import Path

import baselines as bl
import numpy as np
import sympy as sp
import workloads as wl
from sympy.core.cache import clear_cache

import backpropc as bp

BATCHES = (10**4, 10**6)
# tracemalloc finds the line of every allocation in the calling function: on one huge generated
# function (the naive trees) that is quadratic and takes minutes, so larger functions are not traced.
TRACE_MAX_OPS = 20_000
MIN_REPEATS, MIN_TOTAL_S, MAX_REPEATS = 5, 1.0, 50
COMPILE_REPEATS = 3
# Sizes past which the naive sympy.diff gradients are not built: the next size up took (or, by
# the growth measured below it, would take) more than ~20 s to differentiate or to simplify.
NAIVE_MAX = {"chain": 10, "mlp": 16, "rosenbrock": 100}
# SymEngine's Lambdify(cse=True) did not finish the depth-1000 chain in 5 minutes in a trial.
SYMENGINE_MAX = {"chain": 100}
NAIVE_BUDGET_S = 20.0    # a naive build slower than this stops the family's larger sizes

# ---------------------------------------------------------------------------------------------
# Measuring
# ---------------------------------------------------------------------------------------------

def median_time(f, repeats: int | None = None) -> tuple[float, int]:
    """(median wall time of f(), calls timed) after one warm-up call: `repeats` calls, or by
    default at least MIN_REPEATS, more (up to MAX_REPEATS) until MIN_TOTAL_S seconds are spent."""
    f()
    times = []
    while (len(times) < repeats if repeats else
           len(times) < MIN_REPEATS or (sum(times) < MIN_TOTAL_S and len(times) < MAX_REPEATS)):
        start = time.perf_counter()
        f()
        times.append(time.perf_counter() - start)
    return statistics.median(times), len(times)


def interleaved_times(functions: dict, rounds: int, number: int = 1, before=None) -> dict[str, list[float]]:
    """Seconds per call of each function, one entry per round. The rounds take the functions in
    turn (a, b, c, a, b, c, ...), so that a change of load on a shared machine falls on all of
    them alike and their ratios stay meaningful. Each round times `number` calls in a loop (for
    microsecond calls); `before()` runs untimed before each round (say, clearing SymPy's cache)."""
    times: dict[str, list[float]] = {name: [] for name in functions}
    for f in functions.values():   # warm-up
        f()
    for _ in range(rounds):
        for name, f in functions.items():
            if before:
                before()
            start = time.perf_counter()
            for _ in range(number):
                f()
            times[name].append((time.perf_counter() - start) / number)
    return times


def traced_peak(f) -> int:
    """Peak bytes allocated (and visible to tracemalloc: NumPy's are) during one call of f."""
    gc.collect()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        result = f()
        peak = tracemalloc.get_traced_memory()[1] - base
        del result
    finally:
        tracemalloc.stop()
    return peak


def _status_kb(field_name: str) -> int | None:
    try:
        match = re.search(rf"^{field_name}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.MULTILINE)
    except OSError:
        return None
    return int(match.group(1)) if match else None


def meminfo_kb(field_name: str) -> int | None:
    try:
        match = re.search(rf"^{field_name}:\s+(\d+) kB", Path("/proc/meminfo").read_text(), re.MULTILINE)
    except OSError:
        return None
    return int(match.group(1)) if match else None


def _malloc_trim() -> None:
    """Hand freed heap memory back to the OS (glibc), so that the next call's allocations show in
    the resident set instead of reusing pages the process already holds."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def rss_peak(f) -> int | None:
    """Growth of the resident set's high-water mark during one call of f, after malloc_trim
    (Linux: clear_refs 5 resets VmHWM). Sees every allocator (JAX, PyTorch), but memory an
    allocator keeps cached from earlier calls is not counted: a lower bound."""
    gc.collect()
    _malloc_trim()
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return None
    before = _status_kb("VmRSS")
    result = f()
    peak = _status_kb("VmHWM")
    del result
    return None if before is None or peak is None else max(0, peak - before) * 1024


def relative_diff(got, ref) -> float:
    """max |got - ref| over the objective and every gradient component, relative to the largest
    magnitude in ref (normwise, so a near-zero component does not dominate)."""
    g = np.concatenate([[got[0]], got[1]])
    r = np.concatenate([[ref[0]], ref[1]])
    if g.shape != r.shape:
        return float("inf")
    return float(np.max(np.abs(g - r)) / max(np.max(np.abs(r)), 1e-300))


def loadavg() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


@dataclass
class Options:
    batches: tuple[int, ...]
    max_call_s: float
    max_gb: float


def measure_method(method: bl.Method, P, D, batch: int, ref, estimate: dict | None,
                   options: Options, slow_forward: str | None = None) -> tuple[dict, tuple | None]:
    """One method at one batch size: (row, (objective, flat gradient) or None when skipped).

    A forward pass whose first call takes longer than the limit, or than 1 s and 5 value_and_grad
    calls, is reported from that one call ("fwd_repeats": 1); with `slow_forward` (why) it is not
    run at all."""
    # backpropc, the subject, is always timed; only the memory limit applies to it
    max_call_s = math.inf if isinstance(method, bl.Backpropc) else options.max_call_s
    if estimate:
        scale = batch / estimate["batch"]
        origin = f"estimated from batch {estimate['batch']:,}"
        if estimate["vg_s"] * scale > max_call_s:
            return {"status": f"skipped: ~{estimate['vg_s'] * scale:.0f} s per call ({origin})"}, None
        if estimate.get("peak_bytes") and estimate["peak_bytes"] * scale > options.max_gb * 2**30:
            return {"status": f"skipped: ~{estimate['peak_bytes'] * scale / 2**30:.0f} GB peak ({origin})"}, None
    vg, fwd, extract = method.prepare(P, D)
    start = time.perf_counter()
    got = extract(vg())
    first = time.perf_counter() - start
    if first > max_call_s:
        return {"status": f"skipped: one call took {first:.1f} s (> {max_call_s:g} s)",
                "first_call_s": first}, None
    row = {"status": "ok", "rel_diff": 0.0 if ref is None else relative_diff(got, ref)}
    row["vg_s"], row["vg_repeats"] = median_time(vg)
    if slow_forward:
        row["fwd_s"], row["fwd_repeats"], row["fwd_status"] = None, 0, slow_forward
    else:
        start = time.perf_counter()
        fwd()
        first = time.perf_counter() - start
        # a forward pass far slower than the gradient (JAX's jitted MLP forward at 10^6) is
        # reported from that one call rather than repeated
        if first > min(max_call_s, max(1.0, 5 * row["vg_s"])):
            row["fwd_s"], row["fwd_repeats"] = first, 1
        else:
            row["fwd_s"], row["fwd_repeats"] = median_time(fwd)
    traceable = method.traced and (method.ops[1] or 0) <= TRACE_MAX_OPS
    row["peak_traced"] = traced_peak(vg) if traceable else None
    row["peak_rss"] = rss_peak(vg)
    del vg, fwd, extract
    gc.collect()
    return row, got


# (family, method) pairs whose build ran over NAIVE_BUDGET_S: not built at larger sizes.
_over_budget: set[tuple[str, str]] = set()
# (family, method, batch) -> size whose forward pass took longer than the limit: larger sizes of
# the family skip it (it grows with the size).
_slow_forward: dict[tuple[str, str, int], int] = {}


def run_workload(w: wl.Workload, modules: dict, options: Options, log) -> dict:
    """Compile, build the baselines, and measure each at each batch size."""
    clear_cache()
    model = w.model()
    compile_times = []
    for _ in range(COMPILE_REPEATS):
        clear_cache()
        start = time.perf_counter()
        compiled = bp.compile(model)
        compile_times.append(time.perf_counter() - start)
    compile_s = statistics.median(compile_times)
    record = {"family": w.family, "size": w.size, "label": w.label, "batched": w.batched,
              "compile_s": compile_s, "compile_times": compile_times,
              "ops_forward": compiled.ops["forward"], "ops_vg": compiled.ops["value_and_grad"],
              "methods": {}}
    log(f"{w.label}: compiled in {compile_s:.3g} s, ops {compiled.ops['forward']} -> "
        f"{compiled.ops['value_and_grad']}")

    methods: list[bl.Method] = [bl.Backpropc(compiled, compile_s)]
    record["methods"]["backpropc"] = {"build_s": compile_s, "ops": list(methods[0].ops), "batches": {}}
    failures: dict[str, str] = {}
    if w.hand:
        methods.append(bl.HandNumpy(*w.hand))
    for cse in (False, True):
        name = "naive_cse" if cse else "naive"
        limit = NAIVE_MAX.get(w.family)
        if (limit is not None and w.size > limit) or (w.family, name) in _over_budget:
            failures[name] = f"not built (size > {limit}, see Limits)"
            continue
        try:
            methods.append(bl.Naive(compiled, model, cse))
            log(f"  {name}: built in {methods[-1].build_s:.3g} s, ops {methods[-1].ops}")
            if methods[-1].build_s > NAIVE_BUDGET_S:
                _over_budget.add((w.family, name))
        except Exception as exc:  # noqa: BLE001 - a baseline that fails is a status in the table
            failures[name] = f"failed: {type(exc).__name__}: {str(exc)[:80]}"
    for name, cls in (("symengine", bl.SymEngine), ("jax", bl.Jax), ("torch", bl.Torch), ("autograd", bl.Autograd)):
        if name not in modules:
            failures[name] = "not installed"
            continue
        if name == "symengine":
            limit = SYMENGINE_MAX.get(w.family)
            if limit is not None and w.size > limit:
                failures[name] = f"not built (size > {limit}, see Limits)"
                continue
        try:
            methods.append(cls(compiled, model, modules[name]) if name == "symengine" else cls(w, modules[name]))
            if methods[-1].build_s is not None:
                log(f"  {name}: built in {methods[-1].build_s:.3g} s")
        except Exception as exc:  # noqa: BLE001 - a baseline that fails is a status in the table
            failures[name] = f"failed: {type(exc).__name__}: {str(exc)[:80]}"

    batches = options.batches if w.batched else (1,)
    estimates: dict[str, dict] = {}
    workload_note = None
    for batch in batches:
        rng = np.random.default_rng(batch)
        P, D = w.data(rng, batch)
        ref = None
        bp_estimate = estimates.get("backpropc")
        if bp_estimate and bp_estimate.get("peak_bytes") and \
                bp_estimate["peak_bytes"] * batch / bp_estimate["batch"] > options.max_gb * 2**30:
            # too big for backpropc's generated code: the reverse pass of every method stores
            # the same per-level values, so none runs at this size
            need = bp_estimate["peak_bytes"] * batch / bp_estimate["batch"] / 2**30
            workload_note = f"batch {batch:,} not run: backpropc would need ~{need:.0f} GB (> {options.max_gb:g} GB)"
            log(f"  {workload_note}")
            for m in methods:
                record["methods"].setdefault(m.name, {"batches": {}})["batches"][str(batch)] = \
                    {"status": f"skipped: ~{need:.0f} GB peak (backpropc's)"}
            continue
        for m in methods:
            entry = record["methods"].setdefault(m.name, {"batches": {}})
            estimate = estimates.get(m.name)
            if estimate and not m.traced:
                # JAX and PyTorch allocate outside tracemalloc: assume they need what the
                # hand-written NumPy (same vectorised form) or else backpropc needed
                proxy = estimates.get("numpy") or estimates.get("backpropc") or {}
                if proxy.get("peak_bytes"):
                    estimate = dict(estimate, peak_bytes=proxy["peak_bytes"] * estimate["batch"] / proxy["batch"])
            try:
                slow = _slow_forward.get((w.family, m.name, batch))
                why = None if slow is None else \
                    f"skipped: 1 call at {wl.SIZE_NAMES[w.family]}={slow} took > 5 x its value_and_grad"
                result, got = measure_method(m, P, D, batch, ref, estimate, options, why)
                if result.get("fwd_repeats") == 1:
                    _slow_forward[(w.family, m.name, batch)] = w.size
            except bl.Skip as exc:
                result, got = {"status": str(exc)}, None
            except Exception as exc:  # noqa: BLE001 - a baseline that fails is a status in the table
                result, got = {"status": f"failed: {type(exc).__name__}: {str(exc)[:80]}"}, None
            if got is not None:
                if m.name == "backpropc":
                    ref = got
                # estimates for the larger batches come from the smallest one measured
                estimates.setdefault(m.name, {"batch": batch, "vg_s": result["vg_s"],
                                              "peak_bytes": result["peak_traced"]})
            entry["build_s"] = m.build_s
            entry["ops"] = list(m.ops)
            entry["batches"][str(batch)] = result
            try:
                log(f"  {m.name:9} batch {batch:>9,}: " + _log_cells(result))
            except Exception as exc:  # noqa: BLE001 - logging must not lose the measurement
                log(f"  {m.name:9} batch {batch:>9,}: (log failed: {exc})")
        del P, D
        gc.collect()
    for name, status in failures.items():
        record["methods"][name] = {"status": status, "batches": {}}
    record["note"] = workload_note
    return record


def _log_cells(r: dict) -> str:
    if r.get("status") != "ok":
        return r.get("status", "")
    peak = "-" if r["peak_traced"] is None else f"{r['peak_traced'] / 1e6:.1f} MB"
    fwd = r.get("fwd_status") or f"{r['fwd_s']:.3g} s" + (" (1 call)" if r.get("fwd_repeats") == 1 else "")
    return (f"vg {r['vg_s']:.3g} s, fwd {fwd}, peak {peak}, "
            f"diff {r['rel_diff']:.1e}")


def compile_slopes(records: list[dict], quick: bool, log) -> dict:
    """Compile time against graph size (ops forward), per family: a least-squares log-log slope
    over all sizes and the slope between consecutive sizes."""
    sizes = {"chain": (10, 100, 200, 400, 1000), "mlp": (4, 16, 64, 256)}
    if quick:
        sizes = {"chain": (10, 100), "mlp": (4, 16)}
    mlp_model = wl.example_function("mlp", "mlp_model")
    build = {"chain": wl.chain_model, "mlp": lambda n: mlp_model(3, n, 2, name=f"mlp{n}")}
    result = {}
    for family, family_sizes in sizes.items():
        points = []
        for size in family_sizes:
            known = next((r for r in records if r["family"] == family and r["size"] == size), None)
            if known:
                points.append({"size": size, "ops_forward": known["ops_forward"],
                               "compile_s": known["compile_s"]})
                continue
            clear_cache()
            model = build[family](size)
            times = []
            for _ in range(COMPILE_REPEATS):
                clear_cache()
                start = time.perf_counter()
                compiled = bp.compile(model)
                times.append(time.perf_counter() - start)
            points.append({"size": size, "ops_forward": compiled.ops["forward"],
                           "compile_s": statistics.median(times)})
            log(f"slope sweep {family} {size}: {points[-1]['compile_s']:.3g} s")
        x = np.log([p["ops_forward"] for p in points])
        y = np.log([p["compile_s"] for p in points])
        slope = float(np.polyfit(x, y, 1)[0]) if len(points) > 1 else None
        local = [float((y[i + 1] - y[i]) / (x[i + 1] - x[i])) for i in range(len(points) - 1)]
        result[family] = {"points": points, "slope": slope, "local": local}
    return result


# ---------------------------------------------------------------------------------------------
# Micro-benchmarks of forms the generated code uses, against the alternatives
# ---------------------------------------------------------------------------------------------

def micro(n: int, log) -> list[dict]:
    rng = np.random.default_rng(1)
    z = rng.normal(scale=3.0, size=n)
    x, g = rng.normal(size=n), rng.normal(size=n)
    rows = []

    def add(group, label, f, per=1):
        t, reps = median_time(f)
        rows.append({"group": group, "label": label, "s": t / per, "repeats": reps})
        log(f"micro {group}: {label}: {t / per:.3g} s")

    # the runtime helpers as the generated modules carry them
    logistic = bp.compile(wl.example_model("logistic")).load()
    helpers = {"_sigmoid": logistic._sigmoid, "_logsumexp": bp.compile(wl.softmax_model(3)).load()._logsumexp}
    group = f"sigmoid of {n:,} values"
    add(group, "_sigmoid(z)  (backpropc: 1/(1 + exp(-z)) in place)", lambda: helpers["_sigmoid"](z))
    add(group, "np.exp(-np.logaddexp(0, -z))  (backpropc's earlier form)", lambda: np.exp(-np.logaddexp(0, -z)))
    with np.errstate(over="ignore"):
        add(group, "1/(1 + np.exp(-z))  (overflows to inf for z < -709, harmless)", lambda: 1 / (1 + np.exp(-z)))
    add(group, "0.5 + 0.5*np.tanh(0.5*z)  (hand-written baseline)", lambda: 0.5 + 0.5 * np.tanh(0.5 * z))
    try:
        from scipy.special import expit
        add(group, "scipy.special.expit(z)", lambda: expit(z))
    except ImportError:
        pass

    sum_like = logistic._sum_like
    shape = (n,)
    group = f"gradient of a scalar parameter, {n:,} examples"
    add(group, "_sum_like(x*z_bar, w, shape)  (backpropc)", lambda: sum_like(x * g, 0.3, shape))
    add(group, "np.sum(x*z_bar)", lambda: np.sum(x * g))
    add(group, "np.dot(x, z_bar)", lambda: np.dot(x, g))
    reps = 10_000
    group = "_sum_like on a Python float (no batch, e.g. Rosenbrock), per call"
    add(group, "_sum_like(g, 0.3, ())  (backpropc)", lambda: [sum_like(1.5, 0.3, ()) for _ in range(reps)], reps)
    add(group, "float(g)", lambda: [1.5 for _ in range(reps)], reps)

    group = f"one multiplication of {n:,} values"
    out = np.empty(n)
    add(group, "x*g  (a new temporary, as generated code does)", lambda: x * g)
    add(group, "np.multiply(x, g, out=buffer)  (into preallocated memory)", lambda: np.multiply(x, g, out=out))

    zs = [rng.normal(size=n) for _ in range(10)]
    Z = np.stack(zs)
    group = f"logsumexp of 10 arrays of {n:,}"
    add(group, "_logsumexp(*zs)  (backpropc: max-shifted)", lambda: helpers["_logsumexp"](*zs))
    add(group, "nested np.logaddexp, 9 calls  (backpropc's earlier form)", lambda: functools.reduce(np.logaddexp, zs))

    def shifted():
        m = functools.reduce(np.maximum, zs)
        return m + np.log(sum(np.exp(v - m) for v in zs))

    add(group, "max-shifted: m + log(sum exp(z_k - m)), 10 arrays", shifted)
    def stacked():
        m = Z.max(axis=0)
        return m + np.log(np.exp(Z - m).sum(axis=0))

    add(group, "max-shifted on a stacked (10, n) array", stacked)
    group = f"logistic value_and_grad, {n:,} examples"
    module = logistic
    w, b = 0.3, 0.1

    def whole():
        module.CHUNK = 0
        return module.value_and_grad(w, b, x, g)

    def chunked():
        module.CHUNK = 65536
        return module.value_and_grad(w, b, x, g)

    add(group, "in chunks of 65,536 examples  (backpropc, CHUNK = 65536)", chunked)
    add(group, "all at once  (CHUNK = 0)", whole)
    return rows


def wrapper_overhead(quick: bool, log) -> list[dict]:
    """The generated functions' argument checks: the checked call against the bare function."""
    rng = np.random.default_rng(2)
    cases = [("logistic, batch 10,000", wl.example_model("logistic"), *wl._logistic_data(rng, 10**4))]
    cases += [(f"Rosenbrock n={n}", wl.rosenbrock_model(n), *wl._rosenbrock_data(n)(rng, 1))
              for n in ((10,) if quick else (10, 1000))]
    rows = []
    for label, model, P, D in cases:
        m = bp.compile(model).load()
        args = bl.flat_args(P, D)
        bare = getattr(m.value_and_grad, "__wrapped__", None)
        if bare is None:   # a module without a separate checking wrapper
            continue
        t_checked, _ = median_time(functools.partial(m.value_and_grad, *args))
        t_bare, _ = median_time(functools.partial(bare, *args))
        rows.append({"label": label, "checked_s": t_checked, "bare_s": t_bare})
        log(f"wrapper {label}: checked {t_checked:.3g} s, bare {t_bare:.3g} s")
    return rows


# ---------------------------------------------------------------------------------------------
# Environment
# ---------------------------------------------------------------------------------------------

def environment(modules: dict, missing: dict) -> dict:
    env = {"python": platform.python_version(), "machine": platform.machine(),
           "cpus": os.cpu_count(), "numpy": np.__version__, "sympy": sp.__version__,
           "backpropc": bp.__version__, "optional": {}, "missing": missing}
    try:
        env["cpus_usable"] = len(os.sched_getaffinity(0))
    except AttributeError:
        pass
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
        env["cpu_model"] = re.search(r"model name\s*:\s*(.*)", cpuinfo).group(1).strip()
        env["memory_gb"] = round(int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text())
                                     .group(1)) / 2**20, 1)
    except (OSError, AttributeError):
        pass
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        env["blas"] = f"{blas.get('name')} {blas.get('version')}"
    except Exception:  # noqa: BLE001 - NumPy builds describe BLAS differently
        env["blas"] = "unknown"
    try:
        from threadpoolctl import threadpool_info
        env["threadpools"] = [f"{p.get('internal_api')}{' ' + p['version'] if p.get('version') else ''} "
                              f"({p.get('num_threads')} thread{'s' if p.get('num_threads') != 1 else ''}"
                              f"{', ' + p['architecture'] if p.get('architecture') else ''})"
                              for p in threadpool_info()]
    except ImportError:
        env["threadpools"] = None
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version
    for name, mod in modules.items():
        try:
            version = dist_version(name)
        except PackageNotFoundError:
            version = getattr(mod, "__version__", "?")
        if name == "torch":
            n = mod.get_num_threads()
            version += f" ({n} thread{'s' if n != 1 else ''})"
        if name == "jax":
            import jaxlib
            version += f" (jaxlib {jaxlib.__version__}, {mod.devices()[0].platform})"
        env["optional"][name] = version
    return env

