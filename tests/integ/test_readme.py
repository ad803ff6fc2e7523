"""The documentation against the code: the flags page lists every flag `rie --help` (and
`rie invoke --help`, `rie event --help`) prints, and nothing else, so a new flag cannot go
undocumented nor an old one linger; the README keeps its two commands first and its length."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.helpers import REPO

# an option line of argparse's help: two spaces, maybe a short form, then the long flag
_HELP_FLAG = re.compile(r"^  (?:-\w, )?(--[a-z][a-z0-9-]*)", re.MULTILINE)
# the first cell of a row of a flags table
_ROW_FLAG = re.compile(r"^\| `(--[a-z][a-z0-9-]*)", re.MULTILINE)


def _help_flags(*command: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-m", "rie", *command, "--help"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    return set(_HELP_FLAG.findall(out)) - {"--help"}


def _page_flags(section: str) -> list[str]:
    """The flags listed in the table of the flags page's `## <section>`."""
    text = (REPO / "docs" / "reference" / "flags.md").read_text()
    parts = re.split(r"^## ", text, flags=re.MULTILINE)
    (body,) = [p for p in parts if p.split("\n", 1)[0].strip() == section]
    return _ROW_FLAG.findall(body)


@pytest.mark.parametrize(
    ("section", "command"), [("rie", ()), ("rie invoke", ("invoke",)), ("rie event", ("event",))]
)
def test_the_flags_page_lists_exactly_the_flags_of_help(
    section: str, command: tuple[str, ...]
) -> None:
    listed = _page_flags(section)
    helped = _help_flags(*command)
    assert len(helped) > 0
    assert sorted(helped - set(listed)) == [], "flags rie --help prints that the page lacks"
    assert sorted(set(listed) - helped) == [], "flags the page lists that rie --help does not"
    assert len(listed) == len(set(listed)), "a flag listed twice"


def test_the_readme_keeps_its_two_commands_first_and_stays_short() -> None:
    text = (REPO / "README.md").read_text()
    assert len(text.splitlines()) <= 150
    blocks = re.findall(r"^```sh\n(.*?)\n```$", text, flags=re.MULTILINE | re.DOTALL)
    # .ci/run runs the second sh block: it must stay the whole test suite's command
    assert "rie --task-root examples/hello --handler app.handler" in blocks[0]
    assert blocks[1].endswith(".venv/bin/python -m pytest")
    assert "pip install -q -e '.[test]'" in blocks[1]
