import torch

from lit_pretrain.models import build_config, build_model
from lit_pretrain.objectives import IGNORE_INDEX, clm_loss


def test_clm_loss_equals_transformers_own_loss():
    torch.manual_seed(0)
    model = build_model(build_config("gpt2-tiny", None, vocab_size=97))
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
