"""tracetune: production LLM chat traces to fine-tuning datasets and LoRA adapters."""

__version__ = "0.1.0"
