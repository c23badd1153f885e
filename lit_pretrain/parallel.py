"""Building the model for every strategy, and what sharding asks of the training step.

A model is built with its parameters on the meta device (no memory), then materialised module by module in a
fixed order (children before parents, as transformers' own ``initialize_weights``) with the architecture's own
``_init_weights`` under a fixed seed. Every strategy gets the same initial weights this way: one process, DDP,
and FSDP2, where each transformer block is sharded (``fully_shard``) as soon as it is initialised, so no rank
ever holds more than one unsharded block besides the root's own parameters (embeddings, final norm, head).

The strategies themselves (which of them shards, with what settings) are in :mod:`lit_pretrain.strategies`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

import torch
from torch import nn
from torch.distributed.tensor import DTensor
from transformers import PreTrainedModel


@contextmanager
def parameters_on_meta() -> Iterator[None]:
    """Every parameter registered inside is moved to the meta device; buffers stay real (rotary frequencies,
    position ids and the like are computed at construction and cost little)."""
    register = nn.Module.register_parameter

    def register_on_meta(module: nn.Module, name: str, parameter: nn.Parameter | None) -> None:
        register(module, name, parameter)
        if parameter is not None and parameter.device.type != "meta":
            module._parameters[name] = nn.Parameter(parameter.to("meta"), requires_grad=parameter.requires_grad)

    nn.Module.register_parameter = register_on_meta
    try:
        yield
    finally:
        nn.Module.register_parameter = register


def transformer_blocks(model: nn.Module) -> list[nn.Module]:
    """The repeated blocks of a transformer: the elements of its longest ``nn.ModuleList`` (``transformer.h`` of
    GPT-2, ``model.layers`` of Llama, ``encoder.layer`` of BERT)."""
    lists = [m for m in model.modules() if isinstance(m, nn.ModuleList) and len(m) > 0]
    return list(max(lists, key=len)) if lists else []


def materialize(
    model: PreTrainedModel,
    device: torch.device | str,
    seed: int,
    shard: Callable[[nn.Module], None] | None = None,
    units: list[nn.Module] = (),
    around: Callable[[list[nn.Parameter]], AbstractContextManager] | None = None,
) -> None:
    """Give every meta parameter of ``model`` real storage on ``device`` and its architecture's initial values.

    Modules are visited children first, each initialised by the ``_init_weights`` of its nearest enclosing
    ``PreTrainedModel`` inside a forked RNG seeded with ``seed``, so the result does not depend on what drew random
    numbers before, nor on the strategy. A module in ``units`` is passed to ``shard`` right after it is
    initialised, and the root last. Tied parameters (an output head sharing the token embedding) stay one tensor,
    initialised once. ``around`` wraps each module's initialisation given its parameters (DeepSpeed ZeRO-3
    gathers them there)."""
    names: dict[int, int] = {}
    for _, parameter in model.named_parameters(remove_duplicate=False):
        names[id(parameter)] = names.get(id(parameter), 0) + 1
    tied = {key for key, count in names.items() if count > 1}
    made: dict[int, nn.Parameter] = {}
    unit_ids = {id(unit) for unit in units}

    def visit(module: nn.Module, owner: PreTrainedModel) -> None:
        for child in module.children():
            visit(child, child if isinstance(child, PreTrainedModel) else owner)
        fresh = []
        for name, parameter in list(module._parameters.items()):
            if parameter is None or not parameter.is_meta:
                continue
            if id(parameter) in made:  # the other end of a tie: already real and initialised
                module._parameters[name] = made[id(parameter)]
                continue
            real = nn.Parameter(torch.empty_like(parameter, device=device), requires_grad=parameter.requires_grad)
            module._parameters[name] = real
            fresh.append((id(parameter), real))
        if around is None:
            owner._init_weights(module)
        else:
            with around(list(module.parameters(recurse=False))):
                owner._init_weights(module)
        for key, real in fresh:
            if key in tied:
                real._is_hf_initialized = True  # transformers' init functions skip it at the tie's other end
                made[key] = real
        if shard is not None and id(module) in unit_ids:
            shard(module)

    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        visit(model, model)
    for parameter in made.values():
        del parameter._is_hf_initialized
    if shard is not None:
        shard(model)


def fsdp_shard_function(mesh, param_dtype: torch.dtype | None, reduce_dtype: torch.dtype, reshard_after_forward: bool):
    """``fully_shard`` with our settings, for :func:`materialize`."""
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    policy = MixedPrecisionPolicy(param_dtype=param_dtype, reduce_dtype=reduce_dtype)

    def shard(module: nn.Module) -> None:
        fully_shard(module, mesh=mesh, mp_policy=policy, reshard_after_forward=reshard_after_forward)

    return shard


def is_sharded(model: nn.Module) -> bool:
    return any(isinstance(p, DTensor) for p in model.parameters())


def global_grad_norm(parameters: list[torch.Tensor]) -> torch.Tensor:
    """The 2-norm of all gradients together, over every shard on every rank (a DTensor's local norm is only its
    shard's: reduce it, pytorch #170862)."""
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return torch.tensor(0.0)
    norm = torch.nn.utils.get_total_norm(grads, norm_type=2.0)
    return norm.full_tensor() if isinstance(norm, DTensor) else norm


def _grouped(tensors: list[torch.Tensor]) -> dict[tuple, list[torch.Tensor]]:
    groups: dict[tuple, list[torch.Tensor]] = {}
    for tensor in tensors:
        groups.setdefault((tensor.device, tensor.dtype), []).append(tensor)
    return groups


def clip_by_global_norm(
    parameters: list[torch.Tensor], max_norm: float, norm: torch.Tensor | None = None
) -> torch.Tensor:
    """Scale all gradients by ``min(1, max_norm / global norm)``; returns the norm before clipping. ``norm``: the
    global norm of these gradients when already computed this step (the ``grad_norm`` callback's)."""
    norm = global_grad_norm(parameters) if norm is None else norm
    coefficient = torch.clamp(max_norm / (norm + 1e-6), max=1.0)
    local = [p.grad.to_local() if isinstance(p.grad, DTensor) else p.grad for p in parameters if p.grad is not None]
    for device_and_dtype, grads in _grouped(local).items():
        torch._foreach_mul_(grads, coefficient.to(*device_and_dtype))
    return norm


def data_parallel(trainer) -> tuple[int, int]:
    """(rank, size) of this process in the data-parallel dimension: what splits the batches. With DDP, FSDP and
    DeepSpeed every process is a data-parallel rank; a model-parallel strategy (tensor or pipeline parallelism)
    has fewer data-parallel ranks than processes, and its ``distributed_sampler_kwargs`` say which (Lightning's
    ``ModelParallelStrategy`` answers from its ``data_parallel`` mesh dimension). No Trainer, or one process:
    (0, 1)."""
    strategy = getattr(trainer, "strategy", None)
    try:
        kwargs = getattr(strategy, "distributed_sampler_kwargs", None)
    except (
        AssertionError,
        RuntimeError,
        TypeError,
    ):  # ModelParallelStrategy before setup (no device mesh yet): every process, as DDP
        return trainer.global_rank, trainer.world_size
    if not kwargs:
        return 0, 1
    return int(kwargs["rank"]), int(kwargs["num_replicas"])
