"""The exceptions lwq raises for bad input and failed jobs.

Every error names what it is about (a file, a tensor, a line) so the CLI and the GUI can
show it as it is; neither ever needs a traceback for these.
"""

from __future__ import annotations


class LwqError(Exception):
    """Base of every error lwq reports to the user as a plain message."""


class InputError(LwqError):
    """A file, plan or argument given to lwq is unusable."""


class ModelFileError(InputError):
    """A model file is missing, is not GGUF, or is damaged."""


class PlanError(InputError):
    """A quantization plan does not fit its model (unknown or missing tensors, bad types)."""


class ImatrixError(InputError):
    """An importance-matrix file is unreadable or does not match the model."""


class DownloadError(LwqError):
    """A Hub file cannot be had: offline and not cached, missing on the Hub, or a failed download."""


class OutputError(LwqError):
    """The output cannot be written (unwritable folder, not enough disk)."""


class JobFailed(LwqError):
    """A native job (llama.cpp) failed; the message carries llama.cpp's own reason."""


class Cancelled(LwqError):
    """The job was cancelled by the user; nothing was written."""
