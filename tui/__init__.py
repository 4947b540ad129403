"""The Textual TUI of qwq-agent (``qwq-agent`` / ``qwq-agent chat``).

``tui.app.make_app(agent_or_factory)`` builds the app around an :class:`agent.Agent` (tests
inject one on a scripted backend); :func:`agent.cli.chat.run_chat` is what the command line
calls. The TUI imports only what :mod:`agent` exports (its public face) and knows nothing of
the command line; only :mod:`agent.cli` imports it, so ``import agent`` does not import
Textual. What lives here: ``app.py`` (the chat app and its threads), ``widgets/`` (the
conversation, thinking blocks, tool cards, the status bar), ``screens/`` (approval,
sessions, download modals), ``commands.py``/``command_handlers.py``/``palette.py`` (slash
commands), ``loading.py`` (model loading and switching), ``render.py`` (text made safe to
show). Styles are in ``app.tcss`` and beside each screen; colours are Textual theme
variables, so the light and dark themes both apply.
"""
