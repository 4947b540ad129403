"""The config file: where it is, what it may hold, and the errors for what it may not."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent import Agent, AgentSettings
from agent.config import ENV_VAR, ConfigError, config_path, load_config
from tests.server.fake_openai import FakeServer, Reply, completion_events

EXAMPLE = """
model = "local"
tools = ["calculator"]
placement = "template"
temperature = 0.2
ctx = 4096

[approvals]
python = "allow"
"*" = "deny"

[limits]
max_steps = 7
timeout = 60

[tool_settings.python]
cpu_seconds = 3

[endpoints.local]
base_url = "{url}"
api_key_env = "QWQ_TEST_KEY"
headers = {{ "X-Team" = "${{QWQ_TEST_TEAM}}" }}
max_retries = 0

[[mcp]]
command = "uvx mcp-server-time --local-timezone UTC"
safe = ["get_current_time"]

[[mcp]]
url = "http://127.0.0.1:9000/mcp"
prefix = "remote_"
"""


def write(tmp_path: Path, text: str) -> Path:
    file = tmp_path / "config.toml"
    file.write_text(text, encoding="utf-8")
    return file


def test_the_path_follows_the_environment_else_the_user_config_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert config_path().parts[-2:] == ("qwq-agent", "config.toml")
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "mine.toml"))
    assert config_path() == tmp_path / "mine.toml"


def test_no_file_at_the_default_place_means_defaults(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    config = load_config()
    assert config.path is None and config.settings_layer() == {} and config.backend_layer() == {}


def test_an_explicit_file_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no config file at"):
        load_config(tmp_path / "missing.toml")


def test_a_full_file_is_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("QWQ_TEST_TEAM", "blue")
    file = write(tmp_path, EXAMPLE.format(url="http://127.0.0.1:8080/v1"))
    config = load_config(file)
    assert config.path == file
    assert config.tools == ["calculator"]
    assert config.settings_layer() == {
        "placement": "template",
        "temperature": 0.2,
        "approval": {"python": "allow", "*": "deny"},
        "max_steps": 7,
        "timeout": 60.0,
        "tool_settings": {"python": {"cpu_seconds": 3}},
    }
    assert config.backend_layer() == {"n_ctx": 4096}
    endpoint = config.endpoint("local")
    assert endpoint is not None and config.endpoint("http://127.0.0.1:8080/v1/") is endpoint
    assert config.endpoint("qwq-32b") is None
    assert endpoint.resolved_headers() == {"X-Team": "blue"}
    time_server, remote = config.mcp_specs()
    assert time_server.command == ("uvx", "mcp-server-time", "--local-timezone", "UTC")
    assert time_server.is_safe("get_current_time") and not time_server.is_safe("other")
    assert remote.url == "http://127.0.0.1:9000/mcp" and remote.prefix == "remote_"


def test_an_endpoint_from_the_file_drives_the_server_backend(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("QWQ_TEST_TEAM", "blue")
    monkeypatch.setenv("QWQ_TEST_KEY", "sk-test")
    with FakeServer() as server:
        server.push(Reply(events=completion_events("Done.\n</think>\n\nok")))
        config = load_config(write(tmp_path, EXAMPLE.format(url=server.url)))
        endpoint = config.endpoint("local")
        assert endpoint is not None
        backend = endpoint.open_backend()
        settings = AgentSettings.layered(file=config.settings_layer()).settings
        agent = Agent(backend, settings=settings, workspace=tmp_path)
        result = agent.run("hi")
        agent.close()
        headers = server.requests[0].headers
    assert result.answer == "ok"
    assert headers["X-Team"] == "blue" and headers["Authorization"] == "Bearer sk-test"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("modle = 'qwq-32b'", r"config.toml:1:1: modle: unknown key \(allowed: approvals, .*model"),
        ("[limits]\nmax_step = 3", r"limits.max_step: unknown key \(allowed: max_repeated_calls"),
        (
            "[endpoints.x]\nbase_url = 'http://h/v1'\nmodel = 'm'",
            r"endpoints.x.model: unknown key \(allowed: api_key_env, base_url",
        ),
        ("[[mcp]]\ncmd = 'x'", r"mcp.0.cmd: unknown key \(allowed: command, "),
        ("[limits]\nmax_steps = 'many'", r"limits.max_steps: Input should be a valid integer"),
        (
            "[limits]\nmax_steps = 0",
            r"limits.max_steps: Input should be greater than or equal to 1",
        ),
        ("placement = 'inside'", r"placement: Input should be 'interleaved' or 'template'"),
        (
            "[approvals]\npython = 'yes'",
            r"approvals.python: Input should be 'allow', 'deny' or 'ask'",
        ),
        ("[endpoints.x]\nbase_url = 'ftp://h'", r"endpoints.x.base_url: String should match"),
        ("tools = [\n  1,\n  2 3]", r"config.toml:3:5: not valid TOML: "),
        ("tools = ['calculater']", r"config.toml:1:1: tools\[0\]: unknown tool 'calculater'"),
        (
            "[tool_settings.python]\ncpu_secs = 3",
            r"tool_settings.python: unknown python settings \['cpu_secs'\]",
        ),
        ("[tool_settings.nope]\nx = 1", r"tool_settings.nope: settings for 'nope', which is not"),
        ("[tool_settings.read_file]\nmax_read_bytes = -1", r"must be a number >= 0, got -1"),
        (
            "model = 'gpu'",
            r"config.toml:1:1: model: unknown model 'gpu'.*\(endpoints: none in this",
        ),
    ],
)
def test_bad_files_name_the_file_and_the_key(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        load_config(write(tmp_path, text))


def test_a_key_written_in_the_file_is_refused_without_echoing_it(tmp_path: Path) -> None:
    text = "[endpoints.x]\nbase_url = 'http://h/v1'\napi_key = 'sk-secret-value'"
    with pytest.raises(ConfigError, match="api_key_env") as caught:
        load_config(write(tmp_path, text))
    assert "sk-secret-value" not in str(caught.value)


def test_a_file_that_is_not_utf8_is_a_clear_error(tmp_path: Path) -> None:
    file = tmp_path / "config.toml"
    file.write_bytes(b"model = '\xff'")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(file)


def test_unset_environment_references_and_incomplete_mcp_entries(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("QWQ_UNSET", raising=False)
    config = load_config(
        write(tmp_path, "[endpoints.x]\nbase_url = 'http://h/v1'\nheaders = { A = '${QWQ_UNSET}' }")
    )
    endpoint = config.endpoint("x")
    assert endpoint is not None
    with pytest.raises(ConfigError, match=r"headers.A refers to \$\{QWQ_UNSET\}, which is not set"):
        endpoint.resolved_headers()
    config = load_config(write(tmp_path, "[[mcp]]\ncommand = 'x'\nurl = 'http://h/mcp'"))
    with pytest.raises(ConfigError, match=r"config.toml: mcp\[0\]: .*exactly one of"):
        config.mcp_specs()


@pytest.mark.parametrize(
    ("file_text", "flags", "expected"),
    [
        (None, [], "qwq-32b"),  # no config file: the built-in default
        ("model = 'smollm2-135m'\n", [], "smollm2-135m"),  # the file beats the default
        ("model = 'smollm2-135m'\n", ["--model", "scripted:x.yaml"], "scripted:x.yaml"),
    ],
)
def test_the_model_comes_from_the_flag_else_the_file_else_the_default(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    file_text: str | None,
    flags: list[str],
    expected: str,
) -> None:
    from agent.cli.build import agent_from_args
    from agent.cli.entry import build_parser

    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    if file_text is not None:
        (tmp_path / "qwq-agent").mkdir()
        (tmp_path / "qwq-agent" / "config.toml").write_text(file_text, encoding="utf-8")
    args = build_parser().parse_args(["ask", *flags, "hi"])
    agent = agent_from_args(args)
    assert agent._model_spec == expected
    assert "calculator" in agent.registry.names()  # the default tools too
    agent.close()


def test_a_batch_reaches_a_config_endpoint_by_name_and_a_url_with_the_server_flags(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from agent.cli import main

    monkeypatch.setenv("QWQ_TEST_TEAM", "blue")
    monkeypatch.setenv("QWQ_TEST_KEY", "sk-test")
    tasks = tmp_path / "tasks.yaml"
    tasks.write_text(
        "model: local\ntools: []\ntasks:\n  - id: a\n    prompt: hi\n    expect:\n"
        "      equals: ok\n",
        encoding="utf-8",
    )
    with FakeServer() as server:
        server.push(Reply(events=completion_events("Done.\n</think>\n\nok")))
        config = write(tmp_path, EXAMPLE.format(url=server.url))
        out = tmp_path / "a.jsonl"
        argv = ["run", str(tasks), "--config", str(config), "--out", str(out), "--no-transcript"]
        assert main(argv) == 0
        assert server.requests[-1].headers["X-Team"] == "blue"
        server.push(Reply(events=completion_events("Done.\n</think>\n\nok")))
        out = tmp_path / "b.jsonl"
        argv = [
            "run", str(tasks), "--model", server.url, "--model-name", "fake-model",
            "--header", "X-Run:1", "--out", str(out), "--no-transcript",
        ]  # fmt: skip
        assert main(argv) == 0
        last = server.requests[-1]
    assert last.headers["X-Run"] == "1" and last.body["model"] == "fake-model"
