"""``estimate``'s arithmetic: exact parameter counts, training FLOPs against GPT-3's published figure, and the
memory accounting per strategy and precision."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, GPT2Config

from lit_pretrain import PretrainModule
from lit_pretrain.estimate import Layout, compute, estimate_memory
from lit_pretrain.models import count_parameters
from lit_pretrain.parallel import parameters_on_meta, transformer_blocks


@pytest.mark.parametrize("preset, objective", [("gpt2-tiny", "clm"), ("llama-tiny", "clm"), ("bert-tiny", "mlm")])
def test_the_meta_model_has_exactly_the_parameters_of_the_model_training_builds(preset, objective):
    ids = {"end_of_text_id": 0, "pad_token_id": 1, "mask_token_id": 2} if objective == "mlm" else None
    module = PretrainModule(preset=preset, objective=objective, vocab_size=512, seq_len=64, token_ids=ids)
    meta = module.meta_model()
    assert all(p.device.type == "meta" for p in meta.parameters())
    module.configure_model()  # what fit builds (real weights on the CPU)
    assert count_parameters(meta) == count_parameters(module.model) > 0
    assert [p.shape for p in meta.parameters()] == [p.shape for p in module.model.parameters()]


def gpt3() -> torch.nn.Module:
    config = GPT2Config(n_layer=96, n_embd=12288, n_head=96, n_positions=2048, vocab_size=50257)
    with parameters_on_meta():
        return AutoModelForCausalLM.from_config(config)


def layout(**changes) -> Layout:
    options = dict(strategy="ddp", precision="bf16-mixed", world=1, micro_batch=1, seq_len=2048, accumulation=1,
                   activation_checkpointing=False, optimizer="adamw")  # fmt: skip
    return Layout(**{**options, **changes})


def test_gpt3_175b_on_300b_tokens_comes_out_at_the_published_compute():
    model = gpt3()
    result = compute(model, layout(), "a100", 1, 300e9, None, 1.0, None)
    assert result.parameters == pytest.approx(175e9, rel=0.01)
    assert result.total_flops_6nd == pytest.approx(3.14e23, rel=0.01)  # the GPT-3 paper's 3.14e23
    # 6N plus attention (12 L H Q T = 29 GFLOPs per token at T = 2048, 3 % of 6N).
    assert result.total_flops == pytest.approx(3.14e23 * (1 + 12 * 96 * 12288 * 2048 / (6 * 175e9)), rel=0.01)
    # The textbook trap: one 3.2M-token batch on one A100 at its full 312 TFLOP/s takes ~10,800 s, not 10.8 s.
    batch = compute(model, layout(), "a100", 1, 3.2e6, None, 1.0, None)
    assert batch.hours * 3600 == pytest.approx(6 * 175e9 * 3.2e6 / 312e12, rel=0.05)
    assert batch.hours * 3600 > 10_000


def test_mixed_precision_adamw_holds_16_bytes_per_parameter_and_sharding_divides_it():
    model = gpt3()
    n = count_parameters(model)
    state = lambda memory: memory.weights + memory.gradients + memory.optimizer_states  # noqa: E731
    single = estimate_memory(model, layout())
    assert state(single) / n == pytest.approx(16)  # fp32 weights and gradients, two fp32 moments (PITFALLS)
    assert estimate_memory(model, layout(precision="bf16-true")).optimizer_states / n == pytest.approx(4)
    largest_block = max(sum(p.numel() for p in b.parameters()) for b in transformer_blocks(model))
    fsdp = estimate_memory(model, layout(strategy="fsdp", world=8))
    assert state(fsdp) == pytest.approx(16 * n / 8 + 2 * 2 * largest_block)  # shards + two gathered bf16 blocks
    per_gpu = [state(estimate_memory(model, layout(strategy=s, world=8))) for s in ("ddp", "zero1", "zero2", "zero3")]
    assert per_gpu == sorted(per_gpu, reverse=True) and len(set(per_gpu)) == 4
    zero2 = estimate_memory(model, layout(strategy="zero2", world=8))
    assert state(zero2) / n == pytest.approx(2 + (2 + 12) / 8)  # DeepSpeed: bf16 weights, fp32 master + moments
    offload = estimate_memory(model, layout(strategy="zero3", world=8, offload_optimizer=True, offload_parameters=True))
    assert offload.optimizer_states == 0 and offload.weights == 0
    assert offload.cpu_offloaded == pytest.approx(12 * n / 8 + 2 * n / 8 + 2 * 2 * largest_block)


def test_activation_checkpointing_sequence_length_and_micro_batch_move_activations_as_they_should():
    model = gpt3()
    base = estimate_memory(model, layout(micro_batch=1)).activations
    assert estimate_memory(model, layout(micro_batch=2)).activations == pytest.approx(2 * base)
    checkpointed = estimate_memory(model, layout(activation_checkpointing=True)).activations
    assert checkpointed < base / 5  # only each block's input is kept (96 blocks)
    eager = estimate_memory(model, layout(fused_attention=False)).activations
    assert eager > 2 * base  # the (heads, T, T) scores dominate at T = 2048 without fused attention
    per_block = (base - 2048 * 50257 * 10) / 96  # less the logits (16-bit, fp32 copy, fp32 gradient)
    assert per_block == pytest.approx(2048 * 12288 * 34)  # Korthikanti et al.'s 34 s b h (GPT-2 config: dropout 0.1)


def test_muon_keeps_less_optimizer_state_than_adamw():
    model = gpt3()
    adamw = estimate_memory(model, layout()).optimizer_states
    muon = estimate_memory(model, layout(optimizer="muon")).optimizer_states
    assert muon < 0.6 * adamw  # one momentum instead of two moments on the hidden matrices (most parameters)
