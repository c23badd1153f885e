"""``python -m lit_pretrain plot RUN_DIR... --out run.png``: one PNG of a run (or several, overlaid) from its
TensorBoard event files: loss, bits per byte, perplexity, gradient norm, learning rate and tokens/s."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from lit_pretrain.errors import ConfigError

# Panel title -> tags drawn in it (the first present of each run is drawn; train solid, val dashed).
PANELS = {
    "loss (nats/token)": ["train/loss", "val/loss"],
    "bits per byte": ["train/bpb", "val/bpb"],
    "perplexity": ["train/ppl", "val/ppl"],
    "gradient norm (before clipping)": ["train/grad_norm"],
    "learning rate": ["train/lr"],
    "tokens/s": ["train/tokens_per_s"],
}
# Names runs logged before the train/… val/… scheme, read in their place.
OLD_NAMES = {
    "train/loss": "train_loss",
    "val/loss": "val_loss",
    "val/bpb": "val_bpb",
    "val/ppl": "val_ppl",
    "train/lr": "lr",
}


def event_directories(paths: list[str]) -> list[tuple[str, Path]]:
    """(label, directory) of every directory holding TensorBoard event files under each path."""
    found = []
    for path in paths:
        root = Path(path)
        if not root.exists():
            raise ConfigError(f"plot: '{path}' does not exist; give a run directory such as runs/quickstart")
        directories = sorted({p.parent for p in root.rglob("events.out.tfevents.*")})
        if not directories:
            raise ConfigError(
                f"plot: no TensorBoard event files under '{path}'; give a run directory such as runs/quickstart"
            )
        for directory in directories:
            label = root.name if directory == root else f"{root.name}/{directory.relative_to(root)}"
            found.append((label, directory))
    return found


def read_scalars(directory: Path) -> dict[str, tuple[list[int], list[float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(directory), size_guidance={"scalars": 0})
    accumulator.Reload()
    scalars = {}
    for tag in accumulator.Tags()["scalars"]:
        events = accumulator.Scalars(tag)
        scalars[tag] = ([e.step for e in events], [e.value for e in events])
    return scalars


def present(scalars: dict, tags: list[str]) -> list[str]:
    """The tags of a panel this run logged, each under its current name or the name it had before."""
    found = []
    for tag in tags:
        if tag not in scalars and OLD_NAMES.get(tag) in scalars:
            tag = OLD_NAMES[tag]
        if tag in scalars:
            found.append(tag)
    return found


def render(runs: list[tuple[str, dict]], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(2, 3, figsize=(15, 8), constrained_layout=True)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for axis, (title, tags) in zip(axes.flat, PANELS.items()):
        drawn = False
        for index, (label, scalars) in enumerate(runs):
            for tag in present(scalars, tags):
                steps, values = scalars[tag]
                style = "--" if tag.startswith("val") else "-"
                marker = "o" if len(steps) < 20 else None
                axis.plot(
                    steps, values, style, marker=marker, color=colors[index % len(colors)], label=f"{label}: {tag}"
                )
                drawn = True
        axis.set_title(title)
        axis.set_xlabel("step")
        if drawn:
            axis.legend(fontsize=7)
            if title.startswith("perplexity") or title.startswith("learning"):
                axis.set_yscale("log")
        else:
            axis.text(0.5, 0.5, "not logged", ha="center", va="center", transform=axis.transAxes, color="gray")
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.partial.png")
    figure.savefig(partial, dpi=100)
    plt.close(figure)
    os.replace(partial, out)  # never a half-written PNG under the final name
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lit_pretrain plot", description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="run directories (runs/<name>) or log directories")
    parser.add_argument("--out", type=Path, default=Path("run.png"), help="PNG to write (default: run.png)")
    return parser


def main(args: list[str]) -> None:
    options = build_parser().parse_args(args)
    try:
        runs = [(label, read_scalars(directory)) for label, directory in event_directories(options.runs)]
        print(f"wrote {render(runs, options.out)} ({len(runs)} run{'s' if len(runs) > 1 else ''})")
    except ConfigError as error:
        sys.stderr.write(f"error: {error}\n")
        raise SystemExit(2) from None
