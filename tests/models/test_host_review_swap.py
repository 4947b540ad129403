"""Review of the model host (issue 16): a parked sequence comes back from RAM into a full cache.

The cache is unified: every slot's cells come from one pool of ``n_ctx``. A sequence swapped
out to make room comes back (``llama_state_seq_set_data``) only into free cells; before the
fix it was restored into a free *slot* whose cells other parked sequences still held, which
llama.cpp refuses, so the conversation was evaluated again (what the swap is there to avoid).
This runs on the tiny real model, whose llama.cpp refuses a restore into cells it lacks (the
fake decoder has done so too since the import fix, tests/models/test_host_review_import.py).
"""

from __future__ import annotations

import pytest

from models.base import GenerateOptions, Sampling, Segment
from models.llama.backend import LlamaCppBackend
from models.llama.host import HostLimits, LlamaHost
from tests.models.host_fakes import drain
from tests.real_model import requires_tiny_model

pytestmark = [pytest.mark.real_model, requires_tiny_model]

GREEDY = GenerateOptions(sampling=Sampling(temperature=0), max_tokens=2)


def test_a_swapped_sequence_comes_back_without_re_evaluation_when_parked_ones_fill_the_cache(
    tiny_backend: LlamaCppBackend,
) -> None:
    topic = "the cat sat on the mat and looked at the door. " * 11
    with LlamaHost.sharing(
        tiny_backend, n_seq_max=2, n_ctx=256, limits=HostLimits(max_sessions=2)
    ) as host:
        a, b = host.session(), host.session()
        context_a = [Segment(f"A: {topic}", "template")]
        context_b = [Segment(f"B: {topic}", "template")]
        assert 130 < len(a.tokenize(context_a[0], first=True)) < 200  # two do not fit in 256
        text_a, _ = drain(a.generate(context_a, GREEDY))
        drain(b.generate(context_b, GREEDY))  # a is swapped out for b's cells
        assert host.scheduler.swaps_out == 1
        before = a.usage
        more = [*context_a, Segment(text_a, "model"), Segment(" Then", "template")]
        drain(a.generate(more, GREEDY))  # b is parked in its slot and holds its cells
        assert host.scheduler.swaps_in == 1
        evaluated = a.usage.since(before).prompt_tokens_evaluated
        assert evaluated == 1 + len(a.tokenize(Segment(" Then", "template")))
