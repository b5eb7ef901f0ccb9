"""The project's job journal: the run queue on disk, so a dead app is found out at the next start.

``jobs.json`` in the project folder holds every entry of the run queue (``run_queue``) and is
rewritten atomically on each change of state: an entry is RUNNING in the file for exactly as
long as the app ran it. At the next start (``recover_journal``) an entry still RUNNING means
the process died under it — a kill, a crash, the power — so it becomes INTERRUPTED (the later
steps of its chain SKIPPED), and what it was writing is removed: the temp files beside its
output (``jobs.atomic`` writes ``.NAME.*.lwq-tmp`` and renames only a complete file), and a
quantize's sidecar where its GGUF never got its final name. No half-written file stays, and
none ever has a final name.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..jobs.atomic import TMP_SUFFIX, atomic_write_text
from ..jobs.errors import InputError, OutputError
from ..plan.quantize import sidecar_path
from .run_queue import JobKind, JobState, QueueEntry, mark_interrupted
from .store import results_path

JOURNAL_FILE = "jobs.json"
JOURNAL_FORMAT = "lwq-jobs"
JOURNAL_VERSION = 1


def journal_path(folder: Path) -> Path:
    return Path(folder) / JOURNAL_FILE


def save_journal(folder: Path, entries: Sequence[QueueEntry]) -> Path:
    """Write the queue to the project's journal (atomically: a reader sees the old or the
    new file, whole)."""
    p = journal_path(folder)
    data = {
        "format": JOURNAL_FORMAT,
        "version": JOURNAL_VERSION,
        "entries": [e.to_json() for e in entries],
    }
    atomic_write_text(p, json.dumps(data, indent=1) + "\n")
    return p


def load_journal(folder: Path) -> tuple[QueueEntry, ...]:
    """The queue as the journal has it (empty without one), states as written; ``InputError``
    naming the file (and the entry) when it is damaged."""
    p = journal_path(folder)
    if not p.exists():
        return ()
    try:
        data: Any = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise InputError(f"{p}: unreadable job journal ({e})") from None
    if not isinstance(data, dict) or data.get("format") != JOURNAL_FORMAT:
        raise InputError(f"{p}: not an lwq job journal")
    version = data.get("version")
    if type(version) is not int or not 1 <= version <= JOURNAL_VERSION:
        raise InputError(f"{p}: job journal version {version!r} is not one this lwq reads")
    raw = data.get("entries")
    if not isinstance(raw, list):
        raise InputError(f"{p}: field 'entries' must be a list")
    entries = tuple(
        QueueEntry.from_json(d, f"{p}: field 'entries' item {i + 1}") for i, d in enumerate(raw)
    )
    ids = [e.id for e in entries]
    if len(set(ids)) != len(ids):
        raise InputError(f"{p}: two entries have the same id")
    return entries


#: the random part of a ``tempfile.mkstemp`` name (8 characters), as a glob
_RANDOM = "?" * 8


def temp_files_of(path: Path) -> list[Path]:
    """The temp files ``jobs.atomic`` may have left beside ``path``: ``.NAME.XXXXXXXX.lwq-tmp``
    exactly (``temp_path_for``), so another file's (``NAME.v2``'s) are never matched."""
    folder = Path(path).parent
    try:
        return sorted(folder.glob(f".{_glob_escape(Path(path).name)}.{_RANDOM}{TMP_SUFFIX}"))
    except OSError:
        return []


def _glob_escape(name: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)


def leftovers(entry: QueueEntry) -> list[Path]:
    """What an interrupted ``entry`` may have left: its temp files (of the output, the
    sidecar and the results file) and a quantize's sidecar without its GGUF."""
    found: list[Path] = []
    targets = [] if entry.output is None else [entry.output]
    if entry.kind is JobKind.QUANTIZE and entry.output is not None:
        side = sidecar_path(entry.output)
        targets.append(side)
        if side.exists() and not entry.output.exists():
            found.append(side)  # written just before the rename that never came
    else:
        targets.append(results_path(entry.model))
    for t in dict.fromkeys(targets):
        found += temp_files_of(t)
    return found


@dataclass(frozen=True)
class Recovery:
    """The queue at the start of a session: ``entries`` (the ones left running now
    INTERRUPTED), the ``interrupted`` ones, the files removed and those that could not be."""

    entries: tuple[QueueEntry, ...]
    interrupted: tuple[QueueEntry, ...] = ()
    removed: tuple[Path, ...] = ()
    not_removed: tuple[tuple[Path, str], ...] = ()


def recover_journal(folder: Path) -> Recovery:
    """Load the journal at the start of a session (the project's lock held: no other process
    runs its jobs): entries left RUNNING become INTERRUPTED and their half-written files are
    removed; the journal is rewritten when anything changed."""
    entries = load_journal(folder)
    running = [e for e in entries if e.state is JobState.RUNNING]
    if not running:
        return Recovery(entries)
    removed: list[Path] = []
    failed: list[tuple[Path, str]] = []
    for e in running:
        for p in leftovers(e):
            try:
                p.unlink()
                removed.append(p)
            except FileNotFoundError:
                pass
            except OSError as err:
                failed.append((p, err.strerror or str(err)))
    out = mark_interrupted(entries)
    with contextlib.suppress(OSError, OutputError):
        save_journal(folder, out)  # a read-only folder: the next start finds them again
    interrupted = tuple(e for e in out if e.id in {r.id for r in running})
    return Recovery(out, interrupted, tuple(removed), tuple(failed))
