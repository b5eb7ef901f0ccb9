"""Per-variant results store: every evaluation, task score and speed test of one GGUF.

Results live beside the model as ``MODEL.gguf.lwq-results.json``, so a set of variants can
be reported on later. Each file names exactly what was measured: the model's tensor-data
hash (cached against size + mtime, a re-quantized file is re-hashed), its plan and imatrix
(from the quantize sidecar when lwq made it), the text hash, and lwq/llama.cpp versions.
A new result replaces an older one with the same key (same text/ctx/chunks, same task file).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .errors import InputError
from .fileio import atomic_write_text
from .model import open_model

SUFFIX = ".lwq-results.json"
FORMAT = "lwq-results"


def results_path(model: Path) -> Path:
    return model.with_name(model.name + SUFFIX)


def load_results(model: str | Path) -> dict[str, Any]:
    """The stored results of ``model`` (an empty store if none)."""
    p = results_path(Path(model))
    if not p.exists():
        return {"format": FORMAT, "eval": {}, "tasks": {}, "bench": {}}
    try:
        data: dict[str, Any] = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise InputError(f"{p}: unreadable results file ({e})") from None
    if data.get("format") != FORMAT:
        raise InputError(f"{p}: not an lwq results file")
    return data


def _versions() -> dict[str, str]:
    from .. import __version__
    from .engine import llama_cpp_version

    return {"lwq": __version__, "llama_cpp_python": llama_cpp_version()}


def _variant(model: Path, old: dict[str, Any]) -> dict[str, Any]:
    """Identity of the file: cached hash unless size or mtime changed; plan from the sidecar."""
    st = model.stat()
    prev = old.get("variant", {})
    if prev.get("size") == st.st_size and prev.get("mtime_ns") == st.st_mtime_ns:
        digest = prev["tensor_data_sha256"]
    else:
        digest = open_model(model).tensor_data_hash()
    info = open_model(model)
    v: dict[str, Any] = {
        "file": model.name,
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "tensor_data_sha256": digest,
        "tensor_data_bytes": info.tensor_data_bytes,
        "n_params": info.n_params,
        "plan_sha256": None,
        "imatrix": None,
        "base_ftype": None,
    }
    sidecar = model.with_name(model.name + ".lwq.json")
    if sidecar.exists():
        with contextlib.suppress(OSError, ValueError):  # a broken sidecar only loses the plan
            side = json.loads(sidecar.read_text(encoding="utf-8"))
            v.update(
                plan_sha256=side.get("plan_sha256"),
                imatrix=side.get("imatrix"),
                base_ftype=side.get("base_ftype"),
            )
    return v


def _store(model: Path, section: str, key: str, value: dict[str, Any]) -> Path:
    data = load_results(model)
    data["variant"] = _variant(model, data)
    data["versions"] = _versions()
    value = {**value, "recorded": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    data.setdefault(section, {})[key] = value
    p = results_path(model)
    atomic_write_text(p, json.dumps(data, indent=1, default=str) + "\n")
    return p


def record_eval(model: str | Path, result: Any) -> Path:
    """Store a ``PerplexityResult`` or ``KldResult`` (keyed by text, ctx and chunks)."""
    ppl = getattr(result, "perplexity", result)
    key = f"{ppl.text_sha256[:16]}-c{ppl.n_ctx}-n{ppl.n_chunks}"
    body = asdict(result)
    body["kind"] = "kld" if hasattr(result, "stats") else "ppl"
    return _store(Path(model), "eval", key, body)


def record_tasks(model: str | Path, result: Any) -> Path:
    """Store a ``TaskResult`` (keyed by benchmark name, task-file hash and task count)."""
    digest = hashlib.sha256(Path(result.file).read_bytes()).hexdigest()
    body = asdict(result)
    body.pop("correct", None)
    body["file_sha256"] = digest
    return _store(Path(model), "tasks", f"{result.name}-{digest[:12]}-{result.n_tasks}", body)


def record_bench(model: str | Path, records: list[Any]) -> Path:
    """Store llama-bench-style records (keyed by test name and threads)."""
    p = Path(model)
    for r in records:
        _store(p, "bench", f"{r.test_name}-t{r.n_threads}-ngl{r.n_gpu_layers}", r.to_json())
    return results_path(p)
