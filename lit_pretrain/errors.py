"""The exceptions lit_pretrain raises for what a user can fix; the CLI prints their one-line message (exit 2 for
configuration, 1 for a full disk)."""


class ConfigError(ValueError):
    """A configuration value that cannot work; the message names the key and what to do."""


class NoSpaceLeft(RuntimeError):
    """A write failed because its filesystem is full (or over quota); the message says what was kept and what to
    free, and nothing half-written is left under a final name."""
