"""Connecting to a dask.distributed scheduler, with one clear line when it cannot be reached."""

from __future__ import annotations

from autotune.errors import AutotuneError


def connect(scheduler: str, timeout: str | None = None):
    """A dask.distributed Client for `scheduler` (e.g. tcp://host:8786); waits `timeout` (default
    $AUTOTUNE_SCHEDULER_TIMEOUT, else 15s) for it to answer."""
    import os

    from distributed import Client

    timeout = timeout or os.environ.get("AUTOTUNE_SCHEDULER_TIMEOUT", "15s")
    try:
        return Client(scheduler, timeout=timeout)
    except (OSError, TimeoutError, ValueError, TypeError) as err:
        raise AutotuneError(f"cannot reach dask scheduler {scheduler}: {str(err).splitlines()[0]}") from None
