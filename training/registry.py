"""The adapter registry: adapters per dataset name, promotion behind the evaluation verdict, and rollback.

Rows live in the store's `adapters` and `promotions` tables; which adapter is current is a symlink on disk,
`<adapters_root>/<name>/current`, pointing at the adapter folder (absolute target) and switched atomically
(a temporary symlink beside it, then `os.replace`). The promotions row and the switch go together: if the
switch fails the row is rolled back, and if the commit fails the old pointer is put back. Adapter folders are
never moved or deleted here, so a rollback can always return to one that still exists.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

from schemas.runs import TRAINING_RUN_FILE as RUN_FILE
from schemas.runs import RecordError, TrainingRun

POINTER = "current"


class RegistryError(ValueError):
    """A registry problem worth one line to the user; the message names the adapter or name."""


def _dir(adapter_dir: str | Path) -> str:
    return str(Path(adapter_dir).resolve())


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def _check_name(name: Any) -> str:
    if not isinstance(name, str) or not name or name in (".", "..") or "/" in name or "\\" in name:
        raise RegistryError(f"{name!r}: not a usable adapter name (it names a folder under the adapters root)")
    return name


def _pointer(adapters_root: str | Path, name: str) -> Path:
    return Path(adapters_root) / _check_name(name) / POINTER


def _target(pointer: Path) -> str | None:
    """Where the pointer symlink points (resolved, possibly dangling); None without a symlink."""
    if not pointer.is_symlink():
        return None
    return str((pointer.parent / os.readlink(pointer)).resolve())


def _switch(pointer: Path, target: str | None) -> None:
    """Point `pointer` at `target` atomically (remove it when target is None)."""
    try:
        if target is None:
            pointer.unlink(missing_ok=True)
            return
        pointer.parent.mkdir(parents=True, exist_ok=True)
        tmp = pointer.with_name(f".{POINTER}.{uuid.uuid4().hex}.tmp")
        os.symlink(target, tmp, target_is_directory=True)
        try:
            os.replace(tmp, pointer)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise RegistryError(f"{pointer}: cannot switch the current-adapter pointer: {exc.strerror or exc}") from exc


def current(adapters_root: str | Path, name: str) -> Path | None:
    """The current adapter folder for `name`; None when there is none or the pointer is dangling."""
    target = _target(_pointer(adapters_root, name))
    return Path(target) if target is not None and Path(target).is_dir() else None


def register(store: Any, adapter_dir: str | Path, *, flow_run_id: str | None = None) -> dict[str, Any]:
    """Record (or refresh) an adapter folder under its dataset's name, read from its training_run.json."""
    path = _dir(adapter_dir)
    run_file = Path(path) / RUN_FILE
    if not run_file.is_file():
        raise RegistryError(f"{path}: no {RUN_FILE}, so it is not an adapter written by tracetune train")
    try:
        run = TrainingRun.read(run_file)
    except RecordError as exc:
        raise RegistryError(f"not a readable training run: {exc}") from None
    name = run.dataset.name
    if not name:
        raise RegistryError(f"{run_file}: no dataset name, so the adapter cannot be registered")
    _check_name(name)
    store.con.execute(
        "INSERT INTO adapters (adapter_dir, name, dataset_version, training_run_id, flow_run_id) "
        "VALUES (?, ?, ?, ?, ?) ON CONFLICT (adapter_dir) DO UPDATE SET name = excluded.name, "
        "dataset_version = excluded.dataset_version, training_run_id = excluded.training_run_id, "
        "flow_run_id = coalesce(excluded.flow_run_id, adapters.flow_run_id)",
        [path, name, run.dataset.version, run.run_id, flow_run_id],
    )
    return _adapter(store, path) or {}


def _adapter(store: Any, path: str) -> dict[str, Any] | None:
    rows = store.records(
        "SELECT adapter_dir, name, dataset_version, training_run_id, flow_run_id, registered_at "
        "FROM adapters WHERE adapter_dir = ?",
        [path],
    )
    if not rows:
        return None
    out = rows[0]
    out["registered_at"] = _iso(out["registered_at"])
    return out


def _latest_eval(store: Any, path: str) -> tuple[str, bool] | None:
    row = store.con.execute(
        "SELECT eval_id, promote FROM eval_runs WHERE adapter_dir = ? "
        "ORDER BY finished_at DESC, started_at DESC, eval_id DESC LIMIT 1",
        [path],
    ).fetchone()
    return (str(row[0]), bool(row[1])) if row else None


def _record_and_switch(store: Any, pointer: Path, old: str | None, row: list[Any]) -> None:
    """Insert the promotions row and switch the pointer to row's adapter_dir, both or neither."""
    switched = False
    try:
        with store.transaction() as con:
            con.execute(
                "INSERT INTO promotions (name, action, adapter_dir, previous_dir, eval_id, forced, reason, actor, "
                "flow_run_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                row,
            )
            _switch(pointer, row[2])
            switched = True
    except BaseException:
        if switched:  # the commit failed after the switch: put the old pointer back
            _switch(pointer, old)
        raise


def promote(
    store: Any,
    adapters_root: str | Path,
    adapter_dir: str | Path,
    *,
    force: bool = False,
    reason: str | None = None,
    actor: str | None = None,
    flow_run_id: str | None = None,
) -> dict[str, Any]:
    """Make the adapter current for its name. Needs its latest evaluation to say promote, or force + reason."""
    path = _dir(adapter_dir)
    if force and not (reason or "").strip():
        raise RegistryError(f"{path}: --force needs a --reason (it is recorded in the promotions history)")
    if not Path(path).is_dir():
        raise RegistryError(f"{path}: no such adapter folder")
    entry = _adapter(store, path) or register(store, path, flow_run_id=flow_run_id)
    name = entry["name"]
    pointer = _pointer(adapters_root, name)
    old = _target(pointer)
    latest = _latest_eval(store, path)
    eval_id = latest[0] if latest else None
    result = {"name": name, "current": path, "previous": old, "eval_id": eval_id, "forced": force}
    if old == path:
        return {**result, "previous": None, "changed": False}
    if not force:
        db = getattr(store, "path", "DB")
        if latest is None:
            raise RegistryError(
                f"{path}: no evaluation recorded for it; run tracetune evaluate --adapter {path} "
                f"--dataset DATASET --db {db} (or promote with --force --reason)"
            )
        if not latest[1]:
            raise RegistryError(f"{path}: its latest evaluation ({eval_id}) says do not promote; use --force --reason")
    _record_and_switch(store, pointer, old, [name, "promote", path, old, eval_id, force, reason, actor, flow_run_id])
    return {**result, "changed": True}


def _stack(store: Any, name: str) -> list[str]:
    """Replay the promotions history into the stack of adapters that were current, oldest first."""
    stack: list[str] = []
    rows = store.con.execute(
        "SELECT action, adapter_dir, previous_dir FROM promotions WHERE name = ? ORDER BY decided_at, rowid",
        [name],
    ).fetchall()
    for action, adapter_dir, previous_dir in rows:
        if action == "promote":
            if previous_dir and (not stack or stack[-1] != previous_dir):
                stack.append(previous_dir)  # the pointer was changed outside the registry
            stack.append(adapter_dir)
        elif adapter_dir in stack[:-1]:
            del stack[len(stack) - 1 - stack[-2::-1].index(adapter_dir) :]
        elif not stack or stack[-1] != adapter_dir:
            stack = [adapter_dir]
    return stack


def rollback(
    store: Any,
    adapters_root: str | Path,
    name: str,
    *,
    reason: str | None = None,
    actor: str | None = None,
    flow_run_id: str | None = None,
) -> dict[str, Any]:
    """Make current the adapter that was current before the current one (skipping deleted folders)."""
    pointer = _pointer(adapters_root, name)
    old = _target(pointer)
    stack = _stack(store, name)
    target = next((d for d in reversed(stack[:-1]) if d != old and Path(d).is_dir()), None)
    if target is None:
        raise RegistryError(f"{name}: nothing to roll back to (no earlier current adapter folder still exists)")
    _record_and_switch(store, pointer, old, [name, "rollback", target, old, None, False, reason, actor, flow_run_id])
    return {"name": name, "current": target, "previous": old, "changed": True}


def listing(store: Any, adapters_root: str | Path, name: str | None = None) -> list[dict[str, Any]]:
    """Registered adapters (of one name, or all), newest first, with latest verdict and current/exists flags."""
    rows = store.con.execute(
        "SELECT a.name, a.adapter_dir, a.dataset_version, a.registered_at, e.promote, e.eval_id FROM adapters a "
        "LEFT JOIN (SELECT adapter_dir, eval_id, promote FROM eval_runs QUALIFY row_number() OVER "
        "(PARTITION BY adapter_dir ORDER BY finished_at DESC, started_at DESC, eval_id DESC) = 1) e "
        "USING (adapter_dir) WHERE ? IS NULL OR a.name = ? ORDER BY a.registered_at DESC, a.rowid DESC",
        [name, name],
    ).fetchall()
    targets: dict[str, str | None] = {}
    out = []
    for n, adapter_dir, version, registered_at, verdict, eval_id in rows:
        if n not in targets:
            targets[n] = _target(_pointer(adapters_root, n))
        out.append(
            {
                "name": n,
                "adapter_dir": adapter_dir,
                "dataset_version": version,
                "registered_at": _iso(registered_at),
                "promote": verdict,
                "eval_id": eval_id,
                "current": targets[n] == adapter_dir,
                "exists": Path(adapter_dir).is_dir(),
            }
        )
    return out


def history(store: Any, name: str) -> list[dict[str, Any]]:
    """The promotions rows (promote and rollback) for `name`, newest first."""
    out = store.records(
        "SELECT name, action, adapter_dir, previous_dir, eval_id, forced, reason, actor, flow_run_id, decided_at "
        "FROM promotions WHERE name = ? ORDER BY decided_at DESC, rowid DESC",
        [name],
    )
    for r in out:
        r["decided_at"] = _iso(r["decided_at"])
    return out


__all__ = ["RegistryError", "current", "history", "listing", "promote", "register", "rollback"]
