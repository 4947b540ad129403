"""``AgentSettings``: each default once, the layers, and where each setting came from."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from agent import Agent, AgentSettings
from agent.cli.build import agent_from_args, layered_settings
from agent.cli.config import settings_in_effect
from agent.cli.entry import build_parser
from agent.config import load_config
from agent.settings import DEFAULTS, SETTING_NAMES
from agent.state import Limits
from models import ScriptedBackend


def test_the_limits_defaults_are_the_loops() -> None:
    """The limits' defaults are defined once, by ``Limits``; the settings reuse them."""
    assert DEFAULTS.limits == Limits()


def test_each_layer_overrides_the_ones_before_and_says_so() -> None:
    layered = AgentSettings.layered(
        file={"max_steps": 7, "placement": "template", "timeout": 60.0},
        task_file={"max_steps": 5, "seed": 1},
        command_line={"max_steps": 3},
        arguments={"seed": 2},
    )
    s = layered.settings
    assert (s.max_steps, s.placement, s.timeout, s.seed) == (3, "template", 60.0, 2)
    assert layered.sources["max_steps"] == "command line"
    assert layered.sources["placement"] == "file"
    assert layered.sources["seed"] == "argument"
    assert layered.sources["tool_choice"] == "default" and s.tool_choice == "auto"
    assert set(layered.sources) == set(SETTING_NAMES)


def test_an_unknown_setting_or_an_impossible_value_is_refused() -> None:
    with pytest.raises(TypeError, match=r"unknown settings \['max_step'\]"):
        AgentSettings.layered(file={"max_step": 3})
    with pytest.raises(ValueError, match="max_steps must be at least 1, got 0"):
        AgentSettings(max_steps=0)
    with pytest.raises(ValueError, match="placement must be 'interleaved' or 'template'"):
        DEFAULTS.replace(placement="inline")
    with pytest.raises(ValueError, match="session_kv must be True, False or a size in bytes"):
        AgentSettings(session_kv=0)


def test_agent_arguments_go_over_the_settings_given(tmp_path: Path) -> None:
    base = AgentSettings(max_steps=4, tool_choice="required", workspace=tmp_path)
    agent = Agent(ScriptedBackend([]), settings=base, max_steps=9, transcript=False)
    assert agent.settings == base.replace(max_steps=9, transcript=False)
    assert agent.limits.max_steps == 9 and agent.tool_choice == "required"
    assert agent.workspace == tmp_path.resolve()
    assert Agent(ScriptedBackend([]), transcript=False).settings == DEFAULTS.replace(
        transcript=False
    )


def args_for(tmp_path: Path, *flags: str) -> argparse.Namespace:
    config = tmp_path / "config.toml"
    if not config.exists():
        config.write_text("[limits]\nmax_steps = 7\nthinking_budget = 100\n", encoding="utf-8")
    return build_parser().parse_args(["ask", "q", "--config", str(config), *flags])


def test_the_command_line_beats_the_file_which_beats_the_defaults(tmp_path: Path) -> None:
    args = args_for(tmp_path, "--max-steps", "3", "--yes", "--workspace", str(tmp_path))
    layered = layered_settings(args, load_config(args.config))
    assert layered.settings.max_steps == 3 and layered.sources["max_steps"] == "command line"
    assert layered.settings.thinking_budget == 100 and layered.sources["thinking_budget"] == "file"
    assert layered.settings.approval == "allow" and layered.sources["approval"] == "command line"
    assert layered.sources["timeout"] == "default"
    agent = agent_from_args(args, max_steps=2)
    assert agent.settings == layered.settings.replace(max_steps=2)
    agent.close()


def test_config_show_names_the_layer_of_each_setting(tmp_path: Path) -> None:
    args = args_for(tmp_path, "--max-tokens", "50")
    rows = {name: (value, source) for name, value, source in settings_in_effect(
        args, load_config(args.config)
    )}  # fmt: skip
    assert rows["max_steps"] == (7, "file")
    assert rows["max_tokens"] == (50, "command line")
    assert rows["timeout"] == ("no limit", "default")
    assert rows["max_repeated_calls"] == (DEFAULTS.max_repeated_calls, "default")
    assert rows["tool_output_chars"] == (DEFAULTS.tool_output_chars, "default")
    assert rows["placement"] == ("interleaved", "default")


def test_a_task_plan_is_the_task_file_layer(tmp_path: Path) -> None:
    from agent.tasks.planning import plan_tasks
    from agent.tasks.taskfile import load_task_file

    path = tmp_path / "tasks.yaml"
    path.write_text(
        "max_steps: 6\ntimeout_s: 30\ntasks:\n  - {id: a, prompt: p, placement: template}\n",
        encoding="utf-8",
    )
    (plan,) = plan_tasks(load_task_file(path), cwd=tmp_path)
    layered = plan.settings()
    s = layered.settings
    assert (s.max_steps, s.timeout, s.placement, s.workspace) == (6, 30, "template", tmp_path)
    assert layered.sources["max_steps"] == "task file" and layered.sources["seed"] == "default"
    assert layered.sources["tool_choice"] == "default"  # filled in by planning, not the file
    assert layered.sources["workspace"] == "default"  # resolved against cwd, still the default


def test_the_agents_settings_stay_the_one_record_of_how_it_runs() -> None:
    """The agent reads its settings from ``agent.settings`` (no copies to drift apart):
    changing the placement, as the TUI's ``/placement`` does, shows in ``settings``."""
    agent = Agent(ScriptedBackend([]), max_steps=4, tool_choice="required", transcript=False)
    assert agent.limits == agent.settings.limits and agent.tool_choice == "required"
    agent.placement = "template"
    assert agent.settings.placement == "template" and agent.placement == "template"
    assert agent.settings.max_steps == 4  # the other settings are kept
