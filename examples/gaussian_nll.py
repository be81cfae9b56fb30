"""The negative log-likelihood of a multivariate Gaussian, with a learned covariance.

    S = C C^T,   L = log(det(S))/2 + (x - mu)^T S^-1 (x - mu)/2 + d log(2 pi)/2

The covariance S is parameterised by a square factor C, so it stays symmetric positive definite
for any invertible C. log(det(S)) is computed from the LU factors (no overflow), and its gradient
S^-T shares the inverse the quadratic form already computes. x is one d-dimensional
observation; a batch of them is an array of shape (N, d, 1). bp.sum turns the 1x1 quadratic
form into a scalar that adds to the others.

    backpropc compile examples/gaussian_nll.py --check
"""

import sympy as sp

import backpropc as bp

d = 3
mu, C = sp.MatrixSymbol("mu", d, 1), sp.MatrixSymbol("C", d, d)
x = sp.MatrixSymbol("x", d, 1)
S, e, L = sp.MatrixSymbol("S", d, d), sp.MatrixSymbol("e", d, 1), sp.Symbol("L")

model = bp.Model(
    name="gaussian_nll",
    steps=[(S, C * C.T),
           (e, x - mu),
           (L, sp.log(sp.Determinant(S)) / 2 + bp.sum(e.T * S.I * e) / 2 + d * sp.log(2 * sp.pi) / 2)],
    loss=L,
    wrt=[mu, C],
    inputs=[x],
)
