"""A review of ``AgentSettings`` (issue 13, item 2): every setting's precedence across every
pair of layers, values given with their default, bad values and types, and the defaults that
``ask``, ``run`` and ``Agent()`` share."""

from __future__ import annotations

import argparse
import itertools
import math
from pathlib import Path
from typing import Any

import pytest

from agent import Agent, AgentSettings, InputError
from agent.cli.build import agent_from_args, server_options
from agent.cli.config import settings_in_effect
from agent.cli.entry import build_parser
from agent.config import EndpointConfig, load_config
from agent.settings import DEFAULTS, LAYERS, SETTING_NAMES
from models import Sampling, ScriptedBackend
from models.openai.options import ServerOptions

OTHER: dict[str, Any] = {
    "placement": "template",
    "approval": "deny",
    "workspace": "/tmp",
    "max_steps": 7,
    "max_tokens": 500,
    "thinking_budget": 64,
    "timeout": 30.0,
    "temperature": 0.2,
    "seed": 11,
    "sampling": Sampling(temperature=0.1),
    "tool_choice": "required",
    "system": "be brief",
    "max_repeated_calls": 5,
    "max_calls_per_step": 2,
    "tool_output_chars": 1000,
    "tool_settings": {"python": {"cpu_seconds": 3}},
    "transcript": False,
    "sessions_dir": "/tmp/sessions",
    "session_kv": True,
}
"""A value other than the default for each setting."""

PAIRS = list(itertools.combinations(LAYERS[1:], 2))
"""Every (lower, higher) pair of the layers that can be given."""
_KEYWORD = {"file": "file", "task file": "task_file", "command line": "command_line"}


def _keyword(layer: str) -> str:
    return _KEYWORD.get(layer, "arguments")


def test_the_table_covers_every_setting() -> None:
    assert set(OTHER) == set(SETTING_NAMES)
    assert all(OTHER[name] != getattr(DEFAULTS, name) for name in SETTING_NAMES)


@pytest.mark.parametrize("name", SETTING_NAMES)
@pytest.mark.parametrize(("lower", "higher"), PAIRS)
def test_each_setting_the_higher_layer_wins_even_with_the_default(
    name: str, lower: str, higher: str
) -> None:
    """The higher layer wins, whether it gives another value or the default itself, and the
    setting is reported as the higher layer's; alone, each layer is reported as itself."""
    default = getattr(DEFAULTS, name)
    over = AgentSettings.layered(
        **{_keyword(lower): {name: default}, _keyword(higher): {name: OTHER[name]}}
    )
    assert getattr(over.settings, name) == OTHER[name] and over.sources[name] == higher
    back = AgentSettings.layered(
        **{_keyword(lower): {name: OTHER[name]}, _keyword(higher): {name: default}}
    )
    assert getattr(back.settings, name) == default and back.sources[name] == higher
    alone = AgentSettings.layered(**{_keyword(lower): {name: OTHER[name]}})
    assert alone.sources[name] == lower
    assert all(s == "default" for n, s in alone.sources.items() if n != name)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"max_steps": "5"}, r"max_steps must be an int, got '5'"),
        ({"max_steps": 2.5}, r"max_steps must be an int, got 2\.5"),
        ({"max_tokens": True}, r"max_tokens must be an int or None, got True"),
        ({"temperature": "0.5"}, r"temperature must be a number or None, got '0\.5'"),
        ({"timeout": "60"}, r"timeout must be a number or None, got '60'"),
        ({"session_kv": "big"}, r"session_kv must be True, False or a size in bytes, got 'big'"),
        ({"workspace": 3}, r"workspace must be a folder \(str or Path\), got 3"),
    ],
)
def test_a_value_of_the_wrong_type_names_the_setting(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(TypeError, match=message):
        DEFAULTS.replace(**changes)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"tool_output_chars": 0}, r"tool_output_chars must be at least 1, got 0"),
        ({"tool_output_chars": -5}, r"tool_output_chars must be at least 1, got -5"),
        ({"temperature": math.nan}, r"temperature must be 0 or more \(a finite number\), got nan"),
        ({"temperature": math.inf}, r"temperature must be 0 or more \(a finite number\), got inf"),
        ({"timeout": math.inf}, r"timeout must be a finite number of seconds .*got inf"),
        ({"approval": "yes"}, r"approval must be one of .*got 'yes'"),
        ({"approval": {"python": "maybe"}}, r"approval for 'python' must be one of .*'maybe'"),
        ({"max_steps": 0}, r"max_steps must be at least 1, got 0"),
    ],
)
def test_a_value_no_run_could_use_is_bad_input(changes: dict[str, Any], message: str) -> None:
    """Refused when the settings are made (not when a run starts), as an ``InputError``."""
    with pytest.raises(InputError, match=message):
        DEFAULTS.replace(**changes)


def test_settings_that_are_not_settings_are_refused_by_agent() -> None:
    with pytest.raises(
        TypeError, match=r"settings must be an AgentSettings, got \{'max_steps': 3\}"
    ):
        Agent(ScriptedBackend([]), settings={"max_steps": 3})  # type: ignore[arg-type]


def test_unknown_backend_options_are_refused_even_with_a_backend() -> None:
    """A misspelt option is an error, not silently ignored because the model is a backend."""
    with pytest.raises(ValueError, match=r"unknown backend_options \['n_ctxx'\]"):
        Agent(ScriptedBackend([]), backend_options={"n_ctxx": 4096}, transcript=False)


def _args(tmp_path: Path, command: str, *flags: str) -> argparse.Namespace:
    config = tmp_path / "empty.toml"
    config.write_text("", encoding="utf-8")
    words = ["run", str(tmp_path / "t.yaml")] if command == "run" else [command, "q"]
    if command == "chat":
        words = ["chat"]
    return build_parser().parse_args([*words, "--config", str(config), *flags])


@pytest.mark.parametrize("command", ["ask", "chat"])
def test_the_command_line_and_agent_share_the_defaults(tmp_path: Path, command: str) -> None:
    agent = agent_from_args(_args(tmp_path, command))
    try:
        assert agent.settings == Agent(ScriptedBackend([])).settings == DEFAULTS
    finally:
        agent.close()


def test_a_server_mode_not_typed_is_not_given(tmp_path: Path) -> None:
    """``--api-mode`` is given only when typed: its default is ``ServerOptions``'s."""
    assert "api_mode" not in server_options(_args(tmp_path, "ask"))
    assert server_options(_args(tmp_path, "ask", "--api-mode", "chat"))["api_mode"] == "chat"


def test_an_endpoint_left_at_its_defaults_is_server_options_defaults() -> None:
    options = EndpointConfig(base_url="http://h/v1").server_options()
    plain = ServerOptions()
    for name in ("mode", "strict", "connect_timeout", "read_timeout", "trust_env"):
        assert getattr(options, name) == getattr(plain, name), name


@pytest.mark.parametrize(
    ("flag", "name", "value"),
    [("--no-transcript", "transcript", False), ("--session-kv", "session_kv", True)],
)
def test_config_show_shows_every_flag_it_takes(
    tmp_path: Path, flag: str, name: str, value: Any
) -> None:
    args = _args(tmp_path, "ask", flag)
    rows = {n: (v, s) for n, v, s in settings_in_effect(args, load_config(args.config))}
    assert rows[name] == (value, "command line")
    plain = _args(tmp_path, "ask")
    rows = {n: (v, s) for n, v, s in settings_in_effect(plain, load_config(plain.config))}
    assert rows[name] == (getattr(DEFAULTS, name), "default")
    assert rows["max_calls_per_step"] == (DEFAULTS.max_calls_per_step, "default")


def test_a_task_file_null_is_unset_and_the_command_line_wins(tmp_path: Path) -> None:
    from agent.tasks.planning import plan_tasks
    from agent.tasks.taskfile import Settings, load_task_file

    path = tmp_path / "tasks.yaml"
    path.write_text(
        "max_steps: 9\ntasks:\n  - {id: a, prompt: p, max_steps: null}\n"
        "  - {id: b, prompt: p, max_steps: 4}\n  - {id: c, prompt: p, placement: template}\n",
        encoding="utf-8",
    )
    a, b, c = plan_tasks(load_task_file(path), cwd=tmp_path)
    assert (a.max_steps, b.max_steps, c.max_steps) == (9, 4, 9)
    assert c.tool_choice == DEFAULTS.tool_choice and c.max_tokens == DEFAULTS.max_tokens
    plans = plan_tasks(
        load_task_file(path), Settings(max_steps=2, placement="interleaved"), cwd=tmp_path
    )
    assert [(p.max_steps, p.placement) for p in plans] == [(2, "interleaved")] * 3


@pytest.mark.parametrize(
    "text",
    [
        "[limits]\ntimeout = inf\n",
        "temperature = nan\n",
        '[endpoints.e]\nbase_url = "http://h/v1"\nread_timeout = inf\n',
    ],
)
def test_a_config_number_that_is_not_finite_is_refused_at_its_line(
    tmp_path: Path, text: str
) -> None:
    """TOML has ``inf`` and ``nan``; the file's error names the line, not a later run."""
    from agent.config import ConfigError

    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    line = text.count("\n")
    with pytest.raises(ConfigError, match=rf"config\.toml:{line}:\d+: .*finite"):
        load_config(path)
