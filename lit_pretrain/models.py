"""Named size presets and the functions that turn a preset (plus explicit keys), or a local Hugging Face model
directory, into a ``transformers`` model. Knows nothing of Lightning, so it can be called from
``configure_model``, a notebook or an export script alike.

Which head the model gets (causal or masked LM) is the objective's choice: it passes its ``transformers`` auto
class to :func:`build_model`.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, PretrainedConfig, PreTrainedModel

from lit_pretrain.errors import ConfigError
from lit_pretrain.parallel import materialize, parameters_on_meta, transformer_blocks


@dataclass(frozen=True)
class Preset:
    """A ``model_type`` plus that architecture's own config keys, and the size it is documented to have."""

    keys: dict[str, Any]
    objective: str
    """The objective the architecture is meant for (``clm`` or ``mlm``)."""
    parameters_millions: float
    """Trainable parameters (tied weights once) at ``reference_vocab``: checked against the built model by the
    tests, so this table cannot drift from what the code builds."""
    reference_vocab: int
    note: str = field(default="", compare=False)


def _llama(layers: int, hidden: int, intermediate: int, heads: int, kv_heads: int, positions: int, tied: bool):
    return dict(
        model_type="llama",
        num_hidden_layers=layers,
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=positions,
        tie_word_embeddings=tied,
    )


def _bert(model_type: str, layers: int, hidden: int, heads: int, positions: int):
    return dict(
        model_type=model_type,
        num_hidden_layers=layers,
        hidden_size=hidden,
        num_attention_heads=heads,
        intermediate_size=4 * hidden,
        max_position_embeddings=positions,
    )


# Sizes follow the published models where one exists; the tiny and mini ones exist for tests and CPU runs.
PRESETS: dict[str, Preset] = {
    "gpt2-tiny": Preset(dict(model_type="gpt2", n_layer=2, n_head=2, n_embd=64, n_positions=256), "clm", 0.15, 512),
    "gpt2-mini": Preset(dict(model_type="gpt2", n_layer=4, n_head=4, n_embd=128, n_positions=512), "clm", 1.38, 4096),
    "gpt2-small": Preset(
        dict(model_type="gpt2", n_layer=12, n_head=12, n_embd=768, n_positions=1024), "clm", 124.44, 50257, "GPT-2"
    ),
    "gpt2-medium": Preset(
        dict(model_type="gpt2", n_layer=24, n_head=16, n_embd=1024, n_positions=1024), "clm", 354.82, 50257, "GPT-2"
    ),
    "llama-tiny": Preset(_llama(2, 64, 176, 4, 2, 256, tied=True), "clm", 0.13, 512),
    "llama-160m": Preset(_llama(12, 768, 3072, 12, 12, 2048, tied=False), "clm", 162.42, 32000, "llama-160m"),
    # TinyLlama-1.1B's shape (22 x 2048, grouped-query attention with 4 key/value heads).
    "llama-1b": Preset(_llama(22, 2048, 5632, 32, 4, 2048, tied=False), "clm", 1100.05, 32000, "TinyLlama"),
    # The widths and depths of the 3B/4B training recipes users bring (2048 x 40 and 2304 x 48), with
    # grouped-query attention and a 2.5x MLP.
    "llama-1.7b": Preset(_llama(40, 2048, 5120, 32, 8, 4096, tied=True), "clm", 1743.42, 32000),
    "llama-2.5b": Preset(_llama(48, 2304, 5760, 36, 4, 4096, tied=True), "clm", 2551.21, 32000),
    "bert-tiny": Preset(_bert("bert", 2, 64, 2, 256), "mlm", 0.15, 512),
    "bert-mini": Preset(_bert("bert", 4, 128, 4, 512), "mlm", 1.40, 4096),
    "bert-base": Preset(_bert("bert", 12, 768, 12, 512), "mlm", 109.51, 30522, "BERT-base uncased"),
    # RoBERTa's learned positions start after the padding id: 514 rows give 512 usable positions.
    "roberta-base": Preset(_bert("roberta", 12, 768, 12, 514), "mlm", 124.70, 50265, "RoBERTa-base"),
}

# Dropout hurts single-epoch pretraining; the Hugging Face defaults (0.1) are for fine-tuning.
NO_DROPOUT = {
    "gpt2": dict(resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0),
    "llama": dict(attention_dropout=0.0),
    "bert": dict(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0),
    "roberta": dict(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0),
    "distilbert": dict(dropout=0.0, attention_dropout=0.0),
}

# Architectures whose learned positions are offset by the padding id (position ids start at pad + 1).
PADDING_OFFSET_POSITIONS = {"roberta", "xlm-roberta", "camembert", "data2vec-text"}

# The special-token ids a config carries, when the architecture has the attribute.
CONFIG_TOKEN_IDS = ("bos_token_id", "eos_token_id", "pad_token_id", "sep_token_id", "cls_token_id")

ATTENTION_IMPLEMENTATIONS = ("sdpa", "eager", "flash_attention_2", "flex_attention")


def _known_keys(model_type: str) -> set[str]:
    # PretrainedConfig stores any keyword as an attribute, so compare with the architecture's defaults instead.
    default = AutoConfig.for_model(model_type)
    return set(default.to_dict()) | set(getattr(default, "attribute_map", {}))


def config_token_ids(model_type: str, token_ids: dict[str, int]) -> dict[str, int]:
    """The entries of ``token_ids`` (see ``data_prep.tokens.tokenizer.role_token_ids``) that a ``model_type`` config
    holds. With no ``bos``/``eos`` role the end-of-text token (the document separator) is both."""
    known = _known_keys(model_type)
    eot = token_ids.get("end_of_text_id", 0)
    ids = {"bos_token_id": eot, "eos_token_id": eot, **token_ids}
    return {key: ids[key] for key in CONFIG_TOKEN_IDS if key in ids and key in known}


def build_config(
    preset: str | None,
    overrides: dict[str, Any] | None,
    vocab_size: int,
    token_ids: dict[str, int] | None = None,
) -> PretrainedConfig:
    """Config for ``preset`` with ``overrides`` applied; with no preset, ``overrides`` must name ``model_type``.

    ``token_ids`` (the dataset tokenizer's special ids) set bos / eos / pad as the architecture has them; by
    default the end-of-text token (id 0 in our tokenizers) is both BOS and EOS. Packed training windows have no
    padding, so a causal LM gets no pad token (generation passes its own ``pad_token_id``)."""
    if preset is not None and preset not in PRESETS:
        raise ConfigError(
            f"model.preset '{preset}' is unknown; choose one of {sorted(PRESETS)} or set model.preset null"
        )
    keys = dict(PRESETS[preset].keys) if preset is not None else {}
    keys.update(overrides or {})
    model_type = keys.pop("model_type", None)
    if model_type is None:
        raise ConfigError("model.config needs a 'model_type' (e.g. gpt2, llama, bert) when model.preset is null")
    try:
        known = _known_keys(model_type)
    except (KeyError, ValueError) as error:
        raise ConfigError(f"model.config: model_type '{model_type}' is not a transformers architecture ({error})")
    unknown = [key for key in keys if key not in known]
    if unknown:
        raise ConfigError(f"model.config keys {unknown} are not {model_type} config attributes; check their spelling")
    special = config_token_ids(model_type, token_ids or {})
    keys = {**NO_DROPOUT.get(model_type, {}), **special, **keys, "vocab_size": vocab_size}
    try:
        return AutoConfig.for_model(model_type, **keys)
    except (KeyError, ValueError) as error:
        raise ConfigError(f"model.config: {error}") from error


def pretrained_directory(path: str) -> Path:
    """The absolute path of a local Hugging Face model directory (``model.init_from``), checked.

    Absolute, because ``from_pretrained`` takes a relative path it cannot find for a Hub model id."""
    directory = Path(path).expanduser().resolve()
    if not directory.is_dir():
        raise ConfigError(
            f"model.init_from '{path}' is not a directory; give a local Hugging Face model directory "
            "(written by save_pretrained), nothing is downloaded"
        )
    if not (directory / "config.json").is_file():
        raise ConfigError(f"model.init_from '{path}' has no config.json; give a directory written by save_pretrained")
    if not any(directory.glob("*.safetensors")) and not any(directory.glob("*.bin")):
        raise ConfigError(f"model.init_from '{path}' holds no weights (*.safetensors or *.bin)")
    return directory


def load_pretrained_config(
    path: str, overrides: dict[str, Any] | None, trust_remote_code: bool = False
) -> PretrainedConfig:
    """The architecture of a local model directory, with ``overrides`` (e.g. dropout) applied. A directory whose
    config names its own Python code (``auto_map``) is refused unless ``trust_remote_code``: that code would run
    in this process."""
    directory = pretrained_directory(path)
    if not trust_remote_code and "auto_map" in json.loads((directory / "config.json").read_text() or "{}"):
        raise ConfigError(
            f"model.init_from '{path}' needs its own Python code (auto_map in config.json), which is not run unless "
            "the config says so: review that code, then set --model.trust_remote_code true"
        )
    try:
        config = AutoConfig.from_pretrained(str(directory), local_files_only=True, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, KeyError, json.JSONDecodeError) as error:
        raise ConfigError(f"model.init_from '{path}': config.json could not be read ({error})") from error
    overrides = dict(overrides or {})
    if "vocab_size" in overrides or "model_type" in overrides:
        raise ConfigError("model.config cannot change vocab_size or model_type of a model.init_from model")
    unknown = [key for key in overrides if key not in _known_keys(config.model_type)]
    if unknown:
        raise ConfigError(f"model.config keys {unknown} are not {config.model_type} config attributes")
    for key, value in overrides.items():
        setattr(config, key, value)
    return config


def max_positions(config: PretrainedConfig) -> int | None:
    """Longest sequence the architecture supports (learned or rotary positions), if it declares one."""
    for key in ("n_positions", "max_position_embeddings"):
        if getattr(config, key, None):
            positions = int(getattr(config, key))
            if config.model_type in PADDING_OFFSET_POSITIONS:
                positions -= int(config.pad_token_id or 0) + 1
            return positions
    return None


def supports(auto_class, config: PretrainedConfig) -> bool:
    """Whether ``auto_class`` (e.g. ``AutoModelForMaskedLM``) has a model for this architecture (built in, or
    in the directory's own code, mapped by its config's ``auto_map``)."""
    return type(config) in auto_class._model_mapping or auto_class.__name__ in (getattr(config, "auto_map", None) or {})


def check_attention(attn_implementation: str) -> None:
    if attn_implementation not in ATTENTION_IMPLEMENTATIONS:
        raise ConfigError(
            f"model.attn_implementation '{attn_implementation}' is unknown; choose one of {list(ATTENTION_IMPLEMENTATIONS)}"
        )
    if attn_implementation == "flash_attention_2" and importlib.util.find_spec("flash_attn") is None:
        raise ConfigError(
            "model.attn_implementation flash_attention_2 needs the flash-attn package and a CUDA GPU "
            "(pip install flash-attn); use sdpa"
        )


def build_model(
    config: PretrainedConfig,
    auto_class,
    attn_implementation: str = "sdpa",
    init_from: str | None = None,
    *,
    trust_remote_code: bool = False,
    device: torch.device | str | None = None,
    seed: int = 0,
    shard: Callable[[torch.nn.Module], None] | None = None,
    prepare: Callable[[PreTrainedModel], None] | None = None,
) -> PreTrainedModel:
    """The ``auto_class`` model for ``config``, on ``device`` (None: torch's current default device).

    From scratch, its parameters start on the meta device and are initialised module by module with the
    architecture's own initialisation under ``seed`` (:func:`lit_pretrain.parallel.materialize`): the same weights
    whatever the strategy. With ``shard`` (FSDP2's ``fully_shard``), each transformer block is sharded as soon as
    it is initialised, then the root. ``prepare`` runs on the model before (e.g. to switch on gradient
    checkpointing). With ``init_from``, the weights of that local directory, loaded in fp32 (the Trainer's
    precision decides what training runs in), then sharded the same way."""
    if init_from is None:
        with parameters_on_meta():
            model = auto_class.from_config(config, attn_implementation=attn_implementation)
        if prepare is not None:
            prepare(model)
        device = torch.get_default_device() if device is None else device
        materialize(model, device, seed, shard, transformer_blocks(model) if shard is not None else ())
        return model
    model = auto_class.from_pretrained(
        str(pretrained_directory(init_from)),
        config=config,
        local_files_only=True,
        trust_remote_code=trust_remote_code,
        attn_implementation=attn_implementation,
        dtype=torch.float32,
    )
    model.train()  # from_pretrained returns eval mode, which would silently switch dropout off
    if prepare is not None:
        prepare(model)
    if shard is not None:
        for block in transformer_blocks(model):
            shard(block)
        shard(model)
    return model.to(device) if shard is None and device is not None else model


def meta_model(auto_class, config: PretrainedConfig, attn_implementation: str = "sdpa", trust_remote_code=False):
    """The ``transformers`` model a config builds, with every parameter on the meta device: exact names and shapes,
    no memory (what ``estimate`` counts and a resume compares a checkpoint with)."""
    with parameters_on_meta():
        return auto_class.from_config(
            config, attn_implementation=attn_implementation, trust_remote_code=trust_remote_code
        )


def flops_per_token(model: torch.nn.Module, seq_len: int) -> float:
    """Training FLOPs (forward + backward) per token: ``6 N + 12 L H Q T`` (PaLM, appendix B).

    ``N`` counts the parameters that multiply activations: all trainable ones, tied weights once, except
    position-embedding tables and, when the output head is untied, the input embedding table (lookups, not
    matmuls). ``12 L H Q T`` is attention's score and value matmuls over the full ``T x T`` window (a causal mask
    is not discounted), with ``L`` layers, ``H`` heads of size ``Q``, ``T = seq_len``. Norms, activations and the
    softmax are not counted. The head is counted at every position (for MLM's masked-positions-only head, an
    upper bound). One function for MFU and for ``estimate``."""
    config = model.config
    excluded = {id(p) for name, p in model.named_parameters() if "position" in name or name.endswith("wpe.weight")}
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    embeddings = model.get_input_embeddings()
    if head is not None and head.weight is not embeddings.weight:
        excluded.add(id(embeddings.weight))
    n = sum(p.numel() for p in model.parameters() if p.requires_grad and id(p) not in excluded)
    layers, heads = config.num_hidden_layers, config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    return 6.0 * n + 12.0 * layers * heads * head_dim * seq_len


def count_parameters(model: torch.nn.Module) -> int:
    """Trainable parameters, tied weights counted once."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def check_same_vocabulary(init_from: str, tokenizer_path: str | Path) -> None:
    """When ``init_from`` holds a tokenizer, it must be the dataset's (same token for every id)."""
    from data_prep.errors import DataPrepError
    from data_prep.tokens.tokenizer import HF_TOKENIZER_FILES, load_tokenizer

    directory = pretrained_directory(init_from)
    if not any((directory / name).is_file() for name in HF_TOKENIZER_FILES):
        return
    try:
        theirs = load_tokenizer(directory).get_vocab()
    except DataPrepError as error:
        raise ConfigError(f"model.init_from: {error}") from error
    ours = load_tokenizer(tokenizer_path).get_vocab()
    if theirs != ours:
        differing = len(set(theirs.items()) ^ set(ours.items()))
        raise ConfigError(
            f"model.init_from '{init_from}' has a tokenizer of {len(theirs)} tokens that differs from the dataset's "
            f"'{tokenizer_path}' ({len(ours)} tokens, {differing} differing entries); prepare the data with "
            f"tokenizer.pretrained: {init_from}"
        )
