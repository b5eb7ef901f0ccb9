"""Evaluation: perplexity and KL divergence (with the compact base-logits cache),
multiple-choice benchmarks, llama-bench-style speed, the measured memory fit, the device
list, hardware targets (profiles, this machine) and their fit, and a greedy completion.

The job of ``lwq eval`` is ``evaluate(EvalRequest)``; ``perplexity.perplexity`` (one pass,
optionally writing a base-logits cache) is not re-exported here, so that
``lwq_app.core.evaluate.perplexity`` stays the module.
"""

from __future__ import annotations

from .bench import (
    BenchRecord,
    BenchRequest,
    BenchResult,
    bench,
    bench_test_name,
    markdown_table,
)
from .devices import (
    Device,
    DevicesRequest,
    DeviceType,
    list_devices,
)
from .generate import (
    GenerateRequest,
    GenerateResult,
    generate,
)
from .hardware import (
    ALL_LAYERS,
    HardwareProfile,
    TargetSpec,
    builtin_profiles,
    load_profiles,
    save_profiles,
    this_machine,
)
from .kld_stats import (
    Distribution,
    KldStats,
    format_kld_report,
    kld_stats,
)
from .logit_cache import (
    BaseLogits,
    CacheKey,
    load_base_logits,
    read_key,
    save_base_logits,
)
from .memory_fit import (
    MemoryFitRequest,
    RuntimeBuffers,
    measure_buffers,
    measure_memory_fit,
)
from .multiple_choice import (
    BENCHMARKS,
    TaskResult,
    TasksRequest,
    benchmark_kind,
    run_tasks,
)
from .perplexity import (
    EvalRequest,
    KldResult,
    PerplexityResult,
    cached_base_logits,
    compare_exact,
    default_cache_dir,
    evaluate,
    kl_divergence,
    text_digest,
)
from .targets import (
    DEFAULT_MIXES,
    MixFit,
    Placement,
    TargetFit,
    TargetFitRequest,
    plan_fit,
    target_fit,
)
from .task_files import (
    ChoiceTask,
    TaskKind,
    load_hellaswag,
    load_multiple_choice,
    load_winogrande,
    write_multiple_choice,
)

__all__ = [
    "ALL_LAYERS",
    "BENCHMARKS",
    "DEFAULT_MIXES",
    "BaseLogits",
    "BenchRecord",
    "BenchRequest",
    "BenchResult",
    "CacheKey",
    "ChoiceTask",
    "Device",
    "DeviceType",
    "DevicesRequest",
    "Distribution",
    "EvalRequest",
    "GenerateRequest",
    "GenerateResult",
    "HardwareProfile",
    "KldResult",
    "KldStats",
    "MemoryFitRequest",
    "MixFit",
    "PerplexityResult",
    "Placement",
    "RuntimeBuffers",
    "TargetFit",
    "TargetFitRequest",
    "TargetSpec",
    "TaskKind",
    "TaskResult",
    "TasksRequest",
    "bench",
    "bench_test_name",
    "benchmark_kind",
    "builtin_profiles",
    "cached_base_logits",
    "compare_exact",
    "default_cache_dir",
    "evaluate",
    "format_kld_report",
    "generate",
    "kl_divergence",
    "kld_stats",
    "list_devices",
    "load_base_logits",
    "load_hellaswag",
    "load_multiple_choice",
    "load_profiles",
    "load_winogrande",
    "markdown_table",
    "measure_buffers",
    "measure_memory_fit",
    "plan_fit",
    "read_key",
    "run_tasks",
    "save_base_logits",
    "save_profiles",
    "target_fit",
    "text_digest",
    "this_machine",
    "write_multiple_choice",
]
