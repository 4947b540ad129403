"""benchmarks/web_memory.py (and web_tabs.py, process_memory.py): the peak memory of ``qwq-agent web`` with 1 and 3 tabs.

The real-model tests start the real ``qwq-agent web`` on the tiny model, pinned to one CPU,
and drive its tabs over websockets. They assert structure and the properties that hold
however loaded the machine is: one process maps the GGUF however many tabs are open (three
do when each tab loads its own), the model host's memory does not grow by a model per tab,
every tab's prompt was answered by the model, and nothing started is left running, also
when the benchmark fails half-way. No assertion is about speed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from benchmarks import __main__ as bench
from benchmarks import process_memory as pm
from benchmarks import web_memory, web_tabs
from tests.conftest import HANG_BOUND
from tests.real_model import requires_tiny_model, tiny_gguf

linux_only = pytest.mark.skipif(not pm.supported(), reason="reads /proc/PID/smaps_rollup")


def _one_cpu() -> int:
    return min(os.sched_getaffinity(0))


def test_screen_text_drops_escape_sequences() -> None:
    drawn = b"\x1b[?25l\x1b[38;2;1;2;3mAsk\x1b[0m the\x1b[1;5H agent\x1b]0;title\x07!"
    assert web_tabs.screen_text(drawn) == "Ask the agent!"
    assert web_tabs.READY.search(web_tabs.screen_text(drawn))


def test_finished_runs_counts_finished_transcripts_with_their_tokens(tmp_path: Path) -> None:
    usage = {"kind": "usage", "step": 1, "usage": {"completion_tokens": 7}}
    (tmp_path / "a.jsonl").write_text(
        "\n".join(json.dumps(r) for r in ({"kind": "run_started"}, usage, {"kind": "finished"}))
    )
    (tmp_path / "b.jsonl").write_text(json.dumps({"kind": "run_started"}) + "\n{torn")
    assert web_tabs.finished_runs(tmp_path) == {"a.jsonl": 7}


@linux_only
def test_the_sampler_sees_a_child_and_its_memory_then_that_it_is_gone(tmp_path: Path) -> None:
    watched = tmp_path / "weights.bin"
    watched.write_bytes(b"\0" * (1 << 20))
    code = (
        "import mmap,sys,time;f=open(sys.argv[1],'rb');m=mmap.mmap(f.fileno(),0,prot=mmap.PROT_READ);"
        "m.read();x=bytearray(8<<20);print('up',flush=True);time.sleep(600)"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code, str(watched)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None and child.stdout.readline() == "up\n"
        me = os.getpid()
        sampler = pm.Sampler(
            lambda: [(p, "me" if p == me else "child") for p in pm.tree(me)], watched=watched
        )
        now = sampler.sample()
        roles = now.by_role()
        assert roles["child"]["processes"] == 1 and roles["child"]["model_mappers"] == 1
        assert roles["me"]["model_mappers"] == 0
        assert roles["child"]["pss_anon"] >= 8 << 20  # the bytearray
        assert roles["child"]["pss_file"] >= 1 << 20  # the mapped file
        assert now.pss <= now.rss and sampler.most_mappers == 1
        assert set(pm.still_running(sampler.seen)) == set(sampler.seen) == {me, child.pid}
    finally:
        child.kill()
        child.wait(timeout=HANG_BOUND)
        assert child.stdout is not None
        child.stdout.close()
    assert pm.still_running(sampler.seen) == [me]


def _gone(processes: list[dict[str, Any]]) -> None:
    """Each of ``processes`` (``pid``, ``started``) no longer runs."""
    alive = [p for p in processes if pm.start_time(p["pid"]) == p["started"]]
    assert alive == [], alive


@pytest.mark.real_model
@requires_tiny_model
@linux_only
def test_three_tabs_share_one_model_and_own_copies_map_three(tmp_path: Path) -> None:
    gguf = tiny_gguf()
    assert gguf is not None
    figures = web_memory.measure(gguf, cpu=_one_cpu())
    model = figures["model_mb"]
    assert model == round(gguf.stat().st_size / 1e6, 1)
    shared, own = figures["shared"], figures["own_copies"]
    for phases in (shared, own):
        assert phases["generated_tokens"] and len(phases["generated_tokens"]) == 3
        assert all(n > 0 for n in phases["generated_tokens"])  # each tab's prompt was answered
        for n in ("1", "3"):
            assert phases[n]["samples"] > 0 and 0 < phases[n]["pss_mb"] <= phases[n]["rss_mb"]
    for n, tabs in (("1", 1), ("3", 3)):
        roles = shared[n]["by_role"]
        assert roles[web_memory.ROLE_WEB]["processes"] == 1
        assert roles[web_memory.ROLE_TAB]["processes"] == tabs
        # One model's worth: the host maps the GGUF, no tab does, however many are open.
        assert shared[n]["model_mappers"] == roles[web_memory.ROLE_WEB]["model_mappers"] == 1
        assert roles[web_memory.ROLE_TAB]["model_mappers"] == 0
        assert own[n]["model_mappers"] == own[n]["by_role"][web_memory.ROLE_OWN]["processes"]
    assert own["3"]["model_mappers"] == 3
    # The host's memory does not grow by a model for two more tabs (its KV cache for
    # TAB_SEQUENCES conversations is allocated at load); a quarter of the model is slack for
    # allocator noise, far below one model per tab.
    assert shared["role_growth_mb"] < 0.25 * model
    assert figures["leftover"] == []
    _gone(figures["processes"])
    assert {p["role"] for p in figures["processes"]} == {
        web_memory.ROLE_WEB,
        web_memory.ROLE_TAB,
        web_memory.ROLE_OWN,
    }

    rows = web_memory.rows(figures)
    assert "3 tabs ÷ 1 tab" in rows[0][0] and "own model" in rows[1][0]
    written = bench.charts({"web_memory": figures}, tmp_path)
    assert [p.name for p in written] == ["web_memory.svg"]
    assert written[0].read_text().count("<polyline") == 2


@pytest.mark.real_model
@requires_tiny_model
@linux_only
def test_a_failure_half_way_leaves_no_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """The first tab's prompt box is drawn (web, its host and the tab's chat run), then the
    benchmark fails: the error comes out and every process it started is gone."""
    gguf = tiny_gguf()
    assert gguf is not None

    async def fail_when_drawn(tabs: list[Any], sessions: Path, alive: Any) -> None:
        await web_tabs.until("the prompt box", web_tabs.drawn(tabs[0]), alive)
        raise RuntimeError("injected failure")

    monkeypatch.setattr(web_tabs, "use", fail_when_drawn)
    seen: dict[int, tuple[int | None, str]] = {}
    with pytest.raises(RuntimeError, match="injected failure"):
        web_memory.measure(gguf, counterfactual=False, cpu=_one_cpu(), seen=seen)
    assert {role for _, role in seen.values()} == {web_memory.ROLE_WEB, web_memory.ROLE_TAB}
    deadline = time.monotonic() + HANG_BOUND  # killed already; the kernel may still reap
    while pm.still_running(seen) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert pm.still_running(seen) == []
