"""Starting the app: the display check, ``make run``'s fallback, the command lines, the theme."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from PySide6.QtGui import QPalette

from lwq_app.cli import main as lwq
from lwq_app.gui import launch
from lwq_app.gui.launch import LaunchOptions, has_display, parse_options, prepare_environment


def _no_display(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(sys, "platform", "linux")


def test_a_display_is_an_x_or_wayland_one_or_a_desktop_os(monkeypatch: pytest.MonkeyPatch) -> None:
    _no_display(monkeypatch)
    assert not has_display()
    monkeypatch.setenv("WAYLAND_DISPLAY", "wayland-0")
    assert has_display()
    _no_display(monkeypatch)
    monkeypatch.setattr(sys, "platform", "darwin")
    assert has_display()


def test_without_a_display_the_window_says_why_and_a_tour_goes_offscreen(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _no_display(monkeypatch)
    assert "set DISPLAY" in (prepare_environment(LaunchOptions()) or "")
    assert prepare_environment(LaunchOptions(tour=tmp_path)) is None
    assert launch.os.environ["QT_QPA_PLATFORM"] == "offscreen"


def test_lwq_gui_without_a_display_is_one_line_and_exit_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _no_display(monkeypatch)
    assert lwq(["gui"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lwq: error: no display")


def test_make_run_without_a_display_says_so_and_runs_the_headless_demo(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from lwq_app.gui import app

    _no_display(monkeypatch)
    ran: list[list[str]] = []
    monkeypatch.setattr(launch.os, "execv", lambda exe, argv: ran.append(argv))
    app.main(["--demo"])
    assert capsys.readouterr().err.strip() == launch.NO_DISPLAY
    assert ran == [[sys.executable, "-m", "lwq_app.demo"]]


def test_the_command_lines_agree(tmp_path: Path) -> None:
    opts = parse_options([str(tmp_path / "m.gguf"), "--tour", str(tmp_path), "--quick"])
    assert opts == LaunchOptions(tmp_path / "m.gguf", tmp_path, True, False)
    assert parse_options(["--demo"]).demo


def test_a_dark_system_gets_fusion_and_a_dark_palette(
    qapp, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lwq_app.gui import theme

    before = qapp.palette()
    monkeypatch.setattr(theme, "is_dark", lambda: True)
    follower = theme.ThemeFollower(qapp)
    try:
        assert qapp.style().name().lower() == "fusion"
        assert qapp.palette().color(QPalette.ColorRole.Window).lightness() < 80
        monkeypatch.setattr(theme, "is_dark", lambda: False)
        follower.apply()
        assert qapp.palette().color(QPalette.ColorRole.Window) == before.color(
            QPalette.ColorRole.Window
        )
    finally:
        theme.QGuiApplication.styleHints().colorSchemeChanged.disconnect(follower.apply)
