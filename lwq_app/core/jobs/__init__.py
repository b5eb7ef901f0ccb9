"""What every job stands on: errors, progress and cancel, the child-process runner, paths,
bundled resources, atomic output and units. The bottom layer: it imports no other stage.
"""

from __future__ import annotations

from .atomic import (
    atomic_output,
    atomic_write_bytes,
    atomic_write_text,
    check_free_space,
    check_writable_dir,
    temp_path_for,
)
from .child_runner import (
    ChildContext,
    run_in_child,
)
from .errors import (
    Cancelled,
    DownloadError,
    ImatrixError,
    InputError,
    JobFailed,
    LwqError,
    ModelFileError,
    OutputError,
    PlanError,
)
from .paths import (
    cache_dir,
    data_dir,
)
from .progress import (
    CancelToken,
    EtaEstimator,
    Phase,
    Phases,
    Progress,
    ProgressSink,
    Throttle,
    check,
    no_progress,
)
from .units import (
    format_size,
    parse_size,
)

__all__ = [
    "CancelToken",
    "Cancelled",
    "ChildContext",
    "DownloadError",
    "EtaEstimator",
    "ImatrixError",
    "InputError",
    "JobFailed",
    "LwqError",
    "ModelFileError",
    "OutputError",
    "Phase",
    "Phases",
    "PlanError",
    "Progress",
    "ProgressSink",
    "Throttle",
    "atomic_output",
    "atomic_write_bytes",
    "atomic_write_text",
    "cache_dir",
    "check",
    "check_free_space",
    "check_writable_dir",
    "data_dir",
    "format_size",
    "no_progress",
    "parse_size",
    "run_in_child",
    "temp_path_for",
]
