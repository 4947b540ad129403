"""The model host's scheduler and sessions, on a fake decoder (tests/models/host_fakes.py).

Deterministic: the fake model is a pure function of a sequence's history, so batching, swaps
and thread timing cannot change an output; what these tests check is how the host moves
tokens and KV cells (continuous batching, nothing evaluated twice, swap out and in, limits).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent import Agent, tool
from models.base import (
    BackendError,
    ContextOverflowError,
    GenerateOptions,
    Sampling,
    Segment,
    StopReason,
)
from models.llama.host import HostedLlamaBackend, LlamaHost
from models.scripted import call
from tests.conftest import HANG_BOUND
from tests.models.host_fakes import FakeDecoder, ScriptModel, drain, fake_host

GREEDY = GenerateOptions(sampling=Sampling(temperature=0))


def echo(history: list[int] | tuple[int, ...]) -> int:
    """A model that counts: the next token is the last one plus 1 (mod 200)."""
    return (history[-1] + 1) % 200


def prompt(text: str) -> list[Segment]:
    """A prompt that ends where the fake model's generation starts."""
    return [Segment(text + "<think>\n", "template")]


@pytest.fixture
def host() -> Iterator[LlamaHost]:
    h = fake_host(FakeDecoder(ScriptModel({"A": ["alpha"], "B": ["bravo!"], "C": ["charlie"]})))
    yield h
    h.close()


def test_sessions_generate_in_one_batch_and_match_running_alone() -> None:
    model = ScriptModel({"A": ["alpha one"], "B": ["bravo two"], "C": ["charlie three"]})
    alone = {}
    for key in "ABC":
        with fake_host(FakeDecoder(model)) as h:
            alone[key] = drain(h.session().generate(prompt(f"Q {key}: "), GREEDY))
    decoder = FakeDecoder(model)
    decoder.gate.clear()
    with fake_host(decoder) as h:
        sessions = {key: h.session() for key in "ABC"}
        out: dict[str, tuple[str, StopReason]] = {}

        def go(key: str) -> None:
            out[key] = drain(sessions[key].generate(prompt(f"Q {key}: "), GREEDY))

        threads = [threading.Thread(target=go, args=(k,)) for k in "ABC"]
        for t in threads:
            t.start()
        deadline = time.monotonic() + HANG_BOUND
        while len(h.scheduler._jobs) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        decoder.gate.set()
        for t in threads:
            t.join(HANG_BOUND)
    assert out == alone
    assert alone["A"] == ("alpha one", "end_of_turn")
    widest = max(len({e.seq for e in batch}) for batch in decoder.batches)
    assert widest == 3  # the three sequences decoded together
    assert all(s.closed for s in decoder.samplers)


def test_a_continuation_evaluates_only_the_new_tokens(host: LlamaHost) -> None:
    session = host.session()
    first = prompt("Q A: ")
    text, _ = drain(session.generate(first, GREEDY))
    before = session.usage
    context = [*first, Segment(text, "model"), Segment("<|im_end|>\nmore", "template")]
    drain(session.generate(context, GREEDY))
    delta = session.usage.since(before)
    assert delta.prompt_tokens_evaluated == 6  # <|im_end|> and "\nmore"
    opts = GenerateOptions(sampling=Sampling(temperature=0), max_tokens=2)
    other = host.session()
    cut = prompt("Q B: ")
    text, _ = drain(other.generate(cut, opts))  # "br": the "r" is sampled, not evaluated
    before = other.usage
    drain(other.generate([*cut, Segment(text, "model"), Segment("!", "template")], GREEDY))
    assert other.usage.since(before).prompt_tokens_evaluated == 2  # "r" and "!"
    assert delta.prompt_tokens_cached == 0


def test_a_parked_sequence_is_swapped_out_and_back_without_re_evaluation() -> None:
    decoder = FakeDecoder(ScriptModel({"A": ["alpha"], "B": ["bravo"]}), n_seq_max=1)
    with fake_host(decoder) as h:
        a, b = h.session(), h.session()
        context_a = prompt("Q A: ")
        text_a, _ = drain(a.generate(context_a, GREEDY))
        drain(b.generate(prompt("Q B: "), GREEDY))  # takes A's only slot: A is swapped out
        assert h.scheduler.swaps_out == 1
        before = a.usage
        evaluated = decoder.evaluated()
        more = [*context_a, Segment(text_a, "model"), Segment("<|im_end|>x", "template")]
        drain(a.generate(more, GREEDY))
        assert h.scheduler.swaps_in == 1
        assert a.usage.since(before).prompt_tokens_evaluated == 2  # <|im_end|>, 'x'
        assert decoder.evaluated() - evaluated == 2


def test_closing_after_a_chunk_leaves_nothing_sampled_ahead_in_the_cache() -> None:
    decoder = FakeDecoder(ScriptModel({"A": ["a long reply to cut short"]}))
    with fake_host(decoder, lookahead=8) as h:
        session = h.session()
        run = session.generate(prompt("Q A: "), GREEDY)
        chunks = [next(run) for _ in range(3)]
        time.sleep(0.05)  # let the host sample ahead of the consumer
        run.close()
        assert "".join(chunks) == "a l"
        assert session.context_tokens == list(b"Q A: <think>\na l")
        (cells,) = (v for v in decoder.kv.values() if v)
        assert bytes(cells) in (
            b"Q A: <think>\na ",
            b"Q A: <think>\na l",
        )  # the last kept token may be pending


def test_the_kv_budget_swaps_out_the_longest_idle_parked_sequence() -> None:
    decoder = FakeDecoder(ScriptModel({"A": ["aaaa"], "B": ["bbbb"], "C": ["cccc"]}), n_ctx=40)
    with fake_host(decoder) as h:
        a, b, c = h.session(), h.session(), h.session()
        drain(a.generate(prompt("Q A"), GREEDY))  # 15 cells: 11 of prompt, 4 generated
        drain(b.generate(prompt("Q B"), GREEDY))
        assert h.scheduler.swaps_out == 0
        drain(c.generate(prompt("Q C"), GREEDY))  # 15 more: 45 cells, 40 fit
        assert h.scheduler.swaps_out == 1
        assert a._seq.slot is None and b._seq.slot is not None  # A was idle longest


def test_a_context_that_can_never_fit_is_refused_before_any_work(host: LlamaHost) -> None:
    session = host.session()
    with pytest.raises(ContextOverflowError, match="4096"):
        session.generate(prompt("x" * 5000), GREEDY)


def test_sessions_beyond_max_sessions_are_refused_with_what_to_do() -> None:
    with fake_host(FakeDecoder(echo), max_sessions=2) as h:
        h.session()
        h.session()
        with pytest.raises(BackendError, match=r"max_sessions=2.*close one"):
            h.session()


def test_over_the_swap_budget_a_parked_state_is_dropped_and_evaluated_again() -> None:
    decoder = FakeDecoder(ScriptModel({"A": ["aa"], "B": ["bb"]}), n_seq_max=1)
    with fake_host(decoder, swap_bytes=10) as h:
        a, b = h.session(), h.session()
        context_a = prompt("Q A: ")
        text_a, _ = drain(a.generate(context_a, GREEDY))
        drain(b.generate(prompt("Q B: "), GREEDY))
        assert h.scheduler.swapped_bytes() == 0
        before = a.usage
        more = [*context_a, Segment(text_a, "model"), Segment("!", "template")]
        drain(a.generate(more, GREEDY))
        assert a.usage.since(before).prompt_tokens_evaluated == len("Q A: <think>\naa!")


def test_max_tokens_and_stop_strings_stay_per_session(host: LlamaHost) -> None:
    a, b = host.session(), host.session()
    opts = GenerateOptions(sampling=Sampling(temperature=0), max_tokens=3)
    assert drain(a.generate(prompt("Q A: "), opts)) == ("alp", "length")
    stop = GenerateOptions(sampling=Sampling(temperature=0), stop=("av",))
    assert drain(b.generate(prompt("Q B: "), stop)) == ("brav", "stopped")
    assert drain(a.generate(prompt("Q C: "), GREEDY)) == ("charlie", "end_of_turn")


def test_a_bad_grammar_fails_at_call_time_and_the_session_goes_on(host: LlamaHost) -> None:
    session = host.session()
    with pytest.raises(ValueError, match="grammar"):
        session.generate(prompt("Q A: "), GenerateOptions(grammar="bad"))
    assert drain(session.generate(prompt("Q A: "), GREEDY)) == ("alpha", "end_of_turn")


def test_a_closed_host_ends_sessions_with_a_clear_error() -> None:
    h = fake_host(FakeDecoder(echo))
    session = h.session()
    h.close()
    with pytest.raises(BackendError, match="closed"):
        drain(session.generate(prompt("Q"), GREEDY))
    with pytest.raises(BackendError, match="closed"):
        h.session()


@tool(risk="dangerous")
def launch(target: str) -> str:
    """Launch something (needs a person's yes).

    Args:
        target: What to launch.
    """
    return f"launched {target}"


@tool
def add(a: int, b: int) -> int:
    """Add two integers.

    Args:
        a: The first number.
        b: The second number.
    """
    return a + b


def _agent(session: HostedLlamaBackend, tmp_path: Path, **options: object) -> Agent:
    return Agent(session, tools=[add, launch], workspace=tmp_path, **options)  # type: ignore[arg-type]


def test_agents_share_a_host_one_parked_on_an_approval_while_others_finish(
    tmp_path: Path,
) -> None:
    scripts = {
        "task W": [f"Ask.\n{call('launch', target='moon')}", "Done.\n</think>\n\nLaunched."],
        "task X": [f"Add.\n{call('add', a=2, b=3)}", "So 5.\n</think>\n\nX is 5."],
        "task Y": [f"Add.\n{call('add', a=4, b=4)}", "So 8.\n</think>\n\nY is 8."],
    }
    decoder = FakeDecoder(ScriptModel(scripts), n_seq_max=2)
    asked, answer = threading.Event(), threading.Event()

    def approve(_: object) -> bool:
        asked.set()
        assert answer.wait(HANG_BOUND)
        return True

    with fake_host(decoder) as h:
        waiting = _agent(h.session(), tmp_path, approval="ask", approval_callback=approve)
        results: dict[str, str] = {}

        def run(agent: Agent, key: str) -> None:
            results[key] = agent.run(key).answer

        w = threading.Thread(target=run, args=(waiting, "task W"))
        w.start()
        assert asked.wait(HANG_BOUND)  # W is parked on its approval, holding its KV
        for key in ("task X", "task Y"):  # two more conversations on the 2 slots
            run(_agent(h.session(), tmp_path), key)
        assert results == {"task X": "X is 5.", "task Y": "Y is 8."}
        assert h.scheduler.swaps_out >= 1  # W's parked sequence made room
        answer.set()
        w.join(HANG_BOUND)
        assert results["task W"] == "Launched."
        assert h.scheduler.swaps_in >= 1


def test_a_cancel_in_one_agent_leaves_the_others_untouched(tmp_path: Path) -> None:
    slow = "thinking " * 200
    scripts = {"task S": [slow + "\n</think>\n\nnever"], "task T": ["ok\n</think>\n\nT done."]}
    decoder = FakeDecoder(ScriptModel(scripts))
    with fake_host(decoder) as h:
        stopper = _agent(h.session(), tmp_path)
        other = _agent(h.session(), tmp_path)
        finish: dict[str, str] = {}

        def run_slow() -> None:
            for event in stopper.stream("task S"):
                if event.kind == "thinking":
                    stopper.cancel()
            finish["S"] = "ended"

        s = threading.Thread(target=run_slow)
        s.start()
        result = other.run("task T")
        s.join(HANG_BOUND)
        assert finish == {"S": "ended"}
        assert result.answer == "T done." and result.finish_reason == "completed"
        assert not any(s.job for s in h.scheduler._seqs)


def test_prompts_that_cannot_fit_together_take_turns() -> None:
    """Two 32-token prompts, 40 cells, batches of 64: the second starts only once the first
    is done and parked (then swapped out), never half-evaluated against it."""
    decoder = FakeDecoder(ScriptModel({"A": ["aa"], "B": ["bb"]}), n_ctx=40, n_batch=64)
    decoder.gate.clear()
    with fake_host(decoder) as h:
        a, b = h.session(), h.session()
        outcome: dict[str, tuple[str, StopReason]] = {}

        def go(name: str, session: HostedLlamaBackend) -> None:
            outcome[name] = drain(session.generate(prompt(f"Q {name} " + "." * 20), GREEDY))

        threads = [threading.Thread(target=go, args=(n, s)) for n, s in (("A", a), ("B", b))]
        for t in threads:
            t.start()
        deadline = time.monotonic() + HANG_BOUND
        while len(h.scheduler._jobs) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        decoder.gate.set()
        for t in threads:
            t.join(HANG_BOUND)
        assert not any(t.is_alive() for t in threads)
        assert outcome == {"A": ("aa", "end_of_turn"), "B": ("bb", "end_of_turn")}
        assert h.scheduler.swaps_out == 1
        assert max(len({e.seq for e in batch}) for batch in decoder.batches) == 1


def test_an_interrupt_during_the_prompt_returns_and_the_session_goes_on() -> None:
    decoder = FakeDecoder(ScriptModel({"A": ["alpha"]}))
    decoder.gate.clear()  # the prompt's batch waits until the interrupt is asked
    asked = threading.Event()

    def interrupt() -> bool:
        asked.set()
        decoder.gate.set()  # a batch under way ends; the generation returns without a token
        return True

    with fake_host(decoder) as h:
        session = h.session()
        stop = GenerateOptions(sampling=Sampling(temperature=0), interrupt=interrupt)
        assert drain(session.generate(prompt("Q A"), stop)) == ("", "interrupted")
        assert asked.is_set()
        assert drain(session.generate(prompt("Q A"), GREEDY)) == ("alpha", "end_of_turn")


def test_limits_are_checked() -> None:
    from models.llama._host_scheduler import HostLimits

    with pytest.raises(ValueError, match="lookahead must be at least 1, got 0"):
        HostLimits(lookahead=0)
    with pytest.raises(ValueError, match="swap_bytes"):
        HostLimits(swap_bytes=-1)
