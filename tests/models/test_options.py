"""The backend options: ``LlamaOptions``, ``ServerOptions`` and ``BackendOptions``."""

from __future__ import annotations

import pytest

from models.base import BackendError
from models.llama.options import LlamaOptions
from models.openai.options import ServerOptions
from models.options import FLAT_NAMES, BackendOptions


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"n_threads": 0}, "the thread count must be at least 1, not 0"),
        ({"n_threads_batch": -1}, "the batch thread count must be at least 1, not -1"),
        ({"type_k": "Q3"}, "unknown KV-cache type 'q3' for type_k; use one of f32, f16"),
        ({"type_v": "f8"}, "unknown KV-cache type 'f8' for type_v"),
    ],
)
def test_llama_options_refuse_what_can_never_load(options: dict[str, object], message: str) -> None:
    with pytest.raises(BackendError, match=message):
        LlamaOptions(**options)  # type: ignore[arg-type]


def test_llama_options_keep_what_they_are_given() -> None:
    options = LlamaOptions(n_ctx=4096, type_k="Q8_0", state_dir="/tmp/states")
    assert (options.n_ctx, options.type_k, options.lookup) == (4096, "Q8_0", True)
    assert str(options.state_path) == "/tmp/states" and LlamaOptions().state_path is None


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"mode": "chats"}, "unknown server mode 'chats'; use 'completions' or 'chat'"),
        ({"read_timeout": 0}, "read_timeout must be more than 0 seconds, got 0"),
        ({"connect_timeout": -1.0}, "connect_timeout must be more than 0 seconds, got -1.0"),
    ],
)
def test_server_options_refuse_what_can_never_work(
    options: dict[str, object], message: str
) -> None:
    with pytest.raises(BackendError, match=message):
        ServerOptions(**options)  # type: ignore[arg-type]


def test_server_options_copy_the_headers() -> None:
    headers = {"X-Team": "blue"}
    options = ServerOptions(headers=headers, stop=["</s>"])
    headers["X-Team"] = "red"
    assert options.headers == {"X-Team": "blue"} and options.stop == ("</s>",)


def test_flat_names_go_to_the_backend_they_belong_to() -> None:
    options = BackendOptions.from_mapping(
        {
            "n_ctx": 4096,
            "chat_template": "T",
            "n_gpu_layers": 0,
            "lookup": False,
            "api_mode": "chat",
            "api_strict": True,
            "model_name": "m",
            "headers": {"X": "1"},
            "warm_start": False,
            "download": False,
        }
    )
    assert options.llama == LlamaOptions(
        n_ctx=4096, chat_template="T", n_gpu_layers=0, lookup=False
    )
    assert options.server == ServerOptions(
        model_name="m", mode="chat", strict=True, headers={"X": "1"}, chat_template="T",
        context_size=4096,
    )  # fmt: skip
    assert (options.warm_start, options.download, options.cache_dir) == (False, False, None)
    assert options.hub() == {"download": False, "cache_dir": None, "endpoint": None}


def test_merged_lays_new_names_over_the_old_ones() -> None:
    base = BackendOptions.from_mapping({"n_ctx": 2048, "n_gpu_layers": 0})
    merged = base.merged({"n_ctx": 8192, "lookup": False})
    assert merged.llama == LlamaOptions(n_ctx=8192, n_gpu_layers=0, lookup=False)
    assert base.llama.n_ctx == 2048  # frozen: a new value
    assert BackendOptions.from_mapping({}) == BackendOptions()


def test_an_unknown_name_is_refused_with_the_known_ones() -> None:
    with pytest.raises(
        ValueError, match=r"unknown backend_options \['api_mod'\]; known: .*api_mode"
    ):
        BackendOptions.from_mapping({"api_mod": "chat"})
    assert "n_ctx" in FLAT_NAMES and "api_strict" in FLAT_NAMES and "state_dir" in FLAT_NAMES


def test_a_bad_value_is_refused_by_the_option_itself() -> None:
    with pytest.raises(BackendError, match="thread count"):
        BackendOptions.from_mapping({"n_threads": 0})
    with pytest.raises(BackendError, match="unknown server mode"):
        BackendOptions.from_mapping({"api_mode": "nope"})
