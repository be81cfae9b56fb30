"""backpropc: compile a SymPy forward pass into a standalone NumPy module with exact gradients.

    import backpropc as bp
    compiled = bp.compile(bp.Model(name=..., steps=[...], loss=..., wrt=[...], inputs=[...]))
    m = compiled.load()
    value, grads = m.value_and_grad(...)
    bp.plot(compiled, ["w", "b"])   # the objective over two parameters (needs backpropc[plot])
"""

__version__ = "0.1.0"

from . import errors
from .check import check
from .compare import compare
from .compiler import Compiled, compile
from .functions import expm1, log1p, logsumexp, relu, sigmoid, softplus
from .functions import sum  # bp.sum: the sum of a matrix's entries (shadows the builtin on purpose)
from .model import Model
from .ops import supported_functions
from .plot import plot

__all__ = ["Compiled", "Model", "__version__", "check", "compare", "compile", "errors", "expm1", "log1p",
           "logsumexp", "plot", "relu", "sigmoid", "softplus", "sum", "supported_functions"]
