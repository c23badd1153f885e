"""``--engine ray``: the documents, dedup (a shuffle), tokens and shards stages as Ray tasks on a local 2-CPU Ray write,
with 1, 2 and 4 workers (and with every input read as byte-range parts), the same dataset as the local engine,
byte for byte (shards, tokenizer, manifest, duplicates.jsonl) and with the same counts, on the stdlib corpus
and on the accuracy benchmark's planted near-duplicates; an unreachable
``--ray.address`` fails in one line and leaves nothing behind."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from data_prep.pipeline import prepare
from tests.conftest import small_prep_config
from tests.data_prep.corpus_files import corpus_with_bad_input

ray = pytest.importorskip("ray", reason="the Ray engine needs the ray extra: pip install -e '.[ray]'")
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray for the module (the engine joins a running one and leaves it running)."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def dataset_files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file() and p.name != "report.json"}


@pytest.mark.parametrize("corpus", ["stdlib", "planted"])
def test_ray_with_one_two_and_four_workers_writes_the_local_engines_dataset(corpus, local_ray, request, tmp_path):
    sources = request.getfixturevalue("stdlib_corpus" if corpus == "stdlib" else "planted_corpus")
    # Planted: small shards, so the shards stage is many tasks (each shard one), split across inputs.
    tokens_per_shard = 5_000 if corpus == "planted" else None
    local = small_prep_config(sources, tmp_path / "local")
    if tokens_per_shard:
        local.shards.tokens_per_shard = tokens_per_shard
    expected = prepare(local, show_progress=False)
    if corpus == "planted":
        assert len(expected["splits"]["train"]["files"]) > 5
    if corpus == "planted":
        assert expected["stats"]["duplicates"]["near"] > 50  # near dedup across inputs is exercised
    reference = dataset_files(tmp_path / "local")
    assert {"manifest.json", "duplicates.jsonl", "tokenizer.json", "train_00000.bin"} <= set(reference)
    runs = [(1, None), (2, None), (4, None)]  # 4 tasks in flight on a 2-CPU Ray: the same partitions, queued
    if corpus == "planted":  # and every input read as parts of about 1/5 of the smallest, each a task
        runs.append((2, min(p.stat().st_size for p in sources.glob("*.jsonl")) / 5 / 1e6))
    for workers, part_mb in runs:
        name = f"ray{workers}" + ("-parts" if part_mb else "")
        config = small_prep_config(sources, tmp_path / name)
        config.engine, config.ray.num_workers = "ray", workers
        if tokens_per_shard:
            config.shards.tokens_per_shard = tokens_per_shard
        if part_mb:
            config.read.part_mb = part_mb
        manifest = prepare(config, show_progress=False)
        assert dataset_files(tmp_path / name) == reference, name
        assert manifest["stats"] == expected["stats"]
        report = json.loads((tmp_path / name / "report.json").read_text())
        assert report["documents"] == json.loads((tmp_path / "local" / "report.json").read_text())["documents"]


def test_ray_counts_and_names_skipped_bad_records_and_binary_files_as_the_local_engine_does(local_ray, tmp_path):
    corpus = corpus_with_bad_input(tmp_path / "corpus", binary_files=3)
    reports = {}
    for engine in ("local", "ray"):
        config = small_prep_config(corpus, tmp_path / engine)
        config.engine, config.read.on_error = engine, "skip"
        prepare(config, show_progress=False)
        report = json.loads((tmp_path / engine / "report.json").read_text())
        reports[engine] = {key: report[key] for key in ("bad_records", "binary_files", "skipped", "documents")}
    assert reports["ray"] == reports["local"]
    assert reports["local"]["bad_records"][str(corpus / "bad.jsonl")]["count"] == 3
    assert reports["local"]["binary_files"]["count"] == 3


def test_an_unreachable_ray_address_fails_in_one_line_and_writes_nothing(tmp_path, stdlib_corpus):
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "data_prep", "--sources", json.dumps([str(stdlib_corpus)]), "--output_dir", str(out),
         "--engine", "ray", "--ray.address", "127.0.0.1:1"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: --ray.address 127.0.0.1:1: nothing answers there")
    assert "Traceback" not in result.stderr and not out.exists()


def test_a_task_whose_worker_is_killed_is_retried_and_the_dataset_is_unchanged(local_ray, stdlib_corpus, tmp_path):
    """SIGKILL the first Ray worker seen running a documents task (Ray names the process ``ray::_run_task``):
    Ray retries the task on another worker, the dead one's partial files are never renamed into place, and the
    dataset equals the local engine's."""
    import os
    import signal
    import threading
    import time

    import psutil

    expected = prepare(small_prep_config(stdlib_corpus, tmp_path / "local"), show_progress=False)
    config = small_prep_config(stdlib_corpus, tmp_path / "ray")
    config.engine, config.ray.num_workers = "ray", 2
    result: dict = {}
    thread = threading.Thread(target=lambda: result.update(manifest=prepare(config, show_progress=False)))
    killed = None
    thread.start()
    while thread.is_alive() and killed is None:
        for process in psutil.process_iter(["pid", "cmdline"]):
            if any("ray::_run_task" in part for part in process.info["cmdline"] or []):
                os.kill(process.info["pid"], signal.SIGKILL)
                killed = process.info["pid"]
                break
        time.sleep(0.002)
    thread.join(timeout=300)
    assert killed is not None, "no documents task was seen running, so nothing was killed"
    assert not psutil.pid_exists(killed) or psutil.Process(killed).status() == psutil.STATUS_ZOMBIE
    assert result["manifest"]["stats"] == expected["stats"]
    assert dataset_files(tmp_path / "ray") == dataset_files(tmp_path / "local")


def test_a_driver_killed_mid_run_restarts_reusing_finished_inputs_and_ends_byte_identical(stdlib_corpus, tmp_path):
    """``python -m data_prep --engine ray`` (its own local Ray) SIGKILLed with its whole process group while the
    documents stage is under way, then run again: the inputs finished before the kill are reused untouched and
    the dataset equals the local engine's."""
    import os
    import signal
    import time

    prepare(small_prep_config(stdlib_corpus, tmp_path / "local"), show_progress=False)
    out = tmp_path / "ray"
    command = [sys.executable, "-m", "data_prep", "--sources", json.dumps([str(stdlib_corpus)]), "--output_dir",
               str(out), "--engine", "ray", "--ray.num_workers", "1", "--tokenizer.vocab_size", "512",
               "--split.val_fraction", "0.1", "--split.seed", "0"]  # fmt: skip
    environment = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(command, cwd=REPO, env=environment, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    documents = out / "work" / "documents"
    deadline = time.monotonic() + 240
    while process.poll() is None and time.monotonic() < deadline:
        if documents.is_dir() and len(list(documents.glob("*.jsonl"))) >= 10:
            break
        time.sleep(0.005)
    assert process.poll() is None, "the run ended before it could be killed"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    finished = {path: path.stat().st_mtime_ns for path in documents.glob("*.jsonl")}
    assert 10 <= len(finished) and not (out / "manifest.json").exists()
    result = subprocess.run(command, cwd=REPO, env=environment, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert all(path.stat().st_mtime_ns == mtime for path, mtime in finished.items())  # reused, not redone
    assert dataset_files(out) == dataset_files(tmp_path / "local")
