"""Random models with shared subexpressions: gradients agree with sympy.diff, and compiling is
deterministic (twice in one process, and under two PYTHONHASHSEEDs)."""

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import sympy as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from oracle import assert_close, substituted_loss, sympy_gradient

import backpropc as bp

PARAMS = sp.symbols("p0:3")
DATA = sp.symbols("d0:2")

# Functions defined on the whole real line, so every random point is in the domain.
UNARY = [sp.sin, sp.cos, sp.tanh, sp.atan, bp.sigmoid, bp.softplus, sp.asinh, bp.relu,
         lambda a: -a, lambda a: a ** 2, lambda a: a ** 3, lambda a: sp.sqrt(1 + a ** 2),
         lambda a: sp.log(1 + a ** 2), lambda a: sp.exp(-a ** 2), lambda a: 1 / (2 + sp.cos(a)),
         lambda a: sp.Piecewise((a ** 2, a > 0), (sp.sin(a), True))]
BINARY = [lambda a, c: a + c, lambda a, c: a - c, lambda a, c: a * c, lambda a, c: 3 * a * c - 1,
          lambda a, c: a / (1 + c ** 2), bp.logsumexp, lambda a, c: sp.atan2(a, 2 + sp.cos(c)),
          lambda a, c: (a - c) ** 2 / 2]


@st.composite
def models(draw):
    pool = list(PARAMS + DATA)
    steps = []
    for i in range(draw(st.integers(1, 7))):
        if draw(st.booleans()):
            expr = draw(st.sampled_from(UNARY))(draw(st.sampled_from(pool)))
        else:
            expr = draw(st.sampled_from(BINARY))(draw(st.sampled_from(pool)), draw(st.sampled_from(pool)))
        if draw(st.booleans()):  # a named step ...
            name = sp.Symbol(f"s{i}")
            steps.append((name, expr))
            pool.append(name)
        else:  # ... or an anonymous subexpression that later ones may share
            pool.append(expr)
    loss = pool[-1] + draw(st.sampled_from(PARAMS)) * draw(st.sampled_from(pool))
    model = bp.Model("random", steps, loss, list(PARAMS), list(DATA))
    used = substituted_loss(model).free_symbols
    if not used & set(PARAMS):  # the terms cancelled: keep one parameter in play
        model.loss = loss + PARAMS[0] ** 2
        used.add(PARAMS[0])
    model.wrt = [p for p in PARAMS if p in used]
    model.inputs = list(DATA)
    return model


@settings(max_examples=80, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(model=models(), seed=st.integers(0, 2 ** 16))
def test_random_models_match_sympy_diff_and_compile_deterministically(model, seed):
    compiled = bp.compile(model)
    assert bp.compile(model).source == compiled.source
    module = compiled.load()
    rng = np.random.default_rng(seed)
    point = {str(p): float(rng.uniform(-1.5, 1.5)) for p in model.wrt}
    point.update({str(d): rng.uniform(-1.5, 1.5, 2) for d in DATA})
    _, grads = module.value_and_grad(**point)
    exact = sympy_gradient(model, model.wrt + model.inputs, point)
    assert_close(grads, exact, 1e-8, what=compiled.source)
    assert compiled.ops["value_and_grad"] <= 4 * max(compiled.ops["forward"], 1) + 2 * len(model.wrt) + 4


SCRIPT = textwrap.dedent("""
    import hashlib, runpy, sys
    import sympy as sp
    import backpropc as bp
    sources = [bp.compile(runpy.run_path(f)["model"]).source for f in sys.argv[1:]]
    # second order too: the tangent names, and a Hessian's pattern and colouring
    sources += [bp.compile(runpy.run_path(f)["model"], derivatives=("hvp",)).source for f in sys.argv[1:]]
    a, b, c = sp.symbols("a b c")
    sources.append(bp.compile(sp.Max(a, b, c) * sp.exp(a * b) + bp.logsumexp(a, c, b * c),
                              wrt=[c, a], name="mixed", derivatives=("hessian",)).source)
    print(hashlib.sha256("".join(sources).encode()).hexdigest())
""")


def test_source_is_identical_under_different_hash_seeds():
    examples = sorted(str(p) for p in (Path(__file__).parent.parent / "examples").glob("*.py")
                      if not p.stem.endswith("_grad"))
    digests = set()
    for hash_seed in ("0", "12345"):
        run = subprocess.run([sys.executable, "-c", SCRIPT, *examples], capture_output=True, text=True,
                             env={"PYTHONHASHSEED": hash_seed, "PATH": ""}, check=True)
        digests.add(run.stdout.strip())
    assert len(digests) == 1
