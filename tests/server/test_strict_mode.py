"""Strict OpenAI requests: only the fields OpenAI defines, asked for (backend option,
``api_strict``, a config endpoint's ``strict``, ``--api-strict``) or taken by the backend
itself when a server refuses one of the others by name."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent import Agent
from agent.config import ENV_VAR
from models.base import BackendError, GenerateOptions, Sampling, Segment
from models.openai.backend import EXTENDED_FIELDS, OpenAIBackend, RetryPolicy
from tests.server.fake_openai import FakeServer, Reply, chat_events, completion_events
from tests.server.mock_openai import MockServer

PROMPT = "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n<think>\n"
CONTEXT = [Segment(PROMPT, "template")]
OPTIONS = GenerateOptions(sampling=Sampling(top_k=20, min_p=0.05))
FAST = RetryPolicy(max_retries=1, backoff=0.01, max_backoff=0.02)
OPENAI_400 = json.dumps(
    {
        "error": {
            "message": "Unrecognized request argument supplied: top_k",
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        }
    }
)


def drain(gen: Iterator[str]) -> str:
    return "".join(gen)


def extended(body: dict[str, Any]) -> set[str]:
    return set(body) & set(EXTENDED_FIELDS)


@pytest.fixture
def server() -> MockServer:
    return MockServer()


@pytest.mark.parametrize("mode", ["completions", "chat"])
def test_strict_mode_sends_only_openai_fields(server: MockServer, mode: str) -> None:
    reply = completion_events("ok") if mode == "completions" else chat_events({"content": "ok"})
    server.push(Reply(events=reply), Reply(events=reply))
    loose = server.backend(mode=mode, retry=FAST)
    strict = server.backend(mode=mode, retry=FAST, strict=True)
    drain(loose.generate(CONTEXT, OPTIONS))
    drain(strict.generate(CONTEXT, OPTIONS))
    assert extended(server.requests[0].body) == set(EXTENDED_FIELDS)
    assert extended(server.requests[1].body) == set()
    assert server.requests[1].body["temperature"] == OPTIONS.sampling.temperature


def test_a_400_naming_top_k_turns_the_backend_strict_once_and_for_all(
    server: MockServer, caplog: pytest.LogCaptureFixture
) -> None:
    server.push(
        Reply(status=400, body=OPENAI_400),
        Reply(events=chat_events({"content": "first"})),
        Reply(events=chat_events({"content": "second"})),
    )
    backend = server.backend(mode="chat", retry=FAST)
    with caplog.at_level(logging.INFO, logger="models.openai.backend"):
        assert drain(backend.generate(CONTEXT, OPTIONS)) == "first"
        assert drain(backend.generate(CONTEXT, OPTIONS)) == "second"
    bodies = [r.body for r in server.requests]
    assert len(bodies) == 3  # refused, the same request strict, then strict from the start
    assert extended(bodies[0]) == set(EXTENDED_FIELDS)
    assert extended(bodies[1]) == set() == extended(bodies[2])
    assert {k: v for k, v in bodies[0].items() if k not in EXTENDED_FIELDS} == bodies[1]
    assert backend.extended_sampling is False
    notes = [r for r in caplog.records if r.name == "models.openai.backend"]
    assert len(notes) == 1 and "'top_k'" in notes[0].getMessage()


def test_a_422_naming_cache_prompt_also_falls_back(server: MockServer) -> None:
    detail = {"detail": [{"loc": ["body", "cache_prompt"], "msg": "extra fields not permitted"}]}
    server.push(Reply(status=422, body=json.dumps(detail)), Reply(events=completion_events("fine")))
    backend = server.backend(retry=FAST)
    assert drain(backend.generate(CONTEXT, OPTIONS)) == "fine"
    assert extended(server.requests[1].body) == set()


def test_a_400_about_something_else_is_an_error_and_nothing_changes(server: MockServer) -> None:
    server.push(Reply(status=400, body='{"error": {"message": "temperature must be <= 2"}}'))
    backend = server.backend(mode="chat", retry=FAST)
    with pytest.raises(BackendError, match="HTTP 400: temperature must be <= 2"):
        drain(backend.generate(CONTEXT, OPTIONS))
    assert len(server.requests) == 1 and backend.extended_sampling is True


def test_the_strict_request_is_tried_once_only(server: MockServer) -> None:
    server.push(
        Reply(status=400, body=OPENAI_400),
        Reply(status=400, body='{"error": {"message": "model not allowed"}}'),
    )
    backend = server.backend(mode="chat", retry=FAST)
    with pytest.raises(BackendError, match="model not allowed"):
        drain(backend.generate(CONTEXT, OPTIONS))
    assert len(server.requests) == 2


def test_a_strict_backend_never_falls_back(server: MockServer) -> None:
    server.push(Reply(status=400, body=OPENAI_400))  # a server that names it anyway
    backend = server.backend(mode="chat", retry=FAST, strict=True)
    with pytest.raises(BackendError, match="top_k"):
        drain(backend.generate(CONTEXT, OPTIONS))
    assert len(server.requests) == 1


def test_api_strict_reaches_the_backend_from_backend_options() -> None:
    with FakeServer() as fake:
        fake.push(Reply(events=completion_events("</think>ok")))
        agent = Agent(fake.url, tools=[], transcript=False, backend_options={"api_strict": True})
        assert isinstance(agent.backend, OpenAIBackend)
        assert agent.backend.extended_sampling is False
        assert agent.run("hi").answer == "ok"
        agent.close()
        assert extended(fake.requests[-1].body) == set()


def _config(tmp_path: Path, url: str, strict: bool) -> Path:
    file = tmp_path / "config.toml"
    file.write_text(
        f'[endpoints.box]\nbase_url = "{url}"\nstrict = {str(strict).lower()}\n',
        encoding="utf-8",
    )
    return file


@pytest.mark.parametrize(
    ("file_strict", "flags", "strict"),
    [
        (True, [], True),
        (False, [], False),
        (False, ["--api-strict"], True),  # the flag wins over the file
    ],
)
def test_strict_from_the_config_endpoint_and_the_flag(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    file_strict: bool,
    flags: list[str],
    strict: bool,
) -> None:
    from agent.cli.build import agent_from_args
    from agent.cli.entry import build_parser

    monkeypatch.delenv(ENV_VAR, raising=False)
    with FakeServer() as fake:
        config = _config(tmp_path, fake.url, file_strict)
        args = build_parser().parse_args(
            ["ask", "--config", str(config), "--model", "box", *flags, "hi"]
        )
        agent = agent_from_args(args)
        assert isinstance(agent.backend, OpenAIBackend)
        assert agent.backend.extended_sampling is (not strict)
        agent.close()


def test_the_flag_reaches_a_url_model(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from agent.cli.build import agent_from_args
    from agent.cli.entry import build_parser

    monkeypatch.setenv(ENV_VAR, str(tmp_path / "none.toml"))
    (tmp_path / "none.toml").write_text("", encoding="utf-8")
    with FakeServer() as fake:
        args = build_parser().parse_args(["ask", "--model", fake.url, "--api-strict", "hi"])
        agent = agent_from_args(args)
        assert isinstance(agent.backend, OpenAIBackend)
        assert agent.backend.extended_sampling is False
        agent.close()
