"""Partitions handed to other processes or machines (a Dask cluster) as files, and their results back.

The process that owns the database prepares each partition and writes it to the exchange folder: the
traces as Parquet, the stage's lookups as a pickle, both named by the SHA-256 of their content. A
worker checks the content against its name, runs the stage's `process` (which never touches the
store) and writes the result next to it under a name derived from the input's hash, atomically. The
work is idempotent: a partition redone after a lost worker rewrites the same result, and a result
already there is reused. The owner loads the results in partition order, writes them to the store
and deletes the files. The folder must be visible to the workers under the same path (a local
folder for a LocalCluster, shared storage for a remote cluster)."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from curation.curate import stage_named
from schemas.config import Config


class ExchangeError(RuntimeError):
    """A partition file is missing or its content does not match its hash."""


def put(folder: Path, stage: str, index: int, part: pa.Table, prepared: Any, config_json: str) -> tuple[str, str]:
    """Write partition `index` of `stage` to `folder`: STEM.parquet (the traces) and STEM.prepared (the
    lookups, pickled). Returns (STEM, sha256 of both contents and the config the work runs under)."""
    folder.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    pq.write_table(part, buf)
    parquet = buf.getvalue()
    lookups = pickle.dumps(prepared, protocol=pickle.HIGHEST_PROTOCOL)
    digest = _digest(parquet, lookups, config_json.encode())
    stem = folder / f"{stage}-{index:06d}-{digest[:16]}"
    _write_atomic(Path(f"{stem}.parquet"), parquet)
    _write_atomic(Path(f"{stem}.prepared"), lookups)
    return str(stem), digest


def process_file(stage: str, config_json: str, stem: str, digest: str) -> float:
    """Run `stage`'s `process` on the partition at `stem` (in a worker), its result to STEM.out; returns
    the seconds it took (0 when the result was already there)."""
    started = time.perf_counter()
    result = Path(f"{stem}.out")
    if result.exists():
        return 0.0
    try:
        parquet, lookups = Path(f"{stem}.parquet").read_bytes(), Path(f"{stem}.prepared").read_bytes()
    except OSError as exc:
        raise ExchangeError(f"{stem}: partition file not readable on this worker ({exc})") from exc
    if _digest(parquet, lookups, config_json.encode()) != digest:
        raise ExchangeError(f"{stem}: partition content does not match its hash {digest[:16]}")
    part = pq.read_table(io.BytesIO(parquet))
    out = stage_named(Config.model_validate_json(config_json), stage).process(part, pickle.loads(lookups), None)
    _write_atomic(result, pickle.dumps(out, protocol=pickle.HIGHEST_PROTOCOL))
    return time.perf_counter() - started


def take(stem: str) -> Any:
    """Load a partition's result and delete the partition's files."""
    out = pickle.loads(Path(f"{stem}.out").read_bytes())
    for suffix in (".out", ".parquet", ".prepared"):
        Path(f"{stem}{suffix}").unlink(missing_ok=True)
    return out


def _digest(*parts: bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(len(part).to_bytes(8, "little"))
        h.update(part)
    return h.hexdigest()


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
