"""The exception tree of each package, as drawn in its ``errors`` module docstring."""

from __future__ import annotations

import builtins
import importlib
import re
import sys
import types

import pytest

import agent.errors
import models.errors
import tools.errors
from agent import InputError
from agent.cli.build import OptionError
from agent.cli.run import BadInput
from agent.config import ConfigError
from agent.tasks.safe_yaml import YamlLoadError
from agent.tasks.taskfile import TaskFileError
from models import BackendError, ContextOverflowError
from models.scripted import ScriptExhaustedError
from tools import ToolError, UnknownToolError
from tui.commands import UnknownCommandError


@pytest.mark.parametrize(
    "error", [ConfigError, OptionError, BadInput, YamlLoadError, TaskFileError, UnknownCommandError]
)
def test_every_bad_input_is_an_input_error_and_still_a_value_error(error: type) -> None:
    assert issubclass(error, InputError)
    assert issubclass(error, ValueError)


def test_a_context_overflow_is_a_backend_error() -> None:
    assert issubclass(ContextOverflowError, BackendError)
    assert issubclass(ScriptExhaustedError, BackendError)


def test_an_unknown_tool_is_a_tool_error_and_still_a_lookup_error() -> None:
    assert issubclass(UnknownToolError, ToolError)
    assert issubclass(UnknownToolError, LookupError)


def _drawn(module: types.ModuleType) -> list[tuple[int, str]]:
    """(depth, name) of each class in the tree drawn in ``module``'s docstring."""
    doc = module.__doc__ or ""
    tree = doc.split("::", 1)[1].split("\n\n", 2)[1]
    rows = []
    for line in tree.splitlines():
        match = re.match(r"^(\s*[│ ]*[├└]── |\s*)([\w.]+)", line)
        if match and match.group(2):
            rows.append((len(match.group(1)), match.group(2)))
    return rows


def _resolve(name: str, home: types.ModuleType, parent: type | None) -> type:
    """A short name is in ``home``, the builtins, or the module of the class drawn above."""
    if "." not in name:
        places = [home, builtins] + ([sys.modules[parent.__module__]] if parent else [])
        found: type = next(getattr(m, name) for m in places if hasattr(m, name))
        return found
    module_name, _, attr = name.rpartition(".")
    found = getattr(importlib.import_module(module_name), attr)
    return found


@pytest.mark.parametrize("module", [agent.errors, models.errors, tools.errors])
def test_each_drawn_class_exists_and_derives_from_its_parent(module: types.ModuleType) -> None:
    stack: list[tuple[int, type]] = []
    checked = 0
    for depth, name in _drawn(module):
        while stack and stack[-1][0] >= depth:
            stack.pop()
        cls = _resolve(name, module, stack[-1][1] if stack else None)
        assert isinstance(cls, type) and issubclass(cls, BaseException), name
        if stack:
            assert issubclass(cls, stack[-1][1]), f"{name} is drawn under {stack[-1][1]}"
        stack.append((depth, cls))
        checked += 1
    assert checked >= 5
