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
        elif id(parameter) in norm_ids or parameter.ndim < 2:
            groups["no_decay"].append(parameter)
        else:
            groups["matrices"].append(parameter)
    return groups


def adamw_param_groups(groups: dict[str, list[nn.Parameter]], weight_decay: float) -> list[dict]:
    return [
        {"params": groups["matrices"], "weight_decay": weight_decay, "name": "matrices"},
        {"params": groups["embeddings"] + groups["no_decay"], "weight_decay": 0.0, "name": "no_decay"},
    ]


class MuonWithAdamW(torch.optim.Optimizer):
    """One optimizer object over two inner ones (Lightning's automatic optimization takes a single optimizer).

    ``param_groups`` is the inner groups' concatenation; the dicts are shared, so a scheduler that edits
    ``group["lr"]`` drives both inner optimizers.
    """

    def __init__(self, muon: torch.optim.Optimizer, adamw: torch.optim.Optimizer) -> None:
        self.inner = [muon, adamw]
        # Deliberately skip Optimizer.__init__: parameters are owned by the inner optimizers.
        self.defaults = {}
        self.param_groups = muon.param_groups + adamw.param_groups
        self._optimizer_step_pre_hooks = {}
        self._optimizer_step_post_hooks = {}

    @property
    def state(self):  # merged view, used by tools that inspect optimizer state
        return {**self.inner[0].state, **self.inner[1].state}

    @torch.no_grad()
    def step(self, closure: Callable | None = None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for optimizer in self.inner:
            optimizer.step()
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        for optimizer in self.inner:
            optimizer.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict:
        return {"muon": self.inner[0].state_dict(), "adamw": self.inner[1].state_dict()}

    def load_state_dict(self, state_dict: dict) -> None:
        self.inner[0].load_state_dict(state_dict["muon"])
        self.inner[1].load_state_dict(state_dict["adamw"])
        self.param_groups = self.inner[0].param_groups + self.inner[1].param_groups


def build_optimizer(
    model: nn.Module,
    name: str,
    lr: float,
    weight_decay: float,
    betas: tuple[float, float],
    eps: float,
    muon_lr: float,
    muon_momentum: float,
) -> torch.optim.Optimizer:
    groups = split_parameters(model)
    if name == "adamw":
        return torch.optim.AdamW(adamw_param_groups(groups, weight_decay), lr=lr, betas=betas, eps=eps)
    if name == "muon":
        muon = torch.optim.Muon(
            [{"params": groups["matrices"], "name": "muon_matrices"}],
            lr=muon_lr,
            weight_decay=weight_decay,
            momentum=muon_momentum,
            adjust_lr_fn="match_rms_adamw",
        )
        adamw_groups = [{"params": groups["embeddings"] + groups["no_decay"], "weight_decay": 0.0, "name": "no_decay"}]
        adamw = torch.optim.AdamW(adamw_groups, lr=lr, betas=betas, eps=eps)
        return MuonWithAdamW(muon, adamw)
    raise ValueError(f"unknown optimizer '{name}'")


def warmup_cosine(step: int, warmup_steps: int, total_steps: int, min_lr_ratio: float) -> float:
    """LR multiplier: linear from 1/warmup to 1 over ``warmup_steps``, then cosine down to ``min_lr_ratio``
    at ``total_steps`` (and held there after)."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    decay_steps = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
