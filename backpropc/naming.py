"""One class owns every name in a generated module, and the escaping of every other user text.

Symbol names are untrusted text. A name is cleaned to a Python identifier (NFKC-normalised,
other characters replaced by `_`, a `v` in front of a leading digit or underscore, so every name
that starts with `_` is the module's own), given a trailing `_` when it is a keyword, a builtin,
`np` or a name of the module, and numbered when it collides with a name already given. Names are
handed out in a fixed order, so the result is deterministic.

Python reads identifiers in NFKC form, so a name is cleaned until its NFKC form is stable and
names are compared in that form: `ﬁ` and `fi`, or a `v` put before a combining tilde and `ṽ`,
are the same identifier to Python and must be to the `Namer`.

Other user text (model names, step names, function names) reaches string literals, comments and
docstrings of the module, and terminal output: `python_string`, `comment_text`, `docstring_text`
and `printable` make it inert there.
"""

from __future__ import annotations

import builtins
import keyword
import re
import unicodedata

# The public names a generated module may define (its helpers' names start with "_", which no
# cleaned name does).
MODULE_NAMES = frozenset({
    "np", "math", "ARGS", "WRT", "SHAPES", "INDEXED", "CHUNK", "BLOCK", "BROADCAST", "REDUCTION",
    "forward", "grad", "value_and_grad", "value_and_grad_flat", "pack", "unpack", "hvp", "hvp_flat",
    "hessian", "hessian_flat", "hessian_coo", "hessian_values", "residuals", "residuals_flat",
    "residuals_jvp", "jacobian", "jacobian_flat", "jacobian_coo",
    *(f"{matrix}_{table}" for matrix in ("HESSIAN", "JACOBIAN")
      for table in ("ROWS", "COLS", "COLOURS", "ROW_RUNS", "COLOUR_RUNS"))})
RESERVED = (frozenset(keyword.kwlist) | frozenset(keyword.softkwlist)
            | frozenset(dir(builtins)) | MODULE_NAMES)


def _clean_once(name: str) -> str:
    if name.isascii() and name.isidentifier() and name[0] != "_":  # the usual case: nothing to do
        return name
    name = unicodedata.normalize("NFKC", name)
    text = "".join(c if ("a" + c).isidentifier() else "_" for c in name)
    if not text or not text[0].isidentifier() or text[0] == "_":
        text = "v" + text
    return unicodedata.normalize("NFKC", text)  # "v" + a combining mark may compose into one letter


def clean(name: str) -> str:
    """A safe Python identifier for any text (not yet made unique), in NFKC form: the identifier
    Python itself will see."""
    text = _clean_once(name)
    while (again := _clean_once(text)) != text:  # stable after a pass or two
        text = again
    if text in RESERVED:
        text += "_"
    return text


class Namer:
    """Gives each key (a symbol, a node) one unique, safe name; unique as Python sees names
    (in NFKC form)."""

    def __init__(self) -> None:
        self.taken: set[str] = set()
        self.names: dict[object, str] = {}
        self._next_temp = 0

    def fresh(self, wanted: str) -> str:
        """`wanted` cleaned, or with a number appended until no other name has it."""
        base = clean(wanted)
        name, k = base, 2
        while unicodedata.normalize("NFKC", name) in self.taken:
            name, k = f"{base}_{k}", k + 1
        self.taken.add(unicodedata.normalize("NFKC", name))
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


# ---- user text outside identifiers ---------------------------------------------------------
def printable(text) -> str:
    """`text` on one line with every control, format or separator character escaped as repr
    would (`\\n`, `\\x1b`, `\\u202e`): safe to print to a terminal, to log, or to quote."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))


def python_string(text: str) -> str:
    """A Python string literal of any text, in ASCII: quotes, backslashes, control characters and
    everything beyond ASCII escaped (so no bidirectional override can reorder the source)."""
    return '"' + text.encode("unicode_escape").decode("ascii").replace('"', '\\"') + '"'


# A comment on line 1 or 2 matching this declares the file's encoding (PEP 263).
_CODING = re.compile(r"coding([:=])")


def comment_text(text) -> str:
    """`text` made safe after a `#`: one line, no control characters, no encoding declaration."""
    return _CODING.sub(r"coding \1", printable(text))


def docstring_text(text) -> str:
    """`text` as source inside a (plain or raw) triple-quoted docstring: one line, with
    backslashes and quotes escaped, so it can neither end the docstring nor start an escape.
    In a plain docstring its value is `printable(text)`."""
    return printable(text).replace("\\", "\\\\").replace('"', '\\"')
