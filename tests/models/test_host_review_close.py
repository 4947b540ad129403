"""Review of the model host (issue 16): sessions that outlive their host.

Closing a :class:`~models.llama.host.LlamaHost` frees its llama.cpp context (and its model,
when it loaded it). Its sessions may still be closed, reset or asked for their KV state
afterwards (an agent closed after the ``with LlamaHost.open(...)`` block, a task runner
stopping): they must answer with a :class:`BackendError` or do nothing, never call into the
freed context, which crashed the process (SIGSEGV) before.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass

import pytest

from models.base import BackendError, GenerateOptions, Sampling, Segment
from models.llama._batch import Entry
from tests.models.host_fakes import FakeDecoder, ScriptModel, fake_host
from tests.real_model import requires_tiny_model, tiny_gguf

GREEDY = GenerateOptions(sampling=Sampling(temperature=0), max_tokens=3)


@dataclass
class FreedDecoder(FakeDecoder):
    """A fake decoder that fails a test when used after :meth:`close`, as llama.cpp would
    crash the process."""

    def _alive(self) -> None:
        assert not self.closed, "the host's freed decoder was used"

    def decode(self, entries: Sequence[Entry]) -> None:
        self._alive()
        super().decode(entries)

    def remove(self, seq: int, start: int) -> bool:
        self._alive()
        return super().remove(seq, start)

    def save(self, seq: int) -> bytes:
        self._alive()
        return super().save(seq)

    def restore(self, seq: int, data: bytes) -> bool:
        self._alive()
        return super().restore(seq, data)


def test_sessions_of_a_closed_host_refuse_work_without_touching_its_decoder() -> None:
    decoder = FreedDecoder(ScriptModel({"A": ["alpha"]}))
    host = fake_host(decoder)
    first, second, third = host.session(), host.session(), host.session()
    for session in (first, second):
        run = session.generate([Segment("Q A: <think>\n", "template")], GREEDY)
        assert "".join(run) == "alp"
    host.close()
    assert decoder.closed
    with pytest.raises(BackendError, match="host has been closed"):
        first.export_kv()
    with pytest.raises(BackendError, match="host has been closed"):
        first.import_kv([1, 2], b"[1, 2]")
    with pytest.raises(BackendError, match="host has been closed"):
        second.reset()
    with pytest.raises(BackendError, match="host has been closed"):
        second.tokenize(Segment("x", "data"))
    with pytest.raises(BackendError, match="host has been closed"):
        third.generate([Segment("Q A: <think>\n", "template")], GREEDY)
    for session in (first, second, third):
        session.close()
        session.close()


@pytest.mark.real_model
@requires_tiny_model
def test_closing_sessions_after_their_real_host_does_not_crash_the_process() -> None:
    """In a child process: a crash there is a failed test here, not a dead test run."""
    script = textwrap.dedent(
        f"""
        from models.base import BackendError, GenerateOptions, Sampling, Segment
        from models.llama.host import LlamaHost
        from models.llama.options import LlamaOptions

        options = LlamaOptions(n_ctx=256, n_threads=1, n_threads_batch=1)
        host = LlamaHost.open({str(tiny_gguf())!r}, options, n_seq_max=2)
        sessions = [host.session(), host.session()]
        greedy = GenerateOptions(sampling=Sampling(temperature=0), max_tokens=2)
        for session in sessions:
            "".join(session.generate([Segment("Hello", "template")], greedy))
        host.close()
        for call in (sessions[0].export_kv, sessions[1].reset):
            try:
                call()
            except BackendError:
                pass
        for session in sessions:
            session.close()
        print("survived")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert (done.returncode, done.stdout.strip()) == (0, "survived"), done.stderr[-2000:]
