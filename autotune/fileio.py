"""Atomic file writes: write to a temp file in the same folder, then rename, so nothing is half-written."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

from autotune.errors import AutotuneError


def atomic_write(path: str | Path, write: Callable[[str], object]) -> Path:
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


def _stale(path: Path, kind: str) -> list[Path]:
    return sorted(path.parent.glob(f".{path.name}.{kind}-*"), key=lambda p: p.stat().st_mtime)


def recover_folder(path: str | Path) -> None:
    """Undo a `publish_folder` killed between its two renames: put the old folder back if the new
    one never arrived, and clear leftovers of killed publications."""
    path = Path(path)
    olds = _stale(path, "old")
    if not path.exists() and olds:
        os.rename(olds[-1], path)
        olds = olds[:-1]
    for p in olds + _stale(path, "new"):
        shutil.rmtree(p, ignore_errors=True)


def publish_folder(path: str | Path, files: dict[str, bytes]) -> Path:
    """Replace folder `path` with one holding `files` (name -> bytes) as a unit: the new folder is
    written beside it, then renamed into place, so a reader never sees new and old files mixed.
    Files of the old folder that `files` does not name are carried over."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    recover_folder(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.new-", dir=path.parent))
    try:
        if path.is_dir():
            for p in path.iterdir():
                if p.name not in files and p.is_file():
                    shutil.copy2(p, tmp / p.name)
        for name, data in files.items():
            with open(tmp / name, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        replace_folder(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def replace_folder(built: str | Path, path: str | Path) -> Path:
    """Move the complete folder `built` to `path`, replacing what is there: the old folder is
    renamed aside first and removed last, so a kill in between leaves it to `recover_folder`."""
    built, path = Path(built), Path(path)
    if path.exists():
        old = path.parent / f".{path.name}.old-{os.getpid()}"
        os.rename(path, old)
        os.rename(built, path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(built, path)
    return path


class FolderLock:
    """An exclusive lock on writing folder `path` (a `.name.lock` file beside it, flock-ed), so two
    processes never write one dataset or model folder at once. Used as a context manager; the lock
    file goes when the lock is released."""

    def __init__(self, path: str | Path, what: str = "writing"):
        self.path = Path(path)
        self.lock = self.path.parent / f".{self.path.name}.lock"
        self.what = what
        self._f: IO[str] | None = None

    def __enter__(self) -> FolderLock:
        import fcntl

        self.lock.parent.mkdir(parents=True, exist_ok=True)
        while True:
            f = open(self.lock, "a+")
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                f.seek(0)
                pid = f.read().strip() or "?"
                f.close()
                raise AutotuneError(f"another autotune process (pid {pid}) is {self.what} {self.path}/; wait "
                                    "for it to finish or choose another --out") from None
            # The holder before us unlinks the file as it releases it: a lock taken on that unlinked
            # file guards nothing, so take the one now at the path instead.
            try:
                same = os.stat(self.lock).st_ino == os.fstat(f.fileno()).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            f.close()
        self._f = f
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        return self

    def __exit__(self, *exc) -> None:
        import fcntl

        if self._f is not None:
            self.lock.unlink(missing_ok=True)  # while still held, so no one locks a file about to go
            fcntl.flock(self._f, fcntl.LOCK_UN)
            self._f.close()
            self._f = None


def source_digest(*modules: str) -> str:
    """Digest of the source files of `modules` (a package counts with all its .py files): a result made
    by other code is not silently reused, even when nobody bumped a version number."""
    import hashlib
    import importlib

    h = hashlib.sha256()
    for mod in modules:
        m = importlib.import_module(mod)
        path = Path(m.__file__ or "")
        files = sorted(path.parent.glob("*.py")) if path.name == "__init__.py" else [path]
        for f in files:
            h.update(f.name.encode() + f.read_bytes())
    return h.hexdigest()[:16]
