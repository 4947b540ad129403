"""Task files with an ``mcp:`` section: the servers' tools run in the batch, then stop."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

from agent.cli import main

SERVER = Path(__file__).resolve().parent / "server" / "mcp_demo_server.py"


def test_a_task_uses_an_mcp_tool_and_the_server_stops(tmp_path: Path) -> None:
    script = tmp_path / "model.yaml"
    script.write_text(
        "turns:\n"
        '  - "<tool_call>\\n{\\"name\\": \\"add\\", \\"arguments\\": {\\"a\\": 40, \\"b\\": 2}}\\n</tool_call>"\n'
        '  - "It is 42.</think>42"\n',
        encoding="utf-8",
    )
    command = shlex.join([sys.executable, str(SERVER)])
    tasks = tmp_path / "tasks.yaml"
    tasks.write_text(
        f"model: scripted:{script}\ntools: []\nmcp: [{json.dumps(command)}]\napprove: [add]\n"
        "tasks:\n  - id: sum\n    prompt: What is 40 + 2?\n    expect:\n      equals: '42'\n"
        "      tool_called: add\n",
        encoding="utf-8",
    )
    out = tmp_path / "out.jsonl"
    assert main(["run", str(tasks), "--out", str(out), "--no-transcript"]) == 0
    (result,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert result["ok"] and result["tool_calls"][0]["output"] == "42"


def test_an_unknown_approve_name_is_still_refused_without_mcp(tmp_path: Path) -> None:
    tasks = tmp_path / "tasks.yaml"
    tasks.write_text("approve: [nope]\ntasks:\n  - id: a\n    prompt: hi\n", encoding="utf-8")
    assert main(["run", str(tasks), "--out", str(tmp_path / "o.jsonl")]) == 2


def test_the_mcp_flag_gives_a_batch_its_servers(tmp_path: Path) -> None:
    script = tmp_path / "model.yaml"
    script.write_text(
        "turns:\n"
        '  - "<tool_call>\\n{\\"name\\": \\"add\\", \\"arguments\\": {\\"a\\": 1, \\"b\\": 2}}\\n</tool_call>"\n'
        '  - "It is 3.</think>3"\n',
        encoding="utf-8",
    )
    tasks = tmp_path / "tasks.yaml"
    tasks.write_text(
        f"model: scripted:{script}\ntools: []\ntasks:\n  - id: sum\n    prompt: 1 + 2?\n"
        "    expect:\n      tool_called: add\n",
        encoding="utf-8",
    )
    out = tmp_path / "out.jsonl"
    command = shlex.join([sys.executable, str(SERVER)])
    argv = ["run", str(tasks), "--out", str(out), "--no-transcript", "--mcp", command, "--yes"]
    assert main(argv) == 0
    (result,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert result["ok"] and result["tool_calls"][0]["output"] == "3"
