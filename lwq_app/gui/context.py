"""What every view is given: the bridge, the error road, the project, settings and undo.

One ``AppContext`` per window. A view takes it in its constructor and needs nothing else:
it starts jobs with ``ctx.runner.submit(title, core_job, request, on_result=…)``, reports
what goes wrong with ``ctx.notifier``, reads and changes the project through
``ctx.session``, and pushes its edits on ``ctx.undo``. Long jobs the user lines up (quantize,
evaluate, bench) go to the project's run queue, ``ctx.queue``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from PySide6.QtCore import QSettings
from PySide6.QtGui import QUndoStack

from .notifier import Notifier
from .run_queue import RunQueueController
from .session import ProjectSession
from .worker import JobRunner


class Step(str, Enum):
    """The workflow steps of the sidebar, in order."""

    MODEL = "Model"
    TARGET = "Target"
    IMPORTANCE = "Importance"
    PLAN = "Plan"
    RUN = "Run"
    RESULTS = "Results"


@dataclass(frozen=True)
class AppContext:
    runner: JobRunner
    notifier: Notifier
    session: ProjectSession
    settings: QSettings
    undo: QUndoStack
    queue: RunQueueController
    #: a quick profile for tours and smoke tests: 2 imatrix chunks, row-sampled sensitivity
    quick: bool = False
