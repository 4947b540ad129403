"""What each slash command does (see :mod:`tui.commands` for names, usage and help).

Contract: :func:`run` is called on the UI thread with a parsed command; commands that
change the conversation are only called while no run is in progress (the app checks
``Command.while_running``). Every outcome, success or error, is told in the conversation.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, get_args

from agent import BackendError, Placement, check_spec, load_transcript
from tui import commands, errors, loading, render
from tui.export import transcript_markdown
from tui.screens.sessions import SessionsScreen
from tui.widgets.turn import AssistantTurn, Note, UserMessage

if TYPE_CHECKING:
    from tui.app import ChatApp


async def run(app: ChatApp, name: str, argument: str) -> None:
    """Do command ``name`` with ``argument`` (the rest of the line)."""
    match name:
        case "help":
            await app.note(commands.help_text())
        case "new":
            app.agent.reset()
            app.status.clear_run()
            await app.conversation.clear()
            await app.note("New conversation.")
        case "model":
            await _model(app, argument)
        case "tools":
            await _tools(app)
        case "placement":
            await _placement(app, argument)
        case "save":
            await _save(app, argument)
        case "sessions":

            async def chosen(path: Path | None) -> None:
                if path is not None:
                    await open_session(app, path)

            await app.push_screen(SessionsScreen(app.sessions_dir), callback=chosen)
        case "clear":
            await app.conversation.clear()
        case "quit":
            app.quit_app()
        case _:
            raise ValueError(f"no handler for the command /{name}; add one in {__name__}")


async def _model(app: ChatApp, argument: str) -> None:
    if not argument:
        size = app.status.context_size
        window = f", context {size:,} tokens" if size else ""
        await app.note(f"Model: {render.safe(app.model_label)}{window}. /model NAME loads another.")
        return
    if app.factory is None:
        await app.note("This app was given one agent; it cannot switch models.", "error")
        return
    kept = render.safe(app.model_label)
    try:
        agent = app.factory(argument)
    except (ValueError, LookupError, TypeError, OSError, BackendError) as exc:
        await app.note(_cannot_use(argument, exc, kept), "error")
        return
    if agent.model_spec is not None:
        try:
            check_spec(agent.model_spec)  # a bad name or file fails now, before any load
        except BackendError as exc:
            agent.close()
            await app.note(_cannot_use(argument, exc, kept), "error")
            return
    loading.start(app, agent, argument)  # app.agent stays until the new model has loaded
    await app.note(
        f"Loading {render.safe(argument)}; {kept} stays until it is ready, "
        "then a new conversation starts with it."
    )


def _cannot_use(name: str, exc: Exception, kept: str) -> str:
    return f"Cannot use model {name!r}: {errors.describe(exc).rstrip('.')}. Still using {kept}."


async def _tools(app: ChatApp) -> None:
    tools = list(app.agent.registry)
    if not tools:
        await app.note("No tools: the model can only think and answer.")
        return
    width = max(len(t.name) for t in tools)
    lines = ["Tools (dangerous ones ask before they run):"]
    for t in tools:
        summary = t.description.strip().split("\n")[0]
        lines.append(f"  {t.name:<{width}}  {t.risk:<9}  {summary}")
    await app.note("\n".join(lines))


async def _placement(app: ChatApp, argument: str) -> None:
    choices: tuple[Placement, ...] = get_args(Placement)
    if not argument:
        await app.note(
            f"Placement: {app.agent.placement} (interleaved: calls run inside the thinking; "
            "template: only after </think>). /placement NAME changes it."
        )
        return
    for choice in choices:
        if argument == choice:
            app.agent.placement = choice
            app.status.set_placement(choice)
            await app.note(f"Placement is now {choice}; it applies from the next task.")
            return
    await app.note(f"Placement must be one of {', '.join(choices)}, not {argument!r}.", "error")


async def _save(app: ChatApp, argument: str) -> None:
    source = app.agent.transcript_path
    if source is None or not source.exists():
        await app.note("Nothing to save yet (no task has run, or transcripts are off).", "warning")
        return
    target = Path(argument).expanduser() if argument else source.with_suffix(".md")
    try:
        target.write_text(transcript_markdown(load_transcript(source)), encoding="utf-8")
    except OSError as exc:
        await app.note(f"Cannot write {str(target)!r}: {exc.strerror or exc}", "error")
        return
    await app.note(
        f"Saved the conversation to {render.safe(str(target))} (transcript: {render.safe(str(source))})."
    )


async def open_session(app: ChatApp, path: Path) -> None:
    """Show the session saved in ``path`` and continue its conversation."""
    try:
        transcript = load_transcript(path)
        app.agent.resume(path)
    except OSError as exc:
        await app.note(f"Cannot open {path.name!r}: {exc.strerror or exc}", "error")
        return
    await app.conversation.clear()
    runs = len(transcript.runs)
    await app.note(
        f"Session {path.name} ({runs} task{'s' if runs != 1 else ''}), read back from its "
        "transcript. Your next task continues this conversation."
    )
    for run in transcript.runs:
        turn = AssistantTurn(show_timings=app.show_timings, live=False)
        await app.conversation.add(UserMessage(run.prompt), turn)
        await turn.apply_all(run.events)
        if not run.finished:
            await turn.mount(Note("(this run did not finish)", "warning"))
    if transcript.skipped_lines:
        await app.note(f"{transcript.skipped_lines} unreadable line(s) skipped.", "warning")
