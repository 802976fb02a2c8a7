"""The project's expected failures: reported as one clear message, without a traceback."""


class MnistbenchError(Exception):
    """Bad data, a bad checkpoint, an unreachable store: the message names the file or key."""
