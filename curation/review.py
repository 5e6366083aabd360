"""The review of a dataset version before it is trained: a reviewer approves or rejects it and may
exclude traces. The decision goes into the `reviews` table and the version's manifest (and so into
the lineage of whatever is trained on it); exclusions go into `review_exclusions`, which every later
curation run honours (those traces end with a decision of stage `review`)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from curation.store import Store
from schemas.dataset import DatasetError, Review, load_manifest, trace_ids, version_dir, write_manifest

PENDING = "pending"


class ReviewError(ValueError):
    """A review that cannot be recorded (unknown version or trace id, contradictory arguments)."""


def record(
    store: Store,
    root: str | Path,
    version: int,
    decision: Literal["approve", "reject"],
    *,
    reviewer: str | None = None,
    note: str | None = None,
    exclude: list[str] | None = None,
    approved_from: int | None = None,
    flow_run_id: str | None = None,
) -> Review:
    """Record a decision on `version` of the dataset under `root`: the `reviews` row, the exclusions
    and the manifest's `review`. Trace ids to exclude must be rows of that version."""
    folder = version_dir(root, version)
    try:
        folder, manifest = load_manifest(folder, verify=False)
    except DatasetError as exc:
        raise ReviewError(f"dataset version {version}: {exc}") from None
    row = store.con.execute("SELECT content_hash FROM dataset_versions WHERE version = ?", [version]).fetchone()
    if row is None or row[0] != manifest.content_hash:
        # another store's exclusions would never be honoured by the curation runs of this dataset
        raise ReviewError(
            f"dataset version {version} in {folder} was not curated into {store.path} "
            "(pass the --db it was curated with)"
        )
    excluded = sorted(set(exclude or []))
    if excluded:
        ids = trace_ids(folder)
        unknown = sorted(set(excluded) - set(ids["train"]) - set(ids["holdout"]))
        if unknown:
            raise ReviewError(
                f"dataset version {version} has no row for trace id(s) {', '.join(unknown[:10])} "
                f"(the ids are in {folder / 'trace_ids.json'})"
            )
    review = Review(
        decision=decision,
        reviewer=reviewer,
        note=note or None,
        excluded=excluded,
        decided_at=datetime.now(UTC),
        approved_from=approved_from,
        flow_run_id=flow_run_id,
    )
    manifest.review = review
    with store.transaction() as con:
        con.execute(
            "INSERT INTO reviews (version, decision, reviewer, note, excluded, approved_from, flow_run_id, decided_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [version, decision, reviewer, review.note, excluded, approved_from, flow_run_id, review.decided_at],
        )
        for tid in excluded:
            con.execute(
                "INSERT INTO review_exclusions (trace_id, version, reviewer, note) VALUES (?, ?, ?, ?) "
                "ON CONFLICT DO NOTHING",
                [tid, version, reviewer, review.note],
            )
        con.execute("UPDATE dataset_versions SET manifest = ? WHERE version = ?", [manifest.model_dump_json(), version])
        write_manifest(folder, manifest)
    return review


def mark_pending(store: Store, version: int, flow_run_id: str) -> None:
    """Note that the flow run `flow_run_id` waits for a review of `version` (so `tracetune review` can resume it)."""
    store.con.execute(
        "INSERT INTO reviews (version, decision, flow_run_id) VALUES (?, ?, ?)", [version, PENDING, flow_run_id]
    )


def status(store: Store, version: int) -> dict[str, Any] | None:
    """The latest review row of `version` ({decision, reviewer, note, excluded, flow_run_id, decided_at}),
    where decision may be `pending`; None when it was never put up for review."""
    rows = store.records(
        "SELECT decision, reviewer, note, excluded, flow_run_id, decided_at FROM reviews WHERE version = ? "
        "ORDER BY decided_at DESC, decision = 'pending' LIMIT 1",
        [version],
    )
    return rows[0] if rows else None


def pending_run(store: Store, version: int) -> str | None:
    """The flow run id waiting for a review of `version`, if its latest review row is `pending`."""
    s = status(store, version)
    return s["flow_run_id"] if s and s["decision"] == PENDING else None


def carried_approval(root: str | Path, version: int) -> Review | None:
    """An approval that holds for `version` because it is its parent minus exactly the traces that the
    parent's approval excluded (the version curated right after an approval with exclusions)."""
    folder, manifest = load_manifest(version_dir(root, version), verify=False)
    if manifest.review or manifest.parent_version is None:
        return manifest.review if manifest.review and manifest.review.decision == "approve" else None
    try:
        parent_folder, parent = load_manifest(version_dir(root, manifest.parent_version), verify=False)
    except DatasetError:
        return None
    if not (parent.review and parent.review.decision == "approve" and parent.review.excluded):
        return None
    gone = set(parent.review.excluded)
    before, now = trace_ids(parent_folder), trace_ids(folder)
    if all([t for t in before[s] if t not in gone] == now[s] for s in ("train", "holdout")):
        return parent.review.model_copy(update={"approved_from": parent.version, "excluded": []})
    return None


def listing(store: Store) -> list[dict[str, Any]]:
    """Every dataset version with its rows and its latest review state (newest version first)."""
    return store.records(
        "SELECT v.version, v.train_rows, v.holdout_rows, v.path, r.decision AS review, r.reviewer, r.note, "
        "r.decided_at "
        "FROM dataset_versions v LEFT JOIN (SELECT * FROM reviews QUALIFY row_number() OVER "
        "(PARTITION BY version ORDER BY decided_at DESC, decision = 'pending') = 1) r USING (version) "
        "ORDER BY v.version DESC"
    )
