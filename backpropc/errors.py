"""Typed errors and warnings: every way a model can be refused, each with the fix in its message.

Messages quote user names, which may hold terminal control characters or newlines: `str()` of
each error and warning escapes them (naming.printable), so a message stays one inert line.
"""

from .naming import printable


class _Printable:
    def __str__(self) -> str:
        return printable(super().__str__())


class BackpropcError(_Printable, Exception):
    """Base class of every error backpropc raises for bad input."""


class ModelError(BackpropcError, ValueError):
    """The model is malformed: a bad step, a redefined symbol, a cycle, a bad argument list."""


class NonScalarLossError(ModelError):
    """The loss is not a scalar expression."""


class UnsupportedFunctionError(BackpropcError, TypeError):
    """A function has no derivative rule or no NumPy form."""


class NonRealConstantError(ModelError):
    """The model contains a constant that is not real (I, zoo, nan, oo)."""


class OutputPathError(BackpropcError, OSError):
    """An output path that must not be replaced: a device, a FIFO, a folder, the model file."""


class UnusedWrtWarning(_Printable, UserWarning):
    """A `wrt` symbol does not occur in the loss: its gradient is zero."""


class PlotError(BackpropcError, ValueError):
    """A plot was asked for parameters, data or settings that the model does not have."""


class MissingExtraError(BackpropcError, ImportError):
    """An optional feature needs a package that is not installed; the message names the extra."""
