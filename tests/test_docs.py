"""Documentation that must match the code."""

from __future__ import annotations

import re

from support.data import ROOT
from liandong import docs
from liandong.cli import build_parser
from liandong.server.config import HELP, env_name


def test_readme_inputs_match_the_documents() -> None:
    """README's tables of inputs are exactly what the bundled documents declare (make docs)."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert docs.render(readme, ROOT / "rules") == readme, "run `make docs`"


def test_every_server_setting_is_documented() -> None:
    """Every serve flag and its LIANDONG_* variable appear in the README's operations table and --help."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    parser = build_parser()
    serve_help = parser._subparsers._group_actions[0].choices["serve"].format_help()  # type: ignore[union-attr]
    for name in HELP:
        flag = "--" + name.replace("_", "-")
        assert f"`{flag}`" in readme, flag
        assert env_name(name) in readme, env_name(name)
        assert flag in serve_help and env_name(name) in re.sub(r"\s+", "", serve_help)


def test_readme_names_the_two_commands() -> None:
    """A fresh clone needs only `make run` and `make test`, and the README says so."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "make run" in readme and "make test" in readme
