"""The slash commands of the chat box: their names, arguments and help, and parsing.

A message is a command when its first word is ``/`` followed by a known name
(``/placement template``); ``//text`` sends ``/text`` to the model. What each command does
is in :mod:`tui.command_handlers`; the help shown by ``/help`` and the command palette's
entries (:mod:`tui.palette`) are built from :data:`COMMANDS` and :data:`KEYS`, so they cannot
drift from them.
"""

from __future__ import annotations

from dataclasses import dataclass

from agent import InputError


@dataclass(frozen=True, slots=True)
class Command:
    name: str
    usage: str
    help: str
    while_running: bool = False
    """Whether it may be used while a run is in progress."""


COMMANDS: dict[str, Command] = {
    c.name: c
    for c in (
        Command("help", "", "show commands and keys", while_running=True),
        Command("new", "", "start a new conversation (the model stays loaded)"),
        Command(
            "model", "[NAME]", "show the model, or load another (name, .gguf, URL, scripted:FILE)"
        ),
        Command("tools", "", "list the tools and their risk", while_running=True),
        Command(
            "placement", "[NAME]", "show or set where calls are honoured: interleaved, template"
        ),
        Command(
            "save", "[FILE]", "write the conversation as Markdown (default: by its transcript)"
        ),
        Command("sessions", "", "open an earlier session from its transcript"),
        Command("clear", "", "clear the screen (the conversation goes on)"),
        Command("quit", "", "quit", while_running=True),
    )
}

KEYS: tuple[tuple[str, str], ...] = (
    ("Enter", "send"),
    ("Ctrl+J, Shift/Alt+Enter", "new line"),
    ("Up / Down", "earlier / later prompts (on the first / last line)"),
    ("Esc", "cancel the running generation or tool"),
    ("Ctrl+T", "fold or unfold the latest thinking"),
    ("Enter / click on a header", "fold or unfold that thinking block or tool card"),
    ("y / a / n (Esc)", "approval: allow once / always allow this tool / deny"),
    ("Ctrl+P", "command palette: these commands, themes (light and dark)"),
    ("Ctrl+C twice, Ctrl+Q", "quit"),
)


@dataclass(frozen=True, slots=True)
class Invocation:
    """A parsed command: its name and the rest of the line (stripped)."""

    command: Command
    argument: str


class UnknownCommandError(InputError):
    """``/name`` where ``name`` is not a command."""


def parse(text: str) -> Invocation | None:
    """The command in ``text``, or ``None`` when it is a message for the model.

    Raises:
        UnknownCommandError: it starts with ``/`` but names no command.
    """
    stripped = text.strip()
    if not stripped.startswith("/") or stripped.startswith("//"):
        return None
    name, _, argument = stripped[1:].partition(" ")
    command = COMMANDS.get(name.lower())
    if command is None:
        known = ", ".join("/" + n for n in COMMANDS)
        raise UnknownCommandError(
            f"unknown command {('/' + name)!r}; commands are {known} "
            "(start a message with // to send one that begins with /)"
        )
    return Invocation(command, argument.strip())


def message_text(text: str) -> str:
    """The text to send for a message that is not a command (``//x`` becomes ``/x``)."""
    stripped = text.lstrip()
    return stripped[1:] if stripped.startswith("//") else text


def help_text() -> str:
    """The text ``/help`` shows."""
    width = max(len(f"/{c.name} {c.usage}".strip()) for c in COMMANDS.values())
    lines = ["Commands:"]
    for c in COMMANDS.values():
        lines.append(f"  {f'/{c.name} {c.usage}'.strip():<{width}}  {c.help}")
    key_width = max(len(k) for k, _ in KEYS)
    lines.append("Keys:")
    lines.extend(f"  {k:<{key_width}}  {v}" for k, v in KEYS)
    return "\n".join(lines)
