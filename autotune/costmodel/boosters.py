"""One booster check: an XGBoost file is parsed only after its bytes match the sha256 that its
meta.json records (a damaged file can crash XGBoost's native loader), with one clear error otherwise.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import xgboost as xgb

from autotune.errors import ModelFileError


def checked_booster_file(path: Path, digest: str | None, retrain: str, owner: str = "its meta.json") -> xgb.Booster:
    """The booster in `path`, checked against the sha256 `digest` that `owner` records before
    XGBoost reads a byte; `retrain` says what to do about a bad one."""
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise ModelFileError(f"cannot read {path}: {err.strerror or err} ({retrain})") from None
    if hashlib.sha256(raw).hexdigest() != digest:
        raise ModelFileError(f"{path} is corrupted or does not belong to {owner} (its digest does not match) "
                             f"({retrain})")
    booster = xgb.Booster()
    try:
        booster.load_model(bytearray(raw))
    except xgb.core.XGBoostError:
        raise ModelFileError(f"{path} is corrupted or not an XGBoost model ({retrain})") from None
    return booster


def read_boosters(meta: dict, folder: Path, names: tuple[str, ...], retrain: str) -> dict[str, xgb.Booster]:
    """The boosters `names` in `folder`, each checked against the digest `meta["sha256"]` records."""
    out = {}
    for name in names:
        try:
            digest = meta["sha256"][name]
        except (KeyError, TypeError):
            raise ModelFileError(f"{folder}/meta.json lists no digest of {name} ({retrain})") from None
        out[name] = checked_booster_file(folder / name, digest, retrain)
    return out
