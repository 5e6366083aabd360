"""Process pools for the partition-parallel stages (ingest parsing, PII analysis)."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from typing import Any


class WorkerError(RuntimeError):
    """A worker process died; the message says the usual cause and the setting that avoids workers."""


def processes(configured: int) -> int:
    """Processes for a `workers` setting: as configured, else (0) one per core."""
    return configured or os.cpu_count() or 1


def spawn_pool(
    workers: int, initializer: Callable[..., None] | None = None, initargs: tuple[Any, ...] = ()
) -> ProcessPoolExecutor:
    """A pool of fresh (spawned) processes: forking a process that holds DuckDB and Prefect threads is unsafe."""
    ctx = multiprocessing.get_context("spawn")
    return ProcessPoolExecutor(workers, mp_context=ctx, initializer=initializer, initargs=initargs)


@contextmanager
def explained(setting: str) -> Iterator[None]:
    """Turn a broken pool into a WorkerError that explains the usual cause."""
    try:
        yield
    except BrokenProcessPool:
        raise WorkerError(
            "a worker process died. Worker processes are spawned and re-import the main module: when calling "
            'tracetune from your own script, put the call under `if __name__ == "__main__":`. Running out of '
            f"memory is the other usual cause. `{setting}: 1` in the config avoids worker processes."
        ) from None
