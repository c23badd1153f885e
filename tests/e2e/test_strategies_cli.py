"""Every strategy CPU can run, through the real CLI with two gloo processes: DDP and FSDP2 give the per-step
losses, gradient norms and validation loss of one process on the same global batch, for CLM and MLM; FSDP2 never
holds the whole model on a rank; clipping is by the global norm; presets build the intended strategy objects;
what cannot run here stops with one line before any work."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from tests.e2e.helpers import REPO, free_port, in_process, make_project, run, scalars

DDP = ["--config", str(REPO / "configs/strategy/ddp.yaml"), "--trainer.devices", "2"]
FSDP = ["--config", str(REPO / "configs/strategy/fsdp.yaml"), "--trainer.devices", "2"]
# 6 optimizer steps of 8 windows, clipping at 1.0 (the quickstart's), validation and a sample at the end.
COMMON = ["--trainer.max_steps", "6", "--trainer.val_check_interval", "6", "--trainer.accelerator", "cpu"]
# Two processes in float32 sum in another order than one: losses agree to float32 rounding, not bit for bit.
TOLERANCE = dict(rel=2e-5, abs=2e-5)


def fit(project: Path, name: str, *args: str) -> dict[str, list[tuple[int, float]]]:
    result = run("fit", "--config", "tiny.yaml", *COMMON, *args, "--trainer.logger.init_args.name", name, cwd=project)
    assert result.returncode == 0, result.stderr[-3000:]
    return scalars(project / "runs" / name)


def values(metrics: dict, tag: str) -> list[float]:
    return [value for _, value in metrics[tag]]


@pytest.fixture(scope="module", params=["clm", "mlm"])
def runs(request, tmp_path_factory, stdlib_corpus) -> dict:
    """One process with 8 windows per step, DDP with 2 x 4, FSDP2 with 2 x 4 (with activation checkpointing
    for MLM), on the same data and config."""
    objective = request.param
    project = make_project(tmp_path_factory.mktemp(f"strategies-{objective}"), stdlib_corpus, objective)
    fsdp_extra = ["--model.gradient_checkpointing", "true"] if objective == "mlm" else []
    return {
        "objective": objective,
        "project": project,
        "single": fit(project, "single", "--data.batch_size", "8"),
        "ddp": fit(project, "ddp", *DDP, "--data.batch_size", "4"),
        "fsdp": fit(project, "fsdp", *FSDP, "--data.batch_size", "4", *fsdp_extra),
    }


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_two_processes_give_one_process_losses_and_gradient_norms(runs, strategy):
    single, other = runs["single"], runs[strategy]
    assert len(values(single, "train/loss")) == 6
    assert values(other, "train/loss") == pytest.approx(values(single, "train/loss"), **TOLERANCE)
    assert values(other, "train/grad_norm") == pytest.approx(values(single, "train/grad_norm"), **TOLERANCE)
    for name in ("train/ppl", "train/bpb"):  # the window's token-weighted loss over both ranks' tokens
        assert values(other, name) == pytest.approx(values(single, name), **TOLERANCE)
    assert values(other, "train/tokens_seen") == values(single, "train/tokens_seen")  # both ranks' tokens
    # Exact over the whole validation split: the rank short of a window pads with one that is not counted.
    assert values(other, "val/loss") == pytest.approx(values(single, "val/loss"), **TOLERANCE)


def test_fsdp_equals_ddp_step_by_step_with_clipping_active(runs):
    """Clipping at 1.0 is active (the pre-clip norm exceeds it), so an FSDP2 clip by a shard's own norm (about
    1/sqrt(2) of the global one) would change every update after the first and the losses would part."""
    norms = values(runs["fsdp"], "train/grad_norm")
    assert max(norms) > 1.0
    assert values(runs["fsdp"], "train/loss") == pytest.approx(values(runs["ddp"], "train/loss"), **TOLERANCE)
    assert norms == pytest.approx(values(runs["ddp"], "train/grad_norm"), **TOLERANCE)


def test_fsdp_sharded_checkpoint_validates_to_the_same_loss(runs):
    project = runs["project"]
    checkpoint = project / "runs/fsdp/checkpoints/last.ckpt"
    assert checkpoint.is_dir() and len(list(checkpoint.glob("*.distcp"))) == 2  # one shard per rank
    args = ["--trainer.logger.init_args.name", "fsdp", "--ckpt_path", "last", "--trainer.accelerator", "cpu"]
    result = run("validate", "--config", "tiny.yaml", *FSDP, *args, cwd=project)
    assert result.returncode == 0, result.stderr[-3000:]
    validated = float(result.stdout.split("val/loss")[1].split()[0])
    assert validated == pytest.approx(values(runs["fsdp"], "val/loss")[-1], abs=1e-4)


def test_a_two_rank_sharded_checkpoint_exports_to_the_model_that_gave_its_validation_loss(runs):
    """Export reads the two ranks' DCP shards into one whole model (no process group); the exported directory,
    loaded back by transformers as ``model.init_from`` on one process, validates to the loss the sharded module
    logged during training: every weight arrived in its place."""
    if runs["objective"] != "clm":  # the MLM model's export is tested in test_export_cli.py
        pytest.skip("one two-rank sharded export is enough: gathering DCP shards does not depend on the objective")
    project = runs["project"]
    result = run("export", "runs/fsdp", "hf-fsdp", cwd=project)
    assert result.returncode == 0, result.stderr[-3000:]
    out = (project / "hf-fsdp").resolve()
    assert (out / "model.safetensors").is_file() and (out / "tokenizer.json").is_file()
    args = ["--model.init_from", str(out), "--trainer.logger.init_args.name", "from-export"]
    result = run("validate", "--config", "tiny.yaml", *args, cwd=project)
    assert result.returncode == 0, result.stderr[-3000:]
    validated = float(result.stdout.split("val/loss")[1].split()[0])
    assert validated == pytest.approx(values(runs["fsdp"], "val/loss")[-1], abs=1e-4)


def test_fsdp_llama_with_muon_equals_one_process_and_saves_a_full_checkpoint(tmp_path, stdlib_corpus):
    """Llama blocks sharded, Muon orthogonalising sharded matrices (gathered, then this rank's shard kept): the
    same losses and norms as one process; with save_distributed_checkpoint false, one file with gathered weights."""
    project = make_project(tmp_path, stdlib_corpus)
    llama = ["--model.preset", "llama-tiny", "--model.optimizer", "muon", "--trainer.max_steps", "3",
             "--trainer.val_check_interval", "3"]  # fmt: skip
    single = fit(project, "single", *llama, "--data.batch_size", "8")
    full = ["--trainer.strategy.init_args.save_distributed_checkpoint", "false", "--data.batch_size", "4"]
    sharded = fit(project, "full", *FSDP, *full, *llama)
    # Newton-Schulz runs in bf16: float32 rounding differences of the reduced gradients can flip a bf16 rounding,
    # so Muon runs agree to ~1e-4, not 2e-5 (orthogonalising each shard alone would be off by far more).
    assert values(sharded, "train/loss") == pytest.approx(values(single, "train/loss"), rel=1e-3)
    assert values(sharded, "train/grad_norm") == pytest.approx(values(single, "train/grad_norm"), rel=1e-3)
    checkpoint = torch.load(project / "runs/full/checkpoints/last.ckpt", map_location="cpu", weights_only=True)
    keys = list(checkpoint["state_dict"])
    assert not any("_fsdp" in k or "_orig_mod" in k for k in keys)
    weight = checkpoint["state_dict"]["model.model.layers.0.self_attn.q_proj.weight"]
    assert tuple(weight.shape) == (64, 64)  # gathered, not a shard (llama-tiny: 64 wide)
    assert checkpoint["optimizer_states"][0]["param_groups"][0]["algorithm"] == "muon"


def test_global_batch_size_sets_accumulation_and_matches_one_process(tmp_path, stdlib_corpus):
    """DDP with 2 x 2 windows and data.global_batch_size 8 accumulates 2 micro-batches: the same 8 windows per
    step as one process with batch 8, so the same gradient (CLM counts every token alike)."""
    project = make_project(tmp_path, stdlib_corpus)
    single = fit(project, "single", "--data.batch_size", "8", "--trainer.max_steps", "3")
    accumulated = fit(
        project, "ddp", *DDP, "--data.batch_size", "2", "--data.global_batch_size", "8", "--trainer.max_steps", "3"
    )
    hparams = yaml.safe_load((project / "runs/ddp/hparams.yaml").read_text())
    assert hparams["global_batch_size"] == 8
    assert len(values(accumulated, "train/grad_norm")) == 3  # 3 optimizer steps of 2 micro-batches each
    assert values(accumulated, "train/grad_norm") == pytest.approx(values(single, "train/grad_norm"), **TOLERANCE)


def test_fsdp_never_holds_the_whole_model_on_a_rank(tmp_path, stdlib_corpus):
    """A 16-block model (~200 MB of fp32 parameters, nearly all in the blocks): one process holds all of it; an
    FSDP2 rank at most half of the blocks plus the one being built and the root's small embeddings."""
    project = make_project(tmp_path, stdlib_corpus)
    callbacks = [{"class_path": "recorder.PeakMemory", "init_args": {"path": str(project / "peak")}}]
    (project / "memory.yaml").write_text(yaml.safe_dump({"trainer": {"callbacks": callbacks}}))
    big = [
        "--model.config",
        "{n_layer: 16, n_embd: 512, n_head: 8}",
        "--trainer.max_steps",
        "1",
        "--trainer.limit_val_batches",
        "0",
        "--checkpoint.every_n_train_steps",
        "0",
        "--config",
        "memory.yaml",
    ]
    fit(project, "whole", *big, "--data.batch_size", "2")
    whole = json.loads((project / "peak.0.json").read_text())
    fit(project, "sharded", *big, *FSDP, "--data.batch_size", "1")
    ranks = [json.loads((project / f"peak.{rank}.json").read_text()) for rank in (0, 1)]
    size = whole["model_parameter_bytes"]
    assert size > 190e6 and whole["peak_parameter_bytes"] == whole["local_parameter_bytes"] == size  # the control
    for rank in ranks:
        assert rank["model_parameter_bytes"] == size
        assert rank["local_parameter_bytes"] == pytest.approx(size / 2, rel=0.02)
        assert size / 2 < rank["peak_parameter_bytes"] < 0.6 * size  # measured: 0.53 (16 blocks)


def test_compile_keeps_the_models_own_checkpoint_keys_and_its_losses(runs, capsys):
    if runs["objective"] != "clm":
        pytest.skip("one compiled run is enough (CPU compilation takes about a minute)")
    project = runs["project"]
    # aot_eager instead of inductor (torch >= 2.13 honours this override; older ones compile with inductor): the
    # in-place wrapping and the key names are the same under any backend, and inductor's C++ code generation
    # takes over a minute of the suite on CPU. benchmarks/gpu_check.py compiles with inductor on a GPU.
    result = run("fit", "--config", "tiny.yaml", *COMMON, "--data.batch_size", "8", "--model.compile", "true",
                 "--trainer.logger.init_args.name", "compiled", cwd=project,
                 env={"TORCH_COMPILE_OVERRIDE_BACKENDS": ">=0:aot_eager"})  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    compiled = scalars(project / "runs/compiled")
    assert values(compiled, "train/loss") == pytest.approx(values(runs["single"], "train/loss"), rel=1e-4)
    checkpoint = torch.load(project / "runs/compiled/checkpoints/last.ckpt", map_location="cpu", weights_only=True)
    keys = list(checkpoint["state_dict"])
    assert "model.transformer.wte.weight" in keys and not any("_orig_mod" in key for key in keys)
    code, errors = in_process(project, "export", "runs/compiled", "hf-compiled", capsys=capsys)
    assert code == 0, errors
    from safetensors.torch import load_file

    exported = load_file(project / "hf-compiled/model.safetensors")
    assert "transformer.wte.weight" in exported and not any("_orig_mod" in key for key in exported)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--config", str(REPO / "configs/strategy/deepspeed_zero2.yaml")],
         "error: trainer.strategy DeepSpeedStrategy (ZeRO stage 2) runs on CUDA GPUs only and this machine has none; use --config configs/strategy/ddp.yaml"),
        (["--model.fp8", "true"], "error: model.fp8 needs a CUDA GPU with compute capability >= 8.9"),
        (["--data.global_batch_size", "12"],
         "error: data.global_batch_size 12 is not a multiple of data.batch_size 8 x 1 devices x 1 nodes = 8"),
        (["--stability.skip_spikes", "true", *DDP],
         "error: stability.skip_spikes drops a batch on one process without DeepSpeed only, not on 2 processes"),
    ],
)  # fmt: skip
def test_what_cannot_run_here_stops_with_one_line_before_any_work(tmp_path, stdlib_corpus, args, message, capsys):
    # In this process: each stops before any work, so a subprocess would only add its start-up time.
    project = make_project(tmp_path, stdlib_corpus, prepared=False)
    code, errors = in_process(project, "fit", "--config", "tiny.yaml", *args, capsys=capsys)
    assert code == 2 and len(errors) == 1 and errors[0].startswith(message), errors
    assert not (project / "data").exists() and not (project / "runs").exists()  # nothing prepared, no run dir


def test_two_nodes_started_by_torchrun_give_one_process_losses(runs):
    """Two "nodes" on localhost, each ``torchrun --nnodes 2 --nproc-per-node 1 --node-rank R`` (the environment
    torchrun sets: RANK, GROUP_RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR/PORT) running the real CLI with
    ``--trainer.num_nodes 2``: Lightning takes the ranks from torchrun instead of launching its own processes,
    and the run logs the losses and gradient norms of one process on the same global batch. Its dataset directory
    is new: node 0 alone prepares it (``data.prepare_data_per_node`` false, the localhost "nodes" share storage)
    while node 1 waits, and both train on it."""
    if runs["objective"] != "clm":  # MLM under two processes is tested above, started by Lightning
        pytest.skip("one torchrun launch is enough: how the ranks are started does not depend on the objective")
    import subprocess
    import sys

    from tests.e2e.helpers import environment

    project, port = runs["project"], free_port()
    command = ["fit", "--config", "tiny.yaml", *COMMON, "--config", str(REPO / "configs/strategy/ddp.yaml"),
               "--trainer.num_nodes", "2", "--trainer.devices", "1", "--data.batch_size", "4",
               "--trainer.logger.init_args.name", "torchrun", "--data.dataset_dir", "data/torchrun"]  # fmt: skip
    nodes = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--nnodes",
                "2",
                "--nproc-per-node",
                "1",
                "--node-rank",
                str(rank),
                "--master-addr",
                "127.0.0.1",
                "--master-port",
                str(port),
                "-m",
                "lit_pretrain",
                *command,
            ],
            cwd=project,
            env=environment(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for rank in (0, 1)
    ]
    outputs = [node.communicate(timeout=600) for node in nodes]
    for node, (_, stderr) in zip(nodes, outputs):
        assert node.returncode == 0, stderr[-3000:]
    assert "Initializing distributed: GLOBAL_RANK: 1, MEMBER: 2/2" in outputs[1][1] + outputs[1][0]
    assert "data_prep funnel:" in outputs[0][0] and "data_prep funnel:" not in outputs[1][0] + outputs[1][1]
    assert (project / "data" / "torchrun" / "manifest.json").is_file()
    metrics = scalars(project / "runs" / "torchrun")
    single = runs["single"]
    assert values(metrics, "train/loss") == pytest.approx(values(single, "train/loss"), **TOLERANCE)
    assert values(metrics, "train/grad_norm") == pytest.approx(values(single, "train/grad_norm"), **TOLERANCE)
    assert values(metrics, "val/loss") == pytest.approx(values(single, "val/loss"), **TOLERANCE)
