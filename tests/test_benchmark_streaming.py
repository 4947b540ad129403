"""The client-CPU-per-token benchmark runs a real multi-step run through the server backend."""

from __future__ import annotations

from benchmarks.streaming import client_cpu_per_token


def test_the_figure_comes_from_a_completed_run_with_its_transcript() -> None:
    figure = client_cpu_per_token(steps=3, tokens=40, prompt_tokens=200, counters=False)
    assert figure["tokens"] == 120 and figure["steps"] == 3
    assert figure["us_per_token"] > 0 and figure["cpu_s"] > 0
    # run_started, the events (tool calls and results among them), messages
    assert figure["transcript_lines"] >= 1 + 2 * 2 + 1


def test_the_figures_hold_the_per_event_transcript_beside() -> None:
    from benchmarks.streaming import figures

    quick = figures(quick=True)
    per_event, coalesced = quick["per_event_transcript"], quick["with_counters"]
    # a line per delta (the call's pieces become one tool_call line) against merged deltas
    assert per_event["transcript_lines"] > per_event["tokens"] // 2
    assert coalesced["transcript_lines"] <= per_event["transcript_lines"]
    from agent import transcript

    assert transcript.FLUSH_INTERVAL > 0  # put back after the per-event run
