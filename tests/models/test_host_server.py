"""The model host behind an OpenAI-compatible completions endpoint (models/llama/host_server.py).

Tabs of ``qwq-agent web`` would each be an :class:`OpenAIBackend` in completions mode; these
tests check that each one's prompt cache is kept on the one host (a continuation evaluates
only its new tokens), also when there are more conversations than sequences (swapped).
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from models.base import GenerateOptions, Sampling, Segment
from models.llama.host_server import HostServer
from models.openai.backend import OpenAIBackend, ServerOptions
from tests.models.host_fakes import FakeDecoder, ScriptModel, drain, fake_host

GREEDY = GenerateOptions(sampling=Sampling(temperature=0))


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[HostServer]:
    decoder = FakeDecoder(ScriptModel({"A": ["alpha", "again"], "B": ["bravo", "both"]}))
    decoder.n_seq_max = 1  # two conversations on one sequence: they are swapped
    # not a word of redact.HIDDEN: the key is registered for redaction for the whole session
    s = HostServer(fake_host(decoder), api_key="host-key-5e1d", owns_host=True)
    monkeypatch.setenv("QWQ_TEST_KEY", "host-key-5e1d")
    yield s
    s.close()


def tab(server: HostServer) -> OpenAIBackend:
    return OpenAIBackend(server.url, ServerOptions(mode="completions", api_key_env="QWQ_TEST_KEY"))


def test_each_tab_keeps_its_prompt_cache_on_one_host(server: HostServer) -> None:
    tabs = {key: tab(server) for key in "AB"}
    contexts = {key: [Segment(f"Q {key}<think>\n", "template")] for key in "AB"}
    first = {}
    for key, backend in tabs.items():
        first[key] = drain(backend.generate(contexts[key], GREEDY))
    assert first == {"A": ("alpha", "end_of_turn"), "B": ("bravo", "end_of_turn")}
    for key, backend in tabs.items():  # each continues its own conversation, in turn
        before = backend.usage
        context = [
            *contexts[key],
            Segment(first[key][0], "model"),
            Segment("<|im_end|>\n<tool_response>\nok\n</tool_response>\n", "template"),
        ]
        assert drain(backend.generate(context, GREEDY))[0] == {"A": "again", "B": "both"}[key]
        used = backend.usage.since(before)  # the server's timings: only the new tokens ran
        new = 1 + len("\n<tool_response>\nok\n</tool_response>\n")  # <|im_end|> is one
        assert used.prompt_tokens_evaluated == new
        cached = len(f"Q {key}<think>\n" + first[key][0])  # reused, not evaluated
        assert used.context_tokens == cached + new + used.completion_tokens
    assert server.host.scheduler.swaps_in >= 2  # the conversations took turns on one sequence
    for backend in tabs.values():
        backend.close()


def test_requests_need_the_key_and_a_well_formed_body(server: HostServer) -> None:
    url = f"{server.url}/completions"
    assert httpx.post(url, json={"prompt": "x"}).status_code == 401
    headers = {"Authorization": "Bearer host-key-5e1d"}
    bad = httpx.post(url, json={"prompt": "x", "max_tokens": -1}, headers=headers)
    assert bad.status_code == 400 and "max_tokens" in bad.json()["error"]["message"]
    plain = httpx.post(url, json={"prompt": "Q A<think>\n"}, headers=headers)
    assert plain.status_code == 200
    assert plain.json()["choices"][0] == {"index": 0, "text": "alpha", "finish_reason": "stop"}
    models = httpx.get(f"{server.url}/models", headers=headers).json()
    assert models["data"][0]["id"] == "fake"
    props = httpx.get(server.url.removesuffix("/v1") + "/props", headers=headers).json()
    assert props == {"chat_template": "", "n_ctx": 4096}
    client = tab(server)
    try:
        assert client.info.context_size == 4096
    finally:
        client.close()


def test_a_prompt_longer_than_the_window_is_refused_with_the_reason(server: HostServer) -> None:
    """The host's ContextOverflowError is a BackendError (issue 13): the request gets a 400
    that says by how much the context is too long, instead of a dropped connection."""
    headers = {"Authorization": "Bearer host-key-5e1d"}
    url = f"{server.url}/completions"
    refused = httpx.post(url, json={"prompt": "x" * 5000}, headers=headers)
    assert refused.status_code == 400
    assert "the model's window is 4096" in refused.json()["error"]["message"]
