"""The window's menus and their actions: File, Edit, View, Help, and the recent-files list.

Shortcuts are Qt's standard keys (``QKeySequence.StandardKey``), so every platform gets
its own (⌘O on macOS, Ctrl+O elsewhere); a test checks no two actions share one. Menus show
their actions' tooltips. The Hub's entries ("Search the Hub…", "Open safetensors folder…")
are in place but disabled until the Hub issue builds them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from PySide6.QtCore import QObject, QSettings
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QDockWidget, QMenu, QMenuBar

from .context import AppContext, Step
from .log_dock import LogDockWidget

#: the most recent files kept in File → Open Recent
RECENT_LIMIT = 10
RECENT_KEY = "recent/paths"


class MenuHost(Protocol):
    """What the menus need of the window (``MainWindow``)."""

    ctx: AppContext
    recent: RecentFiles
    log_dock: LogDockWidget
    job_dock: QDockWidget

    @property
    def step_specs(self) -> Sequence[Any]: ...  # StepSpec: .step
    def menuBar(self) -> QMenuBar: ...
    def open_dialog(self) -> None: ...
    def open_folder_dialog(self) -> None: ...
    def open_path(self, path: str | Path) -> None: ...
    def close_project(self) -> None: ...
    def quit(self) -> None: ...
    def show_about(self) -> None: ...
    def go_to(self, step: Step) -> None: ...
    def show_hub(self) -> None: ...
    def open_safetensors_dialog(self) -> None: ...


class RecentFiles:
    """The Open Recent list in QSettings: newest first, at most 10, missing paths pruned."""

    def __init__(self, settings: QSettings, limit: int = RECENT_LIMIT) -> None:
        self._settings = settings
        self._limit = limit

    def paths(self) -> list[Path]:
        raw = self._settings.value(RECENT_KEY, [])
        # an INI file hands back a one-item list as a plain string
        items: list[object] = [raw] if isinstance(raw, str) else list(raw or [])  # type: ignore[call-overload]
        kept = [Path(str(p)) for p in items if p and Path(str(p)).exists()]
        if len(kept) != len(items):
            self._store(kept)
        return kept[: self._limit]

    def add(self, path: Path) -> None:
        p = path.resolve()
        self._store([p, *[q for q in self.paths() if q.resolve() != p]])

    def clear(self) -> None:
        self._store([])

    def _store(self, paths: list[Path]) -> None:
        self._settings.setValue(RECENT_KEY, [str(p) for p in paths[: self._limit]])


@dataclass
class WindowActions:
    """Every action of the menus, by name (the tests and the tour find them here)."""

    open: QAction
    open_folder: QAction
    recent_menu: QMenu
    search_hub: QAction
    open_safetensors: QAction
    save: QAction
    close_project: QAction
    quit: QAction
    undo: QAction
    redo: QAction
    steps: list[QAction]
    about: QAction

    def all(self) -> list[QAction]:
        return [
            self.open,
            self.open_folder,
            self.search_hub,
            self.open_safetensors,
            self.save,
            self.close_project,
            self.quit,
            self.undo,
            self.redo,
            *self.steps,
            self.about,
        ]


def _action(
    parent: QObject,
    name: str,
    text: str,
    tip: str,
    slot: Callable[[], object] | None = None,
    keys: QKeySequence.StandardKey | str | None = None,
) -> QAction:
    a = QAction(text, parent)
    a.setObjectName(name)
    a.setToolTip(tip)
    a.setStatusTip(tip)
    if isinstance(keys, QKeySequence.StandardKey):
        a.setShortcuts(keys)
    elif keys:
        a.setShortcut(QKeySequence(keys))
    if slot is not None:
        a.triggered.connect(lambda _checked=False: slot())
    return a


def _menu(bar: QMenuBar, title: str, name: str) -> QMenu:
    m = bar.addMenu(title)
    m.setObjectName(name)
    m.setToolTipsVisible(True)
    return m


def build_menus(host: MenuHost) -> WindowActions:
    """Create the menu bar of the window and return its actions (children of the bar)."""
    ctx = host.ctx
    bar = host.menuBar()
    w = host

    file_menu = _menu(bar, "&File", "file_menu")
    open_ = _action(
        bar, "open", "&Open Model…", "Open a GGUF model (or the first file of a split one)",
        w.open_dialog, QKeySequence.StandardKey.Open,
    )  # fmt: skip
    open_folder = _action(
        bar, "open_folder", "Open &Project Folder…", "Open a project folder lwq made before",
        w.open_folder_dialog,
    )  # fmt: skip
    recent = QMenu("Open &Recent", file_menu)
    recent.setObjectName("recent_menu")
    recent.setToolTipsVisible(True)
    recent.setToolTip("Models and projects opened before (missing ones are left out)")
    recent.aboutToShow.connect(lambda: fill_recent_menu(w, recent))
    search_hub = _action(
        bar, "search_hub", "Search the &Hub…",
        "Search the Hugging Face Hub, download a model and open it (the Model step's Hub pane)",
        w.show_hub,
    )  # fmt: skip
    safetensors = _action(
        bar, "open_safetensors", "Open &Safetensors Folder…",
        "Convert a transformers folder (config, safetensors, tokenizer) to GGUF and open it",
        w.open_safetensors_dialog,
    )  # fmt: skip
    save = _action(
        bar, "save", "&Save", "Save the project now (it also saves itself after each change)",
        ctx.session.save, QKeySequence.StandardKey.Save,
    )  # fmt: skip
    close_project = _action(
        bar, "close_project", "&Close Project", "Save and close the project (the window stays)",
        w.close_project, QKeySequence.StandardKey.Close,
    )  # fmt: skip
    quit_keys = QKeySequence.keyBindings(QKeySequence.StandardKey.Quit)
    quit_ = _action(
        bar, "quit", "&Quit", "Cancel running jobs, save the project and quit", w.quit,
        QKeySequence.StandardKey.Quit if quit_keys else "Ctrl+Q",
    )  # fmt: skip
    quit_.setMenuRole(QAction.MenuRole.QuitRole)
    for item in (open_, open_folder, recent, None, search_hub, safetensors, None, save,
                 close_project, None, quit_):  # fmt: skip
        if item is None:
            file_menu.addSeparator()
        elif isinstance(item, QMenu):
            file_menu.addMenu(item)
        else:
            file_menu.addAction(item)

    edit_menu = _menu(bar, "&Edit", "edit_menu")
    undo = ctx.undo.createUndoAction(bar, "&Undo")
    undo.setObjectName("undo")
    undo.setShortcuts(QKeySequence.StandardKey.Undo)
    undo.setToolTip("Undo the last change to the project")
    redo = ctx.undo.createRedoAction(bar, "&Redo")
    redo.setObjectName("redo")
    redo.setShortcuts(QKeySequence.StandardKey.Redo)
    redo.setToolTip("Redo the change just undone")
    edit_menu.addAction(undo)
    edit_menu.addAction(redo)

    view_menu = _menu(bar, "&View", "view_menu")
    steps = []
    for i, spec in enumerate(w.step_specs, start=1):
        a = _action(
            bar, f"go_{spec.step.name.lower()}", f"&{i} {spec.step.value}",
            f"Go to the {spec.step.value} step", functools.partial(w.go_to, spec.step),
            f"Ctrl+{i}" if i < 10 else None,
        )  # fmt: skip
        view_menu.addAction(a)
        steps.append(a)
    view_menu.addSeparator()
    for dock in (w.log_dock, w.job_dock):
        toggle = dock.toggleViewAction()
        toggle.setToolTip(f"Show or hide the {dock.windowTitle().lower()} panel")
        view_menu.addAction(toggle)
    view_menu.addAction(w.log_dock.open_file_action)

    help_menu = _menu(bar, "&Help", "help_menu")
    about = _action(bar, "about", "&About lwq", "The lwq version and its llama.cpp", w.show_about)
    about.setMenuRole(QAction.MenuRole.AboutRole)
    help_menu.addAction(about)

    return WindowActions(
        open_, open_folder, recent, search_hub, safetensors, save, close_project, quit_,
        undo, redo, steps, about,
    )  # fmt: skip


def fill_recent_menu(w: MenuHost, menu: QMenu) -> None:
    """Rebuild Open Recent from the settings (pruning what no longer exists)."""
    menu.clear()
    paths = w.recent.paths()
    for p in paths:
        a = menu.addAction(p.name)
        a.setToolTip(str(p))
        a.setData(str(p))
        a.triggered.connect(lambda _checked=False, p=p: w.open_path(p))
    if not paths:
        none = menu.addAction("No recent models")
        none.setEnabled(False)
        none.setToolTip("Models and projects you open are listed here")
        return
    menu.addSeparator()
    clear = menu.addAction("Clear List")
    clear.setToolTip("Forget the recent models (the files stay)")
    clear.triggered.connect(lambda _checked=False: w.recent.clear())
