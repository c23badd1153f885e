"""Every GPU check of the training issue in one script, under 8 minutes on one H100/H200:

* gpt2-small CLM, bf16-mixed, model.compile, 100 steps of 16 x 1024 tokens: single device, FSDP2 (1 GPU),
  DeepSpeed ZeRO-2 and ZeRO-3;
* llama-1b CLM (TinyLlama's shape), bf16-mixed, SDPA, model.compile, 50 steps of 8 x 2048 tokens: with
  gpt2-small single, the MFU targets (gpt2-small >= 45 %, llama-1b >= 50 % on H100/H200);
* bert-base MLM, bf16-mixed, 100 steps of 32 x 512 tokens;
* the GPU-only tests (16-mixed loss scaling, FP8, CUDA memory metrics, the stability guard's and the pinned
  batches' copies without a host-device sync) through pytest;
* the ZeRO-2 / ZeRO-3 runs save ``last`` (Lightning's DeepSpeed checkpoint directory, written aside and swapped
  in) and ``python -m lit_pretrain export`` turns it into a Hugging Face directory (column ``export``).

MFU is the run's own ``train/mfu`` (the Throughput callback: ``flops_per_token`` over the device's dense peak).
Each run's peak memory is printed beside ``python -m lit_pretrain estimate``'s prediction for the same config.

Each run is the real CLI (``python -m lit_pretrain fit --config ... --config configs/strategy/X.yaml``) with a
probe callback (benchmarks/gpu_probe.py) that reports the last training loss, steady-state tokens/s (after 20
steps, so compilation is excluded, until the last 5 steps) and peak CUDA memory; the single-device runs end
with 5 steps under ``torch.profiler``, whose top device and host costs are printed after the table (what limits
a run that misses its MFU target). Prints one table; writes ``results.jsonl``.

    python benchmarks/gpu_check.py              # on the GPU machine (prepares data/stdlib* first if missing)
    python benchmarks/gpu_check.py --smoke      # on CPU: the same runs with tiny models for 6 steps, ZeRO skipped
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
BUDGET_S = 460  # all runs together stay under 8 minutes

CLM = ["--config", "configs/gpt2-small.yaml", "--trainer.accumulate_grad_batches", "1", "--model.compile", "true"]
MLM = [
    "--config", "configs/quickstart-mlm.yaml", "--model.preset", "bert-base", "--data.seq_len", "512",
    "--trainer.precision", "bf16-mixed", "--model.optimizer", "adamw", "--model.lr", "3e-4",
]  # fmt: skip
# The efficiency target's second model (TinyLlama's shape, 1.1B), 8 x 2048 tokens per step, bf16, compiled.
LLAMA = [*CLM, "--model.preset", "llama-1b", "--data.seq_len", "2048", "--data.batch_size", "8"]
LLAMA_STEPS = 50  # ~0.25 s per step at the 50 % MFU target: the compile dominates
PROFILE_STEPS = 5  # the single-device runs end with this many profiled steps (not in tokens/s): the top costs
RUNS = [  # name, base args, strategy preset (None: single device); the MFU runs first
    ("gpt2-small clm single", CLM, None),
    ("llama-1b clm single", LLAMA, None),
    ("gpt2-small clm fsdp", CLM, "fsdp"),
    ("gpt2-small clm zero2", CLM, "deepspeed_zero2"),
    ("gpt2-small clm zero3", CLM, "deepspeed_zero3"),
    ("bert-base mlm single", MLM, None),
]
SMOKE = {  # CPU: tiny models, a few steps, no compilation
    "clm": ["--model.preset", "gpt2-tiny", "--data.seq_len", "64", "--data.batch_size", "4",
            "--trainer.precision", "bf16-mixed", "--model.compile", "false", "--trainer.accelerator", "cpu"],
    "mlm": ["--model.preset", "bert-tiny", "--data.seq_len", "64", "--data.batch_size", "4",
            "--trainer.accelerator", "cpu"],
    "llama": ["--model.preset", "llama-tiny", "--data.seq_len", "64", "--data.batch_size", "4",
              "--trainer.precision", "bf16-mixed", "--model.compile", "false", "--trainer.accelerator", "cpu"],
}  # fmt: skip


def run_one(name: str, base: list[str], strategy: str | None, out: Path, steps: int, smoke: bool, limit_s: float):
    if strategy and strategy.startswith("deepspeed") and not torch.cuda.is_available():
        return {"name": name, "status": "skipped: DeepSpeed needs CUDA"}
    probe = out / f"{name.replace(' ', '_')}-probe.yaml"
    warmup = 2 if smoke else 20
    init_args = {"path": str(out / "results.jsonl"), "name": name, "warmup_steps": warmup}
    if strategy is None:  # the single-device runs (the MFU targets): their last steps under torch.profiler
        init_args["profile_steps"] = 2 if smoke else PROFILE_STEPS
    probe.write_text(
        yaml.safe_dump({"trainer": {"callbacks": [{"class_path": "gpu_probe.Probe", "init_args": init_args}]}})
    )
    args = [*base]
    if strategy:
        args += ["--config", f"configs/strategy/{strategy}.yaml", "--trainer.devices", "1"]
    if smoke:
        args += SMOKE["mlm" if "mlm" in name else "llama" if "llama" in name else "clm"]
    deepspeed = bool(strategy and strategy.startswith("deepspeed"))
    args += [
        "--config", str(probe), "--trainer.max_steps", str(steps), "--trainer.val_check_interval", str(steps),
        "--trainer.limit_val_batches", "5", "--checkpoint.every_n_train_steps", "0",
        "--checkpoint.save_last", "true" if deepspeed else "false",
        "--sample.enabled", "false", "--trainer.enable_progress_bar", "false", "--trainer.max_time", "null",
        "--trainer.logger.init_args.name", f"gpu_check/{name.replace(' ', '_')}",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "benchmarks")])}
    started = time.perf_counter()
    try:
        result = subprocess.run(
            [sys.executable, "-m", "lit_pretrain", "fit", *args],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=limit_s,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return {"name": name, "status": f"timed out after {limit_s:.0f} s"}
    seconds = round(time.perf_counter() - started)
    records = (
        [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
        if (out / "results.jsonl").is_file()
        else []
    )
    mine = [r for r in records if r["name"] == name]
    if result.returncode != 0 or not mine:
        last = (result.stderr.strip().splitlines() or ["(no output)"])[-1]
        return {"name": name, "status": f"failed (exit {result.returncode}): {last[:200]}", "seconds": seconds}
    # What `estimate` predicts for the same config and overrides, beside the measured peak (target: within 15 %).
    estimated = subprocess.run(
        [sys.executable, "-m", "lit_pretrain", "estimate", *args, "--gpus", "1", "--json"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    extra = {}
    if estimated.returncode == 0:
        figures = json.loads(estimated.stdout[estimated.stdout.index("{") :])
        extra["estimated_gib"] = round(figures["memory_per_gpu_gib"]["total"], 2)
    if deepspeed:  # the DeepSpeed checkpoint directory Lightning wrote -> a Hugging Face model directory
        run_dir = REPO / "runs" / "gpu_check" / name.replace(" ", "_")
        target = out / f"hf-{name.replace(' ', '_')}"
        subprocess.run(["rm", "-rf", str(target)], check=False)
        exported = subprocess.run(
            [sys.executable, "-m", "lit_pretrain", "export", str(run_dir), str(target)],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        last = (exported.stderr.strip().splitlines() or ["ok"])[-1]
        extra["export"] = "ok" if exported.returncode == 0 else f"failed: {last[:120]}"
    return {**mine[-1], **extra, "status": "ok", "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="CPU: tiny models, 6 steps, ZeRO skipped")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "gpu_check")
    options = parser.parse_args()
    steps = options.steps or (6 if options.smoke else 100)
    options.out.mkdir(parents=True, exist_ok=True)
    (options.out / "results.jsonl").unlink(missing_ok=True)
    deadline = time.perf_counter() + BUDGET_S
    rows = []
    for name, base, strategy in RUNS:
        left = deadline - time.perf_counter()
        if left < 30:
            rows.append({"name": name, "status": "skipped: out of time"})
            continue
        run_steps = min(steps, LLAMA_STEPS) if base is LLAMA else steps
        rows.append(run_one(name, base, strategy, options.out, run_steps, options.smoke, min(left, 150)))
        print(json.dumps(rows[-1]), flush=True)
    if torch.cuda.is_available() and not options.smoke:
        tests = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-rs", "tests/lit_pretrain/test_strategies.py",
             "tests/lit_pretrain/test_callbacks.py", "tests/lit_pretrain/test_data.py", "-k", "fp16 or fp8 or cuda"],
            cwd=REPO, capture_output=True, text=True, timeout=max(30, deadline - time.perf_counter() + 20),
        )  # fmt: skip
        rows.append({"name": "GPU-only tests", "status": tests.stdout.strip().splitlines()[-1]})
    print(
        "\n| run | status | steps | train/loss | tokens/s | MFU | peak GiB | estimated GiB | reserved GiB | s | export |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    columns = ("name", "status", "steps", "train/loss", "tokens_per_s", "logged train/mfu", "peak_memory_gib")
    for row in rows:
        cells = [
            row.get(k, "") for k in (*columns, "estimated_gib", "logged train/memory_reserved_gib", "seconds", "export")
        ]
        print("| " + " | ".join(str(c) for c in cells) + " |")
    for row in rows:  # what limits each single-device run: its top costs over the profiled steps
        for key, where in (("top_device", "device"), ("top_host", "host")):
            if row.get(key):
                print(f"\n{row['name']}: top {where} self time over {row['profiled_steps']} profiled steps")
                for cost in row[key]:
                    print(f"  {cost['share']:6.1%} {cost['ms']:10.2f} ms  {cost['name']}")
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    print(f"\ndevice: {device}, torch {torch.__version__}, {time.strftime('%Y-%m-%d')}")
    (options.out / "summary.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
