"""Peak memory of data preparation versus corpus size: it must be bounded by configuration, not by the corpus.

    python benchmarks/prepare_memory.py --sizes-mb 100 400 --workdir /tmp/prep-memory

For each size, writes a synthetic corpus of unique documents (standard-library sources with every identifier
deterministically re-spelled, so neither exact nor near dedup collapses it) as gzip-compressed JSONL shards,
runs ``python -m data_prep`` on it in a child process and prints the peak RSS of its whole process tree (the
workers included, sampled from /proc) next to the corpus size and the number of documents the dedup index holds. Peak RSS that
stays flat as the corpus grows means memory is bounded by configuration; the slope that remains is the index.
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WORD = re.compile(r"[A-Za-z_]{3,}")


def stdlib_texts() -> list[str]:
    root = Path(sysconfig.get_paths()["stdlib"])
    return [p.read_text(errors="replace") for p in sorted(root.glob("*.py"))]


def variant(text: str, copy: int) -> str:
    """The same code with identifiers re-spelled per copy: unique text, realistic token statistics."""
    return WORD.sub(lambda m: f"{m.group(0)}{copy % 97}x{copy // 97}", text)


def write_corpus(directory: Path, size_mb: int) -> tuple[int, int]:
    directory.mkdir(parents=True, exist_ok=True)
    texts = stdlib_texts()
    written, documents, shard, copy = 0, 0, 0, 0
    target = size_mb * 1_000_000
    while written < target:
        with gzip.open(directory / f"part-{shard:04d}.jsonl.gz", "wt", encoding="utf-8", compresslevel=1) as handle:
            for text in texts:
                document = variant(text, copy)
                handle.write(json.dumps({"text": document}) + "\n")
                written += len(document.encode())
                documents += 1
                if written >= target:
                    break
        shard += 1
        copy += 1
    return written, documents


def tree_rss_mb(pid: int) -> float:
    """Resident memory of a process and all its descendants (the worker processes), from /proc."""
    total_kb, stack = 0, [pid]
    while stack:
        current = stack.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
            total_kb += int(re.search(r"VmRSS:\s+(\d+)", status).group(1))
            for task in Path(f"/proc/{current}/task").iterdir():
                stack += [int(child) for child in (task / "children").read_text().split()]
        except (OSError, AttributeError):
            continue
    return total_kb / 1024


def run_prepare(corpus: Path, output: Path) -> tuple[float, float, dict]:
    """Runs data_prep and samples the whole process tree's RSS every 50 ms; returns (seconds, peak MB, report)."""
    command = [
        sys.executable,
        "-m",
        "data_prep",
        "--config",
        "configs/data/stdlib.yaml",
        "--sources",
        json.dumps([str(corpus / "*.jsonl.gz")]),
        "--output_dir",
        str(output),
        "--tokenizer.sample_bytes",
        "50000000",
    ]
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peak = 0.0
    while process.poll() is None:
        peak = max(peak, tree_rss_mb(process.pid))
        time.sleep(0.05)
    if process.returncode != 0:
        raise SystemExit(f"data_prep failed with exit code {process.returncode}")
    report = json.loads((output / "report.json").read_text())
    return time.perf_counter() - started, peak, report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes-mb", type=int, nargs="+", default=[100, 400])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/prep-memory"))
    args = parser.parse_args()
    print(f"{'corpus MB':>10} {'documents':>10} {'peak RSS MB':>12} {'kept docs':>10} {'seconds':>8} {'MB/s':>6}")
    for size in args.sizes_mb:
        corpus = args.workdir / f"corpus-{size}"
        written, documents = write_corpus(corpus, size)
        seconds, peak_mb, report = run_prepare(corpus, args.workdir / f"out-{size}")
        kept = report["documents"]["kept"]
        print(
            f"{written / 1e6:>10.0f} {documents:>10,} {peak_mb:>12.0f} {kept:>10,} {seconds:>8.0f} "
            f"{written / 1e6 / seconds:>6.1f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
