"""Configured credentials never reach a transcript, an error or a display name.

The secrets: the API key (from ``api_key_env``), every ``--header`` value and a
``user:pass@`` in the server URL. The fake server echoes them back in the places a real one
might: the answer, an error body, the text of a failed connection.
"""

from __future__ import annotations

import base64
import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent import Agent
from agent.cli import main
from models.base import BackendError
from models.openai.backend import OpenAIBackend
from models.redact import HIDDEN, blank_settings, redact, redact_url, register
from tests.conftest import HANG_BOUND
from tests.server.fake_openai import FakeServer, Reply, completion_events
from tests.server.mock_openai import open_server_backend

KEY = "sk-test-key-7f3a9c"
TEAM = "team-secret-4242"
TOKEN = "tok-extra-99e1"
USER, PASSWORD = "alice", "pa55-w0rd!x"
SECRETS = (KEY, TEAM, TOKEN, PASSWORD, f"{USER}:{PASSWORD}")


@pytest.fixture
def fake() -> Iterator[FakeServer]:
    with FakeServer() as running:
        yield running


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QWQ_SECRET_TEST_KEY", KEY)


def with_userinfo(url: str) -> str:
    return url.replace("http://", f"http://{USER}:{PASSWORD}@", 1)


def backend(url: str, **options: object) -> OpenAIBackend:
    return open_server_backend(
        with_userinfo(url),
        api_key_env="QWQ_SECRET_TEST_KEY",
        headers={"X-Team": TEAM, "Authorization-Extra": f"Bearer {TOKEN}"},
        **options,
    )


def assert_clean(text: str) -> None:
    basic = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    for secret in (*SECRETS, basic):
        assert secret not in text, f"{secret!r} leaked into {text[:400]!r}"


def test_the_display_name_and_repr_hold_no_secret(fake: FakeServer) -> None:
    server = backend(fake.url)
    try:
        assert_clean(server.info.name)
        assert_clean(repr(server))
        where = fake.url.removeprefix("http://")
        assert server.info.name == f"fake-model @ http://{HIDDEN}@{where}"
    finally:
        server.close()
    named = backend(fake.url, name=f"team {TEAM}")
    assert_clean(named.info.name)
    named.close()


def test_a_transcript_holds_no_secret(fake: FakeServer, tmp_path: Path) -> None:
    echo = f"The key is {KEY}, the team {TEAM}, the URL {with_userinfo(fake.url)}."
    fake.push(Reply(events=completion_events(f"Echo.\n</think>\n\n{echo}")))
    server = backend(fake.url)
    transcript = tmp_path / "run.jsonl"
    agent = Agent(server, tools=[], transcript=transcript)
    try:
        result = agent.run(f"say {TOKEN} back")
    finally:
        agent.close()
    assert KEY in result.answer  # what the caller gets is the model's text as it is
    assert fake.requests[0].headers["X-Team"] == TEAM  # and the server got the real values
    written = transcript.read_text(encoding="utf-8")
    assert HIDDEN in written
    assert_clean(written)


def test_the_error_of_a_failing_server_holds_no_secret(fake: FakeServer) -> None:
    server = backend(fake.url, retry=None)
    echoed = json.dumps(
        {"error": {"message": f"bad key {KEY} for {TEAM} ({USER}:{PASSWORD}) Bearer {TOKEN}"}}
    )
    fake.push(Reply(status=401, body=echoed))
    agent = Agent(server, tools=[], transcript=False)
    try:
        result = agent.run("hi")
    finally:
        agent.close()
    assert not result.ok
    assert "HTTP 401" in result.detail
    assert_clean(result.detail)
    errors = [e for e in result.events if e.kind == "error"]
    assert errors and all(HIDDEN in e.message or "401" in e.message for e in errors)
    for error in errors:
        assert_clean(error.message)


def test_the_error_of_an_unreachable_server_holds_no_secret() -> None:
    with socket.socket() as probe:  # a port with nobody listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(BackendError) as caught:
        backend(f"http://127.0.0.1:{port}/v1", connect_timeout=2.0)
    message = str(caught.value)
    assert "cannot reach the server" in message
    assert_clean(message)
    cause = caught.value.__cause__ or caught.value.__context__
    while cause is not None:
        assert_clean(str(cause))
        cause = cause.__cause__ or cause.__context__


def test_a_bad_url_is_not_quoted_with_its_password() -> None:
    with pytest.raises(BackendError) as caught:
        OpenAIBackend(f"ftp://{USER}:{PASSWORD}@example.org/v1", discover=False)
    assert_clean(str(caught.value))


def test_config_show_blanks_headers_and_credentials(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        "[endpoints.remote]\n"
        f'base_url = "https://{USER}:{PASSWORD}@gpu.example.org/v1"\n'
        f'headers = {{ "X-Team" = "{TEAM}", "X-Ref" = "${{QWQ_SECRET_TEST_KEY}}" }}\n',
        encoding="utf-8",
    )
    assert main(["config", "show", "--config", str(config)]) == 0
    shown = capsys.readouterr().out
    assert "gpu.example.org" in shown and "X-Team" in shown
    assert_clean(shown)


def test_every_form_of_a_secret_is_blanked() -> None:
    quoted = 'sk-"quoted"\\secret'
    register(api_key=quoted, headers={"Authorization": "Basic " + _basic("bob", "hunter22")})
    assert redact(json.dumps({"k": quoted})) == json.dumps({"k": HIDDEN})
    assert "hunter22" not in redact("user bob:hunter22 and hunter22")
    assert redact_url("https://u:p%40ss@h.example/v1?key=abc123") == (
        f"https://{HIDDEN}@h.example/v1?key={HIDDEN}"
    )
    assert blank_settings({"headers": {"A": "b"}, "x": [{"url": "http://a:b@c/"}]}) == {
        "headers": {"A": HIDDEN},
        "x": [{"url": f"http://{HIDDEN}@c/"}],
    }
    assert redact("abc") == "abc"  # nothing short was registered, nothing short is blanked


def _basic(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


def test_mcp_header_values_are_secrets_too() -> None:
    from tools.mcp import McpError, McpServer

    token = "mcp-secret-0123456789"
    with pytest.raises(McpError) as failure:
        McpServer(
            "http://127.0.0.1:9/mcp",
            headers={"Authorization": f"Bearer {token}"},
            connect_timeout=HANG_BOUND,
        )
    assert token not in str(failure.value)
    assert token not in redact(f"the server said: Bearer {token}")
