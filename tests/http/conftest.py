"""The HTTP front's end-to-end harness: rie with `--http 127.0.0.1:0`, its bound URL read back."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from tests.helpers import RieProcess, rie

FIX = Path(__file__).resolve().parent / "fixtures"
PY = sys.executable
_FRONT_RE = re.compile(r"HTTP front \(([a-z-]+)\) listening on (http://[\d.]+:\d+)")


class Front:
    """A running rie with its HTTP front."""

    def __init__(self, proc: RieProcess) -> None:
        self.proc = proc
        m = proc.wait_for(_FRONT_RE, 15)
        self.format, self.url = m.group(1), m.group(2)


def front(
    *flags: str, handler: str = "apps.behave", env: dict[str, str] | None = None
) -> RieProcess:
    """rie running this project's Python runtime over the fixtures, with its HTTP front on."""
    return rie(
        "--http", "127.0.0.1:0", "--task-root", str(FIX), "--handler", handler, *flags, env=env
    )
