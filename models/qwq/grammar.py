"""GBNF grammars that constrain a generation to a tool call.

:func:`tool_call_grammar` builds the grammar behind ``tool_choice="required"``: optional free
text (the thinking), then exactly one call in the QwQ format::

    <tool_call>
    {"name": "add", "arguments": {"a": 2, "b": 3}}
    </tool_call>

where the JSON object matches one of the declared tools: ``name`` is that tool's name and
``arguments`` follows its JSON Schema. After ``</tool_call>`` the grammar is complete, so the
only token left to the sampler is the end of turn. The JSON part is produced by llama.cpp's
own JSON-Schema converter (``llama_cpp.llama_grammar.SchemaConverter``); llama_cpp is imported
lazily, so importing this module is cheap.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from models.qwq.tags import CALL_CLOSE, CALL_OPEN

TOOL_CALL_OPEN = f"{CALL_OPEN}\n"
TOOL_CALL_CLOSE = f"\n{CALL_CLOSE}"

# Free text that cannot start a call: any character but "<", or a "<" not followed by "t"
# (so "</think>", "a < b" are fine, "<tool_call>" is not). The call itself follows.
_THOUGHT_RULE = r'thought ::= ( [^<] | "<" [^t] )*'


class GrammarError(ValueError):
    """A tool specification cannot be turned into a grammar."""


def tool_call_grammar(tool_specs: Sequence[Mapping[str, Any]], allow_thinking: bool) -> str:
    """A GBNF grammar for "optional free text, then exactly one tool call".

    Args:
        tool_specs: the declared tools, as ``{"type": "function", "function": {"name",
            "description", "parameters"}}`` dicts (the bare ``{"name", "parameters"}``
            form is accepted too).
        allow_thinking: whether free text (the model's thinking, e.g. ending with
            ``</think>``) may come before the call; when not, the output starts with
            ``<tool_call>``.

    Returns:
        The grammar text, with ``root`` as its start rule.

    Raises:
        GrammarError: no tools were given, a tool has no name, or a schema cannot be
            converted.
    """
    from llama_cpp.llama_grammar import SchemaConverter

    if not tool_specs:
        raise GrammarError("a tool-call grammar needs at least one declared tool")
    alternatives = [_call_schema(spec) for spec in tool_specs]
    schema: dict[str, Any] = alternatives[0] if len(alternatives) == 1 else {"anyOf": alternatives}
    converter = SchemaConverter(prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False)  # type: ignore[no-untyped-call]
    try:
        schema = converter.resolve_refs(schema, "tools")
        call_rule = converter.visit(schema, "call")  # type: ignore[no-untyped-call]
    except (AssertionError, KeyError, ValueError, TypeError) as exc:
        raise GrammarError(f"cannot build a grammar from the tools' schemas: {exc}") from exc
    rules = _json_strings(converter.format_grammar())  # type: ignore[no-untyped-call]
    head = f"root ::= {'thought ' if allow_thinking else ''}call-block"
    block = f"call-block ::= {_literal(TOOL_CALL_OPEN)} {call_rule} {_literal(TOOL_CALL_CLOSE)}"
    parts = [head, block, rules]
    if allow_thinking:
        parts.insert(2, _THOUGHT_RULE)
    return "\n".join(parts) + "\n"


def _call_schema(spec: Mapping[str, Any]) -> dict[str, Any]:
    function = spec.get("function", spec)
    if not isinstance(function, Mapping) or not isinstance(function.get("name"), str):
        raise GrammarError(f"a tool spec needs a function name: {dict(spec)!r}")
    parameters = function.get("parameters") or {"type": "object", "properties": {}}
    if not isinstance(parameters, Mapping):
        raise GrammarError(
            f"the parameters of tool {function['name']!r} must be a JSON Schema object, "
            f"not {parameters!r}"
        )
    return {
        "type": "object",
        "properties": {
            "name": {"const": function["name"]},
            "arguments": json.loads(json.dumps(parameters)),  # a deep, plain copy
        },
        "required": ["name", "arguments"],
        "additionalProperties": False,
    }


_LAX_CHAR = 'char ::= [^"\\\\] |'
_JSON_CHAR = 'char ::= [^"\\\\\\x7F\\x00-\\x1F] |'


def _json_strings(rules: str) -> str:
    """The converter's rules with JSON strings that cannot hold raw control characters.

    llama-cpp-python's converter lets a string hold raw newlines, which JSON forbids; a weak
    model then writes its whole answer, ``</tool_call>`` included, inside an argument that
    never closes. Newer llama.cpp converters exclude them the same way.
    """
    return rules.replace(_LAX_CHAR, _JSON_CHAR)


def _literal(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'
