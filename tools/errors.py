"""The exceptions of the tools package.

Our exception hierarchy::

    Exception
    ├── ToolError ─ a tool failed; the message is shown to the model, the run goes on
    │   ├── ToolArgumentError ─ the arguments do not match the tool's schema
    │   ├── ToolCancelledError ─ the run was cancelled while the tool ran
    │   ├── UnknownToolError (also a LookupError) ─ no tool has that name
    │   ├── tools.calculator.CalculatorError ─ an expression that cannot be evaluated
    │   ├── tools.fetch.FetchError ─ a page that cannot be fetched
    │   ├── tools.netguard.BlockedAddressError ─ an address that is not public
    │   ├── tools.files.FileToolError ─ a file operation refused or failed
    │   ├── tools.web_search.SearchError ─ a search that failed
    │   └── tools.python_tool.PythonSandboxError ─ the code did not run to a result
    │       ├── SourceTooLargeError, PythonCompileError, PythonRuntimeError
    │       ├── PythonTimeoutError
    │       │   └── PythonCpuLimitError
    │       └── PythonMemoryError, PythonCrashError, PythonOutputLimitError,
    │           PythonResultError, SandboxUnavailableError, SandboxBusyError
    └── tools.mcp.McpError ─ an MCP server could not be started, connected to, or listed

A tool raises :class:`ToolError` (or a subclass) for an expected failure; any other
exception is reported to the model too, with its type name. This module imports nothing.
"""

from __future__ import annotations


class ToolError(Exception):
    """A tool failed in a way the model should hear about; the message is shown to the model.

    Tools raise this (or a subclass) for expected failures: a refused path, a timeout, a
    blocked address. Any other exception is reported too, with its type name.
    """


class ToolArgumentError(ToolError):
    """The arguments do not match the tool's schema."""


class ToolCancelledError(ToolError):
    """The run was cancelled while the tool ran."""


class UnknownToolError(ToolError, LookupError):
    """A name that is neither a built-in nor a registered tool (a :class:`LookupError` too,
    for callers that catch that)."""
