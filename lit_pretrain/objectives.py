"""Training objectives as pure tensor functions, selected by name. Each returns the *sum* of per-token losses
and the number of tokens counted, so callers can form token-weighted means across batches and ranks (a mean
of per-batch means is wrong when batches count different numbers of tokens)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100


def clm_loss(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Next-token prediction: position t predicts token t+1. The shift happens here and only here; batches
    carry ``labels == input_ids``.

    logits: (B, T, V); labels: (B, T) with ``IGNORE_INDEX`` where no loss is wanted.
    Returns (sum of cross-entropy in nats over counted tokens, number of counted tokens).
    """
    shifted_logits = logits[:, :-1, :].float()  # (B, T-1, V); fp32 for a stable log-softmax under bf16
    shifted_labels = labels[:, 1:]  # (B, T-1)
    loss_sum = F.cross_entropy(
        shifted_logits.reshape(-1, shifted_logits.size(-1)),
        shifted_labels.reshape(-1),
        ignore_index=IGNORE_INDEX,
        reduction="sum",
    )
    count = (shifted_labels != IGNORE_INDEX).sum()
    return loss_sum, count


OBJECTIVES = {"clm": clm_loss}
