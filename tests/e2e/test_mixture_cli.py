"""A mixture of two prepared datasets through the real CLI (``data.sources`` with ``data.phases``): a run killed
like a SIGKILL before a phase boundary and resumed with ``--ckpt_path last`` trains on exactly the windows and
losses of the uninterrupted run, in one process and in two DDP processes; it logs each source's validation and
tokens; bad mixtures are refused in one line with nothing written. (Proportions, determinism and validation per
source against each source alone are tested in ``tests/lit_pretrain/test_mixture.py``.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.conftest import SECOND_SOURCE_PACKAGES, copy_stdlib_corpus
from tests.e2e.helpers import REPO, in_process, make_project, read_records, recorder_config, run, scalars
from tests.e2e.test_resume_cli import TOLERANCE, by_step

# 16 windows per step; the weights switch at step 7; checkpoints every 4 steps, validation every 6 (2 batches per
# source); a run killed as step 6 begins resumes from the step-4 checkpoint and crosses the phase boundary.
PHASES = [
    {"start_step": 0, "weights": {"code": 0.8, "asyncio": 0.2}},
    {"start_step": 7, "weights": {"code": 0.2, "asyncio": 0.8}},
]
COMMON = ["--config", "tiny.yaml", "--config", "mix.yaml", "--trainer.max_steps", "12", "--trainer.accelerator",
          "cpu", "--trainer.val_check_interval", "6", "--trainer.limit_val_batches", "2",
          "--checkpoint.every_n_train_steps", "4", "--sample.enabled", "false"]  # fmt: skip
DDP = ["--config", str(REPO / "configs/strategy/ddp.yaml"), "--trainer.devices", "2", "--data.batch_size", "8"]
KILL_AT = 6


@pytest.fixture(scope="module")
def project(tmp_path_factory, stdlib_corpus) -> Path:
    """The tiny project's dataset (source ``code``) and a second one prepared with its tokenizer (``asyncio``)."""
    root = tmp_path_factory.mktemp("mixture")
    (root / "project").mkdir()
    project = make_project(root / "project", stdlib_corpus)
    corpus = copy_stdlib_corpus(root / "second", SECOND_SOURCE_PACKAGES)
    prep = yaml.safe_load((project / "prep.yaml").read_text())
    prep.update(sources=[str(corpus)], output_dir="data/second")
    prep["tokenizer"]["pretrained"] = "data/small/tokenizer.json"
    (project / "prep-second.yaml").write_text(yaml.safe_dump(prep))
    sources = [
        {"name": "code", "dataset_dir": "data/small", "weight": 0.8},
        {"name": "asyncio", "dataset_dir": "data/second", "prepare_config": "prep-second.yaml", "weight": 0.2},
    ]
    mix = {"data": {"dataset_dir": None, "prepare_config": None, "sources": sources, "phases": PHASES}}
    (project / "mix.yaml").write_text(yaml.safe_dump(mix))
    return project


def fit(project: Path, name: str, *args: str, kill_at: int | None = None, resume: bool = False):
    config, record = recorder_config(project, f"{name}-{'resumed' if resume else 'first'}", kill_at_step=kill_at)
    extra = ["--ckpt_path", "last"] if resume else []
    result = run("fit", *COMMON, *args, "--config", config, "--trainer.logger.init_args.name", name, *extra,
                 cwd=project)  # fmt: skip
    assert result.returncode == (9 if kill_at is not None else 0), result.stderr[-3000:]
    return by_step(read_records(record)), result


@pytest.fixture(scope="module")
def reference(project):
    """One uninterrupted process, 16 windows per step (the first fit also prepares the second source)."""
    steps, result = fit(project, "reference", "--data.batch_size", "16")
    assert (project / "data/second/manifest.json").is_file()
    return steps, result


def assert_resumes(project: Path, name: str, reference: dict, *args: str, **tolerance) -> None:
    killed, _ = fit(project, name, *args, kill_at=KILL_AT)
    assert list(killed) == list(range(1, KILL_AT + 1))
    resumed, _ = fit(project, name, *args, resume=True)
    assert list(resumed) == list(range(5, 13))  # from the step-4 checkpoint, across the phase switch at step 7
    for step, record in resumed.items():
        assert record["rows"] == reference[step]["rows"], f"step {step} trained on other windows"
    losses = [record["loss"] for record in resumed.values()]
    expected = [reference[step]["loss"] for step in resumed]
    assert losses == (pytest.approx(expected, **tolerance) if tolerance else expected)


def test_one_process_killed_before_a_phase_switch_resumes_exactly(project, reference):
    assert_resumes(project, "single", reference[0], "--data.batch_size", "16")


def test_two_ddp_processes_killed_before_a_phase_switch_resume_exactly(project, reference):
    assert_resumes(project, "ddp", reference[0], *DDP, **TOLERANCE)


def test_the_run_logs_each_sources_validation_tokens_and_phase(project, reference):
    _, result = reference
    logged = scalars(project / "runs/reference")
    for name in ("code", "asyncio"):
        for metric in ("loss", "ppl", "bpb"):
            assert [step for step, _ in logged[f"val/{name}/{metric}"]] == [step for step, _ in logged["val/loss"]]
    assert "val/code/bpb" in result.stdout and "val/asyncio/bpb" in result.stdout  # printed at each validation
    # Logged at the Trainer's step index, 0 for the first optimizer step: the 7 first steps are phase 0.
    phase = dict(logged["train/phase"])
    assert [phase[index] for index in range(12)] == [0.0] * 7 + [1.0] * 5
    code, asyncio = dict(logged["train/tokens_seen/code"]), dict(logged["train/tokens_seen/asyncio"])
    assert all(code[i] + asyncio[i] == (i + 1) * 16 * 64 for i in code)  # every window of every step
    first_phase = asyncio[6] / (7 * 16 * 64)
    second_phase = (asyncio[11] - asyncio[6]) / (5 * 16 * 64)
    assert first_phase < 0.4 and second_phase > 0.6  # 0.2 of the windows, then 0.8
    saved = json.loads(json.dumps(yaml.safe_load((project / "runs/reference/config.yaml").read_text())["data"]))
    assert [source["name"] for source in saved["sources"]] == ["code", "asyncio"]


def test_bad_mixtures_are_refused_in_one_line_before_anything_is_written(project, reference, capsys):
    def refused(*args: str) -> str:
        code, errors = in_process(project, "fit", *COMMON, "--trainer.logger.init_args.name", "refused", *args,
                                  capsys=capsys)  # fmt: skip
        assert code == 2 and len(errors) == 1, errors
        return errors[0]

    before = sorted(path.name for path in (project / "data").iterdir())
    error = refused("--data.dataset_dir", "data/small")
    assert error.startswith("error: data.sources and data.dataset_dir 'data/small' are both given; give one of them")
    other = [{"name": "code", "dataset_dir": "data/small"}, {"name": "web", "dataset_dir": "data/web"}]
    error = refused("--data.sources", json.dumps(other), "--data.phases", "null")
    assert error == (
        "error: 'data/web/manifest.json' does not exist and data.sources[1].prepare_config "
        "is null; prepare the dataset first with python -m data_prep, or give data.sources[1].prepare_config"
    )
    own_tokenizer = yaml.safe_load((project / "prep-second.yaml").read_text())
    del own_tokenizer["tokenizer"]["pretrained"]
    (project / "prep-own.yaml").write_text(yaml.safe_dump(own_tokenizer))
    other[1].update(dataset_dir="data/own", prepare_config="prep-own.yaml")
    error = refused("--data.sources", json.dumps(other), "--data.phases", "null")
    assert error == (
        "error: data.sources[1] ('web'): 'data/own' is tokenized with another tokenizer than data.sources[0] ('code'); "
        "every source must share one tokenizer: prepare 'web' with tokenizer.pretrained: data/small/tokenizer.json "
        "in its data_prep config"
    )
    error = refused("--data.phases", json.dumps([{"start_step": 0, "weights": {"books": 1}}]))
    assert error.startswith("error: data.phases[0].weights names 'books', which is not a source")
    assert not (project / "runs/refused").exists()
    assert sorted(path.name for path in (project / "data").iterdir()) == before  # nothing prepared


def test_estimate_reads_a_mixture_config(project, reference, capsys, monkeypatch):
    from lit_pretrain.estimate import main

    monkeypatch.chdir(project)  # in this process: a subprocess would add only its start-up
    main([*COMMON[:4], "--data.tokens_per_parameter", "20", "--json"])
    assert json.loads(capsys.readouterr().out)["tokens"] > 0
