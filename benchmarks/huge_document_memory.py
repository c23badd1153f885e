"""Peak memory of data preparation on a corpus holding one huge document (a single 200 MB line), stage by stage.

    python benchmarks/huge_document_memory.py [--line-mb 200] [--text words letters] [--keep-huge]
                                              [--configs configs/data/stdlib.yaml ...] [--kill-above-mb 12000]
                                              [--timeout-s 1800]

The corpus: ``huge.jsonl``, one JSON Lines record whose text is ``--line-mb`` MB on one line, beside
``small.jsonl``, a few hundred ordinary documents (Python's own language reference and standard-library
sources) so that every split has documents. Two kinds of huge text:

* ``words``: standard-library sources and reference prose with every identifier re-spelled per copy (so it is
  not one short text repeated) and all whitespace turned into single spaces: realistic text with spaces;
* ``letters``: random letters from ``acgt`` (a genome-like sequence): no space at all, so the byte-level
  pre-tokenizer sees one 200 MB word.

Each shipped config runs as ``python -m data_prep --config X`` on that corpus (with ``--split.val_fraction 0.2`` so
the small documents fill the val split). As shipped, the length filter removes the huge document in the documents
stage (it has millions of words, or a single one); ``--keep-huge`` also runs each config with
``--filters.profile none``, so the huge document goes through dedup, tokenizer training, tokens and shards.

The child process prints a line as each stage starts (``Report.stage`` wrapped); this script samples the resident
memory of the child's whole process tree (worker processes included) from /proc every 20 ms and prints the peak
per stage and overall, with the date and the machine. A run whose tree grows past ``--kill-above-mb`` is killed
(so that a regression cannot take the machine down), as is one that runs longer than ``--timeout-s``; both are
reported as such, with the stage they were in.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import signal
import subprocess
import sys
import sysconfig
import threading
import time
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from prepare_memory import tree_rss_mb  # noqa: E402 - the same sampling as the corpus-size benchmark

CONFIGS = ["configs/data/stdlib.yaml", "configs/data/stdlib-mlm.yaml", "configs/data/web.yaml"]
STAGES = ("documents", "dedup", "tokenizer", "tokens", "shards")
STAGE_MARK = "@stage "
IDENTIFIER = re.compile(r"[A-Za-z_]{3,}")
SAMPLE_SECONDS = 0.02

# Runs in the child: data_prep's own entry point, with each stage announcing itself on stdout.
CHILD = f"""
import contextlib, sys
from data_prep import report
from data_prep.__main__ import main

stage = report.Report.stage

@contextlib.contextmanager
def announced(self, name):
    print({STAGE_MARK!r} + name, flush=True)
    with stage(self, name):
        yield

report.Report.stage = announced
sys.exit(main(sys.argv[1:]))
"""


def ordinary_texts() -> list[str]:
    """Python's language reference topics (prose) and top-level standard-library modules (code)."""
    from pydoc_data.topics import topics

    stdlib = Path(sysconfig.get_paths()["stdlib"])
    return [*topics.values(), *(p.read_text(errors="replace") for p in sorted(stdlib.glob("*.py")))]


def huge_text(kind: str, size: int) -> str:
    if kind == "letters":
        import numpy as np

        alphabet = np.frombuffer(b"acgt", dtype=np.uint8)
        return alphabet[np.random.default_rng(0).integers(0, 4, size)].tobytes().decode("ascii")
    base = " ".join(" ".join(ordinary_texts()).split())
    pieces, total, copy = [], 0, 0
    while total < size:  # identifiers re-spelled per copy: unique text with realistic token statistics
        piece = IDENTIFIER.sub(lambda m: f"{m.group(0)}{copy % 97}x{copy // 97}", base)
        pieces.append(piece)
        total += len(piece) + 1
        copy += 1
    return " ".join(pieces)[:size]


def write_corpus(directory: Path, kind: str, line_mb: float) -> None:
    """Written under a temporary name and renamed, so an interrupted run never leaves a corpus that looks whole."""
    partial = directory.with_name(directory.name + ".partial")
    partial.mkdir(parents=True, exist_ok=True)
    with open(partial / "small.jsonl", "w") as handle:
        for text in ordinary_texts():
            handle.write(json.dumps({"text": text}) + "\n")
    with open(partial / "huge.jsonl", "w") as handle:
        handle.write(json.dumps({"text": huge_text(kind, int(line_mb * 1e6))}) + "\n")
    partial.rename(directory)


def run(config: str, corpus: Path, output: Path, extra: list[str], kill_above_mb: float, timeout_s: float) -> dict:
    """One data_prep run; returns its exit code, peak MB per stage and overall, seconds, and its report."""
    argv = ["--config", config, "--sources", json.dumps([str(corpus / "*.jsonl")]), "--output_dir", str(output)]
    argv += ["--split.val_fraction", "0.2", *extra]
    process = subprocess.Popen(
        [sys.executable, "-c", CHILD, *argv],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: killed with its workers
        env={**os.environ, "TQDM_DISABLE": "1"},
    )
    current = {"stage": "start"}
    errors: list[str] = []

    def follow_stdout() -> None:
        for line in process.stdout:
            if line.startswith(STAGE_MARK):
                current["stage"] = line[len(STAGE_MARK) :].strip()

    def keep_stderr() -> None:
        errors.extend(line for line in process.stderr if line.startswith("error:"))

    readers = [threading.Thread(target=follow_stdout), threading.Thread(target=keep_stderr)]
    for reader in readers:
        reader.start()
    peaks: dict[str, float] = {}
    started, killed = time.perf_counter(), None
    while process.poll() is None:
        rss = tree_rss_mb(process.pid)
        stage = current["stage"]
        peaks[stage] = max(peaks.get(stage, 0.0), rss)
        if killed is None and (rss > kill_above_mb or time.perf_counter() - started > timeout_s):
            os.killpg(process.pid, signal.SIGKILL)
            killed = f"above {kill_above_mb:.0f} MB" if rss > kill_above_mb else f"after {timeout_s:.0f} s"
            killed += f" in the {stage} stage"
        time.sleep(SAMPLE_SECONDS)
    for reader in readers:
        reader.join()
    report_path = output / "report.json"
    report = json.loads(report_path.read_text()) if report_path.is_file() and process.returncode == 0 else {}
    return {
        "returncode": process.returncode,
        "killed": killed,
        "error": errors[0].strip() if errors else "",
        "peaks": peaks,
        "seconds": time.perf_counter() - started,
        "report": report,
    }


def machine() -> str:
    memory = next(line for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal"))
    gib = int(memory.split()[1]) / 2**20
    return f"{os.cpu_count()}-core {platform.machine()} ({platform.processor() or platform.system()}), {gib:.0f} GiB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--line-mb", type=float, default=200.0, help="size of the huge document (one line)")
    parser.add_argument("--text", nargs="+", choices=["words", "letters"], default=["words", "letters"])
    parser.add_argument("--configs", nargs="+", default=CONFIGS)
    parser.add_argument("--keep-huge", action="store_true", help="also run with --filters.profile none")
    parser.add_argument("--kill-above-mb", type=float, default=12_000.0)
    parser.add_argument("--timeout-s", type=float, default=1800.0)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/huge-document-memory"))
    args = parser.parse_args()

    print(f"{date.today()}, {machine()}, Python {platform.python_version()}; one {args.line_mb:g} MB line")
    header = f"{'text':<8} {'config':<20} {'filters':<8} {'peak MB':>8} " + " ".join(f"{s:>9}" for s in STAGES)
    print(f"{header} {'seconds':>8}  huge document / result")
    for kind in args.text:
        corpus = args.workdir / f"corpus-{kind}-{args.line_mb:g}"
        if not corpus.is_dir():
            write_corpus(corpus, kind, args.line_mb)
        variants = [("shipped", [])] + ([("none", ["--filters.profile", "none"])] if args.keep_huge else [])
        for config in args.configs:
            for filters, extra in variants:
                output = args.workdir / f"out-{kind}-{Path(config).stem}-{filters}"
                result = run(config, corpus, output, extra, args.kill_above_mb, args.timeout_s)
                peaks = result["peaks"]
                stages = " ".join(f"{peaks[s]:>9.0f}" if s in peaks else f"{'-':>9}" for s in STAGES)
                if result["killed"]:
                    outcome = f"killed {result['killed']}"
                elif result["returncode"] != 0:
                    outcome = f"exit {result['returncode']}: {result['error'][:120]}"
                else:
                    report = result["report"]
                    kept = report["bytes"]["kept_before_dedup"] > args.line_mb * 1e6 / 2
                    outcome = "kept, tokenized" if kept else f"removed ({', '.join(report['removed']) or '-'})"
                print(
                    f"{kind:<8} {Path(config).name:<20} {filters:<8} {max(peaks.values()):>8.0f} {stages} "
                    f"{result['seconds']:>8.0f}  {outcome}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
