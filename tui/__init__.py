"""The Textual TUI of qwq-agent (``qwq-agent`` / ``qwq-agent chat``).

``tui.app.make_app(agent_or_factory)`` builds the app around an :class:`agent.Agent` (tests
inject one on a scripted backend); ``tui.app.run_chat(args)`` is what the CLI calls. The
package depends on ``agent`` and never the other way round: ``import agent`` does not
import Textual. Styles are in ``app.tcss`` and beside each screen; colours are Textual
theme variables, so the light and dark themes both apply.
"""
