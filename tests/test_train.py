"""Training: chat masks, LoRA SFT mechanics on a tiny model built from a config, bad input, the real model (slow)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from schemas.config import Config
from schemas.dataset import sha256_file
from schemas.runs import TrainingRun
from schemas.training import TrainConfig
from tests.helpers import write_dataset
from training.device import native_bf16

CHAT_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + "
    "'\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
WORDS = ["red", "green", "blue", "cat", "dog", "sun", "moon", "tree", "fish", "bird"]
ANSWER = {w: WORDS[(i + 3) % len(WORDS)] for i, w in enumerate(WORDS)}


def toy_rows(n: int, offset: int = 0) -> list[dict[str, Any]]:
    """A learnable toy task: the answer is a fixed mapping of the word asked about."""
    rows = []
    for i in range(n):
        w = WORDS[(i + offset) % len(WORDS)]
        rows.append(
            {
                "messages": [
                    {"role": "system", "content": "Map the word."},
                    {"role": "user", "content": f"word: {w}"},
                    {"role": "assistant", "content": f"answer: {ANSWER[w]}"},
                ]
            }
        )
    return rows


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory) -> Path:
    """A 2-layer Llama with a byte-level BPE tokenizer trained here, saved as a HF model folder."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    folder = tmp_path_factory.mktemp("tiny-base")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    corpus = [json.dumps(r) for r in toy_rows(40)] + ["system user assistant tool answer word map the <tool_call>"]
    tok.train_from_iterator(
        corpus,
        trainers.BpeTrainer(
            vocab_size=400,
            special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        ),
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>", bos_token="<|im_start|>"
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(folder)
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=len(fast),
        hidden_size=64,
        intermediate_size=128,
        initializer_range=0.2,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=256,
        pad_token_id=fast.pad_token_id,
        eos_token_id=fast.eos_token_id,
        bos_token_id=fast.bos_token_id,
        tie_word_embeddings=False,
    )
    LlamaForCausalLM(cfg).save_pretrained(folder)
    return folder


def cfg(base: Path, **kw: Any) -> Config:
    settings = {
        "base_model": str(base),
        "learning_rate": 2e-2,
        "batch_size": 8,
        "max_steps": 12,
        "logging_steps": 1,
        "lora_r": 8,
        "lora_dropout": 0.0,
        "max_length": 128,
        "threads": 1,
        **kw,
    }
    return Config(train=TrainConfig(**settings))


@pytest.fixture
def tok(tiny_base):
    from training.model import load_tokenizer

    return load_tokenizer(tiny_base)


# ---- masks ----------------------------------------------------------------------------------------------------


def test_mask_covers_exactly_assistant_content(tok) -> None:
    from training.chat import encode_row

    row = {
        "messages": [
            {"role": "system", "content": "Map the word."},
            {"role": "user", "content": "word: red"},
            {"role": "assistant", "content": "answer: cat", "weight": 0},
            {"role": "user", "content": "word: dog"},
            {"role": "assistant", "content": "answer: fish"},
        ]
    }
    e = encode_row(tok, row)
    trained = [i for i, lab in zip(e.input_ids, e.labels, strict=True) if lab != -100]
    assert tok.decode(trained) == "answer: fish<|im_end|>"
    assert all(lab in (-100, i) for i, lab in zip(e.input_ids, e.labels, strict=True))
    # the masked tokens are exactly the rest of the rendered conversation
    untrained = tok.decode([i for i, lab in zip(e.input_ids, e.labels, strict=True) if lab == -100])
    assert "answer: cat" in untrained and "word: dog" in untrained and "answer: fish" not in untrained


def test_tool_calls_and_results_rendered_for_a_template_without_them(tok) -> None:
    from training.chat import encode_row

    row = {
        "messages": [
            {"role": "user", "content": "word: red"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "map", "arguments": '{"w":"red"}'}}
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "cat"},
            {"role": "assistant", "content": "answer: cat"},
        ],
        "tools": [{"type": "function", "function": {"name": "map", "parameters": {"type": "object"}}}],
    }
    e = encode_row(tok, row)
    text = tok.decode(e.input_ids)
    assert "<tool_call>" in text and '"name": "map"' in text and "<tool_response>\ncat\n</tool_response>" in text
    assert '<tools>\n{"type": "function"' in text
    trained = tok.decode([i for i, lab in zip(e.input_ids, e.labels, strict=True) if lab != -100])
    assert trained.startswith("<tool_call>") and trained.endswith("answer: cat<|im_end|>")
    assert "cat\n</tool_response>" not in trained


def test_truncation_and_untrainable_rows_are_counted(tok) -> None:
    from training.chat import encode_rows

    long_prompt = {"messages": [{"role": "user", "content": "word " * 200}, {"role": "assistant", "content": "x"}]}
    weight0 = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo", "weight": 0}]}
    rows, stats = encode_rows(tok, [*toy_rows(3), long_prompt, weight0], max_length=64)
    assert len(rows) == 3 and stats.kept == 3
    assert stats.truncated == 1 and stats.dropped_truncated == 1 and stats.no_trainable == 1
    assert stats.dropped_rows == [4, 5]
    assert stats.tokens == sum(len(r.input_ids) for r in rows)


# ---- training mechanics ----------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def trained(tiny_base, tmp_path_factory):
    """One short training run shared by the tests that inspect its outputs."""
    from curation.store import Store
    from training.sft import train

    tmp = tmp_path_factory.mktemp("run")
    data = write_dataset(tmp / "v0001", toy_rows(64), toy_rows(10, offset=3))
    db = tmp / "t.duckdb"
    Store(db).close()
    res = train(data, tmp / "adapter", cfg(tiny_base, max_steps=40, eval_steps=20, save_steps=20), db=db)
    return res, data, db


def test_loss_falls_and_outputs_are_recorded(trained) -> None:
    res, data, db = trained
    run = res.run
    losses = [c["loss"] for c in run.curve if "loss" in c]
    assert len(losses) >= 10
    assert sum(losses[-3:]) / 3 < 0.5 * sum(losses[:3]) / 3
    evals = [c for c in run.curve if "eval_loss" in c]
    assert [c["step"] for c in evals] == [20, 40]
    assert evals[-1]["eval_loss"] < evals[0]["eval_loss"]
    assert run.eval_token_accuracy is not None and 0 <= run.eval_token_accuracy <= 1
    assert run.rows["train"].kept == 64 and run.rows["train"].truncated == 0
    assert run.trained_tokens > 0 and run.tokens_per_s and run.tokens_per_s > 0
    assert run.peak_rss_mb and run.peak_rss_mb > 100
    native = native_bf16("cpu")
    assert (run.device.type, run.device.dtype, run.device.native_bf16) == ("cpu", "bf16" if native else "fp32", native)
    assert not run.device.gradient_checkpointing
    assert run.dataset.manifest_sha256 == sha256_file(data / "manifest.json")
    assert run.dataset.train_trace_ids and run.dataset.train_trace_ids[:2] == ["t0", "t1"]
    on_disk = TrainingRun.read(res.adapter_dir / "training_run.json")
    assert on_disk == run and json.loads((res.adapter_dir / "training_run.json").read_text())["steps"] == 40
    for f in ("adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "chat_template.jinja"):
        assert (res.adapter_dir / f).is_file(), f
    from curation.store import Store

    with Store(db) as store:
        row = store.con.execute("SELECT steps, dataset_version, base_model_hash FROM training_runs").fetchall()
    assert row == [(40, 1, run.base_model.hash)]


def _logits(model, tok) -> Any:
    import torch

    enc = tok(["<|im_start|>user\nword: red<|im_end|>\n<|im_start|>assistant\n"], return_tensors="pt")
    with torch.no_grad():
        return model(**enc).logits


def test_saved_adapter_reloads_and_reproduces_outputs(trained, tiny_base, tok) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    res, _, _ = trained
    base = AutoModelForCausalLM.from_pretrained(str(tiny_base), dtype=torch.float32)
    before = _logits(base, tok)
    model = PeftModel.from_pretrained(base, str(res.adapter_dir)).eval()
    after = _logits(model, tok)
    assert not torch.allclose(before, after, atol=1e-4)  # the adapter learned something
    # the answer format is learned (the word mapping needs more steps than a unit test should take)
    enc = tok(
        ["<|im_start|>system\nMap the word.<|im_end|>\n<|im_start|>user\nword: red<|im_end|>\n<|im_start|>assistant\n"],
        return_tensors="pt",
    )
    out = model.generate(**enc, max_new_tokens=6, do_sample=False, pad_token_id=tok.pad_token_id)
    answer = tok.decode(out[0, enc["input_ids"].shape[1] :])
    assert answer.startswith("answer: ") and answer.endswith("<|im_end|>") and answer[8:-10].strip() in WORDS
    # a second load gives the same outputs
    again = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(str(tiny_base)), str(res.adapter_dir))
    assert torch.allclose(_logits(again.eval(), tok), after, atol=1e-6)
    with model.disable_adapter():
        assert torch.allclose(_logits(model, tok), before, atol=1e-6)


def test_untrained_adapter_changes_no_output(tiny_base, tok) -> None:
    import torch
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    from training.trainer import lora_config

    base = AutoModelForCausalLM.from_pretrained(str(tiny_base))
    before = _logits(base, tok)
    for extra in ({}, {"use_dora": True}, {"use_rslora": True}):
        model = get_peft_model(AutoModelForCausalLM.from_pretrained(str(tiny_base)), lora_config(TrainConfig(**extra)))
        assert torch.allclose(_logits(model.eval(), tok), before, atol=1e-5), extra


def test_weight0_and_prompt_tokens_carry_no_loss(tiny_base, tok) -> None:
    """The loss the model sees equals the loss over the assistant content tokens alone."""
    import torch
    from transformers import AutoModelForCausalLM

    from training.chat import encode_row

    model = AutoModelForCausalLM.from_pretrained(str(tiny_base)).eval()
    row = {
        "messages": [
            {"role": "user", "content": "word: red"},
            {"role": "assistant", "content": "answer: cat", "weight": 0},
            {"role": "user", "content": "word: dog"},
            {"role": "assistant", "content": "answer: fish"},
        ]
    }
    e = encode_row(tok, row)
    ids = torch.tensor([e.input_ids])
    with torch.no_grad():
        loss = model(input_ids=ids, labels=torch.tensor([e.labels])).loss
        logits = model(input_ids=ids).logits[0]
    # change every untrained token's label: the loss must not move; mask manually over the trainable positions
    pos = [k for k, lab in enumerate(e.labels) if lab != -100]
    logp = torch.log_softmax(logits[:-1], -1)
    manual = -torch.stack([logp[k - 1, e.input_ids[k]] for k in pos]).mean()
    assert torch.allclose(loss, manual, atol=1e-5)
    # gradient check: perturbing a weight-0 turn's labels alone does nothing because they are -100
    row2 = json.loads(json.dumps(row))
    row2["messages"][1]["content"] = "answer: moon"
    e2 = encode_row(tok, row2)
    assert [lab for lab in e2.labels if lab != -100] == [lab for lab in e.labels if lab != -100]


def test_resume_continues_from_checkpoint(tiny_base, tmp_path) -> None:
    from training.sft import last_checkpoint, train

    data = write_dataset(tmp_path / "v0001", toy_rows(32), [])
    out = tmp_path / "adapter"
    first = train(data, out, cfg(tiny_base, max_steps=4, save_steps=2))
    assert first.run.steps == 4 and last_checkpoint(out).name == "checkpoint-4"
    second = train(data, out, cfg(tiny_base, max_steps=8, save_steps=2), resume=True)
    assert second.run.resumed_from and second.run.resumed_from.endswith("checkpoint-4")
    assert second.run.steps == 8
    steps = [c["step"] for c in second.run.curve if "loss" in c]
    assert steps and min(steps) == 5  # continued: no step before the checkpoint was re-run


def test_merge_writes_a_full_model(tiny_base, tmp_path, tok) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from training.sft import train

    data = write_dataset(tmp_path / "v0001", toy_rows(16), [])
    res = train(data, tmp_path / "a", cfg(tiny_base, max_steps=2), merge=True)
    merged = AutoModelForCausalLM.from_pretrained(str(res.run.merged_dir)).eval()
    peft = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(str(tiny_base)), str(res.adapter_dir))
    assert torch.allclose(_logits(merged, tok), _logits(peft.eval(), tok), atol=1e-4)


# ---- bad input ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "match"),
    [
        ("no_assistant", r"train.jsonl row 2: no assistant message"),
        ("bad_role", r"train.jsonl row 1: messages\[1\].role: 'robot' is not one of"),
        ("empty", r"train.jsonl: empty file"),
        ("hash", r"train.jsonl: sha256 does not match manifest.json"),
        ("missing_base", r"base model path does not exist: /nonexistent/model"),
        ("target", r"train.target_modules: the model has no module 'qkv_fused'"),
        ("bad_json", r"train.jsonl row 2: not valid JSON"),
        ("template_role", r"train.jsonl row 1: the chat template cannot render this conversation"),
    ],
)
def test_bad_input_fails_before_training(case: str, match: str, tiny_base, tmp_path) -> None:
    from training.sft import TrainError, train

    rows = toy_rows(4)
    raw = None
    base: Path | str = tiny_base
    kw: dict[str, Any] = {}
    if case == "no_assistant":
        rows[1] = {"messages": [{"role": "user", "content": "hi"}]}
    elif case == "bad_role":
        rows[0]["messages"][1]["role"] = "robot"
    elif case == "empty":
        raw = ""
    elif case == "missing_base":
        base = "/nonexistent/model"
    elif case == "target":
        kw["target_modules"] = ["q_proj", "qkv_fused"]
    elif case == "bad_json":
        raw = json.dumps(rows[0]) + "\n{not json\n"
    elif case == "template_role":
        strict = tmp_path / "strict"
        strict.mkdir()
        for f in tiny_base.iterdir():
            (strict / f.name).write_bytes(f.read_bytes())
        (strict / "chat_template.jinja").write_text(
            "{% for m in messages %}{% if m['role'] not in ['user', 'assistant'] %}"
            "{{ raise_exception('Only user and assistant roles are supported') }}{% endif %}"
            "{{ m['role'] + ': ' + m['content'] + '\n' }}{% endfor %}"
        )
        base = strict
    data = write_dataset(tmp_path / "v0001", rows, [], raw_train=raw)
    if case == "hash":
        with (data / "train.jsonl").open("a") as f:
            f.write(json.dumps(rows[0]) + "\n")
    out = tmp_path / "out"
    with pytest.raises(TrainError, match=match):
        train(data, out, cfg(base, **kw))
    assert not (out / "checkpoints").exists()


def test_qlora_needs_cuda_and_config_is_validated(tmp_path) -> None:
    import torch

    from schemas.config import ConfigError, load_config
    from training.device import DeviceError, pick_device

    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match=r"4bit .* needs a CUDA GPU"):
            pick_device(TrainConfig(quantization="4bit"))
    assert load_config().train.base_model == "embedded"
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  lora_rank: 8\n")
    with pytest.raises(ConfigError, match=r"unknown key 'train\.lora_rank'"):
        load_config(bad)
    bad.write_text("train:\n  lora_r: 0\n")
    with pytest.raises(ConfigError, match=r"train\.lora_r"):
        load_config(bad)


def test_hub_id_offline_gives_a_clear_error(monkeypatch) -> None:
    from training.model import ModelError, resolve_base

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelError, match="cannot be fetched from the Hugging Face hub"):
        resolve_base("someone/not-a-local-model")


# ---- the real embedded model --------------------------------------------------------------------------------------


@pytest.mark.slow
def test_embedded_model_trains_a_few_steps(tmp_path) -> None:
    from training.model import resolve_base
    from training.sft import train

    ref = resolve_base(None)  # converts the GGUF once into the cache
    assert (ref.path / "model.safetensors").is_file() and ref.base_hash.startswith("gguf-sha256:")
    data = write_dataset(tmp_path / "v0001", toy_rows(16), toy_rows(4))
    res = train(data, tmp_path / "adapter", Config(train=TrainConfig(max_steps=3, batch_size=4, logging_steps=1)))
    assert res.run.steps == 3 and res.run.base_model.id == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert res.run.eval_loss is not None and (res.adapter_dir / "adapter_model.safetensors").is_file()


# ---- CLI and flow ---------------------------------------------------------------------------------------------------


def _yaml(tmp_path: Path, base: Path, **kw: Any) -> Path:
    import yaml

    settings = cfg(base, **kw).train.model_dump(mode="json")
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump({"train": settings}))
    return p


def test_cli_train_json_and_errors(tiny_base, tmp_path) -> None:
    from typer.testing import CliRunner

    from tracetune.cli import app

    data = write_dataset(tmp_path / "v0001", toy_rows(16), toy_rows(4))
    runner = CliRunner()
    res = runner.invoke(
        app,
        [
            "train",
            "--dataset",
            str(data),
            "--config",
            str(_yaml(tmp_path, tiny_base, max_steps=2)),
            "--out",
            str(tmp_path / "a"),
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout.strip())
    assert summary["steps"] == 2 and Path(summary["adapter"]).is_dir() and summary["rows"]["train"]["kept"] == 16
    bad = runner.invoke(app, ["train", "--dataset", str(tmp_path / "nope"), "--out", str(tmp_path / "b")])
    assert bad.exit_code == 2 and "dataset folder not found" in bad.stderr


def test_train_flow_trains_records_and_registers_the_adapter(prefect_server, tiny_base, tmp_path) -> None:
    from curation.store import Store
    from flows.train import train_flow

    data = write_dataset(tmp_path / "v0001", toy_rows(16), toy_rows(4))
    db = tmp_path / "t.duckdb"
    config = str(_yaml(tmp_path, tiny_base, max_steps=2))
    done = train_flow(str(data), db=str(db), out=str(tmp_path / "a"), config=config, announce=False)
    path = done["adapter_dir"]
    assert Path(path, "adapter_model.safetensors").is_file() and Path(path, "training_run.json").is_file()
    with Store(db, read_only=True) as store:
        ((run_id, flow_run),) = store.con.execute("SELECT run_id, flow_run_id FROM training_runs").fetchall()
        assert store.con.execute("SELECT adapter_dir, training_run_id FROM adapters").fetchall() == [(path, run_id)]
    assert run_id == done["run_id"] and flow_run
    with pytest.raises(Exception, match="not the one announced"):
        train_flow(str(data), out=str(tmp_path / "b"), config=config, manifest_sha256="0" * 64, announce=False)
