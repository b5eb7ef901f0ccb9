"""Importance: imatrix collection through llama.cpp's graph callback, its statistics, the
per-tensor sensitivity and the heatmap matrices the app draws.

Jobs: ``collect_imatrix(ImatrixRequest)``, ``imatrix_statistics(StatisticsRequest)``,
``measure_sensitivity(SensitivityRequest)``.
"""

from __future__ import annotations

from .collection import (
    Coverage,
    ImatrixRequest,
    ImatrixResult,
    collect_imatrix,
    coverage,
    merge_imatrices,
    read_text_file,
)
from .heatmap import (
    STAT_FIELDS,
    Heatmap,
    heatmap,
    heatmap_csv,
    heatmap_for,
    layer_profile,
    sensitivity_heatmap,
    stats_heatmap,
)
from .overlay import tensor_values
from .sensitivity import (
    CANDIDATES,
    Sensitivity,
    SensitivityRequest,
    TensorSensitivity,
    candidate_types,
    check_types,
    measure_sensitivity,
)
from .statistics import (
    ImatrixStats,
    LayerStats,
    StatisticsRequest,
    TensorStats,
    compute_stats,
    format_stats,
    imatrix_statistics,
)

__all__ = [
    "CANDIDATES",
    "STAT_FIELDS",
    "Coverage",
    "Heatmap",
    "ImatrixRequest",
    "ImatrixResult",
    "ImatrixStats",
    "LayerStats",
    "Sensitivity",
    "SensitivityRequest",
    "StatisticsRequest",
    "TensorSensitivity",
    "TensorStats",
    "candidate_types",
    "check_types",
    "collect_imatrix",
    "compute_stats",
    "coverage",
    "format_stats",
    "heatmap",
    "heatmap_csv",
    "heatmap_for",
    "imatrix_statistics",
    "layer_profile",
    "measure_sensitivity",
    "merge_imatrices",
    "read_text_file",
    "sensitivity_heatmap",
    "stats_heatmap",
    "tensor_values",
]
