"""The embedded backend: a GGUF model run in-process by llama.cpp (llama-cpp-python).

One backend owns one llama.cpp context. Token ids, not text, are the source of truth: the
backend remembers the segments it has consumed (see :mod:`models.base`) and their tokens,
including the ``"model"`` segment it generated itself, whose last sampled token is *pending*
(sampled, yielded, not yet evaluated). On :meth:`LlamaCppBackend.generate`:

* if the context extends the consumed segments (the usual step: an observation appended),
  only the new segments are tokenized (``"template"`` and ``"model"`` with special-token
  parsing, ``"data"`` without, and never into a single-token tag such as ``<tool_call>``)
  and ``[pending token] + new tokens`` are evaluated;
* otherwise (a new user turn over compacted history) the whole context is tokenized and the
  longest common token prefix with the KV cache is kept; the rest is evaluated.

Generation samples one token at a time through one persistent llama.cpp sampler chain per
call (so a grammar advances and penalties see the tokens generated so far), yields the text of
each token as soon as it is complete UTF-8, and stops on an end-of-generation token (never
yielded), ``max_tokens`` (``"length"``), a full window (``"context_full"``) or a stop string.
When the consumer closes the generator after a chunk, the backend's record ends exactly at that
chunk: nothing is wasted and nothing is lost.

Prompt lookup (:mod:`models.llama._lookup`, on by default where it measures a gain): a decode
step may draft the next tokens from an earlier occurrence of the context's last 2-4 tokens and
evaluate ``[pending token] + draft`` in one batch, sampling each position in order with the
generation's sampler until a sample differs from the draft; the text is the sampler's own (a
near-tie may flip: batched logits differ from one-token logits in the last digits). Accepted
draft tokens are in the KV cache before they are yielded: if the generation ends first (the
consumer closes it at ``</tool_call>``, a stop string), they leave the KV cache, and the last
yielded token is left pending as after plain decoding. Drafts end at ``</tool_call>``,
``<tool_response>``, a stop string or an end of turn, so no batch verifies text after them.

Counters (:class:`~models.base.Usage`): ``prompt_tokens_evaluated`` counts every token run in
prefill, the pending token included (so a resume after an observation evaluates the
observation's tokens + 1); ``prompt_tokens_cached`` counts tokens reused when a call does *not*
continue the previous call's context (a changed history, or a prefix loaded from disk by the
warm start); a continuation reuses everything and counts nothing, since those tokens were
counted when they were evaluated or generated. ``context_tokens`` is the context length.
``completion_tokens`` counts generated tokens (drafted or not, each once); ``draft_tokens``
the drafted tokens verified, ``draft_tokens_accepted`` those the sampler chose too.

Warm start (``state_dir``): the KV state of the first system turn (system prompt and declared
tools) is saved to disk and loaded by later backends, see :mod:`models.llama.kv_state`.
"""

from __future__ import annotations

import codecs
import collections
import logging
import os
import time
from collections.abc import Callable, Generator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from models.base import (
    BackendError,
    BackendInfo,
    ContextOverflowError,
    GenerateOptions,
    Sampling,
    Segment,
    StopReason,
    Usage,
)
from models.llama._load import (
    is_qwq_like,
    load_llama,
    open_model_file,
)
from models.llama._lookup import Lookup, LookupSettings, cut_after_stops
from models.llama._record import ContextRecord
from models.llama._tokens import (
    PENALTY_LAST_N,
    StopMatcher,
    Vocabulary,
    make_sampler,
    supports_lookup,
    verify_draft,
)
from models.llama.kv_state import (
    PrefixStateStore,
    fingerprint,
    seq_state,
    set_seq_state,
    system_turn_end,
)
from models.llama.options import LlamaOptions
from models.qwq import chat_template as templates
from models.qwq.tags import CALL_CLOSE, RESPONSE_OPEN, TOKEN_TAGS

if TYPE_CHECKING:
    from llama_cpp._internals import LlamaSampler

log = logging.getLogger(__name__)


class LlamaCppBackend:
    """A :class:`~models.base.Backend` over llama-cpp-python. Not thread-safe; one agent at a time.

    Args:
        model_path: a local GGUF file.
        options: how to load it (:class:`~models.llama.options.LlamaOptions`: context,
            offload, threads, KV cache, chat template, prompt lookup, warm-start folder);
            default: everything fitted to the machine, prompt lookup on, no warm start.
        name: display name (default: the file name).
        default_sampling: the model's recommended sampling, reported in
            :attr:`BackendInfo.default_sampling` (default: QwQ's, :class:`Sampling`).

    Prompt lookup is off on models whose KV cache cannot drop a suffix (recurrent ones).
    Warm start: see the module docstring.

    Raises:
        BackendError: the file is missing or not a GGUF, an option is invalid, or llama.cpp
            could not load it (the message says what to try).
    """

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        options: LlamaOptions | None = None,
        *,
        name: str | None = None,
        default_sampling: Sampling | None = None,
    ) -> None:
        options = options or LlamaOptions()
        chat_template, state_dir, lookup = options.chat_template, options.state_dir, options.lookup
        path, metadata, self.settings = open_model_file(model_path, options)
        started = time.perf_counter()
        self._llm = load_llama(path, metadata, self.settings)
        self.load_seconds = time.perf_counter() - started
        """Seconds llama.cpp took to load the model and create the context."""
        self.model_path = path
        self._vocab = Vocabulary(self._llm)
        self._n_ctx = self._llm.n_ctx()
        self._closed = False

        self.tag_tokens: dict[str, int | None] = {
            t: self._vocab.single_token(t) for t in TOKEN_TAGS
        }
        """Each tag's token id when the vocabulary has it as one token, else ``None`` (the
        agent's parser then detects it in the text, as it always can)."""
        self.turn_end_token = self._vocab.turn_end
        """The id of ``<|im_end|>`` when it is one token, else ``None``."""
        self._protected = [tag for tag, token in self.tag_tokens.items() if token is not None]

        template = chat_template or _str(metadata.get("tokenizer.chat_template"))
        if template is None and is_qwq_like(path, metadata):
            template = templates.qwq_template()
        probe = template or templates.qwq_template()
        self._info = BackendInfo(
            name=name or path.name,
            chat_template=template,
            opens_thinking=_opens_thinking(probe),
            context_size=self._n_ctx,
            supports_grammar=True,
            template_supports_tools=templates.template_supports_tools(probe),
            concurrent=False,
            default_sampling=default_sampling or Sampling(),
            control_tokens=self._vocab.special_tokens(),  # made inert in untrusted text
        )
        self._store = (
            PrefixStateStore(Path(state_dir), fingerprint(path, template, self.settings))
            if state_dir is not None
            else None
        )
        log.debug(
            "loaded %s in %.2fs; single-token tags: %s", path, self.load_seconds, self.tag_tokens
        )

        # The record of what the llama.cpp context holds (see the module docstring).
        self._record = ContextRecord()
        self._usage = Usage()
        self._active: Generator[str, None, StopReason] | None = None
        self._lookup: Lookup | None = None
        """The prompt-lookup drafter (``None``: plain decoding)."""
        if lookup is not False and supports_lookup(self._llm):
            self._lookup = Lookup(lookup if isinstance(lookup, LookupSettings) else None)
        self._stop_tags = tuple(t.encode() for t in (CALL_CLOSE, RESPONSE_OPEN))

    # -- the Backend protocol -------------------------------------------------------------

    @property
    def info(self) -> BackendInfo:
        """Static facts about the loaded model."""
        return self._info

    @property
    def usage(self) -> Usage:
        """A snapshot of the cumulative counters."""
        return self._usage.copy()

    def generate(
        self, context: Sequence[Segment], options: GenerateOptions
    ) -> Generator[str, None, StopReason]:
        """Continue ``context``; see the module docstring and :mod:`models.base`.

        Checks run at call time, before any work: an empty context raises ``ValueError``, a
        context that leaves no room to generate raises :class:`ContextOverflowError`, an
        invalid grammar raises ``ValueError``. A previous generation still open is closed.
        """
        self._check_open()
        if self._active is not None:
            self._active.close()
            self._active = None
        segments = [s for s in context if s.text]
        if not segments:
            raise ValueError("cannot generate from an empty context")
        target, ends, continuation = self._record.plan(
            segments, lambda segment, first: self.tokenize(segment, first=first), self._vocab.piece
        )
        if len(target) >= self._n_ctx:
            raise ContextOverflowError(len(target) + 1, self._n_ctx)
        sampler = make_sampler(self._llm, options)
        _prime_penalties(sampler, options, target)
        run = self._run(segments, target, ends, continuation, sampler, options)
        self._active = run
        return run

    def _check_open(self) -> None:
        if self._closed:
            raise BackendError("this backend has been closed; open a new one")

    def close(self) -> None:
        """Free llama.cpp's model and context. Idempotent.

        Raises:
            BackendError: a generation is running in another thread right now (freeing the
                model under it would crash the process); stop it first.
        """
        if self._closed:
            return
        if self._active is not None:
            try:
                self._active.close()
            except ValueError as exc:  # "generator already executing"
                raise BackendError(
                    "cannot close the backend while a generation runs in another thread; "
                    "stop that generation (close its generator) first"
                ) from exc
            self._active = None
        self._closed = True
        self._llm.close()

    # -- tokens ---------------------------------------------------------------------------

    def tokenize(self, segment: Segment, *, first: bool = False) -> list[int]:
        """The tokens of one segment, as this backend tokenizes it in a context (``first``:
        it opens the context, so it gets the BOS token if the model wants one)."""
        self._check_open()
        if segment.role == "data":
            return self._vocab.tokenize(
                segment.text, special=False, first=first, protect=self._protected
            )
        return self._vocab.tokenize(segment.text, special=True, first=first)

    def detokenize(self, tokens: Sequence[int]) -> bytes:
        """The bytes of ``tokens`` (special tokens rendered), as generation yields them."""
        self._check_open()
        return b"".join(self._vocab.piece(t) for t in tokens)

    @property
    def context_tokens(self) -> list[int]:
        """The token ids of the context as recorded (the pending token included)."""
        return list(self._record.tokens)

    # -- the KV state on disk (models.llama.kv_state.KVStateful) ----------------------------------

    def kv_fingerprint(self) -> dict[str, object]:
        """What a saved state of this backend depends on besides its tokens."""
        return fingerprint(self.model_path, self._info.chat_template, self.settings)

    def export_kv(self) -> tuple[list[int], bytes] | None:
        """The tokens the KV cache holds and their llama.cpp state (``None``: empty)."""
        self._check_open()
        tokens = self._record.evaluated[: self._llm.n_tokens]
        return (tokens, seq_state(self._llm.ctx, 0)) if tokens else None

    def import_kv(self, tokens: list[int], data: bytes) -> bool:
        """Replace the context by ``tokens`` with their saved state (a bare record, reused by
        common prefix); ``False``, with an empty context, when llama.cpp refuses it."""
        self.reset()
        if len(tokens) >= self._n_ctx or not set_seq_state(self._llm.ctx, 0, data):
            self._reset()
            return False
        self._llm.input_ids[: len(tokens)] = tokens
        self._llm.n_tokens = len(tokens)
        self._record.bare(list(tokens))
        return True

    # -- the llama.cpp context ------------------------------------------------------------

    def _truncate(self, n: int) -> int:
        """Keep the first ``n`` evaluated tokens in the KV cache; returns how many were kept."""
        llm = self._llm
        if n < llm.n_tokens and not llm._ctx.kv_cache_seq_rm(-1, n, -1):
            # recurrent models cannot drop a suffix: start over
            llm._ctx.kv_cache_clear()  # type: ignore[no-untyped-call]
            n = 0
        llm.n_tokens = min(n, llm.n_tokens)
        return llm.n_tokens

    def _eval(self, tokens: Sequence[int], interrupt: Callable[[], bool] | None = None) -> None:
        """Evaluate ``tokens``, a batch at a time; between batches, ``interrupt()`` true
        raises :class:`_Interrupted` (what was evaluated stays in the KV cache)."""
        import llama_cpp

        if interrupt is None:
            self._llm.eval(tokens)
        else:
            batch = max(1, self._llm.n_batch)
            for start in range(0, len(tokens), batch):
                if interrupt():
                    raise _Interrupted
                self._llm.eval(tokens[start : start + batch])
        llama_cpp.llama_synchronize(self._llm.ctx)

    def reset(self) -> None:
        """Forget the context, keeping the model loaded: close a generation still open, empty
        the KV cache and the record of consumed segments. The next call evaluates its whole
        context (nothing is cached); the counters are kept. For reusing one loaded model for
        unrelated work (a new conversation, the next test) without reloading it.

        Raises:
            BackendError: the backend has been closed.
        """
        self._check_open()
        if self._active is not None:
            self._active.close()
            self._active = None
        self._reset()

    def _reset(self) -> None:
        self._llm._ctx.kv_cache_clear()  # type: ignore[no-untyped-call]
        self._llm.n_tokens = 0
        self._record.bare([])
        if self._lookup is not None:
            self._lookup.reset()

    # -- one generation -------------------------------------------------------------------

    def _prefill(
        self,
        segments: list[Segment],
        target: list[int],
        ends: list[int],
        continuation: bool,
        interrupt: Callable[[], bool] | None = None,
    ) -> None:
        usage = self._usage
        record = self._record
        keep = _common_prefix(record.evaluated, target)
        if keep == len(target):
            keep -= 1  # the last token must be evaluated again to have logits to sample from
        keep = self._truncate(keep)
        cached = 0 if continuation else keep
        warm_end = system_turn_end(segments[0], target[: ends[0]], self.turn_end_token)
        if (
            self._store is not None
            and keep == 0
            and warm_end
            and self._store.load(self._llm, target[:warm_end])
        ):
            keep = cached = warm_end
        # Until the prompt is in, the record is bare tokens (no segments): whatever stops the
        # evaluation (an error, Ctrl-C) leaves a record the next call can reuse safely.
        record.bare(target[:keep])
        started = time.perf_counter()
        try:
            if self._store is not None and warm_end and keep < warm_end:
                self._eval(target[keep:warm_end], interrupt)
                self._store.save(self._llm, target[:warm_end])
                self._eval(target[warm_end:], interrupt)
            else:
                self._eval(target[keep:], interrupt)
        except RuntimeError as exc:
            self._reset()
            raise BackendError(f"llama.cpp failed while evaluating the prompt: {exc}") from exc
        except BaseException:
            record.bare(target[: self._llm.n_tokens])
            usage.prompt_tokens_evaluated += max(0, self._llm.n_tokens - keep)
            raise
        finally:
            usage.prefill_seconds += time.perf_counter() - started
        record.segments, record.ends, record.tokens = list(segments), ends, list(target)
        usage.prompt_tokens_evaluated += len(target) - keep
        usage.prompt_tokens_cached += cached
        usage.context_tokens = len(target)

    def _run(
        self,
        segments: list[Segment],
        target: list[int],
        ends: list[int],
        continuation: bool,
        sampler: LlamaSampler,
        options: GenerateOptions,
    ) -> Generator[str, None, StopReason]:
        try:
            self._prefill(segments, target, ends, continuation, options.interrupt)
        except _Interrupted:
            self._active = None
            sampler.close()  # type: ignore[no-untyped-call]
            return "interrupted"
        usage, llm, record, lookup = self._usage, self._llm, self._record, self._lookup
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        chunks: list[str] = []
        produced = covered = 0  # sampled tokens kept / of them, fully yielded as text
        stop_strings = StopMatcher(options.stop)
        # Sampled tokens not in the record yet (a verified draft gives several at once); the
        # first ``in_kv`` of them are already in the KV cache (accepted draft tokens).
        queue: collections.deque[int] = collections.deque()
        in_kv = 0
        ended = False
        if lookup is not None:
            lookup.sync(record.tokens)
        stops = self._stop_tags + tuple(stop.encode("utf-8") for stop in options.stop)
        try:
            while True:
                if options.max_tokens is not None and produced >= options.max_tokens:
                    return "length"  # the last token stays pending: no evaluation wasted
                if not queue:
                    if record.pending:
                        if len(record.tokens) >= self._n_ctx:
                            return "context_full"
                        in_kv = self._decode_step(sampler, queue, options, produced, stops)
                    else:  # right after the prompt: its last logits are there
                        started = time.perf_counter()
                        queue.append(sampler.sample(llm._ctx, -1))
                        usage.decode_seconds += time.perf_counter() - started
                token = queue.popleft()
                drafted = in_kv > 0
                if drafted:
                    in_kv -= 1
                    usage.draft_tokens_accepted += 1
                usage.completion_tokens += 1
                if self._vocab.is_end(token):
                    ended = True
                    return "end_of_turn"
                record.tokens.append(token)
                record.pending = not drafted
                if lookup is not None:
                    lookup.append(token)
                produced += 1
                text = decoder.decode(self._vocab.piece(token))
                if decoder.getstate()[0] == b"":
                    covered = produced
                if not text:
                    continue
                chunks.append(text)
                yield text
                if stop_strings.seen(text):
                    return "stopped"
        except RuntimeError as exc:
            self._reset()  # the KV cache cannot be trusted any more
            raise BackendError(f"llama.cpp failed while generating: {exc}") from exc
        finally:
            if record.tokens:
                self._settle_kv(produced > 0 and not ended)
                self._record_generation(produced - covered, "".join(chunks))
            self._active = None
            sampler.close()  # type: ignore[no-untyped-call]

    def _decode_step(
        self,
        sampler: LlamaSampler,
        queue: collections.deque[int],
        options: GenerateOptions,
        produced: int,
        stops: tuple[bytes, ...],
    ) -> int:
        """Evaluate the pending token (with a draft when lookup proposes one) and sample;
        the sampled tokens go to ``queue``. Returns how many of them the KV cache holds."""
        usage, llm, record, lookup = self._usage, self._llm, self._record, self._lookup
        draft: list[int] = []
        if lookup is not None:
            # the KV cache may grow to n_ctx - 1 tokens, as in plain decoding
            room = min(self._n_ctx - 1 - len(record.tokens), llm.n_batch - 1)
            if options.max_tokens is not None:
                room = min(room, options.max_tokens - produced - 1)
            piece = self._vocab.piece
            draft = lookup.draft(
                room,
                lambda d: cut_after_stops(
                    d, piece, b"".join(map(piece, record.tokens[-8:])), stops, self._vocab.is_end
                ),
            )
        started = time.perf_counter()
        if draft:
            sampled = verify_draft(llm, sampler, record.tokens[-1], draft, self._vocab.is_end)
        else:
            self._eval(record.tokens[-1:])
            sampled = [sampler.sample(llm._ctx, -1)]
        seconds = time.perf_counter() - started
        usage.decode_seconds += seconds
        record.pending = False
        queue.extend(sampled)
        if lookup is not None and draft:
            usage.draft_tokens += len(draft)
            lookup.verified(len(draft), len(sampled) - 1, seconds)
        elif lookup is not None:
            lookup.plain(seconds)
        return len(sampled) - 1

    def _settle_kv(self, repend: bool) -> None:
        """After a generation: drop from the KV cache the sampled tokens that never entered
        the record (a verified draft past where the consumer stopped). With ``repend``, the
        last generated token leaves the KV cache and becomes pending, as after plain
        decoding, so the next call evaluates it with its new tokens (in the same batch)."""
        record = self._record
        held = len(record.tokens) - (1 if record.pending else 0)
        if repend and not record.pending:
            held -= 1
            record.pending = True
        if self._llm.n_tokens > held:
            self._truncate(held)

    def _record_generation(self, uncovered: int, text: str) -> None:
        """Drop sampled tokens whose text was never yielded, then record the model segment."""
        record = self._record
        if uncovered:
            if record.pending:
                record.tokens.pop()
                record.pending = False
                uncovered -= 1
            if uncovered:
                del record.tokens[-uncovered:]
                self._truncate(len(record.tokens))
        if text:
            record.segments.append(Segment(text, "model"))
            record.ends.append(len(record.tokens))
        self._usage.context_tokens = len(record.tokens)


def _prime_penalties(sampler: LlamaSampler, options: GenerateOptions, context: list[int]) -> None:
    """Show the penalty sampler (first in the chain when a penalty is set) the last
    ``PENALTY_LAST_N`` tokens of the context, so that penalties cover what was written just
    before this generation too: a generation restarted with a presence penalty because the
    thinking repeats itself (:mod:`agent.step`) penalises the repeated text at once."""
    s = options.sampling
    if s.repeat_penalty == 1.0 and s.presence_penalty == 0.0 and s.frequency_penalty == 0.0:
        return
    import llama_cpp

    penalties = llama_cpp.llama_sampler_chain_get(sampler.sampler, 0)
    for token in context[-PENALTY_LAST_N:]:
        llama_cpp.llama_sampler_accept(penalties, token)


class _Interrupted(Exception):
    """``GenerateOptions.interrupt`` asked to stop while the prompt was being evaluated."""


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def _opens_thinking(template: str) -> bool:
    try:
        return templates.opens_thinking(template)
    except templates.TemplateError:
        return False


def _str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def describe(backend: LlamaCppBackend) -> Mapping[str, object]:
    """What was loaded and how, for ``qwq-agent models info`` and logs."""
    s = backend.settings
    return {
        "model": str(backend.model_path),
        "context": s.n_ctx,
        "gpu_layers": s.n_gpu_layers,
        "threads": s.n_threads,
        "flash_attn": s.flash_attn,
        "kv_cache": f"{s.type_k}/{s.type_v}",
        "yarn": s.yarn,
        "load_seconds": round(backend.load_seconds, 2),
        "single_token_tags": {t: i is not None for t, i in backend.tag_tokens.items()},
    }
