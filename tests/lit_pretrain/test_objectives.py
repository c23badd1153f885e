import math

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoModelForMaskedLM, AutoTokenizer, DataCollatorForLanguageModeling

from data_prep.tokens.shards import read_manifest
from lit_pretrain.data import manifest_token_ids
from lit_pretrain.models import build_config, build_model
from lit_pretrain.objectives import IGNORE_INDEX, MaskedLM, build_objective, clm_loss, mlm_loss
from lit_pretrain.windows import WindowDataset


def test_clm_loss_equals_transformers_own_loss():
    torch.manual_seed(0)
    model = build_model(build_config("gpt2-tiny", None, vocab_size=97), AutoModelForCausalLM)
    input_ids = torch.randint(0, 97, (3, 20))
    labels = input_ids.clone()
    labels[1, 5:9] = IGNORE_INDEX  # ignored positions must be excluded the same way
    output = model(input_ids=input_ids, labels=labels)
    loss_sum, count = clm_loss(output.logits, labels)
    assert count.item() == 3 * 19 - 4
    torch.testing.assert_close(loss_sum / count, output.loss)


def test_clm_loss_shifts_once():
    # A "model" that puts all probability on the next token gets zero loss only if the shift is right.
    tokens = torch.tensor([[1, 2, 3, 4]])
    logits = torch.full((1, 4, 5), -1e4)
    logits[0, torch.arange(3), tokens[0, 1:]] = 1e4
    loss_sum, count = clm_loss(logits, tokens)
    assert count.item() == 3 and loss_sum.item() == 0.0


# -- masked LM -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mlm_windows(prepared_mlm_dataset):
    """(64, 128) real windows of the MLM-prepared corpus (with end-of-text separators), its ids and tokenizer."""
    manifest = read_manifest(prepared_mlm_dataset)
    dataset = WindowDataset(prepared_mlm_dataset, manifest["splits"]["train"]["files"], manifest["dtype"], 128)
    token_ids = manifest_token_ids(prepared_mlm_dataset, manifest)
    every = [dataset[i]["input_ids"] for i in range(len(dataset))]
    # Half of them hold a document boundary (end-of-text), so special tokens are among the inputs.
    boundary = [w for w in every if (w == token_ids["end_of_text_id"]).any()][:32]
    windows = torch.stack(boundary + [w for w in every if not (w == token_ids["end_of_text_id"]).any()][:32])
    hf_tokenizer = AutoTokenizer.from_pretrained(str(prepared_mlm_dataset / "hf_tokenizer"))
    return windows, token_ids, manifest["vocab_size"], hf_tokenizer


def masking_statistics(inputs: torch.Tensor, masked: torch.Tensor, labels: torch.Tensor, special, mask_id) -> dict:
    eligible = ~torch.isin(inputs, special)
    selected = labels != IGNORE_INDEX
    changed = selected & (masked != mask_id) & (masked != inputs)
    return {
        "selected": (selected & eligible).sum().item() / eligible.sum().item(),
        "masked": (selected & (masked == mask_id)).sum().item() / selected.sum().item(),
        "random": changed.sum().item() / selected.sum().item(),
        "kept": (selected & (masked == inputs)).sum().item() / selected.sum().item(),
        "random_ids": masked[changed],
        "n_eligible": eligible.sum().item(),
        "n_selected": selected.sum().item(),
    }


def test_mlm_masking_matches_transformers_collator_within_sampling_error(mlm_windows):
    windows, token_ids, vocab_size, hf_tokenizer = mlm_windows
    assert hf_tokenizer.mask_token_id == token_ids["mask_token_id"]
    assert sorted(hf_tokenizer.all_special_ids) == sorted(set(token_ids.values()))
    objective = MaskedLM(token_ids, vocab_size, seed=0)
    collator = DataCollatorForLanguageModeling(hf_tokenizer, mlm_probability=0.15, seed=0)
    ours, theirs = [], []
    for step in range(12):  # 12 x 64 x 128 = 98k tokens each
        batch = objective.train_batch(windows, step=step, micro_batch=0, rank=0, world_size=1)
        ours.append((batch["input_ids"], batch["labels"]))
        hf = collator([{"input_ids": row.tolist()} for row in windows])
        theirs.append((hf["input_ids"], hf["labels"]))
    special, mask_id = objective.special_ids, token_ids["mask_token_id"]
    inputs = windows.repeat(12, 1)

    def stats(draws):
        masked, labels = torch.cat([m for m, _ in draws]), torch.cat([labels for _, labels in draws])
        return masking_statistics(inputs, masked, labels, special, mask_id)

    a, b = stats(ours), stats(theirs)

    def close(key, p, n):  # two independent binomial estimates: 5 standard errors of their difference
        assert abs(a[key] - b[key]) < 5 * math.sqrt(2 * p * (1 - p) / n), (key, a[key], b[key])

    close("selected", 0.15, a["n_eligible"])
    for key, p in (("masked", 0.8), ("random", 0.1), ("kept", 0.1)):
        close(key, p, min(a["n_selected"], b["n_selected"]))
    assert a["selected"] == pytest.approx(0.15, abs=0.01) and a["masked"] == pytest.approx(0.8, abs=0.02)
    # Random replacements: ours only non-special ids; on non-special ids both are uniform (same bins).
    assert not torch.isin(a["random_ids"], special).any()
    theirs_ids = b["random_ids"][~torch.isin(b["random_ids"], special)]
    bins = np.linspace(0, vocab_size, 5)
    ours_hist = np.histogram(a["random_ids"].numpy(), bins)[0] / len(a["random_ids"])
    theirs_hist = np.histogram(theirs_ids.numpy(), bins)[0] / len(theirs_ids)
    tolerance = 5 * math.sqrt(2 * 0.25 * 0.75 / min(len(a["random_ids"]), len(theirs_ids)))
    assert np.abs(ours_hist - theirs_hist).max() < tolerance, (ours_hist, theirs_hist)


def test_special_tokens_are_never_masked(mlm_windows):
    windows, token_ids, vocab_size, _ = mlm_windows
    objective = MaskedLM(token_ids, vocab_size, probability=0.9)  # nearly everything eligible is selected
    special = torch.isin(windows, objective.special_ids)
    assert special.sum() > 10  # the windows do contain end-of-text separators
    for step in range(5):
        batch = objective.train_batch(windows, step=step, micro_batch=0, rank=0, world_size=1)
        assert (batch["labels"][special] == IGNORE_INDEX).all()
        assert torch.equal(batch["input_ids"][special], windows[special])
        assert (batch["labels"] != IGNORE_INDEX).sum() > 0.85 * (~special).sum()


def test_mlm_loss_counts_masked_positions_only_and_equals_transformers_loss(mlm_windows):
    windows, token_ids, vocab_size, _ = mlm_windows
    objective = MaskedLM(token_ids, vocab_size)
    batch = objective.train_batch(windows[:4], step=0, micro_batch=0, rank=0, world_size=1)
    labels = batch["labels"]
    # Perfect logits at selected positions, hopeless ones elsewhere: only the selected ones may count.
    logits = torch.full((*labels.shape, vocab_size), 0.0)
    rows, cols = torch.nonzero(labels != IGNORE_INDEX, as_tuple=True)
    logits[rows, cols, labels[rows, cols]] = 1e4
    loss_sum, count = mlm_loss(logits, labels)
    assert loss_sum.item() == 0.0 and count.item() == (labels != IGNORE_INDEX).sum().item()

    torch.manual_seed(0)
    # BERT takes the head-on-selected-positions path; DistilBERT (no such head attribute) the full logits.
    tiny_distilbert = {"model_type": "distilbert", "n_layers": 1, "dim": 32, "n_heads": 2, "hidden_dim": 64}
    for preset, keys in (("bert-tiny", None), (None, tiny_distilbert)):
        model = build_model(build_config(preset, keys, vocab_size, token_ids), AutoModelForMaskedLM).eval()
        loss_sum, count = objective.loss(model, batch)
        assert count.item() == (labels != IGNORE_INDEX).sum().item()
        torch.testing.assert_close(loss_sum / count, model(input_ids=batch["input_ids"], labels=labels).loss)


def test_validation_masks_are_fixed_per_window_whatever_the_batch(mlm_windows):
    windows, token_ids, vocab_size, _ = mlm_windows
    objective = MaskedLM(token_ids, vocab_size, seed=7)
    whole = objective.eval_batch(windows[:8])
    again = objective.eval_batch(windows[:8])
    reordered = objective.eval_batch(windows[[5, 2, 7]])  # other batch, other rows
    assert torch.equal(whole["labels"], again["labels"]) and torch.equal(whole["input_ids"], again["input_ids"])
    assert torch.equal(reordered["labels"], whole["labels"][[5, 2, 7]])
    assert not torch.equal(whole["labels"][0], whole["labels"][1])
    other_seed = MaskedLM(token_ids, vocab_size, seed=8).eval_batch(windows[:8])
    assert not torch.equal(other_seed["labels"], whole["labels"])


def test_training_masks_change_every_step_and_do_not_depend_on_the_process_split(mlm_windows):
    windows, token_ids, vocab_size, _ = mlm_windows
    objective = MaskedLM(token_ids, vocab_size, seed=1)
    step3 = objective.train_batch(windows[:8], step=3, micro_batch=0, rank=0, world_size=1)
    assert torch.equal(step3["labels"], objective.train_batch(windows[:8], 3, 0, 0, 1)["labels"])
    assert not torch.equal(step3["labels"], objective.train_batch(windows[:8], 4, 0, 0, 1)["labels"])
    assert not torch.equal(step3["labels"], objective.train_batch(windows[:8], 3, 1, 0, 1)["labels"])
    # Two ranks: rank r holds global rows r, r + 2, ... (the sampler's stride) and masks them as one process.
    for rank in (0, 1):
        local = objective.train_batch(windows[rank:8:2], step=3, micro_batch=0, rank=rank, world_size=2)
        assert torch.equal(local["labels"], step3["labels"][rank:8:2])


def test_objective_registry_and_clm_transform_is_identity():
    clm = build_objective("clm", {"end_of_text_id": 0}, 100)
    ids = torch.arange(12).reshape(2, 6)
    assert clm.train_batch(ids, 0, 0, 0, 1)["input_ids"] is ids and set(clm.eval_batch(ids)) == {"input_ids"}
    assert clm.auto_class is AutoModelForCausalLM
    assert build_objective("mlm", {"mask_token_id": 3, "end_of_text_id": 0}, 100).auto_class is AutoModelForMaskedLM
