"""What every job stands on: errors, progress and cancel, the child-process runner, paths,
bundled resources, atomic output and units. The bottom layer: it imports no other stage.
"""

from __future__ import annotations

from .arguments import (
    bpw_option,
    check_size,
    count_option,
    gpu_layers_option,
    int_option,
    size_option,
    threads_option,
)
from .atomic import (
    atomic_output,
    atomic_write_bytes,
    atomic_write_text,
    check_free_space,
    check_writable_dir,
    temp_path_for,
)
from .boundary import (
    internal_error,
    log_dir,
    public_job,
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
    InternalError,
    JobFailed,
    LwqError,
    ModelFileError,
    OutputError,
    PlanError,
    one_line,
    shown,
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
    "InternalError",
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
    "bpw_option",
    "cache_dir",
    "check",
    "check_free_space",
    "check_size",
    "check_writable_dir",
    "count_option",
    "data_dir",
    "format_size",
    "gpu_layers_option",
    "int_option",
    "internal_error",
    "log_dir",
    "no_progress",
    "one_line",
    "parse_size",
    "public_job",
    "run_in_child",
    "shown",
    "size_option",
    "temp_path_for",
    "threads_option",
]
