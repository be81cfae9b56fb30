"""The SymPy front end: model expressions become graph nodes.

    convert.py    each distinct SymPy subexpression converted once, with support checks
    matrices.py   matrix expressions (MatMul, Transpose, MatrixElement, ...) to matrix ops
    stable.py     stable rewrites (log(1 + exp(x)) -> softplus(x), ...) and safe untaken branches

Validation of the model as a whole and the order of its steps are backpropc.model's job.
"""

from .convert import Converter

__all__ = ["Converter"]
