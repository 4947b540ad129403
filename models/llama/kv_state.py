"""KV states on disk: the warm start of a system turn, and a whole session beside its transcript.

Both use one file format (:func:`write_state` / :func:`read_state`): a header (what the state
depends on), the tokens it holds, and llama.cpp's state of one sequence
(``llama_state_seq_get_data``, through :class:`models.llama._batch.Decoder`), written to a temporary name and renamed, so a crash never
leaves half a state behind, and read back only when the header matches and the sizes agree.

**Warm start** (:class:`PrefixStateStore`):

Every task of an agent starts with the same system turn (system prompt and declared tools),
often hundreds of tokens that a CPU or a partly offloaded 32B model needs seconds or minutes
to evaluate. :class:`PrefixStateStore` saves the llama.cpp state of that prefix the first time
it is evaluated and loads it in later backends and processes instead of evaluating it again.

A state file is named by a hash of a *fingerprint* (model file path, size and modification
time, chat template, llama-cpp-python version, KV-cache types, flash attention, rope scaling)
and of the exact prefix tokens, so a changed model, template or prompt never finds a stale
state. The tokens in the file are compared again on load, and a file that fails to load or
does not match is deleted and ignored; the least recently used files beyond ``max_files``
are removed.

**Sessions** (:class:`SessionKV`): a conversation's KV state is kept beside its transcript
(``TRANSCRIPT.kv``), bounded in size, with the fingerprint of the model and a digest of the
conversation it belongs to. Resuming the transcript loads it into the backend as a bare token
record (:class:`~models.llama._record.ContextRecord`), so the next prompt evaluates only what
follows the longest common token prefix; a state saved for another model, another
conversation, or torn, is ignored with a note saying why. A backend takes part through
:class:`KVStateful`.
"""

from __future__ import annotations

import array
import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from models.base import Segment

if TYPE_CHECKING:
    from models.llama._batch import Decoder
    from models.llama._load import LoadSettings

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

    def load(self, decoder: Decoder, seq: int, tokens: Sequence[int]) -> bool:
        """Load the state of ``tokens`` into the empty sequence ``seq`` of ``decoder``.

        Returns whether it was loaded; on ``False`` the sequence is empty again and a bad
        file has been deleted.
        """
        path = self.path_for(tokens)
        if not path.is_file():
            return False
        saved = read_state(path, self._header())
        if isinstance(saved, str) or saved[0] != list(tokens) or not decoder.restore(seq, saved[1]):
            decoder.remove(seq, 0)
            path.unlink(missing_ok=True)
            return False
        os.utime(path)  # most recently used
        return True

    def save(self, decoder: Decoder, seq: int, tokens: Sequence[int]) -> bool:
        """Save sequence ``seq`` of ``decoder``, which must hold exactly ``tokens``. Errors
        are ignored (a warm start is an optimisation); returns whether a file was written."""
        path = self.path_for(tokens)
        if path.is_file():
            return False
        if write_state(path, self._header(), tokens, decoder.save(seq)) is not None:
            return False
        self._prune()
        return True

    def _header(self) -> dict[str, object]:
        return {"model": json.loads(self._fingerprint)}

    def _prune(self) -> None:
        files = sorted(
            self.directory.glob("*.kvstate"), key=lambda p: p.stat().st_mtime, reverse=True
        )
        for old in files[self.max_files :]:
            old.unlink(missing_ok=True)


MAGIC = b"QWQ-KV-STATE 1\n"
"""The first bytes of a state file; then a JSON header line, the tokens (int32), the state."""


def write_state(
    path: Path,
    header: Mapping[str, object],
    tokens: Sequence[int],
    data: bytes,
    max_bytes: int | None = None,
) -> str | None:
    """Write a state file atomically (a temporary file, then a rename). Returns ``None`` when
    written, else why not (over ``max_bytes``, or the file system said no)."""
    size = len(MAGIC) + 4 * len(tokens) + len(data)
    if max_bytes is not None and size > max_bytes:
        return f"the KV state takes {size} bytes, more than the limit of {max_bytes}"
    head = json.dumps(
        {**header, "n_tokens": len(tokens), "state_bytes": len(data)}, sort_keys=True
    ).encode("utf-8")
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tmp.open("wb") as out:
            out.write(MAGIC + head + b"\n")
            out.write(array.array("i", tokens).tobytes())
            out.write(data)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        return f"could not write {str(path)!r}: {exc}"
    return None


def read_state(
    path: Path, header: Mapping[str, object], max_bytes: int | None = None
) -> tuple[list[int], bytes] | str:
    """The tokens and state of a file written by :func:`write_state` with the same
    ``header``, or why it cannot be used (missing, too big, torn, another header)."""
    try:
        size = path.stat().st_size
        if max_bytes is not None and size > max_bytes:
            return f"{path.name} takes {size} bytes, more than the limit of {max_bytes}"
        raw = path.read_bytes()
    except OSError as exc:
        return f"{path.name} cannot be read: {exc}"
    if not raw.startswith(MAGIC) or b"\n" not in raw[len(MAGIC) :]:
        return f"{path.name} is not a KV state file"
    line_end = raw.index(b"\n", len(MAGIC))
    try:
        saved = json.loads(raw[len(MAGIC) : line_end])
    except ValueError:
        return f"{path.name} has a damaged header"
    n_tokens, state_bytes = saved.pop("n_tokens", -1), saved.pop("state_bytes", -1)
    if saved != json.loads(json.dumps(dict(header), sort_keys=True)):
        changed = sorted(k for k in {*saved, *header} if saved.get(k) != header.get(k))
        return f"{path.name} was saved for another {' and '.join(changed)}"
    body = raw[line_end + 1 :]
    if not isinstance(n_tokens, int) or len(body) != 4 * n_tokens + state_bytes:
        return f"{path.name} is torn ({len(body)} bytes of body, not {4 * n_tokens + state_bytes})"
    tokens = array.array("i")
    tokens.frombytes(body[: 4 * n_tokens])
    return tokens.tolist(), body[4 * n_tokens :]


@runtime_checkable
class KVStateful(Protocol):
    """A backend whose KV state can be saved and loaded (the llama.cpp ones)."""

    def kv_fingerprint(self) -> Mapping[str, object]:
        """What a state depends on besides its tokens (see :func:`fingerprint`)."""
        ...

    def export_kv(self) -> tuple[list[int], bytes] | None:
        """The tokens the KV cache holds and their state; ``None`` when it holds none."""
        ...

    def import_kv(self, tokens: list[int], data: bytes) -> bool:
        """Replace the context by ``tokens`` whose state is ``data`` (a bare record: reused
        by common prefix). Returns ``False``, with an empty context, when it did not load."""
        ...


SESSION_SUFFIX = ".kv"
DEFAULT_SESSION_BYTES = 1 << 30
"""The default bound of a session's state on disk (QwQ-32B at f16: about 4,000 tokens)."""


class SessionKV:
    """A conversation's KV state beside its transcript (``TRANSCRIPT.kv``).

    Args:
        transcript: the transcript file the state belongs to.
        max_bytes: a state larger than this is neither written nor read.
    """

    def __init__(self, transcript: Path, max_bytes: int = DEFAULT_SESSION_BYTES) -> None:
        self.path = transcript.with_name(transcript.name + SESSION_SUFFIX)
        self.max_bytes = max_bytes

    @staticmethod
    def digest(history: Sequence[Mapping[str, Any]]) -> str:
        """What identifies a conversation: a hash of its messages."""
        text = json.dumps(list(history), sort_keys=True, ensure_ascii=False, default=str)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def save(self, backend: KVStateful, history: Sequence[Mapping[str, Any]]) -> str | None:
        """Save ``backend``'s state as that of ``history``; ``None`` when saved, else why
        not (an old file is removed then: it would be stale)."""
        exported = backend.export_kv()
        if exported is None:
            self.path.unlink(missing_ok=True)
            return "the backend holds no KV state"
        header = self._header(backend, history)
        reason = write_state(self.path, header, exported[0], exported[1], self.max_bytes)
        if reason is not None:
            self.path.unlink(missing_ok=True)
        return reason

    def load(self, backend: KVStateful, history: Sequence[Mapping[str, Any]]) -> str:
        """Load the saved state into ``backend`` if it belongs to ``history`` and this model.
        Returns a note for a person: what was restored, or why nothing was."""
        if not self.path.is_file():
            return f"no saved KV state beside the transcript ({self.path.name})"
        saved = read_state(self.path, self._header(backend, history), self.max_bytes)
        if isinstance(saved, str):
            return f"the saved KV state was ignored: {saved}; the conversation is evaluated again"
        tokens, data = saved
        if not backend.import_kv(tokens, data):
            return (
                "the saved KV state was ignored: it did not load (llama.cpp refused it, or it "
                "exceeds the model host's swap budget); the conversation is evaluated again"
            )
        return f"restored the KV state of {len(tokens)} tokens from {self.path.name}"

    @classmethod
    def _header(
        cls, backend: KVStateful, history: Sequence[Mapping[str, Any]]
    ) -> dict[str, object]:
        fp = json.loads(json.dumps(dict(backend.kv_fingerprint()), sort_keys=True, default=str))
        return {"model": fp, "conversation": cls.digest(history)}
