"""The prompts of a task: its system prompt from the layers, and its prompt rendered.

Contract: nothing here raises for a wrong value; each problem goes into a
:class:`~agent.tasks.plan_problems.PlanProblems`, located at the key that set the value, and
the prompt is ``None``.

- :func:`system_prompt`: ``system`` and ``system_file`` are one setting; the first layer that
  sets either wins, and ``system_file`` is read relative to that layer's folder.
- :class:`TaskPrompts`: every task prompt (inline or from ``prompt_file``) is a Jinja2
  template, rendered with the task's ``inputs`` (or none) in the bounded sandbox of
  :mod:`agent.tasks.templates`; a prompt that does not render, or renders empty, is a problem
  that says which line and how to keep literal braces (:data:`LITERAL_BRACES`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2 import TemplateError, TemplateSyntaxError, UndefinedError

from agent.tasks.layers import Layers, Origin, folder_of
from agent.tasks.plan_problems import PlanProblems
from agent.tasks.safe_yaml import DocPath, YamlLoadError
from agent.tasks.taskfile import Task, read_text_file
from agent.tasks.templates import BoundedEnvironment, TemplateLimitError

LITERAL_BRACES = "write {% raw %}…{% endraw %} around text that must keep its braces"
"""How a prompt keeps literal ``{{``, ``{%`` or ``{#``: every prompt is a Jinja2 template."""


def system_prompt(
    layers: Layers, problems: PlanProblems, *, cwd: Path, task_folder: Path
) -> tuple[str | None, Origin]:
    """The system prompt and where it was set (``None``: nowhere, or unreadable). A
    ``system_file`` is read relative to :func:`~agent.tasks.layers.folder_of` its layer."""
    for settings, origin in layers:
        if settings.system is not None:
            return settings.system, origin
        if settings.system_file is not None:
            try:
                folder = folder_of(origin, cwd, task_folder)
                return read_text_file(folder, settings.system_file), origin
            except YamlLoadError as exc:
                problems.add(origin, "system_file", str(exc))
                return None, origin
    return None, None


class TaskPrompts:
    """Renders the prompts of the tasks of one file (whose folder is ``task_folder``), with
    one Jinja2 environment for all of them."""

    def __init__(self, problems: PlanProblems, task_folder: Path) -> None:
        self.problems = problems
        self.task_folder = task_folder
        self._jinja: BoundedEnvironment | None = None

    def prompt(self, index: int, task: Task) -> str | None:
        """The prompt of task ``index`` (inline or read from ``prompt_file``), always rendered
        as a Jinja2 template: with the task's ``inputs``, or with none."""
        origin: DocPath = ("tasks", index)
        if task.prompt_file is not None:
            field, what = "prompt_file", task.prompt_file
            try:
                text = read_text_file(self.task_folder, task.prompt_file)
            except YamlLoadError as exc:
                self.problems.add(origin, field, str(exc))
                return None
        else:
            field, what, text = "prompt", "the prompt", task.prompt or ""
        rendered = self._render(origin, field, what, text, task.inputs or {})
        if rendered is None:
            return None
        if not rendered.strip():
            self.problems.add(origin, field, "the prompt is empty")
            return None
        return rendered

    def _render(
        self, origin: DocPath, field: str, what: str, text: str, inputs: dict[str, Any]
    ) -> str | None:
        """``text`` rendered in a bounded sandbox (:mod:`agent.tasks.templates`) with strict
        undefined names; ``None`` (and a problem located at ``field``, naming the line of
        ``what``) when it cannot be, whatever the reason."""
        try:
            return self._environment().render_bounded(text, inputs)
        except TemplateSyntaxError as exc:
            self.problems.add(
                origin,
                field,
                f"line {exc.lineno} of {what} is not a valid Jinja2 template: "
                f"{(exc.message or 'a syntax error').rstrip('.')} (every prompt is a template; "
                f"{LITERAL_BRACES})",
            )
        except TemplateLimitError as exc:
            line = _template_line(exc)
            at = f" (line {line} of {what})" if line is not None else ""
            self.problems.add(origin, field, f"the prompt cannot be rendered: {exc}{at}")
        except UndefinedError as exc:
            line = _template_line(exc)
            at = f" (line {line} of {what})" if line is not None else ""
            given = ", ".join(sorted(inputs)) or "none"
            self.problems.add(
                origin,
                field,
                f"the prompt cannot be rendered: {exc}{at}; every {{{{ name }}}} it uses must be "
                f"given under inputs: (given: {given}), or {LITERAL_BRACES}",
            )
        except (TemplateError, Exception) as exc:  # the template's own code failed
            line = _template_line(exc)
            at = f" (line {line} of {what})" if line is not None else ""
            self.problems.add(
                origin,
                field,
                f"the prompt cannot be rendered: {type(exc).__name__}: {exc}{at}; fix the "
                f"template (every prompt is a template; {LITERAL_BRACES})",
            )
        return None

    def _environment(self) -> BoundedEnvironment:
        """The one Jinja2 environment of the plan (see :mod:`agent.tasks.templates`)."""
        if self._jinja is None:
            self._jinja = BoundedEnvironment()
        return self._jinja


def _template_line(exc: BaseException) -> int | None:
    """The line of the template being rendered when ``exc`` was raised, when Jinja2 put it in
    the traceback (it rewrites template frames to carry the template's own line numbers)."""
    line = None
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return line
