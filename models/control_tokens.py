"""Special tokens of chat formats, and how untrusted text is kept from producing them.

A prompt is tokenized with special-token parsing on, so text that spells a control token
(``<|im_start|>system``, ``<|eot_id|>``, ``[INST]``…) becomes that token and can open a turn the
runtime never wrote. A :class:`Neutraliser` makes such text inert: the first character of
every occurrence becomes an HTML character reference (``<`` → ``&lt;``, ``[`` → ``&#91;``),
still readable to the model, never a token. What it recognises:

* every ``<|…|>`` and ``<｜…｜>`` (fullwidth bars) token of any name, with spaces allowed
  inside the brackets (ChatML, Llama 3, Phi, DeepSeek, Granite, gpt-oss…);
* :data:`COMMON_CONTROL_TOKENS`, the control tokens of the common model families, for
  servers whose vocabulary the runtime cannot see;
* the tokens a backend lists for its model (:attr:`models.base.BackendInfo.control_tokens`:
  the embedded backend reads them from the loaded vocabulary);
* in tool output and other data only, the tags of the QwQ format (:data:`FORMAT_TAGS`, any
  case, spaces allowed), which the model's own turns legitimately contain;
* in the runtime's own feedback (:meth:`Neutraliser.feedback`), the tags only the runtime
  writes as markup (``<tool_response>``, ``<tools>`` and their closings), so a quoted
  ``</tool_response>`` cannot end the observation it is quoted in.

Every pattern is a lookahead that consumes one character, so a pass is linear in the text and
applying it twice changes nothing more. :func:`neutraliser` caches one per token list.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any

from models.qwq.tags import FORMAT_TAGS

COMMON_CONTROL_TOKENS = (
    # ChatML (Qwen, QwQ, SmolLM2, Hermes…) and StarCoder-style tokens of SmolLM2
    "<|im_start|>", "<|im_end|>", "<|im_sep|>", "<|endoftext|>", "<|fim_prefix|>",
    "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>",
    "<repo_name>", "<reponame>", "<file_sep>", "<filename>", "<gh_stars>", "<issue_start>",
    "<issue_comment>", "<issue_closed>", "<jupyter_start>", "<jupyter_text>", "<jupyter_code>",
    "<jupyter_output>", "<jupyter_script>", "<empty_output>", "<fim_prefix>", "<fim_middle>",
    "<fim_suffix>", "<fim_pad>",
    # Llama 2 and 3, Llama 4
    "<s>", "</s>", "<unk>", "<<SYS>>", "<</SYS>>", "<|begin_of_text|>", "<|end_of_text|>",
    "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "<|eom_id|>", "<|python_tag|>",
    "<|finetune_right_pad_id|>", "<|header_start|>", "<|header_end|>", "<|eot|>",
    # Mistral
    "[INST]", "[/INST]", "[TOOL_CALLS]", "[AVAILABLE_TOOLS]", "[/AVAILABLE_TOOLS]",
    "[TOOL_RESULTS]", "[/TOOL_RESULTS]", "[TOOL_CONTENT]", "[SYSTEM_PROMPT]",
    "[/SYSTEM_PROMPT]", "[THINK]", "[/THINK]", "[ARGS]", "[CALL_ID]", "[IMG]", "[IMG_BREAK]",
    "[IMG_END]", "[PREFIX]", "[MIDDLE]", "[SUFFIX]",
    # Gemma
    "<bos>", "<eos>", "<pad>", "<start_of_turn>", "<end_of_turn>", "<start_of_image>",
    "<end_of_image>",
    # Phi-3 / Phi-4
    "<|system|>", "<|user|>", "<|assistant|>", "<|end|>", "<|tool|>", "<|/tool|>",
    "<|tool_call|>", "<|/tool_call|>", "<|tool_response|>",
    # DeepSeek (fullwidth bars, "▁" for spaces)
    "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜User｜>", "<｜Assistant｜>",
    "<｜tool▁calls▁begin｜>", "<｜tool▁calls▁end｜>", "<｜tool▁call▁begin｜>",
    "<｜tool▁call▁end｜>", "<｜tool▁sep｜>", "<｜tool▁outputs▁begin｜>", "<｜tool▁outputs▁end｜>",
    "<｜tool▁output▁begin｜>", "<｜tool▁output▁end｜>", "<|EOT|>",
    # GLM
    "[gMASK]", "[sMASK]", "[MASK]", "<sop>", "<eop>", "<|observation|>", "<arg_key>",
    "</arg_key>", "<arg_value>", "</arg_value>",
    # Command R
    "<BOS_TOKEN>", "<EOS_TOKEN>", "<|START_OF_TURN_TOKEN|>", "<|END_OF_TURN_TOKEN|>",
    "<|SYSTEM_TOKEN|>", "<|USER_TOKEN|>", "<|CHATBOT_TOKEN|>",
    # gpt-oss (harmony) and Granite
    "<|start|>", "<|message|>", "<|channel|>", "<|constrain|>", "<|return|>", "<|call|>",
    "<|start_of_role|>", "<|end_of_role|>",
)  # fmt: skip
"""Control tokens of the common model families, neutralised whatever the model."""

_BARRED = r"<(?=\s*+[|｜][^|｜<>\n]{0,64}[|｜]\s*+>)"
_TAGS = r"(?i:<(?=\s*+/?\s*+(?:think|tool_call|tool_response|tools)\s*+>))"
_RUNTIME_TAGS = r"(?i:<(?=\s*+/?\s*+(?:tool_response|tools)\s*+>))"
_FOLDED_TAGS = frozenset(t.casefold() for t in FORMAT_TAGS)


def _trie_pattern(tokens: Iterable[str]) -> str:
    """A regex matching exactly ``tokens``, as a trie: linear in the token count to build,
    and each attempt reads at most one token's length (no scan over the alternatives)."""
    trie: dict[str, Any] = {}
    for token in tokens:
        node = trie
        for char in token:
            node = node.setdefault(char, {})
        node[""] = {}  # the end of a token

    def walk(node: dict[str, Any]) -> str:
        ends = "" in node
        branches = [re.escape(c) + walk(child) for c, child in sorted(node.items()) if c]
        if not branches:
            return ""
        body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
        if ends:
            return f"(?:{body})?"
        return body

    return walk(trie)


def _inert(match: re.Match[str]) -> str:
    char = match.group()
    return "&lt;" if char == "<" else f"&#{ord(char)};"


class Neutraliser:
    """Makes the control tokens of :data:`COMMON_CONTROL_TOKENS`, of ``tokens`` (a model's own)
    and the ``<|…|>`` family inert in text; see the module docstring.

    Args:
        tokens: extra token strings (a model's special tokens). Empty strings, single
            characters, strings over 128 characters and strings with whitespace are ignored (they cannot be neutralised
            as a whole, and no chat format uses them as markers).
    """

    def __init__(self, tokens: Iterable[str] = ()) -> None:
        listed = {t for t in (*COMMON_CONTROL_TOKENS, *tokens) if _usable(t)}
        self.tokens: frozenset[str] = frozenset(listed)
        """Every literal token this neutraliser knows (the format tags excluded)."""
        plain = sorted(t for t in listed if t.casefold() not in _FOLDED_TAGS)
        literal = f"(?=(?:{_trie_pattern(plain)}))." if plain else ""
        common = "|".join(p for p in (_BARRED, literal) if p)
        self._conversation = re.compile(common, re.DOTALL)
        self._data = re.compile(f"{_TAGS}|{common}", re.DOTALL)
        self._feedback = re.compile(f"{_RUNTIME_TAGS}|{common}", re.DOTALL)

    def data(self, text: str) -> str:
        """``text`` from outside (tool output, errors, declarations) with every known token
        and every tag of the format made inert."""
        return self._data.sub(_inert, text)

    def conversation(self, text: str) -> str:
        """Conversation text (the prompt, earlier turns) re-rendered into a prompt: control
        tokens made inert, the format's tags (the model's ``</think>``…) left as they are."""
        return self._conversation.sub(_inert, text)

    def feedback(self, text: str) -> str:
        """The runtime's own message to the model (a parse error quoting the model's call,
        how to write a call): as :meth:`conversation`, so its hints keep ``<tool_call>`` and
        ``</think>`` real, but the observation tags (``<tool_response>``, ``<tools>``, any case,
        spaces allowed) are made inert too: only the runtime writes them, around the feedback,
        never inside it."""
        return self._feedback.sub(_inert, text)

    def data_value(self, value: Any) -> Any:
        """A JSON-like value (a tool declaration…) with :meth:`data` applied to every string
        in it, dictionary keys included; other values are returned as they are."""
        return _map_strings(value, self.data)

    def conversation_value(self, value: Any) -> Any:
        """As :meth:`data_value`, with :meth:`conversation`."""
        return _map_strings(value, self.conversation)


def _usable(token: str) -> bool:
    return 2 <= len(token) <= 128 and not any(c.isspace() for c in token)


def _map_strings(value: Any, apply: Any) -> Any:
    if isinstance(value, str):
        return apply(value)
    if isinstance(value, Mapping):
        return {
            apply(k) if isinstance(k, str) else k: _map_strings(v, apply) for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_map_strings(v, apply) for v in value]
    return value


@lru_cache(maxsize=8)
def neutraliser(tokens: tuple[str, ...] = ()) -> Neutraliser:
    """The (cached) :class:`Neutraliser` for a model's token list."""
    return Neutraliser(tokens)
