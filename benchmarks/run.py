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

import argparse  # noqa: E402
import functools  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import operator  # noqa: E402
import platform  # noqa: E402
import re  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from types import SimpleNamespace  # noqa: E402

import numpy as np  # noqa: E402
import sympy as sp  # noqa: E402
from sympy.core.cache import clear_cache  # noqa: E402

import backpropc as bp  # noqa: E402
from backpropc.check import numpy_function, to_sympy  # noqa: E402
from backpropc.compare import naive_gradient  # noqa: E402
from backpropc.graph import CONST, SYMBOL  # noqa: E402
from backpropc.opcount import tree_ops  # noqa: E402
from backpropc.special import LOGSUMEXP_SOURCE, SIGMOID_SOURCE  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples"))
import logistic as logistic_example  # noqa: E402
import logistic_l2 as logistic_l2_example  # noqa: E402
from mlp import mlp_model  # noqa: E402

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
FAMILIES = ("logistic", "logistic_l2", "mlp", "chain", "softmax", "rosenbrock")
FAMILY_TITLES = {
    "logistic": "Logistic least squares (examples/logistic.py)",
    "logistic_l2": "Logistic least squares + L2 (examples/logistic_l2.py)",
    "mlp": "Scalar-weight MLP, 3 inputs, n hidden, 2 outputs (examples/mlp.py, mlp_model(3, n, 2))",
    "chain": "Deep chain x_(k+1) = sin(w_k x_k + x_k), one SymPy expression",
    "softmax": "Softmax cross-entropy, K classes, 2 features (logsumexp form)",
    "rosenbrock": "Rosenbrock, n variables, no data (per-call latency)",
}
SIZE_NAMES = {"mlp": "n", "chain": "depth", "softmax": "K", "rosenbrock": "n"}
METHOD_ORDER = ("backpropc", "numpy", "naive", "naive_cse", "symengine", "jax", "torch", "autograd")
METHOD_TITLES = {
    "backpropc": "backpropc", "numpy": "hand-written NumPy", "naive": "naive sympy.diff",
    "naive_cse": "naive + sympy.cse", "symengine": "SymEngine (LLVM)", "jax": "JAX jit",
    "torch": "PyTorch eager", "autograd": "HIPS autograd",
}


# ---------------------------------------------------------------------------------------------
# Workloads: a backpropc model plus the same loss in structured form (parameter arrays P, data
# arrays D) for the baselines. The wrt order of each model is the row-major flattening of P, and
# its inputs are the rows of D, so one flat argument list serves the generated module.
# ---------------------------------------------------------------------------------------------

from workloads import chain_model, rosenbrock_model, softmax_model  # noqa: E402

# The losses, written once against a small namespace `xp` (NumPy-like) for JAX, PyTorch and
# autograd: the vectorised form a user of those libraries would write.

def loss_logistic(xp, P, D):
    (w, b), (x, t) = P, D
    y = xp.sigmoid(w * x + b)
    return xp.sum((y - t) ** 2) / 2


def loss_logistic_l2(xp, P, D):
    (w, b), (x, t, lam) = P, D
    y = xp.sigmoid(w * x + b)
    return xp.sum((y - t) ** 2) / 2 + xp.sum(lam) * w ** 2 / 2


def loss_mlp(xp, P, D):
    (W1, b1, W2, b2), (X, T) = P, D
    H = xp.sigmoid(W1 @ X + b1[:, None])
    Y = W2 @ H + b2[:, None]
    return xp.sum((Y - T) ** 2) / 2


def loss_chain(xp, P, D):
    return xp.sum(xp.chain(P[0], D[0]))


def loss_softmax(xp, P, D):
    (W, b), (X, T) = P, D
    Z = W @ X + b[:, None]
    return -xp.sum(T * (Z - xp.logsumexp0(Z)))


def loss_rosenbrock(xp, P, D):
    x = P[0]
    return xp.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)


# Hand-written NumPy value and gradient: vectorised, one pass forward, one back, BLAS for the
# reductions (np.dot), the sigmoid as 0.5 + 0.5 tanh(z/2) (stable, one transcendental).
# Each returns (objective, tuple of gradients shaped like P); forward returns the objective.

def _sigmoid(z):
    return 0.5 + 0.5 * np.tanh(0.5 * z)


def np_logistic(P, D):
    (w, b), (x, t) = P, D
    y = _sigmoid(w * x + b)
    r = y - t
    z_bar = r * y * (1 - y)
    return 0.5 * np.dot(r, r), (np.dot(x, z_bar), z_bar.sum())


def np_logistic_forward(P, D):
    (w, b), (x, t) = P, D
    r = _sigmoid(w * x + b) - t
    return 0.5 * np.dot(r, r)


def np_logistic_l2(P, D):
    (w, b), (x, t, lam) = P, D
    y = _sigmoid(w * x + b)
    r = y - t
    z_bar = r * y * (1 - y)
    s = lam.sum()
    return 0.5 * np.dot(r, r) + 0.5 * s * w * w, (np.dot(x, z_bar) + s * w, z_bar.sum())


def np_logistic_l2_forward(P, D):
    (w, b), (x, t, lam) = P, D
    r = _sigmoid(w * x + b) - t
    return 0.5 * np.dot(r, r) + 0.5 * lam.sum() * w * w


def np_softmax(P, D):
    (W, b), (X, T) = P, D
    Z = W @ X + b[:, None]
    m = Z.max(axis=0)
    E = np.exp(Z - m)
    S = E.sum(axis=0)
    tsum = T.sum(axis=0)
    value = np.dot(m + np.log(S), tsum) - np.vdot(T, Z)    # -sum_k t_k (z_k - lse)
    Z_bar = E * (tsum / S) - T                              # softmax * sum_k t_k - t
    return value, (Z_bar @ X.T, Z_bar.sum(axis=1))


def np_softmax_forward(P, D):
    (W, b), (X, T) = P, D
    Z = W @ X + b[:, None]
    m = Z.max(axis=0)
    lse = m + np.log(np.exp(Z - m).sum(axis=0))
    return np.dot(lse, T.sum(axis=0)) - np.vdot(T, Z)


def np_mlp(P, D):
    (W1, b1, W2, b2), (X, T) = P, D
    H = _sigmoid(W1 @ X + b1[:, None])
    R = W2 @ H + b2[:, None] - T
    Z_bar = (W2.T @ R) * H * (1 - H)
    return 0.5 * np.vdot(R, R), (Z_bar @ X.T, Z_bar.sum(axis=1), R @ H.T, R.sum(axis=1))


def np_mlp_forward(P, D):
    (W1, b1, W2, b2), (X, T) = P, D
    R = W2 @ _sigmoid(W1 @ X + b1[:, None]) + b2[:, None] - T
    return 0.5 * np.vdot(R, R)


def np_rosenbrock(P, D):
    x = P[0]
    a = x[1:] - x[:-1] ** 2
    c = 1 - x[:-1]
    g = np.zeros_like(x)
    g[:-1] = -400 * a * x[:-1] - 2 * c
    g[1:] += 200 * a
    return 100 * np.dot(a, a) + np.dot(c, c), (g,)


def np_rosenbrock_forward(P, D):
    x = P[0]
    a = x[1:] - x[:-1] ** 2
    c = 1 - x[:-1]
    return 100 * np.dot(a, a) + np.dot(c, c)


@dataclass
class Workload:
    family: str
    size: int | None
    model: callable            # () -> bp.Model
    data: callable             # (rng, batch) -> (P, D)
    loss: callable             # loss(xp, P, D)
    hand: tuple | None = None  # (value_and_grad(P, D), forward(P, D))
    batched: bool = True

    @property
    def label(self) -> str:
        return self.family if self.size is None else f"{self.family} {SIZE_NAMES[self.family]}={self.size}"


def _logistic_data(rng, batch):
    P = (np.float64(rng.uniform(-1, 1)), np.float64(rng.uniform(-1, 1)))
    return P, (rng.normal(size=batch), rng.integers(0, 2, batch).astype(float))


def _logistic_l2_data(rng, batch):
    P, D = _logistic_data(rng, batch)
    return P, D + (np.full(batch, 0.01),)


def _mlp_data(n):
    def data(rng, batch):
        P = (rng.normal(size=(n, 3)) / math.sqrt(3), rng.normal(size=n) * 0.1,
             rng.normal(size=(2, n)) / math.sqrt(n), rng.normal(size=2) * 0.1)
        return P, (rng.normal(size=(3, batch)), rng.normal(size=(2, batch)))
    return data


def _chain_data(depth):
    def data(rng, batch):
        return (rng.uniform(-0.5, 0.5, depth),), (rng.uniform(-1, 1, batch),)
    return data


def _softmax_data(classes):
    def data(rng, batch):
        P = (rng.normal(size=(classes, 2)), rng.normal(size=classes) * 0.1)
        T = np.zeros((classes, batch))
        T[rng.integers(0, classes, batch), np.arange(batch)] = 1.0
        return P, (rng.normal(size=(2, batch)), T)
    return data


def _rosenbrock_data(n):
    def data(rng, batch):
        return (rng.uniform(-1.5, 1.5, n),), ()
    return data


def workloads(quick: bool) -> list[Workload]:
    mlp_widths = (4,) if quick else (4, 16, 64, 256)
    depths = (10,) if quick else (10, 100, 1000)
    classes = (3,) if quick else (3, 10)
    dims = (10,) if quick else (10, 100, 1000)
    result = [Workload("logistic", None, lambda: logistic_example.model, _logistic_data, loss_logistic,
                       (np_logistic, np_logistic_forward)),
              Workload("logistic_l2", None, lambda: logistic_l2_example.model, _logistic_l2_data,
                       loss_logistic_l2, (np_logistic_l2, np_logistic_l2_forward))]
    result += [Workload("mlp", n, functools.partial(mlp_model, 3, n, 2, name=f"mlp{n}"), _mlp_data(n),
                        loss_mlp, (np_mlp, np_mlp_forward)) for n in mlp_widths]
    result += [Workload("chain", d, functools.partial(chain_model, d), _chain_data(d), loss_chain)
               for d in depths]
    result += [Workload("softmax", k, functools.partial(softmax_model, k), _softmax_data(k), loss_softmax,
                        (np_softmax, np_softmax_forward)) for k in classes]
    result += [Workload("rosenbrock", n, functools.partial(rosenbrock_model, n), _rosenbrock_data(n),
                        loss_rosenbrock, (np_rosenbrock, np_rosenbrock_forward), batched=False)
               for n in dims]
    return result


def flat_args(P, D) -> list:
    """The generated module's arguments (ARGS order) from the structured P and D."""
    params = [float(v) for p in P for v in np.ravel(p)]
    data = [row for d in D for row in (d if np.ndim(d) == 2 else [d])]
    return params + data


def flat_grads(grads) -> np.ndarray:
    return np.concatenate([np.ravel(np.asarray(g, dtype=float)) for g in grads])


# ---------------------------------------------------------------------------------------------
# Methods. Each `prepare(P, D)` returns (value_and_grad, forward, extract) where the two
# callables take no arguments (conversions are done here, untimed) and extract(result) gives
# (objective, flat gradient in WRT order) for the agreement check.
# ---------------------------------------------------------------------------------------------

class Skip(Exception):
    """A method that does not apply, or was cut off: the message is the table's status."""


class Method:
    name = ""
    build_s: float | None = None       # compile or build time
    ops: tuple[int | None, int | None] = (None, None)   # (forward, value and gradient)
    traced = True                      # allocations are visible to tracemalloc

    def prepare(self, P, D):
        raise NotImplementedError


class Backpropc(Method):
    name = "backpropc"

    def __init__(self, compiled, compile_s):
        self.compiled, self.build_s = compiled, compile_s
        self.module = compiled.load()
        self.ops = (compiled.ops["forward"], compiled.ops["value_and_grad"])

    def prepare(self, P, D):
        args, m = flat_args(P, D), self.module
        return (lambda: m.value_and_grad(*args)), (lambda: m.forward(*args)), \
            (lambda r: (float(r[0]), flat_grads(r[1])))


class HandNumpy(Method):
    name = "numpy"

    def __init__(self, vg, fwd):
        self.vg, self.fwd = vg, fwd

    def prepare(self, P, D):
        vg, fwd = self.vg, self.fwd
        return (lambda: vg(P, D)), (lambda: fwd(P, D)), (lambda r: (float(r[0]), flat_grads(r[1])))


class Naive(Method):
    """sympy.lambdify of [loss, d loss/d w...] from sympy.diff of the substituted loss."""

    def __init__(self, compiled, cse: bool):
        self.name = "naive_cse" if cse else "naive"
        start = time.perf_counter()
        self.f, ops_vg = naive_gradient(compiled, cse=cse)
        self.build_s = time.perf_counter() - start
        loss = to_sympy(compiled.program)
        self.forward_f = numpy_function(compiled.program.args, [loss], cse=cse)
        if cse:
            replacements, reduced = sp.cse([loss], order="none")
            ops_f = sum(tree_ops(rhs) for _, rhs in replacements) + tree_ops(reduced[0]) + 1
        else:
            ops_f = tree_ops(loss) + 1
        self.ops = (ops_f, ops_vg)

    def prepare(self, P, D):
        values = flat_args(P, D)
        shape = np.broadcast_shapes(*(np.shape(v) for v in values))
        f, ff = self.f, self.forward_f

        def vg():
            loss, *grads = f(*values)
            return (np.sum(np.broadcast_to(loss, shape)),
                    [np.sum(np.broadcast_to(g, shape)) for g in grads])

        def fwd():
            return np.sum(np.broadcast_to(ff(*values)[0], shape))

        return vg, fwd, (lambda r: (float(r[0]), flat_grads(r[1])))


class SymEngine(Method):
    """SymEngine: the loss rebuilt from backpropc's graph (shared subtrees stay shared), diff per
    parameter, Lambdify(cse=True, backend="llvm"). Lambdify takes one row of arguments per
    example and returns one row of outputs, so the batch runs in chunks whose rows are summed."""

    name = "symengine"
    CHUNK_ELEMENTS = 2**20    # rows per chunk * arguments: an 8 MB argument buffer

    def __init__(self, compiled, se):
        start = time.perf_counter()
        program = compiled.program
        loss = _to_symengine(program, se)
        args = [se.Symbol(s.name) for s in program.args]
        exprs = [loss] + [loss.diff(se.Symbol(w.name)) for w in program.wrt]
        self.f = se.Lambdify(args, exprs, cse=True, backend="llvm")
        self.build_s = time.perf_counter() - start
        self.forward_f = se.Lambdify(args, [loss], cse=True, backend="llvm")
        self.n_wrt, self.n_args, self.n_out = len(program.wrt), len(args), len(exprs)

    def prepare(self, P, D):
        values = flat_args(P, D)
        params, data = values[:self.n_wrt], values[self.n_wrt:]
        batch = len(data[0]) if data else 1
        chunk = max(1, min(batch, self.CHUNK_ELEMENTS // self.n_args))
        buffer = np.empty((chunk, self.n_args))
        buffer[:, :self.n_wrt] = params
        start_col = self.n_wrt

        def run(f, n_out):
            total = np.zeros(n_out)
            for s in range(0, batch, chunk):
                n = min(chunk, batch - s)
                for j, d in enumerate(data):
                    buffer[:n, start_col + j] = d[s:s + n]
                total += np.asarray(f(buffer[:n])).reshape(n, n_out).sum(axis=0)
            return total

        vg = functools.partial(run, self.f, self.n_out)
        fwd = functools.partial(run, self.forward_f, 1)
        return vg, fwd, (lambda r: (float(r[0]), np.asarray(r[1:])))


def _to_symengine(program, se):
    """The forward graph as one SymEngine expression, node by node (linear in the graph)."""
    unary = {sp.sin: se.sin, sp.cos: se.cos, sp.exp: se.exp, sp.log: se.log, sp.tanh: se.tanh}
    graph, built = program.graph, []
    for i in range(program.n_forward):
        node = graph[i]
        a = [built[j] for j in node.args]
        if node.op is SYMBOL:
            v = se.Symbol(node.value.name)
        elif node.op is CONST:
            v = se.sympify(node.value)
        elif node.op is sp.Add:
            v = functools.reduce(operator.add, a)
        elif node.op is sp.Mul:
            v = functools.reduce(operator.mul, a)
        elif node.op is sp.Pow:
            v = a[0] ** a[1]
        elif node.op is bp.sigmoid:
            v = 1 / (1 + se.exp(-a[0]))
        elif node.op is bp.logsumexp:
            v = se.log(functools.reduce(operator.add, [se.exp(e) for e in a]))
        elif node.op in unary:
            v = unary[node.op](*a)
        else:
            raise Skip(f"no SymEngine form for {getattr(node.op, '__name__', node.op)}")
        built.append(v)
    return built[program.loss]


class Jax(Method):
    name = "jax"
    traced = False

    def __init__(self, workload, jax):
        import jax.numpy as jnp
        from jax import lax
        from jax.scipy.special import logsumexp

        def chain(w, x):      # lax.scan: one traced step, not `depth` unrolled copies
            return lax.scan(lambda x, wk: (jnp.sin(wk * x + x), None), x, w)[0]

        self.jax, self.jnp = jax, jnp
        xp = SimpleNamespace(sum=jnp.sum, sigmoid=jax.nn.sigmoid, chain=chain,
                             logsumexp0=lambda z: logsumexp(z, axis=0))
        loss = functools.partial(workload.loss, xp)
        self.vg_f = jax.jit(jax.value_and_grad(loss))
        self.fwd_f = jax.jit(loss)

    def prepare(self, P, D):
        jnp, jax = self.jnp, self.jax
        Pj = tuple(jnp.asarray(p) for p in P)
        Dj = tuple(jnp.asarray(d) for d in D)
        vg_f, fwd_f = self.vg_f, self.fwd_f
        if self.build_s is None:   # the first call traces and compiles (at the first batch size)
            start = time.perf_counter()
            jax.block_until_ready(vg_f(Pj, Dj))
            self.build_s = time.perf_counter() - start
        return (lambda: jax.block_until_ready(vg_f(Pj, Dj))), \
            (lambda: jax.block_until_ready(fwd_f(Pj, Dj))), \
            (lambda r: (float(r[0]), flat_grads([np.asarray(g) for g in r[1]])))


class Torch(Method):
    name = "torch"
    traced = False

    def __init__(self, workload, torch):
        self.torch = torch

        def chain(w, x):
            for k in range(w.shape[0]):
                x = torch.sin(w[k] * x + x)
            return x

        xp = SimpleNamespace(sum=torch.sum, sigmoid=torch.sigmoid, chain=chain,
                             logsumexp0=lambda z: torch.logsumexp(z, dim=0))
        self.loss = functools.partial(workload.loss, xp)

    def prepare(self, P, D):
        torch, loss = self.torch, self.loss
        Pt = tuple(torch.tensor(np.asarray(p), dtype=torch.float64, requires_grad=True) for p in P)
        Dt = tuple(torch.from_numpy(np.ascontiguousarray(d)) for d in D)

        def vg():
            value = loss(Pt, Dt)
            return value.detach(), torch.autograd.grad(value, Pt)

        def fwd():
            with torch.no_grad():
                return loss(Pt, Dt)

        return vg, fwd, (lambda r: (float(r[0]), flat_grads([g.numpy() for g in r[1]])))


class Autograd(Method):
    name = "autograd"

    def __init__(self, workload, autograd):
        import autograd.numpy as anp

        def chain(w, x):
            for k in range(w.shape[0]):
                x = anp.sin(w[k] * x + x)
            return x

        def logsumexp0(z):
            m = anp.max(z, axis=0)
            return m + anp.log(anp.sum(anp.exp(z - m), axis=0))

        xp = SimpleNamespace(sum=anp.sum, sigmoid=lambda z: 0.5 + 0.5 * anp.tanh(0.5 * z), chain=chain,
                             logsumexp0=logsumexp0)
        self.loss = functools.partial(workload.loss, xp)
        self.vg_f = autograd.value_and_grad(self.loss)

    def prepare(self, P, D):
        P = tuple(np.asarray(p, dtype=float) for p in P)
        vg_f, loss = self.vg_f, self.loss
        return (lambda: vg_f(P, D)), (lambda: loss(P, D)), (lambda r: (float(r[0]), flat_grads(r[1])))


def optional_modules() -> dict:
    """The optional baselines that import, and why the others do not."""
    found, missing = {}, {}
    for name in ("jax", "torch", "autograd", "symengine"):
        try:
            if name == "jax":
                import jax
                jax.config.update("jax_enable_x64", True)   # float64, like everything else here
                jax.config.update("jax_platforms", "cpu")
                found[name] = jax
            else:
                found[name] = __import__(name)
        except Exception as exc:  # ImportError, or a broken install
            missing[name] = f"{type(exc).__name__}: {str(exc)[:80]}"
    return found, missing


# ---------------------------------------------------------------------------------------------
# Measuring
# ---------------------------------------------------------------------------------------------

def median_time(f) -> tuple[float, int]:
    """Median wall time of f() after one warm-up call: at least MIN_REPEATS calls, more (up to
    MAX_REPEATS) until MIN_TOTAL_S seconds have been spent."""
    f()
    times = []
    while len(times) < MIN_REPEATS or (sum(times) < MIN_TOTAL_S and len(times) < MAX_REPEATS):
        start = time.perf_counter()
        f()
        times.append(time.perf_counter() - start)
    return statistics.median(times), len(times)


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


def _meminfo_kb(field_name: str) -> int | None:
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


def measure_method(method: Method, P, D, batch: int, ref, estimate: dict | None,
                   options: Options, slow_forward: str | None = None) -> tuple[dict, tuple | None]:
    """One method at one batch size: (row, (objective, flat gradient) or None when skipped).

    A forward pass whose first call takes longer than the limit, or than 1 s and 5 value_and_grad
    calls, is reported from that one call ("fwd_repeats": 1); with `slow_forward` (why) it is not
    run at all."""
    # backpropc, the subject, is always timed; only the memory limit applies to it
    max_call_s = math.inf if isinstance(method, Backpropc) else options.max_call_s
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


def run_workload(w: Workload, modules: dict, options: Options, log) -> dict:
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

    methods: list[Method] = [Backpropc(compiled, compile_s)]
    record["methods"]["backpropc"] = {"build_s": compile_s, "ops": list(methods[0].ops), "batches": {}}
    failures: dict[str, str] = {}
    if w.hand:
        methods.append(HandNumpy(*w.hand))
    for cse in (False, True):
        name = "naive_cse" if cse else "naive"
        limit = NAIVE_MAX.get(w.family)
        if (limit is not None and w.size > limit) or (w.family, name) in _over_budget:
            failures[name] = f"not built (size > {limit}, see Limits)"
            continue
        try:
            methods.append(Naive(compiled, cse))
            log(f"  {name}: built in {methods[-1].build_s:.3g} s, ops {methods[-1].ops}")
            if methods[-1].build_s > NAIVE_BUDGET_S:
                _over_budget.add((w.family, name))
        except Exception as exc:
            failures[name] = f"failed: {type(exc).__name__}: {str(exc)[:80]}"
    for name, cls in (("symengine", SymEngine), ("jax", Jax), ("torch", Torch), ("autograd", Autograd)):
        if name not in modules:
            failures[name] = "not installed"
            continue
        if name == "symengine":
            limit = SYMENGINE_MAX.get(w.family)
            if limit is not None and w.size > limit:
                failures[name] = f"not built (size > {limit}, see Limits)"
                continue
        try:
            methods.append(cls(compiled, modules[name]) if name == "symengine" else cls(w, modules[name]))
            if methods[-1].build_s is not None:
                log(f"  {name}: built in {methods[-1].build_s:.3g} s")
        except Exception as exc:
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
                    f"skipped: 1 call at {SIZE_NAMES[w.family]}={slow} took > 5 x its value_and_grad"
                result, got = measure_method(m, P, D, batch, ref, estimate, options, why)
                if result.get("fwd_repeats") == 1:
                    _slow_forward[(w.family, m.name, batch)] = w.size
            except Skip as exc:
                result, got = {"status": str(exc)}, None
            except Exception as exc:
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
            except Exception as exc:
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
    build = {"chain": chain_model, "mlp": lambda n: mlp_model(3, n, 2, name=f"mlp{n}")}
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

    helpers = {}
    exec(SIGMOID_SOURCE + LOGSUMEXP_SOURCE, {"np": np}, helpers)
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

    compiled = bp.compile(logistic_example.model)
    sum_like = compiled.load()._sum_like
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
    module = compiled.load()
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


def wrapper_overhead(records_modules: dict, log) -> list[dict]:
    """The generated functions' argument checks: the checked call against the bare function."""
    rows = []
    for label, model, P, D in records_modules:
        m = bp.compile(model).load()
        args = flat_args(P, D)
        bare = m.value_and_grad.__wrapped__
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
    except Exception:
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
per parameter and `lambdify` (`backpropc.compare.naive_gradient`); for SymEngine, conversion,
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
                  "Matrix-level gradients (docs/matrices.md) against the same network written by hand and "
                  "in PyTorch and JAX; `plain @ on stacks` is the generated module with its batched products "
                  "left to NumPy's `@`, one small product per example (benchmarks/matrix_mlp.py).", "",
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
            docs.write_text(render_docs(data))
            print(f"\ndocs: {docs}")
        return

    def log(message):
        print(f"[{time.perf_counter() - t0:7.1f}s] {message}", flush=True)

    t0 = time.perf_counter()
    started = time.strftime("%Y-%m-%d %H:%M %Z")
    load_start = loadavg()
    modules, missing = optional_modules()
    if args.max_gb is None:
        available = _meminfo_kb("MemAvailable")
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
            rng = np.random.default_rng(2)
            wrapper_cases = [("logistic, batch 10,000", logistic_example.model, *_logistic_data(rng, 10**4)),
                             ("Rosenbrock n=10", rosenbrock_model(10), *_rosenbrock_data(10)(rng, 1))]
            if not args.quick:
                wrapper_cases.append(("Rosenbrock n=1000", rosenbrock_model(1000),
                                      *_rosenbrock_data(1000)(rng, 1)))
            wrapper = wrapper_overhead(wrapper_cases, log)
            import matrix_mlp  # the vectorised 784-128-10 MLP: its own script, in this process too
            matrix = matrix_mlp.measure(repeats=5 if args.quick else 30)
            log("matrix MLP: " + ", ".join(f"{r['method']} {r['seconds']:.3g} s" for r in matrix["rows"]))
        except Exception as exc:
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
        docs.write_text(render_docs(data))
        print(f"docs: {docs}")
    print(f"total: {meta['duration_s'] / 60:.1f} minutes")


if __name__ == "__main__":
    main()
