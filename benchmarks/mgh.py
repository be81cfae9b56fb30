"""The 35 unconstrained test problems of Moré, Garbow and Hillstrom (1981), "Testing unconstrained
optimization software", ACM TOMS 7(1), 17-41: each a sum of squared residuals f = sum_i r_i(x)^2.

Each problem's residuals are written once, against a small namespace `xp` (exp, sin, where, ...)
over a sequence x of scalars, so that one definition gives
- SymPy expressions of the scalar symbols x0..x{n-1} (`Problem.residual_expressions`,
  `Problem.objective`, `Problem.model` for backpropc), and
- a function of a 1-D array for NumPy or JAX (`Problem.function(xp)`; `array_namespace(jnp)`
  makes it traceable by `jax.jit`).

The variable-dimension problems (20-35) take n (and m); `problems()` uses the sizes below, which
keep every problem between 2 and 11 parameters. `f_min` is the minimum the paper reports for that
size, `x_min` a minimiser where the paper gives one in closed form.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import sympy as sp

import backpropc as bp

SYMPY = SimpleNamespace(exp=sp.exp, sin=sp.sin, cos=sp.cos, sqrt=sp.sqrt, atan=sp.atan, abs=sp.Abs,
                        where=lambda cond, a, b: sp.Piecewise((a, cond), (b, True)),
                        add=lambda terms: sp.Add(*terms), pi=sp.pi)


def array_namespace(module=np) -> SimpleNamespace:
    """The namespace for a NumPy-like module (numpy, jax.numpy)."""
    return SimpleNamespace(exp=module.exp, sin=module.sin, cos=module.cos, sqrt=module.sqrt,
                           atan=module.arctan, abs=module.abs, where=module.where, add=sum, pi=math.pi)


@dataclass(frozen=True)
class Problem:
    number: int
    name: str
    n: int
    m: int
    x0: tuple[float, ...]
    residuals: Callable          # residuals(x, xp) -> list of m residuals
    f_min: float | None = None   # the published minimum for this (n, m)
    x_min: tuple[float, ...] | None = None

    @property
    def label(self) -> str:
        return f"{self.number:2d} {self.name} (n={self.n})"

    def symbols(self) -> list[sp.Symbol]:
        return list(sp.symbols(f"x0:{self.n}", real=True))

    def residual_expressions(self) -> tuple[list[sp.Symbol], list[sp.Expr]]:
        xs = self.symbols()
        return xs, [sp.sympify(r) for r in self.residuals(xs, SYMPY)]

    def objective(self) -> tuple[list[sp.Symbol], sp.Expr]:
        xs, rs = self.residual_expressions()
        return xs, sp.Add(*[r ** 2 for r in rs])

    def model(self) -> bp.Model:
        xs, f = self.objective()
        return bp.Model(name=f"mgh{self.number}", steps=[], loss=f, wrt=xs, inputs=[])

    def function(self, xp: SimpleNamespace | None = None) -> Callable:
        """f(theta) for a 1-D array theta."""
        xp = xp or array_namespace(np)

        def f(theta):
            return xp.add([r ** 2 for r in self.residuals(theta, xp)])
        return f

    def residual_function(self, xp: SimpleNamespace | None = None) -> Callable:
        xp = xp or array_namespace(np)
        return lambda theta: self.residuals(theta, xp)


# --- 1-19: fixed dimension ----------------------------------------------------------------------

def rosenbrock(x, xp):
    return [10 * (x[1] - x[0] ** 2), 1 - x[0]]


def freudenstein_roth(x, xp):
    return [-13 + x[0] + ((5 - x[1]) * x[1] - 2) * x[1], -29 + x[0] + ((x[1] + 1) * x[1] - 14) * x[1]]


def powell_badly_scaled(x, xp):
    return [10**4 * x[0] * x[1] - 1, xp.exp(-x[0]) + xp.exp(-x[1]) - 1.0001]


def brown_badly_scaled(x, xp):
    return [x[0] - 10**6, x[1] - 2e-6, x[0] * x[1] - 2]


def beale(x, xp):
    return [y - x[0] * (1 - x[1] ** i) for i, y in ((1, 1.5), (2, 2.25), (3, 2.625))]


def jennrich_sampson(x, xp):
    return [2 + 2 * i - (xp.exp(i * x[0]) + xp.exp(i * x[1])) for i in range(1, 11)]


def helical_valley(x, xp):
    angle = xp.atan(x[1] / x[0]) / (2 * xp.pi)
    theta = xp.where(x[0] > 0, angle, angle + 0.5)
    return [10 * (x[2] - 10 * theta), 10 * (xp.sqrt(x[0] ** 2 + x[1] ** 2) - 1), x[2]]


BARD_Y = (0.14, 0.18, 0.22, 0.25, 0.29, 0.32, 0.35, 0.39, 0.37, 0.58, 0.73, 0.96, 1.34, 2.10, 4.39)


def bard(x, xp):
    return [y - (x[0] + i / ((16 - i) * x[1] + min(i, 16 - i) * x[2])) for i, y in enumerate(BARD_Y, 1)]


GAUSSIAN_Y = (0.0009, 0.0044, 0.0175, 0.0540, 0.1295, 0.2420, 0.3521, 0.3989, 0.3521, 0.2420, 0.1295,
              0.0540, 0.0175, 0.0044, 0.0009)


def gaussian(x, xp):
    return [x[0] * xp.exp(-x[1] * ((8 - i) / 2 - x[2]) ** 2 / 2) - y for i, y in enumerate(GAUSSIAN_Y, 1)]


MEYER_Y = (34780, 28610, 23650, 19630, 16370, 13720, 11540, 9744, 8261, 7030, 6005, 5147, 4427, 3820,
           3307, 2872)


def meyer(x, xp):
    return [x[0] * xp.exp(x[1] / (45 + 5 * i + x[2])) - y for i, y in enumerate(MEYER_Y, 1)]


def gulf(x, xp, m=99):
    out = []
    for i in range(1, m + 1):
        t = i / 100
        y = 25 + (-50 * math.log(t)) ** (2 / 3)
        out.append(xp.exp(-xp.abs(y - x[1]) ** x[2] / x[0]) - t)
    return out


def box_3d(x, xp, m=10):
    out = []
    for i in range(1, m + 1):
        t = i / 10
        out.append(xp.exp(-t * x[0]) - xp.exp(-t * x[1]) - x[2] * (math.exp(-t) - math.exp(-10 * t)))
    return out


def powell_singular(x, xp):
    return [x[0] + 10 * x[1], math.sqrt(5) * (x[2] - x[3]), (x[1] - 2 * x[2]) ** 2,
            math.sqrt(10) * (x[0] - x[3]) ** 2]


def wood(x, xp):
    return [10 * (x[1] - x[0] ** 2), 1 - x[0], math.sqrt(90) * (x[3] - x[2] ** 2), 1 - x[2],
            math.sqrt(10) * (x[1] + x[3] - 2), (x[1] - x[3]) / math.sqrt(10)]


KOWALIK_Y = (0.1957, 0.1947, 0.1735, 0.1600, 0.0844, 0.0627, 0.0456, 0.0342, 0.0323, 0.0235, 0.0246)
KOWALIK_U = (4, 2, 1, 0.5, 0.25, 0.167, 0.125, 0.1, 0.0833, 0.0714, 0.0625)


def kowalik_osborne(x, xp):
    return [y - x[0] * (u * u + u * x[1]) / (u * u + u * x[2] + x[3]) for y, u in zip(KOWALIK_Y, KOWALIK_U)]


def brown_dennis(x, xp, m=20):
    out = []
    for i in range(1, m + 1):
        t = i / 5
        out.append((x[0] + t * x[1] - math.exp(t)) ** 2 + (x[2] + x[3] * math.sin(t) - math.cos(t)) ** 2)
    return out


OSBORNE1_Y = (0.844, 0.908, 0.932, 0.936, 0.925, 0.908, 0.881, 0.850, 0.818, 0.784, 0.751, 0.718, 0.685,
              0.658, 0.628, 0.603, 0.580, 0.558, 0.538, 0.522, 0.506, 0.490, 0.478, 0.467, 0.457, 0.448,
              0.438, 0.431, 0.424, 0.420, 0.414, 0.411, 0.406)


def osborne1(x, xp):
    return [y - (x[0] + x[1] * xp.exp(-t * x[3]) + x[2] * xp.exp(-t * x[4]))
            for t, y in zip(range(0, 330, 10), OSBORNE1_Y)]


def biggs_exp6(x, xp, m=13):
    out = []
    for i in range(1, m + 1):
        t = i / 10
        y = math.exp(-t) - 5 * math.exp(-10 * t) + 3 * math.exp(-4 * t)
        out.append(x[2] * xp.exp(-t * x[0]) - x[3] * xp.exp(-t * x[1]) + x[5] * xp.exp(-t * x[4]) - y)
    return out


OSBORNE2_Y = (1.366, 1.191, 1.112, 1.013, 0.991, 0.885, 0.831, 0.847, 0.786, 0.725, 0.746, 0.679, 0.608,
              0.655, 0.616, 0.606, 0.602, 0.626, 0.651, 0.724, 0.649, 0.649, 0.694, 0.644, 0.624, 0.661,
              0.612, 0.558, 0.533, 0.495, 0.500, 0.423, 0.395, 0.375, 0.372, 0.391, 0.396, 0.405, 0.428,
              0.429, 0.523, 0.562, 0.607, 0.653, 0.672, 0.708, 0.633, 0.668, 0.645, 0.632, 0.591, 0.559,
              0.597, 0.625, 0.739, 0.710, 0.729, 0.720, 0.636, 0.581, 0.428, 0.292, 0.162, 0.098, 0.054)


def osborne2(x, xp):
    out = []
    for i, y in enumerate(OSBORNE2_Y):
        t = i / 10
        out.append(y - (x[0] * xp.exp(-t * x[4]) + x[1] * xp.exp(-(t - x[8]) ** 2 * x[5])
                        + x[2] * xp.exp(-(t - x[9]) ** 2 * x[6]) + x[3] * xp.exp(-(t - x[10]) ** 2 * x[7])))
    return out


# --- 20-35: variable dimension ------------------------------------------------------------------

def watson(x, xp):
    n, out = len(x), []
    for i in range(1, 30):
        t = i / 29
        s1 = xp.add([(j - 1) * x[j - 1] * t ** (j - 2) for j in range(2, n + 1)])
        s2 = xp.add([x[j - 1] * t ** (j - 1) for j in range(1, n + 1)])
        out.append(s1 - s2 ** 2 - 1)
    return out + [x[0], x[1] - x[0] ** 2 - 1]


def extended_rosenbrock(x, xp):
    out = []
    for i in range(0, len(x), 2):
        out += [10 * (x[i + 1] - x[i] ** 2), 1 - x[i]]
    return out


def extended_powell(x, xp):
    out = []
    for i in range(0, len(x), 4):
        out += [x[i] + 10 * x[i + 1], math.sqrt(5) * (x[i + 2] - x[i + 3]), (x[i + 1] - 2 * x[i + 2]) ** 2,
                math.sqrt(10) * (x[i] - x[i + 3]) ** 2]
    return out


PENALTY_A = 1e-5


def penalty1(x, xp):
    return [math.sqrt(PENALTY_A) * (v - 1) for v in x] + [xp.add([v ** 2 for v in x]) - 0.25]


def penalty2(x, xp):
    n, a = len(x), math.sqrt(PENALTY_A)
    out = [x[0] - 0.2]
    for i in range(2, n + 1):
        y = math.exp(i / 10) + math.exp((i - 1) / 10)
        out.append(a * (xp.exp(x[i - 1] / 10) + xp.exp(x[i - 2] / 10) - y))
    for i in range(n + 1, 2 * n):
        out.append(a * (xp.exp(x[i - n] / 10) - math.exp(-1 / 10)))
    return out + [xp.add([(n - j) * x[j] ** 2 for j in range(n)]) - 1]


def variably_dimensioned(x, xp):
    s = xp.add([(j + 1) * (x[j] - 1) for j in range(len(x))])
    return [v - 1 for v in x] + [s, s ** 2]


def trigonometric(x, xp):
    n = len(x)
    cos_sum = xp.add([xp.cos(v) for v in x])
    return [n - cos_sum + (i + 1) * (1 - xp.cos(x[i])) - xp.sin(x[i]) for i in range(n)]


def brown_almost_linear(x, xp):
    n = len(x)
    total = xp.add(list(x))
    product = x[0]
    for v in x[1:]:
        product = product * v
    return [x[i] + total - (n + 1) for i in range(n - 1)] + [product - 1]


def discrete_boundary_value(x, xp):
    n = len(x)
    h = 1 / (n + 1)
    out = []
    for i in range(n):
        left = x[i - 1] if i > 0 else 0
        right = x[i + 1] if i < n - 1 else 0
        out.append(2 * x[i] - left - right + h ** 2 * (x[i] + (i + 1) * h + 1) ** 3 / 2)
    return out


def discrete_integral_equation(x, xp):
    n = len(x)
    h = 1 / (n + 1)
    t = [(j + 1) * h for j in range(n)]
    cubes = [(x[j] + t[j] + 1) ** 3 for j in range(n)]
    out = []
    for i in range(n):
        below = xp.add([t[j] * cubes[j] for j in range(i + 1)])
        above = xp.add([(1 - t[j]) * cubes[j] for j in range(i + 1, n)])
        out.append(x[i] + h * ((1 - t[i]) * below + t[i] * above) / 2)
    return out


def broyden_tridiagonal(x, xp):
    n = len(x)
    return [(3 - 2 * x[i]) * x[i] - (x[i - 1] if i > 0 else 0) - 2 * (x[i + 1] if i < n - 1 else 0) + 1
            for i in range(n)]


def broyden_banded(x, xp, lower=5, upper=1):
    n, out = len(x), []
    for i in range(n):
        band = [j for j in range(max(0, i - lower), min(n, i + upper + 1)) if j != i]
        out.append(x[i] * (2 + 5 * x[i] ** 2) + 1 - xp.add([x[j] * (1 + x[j]) for j in band]))
    return out


def linear_full_rank(x, xp, m=20):
    n = len(x)
    s = 2 / m * xp.add(list(x))
    return [x[i] - s - 1 for i in range(n)] + [-s - 1 for _ in range(n, m)]


def linear_rank1(x, xp, m=20):
    s = xp.add([(j + 1) * x[j] for j in range(len(x))])
    return [(i + 1) * s - 1 for i in range(m)]


def linear_rank1_zero(x, xp, m=20):
    n = len(x)
    s = xp.add([(j + 1) * x[j] for j in range(1, n - 1)])
    return [-1] + [i * s - 1 for i in range(1, m - 1)] + [-1]


def chebyquad(x, xp, m=None):
    n = len(x)
    m = m or n
    # shifted Chebyshev polynomials on [0, 1] by their recurrence, for every x_j at once
    previous, current = [1] * n, [2 * v - 1 for v in x]
    out = []
    for i in range(1, m + 1):
        exact = 0.0 if i % 2 else -1 / (i * i - 1)
        out.append(xp.add(current) / n - exact)
        previous, current = current, [2 * (2 * v - 1) * c - p for v, c, p in zip(x, current, previous)]
    return out


def problems() -> list[Problem]:
    """The 35 problems at their standard starting points (n = 10 for most variable-dimension ones)."""
    n = 10
    return [
        Problem(1, "Rosenbrock", 2, 2, (-1.2, 1.0), rosenbrock, 0.0, (1.0, 1.0)),
        Problem(2, "Freudenstein and Roth", 2, 2, (0.5, -2.0), freudenstein_roth, 0.0, (5.0, 4.0)),
        Problem(3, "Powell badly scaled", 2, 2, (0.0, 1.0), powell_badly_scaled, 0.0),
        Problem(4, "Brown badly scaled", 2, 3, (1.0, 1.0), brown_badly_scaled, 0.0, (1e6, 2e-6)),
        Problem(5, "Beale", 2, 3, (1.0, 1.0), beale, 0.0, (3.0, 0.5)),
        Problem(6, "Jennrich and Sampson", 2, 10, (0.3, 0.4), jennrich_sampson, 124.362),
        Problem(7, "Helical valley", 3, 3, (-1.0, 0.0, 0.0), helical_valley, 0.0, (1.0, 0.0, 0.0)),
        Problem(8, "Bard", 3, 15, (1.0, 1.0, 1.0), bard, 8.21487e-3),
        Problem(9, "Gaussian", 3, 15, (0.4, 1.0, 0.0), gaussian, 1.12793e-8),
        Problem(10, "Meyer", 3, 16, (0.02, 4000.0, 250.0), meyer, 87.9458),
        Problem(11, "Gulf research and development", 3, 99, (5.0, 2.5, 0.15), gulf, 0.0, (50.0, 25.0, 1.5)),
        Problem(12, "Box three-dimensional", 3, 10, (0.0, 10.0, 20.0), box_3d, 0.0, (1.0, 10.0, 1.0)),
        Problem(13, "Powell singular", 4, 4, (3.0, -1.0, 0.0, 1.0), powell_singular, 0.0, (0.0,) * 4),
        Problem(14, "Wood", 4, 6, (-3.0, -1.0, -3.0, -1.0), wood, 0.0, (1.0,) * 4),
        Problem(15, "Kowalik and Osborne", 4, 11, (0.25, 0.39, 0.415, 0.39), kowalik_osborne, 3.07505e-4),
        Problem(16, "Brown and Dennis", 4, 20, (25.0, 5.0, -5.0, -1.0), brown_dennis, 85822.2),
        Problem(17, "Osborne 1", 5, 33, (0.5, 1.5, -1.0, 0.01, 0.02), osborne1, 5.46489e-5),
        Problem(18, "Biggs EXP6", 6, 13, (1.0, 2.0, 1.0, 1.0, 1.0, 1.0), biggs_exp6, 0.0,
                (1.0, 10.0, 1.0, 5.0, 4.0, 3.0)),
        Problem(19, "Osborne 2", 11, 65, (1.3, 0.65, 0.65, 0.7, 0.6, 3.0, 5.0, 7.0, 2.0, 4.5, 5.5), osborne2,
                4.01377e-2),
        Problem(20, "Watson", 9, 31, (0.0,) * 9, watson, 1.39976e-6),
        Problem(21, "Extended Rosenbrock", n, n, (-1.2, 1.0) * (n // 2), extended_rosenbrock, 0.0, (1.0,) * n),
        Problem(22, "Extended Powell singular", 8, 8, (3.0, -1.0, 0.0, 1.0) * 2, extended_powell, 0.0,
                (0.0,) * 8),
        Problem(23, "Penalty I", n, n + 1, tuple(float(j) for j in range(1, n + 1)), penalty1, 7.08765e-5),
        Problem(24, "Penalty II", n, 2 * n, (0.5,) * n, penalty2, 2.93660e-4),
        Problem(25, "Variably dimensioned", n, n + 2, tuple(1 - j / n for j in range(1, n + 1)),
                variably_dimensioned, 0.0, (1.0,) * n),
        Problem(26, "Trigonometric", n, n, (1 / n,) * n, trigonometric, 0.0),
        Problem(27, "Brown almost-linear", n, n, (0.5,) * n, brown_almost_linear, 0.0, (1.0,) * n),
        Problem(28, "Discrete boundary value", n, n, _boundary_start(n), discrete_boundary_value, 0.0),
        Problem(29, "Discrete integral equation", n, n, _boundary_start(n), discrete_integral_equation, 0.0),
        Problem(30, "Broyden tridiagonal", n, n, (-1.0,) * n, broyden_tridiagonal, 0.0),
        Problem(31, "Broyden banded", n, n, (-1.0,) * n, broyden_banded, 0.0),
        Problem(32, "Linear function - full rank", n, 20, (1.0,) * n, linear_full_rank, 20 - n, (-1.0,) * n),
        Problem(33, "Linear function - rank 1", n, 20, (1.0,) * n, linear_rank1, 20 * 19 / (2 * 41)),
        Problem(34, "Linear function - rank 1 with zero columns and rows", n, 20, (1.0,) * n, linear_rank1_zero,
                (20 ** 2 + 3 * 20 - 6) / (2 * (2 * 20 - 3))),
        Problem(35, "Chebyquad", 8, 8, tuple(j / 9 for j in range(1, 9)), chebyquad, 3.51687e-3),
    ]


def _boundary_start(n: int) -> tuple[float, ...]:
    h = 1 / (n + 1)
    return tuple((j * h) * (j * h - 1) for j in range(1, n + 1))


def extended_rosenbrock_problem(n: int) -> Problem:
    """MGH 21 at any even n (the per-call and compile-time benchmarks use n = 100 ... 1000)."""
    return Problem(21, "Extended Rosenbrock", n, n, (-1.2, 1.0) * (n // 2), extended_rosenbrock, 0.0, (1.0,) * n)
