"""Errors a user can fix: the CLI prints their message alone, without a traceback."""


class UserError(Exception):
    """Bad input, a missing file or model: the message says what and how to fix it."""


class MissingModelError(UserError):
    """A pretrained model is neither a local folder nor in the Hugging Face cache."""


class DataError(UserError):
    """The dataset is malformed; the message names the file, key or row."""


class StoppedEarly(UserError):
    """A run stopped after a checkpoint where a ``stop_after_*`` knob asked (to be resumed)."""
