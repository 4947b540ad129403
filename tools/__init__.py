"""Tools: what the model can call, and how a call is checked and run.

- :mod:`tools.base`: the :class:`~tools.base.Tool` protocol and the ``@tool`` decorator (name,
  description and JSON Schema derived from a typed function), argument validation;
  :mod:`tools.errors` the exception tree; :mod:`tools.capabilities` what a tool may touch.
- :mod:`tools.registry`: the tools of one agent, the built-ins by name, per-tool settings.
- The built-ins: :mod:`tools.calculator`, :mod:`tools.python_tool` (RestrictedPython in a
  sandboxed child process: the ``_sandbox_*`` modules, which the child loads by file path
  from this folder, so they stay together here), :mod:`tools.web_search`,
  :mod:`tools.fetch` (with :mod:`tools.netguard`, the SSRF guard, and ``_html``),
  :mod:`tools.files` (confined to the workspace).
- :mod:`tools.mcp`: tools from Model Context Protocol servers.
- :mod:`tools.output` (a result made text, capped and made inert) and :mod:`tools.display`
  (text made safe to show on a terminal).
- What the python sandbox can apply on this machine: ``kernel_layers()`` (the layers a
  throwaway child manages to apply), ``required_layers(mode)`` and ``bwrap_available()``
  (``qwq-agent tools`` shows them).

Other packages import the names below from here. ``tools`` imports ``models`` (for the
QwQ control tokens and secret redaction) and never ``agent`` or ``tui``.
"""

from __future__ import annotations

from tools._sandbox_layers import kernel_layers, required_layers
from tools._sandbox_run import bwrap_available
from tools.base import Risk, Tool, ToolContext, tool
from tools.display import escape_for_display
from tools.errors import ToolArgumentError, ToolCancelledError, ToolError, UnknownToolError
from tools.mcp import McpError, McpServerSpec, close_all, connect_mcp
from tools.output import cap
from tools.registry import BUILTINS, ToolRegistry, ToolSpec, builtin, check_tool_settings

__all__ = [
    "BUILTINS",
    "McpError",
    "McpServerSpec",
    "Risk",
    "Tool",
    "ToolArgumentError",
    "ToolCancelledError",
    "ToolContext",
    "ToolError",
    "ToolRegistry",
    "ToolSpec",
    "UnknownToolError",
    "builtin",
    "bwrap_available",
    "cap",
    "check_tool_settings",
    "close_all",
    "connect_mcp",
    "escape_for_display",
    "kernel_layers",
    "required_layers",
    "tool",
]
