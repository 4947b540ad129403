"""Peak memory of ``qwq-agent web`` with 3 tabs against 1 tab, and against tabs that each load
their own copy of the model (issue 16: 3 tabs should cost one model's worth).

Two setups, each measured in two phases, one after the other in one run:

* **shared** (what ``web`` does): the real ``qwq-agent web --model GGUF --port 0`` in its own
  process group; the model is loaded once, in the web process's model host, and each browser
  tab is a websocket client speaking textual-serve's protocol (``["stdin", text]``), for which
  the server spawns a ``chat`` process that talks to the host in completions mode.
* **own copies** (the counterfactual, what ``web`` did before the host): the same ``chat``
  command as a tab ran then (:func:`agent.cli.web.chat_command` with the model itself), run
  through :class:`agent.cli.web.ChatService` exactly as the server runs a tab's, each process
  loading the model.

Phase 1 opens one tab, phase 2 two more (three open). In each phase every new tab waits for
the prompt box, types :data:`benchmarks.web_tabs.PROMPT` and Enter (:func:`benchmarks.web_tabs.use`), and the phase ends when each of its tabs has
finished its run (a ``finished`` record in its transcript, with the tokens the model
generated). Meanwhile :class:`benchmarks.process_memory.Sampler` samples the whole tree: PSS
summed (shared weight pages divided among their mappers), RSS summed (counted once per mapper),
the split by role, and how many processes map the GGUF. The peak of each phase is its largest
PSS sum. Everything started is killed, process group and all, even on failure, and
:func:`measure` reports any process left (``leftover``, which should be empty).

On a CPU, weights are mmapped from the page cache, so even own copies share those pages (the
PSS sum counts them once) and what each copy adds is anonymous memory (KV cache, compute
buffers); on a GPU each copy is its own upload of the weights, which RSS-style counting (one
model per mapper, ``model_mappers``) stands for. Both are reported.

Run: ``python -m benchmarks.web_memory`` (``--help`` for options); ``python -m benchmarks``
includes it for a llama.cpp model.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks import process_memory as pm
from benchmarks import web_tabs

TAB_OPTIONS = ("--tools", "", "--max-tokens", "16", "--temperature", "0", "--ctx", "2048")
"""The options given to ``web`` (and the own-copy chats): no tools, a short greedy answer,
a small context (the host's KV cache for :data:`agent.cli.web.TAB_SEQUENCES` tabs)."""
ROLE_WEB = "web server + model host"
ROLE_TAB = "tab chat (host client)"
ROLE_OWN = "chat with its own model"
_URL = re.compile(r"(http://127\.0\.0\.1:\d+)/\?token=[A-Za-z0-9_-]+")
MB = 1e6


def _peak(sampler: pm.Sampler, seconds: float) -> dict[str, Any]:
    peak = sampler.peak
    return {
        "pss_mb": round(peak.pss / MB, 1),
        "rss_mb": round(sampler.peak_rss / MB, 1),
        "pss_anon_mb": round(sum(p.pss_anon for p in peak.processes) / MB, 1),
        "pss_file_mb": round(sum(p.pss_file for p in peak.processes) / MB, 1),
        "by_role": {
            role: {
                k: (round(v / MB, 1) if k.startswith(("pss", "rss")) else v) for k, v in row.items()
            }
            for role, row in peak.by_role().items()
        },
        "model_mappers": sampler.most_mappers,
        "samples": sampler.samples,
        "seconds": round(seconds, 1),
    }


async def _phases(
    open_tab: Callable[[], Awaitable[web_tabs.Tab]],
    make_sampler: Callable[[], pm.Sampler],
    sessions: Path,
    alive: Callable[[], str | None],
    seen: dict[int, tuple[int | None, str]],
    before_first: Callable[[], Awaitable[None]] | None = None,
) -> dict[str, Any]:
    """Phase 1 (one tab) and phase 2 (two more), each sampled on its own."""
    tabs: list[web_tabs.Tab] = []
    peaks: dict[str, Any] = {}
    try:
        for name, count in (("1", 1), ("3", 2)):
            sampler = make_sampler()
            started = time.monotonic()
            sampler.start()
            try:
                if before_first is not None and not tabs:
                    await before_first()
                new = [await open_tab() for _ in range(count)]
                tabs += new
                await web_tabs.use(new, sessions, alive)
            finally:
                sampler.stop()
                seen.update(sampler.seen)
            peaks[name] = _peak(sampler, time.monotonic() - started)
    finally:
        for tab in tabs:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(tab.close(), 15)
    peaks["generated_tokens"] = sorted(web_tabs.finished_runs(sessions).values())
    return peaks


# -- shared: the real ``qwq-agent web`` --------------------------------------------------------


def _web_roles(root: int) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    for pid in pm.tree(root):
        if pid == root:
            found.append((pid, ROLE_WEB))
        elif "chat" in pm.command_line(pid):
            found.append((pid, ROLE_TAB))
        else:
            argv = pm.command_line(pid)
            found.append((pid, f"other: {Path(argv[0]).name if argv else '?'}"))
    return found


async def shared(
    gguf: Path, folder: Path, seen: dict[int, tuple[int | None, str]], cpu: int | None
) -> dict[str, Any]:
    """Both phases against the real ``qwq-agent web``; its process group is killed at the end."""
    command = [sys.executable, "-m", "agent.cli", "web", "--port", "0", "--model", str(gguf)]
    log = folder / "web.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*command, *TAB_OPTIONS],
            cwd=Path(__file__).resolve().parents[1],
            env=web_tabs.isolated(dict(os.environ), folder),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the tabs' chats join it
            preexec_fn=web_tabs.pin(cpu),
        )
    try:

        def alive() -> str | None:
            if process.poll() is None:
                return None
            return f"web exited ({process.returncode}): {log.read_text(errors='replace')[-2000:]}"

        def sampler() -> pm.Sampler:
            return pm.Sampler(lambda: _web_roles(process.pid), watched=gguf)

        jar = aiohttp.CookieJar(unsafe=True)  # unsafe: cookies for an IP address
        async with aiohttp.ClientSession(cookie_jar=jar) as session:
            base = ""

            async def serve_page() -> None:  # the model loads in here: sampled in phase 1
                nonlocal base
                found: list[re.Match[str]] = []

                def printed() -> bool:
                    found[:] = [m for m in [_URL.search(log.read_text(errors="replace"))] if m]
                    return bool(found)

                await web_tabs.until("web's URL", printed, alive)
                base = found[0].group(1)
                for _ in range(
                    int(web_tabs.WAIT_S * 10)
                ):  # the URL is printed just before it listens
                    with contextlib.suppress(aiohttp.ClientConnectionError):
                        async with session.get(found[0].group(0)) as page:
                            if page.status == 200:
                                return
                    await asyncio.sleep(0.1)
                raise RuntimeError(f"web did not serve its page within {web_tabs.WAIT_S} s")

            async def open_tab() -> web_tabs.Tab:
                return await web_tabs.WebTab(session, base).open()

            return await _phases(
                open_tab, sampler, folder / "sessions", alive, seen, before_first=serve_page
            )
    finally:
        web_tabs.stop_group(process)


# -- counterfactual: every tab's chat loads its own model ------------------------------------


async def own_copies(
    gguf: Path, folder: Path, seen: dict[int, tuple[int | None, str]], cpu: int | None
) -> dict[str, Any]:
    """Both phases with chats that each load ``gguf``, run as ``web`` runs a tab's chat."""
    from agent.cli.entry import build_parser
    from agent.cli.web import chat_command

    args = build_parser().parse_args(["web", "--model", str(gguf), *TAB_OPTIONS])
    command = "exec " + shlex.join(chat_command(args))
    tabs: list[Any] = []

    async def open_tab() -> web_tabs.Tab:
        tab = web_tabs.own_model_tab(command, folder, cpu)
        tabs.append(tab)
        await tab.start(*web_tabs.SIZE)
        typed: web_tabs.Tab = tab  # a ChatService that is a Tab
        return typed

    def processes() -> list[tuple[int, str]]:
        return [(t.pid, ROLE_OWN) for t in tabs if t.pid is not None]

    def alive() -> str | None:
        codes = [t.exited() for t in tabs if t.exited() is not None]
        return f"a chat exited ({codes[0]})" if codes else None

    try:
        return await _phases(
            open_tab,
            lambda: pm.Sampler(processes, watched=gguf),
            folder / "sessions",
            alive,
            seen,
        )
    finally:
        for tab in tabs:
            await tab.kill()


# -- the figures -------------------------------------------------------------------------------


def _derived(phases: dict[str, Any], model_mb: float, role: str) -> dict[str, Any]:
    """Added memory from 1 tab to 3, per extra tab and against the model's size; and the
    growth of ``role``'s processes (the model host) alone."""
    one, three = phases["1"], phases["3"]
    added = three["pss_mb"] - one["pss_mb"]
    role_one = one["by_role"].get(role, {}).get("pss", 0.0)
    role_three = three["by_role"].get(role, {}).get("pss", 0.0)
    return {
        "added_mb": round(added, 1),
        "added_per_extra_tab_mb": round(added / 2, 1),
        "added_to_model": round(added / model_mb, 2),
        "role_growth_mb": round(role_three - role_one, 1),
        "role_growth_to_model": round((role_three - role_one) / model_mb, 2),
    }


def measure(
    gguf: Path,
    *,
    counterfactual: bool = True,
    cpu: int | None = None,
    seen: dict[int, tuple[int | None, str]] | None = None,
) -> dict[str, Any]:
    """Both setups' peaks (see the module's docstring) and what they come to.

    Args:
        gguf: the model file (the tiny model makes this quick).
        counterfactual: also measure chats that each load their own copy.
        cpu: run everything started on this one CPU (llama.cpp then uses one thread: steadier
            on a busy machine); ``None``: wherever the system puts it.
        seen: filled with every process sampled (pid: start time, role), also when this
            raises, for a caller that checks that none is left.

    Raises:
        RuntimeError: not Linux (no PSS), or a wait failed (the message says which, with the
            end of web's log); every process started is gone all the same.
    """
    if not pm.supported():
        raise RuntimeError("the web memory benchmark reads /proc/PID/smaps_rollup (Linux only)")
    gguf = gguf.resolve()
    model_mb = gguf.stat().st_size / MB
    seen = {} if seen is None else seen
    results: dict[str, Any] = {"model": gguf.name, "model_mb": round(model_mb, 1)}
    with tempfile.TemporaryDirectory(prefix="qwq-web-memory-") as folder:
        try:
            setups = [("shared", shared)] + ([("own_copies", own_copies)] if counterfactual else [])
            for name, setup in setups:
                (Path(folder) / name).mkdir()
                results[name] = asyncio.run(setup(gguf, Path(folder) / name, seen, cpu))
        finally:
            results["leftover"] = _reap(seen)
    results["processes"] = [
        {"pid": pid, "started": started, "role": role} for pid, (started, role) in seen.items()
    ]
    s = results["shared"]
    s.update(_derived(s, model_mb, ROLE_WEB))
    if counterfactual:
        own = results["own_copies"]
        own.update(_derived(own, model_mb, ROLE_OWN))
        results["own_copies_3_to_shared_3"] = {
            "pss": round(own["3"]["pss_mb"] / s["3"]["pss_mb"], 2),
            "rss": round(own["3"]["rss_mb"] / s["3"]["rss_mb"], 2),
        }
    return results


def _reap(seen: dict[int, tuple[int | None, str]]) -> list[str]:
    """Processes of ``seen`` still running a few seconds after their group was killed (each
    then killed by its number): ``"PID (role)"`` each; an empty list is a clean shutdown."""
    deadline = time.monotonic() + 10
    while (left := pm.still_running(seen)) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return [f"{pid} ({seen[pid][1]})" for pid in left]


def rows(results: dict[str, Any]) -> list[tuple[str, str, str]]:
    """Table rows for :func:`benchmarks.__main__.table`."""
    s, model = results["shared"], results["model_mb"]
    one, three = s["1"], s["3"]
    table = [
        (
            "`qwq-agent web`: peak PSS, 3 tabs ÷ 1 tab",
            f"{round(three['pss_mb'] / one['pss_mb'], 2)}",
            f"{three['pss_mb']} MB vs {one['pss_mb']} MB (RSS {three['rss_mb']} vs "
            f"{one['rss_mb']} MB); (3 tabs − 1 tab) ÷ model file ({model} MB) = "
            f"{s['added_to_model']}: each extra tab adds {s['added_per_extra_tab_mb']} MB, "
            f"its chat process (Python, Textual), while the model host grows "
            f"{s['role_growth_mb']} MB; the GGUF is mapped by {three['model_mappers']} "
            "process (goal: 3 tabs cost one model's worth)",
        )
    ]
    if "own_copies" in results:
        own = results["own_copies"]
        ratio = results["own_copies_3_to_shared_3"]
        table.append(
            (
                "3 tabs each loading its own model ÷ `web`'s 3 tabs, peak PSS",
                f"{ratio['pss']}",
                f"{own['3']['pss_mb']} MB vs {three['pss_mb']} MB (RSS: {ratio['rss']}×, "
                f"{own['3']['rss_mb']} MB); each extra own-copy tab adds "
                f"{own['added_per_extra_tab_mb']} MB; the model mapped by "
                f"{own['3']['model_mappers']} processes (on a GPU: {own['3']['model_mappers']} "
                "uploads of the weights)",
            )
        )
    return table


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.web_memory``: print the rows and, with ``--json``, the figures."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.web_memory", description=__doc__)
    parser.add_argument("--model", default="smollm2-135m", help="a catalog name or a .gguf path")
    parser.add_argument("--no-counterfactual", action="store_true", help="only `web` itself")
    parser.add_argument("--cpu", type=int, default=None, help="run everything on this one CPU")
    parser.add_argument("--json", default=None, help="write the figures here as JSON")
    args = parser.parse_args(argv)
    results = measure(gguf_of(args.model), counterfactual=not args.no_counterfactual, cpu=args.cpu)
    for measure_, value, detail in rows(results):
        print(f"| {measure_} | {value} | {detail} |")
    if results["leftover"]:
        print(f"processes left running (killed now): {results['leftover']}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0 if not results["leftover"] else 1


def gguf_of(model: str) -> Path:
    """The GGUF of a catalog name (downloaded, not downloading) or a path.

    Raises:
        SystemExit: neither (the message says what to give).
    """
    from models.catalog import model_path, parse_spec

    spec = parse_spec(model)
    if spec.kind == "path":
        return Path(spec.value)
    if spec.kind == "catalog":
        return model_path(model, download=False)
    raise SystemExit(
        f"the web memory benchmark needs a llama.cpp model, not {model!r}: a catalog name "
        "(qwq-agent models) or the path of a .gguf file"
    )


if __name__ == "__main__":
    sys.exit(main())
