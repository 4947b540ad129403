"""Answers written as a call in a format that is not QwQ's, and what the model is told.

Models trained on other tool formats sometimes end their turn with a "call" the runtime does
not run: ``<function=NAME>{...}</function>``, ``<function name="NAME">``, or a
``{"name": <a registered tool>, "arguments": ...}`` object bare, in a code fence (```json,
```xml or plain) or wrapped in ``<tool>``, ``<tools>``, ``<response>``, ``<json>``, ``<xml>``
or ``<function_call>``. Other runtimes (llama.cpp's Hermes parser) run these. This one never
runs them, because outside an explicit ``<tool_call>`` nothing is a call, and never lets them
pass silently as the answer either: the loop feeds back one observation that shows the right
format (:func:`unrun_feedback`), at most once per run for the same text, so an answer that
really is such JSON still ends the run when the model gives it again.

Only an answer that *starts* with the call counts: JSON quoted after prose ("here is an
example: {...}") is an answer.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection
from typing import Any

from agent.call_json import relax_json
from agent.parser import CallError
from models.qwq.tags import CALL_CLOSE, CALL_OPEN

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)
_WRAPPER = re.compile(
    r"<(tool|tools|response|json|xml|function_call)>\s*(.*?)\s*(?:</\1>|\Z)",
    re.DOTALL | re.IGNORECASE,
)
_FUNCTION = re.compile(r'<function(?:=([^>\s]+)|\s+name\s*=\s*"([^"]+)")\s*>')
_TOOL_CALL_TAG = re.compile(rf"{CALL_OPEN}\s*(.*?)\s*(?:{CALL_CLOSE}|\Z)", re.DOTALL)


def near_miss(answer: str, tool_names: Collection[str]) -> str | None:
    """How ``answer`` is written if it is essentially a call in a foreign format, else ``None``.

    Args:
        answer: the answer text (after ``</think>``), as shown.
        tool_names: the registered tools; a JSON object counts only when it names one.

    Returns:
        A short description of the form found, for the observation (e.g. ``"<tool> tags"``).
    """
    text = answer.strip()
    fence = _FENCE.match(text)
    if fence:
        inner = _form(fence.group(2).strip(), tool_names)
        if inner is not None:
            return f"a ```{fence.group(1)} code block around {inner}"
        return None
    return _form(text, tool_names)


def _form(text: str, tool_names: Collection[str]) -> str | None:
    function = _FUNCTION.match(text)
    if function:
        name = function.group(1) or function.group(2)
        return f"<function={name}> tags" if function.group(1) else f'<function name="{name}">'
    wrapper = _WRAPPER.match(text)
    if wrapper and _is_call_json(wrapper.group(2), tool_names):
        return f"JSON inside <{wrapper.group(1)}> tags"
    tool_call = _TOOL_CALL_TAG.match(text)
    if tool_call:  # a <tool_call> that did not open a call: its content is not one object
        return "a <tool_call> block that does not hold one JSON object"
    if text[:1] in "{[" and _is_call_json(text, tool_names):
        return "a bare JSON object, without <tool_call> tags"
    return None


def _is_call_json(text: str, tool_names: Collection[str]) -> bool:
    """Whether ``text`` starts with a call object (or a list of them) naming a known tool."""
    value = _first_json(text)
    items = value if isinstance(value, list) and value else [value]
    return all(_names_tool(item, tool_names) for item in items)


def _names_tool(value: Any, tool_names: Collection[str]) -> bool:
    if not isinstance(value, dict) or value.get("name") not in tool_names:
        return False
    return set(value) <= {"name", "arguments", "parameters", "id", "type"}


def _first_json(text: str) -> Any:
    """The JSON value at the start of ``text`` (strict, then with single quotes and trailing
    commas forgiven), or ``None``."""
    decoder = json.JSONDecoder()
    for candidate in (text, relax_json(text)):
        if candidate is None:
            continue
        try:
            return decoder.raw_decode(candidate)[0]
        except ValueError:
            continue
    return None


def unrun_feedback(
    answer: str,
    tool_names: Collection[str],
    *,
    invented_response: bool,
    already_told: set[str],
    end: int,
) -> CallError | None:
    """The observation for a step that ran nothing and would end the run, if it needs one.

    Args:
        answer: the step's answer text, stripped.
        tool_names: the registered tools.
        invented_response: the model wrote ``<tool_response>`` itself in this step.
        already_told: answers fed back earlier in this run; updated here.
        end: offset just past the step's text (for the error record).

    Returns:
        ``None`` when the step really ends the run (an answer, or a near miss already told
        once), else the :class:`CallError` to feed back.
    """
    import prompts

    if invented_response and not answer:
        message = prompts.render("invented_response")
        return CallError(message, "answer", "", True, end, kind="invented_response")
    if not answer or answer in already_told or not tool_names:
        return None
    form = near_miss(answer, tool_names)
    if form is None:
        return None
    already_told.add(answer)
    message = prompts.render("near_miss_call", form=form)
    return CallError(message, "answer", answer, True, end, kind="near_miss")
