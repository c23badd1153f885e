import math

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoModelForMaskedLM

from lit_pretrain.errors import ConfigError
from lit_pretrain.models import PRESETS, build_config, build_model, count_parameters, max_positions
from lit_pretrain.module import PretrainModule

HEADS = {"clm": AutoModelForCausalLM, "mlm": AutoModelForMaskedLM}


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_builds_on_the_meta_device_at_its_documented_size(name):
    preset = PRESETS[name]
    with torch.device("meta"):  # no memory: the 2.5B preset costs nothing here
        model = build_model(build_config(name, None, preset.reference_vocab), HEADS[preset.objective])
    assert next(model.parameters()).device.type == "meta"
    assert count_parameters(model) / 1e6 == pytest.approx(preset.parameters_millions, abs=0.006)
    assert max_positions(model.config) >= 256


def test_published_shapes():
    assert count_parameters(build_model(build_config("gpt2-small", None, 50257), AutoModelForCausalLM)) // 10**6 == 124
    config = build_config("llama-1.7b", None, 32000)
    assert (config.hidden_size, config.num_hidden_layers) == (2048, 40)
    config = build_config("llama-2.5b", None, 32000)
    assert (config.hidden_size, config.num_hidden_layers) == (2304, 48)
    # RoBERTa's positions are offset by the padding id: 514 rows, 512 usable positions.
    assert max_positions(build_config("roberta-base", None, 50265, {"pad_token_id": 1})) == 512


@pytest.mark.parametrize("preset", ["gpt2-tiny", "llama-tiny"])
def test_tiny_presets_build_with_the_requested_vocabulary(preset):
    model = build_model(build_config(preset, None, vocab_size=321), AutoModelForCausalLM)
    assert model.get_input_embeddings().num_embeddings == 321
    assert count_parameters(model) < 1_000_000


def test_explicit_keys_override_the_preset_and_model_type_alone_works():
    assert build_config("gpt2-tiny", {"n_layer": 3}, 100).n_layer == 3
    config = build_config(
        None,
        {
            "model_type": "llama",
            "hidden_size": 32,
            "num_attention_heads": 2,
            "num_hidden_layers": 1,
            "intermediate_size": 64,
        },
        100,
    )
    assert config.model_type == "llama" and config.hidden_size == 32


def test_token_ids_reach_the_config_as_the_architecture_has_them():
    gpt2 = build_config("gpt2-tiny", None, 50257, {"end_of_text_id": 50256, "eos_token_id": 50256})
    assert (gpt2.bos_token_id, gpt2.eos_token_id, gpt2.pad_token_id) == (50256, 50256, None)
    mlm_ids = {"end_of_text_id": 0, "pad_token_id": 1, "unk_token_id": 2, "mask_token_id": 3, "cls_token_id": 4}
    bert = build_config("bert-tiny", None, 512, {**mlm_ids, "bos_token_id": 4, "eos_token_id": 0})
    assert bert.pad_token_id == 1
    # Without ids, our tokenizers' end of text (id 0) is both, as before.
    assert build_config("gpt2-tiny", None, 100).eos_token_id == 0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(preset="gpt5-huge"), "model.preset 'gpt5-huge' is unknown"),
        (dict(preset=None, config={"n_layer": 2}), "needs a 'model_type'"),
        (dict(preset="gpt2-tiny", config={"n_layers": 2}), r"\['n_layers'\] are not gpt2 config attributes"),
        (dict(preset="gpt2-tiny", seq_len=4096), "data.seq_len 4096 exceeds the model's 256 positions"),
        (
            dict(preset="gpt2-tiny", objective="mlm", token_ids={"mask_token_id": 3}),
            "gpt2 model, which has no mlm head",
        ),
        (dict(preset="bert-tiny", objective="mlm"), "model.objective mlm needs a mask token"),
        (dict(objective="mlm", mlm_probability=1.5, token_ids={"mask_token_id": 3}), "model.mlm_probability 1.5"),
        (dict(attn_implementation="fast"), "model.attn_implementation 'fast' is unknown"),
        (dict(init_from="/nonexistent/model"), "model.init_from '/nonexistent/model' is not a directory"),
    ],
)
def test_bad_model_configuration_is_named(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        PretrainModule(**kwargs)


def test_flash_attention_without_the_package_is_a_clear_error():
    import importlib.util

    if importlib.util.find_spec("flash_attn") is not None:
        pytest.skip("flash-attn is installed here")
    with pytest.raises(ConfigError, match="flash_attention_2 needs the flash-attn package"):
        PretrainModule(attn_implementation="flash_attention_2")


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_attn_implementation_passes_through(attention):
    module = PretrainModule(preset="gpt2-tiny", vocab_size=64, seq_len=32, attn_implementation=attention)
    module.configure_model()
    assert module.model.config._attn_implementation == attention


@pytest.mark.parametrize(
    "preset, block", [("gpt2-tiny", "GPT2Block"), ("llama-tiny", "LlamaDecoderLayer"), ("bert-tiny", "BertLayer")]
)
def test_fsdp_units_are_the_transformer_blocks(preset, block):
    from lit_pretrain.parallel import transformer_blocks

    model = build_model(build_config(preset, None, 128), HEADS[PRESETS[preset].objective])
    blocks = transformer_blocks(model)
    assert [type(b).__name__ for b in blocks] == [block] * model.config.num_hidden_layers


@pytest.mark.parametrize("preset", ["gpt2-tiny", "llama-tiny", "bert-tiny"])
def test_built_models_have_the_architectures_own_initialisation(preset):
    """Built from the meta device module by module, the weights follow transformers' own init (same per-tensor
    mean and spread as from_config, norms exactly one, biases zero), do not depend on earlier random draws, and
    buffers (rotary frequencies, position ids) are the real ones."""
    head, config = HEADS[PRESETS[preset].objective], build_config(preset, None, 512)
    ours = build_model(config, head, seed=0)
    torch.rand(100)  # an unrelated draw must not change the initial weights
    again = build_model(config, head, seed=0)
    other_seed = build_model(config, head, seed=1)
    torch.manual_seed(0)
    reference = head.from_config(config)
    for (name, a), b, c, d in zip(
        ours.named_parameters(), again.parameters(), other_seed.parameters(), reference.parameters()
    ):
        assert torch.equal(a, b), name
        if d.std() > 0:
            assert not torch.equal(a, c), name
            # Two standard-deviation estimates over n values each differ by ~sqrt(1/n) relative: allow 4 of those.
            assert a.std().item() == pytest.approx(d.std().item(), rel=max(0.05, 4 / math.sqrt(a.numel()))), name
        else:
            assert torch.equal(a, d), name  # constants: norm weights one, biases zero
    for (name, a), b in zip(ours.named_buffers(), reference.buffers()):
        assert torch.equal(a, b), name


@pytest.mark.parametrize(
    "preset, keys",
    [
        ("gpt2-tiny", {"n_embd": 256, "n_layer": 4, "n_head": 4}),  # tied head, learned positions
        ("llama-tiny", {"hidden_size": 256, "intermediate_size": 512, "num_hidden_layers": 4}),  # untied, GQA
        (
            "bert-tiny",
            {"hidden_size": 256, "intermediate_size": 1024, "num_hidden_layers": 4, "num_attention_heads": 4},
        ),
    ],
)
def test_flops_per_token_matches_torchs_flop_counter(preset, keys):
    """6N + 12LHQT against torch.utils.flop_counter on a real forward + backward. Eager attention: the counter
    does not count the CPU SDPA kernel's backward."""
    from torch.utils.flop_counter import FlopCounterMode

    from lit_pretrain.models import flops_per_token

    model = build_model(build_config(preset, keys, 2048), HEADS[PRESETS[preset].objective], attn_implementation="eager")
    batch, seq_len = 2, 128
    input_ids = torch.randint(0, 2048, (batch, seq_len), generator=torch.Generator().manual_seed(0))
    with FlopCounterMode(display=False) as counter:
        model(input_ids=input_ids).logits.float().sum().backward()
    measured = counter.get_total_flops() / (batch * seq_len)
    assert flops_per_token(model, seq_len) == pytest.approx(measured, rel=0.02)
