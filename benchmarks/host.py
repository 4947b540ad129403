"""The model host: aggregate decode speed of concurrent sessions, and resuming from saved KV.

* :func:`concurrent_sessions`: N sessions of one :class:`~models.llama.host.LlamaHost`
  (sharing the benchmark backend's weights) each generate the same number of greedy tokens
  at once; aggregate tokens/s for each N, and whether each output equals that prompt's
  output from the single-conversation backend alone. Outputs are not bit-exact across batch
  shapes (a near-tie can flip), so the prompts are ones without near-ties on the tiny model
  (:data:`PROMPTS`); a mismatch on another model is reported, not hidden.
* :func:`session_resume`: a context of ``tokens`` tokens evaluated from scratch, against the
  same context restored from its saved KV state (the file format of
  :class:`models.llama.kv_state.SessionKV`: read, loaded, and its last token evaluated).
"""

from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from models.base import GenerateOptions, Sampling, Segment

if TYPE_CHECKING:
    from models.llama.backend import LlamaCppBackend

PROMPTS = ("1, 2, 3, 4, 5,", "10, 20, 30, 40,", "11, 12, 13, 14,", "100, 101, 102, 103,")
"""Prompts whose 64 greedy tokens on the tiny model have no near-tie: the same alone and in
every combination of 4 among 6 counting prompts. Prose prompts ("The capital of France is",
"def fibonacci(n):") flipped a token somewhere in 64 with the batch shape."""
GREEDY = Sampling(temperature=0.0, top_k=0, top_p=1.0)


def concurrent_sessions(
    backend: LlamaCppBackend, counts: tuple[int, ...] = (1, 2, 4), tokens: int = 64
) -> dict[str, Any]:
    """Aggregate tokens/s of ``count`` sessions at once, for each count; outputs compared."""
    from models.llama.host import LlamaHost

    options = GenerateOptions(sampling=GREEDY, max_tokens=tokens)
    alone: list[str] = []
    for text in PROMPTS[: max(counts)]:
        backend.reset()
        alone.append("".join(backend.generate([Segment(text, "template")], options)))
    backend.reset()
    rates: dict[str, float] = {}
    identical: dict[str, bool] = {}
    with LlamaHost.sharing(backend, n_seq_max=max(counts)) as host:
        for count in counts:
            sessions = [host.session() for _ in range(count)]
            out = [""] * count

            def go(i: int, sessions: list[Any] = sessions, out: list[str] = out) -> None:
                context = [Segment(PROMPTS[i % len(PROMPTS)], "template")]
                out[i] = "".join(sessions[i].generate(context, options))

            threads = [threading.Thread(target=go, args=(i,)) for i in range(count)]
            started = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            seconds = time.perf_counter() - started
            produced = sum(s.usage.completion_tokens for s in sessions)
            rates[str(count)] = round(produced / seconds, 1)
            identical[str(count)] = all(out[i] == alone[i % len(PROMPTS)] for i in range(count))
            for s in sessions:
                s.close()
    base = rates[str(counts[0])]
    return {
        "tokens_per_session": tokens,
        "tokens_per_s": rates,
        "speedup": {k: round(v / base, 2) for k, v in rates.items()},
        "identical_to_alone": identical,
    }


def session_resume(
    backend: LlamaCppBackend, tokens: int = 4096, repeats: int = 3
) -> dict[str, Any]:
    """Seconds to make a ``tokens``-token context ready to generate: evaluated from scratch,
    and restored from its saved state (best of ``repeats`` each)."""
    from models.llama.kv_state import read_state, write_state

    words = " ".join(f"w{i}" for i in range(tokens))
    ids = backend.tokenize(Segment(words, "template"), first=True)[: tokens - 1]
    context = [Segment(backend.detokenize(ids).decode("utf-8", "replace"), "template")]
    ready = GenerateOptions(sampling=GREEDY, max_tokens=0)
    evaluate: list[float] = []
    restore: list[float] = []
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "session.kv"
        header = {"model": backend.kv_fingerprint()}
        for _ in range(repeats):
            backend.reset()
            started = time.perf_counter()
            _drain(backend, context, ready)
            evaluate.append(time.perf_counter() - started)
        exported = backend.export_kv()
        assert exported is not None
        started = time.perf_counter()
        write_state(path, header, exported[0], exported[1])
        save_s = time.perf_counter() - started
        size = path.stat().st_size
        for _ in range(repeats):
            backend.reset()
            before = backend.usage
            started = time.perf_counter()
            saved = read_state(path, header)
            assert not isinstance(saved, str), saved
            assert backend.import_kv(*saved)
            _drain(backend, context, ready)
            restore.append(time.perf_counter() - started)
            evaluated = backend.usage.since(before).prompt_tokens_evaluated
    context_tokens = backend.usage.context_tokens
    backend.reset()
    return {
        "context_tokens": context_tokens,
        "evaluate_s": round(min(evaluate), 4),
        "restore_s": round(min(restore), 4),
        "save_s": round(save_s, 4),
        "state_mb": round(size / 1e6, 1),
        "evaluated_after_restore": evaluated,
        "speedup": round(min(evaluate) / min(restore), 1),
    }


def _drain(backend: LlamaCppBackend, context: list[Segment], options: GenerateOptions) -> None:
    for _ in backend.generate(context, options):
        pass


def figures(backend: LlamaCppBackend, quick: bool) -> dict[str, Any]:
    """Both figures; ``quick``: a few tokens, for the test that keeps this code working."""
    if quick:
        return {
            "sessions": concurrent_sessions(backend, (1, 2), tokens=8),
            "resume": session_resume(backend, tokens=64, repeats=1),
        }
    size = min(4096, backend.info.context_size - 8)
    return {"sessions": concurrent_sessions(backend), "resume": session_resume(backend, size)}


def rows(results: dict[str, Any]) -> list[tuple[str, str, str]]:
    """Table rows for :func:`benchmarks.__main__.table`."""
    s, r = results["sessions"], results["resume"]
    counts = list(s["tokens_per_s"])
    return [
        (
            f"host: aggregate tok/s, {' / '.join(counts)} sessions at once",
            " / ".join(str(v) for v in s["tokens_per_s"].values()),
            f"speed-up {' / '.join(str(v) for v in s['speedup'].values())}; outputs as alone: "
            + ", ".join(f"{k}: {'yes' if v else 'no'}" for k, v in s["identical_to_alone"].items()),
        ),
        (
            f"resume a {r['context_tokens']}-token session: evaluate ÷ restore saved KV",
            f"{r['speedup']}",
            f"{r['evaluate_s']} s vs {r['restore_s']} s (target ≥ 100); state "
            f"{r['state_mb']} MB written in {r['save_s']} s; "
            f"{r['evaluated_after_restore']} token evaluated after the restore",
        ),
    ]
