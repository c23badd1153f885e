"""Special-token ids from the tokenizer to the model and the sampler, and continued pretraining from a local
Hugging Face directory (``model.init_from``), made here with ``save_pretrained``: nothing is downloaded."""

from __future__ import annotations

import shutil

import lightning as L
import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoModelForCausalLM, AutoModelForMaskedLM

from data_prep.config import TokenizerConfig
from data_prep.pipeline import prepare
from lit_pretrain import PretrainDataModule, PretrainModule
from lit_pretrain.callbacks import GenerateSample
from lit_pretrain.errors import ConfigError
from tests.conftest import STDLIB, quiet_trainer, small_prep_config


def trainer(tmp_path, **kwargs) -> L.Trainer:
    return quiet_trainer(tmp_path, **{"max_steps": 15, "limit_val_batches": 0, **kwargs})


@pytest.fixture(scope="module")
def late_eot_dataset(stdlib_corpus, tmp_path_factory):
    """A dataset whose pretrained tokenizer has its end of text last (id 300), as GPT-2's is 50256."""
    directory = tmp_path_factory.mktemp("late-eot")
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    texts = [path.read_text() for path in sorted((STDLIB / "json").glob("*.py"))]
    tokenizer.train_from_iterator(
        texts, trainers.BpeTrainer(vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    )
    tokenizer.add_special_tokens(["<|endoftext|>"])
    tokenizer.save(str(directory / "tokenizer.json"))
    output = directory / "dataset"
    config = TokenizerConfig(pretrained=str(directory / "tokenizer.json"))
    prepare(small_prep_config(stdlib_corpus, output, tokenizer=config), show_progress=False)
    return output


def test_special_ids_reach_the_model_config_and_generation_stops_at_the_tokenizers_end_of_text(late_eot_dataset):
    data = PretrainDataModule(dataset_dir=str(late_eot_dataset), prepare_config=None, seq_len=32)
    eot = data.token_ids["end_of_text_id"]
    assert eot == 300 and data.token_ids["eos_token_id"] == data.token_ids["bos_token_id"] == 300
    module = PretrainModule(preset="gpt2-tiny", vocab_size=data.vocab_size, seq_len=32, token_ids=data.token_ids)
    assert module.model_config.eos_token_id == module.model_config.bos_token_id == 300
    module.configure_model()
    assert module.model.generation_config.eos_token_id == 300
    # Rig the model so that greedy decoding always picks the end of text: logits = wte @ (100 wte[eot]).
    with torch.no_grad():
        wte = module.model.transformer.wte.weight
        wte[eot] *= 10
        module.model.transformer.ln_f.weight.zero_()
        module.model.transformer.ln_f.bias.copy_(100 * wte[eot])
    data.setup("fit")
    sample = GenerateSample(prompt="import json", max_new_tokens=20, temperature=0.0).generate(
        module, data.tokenizer_path
    )
    assert sample == "import json<|endoftext|>"  # one end of text, then stop (eos 0 would run on for 20 tokens)


def test_a_module_whose_ids_disagree_with_the_dataset_is_refused(late_eot_dataset, tmp_path):
    data = PretrainDataModule(dataset_dir=str(late_eot_dataset), prepare_config=None, seq_len=32)
    module = PretrainModule(  # assumes end of text 0
        preset="gpt2-tiny", vocab_size=data.vocab_size, seq_len=32, data_description=data.description
    )
    with pytest.raises(ConfigError, match="model.token_ids .* disagree with the dataset's"):
        trainer(tmp_path).fit(module, datamodule=data)


def save_trained_model(dataset, objective: str, preset: str, directory, tmp_path) -> PretrainDataModule:
    """Train a tiny model for a few steps, then save it and the dataset's tokenizer as a Hugging Face directory."""
    L.seed_everything(0)
    data = PretrainDataModule(dataset_dir=str(dataset), prepare_config=None, seq_len=64, batch_size=8)
    module = PretrainModule(
        preset=preset,
        vocab_size=data.vocab_size,
        seq_len=64,
        objective=objective,
        token_ids=data.token_ids,
        lr=3e-3,
        warmup_steps=2,
    )
    trainer(tmp_path).fit(module, datamodule=data)
    module.model.save_pretrained(directory)
    for path in (dataset / "hf_tokenizer").iterdir():
        shutil.copy(path, directory / path.name)
    return data


@torch.no_grad()
def transformers_validation_loss(directory, auto_class, data: PretrainDataModule, transform) -> float:
    """Token-weighted validation loss computed by the loaded model's own loss (labels=...)."""
    model = auto_class.from_pretrained(str(directory)).eval()
    total = count = 0.0
    for batch in data.val_dataloader():
        inputs = transform(batch["input_ids"])
        labels = inputs.get("labels", inputs["input_ids"])
        n = (labels != -100).sum().item() - (len(labels) if "labels" not in inputs else 0)  # CLM: T-1 per row
        total += model(input_ids=inputs["input_ids"], labels=labels).loss.item() * n
        count += n
    return total / count


@pytest.mark.parametrize(
    "objective, preset, auto_class",
    [("clm", "gpt2-tiny", AutoModelForCausalLM), ("mlm", "bert-tiny", AutoModelForMaskedLM)],
)
def test_init_from_continues_from_the_saved_weights(
    objective, preset, auto_class, prepared_dataset, prepared_mlm_dataset, tmp_path
):
    dataset = prepared_mlm_dataset if objective == "mlm" else prepared_dataset
    directory = tmp_path / "pretrained"
    data = save_trained_model(dataset, objective, preset, directory, tmp_path)
    continued = PretrainModule(
        preset=None,
        init_from=str(directory),
        vocab_size=data.vocab_size,
        seq_len=64,
        objective=objective,
        token_ids=data.token_ids,
        warmup_steps=2,
    )
    fresh = PretrainModule(
        preset=preset, vocab_size=data.vocab_size, seq_len=64, objective=objective, token_ids=data.token_ids
    )
    continued.configure_model()
    assert continued.model.training  # from_pretrained's eval mode would switch dropout off in training
    run = trainer(tmp_path, limit_val_batches=None)
    first = run.validate(continued, datamodule=data, verbose=False)[0]["val/loss"]
    untrained = run.validate(fresh, datamodule=data, verbose=False)[0]["val/loss"]
    expected = transformers_validation_loss(directory, auto_class, data, continued.objective.eval_batch)
    assert first == pytest.approx(expected, rel=1e-5)
    assert first < untrained - 0.3  # the weights were loaded, not re-initialised
    # ... and training goes on from there.
    run = trainer(tmp_path, max_steps=5)
    run.fit(continued, datamodule=data)
    assert run.global_step == 5


def test_init_from_that_disagrees_with_the_dataset_is_refused_naming_both(
    prepared_dataset, prepared_mlm_dataset, tmp_path
):
    data = PretrainDataModule(dataset_dir=str(prepared_dataset), prepare_config=None, seq_len=64)
    small = AutoModelForCausalLM.from_config(PretrainModule(preset="gpt2-tiny", vocab_size=300).model_config)
    small.save_pretrained(tmp_path / "small-vocab")
    with pytest.raises(
        ConfigError, match=r"model.init_from '.*small-vocab' has vocab_size 300 but the dataset's tokenizer has 512"
    ):
        PretrainModule(init_from=str(tmp_path / "small-vocab"), vocab_size=512, token_ids=data.token_ids)
    other_eos = PretrainModule(preset="gpt2-tiny", vocab_size=512, token_ids={"end_of_text_id": 7}).model_config
    AutoModelForCausalLM.from_config(other_eos).save_pretrained(tmp_path / "other-eos")
    with pytest.raises(ConfigError, match="has bos_token_id 7 but the dataset's tokenizer has 0"):
        PretrainModule(init_from=str(tmp_path / "other-eos"), vocab_size=512, token_ids=data.token_ids)
    # Same size and ids, but another tokenizer (the MLM dataset's) saved beside the weights: refused in setup.
    fine = PretrainModule(preset="gpt2-tiny", vocab_size=512, token_ids=data.token_ids).model_config
    AutoModelForCausalLM.from_config(fine).save_pretrained(tmp_path / "other-tokenizer")
    shutil.copy(prepared_mlm_dataset / "tokenizer.json", tmp_path / "other-tokenizer" / "tokenizer.json")
    module = PretrainModule(
        init_from=str(tmp_path / "other-tokenizer"), vocab_size=512, seq_len=64, token_ids=data.token_ids,
        data_description=data.description,
    )  # fmt: skip
    with pytest.raises(ConfigError, match="has a tokenizer of 512 tokens that differs from the dataset's"):
        trainer(tmp_path).fit(module, datamodule=data)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="has no config.json"):
        PretrainModule(init_from=str(tmp_path / "empty"))


CUSTOM_CODE = """
import os
from pathlib import Path

from transformers import GPT2Config, GPT2LMHeadModel

Path(os.environ["LIT_PRETRAIN_CODE_RAN"]).write_text("ran")  # proof that this file was executed


class TinyCustomConfig(GPT2Config):
    model_type = "tiny-custom"


class TinyCustomModel(GPT2LMHeadModel):
    config_class = TinyCustomConfig
"""


def test_a_directory_with_its_own_code_is_refused_unless_the_config_trusts_it(tmp_path, monkeypatch):
    import json

    from transformers import GPT2Config, GPT2LMHeadModel

    directory = tmp_path / "custom"
    GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=2, n_embd=32, vocab_size=512, n_positions=64)).save_pretrained(
        directory
    )
    config = json.loads((directory / "config.json").read_text())
    config.update(model_type="tiny-custom", architectures=["TinyCustomModel"],
                  auto_map={"AutoConfig": "custom.TinyCustomConfig", "AutoModelForCausalLM": "custom.TinyCustomModel"})  # fmt: skip
    (directory / "config.json").write_text(json.dumps(config))
    (directory / "custom.py").write_text(CUSTOM_CODE)
    marker = tmp_path / "code-ran"
    monkeypatch.setenv("LIT_PRETRAIN_CODE_RAN", str(marker))
    with pytest.raises(ConfigError, match=r"needs its own Python code .* set --model.trust_remote_code true"):
        PretrainModule(init_from=str(directory), vocab_size=512, seq_len=32)
    assert not marker.exists()  # refused before anything of it was imported
    module = PretrainModule(init_from=str(directory), vocab_size=512, seq_len=32, trust_remote_code=True)
    module.configure_model()
    assert marker.read_text() == "ran" and type(module.model).__name__ == "TinyCustomModel"
    reference = GPT2LMHeadModel.from_pretrained(directory, config=GPT2Config(**{**config, "model_type": "gpt2"}))
    batch = torch.randint(0, 512, (1, 16))
    with torch.no_grad():
        assert torch.allclose(module.model.eval()(batch).logits, reference.eval()(batch).logits, atol=1e-5)
