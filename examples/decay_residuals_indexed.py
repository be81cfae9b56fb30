"""Exponential decay with an offset, fitted by least squares to indexed samples: one residual for
each index i of the data.

    r[i] = A*exp(-k*t[i]) + c - y[i],   i = 0 .. n-1

t and y are sympy.IndexedBase data of symbolic length n; the residual is given with its range,
(expression, (i, 0, n - 1)), as a Sum's limits are. One module serves every n: `residuals` gives n
rows per series, `jacobian_flat` one row per sample and a column per parameter, for
`scipy.optimize.least_squares`. Without `loss`, the objective is half the sum of the squares.

    backpropc compile examples/decay_residuals_indexed.py --derivatives grad,jacobian --check
"""

import sympy as sp

import backpropc as bp

n = sp.Symbol("n", integer=True, positive=True)
t = sp.IndexedBase("t", shape=(n,))
y = sp.IndexedBase("y", shape=(n,))
i = sp.Symbol("i", integer=True)
A, k, c = sp.symbols("A k c")

model = bp.Model(
    name="decay_residuals_indexed",
    residuals=[(A * sp.exp(-k * t[i]) + c - y[i], (i, 0, n - 1))],
    wrt=[A, k, c],
    inputs=[t, y],
)
# sampling times are non-negative; a rate near 1
DOMAINS = {"t": (0.0, 3.0), "k": (0.2, 2.0)}
