"""``qwq-agent web`` with an embedded model: one model host for every tab.

The host is the fake one of tests/models/host_fakes.py (``open_host`` is replaced), and the
web server itself is not started (``TokenServer.serve_socket`` is replaced): these tests
check the wiring, i.e. what the tabs are told to run and that the shared model answers them.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import httpx
import pytest

from agent.cli import web
from agent.cli.entry import build_parser
from models.llama.host import LlamaHost
from tests.models.host_fakes import FakeDecoder, ScriptModel, fake_host


def _web_args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["web", "--port", "0", *argv])


@pytest.fixture(autouse=True)
def _own_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv("QWQ_AGENT_CONFIG", raising=False)
    monkeypatch.delenv(web.HOST_KEY_ENV, raising=False)


@pytest.mark.parametrize(
    ("model", "shared"),
    [
        ("smollm2-135m", True),
        ("model.gguf", True),
        ("scripted:x.yaml", False),
        ("http://127.0.0.1:8080/v1", False),
    ],
)
def test_only_an_embedded_model_is_shared(model: str, shared: bool) -> None:
    assert (web.shared_model(_web_args("--model", model)) is not None) is shared


def test_tabs_talk_to_the_host_without_loading_options() -> None:
    args = _web_args("--model", "m.gguf", "--ctx", "4096", "--n-gpu-layers", "9", "--no-lookup")
    command = web.chat_command(web.tab_arguments(args, "http://127.0.0.1:5/v1"))
    flags = command[command.index("chat") + 1 :]
    assert flags[flags.index("--model") + 1] == "http://127.0.0.1:5/v1"
    assert "--api-mode" not in flags or flags[flags.index("--api-mode") + 1] == "completions"
    assert flags[flags.index("--api-key-env") + 1] == web.HOST_KEY_ENV
    assert not {"--ctx", "--n-gpu-layers", "--no-lookup"} & set(flags)


def test_web_loads_the_model_once_and_every_tab_uses_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"")
    hosts: list[LlamaHost] = []

    def open_host(spec: str, options: Any = None, **keywords: Any) -> LlamaHost:
        assert spec == str(gguf) and keywords["n_seq_max"] == web.TAB_SEQUENCES
        hosts.append(fake_host(FakeDecoder(ScriptModel({"hi": ["hello"]}))))
        return hosts[-1]

    answers: list[Any] = []

    def serve(self: web.TokenServer, sock: Any) -> None:  # stands for the tabs
        sock.close()
        flags = self.command.split()
        url = flags[flags.index("--model") + 1]
        key = os.environ[web.HOST_KEY_ENV]
        answers.append(
            httpx.post(
                f"{url}/completions",
                json={"prompt": "hi<think>\n", "temperature": 0},
                headers={"Authorization": f"Bearer {key}"},
            ).json()
        )

    monkeypatch.setattr("agent.cli.web.open_host", open_host)
    monkeypatch.setattr(web.TokenServer, "serve_socket", serve)
    assert web.run_web(_web_args("--model", str(gguf))) == 0
    assert len(hosts) == 1
    assert answers[0]["choices"][0]["text"] == "hello"
    assert hosts[0].decoder.closed  # stopped with the web server  # type: ignore[attr-defined]
