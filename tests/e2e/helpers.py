"""Helpers of the end-to-end tests: run the real CLI in a subprocess, read its TensorBoard scalars, and record
the batches a run trains on (through ``recorder.BatchRecorder``, loaded by ``--config``)."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent


def environment() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(HERE)]), "PYTHONUNBUFFERED": "1"}


def free_port() -> int:
    """A port nobody listens on now: test files run in parallel (pytest-xdist), so a fixed MASTER_PORT can clash."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run(*args: str, cwd: Path, timeout: int = 600, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lit_pretrain", *args], cwd=cwd, env={**environment(), **(env or {})},
        capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def cli(project: Path, *args: str, capsys) -> subprocess.CompletedProcess:
    """``python -m lit_pretrain *args`` run in this process (``capsys``: pytest's capture of it), as a
    CompletedProcess (exit code, stdout, stderr): for commands that stop before any training, or only evaluate or
    print, where a subprocess would only add its start-up time."""
    from lit_pretrain.cli import main

    capsys.readouterr()  # what was printed before is not this command's
    cwd = Path.cwd()
    os.chdir(project)
    try:
        main(list(args))
        code = 0
    except SystemExit as exit:
        code = exit.code or 0
    finally:
        os.chdir(cwd)
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, out, err)


def in_process(project: Path, *args: str, capsys) -> tuple[int, list[str]]:
    """(exit code, the ``error:`` lines) of :func:`cli`."""
    result = cli(project, *args, capsys=capsys)
    return result.returncode, [line for line in result.stderr.splitlines() if line.startswith("error:")]


def scalars(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(log_dir))
    accumulator.Reload()
    return {tag: [(e.step, e.value) for e in accumulator.Scalars(tag)] for tag in accumulator.Tags()["scalars"]}


def read_records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def callbacks_config(directory: Path, name: str, *callbacks: tuple[str, dict]) -> str:
    """A ``--config`` file adding ``recorder.<class>(**init_args)`` for each (class, init_args) to the Trainer."""
    config = directory / f"{name}-callbacks.yaml"
    listed = [{"class_path": f"recorder.{name_}", "init_args": init_args} for name_, init_args in callbacks]
    config.write_text(yaml.safe_dump({"trainer": {"callbacks": listed}}))
    return str(config)


def recorder_config(
    directory: Path, name: str, kill_at_step: int | None = None, pause_s: float = 0.0, *others: tuple[str, dict]
) -> tuple[str, Path]:
    """A ``--config`` file with a :class:`recorder.BatchRecorder` writing ``<name>.jsonl`` (and ``others``)."""
    record = directory / f"{name}.jsonl"
    init_args = {"path": str(record), "kill_at_step": kill_at_step, "pause_s": pause_s}
    return callbacks_config(directory, name, ("BatchRecorder", init_args), *others), record


_PREPARED: dict[str, Path] = {}  # prep.yaml's text -> its dataset, prepared once per test session


def prepare_data(project: Path) -> Path:
    """The project's ``data/small`` as its ``prep.yaml`` makes it: prepared in this process the first time a
    session meets that exact ``prep.yaml``, copied afterwards (each e2e module would otherwise spend its first
    ``fit`` preparing the same corpus again; ``test_cli`` keeps one that prepares through ``fit``)."""
    text = (project / "prep.yaml").read_text()
    if text not in _PREPARED:
        from data_prep.config import DataPrepConfig
        from data_prep.pipeline import prepare

        cache = Path(tempfile.mkdtemp(prefix="lit-pretrain-tests-")) / "small"
        atexit.register(shutil.rmtree, cache.parent, True)
        prepare(DataPrepConfig.from_dict({**yaml.safe_load(text), "output_dir": str(cache)}), show_progress=False)
        _PREPARED[text] = cache
    target = project / "data" / "small"
    shutil.copytree(_PREPARED[text], target, ignore=shutil.ignore_patterns("work", "verified.json"))
    return target


def make_project(directory: Path, corpus: Path, objective: str = "clm", prepared: bool = True) -> Path:
    """A project directory holding ``prep.yaml`` (the quickstart's data_prep config over ``corpus``, vocab 512)
    and ``tiny.yaml`` (the quickstart's training config shrunk to a tiny model, 40 steps); with ``prepared``, the
    dataset ``data/small`` too (:func:`prepare_data`), else the first ``fit`` prepares it."""
    mlm = objective == "mlm"
    prep = yaml.safe_load((REPO / f"configs/data/{'stdlib-mlm' if mlm else 'stdlib'}.yaml").read_text())
    prep.update(sources=[str(corpus)], output_dir="data/small")
    prep["read"]["exclude"] = []
    prep["tokenizer"]["vocab_size"] = 512
    prep["split"]["val_fraction"] = 0.1
    (directory / "prep.yaml").write_text(yaml.safe_dump(prep))
    config = yaml.safe_load((REPO / f"configs/{'quickstart-mlm' if mlm else 'quickstart'}.yaml").read_text())
    config["trainer"].update(
        max_steps=40, val_check_interval=20, log_every_n_steps=1, max_time=None, enable_progress_bar=False
    )
    config["trainer"]["logger"]["init_args"].update(name="tiny")
    config["model"].update(preset="bert-tiny" if mlm else "gpt2-tiny", warmup_steps=5, optimizer="adamw", lr=3e-3)
    config["data"].update(dataset_dir="data/small", prepare_config="prep.yaml", seq_len=64, batch_size=8)
    config["checkpoint"].update(every_n_train_steps=20)
    if not mlm:
        config["sample"].update(max_new_tokens=16)
    (directory / "tiny.yaml").write_text(yaml.safe_dump(config))
    if prepared:
        prepare_data(directory)
    return directory


def kill_and_resume(project: Path, common: list[str], name: str, kill_at_step: int) -> tuple[list, list, list]:
    """Run ``fit *common`` three times with a :class:`recorder.BatchRecorder`: uninterrupted, killed (SIGKILL-like
    exit 9) as soon as step ``kill_at_step`` is done, then resumed with ``--ckpt_path last`` into the killed run's directory.
    Returns the records (one per training batch) of the uninterrupted, killed and resumed runs."""
    config, reference = recorder_config(project, f"{name}-reference")
    result = run("fit", *common, "--config", config, "--trainer.logger.init_args.name", f"{name}-ref", cwd=project)
    assert result.returncode == 0, result.stderr[-3000:]
    config, killed = recorder_config(project, f"{name}-killed", kill_at_step=kill_at_step)
    result = run("fit", *common, "--config", config, "--trainer.logger.init_args.name", name, cwd=project)
    assert result.returncode == 9, result.stderr[-3000:]
    config, resumed = recorder_config(project, f"{name}-resumed")
    resume = ["--config", config, "--trainer.logger.init_args.name", name, "--ckpt_path", "last"]
    result = run("fit", *common, *resume, cwd=project)
    assert result.returncode == 0, result.stderr[-3000:]
    # The killed run held the run directory's lock and never released it: the resumed run takes it over.
    assert f"took over the lock of run directory 'runs/{name}' from PID " in result.stderr
    return read_records(reference), read_records(killed), read_records(resumed)
