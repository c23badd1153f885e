"""Trainer overhead: our ``fit`` (PretrainModule + PretrainDataModule on Lightning's Trainer, with the monitoring
callbacks on) against a plain hand-written PyTorch loop doing the same work, side by side in one process.

    python benchmarks/trainer_overhead.py [--steps 60] [--rounds 2] [--batch-size 16]

Same model (``gpt2-mini`` built by ``lit_pretrain.models`` from one seed), same batches (the data module's
training DataLoader, so the same windows in the same order), same optimizer (AdamW, decay on matrices only,
warmup + cosine), same clipping (global norm 1.0), same precision (fp32), same logging cadence (the loss read
back every 10 steps). Ours adds what a run ships with: gradient norm, throughput, stability guard, progress bar
(checkpoints and the end-of-fit sample off: the loop has neither). The arms alternate (ours, plain, ours,
plain, ...) so the drift of a shared machine hits both; each arm's per-step wall time is the gap between
consecutive step ends, the first 10 steps of every arm left out. Printed: the mean step time of each arm and
the ratio ours / plain (target <= 1.03 on CPU).
"""

from __future__ import annotations

import argparse
import math
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import lightning as L  # noqa: E402
import torch  # noqa: E402

WARMUP_STEPS = 10
LOG_EVERY = 10


class StepClock(L.Callback):
    def __init__(self) -> None:
        self.ends: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.ends.append(time.perf_counter())


def prepared(directory: Path) -> Path:
    import yaml

    from data_prep.config import DataPrepConfig
    from data_prep.pipeline import prepare

    values = yaml.safe_load((REPO / "configs/data/stdlib.yaml").read_text())
    values.update(output_dir=str(directory / "stdlib"))
    prepare(DataPrepConfig.from_dict(values), show_progress=False)
    return directory / "stdlib"


def data_module(dataset_dir: Path, batch_size: int):
    from lit_pretrain import PretrainDataModule

    return PretrainDataModule(dataset_dir=str(dataset_dir), prepare_config=None, seq_len=256, batch_size=batch_size)


def ours(dataset_dir: Path, steps: int, batch_size: int, root: Path) -> list[float]:
    from lit_pretrain import PretrainModule
    from lit_pretrain.callbacks import GradientNorm, PretrainProgressBar, StabilityGuard, Throughput

    L.seed_everything(0, verbose=False)
    data = data_module(dataset_dir, batch_size)
    model = PretrainModule(preset="gpt2-mini", vocab_size=data.vocab_size, token_ids=data.token_ids, seq_len=256,
                           optimizer="adamw", lr=3e-3, warmup_steps=10, init_seed=0)  # fmt: skip
    clock = StepClock()
    trainer = L.Trainer(
        accelerator="cpu", devices=1, precision="32-true", max_steps=steps, gradient_clip_val=1.0,
        log_every_n_steps=LOG_EVERY, limit_val_batches=0, enable_checkpointing=False, enable_model_summary=False,
        logger=L.pytorch.loggers.CSVLogger(root, name="ours"), default_root_dir=root,
        callbacks=[clock, GradientNorm(), Throughput(), StabilityGuard(), PretrainProgressBar()],
    )  # fmt: skip
    trainer.fit(model, datamodule=data)
    return [b - a for a, b in zip(clock.ends, clock.ends[1:])][WARMUP_STEPS:]


def plain(dataset_dir: Path, steps: int, batch_size: int) -> list[float]:
    """What one would write by hand: the same pieces, no framework."""
    import torch.nn.functional as F
    from transformers import AutoModelForCausalLM

    from lit_pretrain.models import build_config, build_model

    L.seed_everything(0, verbose=False)
    data = data_module(dataset_dir, batch_size)
    data.setup("fit")
    config = build_config("gpt2-mini", None, data.vocab_size, data.token_ids)
    model = build_model(config, AutoModelForCausalLM, seed=0).train()
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                                  lr=3e-3, betas=(0.9, 0.95), eps=1e-8)  # fmt: skip

    def schedule(step: int) -> float:
        if step < 10:
            return (step + 1) / 10
        progress = (step - 10) / max(1, steps - 10)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    loader, ends, logged = iter(data.train_dataloader()), [], []
    for step in range(steps):
        input_ids = next(loader)["input_ids"]
        logits = model(input_ids=input_ids).logits
        loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.size(-1)).float(), input_ids[:, 1:].reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        if (step + 1) % LOG_EVERY == 0:
            logged.append(loss.item())
        ends.append(time.perf_counter())
    return [b - a for a, b in zip(ends, ends[1:])][WARMUP_STEPS:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset-dir", type=Path, default=None)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=16)
    options = parser.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    with tempfile.TemporaryDirectory() as tmp:
        dataset_dir = options.dataset_dir or prepared(Path(tmp))
        times = {"ours": [], "plain": []}
        for round_ in range(options.rounds):
            times["ours"] += ours(dataset_dir, options.steps, options.batch_size, Path(tmp) / f"runs{round_}")
            times["plain"] += plain(dataset_dir, options.steps, options.batch_size)
    mean = {arm: statistics.fmean(values) for arm, values in times.items()}
    median = {arm: statistics.median(values) for arm, values in times.items()}
    print(f"{platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads; gpt2-mini, "
          f"{options.batch_size} x 256 tokens per step, {options.rounds} rounds of {options.steps} steps per arm")  # fmt: skip
    print("| arm | steps timed | mean step ms | median step ms |")
    print("|---|---|---|---|")
    for arm in ("ours", "plain"):
        print(f"| {arm} | {len(times[arm])} | {mean[arm] * 1e3:.1f} | {median[arm] * 1e3:.1f} |")
    print(f"\nours / plain: mean {mean['ours'] / mean['plain']:.3f}, median {median['ours'] / median['plain']:.3f} "
          "(target <= 1.03)")  # fmt: skip


if __name__ == "__main__":
    main()
