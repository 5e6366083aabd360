"""Training and evaluation (LoRA SFT with trl + peft); filled in by the training issues."""
