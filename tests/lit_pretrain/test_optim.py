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


def test_muon_with_adamw_steps_both_and_round_trips_its_state():
    torch.manual_seed(0)
    model = build_model(build_config("gpt2-tiny", None, vocab_size=50), AutoModelForCausalLM)
    optimizer = build_optimizer(model, "muon", 1e-3, 0.1, (0.9, 0.95), 1e-8, 0.02, 0.95)
    assert isinstance(optimizer, MuonWithAdamW) and len(optimizer.param_groups) == 2
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.5)
    assert optimizer.inner[0].param_groups[0]["lr"] == pytest.approx(0.01)  # the scheduler reaches Muon
    assert optimizer.inner[1].param_groups[0]["lr"] == pytest.approx(5e-4)  # ... and AdamW
    before = [p.detach().clone() for p in model.parameters()]
    input_ids = torch.randint(0, 50, (2, 16))
    model(input_ids=input_ids, labels=input_ids).loss.backward()
    optimizer.step(lambda: None)
    scheduler.step()
    assert all(not torch.equal(a, b) for a, b in zip(before, model.parameters()))

    state = optimizer.state_dict()
    fresh = build_optimizer(model, "muon", 1e-3, 0.1, (0.9, 0.95), 1e-8, 0.02, 0.95)
    fresh.load_state_dict(state)
    assert set(fresh.state_dict()) == {"muon", "adamw"}
    assert math.isclose(fresh.param_groups[0]["lr"], optimizer.param_groups[0]["lr"])
