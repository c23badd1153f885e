"""What every objective provides, and the token-weighted loss they share.

An objective owns three things: the ``transformers`` auto class whose head it trains, the per-batch transform
that turns the data module's ``input_ids`` into model inputs and labels, and the loss. Losses are returned as
(sum of per-token losses, number of tokens counted), so callers form token-weighted means across batches and
ranks (a mean of per-batch means is wrong when batches count different numbers of tokens).
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

IGNORE_INDEX = -100


def token_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """logits (N, V), labels (N,) with ``IGNORE_INDEX`` where no loss is wanted.

    Returns (sum of cross-entropy in nats over counted tokens, number of counted tokens)."""
    loss_sum = F.cross_entropy(logits.float(), labels, ignore_index=IGNORE_INDEX, reduction="sum")  # fp32 under bf16
    return loss_sum, (labels != IGNORE_INDEX).sum()


class Objective:
    """Base class: the identity transform and no loss. Subclasses set ``name`` and ``auto_class``.

    Args:
        token_ids: The dataset tokenizer's special ids (``end_of_text_id``, ``<role>_id``; see
            ``data_prep.tokens.tokenizer.role_token_ids``).
        vocab_size: Token ids of the dataset are below this.
        seed: Seed of any randomness in the transform.
    """

    name: ClassVar[str]
    auto_class: ClassVar[type]

    def __init__(self, token_ids: dict[str, int], vocab_size: int, seed: int = 0) -> None:
        self.token_ids, self.vocab_size, self.seed = dict(token_ids), vocab_size, seed

    def check(self) -> None:
        """Raise ``ConfigError`` when the tokenizer cannot serve this objective."""

    def train_batch(self, input_ids: torch.Tensor, step: int, micro_batch: int, rank: int, world_size: int) -> dict:
        """Model inputs for a training micro-batch (on the CPU, before the transfer to the device).

        ``step`` is the optimizer step, ``micro_batch`` the index of this batch within its gradient accumulation,
        so a transform keyed on them repeats exactly after a resume; ``rank``/``world_size`` place the local
        rows among the global batch (row ``i`` of rank ``r`` is global row ``i * world_size + r``)."""
        return {"input_ids": input_ids}

    def eval_batch(self, input_ids: torch.Tensor) -> dict:
        """Model inputs for a validation or test batch: the same for a window every time it is evaluated."""
        return {"input_ids": input_ids}

    @staticmethod
    def drop_rows(batch: dict[str, torch.Tensor], counted: torch.Tensor) -> dict[str, torch.Tensor]:
        """Exclude the rows where ``counted`` (B,) is False from the loss (padding windows of a distributed
        evaluation) by setting their labels to ``IGNORE_INDEX``."""
        if bool(counted.all()):
            return batch
        labels = batch.get("labels", batch["input_ids"]).clone()
        labels[~counted] = IGNORE_INDEX
        batch["labels"] = labels
        if "target_positions" in batch:
            batch["target_positions"] = (labels.flatten() != IGNORE_INDEX).nonzero().flatten()
        return batch

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss sum, counted tokens) of ``model`` on a transformed batch."""
        raise TypeError(f"{type(self).__name__} defines no loss")
