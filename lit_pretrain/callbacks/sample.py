"""Print and log what the model makes of a fixed prompt every ``every_n_steps`` optimizer steps and when training
ends: a generated continuation for a causal LM, the top predictions for each masked position for a masked LM.

Logged as text under the tag ``samples/clm`` or ``samples/mlm``: TensorBoard's text tab, a W&B table row, an MLflow
artifact ``samples/step_NNNNNN.txt``; CSV has no text column, so there the sample is only printed."""

from __future__ import annotations

import lightning as L
import torch

from data_prep.tokens.tokenizer import load_tokenizer

MASK_PLACEHOLDER = "<mask>"


class GenerateSample(L.Callback):
    """Every ``every_n_steps`` optimizer steps and at the end of ``fit``, sample from the model with the prepared dataset's tokenizer and special ids
    (``pl_module.token_ids``: generation stops at the tokenizer's own end of text, masks use its mask token).

    Args:
        prompt: Text a causal LM continues.
        max_new_tokens: Tokens to generate.
        temperature: Sampling temperature; 0 means greedy decoding.
        top_k: Sample only among the k most likely tokens (with temperature > 0).
        seed: Seed for sampling, so a given checkpoint always prints the same sample.
        mask_prompt: Text for a masked LM; each ``<mask>`` becomes the tokenizer's mask token.
        fill_top_k: Predictions shown per masked position.
        every_n_steps: Optimizer steps between samples; 0 samples only when fit ends.
        enabled: False switches the sample off (``--sample.enabled false``), e.g. for benchmarks.
    """

    def __init__(
        self,
        prompt: str = "def fibonacci(n):",
        max_new_tokens: int = 96,
        temperature: float = 0.8,
        top_k: int = 50,
        seed: int = 0,
        mask_prompt: str = "for index in <mask>(len(items)):\n    <mask>.append(index)",
        fill_top_k: int = 5,
        every_n_steps: int = 0,
        enabled: bool = True,
    ) -> None:
        self.enabled, self.every_n_steps = enabled, max(0, every_n_steps)
        self.sampled_at: list[int] = []  # optimizer steps a sample was taken at, in this process
        self.prompt, self.max_new_tokens = prompt, max_new_tokens
        self.temperature, self.top_k, self.seed = temperature, top_k, seed
        self.mask_prompt, self.fill_top_k = mask_prompt, fill_top_k
        self.last_sample: str | None = None
        self.last_predictions: list[list[tuple[str, float]]] | None = None

    @torch.no_grad()
    def generate(self, pl_module: L.LightningModule, tokenizer_path) -> str:
        tokenizer = load_tokenizer(tokenizer_path)
        prompt_ids = tokenizer.encode(self.prompt, add_special_tokens=False).ids
        input_ids = torch.tensor([prompt_ids], device=pl_module.device)
        model = pl_module.model
        eos = pl_module.token_ids.get("eos_token_id", pl_module.token_ids.get("end_of_text_id", 0))
        was_training = model.training
        model.eval()
        generator_state = torch.random.get_rng_state()
        torch.manual_seed(self.seed)
        try:
            sampling = self.temperature > 0
            output = model.generate(
                input_ids,
                attention_mask=torch.ones_like(input_ids),
                max_new_tokens=self.max_new_tokens,
                do_sample=sampling,
                temperature=self.temperature if sampling else None,
                top_k=self.top_k if sampling else None,
                top_p=None,
                eos_token_id=eos,
                pad_token_id=pl_module.token_ids.get("pad_token_id", eos),
            )
        finally:
            torch.random.set_rng_state(generator_state)
            model.train(was_training)
        return tokenizer.decode(output[0].tolist(), skip_special_tokens=False)

    @torch.no_grad()
    def fill_mask(self, pl_module: L.LightningModule, tokenizer_path) -> tuple[str, list[list[tuple[str, float]]]]:
        """(printable text, per masked position the ``fill_top_k`` (token, probability) pairs)."""
        tokenizer = load_tokenizer(tokenizer_path)
        mask_id = pl_module.token_ids["mask_token_id"]
        text = self.mask_prompt.replace(MASK_PLACEHOLDER, tokenizer.id_to_token(mask_id))
        ids = tokenizer.encode(text, add_special_tokens=False).ids
        input_ids = torch.tensor([ids], device=pl_module.device)
        positions = (input_ids[0] == mask_id).nonzero().flatten()
        if len(positions) == 0:
            return f"(no {MASK_PLACEHOLDER} in sample.mask_prompt {self.mask_prompt!r})", []
        model = pl_module.model
        was_training = model.training
        model.eval()
        try:
            probabilities = model(input_ids=input_ids).logits[0, positions].float().softmax(-1)  # (masks, V)
        finally:
            model.train(was_training)
        top = probabilities.topk(self.fill_top_k, dim=-1)
        predictions = [
            [(tokenizer.decode([i]), p) for i, p in zip(ids_.tolist(), probs.tolist())]
            for ids_, probs in zip(top.indices, top.values)
        ]
        lines = [self.mask_prompt]
        for number, candidates in enumerate(predictions, 1):
            lines.append(f"  <mask> {number}: " + " | ".join(f"{token!r} {p:.2f}" for token, p in candidates))
        return "\n".join(lines), predictions

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        stepped = (batch_idx + 1) % trainer.accumulate_grad_batches == 0
        if self.enabled and self.every_n_steps and stepped and trainer.global_step % self.every_n_steps == 0:
            self.sample(trainer, pl_module)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.enabled and trainer.global_step not in self.sampled_at[-1:]:
            self.sample(trainer, pl_module)

    def sample(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Sample on every rank (a sharded model needs every rank in each forward), print and log on rank 0."""
        data = getattr(pl_module, "data_description", None)
        tokenizer_path = data.tokenizer_path if data is not None else None
        if tokenizer_path is None:
            return
        if pl_module.objective.name == "mlm":
            sample, self.last_predictions = self.fill_mask(pl_module, tokenizer_path)
            title, tag = f"fill-mask for {self.mask_prompt!r}", "samples/mlm"
        else:
            sample = self.generate(pl_module, tokenizer_path)
            title, tag = f"sample for {self.prompt!r}", "samples/clm"
        self.last_sample = sample
        self.sampled_at.append(trainer.global_step)
        if trainer.is_global_zero:
            print(f"\n----- {title} after {trainer.global_step} steps -----\n{sample}\n-----", flush=True)
            for logger in trainer.loggers:
                log_text(logger, tag, sample, trainer.global_step)


def log_text(logger, tag: str, text: str, step: int) -> None:
    """Log a sample with what each of Lightning's loggers offers for text (nothing for CSV)."""
    from lightning.pytorch.loggers import MLFlowLogger, TensorBoardLogger, WandbLogger

    if isinstance(logger, TensorBoardLogger):
        logger.experiment.add_text(tag, f"```\n{text}\n```", global_step=step)
    elif isinstance(logger, WandbLogger):
        logger.log_text(key=tag, columns=["step", "text"], data=[[step, text]], step=step)
    elif isinstance(logger, MLFlowLogger):
        logger.experiment.log_text(logger.run_id, text, f"{tag}/step_{step:06d}.txt")
