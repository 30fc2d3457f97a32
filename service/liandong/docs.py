"""Keeps the generated tables of inputs in rules/README.md in step with the bundled rule documents.

`python -m liandong.docs rules/README.md rules` (`make docs`) rewrites the text between the inputs
markers; the test suite fails when the file differs from what this would write.
"""

from __future__ import annotations

import sys
from pathlib import Path

from liandong.document.load import load_tree
from liandong.render import inputs_markdown

BEGIN = "<!-- inputs:begin -->"
END = "<!-- inputs:end -->"


def inputs_section(rules_dir: Path) -> str:
    docs = sorted(load_tree(rules_dir), key=lambda d: (d.ruleset, d.effective_from))
    tables = {d.ruleset: inputs_markdown(d) for d in docs}  # the latest version of each wins
    return "\n\n".join(tables[name] for name in sorted(tables))


def render(readme: str, rules_dir: Path) -> str:
    head, sep, rest = readme.partition(BEGIN)
    _, sep2, tail = rest.partition(END)
    if not sep or not sep2:
        raise ValueError(f"no {BEGIN} … {END} section to rewrite")
    return f"{head}{BEGIN}\n{inputs_section(rules_dir)}\n{END}{tail}"


def main(argv: list[str]) -> int:
    readme = Path(argv[0] if argv else "rules/README.md")
    rules_dir = Path(argv[1] if len(argv) > 1 else "rules")
    readme.write_text(render(readme.read_text(encoding="utf-8"), rules_dir), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
