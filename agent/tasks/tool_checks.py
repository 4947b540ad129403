"""The checks of the tool names a task file writes: ``tools:``, ``approve:`` and
``expect: tool_called:``.

Contract: every function reports into a :class:`~agent.tasks.plan_problems.PlanProblems` and
raises nothing.

- :func:`tool_names`: a list of tool names from the layers, each checked against the built-in
  tools (unless MCP servers may bring more), duplicates dropped.
- :func:`check_approved`: each ``approve:`` list of the task file may only name built-in tools
  that ``tools:`` enables where the list applies.
- :func:`check_expected_tools`: ``expect: tool_called:`` may only name tools the task enables.

Names of MCP tools are only known once their servers run: where MCP servers are in force,
the checks that need them are skipped. So are the checks that depend on a wrong ``tools:`` or
``mcp:`` that was left out of the plan (its problem is already reported).
"""

from __future__ import annotations

from agent.settings import DEFAULT_TOOLS
from agent.tasks.layers import CONFIG, Layers, first, pick
from agent.tasks.plan_problems import PlanProblems
from agent.tasks.safe_yaml import DocPath
from agent.tasks.taskfile import Settings, Task, TaskFileSpec
from tools import BUILTINS


def tool_names(
    layers: Layers,
    name: str,
    default: tuple[str, ...],
    problems: PlanProblems,
    *,
    builtins_only: bool = True,
) -> tuple[str, ...]:
    """The tool names of setting ``name`` (``tools`` or ``approve``) from the first of
    ``layers`` that sets it, without duplicates, or ``default`` when none does. With
    ``builtins_only``, each name that is not a built-in tool is a problem."""
    value, origin = pick(layers, name)
    if value is None:
        return default
    for i, tool in enumerate(value):
        if builtins_only and tool not in BUILTINS:
            known = ", ".join(sorted(BUILTINS))
            problems.add(
                origin,
                name,
                f"unknown tool {tool!r}; the built-in tools are: {known}",
                item=i if origin is not None else None,
            )
    return tuple(dict.fromkeys(value))


def check_approved(spec: TaskFileSpec, config_layer: Settings, problems: PlanProblems) -> None:
    """Each ``approve:`` list may only name built-in tools that ``tools:`` enables where
    the list applies: a task's list in that task, the file's list in the tasks that do not
    set their own (at least one of them must enable the tool). Tools come from the task
    file only (its ``tools:``, or the default): narrowing them with ``--tools`` never
    breaks a file, and a list that applies to a task whose tools come from the config
    file (``config_layer``) is not checked (the user's config must not break a task file
    either). Unknown names are :func:`tool_names`' to report.
    """
    file, tasks = spec.data, spec.numbered_tasks()
    if any(tools_dropped(spec, index) for index, _ in tasks):
        return  # a wrong tools: was left out; what it enables is unknown (already reported)

    def from_config(task: Task) -> bool:  # its tools are the config file's
        return task.tools is None and file.tools is None and config_layer.tools is not None

    inheriting = [task for _, task in tasks if task.approve is None]
    if file.approve is not None and inheriting and not any(map(from_config, inheriting)):
        _check_approve_list(file.approve, (), [[task, file] for task in inheriting], problems)
    for index, task in tasks:
        if task.approve is not None and not from_config(task):
            _check_approve_list(task.approve, ("tasks", index), [[task, file]], problems)


def tools_dropped(spec: TaskFileSpec, index: int) -> bool:
    """Whether a wrong ``tools:`` or ``mcp:`` of task ``index`` or of the file was left
    out of the plan (see :attr:`agent.tasks.taskfile.TaskFileSpec.dropped`)."""
    dropped = spec.dropped
    return any(
        path in dropped for name in ("tools", "mcp") for path in ((name,), ("tasks", index, name))
    )


def check_expected_tools(
    spec: TaskFileSpec,
    index: int,
    task: Task,
    layers: Layers,
    tools: tuple[str, ...],
    problems: PlanProblems,
) -> None:
    """``expect: tool_called:`` of task ``index`` may only name ``tools`` (the tools it
    enables): a task that expects a call to a tool it cannot call can never pass. Skipped
    where MCP servers may bring the tool, or where a wrong ``tools:`` was left out."""
    if task.expect is None or task.expect.tool_called is None:
        return
    mcp, _ = pick(layers, "mcp")
    if mcp or tools_dropped(spec, index):
        return
    value, origin = pick(layers, "tools")
    source = ""
    if value is None:
        source = " (the default: tools: is not set)"
    elif origin is None:
        source = " (from --tools)"
    elif origin == CONFIG:
        source = f" (from the config file {problems.config_file})"
    enabled = (", ".join(t for t in tools if t in BUILTINS) or "none") + source
    named = task.expect.tool_called
    for i, name in enumerate([named] if isinstance(named, str) else named):
        if name not in tools:
            problems.add(
                ("tasks", index, "expect"),
                "tool_called",
                f"{name!r} is expected to be called but is not enabled for this task, so "
                f"the task can never pass; the enabled tools are: {enabled}. Add "
                f"{name!r} to tools: or remove it from tool_called:",
                item=None if isinstance(named, str) else i,
            )


def _check_approve_list(
    approve: list[str], origin: DocPath, users: list[list[Settings]], problems: PlanProblems
) -> None:
    """Check ``approve`` against the tools of ``users`` (the layers of each task that it
    applies to, the task first). Skipped when MCP servers are in force for one of them:
    their tools, which may be approved, are only known once the servers run."""
    if any(first(layers, "mcp") for layers in users):
        return
    enabled: dict[str, None] = {}
    defaulted = 0
    for layers in users:
        tools = first(layers, "tools")
        defaulted += tools is None
        enabled.update(dict.fromkeys(DEFAULT_TOOLS if tools is None else tools))
    listed = ", ".join(enabled) or "none (tools: is empty)"
    if defaulted == len(users):
        listed += " (the default: tools: is not set)"
    for i, name in enumerate(approve):
        if name in BUILTINS and name not in enabled:
            problems.add(
                origin,
                "approve",
                f"{name!r} is approved but not enabled, so it can never run; the enabled "
                f"tools are: {listed}. Add {name!r} to tools: or remove it from approve:",
                item=i,
            )
