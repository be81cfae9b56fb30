"""Loading and rendering the Jinja2 templates that lay out a generated module.

The templates live in the top-level `templates/` folder of the source tree; a wheel carries them
inside the package as `backpropc/templates/`. Templates hold layout only, no math.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import jinja2

_HERE = Path(__file__).resolve().parent
_SEARCH = (_HERE / "templates", _HERE.parent / "templates")


@cache
def environment() -> jinja2.Environment:
    folder = next((p for p in _SEARCH if (p / "module.py.j2").is_file()), None)
    if folder is None:
        raise FileNotFoundError(f"backpropc templates not found in {' or '.join(map(str, _SEARCH))}")
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(folder)),
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
        auto_reload=False,  # one process renders with one version of the templates
    )


def render(template: str = "module.py.j2", **context) -> str:
    return environment().get_template(template).render(**context)
