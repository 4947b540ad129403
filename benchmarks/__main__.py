"""``python -m benchmarks``: measure the runtime against the model, print a table, save JSON and charts.

Every figure is a ratio measured side by side in one run, so a noisy shared machine moves
both sides together. ``--quick`` is a tiny configuration for the test that keeps this harness
from rotting; the README's figures come from a full run.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks import runtime, sandbox, streaming
from benchmarks.chart import line_chart

if TYPE_CHECKING:
    from models.llama.backend import LlamaCppBackend


def machine() -> dict[str, Any]:
    """The machine the figures were taken on."""
    import os

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    try:
        import llama_cpp

        info["llama_cpp_python"] = llama_cpp.__version__
        info["gpu_offload"] = bool(llama_cpp.llama_supports_gpu_offload())
        info["llama_cpp_system"] = llama_cpp.llama_print_system_info().decode().strip()
    except Exception as exc:  # llama.cpp missing or broken: say so in the report
        info["llama_cpp_python"] = f"unavailable: {exc}"
    try:
        import subprocess

        gpu = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        if gpu.returncode == 0:
            info["gpu"] = gpu.stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        pass
    return info


def run(model: str | None, quick: bool, n_ctx: int, threads: int | None = None) -> dict[str, Any]:
    """Every figure: the runtime's, then (with a ``model``) the model's. ``threads``: llama.cpp
    threads for decoding and prompt evaluation (``None``: the backend's defaults)."""
    results: dict[str, Any] = {"machine": machine(), "model": model}
    results["parser"] = runtime.parser_throughput(megabytes=0.2 if quick else 4.0)
    results["parallel_tools"] = runtime.parallel_tools(sleep_s=0.2 if quick else 1.0)
    results["startup"] = runtime.startup(repeat=1 if quick else 5)
    results["sandbox"] = sandbox.latency(repeat=2 if quick else 20)
    results["streaming"] = streaming.figures(quick)
    if model:
        from benchmarks import llama
        from models.catalog import model_path, parse_spec
        from models.llama.backend import LlamaCppBackend
        from models.llama.options import LlamaOptions

        spec = parse_spec(model)
        if spec.kind not in ("catalog", "path"):
            raise SystemExit(
                f"benchmarks need a llama.cpp model, not {model!r}: give a catalog name "
                "(qwq-agent models) or the path of a .gguf file"
            )
        gguf = model_path(model) if spec.kind == "catalog" else Path(spec.value)
        options = LlamaOptions(n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads)
        backend = LlamaCppBackend(gguf, options, name=model)
        try:
            results.update(model_figures(backend, quick))
        finally:
            backend.close()
        tools = llama.QUICK_TOOLS if quick else llama.ALL_TOOLS
        results["warm_start"] = llama.warm_start(
            gguf, tools=tools, warm_runs=1 if quick else 2, threads=threads
        )
        from benchmarks import process_memory, web_memory

        if process_memory.supported():  # `qwq-agent web`: 3 tabs against 1, and own copies
            results["web_memory"] = web_memory.measure(
                gguf, counterfactual=not quick, cpu=_one_cpu() if threads == 1 else None
            )
        if not quick and _has_server_extra():
            from benchmarks.concurrency import batch_speedup

            results["concurrency"] = batch_speedup(gguf)
    return results


def model_figures(backend: LlamaCppBackend, quick: bool) -> dict[str, Any]:
    """The figures measured on an open llama.cpp backend: decode overhead, tool episodes,
    resume latency (the warm start needs new processes: :func:`benchmarks.llama.warm_start`).
    ``quick``: a workload of a few dozen tokens, for the test that keeps this code working."""
    from benchmarks import llama

    results: dict[str, Any] = {
        "model_info": {"name": backend.info.name, "n_ctx": backend.info.context_size}
    }
    results["decode"] = llama.decode_overhead(
        backend, tokens=8 if quick else 128, rounds=1 if quick else 3
    )
    results["episodes"] = [
        llama.tool_episode(backend, k, observation_tokens=16 if quick else 200)
        for k in ((1,) if quick else (1, 4, 16))
    ]
    if quick:
        results["resume"] = llama.resume_latency(
            backend, (32, 64), observation_tokens=16, repeats=1
        )
    else:
        results["resume"] = llama.resume_latency(backend, (1024, 2048, 4096, 7168, 16384))
    from benchmarks import host  # sessions at once on a model host, resume from saved KV

    results["host"] = host.figures(backend, quick)
    if backend._lookup is not None:  # prompt lookup ÷ plain decoding (benchmarks/lookup.py)
        from benchmarks import lookup

        results["lookup"] = lookup.figures(backend, quick)
    return results


def _one_cpu() -> int | None:
    """A CPU this process may run on (for ``--threads 1``: everything it starts runs there)."""
    import os

    try:
        return min(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return None


def _has_server_extra() -> bool:
    import importlib.util

    return importlib.util.find_spec("llama_cpp.server") is not None


def table(results: dict[str, Any]) -> str:
    rows: list[tuple[str, str, str]] = []
    p = results["parser"]
    rows.append(
        (
            "parser throughput (token-sized chunks)",
            f"{p['mb_per_s']} MB/s",
            f"{p['x_faster_than_100_tok_s_model']}x a 100 tok/s model",
        )
    )
    t = results["parallel_tools"]
    rows.append(
        (
            f"{t['calls']} parallel calls of {t['sleep_s']} s",
            f"{t['wall_s']} s",
            f"speed-up {t['speedup']}x (ideal {t['calls']})",
        )
    )
    s = results["startup"]
    rows.append(
        (
            "`qwq-agent --help`",
            f"{s['qwq_agent_help']['wall_s_median']} s",
            f"{s['qwq_agent_help']['peak_rss_mb']} MB peak; python floor {s['python_floor']['wall_s_median']} s",
        )
    )
    rows.append(
        (
            "`import agent`",
            f"{s['import_agent']['wall_s_median']} s",
            f"{s['import_agent']['peak_rss_mb']} MB peak; heavy modules: {s['heavy_modules_imported']}",
        )
    )
    b = results["sandbox"]
    rows.append(
        (
            "python tool `print(1)`, kernel layer on (median)",
            f"{b['auto_ms_median']} ms",
            f"off: {b['off_ms_median']} ms; the layer costs {b['kernel_layer_ms']} ms "
            f"(target < 100 ms); layers: {', '.join(b['layers'])}",
        )
    )
    for key, server in (("with_counters", "reports counters"), ("without_counters", "no counters")):
        c = results["streaming"][key]
        rows.append(
            (
                f"client CPU per streamed token, server {server}",
                f"{c['us_per_token']} µs",
                f"Agent.stream, transcript on, {c['steps']} steps, {c['tokens']} tokens after a "
                f"{c['prompt_tokens']}-token prompt (median of {c['repeat']}); transcript "
                f"written per event: {results['streaming']['per_event_transcript']['us_per_token']} µs"
                if key == "with_counters"
                else f"the client estimates the counters (cached prefix included); "
                f"{c['steps']} steps, {c['tokens']} tokens after a {c['prompt_tokens']}-token prompt",
            )
        )
    if "decode" in results:
        d = results["decode"]
        rows.append(
            (
                "decode through Agent.stream ÷ raw llama-cpp-python",
                f"{d['ratio']}",
                f"{d['agent_tok_s']} vs {d['raw_tok_s']} tok/s (target ≥ 0.97)",
            )
        )
        for e in results["episodes"]:
            rows.append(
                (
                    f"K={e['k']}: evaluated ÷ (prompt + observations)",
                    f"{e['ratio']}",
                    f"{e['evaluated']} / {e['prompt_plus_observations']} tokens (target ≤ 1.02)",
                )
            )
            rows.append(
                (
                    f"K={e['k']}: usual way ÷ this runtime",
                    f"{e['usual_way_ratio']}",
                    f"no-cache server ÷ this runtime: {e['no_cache_ratio']}",
                )
            )
        wasted = sum(e["wasted_tokens"] for e in results["episodes"])
        rows.append(("tokens generated after </tool_call>", f"{wasted}", "target 0"))
        r = results["resume"]
        rows.append(
            (
                "resume latency, largest ÷ smallest context",
                f"{r['ratio_largest_to_smallest']}",
                ", ".join(f"{k}: {v * 1000:.0f} ms" for k, v in r["seconds_by_context"].items())
                + "; tokens evaluated per resume: "
                + ", ".join(str(v) for v in r["evaluated_by_context"].values()),
            )
        )
        rows.append(
            (
                "same step re-evaluating the context, largest ÷ smallest",
                f"{r['reprefill_ratio_largest_to_smallest']}",
                ", ".join(
                    f"{k}: {v * 1000:.0f} ms" for k, v in r["reprefill_seconds_by_context"].items()
                ),
            )
        )
        w = results["warm_start"]
        rows.append(
            (
                "time to first token, warm ÷ cold (new process)",
                f"{w['ratio']}",
                f"{w['warm_ttft_s']} s vs {w['cold_ttft_s']} s; {w['prefix_tokens_loaded']} tokens loaded",
            )
        )
    if "lookup" in results:
        from benchmarks import lookup

        rows += lookup.rows(results["lookup"])
    if "host" in results:
        from benchmarks import host

        rows += host.rows(results["host"])
    if "web_memory" in results:
        from benchmarks import web_memory

        rows += web_memory.rows(results["web_memory"])
    if "concurrency" in results:
        c = results["concurrency"]
        rows.append(
            (
                f"{c['tasks']} server tasks, 1 at a time ÷ 4 at a time",
                f"{c['speedup']}",
                f"{c['serial_s']} s vs {c['concurrency_4_s']} s (llama-cpp-python server, {c['tool_s']} s tool call each)",
            )
        )
    width = max(len(r[0]) for r in rows)
    lines = [f"| {'measure':<{width}} | value | detail |", f"|{'-' * (width + 2)}|---|---|"]
    lines += [f"| {a:<{width}} | {b} | {c} |" for a, b, c in rows]
    return "\n".join(lines)


def charts(results: dict[str, Any], folder: Path) -> list[Path]:
    """SVG charts: tokens evaluated against K (both approaches); resume latency against
    context; peak memory of ``qwq-agent web`` against tabs (shared model, own copies)."""
    written: list[Path] = []
    if "episodes" in results:
        ks = [e["k"] for e in results["episodes"]]
        path = folder / "prefill_vs_k.svg"
        path.write_text(
            line_chart(
                "Prompt tokens evaluated over a tool episode",
                "tool calls (K)",
                "tokens evaluated",
                {
                    "qwq-agent (interleaved, KV cache kept)": list(
                        zip(ks, [e["evaluated"] for e in results["episodes"]], strict=True)
                    ),
                    "re-rendered template + prefix reuse": list(
                        zip(
                            ks, [e["usual_way_evaluated"] for e in results["episodes"]], strict=True
                        )
                    ),
                    "server without prefix cache": list(
                        zip(
                            ks,
                            [e["no_cache_server_evaluated"] for e in results["episodes"]],
                            strict=True,
                        )
                    ),
                },
            )
        )
        written.append(path)
    if "resume" in results:
        points: list[tuple[float, float]] = [
            (float(k), v * 1000) for k, v in results["resume"]["seconds_by_context"].items()
        ]
        path = folder / "resume_latency.svg"
        path.write_text(
            line_chart(
                "Resume latency after a tool result",
                "context tokens",
                "ms to next token",
                {
                    "qwq-agent (only the tool result is evaluated)": points,
                    "without a cache (everything evaluated again)": [
                        (float(k), v * 1000)
                        for k, v in results["resume"]["reprefill_seconds_by_context"].items()
                    ],
                },
            )
        )
        written.append(path)
    if "web_memory" in results:
        memory = results["web_memory"]
        setups = {"qwq-agent web (one model host)": memory["shared"]}
        if "own_copies" in memory:
            setups["a model per tab (before the host)"] = memory["own_copies"]
        path = folder / "web_memory.svg"
        path.write_text(
            line_chart(
                f"Peak memory (PSS) of qwq-agent web, model file {memory['model_mb']} MB",
                "browser tabs",
                "MB",
                {
                    name: [(float(n), phases[n]["pss_mb"]) for n in ("1", "3")]
                    for name, phases in setups.items()
                },
            )
        )
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument(
        "--model",
        default="smollm2-135m",
        help="a llama.cpp model spec; 'none' for runtime-only figures",
    )
    parser.add_argument("--ctx", type=int, default=8192)
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="llama.cpp threads for decoding and prompt evaluation (default: the backend's; "
        "1 is steadier on a machine busy with other work)",
    )
    parser.add_argument("--quick", action="store_true", help="a tiny configuration (for tests)")
    parser.add_argument("--json", default=None, help="write the figures here as JSON")
    parser.add_argument("--charts", default=None, help="write SVG charts into this folder")
    args = parser.parse_args(argv)
    model = None if args.model == "none" else args.model
    results = run(model, args.quick, args.ctx, args.threads)
    m = results["machine"]
    print(
        f"qwq-agent benchmarks — {m['date']} — {m['cpu']}, {m['cores']} cores, model {model or 'none'}"
    )
    print(table(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
        print(f"figures written to {args.json}")
    if args.charts:
        folder = Path(args.charts)
        folder.mkdir(parents=True, exist_ok=True)
        for path in charts(results, folder):
            print(f"chart written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
