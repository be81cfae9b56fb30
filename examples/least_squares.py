"""Linear least squares, shape-generic: L = ||A x - b||**2.

    r = A x - b,   L = r^T r

The sizes m and n are SymPy symbols, so one generated module serves every size: it reads them
off the arguments (A of shape (m, n), x of shape (n, 1), b of shape (m, 1)) and checks that they
agree. The gradient is the normal-equations residual, x_bar = 2 A^T (A x - b).

    backpropc compile examples/least_squares.py --check
"""

import sympy as sp

import backpropc as bp

m, n = sp.symbols("m n", integer=True, positive=True)
A, x, b = sp.MatrixSymbol("A", m, n), sp.MatrixSymbol("x", n, 1), sp.MatrixSymbol("b", m, 1)
r, L = sp.MatrixSymbol("r", m, 1), sp.Symbol("L")

model = bp.Model(
    name="least_squares",
    steps=[(r, A * x - b), (L, r.T * r)],
    loss=L,
    wrt=[x],
    inputs=[A, b],
)
