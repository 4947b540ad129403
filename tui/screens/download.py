"""``DownloadScreen``: a person agrees to a large model download before it starts.

Opening the TUI with a hub model that is not in the cache yet (``qwq-32b`` is about 20 GB)
must not start the download silently. :func:`ask_before_download` looks at what loading the
model would fetch (:func:`models.catalog.download_plan`, no network) and, when it is more than
:data:`models.catalog.CONFIRM_DOWNLOAD_GB`, shows this modal first.

Contract: the screen is dismissed with ``True`` (d, or the Download button: go ahead) or
``False`` (n, Esc, or Cancel, which has the focus: nothing is downloaded). The caller loads
the model on ``True`` and otherwise says how to download it later (:data:`DECLINED`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from agent import BackendError, DownloadPlan, download_plan
from tui import render

DECLINED = (
    "{spec} was not downloaded. Download it from a shell with `{command}` (it resumes if "
    "cut), or choose a model that is here with /model (e.g. /model smollm2-135m)."
)
"""What the conversation says when the person declines (``str.format`` with spec, command)."""


class DownloadScreen(ModalScreen[bool]):
    """Asks whether the model of ``plan`` may be downloaded now."""

    DEFAULT_CSS = """
    DownloadScreen {
        align: center middle;
        background: $background 60%;
    }
    #download-dialog {
        width: 80%;
        max-width: 90;
        height: auto;
        border: thick $warning;
        background: $surface;
        padding: 1 2;
    }
    #download-what {
        margin: 1 0;
    }
    #download-buttons {
        height: auto;
        align-horizontal: right;
    }
    #download-buttons Button {
        margin-left: 2;
    }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("d", "decide(True)", "Download"),
        Binding("n,escape", "decide(False)", "Cancel"),
    ]

    def __init__(self, plan: DownloadPlan) -> None:
        super().__init__()
        self.plan = plan

    def compose(self) -> ComposeResult:
        plan = self.plan
        with Vertical(id="download-dialog"):
            yield Static(
                Content.assemble(
                    ("Download ", "bold"),
                    (render.safe(plan.spec), "bold $warning"),
                    (f"?  about {plan.size_gb:.1f} GB", "bold"),
                ),
                id="download-title",
            )
            yield Static(
                Content(
                    f"{render.safe(plan.filename)} from {render.safe(plan.repo_id)} on the "
                    "Hugging Face Hub, into its cache (once; later starts use the cached file). "
                    f"To fetch it from a shell instead: {plan.pull_command()}"
                ),
                id="download-what",
            )
            with Horizontal(id="download-buttons"):
                yield Button(Content("Download [d]"), id="download", variant="warning")
                yield Button(Content("Cancel [n/Esc]"), id="cancel", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#cancel", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.action_decide(event.button.id == "download")

    def action_decide(self, download: bool) -> None:
        self.dismiss(download)


def ask_before_download(app: App[Any], spec: str | None, then: Callable[[bool], None]) -> bool:
    """Show :class:`DownloadScreen` when loading ``spec`` would start a large download.

    Returns:
        ``True`` when the screen was shown: ``then(answer)`` is called once the person has
        decided. ``False`` when there is nothing to ask (no download, a small one, a spec that
        is not a hub model, or one that will fail to load with its own message): the caller
        loads at once and ``then`` is never called.
    """
    try:
        plan = download_plan(spec) if spec is not None else None
    except BackendError:
        return False  # the load reports it
    if plan is None or not plan.large:
        return False

    def decided(answer: bool | None) -> None:
        then(bool(answer))

    app.push_screen(DownloadScreen(plan), decided)
    return True
