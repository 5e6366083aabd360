"""Prefect flows that orchestrate the curation and training libraries (no curation logic here)."""
