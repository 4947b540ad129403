"""A session transcript as a Markdown document (what ``/save`` writes).

The Markdown keeps the order of what happened: each prompt, the thinking (as a quote), each
tool call with its arguments and result at the place in the thinking where it was made,
and the answer. Text is taken from the transcript as it is (a file, not a terminal), so no
escaping for the terminal is needed; code fences are made longer than any backtick run
inside them so a result cannot close its fence early.
"""

from __future__ import annotations

import json
import re

from agent import Error, Finished, Text, Thinking, ToolCallEvent, ToolResult, Transcript


def _fence(text: str, info: str = "") -> str:
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    ticks = "`" * max(3, longest + 1)
    return f"{ticks}{info}\n{text}\n{ticks}"


def _quote(text: str) -> str:
    return "\n".join("> " + line if line else ">" for line in text.strip().split("\n"))


def _flush(out: list[str], thinking: list[str]) -> None:
    """Move the thinking collected so far to ``out``, as a quote."""
    if "".join(thinking).strip():
        out.append(_quote("".join(thinking)))
    thinking.clear()


def transcript_markdown(transcript: Transcript) -> str:
    """The whole session as Markdown."""
    out: list[str] = [f"# qwq-agent session `{transcript.path.name}`"]
    for run in transcript.runs:
        out.append(f"## You\n\n{run.prompt}")
        thinking: list[str] = []
        answer: list[str] = []
        for event in run.events:
            if isinstance(event, Thinking):
                thinking.append(event.text)
            elif isinstance(event, Text):
                answer.append(event.text)
            elif isinstance(event, ToolCallEvent):
                _flush(out, thinking)
                arguments = json.dumps(event.call.arguments, ensure_ascii=False, indent=2)
                out.append(f"**Tool call** `{event.call.name}`\n\n" + _fence(arguments, "json"))
            elif isinstance(event, ToolResult):
                label = "Result" if event.ok else f"Error ({event.error_type})"
                body = event.output if event.ok else event.error
                out.append(f"**{label}** ({event.duration:.2f} s)\n\n" + _fence(body or ""))
            elif isinstance(event, Error) and event.fatal:
                out.append(f"**Error:** {event.message}")
            elif isinstance(event, Finished) and event.reason != "completed":
                out.append(f"*Stopped: {event.reason}. {event.detail}*")
        _flush(out, thinking)
        if "".join(answer).strip():
            out.append("### Answer\n\n" + "".join(answer).strip())
    return "\n\n".join(out) + "\n"
