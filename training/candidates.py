"""Whether a dataset version is worth a training run: enough train rows, and enough of them new since
the last version an adapter was trained on (read from the `training_runs` table)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from schemas.config import PipelineConfig
from schemas.dataset import DatasetError, load_manifest, trace_ids


@dataclass
class TrainingNeed:
    """The decision for one version: train or not, and why (in words a log reader understands)."""

    train: bool
    reason: str
    version: int
    train_rows: int
    new_rows: int
    last_trained_version: int | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def last_trained(store: Any, root: Path) -> tuple[int, Path] | None:
    """The newest dataset version under `root` that a recorded training run used, with its folder."""
    base = root.resolve()
    for version, path in store.con.execute(
        "SELECT dataset_version, dataset_path FROM training_runs WHERE dataset_version IS NOT NULL "
        "ORDER BY dataset_version DESC, finished_at DESC"
    ).fetchall():
        folder = Path(path)
        # under `root` itself: a plain string prefix would take `data/dataset-old/v0003` for `data/dataset`
        if folder.resolve().is_relative_to(base) and folder.is_dir():
            return int(version), folder
    return None


def training_need(store: Any, folder: Path, root: Path, cfg: PipelineConfig) -> TrainingNeed:
    """Decide whether `folder` (a version under `root`) should be trained on, per `pipeline.min_train_rows`
    and `pipeline.min_new_rows`."""
    folder, manifest = load_manifest(folder, verify=False)
    train = trace_ids(folder)["train"]
    last = last_trained(store, root)
    seen: set[str] = set()
    if last is not None:
        try:
            seen = set(trace_ids(last[1])["train"])
        except DatasetError:
            seen = set()
    new = len([t for t in train if t not in seen])
    need = TrainingNeed(False, "", manifest.version, len(train), new, last[0] if last else None)
    if last is not None and last[0] == manifest.version:
        need.reason = f"version {manifest.version} is already trained"
    elif len(train) < cfg.min_train_rows:
        need.reason = f"{len(train)} train rows, fewer than pipeline.min_train_rows ({cfg.min_train_rows})"
    elif new < cfg.min_new_rows:
        need.reason = (
            f"{new} train rows new since version {need.last_trained_version}, "
            f"fewer than pipeline.min_new_rows ({cfg.min_new_rows})"
        )
    else:
        need.train = True
        since = f"since version {need.last_trained_version}" if last else "(no version trained yet)"
        need.reason = f"{len(train)} train rows, {new} new {since}"
    return need
