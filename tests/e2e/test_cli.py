"""The real CLI in subprocesses, as a user runs it: prepare, fit, resume, inspect, and bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.e2e.helpers import REPO, cli, in_process, kill_and_resume, make_project, run, scalars


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, stdlib_corpus) -> Path:
    """A project directory with a tiny-model config whose data_prep config points at a small corpus."""
    return make_project(tmp_path_factory.mktemp("project"), stdlib_corpus, prepared=False)  # fit prepares it


def test_fit_prepares_data_trains_logs_checkpoints_and_samples(workdir):
    result = run("fit", "--config", "tiny.yaml", cwd=workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = workdir / "runs" / "tiny"
    assert (workdir / "data/small/manifest.json").is_file()  # prepare_data built the dataset
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["trainer"]["max_steps"] == 40 and saved["data"]["seq_len"] == 64
    hparams = yaml.safe_load((run_dir / "hparams.yaml").read_text())
    assert hparams["seq_len"] == 64 and hparams["vocab_size"] == 512  # linked from the data module
    metrics = scalars(run_dir)
    train_loss = [value for _, value in metrics["train/loss"]]
    val_loss = [value for _, value in metrics["val/loss"]]
    assert train_loss[0] > 6.0 and train_loss[-1] < train_loss[0] - 0.7, train_loss  # from ~ln(512)
    assert len(val_loss) == 2 and val_loss[-1] < val_loss[0]
    assert {"val/ppl", "val/bpb", "train/lr", "train/ppl", "train/bpb"} <= set(metrics)
    assert metrics["val/ppl"][-1][1] == pytest.approx(float(__import__("math").exp(val_loss[-1])), rel=1e-4)
    assert "sample for 'def fibonacci(n):'" in result.stdout
    assert "val/bpb" in result.stdout


def test_overrides_print_config_and_help(workdir, capsys):
    # In this process: printing a config or the help trains nothing, so a subprocess would only add its start-up.
    overrides = ["--trainer.max_steps", "7", "--data.batch_size", "4", "--model.config", '{"n_layer": 1}',
                 "--checkpoint.every_n_train_steps", "3"]  # fmt: skip
    result = cli(workdir, "fit", "--config", "tiny.yaml", *overrides, "--print_config", capsys=capsys)
    assert result.returncode == 0, result.stderr
    printed = yaml.safe_load(result.stdout)
    assert printed["trainer"]["max_steps"] == 7 and printed["data"]["batch_size"] == 4
    assert printed["model"]["config"] == {"n_layer": 1} and printed["checkpoint"]["every_n_train_steps"] == 3
    help_text = cli(workdir, "fit", "--help", capsys=capsys).stdout
    for flag in ("--checkpoint.dirpath", "--checkpoint.save_last", "--data.seq_len", "--model.preset", "--ckpt_path"):
        assert flag in help_text
    top = cli(workdir, "--help", capsys=capsys).stdout
    assert all(command in top for command in ("fit", "validate", "test"))


def test_resume_after_a_kill_sees_exactly_the_windows_of_an_uninterrupted_run(workdir):
    common = [
        "--config",
        "tiny.yaml",
        "--trainer.max_steps",
        "12",
        "--checkpoint.every_n_train_steps",
        "4",
        "--trainer.val_check_interval",
        "100",
        "--sample.max_new_tokens",
        "1",
    ]
    expected, before, after = kill_and_resume(workdir, common, "resumed", kill_at_step=6)
    # Died at the start of step 7; the last checkpoint is after step 4.
    assert [r["step"] for r in before] == [1, 2, 3, 4, 5, 6]
    assert [r["step"] for r in after] == list(range(5, 13))  # continues after the step-4 checkpoint
    assert [r["windows"] for r in after] == [r["windows"] for r in expected[4:]]
    # Same windows, same weights, same optimizer state: the losses match the uninterrupted run too.
    assert [r["loss"] for r in after] == pytest.approx([r["loss"] for r in expected[4:]], rel=1e-4)


@pytest.mark.parametrize(
    "args, culprit",
    [
        (["--model.no_such_key", "1"], "no_such_key"),
        (["--data.seq_len", "4096"], "data.seq_len 4096"),
        (["--model.preset", "gpt9"], "gpt9"),
        (["--data.dataset_dir", "data/none", "--data.prepare_config", "missing.yaml"], "missing.yaml"),
        (["--model.init_from", "no/such/model"], "model.init_from 'no/such/model' is not a directory"),
        (["--model.attn_implementation", "flash"], "model.attn_implementation 'flash' is unknown"),
        (["--model.objective", "mlm"], "model.objective mlm needs a mask token"),
    ],
)
def test_bad_configuration_fails_with_one_line(workdir, args, culprit, capsys):
    # In this process: each stops before any work, so a subprocess would only add its start-up time.
    code, errors = in_process(workdir, "fit", "--config", "tiny.yaml", *args, capsys=capsys)
    assert code != 0 and len(errors) == 1 and culprit in errors[0], errors


def test_empty_corpus_fails_cleanly_and_writes_nothing(workdir, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    for name in ("blank.py", "also_blank.py"):  # two inputs: one alone is refused before reading (test_pipeline)
        (empty / name).write_text("\n")
    prep = yaml.safe_load((workdir / "prep.yaml").read_text())
    prep["sources"] = [str(empty)]
    (tmp_path / "prep.yaml").write_text(yaml.safe_dump(prep))
    data = ["--data.dataset_dir", str(tmp_path / "out"), "--data.prepare_config", str(tmp_path / "prep.yaml")]
    code, errors = in_process(workdir, "fit", "--config", str(workdir / "tiny.yaml"), *data, capsys=capsys)
    assert code == 2 and len(errors) == 1 and errors[0].startswith("error: no documents left"), errors
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out*"))


def test_validate_and_test_subcommands_evaluate_the_last_checkpoint(workdir, capsys):
    if not (workdir / "runs/tiny/checkpoints/last.ckpt").is_file():
        assert run("fit", "--config", "tiny.yaml", cwd=workdir).returncode == 0
    for command, metric in (("validate", "val/bpb"), ("test", "test/bpb")):  # in this process: evaluation only
        result = cli(workdir, command, "--config", "tiny.yaml", "--ckpt_path", "last", capsys=capsys)
        assert result.returncode == 0, result.stderr[-3000:]
        assert metric in result.stdout


def test_accumulation_and_clipping_flags_count_micro_batches_in_the_resume_state(workdir):
    import torch

    result = run(
        "fit",
        "--config",
        "tiny.yaml",
        "--trainer.max_steps",
        "4",
        "--trainer.accumulate_grad_batches",
        "2",
        "--trainer.gradient_clip_val",
        "0.5",
        "--trainer.logger.init_args.name",
        "accumulate",
        "--checkpoint.every_n_train_steps",
        "2",
        "--sample.max_new_tokens",
        "1",
        cwd=workdir,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    checkpoint = torch.load(workdir / "runs/accumulate/checkpoints/last.ckpt", map_location="cpu", weights_only=False)
    assert checkpoint["global_step"] == 4
    loader_state = checkpoint["loops"]["fit_loop"]["state_dict"]["combined_loader"][0]
    assert loader_state["consumed"] == 4 * 2 * 8  # steps x micro-batches per step x batch size


def test_gpt2_small_config_builds_the_124m_shape_and_takes_a_step(workdir):
    """The GPU config, shrunk only in batch and length so one CPU step is quick."""
    result = run(
        "fit",
        "--config",
        str(REPO / "configs/gpt2-small.yaml"),
        "--data.dataset_dir",
        "data/small",
        "--data.prepare_config",
        "prep.yaml",
        "--data.seq_len",
        "32",
        "--data.batch_size",
        "1",
        "--data.num_workers",
        "0",
        "--trainer.precision",
        "32-true",
        "--trainer.accelerator",
        "cpu",
        "--trainer.max_steps",
        "1",
        "--trainer.accumulate_grad_batches",
        "1",
        "--trainer.logger.init_args.name",
        "small",
        "--sample.max_new_tokens",
        "1",
        "--checkpoint.save_top_k",
        "0",
        "--checkpoint.save_last",
        "false",
        cwd=workdir,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    hparams = yaml.safe_load((workdir / "runs/small/hparams.yaml").read_text())
    assert hparams["preset"] == "gpt2-small"
    # 12 blocks x 7.09M + 512 x 768 token and 1024 x 768 position embeddings (tied head) = 86.2M.
    assert "86.2 M" in result.stdout
