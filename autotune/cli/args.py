"""Argument types the command modules share: whole numbers in a range, seconds (one line each when wrong)."""

from __future__ import annotations

import argparse
import math
import re


def ranged(lo: int, hi: int):
    """An argparse type: an integer in [lo, hi]."""
    def parse(text: str) -> int:
        if not re.fullmatch(r"-?[0-9]{1,30}", text.strip()):  # plain digits: no 1e8, 1_000 or 0x10
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number written in digits")
        v = int(text)
        if not lo <= v <= hi:
            raise argparse.ArgumentTypeError(f"{v} is outside {lo}..{hi}")
        return v

    return parse


def seconds(text: str) -> float:
    """An argparse type: a positive, finite number of seconds, at most an hour."""
    try:
        v = float(text) if re.fullmatch(r"[0-9]*\.?[0-9]+([eE][-+]?[0-9]+)?", text.strip()) else math.nan
    except ValueError:
        v = math.nan
    if not 0 < v <= 3600:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds in (0, 3600]")
    return v


SEED = ranged(0, 2**32 - 1)
BATCH = ranged(1, 4096)
BUDGET = ranged(1, 10**7)  # labels: over 100 times the default dataset, beyond any real device's patience
#: Groups export-groups writes, and labels adapt spends: exporting takes about 25 ms a group, adapting
#: is for few labels (a large labelled set is a job for synth and train).
EXPORT_GROUPS = ranged(1, 200_000)
ADAPT_BUDGET = ranged(1, 200_000)
REPEATS = ranged(1, 1000)
MEASURE = ranged(0, 10**5)
JOBS = ranged(1, 256)
THREADS = ranged(1, 1024)
_FOLD_COUNT = ranged(0, 100)


def folds(text: str) -> int:
    """An argparse type: a number of cross-validation folds, 0 (none) or 2 to 100."""
    v = _FOLD_COUNT(text)
    if v == 1:
        raise argparse.ArgumentTypeError("1 fold holds nothing out: give 0 (none) or 2 to 100")
    return v


def fraction(text: str) -> float:
    """An argparse type: a number in [0, 1)."""
    v = float(text) if re.fullmatch(r"0?\.[0-9]{1,12}|0", text.strip()) else -1.0
    if not 0 <= v < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a fraction in [0, 1) written as 0.N")
    return v


def share(text: str) -> float:
    """An argparse type: a number in [0, 1], both ends included."""
    v = float(text) if re.fullmatch(r"0?\.[0-9]{1,12}|[01](\.0*)?", text.strip()) else -1.0
    if not 0 <= v <= 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a share from 0 to 1 written as 0, 0.N or 1")
    return v
