"""A batch against a real OpenAI-compatible server: 8 tasks, one at a time ÷ 4 at a time.

The server is llama-cpp-python's (``python -m llama_cpp.server``) with the benchmark's GGUF on
127.0.0.1. Each task makes one grammar-constrained call to a tool that takes ``tool_s``
seconds (standing for a search or a sandboxed run), then answers. llama-cpp-python's server
decodes one request at a time, so the gain measured here comes from overlapping tool time
and requests; a server that batches decoding (llama-server ``--parallel N``, vLLM) gains more.
Tasks run in threads with one backend each, as ``qwq-agent run --concurrency N`` does.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from agent import Agent, tool


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_ready(port: int, proc: subprocess.Popen[bytes], limit: float = 60.0) -> None:
    import httpx

    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the llama.cpp server exited with {proc.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.3)
    raise RuntimeError("the llama.cpp server did not become ready within 60 s")


def batch_speedup(
    gguf: Path, tasks: int = 8, workers: int = 4, tool_s: float = 1.0
) -> dict[str, Any]:
    """Wall time of ``tasks`` tasks with 1 worker and with ``workers`` workers."""
    from models.openai.backend import OpenAIBackend, ServerOptions

    @tool
    def research(topic: str) -> str:
        """Research a topic (takes a while).

        Args:
            topic: What to research.
        """
        time.sleep(tool_s)
        return f"notes about {topic}"

    port = _free_port()
    argv = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--host", "127.0.0.1",
            "--port", str(port), "--n_ctx", "2048", "--interrupt_requests", "False"]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_ready(port, proc)

        def one(i: int) -> bool:
            options = ServerOptions(model_name="bench", opens_thinking=False, context_size=2048)
            backend = OpenAIBackend(f"http://127.0.0.1:{port}/v1", options, discover=False)
            agent = Agent(
                backend, tools=[research], tool_choice="required", temperature=0, max_steps=2,
                max_tokens=48, transcript=False,
            )  # fmt: skip
            with agent:
                result = agent.run(f"Research topic number {i} with the research tool.")
            return any(c.output for c in result.tool_calls)

        timings: dict[int, float] = {}
        called: dict[int, int] = {}
        for n in (1, workers):
            started = time.perf_counter()
            with ThreadPoolExecutor(max_workers=n) as pool:
                outcomes = list(pool.map(one, range(tasks)))
            timings[n] = time.perf_counter() - started
            called[n] = sum(outcomes)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    return {
        "tasks": tasks,
        "tool_s": tool_s,
        "serial_s": round(timings[1], 2),
        f"concurrency_{workers}_s": round(timings[workers], 2),
        "speedup": round(timings[1] / timings[workers], 2),
        "tasks_that_called_the_tool": called,
    }
