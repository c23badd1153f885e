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


def run(config_path: Path, engine: str, workers: int, root: Path) -> dict:
    import yaml

    values = yaml.safe_load(config_path.read_text())
    values["output_dir"] = str(root / f"{engine}{workers}")
    config = DataPrepConfig.from_dict(values)
    config.engine = engine
    if engine == "ray":
        config.ray.num_workers = workers
    started = time.perf_counter()
    prepare(config, show_progress=False)
    total = time.perf_counter() - started
    report = json.loads((Path(config.output_dir) / "report.json").read_text())
    return {"engine": engine, "workers": workers, "total_s": total, "report": report, "dir": Path(config.output_dir)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=REPO / "configs/data/stdlib.yaml")
    options = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="engines-"))
    try:
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
