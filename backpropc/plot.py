"""The geometric view of the gradient (the lecture's slide 21): the objective over weight space.

`plot(compiled, params=("w", "b"))` draws the objective as contours over two parameters (the
others held fixed), the negative gradient as arrows, and a gradient-descent path, all computed
by the compiled module itself. With one parameter it draws the objective as a curve with its
tangent lines. A matrix parameter is plotted one entry at a time: `W1[0,1]`. matplotlib is the
optional extra `backpropc[plot]`.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from .check import argument_shape, finite_point
from .compiler import Compiled, compile
from .errors import MissingExtraError, PlotError
from .files import write_atomic

FORMATS = ("png", "svg", "pdf")
# Without --data, the data are `batch` examples drawn as `check` draws them.
DEFAULT_BATCH = 20
FIRST_STEP = 0.1   # the first step's length, relative to the start, where the objective is not convex
GRID = 61          # evaluations per axis of the contour grid
ARROWS = 13        # arrows per axis
ENTRY = re.compile(r"\s*([^\[\]\s]+)\s*(?:\[\s*(\d+)\s*,\s*(\d+)\s*\])?\s*")


def _matplotlib():
    """matplotlib and the Figure class of plots, or a one-line error naming the extra."""
    try:
        import matplotlib
        import matplotlib.lines
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise MissingExtraError("plotting needs matplotlib, which is not installed: "
                                "pip install 'backpropc[plot]'") from exc
    return matplotlib, _shown_in_jupyter(Figure)


@cache
def _shown_in_jupyter(figure_class):
    """A Figure class that shows itself in Jupyter: a Figure made without pyplot (so that
    nothing global is touched) would otherwise display as its repr."""

    class PlotFigure(figure_class):
        def _repr_png_(self) -> bytes:
            buffer = io.BytesIO()
            self.savefig(buffer, format="png", dpi=100)
            return buffer.getvalue()

    return PlotFigure


@dataclass(frozen=True)
class Coordinate:
    """One axis of the plot: a scalar parameter, or one entry of a matrix parameter."""

    name: str
    index: tuple[int, int] | None = None

    @property
    def label(self) -> str:
        return self.name if self.index is None else f"{self.name}[{self.index[0]},{self.index[1]}]"

    def get(self, point: dict) -> float:
        value = point[self.name]
        return float(value if self.index is None else value[self.index])

    def set(self, point: dict, value: float) -> dict:
        if self.index is None:
            return dict(point, **{self.name: float(value)})
        matrix = np.array(point[self.name], dtype=float)
        matrix[self.index] = value
        return dict(point, **{self.name: matrix})

    def of(self, grads: dict) -> float:
        g = grads[self.name]
        return float(g if self.index is None else np.asarray(g)[self.index])


def coordinates(module, model: str, names) -> list[Coordinate]:
    """The plotted coordinates named in `names` (all of them must be parameters), or the
    model's own one or two scalar parameters when `names` is empty."""
    wrt = list(module.WRT)
    sizes = {w: int(np.prod(argument_shape(module, w, None))) for w in wrt}
    total = sum(sizes.values())
    listed = ", ".join(wrt)
    if not names:
        if total > 2:
            raise PlotError(f"{model} has {total:,} parameters ({listed}); choose two with --params, "
                            f"e.g. --params {_example(module, wrt)}")
        return [Coordinate(w, index) for w in wrt
                for index in (np.ndindex(argument_shape(module, w, None)) if argument_shape(module, w, None)
                              else [None])]
    if len(names) > 2:
        raise PlotError(f"at most two parameters can be plotted, not {len(names)}; e.g. --params "
                        f"{_example(module, wrt)}")
    if len(names) == 1 and total > 1:
        raise PlotError(f"{model} has {total:,} parameters ({listed}); name two with --params, e.g. "
                        f"--params {_example(module, wrt)} (a curve of one parameter needs a model with one)")
    result = [_coordinate(module, model, name, wrt) for name in names]
    if len(set(result)) < len(result):
        raise PlotError(f"--params names {result[0].label} twice; name two different parameters")
    return result


def _coordinate(module, model: str, text: str, wrt: list[str]) -> Coordinate:
    match = ENTRY.fullmatch(text)
    name = match[1] if match else text
    if name not in wrt:
        kind = "data, not a parameter" if name in module.ARGS else "not an argument of the model"
        raise PlotError(f"{name!r} is {kind}; {model}'s parameters are {', '.join(wrt)}")
    shape = argument_shape(module, name, None)
    if match is None or (shape and match[2] is None):
        rows, cols = shape or (1, 1)
        raise PlotError(f"{name} is a {rows}x{cols} matrix; plot one entry of it, e.g. {name}[0,0]")
    if match[2] is None:
        return Coordinate(name)
    if not shape:
        raise PlotError(f"{name} is a scalar; name it without an index")
    index = (int(match[2]), int(match[3]))
    if not (index[0] < shape[0] and index[1] < shape[1]):
        raise PlotError(f"{name}[{index[0]},{index[1]}] is outside {name}, which is {shape[0]}x{shape[1]}")
    return Coordinate(name, index)


def _example(module, wrt: list[str]) -> str:
    entries = []
    for w in wrt:
        shape = argument_shape(module, w, None)
        entries += [f"{w}[0,0]", f"{w}[0,1]" if shape[1] > 1 else f"{w}[1,0]"] if shape else [w]
    return " ".join(entries[:2])


def base_point(compiled, module, data=None, at=None, batch: int = DEFAULT_BATCH, seed: int = 0,
               domains=None) -> dict:
    """Every argument's value: `data` (arrays by name) and `at` (name or entry -> number) where
    given, else drawn as `check` draws them (seeded)."""
    data = dict(data or {})
    unknown = sorted(set(data) - set(module.ARGS))
    if unknown:
        raise PlotError(f"the data have arrays {', '.join(unknown)} that {compiled.name} has no argument "
                        f"for; its arguments are {', '.join(module.ARGS)}")
    if data:
        missing = [a for a in module.ARGS if a not in module.WRT and a not in data]
        if missing:
            raise PlotError(f"the data lack {', '.join(missing)}; give an array for every input of "
                            f"{compiled.name} ({', '.join(a for a in module.ARGS if a not in module.WRT)})")
    point, _ = finite_point(module, np.random.default_rng(seed), batch, domains or {})
    if point is None:
        raise PlotError(f"{compiled.name}: no point found where the loss and its gradient are finite; "
                        f"give sampling ranges in a DOMAINS dict in the model file, or --data")
    point.update({a: np.asarray(v, dtype=float) for a, v in data.items()})
    for text, value in (at or {}).items():
        coordinate = _coordinate(module, compiled.name, text, list(module.WRT))
        point = coordinate.set(point, float(value))
    return point


def _evaluate(module, point: dict) -> tuple[float, dict]:
    with np.errstate(all="ignore"):
        value, grads = module.value_and_grad(**point)
    return float(value), dict(zip(module.WRT, grads))


def step_size(module, point: dict, axes: list[Coordinate], start) -> float:
    """1 / (2 x the largest curvature of the objective at `start` over the plotted parameters),
    from central differences of the gradient: half the step that would reach the minimum of a
    quadratic along its steepest axis, so the path shows its approach instead of one jump. Where
    the objective is not convex at the start, the first step moves a tenth of max(1, |start|)."""
    p = np.array(start, dtype=float)
    hessian = np.zeros((len(axes), len(axes)))
    for k in range(len(axes)):
        h = 1e-4 * max(1.0, abs(p[k]))
        sides = []
        for sign in (1, -1):
            here = point
            for axis, value in zip(axes, p + sign * h * np.eye(len(axes))[k]):
                here = axis.set(here, value)
            sides.append(np.array([axis.of(_evaluate(module, here)[1]) for axis in axes]))
        hessian[k] = (sides[0] - sides[1]) / (2 * h)
    with np.errstate(all="ignore"):
        largest = float(np.max(np.linalg.eigvalsh((hessian + hessian.T) / 2)))
    if np.isfinite(largest) and largest > 0:
        return 1 / (2 * largest)
    here = point
    for axis, value in zip(axes, p):
        here = axis.set(here, value)
    slope = np.hypot.reduce([axis.of(_evaluate(module, here)[1]) for axis in axes])
    return FIRST_STEP * max(1.0, float(np.max(np.abs(p)))) / slope if slope > 0 else FIRST_STEP


def descent(module, point: dict, axes: list[Coordinate], start, lr: float, steps: int) -> np.ndarray:
    """The points of `steps` steps of gradient descent from `start` (stops where it diverges)."""
    p = np.array(start, dtype=float)
    path = [p]
    for _ in range(steps):
        here = point
        for axis, value in zip(axes, p):
            here = axis.set(here, value)
        _, grads = _evaluate(module, here)
        p = p - lr * np.array([axis.of(grads) for axis in axes])
        if not np.all(np.isfinite(p)):
            break
        path.append(p)
    return np.array(path)


def _window(values: np.ndarray, limits) -> tuple[float, float]:
    """The path's range, padded by a third, at least 2 wide; or the limits given."""
    if limits is not None:
        low, high = map(float, limits)
        if not low < high:
            raise PlotError(f"plot limits must be increasing, not {low:g} {high:g}")
        return low, high
    low, high = float(np.min(values)), float(np.max(values))
    half = max((high - low) / 2 * 1.35, 1.0)
    middle = (low + high) / 2
    return middle - half, middle + half


def plot(compiled, params=(), *, data=None, at=None, start=None, lr: float | None = None, steps: int = 30,
         batch: int = DEFAULT_BATCH, seed: int = 0, domains=None, limits=None, ax=None):
    """Draw the objective over one or two parameters with its gradient; return the Figure.

    `compiled`: a `Compiled` model, or a `Model` (compiled with the mean over the examples).
    `params`: the parameters (or entries such as "W1[0,1]") on the axes; by default the model's
    own one or two. `data`: arrays by argument name (else `batch` seeded random examples);
    `at`: values of other parameters (else seeded random ones). Gradient descent starts at
    `start` (default: the parameters' values at that point) and takes `steps` steps of `lr`
    times the gradient (default: 1 / the largest curvature at the start, see `step_size`). `limits`: one (low, high) per axis instead of the automatic window.
    `ax`: a matplotlib Axes to draw into.
    """
    if lr is not None and not (lr > 0 and np.isfinite(lr)):
        raise PlotError("the learning rate must be a positive number")
    if steps < 0:
        raise PlotError("the number of steps must be 0 or more")
    if batch < 1:
        raise PlotError("the batch must have at least 1 example")
    if not isinstance(compiled, Compiled):
        compiled = compile(compiled, reduction="mean")
    module = compiled.load()
    axes = coordinates(module, compiled.name, list(params))
    point = base_point(compiled, module, data, at, batch, seed, domains)
    if start is None:
        start = [axis.get(point) for axis in axes]
    elif len(start) != len(axes):
        raise PlotError(f"--start needs {len(axes)} value{'s' if len(axes) > 1 else ''}, one per plotted "
                        f"parameter ({', '.join(a.label for a in axes)})")
    if limits is not None and len(limits) != len(axes):
        raise PlotError(f"give limits for each of the {len(axes)} plotted parameters")
    matplotlib, Figure = _matplotlib()
    if lr is None:
        lr = step_size(module, point, axes, start)
    path = descent(module, point, axes, start, lr, steps)
    if ax is None:
        figure = Figure(figsize=(7.5, 6), layout="constrained")
        ax = figure.subplots()
    examples = _examples(module, point)
    source = "" if data else f" drawn at random (seed {seed})"
    objective = (f"objective: {'mean' if compiled.reduction == 'mean' else 'sum'} of the loss over "
                 f"{examples:,} example{'s' if examples != 1 else ''}{source}")
    if len(axes) < sum(int(np.prod(argument_shape(module, w, None))) for w in module.WRT):
        objective += "; the other parameters held fixed"
    draw = _curve if len(axes) == 1 else _contours
    draw(ax, module, point, axes, path, [_window(path[:, i], None if limits is None else limits[i])
                                         for i in range(len(axes))])
    ax.set_title(f"{compiled.name}: the objective over {' and '.join(a.label for a in axes)}, "
                 f"and gradient descent (lr {lr:.3g})\n{objective}", fontsize=10)
    handles, labels = ax.get_legend_handles_labels()
    arrow = matplotlib.lines.Line2D([], [], marker=r"$\rightarrow$", linestyle="none", color="black",
                                    markersize=14)  # a quiver's own legend entry is a blank box
    handles = [arrow if "negative gradient" in label else h for h, label in zip(handles, labels)]
    ax.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2, fontsize=8,
              frameon=False)
    return ax.figure


def _examples(module, point: dict) -> int:
    shapes = [np.shape(point[a])[:np.ndim(point[a]) - len(argument_shape(module, a, None))]
              for a in module.ARGS if a not in module.WRT]
    return int(np.prod(np.broadcast_shapes(*shapes))) if shapes else 1


def _contours(ax, module, point, axes, path, window) -> None:
    (x0, x1), (y0, y1) = window
    xs, ys = np.linspace(x0, x1, GRID), np.linspace(y0, y1, GRID)
    values = np.full((GRID, GRID), np.nan)
    gx, gy = np.full_like(values, np.nan), np.full_like(values, np.nan)
    for i, y in enumerate(ys):
        for j, x in enumerate(xs):
            value, grads = _evaluate(module, axes[1].set(axes[0].set(point, x), y))
            values[i, j], gx[i, j], gy[i, j] = value, axes[0].of(grads), axes[1].of(grads)
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        raise PlotError("the objective is not finite anywhere in the plotted window; choose other limits")
    # levels at quantiles of the values: detail where the objective is flat and where it is steep
    levels = np.unique(np.quantile(finite, np.linspace(0, 1, 16)))
    if len(levels) < 2:
        levels = np.array([finite.min() - 1, finite.min() + 1])
    filled = ax.contourf(xs, ys, values, levels=levels, cmap="viridis", extend="neither")
    lines = ax.contour(xs, ys, values, levels=levels, colors="white", linewidths=0.6, alpha=0.8)
    ax.clabel(lines, levels=lines.levels[::3], fontsize=7, fmt="%.3g")
    ax.figure.colorbar(filled, ax=ax, label="objective", format="%.3g")
    # the negative gradient, one arrow per cell, drawn with equal length on screen
    step = max(1, GRID // ARROWS)
    X, Y = np.meshgrid(xs[step // 2::step], ys[step // 2::step])
    u, v = -gx[step // 2::step, step // 2::step] / (x1 - x0), -gy[step // 2::step, step // 2::step] / (y1 - y0)
    norm = np.hypot(u, v)
    with np.errstate(all="ignore"):
        u, v = np.where(norm > 0, u / norm, 0), np.where(norm > 0, v / norm, 0)
    cell = 0.6 / ARROWS
    ax.quiver(X, Y, u * cell * (x1 - x0), v * cell * (y1 - y0), angles="xy", scale_units="xy", scale=1,
              color="white", edgecolor="black", linewidth=0.3, width=0.003, label="negative gradient (direction of steepest descent)")
    ax.plot(path[:, 0], path[:, 1], "-o", color="#f97316", markersize=3, linewidth=1.8,
            label=f"gradient descent, {len(path) - 1} steps")
    ax.plot(*path[0], "o", color="#dc2626", markersize=9, markeredgecolor="white",
            label=f"start ({path[0][0]:.3g}, {path[0][1]:.3g})")
    ax.plot(*path[-1], "*", color="#facc15", markersize=15, markeredgecolor="black",
            label=f"end ({path[-1][0]:.3g}, {path[-1][1]:.3g})")
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_xlabel(axes[0].label)
    ax.set_ylabel(axes[1].label)


def _curve(ax, module, point, axes, path, window) -> None:
    (x0, x1), = window
    axis = axes[0]
    xs = np.linspace(x0, x1, 4 * GRID)
    values = np.array([_evaluate(module, axis.set(point, x))[0] for x in xs])
    ax.plot(xs, values, color="#1d4ed8", linewidth=2, label="objective")
    half = (x1 - x0) / 8
    for k, x in enumerate(np.linspace(x0, x1, 7)[1:-1]):
        value, grads = _evaluate(module, axis.set(point, x))
        slope = axis.of(grads)
        ts = np.array([x - half, x + half])
        ax.plot(ts, value + slope * (ts - x), color="#dc2626", linewidth=1.2,
                label="tangent lines (slope = the gradient)" if k == 0 else None)
        ax.plot(x, value, "o", color="#dc2626", markersize=4)
    on_curve = [_evaluate(module, axis.set(point, p))[0] for p in path[:, 0]]
    ax.plot(path[:, 0], on_curve, "-o", color="#f97316", markersize=3, linewidth=1,
            label=f"gradient descent, {len(path) - 1} steps")
    ax.plot(path[0, 0], on_curve[0], "o", color="#dc2626", markersize=9, markeredgecolor="white",
            label=f"start {path[0, 0]:.3g}")
    ax.plot(path[-1, 0], on_curve[-1], "*", color="#facc15", markersize=15, markeredgecolor="black",
            label=f"end {path[-1, 0]:.3g}")
    ax.set_xlim(x0, x1)
    ax.set_xlabel(axis.label)
    ax.set_ylabel("objective")


def output_format(path) -> str:
    """png, svg or pdf, from the path's suffix."""
    fmt = Path(path).suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        raise PlotError(f"unknown plot format {Path(path).suffix or '(no suffix)'}; use .png, .svg or .pdf")
    return fmt


def save(figure, path) -> None:
    """Write the figure as PNG, SVG or PDF (by suffix), atomically and byte-identically."""
    fmt = output_format(path)
    matplotlib, _ = _matplotlib()
    metadata = {"png": {"Software": None}, "svg": {"Date": None}, "pdf": {"CreationDate": None}}[fmt]
    buffer = io.BytesIO()
    with matplotlib.rc_context({"svg.hashsalt": "backpropc"}):
        figure.savefig(buffer, format=fmt, dpi=150, metadata=metadata)
    write_atomic(path, buffer.getvalue())
