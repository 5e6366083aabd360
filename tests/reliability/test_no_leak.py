"""Promise 4 of the reliability suite, no leak: canary PII and secrets planted in every field a trace
can carry them in are absent from everything tracetune writes or shows.

The canaries are the entity types the redactor and the leak gate find by default (`schemas/config.py`
`RedactConfig.entities`): an e-mail, a phone number, a card number, an IBAN, a person's name, an OpenAI
key and an AWS key, with values of their own in each field, so a hit names the field it came from.

Input by design (not scanned): the trace files themselves, and the store's raw input tables `traces`,
`ingest_files` and the ingest rows of `quarantine` (the records as read, so a user can fix them), plus
`splits.group_key` (the session/user id the split groups by). Everything else is an output."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from curation.store import Store
from tests.helpers import VOCAB, chat_log, write_jsonl
from tests.test_train import tiny_base  # noqa: F401  (session fixture)

NAMES = [
    "Ingrid Halvorsen",
    "Tobias Wainwright",
    "Marisol Okonkwo",
    "Dagny Thorvaldsen",
    "Emeric Castellanos",
    "Lucinda Abernathy",
    "Oskar Lindqvist",
    "Priya Ramaswamy",
    "Beatrix Kowalczyk",
    "Anselm Fairweather",
    "Rosalind Achterberg",
    "Casimir Vandermeer",
    "Henrietta Oyelaran",
    "Leopold Drummond",
    "Sunniva Brightwater",
    "Thaddeus Kingsley",
    "Wilhelmina Strandberg",
    "Evander Holmgaard",
]
FIELDS = (
    "system_prompt",
    "user_text",
    "assistant_text",
    "tool_arguments",
    "tool_function_name",
    "tool_result",
    "tool_definition",
    "message_name",
    "metadata",
    "tags",
    "session_id",
    "user_id",
    "feedback_comment",
    "error_message",
    "source_file_name",
    "malformed_record",
    "bad_field_value",
    "record_id",
)
# rules that would drop every canary trace before export: off, so the canaries reach the export path
SETTINGS = (
    "ingest:\n  hash_source_ids: true\nredact:\n  workers: 1\n  leak_gate: {gate}\nsplit:\n  min_holdout: 0\n"
    "filter:\n  max_redacted_share: 0.9\n"
)


def _luhn(digits: str) -> str:
    total = 0
    for i, d in enumerate(reversed(digits)):
        n = int(d) * (2 if i % 2 == 0 else 1)
        total += n - 9 if n > 9 else n
    return digits + str((10 - total % 10) % 10)


def _iban(bank: str, account: str) -> str:
    bban = bank + account
    check = 98 - int("".join(str(int(c, 36)) for c in bban + "DE00")) % 97
    raw = f"DE{check:02d}{bban}"
    return " ".join(raw[i : i + 4] for i in range(0, len(raw), 4))


def canaries(k: int) -> dict[str, str]:
    """The canary values of field number `k`, by entity type."""
    card = _luhn(f"453914880343{k:03d}")
    return {
        "EMAIL_ADDRESS": f"nora.quist{k}@fjordmail.com",
        "PHONE_NUMBER": f"+44 20 7946 0{k:03d}",
        "CREDIT_CARD": " ".join(card[i : i + 4] for i in range(0, 16, 4)),
        "IBAN_CODE": _iban("37040044", f"{532013000 + k:010d}"),
        "PERSON": NAMES[k - 10],
        "SECRET_OPENAI": f"sk-proj-{k:02d}Zq8Lm3Xv9Rt2Wy6Pb4Nc7Hd5Jf1",
        "SECRET_AWS": f"AKIA{k:02d}QX7RZ2M4VN8LP3",
    }


CANARIES = {field: canaries(k) for k, field in enumerate(FIELDS, start=10)}


def sentence(field: str) -> str:
    c = CANARIES[field]
    return (
        f"My name is {c['PERSON']}, mail me at {c['EMAIL_ADDRESS']} or call {c['PHONE_NUMBER']}; card "
        f"{c['CREDIT_CARD']}, IBAN {c['IBAN_CODE']}, keys {c['SECRET_OPENAI']} and {c['SECRET_AWS']}."
    )


def needles() -> list[tuple[str, str, str]]:
    """(field, entity type, text) to look for: each value, digits without their spaces, surnames, e-mail users."""
    out = []
    for field, values in CANARIES.items():
        for entity, value in values.items():
            out.append((field, entity, value))
            if " " in value and entity != "PERSON":
                out.append((field, entity, value.replace(" ", "")))
        out.append((field, "PERSON", values["PERSON"].split()[-1]))
        out.append((field, "EMAIL_ADDRESS", values["EMAIL_ADDRESS"].split("@")[0]))
    return out


NEEDLES = needles()


def leaks(surfaces: dict[str, str]) -> list[str]:
    """`surface: field/entity` for every canary found in the text of a surface."""
    return sorted(
        {f"{name}: {field}/{entity}" for name, text in surfaces.items() for field, entity, n in NEEDLES if n in text}
    )


def assert_clean(surfaces: dict[str, str]) -> None:
    found = leaks(surfaces)
    assert not found, f"{len(found)} canaries found:\n" + "\n".join(found)


def _words(seed: int) -> str:
    return " ".join(VOCAB[(seed * 7 + i * 3) % len(VOCAB)] for i in range(12))


def write_traces(folder: Path) -> Path:
    """Trace files with a canary sentence in every field (one trace per group of fields)."""
    folder.mkdir()
    s = sentence
    system = {"role": "system", "content": "You are the support assistant of a bicycle shop."}
    recs: list[dict[str, Any]] = []

    def log(rid: str, messages: list[dict[str, Any]], answer: str | None, **kw: Any) -> dict[str, Any]:
        rec = chat_log(rid, messages, answer, created=1790000000 + len(recs), **kw)
        recs.append(rec)
        return rec

    log(
        s("record_id"),
        [{"role": "system", "content": s("system_prompt")}, {"role": "user", "content": _words(1)}],
        _words(2),
    )
    named = {"role": "user", "content": s("user_text"), "name": s("message_name")}
    log("user", [system, named], f"thanks, noted: {_words(3)}")
    log("asst", [system, {"role": "user", "content": _words(4)}], s("assistant_text"))
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": s("tool_function_name"), "arguments": json.dumps({"q": s("tool_arguments")})},
    }
    tool_turns = [
        system,
        {"role": "user", "content": f"look this up please: {_words(5)}"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": s("tool_result")},
    ]
    rec = log("tool", tool_turns, f"here is what the lookup says: {_words(6)}")
    rec["request"]["tools"] = [
        {
            "type": "function",
            "function": {"name": "lookup", "description": s("tool_definition"), "parameters": {"type": "object"}},
        }
    ]
    rec = log(
        "meta",
        [system, {"role": "user", "content": f"which saddle fits: {_words(7)}"}],
        _words(8),
        session=s("session_id"),
    )
    rec["request"]["user"] = s("user_id")
    rec |= {"metadata": {"note": s("metadata")}, "tags": ["support", s("tags")]}
    rec["feedback"] = [{"name": "thumbs", "value": 1, "comment": s("feedback_comment")}]
    failed = {"request": {"model": "gpt-4.1", "messages": [system, {"role": "user", "content": _words(9)}]}}
    recs.append(failed | {"error": {"message": s("error_message")}})
    bad = chat_log("bad", [system, {"role": s("bad_field_value"), "content": _words(10)}], _words(11))
    lines = [json.dumps(r) for r in [*recs, bad]] + [
        '{"request": {"messages": [{"role": "user", "content": "' + s("malformed_record")
    ]
    (folder / "traces.jsonl").write_text("\n".join(lines) + "\n")
    named_file = chat_log("file", [system, {"role": "user", "content": _words(12)}], _words(13), created=1790000100)
    c = CANARIES["source_file_name"]
    file_name = f"{c['PERSON']} mail {c['EMAIL_ADDRESS']} call {c['PHONE_NUMBER']} card {c['CREDIT_CARD']} iban "
    file_name += f"{c['IBAN_CODE']} keys {c['SECRET_OPENAI']} {c['SECRET_AWS']}"
    write_jsonl(folder / f"{file_name}.jsonl", [named_file])
    return folder


def read_tree(folder: Path) -> dict[str, str]:
    """Every file under `folder` (and the file names), as text, by relative path."""
    out = {}
    for p in sorted(folder.rglob("*")):
        rel = str(p.relative_to(folder.parent))
        out[f"name:{rel}"] = rel
        if p.is_file():
            out[rel] = p.read_bytes().decode("utf-8", "replace")
    return out


INPUT_TABLES = {"traces", "ingest_files", "schema_migrations"}


def output_tables(db: Path) -> dict[str, str]:
    """The text of every output table (all but the raw input), as JSON lines per table."""
    with Store(db, read_only=True) as store:
        names = [r[0] for r in store.con.execute("SELECT table_name FROM information_schema.tables").fetchall()]
        out = {}
        for name in sorted(set(names) - INPUT_TABLES):
            where = "WHERE stage <> 'ingest'" if name == "quarantine" else ""
            cols = [
                r[0]
                for r in store.con.execute(f"DESCRIBE {name}").fetchall()
                if not (name == "splits" and r[0] == "group_key")
            ]
            rows = store.con.execute(f"SELECT {', '.join(cols)} FROM {name} {where}").fetchall()
            out[f"table:{name}"] = "\n".join(json.dumps([str(v) for v in r]) for r in rows)
        return out


@pytest.fixture(scope="module")
def curated(tmp_path_factory) -> dict[str, Any]:
    """The canary traces ingested and curated with the tracetune CLI, leak gate off then on (one store)."""
    from tracetune.cli import app

    tmp = tmp_path_factory.mktemp("noleak")
    src = write_traces(tmp / "in")
    db = tmp / "t.duckdb"
    runner = CliRunner()
    shown: dict[str, str] = {}

    def cli(name: str, *args: str) -> Any:
        res = runner.invoke(app, list(args))
        shown[f"cli:{name}"] = res.stdout + res.stderr + (repr(res.exception) if res.exception else "")
        return res

    for gate in ("off", "quarantine"):
        (tmp / f"{gate}.yaml").write_text(SETTINGS.format(gate=gate))
    assert cli("ingest", "ingest", str(src), "--db", str(db), "--config", str(tmp / "off.yaml")).exit_code == 0
    cli("ingest-json", "ingest", str(src), "--db", str(db), "--json", "--config", str(tmp / "off.yaml"))
    runs = {}
    for gate in ("off", "quarantine"):
        cfg = tmp / f"{gate}.yaml"
        out = tmp / f"dataset-{gate}"
        res = cli(f"curate-{gate}", "curate", "--db", str(db), "--config", str(cfg), "--out", str(out), "--json")
        assert res.exit_code == 0, res.output
        runs[gate] = json.loads(res.stdout.splitlines()[0])
        cli(f"curate-{gate}-table", "curate", "--db", str(db), "--config", str(cfg), "--out", str(out))
    cli("quarantine", "quarantine", "--db", str(db))
    cli("quarantine-json", "quarantine", "--db", str(db), "--json")
    cli("rules", "rules", "--config", str(tmp / "off.yaml"))
    return {"tmp": tmp, "db": db, "src": src, "shown": shown, "runs": runs}


def test_canaries_are_planted_in_every_field(curated) -> None:
    """The canaries are in the input: every field's values are in the trace files or the raw store."""
    raw = "\n".join(p.name + p.read_text() for p in curated["src"].iterdir())
    assert all(v in raw for values in CANARIES.values() for v in values.values())
    with Store(curated["db"], read_only=True) as store:
        traces = store.con.execute("SELECT * FROM traces").fetchall()
        files = store.con.execute("SELECT path FROM ingest_files").fetchall()
        bad = store.con.execute("SELECT code, excerpt FROM quarantine WHERE stage = 'ingest'").fetchall()
    stored = json.dumps([[str(v) for v in r] for r in [*traces, *files]])
    per_field = {f: all(v in stored + str(bad) for v in CANARIES[f].values()) for f in FIELDS if f != "record_id"}
    assert all(per_field.values()), per_field  # the record id is stored hashed (ingest.hash_source_ids)
    assert sum(t[0].startswith("openai_chat:id:") for t in traces) == 6
    assert {c for c, _ in bad} == {"invalid_json", "unknown_role"}
    assert len(traces) == 7 and sum(len(v) for v in CANARIES.values()) == 126


@pytest.mark.parametrize("gate", ["off", "quarantine"])
def test_no_canary_in_the_dataset_versions(curated, gate: str) -> None:
    """train/holdout JSONL, manifest, dataset card, report.html/json and trace ids: redacted, the rest left out."""
    folder = curated["tmp"] / f"dataset-{gate}"
    files = read_tree(folder)
    assert {"v0001/train.jsonl", "v0001/manifest.json", "v0001/README.md", "v0001/report.html"} <= {
        k.split("/", 1)[1] for k in files if "/" in k and not k.startswith("name:")
    }
    assert_clean(files)
    rows = files[f"{folder.name}/v0001/train.jsonl"] + files[f"{folder.name}/v0001/holdout.jsonl"]
    assert len(rows.splitlines()) >= 4 and "<EMAIL_ADDRESS_1>" in rows and "<PERSON_1>" in rows
    assert curated["runs"][gate]["stages"]["leak_gate"]["detail"]["mode"] == gate


def test_no_canary_in_the_output_tables(curated) -> None:
    """The store's output tables: all but the raw input (see the module docstring)."""
    assert_clean(output_tables(curated["db"]))


def test_no_canary_in_the_cli_output(curated) -> None:
    """Every CLI command's output and errors: ingest, curate (table and --json), quarantine (table and --json)."""
    assert_clean(curated["shown"])
    shown = curated["shown"]["cli:quarantine-json"]
    assert "invalid_json" in shown and "unknown_role" in shown and "<EMAIL_ADDRESS" in shown


def test_no_group_id_in_a_leakage_error() -> None:
    """A train/holdout leakage error names the group without the session or user id it holds."""
    from curation.split import LeakageError, Member, check

    members = [Member(f"t{i}", session_id=sentence("session_id"), user_id=sentence("user_id")) for i in range(2)]
    with pytest.raises(LeakageError) as err:
        check(members, {"t0": "train", "t1": "holdout"}, None, {"t0": "holdout"})
    assert "t0" in str(err.value)
    assert_clean({"error": str(err.value)})


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_server")
def test_no_canary_in_prefect_artifacts_or_run_logs(tmp_path) -> None:
    """The curate flow's artifacts and its flow- and task-run logs (every level), read back from the API."""
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, LogFilter, LogFilterFlowRunId
    from prefect.settings import PREFECT_LOGGING_TO_API_ENABLED, temporary_settings

    from flows.curate import curate_flow

    src = write_traces(tmp_path / "in")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(SETTINGS.format(gate="quarantine"))
    logger = logging.getLogger("prefect")
    level = logger.level
    logger.setLevel(logging.DEBUG)
    try:
        with temporary_settings({PREFECT_LOGGING_TO_API_ENABLED: True}):
            state = curate_flow(
                [str(src)], str(tmp_path / "c.duckdb"), str(cfg), str(tmp_path / "ds"), return_state=True
            )
    finally:
        logger.setLevel(level)
    assert state.is_completed()
    run_id = state.state_details.flow_run_id

    async def read() -> dict[str, str]:
        async with get_client() as client:
            arts = await client.read_artifacts(
                artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]))
            )
            logs = await client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])))
            tasks = await client.read_task_runs()
            run = await client.read_flow_run(run_id)
        out = {f"artifact:{a.key}": json.dumps(a.data) + str(a.description) for a in arts}
        out["logs"] = "\n".join(f"{r.level} {r.message}" for r in logs)
        out["task-runs"] = "\n".join(f"{t.name} {t.state.message if t.state else ''}" for t in tasks)
        out["flow-run"] = f"{run.name} {run.state.message if run.state else ''}"
        return out

    surfaces = asyncio.run(read())
    assert {"artifact:curation-summary", "artifact:pii-entity-counts", "artifact:drop-reasons"} <= set(surfaces)
    assert "redact" in surfaces["logs"]
    assert_clean(surfaces)


@pytest.mark.slow
def test_no_canary_in_the_adapter_training_logs_or_eval_outputs(curated, tiny_base, capfd) -> None:  # noqa: F811
    """A tiny training run and evaluation on the curated version: adapter folder, logs and eval outputs."""
    from tests.test_train import cfg
    from training.evaluate import evaluate
    from training.sft import train

    dataset = curated["tmp"] / "dataset-quarantine" / "latest"
    out = curated["tmp"] / "adapter"
    config = cfg(tiny_base, max_steps=2, eval_steps=1, save_steps=1, max_length=256)
    res = train(dataset, out, config, db=curated["db"])
    evaluate(res.adapter_dir, dataset, config, out=out / "eval", db=curated["db"])
    logs = capfd.readouterr()
    surfaces = read_tree(out) | {"stdout": logs.out, "stderr": logs.err} | output_tables(curated["db"])
    assert {"adapter/training_run.json", "adapter/eval/eval.json", "adapter/eval/eval.html"} <= set(surfaces)
    assert_clean(surfaces)
