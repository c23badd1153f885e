import copy
import math

import pytest
import torch
from transformers import AutoModelForCausalLM

from lit_pretrain.models import build_config, build_model
from lit_pretrain.optim import MuonWithAdamW, build_optimizer, split_parameters, warmup_cosine


@pytest.mark.parametrize("preset", ["gpt2-tiny", "llama-tiny"])
def test_weight_decay_only_on_hidden_matrices(preset):
    model = build_model(build_config(preset, None, vocab_size=100), AutoModelForCausalLM)
    groups = split_parameters(model)
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for p in groups["matrices"]}
    exempt = {names[id(p)] for p in groups["embeddings"] + groups["no_decay"]}
    assert decayed and not decayed & exempt
    assert len(decayed) + len(exempt) == len(list(model.parameters()))  # every parameter once, tied ones once
    assert all(
        ("emb" in n or "wte" in n or "wpe" in n or "lm_head" in n or "norm" in n or "ln_" in n or n.endswith("bias"))
        for n in exempt
    )
    assert not any(n.endswith("bias") or "ln_" in n or "norm" in n for n in decayed)

    optimizer = build_optimizer(model, "adamw", 1e-3, 0.1, (0.9, 0.95), 1e-8, 0.02, 0.95)
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.1, 0.0]
    assert optimizer.param_groups[0]["betas"] == (0.9, 0.95)


def test_schedule_values_at_warmup_end_and_at_the_end():
    warmup, total, floor = 10, 110, 0.1
    assert warmup_cosine(0, warmup, total, floor) == pytest.approx(0.1)
    assert warmup_cosine(warmup - 1, warmup, total, floor) == pytest.approx(1.0)  # last warmup step: peak
    assert warmup_cosine(warmup, warmup, total, floor) == pytest.approx(1.0)
    assert warmup_cosine(60, warmup, total, floor) == pytest.approx(floor + (1 - floor) * 0.5)  # half way
    assert warmup_cosine(total, warmup, total, floor) == pytest.approx(floor)
    assert warmup_cosine(total + 50, warmup, total, floor) == pytest.approx(floor)
    values = [warmup_cosine(s, warmup, total, floor) for s in range(warmup, total + 1)]
    assert all(a >= b for a, b in zip(values, values[1:]))


def _train(model, optimizers, steps=3, seed=0):
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        input_ids = torch.randint(0, 50, (2, 16), generator=generator)
        model(input_ids=input_ids, labels=input_ids).loss.backward()
        for optimizer in optimizers:
            optimizer.step()
            optimizer.zero_grad()


def test_muon_with_adamw_equals_torch_muon_plus_torch_adamw():
    """One real torch.optim.Optimizer whose steps are exactly torch.optim.Muon's on the matrices and AdamW's on
    the rest (the composite it replaces)."""
    ours = build_model(build_config("gpt2-tiny", None, vocab_size=50), AutoModelForCausalLM, seed=3)
    reference = copy.deepcopy(ours)
    optimizer = build_optimizer(ours, "muon", 3e-3, 0.1, (0.9, 0.95), 1e-8, 0.02, 0.95)
    assert isinstance(optimizer, MuonWithAdamW) and isinstance(optimizer, torch.optim.Optimizer)
    assert [g["algorithm"] for g in optimizer.param_groups] == ["muon", "adamw"]
    groups = split_parameters(reference)
    muon = torch.optim.Muon(
        groups["matrices"], lr=0.02, weight_decay=0.1, momentum=0.95, adjust_lr_fn="match_rms_adamw"
    )
    adamw = torch.optim.AdamW(
        [{"params": groups["embeddings"] + groups["no_decay"], "weight_decay": 0.0}], lr=3e-3, betas=(0.9, 0.95)
    )
    before = [p.detach().clone() for p in ours.parameters()]
    _train(ours, [optimizer])
    _train(reference, [muon, adamw])
    for (name, a), b, start in zip(ours.named_parameters(), reference.parameters(), before):
        assert not torch.equal(a, start), name  # every parameter moved ...
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)  # ... exactly as torch's optimizers move it


def test_muon_with_adamw_schedules_and_resumes_like_any_optimizer():
    model = build_model(build_config("gpt2-tiny", None, vocab_size=50), AutoModelForCausalLM)
    resumed = copy.deepcopy(model)
    optimizer = build_optimizer(model, "muon", 1e-3, 0.1, (0.9, 0.95), 1e-8, 0.02, 0.95)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.5)
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([0.01, 5e-4])  # the scheduler reaches both
    _train(model, [optimizer], steps=2)
    scheduler.step()
    # A fresh optimizer on a copy, loaded from the state dict, continues exactly like the original.
    state = copy.deepcopy(optimizer.state_dict())
    resumed.load_state_dict(model.state_dict())
    fresh = build_optimizer(resumed, "muon", 1e-3, 0.1, (0.9, 0.95), 1e-8, 0.02, 0.95)
    fresh.load_state_dict(state)
    assert math.isclose(fresh.param_groups[0]["lr"], optimizer.param_groups[0]["lr"])
    _train(model, [optimizer], steps=2, seed=1)
    _train(resumed, [fresh], steps=2, seed=1)
    for a, b in zip(model.parameters(), resumed.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_orthogonalize_gives_singular_values_near_one():
    from lit_pretrain.optim import orthogonalize

    matrix = torch.randn(64, 24, generator=torch.Generator().manual_seed(0))
    values = torch.linalg.svdvals(orthogonalize(matrix).float())
    assert values.min() > 0.5 and values.max() < 1.5  # the quintic iteration's band, not exactly 1
