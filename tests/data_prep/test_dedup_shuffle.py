"""Deduplication as a shuffle (map tasks keyed by digest and LSH band, reduce tasks per partition) decides
exactly what the single-process pass decides: the same keep masks, the same ``duplicates.jsonl`` bytes and the
same counts, for any number of partitions and map groups, with exact dedup on or off; and a driver that stops
mid-shuffle resumes from the finished tasks' files. The tasks run in this process here (the engine's
``run_tasks`` is the only thing Ray changes; tests/data_prep/test_ray_engine.py runs them on Ray)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest

from data_prep import engines
from data_prep.dedup import shuffle
from data_prep.dedup.lsh import band_keys
from data_prep.dedup.stage import run_dedup_stage
from data_prep.engines import LocalEngine
from data_prep.pipeline import _stage_fingerprints, prepare
from data_prep.read.sources import list_inputs
from data_prep.report import Report
from tests.conftest import small_prep_config


class ShuffleHere(LocalEngine):
    """The local engine (tasks in this process, in order) taking the shuffle path the Ray engine takes."""

    dedup_as_shuffle = True


class StopAfter(ShuffleHere):
    """Stops the driver (raises) after ``tasks`` tasks have finished: a run killed mid-shuffle."""

    def __init__(self, tasks: int) -> None:
        super().__init__(1)
        self.left = tasks

    def run_tasks(self, function, arguments, directory, advance):
        results = []
        for args in arguments:
            if self.left == 0:
                raise KeyboardInterrupt("stopped mid-shuffle")
            results.append(function(*args))
            self.left -= 1
        return results


@pytest.fixture(scope="module")
def documents_stage(planted_corpus, tmp_path_factory):
    """The planted corpus through the pipeline once (its documents work files are what dedup reads)."""
    output = tmp_path_factory.mktemp("shuffle") / "dataset"
    config = small_prep_config(planted_corpus, output)
    manifest = prepare(config, show_progress=False)
    assert manifest["stats"]["duplicates"]["near"] > 50 and manifest["stats"]["duplicates"]["exact"] > 10
    return config


def dedup(config, engine, directory: Path) -> dict[str, bytes]:
    """The dedup stage alone over the prepared documents; every file it leaves, by name."""
    inputs = list_inputs(config.sources, config.read)
    per_input = _stage_fingerprints(config, inputs)["documents"]
    documents_dir = Path(config.output_dir) / "work" / "documents"
    run_dedup_stage(config, inputs, documents_dir, per_input, directory, Report(), False, engine)
    return {p.relative_to(directory).as_posix(): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(
    "change",
    [{}, {"exact": False}, {"threshold": 0.7}, {"threshold": 0.9, "bands": 8, "rows": 4}],
    ids=["default", "exact-off", "threshold-0.7", "bands-8x4"],
)
def test_the_shuffle_decides_what_one_pass_decides(change, documents_stage, tmp_path, monkeypatch):
    config = copy.deepcopy(documents_stage)
    for key, value in change.items():
        setattr(config.dedup if key == "exact" else config.dedup.near, key, value)
    expected = dedup(config, LocalEngine(1), tmp_path / "one-pass")
    removed = [json.loads(line) for line in expected["duplicates.jsonl"].splitlines()]
    assert {r["kind"] for r in removed} == ({"near"} if change.get("exact") is False else {"exact", "near"})
    assert len(removed) > 50
    monkeypatch.setattr(engines, "RAY_INPUTS_PER_TASK", 2)  # 5 map groups over the 9 inputs
    for partition_records in (10**9, 500, 37):  # 1 partition, a few, many
        config.ray.partition_records = partition_records
        assert dedup(config, ShuffleHere(1), tmp_path / f"shuffle-{partition_records}") == expected


def test_a_driver_stopped_mid_shuffle_resumes_from_finished_tasks(documents_stage, tmp_path, monkeypatch):
    config = copy.deepcopy(documents_stage)
    config.ray.partition_records = 300
    expected = dedup(config, LocalEngine(1), tmp_path / "one-pass")
    monkeypatch.setattr(engines, "RAY_INPUTS_PER_TASK", 2)
    directory = tmp_path / "shuffle"
    for stop_after in (3, 6):  # in the map step (5 groups), then in the reduce step
        with pytest.raises(KeyboardInterrupt):
            dedup(config, StopAfter(stop_after), directory)
        assert not (directory / "done.json").exists() and not (directory / "duplicates.jsonl").exists()
    finished = sorted(p.name for p in directory.rglob("*.done.json")) + sorted(p.name for p in directory.rglob("*.npz"))
    assert len(finished) == 6  # 5 map groups and the first reduce partition
    (shuffle_dir,) = (directory / "shuffle").iterdir()
    partitions = int(shuffle_dir.name.removeprefix("p"))
    assert partitions > 3
    computed = {"map": 0, "reduce": 0}
    for name, kind in (("_map_inputs", "map"), ("_reduce_exact", "reduce")):
        real = getattr(shuffle, name)
        monkeypatch.setattr(
            shuffle, name, lambda *a, real=real, kind=kind: computed.update({kind: computed[kind] + 1}) or real(*a)
        )
    assert dedup(config, ShuffleHere(1), directory) == expected  # and the shuffle's work files are gone
    assert computed == {"map": 0, "reduce": partitions - 1}


def test_band_keys_are_equal_exactly_when_a_bands_values_are():
    rng = np.random.default_rng(0)
    sigs = rng.integers(0, 1 << 32, size=(200, 32), dtype=np.uint64).astype(np.uint32)
    sigs[1, :8] = sigs[0, :8]  # band 0 shared
    sigs[2, 8:16] = sigs[0, 8:16]  # band 1 shared
    sigs[3, :8] = sigs[0, 8:16]  # band 0 of one = band 1 of the other: different buckets
    keys = band_keys(sigs, bands=4, rows=8)
    assert keys[1, 0] == keys[0, 0] and keys[2, 1] == keys[0, 1]
    assert keys[3, 0] != keys[0, 1]
    flat = keys.ravel()
    assert np.unique(flat).size == flat.size - 2  # no other equal keys among 800


def test_a_bad_partition_size_is_refused_in_one_line():
    from data_prep.config import DataPrepConfig
    from data_prep.errors import DataPrepError

    with pytest.raises(DataPrepError, match=r"^ray.partition_records must be at least 1, got 0$"):
        DataPrepConfig.from_dict({"ray": {"partition_records": 0}})
