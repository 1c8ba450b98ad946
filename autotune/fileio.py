"""Atomic file writes: write to a temp file in the same folder, then rename, so nothing is half-written."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def atomic_write(path: str | Path, write: Callable[[str], None]) -> Path:
    """Call `write(tmp_path)` then rename the temp file onto `path` (created with its folder)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    def _w(tmp: str) -> None:
        with open(tmp, "w") as f:
            f.write(text)

    return atomic_write(path, _w)


def atomic_write_json(path: str | Path, obj: object) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2) + "\n")
