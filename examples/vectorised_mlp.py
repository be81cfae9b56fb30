"""The lecture's multilayer perceptron in vectorised form (lecture 6, slide 17).

    z = W1 x + b1,   h = sigmoid(z),   y = W2 h + b2,   L = ||y - t||**2/2

Differentiated at matrix level, as on the slide: W2_bar = y_bar h^T, h_bar = W2^T y_bar,
W1_bar = z_bar x^T. The generated code does not grow with the layer sizes: a batch of inputs is
an array of shape (N, n_in, 1), and each weight gradient is one matrix product over the batch.

`vectorised_mlp(n_in, n_hidden, n_out)` builds any size (numbers, or SymPy symbols for a
shape-generic module); `model` is 3 inputs, 4 hidden units and 2 outputs, like examples/mlp.py.

    backpropc explain examples/vectorised_mlp.py
"""

import sympy as sp

import backpropc as bp


def vectorised_mlp(n_in=3, n_hidden=4, n_out=2, name: str = "vectorised_mlp") -> bp.Model:
    W1, b1 = sp.MatrixSymbol("W1", n_hidden, n_in), sp.MatrixSymbol("b1", n_hidden, 1)
    W2, b2 = sp.MatrixSymbol("W2", n_out, n_hidden), sp.MatrixSymbol("b2", n_out, 1)
    x, t = sp.MatrixSymbol("x", n_in, 1), sp.MatrixSymbol("t", n_out, 1)
    z, h = sp.MatrixSymbol("z", n_hidden, 1), sp.MatrixSymbol("h", n_hidden, 1)
    y, L = sp.MatrixSymbol("y", n_out, 1), sp.Symbol("L")
    return bp.Model(
        name=name,
        steps=[(z, W1 * x + b1),
               (h, z.applyfunc(bp.sigmoid)),
               (y, W2 * h + b2),
               (L, bp.sum(sp.HadamardPower(y - t, 2)) / 2)],
        loss=L,
        wrt=[W1, b1, W2, b2],
        inputs=[x, t],
    )


model = vectorised_mlp()
