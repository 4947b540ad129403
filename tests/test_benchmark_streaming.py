"""The client-CPU-per-token benchmark runs a real multi-step run through the server backend."""

from __future__ import annotations

from benchmarks.streaming import client_cpu_per_token


def test_the_figure_comes_from_a_completed_run_with_its_transcript() -> None:
    figure = client_cpu_per_token(steps=3, tokens=40, prompt_tokens=200, counters=False)
    assert figure["tokens"] == 120 and figure["steps"] == 3
    assert figure["us_per_token"] > 0 and figure["cpu_s"] > 0
    # run_started, the events (tool calls and results among them), messages
    assert figure["transcript_lines"] >= 1 + 2 * 2 + 1
