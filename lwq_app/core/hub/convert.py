"""The convert job: a Hugging Face safetensors folder to a GGUF F16/BF16/F32, by llama.cpp.

The conversion is llama.cpp's own ``convert_hf_to_gguf.py`` at the commit lwq's engine pins,
vendored in ``resources/llama_cpp`` (see its VENDORED.md). Its ``gguf-py`` calls itself 0.19.0
like the app's PyPI ``gguf`` but differs, so it never runs in this process: ``convert_runner``
runs it in a child (``python -I``, its own ``sys.path``), reporting tensors written / total as
JSON lines. Cancel kills the child. The child writes a temp file beside the output, renamed
into place only when the converter succeeded; the child's stderr (the converter's log) is kept
in ``boundary.log_dir()`` only when it failed.

What can be checked before a child starts is: the folder's ``config.json``, its weights
(``model*.safetensors``, every shard an index names; ``pytorch_model*.bin`` as the converter's
fallback), a tokenizer file, an architecture the converter has a class for (read from the
vendored ``conversion/__init__.py``, without importing it) and the free disk.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import json
import os
import queue
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from ..jobs import child_runner
from ..jobs.atomic import atomic_output, check_free_space, check_writable_dir
from ..jobs.boundary import new_log_path, public_job
from ..jobs.errors import Cancelled, InputError, JobFailed, shown
from ..jobs.progress import (
    POLL_INTERVAL,
    CancelToken,
    Phase,
    Progress,
    ProgressSink,
    check,
    no_progress,
)
from ..jobs.resources import RESOURCES
from .access import hub_cache_dir
from .cache_layout import check_snapshot, delete_snapshot
from .provenance import record_source, source_of

#: the vendored converter (``packaging/vendor_llama_cpp.py`` re-creates it)
VENDORED = RESOURCES / "llama_cpp"
RUNNER = Path(__file__).with_name("convert_runner.py")
OUT_TYPES = {"F16": 2, "BF16": 2, "F32": 4}
#: the files a converter can build a vocabulary from, in the order a message names them
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "tokenizer.tiktoken")
#: metadata (the vocabulary, merges, chat template) on top of the tensor data, for the
#: free-disk check
_METADATA_ALLOWANCE = 64 << 20


@dataclass(frozen=True)
class ConvertRequest:
    """Convert the Hugging Face model folder ``source`` into ``output`` as ``out_type``."""

    source: Path
    out_type: str
    output: Path
    #: once converted, delete ``source`` from the Hugging Face cache (a downloaded snapshot)
    delete_source: bool = False


@dataclass(frozen=True)
class ConvertResult:
    output: Path
    #: the GGUF architecture written (``llama``) and the config's class (``LlamaForCausalLM``)
    arch: str
    hf_architecture: str
    tensors: int
    bytes: int
    seconds: float
    #: bytes ``delete_source`` freed (0 when the source was kept)
    freed_bytes: int = 0


@dataclass(frozen=True)
class SourceFolder:
    """What ``inspect_source`` found in a model folder, before any conversion."""

    path: Path
    architecture: str
    weights: tuple[Path, ...]
    tokenizer: tuple[Path, ...]
    #: weights in the safetensors headers (None for ``.bin`` weights: not read)
    parameters: int | None

    def output_bytes(self, out_type: str) -> int:
        """About how large the GGUF of ``out_type`` will be (for the free-disk check)."""
        size = OUT_TYPES[out_type.upper()]
        if self.parameters is not None:
            data = self.parameters * size
        else:  # .bin weights, most often 16-bit
            data = sum(p.stat().st_size for p in self.weights) * size // 2
        return data + _METADATA_ALLOWANCE


@functools.lru_cache(maxsize=1)
def supported_architectures() -> frozenset[str]:
    """The config ``architectures`` the vendored converter has a text-model class for.

    Read from ``TEXT_MODEL_MAP`` in ``conversion/__init__.py`` with ``ast``: importing it would
    import the vendored ``gguf`` here."""
    path = VENDORED / "conversion" / "__init__.py"
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    for node in tree.body:
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and node.target.id == "TEXT_MODEL_MAP"
            and node.value is not None
        ):
            return frozenset(ast.literal_eval(node.value))
    raise JobFailed(f"{path}: no TEXT_MODEL_MAP: the vendored converter is not the expected one")


def _architectures(config: dict[str, Any]) -> list[str]:
    """The architecture names the converter may pick from a config (its top-level one, and
    the ``text_config``'s, which it prefers for most multimodal models)."""
    found = []
    for cfg in (config, config.get("text_config")):
        if isinstance(cfg, dict):
            arches = cfg.get("architectures")
            if isinstance(arches, list) and arches and isinstance(arches[0], str):
                found.append(arches[0])
    if not found and isinstance(config.get("ssm_cfg"), dict):  # non-HF Mamba checkpoints
        found.append(str(config["ssm_cfg"].get("layer", "Mamba")) + "ForCausalLM")
    return found


def inspect_source(source: Path) -> SourceFolder:
    """Check a model folder holds what the converter needs; ``InputError`` naming the file
    that is missing or unusable, or the architecture it cannot convert."""
    folder = Path(source)
    if not folder.is_dir():
        what = "does not exist" if not folder.exists() else "is not a folder"
        raise InputError(f"{folder}: {what}: give the folder of a Hugging Face model")
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise InputError(
            f"{config_path}: missing: a Hugging Face model folder needs its config.json"
        )
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise InputError(f"{config_path}: not readable JSON ({shown(str(e), 120)})") from None
    if not isinstance(config, dict):
        raise InputError(f"{config_path}: not a JSON object")
    arches = _architectures(config)
    if not arches:
        raise InputError(f'{config_path}: names no architecture (no "architectures" list)')
    supported = supported_architectures()
    if not any(a in supported for a in arches):
        raise InputError(
            f"{folder}: architecture {shown(arches[-1], 80)} is not supported by llama.cpp's "
            "converter (the one llama-cpp-python 0.3.36 pins)"
        )
    weights, parameters = _weights(folder)
    tokenizer = tuple(folder / n for n in TOKENIZER_FILES if (folder / n).is_file())
    if not tokenizer:
        raise InputError(
            f"{folder / 'tokenizer.json'}: missing (nor tokenizer.model, vocab.json): "
            "copy the model's tokenizer files into the folder"
        )
    only_vocab = tokenizer == (folder / "vocab.json",)
    if only_vocab and not (folder / "merges.txt").is_file():
        raise InputError(f"{folder / 'merges.txt'}: missing: vocab.json needs its merges.txt")
    arch = next(a for a in arches if a in supported)
    return SourceFolder(folder, arch, weights, tokenizer, parameters)


def _weights(folder: Path) -> tuple[tuple[Path, ...], int | None]:
    """The weight files the converter will read, as it finds them, and their weight count."""
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8")).get("weight_map")
        except (OSError, UnicodeDecodeError, ValueError, AttributeError):
            weight_map = None
        if not isinstance(weight_map, dict):
            raise InputError(f'{index}: no "weight_map": not a safetensors index')
        shards = tuple(folder / str(n) for n in dict.fromkeys(weight_map.values()))
        for shard in shards:
            if not shard.is_file():
                raise InputError(f"{shard}: missing: {index.name} lists it")
    else:
        shards = tuple(
            sorted(p for p in folder.glob("model*.safetensors") if p.is_file())
        ) or tuple(sorted(p for p in folder.glob("pytorch_model*.bin") if p.is_file()))
    if not shards:
        raise InputError(f"{folder / 'model.safetensors'}: missing: the folder has no weights")
    if shards[0].suffix != ".safetensors":
        return shards, None
    return shards, sum(_safetensors_weights(p) for p in shards)


def _safetensors_weights(path: Path) -> int:
    """The number of weights a safetensors file holds, from its header alone."""
    try:
        with path.open("rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            if n > 100 << 20:
                raise ValueError(f"a header of {n} bytes")
            header = json.loads(f.read(n))
        total = 0
        for name, info in header.items():
            if name != "__metadata__":
                count = 1
                for d in info["shape"]:
                    count *= int(d)
                total += count
        return total
    except (OSError, ValueError, KeyError, TypeError, struct.error) as e:
        raise InputError(f"{path}: not a safetensors file ({shown(str(e), 120)})") from None


@public_job("convert")
def convert_model(
    request: ConvertRequest,
    *,
    progress: ProgressSink = no_progress,
    cancel: CancelToken | None = None,
) -> ConvertResult:
    """Write ``request.output``: the folder converted by llama.cpp's converter.

    Phase CONVERT: tensors written / total. Raises ``InputError`` for a folder the converter
    cannot use (naming the file or the architecture), ``OutputError`` for an unwritable
    output or too little disk, ``JobFailed`` with the converter's reason, ``Cancelled``."""
    check(cancel)
    out_type = str(request.out_type).upper()
    if out_type not in OUT_TYPES:
        raise InputError(
            f"convert type must be F16, BF16 or F32, not {shown(request.out_type, 40)}"
        )
    t0 = time.monotonic()
    if request.delete_source:
        check_snapshot(Path(request.source), hub_cache_dir())  # refused before the work
    found = inspect_source(Path(request.source))
    output = Path(request.output)
    if output.resolve() in {p.resolve() for p in found.weights}:
        raise InputError(f"{output}: output would overwrite the input")
    check_writable_dir(output)
    check_free_space(output, found.output_bytes(out_type))
    progress(Progress(Phase.CONVERT, 0, 1, found.path.name))
    with atomic_output(output) as tmp:
        answer = _run_converter(found, out_type, tmp, progress, cancel)
        size = tmp.stat().st_size
        if size == 0:
            raise JobFailed(f"convert of {found.path}: the converter wrote nothing")
    source = source_of(found.path)
    if source is not None:
        record_source(output, source.repo, source.commit, source.revision, source.repo_type)
    freed = delete_snapshot(found.path, hub_cache_dir()) if request.delete_source else 0
    return ConvertResult(
        output,
        str(answer.get("arch") or ""),
        str(answer.get("hf_arch") or found.architecture),
        int(answer.get("tensors") or 0),
        size,
        time.monotonic() - t0,
        freed,
    )


def _command(source: Path, out_type: str, tmp: Path) -> list[str]:
    niceness = child_runner.child_niceness()  # the app's children run nicer
    return [
        sys.executable, "-I", str(RUNNER),
        "--vendor", str(VENDORED),
        "--parent-pid", str(os.getpid()),
        "--nice", str(niceness),
        "--", str(source), "--outtype", out_type.lower(), "--outfile", str(tmp),
    ]  # fmt: skip


def _environment() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("NO_LOCAL_GGUF", None)  # would keep the converter off its own gguf-py
    # a local folder is all the converter reads: no Hub look-up from transformers
    env.update(HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", OPENBLAS_NUM_THREADS="1")
    return env


def _run_converter(
    found: SourceFolder,
    out_type: str,
    tmp: Path,
    progress: ProgressSink,
    cancel: CancelToken | None,
) -> dict[str, Any]:
    """Run the runner to completion; its result event, or the error it stands for."""
    fd, log_name = tempfile.mkstemp(prefix="lwq-convert-", suffix=".log")
    log = Path(log_name)
    kept: Path | None = None
    try:
        with os.fdopen(fd, "wb") as log_file:
            proc = subprocess.Popen(
                _command(found.path, out_type, tmp),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log_file,
                env=_environment(),
            )
        assert proc.stdout is not None
        events: queue.Queue[dict[str, Any] | None] = queue.Queue()
        reader = threading.Thread(target=_read_events, args=(proc.stdout, events), daemon=True)
        reader.start()
        answer: dict[str, Any] | None = None
        try:
            while True:
                if cancel is not None and cancel.cancelled:
                    raise Cancelled("cancelled")
                try:
                    event = events.get(timeout=POLL_INTERVAL if cancel is not None else None)
                except queue.Empty:
                    continue
                if event is None:
                    break
                if event.get("event") == "progress":
                    done, total = float(event.get("done", 0)), float(event.get("total", 0))
                    progress(Progress(Phase.CONVERT, done, total, str(event.get("item", ""))))
                elif event.get("event") in ("result", "error"):
                    answer = event
            code = proc.wait()
        finally:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                proc.wait()
            proc.stdout.close()
        if answer is not None and answer.get("event") == "result" and code == 0:
            return answer
        kept = _keep_log(log, proc.pid)
        raise _failure(found, answer, code, kept)
    finally:
        if kept is None:
            with contextlib.suppress(OSError):
                log.unlink()


def _read_events(stream: IO[bytes], events: queue.Queue[dict[str, Any] | None]) -> None:
    try:
        for line in stream:
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                if isinstance(event, dict):
                    events.put(event)
    except (OSError, ValueError):
        pass  # the pipe closed under us (a kill): the end
    finally:
        events.put(None)


def _keep_log(log: Path, pid: int) -> Path:
    try:
        dest = new_log_path(pid)
        shutil.move(log, dest)
        return dest
    except OSError:
        return log


def _failure(found: SourceFolder, answer: dict[str, Any] | None, code: int, log: Path) -> Exception:
    if answer is not None and answer.get("kind") == "unsupported":
        arch = str(answer.get("architecture") or found.architecture)
        return InputError(
            f"{found.path}: architecture {shown(arch, 80)} is not supported by llama.cpp's "
            "converter (the one llama-cpp-python 0.3.36 pins)"
        )
    if answer is not None and answer.get("event") == "error":
        said = shown(str(answer.get("message", "")), 300)
    else:
        said = _last_meaningful_line(log) or _death(code)
    return JobFailed(
        f"convert of {found.path} failed: {said}; no output was written; the converter's log is {log}"
    )


def _death(code: int) -> str:
    if code < 0:
        try:
            return f"the converter was killed ({signal.Signals(-code).name})"
        except ValueError:
            return f"the converter was killed (signal {-code})"
    return f"the converter exited with code {code} without a result"


#: a log line that says why: the converter's ``ERROR:`` lines, a traceback's last line
_MEANINGFUL = re.compile(r"^(ERROR:|[A-Za-z_][\w.]*(Error|Exception|Interrupt)\b)")


def _last_meaningful_line(log: Path) -> str:
    for line in reversed(child_runner.log_tail_lines(log)):
        if _MEANINGFUL.match(line):
            return shown(line, 300)
    return ""
