"""A review of the backend options (issue 13, item 2): ``LlamaOptions``, ``ServerOptions`` and
``BackendOptions.from_mapping`` refuse, when they are made, what no backend could take, with a
:class:`models.errors.BackendError` that names the option and the value."""

from __future__ import annotations

import math
from typing import Any

import pytest

from models.errors import BackendError
from models.llama.options import LlamaOptions
from models.openai.options import ServerOptions
from models.options import BackendOptions


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"n_ctx": 0}, r"n_ctx must be at least 16 tokens \(or None\b.*\), got 0"),
        ({"n_ctx": -4096}, r"n_ctx must be at least 16 tokens \(or None\b.*\), got -4096"),
        (
            {"n_gpu_layers": -2},
            r"n_gpu_layers must be -1 \(all\), 0 or more \(or None\b.*\), got -2",
        ),
        ({"n_batch": 0}, r"n_batch must be at least 1, got 0"),
        ({"n_threads": "4"}, r"n_threads must be an int or None, got '4'"),
        ({"n_ctx": 4096.0}, r"n_ctx must be an int or None, got 4096\.0"),
        ({"n_gpu_layers": True}, r"n_gpu_layers must be an int or None, got True"),
        ({"type_k": 8}, r"type_k must be a KV-cache type name .*got 8"),
    ],
)
def test_llama_options_refuse_what_no_model_could_load(
    options: dict[str, Any], message: str
) -> None:
    with pytest.raises(BackendError, match=message):
        LlamaOptions(**options)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"read_timeout": math.inf}, r"read_timeout must be a finite number of seconds.*got inf"),
        ({"connect_timeout": "5"}, r"connect_timeout must be a number of seconds, got '5'"),
        ({"headers": {"X": "a\r\nInjected: 1"}}, r"header 'X': a name or value with CR, LF or NUL"),
        ({"headers": {"X\nY": "a"}}, r"header 'X\\nY': a name or value with CR, LF or NUL"),
        ({"headers": {"X": 1}}, r"header 'X' must be text, got int"),
        ({"headers": "X: 1"}, r"headers must be a mapping of names to values, got 'X: 1'"),
        ({"context_size": 0}, r"context_size must be at least 1 token \(or None\b.*\), got 0"),
        ({"stop": ["</s>", 3]}, r"stop must be strings, got \['</s>', 3\]"),
    ],
)
def test_server_options_refuse_what_no_request_could_carry(
    options: dict[str, Any], message: str
) -> None:
    with pytest.raises(BackendError, match=message):
        ServerOptions(**options)


def test_one_stop_string_is_one_stop() -> None:
    """A string is one stop, not one stop per character (a bare ``"<"`` would end every turn)."""
    assert ServerOptions(stop="</s>").stop == ("</s>",)


def test_flat_names_with_a_bad_value_are_refused_by_the_option() -> None:
    with pytest.raises(BackendError, match=r"n_threads must be an int or None, got '4'"):
        BackendOptions.from_mapping({"n_threads": "4"})
    with pytest.raises(
        BackendError, match=r"n_ctx must be at least 16 tokens \(or None\b.*\), got -5"
    ):
        BackendOptions.from_mapping({"n_ctx": -5})
    with pytest.raises(BackendError, match=r"header 'X': a name or value with CR, LF or NUL"):
        BackendOptions.from_mapping({"headers": {"X": "a\nb"}})


def test_flat_names_must_be_a_mapping() -> None:
    with pytest.raises(ValueError, match=r"backend_options must be a mapping of option names"):
        BackendOptions.from_mapping([("n_ctx", 4096)])  # type: ignore[arg-type]


def test_good_values_are_kept() -> None:
    llama = LlamaOptions(n_ctx=4096, n_gpu_layers=-1, n_batch=1, type_k="Q8_0")
    assert (llama.n_ctx, llama.n_gpu_layers, llama.n_batch, llama.type_k) == (4096, -1, 1, "Q8_0")
    server = ServerOptions(headers={"X-Team": "blue"}, read_timeout=5, context_size=1)
    assert server.headers == {"X-Team": "blue"} and server.read_timeout == 5


@pytest.mark.parametrize("where", ["config file", "task file", "options"])
def test_every_layer_has_the_same_smallest_context(where: str) -> None:
    """The config file, the task file and ``LlamaOptions`` accept the same smallest context
    (:data:`models.llama.options.MIN_CONTEXT`, defined once): they were 256, 64 and 16."""
    from pydantic import ValidationError

    from agent.config import Config
    from agent.tasks.taskfile import Settings
    from models.llama.options import MIN_CONTEXT

    make = {
        "config file": lambda n: Config(ctx=n),
        "task file": lambda n: Settings(ctx=n),
        "options": lambda n: LlamaOptions(n_ctx=n),
    }[where]
    assert make(MIN_CONTEXT) is not None
    with pytest.raises((ValidationError, BackendError)):
        make(MIN_CONTEXT - 1)
