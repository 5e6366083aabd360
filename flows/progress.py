"""Progress artifacts: a training run's steps and an evaluation's examples, visible in the Prefect UI."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from prefect.artifacts import create_progress_artifact, update_progress_artifact


class ProgressArtifact:
    """One progress artifact updated at most every `every` seconds (and at 100%)."""

    def __init__(self, key: str, description: str, every: float = 2.0) -> None:
        self.id = create_progress_artifact(0.0, key=key, description=description)
        self.every = every
        self.last = 0.0

    def update(self, done: int, total: int | None, description: str | None = None) -> None:
        now = time.monotonic()
        finished = bool(total) and done >= (total or 0)
        if self.id is None or not total or (now - self.last < self.every and not finished):
            return
        self.last = now
        update_progress_artifact(self.id, min(100.0, 100.0 * done / total), description=description)


def training_progress() -> Callable[[dict[str, Any]], None]:
    """A `training.sft.train` progress callback feeding the `training-progress` artifact."""
    bar = ProgressArtifact("training-progress", "Training steps")

    def tick(p: dict[str, Any]) -> None:
        loss = f", loss {p['loss']:.3f}" if p.get("loss") is not None else ""
        bar.update(p["step"], p.get("max_steps"), f"step {p['step']}/{p.get('max_steps')}{loss}")

    return tick


def eval_progress() -> Callable[[str, int, int], None]:
    """A `training.evaluate.evaluate` progress callback feeding the `evaluation-progress` artifact."""
    bar = ProgressArtifact("evaluation-progress", "Evaluation examples")

    def tick(stage: str, done: int, total: int) -> None:
        offset = total if stage == "adapter" else 0  # the base pass, then the adapter pass
        bar.update(offset + done, 2 * total, f"{stage} answers: {done}/{total}")

    return tick
