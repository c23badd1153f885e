"""Tokens: the tokenizer (trained or pretrained) and the shard format with its manifest."""
