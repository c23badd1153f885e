"""``python -m lit_pretrain estimate`` through the real entry point: the training config and overrides as fit reads
them, a table for people, ``--json`` for scripts, one-line errors."""

from __future__ import annotations

import json

import pytest

from tests.e2e.helpers import REPO, make_project, run


@pytest.fixture(scope="module")
def project(tmp_path_factory, stdlib_corpus):
    return make_project(tmp_path_factory.mktemp("estimate"), stdlib_corpus)


def estimate(project, *args: str) -> dict:
    """``--json`` figures from the entry point's ``main`` in this process (a subprocess per call would spend ~5 s
    importing torch each time; the tests below that check the table and the errors go through a subprocess)."""
    import contextlib
    import io
    import os

    from lit_pretrain.cli import main

    out, cwd = io.StringIO(), os.getcwd()
    try:
        os.chdir(project)
        with contextlib.redirect_stdout(out):
            main(["estimate", "--config", "tiny.yaml", *args, "--json"])
    finally:
        os.chdir(cwd)
    text = out.getvalue()
    return json.loads(text[text.index("{") :])


def test_json_has_every_figure_and_they_agree_with_each_other(project):
    out = estimate(project, "--gpu", "h200", "--gpus", "8", "--tokens", "1e9", "--mfu", "0.5",
                   "--price_per_gpu_hour", "3")  # fmt: skip
    assert out["strategy"] == "ddp" and out["gpus"] == 8 and out["precision"] == "32-true"
    assert out["seq_len"] == 64 and out["micro_batch"] == 8  # tiny.yaml's data.seq_len and batch_size
    assert out["global_batch_tokens"] == 8 * 64 * 8 and out["steps"] == -(-int(1e9) // (8 * 64 * 8))
    assert out["total_flops"] == pytest.approx(out["flops_per_token"] * 1e9)
    seconds = out["total_flops"] / (8 * 67e12 * 0.5)  # 32-true on an H200: its dense fp32 peak
    assert out["hours"] == pytest.approx(seconds / 3600) and out["cost"] == pytest.approx(seconds / 3600 * 8 * 3)
    assert out["chinchilla_tokens"] == 20 * out["parameters"]
    memory = out["memory_per_gpu_gib"]
    parts = memory["weights"] + memory["gradients"] + memory["optimizer_states"] + memory["activations"]
    assert memory["total"] == pytest.approx(parts) and out["fits"] is True


def test_overrides_and_strategy_presets_change_the_estimate_as_fit_would_run(project):
    plain = estimate(project, "--tokens", "1e9")
    bigger = estimate(project, "--tokens", "1e9", "--model.preset", "gpt2-mini")
    assert bigger["parameters"] > 5 * plain["parameters"]
    assert estimate(project, "--trainer.max_steps", "100")["tokens"] == 100 * 8 * 64  # default budget: max_steps
    fsdp = estimate(project, "--config", str(REPO / "configs/strategy/fsdp.yaml"), "--gpus", "4",
                    "--trainer.precision", "bf16-mixed")  # fmt: skip
    assert fsdp["strategy"] == "fsdp" and fsdp["gpus"] == 4
    offload = estimate(project, "--config", str(REPO / "configs/strategy/deepspeed_zero3_offload.yaml"), "--gpus",
                       "4", "--trainer.precision", "bf16-mixed")  # fmt: skip
    assert offload["strategy"] == "zero3+offload" and offload["cpu_offloaded_gib"] > 0
    assert offload["memory_per_gpu_gib"]["optimizer_states"] == 0
    checkpointed = estimate(project, "--model.gradient_checkpointing", "true")
    assert checkpointed["memory_per_gpu_gib"]["activations"] < plain["memory_per_gpu_gib"]["activations"]


def test_the_table_names_every_figure(project):
    result = run("estimate", "--config", "tiny.yaml", "--tokens", "1e9", "--price_per_gpu_hour", "2.5", cwd=project)
    assert result.returncode == 0, result.stderr[-2000:]
    for label in ("parameters", "FLOPs per token", "memory per GPU", "weights", "gradients", "optimizer states",
                  "activations", "tokens", "training FLOPs", "time", "cost", "compute-optimal tokens"):  # fmt: skip
        assert label in result.stdout, label


@pytest.mark.parametrize(
    "args, message",
    [
        (["--gpu", "v100"], "error: --gpu 'v100' is unknown; use one of a100, h100,"),
        (["--mfu", "40"], "error: --mfu 40.0 must be in (0, 1], e.g. 0.4"),
        (["--data.global_batch_size", "12", "--gpus", "2"], "error: data.global_batch_size 12 is not a multiple"),
    ],
)
def test_bad_input_is_one_line(project, args, message):
    result = run("estimate", "--config", "tiny.yaml", *args, cwd=project)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith(message), lines[-3:]
    assert not [line for line in lines if line.startswith("Traceback")]


def test_tokens_per_parameter_sets_fits_horizon_and_estimate_shows_the_same_steps(project):
    """20 tokens per parameter would be minutes here; 0.05 gives ~15 steps of 8 x 64 tokens. The parameters are
    counted independently of lit_pretrain: the distinct tensors of the checkpoint fit writes (tied ones once)."""
    import math

    import torch

    result = run("fit", "--config", "tiny.yaml", "--data.tokens_per_parameter", "0.05", "--sample.enabled", "false",
                 "--trainer.logger.init_args.name", "horizon", cwd=project)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    checkpoint = torch.load(project / "runs/horizon/checkpoints/last.ckpt", map_location="cpu", weights_only=True)
    distinct = {value.untyped_storage().data_ptr(): value.numel() for value in checkpoint["state_dict"].values()}
    parameters = sum(distinct.values())
    steps = math.ceil(0.05 * parameters / (8 * 64))
    assert checkpoint["global_step"] == steps and steps != 40  # tiny.yaml's max_steps is replaced
    notice = (
        f"lit_pretrain: data.tokens_per_parameter 0.05 x {parameters:,} parameters = {0.05 * parameters:,.0f} tokens "
        f"= {steps} steps of 512 tokens; replaces trainer.max_steps 40"
    )
    assert notice in result.stderr.splitlines()
    out = estimate(project, "--data.tokens_per_parameter", "0.05")
    assert out["parameters"] == parameters and out["steps"] == steps
    assert out["tokens"] == pytest.approx(0.05 * parameters)
    assert out["tokens_source"] == "data.tokens_per_parameter (0.05 per parameter)"
