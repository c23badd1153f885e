"""Data-loading headroom: tokens/s the data module delivers on this machine against the tokens/s ``gpt2-small``
consumes on one H100/H200 at the MFU target, side by side in one run.

    python benchmarks/data_loading.py [--dataset-dir DIR] [--batches 400] [--mfu 0.45]

Delivered: ``PretrainDataModule`` (seq_len 1024, 16 windows per micro-batch, gpt2-small's shape) on a prepared
dataset (``--dataset-dir``; default: the stdlib corpus prepared into a temporary directory with vocab 8,192, as
``benchmarks/gpu_check.py`` trains), its training DataLoader iterated as ``Trainer.fit`` does (the resumable
sampler, random windows across shards, pinned memory off on CPU), for ``num_workers`` 0 and 2, after 20 warm-up
batches. Consumed: ``flops_per_token`` of a real ``gpt2-small`` (the throughput callback's MFU convention) at
``--mfu`` of the device's dense bf16 peak (989 TFLOP/s for H100 SXM / H200): the step rate gpt2-small would
need the loader to keep up with, since no GPU figure of ours is recorded yet. Target: >= 20x headroom.

Then the mixture loader (``data.sources``) against the single-dataset loader, side by side in this run: the same
prepared dataset given twice as two sources (weights 0.7 / 0.3), so each window costs the same read and the ratio
measures what drawing sources, per-source permutations and the stream's state cost. Measured alternately, best of
five each. Target: >= 0.9x.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

H100_BF16_TFLOPS = 989.0  # lit_pretrain.callbacks.throughput.PEAK_TFLOPS["H100 SXM"]["bf16"]


def prepared_dataset(directory: Path) -> Path:
    import yaml

    from data_prep.config import DataPrepConfig
    from data_prep.pipeline import prepare

    values = yaml.safe_load((REPO / "configs/data/stdlib.yaml").read_text())
    values.update(output_dir=str(directory / "stdlib"))
    values["tokenizer"]["vocab_size"] = 8192
    prepare(DataPrepConfig.from_dict(values), show_progress=False)
    return directory / "stdlib"


def delivered_tokens_per_second(
    dataset_dir: Path, workers: int, batches: int, seq_len: int, batch: int, mixture: bool = False
) -> float:
    from lit_pretrain import PretrainDataModule

    where: dict = {"dataset_dir": str(dataset_dir)}
    if mixture:  # the same dataset twice: the same reads, through the mixture's sampler and loader
        sources = [{"name": name, "dataset_dir": str(dataset_dir), "weight": w} for name, w in (("a", 0.7), ("b", 0.3))]
        where = {"dataset_dir": None, "sources": sources}
    data = PretrainDataModule(**where, prepare_config=None, seq_len=seq_len, batch_size=batch, num_workers=workers)
    data.setup("fit")
    loader = iter(data.train_dataloader())
    for _ in range(20):  # warm-up: worker start, first reads
        next(loader)
    started, tokens = time.perf_counter(), 0
    for _ in range(batches):
        batch_ = next(loader)
        tokens += batch_["input_ids"].numel() if isinstance(batch_, dict) else batch_.numel()
    return tokens / (time.perf_counter() - started)


def consumed_tokens_per_second(vocab_size: int, seq_len: int, mfu: float) -> tuple[float, float]:
    from transformers import AutoModelForCausalLM

    from lit_pretrain.models import build_config, build_model, flops_per_token

    config = build_config("gpt2-small", None, vocab_size, {"end_of_text_id": 0})
    model = build_model(config, AutoModelForCausalLM, device="meta")
    flops = flops_per_token(model, seq_len)
    return mfu * H100_BF16_TFLOPS * 1e12 / flops, flops


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset-dir", type=Path, default=None)
    parser.add_argument("--batches", type=int, default=400)
    parser.add_argument("--mfu", type=float, default=0.45)
    options = parser.parse_args()
    seq_len, batch = 1024, 16
    with tempfile.TemporaryDirectory() as tmp:
        dataset_dir = options.dataset_dir or prepared_dataset(Path(tmp))
        from data_prep.tokens.shards import read_manifest

        vocab_size = int(read_manifest(dataset_dir)["vocab_size"])
        consumed, flops = consumed_tokens_per_second(vocab_size, seq_len, options.mfu)
        print(f"{platform.processor() or platform.machine()}, dataset {dataset_dir.name} (vocab {vocab_size:,})")
        print(f"gpt2-small: {flops / 1e9:.3f} GFLOP/token; at {options.mfu:.0%} MFU of {H100_BF16_TFLOPS:.0f} "
              f"TFLOP/s it consumes {consumed:,.0f} tokens/s\n")  # fmt: skip
        print("| num_workers | delivered tokens/s | headroom (delivered / consumed; target >= 20) |")
        print("|---|---|---|")
        for workers in (0, 2):
            delivered = delivered_tokens_per_second(dataset_dir, workers, options.batches, seq_len, batch)
            print(f"| {workers} | {delivered:,.0f} | {delivered / consumed:.1f}x |")
        print(
            "\n| num_workers | single dataset tokens/s | mixture of 2 sources tokens/s | mixture / single (target >= 0.9) |"
        )
        print("|---|---|---|---|")
        for workers in (0, 2):
            best = {False: 0.0, True: 0.0}
            for _ in range(5):
                for mixture in (False, True):
                    rate = delivered_tokens_per_second(dataset_dir, workers, options.batches, seq_len, batch, mixture)
                    best[mixture] = max(best[mixture], rate)
            print(f"| {workers} | {best[False]:,.0f} | {best[True]:,.0f} | {best[True] / best[False]:.2f}x |")


if __name__ == "__main__":
    main()
