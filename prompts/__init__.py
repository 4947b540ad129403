"""Prompt text, kept as data files beside this module and rendered with Jinja2 (strict).

``render("system", placement="interleaved", ...)`` reads ``system.md.j2``; an undefined
variable is an error, never an empty string.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from typing import Any


@lru_cache(maxsize=32)
def load(name: str) -> str:
    """The text of prompt file ``name`` (``.md.j2`` is tried, then ``name`` as given).

    Raises:
        FileNotFoundError: no such prompt; the message lists the available ones.
    """
    root = resources.files(__name__)
    for candidate in (f"{name}.md.j2", name):
        file = root.joinpath(candidate)
        if file.is_file():
            return file.read_text(encoding="utf-8")
    available = sorted(p.name for p in root.iterdir() if p.name.endswith(".j2"))
    raise FileNotFoundError(f"no prompt named {name!r}; available: {available}")


def render(name: str, **variables: Any) -> str:
    """Render prompt ``name`` with ``variables`` (Jinja2, ``StrictUndefined``)."""
    import jinja2

    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=False)
    return env.from_string(load(name)).render(**variables).strip()
