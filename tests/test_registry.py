"""The adapter registry: promotion behind the eval verdict, forced promotion, rollback, the `current` pointer."""

from __future__ import annotations

import os
import re
import shutil
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.helpers import write_training_run
from training import registry
from training.registry import RegistryError, current, history, listing, promote, register, rollback

NAME = "support"
T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "adapters"


def make_adapter(root: Path, tag: str, version: int = 1, name: str = NAME) -> Path:
    d = root / name / f"v{version:04d}-{tag}"
    d.mkdir(parents=True)
    write_training_run(d, name, version, f"run-{tag}")
    return d


_n = iter(range(10_000))


def add_eval(store, adapter: Path, promote_: bool, minutes: int = 0, eval_id: str | None = None) -> str:
    eval_id = eval_id or f"ev{next(_n)}"
    finished = T0 + timedelta(minutes=minutes)
    store.con.execute(
        "INSERT INTO eval_runs (eval_id, adapter_dir, dataset_path, manifest_sha256, base_model_id, base_model_hash, "
        "config_hash, n, promote, started_at, finished_at, report) VALUES (?, ?, 'ds', 'm', 'base', 'h', 'c', 10, ?, "
        "?, ?, '{}')",
        [eval_id, str(adapter.resolve()), promote_, finished - timedelta(minutes=1), finished],
    )
    return eval_id


def good(store, root: Path, tag: str, version: int = 1) -> Path:
    d = make_adapter(root, tag, version)
    add_eval(store, d, True)
    return d


def pointer(root: Path, name: str = NAME) -> Path:
    return root / name / "current"


def test_promote_after_promote_verdict_moves_current(store, root):
    a = make_adapter(root, "a")
    eid = add_eval(store, a, True)
    out = promote(store, root, a, actor="ana")
    assert out == {"name": NAME, "current": str(a), "previous": None, "eval_id": eid, "forced": False, "changed": True}
    assert current(root, NAME) == a
    p = pointer(root)
    assert p.is_symlink() and os.path.isabs(os.readlink(p)) and Path(os.readlink(p)) == a
    b = good(store, root, "b", 2)
    out = promote(store, root, b)
    assert (out["current"], out["previous"]) == (str(b), str(a))
    assert current(root, NAME) == b
    assert a.is_dir() and (a / "training_run.json").is_file()  # the previous folder is kept
    h = history(store, NAME)
    assert [(r["action"], r["adapter_dir"], r["previous_dir"]) for r in h] == [
        ("promote", str(b), str(a)),
        ("promote", str(a), None),
    ]
    assert h[1]["actor"] == "ana" and h[1]["eval_id"] == eid and h[1]["forced"] is False
    assert sorted(os.listdir(root / NAME)) == ["current", "v0001-a", "v0002-b"]  # no temp symlinks left


def test_do_not_promote_verdict_raises_and_leaves_current(store, root):
    a = good(store, root, "a")
    promote(store, root, a)
    b = make_adapter(root, "b", 2)
    add_eval(store, b, True, minutes=1)
    eid = add_eval(store, b, False, minutes=5)  # the latest one counts
    with pytest.raises(RegistryError, match=re.escape(f"{b}: its latest evaluation ({eid}) says do not promote")):
        promote(store, root, b)
    assert current(root, NAME) == a
    assert len(history(store, NAME)) == 1
    assert store.count("adapters") == 2  # registered all the same


def test_no_evaluation_raises(store, root):
    a = make_adapter(root, "a")
    with pytest.raises(RegistryError, match="no evaluation recorded for it; run tracetune evaluate --adapter"):
        promote(store, root, a)
    assert current(root, NAME) is None and not pointer(root).exists()
    assert history(store, NAME) == []


@pytest.mark.parametrize("reason", [None, "", "  "])
def test_force_needs_a_reason(store, root, reason):
    a = make_adapter(root, "a")
    with pytest.raises(RegistryError, match="--force needs a --reason"):
        promote(store, root, a, force=True, reason=reason)
    assert current(root, NAME) is None


def test_force_with_reason_promotes_and_is_recorded(store, root):
    a = make_adapter(root, "a")
    eid = add_eval(store, a, False)
    out = promote(store, root, a, force=True, reason="hotfix for outage", actor="ops", flow_run_id="fr-1")
    assert out["forced"] is True and out["changed"] is True and out["eval_id"] == eid
    assert current(root, NAME) == a
    (row,) = history(store, NAME)
    assert (row["forced"], row["reason"], row["actor"], row["flow_run_id"]) == (
        True,
        "hotfix for outage",
        "ops",
        "fr-1",
    )
    b = make_adapter(root, "b", 2)  # no evaluation at all: force still works
    assert promote(store, root, b, force=True, reason="manual")["eval_id"] is None
    assert current(root, NAME) == b


def test_promoting_the_current_adapter_is_a_noop(store, root):
    a = good(store, root, "a")
    promote(store, root, a)
    out = promote(store, root, pointer(root))  # the pointer itself resolves to the same folder
    assert out["changed"] is False and out["current"] == str(a)
    assert len(history(store, NAME)) == 1


def test_rollback_goes_back_one_step_at_a_time(store, root):
    a, b, c = (good(store, root, t, v) for v, t in enumerate("abc", 1))
    for d in (a, b, c):
        promote(store, root, d)
    out = rollback(store, root, NAME, reason="regression", actor="ana")
    assert out == {"name": NAME, "current": str(b), "previous": str(c), "changed": True}
    assert current(root, NAME) == b
    assert rollback(store, root, NAME)["current"] == str(a)
    assert current(root, NAME) == a
    with pytest.raises(RegistryError, match=f"{NAME}: nothing to roll back to"):
        rollback(store, root, NAME)
    assert current(root, NAME) == a
    assert all(d.is_dir() for d in (a, b, c))
    h = history(store, NAME)
    assert [r["action"] for r in h] == ["rollback", "rollback", "promote", "promote", "promote"]
    assert (h[1]["adapter_dir"], h[1]["previous_dir"], h[1]["reason"], h[1]["actor"]) == (
        str(b),
        str(c),
        "regression",
        "ana",
    )


def test_rollback_after_repromotion_and_after_a_new_promotion(store, root):
    a, b = good(store, root, "a"), good(store, root, "b", 2)
    promote(store, root, a)
    promote(store, root, b)
    rollback(store, root, NAME)  # -> a
    c = good(store, root, "c", 3)
    promote(store, root, c)  # history of currents: a, c
    assert rollback(store, root, NAME)["current"] == str(a)
    promote(store, root, b)
    promote(store, root, a)  # currents: a, b, a
    assert rollback(store, root, NAME)["current"] == str(b)
    assert rollback(store, root, NAME)["current"] == str(a)


def test_rollback_skips_deleted_folders(store, root):
    a, b, c = (good(store, root, t, v) for v, t in enumerate("abc", 1))
    for d in (a, b, c):
        promote(store, root, d)
    shutil.rmtree(b)
    assert rollback(store, root, NAME)["current"] == str(a)


def test_nothing_to_roll_back(store, root):
    with pytest.raises(RegistryError, match="nothing to roll back to"):
        rollback(store, root, NAME)
    promote(store, root, good(store, root, "a"))
    with pytest.raises(RegistryError, match="nothing to roll back to"):
        rollback(store, root, NAME)
    assert len(history(store, NAME)) == 1


def test_listing_marks_current_newest_first(store, root):
    a = good(store, root, "a")
    b = make_adapter(root, "b", 2)
    eid = add_eval(store, b, False)
    c = make_adapter(root, "c", 3)
    other = make_adapter(root, "x", 1, name="other")
    for d in (a, b, c, other):
        register(store, d)
    promote(store, root, a)
    rows = listing(store, root, NAME)
    assert [r["adapter_dir"] for r in rows] == [str(c), str(b), str(a)]
    assert [r["current"] for r in rows] == [False, False, True]
    assert [r["promote"] for r in rows] == [None, False, True]
    assert rows[1]["eval_id"] == eid and rows[0]["eval_id"] is None
    assert all(r["exists"] and r["name"] == NAME for r in rows)
    assert rows[2]["dataset_version"] == 1 and isinstance(rows[2]["registered_at"], str)
    assert {r["name"] for r in listing(store, root)} == {NAME, "other"}


def test_dangling_pointer(store, root):
    a, b = good(store, root, "a"), good(store, root, "b", 2)
    promote(store, root, a)
    shutil.rmtree(a)
    assert pointer(root).is_symlink() and current(root, NAME) is None
    row = next(r for r in listing(store, root, NAME) if r["adapter_dir"] == str(a))
    assert row["current"] is True and row["exists"] is False
    with pytest.raises(RegistryError, match="no such adapter folder"):
        promote(store, root, a)
    assert promote(store, root, b)["previous"] == str(a)
    assert current(root, NAME) == b
    with pytest.raises(RegistryError, match="nothing to roll back to"):
        rollback(store, root, NAME)  # a is gone


def test_pointer_is_replaced_atomically(store, root, monkeypatch):
    a, b = good(store, root, "a"), good(store, root, "b", 2)
    promote(store, root, a)
    calls = []
    real = os.replace

    def spy(src, dst):
        assert Path(src).is_symlink() and Path(src).parent == Path(dst).parent
        calls.append((Path(src).name, Path(dst)))
        real(src, dst)

    monkeypatch.setattr(registry.os, "replace", spy)
    promote(store, root, b)
    assert len(calls) == 1 and calls[0][1] == pointer(root) and calls[0][0].startswith(".current.")
    assert sorted(os.listdir(root / NAME)) == ["current", "v0001-a", "v0002-b"]


def test_failed_switch_leaves_no_promotion_row(store, root, monkeypatch):
    a, b = good(store, root, "a"), good(store, root, "b", 2)
    promote(store, root, a)

    def broken(src, dst):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(registry.os, "replace", broken)
    with pytest.raises(RegistryError, match="cannot switch the current-adapter pointer: Permission denied"):
        promote(store, root, b)
    assert current(root, NAME) == a
    assert len(history(store, NAME)) == 1
    assert sorted(os.listdir(root / NAME)) == ["current", "v0001-a", "v0002-b"]


def test_failed_commit_restores_the_pointer(store, root, monkeypatch):
    a, b = good(store, root, "a"), good(store, root, "b", 2)
    promote(store, root, a)
    real = store.transaction

    @contextmanager
    def failing_commit():
        with real() as con:
            yield con
            raise RuntimeError("commit failed")

    monkeypatch.setattr(store, "transaction", failing_commit)
    with pytest.raises(RuntimeError, match="commit failed"):
        promote(store, root, b)
    assert current(root, NAME) == a
    assert len(history(store, NAME)) == 1


def test_register(store, root, tmp_path):
    a = make_adapter(root, "a", 7)
    out = register(store, a, flow_run_id="fr-9")
    assert (out["name"], out["adapter_dir"], out["dataset_version"], out["training_run_id"], out["flow_run_id"]) == (
        NAME,
        str(a),
        7,
        "run-a",
        "fr-9",
    )
    assert register(store, a)["flow_run_id"] == "fr-9"  # an upsert keeps what it knew
    assert store.count("adapters") == 1
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(RegistryError, match=re.escape(f"{empty}: no training_run.json")):
        register(store, empty)
    with pytest.raises(RegistryError, match=r"no training_run\.json"):
        promote(store, root, empty, force=True, reason="x")


def test_unusable_name(store, root):
    bad = make_adapter(root, "a")
    write_training_run(bad, "../up", 1, "r")
    with pytest.raises(RegistryError, match="not a usable adapter name"):
        register(store, bad)
    with pytest.raises(RegistryError, match="not a usable adapter name"):
        current(root, "a/b")
