"""Connecting to a dask.distributed scheduler, with one clear line when it cannot be reached."""

from __future__ import annotations

from .errors import AutotuneError


def connect(scheduler: str, timeout: str = "15s"):
    """A dask.distributed Client for `scheduler` (e.g. tcp://host:8786)."""
    from distributed import Client

    try:
        return Client(scheduler, timeout=timeout)
    except (OSError, TimeoutError, ValueError, TypeError) as err:
        raise AutotuneError(f"cannot reach dask scheduler {scheduler}: {str(err).splitlines()[0]}") from None
