"""Prompt lookup without a model: the n-gram index, the draft policy, the stop cut.

The policy is driven the way the backend drives it, against a simulated model whose next
tokens are known and a simulated clock (a one-token step costs 1; verifying ``k`` draft
tokens costs what the hardware says). Time is simulated, so no figure here depends on the
machine; ``benchmarks/lookup.py`` measures the real thing.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from models.base import Usage
from models.llama._lookup import (
    BATCH_FIXED,
    BATCH_PER_TOKEN,
    Lookup,
    LookupSettings,
    NgramIndex,
    best_draft,
    cut_after_stops,
)
from models.llama.options import LlamaOptions
from models.options import BackendOptions

Cost = Callable[[int], float]
CPU: Cost = lambda k: 1.0 + BATCH_FIXED + BATCH_PER_TOKEN * k  # noqa: E731  (this project's CPU)
GPU: Cost = lambda k: 1.05 + 0.01 * k  # noqa: E731  (a large model on a GPU: a batch is ~free)


def index_of(tokens: Sequence[int]) -> NgramIndex:
    index = NgramIndex()
    index.sync(tokens)
    return index


# -- the index ------------------------------------------------------------------------------


def test_the_longest_suffix_match_wins_and_the_latest_occurrence() -> None:
    #        0  1  2  3  4  5  6  7  8  9 10 11
    index = index_of([1, 2, 3, 9, 7, 2, 3, 8, 5, 1, 2, 3])
    assert index.match() == (3, 2)  # [1, 2, 3] ended at 2; [2, 3] ended later, at 6
    assert index.continuation(2, 3) == [9, 7, 2]
    index.append(4)
    assert index.match() is None  # [3, 4] never occurred: no single-token matches


def test_the_suffix_never_matches_itself() -> None:
    index = index_of([5, 6, 7, 8])
    assert index.match() is None
    index.append(5)
    index.append(6)
    assert index.match() == (2, 1)


def test_a_draft_continues_a_repeated_pattern_past_the_end() -> None:
    index = index_of([1, 2, 1, 2])
    assert index.match() == (2, 1)  # [1, 2] ended at 1
    assert index.continuation(1, 5) == [1, 2, 1, 2, 1]  # positions 2, 3, then the draft's own


def test_sync_extends_by_the_new_tokens_only() -> None:
    appended: list[int] = []

    class Counting(NgramIndex):
        def append(self, token: int) -> None:
            appended.append(token)
            super().append(token)

    index = Counting()
    index.sync([1, 2, 3, 4])
    appended.clear()
    index.sync([1, 2, 3, 4, 5, 6])
    assert appended == [5, 6]


def test_a_cut_context_never_drafts_from_stale_entries() -> None:
    index = index_of([1, 2, 3, 4, 5, 6])
    index.sync([1, 2, 7, 8])  # the history changed after two tokens
    assert index.tokens == [1, 2, 7, 8]
    index.append(3)
    index.append(4)  # [3, 4] was indexed at 3 before the cut: now gone from the tokens
    assert index.match() is None
    index.append(1)
    index.append(2)
    found = index.match()
    assert found is not None
    assert index.continuation(found[1], 2) == [7, 8]


def test_single_token_ngrams_are_refused() -> None:
    with pytest.raises(ValueError, match=r"\(1, 2\)"):
        NgramIndex(sizes=(1, 2))


# -- the policy -----------------------------------------------------------------------------


def test_best_draft_follows_the_acceptance_chance_and_the_cost() -> None:
    assert best_draft(0.0, 1.0, 16)[1] < 1.0  # nothing accepted: a batch only costs
    k_low, _ = best_draft(0.9, 1.0, 16)
    k_high, gain = best_draft(0.98, 1.0, 16)
    assert 1 <= k_low < k_high and gain > 1.3
    assert best_draft(0.5, 0.0, 16)[0] == 16  # free verification: draft all there is
    assert best_draft(0.99, 1.0, 0) == (0, 1.0)


def simulate(
    lookup: Lookup | None, prompt: Sequence[int], output: Sequence[int], cost: Cost
) -> tuple[float, Usage]:
    """Generate ``output`` after ``prompt`` as the backend does; returns the simulated time."""
    usage = Usage()
    clock = 0.0
    produced = 0
    if lookup is not None:
        lookup.sync(prompt)
    while produced < len(output):
        draft = lookup.draft(len(output) - produced - 1) if lookup is not None else []
        truth = output[produced : produced + len(draft) + 1]
        accepted = 0
        while accepted < len(draft) and draft[accepted] == truth[accepted]:
            accepted += 1
        seconds = cost(len(draft)) if draft else 1.0
        clock += seconds
        if lookup is not None and draft:
            lookup.verified(len(draft), accepted, seconds)
            usage.draft_tokens += len(draft)
            usage.draft_tokens_accepted += accepted
        elif lookup is not None:
            lookup.plain(seconds)
        for token in truth[: accepted + 1]:
            if lookup is not None:
                lookup.append(token)
            produced += 1
    usage.completion_tokens = produced
    return clock, usage


def copy_task(seed: int) -> tuple[list[int], list[int]]:
    """A prompt holding a 400-token 'file' of prose-like tokens, and an output that rewrites
    it with a few changed spots, after a short preamble."""
    rng = random.Random(seed)
    file = [rng.randrange(50, 2000) for _ in range(400)]
    prompt = [1, 2, 3, *file, 4, 5]
    output = [6, 7, *file[:4]]
    for i in range(4, len(file)):
        output.append(9000 + i if i % (50 + 25 * seed) == 0 else file[i])  # a changed spot
    return prompt, output


def free_task(seed: int) -> tuple[list[int], list[int]]:
    """Text over a small vocabulary: 2-gram matches everywhere, continuations mostly wrong."""
    rng = random.Random(seed)
    words = list(range(10, 60))
    return [rng.choice(words) for _ in range(300)], [rng.choice(words) for _ in range(600)]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_copying_a_file_is_faster_on_a_cpu(seed: int) -> None:
    prompt, output = copy_task(seed)
    plain, _ = simulate(None, prompt, output, CPU)
    looked, usage = simulate(Lookup(), prompt, output, CPU)
    assert plain / looked >= 1.2
    assert usage.draft_acceptance > 0.8


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("cost", [CPU, GPU], ids=["cpu", "gpu"])
def test_free_text_is_never_much_slower(seed: int, cost: Cost) -> None:
    prompt, output = free_task(seed)
    plain, _ = simulate(None, prompt, output, cost)
    looked, _ = simulate(Lookup(), prompt, output, cost)
    assert plain / looked >= 0.98


def test_drafting_everywhere_is_slower_on_free_text() -> None:
    """The same text with a policy that drafts at every match: what the adaptive one avoids."""
    prompt, output = free_task(1)
    plain, _ = simulate(None, prompt, output, CPU)
    always, _ = simulate(Lookup(LookupSettings(min_gain=0.0)), prompt, output, CPU)
    assert plain / always < 0.9


def test_the_cost_of_a_batch_is_learned() -> None:
    """On a GPU the policy learns that batches are cheap (from the exploring drafts when it
    starts off) and drafts on text that would not pay on a CPU."""
    prompt, output = free_task(4)
    half = [t if i % 2 else output[i - 1] for i, t in enumerate(output)]  # repeats: ~0.5 chance
    lookup = Lookup(LookupSettings(explore_every=32))
    simulate(lookup, prompt, half * 3, GPU)
    assert lookup.scale < 0.2
    cpu = Lookup(LookupSettings(explore_every=32))
    simulate(cpu, prompt, half * 3, CPU)
    assert cpu.scale == pytest.approx(1.0, abs=0.05)


def test_shadow_drafts_turn_drafting_on_without_verifying() -> None:
    prompt, output = copy_task(5)
    lookup = Lookup()
    lookup.sync(prompt)
    for token in output[:40]:  # plain decoding: the policy proposes nothing verifiable...
        lookup.draft(100)
        lookup.append(token)
    assert lookup.chance(4) > 0.9  # ...yet learned that the copy is exact
    assert lookup.draft(100)  # and drafts now


def test_a_copy_is_followed_past_ngrams_that_recur_later() -> None:
    """Copying the first of two passages that share a 4-token phrase: the drafts keep to
    the passage being copied, not to the latest occurrence of the phrase."""
    first = [10, 11, 12, 13, 1, 2, 3, 4, 20, 21, 22, 23]
    second = [30, 31, 32, 33, 1, 2, 3, 4, 40, 41, 42, 43]
    lookup = Lookup(LookupSettings(min_gain=0.0, max_draft=4))
    lookup.sync([*first, 99, *second, 99])
    drafts = []
    for token in first:
        drafts.append(lookup.draft(4))
        lookup.append(token)
    after_phrase = drafts[first.index(4) + 1]  # drafted right after [1, 2, 3, 4]
    assert after_phrase[0] == 20
    index = NgramIndex()  # the index alone answers with the latest occurrence
    index.sync([*first, 99, *second, 99, *first[:8]])
    found = index.match()
    assert found is not None and index.continuation(found[1], 1) == [40]


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="max_draft=0"):
        LookupSettings(max_draft=0)
    with pytest.raises(ValueError, match="-1"):
        LookupSettings(min_gain=-1)


# -- the stop cut ---------------------------------------------------------------------------

PIECES = {1: b"ok ", 2: b"</tool", 3: b"_call>", 4: b"\nmore", 5: b"<|im_end|>", 6: b"</tool_call>"}


def cut(draft: list[int], tail: bytes = b"") -> int:
    return cut_after_stops(draft, PIECES.__getitem__, tail, [b"</tool_call>"], lambda t: t == 5)


def test_a_draft_ends_on_the_token_completing_a_stop_tag() -> None:
    assert cut([1, 2, 3, 4, 1]) == 3
    assert cut([3, 4, 1], tail=b"abc</tool") == 1  # the tag began before the draft
    assert cut([6, 4]) == 1  # a single-token tag


def test_a_draft_ends_on_an_end_of_turn_token() -> None:
    assert cut([1, 5, 1]) == 2


def test_a_tag_wholly_before_the_draft_does_not_cut_it() -> None:
    assert cut([1, 4, 1], tail=b"x</tool_call>") == 3


def test_usage_carries_the_draft_counters() -> None:
    total = Usage(draft_tokens=4, draft_tokens_accepted=3)
    total.add(Usage(draft_tokens=6, draft_tokens_accepted=5))
    assert (total.draft_tokens, total.draft_tokens_accepted) == (10, 8)
    assert total.draft_acceptance == 0.8
    delta = total.since(Usage(draft_tokens=2, draft_tokens_accepted=1))
    assert (delta.draft_tokens, delta.draft_tokens_accepted) == (8, 7)
    assert Usage().draft_acceptance == 0.0 and total.copy() == total


# -- the switches ---------------------------------------------------------------------------


def test_no_lookup_reaches_the_backend_options(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from agent import Agent
    from agent.cli.build import agent_from_args
    from agent.cli.entry import build_parser
    from agent.cli.run import _opener
    from agent.config import load_config

    monkeypatch.chdir(tmp_path)
    (tmp_path / "config.toml").write_text("", encoding="utf-8")
    common = ["ask", "q", "--model", "smollm2-135m", "--config", str(tmp_path / "config.toml")]
    assert agent_from_args(build_parser().parse_args(common)).backend_options.llama.lookup is True
    off = agent_from_args(build_parser().parse_args([*common, "--no-lookup"]))
    assert off.backend_options.llama.lookup is False

    opened: list[tuple[str, BackendOptions]] = []

    def open_model(spec: str, options: BackendOptions, *, sessions: int = 1) -> object:
        opened.append((spec, options))
        return object()

    monkeypatch.setattr("agent.tasks.runner.open_model", open_model)
    config = load_config(str(tmp_path / "config.toml"))
    _opener(config, {}, lookup=False)("smollm2-135m", BackendOptions(LlamaOptions(n_ctx=512)))
    _opener(config, {})("smollm2-135m", BackendOptions())
    assert opened == [
        ("smollm2-135m", BackendOptions(LlamaOptions(n_ctx=512, lookup=False))),
        ("smollm2-135m", BackendOptions()),
    ]
    Agent("smollm2-135m", backend_options={"lookup": False})  # a known option: no error
