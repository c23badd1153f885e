"""A mixture of prepared datasets (``data.sources``, ``data.phases``): proportions, determinism, a small source
running out, the loader's resume state, phases, validation per source, and refusals. The CLI's runs (a SIGKILL
and a resume, single process and DDP) are in ``tests/e2e/test_mixture_cli.py``."""

from __future__ import annotations

import math

import lightning as L
import numpy as np
import pytest
import torch

from lit_pretrain.data import PretrainDataModule
from lit_pretrain.errors import ConfigError
from lit_pretrain.mixture import MixtureSampler, MixtureStream, Phase
from lit_pretrain.module import PretrainModule
from tests.conftest import quiet_trainer


def mixture(first, second, weights=(0.7, 0.3), **kwargs) -> PretrainDataModule:
    sources = [
        {"name": "code", "dataset_dir": str(first), "weight": weights[0]},
        {"name": "asyncio", "dataset_dir": str(second), "weight": weights[1]},
    ]
    options = dict(dataset_dir=None, prepare_config=None, sources=sources, seq_len=64, batch_size=8)
    return PretrainDataModule(**{**options, **kwargs})


@pytest.mark.parametrize("weights", [(0.5, 0.5), (0.7, 0.2, 0.1)])
def test_every_200_consecutive_global_batches_hold_each_source_within_4_standard_errors(weights):
    global_batch, batches, span = 16, 3000, 200
    stream = MixtureStream([10_000] * len(weights), seed=1234, phases=[Phase(0, weights)], samples_per_step=16)
    sources = stream.sources(0, global_batch * batches).reshape(batches, global_batch)
    for source, weight in enumerate(weights):
        per_batch = (sources == source).sum(axis=1)
        window = np.convolve(per_batch, np.ones(span, dtype=np.int64), mode="valid")  # every run of 200 batches
        share = window / (span * global_batch)
        standard_error = math.sqrt(weight * (1 - weight) / (span * global_batch))
        worst = np.abs(share - weight).max()
        assert worst <= 4 * standard_error, (source, weight, worst, standard_error)


def test_the_ranks_windows_together_are_the_stream_and_each_comes_from_its_drawn_source(
    prepared_dataset, prepared_second_dataset
):
    data = mixture(prepared_dataset, prepared_second_dataset)
    data.setup("fit")
    sizes = [len(d) for d in data.windows["train"]]
    stream = MixtureStream(sizes, data.seed, data.phases, samples_per_step=16)
    offsets, length = data.train_dataset.offsets, 16 * 50
    ranks = [list(MixtureSampler(stream, offsets, length, num_replicas=2, rank=r)) for r in (0, 1)]
    together = np.array([index for pair in zip(*ranks) for index in pair])  # position p is rank p % 2's
    drawn, local, _ = stream.windows(0, length, np.zeros(2, dtype=np.int64))
    assert together.tolist() == (offsets[drawn] + local).tolist()
    assert ((together >= offsets[1]) == (drawn == 1)).all()  # a window of source 1 is one of its windows
    # ...and the tokens a row holds are that window's tokens in that source's shards.
    row = data.train_dataset[int(together[5])]["input_ids"]
    expected = data.windows["train"][int(drawn[5])][int(local[5])]["input_ids"]
    assert torch.equal(row, expected)


def test_the_same_config_gives_the_same_batches_and_another_seed_others(prepared_dataset, prepared_second_dataset):
    def batches(**kwargs) -> list[torch.Tensor]:
        data = mixture(prepared_dataset, prepared_second_dataset, **kwargs)
        data.setup("fit")
        loader = iter(data.train_dataloader())
        return [next(loader)["input_ids"] for _ in range(20)]

    first, again, other = batches(), batches(), batches(seed=7)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not all(torch.equal(a, b) for a, b in zip(first, other))


def test_a_small_source_that_runs_out_starts_its_next_epoch_while_the_other_goes_on():
    small, large = 7, 100_000
    stream = MixtureStream([small, large], seed=3, phases=[Phase(0, (0.5, 0.5))], samples_per_step=16)
    sources, local, taken = stream.windows(0, 2000, np.zeros(2, dtype=np.int64))
    draws = local[sources == 0]
    assert taken[0] == len(draws) > 10 * small  # it ran out many times
    epochs = draws[: len(draws) // small * small].reshape(-1, small)
    assert all(sorted(epoch) == list(range(small)) for epoch in epochs)  # each epoch: every window once
    assert len({tuple(epoch) for epoch in epochs}) > 1  # each epoch its own permutation
    big = local[sources == 1]
    assert len(set(big.tolist())) == len(big)  # the large source never repeats within its first epoch


def test_a_loader_restored_from_its_state_continues_with_the_next_windows(prepared_dataset, prepared_second_dataset):
    data = mixture(prepared_dataset, prepared_second_dataset)
    data.setup("fit")
    loader = data.train_dataloader()
    iterator = iter(loader)
    for _ in range(7):  # the loop takes 7 batches (the loader may have read further ahead)
        next(iterator)
        loader.mark_consumed(8)
    state = loader.state_dict()
    following = [next(iterator)["input_ids"] for _ in range(5)]
    assert state["position"] == 56 and sum(s["taken"] for s in state["sources"].values()) == 56

    restored = mixture(prepared_dataset, prepared_second_dataset)
    restored.setup("fit")
    fresh = restored.train_dataloader()
    fresh.load_state_dict(state)
    resumed = iter(fresh)
    assert all(torch.equal(next(resumed)["input_ids"], batch) for batch in following)


def test_phases_switch_the_weights_at_their_optimizer_step_and_report_the_active_phase(
    prepared_dataset, prepared_second_dataset
):
    phases = [
        {"start_step": 0, "weights": {"code": 1.0}},
        {"start_step": 3, "weights": {"asyncio": 1.0}},
    ]
    data = mixture(prepared_dataset, prepared_second_dataset, phases=phases)
    data.setup("fit")
    loader = data.train_dataloader()
    boundary = int(data.train_dataset.offsets[1])
    phases_seen = []
    for _, indices in zip(range(6), loader.batch_sampler):
        assert all(index < boundary for index in indices) == (len(phases_seen) < 3)  # code first, then asyncio
        loader.mark_consumed(8)
        phases_seen.append(data.description.progress()["phase"])
    sources = [loader.sampler.stream.sources(step * 8, (step + 1) * 8).tolist() for step in range(6)]
    assert sources[:3] == [[0] * 8] * 3 and sources[3:] == [[1] * 8] * 3
    assert phases_seen == [0, 0, 0, 1, 1, 1]  # the phase of the batch just taken
    assert data.description.progress()["windows"] == {"code": 24, "asyncio": 24}


def test_each_sources_validation_equals_evaluating_that_source_alone(
    prepared_dataset, prepared_second_dataset, tmp_path
):
    data = mixture(prepared_dataset, prepared_second_dataset)
    model = PretrainModule(
        preset="gpt2-tiny", vocab_size=data.vocab_size, seq_len=64, data_description=data.description
    )
    L.seed_everything(0)
    mixed = quiet_trainer(tmp_path).validate(model, datamodule=data, verbose=False)
    metrics = {key: value for result in mixed for key, value in result.items()}
    totals = {}
    for name, directory in (("code", prepared_dataset), ("asyncio", prepared_second_dataset)):
        alone = PretrainDataModule(dataset_dir=str(directory), prepare_config=None, seq_len=64, batch_size=8)
        model.data_description = alone.description
        result = quiet_trainer(tmp_path).validate(model, datamodule=alone, verbose=False)[0]
        for metric in ("loss", "ppl", "bpb"):
            assert metrics[f"val/{name}/{metric}"] == pytest.approx(result[f"val/{metric}"], rel=1e-5)
        totals[name] = (result["val/loss"], len(alone.val_dataset) * 63)  # CLM: 63 predicted tokens per window
    overall = sum(loss * count for loss, count in totals.values()) / sum(count for _, count in totals.values())
    assert metrics["val/loss"] == pytest.approx(overall, rel=1e-5)  # token-weighted over both sources
    model.data_description = data.description
    tested = quiet_trainer(tmp_path).test(model, datamodule=data, verbose=False)
    tested = {key: value for result in tested for key, value in result.items()}
    assert tested["test/code/loss"] == pytest.approx(metrics["val/code/loss"], rel=1e-5)  # no test split: val


def test_bad_mixtures_are_refused_in_one_line_naming_the_key(
    prepared_dataset, prepared_second_dataset, prepared_mlm_dataset, tmp_path
):
    def refused(match: str, **kwargs) -> None:
        with pytest.raises(ConfigError, match=match) as error:
            mixture(prepared_dataset, prepared_second_dataset, **kwargs)
        assert "\n" not in str(error.value)

    refused(r"data.sources and data.dataset_dir '.*' are both given", dataset_dir=str(prepared_dataset))
    refused(r"data.sources\[1\].weight -0.2 \('asyncio'\) must be a number >= 0", weights=(0.7, -0.2))
    refused(r"data.sources: every weight is 0", weights=(0, 0.0))
    refused(
        r"data.phases\[1\].weights names 'web', which is not a source",
        phases=[{"start_step": 0, "weights": {"code": 1}}, {"start_step": 5, "weights": {"web": 1}}],
    )
    refused(
        r"data.phases\[1\].start_step 5 is not after data.phases\[0\].start_step 9",
        phases=[{"start_step": 9, "weights": {"code": 1}}, {"start_step": 5, "weights": {"asyncio": 1}}],
    )
    with pytest.raises(ConfigError, match=r"data.sources\[0\] has unknown key 'wieght'"):
        PretrainDataModule(sources=[{"name": "a", "dataset_dir": "x", "wieght": 1}], prepare_config=None)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(
        ConfigError, match=r"'.*empty/manifest.json' does not exist and data.sources\[1\].prepare_config"
    ):
        mixture(prepared_dataset, empty)
    with pytest.raises(ConfigError) as error:
        mixture(prepared_dataset, prepared_mlm_dataset)
    message = str(error.value)
    assert message.startswith("data.sources[1] ('asyncio'):") and "data.sources[0] ('code')" in message
    assert f"tokenizer.pretrained: {prepared_dataset / 'tokenizer.json'}" in message


def test_a_resume_with_other_weights_or_sources_is_refused(prepared_dataset, prepared_second_dataset):
    data = mixture(prepared_dataset, prepared_second_dataset)
    data.setup("fit")
    saved = data.data_order()
    mixture(prepared_dataset, prepared_second_dataset).check_data_order(saved, "the checkpoint")  # the same: fine
    with pytest.raises(ConfigError, match=r"data.sources\[1\].weight 0.3 \('asyncio'\) and this run has 0.5"):
        mixture(prepared_dataset, prepared_second_dataset, weights=(0.7, 0.5)).check_data_order(saved, "ckpt")
    swapped = mixture(prepared_second_dataset, prepared_dataset)
    with pytest.raises(ConfigError, match=r"data.sources\[0\].dataset_dir"):
        swapped.check_data_order(saved, "ckpt")
    single = PretrainDataModule(dataset_dir=str(prepared_dataset), prepare_config=None, seq_len=64)
    with pytest.raises(
        ConfigError, match="was trained on a mixture of data.sources and this run reads data.dataset_dir"
    ):
        single.check_data_order(saved, "ckpt")
