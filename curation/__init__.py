"""The curation library: ingest adapters, the DuckDB store and the curation stages."""
