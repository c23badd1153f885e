"""Tokenize-and-pack throughput against raw ``tokenizers`` ``encode_batch``, same text, same threads, one run.

    python benchmarks/tokenize_pack_speed.py [--threads N] [--mb 31] [--batch-documents 512] [--repeats 3]
                                             [--vocab-size 8192] [--tokenizer PATH]

Corpus: the standard library's ``.py`` files (``sysconfig`` stdlib, installed packages excluded), ~31 MB.
Tokenizer: byte-level BPE trained here on a ``--train-mb`` sample of it (or ``--tokenizer``: a tokenizer.json or
a Hugging Face directory). Each variant goes over the same batches of ``--batch-documents`` documents:

* ``raw encode_batch``: ``[e.ids for e in tokenizer.encode_batch(batch)]``, the minimum any caller has to do
  (encode, and turn each encoding's ids into a Python list);
* ``raw encode_batch_fast``: the same with ``encode_batch_fast`` (no offsets), when this tokenizers has it;
* ``tokenize+pack``: what the pipeline does per batch: ``data_prep.tokens.tokenizer.encode_documents`` (flat array
  with end-of-text after each document, plus lengths), the UTF-8 byte count, and
  ``data_prep.tokens.shards.ShardWriter.add`` writing ``.bin``/``.idx`` shards (with their SHA-256) to a temporary directory;
* ``lists+add_documents``: the previous packing path: per-document Python lists ``ids + [eot]`` handed to
  ``ShardWriter.add_documents`` (shown for comparison).

Variants take turns batch by batch, in rotating order, ``--repeats`` times; a variant's time is the sum over
batches of its best time on that batch (the least disturbed by other processes). Reported: wall time, MB/s of
UTF-8 text and the ratio to each raw baseline; and the process's CPU time (all threads), which other processes
on a busy machine disturb far less than wall time: when the two ratios differ much, the machine was busy.
The issue's target: tokenize+pack at least 0.9x raw ``encode_batch``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runs from a checkout without an install

TARGET_RATIO = 0.9


def stdlib_sources(megabytes: float | None) -> list[str]:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    texts, size = [], 0
    for path in sorted(stdlib.rglob("*.py")):
        if {"site-packages", "dist-packages"} & set(path.relative_to(stdlib).parts):
            continue
        if megabytes is not None and size >= megabytes * 1e6:
            break
        texts.append(path.read_text(encoding="utf-8", errors="replace"))
        size += len(texts[-1].encode())
    return texts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=0, help="Rayon threads (RAYON_NUM_THREADS); 0 = one per core")
    parser.add_argument("--mb", type=float, default=None, help="use only the first MB of the corpus (default: all)")
    parser.add_argument("--batch-documents", type=int, default=None, help="default: shards.batch_documents")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--vocab-size", type=int, default=8192)
    parser.add_argument("--train-mb", type=float, default=8.0, help="MB of the corpus to train the tokenizer on")
    parser.add_argument("--tokenizer", help="tokenizer.json or Hugging Face tokenizer directory instead of training")
    args = parser.parse_args()

    # Before the first encode: Rayon sizes its global pool once, from this variable.
    threads = args.threads or os.cpu_count() or 1
    os.environ["RAYON_NUM_THREADS"] = str(threads)
    import tokenizers

    from data_prep.tokens.shards import ShardConfig, ShardWriter, dtype_for_vocab
    from data_prep.tokens.tokenizer import (
        TokenizerConfig,
        encode_documents,
        load_tokenizer,
        sample_for_training,
        train_tokenizer,
    )

    texts = stdlib_sources(args.mb)
    total_bytes = sum(len(t.encode("utf-8")) for t in texts)
    batch_documents = args.batch_documents or ShardConfig().batch_documents
    batches = [texts[i : i + batch_documents] for i in range(0, len(texts), batch_documents)]

    started = time.perf_counter()
    if args.tokenizer:
        tokenizer = load_tokenizer(args.tokenizer)
        how = f"loaded from {args.tokenizer}"
    else:
        config = TokenizerConfig(vocab_size=args.vocab_size)
        tokenizer = train_tokenizer(sample_for_training(texts, int(args.train_mb * 1e6)), config, show_progress=False)
        how = f"byte-level BPE trained on {args.train_mb:g} MB of it"
    eot = tokenizer.token_to_id("<|endoftext|>") or 0
    dtype = dtype_for_vocab(tokenizer.get_vocab_size())
    print(
        f"corpus: {len(texts)} stdlib .py files, {total_bytes / 1e6:.1f} MB, {len(batches)} batches of "
        f"<= {batch_documents} documents\ntokenizer: vocab {tokenizer.get_vocab_size()}, {how} "
        f"({time.perf_counter() - started:.1f} s); tokenizers {tokenizers.__version__}\n"
        f"threads: {threads} (RAYON_NUM_THREADS; {os.cpu_count()} cores visible); shard dtype {dtype.name}"
    )

    # Each variant is a step run on one batch; the packing ones carry a ShardWriter from batch to batch.
    fast = getattr(tokenizer, "encode_batch_fast", None)

    def raw(encode):
        def step(batch, _writer) -> int:
            ids = [encoding.ids for encoding in encode(batch, add_special_tokens=False)]
            return sum(map(len, ids))

        return step

    def pack(batch, writer) -> int:
        tokens, lengths = encode_documents(tokenizer, batch, eot, dtype=dtype)
        writer.add(tokens, lengths, sum(len(t.encode("utf-8", "surrogatepass")) for t in batch))
        return len(tokens) - len(batch)  # without the end-of-text tokens

    def pack_lists(batch, writer) -> int:
        lists = [encoding.ids + [eot] for encoding in (fast or tokenizer.encode_batch)(batch, add_special_tokens=False)]
        writer.add_documents(lists, sum(len(t.encode("utf-8", "surrogatepass")) for t in batch))
        return sum(map(len, lists)) - len(batch)

    variants = {"raw encode_batch": (raw(tokenizer.encode_batch), False)}
    if fast is not None:
        variants["raw encode_batch_fast"] = (raw(fast), False)
    variants["tokenize+pack"] = (pack, True)
    variants["lists+add_documents"] = (pack_lists, True)
    names = list(variants)

    # Other processes on the machine slow whichever variant runs at that moment. So the variants take turns
    # batch by batch (in rotating order), and each variant's time is the sum over batches of its best time
    # for that batch across the repeats, plus its best time to open and close its shard writer.
    batch_best = {name: [float("inf")] * len(batches) for name in names}
    batch_cpu = {name: [float("inf")] * len(batches) for name in names}  # CPU seconds of all threads
    writer_best = {name: float("inf") for name, (_, packs) in variants.items() if packs}
    with tempfile.TemporaryDirectory(prefix="tokenize_pack_speed-") as scratch:
        for repeat in range(args.repeats):
            counts, writers, writer_seconds = dict.fromkeys(names, 0), {}, {}
            for name in writer_best:
                directory = Path(scratch) / f"{names.index(name)}-{repeat}"
                directory.mkdir()
                started = time.perf_counter()
                writers[name] = ShardWriter(directory, "train", dtype, ShardConfig().tokens_per_shard)
                writer_seconds[name] = time.perf_counter() - started
            for index, batch in enumerate(batches):
                turn = (index + repeat) % len(names)
                for name in names[turn:] + names[:turn]:
                    started, cpu_started = time.perf_counter(), time.process_time()
                    counts[name] += variants[name][0](batch, writers.get(name))
                    batch_best[name][index] = min(batch_best[name][index], time.perf_counter() - started)
                    batch_cpu[name][index] = min(batch_cpu[name][index], time.process_time() - cpu_started)
            for name, writer in writers.items():
                started = time.perf_counter()
                written = writer.close()
                writer_best[name] = min(writer_best[name], writer_seconds[name] + time.perf_counter() - started)
                assert written["tokens"] - written["documents"] == counts[name], name
                shutil.rmtree(Path(scratch) / f"{names.index(name)}-{repeat}")
            assert len(set(counts.values())) == 1, f"variants disagree on the token count: {counts}"
    best = {name: sum(batch_best[name]) + writer_best.get(name, 0.0) for name in names}
    cpu = {name: sum(batch_cpu[name]) + writer_best.get(name, 0.0) for name in names}

    count = counts[names[0]]
    print(f"tokens: {count:,} ({total_bytes / count:.2f} bytes/token); per batch, best of {args.repeats} repeats\n")
    print(f"{'variant':<24} {'wall s':>7} {'MB/s':>6} {'Mtokens/s':>9}   {'CPU s':>6} {'MB per CPU-s':>12}")
    for name, seconds in best.items():
        print(
            f"{name:<24} {seconds:7.2f} {total_bytes / 1e6 / seconds:6.2f} {count / 1e6 / seconds:9.2f}   "
            f"{cpu[name]:6.2f} {total_bytes / 1e6 / cpu[name]:12.2f}"
        )
    print()
    for baseline in ("raw encode_batch", "raw encode_batch_fast"):
        if baseline in best:
            ratio = best[baseline] / best["tokenize+pack"]
            verdict = "meets" if ratio >= TARGET_RATIO else "BELOW"
            print(
                f"tokenize+pack / {baseline}: {ratio:.3f}x by wall time ({verdict} the {TARGET_RATIO}x target), "
                f"{cpu[baseline] / cpu['tokenize+pack']:.3f}x by CPU time"
            )
    fastest_raw = "raw encode_batch_fast" if "raw encode_batch_fast" in best else "raw encode_batch"
    print(
        f"lists+add_documents / {fastest_raw}: {best[fastest_raw] / best['lists+add_documents']:.3f}x by wall time, "
        f"{cpu[fastest_raw] / cpu['lists+add_documents']:.3f}x by CPU time"
    )


if __name__ == "__main__":
    main()
