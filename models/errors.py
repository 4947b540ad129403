"""The exceptions of the models package.

Our exception hierarchy::

    Exception
    ├── BackendError ─ a backend failed in a way the user can act on (load, server, script)
    │   ├── ContextOverflowError ─ the context does not fit the model's window
    │   ├── models.openai._http.RequestRefused ─ a server refused a request (4xx, not 429)
    │   └── models.scripted.ScriptExhaustedError ─ a script has no turn left
    ├── models.llama.gguf_file.GGUFError ─ a file that is not a readable GGUF
    ├── models.qwq.chat_template.TemplateError ─ a chat template failed to render
    └── ValueError
        ├── InputError ─ what a person wrote is wrong (an unknown backend option…)
        ├── models.qwq.grammar.GrammarError ─ tools that no call grammar can describe
        ├── models.openai._chat.ChatFormatError ─ a context that chat mode cannot send
        └── models.openai.sse.SseError ─ a server's event stream broke its format

Callers that drive a backend catch :class:`BackendError`; one that can compact the context
catches :class:`ContextOverflowError` first. :class:`InputError` is defined here, the lowest
package, so that ``models`` can raise the very class :mod:`agent.errors` exports (as
``agent.InputError``) and every package below the command line reports bad input alike.
This module imports nothing.
"""

from __future__ import annotations


class InputError(ValueError):
    """Input from a person (a file, an option, a command, an option name) that cannot be
    used; ``str()`` is the message to show, naming the place and what to do. The same class
    as ``agent.InputError`` (:mod:`agent.errors` re-exports it); a command line maps it to
    exit code 2."""


class BackendError(Exception):
    """A backend failed in a way the user can act on (load failure, server error)."""


class ContextOverflowError(BackendError):
    """The context does not fit the model's window.

    Carries the numbers so the message can say by how much, and what to do.
    """

    def __init__(self, needed: int, available: int) -> None:
        self.needed = needed
        self.available = available
        super().__init__(
            f"the context needs {needed} tokens but the model's window is {available}; "
            "start a new session, shorten the task or tool outputs, or raise the context "
            "size (--ctx, or n_ctx in backend_options; above 32768 QwQ uses YaRN)"
        )
