"""The problems one planning pass finds, each located where its value was written.

Contract: :class:`PlanProblems` starts with the schema problems of the task file and collects
what planning adds (:meth:`PlanProblems.add`), each located by the :data:`Origin
<agent.tasks.layers.Origin>` of the value: the command-line option (``--timeout: …``), the
config file's ``FILE:LINE:COL: key`` (``limits.timeout: …``), or the task file's
``FILE:LINE:COL: tasks[0].model: …``. A problem already collected, word for word, is not
added again (a file default breaks every task the same way). :meth:`PlanProblems.in_order`
lists them the command line first, then the config file, then the task file, each by line.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agent.tasks.layers import CONFIG, Origin, config_file_name, config_key, config_location
from agent.tasks.problems import in_file_order
from agent.tasks.safe_yaml import DocPath, YamlLoadError, dotted
from agent.tasks.taskfile import TaskFileSpec

if TYPE_CHECKING:
    from agent.config import Config

_OPTION_NAMES = {"timeout_s": "--timeout", "ctx": "--ctx"}
"""Settings whose command-line option is not ``--`` and their name with dashes."""


class PlanProblems:
    """The located problems of planning ``spec`` with ``config`` (``None``: no config file)."""

    def __init__(self, spec: TaskFileSpec, config: Config | None) -> None:
        self.spec = spec
        self.config = config
        self.problems: list[YamlLoadError] = []
        """Every problem so far, in the order found."""
        self._seen: set[str] = set()
        for problem in spec.problems:  # the schema's, reported in the same pass
            self._seen.add(str(problem))
            self.problems.append(problem)

    def __len__(self) -> int:
        return len(self.problems)

    @property
    def config_file(self) -> str:
        """The config file as problems name it (:func:`agent.tasks.layers.config_file_name`)."""
        return config_file_name(self.config)

    def add(self, origin: Origin, name: str, message: str, item: int | None = None) -> None:
        """Collect ``message`` about setting ``name`` (its list item ``item``, if given) as set
        at ``origin``, unless the same problem is already collected."""
        if origin is None:
            option = _OPTION_NAMES.get(name, "--" + name.replace("_", "-"))
            problem = YamlLoadError("command line", f"{option}: {message}")
        elif origin == CONFIG:
            key = config_key(name)
            at = config_location(self.config, key)
            index = f"[{item}]" if item is not None else ""
            problem = YamlLoadError(self.config_file, f"{'.'.join(key)}{index}: {message}", at)
        else:
            path: DocPath = (*origin, name) if item is None else (*origin, name, item)
            where = self.spec.source.locate(path)
            problem = YamlLoadError(self.spec.path, f"{dotted(path)}: {message}", where)
        if str(problem) not in self._seen:
            self._seen.add(str(problem))
            self.problems.append(problem)

    def in_order(self) -> list[YamlLoadError]:
        """The problems, the command line's first, then the config file's, then the task
        file's, each group by place in its file (ties keep the order found)."""
        task_file = str(self.spec.path)

        def order(problem: YamlLoadError) -> tuple[int, int, int]:
            rank = 0 if problem.path == "command line" else 2 if problem.path == task_file else 1
            return (rank, *in_file_order(problem))

        return sorted(self.problems, key=order)
