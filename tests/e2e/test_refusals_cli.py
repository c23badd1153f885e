"""What the CLI refuses, and how: a resume whose data order differs from the checkpoint's names the key and both
values and leaves the run directory byte-identical; bad input (YAML, unknown keys, batch sizes, checkpoints that are
empty or random bytes, an unwritable export) is one line; a disk that fills up during a save keeps the previous
checkpoint, says so in one line, and the run resumes once space is freed.

The refusals run the real CLI entry point in this process (``helpers.in_process``): they stop before any
training, so a subprocess would only add its start-up time."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import torch

from tests.e2e.helpers import callbacks_config, in_process, make_project, run

FIT = ["fit", "--config", "tiny.yaml", "--trainer.max_steps", "8", "--checkpoint.every_n_train_steps", "4",
       "--trainer.val_check_interval", "100", "--sample.enabled", "false"]  # fmt: skip


@pytest.fixture(scope="module")
def project(tmp_path_factory, stdlib_corpus) -> Path:
    project = make_project(tmp_path_factory.mktemp("refusals"), stdlib_corpus)
    result = run(*FIT, cwd=project)
    assert result.returncode == 0, result.stderr[-3000:]
    return project


@pytest.fixture(scope="module")
def other_dataset(project, tmp_path_factory) -> Path:
    """The project's dataset with one validation token changed (and its hash in the manifest): another dataset,
    consistent in itself."""
    import hashlib
    import json
    import shutil

    other = tmp_path_factory.mktemp("other") / "dataset"
    shutil.copytree(project / "data/small", other, ignore=shutil.ignore_patterns("work", "verified.json"))
    val = other / "val_00000.bin"
    content = bytearray(val.read_bytes())
    content[0:2] = (int.from_bytes(content[0:2], "little") ^ 1).to_bytes(2, "little")
    val.write_bytes(bytes(content))
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["splits"]["val"]["sha256"][val.name] = hashlib.sha256(content).hexdigest()
    (other / "manifest.json").write_text(json.dumps(manifest))
    return other


def snapshot(directory: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(directory)): path.read_bytes() for path in sorted(directory.rglob("*")) if path.is_file()
    }


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--data.seq_len", "32"], "was trained with data.seq_len 64 and this run has 32 (its saved position counts windows of that length); resume with --data.seq_len 64, or start a new run"),
        (["--data.seed", "7"], "was trained with data.seed 1234 and this run has 7 (it seeds the window order); resume with --data.seed 1234, or start a new run"),
        (["--data.dataset_dir", "{other}", "--data.prepare_config", "null"], "was trained on the dataset in 'data/small' (fingerprint "),
        (["--data.batch_size", "4"], "the checkpoint was written with 1 process(es) x batch_size 8 x accumulation 1 and this run takes 1 process(es) x batch_size 4"),
    ],
    ids=["seq_len", "seed", "dataset", "batch_size"],
)  # fmt: skip
def test_a_resume_that_disagrees_with_the_checkpoint_is_refused_and_leaves_the_run_directory_as_it_was(
    project, other_dataset, capsys, args, expected
):
    run_dir = project / "runs/tiny"
    before = snapshot(run_dir)
    args = [str(other_dataset) if arg == "{other}" else arg for arg in args]
    code, errors = in_process(project, *FIT, "--trainer.max_steps", "12", *args, "--ckpt_path", "last", capsys=capsys)
    assert code == 2 and len(errors) == 1 and expected in errors[0], errors
    assert snapshot(run_dir) == before  # config.yaml, hparams.yaml, logs, checkpoints and the lock file untouched
    if "dataset_dir" in args:  # names both datasets by their fingerprints, and the key to restore
        assert f"data.dataset_dir '{other_dataset}' holds another (fingerprint " in errors[0]
        assert "resume with --data.dataset_dir data/small" in errors[0]


def test_the_same_data_in_another_directory_resumes(project, tmp_path, capsys):
    """The dataset is known by its shards' hashes, not its path or config: a copy resumes (here at its last step,
    so the run ends at once)."""
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(project / "data/small", copy, ignore=shutil.ignore_patterns("work"))
    code, errors = in_process(project, *FIT, "--data.dataset_dir", str(copy), "--data.prepare_config", "null",
                              "--ckpt_path", "last", capsys=capsys)  # fmt: skip
    assert code == 0 and errors == []


def test_the_python_api_refuses_the_same_resume_when_lightning_restores_the_data_module(project, tmp_path):
    from lit_pretrain import PretrainDataModule, PretrainModule
    from lit_pretrain.errors import ConfigError
    from tests.conftest import quiet_trainer

    data = PretrainDataModule(
        dataset_dir=str(project / "data/small"), prepare_config=None, seq_len=64, batch_size=8, seed=99
    )
    model = PretrainModule(preset="gpt2-tiny", vocab_size=data.vocab_size, token_ids=data.token_ids, seq_len=64)
    trainer = quiet_trainer(tmp_path, max_steps=12, limit_val_batches=0)
    with pytest.raises(ConfigError, match=r"was trained with data.seed 1234 and this run has 99"):
        trainer.fit(model, datamodule=data, ckpt_path=str(project / "runs/tiny/checkpoints/last.ckpt"))


@pytest.mark.parametrize(
    "content, expected",
    [
        (b"", "it is empty (0 bytes)"),
        (os.urandom(4096), "it does not start as a torch.save file does (4,096 bytes of something else)"),
    ],
    ids=["empty", "random-bytes"],
)
def test_an_empty_or_random_checkpoint_is_named_as_such(project, tmp_path, capsys, content, expected):
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(content)
    code, errors = in_process(
        project, *FIT, "--trainer.logger.init_args.name", "bad", "--ckpt_path", str(bad), capsys=capsys
    )
    assert code == 2 and errors == [
        f"error: --ckpt_path '{bad}' cannot be loaded ({expected}); it is truncated or corrupt: resume from another "
        "checkpoint of the run or start without --ckpt_path"
    ]
    assert "mmap" not in errors[0] and not (project / "runs/bad").exists()  # refused: no run directory left behind
    code, errors = in_process(project, "export", str(bad), str(tmp_path / "hf"), capsys=capsys)
    assert code == 2 and errors == [f"error: export: '{bad}' cannot be loaded as a checkpoint ({expected})"]


def test_bad_command_lines_are_one_line_naming_the_culprit(project, tmp_path, capsys):
    broken = tmp_path / "broken.yaml"
    broken.write_text("model:\n  lr: [0.1\ntrainer:\n  max_steps: 3\n")
    code, errors = in_process(project, "fit", "--config", "tiny.yaml", "--config", str(broken), capsys=capsys)
    assert code == 2 and errors == [
        f"error: config file '{broken}' is not valid YAML (line 3, column 8: expected ',' or ']', but got ':'); "
        "fix the file"
    ]
    code, errors = in_process(project, "fit", "--config", "tiny.yaml", "--model.lrr", "0.1", capsys=capsys)
    assert code == 2 and errors == ["error: unrecognized arguments: --model.lrr 0.1; did you mean --model.lr?"]
    typo = tmp_path / "typo.yaml"
    typo.write_text("data:\n  batch_sise: 4\n")
    code, errors = in_process(project, "fit", "--config", "tiny.yaml", "--config", str(typo), capsys=capsys)
    assert code == 2 and errors == [
        "error: Subcommand 'fit' does not accept option 'data.batch_sise'; did you mean 'data.batch_size'?"
    ]
    for value in ("0", "-8"):
        code, errors = in_process(project, *FIT, "--data.batch_size", value, capsys=capsys)
        assert code == 2 and errors == [
            f"error: data.batch_size {value} must be a positive number of windows, e.g. --data.batch_size 32"
        ]
    prep = tmp_path / "prep.yaml"
    prep.write_text("sources: [a\n")
    code, errors = in_process(project, *FIT, "--data.dataset_dir", str(tmp_path / "new"), "--data.prepare_config",
                              str(prep), capsys=capsys)  # fmt: skip
    assert (
        code == 2
        and len(errors) == 1
        and errors[0].startswith(f"error: data.prepare_config '{prep}' is not valid YAML (line 2, column 1: ")
    )


def test_an_export_to_a_path_that_cannot_be_written_is_one_line_and_leaves_nothing(project, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    code, errors = in_process(project, "export", "runs/tiny", str(blocker / "hf"), capsys=capsys)
    assert code == 2 and errors == [
        f"error: export: cannot write '{blocker / 'hf'}' ('{blocker}' is a file); give an output directory you can "
        "write to"
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]


@pytest.fixture
def small_disk(tmp_path):
    """A 6 MB tmpfs: room for the tiny model's periodic and last checkpoints (1.8 MB each) and the logs."""
    mount = tmp_path / "disk"
    mount.mkdir()
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mount)], capture_output=True, text=True
    )
    if made.returncode != 0:
        pytest.skip(f"a small filesystem needs mount (root): {made.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_disk_that_fills_up_during_a_save_keeps_the_previous_checkpoint_and_says_so(project, small_disk, capsys):
    runs, filler = small_disk / "runs", small_disk / "filler"
    fill = callbacks_config(project, "fill", ("FillDisk", {"path": str(filler), "at_step": 6}))
    # Nothing logged between the fill and the save: the save is what meets the full disk (a logger meeting it
    # first ends in the same kind of line, from the CLI's catch-all for a full disk).
    args = [*FIT, "--trainer.logger.init_args.save_dir", str(runs), "--trainer.log_every_n_steps", "50"]
    result = run(*args, "--config", fill, cwd=project)
    last = runs / "tiny/checkpoints/last.ckpt"
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode == 1 and len(errors) == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert (
        errors[0].startswith("error: no space left on device: saving '") and "resume with --ckpt_path last" in errors[0]
    )
    assert torch.load(last, map_location="cpu", weights_only=True)["global_step"] == 4  # the step-4 save, whole
    assert not [p.name for p in last.parent.iterdir() if "partial" in p.name]
    code, errors = in_process(project, "export", str(runs / "tiny"), str(small_disk / "hf"), capsys=capsys)
    assert code == 2 and errors == [
        f"error: export: writing '{small_disk / 'hf'}' failed (no space left on device); nothing was left there: "
        "free space or choose another output directory"
    ]
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler", "runs"]
    filler.unlink()  # space freed
    resumed = run(*args, "--ckpt_path", "last", cwd=project)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert torch.load(last, map_location="cpu", weights_only=True)["global_step"] == 8
