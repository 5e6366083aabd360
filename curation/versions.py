"""Dataset versions written from the store: train/holdout JSONL streamed from the stored export rows
in trace-id order (never all rows in memory), a new version folder only when the rows changed."""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa

from curation import export, report, rule_base
from curation.redact_stage import redact_texts
from curation.store import Store
from schemas.config import Config, config_hash
from schemas.dataset import MANIFEST, TRACE_IDS, DatasetError, DatasetManifest, FileEntry, InputFile, load_manifest

FETCH = 5000  # rows read from the store at a time while writing


@dataclass
class Side:
    """The exported rows of one side: their trace ids and token counts, in file order."""

    ids: list[str] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)


class StoredRows:
    """Export rows looked up in the store by trace id (for the few the report shows)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def get(self, trace_id: str, default: Any = None) -> Any:
        row = self.store.con.execute("SELECT row FROM export_rows WHERE trace_id = ?", [trace_id]).fetchone()
        return orjson.loads(row[0]) if row else default


@dataclass
class Exported:
    """What one run exports: both sides and a lookup of their rows."""

    train: Side
    holdout: Side
    rows: StoredRows


def _stream(store: Store, kept: str, side: str, path: Path, content: Any) -> tuple[Side, FileEntry]:
    """Write one side's rows to `path`, feeding them to the `content` hash as well. The ids are sorted
    first and the rows fetched `FETCH` ids at a time, so no sort holds the rows' text."""
    digest, size = hashlib.sha256(), 0
    ids = store.con.execute(
        f"SELECT e.trace_id FROM export_rows e JOIN splits s USING (trace_id) SEMI JOIN ({kept}) k "
        "ON e.trace_id = k.trace_id WHERE s.split = ? ORDER BY e.trace_id",
        [side],
    ).fetchall()
    out = Side(ids=[t for (t,) in ids])
    del ids
    with path.open("wb") as f:
        for start in range(0, len(out.ids), FETCH):
            store.con.register("_ids", pa.table({"trace_id": out.ids[start : start + FETCH]}))
            batch = store.con.execute(
                "SELECT e.row, e.tokens FROM export_rows e SEMI JOIN _ids i USING (trace_id) ORDER BY e.trace_id"
            ).fetchall()
            store.con.unregister("_ids")
            data = b"".join(row.encode() + b"\n" for row, _ in batch)
            f.write(data)
            digest.update(data)
            content.update(data)
            size += len(data)
            out.tokens += [n for _, n in batch]
    if len(out.tokens) != len(out.ids):
        raise DatasetError(f"{path.name}: {len(out.ids)} rows selected but {len(out.tokens)} read back")
    return out, FileEntry(sha256=digest.hexdigest(), bytes=size, rows=len(out.ids))


def write(store: Store, cfg: Config, kept: str, summary: dict[str, Any], out: Path) -> dict[str, Any]:
    """Write a new dataset version under `out` from the rows of the traces selected by the SQL `kept`
    (the split's input) when they changed, else report the current version."""
    parent = export.latest_manifest(out)
    tmp = export.staging_folder(out)
    try:
        content = hashlib.sha256(cfg.export.format.encode())
        train, train_entry = _stream(store, kept, "train", tmp / "train.jsonl", content)
        content.update(b"\0")
        holdout, holdout_entry = _stream(store, kept, "holdout", tmp / "holdout.jsonl", content)
        digest = content.hexdigest()
        published = _published(store, out, digest)
        if published is not None:  # these rows are a version already, recorded or left unrecorded by a killed run
            shutil.rmtree(tmp, ignore_errors=True)
            folder, manifest, recorded = published
            if (out / "latest").resolve() != folder.resolve():
                export.switch_latest(out, folder)
            if not recorded:
                _record(store, folder, manifest, len(train.ids), len(holdout.ids))
            stamp(store, manifest.version)
            return {"version": manifest.version, "changed": not recorded, "path": str(folder)}
        version = max(export.next_version(out), (parent.version + 1) if parent else 1)
        exported = Exported(train, holdout, StoredRows(store))
        parent_folder = out / f"v{parent.version:04d}" if parent else None
        payload = report.build(
            store, cfg, exported, summary, version, parent.version if parent else None, parent_folder
        )
        entries = {
            "train.jsonl": train_entry,
            "holdout.jsonl": holdout_entry,
            TRACE_IDS: export.write_file(tmp, TRACE_IDS, orjson.dumps({"train": train.ids, "holdout": holdout.ids})),
            "report.json": export.write_file(tmp, "report.json", orjson.dumps(payload, option=orjson.OPT_INDENT_2)),
            "report.html": export.write_file(tmp, "report.html", report.render_html(payload).encode()),
        }
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    files = store.con.execute("SELECT path, sha256, accepted FROM ingest_files ORDER BY path").fetchall()
    paths = redact_texts(store, cfg.redact, [p for p, _, _ in files])  # a file name may hold PII too
    inputs = [InputFile(path=p, sha256=s, rows=int(n)) for p, (_, s, n) in zip(paths, files, strict=True)]

    def finish(folder: Path, files: dict[str, FileEntry]) -> DatasetManifest:
        manifest = DatasetManifest(
            name=cfg.export.name,
            version=version,
            parent_version=parent.version if parent else None,
            created_at=datetime.now(UTC),
            format=cfg.export.format,
            content_hash=digest,
            config_hash=config_hash(cfg),
            system_prompt=cfg.export.system_prompt,
            expect_json_schema=rule_base.load_schema(cfg.filter.expect_json_schema),
            counts=payload["funnel_counts"],
            reasons=payload["reasons"],
            inputs=inputs,
            files=files,
        )
        (folder / "README.md").write_text(report.dataset_card(manifest, payload), encoding="utf-8")
        return manifest

    folder, manifest = export.publish(out, tmp, version, entries, finish)
    _record(store, folder, manifest, len(train.ids), len(holdout.ids))
    stamp(store, version)
    return {"version": version, "changed": True, "path": str(folder)}


def _published(store: Store, out: Path, digest: str) -> tuple[Path, DatasetManifest, bool] | None:
    """The version folder (`latest`, else the newest) that holds exactly these rows, with whether the store
    records it. One a killed run published but did not record (or point `latest` at) counts when it verifies."""
    for folder in ((out / "latest").resolve(), out / f"v{export.next_version(out) - 1:04d}"):
        if not (folder / MANIFEST).is_file():
            continue
        manifest = DatasetManifest.model_validate_json((folder / MANIFEST).read_bytes())
        if manifest.content_hash != digest:
            continue
        sql = "SELECT 1 FROM dataset_versions WHERE version = ? AND content_hash = ?"
        if store.con.execute(sql, [manifest.version, digest]).fetchone():
            return folder, manifest, True
        try:
            load_manifest(folder, verify=True)
        except DatasetError:
            continue
        return folder, manifest, False
    return None


def _record(store: Store, folder: Path, manifest: DatasetManifest, train_rows: int, holdout_rows: int) -> None:
    store.con.execute(
        "INSERT OR REPLACE INTO dataset_versions (version, parent_version, content_hash, config_hash, path, "
        "train_rows, holdout_rows, manifest) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [
            manifest.version,
            manifest.parent_version,
            manifest.content_hash,
            manifest.config_hash,
            str(folder),
            train_rows,
            holdout_rows,
            manifest.model_dump_json(),
        ],
    )


def stamp(store: Store, version: int) -> None:
    """Record the version in this run's decisions and as the first version of newly exported traces."""
    store.con.execute("UPDATE decisions SET version = ?", [version])
    store.con.execute(
        "UPDATE splits SET first_version = ? WHERE first_version IS NULL "
        "AND trace_id IN (SELECT trace_id FROM decisions WHERE verdict = 'keep')",
        [version],
    )
