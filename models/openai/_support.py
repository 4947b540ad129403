"""Small helpers of :mod:`models.openai.backend`: what ``/props`` says, display names, the caller's
stop strings, and why a stream ended too early."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from models.openai._http import StreamState
from models.openai._usage import Attempt
from models.qwq import chat_template as templates


class StopWatch:
    """Finds the caller's stop strings in the streamed text, across chunk boundaries."""

    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = [s for s in stops if s]
        self.keep = max((len(s) for s in self.stops), default=0)
        self.tail = ""

    def hit(self, text: str) -> bool:
        """Whether a stop string is complete once ``text`` is added."""
        if not self.stops:
            return False
        window = self.tail + text
        self.tail = window[-self.keep :]
        return any(stop in window for stop in self.stops)


def first_choice(event: Mapping[str, Any]) -> dict[str, Any]:
    """The first choice of a streamed event (``{}`` when there is none)."""
    choices = event.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        return choices[0]
    return {}


def cut_detail(state: StreamState, attempt: Attempt) -> str:
    """Why a stream that ended without a ``finish_reason`` probably did."""
    if state.done:
        return (
            "it ended with [DONE] but no finish_reason: the request was interrupted (a "
            "llama-cpp-python server started with interrupt_requests on does this when "
            "another request arrives)"
        )
    if not attempt.chunks:
        return (
            "it ended before any output (a llama-cpp-python server does this when the prompt "
            "is longer than its context window)"
        )
    return "it ended without a finish_reason"


def n_ctx(props: Mapping[str, Any]) -> int:
    """llama.cpp's context size from ``/props`` (0 when it says nothing)."""
    settings = props.get("default_generation_settings")
    for source in (props, settings if isinstance(settings, dict) else {}):
        value = source.get("n_ctx")
        if isinstance(value, int) and value > 0:
            return value
    return 0


def usable_template(value: Any) -> str | None:
    """The server's chat template, if it renders here (else the built-in one is used)."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        templates.render(value, [{"role": "user", "content": "x"}])
    except templates.TemplateError:
        return None
    return value


def opens_thinking_of(template: str) -> bool:
    """Whether the template's generation prompt opens ``<think>`` (``False`` if it fails)."""
    try:
        return templates.opens_thinking(template)
    except templates.TemplateError:
        return False


def short_model(model: str) -> str:
    """A display form of a model id: a GGUF path's file name, else the id."""
    if not model:
        return "server"
    return model.rsplit("/", 1)[-1] if model.endswith(".gguf") else model
