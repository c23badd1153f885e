"""Near-dedup throughput per CPU core (signatures + LSH decisions, end to end), side by side in one run with
a naive per-shingle ``MinHash.update`` loop and with datasketch's bulk API, plus the LSH index's bytes per
document.

    python benchmarks/near_dedup_speed.py [--subset-mb 3] [--workers 0] [--parallel-copies 3] [--index-docs 50000]

Corpus: the standard library's own ``.py`` sources (``sysconfig.get_paths()["stdlib"]``, site-packages
excluded, ~30 MB), one document per file. The slow methods run on a subset (every k-th file, about
``--subset-mb`` MB) and ours runs on the same subset too, so every ratio compares the same documents; ours
also runs on the whole corpus in one process and with worker processes.

Methods, all with word 5-gram shingles, 128 permutations, threshold 0.8, documents decided in file order:
  naive            ``MinHash.update(shingle.encode())`` per shingle (default SHA-1 hash), then a default
                   ``MinHashLSH`` queried and inserted document by document, candidates verified with ``jaccard``
  datasketch-bulk  ``MinHash.bulk`` over each document's shingle bytes with an xxhash ``hashfunc``
                   (``xxh32_intdigest``), then the same LSH loop
  ours             ``data_prep.dedup.minhash.signatures`` then ``NearDuplicateIndex.add_batch`` (batches of 1024)
MB/s counts UTF-8 bytes of text. "per core" = single process; the parallel line (``signatures_parallel`` here: a spawn pool over a
few copies of the corpus, so that starting the spawned workers does not dominate) divides by the workers.

Index memory: tracemalloc's traced bytes after building a ``NearDuplicateIndex`` of N documents (the key
strings included), divided by N, next to the index's own object walk (``memory_bytes()``). Random signatures
stand for a corpus of unique documents (every band key a new bucket: the worst case per document).
"""

from __future__ import annotations

import argparse
import gc
import multiprocessing
import os
import platform
import sys
import sysconfig
import time
import tracemalloc
from collections.abc import Sequence
from pathlib import Path

import datasketch
import numpy as np
import xxhash
from datasketch import MinHash, MinHashLSH

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data_prep.dedup.lsh import NearDuplicateIndex, lsh_params  # noqa: E402
from data_prep.dedup.minhash import NearDedupConfig, signatures  # noqa: E402

BATCH = 1024


def signatures_parallel(texts: Sequence[str], config: NearDedupConfig, workers: int) -> np.ndarray:
    """Same result as ``signatures``, computed by ``workers`` spawned processes (in this process when
    ``workers <= 1``). Texts are cut into contiguous chunks of about equal size, results concatenated in order."""
    if workers <= 1 or len(texts) < 2:
        return signatures(texts, config)
    lengths = np.cumsum([len(t) for t in texts])
    pieces = min(len(texts), 4 * workers)
    cuts = np.searchsorted(lengths, lengths[-1] * np.arange(1, pieces) / pieces, side="left") + 1
    bounds = sorted({0, len(texts), *(int(c) for c in cuts if 0 < c < len(texts))})
    chunks = [list(texts[lo:hi]) for lo, hi in zip(bounds[:-1], bounds[1:])]
    with multiprocessing.get_context("spawn").Pool(min(workers, len(chunks))) as pool:
        parts = pool.starmap(signatures, [(chunk, config) for chunk in chunks])
    return np.concatenate(parts)


def stdlib_corpus() -> list[str]:
    root = Path(sysconfig.get_paths()["stdlib"])
    files = []
    for directory, subdirectories, names in os.walk(root):
        subdirectories[:] = sorted(d for d in subdirectories if d != "site-packages")
        files += [Path(directory) / name for name in names if name.endswith(".py")]
    return [path.read_bytes().decode("utf-8", errors="replace") for path in sorted(files)]


def megabytes(texts: list[str]) -> float:
    return sum(len(t.encode("utf-8", errors="surrogatepass")) for t in texts) / 1e6


def word_shingles(text: str, n: int) -> list[str]:
    """The shingles a plain implementation iterates (the same definition as near_dedup.shingle_strings)."""
    words = text.lower().split()
    if len(words) < n:
        return [" ".join(words)] if words else []
    return [" ".join(words[i : i + n]) for i in range(len(words) - n + 1)]


def plain_lsh_decisions(minhashes, config: NearDedupConfig) -> int:
    """A textbook MinHashLSH loop: query, verify candidates with jaccard, insert the survivors."""
    lsh = MinHashLSH(threshold=config.threshold, num_perm=config.num_perm)
    kept, removed = {}, 0
    for key, minhash in enumerate(minhashes):
        if any(kept[c].jaccard(minhash) >= config.threshold for c in lsh.query(minhash)):
            removed += 1
        else:
            lsh.insert(key, minhash)
            kept[key] = minhash
    return removed


def run_naive(texts: list[str], config: NearDedupConfig) -> int:
    def minhashes():
        for text in texts:
            minhash = MinHash(num_perm=config.num_perm, seed=config.seed)
            for shingle in word_shingles(text, config.ngram):
                minhash.update(shingle.encode("utf-8"))
            yield minhash

    return plain_lsh_decisions(minhashes(), config)


def run_datasketch_bulk(texts: list[str], config: NearDedupConfig) -> int:
    shingle_bytes = ([s.encode("utf-8") for s in word_shingles(t, config.ngram)] for t in texts)
    minhashes = MinHash.generator(
        shingle_bytes, num_perm=config.num_perm, seed=config.seed, hashfunc=xxhash.xxh32_intdigest
    )
    return plain_lsh_decisions(minhashes, config)


def decide(keys: list[str], sigs: np.ndarray, config: NearDedupConfig) -> tuple[int, NearDuplicateIndex]:
    index = NearDuplicateIndex(config)
    removed = 0
    for lo in range(0, len(keys), BATCH):
        removed += sum(v is not None for v in index.add_batch(keys[lo : lo + BATCH], sigs[lo : lo + BATCH]))
    return removed, index


def run_ours(texts: list[str], config: NearDedupConfig, workers: int = 1) -> tuple[int, float, float]:
    """Returns (removed, signature seconds, LSH seconds)."""
    keys = [str(i) for i in range(len(texts))]
    start = time.perf_counter()
    sigs = signatures(texts, config) if workers <= 1 else signatures_parallel(texts, config, workers)
    middle = time.perf_counter()
    removed, _ = decide(keys, sigs, config)
    return removed, middle - start, time.perf_counter() - middle


def timed(function, *args):
    gc.collect()
    start = time.perf_counter()
    result = function(*args)
    return result, time.perf_counter() - start


def index_bytes_per_document(sigs: np.ndarray, config: NearDedupConfig) -> tuple[float, float]:
    """(tracemalloc bytes per document, the index's own memory_bytes() per document)."""
    keys = [str(i) for i in range(len(sigs))]
    sigs = np.ascontiguousarray(sigs)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    index = NearDuplicateIndex(config)
    for lo in range(0, len(keys), BATCH):
        index.add_batch(keys[lo : lo + BATCH], sigs[lo : lo + BATCH])
    del keys  # the index holds the kept ones
    gc.collect()
    traced = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return traced / len(index), index.bytes_per_document()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subset-mb", type=float, default=3.0, help="text for the slow methods")
    parser.add_argument("--workers", type=int, default=0, help="worker processes for the parallel run (0: cores)")
    parser.add_argument("--index-docs", type=int, default=50_000, help="documents in the memory measurement")
    parser.add_argument("--parallel-copies", type=int, default=3, help="corpus copies for the parallel run")
    args = parser.parse_args()
    workers = args.workers or os.cpu_count() or 1

    config = NearDedupConfig()
    bands, rows = lsh_params(config)
    texts = stdlib_corpus()
    total_mb = megabytes(texts)
    stride = max(1, round(total_mb / args.subset_mb))
    subset = texts[::stride]
    subset_mb = megabytes(subset)
    print(
        f"python {platform.python_version()}, datasketch {datasketch.__version__}, numpy {np.__version__}, "
        f"{os.cpu_count()} CPU cores ({platform.processor() or platform.machine()})"
    )
    print(
        f"config: {config.shingle} {config.ngram}-grams, num_perm {config.num_perm}, scheme {config.scheme}, "
        f"threshold {config.threshold}, LSH bands x rows = {bands} x {rows}"
    )
    print(
        f"corpus: {len(texts)} stdlib .py files, {total_mb:.1f} MB; subset: every {stride}th file, "
        f"{len(subset)} files, {subset_mb:.2f} MB\n"
    )

    removed_naive, t_naive = timed(run_naive, subset, config)
    removed_bulk, t_bulk = timed(run_datasketch_bulk, subset, config)
    (removed_ours, sig_s, lsh_s), t_ours = timed(run_ours, subset, config)
    rate_naive, rate_bulk, rate_ours = subset_mb / t_naive, subset_mb / t_bulk, subset_mb / t_ours
    print(f"same subset ({subset_mb:.2f} MB), one process, end to end (signatures + LSH decisions):")
    print(f"  {'method':<18}{'seconds':>9}{'MB/s/core':>11}{'removed':>9}{'ours is':>10}")
    for name, seconds, rate, removed in [
        ("naive update loop", t_naive, rate_naive, removed_naive),
        ("datasketch bulk", t_bulk, rate_bulk, removed_bulk),
        ("ours", t_ours, rate_ours, removed_ours),
    ]:
        print(f"  {name:<18}{seconds:>9.2f}{rate:>11.2f}{removed:>9}{rate_ours / rate:>9.1f}x")
    print(f"  (ours: signatures {sig_s:.2f} s, LSH {lsh_s:.2f} s)\n")

    print(f"whole corpus ({total_mb:.1f} MB), ours:")
    for shingle in ("word", "char"):
        run_config = NearDedupConfig(shingle=shingle)
        (removed, sig_s, lsh_s), seconds = timed(run_ours, texts, run_config)
        print(
            f"  {shingle} shingles, 1 process: {seconds:.2f} s = {total_mb / seconds:.1f} MB/s per core "
            f"(signatures {total_mb / sig_s:.1f} MB/s, LSH {lsh_s:.2f} s), {removed} removed; "
            f"{total_mb / seconds / rate_naive:.0f}x the naive loop's MB/s"
        )
    _, startup = timed(signatures_parallel, ["a b c", "d e f"], config, workers)
    copies = texts * args.parallel_copies
    (removed, sig_s, lsh_s), seconds = timed(run_ours, copies, config, workers)
    copies_mb = total_mb * args.parallel_copies
    print(
        f"  word shingles, {args.parallel_copies} copies of the corpus ({copies_mb:.0f} MB), signatures in "
        f"{workers} worker processes + LSH in this process: {seconds:.2f} s = {copies_mb / seconds:.1f} MB/s, "
        f"{copies_mb / seconds / workers:.1f} MB/s per core (signatures {copies_mb / sig_s:.1f} MB/s, LSH "
        f"{lsh_s:.2f} s; includes starting the {workers} spawned workers, {startup:.2f} s on its own), "
        f"{removed} removed\n"
    )

    stdlib_sigs = signatures(texts, config)
    rng = np.random.default_rng(0)
    random_sigs = rng.integers(0, 1 << 32, size=(args.index_docs, config.num_perm), dtype=np.uint64)
    print("LSH index memory (kept documents only; tracemalloc / the index's object walk):")
    default_lsh = MinHashLSH(threshold=config.threshold, num_perm=config.num_perm)
    sparse = NearDedupConfig(bands=default_lsh.b, rows=default_lsh.r)
    for name, sigs, run_config in [
        (f"{args.index_docs} unique documents (random signatures), {bands} x {rows}", random_sigs, config),
        (
            f"{args.index_docs} unique documents, datasketch's default {sparse.bands} x {sparse.rows} (lower recall)",
            random_sigs,
            sparse,
        ),
        (f"stdlib corpus ({len(texts)} documents), {bands} x {rows}", stdlib_sigs, config),
    ]:
        traced, walked = index_bytes_per_document(sigs.astype(np.uint32), run_config)
        print(f"  {name}: {traced:,.0f} bytes per document traced, {walked:,.0f} walked")
    print(
        f"  (signature blocks of {config.num_perm} x 4 bytes x 16384 rows are allocated whole: small indexes "
        f"pay for the unused rows)"
    )


if __name__ == "__main__":
    main()
