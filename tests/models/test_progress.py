"""LoadProgress lines and the tqdm class that forwards huggingface_hub's progress."""

from __future__ import annotations

import pytest

from models.progress import LoadProgress, forwarding_tqdm, human_bytes


@pytest.mark.parametrize(
    ("count", "text"),
    [(None, "0 B"), (999, "999 B"), (1000, "1.0 kB"), (19_851_336_256, "19.9 GB"),
     (3 * 10**12, "3000.0 GB")],
)  # fmt: skip
def test_human_bytes(count: int | None, text: str) -> None:
    assert human_bytes(count) == text


def test_describe_and_fraction() -> None:
    assert LoadProgress("download", "f.gguf", 500, 2000).fraction == 0.25
    assert LoadProgress("download", "f.gguf", 500).fraction is None
    assert LoadProgress("download", "f.gguf", 5000).describe() == "downloading f.gguf 5.0 kB"
    assert LoadProgress("load", "f.gguf").describe() == "loading f.gguf"


def test_forwarding_tqdm_throttles_and_reports_the_end() -> None:
    seen: list[LoadProgress] = []
    bar_class = forwarding_tqdm(seen.append, "f.gguf", interval=3600)
    with bar_class(total=300, initial=100, desc="f.gguf", unit="B", name="hub") as bar:
        for _ in range(199):
            bar.update(1)  # throttled: the first update only
        assert [p.done for p in seen] == [101]
        bar.update(1)  # reaching the total is always reported
        bar.update_transfer(10**9)  # Xet's bytes received are not counted
    assert [p.done for p in seen] == [101, 300, 300]
    assert seen[-1] == LoadProgress("download", "f.gguf", 300, 300)
