"""data_prep on the local engine and on Ray with 1 and 2 workers, side by side in one run, same config and inputs.

    python benchmarks/data_prep_engines.py [--config configs/data/stdlib.yaml] [--repeats 1]

Each run prepares the dataset from scratch into a temporary directory (nothing reused) and the outputs are
checked byte for byte against the local engine's. Reported per engine: wall time of the documents stage (read,
clean, filter, MinHash), of the dedup stage (on Ray: the shuffle's map, reduce and audit tasks), of the tokens
stage (all three run on the engine) and of the whole run, documents/s and MB/s of the
documents stage (documents and UTF-8 bytes read), the ratio to the local engine (the Ray overhead), and for Ray
the workers' peak resident memory (each task reports its worker's ``ru_maxrss``). The local engine's workers are
``num_workers`` processes (0: one per core); Ray starts a local instance with this machine's CPUs, and
``--ray.num_workers`` caps the parallel tasks.

``--scales 1,2,4`` adds a memory table: Ray with 2 workers on the corpus copied 1, 2 and 4 times (each copy's
files start with their own line, so exact dedup keeps them and near dedup does the work), with
``--partition-records`` records per shuffle partition, each run in a fresh driver process: documents, shuffle
partitions, the workers' and the driver's peak resident memory. Bounded memory means the workers' column
stays flat while the corpus grows.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from data_prep.config import DataPrepConfig  # noqa: E402
from data_prep.pipeline import prepare  # noqa: E402


def outputs(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file() and p.name != "report.json"}


def run(config_path: Path, engine: str, workers: int, root: Path, sources=None, partition_records=None) -> dict:
    import yaml

    values = yaml.safe_load(config_path.read_text())
    values["output_dir"] = str(root / f"{engine}{workers}" if sources is None else root / "scaled")
    if sources is not None:
        values["sources"] = sources
    config = DataPrepConfig.from_dict(values)
    config.engine = engine
    if engine == "ray":
        config.ray.num_workers = workers
    if partition_records is not None:
        config.ray.partition_records = partition_records
    started = time.perf_counter()
    prepare(config, show_progress=False)
    total = time.perf_counter() - started
    report = json.loads((Path(config.output_dir) / "report.json").read_text())
    return {"engine": engine, "workers": workers, "total_s": total, "report": report, "dir": Path(config.output_dir)}


def copied_corpus(config_path: Path, copies: int, directory: Path) -> list[str]:
    """The config's .py files ``copies`` times over, each copy's files headed by a line naming the copy."""
    import yaml

    from data_prep.read.sources import list_inputs

    values = yaml.safe_load(config_path.read_text())
    config = DataPrepConfig.from_dict(values)
    files = [Path(item.path) for item in list_inputs(config.sources, config.read)]
    for copy in range(copies):
        for index, path in enumerate(files):
            target = directory / f"copy{copy}" / f"{index:05d}_{path.name}"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(f"# copy {copy}\n".encode() + path.read_bytes())
    return [str(directory)]


def scaled_run(config_path: Path, sources: list[str], root: Path, partition_records: int) -> dict:
    """One Ray run in this (fresh) process: its report and this driver's peak resident memory."""
    import resource

    row = run(config_path, "ray", 2, root, sources=sources, partition_records=partition_records)
    shutil.rmtree(row["dir"], ignore_errors=True)
    return {"report": row["report"], "total_s": row["total_s"],
            "driver_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}  # fmt: skip


def memory_table(config_path: Path, scales: list[int], partition_records: int, root: Path) -> None:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from data_prep.dedup.shuffle import partition_count

    print(f"\nRay, 2 workers, ray.partition_records {partition_records:,}:\n")
    print(
        "| corpus | documents | MB read | shuffle partitions | whole run s | peak worker RSS MB | driver peak RSS MB |"
    )
    print("|---|---|---|---|---|---|---|")
    for scale in scales:
        corpus = root / f"corpus{scale}"
        sources = copied_corpus(config_path, scale, corpus)
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            row = pool.submit(scaled_run, config_path, sources, root, partition_records).result()
        shutil.rmtree(corpus, ignore_errors=True)
        report = row["report"]
        config = DataPrepConfig.from_dict(__import__("yaml").safe_load(config_path.read_text()))
        before_dedup = report["documents"]["kept"] + report["duplicates"]["exact"] + report["duplicates"]["near"]
        partitions = partition_count(before_dedup, config.dedup, partition_records)
        cells = [f"{scale}x", f"{report['documents']['read']:,}", f"{report['bytes']['read'] / 1e6:.0f}", partitions,
                 f"{row['total_s']:.0f}", report["engine"].get("peak_worker_rss_mb", "-"), f"{row['driver_rss_mb']:.0f}"]  # fmt: skip
        print("| " + " | ".join(str(c) for c in cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=REPO / "configs/data/stdlib.yaml")
    parser.add_argument("--scales", default="", help="e.g. 1,2,4: also the memory table at these corpus sizes")
    parser.add_argument("--partition-records", type=int, default=100_000)
    parser.add_argument("--skip-engines", action="store_true", help="only the memory table")
    options = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="engines-"))
    try:
        if options.scales:
            memory_table(options.config, [int(s) for s in options.scales.split(",")], options.partition_records, root)
        if options.skip_engines:
            return
        rows = [run(options.config, "local", 0, root)]
        for workers in (1, 2):
            rows.append(run(options.config, "ray", workers, root))
        reference = outputs(rows[0]["dir"])
        print("| engine | workers | documents stage s | documents/s | MB/s | time / local | dedup stage s | "
              "tokens stage s | whole run s | peak worker RSS MB | output identical |")  # fmt: skip
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        local_seconds = rows[0]["report"]["stages"]["documents"]["seconds"]
        for row in rows:
            report = row["report"]
            seconds = report["stages"]["documents"]["seconds"]
            documents, megabytes = report["documents"]["read"], report["bytes"]["read"] / 1e6
            engine = report.get("engine", {})
            cells = [
                row["engine"], engine.get("workers", row["workers"]), f"{seconds:.1f}", f"{documents / seconds:,.0f}",
                f"{megabytes / seconds:.2f}", f"{seconds / local_seconds:.2f}",
                f"{report['stages']['dedup']['seconds']:.1f}", f"{report['stages']['tokens']['seconds']:.1f}", f"{row['total_s']:.1f}",
                engine.get("peak_worker_rss_mb", "-"), outputs(row["dir"]) == reference,
            ]  # fmt: skip
            print("| " + " | ".join(str(c) for c in cells) + " |")
        print(f"\n{rows[0]['report']['documents']['read']:,} documents, {megabytes:.1f} MB read; {options.config}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
