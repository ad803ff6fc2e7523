"""The README's option table lists every flag `rie --help` prints, so a new flag cannot go
undocumented."""

from __future__ import annotations

import re

from rie.settings.config import build_parser
from tests.helpers import REPO


def test_the_option_table_lists_every_flag() -> None:
    text = (REPO / "README.md").read_text()
    start = text.index("| option | default | meaning |")
    table = text[start : text.index("\n\n", start)]
    listed = set(re.findall(r"`(--[a-z-]+)", table))
    flags = {
        option
        for action in build_parser()._actions
        for option in action.option_strings
        if option.startswith("--") and option != "--help"
    }
    assert flags - listed == set()
