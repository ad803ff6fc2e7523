"""The whole suite: rie's sandbox is off unless a test asks for it.

Many end-to-end tests trade files with their functions through the machine's /tmp (markers,
records) or check TMPDIR there, which Lambda's own /tmp and read-only code (`--sandbox lambda`,
rie's default) would hide. The sandbox's own tests (tests/sandbox) pass `--sandbox lambda`.
Set RIE_SANDBOX=lambda before running pytest to run everything under the sandbox instead.
"""

from __future__ import annotations

import os

os.environ.setdefault("RIE_SANDBOX", "off")
