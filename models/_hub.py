"""Fetching model files from the Hugging Face Hub, through huggingface_hub's own cache.

The cache is huggingface_hub's (``HF_HUB_CACHE``, default ``~/.cache/huggingface/hub``), so a
file downloaded by ``hf download`` or another tool is found without a second download. A file
already in the cache is used without touching the network. Downloads show huggingface_hub's
progress bar and resume after a dropped connection. ``HF_HUB_OFFLINE=1`` (read at call time)
means cache only. When the hub cannot be reached, the error says how to fetch the file by hand
and point ``--model`` at it.
"""

from __future__ import annotations

import os
from pathlib import Path

from models.base import BackendError
from models.progress import ProgressCallback, forwarding_tqdm

_TRUE = {"1", "ON", "YES", "TRUE"}


def offline() -> bool:
    """Whether hub access is switched off (``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE``)."""
    flags = (os.environ.get("HF_HUB_OFFLINE"), os.environ.get("TRANSFORMERS_OFFLINE"))
    return any((flag or "").upper() in _TRUE for flag in flags)


def cached(
    repo_id: str, filename: str, *, cache_dir: str | os.PathLike[str] | None = None
) -> Path | None:
    """The cached copy of ``filename`` from ``repo_id``, or ``None``. No network."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, filename, cache_dir=_path(cache_dir))
    return Path(found) if isinstance(found, str) else None


def fetch(
    repo_id: str,
    filename: str,
    *,
    download: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
    endpoint: str | None = None,
    progress: ProgressCallback | None = None,
) -> Path:
    """The local path of ``filename`` from ``repo_id``, downloading it when needed and allowed.

    ``progress`` receives the download's progress instead of the terminal progress bar
    (see :mod:`models.progress`); a cached file reports nothing.

    Raises:
        BackendError: the file is not cached and downloading is off, offline, or failed.
    """
    local = cached(repo_id, filename, cache_dir=cache_dir)
    if local is not None:
        return local
    url = f"{endpoint or _default_endpoint()}/{repo_id}/resolve/main/{filename}"
    if not download or offline():
        why = "downloads are off" if not download else "HF_HUB_OFFLINE is set"
        raise BackendError(f"{filename} is not in the local cache and {why}. {_by_hand(url)}")
    unresolved = _unresolvable_host(url)
    if unresolved is not None:  # offline: fail now, not after a minute of retries
        raise BackendError(
            f"could not reach the Hugging Face Hub to download {filename} from {repo_id} "
            f"({unresolved}). {_by_hand(url)}"
        )
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
    )

    try:
        bar = forwarding_tqdm(progress, filename) if progress is not None else None
        return Path(
            hf_hub_download(
                repo_id, filename, cache_dir=_path(cache_dir), endpoint=endpoint, tqdm_class=bar
            )
        )
    except LocalEntryNotFoundError as exc:  # the hub could not be reached
        raise BackendError(
            f"could not reach the Hugging Face Hub to download {filename} from {repo_id}. "
            f"{_by_hand(url)}"
        ) from exc
    except GatedRepoError as exc:
        raise BackendError(
            f"{repo_id} needs a Hugging Face login (`hf auth login`) before {filename} can be "
            f"downloaded. {_by_hand(url)}"
        ) from exc
    except (RepositoryNotFoundError, EntryNotFoundError) as exc:
        raise BackendError(
            f"the hub has no {filename} in {repo_id} (was it renamed?). {_by_hand(url)}"
        ) from exc
    except (HfHubHTTPError, OSError) as exc:
        raise BackendError(
            f"downloading {filename} from {repo_id} failed: {exc}. {_by_hand(url)}"
        ) from exc


_PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY")


def _unresolvable_host(url: str) -> str | None:
    """Why ``url``'s host certainly cannot be reached (its name does not resolve), or ``None``
    when it may be reachable. With a proxy configured nothing is concluded: the proxy
    resolves names, not this machine."""
    import socket
    from urllib.parse import urlsplit

    if any(os.environ.get(name) for name in _PROXY_VARIABLES):
        return None
    host = urlsplit(url).hostname
    if not host:
        return None
    try:
        socket.getaddrinfo(host, None)
    except socket.gaierror as exc:
        return f"the name {host} does not resolve: {exc.strerror or exc}"
    except OSError:
        return None
    return None


def _by_hand(url: str) -> str:
    return (
        f"Download it yourself from {url} (with a browser, curl -L -C - -O, or `hf download`) "
        "and run with --model /path/to/that.gguf"
    )


def _path(value: str | os.PathLike[str] | None) -> Path | None:
    return Path(value) if value is not None else None


def _default_endpoint() -> str:
    from huggingface_hub import constants

    return str(constants.ENDPOINT)
