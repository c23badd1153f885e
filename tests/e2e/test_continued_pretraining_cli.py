"""Continued pretraining as a user runs it: a local Hugging Face directory (made here with save_pretrained)
supplies both the tokenizer (data_prep's tokenizer.pretrained) and the weights (--model.init_from)."""

from __future__ import annotations

import shutil

import pytest
import torch
import yaml
from transformers import AutoModelForCausalLM

from data_prep.tokens.shards import read_manifest
from lit_pretrain.models import build_config
from lit_pretrain.windows import WindowDataset
from tests.e2e.helpers import make_project, run


def test_fit_and_validate_from_a_local_hugging_face_directory(tmp_path, stdlib_corpus, prepared_dataset):
    directory = tmp_path / "my-model"
    torch.manual_seed(3)
    config = build_config("gpt2-tiny", None, 512, {"end_of_text_id": 0})
    AutoModelForCausalLM.from_config(config).save_pretrained(directory)
    for path in (prepared_dataset / "hf_tokenizer").iterdir():  # the model's own tokenizer, beside its weights
        shutil.copy(path, directory / path.name)
    (tmp_path / "project").mkdir()
    project = make_project(tmp_path / "project", stdlib_corpus, prepared=False)
    prep = yaml.safe_load((project / "prep.yaml").read_text())
    prep["tokenizer"]["pretrained"] = str(directory)
    (project / "prep.yaml").write_text(yaml.safe_dump(prep))
    start = ["--config", "tiny.yaml", "--model.init_from", str(directory), "--model.preset", "null"]

    result = run("validate", *start, cwd=project)
    assert result.returncode == 0, result.stderr[-3000:]
    logged = float(result.stdout.split("val/loss")[1].split()[0])
    # The loaded model's own loss (transformers computes it) on the same validation windows.
    manifest = read_manifest(project / "data/small")
    windows = WindowDataset(project / "data/small", manifest["splits"]["val"]["files"], manifest["dtype"], 64)
    batch = torch.stack([windows[i]["input_ids"] for i in range(len(windows))])
    with torch.no_grad():
        expected = AutoModelForCausalLM.from_pretrained(str(directory))(input_ids=batch, labels=batch).loss.item()
    assert logged == pytest.approx(expected, rel=1e-4)

    result = run("fit", *start, "--trainer.max_steps", "5", "--trainer.logger.init_args.name", "continued", cwd=project)
    assert result.returncode == 0, result.stderr[-3000:]
    hparams = yaml.safe_load((project / "runs/continued/hparams.yaml").read_text())
    assert hparams["init_from"] == str(directory) and hparams["token_ids"]["eos_token_id"] == 0
