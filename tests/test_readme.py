"""The README's embedding example runs as written (on the tiny real model)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.real_model import requires_tiny_model

README = Path(__file__).resolve().parent.parent / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.DOTALL)


def test_readme_has_an_embedding_example() -> None:
    blocks = python_blocks()
    assert blocks and "from agent import Agent, tool" in blocks[0]


@pytest.mark.real_model
@requires_tiny_model
def test_embedding_example_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    source = python_blocks()[0].replace('"smollm2-135m"', '"smollm2-135m", max_tokens=48')
    exec(compile(source, "README.md", "exec"), {"__name__": "readme"})
    out = capsys.readouterr().out
    assert "completed" in out or "max_tokens" in out


def test_readme_config_example_is_valid(tmp_path: Path) -> None:
    from agent.config import load_config

    block = re.search(r"```toml\n(.*?)```", README.read_text(encoding="utf-8"), re.DOTALL)
    assert block is not None
    path = tmp_path / "config.toml"
    path.write_text(block.group(1), encoding="utf-8")
    config = load_config(path)
    assert config.endpoint("gpu") is not None and config.mcp_specs()


def test_readme_task_file_example_is_valid(tmp_path: Path) -> None:
    from agent.tasks.taskfile import load_task_file

    block = re.search(
        r"```yaml\n(# File-level defaults.*?)```", README.read_text(encoding="utf-8"), re.DOTALL
    )
    assert block is not None
    (tmp_path / "ws").mkdir()
    path = tmp_path / "tasks.yaml"
    path.write_text(block.group(1), encoding="utf-8")
    spec = load_task_file(path)
    assert spec.ids() == ["add"]


def test_the_settings_example_builds_the_agent_it_describes() -> None:
    """The README's settings example runs as written (nothing is loaded until a run), and
    the argument it says overrides the settings does."""
    block = next(b for b in python_blocks() if "AgentSettings(" in b)
    scope: dict[str, object] = {"__name__": "readme"}
    exec(compile(block, "README.md", "exec"), scope)
    agent = scope["agent"]
    settings = agent.settings  # type: ignore[attr-defined]
    assert (settings.max_steps, settings.temperature, settings.max_tokens) == (8, 0.2, 256)
    assert agent.backend_options.llama.n_ctx == 4096  # type: ignore[attr-defined]
