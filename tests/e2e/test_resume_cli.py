"""Exact resume through the real CLI after a hard kill (``os._exit(9)`` at the start of a step: no cleanup, no
checkpoint), beyond the single-process mid-epoch case of ``test_cli.py`` (MLM with accumulation is in
``test_mlm_cli.py``): across an epoch boundary, under DDP and FSDP2 with two gloo processes, and from two
processes to one. Then the checkpoints ``--ckpt_path`` must refuse with one line: truncated, another model's,
another batch layout; and a sharded FSDP2 checkpoint killed mid-save, repeatedly, still resumes.

A corpus of two standard-library packages in windows of 256 tokens: 21 steps of 16 windows per epoch, so a
26-step run crosses into epoch 1 after step 21."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest
import yaml

from tests.conftest import copy_stdlib_corpus
from tests.e2e.helpers import (
    REPO,
    environment,
    in_process,
    make_project,
    prepare_data,
    read_records,
    recorder_config,
    run,
)

DDP = ["--config", str(REPO / "configs/strategy/ddp.yaml"), "--trainer.devices", "2", "--data.batch_size", "8"]
FSDP = ["--config", str(REPO / "configs/strategy/fsdp.yaml"), "--trainer.devices", "2", "--data.batch_size", "8"]
# 26 steps of 16 windows, a checkpoint every 5 steps, no validation (an epoch is shorter than val_check_interval).
COMMON = ["--config", "tiny.yaml", "--data.seq_len", "256", "--trainer.max_steps", "26", "--trainer.accelerator",
          "cpu", "--trainer.limit_val_batches", "0", "--checkpoint.every_n_train_steps", "5",
          "--sample.max_new_tokens", "1"]  # fmt: skip
KILL_AT = 23  # dies at the start of step 24; the last checkpoint is after step 20, so a resume crosses the epoch
# Two processes sum in another order than one: float32 rounding, not bit for bit (as in test_strategies_cli).
TOLERANCE = dict(rel=2e-5, abs=2e-5)


def by_step(records: list[dict]) -> dict[int, dict]:
    """step -> {"rows": sorted window hashes over all ranks, "loss": mean over ranks, "epoch"}."""
    steps: dict[int, dict] = defaultdict(lambda: {"rows": [], "losses": []})
    for record in records:
        step = steps[record["step"]]
        step["rows"] += record["rows"]
        step["losses"].append(record["loss"])
        step["epoch"] = record["epoch"]
    return {
        s: {"rows": sorted(v["rows"]), "loss": sum(v["losses"]) / len(v["losses"]), "epoch": v["epoch"]}
        for s, v in sorted(steps.items())
    }


def fit(project: Path, name: str, *args: str, kill_at: int | None = None, resume: bool = False) -> list[dict]:
    config, record = recorder_config(project, f"{name}-{'resumed' if resume else 'first'}", kill_at_step=kill_at)
    extra = ["--ckpt_path", "last"] if resume else []
    result = run("fit", *COMMON, *args, "--config", config, "--trainer.logger.init_args.name", name, *extra,
                 cwd=project)  # fmt: skip
    assert result.returncode == (9 if kill_at is not None else 0), result.stderr[-3000:]
    return read_records(record)


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("resume")
    corpus = copy_stdlib_corpus(root / "corpus", packages=("json", "http"))
    (root / "project").mkdir()
    project = make_project(root / "project", corpus, prepared=False)
    prep = yaml.safe_load((project / "prep.yaml").read_text())
    prep["split"]["val_fraction"] = 0.3  # ten files: three for validation
    (project / "prep.yaml").write_text(yaml.safe_dump(prep))
    prepare_data(project)
    return project


@pytest.fixture(scope="module")
def reference(project) -> dict[int, dict]:
    """One uninterrupted process, 16 windows per step."""
    return by_step(fit(project, "reference", "--data.batch_size", "16"))


def assert_continues(resumed: dict[int, dict], reference: dict[int, dict], **tolerance) -> None:
    assert list(resumed) == list(range(21, 27))  # after the step-20 checkpoint, nothing repeated or skipped
    assert [reference[s]["epoch"] for s in resumed] == [0, 1, 1, 1, 1, 1]  # the boundary is crossed
    for step, record in resumed.items():
        assert record["rows"] == reference[step]["rows"], f"step {step} trained on other windows"
        assert record["epoch"] == reference[step]["epoch"]
    losses = [record["loss"] for record in resumed.values()]
    expected = [reference[step]["loss"] for step in resumed]
    assert losses == (pytest.approx(expected, **tolerance) if tolerance else expected)


def test_one_process_resumes_bit_identically_across_an_epoch_boundary(project, reference):
    killed = by_step(fit(project, "single", "--data.batch_size", "16", kill_at=KILL_AT))
    assert list(killed) == list(range(1, KILL_AT + 1))
    resumed = by_step(fit(project, "single", "--data.batch_size", "16", resume=True))
    assert_continues(resumed, reference)  # equal floats: same process layout, same kernels, same order


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_two_processes_resume_exactly_and_so_does_one_process_from_their_checkpoint(
    project, reference, strategy, capsys
):
    args = DDP if strategy == "ddp" else FSDP
    killed = by_step(fit(project, strategy, *args, kill_at=KILL_AT))
    assert list(killed) == list(range(1, KILL_AT + 1))
    checkpoint = project / f"runs/{strategy}/checkpoints/last.ckpt"
    assert checkpoint.is_dir() == (strategy == "fsdp")  # FSDP2: one shard per rank
    shutil.copytree(project / f"runs/{strategy}", project / f"runs/{strategy}-to-one")
    resumed = by_step(fit(project, strategy, *args, resume=True))
    assert_continues(resumed, reference, **TOLERANCE)

    # The same checkpoint resumed by one process taking the 16 windows of a step alone (FSDP2 reshards the
    # two-rank checkpoint onto one rank): the global sample position is kept.
    one = args[:2] + ["--trainer.devices", "1"] if strategy == "fsdp" else []
    code, errors = in_process(project, "fit", *COMMON, *one, "--data.batch_size", "8", "--trainer.logger.init_args.name",
                              f"{strategy}-to-one", "--ckpt_path", "last", capsys=capsys)  # fmt: skip
    assert code == 2 and errors == [
        "error: --ckpt_path: the checkpoint was written with 2 process(es) x batch_size 8 x accumulation 1 and this "
        "run takes 1 process(es) x batch_size 8 x accumulation 1; resume with batch_size x processes = 16 and "
        "accumulation 1 (here: --data.batch_size 16), or start a new run"
    ]
    resumed_alone = by_step(fit(project, f"{strategy}-to-one", *one, "--data.batch_size", "16", resume=True))
    assert_continues(resumed_alone, reference, **TOLERANCE)


def test_a_truncated_or_another_models_checkpoint_is_refused_with_one_line(project, reference, capsys):
    # In this process: each is refused before any work, so a subprocess would only add its start-up time.
    source = project / "runs/reference/checkpoints/last.ckpt"
    truncated = project / "truncated.ckpt"
    truncated.write_bytes(source.read_bytes()[: source.stat().st_size // 2])
    base = [*COMMON, "--data.batch_size", "16", "--trainer.logger.init_args.name", "refused"]

    def one_error(*args: str) -> str:
        code, errors = in_process(project, *args, capsys=capsys)
        assert code == 2 and len(errors) == 1, errors
        return errors[0]

    error = one_error("fit", *base, "--ckpt_path", str(truncated))
    assert error.startswith(f"error: --ckpt_path '{truncated}' cannot be loaded (") and "truncated or corrupt" in error
    error = one_error("fit", *base, "--model.config", "{n_layer: 3}", "--ckpt_path", str(source))
    assert error.startswith(f"error: --ckpt_path '{source}' was written by another model than this config builds: ")
    assert "'model.transformer.h.2." in error  # the third block, which the checkpoint lacks
    error = one_error("fit", *base, "--model.config", "{n_embd: 96}", "--ckpt_path", str(source))
    assert "is [512, 64] there and [512, 96] here" in error  # the head and the token embedding
    assert not (project / "runs/refused").exists()  # nothing trained, nothing written, no lock left behind
    error = one_error("validate", *base, "--trainer.logger.init_args.name", "none", "--ckpt_path", "last")
    assert (
        error == "error: --ckpt_path last: no checkpoint in runs/none/checkpoints; run fit first or name a checkpoint"
    )


def test_sigkill_during_sharded_saves_always_leaves_a_checkpoint_that_resumes(project):
    """FSDP2 saving a 3-block model of width 256 (about 40 MB of shards and optimizer state) after every step,
    killed (the whole process group: both ranks) while a save is under way, twice; each restart resumes
    from what ``last.ckpt`` holds and goes on."""
    name = "sharded-kills"
    last = project / f"runs/{name}/checkpoints/last.ckpt"
    partial = last.with_name(".last.ckpt.partial")

    def command(max_steps: int) -> list[str]:
        return ["fit", *COMMON, *FSDP, "--model.config", "{n_embd: 256, n_layer: 3, n_head: 4}",
                "--checkpoint.every_n_train_steps", "1", "--trainer.max_steps", str(max_steps),
                "--trainer.logger.init_args.name", name, "--ckpt_path", "last"]  # fmt: skip

    steps = []
    for _ in range(2):
        process = subprocess.Popen([sys.executable, "-m", "lit_pretrain", *command(200)],
                                   cwd=project, env=environment(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                   start_new_session=True, text=True)  # fmt: skip
        deadline, saves_seen = time.monotonic() + 240, 0
        while True:
            assert process.poll() is None and time.monotonic() < deadline, process.stderr.read()[-3000:]
            if partial.exists():  # a save is under way: shards being written beside last.ckpt, or being swapped in
                saves_seen += 1
                if saves_seen >= 3:  # let the resumed run land two saves of its own first
                    os.killpg(process.pid, signal.SIGKILL)
                    break
                while partial.exists() and process.poll() is None:
                    time.sleep(0.001)
            time.sleep(0.001)
        process.wait()
        process.stderr.close()
        # What a restart finds: put back a checkpoint killed between the swap's two renames, then read it.
        from torch.distributed.checkpoint import FileSystemReader

        from lit_pretrain.checkpoint_io import restore_interrupted_replacements

        restore_interrupted_replacements(last.parent)
        assert len(list(last.glob("*.distcp"))) == 2 and FileSystemReader(str(last)).read_metadata() is not None
        import torch

        steps.append(torch.load(last / "meta.pt", map_location="cpu", weights_only=True)["global_step"])
    assert steps == sorted(steps) and steps[-1] > steps[0], steps  # every round resumed and went on
    result = run(*command(steps[-1] + 1), cwd=project)
    assert result.returncode == 0, result.stderr[-3000:]
