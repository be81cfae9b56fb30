"""Runtime helpers: ordinary Python that generated modules need, copied into them verbatim.

Each helper is a top-level function of one of the modules below whose name starts with `_`; it
uses only `np` (the generated module's `import numpy as np`), the module's constants (`ARGS`,
`WRT`, `CHUNK`, `SHAPES`, `REDUCTION`) and other helpers, which each module lists in `NEEDS`. A
generated module gets the helpers its ops and functions name, with what they need, in a fixed
order: the order of this package's modules and of the functions in each. A block whose first
line's comment ends with `[with X]` is left out of a module without X (`ModuleBuilder.lacks`),
and so are the helpers only that block needed.
"""

from __future__ import annotations

import inspect
import re
from functools import cache

from . import array, core, elementwise, erf, gamma, lanes, matrix

MODULES = (core, elementwise, erf, gamma, matrix, array, lanes)


@cache
def _helpers() -> dict:
    """{name: (position, function, names it needs)} of every helper."""
    found = {}
    for module in MODULES:
        needs = getattr(module, "NEEDS", {})
        for name, value in vars(module).items():
            if name.startswith("_") and inspect.isfunction(value) and value.__module__ == module.__name__:
                assert name not in found, f"two helpers named {name}"
                found[name] = (len(found), value, tuple(needs.get(name, ())))
    return found


ONLY_WITH = re.compile(r"#.*\[with (\w+)\]\s*$")


def closure(names, lacks=frozenset()) -> list[str]:
    """The helpers `names` and everything they need, in the package's order, in a module that
    lacks the things `lacks`."""
    helpers = _helpers()
    wanted, stack = set(), list(names)
    while stack:
        name = stack.pop()
        if name not in wanted:
            if name not in helpers:
                raise KeyError(f"no runtime helper {name}")
            wanted.add(name)
            text = source_of(name, lacks)
            stack.extend(n for n in helpers[name][2] if re.search(rf"\b{n}\b", text))
    return sorted(wanted, key=lambda n: helpers[n][0])


@cache
def source_of(name: str, lacks=frozenset()) -> str:
    """A helper's source, without its blocks marked `[with X]` for the X in `lacks`."""
    kept, cut = [], None  # cut: the indentation of the block being left out
    for line in inspect.getsource(_helpers()[name][1]).rstrip().split("\n"):
        indent = len(line) - len(line.lstrip())
        if cut is not None and (not line.strip() or indent > cut):
            continue
        cut = None
        marked = ONLY_WITH.search(line)
        if marked and marked.group(1) in lacks:
            cut = indent
        else:  # the mark itself is the compiler's, not the module's
            kept.append(re.sub(r"\s*#?\s*\[with \w+\]\s*$", "", line) if marked else line)
    return "\n".join(kept) + "\n"


def source(names, lacks=frozenset()) -> str:
    """The source of the helpers `names` and what they need, two blank lines apart, for a module
    that lacks the things `lacks`."""
    return "\n\n".join(source_of(n, lacks) for n in closure(names, lacks))


def namespace(names=None) -> dict:
    """`np` and the helpers (all of them by default), for evaluating printed code outside a module."""
    import numpy as np

    names = list(_helpers()) if names is None else names
    scope = {"np": np}
    exec(source(names), scope)
    return scope
