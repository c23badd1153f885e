"""The LightningModule: owns the model, the objective, the optimizer and the learning-rate schedule.

One training step reads top to bottom: ``batch["input_ids"]`` (B, T) -> model logits (B, T, V) -> the
objective's (loss sum, token count) -> mean loss for backward. Validation accumulates token-weighted sums so
``val_loss`` is the exact mean over every validation token, ``val_ppl = exp(val_loss)`` and
``val_bpb = val_loss / ln 2 / bytes_per_token``.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import lightning as L
import torch
from torchmetrics import SumMetric

from lit_pretrain.errors import ConfigError
from lit_pretrain.models import build_config, build_model, max_positions
from lit_pretrain.objectives import OBJECTIVES
from lit_pretrain.optim import build_optimizer, warmup_cosine


class PretrainModule(L.LightningModule):
    """Pretrains a ``transformers`` causal LM from scratch.

    Args:
        preset: Size preset name (see ``lit_pretrain.models.PRESETS``), or None to use ``config`` alone.
        config: Architecture config keys applied over the preset (e.g. ``{n_layer: 6}``); with no preset it
            must include ``model_type``.
        vocab_size: Embedding rows; linked from ``data.vocab_size`` by the CLI.
        seq_len: Training sequence length; linked from ``data.seq_len`` and checked against the positions.
        objective: Training objective name (``clm``).
        optimizer: ``adamw``, or ``muon`` (Muon on hidden matrices, AdamW on the rest).
        lr: Peak AdamW learning rate.
        muon_lr: Peak Muon learning rate (``optimizer: muon`` only).
        muon_momentum: Muon momentum.
        weight_decay: Decoupled weight decay on weight matrices (never on biases, norms or embeddings).
        betas: AdamW betas.
        eps: AdamW epsilon.
        warmup_steps: Optimizer steps of linear warmup.
        min_lr_ratio: The cosine decays to ``min_lr_ratio × peak`` at the last step.
        decay_steps: Optimizer steps over which the schedule runs; None takes ``trainer.max_steps``.
    """

    def __init__(
        self,
        preset: str | None = "gpt2-tiny",
        config: dict[str, Any] | None = None,
        vocab_size: int = 50257,
        seq_len: int = 256,
        objective: Literal["clm"] = "clm",
        optimizer: Literal["adamw", "muon"] = "adamw",
        lr: float = 1e-3,
        muon_lr: float = 0.02,
        muon_momentum: float = 0.95,
        weight_decay: float = 0.1,
        betas: tuple[float, float] = (0.9, 0.95),
        eps: float = 1e-8,
        warmup_steps: int = 100,
        min_lr_ratio: float = 0.1,
        decay_steps: int | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if objective not in OBJECTIVES:
            raise ConfigError(f"model.objective '{objective}' is unknown; choose one of {sorted(OBJECTIVES)}")
        self.model_config = build_config(preset, config, vocab_size)
        positions = max_positions(self.model_config)
        if positions is not None and seq_len > positions:
            raise ConfigError(
                f"data.seq_len {seq_len} exceeds the model's {positions} positions (model.preset={preset}); "
                "lower --data.seq_len or raise the positions in --model.config"
            )
        self.objective = OBJECTIVES[objective]
        self.model = None  # built in configure_model, so sharded strategies can build it shard by shard
        # Token-weighted sums over a whole validation/test pass (synced across ranks by torchmetrics).
        self.eval_loss_sum = SumMetric()
        self.eval_token_count = SumMetric()

    # -- construction --------------------------------------------------------------------------------------
    def configure_model(self) -> None:
        if self.model is None:
            self.model = build_model(self.model_config)

    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        tokenizer_vocab = getattr(datamodule, "tokenizer_vocab_size", None)
        if tokenizer_vocab is not None and tokenizer_vocab > self.hparams.vocab_size:
            raise ConfigError(
                f"the tokenizer '{datamodule.tokenizer_path}' has {tokenizer_vocab} tokens but model.vocab_size is "
                f"{self.hparams.vocab_size}; set model vocab_size >= {tokenizer_vocab}"
            )

    # -- steps ---------------------------------------------------------------------------------------------
    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids).logits  # (B, T, V)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss_sum, count = self.objective(self(batch["input_ids"]), batch["labels"])
        loss = loss_sum / count
        self.log("train_loss", loss, prog_bar=True, on_step=True, on_epoch=False)
        self.log("lr", self.optimizers().param_groups[0]["lr"], prog_bar=True, on_step=True, on_epoch=False)
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._accumulate_eval_loss(batch)

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._accumulate_eval_loss(batch)

    def on_validation_epoch_end(self) -> None:
        self._log_eval_metrics("val")

    def on_test_epoch_end(self) -> None:
        split = getattr(getattr(self.trainer, "datamodule", None), "test_split", "test")
        self._log_eval_metrics(split, prefix="test")

    def _accumulate_eval_loss(self, batch: dict[str, torch.Tensor]) -> None:
        loss_sum, count = self.objective(self(batch["input_ids"]), batch["labels"])
        self.eval_loss_sum.update(loss_sum.detach())
        self.eval_token_count.update(count)

    def _log_eval_metrics(self, split: str, prefix: str | None = None) -> None:
        """Log ``{prefix}_loss`` (token-weighted mean over the whole split), ``_ppl`` and ``_bpb``."""
        prefix = prefix or split
        total, count = self.eval_loss_sum.compute(), self.eval_token_count.compute()  # summed over ranks
        self.eval_loss_sum.reset()
        self.eval_token_count.reset()
        if count == 0:
            return
        loss = total / count
        metrics = {f"{prefix}_loss": loss, f"{prefix}_ppl": torch.exp(loss)}
        bytes_per_token = self._bytes_per_token(split)
        if bytes_per_token is not None:
            metrics[f"{prefix}_bpb"] = loss / math.log(2) / bytes_per_token
        for name, value in metrics.items():
            self.log(name, value, prog_bar=not name.endswith("_ppl"), sync_dist=False)  # already summed over ranks
        if not self.trainer.sanity_checking:
            self.print(f"step {self.global_step}: " + "  ".join(f"{k} {v.item():.4f}" for k, v in metrics.items()))

    def _bytes_per_token(self, split: str) -> float | None:
        datamodule = getattr(self.trainer, "datamodule", None)
        return datamodule.bytes_per_token(split) if hasattr(datamodule, "bytes_per_token") else None

    # -- optimization --------------------------------------------------------------------------------------
    def configure_optimizers(self):
        hp = self.hparams
        optimizer = build_optimizer(
            self.model, hp.optimizer, hp.lr, hp.weight_decay, tuple(hp.betas), hp.eps, hp.muon_lr, hp.muon_momentum
        )
        total_steps = hp.decay_steps or self.trainer.max_steps
        if total_steps is None or total_steps <= 0:
            raise ConfigError("set --trainer.max_steps (or --model.decay_steps): the cosine schedule needs its length")
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: warmup_cosine(step, hp.warmup_steps, total_steps, hp.min_lr_ratio)
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step", "frequency": 1}}
