"""Documentation that must match the code, and links that must lead somewhere."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from liandong import docs
from liandong.cli import build_parser
from liandong.server.config import HELP, env_name
from support.data import BUNDLED, ROOT

README = ROOT / "README.md"
OPERATIONS = ROOT / "docs" / "operations.md"
# Every Markdown file of the project: the README, docs/, and the READMEs of rules/, clients/, deploy/.
MARKDOWN = sorted(
    [README, *(ROOT / "docs").glob("*.md"), *(ROOT / d / "README.md" for d in ("rules", "clients", "deploy"))]
)

LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^()\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.M | re.S)
INLINE_CODE = re.compile(r"`[^`\n]*`")


def test_rule_inputs_match_the_documents() -> None:
    """The tables of inputs in rules/README.md are exactly what the bundled documents declare (make docs)."""
    text = (BUNDLED / "README.md").read_text(encoding="utf-8")
    assert docs.render(text, BUNDLED) == text, "run `make docs`"


def test_every_server_setting_is_documented() -> None:
    """Every serve flag and its LIANDONG_* variable appear in the operations manual's table and in --help."""
    manual = OPERATIONS.read_text(encoding="utf-8")
    parser = build_parser()
    serve_help = parser._subparsers._group_actions[0].choices["serve"].format_help()  # type: ignore[union-attr]
    for name in HELP:
        flag = "--" + name.replace("_", "-")
        assert f"`{flag}`" in manual, flag
        assert env_name(name) in manual, env_name(name)
        assert flag in serve_help and env_name(name) in re.sub(r"\s+", "", serve_help)


def test_readme_starts_a_newcomer_with_the_two_commands() -> None:
    """The README, under 10 000 characters, shows `make run` and `make test` as commands in its set-up section, and the Makefile has both targets."""
    readme = README.read_text(encoding="utf-8")
    assert len(readme) < 10_000, f"README.md has {len(readme)} characters; move detail to docs/"
    setup = readme[readme.index("## Set-up") :]
    setup = setup[: setup.index("\n## ")]
    commands = [line.split("#")[0].strip() for block in FENCE.findall(setup) for line in block.splitlines()[1:-1]]
    assert "make run" in commands and "make test" in commands, commands
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^run:", makefile, re.M) and re.search(r"^test:", makefile, re.M)


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = INLINE_CODE.sub(lambda m: m.group(0)[1:-1], heading.strip()).lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading anchor of a Markdown file (repeated headings get -1, -2, … as on GitHub)."""
    seen: dict[str, int] = {}
    out = set()
    for line in FENCE.sub("", path.read_text(encoding="utf-8")).splitlines():
        heading = re.match(r"#{1,6} (.+)", line)
        if heading:
            base = slug(heading.group(1))
            count = seen.get(base, 0)
            seen[base] = count + 1
            out.add(base if count == 0 else f"{base}-{count}")
    return out


def broken_links(path: Path) -> list[str]:
    """The relative links of a Markdown file that lead to no file, or to no heading of it."""
    text = INLINE_CODE.sub("", FENCE.sub("", path.read_text(encoding="utf-8")))
    broken = []
    for target in LINK.findall(text):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto: … : not ours to check offline
            continue
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        if not linked.exists():
            broken.append(f"{target}: no such file")
        elif anchor and (linked.is_dir() or anchor not in anchors(linked)):
            broken.append(f"{target}: no heading #{anchor} in {linked.name}")
    return broken


@pytest.mark.parametrize("path", MARKDOWN, ids=[str(p.relative_to(ROOT)) for p in MARKDOWN])
def test_every_relative_link_resolves(path: Path) -> None:
    """Every relative link in the project's Markdown leads to a file that exists, and to a heading in it when it names one."""
    assert broken_links(path) == []


def test_link_check_finds_broken_links(tmp_path: Path) -> None:
    """The link check reports a missing file and a missing heading, and accepts a good file, a good heading and web links."""
    (tmp_path / "other.md").write_text("# Other page\n\n## Limits and `codes`\n", encoding="utf-8")
    page = tmp_path / "page.md"
    page.write_text(
        "# Page\n\n[ok](other.md) [ok](other.md#limits-and-codes) [ok](#page) [web](https://example.org/x)\n"
        "[gone](missing.md) [no heading](other.md#nowhere) `[in code](missing.md)`\n\n```\n[in a block](missing.md)\n```\n",
        encoding="utf-8",
    )
    assert [b.split(":")[0] for b in broken_links(page)] == ["missing.md", "other.md#nowhere"]
