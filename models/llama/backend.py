"""The embedded backend: a GGUF model run in-process by llama.cpp (llama-cpp-python).

One backend owns one loaded model and its llama.cpp context, and is the one-sequence case of
the model host (:mod:`models.llama.host`): a :class:`~models.llama.host.LlamaHost` on the
context's single sequence, whose scheduler runs each decode step in the consumer's thread
(no host thread, nothing sampled ahead), and one session on it. Every token is decoded by the
host's scheduler (:mod:`models.llama._host_scheduler`); this class adds the loading, the
warm start and the public surface.

Token ids, not text, are the source of truth: the session remembers the segments it has
consumed (see :mod:`models.base`) and their tokens, including the ``"model"`` segment it
generated itself, whose last sampled token is *pending* (sampled, yielded, not yet
evaluated). On :meth:`LlamaCppBackend.generate`:

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
chunk: nothing is wasted and nothing is lost. ``GenerateOptions.interrupt`` is polled between
the prompt's batches.

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

import os
import time
from collections.abc import Generator, Mapping, Sequence
from pathlib import Path

from models.base import (
    BackendError,
    BackendInfo,
    GenerateOptions,
    Sampling,
    Segment,
    StopReason,
    Usage,
)
from models.llama._batch import LlamaDecoder
from models.llama._load import (
    load_llama,
    open_model_file,
)
from models.llama._lookup import Lookup, LookupSettings
from models.llama._tokens import Vocabulary, supports_lookup
from models.llama.host import HostedLlamaBackend, HostLimits, LlamaHost, backend_info
from models.llama.kv_state import PrefixStateStore, fingerprint
from models.llama.options import LlamaOptions
from models.qwq.tags import TOKEN_TAGS


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
        self._closed = False
        try:
            self._vocab = Vocabulary(self._llm)
            info = backend_info(
                self._llm, self._vocab, path, metadata, chat_template, name, default_sampling
            )
            self._decoder = LlamaDecoder.on_context(self._llm)
        except BaseException:
            self._llm.close()
            raise
        self.tag_tokens: dict[str, int | None] = {
            t: self._vocab.single_token(t) for t in TOKEN_TAGS
        }
        """Each tag's token id when the vocabulary has it as one token, else ``None`` (the
        agent's parser then detects it in the text, as it always can)."""
        self.turn_end_token = self._vocab.turn_end
        """The id of ``<|im_end|>`` when it is one token, else ``None``."""
        self._protected = [tag for tag, token in self.tag_tokens.items() if token is not None]
        # The one-sequence host: its scheduler runs in this thread, on the Llama's context.
        self._host = LlamaHost(
            self._decoder,
            self._vocab,
            info,
            limits=HostLimits(max_sessions=1, lookahead=1),
            protected=self._protected,
            inline=True,
        )
        self._host.model_path, self._host.settings = path, self.settings
        self._info: BackendInfo = self._host.info
        store = (
            PrefixStateStore(Path(state_dir), fingerprint(path, info.chat_template, self.settings))
            if state_dir is not None
            else None
        )
        drafter = None
        if lookup is not False and supports_lookup(self._llm):
            drafter = Lookup(lookup if isinstance(lookup, LookupSettings) else None)
        self._session: HostedLlamaBackend = self._host.session(lookup=drafter, store=store)

    # -- the Backend protocol -------------------------------------------------------------

    @property
    def info(self) -> BackendInfo:
        """Static facts about the loaded model."""
        return self._info

    @property
    def usage(self) -> Usage:
        """A snapshot of the cumulative counters."""
        return self._session.usage

    def generate(
        self, context: Sequence[Segment], options: GenerateOptions
    ) -> Generator[str, None, StopReason]:
        """Continue ``context``; see the module docstring and :mod:`models.base`.

        Checks run at call time, before any work: an empty context raises ``ValueError``, a
        context that leaves no room to generate raises :class:`ContextOverflowError`, an
        invalid grammar raises ``ValueError``. A previous generation still open is closed.
        """
        self._check_open()
        return self._session.generate(context, options)

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
        try:
            self._session.close()
        except BackendError as exc:
            raise BackendError(
                "cannot close the backend while a generation runs in another thread; "
                "stop that generation (close its generator) first"
            ) from exc
        self._closed = True
        self._host.close()
        self._llm.close()

    # -- tokens ---------------------------------------------------------------------------

    def tokenize(self, segment: Segment, *, first: bool = False) -> list[int]:
        """The tokens of one segment, as this backend tokenizes it in a context (``first``:
        it opens the context, so it gets the BOS token if the model wants one)."""
        self._check_open()
        return self._session.tokenize(segment, first=first)

    def detokenize(self, tokens: Sequence[int]) -> bytes:
        """The bytes of ``tokens`` (special tokens rendered), as generation yields them."""
        self._check_open()
        return b"".join(self._vocab.piece(t) for t in tokens)

    @property
    def context_tokens(self) -> list[int]:
        """The token ids of the context as recorded (the pending token included)."""
        return self._session.context_tokens

    @property
    def _lookup(self) -> Lookup | None:
        """The prompt-lookup drafter (``None``: plain decoding); a benchmark swaps it."""
        return self._session.lookup

    @_lookup.setter
    def _lookup(self, lookup: Lookup | None) -> None:
        self._session.lookup = lookup

    # -- the KV state on disk (models.llama.kv_state.KVStateful) ----------------------------------

    def kv_fingerprint(self) -> dict[str, object]:
        """What a saved state of this backend depends on besides its tokens."""
        return fingerprint(self.model_path, self._info.chat_template, self.settings)

    def export_kv(self) -> tuple[list[int], bytes] | None:
        """The tokens the KV cache holds and their llama.cpp state (``None``: empty)."""
        self._check_open()
        return self._session.export_kv()

    def import_kv(self, tokens: list[int], data: bytes) -> bool:
        """Replace the context by ``tokens`` with their saved state (a bare record, reused by
        common prefix); ``False``, with an empty context, when the state is not kept (llama.cpp
        refuses it, or it alone exceeds the host's swap budget)."""
        self.reset()
        return self._session.import_kv(tokens, data)

    def reset(self) -> None:
        """Forget the context, keeping the model loaded: close a generation still open, empty
        the KV cache and the record of consumed segments. The next call evaluates its whole
        context (nothing is cached); the counters are kept. For reusing one loaded model for
        unrelated work (a new conversation, the next test) without reloading it.

        Raises:
            BackendError: the backend has been closed.
        """
        self._check_open()
        self._session.reset()
        # Code holding the Llama (a benchmark's raw loop) may have used its cache too.
        self._llm._ctx.kv_cache_clear()  # type: ignore[no-untyped-call]
        self._llm.n_tokens = 0


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
