"""What kind of artefact a folder holds (export, dataset, family dataset, model, universal model), and
the output check every command runs first: it never writes over its own inputs or over another
command's artefact, and `--force` replaces only an artefact of the kind being written."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from autotune.errors import AutotuneError

EXPORT = "export folder"
DATASET = "dataset"
FAMILY_DATASET = "family dataset"
MODEL = "model folder"
UNIVERSAL = "universal model"

#: The file that marks each folder kind, checked in this order (a family dataset also holds datasets).
_MARKERS = [(EXPORT, "export.json"), (FAMILY_DATASET, "family.json"), (DATASET, "manifest.json"), (MODEL, "meta.json")]
#: Files of an export folder that export-groups writes; anything else there (a profile) is the user's.
EXPORT_FILES = frozenset({"export.json", "groups.parquet", "manifest.csv", "README.md", "onnx"})
#: Hidden leftovers a folder may hold besides its content (locks, temp files of atomic writes).
_HIDDEN = "."


def kind_of(folder: str | Path) -> str | None:
    """The artefact kind `folder` holds, or None (not a folder, or none of ours)."""
    p = Path(folder)
    if not p.is_dir():
        return None
    for kind, marker in _MARKERS:
        if (p / marker).is_file():
            return _model_kind(p / marker) if kind == MODEL else kind
    if any(p.glob("shard-*.parquet")):  # a dataset that synth is still labelling (resumable)
        return DATASET
    return None


def _model_kind(meta: Path) -> str:
    """A universal model's meta.json names its family and was not adapted from another model."""
    try:
        m = json.loads(meta.read_text())
    except (OSError, ValueError):
        return MODEL
    return UNIVERSAL if isinstance(m, dict) and "family" in m and "adapted_from" not in m else MODEL


def _a(kind: str | None) -> str:
    """The kind with its article: "an export folder", "a dataset"."""
    return f"{'an' if (kind or ' ')[0] in 'aeio' else 'a'} {kind}"


def _resolved(p: str | Path) -> Path:
    return Path(os.path.abspath(Path(p).expanduser()))


def _within(child: Path, parent: Path) -> bool:
    return child == parent or parent in child.parents


def _content(folder: Path) -> list[Path]:
    return [q for q in folder.iterdir() if not q.name.startswith(_HIDDEN)] if folder.is_dir() else []


def check_folder_output(out: str | Path, kind: str | None, inputs: Iterable[str | Path | None] = (),
                        force: bool = False, flag: str = "--out", replace_needs_force: bool = False,
                        others_ok: bool = False) -> None:
    """Refuse, in one line, a folder output that is one of the inputs or holds one, a folder of
    another artefact kind (even with `force`), or (unless `others_ok`, as for a reports folder)
    files that are no artefact of ours; with `replace_needs_force`, an existing `kind` folder too
    unless `force`. `kind` None: the output is no artefact, so any artefact folder is refused."""
    o = _resolved(out)
    for src in inputs:
        if src is not None and _within(_resolved(src), o):
            what = "" if _resolved(src) == o else "a folder holding "
            raise AutotuneError(f"{flag} {out} is {what}this command's input {src}; writing there would destroy it: "
                                f"choose another {flag}")
    if o.exists() and not o.is_dir():
        raise AutotuneError(f"{flag} {out} is a file; give a folder")
    found = kind_of(o)
    if found is not None and found != kind:
        only = f"--force replaces only {_a(kind)}, so " if force and kind else ""
        raise AutotuneError(f"{flag} {out}/ holds {_a(found)}{', not ' + _a(kind) if kind else ''}; {only}"
                            f"choose another {flag}")
    if found is None and _content(o) and not others_ok:
        raise AutotuneError(f"{flag} {out}/ holds files that are not {_a(kind)}; choose another {flag} or an empty "
                            "folder")
    if found == kind and replace_needs_force and not force:
        raise AutotuneError(f"{flag} {out}/ already holds {_a(kind)}{_user_files(o)}; add --force to replace it, "
                            f"or choose another {flag}")
    _check_writable(o, flag)


def _user_files(folder: Path) -> str:
    """ ' with files of yours in it (...)' for an export folder holding files export-groups did not write."""
    extra = sorted(q.name for q in _content(folder) if q.name not in EXPORT_FILES) if kind_of(folder) == EXPORT else []
    if not extra:
        return ""
    names = ", ".join(extra[:3]) + (", ..." if len(extra) > 3 else "")
    return f" with files of yours in it ({names}), which --force would delete"


def check_file_output(out: str | Path | None, inputs: Iterable[str | Path | None] = (), flag: str = "--out") -> None:
    """Refuse, in one line, a file output that is one of the inputs, a folder, or a file an artefact
    folder owns (an export's own files, anything in a dataset or model folder)."""
    if out is None:
        return
    if not str(out).strip():
        raise AutotuneError(f"{flag} is empty; give a file name")
    o = _resolved(out)
    for src in inputs:
        if src is not None and _resolved(src) == o:
            raise AutotuneError(f"{flag} {out} is this command's input; writing it would destroy it: choose another "
                                f"{flag}")
    for folder in [o.parent, *o.parent.parents]:
        kind = kind_of(folder)
        if kind is None:
            continue
        top = o.relative_to(folder).parts[0]
        if kind != EXPORT or top in EXPORT_FILES:
            whose = f"its own {top}" if kind == EXPORT else "which only the command that made it writes"
            raise AutotuneError(f"{flag} {out} would write into the {kind} {folder}/ ({whose}); choose another {flag}")
        break
    if o.is_dir():
        raise AutotuneError(f"{flag} {out} is a folder; give a file name")
    _check_writable(o, flag)


def _check_writable(o: Path, flag: str) -> None:
    for parent in [o.parent, *o.parent.parents]:
        if parent.exists():
            if not parent.is_dir():
                raise AutotuneError(f"{flag} {o}: {parent} is not a folder")
            if not os.access(parent, os.W_OK):
                raise AutotuneError(f"{flag} {o}: cannot write in {parent}")
            return
