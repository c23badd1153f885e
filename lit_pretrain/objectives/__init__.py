"""Training objectives, selected by ``model.objective``: each is one module naming its ``transformers`` auto
class, its per-batch transform and its loss (see :mod:`lit_pretrain.objectives.base`)."""

from __future__ import annotations

from lit_pretrain.errors import ConfigError
from lit_pretrain.objectives.base import IGNORE_INDEX, Objective, token_cross_entropy
from lit_pretrain.objectives.clm import CausalLM, clm_loss
from lit_pretrain.objectives.mlm import MaskedLM, mask_tokens, mlm_loss

OBJECTIVES: dict[str, type[Objective]] = {"clm": CausalLM, "mlm": MaskedLM}


def build_objective(
    name: str, token_ids: dict[str, int], vocab_size: int, seed: int = 0, mlm_probability: float = 0.15
) -> Objective:
    """The objective ``name`` for a tokenizer with these special ids, checked against it."""
    if name not in OBJECTIVES:
        raise ConfigError(f"model.objective '{name}' is unknown; choose one of {sorted(OBJECTIVES)}")
    options = {"probability": mlm_probability} if name == "mlm" else {}
    objective = OBJECTIVES[name](token_ids, vocab_size, seed=seed, **options)
    objective.check()
    return objective


__all__ = [
    "IGNORE_INDEX",
    "OBJECTIVES",
    "CausalLM",
    "MaskedLM",
    "Objective",
    "build_objective",
    "clm_loss",
    "mask_tokens",
    "mlm_loss",
    "token_cross_entropy",
]
