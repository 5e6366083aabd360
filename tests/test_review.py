"""Reviews of dataset versions on a real store and real curation runs: an approval with exclusions
goes into `reviews`, `review_exclusions` and the manifest (whose file checksums still hold); the next
version leaves the excluded trace out and carries the approval, a version with new rows does not; a
rejection, an unknown trace id or version; the pending flow run; the listing; lineage and the
`tracetune.dataset.created` payload; and whether a version is worth training on (`training_need`)."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from curation import curate, review
from curation.ingest.run import ingest
from curation.review import ReviewError
from curation.store import Store
from schemas.config import Config, PipelineConfig
from schemas.dataset import event_payload, lineage, load_manifest, sha256_file, trace_ids, version_dir
from tests.helpers import distinct_logs, write_jsonl
from training.candidates import training_need

N_FIRST, N_MORE = 20, 6


def config() -> Config:
    return Config.model_validate({"redact": {"workers": 1}, "split": {"min_holdout": 3}})


def copy_project(src: Path, dst: Path) -> tuple[Path, Path]:
    """A copy of a project folder (database and dataset root; `latest` stays a relative link)."""
    shutil.copytree(src, dst, symlinks=True)
    return dst / "t.duckdb", dst / "dataset"


def reviews(store: Store, version: int) -> list[tuple]:
    return store.con.execute(
        "SELECT decision, reviewer, note, excluded, approved_from, flow_run_id FROM reviews WHERE version = ? "
        "ORDER BY decided_at",
        [version],
    ).fetchall()


def db_manifest(store: Store, version: int) -> dict[str, Any]:
    row = store.con.execute("SELECT manifest FROM dataset_versions WHERE version = ?", [version]).fetchone()
    assert row is not None
    return json.loads(row[0])


def lines(folder: Path, split: str) -> int:
    return len((folder / f"{split}.jsonl").read_text(encoding="utf-8").splitlines())


@pytest.fixture(scope="module")
def first(tmp_path_factory) -> Path:
    """A project folder: N_FIRST distinct traces ingested and curated into v1 (store closed)."""
    tmp = tmp_path_factory.mktemp("review-v1")
    with Store(tmp / "t.duckdb") as store:
        ingest(store, [write_jsonl(tmp / "one.jsonl", distinct_logs(N_FIRST, "a"))])
        summary = curate.run(store, config(), tmp / "dataset")
    assert summary["dataset"]["version"] == 1 and summary["train"] >= 10 and summary["holdout"] >= 3
    return tmp


@pytest.fixture
def project(first, tmp_path) -> tuple[Store, Path]:
    """A private copy of the v1 project, its store open: (store, dataset root)."""
    db, root = copy_project(first, tmp_path / "p")
    with Store(db) as store:
        yield store, root


@pytest.fixture(scope="module")
def chain(first, tmp_path_factory) -> dict[str, Any]:
    """v1 approved with one train trace excluded; curated again (v2); more traces arrive (v3)."""
    db, root = copy_project(first, tmp_path_factory.mktemp("review-chain") / "p")
    cfg = config()
    v1 = version_dir(root, 1)
    v1_ids = trace_ids(v1)
    excluded = v1_ids["train"][0]
    with Store(db) as store:
        approval = review.record(
            store, root, 1, "approve", reviewer="rita", note="wrong ticket", exclude=[excluded, excluded]
        )
        s2 = curate.run(store, cfg, root)
        decision_v2 = store.con.execute(
            "SELECT stage, verdict, reason, detail FROM decisions WHERE trace_id = ?", [excluded]
        ).fetchone()
        ingest(store, [write_jsonl(db.parent / "two.jsonl", distinct_logs(N_MORE, "b"))])
        s3 = curate.run(store, cfg, root)
        decision_v3 = store.con.execute("SELECT stage, reason FROM decisions WHERE trace_id = ?", [excluded]).fetchone()
    assert s2["dataset"] == {"version": 2, "changed": True, "path": str(version_dir(root, 2))}
    assert s3["dataset"]["version"] == 3 and s3["dataset"]["changed"]
    return dict(
        home=db.parent,
        db=db,
        root=root,
        excluded=excluded,
        approval=approval,
        v1_ids=v1_ids,
        decision_v2=decision_v2,
        decision_v3=decision_v3,
    )


# --- approve with an exclusion, and what the next versions make of it ---


def test_approval_is_recorded_in_the_store_and_the_manifest(chain) -> None:
    root, excluded = chain["root"], chain["excluded"]
    with Store(chain["db"], read_only=True) as store:
        assert reviews(store, 1) == [("approve", "rita", "wrong ticket", [excluded], None, None)]
        assert store.con.execute("SELECT trace_id, version, reviewer, note FROM review_exclusions").fetchall() == [
            (excluded, 1, "rita", "wrong ticket")
        ]
        stored = db_manifest(store, 1)
    folder, manifest = load_manifest(version_dir(root, 1), verify=True)  # the listed files are untouched
    r = manifest.review
    assert r is not None and r.decision == "approve" and r.reviewer == "rita" and r.note == "wrong ticket"
    assert r.excluded == [excluded] and r.approved_from is None
    assert r.decided_at.tzinfo is not None and abs((datetime.now(UTC) - r.decided_at).total_seconds()) < 600
    assert r == chain["approval"]
    on_disk = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    assert on_disk["review"]["decision"] == "approve" and on_disk["review"]["excluded"] == [excluded]
    assert {"train.jsonl", "holdout.jsonl", "trace_ids.json"} <= set(manifest.files)
    assert stored == json.loads(manifest.model_dump_json())  # dataset_versions.manifest follows the file


def test_next_version_leaves_the_excluded_trace_out(chain) -> None:
    root, excluded = chain["root"], chain["excluded"]
    v2 = version_dir(root, 2)
    folder, manifest = load_manifest(v2, verify=True)
    ids = trace_ids(folder)
    assert manifest.parent_version == 1 and manifest.review is None
    assert excluded not in ids["train"] + ids["holdout"]
    assert ids["train"] == [t for t in chain["v1_ids"]["train"] if t != excluded]
    assert ids["holdout"] == chain["v1_ids"]["holdout"]
    assert excluded not in (folder / "train.jsonl").read_text(encoding="utf-8")  # nor its row
    assert lines(folder, "train") == len(ids["train"])
    stage, verdict, reason, detail = chain["decision_v2"]
    assert (stage, verdict, reason) == ("review", "drop", "excluded_by_review")
    assert json.loads(detail) == {"reviewed_version": 1, "note": "wrong ticket"}
    assert manifest.reasons.get("review") == {"excluded_by_review": 1}


def test_approval_carries_to_the_version_that_only_drops_the_exclusions(chain) -> None:
    carried = review.carried_approval(chain["root"], 2)
    assert carried is not None and carried.decision == "approve" and carried.approved_from == 1
    assert carried.reviewer == "rita" and carried.excluded == []
    assert review.carried_approval(chain["root"], 1) == chain["approval"]  # its own approval


def test_carried_approval_recorded_as_the_pipeline_does(chain, tmp_path) -> None:
    db, root = copy_project(chain["home"], tmp_path / "p")
    carried = review.carried_approval(root, 2)
    assert carried is not None
    with Store(db) as store:
        review.mark_pending(store, 2, "run-2")
        review.record(store, root, 2, "approve", reviewer=carried.reviewer, approved_from=carried.approved_from)
        assert reviews(store, 2)[-1] == ("approve", "rita", None, [], 1, None)
        assert review.pending_run(store, 2) is None
    _, manifest = load_manifest(version_dir(root, 2), verify=True)
    assert manifest.review is not None and manifest.review.approved_from == 1
    assert review.carried_approval(root, 2) == manifest.review
    assert review.carried_approval(root, 3) is None  # v2's approval excludes nothing: nothing carries on


def test_approval_does_not_carry_to_a_version_with_new_rows(chain) -> None:
    root, excluded = chain["root"], chain["excluded"]
    assert review.carried_approval(root, 3) is None
    ids = trace_ids(version_dir(root, 3))
    assert excluded not in ids["train"] + ids["holdout"]  # every later version honours the exclusion
    assert chain["decision_v3"] == ("review", "excluded_by_review")
    assert len(ids["train"]) + len(ids["holdout"]) == N_FIRST - 1 + N_MORE


def test_lineage_carries_the_review(chain) -> None:
    folder, manifest = load_manifest(version_dir(chain["root"], 1))
    got = lineage(folder, manifest)
    assert got["review"] == chain["approval"].model_dump(mode="json")
    assert got["review"]["decision"] == "approve" and got["review"]["excluded"] == [chain["excluded"]]
    assert got["manifest_sha256"] == sha256_file(folder / "manifest.json")
    folder, manifest = load_manifest(version_dir(chain["root"], 2))
    assert lineage(folder, manifest)["review"] is None


def test_listing_is_newest_first_with_review_state(chain, tmp_path) -> None:
    db = copy_project(chain["home"], tmp_path / "p")[0]
    with Store(db) as store:
        review.mark_pending(store, 3, "flow-run-3")
        got = review.listing(store)
    assert [r["version"] for r in got] == [3, 2, 1]
    assert [r["review"] for r in got] == ["pending", None, "approve"]
    assert got[2]["reviewer"] == "rita" and got[2]["note"] == "wrong ticket" and got[2]["decided_at"] is not None
    for r in got:
        ids = trace_ids(Path(r["path"]))
        assert (r["train_rows"], r["holdout_rows"]) == (len(ids["train"]), len(ids["holdout"]))


# --- reject, bad input, the pending flow run ---


def test_reject_is_recorded_and_never_carried(project) -> None:
    store, root = project
    got = review.record(store, root, 1, "reject", reviewer="sam", note="too few billing tickets")
    assert got.decision == "reject" and got.excluded == []
    assert reviews(store, 1) == [("reject", "sam", "too few billing tickets", [], None, None)]
    assert store.count("review_exclusions") == 0
    _, manifest = load_manifest(version_dir(root, 1), verify=True)
    assert manifest.review == got
    assert db_manifest(store, 1)["review"]["decision"] == "reject"
    assert review.carried_approval(root, 1) is None
    assert review.status(store, 1)["decision"] == "reject"


def test_unknown_trace_id_is_refused_and_nothing_is_recorded(project) -> None:
    store, root = project
    mpath = version_dir(root, 1) / "manifest.json"
    before, stored = mpath.read_bytes(), db_manifest(store, 1)
    known = trace_ids(version_dir(root, 1))["train"][0]
    with pytest.raises(ReviewError, match="openai_chat:nope") as err:
        review.record(store, root, 1, "approve", reviewer="rita", exclude=[known, "openai_chat:nope"])
    assert known not in str(err.value)  # only the unknown id is named
    assert store.count("reviews") == 0 and store.count("review_exclusions") == 0
    assert mpath.read_bytes() == before and db_manifest(store, 1) == stored
    assert review.status(store, 1) is None


def test_unknown_version_is_refused(project) -> None:
    store, root = project
    with pytest.raises(ReviewError, match="version 7"):
        review.record(store, root, 7, "approve", reviewer="rita")
    assert store.count("reviews") == 0


def test_pending_run_until_a_decision(project) -> None:
    store, root = project
    assert review.status(store, 1) is None and review.pending_run(store, 1) is None
    review.mark_pending(store, 1, "run-123")
    assert review.pending_run(store, 1) == "run-123"
    assert review.status(store, 1)["decision"] == "pending"
    assert review.listing(store)[0]["review"] == "pending"
    review.record(store, root, 1, "approve", reviewer="rita", note="fine", flow_run_id="run-123")
    assert review.pending_run(store, 1) is None
    s = review.status(store, 1)
    assert s is not None
    assert (s["decision"], s["reviewer"], s["note"], s["flow_run_id"]) == ("approve", "rita", "fine", "run-123")
    assert review.listing(store)[0]["review"] == "approve"
    assert review.pending_run(store, 2) is None


# --- what consumers read ---


def test_event_payload(project) -> None:
    store, root = project
    folder = version_dir(root, 1)
    got = event_payload(folder, str(store.path))
    _, manifest = load_manifest(folder)
    assert set(got) == {
        "path",
        "db",
        "name",
        "version",
        "train_rows",
        "holdout_rows",
        "manifest_sha256",
        "content_hash",
    }
    assert got["path"] == str(folder.resolve()) and got["db"] == str(store.path.resolve())
    assert (got["name"], got["version"], got["content_hash"]) == (manifest.name, 1, manifest.content_hash)
    assert got["manifest_sha256"] == sha256_file(folder / "manifest.json")
    assert (got["train_rows"], got["holdout_rows"]) == (lines(folder, "train"), lines(folder, "holdout"))
    assert event_payload(root, None)["version"] == 1 and event_payload(root, None)["db"] is None  # via latest
    review.record(store, root, 1, "approve", reviewer="rita")
    assert event_payload(folder, None)["manifest_sha256"] == sha256_file(folder / "manifest.json")


# --- training_need ---


def add_training_run(store: Store, folder: Path, version: int, run_id: str) -> None:
    now = datetime.now(UTC)
    store.con.execute(
        "INSERT INTO training_runs (run_id, adapter_dir, dataset_path, dataset_version, manifest_sha256, "
        "base_model_id, base_model_hash, config_hash, device, steps, started_at, finished_at, run) "
        "VALUES (?, ?, ?, ?, ?, 'tiny', 'h', 'c', 'cpu', 3, ?, ?, '{}')",
        [run_id, f"/adapters/{run_id}", str(folder), version, sha256_file(folder / "manifest.json"), now, now],
    )


def test_training_need_without_training_runs(project) -> None:
    store, root = project
    folder = version_dir(root, 1)
    n = len(trace_ids(folder)["train"])
    need = training_need(store, folder, root, PipelineConfig(min_train_rows=n))
    assert need.train and need.train_rows == n and need.new_rows == n and need.last_trained_version is None
    need = training_need(store, folder, root, PipelineConfig(min_train_rows=n + 1))
    assert not need.train and "pipeline.min_train_rows" in need.reason and str(n + 1) in need.reason
    assert need.as_dict()["version"] == 1


def test_training_need_after_a_training_run(chain, tmp_path) -> None:
    db, root = copy_project(chain["home"], tmp_path / "p")
    v1, v2, v3 = (version_dir(root, v) for v in (1, 2, 3))
    k = len(set(trace_ids(v3)["train"]) - set(trace_ids(v1)["train"]))
    assert 0 < k <= N_MORE
    with Store(db) as store:
        add_training_run(store, v1, 1, "run-1")
        need = training_need(store, v1, root, PipelineConfig(min_train_rows=1))
        assert not need.train and need.reason == "version 1 is already trained" and need.last_trained_version == 1
        need = training_need(store, v2, root, PipelineConfig(min_train_rows=1))  # v1 minus one trace
        assert not need.train and need.new_rows == 0 and "pipeline.min_new_rows" in need.reason
        need = training_need(store, v3, root, PipelineConfig(min_train_rows=1, min_new_rows=k + 1))
        assert not need.train and need.new_rows == k and "pipeline.min_new_rows" in need.reason
        assert str(k + 1) in need.reason and "version 1" in need.reason
        need = training_need(store, v3, root, PipelineConfig(min_train_rows=1, min_new_rows=k))
        assert need.train and need.new_rows == k and need.last_trained_version == 1


def test_training_need_ignores_runs_on_another_dataset_root(chain, tmp_path) -> None:
    """A run on `dataset-old/v0003` says nothing about `dataset/v0003` (the roots share a prefix)."""
    db, root = copy_project(chain["home"], tmp_path / "p")
    other = root.parent / "dataset-old"
    shutil.copytree(root, other, symlinks=True)
    with Store(db) as store:
        add_training_run(store, version_dir(other, 3), 3, "run-other")
        need = training_need(store, version_dir(root, 3), root, PipelineConfig(min_train_rows=1))
    assert need.train and need.last_trained_version is None, need.reason


def test_review_against_a_store_that_did_not_curate_the_version_is_refused(first, tmp_path) -> None:
    """`tracetune review approve 1 --exclude ID` with the wrong --db: the exclusion would never be honoured."""
    root = copy_project(first, tmp_path / "p")[1]
    before = (version_dir(root, 1) / "manifest.json").read_bytes()
    known = trace_ids(version_dir(root, 1))["train"][0]
    with Store(tmp_path / "other.duckdb") as other:
        with pytest.raises(ReviewError, match="--db"):
            review.record(other, root, 1, "approve", reviewer="rita", exclude=[known])
        assert other.count("reviews") == 0 and other.count("review_exclusions") == 0
    assert (version_dir(root, 1) / "manifest.json").read_bytes() == before
