"""Every ``lwq`` command's ``--help`` works (in-process, through ``main``: fast)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from lwq_app.cli import build_parser, main


def _commands(
    parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()
) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out.append((*prefix, name))
                out.extend(_commands(sub, (*prefix, name)))
    return out


COMMANDS = _commands(build_parser())


def test_the_command_list_is_complete() -> None:
    names = {c[0] for c in COMMANDS}
    for expected in ("inspect", "upcast", "plan", "quantize", "eval", "bench", "fetch"):
        assert expected in names


@pytest.mark.parametrize("command", [(), *COMMANDS], ids=lambda c: " ".join(c) or "lwq")
def test_help(command: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main([*command, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: lwq" + "".join(f" {c}" for c in command))


def test_an_error_is_one_line_and_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "missing.gguf"
    assert main(["inspect", str(missing)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lwq: error: ") and str(missing) in err[0]


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["no-such-command"])
    assert exc.value.code == 2


def test_cancel_exits_130(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from lwq_app.core.jobs.errors import Cancelled

    def cancelled(_: argparse.Namespace) -> int:
        raise Cancelled("cancelled")

    parser = build_parser()
    args = parser.parse_args(["inspect", "x.gguf"])
    monkeypatch.setattr(args, "func", cancelled)
    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", lambda *a, **k: args)
    assert main(["inspect", "x.gguf"]) == 130
    assert capsys.readouterr().err.strip() == "lwq: cancelled; nothing was written"
