"""Launch → first painted window (with a ≥ 1 GB GGUF on the command line) and, for the demo,
launch → importance heatmap shown. Targets: first paint < 2 s; heatmap within a minute.

Runs ``python -m lwq_app`` as a user would, under a real X server: the one in ``DISPLAY``,
or an Xvfb this script starts (``apt-get install xvfb xdotool``). The app writes one line per
milestone to ``LWQ_GUI_TIMINGS`` (wall-clock seconds), so the figures are the app's own;
``xdotool search --sync`` times the window's mapping independently.

    python benchmarks/gui_startup.py [--runs 3] [--big PATH]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def big_model(path: Path, gib: float = 1.05) -> Path:
    """A random-weight llama GGUF of about ``gib`` GiB (F16), written once."""
    if path.exists():
        return path
    from gguf import GGUFWriter

    n_embd, n_ff, n_vocab = 2048, 5632, 32000
    per_layer = 2 * (4 * n_embd * n_embd + 3 * n_embd * n_ff)
    n_layer = max(1, int((gib * 2**30 - 2 * 2 * n_vocab * n_embd) // per_layer))
    rng = np.random.default_rng(0)
    block = (rng.standard_normal(1 << 20) * 0.02).astype(np.float16)

    def mat(rows: int, cols: int) -> np.ndarray:
        return np.resize(block, rows * cols).reshape(rows, cols)

    tmp = path.with_suffix(".part")
    w = GGUFWriter(tmp, arch="llama")
    w.add_name("lwq-bench-1gb")
    w.add_context_length(4096)
    w.add_embedding_length(n_embd)
    w.add_block_count(n_layer)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(16)
    w.add_head_count_kv(16)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(n_vocab)
    w.add_file_type(1)
    w.add_tensor("token_embd.weight", mat(n_vocab, n_embd))
    w.add_tensor("output_norm.weight", np.ones(n_embd, np.float32))
    w.add_tensor("output.weight", mat(n_vocab, n_embd))
    for i in range(n_layer):
        p = f"blk.{i}."
        w.add_tensor(p + "attn_norm.weight", np.ones(n_embd, np.float32))
        w.add_tensor(p + "ffn_norm.weight", np.ones(n_embd, np.float32))
        for k in ("attn_q", "attn_k", "attn_v", "attn_output"):
            w.add_tensor(p + k + ".weight", mat(n_embd, n_embd))
        w.add_tensor(p + "ffn_gate.weight", mat(n_ff, n_embd))
        w.add_tensor(p + "ffn_up.weight", mat(n_ff, n_embd))
        w.add_tensor(p + "ffn_down.weight", mat(n_embd, n_ff))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    tmp.replace(path)
    return path


def start_xvfb() -> tuple[subprocess.Popen[bytes] | None, str]:
    if os.environ.get("DISPLAY"):
        return None, os.environ["DISPLAY"]
    if shutil.which("Xvfb") is None:
        raise SystemExit("no DISPLAY and no Xvfb: apt-get install xvfb xdotool")
    display = ":97"
    xvfb = subprocess.Popen(["Xvfb", display, "-screen", "0", "1920x1080x24", "-nolisten", "tcp"],
                            stderr=subprocess.DEVNULL)  # fmt: skip
    for _ in range(100):
        if Path(f"/tmp/.X11-unix/X{display[1:]}").exists():
            break
        time.sleep(0.05)
    return xvfb, display


def launch(args: list[str], env: dict[str, str], until: str, timeout: float) -> dict[str, float]:
    """Start the app, wait for milestone ``until``, close it; milestone -> seconds from launch."""
    with tempfile.TemporaryDirectory() as tmp:
        timings = Path(tmp) / "timings"
        env = {**env, "LWQ_GUI_TIMINGS": str(timings)}
        t0 = time.time()
        app = subprocess.Popen([sys.executable, "-m", "lwq_app", *args], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
        mapped = None
        if shutil.which("xdotool"):
            r = subprocess.run(["xdotool", "search", "--sync", "--onlyvisible", "--name", "lwq"],
                               env=env, capture_output=True, timeout=timeout)  # fmt: skip
            mapped = time.time() - t0 if r.returncode == 0 else None
        out: dict[str, float] = {}
        deadline = time.time() + timeout
        while time.time() < deadline and until not in out:
            if timings.exists():
                for line in timings.read_text().splitlines():
                    name, _, t = line.partition(" ")
                    out[name] = float(t) - t0
            if app.poll() is not None:
                err = app.stderr.read().decode() if app.stderr else ""
                raise SystemExit(f"the app exited ({app.returncode}):\n{err[-2000:]}")
            time.sleep(0.05)
        app.terminate()
        app.wait(10)
        if mapped is not None:
            out["mapped (xdotool)"] = mapped
        if until not in out:
            raise SystemExit(f"no {until!r} within {timeout:.0f} s: {out}")
        return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--big", type=Path, default=ROOT / ".cache" / "bench" / "llama-1gb-f16.gguf")
    ap.add_argument("--no-demo", action="store_true", help="only the 1 GB first-paint figure")
    a = ap.parse_args()
    a.big.parent.mkdir(parents=True, exist_ok=True)
    big = big_model(a.big)
    print(f"model: {big} ({big.stat().st_size / 2**30:.2f} GiB)")
    xvfb, display = start_xvfb()
    try:
        base = {**os.environ, "DISPLAY": display, "QT_QPA_PLATFORM": "xcb"}
        with tempfile.TemporaryDirectory() as data:
            env = {**base, "LWQ_DATA_DIR": data}
            paints, maps = [], []
            for _ in range(a.runs):
                t = launch([str(big)], env, "painted", 60)
                paints.append(t["painted"])
                maps.append(t.get("mapped (xdotool)", float("nan")))
            print(f"launch -> first paint, {big.stat().st_size / 1e9:.2f} GB model: median "
                  f"{statistics.median(paints):.2f} s (runs {', '.join(f'{x:.2f}' for x in paints)}; "
                  f"target < 2 s); window mapped (xdotool): median {statistics.median(maps):.2f} s")  # fmt: skip
        if not a.no_demo:
            with tempfile.TemporaryDirectory() as data:
                env = {**base, "LWQ_DATA_DIR": data}
                cold = launch(["--demo"], env, "heatmap", 300)
                warm = launch(["--demo"], env, "heatmap", 300)
            print(f"demo (make run): launch -> heatmap shown {cold['heatmap']:.1f} s on a new "
                  f"project (upcast + imatrix collection), {warm['heatmap']:.1f} s reopened; "
                  f"first paint {cold['painted']:.2f} s")  # fmt: skip
    finally:
        if xvfb is not None:
            xvfb.terminate()
    return 0


if __name__ == "__main__":
    sys.exit(main())
