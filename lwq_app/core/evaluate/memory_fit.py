"""What llama.cpp allocates besides the weights, measured: KV cache, compute and output buffers.

``--target-memory`` must leave room for these. Estimates from the shapes are easy to get
wrong (llama.cpp pads the context, sizes the compute graph by ``n_ubatch``, keeps a logits
buffer), so lwq creates the real context once, in a child process, and reads the sizes
llama.cpp logs for it (``llama_kv_cache: size = …``, ``… compute buffer size = …``,
``… output buffer size = …``, summed over backends). Creating a context maps the weights
but reads none of them, so this takes about as long as loading the vocabulary. The buffers
depend on the architecture, context and batch sizes, not on the weight types, so the base
model stands for every plan made from it. Each buffer's log line names its buffer type
(``CPU``, ``CUDA_Host``, ``CUDA0``, ``Metal``): the part in a GPU device's own memory is kept
apart (``*_device``), so a partial offload shows both budgets.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..jobs.boundary import public_job
from ..jobs.child_runner import ChildContext, run_in_child
from ..jobs.errors import InputError
from ..jobs.progress import CancelToken, Phase, Progress, ProgressSink, check, no_progress
from ..modelfile.inventory import open_model

MIB = 1 << 20
_KV = re.compile(r"llama_kv_cache: size = +([\d.]+) MiB")
_COMPUTE = re.compile(r"compute buffer size = +([\d.]+) MiB")
_OUTPUT = re.compile(r"output buffer size = +([\d.]+) MiB")
#: the per-buffer lines, with the buffer type's name
_KV_BUF = re.compile(r"(\S+) KV buffer size = +([\d.]+) MiB")
_COMPUTE_BUF = re.compile(r"(\S+) compute buffer size = +([\d.]+) MiB")
_OUTPUT_BUF = re.compile(r"(\S+) +output buffer size = +([\d.]+) MiB")


@dataclass(frozen=True)
class MemoryFitRequest:
    """Measure what a context of ``n_ctx`` tokens for ``model`` costs besides the weights."""

    model: Path
    n_ctx: int
    gpu_layers: int = 0


@dataclass(frozen=True)
class RuntimeBuffers:
    """Bytes llama.cpp allocates for a context of ``n_ctx`` tokens besides the weights."""

    n_ctx: int
    kv_cache: int
    compute: int
    output: int
    #: of each, the bytes in a GPU device's own memory (not the host's, not pinned host)
    kv_device: int = 0
    compute_device: int = 0
    output_device: int = 0

    @property
    def total(self) -> int:
        return self.kv_cache + self.compute + self.output


def parse_buffer_log(lines: list[str], n_ctx: int) -> RuntimeBuffers:
    """Sum llama.cpp's buffer-size log lines (MiB with two decimals, rounded up)."""

    def mib(text: str) -> int:
        return int(float(text) * MIB + 0.005 * MIB)

    def total(rx: re.Pattern[str]) -> int:
        return sum(mib(m.group(1)) for ln in lines if (m := rx.search(ln)))

    def on_device(rx: re.Pattern[str]) -> int:
        return sum(
            mib(m.group(2)) for ln in lines if (m := rx.search(ln)) and is_device_buffer(m.group(1))
        )

    return RuntimeBuffers(
        n_ctx, total(_KV), total(_COMPUTE), total(_OUTPUT),
        on_device(_KV_BUF), on_device(_COMPUTE_BUF), on_device(_OUTPUT_BUF),
    )  # fmt: skip


def is_device_buffer(buffer_type: str) -> bool:
    """Whether a ggml buffer type lives in a GPU's own memory: ``CUDA0``, ``Metal``, ``Vulkan0``
    do; ``CPU``, ``CPU_Mapped``, ``CPU_REPACK`` and pinned ``CUDA_Host`` memory do not."""
    return not (buffer_type.startswith("CPU") or buffer_type.endswith("_Host"))


@public_job("memory fit")
def measure_memory_fit(
    request: MemoryFitRequest,
    *,
    progress: ProgressSink = no_progress,
    cancel: CancelToken | None = None,
) -> RuntimeBuffers:
    """Create the context once in a child process (``Phase.LOAD``) and read its buffers."""
    return measure_buffers(
        request.model, request.n_ctx, gpu_layers=request.gpu_layers,
        progress=progress, cancel=cancel,
    )  # fmt: skip


def measure_buffers(
    model: str | Path,
    n_ctx: int,
    *,
    gpu_layers: int = 0,
    progress: ProgressSink = no_progress,
    cancel: CancelToken | None = None,
) -> RuntimeBuffers:
    """Create a context of ``n_ctx`` tokens for ``model`` (child process) and measure it."""
    check(cancel)
    if n_ctx < 16:
        raise InputError(f"context size {n_ctx} is too small (at least 16)")
    open_model(model)  # a missing, foreign or truncated file fails here, naming it
    result: RuntimeBuffers = run_in_child(
        "lwq_app.core.evaluate.memory_fit:child_buffers",
        {"model": str(model), "n_ctx": n_ctx, "gpu_layers": gpu_layers},
        progress=progress,
        cancel=cancel,
        job="memory fit",
        subject=model,
    )
    return result


def child_buffers(ctx: ChildContext, *, model: str, n_ctx: int, gpu_layers: int) -> RuntimeBuffers:
    from ..engine import LlamaSession

    ctx.progress(Progress(Phase.LOAD, 0, 1, Path(model).name))
    lines: list[str] = []
    with LlamaSession(
        model, n_ctx=n_ctx, n_batch=min(n_ctx, 2048), gpu_layers=gpu_layers,
        log=lambda _level, line: lines.append(line),
    ):  # fmt: skip
        pass
    ctx.progress(Progress(Phase.LOAD, 1, 1, Path(model).name))
    return parse_buffer_log(lines, n_ctx)
