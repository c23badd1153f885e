"""Print (and log to TensorBoard) a text the model generates from a fixed prompt when training ends."""

from __future__ import annotations

import lightning as L
import torch

from data_prep.tokenizer import load_tokenizer


class GenerateSample(L.Callback):
    """Generate from ``prompt`` at the end of ``fit`` using the prepared dataset's tokenizer.

    Args:
        prompt: Text the model continues.
        max_new_tokens: Tokens to generate.
        temperature: Sampling temperature; 0 means greedy decoding.
        top_k: Sample only among the k most likely tokens (with temperature > 0).
        seed: Seed for sampling, so a given checkpoint always prints the same sample.
    """

    def __init__(
        self,
        prompt: str = "def fibonacci(n):",
        max_new_tokens: int = 96,
        temperature: float = 0.8,
        top_k: int = 50,
        seed: int = 0,
    ) -> None:
        self.prompt, self.max_new_tokens = prompt, max_new_tokens
        self.temperature, self.top_k, self.seed = temperature, top_k, seed
        self.last_sample: str | None = None

    @torch.no_grad()
    def generate(self, pl_module: L.LightningModule, tokenizer_path) -> str:
        tokenizer = load_tokenizer(tokenizer_path)
        prompt_ids = tokenizer.encode(self.prompt).ids
        input_ids = torch.tensor([prompt_ids], device=pl_module.device)
        model = pl_module.model
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
                pad_token_id=model.config.eos_token_id,
            )
        finally:
            torch.random.set_rng_state(generator_state)
            model.train(was_training)
        return tokenizer.decode(output[0].tolist(), skip_special_tokens=False)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        datamodule = trainer.datamodule
        if datamodule is None or not hasattr(datamodule, "tokenizer_path"):
            return
        sample = self.generate(pl_module, datamodule.tokenizer_path)
        self.last_sample = sample
        if trainer.is_global_zero:
            print(
                f"\n----- sample for {self.prompt!r} after {trainer.global_step} steps -----\n{sample}\n-----",
                flush=True,
            )
            experiment = getattr(trainer.logger, "experiment", None)
            if hasattr(experiment, "add_text"):
                experiment.add_text("sample", f"```\n{sample}\n```", global_step=trainer.global_step)
