"""Quickstart quality versus a plain hand-written PyTorch loop, side by side, on the same data and machine.

    python benchmarks/quickstart_quality.py [--budget-seconds 300]

1. Prepares ``data/stdlib`` (the quickstart corpus) if needed.
2. Runs the quickstart exactly as users do (``python -m lit_pretrain fit --config configs/quickstart.yaml``)
   and measures its training wall time (validation passes included).
3. Gives a plain loop the same wall time: GPT-2 shape from transformers (4 layers x 128, the best plain-loop
   size for this budget), AdamW lr 1e-3 with betas (0.9, 0.95), 30 warmup steps then cosine, the same windows,
   batch size and tokenizer, validation only once at the end.
4. Prints both validation bits per byte (nats / ln 2 / bytes per token over the whole held-out split) and
   their ratio. Lower is better.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from data_prep.config import DataPrepConfig  # noqa: E402
from data_prep.pipeline import prepare  # noqa: E402
from lit_pretrain.data import ResumableWindowSampler, WindowDataset  # noqa: E402
from lit_pretrain.models import build_config, build_model  # noqa: E402
from lit_pretrain.objectives import clm_loss  # noqa: E402
from lit_pretrain.optim import warmup_cosine  # noqa: E402


def run_quickstart(log_root: Path) -> tuple[float, float]:
    """Returns (final val_bpb, training seconds) of the real quickstart command."""
    started = time.perf_counter()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "lit_pretrain",
            "fit",
            "--config",
            "configs/quickstart.yaml",
            "--trainer.logger.init_args.save_dir",
            str(log_root),
            "--trainer.enable_progress_bar",
            "false",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(result.stderr[-3000:])
    for line in result.stdout.splitlines():  # the validation trajectory, for the README's table
        if re.match(r"step \d+: val_loss", line):
            print(f"  quickstart {line}")
    bpb = [float(x) for x in re.findall(r"val_bpb ([0-9.]+)", result.stdout)]
    return bpb[-1], seconds


@torch.no_grad()
def evaluate_bpb(model, dataset, batch_size: int, bytes_per_token: float) -> float:
    model.eval()
    total, count = 0.0, 0
    for begin in range(0, len(dataset), batch_size):
        input_ids = torch.stack([dataset[i]["input_ids"] for i in range(begin, min(begin + batch_size, len(dataset)))])
        loss_sum, n = clm_loss(model(input_ids=input_ids).logits, input_ids)
        total, count = total + loss_sum.item(), count + n.item()
    return total / count / math.log(2) / bytes_per_token


def run_plain_loop(manifest: dict, dataset_dir: Path, budget_seconds: float, quickstart: dict) -> tuple[float, int]:
    """The baseline a user would write by hand; returns (val bpb, optimizer steps taken)."""
    torch.manual_seed(1234)
    seq_len, batch_size = quickstart["data"]["seq_len"], quickstart["data"]["batch_size"]
    train = WindowDataset(dataset_dir, manifest["splits"]["train"]["files"], manifest["dtype"], seq_len)
    val = WindowDataset(dataset_dir, manifest["splits"]["val"]["files"], manifest["dtype"], seq_len)
    model = build_model(
        build_config(
            None, dict(model_type="gpt2", n_layer=4, n_head=4, n_embd=128, n_positions=512), manifest["vocab_size"]
        )
    )
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}], lr=1e-3, betas=(0.9, 0.95)
    )
    order = iter(ResumableWindowSampler(len(train), seed=1234))

    def step() -> None:
        input_ids = torch.stack([train[next(order)]["input_ids"] for _ in range(batch_size)])
        loss_sum, count = clm_loss(model(input_ids=input_ids).logits, input_ids)
        optimizer.zero_grad(set_to_none=True)
        (loss_sum / count).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()

    # Calibrate the schedule length from the measured speed so the cosine ends when the budget does.
    model.train()
    started = time.perf_counter()
    warmup, steps = 30, 0
    for group in optimizer.param_groups:
        group["initial_lr"] = group["lr"]
    total_steps = None
    while time.perf_counter() - started < budget_seconds:
        if steps == 10:
            total_steps = int(budget_seconds / ((time.perf_counter() - started) / 10))
        multiplier = warmup_cosine(steps, warmup, total_steps or 10**9, 0.1)
        for group in optimizer.param_groups:
            group["lr"] = group["initial_lr"] * multiplier
        step()
        steps += 1
    info = manifest["splits"]["val"]
    return evaluate_bpb(model, val, batch_size, info["bytes"] / info["tokens"]), steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--budget-seconds",
        type=float,
        default=None,
        help="Plain-loop wall time; default: the quickstart's own measured time.",
    )
    args = parser.parse_args()
    os.chdir(REPO)
    quickstart = yaml.safe_load((REPO / "configs/quickstart.yaml").read_text())
    prep = yaml.safe_load((REPO / quickstart["data"]["prepare_config"]).read_text())
    prep["output_dir"] = quickstart["data"]["dataset_dir"]
    manifest = prepare(DataPrepConfig.from_dict(prep), show_progress=False)

    with tempfile.TemporaryDirectory() as logs:
        ours_bpb, ours_seconds = run_quickstart(Path(logs))
    budget = args.budget_seconds or ours_seconds
    plain_bpb, plain_steps = run_plain_loop(manifest, Path(quickstart["data"]["dataset_dir"]), budget, quickstart)

    print(f"machine: {os.cpu_count()} CPUs, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(
        f"quickstart (lit_pretrain, {quickstart['model']['preset']}, {quickstart['model']['optimizer']}): "
        f"val_bpb {ours_bpb:.4f} in {ours_seconds:.0f} s (whole command: startup, validation, sample included)"
    )
    print(f"plain loop (gpt2 4x128, AdamW): val_bpb {plain_bpb:.4f} in {budget:.0f} s ({plain_steps} steps)")
    print(f"ratio quickstart / plain loop: {ours_bpb / plain_bpb:.3f}  (< 1 means the quickstart is better)")


if __name__ == "__main__":
    main()
