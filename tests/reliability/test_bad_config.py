"""Promise 6: bad configuration and arguments are rejected before work starts, or fail with one clear line naming
the key or path, and leave nothing half-written: unknown keys, wrong types, contradictory settings, settings only a
run can check, a missing base model, an unwritable output folder and a full disk."""

from __future__ import annotations

import errno
import json
import os
import resource
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from curation.store import Store
from schemas.config import ConfigError, load_config
from tests.conftest import TRACETUNE
from tests.helpers import distinct_logs, write_dataset, write_jsonl
from tests.test_train import tiny_base  # noqa: F401  (session fixture: the 2-layer model)
from tracetune.cli import app

BASE = "redact:\n  workers: 1\nsplit:\n  min_holdout: 2\n"


def one_line_error(res: Any, *names: str) -> None:
    """Exit 2, one line on stderr (besides progress lines) naming every one of `names`, no traceback."""
    lines = [line for line in res.stderr.strip().splitlines() if not line.startswith("curate: ")]
    assert res.exit_code == 2, res.output
    assert len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in res.stderr, res.stderr
    err = lines[0]
    for name in names:
        assert name in err, (name, err)


@pytest.mark.parametrize(
    ("yaml_text", "named"),
    [
        ("dedupe:\n  treshold: 0.9\n", "unknown key 'dedupe.treshold' (allowed here: lowercase"),
        ("train:\n  max_steps: ten\n", "train.max_steps: Input should be a valid integer"),
        ("redact:\n  entities: PERSON\n", "redact.entities: Input should be a valid list"),
        ("split:\n  holdout_fraction: 0\n", "split.holdout_fraction: Input should be greater than 0"),
        ("split:\n  min_holdout: 50\n  max_holdout: 5\n", "split: min_holdout (50) is above max_holdout (5)"),
        ("filter:\n  min_tokens: 500\n  max_tokens: 100\n", "filter: min_tokens (500) is above max_tokens (100)"),
        ("filter:\n  date_from: 2026-02-01T00:00:00Z\n  date_to: 2026-01-01T00:00:00Z\n", "filter: date_from"),
        ("filter:\n  languages: [english]\n", "filter: languages: 'english' is not an ISO 639-1 code"),
        ("redact:\n  custom_entities:\n    ORDER: '[NW-'\n", "redact: custom_entities.ORDER: '[NW-' is not a valid"),
        ("export:\n  name: ../../etc\n", "export.name: String should match pattern"),
        ("train:\n  quantization: 4bit\n  device: cpu\n", "train: quantization: 4bit (QLoRA) needs a CUDA GPU"),
        ("evaluate:\n  required_gains: {accuracy: 0.1}\n", "evaluate: unknown metric 'accuracy' (allowed: loss"),
        ("- just\n- a list\n", "the top level must be a mapping of sections"),
    ],
)
def test_config_errors_name_the_key(tmp_path, yaml_text: str, named: str) -> None:
    bad = tmp_path / "c.yaml"
    bad.write_text(yaml_text)
    with pytest.raises(ConfigError) as exc:
        load_config(bad)
    assert str(exc.value) == str(exc.value).strip() and "\n" not in str(exc.value)
    assert str(exc.value).startswith(f"{bad}: ") and named in str(exc.value)


def test_unreadable_config_files_are_config_errors(tmp_path) -> None:
    (tmp_path / "d.yaml").mkdir()
    (tmp_path / "b.yaml").write_bytes(b"\xff\xfe\x00ingest: 1\n")
    with pytest.raises(ConfigError, match=r"d\.yaml: cannot read the config file: Is a directory"):
        load_config(tmp_path / "d.yaml")
    with pytest.raises(ConfigError, match=r"b\.yaml: cannot read the config file: 'utf-8' codec"):
        load_config(tmp_path / "b.yaml")
    for args in (["rules"], ["config", "show"], ["train", "--dataset", str(tmp_path)]):
        one_line_error(CliRunner().invoke(app, [*args, "--config", str(tmp_path / "d.yaml")]), "d.yaml")


@pytest.fixture(scope="module")
def ingested(tmp_path_factory) -> Path:
    """A store with 24 distinct traces ingested, never curated (copied by each test that curates)."""
    tmp = tmp_path_factory.mktemp("bad-config")
    db = tmp / "t.duckdb"
    assert CliRunner().invoke(app, ["ingest", str(write_jsonl(tmp / "a.jsonl", distinct_logs(24))), "--db", str(db)])
    return db


def fresh(ingested: Path, tmp_path: Path, extra: str = "") -> tuple[Path, Path, Path]:
    """(db copy, config file, output folder) for one curate run."""
    db = tmp_path / "t.duckdb"
    shutil.copy(ingested, db)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(BASE + extra)
    return db, cfg, tmp_path / "ds"


def untouched(db: Path) -> bool:
    """No stage has worked on the store: no duplicate clusters, redactions or decisions."""
    with Store(db, read_only=True) as s:
        return s.count("dup_clusters") == s.count("redacted_messages") == s.count("decisions") == 0


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ("filter:\n  disabled: [no_such_rule]\n", "filter.disabled: unknown rule(s) no_such_rule"),
        ("filter:\n  tokenizer: /nonexistent/tok.json\n", "filter.tokenizer: /nonexistent/tok.json"),
        ("filter:\n  expect_json_schema: /nonexistent/s.json\n", "filter.expect_json_schema: /nonexistent/s.json"),
        ("split:\n  min_holdout: 9\n  max_holdout: 3\n", "split: min_holdout (9) is above max_holdout (3)"),
    ],
)
def test_curate_rejects_settings_before_any_stage(ingested, tmp_path, extra: str, named: str) -> None:
    db, cfg, out = fresh(ingested, tmp_path, extra)
    one_line_error(CliRunner().invoke(app, ["curate", "--db", str(db), "--config", str(cfg), "--out", str(out)]), named)
    assert untouched(db) and not out.exists()


def test_an_unknown_entity_type_is_one_line_naming_the_key(ingested, tmp_path) -> None:
    db, cfg, out = fresh(ingested, tmp_path)
    cfg.write_text("redact:\n  workers: 1\n  entities: [EMAIL_ADDRESS, NOT_AN_ENTITY]\n")
    res = CliRunner().invoke(app, ["curate", "--db", str(db), "--config", str(cfg), "--out", str(out)])
    one_line_error(res, "redact.entities: 'NOT_AN_ENTITY' is not an entity type", "redact.custom_entities")
    assert not out.exists()


@pytest.fixture
def read_only(tmp_path):
    """A folder nobody can write into: chmod for a user, the immutable attribute for root (who ignores modes)."""
    folder = tmp_path / "ro"
    folder.mkdir()
    if os.geteuid() == 0:
        if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(folder)]).returncode:
            pytest.skip("root without chattr +i cannot make a read-only folder here")
        yield folder
        subprocess.run(["chattr", "-i", str(folder)], check=True)
    else:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)


def test_unwritable_output_folder_fails_before_any_stage(ingested, tmp_path, read_only) -> None:
    db, cfg, _ = fresh(ingested, tmp_path)
    for out in (read_only, read_only / "ds", tmp_path / "c.yaml" / "ds"):  # read-only, inside it, under a file
        res = CliRunner().invoke(app, ["curate", "--db", str(db), "--config", str(cfg), "--out", str(out)])
        one_line_error(res, str(out), "the dataset folder is not writable")
    assert untouched(db) and os.listdir(read_only) == []


def test_a_full_disk_leaves_no_partial_version(ingested, tmp_path, monkeypatch) -> None:
    from curation import export

    db, cfg, out = fresh(ingested, tmp_path)
    args = ["curate", "--db", str(db), "--config", str(cfg), "--out", str(out), "--json"]
    assert CliRunner().invoke(app, args).exit_code == 0
    with Store(db) as s:  # a new trace arrives: the next run writes v0002
        from curation.ingest.run import ingest

        ingest(s, [write_jsonl(tmp_path / "b.jsonl", distinct_logs(3, prefix="new"))])
    real = export.write_file

    def full(folder: Path, name: str, data: bytes) -> Any:
        if name == "report.html":
            (folder / name).write_bytes(data[: len(data) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(folder / name))
        return real(folder, name, data)

    monkeypatch.setattr(export, "write_file", full)
    one_line_error(CliRunner().invoke(app, args), "No space left on device", "report.html")
    assert sorted(p.name for p in out.iterdir()) == ["latest", "v0001"] and os.readlink(out / "latest") == "v0001"
    with Store(db, read_only=True) as s:
        assert s.con.execute("SELECT list(version) FROM dataset_versions").fetchone()[0] == [1]


def test_a_file_size_limit_during_ingest_is_one_line_and_rolled_back(tmp_path) -> None:
    """A real write failure (RLIMIT_FSIZE in a subprocess): one line naming the database, nothing recorded."""
    src = write_jsonl(tmp_path / "a.jsonl", distinct_logs(40))
    db = tmp_path / "t.duckdb"

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))

    p = subprocess.run(
        [TRACETUNE, "ingest", str(src), "--db", str(db)], capture_output=True, text=True, preexec_fn=limit, timeout=120
    )
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "Traceback" not in p.stderr, p.stderr
    assert f"{db}: database write failed" in p.stderr and "File too large" in p.stderr
    res = CliRunner().invoke(app, ["ingest", str(src), "--db", str(db), "--json"])
    assert res.exit_code == 0 and json.loads(res.stdout)["accepted"] == 40  # nothing half-recorded


# ---- training arguments (the tiny model of tests/test_train.py; every case fails before the model loads) -------


def rows(n: int, words: int = 3) -> list[dict[str, Any]]:
    return [
        {"messages": [{"role": "user", "content": " ".join(["word"] * words)}, {"role": "assistant", "content": "ok"}]}
        for _ in range(n)
    ]


def train_yaml(tmp_path: Path, base: Path | str, **kw: Any) -> Path:
    import yaml

    p = tmp_path / "t.yaml"
    p.write_text(yaml.safe_dump({"train": {"base_model": str(base), "max_steps": 1, "threads": 1, **kw}}))
    return p


def test_training_arguments_fail_before_the_model_loads(tmp_path, read_only) -> None:
    data = write_dataset(tmp_path / "v0001", rows(4), rows(2))
    run = CliRunner().invoke
    missing = run(app, ["train", "--dataset", str(data), "--base", "/nonexistent/model", "--out", str(tmp_path / "a")])
    one_line_error(missing, "/nonexistent/model")
    qlora = run(
        app,
        [
            "train",
            "--dataset",
            str(data),
            "--config",
            str(train_yaml(tmp_path, "x", quantization="4bit", device="cpu")),
        ],
    )
    one_line_error(qlora, "t.yaml", "quantization: 4bit (QLoRA) needs a CUDA GPU")
    assert not (tmp_path / "a").exists() and not (data / "adapter").exists()


def test_max_length_below_the_prompt_and_unwritable_adapter_folder(tmp_path, tiny_base, read_only) -> None:  # noqa: F811
    tiny = tiny_base
    data = write_dataset(tmp_path / "v0001", rows(4, words=60), rows(2))
    run = CliRunner().invoke
    cut = run(
        app,
        [
            "train",
            "--dataset",
            str(data),
            "--config",
            str(train_yaml(tmp_path, tiny, max_length=16)),
            "--out",
            str(tmp_path / "a"),
        ],
    )
    one_line_error(cut, "train.jsonl: none of 4 rows has a trainable assistant token", "4 cut off by max_length")
    ok = write_dataset(tmp_path / "v0002", rows(4), rows(2))
    ro = run(
        app, ["train", "--dataset", str(ok), "--config", str(train_yaml(tmp_path, tiny)), "--out", str(read_only / "a")]
    )
    one_line_error(ro, str(read_only / "a"), "the adapter folder is not writable")
    assert not (tmp_path / "a").exists() and os.listdir(read_only) == []
