"""Ingest: read trace files of any supported format into the `traces` table (bad records to `quarantine`).

Entry point: `curation.ingest.run.ingest`. This package init stays empty so that parser worker
processes, which import `curation.ingest.parse`, do not load DuckDB."""
