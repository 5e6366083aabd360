"""The output head and cross-entropy at the positions that carry loss only.

A chat row is mostly prompt: in the demo's rows ~60 of ~210 tokens are trainable. Projecting every position
through a 49k-word head (and keeping those logits for the backward pass) is a fifth of a step's work and most of
its activation memory; projecting only the labelled positions gives the same loss and the same gradients.
trl's fused head does this on Triton devices only and scores every position elsewhere (CPU included).
"""

from __future__ import annotations

from typing import Any, NamedTuple


class HeadLoss(NamedTuple):
    """Per labelled position (row-major): cross-entropy, whether the argmax was right, and its row."""

    ce: Any
    correct: Any
    row: Any


def backbone(model: Any) -> tuple[Any, Any]:
    """The decoder stack and the output head of a causal LM (through a PEFT wrapper when there is one)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return base.get_decoder(), base.get_output_embeddings()


def labelled_head(model: Any, input_ids: Any, attention_mask: Any, labels: Any) -> HeadLoss:
    """Run the decoder, then the head and cross-entropy (in fp32) only where the next-token label is not -100."""
    import torch

    decoder, head = backbone(model)
    hidden = decoder(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).last_hidden_state
    target = labels[:, 1:]
    keep = target != -100
    logits = head(hidden[:, :-1][keep]).float()
    picked = target[keep]
    ce = torch.nn.functional.cross_entropy(logits, picked, reduction="none")
    correct = logits.detach().argmax(-1) == picked
    return HeadLoss(ce, correct, keep.nonzero()[:, 0])


def per_row(result: HeadLoss, rows: int) -> list[dict[str, float | int]]:
    """Summed loss, labelled tokens and correct argmax predictions per row of the batch."""
    import torch

    loss = torch.zeros(rows, dtype=torch.float64).index_add_(0, result.row, result.ce.detach().double())
    tokens = torch.bincount(result.row, minlength=rows)
    correct = torch.bincount(result.row, weights=result.correct.double(), minlength=rows)
    return [{"loss_sum": float(loss[k]), "tokens": int(tokens[k]), "correct": int(correct[k])} for k in range(rows)]
