"""``qwq-agent models [list | pull NAME | info NAME]``: the model catalog.

``list`` never touches the network; ``pull`` downloads once into the Hugging Face cache (with
a progress bar, resuming an interrupted transfer); ``info`` says what a spec resolves to and,
what the runtime would choose on this machine (context, GPU layers, KV-cache type) and why —
for a hub model not downloaded yet, from the catalog's size and architecture — and how the
context was chosen (the model's recommended one, e.g. 32,768 for QwQ, as far as it fits). ``info`` prints
lines for a person (and a warning when the model would crawl on the CPU); ``--json`` the
machine form.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from agent.cli.common import EXIT_BAD_INPUT, EXIT_OK


def run_models(args: argparse.Namespace) -> int:
    from models import BackendError
    from models.catalog import pull
    from models.model_info import describe_spec, list_models

    try:
        if args.action == "list":
            if args.name:
                print(f"qwq-agent: `models list` takes no name (got {args.name!r}); "
                      f"try `qwq-agent models info {args.name}`", file=sys.stderr)  # fmt: skip
                return EXIT_BAD_INPUT
            for row in list_models():
                where = str(row.local_path) if row.local_path else "not downloaded"
                size = f"{row.size_gb:.1f} GB" if row.size_gb else "?"
                print(f"{row.name:<14} {size:>8}  {row.description}")
                print(f"{'':<14} {'':>8}  source: {row.source}; here: {where}")
                if row.quants:
                    print(f"{'':<14} {'':>8}  quantizations: {', '.join(row.quants)} (NAME:QUANT)")
            return EXIT_OK
        if not args.name:
            print(f"qwq-agent: `models {args.action}` needs a model name", file=sys.stderr)
            return EXIT_BAD_INPUT
        if args.action == "pull":
            path = pull(args.name)
            print(f"{args.name}: {path}")
            return EXIT_OK
        info = describe_spec(args.name)
        from models.model_info import machine_fit

        info.update(machine_fit(args.name))
        if getattr(args, "json", False):
            print(json.dumps(info, indent=2, default=str))
        else:
            print("\n".join(readable_info(args.name, info)))
        return EXIT_OK
    except BackendError as exc:
        print(f"qwq-agent: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT


def readable_info(name: str, info: dict[str, Any]) -> list[str]:
    """The lines ``models info NAME`` prints for a person (``info`` is the ``--json`` form)."""
    kind = info["kind"]
    if kind == "scripted":
        return [f"{name}: a scripted model replaying {info['value']} (nothing to download or fit)"]
    if kind == "server":
        return [f"{name}: an OpenAI-compatible server (it runs the model; nothing to fit here)"]
    lines = [f"{name}: {_source(info)}"]
    machine = info.get("machine", {})
    gpu = machine.get("gpu") or (
        "GPU offload available" if machine.get("gpu_offload") else "no GPU offload"
    )
    ram = f"{machine.get('ram_available_gb')} GB available of {machine.get('ram_total_gb')} GB"
    lines.append(f"  machine: {gpu}; RAM {ram}")
    if not info.get("fits", False):
        lines.append(f"  does not fit: {info.get('problem', 'unknown reason')}")
        return lines
    settings, estimate = info["settings"], info["estimate_gb"]
    layers = settings["n_gpu_layers"]
    on_gpu = "all layers" if layers < 0 else f"{layers} layers"
    yarn = " (YaRN)" if settings["yarn"] else ""
    lines += [
        f"  plan: context {settings['n_ctx']:,} tokens{yarn}, {on_gpu} on the GPU, "
        f"{settings['n_threads']} threads, KV cache {settings['kv_cache']}"
        + (f" ({info['kv_cache_gb']} GB)" if info.get("kv_cache_gb") is not None else ""),
        f"  memory: about {estimate['gpu']} GB of GPU memory and {estimate['ram']} GB of RAM",
    ]
    why_ctx = info.get("context", {}).get("why", "")
    if why_ctx:
        lines.append(f"  {why_ctx}")
    if "cpu_decode_tokens_per_s" in info:
        lines.append(f"  speed: roughly {info['cpu_decode_tokens_per_s']} tokens/s on the CPU")
    reasons = [r for r in info.get("reasons", []) if r != why_ctx]
    lines += ["  why:"] + [f"    - {reason}" for reason in reasons]
    if "warning" in info:
        lines += ["", f"warning: {info['warning']}"]
    return lines


def _source(info: dict[str, Any]) -> str:
    if "repo_id" in info:
        where = (
            f"not downloaded yet (about {info['file_gb']} GB; `qwq-agent models pull "
            f"{info['value']}:{info['quant']}` fetches it)"
            if info.get("downloaded") is False
            else f"here: {info.get('file')} ({info.get('file_gb')} GB)"
        )
        return f"{info['filename']} ({info['quant']}) from {info['repo_id']}, {where}"
    if "package" in info:
        return f"the GGUF of the Python package {info['package']}: {info.get('file')}"
    return f"{info.get('file', info['value'])} ({info.get('file_gb')} GB)"
