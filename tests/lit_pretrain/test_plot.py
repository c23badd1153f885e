"""``plot`` of a run trained on a mixture of named sources: each source's validation curve in the loss, bits-per-byte
and perplexity panels, a "tokens seen per source" panel with the curriculum's phase changes; a run without sources
drawn with the panels it always had. Event files written here with ``SummaryWriter``, the figure inspected
in-process."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib.pyplot as plt
import pytest

from lit_pretrain.plot import PANELS, TOKENS_PANEL, draw, event_directories, main, read_scalars

STEPS = range(0, 12, 2)
PHASE_CHANGE = 6  # train/phase goes 0 -> 1 here


def write_run(directory: Path, sources: tuple[str, ...]) -> None:
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(directory) as writer:
        for step in STEPS:
            writer.add_scalar("train/loss", 5.0 - step / 4, step)
            writer.add_scalar("train/lr", 1e-3, step)
            writer.add_scalar("train/tokens_seen", 64.0 * step, step)
            for metric, value in (("loss", 4.0 - step / 4), ("bpb", 1.5 - step / 20), ("ppl", math.exp(4 - step / 4))):
                writer.add_scalar(f"val/{metric}", value, step)
                for offset, name in enumerate(sources, start=1):
                    writer.add_scalar(f"val/{name}/{metric}", value + offset, step)
            if sources:
                writer.add_scalar("train/phase", 0 if step < PHASE_CHANGE else 1, step)
                for offset, name in enumerate(sources, start=1):
                    writer.add_scalar(f"train/tokens_seen/{name}", 32.0 * step * offset, step)
        for name in sources:
            writer.add_scalar(f"test/{name}/loss", 2.0, STEPS[-1])


def panels_of(*runs: Path) -> dict:
    """Panel title -> axes of the figure ``plot`` draws for these run directories (closed; its axes still hold
    what was drawn)."""
    figure = draw([(run.name, read_scalars(directory)) for run in runs for _, directory in event_directories([run])])
    plt.close(figure)
    return {axis.get_title(): axis for axis in figure.axes}


def curves(axis) -> dict[str, tuple[list, list]]:
    """Label -> (steps, values) of every labelled line drawn in a panel."""
    return {line.get_label(): (list(line.get_xdata()), list(line.get_ydata())) for line in axis.get_lines()}


@pytest.fixture
def mix(tmp_path) -> Path:
    write_run(tmp_path / "mix", ("code", "prose"))
    return tmp_path / "mix"


@pytest.fixture
def plain(tmp_path) -> Path:
    write_run(tmp_path / "plain", ())
    return tmp_path / "plain"


def test_each_source_gets_its_validation_curve_and_tokens_seen_with_the_phase_change_marked(mix):
    panels = panels_of(mix)
    assert list(panels) == [*PANELS, TOKENS_PANEL]
    for title, metric in (("loss (nats/token)", "loss"), ("bits per byte", "bpb"), ("perplexity", "ppl")):
        drawn = curves(panels[title])
        assert [label for label in drawn if "/code/" in label or "/prose/" in label] == [
            f"mix: val/code/{metric}",
            f"mix: val/prose/{metric}",
        ]
        overall, code = drawn[f"mix: val/{metric}"], drawn[f"mix: val/code/{metric}"]
        assert code[0] == list(STEPS)
        assert code[1] == pytest.approx([value + 1 for value in overall[1]])  # what was logged for that source
    lines = {line.get_label(): line for line in panels["loss (nats/token)"].get_lines()}
    colors = [lines[label].get_color() for label in ("mix: val/loss", "mix: val/code/loss", "mix: val/prose/loss")]
    assert len(set(colors)) == 3  # each source told apart from the overall curve and from each other
    assert lines["mix: val/code/loss"].get_linestyle() != lines["mix: val/loss"].get_linestyle()

    seen = curves(panels[TOKENS_PANEL])
    assert seen["mix: train/tokens_seen/code"] == (list(STEPS), [32.0 * step for step in STEPS])
    assert seen["mix: train/tokens_seen/prose"] == (list(STEPS), [64.0 * step for step in STEPS])
    assert seen["mix: phase change"][0] == [PHASE_CHANGE, PHASE_CHANGE]  # one vertical line, where 0 became 1
    assert [text.get_text().strip() for text in panels[TOKENS_PANEL].texts] == ["phase 1"]


def test_overlaid_mixture_runs_keep_each_curve_labelled_by_run_and_source(tmp_path):
    for name in ("a", "b"):
        write_run(tmp_path / name, ("code", "prose"))
    panels = panels_of(tmp_path / "a", tmp_path / "b")
    for title, tag in (("loss (nats/token)", "val/{}/loss"), (TOKENS_PANEL, "train/tokens_seen/{}")):
        lines = {line.get_label(): line for line in panels[title].get_lines()}
        per_source = [f"{run}: {tag.format(name)}" for run in ("a", "b") for name in ("code", "prose")]
        assert set(per_source) <= set(lines), list(lines)
        assert len({lines[label].get_color() for label in per_source}) == 4  # one colour per (run, source)
    assert {"a: phase change", "b: phase change"} <= set(curves(panels[TOKENS_PANEL]))


def test_a_run_without_sources_has_the_panels_and_curves_it_had_before(plain):
    panels = panels_of(plain)
    assert list(panels) == list(PANELS)  # six panels, no empty "tokens seen per source"
    assert list(curves(panels["loss (nats/token)"])) == ["plain: train/loss", "plain: val/loss"]
    assert list(curves(panels["bits per byte"])) == ["plain: val/bpb"]
    assert list(curves(panels["perplexity"])) == ["plain: val/ppl"]


def test_the_cli_writes_the_png_of_a_mixture_run(mix, capsys):
    main([str(mix), "--out", str(mix.parent / "mix.png")])
    assert (mix.parent / "mix.png").stat().st_size > 0
    assert "wrote" in capsys.readouterr().out
