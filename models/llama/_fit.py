"""Fit a GGUF model to the machine: GPU layers, context size and KV-cache type that fit.

:func:`models.llama._load.probe_machine` reads what this machine has: whether the llama.cpp
build can offload, GPU memory (NVIDIA through ``nvidia-smi``; Apple Silicon's Metal shares
system RAM, of which macOS lets the GPU wire about three quarters) and RAM. :func:`plan` takes a
:class:`Machine`, the model's :class:`ModelShape` and the user's :class:`FitRequest` and
returns a :class:`Fit` with the settings and the human-readable reasons for them, or raises
:class:`~models.base.BackendError` when the model cannot fit at all, before llama.cpp is called.

The estimates: one layer weighs ``file size / block_count`` and carries its share of the KV
cache (``n_ctx x layers x kv_heads x head_dim x (K + V bytes)``); a layer offloaded to the GPU
keeps its KV cache there; each side that holds layers needs :data:`MARGIN` more for compute
buffers. Automatic choices use *free* GPU memory and *available* RAM; options the user set
explicitly always win, with a warning when they exceed what is free, and are refused only when
they exceed the machine's *total* memory. Nothing here imports llama_cpp at module import.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from models.base import BackendError
from models.llama.gguf_file import MetadataValue

GB = 1e9
MARGIN = int(1.0 * GB)
"""Compute buffers and runtime overhead, on the GPU when it holds layers and in RAM always."""
METAL_SHARE = 0.75
"""The part of unified memory macOS lets Metal use by default (recommendedMaxWorkingSetSize)."""
MIN_AUTO_CTX = 2048
"""The automatic choice never shrinks the context below this (an explicit ``--ctx`` may)."""
CTX_STEP = 1024
"""An automatic context above the default is a multiple of this (or the recommended one)."""
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


@dataclass(frozen=True, slots=True)
class Machine:
    """What this machine offers a model; ``None`` where it could not be found out (bytes)."""

    gpu_offload: bool
    """Whether the installed llama.cpp build can offload layers (CUDA, Metal…)."""
    gpu: str | None = None
    """The GPU(s) found, in words; ``None`` when GPU memory could not be queried."""
    vram_total: int | None = None
    vram_free: int | None = None
    ram_total: int | None = None
    ram_available: int | None = None
    unified: bool = False
    """GPU memory is system RAM (Apple Silicon): both sides draw on the same pool."""

    def as_dict(self) -> dict[str, Any]:
        """The machine for display, sizes in GB (rounded to 0.1)."""

        def gb(n: int | None) -> float | None:
            return None if n is None else round(n / GB, 1)

        return {
            "gpu_offload": self.gpu_offload,
            "gpu": self.gpu,
            "vram_total_gb": gb(self.vram_total),
            "vram_free_gb": gb(self.vram_free),
            "ram_total_gb": gb(self.ram_total),
            "ram_available_gb": gb(self.ram_available),
            "unified_memory": self.unified,
        }


@dataclass(frozen=True, slots=True)
class ModelShape:
    """The sizes that matter for fitting: the file, its layers and the KV cache per token."""

    file_bytes: int
    n_layers: int | None = None
    kv_elements_per_token: int | None = None
    """K elements per token over all layers (V has as many): layers x kv_heads x head_dim."""

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, MetadataValue], file_bytes: int) -> ModelShape:
        """The shape from GGUF metadata (``<arch>.block_count``, ``embedding_length``,
        ``attention.head_count``, ``attention.head_count_kv``, ``attention.key_length``);
        unknown parts stay ``None``."""
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
        per_token = None
        if layers and embd and heads and kv_heads:
            per_token = layers * kv_heads * (number("attention.key_length") or embd // heads)
        return cls(file_bytes=file_bytes, n_layers=layers or None, kv_elements_per_token=per_token)

    def kv_bytes(self, n_ctx: int, type_k: str, type_v: str) -> int | None:
        """The KV cache's size for ``n_ctx`` tokens (``None`` when the shape is unknown)."""
        if self.kv_elements_per_token is None:
            return None
        per_element = KV_CACHE_TYPES[type_k][1] + KV_CACHE_TYPES[type_v][1]
        return int(self.kv_elements_per_token * n_ctx * per_element)


@dataclass(frozen=True, slots=True)
class FitRequest:
    """The user's options; ``None`` means "choose for me". ``n_ctx`` is always set."""

    n_ctx: int
    ctx_explicit: bool = False
    n_gpu_layers: int | None = None
    flash_attn: bool | None = None
    type_k: str | None = None
    type_v: str | None = None
    smaller_model: str = "a smaller quantization (e.g. Q3_K_M instead of Q4_K_M)"
    """How to name a smaller model in suggestions (e.g. ``qwq-32b:Q3_K_M``)."""
    recommended_ctx: int | None = None
    """Without ``--ctx``: the context to grow to, from ``n_ctx`` (the default), as far as
    memory allows with the layers placed at ``n_ctx`` (the model's recommended context)."""
    recommended_source: str = ""
    """Where ``recommended_ctx`` comes from, in words."""


@dataclass(frozen=True, slots=True)
class Fit:
    """The chosen settings, the estimated memory use (bytes) and why."""

    n_ctx: int
    n_gpu_layers: int
    flash_attn: bool
    type_k: str
    type_v: str
    gpu_bytes: int
    ram_bytes: int
    reasons: tuple[str, ...]
    context_reason: str = ""
    """Why this context, in words (also among ``reasons``)."""


@dataclass(frozen=True, slots=True)
class _Option:
    n_ctx: int
    type_k: str
    type_v: str
    layers_on_gpu: int
    gpu_bytes: int
    ram_bytes: int
    kv_bytes: int


def gb_text(n: float) -> str:
    """``n`` bytes as ``"19.9 GB"``."""
    return f"{n / GB:.1f} GB"


def plan(shape: ModelShape, machine: Machine, request: FitRequest) -> Fit:
    """Choose GPU layers, context and KV-cache types for ``shape`` on ``machine``.

    Automatic choices, in order of preference: keep the asked context; put every layer on
    the GPU (with an f16 KV cache, else q8_0 — which needs flash attention — when that is what
    makes them fit); else offload as many layers as fit, the rest staying in RAM; shrink the
    context (halving, not below :data:`MIN_AUTO_CTX`) only when the model fits nowhere at the
    asked one and ``--ctx`` was not given. Then, without ``--ctx``, the context grows from
    the asked one towards ``request.recommended_ctx`` (the largest multiple of
    :data:`CTX_STEP`, or the recommended context itself, that fits what is free with at least
    the layers placed at the asked one; f16 before q8_0 at equal context), but only where the
    memory it needs is known. Explicit options are kept as they are.

    Raises:
        BackendError: the model cannot fit in this machine's total memory even with the
            choices above; the message says how much is needed and what to try.
    """
    n_layers = shape.n_layers or 1  # unknown layering: all layers or none
    gpu_known = machine.gpu_offload and machine.vram_free is not None
    reasons = _describe_machine(machine)
    if shape.kv_elements_per_token is None:
        reasons.append("the KV cache's size is unknown (no architecture facts in the metadata)")
    kv_types: list[tuple[str, str]]
    if request.type_k is not None or request.type_v is not None:
        kv_types = [(request.type_k or "f16", request.type_v or "f16")]
    else:
        kv_types = [("f16", "f16")] + (
            [("q8_0", "q8_0")] if request.flash_attn is not False else []
        )
    contexts = [request.n_ctx]
    while not request.ctx_explicit and contexts[-1] // 2 >= MIN_AUTO_CTX:
        contexts.append(contexts[-1] // 2)

    def option(n_ctx: int, types: tuple[str, str]) -> _Option:
        kv = shape.kv_bytes(n_ctx, *types) or 0
        per_layer = (shape.file_bytes + kv) / n_layers
        if not machine.gpu_offload:
            layers = 0
        elif request.n_gpu_layers is not None:
            wanted = request.n_gpu_layers
            layers = n_layers if wanted < 0 else min(wanted, n_layers)
        elif not gpu_known:
            layers = n_layers
        else:
            room = (machine.vram_free or 0) - MARGIN
            layers = max(0, min(n_layers, int(room // per_layer))) if per_layer else n_layers
        gpu = int(layers * per_layer) + (MARGIN if layers else 0)
        ram = int((n_layers - layers) * per_layer) + MARGIN + (gpu if machine.unified else 0)
        return _Option(n_ctx, *types, layers, gpu, ram, kv)

    first = [option(request.n_ctx, types) for types in kv_types]
    smaller = [option(c, types) for c in contexts[1:] for types in kv_types]
    full = [o for o in first if o.layers_on_gpu == n_layers and _fits(o, machine, now=True)]
    fitting = [o for o in first if _fits(o, machine, now=True)]
    chosen: _Option | None = None
    why_ctx: str | None = None
    if full and gpu_known and request.n_gpu_layers is None:
        chosen = full[0]
    elif fitting:
        chosen = max(fitting, key=lambda o: o.layers_on_gpu)
    else:
        later = [o for o in smaller if _fits(o, machine, now=True)]
        if later:
            chosen = max(later, key=lambda o: (o.n_ctx, o.layers_on_gpu))
            why_ctx = (
                f"context {chosen.n_ctx} tokens instead of {request.n_ctx}: at {request.n_ctx} "
                f"the model ({gb_text(shape.file_bytes)}) and its KV cache "
                f"({gb_text(first[-1].kv_bytes)}) do not fit in the free memory; pass --ctx to "
                "insist"
            )
    if chosen is None:
        possible = [o for o in first if _fits(o, machine, now=False)]
        if not possible:
            raise BackendError(_cannot_fit(shape, machine, request, first[-1], kv_types[-1]))
        chosen = possible[-1]
        reasons.append(
            "this needs more memory than is free right now "
            f"({gb_text(chosen.ram_bytes)} of RAM, {gb_text(chosen.gpu_bytes)} of GPU memory); "
            "close other programs, or use a smaller --ctx or a smaller model, if loading fails"
        )
    if why_ctx is None:
        grown, why_ctx = _grow(shape, machine, request, chosen, kv_types, option, n_layers)
        if grown is not chosen:
            chosen, first = grown, [option(grown.n_ctx, types) for types in kv_types]
    reasons.append(why_ctx)
    reasons.extend(_explain(shape, machine, request, chosen, first[0], n_layers, gpu_known))
    quantized_v = chosen.type_v not in ("f16", "f32", "bf16")
    flash = (
        request.flash_attn
        if request.flash_attn is not None
        else quantized_v or (chosen.layers_on_gpu > 0 and machine.gpu_offload)
    )
    layers_setting = chosen.layers_on_gpu
    if request.n_gpu_layers is not None:
        layers_setting = request.n_gpu_layers
    elif machine.gpu_offload and chosen.layers_on_gpu == n_layers:
        layers_setting = -1
    return Fit(
        n_ctx=chosen.n_ctx,
        n_gpu_layers=layers_setting,
        flash_attn=flash,
        type_k=chosen.type_k,
        type_v=chosen.type_v,
        gpu_bytes=chosen.gpu_bytes,
        ram_bytes=chosen.ram_bytes,
        reasons=tuple(reasons),
        context_reason=why_ctx,
    )


def _grow(
    shape: ModelShape,
    machine: Machine,
    request: FitRequest,
    chosen: _Option,
    kv_types: list[tuple[str, str]],
    option: Callable[[int, tuple[str, str]], _Option],
    n_layers: int,
) -> tuple[_Option, str]:
    """The largest context up to the recommended one that fits with ``chosen``'s layers (or
    ``chosen`` itself), and why, in words."""
    base, target = chosen.n_ctx, request.recommended_ctx
    if request.ctx_explicit:
        return chosen, f"context {base:,} tokens, as asked (--ctx)"
    if not target or target <= base:
        return chosen, f"context {base:,} tokens, the default for this model; --ctx sets another"
    source = request.recommended_source
    wanted = f"the model's recommended {target:,} ({source})"
    unknown = (
        "the KV cache's size"
        if shape.kv_elements_per_token is None
        else "the GPU's free memory"
        if chosen.layers_on_gpu and machine.vram_free is None
        else "the free RAM"
        if chosen.layers_on_gpu < n_layers and not (machine.ram_available or machine.ram_total)
        else None
    )
    if unknown is not None or not _fits(chosen, machine, now=True):
        why = f"{unknown} is unknown" if unknown else "memory is short already"
        return chosen, f"context {base:,} tokens, not {wanted}: {why}; --ctx {target} insists"
    sizes = [target, *range(target // CTX_STEP * CTX_STEP, base, -CTX_STEP)]
    for n_ctx in (n for n in sizes if n > base):
        for types in kv_types:
            o = option(n_ctx, types)
            if o.layers_on_gpu >= chosen.layers_on_gpu and _fits(o, machine, now=True):
                placed = _placement(o, machine, n_layers)
                if n_ctx == target:
                    return o, (
                        f"context {n_ctx:,} tokens, the model's recommended one ({source}): "
                        f"it fits with {placed}"
                    )
                return o, (
                    f"context {n_ctx:,} tokens, the most that fits with {placed} (the "
                    f"model's recommended context is {target:,}: {source}); --ctx {target} "
                    "insists"
                )
    placed = _placement(chosen, machine, n_layers)
    return chosen, (
        f"context {base:,} tokens: {wanted} does not fit with {placed}; --ctx {target} insists"
    )


def _placement(o: _Option, machine: Machine, n_layers: int) -> str:
    if o.layers_on_gpu == n_layers and machine.gpu_offload:
        return f"all {n_layers} layers on the GPU"
    if o.layers_on_gpu:
        return f"{o.layers_on_gpu} of {n_layers} layers on the GPU"
    return "the model in RAM"


def _describe_machine(machine: Machine) -> list[str]:
    ram = (
        f"RAM: {gb_text(machine.ram_available)} available of {gb_text(machine.ram_total)}"
        if machine.ram_total and machine.ram_available
        else f"RAM: {gb_text(machine.ram_total)}"
        if machine.ram_total
        else "RAM: unknown (not checked)"
    )
    if machine.gpu is None:
        gpu = (
            "GPU memory could not be queried; offloading every layer (the default)"
            if machine.gpu_offload
            else "no GPU offload in this llama.cpp build: running on the CPU"
        )
    elif not machine.gpu_offload:
        gpu = (
            f"{machine.gpu} found, but this llama.cpp build cannot offload to it: running on "
            'the CPU (reinstall llama-cpp-python with CMAKE_ARGS="-DGGML_CUDA=on" or Metal)'
        )
    else:
        gpu = f"{machine.gpu}: {gb_text(machine.vram_free or 0)} free of {gb_text(machine.vram_total or 0)}"
    return [gpu, ram]


def _explain(
    shape: ModelShape,
    machine: Machine,
    request: FitRequest,
    o: _Option,
    f16: _Option,
    n_layers: int,
    gpu_known: bool,
) -> list[str]:
    out: list[str] = []
    kv = f"KV cache {gb_text(o.kv_bytes)} ({o.type_k}/{o.type_v}, {o.n_ctx} tokens)"
    if request.n_gpu_layers is not None:
        out.append(f"{o.layers_on_gpu} of {n_layers} layers on the GPU, as asked (--n-gpu-layers)")
        if machine.vram_free is not None and o.layers_on_gpu and o.gpu_bytes > machine.vram_free:
            out.append(
                f"warning: those layers need about {gb_text(o.gpu_bytes)} of GPU memory, more than "
                f"the {gb_text(machine.vram_free)} free; llama.cpp may fail to load them"
            )
    elif gpu_known and o.layers_on_gpu == n_layers:
        out.append(
            f"all {n_layers} layers on the GPU: model {gb_text(shape.file_bytes)} + {kv} + "
            f"{gb_text(MARGIN)} compute fit in {gb_text(machine.vram_free or 0)} free"
        )
    elif gpu_known:
        out.append(
            f"{o.layers_on_gpu} of {n_layers} layers on the GPU (about "
            f"{gb_text((shape.file_bytes + o.kv_bytes) / n_layers)} each with their KV cache), "
            f"as many as fit in {gb_text(machine.vram_free or 0)} free; the other "
            f"{n_layers - o.layers_on_gpu} stay in RAM (slower)"
        )
    if request.type_k is None and request.type_v is None and o.type_v == "q8_0":
        why = (
            "keeps every layer on the GPU"
            if gpu_known and o.layers_on_gpu == n_layers
            else "puts more layers on the GPU"
            if o.layers_on_gpu > f16.layers_on_gpu
            else "makes it fit in memory"
        )
        out.append(
            f"KV cache q8_0 with flash attention: half the f16 size ({gb_text(f16.kv_bytes)} at "
            f"{f16.n_ctx} tokens), which {why}"
        )
    out.append(kv)
    if machine.unified:
        out.append(f"estimated use of unified memory: {gb_text(o.ram_bytes)}")
    else:
        out.append(f"estimated use: {gb_text(o.gpu_bytes)} GPU memory, {gb_text(o.ram_bytes)} RAM")
    if request.ctx_explicit and not _fits(o, machine, now=True):
        out.append(f"warning: --ctx {o.n_ctx} leaves little free memory; a smaller --ctx is safer")
    return out


def _fits(o: _Option, machine: Machine, *, now: bool) -> bool:
    """Whether ``o`` fits what is free ``now``, or else the totals (unknown counts as fitting)."""
    ram = (machine.ram_available or machine.ram_total) if now else machine.ram_total
    vram = machine.vram_free if now else machine.vram_total
    ram_ok = ram is None or o.ram_bytes <= ram
    return ram_ok and (vram is None or o.layers_on_gpu == 0 or o.gpu_bytes <= vram)


def _cannot_fit(
    shape: ModelShape, machine: Machine, request: FitRequest, o: _Option, types: tuple[str, str]
) -> str:
    ram = machine.ram_total or 0
    vram = 0 if machine.unified or not machine.gpu_offload else machine.vram_total or 0
    where = f"{gb_text(ram)} of RAM" + (f" and {gb_text(vram)} of GPU memory" if vram else "")
    budget = ram + vram - 2 * MARGIN
    per_token = (shape.kv_bytes(1, *types) or 0) or 1
    ctx_fit = int((budget - shape.file_bytes) // per_token) // 256 * 256
    hints = [request.smaller_model]
    if budget - o.kv_bytes > 0:
        hints[0] += f" (a model file of at most {gb_text(budget - o.kv_bytes)} fits)"
    if ctx_fit >= 256 and ctx_fit < o.n_ctx:
        hints.append(f"a smaller context (--ctx {min(ctx_fit, o.n_ctx // 2)})")
    if request.n_gpu_layers not in (None, 0):
        hints.append("fewer GPU layers (--n-gpu-layers), or the CPU (--n-gpu-layers 0)")
    return (
        f"the model does not fit this machine: it needs about "
        f"{gb_text(shape.file_bytes + o.kv_bytes + MARGIN)} (model {gb_text(shape.file_bytes)}, "
        f"KV cache {gb_text(o.kv_bytes)} for {o.n_ctx} tokens at {types[0]}/{types[1]}), and the "
        f"machine has {where}. Try " + "; or ".join(hints)
    )
