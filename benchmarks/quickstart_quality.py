"""Quickstart quality versus a plain hand-written PyTorch loop, side by side, on the same data and machine.

    python benchmarks/quickstart_quality.py [--config configs/quickstart.yaml] [--budget-seconds 300]
    python benchmarks/quickstart_quality.py --config configs/quickstart-mlm.yaml

1. Prepares the quickstart's dataset if needed.
2. Runs the quickstart exactly as users do (``python -m lit_pretrain fit --config ...``) and measures its
   training wall time (start-up, validation passes and the final sample included).
3. Gives a plain loop the same wall time: the same architecture family from transformers at 4 layers x 128
   (GPT-2 for ``objective: clm``, ``BertForMaskedLM`` for ``mlm``), AdamW lr 1e-3 with betas (0.9, 0.95),
   weight decay 0.1 on matrices, warmup then cosine to 10 %, clipping 1.0, the same windows in the same order,
   batch size, tokenizer and (for MLM) the same masks; validation only once at the end.
4. Prints both validation losses (nats per counted token: every next token for CLM, every masked token for MLM,
   with the same fixed validation masks), perplexities and bits per byte, and their ratio. Lower is better.
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
from lit_pretrain.data import manifest_token_ids  # noqa: E402
from lit_pretrain.models import build_config, build_model  # noqa: E402
from lit_pretrain.objectives import build_objective  # noqa: E402
from lit_pretrain.optim import warmup_cosine  # noqa: E402
from lit_pretrain.windows import ResumableWindowSampler, WindowDataset  # noqa: E402

# The plain loop's model: the best plain-loop size for a 5-minute, 2-core budget (PITFALLS.md).
PLAIN_MODELS = {
    "clm": dict(model_type="gpt2", n_layer=4, n_head=4, n_embd=128, n_positions=512),
    "mlm": dict(
        model_type="bert",
        num_hidden_layers=4,
        num_attention_heads=4,
        hidden_size=128,
        intermediate_size=512,
        max_position_embeddings=512,
    ),
}


def run_quickstart(config_path: str, log_root: Path) -> tuple[dict, float]:
    """Returns (final validation metrics, training seconds) of the real quickstart command."""
    started = time.perf_counter()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "lit_pretrain",
            "fit",
            "--config",
            config_path,
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
        if re.match(r"step \d+: val/loss", line):
            print(f"  quickstart {line}", flush=True)
    final = [line for line in result.stdout.splitlines() if re.match(r"step \d+: val/loss", line)][-1]
    metrics = {name: float(value) for name, value in re.findall(r"(val/\w+) ([0-9.]+)", final)}
    return metrics, seconds


@torch.no_grad()
def evaluate(model, objective, dataset, batch_size: int, bytes_per_token: float) -> dict:
    model.eval()
    total, count = 0.0, 0
    for begin in range(0, len(dataset), batch_size):
        input_ids = torch.stack([dataset[i]["input_ids"] for i in range(begin, min(begin + batch_size, len(dataset)))])
        loss_sum, n = objective.loss(model, objective.eval_batch(input_ids))
        total, count = total + loss_sum.item(), count + n.item()
    loss = total / count
    return {"val/loss": loss, "val/ppl": math.exp(loss), "val/bpb": loss / math.log(2) / bytes_per_token}


def run_plain_loop(manifest: dict, dataset_dir: Path, budget_seconds: float, quickstart: dict) -> tuple[dict, int]:
    """The baseline a user would write by hand; returns (validation metrics, optimizer steps taken)."""
    torch.manual_seed(1234)
    seq_len, batch_size = quickstart["data"]["seq_len"], quickstart["data"]["batch_size"]
    name = quickstart["model"].get("objective", "clm")
    token_ids = manifest_token_ids(dataset_dir, manifest)
    # Used only for its batch transform (the same masks as the quickstart's) and its plain cross-entropy.
    objective = build_objective(
        name,
        token_ids,
        manifest["vocab_size"],
        quickstart["model"].get("mask_seed", 0),
        quickstart["model"].get("mlm_probability", 0.15),
    )
    train = WindowDataset(dataset_dir, manifest["splits"]["train"]["files"], manifest["dtype"], seq_len)
    val = WindowDataset(dataset_dir, manifest["splits"]["val"]["files"], manifest["dtype"], seq_len)
    model = build_model(build_config(None, PLAIN_MODELS[name], manifest["vocab_size"], token_ids), objective.auto_class)
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}], lr=1e-3, betas=(0.9, 0.95)
    )
    order = iter(ResumableWindowSampler(len(train), seed=quickstart["data"]["seed"]))
    warmup = quickstart["model"]["warmup_steps"]

    def step(number: int) -> None:
        input_ids = torch.stack([train[next(order)]["input_ids"] for _ in range(batch_size)])
        batch = objective.train_batch(input_ids, step=number, micro_batch=0, rank=0, world_size=1)
        loss_sum, count = objective.loss(model, batch)
        optimizer.zero_grad(set_to_none=True)
        (loss_sum / count).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()

    # Calibrate the schedule length from the measured speed so the cosine ends when the budget does.
    model.train()
    started = time.perf_counter()
    steps = 0
    for group in optimizer.param_groups:
        group["initial_lr"] = group["lr"]
    total_steps = None
    while time.perf_counter() - started < budget_seconds:
        if steps == 10:
            total_steps = int(budget_seconds / ((time.perf_counter() - started) / 10))
        multiplier = warmup_cosine(steps, warmup, total_steps or 10**9, 0.1)
        for group in optimizer.param_groups:
            group["lr"] = group["initial_lr"] * multiplier
        step(steps)
        steps += 1
    info = manifest["splits"]["val"]
    return evaluate(model, objective, val, batch_size, info["bytes"] / info["tokens"]), steps


def describe(metrics: dict) -> str:
    return f"val/loss {metrics['val/loss']:.4f}  val/ppl {metrics['val/ppl']:.2f}  val/bpb {metrics['val/bpb']:.4f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/quickstart.yaml", help="The quickstart config to compare.")
    parser.add_argument(
        "--budget-seconds",
        type=float,
        default=None,
        help="Plain-loop wall time; default: the quickstart's own measured time.",
    )
    parser.add_argument(
        "--log-root",
        type=Path,
        default=None,
        help="Keep the quickstart run's logs under this directory (default: a temporary one), e.g. to plot it.",
    )
    args = parser.parse_args()
    os.chdir(REPO)
    quickstart = yaml.safe_load((REPO / args.config).read_text())
    prep = yaml.safe_load((REPO / quickstart["data"]["prepare_config"]).read_text())
    prep["output_dir"] = quickstart["data"]["dataset_dir"]
    manifest = prepare(DataPrepConfig.from_dict(prep), show_progress=False)

    with tempfile.TemporaryDirectory() as logs:
        ours, ours_seconds = run_quickstart(args.config, args.log_root or Path(logs))
    budget = args.budget_seconds or ours_seconds
    plain, plain_steps = run_plain_loop(manifest, Path(quickstart["data"]["dataset_dir"]), budget, quickstart)

    name = quickstart["model"].get("objective", "clm")
    model = quickstart["model"]
    print(f"machine: {os.cpu_count()} CPUs, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"objective: {name} ({'masked-token' if name == 'mlm' else 'next-token'} loss on the validation split)")
    print(
        f"quickstart ({args.config}: {model['preset']}, {model['optimizer']}): {describe(ours)} in {ours_seconds:.0f} s "
        "(whole command: startup, validation, sample included)"
    )
    print(
        f"plain loop ({PLAIN_MODELS[name]['model_type']} 4x128, AdamW): {describe(plain)} in {budget:.0f} s ({plain_steps} steps)"
    )
    print(
        f"ratio quickstart / plain loop: loss {ours['val/loss'] / plain['val/loss']:.3f}, "
        f"bpb {ours['val/bpb'] / plain['val/bpb']:.3f}  (< 1 means the quickstart is better)"
    )


if __name__ == "__main__":
    main()
