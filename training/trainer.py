"""trl/peft pieces of a training run: the LoRA and SFT configs, the model load, the trainer with the head only at
labelled positions, and the callback that times steps and reports progress."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from schemas.training import TrainConfig
from training.chat import Encoded
from training.labelled_head import labelled_head

CHECKPOINTS = "checkpoints"

Progress = Callable[[dict[str, Any]], None]


def lora_config(tc: TrainConfig) -> Any:
    """peft LoraConfig from the train section."""
    from peft import LoraConfig

    return LoraConfig(
        r=tc.lora_r,
        lora_alpha=tc.lora_alpha,
        lora_dropout=tc.lora_dropout,
        target_modules=tc.target_modules,
        use_rslora=tc.use_rslora,
        use_dora=tc.use_dora,
        bias="none",
        task_type="CAUSAL_LM",
    )


def check_target_modules(model: Any, tc: TrainConfig) -> str | None:
    """The error line for a named LoRA target that is not a module of the model (peft's own comes late), or None."""
    if tc.target_modules == "all-linear":
        return None
    import torch

    names = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
    linear = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)})
    for t in tc.target_modules:
        if t not in names and not any(n.endswith(t) for n, _ in model.named_modules()):
            return f"train.target_modules: the model has no module '{t}' (its linear layers: {', '.join(linear)})"
    return None


def sft_config(tc: TrainConfig, out: Path, device: str, has_eval: bool, bf16: bool) -> Any:
    """trl SFTConfig: bf16 autocast where the device does it natively, rows in length-grouped batches, no
    gradient checkpointing unless asked (on CPU it costs much time and saves little for small models)."""
    from trl import SFTConfig

    gc = False if tc.gradient_checkpointing == "auto" else bool(tc.gradient_checkpointing)
    never = 10**9  # with step strategies, transformers still evaluates and saves at the last step
    return SFTConfig(
        output_dir=str(out / CHECKPOINTS),
        per_device_train_batch_size=tc.batch_size,
        per_device_eval_batch_size=tc.batch_size,
        gradient_accumulation_steps=tc.grad_accum,
        learning_rate=tc.learning_rate,
        lr_scheduler_type=tc.lr_scheduler,
        warmup_steps=tc.warmup_steps,
        weight_decay=tc.weight_decay,
        num_train_epochs=tc.epochs,
        max_steps=tc.max_steps or -1,
        max_length=tc.max_length,
        packing=tc.packing,
        seed=tc.seed,
        data_seed=tc.seed,
        bf16=bf16,
        fp16=False,
        use_cpu=device == "cpu",
        activation_checkpointing=gc,
        train_sampling_strategy="group_by_length" if tc.group_by_length and not tc.packing else "random",
        prediction_loss_only=True,
        eval_strategy="steps" if has_eval else "no",
        eval_steps=tc.eval_steps or never,
        save_strategy="steps",
        save_steps=tc.save_steps or never,
        save_total_limit=tc.save_total_limit,
        logging_steps=tc.logging_steps,
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
        dataset_num_proc=None,
    )


def load_train_model(path: Path, tc: TrainConfig, device: str, bf16: bool) -> Any:
    """The base model for LoRA: fp32 master weights (bf16 weights on CUDA with bf16), NF4 for QLoRA."""
    import torch
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = {"dtype": torch.bfloat16 if bf16 else torch.float32}
    if tc.quantization == "4bit":
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=kwargs["dtype"],
        )
        kwargs["device_map"] = {"": 0}
    model = AutoModelForCausalLM.from_pretrained(str(path), **kwargs)
    if tc.quantization != "4bit":
        model.to(device)
    return model


def keep_input_dtype(model: Any) -> None:
    """Under bf16 autocast, let LoRA layers take their bf16 input as it is: peft would cast it to the adapter's
    fp32 and autocast back to bf16, saving a second copy of every projection input for the backward pass."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    for module in model.modules():
        if isinstance(module, BaseTunerLayer):
            module.cast_input_dtype_enabled = False


def trainer_class() -> type:
    """trl's SFTTrainer with the loss computed by `labelled_head` (same loss and gradients, a fraction of the
    head's work and memory); the token-accuracy and token-count metrics stay trl's."""
    from trl import SFTTrainer

    class LabelledHeadTrainer(SFTTrainer):
        """SFTTrainer whose loss projects only the labelled positions through the output head."""

        def compute_loss(
            self, model: Any, inputs: dict[str, Any], return_outputs: bool = False, num_items_in_batch: Any = None
        ) -> Any:
            if self.args.packing or "attention_mask" not in inputs or return_outputs:
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            mode = "train" if model.training else "eval"
            with self.accelerator.autocast():
                res = labelled_head(model, inputs["input_ids"], inputs["attention_mask"], inputs["labels"])
            count = res.ce.numel() if num_items_in_batch is None else num_items_in_batch
            loss = res.ce.sum() / max(int(count), 1)
            if self.args.average_tokens_across_devices and num_items_in_batch is not None:
                loss = loss * self.accelerator.num_processes
            valid = self.accelerator.gather_for_metrics(res.ce.new_tensor(float(res.correct.numel()))).sum()
            right = self.accelerator.gather_for_metrics(res.correct.sum().float()).sum()
            self._metrics[mode]["mean_token_accuracy"].append((right / valid).item() if valid > 0 else 0.0)
            if mode == "train":
                seen = self.accelerator.gather_for_metrics(inputs["attention_mask"].sum()).sum().item()
                self._total_train_tokens += seen
            self._metrics[mode]["num_tokens"] = [self._total_train_tokens]
            return loss

    return LabelledHeadTrainer


def step_tracker(progress: Progress | None, curve: list[dict[str, Any]]) -> Any:
    """A trainer callback that times optimizer steps (seconds, trained tokens), collects the logged metrics
    into `curve` and reports progress after each step."""
    from transformers import TrainerCallback

    class Tracker(TrainerCallback):
        """Step times and tokens, the metrics curve, progress."""

        def __init__(self) -> None:
            self.trainer: Any = None
            self.steps: list[tuple[float, int]] = []
            self.tokens = 0
            self._t0 = 0.0

        def on_step_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self._t0 = time.perf_counter()

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            took = time.perf_counter() - self._t0
            tokens = int(getattr(self.trainer, "_total_train_tokens", 0))
            self.steps.append((took, tokens - self.tokens))
            self.tokens = tokens
            if progress:
                last = next((c["loss"] for c in reversed(curve) if "loss" in c), None)
                progress(
                    {
                        "step": state.global_step,
                        "max_steps": state.max_steps,
                        "loss": last,
                        "tokens_per_s": self.tokens / max(self.seconds, 1e-9),
                    }
                )

        @property
        def seconds(self) -> float:
            return sum(s for s, _ in self.steps)

        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kw: Any) -> None:
            if logs:
                keep = {k: v for k, v in logs.items() if isinstance(v, int | float)}
                curve.append({"step": state.global_step, "epoch": state.epoch, **keep})

    return Tracker()


def hf_dataset(rows: list[Encoded]) -> Any:
    """Encoded rows as a `datasets.Dataset` of input ids and labels (trl uses the labels as they are)."""
    from datasets import Dataset

    return Dataset.from_dict({"input_ids": [r.input_ids for r in rows], "labels": [r.labels for r in rows]})
