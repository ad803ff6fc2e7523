"""A function's own modules named like this project's (`runtime`, `rie`, `benchmarks`) are the ones
it imports (issue 16, item 14), under rie and under `bootstrap`, end to end: the runtime client
starts although a `runtime.py` sits in its working directory, and the handler's `import runtime`
gets the function's file."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO, rie

APP = """\
import benchmarks
import rie
import runtime


def handler(event, context):
    return [runtime.MARK, rie.MARK, benchmarks.MARK, context.aws_request_id != ""]
"""


def task_root(tmp_path: Path) -> Path:
    root = tmp_path / "task"
    root.mkdir()
    (root / "app.py").write_text(APP)
    for name in ("runtime", "rie", "benchmarks"):
        (root / f"{name}.py").write_text(
            f"MARK = 'own {name}'\n\n\ndef handler(event, context):\n    return MARK\n"
        )
    return root


@pytest.mark.parametrize("via", ["rie", "bootstrap"])
def test_own_runtime_rie_and_benchmarks_modules(tmp_path: Path, via: str) -> None:
    root = task_root(tmp_path)
    args = ["--task-root", str(root)]
    if via == "rie":
        args += ["--handler", "app.handler"]
    else:
        args += ["--", str(REPO / "bootstrap"), "app.handler"]
    with rie(*args, env={"PYRIE_PYTHON": sys.executable}) as r:
        reply = r.invoke({})
        assert reply.status == 200, reply.body
        assert reply.header("x-amz-function-error") is None, reply.body
        assert json.loads(reply.body) == ["own runtime", "own rie", "own benchmarks", True]


def test_a_handler_in_the_functions_own_runtime_module(tmp_path: Path) -> None:
    root = task_root(tmp_path)
    with rie("--task-root", str(root), "--handler", "runtime.handler") as r:
        reply = r.invoke({})
        assert (reply.status, json.loads(reply.body)) == (200, "own runtime")
