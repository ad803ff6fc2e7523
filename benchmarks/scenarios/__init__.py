"""One module per scenario; each has `run(config, say) -> dict` (a JSON-able result) and `TITLE`."""

from __future__ import annotations

from collections.abc import Callable

Say = Callable[[str], None]
