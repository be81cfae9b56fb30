"""The extended Rosenbrock function (More, Garbow and Hillstrom, problem 21), written with a Sum.

    f(x) = sum_{i=0}^{n-2} 100 (x[i+1] - x[i]**2)**2 + (1 - x[i])**2

x is a sympy.IndexedBase of symbolic length n: one module serves every n, and each x[i + k]
is a slice of x (a view), so a call costs a few vectorised NumPy operations whatever n is.

    backpropc compile examples/rosenbrock_indexed.py --check
    backpropc explain examples/rosenbrock_indexed.py
"""

import sympy as sp

import backpropc as bp

n = sp.Symbol("n", integer=True, positive=True)
x = sp.IndexedBase("x", shape=(n,))
i = sp.Idx("i")

model = bp.Model(
    name="rosenbrock_indexed",
    loss=sp.Sum(100 * (x[i + 1] - x[i] ** 2) ** 2 + (1 - x[i]) ** 2, (i, 0, n - 2)),
    wrt=[x],
)
