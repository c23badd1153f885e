"""The cost of checking shards before training (``data.verify``): ``size`` against ``hash``, side by side.

    python benchmarks/verify_cost.py [--large-gb 2] [--workdir /tmp/verify-cost]

Two datasets: the quickstart's (the standard library's sources prepared with ``configs/data/stdlib.yaml``, ~18 MB
of shards) and a synthetic one of ``--large-gb`` GB of uint16 shards (100 M tokens each, with their indexes and a
manifest whose SHA-256 are computed as data_prep computes them). For each it times, in this process, the three
things a run's ``setup`` can do: the size check alone (``verify: size``, every run), the hash check of a dataset
not hashed before (``verify: hash``, the first run), and the same once ``verified.json`` records it (every later
run). Each is the best of ``--repeats``; the page cache is dropped first when this process may (root), so the first
hash reads from disk, and the script says which it measured. Last, the per-batch id check ``verify: size`` does
instead of hashing, on the quickstart's and gpt2-small's batch shapes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from data_prep.tokens.shards import INDEX_DTYPE, MANIFEST_FILE, read_manifest  # noqa: E402
from data_prep.tokens.verify import VERIFIED_FILE, check_sizes, verify  # noqa: E402

TOKENS_PER_SHARD = 100_000_000


def stdlib_dataset(workdir: Path) -> Path:
    """The quickstart's dataset, prepared here (about 20 s on 2 cores) unless it is already there."""
    import yaml

    from data_prep.config import DataPrepConfig
    from data_prep.pipeline import prepare

    output = workdir / "stdlib"
    values = yaml.safe_load((REPO / "configs/data/stdlib.yaml").read_text())
    values["output_dir"] = str(output)
    prepare(DataPrepConfig.from_dict(values), show_progress=False)
    return output


def synthetic_dataset(workdir: Path, gigabytes: float) -> Path:
    """``gigabytes`` of random uint16 shards with a manifest, as data_prep lays them out."""
    output = workdir / f"synthetic-{gigabytes:g}gb"
    if (output / MANIFEST_FILE).is_file():
        return output
    output.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    total = int(gigabytes * 1e9) // 2
    files, digests, written = [], {}, 0
    while written < total:
        count = min(TOKENS_PER_SHARD, total - written)
        name = f"train_{len(files):05d}.bin"
        tokens = rng.integers(0, 32000, size=count, dtype=np.uint16)
        tokens.tofile(output / name)
        np.array([0, count], dtype=INDEX_DTYPE).tofile(output / name.replace(".bin", ".idx"))
        digests[name] = hashlib.sha256(tokens.tobytes()).hexdigest()
        files.append(name)
        written += count
    tokenizer = output / "tokenizer.json"
    tokenizer.write_text("{}")
    manifest = {
        "format_version": 1,
        "dtype": "uint16",
        "vocab_size": 32000,
        "fingerprint": "synthetic",
        "tokenizer": {"file": "tokenizer.json", "sha256": hashlib.sha256(b"{}").hexdigest()},
        "splits": {
            "train": {"files": files, "tokens": written, "sha256": digests, "documents": len(files), "bytes": 0}
        },
    }
    (output / MANIFEST_FILE).write_text(json.dumps(manifest))
    return output


def drop_page_cache() -> bool:
    """Whether the kernel's page cache could be dropped (root only), so a first read comes from the disk."""
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def best(function, repeats: int, before=None) -> float:
    times = []
    for _ in range(repeats):
        if before is not None:
            before()
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return min(times)


def measure(directory: Path, repeats: int) -> dict:
    manifest = read_manifest(directory)
    shards = sum((directory / name).stat().st_size for info in manifest["splits"].values() for name in info["files"])
    record = directory / VERIFIED_FILE

    def forget() -> None:
        record.unlink(missing_ok=True)

    cold = drop_page_cache()
    forget()
    started = time.perf_counter()
    verify(directory, manifest, hashes=True)
    first_hash = time.perf_counter() - started
    warm_hash = best(lambda: verify(directory, manifest, hashes=True), repeats, before=forget)
    size = best(lambda: check_sizes(directory, manifest), repeats)
    recorded = best(lambda: verify(directory, manifest, hashes=True), repeats)  # verified.json is there now
    return {"shard_mb": shards / 1e6, "cold": cold, "first_hash": first_hash, "warm_hash": warm_hash,
            "size": size, "recorded": recorded}  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--large-gb", type=float, default=2.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/verify-cost"))
    parser.add_argument("--keep", action="store_true", help="keep the datasets for another run")
    options = parser.parse_args(argv)
    options.workdir.mkdir(parents=True, exist_ok=True)
    print(
        f"{time.strftime('%Y-%m-%d')}, {platform.node()}: {os.cpu_count()} CPU cores, Python {platform.python_version()}"
    )
    rows = []
    for label, build in (("stdlib (quickstart)", stdlib_dataset), (f"synthetic {options.large_gb:g} GB", None)):
        directory = build(options.workdir) if build else synthetic_dataset(options.workdir, options.large_gb)
        result = measure(directory, options.repeats)
        rows.append((label, result))
        print(
            f"{label}: {result['shard_mb']:,.1f} MB of shards | size {result['size'] * 1e3:.2f} ms | "
            f"hash, first run {result['first_hash']:.3f} s ({'page cache dropped' if result['cold'] else 'page cache warm'}, "
            f"{result['shard_mb'] / result['first_hash']:,.0f} MB/s) | hash, cached file {result['warm_hash']:.3f} s "
            f"({result['shard_mb'] / result['warm_hash']:,.0f} MB/s) | hash recorded, later runs {result['recorded'] * 1e3:.2f} ms | "
            f"first hash / size = {result['first_hash'] / result['size']:,.0f}x"
        )
    # verify: size (and off) check each batch's largest id in the main process instead of hashing once.
    import torch

    for rows, length in ((32, 256), (16, 1024)):
        batch = torch.randint(0, 32000, (rows, length))
        seconds = best(lambda: int(batch.max()), 200)
        print(f"id check of one {rows} x {length} batch (verify: size): {seconds * 1e6:.1f} us")
    if not options.keep:
        shutil.rmtree(options.workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
