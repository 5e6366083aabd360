"""`tracetune adapters` (list, promote, rollback) and `tracetune review` (list, approve, reject) as a user runs
them: exit codes, one-line errors, `--json`, the `current` symlink and the manifest's review."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from curation.store import Store
from schemas.dataset import load_manifest, trace_ids, version_dir
from tests.test_cli import run
from tests.test_registry import NAME, add_eval, make_adapter


def one_error_line(p, *needles: str) -> None:
    assert p.returncode == 2, (p.stdout, p.stderr)
    assert "Traceback" not in p.stderr and p.stderr.strip().count("\n") == 0, p.stderr
    msg = " ".join(p.stderr.split())  # rich may wrap long paths; compare on collapsed whitespace
    for needle in needles:
        assert needle in msg, (needle, p.stderr)


# --- adapters -------------------------------------------------------------------------------------------------


@pytest.fixture
def reg(tmp_path: Path, monkeypatch):
    """(db, adapters root, a function `adapter(tag, verdict)` making an adapter folder, with an evaluation
    row when verdict is True/False). Tables print wide enough that no cell wraps."""
    monkeypatch.setenv("COLUMNS", "300")
    db, root = tmp_path / "r.duckdb", tmp_path / "adapters"
    Store(db).close()
    versions = iter(range(1, 100))

    def adapter(tag: str, verdict: bool | None = True) -> Path:
        d = make_adapter(root, tag, next(versions))
        if verdict is not None:
            with Store(db) as store:
                add_eval(store, d, verdict)
        return d

    return db, root, adapter


def adapters_cmd(db: Path, root: Path, *args: str):
    return run("adapters", *args, "--db", str(db), "--adapters", str(root))


def pointer(root: Path) -> Path | None:
    p = root / NAME / "current"
    return Path(os.readlink(p)) if p.is_symlink() else None


def test_list_on_an_empty_store_says_none_yet(reg):
    db, root, _ = reg
    p = adapters_cmd(db, root, "list")
    assert p.returncode == 0, p.stderr
    assert "none yet" in p.stdout
    assert json.loads(adapters_cmd(db, root, "list", "--json").stdout) == {"adapters": []}


def test_promote_needs_an_evaluation(reg):
    db, root, adapter = reg
    a = adapter("a", verdict=None)
    p = adapters_cmd(db, root, "promote", str(a))
    one_error_line(p, str(a), "no evaluation recorded", "tracetune evaluate --adapter")
    assert pointer(root) is None


def test_promote_rollback_and_list(reg):
    db, root, adapter = reg
    a, b = adapter("a"), adapter("b")
    p = adapters_cmd(db, root, "promote", str(a))
    assert p.returncode == 0, p.stderr
    assert f"{NAME}: current is now {a}" in " ".join(p.stdout.split()) and "previous: none" in p.stdout
    assert pointer(root) == a
    out = json.loads(adapters_cmd(db, root, "promote", str(b), "--json").stdout)
    assert {k: out[k] for k in ("name", "current", "previous", "changed")} == {
        "name": NAME,
        "current": str(b),
        "previous": str(a),
        "changed": True,
    }
    assert pointer(root) == b
    again = adapters_cmd(db, root, "promote", str(b))
    assert again.returncode == 0 and "already current" in again.stdout

    listed = json.loads(adapters_cmd(db, root, "list", "--json").stdout)["adapters"]
    assert [(r["adapter_dir"], r["current"], r["promote"]) for r in listed] == [
        (str(b), True, True),
        (str(a), False, True),
    ]
    table = adapters_cmd(db, root, "list")
    assert table.returncode == 0, table.stderr
    (row_b,) = [line for line in table.stdout.splitlines() if "v0002-b" in line]
    (row_a,) = [line for line in table.stdout.splitlines() if "v0001-a" in line]
    assert "│ current" in row_b and "│ current" not in row_a and "│ promote" in row_a

    back = adapters_cmd(db, root, "rollback", "--name", NAME)
    assert back.returncode == 0, back.stderr
    assert f"current is now {a}" in " ".join(back.stdout.split()) and pointer(root) == a
    one_error_line(adapters_cmd(db, root, "rollback", "--name", NAME), NAME, "nothing to roll back to")
    assert pointer(root) == a


def test_do_not_promote_verdict_and_force(reg):
    db, root, adapter = reg
    a, bad = adapter("a"), adapter("bad", verdict=False)
    assert adapters_cmd(db, root, "promote", str(a)).returncode == 0
    one_error_line(adapters_cmd(db, root, "promote", str(bad)), str(bad), "do not promote", "--force --reason")
    assert pointer(root) == a
    one_error_line(adapters_cmd(db, root, "promote", str(bad), "--force"), "--force needs a --reason")
    assert pointer(root) == a
    forced = json.loads(adapters_cmd(db, root, "promote", str(bad), "--force", "--reason", "x", "--json").stdout)
    assert forced["forced"] is True and forced["current"] == str(bad) and forced["previous"] == str(a)
    assert pointer(root) == bad
    rows = json.loads(adapters_cmd(db, root, "list", "--json").stdout)["adapters"]
    assert {Path(r["adapter_dir"]).name: r["promote"] for r in rows} == {"v0001-a": True, "v0002-bad": False}
    assert "do not promote" in " ".join(adapters_cmd(db, root, "list").stdout.split())


def test_adapters_dir_from_the_config(reg, tmp_path):
    db, root, adapter = reg
    a = adapter("a")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"pipeline:\n  adapters_dir: {json.dumps(str(root))}\n")
    p = run("adapters", "promote", str(a), "--db", str(db), "--config", str(cfg))
    assert p.returncode == 0, p.stderr
    assert pointer(root) == a
    listed = json.loads(run("adapters", "list", "--db", str(db), "--config", str(cfg), "--json").stdout)
    assert listed["adapters"][0]["current"] is True
    # --adapters wins over the config: another root has no pointer, so nothing is current there
    other = tmp_path / "elsewhere"
    p = run("adapters", "list", "--db", str(db), "--config", str(cfg), "--adapters", str(other), "--json")
    assert json.loads(p.stdout)["adapters"][0]["current"] is False


# --- review ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def curated(tmp_path_factory) -> Path:
    """A project folder: 20 distinct traces ingested and curated into v1 (store closed)."""
    from curation import curate
    from curation.ingest.run import ingest
    from schemas.config import Config
    from tests.helpers import distinct_logs, write_jsonl

    tmp = tmp_path_factory.mktemp("cli-review")
    cfg = Config.model_validate({"redact": {"workers": 1}, "split": {"min_holdout": 3}})
    with Store(tmp / "t.duckdb") as store:
        ingest(store, [write_jsonl(tmp / "one.jsonl", distinct_logs(20, "r"))])
        assert curate.run(store, cfg, tmp / "dataset")["dataset"]["version"] == 1
    return tmp


@pytest.fixture
def project(curated, tmp_path, monkeypatch) -> tuple[Path, Path]:
    """A private copy (db, dataset root); the subprocesses see no Prefect server."""
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    shutil.copytree(curated, tmp_path / "p", symlinks=True)
    return tmp_path / "p" / "t.duckdb", tmp_path / "p" / "dataset"


def review_cmd(db: Path, out: Path, *args: str):
    return run("review", *args, "--db", str(db), "--out", str(out))


def test_approve_with_an_exclusion(project):
    db, out = project
    tid = trace_ids(version_dir(out, 1))["train"][0]
    p = review_cmd(db, out, "approve", "1", "--exclude", tid, "--note", "n", "--reviewer", "ann")
    assert p.returncode == 0, p.stderr
    assert "dataset v1: approve by ann, 1 trace(s) excluded" in " ".join(p.stdout.split())
    _, manifest = load_manifest(version_dir(out, 1), verify=True)  # file checksums still hold
    assert manifest.review is not None
    assert (manifest.review.decision, manifest.review.reviewer, manifest.review.note) == ("approve", "ann", "n")
    assert manifest.review.excluded == [tid]
    listed = run("review", "list", "--db", str(db))
    assert listed.returncode == 0 and "approve" in listed.stdout and "ann" in listed.stdout
    (v1,) = json.loads(run("review", "list", "--db", str(db), "--json").stdout)["versions"]
    assert (v1["version"], v1["review"], v1["reviewer"], v1["note"]) == (1, "approve", "ann", "n")


def test_json_output_and_reject(project):
    db, out = project
    done = json.loads(review_cmd(db, out, "reject", "1", "--note", "too few", "--reviewer", "bo", "--json").stdout)
    assert done["version"] == 1 and done["decision"] == "reject" and done["reviewer"] == "bo"
    assert done["resumed"] is None and done["event"] is None and done["excluded"] == []
    assert load_manifest(version_dir(out, 1), verify=False)[1].review.decision == "reject"
    (v1,) = json.loads(run("review", "list", "--db", str(db), "--json").stdout)["versions"]
    assert (v1["review"], v1["reviewer"]) == ("reject", "bo")
    plain = review_cmd(db, out, "reject", "1", "--reviewer", "bo")
    assert plain.returncode == 0 and "dataset v1: reject by bo" in plain.stdout


def test_a_waiting_run_is_not_resumed_silently_without_prefect(project):
    from curation import review

    db, out = project
    with Store(db) as store:
        review.mark_pending(store, 1, "0b9f-run")
    assert json.loads(run("review", "list", "--db", str(db), "--json").stdout)["versions"][0]["review"] == "pending"
    p = review_cmd(db, out, "approve", "1", "--reviewer", "ann", "--json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["resumed"] is None
    assert "0b9f-run" in p.stderr and "not resumed" in p.stderr and "PREFECT_API_URL" in p.stderr
    assert json.loads(run("review", "list", "--db", str(db), "--json").stdout)["versions"][0]["review"] == "approve"


def test_review_errors_are_one_line(project, tmp_path):
    db, out = project
    one_error_line(review_cmd(db, out, "approve", "1", "--exclude", "no-such-trace"), "no-such-trace", "no row")
    one_error_line(review_cmd(db, out, "approve", "9"), "dataset version 9")
    other = tmp_path / "other.duckdb"
    Store(other).close()
    one_error_line(review_cmd(other, out, "approve", "1"), "was not curated into", "pass the --db")
    assert load_manifest(version_dir(out, 1), verify=False)[1].review is None  # nothing was recorded
    assert json.loads(run("review", "list", "--db", str(db), "--json").stdout)["versions"][0]["review"] is None


def test_help_explains():
    for group, words in (("review", ("approve", "reject", "Exclusions")), ("adapters", ("promote", "rollback"))):
        p = run(group, "--help")
        assert p.returncode == 0, p.stderr
        for w in words:
            assert w in p.stdout
