"""Causal language modelling: position t predicts token t+1 (GPT-2, Llama, ...)."""

from __future__ import annotations

import torch
from torch import nn
from transformers import AutoModelForCausalLM

from lit_pretrain.objectives.base import Objective, token_cross_entropy


def clm_loss(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Next-token prediction. The shift happens here and only here; ``labels`` are the inputs themselves.

    logits: (B, T, V); labels: (B, T) with ``IGNORE_INDEX`` where no loss is wanted.
    Returns (sum of cross-entropy in nats over counted tokens, number of counted tokens).
    """
    shifted_logits = logits[:, :-1, :]  # (B, T-1, V)
    shifted_labels = labels[:, 1:]  # (B, T-1)
    return token_cross_entropy(shifted_logits.reshape(-1, shifted_logits.size(-1)), shifted_labels.reshape(-1))


class CausalLM(Objective):
    """Packed windows need no transform: every token is a target of the one before it."""

    name = "clm"
    auto_class = AutoModelForCausalLM

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        input_ids = batch["input_ids"]
        return clm_loss(model(input_ids=input_ids).logits, batch.get("labels", input_ids))
