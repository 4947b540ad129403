"""A flag with a value no run could use is refused by every command that takes it, naming the
flag as typed (``--ctx: must be at least 16 …, got 5``), never the setting behind it
(``n_ctx``), with exit code 2 before anything runs; ``config show`` lists every flag it takes;
an unknown ``backend_options`` key is an :class:`agent.InputError`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest

from agent.cli import main
from agent.cli.common import EXIT_BAD_INPUT, EXIT_OK, add_agent_options, agent_option_flags

ROOT = Path(__file__).resolve().parents[1]
ADD = f"scripted:{ROOT / 'examples' / 'scripted' / 'add.yaml'}"

BAD_FLAGS = [
    (["--ctx", "5"], "--ctx: must be at least 16 tokens", "n_ctx"),
    (["--n-gpu-layers", "-5"], "--n-gpu-layers: must be -1 (all), 0 or more", "n_gpu_layers"),
    (["--temperature", "nan"], "--temperature: must be 0 or more (a finite number), got nan", None),
    (["--timeout", "inf"], "--timeout: must be a finite number of seconds", None),
    (["--timeout", "0"], "--timeout: must be more than 0 seconds (or leave --timeout out)", None),
    (["--max-steps", "0"], "--max-steps: must be at least 1, got 0", "max_steps"),
    (["--max-tokens", "0"], "--max-tokens: must be at least 1", "max_tokens"),
    (["--thinking-budget", "-1"], "--thinking-budget: must be 0 or more tokens", "thinking_budget"),
    (["--header", "bad"], "--header: must look like NAME:VALUE", None),
    (["--header", ":v"], "--header: must look like NAME:VALUE", None),
]
"""Flags, what the error must say, and the setting name it must not say (``None``: the
setting is named like the flag's words, e.g. ``temperature``)."""


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Run in ``tmp_path``; ``web`` records its options instead of serving."""
    monkeypatch.chdir(tmp_path)
    served: list[Any] = []

    def serve(args: Any) -> int:
        served.append(args)
        return EXIT_OK

    monkeypatch.setattr("agent.cli.web.run_web", serve)
    return served


def _command(name: str, tmp_path: Path) -> list[str]:
    if name == "run":
        tasks = tmp_path / "tasks.yaml"
        tasks.write_text(f"model: '{ADD}'\ntasks: [{{id: a, prompt: p}}]\n", encoding="utf-8")
        return ["run", str(tasks), "--out", str(tmp_path / "out.jsonl")]
    return {
        "ask": ["ask", "--model", ADD, "What is 2 + 3?"],
        "chat": ["chat", "--model", ADD],
        "web": ["web", "--port", "0", "--model", ADD],
        "config": ["config", "show"],
    }[name]


@pytest.mark.parametrize("command", ["ask", "chat", "web", "run", "config"])
@pytest.mark.parametrize(("flags", "says", "not_said"), BAD_FLAGS)
def test_every_command_names_the_flag_as_typed(
    command: str,
    flags: list[str],
    says: str,
    not_said: str | None,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    _in_tmp: list[Any],
) -> None:
    assert main([*_command(command, tmp_path), *flags]) == EXIT_BAD_INPUT
    captured = capsys.readouterr()
    assert says in captured.err, captured.err
    assert repr(flags[1]) in captured.err or f"got {flags[1]}" in captured.err  # the value
    if not_said is not None:
        assert not_said not in captured.err
    assert "Traceback" not in captured.err and "None" not in captured.err
    assert captured.out == ""  # nothing ran, nothing was shown as in effect
    assert _in_tmp == [] and not (tmp_path / "out.jsonl").exists()


@pytest.mark.parametrize("command", ["ask", "run"])
def test_good_values_of_the_checked_flags_still_run(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flags = ["--ctx", "4096", "--n-gpu-layers", "-1", "--header", "X-Team: blue", "--timeout", "60"]
    flags += ["--temperature", "0", "--max-steps", "3", "--thinking-budget", "0", "--no-transcript"]
    assert main([*_command(command, tmp_path), *flags]) == EXIT_OK, capsys.readouterr().err


def test_the_flags_are_those_the_parser_defines() -> None:
    parser = argparse.ArgumentParser()
    flags = add_agent_options(parser)
    assert agent_option_flags() == flags
    assert flags["ctx"] == "--ctx" and flags["n_gpu_layers"] == "--n-gpu-layers"
    assert flags["header"] == "--header" and flags["max_steps"] == "--max-steps"
    for dest, flag in flags.items():  # each flag sets its destination
        action = next(a for a in parser._actions if a.dest == dest)
        assert flag in action.option_strings


def _shown(capsys: pytest.CaptureFixture[str], *flags: str) -> dict[str, tuple[str, str]]:
    """``config show``'s rows: name -> (value, source)."""
    assert main(["config", "show", *flags]) == EXIT_OK
    rows = {}
    for line in capsys.readouterr().out.splitlines()[1:]:
        name, _, rest = line.partition(" ")
        value, _, source = rest.strip().rpartition("  (")
        rows[name] = (value, source.removesuffix(")"))
    return rows


def test_config_show_lists_the_server_and_lookup_flags_with_their_source(
    capsys: pytest.CaptureFixture[str],
) -> None:
    given = _shown(
        capsys,
        *("--api-mode", "chat", "--model-name", "m1", "--no-lookup", "--api-strict"),
        *("--header", "X-Key: sekrit", "--header", "X-Team: blue", "--api-key-env", "MY_KEY"),
    )
    assert given["api_mode"] == ("chat", "command line")
    assert given["model_name"] == ("m1", "command line")
    assert given["lookup"] == ("False", "command line")
    assert given["api_strict"] == ("True", "command line")
    assert given["api_key_env"] == ("MY_KEY", "command line")
    headers, source = given["headers"]
    assert "X-Key" in headers and "X-Team" in headers and source == "command line"
    assert "sekrit" not in headers and "blue" not in headers
    plain = _shown(capsys)
    assert plain["api_mode"] == ("completions", "default")
    assert plain["lookup"] == ("True", "default")
    assert plain["headers"] == ("none", "default")
    assert plain["model_name"] == ("the server's first model", "default")
    assert plain["api_strict"] == ("False", "default")


def test_an_unknown_backend_option_is_an_input_error_with_the_closest_name() -> None:
    import models.errors
    from agent import InputError
    from models.options import BackendOptions

    assert InputError is models.errors.InputError and issubclass(InputError, ValueError)
    with pytest.raises(InputError, match=r"unknown backend_options \['n_ctxx'\]; known: .*n_ctx"):
        BackendOptions.from_mapping({"n_ctxx": 1})
    with pytest.raises(InputError, match=r"did you mean 'n_ctx'\?$"):
        BackendOptions().merged({"n_ctxx": 1})
    with pytest.raises(InputError, match=r"did you mean 'api_mode' for 'api_mod'\?$"):
        BackendOptions.from_mapping({"api_mod": "chat", "zzzzzz": 1})
    with pytest.raises(InputError, match=r"\[1, 'n_ctxx'\]"):  # keys of any type
        BackendOptions.from_mapping({1: 2, "n_ctxx": 1})  # type: ignore[dict-item]
    with pytest.raises(InputError, match="must be a mapping"):
        BackendOptions.from_mapping([("n_ctx", 1)])  # type: ignore[arg-type]


def test_an_agent_refuses_an_unknown_backend_option_as_input_and_a_bad_value_as_backend() -> None:
    from agent import Agent, BackendError, InputError
    from models.scripted import ScriptedBackend

    with pytest.raises(InputError, match=r"'n_ctxx'.*did you mean 'n_ctx'\?"):
        Agent(ScriptedBackend([]), backend_options={"n_ctxx": 1}, transcript=False)
    with pytest.raises(BackendError, match="n_ctx must be at least 16"):  # the documented rule
        Agent(ScriptedBackend([]), backend_options={"n_ctx": 5}, transcript=False)
