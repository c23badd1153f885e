"""The strategies the presets under ``configs/strategy/`` name, and the checks that refuse a combination that
cannot run before any work is done.

* DDP: Lightning's ``DDPStrategy`` (gloo on CPU, NCCL on GPUs); the model is built whole on every rank.
* FSDP: :class:`FSDP2Strategy`, Lightning's ``ModelParallelStrategy`` with every device in one data-parallel
  group; the module's ``configure_model`` shards each transformer block with ``fully_shard`` as it is built
  (:func:`lit_pretrain.parallel.materialize`). Runs on CPU with gloo, which is how CI tests sharded training.
* DeepSpeed ZeRO 1-3 (and 3 + CPU offload): Lightning's ``DeepSpeedStrategy`` with our AdamW and schedule; CUDA
  only. Under ZeRO-3 Lightning builds the model inside ``deepspeed.zero.Init`` (partitioned as it is created) and
  the module initialises it with the architecture's own init on gathered parameters.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Literal

import torch
from lightning.fabric.plugins.collectives.torch_collective import default_pg_timeout
from lightning.pytorch.strategies import DeepSpeedStrategy, ModelParallelStrategy, Strategy
from torch import nn

from lit_pretrain.errors import ConfigError
from lit_pretrain.parallel import fsdp_shard_function, materialize

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
OTHER_STRATEGIES = "use --config configs/strategy/ddp.yaml or configs/strategy/fsdp.yaml on this machine"
FP8_MIN_CAPABILITY = (8, 9)  # Ada / Hopper: the first GPUs with FP8 tensor cores


class FSDP2Strategy(ModelParallelStrategy):
    """FSDP2 (``fully_shard``) over all devices, one transformer block per unit (plus the root).

    Args:
        param_dtype: dtype the sharded parameters are all-gathered and computed in. ``auto``: bfloat16 under
            ``bf16-mixed``/``bf16-true`` precision, else the parameters' own dtype (fp32 under ``16-mixed``).
        reduce_dtype: dtype of the gradient reduce-scatter (``float32``: exact sums even under bf16).
        reshard_after_forward: Free each block's gathered parameters after its forward (ZeRO-3-like memory); False
            keeps them until backward (ZeRO-2-like: less communication, more memory).
        save_distributed_checkpoint: True: each rank writes its shard (a checkpoint directory); False: rank 0 writes
            one file with the full weights and optimizer state.
        data_parallel_size: Processes sharing the shards; ``auto``: all of them (devices x nodes).
        process_group_backend: ``nccl`` on GPUs, ``gloo`` on CPU by default.
        timeout: Collective timeout.
    """

    def __init__(
        self,
        param_dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto",
        reduce_dtype: Literal["float32", "bfloat16", "float16"] = "float32",
        reshard_after_forward: bool = True,
        save_distributed_checkpoint: bool = True,
        data_parallel_size: Literal["auto"] | int = "auto",
        process_group_backend: str | None = None,
        timeout: timedelta = default_pg_timeout,
    ) -> None:
        super().__init__(
            data_parallel_size=data_parallel_size,
            tensor_parallel_size=1,
            save_distributed_checkpoint=save_distributed_checkpoint,
            process_group_backend=process_group_backend,
            timeout=timeout,
        )
        self.param_dtype, self.reduce_dtype = param_dtype, reduce_dtype
        self.reshard_after_forward = reshard_after_forward

    def setup_environment(self) -> None:
        if self._data_parallel_size == "auto":  # every process holds one shard (no tensor parallelism)
            self._data_parallel_size = self.num_nodes * self.num_processes
        super().setup_environment()

    def shard_function(self, precision: str) -> Callable[[nn.Module], None]:
        param_dtype = self.param_dtype
        if param_dtype == "auto":
            param_dtype = {"bf16-mixed": "bfloat16", "bf16-true": "bfloat16"}.get(precision)
        return fsdp_shard_function(
            self.device_mesh["data_parallel"],
            DTYPES[param_dtype] if param_dtype else None,
            DTYPES[self.reduce_dtype],
            self.reshard_after_forward,
        )


def fsdp_shard(strategy: Strategy | None, precision: str) -> Callable[[nn.Module], None] | None:
    """The ``fully_shard`` call ``configure_model`` applies under this strategy, or None when it does not shard."""
    if isinstance(strategy, FSDP2Strategy):
        return strategy.shard_function(precision)
    if isinstance(strategy, ModelParallelStrategy):  # Lightning's own: data parallel only, default FSDP2 settings
        if strategy.device_mesh["tensor_parallel"].size() > 1:
            raise ConfigError(
                "trainer.strategy ModelParallelStrategy with tensor_parallel_size > 1: tensor parallelism is not "
                "supported yet; use --config configs/strategy/fsdp.yaml"
            )
        return fsdp_shard_function(strategy.device_mesh["data_parallel"], None, torch.float32, True)
    return None


def is_deepspeed(strategy: Strategy | None) -> bool:
    return isinstance(strategy, DeepSpeedStrategy)


def is_deepspeed_zero3(strategy: Strategy | None) -> bool:
    return is_deepspeed(strategy) and strategy.zero_stage_3


def offloads_optimizer(strategy: Strategy | None) -> bool:
    """Whether DeepSpeed keeps the optimizer state on the CPU (then the step is DeepSpeed's CPU Adam)."""
    if not is_deepspeed(strategy):
        return False
    offload = strategy.config.get("zero_optimization", {}).get("offload_optimizer") or {}
    return offload.get("device", "none") not in ("none", None)


def build_partitioned_model(config, auto_class, attn_implementation: str, seed: int) -> nn.Module:
    """Under ZeRO-3 (inside Lightning's ``deepspeed.zero.Init``): the model comes partitioned as it is built, and
    each module is initialised by the architecture's own init on its gathered parameters, children first, as
    everywhere else (:func:`lit_pretrain.parallel.materialize`)."""
    import deepspeed

    model = auto_class.from_config(config, attn_implementation=attn_implementation)

    def gathered(parameters: list[nn.Parameter]):
        return deepspeed.zero.GatheredParameters(parameters, modifier_rank=0)

    materialize(model, "cpu", seed, around=gathered)
    return model


def check_fp8_device() -> None:
    if not torch.cuda.is_available():
        raise ConfigError(
            "model.fp8 needs a CUDA GPU with compute capability >= 8.9 (H100, H200, L4, L40S) and this machine has "
            "none; set --model.fp8 false"
        )
    capability = torch.cuda.get_device_capability()
    if capability < FP8_MIN_CAPABILITY:
        raise ConfigError(
            f"model.fp8 needs a GPU with compute capability >= 8.9 but {torch.cuda.get_device_name()} has "
            f"{capability[0]}.{capability[1]}; set --model.fp8 false (bf16-mixed is the fastest choice there)"
        )


def convert_to_fp8(model: nn.Module) -> int:
    """Swap the model's ``nn.Linear`` layers for torchao's FP8 training linears (dimensions divisible by 16, the
    output head kept in high precision, as torchao recommends). Returns how many layers were converted."""
    check_fp8_device()
    try:
        from torchao.float8 import convert_to_float8_training
    except ImportError:
        raise ConfigError(
            "model.fp8 needs torchao: pip install 'lit-pretrain[fp8]'; or set --model.fp8 false"
        ) from None
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    eligible = [
        m
        for m in model.modules()
        if isinstance(m, nn.Linear) and m is not head and m.in_features % 16 == 0 and m.out_features % 16 == 0
    ]
    if not eligible:
        raise ConfigError(
            f"model.fp8: the {model.config.model_type} model has no nn.Linear layer torchao can convert (GPT-2 uses "
            "Conv1D); use a llama or bert preset, or set --model.fp8 false"
        )
    chosen = {id(m) for m in eligible}
    convert_to_float8_training(model, module_filter_fn=lambda module, name: id(module) in chosen)
    return len(eligible)


def check_strategy(strategy: Strategy, optimizer: str, init_from: str | None, fp8: bool) -> None:
    """Refuse, with one line naming the key and what to do, what this strategy cannot run on this machine."""
    if is_deepspeed(strategy):
        stage = strategy.config.get("zero_optimization", {}).get("stage")
        if not torch.cuda.is_available():
            raise ConfigError(
                f"trainer.strategy DeepSpeedStrategy (ZeRO stage {stage}) runs on CUDA GPUs only and this machine has "
                f"none; {OTHER_STRATEGIES}"
            )
        if optimizer == "muon":
            raise ConfigError(
                "model.optimizer muon cannot run under DeepSpeedStrategy (ZeRO flattens and partitions the matrices "
                "Muon orthogonalises); use --model.optimizer adamw, or configs/strategy/fsdp.yaml to keep Muon"
            )
        if init_from is not None and strategy.zero_stage_3:
            raise ConfigError(
                "model.init_from under DeepSpeed ZeRO-3 is not supported (from_pretrained inside deepspeed.zero.Init "
                "fails, Lightning #19259); use configs/strategy/fsdp.yaml or deepspeed_zero2.yaml"
            )
    if fp8:
        check_fp8_device()
