"""The run records tracetune writes: `training_run.json` (a LoRA training run) and `eval.json` (base vs adapter).

The CLI, the flows, the registry and the evaluation read these models, not string keys. Unknown keys are kept
(`extra="allow"`), so a record written by a newer tracetune still loads; a missing or mistyped field is an
error naming the file and the field.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

TRAINING_RUN_FILE = "training_run.json"
EVAL_FILE = "eval.json"

R = TypeVar("R", bound="Record")


class RecordError(ValueError):
    """A run record that is missing or does not match its model; the message names the file and field."""


class Record(BaseModel):
    """Base of the run records: extra keys kept, JSON in and out."""

    model_config = ConfigDict(extra="allow")

    @classmethod
    def read(cls: type[R], path: Path) -> R:
        """Load a record file; `RecordError` naming the file (and the first bad field) otherwise."""
        try:
            return cls.model_validate_json(path.read_bytes())
        except OSError as exc:
            raise RecordError(f"{path}: cannot read ({exc.strerror or exc})") from None
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(x) for x in err["loc"]) or "(file)"
            raise RecordError(f"{path}: field {where}: {err['msg']}") from None

    def write(self, path: Path) -> None:
        """Write the record as indented JSON."""
        path.write_text(self.model_dump_json(indent=2), encoding="utf-8")


class DatasetLineage(Record):
    """The dataset version a run read: identity, file hashes, review (from `schemas.dataset.lineage`)."""

    path: str
    name: str | None = None
    version: int
    content_hash: str | None = None
    manifest_sha256: str
    train_sha256: str | None = None
    holdout_sha256: str | None = None
    review: dict[str, Any] | None = None


class TrainedDataset(DatasetLineage):
    """The lineage of a training run's dataset plus the trace ids it was trained on."""

    trace_ids_file_sha256: str | None = None
    train_trace_ids_sha256: str | None = None
    holdout_trace_ids_sha256: str | None = None
    train_trace_ids: list[str] | None = None


class BaseModelRef(Record):
    """The base model a run loaded."""

    spec: str | None = None
    id: str
    hash: str
    path: str


class DeviceInfo(Record):
    """What the run computed on and how."""

    type: str
    name: str
    threads: int
    dtype: Literal["bf16", "fp32"]
    native_bf16: bool = False
    quantization: str = "none"
    gradient_checkpointing: bool = False


class RowCounts(Record):
    """What encoding did to a split's rows (`training.chat.EncodeStats`)."""

    rows: int
    kept: int
    truncated: int
    dropped_truncated: int
    no_trainable: int
    tokens: int = 0
    trainable_tokens: int = 0
    max_row_tokens: int = 0
    dropped_rows: list[int] = []


class TrainingRun(Record):
    """`training_run.json`: lineage, settings, the metrics curve, throughput and memory of one training run."""

    run_id: str
    started_at: datetime
    finished_at: datetime
    adapter_dir: str
    dataset: TrainedDataset
    base_model: BaseModelRef
    config_hash: str
    train_config: dict[str, Any]
    rows: dict[str, RowCounts]
    device: DeviceInfo
    steps: int
    resumed_from: str | None = None
    train_loss: float
    final_train_loss: float | None = None
    eval_loss: float | None = None
    eval_token_accuracy: float | None = None
    curve: list[dict[str, Any]]
    trained_tokens: int
    train_seconds: float
    tokens_per_s: float | None = None
    tokens_per_s_after_first_step: float | None = None
    step_times: list[list[float]]
    wall_seconds: float
    peak_rss_mb: float | None = None
    versions: dict[str, str]
    flow_run_id: str | None = None
    merged_dir: str | None = None


class MetricResult(Record):
    """One metric of an evaluation: both means over n paired examples, the difference and its interval."""

    n: int
    base: float | None
    adapter: float | None
    diff: float | None
    ci: list[float | None]


class Check(Record):
    """One check of the promotion verdict (passed None: not measured)."""

    check: str
    passed: bool | None
    detail: str


class Verdict(Record):
    """Whether to promote the adapter, the reasons and every check."""

    promote: bool
    reasons: list[str]
    checks: list[Check]


class EvalDataset(DatasetLineage):
    """The holdout an evaluation read: lineage plus what was evaluated of it."""

    expect_json_schema: bool = False
    rows: int
    with_answer: int
    evaluated: int
    skipped_rows: list[int] = []


class AdapterRef(Record):
    """The adapter an evaluation loaded and what it was trained on."""

    path: str
    run_id: str | None = None
    adapter_sha256: str | None = None
    trained_on_version: int | None = None
    trained_on_manifest_sha256: str | None = None
    steps: int | None = None
    train_config_hash: str | None = None


class EvalLineage(Record):
    """Everything an evaluation's numbers depend on."""

    dataset: EvalDataset
    adapter: AdapterRef
    base_model: BaseModelRef
    overlap_check: str
    config_hash: str
    eval_config: dict[str, Any]
    versions: dict[str, str]


class EvalTiming(Record):
    """Where an evaluation's time and memory went."""

    load_s: float
    teacher_forced_base_s: float
    generate_base_s: float
    teacher_forced_adapter_s: float
    generate_adapter_s: float
    generated_tokens: int
    generate_tokens_per_s: float | None = None
    seconds_per_example: float | None = None
    merged_for_adapter_generation: bool
    threads: int
    wall_s: float
    peak_rss_mb: float | None = None


class EvalRun(Record):
    """`eval.json`: paired base-vs-adapter metrics with intervals, the verdict, lineage, timing, examples."""

    eval_id: str
    started_at: datetime
    finished_at: datetime
    n: int
    metrics: dict[str, MetricResult]
    verdict: Verdict
    outcomes: dict[str, int]
    lineage: EvalLineage
    timing: EvalTiming
    examples: list[dict[str, Any]]
    flow_run_id: str | None = None

    def summary(self) -> dict[str, Any]:
        """The short form: verdict, n, and base/adapter/diff/interval per metric."""
        return {
            "n": self.n,
            "promote": self.verdict.promote,
            "reasons": self.verdict.reasons,
            "metrics": {
                k: m.model_dump(include={"n", "base", "adapter", "diff", "ci"}) for k, m in self.metrics.items()
            },
            "outcomes": self.outcomes,
        }
