"""One class owns every name in a generated module.

Symbol names are untrusted text. A name is cleaned to a Python identifier (NFKC-normalised,
other characters replaced by `_`, a `v` in front of a leading digit or underscore, so every name
that starts with `_` is the module's own), given a trailing `_` when it is a keyword, a builtin,
`np` or a name of the module, and numbered when it collides with a name already given. Names are
handed out in a fixed order, so the result is deterministic.
"""

from __future__ import annotations

import builtins
import keyword
import unicodedata

MODULE_NAMES = frozenset({"np", "forward", "grad", "value_and_grad", "ARGS", "WRT", "SHAPES", "CHUNK",
                          "REDUCTION", "pack", "unpack", "hvp", "hessian", "residuals", "jacobian"})
RESERVED = (frozenset(keyword.kwlist) | frozenset(keyword.softkwlist)
            | frozenset(dir(builtins)) | MODULE_NAMES)


def clean(name: str) -> str:
    """A safe Python identifier for any text (not yet made unique)."""
    name = unicodedata.normalize("NFKC", name)
    chars = [c if ("a" + c).isidentifier() else "_" for c in name]
    text = "".join(chars)
    if not text or not text[0].isidentifier() or text[0] == "_":
        text = "v" + text
    if text in RESERVED:
        text += "_"
    return text


class Namer:
    """Gives each key (a symbol, a node) one unique, safe name."""

    def __init__(self) -> None:
        self.taken: set[str] = set()
        self.names: dict[object, str] = {}
        self._next_temp = 0

    def fresh(self, wanted: str) -> str:
        """`wanted` cleaned, or with a number appended until no other name has it."""
        base = clean(wanted)
        name, k = base, 2
        while name in self.taken:
            name, k = f"{base}_{k}", k + 1
        self.taken.add(name)
        return name

    def name(self, key, wanted: str) -> str:
        if key not in self.names:
            self.names[key] = self.fresh(wanted)
        return self.names[key]

    def temp(self, key=None) -> str:
        """The next free temporary name c0, c1, ... (the same one again for the same key)."""
        if key is not None and key in self.names:
            return self.names[key]
        k = self._next_temp
        while f"c{k}" in self.taken:
            k += 1
        self._next_temp = k + 1
        self.taken.add(f"c{k}")
        if key is not None:
            self.names[key] = f"c{k}"
        return f"c{k}"


def python_string(text: str) -> str:
    """A Python string literal of any text: quotes, backslashes and control characters escaped."""
    return '"' + text.encode("unicode_escape").decode("ascii").replace('"', '\\"') + '"'


def comment_text(text: str) -> str:
    """Any text on one line that is safe in a `#` comment: no line breaks, no control characters."""
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" if ord(c) < 256 else f"\\u{ord(c):04x}"
                   for c in text)


def docstring_text(text: str) -> str:
    """Any text that is safe inside a triple-quoted docstring: one line, no quotes that end it,
    no backslash escapes."""
    return comment_text(text).replace("\\", "\\\\").replace('"', "'")
