"""backpropc: compile a SymPy forward pass into a standalone NumPy module with exact gradients.

    import backpropc as bp
    compiled = bp.compile(bp.Model(name=..., steps=[...], loss=..., wrt=[...], inputs=[...]))
    m = compiled.load()
    value, grads = m.value_and_grad(...)
    bp.plot(compiled, ["w", "b"])   # the objective over two parameters (needs backpropc[plot])
"""

__version__ = "0.1.0"

from . import errors  # noqa: E402
from .check import check  # noqa: E402
from .compare import compare  # noqa: E402
from .compiler import Compiled, compile  # noqa: E402
from .functions import expm1, log1p, logsumexp, relu, sigmoid, softplus  # noqa: E402
from .functions import sum  # noqa: E402, A004 - bp.sum of a matrix's entries
from .model import Model  # noqa: E402
from .ops import supported_functions  # noqa: E402
from .plot import plot  # noqa: E402

__all__ = ["Model", "compile", "check", "compare", "Compiled", "errors", "sigmoid", "softplus", "relu", "logsumexp",
           "log1p", "expm1", "sum", "supported_functions", "plot", "__version__"]
