"""How tool results go back into the context, in the QwQ format, made inert first.

A result of a call made after ``</think>`` becomes a user turn of ``<tool_response>`` blocks
and a new generation prompt, exactly as the QwQ template renders them
(:func:`tool_results_segments`); a result of a call made inside the thinking is a
``<tool_response>`` block right there (:func:`inline_result_segments`). These are the only
builders of ``"data"`` segments: every observation passes through the model's
:class:`~models.control_tokens.Neutraliser`, a required argument, so no caller can skip it.
"""

from __future__ import annotations

from collections.abc import Sequence

from models.base import Segment
from models.control_tokens import Neutraliser, neutraliser
from models.qwq.tags import RESPONSE_CLOSE, RESPONSE_OPEN, THINK_OPEN


class Feedback(str):
    """An observation the runtime wrote itself (a parse error, how to write a call), which may
    quote the model's own output back to it.

    The builders below make it inert with :meth:`Neutraliser.feedback` (every control
    token, so a quoted ``<|im_start|>system`` opens nothing, and the observation tags, so a
    quoted ``</tool_response>`` ends nothing) and keep the call and thinking tags, so the
    hints it gives (``<tool_call>`` …) reach the model exactly. Every other observation
    is tool output or error text from outside and goes through :meth:`Neutraliser.data`. A
    string operation on a ``Feedback`` gives a plain ``str``, i.e. the stricter treatment.
    """

    __slots__ = ()


def _observation(output: str, inert: Neutraliser) -> Segment:
    text = inert.feedback(output) if isinstance(output, Feedback) else inert.data(output)
    return Segment(text, "data")


def tool_results_segments(
    outputs: Sequence[str], *, opens_thinking: bool, inert: Neutraliser
) -> list[Segment]:
    """The context that follows an assistant turn whose calls were made after ``</think>``.

    Its text equals what the QwQ template renders for the end of that assistant message, the
    following ``tool`` messages (one user turn of ``<tool_response>`` blocks) and the next
    generation prompt. The outputs, made inert here (:meth:`Neutraliser.data`, or
    :meth:`Neutraliser.feedback` for :class:`Feedback`), are ``"data"`` segments, the
    markup around them ``"template"`` segments.
    """
    segments: list[Segment] = []
    markup = "<|im_end|>\n<|im_start|>user"
    for output in outputs:
        segments.append(Segment(f"{markup}\n{RESPONSE_OPEN}\n", "template"))
        segments.append(_observation(output, inert))
        markup = f"\n{RESPONSE_CLOSE}"
    tail = (
        markup
        + "<|im_end|>\n<|im_start|>assistant\n"
        + (f"{THINK_OPEN}\n" if opens_thinking else "")
    )
    segments.append(Segment(tail, "template"))
    return segments


def inline_result_segments(output: str, *, inert: Neutraliser) -> list[Segment]:
    """The context inserted right after a call made inside the thinking (the "interleaved"
    placement): the result, made inert, in a ``<tool_response>`` block, after which the
    thought goes on."""
    return [
        Segment(f"\n{RESPONSE_OPEN}\n", "template"),
        _observation(output, inert),
        Segment(f"\n{RESPONSE_CLOSE}\n", "template"),
    ]


def tool_results_turn(
    outputs: Sequence[str], *, opens_thinking: bool, inert: Neutraliser | None = None
) -> str:
    """The text of :func:`tool_results_segments` (``inert``: the common tokens' by default)."""
    segments = tool_results_segments(
        outputs, opens_thinking=opens_thinking, inert=inert or neutraliser()
    )
    return "".join(s.text for s in segments)
