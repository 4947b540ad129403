"""Benchmarks on a real GGUF through llama.cpp: decode overhead, prefill work, resume latency,
wasted tokens, warm start.

Tool episodes need a model that makes K calls on demand; a tiny model will not. So the
episodes *force* the model's text with a grammar (a GBNF literal per step): the real backend
samples every token, the real loop stops on ``</tool_call>``, the real tools run, and the
counters are the backend's own. Only the choice of words is imposed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Generator, Sequence
from dataclasses import replace
from typing import Any

from agent import Agent, tool
from models.base import GenerateOptions, Sampling, Segment, StopReason
from models.llama.backend import LlamaCppBackend
from models.qwq import chat_template

GREEDY = Sampling(temperature=0.0, top_k=0, top_p=1.0)
OBSERVATION_WORDS = (
    "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho "
    "sigma tau upsilon phi chi psi omega "
)


def gbnf_literal(text: str) -> str:
    """A grammar whose only sentence is ``text``."""
    escaped = (
        text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    )
    return f'root ::= "{escaped}"'


class ForcedBackend:
    """Wraps a real backend; step ``i`` is constrained to produce ``turns[i]`` exactly."""

    def __init__(self, inner: LlamaCppBackend, turns: Sequence[str]) -> None:
        self.inner = inner
        self.turns = list(turns)
        self.step = 0
        self.sampled_after_stop = 0
        self.stops_at_call = 0
        self.info = inner.info

    @property
    def usage(self) -> Any:
        return self.inner.usage

    def generate(
        self, context: Sequence[Segment], options: GenerateOptions
    ) -> Generator[str, None, StopReason]:
        turn = self.turns[self.step]
        self.step += 1
        forced = replace(options, grammar=gbnf_literal(turn), sampling=GREEDY)
        return self._count(self.inner.generate(context, forced))

    def _count(self, gen: Generator[str, None, StopReason]) -> Generator[str, None, StopReason]:
        """Count tokens sampled beyond the chunk that completed ``</tool_call>`` when the loop
        stopped the generation there."""
        before = self.inner.usage.completion_tokens
        yielded = 0
        text = ""
        try:
            while True:
                try:
                    chunk = next(gen)
                except StopIteration as stop:
                    return stop.value  # type: ignore[no-any-return]
                yielded += 1
                text += chunk
                yield chunk
        except GeneratorExit:  # the consumer stopped us: was it right after the call?
            gen.close()
            if text.endswith("</tool_call>"):
                self.sampled_after_stop += self.inner.usage.completion_tokens - before - yielded
                self.stops_at_call += 1
            raise

    def close(self) -> None:
        self.inner.close()


def _observation(tokens: int, backend: LlamaCppBackend) -> str:
    """Text of about ``tokens`` tokens for this model's tokenizer."""
    text = OBSERVATION_WORDS
    while len(backend.tokenize(Segment(text, "data"))) < tokens:
        text += OBSERVATION_WORDS
    words = text.split()
    while len(backend.tokenize(Segment(" ".join(words), "data"))) > tokens:
        words.pop()
    return " ".join(words)


def tool_episode(backend: LlamaCppBackend, k: int, observation_tokens: int = 200) -> dict[str, Any]:
    """K calls inside the thinking, each answered with ``observation_tokens`` tokens."""
    payload = _observation(observation_tokens, backend)

    @tool
    def lookup(query: str) -> str:
        """Look something up.

        Args:
            query: What to look up.
        """
        return payload

    opening = "" if backend.info.opens_thinking else "<think>\n"  # calls must be in the thinking
    turns = [
        (opening if i == 0 else "")
        + f"Step {i}: I need fact {i}.\n<tool_call>\n"
        + json.dumps({"name": "lookup", "arguments": {"query": f"fact {i}"}})
        + "\n</tool_call>"
        for i in range(k)
    ] + ["I have all the facts.\n</think>\n\nDone."]
    backend.reset()  # a cold context: the episode starts from nothing
    forced = ForcedBackend(backend, turns)
    agent = Agent(
        forced, tools=[lookup], transcript=False, max_steps=k + 2, system="You are terse."
    )
    result = agent.run("Collect the facts.")
    assert result.ok, (result.finish_reason, result.detail)
    usage = result.usage
    new_text = usage.context_tokens - usage.completion_tokens  # prompt + observations
    usual = usual_way_prefill(backend, turns, payload)
    return {
        "k": k,
        "observation_tokens": observation_tokens,
        "evaluated": usage.prompt_tokens_evaluated,
        "prompt_plus_observations": new_text,
        "ratio": round(usage.prompt_tokens_evaluated / new_text, 4),
        "usual_way_evaluated": usual["evaluated"],
        "usual_way_ratio": round(usual["evaluated"] / usage.prompt_tokens_evaluated, 3),
        "no_cache_server_evaluated": usual["no_cache"],
        "no_cache_ratio": round(usual["no_cache"] / usage.prompt_tokens_evaluated, 3),
        "wasted_tokens": forced.sampled_after_stop,
        "stops_at_call": forced.stops_at_call,
        "completion_tokens": usage.completion_tokens,
    }


def usual_way_prefill(
    backend: LlamaCppBackend, turns: Sequence[str], payload: str
) -> dict[str, int]:
    """The same episode the usual way: at each step the conversation is re-rendered through
    the official QwQ template (earlier reasoning stripped, results as ``tool`` messages) and
    handed to llama-cpp-python, which reuses the longest common token prefix of its cache
    (``Llama.generate``'s rule). Counted with this model's tokenizer; ``no_cache`` is a
    server that re-evaluates every prompt whole."""
    template = chat_template.qwq_template()
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Collect the facts."},
    ]
    tools = [
        {
            "type": "function",
            "function": {
                "name": "lookup",
                "description": "Look something up.",
                "parameters": {"type": "object", "properties": {"query": {"type": "string"}}},
            },
        }
    ]
    cache: list[int] = []
    evaluated = no_cache = 0
    for i, turn in enumerate(turns):
        prompt = chat_template.render(template, messages, tools=tools)
        tokens = backend.tokenize(Segment(prompt, "template"), first=True)
        common = 0
        for a, b in zip(cache, tokens, strict=False):
            if a != b:
                break
            common += 1
        evaluated += len(tokens) - common
        no_cache += len(tokens)
        generated = backend.tokenize(Segment(turn, "model"))
        cache = tokens + generated
        if i < len(turns) - 1:  # the thinking goes into content; the template strips it later
            thought, _, _ = turn.partition("<tool_call>")
            messages.append(
                {
                    "role": "assistant",
                    "content": thought + "</think>",
                    "tool_calls": [
                        {
                            "type": "function",
                            "function": {"name": "lookup", "arguments": {"query": f"fact {i}"}},
                        }
                    ],
                }
            )
            messages.append({"role": "tool", "content": payload})
    return {"evaluated": evaluated, "no_cache": no_cache}


def decode_overhead(backend: LlamaCppBackend, tokens: int = 128, rounds: int = 3) -> dict[str, Any]:
    """Decode tokens/s through ``Agent.stream`` ÷ a raw llama-cpp-python eval/sample loop on
    the same prompt, greedy sampler and token count; best of ``rounds`` each, interleaved."""
    captured: list[str] = []

    class Capture:
        info = backend.info

        @property
        def usage(self) -> Any:
            return backend.usage

        def generate(
            self, context: Sequence[Segment], options: GenerateOptions
        ) -> Generator[str, None, StopReason]:
            captured.append("".join(s.text for s in context))
            return backend.generate(context, options)

        def close(self) -> None:
            pass

    prompt = "Write a long story about a lighthouse keeper and a storm. Go on for many paragraphs."
    agent_rates, raw_rates, counts = [], [], []
    for _ in range(rounds):
        backend.reset()
        agent = Agent(Capture(), transcript=False, sampling=GREEDY, max_tokens=tokens)  # type: ignore[arg-type]
        first = None
        n_events = 0
        for event in agent.stream(prompt):
            if event.kind in ("thinking", "text"):
                n_events += 1
                if first is None:
                    first = time.perf_counter()
        end = time.perf_counter()
        produced = agent.last_usage.completion_tokens
        counts.append(produced)
        agent.reset()
        if first is not None and produced > 1:
            agent_rates.append((produced - 1) / (end - first))
        raw_rates.append(_raw_decode(backend, captured[-1], produced))
    agent_best, raw_best = max(agent_rates), max(raw_rates)
    return {
        "tokens": counts[-1],
        "agent_tok_s": round(agent_best, 1),
        "raw_tok_s": round(raw_best, 1),
        "ratio": round(agent_best / raw_best, 3),
    }


def _raw_decode(backend: LlamaCppBackend, prompt: str, n: int) -> float:
    """The plain llama-cpp-python loop a user would write: eval the prompt, then sample with
    one persistent greedy sampler, detokenize, eval the token; tokens/s after the first."""
    from llama_cpp._internals import LlamaSampler

    llm = backend._llm
    backend.reset()
    tokens = llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)
    llm.eval(tokens)
    sampler = LlamaSampler()  # type: ignore[no-untyped-call]
    sampler.add_greedy()  # type: ignore[no-untyped-call]
    first = None
    produced = 0
    try:
        while produced < n:
            token = sampler.sample(llm._ctx, -1)
            produced += 1
            llm.detokenize([token])
            if first is None:
                first = time.perf_counter()
            llm.eval([token])
    finally:
        sampler.close()  # type: ignore[no-untyped-call]
    end = time.perf_counter()
    backend.reset()
    return (produced - 1) / (end - (first or end)) if produced > 1 else 0.0


def resume_latency(
    backend: LlamaCppBackend,
    sizes: Sequence[int],
    *,
    observation_tokens: int = 50,
    repeats: int = 3,
) -> dict[str, Any]:
    """Seconds from appending a tool result of ``observation_tokens`` tokens to the next token
    (best of ``repeats``), at several context lengths, beside what the same step costs when
    the whole context is evaluated again (a server without a prefix cache).

    Only the observation (and the one sampled token) is evaluated on a resume, whatever the
    context: ``evaluated_by_context`` shows it. The latency can still grow with the context
    on hardware where attention over the cache is a large share of the work (a CPU and a tiny
    model); on a GPU with a large model the weights dominate and the ratio stays near 1.
    """
    filler = _observation(min(sizes[0], 400), backend)
    latencies: dict[str, float] = {}
    evaluated: dict[str, int] = {}
    reprefill: dict[str, float] = {}
    observation = [
        Segment("\n<tool_response>\n", "template"),
        Segment(_observation(observation_tokens, backend), "data"),
        Segment("\n</tool_response>\n", "template"),
    ]
    "".join(
        backend.generate(
            [Segment("warm up", "template")], GenerateOptions(sampling=GREEDY, max_tokens=1)
        )
    )
    for size in sizes:
        if size + 100 > backend.info.context_size:
            continue
        backend.reset()
        text = filler
        while len(backend.tokenize(Segment(text, "template"))) < size:
            text += " " + filler
        context = [
            Segment("<|im_start|>user\n" + text + "<|im_end|>\n<|im_start|>assistant\n", "template")
        ]
        options = GenerateOptions(sampling=GREEDY, max_tokens=1)
        first = "".join(backend.generate(context, options))
        context.append(Segment(first, "model"))
        best = float("inf")
        for _ in range(repeats):
            # Rewind to the context (the cache drops the previous observation), so that each
            # measurement evaluates the observation anew instead of finding it cached.
            "".join(backend.generate(context[:-1], options))
            before = backend.usage.prompt_tokens_evaluated
            gen = backend.generate([*context, *observation], options)
            started = time.perf_counter()
            for _chunk in gen:
                break
            best = min(best, time.perf_counter() - started)
            evaluated[str(size)] = backend.usage.prompt_tokens_evaluated - before
            gen.close()
        latencies[str(size)] = round(best, 4)
        backend.reset()  # now everything again, as without a cache
        gen = backend.generate([*context, *observation], options)
        started = time.perf_counter()
        for _chunk in gen:
            break
        reprefill[str(size)] = round(time.perf_counter() - started, 4)
        gen.close()
    keys = list(latencies)
    return {
        "seconds_by_context": latencies,
        "evaluated_by_context": evaluated,
        "reprefill_seconds_by_context": reprefill,
        "ratio_largest_to_smallest": round(latencies[keys[-1]] / latencies[keys[0]], 2)
        if keys
        else None,
        "reprefill_ratio_largest_to_smallest": round(reprefill[keys[-1]] / reprefill[keys[0]], 2)
        if keys
        else None,
    }


ALL_TOOLS = (
    "calculator",
    "python",
    "read_file",
    "write_file",
    "list_dir",
    "fetch_url",
    "web_search",
)
"""The built-in tools: the system turn of the warm-start figure declares them all."""

QUICK_TOOLS: tuple[str, ...] = ()
"""No tool: the warm-start system turn of ``--quick`` (a test's workload) is the system
prompt alone."""

WARM_SCRIPT = """
import json, sys, time
from agent import Agent
from models.llama.backend import LlamaCppBackend
from models.llama.options import LlamaOptions
path, states, tools, threads = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), json.loads(sys.argv[4])
backend = LlamaCppBackend(path, LlamaOptions(state_dir=states, n_ctx=4096, n_threads=threads, n_threads_batch=threads))
agent = Agent(backend, tools=tools, transcript=False, max_tokens=1, approval="deny")
t0 = time.perf_counter()
for event in agent.stream("Hi"):
    if event.kind in ("thinking", "text", "usage"):
        break
print(json.dumps({"ttft": time.perf_counter() - t0, "evaluated": backend.usage.prompt_tokens_evaluated,
                  "cached": backend.usage.prompt_tokens_cached}))
"""


def warm_start(
    gguf: str | os.PathLike[str],
    *,
    tools: Sequence[str] = ALL_TOOLS,
    warm_runs: int = 2,
    threads: int | None = None,
) -> dict[str, Any]:
    """Time to first token of a new run in a fresh process, without and with the saved state
    of the system turn (default system prompt, ``tools`` declared): one cold run, then
    ``warm_runs`` warm ones (the fastest counts). ``threads``: llama.cpp threads (``None``:
    the backend's default)."""
    if warm_runs < 1:
        raise ValueError(f"warm_runs must be at least 1, not {warm_runs!r}")
    with tempfile.TemporaryDirectory() as states:
        runs = []
        command = [sys.executable, "-c", WARM_SCRIPT, str(gguf), states]
        command += [json.dumps(list(tools)), json.dumps(threads)]
        for _ in range(1 + warm_runs):  # cold (no state yet), then warm
            out = subprocess.run(
                command,
                capture_output=True,
                text=True,
                env={**os.environ, "PYTHONPATH": os.getcwd()},
            )
            if out.returncode != 0:
                raise RuntimeError(f"the warm-start probe failed:\n{out.stderr[-3000:]}")
            runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    cold, warm = runs[0], min(runs[1:], key=lambda r: r["ttft"])
    return {
        "cold_ttft_s": round(cold["ttft"], 3),
        "warm_ttft_s": round(warm["ttft"], 3),
        "ratio": round(warm["ttft"] / cold["ttft"], 3),
        "prefix_tokens_loaded": warm["cached"],
    }
