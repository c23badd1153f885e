"""Optimizers and the learning-rate schedule.

* ``adamw``: AdamW with weight decay only on weight matrices; biases, norm weights and embeddings get none
  (decaying them shrinks the scale the model needs and, for embeddings, penalises rare tokens).
* ``muon``: Muon (momentum orthogonalised by Newton-Schulz) on the hidden 2-D weight matrices, AdamW on the
  rest (embeddings, output head, norms, biases), as its authors recommend. On small CPU budgets it reaches a
  clearly lower loss in the same time (see docs/benchmarks.md).

The schedule is linear warmup then cosine decay to ``min_lr_ratio × lr``, stepped every optimizer step.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn
from torch.distributed.tensor import DTensor, distribute_tensor
from torch.optim.adamw import adamw

NORM_TYPES: tuple[type[nn.Module], ...] = (nn.LayerNorm, nn.GroupNorm)


def _is_norm(module: nn.Module) -> bool:
    # transformers' RMSNorm classes (LlamaRMSNorm, ...) are not nn.LayerNorm subclasses; match them by name.
    return isinstance(module, NORM_TYPES) or "Norm" in type(module).__name__


def split_parameters(model: nn.Module) -> dict[str, list[nn.Parameter]]:
    """Sort trainable parameters into ``matrices`` (hidden 2-D weights), ``embeddings`` (token/position
    embeddings and an untied output head) and ``no_decay`` (biases and norm weights). Tied weights appear once."""
    embedding_ids = {id(p) for m in model.modules() if isinstance(m, nn.Embedding) for p in m.parameters()}
    output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if output is not None:
        embedding_ids |= {id(p) for p in output.parameters()}
    norm_ids = {id(p) for m in model.modules() if _is_norm(m) for p in m.parameters(recurse=False)}
    groups: dict[str, list[nn.Parameter]] = {"matrices": [], "embeddings": [], "no_decay": []}
    seen: set[int] = set()
    for parameter in model.parameters():
        if not parameter.requires_grad or id(parameter) in seen:
            continue
        seen.add(id(parameter))
        if id(parameter) in embedding_ids:
            groups["embeddings"].append(parameter)
        elif id(parameter) in norm_ids or len(getattr(parameter, "ds_shape", parameter.shape)) < 2:  # ZeRO-3: ds_shape
            groups["no_decay"].append(parameter)
        else:
            groups["matrices"].append(parameter)
    return groups


def adamw_param_groups(groups: dict[str, list[nn.Parameter]], weight_decay: float) -> list[dict]:
    return [
        {"params": groups["matrices"], "weight_decay": weight_decay, "name": "matrices"},
        {"params": groups["embeddings"] + groups["no_decay"], "weight_decay": 0.0, "name": "no_decay"},
    ]


# Quintic Newton-Schulz coefficients of Muon's authors (also torch.optim.Muon's defaults).
NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)
NS_STEPS = 5
NS_EPS = 1e-7


def orthogonalize(matrix: torch.Tensor, steps: int = NS_STEPS, eps: float = NS_EPS) -> torch.Tensor:
    """Approximately the nearest semi-orthogonal matrix to ``matrix`` (U V^T of its SVD), by ``steps`` quintic
    Newton-Schulz iterations in bf16; the singular values come out roughly in [0.5, 1.5], which Muon tolerates."""
    a, b, c = NS_COEFFICIENTS
    x = matrix.bfloat16()
    tall = x.size(0) > x.size(1)
    if tall:
        x = x.T
    x = x / x.norm().clamp(min=eps)  # spectral norm <= Frobenius norm <= 1
    for _ in range(steps):
        gram = x @ x.T
        x = torch.addmm(x, torch.addmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    return x.T if tall else x


def _full(tensor: torch.Tensor) -> torch.Tensor:
    """The whole matrix behind a sharded (DTensor) one; a plain tensor as it is."""
    return tensor.full_tensor() if isinstance(tensor, DTensor) else tensor


def _like(value: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """``value`` (a whole matrix, equal on every rank) laid out as ``reference``: this rank's shard of a DTensor."""
    if isinstance(reference, DTensor):
        return distribute_tensor(value, reference.device_mesh, reference.placements, src_data_rank=None)
    return value


class MuonWithAdamW(torch.optim.Optimizer):
    """Muon on the hidden 2-D matrices and AdamW on everything else, as one ``torch.optim.Optimizer``.

    Each param group says which update it gets (``"algorithm": "muon"`` or ``"adamw"``), so Lightning's
    optimizer wrappers, LR schedulers, ``state_dict``/``load_state_dict`` and torch's distributed checkpoint
    helpers see an ordinary optimizer. Muon's update is ``torch.optim.Muon``'s (momentum, Nesterov, Newton-Schulz
    orthogonalisation, decoupled weight decay, ``match_rms_adamw`` LR scaling); AdamW's is torch's functional
    ``adamw``. Under FSDP2 a Muon matrix is a sharded DTensor: its update is orthogonalised on the whole matrix
    (gathered on every rank) and each rank keeps its own shard, so the result equals the unsharded one.
    """

    def __init__(
        self,
        param_groups: list[dict],
        lr: float = 1e-3,
        muon_lr: float = 0.02,
        momentum: float = 0.95,
        betas: tuple[float, float] = (0.9, 0.95),
        eps: float = 1e-8,
        weight_decay: float = 0.1,
    ) -> None:
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, momentum=momentum, algorithm="adamw")
        groups = []
        for group in param_groups:
            group = dict(group)
            if group.get("algorithm", "adamw") == "muon":
                group.setdefault("lr", muon_lr)
                shapes = [tuple(getattr(p, "ds_shape", p.shape)) for p in group["params"]]
                if any(len(shape) != 2 for shape in shapes):
                    raise ValueError(f"Muon only updates 2-D matrices; its group has shapes {shapes}")
            groups.append(group)
        super().__init__(groups, defaults)

    @torch.no_grad()
    def step(self, closure: Callable | None = None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            with_grad = [p for p in group["params"] if p.grad is not None]
            if not with_grad:
                continue
            if group["algorithm"] == "muon":
                self._muon_step(group, with_grad)
            else:
                self._adamw_step(group, with_grad)
        return loss

    def _muon_step(self, group: dict, params: list[torch.Tensor]) -> None:
        lr, momentum, weight_decay = group["lr"], group["momentum"], group["weight_decay"]
        for param in params:
            state = self.state[param]
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = torch.zeros_like(param.grad)
            buffer = state["momentum_buffer"]
            buffer.lerp_(param.grad, 1 - momentum)
            update = param.grad.lerp(buffer, momentum)  # Nesterov
            update = _like(orthogonalize(_full(update)).to(param.dtype), param)
            rows, columns = param.shape[:2]
            param.mul_(1 - lr * weight_decay)
            param.add_(update, alpha=-lr * 0.2 * math.sqrt(max(rows, columns)))  # match AdamW's update RMS

    def _adamw_step(self, group: dict, params: list[torch.Tensor]) -> None:
        exp_avgs, exp_avg_sqs, steps = [], [], []
        for param in params:
            state = self.state[param]
            if "step" not in state:
                state["step"] = torch.tensor(0.0)
                state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)
            exp_avgs.append(state["exp_avg"])
            exp_avg_sqs.append(state["exp_avg_sq"])
            steps.append(state["step"])
        beta1, beta2 = group["betas"]
        adamw(
            params,
            [p.grad for p in params],
            exp_avgs,
            exp_avg_sqs,
            [],
            steps,
            amsgrad=False,
            beta1=beta1,
            beta2=beta2,
            lr=group["lr"],
            weight_decay=group["weight_decay"],
            eps=group["eps"],
            maximize=False,
        )


def build_optimizer(
    model: nn.Module,
    name: str,
    lr: float,
    weight_decay: float,
    betas: tuple[float, float],
    eps: float,
    muon_lr: float,
    muon_momentum: float,
    cpu_offload: bool = False,
) -> torch.optim.Optimizer:
    """``adamw`` or ``muon`` over ``model``'s parameter groups. ``cpu_offload``: DeepSpeed keeps the optimizer
    state in CPU memory, where its vectorised CPU Adam (AdamW mode) takes the step with the same settings."""
    groups = split_parameters(model)
    if name == "adamw" and cpu_offload:
        from deepspeed.ops.adam import DeepSpeedCPUAdam

        return DeepSpeedCPUAdam(
            adamw_param_groups(groups, weight_decay), lr=lr, betas=betas, eps=eps, weight_decay=0.0, adamw_mode=True
        )
    if name == "adamw":
        return torch.optim.AdamW(adamw_param_groups(groups, weight_decay), lr=lr, betas=betas, eps=eps)
    if name == "muon":
        groups = [
            {"params": groups["matrices"], "algorithm": "muon", "name": "muon_matrices"},
            {"params": groups["embeddings"] + groups["no_decay"], "weight_decay": 0.0, "name": "no_decay"},
        ]
        return MuonWithAdamW(
            groups, lr=lr, muon_lr=muon_lr, momentum=muon_momentum, betas=betas, eps=eps, weight_decay=weight_decay
        )
    raise ValueError(f"unknown optimizer '{name}'")


def warmup_cosine(step: int, warmup_steps: int, total_steps: int, min_lr_ratio: float) -> float:
    """LR multiplier: linear from 1/warmup to 1 over ``warmup_steps``, then cosine down to ``min_lr_ratio``
    at ``total_steps`` (and held there after)."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    decay_steps = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
