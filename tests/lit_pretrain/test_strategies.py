"""Strategy presets, precision, memory savers and the checks that refuse what cannot run, in process."""

from __future__ import annotations

import copy

import lightning as L
import pytest
import torch
from lightning.pytorch.strategies import DDPStrategy, DeepSpeedStrategy
from transformers import AutoModelForCausalLM

from lit_pretrain import PretrainDataModule, PretrainModule
from lit_pretrain.cli import PretrainCLI
from lit_pretrain.errors import ConfigError
from lit_pretrain.models import build_config, build_model
from lit_pretrain.optim import build_optimizer
from lit_pretrain.parallel import clip_by_global_norm, transformer_blocks
from lit_pretrain.strategies import FSDP2Strategy, check_strategy, convert_to_fp8
from tests.conftest import quiet_trainer
from tests.e2e.helpers import REPO, make_project

PRESETS = {
    "ddp.yaml": (DDPStrategy, None),
    "fsdp.yaml": (FSDP2Strategy, None),
    "deepspeed_zero1.yaml": (DeepSpeedStrategy, {"stage": 1}),
    "deepspeed_zero2.yaml": (DeepSpeedStrategy, {"stage": 2}),
    "deepspeed_zero3.yaml": (DeepSpeedStrategy, {"stage": 3}),
    "deepspeed_zero3_offload.yaml": (DeepSpeedStrategy, {"stage": 3, "offload": "cpu"}),
}


@pytest.fixture(scope="module")
def project(tmp_path_factory, stdlib_corpus):
    return make_project(tmp_path_factory.mktemp("presets"), stdlib_corpus)


def cli(project, *args: str) -> PretrainCLI:
    """The CLI's objects as `fit --config tiny.yaml ARGS` would build them, without running (nothing prepared)."""
    import os
    import sys

    cwd, argv = os.getcwd(), sys.argv
    os.chdir(project)
    sys.argv = argv[:1]  # pytest's own arguments are not the CLI's
    try:
        return PretrainCLI(
            PretrainModule,
            PretrainDataModule,
            run=False,
            auto_configure_optimizers=False,
            args=["--config", "tiny.yaml", *args],
        )
    finally:
        os.chdir(cwd)
        sys.argv = argv


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_each_strategy_preset_builds_the_intended_strategy(project, preset):
    expected_type, zero = PRESETS[preset]
    strategy = cli(project, "--config", str(REPO / "configs/strategy" / preset)).trainer.strategy
    assert type(strategy) is expected_type
    if isinstance(strategy, FSDP2Strategy):
        assert (strategy.param_dtype, strategy.reduce_dtype, strategy.reshard_after_forward) == (
            "auto",
            "float32",
            True,
        )
        assert strategy._save_distributed_checkpoint and strategy._tensor_parallel_size == 1
    if zero is not None:
        optimization = strategy.config["zero_optimization"]
        assert optimization["stage"] == zero["stage"]
        offload = zero.get("offload")
        assert optimization.get("offload_optimizer", {}).get("device") == offload
        assert optimization.get("offload_param", {}).get("device") == offload


def test_deepspeed_refuses_muon_and_zero3_init_from(project, monkeypatch):
    strategy = cli(project, "--config", str(REPO / "configs/strategy/deepspeed_zero3.yaml")).trainer.strategy
    with pytest.raises(ConfigError, match="runs on CUDA GPUs only"):
        check_strategy(strategy, "adamw", None, False)  # this machine has no GPU
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # past the GPU check, as on a GPU machine
    with pytest.raises(
        ConfigError, match="model.optimizer muon cannot run under DeepSpeedStrategy.*--model.optimizer adamw"
    ):
        check_strategy(strategy, "muon", None, False)
    with pytest.raises(ConfigError, match="model.init_from under DeepSpeed ZeRO-3"):
        check_strategy(strategy, "adamw", "/some/model", False)
    check_strategy(strategy, "adamw", None, False)  # what it can run passes


def test_fp8_is_refused_without_a_capable_gpu(monkeypatch):
    with pytest.raises(ConfigError, match="model.fp8 needs a CUDA GPU.*--model.fp8 false"):
        check_strategy(None, "adamw", None, True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (8, 0))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "NVIDIA A100-SXM4-80GB")
    model = build_model(build_config("llama-tiny", None, 128), AutoModelForCausalLM)
    with pytest.raises(ConfigError, match="A100.* has 8.0; set --model.fp8 false"):
        convert_to_fp8(model)


def test_global_batch_size_derives_accumulation_or_names_what_to_change(tmp_path, prepared_dataset):
    data = PretrainDataModule(
        dataset_dir=str(prepared_dataset), prepare_config=None, batch_size=4, global_batch_size=32
    )
    assert data.accumulation(devices=2, nodes=2) == 2
    assert data.accumulation(devices=1, nodes=1) == 8
    with pytest.raises(
        ConfigError,
        match=r"data.global_batch_size 32 is not a multiple of data.batch_size 4 x 3 devices x 1 nodes = 12",
    ):
        data.accumulation(devices=3, nodes=1)
    with pytest.raises(ConfigError, match="trainer.accumulate_grad_batches 4 disagrees with data.global_batch_size 32"):
        data.accumulation(devices=1, nodes=1, configured=4)
    unset = PretrainDataModule(dataset_dir=str(prepared_dataset), prepare_config=None, batch_size=4)
    assert unset.accumulation(devices=8, nodes=1, configured=3) == 3
    # Driven from Python: the Trainer's accumulation is set before the first step.
    model = PretrainModule(preset="gpt2-tiny", vocab_size=data.vocab_size, seq_len=256, warmup_steps=1)
    trainer = quiet_trainer(tmp_path, max_steps=1, limit_val_batches=0)
    trainer.fit(model, datamodule=data)
    assert trainer.accumulate_grad_batches == 8


@pytest.mark.parametrize(
    "precision, dtype", [("32-true", torch.float32), ("bf16-mixed", torch.float32), ("bf16-true", torch.bfloat16)]
)
def test_precisions_train_on_cpu(tmp_path, prepared_dataset, precision, dtype):
    L.seed_everything(0)
    data = PretrainDataModule(dataset_dir=str(prepared_dataset), prepare_config=None, seq_len=64, batch_size=8)
    model = PretrainModule(preset="gpt2-tiny", vocab_size=data.vocab_size, seq_len=64, lr=3e-3, warmup_steps=2)
    trainer = quiet_trainer(
        tmp_path,
        max_steps=12,
        limit_val_batches=4,
        val_check_interval=12,
        precision=precision,
        gradient_clip_val=1.0,
        check_val_every_n_epoch=None,
    )
    trainer.fit(model, datamodule=data)
    assert next(model.model.parameters()).dtype == dtype
    loss = trainer.callback_metrics["val/loss"].item()
    assert loss < torch.log(torch.tensor(512.0)).item() - 0.3  # learnt something, finite


@pytest.mark.skipif(not torch.cuda.is_available(), reason="16-mixed (fp16 autocast with loss scaling) needs a CUDA GPU")
def test_fp16_mixed_trains_with_loss_scaling(tmp_path, prepared_dataset):
    data = PretrainDataModule(dataset_dir=str(prepared_dataset), prepare_config=None, seq_len=64, batch_size=8)
    model = PretrainModule(preset="gpt2-tiny", vocab_size=data.vocab_size, seq_len=64, lr=3e-3, warmup_steps=2)
    trainer = quiet_trainer(tmp_path, max_steps=12, limit_val_batches=4, precision="16-mixed", gradient_clip_val=1.0)
    trainer.fit(model, datamodule=data)
    assert trainer.precision_plugin.scaler is not None
    assert torch.isfinite(trainer.callback_metrics["val/loss"])


def test_gradient_checkpointing_recomputes_blocks_and_changes_no_gradient():
    torch.manual_seed(0)
    input_ids = torch.randint(0, 128, (2, 32))
    plain = PretrainModule(preset="gpt2-tiny", vocab_size=128, seq_len=32)
    checkpointed = PretrainModule(preset="gpt2-tiny", vocab_size=128, seq_len=32, gradient_checkpointing=True)
    grads, calls = [], []
    for module in (plain, checkpointed):
        module.configure_model()
        module.train()  # as the Trainer does before fitting (transformers recomputes only in training mode)
        count = [0]
        for block in transformer_blocks(module.model):  # a module inside each block's checkpointed forward
            inner = next(block.children())
            inner.register_forward_hook(lambda *args, count=count: count.__setitem__(0, count[0] + 1))
        loss_sum, tokens = module.objective.loss(module.model, {"input_ids": input_ids})
        (loss_sum / tokens).backward()
        grads.append([p.grad for p in module.model.parameters()])
        calls.append(count[0])
    blocks = len(transformer_blocks(plain.model))
    assert calls == [blocks, 2 * blocks]  # each block's forward runs again in backward
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b)


def test_compile_compiles_the_inner_model_in_place():
    module = PretrainModule(preset="gpt2-tiny", vocab_size=128, seq_len=32, compile=True)
    module.configure_model()
    assert module.model._compiled_call_impl is not None  # nn.Module.compile: compiled, not wrapped
    assert all("_orig_mod" not in key for key in module.state_dict())


def test_clip_by_global_norm_scales_all_gradients_together():
    parameters = [torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.zeros(4))]
    parameters[0].grad = torch.tensor([3.0, 0.0, 0.0])
    parameters[1].grad = torch.tensor([0.0, 4.0, 0.0, 0.0])
    norm = clip_by_global_norm(parameters, max_norm=1.0)
    assert norm.item() == pytest.approx(5.0)
    assert parameters[0].grad.tolist() == pytest.approx([0.6, 0, 0], abs=1e-6)
    assert parameters[1].grad.tolist() == pytest.approx([0, 0.8, 0, 0], abs=1e-6)
    assert clip_by_global_norm(parameters, max_norm=10.0).item() == pytest.approx(1.0)  # below: unchanged
    assert parameters[1].grad.tolist() == pytest.approx([0, 0.8, 0, 0], abs=1e-6)


def test_deepspeed_cpu_adam_takes_torch_adamw_steps():
    """ZeRO offload steps with DeepSpeed's CPU Adam built from our groups: the same update as torch's AdamW
    (within float32 rounding). Builds DeepSpeed's CPU op on first use (about a minute, then cached)."""
    pytest.importorskip("deepspeed")
    ours = build_model(build_config("gpt2-tiny", None, vocab_size=50), AutoModelForCausalLM, seed=1)
    reference = copy.deepcopy(ours)
    # A weight decay large enough that dropping it (or applying it to the wrong group) moves weights by more than
    # the tolerance; CPU Adam's vectorised float32 arithmetic differs from torch's by ~1e-5 after 3 steps.
    offloaded = build_optimizer(ours, "adamw", 3e-3, 10.0, (0.9, 0.95), 1e-8, 0.02, 0.95, cpu_offload=True)
    plain = build_optimizer(reference, "adamw", 3e-3, 10.0, (0.9, 0.95), 1e-8, 0.02, 0.95)
    assert type(offloaded).__name__ == "DeepSpeedCPUAdam"
    assert [g["weight_decay"] for g in offloaded.param_groups] == [10.0, 0.0]
    generator = torch.Generator().manual_seed(0)
    for _ in range(3):
        input_ids = torch.randint(0, 50, (2, 16), generator=generator)
        for model, optimizer in ((ours, offloaded), (reference, plain)):
            model(input_ids=input_ids, labels=input_ids).loss.backward()
            optimizer.step()
            optimizer.zero_grad()
    for a, b in zip(ours.parameters(), reference.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-4)


@pytest.mark.skipif(
    not torch.cuda.is_available() or torch.cuda.get_device_capability() < (8, 9),
    reason="FP8 training needs a CUDA GPU with compute capability >= 8.9 (H100, H200, L4, L40S)",
)
def test_fp8_trains_a_llama_with_torchao_linears(tmp_path, prepared_dataset):
    pytest.importorskip("torchao")
    data = PretrainDataModule(dataset_dir=str(prepared_dataset), prepare_config=None, seq_len=64, batch_size=16)
    keys = {"hidden_size": 128, "intermediate_size": 256, "num_attention_heads": 4, "num_key_value_heads": 2}
    model = PretrainModule(preset="llama-tiny", config=keys, vocab_size=data.vocab_size, seq_len=64, fp8=True)
    trainer = quiet_trainer(tmp_path, max_steps=10, limit_val_batches=2, precision="bf16-mixed", val_check_interval=10)
    trainer.fit(model, datamodule=data)
    assert any(type(m).__name__ == "Float8Linear" for m in model.model.modules())
    assert torch.isfinite(trainer.callback_metrics["val/loss"])


def test_fsdp_shards_in_bf16_and_reduces_gradients_in_fp32_under_bf16_mixed(tmp_path):
    """The policy each fully_shard unit gets from fsdp.yaml's defaults (param_dtype auto, reduce_dtype float32)."""
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        strategy = FSDP2Strategy()
        strategy._device_mesh = init_device_mesh("cpu", (1,), mesh_dim_names=("data_parallel",))
        for precision, param_dtype in (("bf16-mixed", torch.bfloat16), ("32-true", None)):
            module = torch.nn.Linear(8, 8)
            strategy.shard_function(precision)(module)
            policy = module._get_fsdp_state()._mp_policy
            assert (policy.param_dtype, policy.reduce_dtype) == (param_dtype, torch.float32)
            assert next(module.parameters()).dtype == torch.float32  # sharded masters stay fp32
    finally:
        dist.destroy_process_group()
