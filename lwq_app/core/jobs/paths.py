"""Where lwq keeps its files: one scheme of environment variables over platformdirs.

- ``data_dir()``: what lwq has measured and must keep (per-model projects, the model-hash
  index): ``$LWQ_DATA_DIR``, else ``platformdirs.user_data_dir("lwq")``
  (``~/.local/share/lwq`` on Linux).
- ``cache_dir(part)``: what can be rebuilt (sensitivity tables, base logits, fetched
  datasets, the demo model): ``$LWQ_CACHE_DIR/part``, else
  ``platformdirs.user_cache_dir("lwq")/part`` (``~/.cache/lwq`` on Linux).

Both are read when called, never at import, so a test or a job can set them.
"""

from __future__ import annotations

import os
from pathlib import Path

DATA_DIR_ENV = "LWQ_DATA_DIR"
CACHE_DIR_ENV = "LWQ_CACHE_DIR"


def data_dir() -> Path:
    """lwq's user data folder: ``$LWQ_DATA_DIR`` if set, else platformdirs' user data dir."""
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return Path(env).expanduser()
    from platformdirs import user_data_dir

    return Path(user_data_dir("lwq"))


def cache_dir(part: str = "") -> Path:
    """lwq's cache folder (or its sub-folder ``part``): ``$LWQ_CACHE_DIR``, else platformdirs'."""
    env = os.environ.get(CACHE_DIR_ENV)
    if env:
        root = Path(env).expanduser()
    else:
        from platformdirs import user_cache_dir

        root = Path(user_cache_dir("lwq"))
    return root / part if part else root
