"""Loading a GGUF into llama.cpp: settings that fit the machine, and errors that say what to do.

:func:`resolve_settings` turns the user's options (all optional) and the file's metadata into
concrete :class:`LoadSettings`: the context size (8192, or the model's training context when
smaller), YaRN rope scaling (factor 4 over an original 32,768, only for QwQ-like models and
only when the asked context exceeds 32,768), GPU offload (all layers when the llama.cpp build
supports it), threads (the machine's physical cores), flash attention and KV-cache types.
:func:`load_llama` creates the ``llama_cpp.Llama`` quietly and turns its failures into
:class:`~models.base.BackendError` messages with a next step.

llama_cpp is imported inside the functions, never at module import.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from models.base import BackendError
from models.gguf_file import GGUFError, MetadataValue, context_length, read_metadata

if TYPE_CHECKING:
    from llama_cpp import Llama

DEFAULT_CTX = 8192
YARN_FACTOR = 4
YARN_ORIGINAL_CTX = 32768
KV_CACHE_TYPES: dict[str, tuple[str, float]] = {
    # name -> (ggml type constant in llama_cpp, bytes per element)
    "f32": ("GGML_TYPE_F32", 4.0),
    "f16": ("GGML_TYPE_F16", 2.0),
    "bf16": ("GGML_TYPE_BF16", 2.0),
    "q8_0": ("GGML_TYPE_Q8_0", 34 / 32),
    "q5_1": ("GGML_TYPE_Q5_1", 24 / 32),
    "q5_0": ("GGML_TYPE_Q5_0", 22 / 32),
    "q4_1": ("GGML_TYPE_Q4_1", 20 / 32),
    "q4_0": ("GGML_TYPE_Q4_0", 18 / 32),
}
_UNQUANTIZED = {"f32", "f16", "bf16"}


@dataclass(frozen=True, slots=True)
class LoadSettings:
    """Everything :func:`load_llama` passes to llama.cpp, decided."""

    n_ctx: int
    n_gpu_layers: int
    n_threads: int
    n_threads_batch: int
    n_batch: int
    flash_attn: bool
    type_k: str
    type_v: str
    yarn: bool
    """Whether YaRN rope scaling (factor 4, original context 32,768) is on."""


def is_qwq_like(path: str | os.PathLike[str], metadata: dict[str, MetadataValue]) -> bool:
    """Whether the model is QwQ (by its GGUF name or its file name)."""
    names = [Path(path).name, metadata.get("general.name"), metadata.get("general.basename")]
    return any(isinstance(n, str) and "qwq" in n.lower() for n in names)


def physical_cores() -> int:
    """The CPU cores this process may use, counting SMT siblings once where Linux says so."""
    try:
        allowed = sorted(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)
    cores: set[tuple[str, str]] = set()
    for cpu in allowed:
        topology = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            package = (topology / "physical_package_id").read_text().strip()
            core = (topology / "core_id").read_text().strip()
        except OSError:
            return max(1, len(allowed))
        cores.add((package, core))
    return max(1, len(cores))


def gpu_offload_supported() -> bool:
    """Whether the installed llama.cpp build can offload layers to a GPU (CUDA, Metal…)."""
    import llama_cpp

    return bool(llama_cpp.llama_supports_gpu_offload())


def read_gguf(path: str | os.PathLike[str]) -> dict[str, MetadataValue]:
    """The GGUF metadata of ``path``, or a :class:`BackendError` saying what is wrong."""
    try:
        return read_metadata(path)
    except GGUFError as exc:
        raise BackendError(str(exc)) from exc


def resolve_settings(
    path: str | os.PathLike[str],
    metadata: dict[str, MetadataValue],
    *,
    n_ctx: int | None = None,
    n_gpu_layers: int | None = None,
    n_threads: int | None = None,
    n_batch: int = 512,
    flash_attn: bool | None = None,
    type_k: str | None = None,
    type_v: str | None = None,
) -> LoadSettings:
    """Decide the load settings; ``None`` options get the defaults described in the module.

    Raises:
        BackendError: an option is out of range or the combination cannot work.
    """
    train_ctx = context_length(metadata)
    qwq = is_qwq_like(path, metadata)
    if n_ctx is None:
        n_ctx = min(DEFAULT_CTX, train_ctx) if train_ctx else DEFAULT_CTX
    if n_ctx < 16:
        raise BackendError(f"the context size must be at least 16 tokens, not {n_ctx}")
    yarn = qwq and n_ctx > YARN_ORIGINAL_CTX
    limit = YARN_ORIGINAL_CTX * YARN_FACTOR if qwq else train_ctx
    if limit and n_ctx > limit:
        raise BackendError(
            f"a context of {n_ctx} tokens is more than this model supports ({limit}); "
            f"use --ctx {limit} or less"
        )
    if n_gpu_layers is None:
        n_gpu_layers = -1 if gpu_offload_supported() else 0
    if flash_attn is None:
        flash_attn = n_gpu_layers != 0 and gpu_offload_supported()
    type_k, type_v = (_kv_type(type_k, "type_k"), _kv_type(type_v, "type_v"))
    if type_v not in _UNQUANTIZED and not flash_attn:
        raise BackendError(
            f"a quantized V cache ({type_v!r}) needs flash attention in llama.cpp; "
            "turn flash attention on, or keep the V cache at f16"
        )
    cores = physical_cores()
    threads = n_threads if n_threads is not None else cores
    if threads < 1:
        raise BackendError(f"the thread count must be at least 1, not {threads}")
    batch_threads = max(threads, len(_allowed_cpus()))
    return LoadSettings(
        n_ctx=n_ctx,
        n_gpu_layers=n_gpu_layers,
        n_threads=threads,
        n_threads_batch=batch_threads,
        n_batch=max(1, min(n_batch, n_ctx)),
        flash_attn=flash_attn,
        type_k=type_k,
        type_v=type_v,
        yarn=yarn,
    )


def _allowed_cpus() -> list[int]:
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:
        return list(range(os.cpu_count() or 1))


def _kv_type(name: str | None, option: str) -> str:
    name = (name or "f16").lower()
    if name not in KV_CACHE_TYPES:
        raise BackendError(
            f"unknown KV-cache type {name!r} for {option}; use one of {', '.join(KV_CACHE_TYPES)}"
        )
    return name


def kv_cache_bytes(metadata: dict[str, MetadataValue], settings: LoadSettings) -> int | None:
    """An estimate of the KV cache's size for ``settings`` (``None`` when unknown)."""
    arch = metadata.get("general.architecture")

    def number(key: str) -> int | None:
        value = metadata.get(f"{arch}.{key}")
        return int(value) if isinstance(value, int) and not isinstance(value, bool) else None

    layers, embd, heads = (
        number("block_count"),
        number("embedding_length"),
        number("attention.head_count"),
    )
    kv_heads = number("attention.head_count_kv") or heads
    if not (layers and embd and heads and kv_heads):
        return None
    head_dim = number("attention.key_length") or embd // heads
    per_token = layers * kv_heads * head_dim
    k_bytes = KV_CACHE_TYPES[settings.type_k][1]
    v_bytes = KV_CACHE_TYPES[settings.type_v][1]
    return int(per_token * settings.n_ctx * (k_bytes + v_bytes))


def load_llama(
    path: str | os.PathLike[str], metadata: dict[str, MetadataValue], settings: LoadSettings
) -> Llama:
    """Create the ``Llama`` for ``path`` with ``settings``, with llama.cpp's logging quiet.

    Raises:
        BackendError: the model or its context could not be created; the message says why
            it probably failed and what to try.
    """
    import llama_cpp

    file = Path(path)
    extra: dict[str, object] = {}
    if settings.yarn:
        extra = {
            "rope_scaling_type": llama_cpp.LLAMA_ROPE_SCALING_TYPE_YARN,
            "rope_freq_scale": 1.0 / YARN_FACTOR,
            "yarn_orig_ctx": YARN_ORIGINAL_CTX,
        }
    try:
        return llama_cpp.Llama(
            str(file),
            n_ctx=settings.n_ctx,
            n_gpu_layers=settings.n_gpu_layers,
            n_threads=settings.n_threads,
            n_threads_batch=settings.n_threads_batch,
            n_batch=settings.n_batch,
            n_ubatch=settings.n_batch,
            flash_attn=settings.flash_attn,
            type_k=getattr(llama_cpp, KV_CACHE_TYPES[settings.type_k][0]),
            type_v=getattr(llama_cpp, KV_CACHE_TYPES[settings.type_v][0]),
            verbose=False,
            **extra,  # type: ignore[arg-type]
        )
    except (ValueError, RuntimeError, OSError) as exc:
        raise BackendError(_explain_failure(file, metadata, settings, exc)) from exc


def _explain_failure(
    file: Path, metadata: dict[str, MetadataValue], settings: LoadSettings, exc: Exception
) -> str:
    size_gb = file.stat().st_size / 1e9 if file.exists() else 0.0
    where = "GPU" if settings.n_gpu_layers != 0 else "RAM"
    if "context" in str(exc):
        kv = kv_cache_bytes(metadata, settings)
        need = f" (its KV cache needs about {kv / 1e9:.1f} GB)" if kv else ""
        return (
            f"llama.cpp loaded {file.name} but could not create a context of "
            f"{settings.n_ctx} tokens{need}: not enough {where} memory. Use a smaller --ctx, "
            "a quantized KV cache (type_k/type_v 'q8_0', with flash attention), "
            "or fewer GPU layers (--n-gpu-layers)"
        )
    return (
        f"llama.cpp could not load {str(file)!r} ({size_gb:.1f} GB): {exc}. Either the file is "
        "truncated or corrupt (download it again: `qwq-agent models pull NAME`), or there is "
        f"not enough {where} memory for it: try a smaller quantization (e.g. qwq-32b:Q3_K_M), "
        "fewer GPU layers (--n-gpu-layers), or a smaller --ctx"
    )
