"""Fitting a model to the machine: fake machines and synthetic metadata, nothing loaded."""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from agent.cli.models import run_models
from models import catalog, model_info
from models.base import BackendError
from models.llama import _load as _llama_load
from models.llama._fit import MARGIN, FitRequest, Machine, ModelShape, plan
from models.llama._load import LoadSettings, parse_nvidia_smi, resolve_settings
from models.llama.gguf_file import MetadataValue
from models.llama.options import LlamaOptions

GB = 10**9
QWQ: dict[str, MetadataValue] = dict(catalog.CATALOG["qwq-32b"].architecture)
QWQ_FILE = Path("qwq-32b-q4_k_m.gguf")  # not here: the size is given as file_bytes
Q4_K_M = int(19.9 * GB)
KV_8K_F16 = 64 * 8 * 128 * 2 * 2 * 8192  # 2.1 GB
KV_32K_F16 = 4 * KV_8K_F16  # 8.6 GB
Q8_0_PER_TOKEN = 64 * 8 * 128 * 2 * 34 / 32  # bytes of a q8_0 K and V per token


def nvidia(total_gb: float, free_gb: float, ram_gb: float = 64) -> Machine:
    return Machine(
        gpu_offload=True,
        gpu="NVIDIA GPU (1)",
        vram_total=int(total_gb * GB),
        vram_free=int(free_gb * GB),
        ram_total=int(ram_gb * GB),
        ram_available=int(ram_gb * GB),
    )


def cpu(ram_gb: float, available_gb: float | None = None) -> Machine:
    available = ram_gb if available_gb is None else available_gb
    return Machine(gpu_offload=False, ram_total=int(ram_gb * GB), ram_available=int(available * GB))


def fit(machine: Machine, file_bytes: int = Q4_K_M, **options: Any) -> LoadSettings:
    return resolve_settings(
        QWQ_FILE, QWQ, LlamaOptions(**options), machine=machine, file_bytes=file_bytes
    )


class TestGPU:
    def test_everything_fits_on_the_gpu(self) -> None:
        s = fit(nvidia(48, 47), file_bytes=int(15.9 * GB))
        assert (s.n_gpu_layers, s.n_ctx, s.type_k, s.type_v) == (-1, 32768, "f16", "f16")
        assert s.flash_attn
        assert any(r.startswith("all 64 layers on the GPU") for r in s.reasons)
        assert s.gpu_bytes == int(15.9 * GB) + KV_32K_F16 + MARGIN

    def test_q8_0_kv_cache_keeps_every_layer_on_the_gpu(self) -> None:
        s = fit(nvidia(24, 22.5))  # f16: 19.9 + 2.1 + 1 > 22.5; q8_0: 19.9 + 1.1 + 1 fits
        assert (s.n_gpu_layers, s.type_k, s.type_v, s.flash_attn) == (-1, "q8_0", "q8_0", True)
        assert any("q8_0" in r and "keeps every layer on the GPU" in r for r in s.reasons)

    def test_a_24gb_gpu_with_20gb_free_takes_as_many_layers_as_fit(self) -> None:
        s = fit(nvidia(24, 20))
        assert 0 < s.n_gpu_layers < 64
        assert (s.type_k, s.type_v, s.flash_attn) == ("q8_0", "q8_0", True)
        # the context grows past 8192 only while it keeps the layers placed at 8192
        assert 8192 <= s.n_ctx < 32768
        at_8k = fit(nvidia(24, 20), n_ctx=8192)
        assert s.n_gpu_layers == at_8k.n_gpu_layers
        assert s.gpu_bytes is not None and s.gpu_bytes <= 20 * GB
        per_layer = (Q4_K_M + Q8_0_PER_TOKEN * s.n_ctx) / 64
        assert s.gpu_bytes + per_layer > 20 * GB  # one more layer would not fit
        assert any(f"{s.n_gpu_layers} of 64 layers on the GPU" in r for r in s.reasons)
        assert s.ram_bytes is not None and s.ram_bytes > (64 - s.n_gpu_layers) * Q4_K_M / 64

    def test_without_flash_attention_the_kv_cache_stays_f16(self) -> None:
        s = fit(nvidia(24, 20), flash_attn=False)
        assert (s.type_k, s.type_v, s.flash_attn) == ("f16", "f16", False)
        assert 0 < s.n_gpu_layers < 64

    def test_apple_unified_memory(self) -> None:
        apple = Machine(
            gpu_offload=True,
            gpu="Apple Metal (unified memory)",
            vram_total=48 * GB,
            vram_free=48 * GB,
            ram_total=64 * GB,
            ram_available=60 * GB,
            unified=True,
        )
        s = fit(apple)
        assert (s.n_gpu_layers, s.type_k, s.flash_attn) == (-1, "f16", True)
        assert s.ram_bytes is not None and s.gpu_bytes is not None
        assert s.ram_bytes == s.gpu_bytes + MARGIN  # one pool: the GPU part counts in RAM
        assert any("unified memory" in r for r in s.reasons)

    def test_a_gpu_the_build_cannot_use(self) -> None:
        machine = Machine(False, "NVIDIA GPU (1)", 24 * GB, 24 * GB, 64 * GB, 64 * GB)
        s = fit(machine)
        assert s.n_gpu_layers == 0 and not s.flash_attn
        assert any("cannot offload" in r and "GGML_CUDA" in r for r in s.reasons)

    def test_unknown_gpu_memory_offloads_everything(self) -> None:
        s = fit(Machine(gpu_offload=True, ram_total=64 * GB, ram_available=64 * GB))
        assert s.n_gpu_layers == -1 and s.flash_attn
        assert any("could not be queried" in r for r in s.reasons)


class TestCPU:
    def test_no_gpu_and_32gb_of_ram(self) -> None:
        s = fit(cpu(32, 30))
        assert (s.n_gpu_layers, s.n_ctx, s.type_k, s.flash_attn) == (0, 32768, "f16", False)
        assert s.ram_bytes == Q4_K_M + KV_32K_F16 + MARGIN
        assert "RAM: 30.0 GB available of 32.0 GB" in s.reasons

    def test_tight_ram_takes_a_q8_0_kv_cache(self) -> None:
        s = fit(cpu(24, 22.5))
        # 22.5 - 19.9 - 1.0 GB left: 11,489 tokens of q8_0, rounded down to 1024s
        assert (s.type_k, s.type_v, s.flash_attn, s.n_ctx) == ("q8_0", "q8_0", True, 11264)
        assert any("makes it fit in memory" in r for r in s.reasons)

    def test_tighter_ram_shrinks_the_context_unless_asked(self) -> None:
        s = fit(cpu(24, 22.5), flash_attn=False)
        assert (s.n_ctx, s.type_k) == (4096, "f16")
        assert any(r.startswith("context 4096 tokens instead of 8192") for r in s.reasons)

    def test_eight_gb_of_ram_and_a_20gb_model_fails_before_llama_cpp(self) -> None:
        with pytest.raises(BackendError) as caught:
            fit(cpu(8))
        message = str(caught.value)
        assert "does not fit this machine" in message and "8.0 GB of RAM" in message
        assert "qwq-32b:Q3_K_M" in message


class TestExplicitOptions:
    def test_explicit_layers_win_with_a_warning(self) -> None:
        s = fit(nvidia(24, 20), n_gpu_layers=-1)
        assert (s.n_gpu_layers, s.n_ctx, s.type_k) == (-1, 8192, "q8_0")  # the smaller cache
        assert any(r.startswith("warning:") and "20.0 GB free" in r for r in s.reasons)

    def test_explicit_context_within_total_memory_warns(self) -> None:
        s = fit(cpu(32, 22), n_ctx=16384, type_k="f16", type_v="f16")
        assert (s.n_ctx, s.type_k) == (16384, "f16")
        assert any("more memory than is free right now" in r for r in s.reasons)
        assert any("--ctx 16384 leaves little free memory" in r for r in s.reasons)

    def test_explicit_context_beyond_total_memory_is_refused_with_a_context_that_fits(
        self,
    ) -> None:
        with pytest.raises(BackendError, match=r"a smaller context \(--ctx \d+\)"):
            fit(cpu(32), n_ctx=131072)

    def test_explicit_kv_types_are_kept(self) -> None:
        s = fit(nvidia(24, 20), type_k="q4_0", type_v="q4_0", flash_attn=True)
        assert (s.type_k, s.type_v) == ("q4_0", "q4_0")
        with pytest.raises(BackendError, match="needs flash attention"):
            fit(nvidia(24, 20), type_v="q8_0", flash_attn=False)


RECOMMENDED = "the Qwen/QwQ-32B-GGUF model card runs it with --ctx-size 32768"


class TestContext:
    """Without --ctx, the context grows from 8192 towards the model's recommended one."""

    def test_a_big_gpu_gets_the_recommended_context_without_yarn(self) -> None:
        s = fit(nvidia(80, 80))
        assert (s.n_ctx, s.n_gpu_layers, s.type_k, s.yarn) == (32768, -1, "f16", False)
        assert s.context_reason == (
            f"context 32,768 tokens, the model's recommended one ({RECOMMENDED}): it fits "
            "with all 64 layers on the GPU"
        )
        assert s.context_reason in s.reasons

    def test_a_small_machine_takes_the_most_that_fits(self) -> None:
        s = fit(nvidia(24, 23))  # f16 cannot keep the layers; q8_0 fits 14,336 tokens
        assert (s.n_ctx, s.n_gpu_layers, s.type_k) == (14336, -1, "q8_0")
        assert s.context_reason.startswith(
            "context 14,336 tokens, the most that fits with all 64 layers on the GPU (the "
            "model's recommended context is 32,768"
        )
        assert s.context_reason.endswith("; --ctx 32768 insists")
        assert Q4_K_M + Q8_0_PER_TOKEN * (14336 + 1024) + MARGIN > 23 * GB  # 1024 more: no

    def test_no_room_above_the_default_keeps_it(self) -> None:
        room = Q4_K_M + MARGIN + Q8_0_PER_TOKEN * 8192 + 0.1 * GB  # not 1024 tokens more
        s = fit(cpu(24, room / GB))
        assert (s.n_ctx, s.type_k) == (8192, "q8_0")
        assert s.context_reason == (
            f"context 8,192 tokens: the model's recommended 32,768 ({RECOMMENDED}) does not "
            "fit with the model in RAM; --ctx 32768 insists"
        )

    def test_less_memory_still_falls_back_below_the_default(self) -> None:
        s = fit(cpu(24, 22.5), flash_attn=False)
        assert s.n_ctx == 4096 and s.context_reason.startswith("context 4096 tokens instead")

    def test_an_explicit_context_wins(self) -> None:
        s = fit(nvidia(80, 80), n_ctx=8192)
        assert s.n_ctx == 8192 and s.context_reason == "context 8,192 tokens, as asked (--ctx)"
        assert fit(cpu(24, 22.5), n_ctx=16384, type_k="q8_0", type_v="q8_0").n_ctx == 16384

    def test_unknown_gpu_memory_does_not_assume_a_larger_context(self) -> None:
        s = fit(Machine(gpu_offload=True, ram_total=64 * GB, ram_available=64 * GB))
        assert s.n_ctx == 8192
        assert "the GPU's free memory is unknown; --ctx 32768 insists" in s.context_reason

    def test_the_training_context_caps_the_recommended_one(self) -> None:
        shorter = {**QWQ, "qwen2.context_length": 16384}
        s = resolve_settings(QWQ_FILE, shorter, machine=nvidia(80, 80), file_bytes=Q4_K_M)
        assert s.n_ctx == 16384 and "recommended one" in s.context_reason

    def test_a_model_the_catalog_does_not_know_keeps_the_default(self) -> None:
        other = {**QWQ, "general.name": "Other 32B"}
        s = resolve_settings(Path("other.gguf"), other, machine=nvidia(80, 80), file_bytes=Q4_K_M)
        assert s.n_ctx == 8192
        assert (
            s.context_reason
            == "context 8,192 tokens, the default for this model; --ctx sets another"
        )

    def test_a_local_qwq_file_gets_the_recommendation(self) -> None:
        assert catalog.recommended_context(Path("my-QwQ-32B.Q5_K_M.gguf"), {}) == (
            catalog.QWQ_CONTEXT
        )
        assert catalog.recommended_context(Path("x.gguf"), {"general.name": "QwQ 32B"})
        assert catalog.recommended_context(Path("smollm2.gguf"), {}) is None


class TestPlan:
    def test_unknown_architecture_is_all_or_nothing(self) -> None:
        shape = ModelShape(file_bytes=5 * GB)
        on_gpu = plan(shape, nvidia(24, 20), FitRequest(n_ctx=4096))
        assert on_gpu.n_gpu_layers == -1
        assert any("KV cache's size is unknown" in r for r in on_gpu.reasons)
        too_small = plan(shape, nvidia(4, 4), FitRequest(n_ctx=4096))
        assert too_small.n_gpu_layers == 0

    def test_shape_from_metadata(self) -> None:
        shape = ModelShape.from_metadata(QWQ, Q4_K_M)
        assert (shape.n_layers, shape.kv_elements_per_token) == (64, 64 * 8 * 128)
        assert shape.kv_bytes(8192, "f16", "f16") == KV_8K_F16
        assert ModelShape.from_metadata({}, 1).kv_bytes(8192, "f16", "f16") is None


class TestProbe:
    def test_parse_nvidia_smi(self) -> None:
        text = "0, 24576, 20480\n1, 24576, 1024\n"
        assert parse_nvidia_smi(text) == ("NVIDIA GPUs (2)", 49152 * 2**20, 21504 * 2**20)
        assert parse_nvidia_smi(text, "1") == ("NVIDIA GPU (1)", 24576 * 2**20, 1024 * 2**20)
        assert parse_nvidia_smi("No devices were found") is None

    def test_probe_reads_nvidia_smi_with_a_timeout(self, monkeypatch: pytest.MonkeyPatch) -> None:
        seen: dict[str, Any] = {}

        def fake_run(args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
            seen.update(kwargs, args=args)
            return subprocess.CompletedProcess(args, 0, "0, 24576, 20480\n", "")

        monkeypatch.setattr(shutil, "which", lambda name: "/usr/bin/nvidia-smi")
        monkeypatch.setattr(subprocess, "run", fake_run)
        monkeypatch.setattr(_llama_load, "gpu_offload_supported", lambda: True)
        machine = _llama_load.probe_machine()
        assert machine.gpu == "NVIDIA GPU (1)" and machine.vram_free == 20480 * 2**20
        assert seen["timeout"] <= 5 and "--format=csv,noheader,nounits" in seen["args"]

    def test_a_hanging_nvidia_smi_means_unknown(self, monkeypatch: pytest.MonkeyPatch) -> None:
        def hang(args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
            raise subprocess.TimeoutExpired(args, kwargs["timeout"])

        monkeypatch.setattr(shutil, "which", lambda name: "/usr/bin/nvidia-smi")
        monkeypatch.setattr(subprocess, "run", hang)
        monkeypatch.setattr(sys, "platform", "linux")
        machine = _llama_load.probe_machine()
        assert machine.gpu is None and machine.vram_free is None


class TestMachineFit:
    def test_qwq_not_downloaded_uses_the_catalog_facts(self, tmp_path: Path) -> None:
        info = model_info.machine_fit("qwq-32b", cache_dir=tmp_path, machine=nvidia(24, 20))
        assert info["downloaded"] is False and info["fits"] is True
        assert 0 < info["settings"]["n_gpu_layers"] < 64
        assert info["settings"]["kv_cache"] == "q8_0/q8_0"
        assert any("layers on the GPU" in r for r in info["reasons"])
        assert info["machine"]["vram_free_gb"] == 20.0

    def test_a_model_that_cannot_fit_is_reported(self, tmp_path: Path) -> None:
        info = model_info.machine_fit("qwq-32b:Q8_0", cache_dir=tmp_path, machine=cpu(8))
        assert info["fits"] is False and "qwq-32b:Q3_K_M" in info["problem"]

    def test_models_info_prints_settings_and_reasons(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
        monkeypatch.setattr(_llama_load, "probe_machine", lambda: cpu(32, 30))
        assert run_models(argparse.Namespace(action="info", name="qwq-32b", json=True)) == 0
        out = capsys.readouterr().out
        assert '"n_gpu_layers": 0' in out and "RAM: 30.0 GB available of 32.0 GB" in out

    def test_models_info_explains_the_context(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
        monkeypatch.setattr(_llama_load, "probe_machine", lambda: nvidia(24, 23))
        assert run_models(argparse.Namespace(action="info", name="qwq-32b", json=True)) == 0
        context = json.loads(capsys.readouterr().out)["context"]
        assert context["n_ctx"] == 14336 and context["recommended"] == 32768
        assert context["source"] == RECOMMENDED
        assert context["why"].startswith("context 14,336 tokens, the most that fits")
        assert run_models(argparse.Namespace(action="info", name="qwq-32b", json=False)) == 0
        text = capsys.readouterr().out
        assert "\n  plan: context 14,336 tokens, all layers on the GPU" in text
        assert f"\n  {context['why']}\n  why:\n" in text
