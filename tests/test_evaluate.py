"""Evaluation: metrics on hand-made cases, the bootstrap on known answers, the paired comparison on a tiny model,
bad input, the eval page in headless Chromium, CLI and flow."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from schemas.config import REFUSAL_PATTERNS, Config
from schemas.evaluation import EvalConfig
from schemas.runs import EvalRun
from schemas.training import TrainConfig
from tests.helpers import write_dataset
from tests.test_train import WORDS, tiny_base  # noqa: F401  (session fixture)

FIXED = {"status": "ok", "team": "billing"}
FIXED_TEXT = json.dumps(FIXED)
SCHEMA = {
    "type": "object",
    "required": ["status", "team"],
    "properties": {"status": {"enum": ["ok", "error"]}, "team": {"type": "string"}},
}
HOSTILE = "<script>window.__xss = 1</script><img src=x onerror=alert(1)>"


def json_rows(n: int, offset: int = 0, hostile: bool = False) -> list[dict[str, Any]]:
    """Every answer is the same JSON object: a behaviour a LoRA learns in a few steps."""
    rows = []
    for i in range(n):
        w = WORDS[(i + offset) % len(WORDS)]
        user = f"word: {w}" + (f" {HOSTILE}" if hostile and i == 0 else "")
        rows.append(
            {
                "messages": [
                    {"role": "system", "content": "Reply with the ticket."},
                    {"role": "user", "content": user},
                    {"role": "assistant", "content": FIXED_TEXT},
                ]
            }
        )
    return rows


def eval_cfg(base: Path, **kw: Any) -> Config:
    ec = {"max_new_tokens": 32, "batch_size": 4, "bootstrap_samples": 1000, "threads": 1, "min_examples": 5, **kw}
    tc = {
        "base_model": str(base),
        "learning_rate": 2e-2,
        "batch_size": 8,
        "max_steps": 30,
        "logging_steps": 10,
        "lora_r": 8,
        "lora_dropout": 0.0,
        "max_length": 128,
        "threads": 1,
    }
    return Config(train=TrainConfig(**tc), evaluate=EvalConfig(**ec))


@pytest.fixture(scope="module")
def adapter(tiny_base, tmp_path_factory):  # noqa: F811
    """A LoRA adapter trained on the tiny model to always answer with the fixed JSON."""
    from training.sft import train

    tmp = tmp_path_factory.mktemp("eval-train")
    data = write_dataset(tmp / "v0001", json_rows(48), json_rows(4, offset=5), schema=SCHEMA)
    return train(data, tmp / "adapter", eval_cfg(tiny_base)).adapter_dir


@pytest.fixture(scope="module")
def evaluated(adapter, tiny_base, tmp_path_factory):  # noqa: F811
    from curation.store import Store
    from training.evaluate import evaluate

    tmp = tmp_path_factory.mktemp("eval-run")
    data = write_dataset(tmp / "v0002", [], json_rows(12, offset=3, hostile=True), schema=SCHEMA)
    db = tmp / "t.duckdb"
    Store(db).close()
    return evaluate(adapter, data, eval_cfg(tiny_base), out=tmp / "eval", db=db), data, db


# ---- metrics on hand-made cases ----------------------------------------------------------------------------------


def test_json_metrics() -> None:
    from training.metrics import field_accuracy, parse_json, schema_valid

    assert parse_json(' {"a": 1} ') == {"a": 1}
    assert parse_json('```json\n{"a": 1}\n```') == {"a": 1}
    assert parse_json('Sure! {"a": 1}') is None and parse_json("{'a': 1}") is None and parse_json("42") is None
    assert schema_valid({"status": "ok", "team": "x"}, SCHEMA)
    assert not schema_valid({"status": "maybe", "team": "x"}, SCHEMA) and not schema_valid({"status": "ok"}, SCHEMA)
    assert schema_valid({"anything": 1}, None) and not schema_valid(None, None)
    ref = {"priority": "high", "category": "billing", "order_id": None, "summary": "Refund  please"}
    assert field_accuracy(ref, ref) == 1.0
    assert field_accuracy({"priority": "HIGH", "category": "shipping", "summary": "refund please"}, ref) == 0.5
    assert field_accuracy(None, ref) == 0.0 and field_accuracy([1], ref) == 0.0
    assert field_accuracy({"n": 2}, {"n": 2.0}) == 1.0


def test_text_metrics() -> None:
    from training.metrics import exact_match, is_refusal, lcs_length, rouge_l, score_answer

    assert lcs_length("abcbdab", "bdcaba") == 4
    assert rouge_l("a b c d", "a c d e") == pytest.approx(0.75)
    assert rouge_l("the cat", "the cat") == 1.0 and rouge_l("dog", "the cat") == 0.0 and rouge_l("", "") == 1.0
    assert exact_match(" yes ", "yes") and exact_match('{"b": 2, "a": 1}', '{"a":1,"b":2}')
    assert not exact_match("yes.", "yes")
    pats = [re.compile(p, re.I) for p in REFUSAL_PATTERNS]
    assert is_refusal("I'm sorry, but I can't help with that.", pats) and not is_refusal("Refund issued.", pats)
    plain = score_answer("Hello there", "Hello", None, pats)
    assert plain["json_parse"] is None and plain["field_accuracy"] is None and plain["exact_match"] == 0.0
    assert plain["length_ratio"] == pytest.approx(11 / 5)
    js = score_answer("not json", FIXED_TEXT, SCHEMA, pats)
    assert js["json_parse"] == 0.0 and js["schema_valid"] == 0.0 and js["field_accuracy"] == 0.0
    good = score_answer(FIXED_TEXT, FIXED_TEXT, SCHEMA, pats)
    assert good == {**good, "json_parse": 1.0, "schema_valid": 1.0, "field_accuracy": 1.0, "exact_match": 1.0}


# ---- statistics --------------------------------------------------------------------------------------------------


def test_bootstrap_known_answers() -> None:
    from training.metrics import paired_bootstrap

    base = np.linspace(0, 1, 50)
    const = paired_bootstrap(base, base + 0.25, samples=500)
    assert const["n"] == 50 and const["diff"] == pytest.approx(0.25) and const["ci"] == pytest.approx([0.25, 0.25])
    rng = np.random.default_rng(1)
    b = rng.normal(0, 1, 400)
    a = b + 0.5 + rng.normal(0, 1, 400)  # paired differences ~ N(0.5, 1): half-width 1.96 / sqrt(400) = 0.098
    r = paired_bootstrap(b, a, samples=4000, seed=3)
    lo, hi = r["ci"]
    assert lo < 0.5 < hi and hi - lo == pytest.approx(2 * 1.96 / 20, rel=0.2)
    assert lo < r["diff"] < hi
    same = paired_bootstrap(b, b.copy(), samples=500)
    assert same["ci"] == [0.0, 0.0]
    # weighted mean (token-weighted loss) and a transform (perplexity)
    w = paired_bootstrap([2.0, 6.0], [1.0, 3.0], weights=[1, 3], samples=200, transform=np.exp)
    assert w["base"] == pytest.approx(np.exp(2.0)) and w["adapter"] == pytest.approx(np.exp(1.0))
    assert paired_bootstrap([], [])["diff"] is None


def test_verdict_rules() -> None:
    from training.metrics import verdict

    def m(b: float, a: float, lo: float, hi: float, n: int = 40) -> dict[str, Any]:
        return {"n": n, "base": b, "adapter": a, "diff": a - b, "ci": [lo, hi]}

    ec = EvalConfig(required_gains={"json_parse": 0.1}, min_examples=10)
    good = verdict({"json_parse": m(0.0, 0.9, 0.8, 1.0), "rouge_l": m(0.2, 0.5, 0.2, 0.4)}, ec)
    assert good["promote"] and all(c["passed"] for c in good["checks"])
    not_sig = verdict({"json_parse": m(0.0, 0.2, -0.05, 0.4)}, ec)
    assert not not_sig["promote"] and "interval includes 0" in not_sig["reasons"][0]
    small = verdict({"json_parse": m(0.0, 0.9, 0.8, 1.0, n=4)}, ec)
    assert not small["promote"] and small["reasons"][0].startswith("min_examples")
    regress = verdict({"json_parse": m(0.0, 0.9, 0.8, 1.0), "refusal": m(0.0, 0.3, 0.1, 0.5)}, ec)
    assert not regress["promote"] and regress["reasons"] == [r for r in regress["reasons"] if "regression:refusal" in r]
    lower_better = verdict({"json_parse": m(0.0, 0.9, 0.8, 1.0), "loss": m(2.0, 1.0, -1.2, -0.8)}, ec)
    assert lower_better["promote"]
    unmeasured = {"n": 0, "base": None, "adapter": None, "diff": None, "ci": [None, None]}
    skipped = verdict({"json_parse": unmeasured, "rouge_l": m(0.2, 0.5, 0.2, 0.4)}, EvalConfig(min_examples=1))
    assert any(c["passed"] is None for c in skipped["checks"])
    with pytest.raises(ValueError, match="unknown metric 'bleu'"):
        EvalConfig(required_gains={"bleu": 0.1})


# ---- the paired comparison on a tiny model ------------------------------------------------------------------------


def test_adapter_beats_base_with_an_interval_excluding_zero(evaluated) -> None:
    result, _, db = evaluated
    r = result.report.model_dump(mode="json")
    m = r["metrics"]
    assert r["n"] == 12 and all(m[k]["n"] == 12 for k in ("json_parse", "field_accuracy", "exact_match"))
    assert m["json_parse"]["adapter"] >= 0.9 and m["json_parse"]["base"] <= 0.1
    for k in ("json_parse", "schema_valid", "field_accuracy", "exact_match"):
        assert m[k]["ci"][0] > 0, (k, m[k])
    assert m["loss"]["adapter"] < m["loss"]["base"] and m["loss"]["ci"][1] < 0
    assert m["token_accuracy"]["diff"] > 0 and m["perplexity"]["diff"] < 0
    assert r["verdict"]["promote"], r["verdict"]
    assert r["outcomes"]["won"] >= 10
    lin = r["lineage"]
    assert lin["overlap_check"] == "trace_ids" and lin["dataset"]["version"] == 1
    trained = json.loads(Path(lin["adapter"]["path"], "training_run.json").read_text())
    assert lin["base_model"]["hash"] == trained["base_model"]["hash"]
    on_disk = EvalRun.read(result.out_dir / "eval.json")
    assert on_disk == result.report and len(on_disk.examples) == 12
    timing = result.report.timing
    assert timing.seconds_per_example and timing.peak_rss_mb and timing.generated_tokens > 0
    from curation.store import Store

    with Store(db) as store:
        row = store.con.execute("SELECT n, promote, adapter_json_parse, dataset_version FROM eval_runs").fetchall()
    assert row == [(12, True, m["json_parse"]["adapter"], 1)]


def test_teacher_forced_matches_the_training_loss_and_batching_keeps_outputs(adapter, tiny_base) -> None:  # noqa: F811
    """The loss is the model's own loss on the training labels; batched greedy answers equal one-by-one ones."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from training.chat import encode_row, prompt_text
    from training.generation import generate, generate_one_by_one, teacher_forced
    from training.model import load_tokenizer

    tok = load_tokenizer(tiny_base)
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(str(tiny_base)), str(adapter)).eval()
    rows = json_rows(5, offset=1)
    rows[2]["messages"][1]["content"] += " with a much longer question so that padding is needed"
    tf = teacher_forced(model, tok, rows, 128, batch_size=3)
    e = encode_row(tok, rows[2], 128)
    with torch.no_grad():
        ref = model(input_ids=torch.tensor([e.input_ids]), labels=torch.tensor([e.labels])).loss
    assert tf[2]["loss_sum"] / tf[2]["tokens"] == pytest.approx(float(ref), rel=1e-4)
    assert tf[2]["tokens"] == e.trainable  # every trainable token is predicted from its left neighbour
    prompts = [prompt_text(tok, r)[0] for r in rows]
    with model.disable_adapter():
        batched = generate(model, tok, prompts, 16, batch_size=5)
        single = generate_one_by_one(model, tok, prompts, 16)
    assert [x["text"] for x in batched] == [x["text"] for x in single]
    assert [x["text"] for x in generate(model, tok, prompts, 16, batch_size=2)] == [
        x["text"] for x in generate_one_by_one(model, tok, prompts, 16)
    ]


# ---- bad input ---------------------------------------------------------------------------------------------------


def test_bad_inputs_fail_before_generation(adapter, tiny_base, tmp_path) -> None:  # noqa: F811
    from training.evaluate import EvalError, evaluate

    c = eval_cfg(tiny_base)
    good = write_dataset(tmp_path / "good", [], json_rows(6))
    other = tmp_path / "other-base-adapter"
    shutil.copytree(adapter, other)
    run = json.loads((other / "training_run.json").read_text())
    run["base_model"] = {"id": "some/other-model", "hash": "deadbeef" * 8, "path": "/models/other"}
    (other / "training_run.json").write_text(json.dumps(run))
    with pytest.raises(EvalError, match="trained on base model some/other-model"):
        evaluate(other, good, c, out=tmp_path / "o1")
    (other / "training_run.json").write_text(json.dumps({**run, "steps": "many"}))
    with pytest.raises(EvalError, match=r"training_run.json: field steps: Input should be a valid integer"):
        evaluate(other, good, c, out=tmp_path / "o1")
    no_answers = [{"messages": r["messages"][:2]} for r in json_rows(4)]
    with pytest.raises(EvalError, match="none of the 4 holdout rows has an assistant answer"):
        evaluate(adapter, write_dataset(tmp_path / "noans", [], no_answers), c, out=tmp_path / "o2")
    overlap = write_dataset(tmp_path / "overlap", [], json_rows(4), holdout_ids=["h0", "t7", "h2", "t3"])
    with pytest.raises(EvalError, match=r"2 holdout row\(s\) are in the adapter's training data .*t3, t7"):
        evaluate(adapter, overlap, c, out=tmp_path / "o3")
    with pytest.raises(EvalError, match="not a LoRA adapter folder"):
        evaluate(tmp_path, good, c, out=tmp_path / "o4")
    for n in ("o1", "o2", "o3", "o4"):
        assert not (tmp_path / n).exists()


# ---- the eval page -------------------------------------------------------------------------------------------------


def test_eval_report_in_chromium(evaluated, tmp_path) -> None:
    from tests.browser import open_page
    from training.eval_report import render_html

    result, _, _ = evaluated
    html = (result.out_dir / "eval.html").read_text()
    assert HOSTILE not in html and "&lt;script&gt;window.__xss = 1&lt;/script&gt;" in html
    # the same report with two examples marked lost, so the filter has something to show
    report = result.report.model_dump(mode="json")
    for e in report["examples"][1:3]:
        e["outcome"] = "lost"
    report["outcomes"]["lost"] = 2
    page_path = (tmp_path / "eval.html").resolve()
    page_path.write_text(render_html(report), encoding="utf-8")
    with open_page(page_path) as (page, requests, errors):
        for section in ("verdict", "summary", "charts", "examples", "lineage"):
            assert page.locator(f"section#{section}").is_visible(), section
        assert page.locator("section#summary tr").count() == 12  # header + 11 metrics
        assert page.locator("section#charts svg").count() == 11
        assert "promote" in page.locator("section#verdict").inner_text()
        examples = page.locator("table.examples tr.ex")
        assert examples.count() == 12
        assert HOSTILE in page.locator("section#examples").inner_text()
        assert page.evaluate("() => window.__xss") is None
        assert page.locator("section#examples img, script").count() == 0
        page.locator("#lost-only").check()
        visible = [i for i in range(examples.count()) if examples.nth(i).is_visible()]
        assert visible == [1, 2] and "2 examples where the adapter lost" in page.locator("#examples").inner_text()
        page.locator("#lost-only").uncheck()
        assert examples.nth(0).is_visible() and examples.nth(11).is_visible()
    assert requests == [page_path.as_uri()]
    assert errors == []


# ---- CLI and flow ------------------------------------------------------------------------------------------------


def _yaml(tmp: Path, base: Path) -> Path:
    c = eval_cfg(base)
    p = tmp / "cfg.yaml"
    p.write_text(yaml.safe_dump({"train": c.train.model_dump(mode="json"), "evaluate": c.evaluate.model_dump()}))
    return p


def test_cli_evaluate_json_and_errors(adapter, tiny_base, tmp_path) -> None:  # noqa: F811
    from typer.testing import CliRunner

    from tracetune.cli import app

    data = write_dataset(tmp_path / "v0001", [], json_rows(6, offset=2))
    cfg_file = _yaml(tmp_path, tiny_base)
    args = ["evaluate", "--adapter", str(adapter), "--dataset", str(data), "--config", str(cfg_file)]
    res = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "e"), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout.strip())
    assert out["n"] == 6 and out["metrics"]["json_parse"]["adapter"] >= 0.8 and Path(out["eval_html"]).is_file()
    assert set(out["metrics"]["json_parse"]) == {"n", "base", "adapter", "diff", "ci"}
    bad = CliRunner().invoke(app, ["evaluate", "--adapter", str(tmp_path), "--dataset", str(data)])
    assert bad.exit_code == 2 and "not a LoRA adapter folder" in bad.stderr


def test_evaluate_flow_returns_the_verdict(prefect_server, adapter, tiny_base, tmp_path) -> None:  # noqa: F811
    from flows.evaluate import evaluate_flow

    data = write_dataset(tmp_path / "v0001", [], json_rows(10, offset=4))
    v = evaluate_flow(str(adapter), str(data), config=str(_yaml(tmp_path, tiny_base)), out=str(tmp_path / "e"))
    assert v["promote"] is True and v["n"] == 10 and v["reasons"]
    assert Path(v["out_dir"], "eval.json").is_file()


@pytest.mark.slow
def test_embedded_model_evaluates(tmp_path) -> None:
    """The real default model: a 2-step adapter against SmolLM2 on a few JSON rows, end to end."""
    from training.evaluate import evaluate
    from training.sft import train

    data = write_dataset(tmp_path / "v0001", json_rows(8), json_rows(4, offset=5), schema=SCHEMA)
    c = Config(
        train=TrainConfig(max_steps=2, batch_size=4, logging_steps=1),
        evaluate=EvalConfig(max_new_tokens=24, batch_size=4, bootstrap_samples=200, min_examples=1),
    )
    adapter_dir = train(data, tmp_path / "adapter", c).adapter_dir
    holdout = write_dataset(tmp_path / "v0002", [], json_rows(4, offset=1), schema=SCHEMA)
    r = evaluate(adapter_dir, holdout, c).report.model_dump(mode="json")
    assert r["n"] == 4 and r["lineage"]["base_model"]["id"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert all(r["metrics"][k]["n"] == 4 for k in ("loss", "json_parse", "rouge_l"))
    assert (adapter_dir / "eval" / "eval.html").is_file()
