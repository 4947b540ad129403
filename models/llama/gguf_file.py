"""Read the metadata of a GGUF file without loading it.

A GGUF file starts with the magic ``b"GGUF"``, a version, the tensor and key-value counts, then
the key-value metadata (architecture, context length, tokenizer, ``tokenizer.chat_template``…).
Reading it in Python lets the runtime reject a file that is not a GGUF with a clear message,
and choose the context size, before llama.cpp allocates anything.

Only scalar and string values are returned; arrays (the tokenizer's vocabulary) are skipped.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import BinaryIO

GGUF_MAGIC = b"GGUF"

# value type -> struct format of a scalar of that type (little-endian)
_SCALARS: dict[int, str] = {
    0: "<B",  # uint8
    1: "<b",  # int8
    2: "<H",  # uint16
    3: "<h",  # int16
    4: "<I",  # uint32
    5: "<i",  # int32
    6: "<f",  # float32
    7: "<?",  # bool
    10: "<Q",  # uint64
    11: "<q",  # int64
    12: "<d",  # float64
}
_STRING = 8
_ARRAY = 9

MetadataValue = int | float | bool | str


class GGUFError(Exception):
    """The file is missing, not a GGUF file, or truncated."""


def is_gguf(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a readable file that starts with the GGUF magic."""
    try:
        with open(path, "rb") as f:
            return f.read(4) == GGUF_MAGIC
    except OSError:
        return False


def read_metadata(path: str | os.PathLike[str]) -> dict[str, MetadataValue]:
    """The scalar and string metadata of the GGUF file at ``path``.

    Raises:
        GGUFError: the file is missing, unreadable, not a GGUF file, or truncated.
    """
    file = Path(path)
    try:
        with file.open("rb") as f:
            return _read(f, file)
    except FileNotFoundError as exc:
        raise GGUFError(f"no such model file: {str(file)!r}") from exc
    except (OSError, struct.error, UnicodeDecodeError) as exc:
        raise GGUFError(
            f"cannot read the GGUF metadata of {str(file)!r} ({exc}); the file is probably "
            "truncated or corrupt: download it again"
        ) from exc


def _read(f: BinaryIO, file: Path) -> dict[str, MetadataValue]:
    magic = f.read(4)
    if magic != GGUF_MAGIC:
        raise GGUFError(
            f"{str(file)!r} is not a GGUF file (it starts with {magic!r}, not {GGUF_MAGIC!r}); "
            "point --model at a .gguf model file"
        )
    (version,) = _unpack(f, "<I")
    if version == 1:
        raise GGUFError(f"{str(file)!r} is a GGUF v1 file, too old for llama.cpp; convert it again")
    _unpack(f, "<Q")  # tensor count
    n_kv = int(_unpack(f, "<Q")[0])
    metadata: dict[str, MetadataValue] = {}
    for _ in range(n_kv):
        key = _string(f)
        value_type = int(_unpack(f, "<I")[0])
        if value_type == _ARRAY:
            _skip_array(f)
        else:
            metadata[key] = _value(f, value_type)
    return metadata


def _unpack(f: BinaryIO, fmt: str) -> tuple[MetadataValue, ...]:
    size = struct.calcsize(fmt)
    data = f.read(size)
    if len(data) != size:
        raise struct.error("unexpected end of file")
    values: tuple[MetadataValue, ...] = struct.unpack(fmt, data)
    return values


def _string(f: BinaryIO) -> str:
    (length,) = _unpack(f, "<Q")
    data = f.read(int(length))
    if len(data) != length:
        raise struct.error("unexpected end of file")
    return data.decode("utf-8")


def _value(f: BinaryIO, value_type: int) -> MetadataValue:
    if value_type == _STRING:
        return _string(f)
    fmt = _SCALARS.get(value_type)
    if fmt is None:
        raise struct.error(f"unknown GGUF value type {value_type}")
    return _unpack(f, fmt)[0]


def _skip_array(f: BinaryIO) -> None:
    (item_type, count) = _unpack(f, "<IQ")
    if item_type == _STRING:
        for _ in range(int(count)):
            (length,) = _unpack(f, "<Q")
            f.seek(int(length), os.SEEK_CUR)
    elif item_type == _ARRAY:
        for _ in range(int(count)):
            _skip_array(f)
    else:
        fmt = _SCALARS.get(int(item_type))
        if fmt is None:
            raise struct.error(f"unknown GGUF array item type {item_type}")
        f.seek(struct.calcsize(fmt) * int(count), os.SEEK_CUR)


def context_length(metadata: dict[str, MetadataValue]) -> int | None:
    """The training context length (``{arch}.context_length``), if the metadata has it."""
    arch = metadata.get("general.architecture")
    value = metadata.get(f"{arch}.context_length")
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else None
