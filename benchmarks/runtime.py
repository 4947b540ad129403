"""Benchmarks of the runtime alone (no model): parser throughput, parallel tools, start-up.

Each function returns a dict of figures; :mod:`benchmarks.__main__` prints and saves them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any

from agent import Agent, tool
from agent.parser import StreamParser
from models.scripted import ScriptedBackend

SAMPLE_TURN = (
    "Let me think about the primes below the bound. I will count them with a sieve, "
    "then check the count against what I remember about pi(x).\n"
    '<tool_call>\n{"name": "python", "arguments": {"code": "print(sum(1 for n in range(2, 10000) '
    'if all(n % d for d in range(2, int(n**0.5) + 1))))"}}\n</tool_call>\n'
    "<tool_response>\n1229\n</tool_response>\nThe sieve says 1229, which matches pi(10^4).\n"
    "</think>\n\nThere are **1229** primes below 10,000.\n"
)


def parser_throughput(megabytes: float = 4.0, chunk: int = 4) -> dict[str, Any]:
    """MB/s of model text through the streaming parser fed ``chunk``-character pieces
    (about one token each)."""
    text = SAMPLE_TURN * max(1, int(megabytes * 1e6 / len(SAMPLE_TURN)))
    pieces = [text[i : i + chunk] for i in range(0, len(text), chunk)]
    parser = StreamParser(calls_in_thinking=False)  # parse everything, never stop
    started = time.perf_counter()
    events = 0
    for piece in pieces:
        events += len(parser.feed(piece))
    events += len(parser.finish())
    seconds = time.perf_counter() - started
    mb = len(text.encode("utf-8")) / 1e6
    return {
        "megabytes": round(mb, 2),
        "chunk_chars": chunk,
        "seconds": round(seconds, 3),
        "mb_per_s": round(mb / seconds, 2),
        # A model at 100 tokens/s writes about 0.0004 MB/s; the ratio is the headroom.
        "x_faster_than_100_tok_s_model": round((mb / seconds) / (100 * 4 / 1e6)),
    }


def parallel_tools(calls: int = 4, sleep_s: float = 1.0) -> dict[str, Any]:
    """``calls`` independent calls to a tool that sleeps ``sleep_s``: wall time of the step."""

    @tool
    def nap(seconds: float, label: str) -> str:
        """Sleep, then say which call this was.

        Args:
            seconds: How long to sleep.
            label: Which call this is.
        """
        time.sleep(seconds)
        return label

    blocks = "".join(
        "<tool_call>\n"
        + json.dumps({"name": "nap", "arguments": {"seconds": sleep_s, "label": str(i)}})
        + "\n</tool_call>\n"
        for i in range(calls)
    )
    backend = ScriptedBackend(["</think>\n" + blocks, "</think>done"], chunk_size=64)
    agent = Agent(backend, tools=[nap], transcript=False)
    started = time.perf_counter()
    result = agent.run("nap")
    wall = time.perf_counter() - started
    assert result.ok and len(result.tool_calls) == calls, result.detail
    return {
        "calls": calls,
        "sleep_s": sleep_s,
        "wall_s": round(wall, 3),
        "serial_s": calls * sleep_s,
        "speedup": round(calls * sleep_s / wall, 2),
    }


_PEAK = (
    "\nimport sys\nfor _l in open('/proc/self/status'):\n"
    "    if _l.startswith('VmHWM:'): sys.stderr.write('PEAK ' + _l.split()[1] + '\\n')"
)


def _measure_python(code: str, repeat: int) -> dict[str, float]:
    """Median wall time of ``python -c code`` over ``repeat`` runs, and its peak RSS (the
    process's own high-water mark, ``VmHWM``, read as it exits)."""
    walls = []
    peak_kb = 0
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    for _ in range(repeat):
        started = time.perf_counter()
        out = subprocess.run(
            [sys.executable, "-c", code + _PEAK], capture_output=True, text=True, env=env
        )
        walls.append(time.perf_counter() - started)
        if out.returncode != 0:
            raise RuntimeError(f"{code!r} failed: {out.stderr[-2000:]}")
        peaks = [
            int(line.split()[1]) for line in out.stderr.splitlines() if line.startswith("PEAK ")
        ]
        peak_kb = max(peak_kb, *peaks)
    walls.sort()
    return {
        "wall_s_median": round(walls[len(walls) // 2], 3),
        "peak_rss_mb": round(peak_kb / 1024, 1),
    }


_HELP = (
    "import contextlib, io, sys\nfrom agent.cli import main\n"
    "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
    "    main(['--help'])"
)


def startup(repeat: int = 5) -> dict[str, Any]:
    """Wall time and peak memory of ``qwq-agent --help`` and ``import agent``, and a check that
    neither imports llama_cpp nor textual. ``python -c pass`` is the floor."""
    probe = (
        "import sys, agent, agent.cli; "
        "print(','.join(m for m in ('llama_cpp', 'textual', 'httpx') if m in sys.modules))"
    )
    heavy = subprocess.run(
        [sys.executable, "-c", probe], check=True, capture_output=True, text=True
    ).stdout.strip()
    return {
        "python_floor": _measure_python("pass", repeat),
        "import_agent": _measure_python("import agent", repeat),
        "qwq_agent_help": _measure_python(_HELP, repeat),
        "heavy_modules_imported": heavy or "none",
    }
