"""Multiclass logistic regression with softmax cross-entropy (lecture 6, slide 11).

    z_l = sum_j w_lj x_j + b_l,   y_k = exp(z_k) / sum_l exp(z_l),   L = -sum_k t_k log y_k

with 3 classes and 2 features. log y_k is written z_k - logsumexp(z), the same quantity in a form
that cannot overflow; the targets t_k are one-hot (or any probabilities).
"""

import sympy as sp

import backpropc as bp

CLASSES, FEATURES = 3, 2

x = sp.symbols(f"x1:{FEATURES + 1}")
t = sp.symbols(f"t1:{CLASSES + 1}")
W = [[sp.Symbol(f"w{k}{j}") for j in range(1, FEATURES + 1)] for k in range(1, CLASSES + 1)]
b = sp.symbols(f"b1:{CLASSES + 1}")
z = sp.symbols(f"z1:{CLASSES + 1}")
lse, L = sp.symbols("lse L")

steps = [(z[k], sum(W[k][j] * x[j] for j in range(FEATURES)) + b[k]) for k in range(CLASSES)]
steps += [(lse, bp.logsumexp(*z)),
          (L, -sum(t[k] * (z[k] - lse) for k in range(CLASSES)))]

model = bp.Model(
    name="softmax_regression",
    steps=steps,
    loss=L,
    wrt=[w for row in W for w in row] + list(b),
    inputs=list(x) + list(t),
)
