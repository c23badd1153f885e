"""``python -m lit_pretrain plot RUN_DIR... --out run.png``: one PNG of a run (or several, overlaid) from its
TensorBoard event files: loss, bits per byte, perplexity, gradient norm, learning rate and tokens/s.

A run trained on a mixture of named sources also gets each source's validation curve (``val/<name>/loss``, ``…/bpb``,
``…/ppl``) in the first three panels and a "tokens seen per source" panel (``train/tokens_seen/<name>``) with the
curriculum's phase changes (``train/phase``) as vertical lines; a run without sources renders as before."""

from __future__ import annotations

import argparse
import os
import re
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
# A mixture run's per-source tags, drawn in the panel of that title: validation dotted, each source its own colour.
TOKENS_PANEL = "tokens seen per source"
SOURCE_TAGS = {
    "loss (nats/token)": "val/{}/loss",
    "bits per byte": "val/{}/bpb",
    "perplexity": "val/{}/ppl",
    TOKENS_PANEL: "train/tokens_seen/{}",
}
SOURCE_TAG = re.compile(r"val/(?P<name>.+)/(?:loss|bpb|ppl)|train/tokens_seen/(?P<seen>.+)")


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


def sources(scalars: dict) -> list[str]:
    """The names of the sources a mixture run logged metrics for, sorted; none for a run without sources."""
    return sorted({m["name"] or m["seen"] for tag in scalars if (m := SOURCE_TAG.fullmatch(tag))})


def phase_changes(scalars: dict) -> list[tuple[int, int]]:
    """(step, new phase) wherever the logged ``train/phase`` differs from the value logged before it."""
    steps, values = scalars.get("train/phase", ([], []))
    return [(step, int(value)) for step, value, before in zip(steps[1:], values[1:], values) if value != before]


def draw(runs: list[tuple[str, dict]]):
    """The figure of ``runs`` ((label, scalars) each): one panel per entry of PANELS, and "tokens seen per source"
    after them when a run logged ``train/tokens_seen/<name>``. A run has one colour (train solid, val dashed), each
    (run, source) another, the same in every panel; labels are ``<run>: <tag>``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = dict(PANELS)
    if any(tag.startswith("train/tokens_seen/") for _, scalars in runs for tag in scalars):
        panels[TOKENS_PANEL] = []
    columns = (len(panels) + 1) // 2
    figure, axes = plt.subplots(2, columns, figsize=(5 * columns, 8), constrained_layout=True)
    for axis in axes.flat[len(panels) :]:
        figure.delaxes(axis)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    names = [sources(scalars) for _, scalars in runs]
    # Source colours come after the runs' own, so a run without sources keeps the colour it always had.
    pairs = [(index, name) for index, run_names in enumerate(names) for name in run_names]
    source_color = {pair: colors[(len(runs) + k) % len(colors)] for k, pair in enumerate(pairs)}

    def curve(axis, label: str, tag: str, scalars: dict, style: str, color: str) -> None:
        steps, values = scalars[tag]
        marker = "o" if len(steps) < 20 else None
        axis.plot(steps, values, style, marker=marker, color=color, label=f"{label}: {tag}")

    for axis, (title, tags) in zip(axes.flat, panels.items()):
        drawn = False
        for index, (label, scalars) in enumerate(runs):
            run_color = colors[index % len(colors)]
            for tag in present(scalars, tags):
                curve(axis, label, tag, scalars, "--" if tag.startswith("val") else "-", run_color)
                drawn = True
            for name in names[index] if title in SOURCE_TAGS else []:
                tag = SOURCE_TAGS[title].format(name)
                if tag in scalars:
                    curve(axis, label, tag, scalars, ":" if tag.startswith("val") else "-", source_color[index, name])
                    drawn = True
            if title == TOKENS_PANEL:
                for k, (step, phase) in enumerate(phase_changes(scalars)):
                    change = f"{label}: phase change" if k == 0 else None
                    axis.axvline(step, linestyle="--", linewidth=1, color=run_color, alpha=0.6, label=change)
                    axis.text(step, 0.98, f" phase {phase}", transform=axis.get_xaxis_transform(), va="top",
                              fontsize=7, color=run_color)  # fmt: skip
        axis.set_title(title)
        axis.set_xlabel("step")
        if drawn:
            axis.legend(fontsize=7)
            if title.startswith("perplexity") or title.startswith("learning"):
                axis.set_yscale("log")
        else:
            axis.text(0.5, 0.5, "not logged", ha="center", va="center", transform=axis.transAxes, color="gray")
    return figure


def render(runs: list[tuple[str, dict]], out: Path) -> Path:
    figure = draw(runs)
    import matplotlib.pyplot as plt

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
