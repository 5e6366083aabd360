"""Promise 2 (training): `tracetune train` killed (SIGKILL) at any point leaves no half-written adapter visible, and
`tracetune train --resume` then reaches the same final step with final metrics within a stated tolerance of an
undisturbed run's.

"Visible" means what evaluation and the registry accept: a folder with `training_run.json` (the commit marker,
written last) and a `training_runs` row. After a kill, either there is no marker (and `tracetune evaluate`, the
registry and the database know no adapter), or the marker belongs to a finished run whose adapter files are
complete. The kill points are reached by pausing the CLI process at one exact call (a hook installed in the
child before the CLI starts) and killing it from here, plus one point found only by watching the disk."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import TRACETUNE
from tests.helpers import write_dataset
from tests.test_train import cfg, tiny_base, toy_rows  # noqa: F401  (session fixture: the 2-layer model)

STEPS = 12
SAVE_STEPS = 4  # checkpoints at 4, 8, 12 (the trainer also saves at the last step)
# An undisturbed run and a resumed one on CPU, one thread, same seed: measured |difference| 0 to the last bit in
# every run so far (final train loss and eval loss); the tolerance leaves room for other CPUs' kernels.
TOLERANCE = 1e-4

# Run the CLI in a child that pauses at the Nth call of one function (writes `marker`, then sleeps) until killed.
LAUNCHER = """
import importlib, os, sys, time
from pathlib import Path
where, nth, marker = sys.argv[1:4]
module, attr = where.split(":")
owner = importlib.import_module(module)
*path, name = attr.split(".")
for part in path:
    owner = getattr(owner, part)
original, calls = getattr(owner, name), [0]
def paused(*args, **kwargs):
    calls[0] += 1
    if calls[0] == int(nth):
        Path(marker).write_text(str(os.getpid()))
        time.sleep(600)
    return original(*args, **kwargs)
setattr(owner, name, paused)
sys.argv = ["tracetune", *sys.argv[4:]]
from tracetune.cli import app
app()
"""

# (name, function the child pauses in, which call): every point kills the run, none may leave a visible adapter.
PAUSE_POINTS = [
    ("before the first checkpoint", "transformers.trainer:Trainer._save_checkpoint", 1),
    ("while checkpoint-8 is written", "transformers.trainer:Trainer._save_rng_state", 2),
    ("while the final adapter is written", "peft.peft_model:safe_save_file", 4),
    ("final files staged, none published", "training.sft:publish", 1),
    ("final files moved in, marker not written", "training.publish:write_atomic", 1),
    ("marker written, run not recorded", "training.sft:record_run", 1),
]


def _setup(tmp_path: Path, base: Path) -> tuple[Path, Path]:
    """The toy dataset (32 train rows, 8 holdout) and a config file: 12 steps, a checkpoint every 4."""
    data = write_dataset(tmp_path / "v0001", toy_rows(32), toy_rows(8, offset=3))
    settings = cfg(base, max_steps=STEPS, save_steps=SAVE_STEPS).train.model_dump(mode="json")
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"train": settings}))
    return data, config


def _args(data: Path, config: Path, out: Path, db: Path, *extra: str) -> list[str]:
    return ["train", "--dataset", str(data), "--config", str(config), "--out", str(out), "--db", str(db), *extra]


def _train(args: list[str]) -> dict[str, Any]:
    """Run `tracetune train ... --json` to the end; its JSON summary."""
    p = subprocess.run([TRACETUNE, *args, "--json"], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads(p.stdout.strip().splitlines()[-1])


def _kill_paused(tmp_path: Path, where: str, nth: int, args: list[str]) -> None:
    """Start the CLI paused at the `nth` call of `where`, wait until it is there, SIGKILL it."""
    marker = tmp_path / f"paused-{time.monotonic_ns()}"
    cmd = [sys.executable, "-c", LAUNCHER, where, str(nth), str(marker), *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not marker.exists():
        if proc.poll() is not None:
            pytest.fail(f"the run ended before reaching {where} call {nth}: {proc.stderr.read()[-3000:]}")
        assert time.monotonic() < deadline, f"{where} call {nth} not reached in 240 s"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def _kill_after_first_checkpoint(args: list[str], out: Path) -> None:
    """Start the CLI and SIGKILL it as soon as the first checkpoint is complete on disk (watched from here)."""
    state = out / "checkpoints" / f"checkpoint-{SAVE_STEPS}" / "trainer_state.json"
    proc = subprocess.Popen([TRACETUNE, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    while not state.exists():
        assert proc.poll() is None, proc.stderr.read()[-3000:]
        assert time.monotonic() < deadline, "no checkpoint in 240 s"
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def _training_runs(db: Path) -> list[tuple[str, str]]:
    from curation.store import Store

    if not db.exists():
        return []
    with Store(db) as store:
        return store.con.execute("SELECT run_id, adapter_dir FROM training_runs").fetchall()


def assert_no_half_written_adapter(out: Path, db: Path) -> bool:
    """The adapter folder is either not an adapter for evaluate, the registry and the store, or a finished one with
    complete files; True when it is a finished one."""
    from safetensors.torch import load_file

    from curation.store import Store
    from schemas.runs import TrainingRun
    from training import registry
    from training.evaluate import EvalError, read_run
    from training.sft import RUN_FILE

    rows = _training_runs(db)
    if not (out / RUN_FILE).exists():
        with pytest.raises(EvalError):
            read_run(out)
        with Store(db) as store, pytest.raises(registry.RegistryError):
            registry.register(store, out)
        assert rows == [], rows
        return False
    run = TrainingRun.read(out / RUN_FILE)  # complete JSON, the finished run's
    assert run.steps == STEPS and run.final_train_loss is not None and run.eval_loss is not None
    json.loads((out / "adapter_config.json").read_text())
    assert load_file(out / "adapter_model.safetensors")  # complete weights
    assert (out / "tokenizer_config.json").is_file()
    assert all(r == (run.run_id, str(out.resolve())) for r in rows), rows
    return True


def assert_resumes_to_the_undisturbed_result(args: list[str], out: Path, db: Path, ref: dict[str, float]) -> float:
    """`--resume` finishes the run: the same final step, final metrics within TOLERANCE, one recorded run; returns
    the largest difference from the undisturbed run's metrics."""
    from schemas.runs import TrainingRun
    from training.sft import RUN_FILE

    summary = _train([*args, "--resume"])
    run = TrainingRun.read(out / RUN_FILE)
    assert summary["steps"] == run.steps == STEPS
    for key in ("final_train_loss", "eval_loss"):
        assert abs(getattr(run, key) - ref[key]) <= TOLERANCE, (key, getattr(run, key), ref[key])
    assert assert_no_half_written_adapter(out, db)
    assert _training_runs(db) == [(run.run_id, str(out.resolve()))]
    return max(abs(getattr(run, key) - ref[key]) for key in ("final_train_loss", "eval_loss"))


def _reference(data: Path, config: Path, tmp_path: Path, name: str) -> dict[str, float]:
    out = tmp_path / name
    _train(_args(data, config, out, tmp_path / f"{name}.duckdb"))
    run = json.loads((out / "training_run.json").read_text())
    return {k: run[k] for k in ("final_train_loss", "eval_loss", "train_loss")}


def test_a_kill_before_the_marker_leaves_no_adapter_and_resume_finishes(tiny_base, tmp_path) -> None:  # noqa: F811
    """Fast variant: killed with the final files moved in but the marker not yet written; the resume runs
    in this process (the same CLI command, without a second start-up)."""
    from typer.testing import CliRunner

    from schemas.runs import TrainingRun
    from tracetune.cli import app
    from training.sft import RUN_FILE

    data, config = _setup(tmp_path, tiny_base)
    out, db = tmp_path / "adapter", tmp_path / "t.duckdb"
    args = _args(data, config, out, db)
    _kill_paused(tmp_path, "training.publish:write_atomic", 1, args)
    assert (out / "adapter_model.safetensors").is_file()  # the dangerous moment: files in place, no marker
    assert not assert_no_half_written_adapter(out, db)
    res = CliRunner().invoke(app, [*args, "--resume", "--json"])
    assert res.exit_code == 0, res.output
    run = TrainingRun.read(out / RUN_FILE)
    assert json.loads(res.stdout.strip())["steps"] == run.steps == STEPS
    assert run.resumed_from.endswith(f"checkpoint-{STEPS}")
    assert not [c for c in run.curve if "loss" in c]  # nothing was left to train
    assert run.final_train_loss is not None and run.eval_loss is not None  # from the checkpoint's log history
    assert assert_no_half_written_adapter(out, db)


@pytest.mark.slow
def test_a_longer_rerun_killed_while_publishing_does_not_leave_the_old_marker(tiny_base, tmp_path) -> None:  # noqa: F811
    """A finished adapter resumed to more steps and killed with the new files moved in: the old run's marker must
    not stay beside the new weights (it is removed before they move in), and a second resume finishes."""
    from curation.store import Store
    from training import registry
    from training.evaluate import EvalError, read_run
    from training.sft import RUN_FILE

    data, config = _setup(tmp_path, tiny_base)
    out, db = tmp_path / "adapter", tmp_path / "t.duckdb"
    _train(_args(data, config, out, db))
    longer = tmp_path / "longer.yaml"
    longer.write_text(yaml.safe_dump({"train": {**yaml.safe_load(config.read_text())["train"], "max_steps": 16}}))
    args = _args(data, longer, out, db, "--resume")
    _kill_paused(tmp_path, "training.publish:write_atomic", 1, args)
    assert not (out / RUN_FILE).exists()
    with pytest.raises(EvalError):
        read_run(out)
    with Store(db) as store, pytest.raises(registry.RegistryError):
        registry.register(store, out)
    assert _train(args)["steps"] == 16
    assert json.loads((out / RUN_FILE).read_text())["steps"] == 16


@pytest.mark.slow
def test_kills_at_every_point_leave_no_half_written_adapter_and_resume_matches(tiny_base, tmp_path) -> None:  # noqa: F811
    data, config = _setup(tmp_path, tiny_base)
    ref = _reference(data, config, tmp_path, "undisturbed")
    again = _reference(data, config, tmp_path, "undisturbed-2")
    spread = {k: abs(ref[k] - again[k]) for k in ref}
    assert all(v <= TOLERANCE for v in spread.values()), spread
    survived, diffs = [], []
    for i, (point, where, nth) in enumerate([*PAUSE_POINTS, ("right after checkpoint-4 is complete", "", 0)]):
        out, db = tmp_path / f"a{i}", tmp_path / f"a{i}.duckdb"
        args = _args(data, config, out, db)
        if where:
            _kill_paused(tmp_path, where, nth, args)
        else:
            _kill_after_first_checkpoint(args, out)
        finished = assert_no_half_written_adapter(out, db)
        if "checkpoint-8 is written" in point:  # caught mid-write: a partial checkpoint, which resume must skip
            from training.sft import last_checkpoint

            assert (out / "checkpoints" / "checkpoint-8").is_dir()
            assert last_checkpoint(out).name == "checkpoint-4"
        assert finished == (point == "marker written, run not recorded"), point
        diffs.append(assert_resumes_to_the_undisturbed_result(args, out, db, ref))
        survived.append(point)
    print(f"kill points survived: {len(survived)}; undisturbed spread {spread}; resumed vs undisturbed {max(diffs)}")
    assert len(survived) == len(PAUSE_POINTS) + 1
