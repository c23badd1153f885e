"""Lightning's loggers by config (``configs/loggers.yaml``): TensorBoard, CSV, Weights & Biases (offline) and
MLflow (file store) receive the same names and the same values from one real CLI run, samples included."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from tests.e2e.helpers import REPO, make_project, run, scalars

pytest.importorskip("wandb", reason="pip install -e '.[loggers]' (in dev) for the W&B logger")
pytest.importorskip("mlflow", reason="pip install -e '.[loggers]' (in dev) for the MLflow logger")

NAMES = ["train/loss", "train/ppl", "train/bpb", "train/lr", "train/grad_norm", "train/tokens_per_s", "val/loss",
         "val/ppl", "val/bpb"]  # fmt: skip


@pytest.fixture(scope="module")
def logged(tmp_path_factory, stdlib_corpus) -> Path:
    project = make_project(tmp_path_factory.mktemp("loggers"), stdlib_corpus)
    environment = pytest.MonkeyPatch()
    environment.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # what configs/loggers.yaml says MLflow's file store needs
    environment.setenv("WANDB_SILENT", "true")
    environment.setenv("WANDB_DIR", str(project))  # nothing outside the project directory
    args = ["--config", "tiny.yaml", "--config", str(REPO / "configs/loggers.yaml"), "--trainer.max_steps", "6"]
    args += ["--trainer.val_check_interval", "3", "--sample.every_n_steps", "3", "--trainer.log_every_n_steps", "1"]
    try:
        result = run("fit", *args, cwd=project)
    finally:
        environment.undo()
    assert result.returncode == 0, result.stderr[-3000:]
    return project


def test_tensorboard_and_csv_get_the_same_names_and_values(logged):
    board = scalars(logged / "runs/logged")
    assert set(NAMES) <= set(board), set(NAMES) - set(board)
    with open(logged / "runs/logged/csv/metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    for name in NAMES:
        from_csv = [(int(row["step"]), float(row[name])) for row in rows if row.get(name)]
        assert from_csv == [(step, pytest.approx(value, rel=1e-6)) for step, value in board[name]], name
    assert len(board["train/loss"]) == 6 and len(board["val/loss"]) == 2


def test_mlflow_gets_the_same_names_values_and_the_samples(logged, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    board = scalars(logged / "runs/logged")
    client = MlflowClient(tracking_uri=f"file:{logged / 'runs/mlruns'}")
    (experiment,) = [e for e in client.search_experiments() if e.name == "lit_pretrain"]
    (mlflow_run,) = client.search_runs([experiment.experiment_id])
    for name in NAMES:
        history = [(m.step, m.value) for m in client.get_metric_history(mlflow_run.info.run_id, name)]
        assert history == [(step, pytest.approx(value, rel=1e-6)) for step, value in board[name]], name
    samples = Path(mlflow_run.info.artifact_uri.removeprefix("file://")) / "samples/clm"
    assert sorted(p.name for p in samples.iterdir()) == ["step_000003.txt", "step_000006.txt"]
    assert (samples / "step_000006.txt").read_text().startswith("def fibonacci(n):")


def test_wandb_offline_run_gets_the_names_and_a_sample_table(logged):
    (offline,) = (logged / "runs/logged/wandb").glob("offline-run-*")
    records = next(offline.glob("run-*.wandb")).read_bytes()  # W&B's record log: keys are stored as plain text
    for name in NAMES:
        assert name.encode() in records, name
    tables = list((offline / "files/media/table/samples").glob("clm_*.table.json"))
    assert len(tables) == 2 and "def fibonacci(n):" in tables[-1].read_text()


def test_tensorboard_gets_the_samples_as_text(logged):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(logged / "runs/logged"))
    accumulator.Reload()
    events = accumulator.Tensors("samples/clm/text_summary")
    assert [e.step for e in events] == [3, 6]
    assert "def fibonacci(n):" in events[-1].tensor_proto.string_val[0].decode()
