"""The notebook path: import the classes and drive a Trainer directly, no CLI."""

import lightning as L
import pytest
import torch

from lit_pretrain import PretrainDataModule, PretrainModule
from lit_pretrain.callbacks import GenerateSample
from lit_pretrain.errors import ConfigError
from tests.conftest import quiet_trainer


def trainer(tmp_path, **kwargs) -> L.Trainer:
    return quiet_trainer(
        tmp_path, **{"max_steps": 30, "val_check_interval": 15, "check_val_every_n_epoch": None, **kwargs}
    )


def test_trainer_fit_with_the_importable_classes(tmp_path, prepared_dataset):
    L.seed_everything(0)
    data = PretrainDataModule(dataset_dir=str(prepared_dataset), prepare_config=None, seq_len=64, batch_size=8)
    model = PretrainModule(
        preset="gpt2-tiny", vocab_size=data.vocab_size, seq_len=64, lr=3e-3, warmup_steps=3,
        data_description=data.description,
    )  # fmt: skip
    sample = GenerateSample(max_new_tokens=8, temperature=0.0)
    fit = trainer(tmp_path, callbacks=[sample])
    fit.fit(model, datamodule=data)
    first = fit.validate(model, datamodule=data, verbose=False)[0]
    assert fit.global_step == 30
    assert first["val/loss"] < torch.log(torch.tensor(512.0)).item() - 0.5
    assert first["val/ppl"] == pytest.approx(torch.exp(torch.tensor(first["val/loss"])).item(), rel=1e-5)
    assert sample.last_sample.startswith("def fibonacci(n):") and len(sample.last_sample) > len("def fibonacci(n):")


def test_tokenizer_larger_than_the_model_vocabulary_is_refused(tmp_path, prepared_dataset):
    data = PretrainDataModule(dataset_dir=str(prepared_dataset), prepare_config=None, seq_len=64)
    model = PretrainModule(preset="gpt2-tiny", vocab_size=100, seq_len=64, data_description=data.description)
    with pytest.raises(ConfigError, match=r"has \d+ tokens but model.vocab_size is 100"):
        trainer(tmp_path).fit(model, datamodule=data)
