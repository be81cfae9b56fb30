"""Nanoseconds per element of the pure-NumPy Gamma family against scipy.special.

    python benchmarks/special_functions.py [--size 100000] [--repeats 20] [--out benchmarks/results]

Each helper of backpropc/runtime/gamma.py and, when SciPy is installed (it is not a
dependency), its scipy.special counterpart, timed in this process on the same float64 array
(positive x in (0, 30), for binomial n in (0, 60) and k in (0, n)); the median of the repeats.
Prints a table and writes special_functions.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import numpy as np
from measuring import median_time

# the runtime helpers themselves, as the generated modules carry them verbatim
from backpropc.runtime.gamma import (
    _binomial,
    _digamma,
    _factorial,
    _gamma,
    _loggamma,
    _polygamma,
)


def cases(size: int):
    """(name, our function, SciPy's or None), each a call with no arguments."""
    try:
        from scipy import special
    except ImportError:
        special = None
    rng = np.random.default_rng(0)
    x = rng.uniform(0.0, 30.0, size)
    n = np.floor(rng.uniform(0.0, 60.0, size))
    k = np.floor(rng.uniform(0.0, 1.0, size) * (n + 1))

    def theirs(name, *args):
        return None if special is None else (lambda: getattr(special, name)(*args))

    return [
        ("loggamma", lambda: _loggamma(x), theirs("gammaln", x)),
        ("gamma", lambda: _gamma(x), theirs("gamma", x)),
        ("digamma", lambda: _digamma(x), theirs("digamma", x)),
        ("polygamma(1, x)", lambda: _polygamma(1, x), theirs("polygamma", 1, x)),
        ("polygamma(3, x)", lambda: _polygamma(3, x), theirs("polygamma", 3, x)),
        ("factorial (integers)", lambda: _factorial(n), theirs("factorial", n, False)),
        ("binomial (integers)", lambda: _binomial(n, k), theirs("binom", n, k)),
        ("np.exp (for scale)", lambda: np.exp(x), None),
    ]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    args = parser.parse_args(argv)
    rows = []
    for name, ours, scipy_call in cases(args.size):
        ns_ours = median_time(ours, repeats=args.repeats)[0] / args.size * 1e9
        ns_scipy = None if scipy_call is None else median_time(scipy_call, repeats=args.repeats)[0] / args.size * 1e9
        rows.append({"function": name, "backpropc_ns": ns_ours, "scipy_ns": ns_scipy,
                     "ratio": None if ns_scipy is None else ns_ours / ns_scipy})
    print(f"{'function':<22} {'backpropc ns/elt':>17} {'scipy ns/elt':>13} {'ratio':>7}")
    for r in rows:
        scipy_ns = "-" if r["scipy_ns"] is None else f"{r['scipy_ns']:.1f}"
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.1f}"
        print(f"{r['function']:<22} {r['backpropc_ns']:>17.1f} {scipy_ns:>13} {ratio:>7}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"size": args.size, "repeats": args.repeats, "numpy": np.__version__,
            "python": sys.version.split()[0], "machine": platform.machine()}
    (out / "special_functions.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
