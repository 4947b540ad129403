"""How fast decoding runs when layers stay on the CPU: a rough estimate, for a warning.

:func:`cpu_decode_speed` estimates tokens per second from memory bandwidth (decoding one token
reads every weight once); :func:`slow_cpu_warning` turns a speed too slow for a reasoning
model into a plain sentence. ``qwq-agent models info`` shows both.
"""

from __future__ import annotations

from models.llama._fit import GB, gb_text

CPU_GBPS_PER_THREAD = 8.0
CPU_GBPS_MAX = 60.0
"""Rough memory bandwidth a CPU decode gets: about 8 GB/s per thread, at most 60 GB/s (what
two channels of DDR5 give). Decoding one token reads every weight once, so on the CPU it is
bound by this, not by arithmetic."""
SLOW_TOKENS_PER_SECOND = 3.0
"""Below this a reasoning model, which writes thousands of tokens per answer, is unusable."""


def cpu_decode_speed(
    file_bytes: int, n_layers: int | None, n_gpu_layers: int, n_threads: int
) -> float | None:
    """Roughly how many tokens per second decoding reaches when layers run on the CPU: the
    bandwidth of :data:`CPU_GBPS_PER_THREAD` per thread (capped at :data:`CPU_GBPS_MAX`)
    divided by the bytes of the layers on the CPU. ``None`` when every layer is on the GPU
    (the GPU sets the pace). An estimate within a factor of two or so, for a warning; the
    figures of a real run are in ``benchmarks/``.
    """
    if n_gpu_layers < 0 or (n_layers and n_gpu_layers >= n_layers):
        return None
    share = 1.0 - n_gpu_layers / n_layers if n_layers else 1.0
    bandwidth = min(max(n_threads, 1) * CPU_GBPS_PER_THREAD, CPU_GBPS_MAX) * GB
    return bandwidth / max(file_bytes * share, 1.0)


def slow_cpu_warning(speed: float, file_bytes: int, n_threads: int) -> str | None:
    """A plain warning when ``speed`` (tokens/s, :func:`cpu_decode_speed`) is below
    :data:`SLOW_TOKENS_PER_SECOND`, else ``None``."""
    if speed >= SLOW_TOKENS_PER_SECOND:
        return None
    minutes = 1000 / speed / 60
    return (
        f"this model would run on the CPU at roughly {speed:.1f} tokens/s ({gb_text(file_bytes)} "
        f"of weights read for every token with {n_threads} thread"
        f"{'s' if n_threads != 1 else ''}): a 1,000-token answer takes about {minutes:.0f} "
        "minutes, and a reasoning model writes several thousand. Use a GPU (a llama.cpp build "
        "with CUDA or Metal), a smaller model (smollm2-135m for a try-out), or a server "
        "(--model http://HOST:PORT/v1)"
    )
