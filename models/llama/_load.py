"""Loading a GGUF into llama.cpp: settings that fit the machine, and errors that say what to do.

:func:`resolve_settings` turns the user's options (all optional) and the file's metadata into
concrete :class:`LoadSettings`: the context size (without ``--ctx``: the model's recommended
one from the catalog, e.g. 32,768 for QwQ, as far as it fits with the layers placed at
8192, or 8192, or the model's training context when smaller), YaRN rope scaling (factor 4 over an original 32,768, only for QwQ-like models and
only when the asked context exceeds 32,768), GPU offload (all layers when the llama.cpp build
supports it, or as many as fit — see :mod:`models.llama._fit`), threads (the machine's physical
cores), flash attention and KV-cache types, fitted to what :func:`probe_machine` finds (GPU
memory through ``nvidia-smi`` or Apple's unified memory, and RAM).
:func:`load_llama` creates the ``llama_cpp.Llama`` quietly and turns its failures into
:class:`~models.base.BackendError` messages with a next step.

llama_cpp is imported inside the functions, never at module import.
"""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from models.base import BackendError
from models.catalog import recommended_context
from models.llama._fit import KV_CACHE_TYPES, METAL_SHARE, FitRequest, Machine, ModelShape, plan
from models.llama.gguf_file import GGUFError, MetadataValue, context_length, read_metadata
from models.llama.options import MIN_CONTEXT, LlamaOptions

if TYPE_CHECKING:
    from llama_cpp import Llama

log = logging.getLogger(__name__)

DEFAULT_CTX = 8192
YARN_FACTOR = 4
YARN_ORIGINAL_CTX = 32768
NVIDIA_SMI_TIMEOUT = 3.0
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
    reasons: tuple[str, ...] = ()
    """Why these settings, in words: the machine found, the fit, warnings on explicit options."""
    gpu_bytes: int | None = None
    """Estimated GPU memory use (weights, KV cache, compute), when it could be estimated."""
    ram_bytes: int | None = None
    """Estimated RAM use of the CPU-resident part (on unified memory: everything)."""
    context_reason: str = ""
    """Why this context size, in words (one of ``reasons``)."""


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
    """Whether the installed llama.cpp build can offload layers to a GPU (CUDA, Metal…);
    ``False`` when llama-cpp-python is not installed."""
    try:
        import llama_cpp
    except ImportError:
        return False
    return bool(llama_cpp.llama_supports_gpu_offload())


def probe_machine() -> Machine:
    """This machine: the build's offload support, GPU memory (NVIDIA, Apple Metal) and RAM.

    Never raises; what cannot be found out stays ``None``. ``nvidia-smi`` is given
    :data:`NVIDIA_SMI_TIMEOUT` seconds.
    """
    offload = gpu_offload_supported()
    ram_total, ram_available = _ram()
    nvidia = _nvidia()
    if nvidia is not None:
        name, total, free = nvidia
        return Machine(offload, name, total, free, ram_total, ram_available)
    if sys.platform == "darwin" and platform.machine() == "arm64" and ram_total:
        share = int(ram_total * METAL_SHARE)
        free = min(share, ram_available or ram_total)
        metal = "Apple Metal (unified memory)"
        return Machine(offload, metal, share, free, ram_total, ram_available, unified=True)
    return Machine(offload, None, None, None, ram_total, ram_available)


def _ram() -> tuple[int | None, int | None]:
    total = available = None
    with contextlib.suppress(OSError, ValueError, AttributeError):
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return total, available


def _nvidia() -> tuple[str, int, int] | None:
    """(description, total bytes, free bytes) over the visible NVIDIA GPUs, or ``None``."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    query = "--query-gpu=index,memory.total,memory.free"
    try:
        result = subprocess.run(
            [exe, query, "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=NVIDIA_SMI_TIMEOUT,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return parse_nvidia_smi(result.stdout, os.environ.get("CUDA_VISIBLE_DEVICES"))


def parse_nvidia_smi(text: str, visible: str | None = None) -> tuple[str, int, int] | None:
    """Sum ``index, total MiB, free MiB`` lines over the GPUs ``CUDA_VISIBLE_DEVICES`` allows."""
    wanted: set[str] | None = None
    if visible is not None and all(p.strip().isdigit() for p in visible.split(",") if p.strip()):
        wanted = {p.strip() for p in visible.split(",") if p.strip()}
    total = free = count = 0
    for line in text.strip().splitlines():
        try:
            index, mib_total, mib_free = (part.strip() for part in line.split(","))
            if wanted is None or index in wanted:
                total += int(float(mib_total)) * 2**20
                free += int(float(mib_free)) * 2**20
                count += 1
        except ValueError:
            continue
    if not count:
        return None
    return (f"NVIDIA GPU{'s' if count > 1 else ''} ({count})", total, free)


def read_gguf(path: str | os.PathLike[str]) -> dict[str, MetadataValue]:
    """The GGUF metadata of ``path``, or a :class:`BackendError` saying what is wrong."""
    try:
        return read_metadata(path)
    except GGUFError as exc:
        raise BackendError(str(exc)) from exc


def open_model_file(
    model_path: str | os.PathLike[str], options: LlamaOptions | None = None
) -> tuple[Path, dict[str, MetadataValue], LoadSettings]:
    """The path, metadata and load settings (:func:`resolve_settings` of ``options``, default
    :class:`~models.llama.options.LlamaOptions`) of the GGUF file at ``model_path``: what
    every loader of a model file starts with.

    Raises:
        BackendError: no file there, not a GGUF, or options this file cannot take.
    """
    path = Path(model_path).expanduser()
    if not path.is_file():
        raise BackendError(
            f"no model file at {str(path)!r}; pass the path of a .gguf file, or a catalog "
            "name (see `qwq-agent models`)"
        )
    metadata = read_gguf(path)
    return path, metadata, resolve_settings(path, metadata, options)


def resolve_settings(
    path: str | os.PathLike[str],
    metadata: dict[str, MetadataValue],
    options: LlamaOptions | None = None,
    *,
    machine: Machine | None = None,
    file_bytes: int | None = None,
) -> LoadSettings:
    """Decide the load settings of ``options`` (default: all decided here); ``None`` fields
    get the defaults described in the module.

    ``n_ctx``, ``n_gpu_layers``, ``flash_attn``, ``type_k`` and ``type_v`` set explicitly are
    kept; the others are fitted to ``machine`` (default: :func:`probe_machine`) by
    :func:`models.llama._fit.plan`. ``n_threads_batch`` (prompt evaluation) defaults to the larger
    of ``n_threads`` and the CPUs this process may use. ``file_bytes`` stands in for the size
    of a file not here yet (default: the size of ``path``).

    Raises:
        BackendError: an option is out of range, the combination cannot work, or the model
            cannot fit this machine (the message says what to try instead).
    """
    options = options or LlamaOptions()
    n_ctx, n_threads, n_threads_batch = options.n_ctx, options.n_threads, options.n_threads_batch
    train_ctx = context_length(metadata)
    qwq = is_qwq_like(path, metadata)
    explicit_ctx = n_ctx is not None
    if n_ctx is None:
        n_ctx = min(DEFAULT_CTX, train_ctx) if train_ctx else DEFAULT_CTX
    recommended = recommended_context(path, metadata)
    if n_ctx < MIN_CONTEXT:
        raise BackendError(f"the context size must be at least {MIN_CONTEXT} tokens, not {n_ctx}")
    limit = YARN_ORIGINAL_CTX * YARN_FACTOR if qwq else train_ctx
    if limit and n_ctx > limit:
        raise BackendError(
            f"a context of {n_ctx} tokens is more than this model supports ({limit}); "
            f"use --ctx {limit} or less"
        )
    type_k = options.type_k.lower() if options.type_k is not None else None
    type_v = options.type_v.lower() if options.type_v is not None else None
    if machine is None:
        machine = probe_machine()
    if file_bytes is None:
        file_bytes = Path(path).stat().st_size if Path(path).is_file() else 0
    fit = plan(
        ModelShape.from_metadata(metadata, file_bytes),
        machine,
        FitRequest(
            n_ctx=n_ctx,
            ctx_explicit=explicit_ctx,
            n_gpu_layers=options.n_gpu_layers,
            flash_attn=options.flash_attn,
            type_k=type_k,
            type_v=type_v,
            smaller_model="a smaller quantization (e.g. qwq-32b:Q3_K_M)"
            if qwq
            else "a smaller quantization of the model (e.g. Q3_K_M instead of Q4_K_M)",
            recommended_ctx=min(recommended.tokens, train_ctx or recommended.tokens)
            if recommended
            else None,
            recommended_source=recommended.source if recommended else "",
        ),
    )
    for reason in fit.reasons:
        log.info("fit: %s", reason)
    if fit.type_v not in _UNQUANTIZED and not fit.flash_attn:
        raise BackendError(
            f"a quantized V cache ({fit.type_v!r}) needs flash attention in llama.cpp; "
            "turn flash attention on, or keep the V cache at f16"
        )
    threads = n_threads if n_threads is not None else physical_cores()
    batch_threads = (
        n_threads_batch if n_threads_batch is not None else max(threads, len(_allowed_cpus()))
    )
    return LoadSettings(
        n_ctx=fit.n_ctx,
        n_gpu_layers=fit.n_gpu_layers,
        n_threads=threads,
        n_threads_batch=batch_threads,
        n_batch=max(1, min(options.n_batch, fit.n_ctx)),
        flash_attn=fit.flash_attn,
        type_k=fit.type_k,
        type_v=fit.type_v,
        yarn=qwq and fit.n_ctx > YARN_ORIGINAL_CTX,
        reasons=fit.reasons,
        gpu_bytes=fit.gpu_bytes,
        ram_bytes=fit.ram_bytes,
        context_reason=fit.context_reason,
    )


def _allowed_cpus() -> list[int]:
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:
        return list(range(os.cpu_count() or 1))


def kv_cache_bytes(metadata: dict[str, MetadataValue], settings: LoadSettings) -> int | None:
    """An estimate of the KV cache's size for ``settings`` (``None`` when unknown)."""
    shape = ModelShape.from_metadata(metadata, 0)
    return shape.kv_bytes(settings.n_ctx, settings.type_k, settings.type_v)


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
