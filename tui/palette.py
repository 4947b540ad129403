"""The slash commands in the command palette (Ctrl+P), beside Textual's own commands.

Contract: every command of :data:`tui.commands.COMMANDS` is listed (``/help``, ``/model``…)
with its help, and found by a fuzzy search on its name. Choosing one that takes no
argument runs it, exactly as typing it would (a command that must wait for a run says so);
choosing one that takes an argument (``/model [NAME]``) writes ``/model `` in the prompt
box for the person to finish, since the palette cannot ask for the argument.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, cast

from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.content import Content

from tui import commands

if TYPE_CHECKING:
    from tui.app import ChatApp


async def choose(app: ChatApp, command: commands.Command) -> None:
    """Do what choosing ``command`` in the palette does (see the module docstring)."""
    if command.usage:
        box = app.prompt_input
        box.load_text(f"/{command.name} ")
        box.move_cursor(box.document.end)
        box.focus()
        return
    await app.run_command(commands.Invocation(command, ""))


def title(command: commands.Command) -> str:
    """How the palette shows ``command``: ``/model NAME`` (no brackets: Textual's palette
    reads its entries as markup, where ``[NAME]`` is a tag)."""
    return f"/{command.name} {command.usage.strip('[]')}".strip()


class SlashCommands(Provider):
    """Offers the chat's slash commands in the command palette."""

    def _app(self) -> ChatApp:
        app = self.app
        assert hasattr(app, "run_command"), f"the slash commands need the chat app, not {app!r}"
        return cast("ChatApp", app)

    async def discover(self) -> Hits:
        """Every slash command, in the order of ``/help``, when nothing is typed yet."""
        app = self._app()
        for command in commands.COMMANDS.values():
            shown = title(command)
            yield DiscoveryHit(
                Content(shown), partial(choose, app, command), text=shown, help=command.help
            )

    async def search(self, query: str) -> Hits:
        """The slash commands whose name matches ``query`` (fuzzily; a leading / is optional)."""
        app = self._app()
        matcher = self.matcher(query)
        for command in commands.COMMANDS.values():
            shown = title(command)
            score = matcher.match(shown)
            if score > 0:
                yield Hit(
                    score,
                    matcher.highlight(shown),
                    partial(choose, app, command),
                    text=shown,
                    help=command.help,
                )
