"""The python tool's latency: ``print(1)`` through the whole sandbox, with and without the
kernel layer, side by side so a noisy machine moves both the same way.

Each call is a full :func:`tools.python_tool.run_code`: a new interpreter, the kernel layer
(no_new_privs, Landlock, uid drop as root, seccomp) and RestrictedPython, then the result.
The target (issue 11) is a median under 100 ms with the kernel layer.
"""

from __future__ import annotations

import statistics
import time
from typing import Any


def latency(repeat: int = 20) -> dict[str, Any]:
    """Median and spread, in ms, of ``print(1)`` with ``os_sandbox`` ``"auto"`` and ``"off"``."""
    import logging

    from tools._sandbox_layers import kernel_layers
    from tools.python_tool import PythonLimits, run_code

    logging.getLogger("tools._sandbox_layers").setLevel(logging.ERROR)  # the "off" warning
    applied = kernel_layers()["applied"]  # probed once, outside the timings
    times: dict[str, list[float]] = {"auto": [], "off": []}
    for _ in range(repeat):
        for mode in ("auto", "off"):
            started = time.perf_counter()
            result = run_code("print(1)", PythonLimits(os_sandbox=mode))  # type: ignore[arg-type]
            times[mode].append(time.perf_counter() - started)
            assert result.output == "1\n", result
    figures: dict[str, Any] = {"calls": repeat, "layers": applied}
    for mode, values in times.items():
        figures[f"{mode}_ms_median"] = round(statistics.median(values) * 1000, 1)
        figures[f"{mode}_ms_max"] = round(max(values) * 1000, 1)
    figures["kernel_layer_ms"] = round(figures["auto_ms_median"] - figures["off_ms_median"], 1)
    return figures
