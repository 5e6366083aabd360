"""The training speed levers keep the results: bf16 only where the hardware does it natively, the output head
only at labelled positions gives the full head's loss and gradients, and the trainer built on it follows trl's
own loss curve on the same seed."""

from __future__ import annotations

from pathlib import Path

import pytest

from schemas.training import TrainConfig
from tests.helpers import write_dataset
from tests.test_train import cfg, tiny_base, toy_rows  # noqa: F401  (session fixture)
from training.device import DeviceError, cpu_flags, native_bf16, use_bf16


def test_bf16_follows_the_device_capability(tmp_path: Path) -> None:
    assert native_bf16("cpu", {"avx512f", "avx512_bf16"}) and native_bf16("cpu", {"amx_bf16", "sse4_2"})
    assert not native_bf16("cpu", {"avx512f", "avx2"}) and not native_bf16("cpu", set())
    assert not native_bf16("mps")
    assert use_bf16("auto", "cpu", native=True) and not use_bf16("auto", "cpu", native=False)
    assert not use_bf16("fp32", "cpu", native=True) and use_bf16("bf16", "cpu", native=False)
    with pytest.raises(DeviceError, match=r"train.precision: bf16 is not supported on mps"):
        use_bf16("bf16", "mps", native=False)
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu avx512f amx_bf16\n\nprocessor\t: 1\nflags\t\t: fpu\n")
    assert cpu_flags(info) == {"fpu", "avx512f", "amx_bf16"}
    assert cpu_flags(tmp_path / "missing") == set()
    assert TrainConfig().precision == "auto" and TrainConfig().lora_dropout == 0.0


def test_labelled_head_gives_the_full_heads_loss_and_gradients(tiny_base) -> None:  # noqa: F811
    import torch
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    from training.labelled_head import labelled_head, per_row
    from training.trainer import lora_config

    torch.manual_seed(0)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(str(tiny_base)), lora_config(TrainConfig(lora_r=4)))
    for name, p in model.named_parameters():
        if "lora_B" in name:  # B starts at zero; give the adapter an effect so its gradients are not trivial
            torch.nn.init.normal_(p, std=0.02)
    ids = torch.randint(3, 200, (3, 20))
    mask = torch.ones_like(ids)
    mask[2, 15:] = 0  # a padded row
    labels = torch.full_like(ids, -100)
    labels[0, 8:] = ids[0, 8:]
    labels[1, 12:18] = ids[1, 12:18]
    labels[2, 5:15] = ids[2, 5:15]

    def grads() -> dict[str, torch.Tensor]:
        out = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
        model.zero_grad()
        return out

    full = model(input_ids=ids, attention_mask=mask, labels=labels).loss
    full.backward()
    g_full = grads()
    res = labelled_head(model, ids, mask, labels)
    lean = res.ce.mean()
    lean.backward()
    g_lean = grads()
    assert lean.item() == pytest.approx(full.item(), rel=1e-5)
    assert g_full.keys() == g_lean.keys() and len(g_full) > 0
    for name in g_full:
        torch.testing.assert_close(g_lean[name], g_full[name], rtol=1e-4, atol=1e-6)
    rows = per_row(res, 3)
    assert [r["tokens"] for r in rows] == [12, 6, 10]
    assert sum(r["loss_sum"] for r in rows) / 28 == pytest.approx(full.item(), rel=1e-5)


def test_trainer_follows_trls_loss_curve_on_the_same_seed(tiny_base, tmp_path, monkeypatch) -> None:  # noqa: F811
    """Same rows, seed and fp32 precision: the labelled-head trainer's per-step losses equal trl's SFTTrainer's."""
    import trl

    import training.sft
    from training.sft import train

    data = write_dataset(tmp_path / "v0001", toy_rows(32), toy_rows(4, offset=3))
    settings = {"max_steps": 6, "precision": "fp32", "batch_size": 4}
    ours = train(data, tmp_path / "ours", cfg(tiny_base, **settings)).run
    monkeypatch.setattr(training.sft, "trainer_class", lambda: trl.SFTTrainer)
    theirs = train(data, tmp_path / "trl", cfg(tiny_base, **settings)).run

    def losses(run) -> list[float]:
        return [c["loss"] for c in run.curve if "loss" in c]

    assert len(losses(ours)) == 6
    assert losses(ours) == pytest.approx(losses(theirs), rel=1e-3)
    assert ours.eval_loss == pytest.approx(theirs.eval_loss, rel=1e-3)
    assert ours.trained_tokens == theirs.trained_tokens
    assert ours.eval_token_accuracy == pytest.approx(theirs.eval_token_accuracy, abs=1e-6)
