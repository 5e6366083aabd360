"""The single DuckDB writer: a Prefect global concurrency limit held while a task writes the database."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from prefect.concurrency.sync import concurrency
from prefect.context import FlowRunContext

from curation.store import Store, StoreLockedError

WAIT_SECONDS = 6 * 3600  # a writer waits this long for the database before its task fails


def in_deployment() -> bool:
    """True when the current flow run was created from a deployment (scheduled, triggered or run by name)."""
    ctx = FlowRunContext.get()
    return bool(ctx and ctx.flow_run and ctx.flow_run.deployment_id)


_HELD: ContextVar[frozenset[str]] = ContextVar("tracetune_writer_limits_held", default=frozenset())


@contextmanager
def db_writer(limit: str) -> Iterator[None]:
    """Hold one slot of the global concurrency limit `limit` (created with limit 1 by `tracetune deploy`).
    Runs of a deployment require it to exist (strict); an ad-hoc flow run without it only logs a warning.
    Inside a block that already holds `limit` (a curate run holds it from its first stage to its dataset
    version, so no other writer comes between its stages) it holds nothing more."""
    if limit in _HELD.get():
        yield
        return
    with concurrency(limit, occupy=1, timeout_seconds=WAIT_SECONDS, strict=in_deployment()):
        token = _HELD.set(_HELD.get() | {limit})
        try:
            yield
        finally:
            _HELD.reset(token)


@contextmanager
def writing(db: str, limit: str) -> Iterator[Store]:
    """The store opened read-write while holding the writer limit `limit` (the config's pipeline.writer_limit)."""
    with db_writer(limit), Store(db) as store:
        yield store


def transient(task: Any, task_run: Any, state: Any) -> bool:
    """Retry only what may pass on its own: a locked database or a file-system error, not a data error."""
    try:
        state.result()
    except (StoreLockedError, OSError):
        return True
    except Exception:
        return False
    return False
