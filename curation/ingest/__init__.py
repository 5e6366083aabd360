"""Ingest: read trace files of any supported format into the `traces` table (bad records to `quarantine`)."""

from curation.ingest.run import IngestStats, ingest

__all__ = ["IngestStats", "ingest"]
