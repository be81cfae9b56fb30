"""One exponential decay fitted to many series at once, written with a Sum over the samples.

    L = sum_{i=0}^{n-1} (A exp(-k t[i]) - y[i])**2 / 2        (one series)

t holds the n sampling times and y one series' n measurements: both are sympy.IndexedBase data
of symbolic length n. Pass y as a (series, n) array and the module fits A and k to every series
together: a batch of data leads, each array's own axis trails, the loss is one number per
series, and the gradient sums over the series.

    backpropc compile examples/decay_series_indexed.py --check
    backpropc explain examples/decay_series_indexed.py
"""

import sympy as sp

import backpropc as bp

n = sp.Symbol("n", integer=True, positive=True)
t = sp.IndexedBase("t", shape=(n,))
y = sp.IndexedBase("y", shape=(n,))
i = sp.Idx("i")
A, k = sp.symbols("A k")

model = bp.Model(
    name="decay_series_indexed",
    loss=sp.Sum((A * sp.exp(-k * t[i]) - y[i]) ** 2, (i, 0, n - 1)) / 2,
    wrt=[A, k],
    inputs=[t, y],
)
# sampling times are non-negative; a rate near 1
DOMAINS = {"t": (0.0, 3.0), "k": (0.2, 2.0)}
