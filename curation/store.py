"""The DuckDB store: opens or creates the database file and applies numbered migrations.

One process writes at a time; a second one gets `StoreLockedError` with a one-line explanation."""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

import duckdb

from schemas.config import DEFAULT_DB

# Numbered migrations: append, never edit a released one.
MIGRATIONS: tuple[tuple[int, str, str], ...] = (
    (
        1,
        "traces, quarantine, ingest_files",
        """
        CREATE TABLE traces (
            trace_id VARCHAR PRIMARY KEY,
            source_format VARCHAR NOT NULL,
            source_file VARCHAR NOT NULL,
            source_line BIGINT NOT NULL,
            content_hash VARCHAR NOT NULL,
            session_id VARCHAR,
            user_id VARCHAR,
            created_at TIMESTAMPTZ,
            model VARCHAR,
            tags VARCHAR[],
            metadata JSON,
            messages JSON NOT NULL,
            tools JSON,
            finish_reason VARCHAR,
            error VARCHAR,
            latency_ms DOUBLE,
            input_tokens BIGINT,
            output_tokens BIGINT,
            feedback JSON,
            n_messages INTEGER NOT NULL,
            ingested_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp
        );
        CREATE TABLE quarantine (
            source_file VARCHAR NOT NULL,
            source_line BIGINT NOT NULL,
            code VARCHAR NOT NULL,
            message VARCHAR NOT NULL,
            excerpt VARCHAR,
            source_format VARCHAR,
            record_key VARCHAR NOT NULL,
            ingested_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp,
            PRIMARY KEY (source_file, record_key)
        );
        CREATE TABLE ingest_files (
            path VARCHAR NOT NULL,
            sha256 VARCHAR PRIMARY KEY,
            size BIGINT NOT NULL,
            records BIGINT NOT NULL,
            accepted BIGINT NOT NULL,
            already_present BIGINT NOT NULL,
            quarantined BIGINT NOT NULL,
            formats VARCHAR[],
            ingested_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp
        );
    """,
    ),
    (
        2,
        "dedupe and redaction tables; stage failures in quarantine",
        """
        CREATE TABLE dup_signatures (
            trace_id VARCHAR PRIMARY KEY,
            params VARCHAR NOT NULL,
            signature BLOB NOT NULL,
            kept BOOLEAN NOT NULL DEFAULT false
        );
        CREATE TABLE dup_clusters (
            trace_id VARCHAR PRIMARY KEY,
            cluster_id VARCHAR NOT NULL,
            kind VARCHAR NOT NULL,
            representative VARCHAR NOT NULL,
            similarity DOUBLE,
            reason VARCHAR
        );
        CREATE TABLE redactions (
            trace_id VARCHAR NOT NULL,
            message_index INTEGER NOT NULL,
            field VARCHAR NOT NULL,
            entity_type VARCHAR NOT NULL,
            start_offset INTEGER NOT NULL,
            end_offset INTEGER NOT NULL,
            score DOUBLE NOT NULL,
            recognizer VARCHAR,
            placeholder VARCHAR NOT NULL
        );
        CREATE TABLE redacted_messages (
            trace_id VARCHAR PRIMARY KEY,
            messages JSON NOT NULL,
            tools JSON,
            n_redactions INTEGER NOT NULL,
            config_hash VARCHAR NOT NULL,
            redacted_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp
        );
        ALTER TABLE quarantine ADD COLUMN stage VARCHAR DEFAULT 'ingest';
        ALTER TABLE quarantine ADD COLUMN trace_id VARCHAR;
    """,
    ),
    (
        3,
        "decisions, splits, dataset_versions",
        """
        CREATE TABLE decisions (
            trace_id VARCHAR PRIMARY KEY,
            stage VARCHAR NOT NULL,
            verdict VARCHAR NOT NULL,
            reason VARCHAR,
            detail JSON,
            version INTEGER,
            config_hash VARCHAR NOT NULL,
            decided_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp
        );
        CREATE TABLE splits (
            trace_id VARCHAR PRIMARY KEY,
            split VARCHAR NOT NULL,
            group_key VARCHAR NOT NULL,
            first_version INTEGER
        );
        CREATE TABLE dataset_versions (
            version INTEGER PRIMARY KEY,
            parent_version INTEGER,
            created_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp,
            content_hash VARCHAR NOT NULL,
            config_hash VARCHAR NOT NULL,
            path VARCHAR NOT NULL,
            train_rows INTEGER NOT NULL,
            holdout_rows INTEGER NOT NULL,
            manifest JSON NOT NULL
        );
    """,
    ),
    (
        4,
        "training_runs",
        """
        CREATE TABLE training_runs (
            run_id VARCHAR PRIMARY KEY,
            adapter_dir VARCHAR NOT NULL,
            dataset_path VARCHAR NOT NULL,
            dataset_version INTEGER,
            manifest_sha256 VARCHAR NOT NULL,
            train_trace_ids_sha256 VARCHAR,
            base_model_id VARCHAR NOT NULL,
            base_model_hash VARCHAR NOT NULL,
            config_hash VARCHAR NOT NULL,
            device VARCHAR NOT NULL,
            steps INTEGER NOT NULL,
            trained_tokens BIGINT,
            tokens_per_s DOUBLE,
            wall_seconds DOUBLE,
            train_loss DOUBLE,
            eval_loss DOUBLE,
            eval_token_accuracy DOUBLE,
            started_at TIMESTAMPTZ NOT NULL,
            finished_at TIMESTAMPTZ NOT NULL,
            run JSON NOT NULL
        );
    """,
    ),
    (
        5,
        "eval_runs",
        """
        CREATE TABLE eval_runs (
            eval_id VARCHAR PRIMARY KEY,
            adapter_dir VARCHAR NOT NULL,
            adapter_run_id VARCHAR,
            dataset_path VARCHAR NOT NULL,
            dataset_version INTEGER,
            manifest_sha256 VARCHAR NOT NULL,
            base_model_id VARCHAR NOT NULL,
            base_model_hash VARCHAR NOT NULL,
            config_hash VARCHAR NOT NULL,
            n INTEGER NOT NULL,
            promote BOOLEAN NOT NULL,
            base_json_parse DOUBLE,
            adapter_json_parse DOUBLE,
            base_field_accuracy DOUBLE,
            adapter_field_accuracy DOUBLE,
            base_loss DOUBLE,
            adapter_loss DOUBLE,
            started_at TIMESTAMPTZ NOT NULL,
            finished_at TIMESTAMPTZ NOT NULL,
            report JSON NOT NULL
        );
    """,
    ),
    (
        6,
        "reviews, review exclusions, adapter registry, flow run ids",
        """
        CREATE TABLE reviews (
            version INTEGER NOT NULL,
            decision VARCHAR NOT NULL,
            reviewer VARCHAR,
            note VARCHAR,
            excluded VARCHAR[],
            approved_from INTEGER,
            flow_run_id VARCHAR,
            decided_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp
        );
        CREATE TABLE review_exclusions (
            trace_id VARCHAR PRIMARY KEY,
            version INTEGER NOT NULL,
            reviewer VARCHAR,
            note VARCHAR,
            excluded_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp
        );
        CREATE TABLE adapters (
            adapter_dir VARCHAR PRIMARY KEY,
            name VARCHAR NOT NULL,
            dataset_version INTEGER,
            training_run_id VARCHAR,
            flow_run_id VARCHAR,
            registered_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp
        );
        CREATE TABLE promotions (
            name VARCHAR NOT NULL,
            action VARCHAR NOT NULL,
            adapter_dir VARCHAR NOT NULL,
            previous_dir VARCHAR,
            eval_id VARCHAR,
            forced BOOLEAN NOT NULL DEFAULT false,
            reason VARCHAR,
            actor VARCHAR,
            flow_run_id VARCHAR,
            decided_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp
        );
        ALTER TABLE training_runs ADD COLUMN flow_run_id VARCHAR;
        ALTER TABLE eval_runs ADD COLUMN flow_run_id VARCHAR;
    """,
    ),
    (
        7,
        "partitioned curation: dedupe keys, LSH band keys, PII findings by text, per-stage verdicts, export rows",
        """
        CREATE TABLE dup_keys (
            trace_id VARCHAR NOT NULL,
            params VARCHAR NOT NULL,
            exact_key VARCHAR NOT NULL,
            n_messages INTEGER NOT NULL,
            length BIGINT NOT NULL,
            feedback DOUBLE NOT NULL,
            created DOUBLE NOT NULL,
            signature BLOB NOT NULL
        );
        CREATE TABLE dup_prefixes (trace_id VARCHAR NOT NULL, params VARCHAR NOT NULL, prefix_key VARCHAR NOT NULL);
        DROP TABLE dup_signatures;
        CREATE TABLE lsh_bands (trace_id VARCHAR NOT NULL, layout VARCHAR NOT NULL, band SMALLINT NOT NULL,
                                key UBIGINT NOT NULL);
        CREATE TABLE pii_findings (text_hash VARCHAR NOT NULL, analyzer VARCHAR NOT NULL, findings JSON NOT NULL);
        CREATE TABLE verdicts (
            stage VARCHAR NOT NULL,
            trace_id VARCHAR NOT NULL,
            key VARCHAR NOT NULL,
            reason VARCHAR,
            detail JSON
        );
        CREATE TABLE export_rows (trace_id VARCHAR NOT NULL, key VARCHAR NOT NULL, row VARCHAR NOT NULL,
                                  tokens INTEGER NOT NULL);
        UPDATE dup_clusters SET kind = CASE kind WHEN 'exact' THEN 'exact_duplicate' WHEN 'near' THEN 'near_duplicate'
            WHEN 'prefix' THEN 'prefix_of' ELSE kind END;
        UPDATE dup_clusters SET reason = CASE WHEN reason IS NULL THEN NULL ELSE kind END;
    """,
    ),
)


class StoreError(RuntimeError):
    """A store problem worth one line to the user (locked, not a database, newer schema)."""


class StoreLockedError(StoreError):
    pass


class Store:
    """A DuckDB database holding the tracetune tables. Use as a context manager."""

    def __init__(self, path: str | Path = DEFAULT_DB, read_only: bool = False, memory_limit: str = "1GB") -> None:
        """Open (or create) the database. DuckDB's own default memory limit is 80% of the machine's
        RAM; tracetune caps it (data beyond the cap spills to disk) so stages run beside training."""
        self.path = Path(path)
        self.read_only = read_only
        if not read_only:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.con = duckdb.connect(str(self.path), read_only=read_only, config={"memory_limit": memory_limit})
        except duckdb.IOException as exc:
            text = str(exc)
            if "lock" in text.lower():
                pid = re.search(r"PID (\d+)", text)
                who = f" by process {pid.group(1)}" if pid else ""
                raise StoreLockedError(
                    f"{self.path}: database is locked{who}; only one tracetune process can write at a time"
                ) from None
            raise StoreError(f"{self.path}: cannot open database: {text.splitlines()[0]}") from None
        except duckdb.Error as exc:
            raise StoreError(f"{self.path}: not a tracetune DuckDB database ({str(exc).splitlines()[0]})") from None
        if not read_only:
            self.migrate()

    def migrate(self) -> int:
        """Apply pending migrations in order; returns the schema version."""
        self.con.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name VARCHAR, "
            "applied_at TIMESTAMPTZ DEFAULT current_timestamp)"
        )
        row = self.con.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchone()
        current = int(row[0]) if row else 0
        latest = MIGRATIONS[-1][0]
        if current > latest:
            raise StoreError(f"{self.path}: schema version {current} is newer than this tracetune ({latest})")
        for version, name, sql in MIGRATIONS:
            if version > current:
                self.con.execute("BEGIN")
                self.con.execute(sql)
                self.con.execute("INSERT INTO schema_migrations (version, name) VALUES (?, ?)", [version, name])
                self.con.execute("COMMIT")
        return latest

    def quarantine_traces(
        self, stage: str, failures: list[tuple[str, str, str]], retried: list[str] | None = None
    ) -> None:
        """Record (trace_id, code, message) for the traces a stage could not process; each row keeps the
        trace's source file and line. The stage's earlier rows are replaced: all of them, or (with
        `retried`) those of the given trace ids. Call inside the stage's transaction."""
        if retried is None:
            self.con.execute("DELETE FROM quarantine WHERE stage = ?", [stage])
        elif retried:
            self.con.execute("DELETE FROM quarantine WHERE stage = ? AND list_contains(?, trace_id)", [stage, retried])
        for trace_id, code, message in failures:
            self.con.execute(
                "INSERT INTO quarantine (source_file, source_line, code, message, source_format, record_key, stage, "
                "trace_id) SELECT source_file, source_line, ?, ?, source_format, ?, ?, trace_id FROM traces "
                "WHERE trace_id = ?",
                [code, message, f"{stage}:{trace_id}", stage, trace_id],
            )

    @contextmanager
    def transaction(self, **tables: Any) -> Iterator[duckdb.DuckDBPyConnection]:
        """BEGIN ... COMMIT (ROLLBACK on any error), with the given Arrow tables registered as
        views under their keyword names while it lasts."""
        con = self.con
        con.execute("BEGIN")
        try:
            for name, table in tables.items():
                con.register(name, table)
            yield con
        except BaseException:
            con.execute("ROLLBACK")
            raise
        finally:
            for name in tables:
                con.unregister(name)
        con.execute("COMMIT")

    def records(self, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
        """The rows of a query as dicts keyed by column name."""
        cur = self.con.execute(sql, params or [])
        keys = [d[0] for d in cur.description]
        return [dict(zip(keys, row, strict=True)) for row in cur.fetchall()]

    def arrow(self, sql: str, params: list[Any] | None = None) -> Any:
        """The rows of a query as an Arrow table (DuckDB warns of the copy this makes of a DB-API result;
        `con.sql` would avoid it but refuses to run while any earlier result is unfinished)."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return self.con.execute(sql, params or []).to_arrow_table()

    def count(self, table: str) -> int:
        row = self.con.execute(f"SELECT count(*) FROM {table}").fetchone()
        return int(row[0]) if row else 0

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
