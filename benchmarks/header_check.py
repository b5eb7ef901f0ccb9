"""Time of opening a model (``open_model``: the header parse and its checks) before and after
the hostile-input validation of issue #9.

"Before" is the header reader of a git revision (``--base``, default ``HEAD``) loaded from
``git show``; "after" is the working tree's. Three files: SmolLM2-135M (the tests' F16
fixture, 49k-token vocabulary and 48k merges), the generated ≥ 1 GB F16 llama model of
``quantize_vs_native.py`` (no vocabulary: tensor infos only) and a header-only stress file
with a 256k-token vocabulary. Median of N runs each, alternating.

    python benchmarks/header_check.py [--runs 20] [--base HEAD] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT / "tests"))


def _old_reader(rev: str, work: Path) -> ModuleType:
    src = subprocess.run(
        ["git", "show", f"{rev}:lwq_app/core/modelfile/gguf_header.py"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    path = work / "gguf_header_base.py"
    path.write_text(src)
    name = "lwq_app.core.modelfile._gguf_header_base"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    mod.__package__ = "lwq_app.core.modelfile"
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def _vocab_file(path: Path, n_vocab: int = 256_000) -> Path:
    """A llama header with an ``n_vocab`` vocabulary, scores, types and merges; 1 tensor."""

    def s(x: bytes) -> bytes:
        return struct.pack("<Q", len(x)) + x

    def kv(key: str, vtype: int, payload: bytes) -> bytes:
        return s(key.encode()) + struct.pack("<I", vtype) + payload

    toks = [f"tok{i}".encode() if i % 7 else "é字".encode() * 3 for i in range(n_vocab)]
    kvs = [
        kv("general.architecture", 8, s(b"llama")),
        kv("llama.block_count", 4, struct.pack("<I", 1)),
        kv("tokenizer.ggml.tokens", 9, struct.pack("<IQ", 8, n_vocab) + b"".join(map(s, toks))),
        kv("tokenizer.ggml.scores", 9, struct.pack("<IQ", 6, n_vocab) + b"\0" * 4 * n_vocab),
        kv("tokenizer.ggml.token_type", 9, struct.pack("<IQ", 5, n_vocab) + b"\1\0\0\0" * n_vocab),
        kv("tokenizer.ggml.merges", 9, struct.pack("<IQ", 8, n_vocab) + b"".join(s(b"a b") for _ in range(n_vocab))),
    ]  # fmt: skip
    info = s(b"token_embd.weight") + struct.pack("<I2QIQ", 2, 32, 8, 0, 0)
    head = b"GGUF" + struct.pack("<IQQ", 3, 1, len(kvs)) + b"".join(kvs) + info
    head += b"\0" * (-len(head) % 32)
    path.write_bytes(head + b"\0" * 4 * 32 * 8)
    return path


def _time_pair(fns: dict[str, Callable[[], object]], runs: int) -> dict[str, float]:
    """Median seconds of each function, the runs interleaved (load drifts hit both alike)."""
    xs: dict[str, list[float]] = {k: [] for k in fns}
    for f in fns.values():
        f()  # warm the page cache and imports
    for _ in range(runs):
        for k, f in fns.items():
            t0 = time.perf_counter()
            f()
            xs[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in xs.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--base", default="HEAD", help="git revision of the 'before' reader")
    ap.add_argument("--workdir", type=Path, default=None, help="keeps the generated files")
    a = ap.parse_args()
    work = Path(a.workdir or tempfile.mkdtemp(prefix="lwq-header-bench-"))
    work.mkdir(parents=True, exist_ok=True)

    from quantize_vs_native import make_model

    import fixtures  # tests/fixtures.py: the SmolLM2 F16 fixture
    from lwq_app.core.modelfile import gguf_header, inventory

    big = work / "random-f16.gguf"
    if not big.exists():
        print("generating the ≥ 1 GB model…", file=sys.stderr)
        make_model(big)
    vocab = work / "vocab-256k.gguf"
    if not vocab.exists():
        _vocab_file(vocab)
    files = {
        "SmolLM2-135M F16": fixtures.smollm2_f16(),
        f"synthetic F16 ({big.stat().st_size / 1e9:.2f} GB)": big,
        "256k-token vocabulary": vocab,
    }
    old = _old_reader(a.base, work)
    new_read = gguf_header.read_header
    print(f"open_model, median of {a.runs} runs (before = {a.base}, after = working tree)")
    print(f"{'file':32} {'before':>10} {'after':>10} {'ratio':>7}")

    def before(path: Path, keep_strings: tuple[str, ...] = (), **_: object) -> object:
        return old.read_header(path, keep_strings)  # the base reader has no keywords

    for label, path in files.items():

        def opener(reader: Callable[..., object], path: Path = path) -> Callable[[], object]:
            def run() -> object:
                inventory.read_header = reader  # type: ignore[attr-defined]
                return inventory.open_model(path)

            return run

        times = _time_pair({"before": opener(before), "after": opener(new_read)}, a.runs)
        inventory.read_header = new_read  # type: ignore[attr-defined]
        b, n = times["before"], times["after"]
        print(f"{label:32} {b * 1e3:8.1f} ms {n * 1e3:8.1f} ms {n / b:6.2f}x")


if __name__ == "__main__":
    main()
