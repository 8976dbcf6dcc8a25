"""`robustlens ARGS`: CLI subcommands go to the CLI, everything else to the window's parser."""

from __future__ import annotations

import pytest

from robustlens.__main__ import main
from robustlens.engine.cli import subcommand_names


def test_every_cli_subcommand_is_dispatched_to_the_cli(monkeypatch):
    seen = []
    monkeypatch.setattr("robustlens.engine.cli.main", lambda argv: seen.append(argv) or 0)
    monkeypatch.setattr("robustlens.app.main.main", lambda argv: pytest.fail(f"window opened for {argv}"))
    for name in sorted(subcommand_names()):
        assert main([name, "--x"]) == 0
    assert [argv[0] for argv in seen] == sorted(subcommand_names())
    assert {"certify", "predict", "attack", "zoo", "train"} <= subcommand_names()


@pytest.mark.parametrize("argv", [["--model", "my.pt"], ["--tab", "Certify"], ["--hide", "gallery"], ["--run"],
                                  ["--settle"], ["--delay", "1"], ["--size", "800x600"], ["--timeout", "5"],
                                  ["--lecture"], ["--select", "3"], []])
def test_window_flags_reach_the_window(monkeypatch, argv):
    seen = []
    monkeypatch.setattr("robustlens.app.main.main", lambda a: seen.append(a) or 0)
    monkeypatch.setattr("robustlens.engine.cli.main", lambda a: pytest.fail(f"CLI got {a}"))
    assert main(argv) == 0
    assert seen == [argv]


def test_window_parser_accepts_every_flag_it_documents():
    from robustlens.app.main import build_parser

    args = build_parser().parse_args(["--model", "a.pt", "--model", "b.pt", "--tab", "Attack", "--hide",
                                      "gallery,strip", "--run", "--settle", "--delay", "0.5", "--size",
                                      "1280x720", "--timeout", "9", "--screenshot", "x.png", "--select", "2"])
    assert args.model == ["a.pt", "b.pt"] and args.tab == "Attack" and args.size == "1280x720"
