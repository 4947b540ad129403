"""``qwq-agent ask``: the headless one-shot, through the real CLI entry point."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from agent.cli import main
from agent.cli.common import EXIT_BAD_INPUT, EXIT_OK

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
        (["--max-tokens", "0"], "--max-tokens: must be at least 1"),
        (["--timeout", "-1"], "--timeout: must be more than 0"),
        (["--temperature", "-5"], "--temperature: must be 0 or more"),
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
    import huggingface_hub.constants  # noqa: F401  (it reads HF_HUB_OFFLINE once, at import)

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    assert main(["ask", "hi"]) == EXIT_BAD_INPUT
    assert "qwq-32b-q4_k_m.gguf is not in the local cache" in capsys.readouterr().err


def test_the_approval_question_shows_the_arguments_on_lines(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from agent.cli.ask import _ask_person
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


def _descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (children of children too), from /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads the process tree from /proc")
def test_ctrl_c_stops_the_running_tool_at_once_and_leaves_no_process(tmp_path: Path) -> None:
    """Ctrl+C cancels the agent and kills the tool's process group; it does not wait for
    the tool (a 120 s sleep here) to end."""
    import os
    import signal
    import time

    from tests.conftest import HANG_BOUND

    sleep = 'import time\\ntime.sleep(120)\\nprint(\\"woke\\")'
    (tmp_path / "sleep.yaml").write_text(
        "turns:\n"
        "  - |-\n"
        "    I will wait.\n"
        "    <tool_call>\n"
        f'    {{"name": "python", "arguments": {{"code": "{sleep}"}}}}\n'
        "    </tool_call>\n"
        "  - |-\n"
        "    </think>\n\n    Done.\n",
        encoding="utf-8",
    )
    config = tmp_path / "config.toml"
    config.write_text("[tool_settings.python]\nwall_seconds = 300\n", encoding="utf-8")
    out = tmp_path / "out.txt"
    command = [
        sys.executable, "-m", "agent.cli", "ask", "--no-transcript", "--yes",
        "--config", str(config), "--tools", "python",
        "--model", f"scripted:{tmp_path / 'sleep.yaml'}", "wait",
    ]  # fmt: skip
    with out.open("wb") as stdout, (tmp_path / "err.txt").open("wb") as stderr:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    try:
        deadline = time.monotonic() + 60
        children: set[int] = set()
        while not children:  # the tool has started when its process is there
            assert time.monotonic() < deadline, (tmp_path / "err.txt").read_text()
            assert process.poll() is None, (tmp_path / "err.txt").read_text()
            if "→ python(" in out.read_text(encoding="utf-8"):
                children = _descendants(process.pid)
            time.sleep(0.05)
        time.sleep(0.5)  # let the sandbox child reach its sleep
        children = _descendants(process.pid)
        process.send_signal(signal.SIGINT)
        code = process.wait(timeout=HANG_BOUND)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    err = (tmp_path / "err.txt").read_text(encoding="utf-8")
    assert code == 130, err
    assert "interrupted" in err and "← woke" not in out.read_text(encoding="utf-8")
    assert children and not [pid for pid in children if _alive(pid)]


def test_a_dash_reads_the_prompt_from_stdin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import io

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setattr("sys.stdin", io.StringIO("What is 2 + 3, from a pipe?\n"))
    assert main(["ask", "--json", "--model", ADD, "-"]) == EXIT_OK
    payload = json.loads(capsys.readouterr().out)
    transcript = Path(payload["transcript_path"]).read_text(encoding="utf-8")
    assert "What is 2 + 3, from a pipe?" in transcript
    assert '"-"' not in transcript


@pytest.mark.parametrize(("argument", "stdin"), [("-", ""), ("-", " \n\n"), ("  ", "")])
def test_an_empty_prompt_is_refused(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argument: str,
    stdin: str,
) -> None:
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    assert main(["ask", "--no-transcript", "--model", ADD, argument]) == EXIT_BAD_INPUT
    captured = capsys.readouterr()
    assert "nothing to ask" in captured.err and captured.out == ""


@pytest.fixture
def _empty_hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """No model in the cache, hub access allowed, and ``fetch`` recorded instead of run (no
    test may start a real 20 GB download)."""
    from models.base import BackendError

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub"))
    fetched: list[str] = []

    def fetch(repo_id: str, filename: str, **options: object) -> Path:
        fetched.append(filename)
        raise BackendError("the download would start here")

    monkeypatch.setattr("models._hub.fetch", fetch)
    return fetched


def test_without_a_terminal_a_large_download_is_refused_with_the_pull_command(
    capsys: pytest.CaptureFixture[str], _empty_hub_cache: list[str]
) -> None:
    assert main(["ask", "--no-transcript", "hi"]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "qwq-32b is not downloaded yet: qwq-32b-q4_k_m.gguf" in err and "19.9 GB" in err
    assert "qwq-agent models pull qwq-32b" in err
    assert _empty_hub_cache == []


@pytest.mark.parametrize(("answer", "downloads"), [("y", True), ("n", False), ("", False)])
def test_on_a_terminal_the_person_is_asked_before_a_large_download(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    _empty_hub_cache: list[str],
    answer: str,
    downloads: bool,
) -> None:
    asked: list[str] = []
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    monkeypatch.setattr("builtins.input", lambda prompt: asked.append(prompt) or answer)
    assert main(["ask", "--no-transcript", "--model", "qwq-32b:Q2_K", "hi"]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert asked == ["Download it now? [y/N] "] and "about 12.3 GB" in err
    assert _empty_hub_cache == (["qwq-32b-q2_k.gguf"] if downloads else [])
    if not downloads:
        assert "was not downloaded; download it later with `qwq-agent models pull" in err


def test_yes_downloads_without_asking(
    monkeypatch: pytest.MonkeyPatch, _empty_hub_cache: list[str]
) -> None:
    monkeypatch.setattr("builtins.input", lambda prompt: pytest.fail("asked"))
    assert main(["ask", "--yes", "--no-transcript", "hi"]) == EXIT_BAD_INPUT
    assert _empty_hub_cache == ["qwq-32b-q4_k_m.gguf"]


def test_session_kv_is_an_option_of_the_agent(tmp_path: Path) -> None:
    from agent.cli.build import agent_from_args
    from agent.cli.entry import build_parser

    args = build_parser().parse_args(["ask", "--model", ADD, "--session-kv", "x"])
    with agent_from_args(args) as agent:
        assert agent._session_kv is not None
    args = build_parser().parse_args(["ask", "--model", ADD, "x"])
    with agent_from_args(args) as agent:
        assert agent._session_kv is None
