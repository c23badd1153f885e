"""Cost of the monitoring callbacks per training step on the quickstart: every callback on (as shipped in
configs/quickstart.yaml: gradient norm with per-block norms, throughput, stability guard, a sample every 80
steps, the progress bar) against every one off, in the same run.

    python benchmarks/callbacks_overhead.py [--steps 400] [--block 5]

One real CLI run on the quickstart's data and model, without validation or checkpoints. A benchmark callback
(benchmarks/gpu_probe.py's AlternateMonitoring) switches all monitoring callbacks on and off in alternating
blocks of 5 optimizer steps and times every step, so the minute-scale drift of a shared machine (two identical
runs on the 2-core CI VM differ by up to 7 %) hits both arms alike; the first 20 steps are left out. Printed:

* the ratio of the mean step time on / off (the mean counts the rare samples, which a median would hide);
  target <= 1.02;
* each callback hook's time per step, from Lightning's SimpleProfiler in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SKIP = 20  # warm-up steps left out of the timing


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=400, help="optimizer steps of the run (default 400)")
    parser.add_argument("--block", type=int, default=5, help="steps per on or off block (default 5)")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "callbacks_overhead")
    options = parser.parse_args()
    options.out.mkdir(parents=True, exist_ok=True)
    if not (REPO / "data/stdlib/manifest.json").is_file():
        raise SystemExit("prepare the quickstart's data first: python -m data_prep --config configs/data/stdlib.yaml")
    record = options.out / "steps.json"
    probe = {"class_path": "gpu_probe.AlternateMonitoring", "init_args": {"path": str(record), "block": options.block}}
    (options.out / "probe.yaml").write_text(yaml.safe_dump({"trainer": {"callbacks": [probe]}}))
    args = [
        "--config", "configs/quickstart.yaml", "--config", str(options.out / "probe.yaml"),
        "--trainer.max_steps", str(options.steps), "--trainer.max_time", "null", "--trainer.limit_val_batches", "0",
        "--checkpoint.every_n_train_steps", "0", "--checkpoint.save_last", "false", "--trainer.profiler", "simple",
        "--trainer.logger.init_args.save_dir", str(options.out), "--trainer.logger.init_args.name", "run",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "benchmarks")])}
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "lit_pretrain", "fit", *args], cwd=REPO, env=env, capture_output=True, text=True
    )
    if result.returncode != 0:
        raise SystemExit(f"the run failed: {result.stderr.strip().splitlines()[-1]}")
    measured = json.loads(record.read_text())
    steps = measured["steps"][SKIP:]
    on = [seconds for seconds, state in steps if state]
    off = [seconds for seconds, state in steps if not state]
    mean_on, mean_off = statistics.mean(on), statistics.mean(off)
    steps_on = sum(state for _, state in measured["steps"])  # the profiler saw the warm-up steps too
    print(f"one run of {options.steps} steps in {time.perf_counter() - started:.0f} s; blocks of {options.block}")
    print("callback hook time per step with monitoring on (Lightning's SimpleProfiler, same run):")
    for action, seconds in sorted(measured["hooks"].items(), key=lambda item: -item[1])[:8]:
        print(f"  {action.removeprefix('[Callback]'):<50} {seconds / max(1, steps_on) * 1e3:7.2f} ms")
    print(
        f"monitoring on / off: mean step {mean_on * 1e3:.1f} / {mean_off * 1e3:.1f} ms = ratio {mean_on / mean_off:.4f}"
        f" ({len(on)} / {len(off)} steps; median {statistics.median(on) / statistics.median(off):.4f}); target <= 1.02"
    )
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}")


if __name__ == "__main__":
    main()
