"""The LightningModule: owns the model, the objective, the optimizer and the learning-rate schedule.

One training step reads top to bottom: ``batch["input_ids"]`` (B, T) from the data module -> the objective's
transform (on the CPU, in ``on_before_batch_transfer``: nothing for CLM, masking for MLM) -> the objective's
loss, a (loss sum, token count) pair -> mean loss for backward. Validation accumulates token-weighted sums so
``val/loss`` is the exact mean over every counted validation token (every next token for CLM, every masked
token for MLM), ``val/ppl = exp(val/loss)`` and ``val/bpb = val/loss / ln 2 / bytes_per_token``.

Logged names (one scheme for every logger): ``train/loss`` (the step's mean over the global batch), ``train/lr``,
``train/ppl`` and ``train/bpb`` (from the token-weighted mean loss of the logging window: the
``log_every_n_steps`` optimizer steps since the last write), ``val/loss``, ``val/ppl``, ``val/bpb`` and the same
under ``test/`` (or the name of the split ``data.test_split`` evaluates). A mixture of sources also logs each
source's ``val/<name>/loss``, ``/ppl`` and ``/bpb`` (its own validation split, its own bytes per token; the overall
``val/*`` are token-weighted over all of them), ``train/phase`` and ``train/tokens_seen/<name>``.

What the module knows of the data comes from the data module's :class:`DataDescription` (``data_description``,
linked by the CLI): it never reads ``trainer.datamodule``.
"""

from __future__ import annotations

import math
import os
import warnings
from typing import Any, Literal

import lightning as L
import torch
from torchmetrics import SumMetric

from lit_pretrain.callbacks.stability import StabilityGuard
from lit_pretrain.checkpoint_io import make_saves_atomic
from lit_pretrain.description import ALL, DataDescription
from lit_pretrain.errors import ConfigError
from lit_pretrain.models import (
    PRESETS,
    build_config,
    build_model,
    check_attention,
    check_same_vocabulary,
    load_pretrained_config,
    max_positions,
    meta_model,
    supports,
)
from lit_pretrain.objectives import build_objective
from lit_pretrain.optim import build_optimizer, warmup_cosine
from lit_pretrain.parallel import clip_by_global_norm, data_parallel
from lit_pretrain.strategies import (
    build_partitioned_model,
    check_strategy,
    convert_to_fp8,
    fsdp_shard,
    is_deepspeed,
    is_deepspeed_zero3,
    offloads_optimizer,
)
from lit_pretrain.windows import pinned_like

# The objective's transform lives in this module's on_before_batch_transfer while the data module counts
# consumed batches in on_after_batch_transfer; Lightning warns that the module's hook wins, which is intended.
warnings.filterwarnings("ignore", message=r"You have overridden `on_before_batch_transfer` in `LightningModule`")
# Our losses never modify a model output in place, which is what this FSDP2 notice is about.
warnings.filterwarnings("ignore", message=r"FSDP2-wrapped module .* returned a view tensor")
# Validation metrics are token-weighted sums already reduced over ranks (torchmetrics): no sync_dist needed.
warnings.filterwarnings("ignore", message=r"It is recommended to use `self.log\('(val|test)/")

# What a module built without the dataset's ids assumes: our trained tokenizers' end of text, id 0.
DEFAULT_TOKEN_IDS = {"end_of_text_id": 0}


class PretrainModule(L.LightningModule):
    """Pretrains a ``transformers`` causal LM (``objective: clm``) or masked LM (``objective: mlm``), from
    scratch or from the weights of a local Hugging Face model directory (continued pretraining).

    Args:
        preset: Size preset name (see ``lit_pretrain.models.PRESETS``), or None to use ``config`` alone.
            Ignored when ``init_from`` is set.
        config: Architecture config keys applied over the preset (e.g. ``{n_layer: 6}``); with no preset it
            must include ``model_type``. With ``init_from``, keys applied over that model's config.
        vocab_size: Embedding rows; linked from ``data.vocab_size`` by the CLI.
        seq_len: Training sequence length; linked from ``data.seq_len`` and checked against the positions.
        objective: ``clm`` (next-token prediction) or ``mlm`` (BERT masking; needs a tokenizer with a mask
            token, e.g. ``tokenizer.kind: mlm``).
        mlm_probability: Share of non-special tokens selected as MLM targets (80 % masked, 10 % random, 10 %
            kept). Validation uses the same rate, so keep it fixed within a comparison.
        mask_seed: Seed of the MLM masks (training masks also depend on the step, validation masks on the window).
        token_ids: The dataset tokenizer's special ids (``end_of_text_id``, ``bos_token_id``, ``mask_token_id``,
            ...); linked from ``data.token_ids`` by the CLI. They set the model config's bos / eos / pad and
            what the objective and the sampler treat as special. None: end of text is id 0.
        init_from: Local Hugging Face model directory (``save_pretrained`` output) to continue pretraining from;
            its architecture, vocabulary and special ids must match the dataset's tokenizer.
        trust_remote_code: Let an ``init_from`` directory whose config maps its own Python code (``auto_map``)
            run that code; off by default, and such a directory is refused with one line.
        attn_implementation: ``sdpa`` (default), ``eager``, ``flash_attention_2`` (needs flash-attn and a GPU)
            or ``flex_attention``, passed to ``transformers``.
        gradient_checkpointing: Recompute each block's activations in backward instead of storing them (less memory,
            about a third more compute); works under every strategy.
        compile: ``torch.compile`` the inner ``transformers`` model in place (``model.compile()``), so state-dict and
            checkpoint keys stay those of the model (no ``_orig_mod.``).
        fp8: Train the linear layers in FP8 through torchao (``convert_to_float8_training``); needs a CUDA GPU with
            compute capability >= 8.9 (H100, H200, L4, L40S) and ``pip install torchao``.
        init_seed: Seed of the initial weights (the same on every rank and under every strategy); None takes
            ``seed_everything``'s seed (0 without one).
        optimizer: ``adamw``, or ``muon`` (Muon on hidden matrices, AdamW on the rest; not under DeepSpeed).
        lr: Peak AdamW learning rate.
        muon_lr: Peak Muon learning rate (``optimizer: muon`` only).
        muon_momentum: Muon momentum.
        weight_decay: Decoupled weight decay on weight matrices (never on biases, norms or embeddings).
        betas: AdamW betas.
        eps: AdamW epsilon.
        warmup_steps: Optimizer steps of linear warmup.
        min_lr_ratio: The cosine decays to ``min_lr_ratio × peak`` at the last step.
        decay_steps: Optimizer steps over which the schedule runs; None takes ``trainer.max_steps``.
        data_description: What the data module describes of its data (vocabulary, special ids, tokenizer, bytes
            per token per split and source, the sources' names); linked from ``data.description`` by the CLI. From
            Python pass ``data_description=data.description``. None: no bits per byte, no samples.
    """

    def __init__(
        self,
        preset: str | None = "gpt2-tiny",
        config: dict[str, Any] | None = None,
        vocab_size: int = 50257,
        seq_len: int = 256,
        objective: Literal["clm", "mlm"] = "clm",
        mlm_probability: float = 0.15,
        mask_seed: int = 0,
        token_ids: dict[str, int] | None = None,
        init_from: str | None = None,
        trust_remote_code: bool = False,
        attn_implementation: str = "sdpa",
        gradient_checkpointing: bool = False,
        compile: bool = False,
        fp8: bool = False,
        init_seed: int | None = None,
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
        data_description: DataDescription | None = None,
    ) -> None:
        super().__init__()
        # The description is live (completed in the data module's setup) and no hyperparameter: checkpoints keep
        # its facts under "data_description" (on_save_checkpoint).
        self.save_hyperparameters(ignore=["data_description"])
        self.data_description = data_description
        self.token_ids = dict(token_ids or DEFAULT_TOKEN_IDS)
        self.objective = build_objective(objective, self.token_ids, vocab_size, mask_seed, mlm_probability)
        check_attention(attn_implementation)
        if init_from is not None:
            self.model_config = load_pretrained_config(init_from, config, trust_remote_code)
            self._check_pretrained_vocabulary(vocab_size)
            where = f"model.init_from={init_from}"
        else:
            self.model_config = build_config(preset, config, vocab_size, self.token_ids)
            where = f"model.preset={preset}"
        if not supports(self.objective.auto_class, self.model_config):
            fitting = sorted(name for name, p in PRESETS.items() if p.objective == objective)
            raise ConfigError(
                f"{where} is a {self.model_config.model_type} model, which has no {objective} head in transformers; "
                f"use model.objective {'clm' if objective == 'mlm' else 'mlm'} or a preset such as {fitting}"
            )
        positions = max_positions(self.model_config)
        if positions is not None and seq_len > positions:
            raise ConfigError(
                f"data.seq_len {seq_len} exceeds the model's {positions} positions ({where}); "
                "lower --data.seq_len or raise the positions in --model.config"
            )
        self.model = None  # built in configure_model, so sharded strategies can build it shard by shard
        # (optimizer step, global gradient norm before clipping), set by the grad_norm callback for clipping.
        self.pre_clip_grad_norm: tuple[int, torch.Tensor] | None = None
        self._mask_step, self._micro_batch = -1, 0  # position of the next training batch in its accumulation
        # Token-weighted sums over a whole validation/test pass (synced across ranks by torchmetrics).
        self.eval_loss_sum = SumMetric()
        self.eval_token_count = SumMetric()
        # A mixture's (loss sum, token count) per source over the pass: row i is validation loader i's.
        self._source_sums: torch.Tensor | None = None
        # Token-weighted loss of the current logging window (global over ranks), kept on the device: no sync.
        self._window_sum: torch.Tensor | float = 0.0
        self._window_count: torch.Tensor | float = 0.0

    def _check_pretrained_vocabulary(self, vocab_size: int) -> None:
        """The dataset's tokens must mean what the loaded embeddings were trained on (checked before any work)."""
        init_from, config = self.hparams.init_from, self.model_config
        if config.vocab_size < vocab_size:
            raise ConfigError(
                f"model.init_from '{init_from}' has vocab_size {config.vocab_size} but the dataset's tokenizer has "
                f"{vocab_size} tokens; prepare the data with that model's tokenizer (tokenizer.pretrained: {init_from})"
            )
        for key in ("bos_token_id", "eos_token_id", "pad_token_id"):
            theirs, ours = getattr(config, key, None), self.token_ids.get(key)
            if theirs is not None and ours is not None and theirs != ours:
                raise ConfigError(
                    f"model.init_from '{init_from}' has {key} {theirs} but the dataset's tokenizer has {ours}; "
                    f"prepare the data with that model's tokenizer (tokenizer.pretrained: {init_from})"
                )

    # -- construction --------------------------------------------------------------------------------------
    def configure_model(self) -> None:
        """Build the model where the strategy wants it: sharded block by block under FSDP2 (no rank holds the
        whole unsharded model), partitioned as it is built under DeepSpeed ZeRO-3, whole otherwise."""
        if self.model is not None:
            return
        hp = self.hparams
        strategy = self._trainer.strategy if self._trainer is not None else None
        precision = str(self._trainer.precision) if self._trainer is not None else "32-true"
        shard = fsdp_shard(strategy, precision)
        prepare = self._prepare_model if (hp.gradient_checkpointing or hp.fp8) else None
        seed = hp.init_seed if hp.init_seed is not None else int(os.environ.get("PL_GLOBAL_SEED", 0))
        if is_deepspeed_zero3(strategy):  # Lightning builds inside deepspeed.zero.Init: parameters come partitioned
            self.model = build_partitioned_model(
                self.model_config, self.objective.auto_class, hp.attn_implementation, seed
            )
            if prepare is not None:
                prepare(self.model)
        else:
            device = strategy.root_device if shard is not None else torch.get_default_device()
            self.model = build_model(
                self.model_config,
                self.objective.auto_class,
                hp.attn_implementation,
                hp.init_from,
                trust_remote_code=hp.trust_remote_code,
                device=device,
                seed=seed,
                shard=shard,
                prepare=prepare,
            )
        # The MLM head on masked positions only calls the inner model around the root's forward, which FSDP2
        # needs to gather the root's parameters (embeddings, head): sharded models take the full logits.
        self.objective.positionwise = shard is None
        if hp.compile:
            self.model.compile()  # in place: parameter names and checkpoint keys stay the model's own

    def meta_model(self):
        """This module's model on the meta device (exact parameter names and shapes, no memory)."""
        hp = self.hparams
        return meta_model(
            self.objective.auto_class, self.model_config, hp.attn_implementation, hp.get("trust_remote_code", False)
        )

    def _prepare_model(self, model) -> None:
        """Before the weights are materialised and sharded: FP8 linears (torchao converts before fully_shard) and
        activation checkpointing of every block (non-reentrant: works with FSDP2 and compile)."""
        if self.hparams.fp8:
            convert_to_fp8(model)
        if not self.hparams.gradient_checkpointing:
            return
        options = {"use_reentrant": False}
        if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.x
            model.activation_checkpointing_enable(activation_checkpointing_kwargs=options)
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=options)

    def setup(self, stage: str) -> None:
        make_saves_atomic(self.trainer.strategy)  # a kill during a save never corrupts last.ckpt
        data = self.data_description
        if data is None:
            return
        tokenizer_vocab = data.tokenizer_vocab_size
        if tokenizer_vocab is not None and tokenizer_vocab > self.hparams.vocab_size:
            raise ConfigError(
                f"the tokenizer '{data.tokenizer_path}' has {tokenizer_vocab} tokens but model.vocab_size is "
                f"{self.hparams.vocab_size}; set model vocab_size >= {tokenizer_vocab}"
            )
        data_ids = data.token_ids
        if data_ids:
            # Without explicit ids the module assumes end of text = bos = eos = 0; any id both name must agree.
            ours = {"bos_token_id": self.token_ids.get("end_of_text_id", 0), **self.token_ids}
            ours.setdefault("eos_token_id", ours["bos_token_id"])
            if any(ours[key] != data_ids[key] for key in ours.keys() & data_ids.keys()):
                raise ConfigError(
                    f"model.token_ids {self.token_ids} disagree with the dataset's {data_ids} "
                    f"('{data.tokenizer_path}'); pass token_ids=data.token_ids (the CLI links them)"
                )
        if self.hparams.init_from is not None and data.tokenizer_path is not None:
            check_same_vocabulary(self.hparams.init_from, data.tokenizer_path)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        if self.data_description is not None:  # for export (the tokenizer) and tools that read a checkpoint
            checkpoint["data_description"] = self.data_description.as_dict()

    # -- the objective's transform, on the CPU before the batch moves to the device -------------------------
    def on_before_batch_transfer(self, batch: dict[str, torch.Tensor], dataloader_idx: int) -> dict:
        trainer, input_ids = self.trainer, batch["input_ids"]
        if not trainer.training:
            transformed = self.objective.eval_batch(input_ids)
            if "counted" in batch:
                transformed = self.objective.drop_rows(transformed, batch["counted"])
            return pinned_like(transformed, input_ids, self.device)
        if trainer.global_step != self._mask_step:  # the first micro-batch of an optimizer step
            self._mask_step, self._micro_batch = trainer.global_step, 0
        micro_batch, self._micro_batch = self._micro_batch, self._micro_batch + 1
        rank, replicas = data_parallel(trainer)
        transformed = self.objective.train_batch(input_ids, trainer.global_step, micro_batch, rank, replicas)
        return pinned_like(transformed, input_ids, self.device)

    # -- steps ---------------------------------------------------------------------------------------------
    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids).logits  # (B, T, V)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss_sum, count = self.objective.loss(self.model, batch)
        replicas = data_parallel(self.trainer)[1]
        if replicas > 1:
            # Normalise by the token count of the whole global batch (MLM ranks count different numbers of
            # masked tokens): the gradient average over data-parallel ranks then equals one process's on the same
            # batch.
            totals = torch.stack([loss_sum.detach().float(), count.float()])
            total_sum, total_count = self.trainer.strategy.reduce(totals, reduce_op="sum")
            loss = loss_sum * replicas / total_count
        else:
            total_sum, total_count = loss_sum.detach().float(), count.float()
            loss = loss_sum / count
        mean = total_sum / total_count
        self.log("train/loss", mean, on_step=True, on_epoch=False, rank_zero_only=True)
        self.log("train/lr", self.optimizers().param_groups[0]["lr"], on_step=True, on_epoch=False)
        guard = next((c for c in self.trainer.callbacks if isinstance(c, StabilityGuard)), None)
        if guard is not None and guard.enabled:
            if not guard.skip_spikes:
                guard.watch(mean, self.trainer.global_step)  # checked before the optimizer step, without a wait here
            elif guard.check(float(mean), self.trainer.global_step):  # float() waits for the device
                return None  # a dropped spike: logged, but no backward, no update (one process only: check_runnable)
        self._log_window(total_sum, total_count)
        self._log_mixture()
        return loss

    def _log_mixture(self) -> None:
        """A mixture's ``train/phase`` and ``train/tokens_seen/<name>`` (of the batches consumed so far)."""
        data = self.data_description
        if data is None or data.progress is None:
            return
        progress = data.progress()
        seq_len = self.hparams.seq_len
        metrics = {"train/phase": float(progress["phase"])}
        metrics.update({f"train/tokens_seen/{name}": float(n * seq_len) for name, n in progress["windows"].items()})
        self.log_dict(metrics, on_step=True, on_epoch=False, rank_zero_only=True)

    def _log_window(self, total_sum: torch.Tensor, total_count: torch.Tensor) -> None:
        """``train/ppl`` and ``train/bpb`` of the logging window so far, so what the logger writes every
        ``log_every_n_steps`` steps is the token-weighted mean loss over exactly those steps' tokens."""
        self._window_sum = self._window_sum + total_sum
        self._window_count = self._window_count + total_count
        window = self._window_sum / self._window_count
        metrics = {"train/ppl": torch.exp(window)}
        bytes_per_token = self._bytes_per_token("train")
        if bytes_per_token is not None:
            metrics["train/bpb"] = window / math.log(2) / bytes_per_token
        self.log_dict(metrics, on_step=True, on_epoch=False, rank_zero_only=True)

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        trainer = self.trainer
        stepped = (batch_idx + 1) % trainer.accumulate_grad_batches == 0
        # Lightning writes step metrics when the optimizer step count reaches a multiple of log_every_n_steps.
        if stepped and trainer.log_every_n_steps and trainer.global_step % trainer.log_every_n_steps == 0:
            self._window_sum = self._window_count = 0.0

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None) -> None:
        """Norm clipping by the true global norm under every strategy (Lightning's FSDP path refuses norm clipping,
        #19235; a sharded gradient's own norm is only its shard's); the ``grad_norm`` callback logs the norm.
        DeepSpeed clips inside its engine (``gradient_clip_val`` goes to its config)."""
        if not gradient_clip_val or gradient_clip_algorithm == "value" or is_deepspeed(self.trainer.strategy):
            return super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)
        parameters = [p for group in optimizer.param_groups for p in group["params"]]
        step, norm = self.pre_clip_grad_norm or (None, None)
        # The grad_norm callback computed this step's norm over the same gradients just before: reuse it.
        clip_by_global_norm(parameters, float(gradient_clip_val), norm if step == self.trainer.global_step else None)

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        self._accumulate_eval_loss(batch, dataloader_idx)

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        self._accumulate_eval_loss(batch, dataloader_idx)

    def on_validation_epoch_end(self) -> None:
        self._log_eval_metrics("val")

    def on_test_epoch_end(self) -> None:
        split = self.data_description.test_split if self.data_description is not None else "test"
        self._log_eval_metrics(split, prefix="test")

    def _sources(self) -> list[str]:
        return self.data_description.sources if self.data_description is not None else []

    def _accumulate_eval_loss(self, batch: dict[str, torch.Tensor], dataloader_idx: int = 0) -> None:
        loss_sum, count = self.objective.loss(self.model, batch)
        self.eval_loss_sum.update(loss_sum.detach())
        self.eval_token_count.update(count)
        sources = self._sources()
        if sources:  # a mixture: loader i is source i's validation split
            if self._source_sums is None:
                self._source_sums = torch.zeros(len(sources), 2, device=loss_sum.device)
            self._source_sums[dataloader_idx] += torch.stack([loss_sum.detach().float(), count.float()])

    def _log_eval_metrics(self, split: str, prefix: str | None = None) -> None:
        """Log ``{prefix}/loss`` (token-weighted mean over the whole split), ``/ppl`` and ``/bpb``."""
        prefix = prefix or split
        total, count = self.eval_loss_sum.compute(), self.eval_token_count.compute()  # summed over ranks
        self.eval_loss_sum.reset()
        self.eval_token_count.reset()
        if count == 0:
            return
        loss = total / count
        metrics = {f"{prefix}/loss": loss, f"{prefix}/ppl": torch.exp(loss)}
        bytes_per_token = self._bytes_per_token(split)
        if bytes_per_token is not None:
            metrics[f"{prefix}/bpb"] = loss / math.log(2) / bytes_per_token
        if self._source_sums is not None:
            sums = self.trainer.strategy.reduce(self._source_sums, reduce_op="sum")  # over ranks
            self._source_sums = None
            for name, (source_total, source_count) in zip(self._sources(), sums):
                if source_count == 0:
                    continue
                source_loss = source_total / source_count
                metrics[f"{prefix}/{name}/loss"] = source_loss
                metrics[f"{prefix}/{name}/ppl"] = torch.exp(source_loss)
                source_bytes = self._bytes_per_token(split, name)
                if source_bytes is not None:
                    metrics[f"{prefix}/{name}/bpb"] = source_loss / math.log(2) / source_bytes
        self.log_dict(metrics, sync_dist=False, add_dataloader_idx=False)  # already summed over ranks
        if not self.trainer.sanity_checking:
            self.print(f"step {self.global_step}: " + "  ".join(f"{k} {v.item():.4f}" for k, v in metrics.items()))

    def _bytes_per_token(self, split: str, source: str = ALL) -> float | None:
        data = self.data_description
        return None if data is None else data.bytes_per_token_of(split, source)

    # -- optimization --------------------------------------------------------------------------------------
    def configure_optimizers(self):
        hp = self.hparams
        strategy = self.trainer.strategy
        check_strategy(strategy, hp.optimizer, hp.init_from, hp.fp8)  # also when driven from Python
        optimizer = build_optimizer(
            self.model,
            hp.optimizer,
            hp.lr,
            hp.weight_decay,
            tuple(hp.betas),
            hp.eps,
            hp.muon_lr,
            hp.muon_momentum,
            cpu_offload=offloads_optimizer(strategy),
        )
        total_steps = hp.decay_steps or self.trainer.max_steps
        if total_steps is None or total_steps <= 0:
            raise ConfigError("set --trainer.max_steps (or --model.decay_steps): the cosine schedule needs its length")
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: warmup_cosine(step, hp.warmup_steps, total_steps, hp.min_lr_ratio)
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step", "frequency": 1}}
