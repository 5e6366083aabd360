"""Progress in the Prefect UI and the worker's log: a training run's steps and an evaluation's examples as
progress artifacts, and the same throttled plain lines as the CLI through the run logger."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from prefect import get_run_logger
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.exceptions import MissingContextError

from training.progress_lines import ProgressLog


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


def log_line(line: str) -> None:
    """One progress line in the run's log (the worker's log); outside a run, the `flows.progress` logger."""
    try:
        logger = get_run_logger()
    except MissingContextError:
        logging.getLogger(__name__).info(line)
        return
    logger.info(line)


def training_progress() -> Callable[[dict[str, Any]], None]:
    """A `training.sft.train` progress callback feeding the `training-progress` artifact and the run log."""
    bar = ProgressArtifact("training-progress", "Training steps")
    lines = ProgressLog(log_line)

    def tick(p: dict[str, Any]) -> None:
        loss = f", loss {p['loss']:.3f}" if p.get("loss") is not None else ""
        bar.update(p["step"], p.get("max_steps"), f"step {p['step']}/{p.get('max_steps')}{loss}")
        lines.training(p)

    return tick


def eval_progress() -> Callable[[str, int, int], None]:
    """A `training.evaluate.evaluate` progress callback feeding the `evaluation-progress` artifact and the run log."""
    bar = ProgressArtifact("evaluation-progress", "Evaluation examples")
    lines = ProgressLog(log_line)

    def tick(stage: str, done: int, total: int) -> None:
        offset = total if stage == "adapter" else 0  # the base pass, then the adapter pass
        bar.update(offset + done, 2 * total, f"{stage} answers: {done}/{total}")
        lines.evaluation(stage, done, total)

    return tick
