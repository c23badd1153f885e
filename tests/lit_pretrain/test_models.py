import pytest

from lit_pretrain.errors import ConfigError
from lit_pretrain.models import PRESETS, build_config, build_model, max_positions
from lit_pretrain.module import PretrainModule


def parameters(model):
    return sum(p.numel() for p in model.parameters())


def test_gpt2_small_preset_is_gpt2_124m():
    config = build_config("gpt2-small", None, vocab_size=50257)
    assert (config.n_layer, config.n_embd, config.n_head, max_positions(config)) == (12, 768, 12, 1024)
    # 124M with GPT-2's vocabulary, counted without building the weights.
    embeddings = 50257 * 768 + 1024 * 768
    block = 12 * 768 * 768 + 13 * 768
    assert round((embeddings + 12 * block + 2 * 768) / 1e6) == 124


@pytest.mark.parametrize("preset", ["gpt2-tiny", "llama-tiny"])
def test_tiny_presets_build_with_the_requested_vocabulary(preset):
    model = build_model(build_config(preset, None, vocab_size=321))
    assert model.get_input_embeddings().num_embeddings == 321
    assert parameters(model) < 1_000_000


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


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(preset="gpt5-huge"), "model.preset 'gpt5-huge' is unknown"),
        (dict(preset=None, config={"n_layer": 2}), "needs a 'model_type'"),
        (dict(preset="gpt2-tiny", config={"n_layers": 2}), r"\['n_layers'\] are not gpt2 config attributes"),
        (dict(preset="gpt2-tiny", seq_len=4096), "data.seq_len 4096 exceeds the model's 256 positions"),
    ],
)
def test_bad_model_configuration_is_named(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        PretrainModule(**kwargs)


def test_every_preset_declares_its_positions():
    for name in PRESETS:
        assert max_positions(build_config(name, None, 64)) >= 256
