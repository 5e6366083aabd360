"""`ingest`, `curate`, `rules` and `quarantine`: traces into the store, the store into dataset versions."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from curation.ingest.formats import NAMES
from schemas.config import DEFAULT_DB, ConfigError, load_config
from tracetune.options import DEFAULT_OUT, ConfigOpt, DbOpt, JsonOpt, OutOpt
from tracetune.output import (
    curate_progress,
    curate_summary,
    emit_json,
    fail,
    ingest_progress,
    ingest_summary,
    leak_warning,
    quarantine_table,
    rules_table,
)

if TYPE_CHECKING:
    from curation.ingest.run import IngestStats


def _run_ingest(paths: list[Path], db: Path, fmt: str, config: Path | None, quiet: bool) -> IngestStats:
    """Ingest `paths` into the store at `db` with a progress bar; a clear error and exit 2 on failure."""
    import duckdb

    from curation.ingest.run import ingest
    from curation.store import Store, StoreError
    from curation.workers import WorkerError

    try:
        cfg = load_config(config)
        with Store(db) as store:
            bar, progress = ingest_progress(quiet)
            with bar:
                return ingest(store, [str(p) for p in paths], fmt, cfg.ingest, progress)
    except duckdb.Error as exc:  # a full disk, a file size limit: the file's transaction is rolled back
        fail(f"{db}: database write failed, nothing of this file was recorded: {exc}")
    except (StoreError, ConfigError, ValueError, WorkerError, OSError) as exc:
        fail(str(exc))


def ingest_cmd(
    paths: Annotated[list[Path], typer.Argument(help="Trace files or directories (walked recursively).")],
    db: DbOpt = DEFAULT_DB,
    fmt: Annotated[str, typer.Option("--format", help=f"auto, or force one of: {', '.join(NAMES)}.")] = "auto",
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Read trace files into the DuckDB store; unusable records go to `quarantine` with a reason.

    Files may be .jsonl, .json (one object or an array), .parquet, and gzip or zstd compressed; a
    directory is walked. Re-ingesting an unchanged file is a no-op (its sha256 is recorded); a changed
    file adds only records not already stored. Counts reconcile:
    records = accepted + already_present + quarantined.

    Batch API input and output files are joined on custom_id: ingest them in the same call.
    """
    stats = _run_ingest(paths, db, fmt, config, quiet=False)
    if as_json:
        from curation.redact_stage import redact_texts
        from curation.store import Store

        shown = stats.as_dict()
        with Store(db) as store:  # the files found under PATH: their names may hold PII too
            shown["paths"] = redact_texts(store, load_config(config).redact, shown["paths"])
        emit_json({"db": str(db), **shown})
    else:
        ingest_summary(stats, db)


PartitionOpt = Annotated[
    int | None,
    typer.Option(
        "--partition-rows",
        min=1,
        help="Traces a stage holds in memory at once (overrides curate.partition_rows; memory follows this, "
        "not the size of the store).",
    ),
]


def curate(
    db: DbOpt = DEFAULT_DB,
    config: ConfigOpt = None,
    out: OutOpt = DEFAULT_OUT,
    partition_rows: PartitionOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Curate the ingested traces into a dataset version: dedupe (exact, prefix chains, MinHash
    near-duplicates), redact PII and secrets with presidio, run the leak gate, apply the quality
    rules (`tracetune rules`), check every row against OpenAI's fine-tuning format, split
    train/holdout by session/user/duplicate cluster (a trace once in holdout stays there) and
    check the split for leakage.

    Writes OUT/vNNNN/{train,holdout}.jsonl, trace_ids.json, manifest.json, README.md (dataset
    card), report.html and report.json, only when the rows changed since the latest version.
    A trace the leak gate flags (PII or a secret left after redaction) is quarantined, listed by id
    and entity type, and the run goes on (exit 0 with a warning); with redact.leak_gate: fail it
    stops the run (exit 3). A train/holdout leak (exit 4) stops the run with the trace ids.
    An empty store (nothing ingested yet) is an error (exit 2).

    Each stage reads the store in partitions and only works on traces it has no stored result
    for, so a run after new traces arrived costs what the new traces cost."""
    summary = _run_curate(db, config, out, partition_rows)
    if as_json:
        emit_json({"db": str(db), **summary})
        if summary["stages"]["leak_gate"]["detail"].get("leaks"):
            leak_warning(summary["stages"]["leak_gate"]["detail"])
    else:
        curate_summary(summary)


def _run_curate(db: Path, config: Path | None, out: Path | None, partition_rows: int | None = None) -> dict[str, Any]:
    """Run the curation pipeline on the store at `db`; exit 3 on a leak-gate stop, 4 on split leakage, else 2."""
    import duckdb

    from curation import curate as curate_lib
    from curation.leakgate import LeakError
    from curation.split import LeakageError
    from curation.store import Store, StoreError
    from curation.workers import WorkerError

    try:
        cfg = load_config(config)
        if partition_rows:
            cfg.curate.partition_rows = partition_rows
        bar, progress = curate_progress()
        with Store(db) as store, bar:
            return curate_lib.run(store, cfg, out, progress)
    except LeakError as exc:
        fail(str(exc), code=3)
    except LeakageError as exc:
        fail(str(exc), code=4)
    except duckdb.Error as exc:  # a full disk: the stage's partition transaction is rolled back, the next run resumes
        fail(f"{db}: database write failed: {exc}")
    except (StoreError, ConfigError, ValueError, WorkerError, OSError) as exc:
        fail(str(exc))


def rules(config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """List the quality rules in the order they run, with their reason codes, config keys
    (section `filter:`) and the values in effect (the defaults, or those of --config). The first
    rule that drops a trace gives its reason."""
    from curation.filters import RULES

    try:
        cfg = load_config(config)
    except ConfigError as exc:
        fail(str(exc))
    values = cfg.filter.model_dump(mode="json")
    rows = [
        {
            "rule": r.name,
            "group": r.group,
            "reasons": list(r.reasons),
            "keys": {k: values[k] for k in r.keys},
            "description": r.description,
        }
        for r in RULES
    ]
    if as_json:
        emit_json({"rules": rows, "disabled_by_key": "filter.disabled"})
        return
    rules_table(rows)


def quarantine(
    db: DbOpt = DEFAULT_DB,
    config: ConfigOpt = None,
    code: Annotated[str | None, typer.Option("--code", help="Only this reason code (e.g. invalid_json).")] = None,
    limit: Annotated[int, typer.Option("--limit", help="At most this many rows.")] = 50,
    as_json: JsonOpt = False,
) -> None:
    """List quarantined records: file name and line first, then the reason code and the message naming
    the field (ingest) or the stage's reason (redact, leak gate). --json gives full paths and excerpts.
    Paths, messages and excerpts are shown redacted (the redact settings of --config)."""
    from curation.redact_stage import redact_texts
    from curation.store import Store, StoreError

    try:
        with Store(db, read_only=True) as store:
            found = store.con.execute(
                "SELECT source_file, source_line, code, message, excerpt FROM quarantine "
                "WHERE ? IS NULL OR code = ? ORDER BY source_file, source_line LIMIT ?",
                [code, code, limit],
            ).fetchall()
            texts = redact_texts(store, load_config(config).redact, [str(r[k] or "") for r in found for k in (0, 3, 4)])
    except (StoreError, ConfigError) as exc:
        fail(str(exc))
    found = [(texts[3 * i], r[1], r[2], texts[3 * i + 1], texts[3 * i + 2]) for i, r in enumerate(found)]
    keys = ("source_file", "source_line", "code", "message", "excerpt")
    if as_json:
        for r in found:
            emit_json(dict(zip(keys, r, strict=True)))
        return
    quarantine_table(found)
