"""Monitoring callbacks in process: global gradient norm and clip fraction, throughput, tokens seen, MFU."""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch

from lit_pretrain import PretrainDataModule, PretrainModule
from lit_pretrain.callbacks import GradientNorm, Throughput
from lit_pretrain.callbacks.throughput import gpu_family, peak_flops
from lit_pretrain.models import flops_per_token
from tests.conftest import quiet_trainer


class Metrics(L.Callback):
    """Keeps every logged step metric (callback_metrics holds only the latest)."""

    def __init__(self) -> None:
        self.history: list[dict[str, float]] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.history.append({k: float(v) for k, v in trainer.callback_metrics.items()})


def fit(tmp_path, dataset, callbacks, **trainer_options):
    L.seed_everything(0)
    data = PretrainDataModule(dataset_dir=str(dataset), prepare_config=None, seq_len=64, batch_size=4)
    model = PretrainModule(preset="gpt2-tiny", vocab_size=data.vocab_size, seq_len=64, lr=3e-3, warmup_steps=2)
    recorder = Metrics()
    options = {"max_steps": 6, "limit_val_batches": 0, "log_every_n_steps": 1, **trainer_options}
    trainer = quiet_trainer(tmp_path, callbacks=[*callbacks, recorder], **options)
    trainer.fit(model, datamodule=data)
    return model, recorder.history


@pytest.mark.parametrize(
    "name, family",
    [
        ("NVIDIA H200", "H200"),
        ("NVIDIA H100 80GB HBM3", "H100 SXM"),
        ("NVIDIA H100 PCIe", "H100 PCIe"),
        ("NVIDIA H100 NVL", "H100 NVL"),
        ("NVIDIA A100-SXM4-80GB", "A100"),
        ("NVIDIA L40S", "L40S"),
        ("NVIDIA L4", "L4"),
        ("NVIDIA GeForce RTX 4090", None),
    ],
)
def test_peak_table_knows_gpus_by_their_cuda_names(name, family):
    assert gpu_family(name) == family
    if family is not None:
        assert peak_flops(name, "bf16-mixed") >= 121e12
        assert peak_flops(name, "32-true") < peak_flops(name, "bf16-mixed")


def test_h200_bf16_peak_is_989_tflops():
    assert peak_flops("NVIDIA H200", "bf16-mixed") == 989e12  # the plain name Lightning's table misses


def test_gradient_norm_is_the_norm_before_clipping_and_clip_fraction_counts_steps(tmp_path, prepared_dataset):
    class Reference(L.Callback):  # the norm of the unclipped gradients, computed here independently
        def __init__(self) -> None:
            self.norms: list[float] = []

        def on_before_optimizer_step(self, trainer, pl_module, optimizer):
            grads = [p.grad.flatten() for p in pl_module.parameters() if p.grad is not None]
            self.norms.append(torch.cat(grads).norm().item())

    reference = Reference()
    _, history = fit(tmp_path, prepared_dataset, [reference, GradientNorm()], gradient_clip_val=1e-6)
    logged = [step["train/grad_norm"] for step in history]
    assert logged == pytest.approx(reference.norms, rel=1e-5)
    assert all(norm > 1e-6 for norm in logged) and history[-1]["train/clip_fraction"] == 1.0  # every step clipped
    _, history = fit(tmp_path, prepared_dataset, [GradientNorm()], gradient_clip_val=1e6)
    assert history[-1]["train/clip_fraction"] == 0.0


@pytest.mark.parametrize("accumulate", [1, 2])
def test_clipping_reuses_the_callbacks_norm_and_trains_as_if_it_computed_its_own(
    tmp_path, prepared_dataset, accumulate
):
    """With the grad_norm callback on, clipping takes the norm it computed this step (one norm pass); the weights
    end where clipping with its own norm (callback off) leaves them, with clipping active at every step."""
    options = dict(gradient_clip_val=0.05, accumulate_grad_batches=accumulate, max_steps=4)
    with_callback, history = fit(tmp_path, prepared_dataset, [GradientNorm()], **options)
    assert history[-1]["train/clip_fraction"] == 1.0
    assert with_callback.pre_clip_grad_norm[0] == 3  # the last optimizer step's norm was handed over
    alone, _ = fit(tmp_path, prepared_dataset, [], **options)
    for (name, a), b in zip(with_callback.state_dict().items(), alone.state_dict().values()):
        assert torch.equal(a, b), name


def test_per_block_norms_add_up_to_the_global_norm(tmp_path, prepared_dataset):
    _, history = fit(tmp_path, prepared_dataset, [GradientNorm(per_block=True)], max_steps=2)
    last = history[-1]
    parts = [value for key, value in last.items() if key.startswith("grad_norm/")]
    assert {"grad_norm/block_00", "grad_norm/block_01", "grad_norm/other"} <= set(last)
    assert math.sqrt(sum(v * v for v in parts)) == pytest.approx(last["train/grad_norm"], rel=1e-5)


def test_throughput_counts_tokens_and_gives_mfu_only_with_a_known_peak(tmp_path, prepared_dataset):
    _, history = fit(tmp_path, prepared_dataset, [Throughput()])
    last = history[-1]
    assert last["train/tokens_seen"] == 6 * 4 * 64  # steps x batch x seq_len
    assert last["train/tokens_per_s"] > 0 and last["train/samples_per_s"] == pytest.approx(
        last["train/tokens_per_s"] / 64
    )
    assert last["train/step_time_s"] > 0
    assert "train/mfu" not in last  # CPU: omitted, not estimated

    model, history = fit(tmp_path, prepared_dataset, [Throughput(peak_flops=1e12)])
    last = history[-1]
    expected = flops_per_token(model.model, 64) * last["train/tokens_per_s"] / 1e12
    assert last["train/mfu"] == pytest.approx(expected, rel=1e-6) and 0 < last["train/mfu"] < 1


def test_a_dropped_spike_leaves_the_weights_as_they_were(tmp_path, prepared_dataset):
    from lit_pretrain.callbacks import StabilityGuard
    from tests.e2e.recorder import InjectFault

    class Weights(L.Callback):
        def __init__(self) -> None:
            self.before, self.after = {}, {}

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            self.before[trainer.global_step] = [p.detach().clone() for p in pl_module.parameters()]

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self.after[trainer.global_step - 1] = [p.detach().clone() for p in pl_module.parameters()]

    for skip in (True, False):
        weights = Weights()
        guard = StabilityGuard(warmup_steps=3, skip_spikes=skip)
        fit(tmp_path, prepared_dataset, [InjectFault(at_step=5, factor=10.0), guard, weights], max_steps=8)
        assert guard.spikes == 1
        unchanged = all(torch.equal(a, b) for a, b in zip(weights.before[5], weights.after[5]))
        assert unchanged == skip  # dropped: step 5 changed nothing; warned only: it trained on the spike
        assert all(not torch.equal(a, b) for a, b in zip(weights.before[6], weights.after[6]))  # and then trains on


@pytest.mark.parametrize("skip_spikes", [False, True])
def test_the_guard_reads_the_loss_after_the_backward_unless_it_may_drop_the_batch(
    tmp_path, prepared_dataset, skip_spikes
):
    """Without ``skip_spikes`` the check of every micro-batch's loss comes after that step's backward (its
    gradients are new) and before the update (the weights are the step's starting ones), so reading the loss
    never stalls the device mid-step; with ``skip_spikes`` it comes in the training step, before the backward."""
    from lit_pretrain.callbacks import StabilityGuard

    class Spy(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            self.weights = [p.detach().clone() for p in pl_module.parameters()]
            self.grads = [None if p.grad is None else p.grad.clone() for p in pl_module.parameters()]

    spy, seen = Spy(), []
    guard = StabilityGuard(warmup_steps=1, skip_spikes=skip_spikes)
    check = guard.check

    def spying_check(loss: float, step: int) -> bool:
        model = spy.model
        same_weights = all(torch.equal(a, p) for a, p in zip(spy.weights, model.parameters()))
        new_grads = all(
            p.grad is not None and (g is None or not torch.equal(g, p.grad))
            for g, p in zip(spy.grads, model.parameters())
        )
        seen.append((step, loss, same_weights, new_grads))
        return check(loss, step)

    guard.check = spying_check
    recorder = Metrics()

    class Bind(L.Callback):
        def on_train_start(self, trainer, pl_module):
            spy.model = pl_module

    fit(tmp_path, prepared_dataset, [Bind(), spy, guard, recorder], max_steps=4, accumulate_grad_batches=2)
    assert [step for step, *_ in seen] == [0, 0, 1, 1, 2, 2, 3, 3]  # every micro-batch, in order
    assert all(same for _, _, same, _ in seen)  # never after an update
    if skip_spikes:  # in the training step: the second micro-batch's backward has not run yet
        assert not any(new for _, _, _, new in seen[1::2])
    else:  # before the optimizer step: both micro-batches' backward passes are in the gradients
        assert all(new for _, _, _, new in seen)
    assert guard.seen == 8 and guard.mean is not None and not guard._pending


@pytest.mark.parametrize("objective", ["clm", "mlm"])
def test_train_ppl_and_bpb_are_the_token_weighted_mean_of_each_logging_window(
    tmp_path, prepared_dataset, prepared_mlm_dataset, objective
):
    """What the logger writes every 3 steps: exp / bits per byte of sum(loss_i * tokens_i) / sum(tokens_i) over
    exactly those 3 steps, where tokens_i counts each step's targets (every next token, or the masked ones)."""
    import csv

    from lightning.pytorch.loggers import CSVLogger

    class Steps(L.Callback):  # each optimizer step's mean loss and target count, from the batch itself
        def __init__(self) -> None:
            self.losses: list[float] = []
            self.counts: list[int] = []

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self.losses.append(float(trainer.callback_metrics["train/loss"]))
            labels = batch.get("labels")
            self.counts.append(int((labels != -100).sum()) if labels is not None else batch["input_ids"][:, 1:].numel())

    mlm = objective == "mlm"
    dataset = prepared_mlm_dataset if mlm else prepared_dataset
    L.seed_everything(0)
    data = PretrainDataModule(dataset_dir=str(dataset), prepare_config=None, seq_len=64, batch_size=4)
    model = PretrainModule(
        preset="bert-tiny" if mlm else "gpt2-tiny", objective=objective, vocab_size=data.vocab_size, seq_len=64, data_description=data.description,
        token_ids=data.token_ids, lr=3e-3, warmup_steps=2,
    )  # fmt: skip
    steps = Steps()
    logger = CSVLogger(tmp_path, name="window", version="")
    trainer = quiet_trainer(
        tmp_path, callbacks=[steps], logger=logger, max_steps=9, limit_val_batches=0, log_every_n_steps=3
    )
    trainer.fit(model, datamodule=data)
    with open(tmp_path / "window" / "metrics.csv") as handle:
        written = {int(row["step"]): row for row in csv.DictReader(handle) if row.get("train/ppl")}
    assert sorted(written) == [2, 5, 8]  # Lightning's step axis is 0-based: the 3rd, 6th and 9th step
    if mlm:
        assert len(set(steps.counts)) > 1  # masked-token counts differ between steps: the weighting matters
    bytes_per_token = data.bytes_per_token("train")
    for window, step in enumerate((2, 5, 8)):
        losses, counts = steps.losses[3 * window : 3 * window + 3], steps.counts[3 * window : 3 * window + 3]
        mean = sum(loss * count for loss, count in zip(losses, counts)) / sum(counts)
        assert float(written[step]["train/ppl"]) == pytest.approx(math.exp(mean), rel=1e-5)
        assert float(written[step]["train/bpb"]) == pytest.approx(mean / math.log(2) / bytes_per_token, rel=1e-5)
        assert float(written[step]["train/loss"]) == pytest.approx(losses[-1], rel=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA memory and a GPU's MFU need a CUDA device")
def test_cuda_memory_and_mfu_on_a_gpu(tmp_path, prepared_dataset):
    model, history = fit(
        tmp_path, prepared_dataset, [Throughput()], accelerator="gpu", devices=1, precision="bf16-mixed"
    )
    last = history[-1]
    assert 0 < last["train/memory_allocated_gib"] <= last["train/memory_peak_gib"] <= last["train/memory_reserved_gib"]
    peak = peak_flops(torch.cuda.get_device_name(), "bf16-mixed")
    if peak is not None:  # a GPU the table knows: MFU over its dense bf16 peak
        expected = flops_per_token(model.model, 64) * last["train/tokens_per_s"] / peak
        assert last["train/mfu"] == pytest.approx(expected, rel=1e-6) and 0 < last["train/mfu"] < 1


def test_the_gpu_checks_probe_times_the_steps_before_its_profiled_ones_and_ranks_their_costs(
    tmp_path, prepared_dataset, monkeypatch
):
    """benchmarks/gpu_probe.Probe, as benchmarks/gpu_check.py loads it: tokens/s over the steps between warm-up
    and the profiled tail, and the profiled steps' top costs (host here; device too on a GPU)."""
    import json

    from tests.e2e.helpers import REPO

    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    from gpu_probe import Probe

    path = tmp_path / "results.jsonl"
    probe = Probe(str(path), "tiny", warmup_steps=2, profile_steps=3)
    fit(tmp_path, prepared_dataset, [probe], max_steps=8)
    (record,) = [json.loads(line) for line in path.read_text().splitlines()]
    assert (probe.start_step, probe.stop_step, record["steps"], record["profiled_steps"]) == (2, 5, 8, 3)
    # The probe rounds tokens/s to a whole number: on a slow or busy CPU (under 500 tokens/s) that is more than 0.1 %.
    expected = 3 * 4 * 64 / (probe.stop_time - probe.start_time)
    assert record["tokens_per_s"] == pytest.approx(expected, rel=1e-3, abs=0.5)
    costs = record["top_host"]
    assert len(costs) == 8 and all(a["ms"] >= b["ms"] > 0 for a, b in zip(costs, costs[1:]))
    assert 0 < sum(c["share"] for c in costs) <= 1.0001 and "ProfilerStep*" not in {c["name"] for c in costs}
    assert any(c["name"].startswith("aten::") for c in costs)  # the model's own operators are profiled
    assert ("top_device" in record) == torch.cuda.is_available()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the asynchronous loss copy needs a CUDA device")
def test_the_guard_watches_a_cuda_loss_without_a_host_device_sync():
    """``watch`` of a CUDA loss queues a copy to pinned memory and an event, never a synchronisation (sync debug
    mode "error" raises on one); the check before the optimizer step then sees the value."""
    from lit_pretrain.callbacks import LossNotFinite, StabilityGuard

    guard = StabilityGuard(warmup_steps=0)
    losses = torch.tensor([2.0, float("nan")], device="cuda")
    torch.cuda.set_sync_debug_mode("error")
    try:
        guard.watch(losses[0] * 1.5, step=0)
        guard.watch(losses[1], step=1)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    with pytest.raises(LossNotFinite, match="train/loss is nan at step 1"):
        guard.on_before_optimizer_step(None, None, None)
    assert guard.seen == 1 and guard.mean == 3.0


def test_a_non_finite_loss_left_pending_when_training_stops_mid_accumulation_is_a_warning():
    """A stop inside an accumulation window (``max_time``) leaves micro-batches whose optimizer step never ran:
    their losses never reached the weights, so a NaN among them warns instead of turning a clean stop into an
    error; finite ones pass silently. ``skip_spikes`` is refused where Lightning cannot skip a batch."""
    import warnings
    from types import SimpleNamespace

    from lit_pretrain.callbacks import StabilityGuard
    from lit_pretrain.errors import ConfigError

    guard = StabilityGuard()
    guard.watch(torch.tensor(5.0), step=7)
    guard.watch(torch.tensor(float("nan")), step=7)
    with pytest.warns(UserWarning, match=r"train/loss was nan at step 7 in a micro-batch whose optimizer step never"):
        guard.on_train_end(None, None)
    assert not guard._pending
    guard.watch(torch.tensor(5.0), step=8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        guard.on_train_end(None, None)

    def trainer(devices: int) -> SimpleNamespace:
        return SimpleNamespace(num_devices=devices, num_nodes=1, strategy=None)

    StabilityGuard(skip_spikes=True).check_runnable(trainer(1))
    StabilityGuard(skip_spikes=False).check_runnable(trainer(2))
    with pytest.raises(ConfigError, match="stability.skip_spikes drops a batch on one process .* not on 2 processes"):
        StabilityGuard(skip_spikes=True).setup(trainer(2), None, "fit")
