"""Print (and log to TensorBoard) what the model makes of a fixed prompt when training ends: a generated
continuation for a causal LM, the top predictions for each masked position for a masked LM."""

from __future__ import annotations

import lightning as L
import torch

from data_prep.tokenizer import load_tokenizer

MASK_PLACEHOLDER = "<mask>"


class GenerateSample(L.Callback):
    """At the end of ``fit``, sample from the model with the prepared dataset's tokenizer and special ids
    (``pl_module.token_ids``: generation stops at the tokenizer's own end of text, masks use its mask token).

    Args:
        prompt: Text a causal LM continues.
        max_new_tokens: Tokens to generate.
        temperature: Sampling temperature; 0 means greedy decoding.
        top_k: Sample only among the k most likely tokens (with temperature > 0).
        seed: Seed for sampling, so a given checkpoint always prints the same sample.
        mask_prompt: Text for a masked LM; each ``<mask>`` becomes the tokenizer's mask token.
        fill_top_k: Predictions shown per masked position.
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
        enabled: bool = True,
    ) -> None:
        self.enabled = enabled
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

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        datamodule = trainer.datamodule
        if not self.enabled or datamodule is None or not hasattr(datamodule, "tokenizer_path"):
            return
        if pl_module.objective.name == "mlm":
            sample, self.last_predictions = self.fill_mask(pl_module, datamodule.tokenizer_path)
            title = f"fill-mask for {self.mask_prompt!r}"
        else:
            sample = self.generate(pl_module, datamodule.tokenizer_path)
            title = f"sample for {self.prompt!r}"
        self.last_sample = sample
        if trainer.is_global_zero:
            print(f"\n----- {title} after {trainer.global_step} steps -----\n{sample}\n-----", flush=True)
            experiment = getattr(trainer.logger, "experiment", None)
            if hasattr(experiment, "add_text"):
                experiment.add_text("sample", f"```\n{sample}\n```", global_step=trainer.global_step)
