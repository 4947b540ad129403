"""``qwq-agent models [list | pull NAME | info NAME]``: the model catalog.

``list`` never touches the network; ``pull`` downloads once into the Hugging Face cache (with
a progress bar, resuming an interrupted transfer); ``info`` says what a spec resolves to and,
what the runtime would choose on this machine (context, GPU layers, KV-cache type) and why —
for a hub model not downloaded yet, from the catalog's size and architecture.
"""

from __future__ import annotations

import argparse
import json
import sys

from agent.cli import EXIT_BAD_INPUT, EXIT_OK


def run_models(args: argparse.Namespace) -> int:
    from models.base import BackendError
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
        print(json.dumps(info, indent=2, default=str))
        return EXIT_OK
    except BackendError as exc:
        print(f"qwq-agent: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
