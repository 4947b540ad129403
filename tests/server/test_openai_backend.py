"""The server backend against a scripted server: requests, streams, retries, failures.

Most tests script the server as an ``httpx.MockTransport`` (:class:`MockServer`): the backend's
own logic, no socket. Those about a real connection (timeouts, a server that sees the client
go away, concurrent streams, nothing listening) run the threaded :class:`FakeServer`.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from models.base import BackendError, ContextOverflowError, GenerateOptions, Sampling, Segment
from models.openai.backend import OpenAIBackend, RetryPolicy
from tests.conftest import HANG_BOUND
from tests.server.fake_openai import (
    MAX_HANG,
    FakeServer,
    Reply,
    chat_events,
    completion_events,
    wait_for,
)
from tests.server.mock_openai import MockServer, open_server_backend

FAST = RetryPolicy(max_retries=2, backoff=0.01, max_backoff=0.05, max_retry_after=5.0)
PROMPT = "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n<think>\n"
CONTEXT = [Segment(PROMPT, "template")]


@pytest.fixture
def server() -> MockServer:
    return MockServer()


@pytest.fixture
def fake() -> Iterator[FakeServer]:
    with FakeServer() as running:
        yield running


def backend(server: MockServer | FakeServer, **options: Any) -> OpenAIBackend:
    options.setdefault("retry", FAST)
    options.setdefault("read_timeout", 5.0)
    if isinstance(server, MockServer):
        return server.backend(**options)
    return open_server_backend(server.url, **options)


def drain(gen: Iterator[str]) -> tuple[str, object]:
    """Run a generate() generator to its end: (text, stop reason)."""
    out: list[str] = []
    while True:
        try:
            out.append(next(gen))
        except StopIteration as stop:
            return "".join(out), stop.value


def test_completions_request_carries_the_prompt_and_every_sampler(server: MockServer) -> None:
    server.push(Reply(events=completion_events("Hel", "lo", usage={"prompt_tokens": 9})))
    b = backend(server)
    sampling = Sampling(temperature=0.3, top_p=0.8, top_k=20, min_p=0.05, seed=7)
    context = [*CONTEXT, Segment("more", "data")]
    text, reason = drain(
        b.generate(context, GenerateOptions(sampling=sampling, max_tokens=50, grammar="root ::= x"))
    )
    b.close()
    assert (text, reason) == ("Hello", "end_of_turn")
    request = server.requests[0]
    assert request.path == "/v1/completions"
    body = request.body
    assert body["prompt"] == PROMPT + "more"
    assert body["model"] == "fake-model"  # discovered from /v1/models
    assert body["stream"] is True and body["cache_prompt"] is True
    assert body["stop"] == ["<|im_end|>", "<|endoftext|>"]
    assert body["grammar"] == "root ::= x"
    expected = {
        "temperature": 0.3,
        "top_p": 0.8,
        "top_k": 20,
        "min_p": 0.05,
        "seed": 7,
        "max_tokens": 50,
        "repeat_penalty": 1.0,
        "presence_penalty": 0.0,
        "frequency_penalty": 0.0,
    }
    assert {k: body[k] for k in expected} == expected


def test_max_tokens_none_is_sent_as_null_and_length_means_context_full(
    server: MockServer,
) -> None:
    server.push(Reply(events=completion_events("a", finish="length")))
    b = backend(server, model_name="m")
    assert drain(b.generate(CONTEXT, GenerateOptions())) == ("a", "context_full")
    b.close()
    assert server.requests[0].body["max_tokens"] is None
    assert server.requests[0].body["model"] == "m"


def test_usage_comes_from_the_server_counters(server: MockServer) -> None:
    timings = {
        "prompt_n": 4,
        "cache_n": 6,
        "predicted_n": 2,
        "prompt_ms": 50.0,
        "predicted_ms": 20.0,
    }
    server.push(Reply(events=completion_events("a", "b", timings=timings)))
    b = backend(server)
    drain(b.generate(CONTEXT, GenerateOptions()))
    usage = b.usage
    b.close()
    assert usage.prompt_tokens_evaluated == 4
    assert usage.prompt_tokens_cached == 6  # not a continuation of anything seen
    assert usage.completion_tokens == 2
    assert usage.context_tokens == 12
    assert usage.prefill_seconds == pytest.approx(0.05)
    assert usage.decode_seconds == pytest.approx(0.02)


def test_closing_the_generator_closes_the_stream(fake: FakeServer) -> None:
    many = completion_events(*["tok"] * 1000)  # 20 s of events, longer than HANG_BOUND
    fake.push(Reply(events=many, event_delay=0.02))
    b = backend(fake)
    gen = b.generate(CONTEXT, GenerateOptions())
    assert next(gen) == "tok"
    gen.close()
    # The server sees the client go away long before its 1000 events are written.
    assert wait_for(lambda: fake.disconnects == 1, timeout=HANG_BOUND)
    b.close()


def test_caller_stop_strings_are_yielded_and_end_the_call(server: MockServer) -> None:
    server.push(Reply(events=completion_events("ab", "c</to", "ol_call>", "never")))
    b = backend(server)
    text, reason = drain(b.generate(CONTEXT, GenerateOptions(stop=("</tool_call>",))))
    b.close()
    assert (text, reason) == ("abc</tool_call>", "stopped")


def test_5xx_is_retried_then_succeeds(server: MockServer) -> None:
    server.push(
        Reply(status=500, body="boom"), Reply(status=503), Reply(events=completion_events("ok"))
    )
    b = backend(server)
    assert drain(b.generate(CONTEXT, GenerateOptions())) == ("ok", "end_of_turn")
    b.close()
    assert len(server.requests) == 3


def test_5xx_past_the_retries_is_a_clear_error(server: MockServer) -> None:
    server.push(*[Reply(status=500, body='{"error": {"message": "kaput"}}')] * 3)
    b = backend(server)
    with pytest.raises(BackendError, match=r"HTTP 500: kaput \(after 3 attempts\)"):
        drain(b.generate(CONTEXT, GenerateOptions()))
    assert len(server.requests) == 3
    # The backend stays usable after an error.
    server.push(Reply(events=completion_events("again")))
    assert drain(b.generate(CONTEXT, GenerateOptions()))[0] == "again"
    b.close()


def test_429_honours_retry_after(server: MockServer) -> None:
    server.push(
        Reply(status=429, body="slow down", headers={"Retry-After": "1"}),
        Reply(events=completion_events("ok")),
    )
    b = backend(server)
    started = time.monotonic()
    assert drain(b.generate(CONTEXT, GenerateOptions()))[0] == "ok"
    assert time.monotonic() - started >= 0.95
    b.close()


def test_429_asking_for_too_long_a_wait_fails_at_once(server: MockServer) -> None:
    server.push(Reply(status=429, body="later", headers={"Retry-After": "3600"}))
    b = backend(server)
    with pytest.raises(BackendError, match="retry after 3600 s"):
        drain(b.generate(CONTEXT, GenerateOptions()))
    assert len(server.requests) == 1
    b.close()


def test_a_cut_completion_stream_is_resumed_where_it_stopped(server: MockServer) -> None:
    server.push(
        Reply(events=completion_events("Hel", "lo")[:-1], done=False, cut=True),
        Reply(events=completion_events(", world")),
    )
    b = backend(server)
    text, reason = drain(b.generate(CONTEXT, GenerateOptions(max_tokens=10)))
    b.close()
    assert (text, reason) == ("Hello, world", "end_of_turn")
    resumed = server.requests[1].body
    assert resumed["prompt"] == PROMPT + "Hello"
    assert resumed["max_tokens"] == 8  # two chunks were already generated


def test_a_stream_cut_too_often_is_a_clear_error(server: MockServer) -> None:
    server.push(*[Reply(events=completion_events("x")[:-1], done=False, cut=True)] * 3)
    b = backend(server)
    with pytest.raises(BackendError, match=r"cut the stream 3 times.*conversation is kept"):
        drain(b.generate(CONTEXT, GenerateOptions()))
    b.close()


def test_a_stream_ending_before_any_output_is_retried(server: MockServer) -> None:
    server.push(Reply(events=(), done=False), Reply(events=completion_events("ok")))
    b = backend(server)
    assert drain(b.generate(CONTEXT, GenerateOptions()))[0] == "ok"
    b.close()


def test_malformed_sse_json_is_a_clear_error(server: MockServer) -> None:
    server.push(Reply(events=['data: {"choices": [{"text": "a"\n\n']))
    b = backend(server)
    with pytest.raises(BackendError, match="not JSON"):
        drain(b.generate(CONTEXT, GenerateOptions()))
    b.close()


def test_comments_and_unknown_sse_lines_are_ignored(server: MockServer) -> None:
    events: list[dict[str, Any] | str] = [": ping\n\n", "garbage line\nretry: 10\n\n"]
    events += completion_events("ok")
    server.push(Reply(events=events))
    b = backend(server)
    assert drain(b.generate(CONTEXT, GenerateOptions())) == ("ok", "end_of_turn")
    b.close()


def test_an_error_event_in_the_stream_is_reported(server: MockServer) -> None:
    server.push(Reply(events=[{"error": {"message": "model crashed"}}]))
    b = backend(server)
    with pytest.raises(BackendError, match="model crashed"):
        drain(b.generate(CONTEXT, GenerateOptions()))
    b.close()


def test_a_slow_first_byte_within_the_timeout_succeeds(fake: FakeServer) -> None:
    fake.push(Reply(events=completion_events("ok"), first_byte_delay=0.5))
    b = backend(fake, read_timeout=HANG_BOUND)  # however loaded the machine, 0.5 s is within
    assert drain(b.generate(CONTEXT, GenerateOptions()))[0] == "ok"
    b.close()


def test_a_first_byte_slower_than_the_timeout_is_a_clear_error(fake: FakeServer) -> None:
    fake.push(Reply(events=completion_events("late"), first_byte_delay=MAX_HANG))
    b = backend(fake, read_timeout=0.5)
    started = time.monotonic()
    with pytest.raises(BackendError, match=r"sent no answer within 0.5 s"):
        drain(b.generate(CONTEXT, GenerateOptions()))
    assert time.monotonic() - started < HANG_BOUND
    b.close()


def test_a_server_that_never_answers_times_out(fake: FakeServer) -> None:
    fake.push(Reply(hang=True))
    b = backend(fake, read_timeout=0.5)
    with pytest.raises(BackendError, match="overloaded or stuck"):
        drain(b.generate(CONTEXT, GenerateOptions()))
    assert len(fake.requests) == 1  # not retried: the server may still be working
    b.close()


def test_a_stall_in_the_middle_of_a_stream_times_out(fake: FakeServer) -> None:
    fake.push(Reply(events=completion_events("a", "b"), event_delay=MAX_HANG))
    b = backend(fake, read_timeout=0.5)
    with pytest.raises(BackendError, match=r"stopped sending for 0.5 s"):
        drain(b.generate(CONTEXT, GenerateOptions()))
    b.close()


def test_nothing_listening_is_a_clear_error_after_the_retries() -> None:
    with FakeServer() as fake:
        url = fake.url
    b = open_server_backend(url, model_name="m", discover=False, retry=FAST, connect_timeout=1.0)
    with pytest.raises(BackendError, match=r"cannot reach the server.*after 3 attempts.*running"):
        drain(b.generate(CONTEXT, GenerateOptions()))
    b.close()


def test_discovery_failure_is_a_clear_error_at_construction() -> None:
    with FakeServer() as fake:
        url = fake.url
    with pytest.raises(BackendError, match="cannot reach the server"):
        open_server_backend(url, retry=FAST, connect_timeout=1.0)


@pytest.mark.parametrize(
    ("message", "needed", "available"),
    [
        ("Requested tokens (3010) exceed context window of 2048", 3010, 2048),
        (
            "This model's maximum context length is 4096 tokens. However, you requested 5000 tokens",
            5000,
            4096,
        ),
    ],
)
@pytest.mark.parametrize("status", [400, 500])  # llama-cpp-python's server answers 500
def test_context_overflow_is_recognised(
    server: MockServer, message: str, needed: int, available: int, status: int
) -> None:
    server.push(Reply(status=status, body=f'{{"error": {{"message": "{message}"}}}}'))
    b = backend(server)
    with pytest.raises(ContextOverflowError) as caught:
        drain(b.generate(CONTEXT, GenerateOptions()))
    assert (caught.value.needed, caught.value.available) == (needed, available)
    assert len(server.requests) == 1  # not retried
    b.close()


def test_the_api_key_is_sent_but_never_shown(
    server: MockServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_KEY", "sk-very-secret")
    server.push(Reply(status=401, body='{"error": {"message": "bad key"}}'))
    b = backend(server, api_key_env="FAKE_KEY")
    with pytest.raises(BackendError) as caught:
        drain(b.generate(CONTEXT, GenerateOptions()))
    assert server.requests[0].headers["Authorization"] == "Bearer sk-very-secret"
    assert "'FAKE_KEY'" in str(caught.value)
    for shown in (str(caught.value), repr(b), repr(b.info)):
        assert "sk-very-secret" not in shown
    b.close()


@pytest.mark.parametrize("where", ["status", "stream"])
def test_an_api_key_the_server_echoes_is_hidden(
    server: MockServer, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    monkeypatch.setenv("FAKE_KEY", "sk-very-secret")
    echo = "bad header: Authorization: Bearer sk-very-secret"
    if where == "status":
        server.push(Reply(status=403, body=json.dumps({"error": {"message": echo}})))
    else:
        server.push(Reply(events=[{"error": {"message": echo}}]))
    b = backend(server, api_key_env="FAKE_KEY")
    with pytest.raises(BackendError) as caught:
        drain(b.generate(CONTEXT, GenerateOptions()))
    assert "sk-very-secret" not in str(caught.value)
    assert "Bearer [API key hidden]" in str(caught.value)
    b.close()


def test_a_missing_api_key_variable_is_a_clear_error(
    server: MockServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NO_SUCH_KEY", raising=False)
    with pytest.raises(BackendError, match=r"'NO_SUCH_KEY'.*not set"):
        backend(server, api_key_env="NO_SUCH_KEY")


def test_extra_headers_are_sent(server: MockServer) -> None:
    server.push(Reply(events=completion_events("ok")))
    b = backend(server, headers={"X-Team": "blue"})
    drain(b.generate(CONTEXT, GenerateOptions()))
    b.close()
    assert server.requests[0].headers["X-Team"] == "blue"


def test_props_give_the_context_size_and_template(server: MockServer) -> None:
    server.props = {
        "default_generation_settings": {"n_ctx": 4096},
        "chat_template": "{% for m in messages %}{{ m.content }}{% endfor %}",
    }
    b = backend(server)
    assert b.info.context_size == 4096
    assert b.info.chat_template == server.props["chat_template"]
    assert b.info.opens_thinking is False and b.info.concurrent is True
    b.close()


def test_chat_mode_maps_reasoning_content_and_tool_calls(server: MockServer) -> None:
    call = {"index": 0, "id": "c1", "function": {"name": "add", "arguments": '{"a": 2, '}}
    rest = {"index": 0, "function": {"arguments": '"b": 3}'}}
    server.push(
        Reply(
            events=chat_events(
                {"role": "assistant"},
                {"reasoning_content": "I should "},
                {"reasoning_content": "add."},
                {"content": "Adding."},
                {"tool_calls": [call]},
                {"tool_calls": [rest]},
                finish="tool_calls",
            )
        )
    )
    b = backend(server, mode="chat")
    text, reason = drain(b.generate(CONTEXT, GenerateOptions()))
    b.close()
    assert reason == "end_of_turn"
    assert text == (
        'I should add.\n</think>\n\nAdding.<tool_call>\n{"name": "add", "arguments": '
        '{"a": 2, "b": 3}}\n</tool_call>'
    )
    request = server.requests[0]
    assert request.path == "/v1/chat/completions"
    assert request.body["messages"] == [{"role": "user", "content": "hi"}]


def test_chat_mode_cut_after_output_is_an_error_but_before_is_retried(
    server: MockServer,
) -> None:
    server.push(
        Reply(events=(), done=False, cut=True),
        Reply(events=chat_events({"content": "partial"})[:-1], done=False, cut=True),
    )
    b = backend(server, mode="chat")
    with pytest.raises(BackendError, match=r"after 7 characters.*conversation is kept"):
        drain(b.generate(CONTEXT, GenerateOptions()))
    assert len(server.requests) == 2
    b.close()


def test_chat_mode_refuses_to_continue_inside_a_turn(server: MockServer) -> None:
    b = backend(server, mode="chat")
    inside = [*CONTEXT, Segment("thinking <tool_call>...</tool_call>", "model")]
    with pytest.raises(BackendError, match="--placement template"):
        b.generate(inside, GenerateOptions())
    b.close()


def test_one_backend_serves_several_threads_at_once(fake: FakeServer) -> None:
    import threading

    fake.push(*[Reply(events=completion_events("a", "b", "c"), event_delay=0.3)] * 4)
    b = backend(fake)
    outputs: list[str] = []

    def work() -> None:
        outputs.append(drain(b.generate(CONTEXT, GenerateOptions()))[0])

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=HANG_BOUND)
    assert outputs == ["abc"] * 4
    assert b.usage.completion_tokens == 12
    assert fake.peak_active > 1  # the streams overlapped: the client does not serialise
    b.close()


def test_a_plain_json_answer_is_accepted(server: MockServer) -> None:
    answer = {"choices": [{"index": 0, "text": "whole", "finish_reason": "stop"}]}
    server.push(Reply(body=json.dumps(answer)))
    b = backend(server)
    assert drain(b.generate(CONTEXT, GenerateOptions())) == ("whole", "end_of_turn")
    b.close()


def test_a_web_page_or_a_redirect_is_not_taken_for_a_stream(server: MockServer) -> None:
    server.push(
        Reply(body="<html>login</html>", content_type="text/html"),
        Reply(status=307, headers={"Location": "https://elsewhere/v1/completions"}),
    )
    b = backend(server)
    with pytest.raises(BackendError, match="'text/html', not an event stream"):
        drain(b.generate(CONTEXT, GenerateOptions()))
    with pytest.raises(BackendError, match=r"redirects.*'https://elsewhere/v1/completions'"):
        drain(b.generate(CONTEXT, GenerateOptions()))
    b.close()


def test_waiting_to_retry_is_interrupted(server: MockServer) -> None:
    """A 429 asking for 30 s: the wait ends as soon as ``interrupt`` says so."""
    server.push(Reply(status=429, body="slow down", headers={"Retry-After": "30"}))
    b = backend(server, retry=RetryPolicy(max_retries=2, max_retry_after=60.0))
    asked = threading.Event()

    def interrupt() -> bool:
        asked.set()
        return len(server.requests) >= 1

    started = time.monotonic()
    _, reason = drain(b.generate(CONTEXT, GenerateOptions(interrupt=interrupt)))
    assert reason == "interrupted" and asked.is_set()
    assert len(server.requests) == 1  # not retried
    assert time.monotonic() - started < HANG_BOUND  # did not wait the 30 s
    b.close()


def test_waiting_after_a_cut_stream_is_interrupted(server: MockServer) -> None:
    server.push(Reply(events=completion_events("par"), done=False, cut=True))
    b = backend(server, retry=RetryPolicy(max_retries=2, backoff=30.0, max_backoff=30.0))
    _, reason = drain(b.generate(CONTEXT, GenerateOptions(interrupt=lambda: True)))
    assert reason == "interrupted"
    assert len(server.requests) == 1
    b.close()
