"""Warm start: the KV state of a prompt's system turn, kept on disk for the next session.

Every task of an agent starts with the same system turn (system prompt and declared tools),
often hundreds of tokens that a CPU or a partly offloaded 32B model needs seconds or minutes
to evaluate. :class:`PrefixStateStore` saves the llama.cpp state of that prefix the first time
it is evaluated and loads it in later backends and processes instead of evaluating it again.

A state file is named by a hash of a *fingerprint* (model file path, size and modification
time, chat template, llama-cpp-python version, KV-cache types, flash attention, rope scaling)
and of the exact prefix tokens, so a changed model, template or prompt never finds a stale
state. llama.cpp also stores the tokens in the file; they are compared again on load, and a
file that fails to load or does not match is deleted and ignored. Files are written to a
temporary name and renamed, so a crash never leaves half a state behind; the least recently
used files beyond ``max_files`` are removed.
"""

from __future__ import annotations

import array
import ctypes
import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from models.base import Segment

if TYPE_CHECKING:
    from llama_cpp import Llama

    from models._llama_load import LoadSettings

SYSTEM_TURN_START = "<|im_start|>system"
MIN_PREFIX_TOKENS = 32
"""Shorter prefixes are cheaper to evaluate than to load."""


def system_turn_end(
    first: Segment,
    tokens: Sequence[int],
    turn_end_token: int | None,
    min_tokens: int = MIN_PREFIX_TOKENS,
) -> int:
    """The token offset just after the system turn's end marker in ``first``, or 0 if none.

    ``tokens`` are the tokens of ``first``, a ChatML prompt; the offset is used only when the
    segment opens with a system turn, and some tokens follow it.
    """
    if turn_end_token is None or first.role != "template":
        return 0
    if not first.text.startswith(SYSTEM_TURN_START):
        return 0
    try:
        end = list(tokens).index(turn_end_token) + 1
    except ValueError:
        return 0
    return end if min_tokens <= end < len(tokens) else 0


def fingerprint(
    model_path: Path, template: str | None, settings: LoadSettings
) -> dict[str, object]:
    """What a saved state depends on besides its tokens (see the module docstring)."""
    import llama_cpp

    stat = model_path.stat()
    return {
        "model": str(model_path.resolve()),
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "template": template or "",
        "llama_cpp": llama_cpp.__version__,
        "type_k": settings.type_k,
        "type_v": settings.type_v,
        "flash_attn": settings.flash_attn,
        "yarn": settings.yarn,
    }


class PrefixStateStore:
    """Saved KV states of prompt prefixes for one model configuration (a *fingerprint*)."""

    def __init__(
        self, directory: Path, fingerprint: Mapping[str, object], max_files: int = 8
    ) -> None:
        self.directory = directory
        self.max_files = max_files
        self._fingerprint = json.dumps(dict(fingerprint), sort_keys=True).encode("utf-8")

    def path_for(self, tokens: Sequence[int]) -> Path:
        """The file that holds (or would hold) the state of exactly ``tokens``."""
        digest = hashlib.sha256(self._fingerprint)
        digest.update(array.array("q", tokens).tobytes())
        return self.directory / f"{digest.hexdigest()[:32]}.kvstate"

    def load(self, llm: Llama, tokens: Sequence[int]) -> bool:
        """Load the state of ``tokens`` into sequence 0 of ``llm``'s empty KV cache.

        Returns whether it was loaded; on ``False`` the KV cache is empty again and a bad
        file has been deleted.
        """
        import llama_cpp

        path = self.path_for(tokens)
        if not path.is_file():
            return False
        wanted = list(tokens)
        out = (llama_cpp.llama_token * len(wanted))()
        count = ctypes.c_size_t(0)
        read = llama_cpp.llama_state_seq_load_file(
            llm.ctx, os.fsencode(path), 0, out, len(wanted), ctypes.byref(count)
        )
        if read == 0 or count.value != len(wanted) or list(out[: count.value]) != wanted:
            llm._ctx.kv_cache_seq_rm(0, 0, -1)
            llm.n_tokens = 0
            path.unlink(missing_ok=True)
            return False
        llm.input_ids[: len(wanted)] = wanted
        llm.n_tokens = len(wanted)
        os.utime(path)  # most recently used
        return True

    def save(self, llm: Llama, tokens: Sequence[int]) -> bool:
        """Save sequence 0 of ``llm``, which must hold exactly ``tokens``. Errors are ignored
        (a warm start is an optimisation); returns whether a file was written."""
        import llama_cpp

        path = self.path_for(tokens)
        if path.is_file():
            return False
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError:
            return False
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        data = (llama_cpp.llama_token * len(tokens))(*tokens)
        written = llama_cpp.llama_state_seq_save_file(
            llm.ctx, os.fsencode(tmp), 0, data, len(tokens)
        )
        try:
            if written == 0:
                tmp.unlink(missing_ok=True)
                return False
            os.replace(tmp, path)
        except OSError:
            tmp.unlink(missing_ok=True)
            return False
        self._prune()
        return True

    def _prune(self) -> None:
        files = sorted(
            self.directory.glob("*.kvstate"), key=lambda p: p.stat().st_mtime, reverse=True
        )
        for old in files[self.max_files :]:
            old.unlink(missing_ok=True)
