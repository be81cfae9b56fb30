"""The baselines of benchmarks/run.py: each workload's loss written as a user of NumPy, JAX,
PyTorch and HIPS autograd would write it, the hand-written NumPy value and gradient, and the
methods that time them (backpropc's generated module, the naive `sympy.diff` + `lambdify`
expansion, SymEngine's `Lambdify`, JAX, PyTorch, autograd).

Only backpropc's public API is used: `bp.compile`, `compiled.load()`, `compiled.ops`,
`compiled.args`, `compiled.model`. The symbolic baselines start from the user's `Model` (its
steps inlined into one SymPy expression), not from the compiler's internal graph.
"""

from __future__ import annotations

import functools
import time
from types import SimpleNamespace

import numpy as np
import sympy as sp
from sympy.functions.elementary.piecewise import ExprCondPair

import backpropc as bp

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
    """sympy.lambdify of [loss, d loss/d w...] from sympy.diff of the inlined loss."""

    def __init__(self, compiled, model, cse: bool):
        self.name = "naive_cse" if cse else "naive"
        start = time.perf_counter()
        loss, symbols = inlined_loss(model)
        args = [symbols.get(name) or sp.Symbol(name) for name in compiled.args]
        exprs = [loss] + [sp.diff(loss, arg) for arg in args[:len(compiled.wrt)]]
        self.f = naive_function(args, exprs, cse)
        self.build_s = time.perf_counter() - start
        self.forward_f = naive_function(args, [loss], cse)
        self.ops = (naive_ops([loss], cse), naive_ops(exprs, cse))

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
    """SymEngine: the inlined loss converted once per distinct subexpression (shared subtrees stay
    shared), diff per parameter, Lambdify(cse=True, backend="llvm"). Lambdify takes one row of
    arguments per example and returns one row of outputs, so the batch runs in chunks whose rows
    are summed."""

    name = "symengine"
    CHUNK_ELEMENTS = 2**20    # rows per chunk * arguments: an 8 MB argument buffer

    def __init__(self, compiled, model, se):
        start = time.perf_counter()
        loss = to_symengine(inlined_loss(model)[0], se)
        args = [se.Symbol(name) for name in compiled.args]
        exprs = [loss] + [loss.diff(se.Symbol(w)) for w in compiled.wrt]
        self.f = se.Lambdify(args, exprs, cse=True, backend="llvm")
        self.build_s = time.perf_counter() - start
        self.forward_f = se.Lambdify(args, [loss], cse=True, backend="llvm")
        self.n_wrt, self.n_args, self.n_out = len(compiled.wrt), len(args), len(exprs)

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


# ---------------------------------------------------------------------------------------------
# The symbolic baselines' view of a model: its steps inlined into one SymPy expression. Each walk
# visits every distinct subexpression once (an explicit stack: deep chains exceed Python's
# recursion limit), never the printed tree, which can be exponentially larger.
# ---------------------------------------------------------------------------------------------

def _post_order(expr, leaf, node):
    """memo[id(e)] for every subexpression e of expr: leaf(e) for atoms, else node(e, args)."""
    memo: dict[int, object] = {}
    stack = [expr]
    while stack:
        e = stack[-1]
        if id(e) in memo:
            stack.pop()
        elif not e.args:
            memo[id(e)] = leaf(e)
            stack.pop()
        else:
            pending = [a for a in e.args if id(a) not in memo]
            if pending:
                stack.extend(pending)
            else:
                memo[id(e)] = node(e, [memo[id(a)] for a in e.args])
                stack.pop()
    return memo[id(expr)]


def inlined_loss(model: bp.Model) -> tuple[sp.Expr, dict[str, sp.Symbol]]:
    """The model's loss as one SymPy expression, each step substituted where it is used, and the
    free symbols by name. Subtrees shared between steps stay shared (no whole-tree `subs`)."""
    defined: dict[sp.Symbol, sp.Basic] = {}
    symbols: dict[str, sp.Symbol] = {}

    def leaf(e):
        if e.is_Symbol and e not in defined:
            symbols[e.name] = e
        return defined.get(e, e) if e.is_Symbol else e

    def node(e, args):
        return e if all(new is old for new, old in zip(args, e.args)) else e.func(*args)

    for step in model.steps:
        name, rhs = (step.lhs, step.rhs) if isinstance(step, sp.Eq) else step
        defined[name] = _post_order(sp.sympify(rhs), leaf, node)
    return _post_order(sp.sympify(model.loss), leaf, node), symbols


NARY = (sp.Add, sp.Mul, sp.Max, sp.Min, sp.And, sp.Or, bp.logsumexp)


def printed_ops(expr: sp.Basic) -> int:
    """Operations of `expr` evaluated as a printed tree (no sharing), counted as `compiled.ops`
    counts: one per operator or call, n - 1 for an n-ary sum or product, a negation one, a
    Piecewise one select per branch but a final `True` one."""
    def cost(e):
        if isinstance(e, sp.Piecewise):
            return len(e.args) - (1 if e.args[-1].cond is sp.true else 0)
        if isinstance(e, ExprCondPair):
            return 0
        if isinstance(e, sp.Mul) and len(e.args) == 2 and e.args[0] == -1:
            return 1
        return len(e.args) - 1 if e.func in NARY else 1

    return _post_order(expr, lambda e: 0, lambda e, args: cost(e) + sum(args))


def naive_ops(exprs: list, cse: bool) -> int:
    """printed_ops of the outputs (after sympy.cse when `cse`), plus one sum per output."""
    outputs = len(exprs)
    if cse:
        replacements, reduced = sp.cse(exprs, order="none")
        exprs = [rhs for _, rhs in replacements] + list(reduced)
    return sum(printed_ops(e) for e in exprs) + outputs


def _np_logsumexp(*z):
    m = functools.reduce(np.maximum, z)
    return m + np.log(sum(np.exp(v - m) for v in z))


# NumPy forms of backpropc's functions for `lambdify` (the naive baseline), stable as written by hand
NAIVE_NAMESPACE = {"sigmoid": _sigmoid, "softplus": lambda x: np.logaddexp(0, x),
                   "relu": lambda x: np.maximum(x, 0), "logsumexp": _np_logsumexp}


def naive_function(args, exprs, cse: bool):
    return sp.lambdify(args, exprs, modules=[NAIVE_NAMESPACE, "numpy"], cse=cse)


def to_symengine(expr: sp.Expr, se):
    """The SymPy expression as a SymEngine one, converted once per distinct subexpression."""
    unary = {sp.sin: se.sin, sp.cos: se.cos, sp.exp: se.exp, sp.log: se.log, sp.tanh: se.tanh}

    def leaf(e):
        if e.is_Symbol:
            return se.Symbol(e.name)
        if e.is_Number or e.is_NumberSymbol:
            return se.sympify(e)
        raise Skip(f"no SymEngine form for {e}")

    def node(e, a):
        if e.func is sp.Add:   # n-ary: a chain of binary + would copy the sum n times
            return se.Add(*a)
        if e.func is sp.Mul:
            return se.Mul(*a)
        if e.func is sp.Pow:
            return a[0] ** a[1]
        if e.func is bp.sigmoid:
            return 1 / (1 + se.exp(-a[0]))
        if e.func is bp.logsumexp:
            return se.log(se.Add(*[se.exp(v) for v in a]))
        if e.func in unary:
            return unary[e.func](*a)
        raise Skip(f"no SymEngine form for {e.func.__name__}")

    return _post_order(expr, leaf, node)


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
        except Exception as exc:  # noqa: BLE001 - ImportError, or a broken install
            missing[name] = f"{type(exc).__name__}: {str(exc)[:80]}"
    return found, missing

