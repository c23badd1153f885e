"""``python -m lit_pretrain estimate --config configs/X.yaml [--gpu h100 --gpus 8 --tokens 10e9 --mfu 0.4
--price_per_gpu_hour 3] [--json]``: what a training config costs before it runs.

* parameters: exact, counted on the model built on the meta device (no memory, no weights);
* memory per GPU: weights, gradients, optimizer states and activations, by precision, strategy (single / DDP,
  FSDP, ZeRO 1/2/3, CPU offload), micro-batch, sequence length and activation checkpointing;
* FLOPs per token: :func:`lit_pretrain.models.flops_per_token` (6N + 12·L·H·Q·T, PaLM's convention), the same
  function the throughput callback's MFU divides by;
* time to the token budget at the stated MFU over the GPU's dense peak, GPU hours and cost;
* the compute-optimal token count (Chinchilla: about 20 tokens per parameter, Hoffmann et al. 2022).

Memory conventions (bytes per parameter; N parameters, W data-parallel GPUs):

================  =======  =========  ====================================================================
precision         weights  gradients  optimizer states
================  =======  =========  ====================================================================
32-true, *-mixed  4        4          AdamW 8 (two fp32 moments); Muon 4 on its matrices (one momentum)
bf16-true         2        2          AdamW 4, Muon 2 (states in the parameters' dtype)
DeepSpeed, 16-bit 2        2          12 (fp32 master copy + two moments; DeepSpeed's bf16/fp16 mode)
================  =======  =========  ====================================================================

FSDP and ZeRO-3 divide all three by W, ZeRO-2 gradients and optimizer states, ZeRO-1 optimizer states; FSDP and
ZeRO-3 add a working set of two gathered transformer blocks in the compute dtype (the one computing and the
one prefetched). CPU offload moves optimizer states (and with ZeRO-3 parameter offload the weights) to CPU
memory. Activations per transformer block follow Korthikanti et al. 2022 ("Reducing Activation Recomputation
in Large Transformer Models", eq. 1): ``s·b·h·(14 + mlp + masks + 5·a·s/h)`` bytes in 16-bit compute
(attention 10, the two norms 4), where the ``5·a·s/h`` attention-score term is dropped for fused attention
(``sdpa``, flash, flex), ``mlp`` is ``2 + 4·f/h`` for a GELU MLP (18 with ``f = 4h``) or ``2 + 8·f/h`` for a
gated one, and ``masks`` is 2 with dropout (two 1-byte masks), else 0: 34 for the paper's GPT block;
fp32 compute doubles it; activation checkpointing keeps only each block's 16-bit input plus one block's full
set during its recomputation. The output head's logits add ``b·s·V`` × (2 + 4 + 4) bytes (16-bit logits, their
fp32 copy for the loss and its gradient; 12 in fp32), over the masked positions only for MLM's position-wise
head. Not counted: the CUDA context (~0.5 GiB), allocator fragmentation, communication buffers.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import warnings
from dataclasses import asdict, dataclass

from data_prep.errors import DataPrepError
from lit_pretrain.callbacks.throughput import PEAK_TFLOPS, precision_family
from lit_pretrain.errors import ConfigError

GIB = 2**30
CHINCHILLA_TOKENS_PER_PARAMETER = 20
# --gpu names -> rows of the peak table, and the memory of the common variant (GiB).
GPUS = {
    "a100": ("A100", 80),
    "h100": ("H100 SXM", 80),
    "h100-sxm": ("H100 SXM", 80),
    "h100-pcie": ("H100 PCIe", 80),
    "h100-nvl": ("H100 NVL", 94),
    "h200": ("H200", 141),
    "l4": ("L4", 24),
    "l40s": ("L40S", 48),
}


@dataclass
class Layout:
    """What decides memory per GPU, read from a training config."""

    strategy: str  # single, ddp, fsdp, zero1, zero2, zero3
    precision: str  # the Trainer's precision string
    world: int  # data-parallel GPUs
    micro_batch: int
    seq_len: int
    accumulation: int
    activation_checkpointing: bool
    optimizer: str  # adamw or muon
    offload_optimizer: bool = False
    offload_parameters: bool = False
    fused_attention: bool = True
    mlm_fraction: float | None = None  # share of positions the MLM head computes logits for


@dataclass
class Memory:
    weights: float
    gradients: float
    optimizer_states: float
    activations: float
    cpu_offloaded: float

    @property
    def total(self) -> float:
        return self.weights + self.gradients + self.optimizer_states + self.activations


def strategy_layout(strategy) -> tuple[str, bool, bool]:
    """(kind, optimizer offloaded, parameters offloaded) of a Trainer strategy object or string."""
    from lightning.pytorch.strategies import DDPStrategy, DeepSpeedStrategy, FSDPStrategy, ModelParallelStrategy

    if isinstance(strategy, DeepSpeedStrategy):
        zero = strategy.config.get("zero_optimization", {})
        offload = lambda key: (zero.get(key) or {}).get("device", "none") not in ("none", None)  # noqa: E731
        return f"zero{zero.get('stage', 0)}", offload("offload_optimizer"), offload("offload_param")
    if isinstance(strategy, (ModelParallelStrategy, FSDPStrategy)):
        return "fsdp", False, False
    if isinstance(strategy, DDPStrategy):
        return "ddp", False, False
    name = str(strategy or "auto").lower()
    if name.startswith("deepspeed_stage_"):
        stage = name.removeprefix("deepspeed_stage_")
        return f"zero{stage[0]}", "offload" in stage, stage.endswith("offload") and stage[0] == "3"
    if name.startswith("fsdp"):
        return "fsdp", False, False
    return "ddp", False, False


def parameter_bytes(precision: str, deepspeed: bool) -> tuple[int, int]:
    """(bytes per weight, bytes per gradient) as the strategy keeps them."""
    sixteen = precision_family(precision) in ("bf16", "fp16")
    if deepspeed and sixteen:
        return 2, 2
    if precision.startswith("bf16-true") or precision.startswith("16-true"):
        return 2, 2
    return 4, 4


def optimizer_bytes(model, layout: Layout, deepspeed: bool) -> float:
    """Bytes of optimizer state for the whole model (before sharding)."""
    from lit_pretrain.optim import split_parameters

    groups = split_parameters(model)
    count = {name: sum(p.numel() for p in params) for name, params in groups.items()}
    total = sum(count.values())
    sixteen = precision_family(layout.precision) in ("bf16", "fp16")
    if deepspeed and sixteen:
        return 12.0 * total  # fp32 master weights + two fp32 moments
    state = 2 if layout.precision.startswith(("bf16-true", "16-true")) else 4
    if layout.optimizer == "muon":  # one momentum on the hidden matrices, AdamW's two moments on the rest
        return state * count["matrices"] + 2 * state * (total - count["matrices"])
    return 2 * state * total


def block_activation_bytes(config, layout: Layout) -> float:
    """Stored activations of one transformer block for one micro-batch (Korthikanti et al. 2022, eq. 1)."""
    s, b = layout.seq_len, layout.micro_batch
    h = config.hidden_size
    heads = config.num_attention_heads
    f = getattr(config, "intermediate_size", None) or getattr(config, "n_inner", None) or 4 * h
    gated = config.model_type in ("llama", "mistral", "qwen2", "qwen3", "gemma")  # gate and up projections
    mlp = 2 + (8 if gated else 4) * f / h  # the MLP's input, its up (and gate) outputs and the activation's output
    attention = 10.0 + 4.0  # QKV input, Q, K, V, the output projection's input; the two norms' inputs
    if not layout.fused_attention:
        attention += 5.0 * heads * s / h  # scores, softmax, dropout mask and output: (a, s, s) per sequence
    dropout = max(
        float(getattr(config, key, 0.0) or 0.0)
        for key in ("resid_pdrop", "hidden_dropout_prob", "hidden_dropout", "dropout")
    )
    masks = 2.0 if dropout > 0 else 0.0  # one byte per element after attention and after the MLP
    per_block = s * b * h * (attention + mlp + masks)  # the paper's 34 s b h for a GPT block with a 4h MLP
    return per_block * (2 if precision_family(layout.precision) == "fp32" else 1)


def estimate_memory(model, layout: Layout) -> Memory:
    """Memory per GPU of training ``model`` (built on the meta device) under ``layout``."""
    from lit_pretrain.parallel import transformer_blocks

    deepspeed = layout.strategy.startswith("zero")
    n = sum(p.numel() for p in model.parameters() if p.requires_grad)
    weight_b, grad_b = parameter_bytes(layout.precision, deepspeed)
    weights, gradients = float(weight_b * n), float(grad_b * n)
    optimizer = optimizer_bytes(model, layout, deepspeed)
    world = max(1, layout.world)
    stage = {"fsdp": 3, "zero3": 3, "zero2": 2, "zero1": 1}.get(layout.strategy, 0)
    if stage >= 1:
        optimizer /= world
    if stage >= 2:
        gradients /= world
    if stage >= 3:
        weights /= world
        blocks = transformer_blocks(model)
        largest = max((sum(p.numel() for p in block.parameters()) for block in blocks), default=0)
        compute = 4 if precision_family(layout.precision) == "fp32" else 2
        weights += 2 * largest * compute  # two gathered blocks: the one computing and the one prefetched
    offloaded = 0.0
    if layout.offload_optimizer:
        offloaded += optimizer
        optimizer = 0.0
    if layout.offload_parameters and layout.strategy == "zero3":
        offloaded += weights
        weights = 0.0
    config = model.config
    layers = config.num_hidden_layers
    block = block_activation_bytes(config, layout)
    sixteen_bit_input = 2 * layout.seq_len * layout.micro_batch * config.hidden_size
    if layout.activation_checkpointing:
        stored = layers * sixteen_bit_input * (2 if precision_family(layout.precision) == "fp32" else 1) + block
    else:
        stored = layers * block
    vocab = model.get_output_embeddings().weight.shape[0] if model.get_output_embeddings() is not None else 0
    positions = layout.seq_len * layout.micro_batch * (layout.mlm_fraction or 1.0)
    logits = positions * vocab * (12 if precision_family(layout.precision) == "fp32" else 10)
    return Memory(weights, gradients, optimizer, stored + logits, offloaded)


@dataclass
class Estimate:
    parameters: int
    flops_per_token: float
    flops_convention: str
    tokens: float
    tokens_source: str
    global_batch_tokens: int
    steps: int
    total_flops: float
    total_flops_6nd: float
    gpu: str
    gpus: int
    gpu_memory_gib: float
    peak_flops_per_gpu: float
    mfu: float
    hours: float
    gpu_hours: float
    price_per_gpu_hour: float | None
    cost: float | None
    chinchilla_tokens: float
    strategy: str
    precision: str
    micro_batch: int
    seq_len: int
    accumulation: int
    activation_checkpointing: bool
    memory_per_gpu_gib: dict
    cpu_offloaded_gib: float
    fits: bool


def compute(model, layout: Layout, gpu: str, gpus: int, tokens: float | None, max_steps: int | None, mfu: float,
            price: float | None, horizon: float | None = None) -> Estimate:  # fmt: skip
    """``tokens``: --tokens; else ``horizon`` (data.tokens_per_parameter) x parameters; else max_steps x global
    batch; else Chinchilla's 20 per parameter."""
    from lit_pretrain.models import count_parameters, flops_per_token

    family, memory_gib = GPUS[gpu]
    peak = PEAK_TFLOPS[family].get(precision_family(layout.precision))
    if peak is None:
        raise ConfigError(f"--gpu {gpu}: no {layout.precision} peak in the table; use another --gpu or precision")
    parameters = count_parameters(model)
    per_token = flops_per_token(model, layout.seq_len)
    global_tokens = layout.micro_batch * layout.seq_len * layout.accumulation * gpus
    if tokens is not None:
        source = "--tokens"
    elif horizon is not None:
        tokens, source = float(horizon * parameters), f"data.tokens_per_parameter ({horizon:g} per parameter)"
    elif max_steps and max_steps > 0:
        tokens, source = float(max_steps * global_tokens), "trainer.max_steps x global batch"
    else:
        tokens, source = float(CHINCHILLA_TOKENS_PER_PARAMETER * parameters), "Chinchilla (20 per parameter)"
    steps = math.ceil(tokens / global_tokens)
    total = per_token * tokens
    seconds = total / (gpus * peak * 1e12 * mfu)
    memory = estimate_memory(model, layout)
    breakdown = {
        "weights": memory.weights / GIB,
        "gradients": memory.gradients / GIB,
        "optimizer_states": memory.optimizer_states / GIB,
        "activations": memory.activations / GIB,
        "total": memory.total / GIB,
    }
    return Estimate(
        parameters=parameters,
        flops_per_token=per_token,
        flops_convention="6N + 12*L*H*Q*T per token, forward + backward (PaLM, appendix B); recomputation not counted",
        tokens=tokens,
        tokens_source=source,
        global_batch_tokens=global_tokens,
        steps=steps,
        total_flops=total,
        total_flops_6nd=6.0 * parameters * tokens,
        gpu=gpu,
        gpus=gpus,
        gpu_memory_gib=memory_gib,
        peak_flops_per_gpu=peak * 1e12,
        mfu=mfu,
        hours=seconds / 3600,
        gpu_hours=seconds / 3600 * gpus,
        price_per_gpu_hour=price,
        cost=None if price is None else seconds / 3600 * gpus * price,
        chinchilla_tokens=float(CHINCHILLA_TOKENS_PER_PARAMETER * parameters),
        strategy=layout.strategy + ("+offload" if layout.offload_optimizer else ""),
        precision=layout.precision,
        micro_batch=layout.micro_batch,
        seq_len=layout.seq_len,
        accumulation=layout.accumulation,
        activation_checkpointing=layout.activation_checkpointing,
        memory_per_gpu_gib=breakdown,
        cpu_offloaded_gib=memory.cpu_offloaded / GIB,
        fits=breakdown["total"] <= memory_gib,
    )


def table(result: Estimate) -> str:
    def count(value: float) -> str:
        for unit, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("k", 1e3)):
            if abs(value) >= scale:
                return f"{value / scale:.3g}{unit}"
        return f"{value:.3g}"

    memory = result.memory_per_gpu_gib
    rows = [
        ("parameters", f"{result.parameters:,} ({count(result.parameters)})"),
        ("FLOPs per token", f"{result.flops_per_token:.4g}  ({result.flops_convention})"),
        (
            "layout",
            f"{result.strategy} on {result.gpus} x {result.gpu}, {result.precision}, micro-batch "
            f"{result.micro_batch} x {result.seq_len} tokens, accumulation {result.accumulation}, activation "
            f"checkpointing {'on' if result.activation_checkpointing else 'off'}",
        ),  # fmt: skip
        (
            "memory per GPU",
            f"{memory['total']:.2f} GiB of {result.gpu_memory_gib} GiB ({'fits' if result.fits else 'does NOT fit'})",
        ),  # fmt: skip
        ("  weights", f"{memory['weights']:.2f} GiB"),
        ("  gradients", f"{memory['gradients']:.2f} GiB"),
        ("  optimizer states", f"{memory['optimizer_states']:.2f} GiB"),
        ("  activations", f"{memory['activations']:.2f} GiB"),
    ]
    if result.cpu_offloaded_gib:
        rows.append(("  offloaded to CPU", f"{result.cpu_offloaded_gib:.2f} GiB"))
    rows += [
        (
            "tokens",
            f"{count(result.tokens)} ({result.tokens_source}); {result.steps:,} steps of "
            f"{result.global_batch_tokens:,} tokens",
        ),  # fmt: skip
        ("training FLOPs", f"{result.total_flops:.3g} (6ND alone: {result.total_flops_6nd:.3g})"),
        (
            "time",
            f"{result.hours:,.1f} h at MFU {result.mfu:.0%} of {result.peak_flops_per_gpu / 1e12:g} TFLOP/s "
            f"per GPU ({result.gpu_hours:,.0f} GPU hours)",
        ),  # fmt: skip
    ]
    if result.cost is not None:
        rows.append(("cost", f"{result.cost:,.0f} at {result.price_per_gpu_hour:g} per GPU hour"))
    rows.append(("compute-optimal tokens", f"{count(result.chinchilla_tokens)} (Chinchilla: 20 per parameter)"))
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


class _ConfigOnlyCLI:
    """LightningCLI's parser and instantiation of the model and data module from the same config and overrides
    ``fit`` takes, without a Trainer (a GPU config must be estimable on a laptop)."""

    @staticmethod
    def load(args: list[str]):
        from lit_pretrain.cli import DEFAULT_LOGGER, OneLineErrorParser, PretrainCLI
        from lit_pretrain.data import PretrainDataModule
        from lit_pretrain.module import PretrainModule

        class EstimateCLI(PretrainCLI):
            def instantiate_trainer(self, **kwargs):
                return None

        return EstimateCLI(
            PretrainModule,
            PretrainDataModule,
            parser_class=OneLineErrorParser,
            trainer_defaults={"logger": DEFAULT_LOGGER},
            save_config_callback=None,
            auto_configure_optimizers=False,
            run=False,
            args=args,
        )


def from_config(args: list[str]) -> tuple[object, Layout, int | None, int, object]:
    """(model on the meta device, layout, trainer.max_steps, devices x nodes, data module) of a training config."""
    cli = _ConfigOnlyCLI.load(args)
    trainer = cli.config["trainer"]
    strategy_object = cli.config_init["trainer"].get("strategy")
    module, data = cli.model, cli.datamodule
    kind, offload_optimizer, offload_parameters = strategy_layout(strategy_object)
    model = module.meta_model()
    devices = trainer.get("devices")
    devices = devices if isinstance(devices, int) else len(devices) if isinstance(devices, list) else 1
    world = max(1, devices) * max(1, trainer.get("num_nodes") or 1)
    hp = module.hparams
    layout = Layout(
        strategy=kind,
        precision=str(trainer.get("precision") or "32-true"),
        world=world,
        micro_batch=data.batch_size,
        seq_len=data.seq_len,
        accumulation=trainer.get("accumulate_grad_batches") or 1,
        activation_checkpointing=bool(hp.gradient_checkpointing),
        optimizer=hp.optimizer,
        offload_optimizer=offload_optimizer,
        offload_parameters=offload_parameters,
        fused_attention=hp.attn_implementation != "eager",
        mlm_fraction=hp.mlm_probability if hp.objective == "mlm" and kind != "fsdp" else None,
    )
    return model, layout, trainer.get("max_steps"), world, data


def main(argv: list[str]) -> None:
    warnings.filterwarnings("ignore", message=r"LightningCLI's args parameter is intended")  # we pass the rest on
    parser = argparse.ArgumentParser(
        prog="python -m lit_pretrain estimate",
        description=__doc__.splitlines()[0],
        epilog="Every other option (--config, --model.*, --data.*, --trainer.*) is read as by fit.",
    )
    parser.add_argument("--gpu", default="h100", help=f"one of {', '.join(GPUS)} (default h100)")
    parser.add_argument("--gpus", type=int, default=None, help="GPUs in all (default: trainer devices x nodes)")
    parser.add_argument("--tokens", type=float, default=None, help="token budget (default: trainer.max_steps)")
    parser.add_argument("--mfu", type=float, default=0.4, help="model FLOPs utilisation to assume (default 0.4)")
    parser.add_argument("--price_per_gpu_hour", type=float, default=None, help="for the cost line")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    options, rest = parser.parse_known_args(argv)
    try:
        gpu = options.gpu.lower()
        if gpu not in GPUS:
            raise ConfigError(f"--gpu '{options.gpu}' is unknown; use one of {', '.join(GPUS)}")
        if not 0 < options.mfu <= 1:
            raise ConfigError(f"--mfu {options.mfu} must be in (0, 1], e.g. 0.4")
        if options.gpus is not None and options.gpus < 1:
            raise ConfigError(f"--gpus {options.gpus} must be at least 1")
        if options.tokens is not None and options.tokens <= 0:
            raise ConfigError(f"--tokens {options.tokens:g} must be positive, e.g. 10e9")
        model, layout, max_steps, world, data = from_config(rest)
        gpus = options.gpus or world
        layout.world = gpus
        layout.accumulation = data.accumulation(gpus, 1, layout.accumulation)  # with data.global_batch_size
        result = compute(model, layout, gpu, gpus, options.tokens, max_steps, options.mfu, options.price_per_gpu_hour,
                         data.tokens_per_parameter)  # fmt: skip
    except (ConfigError, DataPrepError) as error:
        sys.stderr.write(f"error: {error}\n")
        raise SystemExit(2) from None
    print(json.dumps(asdict(result), indent=1) if options.json else table(result))
