"""The `tracetune` commands by area; `tracetune.cli` registers them on the app.

Heavy modules (DuckDB, the ingest pipeline, torch) are imported inside the command functions:
parser worker processes re-import the CLI when they start, and should not pay for them.
"""
