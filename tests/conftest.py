"""The whole suite runs under rie's default sandbox (`--sandbox lambda`), as users' own tests do.

Tests trade files with their functions through paths under the machine's /tmp (pytest's
tmp_path) that the function's settings name, which the sandbox keeps reachable
(docs/resources.md, "Paths under /tmp"). A test that checks what the sandbox changes on the host
side passes `--sandbox off` itself, saying why.
"""
