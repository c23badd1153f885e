"""``python -m lit_pretrain export``: a real run's checkpoint becomes a Hugging Face directory that transformers
loads from an absolute path without trust_remote_code, whose logits are the module's and whose pipelines run."""

from __future__ import annotations

import pytest
import torch

from tests.e2e.helpers import in_process, make_project, run


@pytest.fixture(scope="module", params=["clm", "mlm"])
def exported(request, tmp_path_factory, stdlib_corpus):
    objective = request.param
    project = make_project(tmp_path_factory.mktemp(f"export-{objective}"), stdlib_corpus, objective)
    result = run("fit", "--config", "tiny.yaml", "--trainer.max_steps", "4", "--sample.enabled", "false", cwd=project)
    assert result.returncode == 0, result.stderr[-3000:]
    result = run("export", "runs/tiny", "hf", cwd=project)
    assert result.returncode == 0, result.stderr[-3000:]
    return objective, project, (project / "hf").resolve()


def module_logits(project, input_ids: torch.Tensor) -> torch.Tensor:
    """The training module's own logits, rebuilt from the checkpoint by Lightning's state-dict keys."""
    from lit_pretrain import PretrainModule

    checkpoint = torch.load(project / "runs/tiny/checkpoints/last.ckpt", map_location="cpu", weights_only=True)
    hparams = {key: value for key, value in checkpoint["hyper_parameters"].items() if not key.startswith("_")}
    module = PretrainModule(**hparams)
    module.configure_model()
    module.load_state_dict(checkpoint["state_dict"], strict=True)
    module.model.eval()
    with torch.no_grad():
        return module(input_ids)


def test_the_export_loads_with_auto_classes_and_gives_the_modules_logits(exported):
    from transformers import AutoModelForCausalLM, AutoModelForMaskedLM, AutoTokenizer

    objective, project, out = exported
    assert (out / "model.safetensors").is_file() and (out / "config.json").is_file()
    auto = AutoModelForMaskedLM if objective == "mlm" else AutoModelForCausalLM
    model = auto.from_pretrained(str(out), trust_remote_code=False, local_files_only=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(out), local_files_only=True)
    input_ids = torch.tensor([tokenizer.encode("def fibonacci(n):\n    return n", add_special_tokens=False)])
    with torch.no_grad():
        logits = model(input_ids=input_ids).logits
    assert torch.allclose(logits, module_logits(project, input_ids), atol=1e-5)
    if objective == "clm":
        assert model.config.eos_token_id == tokenizer.eos_token_id == 0  # the tokenizer's own end of text
    else:
        assert tokenizer.mask_token_id is not None and model.config.pad_token_id == tokenizer.pad_token_id


def test_the_pipeline_runs_on_the_export(exported):
    from transformers import pipeline

    objective, _, out = exported
    if objective == "clm":
        generate = pipeline("text-generation", model=str(out), device="cpu")
        text = generate("def fibonacci(n):", max_new_tokens=8, do_sample=False)[0]["generated_text"]
        assert text.startswith("def fibonacci(n):") and len(text) > len("def fibonacci(n):")
    else:
        fill = pipeline("fill-mask", model=str(out), device="cpu")
        predictions = fill(f"for index in {fill.tokenizer.mask_token}(len(items)):", top_k=3)
        assert len(predictions) == 3 and all(0 <= p["score"] <= 1 for p in predictions)


def test_bad_exports_are_one_line_and_write_nothing(exported, tmp_path, capsys):
    # In this process: each is refused before anything is written, so a subprocess would only add its start-up.
    _, project, out = exported
    code, errors = in_process(project, "export", "runs/tiny", str(out), capsys=capsys)  # exists, not empty
    assert code == 2 and errors == [
        f"error: export: '{out}' exists and is not empty; give a new directory or remove it"
    ]
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes((project / "runs/tiny/checkpoints/last.ckpt").read_bytes()[:5000])
    code, errors = in_process(project, "export", str(truncated), str(tmp_path / "x"), capsys=capsys)
    assert code == 2 and len(errors) == 1
    assert errors[0].startswith(f"error: export: '{truncated}' cannot be loaded as a checkpoint")
    code, errors = in_process(project, "export", str(tmp_path / "nothing"), str(tmp_path / "y"), capsys=capsys)
    assert code == 2 and len(errors) == 1 and "does not exist" in errors[0]
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
    assert not list(tmp_path.glob(".*partial*")) and not list(project.glob(".*partial*"))


@pytest.mark.parametrize("stage", [2, 3])
def test_a_deepspeed_zero_checkpoint_exports_to_the_model_deepspeed_trained(stage, tmp_path, prepared_dataset):
    """A real DeepSpeed engine (its CPU accelerator: Lightning runs DeepSpeed on CUDA only) writes ZeRO-2 / ZeRO-3
    checkpoints as Lightning's DeepSpeedStrategy does (``deepspeed_checkpoint.py``); the export's logits equal
    the DeepSpeed-trained model's."""
    import subprocess
    import sys

    from transformers import AutoModelForCausalLM

    from tests.e2e.helpers import HERE, environment, free_port

    checkpoint = tmp_path / "last.ckpt"
    made = subprocess.run([sys.executable, str(HERE / "deepspeed_checkpoint.py"), str(stage), str(checkpoint)],
                          env={**environment(), "MASTER_PORT": str(free_port())}, capture_output=True, text=True,
                          timeout=600)  # fmt: skip
    if made.returncode != 0 and "Error building extension" in made.stderr:
        pytest.skip("DeepSpeed cannot build its CPU communication op here (no C++ compiler)")
    assert made.returncode == 0, made.stderr[-3000:]
    assert (checkpoint / "latest").read_text().strip() == "checkpoint"
    result = run("export", str(checkpoint), str(tmp_path / "hf"), "--dataset_dir", str(prepared_dataset),
                 cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    model = AutoModelForCausalLM.from_pretrained(str(tmp_path / "hf"), local_files_only=True).eval()
    reference = torch.load(f"{checkpoint}.logits.pt", weights_only=True)
    with torch.no_grad():
        logits = model(input_ids=reference["input_ids"]).logits
    assert torch.allclose(logits, reference["logits"], atol=1e-5)
    assert (tmp_path / "hf/tokenizer.json").is_file()
