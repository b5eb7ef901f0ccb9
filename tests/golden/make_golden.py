"""Regenerate the golden reference values with llama.cpp's own tools. Not run in CI.

The tools are built once from the pinned llama-cpp-python sdist (same llama.cpp commit the
Python package links), e.g.::

    pip download --no-deps --no-binary :all: llama-cpp-python==0.3.36 -d /tmp/sdist
    tar xzf /tmp/sdist/llama_cpp_python-0.3.36.tar.gz -C /tmp/sdist
    cmake -S /tmp/sdist/llama_cpp_python-0.3.36/vendor/llama.cpp -B .ref/build \
        -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=ON -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF
    cmake --build .ref/build -j2 --target llama-quantize llama-imatrix llama-perplexity llama-bench
    .venv/bin/python tests/golden/make_golden.py --tools .ref/build/bin

Every output records the exact command lines that produced it (``MANIFEST.json``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(ROOT))

import fixtures  # noqa: E402
from lwq_app.core.engine import cpu_extra_buffers_safe  # noqa: E402
from lwq_app.core.modelfile.inventory import open_model, per_tensor_hashes  # noqa: E402
from lwq_app.core.plan.stock_mixes import QUANT_PRESETS  # noqa: E402

CALIB = ROOT / "resources" / "calibration" / "lwq-calibration-v1.txt"
WIKI = ROOT / "tests" / "data" / "wikitext-2-raw" / "wiki.test.raw"
IMATRIX = HERE / "smollm2.imatrix.gguf"
IMATRIX_ARGS = ["-c", "512", "--chunks", "16", "-b", "512", "-t", "2"]
LINE = re.compile(r"^\[\s*\d+/\s*\d+\]\s+(\S+)\s+-.*type =\s*(\w+),.*?(?:\((\w+)\))?\s*$")

manifest: dict[str, object] = {}


def run(cmd: list[str], log: Path | None = None) -> str:
    print("+", " ".join(cmd), file=sys.stderr)
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    out = p.stdout + p.stderr
    if log is not None:
        log.write_text(out)
    if p.returncode != 0:
        raise SystemExit(f"command failed ({p.returncode}): {' '.join(cmd)}\n{out[-3000:]}")
    return out


def rel(p: Path) -> str:
    try:
        return str(p.relative_to(ROOT))
    except ValueError:
        return p.name


def dry_run_types(tools: Path, model: Path, preset: str, imatrix: Path | None) -> dict[str, str]:
    cmd = [str(tools / "llama-quantize"), "--dry-run"]
    if imatrix is not None:
        cmd += ["--imatrix", str(imatrix)]
    cmd += [str(model), preset]
    out = run(cmd)
    types = {}
    for line in out.splitlines():
        m = LINE.match(line.strip())
        if m:
            types[m.group(1)] = (m.group(3) or m.group(2)).upper()
    if not types:
        raise SystemExit(f"no tensor lines in dry run of {preset} on {model}")
    return types


def ones_imatrix(model: Path, out: Path) -> Path:
    """An all-ones imatrix for the synthetic fixtures: only its presence changes the mix."""
    import numpy as np

    from lwq_app.core.modelfile.imatrix_file import Imatrix, ImatrixEntry, write_gguf

    m = open_model(model)
    entries = {}
    for t in m.tensors:
        if t.quantizable and t.name != "token_embd.weight":
            n = t.n_experts
            entries[t.name] = ImatrixEntry(
                t.name, np.ones((n, t.ne0), np.float32), np.full(n, 512.0, np.float32)
            )
    write_gguf(Imatrix(entries, ("ones",), 1, 512), out)
    return out


def golden_types(tools: Path, work: Path) -> None:
    outdir = HERE / "types"
    outdir.mkdir(exist_ok=True)
    for name in fixtures.FIXTURES:
        model = fixtures.fixture_path(name)
        im = IMATRIX if name == "smollm2" else ones_imatrix(model, work / f"{name}.imatrix.gguf")
        names = [t.name for t in open_model(model).llama_order()]
        table: dict[str, list[str]] = {}
        for preset in QUANT_PRESETS:
            for with_im in (False, True):
                t = dry_run_types(tools, model, preset, im if with_im else None)
                if sorted(t) != sorted(names):
                    raise SystemExit(f"{name} {preset}: tensor set differs from the model")
                table[preset + ("+imatrix" if with_im else "")] = [t[n] for n in names]
        (outdir / f"{name}.json").write_text(
            json.dumps(
                {
                    "fixture": name,
                    "command": "llama-quantize --dry-run [--imatrix IMATRIX] MODEL PRESET",
                    "imatrix": "tests/golden/smollm2.imatrix.gguf"
                    if name == "smollm2"
                    else "all-ones imatrix written by make_golden.ones_imatrix",
                    "tensors": names,
                    "types": table,
                },
                indent=0,
            )
        )
        print(f"types: {name}: {len(table)} variants", file=sys.stderr)


def golden_imatrix(tools: Path) -> None:
    model = fixtures.smollm2_offgrid_f16()
    cmd = [
        str(tools / "llama-imatrix"),
        "-m",
        str(model),
        "-f",
        rel(CALIB),
        "-o",
        rel(IMATRIX),
        *IMATRIX_ARGS,
    ]
    run(cmd, HERE / "smollm2.imatrix.log")
    manifest["imatrix"] = {
        "command": [rel(Path(c)) if c.startswith("/") else c for c in cmd],
        "args": IMATRIX_ARGS,
        "model": "fixtures.smollm2_offgrid_f16()",
        "text": rel(CALIB),
    }
    stats = run(
        [
            str(tools / "llama-imatrix"),
            "-m",
            str(model),
            "--in-file",
            str(IMATRIX),
            "--show-statistics",
        ]
    )
    (HERE / "smollm2.imatrix.stats.txt").write_text(stats)


def golden_quantize(tools: Path, work: Path) -> None:
    """Native llama-quantize with the golden imatrix: per-tensor data hashes of its output."""
    model = fixtures.smollm2_offgrid_f16()
    result = {}
    for preset in ("Q4_K_M", "Q3_K_M"):
        out = work / f"native-{preset}.gguf"
        cmd = [
            str(tools / "llama-quantize"),
            "--imatrix",
            str(IMATRIX),
            str(model),
            str(out),
            preset,
            "2",
        ]
        run(cmd)
        m = open_model(out)
        result[preset] = {
            "command": f"llama-quantize --imatrix tests/golden/smollm2.imatrix.gguf MODEL OUT {preset} 2",
            "tensor_data_bytes": m.tensor_data_bytes,
            "types": {t.name: t.type for t in m.tensors},
            "sha256": per_tensor_hashes(m),
            "tensor_data_sha256": m.tensor_data_hash(),
        }
        # the recipe lwq exports for the same plan, run through the native tool
        subprocess.run(
            [
                str(ROOT / ".venv/bin/lwq"),
                "plan",
                str(model),
                "--preset",
                preset,
                "--imatrix",
                str(IMATRIX),
                "-o",
                str(work / "plan.json"),
            ],
            check=True,
        )
        rec = subprocess.run(
            [
                str(ROOT / ".venv/bin/lwq"),
                "recipe",
                str(work / "plan.json"),
                "--model",
                str(model),
                "--imatrix",
                str(IMATRIX),
                "--base-ftype",
                "Q8_0",
                "-o",
                str(work / "recipe.gguf"),
                "--threads",
                "2",
                "--json",
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        cmd2 = json.loads(rec.stdout)["command"]
        cmd2[0] = str(tools / "llama-quantize")
        run(cmd2)
        result[preset]["recipe_tensor_data_sha256"] = open_model(
            work / "recipe.gguf"
        ).tensor_data_hash()
        result[preset]["recipe_command"] = (
            "lwq recipe PLAN --base-ftype Q8_0 ... (run with native llama-quantize)"
        )
    (HERE / "quantize.json").write_text(json.dumps(result, indent=0))


def golden_perplexity(tools: Path, work: Path) -> None:
    base = fixtures.smollm2_offgrid_f16()
    q = work / "native-Q4_K_M.gguf"
    kld = work / "base.kld"
    common = ["-c", "512", "--chunks", "20", "-b", "512", "-t", "2", "-f", str(WIKI)]
    run(
        [
            str(tools / "llama-perplexity"),
            "-m",
            str(base),
            *common,
            "--kl-divergence-base",
            str(kld),
        ],
        HERE / "perplexity-f16.log",
    )
    run(
        [
            str(tools / "llama-perplexity"),
            "-m",
            str(q),
            *common,
            "--kl-divergence-base",
            str(kld),
            "--kl-divergence",
            # where lwq's engine turns the extra buffer types off (AMX CPUs), so does the golden
            *([] if cpu_extra_buffers_safe() else ["--no-repack"]),
        ],
        # k-quant kernels round differently on AVX2 and AVX-512 CPUs: one golden per class
        HERE / f"perplexity-q4_k_m-kld.{fixtures.cpu_class()}.log",
    )
    manifest["perplexity"] = {
        "base": "llama-perplexity -m smollm2-offgrid-f16 "
        + " ".join(common[:-1])
        + " wiki.test.raw --kl-divergence-base base.kld",
        "kld": "llama-perplexity -m native-Q4_K_M (golden imatrix) ... --kl-divergence-base base.kld --kl-divergence",
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tools", type=Path, required=True)
    ap.add_argument(
        "--only", choices=["imatrix", "types", "quantize", "perplexity"], action="append"
    )
    a = ap.parse_args()
    steps = a.only or ["imatrix", "types", "quantize", "perplexity"]
    mpath = HERE / "MANIFEST.json"
    if mpath.exists():
        manifest.update(json.loads(mpath.read_text()))
    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        for s in steps:
            globals()[f"golden_{s}"](a.tools, *(() if s == "imatrix" else (work,)))
    manifest["llama_cpp"] = "vendored in llama-cpp-python 0.3.36 (llama.cpp 0c1e570)"
    manifest["fixtures"] = {
        "smollm2_offgrid_f16_tensor_data_sha256": open_model(
            fixtures.smollm2_offgrid_f16()
        ).tensor_data_hash(),
        "smollm2_f16_tensor_data_sha256": open_model(fixtures.smollm2_f16()).tensor_data_hash(),
        "calibration_sha256": hashlib.sha256(CALIB.read_bytes()).hexdigest(),
    }
    mpath.write_text(json.dumps(manifest, indent=1) + "\n")


if __name__ == "__main__":
    main()
