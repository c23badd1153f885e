"""The one exception type data preparation raises for bad input.

Its message is a single line that names the culprit (file, key or value) and says what to do; the CLI prints
it as ``error: <message>`` and exits non-zero without a traceback.
"""


class DataPrepError(Exception):
    """Bad input or configuration found while preparing a corpus."""
