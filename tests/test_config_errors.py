"""Config-file errors are located (FILE:LINE:COL) with "did you mean", as task-file errors
are; ``config show`` prints the settings in effect and where each comes from."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.cli import main
from agent.cli.common import EXIT_BAD_INPUT, EXIT_OK
from agent.config import ConfigError, load_config
from agent.toml_places import key_places, locate


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('modle = "qwq-32b"\n', ":1:1: modle: unknown key (allowed: "),
        ('# top\nmodel = "x.gguf"\n\n[limits]\nmax_step = 3\n', ":5:1: limits.max_step: unknown"),
        ("[limits]\n  max_steps = 0\n", ":2:3: limits.max_steps: Input should be greater"),
        ('[approvals]\npython = "yes"\n', ":2:1: approvals.python: Input should be"),
        (
            '[[mcp]]\ncommand = "a"\n[[mcp]]\ncmd = "b"\n',
            ":4:1: mcp.1.cmd: unknown key (allowed: command, ",
        ),
        (
            '[endpoints."gpu box"]\nbase_url = "ftp://h"\n',
            ":2:1: endpoints.gpu box.base_url: String should match",
        ),
        ('tools = [\n  "calculater",\n]\n', ":1:1: tools[0]: unknown tool 'calculater'"),
        ("[tool_settings.python]\ncpu_secs = 3\n", ":1:2: tool_settings.python: unknown"),
        ('model = "gpu"\n', ":1:1: model: unknown model 'gpu'"),
        ("tools = [\n  1,\n  2 3]\n", ":3:5: not valid TOML: "),
    ],
)
def test_errors_say_line_and_column(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value).startswith(str(path) + expected), str(caught.value)


@pytest.mark.parametrize(
    ("text", "suggestion"),
    [
        ('modle = "qwq-32b"\n', "did you mean 'model'?"),
        ("[limits]\nmax_step = 3\n", "did you mean 'max_steps'?"),
        ('[endpoints.x]\nbase_url = "http://h/v1"\nmodel_nme = "m"\n', "'model_name'?"),
        ('tools = ["calculater"]\n', "did you mean 'calculator'?"),
    ],
)
def test_a_misspelt_key_or_tool_gets_a_suggestion(
    tmp_path: Path, text: str, suggestion: str
) -> None:
    with pytest.raises(ConfigError, match=suggestion.replace("?", r"\?")):
        load_config(write(tmp_path, text))


def test_keys_inside_multiline_values_are_not_mistaken_for_keys() -> None:
    text = 'system = """\nmodel = "not a key"\n"""\ntools = [\n  "a",\n]\nmodel = "m"\n'
    places = key_places(text)
    assert places[("model",)] == (7, 1) and locate(places, ("tools", 0)) == (4, 1)


def show(args: list[str], capsys: pytest.CaptureFixture[str]) -> dict[str, tuple[str, str]]:
    assert main(["config", "show", *args]) == EXIT_OK
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("config file: ")
    rows = {}
    for line in lines[1:]:
        name, rest = line.split(None, 1)
        value, _, source = rest.rpartition("  (")
        rows[name] = (value.strip(), source.rstrip(")"))
    return rows


def test_show_gives_each_setting_and_its_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("QWQ_AGENT_CONFIG", raising=False)
    path = write(tmp_path, 'model = "smollm2-135m"\ntools = ["calculator", "python"]\n')
    rows = show(["--config", str(path), "--tools", "python", "--max-steps", "7"], capsys)
    assert rows["model"] == ("smollm2-135m", "file")
    assert rows["tools"] == ("python", "command line")
    assert rows["max_steps"] == ("7", "command line")
    assert rows["placement"] == ("interleaved", "default")
    assert rows["approvals"] == ('{"*": "ask"}', "default")


def test_show_says_which_file_counts_and_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "[limits]\nmax_steps = 4\n")
    monkeypatch.setenv("QWQ_AGENT_CONFIG", str(path))
    assert main(["config", "show"]) == EXIT_OK
    out = capsys.readouterr().out
    assert out.startswith(f"config file: {path} (from $QWQ_AGENT_CONFIG)")
    assert "max_steps           4  (file)" in out


def test_show_reports_a_bad_file_with_its_place(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "[limits]\nmax_step = 3\n")
    assert main(["config", "show", "--config", str(path)]) == EXIT_BAD_INPUT
    assert f"{path}:2:1: limits.max_step: unknown key" in capsys.readouterr().err
