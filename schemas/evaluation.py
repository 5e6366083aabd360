"""The `evaluate:` section of the tracetune config: decoding, statistics and the promotion thresholds."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

# metric name -> direction: +1 higher is better, -1 lower is better, 0 no direction (informational)
METRICS: dict[str, int] = {
    "loss": -1,
    "perplexity": -1,
    "token_accuracy": 1,
    "exact_match": 1,
    "json_parse": 1,
    "schema_valid": 1,
    "field_accuracy": 1,
    "rouge_l": 1,
    "refusal": -1,
    "length_ratio": 0,
    "latency_s": -1,
}


class EvalConfig(BaseModel):
    """Base vs adapter on the holdout: decoding settings, bootstrap, and the promotion verdict's thresholds."""

    model_config = ConfigDict(extra="forbid")

    max_examples: int | None = Field(
        default=None, ge=1, description="evaluate at most this many holdout rows (the first ones); None = all"
    )
    max_new_tokens: int = Field(default=160, ge=1, le=8192, description="greedy generation limit per answer")
    batch_size: int = Field(default=8, ge=1, le=1024, description="prompts per generation / teacher-forcing batch")
    max_length: int = Field(default=1024, ge=16, description="tokens per row for the teacher-forced loss (truncated)")
    threads: int = Field(default=0, ge=0, description="CPU threads for torch; 0 = the cores available")
    merge_for_generation: bool = Field(
        default=True, description="merge the LoRA weights for the adapter pass (faster; unmerged for the base pass)"
    )
    bootstrap_samples: int = Field(default=2000, ge=100, le=100_000, description="paired bootstrap resamples")
    confidence: float = Field(default=0.95, gt=0.5, lt=1, description="confidence level of the intervals")
    seed: int = Field(default=0, ge=0, description="seed of the bootstrap resampling")
    min_examples: int = Field(default=10, ge=1, description="fewer evaluated examples give a 'do not promote' verdict")
    required_gains: dict[str, float] = Field(
        default_factory=lambda: {"json_parse": 0.0, "field_accuracy": 0.05},
        description="metric -> least adapter-minus-base gain (in the metric's better direction) to promote; "
        "metrics the holdout cannot measure (no JSON references) are skipped",
    )
    require_significant: bool = Field(
        default=True, description="a required gain above 0 must also have its confidence interval above 0"
    )
    regression_tolerance: float = Field(
        default=0.0,
        ge=0,
        description="a metric regresses when its whole interval is worse than 0 by more than this",
    )
    ignore_regressions: list[str] = Field(
        default_factory=lambda: ["latency_s", "length_ratio", "perplexity"],
        description="metrics not checked for regressions (latency depends on the machine; length has no direction)",
    )

    @model_validator(mode="after")
    def _known_metrics(self) -> EvalConfig:
        for key in [*self.required_gains, *self.ignore_regressions]:
            if key not in METRICS:
                raise ValueError(f"unknown metric '{key}' (allowed: {', '.join(METRICS)})")
        return self
