"""Hub fixtures of the GUI tests and the heartbeat benchmark: repos for the loopback Hub.

* ``smollm2_safetensors()``: SmolLM2 as a transformers folder (``model.safetensors`` in F16,
  ``config.json``, the tokenizer files), made once from the packaged GGUF with transformers'
  own GGUF reader and cached beside the other fixtures. It uses
  ``load_gguf_checkpoint(model_to_load=<meta model>)`` rather than ``from_pretrained(gguf_file=)``
  because the latter needs ``accelerate``, which lwq does not install.
* ``folder_files(path)``: a folder's files as the ``{name: bytes}`` ``HubServer.add_model``
  takes.
* ``hub_in_child(repos)``: a ``HubServer`` in a process of its own, for the heartbeat. The
  server is plain Python: in the app's process it would copy a 270 MB body while holding the
  GIL, and the GUI thread's stall would be the test server's, not the app's (the real Hub is
  not in the app's process either).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import fixtures

HERE = Path(__file__).resolve().parent
_SERVE = """
import json, sys
sys.path[:0] = [{tests!r}, {gui!r}]
from pathlib import Path
from hub_server import HubServer
from hub_fixtures import folder_files
with HubServer() as server:
    for repo, (folder, meta) in json.loads(sys.argv[1]).items():
        server.add_model(repo, folder_files(Path(folder)), meta=meta)
    print(server.url, flush=True)
    sys.stdin.read()  # serve until the parent closes the pipe
"""

VERSION = "1"


def smollm2_safetensors() -> Path:
    """The SmolLM2 safetensors folder (F16 weights; built once, then cached)."""
    out = fixtures.cache_dir() / f"smollm2-safetensors-f16-v{VERSION}"
    if (out / "model.safetensors").is_file():
        return out
    import torch
    from safetensors.torch import save_file
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    src = fixtures.smollm2_q4_1()
    config = AutoConfig.from_pretrained(str(src.parent), gguf_file=src.name)
    with torch.device("meta"):
        meta = AutoModelForCausalLM.from_config(config)
    config.architectures = [type(meta).__name__]
    tensors = load_gguf_checkpoint(str(src), return_tensors=True, model_to_load=meta)["tensors"]
    tokenizer = AutoTokenizer.from_pretrained(str(src.parent), gguf_file=src.name)
    tmp = out.with_name(out.name + ".part")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    weights = {k: torch.as_tensor(v).to(torch.float16).contiguous() for k, v in tensors.items()}
    save_file(weights, str(tmp / "model.safetensors"), metadata={"format": "pt"})
    config.dtype = torch.float16
    config.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    tmp.replace(out)
    return out


def folder_files(folder: Path) -> dict[str, bytes]:
    """Every file of ``folder`` (recursively) by its relative name."""
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@contextmanager
def hub_in_child(repos: Mapping[str, tuple[Path, dict[str, Any]]]) -> Iterator[str]:
    """A loopback Hub in a child process serving ``repos`` (repo -> (folder, meta)); yields
    its URL, stops it on exit."""
    spec = json.dumps({repo: (str(folder), meta) for repo, (folder, meta) in repos.items()})
    script = _SERVE.format(tests=str(HERE.parent), gui=str(HERE))
    proc = subprocess.Popen(
        [sys.executable, "-c", script, spec], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        if not url.startswith("http://"):
            raise RuntimeError(f"the loopback Hub did not start (exit {proc.poll()})")
        yield url
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
