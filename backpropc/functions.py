"""backpropc's own SymPy functions, as users write them in models.

Each defines `fdiff` for SymPy (so `sympy.diff`, the tests' oracle, knows it); what the compiler
knows of each, its rules and stable NumPy form, is its record in backpropc.ops.elementwise.
"""

import sympy as sp
from sympy.codegen.cfunctions import expm1, log1p

from .errors import ModelError

__all__ = ["EntrySum", "expm1", "log1p", "logsumexp", "relu", "sigmoid", "softplus", "sum"]


class sigmoid(sp.Function):
    """The logistic function 1/(1 + exp(-x)); emitted as exp(-logaddexp(0, -x)), which never overflows."""

    nargs = 1

    def fdiff(self, argindex=1):
        if argindex != 1:
            raise sp.ArgumentIndexError(self, argindex)
        return self * (1 - self)

    @classmethod
    def eval(cls, x):
        if x.is_zero:
            return sp.S.Half

    def _eval_rewrite_as_exp(self, x, **kwargs):
        return 1 / (1 + sp.exp(-x))

    def _eval_is_real(self):
        return self.args[0].is_real


class softplus(sp.Function):
    """log(1 + exp(x)); emitted as logaddexp(0, x), which never overflows."""

    nargs = 1

    def fdiff(self, argindex=1):
        if argindex != 1:
            raise sp.ArgumentIndexError(self, argindex)
        return sigmoid(self.args[0])

    def _eval_rewrite_as_log(self, x, **kwargs):
        return sp.log(1 + sp.exp(x))

    def _eval_evalf(self, prec):  # a number, so that Max, Min and comparisons accept it
        return self.rewrite(sp.log)._eval_evalf(prec)

    def _eval_is_real(self):
        return self.args[0].is_real


class relu(sp.Function):
    """max(x, 0), with relu'(0) = 0."""

    nargs = 1

    def fdiff(self, argindex=1):
        if argindex != 1:
            raise sp.ArgumentIndexError(self, argindex)
        return sp.Heaviside(self.args[0], 0)

    def _eval_rewrite_as_Max(self, x, **kwargs):
        return sp.Max(x, 0)

    def _eval_evalf(self, prec):  # a number, so that Max, Min and comparisons accept it
        return self.rewrite(sp.Max)._eval_evalf(prec)

    def _eval_is_real(self):
        return self.args[0].is_real


class logsumexp(sp.Function):
    """log(exp(a) + exp(b) + ...) of its arguments, elementwise; emitted without overflow.

    d/da_i = exp(a_i - out): the softmax weight of argument i, computed from the output.
    """

    def fdiff(self, argindex=1):
        if not 1 <= argindex <= len(self.args):
            raise sp.ArgumentIndexError(self, argindex)
        return sp.exp(self.args[argindex - 1] - self)

    @classmethod
    def eval(cls, *args):
        if len(args) == 0:
            raise TypeError("logsumexp needs at least one argument")
        if len(args) == 1:
            return args[0]

    def _eval_rewrite_as_exp(self, *args, **kwargs):
        return sp.log(sp.Add(*[sp.exp(a) for a in args]))

    def _eval_evalf(self, prec):  # a number, so that Max, Min and comparisons accept it
        return self.rewrite(sp.exp)._eval_evalf(prec)

    def _eval_is_real(self):
        return all(a.is_real for a in self.args) or None


class EntrySum(sp.Expr):
    """bp.sum(X): the sum of all entries of a matrix expression, a scalar."""

    is_commutative = True

    def __new__(cls, arg):
        return sp.Expr.__new__(cls, arg)

    def doit(self, **hints):
        arg = self.args[0].doit(**hints) if hints.get("deep", True) else self.args[0]
        return sp.Add(*arg.as_explicit())

    def _sympystr(self, printer):
        return f"sum({printer._print(self.args[0])})"


def sum(expr):  # bp.sum, as users write it
    """The sum of all entries of a matrix expression (a scalar); a scalar is returned unchanged."""
    if isinstance(expr, sp.MatrixBase):
        return sp.Add(*expr)
    if isinstance(expr, sp.MatrixExpr):
        return EntrySum(expr)
    if isinstance(expr, str):  # sympify would evaluate it as Python
        raise ModelError("bp.sum takes a SymPy expression, not a string; build the expression with SymPy")
    return sp.sympify(expr, strict=True)
