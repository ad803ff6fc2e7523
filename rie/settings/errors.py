"""The one error of loading settings: a flag, variable or file that cannot be used.

Its own module so that every loader (flags, TOML, SAM, zips) can raise it without importing the
others; `shown` is how a message quotes a value from a file.
"""

from __future__ import annotations

import reprlib

_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxlist, _REPR.maxdict, _REPR.maxstring, _REPR.maxother = 3, 4, 4, 40, 40


def shown(value: object) -> str:
    """A bounded repr for a message: a file's value can be huge (YAML aliases can make one whose
    full repr has no end), and the message stays one short line."""
    text = _REPR.repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


class ConfigError(ValueError):
    """A flag or variable that cannot be used; the message says which and why."""
