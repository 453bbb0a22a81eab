"""Atomic file writes and content hashes.

Everything the book writes goes through these functions, so that an interrupted run never leaves a
half-written file that a later run would trust.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def write_json(obj: Any, path: str | os.PathLike[str]) -> Path:
    """Write ``obj`` as indented, key-sorted JSON, atomically; returns the path."""
    text = json.dumps(_jsonable(obj), indent=2, sort_keys=True) + "\n"
    _atomic_write_bytes(Path(path), text.encode())
    return Path(path)


def read_json(path: str | os.PathLike[str]) -> Any:
    return json.loads(Path(path).read_text())


def write_csv(rows: Iterable[Mapping[str, Any]], path: str | os.PathLike[str]) -> Path:
    """Write a list of dicts as CSV (columns in first-seen order), atomically; returns the path."""
    rows = [dict(r) for r in rows]
    if not rows:
        raise ValueError("rows: need at least one row to write a CSV file")
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _format_cell(row.get(k, "")) for k in columns})
    _atomic_write_bytes(Path(path), buffer.getvalue().encode())
    return Path(path)


def _format_cell(value: Any) -> Any:
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.6g}"
    if isinstance(value, np.generic):
        return value.item()
    return value


def read_csv(path: str | os.PathLike[str]) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def write_npz(path: str | os.PathLike[str], **arrays: np.ndarray) -> Path:
    """Save arrays to ``.npz`` atomically (no pickled objects)."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **{k: np.asarray(v) for k, v in arrays.items()})
    _atomic_write_bytes(Path(path), buffer.getvalue())
    return Path(path)


def read_npz(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def file_sha256(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def package_versions() -> dict[str, str]:
    """The versions that decide trained weights and results (recorded with every model and results file)."""
    from importlib.metadata import version

    return {name: version(name) for name in ("tensorflow", "keras", "numpy", "helpers")}


def array_digest(*arrays: np.ndarray) -> str:
    """A short content hash of arrays (shape, dtype and bytes)."""
    digest = hashlib.blake2b(digest_size=16)
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(f"{array.shape}|{array.dtype}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()
