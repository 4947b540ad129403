"""A backend that replays a script of model outputs, through the real parser and loop.

Each turn of the script is the raw text the model "generates" from the current position until
it stops, e.g. ``"I should add.\\n<tool_call>\\n{...}\\n</tool_call>"`` then
``"So it is 5.\\n</think>\\n\\nThe answer is 5."``. The text is streamed in small chunks (a few
characters, like tokens) so that the parser and the loop see what they would see from a real
model, and closing the generator early is honoured like a real backend does.

The context window (``context_size``, in approximate tokens of 4 characters) is enforced as
a real backend does: a context that does not fit raises
:class:`~models.base.ContextOverflowError`, and a turn that fills the window stops with
``"context_full"``. A call with ``max_tokens=0`` only evaluates the context: it plays no turn.

It records every prompt (``prompts``: the full context text at each call) and every
observation (``observations``: the text appended since its previous turn), and raises
:class:`ScriptExhaustedError` when the script runs out. It is what tests, demos and the TUI's
tests run on; ``scripted:FILE.yaml`` loads a YAML file with the turns under ``turns:``.

For scripts and tests: :func:`call` writes a call block; :class:`GatedBackend` holds a
script at each :data:`PAUSE` mark until its gate opens.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Generator, Sequence
from pathlib import Path
from typing import Any

from models.base import (
    BackendError,
    BackendInfo,
    ContextOverflowError,
    GenerateOptions,
    Segment,
    StopReason,
    Usage,
)
from models.qwq.tags import CALL_CLOSE, CALL_OPEN

END_OF_TURN = "<|im_end|>"


class ScriptExhaustedError(BackendError):
    """The agent asked for another turn but the script has none left."""


def _approx_tokens(text: str) -> int:
    """A deterministic stand-in for a tokenizer: one token per 4 characters (at least 1)."""
    return _tokens_of(len(text))


def _tokens_of(chars: int) -> int:
    """:func:`_approx_tokens` of a text of ``chars`` characters."""
    return max(1, (chars + 3) // 4) if chars else 0


class ScriptedBackend:
    """Replays ``turns``; see the module docstring.

    Args:
        turns: the model outputs, in order.
        chunk_size: characters per streamed chunk (tags are never split differently from
            how a tokenizer would split them; the parser handles any split anyway).
        delay: seconds to sleep per chunk (for demos; 0 in tests).
        opens_thinking: whether the generation prompt opens ``<think>`` (QwQ: yes).
        context_size: the window reported to the loop, in approximate tokens.
        name: a display name.
        loop: start again from the first turn once every turn was played (a demo that
            answers every question the same way); otherwise asking for more is an error.
    """

    def __init__(
        self,
        turns: Sequence[str],
        *,
        chunk_size: int = 3,
        delay: float = 0.0,
        opens_thinking: bool = True,
        context_size: int = 32_768,
        name: str = "scripted",
        loop: bool = False,
    ) -> None:
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size!r}")
        self.turns = list(turns)
        self.chunk_size = chunk_size
        self.delay = delay
        self.loop = loop
        self.prompts: list[str] = []
        self.observations: list[str] = []
        self.options: list[GenerateOptions] = []
        self._info = BackendInfo(
            name=name,
            chat_template=None,
            opens_thinking=opens_thinking,
            context_size=context_size,
            supports_grammar=False,
        )
        self._usage = Usage()
        self._seen: list[Segment] = []
        self._next = 0
        self.closed = False

    @classmethod
    def from_yaml(cls, path: str | Path, **kwargs: Any) -> ScriptedBackend:
        """Load ``turns:`` (a list of strings) and optional settings from a YAML file.

        Raises:
            BackendError: the file is missing, not YAML, or not of that shape.
        """
        import yaml

        file = Path(path)
        try:
            data = yaml.safe_load(file.read_text(encoding="utf-8"))
        except OSError as exc:
            raise BackendError(f"cannot read the script {str(file)!r}: {exc.strerror}") from exc
        except yaml.YAMLError as exc:
            raise BackendError(f"the script {str(file)!r} is not valid YAML: {exc}") from exc
        if not isinstance(data, dict) or not isinstance(data.get("turns"), list):
            raise BackendError(
                f"the script {str(file)!r} must be a mapping with a 'turns:' list of strings"
            )
        turns = data["turns"]
        if not all(isinstance(t, str) for t in turns):
            raise BackendError(f"every turn in {str(file)!r} must be a string")
        allowed = {"chunk_size", "delay", "opens_thinking", "context_size", "loop"}
        unknown = sorted(set(data) - allowed - {"turns"})
        if unknown:
            raise BackendError(
                f"unknown keys in {str(file)!r}: {unknown}; allowed: {sorted(allowed)}"
            )
        settings = {k: data[k] for k in allowed if k in data}
        settings.update(kwargs)
        return cls(turns, name=f"scripted:{file.name}", **settings)

    @property
    def info(self) -> BackendInfo:
        return self._info

    @property
    def usage(self) -> Usage:
        return self._usage

    @property
    def remaining(self) -> int:
        """Turns not yet played."""
        return len(self.turns) - self._next

    def generate(
        self, context: Sequence[Segment], options: GenerateOptions
    ) -> Generator[str, None, StopReason]:
        """Play the next turn, chunked; see :class:`models.base.Backend`."""
        if self.closed:
            raise BackendError("the scripted backend is closed")
        self._account_prompt(context)
        if options.max_tokens == 0:  # evaluate the context only: no turn is played
            self.options.append(options)
            return self._play("", options)
        if self._next >= len(self.turns) and self.loop and self.turns:
            self._next = 0
        if self._next >= len(self.turns):
            raise ScriptExhaustedError(
                f"the script has no turn {self._next + 1} (it has {len(self.turns)}); "
                "add a turn or check why the agent asked for another step"
            )
        self.options.append(options)
        text = self.turns[self._next]
        self._next += 1
        return self._play(text, options)

    def _account_prompt(self, context: Sequence[Segment]) -> None:
        """Count like a KV-cached backend: a context that extends the last one evaluates only
        the new text; any other reuses the longest common prefix of the text."""
        full = "".join(s.text for s in context)
        self.prompts.append(full)
        n_seen = len(self._seen)
        if n_seen and list(context[:n_seen]) == self._seen:
            new = "".join(s.text for s in context[n_seen:])
            self.observations.append(new)
            cached = 0
            total = self._usage.context_tokens + _approx_tokens(new)
        else:
            previous = "".join(s.text for s in self._seen)
            common = len(os.path.commonprefix([previous, full]))  # noqa: RUF071 (characters, not paths)
            new = full[common:]
            cached = _approx_tokens(full[:common])
            total = cached + _approx_tokens(new)
        if self._info.context_size and total > self._info.context_size:
            raise ContextOverflowError(total, self._info.context_size)
        self._usage.prompt_tokens_cached += cached
        self._usage.prompt_tokens_evaluated += _approx_tokens(new)
        self._usage.context_tokens = total
        self._seen = list(context)

    def _play(self, text: str, options: GenerateOptions) -> Generator[str, None, StopReason]:
        produced: list[str] = []
        chars = 0
        budget = options.max_tokens
        reason: StopReason = "length" if budget == 0 else "end_of_turn"
        started = time.perf_counter()
        try:
            window = self._info.context_size
            for chunk in _chunks(text, self.chunk_size):
                tokens = _tokens_of(chars)
                if budget is not None and tokens >= budget:
                    reason = "length"
                    break
                if window and self._usage.context_tokens + tokens >= window:
                    reason = "context_full"  # like a real backend: the rest of the turn is lost
                    break
                if self.delay:
                    time.sleep(self.delay)
                produced.append(chunk)
                chars += len(chunk)
                yield chunk
                stop = next((s for s in options.stop if s in "".join(produced)), None)
                if stop is not None:
                    reason = "stopped"
                    break
        finally:
            out = "".join(produced)
            n = _approx_tokens(out)
            self._usage.completion_tokens += n
            self._usage.context_tokens += n
            self._usage.decode_seconds += time.perf_counter() - started
            if out:
                self._seen.append(Segment(out, "model"))
        return reason

    def close(self) -> None:
        self.closed = True


def _chunks(text: str, size: int) -> list[str]:
    """Split like a tokenizer would: format tags whole, other text in ``size`` pieces."""
    import re

    pieces: list[str] = []
    for part in re.split(r"(</?(?:think|tool_call|tool_response)>)", text):
        if not part:
            continue
        if part.startswith("<") and part.endswith(">") and len(part) <= 16:
            pieces.append(part)
        else:
            pieces.extend(part[i : i + size] for i in range(0, len(part), size))
    return pieces


PAUSE = "\u23f8"
"""In a turn of a :class:`GatedBackend`, where streaming waits for the gate."""


def call(name: str, **arguments: Any) -> str:
    """The text of a well-formed call block, as the model writes it (for scripts)."""
    return f"{CALL_OPEN}\n{json.dumps({'name': name, 'arguments': arguments})}\n{CALL_CLOSE}"


class GatedBackend:
    """A :class:`ScriptedBackend` that waits at each :data:`PAUSE` until :attr:`gate` is set
    (for tests that look at a run in the middle of a thought).

    Like a real backend between two tokens, a held stream also lets go when the app closes
    (``closing()`` becomes true), so quitting never waits for the gate.
    """

    def __init__(self, turns: Sequence[str], **options: Any) -> None:
        self.inner = ScriptedBackend(turns, **options)
        self.gate = threading.Event()
        self.paused = threading.Event()
        """Set while the stream is held at a mark."""
        self.closing: Callable[[], bool] = lambda: False

    @property
    def info(self) -> BackendInfo:
        return self.inner.info

    @property
    def usage(self) -> Usage:
        return self.inner.usage

    def generate(
        self, context: Sequence[Segment], options: GenerateOptions
    ) -> Generator[str, None, StopReason]:
        return self._hold(self.inner.generate(context, options))

    def _hold(self, inner: Generator[str, None, StopReason]) -> Generator[str, None, StopReason]:
        try:
            while True:
                try:
                    chunk = next(inner)
                except StopIteration as stop:
                    reason: StopReason = stop.value
                    return reason
                if PAUSE in chunk:
                    before, _, chunk = chunk.partition(PAUSE)
                    if before:
                        yield before
                    self.paused.set()
                    while not self.gate.wait(timeout=0.02) and not self.closing():
                        pass
                    self.paused.clear()
                if chunk:
                    yield chunk
        finally:
            inner.close()

    def close(self) -> None:
        self.gate.set()
        self.inner.close()
