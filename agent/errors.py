"""The exceptions of the agent package, and the one class every bad input shares.

Our exception hierarchy::

    Exception
    ├── ValueError
    │   └── InputError ─ what a person wrote is wrong; the message says where and what to do
    │       ├── agent.config.ConfigError ─ the config file
    │       ├── agent.cli.build.OptionError ─ a command-line option (or the config it names)
    │       ├── agent.cli.run.BadInput ─ what stops a batch before it starts
    │       ├── agent.tasks.safe_yaml.YamlLoadError ─ a YAML file: unreadable, unsafe, too big,
    │       │                                        or a located problem in it
    │       ├── agent.tasks.taskfile.TaskFileError ─ a task file: every problem, located
    │       └── tui.commands.UnknownCommandError ─ a slash command that does not exist
    ├── jinja2.TemplateError
    │   └── agent.tasks.templates.TemplateLimitError ─ a task prompt past a rendering bound
    ├── models.BackendError ─ a model failed (see :mod:`models.errors`)
    └── tools.ToolError ─ a tool failed (see :mod:`tools.errors`)

A command line maps :class:`InputError` to exit code 2 (bad input). ``InputError`` is a
:class:`ValueError`, so code that catches ``ValueError`` keeps working. It is defined in
:mod:`models.errors` (which ``models`` may import, and ``agent`` may too) so that the models
package raises the same class (an unknown ``backend_options`` name); this module imports
only that.
"""

from __future__ import annotations

from models.errors import InputError

__all__ = ["InputError"]
