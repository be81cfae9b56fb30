"""Run-time, memory and compile-time benchmarks of backpropc against hand-written and library AD.

    python benchmarks/run.py [--quick] [--out benchmarks/results] [--docs docs/benchmarks.md]
    python benchmarks/run.py --from-json benchmarks/results/run.json   # re-render, no measuring

For each workload (logistic, logistic + L2, the scalar-weight MLP, the deep chain as one SymPy
expression, softmax cross-entropy, Rosenbrock) it measures backpropc's compile time, operation
counts, and the run time and peak memory of the generated `value_and_grad` and `forward`, and the
same for the baselines that apply and are importable: hand-written NumPy, `sympy.lambdify` of
the naive `sympy.diff` gradients with and without `sympy.cse`, SymEngine (`Lambdify`, LLVM
backend, cse), JAX (`jit`, CPU, float64), PyTorch (eager, float64) and HIPS autograd. All run in
this one process on the same data. It prints the tables, writes `run.json` under --out and
regenerates docs/benchmarks.md from the measurements of this run.

The pieces: workloads.py (models and data), baselines.py (the other methods), measuring.py
(timing, memory, one workload), reporting.py (tables and the docs); compile_time.py and calls.py
are separate benchmarks that write their own sections of docs/benchmarks.md.

`--quick` is a smoke test (under a minute): batch 10^4 only and the smallest size of each
family; it writes `run.quick.json` and leaves docs/benchmarks.md alone unless --docs is given.
The optional baselines need a separate environment, for example:

    python3 -m venv /tmp/benchvenv
    /tmp/benchvenv/bin/pip install -e . jax jaxlib autograd symengine threadpoolctl torch
    /tmp/benchvenv/bin/python benchmarks/run.py
"""

from __future__ import annotations

import os
import sys


def _threads_from_argv() -> int:
    """--threads N, read before NumPy, JAX or PyTorch is imported (their pools size at import)."""
    for i, arg in enumerate(sys.argv):
        if arg == "--threads" and i + 1 < len(sys.argv):
            return int(sys.argv[i + 1])
        if arg.startswith("--threads="):
            return int(arg.split("=", 1)[1])
    return 1


THREADS = _threads_from_argv()
if THREADS > 0:
    for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[_var] = str(THREADS)
    if THREADS == 1:
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                                   " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1").strip()

import argparse  # noqa: E402 - after the sys.path entry above
import json  # noqa: E402 - after the sys.path entry above
import time  # noqa: E402 - after the sys.path entry above
from pathlib import Path  # noqa: E402 - after the sys.path entry above

from baselines import optional_modules  # noqa: E402 - after the sys.path entry above
from measuring import (  # noqa: E402 - after the sys.path entry above
    BATCHES,
    Options,
    compile_slopes,
    environment,
    loadavg,
    meminfo_kb,
    micro,
    run_workload,
    wrapper_overhead,
)
from reporting import FAMILIES, print_tables, render_docs, with_kept_sections  # noqa: E402 - after the sys.path entry above
from workloads import workloads  # noqa: E402 - after the sys.path entry above

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="batch 10^4 and the smallest sizes only")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"), help="directory for run.json")
    parser.add_argument("--docs", default=None,
                        help="markdown to regenerate (default docs/benchmarks.md; not written by --quick)")
    parser.add_argument("--only", nargs="*", choices=FAMILIES, help="only these families (no docs)")
    parser.add_argument("--max-call-s", type=float, default=None,
                        help="skip a method whose call takes (or is estimated to take) longer (20; 1 with --quick)")
    parser.add_argument("--threads", type=int, default=1,
                        help="threads for BLAS, JAX and PyTorch (default 1; 0 leaves the libraries' defaults)")
    parser.add_argument("--max-gb", type=float, default=None,
                        help="skip a call estimated to need more memory (default: 10, or less than half "
                             "of the available memory)")
    parser.add_argument("--from-json", help="re-render tables and docs from a saved run, measure nothing")
    args = parser.parse_args()
    docs = Path(args.docs) if args.docs else (None if args.quick or args.only else ROOT / "docs" / "benchmarks.md")

    if args.from_json:
        data = json.loads(Path(args.from_json).read_text())
        print_tables(data)
        if docs:
            docs.write_text(with_kept_sections(render_docs(data), docs))
            print(f"\ndocs: {docs}")
        return

    def log(message):
        print(f"[{time.perf_counter() - t0:7.1f}s] {message}", flush=True)

    t0 = time.perf_counter()
    started = time.strftime("%Y-%m-%d %H:%M %Z")
    load_start = loadavg()
    modules, missing = optional_modules()
    if args.max_gb is None:
        available = meminfo_kb("MemAvailable")
        args.max_gb = 10.0 if available is None else round(min(10.0, available / 2**20 / 2), 1)
    if args.max_call_s is None:
        args.max_call_s = 1.0 if args.quick else 20.0
    if "torch" in modules and THREADS > 0:
        modules["torch"].set_num_threads(THREADS)
    options = Options(batches=(10**4,) if args.quick else BATCHES, max_call_s=args.max_call_s,
                      max_gb=args.max_gb)
    env = environment(modules, missing)
    log(f"baselines: {', '.join(modules) or 'none'}; missing: {', '.join(missing) or 'none'}")
    records = []
    for w in workloads(args.quick):
        if args.only and w.family not in args.only:
            continue
        records.append(run_workload(w, modules, options, log))
        records[-1]["loadavg"] = loadavg()
    slopes, micro_rows, wrapper, matrix = None, [], [], None
    if not args.only:
        try:   # a failure here must not lose the measurements above
            slopes = compile_slopes(records, args.quick, log)
            micro_rows = micro(max(options.batches), log)
            wrapper = wrapper_overhead(args.quick, log)
            import matrix_mlp  # the vectorised 784-128-10 MLP: its own script, in this process too
            matrix = matrix_mlp.measure(repeats=5 if args.quick else 30)
            log("matrix MLP: " + ", ".join(f"{r['method']} {r['seconds']:.3g} s" for r in matrix["rows"]))
        except Exception as exc:  # noqa: BLE001 - a failure here must not lose the measurements above
            log(f"slopes/micro failed: {type(exc).__name__}: {exc}")
    meta = {"mode": "quick" if args.quick else "full", "batches": list(options.batches),
            "started": started, "duration_s": time.perf_counter() - t0, "loadavg_start": load_start,
            "loadavg_end": loadavg(), "max_call_s": args.max_call_s, "max_gb": args.max_gb, "threads": THREADS,
            "command": "python " + " ".join(sys.argv)}
    data = {"meta": meta, "env": env, "records": records, "slopes": slopes, "micro": micro_rows,
            "wrapper": wrapper, "matrix_mlp": matrix}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / ("run.quick.json" if args.quick else "run.only.json" if args.only else "run.json")
    try:
        meta["json"] = str(json_path.resolve().relative_to(ROOT))
    except ValueError:
        meta["json"] = str(json_path)
    json_path.write_text(json.dumps(data, indent=1, default=float))
    print_tables(data)
    print(f"\njson: {json_path}")
    if docs:
        docs.write_text(with_kept_sections(render_docs(data), docs))
        print(f"docs: {docs}")
    print(f"total: {meta['duration_s'] / 60:.1f} minutes")


if __name__ == "__main__":
    main()
