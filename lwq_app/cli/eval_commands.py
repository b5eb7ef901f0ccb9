"""``lwq eval``, ``lwq tasks``, ``lwq bench`` and ``lwq report`` (issue #3).

Same grammar as ``cli.py``: ``-o``, ``--threads``, ``--gpu-layers``, ``--json`` (result on
stdout, everything else on stderr), ``-f TEXT``, a progress bar on stderr. Every result is
also stored beside the model (``MODEL.gguf.lwq-results.json``) for ``lwq report``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..core.jobs.errors import InputError
from .output import ProgressBar, common_args, emit_json, err, opt_path


def _no_store(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--no-store", action="store_true", help="do not record the result beside the model"
    )


def cmd_eval(a: argparse.Namespace) -> int:
    from ..core.evaluate.kld_stats import format_kld_report
    from ..core.evaluate.perplexity import EvalRequest, KldResult, evaluate
    from ..core.hub.defaults import default_eval_text
    from ..core.results.store import record_eval

    if a.file is None:
        default = default_eval_text()
        text = default.path
        err(f"no -f TEXT: using {default.source}")
    else:
        text = Path(a.file)
    request = EvalRequest(
        model=Path(a.model),
        text=text,
        base=opt_path(a.base),
        base_logits=opt_path(a.base_logits),
        cache_dir=opt_path(a.cache_dir),
        n_ctx=a.ctx,
        n_chunks=a.chunks,
        n_seq=a.parallel,
        threads=a.threads,
        gpu_layers=a.gpu_layers,
    )
    with ProgressBar() as bar:
        r = evaluate(request, progress=bar)
    if not a.no_store:
        err(f"recorded in {record_eval(a.model, r)}")
    out = sys.stderr if a.json else sys.stdout
    if isinstance(r, KldResult):
        p = r.perplexity
        print(f"base logits: {r.base_logits} ({r.cache_bytes_per_token:.0f} bytes/token)", file=out)
        print(format_kld_report(r.stats), file=out, end="")
    else:
        p = r
        print(f"Final estimate: PPL = {r.ppl:.4f} +/- {r.ppl_unc:.5f}", file=out)
    print(f"{p.n_chunks} chunks of {p.n_ctx}, {p.count} tokens scored, {p.seconds:.1f} s", file=out)
    if a.json:
        emit_json(r.to_json())
    return 0


TASK_FLAGS = (
    ("hellaswag", "HellaSwag 6-line text file"),
    ("winogrande", "WinoGrande CSV"),
    ("arc", "ARC, llama.cpp binary multiple-choice file"),
    ("mmlu", "MMLU, llama.cpp binary multiple-choice file"),
    ("truthfulqa", "TruthfulQA, llama.cpp binary multiple-choice file"),
)


def cmd_tasks(a: argparse.Namespace) -> int:
    from ..core.evaluate.multiple_choice import TasksRequest, benchmark_kind, run_tasks
    from ..core.hub.defaults import TaskFile, hub_task_file
    from ..core.results.store import record_tasks

    chosen = [(name, getattr(a, name)) for name, _ in TASK_FLAGS if getattr(a, name)]
    if not chosen:
        raise InputError(
            "no task file given: use --hellaswag, --winogrande, --arc, --mmlu or --truthfulqa"
        )
    files: dict[str, TaskFile] = {}
    for name, path in chosen:  # every Hub file fetched before any scoring
        if path == "hub":
            with ProgressBar() as bar:
                files[name] = hub_task_file(name, progress=bar)
            err(f"--{name} hub: using {files[name].path}")
        else:
            files[name] = TaskFile(name, Path(path), benchmark_kind(name))
    results = []
    out = sys.stderr if a.json else sys.stdout
    for name, _ in chosen:
        f = files[name]
        request = TasksRequest(
            model=Path(a.model),
            kind=f.kind,
            path=f.path,
            name=name,
            n_tasks=a.tasks,
            n_ctx=a.ctx,
            threads=a.threads,
            gpu_layers=a.gpu_layers,
        )
        with ProgressBar() as bar:
            r = run_tasks(request, progress=bar)
        results.append(r)
        if not a.no_store:
            record_tasks(a.model, r)
        print(
            f"{name:>10}: {r.score:.4f} +/- {r.stderr:.4f} ({r.n_correct}/{r.n_tasks} tasks, "
            f"random chance {r.random_chance:.2f}%, {r.seconds:.1f} s)",
            file=out,
        )
    if a.json:
        emit_json([r.to_json() for r in results])
    return 0


def _int_list(s: str) -> list[int]:
    try:
        return [int(x) for x in s.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {s!r}") from None


def _pair(s: str) -> tuple[int, int]:
    v = _int_list(s)
    if len(v) != 2:
        raise argparse.ArgumentTypeError(f"expected PROMPT,GEN (e.g. 1024,1024), got {s!r}")
    return v[0], v[1]


def cmd_bench(a: argparse.Namespace) -> int:
    from ..core.evaluate.bench import BenchRequest, bench, markdown_table
    from ..core.results.speed import machine_load
    from ..core.results.store import record_bench

    tests = [(p, 0) for p in a.n_prompt if p > 0] + [(0, g) for g in a.n_gen if g > 0]
    tests += list(a.pg or [])
    request = BenchRequest(
        model=Path(a.model),
        tests=tuple(tests),
        repetitions=a.repetitions,
        threads=a.threads,
        gpu_layers=a.gpu_layers,
        n_batch=a.batch_size,
        n_ubatch=a.ubatch_size,
        depths=tuple(a.n_depth),
        warmup=not a.no_warmup,
    )
    err(f"before: {machine_load().describe()}")  # a figure means little without its load
    with ProgressBar() as bar:
        result = bench(request, progress=bar)
    err(f"after: {machine_load().describe()}")
    if not a.no_store:
        err(f"recorded in {record_bench(a.model, result)}")
    print(markdown_table(result.records), file=sys.stderr if a.json else sys.stdout, end="")
    if a.json:
        emit_json(result.to_json())
    return 0


def cmd_report(a: argparse.Namespace) -> int:
    from ..core.jobs.atomic import atomic_write_text
    from ..core.results.report import render_report

    text = render_report([Path(v) for v in a.variants], Path(a.reference) if a.reference else None)
    if a.output:
        atomic_write_text(Path(a.output), text)
        err(f"wrote {a.output}")
    else:
        sys.stdout.write(text)
    return 0


def register(sub: Any) -> None:
    """Add the evaluation commands to the ``lwq`` sub-command parser."""
    p = sub.add_parser("eval", help="perplexity, and KL divergence against a base model")
    p.add_argument("model")
    p.add_argument(
        "-f",
        "--file",
        metavar="TEXT",
        help="evaluation text (default: the full wikitext-2 test set if `lwq fetch wikitext` "
        "got it, else the bundled 120 kB excerpt)",
    )
    p.add_argument("--ctx", type=int, default=512, help="tokens per chunk (default 512)")
    p.add_argument("--chunks", type=int, default=None, metavar="N", help="chunks (default all)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--base", metavar="F16.gguf", help="base model: its logits are cached")
    g.add_argument("--base-logits", metavar="FILE", help="a base-logits cache made before")
    p.add_argument("--cache-dir", metavar="DIR", help="base-logits cache (~/.cache/lwq)")
    p.add_argument("--parallel", type=int, default=None, metavar="N", help="chunks per decode")
    _no_store(p)
    common_args(p, output=False)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("tasks", help="HellaSwag, WinoGrande, ARC, MMLU, TruthfulQA scores")
    p.add_argument("model")
    for name, desc in TASK_FLAGS:
        p.add_argument(f"--{name}", metavar="FILE", help=f"{desc} (hub: fetch it from the Hub)")
    p.add_argument("--tasks", type=int, default=750, metavar="N", help="tasks (0 = all)")
    p.add_argument("--ctx", type=int, default=768, help="context per sequence (default 768)")
    _no_store(p)
    common_args(p, output=False)
    p.set_defaults(func=cmd_tasks)

    p = sub.add_parser("bench", help="llama-bench-style speed: pp, tg, pg tokens/s")
    p.add_argument("model")
    p.add_argument("-p", "--n-prompt", type=_int_list, default=[512], help="prompt sizes")
    p.add_argument("-n", "--n-gen", type=_int_list, default=[128], help="generation sizes")
    p.add_argument("-pg", type=_pair, action="append", metavar="PP,TG", help="prompt+gen test")
    p.add_argument(
        "-d", "--n-depth", type=_int_list, default=[0], help="context depths (untimed fill)"
    )
    p.add_argument("-r", "--repetitions", type=int, default=5)
    p.add_argument("-b", "--batch-size", type=int, default=2048)
    p.add_argument("-ub", "--ubatch-size", type=int, default=512)
    p.add_argument("--no-warmup", action="store_true")
    _no_store(p)
    common_args(p, output=False)
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("report", help="model-card tables for a set of evaluated variants")
    p.add_argument("variants", nargs="+", metavar="VARIANT.gguf")
    p.add_argument("--reference", metavar="F", help="file the shrinkage is measured against")
    p.add_argument("-o", "--output", help="markdown file (default: stdout)")
    p.set_defaults(func=cmd_report)
