"""Plain progress lines for logs (CI, a Prefect worker): when one is due, and what it says.

Shared by the CLI (stderr when it is not a terminal) and the Prefect flows (the run logger); no rich or
Prefect import here. A line is due every `PROGRESS_SECONDS` (TRACETUNE_PROGRESS_SECONDS overrides it) or
every `PROGRESS_FRACTION` of the work, whichever comes first, never more often than `MIN_GAP_SECONDS`, and
once at 100%. The lines hold no escape codes:

    training: step 40/200 (20%), loss 1.234, 512 tokens/s, ETA 3m12s
    evaluation: base answers 16/32 (25%), 1.3 s/example, ETA 0m41s
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

PROGRESS_SECONDS = 10.0  # a line at least this often while work goes on...
PROGRESS_FRACTION = 0.1  # ...or each time this much more of it is done, whichever comes first
MIN_GAP_SECONDS = 1.0  # never two lines closer than this (except the final one)
ENV_SECONDS = "TRACETUNE_PROGRESS_SECONDS"


def progress_seconds() -> float:
    """The interval between lines: TRACETUNE_PROGRESS_SECONDS if set to a number >= 0, else PROGRESS_SECONDS."""
    raw = os.environ.get(ENV_SECONDS, "").strip()
    try:
        value = float(raw)
    except ValueError:
        return PROGRESS_SECONDS
    return value if value >= 0 else PROGRESS_SECONDS


def format_duration(seconds: float | None) -> str:
    """`3m12s` (`1h05m` from an hour on); `?` when unknown."""
    if seconds is None:
        return "?"
    s = max(0, round(seconds))
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 60}m{s % 60:02d}s"


def _count(done: int, total: int | None) -> str:
    """`16/32 (50%)`, or just `16` without a total."""
    if not total:
        return str(done)
    return f"{done}/{total} ({100 * done // total}%)"


@dataclass(frozen=True)
class Pace:
    """Where a run stands when a line is due: the share done, the time per unit and the time left."""

    fraction: float | None
    seconds_per_unit: float | None
    eta: float | None


def training_line(p: dict[str, Any], pace: Pace) -> str:
    """`training: step 40/200 (20%), loss 1.234, 512 tokens/s, ETA 3m12s` from a training progress dict."""
    loss = f"{p['loss']:.3f}" if p.get("loss") is not None else "-"
    tps = f"{p['tokens_per_s']:.0f}" if p.get("tokens_per_s") is not None else "-"
    return (
        f"training: step {_count(p['step'], p.get('max_steps'))}, loss {loss}, {tps} tokens/s, "
        f"ETA {format_duration(pace.eta)}"
    )


def eval_line(stage: str, done: int, total: int, pace: Pace) -> str:
    """`evaluation: base answers 16/32 (25%), 1.3 s/example, ETA 0m41s`: the count is the stage's, the
    percentage and ETA cover both passes (base, then adapter)."""
    count = f"{done}/{total}" if total else str(done)
    if pace.fraction is not None:
        count += f" ({100 * pace.fraction:.0f}%)"
    rate = f"{pace.seconds_per_unit:.1f} s/example" if pace.seconds_per_unit is not None else "? s/example"
    return f"evaluation: {stage} answers {count}, {rate}, ETA {format_duration(pace.eta)}"


class ProgressLog:
    """Throttled progress lines for one run, handed to `write` (one line, no newline).

    `training` and `evaluation` are the callbacks of `training.sft.train` and `training.evaluate.evaluate`.
    The pace is measured from the first report (so model loading and resumed steps do not count)."""

    def __init__(
        self, write: Callable[[str], None], seconds: float | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.write = write
        self.seconds = progress_seconds() if seconds is None else seconds
        self.min_gap = min(MIN_GAP_SECONDS, self.seconds)
        self.clock = clock
        self.start: tuple[float, int] | None = None  # (time, done) at the first report
        self.last: tuple[float, float] = (0.0, 0.0)  # (time, fraction) of the last line (or the first report)
        self.finished = False

    def due(self, done: int, total: int | None) -> Pace | None:
        """The pace if a line is due now, else None; remembers the line as written."""
        now = self.clock()
        fraction = min(1.0, done / total) if total else None
        if self.start is None:
            self.start = (now, done)
            self.last = (now, fraction or 0.0)
        final = fraction is not None and fraction >= 1.0
        if self.finished and final:
            return None
        gap = now - self.last[0]
        grown = fraction is not None and fraction - self.last[1] >= PROGRESS_FRACTION - 1e-9
        if not final and (gap < self.min_gap or (gap < self.seconds and not grown)):
            return None
        self.last = (now, fraction or 0.0)
        self.finished = final
        t0, d0 = self.start
        per = (now - t0) / (done - d0) if done > d0 else None
        eta = 0.0 if final else (per * (total - done) if per is not None and total else None)
        return Pace(fraction, per, eta)

    def training(self, p: dict[str, Any]) -> None:
        """Training callback: `p` is {step, max_steps, loss, tokens_per_s}."""
        pace = self.due(p["step"], p.get("max_steps"))
        if pace:
            self.write(training_line(p, pace))

    def evaluation(self, stage: str, done: int, total: int) -> None:
        """Evaluation callback: stage 'base' then 'adapter', each counting 0..total."""
        offset = total if stage == "adapter" else 0
        pace = self.due(offset + done, 2 * total)
        if pace:
            self.write(eval_line(stage, done, total, pace))
