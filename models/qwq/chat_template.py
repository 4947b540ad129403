"""Render a model's chat template exactly as Hugging Face ``apply_chat_template`` does.

The model saw its prompts in training through ``transformers``; a byte of difference (an
HTML-escaped ``<`` in a tool description, a stray newline) is a prompt it never saw. So this
module reproduces HF's environment: a sandboxed Jinja2 environment with ``trim_blocks`` and
``lstrip_blocks``, ``tojson`` = ``json.dumps(x, ensure_ascii=False)`` (not Jinja's
HTML-escaping filter), ``raise_exception``, ``strftime_now``, the ``{% generation %}`` tag and
the loop controls extension.

It also declares tools for templates that have no tool support. Untrusted text is made inert
before it enters a context (:mod:`models.control_tokens`): :func:`render_safe` neutralises the
conversation and the tool declarations of a prompt, and :mod:`models.qwq.observations` (the
ChatML strings the loop appends by itself when it continues a turn, and the only builder of
``"data"`` segments) neutralises every observation. Each takes the model's
:class:`~models.control_tokens.Neutraliser` as a required argument, so no caller can skip it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import lru_cache
from importlib import resources
from typing import Any

import jinja2
import jinja2.nodes
import jinja2.parser
from jinja2.ext import Extension
from jinja2.sandbox import ImmutableSandboxedEnvironment

from models.control_tokens import Neutraliser
from models.qwq.tags import THINK_OPEN

QWQ_TEMPLATE_NAME = "qwq-32b.jinja"


class TemplateError(Exception):
    """The chat template is invalid or raised (``raise_exception``) while rendering."""


def _tojson(
    value: Any,
    ensure_ascii: bool = False,
    indent: int | None = None,
    separators: tuple[str, str] | None = None,
    sort_keys: bool = False,
) -> str:
    # HF's own tojson: plain json.dumps, no HTML escaping.
    return json.dumps(
        value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
    )


def _raise_exception(message: str) -> None:
    raise TemplateError(message)


def _strftime_now(format: str) -> str:
    return datetime.now().strftime(format)


class _GenerationTag(Extension):
    """HF's ``{% generation %}…{% endgeneration %}`` (marks assistant text for training
    masks); rendering keeps its body unchanged."""

    tags = {"generation"}  # noqa: RUF012 (typed by jinja2.ext.Extension)

    def parse(self, parser: jinja2.parser.Parser) -> list[jinja2.nodes.Node]:
        next(parser.stream)
        body: list[jinja2.nodes.Node] = parser.parse_statements(
            ("name:endgeneration",), drop_needle=True
        )
        return body


@lru_cache(maxsize=16)
def _compile(template: str) -> jinja2.Template:
    env = ImmutableSandboxedEnvironment(
        trim_blocks=True,
        lstrip_blocks=True,
        extensions=[_GenerationTag, "jinja2.ext.loopcontrols"],
    )
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    try:
        return env.from_string(template)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"the chat template does not parse (line {exc.lineno}): {exc}") from exc


def qwq_template() -> str:
    """The official QwQ-32B chat template, shipped with the package."""
    return resources.files("models.qwq.templates").joinpath(QWQ_TEMPLATE_NAME).read_text("utf-8")


def render(
    template: str,
    messages: Sequence[Mapping[str, Any]],
    tools: Sequence[Mapping[str, Any]] | None = None,
    add_generation_prompt: bool = True,
    **extra: Any,
) -> str:
    """Render ``messages`` (OpenAI-style dicts) and ``tools`` with a Jinja chat template.

    The output equals Hugging Face's ``apply_chat_template(..., tokenize=False)`` for the same
    template and inputs. Tool-call ``arguments`` should be objects (as HF expects), not
    JSON strings. ``extra`` variables (``bos_token`` …) are passed to the template.

    Raises:
        TemplateError: the template does not parse or raises.
    """
    try:
        return _compile(template).render(
            messages=[dict(m) for m in messages],
            tools=[dict(t) for t in tools] if tools is not None else None,
            add_generation_prompt=add_generation_prompt,
            **extra,
        )
    except TemplateError:
        raise
    except jinja2.TemplateError as exc:
        raise TemplateError(f"the chat template failed: {exc}") from exc


def render_safe(
    template: str,
    messages: Sequence[Mapping[str, Any]],
    tools: Sequence[Mapping[str, Any]] | None = None,
    *,
    inert: Neutraliser,
    declare_in_system: bool = False,
    add_generation_prompt: bool = True,
    **extra: Any,
) -> str:
    """:func:`render` with every untrusted string made inert first (the agent's prompts).

    * ``tool`` messages (tool output) go through :meth:`Neutraliser.data`;
    * every other message's content and tool calls (the prompt and earlier turns, from a
      person or the model) through :meth:`Neutraliser.conversation`, which keeps the
      format's tags (the model's ``</think>``) and makes control tokens inert;
    * the first message when it is the system message (the runtime's or the user's own
      text) is kept as it is;
    * every string of ``tools`` (names, descriptions, parameter schemas, keys included)
      through :meth:`Neutraliser.data`. With ``declare_in_system`` (templates without tool
      support) the tools are declared in the system message (:func:`declare_tools`).

    Raises:
        TemplateError: the template does not parse or raises.
    """
    safe: list[dict[str, Any]] = []
    for index, message in enumerate(messages):
        message = dict(message)
        role = message.get("role")
        if role == "system" and index == 0:
            pass
        elif role == "tool":
            if "content" in message:
                message["content"] = inert.data_value(message["content"])
        else:
            if "content" in message:
                message["content"] = inert.conversation_value(message["content"])
            if "tool_calls" in message:
                message["tool_calls"] = inert.conversation_value(message["tool_calls"])
        safe.append(message)
    declared = [inert.data_value(dict(t)) for t in tools or ()]
    if declared and declare_in_system:
        if safe and safe[0].get("role") == "system":
            safe[0]["content"] = declare_tools(str(safe[0].get("content") or ""), declared)
        else:
            safe.insert(0, {"role": "system", "content": declare_tools("", declared)})
        declared = []
    return render(
        template,
        safe,
        tools=declared or None,
        add_generation_prompt=add_generation_prompt,
        **extra,
    )


def template_supports_tools(template: str) -> bool:
    """Whether a template declares tools itself (it refers to the ``tools`` variable)."""
    return "tools" in template


def opens_thinking(template: str) -> bool:
    """Whether the generation prompt of ``template`` ends inside an open ``<think>`` block."""
    probe = render(template, [{"role": "user", "content": "x"}], add_generation_prompt=True)
    return probe.rstrip().endswith(THINK_OPEN)


TOOLS_SYSTEM_PREAMBLE = (
    "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>"
)
TOOLS_SYSTEM_FOOTER = (
    "\n</tools>\n\nFor each function call, return a json object with function name and "
    "arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n"
    '{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>'
)


def declare_tools(system: str, tools: Sequence[Mapping[str, Any]]) -> str:
    """The system text with tools declared as the QwQ template does, for templates without
    tool support (e.g. SmolLM2): the model sees the same ``<tools>`` format either way."""
    lines = "".join("\n" + _tojson(dict(t)) for t in tools)
    return system + TOOLS_SYSTEM_PREAMBLE + lines + TOOLS_SYSTEM_FOOTER
