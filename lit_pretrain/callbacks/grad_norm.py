"""The true global gradient norm, every optimizer step, under every strategy.

Logged: ``train/grad_norm`` (L2 over all gradients, before clipping, after AMP's unscaling) and
``train/clip_fraction`` (share of the optimizer steps so far whose norm exceeded ``trainer.gradient_clip_val``);
with ``per_block: true`` also ``grad_norm/block_NN`` per transformer block and ``grad_norm/other`` (embeddings,
final norm, head). Lightning's ``grad_norm()`` gives per-shard norms under FSDP and fails under FSDP2: here a
sharded (DTensor) norm is reduced over the shards; under DeepSpeed, whose gradients are not on the parameters,
the engine's own global norm is read after its step.
"""

from __future__ import annotations

import lightning as L
import torch

from lit_pretrain.parallel import global_grad_norm, transformer_blocks
from lit_pretrain.strategies import is_deepspeed


class GradientNorm(L.Callback):
    """Args:
    enabled: False switches it off (``--grad_norm.enabled false``).
    per_block: Also log one norm per transformer block (one reduction each under FSDP2).
    """

    def __init__(self, enabled: bool = True, per_block: bool = False) -> None:
        self.enabled, self.per_block = enabled, per_block
        self.steps = self.clipped = 0

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer) -> None:
        if not self.enabled or is_deepspeed(trainer.strategy):
            return
        norm = global_grad_norm([p for group in optimizer.param_groups for p in group["params"]])
        if hasattr(pl_module, "pre_clip_grad_norm"):  # PretrainModule clips with it: one norm pass per step
            pl_module.pre_clip_grad_norm = (trainer.global_step, norm)
        metrics = self._count(trainer, norm)
        if self.per_block:
            metrics.update(self._block_norms(pl_module.model))
        pl_module.log_dict(metrics, on_step=True, on_epoch=False, rank_zero_only=True)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not self.enabled or not is_deepspeed(trainer.strategy) or (batch_idx + 1) % trainer.accumulate_grad_batches:
            return
        norm = trainer.strategy.deepspeed_engine.get_global_grad_norm()
        if norm is not None:
            pl_module.log_dict(self._count(trainer, torch.as_tensor(float(norm))), on_step=True, on_epoch=False)

    def _count(self, trainer: L.Trainer, norm: torch.Tensor) -> dict[str, torch.Tensor]:
        """The clip count stays a tensor on the norm's device: no host-device synchronisation per step."""
        self.steps += 1
        clip = trainer.gradient_clip_val
        if clip and trainer.gradient_clip_algorithm in (None, "norm"):
            self.clipped = self.clipped + (norm.detach() > float(clip)).to(torch.float32)
        return {"train/grad_norm": norm, "train/clip_fraction": torch.as_tensor(self.clipped / self.steps)}

    @staticmethod
    def _block_norms(model: torch.nn.Module) -> dict[str, torch.Tensor]:
        blocks = transformer_blocks(model)
        in_blocks = {id(p) for block in blocks for p in block.parameters()}
        norms = {
            f"grad_norm/block_{i:02d}": global_grad_norm(list(block.parameters())) for i, block in enumerate(blocks)
        }
        norms["grad_norm/other"] = global_grad_norm([p for p in model.parameters() if id(p) not in in_blocks])
        return norms

    def state_dict(self) -> dict:
        return {"steps": self.steps, "clipped": int(self.clipped)}

    def load_state_dict(self, state_dict: dict) -> None:
        self.steps, self.clipped = state_dict.get("steps", 0), state_dict.get("clipped", 0)
