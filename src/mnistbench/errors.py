"""The project's expected failures: reported as one clear message, without a traceback."""


class MnistbenchError(Exception):
    """Bad data, a bad checkpoint, an unreachable store: the message names the file or key."""


class ParamsError(ValueError):
    """A bad params.yaml: the message names the key, what was expected and what was found."""
