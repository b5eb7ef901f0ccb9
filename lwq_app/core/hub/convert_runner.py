"""Run llama.cpp's vendored ``convert_hf_to_gguf.py`` with its own ``gguf``; report as JSON lines.

A standalone script, started by ``convert.py`` as ``python -I convert_runner.py --vendor DIR
[--parent-pid PID] [--nice N] -- MODEL_DIR --outtype f16 --outfile TMP``. It imports
nothing of lwq: the vendored ``gguf-py`` calls itself 0.19.0 like the app's PyPI ``gguf`` but
differs from it, so it must be the only ``gguf`` this process ever imports. ``-I`` keeps
PYTHONPATH, the user site and the script's folder off ``sys.path``; the runner then puts the
vendored folder and its ``gguf-py`` first and checks the ``gguf`` it got lives there.

Standard output carries only JSON lines (fd 1 is moved to stderr before the converter runs,
so nothing it prints can break the protocol): ``{"event": "progress", "done", "total",
"item"}`` per tensor written (after an ``isolated`` event naming the ``gguf`` imported), then one ``{"event": "result", …}`` or ``{"event": "error",
"kind", "message"}``. Standard error (the converter's log) goes wherever the parent sent it.
Progress comes from a wrapper around the vendored ``GGUFWriter.write_tensors_to_file``
installed at run time (the vendored files stay byte for byte as shipped): with lazy tensors,
writing a tensor is where it is read, converted and written, so tensors written / total is
the conversion's real progress.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import importlib.util
import json
import logging
import os
import signal
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

#: exit codes the parent tells apart (any other one: the converter's own)
EXIT_ERROR = 1
EXIT_ISOLATION = 3


class Reporter:
    """JSON lines on a private copy of the original stdout."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream

    def send(self, event: str, **fields: Any) -> None:
        line = json.dumps({"event": event, **fields}, ensure_ascii=True) + "\n"
        self._stream.write(line.encode("ascii"))
        self._stream.flush()


def _private_stdout() -> BinaryIO:
    """Keep fd 1 for the protocol and send everything else written to stdout to stderr."""
    sys.stdout.flush()
    stream = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return stream


def _die_with_parent(parent_pid: int | None) -> None:
    """Linux: SIGKILL when the app dies, so no orphan keeps writing the temp file."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
    if parent_pid is not None and os.getppid() != parent_pid:
        os._exit(EXIT_ERROR)


def _isolate(vendor: Path) -> Any:
    """Import the vendored ``gguf`` (first on ``sys.path``) and prove it is that one."""
    for name in [m for m in sys.modules if m == "gguf" or m.startswith("gguf.")]:
        del sys.modules[name]
    sys.path[:0] = [str(vendor), str(vendor / "gguf-py")]
    import gguf

    where = Path(gguf.__file__ or "").resolve()
    if not where.is_relative_to((vendor / "gguf-py").resolve()):
        raise ImportError(f"imported gguf from {where}, not from the vendored {vendor}")
    return gguf


class _CountedTensor:
    """A tensor the writer is about to write; reports once it has been written."""

    def __init__(self, tensor: Any, done: Callable[[], None]) -> None:
        self._tensor = tensor
        self._done = done

    @property
    def nbytes(self) -> int:
        return int(self._tensor.nbytes)

    def tofile(self, fout: Any) -> None:
        self._tensor.tofile(fout)
        self._done()


def _hook_progress(gguf: Any, report: Reporter, seen: dict[str, Any]) -> None:
    """Wrap ``GGUFWriter.write_tensors_to_file``: one progress event per tensor written."""
    writer_cls = gguf.GGUFWriter
    original = writer_cls.write_tensors_to_file

    def write_tensors_to_file(self: Any, *, progress: bool = False) -> None:
        names = [name for shard in self.tensors for name in shard]
        total = len(names)
        seen.update(arch=getattr(self, "arch", None), tensors=total)
        report.send("progress", done=0, total=total, item=names[0] if names else "")
        count = [0]
        for shard in self.tensors:
            for name, ti in shard.items():
                if ti.tensor is None:
                    continue

                def done(name: str = name) -> None:
                    count[0] += 1
                    report.send("progress", done=count[0], total=total, item=name)

                ti.tensor = _CountedTensor(ti.tensor, done)
        original(self, progress=False)  # no tqdm bar in the log

    writer_cls.write_tensors_to_file = write_tensors_to_file


class _LastError(logging.Handler):
    """The converter's last ERROR log line: its reason when it exits with a code."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.message = ""

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):
            self.message = record.getMessage().strip().splitlines()[0]


def _load_converter(vendor: Path) -> Any:
    spec = importlib.util.spec_from_file_location(
        "convert_hf_to_gguf", vendor / "convert_hf_to_gguf.py"
    )
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {vendor / 'convert_hf_to_gguf.py'}")
    module = importlib.util.module_from_spec(spec)
    sys.modules["convert_hf_to_gguf"] = module
    spec.loader.exec_module(module)
    return module


def _watch_architecture(module: Any, seen: dict[str, Any]) -> None:
    """Note the architecture the converter asks for and whether it had a class for it (the
    converter turns that ``NotImplementedError`` into a log line and exit code 1)."""
    original = module.get_model_class

    def get_model_class(name: str, *args: Any, **kwargs: Any) -> Any:
        seen["hf_arch"] = name
        try:
            return original(name, *args, **kwargs)
        except NotImplementedError as e:
            seen["unsupported"] = str(e)
            raise

    module.get_model_class = get_model_class


def _escaped(path: Path) -> str:
    """``path`` as the converter's ``--outfile``: it fills ``{ftype}`` templates in the name
    with ``str.format``, so braces in the name are doubled to come out as they are."""
    return str(path.parent / path.name.replace("{", "{{").replace("}", "}}"))


def run(args: argparse.Namespace, report: Reporter) -> int:
    vendor = Path(args.vendor).resolve()
    # no compiled files in the shipped folder (a wheel's file list, a read-only install):
    # compiling the vendored modules anew costs about 0.2 s. (``sys.pycache_prefix`` would
    # apply to torch and transformers too, and recompiling those costs 6 s.)
    sys.dont_write_bytecode = True
    try:
        gguf = _isolate(vendor)
    except ImportError as e:
        report.send("error", kind="isolation", message=str(e))
        return EXIT_ISOLATION
    report.send("isolated", gguf=str(Path(gguf.__file__ or "").resolve()))
    seen: dict[str, Any] = {}
    _hook_progress(gguf, report, seen)
    last_error = _LastError()
    logging.getLogger().addHandler(last_error)
    converter_args = list(args.converter)
    if "--outfile" in converter_args:
        i = converter_args.index("--outfile") + 1
        converter_args[i] = _escaped(Path(converter_args[i]))
    try:
        module = _load_converter(vendor)
        _watch_architecture(module, seen)
        sys.argv = ["convert_hf_to_gguf.py", *converter_args]
        module.main()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else EXIT_ERROR)
        if code != 0:
            if "unsupported" in seen:
                report.send("error", kind="unsupported", message=seen["unsupported"],
                            architecture=seen.get("hf_arch", ""))  # fmt: skip
            else:
                said = last_error.message or f"the converter exited with code {code}"
                report.send("error", kind="failed", message=said)
            return code
    except BaseException as e:
        traceback.print_exc()
        text = str(e).strip().splitlines()[0] if str(e).strip() else ""
        said = f"{type(e).__name__}: {text}" if text else type(e).__name__
        report.send("error", kind="failed", message=said)
        return EXIT_ERROR
    report.send(
        "result",
        arch=seen.get("arch"),
        hf_arch=seen.get("hf_arch"),
        tensors=seen.get("tensors", 0),
        gguf=str(Path(gguf.__file__ or "").resolve()),
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="run the vendored llama.cpp converter, isolated")
    ap.add_argument("--vendor", required=True, help="the vendored llama.cpp folder")
    ap.add_argument("--parent-pid", type=int, default=None)
    ap.add_argument("--nice", type=int, default=0, help="run this much nicer (POSIX)")
    ap.add_argument("converter", nargs=argparse.REMAINDER, help="-- then the converter's arguments")
    args = ap.parse_args(argv)
    if args.converter[:1] == ["--"]:
        args.converter = args.converter[1:]
    _die_with_parent(args.parent_pid)
    if args.nice > 0 and hasattr(os, "nice"):
        os.nice(args.nice)
    report = Reporter(_private_stdout())
    return run(args, report)


if __name__ == "__main__":
    sys.exit(main())
