"""Prompt-lookup decoding on a real GGUF: the same generation with lookup and without, side by
side in one run (interleaved rounds, the best of each), so a busy machine moves both alike.

* ``copy``: a copy-heavy step: the model has read a 1.5 KB file and rewrites it (the answer
  is started with the file's first line, as an agent's ``write_file`` argument would be, so
  that even the tiny model copies rather than chats);
* ``free``: free generation (a story), greedy; the tiny model repeats itself in a long
  story, which lookup drafts;
* ``free_sampled``: the same with QwQ's sampling (temperature 0.6, top-p 0.95, top-k 40,
  seeded): little is predictable, drafting should stay off, the ratio near 1;
* ``tool_stop``: a forced tool episode with lookup on (:func:`benchmarks.llama.tool_episode`):
  tokens sampled after ``</tool_call>`` must stay 0.

``python -m benchmarks.lookup`` prints these rows alone; ``python -m benchmarks`` includes them.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Iterator
from typing import Any

from models.base import GenerateOptions, Sampling, Segment, Usage
from models.llama.backend import LlamaCppBackend
from models.llama.options import LlamaOptions
from models.qwq import chat_template

GREEDY = Sampling(temperature=0.0, top_k=0, top_p=1.0)
SAMPLED = Sampling(temperature=0.6, top_p=0.95, top_k=40, seed=7)

COPY_FILE = '''import json
import os


def load_settings(path):
    """Read the settings file and return a dict."""
    with open(path) as handle:
        return json.load(handle)


def save_settings(path, settings):
    """Write the settings dict to the file."""
    with open(path, "w") as handle:
        json.dump(settings, handle, indent=2)


def get_value(settings, key, default=None):
    """Return the value of key, or default when it is missing."""
    if key in settings:
        return settings[key]
    return default


def set_value(settings, key, value):
    """Set key to value and return the settings."""
    settings[key] = value
    return settings


def remove_value(settings, key):
    """Remove key from the settings if it is there."""
    if key in settings:
        del settings[key]
    return settings


def list_keys(settings):
    """Return the keys of the settings, sorted."""
    return sorted(settings.keys())


def merge_settings(first, second):
    """Return a new dict with the keys of both; second wins."""
    merged = dict(first)
    merged.update(second)
    return merged


def settings_path(folder):
    """Return the path of the settings file in folder."""
    return os.path.join(folder, "settings.json")


def main():
    path = settings_path(".")
    settings = load_settings(path)
    settings = set_value(settings, "debug", True)
    save_settings(path, settings)
    print(list_keys(settings))


if __name__ == "__main__":
    main()
'''
"""The file the copy step rewrites (1.5 KB of ordinary Python)."""


def _context(backend: LlamaCppBackend, user: str, answer_start: str = "") -> list[Segment]:
    template = backend.info.chat_template or chat_template.qwq_template()
    text = chat_template.render(template, [{"role": "user", "content": user}])
    return [Segment(text + answer_start, "template")]


def copy_context(backend: LlamaCppBackend) -> list[Segment]:
    """The copy-heavy step: the file was read, the rewrite has begun."""
    user = (
        f"Here is the file settings.py:\n```python\n{COPY_FILE}```\n"
        "Rewrite the whole file settings.py, with the function get_value renamed to read_value."
    )
    return _context(backend, user, "```python\nimport json\n")


def free_context(backend: LlamaCppBackend) -> list[Segment]:
    """Free generation: nothing in the prompt to copy."""
    return _context(
        backend,
        "Write a long story about a lighthouse keeper and a storm. Go on for many paragraphs.",
    )


@contextlib.contextmanager
def lookup_off(backend: LlamaCppBackend) -> Iterator[None]:
    """The backend with prompt lookup off (plain decoding) for the block."""
    saved = backend._lookup
    backend._lookup = None
    try:
        yield
    finally:
        backend._lookup = saved


def _generate(
    backend: LlamaCppBackend, context: list[Segment], tokens: int, sampling: Sampling
) -> Usage:
    backend.reset()
    before = backend.usage
    "".join(backend.generate(context, GenerateOptions(sampling=sampling, max_tokens=tokens)))
    return backend.usage.since(before)


def side_by_side(
    backend: LlamaCppBackend,
    context: list[Segment],
    tokens: int,
    rounds: int,
    sampling: Sampling = GREEDY,
) -> dict[str, Any]:
    """Decode tokens/s with lookup ÷ without on ``context`` (``tokens`` tokens), the best of
    ``rounds`` each, interleaved; the acceptance of the lookup runs."""
    plain_rates: list[float] = []
    lookup_rates: list[float] = []
    drafted = accepted = produced = 0
    for _ in range(rounds):
        with lookup_off(backend):
            usage = _generate(backend, context, tokens, sampling)
        plain_rates.append(usage.decode_tokens_per_second)
        usage = _generate(backend, context, tokens, sampling)
        lookup_rates.append(usage.decode_tokens_per_second)
        drafted += usage.draft_tokens
        accepted += usage.draft_tokens_accepted
        produced += usage.completion_tokens
    plain, lookup = max(plain_rates), max(lookup_rates)
    return {
        "tokens": tokens,
        "plain_tok_s": round(plain, 1),
        "lookup_tok_s": round(lookup, 1),
        "ratio": round(lookup / plain, 3) if plain else 0.0,
        "drafted": drafted,
        "accepted": accepted,
        "acceptance": round(accepted / drafted, 3) if drafted else 0.0,
        "drafted_share": round(accepted / produced, 3) if produced else 0.0,
    }


def figures(backend: LlamaCppBackend, quick: bool = False) -> dict[str, Any]:
    """The copy step, free generation and the tool-call stop, with lookup ÷ without."""
    from benchmarks.llama import tool_episode

    if backend._lookup is None:
        raise ValueError(
            f"prompt lookup is off on {backend.info.name!r}; open the backend with lookup=True"
        )
    tokens, rounds = (24, 1) if quick else (400, 3)
    episode = tool_episode(backend, 2 if quick else 4, observation_tokens=16 if quick else 200)
    return {
        "copy": side_by_side(backend, copy_context(backend), tokens, rounds),
        "free": side_by_side(backend, free_context(backend), tokens, rounds),
        "free_sampled": side_by_side(backend, free_context(backend), tokens, rounds, SAMPLED),
        "tool_stop": {
            "calls": episode["k"],
            "stops_at_call": episode["stops_at_call"],
            "tokens_after_tool_call": episode["wasted_tokens"],
        },
    }


def rows(figures: dict[str, Any]) -> list[tuple[str, str, str]]:
    """Table rows: ``(measure, value, detail)``."""
    out: list[tuple[str, str, str]] = []
    for key, what, goal in (
        ("copy", "copy-heavy step (rewrite a 1.5 KB file)", "≥ 1.2"),
        ("free", "free generation (a story)", "≥ 0.97"),
        ("free_sampled", "free generation, sampled (T 0.6, seeded)", "≥ 0.97"),
    ):
        f = figures[key]
        out.append(
            (
                f"prompt lookup ÷ plain decoding, {what}",
                f"{f['ratio']}",
                f"{f['lookup_tok_s']} vs {f['plain_tok_s']} tok/s (target {goal}); "
                f"{f['accepted']}/{f['drafted']} drafted tokens accepted "
                f"({f['acceptance']}), {f['drafted_share']} of the output drafted",
            )
        )
    t = figures["tool_stop"]
    out.append(
        (
            "tokens generated after </tool_call>, prompt lookup on",
            f"{t['tokens_after_tool_call']}",
            f"{t['stops_at_call']}/{t['calls']} stops at the call (target 0)",
        )
    )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.lookup", description=__doc__)
    parser.add_argument("--model", default="smollm2-135m", help="a llama.cpp model spec")
    parser.add_argument("--ctx", type=int, default=4096)
    parser.add_argument("--threads", type=int, default=None, help="llama.cpp threads")
    parser.add_argument("--quick", action="store_true", help="a tiny configuration")
    args = parser.parse_args(argv)
    from models.catalog import model_path, parse_spec

    spec = parse_spec(args.model)
    gguf = model_path(args.model) if spec.kind == "catalog" else spec.value
    options = LlamaOptions(n_ctx=args.ctx, n_threads=args.threads, n_threads_batch=args.threads)
    backend = LlamaCppBackend(gguf, options)
    started = time.perf_counter()
    try:
        result = figures(backend, args.quick)
    finally:
        backend.close()
    for measure, value, detail in rows(result):
        print(f"| {measure} | {value} | {detail} |")
    print(f"({time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
