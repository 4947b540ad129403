"""The benchmark harness runs in a tiny configuration, so it cannot rot."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import __main__ as bench
from benchmarks.chart import line_chart
from benchmarks.llama import gbnf_literal
from tests.real_model import requires_tiny_model


def test_runtime_only_figures(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "figures.json"
    assert bench.main(["--model", "none", "--quick", "--json", str(out)]) == 0
    figures = json.loads(out.read_text())
    assert figures["parser"]["mb_per_s"] > 0
    assert figures["parallel_tools"]["speedup"] > 1.5  # 4 calls of 0.2 s overlap
    assert figures["startup"]["heavy_modules_imported"] == "none"
    assert "parser throughput" in capsys.readouterr().out


def test_chart_is_svg_with_every_series() -> None:
    svg = line_chart("T", "x", "y", {"a <b>": [(1, 2.0), (4, 3.0)], "c": [(1, 1.0)]})
    assert svg.startswith("<svg") and svg.rstrip().endswith("</svg>")
    assert "a &lt;b&gt;" in svg and svg.count("<polyline") == 2


def test_gbnf_literal_escapes() -> None:
    assert gbnf_literal('a"b\\c\nd') == 'root ::= "a\\"b\\\\c\\nd"'


@pytest.mark.real_model
@requires_tiny_model
def test_model_figures_on_the_tiny_model(tmp_path: Path) -> None:
    out = tmp_path / "figures.json"
    charts = tmp_path / "charts"
    assert (
        bench.main(
            [
                "--model",
                "smollm2-135m",
                "--quick",
                "--ctx",
                "2048",
                "--json",
                str(out),
                "--charts",
                str(charts),
            ]
        )
        == 0
    )
    figures = json.loads(out.read_text())
    for episode in figures["episodes"]:
        assert episode["ratio"] <= 1.02  # nothing is evaluated twice
        assert episode["wasted_tokens"] == 0 and episode["stops_at_call"] == episode["k"]
    assert figures["decode"]["ratio"] > 0
    resume = figures["resume"]
    assert set(resume["evaluated_by_context"]) == set(resume["reprefill_seconds_by_context"])
    # a resume evaluates the observation (+ the sampled token), whatever the context
    assert len(set(resume["evaluated_by_context"].values())) == 1
    assert 40 < next(iter(resume["evaluated_by_context"].values())) < 100
    assert (charts / "prefill_vs_k.svg").is_file() and (charts / "resume_latency.svg").is_file()
