"""``python -m lit_pretrain {fit,validate,test} --config configs/X.yaml [--trainer.max_steps 100] ...``
``python -m lit_pretrain plot RUN_DIR... --out run.png`` (:mod:`lit_pretrain.plot`) and
``python -m lit_pretrain estimate --config configs/X.yaml [--gpu h100 --gpus 8 ...]`` (:mod:`lit_pretrain.estimate`).

A thin LightningCLI over :class:`PretrainModule` and :class:`PretrainDataModule`. Besides the Trainer's,
module's and data module's keys it always has:

* ``checkpoint``: :class:`PretrainCheckpoint`, Lightning's ``ModelCheckpoint`` (``--checkpoint.every_n_train_steps``,
  ``--checkpoint.train_time_interval``, ``--checkpoint.save_last``, ``--checkpoint.monitor val/loss`` with
  ``--checkpoint.save_top_k``) plus ``--checkpoint.export_on_end``, writing into ``<run dir>/checkpoints`` so
  ``--ckpt_path last`` finds them;
* ``sample``: :class:`GenerateSample`, printing (and logging as text) a generation for ``--sample.prompt`` or the
  fill-mask predictions for ``--sample.mask_prompt`` every ``--sample.every_n_steps`` and when fit ends;
* ``grad_norm``: :class:`GradientNorm` (``train/grad_norm``, ``train/clip_fraction``, ``--grad_norm.per_block``);
* ``throughput``: :class:`Throughput` (``train/tokens_per_s``, ``train/samples_per_s``, ``train/step_time_s``,
  ``train/tokens_seen``, ``train/mfu`` on known GPUs or with ``--throughput.peak_flops``);
* ``stability``: :class:`StabilityGuard` (stop on a NaN/Inf loss before it reaches the weights, warn about or
  skip loss spikes);
* ``preemption``: :class:`Preemption` (SIGTERM / SIGUSR1: save ``last`` after the current step and stop);
* ``early_stopping``: :class:`PretrainEarlyStopping` (off by default: stop when ``val/loss`` has not improved by
  ``min_delta`` for ``patience`` validations; a resume of a stopped run takes no further step);
* ``progress_bar``: :class:`PretrainProgressBar` (loss, ppl, lr, tokens/s; left out with
  ``--trainer.enable_progress_bar false`` or when ``trainer.callbacks`` brings its own progress bar);
* links ``data.seq_len -> model.seq_len``, ``data.vocab_size -> model.vocab_size``,
  ``data.token_ids -> model.token_ids`` (the tokenizer's special ids) and ``data.description ->
  model.data_description`` (:class:`DataDescription`: everything else the module knows of the data).

The run directory is the TensorBoard logger's ``save_dir/name`` (a fixed ``version: ""``), so a restart with
the same config logs, checkpoints and saves ``config.yaml`` into the same place.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import lightning as L
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import ProgressBar
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from data_prep.cli_errors import OneLineErrors
from data_prep.errors import DataPrepError, DiskFullError
from lit_pretrain.callbacks import (
    GenerateSample,
    GradientNorm,
    LossNotFinite,
    Preemption,
    PretrainCheckpoint,
    PretrainEarlyStopping,
    PretrainProgressBar,
    StabilityGuard,
    Throughput,
)
from lit_pretrain.checkpoint_io import full_disk_cause
from lit_pretrain.data import PretrainDataModule
from lit_pretrain.errors import ConfigError, NoSpaceLeft
from lit_pretrain.module import PretrainModule
from lit_pretrain.resume import check_resume, find_last, restore_interrupted_replacements
from lit_pretrain.run_lock import RunLock
from lit_pretrain.strategies import check_strategy

DEFAULT_LOGGER = {
    "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
    "init_args": {"save_dir": "runs", "name": "default", "version": ""},
}


class OneLineErrorParser(OneLineErrors, LightningArgumentParser):
    """jsonargparse prints the full usage before an error; show only the line that names the culprit (the YAML file
    of a syntax error, the nearest valid key of an unknown one)."""


class PretrainCLI(LightningCLI):
    run_lock: RunLock | None = None
    current: PretrainCLI | None = None  # the instance running, for main() to stop its other processes on an error

    def parse_arguments(self, parser: LightningArgumentParser, args) -> None:
        OneLineErrorParser.argv = sys.argv[1:] if args is None else list(args)  # for errors naming a --config file
        super().parse_arguments(parser, args)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_lightning_class_args(PretrainCheckpoint, "checkpoint")
        parser.set_defaults({"checkpoint.save_last": True, "checkpoint.every_n_train_steps": 500})
        parser.add_lightning_class_args(GenerateSample, "sample")
        parser.add_lightning_class_args(GradientNorm, "grad_norm")
        parser.add_lightning_class_args(Throughput, "throughput")
        parser.add_lightning_class_args(StabilityGuard, "stability")
        parser.add_lightning_class_args(PretrainProgressBar, "progress_bar")
        parser.add_lightning_class_args(Preemption, "preemption")
        parser.add_lightning_class_args(PretrainEarlyStopping, "early_stopping")
        parser.link_arguments("data.seq_len", "model.seq_len")
        # The data module knows its vocabulary size and special-token ids in __init__ (from the manifest or the
        # data_prep config), so the model config, the objective and the sampler all get the tokenizer's own ids.
        parser.link_arguments("data.vocab_size", "model.vocab_size", apply_on="instantiate")
        parser.link_arguments("data.token_ids", "model.token_ids", apply_on="instantiate")
        # Everything else the module, its callbacks and export need to know of the data (tokenizer, bytes per token
        # per split and source, the mixture's sources): one description, completed in the data module's setup.
        parser.link_arguments("data.description", "model.data_description", apply_on="instantiate")

    def _parse_ckpt_path(self) -> None:
        """Lightning 2.6 replaces the ``model`` config with a ``--ckpt_path`` file's hyperparameters at parse time
        (a traceback on a truncated file, and overrides such as ``--model.lr`` silently dropped, but only when
        the path is a file, not for ``last``). Here the config and command line define the run, whatever the
        checkpoint: :meth:`check_resume` then refuses a checkpoint that is unreadable or of another model."""

    def _instantiate_trainer(self, config: dict, callbacks: list) -> L.Trainer:
        """Our progress bar unless the run switches bars off or ``trainer.callbacks`` brings its own (Lightning
        refuses two bars, and a bar with ``enable_progress_bar: false``)."""
        own_bar = any(isinstance(c, ProgressBar) for c in config.get("callbacks") or [])
        if own_bar or config.get("enable_progress_bar") is False:
            callbacks = [c for c in callbacks if not isinstance(c, PretrainProgressBar)]
        return super()._instantiate_trainer(config, callbacks)

    def check_run(self) -> None:
        """Before any work: refuse what the strategy cannot run on this machine, derive gradient accumulation
        from ``data.global_batch_size``."""
        hp = self.model.hparams
        check_strategy(self.trainer.strategy, hp.optimizer, hp.init_from, hp.fp8)
        for callback in self.trainer.callbacks:
            if isinstance(callback, StabilityGuard):
                callback.check_runnable(self.trainer)
        self.datamodule.apply_global_batch_size(self.trainer)

    def apply_horizon(self) -> None:
        """``data.tokens_per_parameter``: derive ``trainer.max_steps`` from the exact parameter count (the model
        on the meta device, as ``estimate`` counts it) and the global batch, and say so."""
        from lit_pretrain.models import count_parameters

        trainer, data = self.trainer, self.datamodule
        if data.tokens_per_parameter is None:
            return
        parameters = count_parameters(self.model.meta_model())
        tokens, steps, per_step = data.horizon(parameters, trainer.world_size, trainer.accumulate_grad_batches)
        replaced = f"; replaces trainer.max_steps {trainer.max_steps}" if trainer.max_steps not in (-1, None) else ""
        if trainer.is_global_zero:
            sys.stderr.write(
                f"lit_pretrain: data.tokens_per_parameter {data.tokens_per_parameter:g} x {parameters:,} parameters = "
                f"{tokens:,.0f} tokens = {steps:,} steps of {per_step:,} tokens{replaced}\n"
            )
        trainer.fit_loop.epoch_loop.max_steps = steps  # what trainer.max_steps reads

    def before_fit(self) -> None:
        self.before_run(self.check_run, self.verify_data, self.apply_horizon, lambda: self.check_resume(fitting=True))

    def before_run(self, *checks) -> None:
        """Lock the run directory (global rank 0), then run ``checks``: a check that refuses the run unlocks it and
        leaves the directory as it was, since nothing else has been written there yet (config.yaml, logs and
        checkpoints are written once the Trainer starts)."""
        PretrainCLI.current = self
        run_directory = self.run_directory()
        local = "://" not in str(self.trainer.log_dir or self.trainer.default_root_dir)  # not an object store
        if self.trainer.is_global_zero and self.subcommand in ("fit", "validate", "test") and local:
            self.run_lock = RunLock(run_directory)
            self.run_lock.acquire()
        try:
            for check in checks:
                check()
        except BaseException:
            if self.run_lock is not None:
                self.run_lock.abandon()
            raise

    def _run_subcommand(self, subcommand: str) -> None:
        # LightningCLI runs before_<subcommand>, the Trainer's method, after_<subcommand>: the run directory stays
        # locked until all of them are done, or one of them raises.
        try:
            super()._run_subcommand(subcommand)
        finally:
            if self.run_lock is not None:
                self.run_lock.release()

    def run_directory(self) -> Path:
        """Where this run writes config.yaml and its logs (the logger's directory, else ``default_root_dir``)."""
        return Path(self.trainer.log_dir or self.trainer.default_root_dir)

    def verify_data(self) -> None:
        """The shards against their manifest, before the run directory is touched (``data.verify``); a dataset not
        prepared yet is checked in ``setup``, after it is prepared."""
        data = self.datamodule
        if hasattr(data, "verify_dataset") and data.prepared:
            try:
                data.verify_dataset(rank=data.hashing_rank(self.trainer))
            except DataPrepError as error:
                raise ConfigError(str(error)) from None

    def checkpoint_directory(self) -> Path:
        callback = self.trainer.checkpoint_callback
        if callback is not None and callback.dirpath:
            return Path(callback.dirpath)
        return Path(self.trainer.log_dir or self.trainer.default_root_dir) / "checkpoints"

    def check_resume(self, fitting: bool = False) -> None:
        """``--ckpt_path``: ``last`` before any checkpoint exists (the first submission of a job that is requeued
        with the same command) starts fresh with one visible line instead of Lightning's warning; ``last`` is
        resolved here to the file Lightning would pick; a truncated, corrupt or other model's checkpoint is
        refused with one line before anything is restored (:mod:`lit_pretrain.resume`)."""
        arguments = self.config_init[self.subcommand]
        ckpt_path = arguments.get("ckpt_path")
        if ckpt_path is None:
            return
        if ckpt_path == "last":
            directory = self.checkpoint_directory()
            last = find_last(directory)
            if last is None and self.subcommand != "fit":
                raise ConfigError(f"--ckpt_path last: no checkpoint in {directory}; run fit first or name a checkpoint")
            if last is None:
                sys.stderr.write(f"lit_pretrain: --ckpt_path last: no checkpoint in {directory} yet; starting fresh\n")
                arguments["ckpt_path"] = None
                return
            arguments["ckpt_path"] = str(last)
        elif ckpt_path in ("best", "hpc", "registry") or "://" in str(ckpt_path):
            return  # Lightning's own lookups and remote paths: left to Lightning
        path = Path(arguments["ckpt_path"])
        if path.parent.is_dir():
            restore_interrupted_replacements(path.parent)
        check_resume(path, self.model, self.datamodule, self.trainer, fitting)

    def before_validate(self) -> None:
        self.before_run(self.check_run, self.verify_data, self.check_resume)

    def before_test(self) -> None:
        self.before_run(self.check_run, self.verify_data, self.check_resume)


def stop_other_processes() -> None:
    """After an error on this process, end the processes Lightning's subprocess launcher started (``--trainer.devices
    N`` without torchrun): Lightning kills them only on Ctrl-C, and an error raised here alone (a full disk during
    rank 0's save, a damaged batch) would leave them waiting in a collective until its timeout. Under torchrun or
    srun the launcher ends the others when this process exits non-zero."""
    from lightning.pytorch.strategies.launchers.subprocess_script import _SubprocessScriptLauncher

    cli = PretrainCLI.current
    launcher = getattr(getattr(getattr(cli, "trainer", None), "strategy", None), "launcher", None)
    if isinstance(launcher, _SubprocessScriptLauncher) and getattr(launcher, "procs", None):
        launcher.kill(signal.SIGKILL)


def main(args: list[str] | None = None) -> None:
    argv = sys.argv[1:] if args is None else list(args)
    if argv[:1] == ["plot"]:  # needs no model or data: its own small parser, same entry point
        from lit_pretrain.plot import main as plot

        return plot(argv[1:])
    if argv[:1] == ["export"]:  # a checkpoint -> a Hugging Face model directory
        from lit_pretrain.export import main as export

        return export(argv[1:])
    if argv[:1] == ["estimate"]:  # the fit config and overrides, plus its own options; no Trainer, no weights
        from lit_pretrain.estimate import main as estimate

        return estimate(argv[1:])
    try:
        PretrainCLI(
            PretrainModule,
            PretrainDataModule,
            parser_class=OneLineErrorParser,
            trainer_defaults={"logger": DEFAULT_LOGGER},
            # A restart into the same run directory rewrites config.yaml instead of refusing to start.
            save_config_kwargs={"overwrite": True},
            # The module builds its own optimizer and schedule (and its model in configure_model, #19110).
            auto_configure_optimizers=False,
            args=args,
        )
    except KeyboardInterrupt:  # Ctrl-C outside training (parsing, preparing, verifying): nothing was training
        sys.stderr.write("\nlit_pretrain: interrupted outside training; the checkpoints written so far are whole\n")
        raise SystemExit(130) from None
    except BaseException as error:
        stop_other_processes()
        code, message = exit_code_and_line(error)
        if code is None:
            raise
        sys.stderr.write(f"error: {message}\n")
        raise SystemExit(code) from None


def exit_code_and_line(error: BaseException) -> tuple[int | None, str]:
    """(exit code, one line) for an error a user can act on; (None, "") for a bug, which keeps its traceback."""
    if isinstance(error, SystemExit):
        return None, ""
    if isinstance(error, (NoSpaceLeft, DiskFullError)):
        return 1, str(error)
    if isinstance(error, (ConfigError, DataPrepError, MisconfigurationException)):
        return 2, str(error)
    if isinstance(error, LossNotFinite):
        return 3, str(error)
    full = full_disk_cause(error)  # a full disk under anything else that writes: the logger, a sample, ...
    if full is not None:
        what = f"writing '{full.filename}'" if full.filename else "writing the run's logs"
        return 1, (
            f"no space left on device: {what} failed; the checkpoints saved before it are intact: free space "
            "(or move the run directory), then resume with --ckpt_path last"
        )
    return None, ""
