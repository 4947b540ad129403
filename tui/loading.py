"""Loading the chat's model: the first one, and each one ``/model`` asks for.

Contract (the working model is never given up for one that does not load):

* :func:`start` loads an agent's model in a daemon thread (not a worker: quitting must not
  wait for a download or a multi-gigabyte load) and marks the app ``loading``; tasks sent
  meanwhile wait in ``app.pending_prompt``.
* For ``/model`` the new agent loads *beside* the working one, which stays ``app.agent``
  (its model loaded, its conversation kept) until the new model is ready; only then is it
  swapped in and the old one closed. When the load fails, the new agent is closed, the
  working model stays, and the message says so; a waiting task goes back to the prompt box.
* A load that a later ``/model`` superseded is closed when it ends, and never shown.
* When loading would start a large download (``qwq-32b`` is about 20 GB) and the app
  confirms downloads (not under ``--yes``), the person is asked first
  (:mod:`tui.screens.download`); declined, nothing is fetched, the working model (if any)
  stays, and the note says how to download it from a shell.
"""

from __future__ import annotations

import threading
from contextlib import suppress
from functools import partial
from typing import TYPE_CHECKING

from agent import Agent, BackendInfo, LoadProgress
from tui import errors, render
from tui.screens.download import DECLINED, ask_before_download

if TYPE_CHECKING:
    from tui.app import ChatApp


def start(app: ChatApp, agent: Agent, label: str) -> None:
    """Load ``agent``'s model (shown as ``label`` until it has loaded) for ``app``.

    ``agent`` is ``app.agent`` for the first model; any other agent replaces ``app.agent``
    once its model has loaded (and only then). A large download is confirmed first.
    """
    if app.confirm_downloads and ask_before_download(
        app, agent.model_spec, partial(_answered, app, agent, label)
    ):
        if agent is app.agent:  # the bar names the model the question is about
            app.status.set_model(f"{label} (not loaded)", 0)
        return
    _begin(app, agent, label)


def _answered(app: ChatApp, agent: Agent, label: str, download: bool) -> None:
    """The person's answer to the download question."""
    if download:
        _begin(app, agent, label)
        return
    declined = DECLINED.format(spec=render.safe(label), command=f"qwq-agent models pull {label}")
    if agent is app.agent:  # the first model: there is none to fall back on
        app.status.set_model(f"{app.model_label} (not loaded)", 0)
    else:
        agent.close()
        if app.model_ready:
            declined += f" Still using {render.safe(app.model_label)}."
    app.call_later(app.note, declined, "warning")


def _begin(app: ChatApp, agent: Agent, label: str) -> None:
    app.loading = True
    app.loading_agent = agent
    if agent is app.agent:
        app.status.set_model(label, 0)
    app.status.show_loading(f"loading {label}")
    threading.Thread(
        target=_load, args=(app, agent, label), name="qwq-agent-load", daemon=True
    ).start()


def _load(app: ChatApp, agent: Agent, label: str) -> None:
    """The load thread: load, then hand the outcome to the UI thread."""

    def progress(update: LoadProgress) -> None:
        if agent is app.loading_agent:  # not superseded by a later /model
            with suppress(RuntimeError):  # the app has exited meanwhile
                app.call_from_thread(app.status.show_load_progress, update)

    try:
        info: BackendInfo | None = agent.load(progress).info
        error = ""
    except Exception as exc:  # any failure is told; the app stays usable
        info, error = None, errors.describe(exc)
    with suppress(RuntimeError):  # the app has exited meanwhile
        app.wait_on_ui(partial(_loaded, app, agent, label, info, error))


async def _loaded(
    app: ChatApp, agent: Agent, label: str, info: BackendInfo | None, error: str
) -> None:
    if agent is not app.loading_agent:  # a later /model superseded it while it loaded
        if agent is not app.agent:
            agent.close()
        elif info is not None:  # the first model: it works until the later one replaces it
            app.model_label, app.model_ready = info.name, True
            app.status.set_model(info.name, info.context_size)
        return
    app.loading, app.loading_agent = False, None
    app.status.show_loading(None)
    if info is None:
        await _failed(app, agent, label, error)
        return
    if agent is not app.agent:
        app.adopt_agent(agent)
    app.model_label = info.name
    app.model_ready = True
    app.status.set_model(info.name, info.context_size)
    if app.pending_prompt is not None:
        prompt, app.pending_prompt = app.pending_prompt, None
        await app.start_run(prompt, shown=True)


async def _failed(app: ChatApp, agent: Agent, label: str, error: str) -> None:
    pending, app.pending_prompt = app.pending_prompt, None
    if pending is not None:
        app.prompt_input.restore(pending)  # to send again, to the model that works
    if agent is app.agent:  # the first model: there is nothing to fall back on
        app.model_ready = False
        await app.note(
            f"The model could not be loaded: {error}\n/model NAME loads another.", "error"
        )
        app.status.set_model(f"{app.model_label} (not loaded)", 0)
        return
    agent.close()
    current = render.safe(app.model_label)
    kept = (
        f"Still using {current}; the conversation goes on."
        if app.model_ready
        else f"No model is loaded ({current} did not load either): /model NAME tries another."
    )
    await app.note(f"Cannot load {render.safe(label)}: {error}\n{kept}", "error")
