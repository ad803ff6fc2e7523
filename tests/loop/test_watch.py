"""--watch: a change to the code is picked up by the next invoke; a burst of saves is one reload;
an invocation running the old code finishes on it."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from tests.helpers import Reply, rie

HANDLER = """
import json, os, time
VERSION = "{version}"
def handler(event, context):
    if "block" in event:
        deadline = time.monotonic() + 20
        while not os.path.exists(event["block"]) and time.monotonic() < deadline:
            time.sleep(0.01)
    return {{"version": VERSION, "pid": os.getpid()}}
"""
RELOAD = r"rie: reloading test_function: app\.py changed"


def write(root: Path, version: str) -> None:
    (root / "app.py").write_text(HANDLER.format(version=version))


def reloads(lines: list[str]) -> int:
    return sum("rie: reloading test_function:" in line for line in lines)


def test_a_changed_handler_is_picked_up_by_the_next_invoke(tmp_path: Path) -> None:
    write(tmp_path, "v1")
    # a burst is over after 40 ms without a change; on a machine busy enough to stall this
    # test between two writes for that long, the burst would look like two: give it room
    slow = {"RIE_WATCH_QUIET_MS": "500"}
    with rie("--watch", "--task-root", str(tmp_path), "--handler", "app.handler", env=slow) as r:
        first = r.invoke({}).json()
        assert isinstance(first, dict) and first["version"] == "v1"
        # a burst of saves (same size each time: stale bytecode must not be run)
        for version in ("v2", "v3", "v4"):
            write(tmp_path, version)
        r.wait_for(RELOAD, timeout=20)
        second = r.invoke({}).json()
        assert isinstance(second, dict) and second["version"] == "v4"
        assert second["pid"] != first["pid"]  # a fresh environment
        write(tmp_path, "v5")
        r.wait_for(RELOAD + r".*", timeout=20, start=len(r.lines))
        # the burst above was one reload: this change is the second
        assert reloads(r.lines) == 2
        third = r.invoke({}).json()
        assert isinstance(third, dict) and third["version"] == "v5"
        # changes the runtime itself makes (bytecode caches) or editors' swap files do not reload
        (tmp_path / "__pycache__").mkdir(exist_ok=True)
        (tmp_path / "__pycache__" / "x.pyc").write_bytes(b"x")
        (tmp_path / ".app.py.swp").write_bytes(b"x")
        (tmp_path / "notes.py").write_text("# a real change, to know the previous ones were seen\n")
        r.wait_for(r"rie: reloading test_function: notes\.py changed", timeout=20)
        assert reloads(r.lines) == 3


def test_a_directory_made_after_the_watch_began_is_watched_too(tmp_path: Path) -> None:
    write(tmp_path, "v1")
    with rie("--watch", "--task-root", str(tmp_path), "--handler", "app.handler") as r:
        first = r.invoke({}).json()
        assert isinstance(first, dict) and first["version"] == "v1"
        (tmp_path / "pkg" / "sub").mkdir(parents=True)
        r.wait_for(r"rie: reloading test_function: pkg", timeout=20)
        start = len(r.lines)
        (tmp_path / "pkg" / "sub" / "mod.py").write_text("X = 1\n")
        r.wait_for(
            r"rie: reloading test_function: pkg/sub/mod\.py changed", timeout=20, start=start
        )


def test_a_busy_environment_finishes_on_the_old_code_then_retires(tmp_path: Path) -> None:
    write(tmp_path, "v1")
    release = tmp_path.parent / f"{tmp_path.name}-release"
    with rie("--watch", "--task-root", str(tmp_path), "--handler", "app.handler") as r:
        replies: list[Reply] = []
        start = len(r.lines)
        blocked = threading.Thread(target=lambda: replies.append(r.invoke({"block": str(release)})))
        blocked.start()
        try:
            r.wait_for(r"^START RequestId: ", start=start)
            write(tmp_path, "v2")
            r.wait_for(RELOAD, timeout=20)
            # while the old environment is busy, a new invoke gets a new one with the new code
            fresh = r.invoke({}).json()
            assert isinstance(fresh, dict) and fresh["version"] == "v2"
        finally:
            release.touch()
            blocked.join(30)
        old = json.loads(replies[0].body)
        assert old["version"] == "v1" and old["pid"] != fresh["pid"]
        again = r.invoke({}).json()
        assert isinstance(again, dict) and again["version"] == "v2"
        assert again["pid"] == fresh["pid"]


def test_provisioned_environments_are_replaced_warm(tmp_path: Path) -> None:
    from tests.rie.conftest import wait_until

    write(tmp_path, "v1")
    flags = (
        "--watch",
        "--provisioned",
        "1",
        "--task-root",
        str(tmp_path),
        "--handler",
        "app.handler",
    )
    with rie(*flags) as r:
        write(tmp_path, "v2")
        r.wait_for(RELOAD, timeout=20)

        def provisioned_inits() -> bool:
            text = r.request("GET", "/metrics").body.decode()
            return 'rie_provisioned_inits_total{function="test_function"} 2\n' in text

        wait_until(provisioned_inits, 20, "the replacement's init")
        reply = r.invoke({}).json()
        assert isinstance(reply, dict) and reply["version"] == "v2"
        metrics = r.request("GET", "/metrics").body.decode()
        assert 'rie_cold_starts_total{function="test_function"} 0\n' in metrics
        assert 'rie_environments{function="test_function"} 1\n' in metrics
