"""What ``qwq-agent models`` shows: the catalog with what is here, what a spec resolves to,
and how a model would fit this machine. Nothing here loads a model or touches the network.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from models.base import BackendError
from models.catalog import CATALOG, packaged_gguf, parse_spec, recommended_context
from models.llama.gguf_file import MetadataValue

if TYPE_CHECKING:
    from models.llama._fit import Machine


@dataclass(frozen=True, slots=True)
class ModelListing:
    """A row of ``qwq-agent models``."""

    name: str
    description: str
    source: str
    """``hf://repo/file`` or ``pip:package``."""
    size_gb: float | None
    local_path: Path | None
    """Where the file is, when it is already here (cached or installed)."""
    quants: tuple[str, ...] = ()


def list_models(*, cache_dir: str | os.PathLike[str] | None = None) -> list[ModelListing]:
    """The catalog, with what is already available locally. Never touches the network."""
    rows: list[ModelListing] = []
    for entry in CATALOG.values():
        if entry.package is not None:
            try:
                local: Path | None = packaged_gguf(entry.package)
            except BackendError:
                local = None
            size = local.stat().st_size / 1e9 if local else None
            rows.append(
                ModelListing(entry.name, entry.description, f"pip:{entry.package}", size, local)
            )
            continue
        assert entry.repo_id is not None
        from models._hub import cached

        filename = entry.filename()
        rows.append(
            ModelListing(
                entry.name,
                entry.description,
                f"hf://{entry.repo_id}/{filename}",
                entry.quants[entry._quant(None)][1],
                cached(entry.repo_id, filename, cache_dir=cache_dir),
                tuple(entry.quants),
            )
        )
    return rows


def machine_fit(
    spec: str,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    machine: Machine | None = None,
    n_ctx: int | None = None,
    n_gpu_layers: int | None = None,
    flash_attn: bool | None = None,
    type_k: str | None = None,
    type_v: str | None = None,
) -> dict[str, Any]:
    """What the runtime would choose for ``spec`` on ``machine``, without loading anything.

    ``machine`` defaults to :func:`models.llama._load.probe_machine`; the options are those of
    :func:`open_backend`. For a local, cached or installed file, its metadata is read; for a
    hub model not downloaded yet, the catalog's approximate size and known architecture stand
    in. The answer: ``settings`` (context, YaRN, GPU layers, threads, flash attention, KV-cache
    types), ``context`` (the context chosen, the model's recommended one and its source, and
    ``why`` in words), ``reasons`` (why, in words, the context's among them), ``fits`` (``False`` with ``problem`` when the model
    cannot fit), the file and KV-cache sizes and the ``machine``. ``{}`` for scripted and
    server specs. Never downloads.
    """
    from models.llama._load import kv_cache_bytes, probe_machine, read_gguf, resolve_settings
    from models.llama.options import LlamaOptions

    parsed = parse_spec(spec)
    if parsed.kind in ("scripted", "server"):
        return {}
    out: dict[str, Any] = {}
    file_bytes: int | None = None
    metadata: dict[str, MetadataValue]
    if parsed.kind == "catalog" and CATALOG[parsed.value].package is None:
        entry = CATALOG[parsed.value]
        from models._hub import cached

        assert entry.repo_id is not None
        filename = entry.filename(parsed.quant)
        found = cached(entry.repo_id, filename, cache_dir=cache_dir)
        if found is None:
            size_gb = entry.quants[entry._quant(parsed.quant)][1]
            out.update(downloaded=False, file_gb=size_gb)
            path, metadata, file_bytes = (
                Path(filename),
                dict(entry.architecture),
                int(size_gb * 1e9),
            )
        else:
            path = found
    elif parsed.kind == "catalog":
        assert CATALOG[parsed.value].package is not None
        path = packaged_gguf(str(CATALOG[parsed.value].package))
    else:
        path = Path(parsed.value)
    if file_bytes is None:
        metadata = read_gguf(path)
        out.update(file=str(path), file_gb=round(path.stat().st_size / 1e9, 2))
    machine = machine or probe_machine()
    out["machine"] = machine.as_dict()
    try:
        options = LlamaOptions(
            n_ctx=n_ctx,
            n_gpu_layers=n_gpu_layers,
            flash_attn=flash_attn,
            type_k=type_k,
            type_v=type_v,
        )
        settings = resolve_settings(path, metadata, options, machine=machine, file_bytes=file_bytes)
    except BackendError as exc:
        out.update(fits=False, problem=str(exc))
        return out
    kv = kv_cache_bytes(metadata, settings)
    recommended = recommended_context(path, metadata)
    out.update(_speed(path, metadata, settings.n_gpu_layers, settings.n_threads, file_bytes))
    out.update(
        fits=True,
        settings={
            "n_ctx": settings.n_ctx,
            "yarn": settings.yarn,
            "n_gpu_layers": settings.n_gpu_layers,
            "n_threads": settings.n_threads,
            "flash_attn": settings.flash_attn,
            "kv_cache": f"{settings.type_k}/{settings.type_v}",
        },
        context={
            "n_ctx": settings.n_ctx,
            "recommended": recommended.tokens if recommended else None,
            "source": recommended.source if recommended else None,
            "why": settings.context_reason,
        },
        reasons=list(settings.reasons),
        kv_cache_gb=round(kv / 1e9, 2) if kv is not None else None,
        estimate_gb={
            "gpu": round((settings.gpu_bytes or 0) / 1e9, 1),
            "ram": round((settings.ram_bytes or 0) / 1e9, 1),
        },
    )
    return out


def _speed(
    path: Path,
    metadata: dict[str, MetadataValue],
    n_gpu_layers: int,
    n_threads: int,
    file_bytes: int | None,
) -> dict[str, Any]:
    """``cpu_decode_tokens_per_s`` (when layers run on the CPU) and a ``warning`` when that
    is too slow to use (:func:`models.llama._cpu_speed.slow_cpu_warning`)."""
    from models.llama._cpu_speed import cpu_decode_speed, slow_cpu_warning
    from models.llama._fit import ModelShape

    size = file_bytes if file_bytes is not None else path.stat().st_size
    layers = ModelShape.from_metadata(metadata, size).n_layers
    speed = cpu_decode_speed(size, layers, n_gpu_layers, n_threads)
    if speed is None:
        return {}
    out: dict[str, Any] = {"cpu_decode_tokens_per_s": round(speed, 1)}
    warning = slow_cpu_warning(speed, size, n_threads)
    if warning is not None:
        out["warning"] = warning
    return out


def describe_spec(spec: str) -> dict[str, Any]:
    """What a spec resolves to, without loading or downloading anything."""
    parsed = parse_spec(spec)
    out: dict[str, Any] = {"kind": parsed.kind, "value": parsed.value}
    if parsed.kind == "catalog":
        entry = CATALOG[parsed.value]
        if entry.repo_id is not None:
            out.update(
                quant=entry._quant(parsed.quant),
                repo_id=entry.repo_id,
                filename=entry.filename(parsed.quant),
            )
        else:
            out.update(package=entry.package)
    return out
