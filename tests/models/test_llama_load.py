"""Loading decisions that need no model: GGUF metadata, settings, grammars, warm-start keys."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import pytest

from models.base import BackendError, Segment
from models.llama._fit import Machine
from models.llama._load import (
    YARN_ORIGINAL_CTX,
    LoadSettings,
    kv_cache_bytes,
    resolve_settings,
)
from models.llama._tokens import split_protected
from models.llama.gguf_file import (
    GGUFError,
    MetadataValue,
    context_length,
    is_gguf,
    read_metadata,
)
from models.llama.kv_state import PrefixStateStore, system_turn_end
from models.llama.options import LlamaOptions
from models.qwq.grammar import GrammarError, tool_call_grammar


def _string(text: str) -> bytes:
    data = text.encode("utf-8")
    return struct.pack("<Q", len(data)) + data


def write_gguf(path: Path, name: str = "QwQ 32B", ctx: int = 131072) -> Path:
    """A GGUF header (v3, no tensors) with a few keys, an array among them."""
    kvs = [
        _string("general.architecture") + struct.pack("<I", 8) + _string("qwen2"),
        _string("general.name") + struct.pack("<I", 8) + _string(name),
        _string("qwen2.context_length") + struct.pack("<IQ", 10, ctx),
        _string("qwen2.block_count") + struct.pack("<II", 4, 64),
        _string("qwen2.embedding_length") + struct.pack("<II", 4, 5120),
        _string("qwen2.attention.head_count") + struct.pack("<II", 4, 40),
        _string("qwen2.attention.head_count_kv") + struct.pack("<II", 4, 8),
        _string("tokenizer.ggml.tokens")
        + struct.pack("<IIQ", 9, 8, 3)
        + b"".join(_string(t) for t in ["a", "<tool_call>", "数"]),
        _string("tokenizer.ggml.scores") + struct.pack("<IIQ", 9, 6, 2) + struct.pack("<ff", 0, 1),
        _string("general.flag") + struct.pack("<I?", 7, True),
        _string("tokenizer.chat_template") + struct.pack("<I", 8) + _string("{{ x }}"),
    ]
    path.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 0, len(kvs)) + b"".join(kvs))
    return path


class TestGGUF:
    def test_reads_scalars_and_strings_and_skips_arrays(self, tmp_path: Path) -> None:
        meta = read_metadata(write_gguf(tmp_path / "m.gguf"))
        assert meta["general.architecture"] == "qwen2"
        assert meta["general.name"] == "QwQ 32B"
        assert meta["general.flag"] is True
        assert meta["tokenizer.chat_template"] == "{{ x }}"
        assert "tokenizer.ggml.tokens" not in meta
        assert context_length(meta) == 131072

    def test_not_a_gguf(self, tmp_path: Path) -> None:
        html = tmp_path / "m.gguf"
        html.write_bytes(b"<!doctype html>")
        assert not is_gguf(html)
        with pytest.raises(GGUFError, match="not a GGUF file"):
            read_metadata(html)

    def test_truncated(self, tmp_path: Path) -> None:
        full = write_gguf(tmp_path / "m.gguf").read_bytes()
        cut = tmp_path / "cut.gguf"
        cut.write_bytes(full[: len(full) // 2])
        assert is_gguf(cut)
        with pytest.raises(GGUFError, match="truncated or corrupt"):
            read_metadata(cut)

    def test_missing(self, tmp_path: Path) -> None:
        with pytest.raises(GGUFError, match="no such model file"):
            read_metadata(tmp_path / "none.gguf")


ROOMY = Machine(gpu_offload=False, ram_total=10**12, ram_available=10**12)
"""A CPU machine with far more RAM than any test asks for."""


def resolve(
    path: Path, metadata: dict[str, MetadataValue], *, machine: Machine, **options: Any
) -> LoadSettings:
    """:func:`resolve_settings` of the :class:`LlamaOptions` ``options`` on ``machine``."""
    return resolve_settings(path, metadata, LlamaOptions(**options), machine=machine)


class TestSettings:
    def test_defaults_on_cpu(self, tmp_path: Path) -> None:
        path = write_gguf(tmp_path / "qwq-32b-q4_k_m.gguf")
        s = resolve(path, read_metadata(path), n_gpu_layers=0, machine=ROOMY)
        assert s.n_ctx == 32768 and not s.yarn and not s.flash_attn  # QwQ: its recommended
        assert (s.type_k, s.type_v) == ("f16", "f16")
        assert s.n_threads >= 1 and s.n_threads_batch >= s.n_threads

    def test_thread_counts_are_kept_when_given_and_checked(self, tmp_path: Path) -> None:
        path = write_gguf(tmp_path / "m.gguf")
        meta = read_metadata(path)
        one = resolve(path, meta, n_threads=1, n_threads_batch=1, n_gpu_layers=0, machine=ROOMY)
        assert (one.n_threads, one.n_threads_batch) == (1, 1)
        with pytest.raises(BackendError, match="batch thread count must be at least 1, not 0"):
            resolve(path, meta, n_threads_batch=0, n_gpu_layers=0, machine=ROOMY)

    def test_default_context_is_the_training_context_when_smaller(self, tmp_path: Path) -> None:
        path = write_gguf(tmp_path / "tiny.gguf", name="tiny", ctx=2048)
        assert resolve(path, read_metadata(path), n_gpu_layers=0, machine=ROOMY).n_ctx == 2048

    def test_yarn_only_above_32k_for_qwq(self, tmp_path: Path) -> None:
        path = write_gguf(tmp_path / "m.gguf")
        meta = read_metadata(path)
        at_limit = resolve(path, meta, n_ctx=YARN_ORIGINAL_CTX, n_gpu_layers=0, machine=ROOMY)
        assert not at_limit.yarn
        above = resolve(path, meta, n_ctx=65536, n_gpu_layers=0, machine=ROOMY)
        assert above.yarn
        with pytest.raises(BackendError, match="--ctx 131072 or less"):
            resolve(path, meta, n_ctx=262144, n_gpu_layers=0, machine=ROOMY)

    def test_other_models_keep_their_training_context(self, tmp_path: Path) -> None:
        path = write_gguf(tmp_path / "other.gguf", name="Other", ctx=32768)
        with pytest.raises(BackendError, match="--ctx 32768 or less"):
            resolve(path, read_metadata(path), n_ctx=65536, n_gpu_layers=0, machine=ROOMY)

    def test_kv_cache_options(self, tmp_path: Path) -> None:
        path = write_gguf(tmp_path / "m.gguf")
        meta = read_metadata(path)
        s = resolve(
            path, meta, type_k="Q8_0", type_v="q8_0", flash_attn=True, n_gpu_layers=0, machine=ROOMY
        )
        assert (s.type_k, s.type_v) == ("q8_0", "q8_0")
        with pytest.raises(BackendError, match="unknown KV-cache type 'q3'"):
            resolve(path, meta, type_k="q3", n_gpu_layers=0, machine=ROOMY)
        with pytest.raises(BackendError, match="needs flash attention"):
            resolve(path, meta, type_v="q4_0", flash_attn=False, n_gpu_layers=0, machine=ROOMY)

    def test_kv_cache_size_estimate(self, tmp_path: Path) -> None:
        path = write_gguf(tmp_path / "m.gguf")
        meta = read_metadata(path)
        s = resolve(path, meta, n_ctx=32768, n_gpu_layers=0, machine=ROOMY)
        # QwQ-32B: 64 layers x 8 KV heads x 128 dims x (K + V) x 2 bytes = 256 KiB per token
        assert kv_cache_bytes(meta, s) == 64 * 8 * 128 * 2 * 2 * 32768


ADD = {
    "type": "function",
    "function": {
        "name": "add",
        "parameters": {
            "type": "object",
            "properties": {"a": {"type": "integer"}},
            "required": ["a"],
        },
    },
}


class TestGrammar:
    def test_shape(self) -> None:
        with_thought = tool_call_grammar([ADD], allow_thinking=True)
        assert with_thought.startswith("root ::= thought call-block\n")
        assert 'call-block ::= "<tool_call>\\n" call "\\n</tool_call>"' in with_thought
        assert '"\\"add\\""' in with_thought
        direct = tool_call_grammar([ADD], allow_thinking=False)
        assert direct.startswith("root ::= call-block\n") and "thought ::=" not in direct

    def test_several_tools_are_alternatives(self) -> None:
        grammar = tool_call_grammar([ADD, {"name": "now"}], allow_thinking=False)
        assert "call ::= call-0 | call-1" in grammar
        assert '"\\"now\\""' in grammar

    def test_errors(self) -> None:
        with pytest.raises(GrammarError, match="at least one"):
            tool_call_grammar([], allow_thinking=False)
        with pytest.raises(GrammarError, match="function name"):
            tool_call_grammar([{"type": "function", "function": {}}], allow_thinking=False)
        with pytest.raises(GrammarError, match="JSON Schema object"):
            tool_call_grammar([{"name": "x", "parameters": "int"}], allow_thinking=False)


class TestWarmStartKeys:
    def test_system_turn_end(self) -> None:
        system = Segment("<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU", "template")
        tokens = [*range(40), 7, 1, 2, 3]
        assert (
            system_turn_end(system, tokens, turn_end_token=7) == 0
        )  # the first 7 ends too short a prefix
        tokens = [*range(100, 140), 7, 1, 2]
        assert system_turn_end(system, tokens, turn_end_token=7) == 41
        assert system_turn_end(system, tokens[:41], turn_end_token=7) == 0  # nothing follows
        user_first = Segment("<|im_start|>user\nU<|im_end|>", "template")
        assert system_turn_end(user_first, tokens, turn_end_token=7) == 0
        assert system_turn_end(Segment(system.text, "data"), tokens, turn_end_token=7) == 0
        assert system_turn_end(system, tokens, turn_end_token=None) == 0

    def test_keys_depend_on_fingerprint_and_tokens(self, tmp_path: Path) -> None:
        a = PrefixStateStore(tmp_path, {"model": "a"})
        b = PrefixStateStore(tmp_path, {"model": "b"})
        assert a.path_for([1, 2, 3]) != b.path_for([1, 2, 3])
        assert a.path_for([1, 2, 3]) != a.path_for([1, 2, 4])
        assert a.path_for([1, 2, 3]) == PrefixStateStore(tmp_path, {"model": "a"}).path_for(
            [1, 2, 3]
        )


class TestProtectedTags:
    TAGS = ("<tool_call>", "</tool_call>", "</think>")

    @pytest.mark.parametrize(
        ("text", "pieces"),
        [
            ("plain text", ["plain text"]),
            ("a <tool_call> b", ["a ", "<", "tool_call>", " b"]),
            ("</tool_call></think>", ["<", "/tool_call>", "<", "/think>"]),
            ("<tool_call><tool_call>", ["<", "tool_call>", "<", "tool_call>"]),
            ("x</think", ["x</think"]),
        ],
    )
    def test_split(self, text: str, pieces: list[str]) -> None:
        assert split_protected(text, self.TAGS) == pieces
        assert "".join(pieces) == text
        assert not any(tag in piece for piece in pieces for tag in self.TAGS)
