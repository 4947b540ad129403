"""Review of the model host (issue 16): a saved session's KV state imported into a full cache.

``import_kv`` (what ``agent.resume`` does with a session's saved state) restores the state
into the host's unified cache. Before the fix it restored it into a free *slot* whose cells
parked sequences still held, which llama.cpp refuses: ``import_kv`` answered ``False`` and
the conversation was evaluated again. It now makes room as admission does (parked sequences
are swapped out; running generations keep their cells, and the state then waits, swapped
out, for its next generation), and its answer says whether the state is still there: one
dropped at once by the swap budget is ``False``.
"""

from __future__ import annotations

import pytest

from models.base import GenerateOptions, Sampling, Segment
from models.llama.backend import LlamaCppBackend
from models.llama.host import HostLimits, LlamaHost
from tests.models.host_fakes import FakeDecoder, ScriptModel, drain, fake_host
from tests.real_model import requires_tiny_model

GREEDY = GenerateOptions(sampling=Sampling(temperature=0), max_tokens=3)
LONG = GenerateOptions(sampling=Sampling(temperature=0), max_tokens=40)
SCRIPTS = ScriptModel({"A": ["alphabet soup"], "B": ["beta"]})


def prompt(key: str) -> list[Segment]:
    """A 73-byte prompt: two of them do not fit in a cache of 128 cells."""
    return [Segment(f"Q {key}: {'x' * 60} <think>\n", "template")]


def then(context: list[Segment], text: str) -> list[Segment]:
    return [*context, Segment(text, "model"), Segment(" Then", "template")]


def test_an_import_swaps_out_parked_sequences_for_the_cells_it_needs() -> None:
    decoder = FakeDecoder(SCRIPTS, n_ctx=128, n_seq_max=2)
    with fake_host(decoder) as host:
        a, b = host.session(), host.session()
        text_a, _ = drain(a.generate(prompt("A"), GREEDY))
        saved = a.export_kv()
        assert saved is not None
        drain(b.generate(prompt("B"), GREEDY))  # a is swapped out for b's cells
        assert host.scheduler.swaps_out == 1
        assert a.import_kv(*saved)  # a free slot, but b (parked) held the cells
        assert host.scheduler.swaps_out == 2
        assert a.kv_tokens == saved[0]
        assert saved[0] in decoder.kv.values()  # loaded, not waiting
        before = a.usage
        drain(a.generate(then(prompt("A"), text_a), GREEDY))
        assert a.usage.since(before).prompt_tokens_evaluated == 1 + len(" Then")


def test_an_import_takes_a_parked_sequences_slot_when_none_is_free() -> None:
    decoder = FakeDecoder(SCRIPTS, n_ctx=128, n_seq_max=1)
    with fake_host(decoder) as host:
        a, b, c = host.session(), host.session(), host.session()
        drain(a.generate(prompt("A"), GREEDY))
        saved = a.export_kv()
        assert saved is not None
        drain(b.generate(prompt("B"), GREEDY))  # a is swapped out for the slot
        assert c.import_kv(*saved)  # b, parked, is swapped out for it
        assert host.scheduler.swaps_out == 2
        assert decoder.kv[0] == saved[0]


def test_an_import_waits_swapped_out_while_a_running_generation_holds_the_cells() -> None:
    decoder = FakeDecoder(SCRIPTS, n_ctx=128, n_seq_max=2)
    with fake_host(decoder) as host:
        a, b = host.session(), host.session()
        text_b, _ = drain(b.generate(prompt("B"), GREEDY))
        saved = b.export_kv()
        assert saved is not None
        b.reset()
        run = a.generate(prompt("A"), LONG)
        first = next(run)  # a's generation runs: its cells are not b's to take
        assert b.import_kv(*saved)
        assert b.kv_tokens == saved[0]
        assert saved[0] not in decoder.kv.values()
        rest, reason = drain(run)
        assert (first + rest, reason) == ("alphabet soup", "end_of_turn")
        before = b.usage
        drain(b.generate(then(prompt("B"), text_b), GREEDY))
        assert host.scheduler.swaps_in == 1
        assert b.usage.since(before).prompt_tokens_evaluated == 1 + len(" Then")


def test_an_import_dropped_at_once_by_the_swap_budget_answers_false() -> None:
    decoder = FakeDecoder(SCRIPTS, n_ctx=128, n_seq_max=1)
    with fake_host(decoder, swap_bytes=16) as host:
        a, b = host.session(), host.session()
        drain(b.generate(prompt("B"), GREEDY))
        saved = b.export_kv()
        assert saved is not None and len(saved[1]) > 16
        b.reset()
        run = a.generate(prompt("A"), LONG)
        next(run)  # a's running generation holds the only slot
        assert not b.import_kv(*saved)  # kept swapped out, over the budget: dropped
        assert b.kv_tokens == []
        assert drain(run)[1] == "end_of_turn"


@pytest.mark.real_model
@requires_tiny_model
def test_a_real_import_swaps_out_a_parked_sequence_instead_of_being_refused(
    tiny_backend: LlamaCppBackend,
) -> None:
    topic = "the cat sat on the mat and looked at the door. " * 11
    greedy = GenerateOptions(sampling=Sampling(temperature=0), max_tokens=2)
    with LlamaHost.sharing(
        tiny_backend, n_seq_max=2, n_ctx=256, limits=HostLimits(max_sessions=2)
    ) as host:
        a, b = host.session(), host.session()
        context_a = [Segment(f"A: {topic}", "template")]
        assert 130 < len(a.tokenize(context_a[0], first=True)) < 200  # two do not fit in 256
        text_a, _ = drain(a.generate(context_a, greedy))
        saved = a.export_kv()
        assert saved is not None
        drain(b.generate([Segment(f"B: {topic}", "template")], greedy))  # a is swapped out
        assert host.scheduler.swaps_out == 1
        assert a.import_kv(*saved)  # b, parked, is swapped out for its cells
        assert host.scheduler.swaps_out == 2
        before = a.usage
        more = [*context_a, Segment(text_a, "model"), Segment(" Then", "template")]
        drain(a.generate(more, greedy))
        evaluated = a.usage.since(before).prompt_tokens_evaluated
        assert evaluated == 1 + len(a.tokenize(Segment(" Then", "template")))
