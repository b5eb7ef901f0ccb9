"""The open project, as the window holds it: one per window, the core's project folder.

``ProjectSession`` opens a model or project folder through the core's ``open_project`` job
(hashing and, for a quantized source, the F16 upcast run in the worker bridge), takes the
project's lock for as long as the window has it open, and saves the core's ``ProjectState``
whenever a view changes it (debounced autosave, and on close). Views never write project
files themselves: they call ``update`` and listen to ``state_changed``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal

from lwq_app.core.jobs import LwqError
from lwq_app.core.modelfile import ModelInfo
from lwq_app.core.results.workspace import (
    OpenProjectRequest,
    OpenProjectResult,
    ProjectLock,
    ProjectState,
    open_project,
    save_state,
)

from .notifier import Notifier
from .worker import Job, JobRunner

#: milliseconds between a change and its autosave
AUTOSAVE_MS = 500


class ProjectSession(QObject):
    """The window's project: opening, state, lock and autosave."""

    opening = Signal(object)  # Path being opened
    opened = Signal()  # a project is open (``result`` is set)
    open_failed = Signal(object)  # Path
    state_changed = Signal()  # ``state`` was replaced (target, imatrix, plans…)
    closed = Signal()
    saved = Signal()

    def __init__(self, runner: JobRunner, notifier: Notifier, parent: QObject | None = None):
        super().__init__(parent)
        self._runner = runner
        self._notifier = notifier
        self.result: OpenProjectResult | None = None
        self._state: ProjectState | None = None
        self._lock: ProjectLock | None = None
        self._dirty = False
        self.open_job: Job | None = None
        self._autosave = QTimer(self)
        self._autosave.setSingleShot(True)
        self._autosave.setInterval(AUTOSAVE_MS)
        self._autosave.timeout.connect(self.save)

    # -- what is open ---------------------------------------------------------------------
    @property
    def is_open(self) -> bool:
        return self.result is not None

    @property
    def folder(self) -> Path | None:
        return None if self.result is None else self.result.folder

    @property
    def state(self) -> ProjectState | None:
        return self._state

    @property
    def model(self) -> ModelInfo | None:
        """The base (float) model the project is for."""
        return None if self.result is None else self.result.model

    @property
    def source(self) -> ModelInfo | None:
        """The file the user opened (a quantized one is upcast to ``model``)."""
        return None if self.result is None else self.result.source

    # -- opening and closing --------------------------------------------------------------
    def open(self, path: str | Path) -> Job:
        """Open a GGUF or a project folder as a job; the current project is closed first
        once the new one has opened (a failed open leaves it as it was)."""
        p = Path(path)
        self.opening.emit(p)
        self.open_job = self._runner.submit(
            f"Open {p.name}",
            open_project,
            OpenProjectRequest(p),
            on_result=self._on_opened,
            on_error=lambda _e: self.open_failed.emit(p),
            on_cancel=lambda: self.open_failed.emit(p),
        )
        return self.open_job

    def _on_opened(self, result: OpenProjectResult) -> None:
        if self.result is not None and result.folder == self.result.folder:
            self.result = result  # the same project again (another copy of its model)
            self._state = result.state
            self.opened.emit()
            self.state_changed.emit()
            return
        try:
            lock = ProjectLock.acquire(result.folder, owner="the lwq window")
        except LwqError as e:
            self._notifier.report(e, f"Open {result.source.path.name}")
            self.open_failed.emit(result.source.path)
            return
        self.close()
        self._lock = lock
        self.result = result
        self._state = result.state
        self._dirty = False
        self.opened.emit()
        self.state_changed.emit()

    def close(self) -> None:
        """Save and release the project (no-op when none is open)."""
        if self.result is None:
            return
        self.save()
        if self._lock is not None:
            self._lock.release()
            self._lock = None
        self.result = None
        self._state = None
        self.closed.emit()

    # -- changes --------------------------------------------------------------------------
    def update(self, **changes: Any) -> None:
        """Replace fields of the project state (``target=…``, ``imatrix=…``) and autosave."""
        if self._state is None:
            raise RuntimeError("no project is open")
        self.set_state(dataclasses.replace(self._state, **changes))

    def set_state(self, state: ProjectState) -> None:
        """Take a state the core returned (``attach_imatrix``…) as the project's."""
        self._state = state
        self._dirty = True
        self._autosave.start()
        self.state_changed.emit()

    def save(self) -> None:
        """Write the state now if it changed; a failure is reported, the state kept."""
        self._autosave.stop()
        if not self._dirty or self._state is None or self.folder is None:
            return
        try:
            save_state(self.folder, self._state)
        except LwqError as e:
            self._notifier.report(e, "Save the project")
            return
        self._dirty = False
        self.saved.emit()

    @property
    def dirty(self) -> bool:
        return self._dirty
