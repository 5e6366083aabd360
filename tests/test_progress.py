"""Plain progress lines where logs are read: the throttle, the line format, the CLI off and on a terminal,
and the Prefect run log. Synthetic progress only (no model)."""

from __future__ import annotations

import io
import itertools
import logging
import re

import pytest
from rich.console import Console

import flows.progress as flow_progress
import tracetune.output as output
from training.progress_lines import (
    ENV_SECONDS,
    MIN_GAP_SECONDS,
    PROGRESS_SECONDS,
    ProgressLog,
    format_duration,
    progress_seconds,
)

TRAIN_LINE = re.compile(r"^training: step \d+/\d+ \(\d+%\), loss (\d+\.\d{3}|-), \d+ tokens/s, ETA (\d+m\d\ds|\?)$")
EVAL_LINE = re.compile(r"^evaluation: (base|adapter) answers \d+/\d+ \(\d+%\), (\d+\.\d|\?) s/example, ETA \S+$")


class Clock:
    """A fake monotonic clock moved by hand."""

    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def train_run(steps: int, seconds_per_step: float, **kw) -> list[tuple[float, str]]:
    """Feed `steps` training reports, one every `seconds_per_step`; the (time, line) pairs written."""
    clock, lines = Clock(), []
    log = ProgressLog(lambda line: lines.append((clock.t, line)), clock=clock, **kw)
    for step in range(1, steps + 1):
        log.training({"step": step, "max_steps": steps, "loss": 2.0 - step / steps, "tokens_per_s": 512.4})
        clock.t += seconds_per_step
    return lines


def test_training_lines_have_the_format_and_end_at_100_percent():
    lines = train_run(200, 0.5, seconds=PROGRESS_SECONDS)
    for _, line in lines:
        assert TRAIN_LINE.match(line), line
        assert "\x1b" not in line
    assert lines[-1][1] == "training: step 200/200 (100%), loss 1.000, 512 tokens/s, ETA 0m00s"
    assert lines[0][1].startswith("training: step 21/200 (10%), loss 1.895, 512 tokens/s, ETA 1m30s")


def test_a_line_every_10_percent_when_that_comes_first():
    # 1000 steps at 0.05 s: 10% is 5 s, sooner than PROGRESS_SECONDS
    lines = train_run(1000, 0.05, seconds=PROGRESS_SECONDS)
    assert len(lines) == 10
    assert [int(re.search(r"\((\d+)%\)", line)[1]) for _, line in lines] == [10, 20, 30, 40, 50, 60, 70, 80, 90, 100]


def test_a_line_every_interval_when_that_comes_first():
    # 10000 steps at 0.1 s: 1000 s in all, 10% would be 100 s; a line every 10 s instead
    lines = train_run(10_000, 0.1, seconds=PROGRESS_SECONDS)
    gaps = [b - a for (a, _), (b, _) in itertools.pairwise(lines)]
    assert 95 <= len(lines) <= 101
    assert all(PROGRESS_SECONDS - 1e-6 <= g <= PROGRESS_SECONDS + 0.1 + 1e-6 for g in gaps[:-1]), gaps
    assert lines[-1][1].startswith("training: step 10000/10000 (100%)")


def test_never_more_than_one_line_per_second_but_always_the_final_one():
    # 10 steps in 1 s: every step is 10% more, but lines come at most once a second; the last still shows
    lines = train_run(10, 0.1, seconds=PROGRESS_SECONDS)
    assert [line for _, line in lines] == ["training: step 10/10 (100%), loss 1.000, 512 tokens/s, ETA 0m00s"]
    lines = train_run(20, 0.4, seconds=PROGRESS_SECONDS)  # 10% every 0.8 s: held back to once a second
    assert len(lines) == 7
    gaps = [b - a for (a, _), (b, _) in itertools.pairwise(lines)]
    assert all(g >= MIN_GAP_SECONDS - 1e-6 for g in gaps[:-1])  # the final line is never held back


def test_the_final_line_is_written_once():
    clock, lines = Clock(), []
    log = ProgressLog(lines.append, seconds=0, clock=clock)
    for _ in range(3):
        log.training({"step": 5, "max_steps": 5, "loss": None, "tokens_per_s": 10.0})
        clock.t += 5
    assert lines == ["training: step 5/5 (100%), loss -, 10 tokens/s, ETA 0m00s"]


def test_eta_from_elapsed_time_and_share_done():
    # 2 s a step from the first report (step 1): at step 11, 89 steps left -> 178 s
    clock, lines = Clock(), []
    log = ProgressLog(lines.append, seconds=PROGRESS_SECONDS, clock=clock)
    for step in range(1, 12):
        log.training({"step": step, "max_steps": 100, "loss": 1.5, "tokens_per_s": 300.0})
        clock.t += 2.0
    assert lines[-1] == "training: step 11/100 (11%), loss 1.500, 300 tokens/s, ETA 2m58s"


def test_resumed_steps_do_not_count_in_the_pace():
    clock, lines = Clock(), []
    log = ProgressLog(lines.append, seconds=0, clock=clock)
    log.training({"step": 150, "max_steps": 200, "loss": 1.0, "tokens_per_s": 1.0})
    clock.t += 10.0
    log.training({"step": 160, "max_steps": 200, "loss": 1.0, "tokens_per_s": 1.0})
    assert lines[0].endswith("ETA ?")  # nothing measured yet
    assert lines[1].endswith("ETA 0m40s")  # 1 s a step since step 150, 40 left


def test_evaluation_lines_cover_both_passes():
    clock, lines = Clock(), []
    log = ProgressLog(lines.append, seconds=0, clock=clock)
    for stage in ("base", "adapter"):
        for done in range(4, 33, 4):
            log.evaluation(stage, done, 32)
            clock.t += 4 * 1.3
    for line in lines:
        assert EVAL_LINE.match(line), line
        assert "\x1b" not in line
    # at base 16/32: 12 examples in 15.6 s since the first report, 48 of 64 left
    assert "evaluation: base answers 16/32 (25%), 1.3 s/example, ETA 1m02s" in lines
    assert "evaluation: adapter answers 16/32 (75%), 1.3 s/example, ETA 0m21s" in lines
    assert lines[-1] == "evaluation: adapter answers 32/32 (100%), 1.3 s/example, ETA 0m00s"


def test_format_duration():
    assert format_duration(0) == "0m00s"
    assert format_duration(41.4) == "0m41s"
    assert format_duration(192) == "3m12s"
    assert format_duration(3900) == "1h05m"
    assert format_duration(-3) == "0m00s"
    assert format_duration(None) == "?"


def test_the_env_var_overrides_the_interval(monkeypatch):
    monkeypatch.delenv(ENV_SECONDS, raising=False)
    assert progress_seconds() == PROGRESS_SECONDS
    monkeypatch.setenv(ENV_SECONDS, "2.5")
    assert progress_seconds() == 2.5 and ProgressLog(print).seconds == 2.5
    monkeypatch.setenv(ENV_SECONDS, "0")
    log = ProgressLog(print)
    assert log.seconds == 0 and log.min_gap == 0
    for bad in ("soon", "-1", ""):
        monkeypatch.setenv(ENV_SECONDS, bad)
        assert progress_seconds() == PROGRESS_SECONDS


@pytest.fixture
def not_a_terminal(monkeypatch):
    """stderr as in CI: not a terminal (whatever FORCE_COLOR says); a line for every report."""
    monkeypatch.setattr(output, "err", Console(stderr=True, emoji=False, force_terminal=False))
    monkeypatch.setenv(ENV_SECONDS, "0")


def test_cli_training_progress_writes_plain_lines_off_a_terminal(not_a_terminal, capsys):
    bar, progress = output.train_progress()
    with bar:
        for step in range(1, 6):
            progress({"step": step, "max_steps": 5, "loss": 1.0 / step, "tokens_per_s": 99.6})
    err = capsys.readouterr().err
    assert "\x1b" not in err
    lines = err.splitlines()
    assert len(lines) == 5
    assert all(TRAIN_LINE.match(line) for line in lines), lines
    assert lines[-1] == "training: step 5/5 (100%), loss 0.200, 100 tokens/s, ETA 0m00s"


def test_cli_eval_progress_writes_plain_lines_off_a_terminal(not_a_terminal, capsys):
    bar, progress = output.eval_progress()
    with bar:
        for stage in ("base", "adapter"):
            for done in (2, 4):
                progress(stage, done, 4)
    err = capsys.readouterr().err
    assert "\x1b" not in err
    lines = err.splitlines()
    assert [line.split(",")[0] for line in lines] == [
        "evaluation: base answers 2/4 (25%)",
        "evaluation: base answers 4/4 (50%)",
        "evaluation: adapter answers 2/4 (75%)",
        "evaluation: adapter answers 4/4 (100%)",
    ]
    assert all(EVAL_LINE.match(line) for line in lines), lines
    assert lines[-1].endswith("ETA 0m00s")


def test_cli_progress_on_a_terminal_is_the_bar_only(monkeypatch, capsys):
    screen = io.StringIO()
    monkeypatch.setattr(output, "err", Console(file=screen, emoji=False, force_terminal=True))
    monkeypatch.setenv(ENV_SECONDS, "0")
    bar, progress = output.train_progress()
    with bar:
        for step in range(1, 4):
            progress({"step": step, "max_steps": 3, "loss": 0.5, "tokens_per_s": 10.0})
    ebar, eprogress = output.eval_progress()
    with ebar:
        eprogress("base", 1, 1)
        eprogress("adapter", 1, 1)
    assert capsys.readouterr().err == ""
    shown = screen.getvalue()
    assert "training: step" not in shown and "evaluation:" not in shown
    assert "ETA" not in shown and "tokens/s" not in shown


class FakeLogger:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def info(self, line: str) -> None:
        self.lines.append(line)


@pytest.fixture
def fake_prefect(monkeypatch):
    """The flows' progress helpers with the artifact calls and the run logger recorded."""
    updates: list[tuple[float, str | None]] = []
    logger = FakeLogger()
    monkeypatch.setattr(flow_progress, "create_progress_artifact", lambda *a, **kw: "artifact-id")
    monkeypatch.setattr(
        flow_progress, "update_progress_artifact", lambda _id, p, description=None: updates.append((p, description))
    )
    monkeypatch.setattr(flow_progress, "get_run_logger", lambda: logger)
    monkeypatch.setenv(ENV_SECONDS, "0")
    return updates, logger


def test_flow_training_progress_logs_lines_and_updates_the_artifact(fake_prefect):
    updates, logger = fake_prefect
    tick = flow_progress.training_progress()
    for step in range(1, 5):
        tick({"step": step, "max_steps": 4, "loss": 0.25 * step, "tokens_per_s": 42.0})
    assert len(logger.lines) == 4 and all(TRAIN_LINE.match(line) for line in logger.lines), logger.lines
    assert logger.lines[-1] == "training: step 4/4 (100%), loss 1.000, 42 tokens/s, ETA 0m00s"
    assert updates[-1] == (100.0, "step 4/4, loss 1.000")


def test_flow_eval_progress_logs_lines_and_updates_the_artifact(fake_prefect):
    updates, logger = fake_prefect
    tick = flow_progress.eval_progress()
    for stage in ("base", "adapter"):
        tick(stage, 3, 3)
    assert [line.split(",")[0] for line in logger.lines] == [
        "evaluation: base answers 3/3 (50%)",
        "evaluation: adapter answers 3/3 (100%)",
    ]
    assert updates[-1] == (100.0, "adapter answers: 3/3")


def test_flow_progress_outside_a_run_uses_a_plain_logger(monkeypatch, caplog):
    monkeypatch.setattr(flow_progress, "create_progress_artifact", lambda *a, **kw: None)
    monkeypatch.setenv(ENV_SECONDS, "0")
    with caplog.at_level(logging.INFO, logger="flows.progress"):
        flow_progress.training_progress()({"step": 1, "max_steps": 1, "loss": 0.5, "tokens_per_s": 1.0})
    assert [r.getMessage() for r in caplog.records] == ["training: step 1/1 (100%), loss 0.500, 1 tokens/s, ETA 0m00s"]
