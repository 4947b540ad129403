"""The benchmark harness runs on a tiny workload, so it cannot rot.

These tests prove the benchmark code works: every figure is produced, well formed, and
rendered (table, JSON, charts). The figures themselves depend on the machine and are for
``make bench``; no test here asserts how fast anything was.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from benchmarks import __main__ as bench
from benchmarks import llama
from benchmarks.chart import line_chart
from benchmarks.llama import gbnf_literal
from models.llama.backend import LlamaCppBackend
from tests.real_model import TINY_SPEC, TINY_THREADS, TinyModel, requires_tiny_model


@pytest.fixture(scope="module")
def runtime_figures(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """``python -m benchmarks --model none --quick``, run once for the module."""
    out = tmp_path_factory.mktemp("bench") / "figures.json"
    assert bench.main(["--model", "none", "--quick", "--json", str(out)]) == 0
    figures: dict[str, Any] = json.loads(out.read_text())
    return figures


def test_runtime_only_figures(runtime_figures: dict[str, Any]) -> None:
    figures = runtime_figures
    assert figures["model"] is None and "episodes" not in figures
    assert figures["parser"]["mb_per_s"] > 0
    tools = figures["parallel_tools"]
    assert tools["calls"] == 4 and tools["wall_s"] > 0 and tools["speedup"] > 0
    assert figures["startup"]["heavy_modules_imported"] == "none"
    assert "parser throughput" in bench.table(figures)


def test_chart_is_svg_with_every_series() -> None:
    svg = line_chart("T", "x", "y", {"a <b>": [(1, 2.0), (4, 3.0)], "c": [(1, 1.0)]})
    assert svg.startswith("<svg") and svg.rstrip().endswith("</svg>")
    assert "a &lt;b&gt;" in svg and svg.count("<polyline") == 2


def test_gbnf_literal_escapes() -> None:
    assert gbnf_literal('a"b\\c\nd') == 'root ::= "a\\"b\\\\c\\nd"'


@pytest.mark.real_model
@requires_tiny_model
def test_model_figures_on_the_tiny_model(
    tiny_backend: LlamaCppBackend,
    tiny_model: TinyModel,
    runtime_figures: dict[str, Any],
    tmp_path: Path,
) -> None:
    """``--quick``'s model workload on the session's model (prompt lookup and the model host
    included: their benchmarks run here, once), and the warm start in new processes; that a
    resume evaluates only the observation is the backend tests' to prove."""
    figures = {**runtime_figures, "model": TINY_SPEC}
    figures.update(bench.model_figures(tiny_backend, quick=True))
    figures["warm_start"] = llama.warm_start(
        tiny_model.gguf, tools=llama.QUICK_TOOLS, warm_runs=1, threads=TINY_THREADS
    )

    assert figures["decode"]["tokens"] > 1 and figures["decode"]["ratio"] > 0
    assert [e["k"] for e in figures["episodes"]] == [1]
    for episode in figures["episodes"]:  # the forced episode made its K calls, stopped at each
        assert episode["stops_at_call"] == episode["k"]
        assert episode["evaluated"] > 0 and episode["usual_way_evaluated"] > 0
    resume = figures["resume"]
    sizes = {"32", "64"}
    assert set(resume["seconds_by_context"]) == set(resume["evaluated_by_context"]) == sizes
    assert set(resume["reprefill_seconds_by_context"]) == sizes
    assert figures["warm_start"]["prefix_tokens_loaded"] > 0  # the warm run loaded the state

    host = figures["host"]  # benchmarks/host.py: sessions at once, resume from saved KV
    sessions, restored = host["sessions"], host["resume"]
    assert set(sessions["tokens_per_s"]) == {"1", "2"}
    assert all(v > 0 for v in sessions["tokens_per_s"].values())
    assert sessions["identical_to_alone"] == {"1": True, "2": True}
    assert restored["evaluated_after_restore"] == 1  # the last token, for its logits
    assert restored["context_tokens"] > 32 and restored["state_mb"] > 0
    lookup = figures["lookup"]  # benchmarks/lookup.py: prompt lookup beside plain decoding
    for key in ("copy", "free", "free_sampled"):
        f = lookup[key]
        assert f["plain_tok_s"] > 0 and f["lookup_tok_s"] > 0 and f["ratio"] > 0
        assert 0 <= f["accepted"] <= f["drafted"]
    assert lookup["tool_stop"]["stops_at_call"] == lookup["tool_stop"]["calls"] == 2
    assert lookup["tool_stop"]["tokens_after_tool_call"] == 0
    assert tiny_backend._lookup is not None  # the plain runs gave it back

    table = bench.table(figures)
    assert "K=1" in table and "time to first token" in table
    assert "copy-heavy step" in table and "</tool_call>" in table and "sessions at once" in table
    json.dumps(figures)  # what --json writes
    written = bench.charts(figures, tmp_path)
    assert {p.name for p in written} == {"prefill_vs_k.svg", "resume_latency.svg"}
    assert all(p.read_text().startswith("<svg") for p in written)
