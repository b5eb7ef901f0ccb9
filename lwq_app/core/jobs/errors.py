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


class InternalError(LwqError):
    """A bug in lwq: something no input should cause. The message names the job and the log
    file holding the traceback; report it with that file."""


#: control characters (C0, DEL, C1) and the Unicode line/paragraph separators
_CONTROL = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F, *range(0x80, 0xA0))}
_CONTROL.update({0x09: "\\t", 0x0A: "\\n", 0x0D: "\\r", 0x2028: "\\u2028", 0x2029: "\\u2029"})


def shown(value: object, limit: int = 200) -> str:
    """``value`` as text safe to put in a one-line message: control characters and line breaks
    escaped (``\\n``, ``\\x1b``), cut to ``limit`` characters with ``…``."""
    text = value if isinstance(value, str) else _short_repr(value, limit)
    out = text.translate(_CONTROL)
    return out if len(out) <= limit else out[: limit - 1] + "…"


def _short_repr(value: object, limit: int) -> str:
    if isinstance(value, (int, float, bool)) or value is None:
        if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 256:
            return f"an integer of about {int(value.bit_length() * 0.30103)} digits"
        return repr(value)
    if isinstance(value, (dict, list, tuple)):
        return f"a {'JSON object' if isinstance(value, dict) else 'list'} of {len(value)} item(s)"
    return repr(value)[: limit + 1]


def one_line(message: str, limit: int = 2000) -> str:
    """A message as exactly one line: line breaks and control characters escaped."""
    return shown(message, limit)
