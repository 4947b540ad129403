"""What a tool can do with data, declared with the tool: the three legs of the "lethal trifecta".

A risk level says whether a call needs a person's yes on its own. Capabilities say what a
call means *in combination*: a run that has read private data and can then send model-chosen
data off the machine can leak that data, even when every tool involved is "safe" on its own
(``read_file(".env")`` then ``web_search("<the secret>")``). The approval policy
(:mod:`agent.approval`) uses them; nothing else depends on them.

* ``"reads_private"``: the call can bring private data into the context (a workspace file,
  a folder listing, whatever an MCP server holds).
* ``"sends_out"``: the call sends data the model chose off this machine (a search query, a
  URL, the arguments of an MCP tool).
* ``"untrusted_content"``: the call brings back content written by strangers (web pages,
  search results), which can carry prompt injections.

Defaults when a tool declares none (``capabilities=None``): a ``"safe"`` tool is taken to be a
pure function (no capability), a ``"dangerous"`` one to be able to send data out (its side
effects are unknown; after a private read it needs a yes even under ``approval="allow"``).
A tool that reads private data or talks to the network should say so explicitly.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal, TypeGuard, get_args

Capability = Literal["reads_private", "sends_out", "untrusted_content"]
"""One thing a tool can do with data (see the module docstring)."""

CAPABILITIES: frozenset[str] = frozenset(get_args(Capability))


def check_capabilities(value: Iterable[str] | None, risk: str) -> frozenset[Capability]:
    """The capability set a tool declares, or the default for its ``risk`` when ``value`` is None.

    Raises:
        TypeError: ``value`` is a single string (a set of names is expected).
        ValueError: an unknown capability; the message lists the known ones.
    """
    if value is None:
        return frozenset() if risk == "safe" else frozenset({"sends_out"})
    if isinstance(value, str):
        raise TypeError(
            f"capabilities must be a set of names, got the string {value!r}; "
            f"write capabilities={{{value!r}}}"
        )
    found: set[Capability] = set()
    for item in value:
        if not _is_capability(item):
            raise ValueError(
                f"unknown tool capability {item!r}; known: {', '.join(sorted(CAPABILITIES))}"
            )
        found.add(item)
    return frozenset(found)


def _is_capability(item: object) -> TypeGuard[Capability]:
    return item in CAPABILITIES
