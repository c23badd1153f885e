"""Named size presets and the one function that turns a preset (plus explicit keys) into a ``transformers``
model built from scratch. Knows nothing of Lightning, so it can be called from ``configure_model``, a notebook
or an export script alike."""

from __future__ import annotations

from typing import Any

from transformers import AutoConfig, AutoModelForCausalLM, PretrainedConfig, PreTrainedModel

from lit_pretrain.errors import ConfigError

# Each preset is a ``model_type`` plus that architecture's own config keys. Sizes follow the published models
# where one exists (gpt2-small is GPT-2's 124M); the tiny ones exist for tests and CPU smoke runs.
PRESETS: dict[str, dict[str, Any]] = {
    "gpt2-tiny": dict(model_type="gpt2", n_layer=2, n_head=2, n_embd=64, n_positions=256),
    "gpt2-mini": dict(model_type="gpt2", n_layer=4, n_head=4, n_embd=128, n_positions=512),
    "gpt2-small": dict(model_type="gpt2", n_layer=12, n_head=12, n_embd=768, n_positions=1024),
    "gpt2-medium": dict(model_type="gpt2", n_layer=24, n_head=16, n_embd=1024, n_positions=1024),
    "llama-tiny": dict(
        model_type="llama",
        num_hidden_layers=2,
        hidden_size=64,
        intermediate_size=176,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        tie_word_embeddings=True,
    ),
    "llama-160m": dict(
        model_type="llama",
        num_hidden_layers=12,
        hidden_size=768,
        intermediate_size=2048,
        num_attention_heads=12,
        num_key_value_heads=12,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
    ),
}

# Dropout hurts single-epoch pretraining; the Hugging Face defaults (0.1) are for fine-tuning.
NO_DROPOUT = {
    "gpt2": dict(resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0),
    "llama": dict(attention_dropout=0.0),
}


def build_config(
    preset: str | None, overrides: dict[str, Any] | None, vocab_size: int, end_of_text_id: int = 0
) -> PretrainedConfig:
    """Config for ``preset`` with ``overrides`` applied; with no preset, ``overrides`` must name ``model_type``.

    The end-of-text token (id 0 in our tokenizers) doubles as BOS and EOS. No pad token is set: packed
    training windows have no padding (generation passes its own ``pad_token_id``)."""
    if preset is not None and preset not in PRESETS:
        raise ConfigError(
            f"model.preset '{preset}' is unknown; choose one of {sorted(PRESETS)} or set model.preset null"
        )
    keys = dict(PRESETS[preset]) if preset is not None else {}
    keys.update(overrides or {})
    model_type = keys.pop("model_type", None)
    if model_type is None:
        raise ConfigError("model.config needs a 'model_type' (e.g. gpt2, llama) when model.preset is null")
    special = dict(bos_token_id=end_of_text_id, eos_token_id=end_of_text_id)
    keys = {**NO_DROPOUT.get(model_type, {}), **special, **keys, "vocab_size": vocab_size}
    try:
        config = AutoConfig.for_model(model_type, **keys)
    except (KeyError, ValueError) as error:
        raise ConfigError(f"model.config: {error}") from error
    # PretrainedConfig stores any keyword as an attribute, so compare with the architecture's defaults instead.
    default = AutoConfig.for_model(model_type)
    known = set(default.to_dict()) | set(getattr(default, "attribute_map", {}))
    unknown = [key for key in keys if key not in known]
    if unknown:
        raise ConfigError(f"model.config keys {unknown} are not {model_type} config attributes; check their spelling")
    return config


def max_positions(config: PretrainedConfig) -> int | None:
    """Longest sequence the architecture supports (learned or rotary positions), if it declares one."""
    for key in ("n_positions", "max_position_embeddings"):
        if getattr(config, key, None):
            return int(getattr(config, key))
    return None


def build_model(config: PretrainedConfig) -> PreTrainedModel:
    """A randomly initialised causal LM with the architecture's own initialisation."""
    return AutoModelForCausalLM.from_config(config)
