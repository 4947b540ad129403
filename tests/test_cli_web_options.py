"""``qwq-agent web`` refuses bad options before it binds a port or serves a page: each tab's
chat process would otherwise fail after the page is served, leaving the tab blank."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agent.cli import main
from agent.cli.common import EXIT_BAD_INPUT

ROOT = Path(__file__).resolve().parents[1]
ADD = f"scripted:{ROOT / 'examples' / 'scripted' / 'add.yaml'}"


@pytest.fixture(autouse=True)
def _nothing_is_served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv("QWQ_AGENT_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    served: list[Any] = []

    def serve(args: Any) -> int:
        served.append(args)
        return 0

    monkeypatch.setattr("agent.cli.web.run_web", serve)
    return served


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--workspace", "no-such-folder"], "the workspace folder 'no-such-folder' does not exist"),
        (["--model", "no-such-model"], "unknown model 'no-such-model'"),
        (["--model", "scripted:missing.yaml"], "no script at"),
        (["--model", "qwq-32b:Q9_X"], "has no quantization 'Q9_X'"),
        (["--tools", "calculator,nope"], "nope"),
        (["--max-steps", "0"], "--max-steps: must be at least 1, got 0"),
        (["--port", "70000"], "--port: must be 0-65535"),
        (["--config", "missing.toml"], "no config file at"),
    ],
)
def test_bad_options_are_refused_before_serving(
    flags: list[str],
    message: str,
    capsys: pytest.CaptureFixture[str],
    _nothing_is_served: list[Any],
) -> None:
    argv = ["web", "--port", "0", *flags]
    if "--model" not in flags:
        argv += ["--model", ADD]
    assert main(argv) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert err.startswith("qwq-agent web: ") and message in err
    assert _nothing_is_served == []


def test_good_options_reach_the_server(_nothing_is_served: list[Any]) -> None:
    assert main(["web", "--port", "0", "--model", ADD, "--tools", "calculator"]) == 0
    assert len(_nothing_is_served) == 1


@pytest.mark.parametrize(
    ("config", "flags", "model"),
    [
        (None, [], "qwq-32b"),
        ('model = "smollm2-135m"\n', [], "smollm2-135m"),
        ('model = "smollm2-135m"\n', ["--model", "qwq-32b:Q8_0"], "qwq-32b:Q8_0"),
    ],
)
def test_the_tui_is_told_the_model_name_it_loads(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    config: str | None,
    flags: list[str],
    model: str,
) -> None:
    """So the status bar says "qwq-32b", not "model (not loaded)"."""
    seen: list[Any] = []
    monkeypatch.setattr("agent.cli.chat.run_chat", lambda args: seen.append(args.model) or 0)
    if config is not None:
        (tmp_path / "config.toml").write_text(config, encoding="utf-8")
        flags = [*flags, "--config", str(tmp_path / "config.toml")]
    assert main(["chat", *flags]) == 0
    assert seen == [model]
