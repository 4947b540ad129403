"""``qwq-agent ask``: the headless one-shot, through the real CLI entry point."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from agent.cli import EXIT_BAD_INPUT, EXIT_OK, main

ROOT = Path(__file__).resolve().parents[1]
ADD = f"scripted:{ROOT / 'examples' / 'scripted' / 'add.yaml'}"


@pytest.fixture(autouse=True)
def _no_user_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv("QWQ_AGENT_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)


def test_the_scripted_example_shows_thinking_call_and_answer(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["ask", "--model", ADD, "What is 2 + 3?"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "I will check with the calculator" in out
    assert '→ calculator({"expression": "2 + 3"})' in out and "← 5" in out
    assert out.rstrip().endswith("2 + 3 = **5**.")


def test_json_output(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ask", "--json", "--no-transcript", "--model", ADD, "What is 2 + 3?"]) == EXIT_OK
    payload = json.loads(capsys.readouterr().out)
    assert payload["answer"] == "2 + 3 = **5**." and payload["finish_reason"] == "completed"
    assert [(c["name"], c["output"]) for c in payload["tool_calls"]] == [("calculator", "5")]
    assert payload["transcript_path"] is None and payload["steps"] == 2


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--max-tokens", "0"], "max_tokens must be at least 1"),
        (["--timeout", "-1"], "timeout must be more than 0"),
        (["--temperature", "-5"], "temperature must be 0 or more"),
        (["--workspace", "no-such-folder"], "the workspace folder 'no-such-folder' does not exist"),
    ],
)
def test_impossible_options_are_refused_before_the_run(
    capsys: pytest.CaptureFixture[str], flags: list[str], message: str
) -> None:
    assert main(["ask", "--model", ADD, *flags, "hi"]) == EXIT_BAD_INPUT
    captured = capsys.readouterr()
    assert message in captured.err and captured.out == ""


def test_without_model_or_config_the_default_is_qwq_32b(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    assert main(["ask", "hi"]) == EXIT_BAD_INPUT
    assert "qwq-32b-q4_k_m.gguf is not in the local cache" in capsys.readouterr().err


def test_the_approval_question_shows_the_arguments_on_lines(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from agent.cli_ask import _ask_person
    from agent.events import ToolCall

    monkeypatch.setattr("builtins.input", lambda prompt: "y")
    call = ToolCall("c1", "write_file", {"path": "a.txt", "content": "x\x1b[2J"}, "answer")
    assert _ask_person(call) is True
    shown = capsys.readouterr().err
    assert '\n  "path": "a.txt",\n' in shown  # real line breaks, not \\n
    assert "\x1b" not in shown and "\\u001b" in shown  # the escape sequence is made visible


def test_a_reader_that_leaves_early_is_not_an_error(tmp_path: Path) -> None:
    command = [
        sys.executable, "-m", "agent.cli", "ask", "--json", "--no-transcript",
        "--model", ADD, "What is 2 + 3?",
    ]  # fmt: skip
    reader = subprocess.Popen(["true"], stdin=subprocess.PIPE)  # reads nothing, exits
    reader.wait(timeout=30)
    assert reader.stdin is not None
    try:
        writer = subprocess.run(
            command, cwd=ROOT, stdout=reader.stdin, stderr=subprocess.PIPE, timeout=120, check=False
        )
    finally:
        reader.stdin.close()
    assert writer.returncode == EXIT_OK, writer.stderr.decode()
    assert b"Traceback" not in writer.stderr and b"BrokenPipe" not in writer.stderr


def test_an_unknown_command_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bogus"]) == EXIT_BAD_INPUT
    assert "unknown command 'bogus'; the commands are ask, chat" in capsys.readouterr().err


def test_the_tui_refuses_to_start_without_a_terminal() -> None:
    """Without this it would wait forever on a pipe (``qwq-agent < /dev/null``)."""
    done = subprocess.run(
        [sys.executable, "-m", "agent.cli", "--model", ADD],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == EXIT_BAD_INPUT
    assert b"the terminal UI needs a terminal" in done.stderr


def test_models_list_takes_no_name(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "list", "extra"]) == EXIT_BAD_INPUT
    assert "`models list` takes no name" in capsys.readouterr().err


def test_escape_sequences_in_server_errors_do_not_reach_the_terminal(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from tests.server.fake_openai import FakeServer, Reply

    with FakeServer() as server:
        hostile = "denied\x1b[2J\x1b]52;c;ZXZpbA==\x07"
        server.push(Reply(status=400, body=json.dumps({"error": {"message": hostile}})))
        code = main(["ask", "--no-transcript", "--model", server.url, "hi"])
    err = capsys.readouterr().err
    assert code != EXIT_OK and "denied" in err
    assert "\x1b" not in err and "\x07" not in err
