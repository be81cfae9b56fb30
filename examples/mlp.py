"""A multilayer perceptron with scalar weights (lecture 6, slide 16).

    z_i = sum_j w1_ij x_j + b1_i,   h_i = sigmoid(z_i),
    y_k = sum_i w2_ki h_i + b2_k,   L = sum_k (y_k - t_k)**2/2

`mlp_model(n_in, n_hidden, n_out)` builds any size; `model` is 3 inputs, 4 hidden units and
2 outputs. Slide 19's rule of thumb says the backward pass costs about two forward passes;
`backpropc explain examples/mlp.py` prints the measured operation counts.
"""

import sympy as sp

import backpropc as bp


def mlp_model(n_in: int = 3, n_hidden: int = 4, n_out: int = 2, name: str = "mlp") -> bp.Model:
    x = sp.symbols(f"x1:{n_in + 1}")
    t = sp.symbols(f"t1:{n_out + 1}")
    w1 = [[sp.Symbol(f"w1_{i}_{j}") for j in range(1, n_in + 1)] for i in range(1, n_hidden + 1)]
    b1 = sp.symbols(f"b1_1:{n_hidden + 1}")
    w2 = [[sp.Symbol(f"w2_{k}_{i}") for i in range(1, n_hidden + 1)] for k in range(1, n_out + 1)]
    b2 = sp.symbols(f"b2_1:{n_out + 1}")
    z = sp.symbols(f"z1:{n_hidden + 1}")
    h = sp.symbols(f"h1:{n_hidden + 1}")
    y = sp.symbols(f"y1:{n_out + 1}")
    L = sp.Symbol("L")

    steps = []
    for i in range(n_hidden):
        steps.append((z[i], sum(w1[i][j] * x[j] for j in range(n_in)) + b1[i]))
        steps.append((h[i], bp.sigmoid(z[i])))
    for k in range(n_out):
        steps.append((y[k], sum(w2[k][i] * h[i] for i in range(n_hidden)) + b2[k]))
    steps.append((L, sum((y[k] - t[k]) ** 2 for k in range(n_out)) / 2))

    params = [w for row in w1 for w in row] + list(b1) + [w for row in w2 for w in row] + list(b2)
    return bp.Model(name=name, steps=steps, loss=L, wrt=params, inputs=list(x) + list(t))


model = mlp_model()
