"""A new user's first run: the shipped defaults on traces unlike the sample app's, the starter config,
the leak gate that quarantines instead of halting, and the CLI's answers to a first try."""

from __future__ import annotations

import json

import orjson
import yaml

from curation import curate
from curation.ingest.run import ingest
from schemas.config import Config, RedactConfig, config_hash, load_config
from schemas.starter import starter_yaml
from tests.conftest import rows
from tests.helpers import DEMO_CONFIG, chat_log, convo, write_jsonl
from tests.test_cli import run
from tests.varied import write_varied


def fast(cfg: Config) -> Config:
    cfg.redact.workers = 1
    return cfg


def test_defaults_are_the_schema_and_carry_nothing_of_the_sample_app():
    cfg = load_config()
    assert cfg == Config()
    assert cfg.filter.expect_json_schema is None and cfg.filter.languages == []
    assert cfg.export.system_prompt == "keep" and cfg.export.system_prompt_text is None
    assert cfg.redact.custom_entities == {} and cfg.redact.allowlist == []
    assert cfg.redact.leak_gate == "quarantine"
    demo = load_config(DEMO_CONFIG)
    assert demo.export.system_prompt == "replace" and "ORDER_ID" in demo.redact.custom_entities


def test_init_writes_a_commented_config_that_loads_to_the_defaults(tmp_path):
    p = run("init", str(tmp_path / "tt.yaml"))
    assert p.returncode == 0, p.stderr
    text = (tmp_path / "tt.yaml").read_text()
    assert text == starter_yaml()
    assert load_config(tmp_path / "tt.yaml") == Config()
    assert config_hash(load_config(tmp_path / "tt.yaml")) == config_hash(Config())
    # every key of every section is written with its description
    for section, model in Config.model_fields.items():
        for key, field in model.annotation.model_fields.items():  # type: ignore[union-attr]
            assert f"  {key}:" in text, f"{section}.{key} missing"
            assert field.description is None or field.description in text
    # the recipes are comments, and each one is a valid config once uncommented
    recipes = [b for b in text.split("# Recipes", 1)[1].split("\n#\n") if "#   " in b]
    assert len(recipes) >= 5
    for block in recipes:
        body = "\n".join(line[4:] for line in block.splitlines() if line.startswith("#   "))
        Config.model_validate(yaml.safe_load(body))
    again = run("init", str(tmp_path / "tt.yaml"))
    assert again.returncode == 2 and "--force" in again.stderr


def test_config_show_prints_the_effective_config_and_its_hash(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("filter:\n  languages: [fr]\nredact:\n  leak_gate: true\n")
    p = run("config", "show", "--config", str(cfg), "--json")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["config"]["filter"]["languages"] == ["fr"]
    assert out["config"]["redact"]["leak_gate"] == "fail"  # older configs' `true` meant: stop the run
    assert out["config_hash"] == config_hash(load_config(cfg))
    shown = run("config", "show")
    assert shown.returncode == 0 and f"config_hash {config_hash(Config())}" in shown.stdout
    assert yaml.safe_load(shown.stdout) == Config().model_dump(mode="json")
    cfg.write_text("redact:\n  leak_gate: maybe\n")
    bad = run("config", "show", "--config", str(cfg))
    assert bad.returncode == 2 and "redact.leak_gate" in bad.stderr


def test_rules_print_the_values_that_run(tmp_path):
    p = run("rules", "--json")
    keys = {r["rule"]: r["keys"] for r in json.loads(p.stdout)["rules"]}
    assert keys["language"]["languages"] == [] and keys["json_schema"]["expect_json_schema"] is None
    cfg = tmp_path / "c.yaml"
    cfg.write_text("filter:\n  languages: [de]\n")
    keys = {r["rule"]: r["keys"] for r in json.loads(run("rules", "--config", str(cfg), "--json").stdout)["rules"]}
    assert keys["language"]["languages"] == ["de"]


def test_the_defaults_keep_varied_traces_with_their_own_system_prompts(store, tmp_path):
    prompts = write_varied(tmp_path / "in")
    stats = ingest(store, [str(tmp_path / "in")])
    assert stats.quarantined == 0 and stats.accepted == 14
    summary = curate.run(store, fast(Config()), tmp_path / "ds")
    assert summary["stages"]["filter"]["dropped"] == {} and summary["stages"]["export"]["dropped"] == {}
    assert summary["train"] + summary["holdout"] == 14
    rows_out = [
        orjson.loads(line)
        for side in ("train", "holdout")
        for line in (tmp_path / "ds" / "latest" / f"{side}.jsonl").read_bytes().splitlines()
    ]
    for row in rows_out:
        user = next(m["content"] for m in row["messages"] if m["role"] == "user")
        system = row["messages"][0]
        assert system["role"] == "system"
        expected = [p for key, p in prompts.items() if key in user]
        assert expected and system["content"] == expected[0], user
    agents = [r for r in rows_out if r.get("tools")]
    assert len(agents) == 6 and all(any(m.get("tool_calls") for m in r["messages"]) for r in agents)
    texts = " ".join(m.get("content") or "" for r in rows_out for m in r["messages"])
    assert "小火慢炖" in texts and "taux variable" in texts  # the answers, not only the prompts
    assert "Frost on the iron rail" in texts


def planted(tmp_path):
    """Three traces, one with a card number that the configured redactor does not look for."""
    recs = [
        chat_log(
            "ok-1", convo("How do I reset the password of my account on the app?"), "Open Settings, then Security."
        ),
        chat_log("ok-2", convo("Which plan includes priority support for a team of five?"), "The Team plan does."),
        chat_log("card", convo("Please charge my card 4539 1488 0343 6467 for the order."), "Done, it is charged."),
    ]
    return write_jsonl(tmp_path / "planted.jsonl", recs)


def test_leak_gate_quarantines_a_miss_and_the_run_writes_a_dataset(store, tmp_path):
    ingest(store, [str(planted(tmp_path))])
    cfg = fast(Config(redact=RedactConfig(entities=["PERSON", "EMAIL_ADDRESS"])))  # cards are not redacted
    cfg.split.min_holdout = 0
    summary = curate.run(store, cfg, tmp_path / "ds")
    gate = summary["stages"]["leak_gate"]["detail"]
    assert gate["mode"] == "quarantine" and gate["leaks"] == 1
    assert gate["listed"] == [{"trace_id": "openai_chat:card", "types": ["CREDIT_CARD"]}]
    assert rows(store, "SELECT stage, reason FROM decisions WHERE trace_id = 'openai_chat:card'") == [
        ("leak_gate", "CREDIT_CARD")
    ]
    (code, message) = rows(store, "SELECT code, message FROM quarantine WHERE stage = 'leak_gate'")[0]
    assert code == "CREDIT_CARD" and "messages[1].content" in message and "4539" not in message
    exported = b"".join((tmp_path / "ds" / "latest" / f).read_bytes() for f in ("train.jsonl", "holdout.jsonl"))
    assert b"4539" not in exported and summary["train"] + summary["holdout"] == 2
    manifest = json.loads((tmp_path / "ds" / "latest" / "manifest.json").read_text())
    assert manifest["reasons"]["leak_gate"] == {"CREDIT_CARD": 1}
    report = (tmp_path / "ds" / "latest" / "report.html").read_text()
    assert "openai_chat:card" in report and "4539" not in report
    # the redactor fixed: the trace comes back, nothing stays quarantined
    again = curate.run(store, fast(Config()), tmp_path / "ds")
    assert again["stages"]["leak_gate"]["detail"]["leaks"] == 0 and again["train"] + again["holdout"] == 3
    assert rows(store, "SELECT count(*) FROM quarantine WHERE stage = 'leak_gate'") == [(0,)]


def test_cli_leak_gate_warns_and_exits_0_and_fail_mode_exits_3(tmp_path):
    db = str(tmp_path / "c.duckdb")
    assert run("ingest", str(planted(tmp_path)), "--db", db).returncode == 0
    cfg = tmp_path / "c.yaml"
    cfg.write_text("redact:\n  entities: [PERSON]\n  workers: 1\nsplit:\n  min_holdout: 0\n")
    p = run("curate", "--db", db, "--config", str(cfg), "--out", str(tmp_path / "ds"))
    assert p.returncode == 0, p.stderr
    assert "warning" in p.stderr and "openai_chat:card: CREDIT_CARD" in p.stderr and "4539" not in p.stderr + p.stdout
    assert "CREDIT_CARD 1" in p.stdout and "new version 1" in p.stdout
    cfg.write_text("redact:\n  entities: [PERSON]\n  workers: 1\n  leak_gate: fail\n")
    failed = run("curate", "--db", db, "--config", str(cfg), "--out", str(tmp_path / "ds"))
    assert failed.returncode == 3 and "openai_chat:card: CREDIT_CARD" in failed.stderr
    assert "4539" not in failed.stderr


def test_curate_on_an_empty_store_says_how_to_ingest(tmp_path):
    p = run("curate", "--db", str(tmp_path / "e.duckdb"), "--out", str(tmp_path / "ds"))
    assert p.returncode == 2 and "no traces to curate" in p.stderr and "tracetune ingest" in p.stderr
    assert not (tmp_path / "ds").exists()


def test_quarantine_lists_file_name_and_line_first(tmp_path):
    deep = tmp_path / ("a-very-long-folder-name-" * 4) / "nested"
    deep.mkdir(parents=True)
    bad = deep / "my_traces_2026-11-30.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": "hi"}]}\nnot json\n')
    db = str(tmp_path / "q.duckdb")
    run("ingest", str(bad), "--db", db)
    p = run("quarantine", "--db", db, cwd=tmp_path)
    assert p.returncode == 0
    first = next(line for line in p.stdout.splitlines() if "my_traces" in line)
    assert "my_traces_2026-11-30.jsonl:2" in first.replace(" ", "") and "invalid_json" in first
    lines = [json.loads(x) for x in run("quarantine", "--db", db, "--json").stdout.splitlines()]
    assert any(r["source_file"] == str(bad) and r["source_line"] == 2 for r in lines)


def test_hashed_source_ids_hide_record_ids_and_stay_stable(tmp_path):
    """ingest.hash_source_ids: every format's `<format>:<record id>` trace id becomes `<format>:id:<sha256>`
    (the same record gets the same id again), ids of records without one stay `<format>:sha:`."""
    import hashlib

    from curation.store import Store
    from schemas.config import IngestConfig
    from tests.conftest import FIXTURES

    ids = {}
    for hashed in (False, True):
        with Store(tmp_path / f"{hashed}.duckdb") as store:
            ingest(store, [FIXTURES / "formats"], config=IngestConfig(hash_source_ids=hashed))
            ids[hashed] = sorted(r[0] for r in rows(store, "SELECT trace_id FROM traces"))

    def expected(tid: str) -> str:
        fmt, _, source = tid.partition(":")
        return tid if source.startswith("sha:") else f"{fmt}:id:{hashlib.sha256(source.encode()).hexdigest()[:24]}"

    assert len(ids[True]) == len(ids[False]) == 18
    assert ids[True] == sorted(map(expected, ids[False])) and ids[True] != ids[False]
    email = chat_log("user-jane.doe@acme.com-42", convo("Which plan has priority support?"), "The Team plan.")
    with Store(tmp_path / "True.duckdb") as store:
        first = ingest(store, [write_jsonl(tmp_path / "a.jsonl", [email])], config=IngestConfig(hash_source_ids=True))
        other = chat_log("other-7", convo("Can I pay yearly?"), "Yes, with two months free.")
        again = ingest(
            store, [write_jsonl(tmp_path / "b.jsonl", [email, other])], config=IngestConfig(hash_source_ids=True)
        )
        assert (first.accepted, again.accepted, again.already_present) == (1, 1, 1)
        assert not rows(store, "SELECT trace_id FROM traces WHERE trace_id LIKE '%jane%'")
