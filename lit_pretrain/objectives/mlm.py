"""Masked language modelling as BERT trains it (Devlin et al. 2019, section 3.1).

Of the non-special tokens of a window, ``probability`` (15 %) are selected as targets; of those 80 % are
replaced by the mask token, 10 % by a random non-special token and 10 % stay as they are. Labels are the
original tokens at selected positions and ``IGNORE_INDEX`` elsewhere, so the loss and the perplexity count
selected positions only.

Masks are drawn on the fly for every batch (a window seen twice is masked differently), never stored in the
shards, and are a pure function of their key, on the CPU, whatever the device:

* training row: ``(seed, step, micro-batch, global row)``, so a resumed run masks exactly as the uninterrupted
  one, and one process with the global batch masks like several processes sharing it;
* validation / test row: ``(seed, the window's tokens)``, one fixed mask per window, so ``val/loss`` compares
  across steps, runs, batch sizes and process counts.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from transformers import AutoModelForMaskedLM

from lit_pretrain.errors import ConfigError
from lit_pretrain.objectives.base import IGNORE_INDEX, Objective, token_cross_entropy

TRAIN_STREAM, EVAL_STREAM = 0, 1  # keep training and evaluation masks apart even for equal keys

# Architectures whose masked-LM head (an attribute of the model) maps hidden states to logits position by
# position: the loss then runs the head on the selected positions only, skipping ~85 % of the vocabulary
# projection (the step is ~40 % faster for a 4 x 128 BERT with 4k tokens on a CPU). Others get full logits.
POSITIONWISE_HEADS = {"bert": "cls", "roberta": "lm_head", "xlm-roberta": "lm_head", "camembert": "lm_head"}


def mask_tokens(
    input_ids: torch.Tensor,
    row_keys: Sequence[Sequence[int]],
    mask_token_id: int,
    special_ids: torch.Tensor,
    replacement_ids: torch.Tensor,
    probability: float = 0.15,
    mask_fraction: float = 0.8,
    random_fraction: float = 0.1,
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT masking of ``input_ids`` (B, T); row ``b`` draws its randomness from ``row_keys[b]`` alone.

    ``special_ids`` are never selected; random replacements are drawn uniformly from ``replacement_ids``.
    Returns (masked inputs, labels), both (B, T) int64; ``input_ids`` is not modified.
    """
    batch, length = input_ids.shape
    select_u = np.empty((batch, length))
    replace_u = np.empty((batch, length))
    random_index = np.empty((batch, length), dtype=np.int64)
    for row, key in enumerate(row_keys):
        rng = np.random.default_rng([int(k) for k in key])
        select_u[row] = rng.random(length)
        replace_u[row] = rng.random(length)
        random_index[row] = rng.integers(0, len(replacement_ids), length)
    eligible = ~torch.isin(input_ids, special_ids)
    selected = torch.from_numpy(select_u < probability) & eligible
    replace_u = torch.from_numpy(replace_u)
    to_mask = selected & (replace_u < mask_fraction)
    to_random = selected & (replace_u >= mask_fraction) & (replace_u < mask_fraction + random_fraction)
    masked = input_ids.clone()
    masked[to_mask] = mask_token_id
    masked[to_random] = replacement_ids[torch.from_numpy(random_index)][to_random]
    labels = torch.where(selected, input_ids, torch.full_like(input_ids, IGNORE_INDEX))
    return masked, labels


def mlm_loss(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy at the selected positions only. logits (B, T, V), labels (B, T) -> (sum, count)."""
    return token_cross_entropy(logits.reshape(-1, logits.size(-1)), labels.reshape(-1))


def window_key(tokens: torch.Tensor) -> list[int]:
    """Four 32-bit words of a hash of one window's tokens: the seed of its fixed evaluation mask."""
    digest = hashlib.blake2b(tokens.numpy().astype(np.int64).tobytes(), digest_size=16).digest()
    return np.frombuffer(digest, dtype=np.uint32).tolist()


class MaskedLM(Objective):
    """BERT / RoBERTa-style masked LM; needs a tokenizer with a mask token (``tokenizer.kind: mlm``)."""

    name = "mlm"
    auto_class = AutoModelForMaskedLM
    # Run the head on the masked positions only (bert / roberta families); off for sharded models, whose root
    # forward must run to gather the embeddings and the head.
    positionwise = True

    def __init__(self, token_ids: dict[str, int], vocab_size: int, seed: int = 0, probability: float = 0.15) -> None:
        super().__init__(token_ids, vocab_size, seed)
        self.probability = probability
        # Every role's token is special (as transformers' all_special_ids), the document separator included.
        self.special_ids = torch.tensor(sorted(set(self.token_ids.values())), dtype=torch.long)
        keep = torch.ones(vocab_size, dtype=torch.bool)
        keep[self.special_ids[self.special_ids < vocab_size]] = False
        self.replacement_ids = torch.arange(vocab_size)[keep]

    def check(self) -> None:
        if "mask_token_id" not in self.token_ids:
            raise ConfigError(
                f"model.objective mlm needs a mask token but the dataset's tokenizer has none (its special ids: "
                f"{self.token_ids}); prepare the data with tokenizer.kind: mlm (as configs/data/stdlib-mlm.yaml) "
                "or a pretrained tokenizer that has a mask token"
            )
        if not 0.0 < self.probability < 1.0:
            raise ConfigError(f"model.mlm_probability {self.probability} must be between 0 and 1 (BERT: 0.15)")

    def _mask(self, input_ids: torch.Tensor, row_keys: list[list[int]]) -> dict:
        masked, labels = mask_tokens(
            input_ids,
            row_keys,
            self.token_ids["mask_token_id"],
            self.special_ids,
            self.replacement_ids,
            self.probability,
        )
        # Flat indices of the selected positions, found here on the CPU so the device never waits for them.
        positions = (labels.flatten() != IGNORE_INDEX).nonzero().flatten()
        return {"input_ids": masked, "labels": labels, "target_positions": positions}

    def train_batch(self, input_ids: torch.Tensor, step: int, micro_batch: int, rank: int, world_size: int) -> dict:
        keys = [[self.seed, TRAIN_STREAM, step, micro_batch, row * world_size + rank] for row in range(len(input_ids))]
        return self._mask(input_ids, keys)

    def eval_batch(self, input_ids: torch.Tensor) -> dict:
        return self._mask(input_ids, [[self.seed, EVAL_STREAM, *window_key(row)] for row in input_ids])

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        head = POSITIONWISE_HEADS.get(getattr(getattr(model, "config", None), "model_type", None))
        if head is None or not self.positionwise or "target_positions" not in batch:
            return mlm_loss(model(input_ids=batch["input_ids"]).logits, batch["labels"])
        hidden = model.base_model(input_ids=batch["input_ids"]).last_hidden_state  # (B, T, H)
        positions = batch["target_positions"]  # (N,)
        selected = hidden.flatten(0, 1).index_select(0, positions)  # (N, H)
        logits = getattr(model, head)(selected)  # (N, V)
        return token_cross_entropy(logits, batch["labels"].flatten().index_select(0, positions))
