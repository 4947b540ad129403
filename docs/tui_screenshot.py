"""Regenerate ``docs/tui.svg``, the README's screenshot of the TUI.

Runs a scripted session (no model needed) headless and saves Textual's SVG export of the
moment the answer is done, with the thinking unfolded to show the tool card inside it::

    .venv/bin/python docs/tui_screenshot.py
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
from pathlib import Path

from agent import Agent
from models.scripted import ScriptedBackend
from tui.app import make_app

ROOT = Path(__file__).resolve().parent
CALL = json.dumps({"name": "calculator", "arguments": {"expression": "17 * 23 + 4**3"}})
TURNS = [
    "The user wants 17 * 23 + 4^3. In my head: 17 * 23 = 391 and 4^3 = 64, so 455. "
    f"Arithmetic slips are easy, so I will check with the calculator.\n<tool_call>\n{CALL}\n"
    "</tool_call>",
    "The calculator says 455, which matches.\n</think>\n\n"
    "17 × 23 + 4³ = **455**\n\n- 17 × 23 = 391\n- 4³ = 64",
]


async def main() -> None:
    with tempfile.TemporaryDirectory() as scratch:
        os.environ["QWQ_AGENT_SESSIONS"] = scratch
        agent = Agent(
            ScriptedBackend(TURNS, name="qwq-32b (scripted)"),
            tools=["calculator"],
            workspace=scratch,
        )
        app = make_app(agent, deterministic=True)
        async with app.run_test(size=(100, 34)) as pilot:
            while app.loading:
                await pilot.pause(0.05)
            app.prompt_input.insert("What is 17 * 23 + 4^3?")
            await pilot.press("enter")
            await pilot.pause(0.2)
            while app.running:
                await pilot.pause(0.05)
            await pilot.press("ctrl+t")  # unfold the thinking to show the tool card in it
            await pilot.pause(0.2)
            app.save_screenshot(filename="tui.svg", path=str(ROOT))
    print(ROOT / "tui.svg")


if __name__ == "__main__":
    asyncio.run(main())
