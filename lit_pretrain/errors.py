"""The exception lit_pretrain raises for bad configuration; the CLI prints its one-line message and exits 2."""


class ConfigError(ValueError):
    """A configuration value that cannot work; the message names the key and what to do."""
